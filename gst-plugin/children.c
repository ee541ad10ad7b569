/* children.c - finding encoder elements and mapping settings onto them. */
#include "children.h"

#include <math.h>
#include <string.h>

GST_DEBUG_CATEGORY_EXTERN(gst_gpubalance_enc_debug);
#define GST_CAT_DEFAULT gst_gpubalance_enc_debug

/* ---- the mapping table -------------------------------------------------- */

#define RC(mode) (1u << (mode))
#define RC_RATE (RC(GPB_RC_CBR) | RC(GPB_RC_VBR))
#define RC_QUALITY (RC(GPB_RC_CQP) | RC(GPB_RC_CQ))
#define RC_ANY (RC_RATE | RC_QUALITY)

/* When a row applies: every condition of its mask holds. */
typedef enum {
    WHEN_ALWAYS = 0,
    WHEN_BITRATE_SET = 1 << 0,   /* the user gave a bitrate */
    WHEN_BITRATE_UNSET = 1 << 1, /* the child keeps its own */
    WHEN_GOP_SET = 1 << 2,
    WHEN_ZEROLATENCY = 1 << 3,
    WHEN_NOT_ZEROLATENCY = 1 << 4,
} GpbWhen;

/* The element's setting a row carries out, named in the error when the
 * child cannot take it. */
typedef enum {
    SET_SPEED,
    SET_BITRATE,
    SET_GOP,
    SET_RATE_CONTROL,
    SET_QUALITY,
    SET_TUNE,
} GpbSetting;

typedef enum {
    MUST,       /* a child without the property or value cannot honour the setting */
    IF_PRESENT, /* a child without the property already behaves so (see the row) */
    NEVER,      /* no child of the family can: value says why (property is NULL) */
} GpbNeed;

/* One row: in the rate-control modes of mask, when the condition holds,
 * the property takes value. "a|b" in property names the property by each
 * generation's name (the first the child has); "a|b" in value means the
 * first of the values the property takes (nvcodec's enums differ by
 * release). Values may hold {kbps} (the bitrate in kbit/s), {bps} (in
 * bit/s), {kbps2} (twice it), {gop}, {quality} (the quality on the
 * family's own scale, gpubalance_quality_value()), {preset}
 * (gpubalance_preset_value()), {nvenc-legacy-preset} (the same speed in
 * the preset names nvcodec had before p1..p7, see legacy_nvenc_preset())
 * and {default} (the property's own default, for a row that undoes
 * another mode's). Rows apply in order. */
typedef struct {
    GpbSetting setting;
    guint rate_controls;
    guint when; /* GpbWhen flags */
    const char *property;
    const char *value;
    GpbNeed need;
} GpbRow;

/* Meanings, the same on every family:
 *  - vbr: bitrate is the average; cbr: the average and the cap;
 *  - cqp: one quantizer for every frame, quality on x264's 0..51 scale;
 *  - cq: constant quality (x264 CRF), bitrate (if set) caps it;
 *  - tune=zerolatency: no lookahead, no B-frames, no frame threads.
 * x264enc: "pass=cbr" is its single-pass average bitrate (ABR) with a VBV
 * buffer of vbv-buf-capacity ms at the bitrate; a zero buffer makes x264
 * drop the cap, which leaves a plain average (vbr). "qual" is CRF, with
 * bitrate as its VBV cap, likewise lifted by a zero buffer. "pass1" would
 * be the first pass of two and write a stats file: never used. */
static const GpbRow x264_rows[] = {
    {SET_SPEED, RC_ANY, WHEN_ALWAYS, "speed-preset", "{preset}", MUST},
    {SET_BITRATE, RC_RATE | RC(GPB_RC_CQ), WHEN_BITRATE_SET, "bitrate", "{kbps}", MUST},
    {SET_GOP, RC_ANY, WHEN_GOP_SET, "key-int-max", "{gop}", MUST},
    {SET_RATE_CONTROL, RC_RATE, WHEN_ALWAYS, "pass", "cbr", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_CBR), WHEN_ALWAYS, "vbv-buf-capacity", "{default}", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_VBR), WHEN_ALWAYS, "vbv-buf-capacity", "0", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_CQP), WHEN_ALWAYS, "pass", "quant", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_CQ), WHEN_ALWAYS, "pass", "qual", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_CQ), WHEN_BITRATE_UNSET, "vbv-buf-capacity", "0", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_CQ), WHEN_BITRATE_SET, "vbv-buf-capacity", "{default}", MUST},
    {SET_QUALITY, RC_QUALITY, WHEN_ALWAYS, "quantizer", "{quality}", MUST},
    {SET_TUNE, RC_ANY, WHEN_ZEROLATENCY, "tune", "zerolatency", MUST},
};

/* x265enc: ABR unless qp is set; the rest through its option-string,
 * which it parses after its own settings. */
static const GpbRow x265_rows[] = {
    {SET_SPEED, RC_ANY, WHEN_ALWAYS, "speed-preset", "{preset}", MUST},
    {SET_BITRATE, RC_RATE | RC(GPB_RC_CQ), WHEN_BITRATE_SET, "bitrate", "{kbps}", MUST},
    {SET_GOP, RC_ANY, WHEN_GOP_SET, "key-int-max", "{gop}", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_CBR), WHEN_ALWAYS, "option-string", "vbv-maxrate={kbps}:vbv-bufsize={kbps}", MUST},
    {SET_QUALITY, RC(GPB_RC_CQP), WHEN_ALWAYS, "qp", "{quality}", MUST},
    {SET_QUALITY, RC(GPB_RC_CQ), WHEN_BITRATE_UNSET, "option-string", "crf={quality}", MUST},
    {SET_QUALITY, RC(GPB_RC_CQ), WHEN_BITRATE_SET, "option-string",
     "crf={quality}:vbv-maxrate={kbps}:vbv-bufsize={kbps}", MUST},
    {SET_TUNE, RC_ANY, WHEN_ZEROLATENCY, "tune", "zerolatency", MUST},
};

/* openh264enc: bit/s; no CRF, so both quality modes pin its QP range.
 * It has neither B-frames nor lookahead: nothing to do for latency. */
static const GpbRow openh264_rows[] = {
    {SET_SPEED, RC_ANY, WHEN_ALWAYS, "complexity", "{preset}", MUST},
    {SET_BITRATE, RC_RATE, WHEN_BITRATE_SET, "bitrate", "{bps}", MUST},
    {SET_GOP, RC_ANY, WHEN_GOP_SET, "gop-size", "{gop}", MUST},
    {SET_RATE_CONTROL, RC_RATE, WHEN_ALWAYS, "rate-control", "bitrate", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_CBR), WHEN_ALWAYS, "max-bitrate", "{bps}", MUST},
    {SET_RATE_CONTROL, RC_QUALITY, WHEN_ALWAYS, "rate-control", "quality", MUST},
    {SET_QUALITY, RC_QUALITY, WHEN_ALWAYS, "qp-min", "{quality}", MUST},
    {SET_QUALITY, RC_QUALITY, WHEN_ALWAYS, "qp-max", "{quality}", MUST},
};

/* svtav1enc (not in Debian 12's GStreamer; names as Debian 13's 1.26 has
 * them): cqp is its constant quantizer, crf its constant quality (35 its
 * default, which is what it does with no bitrate), capped by max-bitrate;
 * VBR through parameters-string (SVT-AV1's rc=1). SVT-AV1 2.x takes CBR
 * only in its low-delay structure (pred-struct=1), and GStreamer 1.26's
 * svtav1enc never finishes a stream in that structure (EOS hangs, with
 * any preset and rate control): CBR and tune=zerolatency are refused, so
 * the element takes the next AV1 encoder (av1enc) for them. */
static const GpbRow svtav1_rows[] = {
    {SET_SPEED, RC_ANY, WHEN_ALWAYS, "preset", "{preset}", MUST},
    {SET_BITRATE, RC_RATE, WHEN_BITRATE_SET, "target-bitrate", "{kbps}", MUST},
    {SET_BITRATE, RC(GPB_RC_CQ), WHEN_BITRATE_SET, "max-bitrate", "{kbps}", MUST},
    {SET_GOP, RC_ANY, WHEN_GOP_SET, "intra-period-length", "{gop}", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_VBR), WHEN_BITRATE_SET, "parameters-string", "rc=1", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_CBR), WHEN_ALWAYS, NULL,
     "SVT-AV1 takes CBR only in its low-delay structure, which svtav1enc does not finish", NEVER},
    {SET_QUALITY, RC(GPB_RC_CQP), WHEN_ALWAYS, "cqp", "{quality}", MUST},
    {SET_QUALITY, RC(GPB_RC_CQ), WHEN_ALWAYS, "crf", "{quality}", MUST},
    {SET_TUNE, RC_ANY, WHEN_ZEROLATENCY, NULL, "svtav1enc does not finish a stream in SVT-AV1's low-delay structure",
     NEVER},
};

/* av1enc (aom): kbit/s; its "q" mode with the quantizer range pinned
 * (1.22 has no cq-level property) */
static const GpbRow aom_rows[] = {
    {SET_SPEED, RC_ANY, WHEN_ALWAYS, "cpu-used", "{preset}", MUST},
    {SET_BITRATE, RC_RATE, WHEN_BITRATE_SET, "target-bitrate", "{kbps}", MUST},
    {SET_GOP, RC_ANY, WHEN_GOP_SET, "keyframe-max-dist", "{gop}", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_CBR), WHEN_ALWAYS, "end-usage", "cbr", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_VBR), WHEN_ALWAYS, "end-usage", "vbr", MUST},
    {SET_RATE_CONTROL, RC_QUALITY, WHEN_ALWAYS, "end-usage", "q", MUST},
    {SET_QUALITY, RC_QUALITY, WHEN_ALWAYS, "min-quantizer", "{quality}", MUST},
    {SET_QUALITY, RC_QUALITY, WHEN_ALWAYS, "max-quantizer", "{quality}", MUST},
    {SET_TUNE, RC_ANY, WHEN_ZEROLATENCY, "lag-in-frames", "0", MUST},
    {SET_TUNE, RC_ANY, WHEN_ZEROLATENCY, "usage-profile", "realtime", MUST},
};

/* nvcodec, by release:
 *  - 1.22's nvh264enc (nvbaseenc): preset default/hp/hq/low-latency*,
 *    rc-mode with constqp, qp-const-i/p/b, zerolatency, bframes;
 *  - 1.22's nvcudah264enc (nvencoder): the same presets, rate-control
 *    with cqp, qp-i/p/b, zero-reorder-delay, b-frames;
 *  - 1.24+'s nvh264enc (nvencoder under the old names): preset with
 *    p1..p7 too, tune, rc-mode with constqp, qp-const-i/p/b, zerolatency,
 *    b-frames.
 * Both install bframes/b-frames and rc-lookahead only where the GPU has
 * B-frames and lookahead: a child without them has neither. 1.22's
 * low-latency presets stand for 1.24's tune, which only 1.24 has. */
static const GpbRow nvenc_rows[] = {
    {SET_SPEED, RC_ANY, WHEN_ALWAYS, "preset", "{preset}|{nvenc-legacy-preset}", MUST},
    {SET_BITRATE, RC_RATE, WHEN_BITRATE_SET, "bitrate", "{kbps}", MUST},
    {SET_GOP, RC_ANY, WHEN_GOP_SET, "gop-size", "{gop}", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_CBR), WHEN_ALWAYS, "rc-mode|rate-control", "cbr", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_VBR), WHEN_ALWAYS, "rc-mode|rate-control", "vbr", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_CQP), WHEN_ALWAYS, "rc-mode|rate-control", "cqp|constqp", MUST},
    {SET_QUALITY, RC(GPB_RC_CQP), WHEN_ALWAYS, "qp-const-i|qp-i", "{quality}", MUST},
    {SET_QUALITY, RC(GPB_RC_CQP), WHEN_ALWAYS, "qp-const-p|qp-p", "{quality}", MUST},
    {SET_QUALITY, RC(GPB_RC_CQP), WHEN_ALWAYS, "qp-const-b|qp-b", "{quality}", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_CQ), WHEN_ALWAYS, "rc-mode|rate-control", "vbr", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_CQ), WHEN_ALWAYS, "bitrate", "0", MUST},
    {SET_QUALITY, RC(GPB_RC_CQ), WHEN_ALWAYS, "const-quality", "{quality}", MUST},
    {SET_BITRATE, RC(GPB_RC_CQ), WHEN_BITRATE_SET, "max-bitrate", "{kbps}", MUST},
    {SET_TUNE, RC_ANY, WHEN_ZEROLATENCY, "zerolatency|zero-reorder-delay", "true", MUST},
    {SET_TUNE, RC_ANY, WHEN_ZEROLATENCY, "bframes|b-frames", "0", IF_PRESENT},
    {SET_TUNE, RC_ANY, WHEN_ZEROLATENCY, "rc-lookahead", "0", IF_PRESENT},
    {SET_TUNE, RC_ANY, WHEN_ZEROLATENCY, "tune", "ultra-low-latency|low-latency", IF_PRESENT},
};

/* va: in vbr the bitrate property is the peak and target-percentage of
 * it the average, so twice the average at 50%. Which rate-control values
 * a va element takes depends on the driver: one it lacks is an error. */
static const GpbRow vaapi_rows[] = {
    {SET_SPEED, RC_ANY, WHEN_ALWAYS, "target-usage", "{preset}", MUST},
    {SET_GOP, RC_ANY, WHEN_GOP_SET, "key-int-max", "{gop}", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_CBR), WHEN_ALWAYS, "rate-control", "cbr", MUST},
    {SET_BITRATE, RC(GPB_RC_CBR), WHEN_BITRATE_SET, "bitrate", "{kbps}", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_VBR), WHEN_ALWAYS, "rate-control", "vbr", MUST},
    {SET_BITRATE, RC(GPB_RC_VBR), WHEN_BITRATE_SET, "bitrate", "{kbps2}", MUST},
    {SET_BITRATE, RC(GPB_RC_VBR), WHEN_BITRATE_SET, "target-percentage", "50", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_CQP), WHEN_ALWAYS, "rate-control", "cqp", MUST},
    {SET_QUALITY, RC(GPB_RC_CQP), WHEN_ALWAYS, "qpp", "{quality}", MUST},
    {SET_QUALITY, RC(GPB_RC_CQP), WHEN_ALWAYS, "qpb", "{quality}", MUST},
    {SET_RATE_CONTROL, RC(GPB_RC_CQ), WHEN_ALWAYS, "rate-control", "icq", MUST},
    {SET_QUALITY, RC_QUALITY, WHEN_ALWAYS, "qpi", "{quality}", MUST}, /* ICQ's quality factor too */
    {SET_TUNE, RC_ANY, WHEN_ZEROLATENCY, "b-frames", "0", MUST},
};

#define FAMILY_ROWS(family, rows) [family] = {rows, G_N_ELEMENTS(rows)}
static const struct {
    const GpbRow *rows;
    size_t n;
} family_rows[] = {
    FAMILY_ROWS(GPUBALANCE_ENCODER_X264, x264_rows),         FAMILY_ROWS(GPUBALANCE_ENCODER_X265, x265_rows),
    FAMILY_ROWS(GPUBALANCE_ENCODER_OPENH264, openh264_rows), FAMILY_ROWS(GPUBALANCE_ENCODER_SVTAV1, svtav1_rows),
    FAMILY_ROWS(GPUBALANCE_ENCODER_AOM, aom_rows),           FAMILY_ROWS(GPUBALANCE_ENCODER_NVENC, nvenc_rows),
    FAMILY_ROWS(GPUBALANCE_ENCODER_VAAPI, vaapi_rows),
};

static const char *const speed_presets[] = {
    [GPB_SPEED_FAST] = "veryfast",
    [GPB_SPEED_BALANCED] = "medium",
    [GPB_SPEED_QUALITY] = "slow",
};

const char *gpb_speed_preset(GpbSpeed speed)
{
    return speed_presets[speed];
}

/* A setting as the user wrote it on the element, "speed=fast". */
static gchar *setting_text(GpbSetting setting, const GpbEncodeSettings *s)
{
    static const char *const speeds[] = {"fast", "balanced", "quality"};
    static const char *const rate_controls[] = {"cbr", "vbr", "cqp", "cq"};
    static const char *const tunes[] = {"none", "zerolatency"};

    switch (setting) {
    case SET_SPEED:
        return g_strdup_printf("speed=%s", speeds[s->speed]);
    case SET_BITRATE:
        return g_strdup_printf("bitrate=%u", s->bitrate);
    case SET_GOP:
        return g_strdup_printf("gop-size=%d", s->gop_size);
    case SET_RATE_CONTROL:
        return g_strdup_printf("rate-control=%s", rate_controls[s->rate_control]);
    case SET_QUALITY:
        return g_strdup_printf("quality=%g (rate-control=%s)", s->quality, rate_controls[s->rate_control]);
    default:
        return g_strdup_printf("tune=%s", tunes[s->tune]);
    }
}

static gboolean row_applies(const GpbRow *row, const GpbEncodeSettings *s)
{
    guint holds = (s->bitrate > 0 ? WHEN_BITRATE_SET : WHEN_BITRATE_UNSET) | (s->gop_size >= 0 ? WHEN_GOP_SET : 0) |
                  (s->tune == GPB_TUNE_ZEROLATENCY ? WHEN_ZEROLATENCY : WHEN_NOT_ZEROLATENCY);

    return (row->rate_controls & RC(s->rate_control)) && (row->when & holds) == row->when;
}

/* The child's own bitrate in its own unit, for a row that needs a number
 * when the user left the bitrate to the child. */
static guint64 child_own_bitrate(GstElement *child)
{
    GParamSpec *pspec = g_object_class_find_property(G_OBJECT_GET_CLASS(child), "bitrate");
    GValue own = G_VALUE_INIT, v = G_VALUE_INIT;
    guint64 value = 0;

    if (!pspec)
        return 0;
    g_value_init(&v, G_TYPE_UINT64);
    g_value_init(&own, pspec->value_type);
    g_object_get_property(G_OBJECT(child), "bitrate", &own);
    if (g_value_transform(&own, &v))
        value = g_value_get_uint64(&v);
    g_value_unset(&own);
    g_value_unset(&v);
    return value;
}

/* The speed in nvcodec's names before p1..p7 (1.22's nvh264enc and
 * nvcudah264enc). GStreamer 1.24 maps them onto p1..p7 as hp = p1,
 * default = p4, hq = p7, so p1..p3 are hp, p4 default, p5..p7 hq; with
 * tune=zerolatency their low-latency variants, which nvh264enc users pick
 * for live streams (1.22 has no tune property). */
static const char *legacy_nvenc_preset(const GpbEncodeSettings *s)
{
    const char *p = gpubalance_preset_value(GPUBALANCE_ENCODER_NVENC, gpb_speed_preset(s->speed));
    int level = p ? p[1] - '0' : 4;
    gboolean low_latency = s->tune == GPB_TUNE_ZEROLATENCY;

    if (level < 4)
        return low_latency ? "low-latency-hp" : "hp";
    if (level > 4)
        return low_latency ? "low-latency-hq" : "hq";
    return low_latency ? "low-latency" : "default";
}

/* A row's value with its placeholders filled in, for pspec's type. */
static gchar *expand(const char *value, GstElement *child, gpubalance_encoder_family family, const GpbEncodeSettings *s,
                     GParamSpec *pspec)
{
    GString *out = g_string_new(NULL);
    guint64 own = s->bitrate ? 0 : child_own_bitrate(child);
    guint64 kbps = s->bitrate ? s->bitrate : (family == GPUBALANCE_ENCODER_OPENH264 ? own / 1000 : own);
    double quality = gpubalance_quality_value(family, s->quality);
    gboolean integral =
        !G_IS_PARAM_SPEC_DOUBLE(pspec) && !G_IS_PARAM_SPEC_FLOAT(pspec) && !G_IS_PARAM_SPEC_STRING(pspec);

    for (const char *p = value; *p;) {
        if (g_str_has_prefix(p, "{kbps}")) {
            g_string_append_printf(out, "%" G_GUINT64_FORMAT, kbps);
            p += strlen("{kbps}");
        } else if (g_str_has_prefix(p, "{kbps2}")) {
            g_string_append_printf(out, "%" G_GUINT64_FORMAT, kbps * 2);
            p += strlen("{kbps2}");
        } else if (g_str_has_prefix(p, "{bps}")) {
            g_string_append_printf(out, "%" G_GUINT64_FORMAT, kbps * 1000);
            p += strlen("{bps}");
        } else if (g_str_has_prefix(p, "{gop}")) {
            g_string_append_printf(out, "%d", s->gop_size);
            p += strlen("{gop}");
        } else if (g_str_has_prefix(p, "{quality}")) {
            if (integral)
                g_string_append_printf(out, "%d", (int)lround(quality));
            else
                g_string_append_printf(out, "%g", quality);
            p += strlen("{quality}");
        } else if (g_str_has_prefix(p, "{default}")) {
            gchar *text = g_strdup_value_contents(g_param_spec_get_default_value(pspec));

            g_string_append(out, text);
            g_free(text);
            p += strlen("{default}");
        } else if (g_str_has_prefix(p, "{preset}")) {
            const char *preset = gpubalance_preset_value(family, gpb_speed_preset(s->speed));

            g_string_append(out, preset ? preset : "");
            p += strlen("{preset}");
        } else if (g_str_has_prefix(p, "{nvenc-legacy-preset}")) {
            g_string_append(out, legacy_nvenc_preset(s));
            p += strlen("{nvenc-legacy-preset}");
        } else {
            g_string_append_c(out, *p++);
        }
    }
    return g_string_free(out, FALSE);
}

/* Reads text as a value of pspec's type, refusing what the property would
 * not take (an unknown enum nick, a number out of range). */
static gboolean value_for(GParamSpec *pspec, const char *text, GValue *v)
{
    g_value_init(v, pspec->value_type);
    if (gst_value_deserialize_with_pspec(v, text, pspec) && !g_param_value_validate(pspec, v))
        return TRUE;
    g_value_unset(v);
    return FALSE;
}

/* The first of the row's "a|b" property names the child has, writable. */
static GParamSpec *row_property(GstElement *child, const GpbRow *row)
{
    gchar **names = g_strsplit(row->property, "|", -1);
    GParamSpec *found = NULL;

    for (gchar **n = names; *n && !found; n++) {
        GParamSpec *pspec = g_object_class_find_property(G_OBJECT_GET_CLASS(child), *n);

        if (pspec && (pspec->flags & G_PARAM_WRITABLE))
            found = pspec;
    }
    g_strfreev(names);
    return found;
}

/* Carries out one row: the first of its "a|b" values the child's property
 * takes. FALSE with *why set when the child cannot honour it. Skips (only
 * mutable) a property the child cannot change in its state: the next
 * placement applies it. */
static gboolean apply_row(GstElement *child, const GpbRow *row, gpubalance_encoder_family family,
                          const GpbEncodeSettings *s, gboolean only_mutable, gchar **why)
{
    const char *factory = GST_OBJECT_NAME(gst_element_get_factory(child));
    GParamSpec *pspec = row->need == NEVER ? NULL : row_property(child, row);
    gchar *text, **choices;
    gboolean done = FALSE;

    if (row->need == NEVER) {
        text = setting_text(row->setting, s);
        *why = g_strdup_printf("%s cannot be honoured by %s: %s", text, factory, row->value);
        g_free(text);
        return FALSE;
    }
    if (!pspec) {
        if (row->need == IF_PRESENT) {
            GST_DEBUG_OBJECT(child, "no %s: nothing to set", row->property);
            return TRUE;
        }
        text = setting_text(row->setting, s);
        *why = g_strdup_printf("%s cannot be honoured by %s: it has no writable property %s", text, factory,
                               row->property);
        g_free(text);
        return FALSE;
    }
    if (only_mutable && !(pspec->flags & GST_PARAM_MUTABLE_PLAYING) && GST_STATE(child) > GST_STATE_READY) {
        GST_INFO_OBJECT(child, "%s cannot change while %s; it applies from the next placement", pspec->name,
                        gst_element_state_get_name(GST_STATE(child)));
        return TRUE;
    }
    text = expand(row->value, child, family, s, pspec);
    choices = g_strsplit(text, "|", -1);
    for (gchar **c = choices; *c && !done; c++) {
        GValue v = G_VALUE_INIT;

        if (!value_for(pspec, *c, &v))
            continue;
        GST_DEBUG_OBJECT(child, "%s = %s", pspec->name, *c);
        g_object_set_property(G_OBJECT(child), pspec->name, &v);
        g_value_unset(&v);
        done = TRUE;
    }
    if (!done) {
        gchar *setting = setting_text(row->setting, s);

        *why = g_strdup_printf("%s cannot be honoured by %s: its %s takes none of %s", setting, factory, pspec->name,
                               text);
        g_free(setting);
    }
    g_strfreev(choices);
    g_free(text);
    return done;
}

gboolean gpb_child_apply(GstElement *child, gpubalance_encoder_family family, const GpbEncodeSettings *s,
                         gboolean only_mutable, gchar **why)
{
    g_return_val_if_fail((size_t)family < G_N_ELEMENTS(family_rows), FALSE);
    for (size_t i = 0; i < family_rows[family].n; i++) {
        const GpbRow *row = &family_rows[family].rows[i];

        if (row_applies(row, s) && !apply_row(child, row, family, s, only_mutable, why))
            return FALSE;
    }
    return TRUE;
}

/* ---- the user's own settings per child ------------------------------------ */

GstCaps *gpb_child_settings_parse(const char *text, gchar **error)
{
    GstCaps *caps = gst_caps_from_string(text);

    if (!caps || gst_caps_is_any(caps)) {
        *error =
            g_strdup_printf("'%s' is not a list of structures such as \"x264enc, tune=film; nvenc, preset=p7\"", text);
        gst_clear_caps(&caps);
    }
    return caps;
}

static gboolean names_child(const GstStructure *s, GstElement *child, gpubalance_backend backend)
{
    const char *name = gst_structure_get_name(s);
    GstElementFactory *factory = gst_element_get_factory(child);

    return g_strcmp0(name, GST_OBJECT_NAME(factory)) == 0 || g_strcmp0(name, gpubalance_backend_name(backend)) == 0 ||
           (backend == GPUBALANCE_BACKEND_SIM && g_strcmp0(name, "software") == 0);
}

typedef struct {
    GstElement *element;
    GstElement *child;
} UserSetting;

static gboolean set_user_field(GQuark field, const GValue *value, gpointer data)
{
    UserSetting *u = data;
    const char *name = g_quark_to_string(field);
    GParamSpec *pspec = g_object_class_find_property(G_OBJECT_GET_CLASS(u->child), name);
    gchar *text = G_VALUE_HOLDS_STRING(value) ? g_value_dup_string(value) : gst_value_serialize(value);
    GValue v = G_VALUE_INIT;

    if (!pspec || !(pspec->flags & G_PARAM_WRITABLE))
        GST_ELEMENT_WARNING(u->element, LIBRARY, SETTINGS, ("Setting %s ignored.", name),
                            ("child-settings: %s has no writable property '%s'",
                             GST_OBJECT_NAME(gst_element_get_factory(u->child)), name));
    else if (!value_for(pspec, text, &v))
        GST_ELEMENT_WARNING(
            u->element, LIBRARY, SETTINGS, ("Setting %s ignored.", name),
            ("child-settings: %s does not take %s=%s", GST_OBJECT_NAME(gst_element_get_factory(u->child)), name, text));
    else {
        GST_INFO_OBJECT(u->element, "child-settings: %s %s=%s", GST_OBJECT_NAME(u->child), name, text);
        g_object_set_property(G_OBJECT(u->child), name, &v);
        g_value_unset(&v);
    }
    g_free(text);
    return TRUE;
}

void gpb_child_apply_user(GstElement *element, GstElement *child, gpubalance_backend backend, const GstCaps *settings)
{
    UserSetting u = {element, child};

    for (guint i = 0; settings && i < gst_caps_get_size(settings); i++) {
        const GstStructure *s = gst_caps_get_structure(settings, i);

        if (names_child(s, child, backend))
            gst_structure_foreach(s, set_user_field, &u);
        else
            GST_DEBUG_OBJECT(element, "child-settings for %s: not this child (%s)", gst_structure_get_name(s),
                             GST_OBJECT_NAME(gst_element_get_factory(child)));
    }
}

/* ---- finding elements ---------------------------------------------------- */

static const char *codec_caps_name(gpubalance_codec codec)
{
    return codec == GPUBALANCE_CODEC_HEVC  ? "video/x-h265"
           : codec == GPUBALANCE_CODEC_AV1 ? "video/x-av1"
                                           : "video/x-h264";
}

/* Video encoder factories producing codec, highest rank first. */
static GList *encoder_factories(gpubalance_codec codec)
{
    GList *all = gst_element_factory_list_get_elements(GST_ELEMENT_FACTORY_TYPE_VIDEO_ENCODER, GST_RANK_NONE);
    GstCaps *want = gst_caps_new_empty_simple(codec_caps_name(codec));
    GList *matching = gst_element_factory_list_filter(all, want, GST_PAD_SRC, FALSE);

    gst_caps_unref(want);
    gst_plugin_feature_list_free(all);
    return g_list_sort(matching, gst_plugin_feature_rank_compare_func);
}

static gboolean has_property(GstElementFactory *factory, const char *name)
{
    GType type = gst_element_factory_get_element_type(factory);
    gpointer klass;
    gboolean found;

    if (!type) { /* not loaded yet */
        GstPluginFeature *loaded = gst_plugin_feature_load(GST_PLUGIN_FEATURE(factory));

        if (!loaded)
            return FALSE;
        type = gst_element_factory_get_element_type(GST_ELEMENT_FACTORY(loaded));
        gst_object_unref(loaded);
    }
    klass = g_type_class_ref(type);
    found = g_object_class_find_property(klass, name) != NULL;
    g_type_class_unref(klass);
    return found;
}

/* The first encoder of codec, highest rank first, that has the property
 * and whose instance serves the lease (serves() may set the property). */
static GstElement *first_serving(gpubalance_codec codec, const char *property,
                                 gboolean (*serves)(GstElement *e, gconstpointer want), gconstpointer want)
{
    GList *factories = encoder_factories(codec);
    GstElement *found = NULL;

    for (GList *l = factories; l && !found; l = l->next) {
        GstElement *e;

        if (!has_property(l->data, property) || !(e = gst_element_factory_create(l->data, NULL)))
            continue;
        if (serves(e, want))
            found = e;
        else
            gst_object_unref(gst_object_ref_sink(e));
    }
    gst_plugin_feature_list_free(factories);
    return found;
}

/* nvcodec: a per-device element whose read-only cuda-device-id already is
 * the ordinal, or an "auto GPU" element whose cuda-device-id can be set. */
static gboolean on_cuda_device(GstElement *e, gconstpointer want)
{
    GParamSpec *pspec = g_object_class_find_property(G_OBJECT_GET_CLASS(e), "cuda-device-id");
    gint ordinal = GPOINTER_TO_INT(want), id = -1;

    if ((pspec->flags & G_PARAM_WRITABLE) && !(pspec->flags & G_PARAM_CONSTRUCT_ONLY))
        g_object_set(e, "cuda-device-id", ordinal, NULL);
    g_object_get(e, "cuda-device-id", &id, NULL);
    return id == ordinal;
}

/* va: the element whose device-path is the node (vah264enc for the first
 * node, va<node>h264enc for others, low-power variants too). */
static gboolean on_render_node(GstElement *e, gconstpointer want)
{
    gchar *path = NULL;
    gboolean same;

    g_object_get(e, "device-path", &path, NULL);
    same = g_strcmp0(path, want) == 0;
    g_free(path);
    return same;
}

/* FALSE, with *why, when a row of the family says none of its children
 * can honour the settings (before making one). */
static gboolean family_can_honour(gpubalance_encoder_family family, const GpbEncodeSettings *s, gchar **why)
{
    for (size_t i = 0; i < family_rows[family].n; i++) {
        const GpbRow *row = &family_rows[family].rows[i];

        if (row->need == NEVER && row_applies(row, s)) {
            gchar *text = setting_text(row->setting, s);

            *why = g_strdup_printf("%s: %s", text, row->value);
            g_free(text);
            return FALSE;
        }
    }
    return TRUE;
}

/* The first of the core's software encoders this GStreamer has that can
 * honour the settings. */
static GstElement *software_child(gpubalance_codec codec, const GpbEncodeSettings *s, gpubalance_encoder_family *family,
                                  gchar **why)
{
    size_t n = 0;
    const gpubalance_encoder_info *list =
        gpubalance_encoders(GPUBALANCE_FRAMEWORK_GSTREAMER, GPUBALANCE_BACKEND_SOFTWARE, codec, &n);
    GString *names = g_string_new(NULL);

    for (size_t i = 0; i < n; i++) {
        GstElement *e = gst_element_factory_make(list[i].name, NULL);
        gchar *refused = NULL;

        if (e && family_can_honour(list[i].family, s, &refused)) {
            *family = list[i].family;
            g_string_free(names, TRUE);
            return e;
        }
        g_string_append_printf(names, "%s%s%s%s", names->len ? ", " : "", list[i].name, refused ? " refuses " : "",
                               refused ? refused : "");
        g_free(refused);
        if (e)
            gst_object_unref(gst_object_ref_sink(e));
    }
    if (strstr(names->str, " refuses ")) /* a settings refusal, not a missing encoder */
        *why = g_strdup_printf("no software %s encoder here can take these settings (%s)", gpubalance_codec_name(codec),
                               names->str);
    else
        *why =
            g_strdup_printf("no such element: no software %s encoder (%s)", gpubalance_codec_name(codec), names->str);
    g_string_free(names, TRUE);
    return NULL;
}

GstElement *gpb_child_create(const gpubalance_lease *lease, gpubalance_codec codec, const GpbEncodeSettings *settings,
                             gpubalance_encoder_family *family, gchar **why)
{
    GstElement *e = NULL;

    switch (gpubalance_lease_backend(lease)) {
    case GPUBALANCE_BACKEND_NVENC:
        *family = GPUBALANCE_ENCODER_NVENC;
        e = first_serving(codec, "cuda-device-id", on_cuda_device,
                          GINT_TO_POINTER(gpubalance_lease_cuda_ordinal(lease)));
        if (!e)
            *why = g_strdup_printf("no such element: no nvcodec %s encoder with cuda-device-id %d "
                                   "(gst-plugins-bad nvcodec)",
                                   gpubalance_codec_name(codec), gpubalance_lease_cuda_ordinal(lease));
        break;
    case GPUBALANCE_BACKEND_VAAPI:
        *family = GPUBALANCE_ENCODER_VAAPI;
        e = first_serving(codec, "device-path", on_render_node, gpubalance_lease_render_node(lease));
        if (!e)
            *why = g_strdup_printf("no such element: no va %s encoder with device-path %s (gst-plugins-bad va)",
                                   gpubalance_codec_name(codec), gpubalance_lease_render_node(lease));
        break;
    default:
        e = software_child(codec, settings, family, why);
        break;
    }
    return e;
}
