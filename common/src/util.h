/* util.h - errors, logging, clocks and names shared by the core. */
#ifndef GPB_UTIL_H
#define GPB_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "gpubalance.h"

/* Records the calling thread's error message and returns status, so that
 * failures read `return gpb_fail(GPUBALANCE_ERR_CONFIG, "...", ...);`. */
int gpb_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void gpb_clear_error(void);

/* Copies message into buf; one too long keeps its start and its end
 * (where the reason is) around a " [...] " marker. */
void gpb_store_message(char *buf, size_t size, const char *message);

void gpb_log(gpubalance_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define gpb_error(...) gpb_log(GPUBALANCE_LOG_ERROR, __VA_ARGS__)
#define gpb_warning(...) gpb_log(GPUBALANCE_LOG_WARNING, __VA_ARGS__)
#define gpb_info(...) gpb_log(GPUBALANCE_LOG_INFO, __VA_ARGS__)
#define gpb_debug(...) gpb_log(GPUBALANCE_LOG_DEBUG, __VA_ARGS__)

/* CLOCK_BOOTTIME in nanoseconds: the same in every process of one boot and
 * never stepped, so it is what the ledger stores for expiries. */
uint64_t gpb_boottime_ns(void);
/* Wall-clock milliseconds since the epoch, for display only. */
int64_t gpb_unix_ms(void);

/* A test may replace the clock that learned limits and foreign-load
 * refreshes expire by; NULL restores CLOCK_BOOTTIME. Process-wide. */
typedef uint64_t (*gpb_clock_func)(void);
void gpb_set_clock(gpb_clock_func func);
uint64_t gpb_now_ns(void);

/* Parses a backend name as used in `order` and `backend=` keys. */
int gpb_backend_from_name(const char *name, gpubalance_backend *out);

/* The boot id of this boot (/proc/sys/kernel/random/boot_id), or "" */
const char *gpb_boot_id(void);

/* The inode of this process's pid namespace (0 if unknown), kept in a
 * lease's record for display. */
uint64_t gpb_pid_namespace(void);

/* Removes a directory tree, not following symbolic links. */
void gpb_remove_tree(const char *path);

#endif
