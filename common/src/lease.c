/* lease.c - placement, leases, failure reports and learning. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "cost.h"
#include "internal.h"
#include "policy.h"
#include "util.h"

/* How often a waiter looks again when no lease is released (foreign load
 * and learned limits change silently). */
#define WAIT_RECHECK_MS 1000
/* Lease locks a refusal may test (see choose()): up to 8, fewer on devices
 * holding many leases. A test walks one slot group's locks (64 at most),
 * but each is a system call, and a device full with many leases is
 * refused on its count at every decision: its dead holders are found by
 * the periodic sweep as well. */
#define VERIFY_PER_DECISION 8
#define VERIFY_LOCK_WALK 512

static gpb_wait_hook wait_hook;
static void *wait_hook_data;

void gpb_set_wait_hook(gpb_wait_hook hook, void *user_data)
{
    wait_hook = hook;
    wait_hook_data = user_data;
}

/* The options in force for one stream: its own, else the context's. */
typedef struct {
    gpubalance_policy policy;
    gpb_order order;
    gpubalance_when_full when_full;
    double wait_timeout;
    int forced;
} placement_options;

static int resolve_options(const gpubalance_context *ctx, const gpubalance_stream *s, placement_options *o)
{
    const gpb_config *c = ctx->config;

    o->policy = s->has_policy ? s->policy : c->policy;
    o->order = s->has_order ? s->order : c->order;
    o->when_full = s->has_when_full ? s->when_full : c->when_full;
    o->wait_timeout = s->wait_timeout >= 0 ? s->wait_timeout : c->wait_timeout;
    o->forced = -1;
    if (s->device) {
        o->forced = gpb_inventory_find(ctx->inventory, s->device);
        if (o->forced < 0) {
            GString *ids = g_string_new(NULL);

            for (guint i = 0; i < ctx->inventory->devices->len; i++)
                g_string_append_printf(ids, "%s%s", i ? ", " : "",
                                       ((gpb_device *)g_ptr_array_index(ctx->inventory->devices, i))->id);
            gpb_fail(GPUBALANCE_ERR_NO_SUCH_DEVICE, "device '%s' does not exist here; devices: %s", s->device,
                     ids->str);
            g_string_free(ids, TRUE);
            return GPUBALANCE_ERR_NO_SUCH_DEVICE;
        }
    }
    return 0;
}

static gpb_device *inv_device(const gpubalance_context *ctx, int index)
{
    return g_ptr_array_index(ctx->inventory->devices, index);
}

/* The session limit in force: the configured one (0 = none) or the
 * learned one, whichever is lower; GPB_NO_LIMIT when neither applies. */
_Static_assert(GPB_NO_LIMIT == -1, "gpb_learned_limit() answers -1 for no limit");

static int limit_in_force(int configured, const gpb_learned *learned, uint64_t now)
{
    int learned_limit = gpb_learned_limit(learned, now);

    if (configured <= 0)
        return learned_limit;
    if (learned_limit == GPB_NO_LIMIT)
        return configured;
    return MIN(configured, learned_limit);
}

/* The ledger indices of the devices whose counts refused this stream, and
 * of every member of their pools (a pool's count is its members' sum).
 * A device with no lease of ours counted has nothing stale to forget. */
static void stale_suspects(gpubalance_context *ctx, const gpb_devset *full, gpb_devset *suspects)
{
    gpb_inventory *inv = ctx->inventory;
    gpb_devset pools;

    gpb_devset_clear(suspects);
    gpb_devset_clear(&pools);
    for (guint i = 0; i < inv->devices->len; i++) {
        const gpb_device *d = inv_device(ctx, (int)i);

        if (!gpb_devset_has(full, (int)i))
            continue;
        if (gpb_ledger_device(ctx->ledger, d->ledger_index)->sessions > 0)
            gpb_devset_add(suspects, d->ledger_index);
        if (d->pool >= 0)
            gpb_devset_add(&pools, d->pool);
    }
    if (gpb_devset_empty(&pools))
        return;
    for (guint i = 0; i < inv->devices->len; i++) {
        const gpb_device *d = inv_device(ctx, (int)i);

        if (d->pool >= 0 && gpb_devset_has(&pools, d->pool) &&
            gpb_ledger_device(ctx->ledger, d->ledger_index)->sessions > 0)
            gpb_devset_add(suspects, d->ledger_index);
    }
}

void gpb_check_counts(gpubalance_context *ctx)
{
    gpb_devset ours;

    gpb_devset_clear(&ours);
    for (guint i = 0; i < ctx->inventory->devices->len; i++)
        gpb_devset_add(&ours, inv_device(ctx, (int)i)->ledger_index);
    gpb_ledger_check_counts(ctx->ledger, &ours);
}

/* Does the device's probe report foreign sessions, and could the device
 * take this stream at all? Only those are worth a foreign-load scan. */
static bool could_take(const gpubalance_context *ctx, const gpubalance_lease *lease, const placement_options *o,
                       int index)
{
    const gpb_device *d = inv_device(ctx, index);
    const gpubalance_stream *s = &lease->stream;
    gpubalance_backend group = gpb_order_backend(d->backend, d->imitates);
    bool in_order = false;

    for (int g = 0; g < o->order.n; g++)
        in_order |= o->order.backends[g] == group;
    return in_order && (o->forced < 0 || o->forced == index) && !gpb_devset_has(&lease->tried, index) &&
           !d->not_offered_why && d->unavailable_until_ns <= gpb_now_ns() && gpb_device_codecs(d, 1u << s->codec) &&
           s->width <= d->max_width && s->height <= d->max_height && (s->bit_depth <= 8 || d->ten_bit);
}

static bool foreign_refresh_due(gpubalance_context *ctx, const gpb_device *d, uint64_t now)
{
    const gpb_device_record *r = gpb_ledger_device(ctx->ledger, d->ledger_index);

    /* Read without the lock: a hint only, claimed again under the lock. */
    return d->probe && d->probe->driver_sessions &&
           now - __atomic_load_n(&r->foreign_updated_ns, __ATOMIC_RELAXED) >= GPB_FOREIGN_REFRESH_NS;
}

/* Our leases on the device that its driver counts (opened), and their
 * load in cost units. */
static int ours_opened(gpubalance_context *ctx, const gpb_device *d, double *load)
{
    int opened = 0;

    *load = 0;
    for (int slot = 0; slot < GPB_SLOTS; slot++)
        if (gpb_ledger_slot_device(ctx->ledger, slot) == d->ledger_index &&
            gpb_ledger_slot(ctx->ledger, slot)->state == GPUBALANCE_LEASE_OPENED) {
            opened++;
            *load += gpb_ledger_slot(ctx->ledger, slot)->cost_milli / 1000.0;
        }
    return opened;
}

/* Refreshes the foreign load of the devices that could take the stream,
 * at most every GPB_FOREIGN_REFRESH_NS per device across all processes.
 * A scan (a walk of every process's descriptors, or an NVML call) can take
 * a long time, so it runs outside the header lock: the refresh is claimed
 * under the lock (so no other process starts the same scan), the probes
 * run unlocked, and their figures are stored under the lock again. A
 * probe that has nothing to report yet (-1) gives the claim back. */
static void refresh_foreign(gpubalance_lease *lease, const placement_options *o)
{
    gpubalance_context *ctx = lease->ctx;
    guint n = ctx->inventory->devices->len;
    int due[GPB_MAX_DEVICES];
    uint64_t claimed_from[GPB_MAX_DEVICES];
    int n_due = 0;
    uint64_t now = gpb_now_ns();

    for (guint i = 0; i < n && n_due == 0; i++)
        if (foreign_refresh_due(ctx, inv_device(ctx, (int)i), now) && could_take(ctx, lease, o, (int)i))
            n_due = 1;
    if (n_due == 0)
        return; /* the common case: no lock taken */
    n_due = 0;
    if (gpb_ledger_lock(ctx->ledger) < 0)
        return; /* the decision that follows reports it */
    for (guint i = 0; i < n; i++) {
        gpb_device *d = inv_device(ctx, (int)i);
        gpb_device_record *r;

        if (!foreign_refresh_due(ctx, d, now) || !could_take(ctx, lease, o, (int)i))
            continue;
        r = gpb_ledger_device(ctx->ledger, d->ledger_index);
        claimed_from[n_due] = r->foreign_updated_ns;
        r->foreign_updated_ns = now;
        due[n_due++] = (int)i;
    }
    gpb_ledger_unlock(ctx->ledger);
    for (int k = 0; k < n_due; k++) {
        gpb_device *d = inv_device(ctx, due[k]);
        int total = d->probe->driver_sessions(d);
        double utilisation = d->probe->driver_utilisation ? d->probe->driver_utilisation(d) : -1;

        if (gpb_ledger_lock(ctx->ledger) < 0)
            return;
        if (total >= 0) {
            gpb_device_record *r = gpb_ledger_device(ctx->ledger, d->ledger_index);
            double ours_load;

            r->foreign_sessions = (uint32_t)MAX(0, total - ours_opened(ctx, d, &ours_load));
            /* Live utilisation weighs foreign streams by what they really cost. */
            r->foreign_load =
                utilisation >= 0 && d->budget > 0
                    ? gpb_foreign_load_encode(gpb_foreign_load_from_utilisation(utilisation, d->budget, ours_load))
                    : gpb_foreign_load_encode(-1);
        } else if (gpb_ledger_device(ctx->ledger, d->ledger_index)->foreign_updated_ns == now) {
            gpb_ledger_device(ctx->ledger, d->ledger_index)->foreign_updated_ns = claimed_from[k];
        }
        gpb_ledger_unlock(ctx->ledger);
    }
}

static void fill_policy_state(gpubalance_context *ctx, const gpubalance_lease *lease, uint64_t now,
                              gpb_policy_device *pd, gpb_policy_pool *pp)
{
    gpb_inventory *inv = ctx->inventory;

    for (guint i = 0; i < inv->devices->len; i++) {
        gpb_device *d = inv_device(ctx, (int)i);
        const gpb_device_record *r = gpb_ledger_device(ctx->ledger, d->ledger_index);
        gpb_policy_device *p = &pd[i];

        p->id = d->id;
        p->backend = d->backend;
        p->order_backend = gpb_order_backend(d->backend, d->imitates);
        p->codecs = gpb_device_codecs(d, 1u << lease->stream.codec);
        p->max_width = d->max_width;
        p->max_height = d->max_height;
        p->ten_bit = d->ten_bit;
        p->sessions = (int)r->sessions;
        p->foreign_sessions = (int)r->foreign_sessions;
        p->foreign_load = gpb_foreign_load_decode(r->foreign_load);
        p->foreign_load_known = p->foreign_load >= 0;
        p->session_limit = limit_in_force(d->max_sessions, &r->learned, now);
        p->load = r->load_milli / 1000.0;
        p->budget = d->budget;
        p->pool = d->pool;
        p->excluded = false;
        if (gpb_devset_has(&lease->tried, (int)i)) {
            p->excluded = true;
            p->excluded_why = NULL; /* named in the attempts list */
        } else if (d->not_offered_why) {
            p->excluded = true;
            p->excluded_why = d->not_offered_why;
        } else if (d->unavailable_until_ns > now) {
            p->excluded = true;
            p->excluded_why = d->unavailable_why;
        }
    }
    /* after the devices: their foreign load was refreshed above */
    for (guint i = 0; i < inv->pools->len; i++) {
        const gpb_pool *p = g_ptr_array_index(inv->pools, i);
        const gpb_pool_record *r = gpb_ledger_pool(ctx->ledger, p->ledger_index);

        pp[i].name = p->name;
        pp[i].sessions = gpb_inventory_pool_sessions(inv, ctx->ledger, (int)i);
        pp[i].session_limit = limit_in_force(p->max_sessions, &r->learned, now);
    }
}

/* ---- the event log ------------------------------------------------------ */

/* The start of a lease's line in the event log (events.h): what happened,
 * to which stream (label, pid), where, at which attempt. pid: the caller's
 * if known, else 0 (getpid() is a system call: not paid twice per
 * placement). */
static GString *lease_event(const gpubalance_lease *lease, const char *kind, const gpb_device *d, pid_t pid)
{
    GString *line = gpb_event_begin(kind);

    gpb_kv(line, "label", lease->stream.label);
    gpb_kv_int(line, "pid", pid ? pid : getpid());
    if (d)
        gpb_kv(line, "device", d->id);
    gpb_kv_int(line, "attempt", lease->attempt);
    return line;
}

static void log_placement(gpubalance_lease *lease, const gpb_device *d, const char *reason, bool fallback, pid_t pid)
{
    GString *line = lease_event(lease, fallback ? "fallback" : "placed", d, pid);
    char size[64];

    /* a whole rate as an integer: formatting a double was the dearest
     * part of the line */
    if (lease->stream.fps == (double)(int)lease->stream.fps)
        snprintf(size, sizeof(size), "%dx%d@%d", lease->stream.width, lease->stream.height, (int)lease->stream.fps);
    else
        snprintf(size, sizeof(size), "%dx%d@%g", lease->stream.width, lease->stream.height, lease->stream.fps);
    gpb_kv(line, "codec", gpubalance_codec_name(lease->stream.codec));
    gpb_kv(line, "size", size);
    gpb_kv(line, "reason", reason);
    gpb_event_commit(lease->ctx->events, line, GPUBALANCE_LOG_INFO, d->ledger_index, GPUBALANCE_COUNTER_PLACEMENTS);
    if (fallback)
        gpb_events_count(lease->ctx->events, d->ledger_index, GPUBALANCE_COUNTER_FALLBACKS);
}

/* A request nothing was granted to; the reason is the last error. */
static void log_rejection(gpubalance_lease *lease, int status)
{
    static const struct {
        int status;
        const char *name;
        gpubalance_counter counter;
    } kinds[] = {
        {GPUBALANCE_ERR_FULL, "full", GPUBALANCE_COUNTER_REFUSED_FULL},
        {GPUBALANCE_ERR_TIMEOUT, "timeout", GPUBALANCE_COUNTER_REFUSED_TIMEOUT},
        {GPUBALANCE_ERR_UNSUPPORTED, "unsupported", GPUBALANCE_COUNTER_REFUSED_UNSUPPORTED},
        {GPUBALANCE_ERR_NO_CANDIDATE, "no_candidate", GPUBALANCE_COUNTER_REFUSED_NO_CANDIDATE},
    };
    GString *line = lease_event(lease, "rejected", NULL, 0);
    const char *name = "error";
    int counter = -1;

    for (size_t i = 0; i < G_N_ELEMENTS(kinds); i++) {
        if (kinds[i].status == status) {
            name = kinds[i].name;
            counter = (int)kinds[i].counter;
        }
    }
    gpb_kv(line, "status", name);
    gpb_kv(line, "reason", gpubalance_last_error());
    gpb_event_commit(lease->ctx->events, line, GPUBALANCE_LOG_INFO, GPB_COUNTER_HOST_ROW, counter);
}

static void fill_record(const gpubalance_stream *s, gpb_slot_record *rec)
{
    memset(rec, 0, sizeof(*rec));
    rec->state = GPUBALANCE_LEASE_GRANTED;
    rec->codec = s->codec;
    rec->width = (uint32_t)s->width;
    rec->height = (uint32_t)s->height;
    rec->fps_milli = (uint32_t)lround(s->fps * 1000);
    rec->cost_milli = (uint32_t)lround(gpubalance_stream_cost(s) * 1000);
    rec->pid = (int32_t)gpb_self_pid();
    rec->pid_namespace = gpb_pid_namespace();
    rec->since_unix_ms = gpb_unix_ms();
    g_strlcpy(rec->label, s->label, sizeof(rec->label));
}

static int claim(gpubalance_lease *lease, int device, const char *reason, bool fallback)
{
    gpubalance_context *ctx = lease->ctx;
    gpb_device *d = inv_device(ctx, device);
    gpb_slot_record rec;
    int slot;

    fill_record(&lease->stream, &rec);
    slot = gpb_ledger_claim(ctx->ledger, d->ledger_index, &rec, &lease->fd);
    if (slot < 0)
        return slot;
    lease->slot = slot;
    lease->device = device;
    lease->state = GPUBALANCE_LEASE_GRANTED;
    lease->attempt++;
    g_strlcpy(lease->reason, reason, sizeof(lease->reason));
    gpb_gst_encoder(d, lease->stream.codec, lease->gst_encoder, sizeof(lease->gst_encoder));
    lease->encoder[0] = '\0';
    log_placement(lease, d, reason, fallback, rec.pid);
    return 0;
}

typedef enum { DECIDED, MUST_WAIT } decision;

static int test_budget(gpubalance_context *ctx, const gpb_devset *suspects)
{
    int most = 1;

    for (guint i = 0; i < ctx->inventory->devices->len; i++) {
        int index = inv_device(ctx, (int)i)->ledger_index;

        if (gpb_devset_has(suspects, index))
            most = MAX(most, (int)gpb_ledger_device(ctx->ledger, index)->sessions);
    }
    return CLAMP(VERIFY_LOCK_WALK / most, 1, VERIFY_PER_DECISION);
}

/* Chooses on the cached counts. By the ledger's invariant a cached count
 * is never below the truth, so a device they let take the stream has room
 * for it, and no grant ever needs a lock test. Only a refusal can rest on
 * a stale count (a holder that died without releasing): then leases of the
 * devices that were full are tested against their locks (one short fcntl
 * each), the dead ones forgotten, and the choice made again if any was.
 * A decision tests at most VERIFY_PER_DECISION leases, going on where the
 * previous one stopped, and fewer when the suspects hold many
 * (VERIFY_LOCK_WALK / their leases), so it costs O(devices) however many
 * leases are held; a thorough one (a waiter woken by a lease's end) tests
 * them all.
 * A device whose cap is that small is thus checked in full every time,
 * and a dead holder on a larger one is found within a few refusals or by
 * the next periodic sweep: until then only a refusal rests on it. */
static void choose(gpubalance_lease *lease, const gpb_policy_request *req, uint64_t now, bool thorough,
                   gpb_policy_device *pd, gpb_policy_pool *pp, gpb_policy_result *result)
{
    gpubalance_context *ctx = lease->ctx;
    int n = (int)ctx->inventory->devices->len;
    gpb_devset suspects;

    fill_policy_state(ctx, lease, now, pd, pp);
    gpb_policy_choose(pd, n, pp, req, result);
    if (gpb_devset_empty(&result->full))
        return;
    stale_suspects(ctx, &result->full, &suspects);
    if (gpb_devset_empty(&suspects))
        return;
    if (gpb_ledger_forget_dead(ctx->ledger, &suspects, thorough ? 0 : test_budget(ctx, &suspects)) == 0)
        return;
    fill_policy_state(ctx, lease, now, pd, pp);
    gpb_policy_choose(pd, n, pp, req, result);
}

/* One decision under the ledger lock. Returns DECIDED with *status set
 * (0: the lease is claimed), or MUST_WAIT. */
static decision decide(gpubalance_lease *lease, const placement_options *o, bool thorough, int *status)
{
    gpubalance_context *ctx = lease->ctx;
    /* 256 devices: kept off the stack of the caller's thread */
    g_autofree gpb_policy_device *pd = g_new(gpb_policy_device, ctx->inventory->devices->len);
    gpb_policy_pool pp[GPB_MAX_POOLS];
    gpb_policy_request req = {
        .codec = lease->stream.codec,
        .width = lease->stream.width,
        .height = lease->stream.height,
        .bit_depth = lease->stream.bit_depth,
        .cost = gpubalance_stream_cost(&lease->stream),
        .policy = o->policy,
        .order = o->order,
        .forced = o->forced,
    };
    gpb_policy_result result;
    uint64_t now = gpb_now_ns();
    int software = ctx->inventory->software;

    if (now - gpb_ledger_last_sweep(ctx->ledger) > GPB_SWEEP_INTERVAL_NS)
        gpb_ledger_sweep(ctx->ledger); /* stale counts skew the ties */
    else
        gpb_check_counts(ctx);
    choose(lease, &req, now, thorough, pd, pp, &result);
    if (result.outcome == GPB_CHOSEN) {
        char reason[512];

        if (result.rejected[0])
            snprintf(reason, sizeof(reason), "%s; passed over %s", result.reason, result.rejected);
        else
            snprintf(reason, sizeof(reason), "%s", result.reason);
        *status = claim(lease, result.device, reason, false);
        return DECIDED;
    }
    if (o->when_full == GPUBALANCE_WHEN_FULL_SOFTWARE && !gpb_policy_unsupported_why(&pd[software], &req) &&
        !pd[software].excluded) {
        char reason[512];

        snprintf(reason, sizeof(reason), "when-full=software: %s (%s)", result.reason,
                 result.rejected[0] ? result.rejected : "no candidate");
        *status = claim(lease, software, reason, true);
        return DECIDED;
    }
    if (result.outcome == GPB_ALL_FULL && o->when_full == GPUBALANCE_WHEN_FULL_WAIT &&
        gpb_devset_empty(&lease->tried)) {
        gpb_fail(GPUBALANCE_ERR_FULL, "%s", result.rejected); /* quoted if the wait times out */
        return MUST_WAIT;
    }
    if (!gpb_devset_empty(&lease->tried))
        *status = gpb_fail(GPUBALANCE_ERR_NO_CANDIDATE, "every candidate failed: %s%s%s", lease->attempts->str,
                           result.rejected[0] ? "; not tried: " : "", result.rejected);
    else if (result.outcome == GPB_ALL_FULL)
        *status = gpb_fail(GPUBALANCE_ERR_FULL, "%s (when-full=%s): %s", result.reason,
                           gpubalance_when_full_name(o->when_full), result.rejected);
    else
        *status = gpb_fail(GPUBALANCE_ERR_UNSUPPORTED, "no device can encode %s %dx%d %d-bit: %s",
                           gpubalance_codec_name(req.codec), req.width, req.height, req.bit_depth,
                           result.rejected[0] ? result.rejected : "no device in the order");
    return DECIDED;
}

/* A watch that fires when any lease of the ledger ends: every lease has
 * its own open file description of a lock file in the ledger directory,
 * opened for writing, so its close (by exit or SIGKILL alike, and by
 * release while a waiter is registered) raises IN_CLOSE_WRITE. Armed and
 * registered before one more decision, so no release can slip between. */
static int open_release_watch(const gpubalance_context *ctx)
{
    int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);

    if (fd < 0)
        return -1;
    if (inotify_add_watch(fd, gpb_ledger_dir(ctx->ledger), IN_CLOSE_WRITE) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Blocks until the watch fires, WAIT_RECHECK_MS passes or the deadline.
 * Returns false once the deadline has passed. */
static bool wait_for_release(int watch, uint64_t deadline)
{
    uint64_t now = gpb_boottime_ns();
    char buf[4096];
    struct pollfd pfd = {.fd = watch, .events = POLLIN};
    int timeout_ms;

    if (now >= deadline)
        return false;
    timeout_ms = (int)MIN((deadline - now + 999999) / 1000000, (uint64_t)WAIT_RECHECK_MS);
    if (wait_hook)
        wait_hook(wait_hook_data);
    if (watch >= 0) {
        if (poll(&pfd, 1, timeout_ms) > 0)
            while (read(watch, buf, sizeof(buf)) > 0)
                ; /* drain: one look covers every event so far */
    } else {
        g_usleep((gulong)timeout_ms * 1000); /* no inotify: look again later */
    }
    return true;
}

int gpb_place(gpubalance_lease *lease)
{
    placement_options o;
    uint64_t deadline = 0;
    int watch = -2; /* -2: not opened yet; -1: inotify unavailable */
    int waiter = -1;
    int status = 0;

    if ((status = resolve_options(lease->ctx, &lease->stream, &o)) < 0)
        return status;
    for (;;) {
        decision d;

        refresh_foreign(lease, &o);
        if ((status = gpb_ledger_lock(lease->ctx->ledger)) < 0)
            break;
        d = decide(lease, &o, watch != -2, &status);
        gpb_ledger_unlock(lease->ctx->ledger);
        if (d == DECIDED)
            break;
        if (watch == -2) {
            /* The first time full: say so once (the reason is what
             * decide() found). Arm the watch, then decide once more
             * before sleeping. */
            GString *line = lease_event(lease, "waiting", NULL, 0);

            gpb_kv(line, "reason", gpubalance_last_error());
            gpb_event_commit(lease->ctx->events, line, GPUBALANCE_LOG_INFO, GPB_COUNTER_HOST_ROW,
                             GPUBALANCE_COUNTER_WAITS);
            watch = open_release_watch(lease->ctx);
            if ((status = gpb_ledger_lock(lease->ctx->ledger)) < 0)
                break;
            waiter = gpb_ledger_wait_begin(lease->ctx->ledger);
            gpb_ledger_unlock(lease->ctx->ledger);
            deadline = gpb_boottime_ns() + (uint64_t)(o.wait_timeout * 1e9);
            continue;
        }
        if (!wait_for_release(watch, deadline)) {
            char why[1024];

            g_strlcpy(why, gpubalance_last_error(), sizeof(why)); /* set by decide() */
            status = gpb_fail(GPUBALANCE_ERR_TIMEOUT, "no device freed up within %g s (when-full=wait): %s",
                              o.wait_timeout, why);
            break;
        }
    }
    if (waiter >= 0) {
        if (gpb_ledger_lock(lease->ctx->ledger) == 0) {
            gpb_ledger_wait_end(lease->ctx->ledger, waiter);
            gpb_ledger_unlock(lease->ctx->ledger);
        } else {
            close(waiter); /* the next sweep forgets it */
        }
    }
    if (watch >= 0)
        close(watch);
    if (status < 0)
        log_rejection(lease, status);
    return status;
}

/* ---- the lease API ----------------------------------------------------- */

static gpubalance_lease *lease_new(gpubalance_context *ctx, const gpubalance_stream *stream)
{
    gpubalance_lease *lease = g_new0(gpubalance_lease, 1);

    lease->ctx = gpb_context_ref(ctx);
    gpb_stream_copy(&lease->stream, stream);
    lease->slot = -1;
    lease->fd = -1;
    lease->device = -1;
    lease->attempts = g_string_new(NULL);
    return lease;
}

static void lease_free(gpubalance_lease *lease)
{
    g_free(lease->stream.device);
    g_string_free(lease->attempts, TRUE);
    gpubalance_context_close(lease->ctx);
    g_free(lease);
}

int gpubalance_lease_acquire(gpubalance_context *ctx, const gpubalance_stream *stream, gpubalance_lease **out)
{
    gpubalance_lease *lease;
    int status;

    if (!ctx || !stream || !out)
        return gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "gpubalance_lease_acquire: NULL argument");
    gpb_clear_error();
    lease = lease_new(ctx, stream);
    if ((status = gpb_place(lease)) < 0) {
        lease_free(lease);
        return status;
    }
    *out = lease;
    return 0;
}

static void release_slot(gpubalance_lease *lease)
{
    if (lease->fd < 0)
        return;
    gpb_ledger_end(lease->ctx->ledger, lease->slot, lease->fd, !lease->inheritable);
    lease->fd = -1;
    lease->slot = -1;
}

void gpubalance_lease_release(gpubalance_lease *lease)
{
    if (!lease)
        return;
    release_slot(lease);
    lease_free(lease);
}

static const gpb_device *lease_device(const gpubalance_lease *lease)
{
    return inv_device(lease->ctx, lease->device);
}

const char *gpubalance_lease_device(const gpubalance_lease *lease)
{
    return lease_device(lease)->id;
}

gpubalance_backend gpubalance_lease_backend(const gpubalance_lease *lease)
{
    return lease_device(lease)->backend;
}

int gpubalance_lease_cuda_ordinal(const gpubalance_lease *lease)
{
    return lease_device(lease)->cuda_ordinal;
}

const char *gpubalance_lease_gpu_uuid(const gpubalance_lease *lease)
{
    return lease_device(lease)->gpu_uuid;
}

const char *gpubalance_lease_render_node(const gpubalance_lease *lease)
{
    return lease_device(lease)->render_node;
}

const char *gpubalance_lease_ffmpeg_encoder(const gpubalance_lease *lease)
{
    return gpb_ffmpeg_encoder(lease_device(lease), lease->stream.codec);
}

const char *gpubalance_lease_gst_encoder(const gpubalance_lease *lease)
{
    return lease->gst_encoder;
}

int gpubalance_lease_set_encoder(gpubalance_lease *lease, const char *name)
{
    if (!lease || !name || !*name)
        return gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "gpubalance_lease_set_encoder: no lease or no name");
    g_strlcpy(lease->encoder, name, sizeof(lease->encoder));
    return 0;
}

const char *gpubalance_lease_attempts(const gpubalance_lease *lease)
{
    return lease ? lease->attempts->str : "";
}

static const char *lease_encoder(const gpubalance_lease *lease)
{
    return lease->encoder[0] ? lease->encoder : gpubalance_lease_ffmpeg_encoder(lease);
}

const char *gpubalance_lease_reason(const gpubalance_lease *lease)
{
    return lease->reason;
}

int gpubalance_lease_attempt(const gpubalance_lease *lease)
{
    return lease->attempt;
}

gpubalance_lease_state gpubalance_lease_state_get(const gpubalance_lease *lease)
{
    return lease->state;
}

static int set_state(gpubalance_lease *lease, gpubalance_lease_state state)
{
    int status;

    if (lease->fd < 0)
        return gpb_fail(GPUBALANCE_ERR_BAD_STATE, "the lease was already released");
    if ((status = gpb_ledger_lock(lease->ctx->ledger)) < 0)
        return status;
    if (gpb_ledger_owns(lease->ctx->ledger, lease->slot, lease->fd))
        gpb_ledger_slot(lease->ctx->ledger, lease->slot)->state = state;
    gpb_ledger_unlock(lease->ctx->ledger);
    lease->state = state;
    return 0;
}

int gpubalance_lease_mark_opened(gpubalance_lease *lease)
{
    if (!lease)
        return gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "gpubalance_lease_mark_opened: NULL lease");
    return set_state(lease, GPUBALANCE_LEASE_OPENED);
}

int gpubalance_lease_check_open(gpubalance_lease *lease)
{
    const gpb_device *d;
    gpb_ledger *ledger;
    gpb_device_record *r;
    int status = 0;

    if (!lease || lease->fd < 0)
        return gpb_fail(GPUBALANCE_ERR_BAD_STATE, "gpubalance_lease_check_open: no live lease");
    d = lease_device(lease);
    if (d->backend != GPUBALANCE_BACKEND_SIM)
        return 0;
    ledger = lease->ctx->ledger;
    if ((status = gpb_ledger_lock(ledger)) < 0)
        return status;
    gpb_check_counts(lease->ctx);
    r = gpb_ledger_device(ledger, d->ledger_index);
    if (d->enforce_sessions > 0 && r->driver_sessions >= (uint32_t)d->enforce_sessions) {
        gpb_devset only; /* about to refuse: the count may be stale */

        gpb_devset_clear(&only);
        gpb_devset_add(&only, d->ledger_index);
        gpb_ledger_forget_dead(ledger, &only, 0);
    }
    if (!gpb_ledger_owns(ledger, lease->slot, lease->fd)) {
        status = 0; /* a lease of a replaced ledger: no driver to imitate there */
    } else if (gpb_ledger_slot(ledger, lease->slot)->flags & GPB_SLOT_DRIVER_OPEN) {
        status = 0; /* asked twice */
    } else if (d->enforce_sessions > 0 && r->driver_sessions >= (uint32_t)d->enforce_sessions) {
        status = gpb_fail(GPUBALANCE_ERR_REFUSED,
                          "%s refused a session: %u open, enforce-sessions=%d (as a driver past its cap would)", d->id,
                          r->driver_sessions, d->enforce_sessions);
    } else {
        __atomic_fetch_or(&gpb_ledger_slot(ledger, lease->slot)->flags, GPB_SLOT_DRIVER_OPEN, __ATOMIC_RELEASE);
        r->driver_sessions++;
    }
    gpb_ledger_unlock(ledger);
    return status;
}

/* Records what a capacity refusal teaches. The refusal of an NVENC open
 * is a per-pool fact (the GeForce cap counts every card), so a pooled
 * device teaches its pool; a sim device's enforce-sessions is its own, and
 * an unpooled device teaches itself. A pooled sim without enforce-sessions
 * was refused by someone playing the driver of the whole pool (the fleet
 * benchmark does), so it teaches the pool too. The limit learned is the number of
 * other sessions that were open when this one was refused. */
static void learn_capacity(gpubalance_lease *lease, const char *reason)
{
    gpubalance_context *ctx = lease->ctx;
    const gpb_device *d = lease_device(lease);
    gpb_ledger *ledger = ctx->ledger;
    uint64_t now = gpb_now_ns();
    uint64_t until = now + (uint64_t)(ctx->config->learn_expiry * 1e9);
    gpb_learned *learned;
    int others = 0;
    const char *scope;

    if (d->pool >= 0 && !(d->backend == GPUBALANCE_BACKEND_SIM && d->enforce_sessions > 0)) {
        const gpb_pool *p = g_ptr_array_index(ctx->inventory->pools, d->pool);
        gpb_devset members;

        gpb_devset_clear(&members);
        for (guint i = 0; i < ctx->inventory->devices->len; i++)
            if (inv_device(ctx, (int)i)->pool == d->pool)
                gpb_devset_add(&members, inv_device(ctx, (int)i)->ledger_index);
        gpb_ledger_verify(ledger, &members);
        others = gpb_inventory_pool_sessions(ctx->inventory, ledger, d->pool);
        learned = &gpb_ledger_pool(ledger, p->ledger_index)->learned;
        scope = p->name;
    } else {
        const gpb_device_record *r;
        gpb_devset only;

        gpb_devset_clear(&only);
        gpb_devset_add(&only, d->ledger_index);
        gpb_ledger_verify(ledger, &only);
        r = gpb_ledger_device(ledger, d->ledger_index);
        others = (int)(r->sessions + r->foreign_sessions);
        learned = &gpb_ledger_device(ledger, d->ledger_index)->learned;
        scope = d->id;
    }
    others = MAX(0, others - 1); /* this lease is still counted */
    learned->limit = (uint32_t)others;
    learned->until_ns = until;
    g_strlcpy(learned->reason, reason, sizeof(learned->reason));
    {
        GString *line = lease_event(lease, "learned", d, 0);

        gpb_kv(line, "scope", scope);
        gpb_kv_int(line, "limit", others);
        gpb_kv_int(line, "for_s", (long long)ctx->config->learn_expiry);
        gpb_kv(line, "reason", reason);
        gpb_event_commit(ctx->events, line, GPUBALANCE_LOG_WARNING, d->ledger_index, GPUBALANCE_COUNTER_LIMITS_LEARNED);
    }
}

/* A front end's failed open, counted by kind on the device. */
static void log_open_failure(gpubalance_lease *lease, const gpb_device *d, gpubalance_failure kind, const char *reason)
{
    static const char *const kinds[] = {"capacity", "unavailable", "other"};
    GString *line = lease_event(lease, "refused", d, 0);
    bool known = (unsigned)kind < G_N_ELEMENTS(kinds);

    gpb_kv(line, "kind", known ? kinds[kind] : "unknown");
    gpb_kv(line, "encoder", lease_encoder(lease));
    gpb_kv(line, "reason", reason);
    gpb_event_commit(lease->ctx->events, line, GPUBALANCE_LOG_INFO, d->ledger_index,
                     known ? GPUBALANCE_COUNTER_FAILURES_CAPACITY + (int)kind : -1);
}

int gpubalance_lease_report_failure(gpubalance_lease **leasep, gpubalance_failure kind, const char *reason)
{
    gpubalance_lease *lease;
    gpb_device *d;
    int status;

    if (!leasep || !*leasep || (*leasep)->fd < 0)
        return gpb_fail(GPUBALANCE_ERR_BAD_STATE, "gpubalance_lease_report_failure: no live lease");
    lease = *leasep;
    d = inv_device(lease->ctx, lease->device);
    reason = reason && *reason ? reason : "open failed";
    g_string_append_printf(lease->attempts, "%s%s (%s): %s", lease->attempts->len ? "; " : "", d->id,
                           lease_encoder(lease), reason);
    lease->state = GPUBALANCE_LEASE_FAILED;
    gpb_devset_add(&lease->tried, lease->device);
    log_open_failure(lease, d, kind, reason);
    if (kind == GPUBALANCE_FAILURE_UNAVAILABLE) {
        d->unavailable_until_ns = gpb_now_ns() + (uint64_t)(lease->ctx->config->learn_expiry * 1e9);
        snprintf(d->unavailable_why, sizeof(d->unavailable_why), "unavailable in this process: %s", reason);
    }
    if (gpb_ledger_lock(lease->ctx->ledger) == 0) {
        if (kind == GPUBALANCE_FAILURE_CAPACITY)
            learn_capacity(lease, reason);
        gpb_ledger_release(lease->ctx->ledger, lease->slot, lease->fd, !lease->inheritable);
        gpb_ledger_unlock(lease->ctx->ledger);
    } else {
        close(lease->fd); /* the lease ends with its lock; placing again reports the ledger's state */
    }
    lease->fd = -1;
    lease->slot = -1;
    if ((status = gpb_place(lease)) < 0) {
        lease_free(lease);
        *leasep = NULL;
    }
    return status;
}

int gpubalance_lease_keep_across_exec(gpubalance_lease *lease)
{
    int status;

    if (!lease || lease->fd < 0)
        return gpb_fail(GPUBALANCE_ERR_BAD_STATE, "gpubalance_lease_keep_across_exec: no live lease");
    if ((status = set_state(lease, GPUBALANCE_LEASE_OPENED)) < 0)
        return status;
    lease->inheritable = true; /* never reused by this process after this */
    if (fcntl(lease->fd, F_SETFD, 0) < 0)
        return gpb_fail(GPUBALANCE_ERR_LEDGER_IO, "cannot keep the lease across exec: %s", g_strerror(errno));
    return lease->fd;
}
