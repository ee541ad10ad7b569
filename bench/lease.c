/* bench/lease.c - acquire+release cost against a bare OFD lock pair, with
 * many leases held, on capped devices, and under contention.
 *
 * Every case is measured in each of ROUNDS rounds, alternating with its
 * baseline in the same round, and the medians over the rounds are printed
 * with their ratios: the machines are shared and noisy, so ratios measured
 * side by side are the result, not microseconds.
 *
 *   build/bench/bench_lease [ITERATIONS [ROUNDS [contention]]]   (contention: only the N-process case)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gpubalance.h"
#include "timing.h"

#define HELD 1000
#define MAX_PROCS 32

/* Three capped devices, one of each kind of limit, far from full; one
 * capped device that the held leases fill, ahead of the others in order;
 * two uncapped ones. */
static const char config[] = "[general]\n"
                             "discover=false\n"
                             "order=nvenc,vaapi,software\n"
                             "[pool:big]\n"
                             "max-sessions=4096\n"
                             "[device:sessions]\n"
                             "backend=sim\nimitates=vaapi\nmax-sessions=4096\n"
                             "[device:budget]\n"
                             "backend=sim\nimitates=vaapi\nbudget=100000\n"
                             "[device:pooled]\n"
                             "backend=sim\nimitates=vaapi\npool=big\n"
                             "[device:full]\n"
                             "backend=sim\nimitates=nvenc\nmax-sessions=1000\n"
                             "[device:idle]\n"
                             "backend=sim\nimitates=vaapi\n"
                             "[device:busy]\n"
                             "backend=sim\nimitates=vaapi\n";

static const char *const capped[] = {"sim:sessions", "sim:budget", "sim:pooled"};

/* timing.c, shared by the benchmarks (short names kept for the calls here) */
#define now_us bench_now_us
#define percentile bench_percentile
#define median bench_median

static void bare_lock_pair(const char *path, double *samples, size_t n)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 8192, .l_len = 1};
    struct flock unlock = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = 8192, .l_len = 1};

    for (size_t i = 0; i < n; i++) {
        double t0 = now_us();

        if (fcntl(fd, F_OFD_SETLK, &lock) < 0 || fcntl(fd, F_OFD_SETLK, &unlock) < 0)
            abort();
        samples[i] = now_us() - t0;
    }
    close(fd);
}

static gpubalance_stream *stream_on(const char *device)
{
    gpubalance_stream *s;

    gpubalance_stream_new(&s);
    gpubalance_stream_set_device(s, device);
    return s;
}

static gpubalance_lease *acquire_or_die(gpubalance_context *ctx, gpubalance_stream *s)
{
    gpubalance_lease *l;

    if (gpubalance_lease_acquire(ctx, s, &l) < 0) {
        fprintf(stderr, "acquire: %s\n", gpubalance_last_error());
        exit(1);
    }
    return l;
}

/* n acquire+release pairs on the devices named (round-robin; NULL: let
 * the policy choose). */
static void acquire_release(gpubalance_context *ctx, const char *const *devices, int n_devices, double *samples,
                            size_t n)
{
    gpubalance_stream *s[8];

    for (int d = 0; d < n_devices; d++)
        s[d] = stream_on(devices[d]);
    for (size_t i = 0; i < n; i++) {
        double t0 = now_us();

        gpubalance_lease_release(acquire_or_die(ctx, s[i % (size_t)n_devices]));
        samples[i] = now_us() - t0;
    }
    for (int d = 0; d < n_devices; d++)
        gpubalance_stream_free(s[d]);
}

static double own_cpu_us(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

/* procs processes each do n acquire+release pairs on the capped devices
 * at once; all samples land in one shared array. Returns pairs per second
 * over the whole run, and in *cpu_per_pair the CPU time (user + system)
 * the processes spent per pair (their loops only): unlike the wall time,
 * it hardly moves with the load other programs put on the machine. */
static double contended(int procs, double *shared, size_t n, double *cpu_per_pair)
{
    double *cpu = mmap(NULL, sizeof(double) * (size_t)procs, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int go[2], ready[2];
    double t0, total_cpu = 0;
    char c;

    if (pipe(go) < 0 || pipe(ready) < 0)
        abort();
    for (int p = 0; p < procs; p++) {
        if (fork() == 0) {
            gpubalance_context *ctx;

            close(go[1]);
            if (gpubalance_context_open(NULL, &ctx) < 0 || write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
                _exit(1);
            cpu[p] = own_cpu_us();
            acquire_release(ctx, capped, 3, shared + (size_t)p * n, n);
            cpu[p] = own_cpu_us() - cpu[p];
            _exit(0);
        }
    }
    for (int p = 0; p < procs; p++)
        if (read(ready[0], &c, 1) != 1)
            abort();
    t0 = now_us();
    for (int p = 0; p < procs; p++)
        if (write(go[1], "g", 1) != 1)
            abort();
    for (int p = 0; p < procs; p++)
        wait(NULL);
    for (int p = 0; p < procs; p++)
        total_cpu += cpu[p];
    *cpu_per_pair = total_cpu / ((double)procs * (double)n);
    munmap(cpu, sizeof(double) * (size_t)procs);
    close(go[0]);
    close(go[1]);
    close(ready[0]);
    close(ready[1]);
    return (double)procs * (double)n / ((now_us() - t0) / 1e6);
}

/* The ledger directory holds the data file and the lock files. */
static void remove_dir(const char *path)
{
    GDir *d = g_dir_open(path, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        char *file = g_build_filename(path, name, NULL);

        g_unlink(file);
        g_free(file);
    }
    if (d)
        g_dir_close(d);
    g_rmdir(path);
}

enum {
    BARE,
    CAPPED_NONE,
    CAPPED_HELD,
    FULL_AHEAD,
    OTHER_DEVICE,
    N_CASES,
};

typedef struct {
    double p50[16], p99[16];
} series;

static void record(series *s, int round, double *samples, size_t n)
{
    s->p50[round] = percentile(samples, n, 0.50);
    s->p99[round] = percentile(samples, n, 0.99);
}

static void print_row(const char *what, series *s, int rounds, const series *base, const char *base_name)
{
    double p50 = median(s->p50, (size_t)rounds), p99 = median(s->p99, (size_t)rounds);
    double ratio[16];

    for (int r = 0; r < rounds; r++)
        ratio[r] = s->p50[r] / base->p50[r];
    printf("%-52s p50 %8.2f us  p99 %8.2f us  %6.2fx %s\n", what, p50, p99, median(ratio, (size_t)rounds), base_name);
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)atol(argv[1]) : 20000;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    size_t per_proc = MAX(n / MAX_PROCS, 200);
    char *dir = bench_make_dir("gpubalance-bench-XXXXXX");
    char *conf = g_build_filename(dir, "bench.conf", NULL);
    char *ledger_dir = g_build_filename(dir, "ledger", NULL);
    double *samples = g_new(double, n);
    double *shared =
        mmap(NULL, sizeof(double) * per_proc * MAX_PROCS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    series s[N_CASES];
    double thr1[16], thr32[16], thr_ratio[16], p99_32[16], p50_32[16], cpu1[16], cpu32[16], cpu_ratio[16];
    bool only_contention = argc > 3 && strcmp(argv[3], "contention") == 0;
    gpubalance_context *ctx;
    gpubalance_lease **held = g_new(gpubalance_lease *, HELD);
    gpubalance_stream *full = stream_on("sim:full");
    gpubalance_stream *any;
    gpubalance_stream *on_capped[3];
    const char *const idle[] = {"sim:idle"};
    char *ledger_path;

    rounds = CLAMP(rounds, 1, 16);
    g_file_set_contents(conf, config, -1, NULL);
    g_setenv("GPUBALANCE_CONFIG", conf, TRUE);
    g_setenv("GPUBALANCE_DIR", ledger_dir, TRUE);
    if (gpubalance_context_open(NULL, &ctx) < 0) {
        fprintf(stderr, "%s\n", gpubalance_last_error());
        return 1;
    }
    gpubalance_stream_new(&any);
    for (int d = 0; d < 3; d++)
        on_capped[d] = stream_on(capped[d]);
    ledger_path = g_strdup(gpubalance_context_ledger_path(ctx));
    printf("gpubalance lease benchmark: %zu iterations x %d rounds (medians), ledger %s\n", n, rounds, ledger_path);

    for (int r = 0; r < rounds; r++) {
        if (only_contention)
            goto contention;
        bare_lock_pair(ledger_path, samples, n);
        record(&s[BARE], r, samples, n);
        acquire_release(ctx, capped, 3, samples, n);
        record(&s[CAPPED_NONE], r, samples, n);

        /* 1000 leases on the three capped devices, far from their caps */
        for (int i = 0; i < HELD; i++)
            held[i] = acquire_or_die(ctx, on_capped[i % 3]);
        acquire_release(ctx, capped, 3, samples, n);
        record(&s[CAPPED_HELD], r, samples, n);
        acquire_release(ctx, idle, 1, samples, n);
        record(&s[OTHER_DEVICE], r, samples, n);
        for (int i = 0; i < HELD; i++)
            gpubalance_lease_release(held[i]);

        /* sim:full at its cap of 1000, first in order: every decision
         * refuses it on its count before placing elsewhere */
        for (int i = 0; i < HELD; i++)
            held[i] = acquire_or_die(ctx, full);
        {
            gpubalance_stream *anyone[] = {any};

            for (size_t i = 0; i < n; i++) {
                double t0 = now_us();

                gpubalance_lease_release(acquire_or_die(ctx, anyone[0]));
                samples[i] = now_us() - t0;
            }
        }
        record(&s[FULL_AHEAD], r, samples, n);
        for (int i = 0; i < HELD; i++)
            gpubalance_lease_release(held[i]);

    contention:
        thr1[r] = contended(1, shared, per_proc * 4, &cpu1[r]);
        thr32[r] = contended(MAX_PROCS, shared, per_proc, &cpu32[r]);
        thr_ratio[r] = thr32[r] / thr1[r];
        cpu_ratio[r] = cpu32[r] / cpu1[r];
        p50_32[r] = percentile(shared, per_proc * MAX_PROCS, 0.50);
        p99_32[r] = percentile(shared, per_proc * MAX_PROCS, 0.99);
    }

    if (only_contention)
        goto print_contention;
    printf("%-52s p50 %8.2f us  p99 %8.2f us\n", "bare OFD lock+unlock pair (baseline)", median(s[BARE].p50, rounds),
           median(s[BARE].p99, rounds));
    print_row("acquire+release on capped devices, none held", &s[CAPPED_NONE], rounds, &s[BARE], "bare");
    print_row("  same, 1000 leases held on them", &s[CAPPED_HELD], rounds, &s[BARE], "bare");
    print_row("  same, 1000 leases held on them", &s[CAPPED_HELD], rounds, &s[CAPPED_NONE], "none held");
    print_row("  1000 held there, acquire on another device", &s[OTHER_DEVICE], rounds, &s[CAPPED_NONE], "none held");
    print_row("  a full device (1000 leases) ahead in order", &s[FULL_AHEAD], rounds, &s[CAPPED_NONE], "none held");
print_contention:
    printf("%-52s %8.0f /s\n", "throughput, 1 process on capped devices", median(thr1, rounds));
    printf("%-52s %8.0f /s  p50 %8.2f us  p99 %8.2f us  %6.2fx 1 process\n",
           "throughput, 32 processes contending on them", median(thr32, rounds), median(p50_32, rounds),
           median(p99_32, rounds), median(thr_ratio, rounds));
    printf("%-52s %8.2f us  32 processes %8.2f us  %6.2fx 1 process\n", "CPU per pair (user+system), 1 process",
           median(cpu1, rounds), median(cpu32, rounds), median(cpu_ratio, rounds));

    for (int d = 0; d < 3; d++)
        gpubalance_stream_free(on_capped[d]);
    gpubalance_stream_free(any);
    gpubalance_stream_free(full);
    g_free(held);
    gpubalance_context_close(ctx);
    remove_dir(ledger_dir);
    g_unlink(conf);
    g_rmdir(dir);
    return 0;
}
