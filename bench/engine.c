/* engine.c - replays a workload through one placer against a modelled
 * host, in replayed (virtual) time, and counts what happened. */
#include <stdlib.h>
#include <string.h>

#include "fleet.h"

int fleet_software(const fleet_host *host)
{
    return host->n_devices - 1;
}

bool fleet_can_open(const fleet_world *w, int d, const fleet_stream *s)
{
    const fleet_device *dev = &w->host->devices[d];

    if (!dev->has_encoder || !(dev->codecs & (1u << s->codec)))
        return false;
    /* GeForce: NV_ENC_ERR_OUT_OF_MEMORY past the per-system cap */
    return !(dev->pooled && w->host->pool_cap > 0 && w->pool_sessions >= w->host->pool_cap);
}

bool fleet_fits(const fleet_world *w, int d, const fleet_stream *s)
{
    return fleet_can_open(w, d, s) && w->load[d] + s->cost <= w->host->devices[d].capacity + FLEET_EPSILON;
}

bool fleet_try_open(fleet_world *w, int d, const fleet_stream *s)
{
    if (fleet_can_open(w, d, s))
        return true;
    w->refused++;
    if (w->refusals)
        g_array_append_val(w->refusals, w->now);
    return false;
}

/* Within each group of like devices (the NVIDIA GPUs that encode, the
 * VA-API nodes), the spread of utilisation, scaled to the group's mean
 * capacity so that it reads in cost units: for equal devices it is the
 * load of the busiest minus the load of the idlest. The largest group
 * spread counts. */
double fleet_imbalance(const fleet_host *host, const double *load)
{
    double worst = 0;

    for (int kind = KIND_NVENC; kind <= KIND_VAAPI; kind++) {
        double lo = G_MAXDOUBLE, hi = -G_MAXDOUBLE, capacity = 0;
        int n = 0;

        for (int d = 0; d < host->n_devices; d++) {
            const fleet_device *dev = &host->devices[d];
            double u;

            if ((int)dev->kind != kind || !dev->has_encoder || dev->capacity <= 0)
                continue;
            u = load[d] / dev->capacity;
            lo = MIN(lo, u);
            hi = MAX(hi, u);
            capacity += dev->capacity;
            n++;
        }
        if (n >= 2)
            worst = MAX(worst, (hi - lo) * capacity / n);
    }
    return worst;
}

typedef fleet_event event;

static gint compare_doubles(gconstpointer a, gconstpointer b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static int compare_events(const void *a, const void *b)
{
    const event *x = a, *y = b;

    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    if (x->departure != y->departure)
        return y->departure - x->departure;
    return x->stream - y->stream;
}

fleet_event *fleet_events(const fleet_workload *workload)
{
    int n = workload->n;
    event *events = g_new(event, 2 * (size_t)n);

    for (int i = 0; i < n; i++) {
        events[2 * i] = (event){workload->streams[i].start, 0, i};
        events[2 * i + 1] = (event){workload->streams[i].start + workload->streams[i].duration, 1, i};
    }
    qsort(events, 2 * (size_t)n, sizeof(event), compare_events);
    return events;
}

static void sample(fleet_world *w, double t)
{
    fleet_sample s = {.t = t};

    for (int d = 0; d < w->host->n_devices; d++)
        s.utilisation[d] = w->host->devices[d].capacity > 0 ? w->load[d] / w->host->devices[d].capacity : 0;
    g_array_append_val(w->samples, s);
}

void fleet_arrive(fleet_world *w, int d, const fleet_stream *s)
{
    const fleet_host *h = w->host;

    if (h->devices[d].kind == KIND_SOFTWARE) {
        for (int e = 0; e < h->n_devices; e++)
            /* room by more than the rounding of the core's request cost */
            if (h->devices[e].kind != KIND_SOFTWARE && fleet_can_open(w, e, s) &&
                w->load[e] + s->cost <= h->devices[e].capacity - 0.001) {
                w->software_while_hardware_fits++;
                break;
            }
        w->on_software++;
    } else {
        w->on_hardware++;
    }
    w->load[d] += s->cost;
    w->sessions[d]++;
    if (h->devices[d].pooled)
        w->pool_sessions++;
    if (w->load[d] > h->devices[d].capacity + FLEET_EPSILON)
        w->over_budget++;
}

void fleet_depart(fleet_world *w, int d, const fleet_stream *s)
{
    w->load[d] -= s->cost;
    if (w->load[d] < FLEET_EPSILON)
        w->load[d] = 0; /* no drift below zero from sums of doubles */
    w->sessions[d]--;
    if (w->host->devices[d].pooled)
        w->pool_sessions--;
}

/* How much placing s on d raises the imbalance above the best choice
 * among the devices of d's kind that the driver would open and that have
 * room (d itself included): what the choice within a backend cost. The
 * order of backends is a policy setting, not a balancing decision. */
static double excess_imbalance(fleet_world *w, int d, const fleet_stream *s)
{
    const fleet_host *h = w->host;
    double chosen, best;

    if (h->devices[d].kind == KIND_SOFTWARE)
        return 0;
    w->load[d] += s->cost;
    chosen = best = fleet_imbalance(h, w->load);
    w->load[d] -= s->cost;
    for (int e = 0; e < h->n_devices; e++) {
        if (e == d || h->devices[e].kind != h->devices[d].kind || !fleet_fits(w, e, s))
            continue;
        w->load[e] += s->cost;
        best = MIN(best, fleet_imbalance(h, w->load));
        w->load[e] -= s->cost;
    }
    return chosen - best;
}

static double median(GArray *values)
{
    if (!values->len)
        return 0;
    g_array_sort(values, compare_doubles);
    return g_array_index(values, double, values->len / 2);
}

double fleet_decision_us(fleet_world *w)
{
    return median(w->decisions) / 1e3;
}

bool fleet_replay(fleet_placer *p, const fleet_host *host, const fleet_workload *workload, bool timeline,
                  fleet_world *w, char **error)
{
    int n = workload->n;
    event *events = fleet_events(workload);
    int *placed = g_new(int, (size_t)n);
    double last_t, first_t;
    double imbalance = 0;
    bool ok = true;

    memset(w, 0, sizeof(*w));
    w->host = host;
    w->workload = workload;
    w->decisions = g_array_new(FALSE, TRUE, sizeof(double));
    if (timeline) {
        w->samples = g_array_new(FALSE, TRUE, sizeof(fleet_sample));
        w->refusals = g_array_new(FALSE, TRUE, sizeof(double));
    }
    first_t = last_t = events[0].t;
    if (timeline)
        sample(w, first_t);
    for (int k = 0; k < 2 * n && ok; k++) {
        const event *e = &events[k];
        const fleet_stream *s = &workload->streams[e->stream];

        w->imbalance_area += imbalance * (e->t - last_t);
        last_t = w->now = e->t;
        if (e->departure) {
            fleet_depart(w, placed[e->stream], s);
            if (p->depart)
                p->depart(p, w, e->stream, placed[e->stream]);
        } else {
            int d;

            w->decision_ns = 0;
            d = p->place(p, w, e->stream);
            g_array_append_val(w->decisions, w->decision_ns);

            if (d < 0 || d >= host->n_devices || !fleet_can_open(w, d, s)) {
                *error = g_strdup_printf("placer %s put stream %d on a device that cannot open it (%d)", p->name,
                                         e->stream, d);
                ok = false;
                break;
            }
            placed[e->stream] = d;
            w->excess_peak = MAX(w->excess_peak, excess_imbalance(w, d, s));
            fleet_arrive(w, d, s);
        }
        imbalance = fleet_imbalance(host, w->load);
        w->imbalance_peak = MAX(w->imbalance_peak, imbalance);
        if (timeline)
            sample(w, e->t);
    }
    w->span = last_t - first_t;
    g_free(events);
    g_free(placed);
    return ok;
}

void fleet_world_clear(fleet_world *w)
{
    if (w->samples)
        g_array_unref(w->samples);
    if (w->refusals)
        g_array_unref(w->refusals);
    if (w->decisions)
        g_array_unref(w->decisions);
    w->samples = w->refusals = w->decisions = NULL;
}
