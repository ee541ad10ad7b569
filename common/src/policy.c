/* policy.c - ranks devices for one stream. See policy.h. */
#include "policy.h"

#include <glib.h>
#include <stdio.h>
#include <string.h>

#define UTIL_EPSILON 1e-9

const char *gpb_policy_unsupported_why(const gpb_policy_device *d, const gpb_policy_request *r)
{
    if (!(d->codecs & (1u << r->codec)))
        return "codec not supported";
    if (r->width > d->max_width || r->height > d->max_height)
        return "resolution above its maximum";
    if (r->bit_depth > 8 && !d->ten_bit)
        return "no 10-bit support";
    return NULL;
}

double gpb_policy_foreign_load(const gpb_policy_device *d)
{
    return d->foreign_load_known ? d->foreign_load : d->foreign_sessions;
}

double gpb_policy_utilisation(const gpb_policy_device *d, double cost)
{
    double by_sessions = 0;
    double by_budget = 0;

    if (d->session_limit > 0)
        by_sessions = (double)(d->sessions + d->foreign_sessions + 1) / d->session_limit;
    else if (d->session_limit == 0)
        by_sessions = G_MAXDOUBLE;
    if (d->budget > 0)
        by_budget = (d->load + gpb_policy_foreign_load(d) + cost) / d->budget;
    return MAX(by_sessions, by_budget);
}

/* Why the device is full for this stream, or NULL if it has room. */
static const char *full_why(const gpb_policy_device *d, const gpb_policy_pool *pools, double cost, char *buf,
                            size_t size)
{
    if (d->session_limit != GPB_NO_LIMIT && d->sessions + d->foreign_sessions >= d->session_limit) {
        snprintf(buf, size, "%d of %d sessions in use", d->sessions + d->foreign_sessions, d->session_limit);
        return buf;
    }
    if (d->pool >= 0) {
        const gpb_policy_pool *p = &pools[d->pool];

        if (p->session_limit != GPB_NO_LIMIT && p->sessions >= p->session_limit) {
            snprintf(buf, size, "pool %s has %d of %d sessions in use", p->name, p->sessions, p->session_limit);
            return buf;
        }
    }
    if (d->budget > 0 && d->load + gpb_policy_foreign_load(d) + cost > d->budget + UTIL_EPSILON) {
        snprintf(buf, size, "load %.2f + %.2f over budget %.2f", d->load + gpb_policy_foreign_load(d), cost, d->budget);
        return buf;
    }
    return NULL;
}

static void note_rejected(gpb_policy_result *result, const char *id, const char *why)
{
    size_t used = strlen(result->rejected);

    snprintf(result->rejected + used, sizeof(result->rejected) - used, "%s%s: %s", used ? "; " : "", id, why);
}

/* The device's utilisation now, before any new stream. */
static double current_utilisation(const gpb_policy_device *d)
{
    double by_sessions = 0, by_budget = 0;

    if (d->session_limit > 0)
        by_sessions = (double)(d->sessions + d->foreign_sessions) / d->session_limit;
    if (d->budget > 0)
        by_budget = (d->load + gpb_policy_foreign_load(d)) / d->budget;
    return MAX(by_sessions, by_budget);
}

/* The two highest and two lowest utilisations now among the devices of a
 * group that can encode the request, so that the spread after placing on
 * any one of them is known in constant time: the decision stays linear in
 * the number of devices. */
typedef struct {
    double hi[2], lo[2];
    int hi_at, lo_at; /* index of hi[0] and lo[0] */
} group_extremes;

static bool counts_for_spread(const gpb_policy_device *d, const gpb_policy_request *r, gpubalance_backend group)
{
    return d->order_backend == group && !gpb_policy_unsupported_why(d, r) && !(d->excluded && d->sessions == 0);
}

static void find_extremes(const gpb_policy_device *devices, int n, const gpb_policy_request *r,
                          gpubalance_backend group, group_extremes *e)
{
    *e = (group_extremes){{-G_MAXDOUBLE, -G_MAXDOUBLE}, {G_MAXDOUBLE, G_MAXDOUBLE}, -1, -1};
    for (int i = 0; i < n; i++) {
        double u;

        if (!counts_for_spread(&devices[i], r, group))
            continue;
        u = current_utilisation(&devices[i]);
        if (u > e->hi[0]) {
            e->hi[1] = e->hi[0];
            e->hi[0] = u;
            e->hi_at = i;
        } else if (u > e->hi[1]) {
            e->hi[1] = u;
        }
        if (u < e->lo[0]) {
            e->lo[1] = e->lo[0];
            e->lo[0] = u;
            e->lo_at = i;
        } else if (u < e->lo[1]) {
            e->lo[1] = u;
        }
    }
}

/* The spread (highest minus lowest utilisation) of the group if the
 * stream went to `chosen`, whose utilisation would then be util_chosen. */
static double spread_after(const group_extremes *e, int chosen, double util_chosen)
{
    double hi = MAX(util_chosen, chosen == e->hi_at ? e->hi[1] : e->hi[0]);
    double lo = MIN(util_chosen, chosen == e->lo_at ? e->lo[1] : e->lo[0]);

    return hi - lo;
}

/* One candidate of the balanced policy. */
typedef struct {
    const gpb_policy_device *device;
    double util;   /* its utilisation after the stream */
    double spread; /* the group's spread after the stream */
} candidate;

/* Is a better than b for the balanced policy? Balanced keeps the devices
 * of a group close: the smaller spread of utilisation after the stream
 * wins. On devices of one size that is always the least utilised one; on
 * devices of different sizes the least utilised after adding is not
 * always the choice that keeps them closest (a 4-unit stream takes an
 * idle 16-unit card further from its 32-unit neighbour than the
 * neighbour would go). Then the lower utilisation after the stream, then
 * fewer sessions; the caller keeps the lower index on a full tie. */
static bool balanced_better(const candidate *a, const candidate *b)
{
    if (a->spread < b->spread - UTIL_EPSILON)
        return true;
    if (a->spread > b->spread + UTIL_EPSILON)
        return false;
    if (a->util < b->util - UTIL_EPSILON)
        return true;
    if (a->util > b->util + UTIL_EPSILON)
        return false;
    return a->device->sessions + a->device->foreign_sessions < b->device->sessions + b->device->foreign_sessions;
}

/* The best device of one backend group, or -1. Ties keep the lower index
 * because the scan runs in index order and only strictly better wins. */
static int choose_in_group(const gpb_policy_device *devices, int n, const gpb_policy_pool *pools,
                           const gpb_policy_request *r, gpubalance_backend group, bool *any_supported,
                           gpb_policy_result *result)
{
    int best = -1;
    candidate best_c = {0};
    group_extremes extremes = {{0, 0}, {0, 0}, -1, -1};

    if (r->policy != GPUBALANCE_POLICY_FILL)
        find_extremes(devices, n, r, group, &extremes);
    for (int i = 0; i < n; i++) {
        const gpb_policy_device *d = &devices[i];
        char buf[160];
        const char *why;
        double util;

        if (d->order_backend != group || (r->forced >= 0 && i != r->forced))
            continue;
        if ((why = gpb_policy_unsupported_why(d, r))) {
            note_rejected(result, d->id, why);
            continue;
        }
        *any_supported = true;
        if (d->excluded) {
            /* a device tried for this stream is already in the attempts list */
            if (d->excluded_why)
                note_rejected(result, d->id, d->excluded_why);
            continue;
        }
        if ((why = full_why(d, pools, r->cost, buf, sizeof(buf)))) {
            gpb_devset_add(&result->full, i);
            note_rejected(result, d->id, why);
            continue;
        }
        util = gpb_policy_utilisation(d, r->cost);
        if (r->policy == GPUBALANCE_POLICY_FILL) {
            best = i;
            best_c.util = util;
            break;
        }
        {
            candidate c = {d, util, spread_after(&extremes, i, util)};

            if (best < 0 || balanced_better(&c, &best_c)) {
                best = i;
                best_c = c;
            }
        }
    }
    if (best >= 0 && r->policy == GPUBALANCE_POLICY_FILL)
        snprintf(result->reason, sizeof(result->reason),
                 "fill: first device with room (utilisation %.2f after this stream)", best_c.util);
    else if (best >= 0)
        /* what balanced_better() compared first: the spread, then the utilisation */
        snprintf(result->reason, sizeof(result->reason),
                 "balanced: device with room leaving the smallest spread of utilisation in its group (spread %.2f, "
                 "its utilisation %.2f after this stream)",
                 best_c.spread, best_c.util);
    return best;
}

/* Should a small stream leave the session-capped pool of `chosen` to a
 * later hardware backend? A GeForce pool has few sessions and much
 * throughput (8 sessions, 32 units or more): a 480p stream in one of its
 * last sessions can push a later 4K stream to software. A stream smaller
 * than the pool's remaining budget per remaining session does not use its
 * session fairly, so it goes to a later hardware backend with room when
 * there is one (bench/fleet: host a puts a sixth more streams on
 * hardware this way). Without budgets or a known cap there is nothing to
 * weigh, and nothing changes. */
static bool wastes_a_capped_session(const gpb_policy_device *devices, int n, const gpb_policy_pool *pools, int chosen,
                                    double cost)
{
    const gpb_policy_pool *p;
    double remaining_budget = 0;
    int remaining;

    if (devices[chosen].pool < 0)
        return false;
    p = &pools[devices[chosen].pool];
    if (p->session_limit == GPB_NO_LIMIT)
        return false;
    remaining = p->session_limit - p->sessions;
    for (int i = 0; i < n; i++) {
        if (devices[i].pool != devices[chosen].pool)
            continue;
        if (devices[i].budget <= 0)
            return false; /* without budgets there is no throughput to save */
        remaining_budget += MAX(0.0, devices[i].budget - devices[i].load - gpb_policy_foreign_load(&devices[i]));
    }
    return remaining > 0 && cost < remaining_budget / remaining;
}

/* A later hardware backend of the order that has room, or -1. */
static int later_hardware(const gpb_policy_device *devices, int n, const gpb_policy_pool *pools,
                          const gpb_policy_request *r, int after_group)
{
    for (int g = after_group + 1; g < r->order.n; g++) {
        gpb_policy_result scratch = {0};
        bool supported = false;
        int alt;

        if (r->order.backends[g] == GPUBALANCE_BACKEND_SOFTWARE)
            continue;
        alt = choose_in_group(devices, n, pools, r, r->order.backends[g], &supported, &scratch);
        if (alt >= 0)
            return alt;
    }
    return -1;
}

void gpb_policy_choose(const gpb_policy_device *devices, int n, const gpb_policy_pool *pools,
                       const gpb_policy_request *r, gpb_policy_result *result)
{
    bool any_supported = false;

    memset(result, 0, sizeof(*result));
    result->device = -1;
    for (int g = 0; g < r->order.n; g++) {
        int chosen = choose_in_group(devices, n, pools, r, r->order.backends[g], &any_supported, result);
        int alt;

        if (chosen < 0)
            continue;
        if (r->policy == GPUBALANCE_POLICY_BALANCED && r->forced < 0 &&
            wastes_a_capped_session(devices, n, pools, chosen, r->cost) &&
            (alt = later_hardware(devices, n, pools, r, g)) >= 0) {
            snprintf(result->reason, sizeof(result->reason),
                     "balanced: %s has room, but this %.2f-unit stream would take one of the last sessions of pool "
                     "%s, kept for bigger streams; %s has room (utilisation %.2f after this stream)",
                     devices[chosen].id, r->cost, pools[devices[chosen].pool].name, devices[alt].id,
                     gpb_policy_utilisation(&devices[alt], r->cost));
            chosen = alt;
        }
        result->outcome = GPB_CHOSEN;
        result->device = chosen;
        return;
    }
    result->outcome = any_supported ? GPB_ALL_FULL : GPB_UNSUPPORTED;
    snprintf(result->reason, sizeof(result->reason), "%s",
             any_supported ? "every suitable device is full" : "no device in the order supports this stream");
}
