/* policy.h - the placement decision, as a pure function.
 *
 * The caller gathers each device's state (from the ledger, the config and
 * the probes) into gpb_policy_device records; gpb_policy_choose() ranks
 * them. Nothing here touches files or clocks, so every rule is tested
 * directly (tests/test_policy.c).
 */
#ifndef GPB_POLICY_H
#define GPB_POLICY_H

#include <stdbool.h>

#include "config.h"
#include "devset.h"
#include "gpubalance.h"

#define GPB_NO_LIMIT (-1)

typedef struct {
    const char *id;
    gpubalance_backend backend;
    gpubalance_backend order_backend; /* where it stands in `order` */
    unsigned codecs;
    int max_width;
    int max_height;
    bool ten_bit;
    int sessions;         /* ours */
    int foreign_sessions; /* not ours */
    /* The cost of the foreign streams as the driver's live utilisation
     * measures it (cost.h), when foreign_load_known; otherwise each
     * foreign session counts as cost 1.0, its size being unknown. */
    double foreign_load;
    bool foreign_load_known;
    int session_limit;        /* in force (configured or learned); GPB_NO_LIMIT */
    double load;              /* ours, cost units */
    double budget;            /* 0 = none */
    int pool;                 /* index into the pools array, -1 = none */
    bool excluded;            /* tried already for this stream, or unavailable */
    const char *excluded_why; /* NULL: not worth naming (tried already) */
} gpb_policy_device;

typedef struct {
    const char *name;
    int sessions;      /* ours and foreign on all members */
    int session_limit; /* GPB_NO_LIMIT = none */
} gpb_policy_pool;

typedef struct {
    gpubalance_codec codec;
    int width;
    int height;
    int bit_depth;
    double cost;
    gpubalance_policy policy;
    gpb_order order;
    int forced; /* device index, -1 = any */
} gpb_policy_request;

typedef enum {
    GPB_CHOSEN,      /* device holds the choice */
    GPB_ALL_FULL,    /* devices exist that could take it, all at a limit */
    GPB_UNSUPPORTED, /* no device in order can encode it at all */
} gpb_policy_outcome;

typedef struct {
    gpb_policy_outcome outcome;
    int device;
    char reason[256];    /* why this device, or why none */
    char rejected[1024]; /* "id: why; id: why" for every device passed over */
    gpb_devset full;     /* devices passed over because a count was at a
                          * limit (sessions, pool, budget): the ones whose
                          * counts the caller may verify and ask again */
} gpb_policy_result;

/* Chooses among devices[0..n). Utilisation after adding the stream is the
 * larger of (sessions + foreign + 1) / limit and (load + foreign load +
 * cost) / budget (see gpb_policy_foreign_load()). */
void gpb_policy_choose(const gpb_policy_device *devices, int n, const gpb_policy_pool *pools,
                       const gpb_policy_request *request, gpb_policy_result *result);

/* Why the device cannot take the request at all (codec, size, depth), or
 * NULL if it can. */
const char *gpb_policy_unsupported_why(const gpb_policy_device *device, const gpb_policy_request *request);

/* The cost units of the device's foreign streams: measured when known,
 * else one per foreign session. */
double gpb_policy_foreign_load(const gpb_policy_device *device);

/* Projected utilisation of the device after adding the stream. */
double gpb_policy_utilisation(const gpb_policy_device *device, double cost);

#endif
