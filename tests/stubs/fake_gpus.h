/* fake_gpus.h - the pretend GPUs that the stub NVIDIA libraries agree on.
 *
 * These stubs stand in for the NVIDIA driver's libraries in tests only;
 * they are loaded through LD_LIBRARY_PATH and never installed. Environment:
 *   FAKE_NVML_GPUS=N            GPUs NVML sees (default 0)
 *   FAKE_NVIDIA_DRIVER=V        driver version (default 535.104.05)
 *   FAKE_NVML_BRANDS=5,2        NVML brand per GPU (default 5, GeForce)
 *   FAKE_NVML_INIT_FAIL=R       nvmlInit returns R
 *   FAKE_NVML_SESSIONS=2,0      encoder sessions NVML reports per GPU
 *   FAKE_NVML_ARCH=8,7          nvmlDeviceGetArchitecture per GPU (default:
 *                               not supported)
 *   FAKE_NVML_ENC_UTIL=90,5     encoder utilisation (%) per GPU (default:
 *                               not supported)
 *   FAKE_CUDA_HIDE=I            CUDA does not see NVML GPU I
 *   FAKE_NVENC_NO_ENCODER=I     NVML GPU I has no NVENC (open returns 2)
 *   FAKE_NVENC_LOG=FILE         each session open appends a line
 *   FAKE_NVENC_DURING_OPEN=CMD  run CMD while the first session is open
 * CUDA enumerates the GPUs in reverse NVML order, as CUDA's "fastest
 * first" order can, so that mapping by PCI address is really tested. */
#ifndef FAKE_GPUS_H
#define FAKE_GPUS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline int fake_env_int(const char *name, int fallback)
{
    const char *v = getenv(name);

    return v && *v ? atoi(v) : fallback;
}

/* The n-th entry of a comma list in the environment, or fallback. */
static inline int fake_env_list(const char *name, int n, int fallback)
{
    const char *v = getenv(name);

    for (int i = 0; v && *v; i++) {
        if (i == n)
            return atoi(v);
        v = strchr(v, ',');
        if (v)
            v++;
    }
    return fallback;
}

static inline int fake_gpu_count(void)
{
    return fake_env_int("FAKE_NVML_GPUS", 0);
}

/* PCI bus of NVML GPU i: 0x17, 0x65, 0xb3... */
static inline unsigned fake_pci_bus(int i)
{
    return 0x17 + 0x4e * (unsigned)i;
}

static inline void fake_uuid(int i, char *buf, size_t size)
{
    snprintf(buf, size, "GPU-0000000%d-fake-4000-8000-00000000000%d", i, i);
}

#endif
