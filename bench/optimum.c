/* optimum.c - the offline best placement of a small workload, exactly.
 *
 * "Best" knows the whole workload in advance and every driver's cap, so
 * it never makes an open that would be refused. Among those placements it
 * takes the lexicographic minimum of
 *   1. streams that run over a device's throughput budget,
 *   2. streams on software,
 *   3. peak imbalance (bench/README.md, fleet_imbalance()).
 * Depth-first over the events in replay order; every term only grows
 * along a branch, so a branch is cut as soon as it cannot beat the best
 * complete placement found so far. Devices that are alike and both idle
 * lead to the same subtree, so only the first of them is tried. */
#include <string.h>

#include "fleet.h"

typedef struct {
    const fleet_host *host;
    const fleet_workload *workload;
    fleet_event *events;
    int n_events;
    int *assignment; /* in progress */
    int *best;       /* best complete, or NULL */
    fleet_world best_world;
    long nodes;
    long max_nodes;
} search;

/* Is a strictly better than b? */
static bool better(const fleet_world *a, const fleet_world *b)
{
    if (a->over_budget != b->over_budget)
        return a->over_budget < b->over_budget;
    if (a->on_software != b->on_software)
        return a->on_software < b->on_software;
    return a->imbalance_peak < b->imbalance_peak - FLEET_EPSILON;
}

static bool can_still_win(const search *s, const fleet_world *w)
{
    return !s->best || better(w, &s->best_world);
}

static bool alike_and_idle(const fleet_world *w, int a, int b)
{
    const fleet_device *x = &w->host->devices[a], *y = &w->host->devices[b];

    return w->sessions[a] == 0 && w->sessions[b] == 0 && x->kind == y->kind && x->pooled == y->pooled &&
           x->codecs == y->codecs && x->capacity == y->capacity;
}

/* Candidate devices for the stream, most promising first: within budget,
 * then hardware, then the lower utilisation after adding it. */
static int candidates(const fleet_world *w, const fleet_stream *st, int *out)
{
    const fleet_host *h = w->host;
    double key[FLEET_MAX_DEVICES];
    int n = 0;

    for (int d = 0; d < h->n_devices; d++) {
        bool duplicate = false;

        if (!fleet_can_open(w, d, st))
            continue;
        for (int k = 0; k < n && !duplicate; k++)
            duplicate = alike_and_idle(w, out[k], d);
        if (duplicate)
            continue;
        key[n] = (fleet_fits(w, d, st) ? 0 : 100) + (h->devices[d].kind == KIND_SOFTWARE ? 10 : 0) +
                 (w->load[d] + st->cost) / MAX(h->devices[d].capacity, FLEET_EPSILON) / 1e3;
        out[n++] = d;
    }
    for (int i = 1; i < n; i++) /* insertion sort: a handful of devices */
        for (int j = i; j > 0 && key[j] < key[j - 1]; j--) {
            double k = key[j];
            int d = out[j];

            key[j] = key[j - 1];
            out[j] = out[j - 1];
            key[j - 1] = k;
            out[j - 1] = d;
        }
    return n;
}

static void dfs(search *s, fleet_world *w, int k)
{
    const fleet_event *e;
    const fleet_stream *st;
    fleet_world saved;

    if (s->nodes++ > s->max_nodes)
        return;
    if (k == s->n_events) {
        if (can_still_win(s, w)) {
            if (!s->best)
                s->best = g_new(int, (size_t)s->workload->n);
            memcpy(s->best, s->assignment, sizeof(int) * (size_t)s->workload->n);
            s->best_world = *w;
        }
        return;
    }
    e = &s->events[k];
    st = &s->workload->streams[e->stream];
    saved = *w;
    if (e->departure) {
        fleet_depart(w, s->assignment[e->stream], st);
        w->imbalance_peak = MAX(w->imbalance_peak, fleet_imbalance(s->host, w->load));
        if (can_still_win(s, w))
            dfs(s, w, k + 1);
        *w = saved;
        return;
    }
    {
        int order[FLEET_MAX_DEVICES];
        int n = candidates(w, st, order);

        for (int c = 0; c < n; c++) {
            fleet_arrive(w, order[c], st);
            w->imbalance_peak = MAX(w->imbalance_peak, fleet_imbalance(s->host, w->load));
            s->assignment[e->stream] = order[c];
            if (can_still_win(s, w))
                dfs(s, w, k + 1);
            *w = saved;
        }
    }
}

void fleet_optimum_search(const fleet_host *host, const fleet_workload *workload, long max_nodes, fleet_optimum *out)
{
    search s = {
        .host = host,
        .workload = workload,
        .events = fleet_events(workload),
        .n_events = 2 * workload->n,
        .assignment = g_new0(int, (size_t)workload->n),
        .max_nodes = max_nodes,
    };
    fleet_world w = {.host = host, .workload = workload};

    dfs(&s, &w, 0);
    out->exact = s.nodes <= max_nodes;
    out->nodes = s.nodes;
    out->assignment = s.best;
    g_free(s.events);
    g_free(s.assignment);
}

static int place_assigned(fleet_placer *p, fleet_world *w, int i)
{
    const int *assignment = p->data;

    return fleet_try_open(w, assignment[i], &w->workload->streams[i]) ? assignment[i] : -1;
}

fleet_placer *fleet_assignment_placer_new(const char *name, const int *assignment)
{
    fleet_placer *p = g_new0(fleet_placer, 1);

    p->name = name;
    p->place = place_assigned;
    p->data = (void *)assignment; /* borrowed */
    return p;
}
