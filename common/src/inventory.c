/* inventory.c - builds the device list from config and probes. */
#define _GNU_SOURCE
#include "inventory.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

const gpb_probe *const gpb_probes[] = {
    &gpb_nvidia_probe,
#ifdef GPB_HAVE_VAAPI
    &gpb_vaapi_probe,
#endif
    NULL,
};

gpb_device *gpb_device_new(const char *id, gpubalance_backend backend)
{
    gpb_device *d = g_new0(gpb_device, 1);

    d->id = g_strdup(id);
    d->ledger_key = g_strdup(id);
    d->backend = backend;
    d->imitates = backend;
    d->max_width = GPB_ASSUMED_MAX_SIZE;
    d->max_height = GPB_ASSUMED_MAX_SIZE;
    d->pool = -1;
    d->cuda_ordinal = -1;
    d->ledger_index = -1;
    return d;
}

void gpb_device_free(gpb_device *d)
{
    if (d->probe && d->probe->free_data && d->probe_data)
        d->probe->free_data(d->probe_data);
    g_free(d->id);
    g_free(d->ledger_key);
    g_free(d->name);
    g_free(d->gpu_uuid);
    g_free(d->render_node);
    g_free(d->pci_bus_id);
    g_free(d->driver);
    g_free(d->not_offered_why);
    g_free(d);
}

static void device_free(gpointer data)
{
    gpb_device_free(data);
}

static void pool_free(gpointer data)
{
    gpb_pool *p = data;

    g_free(p->name);
    g_free(p);
}

void gpb_inventory_free(gpb_inventory *inv)
{
    if (!inv)
        return;
    g_ptr_array_unref(inv->devices);
    g_ptr_array_unref(inv->pools);
    g_ptr_array_unref(inv->notes);
    g_free(inv);
}

void gpb_inventory_note(gpb_inventory *inv, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_ptr_array_add(inv->notes, g_strdup_vprintf(fmt, ap));
    va_end(ap);
}

int gpb_inventory_find(const gpb_inventory *inv, const char *id)
{
    for (guint i = 0; i < inv->devices->len; i++)
        if (strcmp(((gpb_device *)g_ptr_array_index(inv->devices, i))->id, id) == 0)
            return (int)i;
    return -1;
}

int gpb_inventory_pool_find(const gpb_inventory *inv, const char *name)
{
    for (guint i = 0; i < inv->pools->len; i++)
        if (strcmp(((gpb_pool *)g_ptr_array_index(inv->pools, i))->name, name) == 0)
            return (int)i;
    return -1;
}

int gpb_inventory_pool_ensure(gpb_inventory *inv, const char *name, int default_max_sessions)
{
    int index = gpb_inventory_pool_find(inv, name);
    gpb_pool *p;

    if (index >= 0)
        return index;
    p = g_new0(gpb_pool, 1);
    p->name = g_strdup(name);
    p->max_sessions = default_max_sessions;
    p->ledger_index = -1;
    g_ptr_array_add(inv->pools, p);
    return (int)inv->pools->len - 1;
}

int gpb_inventory_pool_sessions(const gpb_inventory *inv, gpb_ledger *ledger, int pool)
{
    int sessions = 0;

    for (guint i = 0; i < inv->devices->len; i++) {
        const gpb_device *d = g_ptr_array_index(inv->devices, i);
        const gpb_device_record *r;

        if (d->pool != pool)
            continue;
        r = gpb_ledger_device(ledger, d->ledger_index);
        sessions += (int)(r->sessions + r->foreign_sessions);
    }
    return sessions;
}

static char *dri_root;
static char *proc_root;
static char *nvidia_root;

void gpb_discovery_set_roots(const char *dri_dir, const char *proc_dir)
{
    g_free(dri_root);
    g_free(proc_root);
    dri_root = g_strdup(dri_dir);
    proc_root = g_strdup(proc_dir);
}

const char *gpb_discovery_dri_dir(void)
{
#ifdef GPB_TEST_HOOKS
    /* as GPUBALANCE_NVIDIA_ROOT: a stand-in render node for a separate
     * process (ffmpeg, gst-launch) in test builds only */
    const char *from_env = g_getenv("GPUBALANCE_DRI_ROOT");

    if (!dri_root && from_env && *from_env)
        return from_env;
#endif
    return dri_root ? dri_root : "/dev/dri";
}

const char *gpb_discovery_proc_dir(void)
{
    return proc_root ? proc_root : "/proc";
}

void gpb_discovery_set_nvidia_root(const char *root)
{
    g_free(nvidia_root);
    nvidia_root = g_strdup(root);
}

const char *gpb_discovery_nvidia_root(void)
{
#ifdef GPB_TEST_HOOKS
    const char *from_env = g_getenv("GPUBALANCE_NVIDIA_ROOT");

    if (!nvidia_root && from_env && *from_env)
        return from_env;
#endif
    return nvidia_root ? nvidia_root : "/";
}

double gpb_software_default_budget(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    return MAX(1.0, (double)(cpus > 0 ? cpus : 1) / 2.0);
}

int gpb_inventory_add(gpb_inventory *inv, gpb_device *device)
{
    int existing = gpb_inventory_find(inv, device->id);

    if (existing >= 0) {
        /* Declared in the config: keep its settings, learn what the probe
         * knows that the config cannot say. */
        gpb_device *declared = g_ptr_array_index(inv->devices, existing);

        if (!declared->gpu_uuid && device->gpu_uuid) {
            declared->gpu_uuid = g_strdup(device->gpu_uuid);
            g_free(declared->ledger_key);
            declared->ledger_key = g_strdup(device->ledger_key);
        }
        if (!declared->pci_bus_id)
            declared->pci_bus_id = g_strdup(device->pci_bus_id);
        if (!declared->driver)
            declared->driver = g_strdup(device->driver);
        if (!declared->not_offered_why)
            declared->not_offered_why = g_strdup(device->not_offered_why);
        declared->probe = device->probe;
        declared->probe_data = device->probe_data;
        device->probe = NULL; /* the data now belongs to the declared device */
        device_free(device);
        return existing;
    }
    if (inv->devices->len >= GPB_MAX_DEVICES) {
        int status =
            gpb_fail(GPUBALANCE_ERR_FULL, "too many devices (%d at most); %s left out", GPB_MAX_DEVICES, device->id);

        device_free(device);
        return status;
    }
    g_ptr_array_add(inv->devices, device);
    return (int)inv->devices->len - 1;
}

static gpb_device *device_from_config(const gpb_device_config *c, const gpb_inventory *inv)
{
    gpb_device *d = gpb_device_new(c->id, c->backend);

    d->name = g_strdup(c->display_name);
    d->imitates = c->backend == GPUBALANCE_BACKEND_SIM ? c->imitates : c->backend;
    d->codecs = c->codecs;
    d->max_width = c->max_width;
    d->max_height = c->max_height;
    d->ten_bit = c->ten_bit;
    d->max_sessions = c->max_sessions;
    d->enforce_sessions = c->enforce_sessions;
    d->budget = c->budget;
    d->pool = c->pool ? gpb_inventory_pool_find(inv, c->pool) : -1;
    d->cuda_ordinal = c->cuda_ordinal;
    d->render_node = g_strdup(c->render_node);
    d->declared = true;
    return d;
}

/* AV1 in software needs SVT-AV1 or libaom: GStreamer's svtav1enc/av1enc
 * and FFmpeg's libsvtav1/libaom-av1 all encode through one of them. The
 * device offers AV1 only where one of those libraries loads, so that no
 * AV1 stream is placed on a host with nothing to encode it. Loading one
 * maps ten megabytes and relocates them (about 1 ms, a third of a cold
 * `gpubalance pick`), so it is tried once per process, and only when an
 * AV1 stream or a device listing asks (gpb_device_codecs). */
static gsize software_av1_state; /* 0: not tried; 1: no library; 2: loads */

static bool software_av1_available(void)
{
    static const char *const libraries[] = {"libSvtAv1Enc.so.1", "libSvtAv1Enc.so.2", "libSvtAv1Enc.so.3",
                                            "libaom.so.3"};

    if (g_once_init_enter(&software_av1_state)) {
        gsize state = 1;

        for (size_t i = 0; i < G_N_ELEMENTS(libraries) && state == 1; i++) {
            void *handle = dlopen(libraries[i], RTLD_LAZY | RTLD_LOCAL);

            if (handle) {
                dlclose(handle);
                state = 2;
            }
        }
        g_once_init_leave(&software_av1_state, state);
    }
    return software_av1_state == 2;
}

unsigned gpb_device_codecs(const gpb_device *d, unsigned wanted)
{
    unsigned codecs = d->codecs & wanted;

    if ((d->codecs_if_library & wanted) && software_av1_available())
        codecs |= d->codecs_if_library & wanted;
    return codecs;
}

static gpb_device *software_device(const gpb_config *config)
{
    gpb_device *d = gpb_device_new("software", GPUBALANCE_BACKEND_SOFTWARE);

    d->name = g_strdup("CPU (software encoders)");
    /* The configured codecs, else H.264 and HEVC (x264/x265 are always
     * there where gpubalance is) and AV1 where an AV1 library loads. */
    d->codecs = config->software_codecs;
    if (!d->codecs) {
        d->codecs = (1u << GPUBALANCE_CODEC_H264) | (1u << GPUBALANCE_CODEC_HEVC);
        d->codecs_if_library = 1u << GPUBALANCE_CODEC_AV1;
    }
    d->max_width = GPUBALANCE_MAX_DIMENSION;
    d->max_height = GPUBALANCE_MAX_DIMENSION;
    d->ten_bit = true;
    d->budget = config->software_budget >= 0 ? config->software_budget : gpb_software_default_budget();
    return d;
}

/* Gives every pool and device its ledger record; under the ledger lock. */
static int register_locked(gpb_ledger *ledger, void *data)
{
    gpb_inventory *inv = data;
    int index;

    for (guint i = 0; i < inv->pools->len; i++) {
        gpb_pool *p = g_ptr_array_index(inv->pools, i);

        if ((index = gpb_ledger_pool_index(ledger, p->name)) < 0)
            return index;
        p->ledger_index = index;
    }
    for (guint i = 0; i < inv->devices->len; i++) {
        gpb_device *d = g_ptr_array_index(inv->devices, i);

        if ((index = gpb_ledger_device_index(ledger, d->ledger_key, d->backend)) < 0)
            return index;
        d->ledger_index = index;
    }
    return 0;
}

/* Registers now, and again whenever the ledger is replaced under this
 * process (a reset): the records may then have other indices. */
static int register_in_ledger(gpb_inventory *inv, gpb_ledger *ledger)
{
    int status;

    if ((status = gpb_ledger_lock(ledger)) < 0)
        return status;
    status = register_locked(ledger, inv);
    gpb_ledger_unlock(ledger);
    if (status == 0)
        gpb_ledger_set_moved_hook(ledger, register_locked, inv);
    return status;
}

int gpb_inventory_build(const gpb_config *config, gpb_ledger *ledger, bool refresh, gpb_inventory **out)
{
    gpb_inventory *inv = g_new0(gpb_inventory, 1);
    int status = 0;

    inv->devices = g_ptr_array_new_with_free_func(device_free);
    inv->pools = g_ptr_array_new_with_free_func(pool_free);
    inv->notes = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < config->pools->len; i++) {
        const gpb_pool_config *pc = g_ptr_array_index(config->pools, i);
        gpb_pool *p = g_new0(gpb_pool, 1);

        p->name = g_strdup(pc->name);
        p->max_sessions = pc->max_sessions;
        p->ledger_index = -1;
        g_ptr_array_add(inv->pools, p);
    }
    for (guint i = 0; i < config->devices->len; i++)
        if ((status = gpb_inventory_add(inv, device_from_config(g_ptr_array_index(config->devices, i), inv))) < 0)
            goto fail;
    if (config->discover) {
        for (int i = 0; gpb_probes[i]; i++)
            if ((status = gpb_probes[i]->discover(inv, config, ledger, refresh)) < 0)
                goto fail;
    } else {
        gpb_inventory_note(inv, "hardware discovery: off (discover=false); only declared devices are used");
    }
    if ((status = gpb_inventory_add(inv, software_device(config))) < 0)
        goto fail;
    inv->software = status;
    if ((status = register_in_ledger(inv, ledger)) < 0)
        goto fail;
    *out = inv;
    return 0;
fail:
    gpb_inventory_free(inv);
    return status;
}
