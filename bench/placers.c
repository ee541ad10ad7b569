/* placers.c - what people place streams with today, simulated over the
 * same workload and the same modelled drivers as gpubalance. Each opens
 * its choice through fleet_try_open(), so a driver cap refuses it exactly
 * as it would refuse gpubalance, and falls back to software after a
 * refusal (the best any of them does). */
#include <string.h>
#include <time.h>

#include "fleet.h"

/* Tdarr reads utilisation from nvidia-smi when a job starts; what the
 * encoder took on since the last reading does not show yet. */
#define TDARR_POLL_SECONDS 10.0
/* HandBrake's queue runs a fixed number of NVENC jobs per card. */
#define HANDBRAKE_JOBS_PER_CARD 3

const char *const fleet_baseline_names[] = {"first-gpu", "round-robin", "tdarr", "handbrake", "random", NULL};

typedef struct {
    int (*pick)(fleet_placer *p, fleet_world *w, const fleet_stream *s);
    const fleet_host *host;
    GRand *rand;
    unsigned next;    /* round-robin */
    double polled_at; /* tdarr */
    double polled[FLEET_MAX_DEVICES];
} baseline;

static void baseline_free(void *data);

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static bool is_nvidia(const fleet_host *h, int d)
{
    return h->devices[d].kind == KIND_NVENC;
}

static bool is_hardware(const fleet_host *h, int d)
{
    return h->devices[d].kind != KIND_SOFTWARE;
}

/* Jellyfin, Unmanic, FFmpeg's default: the first GPU. */
static int pick_first_gpu(fleet_placer *p, fleet_world *w, const fleet_stream *s)
{
    for (int d = 0; d < w->host->n_devices; d++)
        if (is_nvidia(w->host, d))
            return d;
    return -1;
}

/* A script that deals streams to the host's hardware encoders in turn. */
static int pick_round_robin(fleet_placer *p, fleet_world *w, const fleet_stream *s)
{
    baseline *b = p->data;
    int n = w->host->n_devices - 1; /* every device but software */

    return (int)(b->next++ % (unsigned)n);
}

/* Tdarr: the least utilised NVIDIA GPU by the last nvidia-smi reading. A
 * GPU without NVENC reads 0% encoder use, so it looks the least busy. */
static int pick_tdarr(fleet_placer *p, fleet_world *w, const fleet_stream *s)
{
    baseline *b = p->data;
    int best = -1;

    if (w->now - b->polled_at >= TDARR_POLL_SECONDS || b->polled_at < 0) {
        for (int d = 0; d < w->host->n_devices; d++)
            b->polled[d] = w->host->devices[d].capacity > 0 ? w->load[d] / w->host->devices[d].capacity : 0;
        b->polled_at = w->now;
    }
    for (int d = 0; d < w->host->n_devices; d++)
        if (is_nvidia(w->host, d) && (best < 0 || b->polled[d] < b->polled[best]))
            best = d;
    return best;
}

/* HandBrake: up to a fixed number of jobs per card, cards in order. */
static int pick_handbrake(fleet_placer *p, fleet_world *w, const fleet_stream *s)
{
    for (int d = 0; d < w->host->n_devices; d++)
        if (is_nvidia(w->host, d) && w->sessions[d] < HANDBRAKE_JOBS_PER_CARD)
            return d;
    return -1;
}

static int pick_random(fleet_placer *p, fleet_world *w, const fleet_stream *s)
{
    baseline *b = p->data;
    int d;

    do
        d = g_rand_int_range(b->rand, 0, w->host->n_devices);
    while (!is_hardware(w->host, d));
    return d;
}

static int place_baseline(fleet_placer *p, fleet_world *w, int i)
{
    baseline *b = p->data;
    const fleet_stream *s = &w->workload->streams[i];
    double t0 = now_ns();
    int d = b->pick(p, w, s);

    w->decision_ns += now_ns() - t0;
    /* the open: a refusal sends the stream to software */
    if (d >= 0 && fleet_try_open(w, d, s))
        return d;
    return fleet_software(w->host);
}

fleet_placer *fleet_baseline_new(const char *name, const fleet_host *host, guint32 seed)
{
    static const struct {
        const char *name;
        int (*pick)(fleet_placer *, fleet_world *, const fleet_stream *);
    } picks[] = {
        {"first-gpu", pick_first_gpu}, {"round-robin", pick_round_robin}, {"tdarr", pick_tdarr},
        {"handbrake", pick_handbrake}, {"random", pick_random},
    };
    fleet_placer *p;
    baseline *b;

    for (size_t i = 0; i < G_N_ELEMENTS(picks); i++) {
        if (strcmp(picks[i].name, name) != 0)
            continue;
        p = g_new0(fleet_placer, 1);
        b = g_new0(baseline, 1);
        p->name = picks[i].name;
        p->place = place_baseline;
        p->free_data = baseline_free;
        p->data = b;
        b->pick = picks[i].pick;
        b->host = host;
        b->rand = g_rand_new_with_seed(seed);
        b->polled_at = -1;
        return p;
    }
    return NULL;
}

static void baseline_free(void *data)
{
    baseline *b = data;

    g_rand_free(b->rand);
    g_free(b);
}

void fleet_placer_free(fleet_placer *p)
{
    if (!p)
        return;
    if (p->free_data)
        p->free_data(p->data);
    g_free(p);
}
