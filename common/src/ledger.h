/* ledger.h - the shared, crash-safe ledger of encode sessions.
 *
 * One fixed-size file per host (or per user), mapped by every process that
 * uses gpubalance. Layout (all sizes recorded in the header, checked on
 * open, and covered by its CRC):
 *
 *   header         magic, format, layout, boot id, CRC; then counters
 *   device table   GPB_MAX_DEVICES records: id, cached session count and
 *                  load, foreign load, learned limit, probe cache
 *   pool table     GPB_MAX_POOLS records: name, learned limit
 *   slot map       one uint16 per slot: the device index, or GPB_FREE_SLOT
 *   slot table     one record per slot: diagnostics of the lease
 *
 * The truth of a lease is an OFD lock on byte `slot` of its device's lock
 * file (ledger.GENERATION.devN.lock),
 * held on the lease's own open file description. Everything else in the
 * file is bookkeeping that gpb_ledger_sweep() can rebuild from the locks.
 * All functions except open/close/reset must be called between
 * gpb_ledger_lock() and gpb_ledger_unlock().
 */
#ifndef GPB_LEDGER_H
#define GPB_LEDGER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "devset.h"
#include "gpubalance.h"

#define GPB_LEDGER_MAGIC "GPBLEDGR"
/* 2: record CRCs, lock files carry their device id; 3: 256 devices;
 * 4: leases lock slot-group files; the header-lock futex */
#define GPB_LEDGER_FORMAT 4u
#define GPB_LEDGER_FILE "ledger"
#define GPB_MAX_POOLS 32
#define GPB_SLOTS 4096
#define GPB_ID_SIZE 64
#define GPB_LABEL_SIZE 64
#define GPB_REASON_SIZE 128
#define GPB_PROBE_KEY_SIZE 160
#define GPB_PROBE_BLOB_SIZE 512
#define GPB_FREE_SLOT 0xffffu
/* How a message about a damaged or refused file ends. */
#define GPB_RESET_HINT "run 'gpubalance reset' to move it aside and start a new one"

/* A learned limit: the session count at which a device or pool refused. */
typedef struct {
    uint32_t limit;
    uint32_t reserved;
    uint64_t until_ns; /* CLOCK_BOOTTIME; 0 = nothing learned */
    char reason[GPB_REASON_SIZE];
} gpb_learned;

/* The learned limit in force at now (gpb_now_ns), or -1 when nothing was
 * learned or it has expired. */
static inline int gpb_learned_limit(const gpb_learned *learned, uint64_t now)
{
    return learned->until_ns > now ? (int)learned->limit : -1;
}

typedef struct {
    char id[GPB_ID_SIZE];
    uint32_t backend;
    uint32_t sessions;         /* live leases, cached; rebuilt by a sweep */
    uint64_t load_milli;       /* sum of their costs x 1000, cached */
    uint32_t foreign_sessions; /* sessions gpubalance did not grant */
    uint32_t driver_sessions;  /* sim: sessions past check_open, cached */
    uint64_t foreign_updated_ns;
    gpb_learned learned;
    char probe_key[GPB_PROBE_KEY_SIZE]; /* uuid|driver|boot id */
    uint32_t probe_blob_size;
    uint32_t foreign_load; /* from live utilisation: gpb_foreign_load_encode() */
    uint32_t crc;          /* of id, backend, foreign_*, learned: see ledger.c */
    uint8_t probe_blob[GPB_PROBE_BLOB_SIZE];
    uint32_t counts_crc; /* of sessions, load_milli, driver_sessions */
    uint32_t reserved;
} gpb_device_record;

typedef struct {
    char name[GPB_ID_SIZE];
    gpb_learned learned;
    uint32_t crc; /* of name and learned */
    uint32_t reserved;
} gpb_pool_record;

enum { GPB_SLOT_DRIVER_OPEN = 1u << 0 };

typedef struct {
    uint32_t state; /* gpubalance_lease_state */
    uint32_t codec;
    uint32_t width;
    uint32_t height;
    uint32_t fps_milli;
    uint32_t cost_milli;
    int32_t pid;
    uint32_t flags;
    uint64_t pid_namespace;
    int64_t since_unix_ms;
    char label[GPB_LABEL_SIZE];
    uint32_t crc;        /* of slot, device and cost_milli: what counts read */
    uint32_t ended_seal; /* set by a release without the header lock: crc
                          * ^ GPB_ENDED_SALT, so no stray byte can end a
                          * lease (see gpb_ledger_end) */
    uint8_t reserved[8];
} gpb_slot_record;

typedef struct gpb_ledger gpb_ledger;

/* The ledger directory: $GPUBALANCE_DIR or /dev/shm/gpubalance-UID. */
char *gpb_ledger_default_dir(void);

/* Opens the ledger in dir (NULL: the default), creating dir and file when
 * missing. Every refusal names the file and the way out. */
int gpb_ledger_open(const char *dir, gpb_ledger **out);
void gpb_ledger_close(gpb_ledger *ledger);
const char *gpb_ledger_path(const gpb_ledger *ledger);
/* The directory holding the data file and the per-device lock files. */
const char *gpb_ledger_dir(const gpb_ledger *ledger);

/* Moves a damaged ledger aside and creates a fresh one (see
 * gpubalance_ledger_reset()). *live_leases receives the count found (from
 * the lock files, so also for a damaged ledger). With force and live
 * leases, the new ledger keeps the old lock files and is rebuilt from
 * them, so the live leases stay counted. */
int gpb_ledger_reset(const char *dir, bool force, int *live_leases);

/* The rules for every file of the ledger directory (the ledger, its lock
 * files, the events file), in one place. gpb_ledger_file_create() makes
 * a file whole under a temporary name (O_EXCL | O_NOFOLLOW), sets its
 * mode with fchmod, reserves reserve bytes, calls fill (0 or an errno)
 * and moves it into place with renameat2(RENAME_NOREPLACE), or replacing
 * one there (replace): 0, 1 when another creator won, or -errno.
 * gpb_ledger_file_open() opens one with O_NOFOLLOW and refuses it
 * (GPUBALANCE_ERR_LEDGER_UNSAFE, a message naming it and why) when it is
 * a symbolic link, not a regular file, has more than one hard link, is
 * writable by everyone, or is someone else's and not shared with a group
 * of ours: 0 with *fd set, 1 when missing, or a negative status. what
 * names the file in messages ("ledger", "lock file", "event log"). */
typedef int (*gpb_ledger_file_fill)(int fd, const void *data);
int gpb_ledger_file_create(int dir_fd, const char *name, mode_t mode, off_t reserve, gpb_ledger_file_fill fill,
                           const void *data, bool replace);
int gpb_ledger_file_open(int dir_fd, const char *dir, const char *name, const char *what, int *fd);

/* Keeps a shared mapping from killing the process with SIGBUS (a file
 * truncated under it, a full tmpfs): a fault in it is answered with zero
 * pages (see ledger.c). Returns a handle for gpb_mapping_unguard(), or -1
 * when the registry is full (the mapping is then unguarded). */
int gpb_mapping_guard(void *base, size_t size);
void gpb_mapping_unguard(int handle);

/* Serialises mutations across threads and processes. If the last holder
 * died inside its critical section, lock() sweeps before returning.
 *
 * The wait is bounded: a holder that is stopped (SIGSTOP, traced) for
 * GPB_LOCK_STALL_MS, asleep without using CPU (hung, frozen) or out of
 * sight for GPB_LOCK_HUNG_MS, or a wait longer than GPB_LOCK_MAX_MS in
 * all, fails with GPUBALANCE_ERR_LEDGER_IO naming the ledger and, when it
 * can be found, the holder's pid. Before returning 0 it checks that the
 * file is still the one mapped: a ledger replaced by a reset is reopened
 * (the move hook re-registers the caller's devices); a truncated one is
 * an error, found before the mapping is touched. Records this process
 * registered are checked against their CRCs and repaired. */
#define GPB_LOCK_STALL_MS 250
#define GPB_LOCK_HUNG_MS 750
#define GPB_LOCK_MAX_MS 10000
int gpb_ledger_lock(gpb_ledger *ledger) __attribute__((warn_unused_result));
void gpb_ledger_unlock(gpb_ledger *ledger);

/* Called under the lock after the ledger was replaced and reopened: the
 * owner registers its devices and pools again (their indices may differ). */
typedef int (*gpb_ledger_moved_hook)(gpb_ledger *ledger, void *user_data);
void gpb_ledger_set_moved_hook(gpb_ledger *ledger, gpb_ledger_moved_hook hook, void *user_data);

/* Does this process hold slot through fd in the ledger now open? False
 * for a lease taken in a ledger since replaced (it then just closes). */
bool gpb_ledger_owns(const gpb_ledger *ledger, int slot, int fd);

/* Device and pool tables, keyed by id/name. find_or_add returns the index
 * or GPUBALANCE_ERR_FULL when the table is full of devices in use (a
 * record no process has registered and no lease holds is reclaimed).
 * Registering a device holds a read lock on its lock file until close,
 * which is how others tell a record in use. */
int gpb_ledger_device_index(gpb_ledger *ledger, const char *id, gpubalance_backend backend);
int gpb_ledger_pool_index(gpb_ledger *ledger, const char *name);
gpb_device_record *gpb_ledger_device(gpb_ledger *ledger, int index);
gpb_pool_record *gpb_ledger_pool(gpb_ledger *ledger, int index);

/* Claims a free slot for device: locks it on a new open file description
 * (returned in *fd), writes record, updates the device's counters. Returns
 * the slot index or a negative status. */
int gpb_ledger_claim(gpb_ledger *ledger, int device, const gpb_slot_record *record, int *fd);

/* Ends the lease in slot: clears its record and counters, and unlocks fd
 * for reuse by a later claim (reusable) or closes it. */
void gpb_ledger_release(gpb_ledger *ledger, int slot, int fd, bool reusable);

/* Ends the lease in slot without the header lock (see ledger.c): marks it
 * ended, unlocks fd for reuse (reusable) or closes it; the next holder of
 * the header lock counts it out. */
void gpb_ledger_end(gpb_ledger *ledger, int slot, int fd, bool reusable);

/* A process about to block in when-full=wait registers (returns a handle,
 * or -1), so that releases close their descriptors and so raise the
 * IN_CLOSE_WRITE that wakes it; wait_end() unregisters. A waiter killed
 * while registered is forgotten by the next sweep. */
int gpb_ledger_wait_begin(gpb_ledger *ledger);
void gpb_ledger_wait_end(gpb_ledger *ledger, int handle);

gpb_slot_record *gpb_ledger_slot(gpb_ledger *ledger, int slot);
/* The slot's device index, or -1 when the slot is free. */
int gpb_ledger_slot_device(const gpb_ledger *ledger, int slot);

/* Checks the lock of every slot of the devices in the set (ledger
 * indices) and forgets leases whose holder is gone, then recounts those
 * devices from their locks. */
void gpb_ledger_verify(gpb_ledger *ledger, const gpb_devset *devices);

/* Tests the locks of up to max_tests leases of the devices in the set (0:
 * all of them), going on where the previous call stopped, and forgets the
 * leases whose holder is gone, counting them out. Returns how many it
 * forgot. Counts stay upper bounds of the truth (see ledger.c), which is
 * all a grant needs; verify() recounts from scratch. */
int gpb_ledger_forget_dead(gpb_ledger *ledger, const gpb_devset *devices, int max_tests);

/* Recounts from the locks every device of the set whose counts fail their
 * CRC (a stray write): a decision trusts the counts without lock tests,
 * so it checks them first. */
void gpb_ledger_check_counts(gpb_ledger *ledger, const gpb_devset *devices);

/* verify() for every device, plus the table's own sanity. */
void gpb_ledger_sweep(gpb_ledger *ledger);

/* Nanoseconds (gpb_now_ns) of the last full sweep. */
uint64_t gpb_ledger_last_sweep(const gpb_ledger *ledger);

/* The random generation of this ledger file (names its lock files, and
 * the counters and event log beside it, events.c). */
uint64_t gpb_ledger_generation(const gpb_ledger *ledger);

/* Called (under the header lock) for each lease that verification finds
 * ended without a release: its holder died. For the event log. */
typedef void (*gpb_ledger_gone_func)(void *user_data, int device, const gpb_slot_record *record);
void gpb_ledger_set_gone_hook(gpb_ledger *ledger, gpb_ledger_gone_func func, void *user_data);

/* The validation done on open, on a header image of size bytes read from
 * a file of file_size bytes: 0 or a status with the message set. Exposed
 * for the fuzz harness. */
int gpb_ledger_check_header(const void *header, size_t size, uint64_t file_size, const char *path);

/* getpid(), looked up once per process (and again in a forked child). */
pid_t gpb_self_pid(void);

#endif
