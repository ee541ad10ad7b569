/* nvml.c - a stand-in libnvidia-ml.so.1 (see standin.h): the GPUs the
 * configuration declares, and encoder session counts that are the sessions
 * open through the stand-in NVENC by every process, so a plain
 * `ffmpeg -c:v h264_nvenc` shows as load, as it does on a real driver. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "standin.h"

#define NVML_SUCCESS 0
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ARCH_AMPERE 7

typedef struct {
    char bus_id_legacy[16];
    unsigned domain, bus, device, pci_device_id, pci_subsystem_id;
    char bus_id[32];
} pci_info;

typedef struct {
    unsigned session_id, pid, vgpu_instance, codec_type, h_res, v_res, avg_fps, avg_latency;
} encoder_session_info;

/* An NVML device handle is the NVML index + 1. */
#define HANDLE(i) ((void *)(unsigned long)((i) + 1))
#define INDEX(d) ((int)(unsigned long)(d)-1)

static const standin_gpu *gpu_of(void *device)
{
    return standin_gpu_at(INDEX(device));
}

int nvmlInit_v2(void)
{
    return NVML_SUCCESS;
}

int nvmlInit(void)
{
    return NVML_SUCCESS;
}

int nvmlInitWithFlags(unsigned flags)
{
    (void)flags;
    return NVML_SUCCESS;
}

int nvmlShutdown(void)
{
    return NVML_SUCCESS;
}

const char *nvmlErrorString(int result)
{
    switch (result) {
    case NVML_SUCCESS:
        return "Success";
    case NVML_ERROR_INVALID_ARGUMENT:
        return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED:
        return "Not Supported";
    default:
        return "Unknown Error";
    }
}

int nvmlSystemGetDriverVersion(char *version, unsigned size)
{
    snprintf(version, size, "%s", standin_driver_version());
    return NVML_SUCCESS;
}

int nvmlDeviceGetCount_v2(unsigned *count)
{
    *count = (unsigned)standin_gpu_count();
    return NVML_SUCCESS;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned index, void **device)
{
    if (!standin_gpu_at((int)index))
        return NVML_ERROR_INVALID_ARGUMENT;
    *device = HANDLE(index);
    return NVML_SUCCESS;
}

int nvmlDeviceGetName(void *device, char *name, unsigned size)
{
    const standin_gpu *gpu = gpu_of(device);

    if (!gpu)
        return NVML_ERROR_INVALID_ARGUMENT;
    snprintf(name, size, "%s", gpu->name);
    return NVML_SUCCESS;
}

int nvmlDeviceGetUUID(void *device, char *uuid, unsigned size)
{
    if (!gpu_of(device))
        return NVML_ERROR_INVALID_ARGUMENT;
    standin_uuid(INDEX(device), uuid, size);
    return NVML_SUCCESS;
}

int nvmlDeviceGetPciInfo_v3(void *device, pci_info *pci)
{
    if (!gpu_of(device))
        return NVML_ERROR_INVALID_ARGUMENT;
    memset(pci, 0, sizeof(*pci));
    pci->bus = standin_pci_bus(INDEX(device));
    snprintf(pci->bus_id, sizeof(pci->bus_id), "00000000:%02X:00.0", pci->bus);
    snprintf(pci->bus_id_legacy, sizeof(pci->bus_id_legacy), "0000:%02X:00.0", pci->bus);
    return NVML_SUCCESS;
}

int nvmlDeviceGetBrand(void *device, int *brand)
{
    const standin_gpu *gpu = gpu_of(device);

    if (!gpu)
        return NVML_ERROR_INVALID_ARGUMENT;
    *brand = gpu->brand;
    return NVML_SUCCESS;
}

int nvmlDeviceGetArchitecture(void *device, unsigned *arch)
{
    if (!gpu_of(device))
        return NVML_ERROR_INVALID_ARGUMENT;
    *arch = NVML_ARCH_AMPERE;
    return NVML_SUCCESS;
}

int nvmlDeviceGetEncoderStats(void *device, unsigned *sessions, unsigned *fps, unsigned *latency)
{
    if (!gpu_of(device))
        return NVML_ERROR_INVALID_ARGUMENT;
    *sessions = (unsigned)standin_sessions_on(INDEX(device));
    *fps = *latency = 0;
    return NVML_SUCCESS;
}

/* The stand-in keeps no per-session details: the count is all it knows. */
int nvmlDeviceGetEncoderSessions(void *device, unsigned *count, encoder_session_info *infos)
{
    (void)infos;
    if (!gpu_of(device))
        return NVML_ERROR_INVALID_ARGUMENT;
    *count = 0;
    return NVML_ERROR_NOT_SUPPORTED;
}

static unsigned busy_percent(void)
{
    const char *set = getenv("GPB_STANDIN_BUSY_PERCENT");
    int percent = set ? atoi(set) : 100;

    return percent < 0 ? 0 : percent > 100 ? 100 : (unsigned)percent;
}

int nvmlDeviceGetEncoderUtilization(void *device, unsigned *utilization, unsigned *period_us)
{
    const standin_gpu *gpu = gpu_of(device);

    if (!gpu)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (!standin_gpu_has_nvenc(gpu))
        return NVML_ERROR_NOT_SUPPORTED;
    /* No clock to measure against: a busy encoder reads as fully used,
     * or as GPB_STANDIN_BUSY_PERCENT says (small streams on a big GPU). */
    *utilization = standin_sessions_on(INDEX(device)) > 0 ? busy_percent() : 0;
    *period_us = 1000000;
    return NVML_SUCCESS;
}

int nvmlDeviceGetEncoderCapacity(void *device, int type, unsigned *capacity)
{
    const standin_gpu *gpu = gpu_of(device);

    (void)type;
    if (!gpu)
        return NVML_ERROR_INVALID_ARGUMENT;
    *capacity = standin_gpu_has_nvenc(gpu) ? 100 : 0;
    return NVML_SUCCESS;
}
