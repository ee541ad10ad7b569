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
#include "util.h"

/* The header the CRC covers, and the dynamic counters after it; the
 * tables follow. */
#define LEDGER_HEADER_SIZE 512

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

/* Every byte after the header (device, pool and slot tables) replaced by
 * noise: the library neither crashes nor trusts it. The noise shows no
 * lease, the configured limit holds (2 on gpu0, then software), and the
 * leases taken are all that is counted, before and after release. */
static void garbage_in_the_tables_never_crashes(void)
{
    for (guint32 seed = 1; seed <= 3; seed++) {
        char *path = make_ledger();
        GRand *rand = g_rand_new_with_seed(seed);
        gpubalance_context *ctx;
        gpubalance_snapshot *snap;
        gpubalance_stream *s;
        gpubalance_lease *l[3];
        struct stat st;
        guint8 *junk;
        size_t n;

        g_assert_cmpint(stat(path, &st), ==, 0);
        n = (size_t)st.st_size - LEDGER_HEADER_SIZE;
        junk = g_malloc(n);
        for (size_t i = 0; i < n; i++)
            junk[i] = (guint8)g_rand_int(rand);
        poke(path, LEDGER_HEADER_SIZE, junk, n);
        ctx = gpb_test_open();
        g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0);
        s = gpb_test_stream("h264", 1920, 1080, 30);
        for (int i = 0; i < 3; i++)
            l[i] = gpb_test_acquire(ctx, s);
        g_assert_cmpstr(gpubalance_lease_device(l[0]), ==, "sim:gpu0");
        g_assert_cmpstr(gpubalance_lease_device(l[1]), ==, "sim:gpu0");
        g_assert_cmpstr(gpubalance_lease_device(l[2]), ==, "software");
        g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
        g_assert_cmpuint(gpubalance_snapshot_n_leases(snap), ==, 3);
        g_assert_cmpint(gpb_test_device(snap, "sim:gpu0")->sessions, ==, 2);
        g_assert_cmpint(gpb_test_device(snap, "software")->sessions, ==, 1);
        gpubalance_snapshot_free(snap);
        for (int i = 0; i < 3; i++)
            gpubalance_lease_release(l[i]);
        g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
        g_assert_cmpuint(gpubalance_snapshot_n_leases(snap), ==, 0);
        for (size_t i = 0; i < gpubalance_snapshot_n_devices(snap); i++) {
            g_assert_cmpint(gpubalance_snapshot_device(snap, i)->sessions, ==, 0);
            g_assert_cmpfloat(gpubalance_snapshot_device(snap, i)->load, ==, 0);
        }
        gpubalance_snapshot_free(snap);
        gpubalance_stream_free(s);
        gpubalance_context_close(ctx);
        g_rand_free(rand);
        g_free(junk);
        g_free(path);
    }
}

#define CREATORS 8

/* A creator: opens the ledger as soon as the parent says go, takes a
 * lease, reports the ledger's inode and holds the lease until the parent
 * closes its end of the hold pipe. Exit 0, or the step that failed. */
static G_GNUC_NORETURN void creator(int go_fd, int hold_fd, int report_fd)
{
    gpubalance_context *ctx = NULL;
    gpubalance_stream *s = NULL;
    gpubalance_lease *l = NULL;
    struct stat st;
    char c;

    if (read(go_fd, &c, 1) != 1)
        _exit(2);
    if (gpubalance_context_open(NULL, &ctx) < 0)
        _exit(3);
    gpubalance_stream_new(&s);
    if (gpubalance_lease_acquire(ctx, s, &l) < 0)
        _exit(4);
    if (stat(gpubalance_context_ledger_path(ctx), &st) < 0)
        _exit(5);
    dprintf(report_fd, "%llu\n", (unsigned long long)st.st_ino);
    while (read(hold_fd, &c, 1) > 0)
        ;
    gpubalance_lease_release(l);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
    _exit(0);
}

/* Eight processes find no ledger and create one at the same moment: they
 * all end up in the same file (their leases are counted together), and no
 * half-written temporary file is left behind. */
static void concurrent_creators_agree_on_one_file(void)
{
    pid_t children[CREATORS];
    int go[2], hold[2], report[2];
    char *path, *dir;
    struct stat st;
    gpubalance_context *ctx;
    GDir *d;
    const char *name;

    gpb_test_env("[general]\ndiscover=false\n[device:gpu0]\nbackend=sim\n");
    path = gpb_test_ledger_path();
    g_assert_cmpint(pipe(go), ==, 0);
    g_assert_cmpint(pipe(hold), ==, 0);
    g_assert_cmpint(pipe(report), ==, 0);
    for (int i = 0; i < CREATORS; i++) {
        children[i] = fork();
        g_assert_cmpint(children[i], >=, 0);
        if (children[i] == 0) {
            close(go[1]);
            close(hold[1]);
            close(report[0]);
            creator(go[0], hold[0], report[1]);
        }
    }
    close(go[0]);
    close(hold[0]);
    close(report[1]);
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    for (int i = 0; i < CREATORS; i++)
        g_assert_cmpint(write(go[1], "g", 1), ==, 1); /* all start together */
    for (int i = 0; i < CREATORS; i++) {
        char *line = gpb_read_line(report[0]);

        g_assert_cmpint(stat(path, &st), ==, 0);
        if (g_ascii_strtoull(line, NULL, 10) != (guint64)st.st_ino)
            g_error("creator %d used ledger inode %s, the file in place is inode %llu", i, line,
                    (unsigned long long)st.st_ino);
        g_free(line);
    }
    ctx = gpb_test_open();
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, CREATORS);
    dir = g_path_get_dirname(path);
    d = g_dir_open(dir, 0, NULL);
    while ((name = g_dir_read_name(d)))
        if (strstr(name, ".new-"))
            g_error("a temporary file was left behind: %s", name);
    g_dir_close(d);
    close(hold[1]); /* the creators release and exit */
    for (int i = 0; i < CREATORS; i++) {
        int status;

        g_assert_cmpint(waitpid(children[i], &status, 0), ==, children[i]);
        g_assert_true(WIFEXITED(status));
        g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    }
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0);
    gpubalance_context_close(ctx);
    close(go[1]);
    close(report[0]);
    g_free(dir);
    g_free(path);
}

/* A frozen clock, so that no periodic sweep (once a second) can repair
 * the counts in place of the one under test. */
static uint64_t frozen_clock(void)
{
    return 1000ull * 1000 * 1000 * 1000;
}

/* Dies inside the ledger's critical section, halfway through a grant: a
 * slot of gpu0 is claimed and counted (its counts sealed, as every count
 * change is), but the process dies before it unlocks, and its lease lock
 * goes with it. gpu0's count says one session that holds no lock, and the
 * counts pass their CRC (a stray write would not): only the flag tells
 * the next process to recount. */
static G_GNUC_NORETURN void die_inside_the_critical_section(void)
{
    gpb_slot_record record = {.state = GPUBALANCE_LEASE_GRANTED, .cost_milli = 1000, .pid = (int32_t)getpid()};
    gpb_ledger *ledger;
    int fd;

    if (gpb_ledger_open(NULL, &ledger) < 0 || gpb_ledger_lock(ledger) < 0)
        _exit(2);
    gpb_ledger_sweep(ledger); /* the last sweep is "now" */
    if (gpb_ledger_claim(ledger, gpb_ledger_device_index(ledger, "sim:gpu0", GPUBALANCE_BACKEND_SIM), &record, &fd) < 0)
        _exit(3);
    _exit(0); /* without unlocking: the kernel drops the locks, the flag stays */
}

/* The next process to take the lock finds the critical-section flag set
 * and rebuilds the counts from the locks before deciding: two devices
 * without limits (counts only break ties) tie again, and the first wins. */
static void death_inside_the_critical_section_is_swept_by_the_next_process(void)
{
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *l;
    pid_t child;
    int status;

    gpb_set_clock(frozen_clock);
    gpb_test_env("[general]\ndiscover=false\norder=nvenc\n"
                 "[device:gpu0]\nbackend=sim\n[device:gpu1]\nbackend=sim\n");
    ctx = gpb_test_open();
    child = fork();
    g_assert_cmpint(child, >=, 0);
    if (child == 0)
        die_inside_the_critical_section();
    g_assert_cmpint(waitpid(child, &status, 0), ==, child);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    s = gpb_test_stream("h264", 1920, 1080, 30);
    l = gpb_test_acquire(ctx, s);
    g_assert_cmpstr(gpubalance_lease_device(l), ==, "sim:gpu0"); /* 0 and 0 sessions: a tie */
    gpubalance_lease_release(l);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
    gpb_set_clock(NULL);
}

static const gpb_test_case cases[] = {
    GPB_TEST(random_bytes_are_not_a_ledger),
    GPB_TEST(truncated_ledger_is_refused),
    GPB_TEST(wrong_magic_is_refused),
    GPB_TEST(newer_format_is_refused_by_name),
    GPB_TEST(damaged_header_fails_its_crc),
    GPB_TEST(symlink_in_place_of_the_file_is_refused),
    GPB_TEST(unsafe_directory_is_refused),
    GPB_TEST(world_writable_file_is_refused),
    GPB_TEST(reset_moves_a_damaged_ledger_aside),
    GPB_TEST(reset_refuses_while_leases_are_live),
    GPB_TEST(garbage_in_the_tables_never_crashes),
    GPB_TEST(concurrent_creators_agree_on_one_file),
    GPB_TEST(death_inside_the_critical_section_is_swept_by_the_next_process),
    GPB_TEST(reset_with_force_keeps_live_leases_counted),
};

GPB_TEST_MAIN(cases)
