/* standin.h - the pretend NVIDIA GPUs that the stand-in driver libraries
 * (libcuda.so.1, libnvidia-encode.so.1, libnvidia-ml.so.1 built from this
 * directory) agree on, and the encoder sessions open on them.
 *
 * Test infrastructure only: the libraries are loaded through
 * LD_LIBRARY_PATH by tests and never installed. Unlike tests/stubs (which
 * only answer discovery), these encode for real: NVENC sessions run x264 or
 * x265 underneath, CUDA "device" memory is host memory.
 *
 * Configuration (environment):
 *   GPB_STANDIN_GPUS    GPUs in NVML order, ';' between GPUs, each
 *                       NAME,BRAND,CODECS: BRAND geforce or datacenter,
 *                       CODECS h264+hevc, h264, hevc or none (no NVENC).
 *                       Default: one "Stand-in datacenter GPU",
 *                       datacenter, h264+hevc.
 *   GPB_STANDIN_DRIVER  driver version (default 535.104.05); it sets the
 *                       GeForce session cap as the driver does (3 before
 *                       530, 5 from 530, 8 from 550).
 *   GPB_STANDIN_GEFORCE_CAP  a cap other than the driver version's (a
 *                       driver that changed its cap: what users learn).
 *   GPB_STANDIN_BUSY_PERCENT  the encoder utilisation NVML reports while
 *                       a session is open on the GPU (default 100).
 *   GPB_STANDIN_LOG     file: each encoder initialised appends
 *                       "encode NVML-INDEX CODEC NAME".
 *   GPB_STANDIN_STATE   directory that counts sessions across processes
 *                       (default /tmp/gpb-standin-UID); one file per open
 *                       session, held by an OFD lock, so a killed process's
 *                       sessions end with it.
 * CUDA enumerates the GPUs in reverse NVML order (as CUDA's "fastest
 * first" order can), so that mapping by PCI address is really exercised. */
#ifndef GPB_STANDIN_H
#define GPB_STANDIN_H

#include <stdbool.h>
#include <stddef.h>

#define STANDIN_MAX_GPUS 8
#define STANDIN_NAME_MAX 96

/* NVML brand codes the configuration's words map to. */
#define STANDIN_BRAND_DATACENTER 2 /* NVML_BRAND_TESLA */
#define STANDIN_BRAND_GEFORCE 5    /* NVML_BRAND_GEFORCE */

/* The head of a stand-in CUcontext, read by the stand-in NVENC to learn
 * which GPU a session is opened on. */
#define STANDIN_CONTEXT_MAGIC 0x43545853u
typedef struct {
    unsigned magic;
    int nvml_index;
    int ordinal;
} standin_context;

typedef struct {
    char name[STANDIN_NAME_MAX];
    int brand;
    bool h264;
    bool hevc;
} standin_gpu;

int standin_gpu_count(void);
/* NULL when index is out of range. */
const standin_gpu *standin_gpu_at(int nvml_index);
bool standin_gpu_has_nvenc(const standin_gpu *gpu);
const char *standin_driver_version(void);
int standin_cuda_to_nvml(int ordinal);
int standin_nvml_to_cuda(int nvml_index);
unsigned standin_pci_bus(int nvml_index);
void standin_uuid(int nvml_index, char *buf, size_t size);

/* Opens a session on GPU nvml_index: returns a descriptor holding it, or
 * -1 when the GeForce cap is reached, -2 on a failure of the state dir. */
int standin_session_open(int nvml_index);
void standin_session_close(int fd);
/* Sessions open on that GPU, by every process. */
int standin_sessions_on(int nvml_index);

#endif
