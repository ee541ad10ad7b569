/* events.c - the host's counters and event log (see events.h), and the
 * public API over them: counters in snapshots, gpubalance_events_read(),
 * and the change watch that `gpubalance status --watch` redraws on. */
#define _GNU_SOURCE
#include "events.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "internal.h"
#include "util.h"

#define EVENTS_MAGIC "GPBEVNTS"
#define EVENTS_FORMAT 1u
#define EVENTS_HEADER_SIZE 4096u
#define EVENTS_SUFFIX ".events"
#define TEXT_WORDS (GPB_EVENT_TEXT_SIZE / 8)

typedef struct {
    char magic[8];
    uint32_t format;
    uint32_t header_size;
    uint32_t counter_rows;
    uint32_t counter_columns;
    uint32_t event_capacity;
    uint32_t event_size;
    uint64_t counters_offset;
    uint64_t events_offset;
    uint64_t file_size;
    uint64_t generation; /* the ledger's */
    uint32_t crc;
    uint32_t reserved;
} events_layout;

typedef struct {
    events_layout layout;
    uint64_t last_seq; /* atomic: the sequence number last handed out */
    uint64_t watchers; /* atomic: live watches (one killed stays counted: it only costs a write) */
    uint64_t changed;  /* written with pwrite() after an event while watched */
} events_header;

/* One event, written and read as a seqlock: seq is 0 while the writer
 * fills the record, and readers keep only records whose seq is the same
 * before and after their copy. Every field is accessed with atomics (the
 * text as words) so that a reader racing a writer is defined behaviour. */
typedef struct {
    uint64_t seq;
    int64_t unix_ms;
    uint32_t level;
    uint32_t length;
    uint64_t text[TEXT_WORDS];
} event_record;

_Static_assert(sizeof(events_header) <= EVENTS_HEADER_SIZE, "header too large");
_Static_assert(sizeof(event_record) == 24 + GPB_EVENT_TEXT_SIZE, "no padding in a record");
_Static_assert(GPB_EVENT_TEXT_SIZE % 8 == 0, "text is copied in words");

struct gpb_events {
    char *path;
    int fd;
    uint8_t *base;
    size_t size;
    events_header *header;
    uint64_t *counters;
    event_record *ring;
    int guard; /* gpb_mapping_guard() handle */
};

static uint64_t counters_offset(void)
{
    return EVENTS_HEADER_SIZE;
}

static uint64_t events_offset(void)
{
    uint64_t end = counters_offset() + sizeof(uint64_t) * GPB_COUNTER_ROWS * GPB_COUNTER_COLUMNS;

    return (end + 4095) & ~(uint64_t)4095;
}

static uint64_t events_file_size(void)
{
    return events_offset() + sizeof(event_record) * GPB_EVENT_CAPACITY;
}

static void fill_layout(events_layout *l, uint64_t generation)
{
    memset(l, 0, sizeof(*l));
    memcpy(l->magic, EVENTS_MAGIC, 8);
    l->format = EVENTS_FORMAT;
    l->header_size = EVENTS_HEADER_SIZE;
    l->counter_rows = GPB_COUNTER_ROWS;
    l->counter_columns = GPB_COUNTER_COLUMNS;
    l->event_capacity = GPB_EVENT_CAPACITY;
    l->event_size = sizeof(event_record);
    l->counters_offset = counters_offset();
    l->events_offset = events_offset();
    l->file_size = events_file_size();
    l->generation = generation;
    l->crc = (uint32_t)crc32(0L, (const Bytef *)l, offsetof(events_layout, crc));
}

/* ---- the file ---------------------------------------------------------- */

/* Files of earlier generations (a reset) are no one's any more. */
static void remove_other_generations(const char *dir, const char *keep)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;

    if (!d)
        return;
    while ((name = g_dir_read_name(d))) {
        if (g_str_has_prefix(name, GPB_LEDGER_FILE ".") && g_str_has_suffix(name, EVENTS_SUFFIX) &&
            strcmp(name, keep) != 0) {
            char *path = g_build_filename(dir, name, NULL);

            unlink(path);
            g_free(path);
        }
    }
    g_dir_close(d);
}

static int fill_events(int fd, const void *data)
{
    events_header header;

    memset(&header, 0, sizeof(header));
    fill_layout(&header.layout, *(const uint64_t *)data);
    return pwrite(fd, &header, sizeof(header), 0) == (ssize_t)sizeof(header) ? 0 : errno;
}

/* Beyond the rules every file of the ledger directory is opened by
 * (gpb_ledger_file_open): shared with the ledger's own group when not
 * ours, and the layout this code writes for this ledger's generation. */
static bool layout_is_ours(int fd, const struct stat *ledger_st, uint64_t generation)
{
    struct stat st;
    events_layout found, want;

    if (fstat(fd, &st) < 0 || (st.st_uid != geteuid() && st.st_gid != ledger_st->st_gid))
        return false;
    if (pread(fd, &found, sizeof(found), 0) != (ssize_t)sizeof(found))
        return false;
    fill_layout(&want, generation);
    return memcmp(&found, &want, sizeof(want)) == 0 && (uint64_t)st.st_size == want.file_size;
}

/* Opens the events file name of the ledger directory, checked; 0 with
 * *fd set, 1 when missing, 2 when damaged, or a negative status (refused
 * as unsafe, or not to be opened). */
static int open_checked(int dir_fd, const char *dir, const char *name, const struct stat *ledger_st,
                        uint64_t generation, int *fd)
{
    int status = gpb_ledger_file_open(dir_fd, dir, name, "event log", fd);

    if (status == 0 && !layout_is_ours(*fd, ledger_st, generation)) {
        close(*fd);
        *fd = -1;
        return 2;
    }
    return status;
}

/* A damaged or refused events file is renamed aside (its name only: a
 * hard link's other file and a symbolic link's target are not touched)
 * and kept for inspection. */
static void move_aside(int dir_fd, const char *path, const char *name, const char *why)
{
    char *aside = g_strdup_printf("%s.damaged-%d", name, (int)getpid());

    if (renameat(dir_fd, name, dir_fd, aside) == 0)
        gpb_warning("%s; moved aside to %s.damaged-%d, and a new one made", why, path, (int)getpid());
    else
        gpb_warning("%s; could not move it aside: %s", why, g_strerror(errno));
    g_free(aside);
}

gpb_events *gpb_events_open(const gpb_ledger *ledger)
{
    uint64_t generation = gpb_ledger_generation(ledger);
    const char *dir = gpb_ledger_dir(ledger);
    char *name = g_strdup_printf("%s.%016llx%s", GPB_LEDGER_FILE, (unsigned long long)generation, EVENTS_SUFFIX);
    char *path = g_build_filename(dir, name, NULL);
    int dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat ledger_st;
    gpb_events *events = NULL;
    int fd = -1, status, made;
    void *base;

    if (dir_fd < 0 || stat(gpb_ledger_path(ledger), &ledger_st) < 0)
        goto fail;
    status = open_checked(dir_fd, dir, name, &ledger_st, generation, &fd);
    if (status == 2) {
        char *why = g_strdup_printf("event log %s is damaged or not ours", path);

        move_aside(dir_fd, path, name, why);
        g_free(why);
    } else if (status == GPUBALANCE_ERR_LEDGER_UNSAFE) {
        /* the message's advice to reset is done here at once */
        char *why = g_strdup(gpubalance_last_error());

        if (g_str_has_suffix(why, "; " GPB_RESET_HINT))
            why[strlen(why) - strlen("; " GPB_RESET_HINT)] = '\0';
        move_aside(dir_fd, path, name, why);
        g_free(why);
    } else if (status < 0) {
        goto fail;
    }
    if (fd < 0) {
        made = gpb_ledger_file_create(dir_fd, name, ledger_st.st_mode & 0660, (off_t)events_file_size(), fill_events,
                                      &generation, false);
        if (made < 0) {
            errno = -made;
            goto fail;
        }
        if (made == 0)
            remove_other_generations(dir, name);
        if (open_checked(dir_fd, dir, name, &ledger_st, generation, &fd) != 0) {
            errno = EINVAL;
            goto fail;
        }
    }
    base = mmap(NULL, events_file_size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED)
        goto fail;
    close(dir_fd);
    events = g_new0(gpb_events, 1);
    events->path = path;
    events->fd = fd;
    events->base = base;
    events->size = events_file_size();
    events->header = base;
    events->guard = gpb_mapping_guard(base, events->size);
    events->counters = (uint64_t *)(events->base + counters_offset());
    events->ring = (event_record *)(events->base + events_offset());
    g_free(name);
    return events;
fail:
    gpb_warning("no counters or event log: cannot use %s: %s", path, g_strerror(errno));
    if (fd >= 0)
        close(fd);
    if (dir_fd >= 0)
        close(dir_fd);
    g_free(path);
    g_free(name);
    return NULL;
}

void gpb_events_close(gpb_events *events)
{
    if (!events)
        return;
    gpb_mapping_unguard(events->guard);
    munmap(events->base, events->size);
    close(events->fd);
    g_free(events->path);
    g_free(events);
}

const char *gpb_events_path(const gpb_events *events)
{
    return events ? events->path : NULL;
}

/* ---- counters ---------------------------------------------------------- */

static uint64_t *counter_cell(const gpb_events *events, int row, gpubalance_counter counter)
{
    if (row < 0 || row >= GPB_COUNTER_ROWS)
        row = GPB_COUNTER_HOST_ROW;
    return &events->counters[(size_t)row * GPB_COUNTER_COLUMNS + (size_t)counter];
}

void gpb_events_count(gpb_events *events, int row, gpubalance_counter counter)
{
    if (events && (unsigned)counter < GPUBALANCE_N_COUNTERS)
        __atomic_fetch_add(counter_cell(events, row, counter), 1, __ATOMIC_RELAXED);
}

uint64_t gpb_events_counter(const gpb_events *events, int row, gpubalance_counter counter)
{
    if (!events || (unsigned)counter >= GPUBALANCE_N_COUNTERS)
        return 0;
    return __atomic_load_n(counter_cell(events, row, counter), __ATOMIC_RELAXED);
}

/* ---- structured lines -------------------------------------------------- */

GString *gpb_event_begin(const char *kind)
{
    GString *line = g_string_sized_new(512);

    g_string_append(line, "event=");
    g_string_append(line, kind);
    return line;
}

/* Which bytes end a run of plain characters in a logfmt value: space, the
 * quote, '=', the backslash and every control character. A table, because
 * strcspn() with a set this long builds one of its own at every call: that
 * was a tenth of an acquire+release. */
static const bool kv_special[256] = {
    [0x01] = true, [0x02] = true, [0x03] = true, [0x04] = true, [0x05] = true, [0x06] = true,
    [0x07] = true, [0x08] = true, ['\t'] = true, ['\n'] = true, [0x0b] = true, [0x0c] = true,
    ['\r'] = true, [0x0e] = true, [0x0f] = true, [0x10] = true, [0x11] = true, [0x12] = true,
    [0x13] = true, [0x14] = true, [0x15] = true, [0x16] = true, [0x17] = true, [0x18] = true,
    [0x19] = true, [0x1a] = true, [0x1b] = true, [0x1c] = true, [0x1d] = true, [0x1e] = true,
    [0x1f] = true, [' '] = true,  ['"'] = true,  ['='] = true,  ['\\'] = true, [0x7f] = true,
};

/* The length of the run of plain characters at p (up to a special byte or
 * the end). */
static size_t plain_run(const char *p)
{
    size_t n = 0;

    while (p[n] && !kv_special[(unsigned char)p[n]])
        n++;
    return n;
}

/* logfmt quoting: bare when the value is a plain word, else in double
 * quotes with \" \\ \n escaped; control characters never pass. */
void gpb_kv(GString *line, const char *key, const char *value)
{
    const char *p = value ? value : "";
    size_t plain = plain_run(p);

    g_string_append_c(line, ' ');
    g_string_append(line, key);
    g_string_append_c(line, '=');
    if (*p && !p[plain]) {
        g_string_append_len(line, p, (gssize)plain);
        return;
    }
    g_string_append_c(line, '"');
    /* runs of ordinary characters at once, then the one that is not */
    for (; *p; p += plain + 1) {
        plain = plain_run(p);
        g_string_append_len(line, p, (gssize)plain);
        if (!p[plain])
            break;
        if (p[plain] == '"' || p[plain] == '\\') {
            g_string_append_c(line, '\\');
            g_string_append_c(line, p[plain]);
        } else if (p[plain] == '\n') {
            g_string_append(line, "\\n");
        } else if (p[plain] == ' ' || p[plain] == '=') {
            g_string_append_c(line, p[plain]);
        } else {
            g_string_append_c(line, '?'); /* a control character */
        }
    }
    g_string_append_c(line, '"');
}

/* Without printf: its format parsing was a twentieth of an
 * acquire+release, for the three numbers of a placement line. */
void gpb_kv_int(GString *line, const char *key, long long value)
{
    char digits[24];
    size_t n = 0;
    unsigned long long magnitude = value < 0 ? 0ull - (unsigned long long)value : (unsigned long long)value;

    do {
        digits[sizeof(digits) - ++n] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (value < 0)
        digits[sizeof(digits) - ++n] = '-';
    g_string_append_c(line, ' ');
    g_string_append(line, key);
    g_string_append_c(line, '=');
    g_string_append_len(line, digits + sizeof(digits) - n, (gssize)n);
}

/* ---- the ring ---------------------------------------------------------- */

static void ring_append(gpb_events *events, const char *text, gpubalance_log_level level)
{
    uint64_t words[TEXT_WORDS] = {0};
    size_t length = MIN(strlen(text), sizeof(words) - 1);
    uint64_t seq = __atomic_add_fetch(&events->header->last_seq, 1, __ATOMIC_RELAXED);
    event_record *r = &events->ring[(seq - 1) % GPB_EVENT_CAPACITY];

    memcpy(words, text, length);
    __atomic_store_n(&r->seq, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&r->unix_ms, gpb_unix_ms(), __ATOMIC_RELAXED);
    __atomic_store_n(&r->level, (uint32_t)level, __ATOMIC_RELAXED);
    __atomic_store_n(&r->length, (uint32_t)length, __ATOMIC_RELAXED);
    for (size_t i = 0; i < TEXT_WORDS; i++)
        __atomic_store_n(&r->text[i], words[i], __ATOMIC_RELAXED);
    __atomic_store_n(&r->seq, seq, __ATOMIC_RELEASE);
    /* Stores to a mapping raise no inotify event; a write() does. Only
     * paid while someone watches. */
    if (__atomic_load_n(&events->header->watchers, __ATOMIC_RELAXED) > 0 &&
        pwrite(events->fd, &seq, sizeof(seq), offsetof(events_header, changed)) < 0)
        gpb_debug("cannot announce an event in %s: %s", events->path, g_strerror(errno));
}

void gpb_event_commit(gpb_events *events, GString *line, gpubalance_log_level level, int row, int counter)
{
    gpb_log(level, "%s", line->str);
    if (events) {
        if (counter >= 0)
            gpb_events_count(events, row, (gpubalance_counter)counter);
        ring_append(events, line->str, level);
    }
    g_string_free(line, TRUE);
}

/* Copies the record if it holds event seq and was not being rewritten
 * meanwhile; the text is cleaned (it comes from a shared file). */
static bool ring_copy(const event_record *r, uint64_t seq, gpubalance_event *out, char *text)
{
    uint64_t words[TEXT_WORDS];
    uint32_t length, level;

    if (__atomic_load_n(&r->seq, __ATOMIC_ACQUIRE) != seq)
        return false;
    out->unix_ms = __atomic_load_n(&r->unix_ms, __ATOMIC_RELAXED);
    level = __atomic_load_n(&r->level, __ATOMIC_RELAXED);
    length = __atomic_load_n(&r->length, __ATOMIC_RELAXED);
    for (size_t i = 0; i < TEXT_WORDS; i++)
        words[i] = __atomic_load_n(&r->text[i], __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&r->seq, __ATOMIC_RELAXED) != seq)
        return false;
    length = MIN(length, (uint32_t)sizeof(words) - 1);
    memcpy(text, words, length);
    text[length] = '\0';
    for (char *p = text; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    out->seq = seq;
    out->level = level <= GPUBALANCE_LOG_DEBUG ? (gpubalance_log_level)level : GPUBALANCE_LOG_INFO;
    out->text = text;
    return true;
}

uint64_t gpb_events_read(const gpb_events *events, uint64_t after, gpubalance_event_func func, void *user_data)
{
    uint64_t last, first;
    char text[GPB_EVENT_TEXT_SIZE];

    if (!events)
        return after;
    last = __atomic_load_n(&events->header->last_seq, __ATOMIC_ACQUIRE);
    first = last > GPB_EVENT_CAPACITY ? last - GPB_EVENT_CAPACITY + 1 : 1;
    for (uint64_t seq = MAX(first, after + 1); seq <= last; seq++) {
        gpubalance_event event;

        if (!ring_copy(&events->ring[(seq - 1) % GPB_EVENT_CAPACITY], seq, &event, text))
            continue; /* overwritten, or a writer died halfway */
        func(&event, user_data);
        after = seq;
    }
    return after;
}

void gpb_events_add_watcher(gpb_events *events, int delta)
{
    if (!events)
        return;
    if (delta > 0)
        __atomic_fetch_add(&events->header->watchers, 1, __ATOMIC_RELAXED);
    else if (__atomic_load_n(&events->header->watchers, __ATOMIC_RELAXED) > 0)
        __atomic_fetch_sub(&events->header->watchers, 1, __ATOMIC_RELAXED);
}

/* ---- the public API ----------------------------------------------------- */

uint64_t gpubalance_events_read(gpubalance_context *ctx, uint64_t after, gpubalance_event_func func, void *user_data)
{
    if (!ctx || !func)
        return after;
    return gpb_events_read(ctx->events, after, func, user_data);
}

struct gpubalance_watch {
    gpubalance_context *ctx;
    int inotify;
    int waiter;
};

/* Every change the watch must see raises an inotify event in the ledger
 * directory: a lease's descriptor closes (IN_CLOSE_WRITE) on release,
 * exit or SIGKILL, provided a waiter is registered (otherwise releases
 * keep descriptors for reuse, silently), and an event is announced by a
 * write to the events file (IN_MODIFY) while a watch is counted. */
int gpubalance_watch_new(gpubalance_context *ctx, gpubalance_watch **out)
{
    gpubalance_watch *w;

    if (!ctx || !out)
        return gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "gpubalance_watch_new: NULL argument");
    w = g_new0(gpubalance_watch, 1);
    w->inotify = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (w->inotify < 0 || inotify_add_watch(w->inotify, gpb_ledger_dir(ctx->ledger), IN_CLOSE_WRITE | IN_MODIFY) < 0) {
        int status =
            gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot watch %s: %s", gpb_ledger_dir(ctx->ledger), g_strerror(errno));

        if (w->inotify >= 0)
            close(w->inotify);
        g_free(w);
        return status;
    }
    w->ctx = gpb_context_ref(ctx);
    w->waiter = -1;
    if (gpb_ledger_lock(ctx->ledger) == 0) {
        w->waiter = gpb_ledger_wait_begin(ctx->ledger);
        gpb_ledger_unlock(ctx->ledger);
    } /* else: redraws on events, not on releases, until the ledger answers */
    gpb_events_add_watcher(ctx->events, +1);
    *out = w;
    return 0;
}

int gpubalance_watch_fd(const gpubalance_watch *watch)
{
    return watch ? watch->inotify : -1;
}

void gpubalance_watch_drain(gpubalance_watch *watch)
{
    char buf[4096];

    if (watch)
        while (read(watch->inotify, buf, sizeof(buf)) > 0)
            ;
}

void gpubalance_watch_free(gpubalance_watch *watch)
{
    if (!watch)
        return;
    gpb_events_add_watcher(watch->ctx->events, -1);
    if (watch->waiter >= 0 && gpb_ledger_lock(watch->ctx->ledger) == 0) {
        gpb_ledger_wait_end(watch->ctx->ledger, watch->waiter);
        gpb_ledger_unlock(watch->ctx->ledger);
    }
    close(watch->inotify);
    gpubalance_context_close(watch->ctx);
    g_free(watch);
}

/* ---- expiries ---------------------------------------------------------- */

/* The id this process knows the device by (nvenc:N), else its ledger key. */
static void kv_device(GString *line, gpubalance_context *ctx, int ledger_index)
{
    for (guint i = 0; ctx->inventory && i < ctx->inventory->devices->len; i++) {
        const gpb_device *d = g_ptr_array_index(ctx->inventory->devices, i);

        if (d->ledger_index == ledger_index) {
            gpb_kv(line, "device", d->id);
            return;
        }
    }
    {
        char key[GPB_ID_SIZE + 1];

        g_strlcpy(key, gpb_ledger_device(ctx->ledger, ledger_index)->id, sizeof(key));
        gpb_kv(line, "device", key);
    }
}

static void lease_expired(void *user_data, int device, const gpb_slot_record *record)
{
    gpubalance_context *ctx = user_data;
    GString *line = gpb_event_begin("expired");
    char label[GPB_LABEL_SIZE + 1];

    g_strlcpy(label, record->label, sizeof(label)); /* outside input: bounded */
    gpb_kv(line, "label", label);
    gpb_kv_int(line, "pid", record->pid);
    kv_device(line, ctx, device);
    gpb_kv(line, "reason", "its process ended without releasing it");
    gpb_event_commit(ctx->events, line, GPUBALANCE_LOG_INFO, device, GPUBALANCE_COUNTER_LEASES_EXPIRED);
}

void gpb_events_attach(gpubalance_context *ctx)
{
    ctx->events = gpb_events_open(ctx->ledger);
    gpb_ledger_set_gone_hook(ctx->ledger, lease_expired, ctx);
}
