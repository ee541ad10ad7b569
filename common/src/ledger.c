/* ledger.c - the shared, crash-safe ledger of encode sessions.
 *
 * Why OFD locks. A lease must end when its holder ends, however it ends:
 * release, exit, SIGKILL, OOM kill, a crash. The only bookkeeping the kernel
 * undoes on every one of those paths is the release of file locks. Classic
 * POSIX record locks (F_SETLK) are owned by the process and silently dropped
 * when the process closes *any* descriptor of the file, so a library that
 * opens the ledger twice would lose its leases; flock() locks the whole
 * file. Open-file-description locks (F_OFD_SETLK, Linux 3.15) are owned by
 * one open file description and byte-ranged: each lease opens the file
 * again, locks the one byte of its slot, and ends exactly when that
 * description is closed. Two descriptions in one process conflict like two
 * processes, so threads need no extra care. A description is shared by
 * fork() and survives exec() unless O_CLOEXEC is set: every descriptor here
 * is O_CLOEXEC, and `gpubalance exec` clears the flag on purpose.
 *
 * Why no pid checks. A pid seen in another pid namespace is a different
 * number, and pids are reused; the lock is the only liveness test that is
 * right in every case. pid and namespace inode are kept for display only.
 *
 * Why counters at all. Counting a device's sessions by testing every slot's
 * lock costs one fcntl per lease on the host, on every acquire. The device
 * table keeps counters instead, updated under the header lock.
 *
 * The invariant: under the header lock, every cached count (sessions, load,
 * driver sessions) is at least the true figure of live leases. Claim counts
 * a lease in the same critical section that takes its lock; a release
 * (gpb_ledger_end, without the header lock) marks the lease ended and the
 * next locker counts it out; a holder that dies without releasing leaves
 * its lease counted (too high, never too low); a process that dies inside
 * the critical section leaves the "in critical section" flag, and the next
 * locker rebuilds every count from the locks before anyone reads them. A
 * count that can only overstate load can only cause a refusal, never a
 * grant past a limit: so placement trusts the cached counts for every
 * grant, and tests a device's leases against their locks only when its
 * count would refuse the stream (gpb_ledger_forget_dead, see lease.c). A
 * periodic sweep corrects the ties that stale counts skew.
 *
 * Known limits: local filesystems only (OFD locks over NFS are not
 * reliable); every participant needs write access to the file; a child
 * forked without exec shares its parent's lease descriptions.
 */
#define _GNU_SOURCE
#include "ledger.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/futex.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "cost.h"
#include "util.h"

/* AddressSanitizer's leak checker (see scanned_for_leaks()): gcc says so
 * with __SANITIZE_ADDRESS__, clang with __has_feature. */
#if defined(__SANITIZE_ADDRESS__)
#define GPB_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GPB_LSAN 1
#endif
#endif
#ifdef GPB_LSAN
#include <sanitizer/lsan_interface.h>
#endif

#define HEADER_SIZE 512u
#define ENDED_RING 64
#define RESET_HINT GPB_RESET_HINT

/* The part of the header that never changes after creation; its CRC is
 * the last field. */
typedef struct {
    char magic[8];
    uint32_t format;
    uint32_t header_size;
    uint32_t device_record_size;
    uint32_t pool_record_size;
    uint32_t slot_record_size;
    uint32_t device_capacity;
    uint32_t pool_capacity;
    uint32_t slot_capacity;
    uint64_t device_table_offset;
    uint64_t pool_table_offset;
    uint64_t slot_map_offset;
    uint64_t slot_table_offset;
    uint64_t file_size;
    uint64_t generation; /* random, names this ledger's lock files */
    char boot_id[40];
    uint32_t crc;
    uint32_t reserved;
} ledger_layout;

typedef struct {
    ledger_layout layout;
    /* dynamic part, written under the header lock only */
    uint32_t in_critical_section; /* set by lock(), cleared by unlock() */
    uint32_t device_count;        /* a hint: records past it are unused */
    uint32_t pool_count;
    uint32_t slot_hint;
    uint32_t waiters;    /* processes blocked in when-full=wait (see wait_begin) */
    uint32_t lock_epoch; /* +1 at each header lock: waiters' measure of progress */
    uint64_t last_sweep_ns;
    int32_t lock_holder_pid; /* as the holder sees itself; for messages */
    /* Slots ended by gpb_ledger_end() without the header lock, counted out
     * by the next holder of the lock (see reap_ended). Written with
     * atomics; an entry lost to a crash or an overflow leaves its lease
     * counted until a lock test finds it gone. */
    uint32_t ended_head;        /* entries pushed, ever */
    uint32_t ended_tail;        /* entries reaped, ever */
    uint32_t ended[ENDED_RING]; /* slot + 1; 0 = empty */
    /* The futex waiters of the header lock sleep on (header_lock_futex):
     * +1 at every unlock; and how many sleep or are about to. */
    uint32_t unlock_count;
    uint32_t sleepers;
} ledger_header;

_Static_assert(sizeof(ledger_header) <= HEADER_SIZE, "header too large");

#define SPARE_FDS 8
#define WAITER_BYTE 1
/* Leases lock bytes of slot-group files (see group_file_name()): slots
 * [g * GROUP_SLOTS, (g + 1) * GROUP_SLOTS) in file g, at the device's row
 * of GROUP_SLOTS bytes, so that no file holds more than GROUP_SLOTS
 * locks. */
#define GROUP_SLOTS 64
#define N_GROUPS (GPB_SLOTS / GROUP_SLOTS)
/* In each device's lock file, every process that registered the device
 * holds a read lock on byte IN_USE_BYTE, so a record nobody uses can be
 * told apart and reclaimed. */
#define IN_USE_BYTE GPB_SLOTS
/* The cost counted for a lease whose record is damaged or unknown (one
 * rebuilt from a lock file after a reset): large enough that a budget
 * never passes on it, for the lease's remaining life. */
#define UNKNOWN_COST_MILLI 64000u
#define LOCK_FILE_MAGIC "GPBLOCK2"

/* What a device's lock file holds besides its locks: which device it is.
 * It lets the device table be rebuilt, and a damaged record repaired,
 * from the lock files alone. */
typedef struct {
    char magic[8];
    uint32_t backend;
    uint32_t crc; /* of the fields before it and id */
    char id[GPB_ID_SIZE];
} lock_file_content;

/* The fields of a device record its CRC covers, gathered for comparison. */
typedef struct {
    char id[GPB_ID_SIZE];
    uint32_t backend;
    uint32_t foreign_sessions;
    uint64_t foreign_updated_ns;
    gpb_learned learned;
    uint32_t foreign_load;
    uint32_t crc;
} device_covered;

/* A device record's counts and their CRC, as a process last checked them
 * (see counts_as_checked()). */
typedef struct {
    uint32_t sessions, driver_sessions;
    uint64_t load_milli;
    uint32_t counts_crc, pad; /* pad: zeroed, so memcmp sees no garbage */
} counts_copy;

struct gpb_ledger {
    char *dir;
    char *path;
    int dir_fd;
    int fd; /* holds the header lock */
    dev_t st_dev;
    ino_t st_ino;
    uint8_t *base;
    size_t size;
    int mapping; /* index in the SIGBUS registry, or -1 */
    ledger_header *header;
    gpb_device_record *devices;
    gpb_pool_record *pools;
    uint16_t *slot_map;
    gpb_slot_record *slots;
    uint64_t generation;
    /* Per device: one descriptor of its lock file (holding the in-use read
     * lock when registered). Per slot group: one descriptor of its lock
     * file for lock tests, and released lease descriptors kept for reuse
     * (opening one costs as much as the rest of an acquire). */
    int lock_fd[GPB_MAX_DEVICES];
    int group_fd[N_GROUPS];
    int spare_fd[N_GROUPS][SPARE_FDS];
    int n_spare[N_GROUPS];
    /* What this process registered: the key of each record it uses, so a
     * damaged record is repaired and a replaced ledger re-registered. */
    char *known_device[GPB_MAX_DEVICES];
    gpb_devset registered; /* the indices whose known_device is set */
    gpubalance_backend known_backend[GPB_MAX_DEVICES];
    char *known_pool[GPB_MAX_POOLS];
    /* The covered fields of each registered record as this process last
     * saw them valid or sealed them: a record equal to its copy needs no
     * CRC computed (the common case, at every lock and unlock). */
    device_covered sealed_device[GPB_MAX_DEVICES];
    bool sealed_device_known[GPB_MAX_DEVICES];
    gpb_pool_record sealed_pool[GPB_MAX_POOLS];
    bool sealed_pool_known[GPB_MAX_POOLS];
    /* Each device's counts as this process last found them matching their
     * CRC: counts equal to their copy need no CRC computed (a decision
     * checks every device it knows; one or two changed since). */
    counts_copy checked_counts[GPB_MAX_DEVICES];
    gpb_devset checked_counts_known;
    /* This process's lease descriptor in each slot, plus one: 0 (none)
     * is what a new mapping holds, so the table is never filled. */
    int slot_fd_plus_one[GPB_SLOTS];
    uint8_t *locked_bits; /* scratch for verify: GPB_SLOTS bits per device;
                           * allocated by the first verify (a process that
                           * places one stream seldom sweeps) */
    int forget_cursor;    /* where gpb_ledger_forget_dead() goes on */
    bool header_locked;   /* this process holds the header lock on fd */
    gpb_ledger_moved_hook moved_hook;
    void *moved_hook_data;
    /* The header lock's OFD is shared by this process's threads. A pthread
     * mutex rather than GMutex: ThreadSanitizer sees pthread mutexes, not
     * GLib's futexes, and the core is checked under it. */
    pthread_mutex_t mutex;
    gpb_ledger_gone_func gone_hook; /* events.c: leases that expired */
    void *gone_data;
};

static const uint64_t device_table_offset = HEADER_SIZE;
static const uint64_t pool_table_offset = HEADER_SIZE + sizeof(gpb_device_record) * GPB_MAX_DEVICES;
static const uint64_t slot_map_offset =
    HEADER_SIZE + sizeof(gpb_device_record) * GPB_MAX_DEVICES + sizeof(gpb_pool_record) * GPB_MAX_POOLS;

static uint64_t slot_table_offset(void)
{
    uint64_t end_of_map = slot_map_offset + sizeof(uint16_t) * GPB_SLOTS;

    return (end_of_map + 4095) & ~(uint64_t)4095;
}

static uint64_t expected_file_size(void)
{
    return slot_table_offset() + sizeof(gpb_slot_record) * GPB_SLOTS;
}

static uint32_t layout_crc(const ledger_layout *layout)
{
    return (uint32_t)crc32(0L, (const Bytef *)layout, offsetof(ledger_layout, crc));
}

static void fill_layout(ledger_layout *layout, uint64_t generation)
{
    memset(layout, 0, sizeof(*layout));
    memcpy(layout->magic, GPB_LEDGER_MAGIC, 8);
    layout->format = GPB_LEDGER_FORMAT;
    layout->header_size = HEADER_SIZE;
    layout->device_record_size = sizeof(gpb_device_record);
    layout->pool_record_size = sizeof(gpb_pool_record);
    layout->slot_record_size = sizeof(gpb_slot_record);
    layout->device_capacity = GPB_MAX_DEVICES;
    layout->pool_capacity = GPB_MAX_POOLS;
    layout->slot_capacity = GPB_SLOTS;
    layout->device_table_offset = device_table_offset;
    layout->pool_table_offset = pool_table_offset;
    layout->slot_map_offset = slot_map_offset;
    layout->slot_table_offset = slot_table_offset();
    layout->file_size = expected_file_size();
    layout->generation = generation;
    g_strlcpy(layout->boot_id, gpb_boot_id(), sizeof(layout->boot_id));
    layout->crc = layout_crc(layout);
}

int gpb_ledger_check_header(const void *data, size_t size, uint64_t file_size, const char *path)
{
    ledger_layout layout;
    ledger_layout want;

    if (size < sizeof(ledger_layout))
        return gpb_fail(GPUBALANCE_ERR_LEDGER_DAMAGED, "ledger %s is truncated (%zu bytes, no complete header); %s",
                        path, size, RESET_HINT);
    memcpy(&layout, data, sizeof(layout));
    if (memcmp(layout.magic, GPB_LEDGER_MAGIC, 8) != 0)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_DAMAGED, "%s is not a gpubalance ledger (wrong magic number); %s", path,
                        RESET_HINT);
    if (layout.format > GPB_LEDGER_FORMAT)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_NEWER,
                        "ledger %s has format %u, written by a newer gpubalance (this one reads format %u); "
                        "stop the newer version's encodes, or point GPUBALANCE_DIR elsewhere, or %s",
                        path, layout.format, GPB_LEDGER_FORMAT, RESET_HINT);
    if (layout_crc(&layout) != layout.crc)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_DAMAGED, "ledger %s has a damaged header (CRC mismatch); %s", path,
                        RESET_HINT);
    fill_layout(&want, layout.generation);
    /* The boot id is checked by the caller: a ledger from an earlier boot
     * is stale, not damaged. */
    memcpy(want.boot_id, layout.boot_id, sizeof(want.boot_id));
    want.crc = layout.crc;
    if (memcmp(&want, &layout, sizeof(layout)) != 0)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_DAMAGED,
                        "ledger %s has format %u but a layout this gpubalance does not know; %s", path, layout.format,
                        RESET_HINT);
    if (file_size < layout.file_size)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_DAMAGED, "ledger %s is truncated (%llu of %llu bytes); %s", path,
                        (unsigned long long)file_size, (unsigned long long)layout.file_size, RESET_HINT);
    if (file_size > layout.file_size)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_DAMAGED, "ledger %s is longer than its header says (%llu bytes); %s",
                        path, (unsigned long long)file_size, RESET_HINT);
    return 0;
}

/* ---- record checksums ---------------------------------------------------
 *
 * Every field a decision reads is either recomputed from the locks under
 * the header lock (session counts, load, the slot map) or covered by a
 * CRC that its writer seals at unlock and the next locker checks: a
 * device's identity, foreign load and learned limit; a pool's learned
 * limit; a lease's cost. A mismatch is repaired (identity from what this
 * process registered or from the device's lock file; foreign load asked
 * again; a learned limit forgotten; an unknown cost counted as large),
 * never believed. */

static uint32_t device_crc(const gpb_device_record *d)
{
    uLong crc = crc32(0L, (const Bytef *)d->id, sizeof(d->id));

    crc = crc32(crc, (const Bytef *)&d->backend, sizeof(d->backend));
    crc = crc32(crc, (const Bytef *)&d->foreign_sessions, sizeof(d->foreign_sessions));
    crc = crc32(crc, (const Bytef *)&d->foreign_updated_ns, sizeof(d->foreign_updated_ns));
    crc = crc32(crc, (const Bytef *)&d->foreign_load, sizeof(d->foreign_load));
    crc = crc32(crc, (const Bytef *)&d->learned, sizeof(d->learned));
    return (uint32_t)crc;
}

static void covered_of(const gpb_device_record *d, device_covered *c)
{
    memset(c, 0, sizeof(*c));
    memcpy(c->id, d->id, sizeof(c->id));
    c->backend = d->backend;
    c->foreign_sessions = d->foreign_sessions;
    c->foreign_updated_ns = d->foreign_updated_ns;
    c->learned = d->learned;
    c->foreign_load = d->foreign_load;
    c->crc = d->crc;
}

static uint32_t pool_crc(const gpb_pool_record *p)
{
    uLong crc = crc32(0L, (const Bytef *)p->name, sizeof(p->name));

    return (uint32_t)crc32(crc, (const Bytef *)&p->learned, sizeof(p->learned));
}

static uint32_t slot_crc(int slot, int device, uint32_t cost_milli)
{
    uint32_t fields[3] = {(uint32_t)slot, (uint32_t)device, cost_milli};

    return (uint32_t)crc32(0x9e3779b9L, (const Bytef *)fields, sizeof(fields));
}

static uint32_t lock_content_crc(const lock_file_content *c)
{
    return (uint32_t)crc32(0L, (const Bytef *)c, offsetof(lock_file_content, crc)) ^
           (uint32_t)crc32(0L, (const Bytef *)c->id, sizeof(c->id));
}

/* Why the counts carry a CRC of their own. A decision trusts the cached
 * counts (never below the truth) and tests no lock before a grant, so a
 * count lowered by a stray write would let a grant past a limit. Every
 * change of a count happens under the header lock (a release only queues
 * its slot), so each one reseals the CRC, and a decision first recounts
 * from the locks any device whose counts fail it (check_counts). */
_Static_assert(offsetof(gpb_device_record, load_milli) ==
                   offsetof(gpb_device_record, sessions) + sizeof(((gpb_device_record *)0)->sessions),
               "sessions and load_milli are one run of bytes for counts_crc()");

static uint32_t counts_crc(const gpb_device_record *d)
{
    uLong crc = crc32(0L, (const Bytef *)"counts", 6);

    /* sessions then load_milli: adjacent, so one call covers both */
    crc = crc32(crc, (const Bytef *)&d->sessions, sizeof(d->sessions) + sizeof(d->load_milli));
    return (uint32_t)crc32(crc, (const Bytef *)&d->driver_sessions, sizeof(d->driver_sessions));
}

static void copy_counts(const gpb_device_record *d, counts_copy *c)
{
    *c = (counts_copy){d->sessions, d->driver_sessions, d->load_milli, d->counts_crc, 0};
}

/* Are the counts of record i as this process last found them valid? */
static bool counts_as_checked(const gpb_ledger *ledger, int i)
{
    counts_copy now;

    if (!gpb_devset_has(&ledger->checked_counts_known, i))
        return false;
    copy_counts(&ledger->devices[i], &now);
    return memcmp(&now, &ledger->checked_counts[i], sizeof(now)) == 0;
}

static void seal_counts(gpb_device_record *d)
{
    d->counts_crc = counts_crc(d);
}

/* ---- SIGBUS ---------------------------------------------------------------
 *
 * The file is fully allocated at creation and checked (size, inode) under
 * the header lock before the mapping is touched, so SIGBUS needs a file
 * truncated by someone who ignores the lock in the microseconds of one
 * critical section. Even then no process may die of it: the handler
 * replaces a ledger mapping that faulted with zeroed anonymous memory and
 * marks it lost; the ledger notices at its next check and reopens or
 * fails. A fault anywhere else goes to the handler installed before. */

#define MAX_MAPPINGS 256

typedef struct {
    uintptr_t base; /* 0: free entry */
    size_t size;
    int lost;
} mapping_entry;

static mapping_entry mappings[MAX_MAPPINGS];
static struct sigaction previous_sigbus;
static pthread_once_t sigbus_once = PTHREAD_ONCE_INIT;

static void on_sigbus(int sig, siginfo_t *info, void *context)
{
    uintptr_t addr = (uintptr_t)info->si_addr;

    for (int i = 0; i < MAX_MAPPINGS; i++) {
        uintptr_t base = __atomic_load_n(&mappings[i].base, __ATOMIC_ACQUIRE);
        size_t size = __atomic_load_n(&mappings[i].size, __ATOMIC_RELAXED);

        if (base > 1 && addr >= base && addr < base + size) {
            if (mmap((void *)base, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) !=
                MAP_FAILED) {
                __atomic_store_n(&mappings[i].lost, 1, __ATOMIC_RELEASE);
                return; /* the access is retried on zeroes */
            }
        }
    }
    if (previous_sigbus.sa_flags & SA_SIGINFO) {
        previous_sigbus.sa_sigaction(sig, info, context);
    } else if (previous_sigbus.sa_handler != SIG_IGN && previous_sigbus.sa_handler != SIG_DFL) {
        previous_sigbus.sa_handler(sig);
    } else {
        /* Not ours: restore the default and let the fault happen again. */
        sigaction(SIGBUS, &previous_sigbus, NULL);
    }
}

static void install_sigbus_handler(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &previous_sigbus);
}

/* An entry is claimed by turning its base from 0 to 1 (which no handler
 * matches), filled, and published by storing the real base, so the handler
 * never pairs one mapping's base with another's size. */
int gpb_mapping_guard(void *base, size_t size)
{
    pthread_once(&sigbus_once, install_sigbus_handler);
    for (int i = 0; i < MAX_MAPPINGS; i++) {
        uintptr_t expected = 0;

        if (!__atomic_compare_exchange_n(&mappings[i].base, &expected, (uintptr_t)1, false, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE))
            continue;
        __atomic_store_n(&mappings[i].size, size, __ATOMIC_RELAXED);
        __atomic_store_n(&mappings[i].lost, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&mappings[i].base, (uintptr_t)base, __ATOMIC_RELEASE);
        return i;
    }
    return -1; /* more than MAX_MAPPINGS mappings: no safety net for this one */
}

void gpb_mapping_unguard(int index)
{
    if (index >= 0)
        __atomic_store_n(&mappings[index].base, 0, __ATOMIC_RELEASE);
}

static bool mapping_lost(const gpb_ledger *ledger)
{
    return ledger->mapping >= 0 && __atomic_load_n(&mappings[ledger->mapping].lost, __ATOMIC_ACQUIRE);
}

/* ---- directory and file safety ---------------------------------------- */

/* What an error opening or creating a file can advise: reset cures a
 * damaged file, not a process out of descriptors or a full disk. */
static const char *errno_advice(int err)
{
    switch (err) {
    case EMFILE:
    case ENFILE:
        return "this process or the system has too many open files; raise the limit (ulimit -n) or close some";
    case ENOSPC:
    case EDQUOT:
        return "the file system is full; free space there or point GPUBALANCE_DIR elsewhere";
    case ENOMEM:
        return "out of memory";
    case EACCES:
    case EPERM:
        return "check the directory's owner, group and mode (2770 with a group shared by every user)";
    case ENAMETOOLONG:
        return "the path is too long; use a shorter GPUBALANCE_DIR";
    case ENOENT:
    case ENOTDIR:
        return "a directory above it is missing; create it or point GPUBALANCE_DIR elsewhere";
    default:
        return RESET_HINT;
    }
}

char *gpb_ledger_default_dir(void)
{
    const char *env = g_getenv("GPUBALANCE_DIR");

    if (env && *env)
        return g_strdup(env);
    return g_strdup_printf("/dev/shm/gpubalance-%u", (unsigned)geteuid());
}

static bool in_our_groups(gid_t gid)
{
    gid_t groups[256];
    int n = getgroups(G_N_ELEMENTS(groups), groups);

    if (gid == getegid())
        return true;
    for (int i = 0; i < n; i++)
        if (groups[i] == gid)
            return true;
    return false;
}

/* Root takes part in any group's ledger; others in their own groups'. */
static bool may_share_group(gid_t gid)
{
    return geteuid() == 0 || in_our_groups(gid);
}

/* A directory we may trust: a real directory that nobody outside its
 * group can write, owned by us or root, or a setgid group directory
 * (mode 2770) of a group we share, whoever of its members created it.
 * Creates it (mode 0700) if missing. */
static int prepare_dir(const char *dir)
{
    struct stat st;

    if (!g_path_is_absolute(dir))
        return gpb_fail(GPUBALANCE_ERR_LEDGER_UNSAFE,
                        "ledger directory %s is a relative path, which would give each working directory a ledger "
                        "of its own; set GPUBALANCE_DIR to an absolute path",
                        dir);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot create ledger directory %s: %s; %s", dir, g_strerror(errno),
                        errno_advice(errno));
    if (lstat(dir, &st) < 0)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot inspect ledger directory %s: %s; %s", dir, g_strerror(errno),
                        errno_advice(errno));
    if (S_ISLNK(st.st_mode))
        return gpb_fail(GPUBALANCE_ERR_LEDGER_UNSAFE,
                        "ledger directory %s is a symbolic link; refusing it (remove it, or set GPUBALANCE_DIR to "
                        "a real directory)",
                        dir);
    if (!S_ISDIR(st.st_mode))
        return gpb_fail(GPUBALANCE_ERR_LEDGER_UNSAFE, "ledger directory %s is not a directory", dir);
    if (st.st_mode & S_IWOTH)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_UNSAFE,
                        "ledger directory %s is writable by everyone (mode %04o); use mode 0700, or 2770 with a "
                        "group for a shared host",
                        dir, (unsigned)(st.st_mode & 07777));
    if (st.st_uid != geteuid() && st.st_uid != 0 &&
        !((st.st_mode & S_ISGID) && (st.st_mode & S_IWGRP) && may_share_group(st.st_gid)))
        return gpb_fail(GPUBALANCE_ERR_LEDGER_UNSAFE,
                        "ledger directory %s belongs to uid %u, not to you (uid %u) or root, and is not a setgid "
                        "group directory (mode 2770) of a group of yours; refusing it",
                        dir, (unsigned)st.st_uid, (unsigned)geteuid());
    return 0;
}

/* A ledger or lock file we may use: a regular file with one name (a hard
 * link could point our writes at another file), nobody outside its group
 * can write, ours or group-writable by a group we share. */
static int check_file(const char *what, const char *path, const struct stat *st)
{
    if (!S_ISREG(st->st_mode))
        return gpb_fail(GPUBALANCE_ERR_LEDGER_UNSAFE, "%s %s is not a regular file; %s", what, path, RESET_HINT);
    if (st->st_nlink > 1)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_UNSAFE,
                        "%s %s has %lu hard links; a ledger file has one name, so refusing it; %s", what, path,
                        (unsigned long)st->st_nlink, RESET_HINT);
    if (st->st_mode & S_IWOTH)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_UNSAFE, "%s %s is writable by everyone (mode %04o); %s", what, path,
                        (unsigned)(st->st_mode & 07777), RESET_HINT);
    if (st->st_uid != geteuid() && !((st->st_mode & S_IWGRP) && may_share_group(st->st_gid)))
        return gpb_fail(GPUBALANCE_ERR_LEDGER_UNSAFE,
                        "%s %s belongs to uid %u and is not shared with a group of yours (mode %04o, gid %u); "
                        "refusing it; in a shared directory every file must be group-writable (mode 2770 on the "
                        "directory makes them so)",
                        what, path, (unsigned)st->st_uid, (unsigned)(st->st_mode & 07777), (unsigned)st->st_gid);
    return 0;
}

/* The mode for files created in dir: group-writable in a group directory.
 * Applied with fchmod to files this process has just created (O_EXCL), so
 * the umask cannot make a shared file private; never to anything else. */
static mode_t file_mode_for(int dir_fd)
{
    struct stat st;

    if (fstat(dir_fd, &st) == 0 && (st.st_mode & S_IWGRP))
        return 0660;
    return 0600;
}

/* A temporary name in dir, unique to this call. */
static char *temp_name(const char *base)
{
    return g_strdup_printf("%s.new-%d-%08x", base, (int)getpid(), g_random_int());
}

/* Moves tmp to name in dir_fd without replacing (RENAME_NOREPLACE, so a
 * file never has two names as link()+unlink() would): 0, or 1 when
 * another creator won, or -errno. */
static int publish(int dir_fd, const char *tmp, const char *name, bool replace)
{
    if (renameat2(dir_fd, tmp, dir_fd, name, replace ? 0 : RENAME_NOREPLACE) == 0)
        return 0;
    if (errno == EEXIST)
        return 1;
    return -errno;
}

/* Makes file name in dir_fd whole before anyone can open it: created
 * under a temporary name (O_EXCL | O_NOFOLLOW: never an existing file or
 * a link), its mode set with fchmod (the umask must not make a shared
 * file private; only ever on a file this process just created), reserve
 * bytes allocated (no sparse file: a full file system is an error here,
 * never a SIGBUS at a later store through a mapping), filled, and moved
 * into place with RENAME_NOREPLACE (or replacing, for a reset). Returns 0,
 * 1 when another creator won, or -errno. */
int gpb_ledger_file_create(int dir_fd, const char *name, mode_t mode, off_t reserve, gpb_ledger_file_fill fill,
                           const void *data, bool replace)
{
    char *tmp = temp_name(name);
    int fd = openat(dir_fd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    int err = 0;

    if (fd < 0) {
        err = -errno;
        g_free(tmp);
        return err;
    }
    if (fchmod(fd, mode) < 0)
        err = -errno;
    else if (reserve > 0 && (err = posix_fallocate(fd, 0, reserve)) != 0)
        err = -err;
    else if (fill && (err = fill(fd, data)) != 0)
        err = -err;
    else
        err = publish(dir_fd, tmp, name, replace);
    close(fd);
    if (err != 0)
        unlinkat(dir_fd, tmp, 0); /* gone already unless another won or it failed */
    g_free(tmp);
    return err;
}

/* Opens file name of the ledger directory (dir_fd, named dir in messages)
 * by the rules of check_file(), without following a link, into *fd_out.
 * Returns 0, 1 when it does not exist, or a negative status naming it
 * (GPUBALANCE_ERR_LEDGER_UNSAFE for a file refused). */
int gpb_ledger_file_open(int dir_fd, const char *dir, const char *name, const char *what, int *fd_out)
{
    char *path = g_build_filename(dir, name, NULL);
    struct stat st;
    int fd = openat(dir_fd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    int status;

    if (fd < 0 && errno == ENOENT) {
        status = 1;
    } else if (fd < 0 && errno == ELOOP) {
        status = gpb_fail(GPUBALANCE_ERR_LEDGER_UNSAFE, "%s %s is a symbolic link (%s); refusing it; %s", what, path,
                          g_strerror(ELOOP), RESET_HINT);
    } else if (fd < 0) {
        status = gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot open %s %s: %s; %s", what, path, g_strerror(errno),
                          errno_advice(errno));
    } else if (fstat(fd, &st) < 0) {
        status = gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot inspect %s %s: %s", what, path, g_strerror(errno));
    } else {
        status = check_file(what, path, &st);
    }
    g_free(path);
    if (status != 0 && fd >= 0)
        close(fd);
    *fd_out = status == 0 ? fd : -1;
    return status;
}

/* ---- locks ------------------------------------------------------------ */

static int ofd_lock(int fd, short type, off_t offset, bool wait)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = offset, .l_len = 1};
    int r;

    do
        r = fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl);
    while (r < 0 && errno == EINTR);
    return r;
}

/* Is the byte at offset locked by any other open file description? */
static bool ofd_locked_elsewhere(int fd, off_t offset)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = offset, .l_len = 1};

    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return true; /* cannot tell: keep the lease rather than lose one */
    return fl.l_type != F_UNLCK;
}

/* Sets a bit in bits for every byte of [0, length) that another open
 * file description has locked. F_OFD_GETLK reports one conflicting lock
 * of a range, not necessarily the lowest, so each answer splits the range
 * in two: 2n+1 calls for n locks. Returns false if the kernel would not
 * say (the caller then keeps what it had). */
static bool collect_locked(int fd, off_t length, uint8_t *bits)
{
    off_t stack[2 * 64];
    int top = 0;

    memset(bits, 0, (size_t)length / 8);
    stack[top++] = 0;
    stack[top++] = length;
    while (top > 0) {
        off_t end = stack[--top], start = stack[--top];
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = end - start};
        off_t from, to;

        if (start >= end)
            continue;
        if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
            return false;
        if (fl.l_type == F_UNLCK)
            continue;
        from = MAX(fl.l_start, start);
        to = fl.l_len == 0 ? end : MIN(fl.l_start + fl.l_len, end);
        for (off_t b = from; b < to; b++)
            bits[b / 8] |= (uint8_t)(1u << (b % 8));
        if (top + 4 > (int)G_N_ELEMENTS(stack)) {
            /* deep: finish the rest one byte at a time */
            for (int i = 0; i < top; i += 2)
                for (off_t b = stack[i]; b < stack[i + 1]; b++)
                    if (ofd_locked_elsewhere(fd, b))
                        bits[b / 8] |= (uint8_t)(1u << (b % 8));
            top = 0;
        }
        if (to > from) {
            stack[top++] = start;
            stack[top++] = from;
            stack[top++] = to;
            stack[top++] = end;
        }
    }
    return true;
}

static bool bit_set(const uint8_t *bits, int i)
{
    return bits[i / 8] & (1u << (i % 8));
}

/* Does process pid hold a write OFD lock described by want (the "dev:ino
 * start end" of an fdinfo lock line)? Its /proc/PID/fdinfo lists the
 * locks of its descriptors. */
static bool process_holds_lock(const char *pid_name, const char *want)
{
    char *fdinfo_dir = g_build_filename("/proc", pid_name, "fdinfo", NULL);
    GDir *fds = g_dir_open(fdinfo_dir, 0, NULL);
    const char *fd_name;
    bool found = false;

    while (fds && !found && (fd_name = g_dir_read_name(fds))) {
        char *path = g_build_filename(fdinfo_dir, fd_name, NULL);
        gchar *text = NULL;

        if (g_file_get_contents(path, &text, NULL, NULL) && strstr(text, "OFDLCK") && strstr(text, "WRITE") &&
            strstr(text, want))
            found = true;
        g_free(text);
        g_free(path);
    }
    if (fds)
        g_dir_close(fds);
    g_free(fdinfo_dir);
    return found;
}

/* Who holds the lock at offset of the file (dev, ino)? The kernel does not
 * say for OFD locks (F_OFD_GETLK and /proc/locks give pid -1), but each
 * process's /proc/PID/fdinfo lists the locks of its descriptors. The
 * candidate (the pid the header records, or the one found at the last
 * look) is checked first; the pid in the header is only a hint, since a
 * holder records itself after taking the lock, and one that died leaves
 * its pid behind (a pid another process may have now). Only run when a
 * wait stalls. Returns the pid, or -1 if none can be seen. */
static int find_lock_holder(dev_t dev, ino_t ino, off_t offset, int candidate)
{
    char want[96];
    GDir *proc;
    const char *pid_name;
    int found = -1;

    snprintf(want, sizeof(want), "%02x:%02x:%llu %lld %lld", major(dev), minor(dev), (unsigned long long)ino,
             (long long)offset, (long long)offset);
    if (candidate > 0) {
        char name[16];

        snprintf(name, sizeof(name), "%d", candidate);
        if (process_holds_lock(name, want))
            return candidate;
    }
    proc = g_dir_open("/proc", 0, NULL);
    while (proc && found < 0 && (pid_name = g_dir_read_name(proc)))
        if (g_ascii_isdigit(pid_name[0]) && process_holds_lock(pid_name, want))
            found = atoi(pid_name);
    if (proc)
        g_dir_close(proc);
    return found;
}

static void describe_holder(int pid, int recorded_pid, char *buf, size_t size)
{
    gchar *comm = NULL;
    gchar *path;

    if (pid <= 0) {
        if (recorded_pid > 0)
            snprintf(buf, size, "a process this one cannot see (the holder recorded pid %d, in its own pid namespace)",
                     recorded_pid);
        else
            snprintf(buf, size, "a process this one cannot see");
        return;
    }
    path = g_strdup_printf("/proc/%d/comm", pid);
    if (g_file_get_contents(path, &comm, NULL, NULL))
        g_strstrip(comm);
    snprintf(buf, size, "pid %d (%s)", pid, comm ? comm : "?");
    g_free(comm);
    g_free(path);
}

static uint32_t read_epoch(int fd, int32_t *holder)
{
    ledger_header h;

    /* pread, not the mapping: this runs without the lock and must not
     * fault on a truncated file. */
    if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
        return 0;
    *holder = h.lock_holder_pid;
    return h.lock_epoch;
}

/* What a process is doing, from /proc/PID/stat: its state letter, its
 * kernel flags and the CPU time it has used. */
typedef struct {
    int pid;
    char state;
    unsigned flags;
    unsigned long long cpu_ticks;
} proc_sample;

/* The kernel's PF_EXITING (include/linux/sched.h): the task is in do_exit
 * and its locks are about to go with its files. */
#define TASK_FLAG_EXITING 0x00000004u

static bool sample_process(int pid, proc_sample *out)
{
    char path[64];
    gchar *text = NULL;
    const char *after_name;
    unsigned long long utime = 0, stime = 0;
    unsigned flags = 0;
    char state = 0;
    bool ok = false;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if (pid > 0 && g_file_get_contents(path, &text, NULL, NULL) && (after_name = strrchr(text, ')')) &&
        sscanf(after_name + 1, " %c %*d %*d %*d %*d %*d %u %*u %*u %*u %*u %llu %llu", &state, &flags, &utime,
               &stime) == 4) {
        out->pid = pid;
        out->state = state;
        out->flags = flags;
        out->cpu_ticks = utime + stime;
        ok = true;
    }
    g_free(text);
    return ok;
}

/* Waiting for the header lock. Past GPB_LOCK_STALL_MS without any other
 * process taking it, the holder is looked at every 50 ms:
 * - running, exiting (its lock goes with it), or using CPU since the last
 *   look: slow, not stuck (a loaded machine deschedules holders for
 *   hundreds of milliseconds); waited for, up to GPB_LOCK_MAX_MS in all;
 * - stopped or traced (SIGSTOP, a debugger, a paused container): stuck,
 *   the wait fails;
 * - asleep or in uninterruptible sleep with no CPU used (a hung NFS read,
 *   a frozen cgroup), or not to be found (another pid namespace): the wait
 *   fails once nothing moved for GPB_LOCK_HUNG_MS. CPU time counts in
 *   ticks, so a holder sleeping briefly between short bursts can look idle
 *   for one 50 ms look; the longer bound keeps that from failing a
 *   healthy wait. */
typedef enum { HOLDER_BUSY, HOLDER_STOPPED, HOLDER_IDLE, HOLDER_UNSEEN } holder_verdict;

typedef struct {
    int fd;
    uint64_t start;
    uint64_t last_progress; /* the epoch moved, or the holder used CPU */
    uint64_t next_look;
    uint32_t epoch;
    proc_sample holder;
    bool have_holder;
    holder_verdict verdict; /* of the last look */
} lock_wait;

/* The process holding the lock now: the one found at the last look, else
 * the pid the header records, each confirmed by its fdinfo; else whoever
 * the fdinfo of every process names. */
static bool find_holder(lock_wait *w, int32_t recorded, proc_sample *now)
{
    struct stat st;
    int candidate = w->have_holder ? w->holder.pid : recorded;

    return fstat(w->fd, &st) == 0 && sample_process(find_lock_holder(st.st_dev, st.st_ino, 0, candidate), now);
}

static holder_verdict look_at_holder(lock_wait *w, int32_t recorded)
{
    proc_sample now;
    bool same;

    if (!find_holder(w, recorded, &now)) {
        w->have_holder = false;
        return HOLDER_UNSEEN;
    }
    same = w->have_holder && now.pid == w->holder.pid && now.cpu_ticks == w->holder.cpu_ticks;
    w->holder = now;
    w->have_holder = true;
    if (now.state == 'R' || (now.flags & TASK_FLAG_EXITING) || now.state == 'Z' || !same)
        return HOLDER_BUSY;
    if (now.state == 'T' || now.state == 't')
        return HOLDER_STOPPED;
    return HOLDER_IDLE;
}

static bool waited_too_long(lock_wait *w, uint64_t now, int32_t recorded)
{
    uint64_t stalled = now - w->last_progress;

    if (now - w->start > GPB_LOCK_MAX_MS * 1000000ull)
        return true;
    if (stalled <= GPB_LOCK_STALL_MS * 1000000ull || now < w->next_look)
        return false;
    w->next_look = now + 50 * 1000000ull;
    switch ((w->verdict = look_at_holder(w, recorded))) {
    case HOLDER_BUSY:
        w->last_progress = now;
        return false;
    case HOLDER_STOPPED:
        return true;
    default:
        return stalled > GPB_LOCK_HUNG_MS * 1000000ull;
    }
}

/* Notes progress (another process took the lock since the last look). */
static void watch_epoch(lock_wait *w, uint32_t seen, uint64_t now)
{
    if (seen != w->epoch) {
        w->epoch = seen;
        w->last_progress = now;
        w->have_holder = false;
    }
}

/* The error of a wait given up: names the ledger, the holder as found by
 * the last look (not the pid in the header, which may be stale) and what
 * it was doing. */
static int give_up(const lock_wait *w, const char *path, int32_t recorded, uint64_t now)
{
    char holder[160];
    int stalled_ms = (int)((now - w->last_progress) / 1000000);
    const char *doing;

    describe_holder(w->have_holder ? w->holder.pid : -1, recorded, holder, sizeof(holder));
    switch (w->verdict) {
    case HOLDER_STOPPED:
        doing = "is stopped (SIGSTOP, a debugger or a paused container)";
        break;
    case HOLDER_IDLE:
        doing = "is asleep and used no CPU (hung?)";
        break;
    case HOLDER_UNSEEN:
        doing = "cannot be looked at (stopped, hung or paused?)";
        break;
    default:
        doing = "kept it too long";
        break;
    }
    return gpb_fail(GPUBALANCE_ERR_LEDGER_IO,
                    "ledger %s is locked by %s, which %s and made no progress for %d ms; gave up waiting after %d "
                    "ms (resume or end that process)",
                    path, holder, doing, stalled_ms, (int)((now - w->start) / 1000000));
}

/* The bounded wait before the file is mapped (its validation at open):
 * tries again with a backoff from 20 us to 2 ms, watching the epoch
 * (read with pread, which cannot fault on a truncated file) for
 * progress. */
static int header_lock_polling(int fd, const char *path, lock_wait *w)
{
    int32_t recorded = 0;
    long backoff_ns = 20000;

    for (;;) {
        struct timespec pause = {0, backoff_ns};
        uint64_t now;

        nanosleep(&pause, NULL);
        backoff_ns = MIN(backoff_ns * 2, 2000000L);
        if (ofd_lock(fd, F_WRLCK, 0, false) == 0)
            return 0;
        now = gpb_boottime_ns();
        watch_epoch(w, read_epoch(fd, &recorded), now);
        if (waited_too_long(w, now, recorded))
            return give_up(w, path, recorded, now);
    }
}

static long futex_call(uint32_t *word, int op, uint32_t value, const struct timespec *timeout)
{
    return syscall(SYS_futex, word, op, value, timeout, NULL, 0);
}

/* The bounded wait on a mapped ledger. The OFD lock stays the truth (the
 * kernel drops it whatever ends its holder); a futex on the header's
 * unlock count is only how waiters sleep: the kernel's blocking
 * F_OFD_SETLKW cannot be given a timeout without a signal (a library must
 * not take one over), and a helper thread blocked in it for each wait cost
 * a thread start and two wake-ups per contended lock (32 processes fell to
 * 0.42x one process's throughput). A waiter counts itself in `sleepers`,
 * reads the unlock count, tries the lock, and sleeps while the count is
 * unchanged, for 1 ms at first and up to 50 ms; an unlock adds one to the
 * count and, when anyone sleeps, wakes one. A holder that dies never
 * wakes anyone: its waiters find the lock free when their sleep ends. The
 * futex is shared (no FUTEX_PRIVATE_FLAG): it is keyed by the file's page,
 * so it works across processes. */
static int header_lock_futex(int fd, const char *path, ledger_header *mapped, lock_wait *w)
{
    long sleep_ns = 1000000L;

    for (;;) {
        uint32_t seen = __atomic_load_n(&mapped->unlock_count, __ATOMIC_SEQ_CST);
        struct timespec timeout = {0, sleep_ns};
        uint64_t now;
        int locked;

        __atomic_add_fetch(&mapped->sleepers, 1, __ATOMIC_SEQ_CST);
        if ((locked = ofd_lock(fd, F_WRLCK, 0, false)) < 0 && (errno == EAGAIN || errno == EACCES))
            futex_call(&mapped->unlock_count, FUTEX_WAIT, seen, &timeout);
        __atomic_sub_fetch(&mapped->sleepers, 1, __ATOMIC_SEQ_CST);
        if (locked == 0)
            return 0;
        if (errno != EAGAIN && errno != EACCES && errno != ETIMEDOUT && errno != EINTR)
            return gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot lock ledger %s: %s; %s", path, g_strerror(errno),
                            errno_advice(errno));
        if (ofd_lock(fd, F_WRLCK, 0, false) == 0)
            return 0;
        sleep_ns = MIN(sleep_ns * 2, 50000000L);
        now = gpb_boottime_ns();
        watch_epoch(w, __atomic_load_n(&mapped->lock_epoch, __ATOMIC_SEQ_CST), now);
        if (waited_too_long(w, now, __atomic_load_n(&mapped->lock_holder_pid, __ATOMIC_RELAXED)))
            return give_up(w, path, __atomic_load_n(&mapped->lock_holder_pid, __ATOMIC_RELAXED), now);
    }
}

/* Takes the header lock of fd, waiting as long as its holder makes
 * progress (see waited_too_long()). mapped is the ledger's mapped header,
 * NULL before the file is mapped. */
static int header_lock_bounded(int fd, const char *path, ledger_header *mapped)
{
    lock_wait w = {.fd = fd};
    int32_t recorded = 0;

    if (ofd_lock(fd, F_WRLCK, 0, false) == 0)
        return 0;
    if (errno != EAGAIN && errno != EACCES)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot lock ledger %s: %s; %s", path, g_strerror(errno),
                        errno_advice(errno));
    /* Most holds last microseconds: yielding to the holder a few times
     * is cheaper than sleeping. (Yielding longer, 2 ms, starved the
     * holder of 64 racers under ThreadSanitizer past the stall limit:
     * the waiters must sleep.) */
    for (int i = 0; i < 16; i++) {
        sched_yield();
        if (ofd_lock(fd, F_WRLCK, 0, false) == 0)
            return 0;
    }
    w.start = w.last_progress = gpb_boottime_ns();
    w.epoch = mapped ? __atomic_load_n(&mapped->lock_epoch, __ATOMIC_SEQ_CST) : read_epoch(fd, &recorded);
    return mapped ? header_lock_futex(fd, path, mapped, &w) : header_lock_polling(fd, path, &w);
}

/* Unlocks the header lock of fd and, when anyone sleeps on the mapped
 * header's futex (mapped may be NULL), wakes one. */
static void header_unlock(int fd, ledger_header *mapped)
{
    ofd_lock(fd, F_UNLCK, 0, false);
    if (!mapped)
        return;
    __atomic_add_fetch(&mapped->unlock_count, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&mapped->sleepers, __ATOMIC_SEQ_CST) > 0)
        futex_call(&mapped->unlock_count, FUTEX_WAKE, 1, NULL);
}

/* getpid() is a system call on every lock; the pid is kept, and looked
 * up again in a forked child. */
static pid_t own_pid;

static void forget_own_pid(void)
{
    __atomic_store_n(&own_pid, 0, __ATOMIC_RELAXED);
}

static void watch_forks(void)
{
    pthread_atfork(NULL, NULL, forget_own_pid);
}

static pid_t cached_pid(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pid_t pid = __atomic_load_n(&own_pid, __ATOMIC_RELAXED);

    if (pid == 0) {
        pthread_once(&once, watch_forks);
        pid = getpid();
        __atomic_store_n(&own_pid, pid, __ATOMIC_RELAXED);
    }
    return pid;
}

/* Marks the header lock taken, for waiters: the epoch by which they see
 * progress, and who holds it. */
static void note_header_locked(ledger_header *h)
{
    __atomic_add_fetch(&h->lock_epoch, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&h->lock_holder_pid, (int32_t)cached_pid(), __ATOMIC_RELAXED);
}

/* A lease locks one byte of its slot group's file, in its device's row:
 * the lock itself says which device the lease is on. */
static off_t slot_lock_offset(int device, int slot)
{
    return (off_t)device * GROUP_SLOTS + slot % GROUP_SLOTS;
}

static int slot_group(int slot)
{
    return slot / GROUP_SLOTS;
}

/* ---- creation --------------------------------------------------------- */

/* What a new ledger starts with besides empty tables: after a forced
 * reset, the devices and leases found in the kept lock files. */
typedef struct {
    gpb_device_record devices[GPB_MAX_DEVICES];
    uint16_t slot_map[GPB_SLOTS];
    int n_devices;
} ledger_seed;

static int write_all(int fd, const void *data, size_t size, off_t offset)
{
    return pwrite(fd, data, size, offset) == (ssize_t)size ? 0 : -1;
}

/* The record of a lease rebuilt from a lock: its holder and cost are
 * unknown, so it counts as costly until it ends. */
static void placeholder_slot(gpb_slot_record *r, int slot, int device)
{
    memset(r, 0, sizeof(*r));
    r->state = GPUBALANCE_LEASE_OPENED;
    r->cost_milli = UNKNOWN_COST_MILLI;
    g_strlcpy(r->label, "(lease from before a reset)", sizeof(r->label));
    r->crc = slot_crc(slot, device, r->cost_milli);
}

/* What a new ledger file is filled with (gpb_ledger_file_create). */
typedef struct {
    uint64_t generation;
    const ledger_seed *seed;
} ledger_content;

static int fill_ledger(int fd, const void *data)
{
    const ledger_content *content = data;
    const ledger_seed *seed = content->seed;
    ledger_header header;
    uint16_t *map = g_malloc(sizeof(uint16_t) * GPB_SLOTS);
    int err = 0;

    memset(&header, 0, sizeof(header));
    fill_layout(&header.layout, content->generation);
    if (seed) {
        header.device_count = (uint32_t)seed->n_devices;
        memcpy(map, seed->slot_map, sizeof(uint16_t) * GPB_SLOTS);
        if (write_all(fd, seed->devices, sizeof(seed->devices), (off_t)device_table_offset) < 0)
            err = errno;
        for (int slot = 0; slot < GPB_SLOTS && !err; slot++) {
            gpb_slot_record r;

            if (map[slot] == GPB_FREE_SLOT)
                continue;
            placeholder_slot(&r, slot, map[slot]);
            if (write_all(fd, &r, sizeof(r), (off_t)(slot_table_offset() + sizeof(r) * (size_t)slot)) < 0)
                err = errno;
        }
    } else {
        memset(map, 0xff, sizeof(uint16_t) * GPB_SLOTS); /* all free */
    }
    if (!err && (write_all(fd, &header, sizeof(header), 0) < 0 ||
                 write_all(fd, map, sizeof(uint16_t) * GPB_SLOTS, (off_t)slot_map_offset) < 0))
        err = errno;
    g_free(map);
    return err;
}

/* Writes a complete ledger, its space reserved, and moves it into place
 * (gpb_ledger_file_create), so that no process ever sees a half-written
 * file. Losing the race to another creator is success. With replace, an
 * existing ledger is replaced atomically (reset). */
static int create_file(int dir_fd, const char *path, uint64_t generation, const ledger_seed *seed, bool replace)
{
    ledger_content content = {generation, seed};
    int made = gpb_ledger_file_create(dir_fd, GPB_LEDGER_FILE, file_mode_for(dir_fd), (off_t)expected_file_size(),
                                      fill_ledger, &content, replace);

    if (made < 0)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot create ledger %s (%llu bytes): %s; %s", path,
                        (unsigned long long)expected_file_size(), g_strerror(-made), errno_advice(-made));
    if (made == 0)
        gpb_info("created ledger %s", path);
    return 0;
}

/* ---- open ------------------------------------------------------------- */

static void map_tables(gpb_ledger *ledger)
{
    ledger->header = (ledger_header *)ledger->base;
    ledger->devices = (gpb_device_record *)(ledger->base + device_table_offset);
    ledger->pools = (gpb_pool_record *)(ledger->base + pool_table_offset);
    ledger->slot_map = (uint16_t *)(ledger->base + slot_map_offset);
    ledger->slots = (gpb_slot_record *)(ledger->base + slot_table_offset());
}

/* A ledger left by an earlier boot holds no live lease (locks do not
 * survive a reboot) and its clock values mean nothing now: start over, but
 * keep the device table's probe cache, whose key carries the boot id. */
static void renew_for_this_boot(gpb_ledger *ledger)
{
    ledger_header *h = ledger->header;

    gpb_info("ledger %s is from an earlier boot; clearing its leases and learned limits", ledger->path);
    fill_layout(&h->layout, h->layout.generation);
    memset(ledger->slot_map, 0xff, sizeof(uint16_t) * GPB_SLOTS);
    memset(ledger->slots, 0, sizeof(gpb_slot_record) * GPB_SLOTS);
    for (uint32_t i = 0; i < GPB_MAX_DEVICES; i++) {
        gpb_device_record *d = &ledger->devices[i];

        d->sessions = d->driver_sessions = d->foreign_sessions = 0;
        d->load_milli = 0;
        seal_counts(d);
        d->foreign_updated_ns = 0;
        memset(&d->learned, 0, sizeof(d->learned));
        d->crc = device_crc(d);
    }
    for (uint32_t i = 0; i < GPB_MAX_POOLS; i++) {
        memset(&ledger->pools[i].learned, 0, sizeof(gpb_learned));
        ledger->pools[i].crc = pool_crc(&ledger->pools[i]);
    }
    h->last_sweep_ns = 0;
    h->slot_hint = 0;
    h->waiters = 0;
}

static void unmap(gpb_ledger *ledger)
{
    gpb_mapping_unguard(ledger->mapping);
    ledger->mapping = -1;
    if (ledger->base)
        munmap(ledger->base, ledger->size);
    ledger->base = NULL;
}

static int open_existing(gpb_ledger *ledger)
{
    struct stat st;
    ledger_header header;
    ssize_t got;
    int status;

    if ((status = gpb_ledger_file_open(ledger->dir_fd, ledger->dir, GPB_LEDGER_FILE, "ledger", &ledger->fd)) != 0)
        return status; /* 1: missing, the caller creates it; or refused */
    if (fstat(ledger->fd, &st) < 0)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot inspect ledger %s: %s", ledger->path, g_strerror(errno));
    ledger->st_dev = st.st_dev;
    ledger->st_ino = st.st_ino;

    /* Validate under the header lock, so that a renewal in progress in
     * another process is never mistaken for damage. */
    if ((status = header_lock_bounded(ledger->fd, ledger->path, NULL)) < 0)
        return status;
    got = pread(ledger->fd, &header, sizeof(header), 0);
    if (fstat(ledger->fd, &st) < 0)
        st.st_size = 0;
    status = gpb_ledger_check_header(&header, got < 0 ? 0 : (size_t)got, (uint64_t)st.st_size, ledger->path);
    if (status == 0) {
        ledger->size = (size_t)st.st_size;
        ledger->base = mmap(NULL, ledger->size, PROT_READ | PROT_WRITE, MAP_SHARED, ledger->fd, 0);
        if (ledger->base == MAP_FAILED) {
            ledger->base = NULL;
            status = gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot map ledger %s: %s", ledger->path, g_strerror(errno));
        } else {
            ledger->mapping = gpb_mapping_guard(ledger->base, ledger->size);
            map_tables(ledger);
            note_header_locked(ledger->header);
            ledger->generation = header.layout.generation;
            if (strncmp(header.layout.boot_id, gpb_boot_id(), sizeof(header.layout.boot_id)) != 0)
                renew_for_this_boot(ledger);
        }
    }
    header_unlock(ledger->fd, ledger->base ? ledger->header : NULL);
    return status;
}

/* LeakSanitizer scans the heap, stacks and globals for pointers, not
 * anonymous mappings: the strings that only the mapped struct points to
 * (its path, the registered ids, verify's scratch bits) would be reported
 * as leaked while a context is still open at exit (the shared one is).
 * Under AddressSanitizer the struct is registered as a root region. */
static void scanned_for_leaks(gpb_ledger *ledger, bool scanned)
{
#ifdef GPB_LSAN
    if (scanned)
        __lsan_register_root_region(ledger, sizeof(*ledger));
    else
        __lsan_unregister_root_region(ledger, sizeof(*ledger));
#else
    (void)ledger;
    (void)scanned;
#endif
}

/* The struct is mapped, not allocated: it is 90 KB of per-device and
 * per-slot tables of which a process uses a few rows, and anonymous pages
 * are zero until written, so only the rows used are ever faulted in.
 * Zeroing it with calloc touched every page: 22 page faults, a sixth of a
 * cold `gpubalance pick` on a virtual machine where each costs tens of
 * microseconds (bench/README.md). */
static gpb_ledger *ledger_new(const char *dir)
{
    gpb_ledger *ledger = mmap(NULL, sizeof(gpb_ledger), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (ledger == MAP_FAILED)
        g_error("gpubalance: cannot map %zu bytes for a ledger: %s", sizeof(gpb_ledger), g_strerror(errno));
    scanned_for_leaks(ledger, true);

    ledger->dir = g_strdup(dir);
    ledger->path = g_build_filename(dir, GPB_LEDGER_FILE, NULL);
    ledger->fd = -1;
    ledger->mapping = -1;
    ledger->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    for (int i = 0; i < GPB_MAX_DEVICES; i++)
        ledger->lock_fd[i] = -1;
    for (int g = 0; g < N_GROUPS; g++)
        ledger->group_fd[g] = -1;
    pthread_mutex_init(&ledger->mutex, NULL);
    return ledger;
}

/* Opens (creating if missing) the ledger in ledger->dir. */
static int open_or_create(gpb_ledger *ledger)
{
    int status;

    if (ledger->dir_fd < 0)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot open ledger directory %s: %s; %s", ledger->dir,
                        g_strerror(errno), errno_advice(errno));
    status = open_existing(ledger);
    if (status == 1) {
        uint64_t generation = ((uint64_t)g_random_int() << 32) | g_random_int();

        if ((status = create_file(ledger->dir_fd, ledger->path, generation, NULL, false)) < 0)
            return status;
        status = open_existing(ledger);
    }
    if (status > 0)
        status = gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "ledger %s vanished while being created", ledger->path);
    return status;
}

int gpb_ledger_open(const char *dir_arg, gpb_ledger **out)
{
    char *dir = dir_arg ? g_strdup(dir_arg) : gpb_ledger_default_dir();
    gpb_ledger *ledger = NULL;
    int status;

    if ((status = prepare_dir(dir)) < 0)
        goto fail;
    ledger = ledger_new(dir);
    if ((status = open_or_create(ledger)) < 0)
        goto fail;
    g_free(dir);
    *out = ledger;
    return 0;
fail:
    gpb_ledger_close(ledger);
    g_free(dir);
    return status;
}

/* Closes every descriptor of lock files (and so drops the in-use locks)
 * and forgets the lease slots held through them: for close, and for a
 * move to another generation's files. */
static void close_lock_files(gpb_ledger *ledger)
{
    for (int i = 0; i < GPB_MAX_DEVICES; i++) {
        if (ledger->lock_fd[i] >= 0)
            close(ledger->lock_fd[i]);
        ledger->lock_fd[i] = -1;
    }
    for (int g = 0; g < N_GROUPS; g++) {
        if (ledger->group_fd[g] >= 0)
            close(ledger->group_fd[g]);
        ledger->group_fd[g] = -1;
        for (int j = 0; j < ledger->n_spare[g]; j++)
            close(ledger->spare_fd[g][j]);
        ledger->n_spare[g] = 0;
    }
}

static void forget_registrations(gpb_ledger *ledger)
{
    for (int i = 0; i < GPB_MAX_DEVICES; i++) {
        g_clear_pointer(&ledger->known_device[i], g_free);
        ledger->sealed_device_known[i] = false;
    }
    gpb_devset_clear(&ledger->registered);
    gpb_devset_clear(&ledger->checked_counts_known);
    for (int i = 0; i < GPB_MAX_POOLS; i++) {
        g_clear_pointer(&ledger->known_pool[i], g_free);
        ledger->sealed_pool_known[i] = false;
    }
}

void gpb_ledger_close(gpb_ledger *ledger)
{
    if (!ledger)
        return;
    unmap(ledger);
    if (ledger->fd >= 0)
        close(ledger->fd);
    if (ledger->dir_fd >= 0)
        close(ledger->dir_fd);
    close_lock_files(ledger);
    forget_registrations(ledger);
    pthread_mutex_destroy(&ledger->mutex);
    g_free(ledger->locked_bits);
    g_free(ledger->dir);
    g_free(ledger->path);
    scanned_for_leaks(ledger, false);
    munmap(ledger, sizeof(gpb_ledger));
}

const char *gpb_ledger_path(const gpb_ledger *ledger)
{
    return ledger->path;
}

const char *gpb_ledger_dir(const gpb_ledger *ledger)
{
    return ledger->dir;
}

void gpb_ledger_set_moved_hook(gpb_ledger *ledger, gpb_ledger_moved_hook hook, void *user_data)
{
    ledger->moved_hook = hook;
    ledger->moved_hook_data = user_data;
}

static int slot_fd(const gpb_ledger *ledger, int slot)
{
    return ledger->slot_fd_plus_one[slot] - 1;
}

static void set_slot_fd(gpb_ledger *ledger, int slot, int fd)
{
    ledger->slot_fd_plus_one[slot] = fd + 1;
}

bool gpb_ledger_owns(const gpb_ledger *ledger, int slot, int fd)
{
    return slot >= 0 && slot < GPB_SLOTS && fd >= 0 && slot_fd(ledger, slot) == fd;
}

/* ---- lock files ---------------------------------------------------------- */

/* Why a lock file per device. The kernel keeps every record lock of an
 * inode on one list and walks it on each lock call, so with all leases in
 * one file every acquire would cost as much as the leases held on the
 * whole host. A lock file per device keeps each list to one device's
 * leases; the header lock, on the data file, has a list of its own. The
 * file names carry the ledger's generation, so a reset never mixes the
 * locks of two ledgers (a forced reset with live leases keeps the
 * generation, and so the leases). */
static void lock_file_name(uint64_t generation, int device, char *buf, size_t size)
{
    snprintf(buf, size, "%s.%016llx.dev%d.lock", GPB_LEDGER_FILE, (unsigned long long)generation, device);
}

static bool read_lock_content(int fd, lock_file_content *c)
{
    if (pread(fd, c, sizeof(*c), 0) != (ssize_t)sizeof(*c))
        return false;
    c->id[GPB_ID_SIZE - 1] = '\0';
    return memcmp(c->magic, LOCK_FILE_MAGIC, 8) == 0 && c->crc == lock_content_crc(c);
}

static int fill_lock_file(int fd, const void *data)
{
    return write_all(fd, data, sizeof(lock_file_content), 0) < 0 ? errno : 0;
}

/* Creates the device's lock file, naming the device (never replacing one
 * another process made). */
static int create_lock_file(gpb_ledger *ledger, const char *name, const char *id, gpubalance_backend backend)
{
    lock_file_content c;
    int made;

    memset(&c, 0, sizeof(c));
    memcpy(c.magic, LOCK_FILE_MAGIC, 8);
    c.backend = (uint32_t)backend;
    g_strlcpy(c.id, id, sizeof(c.id));
    c.crc = lock_content_crc(&c);
    made = gpb_ledger_file_create(ledger->dir_fd, name, file_mode_for(ledger->dir_fd), 0, fill_lock_file, &c, false);
    if (made < 0)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot create lock file %s/%s: %s; %s", ledger->dir, name,
                        g_strerror(-made), errno_advice(-made));
    return 0;
}

/* Opens the device's lock file into *fd; creates it naming id when id is
 * given and it is missing. Returns 0, 1 when missing and not to be
 * created, or a negative status. (Not the descriptor itself: in a process
 * that closed its standard output, 1 is a descriptor.) */
static int open_lock_file(gpb_ledger *ledger, int device, const char *id, gpubalance_backend backend, int *fd)
{
    char name[96];
    int status;

    lock_file_name(ledger->generation, device, name, sizeof(name));
    status = gpb_ledger_file_open(ledger->dir_fd, ledger->dir, name, "lock file", fd);
    if (status == 1 && id) {
        if ((status = create_lock_file(ledger, name, id, backend)) < 0)
            return status;
        status = gpb_ledger_file_open(ledger->dir_fd, ledger->dir, name, "lock file", fd);
    }
    return status;
}

/* The device's lock file, kept open for lock tests once the device is
 * registered by this process. */
static int device_lock_fd(gpb_ledger *ledger, int device)
{
    int fd, status;

    if (ledger->lock_fd[device] >= 0)
        return ledger->lock_fd[device];
    status = open_lock_file(ledger, device, ledger->known_device[device], ledger->known_backend[device], &fd);
    if (status == 1)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "lock file of device %d in %s is missing", device, ledger->dir);
    if (status < 0)
        return status;
    ledger->lock_fd[device] = fd;
    return fd;
}

/* Why slot-group files. The kernel keeps every record lock of an inode on
 * one list and walks it on each lock call, so with all of a device's
 * leases in its own lock file an acquire beside 1000 leases walked 1000
 * locks (7.6x a bare lock pair). Leases lock bytes of one of N_GROUPS
 * files instead, chosen by slot, at the device's row: no file holds more
 * than GROUP_SLOTS locks however many leases the host holds, and the lock
 * still names its device. */
static void group_file_name(uint64_t generation, int group, char *buf, size_t size)
{
    snprintf(buf, size, "%s.%016llx.g%d.lock", GPB_LEDGER_FILE, (unsigned long long)generation, group);
}

/* Opens a slot group's file into *fd, creating it (empty) when create and
 * missing: 0, 1 when missing, or a negative status. */
static int open_group_file(gpb_ledger *ledger, int group, bool create, int *fd)
{
    char name[96];
    int status, made;

    group_file_name(ledger->generation, group, name, sizeof(name));
    status = gpb_ledger_file_open(ledger->dir_fd, ledger->dir, name, "lock file", fd);
    if (status != 1 || !create)
        return status;
    made = gpb_ledger_file_create(ledger->dir_fd, name, file_mode_for(ledger->dir_fd), 0, NULL, NULL, false);
    if (made < 0)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot create lock file %s/%s: %s; %s", ledger->dir, name,
                        g_strerror(-made), errno_advice(-made));
    return gpb_ledger_file_open(ledger->dir_fd, ledger->dir, name, "lock file", fd);
}

/* The group's file kept open for lock tests; -1 when it does not exist
 * (no lease was ever taken there), -2 when it cannot be opened. */
static int group_test_fd(gpb_ledger *ledger, int group)
{
    int fd, status;

    if (ledger->group_fd[group] >= 0)
        return ledger->group_fd[group];
    status = open_group_file(ledger, group, false, &fd);
    if (status != 0)
        return status == 1 ? -1 : -2;
    ledger->group_fd[group] = fd;
    return fd;
}

/* An open file description of a group's file, for one lease: a released
 * one kept for reuse, or a new one. */
static int open_lease_fd(gpb_ledger *ledger, int group)
{
    int fd, status;

    if (ledger->n_spare[group] > 0)
        return ledger->spare_fd[group][--ledger->n_spare[group]];
    status = open_group_file(ledger, group, true, &fd);
    if (status == 1)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "lock file of slot group %d in %s vanished", group, ledger->dir);
    return status < 0 ? status : fd;
}

/* Is any byte of [start, start + length) of fd locked by another open
 * file description? */
static bool range_locked_elsewhere(int fd, off_t start, off_t length)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = length};

    return fcntl(fd, F_OFD_GETLK, &fl) < 0 || fl.l_type != F_UNLCK;
}

/* Does anyone hold a lock on the device (the in-use mark of a process
 * that registered it, or a lease)? A missing file holds none. */
static bool lock_file_in_use(gpb_ledger *ledger, int device)
{
    int fd, status = open_lock_file(ledger, device, NULL, 0, &fd);
    bool in_use;

    if (status < 0)
        return true; /* cannot tell: leave it */
    in_use = status == 0 && range_locked_elsewhere(fd, 0, IN_USE_BYTE + 1);
    if (status == 0)
        close(fd);
    for (int g = 0; g < N_GROUPS && !in_use; g++) {
        int group_fd = group_test_fd(ledger, g);

        in_use = group_fd == -2 ||
                 (group_fd >= 0 && range_locked_elsewhere(group_fd, slot_lock_offset(device, 0), GROUP_SLOTS));
    }
    return in_use;
}

/* ---- the critical section --------------------------------------------- */

static void reap_ended(gpb_ledger *ledger);

static void repair_device(gpb_ledger *ledger, int i, const char *id, gpubalance_backend backend)
{
    gpb_device_record *d = &ledger->devices[i];

    gpb_warning("device record %d (%s) of ledger %s was damaged; repaired (its foreign load is asked again and its "
                "learned limit forgotten)",
                i, id, ledger->path);
    memset(d->id, 0, sizeof(d->id));
    g_strlcpy(d->id, id, sizeof(d->id));
    d->backend = (uint32_t)backend;
    d->foreign_sessions = 0;
    d->foreign_load = gpb_foreign_load_encode(-1); /* unknown until measured again */
    d->foreign_updated_ns = 0;
    memset(&d->learned, 0, sizeof(d->learned));
    d->crc = device_crc(d);
}

/* Checks what this process registered against the records' CRCs and its
 * own keys, and repairs any difference. */
static void check_registered_records(gpb_ledger *ledger)
{
    GPB_DEVSET_FOREACH (&ledger->registered, i) {
        const char *id = ledger->known_device[i];
        gpb_device_record *d = &ledger->devices[i];
        device_covered now;

        covered_of(d, &now);
        if (ledger->sealed_device_known[i] && memcmp(&now, &ledger->sealed_device[i], sizeof(now)) == 0)
            continue; /* as this process left it or last checked it */
        if (strncmp(d->id, id, GPB_ID_SIZE) != 0 || d->backend != (uint32_t)ledger->known_backend[i] ||
            d->crc != device_crc(d)) {
            repair_device(ledger, i, id, ledger->known_backend[i]);
            covered_of(d, &now);
        }
        ledger->sealed_device[i] = now;
        ledger->sealed_device_known[i] = true;
    }
    for (int i = 0; i < GPB_MAX_POOLS; i++) {
        const char *name = ledger->known_pool[i];
        gpb_pool_record *p = &ledger->pools[i];

        if (!name || (ledger->sealed_pool_known[i] && memcmp(p, &ledger->sealed_pool[i], sizeof(*p)) == 0))
            continue;
        if (strncmp(p->name, name, GPB_ID_SIZE) != 0 || p->crc != pool_crc(p)) {
            gpb_warning("pool record %d (%s) of ledger %s was damaged; repaired (its learned limit forgotten)", i, name,
                        ledger->path);
            memset(p, 0, sizeof(*p));
            g_strlcpy(p->name, name, sizeof(p->name));
            p->crc = pool_crc(p);
        }
        ledger->sealed_pool[i] = *p;
        ledger->sealed_pool_known[i] = true;
    }
}

/* Seals what this process changed in its records. */
static void seal_registered_records(gpb_ledger *ledger)
{
    GPB_DEVSET_FOREACH (&ledger->registered, i) {
        gpb_device_record *d = &ledger->devices[i];
        device_covered now;

        covered_of(d, &now);
        if (ledger->sealed_device_known[i] && memcmp(&now, &ledger->sealed_device[i], sizeof(now)) == 0)
            continue;
        d->crc = now.crc = device_crc(d);
        ledger->sealed_device[i] = now;
        ledger->sealed_device_known[i] = true;
    }
    for (int i = 0; i < GPB_MAX_POOLS; i++) {
        gpb_pool_record *p = &ledger->pools[i];

        if (!ledger->known_pool[i] ||
            (ledger->sealed_pool_known[i] && memcmp(p, &ledger->sealed_pool[i], sizeof(*p)) == 0))
            continue;
        p->crc = pool_crc(p);
        ledger->sealed_pool[i] = *p;
        ledger->sealed_pool_known[i] = true;
    }
}

/* The header lock of a mapped ledger. */
static int lock_mapped(gpb_ledger *ledger)
{
    int status = header_lock_bounded(ledger->fd, ledger->path, ledger->header);

    ledger->header_locked = status == 0;
    return status;
}

static void unlock_mapped(gpb_ledger *ledger)
{
    if (ledger->header_locked)
        header_unlock(ledger->fd, ledger->base ? ledger->header : NULL);
    ledger->header_locked = false;
}

/* Unlocks a ledger whose mapping must not be touched (check_mapped_file
 * failed): its futex sleepers wake when their sleep ends. */
static void unlock_unmapped(gpb_ledger *ledger)
{
    if (ledger->header_locked)
        header_unlock(ledger->fd, NULL);
    ledger->header_locked = false;
}

/* Is the mapped file still the ledger, whole? 0: yes; 1: it was replaced,
 * removed or truncated (or faulted); the mapping must not be touched. */
static int check_mapped_file(gpb_ledger *ledger)
{
    struct stat st;

    if (mapping_lost(ledger) || fstat(ledger->fd, &st) < 0)
        return 1;
    if (st.st_nlink == 0 || (uint64_t)st.st_size < ledger->size)
        return 1;
    return 0;
}

/* The ledger was replaced (a reset) or damaged under this process: drop
 * the old file and open what is there now, under its lock. A new
 * generation means new lock files: leases taken in the old ledger are no
 * longer this ledger's (they end by closing their descriptors). */
static int move_to_current_file(gpb_ledger *ledger)
{
    uint64_t old_generation = ledger->generation;
    bool was_mapped = ledger->base != NULL;
    int status;

    unmap(ledger);
    if (ledger->fd >= 0)
        close(ledger->fd);
    ledger->fd = -1;
    if ((status = open_or_create(ledger)) < 0) {
        unmap(ledger);
        return status;
    }
    if ((status = lock_mapped(ledger)) < 0) {
        unmap(ledger);
        return status;
    }
    if (was_mapped)
        gpb_warning("ledger %s was replaced or damaged under this process; now using the file there", ledger->path);
    if (ledger->generation != old_generation) {
        close_lock_files(ledger);
        memset(ledger->slot_fd_plus_one, 0, sizeof(ledger->slot_fd_plus_one));
    }
    forget_registrations(ledger);
    note_header_locked(ledger->header);
    if (ledger->moved_hook && (status = ledger->moved_hook(ledger, ledger->moved_hook_data)) < 0) {
        unlock_mapped(ledger);
        unmap(ledger); /* registered again at the next lock */
        return status;
    }
    return 0;
}

int gpb_ledger_lock(gpb_ledger *ledger)
{
    int status;

    pthread_mutex_lock(&ledger->mutex);
    if (!ledger->base) {
        status = move_to_current_file(ledger);
    } else if ((status = lock_mapped(ledger)) == 0 && check_mapped_file(ledger)) {
        unlock_unmapped(ledger);
        status = move_to_current_file(ledger);
    }
    if (status < 0) {
        pthread_mutex_unlock(&ledger->mutex);
        return status;
    }
    note_header_locked(ledger->header);
    /* Counts written by a process killed halfway through a mutation may be
     * half-updated: rebuild them from the locks before anyone uses them. */
    if (ledger->header->in_critical_section) {
        gpb_info("a process died while updating ledger %s; rebuilding its counts", ledger->path);
        gpb_ledger_sweep(ledger);
    }
    ledger->header->in_critical_section = 1;
    check_registered_records(ledger);
    reap_ended(ledger);
    return 0;
}

void gpb_ledger_unlock(gpb_ledger *ledger)
{
    ledger_header *h = ledger->base ? ledger->header : NULL;

    if (h) {
        seal_registered_records(ledger);
        h->in_critical_section = 0;
    }
    unlock_mapped(ledger);
    pthread_mutex_unlock(&ledger->mutex);
}

/* ---- tables ----------------------------------------------------------- */

/* Registers record i as this process's device id: its lock file (created
 * naming it, or checked to name it) stays open with the in-use mark. */
static int register_device(gpb_ledger *ledger, int i, const char *id, gpubalance_backend backend)
{
    lock_file_content c;
    int fd;

    g_free(ledger->known_device[i]);
    ledger->known_device[i] = g_strdup(id);
    gpb_devset_add(&ledger->registered, i);
    ledger->known_backend[i] = backend;
    ledger->sealed_device_known[i] = false;
    if ((fd = device_lock_fd(ledger, i)) < 0)
        goto fail;
    if (read_lock_content(fd, &c) && strncmp(c.id, id, GPB_ID_SIZE) != 0) {
        fd = gpb_fail(GPUBALANCE_ERR_LEDGER_DAMAGED,
                      "ledger %s: device record %d names %s but its lock file names %s; %s", ledger->path, i, id, c.id,
                      RESET_HINT);
        goto fail;
    }
    if (ofd_lock(fd, F_RDLCK, IN_USE_BYTE, false) < 0) {
        fd = gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot mark device %s in use in %s: %s", id, ledger->dir,
                      g_strerror(errno));
        goto fail;
    }
    if ((uint32_t)i >= ledger->header->device_count)
        ledger->header->device_count = (uint32_t)i + 1;
    return i;
fail:
    g_clear_pointer(&ledger->known_device[i], g_free);
    gpb_devset_remove(&ledger->registered, i);
    return fd;
}

/* The id a record's lock file gives it, for a record whose own CRC failed. */
static bool id_from_lock_file(gpb_ledger *ledger, int i, lock_file_content *c)
{
    int fd;
    bool ok;

    if (open_lock_file(ledger, i, NULL, 0, &fd) != 0)
        return false;
    ok = read_lock_content(fd, c);
    close(fd);
    return ok;
}

/* A record free for a new device: one with no id, or any record that no
 * process has registered and no lease holds (reclaimed: its lock file is
 * removed, under the header lock, so no one can be opening it). */
static int free_record(gpb_ledger *ledger, bool reclaim)
{
    for (int i = 0; i < GPB_MAX_DEVICES; i++) {
        char name[96];

        if (ledger->known_device[i] || (!reclaim && ledger->devices[i].id[0]) || lock_file_in_use(ledger, i))
            continue;
        if (ledger->devices[i].id[0])
            gpb_info("ledger %s: reclaiming record %d (%.*s), unused", ledger->path, i, GPB_ID_SIZE,
                     ledger->devices[i].id);
        if (ledger->lock_fd[i] >= 0) {
            close(ledger->lock_fd[i]);
            ledger->lock_fd[i] = -1;
        }
        lock_file_name(ledger->generation, i, name, sizeof(name));
        unlinkat(ledger->dir_fd, name, 0);
        return i;
    }
    return -1;
}

int gpb_ledger_device_index(gpb_ledger *ledger, const char *id, gpubalance_backend backend)
{
    gpb_device_record *d;
    int i;

    for (i = 0; i < GPB_MAX_DEVICES; i++)
        if (ledger->devices[i].id[0] && strncmp(ledger->devices[i].id, id, GPB_ID_SIZE) == 0)
            return register_device(ledger, i, id, backend);
    /* A record whose id was damaged: its lock file still says whose it is. */
    for (i = 0; i < GPB_MAX_DEVICES; i++) {
        lock_file_content c;

        d = &ledger->devices[i];
        if (d->crc != device_crc(d) && id_from_lock_file(ledger, i, &c) && strncmp(c.id, id, GPB_ID_SIZE) == 0) {
            repair_device(ledger, i, id, backend);
            return register_device(ledger, i, id, backend);
        }
    }
    if ((i = free_record(ledger, false)) < 0 && (i = free_record(ledger, true)) < 0)
        return gpb_fail(GPUBALANCE_ERR_FULL,
                        "ledger %s has no room for device %s (%d devices at most, each registered by a running "
                        "process or holding a lease)",
                        ledger->path, id, GPB_MAX_DEVICES);
    d = &ledger->devices[i];
    memset(d, 0, sizeof(*d));
    g_strlcpy(d->id, id, sizeof(d->id));
    d->backend = backend;
    d->crc = device_crc(d);
    return register_device(ledger, i, id, backend);
}

int gpb_ledger_pool_index(gpb_ledger *ledger, const char *name)
{
    int free_index = -1;
    gpb_pool_record *p;

    for (int i = 0; i < GPB_MAX_POOLS; i++) {
        p = &ledger->pools[i];
        if (p->name[0] && strncmp(p->name, name, GPB_ID_SIZE) == 0) {
            g_free(ledger->known_pool[i]);
            ledger->known_pool[i] = g_strdup(name);
            ledger->sealed_pool_known[i] = false;
            return i;
        }
        if (free_index < 0 && (!p->name[0] || p->crc != pool_crc(p)) && !ledger->known_pool[i])
            free_index = i;
    }
    if (free_index < 0)
        return gpb_fail(GPUBALANCE_ERR_FULL, "ledger %s has no room for pool %s (%d pools at most)", ledger->path, name,
                        GPB_MAX_POOLS);
    p = &ledger->pools[free_index];
    memset(p, 0, sizeof(*p));
    g_strlcpy(p->name, name, sizeof(p->name));
    p->crc = pool_crc(p);
    ledger->known_pool[free_index] = g_strdup(name);
    ledger->sealed_pool_known[free_index] = false;
    if ((uint32_t)free_index >= ledger->header->pool_count)
        ledger->header->pool_count = (uint32_t)free_index + 1;
    return free_index;
}

gpb_device_record *gpb_ledger_device(gpb_ledger *ledger, int index)
{
    g_assert(index >= 0 && index < GPB_MAX_DEVICES);
    return &ledger->devices[index];
}

gpb_pool_record *gpb_ledger_pool(gpb_ledger *ledger, int index)
{
    g_assert(index >= 0 && index < GPB_MAX_POOLS);
    return &ledger->pools[index];
}

gpb_slot_record *gpb_ledger_slot(gpb_ledger *ledger, int slot)
{
    g_assert(slot >= 0 && slot < GPB_SLOTS);
    return &ledger->slots[slot];
}

int gpb_ledger_slot_device(const gpb_ledger *ledger, int slot)
{
    uint16_t device = ledger->slot_map[slot];

    if (device == GPB_FREE_SLOT || device >= GPB_MAX_DEVICES)
        return -1;
    return device;
}

uint64_t gpb_ledger_generation(const gpb_ledger *ledger)
{
    return ledger->generation;
}

void gpb_ledger_set_gone_hook(gpb_ledger *ledger, gpb_ledger_gone_func func, void *user_data)
{
    ledger->gone_hook = func;
    ledger->gone_data = user_data;
}

uint64_t gpb_ledger_last_sweep(const gpb_ledger *ledger)
{
    return ledger->header->last_sweep_ns;
}

/* ---- slots ------------------------------------------------------------ */

static uint32_t slot_flags(const gpb_slot_record *r)
{
    return __atomic_load_n(&r->flags, __ATOMIC_ACQUIRE); /* ended without the lock */
}

/* The seal a release writes: the record's own CRC (slot, device, cost)
 * turned by a constant. One flipped byte, of the seal or of the record,
 * cannot make it match: a lease is never ended by a stray write. */
#define ENDED_SALT 0x454e4445u /* "ENDE" */

static uint32_t ended_seal_of(const gpb_slot_record *r)
{
    return r->crc ^ ENDED_SALT;
}

static bool slot_ended(const gpb_ledger *ledger, int slot)
{
    const gpb_slot_record *r = &ledger->slots[slot];

    return __atomic_load_n(&r->ended_seal, __ATOMIC_ACQUIRE) == ended_seal_of(r);
}

/* Counts a lease in its device's figures. A record whose CRC fails (its
 * cost was changed by someone else) counts at UNKNOWN_COST_MILLI. */
static void count_in(gpb_ledger *ledger, int device, int slot)
{
    gpb_device_record *d = &ledger->devices[device];
    gpb_slot_record *r = &ledger->slots[slot];

    if (r->crc != slot_crc(slot, device, r->cost_milli)) {
        gpb_warning("lease record %d of ledger %s was damaged; counting it at cost %u", slot, ledger->path,
                    UNKNOWN_COST_MILLI / 1000);
        r->cost_milli = UNKNOWN_COST_MILLI;
        r->crc = slot_crc(slot, device, r->cost_milli);
    }
    d->sessions++;
    d->load_milli += r->cost_milli;
    if (slot_flags(r) & GPB_SLOT_DRIVER_OPEN)
        d->driver_sessions++;
    seal_counts(d);
}

/* Locks a free slot of group on fd for device: the slot, or -1. */
static int lock_slot_in_group(gpb_ledger *ledger, int device, int group, int fd)
{
    for (int slot = group * GROUP_SLOTS; slot < (group + 1) * GROUP_SLOTS; slot++)
        if (ledger->slot_map[slot] == GPB_FREE_SLOT &&
            ofd_lock(fd, F_WRLCK, slot_lock_offset(device, slot), false) == 0)
            return slot;
    return -1;
}

/* Finds a free slot and locks it on a lease descriptor (*fd_out): first in
 * a group this process keeps a spare descriptor of (opening one costs as
 * much as the rest of an acquire), else from the header's hint on.
 * Returns the slot, GPUBALANCE_ERR_FULL, or another negative status. */
static int find_and_lock_slot(gpb_ledger *ledger, int device, int *fd_out)
{
    uint32_t hint = ledger->header->slot_hint % GPB_SLOTS;
    int tried_group = -1;

    for (int group = 0; group < N_GROUPS; group++) {
        int slot;

        if (ledger->n_spare[group] == 0)
            continue;
        slot = lock_slot_in_group(ledger, device, group, ledger->spare_fd[group][ledger->n_spare[group] - 1]);
        if (slot >= 0) {
            *fd_out = ledger->spare_fd[group][--ledger->n_spare[group]];
            return slot;
        }
    }
    for (uint32_t n = 0; n < GPB_SLOTS; n++) {
        int group = slot_group((int)((hint + n) % GPB_SLOTS));
        int fd, slot;

        if (ledger->slot_map[(hint + n) % GPB_SLOTS] != GPB_FREE_SLOT || group == tried_group ||
            ledger->n_spare[group] > 0)
            continue; /* taken, or a group tried already */
        tried_group = group;
        if ((fd = open_lease_fd(ledger, group)) < 0)
            return fd;
        if ((slot = lock_slot_in_group(ledger, device, group, fd)) >= 0) {
            ledger->header->slot_hint = (uint32_t)slot + 1;
            *fd_out = fd;
            return slot;
        }
        close(fd);
    }
    return GPUBALANCE_ERR_FULL;
}

int gpb_ledger_claim(gpb_ledger *ledger, int device, const gpb_slot_record *record, int *fd_out)
{
    int fd = -1;
    int slot = find_and_lock_slot(ledger, device, &fd);

    if (slot == GPUBALANCE_ERR_FULL) {
        gpb_ledger_sweep(ledger); /* dead holders may still occupy slots */
        slot = find_and_lock_slot(ledger, device, &fd);
    }
    if (slot == GPUBALANCE_ERR_FULL)
        return gpb_fail(GPUBALANCE_ERR_FULL, "ledger %s has no free slot (%d leases at most)", ledger->path, GPB_SLOTS);
    if (slot < 0)
        return slot;
    ledger->slots[slot] = *record;
    ledger->slots[slot].crc = slot_crc(slot, device, record->cost_milli);
    ledger->slot_map[slot] = (uint16_t)device;
    count_in(ledger, device, slot);
    if (mapping_lost(ledger)) { /* the file was truncated under us just now */
        close(fd);
        return gpb_fail(GPUBALANCE_ERR_LEDGER_DAMAGED, "ledger %s was truncated while in use; %s", ledger->path,
                        RESET_HINT);
    }
    set_slot_fd(ledger, slot, fd);
    *fd_out = fd;
    return slot;
}

static void count_out(gpb_device_record *d, const gpb_slot_record *r)
{
    d->sessions = d->sessions ? d->sessions - 1 : 0;
    d->load_milli = d->load_milli >= r->cost_milli ? d->load_milli - r->cost_milli : 0;
    if ((slot_flags(r) & GPB_SLOT_DRIVER_OPEN) && d->driver_sessions)
        d->driver_sessions--;
    seal_counts(d);
}

void gpb_ledger_release(gpb_ledger *ledger, int slot, int fd, bool reusable)
{
    int device;

    if (!ledger->base || !gpb_ledger_owns(ledger, slot, fd)) {
        close(fd); /* a lease of a ledger since replaced: it just ends */
        return;
    }
    set_slot_fd(ledger, slot, -1);
    device = gpb_ledger_slot_device(ledger, slot);
    if (device >= 0)
        count_out(&ledger->devices[device], &ledger->slots[slot]);
    memset(&ledger->slots[slot], 0, sizeof(gpb_slot_record));
    ledger->slot_map[slot] = GPB_FREE_SLOT;
    /* A waiter wakes on IN_CLOSE_WRITE, so while anyone waits the
     * descriptor is closed rather than kept for reuse. */
    if (reusable && device >= 0 && ledger->header->waiters == 0 && ledger->n_spare[slot_group(slot)] < SPARE_FDS &&
        ofd_lock(fd, F_UNLCK, slot_lock_offset(device, slot), false) == 0)
        ledger->spare_fd[slot_group(slot)][ledger->n_spare[slot_group(slot)]++] = fd;
    else
        close(fd);
}

/* ---- ending a lease without the header lock ----------------------------- */

/* Forgets the lease in slot (counted out by the caller, or being
 * recounted). */
static void forget_slot(gpb_ledger *ledger, int slot, uint16_t device)
{
    if (!slot_ended(ledger, slot))
        gpb_debug("slot %d on %.*s: holder pid %d is gone", slot, GPB_ID_SIZE, ledger->devices[device].id,
                  ledger->slots[slot].pid);
    memset(&ledger->slots[slot], 0, sizeof(gpb_slot_record));
    ledger->slot_map[slot] = GPB_FREE_SLOT;
}

/* Why a release needs no header lock. Ending a lease only ever lowers the
 * truth, and a count above the truth is allowed (see the top of this
 * file): so the lease is marked ended and its lock dropped at once, and
 * the next holder of the header lock counts it out (reap_ended). Half the
 * header lock's traffic is gone, which is what keeps many processes
 * placing streams at once from queueing on it. The process mutex is held:
 * the spares are this process's, and another thread may be replacing the
 * mapping (a reset). */
void gpb_ledger_end(gpb_ledger *ledger, int slot, int fd, bool reusable)
{
    ledger_header *h;
    uint32_t at;

    pthread_mutex_lock(&ledger->mutex);
    if (!ledger->base || !gpb_ledger_owns(ledger, slot, fd) || mapping_lost(ledger)) {
        close(fd); /* a lease of a ledger since replaced: it just ends */
        pthread_mutex_unlock(&ledger->mutex);
        return;
    }
    h = ledger->header;
    set_slot_fd(ledger, slot, -1);
    /* Sealed while this process still holds the lock: after the unlock a
     * sweep may free the slot and a claim reuse it, whose record a late
     * seal would end. */
    __atomic_store_n(&ledger->slots[slot].ended_seal, ended_seal_of(&ledger->slots[slot]), __ATOMIC_RELEASE);
    /* A waiter wakes on IN_CLOSE_WRITE: while anyone waits, close. The
     * lock goes before the slot is queued, so that whoever counts the
     * lease out finds it gone. */
    {
        int device = gpb_ledger_slot_device(ledger, slot);

        int group = slot_group(slot);

        if (reusable && device >= 0 && __atomic_load_n(&h->waiters, __ATOMIC_ACQUIRE) == 0 &&
            ledger->n_spare[group] < SPARE_FDS && ofd_lock(fd, F_UNLCK, slot_lock_offset(device, slot), false) == 0)
            ledger->spare_fd[group][ledger->n_spare[group]++] = fd;
        else
            close(fd);
    }
    at = __atomic_fetch_add(&h->ended_head, 1, __ATOMIC_ACQ_REL);
    __atomic_store_n(&h->ended[at % ENDED_RING], (uint32_t)slot + 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&ledger->mutex);
}

/* Is the lease in slot still held? One lock test on its group's file,
 * which holds GROUP_SLOTS locks at most. */
static bool slot_is_held(gpb_ledger *ledger, int device, int slot)
{
    int fd = group_test_fd(ledger, slot_group(slot));

    if (fd == -2)
        return true; /* cannot tell: keep the lease rather than lose one */
    return fd >= 0 && ofd_locked_elsewhere(fd, slot_lock_offset(device, slot));
}

/* Counts out the leases ended since the last holder of the lock. */
static void reap_ended(gpb_ledger *ledger)
{
    ledger_header *h = ledger->header;
    uint32_t head = __atomic_load_n(&h->ended_head, __ATOMIC_ACQUIRE);
    uint32_t tail = h->ended_tail;

    if (head == tail)
        return;
    if (head - tail > ENDED_RING)
        tail = head - ENDED_RING; /* overwritten: lock tests find the rest */
    for (; tail != head; tail++) {
        uint32_t entry = __atomic_exchange_n(&h->ended[tail % ENDED_RING], 0, __ATOMIC_ACQ_REL);
        int slot = (int)entry - 1;
        int device;

        if (entry == 0 || entry > GPB_SLOTS || (device = gpb_ledger_slot_device(ledger, slot)) < 0 ||
            !slot_ended(ledger, slot))
            continue; /* not written yet, or counted out already */
        count_out(&ledger->devices[device], &ledger->slots[slot]);
        forget_slot(ledger, slot, (uint16_t)device);
    }
    h->ended_tail = head;
}

int gpb_ledger_forget_dead(gpb_ledger *ledger, const gpb_devset *devices, int max_tests)
{
    int start = ledger->forget_cursor % GPB_SLOTS;
    int tests = 0;
    int forgotten = 0;
    int k;

    for (k = 0; k < GPB_SLOTS && (max_tests <= 0 || tests < max_tests); k++) {
        int slot = (start + k) % GPB_SLOTS;
        int device = gpb_ledger_slot_device(ledger, slot);

        if (device < 0 || !gpb_devset_has(devices, device))
            continue;
        tests++;
        if (slot_is_held(ledger, device, slot))
            continue;
        if (ledger->gone_hook) /* logged as expired, as a sweep does */
            ledger->gone_hook(ledger->gone_data, device, &ledger->slots[slot]);
        count_out(&ledger->devices[device], &ledger->slots[slot]);
        forget_slot(ledger, slot, (uint16_t)device);
        forgotten++;
    }
    ledger->forget_cursor = (start + k) % GPB_SLOTS;
    return forgotten;
}

/* ---- verification ----------------------------------------------------- */

#define GROUP_FILE_BYTES (GPB_MAX_DEVICES * GROUP_SLOTS)

/* Every lease lock of the slot-group files of this ledger: a bit per slot
 * in each device's row of per_device (GPB_SLOTS / 8 bytes a device). Each
 * file holds GROUP_SLOTS locks at most, so its 2n+1 lock tests walk at
 * most that many locks each: linear in the leases. Returns false when a
 * group's file exists but cannot be read (nothing may then be
 * forgotten). */
static bool collect_group_locks(gpb_ledger *ledger, uint8_t *per_device)
{
    static _Thread_local uint64_t row_bits[GROUP_FILE_BYTES / 64];

    memset(per_device, 0, (size_t)GPB_MAX_DEVICES * (GPB_SLOTS / 8));
    for (int g = 0; g < N_GROUPS; g++) {
        int fd = group_test_fd(ledger, g);

        if (fd == -1)
            continue;
        if (fd == -2 || !collect_locked(fd, GROUP_FILE_BYTES, (uint8_t *)row_bits))
            return false;
        for (int w = 0; w < GROUP_FILE_BYTES / 64; w++) {
            uint64_t word = row_bits[w];

            while (word) {
                int offset = w * 64 + __builtin_ctzll(word);
                int device = offset / GROUP_SLOTS, slot = g * GROUP_SLOTS + offset % GROUP_SLOTS;

                per_device[(size_t)device * (GPB_SLOTS / 8) + (size_t)slot / 8] |= (uint8_t)(1u << (slot % 8));
                word &= word - 1;
            }
        }
    }
    return true;
}

/* A lock without a slot-map entry: the map was damaged. The lease is put
 * back with an unknown record, counted as costly. */
static void restore_lease(gpb_ledger *ledger, int device, int slot)
{
    gpb_device_record *d = &ledger->devices[device];
    uint16_t owner = ledger->slot_map[slot];

    gpb_warning("ledger %s: a lease on %.*s in slot %d was missing from the slot map; restored", ledger->path,
                GPB_ID_SIZE, d->id, slot);
    if (owner == GPB_FREE_SLOT || owner >= GPB_MAX_DEVICES) {
        ledger->slot_map[slot] = (uint16_t)device;
        placeholder_slot(&ledger->slots[slot], slot, device);
        count_in(ledger, device, slot);
    } else { /* the entry names another device: count it here too */
        d->sessions++;
        d->load_milli += UNKNOWN_COST_MILLI;
        seal_counts(d);
    }
}

/* Recounts the devices in mask from the locks, which are the truth: a
 * slot-map entry without a lock is forgotten, and a lock without an entry
 * is restored. One pass over the slot map, and 2n+1 lock tests per slot
 * group holding n leases (GROUP_SLOTS at most). */
void gpb_ledger_verify(gpb_ledger *ledger, const gpb_devset *devices)
{
    gpb_devset todo, readable;
    bool locks_read;

    if (!ledger->locked_bits) /* zeroed by collect_group_locks() */
        ledger->locked_bits = g_malloc((size_t)GPB_MAX_DEVICES * (GPB_SLOTS / 8));
    locks_read = collect_group_locks(ledger, ledger->locked_bits);
    gpb_devset_clear(&todo);
    gpb_devset_clear(&readable);
    GPB_DEVSET_FOREACH (devices, i) {
        gpb_device_record *d = &ledger->devices[i];

        if (!d->id[0] && !ledger->known_device[i])
            continue;
        gpb_devset_add(&todo, i);
        if (locks_read)
            gpb_devset_add(&readable, i);
        d->sessions = 0;
        d->load_milli = 0;
        d->driver_sessions = 0;
        seal_counts(d);
    }
    for (int slot = 0; slot < GPB_SLOTS; slot++) {
        uint16_t owner = ledger->slot_map[slot];
        uint8_t *bits;

        if (owner == GPB_FREE_SLOT)
            continue;
        if (owner >= GPB_MAX_DEVICES) { /* garbage from a damaged table */
            ledger->slot_map[slot] = GPB_FREE_SLOT;
            continue;
        }
        if (!gpb_devset_has(&todo, owner))
            continue;
        bits = ledger->locked_bits + (size_t)owner * (GPB_SLOTS / 8);
        if (gpb_devset_has(&readable, owner) && !bit_set(bits, slot)) {
            gpb_debug("slot %d on %.*s: holder pid %d is gone", slot, GPB_ID_SIZE, ledger->devices[owner].id,
                      ledger->slots[slot].pid);
            if (ledger->gone_hook)
                ledger->gone_hook(ledger->gone_data, owner, &ledger->slots[slot]);
            memset(&ledger->slots[slot], 0, sizeof(gpb_slot_record));
            ledger->slot_map[slot] = GPB_FREE_SLOT;
            continue;
        }
        bits[slot / 8] &= (uint8_t) ~(1u << (slot % 8)); /* accounted for */
        count_in(ledger, owner, slot);
    }
    GPB_DEVSET_FOREACH (&readable, i) {
        const uint64_t *words = (const uint64_t *)(ledger->locked_bits + (size_t)i * (GPB_SLOTS / 8));

        for (int w = 0; w < GPB_SLOTS / 64; w++)
            if (words[w])
                for (int b = 0; b < 64; b++)
                    if (words[w] & (UINT64_C(1) << b))
                        restore_lease(ledger, i, w * 64 + b);
    }
}

void gpb_ledger_check_counts(gpb_ledger *ledger, const gpb_devset *devices)
{
    gpb_devset damaged;

    gpb_devset_clear(&damaged);
    GPB_DEVSET_FOREACH (devices, i) {
        gpb_device_record *d = &ledger->devices[i];

        if (counts_as_checked(ledger, i))
            continue;
        if (d->counts_crc == counts_crc(d)) {
            copy_counts(d, &ledger->checked_counts[i]);
            gpb_devset_add(&ledger->checked_counts_known, i);
            continue;
        }
        if (d->sessions || d->load_milli || d->driver_sessions || d->counts_crc)
            gpb_warning("the counts of device %.*s in ledger %s were damaged; recounted from the locks", GPB_ID_SIZE,
                        d->id, ledger->path);
        gpb_devset_add(&damaged, i);
    }
    if (!gpb_devset_empty(&damaged))
        gpb_ledger_verify(ledger, &damaged);
}

void gpb_ledger_sweep(gpb_ledger *ledger)
{
    ledger_header *h = ledger->header;
    gpb_devset all;

    if (h->device_count > GPB_MAX_DEVICES)
        h->device_count = GPB_MAX_DEVICES;
    if (h->pool_count > GPB_MAX_POOLS)
        h->pool_count = GPB_MAX_POOLS;
    for (uint32_t i = 0; i < GPB_MAX_DEVICES; i++)
        ledger->devices[i].id[GPB_ID_SIZE - 1] = '\0';
    for (uint32_t i = 0; i < GPB_MAX_POOLS; i++)
        ledger->pools[i].name[GPB_ID_SIZE - 1] = '\0';
    gpb_devset_fill(&all);
    gpb_ledger_verify(ledger, &all);
    if (h->waiters && !ofd_locked_elsewhere(ledger->fd, WAITER_BYTE))
        h->waiters = 0; /* the waiters were killed while waiting */
    h->last_sweep_ns = gpb_now_ns();
}

int gpb_ledger_wait_begin(gpb_ledger *ledger)
{
    int fd = openat(ledger->dir_fd, GPB_LEDGER_FILE, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;

    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0 || st.st_ino != ledger->st_ino || st.st_dev != ledger->st_dev ||
        ofd_lock(fd, F_RDLCK, WAITER_BYTE, false) < 0) {
        close(fd);
        return -1;
    }
    ledger->header->waiters++;
    return fd;
}

void gpb_ledger_wait_end(gpb_ledger *ledger, int fd)
{
    if (fd < 0)
        return;
    if (ledger->base && ledger->header->waiters)
        ledger->header->waiters--;
    close(fd);
}

/* ---- reset ------------------------------------------------------------ */

/* One lock file found in the directory: a device's (device >= 0) or a
 * slot group's (group >= 0). */
typedef struct {
    uint64_t generation;
    int device;
    int group;
} lock_file_id;

static bool parse_lock_file_name(const char *name, lock_file_id *out)
{
    unsigned long long generation;
    int index, end = 0;

    out->device = out->group = -1;
    if (sscanf(name, GPB_LEDGER_FILE ".%16llx.dev%d.lock%n", &generation, &index, &end) == 2 && name[end] == '\0' &&
        index >= 0 && index < GPB_MAX_DEVICES)
        out->device = index;
    else if (sscanf(name, GPB_LEDGER_FILE ".%16llx.g%d.lock%n", &generation, &index, &end) == 2 && name[end] == '\0' &&
             index >= 0 && index < N_GROUPS)
        out->group = index;
    else
        return false;
    out->generation = generation;
    return true;
}

static int count_bits(const uint8_t *bits, size_t bytes)
{
    int n = 0;

    for (size_t i = 0; i < bytes; i++)
        n += __builtin_popcount(bits[i]);
    return n;
}

/* Live leases per generation, counted from the lock files themselves, so
 * a damaged data file does not hide them: the slot groups' locks, and
 * (format 3, before slot groups) the lease bytes of a device's own file.
 * Returns the total; *best is the generation holding most of them. */
static int count_live_leases(gpb_ledger *ledger, uint64_t *best)
{
    GHashTable *per_generation = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    GDir *d = g_dir_open(ledger->dir, 0, NULL);
    const char *name;
    uint8_t *bits = g_malloc(GROUP_FILE_BYTES / 8);
    int total = 0, most = 0;

    while (d && (name = g_dir_read_name(d))) {
        lock_file_id id;
        int fd, n = 0;

        if (!parse_lock_file_name(name, &id))
            continue;
        fd = openat(ledger->dir_fd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
            continue;
        if (id.group >= 0 && collect_locked(fd, GROUP_FILE_BYTES, bits))
            n = count_bits(bits, GROUP_FILE_BYTES / 8);
        else if (id.device >= 0 && collect_locked(fd, GPB_SLOTS, bits))
            n = count_bits(bits, GPB_SLOTS / 8);
        close(fd);
        if (n > 0) {
            gint64 key = (gint64)id.generation;
            int sum = GPOINTER_TO_INT(g_hash_table_lookup(per_generation, &key)) + n;

            g_hash_table_insert(per_generation, g_memdup2(&key, sizeof(key)), GINT_TO_POINTER(sum));
            if (sum > most) {
                most = sum;
                *best = id.generation;
            }
            total += n;
        }
    }
    if (total > most)
        gpb_warning("ledger %s: %d live lease(s) belong to older generations and cannot be kept counted", ledger->path,
                    total - most);
    if (d)
        g_dir_close(d);
    g_free(bits);
    g_hash_table_unref(per_generation);
    return total;
}

/* The tables of a ledger rebuilt from the lock files of generation: every
 * device whose file someone holds a lock on (a lease, or a context that
 * registered it) keeps its record index, and every lease its slot. */
static ledger_seed *seed_from_lock_files(gpb_ledger *ledger, uint64_t generation)
{
    ledger_seed *seed = g_new0(ledger_seed, 1);
    uint8_t *per_device = g_malloc0((size_t)GPB_MAX_DEVICES * (GPB_SLOTS / 8));
    bool have_locks;

    memset(seed->slot_map, 0xff, sizeof(seed->slot_map));
    if (ledger->generation != generation)
        close_lock_files(ledger); /* descriptors of another generation's files */
    ledger->generation = generation;
    have_locks = collect_group_locks(ledger, per_device);
    for (int i = 0; i < GPB_MAX_DEVICES; i++) {
        gpb_device_record *d = &seed->devices[i];
        const uint8_t *bits = per_device + (size_t)i * (GPB_SLOTS / 8);
        lock_file_content c;
        int fd, opened;

        if (!lock_file_in_use(ledger, i))
            continue;
        opened = open_lock_file(ledger, i, NULL, 0, &fd) == 0;
        if (opened && read_lock_content(fd, &c)) {
            g_strlcpy(d->id, c.id, sizeof(d->id));
            d->backend = c.backend;
        } else { /* counted, though no device will match it */
            snprintf(d->id, sizeof(d->id), "?unknown-device-%d", i);
        }
        if (opened)
            close(fd);
        d->crc = device_crc(d);
        seed->n_devices = i + 1;
        for (int slot = 0; have_locks && slot < GPB_SLOTS; slot++)
            if (bit_set(bits, slot) && seed->slot_map[slot] == GPB_FREE_SLOT)
                seed->slot_map[slot] = (uint16_t)i;
    }
    g_free(per_device);
    return seed;
}

static int move_aside(const char *path)
{
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    char *aside;
    int status = 0;

    localtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
    aside = g_strdup_printf("%s.damaged-%s-%d", path, stamp, (int)getpid());
    if (rename(path, aside) < 0 && errno != ENOENT)
        status = gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot move %s aside: %s", path, g_strerror(errno));
    else
        gpb_warning("moved %s aside to %s", path, aside);
    g_free(aside);
    return status;
}

/* Lock files of every generation but keep (all of them when keep is 0). */
static void remove_lock_files(gpb_ledger *ledger, uint64_t keep)
{
    GDir *d = g_dir_open(ledger->dir, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        lock_file_id id;

        if (parse_lock_file_name(name, &id) && (keep == 0 || id.generation != keep))
            unlinkat(ledger->dir_fd, name, 0);
    }
    if (d)
        g_dir_close(d);
}

int gpb_ledger_reset(const char *dir_arg, bool force, int *live_leases)
{
    char *dir = dir_arg ? g_strdup(dir_arg) : gpb_ledger_default_dir();
    gpb_ledger *ledger = NULL;
    ledger_seed *seed = NULL;
    uint64_t generation = 0;
    bool valid, locked = false;
    int status;

    *live_leases = 0;
    if ((status = prepare_dir(dir)) < 0)
        goto out;
    ledger = ledger_new(dir);
    if (ledger->dir_fd < 0) {
        status = gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot open ledger directory %s: %s", dir, g_strerror(errno));
        goto out;
    }
    status = open_existing(ledger);
    valid = status == 0;
    if (status == GPUBALANCE_ERR_LEDGER_IO)
        goto out; /* not damage: it could not be read or locked (a stopped holder) */
    /* Hold the old file's lock until the new one is in place: a process
     * that takes it afterwards sees the old file unlinked and moves. */
    if (valid && (status = lock_mapped(ledger)) < 0)
        goto out;
    locked = valid;
    if (locked)
        note_header_locked(ledger->header);
    *live_leases = count_live_leases(ledger, &generation);
    if (*live_leases > 0 && !force) {
        status = gpb_fail(GPUBALANCE_ERR_BUSY,
                          "ledger %s %s and %d lease(s) are live; not resetting it (use --force to start a new "
                          "ledger that keeps counting them)",
                          ledger->path, valid ? "is valid" : "is damaged", *live_leases);
        goto out;
    }
    if (*live_leases > 0) {
        seed = seed_from_lock_files(ledger, generation);
        gpb_warning("ledger %s: starting a new ledger that keeps %d live lease(s) counted", ledger->path, *live_leases);
    } else {
        generation = ((uint64_t)g_random_int() << 32) | g_random_int();
    }
    /* damaged, unsafe or newer: keep the file for inspection */
    if (!valid && status < 0 && (status = move_aside(ledger->path)) < 0)
        goto out;
    if ((status = create_file(ledger->dir_fd, ledger->path, generation, seed, true)) < 0)
        goto out;
    remove_lock_files(ledger, seed ? generation : 0);
out:
    if (locked)
        unlock_mapped(ledger);
    g_free(seed);
    gpb_ledger_close(ledger);
    g_free(dir);
    return status;
}

/* The public reset: the ledger in $GPUBALANCE_DIR (see gpubalance.h). */
int gpubalance_ledger_reset(bool force)
{
    int live = 0;

    gpb_clear_error();
    return gpb_ledger_reset(NULL, force, &live);
}

/* getpid(), cached per process (see cached_pid()). */
pid_t gpb_self_pid(void)
{
    return cached_pid();
}
