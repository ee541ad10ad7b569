/* runner.c - see runner.h. */
#include "runner.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gpb_test_skip(const char *fmt, ...)
{
    va_list ap;

    printf("SKIP: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    exit(GPB_TEST_SKIP_CODE);
}

int gpb_test_main(const gpb_test_case *cases, size_t n, int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", cases[i].name);
        return 0;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: %s TEST | --list\n", argv[0]);
        return 2;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(argv[1], cases[i].name) == 0) {
            printf("running %s\n", cases[i].name);
            fflush(stdout);
            cases[i].run();
            printf("ok %s\n", cases[i].name);
            return 0;
        }
    }
    fprintf(stderr, "%s: no test named '%s' (see --list)\n", argv[0], argv[1]);
    return 1;
}
