/* runner.h - one test per process, selected by name.
 *
 * meson runs every test as its own process with a timeout (libuv's model):
 * a crash or a hang fails that one test, never the run. A test binary
 * holds a table of named functions; `binary NAME` runs one, an unknown
 * name fails, and `binary --list` prints them. A test skips by calling
 * gpb_test_skip().
 *
 * A test is named once: by its function, in the table, one entry a line:
 *
 *     static const gpb_test_case cases[] = {
 *         GPB_TEST(pool_is_never_oversubscribed),
 *         GPB_TEST_WITH_STUBS(gpu_hidden_from_cuda_is_not_offered),
 *     };
 *
 * tests/meson.build reads these lines from the source to register each
 * test (and re-reads them when the file changes). GPB_TEST_WITH_STUBS
 * marks a test that runs with the stand-in NVIDIA libraries (tests/stubs)
 * on LD_LIBRARY_PATH. */
#ifndef GPB_TEST_RUNNER_H
#define GPB_TEST_RUNNER_H

#include <glib.h>

typedef struct {
    const char *name;
    void (*run)(void);
} gpb_test_case;

#define GPB_TEST(fn)                                                                                                   \
    {                                                                                                                  \
#fn, fn                                                                                                        \
    }
#define GPB_TEST_WITH_STUBS(fn)                                                                                        \
    {                                                                                                                  \
#fn, fn                                                                                                        \
    }

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
