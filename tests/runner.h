/* runner.h - one test per process, selected by name.
 *
 * meson runs every test as its own process with a timeout (libuv's model):
 * a crash or a hang fails that one test, never the run. A test binary
 * holds a table of named functions; `binary NAME` runs one, an unknown
 * name fails (so a typo in meson.build cannot pass silently), and
 * `binary --list` prints them. A test skips by calling gpb_test_skip(). */
#ifndef GPB_TEST_RUNNER_H
#define GPB_TEST_RUNNER_H

#include <glib.h>

typedef struct {
    const char *name;
    void (*run)(void);
} gpb_test_case;

#define GPB_TEST_SKIP_CODE 77

/* Prints why and ends the test as skipped. */
void gpb_test_skip(const char *fmt, ...) G_GNUC_PRINTF(1, 2) G_GNUC_NORETURN;

int gpb_test_main(const gpb_test_case *cases, size_t n, int argc, char **argv);

#define GPB_TEST_MAIN(cases)                                                                                           \
    int main(int argc, char **argv)                                                                                    \
    {                                                                                                                  \
        return gpb_test_main(cases, G_N_ELEMENTS(cases), argc, argv);                                                  \
    }

#endif
