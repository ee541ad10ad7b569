/* timing.c - see timing.h. */
#define _GNU_SOURCE
#include "timing.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <stdlib.h>
#include <time.h>

double bench_now_us(void)
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

double bench_percentile(double *samples, size_t n, double p)
{
    qsort(samples, n, sizeof(double), compare_doubles);
    return samples[(size_t)(p * (double)(n - 1))];
}

double bench_median(double *values, size_t n)
{
    return bench_percentile(values, n, 0.5);
}

char *bench_make_dir(const char *prefix)
{
    char *template;
    char *dir;

    if (!g_file_test("/dev/shm", G_FILE_TEST_IS_DIR))
        return g_dir_make_tmp(prefix, NULL);
    template = g_build_filename("/dev/shm", prefix, NULL);
    dir = g_mkdtemp(template);
    if (!dir) {
        g_free(template);
        return g_dir_make_tmp(prefix, NULL);
    }
    return dir;
}
