/* helpers.h - what the core's tests share: a private ledger directory and
 * config per test, and a few shortcuts. */
#ifndef GPB_TEST_HELPERS_H
#define GPB_TEST_HELPERS_H

#include <stdbool.h>
#include <sys/types.h>

#include "gpubalance.h"
#include "runner.h"
#include "util.h" /* gpb_remove_tree */

/* A GeForce-like pool of 3 sessions, and a sim GPU in it (its group open
 * for more keys): the pieces most placement tests' configs are made of. */
#define GPB_TEST_POOL_OF_3 "[pool:geforce]\nmax-sessions=3\n"
#define GPB_TEST_POOLED_SIM(name) "[device:" name "]\nbackend=sim\npool=geforce\n"

/* Two sim GPUs (gpu0, gpu1) in that pool, after a [general] group of the
 * test's own. */
#define GPB_TEST_SIMS_IN_A_POOL_OF_3 GPB_TEST_POOL_OF_3 GPB_TEST_POOLED_SIM("gpu0") GPB_TEST_POOLED_SIM("gpu1")

/* Those two, then software. */
#define GPB_TEST_TWO_SIMS_IN_A_POOL_OF_3                                                                               \
    "[general]\n"                                                                                                      \
    "discover=false\n"                                                                                                 \
    "order=nvenc,software\n" GPB_TEST_SIMS_IN_A_POOL_OF_3

/* Creates a fresh directory for this test, points GPUBALANCE_DIR at
 * DIR/ledger and GPUBALANCE_CONFIG at DIR/gpubalance.conf holding
 * config_text (NULL: no config file, GPUBALANCE_CONFIG unset). Returns
 * DIR, removed when the test process exits. */
const char *gpb_test_env(const char *config_text);

/* Removes the test's directory now (also done at exit). */
void gpb_test_cleanup(void);

/* The ledger file of the current environment. */
char *gpb_test_ledger_path(void);

gpubalance_context *gpb_test_open(void);

/* A stream shortcut: codec name, size and fps. */
gpubalance_stream *gpb_test_stream(const char *codec, int width, int height, double fps);

/* Acquires and asserts success. */
gpubalance_lease *gpb_test_acquire(gpubalance_context *ctx, const gpubalance_stream *stream);

/* The start of many tests: gpb_test_env(config_text), a context and an
 * H.264 1080p30 stream. */
void gpb_test_setup(const char *config_text, gpubalance_context **ctx, gpubalance_stream **stream);

/* gpb_test_setup() and a lease for the stream (asserted). */
gpubalance_lease *gpb_test_start(const char *config_text, gpubalance_context **ctx, gpubalance_stream **stream);

/* The device of that id in the snapshot; fails the test if there is none. */
const gpubalance_device_info *gpb_test_device(const gpubalance_snapshot *snap, const char *id);

/* Live leases on a device, from a fresh snapshot (verified by locks). */
int gpb_test_sessions(gpubalance_context *ctx, const char *device_id);
int gpb_test_total_leases(gpubalance_context *ctx);
int gpb_test_learned_limit(gpubalance_context *ctx, const char *device_id);
int gpb_test_pool_learned_limit(gpubalance_context *ctx, const char *pool);

/* The gpubalance command under test ($GPUBALANCE_BIN, set by meson). */
const char *gpb_test_bin(void);

/* Runs a program (found on PATH unless argv[0] has a slash) to completion,
 * with its stdout and stderr in *out and *err where those are not NULL.
 * Returns its exit status, or 128 + the signal that ended it. */
int gpb_test_run(const char *const *argv, char **out, char **err);

/* Asserts that haystack contains needle, printing both if not. */
void gpb_assert_contains(const char *haystack, const char *needle);

/* Reads one line (without the newline) from fd into a new string. */
char *gpb_read_line(int fd);

#endif
