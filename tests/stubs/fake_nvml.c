/* fake_nvml.c - a stand-in libnvidia-ml.so.1 for tests (see fake_gpus.h). */
#include "fake_gpus.h"

typedef struct {
    char bus_id_legacy[16];
    unsigned domain, bus, device, pci_device_id, pci_subsystem_id;
    char bus_id[32];
} pci_info;

#define DEVICE(i) ((void *)(unsigned long)((i) + 1))
#define INDEX(d) ((int)(unsigned long)(d)-1)

int nvmlInit_v2(void)
{
    return fake_env_int("FAKE_NVML_INIT_FAIL", 0);
}

const char *nvmlErrorString(int r)
{
    return r == 18 ? "RM has detected an NVML/RM version mismatch" : "fake error";
}

int nvmlDeviceGetCount_v2(unsigned *count)
{
    *count = (unsigned)fake_gpu_count();
    return 0;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned i, void **device)
{
    if ((int)i >= fake_gpu_count())
        return 2;
    *device = DEVICE(i);
    return 0;
}

int nvmlDeviceGetName(void *device, char *name, unsigned size)
{
    snprintf(name, size, "NVIDIA Fake GPU %d", INDEX(device));
    return 0;
}

int nvmlDeviceGetUUID(void *device, char *uuid, unsigned size)
{
    fake_uuid(INDEX(device), uuid, size);
    return 0;
}

int nvmlDeviceGetPciInfo_v3(void *device, pci_info *pci)
{
    memset(pci, 0, sizeof(*pci));
    pci->bus = fake_pci_bus(INDEX(device));
    snprintf(pci->bus_id, sizeof(pci->bus_id), "00000000:%02X:00.0", pci->bus);
    return 0;
}

int nvmlDeviceGetBrand(void *device, int *brand)
{
    *brand = fake_env_list("FAKE_NVML_BRANDS", INDEX(device), 5);
    return 0;
}

int nvmlSystemGetDriverVersion(char *version, unsigned size)
{
    const char *v = getenv("FAKE_NVIDIA_DRIVER");

    snprintf(version, size, "%s", v && *v ? v : "535.104.05");
    return 0;
}

int nvmlDeviceGetEncoderStats(void *device, unsigned *sessions, unsigned *fps, unsigned *latency)
{
    *sessions = (unsigned)fake_env_list("FAKE_NVML_SESSIONS", INDEX(device), 0);
    *fps = *latency = 0;
    return 0;
}

/* NVML_ERROR_NOT_SUPPORTED unless the test sets an architecture. */
int nvmlDeviceGetArchitecture(void *device, unsigned *architecture)
{
    int value = fake_env_list("FAKE_NVML_ARCH", INDEX(device), -1);

    if (value < 0)
        return 3;
    *architecture = (unsigned)value;
    return 0;
}

/* NVML_ERROR_NOT_SUPPORTED unless the test sets a utilisation. */
int nvmlDeviceGetEncoderUtilization(void *device, unsigned *utilization, unsigned *sampling_period_us)
{
    int value = fake_env_list("FAKE_NVML_ENC_UTIL", INDEX(device), -1);

    if (value < 0)
        return 3;
    *utilization = (unsigned)value;
    *sampling_period_us = 1000000;
    return 0;
}
