/* test_hostile.c - the ledger is shared by every process of a host, so no
 * process may freeze, crash or mislead the others: a stopped holder of the
 * header lock, a full or tiny file system, a file truncated or replaced
 * under a running process, bytes flipped in every table, files swapped for
 * links, several users in one group directory, resets and exhaustion.
 * Every wait is on a pipe or waitpid(); nothing sleeps to synchronise. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "ledger.h"

static const char pool_config[] = "[general]\n"
                                  "discover=false\n"
                                  "order=nvenc,software\n"
                                  "when-full=fail\n" GPB_TEST_SIMS_IN_A_POOL_OF_3;

/* ---- child processes ---------------------------------------------------- */

/* A child that runs body, reports one byte on a pipe when ready, and then
 * waits until the parent closes its end of a second pipe (or kills it). */
typedef struct {
    pid_t pid;
    int ready; /* read end */
    int hold;  /* write end: closing it lets the child finish */
} child;

typedef void (*child_body)(void *data);

/* The parent's ends of every child's pipes, closed in each new child: a
 * child holding another's hold pipe would keep it from ever finishing. */
static int parent_ends[64];
static int n_parent_ends;

static child start_child(child_body body, void *data)
{
    int ready[2], hold[2];
    pid_t parent = getpid();
    child c;

    g_assert_cmpint(pipe(ready), ==, 0);
    g_assert_cmpint(pipe(hold), ==, 0);
    c.pid = fork();
    g_assert_cmpint(c.pid, >=, 0);
    if (c.pid == 0) {
        char byte = 'r';

        /* a stopped child must not outlive a test that failed */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(6);
        for (int i = 0; i < n_parent_ends; i++)
            close(parent_ends[i]);
        close(ready[0]);
        close(hold[1]);
        body(data);
        if (write(ready[1], &byte, 1) != 1)
            _exit(3);
        while (read(hold[0], &byte, 1) > 0)
            ;
        _exit(0);
    }
    close(ready[1]);
    close(hold[0]);
    c.ready = ready[0];
    c.hold = hold[1];
    if (n_parent_ends + 2 <= (int)G_N_ELEMENTS(parent_ends)) {
        parent_ends[n_parent_ends++] = c.ready;
        parent_ends[n_parent_ends++] = c.hold;
    }
    return c;
}

static void forget_parent_ends(const child *c)
{
    for (int i = 0; i < n_parent_ends; i++)
        if (parent_ends[i] == c->ready || parent_ends[i] == c->hold)
            parent_ends[i--] = parent_ends[--n_parent_ends];
}

/* Waits for the child's ready byte; false if it died first. */
static bool child_ready(const child *c)
{
    char byte;

    return read(c->ready, &byte, 1) == 1;
}

static int finish_child(child *c)
{
    int status;

    forget_parent_ends(c);
    close(c->hold);
    close(c->ready);
    g_assert_cmpint(waitpid(c->pid, &status, 0), ==, c->pid);
    return status;
}

static void kill_child(child *c)
{
    kill(c->pid, SIGKILL);
    finish_child(c);
}

/* Child bodies. */
static void hold_header_lock(void *data)
{
    gpb_ledger *ledger;

    (void)data;
    if (gpb_ledger_open(NULL, &ledger) < 0 || gpb_ledger_lock(ledger) < 0)
        _exit(2);
}

static void hold_a_lease(void *data)
{
    gpubalance_context *ctx = NULL;
    gpubalance_stream *s = gpb_test_stream("h264", 1920, 1080, 30);
    gpubalance_lease *lease = NULL;

    if (gpubalance_context_open(NULL, &ctx) < 0 || gpubalance_lease_acquire(ctx, s, &lease) < 0)
        _exit(2);
    if (data && strcmp(gpubalance_lease_device(lease), data) != 0)
        _exit(4);
}

/* Stops the child and waits until the kernel reports it stopped. */
static void stop_child(const child *c)
{
    int status;

    g_assert_cmpint(kill(c->pid, SIGSTOP), ==, 0);
    g_assert_cmpint(waitpid(c->pid, &status, WUNTRACED), ==, c->pid);
    g_assert_true(WIFSTOPPED(status));
}

/* ---- 1. no freeze -------------------------------------------------------- */

static void assert_names_stopped_holder(const char *message, pid_t holder)
{
    char *pid_text = g_strdup_printf("pid %d", (int)holder);
    char *ledger = gpb_test_ledger_path();

    gpb_assert_contains(message, ledger);
    gpb_assert_contains(message, pid_text);
    gpb_assert_contains(message, "made no progress");
    gpb_assert_contains(message, "is stopped (SIGSTOP"); /* seen stopped: not a wait run to its longest */
    g_free(pid_text);
    g_free(ledger);
}

/* A process stopped while holding the header lock: placement, status,
 * opening a context, releasing a lease and reset all fail with an error
 * naming the ledger and the holder instead of waiting for it. */
static void a_stopped_lock_holder_freezes_no_one(void)
{
    gpubalance_context *ctx, *other = NULL;
    gpubalance_stream *s;
    gpubalance_lease *lease, *refused = NULL;
    gpubalance_snapshot *snap = NULL;
    child holder;

    gpb_test_setup(pool_config, &ctx, &s);
    lease = gpb_test_acquire(ctx, s);
    holder = start_child(hold_header_lock, NULL);
    g_assert_true(child_ready(&holder));
    stop_child(&holder);

    g_assert_cmpint(gpubalance_lease_acquire(ctx, s, &refused), ==, GPUBALANCE_ERR_LEDGER_IO);
    g_assert_null(refused);
    assert_names_stopped_holder(gpubalance_last_error(), holder.pid);
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, GPUBALANCE_ERR_LEDGER_IO);
    assert_names_stopped_holder(gpubalance_last_error(), holder.pid);
    g_assert_cmpint(gpubalance_context_open(NULL, &other), ==, GPUBALANCE_ERR_LEDGER_IO);
    assert_names_stopped_holder(gpubalance_last_error(), holder.pid);
    g_assert_cmpint(gpubalance_ledger_reset(true), ==, GPUBALANCE_ERR_LEDGER_IO);
    assert_names_stopped_holder(gpubalance_last_error(), holder.pid);
    gpubalance_lease_release(lease); /* cannot lock: the lease ends with its descriptor */

    kill(holder.pid, SIGCONT);
    finish_child(&holder);
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0);
    gpubalance_lease_release(gpb_test_acquire(ctx, s));
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

/* The command says the same, and exits. */
static void a_stopped_lock_holder_fails_the_command_clearly(void)
{
    const char *argv[] = {
        g_getenv("GPUBALANCE_BIN"), "pick", "--codec", "h264", "--width", "640", "--height", "480", NULL};
    char *out = NULL, *err = NULL;
    child holder;
    int status;

    gpb_test_env(pool_config);
    gpubalance_context_close(gpb_test_open());
    holder = start_child(hold_header_lock, NULL);
    g_assert_true(child_ready(&holder));
    stop_child(&holder);
    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err, &status, NULL));
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 1);
    gpb_assert_contains(err, "gpubalance pick: ledger ");
    assert_names_stopped_holder(err, holder.pid);
    kill_child(&holder);
    g_free(out);
    g_free(err);
}

/* A holder killed inside its critical section hands over at once. */
static void a_killed_lock_holder_is_replaced_at_once(void)
{
    gpubalance_context *ctx;
    gpubalance_stream *s;
    child holder;

    gpb_test_setup(pool_config, &ctx, &s);
    holder = start_child(hold_header_lock, NULL);
    g_assert_true(child_ready(&holder));
    kill_child(&holder);
    gpubalance_lease_release(gpb_test_acquire(ctx, s));
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

/* Runs `gpubalance ARGS...` to its end; returns the wait status, and its
 * standard error in *err. */
static int run_command(const char *const *args, char **err)
{
    const char *argv[12] = {g_getenv("GPUBALANCE_BIN")};
    int n = 1, status;

    for (; args[n - 1] && n < (int)G_N_ELEMENTS(argv) - 1; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    g_assert_true(
        g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, NULL, err, &status, NULL));
    return status;
}

/* Is this system-call stop the successful return of an F_OFD_SETLK(W)
 * write lock on byte 0 of the ledger file, the header lock? entry is the
 * matching entry stop's information. */
static bool takes_header_lock(pid_t pid, const struct __ptrace_syscall_info *entry)
{
    struct flock fl;
    struct iovec local = {&fl, sizeof(fl)}, remote = {(void *)(uintptr_t)entry->entry.args[2], sizeof(fl)};
    char link[64], target[4096];
    ssize_t n;

    if (entry->entry.nr != SYS_fcntl || (entry->entry.args[1] != F_OFD_SETLK && entry->entry.args[1] != F_OFD_SETLKW))
        return false;
    if (process_vm_readv(pid, &local, 1, &remote, 1, 0) != (ssize_t)sizeof(fl) || fl.l_type != F_WRLCK ||
        fl.l_start != 0)
        return false;
    snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)pid, (int)entry->entry.args[0]);
    if ((n = readlink(link, target, sizeof(target) - 1)) < 0)
        return false;
    target[n] = '\0';
    return g_str_has_suffix(target, "/ledger");
}

/* Starts `gpubalance ARGS...` traced, lets it run system call by system
 * call until it has taken the ledger's header lock, and leaves it stopped
 * there by SIGSTOP (state T, no longer traced): a process stopped while
 * holding the lock, at a point chosen by the kernel's answer, not by
 * time. Skips where ptrace is not allowed. */
static pid_t start_stopped_in_header_lock(const char *const *args)
{
    const char *argv[12] = {g_getenv("GPUBALANCE_BIN")};
    struct __ptrace_syscall_info entry = {0}, info;
    pid_t parent = getpid(), pid;
    int n = 1, status;

    for (; args[n - 1] && n < (int)G_N_ELEMENTS(argv) - 1; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent || ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0)
            _exit(6);
        raise(SIGSTOP);
        execv(argv[0], (char **)argv);
        _exit(7);
    }
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 6)
        gpb_test_skip("ptrace is not allowed here; a holder stopped at its lock cannot be made");
    g_assert_true(WIFSTOPPED(status));
    g_assert_cmpint(ptrace(PTRACE_SETOPTIONS, pid, NULL, (void *)(long)(PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL)), ==,
                    0);
    for (int signal_to_pass = 0;;) {
        g_assert_cmpint(ptrace(PTRACE_SYSCALL, pid, NULL, (void *)(long)signal_to_pass), ==, 0);
        g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
        if (!WIFSTOPPED(status))
            g_error("gpubalance %s ended (status %#x) without taking the header lock", args[0], status);
        signal_to_pass = 0;
        if (WSTOPSIG(status) != (SIGTRAP | 0x80)) {
            if (WSTOPSIG(status) != SIGTRAP)
                signal_to_pass = WSTOPSIG(status);
            continue;
        }
        g_assert_cmpint(ptrace(PTRACE_GET_SYSCALL_INFO, pid, (void *)sizeof(info), &info), >, 0);
        if (info.op == PTRACE_SYSCALL_INFO_ENTRY) {
            entry = info;
        } else if (info.op == PTRACE_SYSCALL_INFO_EXIT && info.exit.rval == 0 && takes_header_lock(pid, &entry)) {
            break;
        }
    }
    /* The lock is held. SIGSTOP is delivered as it returns to user space
     * (a signal-delivery stop, seen by the tracer) and, passed on at the
     * detach, stops it for real. */
    g_assert_cmpint(kill(pid, SIGSTOP), ==, 0);
    g_assert_cmpint(ptrace(PTRACE_CONT, pid, NULL, NULL), ==, 0);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFSTOPPED(status) && WSTOPSIG(status) == SIGSTOP);
    g_assert_cmpint(ptrace(PTRACE_DETACH, pid, NULL, (void *)(long)SIGSTOP), ==, 0);
    g_assert_cmpint(waitpid(pid, &status, WUNTRACED), ==, pid);
    g_assert_true(WIFSTOPPED(status));
    return pid;
}

/* A command refused by the stopped reset: it ended, said so naming the
 * ledger and the reset, and changed nothing. */
static void assert_command_refused(const char *const *args, pid_t holder)
{
    char *err = NULL;
    int status = run_command(args, &err);

    if (!WIFEXITED(status) || WEXITSTATUS(status) == 0)
        g_error("gpubalance %s did not fail (status %#x): %s", args[0], status, err);
    assert_names_stopped_holder(err, holder);
    g_free(err);
}

/* `gpubalance reset --force` stopped while it holds the header lock (the
 * validation lock of its open, before it records its pid there): every
 * other user (pick, status, another reset, a lease asked of an open
 * context) fails within the bounded wait with an error naming the ledger
 * and the stopped reset, found by who holds the lock rather than by the
 * stale pid in the header (this test's own). Resumed, the reset completes
 * and everyone proceeds. */
static void a_stopped_reset_freezes_no_one(void)
{
    static const char *const reset[] = {"reset", "--force", NULL};
    static const char *const pick[] = {"pick", "--codec", "h264", "--width", "640", "--height", "480", NULL};
    static const char *const status_args[] = {"status", NULL};
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *refused = NULL;
    pid_t resetter;
    int status;

    gpb_test_env(pool_config);
    ctx = gpb_test_open(); /* the header now names this process as its last holder */
    s = gpb_test_stream("h264", 1920, 1080, 30);
    resetter = start_stopped_in_header_lock(reset);

    assert_command_refused(pick, resetter);
    assert_command_refused(status_args, resetter);
    assert_command_refused(reset, resetter);
    g_assert_cmpint(gpubalance_lease_acquire(ctx, s, &refused), ==, GPUBALANCE_ERR_LEDGER_IO);
    g_assert_null(refused);
    assert_names_stopped_holder(gpubalance_last_error(), resetter);

    g_assert_cmpint(kill(resetter, SIGCONT), ==, 0);
    g_assert_cmpint(waitpid(resetter, &status, 0), ==, resetter);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    gpubalance_lease_release(gpb_test_acquire(ctx, s)); /* in the new ledger */
    g_assert_cmpint(run_command(pick, NULL), ==, 0);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

/* ---- 2. no crash from the file system ------------------------------------ */

/* A private mount namespace with a tmpfs of size_kb at a new directory
 * under the test's; skips where that is not allowed. Returns the mount. */
static char *private_tmpfs(const char *dir, int size_kb)
{
    char *mnt = g_build_filename(dir, "tmpfs", NULL);
    char *options = g_strdup_printf("size=%dk,mode=0700", size_kb);

    if (unshare(CLONE_NEWNS) < 0)
        gpb_test_skip("cannot unshare a mount namespace here (%s); tmpfs cases not run", g_strerror(errno));
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        gpb_test_skip("cannot make mounts private here (%s)", g_strerror(errno));
    g_assert_cmpint(g_mkdir(mnt, 0700), ==, 0);
    if (mount("gpubalance-test", mnt, "tmpfs", 0, options) < 0)
        gpb_test_skip("cannot mount a tmpfs here (%s)", g_strerror(errno));
    g_free(options);
    return mnt;
}

static void use_ledger_dir(const char *dir)
{
    g_setenv("GPUBALANCE_DIR", dir, TRUE);
}

/* A file system too small for the ledger: a clear error at creation,
 * never a SIGBUS at the first write through the mapping. */
static void a_tiny_file_system_is_a_clear_error(void)
{
    const char *dir = gpb_test_env(pool_config);
    char *mnt = private_tmpfs(dir, 64);
    char *ledger_dir = g_build_filename(mnt, "ledger", NULL);
    gpubalance_context *ctx = NULL;

    use_ledger_dir(ledger_dir);
    g_assert_cmpint(gpubalance_context_open(NULL, &ctx), ==, GPUBALANCE_ERR_LEDGER_IO);
    gpb_assert_contains(gpubalance_last_error(), ledger_dir);
    gpb_assert_contains(gpubalance_last_error(), "No space left on device");
    gpb_assert_contains(gpubalance_last_error(), "the file system is full");
    umount2(mnt, MNT_DETACH);
    g_free(ledger_dir);
    g_free(mnt);
}

static void fill_file_system(const char *dir)
{
    char *path = g_build_filename(dir, "filler", NULL);
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    char block[4096] = {0};

    g_assert_cmpint(fd, >=, 0);
    while (write(fd, block, sizeof(block)) > 0)
        ;
    g_assert_cmpint(errno, ==, ENOSPC);
    close(fd);
    g_free(path);
}

/* A file system that fills up after the ledger was made: leases on the
 * devices registered keep working (their space is reserved), a new
 * device's lock file is a clear error. */
static void a_full_file_system_is_a_clear_error(void)
{
    const char *dir = gpb_test_env(pool_config);
    char *mnt = private_tmpfs(dir, 2048);
    char *ledger_dir = g_build_filename(mnt, "ledger", NULL);
    char *other_config = g_build_filename(dir, "more.conf", NULL);
    gpubalance_context *ctx, *more = NULL;
    gpubalance_stream *s;

    use_ledger_dir(ledger_dir);
    ctx = gpb_test_open();
    fill_file_system(mnt);
    s = gpb_test_stream("h264", 1920, 1080, 30);
    for (int i = 0; i < 50; i++)
        gpubalance_lease_release(gpb_test_acquire(ctx, s));
    g_assert_true(
        g_file_set_contents(other_config, "[general]\ndiscover=false\n[device:new]\nbackend=sim\n", -1, NULL));
    g_setenv("GPUBALANCE_CONFIG", other_config, TRUE);
    g_assert_cmpint(gpubalance_context_open(NULL, &more), ==, GPUBALANCE_ERR_LEDGER_IO);
    gpb_assert_contains(gpubalance_last_error(), "cannot create lock file");
    gpb_assert_contains(gpubalance_last_error(), "the file system is full");
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
    umount2(mnt, MNT_DETACH);
    g_free(other_config);
    g_free(ledger_dir);
    g_free(mnt);
}

/* Truncated under a process that has it open and mapped: noticed before
 * the mapping is touched; every call fails clearly; reset recovers. */
static void a_ledger_truncated_under_a_live_process_is_detected(void)
{
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *lease, *refused = NULL;
    gpubalance_snapshot *snap = NULL;
    char *path;

    gpb_test_env(pool_config);
    path = gpb_test_ledger_path();
    ctx = gpb_test_open();
    s = gpb_test_stream("h264", 1920, 1080, 30);
    lease = gpb_test_acquire(ctx, s);
    g_assert_cmpint(truncate(path, 4096), ==, 0);
    g_assert_cmpint(gpubalance_lease_acquire(ctx, s, &refused), ==, GPUBALANCE_ERR_LEDGER_DAMAGED);
    gpb_assert_contains(gpubalance_last_error(), "is truncated");
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, GPUBALANCE_ERR_LEDGER_DAMAGED);
    gpubalance_lease_release(lease);
    g_assert_cmpint(gpubalance_ledger_reset(false), ==, 0);
    gpubalance_lease_release(gpb_test_acquire(ctx, s)); /* moved to the new ledger */
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
    g_free(path);
}

/* The last line of defence: a truncation between the check and an access
 * through the mapping raises SIGBUS; the process survives it, and the
 * ledger reports the loss at its next lock. */
static void sigbus_on_the_mapping_is_survived(void)
{
    gpb_ledger *ledger;
    char *path;
    volatile char first;

    gpb_test_env(pool_config);
    path = gpb_test_ledger_path();
    g_assert_cmpint(gpb_ledger_open(NULL, &ledger), ==, 0);
    g_assert_cmpint(truncate(path, 0), ==, 0);
    first = gpb_ledger_slot(ledger, GPB_SLOTS - 1)->label[0]; /* faults: the page is gone */
    (void)first;
    g_assert_cmpint(gpb_ledger_lock(ledger), ==, GPUBALANCE_ERR_LEDGER_DAMAGED);
    gpb_assert_contains(gpubalance_last_error(), "is truncated");
    gpb_ledger_close(ledger);
    g_free(path);
}

/* ---- 3. no lie from the tables ------------------------------------------- */

/* Where the tables lie, as ledger.c lays them out (format 2). */
#define DEVICE_TABLE 512
#define POOL_TABLE (DEVICE_TABLE + sizeof(gpb_device_record) * GPB_MAX_DEVICES)
#define SLOT_MAP (POOL_TABLE + sizeof(gpb_pool_record) * GPB_MAX_POOLS)
#define SLOT_TABLE ((SLOT_MAP + sizeof(uint16_t) * GPB_SLOTS + 4095) & ~(size_t)4095)

static guint8 peek_byte(int fd, off_t offset)
{
    guint8 b;

    g_assert_cmpint(pread(fd, &b, 1, offset), ==, 1);
    return b;
}

static void poke_byte(int fd, off_t offset, guint8 b)
{
    g_assert_cmpint(pwrite(fd, &b, 1, offset), ==, 1);
}

/* One more stream on a pool full with 3 live leases: refused, or placed
 * off the pool, never on it; through ctx, or through a fresh context. */
static void assert_pool_holds(gpubalance_context *ctx, const gpubalance_stream *s, off_t flipped)
{
    gpubalance_context *fresh = NULL;
    gpubalance_lease *lease = NULL;
    int status;

    if (!ctx && gpubalance_context_open(NULL, &fresh) < 0)
        return; /* a clear refusal */
    status = gpubalance_lease_acquire(ctx ? ctx : fresh, s, &lease);
    if (status == 0) {
        if (g_str_has_prefix(gpubalance_lease_device(lease), "sim:"))
            g_error("byte %lld flipped: a 4th lease on the pool of 3 (%s)", (long long)flipped,
                    gpubalance_lease_device(lease));
        gpubalance_lease_release(lease);
    }
    gpubalance_context_close(fresh);
}

static void flip_and_check(gpubalance_context *ctx, const gpubalance_stream *s, int fd, off_t offset, bool fresh)
{
    guint8 original = peek_byte(fd, offset);

    poke_byte(fd, offset, original ^ 0xff);
    assert_pool_holds(fresh ? NULL : ctx, s, offset);
    poke_byte(fd, offset, original);
}

/* The pool of 3 full: three processes hold its sessions, seen by an open
 * context, with a 1080p30 stream to place and the ledger open for
 * writing. */
typedef struct {
    gpubalance_context *ctx;
    gpubalance_stream *s;
    child holders[3];
    char *path;
    int fd;
} full_pool;

static void full_pool_start(full_pool *f)
{
    gpb_test_env(pool_config);
    f->ctx = gpb_test_open();
    for (int i = 0; i < 3; i++) {
        f->holders[i] = start_child(hold_a_lease, NULL);
        g_assert_true(child_ready(&f->holders[i]));
    }
    f->s = gpb_test_stream("h264", 1920, 1080, 30);
    f->path = gpb_test_ledger_path();
    f->fd = open(f->path, O_RDWR);
    g_assert_cmpint(f->fd, >=, 0);
}

static void full_pool_end(full_pool *f)
{
    for (int i = 0; i < 3; i++)
        g_assert_cmpint(finish_child(&f->holders[i]), ==, 0);
    close(f->fd);
    g_free(f->path);
    gpubalance_stream_free(f->s);
    gpubalance_context_close(f->ctx);
}

/* Three processes hold the pool's three sessions; every byte of the
 * device and pool records, the slot map entries and the lease records
 * that decisions read is flipped in turn (and put back), and a 4th stream
 * is placed each time, by a process that knows the records and by a new
 * one: never on the pool. */
static void flipped_table_bytes_never_breach_a_cap(void)
{
    gpubalance_snapshot *snap;
    full_pool f;
    int live = 0;

    full_pool_start(&f);
    for (int device = 0; device < 2; device++)
        for (size_t b = 0; b < offsetof(gpb_device_record, probe_blob); b++)
            flip_and_check(f.ctx, f.s, f.fd, (off_t)(DEVICE_TABLE + device * sizeof(gpb_device_record) + b),
                           b < GPB_ID_SIZE || b % 4 == 0);
    for (size_t b = 0; b < sizeof(gpb_pool_record); b++)
        flip_and_check(f.ctx, f.s, f.fd, (off_t)(POOL_TABLE + b), b % 2 == 0);
    for (int slot = 0; slot < GPB_SLOTS; slot++) {
        uint16_t entry;

        g_assert_cmpint(pread(f.fd, &entry, 2, (off_t)(SLOT_MAP + 2 * slot)), ==, 2);
        if (entry == GPB_FREE_SLOT || entry > 1)
            continue;
        live++;
        flip_and_check(f.ctx, f.s, f.fd, (off_t)(SLOT_MAP + 2 * slot), false);
        flip_and_check(f.ctx, f.s, f.fd, (off_t)(SLOT_MAP + 2 * slot + 1), true);
        for (size_t b = 0; b < sizeof(gpb_slot_record); b++)
            flip_and_check(f.ctx, f.s, f.fd, (off_t)(SLOT_TABLE + slot * sizeof(gpb_slot_record) + b), b % 8 == 0);
    }
    g_assert_cmpint(live, ==, 3);
    g_assert_cmpint(gpubalance_snapshot_take(f.ctx, &snap), ==, 0);
    g_assert_cmpint(gpubalance_snapshot_pool(snap, 0)->sessions, ==, 3);
    gpubalance_snapshot_free(snap);
    full_pool_end(&f);
}

/* The two attacks of the report, written whole: a device id changed and
 * a foreign-session count made "negative". */
static void a_renamed_device_or_negative_count_is_repaired(void)
{
    const off_t foreign = DEVICE_TABLE + offsetof(gpb_device_record, foreign_sessions);
    uint32_t minus_one = UINT32_MAX;
    full_pool f;

    full_pool_start(&f);
    g_assert_cmpint(pwrite(f.fd, "sim:gpuX", 8, DEVICE_TABLE), ==, 8);
    assert_pool_holds(NULL, f.s, DEVICE_TABLE); /* a new process must not get a second record */
    assert_pool_holds(f.ctx, f.s, DEVICE_TABLE);
    g_assert_cmpint(pwrite(f.fd, &minus_one, 4, foreign), ==, 4);
    assert_pool_holds(f.ctx, f.s, foreign);
    assert_pool_holds(NULL, f.s, foreign);
    g_assert_cmpint(gpb_test_sessions(f.ctx, "sim:gpu0") + gpb_test_sessions(f.ctx, "sim:gpu1"), ==, 3);
    full_pool_end(&f);
}

/* ---- 4. files are what they claim ----------------------------------------- */

/* The last file of dir whose name has prefix and suffix, or NULL. */
static char *file_in_dir(const char *dir, const char *prefix, const char *suffix)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;
    char *found = NULL;

    while (d && (name = g_dir_read_name(d)))
        if (g_str_has_prefix(name, prefix) && g_str_has_suffix(name, suffix)) {
            g_free(found);
            found = g_build_filename(dir, name, NULL);
        }
    if (d)
        g_dir_close(d);
    return found;
}

static char *lock_file_path(int device)
{
    char *suffix = g_strdup_printf(".dev%d.lock", device);
    char *found = file_in_dir(g_getenv("GPUBALANCE_DIR"), "", suffix);

    g_free(suffix);
    g_assert_nonnull(found);
    return found;
}

static void assert_context_refused(int status, const char *what)
{
    gpubalance_context *ctx = NULL;

    g_assert_cmpint(gpubalance_context_open(NULL, &ctx), ==, status);
    g_assert_null(ctx);
    gpb_assert_contains(gpubalance_last_error(), what);
}

/* A lock file replaced by a hard link to another file: refused, and the
 * other file's mode is left alone. */
static void a_hard_linked_lock_file_is_refused_untouched(void)
{
    const char *dir = gpb_test_env(pool_config);
    char *victim = g_build_filename(dir, "victim", NULL);
    char *lock;
    struct stat st;

    gpubalance_context_close(gpb_test_open());
    lock = lock_file_path(0);
    g_assert_true(g_file_set_contents(victim, "private", -1, NULL));
    g_assert_cmpint(chmod(victim, 0600), ==, 0);
    g_assert_cmpint(unlink(lock), ==, 0);
    g_assert_cmpint(link(victim, lock), ==, 0);
    assert_context_refused(GPUBALANCE_ERR_LEDGER_UNSAFE, "has 2 hard links");
    g_assert_cmpint(stat(victim, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0600);
    g_assert_cmpint(st.st_size, ==, 7);
    g_free(lock);
    g_free(victim);
}

static void a_hard_linked_ledger_is_refused(void)
{
    const char *dir = gpb_test_env(pool_config);
    char *path = gpb_test_ledger_path();
    char *second = g_build_filename(dir, "second-name", NULL);

    gpubalance_context_close(gpb_test_open());
    g_assert_cmpint(link(path, second), ==, 0);
    assert_context_refused(GPUBALANCE_ERR_LEDGER_UNSAFE, "has 2 hard links");
    g_free(second);
    g_free(path);
}

/* A FIFO, a symbolic link or a device in place of a lock file: refused at
 * once (a FIFO is never waited on). */
static void a_lock_file_that_is_no_file_is_refused(void)
{
    char *lock;

    gpb_test_env(pool_config);
    gpubalance_context_close(gpb_test_open());
    lock = lock_file_path(1);
    g_assert_cmpint(unlink(lock), ==, 0);
    g_assert_cmpint(mkfifo(lock, 0600), ==, 0);
    assert_context_refused(GPUBALANCE_ERR_LEDGER_UNSAFE, "is not a regular file");
    g_assert_cmpint(unlink(lock), ==, 0);
    g_assert_cmpint(symlink("/dev/null", lock), ==, 0);
    assert_context_refused(GPUBALANCE_ERR_LEDGER_UNSAFE, "Too many levels of symbolic links");
    g_free(lock);
}

/* A file owned by another user and not shared with a group: refused
 * even by root (its owner alone can write it, as no one else could). */
static void a_foreign_private_file_is_refused(void)
{
    char *lock;

    if (geteuid() != 0)
        gpb_test_skip("needs root to give a file to another user");
    gpb_test_env(pool_config);
    gpubalance_context_close(gpb_test_open());
    lock = lock_file_path(0);
    g_assert_cmpint(chown(lock, 60001, 60001), ==, 0);
    g_assert_cmpint(chmod(lock, 0600), ==, 0);
    assert_context_refused(GPUBALANCE_ERR_LEDGER_UNSAFE, "belongs to uid 60001 and is not shared with a group");
    g_free(lock);
}

/* The events file (counters and event log) of the current ledger. */
static char *events_file_path(void)
{
    char *found = file_in_dir(g_getenv("GPUBALANCE_DIR"), "", ".events");

    g_assert_nonnull(found);
    return found;
}

/* The file moved aside as damaged-PID of the events file at path. */
static char *events_file_aside(const char *path)
{
    char *dir = g_path_get_dirname(path), *base = g_path_get_basename(path);
    char *prefix = g_strconcat(base, ".damaged-", NULL);
    char *found = file_in_dir(dir, prefix, "");

    g_free(prefix);
    g_free(base);
    g_free(dir);
    return found;
}

static void assert_same_file_state(const struct stat *before, const char *path, const char *content)
{
    struct stat after;
    char *text = NULL;

    g_assert_cmpint(lstat(path, &after), ==, 0);
    g_assert_cmpint(after.st_ino, ==, before->st_ino);
    g_assert_cmpint(after.st_mode, ==, before->st_mode);
    g_assert_cmpint(after.st_uid, ==, before->st_uid);
    g_assert_cmpint(after.st_gid, ==, before->st_gid);
    g_assert_cmpint(after.st_size, ==, before->st_size);
    g_assert_cmpint(after.st_mtim.tv_sec, ==, before->st_mtim.tv_sec);
    g_assert_cmpint(after.st_mtim.tv_nsec, ==, before->st_mtim.tv_nsec);
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    g_assert_cmpstr(text, ==, content);
    g_free(text);
}

/* `gpubalance pick` with what the test put in place of the events file:
 * the pick is placed all the same, its warning names the events file and
 * why it was refused, the name is moved aside and a new, sound events file
 * made in its place. */
static void assert_events_file_refused(const char *events, const char *why)
{
    static const char *const pick[] = {"pick", "--codec", "h264", "--width", "640", "--height", "480", NULL};
    char *err = NULL;
    struct stat st;

    g_assert_cmpint(run_command(pick, &err), ==, 0);
    gpb_assert_contains(err, "event log ");
    gpb_assert_contains(err, events);
    gpb_assert_contains(err, why);
    gpb_assert_contains(err, "refusing it; ");
    gpb_assert_contains(err, "moved aside to");
    g_assert_cmpint(lstat(events, &st), ==, 0);
    g_assert_true(S_ISREG(st.st_mode));
    g_assert_cmpint(st.st_nlink, ==, 1);
    g_free(err);
}

/* A private file "victim" in the test directory and the events file
 * replaced by a hard link (or a symbolic link) to it: the events file is
 * refused with why, and the victim is left as it was (content, mode,
 * times; hard: the name moved aside is still a link to it). */
static void assert_events_file_link_refused(gboolean hard, const char *why)
{
    const char *dir = gpb_test_env(pool_config);
    char *victim = g_build_filename(dir, "victim", NULL), *events;
    struct stat before;

    gpubalance_context_close(gpb_test_open());
    events = events_file_path();
    g_assert_true(g_file_set_contents(victim, "private", -1, NULL));
    g_assert_cmpint(chmod(victim, 0600), ==, 0);
    g_assert_cmpint(stat(victim, &before), ==, 0);
    g_assert_cmpint(unlink(events), ==, 0);
    g_assert_cmpint(hard ? link(victim, events) : symlink(victim, events), ==, 0);
    assert_events_file_refused(events, why);
    if (hard)
        before.st_nlink = 2;
    assert_same_file_state(&before, victim, "private");
    g_free(events);
    g_free(victim);
}

/* The events file replaced by a hard link to another file: refused like a
 * ledger or lock file so linked. */
static void a_hard_linked_events_file_is_refused_untouched(void)
{
    assert_events_file_link_refused(TRUE, "has 2 hard links");
}

/* A symbolic link in place of the events file: never followed. */
static void a_symlinked_events_file_is_refused_untouched(void)
{
    assert_events_file_link_refused(FALSE, "is a symbolic link");
}

/* An events file of another user, not shared with a group: refused, and
 * moved aside as it was (owner, mode, content). */
static void a_foreign_events_file_is_refused_untouched(void)
{
    char *events, *aside;
    struct stat before;

    if (geteuid() != 0)
        gpb_test_skip("needs root to give a file to another user");
    gpb_test_env(pool_config);
    gpubalance_context_close(gpb_test_open());
    events = events_file_path();
    g_assert_cmpint(unlink(events), ==, 0);
    g_assert_true(g_file_set_contents(events, "private", -1, NULL));
    g_assert_cmpint(chown(events, 60001, 60001), ==, 0);
    g_assert_cmpint(chmod(events, 0600), ==, 0);
    g_assert_cmpint(stat(events, &before), ==, 0);
    assert_events_file_refused(events, "belongs to uid 60001 and is not shared with a group");
    aside = events_file_aside(events);
    g_assert_nonnull(aside);
    assert_same_file_state(&before, aside, "private");
    g_free(aside);
    g_free(events);
}

/* ---- 7. several users in one group directory ------------------------------ */

#define SHARED_GID 60000

typedef struct {
    const char *name;
    uid_t uid;
    gid_t groups[2];
    int n_groups;
} actor;

static const actor root_actor = {"root", 0, {0}, 1};
static const actor member1 = {"member1", 60001, {SHARED_GID, 60001}, 2};
static const actor member2 = {"member2", 60002, {SHARED_GID, 60002}, 2};
static const actor outsider = {"outsider", 60003, {60003}, 1};

/* Becomes who (in a child process). */
static void become(const actor *who)
{
    if (setgroups((size_t)who->n_groups, who->groups) < 0 ||
        setresgid(who->groups[0], who->groups[0], who->groups[0]) < 0 || setresuid(who->uid, who->uid, who->uid) < 0)
        _exit(5);
    umask(022); /* a restrictive umask must not make shared files private */
}

typedef struct {
    const actor *who;
    const char *config;
} actor_step;

/* As step->who, opens a context with step->config (registering its
 * devices, creating what is missing) and takes one lease, held until
 * released by the parent. Exit 2: refused. */
static void act(void *data)
{
    const actor_step *step = data;
    gpubalance_context *ctx = NULL;
    gpubalance_stream *s = gpb_test_stream("h264", 1920, 1080, 30);
    gpubalance_lease *lease = NULL;

    become(step->who);
    g_setenv("GPUBALANCE_CONFIG", step->config, TRUE);
    if (gpubalance_context_open(NULL, &ctx) < 0) {
        fprintf(stderr, "%s: %s\n", step->who->name, gpubalance_last_error());
        _exit(2);
    }
    if (gpubalance_lease_acquire(ctx, s, &lease) < 0) {
        fprintf(stderr, "%s: %s\n", step->who->name, gpubalance_last_error());
        _exit(2);
    }
}

static char *write_config(const char *dir, const char *name, const char *text)
{
    char *path = g_build_filename(dir, name, NULL);

    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    g_assert_cmpint(chmod(path, 0644), ==, 0);
    return path;
}

static void empty_directory(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;

    while ((name = g_dir_read_name(d))) {
        char *path = g_build_filename(dir, name, NULL);

        g_unlink(path);
        g_free(path);
    }
    g_dir_close(d);
}

static gint compare_lines(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names, sizes, modes and change times of dir's files, sorted. */
static char *directory_listing(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    GPtrArray *lines = g_ptr_array_new_with_free_func(g_free);
    const char *name;
    GString *text = g_string_new(NULL);

    while ((name = g_dir_read_name(d))) {
        char *path = g_build_filename(dir, name, NULL);
        struct stat st;

        g_assert_cmpint(stat(path, &st), ==, 0);
        g_ptr_array_add(lines, g_strdup_printf("%s %lld %o %lld.%09ld", name, (long long)st.st_size, st.st_mode,
                                               (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec));
        g_free(path);
    }
    g_dir_close(d);
    g_ptr_array_sort(lines, compare_lines);
    for (guint i = 0; i < lines->len; i++)
        g_string_append_printf(text, "%s\n", (char *)g_ptr_array_index(lines, i));
    g_ptr_array_unref(lines);
    return g_string_free(text, FALSE);
}

/* Every ledger and lock file in dir is group-writable and in the group. */
static void assert_files_shared(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;

    while ((name = g_dir_read_name(d))) {
        char *path = g_build_filename(dir, name, NULL);
        struct stat st;

        g_assert_cmpint(stat(path, &st), ==, 0);
        if ((st.st_mode & 0660) != 0660 || st.st_gid != SHARED_GID)
            g_error("%s: mode %04o gid %u, not shared with the group", path, st.st_mode & 07777, st.st_gid);
        g_free(path);
    }
    g_dir_close(d);
}

/* In a setgid group directory (2770), two members and root take part in
 * one ledger whoever creates the ledger first and whoever creates each
 * lock file first (all 6 orders: the first creates the ledger and the
 * software device's lock file, the second gpu0's, the third gpu1's); the
 * pool's cap holds across them; a non-member is refused and changes
 * nothing. */
static void members_and_root_share_a_group_directory_in_any_order(void)
{
    static const actor *const orders[6][3] = {
        {&root_actor, &member1, &member2}, {&root_actor, &member2, &member1}, {&member1, &root_actor, &member2},
        {&member1, &member2, &root_actor}, {&member2, &root_actor, &member1}, {&member2, &member1, &root_actor},
    };
    const char *dir;
    char *ledger_dir, *software_only, *with_gpu0, *with_both;

    if (geteuid() != 0)
        gpb_test_skip("needs root to act as other users (setresuid); run the suite as root to test this");
    dir = gpb_test_env(NULL);
    g_assert_cmpint(chmod(dir, 0711), ==, 0);
    ledger_dir = g_build_filename(dir, "shared", NULL);
    g_assert_cmpint(g_mkdir(ledger_dir, 0770), ==, 0);
    g_assert_cmpint(chown(ledger_dir, 0, SHARED_GID), ==, 0);
    g_assert_cmpint(chmod(ledger_dir, 02770), ==, 0);
    g_setenv("GPUBALANCE_DIR", ledger_dir, TRUE);
    software_only = write_config(dir, "software.conf", "[general]\ndiscover=false\norder=software\n");
    with_gpu0 = write_config(dir, "gpu0.conf",
                             "[general]\ndiscover=false\norder=nvenc,software\nwhen-full=fail\n[pool:geforce]\n"
                             "max-sessions=3\n[device:gpu0]\nbackend=sim\npool=geforce\n");
    with_both = write_config(dir, "both.conf", pool_config);
    for (int o = 0; o < 6; o++) {
        const char *configs[3] = {software_only, with_gpu0, with_both};
        actor_step steps[3], last;
        child children[3], fourth;
        int status;

        empty_directory(ledger_dir);
        for (int i = 0; i < 3; i++) {
            steps[i] = (actor_step){orders[o][i], configs[i]};
            children[i] = start_child(act, &steps[i]);
            if (!child_ready(&children[i]))
                g_error("order %d: %s was refused (see its message above)", o, orders[o][i]->name);
        }
        assert_files_shared(ledger_dir);
        /* each holds one lease: the software one's, and two on the pool */
        last = (actor_step){orders[o][0], with_both};
        fourth = start_child(act, &last);
        g_assert_true(child_ready(&fourth)); /* the pool has room for one more */
        finish_child(&fourth);
        for (int i = 0; i < 3; i++)
            g_assert_cmpint(finish_child(&children[i]), ==, 0);
        {
            actor_step refused = {&outsider, with_both};
            char *before = directory_listing(ledger_dir), *after;
            child stranger = start_child(act, &refused);

            g_assert_false(child_ready(&stranger));
            status = finish_child(&stranger);
            g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 2);
            after = directory_listing(ledger_dir);
            g_assert_cmpstr(after, ==, before); /* nothing created, removed or changed */
            g_free(before);
            g_free(after);
        }
        assert_files_shared(ledger_dir);
    }
    g_free(software_only);
    g_free(with_gpu0);
    g_free(with_both);
    g_free(ledger_dir);
}

/* ---- 8. reset and exhaustion -------------------------------------------- */

static void reset_in_a_child(void *data)
{
    if (gpubalance_ledger_reset(data != NULL) < 0)
        _exit(2);
}

/* A plain reset while a process has a context open (and no lease): the
 * process notices the new ledger and places its next lease there, where
 * others see it. */
static void an_open_context_moves_to_a_reset_ledger(void)
{
    gpubalance_context *ctx, *fresh;
    gpubalance_stream *s;
    gpubalance_lease *lease;
    child resetter;

    gpb_test_setup(pool_config, &ctx, &s);
    resetter = start_child(reset_in_a_child, NULL);
    g_assert_true(child_ready(&resetter));
    g_assert_cmpint(finish_child(&resetter), ==, 0);
    lease = gpb_test_acquire(ctx, s);
    fresh = gpb_test_open();
    g_assert_cmpint(gpb_test_total_leases(fresh), ==, 1);
    gpubalance_lease_release(lease);
    g_assert_cmpint(gpb_test_total_leases(fresh), ==, 0);
    gpubalance_context_close(fresh);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

/* reset --force with the pool full: the live leases stay counted in the
 * new ledger, so a 4th is still refused (it was granted: 6 on a cap of 3). */
static void a_forced_reset_keeps_the_cap(void)
{
    gpubalance_context *ctx;
    gpubalance_stream *s;
    child holders[3];

    gpb_test_env(pool_config);
    for (int i = 0; i < 3; i++) {
        holders[i] = start_child(hold_a_lease, NULL);
        g_assert_true(child_ready(&holders[i]));
    }
    g_assert_cmpint(gpubalance_ledger_reset(false), ==, GPUBALANCE_ERR_BUSY);
    gpb_assert_contains(gpubalance_last_error(), "3 lease(s) are live");
    g_assert_cmpint(gpubalance_ledger_reset(true), ==, 0);
    ctx = gpb_test_open();
    s = gpb_test_stream("h264", 1920, 1080, 30);
    for (int i = 0; i < 3; i++)
        assert_pool_holds(ctx, s, -1);
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 3);
    for (int i = 0; i < 3; i++)
        finish_child(&holders[i]);
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

static char *many_devices_config(const char *prefix, int n)
{
    GString *text = g_string_new("[general]\ndiscover=false\n");

    for (int i = 0; i < n; i++)
        g_string_append_printf(text, "[device:%s%d]\nbackend=sim\n", prefix, i);
    return g_string_free(text, FALSE);
}

/* A configuration that used up the device table and is gone leaves room:
 * its records are reclaimed for new devices. While they are in use, a
 * new device is a clear error. */
static void unused_device_records_are_reclaimed(void)
{
    const char *dir = gpb_test_env(NULL);
    char *old_text = many_devices_config("old", GPB_MAX_DEVICES - 1);
    char *new_text = many_devices_config("new", 4);
    char *old_conf = write_config(dir, "old.conf", old_text);
    char *new_conf = write_config(dir, "new.conf", new_text);
    gpubalance_context *old_ctx, *new_ctx = NULL;

    g_setenv("GPUBALANCE_CONFIG", old_conf, TRUE);
    old_ctx = gpb_test_open(); /* 63 devices and software: the table is full */
    g_setenv("GPUBALANCE_CONFIG", new_conf, TRUE);
    g_assert_cmpint(gpubalance_context_open(NULL, &new_ctx), ==, GPUBALANCE_ERR_FULL);
    gpb_assert_contains(gpubalance_last_error(), "has no room for device sim:new0");
    gpubalance_context_close(old_ctx);
    new_ctx = gpb_test_open();
    g_assert_cmpint(gpb_test_sessions(new_ctx, "sim:new3"), ==, 0);
    gpubalance_context_close(new_ctx);
    g_free(old_text);
    g_free(new_text);
    g_free(old_conf);
    g_free(new_conf);
}

static void a_relative_ledger_directory_is_refused(void)
{
    gpb_test_env(pool_config);
    g_setenv("GPUBALANCE_DIR", "relative/ledger", TRUE);
    assert_context_refused(GPUBALANCE_ERR_LEDGER_UNSAFE, "relative/ledger is a relative path");
    gpb_assert_contains(gpubalance_last_error(), "absolute path");
}

static char *long_directory(size_t length)
{
    GString *dir = g_string_new(gpb_test_env(pool_config));

    while (dir->len < length)
        g_string_append(dir, "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    return g_string_free(dir, FALSE);
}

/* A 4000-character directory (a missing one, and one past PATH_MAX): the
 * message keeps the reason and the advice at its end. */
static void a_long_directory_keeps_its_reason(void)
{
    char *missing = long_directory(4000), *too_long = long_directory(5000);

    g_setenv("GPUBALANCE_DIR", missing, TRUE);
    assert_context_refused(GPUBALANCE_ERR_LEDGER_IO, "cannot create ledger directory");
    gpb_assert_contains(gpubalance_last_error(), "No such file or directory; a directory above it is missing");
    g_setenv("GPUBALANCE_DIR", too_long, TRUE);
    assert_context_refused(GPUBALANCE_ERR_LEDGER_IO, "cannot create ledger directory");
    gpb_assert_contains(gpubalance_last_error(), "File name too long; the path is too long");
    g_free(missing);
    g_free(too_long);
}

/* Out of descriptors is said as such, without advising a reset. */
static void running_out_of_descriptors_does_not_advise_reset(void)
{
    struct rlimit limit = {64, 64};
    int fds[64];
    int opened = 0;

    gpb_test_env(pool_config);
    gpubalance_context_close(gpb_test_open());
    g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &limit), ==, 0);
    while (opened < (int)G_N_ELEMENTS(fds) && (fds[opened] = open("/dev/null", O_RDONLY)) >= 0)
        opened++;
    g_assert_cmpint(errno, ==, EMFILE);
    assert_context_refused(GPUBALANCE_ERR_CONFIG, "Too many open files");
    g_unsetenv("GPUBALANCE_CONFIG"); /* the ledger directory is the next to open */
    assert_context_refused(GPUBALANCE_ERR_LEDGER_IO, "Too many open files");
    gpb_assert_contains(gpubalance_last_error(), "raise the limit");
    if (strstr(gpubalance_last_error(), "gpubalance reset"))
        g_error("EMFILE advises a reset: %s", gpubalance_last_error());
    while (opened > 0) /* the leak checker needs some at the end */
        close(fds[--opened]);
}

static const gpb_test_case cases[] = {
    GPB_TEST(a_stopped_lock_holder_freezes_no_one),
    GPB_TEST(a_stopped_lock_holder_fails_the_command_clearly),
    GPB_TEST(a_killed_lock_holder_is_replaced_at_once),
    GPB_TEST(a_stopped_reset_freezes_no_one),
    GPB_TEST(a_tiny_file_system_is_a_clear_error),
    GPB_TEST(a_full_file_system_is_a_clear_error),
    GPB_TEST(a_ledger_truncated_under_a_live_process_is_detected),
    GPB_TEST(sigbus_on_the_mapping_is_survived),
    GPB_TEST(flipped_table_bytes_never_breach_a_cap),
    GPB_TEST(a_renamed_device_or_negative_count_is_repaired),
    GPB_TEST(a_hard_linked_lock_file_is_refused_untouched),
    GPB_TEST(a_hard_linked_ledger_is_refused),
    GPB_TEST(a_lock_file_that_is_no_file_is_refused),
    GPB_TEST(a_foreign_private_file_is_refused),
    GPB_TEST(a_hard_linked_events_file_is_refused_untouched),
    GPB_TEST(a_symlinked_events_file_is_refused_untouched),
    GPB_TEST(a_foreign_events_file_is_refused_untouched),
    GPB_TEST(members_and_root_share_a_group_directory_in_any_order),
    GPB_TEST(an_open_context_moves_to_a_reset_ledger),
    GPB_TEST(a_forced_reset_keeps_the_cap),
    GPB_TEST(unused_device_records_are_reclaimed),
    GPB_TEST(a_relative_ledger_directory_is_refused),
    GPB_TEST(a_long_directory_keeps_its_reason),
    GPB_TEST(running_out_of_descriptors_does_not_advise_reset),
};

GPB_TEST_MAIN(cases)
