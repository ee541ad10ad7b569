/* helpers.c - see helpers.h. */
#define _GNU_SOURCE
#include "helpers.h"

#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char *test_dir;
static pid_t test_owner;

void gpb_test_cleanup(void)
{
    /* Forked children exit through _exit or exec; only the test itself
     * removes the directory. */
    if (test_dir && getpid() == test_owner && !g_getenv("GPB_TEST_KEEP"))
        gpb_remove_tree(test_dir);
    g_clear_pointer(&test_dir, g_free);
}

static void cleanup(void)
{
    gpb_test_cleanup();
}

const char *gpb_test_env(const char *config_text)
{
    char *ledger_dir;

    if (test_dir) { /* a second environment in one test: drop the first */
        gpb_remove_tree(test_dir);
        g_free(test_dir);
    } else {
        atexit(cleanup);
    }
    test_dir = g_dir_make_tmp("gpubalance-test-XXXXXX", NULL);
    g_assert_nonnull(test_dir);
    test_owner = getpid();
    ledger_dir = g_build_filename(test_dir, "ledger", NULL);
    g_setenv("GPUBALANCE_DIR", ledger_dir, TRUE);
    g_free(ledger_dir);
    if (config_text) {
        char *path = g_build_filename(test_dir, "gpubalance.conf", NULL);

        g_assert_true(g_file_set_contents(path, config_text, -1, NULL));
        g_setenv("GPUBALANCE_CONFIG", path, TRUE);
        g_free(path);
    } else {
        g_unsetenv("GPUBALANCE_CONFIG");
    }
    return test_dir;
}

char *gpb_test_ledger_path(void)
{
    return g_build_filename(g_getenv("GPUBALANCE_DIR"), "ledger", NULL);
}

const char *gpb_test_bin(void)
{
    const char *path = g_getenv("GPUBALANCE_BIN");

    g_assert_nonnull(path);
    return path;
}

int gpb_test_run(const char *const *argv, char **out, char **err)
{
    GError *error = NULL;
    int status;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, out, err, &status, &error))
        g_error("spawn %s: %s", argv[0], error->message);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

gpubalance_context *gpb_test_open(void)
{
    gpubalance_context *ctx = NULL;
    int status = gpubalance_context_open(NULL, &ctx);

    if (status < 0)
        g_error("gpubalance_context_open: %s", gpubalance_last_error());
    return ctx;
}

gpubalance_stream *gpb_test_stream(const char *codec, int width, int height, double fps)
{
    gpubalance_stream *s;

    g_assert_cmpint(gpubalance_stream_new(&s), ==, 0);
    g_assert_cmpint(gpubalance_stream_set_codec(s, (gpubalance_codec)gpubalance_codec_from_name(codec)), ==, 0);
    g_assert_cmpint(gpubalance_stream_set_size(s, width, height), ==, 0);
    g_assert_cmpint(gpubalance_stream_set_fps(s, fps), ==, 0);
    return s;
}

gpubalance_lease *gpb_test_acquire(gpubalance_context *ctx, const gpubalance_stream *stream)
{
    gpubalance_lease *lease = NULL;
    int status = gpubalance_lease_acquire(ctx, stream, &lease);

    if (status < 0)
        g_error("gpubalance_lease_acquire: %s (%s)", gpubalance_strerror(status), gpubalance_last_error());
    return lease;
}

void gpb_test_setup(const char *config_text, gpubalance_context **ctx, gpubalance_stream **stream)
{
    gpb_test_env(config_text);
    *ctx = gpb_test_open();
    *stream = gpb_test_stream("h264", 1920, 1080, 30);
}

gpubalance_lease *gpb_test_start(const char *config_text, gpubalance_context **ctx, gpubalance_stream **stream)
{
    gpb_test_setup(config_text, ctx, stream);
    return gpb_test_acquire(*ctx, *stream);
}

const gpubalance_device_info *gpb_test_device(const gpubalance_snapshot *snap, const char *id)
{
    for (size_t i = 0; i < gpubalance_snapshot_n_devices(snap); i++)
        if (strcmp(gpubalance_snapshot_device(snap, i)->id, id) == 0)
            return gpubalance_snapshot_device(snap, i);
    g_error("no device %s in the snapshot", id);
    return NULL;
}

/* The device as a fresh snapshot sees it; its strings are not kept. */
static gpubalance_device_info device_now(gpubalance_context *ctx, const char *device_id)
{
    gpubalance_snapshot *snap;
    gpubalance_device_info info;

    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    info = *gpb_test_device(snap, device_id);
    gpubalance_snapshot_free(snap);
    return info;
}

int gpb_test_sessions(gpubalance_context *ctx, const char *device_id)
{
    return device_now(ctx, device_id).sessions;
}

int gpb_test_total_leases(gpubalance_context *ctx)
{
    gpubalance_snapshot *snap;
    int n;

    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    n = (int)gpubalance_snapshot_n_leases(snap);
    gpubalance_snapshot_free(snap);
    return n;
}

int gpb_test_learned_limit(gpubalance_context *ctx, const char *device_id)
{
    return device_now(ctx, device_id).learned_limit;
}

int gpb_test_pool_learned_limit(gpubalance_context *ctx, const char *pool)
{
    gpubalance_snapshot *snap;
    int n = -2;

    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    for (size_t i = 0; i < gpubalance_snapshot_n_pools(snap); i++)
        if (strcmp(gpubalance_snapshot_pool(snap, i)->name, pool) == 0)
            n = gpubalance_snapshot_pool(snap, i)->learned_limit;
    gpubalance_snapshot_free(snap);
    g_assert_cmpint(n, !=, -2);
    return n;
}

void gpb_assert_contains(const char *haystack, const char *needle)
{
    if (!haystack || !strstr(haystack, needle))
        g_error("expected \"%s\" in: %s\n(expected \"%s\" above)", needle, haystack ? haystack : "(null)", needle);
}

char *gpb_read_line(int fd)
{
    GString *line = g_string_new(NULL);
    char c;

    while (read(fd, &c, 1) == 1 && c != '\n')
        g_string_append_c(line, c);
    return g_string_free(line, FALSE);
}
