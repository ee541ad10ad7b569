/* events.h - the host's counters and event log, in a file beside the
 * ledger.
 *
 * File `ledger.GENERATION.events` in the ledger directory (GENERATION as
 * in the lock files' names, so a reset starts both over together):
 *
 *   header, 4096 bytes   magic GPBEVNTS, format, layout, generation, CRC;
 *                        then the sequence of the last event and the
 *                        number of live watches
 *   counters             GPB_COUNTER_ROWS rows of GPB_COUNTER_COLUMNS
 *                        uint64: one row per ledger device index, the
 *                        last row for host-wide counts; updated with
 *                        atomic adds, no lock
 *   event ring           GPB_EVENT_CAPACITY records, each a seqlock:
 *                        seq (0 while written), time, level, text
 *
 * A separate file rather than a region of the ledger: the ledger's layout
 * is checked to the byte on open and is being changed by other work, and
 * nothing here is needed to place a stream; a damaged or missing events
 * file costs the counters and the log, never a placement.
 */
#ifndef GPB_EVENTS_H
#define GPB_EVENTS_H

#include <glib.h>
#include <stdint.h>

#include "gpubalance.h"
#include "ledger.h"

#define GPB_COUNTER_DEVICE_ROWS 256
#define GPB_COUNTER_HOST_ROW GPB_COUNTER_DEVICE_ROWS
#define GPB_COUNTER_ROWS (GPB_COUNTER_DEVICE_ROWS + 1)
#define GPB_COUNTER_COLUMNS 16
#define GPB_EVENT_CAPACITY 1024
#define GPB_EVENT_TEXT_SIZE 488

_Static_assert(GPUBALANCE_N_COUNTERS <= GPB_COUNTER_COLUMNS, "room for every counter");

typedef struct gpb_events gpb_events;

/* Opens (creating it when missing, replacing it when damaged) the events
 * file of ledger. NULL when impossible, with a warning logged: callers
 * pass NULL on and lose only counters and the log. */
gpb_events *gpb_events_open(const gpb_ledger *ledger);
void gpb_events_close(gpb_events *events);
const char *gpb_events_path(const gpb_events *events);

/* Adds one to a counter of a row (a ledger device index, or
 * GPB_COUNTER_HOST_ROW). events may be NULL. */
void gpb_events_count(gpb_events *events, int row, gpubalance_counter counter);
uint64_t gpb_events_counter(const gpb_events *events, int row, gpubalance_counter counter);

/* A structured line: "event=KIND" then key=value pairs appended with
 * gpb_kv*(); values with spaces, quotes or '=' are quoted. */
GString *gpb_event_begin(const char *kind);
void gpb_kv(GString *line, const char *key, const char *value);
void gpb_kv_int(GString *line, const char *key, long long value);

/* Logs line at level through the log handler, keeps it in the ring,
 * counts counter (-1: none) on row, and frees line. */
void gpb_event_commit(gpb_events *events, GString *line, gpubalance_log_level level, int row, int counter);

uint64_t gpb_events_read(const gpb_events *events, uint64_t after, gpubalance_event_func func, void *user_data);

/* A live watch: events are then also announced by a write() to the file,
 * which inotify sees (stores to the mapping raise nothing). */
void gpb_events_add_watcher(gpb_events *events, int delta);

/* Opens the context's events file and has the ledger report expired
 * leases to it (context.c, once the inventory is built). */
struct gpubalance_context;
void gpb_events_attach(struct gpubalance_context *ctx);

#endif
