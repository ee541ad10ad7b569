/* probe_nvidia.c - NVIDIA GPUs: NVML for the inventory and live session
 * counts, CUDA for ordinals, and one NVENC session per GPU to learn the
 * truth about its encoder.
 *
 * Every NVIDIA library is loaded at run time (dlopen; nv-codec-headers'
 * loader for CUDA and NVENC) and none is linked, so the library runs on
 * hosts without NVIDIA drivers and says why it found nothing.
 *
 * Why open a session. NVML's encoder capacity is not evidence: an H100
 * reports capacity 100 for H.264 and HEVC yet has no NVENC, and
 * nvEncOpenEncodeSessionEx returns NV_ENC_ERR_UNSUPPORTED_DEVICE after
 * ~260 ms. Only an open tells the truth, and it costs that much per GPU,
 * so the verdict is cached in the ledger keyed by GPU UUID, driver version
 * and boot id: the first process of a boot pays, the others read it. The
 * probe's session counts against the GeForce cap, so it holds a lease
 * while open.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cost.h"
#include "inventory.h"
#include "nvidia.h"
#include "util.h"

/* nv-codec-headers' loader logs through these; route them to ours. */
#define FFNV_LOG_FUNC(logctx, msg, ...) gpb_debug("nvidia loader: " msg, __VA_ARGS__)
#define FFNV_DEBUG_LOG_FUNC(logctx, msg, ...)
#include <ffnvcodec/dynlink_loader.h>

/* ---- pure helpers ------------------------------------------------------ */

bool gpb_nvidia_brand_is_consumer(int brand)
{
    /* NVML_BRAND_GEFORCE 5, _TITAN 6, _GEFORCE_RTX 15, _TITAN_RTX 16 */
    return brand == 5 || brand == 6 || brand == 15 || brand == 16;
}

int gpb_nvidia_consumer_cap(const char *driver_version)
{
    int major = driver_version ? atoi(driver_version) : 0;

    if (major >= 550)
        return 8;
    if (major >= 530)
        return 5;
    return 3;
}

void gpb_nvenc_probe_key(const char *uuid, const char *driver_version, const char *boot_id, char *buf, size_t size)
{
    snprintf(buf, size, "%s|%s|%s", uuid, driver_version, boot_id);
}

bool gpb_nvenc_status_means_no_encoder(int status)
{
    return status == NV_ENC_ERR_NO_ENCODE_DEVICE || status == NV_ENC_ERR_UNSUPPORTED_DEVICE;
}

const char *gpb_nvenc_status_name(int status)
{
    static const char *const names[] = {
        [NV_ENC_SUCCESS] = "NV_ENC_SUCCESS",
        [NV_ENC_ERR_NO_ENCODE_DEVICE] = "NV_ENC_ERR_NO_ENCODE_DEVICE",
        [NV_ENC_ERR_UNSUPPORTED_DEVICE] = "NV_ENC_ERR_UNSUPPORTED_DEVICE",
        [NV_ENC_ERR_INVALID_ENCODERDEVICE] = "NV_ENC_ERR_INVALID_ENCODERDEVICE",
        [NV_ENC_ERR_INVALID_DEVICE] = "NV_ENC_ERR_INVALID_DEVICE",
        [NV_ENC_ERR_DEVICE_NOT_EXIST] = "NV_ENC_ERR_DEVICE_NOT_EXIST",
        [NV_ENC_ERR_INVALID_PTR] = "NV_ENC_ERR_INVALID_PTR",
        [NV_ENC_ERR_INVALID_EVENT] = "NV_ENC_ERR_INVALID_EVENT",
        [NV_ENC_ERR_INVALID_PARAM] = "NV_ENC_ERR_INVALID_PARAM",
        [NV_ENC_ERR_INVALID_CALL] = "NV_ENC_ERR_INVALID_CALL",
        [NV_ENC_ERR_OUT_OF_MEMORY] = "NV_ENC_ERR_OUT_OF_MEMORY",
        [NV_ENC_ERR_ENCODER_NOT_INITIALIZED] = "NV_ENC_ERR_ENCODER_NOT_INITIALIZED",
        [NV_ENC_ERR_UNSUPPORTED_PARAM] = "NV_ENC_ERR_UNSUPPORTED_PARAM",
        [NV_ENC_ERR_INVALID_VERSION] = "NV_ENC_ERR_INVALID_VERSION",
        [NV_ENC_ERR_GENERIC] = "NV_ENC_ERR_GENERIC",
    };

    if (status >= 0 && (size_t)status < G_N_ELEMENTS(names) && names[status])
        return names[status];
    return "NVENC error";
}

/* ---- NVML, declared here: nv-codec-headers does not cover it ------------ */

typedef int nvml_return;
typedef struct nvml_device_st *nvml_device;
typedef struct {
    char bus_id_legacy[16];
    unsigned domain;
    unsigned bus;
    unsigned device;
    unsigned pci_device_id;
    unsigned pci_subsystem_id;
    char bus_id[32];
} nvml_pci_info;

typedef struct {
    void *lib;
    nvml_return (*init)(void);
    const char *(*error_string)(nvml_return);
    nvml_return (*device_count)(unsigned *);
    nvml_return (*device_by_index)(unsigned, nvml_device *);
    nvml_return (*device_name)(nvml_device, char *, unsigned);
    nvml_return (*device_uuid)(nvml_device, char *, unsigned);
    nvml_return (*device_pci_info)(nvml_device, nvml_pci_info *);
    nvml_return (*device_brand)(nvml_device, int *);
    nvml_return (*driver_version)(char *, unsigned);
    nvml_return (*encoder_stats)(nvml_device, unsigned *, unsigned *, unsigned *);
    /* optional: older drivers lack them, and then budgets and utilisation
     * stay unknown */
    nvml_return (*architecture)(nvml_device, unsigned *);
    nvml_return (*encoder_utilisation)(nvml_device, unsigned *, unsigned *);
} nvml_api;

/* NVML is loaded and initialised once per process (nvmlInit costs ~10 ms)
 * and kept: session counts are read from it for as long as we run. */
static nvml_api nvml;
static char nvml_failure[256];

static bool nvml_symbol(const char *name, void **slot)
{
    *slot = dlsym(nvml.lib, name);
    if (!*slot)
        snprintf(nvml_failure, sizeof(nvml_failure), "libnvidia-ml.so.1 has no %s (driver too old?)", name);
    return *slot != NULL;
}

/* Is an NVIDIA kernel driver loaded? Its control node and /proc entry
 * exist as soon as the module is: checking costs two stat calls, while a
 * failing search for libnvidia-ml walks every library directory (half of
 * a cold context open on a host without NVIDIA). If not, says why. */
static bool nvidia_driver_present(char *why, size_t size)
{
    gchar *ctl = g_build_filename(gpb_discovery_nvidia_root(), "dev", "nvidiactl", NULL);
    gchar *proc = g_build_filename(gpb_discovery_nvidia_root(), "proc", "driver", "nvidia", NULL);
    bool present = access(ctl, F_OK) == 0 || access(proc, F_OK) == 0;

    if (!present)
        snprintf(why, size, "no NVIDIA driver loaded (neither %s nor %s exists)", ctl, proc);
    g_free(ctl);
    g_free(proc);
    return present;
}

static gpointer nvml_load_once(gpointer unused)
{
    nvml_return r;

    if (!nvidia_driver_present(nvml_failure, sizeof(nvml_failure)))
        return NULL;
    nvml.lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!nvml.lib) {
        snprintf(nvml_failure, sizeof(nvml_failure), "libnvidia-ml.so.1 not found (no NVIDIA driver installed)");
        return NULL;
    }
    if (!nvml_symbol("nvmlInit_v2", (void **)&nvml.init) ||
        !nvml_symbol("nvmlErrorString", (void **)&nvml.error_string) ||
        !nvml_symbol("nvmlDeviceGetCount_v2", (void **)&nvml.device_count) ||
        !nvml_symbol("nvmlDeviceGetHandleByIndex_v2", (void **)&nvml.device_by_index) ||
        !nvml_symbol("nvmlDeviceGetName", (void **)&nvml.device_name) ||
        !nvml_symbol("nvmlDeviceGetUUID", (void **)&nvml.device_uuid) ||
        !nvml_symbol("nvmlDeviceGetPciInfo_v3", (void **)&nvml.device_pci_info) ||
        !nvml_symbol("nvmlDeviceGetBrand", (void **)&nvml.device_brand) ||
        !nvml_symbol("nvmlSystemGetDriverVersion", (void **)&nvml.driver_version) ||
        !nvml_symbol("nvmlDeviceGetEncoderStats", (void **)&nvml.encoder_stats))
        goto fail;
    *(void **)&nvml.architecture = dlsym(nvml.lib, "nvmlDeviceGetArchitecture");
    *(void **)&nvml.encoder_utilisation = dlsym(nvml.lib, "nvmlDeviceGetEncoderUtilization");
    r = nvml.init();
    if (r != 0) {
        /* 9: driver not loaded; 18: driver/library version mismatch */
        snprintf(nvml_failure, sizeof(nvml_failure), "nvmlInit failed: %s (%d)", nvml.error_string(r), r);
        goto fail;
    }
    return &nvml;
fail:
    dlclose(nvml.lib);
    memset(&nvml, 0, sizeof(nvml));
    return NULL;
}

static bool nvml_ready(void)
{
    static GOnce once = G_ONCE_INIT;

    return g_once(&once, nvml_load_once, NULL) != NULL;
}

/* ---- one GPU ------------------------------------------------------------ */

typedef struct {
    nvml_device handle;
} nvidia_data;

/* The GPU as NVML describes it. */
typedef struct {
    nvml_device handle;
    char name[96];
    char uuid[96];
    nvml_pci_info pci;
    int brand;
    int architecture; /* nvmlDeviceArchitecture_t, -1 unknown */
} nvml_gpu;

static bool read_gpu(unsigned index, nvml_gpu *gpu, GString *why)
{
    nvml_return r;

    memset(gpu, 0, sizeof(*gpu));
    if ((r = nvml.device_by_index(index, &gpu->handle)) != 0 ||
        (r = nvml.device_uuid(gpu->handle, gpu->uuid, sizeof(gpu->uuid))) != 0 ||
        (r = nvml.device_pci_info(gpu->handle, &gpu->pci)) != 0) {
        g_string_printf(why, "NVML GPU %u: %s", index, nvml.error_string(r));
        return false;
    }
    if (nvml.device_name(gpu->handle, gpu->name, sizeof(gpu->name)) != 0)
        g_strlcpy(gpu->name, "NVIDIA GPU", sizeof(gpu->name));
    if (nvml.device_brand(gpu->handle, &gpu->brand) != 0)
        gpu->brand = 0;
    gpu->architecture = -1;
    if (nvml.architecture) {
        unsigned architecture = 0;

        if (nvml.architecture(gpu->handle, &architecture) == 0)
            gpu->architecture = (int)architecture;
    }
    return true;
}

/* The CUDA ordinal of the GPU at this PCI address as *this* process sees
 * CUDA devices: the CUDA driver applies CUDA_VISIBLE_DEVICES and
 * CUDA_DEVICE_ORDER itself, so asking it gives the numbering that
 * h264_nvenc's -gpu and GStreamer's cuda-device-id use here. -1: hidden. */
static int cuda_ordinal_for(CudaFunctions *cu, const nvml_pci_info *pci)
{
    int count = 0;

    if (!cu || cu->cuDeviceGetCount(&count) != CUDA_SUCCESS)
        return -1;
    for (int i = 0; i < count; i++) {
        CUdevice dev;
        int domain = -1, bus = -1, device = -1;

        if (cu->cuDeviceGet(&dev, i) != CUDA_SUCCESS ||
            cu->cuDeviceGetAttribute(&domain, CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID, dev) != CUDA_SUCCESS ||
            cu->cuDeviceGetAttribute(&bus, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID, dev) != CUDA_SUCCESS ||
            cu->cuDeviceGetAttribute(&device, CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID, dev) != CUDA_SUCCESS)
            continue;
        if ((unsigned)domain == pci->domain && (unsigned)bus == pci->bus && (unsigned)device == pci->device)
            return i;
    }
    return -1;
}

static const GUID av1_guid = {0x0a352289, 0x0aa7, 0x4759, {0x86, 0x2d, 0x5d, 0x15, 0xcd, 0x16, 0xd2, 0x54}};

static unsigned query_cap(NV_ENCODE_API_FUNCTION_LIST *fl, void *encoder, GUID codec, NV_ENC_CAPS cap)
{
    NV_ENC_CAPS_PARAM param = {.version = NV_ENC_CAPS_PARAM_VER, .capsToQuery = cap};
    int value = 0;

    if (fl->nvEncGetEncodeCaps(encoder, codec, &param, &value) != NV_ENC_SUCCESS)
        return 0;
    return value > 0 ? (unsigned)value : 0;
}

static void read_caps(NV_ENCODE_API_FUNCTION_LIST *fl, void *encoder, gpb_nvenc_probe *result)
{
    const struct {
        GUID guid;
        gpubalance_codec codec;
    } known[] = {
        {NV_ENC_CODEC_H264_GUID, GPUBALANCE_CODEC_H264},
        {NV_ENC_CODEC_HEVC_GUID, GPUBALANCE_CODEC_HEVC},
        {av1_guid, GPUBALANCE_CODEC_AV1},
    };
    GUID guids[16];
    uint32_t count = 0;

    if (fl->nvEncGetEncodeGUIDs(encoder, guids, G_N_ELEMENTS(guids), &count) != NV_ENC_SUCCESS)
        count = 0;
    for (uint32_t i = 0; i < MIN(count, G_N_ELEMENTS(guids)); i++) {
        for (size_t k = 0; k < G_N_ELEMENTS(known); k++) {
            if (memcmp(&guids[i], &known[k].guid, sizeof(GUID)) != 0)
                continue;
            result->codecs |= 1u << known[k].codec;
            result->max_width = MAX(result->max_width, query_cap(fl, encoder, guids[i], NV_ENC_CAPS_WIDTH_MAX));
            result->max_height = MAX(result->max_height, query_cap(fl, encoder, guids[i], NV_ENC_CAPS_HEIGHT_MAX));
            result->ten_bit |= query_cap(fl, encoder, guids[i], NV_ENC_CAPS_SUPPORT_10BIT_ENCODE);
            result->engines = MAX(result->engines, query_cap(fl, encoder, guids[i], NV_ENC_CAPS_NUM_ENCODER_ENGINES));
        }
    }
}

/* Opens one NVENC session on the GPU and reads what it can do. */
static void run_probe(CudaFunctions *cu, NvencFunctions *nv, int ordinal, gpb_nvenc_probe *result)
{
    NV_ENCODE_API_FUNCTION_LIST fl = {.version = NV_ENCODE_API_FUNCTION_LIST_VER};
    NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS params = {
        .version = NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS_VER,
        .deviceType = NV_ENC_DEVICE_TYPE_CUDA,
        .apiVersion = NVENCAPI_VERSION,
    };
    uint64_t start = gpb_boottime_ns();
    CUcontext cuda_ctx = NULL;
    CUdevice dev;
    void *encoder = NULL;
    NVENCSTATUS st;

    memset(result, 0, sizeof(*result));
    result->format = GPB_NVENC_PROBE_FORMAT;
    if (cu->cuDeviceGet(&dev, ordinal) != CUDA_SUCCESS || cu->cuCtxCreate(&cuda_ctx, 0, dev) != CUDA_SUCCESS) {
        result->open_status = NV_ENC_ERR_INVALID_DEVICE;
        snprintf(result->detail, sizeof(result->detail), "cannot create a CUDA context on CUDA device %d", ordinal);
        goto out;
    }
    if ((st = nv->NvEncodeAPICreateInstance(&fl)) != NV_ENC_SUCCESS) {
        result->open_status = st;
        snprintf(result->detail, sizeof(result->detail), "NvEncodeAPICreateInstance: %s (%d)",
                 gpb_nvenc_status_name(st), st);
        goto out;
    }
    params.device = cuda_ctx;
    st = fl.nvEncOpenEncodeSessionEx(&params, &encoder);
    result->open_status = st;
    if (st != NV_ENC_SUCCESS) {
        snprintf(result->detail, sizeof(result->detail), "nvEncOpenEncodeSessionEx returned %s (%d)",
                 gpb_nvenc_status_name(st), st);
        goto out;
    }
    read_caps(&fl, encoder, result);
    fl.nvEncDestroyEncoder(encoder);
out:
    if (cuda_ctx)
        cu->cuCtxDestroy(cuda_ctx);
    result->probe_ns = gpb_boottime_ns() - start;
}

int gpb_nvenc_open_status(int cuda_ordinal, char *detail, size_t size)
{
    CudaFunctions *cu = NULL;
    NvencFunctions *nv = NULL;
    gpb_nvenc_probe probe = {.open_status = -1}; /* not asked */
    CUresult r;

    if (cuda_load_functions(&cu, NULL) < 0) {
        snprintf(probe.detail, sizeof(probe.detail), "libcuda.so.1 not found or incomplete");
        cu = NULL;
    } else if ((r = cu->cuInit(0)) != CUDA_SUCCESS) {
        snprintf(probe.detail, sizeof(probe.detail), "cuInit failed (%d)", (int)r);
    } else if (nvenc_load_functions(&nv, NULL) < 0) {
        snprintf(probe.detail, sizeof(probe.detail), "libnvidia-encode.so.1 not found or incomplete");
        nv = NULL;
    } else {
        run_probe(cu, nv, cuda_ordinal, &probe);
    }
    if (detail && size)
        snprintf(detail, size, "%s", probe.open_status == NV_ENC_SUCCESS ? "NVENC opened" : probe.detail);
    nvenc_free_functions(&nv);
    cuda_free_functions(&cu);
    return probe.open_status;
}

/* ---- discovery ----------------------------------------------------------- */

typedef struct {
    gpb_inventory *inv;
    gpb_ledger *ledger;
    bool refresh;
    CudaFunctions *cu;
    NvencFunctions *nv;
    char driver_version[80];
    char cuda_failure[160];
    char nvenc_failure[160];
} discovery;

/* The cached verdict for this GPU, if its key still matches. */
static bool cached_probe(discovery *dc, int ledger_index, const char *key, gpb_nvenc_probe *result)
{
    gpb_device_record *r = gpb_ledger_device(dc->ledger, ledger_index);

    if (dc->refresh || strncmp(r->probe_key, key, sizeof(r->probe_key)) != 0 || r->probe_blob_size != sizeof(*result))
        return false;
    memcpy(result, r->probe_blob, sizeof(*result));
    result->detail[sizeof(result->detail) - 1] = '\0';
    return result->format == GPB_NVENC_PROBE_FORMAT;
}

/* Probes under a lease (the session counts against the cap), without the
 * ledger lock held across the slow open, and caches a definite verdict. */
static int probe_with_lease(discovery *dc, int ledger_index, int ordinal, const char *key, gpb_nvenc_probe *result)
{
    gpb_slot_record rec = {.state = GPUBALANCE_LEASE_OPENED, .pid = (int32_t)getpid()};
    int slot, fd = -1, status;

    g_strlcpy(rec.label, "gpubalance nvenc probe", sizeof(rec.label));
    rec.pid_namespace = gpb_pid_namespace();
    rec.since_unix_ms = gpb_unix_ms();
    slot = gpb_ledger_claim(dc->ledger, ledger_index, &rec, &fd);
    gpb_ledger_unlock(dc->ledger);
    run_probe(dc->cu, dc->nv, ordinal, result);
    if ((status = gpb_ledger_lock(dc->ledger)) < 0) {
        if (slot >= 0)
            close(fd); /* the probe's lease ends with its lock */
        return status; /* not locked any more: the caller must not unlock */
    }
    if (slot >= 0)
        gpb_ledger_release(dc->ledger, slot, fd, true);
    /* Out of memory means the cap is reached right now, not that the GPU
     * lacks NVENC: report it, but do not cache it. */
    if (result->open_status == NV_ENC_SUCCESS || gpb_nvenc_status_means_no_encoder(result->open_status)) {
        gpb_device_record *r = gpb_ledger_device(dc->ledger, ledger_index);

        g_strlcpy(r->probe_key, key, sizeof(r->probe_key));
        memcpy(r->probe_blob, result, sizeof(*result));
        r->probe_blob_size = sizeof(*result);
    }
    return 0;
}

/* The default throughput budget (cost.c's table): architecture x NVENC
 * engines. 0, sessions only, when the architecture is unknown. */
static void apply_budget(gpb_device *d, const nvml_gpu *gpu, const gpb_nvenc_probe *p)
{
    if (gpu->architecture < 0 || p->open_status != NV_ENC_SUCCESS)
        return;
    d->budget = gpb_nvenc_default_budget(gpu->architecture, (int)p->engines, gpu->name);
}

static void apply_probe(gpb_device *d, const gpb_nvenc_probe *p)
{
    if (p->open_status == NV_ENC_SUCCESS) {
        d->codecs = p->codecs;
        d->max_width = p->max_width ? (int)p->max_width : GPB_ASSUMED_MAX_SIZE;
        d->max_height = p->max_height ? (int)p->max_height : GPB_ASSUMED_MAX_SIZE;
        d->ten_bit = p->ten_bit != 0;
        if (!p->codecs)
            d->not_offered_why = g_strdup("NVENC opened but offers no H.264, HEVC or AV1");
    } else if (gpb_nvenc_status_means_no_encoder(p->open_status)) {
        d->codecs = 0;
        d->not_offered_why = g_strdup_printf("no NVENC: %s", p->detail);
    } else {
        /* busy or failing right now: keep it on offer with defaults and let
         * the open tell; a refusal is then learned */
        d->codecs = (1u << GPUBALANCE_CODEC_H264) | (1u << GPUBALANCE_CODEC_HEVC);
        d->max_width = d->max_height = GPB_ASSUMED_MAX_SIZE;
    }
}

/* NVML's encoder utilisation: the percentage of the last sample period
 * (about a second) during which the encoder was busy, every process's
 * sessions included. */
static double driver_utilisation(gpb_device *d)
{
    nvidia_data *data = d->probe_data;
    unsigned percent = 0, period_us = 0;

    if (!data || !nvml.encoder_utilisation || nvml.encoder_utilisation(data->handle, &percent, &period_us) != 0)
        return -1;
    return MIN(percent, 100u) / 100.0;
}

static int driver_sessions(gpb_device *d)
{
    nvidia_data *data = d->probe_data;
    unsigned sessions = 0, fps = 0, latency = 0;

    if (!data || nvml.encoder_stats(data->handle, &sessions, &fps, &latency) != 0)
        return -1;
    return (int)sessions;
}

static void describe(discovery *dc, const gpb_device *d, const gpb_nvenc_probe *p, bool cached)
{
    gchar *how = cached ? g_strdup("cached verdict of this boot and driver, no probe")
                        : g_strdup_printf("probed in %.0f ms", p->probe_ns / 1e6);

    gpb_inventory_note(dc->inv, "%s: %s, %s, PCI %s, CUDA ordinal %d, driver %s: %s [%s], budget %g (%d NVENC)", d->id,
                       d->name, d->gpu_uuid, d->pci_bus_id, d->cuda_ordinal, dc->driver_version,
                       d->not_offered_why ? d->not_offered_why : "NVENC available", how, d->budget, (int)p->engines);
    g_free(how);
}

static int add_gpu(discovery *dc, const nvml_gpu *gpu, int ordinal)
{
    gpb_nvenc_probe probe;
    gchar *key_text = g_strdup_printf("nvenc@%s", gpu->uuid);
    char key[GPB_PROBE_KEY_SIZE];
    gpb_device *d;
    bool cached;
    int index, status;

    if (ordinal < 0) {
        gpb_inventory_note(dc->inv, "nvenc: %s (%s, PCI %s) is not visible to CUDA here (CUDA_VISIBLE_DEVICES?); %s",
                           gpu->name, gpu->uuid, gpu->pci.bus_id, dc->cu ? "not offered" : dc->cuda_failure);
        g_free(key_text);
        return 0;
    }
    {
        gchar *id = g_strdup_printf("nvenc:%d", ordinal);

        d = gpb_device_new(id, GPUBALANCE_BACKEND_NVENC);
        g_free(id);
    }
    g_free(d->ledger_key);
    d->ledger_key = key_text;
    d->name = g_strdup(gpu->name);
    d->gpu_uuid = g_strdup(gpu->uuid);
    d->pci_bus_id = g_strdup(gpu->pci.bus_id);
    d->driver = g_strdup_printf("nvidia %s", dc->driver_version);
    d->cuda_ordinal = ordinal;
    d->probe = &gpb_nvidia_probe;
    d->probe_data = g_new0(nvidia_data, 1);
    ((nvidia_data *)d->probe_data)->handle = gpu->handle;
    if (gpb_nvidia_brand_is_consumer(gpu->brand))
        d->pool = gpb_inventory_pool_ensure(dc->inv, "geforce", gpb_nvidia_consumer_cap(dc->driver_version));

    gpb_nvenc_probe_key(gpu->uuid, dc->driver_version, gpb_boot_id(), key, sizeof(key));
    if ((status = gpb_ledger_lock(dc->ledger)) < 0)
        goto fail;
    index = gpb_ledger_device_index(dc->ledger, d->ledger_key, d->backend);
    cached = index >= 0 && cached_probe(dc, index, key, &probe);
    if (index >= 0 && !cached) {
        if (!dc->nv)
            probe = (gpb_nvenc_probe){.open_status = NV_ENC_ERR_NO_ENCODE_DEVICE};
        else if ((status = probe_with_lease(dc, index, ordinal, key, &probe)) < 0)
            goto fail; /* could not lock the ledger again */
    }
    gpb_ledger_unlock(dc->ledger);
    if (index < 0) {
        status = index;
        goto fail;
    }
    if (!dc->nv && !cached)
        g_strlcpy(probe.detail, dc->nvenc_failure, sizeof(probe.detail));
    apply_probe(d, &probe);
    apply_budget(d, gpu, &probe);
    describe(dc, d, &probe, cached);
    if ((status = gpb_inventory_add(dc->inv, d)) < 0)
        return status;
    return 0;
fail:
    gpb_device_free(d);
    return status;
}

static void load_cuda_and_nvenc(discovery *dc)
{
    CUresult r;

    if (cuda_load_functions(&dc->cu, NULL) < 0) {
        snprintf(dc->cuda_failure, sizeof(dc->cuda_failure), "libcuda.so.1 not found or incomplete");
        dc->cu = NULL;
    } else if ((r = dc->cu->cuInit(0)) != CUDA_SUCCESS) {
        snprintf(dc->cuda_failure, sizeof(dc->cuda_failure), "cuInit failed (%d)", (int)r);
        cuda_free_functions(&dc->cu);
    }
    if (nvenc_load_functions(&dc->nv, NULL) < 0) {
        snprintf(dc->nvenc_failure, sizeof(dc->nvenc_failure), "libnvidia-encode.so.1 not found or incomplete");
        dc->nv = NULL;
    }
}

static int nvidia_discover(gpb_inventory *inv, const gpb_config *config, gpb_ledger *ledger, bool refresh)
{
    discovery dc = {.inv = inv, .ledger = ledger, .refresh = refresh};
    GArray *gpus, *ordinals;
    unsigned count = 0;
    int status = 0;

    if (!nvml_ready()) {
        gpb_inventory_note(inv, "nvenc: no NVIDIA devices: %s", nvml_failure);
        return 0;
    }
    if (nvml.driver_version(dc.driver_version, sizeof(dc.driver_version)) != 0)
        g_strlcpy(dc.driver_version, "unknown", sizeof(dc.driver_version));
    if (nvml.device_count(&count) != 0 || count == 0) {
        gpb_inventory_note(inv, "nvenc: no NVIDIA devices: NVML (driver %s) sees no GPU", dc.driver_version);
        return 0;
    }
    load_cuda_and_nvenc(&dc);
    if (!dc.cu)
        gpb_inventory_note(inv, "nvenc: %u NVIDIA GPU(s) but no CUDA: %s", count, dc.cuda_failure);
    gpus = g_array_new(FALSE, TRUE, sizeof(nvml_gpu));
    ordinals = g_array_new(FALSE, TRUE, sizeof(int));
    for (unsigned i = 0; i < count; i++) {
        GString *why = g_string_new(NULL);
        nvml_gpu gpu;

        if (read_gpu(i, &gpu, why)) {
            int ordinal = cuda_ordinal_for(dc.cu, &gpu.pci);

            g_array_append_val(gpus, gpu);
            g_array_append_val(ordinals, ordinal);
        } else {
            gpb_inventory_note(inv, "nvenc: %s", why->str);
        }
        g_string_free(why, TRUE);
    }
    /* In CUDA ordinal order, so that "the lower index" of the policy's
     * tie-break is the lower ordinal; GPUs hidden from CUDA last. */
    for (int want = 0; want <= (int)count && status == 0; want++)
        for (guint i = 0; i < gpus->len && status == 0; i++)
            if (g_array_index(ordinals, int, i) == (want < (int)count ? want : -1))
                status = add_gpu(&dc, &g_array_index(gpus, nvml_gpu, i), g_array_index(ordinals, int, i));
    g_array_unref(gpus);
    g_array_unref(ordinals);
    cuda_free_functions(&dc.cu);
    nvenc_free_functions(&dc.nv);
    return status;
}

const gpb_probe gpb_nvidia_probe = {
    .name = "nvidia",
    .discover = nvidia_discover,
    .driver_sessions = driver_sessions,
    .driver_utilisation = driver_utilisation,
    .free_data = g_free,
};
