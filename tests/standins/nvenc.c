/* nvenc.c - a stand-in libnvidia-encode.so.1 (see standin.h): the NVENC
 * API of the nv-codec-headers it is built with (11.1 on Debian 12, 12.1
 * on Debian 13: the structures and versions are the headers', and
 * NvEncodeAPIGetMaxSupportedVersion answers that version), encoding in
 * software (swenc.h). It declares what it does:
 * no B-frames, no lookahead, no 10-bit, no 4:4:4, synchronous encode (so
 * every nvEncEncodePicture returns its picture at once), NV12/YV12/IYUV
 * input. Sessions are counted across processes (standin.c) so the GeForce
 * cap refuses the session past it with NV_ENC_ERR_OUT_OF_MEMORY, and a GPU
 * declared without NVENC refuses every session with
 * NV_ENC_ERR_UNSUPPORTED_DEVICE, as the driver does. */
#include <ffnvcodec/nvEncodeAPI.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "standin.h"
#include "swenc.h"

#define SESSION_MAGIC 0x53564e45u   /* "ENVS" */
#define PICTURE_MAGIC 0x43495056u   /* "VPIC" */
#define BITSTREAM_MAGIC 0x53544256u /* "VBTS" */
#define MAX_DIMENSION 4096
#define MIN_DIMENSION 145 /* NVENC's documented minimum for H.264/HEVC is about this */
#define INPUT_PITCH_ALIGNMENT 256
#define DEFAULT_GOP 250
#define DEFAULT_QP 28

typedef struct {
    uint32_t magic;
    uint32_t width, height, pitch;
    NV_ENC_BUFFER_FORMAT format;
    uint8_t *data;
    int owned; /* an input buffer owns its memory; a registered resource does not */
} picture;

typedef struct {
    uint32_t magic;
    uint8_t *data;
    size_t size, cap;
    uint64_t pts, duration;
    NV_ENC_PIC_TYPE type;
    uint32_t frame_idx;
    int qp;
} bitstream;

typedef struct {
    uint32_t magic;
    int gpu;
    int session_fd;
    int initialized;
    NV_ENC_INITIALIZE_PARAMS init;
    NV_ENC_CONFIG config;
    swenc *enc;
    uint8_t *chroma; /* deinterleaved NV12 chroma */
    size_t chroma_size;
    uint32_t frames;
    char last_error[200];
} session;

static const GUID *codec_guids[] = {&NV_ENC_CODEC_H264_GUID, &NV_ENC_CODEC_HEVC_GUID};
static const NV_ENC_BUFFER_FORMAT input_formats[] = {NV_ENC_BUFFER_FORMAT_NV12, NV_ENC_BUFFER_FORMAT_YV12,
                                                     NV_ENC_BUFFER_FORMAT_IYUV};

static int same_guid(const GUID *a, const GUID *b)
{
    return memcmp(a, b, sizeof(*a)) == 0;
}

static session *session_of(void *encoder)
{
    session *s = encoder;

    return s && s->magic == SESSION_MAGIC ? s : NULL;
}

static NVENCSTATUS fail(session *s, NVENCSTATUS status, const char *why)
{
    if (s)
        snprintf(s->last_error, sizeof(s->last_error), "stand-in NVENC: %s", why);
    return status;
}

static int gpu_has_codec(int gpu, const GUID *codec)
{
    const standin_gpu *g = standin_gpu_at(gpu);

    return g && ((g->h264 && same_guid(codec, &NV_ENC_CODEC_H264_GUID)) ||
                 (g->hevc && same_guid(codec, &NV_ENC_CODEC_HEVC_GUID)));
}

/* ---- session ---------------------------------------------------------------- */

/* NVENCAPI_VERSION packs the major version in the low byte and the minor
 * in the top one; the structures laid out here are the headers'. */
static int api_version_supported(uint32_t version)
{
    uint32_t major = version & 0xff, minor = version >> 24;

    return major < NVENCAPI_MAJOR_VERSION || (major == NVENCAPI_MAJOR_VERSION && minor <= NVENCAPI_MINOR_VERSION);
}

static NVENCSTATUS NVENCAPI open_session_ex(NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS *params, void **encoder)
{
    const standin_context *ctx;
    session *s;
    int fd;

    if (!params || !encoder)
        return NV_ENC_ERR_INVALID_PTR;
    if (params->deviceType != NV_ENC_DEVICE_TYPE_CUDA)
        return NV_ENC_ERR_UNSUPPORTED_DEVICE;
    if (!api_version_supported(params->apiVersion))
        return NV_ENC_ERR_INVALID_VERSION;
    ctx = params->device;
    if (!ctx || ctx->magic != STANDIN_CONTEXT_MAGIC || !standin_gpu_at(ctx->nvml_index))
        return NV_ENC_ERR_INVALID_DEVICE;
    if (!standin_gpu_has_nvenc(standin_gpu_at(ctx->nvml_index)))
        return NV_ENC_ERR_UNSUPPORTED_DEVICE;
    fd = standin_session_open(ctx->nvml_index);
    if (fd == -1)
        return NV_ENC_ERR_OUT_OF_MEMORY; /* the GeForce cap, as the driver says it */
    if (fd < 0)
        return NV_ENC_ERR_GENERIC;
    s = calloc(1, sizeof(*s));
    s->magic = SESSION_MAGIC;
    s->gpu = ctx->nvml_index;
    s->session_fd = fd;
    *encoder = s;
    return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI open_session(void *device, uint32_t device_type, void **encoder)
{
    NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS params = {
        .version = NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS_VER,
        .deviceType = device_type,
        .device = device,
        .apiVersion = NVENCAPI_VERSION,
    };

    return open_session_ex(&params, encoder);
}

static NVENCSTATUS NVENCAPI destroy_encoder(void *encoder)
{
    session *s = session_of(encoder);

    if (!s)
        return NV_ENC_ERR_INVALID_ENCODERDEVICE;
    swenc_close(s->enc);
    standin_session_close(s->session_fd);
    free(s->chroma);
    s->magic = 0;
    free(s);
    return NV_ENC_SUCCESS;
}

/* ---- queries ------------------------------------------------------------------ */

static NVENCSTATUS NVENCAPI encode_guid_count(void *encoder, uint32_t *count)
{
    session *s = session_of(encoder);

    if (!s)
        return NV_ENC_ERR_INVALID_ENCODERDEVICE;
    *count = 0;
    for (size_t i = 0; i < sizeof(codec_guids) / sizeof(codec_guids[0]); i++)
        *count += (uint32_t)gpu_has_codec(s->gpu, codec_guids[i]);
    return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI encode_guids(void *encoder, GUID *guids, uint32_t size, uint32_t *count)
{
    session *s = session_of(encoder);

    if (!s)
        return NV_ENC_ERR_INVALID_ENCODERDEVICE;
    *count = 0;
    for (size_t i = 0; i < sizeof(codec_guids) / sizeof(codec_guids[0]); i++)
        if (gpu_has_codec(s->gpu, codec_guids[i])) {
            if (*count == size)
                return NV_ENC_ERR_INVALID_PARAM;
            guids[(*count)++] = *codec_guids[i];
        }
    return NV_ENC_SUCCESS;
}

/* The profiles of a codec: H.264 baseline/main/high, HEVC main (no 10-bit). */
static size_t profiles_of(const GUID *codec, const GUID **out)
{
    static const GUID *h264[] = {&NV_ENC_CODEC_PROFILE_AUTOSELECT_GUID, &NV_ENC_H264_PROFILE_BASELINE_GUID,
                                 &NV_ENC_H264_PROFILE_MAIN_GUID, &NV_ENC_H264_PROFILE_HIGH_GUID};
    static const GUID *hevc[] = {&NV_ENC_CODEC_PROFILE_AUTOSELECT_GUID, &NV_ENC_HEVC_PROFILE_MAIN_GUID};
    size_t n = 0;

    if (same_guid(codec, &NV_ENC_CODEC_H264_GUID))
        for (; n < sizeof(h264) / sizeof(h264[0]); n++)
            out[n] = h264[n];
    else if (same_guid(codec, &NV_ENC_CODEC_HEVC_GUID))
        for (; n < sizeof(hevc) / sizeof(hevc[0]); n++)
            out[n] = hevc[n];
    return n;
}

static NVENCSTATUS NVENCAPI profile_guid_count(void *encoder, GUID codec, uint32_t *count)
{
    const GUID *profiles[8];
    session *s = session_of(encoder);

    if (!s)
        return NV_ENC_ERR_INVALID_ENCODERDEVICE;
    *count = gpu_has_codec(s->gpu, &codec) ? (uint32_t)profiles_of(&codec, profiles) : 0;
    return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI profile_guids(void *encoder, GUID codec, GUID *guids, uint32_t size, uint32_t *count)
{
    const GUID *profiles[8];
    session *s = session_of(encoder);
    size_t n;

    if (!s)
        return NV_ENC_ERR_INVALID_ENCODERDEVICE;
    if (!gpu_has_codec(s->gpu, &codec))
        return NV_ENC_ERR_INVALID_PARAM;
    n = profiles_of(&codec, profiles);
    if (n > size)
        return NV_ENC_ERR_INVALID_PARAM;
    for (size_t i = 0; i < n; i++)
        guids[i] = *profiles[i];
    *count = (uint32_t)n;
    return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI input_format_count(void *encoder, GUID codec, uint32_t *count)
{
    session *s = session_of(encoder);

    if (!s)
        return NV_ENC_ERR_INVALID_ENCODERDEVICE;
    *count = gpu_has_codec(s->gpu, &codec) ? sizeof(input_formats) / sizeof(input_formats[0]) : 0;
    return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI input_formats_of(void *encoder, GUID codec, NV_ENC_BUFFER_FORMAT *formats, uint32_t size,
                                             uint32_t *count)
{
    uint32_t n = sizeof(input_formats) / sizeof(input_formats[0]);
    session *s = session_of(encoder);

    if (!s)
        return NV_ENC_ERR_INVALID_ENCODERDEVICE;
    if (!gpu_has_codec(s->gpu, &codec) || size < n)
        return NV_ENC_ERR_INVALID_PARAM;
    memcpy(formats, input_formats, sizeof(input_formats));
    *count = n;
    return NV_ENC_SUCCESS;
}

static int cap_value(const GUID *codec, NV_ENC_CAPS cap)
{
    int hevc = same_guid(codec, &NV_ENC_CODEC_HEVC_GUID);

    switch (cap) {
    case NV_ENC_CAPS_WIDTH_MAX:
    case NV_ENC_CAPS_HEIGHT_MAX:
        return MAX_DIMENSION;
    case NV_ENC_CAPS_WIDTH_MIN:
    case NV_ENC_CAPS_HEIGHT_MIN:
        return MIN_DIMENSION;
    case NV_ENC_CAPS_MB_NUM_MAX:
        return (MAX_DIMENSION / 16) * (MAX_DIMENSION / 16);
    case NV_ENC_CAPS_MB_PER_SEC_MAX:
        return (MAX_DIMENSION / 16) * (MAX_DIMENSION / 16) * 30;
    case NV_ENC_CAPS_SUPPORTED_RATECONTROL_MODES:
        return NV_ENC_PARAMS_RC_CONSTQP | NV_ENC_PARAMS_RC_VBR | NV_ENC_PARAMS_RC_CBR;
    case NV_ENC_CAPS_LEVEL_MAX:
        return hevc ? NV_ENC_LEVEL_HEVC_62 : NV_ENC_LEVEL_H264_52;
    case NV_ENC_CAPS_LEVEL_MIN:
        return hevc ? NV_ENC_LEVEL_HEVC_1 : NV_ENC_LEVEL_H264_1;
    case NV_ENC_CAPS_SUPPORT_QPELMV:
    case NV_ENC_CAPS_SUPPORT_CUSTOM_VBV_BUF_SIZE:
    case NV_ENC_CAPS_SUPPORT_DYN_BITRATE_CHANGE:
    case NV_ENC_CAPS_SUPPORT_DYN_RES_CHANGE:
    case NV_ENC_CAPS_NUM_ENCODER_ENGINES:
        return 1;
    case NV_ENC_CAPS_SUPPORT_CABAC:
    case NV_ENC_CAPS_SUPPORT_ADAPTIVE_TRANSFORM:
        return !hevc;
    case NV_ENC_CAPS_SUPPORT_SAO:
        return hevc;
    default: /* B-frames, lookahead, 10-bit, 4:4:4, lossless, AQ, async, ... */
        return 0;
    }
}

static NVENCSTATUS NVENCAPI encode_caps(void *encoder, GUID codec, NV_ENC_CAPS_PARAM *param, int *value)
{
    session *s = session_of(encoder);

    if (!s)
        return NV_ENC_ERR_INVALID_ENCODERDEVICE;
    if (!param || !value)
        return NV_ENC_ERR_INVALID_PTR;
    if (!gpu_has_codec(s->gpu, &codec))
        return NV_ENC_ERR_INVALID_PARAM;
    *value = cap_value(&codec, param->capsToQuery);
    return NV_ENC_SUCCESS;
}

/* The presets before SDK 10, which nv-codec-headers 11 no longer declare
 * but drivers of the 11.x era still list and accept (GStreamer 1.22's
 * nvh264enc asks for them): DEFAULT, HP, HQ, BD, LOW_LATENCY_DEFAULT,
 * LOW_LATENCY_HQ, LOW_LATENCY_HP. The lossless ones are left out: the
 * stand-in declares no lossless encode. */
static const GUID legacy_presets[] = {
    {0xb2dfb705, 0x4ebd, 0x4c49, {0x9b, 0x5f, 0x24, 0xa7, 0x77, 0xd3, 0xe5, 0x87}},
    {0x60e4c59f, 0xe846, 0x4484, {0xa5, 0x6d, 0xcd, 0x45, 0xbe, 0x9f, 0xdd, 0xf6}},
    {0x34dba71d, 0xa77b, 0x4b8f, {0x9c, 0x3e, 0xb6, 0xd5, 0xda, 0x24, 0xc0, 0x12}},
    {0x82e3e450, 0xbdbb, 0x4e40, {0x98, 0x9c, 0x82, 0xa9, 0x0d, 0xf9, 0xef, 0x32}},
    {0x49df21c5, 0x6dfa, 0x4feb, {0x97, 0x87, 0x6a, 0xcc, 0x9e, 0xff, 0xb7, 0x26}},
    {0xc5f733b9, 0xea97, 0x4cf9, {0xbe, 0xc2, 0xbf, 0x78, 0xa7, 0x4f, 0xd1, 0x05}},
    {0x67082a44, 0x4bad, 0x48fa, {0x98, 0xea, 0x93, 0x05, 0x6d, 0x15, 0x0a, 0x58}},
};

static const GUID *preset_guids[] = {
    &NV_ENC_PRESET_P1_GUID, &NV_ENC_PRESET_P2_GUID, &NV_ENC_PRESET_P3_GUID, &NV_ENC_PRESET_P4_GUID,
    &NV_ENC_PRESET_P5_GUID, &NV_ENC_PRESET_P6_GUID, &NV_ENC_PRESET_P7_GUID, &legacy_presets[0],
    &legacy_presets[1],     &legacy_presets[2],     &legacy_presets[3],     &legacy_presets[4],
    &legacy_presets[5],     &legacy_presets[6],
};

static NVENCSTATUS NVENCAPI preset_count(void *encoder, GUID codec, uint32_t *count)
{
    session *s = session_of(encoder);

    if (!s)
        return NV_ENC_ERR_INVALID_ENCODERDEVICE;
    *count = gpu_has_codec(s->gpu, &codec) ? sizeof(preset_guids) / sizeof(preset_guids[0]) : 0;
    return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI preset_guids_of(void *encoder, GUID codec, GUID *guids, uint32_t size, uint32_t *count)
{
    uint32_t n = sizeof(preset_guids) / sizeof(preset_guids[0]);
    session *s = session_of(encoder);

    if (!s)
        return NV_ENC_ERR_INVALID_ENCODERDEVICE;
    if (!gpu_has_codec(s->gpu, &codec) || size < n)
        return NV_ENC_ERR_INVALID_PARAM;
    for (uint32_t i = 0; i < n; i++)
        guids[i] = *preset_guids[i];
    *count = n;
    return NV_ENC_SUCCESS;
}

/* Every preset is the same configuration: the software encoder underneath
 * has one speed. */
static void default_config(const GUID *codec, NV_ENC_CONFIG *config)
{
    uint32_t version = config->version;

    memset(config, 0, sizeof(*config));
    config->version = version;
    config->profileGUID = NV_ENC_CODEC_PROFILE_AUTOSELECT_GUID;
    config->gopLength = DEFAULT_GOP;
    config->frameIntervalP = 1;
    config->frameFieldMode = NV_ENC_PARAMS_FRAME_FIELD_MODE_FRAME;
    config->mvPrecision = NV_ENC_MV_PRECISION_QUARTER_PEL;
    config->rcParams.version = NV_ENC_RC_PARAMS_VER;
    config->rcParams.rateControlMode = NV_ENC_PARAMS_RC_VBR;
    config->rcParams.averageBitRate = 5000000;
    config->rcParams.constQP = (NV_ENC_QP){DEFAULT_QP, DEFAULT_QP, DEFAULT_QP};
    if (same_guid(codec, &NV_ENC_CODEC_HEVC_GUID)) {
        config->encodeCodecConfig.hevcConfig.idrPeriod = DEFAULT_GOP;
        config->encodeCodecConfig.hevcConfig.chromaFormatIDC = 1;
        config->encodeCodecConfig.hevcConfig.level = NV_ENC_LEVEL_AUTOSELECT;
    } else {
        config->encodeCodecConfig.h264Config.idrPeriod = DEFAULT_GOP;
        config->encodeCodecConfig.h264Config.chromaFormatIDC = 1;
        config->encodeCodecConfig.h264Config.level = NV_ENC_LEVEL_AUTOSELECT;
    }
}

static NVENCSTATUS NVENCAPI preset_config_ex(void *encoder, GUID codec, GUID preset, NV_ENC_TUNING_INFO tuning,
                                             NV_ENC_PRESET_CONFIG *out)
{
    session *s = session_of(encoder);

    (void)preset;
    (void)tuning;
    if (!s)
        return NV_ENC_ERR_INVALID_ENCODERDEVICE;
    if (!out)
        return NV_ENC_ERR_INVALID_PTR;
    if (!gpu_has_codec(s->gpu, &codec))
        return fail(s, NV_ENC_ERR_INVALID_PARAM, "codec not offered by this GPU");
    default_config(&codec, &out->presetCfg);
    return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI preset_config(void *encoder, GUID codec, GUID preset, NV_ENC_PRESET_CONFIG *out)
{
    return preset_config_ex(encoder, codec, preset, NV_ENC_TUNING_INFO_HIGH_QUALITY, out);
}

/* ---- initialisation --------------------------------------------------------------- */

static const char *profile_name(const GUID *profile)
{
    if (same_guid(profile, &NV_ENC_H264_PROFILE_BASELINE_GUID))
        return "baseline";
    if (same_guid(profile, &NV_ENC_H264_PROFILE_MAIN_GUID) || same_guid(profile, &NV_ENC_HEVC_PROFILE_MAIN_GUID))
        return "main";
    if (same_guid(profile, &NV_ENC_H264_PROFILE_HIGH_GUID))
        return "high";
    return NULL;
}

static void rate_control(const NV_ENC_RC_PARAMS *rc, swenc_params *p)
{
    switch (rc->rateControlMode) {
    case NV_ENC_PARAMS_RC_CONSTQP:
        p->rc = SWENC_RC_CQP;
        p->qp = rc->constQP.qpInterP ? (int)rc->constQP.qpInterP : DEFAULT_QP;
        return;
    case NV_ENC_PARAMS_RC_CBR:
#if NVENCAPI_MAJOR_VERSION < 12 /* SDK 12 dropped the HQ modes */
    case NV_ENC_PARAMS_RC_CBR_LOWDELAY_HQ:
    case NV_ENC_PARAMS_RC_CBR_HQ:
#endif
        p->rc = SWENC_RC_CBR;
        break;
    default:
        p->rc = SWENC_RC_VBR;
        if (rc->averageBitRate == 0 && rc->targetQuality) {
            p->rc = SWENC_RC_QUALITY;
            p->qp = rc->targetQuality;
            return;
        }
    }
    p->bitrate_kbps = (int)((rc->averageBitRate ? rc->averageBitRate : 5000000) / 1000);
    p->max_kbps = (int)(rc->maxBitRate / 1000);
    p->vbv_kbits = (int)(rc->vbvBufferSize / 1000);
}

static swenc_params encoder_params(const session *s)
{
    const NV_ENC_CONFIG *c = &s->config;
    swenc_params p = {
        .codec = same_guid(&s->init.encodeGUID, &NV_ENC_CODEC_HEVC_GUID) ? SWENC_HEVC : SWENC_H264,
        .width = (int)s->init.encodeWidth,
        .height = (int)s->init.encodeHeight,
        .fps_num = (int)s->init.frameRateNum,
        .fps_den = (int)s->init.frameRateDen,
        .keyint = c->gopLength == NVENC_INFINITE_GOPLENGTH ? 0 : (int)c->gopLength,
        .profile = profile_name(&c->profileGUID),
    };

    rate_control(&c->rcParams, &p);
    return p;
}

static NVENCSTATUS start_encoder(session *s, const NV_ENC_INITIALIZE_PARAMS *init)
{
    swenc_params p;

    if (!gpu_has_codec(s->gpu, &init->encodeGUID))
        return fail(s, NV_ENC_ERR_INVALID_PARAM, "codec not offered by this GPU");
    if (init->encodeWidth < MIN_DIMENSION || init->encodeHeight < MIN_DIMENSION || init->encodeWidth > MAX_DIMENSION ||
        init->encodeHeight > MAX_DIMENSION)
        return fail(s, NV_ENC_ERR_INVALID_PARAM, "size out of the declared range");
    if (init->enableEncodeAsync)
        return fail(s, NV_ENC_ERR_UNSUPPORTED_PARAM, "asynchronous mode is Windows-only");
    s->init = *init;
    if (init->encodeConfig) {
        s->config = *init->encodeConfig;
    } else {
        s->config.version = NV_ENC_CONFIG_VER;
        default_config(&init->encodeGUID, &s->config);
    }
    if (s->config.frameIntervalP > 1)
        return fail(s, NV_ENC_ERR_UNSUPPORTED_PARAM, "B-frames are not supported (NV_ENC_CAPS_NUM_MAX_BFRAMES is 0)");
    s->init.encodeConfig = &s->config;
    p = encoder_params(s);
    swenc_close(s->enc);
    s->enc = swenc_open(&p);
    if (!s->enc)
        return fail(s, NV_ENC_ERR_INVALID_PARAM, "the software encoder refused the configuration");
    s->initialized = 1;
    return NV_ENC_SUCCESS;
}

/* Tests learn which GPU an unmodified client really encoded on. */
static void log_encode(const session *s)
{
    const char *path = getenv("GPB_STANDIN_LOG");
    FILE *f = path && *path ? fopen(path, "a") : NULL;

    if (!f)
        return;
    fprintf(f, "encode %d %s %s\n", s->gpu, same_guid(&s->init.encodeGUID, &NV_ENC_CODEC_HEVC_GUID) ? "hevc" : "h264",
            standin_gpu_at(s->gpu)->name);
    fclose(f);
}

static NVENCSTATUS NVENCAPI initialize_encoder(void *encoder, NV_ENC_INITIALIZE_PARAMS *init)
{
    session *s = session_of(encoder);
    NVENCSTATUS status;

    if (!s)
        return NV_ENC_ERR_INVALID_ENCODERDEVICE;
    if (!init)
        return NV_ENC_ERR_INVALID_PTR;
    status = start_encoder(s, init);
    if (status == NV_ENC_SUCCESS)
        log_encode(s);
    return status;
}

static NVENCSTATUS NVENCAPI reconfigure_encoder(void *encoder, NV_ENC_RECONFIGURE_PARAMS *params)
{
    session *s = session_of(encoder);

    if (!s)
        return NV_ENC_ERR_INVALID_ENCODERDEVICE;
    if (!s->initialized)
        return NV_ENC_ERR_ENCODER_NOT_INITIALIZED;
    /* The software encoder restarts with the new settings: the next
     * picture is an IDR with new parameter sets. */
    return start_encoder(s, &params->reInitEncodeParams);
}

static NVENCSTATUS NVENCAPI sequence_params(void *encoder, NV_ENC_SEQUENCE_PARAM_PAYLOAD *payload)
{
    session *s = session_of(encoder);
    const uint8_t *headers;
    size_t size;

    if (!s)
        return NV_ENC_ERR_INVALID_ENCODERDEVICE;
    if (!s->initialized)
        return NV_ENC_ERR_ENCODER_NOT_INITIALIZED;
    swenc_headers(s->enc, &headers, &size);
    if (size > payload->inBufferSize)
        return fail(s, NV_ENC_ERR_INVALID_PARAM, "sequence parameter buffer too small");
    memcpy(payload->spsppsBuffer, headers, size);
    if (payload->outSPSPPSPayloadSize)
        *payload->outSPSPPSPayloadSize = (uint32_t)size;
    return NV_ENC_SUCCESS;
}

/* ---- buffers ------------------------------------------------------------------------ */

static int format_supported(NV_ENC_BUFFER_FORMAT format)
{
    for (size_t i = 0; i < sizeof(input_formats) / sizeof(input_formats[0]); i++)
        if (input_formats[i] == format)
            return 1;
    return 0;
}

static NVENCSTATUS NVENCAPI create_input_buffer(void *encoder, NV_ENC_CREATE_INPUT_BUFFER *params)
{
    session *s = session_of(encoder);
    picture *pic;

    if (!s)
        return NV_ENC_ERR_INVALID_ENCODERDEVICE;
    if (!format_supported(params->bufferFmt))
        return fail(s, NV_ENC_ERR_UNSUPPORTED_PARAM, "input format not supported (NV12, YV12, IYUV are)");
    pic = calloc(1, sizeof(*pic));
    pic->magic = PICTURE_MAGIC;
    pic->width = params->width;
    pic->height = params->height;
    pic->pitch = (params->width + INPUT_PITCH_ALIGNMENT - 1) / INPUT_PITCH_ALIGNMENT * INPUT_PITCH_ALIGNMENT;
    pic->format = params->bufferFmt;
    pic->data = calloc(1, (size_t)pic->pitch * pic->height * 3 / 2);
    pic->owned = 1;
    params->inputBuffer = pic;
    return NV_ENC_SUCCESS;
}

static picture *picture_of(void *p)
{
    picture *pic = p;

    return pic && pic->magic == PICTURE_MAGIC ? pic : NULL;
}

static NVENCSTATUS NVENCAPI destroy_input_buffer(void *encoder, NV_ENC_INPUT_PTR buffer)
{
    picture *pic = picture_of(buffer);

    (void)encoder;
    if (!pic || !pic->owned)
        return NV_ENC_ERR_INVALID_PTR;
    pic->magic = 0;
    free(pic->data);
    free(pic);
    return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI lock_input_buffer(void *encoder, NV_ENC_LOCK_INPUT_BUFFER *params)
{
    picture *pic = picture_of(params->inputBuffer);

    (void)encoder;
    if (!pic || !pic->owned)
        return NV_ENC_ERR_INVALID_PTR;
    params->bufferDataPtr = pic->data;
    params->pitch = pic->pitch;
    return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI unlock_input_buffer(void *encoder, NV_ENC_INPUT_PTR buffer)
{
    (void)encoder;
    return picture_of(buffer) ? NV_ENC_SUCCESS : NV_ENC_ERR_INVALID_PTR;
}

static NVENCSTATUS NVENCAPI register_resource(void *encoder, NV_ENC_REGISTER_RESOURCE *params)
{
    session *s = session_of(encoder);
    picture *pic;

    if (!s)
        return NV_ENC_ERR_INVALID_ENCODERDEVICE;
    if (params->resourceType != NV_ENC_INPUT_RESOURCE_TYPE_CUDADEVICEPTR)
        return fail(s, NV_ENC_ERR_UNIMPLEMENTED, "only CUDA device pointers can be registered");
    if (!format_supported(params->bufferFormat))
        return fail(s, NV_ENC_ERR_UNSUPPORTED_PARAM, "input format not supported (NV12, YV12, IYUV are)");
    pic = calloc(1, sizeof(*pic));
    pic->magic = PICTURE_MAGIC;
    pic->width = params->width;
    pic->height = params->height;
    pic->pitch = params->pitch;
    pic->format = params->bufferFormat;
    pic->data = params->resourceToRegister; /* a stand-in CUdeviceptr is a host address */
    params->registeredResource = pic;
    return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI unregister_resource(void *encoder, NV_ENC_REGISTERED_PTR resource)
{
    picture *pic = picture_of(resource);

    (void)encoder;
    if (!pic || pic->owned)
        return NV_ENC_ERR_INVALID_PTR;
    pic->magic = 0;
    free(pic);
    return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI map_input_resource(void *encoder, NV_ENC_MAP_INPUT_RESOURCE *params)
{
    picture *pic = picture_of(params->registeredResource);

    (void)encoder;
    if (!pic)
        return NV_ENC_ERR_RESOURCE_NOT_REGISTERED;
    params->mappedResource = pic;
    params->mappedBufferFmt = pic->format;
    return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI unmap_input_resource(void *encoder, NV_ENC_INPUT_PTR mapped)
{
    (void)encoder;
    return picture_of(mapped) ? NV_ENC_SUCCESS : NV_ENC_ERR_RESOURCE_NOT_MAPPED;
}

static bitstream *bitstream_of(void *p)
{
    bitstream *b = p;

    return b && b->magic == BITSTREAM_MAGIC ? b : NULL;
}

static NVENCSTATUS NVENCAPI create_bitstream_buffer(void *encoder, NV_ENC_CREATE_BITSTREAM_BUFFER *params)
{
    session *s = session_of(encoder);
    bitstream *b;

    if (!s)
        return NV_ENC_ERR_INVALID_ENCODERDEVICE;
    b = calloc(1, sizeof(*b));
    b->magic = BITSTREAM_MAGIC;
    params->bitstreamBuffer = b;
    params->bitstreamBufferPtr = NULL;
    return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI destroy_bitstream_buffer(void *encoder, NV_ENC_OUTPUT_PTR buffer)
{
    bitstream *b = bitstream_of(buffer);

    (void)encoder;
    if (!b)
        return NV_ENC_ERR_INVALID_PTR;
    b->magic = 0;
    free(b->data);
    free(b);
    return NV_ENC_SUCCESS;
}

/* ---- encoding ------------------------------------------------------------------------- */

/* The I420 planes of a picture; NV12's chroma is deinterleaved into the
 * session's buffer. */
static int planes_of(session *s, const picture *pic, const uint8_t *planes[3], int strides[3])
{
    size_t luma = (size_t)pic->pitch * pic->height;
    size_t chroma_w = (s->init.encodeWidth + 1) / 2, chroma_h = (s->init.encodeHeight + 1) / 2;

    planes[0] = pic->data;
    strides[0] = (int)pic->pitch;
    if (pic->format == NV_ENC_BUFFER_FORMAT_NV12) {
        uint8_t *u, *v;

        if (s->chroma_size < chroma_w * chroma_h * 2) {
            free(s->chroma);
            s->chroma_size = chroma_w * chroma_h * 2;
            s->chroma = malloc(s->chroma_size);
            if (!s->chroma)
                return -1;
        }
        u = s->chroma;
        v = s->chroma + chroma_w * chroma_h;
        for (size_t y = 0; y < chroma_h; y++) {
            const uint8_t *row = pic->data + luma + y * pic->pitch;

            for (size_t x = 0; x < chroma_w; x++) {
                u[y * chroma_w + x] = row[2 * x];
                v[y * chroma_w + x] = row[2 * x + 1];
            }
        }
        planes[1] = u;
        planes[2] = v;
        strides[1] = strides[2] = (int)chroma_w;
        return 0;
    }
    /* IYUV: Y U V; YV12: Y V U; chroma pitch is half the luma pitch. */
    planes[1] = pic->data + luma;
    planes[2] = planes[1] + (size_t)(pic->pitch / 2) * ((pic->height + 1) / 2);
    strides[1] = strides[2] = (int)(pic->pitch / 2);
    if (pic->format == NV_ENC_BUFFER_FORMAT_YV12) {
        const uint8_t *swap = planes[1];

        planes[1] = planes[2];
        planes[2] = swap;
    }
    return 0;
}

static NV_ENC_PIC_TYPE picture_type(swenc_frame_type type)
{
    switch (type) {
    case SWENC_FRAME_IDR:
        return NV_ENC_PIC_TYPE_IDR;
    case SWENC_FRAME_I:
        return NV_ENC_PIC_TYPE_I;
    case SWENC_FRAME_B:
        return NV_ENC_PIC_TYPE_B;
    default:
        return NV_ENC_PIC_TYPE_P;
    }
}

static int store(bitstream *b, const swenc_frame *frame)
{
    if (frame->size > b->cap) {
        uint8_t *grown = realloc(b->data, frame->size);

        if (!grown)
            return -1;
        b->data = grown;
        b->cap = frame->size;
    }
    memcpy(b->data, frame->data, frame->size);
    b->size = frame->size;
    b->type = picture_type(frame->type);
    b->qp = frame->qp;
    return 0;
}

static NVENCSTATUS NVENCAPI encode_picture(void *encoder, NV_ENC_PIC_PARAMS *params)
{
    session *s = session_of(encoder);
    const uint8_t *planes[3];
    int strides[3];
    picture *pic;
    bitstream *out;
    swenc_frame frame;
    int force_idr;

    if (!s)
        return NV_ENC_ERR_INVALID_ENCODERDEVICE;
    if (!s->initialized)
        return NV_ENC_ERR_ENCODER_NOT_INITIALIZED;
    if ((params->encodePicFlags & NV_ENC_PIC_FLAG_EOS) && !params->inputBuffer)
        return NV_ENC_SUCCESS; /* synchronous: nothing is held back to drain */
    pic = picture_of(params->inputBuffer);
    out = bitstream_of(params->outputBitstream);
    if (!pic || !out)
        return fail(s, NV_ENC_ERR_INVALID_PTR, "input or output buffer unknown");
    if (pic->height < s->init.encodeHeight || pic->pitch < s->init.encodeWidth)
        return fail(s, NV_ENC_ERR_INVALID_PARAM, "input buffer smaller than the encode size");
    if (planes_of(s, pic, planes, strides) < 0)
        return NV_ENC_ERR_OUT_OF_MEMORY;
    force_idr = (params->encodePicFlags & (NV_ENC_PIC_FLAG_FORCEIDR | NV_ENC_PIC_FLAG_FORCEINTRA)) != 0;
    if (swenc_encode(s->enc, planes, strides, force_idr, &frame) < 0 || store(out, &frame) < 0)
        return fail(s, NV_ENC_ERR_GENERIC, "the software encoder failed");
    out->pts = params->inputTimeStamp;
    out->duration = params->inputDuration;
    out->frame_idx = s->frames++;
    return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI lock_bitstream(void *encoder, NV_ENC_LOCK_BITSTREAM *params)
{
    bitstream *b = bitstream_of(params->outputBitstream);

    (void)encoder;
    if (!b)
        return NV_ENC_ERR_INVALID_PTR;
    params->bitstreamBufferPtr = b->data;
    params->bitstreamSizeInBytes = (uint32_t)b->size;
    params->outputTimeStamp = b->pts;
    params->outputDuration = b->duration;
    params->pictureType = b->type;
    params->pictureStruct = NV_ENC_PIC_STRUCT_FRAME;
    params->frameIdx = b->frame_idx;
    params->frameAvgQP = (uint32_t)b->qp;
    params->hwEncodeStatus = 0;
    params->numSlices = 1;
    if (params->sliceOffsets)
        params->sliceOffsets[0] = 0;
    return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI unlock_bitstream(void *encoder, NV_ENC_OUTPUT_PTR buffer)
{
    (void)encoder;
    return bitstream_of(buffer) ? NV_ENC_SUCCESS : NV_ENC_ERR_INVALID_PTR;
}

static NVENCSTATUS NVENCAPI encode_stats(void *encoder, NV_ENC_STAT *stats)
{
    session *s = session_of(encoder);

    if (!s)
        return NV_ENC_ERR_INVALID_ENCODERDEVICE;
    stats->picIdx = s->frames ? s->frames - 1 : 0;
    return NV_ENC_SUCCESS;
}

static NVENCSTATUS NVENCAPI set_io_cuda_streams(void *encoder, NV_ENC_CUSTREAM_PTR in, NV_ENC_CUSTREAM_PTR out)
{
    (void)in;
    (void)out;
    return session_of(encoder) ? NV_ENC_SUCCESS : NV_ENC_ERR_INVALID_ENCODERDEVICE;
}

static const char *NVENCAPI last_error(void *encoder)
{
    session *s = session_of(encoder);

    return s ? s->last_error : "";
}

/* Windows-only events, motion-estimation-only mode and reference
 * invalidation are not part of the stand-in. */
static NVENCSTATUS NVENCAPI async_event(void *encoder, NV_ENC_EVENT_PARAMS *params)
{
    (void)encoder;
    (void)params;
    return NV_ENC_ERR_UNSUPPORTED_PARAM;
}

static NVENCSTATUS NVENCAPI invalidate_ref_frames(void *encoder, uint64_t timestamp)
{
    (void)encoder;
    (void)timestamp;
    return NV_ENC_ERR_UNIMPLEMENTED;
}

static NVENCSTATUS NVENCAPI create_mv_buffer(void *encoder, NV_ENC_CREATE_MV_BUFFER *params)
{
    (void)encoder;
    (void)params;
    return NV_ENC_ERR_UNIMPLEMENTED;
}

static NVENCSTATUS NVENCAPI destroy_mv_buffer(void *encoder, NV_ENC_OUTPUT_PTR buffer)
{
    (void)encoder;
    (void)buffer;
    return NV_ENC_ERR_UNIMPLEMENTED;
}

static NVENCSTATUS NVENCAPI motion_estimation_only(void *encoder, NV_ENC_MEONLY_PARAMS *params)
{
    (void)encoder;
    (void)params;
    return NV_ENC_ERR_UNIMPLEMENTED;
}

static NVENCSTATUS NVENCAPI sequence_param_ex(void *encoder, NV_ENC_INITIALIZE_PARAMS *init,
                                              NV_ENC_SEQUENCE_PARAM_PAYLOAD *payload)
{
    (void)init;
    return sequence_params(encoder, payload);
}

NVENCSTATUS NVENCAPI NvEncodeAPICreateInstance(NV_ENCODE_API_FUNCTION_LIST *list)
{
    if (!list)
        return NV_ENC_ERR_INVALID_PTR;
    list->nvEncOpenEncodeSession = open_session;
    list->nvEncGetEncodeGUIDCount = encode_guid_count;
    list->nvEncGetEncodeProfileGUIDCount = profile_guid_count;
    list->nvEncGetEncodeProfileGUIDs = profile_guids;
    list->nvEncGetEncodeGUIDs = encode_guids;
    list->nvEncGetInputFormatCount = input_format_count;
    list->nvEncGetInputFormats = input_formats_of;
    list->nvEncGetEncodeCaps = encode_caps;
    list->nvEncGetEncodePresetCount = preset_count;
    list->nvEncGetEncodePresetGUIDs = preset_guids_of;
    list->nvEncGetEncodePresetConfig = preset_config;
    list->nvEncGetEncodePresetConfigEx = preset_config_ex;
    list->nvEncInitializeEncoder = initialize_encoder;
    list->nvEncCreateInputBuffer = create_input_buffer;
    list->nvEncDestroyInputBuffer = destroy_input_buffer;
    list->nvEncCreateBitstreamBuffer = create_bitstream_buffer;
    list->nvEncDestroyBitstreamBuffer = destroy_bitstream_buffer;
    list->nvEncEncodePicture = encode_picture;
    list->nvEncLockBitstream = lock_bitstream;
    list->nvEncUnlockBitstream = unlock_bitstream;
    list->nvEncLockInputBuffer = lock_input_buffer;
    list->nvEncUnlockInputBuffer = unlock_input_buffer;
    list->nvEncGetEncodeStats = encode_stats;
    list->nvEncGetSequenceParams = sequence_params;
    list->nvEncGetSequenceParamEx = sequence_param_ex;
    list->nvEncRegisterAsyncEvent = async_event;
    list->nvEncUnregisterAsyncEvent = async_event;
    list->nvEncMapInputResource = map_input_resource;
    list->nvEncUnmapInputResource = unmap_input_resource;
    list->nvEncDestroyEncoder = destroy_encoder;
    list->nvEncInvalidateRefFrames = invalidate_ref_frames;
    list->nvEncOpenEncodeSessionEx = open_session_ex;
    list->nvEncRegisterResource = register_resource;
    list->nvEncUnregisterResource = unregister_resource;
    list->nvEncReconfigureEncoder = reconfigure_encoder;
    list->nvEncCreateMVBuffer = create_mv_buffer;
    list->nvEncDestroyMVBuffer = destroy_mv_buffer;
    list->nvEncRunMotionEstimationOnly = motion_estimation_only;
    list->nvEncGetLastErrorString = last_error;
    list->nvEncSetIOCudaStreams = set_io_cuda_streams;
    return NV_ENC_SUCCESS;
}

NVENCSTATUS NVENCAPI NvEncodeAPIGetMaxSupportedVersion(uint32_t *version)
{
    *version = (NVENCAPI_MAJOR_VERSION << 4) | NVENCAPI_MINOR_VERSION;
    return NV_ENC_SUCCESS;
}
