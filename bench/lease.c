/* bench/lease.c - acquire+release latency against a bare OFD lock pair.
 *
 * Prints p50 and p99 of one acquire+release, uncontended, with 16 and 64
 * processes contending, and with 1000 live leases held on another device,
 * each as a ratio of the bare fcntl(F_OFD_SETLK) lock+unlock pair measured
 * in the same run on the same file system. Ratios, not times, are the
 * result: the machines are shared and noisy.
 *
 *   build/bench/bench_lease [ITERATIONS]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gpubalance.h"

static const char config[] = "[general]\n"
                             "discover=false\n"
                             "order=nvenc,software\n"
                             "[device:idle]\n"
                             "backend=sim\n"
                             "[device:busy]\n"
                             "backend=sim\n";

static double now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double percentile(double *samples, size_t n, double p)
{
    qsort(samples, n, sizeof(double), compare_doubles);
    return samples[(size_t)(p * (double)(n - 1))];
}

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

static void acquire_release(gpubalance_context *ctx, const char *device, double *samples, size_t n)
{
    gpubalance_stream *s = stream_on(device);

    for (size_t i = 0; i < n; i++) {
        gpubalance_lease *l;
        double t0 = now_us();

        if (gpubalance_lease_acquire(ctx, s, &l) < 0) {
            fprintf(stderr, "acquire: %s\n", gpubalance_last_error());
            exit(1);
        }
        gpubalance_lease_release(l);
        samples[i] = now_us() - t0;
    }
    gpubalance_stream_free(s);
}

/* procs processes each time n acquire+release pairs at once; all samples
 * land in one shared array. */
static void contended(int procs, double *shared, size_t n)
{
    int go[2];

    if (pipe(go) < 0)
        abort();
    for (int p = 0; p < procs; p++) {
        if (fork() == 0) {
            gpubalance_context *ctx;
            char c;

            close(go[1]);
            if (gpubalance_context_open(NULL, &ctx) < 0 || read(go[0], &c, 1) != 1)
                _exit(1);
            acquire_release(ctx, p % 2 ? "sim:idle" : "sim:busy", shared + (size_t)p * n, n);
            _exit(0);
        }
    }
    close(go[0]);
    for (int p = 0; p < procs; p++)
        if (write(go[1], "g", 1) != 1)
            abort();
    close(go[1]);
    for (int p = 0; p < procs; p++)
        wait(NULL);
}

static void report(const char *what, double *samples, size_t n, double bare_p50, double bare_p99)
{
    double p50 = percentile(samples, n, 0.50), p99 = percentile(samples, n, 0.99);

    printf("%-44s p50 %7.2f us (%5.1fx bare)   p99 %8.2f us (%6.1fx bare)\n", what, p50, p50 / bare_p50, p99,
           p99 / bare_p99);
}

/* The ledger directory holds the data file and one lock file a device. */
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

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)atol(argv[1]) : 20000;
    size_t per_proc = MAX(n / 64, 200);
    char *dir = g_dir_make_tmp("gpubalance-bench-XXXXXX", NULL);
    char *conf = g_build_filename(dir, "bench.conf", NULL);
    char *ledger_dir = g_build_filename(dir, "ledger", NULL);
    double *samples = g_new(double, n);
    double *shared =
        mmap(NULL, sizeof(double) * per_proc * 64, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    double bare_p50, bare_p99;
    gpubalance_context *ctx;
    gpubalance_lease **held;
    gpubalance_stream *busy;
    char *ledger_path;

    g_file_set_contents(conf, config, -1, NULL);
    g_setenv("GPUBALANCE_CONFIG", conf, TRUE);
    g_setenv("GPUBALANCE_DIR", ledger_dir, TRUE);
    if (gpubalance_context_open(NULL, &ctx) < 0) {
        fprintf(stderr, "%s\n", gpubalance_last_error());
        return 1;
    }
    ledger_path = g_strdup(gpubalance_context_ledger_path(ctx));
    printf("gpubalance lease benchmark: %zu iterations, ledger %s\n", n, ledger_path);

    bare_lock_pair(ledger_path, samples, n);
    bare_p50 = percentile(samples, n, 0.50);
    bare_p99 = percentile(samples, n, 0.99);
    printf("%-44s p50 %7.2f us                p99 %8.2f us\n", "bare OFD lock+unlock pair (baseline)", bare_p50,
           bare_p99);

    acquire_release(ctx, "sim:idle", samples, n);
    report("acquire+release, 1 process", samples, n, bare_p50, bare_p99);

    contended(16, shared, per_proc);
    report("acquire+release, 16 processes contending", shared, per_proc * 16, bare_p50, bare_p99);
    contended(64, shared, per_proc);
    report("acquire+release, 64 processes contending", shared, per_proc * 64, bare_p50, bare_p99);

    held = g_new(gpubalance_lease *, 1000);
    busy = stream_on("sim:busy");
    for (int i = 0; i < 1000; i++)
        if (gpubalance_lease_acquire(ctx, busy, &held[i]) < 0)
            return 1;
    acquire_release(ctx, "sim:idle", samples, n);
    report("acquire+release, 1000 leases on another dev", samples, n, bare_p50, bare_p99);
    for (int i = 0; i < 1000; i++)
        gpubalance_lease_release(held[i]);

    gpubalance_stream_free(busy);
    gpubalance_context_close(ctx);
    remove_dir(ledger_dir);
    g_unlink(conf);
    g_rmdir(dir);
    return 0;
}
