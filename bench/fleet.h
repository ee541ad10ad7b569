/* fleet.h - the fleet benchmark's model: hosts, workloads, the replay
 * engine and the placers (see fleet.c for the program, bench/README.md
 * for what it measures). */
#ifndef FLEET_H
#define FLEET_H

#include <glib.h>
#include <stdbool.h>

#include "gpubalance.h"

#define FLEET_MAX_DEVICES 8
#define FLEET_EPSILON 1e-9

typedef enum {
    KIND_NVENC, /* an NVIDIA GPU (with or without an encoder) */
    KIND_VAAPI,
    KIND_SOFTWARE,
} device_kind;

/* One device of a modelled host: what its driver really does. */
typedef struct {
    const char *name;  /* "gpu0", becomes sim:gpu0 in gpubalance's config */
    const char *model; /* "GeForce RTX 3060" */
    device_kind kind;
    bool has_encoder; /* false: the driver refuses every open (H100) */
    bool pooled;      /* counts against the host's per-system session cap */
    unsigned codecs;  /* bit per gpubalance_codec */
    double capacity;  /* cost units it encodes in real time */
} fleet_device;

typedef struct {
    const char *key; /* "a", "b", "c" */
    const char *title;
    fleet_device devices[FLEET_MAX_DEVICES]; /* software last */
    int n_devices;
    int pool_cap;            /* per-system NVENC session cap of the pooled GPUs, 0 = none */
    double mean_concurrency; /* streams the generator keeps running on average */
} fleet_host;

typedef struct {
    double start;    /* seconds of replayed time */
    double duration; /* seconds */
    gpubalance_codec codec;
    int width;
    int height;
    double fps;
    double cost; /* width x height x fps / (1920 x 1080 x 30) */
} fleet_stream;

typedef struct {
    fleet_stream *streams;
    int n;
} fleet_workload;

/* ---- hosts and workloads (workload.c) ---- */
const fleet_host *fleet_host_find(const char *key);
extern const fleet_host *const fleet_hosts[];
void fleet_generate(const fleet_host *host, guint32 seed, int n, double load, fleet_workload *out);
/* Reads the trace format documented in bench/README.md. Returns false
 * with *error set to "FILE:LINE: what was wrong". */
bool fleet_read_trace(const char *path, fleet_workload *out, char **error);
/* The same from text (name is used in messages); for the fuzz harness. */
bool fleet_parse_trace(const char *text, size_t length, const char *name, fleet_workload *out, char **error);
bool fleet_write_trace(const char *path, const fleet_workload *w, char **error);
void fleet_workload_clear(fleet_workload *w);

/* ---- the replay engine (engine.c) ---- */

/* One point of a placer's timeline, for the plot. */
typedef struct {
    double t;
    double utilisation[FLEET_MAX_DEVICES]; /* load / capacity */
} fleet_sample;

/* The modelled host's state during one replay, and what it counted. */
typedef struct {
    const fleet_host *host;
    const fleet_workload *workload;
    double now;
    double load[FLEET_MAX_DEVICES];
    int sessions[FLEET_MAX_DEVICES];
    int pool_sessions;
    /* metrics */
    int refused;
    int on_hardware;
    int on_software;
    int over_budget;
    int software_while_hardware_fits; /* a stream sent to software although a
                                       * hardware device had room for it */
    double imbalance_peak;
    double imbalance_area; /* integral over replayed time */
    double span;           /* replayed time from first to last event */
    double excess_peak;    /* the most a placement raised the imbalance above
                            * the best choice among devices of its kind */
    double decision_ns;    /* of the placement in progress */
    GArray *decisions;     /* double: ns per placement */
    /* timeline for the plot, NULL when not wanted */
    GArray *samples;  /* fleet_sample */
    GArray *refusals; /* double: replayed time of each refused open */
} fleet_world;

/* The modelled driver: would it open a session of s on device d now? */
bool fleet_can_open(const fleet_world *w, int d, const fleet_stream *s);
/* Would s fit on d within its capacity? */
bool fleet_fits(const fleet_world *w, int d, const fleet_stream *s);
/* A placer's open attempt: true if the modelled driver opens it; a refusal
 * is counted. */
bool fleet_try_open(fleet_world *w, int d, const fleet_stream *s);
int fleet_software(const fleet_host *host);
/* Imbalance in cost units now (see bench/README.md). */
double fleet_imbalance(const fleet_host *host, const double *load);

typedef struct {
    double t;
    int departure; /* 1: departure, 0: arrival; departures first on ties */
    int stream;
} fleet_event;

/* The workload's 2n events in replay order (newly allocated). */
fleet_event *fleet_events(const fleet_workload *workload);
/* Accounts stream s starting on / leaving device d (metrics included). */
void fleet_arrive(fleet_world *w, int d, const fleet_stream *s);
void fleet_depart(fleet_world *w, int d, const fleet_stream *s);

typedef struct fleet_placer fleet_placer;
struct fleet_placer {
    const char *name;
    /* Chooses and opens a device for stream i (through fleet_try_open) and
     * returns it; the software device always opens. */
    int (*place)(fleet_placer *p, fleet_world *w, int i);
    /* Stream i, placed on device d, ends. NULL: nothing to do. */
    void (*depart)(fleet_placer *p, fleet_world *w, int i, int d);
    void (*free_data)(void *data);
    void *data;
};

/* Replays the workload through the placer. Returns false (with *error)
 * when the placer failed outright. */
bool fleet_replay(fleet_placer *p, const fleet_host *host, const fleet_workload *workload, bool timeline,
                  fleet_world *out, char **error);
void fleet_world_clear(fleet_world *w);
/* The median decision time of the replay, in microseconds. */
double fleet_decision_us(fleet_world *w);

/* ---- placers (placers.c) ---- */
fleet_placer *fleet_baseline_new(const char *name, const fleet_host *host, guint32 seed);
extern const char *const fleet_baseline_names[];
void fleet_placer_free(fleet_placer *p);

/* gpubalance itself (gpubalance_placer.c): sim devices declared in a
 * generated config in a private GPUBALANCE_DIR, `threads` programs each
 * with its own context. caps_known: the config declares the per-system
 * cap; otherwise gpubalance has to learn it from the first refusal. */
fleet_placer *fleet_gpubalance_new(const fleet_host *host, const fleet_workload *workload, int threads, bool caps_known,
                                   char **error);

/* ---- the offline optimum (optimum.c) ---- */
typedef struct {
    bool exact;      /* the search finished */
    long nodes;      /* search nodes visited */
    int *assignment; /* device per stream */
} fleet_optimum;

/* Lexicographic minimum of (over_budget, on_software, imbalance_peak)
 * over every placement that the modelled drivers accept (so no refusal),
 * found by depth-first branch and bound; gives up after max_nodes. */
void fleet_optimum_search(const fleet_host *host, const fleet_workload *workload, long max_nodes, fleet_optimum *out);
/* A placer that replays a fixed assignment. */
fleet_placer *fleet_assignment_placer_new(const char *name, const int *assignment);

#endif
