/* snapshot.c - a consistent copy of devices, pools and live leases. */
#define _GNU_SOURCE
#include <string.h>

#include "internal.h"
#include "util.h"

struct gpubalance_snapshot {
    GArray *devices; /* gpubalance_device_info */
    GArray *pools;   /* gpubalance_pool_info */
    GArray *leases;  /* gpubalance_lease_info */
    GStringChunk *strings;
    GArray *counters; /* GPUBALANCE_N_COUNTERS uint64 per device, then the host's */
};

static const char *keep(gpubalance_snapshot *snap, const char *text)
{
    return text ? g_string_chunk_insert_const(snap->strings, text) : NULL;
}

/* Strings in the ledger are outside input: bounded copy. */
static const char *keep_bounded(gpubalance_snapshot *snap, const char *text, size_t size)
{
    return g_string_chunk_insert_len(snap->strings, text, (gssize)strnlen(text, size));
}

static void copy_devices(gpubalance_context *ctx, gpubalance_snapshot *snap, uint64_t now)
{
    gpb_inventory *inv = ctx->inventory;

    for (guint i = 0; i < inv->devices->len; i++) {
        const gpb_device *d = g_ptr_array_index(inv->devices, i);
        const gpb_device_record *r = gpb_ledger_device(ctx->ledger, d->ledger_index);
        gpubalance_device_info info = {
            .id = keep(snap, d->id),
            .name = keep(snap, d->name),
            .backend = d->backend,
            .order_backend = gpb_order_backend(d->backend, d->imitates),
            .codecs = gpb_device_codecs(d, ~0u),
            .sessions = (int)r->sessions,
            .foreign_sessions = (int)r->foreign_sessions,
            .max_sessions = d->max_sessions,
            .learned_limit = gpb_learned_limit(&r->learned, now),
            .enforce_sessions = d->enforce_sessions,
            .load = r->load_milli / 1000.0,
            .budget = d->budget,
            .pool = d->pool >= 0 ? keep(snap, ((gpb_pool *)g_ptr_array_index(inv->pools, d->pool))->name) : NULL,
            .cuda_ordinal = d->cuda_ordinal,
            .gpu_uuid = keep(snap, d->gpu_uuid),
            .render_node = keep(snap, d->render_node),
            .declared = d->declared,
            .not_offered_why = keep(snap, d->not_offered_why),
            .pci_bus_id = keep(snap, d->pci_bus_id),
            .driver = keep(snap, d->driver),
        };

        g_array_append_val(snap->devices, info);
    }
    for (guint i = 0; i < inv->pools->len; i++) {
        const gpb_pool *p = g_ptr_array_index(inv->pools, i);
        gpubalance_pool_info info = {
            .name = keep(snap, p->name),
            .sessions = gpb_inventory_pool_sessions(inv, ctx->ledger, (int)i),
            .max_sessions = p->max_sessions,
            .learned_limit = gpb_learned_limit(&gpb_ledger_pool(ctx->ledger, p->ledger_index)->learned, now),
        };

        g_array_append_val(snap->pools, info);
    }
}

/* Leases name devices by ledger key (UUID for NVIDIA); show the id this
 * process knows the device by, when it knows it. */
static const char *lease_device_id(gpubalance_context *ctx, gpubalance_snapshot *snap, int ledger_index)
{
    for (guint i = 0; i < ctx->inventory->devices->len; i++) {
        const gpb_device *d = g_ptr_array_index(ctx->inventory->devices, i);

        if (d->ledger_index == ledger_index)
            return keep(snap, d->id);
    }
    return keep_bounded(snap, gpb_ledger_device(ctx->ledger, ledger_index)->id, GPB_ID_SIZE);
}

/* Each device's row (its ledger index), then the host-wide sum of every
 * row: devices other processes know count too. */
static void copy_counters(gpubalance_context *ctx, gpubalance_snapshot *snap)
{
    uint64_t host[GPUBALANCE_N_COUNTERS] = {0};

    for (guint i = 0; i < ctx->inventory->devices->len; i++) {
        const gpb_device *d = g_ptr_array_index(ctx->inventory->devices, i);

        for (int c = 0; c < GPUBALANCE_N_COUNTERS; c++) {
            uint64_t value = gpb_events_counter(ctx->events, d->ledger_index, (gpubalance_counter)c);

            g_array_append_val(snap->counters, value);
        }
    }
    for (int row = 0; row < GPB_COUNTER_ROWS; row++)
        for (int c = 0; c < GPUBALANCE_N_COUNTERS; c++)
            host[c] += gpb_events_counter(ctx->events, row, (gpubalance_counter)c);
    g_array_append_vals(snap->counters, host, GPUBALANCE_N_COUNTERS);
}

static void copy_leases(gpubalance_context *ctx, gpubalance_snapshot *snap)
{
    const char *ids[GPB_MAX_DEVICES] = {NULL}; /* each device's id, kept once */

    for (int slot = 0; slot < GPB_SLOTS; slot++) {
        int device = gpb_ledger_slot_device(ctx->ledger, slot);
        const gpb_slot_record *r;
        gpubalance_lease_info info;

        if (device < 0)
            continue;
        if (!ids[device])
            ids[device] = lease_device_id(ctx, snap, device);
        r = gpb_ledger_slot(ctx->ledger, slot);
        info = (gpubalance_lease_info){
            .device = ids[device],
            .pid = r->pid,
            .pid_namespace = r->pid_namespace,
            .codec = r->codec < GPUBALANCE_N_CODECS ? (gpubalance_codec)r->codec : GPUBALANCE_CODEC_H264,
            .width = (int)r->width,
            .height = (int)r->height,
            .fps = r->fps_milli / 1000.0,
            .cost = r->cost_milli / 1000.0,
            .state = r->state <= GPUBALANCE_LEASE_FAILED ? (gpubalance_lease_state)r->state : GPUBALANCE_LEASE_GRANTED,
            .label = keep_bounded(snap, r->label, sizeof(r->label)),
            .since_unix_ms = r->since_unix_ms,
            .slot = slot,
        };
        g_array_append_val(snap->leases, info);
    }
}

/* What is copied is the truth about live leases: a lease whose holder
 * died is forgotten first. A full sweep (every count rebuilt from the
 * locks: 2n+1 lock tests for n leases) when none ran in the last
 * GPB_SWEEP_INTERVAL_NS host-wide; otherwise each lease's own lock is
 * tested (n tests, a third of `status --json`'s cost with 1000 leases)
 * and damaged counts, which their CRCs give away, are rebuilt. Under the
 * header lock. */
static void settle(gpubalance_context *ctx)
{
    gpb_devset every;

    if (gpb_now_ns() - gpb_ledger_last_sweep(ctx->ledger) > GPB_SWEEP_INTERVAL_NS) {
        gpb_ledger_sweep(ctx->ledger);
        return;
    }
    gpb_devset_fill(&every);
    gpb_ledger_forget_dead(ctx->ledger, &every, 0);
    gpb_check_counts(ctx);
}

int gpubalance_snapshot_take(gpubalance_context *ctx, gpubalance_snapshot **out)
{
    gpubalance_snapshot *snap;
    int status;

    if (!ctx || !out)
        return gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "gpubalance_snapshot_take: NULL argument");
    snap = g_new0(gpubalance_snapshot, 1);
    snap->devices = g_array_new(FALSE, TRUE, sizeof(gpubalance_device_info));
    snap->pools = g_array_new(FALSE, TRUE, sizeof(gpubalance_pool_info));
    snap->leases = g_array_new(FALSE, TRUE, sizeof(gpubalance_lease_info));
    snap->strings = g_string_chunk_new(1024);
    snap->counters = g_array_new(FALSE, TRUE, sizeof(uint64_t));
    if ((status = gpb_ledger_lock(ctx->ledger)) < 0) {
        gpubalance_snapshot_free(snap);
        return status;
    }
    settle(ctx);
    copy_devices(ctx, snap, gpb_now_ns());
    copy_leases(ctx, snap);
    copy_counters(ctx, snap);
    gpb_ledger_unlock(ctx->ledger);
    *out = snap;
    return 0;
}

void gpubalance_snapshot_free(gpubalance_snapshot *snap)
{
    if (!snap)
        return;
    g_array_unref(snap->devices);
    g_array_unref(snap->pools);
    g_array_unref(snap->leases);
    g_string_chunk_free(snap->strings);
    g_array_unref(snap->counters);
    g_free(snap);
}

size_t gpubalance_snapshot_n_devices(const gpubalance_snapshot *snap)
{
    return snap->devices->len;
}

const gpubalance_device_info *gpubalance_snapshot_device(const gpubalance_snapshot *snap, size_t index)
{
    return index < snap->devices->len ? &g_array_index(snap->devices, gpubalance_device_info, index) : NULL;
}

size_t gpubalance_snapshot_n_pools(const gpubalance_snapshot *snap)
{
    return snap->pools->len;
}

const gpubalance_pool_info *gpubalance_snapshot_pool(const gpubalance_snapshot *snap, size_t index)
{
    return index < snap->pools->len ? &g_array_index(snap->pools, gpubalance_pool_info, index) : NULL;
}

size_t gpubalance_snapshot_n_leases(const gpubalance_snapshot *snap)
{
    return snap->leases->len;
}

const gpubalance_lease_info *gpubalance_snapshot_lease(const gpubalance_snapshot *snap, size_t index)
{
    return index < snap->leases->len ? &g_array_index(snap->leases, gpubalance_lease_info, index) : NULL;
}

uint64_t gpubalance_snapshot_counter(const gpubalance_snapshot *snap, size_t device, gpubalance_counter counter)
{
    size_t row = device == GPUBALANCE_HOST ? snap->devices->len : device;

    if ((unsigned)counter >= GPUBALANCE_N_COUNTERS || row > snap->devices->len)
        return 0;
    return g_array_index(snap->counters, uint64_t, row * GPUBALANCE_N_COUNTERS + (size_t)counter);
}
