/* inventory.h - the devices one context can place streams on, and the
 * interface through which discovery probes supply them.
 *
 * A probe is a table of callbacks (gpb_probe). discover() adds what it
 * finds with gpb_inventory_add() and, when it finds nothing, says why in a
 * note ("nvenc: no NVIDIA devices: libnvidia-ml.so.1 not found"), which
 * `gpubalance probe` prints. driver_sessions() reports the sessions the
 * driver sees on a device; the core subtracts the leases it granted (state
 * opened) and stores the difference in the ledger, shared by every
 * process, at most every GPB_FOREIGN_REFRESH_NS per device.
 */
#ifndef GPB_INVENTORY_H
#define GPB_INVENTORY_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "gpubalance.h"
#include "ledger.h"

#define GPB_FOREIGN_REFRESH_NS (250 * 1000 * 1000ull)

typedef struct gpb_probe gpb_probe;
typedef struct gpb_inventory gpb_inventory;

typedef struct {
    char *id;         /* shown to users: nvenc:0, vaapi:renderD128 */
    char *ledger_key; /* keys the ledger record: the id, except for NVIDIA
                       * GPUs, keyed by UUID because a CUDA ordinal depends
                       * on each process's CUDA_VISIBLE_DEVICES */
    char *name;
    gpubalance_backend backend;
    gpubalance_backend imitates; /* sim: its place in order */
    unsigned codecs;             /* read through gpb_device_codecs() */
    unsigned codecs_if_library;  /* software: offered if its library loads */
    int max_width;
    int max_height;
    bool ten_bit;
    int max_sessions;     /* 0 = none */
    int enforce_sessions; /* sim: refuse past this; 0 = never */
    double budget;        /* 0 = none */
    int pool;             /* index into gpb_inventory pools, -1 = none */
    int cuda_ordinal;     /* nvenc, else -1 */
    char *gpu_uuid;       /* nvenc, else NULL */
    char *render_node;    /* vaapi, else NULL */
    char *pci_bus_id;     /* nvenc: as NVML prints it, else NULL */
    char *driver;         /* driver name and version, NULL if unknown */
    bool declared;        /* from the config file */
    /* Present but never offered (a GPU without NVENC, a render node
     * without an encode entrypoint): why, else NULL. */
    char *not_offered_why;
    const gpb_probe *probe;
    void *probe_data; /* freed with probe->free_data */
    int ledger_index;
    /* process-local: GPUBALANCE_FAILURE_UNAVAILABLE marks */
    uint64_t unavailable_until_ns;
    char unavailable_why[GPB_REASON_SIZE];
} gpb_device;

typedef struct {
    char *name;
    int max_sessions; /* 0 = none */
    int ledger_index;
} gpb_pool;

struct gpb_probe {
    const char *name;
    /* Adds devices; returns 0, or a negative status for a hard error.
     * Finding no hardware is not an error: it is a note. */
    int (*discover)(gpb_inventory *inventory, const gpb_config *config, gpb_ledger *ledger, bool refresh);
    /* Sessions the driver reports on the device (ours included), or -1
     * when unknown. Called with the ledger locked. */
    int (*driver_sessions)(gpb_device *device);
    /* How busy the device's encoder is, 0..1 of its time, as the driver
     * measures it (NVML encoder utilisation, DRM fdinfo engine busy time),
     * or -1 when unknown. Called right after driver_sessions(). NULL: never
     * known. */
    double (*driver_utilisation)(gpb_device *device);
    void (*free_data)(void *data);
};

struct gpb_inventory {
    GPtrArray *devices; /* gpb_device*, at most GPB_MAX_DEVICES */
    GPtrArray *pools;   /* gpb_pool* */
    GPtrArray *notes;   /* char*: what discovery found or why not */
    int software;       /* index of the software device */
};

/* Builds the inventory from the config (declared devices, pools, the
 * software device) and, with discover=true, the probes. Registers every
 * device and pool in the ledger. */
int gpb_inventory_build(const gpb_config *config, gpb_ledger *ledger, bool refresh, gpb_inventory **out);
void gpb_inventory_free(gpb_inventory *inventory);

/* For probes: adds a device (the inventory takes ownership) unless the
 * config declared one with the same id, whose settings then win. */
int gpb_inventory_add(gpb_inventory *inventory, gpb_device *device);
void gpb_inventory_note(gpb_inventory *inventory, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
gpb_device *gpb_device_new(const char *id, gpubalance_backend backend);
void gpb_device_free(gpb_device *device);
int gpb_inventory_find(const gpb_inventory *inventory, const char *id);
int gpb_inventory_pool_find(const gpb_inventory *inventory, const char *name);
/* For probes: the pool of that name, created with default_max_sessions
 * unless the config defines it (whose max-sessions then wins). */
int gpb_inventory_pool_ensure(gpb_inventory *inventory, const char *name, int default_max_sessions);

/* Sessions on the pool's member devices, ours and foreign, as the ledger
 * counts them now (call with the ledger locked). */
int gpb_inventory_pool_sessions(const gpb_inventory *inventory, gpb_ledger *ledger, int pool);

/* Where discovery looks for render nodes and for other processes' DRM
 * clients: /dev/dri and /proc. A test points them at trees of its own
 * before opening a context; NULL restores the default. Process-wide. */
void gpb_discovery_set_roots(const char *dri_dir, const char *proc_dir);
const char *gpb_discovery_dri_dir(void);
const char *gpb_discovery_proc_dir(void);
/* The tree where the NVIDIA driver's /dev/nvidiactl and /proc/driver/nvidia
 * are looked for: "/" unless a test set one (NULL: back to "/"). Test
 * builds (-Dtest_hooks=true) also take GPUBALANCE_NVIDIA_ROOT from the
 * environment, for the programs the stand-in suite runs (the command,
 * FFmpeg, gst-launch), which cannot call this. */
void gpb_discovery_set_nvidia_root(const char *root);
const char *gpb_discovery_nvidia_root(void);

/* The software device's default budget: one cost unit (a 1080p30 x264
 * "veryfast" encode keeps about two cores busy) per two online CPUs, at
 * least 1. [software] budget= overrides it; 0 there means no limit. */
double gpb_software_default_budget(void);
/* The device's codecs among WANTED (a mask of 1 << gpubalance_codec).
 * A codec that needs a library is looked for only when asked about. */
unsigned gpb_device_codecs(const gpb_device *d, unsigned wanted);

/* The probes compiled into this build, NULL-terminated. */
extern const gpb_probe *const gpb_probes[];
extern const gpb_probe gpb_nvidia_probe;
extern const gpb_probe gpb_vaapi_probe;
/* For tests and benchmarks (VA-API builds only): a device on node_path
 * whose foreign load comes from DRM fdinfo, made without opening the node
 * (no VA driver needed). */
gpb_device *gpb_vaapi_device_new(const char *id, const char *node_path, const char *pdev, unsigned codecs);

#endif
