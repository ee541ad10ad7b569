/* fake_nvenc.c - a stand-in libnvidia-encode.so.1 for tests (see
 * fake_gpus.h). Built against nv-codec-headers' nvEncodeAPI.h. */
#include <ffnvcodec/nvEncodeAPI.h>
#include <stdint.h>

#include "fake_gpus.h"

static int ran_during_open;

static int gpu_of(void *device)
{
    return (int)(uintptr_t)device - 1; /* see fake_cuda.c */
}

static NVENCSTATUS NVENCAPI open_session(NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS *params, void **encoder)
{
    const char *log = getenv("FAKE_NVENC_LOG");
    const char *during = getenv("FAKE_NVENC_DURING_OPEN");
    int gpu = gpu_of(params->device);

    if (log) {
        FILE *f = fopen(log, "a");

        if (f) {
            fprintf(f, "open gpu %d\n", gpu);
            fclose(f);
        }
    }
    if (during && !ran_during_open++ && system(during) != 0)
        return NV_ENC_ERR_GENERIC;
    if (gpu == fake_env_int("FAKE_NVENC_NO_ENCODER", -1))
        return NV_ENC_ERR_UNSUPPORTED_DEVICE;
    *encoder = params->device;
    return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI guids(void *encoder, GUID *out, uint32_t size, uint32_t *count)
{
    (void)encoder;
    if (size < 2)
        return NV_ENC_ERR_INVALID_PARAM;
    out[0] = NV_ENC_CODEC_H264_GUID;
    out[1] = NV_ENC_CODEC_HEVC_GUID;
    *count = 2;
    return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI caps(void *encoder, GUID codec, NV_ENC_CAPS_PARAM *param, int *value)
{
    (void)encoder;
    (void)codec;
    switch (param->capsToQuery) {
    case NV_ENC_CAPS_WIDTH_MAX:
    case NV_ENC_CAPS_HEIGHT_MAX:
        *value = 4096;
        break;
    case NV_ENC_CAPS_SUPPORT_10BIT_ENCODE:
        *value = 1;
        break;
    case NV_ENC_CAPS_NUM_ENCODER_ENGINES:
        *value = 2;
        break;
    default:
        *value = 0;
    }
    return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI destroy(void *encoder)
{
    (void)encoder;
    return NV_ENC_SUCCESS;
}

NVENCSTATUS NVENCAPI NvEncodeAPICreateInstance(NV_ENCODE_API_FUNCTION_LIST *list)
{
    list->nvEncOpenEncodeSessionEx = open_session;
    list->nvEncGetEncodeGUIDs = guids;
    list->nvEncGetEncodeCaps = caps;
    list->nvEncDestroyEncoder = destroy;
    return NV_ENC_SUCCESS;
}

NVENCSTATUS NVENCAPI NvEncodeAPIGetMaxSupportedVersion(uint32_t *version)
{
    *version = (NVENCAPI_MAJOR_VERSION << 4) | NVENCAPI_MINOR_VERSION;
    return NV_ENC_SUCCESS;
}
