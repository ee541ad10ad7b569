/* config.h - the GKeyFile configuration (docs/DESIGN.md lists every key). */
#ifndef GPB_CONFIG_H
#define GPB_CONFIG_H

#include <glib.h>
#include <stdbool.h>

#include "gpubalance.h"

#define GPB_MAX_ORDER GPUBALANCE_N_BACKENDS
/* The largest width and height a hardware device is taken to encode when
 * neither its probe nor its config says (max-width, max-height): 4096,
 * what every NVENC and VA-API encoder of the last decade takes for H.264.
 * Larger pictures go to devices that report or declare more, and to the
 * software device (GPUBALANCE_MAX_DIMENSION). */
#define GPB_ASSUMED_MAX_SIZE 4096
/* The longest when-full=wait, seconds (config and stream alike). */
#define GPB_MAX_WAIT_TIMEOUT 86400.0
/* Cost units a discovered VA-API device takes by default: 16 1080p30
 * streams, below the ~20 1080p60 H.264 streams an Intel Flex 140 runs at
 * "balanced", because integrated GPUs are far slower. [vaapi] budget=. */
#define GPB_VAAPI_DEFAULT_BUDGET 16.0

/* A backend order such as nvenc,vaapi,software. */
typedef struct {
    gpubalance_backend backends[GPB_MAX_ORDER];
    int n;
} gpb_order;

/* One [device:NAME] group. */
typedef struct {
    char *group_name; /* "gpu0" of [device:gpu0] */
    char *id;         /* sim:gpu0, nvenc:0, vaapi:renderD128 */
    char *display_name;
    gpubalance_backend backend;
    gpubalance_backend imitates; /* sim: its place in order */
    unsigned codecs;
    int max_sessions;     /* 0 = none */
    int enforce_sessions; /* sim only, 0 = never refuse */
    double budget;        /* 0 = none */
    char *pool;           /* NULL = none */
    int max_width;
    int max_height;
    bool ten_bit;
    int cuda_ordinal;  /* nvenc, else -1 */
    char *render_node; /* vaapi, else NULL */
} gpb_device_config;

/* One [pool:NAME] group. */
typedef struct {
    char *name;
    int max_sessions; /* 0 = none */
} gpb_pool_config;

typedef struct {
    char *path; /* the file read, NULL for built-in defaults */
    gpubalance_policy policy;
    gpb_order order;
    gpubalance_when_full when_full;
    double wait_timeout; /* seconds */
    bool discover;
    double learn_expiry;      /* seconds a learned limit stays in force */
    double software_budget;   /* -1: gpb_software_default_budget() */
    double vaapi_budget;      /* default budget of a discovered render node */
    bool vaapi_budget_set;    /* [vaapi] budget= given: it beats cost.c's table */
    unsigned software_codecs; /* 0: those the host has encoders for */
    GPtrArray *devices;       /* of gpb_device_config* */
    GPtrArray *pools;         /* of gpb_pool_config* */
} gpb_config;

/* Built-in defaults, used when no configuration file exists. */
gpb_config *gpb_config_new_default(void);

/* Parses configuration text. display_name names the file in messages.
 * Returns 0 or GPUBALANCE_ERR_CONFIG with gpubalance_last_error() naming
 * the file, the group, the key and what is allowed. */
int gpb_config_parse(const char *data, size_t length, const char *display_name, gpb_config **out);

/* Reads and parses path. */
int gpb_config_load(const char *path, gpb_config **out);

/* Finds the file to read: $GPUBALANCE_CONFIG (must exist), then
 * /etc/gpubalance.conf, then ~/.config/gpubalance.conf. Returns a newly
 * allocated path, or NULL (defaults) with *status 0, or NULL with *status
 * negative when $GPUBALANCE_CONFIG names a missing file. */
char *gpb_config_find(int *status);

void gpb_config_free(gpb_config *config);

/* Parses "nvenc,vaapi,software"; on error returns
 * GPUBALANCE_ERR_INVALID_ARGUMENT and fills the last error with what was
 * wrong (without file or key context). */
int gpb_order_parse(const char *text, gpb_order *out);
int gpb_policy_parse(const char *text, gpubalance_policy *out);
int gpb_when_full_parse(const char *text, gpubalance_when_full *out);

/* The backend a device stands for in `order`: itself, or a sim's
 * imitated backend. */
gpubalance_backend gpb_order_backend(gpubalance_backend backend, gpubalance_backend imitates);

#endif
