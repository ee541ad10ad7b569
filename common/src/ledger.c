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
 * table keeps counters instead, updated under the header lock by claim and
 * release.
 *
 * The invariant: under the header lock, every cached count (sessions, load,
 * driver sessions) is at least the true figure of live leases. Claim counts
 * a lease in the same critical section that takes its lock; release counts
 * it out before it drops the lock; a holder that dies without releasing
 * leaves its lease counted (too high, never too low); a process that dies
 * inside the critical section leaves the "in critical section" flag, and
 * the next locker rebuilds every count from the locks before anyone reads
 * them. A count that can only overstate load can only cause a refusal,
 * never a grant past a limit: so placement trusts the cached counts for
 * every grant, and verifies a device's leases against their locks only
 * when its count would refuse the stream (gpb_ledger_verify, see lease.c).
 * A periodic sweep corrects the ties that stale counts skew.
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
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "util.h"

#define HEADER_SIZE 512u
#define ENDED_RING 64
#define RESET_HINT "run 'gpubalance reset' to move it aside and start a new one"

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
    uint32_t device_count;
    uint32_t pool_count;
    uint32_t slot_hint;
    uint32_t waiters; /* processes blocked in when-full=wait (see wait_begin) */
    uint32_t reserved;
    uint64_t last_sweep_ns;
    /* Slots ended by gpb_ledger_end() without the header lock, counted out
     * by the next holder of the lock (see reap_released). Written with
     * atomics; an entry lost to a crash or an overflow leaves its lease
     * counted until a lock test finds it gone. */
    uint32_t ended_head;        /* entries pushed, ever */
    uint32_t ended_tail;        /* entries reaped, ever */
    uint32_t ended[ENDED_RING]; /* slot + 1; 0 = empty */
} ledger_header;

_Static_assert(sizeof(ledger_header) <= HEADER_SIZE, "header too large");

#define SPARE_FDS 8
#define WAITER_BYTE 1

/* A released lease descriptor kept for reuse, and its lock file. */
typedef struct {
    int fd;
    int group;
} spare_fd;

struct gpb_ledger {
    char *dir;
    char *path;
    int dir_fd;
    int fd; /* holds the header lock */
    dev_t st_dev;
    ino_t st_ino;
    uint8_t *base;
    size_t size;
    ledger_header *header;
    gpb_device_record *devices;
    gpb_pool_record *pools;
    uint16_t *slot_map;
    gpb_slot_record *slots;
    uint64_t generation;
    /* Per lock file: one descriptor for lock tests, opened on first use.
     * And released lease descriptors kept for reuse (opening one costs as
     * much as the rest of an acquire), most recent last. */
    int test_fd[GPB_LOCK_FILES];
    spare_fd spares[SPARE_FDS];
    int n_spares;
    int forget_cursor; /* where gpb_ledger_forget_dead() goes on */
    /* The header lock's OFD is shared by this process's threads. A pthread
     * mutex rather than GMutex: ThreadSanitizer sees pthread mutexes, not
     * GLib's futexes, and the core is checked under it. */
    pthread_mutex_t mutex;
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

/* ---- directory and file safety ---------------------------------------- */

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

/* A directory we may trust: a real directory, owned by us or root, that
 * nobody outside its group can write. Creates it (mode 0700) if missing. */
static int prepare_dir(const char *dir)
{
    struct stat st;

    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot create ledger directory %s: %s", dir, g_strerror(errno));
    if (lstat(dir, &st) < 0)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot inspect ledger directory %s: %s", dir, g_strerror(errno));
    if (S_ISLNK(st.st_mode))
        return gpb_fail(GPUBALANCE_ERR_LEDGER_UNSAFE,
                        "ledger directory %s is a symbolic link; refusing it (remove it, or set GPUBALANCE_DIR to "
                        "a real directory)",
                        dir);
    if (!S_ISDIR(st.st_mode))
        return gpb_fail(GPUBALANCE_ERR_LEDGER_UNSAFE, "ledger directory %s is not a directory", dir);
    if (st.st_uid != geteuid() && st.st_uid != 0)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_UNSAFE,
                        "ledger directory %s belongs to uid %u, not to you (uid %u) or root; refusing it", dir,
                        (unsigned)st.st_uid, (unsigned)geteuid());
    if (st.st_mode & S_IWOTH)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_UNSAFE,
                        "ledger directory %s is writable by everyone (mode %04o); use mode 0700, or 2770 with a "
                        "group for a shared host",
                        dir, (unsigned)(st.st_mode & 07777));
    return 0;
}

static int check_file(const char *path, const struct stat *st)
{
    if (!S_ISREG(st->st_mode))
        return gpb_fail(GPUBALANCE_ERR_LEDGER_UNSAFE, "ledger %s is not a regular file; %s", path, RESET_HINT);
    if (st->st_mode & S_IWOTH)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_UNSAFE, "ledger %s is writable by everyone (mode %04o); %s", path,
                        (unsigned)(st->st_mode & 07777), RESET_HINT);
    if (st->st_uid != geteuid() && !((st->st_mode & S_IWGRP) && in_our_groups(st->st_gid)))
        return gpb_fail(GPUBALANCE_ERR_LEDGER_UNSAFE,
                        "ledger %s belongs to uid %u and is not shared with a group of yours; refusing it", path,
                        (unsigned)st->st_uid);
    return 0;
}

/* ---- creation --------------------------------------------------------- */

/* Writes a complete ledger under a temporary name and links it into place,
 * so that no process ever sees a half-written file. Losing the race to
 * another creator is success. */
static int create_file(const char *dir, const char *path)
{
    ledger_header header;
    struct stat dir_st;
    mode_t mode;
    char *tmp;
    int fd;
    int status = 0;

    if (stat(dir, &dir_st) < 0)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot inspect %s: %s", dir, g_strerror(errno));
    mode = (dir_st.st_mode & S_IWGRP) ? 0660 : 0600;
    tmp = g_strdup_printf("%s.new-%d-%08x", path, (int)getpid(), g_random_int());
    fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) {
        status = gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot create %s: %s", tmp, g_strerror(errno));
        goto out;
    }
    memset(&header, 0, sizeof(header));
    fill_layout(&header.layout, ((uint64_t)g_random_int() << 32) | g_random_int());
    if (fchmod(fd, mode) < 0 || ftruncate(fd, (off_t)expected_file_size()) < 0 ||
        pwrite(fd, &header, sizeof(header), 0) != (ssize_t)sizeof(header)) {
        status = gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot write %s: %s", tmp, g_strerror(errno));
        goto out_unlink;
    }
    /* The slot map starts all-free (0xffff), not zero. */
    {
        size_t map_size = sizeof(uint16_t) * GPB_SLOTS;
        uint16_t *map = g_malloc(map_size);

        memset(map, 0xff, map_size);
        if (pwrite(fd, map, map_size, (off_t)slot_map_offset) != (ssize_t)map_size)
            status = gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot write %s: %s", tmp, g_strerror(errno));
        g_free(map);
        if (status < 0)
            goto out_unlink;
    }
    if (link(tmp, path) < 0 && errno != EEXIST)
        status = gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot create ledger %s: %s", path, g_strerror(errno));
    else
        gpb_info("created ledger %s", path);
out_unlink:
    unlink(tmp);
out:
    if (fd >= 0)
        close(fd);
    g_free(tmp);
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

/* A lease locks byte `slot` of its device's lock file. */
static off_t slot_lock_offset(int slot)
{
    return (off_t)slot;
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
        d->foreign_updated_ns = 0;
        memset(&d->learned, 0, sizeof(d->learned));
    }
    for (uint32_t i = 0; i < GPB_MAX_POOLS; i++)
        memset(&ledger->pools[i].learned, 0, sizeof(gpb_learned));
    h->last_sweep_ns = 0;
    h->slot_hint = 0;
    h->waiters = 0;
}

static int open_existing(gpb_ledger *ledger)
{
    struct stat st;
    ledger_header header;
    ssize_t got;
    int status;

    ledger->fd = open(ledger->path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (ledger->fd < 0) {
        if (errno == ELOOP)
            return gpb_fail(GPUBALANCE_ERR_LEDGER_UNSAFE, "ledger %s is a symbolic link; refusing it; %s", ledger->path,
                            RESET_HINT);
        if (errno == ENOENT)
            return 1; /* the caller creates it */
        return gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot open ledger %s: %s", ledger->path, g_strerror(errno));
    }
    if (fstat(ledger->fd, &st) < 0)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot inspect ledger %s: %s", ledger->path, g_strerror(errno));
    if ((status = check_file(ledger->path, &st)) < 0)
        return status;
    ledger->st_dev = st.st_dev;
    ledger->st_ino = st.st_ino;

    /* Validate under the header lock, so that a renewal in progress in
     * another process is never mistaken for damage. */
    ofd_lock(ledger->fd, F_WRLCK, 0, true);
    got = pread(ledger->fd, &header, sizeof(header), 0);
    status = gpb_ledger_check_header(&header, got < 0 ? 0 : (size_t)got, (uint64_t)st.st_size, ledger->path);
    if (status == 0) {
        ledger->size = (size_t)st.st_size;
        ledger->base = mmap(NULL, ledger->size, PROT_READ | PROT_WRITE, MAP_SHARED, ledger->fd, 0);
        if (ledger->base == MAP_FAILED) {
            ledger->base = NULL;
            status = gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot map ledger %s: %s", ledger->path, g_strerror(errno));
        } else {
            map_tables(ledger);
            ledger->generation = header.layout.generation;
            if (strncmp(header.layout.boot_id, gpb_boot_id(), sizeof(header.layout.boot_id)) != 0)
                renew_for_this_boot(ledger);
        }
    }
    ofd_lock(ledger->fd, F_UNLCK, 0, false);
    return status;
}

static gpb_ledger *ledger_new(const char *dir)
{
    gpb_ledger *ledger = g_new0(gpb_ledger, 1);

    ledger->dir = g_strdup(dir);
    ledger->path = g_build_filename(dir, GPB_LEDGER_FILE, NULL);
    ledger->fd = -1;
    ledger->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    for (int i = 0; i < GPB_LOCK_FILES; i++)
        ledger->test_fd[i] = -1;
    pthread_mutex_init(&ledger->mutex, NULL);
    return ledger;
}

int gpb_ledger_open(const char *dir_arg, gpb_ledger **out)
{
    char *dir = dir_arg ? g_strdup(dir_arg) : gpb_ledger_default_dir();
    gpb_ledger *ledger = NULL;
    int status;

    if ((status = prepare_dir(dir)) < 0)
        goto fail;
    ledger = ledger_new(dir);
    status = open_existing(ledger);
    if (status == 1) {
        if ((status = create_file(dir, ledger->path)) < 0)
            goto fail;
        status = open_existing(ledger);
    }
    if (status != 0) {
        if (status > 0)
            status = gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "ledger %s vanished while being created", ledger->path);
        goto fail;
    }
    g_free(dir);
    *out = ledger;
    return 0;
fail:
    gpb_ledger_close(ledger);
    g_free(dir);
    return status;
}

void gpb_ledger_close(gpb_ledger *ledger)
{
    if (!ledger)
        return;
    if (ledger->base)
        munmap(ledger->base, ledger->size);
    if (ledger->fd >= 0)
        close(ledger->fd);
    if (ledger->dir_fd >= 0)
        close(ledger->dir_fd);
    for (int i = 0; i < GPB_LOCK_FILES; i++)
        if (ledger->test_fd[i] >= 0)
            close(ledger->test_fd[i]);
    for (int i = 0; i < ledger->n_spares; i++)
        close(ledger->spares[i].fd);
    pthread_mutex_destroy(&ledger->mutex);
    g_free(ledger->dir);
    g_free(ledger->path);
    g_free(ledger);
}

const char *gpb_ledger_path(const gpb_ledger *ledger)
{
    return ledger->path;
}

const char *gpb_ledger_dir(const gpb_ledger *ledger)
{
    return ledger->dir;
}

/* ---- the critical section --------------------------------------------- */

static void reap_ended(gpb_ledger *ledger);

void gpb_ledger_lock(gpb_ledger *ledger)
{
    pthread_mutex_lock(&ledger->mutex);
    ofd_lock(ledger->fd, F_WRLCK, 0, true);
    /* Counts written by a process killed halfway through a mutation may be
     * half-updated: rebuild them from the locks before anyone uses them. */
    if (ledger->header->in_critical_section) {
        gpb_info("a process died while updating ledger %s; rebuilding its counts", ledger->path);
        gpb_ledger_sweep(ledger);
    }
    ledger->header->in_critical_section = 1;
    reap_ended(ledger);
}

void gpb_ledger_unlock(gpb_ledger *ledger)
{
    ledger->header->in_critical_section = 0;
    ofd_lock(ledger->fd, F_UNLCK, 0, false);
    pthread_mutex_unlock(&ledger->mutex);
}

/* ---- tables ----------------------------------------------------------- */

/* Numbers read from a shared file are outside input: never trust them. */
static uint32_t device_count(const gpb_ledger *ledger)
{
    return MIN(ledger->header->device_count, GPB_MAX_DEVICES);
}

int gpb_ledger_n_devices(const gpb_ledger *ledger)
{
    return (int)device_count(ledger);
}

int gpb_ledger_device_index(gpb_ledger *ledger, const char *id, gpubalance_backend backend)
{
    uint32_t n = device_count(ledger);
    gpb_device_record *d;

    for (uint32_t i = 0; i < n; i++)
        if (strncmp(ledger->devices[i].id, id, GPB_ID_SIZE) == 0)
            return (int)i;
    if (n >= GPB_MAX_DEVICES)
        return gpb_fail(GPUBALANCE_ERR_FULL, "ledger %s has no room for device %s (%d devices at most)", ledger->path,
                        id, GPB_MAX_DEVICES);
    d = &ledger->devices[n];
    memset(d, 0, sizeof(*d));
    g_strlcpy(d->id, id, sizeof(d->id));
    d->backend = backend;
    ledger->header->device_count = n + 1;
    return (int)n;
}

int gpb_ledger_pool_index(gpb_ledger *ledger, const char *name)
{
    uint32_t n = MIN(ledger->header->pool_count, GPB_MAX_POOLS);
    gpb_pool_record *p;

    for (uint32_t i = 0; i < n; i++)
        if (strncmp(ledger->pools[i].name, name, GPB_ID_SIZE) == 0)
            return (int)i;
    if (n >= GPB_MAX_POOLS)
        return gpb_fail(GPUBALANCE_ERR_FULL, "ledger %s has no room for pool %s (%d pools at most)", ledger->path, name,
                        GPB_MAX_POOLS);
    p = &ledger->pools[n];
    memset(p, 0, sizeof(*p));
    g_strlcpy(p->name, name, sizeof(p->name));
    ledger->header->pool_count = n + 1;
    return (int)n;
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

    if (device == GPB_FREE_SLOT || device >= device_count(ledger))
        return -1;
    return device;
}

uint64_t gpb_ledger_last_sweep(const gpb_ledger *ledger)
{
    return ledger->header->last_sweep_ns;
}

/* ---- slots ------------------------------------------------------------ */

/* Why lock files by slot group. The kernel keeps every record lock of an
 * inode on one list and walks it on each lock call (measured: a lock+unlock
 * pair costs 2.4 us on an empty file, 19 us beside 1000 locks). With one
 * file for all leases, or one per device, a device holding many leases
 * makes every acquire, release and lock test on it slow, and verifying its
 * leases quadratic. So the locks of slots [K*G, (K+1)*G) live in lock file
 * K (G = GPB_LOCK_GROUP), whatever their device, and claims take slots
 * round-robin across the files: n leases put about n / GPB_LOCK_FILES
 * locks on each list. The header lock, on the data file, has a list of its
 * own. The file names carry the ledger's generation, so a reset never
 * mixes the locks of two ledgers. */
static int slot_group(int slot)
{
    return slot / GPB_LOCK_GROUP;
}

/* The n-th slot in claim order: consecutive turns land in different lock
 * files. */
static int slot_of_turn(uint32_t turn)
{
    turn %= GPB_SLOTS;
    return (int)((turn % GPB_LOCK_FILES) * GPB_LOCK_GROUP + turn / GPB_LOCK_FILES);
}

static uint32_t turn_of_slot(int slot)
{
    return (uint32_t)((slot % GPB_LOCK_GROUP) * GPB_LOCK_FILES + slot / GPB_LOCK_GROUP);
}

static void lock_file_name(const gpb_ledger *ledger, int group, char *buf, size_t size)
{
    snprintf(buf, size, "%s.%016llx.slots%d.lock", GPB_LEDGER_FILE, (unsigned long long)ledger->generation, group);
}

static int open_lock_file(gpb_ledger *ledger, int group, int flags, mode_t mode)
{
    char name[96];
    struct stat st;
    int fd;

    lock_file_name(ledger, group, name, sizeof(name));
    fd = openat(ledger->dir_fd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC | flags, mode);
    if (fd < 0)
        return gpb_fail(errno == ELOOP ? GPUBALANCE_ERR_LEDGER_UNSAFE : GPUBALANCE_ERR_LEDGER_IO,
                        "cannot open lock file %s/%s: %s; %s", ledger->dir, name, g_strerror(errno), RESET_HINT);
    if (fstat(fd, &st) < 0 || check_file(name, &st) < 0) {
        close(fd);
        return gpb_fail(GPUBALANCE_ERR_LEDGER_UNSAFE, "lock file %s/%s is not safe to use; %s", ledger->dir, name,
                        RESET_HINT);
    }
    return fd;
}

/* The group's lock file, kept open for lock tests; created on first use
 * with the data file's mode. */
static int group_test_fd(gpb_ledger *ledger, int group)
{
    struct stat data;
    int fd;

    if (ledger->test_fd[group] >= 0)
        return ledger->test_fd[group];
    if (fstat(ledger->fd, &data) < 0)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot inspect %s: %s", ledger->path, g_strerror(errno));
    fd = open_lock_file(ledger, group, O_CREAT, data.st_mode & 0660);
    if (fd >= 0) {
        fchmod(fd, data.st_mode & 0660); /* whatever the umask */
        ledger->test_fd[group] = fd;
    }
    return fd;
}

/* A new open file description of the group's lock file, for one lease. */
static int open_lease_fd(gpb_ledger *ledger, int group)
{
    int status = group_test_fd(ledger, group);

    if (status < 0)
        return status;
    return open_lock_file(ledger, group, 0, 0);
}

static void keep_spare(gpb_ledger *ledger, int fd, int group)
{
    if (ledger->n_spares < SPARE_FDS)
        ledger->spares[ledger->n_spares++] = (spare_fd){.fd = fd, .group = group};
    else
        close(fd);
}

static uint32_t slot_flags(const gpb_slot_record *r)
{
    return __atomic_load_n(&r->flags, __ATOMIC_ACQUIRE); /* ended without the lock */
}

static void count_in(gpb_device_record *d, const gpb_slot_record *r)
{
    d->sessions++;
    d->load_milli += r->cost_milli;
    if (slot_flags(r) & GPB_SLOT_DRIVER_OPEN)
        d->driver_sessions++;
}

/* Locks a free slot of the spare's group with the spare's descriptor. */
static int lock_slot_in_group(gpb_ledger *ledger, int fd, int group)
{
    for (int slot = group * GPB_LOCK_GROUP; slot < (group + 1) * GPB_LOCK_GROUP; slot++)
        if (ledger->slot_map[slot] == GPB_FREE_SLOT && ofd_lock(fd, F_WRLCK, slot_lock_offset(slot), false) == 0)
            return slot;
    return -1;
}

/* Reuses a spare descriptor (the most recent first) on a free slot of its
 * own lock file. */
static int claim_with_spare(gpb_ledger *ledger, int *fd_out)
{
    for (int i = ledger->n_spares - 1; i >= 0; i--) {
        spare_fd spare = ledger->spares[i];
        int slot = lock_slot_in_group(ledger, spare.fd, spare.group);

        if (slot >= 0) {
            ledger->spares[i] = ledger->spares[--ledger->n_spares];
            *fd_out = spare.fd;
            return slot;
        }
    }
    return -1;
}

/* The next free slot in claim order, locked on a new descriptor. */
static int claim_new(gpb_ledger *ledger, int *fd_out)
{
    uint32_t hint = ledger->header->slot_hint % GPB_SLOTS;

    for (uint32_t n = 0; n < GPB_SLOTS; n++) {
        int slot = slot_of_turn(hint + n);
        int fd;

        if (ledger->slot_map[slot] != GPB_FREE_SLOT)
            continue;
        if ((fd = open_lease_fd(ledger, slot_group(slot))) < 0)
            return fd;
        if (ofd_lock(fd, F_WRLCK, slot_lock_offset(slot), false) == 0) {
            ledger->header->slot_hint = turn_of_slot(slot) + 1;
            *fd_out = fd;
            return slot;
        }
        close(fd); /* locked, yet free in the map: a damaged map; try on */
    }
    return gpb_fail(GPUBALANCE_ERR_FULL, "ledger %s has no free slot (%d leases at most)", ledger->path, GPB_SLOTS);
}

int gpb_ledger_claim(gpb_ledger *ledger, int device, const gpb_slot_record *record, int *fd_out)
{
    int fd = -1;
    int slot = claim_with_spare(ledger, &fd);

    if (slot < 0)
        slot = claim_new(ledger, &fd);
    if (slot == GPUBALANCE_ERR_FULL) {
        gpb_ledger_sweep(ledger); /* dead holders may still occupy slots */
        slot = claim_new(ledger, &fd);
    }
    if (slot < 0)
        return slot;
    ledger->slots[slot] = *record;
    ledger->slot_map[slot] = (uint16_t)device;
    count_in(&ledger->devices[device], record);
    *fd_out = fd;
    return slot;
}

static void count_out(gpb_device_record *d, const gpb_slot_record *r)
{
    d->sessions = d->sessions ? d->sessions - 1 : 0;
    d->load_milli = d->load_milli >= r->cost_milli ? d->load_milli - r->cost_milli : 0;
    if ((slot_flags(r) & GPB_SLOT_DRIVER_OPEN) && d->driver_sessions)
        d->driver_sessions--;
}

void gpb_ledger_release(gpb_ledger *ledger, int slot, int fd, bool reusable)
{
    int device = gpb_ledger_slot_device(ledger, slot);

    if (device >= 0)
        count_out(&ledger->devices[device], &ledger->slots[slot]);
    memset(&ledger->slots[slot], 0, sizeof(gpb_slot_record));
    ledger->slot_map[slot] = GPB_FREE_SLOT;
    /* A waiter wakes on IN_CLOSE_WRITE, so while anyone waits the
     * descriptor is closed rather than kept for reuse. */
    if (reusable && ledger->header->waiters == 0 && ofd_lock(fd, F_UNLCK, slot_lock_offset(slot), false) == 0)
        keep_spare(ledger, fd, slot_group(slot));
    else
        close(fd);
}

/* Why a release needs no header lock. Ending a lease only ever lowers the
 * truth, and a count above the truth is allowed (see the top of this
 * file): so the lease is marked ended and its lock dropped at once, and
 * the next holder of the header lock counts it out (reap_released). Half
 * the header lock's traffic is gone, which is what keeps many processes
 * placing streams at once from queueing on it. */
void gpb_ledger_end(gpb_ledger *ledger, int slot, int fd, bool reusable)
{
    ledger_header *h = ledger->header;
    uint32_t at;

    __atomic_fetch_or(&ledger->slots[slot].flags, GPB_SLOT_ENDED, __ATOMIC_RELEASE);
    at = __atomic_fetch_add(&h->ended_head, 1, __ATOMIC_ACQ_REL);
    __atomic_store_n(&h->ended[at % ENDED_RING], (uint32_t)slot + 1, __ATOMIC_RELEASE);
    pthread_mutex_lock(&ledger->mutex); /* the spares are this process's */
    /* A waiter wakes on IN_CLOSE_WRITE: while anyone waits, close. */
    if (reusable && __atomic_load_n(&h->waiters, __ATOMIC_ACQUIRE) == 0 &&
        ofd_lock(fd, F_UNLCK, slot_lock_offset(slot), false) == 0)
        keep_spare(ledger, fd, slot_group(slot));
    else
        close(fd);
    pthread_mutex_unlock(&ledger->mutex);
}

static bool slot_ended(const gpb_ledger *ledger, int slot)
{
    return (slot_flags(&ledger->slots[slot]) & GPB_SLOT_ENDED) != 0;
}

static void forget_slot(gpb_ledger *ledger, int slot, uint16_t device);

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
            continue; /* not written yet (found later), or reaped already */
        count_out(&ledger->devices[device], &ledger->slots[slot]);
        forget_slot(ledger, slot, (uint16_t)device);
    }
    h->ended_tail = head;
}

/* ---- verification ----------------------------------------------------- */

/* Is the slot's lease still held? One lock test on a list of about
 * leases / GPB_LOCK_FILES locks. */
static bool slot_is_held(gpb_ledger *ledger, int slot)
{
    int fd = group_test_fd(ledger, slot_group(slot));

    if (slot_ended(ledger, slot))
        return false;
    return fd < 0 || ofd_locked_elsewhere(fd, slot_lock_offset(slot));
}

static void forget_slot(gpb_ledger *ledger, int slot, uint16_t device)
{
    if (slot_ended(ledger, slot)) {
        memset(&ledger->slots[slot], 0, sizeof(gpb_slot_record));
        ledger->slot_map[slot] = GPB_FREE_SLOT;
        return;
    }
    gpb_debug("slot %d on %.*s: holder pid %d is gone", slot, GPB_ID_SIZE, ledger->devices[device].id,
              ledger->slots[slot].pid);
    memset(&ledger->slots[slot], 0, sizeof(gpb_slot_record));
    ledger->slot_map[slot] = GPB_FREE_SLOT;
}

int gpb_ledger_forget_dead(gpb_ledger *ledger, const gpb_devset *devices, int max_tests)
{
    uint32_t n = device_count(ledger);
    int start = ledger->forget_cursor % GPB_SLOTS;
    int tests = 0;
    int forgotten = 0;
    int k;

    for (k = 0; k < GPB_SLOTS && (max_tests <= 0 || tests < max_tests); k++) {
        int slot = (start + k) % GPB_SLOTS;
        uint16_t device = ledger->slot_map[slot];

        if (device == GPB_FREE_SLOT || device >= n || !gpb_devset_has(devices, device))
            continue;
        tests++;
        if (slot_is_held(ledger, slot))
            continue;
        count_out(&ledger->devices[device], &ledger->slots[slot]);
        forget_slot(ledger, slot, device);
        forgotten++;
    }
    ledger->forget_cursor = (start + k) % GPB_SLOTS;
    return forgotten;
}

void gpb_ledger_verify(gpb_ledger *ledger, const gpb_devset *devices)
{
    uint32_t n = device_count(ledger);

    if (gpb_devset_empty(devices))
        return;
    for (uint32_t i = 0; i < n; i++) {
        if (gpb_devset_has(devices, (int)i)) {
            ledger->devices[i].sessions = 0;
            ledger->devices[i].load_milli = 0;
            ledger->devices[i].driver_sessions = 0;
        }
    }
    for (int slot = 0; slot < GPB_SLOTS; slot++) {
        uint16_t device = ledger->slot_map[slot];

        if (device == GPB_FREE_SLOT)
            continue;
        if (device >= n) { /* garbage from a damaged table: forget it */
            ledger->slot_map[slot] = GPB_FREE_SLOT;
            continue;
        }
        if (!gpb_devset_has(devices, device))
            continue;
        if (!slot_is_held(ledger, slot)) {
            forget_slot(ledger, slot, device);
            continue;
        }
        count_in(&ledger->devices[device], &ledger->slots[slot]);
    }
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
    int fd = open(ledger->path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0)
        return -1;
    if (ofd_lock(fd, F_RDLCK, WAITER_BYTE, false) < 0) {
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
    if (ledger->header->waiters)
        ledger->header->waiters--;
    close(fd);
}

/* ---- reset ------------------------------------------------------------ */

static int count_live(gpb_ledger *ledger)
{
    int live = 0;

    gpb_ledger_sweep(ledger);
    for (int slot = 0; slot < GPB_SLOTS; slot++)
        if (gpb_ledger_slot_device(ledger, slot) >= 0)
            live++;
    return live;
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

/* The old ledger's lock files. A lease still held on one (reset --force)
 * keeps its lock on the unlinked inode, which no one counts any more. */
static void remove_lock_files(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;

    if (!d)
        return;
    while ((name = g_dir_read_name(d))) {
        if (g_str_has_prefix(name, GPB_LEDGER_FILE ".") && g_str_has_suffix(name, ".lock")) {
            char *path = g_build_filename(dir, name, NULL);

            unlink(path);
            g_free(path);
        }
    }
    g_dir_close(d);
}

int gpb_ledger_reset(const char *dir_arg, bool force, int *live_leases)
{
    char *dir = dir_arg ? g_strdup(dir_arg) : gpb_ledger_default_dir();
    gpb_ledger *ledger = NULL;
    int status;

    *live_leases = 0;
    if ((status = prepare_dir(dir)) < 0)
        goto out;
    ledger = ledger_new(dir);
    status = open_existing(ledger);
    if (status == 0) {
        gpb_ledger_lock(ledger);
        *live_leases = count_live(ledger);
        gpb_ledger_unlock(ledger);
        if (*live_leases > 0 && !force) {
            status = gpb_fail(GPUBALANCE_ERR_BUSY,
                              "ledger %s is valid and %d lease(s) are live; not resetting it (use --force to "
                              "start a new ledger anyway: live leases then go uncounted until they end)",
                              ledger->path, *live_leases);
            goto out;
        }
        if (unlink(ledger->path) < 0 && errno != ENOENT) {
            status = gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot remove %s: %s", ledger->path, g_strerror(errno));
            goto out;
        }
    } else if (status < 0) {
        /* damaged, unsafe or newer: keep the file for inspection */
        if ((status = move_aside(ledger->path)) < 0)
            goto out;
    }
    remove_lock_files(dir);
    status = create_file(dir, ledger->path);
out:
    gpb_ledger_close(ledger);
    g_free(dir);
    return status;
}

/* A process cannot change its own pid namespace (unshare and setns only
 * move its future children), so one look per process suffices; a forked
 * child looks again, as it may be the first process of a new one. The pid
 * is kept with it: getpid() is a system call on every acquire otherwise. */
static pid_t self_pid; /* 0: not looked up in this process; written last */
static uint64_t self_namespace;
static pthread_once_t fork_hook_once = PTHREAD_ONCE_INIT;

static void forget_self(void)
{
    __atomic_store_n(&self_pid, 0, __ATOMIC_RELEASE);
}

static void install_fork_hook(void)
{
    pthread_atfork(NULL, NULL, forget_self);
}

static pid_t look_up_self(void)
{
    pid_t pid;
    struct stat st;

    pthread_once(&fork_hook_once, install_fork_hook);
    if ((pid = __atomic_load_n(&self_pid, __ATOMIC_ACQUIRE)) != 0)
        return pid;
    pid = getpid();
    __atomic_store_n(&self_namespace, stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0, __ATOMIC_RELAXED);
    __atomic_store_n(&self_pid, pid, __ATOMIC_RELEASE);
    return pid;
}

uint64_t gpb_pid_namespace(void)
{
    look_up_self();
    return __atomic_load_n(&self_namespace, __ATOMIC_RELAXED);
}

pid_t gpb_self_pid(void)
{
    return look_up_self();
}
