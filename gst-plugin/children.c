/* children.c - finding encoder elements and mapping properties onto them. */
#include "children.h"

#include <string.h>

GST_DEBUG_CATEGORY_EXTERN(gst_gpubalance_enc_debug);
#define GST_CAT_DEFAULT gst_gpubalance_enc_debug

/* ---- the mapping table -------------------------------------------------- */

typedef struct {
    const char *bitrate;         /* property taking the bitrate */
    guint bitrate_scale;         /* kbit/s x scale = its unit (openh264enc: bit/s) */
    const char *gop;             /* keyframe interval property */
    const char *speed;           /* speed/quality property */
    const char *speed_values[3]; /* for fast, balanced, quality */
    const char *rc;              /* rate control property, NULL if none */
    const char *rc_values[3];    /* for cbr, vbr, cqp; NULL = leave */
} ChildMap;

/* x264enc's single-pass VBR is "qual" (the bitrate then caps it): its
 * "pass1" is the first of two passes and writes a stats file into the
 * working directory of whatever process encodes. */
static const ChildMap child_maps[] = {
    [GPB_CHILD_X264] =
        {"bitrate", 1, "key-int-max", "speed-preset", {"veryfast", "medium", "slow"}, "pass", {"cbr", "qual", "quant"}},
    [GPB_CHILD_X265] =
        {"bitrate", 1, "key-int-max", "speed-preset", {"veryfast", "medium", "slow"}, NULL, {NULL, NULL, NULL}},
    [GPB_CHILD_OPENH264] = {"bitrate",
                            1000,
                            "gop-size",
                            "complexity",
                            {"low", "medium", "high"},
                            "rate-control",
                            {"bitrate", "buffer", "quality"}},
    [GPB_CHILD_NVCODEC] = {"bitrate", 1, "gop-size", "preset", {"p2", "p4", "p6"}, "rc-mode", {"cbr", "vbr", "cqp"}},
    [GPB_CHILD_VA] =
        {"bitrate", 1, "key-int-max", "target-usage", {"7", "4", "1"}, "rate-control", {"cbr", "vbr", "cqp"}},
};

/* Sets one child property from text, if the child has it, the value is
 * valid for it, and (only_mutable) it may change now. */
static void set_child(GstElement *child, const char *name, const char *value, gboolean only_mutable)
{
    GParamSpec *pspec;

    if (!name || !value)
        return;
    pspec = g_object_class_find_property(G_OBJECT_GET_CLASS(child), name);
    if (!pspec || !(pspec->flags & G_PARAM_WRITABLE)) {
        GST_DEBUG_OBJECT(child, "no writable property %s", name);
        return;
    }
    if (only_mutable && !(pspec->flags & GST_PARAM_MUTABLE_PLAYING) && GST_STATE(child) > GST_STATE_READY) {
        GST_INFO_OBJECT(child, "%s cannot change while %s; it applies from the next placement", name,
                        gst_element_state_get_name(GST_STATE(child)));
        return;
    }
    if (G_IS_PARAM_SPEC_ENUM(pspec) && !g_enum_get_value_by_nick(G_PARAM_SPEC_ENUM(pspec)->enum_class, value) &&
        !g_ascii_isdigit(value[0])) {
        GST_WARNING_OBJECT(child, "%s has no value %s; left at its default", name, value);
        return;
    }
    GST_DEBUG_OBJECT(child, "%s = %s", name, value);
    gst_util_set_object_arg(G_OBJECT(child), name, value);
}

void gpb_child_apply(GstElement *child, GpbChildKind kind, const GpbEncodeSettings *s, gboolean only_mutable)
{
    const ChildMap *map = &child_maps[kind];
    gchar text[32];

    if (s->bitrate > 0) {
        g_snprintf(text, sizeof(text), "%" G_GUINT64_FORMAT, (guint64)s->bitrate * map->bitrate_scale);
        set_child(child, map->bitrate, text, only_mutable);
    }
    if (s->gop_size >= 0) {
        g_snprintf(text, sizeof(text), "%d", s->gop_size);
        set_child(child, map->gop, text, only_mutable);
    }
    set_child(child, map->speed, map->speed_values[s->speed], only_mutable);
    set_child(child, map->rc, map->rc_values[s->rate_control], only_mutable);
    if (kind == GPB_CHILD_X264 && s->rate_control == GPB_RC_CQP)
        set_child(child, "quantizer", "23", only_mutable);
    if (kind == GPB_CHILD_X265 && s->rate_control == GPB_RC_CQP)
        set_child(child, "qp", "23", only_mutable);
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

static GstElement *software_child(gpubalance_codec codec, GpbChildKind *kind)
{
    static const struct {
        gpubalance_codec codec;
        const char *factory;
        GpbChildKind kind;
    } software[] = {
        {GPUBALANCE_CODEC_H264, "x264enc", GPB_CHILD_X264},
        {GPUBALANCE_CODEC_H264, "openh264enc", GPB_CHILD_OPENH264},
        {GPUBALANCE_CODEC_HEVC, "x265enc", GPB_CHILD_X265},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(software); i++) {
        GstElement *e;

        if (software[i].codec != codec || !(e = gst_element_factory_make(software[i].factory, NULL)))
            continue;
        *kind = software[i].kind;
        return e;
    }
    return NULL;
}

GstElement *gpb_child_create(const gpubalance_lease *lease, gpubalance_codec codec, GpbChildKind *kind, gchar **why)
{
    GstElement *e = NULL;

    switch (gpubalance_lease_backend(lease)) {
    case GPUBALANCE_BACKEND_NVENC:
        *kind = GPB_CHILD_NVCODEC;
        e = first_serving(codec, "cuda-device-id", on_cuda_device,
                          GINT_TO_POINTER(gpubalance_lease_cuda_ordinal(lease)));
        if (!e)
            *why = g_strdup_printf("no GStreamer nvcodec %s encoder with cuda-device-id %d (gst-plugins-bad nvcodec)",
                                   gpubalance_codec_name(codec), gpubalance_lease_cuda_ordinal(lease));
        break;
    case GPUBALANCE_BACKEND_VAAPI:
        *kind = GPB_CHILD_VA;
        e = first_serving(codec, "device-path", on_render_node, gpubalance_lease_render_node(lease));
        if (!e)
            *why = g_strdup_printf("no GStreamer va %s encoder with device-path %s (gst-plugins-bad va)",
                                   gpubalance_codec_name(codec), gpubalance_lease_render_node(lease));
        break;
    default:
        e = software_child(codec, kind);
        if (!e)
            *why =
                g_strdup_printf("no software %s encoder (x264enc, openh264enc, x265enc)", gpubalance_codec_name(codec));
        break;
    }
    return e;
}
