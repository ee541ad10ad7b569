/* encoders.c - what both front ends need to know about encoders, kept in
 * one place: which encoder serves a backend and codec in each framework,
 * what a preset or a constant-quality value means on each family, and
 * whether a failed open is a capacity refusal, a missing encoder or
 * something else. The GStreamer element and the FFmpeg wrapper read these
 * tables; neither keeps a copy. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "nvidia.h"
#include "util.h"

#define N_FRAMEWORKS 2
#define AV1_MAX_QUALITY 63.0 /* SVT-AV1's and aom's crf run 0..63 */
#define MAX_CHOICES 2

typedef struct {
    gpubalance_encoder_info choices[MAX_CHOICES];
    size_t n;
} encoder_choices;

#define ONE(name, family)                                                                                              \
    {                                                                                                                  \
        {{name, family}}, 1                                                                                            \
    }
#define TWO(n1, f1, n2, f2)                                                                                            \
    {                                                                                                                  \
        {{n1, f1}, {n2, f2}}, 2                                                                                        \
    }

/* [framework][backend][codec]. sim encodes with the software encoders.
 * GStreamer's hardware names are those of 1.22 for the first device; they
 * differ by release and by device, so the element finds its factories by
 * property and takes these as hints only. */
static const encoder_choices encoder_table[N_FRAMEWORKS][GPUBALANCE_N_BACKENDS][GPUBALANCE_N_CODECS] =
    {
        [GPUBALANCE_FRAMEWORK_FFMPEG] =
            {
                [GPUBALANCE_BACKEND_NVENC] = {ONE("h264_nvenc", GPUBALANCE_ENCODER_NVENC),
                                              ONE("hevc_nvenc", GPUBALANCE_ENCODER_NVENC),
                                              ONE("av1_nvenc", GPUBALANCE_ENCODER_NVENC)},
                [GPUBALANCE_BACKEND_VAAPI] = {ONE("h264_vaapi", GPUBALANCE_ENCODER_VAAPI),
                                              ONE("hevc_vaapi", GPUBALANCE_ENCODER_VAAPI),
                                              ONE("av1_vaapi", GPUBALANCE_ENCODER_VAAPI)},
                [GPUBALANCE_BACKEND_SOFTWARE] = {ONE("libx264", GPUBALANCE_ENCODER_X264),
                                                 ONE("libx265", GPUBALANCE_ENCODER_X265),
                                                 TWO("libsvtav1", GPUBALANCE_ENCODER_SVTAV1, "libaom-av1",
                                                     GPUBALANCE_ENCODER_AOM)},
            },
        [GPUBALANCE_FRAMEWORK_GSTREAMER] =
            {
                [GPUBALANCE_BACKEND_NVENC] = {ONE("nvcudah264enc", GPUBALANCE_ENCODER_NVENC),
                                              ONE("nvcudah265enc", GPUBALANCE_ENCODER_NVENC),
                                              ONE("nvav1enc", GPUBALANCE_ENCODER_NVENC)},
                [GPUBALANCE_BACKEND_VAAPI] = {ONE("vah264enc", GPUBALANCE_ENCODER_VAAPI),
                                              ONE("vah265enc", GPUBALANCE_ENCODER_VAAPI),
                                              ONE("vaav1enc", GPUBALANCE_ENCODER_VAAPI)},
                [GPUBALANCE_BACKEND_SOFTWARE] = {TWO("x264enc", GPUBALANCE_ENCODER_X264, "openh264enc",
                                                     GPUBALANCE_ENCODER_OPENH264),
                                                 ONE("x265enc", GPUBALANCE_ENCODER_X265),
                                                 TWO("svtav1enc", GPUBALANCE_ENCODER_SVTAV1,
                                                     "av1enc", GPUBALANCE_ENCODER_AOM)},
            },
};

const gpubalance_encoder_info *gpubalance_encoders(gpubalance_framework framework, gpubalance_backend backend,
                                                   gpubalance_codec codec, size_t *n_out)
{
    const encoder_choices *c;

    if (n_out)
        *n_out = 0;
    if ((unsigned)framework >= N_FRAMEWORKS || (unsigned)backend >= GPUBALANCE_N_BACKENDS ||
        (unsigned)codec >= GPUBALANCE_N_CODECS)
        return NULL;
    if (backend == GPUBALANCE_BACKEND_SIM)
        backend = GPUBALANCE_BACKEND_SOFTWARE;
    c = &encoder_table[framework][backend][codec];
    if (n_out)
        *n_out = c->n;
    return c->n ? c->choices : NULL;
}

int gpubalance_encoder_family_of(const char *name)
{
    if (!name)
        return -1;
    for (int f = 0; f < N_FRAMEWORKS; f++)
        for (int b = 0; b < GPUBALANCE_N_BACKENDS; b++)
            for (int c = 0; c < GPUBALANCE_N_CODECS; c++)
                for (size_t i = 0; i < encoder_table[f][b][c].n; i++)
                    if (strcmp(encoder_table[f][b][c].choices[i].name, name) == 0)
                        return (int)encoder_table[f][b][c].choices[i].family;
    /* GStreamer names its hardware elements per device and release:
     * nvh264enc, nvcudah264enc, nvautogpuh264enc, nvh264device1enc;
     * vah264enc, vah264lpenc, varenderD129h264enc. */
    if (g_str_has_prefix(name, "nv") && g_str_has_suffix(name, "enc"))
        return GPUBALANCE_ENCODER_NVENC;
    if (g_str_has_prefix(name, "va") && g_str_has_suffix(name, "enc"))
        return GPUBALANCE_ENCODER_VAAPI;
    return -1;
}

/* ---- presets ------------------------------------------------------------ */

/* One row per x264 preset, fastest first, with what each other family
 * calls the same point on its speed/quality curve. NVENC's p1..p7 and
 * VA-API's quality levels 7..1 (1 = best; target-usage in GStreamer,
 * compression_level in FFmpeg) are seven steps; SVT-AV1's presets run
 * 13 (fastest) to 0 and aom's cpu-used 8 to 0, of which the useful
 * real-time-to-archive part is taken. x264's placebo is left out: no
 * other family has anything like it. */
static const struct {
    const char *x264;
    const char *nvenc;
    const char *vaapi;
    const char *svtav1;
    const char *aom;
    const char *openh264;
} preset_table[] = {
    {"ultrafast", "p1", "7", "12", "8", "low"}, {"superfast", "p1", "7", "11", "7", "low"},
    {"veryfast", "p2", "6", "10", "6", "low"},  {"faster", "p3", "5", "9", "5", "low"},
    {"fast", "p3", "5", "8", "5", "medium"},    {"medium", "p4", "4", "7", "4", "medium"},
    {"slow", "p5", "3", "6", "3", "high"},      {"slower", "p6", "2", "5", "2", "high"},
    {"veryslow", "p7", "1", "4", "1", "high"},
};

const char *gpubalance_preset_name(size_t index)
{
    return index < G_N_ELEMENTS(preset_table) ? preset_table[index].x264 : NULL;
}

const char *gpubalance_preset_value(gpubalance_encoder_family family, const char *preset)
{
    for (size_t i = 0; preset && i < G_N_ELEMENTS(preset_table); i++) {
        if (strcmp(preset_table[i].x264, preset) != 0)
            continue;
        switch (family) {
        case GPUBALANCE_ENCODER_X264:
        case GPUBALANCE_ENCODER_X265:
            return preset_table[i].x264;
        case GPUBALANCE_ENCODER_OPENH264:
            return preset_table[i].openh264;
        case GPUBALANCE_ENCODER_SVTAV1:
            return preset_table[i].svtav1;
        case GPUBALANCE_ENCODER_AOM:
            return preset_table[i].aom;
        case GPUBALANCE_ENCODER_NVENC:
            return preset_table[i].nvenc;
        case GPUBALANCE_ENCODER_VAAPI:
            return preset_table[i].vaapi;
        }
        return NULL;
    }
    return NULL;
}

/* ---- constant quality ---------------------------------------------------- */

/* The one scale is x264's CRF, 0..51. H.264/HEVC encoders share it (NVENC's
 * cq and VA-API's ICQ/QP start at 1: 0 means "automatic" or is invalid
 * there). The AV1 encoders count 0..63 over a comparable range, so the
 * value is scaled. */
double gpubalance_quality_value(gpubalance_encoder_family family, double crf)
{
    crf = CLAMP(crf, 0.0, GPUBALANCE_MAX_QUALITY);
    switch (family) {
    case GPUBALANCE_ENCODER_SVTAV1:
    case GPUBALANCE_ENCODER_AOM:
        return round(crf * AV1_MAX_QUALITY / GPUBALANCE_MAX_QUALITY);
    case GPUBALANCE_ENCODER_NVENC:
    case GPUBALANCE_ENCODER_VAAPI:
        return MAX(1.0, round(crf));
    default:
        return crf;
    }
}

/* ---- failures ------------------------------------------------------------ */

static bool mentions_any(const char *message, const char *const *needles)
{
    for (; message && *needles; needles++)
        if (strcasestr(message, *needles))
            return true;
    return false;
}

/* The words drivers and frameworks use. NVENC past the GeForce cap:
 * nvEncOpenEncodeSessionEx returns NV_ENC_ERR_OUT_OF_MEMORY (10), which
 * FFmpeg prints as "OpenEncodeSessionEx failed: out of memory (10)" and
 * GStreamer's nvcodec as NV_ENC_ERR_OUT_OF_MEMORY. VA-API drivers at their
 * limit fail vaCreateContext / vaCreateSurfaces with
 * VA_STATUS_ERROR_ALLOCATION_FAILED or MAX_NUM_EXCEEDED (FFmpeg: "Failed to
 * create encode pipeline context: 2 (resource allocation failed)"). A GPU without
 * NVENC answers NV_ENC_ERR_UNSUPPORTED_DEVICE (2) or NO_ENCODE_DEVICE. */
static const char *const capacity_words[] = {
    "out of memory (10)",
    "NV_ENC_ERR_OUT_OF_MEMORY",
    "ALLOCATION_FAILED",
    "MAX_NUM_EXCEEDED",
    /* vaErrorStr() of those two, as FFmpeg and GStreamer print them */
    "resource allocation failed",
    "maximum number exceeded",
    "vaCreateContext",
    "vaCreateSurfaces",
    "refused a session",
    NULL,
};
static const char *const unavailable_words[] = {
    "unsupported device (2)",
    "NV_ENC_ERR_UNSUPPORTED_DEVICE",
    "NV_ENC_ERR_NO_ENCODE_DEVICE",
    "No capable devices found",
    "no such element",
    "not found",
    "no NVENC capable devices",
    NULL,
};

gpubalance_failure gpubalance_failure_classify(gpubalance_backend backend, int error_number, const char *message)
{
    bool hardware = backend == GPUBALANCE_BACKEND_NVENC || backend == GPUBALANCE_BACKEND_VAAPI;

    if (mentions_any(message, unavailable_words))
        return GPUBALANCE_FAILURE_UNAVAILABLE;
    if (mentions_any(message, capacity_words))
        return GPUBALANCE_FAILURE_CAPACITY;
    switch (error_number) {
    case ENOMEM:
        /* the encoder's own way of saying "no more sessions"; in software
         * it is the host running out, which says nothing about a cap */
        return hardware || backend == GPUBALANCE_BACKEND_SIM ? GPUBALANCE_FAILURE_CAPACITY : GPUBALANCE_FAILURE_OTHER;
    case ENOENT:
    case ENODEV:
    case ENOSYS:
    case ENXIO:
        return GPUBALANCE_FAILURE_UNAVAILABLE;
    default:
        return GPUBALANCE_FAILURE_OTHER;
    }
}

/* Messages that already carry NVENC's own status: asking again would
 * only repeat it. */
static const char *const nvenc_verdict_words[] = {
    "out of memory (10)",       "NV_ENC_ERR_", "unsupported device (2)", "No capable devices found",
    "no NVENC capable devices", NULL,
};

gpubalance_failure gpubalance_lease_classify_failure(const gpubalance_lease *lease, int error_number,
                                                     const char *message, char *detail, size_t detail_size)
{
    gpubalance_backend backend = gpubalance_lease_backend(lease);
    gpubalance_failure kind = gpubalance_failure_classify(backend, error_number, message);
    char said[160];
    int status;

    if (detail && detail_size)
        detail[0] = '\0';
    if (backend != GPUBALANCE_BACKEND_NVENC || kind == GPUBALANCE_FAILURE_CAPACITY ||
        mentions_any(message, nvenc_verdict_words) || gpubalance_lease_cuda_ordinal(lease) < 0)
        return kind;
    status = gpb_nvenc_open_status(gpubalance_lease_cuda_ordinal(lease), said, sizeof(said));
    gpb_debug("%s failed with \"%s\"; NVENC asked again: %s", gpubalance_lease_device(lease), message ? message : "",
              said);
    if (detail && detail_size)
        snprintf(detail, detail_size, "NVENC asked again: %s", said);
    if (status == GPB_NVENC_ERR_OUT_OF_MEMORY)
        return GPUBALANCE_FAILURE_CAPACITY;
    if (gpb_nvenc_status_means_no_encoder(status))
        return GPUBALANCE_FAILURE_UNAVAILABLE;
    return kind;
}

/* ---- the encoders of a lease -------------------------------------------- */

const char *gpb_ffmpeg_encoder(const gpb_device *d, gpubalance_codec codec)
{
    size_t n;
    const gpubalance_encoder_info *e = gpubalance_encoders(GPUBALANCE_FRAMEWORK_FFMPEG, d->backend, codec, &n);

    return n ? e[0].name : "";
}

void gpb_gst_encoder(const gpb_device *d, gpubalance_codec codec, char *buf, size_t size)
{
    static const char *const codec_part[] = {"h264", "h265", "av1"};
    size_t n;
    const gpubalance_encoder_info *e = gpubalance_encoders(GPUBALANCE_FRAMEWORK_GSTREAMER, d->backend, codec, &n);
    /* GStreamer's va plugin names the first render node's elements
     * va<codec>enc and the others va<node><codec>enc. */
    const char *node = d->render_node ? strrchr(d->render_node, '/') : NULL;

    if (d->backend == GPUBALANCE_BACKEND_VAAPI && node && strcmp(node, "/renderD128") != 0)
        snprintf(buf, size, "va%s%senc", node + 1, codec_part[codec]);
    else
        snprintf(buf, size, "%s", n ? e[0].name : "");
}
