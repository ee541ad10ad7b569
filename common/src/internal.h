/* internal.h - the structures behind the public opaque types. */
#ifndef GPB_INTERNAL_H
#define GPB_INTERNAL_H

#include <glib.h>

#include "config.h"
#include "events.h"
#include "gpubalance.h"
#include "inventory.h"
#include "ledger.h"

struct gpubalance_context {
    gint refcount;
    gpb_config *config;
    gpb_ledger *ledger;
    gpb_inventory *inventory;
    gpb_events *events; /* NULL when its file cannot be used */
};

struct gpubalance_stream {
    gpubalance_codec codec;
    int width;
    int height;
    double fps; /* 0 = unknown */
    int bit_depth;
    char label[GPB_LABEL_SIZE];
    bool has_policy;
    gpubalance_policy policy;
    bool has_order;
    gpb_order order;
    bool has_when_full;
    gpubalance_when_full when_full;
    double wait_timeout; /* < 0: the context's */
    char *device;        /* forced id, NULL = any */
};

struct gpubalance_lease {
    gpubalance_context *ctx;
    gpubalance_stream stream; /* a copy; .device owned */
    int device;               /* inventory index */
    int slot;
    int fd;
    bool inheritable; /* FD_CLOEXEC cleared: close it, never reuse it */
    gpubalance_lease_state state;
    int attempt;
    gpb_devset tried;  /* inventory indices already failed */
    GString *attempts; /* "id (encoder): why; ..." */
    char reason[512];
    char gst_encoder[48];
    char encoder[48]; /* what the front end opens, "" until it says */
};

/* The encoders a lease on the device uses for codec (encoders.c). */
const char *gpb_ffmpeg_encoder(const gpb_device *device, gpubalance_codec codec);
void gpb_gst_encoder(const gpb_device *device, gpubalance_codec codec, char *buf, size_t size);

gpubalance_context *gpb_context_ref(gpubalance_context *ctx);

/* How often, host-wide, a full sweep rebuilds every count from the locks
 * (gpb_ledger_sweep): the counts of devices without limits only break
 * ties, and a snapshot only shows them, so between sweeps a decision
 * checks the counts' CRCs and a snapshot tests each lease's lock. */
#define GPB_SWEEP_INTERVAL_NS (1000 * 1000 * 1000ull)

/* Grants trust the cached counts: makes sure no stray write has lowered
 * one of this context's devices (gpb_ledger_check_counts). Under the
 * header lock. */
void gpb_check_counts(gpubalance_context *ctx);
void gpb_stream_copy(gpubalance_stream *dst, const gpubalance_stream *src);

/* Takes a lease for lease->stream, skipping lease->tried. Fills the lease
 * (device, slot, fd, reason) or returns a negative status. */
int gpb_place(gpubalance_lease *lease);

/* Called when when-full=wait is about to block (tests use it to release
 * a lease at exactly that point, without sleeping). */
typedef void (*gpb_wait_hook)(void *user_data);
void gpb_set_wait_hook(gpb_wait_hook hook, void *user_data);

#endif
