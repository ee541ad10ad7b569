/* test_stress.c - many real processes against one ledger.
 *
 * pool_is_never_oversubscribed: 64 processes race for two sim GPUs in a
 * pool of 3. The observer is independent of the ledger and of the racers'
 * own counts: a stand-in "driver" file with exactly 3 session bytes, each
 * an OFD lock. A racer granted a sim device must take one of those bytes
 * with a non-blocking lock before "encoding", and give it back before
 * releasing its lease. If the ledger ever granted a 4th pool session at
 * the same instant, that racer would find all 3 bytes held and report it.
 *
 * cap_holds_while_1000_leases_churn: the same race, while 1000 leases on
 * another capped device are released and taken again without pause, and
 * their holders are SIGKILLed and replaced (leaving stale counts behind).
 * Placement trusts cached counts for every grant and tests locks only when
 * a count refuses: the driver stand-in proves no grant rests on a figure
 * that is too low.
 *
 * sigkill_torture_leaves_no_lease: children acquire, hold and release at
 * random and are SIGKILLed at random points (inside the ledger's critical
 * section too), for hundreds of rounds. Afterwards no lease remains, the
 * counters agree with the locks, and the ledger still opens and works.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define RACERS 64
#define ROUNDS_PER_RACER 40
#define DRIVER_SESSIONS 3

static const char pool_config[] = GPB_TEST_TWO_SIMS_IN_A_POOL_OF_3;

static bool take_driver_session(int fd, int *byte)
{
    for (int i = 0; i < DRIVER_SESSIONS; i++) {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = i, .l_len = 1};

        if (fcntl(fd, F_OFD_SETLK, &fl) == 0) {
            *byte = i;
            return true;
        }
    }
    return false;
}

static void give_driver_session(int fd, int byte)
{
    struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};

    g_assert_cmpint(fcntl(fd, F_OFD_SETLK, &fl), ==, 0);
}

/* Where a racer ticks once a round (cap_holds_while_1000_leases_churn's
 * churners take one step a tick, so they churn while the racers race and
 * never spin); -1: nowhere. */
static int tick_fd = -1;

/* Exit codes: 0 fine, 3 driver saw a 4th session, other: error. The
 * racer writes its count of sim grants to result_fd. */
static G_GNUC_NORETURN void racer(const char *driver_path, int start_fd, int result_fd)
{
    gpubalance_context *ctx = gpb_test_open();
    gpubalance_stream *s = gpb_test_stream("h264", 1920, 1080, 30);
    int driver = open(driver_path, O_RDWR | O_CLOEXEC);
    int sim_grants = 0;
    char go;

    if (driver < 0 || read(start_fd, &go, 1) != 1)
        _exit(2);
    for (int round = 0; round < ROUNDS_PER_RACER; round++) {
        gpubalance_lease *l = NULL;
        int byte = -1;

        if (gpubalance_lease_acquire(ctx, s, &l) < 0) {
            fprintf(stderr, "racer %d: %s\n", (int)getpid(), gpubalance_last_error());
            _exit(4);
        }
        if (g_str_has_prefix(gpubalance_lease_device(l), "sim:gpu")) {
            if (!take_driver_session(driver, &byte)) {
                fprintf(stderr, "racer %d: granted %s but the driver has %d sessions in use\n", (int)getpid(),
                        gpubalance_lease_device(l), DRIVER_SESSIONS);
                _exit(3);
            }
            sim_grants++;
        }
        /* Hold it while giving the CPU away, so that the other racers
         * run while this one holds its lease: holders really overlap. */
        for (int yield = 0; yield < 20; yield++)
            sched_yield();
        if (byte >= 0)
            give_driver_session(driver, byte);
        gpubalance_lease_release(l);
        if (tick_fd >= 0 && write(tick_fd, "t", 1) != 1)
            _exit(2);
    }
    dprintf(result_fd, "%d\n", sim_grants);
    _exit(0);
}

static void pool_is_never_oversubscribed(void)
{
    const char *dir = gpb_test_env(pool_config);
    char *driver_path = g_build_filename(dir, "driver", NULL);
    pid_t pids[RACERS];
    int start[2], results[2];
    int total_sim = 0;
    gpubalance_context *ctx;

    g_assert_true(g_file_set_contents(driver_path, "...", 3, NULL));
    g_assert_cmpint(pipe(start), ==, 0);
    g_assert_cmpint(pipe(results), ==, 0);
    gpubalance_context_close(gpb_test_open()); /* create the ledger */
    for (int i = 0; i < RACERS; i++) {
        pids[i] = fork();
        g_assert_cmpint(pids[i], >=, 0);
        if (pids[i] == 0) {
            close(start[1]);
            racer(driver_path, start[0], results[1]);
        }
    }
    close(start[0]);
    close(results[1]);
    for (int i = 0; i < RACERS; i++)
        g_assert_cmpint(write(start[1], "g", 1), ==, 1); /* all start together */
    for (int i = 0; i < RACERS; i++) {
        int status;

        g_assert_cmpint(waitpid(pids[i], &status, 0), ==, pids[i]);
        g_assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == 3)
            g_error("the ledger granted more than 3 pool sessions at once");
        g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    }
    for (int i = 0; i < RACERS; i++) {
        char *line = gpb_read_line(results[0]);

        total_sim += atoi(line);
        g_free(line);
    }
    printf("%d of %d grants went to the sim pool\n", total_sim, RACERS * ROUNDS_PER_RACER);
    g_assert_cmpint(total_sim, >, 0);
    ctx = gpb_test_open();
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0);
    gpubalance_context_close(ctx);
    g_free(driver_path);
}

/* ---- the cap under churn ------------------------------------------------ */

#define CHURNERS 4
#define CHURN_LEASES 250 /* each: 1000 in all */
#define CHURN_RACERS 16

static int ticks[2] = {-1, -1};

static const char churn_config[] = "[general]\n"
                                   "discover=false\n"
                                   "order=nvenc,vaapi,software\n" GPB_TEST_SIMS_IN_A_POOL_OF_3 "[device:bulk]\n"
                                   "backend=sim\n"
                                   "imitates=vaapi\n"
                                   "max-sessions=4096\n";

/* Takes CHURN_LEASES leases on sim:bulk, says so, then (churn) at every
 * tick releases the oldest and takes a new one, or holds them, until
 * killed. */
static G_GNUC_NORETURN void churner(int ready_fd, bool churn)
{
    gpubalance_context *ctx = gpb_test_open();
    gpubalance_stream *s = gpb_test_stream("h264", 640, 360, 30);
    gpubalance_lease *held[CHURN_LEASES];

    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
    gpubalance_stream_set_device(s, "sim:bulk");
    for (int i = 0; i < CHURN_LEASES; i++) {
        if (gpubalance_lease_acquire(ctx, s, &held[i]) < 0) {
            fprintf(stderr, "churner %d: %s\n", (int)getpid(), gpubalance_last_error());
            if (write(ready_fd, "f", 1) != 1) /* the parent waits for a word */
                _exit(2);
            _exit(4);
        }
    }
    if (write(ready_fd, "r", 1) != 1)
        _exit(2);
    while (!churn)
        pause();
    for (unsigned n = 0;; n++) {
        char tick;

        if (read(ticks[0], &tick, 1) != 1)
            pause(); /* the racers are done */
        gpubalance_lease_release(held[n % CHURN_LEASES]);
        if (gpubalance_lease_acquire(ctx, s, &held[n % CHURN_LEASES]) < 0) {
            fprintf(stderr, "churner %d: %s\n", (int)getpid(), gpubalance_last_error());
            _exit(4);
        }
    }
}

static pid_t spawn_churner(int ready[2], bool churn)
{
    pid_t pid = fork();
    char c;

    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        close(ready[0]);
        churner(ready[1], churn);
    }
    g_assert_cmpint(read(ready[0], &c, 1), ==, 1);
    g_assert_cmpint(c, ==, 'r'); /* its leases are held (else it said why) */
    return pid;
}

static void kill_churner(pid_t pid)
{
    int status;

    g_assert_cmpint(kill(pid, SIGKILL), ==, 0);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFSIGNALED(status)); /* not an early exit of its own */
}

static void cap_holds_while_1000_leases_churn(void)
{
    const char *dir = gpb_test_env(churn_config);
    char *driver_path = g_build_filename(dir, "driver", NULL);
    pid_t churners[CHURNERS], racers[CHURN_RACERS];
    int ready[2], start[2], results[2];
    int total_sim = 0;
    gpubalance_context *ctx;

    g_assert_true(g_file_set_contents(driver_path, "...", 3, NULL));
    g_assert_cmpint(pipe(ready), ==, 0);
    g_assert_cmpint(pipe(start), ==, 0);
    g_assert_cmpint(pipe(results), ==, 0);
    g_assert_cmpint(pipe2(ticks, O_NONBLOCK), ==, 0);    /* a racer never waits on it */
    g_assert_cmpint(fcntl(ticks[0], F_SETFL, 0), ==, 0); /* a churner does */
    tick_fd = ticks[1];
    gpubalance_context_close(gpb_test_open()); /* create the ledger */
    for (int i = 0; i < CHURNERS; i++)
        churners[i] = spawn_churner(ready, true);
    for (int i = 0; i < CHURN_RACERS; i++) {
        racers[i] = fork();
        g_assert_cmpint(racers[i], >=, 0);
        if (racers[i] == 0) {
            close(start[1]);
            racer(driver_path, start[0], results[1]);
        }
    }
    close(start[0]);
    close(results[1]);
    for (int i = 0; i < CHURN_RACERS; i++)
        g_assert_cmpint(write(start[1], "g", 1), ==, 1);
    /* While they race: kill each churner with its 250 leases held, and
     * start another in its place. */
    for (int i = 0; i < CHURNERS; i++) {
        kill_churner(churners[i]);
        churners[i] = spawn_churner(ready, true);
    }
    for (int i = 0; i < CHURN_RACERS; i++) {
        int status;

        g_assert_cmpint(waitpid(racers[i], &status, 0), ==, racers[i]);
        g_assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == 3)
            g_error("the ledger granted more than 3 pool sessions at once");
        g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    }
    for (int i = 0; i < CHURNERS; i++)
        kill_churner(churners[i]);
    for (int i = 0; i < CHURN_RACERS; i++) {
        char *line = gpb_read_line(results[0]);

        total_sim += atoi(line);
        g_free(line);
    }
    printf("%d of %d grants went to the sim pool\n", total_sim, CHURN_RACERS * ROUNDS_PER_RACER);
    g_assert_cmpint(total_sim, >, 0);
    ctx = gpb_test_open();
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0); /* every holder is dead */
    gpubalance_context_close(ctx);
    close(ready[0]);
    close(ready[1]);
    g_free(driver_path);
}

/* A sweep of a device with many leases reads its locks from /proc/locks
 * (one read) rather than testing them one by one: it must keep every live
 * lease and forget every dead one, exactly. */
static void sweep_counts_many_leases_exactly(void)
{
    gpubalance_context *ctx;
    gpubalance_stream *s = gpb_test_stream("h264", 640, 360, 30);
    gpubalance_lease *held[100];
    gpubalance_snapshot *snap;
    int ready[2];
    pid_t doomed;

    gpb_test_env(churn_config);
    ctx = gpb_test_open();
    gpubalance_stream_set_device(s, "sim:bulk");
    for (int i = 0; i < 100; i++)
        held[i] = gpb_test_acquire(ctx, s);
    g_assert_cmpint(pipe(ready), ==, 0);
    doomed = spawn_churner(ready, false); /* 250 more, on the same device */
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 100 + CHURN_LEASES);
    kill_churner(doomed);
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    g_assert_cmpint(gpubalance_snapshot_n_leases(snap), ==, 100);
    g_assert_cmpint(gpb_test_device(snap, "sim:bulk")->sessions, ==, 100);
    gpubalance_snapshot_free(snap);
    for (int i = 0; i < 100; i++)
        gpubalance_lease_release(held[i]);
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
    close(ready[0]);
    close(ready[1]);
}

/* ---- SIGKILL torture --------------------------------------------------- */

#define TORTURERS 8
#define TORTURE_ROUNDS 400

typedef struct {
    pid_t pid;
    int progress_fd;
} torturer;

/* A torturer that cannot go on says why (the parent fails the test). */
static G_GNUC_NORETURN void torturer_gives_up(const char *call)
{
    fprintf(stderr, "torturer %d: %s failed: %s\n", (int)getpid(), call, gpubalance_last_error());
    _exit(1);
}

/* Acquires, maybe opens, reports progress, holds or releases, forever. */
static G_GNUC_NORETURN void torture_child(int progress_fd, unsigned seed)
{
    gpubalance_context *ctx = gpb_test_open();
    GRand *rand = g_rand_new_with_seed(seed);
    static const char *const codecs[] = {"h264", "hevc"};
    gpubalance_lease *held[4] = {NULL};

    for (;;) {
        int i = g_rand_int_range(rand, 0, G_N_ELEMENTS(held));

        if (held[i]) {
            gpubalance_lease_release(held[i]);
            held[i] = NULL;
        } else {
            gpubalance_stream *s =
                gpb_test_stream(codecs[g_rand_int_range(rand, 0, 2)], g_rand_int_range(rand, 16, 3841),
                                g_rand_int_range(rand, 16, 2161), g_rand_int_range(rand, 0, 121));

            if (gpubalance_lease_acquire(ctx, s, &held[i]) < 0)
                torturer_gives_up("acquire");
            if (g_rand_boolean(rand)) {
                while (gpubalance_lease_check_open(held[i]) < 0)
                    if (gpubalance_lease_report_failure(&held[i], GPUBALANCE_FAILURE_CAPACITY, "refused") < 0)
                        torturer_gives_up("report_failure");
                gpubalance_lease_mark_opened(held[i]);
            }
            gpubalance_stream_free(s);
        }
        if (write(progress_fd, "p", 1) != 1)
            _exit(0);
    }
}

static void spawn(torturer *t, unsigned seed)
{
    int fds[2];

    g_assert_cmpint(pipe(fds), ==, 0);
    t->pid = fork();
    g_assert_cmpint(t->pid, >=, 0);
    if (t->pid == 0) {
        close(fds[0]);
        torture_child(fds[1], seed);
    }
    close(fds[1]);
    t->progress_fd = fds[0];
}

/* A torturer only ever ends by our SIGKILL: one that exited by itself
 * (an acquire or a report that failed) or crashed fails the test. */
static void kill_and_reap(torturer *t)
{
    int status;

    kill(t->pid, SIGKILL);
    g_assert_cmpint(waitpid(t->pid, &status, 0), ==, t->pid);
    if (WIFEXITED(status))
        g_error("torturer %d exited with status %d before it was killed", (int)t->pid, WEXITSTATUS(status));
    if (WTERMSIG(status) != SIGKILL)
        g_error("torturer %d died of signal %d (%s), not of our SIGKILL", (int)t->pid, WTERMSIG(status),
                g_strsignal(WTERMSIG(status)));
    close(t->progress_fd);
}

static void sigkill_torture_leaves_no_lease(void)
{
    torturer t[TORTURERS];
    GRand *rand = g_rand_new_with_seed(1234);
    gpubalance_context *ctx;
    gpubalance_snapshot *snap;
    gpubalance_stream *s;
    gpubalance_lease *l;

    gpb_test_env("[general]\ndiscover=false\norder=nvenc,vaapi,software\n"
                 "[pool:geforce]\nmax-sessions=3\n"
                 "[device:gpu0]\nbackend=sim\npool=geforce\nenforce-sessions=1\n"
                 "[device:gpu1]\nbackend=sim\npool=geforce\n"
                 "[device:arc]\nbackend=sim\nimitates=vaapi\nbudget=6\n");
    gpubalance_context_close(gpb_test_open());
    for (int i = 0; i < TORTURERS; i++)
        spawn(&t[i], (unsigned)i + 1);
    for (int round = 0; round < TORTURE_ROUNDS; round++) {
        torturer *victim = &t[g_rand_int_range(rand, 0, TORTURERS)];
        int steps = g_rand_int_range(rand, 0, 6);
        char c;

        /* Let the victim make a random amount of progress (it may be
         * anywhere inside its next call when the signal lands). */
        for (int i = 0; i < steps; i++)
            if (read(victim->progress_fd, &c, 1) != 1)
                break;
        kill_and_reap(victim);
        spawn(victim, (unsigned)round + 100);
    }
    for (int i = 0; i < TORTURERS; i++)
        kill_and_reap(&t[i]);

    ctx = gpb_test_open();
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    g_assert_cmpuint(gpubalance_snapshot_n_leases(snap), ==, 0);
    for (size_t i = 0; i < gpubalance_snapshot_n_devices(snap); i++) {
        const gpubalance_device_info *d = gpubalance_snapshot_device(snap, i);

        g_assert_cmpint(d->sessions, ==, 0);
        g_assert_cmpfloat(d->load, ==, 0);
    }
    g_assert_cmpint(gpubalance_snapshot_pool(snap, 0)->sessions, ==, 0);
    gpubalance_snapshot_free(snap);
    /* and it still works: the pool takes three again */
    s = gpb_test_stream("h264", 1920, 1080, 30);
    gpubalance_stream_set_order(s, "nvenc");
    gpubalance_stream_set_when_full(s, "fail");
    gpubalance_lease *three[3];
    for (int i = 0; i < 3; i++)
        three[i] = gpb_test_acquire(ctx, s);
    g_assert_cmpint(gpubalance_lease_acquire(ctx, s, &l), ==, GPUBALANCE_ERR_FULL);
    for (int i = 0; i < 3; i++)
        gpubalance_lease_release(three[i]);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
    g_rand_free(rand);
}

/* ---- threads ---------------------------------------------------------- */

#define THREADS 16
#define THREAD_ROUNDS 200

typedef struct {
    gpubalance_context *shared; /* half the threads share one context */
    gint holding;               /* sim leases held right now, by anyone */
    gint most;
    gint failures;
} thread_race;

static gpointer thread_racer(gpointer data)
{
    thread_race *race = data;
    gpubalance_context *own = NULL;
    gpubalance_context *ctx = race->shared;
    gpubalance_stream *s = gpb_test_stream("h264", 1920, 1080, 30);

    if (g_random_boolean()) {
        if (gpubalance_context_open(NULL, &own) < 0) {
            g_printerr("thread: %s\n", gpubalance_last_error());
            g_atomic_int_inc(&race->failures);
        }
        ctx = own;
    }
    for (int i = 0; ctx && i < THREAD_ROUNDS; i++) {
        gpubalance_lease *l = NULL;

        if (gpubalance_lease_acquire(ctx, s, &l) < 0) {
            g_printerr("thread: %s\n", gpubalance_last_error());
            g_atomic_int_inc(&race->failures);
            continue;
        }
        if (g_str_has_prefix(gpubalance_lease_device(l), "sim:gpu")) {
            gint now = g_atomic_int_add(&race->holding, 1) + 1;
            gint most;

            while (now > (most = g_atomic_int_get(&race->most)) &&
                   !g_atomic_int_compare_and_exchange(&race->most, most, now))
                ;
            g_thread_yield();
            g_atomic_int_add(&race->holding, -1);
        }
        gpubalance_lease_release(l);
    }
    gpubalance_stream_free(s);
    gpubalance_context_close(own);
    return NULL;
}

/* One process, many threads, some sharing a context: the pool's cap holds
 * (counted by the threads around their leases, outside the library). */
static void threads_share_a_context_safely(void)
{
    thread_race race = {0};
    GThread *threads[THREADS];
    gpubalance_context *ctx;

    gpb_test_env(pool_config);
    race.shared = gpb_test_open();
    for (int i = 0; i < THREADS; i++)
        threads[i] = g_thread_new("racer", thread_racer, &race);
    for (int i = 0; i < THREADS; i++)
        g_thread_join(threads[i]);
    g_assert_cmpint(race.failures, ==, 0);
    g_assert_cmpint(race.most, >=, 1);
    g_assert_cmpint(race.most, <=, DRIVER_SESSIONS);
    gpubalance_context_close(race.shared);
    ctx = gpb_test_open();
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0);
    gpubalance_context_close(ctx);
}

static const gpb_test_case cases[] = {
    GPB_TEST(threads_share_a_context_safely),   GPB_TEST(pool_is_never_oversubscribed),
    GPB_TEST(sigkill_torture_leaves_no_lease),  GPB_TEST(cap_holds_while_1000_leases_churn),
    GPB_TEST(sweep_counts_many_leases_exactly),
};

GPB_TEST_MAIN(cases)
