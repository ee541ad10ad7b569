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

double gpb_policy_utilisation(const gpb_policy_device *d, double cost)
{
    double by_sessions = 0;
    double by_budget = 0;

    if (d->session_limit > 0)
        by_sessions = (double)(d->sessions + d->foreign_sessions + 1) / d->session_limit;
    else if (d->session_limit == 0)
        by_sessions = G_MAXDOUBLE;
    if (d->budget > 0)
        by_budget = (d->load + d->foreign_sessions + cost) / d->budget;
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
    if (d->budget > 0 && d->load + d->foreign_sessions + cost > d->budget + UTIL_EPSILON) {
        snprintf(buf, size, "load %.2f + %.2f over budget %.2f", d->load + d->foreign_sessions, cost, d->budget);
        return buf;
    }
    return NULL;
}

static void note_rejected(gpb_policy_result *result, const char *id, const char *why)
{
    size_t used = strlen(result->rejected);

    snprintf(result->rejected + used, sizeof(result->rejected) - used, "%s%s: %s", used ? "; " : "", id, why);
}

/* Is a better than b for the balanced policy? */
static bool balanced_better(const gpb_policy_device *a, double util_a, const gpb_policy_device *b, double util_b)
{
    if (util_a < util_b - UTIL_EPSILON)
        return true;
    if (util_a > util_b + UTIL_EPSILON)
        return false;
    return a->sessions + a->foreign_sessions < b->sessions + b->foreign_sessions;
}

/* The best device of one backend group, or -1. Ties keep the lower index
 * because the scan runs in index order and only strictly better wins. */
static int choose_in_group(const gpb_policy_device *devices, int n, const gpb_policy_pool *pools,
                           const gpb_policy_request *r, gpubalance_backend group, bool *any_supported,
                           gpb_policy_result *result)
{
    int best = -1;
    double best_util = 0;

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
            note_rejected(result, d->id, d->excluded_why ? d->excluded_why : "excluded");
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
            best_util = util;
            break;
        }
        if (best < 0 || balanced_better(d, util, &devices[best], best_util)) {
            best = i;
            best_util = util;
        }
    }
    if (best >= 0)
        snprintf(result->reason, sizeof(result->reason), "%s: %s device with room (utilisation %.2f after this stream)",
                 gpubalance_policy_name(r->policy), r->policy == GPUBALANCE_POLICY_FILL ? "first" : "least loaded",
                 best_util);
    return best;
}

void gpb_policy_choose(const gpb_policy_device *devices, int n, const gpb_policy_pool *pools,
                       const gpb_policy_request *r, gpb_policy_result *result)
{
    bool any_supported = false;

    memset(result, 0, sizeof(*result));
    result->device = -1;
    for (int g = 0; g < r->order.n; g++) {
        int chosen = choose_in_group(devices, n, pools, r, r->order.backends[g], &any_supported, result);

        if (chosen >= 0) {
            result->outcome = GPB_CHOSEN;
            result->device = chosen;
            return;
        }
    }
    result->outcome = any_supported ? GPB_ALL_FULL : GPB_UNSUPPORTED;
    snprintf(result->reason, sizeof(result->reason), "%s",
             any_supported ? "every suitable device is full" : "no device in the order supports this stream");
}
