/* runner.c - see runner.h. */
#include "runner.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* gcc says __SANITIZE_ADDRESS__, clang says __has_feature */
#if defined(__SANITIZE_ADDRESS__)
#define GPB_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GPB_HAVE_LSAN 1
#endif
#endif
#ifdef GPB_HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* Defined by helpers.c when linked: removes the test's directory. */
void gpb_test_cleanup(void) __attribute__((weak));

/* Ends a passed test. Under LeakSanitizer the leak check runs here, while
 * the process is quiet, and the process then leaves without the check at
 * exit: that one runs while atexit handlers (gst_deinit) tear threads
 * down, and LSan's tracer can crash on a thread that is exiting. */
static int finish_passed_test(void)
{
    int leaked = 0;

    fflush(stdout);
    if (gpb_test_cleanup)
        gpb_test_cleanup();
#ifdef GPB_HAVE_LSAN
    leaked = __lsan_do_recoverable_leak_check();
    fflush(stderr);
    _exit(leaked ? 1 : 0);
#endif
    return leaked;
}

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
            return finish_passed_test();
        }
    }
    fprintf(stderr, "%s: no test named '%s' (see --list)\n", argv[0], argv[1]);
    return 1;
}
