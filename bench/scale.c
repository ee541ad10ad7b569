/* bench/scale.c - costs that must not grow with the host: a cold
 * `gpubalance pick` against a trivial program, `status --json` with 1000
 * leases against none, a placement beside 2000 processes against 100, and
 * a placement among 256 devices against 16.
 *
 * Each case alternates with its baseline, round after round, and the
 * median of the per-round ratios is printed: the machines are shared and
 * noisy, so only ratios measured side by side mean anything.
 *
 *   build/bench/bench_scale GPUBALANCE TRIVIAL_LOCK NOOP [ROUNDS]
 *
 * GPUBALANCE is the command, TRIVIAL_LOCK a program that opens and locks
 * one file, NOOP one that returns at once (both linked with libc only).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "util.h"
#include "timing.h"

#define MAX_ROUNDS 64
#define RUNS_PER_ROUND 15

/* timing.c, shared by the benchmarks (short names kept for the calls here) */
#define now_us bench_now_us
#define median bench_median

/* The CPU time (user + system) of the last run_once(). */
static double last_cpu_us;

/* Wall time of one fork+exec+wait of argv, output discarded; its CPU time
 * in last_cpu_us. bind_now: the child runs with LD_BIND_NOW=1, so the
 * dynamic loader resolves every symbol before main() instead of at each
 * function's first call. */
static double run_once_binding(char *const argv[], bool bind_now)
{
    double t0 = now_us();
    pid_t pid = fork();
    struct rusage ru;
    int status;

    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);

        dup2(null, 1);
        dup2(null, 2);
        if (bind_now)
            setenv("LD_BIND_NOW", "1", 1);
        execv(argv[0], argv);
        _exit(127);
    }
    if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s %s failed\n", argv[0], argv[1] ? argv[1] : "");
        exit(1);
    }
    last_cpu_us = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
    return now_us() - t0;
}

static double run_once(char *const argv[])
{
    return run_once_binding(argv, false);
}

/* The median wall time of RUNS_PER_ROUND runs; the median CPU time in
 * *cpu (may be NULL), which the machine's other load moves far less. */
static double run_median_cpu(char *const argv[], double *cpu)
{
    double t[RUNS_PER_ROUND], c[RUNS_PER_ROUND];

    for (int i = 0; i < RUNS_PER_ROUND; i++) {
        t[i] = run_once(argv);
        c[i] = last_cpu_us;
    }
    if (cpu)
        *cpu = median(c, RUNS_PER_ROUND);
    return median(t, RUNS_PER_ROUND);
}

static void write_file(const char *path, const char *text)
{
    if (!g_file_set_contents(path, text, -1, NULL))
        abort();
}

static void print_ratio(const char *what, double *ratios, int rounds, const char *against)
{
    printf("%-58s %6.2fx %s\n", what, median(ratios, (size_t)rounds), against);
}

/* ---- cold pick ---------------------------------------------------------- */

static void bench_cold_pick(const char *dir, char *const cli_path, char *const lock_path, char *const noop_path,
                            int rounds)
{
    char *lock_file = g_build_filename(dir, "one-file", NULL);
    char *pick[] = {cli_path, "pick", "--codec", "h264", "--width", "1920", "--height", "1080", NULL};
    char *version[] = {cli_path, "--version", NULL};
    char *lock[] = {lock_path, lock_file, NULL};
    char *noop[] = {noop_path, NULL};
    double ratio[MAX_ROUNDS], pick_us[MAX_ROUNDS], lock_us[MAX_ROUNDS], loader_us[MAX_ROUNDS];
    double bound_ratio[MAX_ROUNDS], bound_pick_us[MAX_ROUNDS], bound_loader_us[MAX_ROUNDS];

    write_file(lock_file, "");
    run_once(pick); /* the ledger exists: "cold" is a new process, not a new ledger */
    for (int r = 0; r < rounds; r++) {
        double t_noop[RUNS_PER_ROUND], t_lock[RUNS_PER_ROUND], t_version[RUNS_PER_ROUND], t_pick[RUNS_PER_ROUND];
        double t_bound_version[RUNS_PER_ROUND], t_bound_pick[RUNS_PER_ROUND];
        double noop_us;

        /* The programs run in turn, run after run, so that a burst of the
         * machine's other load falls on all of them alike. */
        for (int i = 0; i < RUNS_PER_ROUND; i++) {
            t_noop[i] = run_once(noop);
            t_lock[i] = run_once(lock);
            t_version[i] = run_once(version);
            t_pick[i] = run_once(pick);
            t_bound_version[i] = run_once_binding(version, true);
            t_bound_pick[i] = run_once_binding(pick, true);
        }
        /* The dynamic loader's share: what `gpubalance --version` (load,
         * relocate, bind, print) costs beyond a libc-only program doing
         * nothing. With LD_BIND_NOW both it and pick resolve every symbol
         * before main(), so all the loader's work falls in that share and
         * the difference is pick's own work: the measure ("the
         * dynamic loader's share excluded"). With lazy binding (the
         * default) the symbols pick resolves at first call, which
         * --version never calls, are loader work counted as pick's: that
         * ratio is printed too. */
        noop_us = median(t_noop, RUNS_PER_ROUND);
        lock_us[r] = median(t_lock, RUNS_PER_ROUND);
        loader_us[r] = median(t_version, RUNS_PER_ROUND) - noop_us;
        pick_us[r] = median(t_pick, RUNS_PER_ROUND) - loader_us[r];
        ratio[r] = pick_us[r] / lock_us[r];
        bound_loader_us[r] = median(t_bound_version, RUNS_PER_ROUND) - noop_us;
        bound_pick_us[r] = median(t_bound_pick, RUNS_PER_ROUND) - bound_loader_us[r];
        bound_ratio[r] = bound_pick_us[r] / lock_us[r];
    }
    printf("cold pick: %.0f us without the loader's %.0f us (symbols bound at first call: %.0f us without %.0f us); "
           "trivial open+lock program: %.0f us\n",
           median(bound_pick_us, (size_t)rounds), median(bound_loader_us, (size_t)rounds),
           median(pick_us, (size_t)rounds), median(loader_us, (size_t)rounds), median(lock_us, (size_t)rounds));
    print_ratio("cold `gpubalance pick` (loader's share excluded)", bound_ratio, rounds, "open+lock program");
    print_ratio("  the same, symbols bound at first call (their lookups counted)", ratio, rounds, "open+lock program");
    g_free(lock_file);
}

/* ---- status with many leases ------------------------------------------- */

/* A child holding n leases in the ledger of GPUBALANCE_DIR until its
 * stdin closes. */
static pid_t hold_leases(int n, int *release_fd)
{
    int ready[2], release[2];
    pid_t pid;
    char c;

    if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(release, O_CLOEXEC) < 0)
        abort();
    pid = fork();
    if (pid == 0) {
        gpubalance_context *ctx;
        gpubalance_stream *s;
        gpubalance_lease *l;

        close(ready[0]);
        close(release[1]); /* so that its read ends when the parent closes */

        if (gpubalance_context_open(NULL, &ctx) < 0)
            _exit(1);
        gpubalance_stream_new(&s);
        gpubalance_stream_set_size(s, 640, 360);
        for (int i = 0; i < n; i++)
            if (gpubalance_lease_acquire(ctx, s, &l) < 0) {
                fprintf(stderr, "hold: %s\n", gpubalance_last_error());
                _exit(1);
            }
        if (write(ready[1], "r", 1) != 1 || read(release[0], &c, 1) < 0)
            _exit(1);
        _exit(0);
    }
    close(ready[1]);
    close(release[0]);
    if (read(ready[0], &c, 1) != 1)
        abort();
    close(ready[0]);
    *release_fd = release[1];
    return pid;
}

/* The median time of one gpubalance_snapshot_take() + free in this
 * process, on the ledger of GPUBALANCE_DIR: what the snapshot (the lock
 * test of each lease) costs without the process start and the output. */
static double snapshot_us(void)
{
    double t[200];
    gpubalance_context *ctx;

    if (gpubalance_context_open(NULL, &ctx) < 0) {
        fprintf(stderr, "%s\n", gpubalance_last_error());
        exit(1);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(t); i++) {
        gpubalance_snapshot *snap;
        double t0 = now_us();

        if (gpubalance_snapshot_take(ctx, &snap) < 0)
            exit(1);
        gpubalance_snapshot_free(snap);
        t[i] = now_us() - t0;
    }
    gpubalance_context_close(ctx);
    return median(t, G_N_ELEMENTS(t));
}

/* One member of the lease object json_glib_us() generates. */
static JsonNode *value_member(JsonObject *o, const char *name)
{
    JsonNode *node = json_node_init(json_node_alloc(), JSON_NODE_VALUE);

    json_object_set_member(o, name, node);
    return node;
}

/* The median time json-glib's generator alone takes to write the objects
 * of the leases of GPUBALANCE_DIR's ledger, pretty, in process: one object
 * whose members' values are set in place for each lease, as the command
 * does, the strings set once. What a lease costs `status --json` at least
 * while a library writes its JSON. */
static double json_glib_us(void)
{
    static const char *const strings[] = {"device", "codec", "state", "label", "since"};
    static const char *const numbers[] = {"pid", "width", "height", "fps", "cost", "pid_namespace"};
    JsonObject *object = json_object_new();
    JsonNode *root = json_node_new(JSON_NODE_OBJECT), *number[G_N_ELEMENTS(numbers)];
    JsonGenerator *gen = json_generator_new();
    GString *out = g_string_sized_new(512 * 1024);
    gpubalance_snapshot *snap;
    gpubalance_context *ctx;
    double t[50];

    if (gpubalance_context_open(NULL, &ctx) < 0 || gpubalance_snapshot_take(ctx, &snap) < 0) {
        fprintf(stderr, "%s\n", gpubalance_last_error());
        exit(1);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(strings); i++)
        json_node_set_string(value_member(object, strings[i]), "2026-12-07T00:00:00Z");
    for (size_t i = 0; i < G_N_ELEMENTS(numbers); i++)
        number[i] = value_member(object, numbers[i]);
    json_node_take_object(root, object);
    json_generator_set_root(gen, root);
    json_generator_set_pretty(gen, TRUE);
    for (size_t r = 0; r < G_N_ELEMENTS(t); r++) {
        double t0 = now_us();

        g_string_truncate(out, 0);
        for (size_t i = 0; i < gpubalance_snapshot_n_leases(snap); i++) {
            const gpubalance_lease_info *l = gpubalance_snapshot_lease(snap, i);

            json_node_set_int(number[0], l->pid);
            json_node_set_int(number[1], l->width);
            json_node_set_int(number[2], l->height);
            json_node_set_double(number[3], l->fps);
            json_node_set_double(number[4], l->cost);
            json_node_set_int(number[5], (gint64)l->pid_namespace);
            json_generator_to_gstring(gen, out);
        }
        t[r] = now_us() - t0;
    }
    gpubalance_snapshot_free(snap);
    gpubalance_context_close(ctx);
    g_string_free(out, TRUE);
    g_object_unref(gen);
    json_node_unref(root);
    return median(t, G_N_ELEMENTS(t));
}

static void bench_status(const char *dir, char *const cli_path, int rounds)
{
    char *empty_dir = g_build_filename(dir, "ledger-empty", NULL);
    char *full_dir = g_build_filename(dir, "ledger-1000", NULL);
    char *status[] = {cli_path, "status", "--json", NULL};
    double ratio[MAX_ROUNDS], cpu_ratio[MAX_ROUNDS], empty_us[MAX_ROUNDS];
    int release_fd;
    pid_t holder;

    char *conf = g_build_filename(dir, "status.conf", NULL);

    write_file(conf, "[general]\ndiscover=false\n[device:a]\nbackend=sim\n");
    g_setenv("GPUBALANCE_CONFIG", conf, TRUE);
    g_setenv("GPUBALANCE_DIR", full_dir, TRUE);
    holder = hold_leases(1000, &release_fd);
    g_setenv("GPUBALANCE_DIR", empty_dir, TRUE);
    run_once(status);
    for (int r = 0; r < rounds; r++) {
        double t_empty, t_full, cpu_empty, cpu_full;

        g_setenv("GPUBALANCE_DIR", empty_dir, TRUE);
        t_empty = run_median_cpu(status, &cpu_empty);
        g_setenv("GPUBALANCE_DIR", full_dir, TRUE);
        t_full = run_median_cpu(status, &cpu_full);
        ratio[r] = t_full / t_empty;
        cpu_ratio[r] = cpu_full / cpu_empty;
        empty_us[r] = t_empty;
    }
    print_ratio("`gpubalance status --json`, 1000 leases", ratio, rounds, "no lease");
    print_ratio("  the same in CPU time (user + system)", cpu_ratio, rounds, "no lease");
    {
        double none, held, generated, empty = median(empty_us, (size_t)rounds);

        g_setenv("GPUBALANCE_DIR", empty_dir, TRUE);
        none = snapshot_us();
        g_setenv("GPUBALANCE_DIR", full_dir, TRUE);
        held = snapshot_us();
        generated = json_glib_us();
        printf("  of which the snapshot, in process: %.0f us with 1000 leases, %.0f us with none (%.2f us a lease)\n",
               held, none, (held - none) / 1000);
        printf("  and json-glib's generator alone, in process: %.0f us for the 1000 lease objects\n", generated);
        /* The ratio the command would have if a lease cost it nothing but
         * its lock test and json-glib's work: the least this design can
         * show against a process that starts and prints no lease. */
        printf("  floor of the ratio with those two alone (no lease: %.0f us)   %6.2fx no lease\n", empty,
               (empty + held - none + generated) / empty);
    }
    close(release_fd);
    waitpid(holder, NULL, 0);
    g_free(conf);
    g_free(empty_dir);
    g_free(full_dir);
}

/* ---- foreign load beside many processes --------------------------------- */

/* A /proc stand-in: n processes with three descriptors each; every 50th
 * also holds the render node, with DRM fdinfo. */
static char *fake_proc(const char *dir, int n, const char *node)
{
    char *proc = g_strdup_printf("%s/proc-%d", dir, n);

    for (int pid = 1; pid <= n; pid++) {
        char *fd_dir = g_strdup_printf("%s/%d/fd", proc, pid);
        char *info_dir = g_strdup_printf("%s/%d/fdinfo", proc, pid);

        g_mkdir_with_parents(fd_dir, 0700);
        g_mkdir_with_parents(info_dir, 0700);
        for (int fd = 0; fd < 4; fd++) {
            char *link = g_strdup_printf("%s/%d", fd_dir, fd);
            char *info = g_strdup_printf("%s/%d", info_dir, fd);
            bool drm = fd == 3 && pid % 50 == 0;

            if (fd == 3 && !drm) {
                g_free(link);
                g_free(info);
                continue;
            }
            if (symlink(drm ? node : "/dev/null", link) < 0)
                abort();
            if (drm) {
                char *text = g_strdup_printf("drm-driver:\ti915\ndrm-pdev:\t0000:00:02.0\ndrm-client-id:\t%d\n"
                                             "drm-engine-video:\t%d ns\n",
                                             pid, pid * 1000);

                write_file(info, text);
                g_free(text);
            } else {
                write_file(info, "pos:\t0\nflags:\t02\n");
            }
            g_free(link);
            g_free(info);
        }
        g_free(fd_dir);
        g_free(info_dir);
    }
    return proc;
}

/* A context with one VA-API device on node (its foreign load read from
 * the fdinfo under a fake /proc root, gpb_discovery_set_roots) and software. */
static gpubalance_context *context_with_render_node(const char *node)
{
    gpubalance_context *ctx;
    gpb_device *d;
    int index;

    if (gpubalance_context_open(NULL, &ctx) < 0) {
        fprintf(stderr, "%s\n", gpubalance_last_error());
        exit(1);
    }
    d = gpb_vaapi_device_new("vaapi:renderD128", node, "0000:00:02.0", 1u << GPUBALANCE_CODEC_H264);
    d->budget = 1000;
    index = gpb_inventory_add(ctx->inventory, d);
    if (gpb_ledger_lock(ctx->ledger) < 0)
        exit(1);
    d->ledger_index = gpb_ledger_device_index(ctx->ledger, d->ledger_key, d->backend);
    gpb_ledger_unlock(ctx->ledger);
    if (index < 0 || d->ledger_index < 0)
        exit(1);
    return ctx;
}

static void place_once(gpubalance_context *ctx)
{
    gpubalance_stream *s;
    gpubalance_lease *l;

    gpubalance_stream_new(&s);
    if (gpubalance_lease_acquire(ctx, s, &l) < 0) {
        fprintf(stderr, "acquire: %s\n", gpubalance_last_error());
        exit(1);
    }
    gpubalance_lease_release(l);
    gpubalance_stream_free(s);
}

/* A process that opens a context and places one stream, as `pick` does
 * (run in a forked child, so each one is a new process). */
static double one_pick(const char *proc)
{
    double t0 = now_us();
    pid_t pid;

    gpb_discovery_set_roots(NULL, proc);
    pid = fork();
    if (pid == 0) {
        gpubalance_context *ctx = context_with_render_node("/dev/dri/renderD128");

        place_once(ctx);
        gpubalance_context_close(ctx);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    return now_us() - t0;
}

/* A long-lived process's refresh: the scan it makes at a placement once
 * the foreign load is due again (the clock is moved on, not waited for). */
static uint64_t fake_now;

static uint64_t fake_clock(void)
{
    return fake_now;
}

static double one_refresh(gpubalance_context *ctx)
{
    double t0;

    fake_now += 2 * GPB_FOREIGN_REFRESH_NS;
    t0 = now_us();
    place_once(ctx);
    return now_us() - t0;
}

static void bench_foreign(const char *dir, int rounds)
{
    char *conf = g_build_filename(dir, "vaapi.conf", NULL);
    char *few = fake_proc(dir, 100, "/dev/dri/renderD128");
    char *many = fake_proc(dir, 2000, "/dev/dri/renderD128");
    double pick_ratio[MAX_ROUNDS], refresh_ratio[MAX_ROUNDS];
    gpubalance_context *ctx;

    write_file(conf, "[general]\ndiscover=false\norder=vaapi,software\n");
    g_setenv("GPUBALANCE_CONFIG", conf, TRUE);
    for (int r = 0; r < rounds; r++) {
        double t_few[RUNS_PER_ROUND], t_many[RUNS_PER_ROUND];

        for (int i = 0; i < RUNS_PER_ROUND; i++) {
            t_few[i] = one_pick(few);
            t_many[i] = one_pick(many);
        }
        pick_ratio[r] = median(t_many, RUNS_PER_ROUND) / median(t_few, RUNS_PER_ROUND);
    }
    print_ratio("pick beside 2000 processes, a render node offered", pick_ratio, rounds, "beside 100");

    gpb_set_clock(fake_clock);
    fake_now = gpb_boottime_ns();
    for (int r = 0; r < rounds; r++) {
        double t_few, t_many;

        gpb_discovery_set_roots(NULL, few);
        ctx = context_with_render_node("/dev/dri/renderD128");
        one_refresh(ctx); /* the first request: no look */
        one_refresh(ctx); /* the first look */
        t_few = one_refresh(ctx);
        gpubalance_context_close(ctx);
        gpb_discovery_set_roots(NULL, many);
        ctx = context_with_render_node("/dev/dri/renderD128");
        one_refresh(ctx);
        one_refresh(ctx);
        t_many = one_refresh(ctx);
        gpubalance_context_close(ctx);
        refresh_ratio[r] = t_many / t_few;
    }
    gpb_set_clock(NULL);
    print_ratio("  (a long-lived process's scan, outside the lock)", refresh_ratio, rounds, "beside 100");
    gpb_discovery_set_roots(NULL, NULL);
    g_unsetenv("GPUBALANCE_CONFIG");
    g_free(few);
    g_free(many);
    g_free(conf);
}

/* ---- device count ------------------------------------------------------- */

static char *sims_config(const char *dir, int n)
{
    GString *c = g_string_new("[general]\ndiscover=false\norder=nvenc,software\n");
    char *path = g_strdup_printf("%s/sims-%d.conf", dir, n);

    for (int i = 0; i < n - 1; i++)
        g_string_append_printf(c, "[device:d%d]\nbackend=sim\nmax-sessions=64\n", i);
    write_file(path, c->str);
    g_string_free(c, TRUE);
    return path;
}

static double placement_us(gpubalance_context *ctx, int n)
{
    double t[2000];
    gpubalance_stream *s;

    gpubalance_stream_new(&s);
    for (int i = 0; i < n; i++) {
        gpubalance_lease *l;
        double t0 = now_us();

        if (gpubalance_lease_acquire(ctx, s, &l) < 0)
            exit(1);
        gpubalance_lease_release(l);
        t[i] = now_us() - t0;
    }
    gpubalance_stream_free(s);
    return median(t, (size_t)n);
}

static void bench_devices(const char *dir, int rounds)
{
    char *conf16 = sims_config(dir, 16), *conf256 = sims_config(dir, GPB_MAX_DEVICES);
    double ratio[MAX_ROUNDS], t16[MAX_ROUNDS], t256[MAX_ROUNDS];
    gpubalance_context *small, *large;

    if (gpubalance_context_open(conf16, &small) < 0 || gpubalance_context_open(conf256, &large) < 0) {
        fprintf(stderr, "%s\n", gpubalance_last_error());
        exit(1);
    }
    for (int r = 0; r < rounds; r++) {
        t16[r] = placement_us(small, 2000);
        t256[r] = placement_us(large, 2000);
        ratio[r] = t256[r] / t16[r];
    }
    printf("placement: %.2f us among 16 devices, %.2f us among 256 (linear would be 16x)\n",
           median(t16, (size_t)rounds), median(t256, (size_t)rounds));
    print_ratio("acquire+release among 256 devices", ratio, rounds, "among 16");
    gpubalance_context_close(small);
    gpubalance_context_close(large);
    g_free(conf16);
    g_free(conf256);
}

int main(int argc, char **argv)
{
    char *dir;
    char *conf;
    int rounds;

    if (argc < 4) {
        fprintf(stderr, "usage: %s GPUBALANCE TRIVIAL_LOCK NOOP [ROUNDS]\n", argv[0]);
        return 2;
    }
    rounds = CLAMP(argc > 4 ? atoi(argv[4]) : 7, 1, MAX_ROUNDS);
    dir = bench_make_dir("gpubalance-scale-XXXXXX");
    conf = g_build_filename(dir, "default.conf", NULL);
    write_file(conf, "[general]\norder=nvenc,vaapi,software\n"); /* discovery on, as shipped */
    g_setenv("GPUBALANCE_CONFIG", conf, TRUE);
    {
        char *ledger = g_build_filename(dir, "ledger-pick", NULL);

        g_setenv("GPUBALANCE_DIR", ledger, TRUE);
        g_free(ledger);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("gpubalance scale benchmark: %d rounds (medians of per-round ratios), %d runs per point\n", rounds,
           RUNS_PER_ROUND);
    bench_cold_pick(dir, argv[1], argv[2], argv[3], rounds);
    bench_status(dir, argv[1], rounds);
    {
        char *ledger = g_build_filename(dir, "ledger-foreign", NULL);

        g_setenv("GPUBALANCE_DIR", ledger, TRUE);
        bench_foreign(dir, rounds);
        g_free(ledger);
    }
    {
        char *ledger = g_build_filename(dir, "ledger-devices", NULL);

        g_setenv("GPUBALANCE_DIR", ledger, TRUE);
        bench_devices(dir, rounds);
        g_free(ledger);
    }
    gpb_remove_tree(dir);
    g_free(conf);
    return 0;
}
