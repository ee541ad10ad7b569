/*
 * balance_h264 / balance_hevc / balance_av1: encoders that place each
 * stream on the NVENC GPU, VA-API device or CPU that libgpubalance chooses
 *
 * This file is part of FFmpeg.
 *
 * FFmpeg is free software; you can redistribute it and/or
 * modify it under the terms of the GNU Lesser General Public
 * License as published by the Free Software Foundation; either
 * version 2.1 of the License, or (at your option) any later version.
 *
 * FFmpeg is distributed in the hope that it will be useful,
 * but WITHOUT ANY WARRANTY; without even the implied warranty of
 * MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the GNU
 * Lesser General Public License for more details.
 *
 * You should have received a copy of the GNU Lesser General Public
 * License along with FFmpeg; if not, write to the Free Software
 * Foundation, Inc., 51 Franklin Street, Fifth Floor, Boston, MA 02110-1301 USA
 */

/**
 * @file
 * Wrapper encoders driven by libgpubalance.
 *
 * At init the wrapper describes the stream to libgpubalance, takes a lease
 * and opens the child encoder libgpubalance names for it: NVENC on the
 * lease's CUDA ordinal, VA-API on the lease's render node (software frames
 * are uploaded), or the software encoder. When the child fails to open,
 * the failure is reported, libgpubalance learns from it and names the next
 * candidate. Frames and packets are then passed through; the lease ends at
 * close.
 *
 * Options keep the meaning they have on libx264 on every child: preset and
 * crf/cq use x264's names and scale and are translated by libgpubalance's
 * tables; a generic option reaches the child only when the user set it
 * (the wrapper's defaults are sentinels, as libx264's are), so each child
 * keeps its own defaults otherwise; a value the chosen child cannot take is
 * a warning naming the option and the child.
 */

#include <gpubalance.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "config_components.h"

#include "libavutil/avstring.h"
#include "libavutil/hwcontext.h"
#include "libavutil/mem.h"
#include "libavutil/opt.h"
#include "libavutil/pixdesc.h"

#include "avcodec.h"
#include "codec_internal.h"
#include "encode.h"
#if LIBAVCODEC_VERSION_MAJOR < 60
#include "internal.h"
#endif

typedef struct BalanceEncContext {
    const AVClass *class;

    /* placement */
    int policy;
    char *order;
    char *device;
    int when_full;

    /* meanings shared by every child */
    char *preset;
    char *tune;
    char *profile;
    char *level;
    float crf;
    int qp;

    /* options of some children, passed to those that have them */
    char *x264_params;
    char *x264opts;
    char *x265_params;
    char *svtav1_params;
    char *aom_params;
    int forced_idr;
    int sc_threshold;
    int a53cc;
    AVDictionary *child_opts;

    gpubalance_lease *lease;
    AVCodecContext *defaults; /* this wrapper's defaults: what "unset" is */
    AVCodecContext *child;
    const char *child_name;
    int family;
    AVBufferRef *hw_device;
    AVBufferRef *hw_frames;
    AVFrame *frame;
    AVFrame *hw_frame;
} BalanceEncContext;

#define FAMILY(f) (1u << GPUBALANCE_ENCODER_##f)
#define ALL_FAMILIES (~0u)

/* The generic options passed on when set, and the families that use them
 * (from each wrapper's use of AVCodecContext): setting one that the
 * chosen child ignores is a warning. */
static const struct {
    const char *name;
    unsigned families;
} generic_options[] = {
    { "b",                 ALL_FAMILIES },
    { "maxrate",           ALL_FAMILIES },
    { "bufsize",           ALL_FAMILIES },
    { "minrate",           FAMILY(AOM) },
    { "rc_init_occupancy", FAMILY(X264) | FAMILY(X265) | FAMILY(AOM) | FAMILY(VAAPI) },
    { "g",                 ALL_FAMILIES },
    { "bf",                FAMILY(X264) | FAMILY(X265) | FAMILY(NVENC) | FAMILY(VAAPI) },
    { "refs",              FAMILY(X264) | FAMILY(X265) | FAMILY(AOM) | FAMILY(NVENC) },
    { "keyint_min",        FAMILY(X264) | FAMILY(X265) | FAMILY(AOM) },
    { "qmin",              ALL_FAMILIES },
    { "qmax",              ALL_FAMILIES },
    { "qdiff",             FAMILY(X264) | FAMILY(X265) },
    { "qblur",             FAMILY(X264) | FAMILY(X265) },
    { "qcomp",             FAMILY(X264) | FAMILY(X265) | FAMILY(AOM) },
    { "i_qfactor",         FAMILY(X264) | FAMILY(X265) | FAMILY(NVENC) | FAMILY(VAAPI) },
    { "b_qfactor",         FAMILY(X264) | FAMILY(X265) | FAMILY(NVENC) | FAMILY(VAAPI) },
    { "trellis",           FAMILY(X264) },
    { "me_range",          FAMILY(X264) },
    { "subq",              FAMILY(X264) },
    { "slices",            FAMILY(X264) | FAMILY(NVENC) | FAMILY(VAAPI) },
    { "threads",           FAMILY(X264) | FAMILY(X265) | FAMILY(SVTAV1) | FAMILY(AOM) },
    { "thread_type",       FAMILY(X264) },
};

#define OFFSET(x) offsetof(BalanceEncContext, x)

/* Private options of some children, passed to the child when set. */
static const struct {
    const char *name;
    size_t offset;
    int is_int;
} child_private_options[] = {
    { "x264-params",   OFFSET(x264_params) },
    { "x264opts",      OFFSET(x264opts) },
    { "x265-params",   OFFSET(x265_params) },
    { "svtav1-params", OFFSET(svtav1_params) },
    { "aom-params",    OFFSET(aom_params) },
    { "forced-idr",    OFFSET(forced_idr),   1 },
    { "sc_threshold",  OFFSET(sc_threshold), 1 },
    { "a53cc",         OFFSET(a53cc),        1 },
};

static gpubalance_codec balance_codec(const AVCodecContext *avctx)
{
    switch (avctx->codec_id) {
    case AV_CODEC_ID_HEVC: return GPUBALANCE_CODEC_HEVC;
    case AV_CODEC_ID_AV1:  return GPUBALANCE_CODEC_AV1;
    default:               return GPUBALANCE_CODEC_H264;
    }
}

/* libgpubalance's status codes as AVERROR codes. */
static int balance_error(int status)
{
    switch (status) {
    case GPUBALANCE_ERR_INVALID_ARGUMENT:
    case GPUBALANCE_ERR_CONFIG:
    case GPUBALANCE_ERR_BAD_STATE:        return AVERROR(EINVAL);
    case GPUBALANCE_ERR_NO_MEMORY:        return AVERROR(ENOMEM);
    case GPUBALANCE_ERR_LEDGER_IO:
    case GPUBALANCE_ERR_LEDGER_DAMAGED:
    case GPUBALANCE_ERR_LEDGER_NEWER:
    case GPUBALANCE_ERR_LEDGER_UNSAFE:    return AVERROR(EIO);
    case GPUBALANCE_ERR_TIMEOUT:          return AVERROR(ETIMEDOUT);
    case GPUBALANCE_ERR_NO_CANDIDATE:
    case GPUBALANCE_ERR_NO_SUCH_DEVICE:   return AVERROR(ENODEV);
    case GPUBALANCE_ERR_UNSUPPORTED:      return AVERROR(ENOSYS);
    default:                              return AVERROR(EBUSY);
    }
}

static int describe_stream(AVCodecContext *avctx, gpubalance_stream **out)
{
    BalanceEncContext *s = avctx->priv_data;
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(avctx->pix_fmt);
    gpubalance_stream *stream;
    double fps = 0;
    int ret;

    if (avctx->framerate.num > 0 && avctx->framerate.den > 0)
        fps = av_q2d(avctx->framerate);
    else if (avctx->time_base.num > 0 && avctx->time_base.den > 0 &&
             avctx->time_base.den <= GPUBALANCE_MAX_FPS * (int64_t)avctx->time_base.num)
        fps = 1 / av_q2d(avctx->time_base);
    if ((ret = gpubalance_stream_new(&stream)) < 0)
        return balance_error(ret);
    if ((ret = gpubalance_stream_set_codec(stream, balance_codec(avctx))) < 0 ||
        (ret = gpubalance_stream_set_size(stream, avctx->width, avctx->height)) < 0 ||
        (ret = gpubalance_stream_set_fps(stream, fps)) < 0 ||
        (ret = gpubalance_stream_set_bit_depth(stream, desc && desc->comp[0].depth > 8 ? 10 : 8)) < 0 ||
        (ret = gpubalance_stream_set_label(stream, "ffmpeg")) < 0 ||
        (s->policy >= 0 &&
         (ret = gpubalance_stream_set_policy(stream, gpubalance_policy_name(s->policy))) < 0) ||
        (ret = gpubalance_stream_set_order(stream, s->order)) < 0 ||
        (ret = gpubalance_stream_set_device(stream, s->device)) < 0 ||
        (s->when_full >= 0 &&
         (ret = gpubalance_stream_set_when_full(stream, gpubalance_when_full_name(s->when_full))) < 0)) {
        av_log(avctx, AV_LOG_ERROR, "%s\n", gpubalance_last_error());
        gpubalance_stream_free(stream);
        return balance_error(ret);
    }
    *out = stream;
    return 0;
}

/* Sets an option on the child (its private options first); a value the
 * child does not take is a warning naming both. */
static void set_child_option(AVCodecContext *avctx, const char *name, const char *value)
{
    BalanceEncContext *s = avctx->priv_data;

    if (av_opt_set(s->child, name, value, AV_OPT_SEARCH_CHILDREN) < 0)
        av_log(avctx, AV_LOG_WARNING, "%s does not take %s=%s; ignored\n", s->child_name, name, value);
}

static void set_child_number(AVCodecContext *avctx, const char *name, double value)
{
    char text[32];

    snprintf(text, sizeof(text), "%g", value);
    set_child_option(avctx, name, text);
}

static void not_honoured(AVCodecContext *avctx, const char *name, const char *value)
{
    BalanceEncContext *s = avctx->priv_data;

    av_log(avctx, AV_LOG_WARNING, "%s has no equivalent of %s=%s; ignored\n", s->child_name, name, value);
}

/* Generic options the user set (those that differ from this wrapper's
 * defaults) reach the child; flags only in the bits the user changed, so
 * that the child's own default flags (libx264's closed GOP) stay. */
static void pass_generic_options(AVCodecContext *avctx)
{
    BalanceEncContext *s = avctx->priv_data;
    AVCodecContext *child = s->child;
    int64_t changed;

    for (size_t i = 0; i < FF_ARRAY_ELEMS(generic_options); i++) {
        const char *name = generic_options[i].name;
        uint8_t *value = NULL, *unset = NULL;

        if (av_opt_get(avctx, name, 0, &value) >= 0 && av_opt_get(s->defaults, name, 0, &unset) >= 0 &&
            strcmp(value, unset)) {
            if (!(generic_options[i].families & (1u << s->family)))
                av_log(avctx, AV_LOG_WARNING, "%s does not use -%s; ignored\n", s->child_name, name);
            else if (av_opt_set(child, name, value, 0) < 0)
                av_log(avctx, AV_LOG_WARNING, "%s does not take %s=%s; ignored\n", s->child_name, name, value);
        }
        av_free(value);
        av_free(unset);
    }
    changed = avctx->flags ^ s->defaults->flags;
    child->flags = (child->flags & ~changed) | (avctx->flags & changed);
    changed = avctx->flags2 ^ s->defaults->flags2;
    child->flags2 = (child->flags2 & ~changed) | (avctx->flags2 & changed);
}

static void pass_private_options(AVCodecContext *avctx)
{
    BalanceEncContext *s = avctx->priv_data;

    for (size_t i = 0; i < FF_ARRAY_ELEMS(child_private_options); i++) {
        const char *name = child_private_options[i].name;
        const uint8_t *field = (const uint8_t *)s + child_private_options[i].offset;
        char number[16];
        const char *value;

        if (child_private_options[i].is_int) {
            if (*(const int *)field < 0)
                continue;
            snprintf(number, sizeof(number), "%d", *(const int *)field);
            value = number;
        } else if (!(value = *(char *const *)field)) {
            continue;
        }
        if (!av_opt_find(s->child->priv_data, name, NULL, 0, 0))
            av_log(avctx, AV_LOG_WARNING, "%s has no option %s; ignored\n", s->child_name, name);
        else
            set_child_option(avctx, name, value);
    }
}

/* preset, crf/cq and qp in the child's own terms. */
static void pass_speed_and_quality(AVCodecContext *avctx)
{
    BalanceEncContext *s = avctx->priv_data;
    AVCodecContext *child = s->child;

    if (s->preset) {
        const char *value = gpubalance_preset_value(s->family, s->preset);

        if (s->family == GPUBALANCE_ENCODER_VAAPI)
            child->compression_level = atoi(value);
        else
            set_child_option(avctx, s->family == GPUBALANCE_ENCODER_AOM ? "cpu-used" : "preset", value);
    }
    if (s->crf >= 0) {
        double value = gpubalance_quality_value(s->family, s->crf);

        switch (s->family) {
        case GPUBALANCE_ENCODER_NVENC:
            set_child_option(avctx, "rc", "vbr");
            set_child_number(avctx, "cq", value);
            break;
        case GPUBALANCE_ENCODER_VAAPI:
            child->global_quality = lrint(value);
            break;
        default:
            set_child_number(avctx, "crf", value);
            break;
        }
    }
    if (s->qp >= 0) {
        switch (s->family) {
        case GPUBALANCE_ENCODER_NVENC:
            set_child_option(avctx, "rc", "constqp");
            set_child_number(avctx, "qp", s->qp);
            break;
        case GPUBALANCE_ENCODER_VAAPI:
            set_child_option(avctx, "rc_mode", "CQP");
            child->global_quality = s->qp;
            break;
        case GPUBALANCE_ENCODER_AOM: {
            char value[16];

            snprintf(value, sizeof(value), "%d", s->qp);
            not_honoured(avctx, "qp", value);
            break;
        }
        default:
            set_child_number(avctx, "qp", s->qp);
            break;
        }
    }
}

/* x264's tunes where the child has an equivalent. */
static void pass_tune(AVCodecContext *avctx)
{
    BalanceEncContext *s = avctx->priv_data;
    const char *tune = s->tune;
    int zerolatency = !strcmp(tune, "zerolatency");

    switch (s->family) {
    case GPUBALANCE_ENCODER_X264:
        set_child_option(avctx, "tune", tune);
        break;
    case GPUBALANCE_ENCODER_X265:
        if (strcmp(tune, "film") && strcmp(tune, "stillimage"))
            set_child_option(avctx, "tune", tune);
        else
            not_honoured(avctx, "tune", tune);
        break;
    case GPUBALANCE_ENCODER_NVENC:
        if (zerolatency) {
            set_child_option(avctx, "tune", "ull");
            set_child_option(avctx, "zerolatency", "1");
        } else {
            not_honoured(avctx, "tune", tune);
        }
        break;
    case GPUBALANCE_ENCODER_VAAPI:
        if (zerolatency) {
            if (avctx->max_b_frames < 0)
                s->child->max_b_frames = 0;
            set_child_option(avctx, "async_depth", "1");
        } else {
            not_honoured(avctx, "tune", tune);
        }
        break;
    case GPUBALANCE_ENCODER_AOM:
        if (zerolatency) {
            set_child_option(avctx, "usage", "realtime");
            set_child_option(avctx, "lag-in-frames", "0");
        } else if (!strcmp(tune, "psnr") || !strcmp(tune, "ssim")) {
            set_child_option(avctx, "tune", tune);
        } else {
            not_honoured(avctx, "tune", tune);
        }
        break;
    default:
        not_honoured(avctx, "tune", tune);
        break;
    }
}

/* A level as "4.1" (or "41") in the child's own terms. */
static void pass_level(AVCodecContext *avctx)
{
    BalanceEncContext *s = avctx->priv_data;
    int major = 0, minor = 0;

    switch (s->family) {
    case GPUBALANCE_ENCODER_X264:
    case GPUBALANCE_ENCODER_NVENC:
    case GPUBALANCE_ENCODER_VAAPI:
        set_child_option(avctx, "level", s->level);
        break;
    case GPUBALANCE_ENCODER_X265: {
        char *params = s->x265_params ? av_asprintf("%s:level-idc=%s", s->x265_params, s->level)
                                      : av_asprintf("level-idc=%s", s->level);
        if (params)
            set_child_option(avctx, "x265-params", params);
        av_free(params);
        break;
    }
    case GPUBALANCE_ENCODER_SVTAV1:
        if (sscanf(s->level, "%d.%d", &major, &minor) >= 1)
            s->child->level = major * 10 + minor;
        else
            not_honoured(avctx, "level", s->level);
        break;
    default:
        not_honoured(avctx, "level", s->level);
        break;
    }
}

static void copy_stream_parameters(AVCodecContext *avctx, AVCodecContext *child)
{
    child->width                  = avctx->width;
    child->height                 = avctx->height;
    child->pix_fmt                = avctx->pix_fmt;
    child->time_base              = avctx->time_base;
    child->framerate              = avctx->framerate;
    child->sample_aspect_ratio    = avctx->sample_aspect_ratio;
    child->field_order            = avctx->field_order;
    child->color_range            = avctx->color_range;
    child->color_primaries        = avctx->color_primaries;
    child->color_trc              = avctx->color_trc;
    child->colorspace             = avctx->colorspace;
    child->chroma_sample_location = avctx->chroma_sample_location;
}

/* Whether codec takes frames of this format (VA-API children take
 * surfaces; the device's own list is checked when they are made). */
static int takes_format(const AVCodec *codec, enum AVPixelFormat format)
{
    const enum AVPixelFormat *formats = NULL;
    int n = 0;

#if LIBAVCODEC_VERSION_MAJOR < 61
    formats = codec->pix_fmts;
    while (formats && formats[n] != AV_PIX_FMT_NONE)
        n++;
#else
    if (avcodec_get_supported_config(NULL, codec, AV_CODEC_CONFIG_PIX_FORMAT, 0,
                                     (const void **)&formats, &n) < 0)
        return 0;
#endif
    if (!formats)
        return 1;
    for (int i = 0; i < n; i++)
        if (formats[i] == format)
            return 1;
    return 0;
}

/* A VA-API device and frames context on the lease's render node; software
 * frames are uploaded into its surfaces. */
static int setup_vaapi(AVCodecContext *avctx, const char *node)
{
    BalanceEncContext *s = avctx->priv_data;
    AVHWFramesConstraints *constraints;
    AVHWFramesContext *frames;
    int accepted = 0, ret;

    if ((ret = av_hwdevice_ctx_create(&s->hw_device, AV_HWDEVICE_TYPE_VAAPI, node, NULL, 0)) < 0)
        return ret;
    constraints = av_hwdevice_get_hwframe_constraints(s->hw_device, NULL);
    for (int i = 0; constraints && constraints->valid_sw_formats &&
                    constraints->valid_sw_formats[i] != AV_PIX_FMT_NONE; i++)
        accepted |= constraints->valid_sw_formats[i] == avctx->pix_fmt;
    av_hwframe_constraints_free(&constraints);
    if (!accepted) {
        av_log(avctx, AV_LOG_WARNING, "%s has no %s surfaces\n", node, av_get_pix_fmt_name(avctx->pix_fmt));
        return AVERROR(ENOSYS);
    }
    if (!(s->hw_frames = av_hwframe_ctx_alloc(s->hw_device)))
        return AVERROR(ENOMEM);
    frames                    = (AVHWFramesContext *)s->hw_frames->data;
    frames->format            = AV_PIX_FMT_VAAPI;
    frames->sw_format         = avctx->pix_fmt;
    frames->width             = avctx->width;
    frames->height            = avctx->height;
    frames->initial_pool_size = 20;
    if ((ret = av_hwframe_ctx_init(s->hw_frames)) < 0)
        return ret;
    if (!(s->child->hw_frames_ctx = av_buffer_ref(s->hw_frames)))
        return AVERROR(ENOMEM);
    s->child->pix_fmt    = AV_PIX_FMT_VAAPI;
    s->child->sw_pix_fmt = avctx->pix_fmt;
    return 0;
}

/* A CUDA device on the lease's ordinal for an NVENC child. Given one,
 * nvenc opens its session there and returns the driver's error as such
 * (out of memory at the session cap: ENOMEM); choosing the GPU itself
 * (-gpu), it reports any failure as AVERROR_EXTERNAL, which tells
 * libgpubalance nothing to learn from. */
static int setup_cuda(AVCodecContext *avctx)
{
    BalanceEncContext *s = avctx->priv_data;
    char ordinal[16];
    int ret;

    snprintf(ordinal, sizeof(ordinal), "%d", gpubalance_lease_cuda_ordinal(s->lease));
    if ((ret = av_hwdevice_ctx_create(&s->hw_device, AV_HWDEVICE_TYPE_CUDA, ordinal, NULL, 0)) < 0)
        return ret;
    if (!(s->child->hw_device_ctx = av_buffer_ref(s->hw_device)))
        return AVERROR(ENOMEM);
    return 0;
}

static void drop_child(BalanceEncContext *s)
{
    avcodec_free_context(&s->child);
    av_buffer_unref(&s->hw_frames);
    av_buffer_unref(&s->hw_device);
}

/* The first encoder libgpubalance lists for the lease's backend that this
 * FFmpeg has. */
static const AVCodec *find_child(AVCodecContext *avctx, gpubalance_backend backend)
{
    BalanceEncContext *s = avctx->priv_data;
    size_t n = 0;
    const gpubalance_encoder_info *encoders =
        gpubalance_encoders(GPUBALANCE_FRAMEWORK_FFMPEG, backend, balance_codec(avctx), &n);

    for (size_t i = 0; i < n; i++) {
        const AVCodec *codec = avcodec_find_encoder_by_name(encoders[i].name);

        if (codec) {
            s->child_name = encoders[i].name;
            s->family     = encoders[i].family;
            return codec;
        }
    }
    s->child_name = n ? encoders[0].name : "none";
    return NULL;
}

/* child_opts entries this child has; the others are named in a warning
 * (each was checked at init to exist on some candidate). */
static int child_dictionary(AVCodecContext *avctx, AVDictionary **out)
{
    BalanceEncContext *s = avctx->priv_data;
    const AVDictionaryEntry *e = NULL;

    while ((e = av_dict_get(s->child_opts, "", e, AV_DICT_IGNORE_SUFFIX))) {
        if (!av_opt_find(s->child, e->key, NULL, 0, AV_OPT_SEARCH_CHILDREN))
            av_log(avctx, AV_LOG_WARNING, "%s has no option %s (child_opts); ignored\n", s->child_name, e->key);
        else if (av_dict_set(out, e->key, e->value, 0) < 0)
            return AVERROR(ENOMEM);
    }
    return 0;
}

/* Opens the lease's encoder. Returns 0, or an error with *kind saying what
 * libgpubalance should learn from it. */
static int open_child(AVCodecContext *avctx, const AVCodec *codec, gpubalance_failure *kind)
{
    BalanceEncContext *s = avctx->priv_data;
    gpubalance_backend backend = gpubalance_lease_backend(s->lease);
    AVDictionary *opts = NULL;
    const AVDictionaryEntry *left;
    char why[AV_ERROR_MAX_STRING_SIZE];
    int ret;

    *kind = GPUBALANCE_FAILURE_UNAVAILABLE;
    if (!codec) {
        av_log(avctx, AV_LOG_WARNING, "%s is not built into this FFmpeg\n", s->child_name);
        return AVERROR_ENCODER_NOT_FOUND;
    }
    *kind = GPUBALANCE_FAILURE_OTHER;
    if (backend != GPUBALANCE_BACKEND_VAAPI && !takes_format(codec, avctx->pix_fmt)) {
        av_log(avctx, AV_LOG_WARNING, "%s does not take %s frames\n", s->child_name,
               av_get_pix_fmt_name(avctx->pix_fmt));
        return AVERROR(ENOSYS);
    }
    if (!(s->child = avcodec_alloc_context3(codec)))
        return AVERROR(ENOMEM);
    copy_stream_parameters(avctx, s->child);
    pass_generic_options(avctx);
    pass_private_options(avctx);
    pass_speed_and_quality(avctx);
    if (s->tune)
        pass_tune(avctx);
    if (s->profile)
        set_child_option(avctx, "profile", s->profile);
    if (s->level)
        pass_level(avctx);
    if (backend == GPUBALANCE_BACKEND_NVENC && (ret = setup_cuda(avctx)) < 0)
        goto fail;
    if (backend == GPUBALANCE_BACKEND_VAAPI &&
        (ret = setup_vaapi(avctx, gpubalance_lease_render_node(s->lease))) < 0)
        goto fail;
    if ((ret = child_dictionary(avctx, &opts)) < 0)
        goto fail;
    if ((ret = avcodec_open2(s->child, codec, &opts)) < 0)
        goto fail;
    left = NULL;
    while ((left = av_dict_get(opts, "", left, AV_DICT_IGNORE_SUFFIX)))
        av_log(avctx, AV_LOG_WARNING, "%s did not use %s=%s (child_opts)\n", s->child_name, left->key, left->value);
    av_dict_free(&opts);
    return 0;

fail:
    av_dict_free(&opts);
    av_strerror(ret, why, sizeof(why));
    *kind = gpubalance_failure_classify(backend, ret < 0 && ret > -4096 ? -ret : 0, why);
    return ret;
}

static int try_candidates(AVCodecContext *avctx)
{
    BalanceEncContext *s = avctx->priv_data;

    for (;;) {
        const AVCodec *codec = find_child(avctx, gpubalance_lease_backend(s->lease));
        gpubalance_failure kind = GPUBALANCE_FAILURE_CAPACITY;
        char why[256];
        int ret;

        gpubalance_lease_set_encoder(s->lease, s->child_name);
        if ((ret = gpubalance_lease_check_open(s->lease)) < 0) {
            av_strlcpy(why, gpubalance_last_error(), sizeof(why));
            ret = balance_error(ret);
        } else if ((ret = open_child(avctx, codec, &kind)) >= 0) {
            return 0;
        } else {
            av_strerror(ret, why, sizeof(why));
        }
        av_log(avctx, AV_LOG_WARNING, "%s (%s) failed: %s; trying the next candidate\n",
               gpubalance_lease_device(s->lease), s->child_name, why);
        drop_child(s);
        if (gpubalance_lease_report_failure(&s->lease, kind, why) < 0) {
            av_log(avctx, AV_LOG_ERROR, "%s\n", gpubalance_last_error());
            return ret;
        }
    }
}

/* The child's CPB properties (buffer size, rates) for the muxer. */
static int copy_cpb_properties(AVCodecContext *avctx, const AVCodecContext *child)
{
    for (int i = 0; i < child->nb_coded_side_data; i++) {
        const AVPacketSideData *sd = &child->coded_side_data[i];
        AVCPBProperties *props;

        if (sd->type != AV_PKT_DATA_CPB_PROPERTIES || sd->size < sizeof(*props))
            continue;
#if LIBAVCODEC_VERSION_MAJOR < 60
        props = ff_add_cpb_side_data(avctx);
#else
        props = ff_encode_add_cpb_side_data(avctx);
#endif
        if (!props)
            return AVERROR(ENOMEM);
        memcpy(props, sd->data, sizeof(*props));
    }
    return 0;
}

/* Every child_opts entry must be an option of some encoder this wrapper
 * may choose: a typo is an error, not a silent drop. */
static int check_child_opts(AVCodecContext *avctx)
{
    BalanceEncContext *s = avctx->priv_data;
    const AVDictionaryEntry *e = NULL;

    while ((e = av_dict_get(s->child_opts, "", e, AV_DICT_IGNORE_SUFFIX))) {
        int found = 0;

        for (int backend = 0; backend < GPUBALANCE_N_BACKENDS && !found; backend++) {
            size_t n = 0;
            const gpubalance_encoder_info *encoders =
                gpubalance_encoders(GPUBALANCE_FRAMEWORK_FFMPEG, backend, balance_codec(avctx), &n);

            for (size_t i = 0; i < n && !found; i++) {
                const AVCodec *codec = avcodec_find_encoder_by_name(encoders[i].name);
                const AVClass *generic = avcodec_get_class();
                const AVClass *private = codec ? codec->priv_class : NULL;

                found = codec && ((private && av_opt_find(&private, e->key, NULL, 0, AV_OPT_SEARCH_FAKE_OBJ)) ||
                                  av_opt_find(&generic, e->key, NULL, 0, AV_OPT_SEARCH_FAKE_OBJ));
            }
        }
        if (!found) {
            av_log(avctx, AV_LOG_ERROR, "child_opts: no encoder %s may choose has an option '%s'\n",
                   avctx->codec->name, e->key);
            return AVERROR_OPTION_NOT_FOUND;
        }
    }
    return 0;
}

static av_cold int balance_init(AVCodecContext *avctx)
{
    BalanceEncContext *s = avctx->priv_data;
    gpubalance_context *context = gpubalance_context_shared();
    gpubalance_stream *stream;
    int ret;

    if (!context) {
        av_log(avctx, AV_LOG_ERROR, "gpubalance is not usable: %s\n", gpubalance_last_error());
        return AVERROR_EXTERNAL;
    }
    if (s->preset && !gpubalance_preset_value(GPUBALANCE_ENCODER_X264, s->preset)) {
        av_log(avctx, AV_LOG_ERROR, "preset '%s' is not one of:", s->preset);
        for (size_t i = 0; gpubalance_preset_name(i); i++)
            av_log(avctx, AV_LOG_ERROR, " %s", gpubalance_preset_name(i));
        av_log(avctx, AV_LOG_ERROR, "\n");
        return AVERROR(EINVAL);
    }
    if ((ret = check_child_opts(avctx)) < 0)
        return ret;
    if (!(s->defaults = avcodec_alloc_context3(avctx->codec)))
        return AVERROR(ENOMEM);
    if ((ret = describe_stream(avctx, &stream)) < 0)
        return ret;
    ret = gpubalance_lease_acquire(context, stream, &s->lease);
    gpubalance_stream_free(stream);
    if (ret < 0) {
        av_log(avctx, AV_LOG_ERROR, "No encoder is available: %s\n", gpubalance_last_error());
        return balance_error(ret);
    }
    if ((ret = try_candidates(avctx)) < 0)
        return ret;
    gpubalance_lease_mark_opened(s->lease);
    av_log(avctx, AV_LOG_INFO, "selected %s (%s)\n", gpubalance_lease_device(s->lease), s->child_name);
    av_log(avctx, AV_LOG_VERBOSE, "%s, attempt %d\n", gpubalance_lease_reason(s->lease),
           gpubalance_lease_attempt(s->lease));

    if (s->child->extradata_size > 0) {
        avctx->extradata = av_mallocz(s->child->extradata_size + AV_INPUT_BUFFER_PADDING_SIZE);
        if (!avctx->extradata)
            return AVERROR(ENOMEM);
        memcpy(avctx->extradata, s->child->extradata, s->child->extradata_size);
        avctx->extradata_size = s->child->extradata_size;
    }
    if ((ret = copy_cpb_properties(avctx, s->child)) < 0)
        return ret;
    avctx->bit_rate     = s->child->bit_rate;
    avctx->has_b_frames = s->child->has_b_frames;
    if (!(s->frame = av_frame_alloc()) || !(s->hw_frame = av_frame_alloc()))
        return AVERROR(ENOMEM);
    return 0;
}

/* Sends a frame to the child, uploaded when it encodes from surfaces. */
static int send_frame(BalanceEncContext *s, AVFrame *frame)
{
    int ret;

    if (!frame || !s->hw_frames)
        return avcodec_send_frame(s->child, frame);
    av_frame_unref(s->hw_frame);
    if ((ret = av_hwframe_get_buffer(s->hw_frames, s->hw_frame, 0)) < 0 ||
        (ret = av_hwframe_transfer_data(s->hw_frame, frame, 0)) < 0 ||
        (ret = av_frame_copy_props(s->hw_frame, frame)) < 0)
        return ret;
    return avcodec_send_frame(s->child, s->hw_frame);
}

static int balance_receive_packet(AVCodecContext *avctx, AVPacket *pkt)
{
    BalanceEncContext *s = avctx->priv_data;
    int ret;

    if (!s->child)
        return AVERROR(EINVAL); /* a failed flush lost it */
    for (;;) {
        ret = avcodec_receive_packet(s->child, pkt);
        if (ret != AVERROR(EAGAIN))
            return ret;
        ret = ff_encode_get_frame(avctx, s->frame);
        if (ret == AVERROR_EOF) {
            if ((ret = send_frame(s, NULL)) < 0 && ret != AVERROR_EOF)
                return ret;
            continue;
        }
        if (ret < 0)
            return ret; /* EAGAIN: the caller has no frame for us yet */
        ret = send_frame(s, s->frame);
        av_frame_unref(s->frame);
        if (ret < 0)
            return ret;
    }
}

/* Drops what the child holds: its own flush where it has one, otherwise
 * the same child is opened again on the same lease. */
static av_cold void balance_flush(AVCodecContext *avctx)
{
    BalanceEncContext *s = avctx->priv_data;
    const AVCodec *codec;
    gpubalance_failure kind;

    if (!s->child)
        return;
    codec = s->child->codec;
    if (codec->capabilities & AV_CODEC_CAP_ENCODER_FLUSH) {
        avcodec_flush_buffers(s->child);
        return;
    }
    drop_child(s);
    if (open_child(avctx, codec, &kind) < 0) {
        av_log(avctx, AV_LOG_ERROR, "%s could not be opened again after the flush\n", s->child_name);
        drop_child(s);
    }
}

static av_cold int balance_close(AVCodecContext *avctx)
{
    BalanceEncContext *s = avctx->priv_data;

    drop_child(s);
    avcodec_free_context(&s->defaults);
    av_frame_free(&s->frame);
    av_frame_free(&s->hw_frame);
    gpubalance_lease_release(s->lease);
    s->lease = NULL;
    return 0;
}

#define VE AV_OPT_FLAG_VIDEO_PARAM | AV_OPT_FLAG_ENCODING_PARAM
static const AVOption options[] = {
    { "policy",    "Placement policy (default: the gpubalance configuration's)",
      OFFSET(policy),    AV_OPT_TYPE_INT,    { .i64 = -1 }, -1, GPUBALANCE_POLICY_FILL, VE, "policy" },
        { "config",   "The configuration's",                0, AV_OPT_TYPE_CONST, { .i64 = -1 },                        0, 0, VE, "policy" },
        { "balanced", "The least loaded device",            0, AV_OPT_TYPE_CONST, { .i64 = GPUBALANCE_POLICY_BALANCED }, 0, 0, VE, "policy" },
        { "fill",     "The first device in order with room", 0, AV_OPT_TYPE_CONST, { .i64 = GPUBALANCE_POLICY_FILL },    0, 0, VE, "policy" },
    { "order",     "Backends to try in order, as nvenc,vaapi,software (default: the configuration's)",
      OFFSET(order),     AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, VE },
    { "device",    "Force one device id (nvenc:0, vaapi:renderD128, software, sim:NAME)",
      OFFSET(device),    AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, VE },
    { "when_full", "When every device is full (default: the configuration's)",
      OFFSET(when_full), AV_OPT_TYPE_INT,    { .i64 = -1 }, -1, GPUBALANCE_WHEN_FULL_FAIL, VE, "when_full" },
        { "config",   "The configuration's",              0, AV_OPT_TYPE_CONST, { .i64 = -1 },                            0, 0, VE, "when_full" },
        { "software", "Encode in software",                0, AV_OPT_TYPE_CONST, { .i64 = GPUBALANCE_WHEN_FULL_SOFTWARE }, 0, 0, VE, "when_full" },
        { "wait",     "Wait until a device has room",      0, AV_OPT_TYPE_CONST, { .i64 = GPUBALANCE_WHEN_FULL_WAIT },     0, 0, VE, "when_full" },
        { "fail",     "Fail to open",                      0, AV_OPT_TYPE_CONST, { .i64 = GPUBALANCE_WHEN_FULL_FAIL },     0, 0, VE, "when_full" },
    { "preset",    "x264 preset name (ultrafast..veryslow), mapped to each child's presets",
      OFFSET(preset),    AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, VE },
    { "tune",      "x264 tune name (zerolatency, film, animation...) where the child has one",
      OFFSET(tune),      AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, VE },
    { "profile",   "Profile, as the encoders name it (baseline, main, high, main10...)",
      OFFSET(profile),   AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, VE },
    { "level",     "Level, as 4.1",
      OFFSET(level),     AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, VE },
    { "crf",       "Constant quality on x264's CRF scale, mapped to each child's",
      OFFSET(crf),       AV_OPT_TYPE_FLOAT,  { .dbl = -1 }, -1, GPUBALANCE_MAX_QUALITY, VE },
    { "cq",        "Same as crf",
      OFFSET(crf),       AV_OPT_TYPE_FLOAT,  { .dbl = -1 }, -1, GPUBALANCE_MAX_QUALITY, VE },
    { "qp",        "Constant quantization parameter",
      OFFSET(qp),        AV_OPT_TYPE_INT,    { .i64 = -1 }, -1, 255, VE },
    { "x264-params",   "libx264's x264-params",   OFFSET(x264_params),   AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, VE },
    { "x264opts",      "libx264's x264opts",      OFFSET(x264opts),      AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, VE },
    { "x265-params",   "libx265's x265-params",   OFFSET(x265_params),   AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, VE },
    { "svtav1-params", "libsvtav1's svtav1-params", OFFSET(svtav1_params), AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, VE },
    { "aom-params",    "libaom-av1's aom-params", OFFSET(aom_params),    AV_OPT_TYPE_STRING, { .str = NULL }, 0, 0, VE },
    { "forced-idr",    "Forced key frames are IDR frames",
      OFFSET(forced_idr),   AV_OPT_TYPE_BOOL, { .i64 = -1 }, -1, 1, VE },
    { "sc_threshold",  "Scene change threshold (libx264)",
      OFFSET(sc_threshold), AV_OPT_TYPE_INT,  { .i64 = -1 }, -1, INT_MAX, VE },
    { "a53cc",         "Use A53 closed captions if present",
      OFFSET(a53cc),        AV_OPT_TYPE_BOOL, { .i64 = -1 }, -1, 1, VE },
    { "child_opts",    "Options for the chosen encoder, as key=value:key=value",
      OFFSET(child_opts),   AV_OPT_TYPE_DICT, { .str = NULL }, 0, 0, VE },
    { NULL },
};

/* Generic options left at these values are unset: not passed on, so the
 * chosen encoder keeps its own defaults for them. */
static const FFCodecDefault balance_defaults[] = {
    { "b",                 "0" },
    { "bf",                "-1" },
    { "g",                 "-1" },
    { "i_qfactor",         "-1" },
    { "b_qfactor",         "-1" },
    { "qmin",              "-1" },
    { "qmax",              "-1" },
    { "qdiff",             "-1" },
    { "qblur",             "-1" },
    { "qcomp",             "-1" },
    { "refs",              "-1" },
    { "trellis",           "-1" },
    { "me_range",          "-1" },
    { "subq",              "-1" },
    { "keyint_min",        "-1" },
    { "threads",           "0" },
    { "thread_type",       "0" },
    { "rc_init_occupancy", "-1" },
    { NULL },
};

/* The FFCodec fields whose spelling changed between releases: the long
 * name macro (lavc 60), color_ranges (7.1), CODEC_PIXFMTS_ARRAY (8.0),
 * and FF_CODEC_CAP_INIT_THREADSAFE, which every codec has since lavc 60. */
#if LIBAVCODEC_VERSION_MAJOR < 60
#define BALANCE_LONG_NAME(description) .p.long_name = NULL_IF_CONFIG_SMALL(description)
#define BALANCE_COLOR_RANGES
#define BALANCE_CAPS_INTERNAL FF_CODEC_CAP_INIT_THREADSAFE | FF_CODEC_CAP_INIT_CLEANUP | FF_CODEC_CAP_AUTO_THREADS
#else
#define BALANCE_LONG_NAME(description) CODEC_LONG_NAME(description)
#define BALANCE_COLOR_RANGES .color_ranges = AVCOL_RANGE_MPEG | AVCOL_RANGE_JPEG,
#define BALANCE_CAPS_INTERNAL FF_CODEC_CAP_INIT_CLEANUP | FF_CODEC_CAP_AUTO_THREADS
#endif
#if LIBAVCODEC_VERSION_MAJOR < 62
#define BALANCE_PIX_FMTS(pix_fmts_array) .p.pix_fmts = pix_fmts_array
#else
#define BALANCE_PIX_FMTS(pix_fmts_array) CODEC_PIXFMTS_ARRAY(pix_fmts_array)
#endif

#define BALANCE_ENCODER(short_name, codec_id, pix_fmts_array, description) \
static const AVClass short_name##_class = {                                 \
    .class_name = #short_name,                                              \
    .item_name  = av_default_item_name,                                     \
    .option     = options,                                                  \
    .version    = LIBAVUTIL_VERSION_INT,                                    \
};                                                                          \
const FFCodec ff_##short_name##_encoder = {                                 \
    .p.name         = #short_name,                                          \
    BALANCE_LONG_NAME(description),                                         \
    .p.type         = AVMEDIA_TYPE_VIDEO,                                   \
    .p.id           = codec_id,                                             \
    .p.capabilities = AV_CODEC_CAP_DELAY | AV_CODEC_CAP_OTHER_THREADS |     \
                      AV_CODEC_CAP_ENCODER_FLUSH,                           \
    .p.priv_class   = &short_name##_class,                                  \
    BALANCE_PIX_FMTS(pix_fmts_array),                                       \
    .p.wrapper_name = "libgpubalance",                                      \
    BALANCE_COLOR_RANGES                                                    \
    .priv_data_size = sizeof(BalanceEncContext),                            \
    .init           = balance_init,                                         \
    FF_CODEC_RECEIVE_PACKET_CB(balance_receive_packet),                     \
    .flush          = balance_flush,                                        \
    .close          = balance_close,                                        \
    .defaults       = balance_defaults,                                     \
    .caps_internal  = BALANCE_CAPS_INTERNAL,                                \
};

/* Each encoder takes what its software child takes; a hardware child that
 * cannot take the stream's format is passed over for the next candidate. */
#if CONFIG_BALANCE_H264_ENCODER
static const enum AVPixelFormat h264_pix_fmts[] = {
    AV_PIX_FMT_YUV420P, AV_PIX_FMT_YUV422P, AV_PIX_FMT_YUV444P, AV_PIX_FMT_NV12,
    AV_PIX_FMT_YUV420P10, AV_PIX_FMT_YUV422P10, AV_PIX_FMT_YUV444P10, AV_PIX_FMT_NONE
};
BALANCE_ENCODER(balance_h264, AV_CODEC_ID_H264, h264_pix_fmts,
                "H.264 on the encoder gpubalance chooses (NVENC, VA-API or libx264)")
#endif

#if CONFIG_BALANCE_HEVC_ENCODER
static const enum AVPixelFormat hevc_pix_fmts[] = {
    AV_PIX_FMT_YUV420P, AV_PIX_FMT_YUV422P, AV_PIX_FMT_YUV444P,
    AV_PIX_FMT_YUV420P10, AV_PIX_FMT_YUV422P10, AV_PIX_FMT_YUV444P10, AV_PIX_FMT_NONE
};
BALANCE_ENCODER(balance_hevc, AV_CODEC_ID_HEVC, hevc_pix_fmts,
                "HEVC on the encoder gpubalance chooses (NVENC, VA-API or libx265)")
#endif

#if CONFIG_BALANCE_AV1_ENCODER
static const enum AVPixelFormat av1_pix_fmts[] = {
    AV_PIX_FMT_YUV420P, AV_PIX_FMT_YUV420P10, AV_PIX_FMT_NONE
};
BALANCE_ENCODER(balance_av1, AV_CODEC_ID_AV1, av1_pix_fmts,
                "AV1 on the encoder gpubalance chooses (NVENC, VA-API, libsvtav1 or libaom)")
#endif
