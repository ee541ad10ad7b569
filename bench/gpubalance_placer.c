/* gpubalance_placer.c - the real core and ledger as a placer.
 *
 * The modelled host becomes sim devices declared in a generated config in
 * a private GPUBALANCE_DIR; `threads` worker threads stand for as many
 * programs, each with its own context, and stream i belongs to worker
 * i % threads, which acquires its lease, plays the front end against the
 * modelled driver (a refused open is reported as a capacity failure, as
 * FFmpeg's "out of memory (10)" would be) and releases it at departure.
 * The replay hands one event at a time to the owning worker and waits, so
 * the result does not depend on scheduling. The handoff uses pthread
 * locks, which ThreadSanitizer sees (GLib's futex-based ones it does not). */
#include <glib/gstdio.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "fleet.h"
#include "util.h"

#define MAX_WORKERS 64

typedef enum { JOB_ACQUIRE, JOB_RELEASE, JOB_QUIT } job_kind;

typedef struct {
    job_kind kind;
    int stream;
    fleet_world *world;
    char *error;   /* set by the worker on failure */
    bool finished; /* under placer_state.lock */
} job;

typedef struct placer_state placer_state;

typedef struct {
    placer_state *state;
    GThread *thread;
    job *pending; /* under placer_state.lock */
    gpubalance_context *ctx;
} worker;

struct placer_state {
    const fleet_host *host;
    char *dir;
    char *config_path;
    worker workers[MAX_WORKERS];
    int n_workers;
    pthread_mutex_t lock;
    pthread_cond_t changed;    /* a job was handed over or finished */
    gpubalance_lease **leases; /* per stream */
};

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static const char *codec_list(unsigned codecs)
{
    static const char *const lists[] = {"",    "h264",     "hevc",     "h264,hevc",
                                        "av1", "h264,av1", "hevc,av1", "h264,hevc,av1"};

    return lists[codecs & 7u];
}

/* The config gpubalance reads: the modelled devices as sim devices. A GPU
 * without NVENC is left out: on real hardware the open probe finds that
 * out once per boot and never offers it (see probe_nvidia.c). */
static char *config_text(const fleet_host *h, bool caps_known)
{
    GString *c = g_string_new("[general]\ndiscover=false\npolicy=balanced\norder=nvenc,vaapi,software\n"
                              "when-full=software\nlearn-expiry=86400\n");
    bool pool = false;

    for (int d = 0; d < h->n_devices; d++) {
        const fleet_device *dev = &h->devices[d];

        if (dev->kind == KIND_SOFTWARE) {
            g_string_append_printf(c, "[software]\nbudget=%g\n", dev->capacity);
            continue;
        }
        if (!dev->has_encoder)
            continue;
        g_string_append_printf(c, "[device:%s]\nbackend=sim\nimitates=%s\nname=%s (modelled)\ncodecs=%s\nbudget=%g\n",
                               dev->name, dev->kind == KIND_NVENC ? "nvenc" : "vaapi", dev->model,
                               codec_list(dev->codecs), dev->capacity);
        if (dev->pooled) {
            g_string_append(c, "pool=geforce\n");
            pool = true;
        }
    }
    if (pool) {
        g_string_append(c, "[pool:geforce]\n");
        if (caps_known && h->pool_cap > 0)
            g_string_append_printf(c, "max-sessions=%d\n", h->pool_cap);
    }
    return g_string_free(c, FALSE);
}

static int device_index(const fleet_host *h, const char *id)
{
    if (strcmp(id, "software") == 0)
        return fleet_software(h);
    for (int d = 0; d < h->n_devices; d++)
        if (g_str_has_prefix(id, "sim:") && strcmp(id + 4, h->devices[d].name) == 0)
            return d;
    return -1;
}

/* The front end's loop: acquire, open, report a refusal, open the next. */
static void acquire(worker *wk, job *j)
{
    placer_state *st = wk->state;
    const fleet_stream *s = &j->world->workload->streams[j->stream];
    gpubalance_stream *stream;
    gpubalance_lease *lease = NULL;
    char label[32];
    double t0 = now_ns();
    int rc, d;

    gpubalance_stream_new(&stream);
    gpubalance_stream_set_codec(stream, s->codec);
    gpubalance_stream_set_size(stream, s->width, s->height);
    gpubalance_stream_set_fps(stream, s->fps);
    snprintf(label, sizeof(label), "fleet stream %d", j->stream);
    gpubalance_stream_set_label(stream, label);
    rc = gpubalance_lease_acquire(wk->ctx, stream, &lease);
    j->world->decision_ns += now_ns() - t0;
    while (rc == 0) {
        d = device_index(st->host, gpubalance_lease_device(lease));
        if (d < 0) {
            j->error = g_strdup_printf("gpubalance chose an unknown device %s", gpubalance_lease_device(lease));
            break;
        }
        if (fleet_try_open(j->world, d, s)) {
            gpubalance_lease_mark_opened(lease);
            st->leases[j->stream] = lease;
            break;
        }
        t0 = now_ns();
        rc = gpubalance_lease_report_failure(&lease, GPUBALANCE_FAILURE_CAPACITY,
                                             "OpenEncodeSessionEx failed: out of memory (10)");
        j->world->decision_ns += now_ns() - t0;
    }
    if (rc < 0)
        j->error = g_strdup_printf("gpubalance: %s", gpubalance_last_error());
    if (j->error && lease)
        gpubalance_lease_release(lease);
    gpubalance_stream_free(stream);
}

static gpointer worker_main(gpointer data)
{
    worker *wk = data;

    placer_state *st = wk->state;

    for (;;) {
        job *j;
        job_kind kind;

        pthread_mutex_lock(&st->lock);
        while (!wk->pending)
            pthread_cond_wait(&st->changed, &st->lock);
        j = wk->pending;
        wk->pending = NULL;
        pthread_mutex_unlock(&st->lock);
        kind = j->kind;

        if (kind == JOB_ACQUIRE) {
            acquire(wk, j);
        } else if (kind == JOB_RELEASE) {
            gpubalance_lease_release(wk->state->leases[j->stream]);
            wk->state->leases[j->stream] = NULL;
        }
        pthread_mutex_lock(&st->lock);
        j->finished = true;
        pthread_cond_broadcast(&st->changed);
        pthread_mutex_unlock(&st->lock);
        if (kind == JOB_QUIT)
            return NULL;
    }
}

/* Runs one job on the stream's worker and waits for it. */
static char *run_job(placer_state *st, job_kind kind, int stream, fleet_world *w)
{
    job j = {.kind = kind, .stream = stream, .world = w};
    worker *wk = &st->workers[stream % st->n_workers];

    pthread_mutex_lock(&st->lock);
    wk->pending = &j;
    pthread_cond_broadcast(&st->changed);
    while (!j.finished)
        pthread_cond_wait(&st->changed, &st->lock);
    pthread_mutex_unlock(&st->lock);
    return j.error;
}

static int place(fleet_placer *p, fleet_world *w, int i)
{
    placer_state *st = p->data;
    char *error = run_job(st, JOB_ACQUIRE, i, w);

    if (error) {
        g_printerr("fleet: %s\n", error);
        g_free(error);
        return -1;
    }
    return device_index(st->host, gpubalance_lease_device(st->leases[i]));
}

static void depart(fleet_placer *p, fleet_world *w, int i, int d)
{
    run_job(p->data, JOB_RELEASE, i, w);
}

static void state_free(void *data)
{
    placer_state *st = data;

    for (int k = 0; k < st->n_workers; k++) {
        worker *wk = &st->workers[k];

        if (wk->thread) {
            run_job(st, JOB_QUIT, k, NULL);
            g_thread_join(wk->thread);
        }
        gpubalance_context_close(wk->ctx);
    }
    pthread_cond_destroy(&st->changed);
    pthread_mutex_destroy(&st->lock);
    g_free(st->leases);
    if (st->dir)
        gpb_remove_tree(st->dir);
    g_free(st->dir);
    g_free(st->config_path);
    g_free(st);
}

static void quiet(gpubalance_log_level level, const char *message, void *user_data)
{
    /* learning warnings are expected here; the counts tell the story */
}

fleet_placer *fleet_gpubalance_new(const fleet_host *host, const fleet_workload *workload, int threads, bool caps_known,
                                   char **error)
{
    fleet_placer *p = g_new0(fleet_placer, 1);
    placer_state *st = g_new0(placer_state, 1);
    char *text = config_text(host, caps_known);
    char *ledger_dir;

    p->name = "gpubalance";
    p->place = place;
    p->depart = depart;
    p->free_data = state_free;
    p->data = st;
    st->host = host;
    st->n_workers = CLAMP(threads, 1, MAX_WORKERS);
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->changed, NULL);
    st->leases = g_new0(gpubalance_lease *, (size_t)workload->n);
    st->dir = g_dir_make_tmp("gpubalance-fleet-XXXXXX", NULL);
    if (!st->dir) {
        *error = g_strdup("cannot create a private directory for the ledger");
        goto fail;
    }
    st->config_path = g_build_filename(st->dir, "fleet.conf", NULL);
    ledger_dir = g_build_filename(st->dir, "ledger", NULL);
    g_setenv("GPUBALANCE_DIR", ledger_dir, TRUE); /* private: never the user's ledger */
    g_free(ledger_dir);
    if (!g_file_set_contents(st->config_path, text, -1, NULL)) {
        *error = g_strdup_printf("cannot write %s", st->config_path);
        goto fail;
    }
    gpubalance_set_log_handler(quiet, NULL);
    for (int k = 0; k < st->n_workers; k++) {
        worker *wk = &st->workers[k];

        wk->state = st;
        if (gpubalance_context_open(st->config_path, &wk->ctx) < 0) {
            *error = g_strdup_printf("gpubalance: %s", gpubalance_last_error());
            goto fail;
        }
        wk->thread = g_thread_new("fleet-worker", worker_main, wk);
    }
    g_free(text);
    return p;
fail:
    g_free(text);
    fleet_placer_free(p);
    return NULL;
}
