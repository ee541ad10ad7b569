/* nvidia.h - the pure parts of NVIDIA discovery, exposed for tests. */
#ifndef GPB_NVIDIA_H
#define GPB_NVIDIA_H

#include <stdbool.h>
#include <stdint.h>

/* NVML brand values (nvmlBrandType_t) that are consumer cards, whose NVENC
 * sessions share one per-system cap. */
bool gpb_nvidia_brand_is_consumer(int brand);

/* The consumer NVENC session cap the driver version implies (Linux):
 * below 530: 3; 530-549: 5; 550 and later: 8. An unparsable version gives
 * the lowest, 3. */
int gpb_nvidia_consumer_cap(const char *driver_version);

/* The probe's verdict, as cached in the ledger's device record. */
typedef struct {
    uint32_t format;     /* GPB_NVENC_PROBE_FORMAT */
    int32_t open_status; /* NVENCSTATUS of nvEncOpenEncodeSessionEx, 0 = opened */
    uint32_t codecs;     /* bit (1 << gpubalance_codec) */
    uint32_t max_width;
    uint32_t max_height;
    uint32_t ten_bit;
    uint32_t engines;
    uint32_t reserved;
    uint64_t probe_ns; /* what the probe cost, for the record */
    char detail[128];  /* why there is no encoder, if none */
} gpb_nvenc_probe;

#define GPB_NVENC_PROBE_FORMAT 1u

/* The cache key: UUID, driver version and boot id. */
void gpb_nvenc_probe_key(const char *uuid, const char *driver_version, const char *boot_id, char *buf, size_t size);

/* NVENCSTATUS values that mean "this GPU has no encoder at all". */
bool gpb_nvenc_status_means_no_encoder(int status);

/* A name for an NVENCSTATUS ("NV_ENC_ERR_UNSUPPORTED_DEVICE"). */
const char *gpb_nvenc_status_name(int status);

/* Opens (and closes) one NVENC session on the GPU of this CUDA ordinal
 * and returns the NVENCSTATUS of nvEncOpenEncodeSessionEx, 0 = opened,
 * -1 when CUDA or NVENC cannot even be loaded here; detail gets what failed, as the probe says it. For classifying a
 * front end's failure whose message hides the driver's status. */
int gpb_nvenc_open_status(int cuda_ordinal, char *detail, size_t size);

/* NV_ENC_ERR_OUT_OF_MEMORY: the driver's refusal of a session past its
 * cap. */
#define GPB_NVENC_ERR_OUT_OF_MEMORY 10

#endif
