/* fuzz_ledger.c - libFuzzer harness for everything read from a ledger file.
 *
 * The first byte picks what the rest is:
 *   even: a header image, checked as open() checks one;
 *   odd:  bytes written over the shared tables of a valid ledger (at an
 *         offset from the next two bytes), after which a context is opened,
 *         a snapshot taken and a lease acquired and released, as a process
 *         meeting a ledger scribbled on by a buggy or hostile peer would;
 *         with bit 1 also set, the bytes are written over a device's lock
 *         file instead (its content names the device: format 2).
 * Never a crash; a refusal is a status with a message. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <glib.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "gpubalance.h"
#include "ledger.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *ledger_path;
static char *fuzz_dir;

static void remove_fuzz_dir(void)
{
    GDir *d = g_dir_open(fuzz_dir, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        char *path = g_build_filename(fuzz_dir, name, NULL);

        unlink(path);
        g_free(path);
    }
    if (d)
        g_dir_close(d);
    rmdir(fuzz_dir);
}

static void setup_once(void)
{
    char *dir, *conf;

    if (ledger_path)
        return;
    dir = g_dir_make_tmp("gpubalance-fuzz-XXXXXX", NULL);
    conf = g_build_filename(dir, "fuzz.conf", NULL);
    g_file_set_contents(conf,
                        "[general]\ndiscover=false\n[pool:p]\nmax-sessions=2\n"
                        "[device:a]\nbackend=sim\npool=p\nenforce-sessions=1\n[device:b]\nbackend=sim\nbudget=4\n",
                        -1, NULL);
    g_setenv("GPUBALANCE_CONFIG", conf, TRUE);
    g_setenv("GPUBALANCE_DIR", dir, TRUE);
    g_setenv("GPUBALANCE_LOG", "error", TRUE);
    ledger_path = g_build_filename(dir, "ledger", NULL);
    fuzz_dir = dir;
    atexit(remove_fuzz_dir);
    g_free(conf);
}

static void use_ledger(void)
{
    gpubalance_context *ctx = NULL;
    gpubalance_snapshot *snap = NULL;
    gpubalance_stream *stream;
    gpubalance_lease *lease = NULL;

    if (gpubalance_context_open(NULL, &ctx) < 0)
        return; /* refusing is fine; crashing is not */
    if (gpubalance_snapshot_take(ctx, &snap) == 0)
        gpubalance_snapshot_free(snap);
    gpubalance_stream_new(&stream);
    if (gpubalance_lease_acquire(ctx, stream, &lease) == 0) {
        gpubalance_lease_check_open(lease);
        gpubalance_lease_release(lease);
    }
    gpubalance_stream_free(stream);
    gpubalance_context_close(ctx);
}

static void scribble_and_use(const uint8_t *data, size_t size)
{
    off_t offset = 512 + (off_t)((data[0] << 8 | data[1]) * 8);
    int fd;

    gpubalance_ledger_reset(true);
    fd = open(ledger_path, O_WRONLY);
    if (fd < 0)
        __builtin_trap();
    if (pwrite(fd, data + 2, size - 2, offset) < 0)
        __builtin_trap();
    close(fd);
    use_ledger();
}

/* The lock file of the ledger's device record `device`, or NULL. */
static char *lock_file_of(int device)
{
    char *dir = g_path_get_dirname(ledger_path);
    char *suffix = g_strdup_printf(".dev%d.lock", device);
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;
    char *found = NULL;

    while (d && !found && (name = g_dir_read_name(d)))
        if (g_str_has_prefix(name, "ledger.") && g_str_has_suffix(name, suffix))
            found = g_build_filename(dir, name, NULL);
    if (d)
        g_dir_close(d);
    g_free(suffix);
    g_free(dir);
    return found;
}

/* Bytes over a lock file's content (of record data[0] % 4, at data[1]). */
static void scribble_lock_file(const uint8_t *data, size_t size)
{
    gpubalance_context *ctx = NULL;
    char *path;
    int fd;

    gpubalance_ledger_reset(true);
    if (gpubalance_context_open(NULL, &ctx) < 0)
        __builtin_trap(); /* a fresh ledger must open */
    gpubalance_context_close(ctx);
    if (!(path = lock_file_of(data[0] % 4)))
        return;
    fd = open(path, O_WRONLY);
    if (fd < 0 || pwrite(fd, data + 2, size - 2, data[1] % 96) < 0)
        __builtin_trap();
    close(fd);
    g_free(path);
    use_ledger();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    setup_once();
    if ((data[0] & 1) == 0) {
        int status = gpb_ledger_check_header(data + 1, size - 1, size - 1, "fuzz-ledger");

        if (status != 0 && !*gpubalance_last_error())
            __builtin_trap();
        return 0;
    }
    if (size >= 3 && (data[0] & 2))
        scribble_lock_file(data + 1, size - 1);
    else if (size >= 3)
        scribble_and_use(data + 1, size - 1);
    return 0;
}
