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

/* A new directory for a benchmark's ledgers, where gpubalance keeps its
 * own by default: /dev/shm (tmpfs) when there is one, else the temporary
 * directory. A ledger on a disk file system (ext4) costs a journalled
 * page_mkwrite on every first write to a page of its mapping, which no
 * host running gpubalance pays. Returns NULL on failure. */
char *bench_make_dir(const char *prefix);

#endif
