/* test_ledger.c - a damaged, truncated, foreign, newer or unsafe ledger is
 * a clear error naming the file and the way out; reset moves it aside and
 * never discards live leases unasked. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "ledger.h"

/* Creates a valid ledger by opening a context once; returns its path. */
static char *make_ledger(void)
{
    gpb_test_env("[general]\ndiscover=false\n[device:gpu0]\nbackend=sim\nmax-sessions=2\n");
    gpubalance_context_close(gpb_test_open());
    return gpb_test_ledger_path();
}

static void poke(const char *path, off_t offset, const void *bytes, size_t n)
{
    int fd = open(path, O_WRONLY);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pwrite(fd, bytes, n, offset), ==, (ssize_t)n);
    close(fd);
}

/* Opening fails with status, and the message names the file and says
 * what to do. */
static void assert_open_fails(const char *path, int status, const char *why)
{
    gpubalance_context *ctx = NULL;

    g_assert_cmpint(gpubalance_context_open(NULL, &ctx), ==, status);
    g_assert_null(ctx);
    gpb_assert_contains(gpubalance_last_error(), path);
    gpb_assert_contains(gpubalance_last_error(), why);
    gpb_assert_contains(gpubalance_last_error(), "gpubalance reset");
}

static void random_bytes_are_not_a_ledger(void)
{
    char *path = make_ledger();
    struct stat st;
    guint8 *junk;

    g_assert_cmpint(stat(path, &st), ==, 0);
    junk = g_malloc((gsize)st.st_size);
    for (off_t i = 0; i < st.st_size; i++)
        junk[i] = (guint8)g_random_int();
    junk[0] = 'X'; /* never the magic by chance */
    g_assert_true(g_file_set_contents(path, (const char *)junk, st.st_size, NULL));
    g_chmod(path, 0600);
    assert_open_fails(path, GPUBALANCE_ERR_LEDGER_DAMAGED, "is not a gpubalance ledger (wrong magic number)");
    g_free(junk);
    g_free(path);
}

static void truncated_ledger_is_refused(void)
{
    char *path = make_ledger();

    g_assert_cmpint(truncate(path, 100000), ==, 0);
    assert_open_fails(path, GPUBALANCE_ERR_LEDGER_DAMAGED, "is truncated (100000 of");
    g_assert_cmpint(truncate(path, 20), ==, 0);
    assert_open_fails(path, GPUBALANCE_ERR_LEDGER_DAMAGED, "is truncated (20 bytes, no complete header)");
    g_assert_cmpint(truncate(path, 0), ==, 0);
    assert_open_fails(path, GPUBALANCE_ERR_LEDGER_DAMAGED, "is truncated");
    g_free(path);
}

static void wrong_magic_is_refused(void)
{
    char *path = make_ledger();

    poke(path, 0, "LMDBLMDB", 8);
    assert_open_fails(path, GPUBALANCE_ERR_LEDGER_DAMAGED, "wrong magic number");
    g_free(path);
}

static void newer_format_is_refused_by_name(void)
{
    char *path = make_ledger();
    uint32_t format = 99;

    poke(path, 8, &format, sizeof(format));
    assert_open_fails(path, GPUBALANCE_ERR_LEDGER_NEWER, "has format 99, written by a newer gpubalance");
    g_free(path);
}

static void damaged_header_fails_its_crc(void)
{
    char *path = make_ledger();
    uint32_t slots = 1;

    poke(path, 36, &slots, sizeof(slots)); /* slot_capacity */
    assert_open_fails(path, GPUBALANCE_ERR_LEDGER_DAMAGED, "damaged header (CRC mismatch)");
    g_free(path);
}

static void symlink_in_place_of_the_file_is_refused(void)
{
    char *path = make_ledger();
    char *elsewhere = g_strconcat(path, ".real", NULL);

    g_assert_cmpint(g_rename(path, elsewhere), ==, 0);
    g_assert_cmpint(symlink(elsewhere, path), ==, 0);
    assert_open_fails(path, GPUBALANCE_ERR_LEDGER_UNSAFE, "is a symbolic link");
    g_free(elsewhere);
    g_free(path);
}

static void unsafe_directory_is_refused(void)
{
    gpubalance_context *ctx = NULL;
    const char *dir = gpb_test_env(NULL);
    char *ledger_dir = g_build_filename(dir, "ledger", NULL);
    char *target = g_build_filename(dir, "real", NULL);

    g_assert_cmpint(g_mkdir(ledger_dir, 0777), ==, 0);
    g_assert_cmpint(g_chmod(ledger_dir, 0777), ==, 0);
    g_assert_cmpint(gpubalance_context_open(NULL, &ctx), ==, GPUBALANCE_ERR_LEDGER_UNSAFE);
    gpb_assert_contains(gpubalance_last_error(), "is writable by everyone (mode 0777)");
    g_assert_cmpint(g_rmdir(ledger_dir), ==, 0);
    g_assert_cmpint(g_mkdir(target, 0700), ==, 0);
    g_assert_cmpint(symlink(target, ledger_dir), ==, 0);
    g_assert_cmpint(gpubalance_context_open(NULL, &ctx), ==, GPUBALANCE_ERR_LEDGER_UNSAFE);
    gpb_assert_contains(gpubalance_last_error(), "is a symbolic link");
    g_free(ledger_dir);
    g_free(target);
}

static void world_writable_file_is_refused(void)
{
    char *path = make_ledger();

    g_assert_cmpint(g_chmod(path, 0666), ==, 0);
    assert_open_fails(path, GPUBALANCE_ERR_LEDGER_UNSAFE, "is writable by everyone");
    g_free(path);
}

static int count_aside(const char *path)
{
    char *dir = g_path_get_dirname(path);
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;
    int n = 0;

    while ((name = g_dir_read_name(d)))
        if (strstr(name, "ledger.damaged-"))
            n++;
    g_dir_close(d);
    g_free(dir);
    return n;
}

static void reset_moves_a_damaged_ledger_aside(void)
{
    char *path = make_ledger();
    gpubalance_context *ctx;

    poke(path, 0, "garbage!", 8);
    g_assert_cmpint(gpubalance_ledger_reset(false), ==, 0);
    g_assert_cmpint(count_aside(path), ==, 1); /* kept for inspection */
    ctx = gpb_test_open();
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0);
    gpubalance_context_close(ctx);
    g_free(path);
}

static void reset_refuses_while_leases_are_live(void)
{
    char *path = make_ledger();
    gpubalance_context *ctx = gpb_test_open();
    gpubalance_stream *s = gpb_test_stream("h264", 1920, 1080, 30);
    gpubalance_lease *l = gpb_test_acquire(ctx, s);

    g_assert_cmpint(gpubalance_ledger_reset(false), ==, GPUBALANCE_ERR_BUSY);
    gpb_assert_contains(gpubalance_last_error(), "1 lease(s) are live");
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 1);
    gpubalance_lease_release(l);
    g_assert_cmpint(gpubalance_ledger_reset(false), ==, 0);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
    g_free(path);
}

/* --force starts a new ledger, but a lease that is still live stays
 * counted in it (rebuilt from the lock files), and its holder's context
 * moves to the new file and ends it there. */
static void reset_with_force_keeps_live_leases_counted(void)
{
    char *path = make_ledger();
    gpubalance_context *ctx = gpb_test_open();
    gpubalance_stream *s = gpb_test_stream("h264", 1920, 1080, 30);
    gpubalance_lease *l = gpb_test_acquire(ctx, s);
    gpubalance_context *fresh;

    g_assert_cmpint(gpubalance_ledger_reset(true), ==, 0);
    fresh = gpb_test_open();
    g_assert_cmpint(gpb_test_total_leases(fresh), ==, 1);
    g_assert_cmpint(gpb_test_sessions(fresh, "sim:gpu0"), ==, 1);
    gpubalance_lease_release(l);
    g_assert_cmpint(gpb_test_total_leases(fresh), ==, 0);
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0);
    gpubalance_context_close(fresh);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
    g_free(path);
}

static void garbage_in_the_tables_never_crashes(void)
{
    char *path = make_ledger();
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *l;
    guint8 junk[65536];

    /* Everything after the CRC-covered header is shared, mutable state:
     * fill the device table, pool table and slot map with noise. */
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (guint8)g_random_int();
    poke(path, 512, junk, sizeof(junk));
    ctx = gpb_test_open();
    s = gpb_test_stream("h264", 1920, 1080, 30);
    l = gpb_test_acquire(ctx, s);
    g_assert_nonnull(gpubalance_lease_device(l));
    gpubalance_lease_release(l);
    g_assert_cmpint(gpb_test_total_leases(ctx), >=, 0);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
    g_free(path);
}

static void concurrent_creators_agree_on_one_file(void)
{
    pid_t children[8];

    gpb_test_env("[general]\ndiscover=false\n");
    for (int i = 0; i < 8; i++) {
        children[i] = fork();
        if (children[i] == 0) {
            gpubalance_context *ctx = NULL;

            _exit(gpubalance_context_open(NULL, &ctx) == 0 ? 0 : 1);
        }
    }
    for (int i = 0; i < 8; i++) {
        int status;

        waitpid(children[i], &status, 0);
        g_assert_true(WIFEXITED(status));
        g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    }
}

static const gpb_test_case cases[] = {
    {"random_bytes_are_not_a_ledger", random_bytes_are_not_a_ledger},
    {"truncated_ledger_is_refused", truncated_ledger_is_refused},
    {"wrong_magic_is_refused", wrong_magic_is_refused},
    {"newer_format_is_refused_by_name", newer_format_is_refused_by_name},
    {"damaged_header_fails_its_crc", damaged_header_fails_its_crc},
    {"symlink_in_place_of_the_file_is_refused", symlink_in_place_of_the_file_is_refused},
    {"unsafe_directory_is_refused", unsafe_directory_is_refused},
    {"world_writable_file_is_refused", world_writable_file_is_refused},
    {"reset_moves_a_damaged_ledger_aside", reset_moves_a_damaged_ledger_aside},
    {"reset_refuses_while_leases_are_live", reset_refuses_while_leases_are_live},
    {"reset_with_force_keeps_live_leases_counted", reset_with_force_keeps_live_leases_counted},
    {"garbage_in_the_tables_never_crashes", garbage_in_the_tables_never_crashes},
    {"concurrent_creators_agree_on_one_file", concurrent_creators_agree_on_one_file},
};

GPB_TEST_MAIN(cases)
