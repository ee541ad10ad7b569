/* timing.h - what the benchmarks share to time and summarise runs. */
#ifndef GPB_BENCH_TIMING_H
#define GPB_BENCH_TIMING_H

#include <stddef.h>

/* CLOCK_MONOTONIC in microseconds. */
double bench_now_us(void);

/* Sorts samples and returns the p quantile (p from 0 to 1: the sample at
 * rank p x (n - 1), rounded down). */
double bench_percentile(double *samples, size_t n, double p);

/* Sorts values and returns their median (the lower one of an even count). */
double bench_median(double *values, size_t n);

#endif
