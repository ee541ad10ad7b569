/* gstgpubalanceenc.c - the gpubalanceenc element: a bin that encodes
 * through whatever libgpubalance chose for the stream, and falls back when
 * the chosen encoder refuses. This file: the type, its properties and
 * enums, its pads' caps answer, and its state changes. Placement and the
 * inner chain are in gstgpubalanceenc-chain.c, the trial and fallback in
 * gstgpubalanceenc-trial.c.
 *
 * Logging. libgpubalance's log lines keep going where the application
 * routes them (gpubalance_set_log_handler(), stderr by default): the
 * element installs no handler of its own, since the handler is
 * process-wide and would replace an embedding application's. Everything
 * the element learns from the core (a placement, a refusal, the list of
 * attempts) it logs and posts itself, from gpubalance_last_error() and the
 * lease, on its own debug category and bus.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstgpubalanceenc-private.h"

GST_DEBUG_CATEGORY(gst_gpubalance_enc_debug);
#define GST_CAT_DEFAULT gst_gpubalance_enc_debug

enum {
    PROP_0,
    PROP_CODEC,
    PROP_BITRATE,
    PROP_GOP_SIZE,
    PROP_SPEED,
    PROP_RATE_CONTROL,
    PROP_QUALITY,
    PROP_TUNE,
    PROP_CHILD_SETTINGS,
    PROP_POLICY,
    PROP_ORDER,
    PROP_DEVICE,
    PROP_WHEN_FULL,
    PROP_SELECTED_BACKEND,
    PROP_SELECTED_DEVICE,
    PROP_SELECTED_ENCODER,
    N_PROPERTIES
};

static GParamSpec *properties[N_PROPERTIES];

/* Autopluggers (encodebin, transcodebin) take the highest-ranked encoder
 * whose src template fits the profile, then a parser for that template:
 * so each codec has its own element (gpubalanceh264enc, gpubalanceh265enc,
 * gpubalanceav1enc: the same element with the codec fixed and one codec in
 * its template), ranked above NVIDIA's own encoders (primary x 2) and so
 * above x264enc/x265enc (primary) and the va encoders, since it places the
 * stream on any of them. GST_PLUGIN_FEATURE_RANK lowers them. The
 * all-codec gpubalanceenc is for gst-launch and named profiles
 * ("mp4mux:gpubalanceenc", which encodebin looks up among the encoders of
 * marginal rank and above): ranked marginal, below every codec's own
 * encoder, an autoplugger takes it only where nothing else encodes. */
#define GST_GPUBALANCE_ENC_CODEC_RANK (GST_RANK_PRIMARY * 2 + 1)

typedef struct {
    const char *feature; /* element name */
    const char *type_name;
    gpubalance_codec codec;
    const char *src_caps;
    const char *long_name;
} GstGpubalanceEncCodecElement;

static const GstGpubalanceEncCodecElement codec_elements[] = {
    {"gpubalanceh264enc", "GstGpubalanceH264Enc", GPUBALANCE_CODEC_H264,
     "video/x-h264, stream-format = (string) { avc, byte-stream }, alignment = (string) au",
     "gpubalance H.264 encoder"},
    {"gpubalanceh265enc", "GstGpubalanceH265Enc", GPUBALANCE_CODEC_HEVC,
     "video/x-h265, stream-format = (string) { hvc1, hev1, byte-stream }, alignment = (string) au",
     "gpubalance H.265 encoder"},
    {"gpubalanceav1enc", "GstGpubalanceAV1Enc", GPUBALANCE_CODEC_AV1,
     "video/x-av1, stream-format = (string) obu-stream, alignment = (string) tu", "gpubalance AV1 encoder"},
};

/* The codec element a type is, or NULL for gpubalanceenc. */
static GQuark codec_element_quark;

G_DEFINE_TYPE_WITH_CODE(GstGpubalanceEnc, gst_gpubalance_enc, GST_TYPE_BIN,
                        GST_DEBUG_CATEGORY_INIT(gst_gpubalance_enc_debug, "gpubalanceenc", 0,
                                                "gpubalance encoder placement"));
GST_ELEMENT_REGISTER_DEFINE(gpubalanceenc, "gpubalanceenc", GST_RANK_MARGINAL, GST_TYPE_GPUBALANCE_ENC);

static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS,
                            GST_STATIC_CAPS("video/x-h264, stream-format = (string) { avc, byte-stream }, "
                                            "alignment = (string) au; "
                                            "video/x-h265, stream-format = (string) { hvc1, hev1, byte-stream }, "
                                            "alignment = (string) au; "
                                            "video/x-av1, stream-format = (string) obu-stream, "
                                            "alignment = (string) tu"));

/* ---- enums -------------------------------------------------------------- */

#define GST_TYPE_GPUBALANCE_CODEC (gst_gpubalance_enc_codec_get_type())
static GType gst_gpubalance_enc_codec_get_type(void)
{
    static GType type;
    static const GEnumValue values[] = {
        {GPUBALANCE_CODEC_H264, "H.264 / AVC", "h264"},
        {GPUBALANCE_CODEC_HEVC, "H.265 / HEVC", "h265"},
        {GPUBALANCE_CODEC_AV1, "AV1", "av1"},
        {0, NULL, NULL},
    };

    if (g_once_init_enter(&type))
        g_once_init_leave(&type, g_enum_register_static("GstGpubalanceCodec", values));
    return type;
}

#define GST_TYPE_GPUBALANCE_SPEED (gst_gpubalance_enc_speed_get_type())
static GType gst_gpubalance_enc_speed_get_type(void)
{
    static GType type;
    static const GEnumValue values[] = {
        {GPB_SPEED_FAST, "Fast: x264's veryfast preset (NVENC p2 or hp, VA target-usage 6, aom cpu-used 6)", "fast"},
        {GPB_SPEED_BALANCED, "Balanced: x264's medium preset (NVENC p4 or default, VA target-usage 4, aom cpu-used 4)",
         "balanced"},
        {GPB_SPEED_QUALITY, "Quality: x264's slow preset (NVENC p5 or hq, VA target-usage 3, aom cpu-used 3)",
         "quality"},
        {0, NULL, NULL},
    };

    if (g_once_init_enter(&type))
        g_once_init_leave(&type, g_enum_register_static("GstGpubalanceSpeed", values));
    return type;
}

#define GST_TYPE_GPUBALANCE_RATE_CONTROL (gst_gpubalance_enc_rate_control_get_type())
static GType gst_gpubalance_enc_rate_control_get_type(void)
{
    static GType type;
    static const GEnumValue values[] = {
        {GPB_RC_CBR, "Constant bitrate: bitrate is the average and the cap", "cbr"},
        {GPB_RC_VBR, "Variable bitrate: bitrate is the average", "vbr"},
        {GPB_RC_CQP, "Constant quantizer: quality is the QP of every frame", "cqp"},
        {GPB_RC_CQ, "Constant quality (x264 CRF, NVENC CQ, VA ICQ): quality; bitrate, if set, caps it", "cq"},
        {0, NULL, NULL},
    };

    if (g_once_init_enter(&type))
        g_once_init_leave(&type, g_enum_register_static("GstGpubalanceRateControl", values));
    return type;
}

#define GST_TYPE_GPUBALANCE_TUNE (gst_gpubalance_enc_tune_get_type())
static GType gst_gpubalance_enc_tune_get_type(void)
{
    static GType type;
    static const GEnumValue values[] = {
        {GPB_TUNE_NONE, "Each encoder's default", "none"},
        {GPB_TUNE_ZEROLATENCY,
         "Zero latency: no lookahead, no B-frames (x264/x265 tune=zerolatency, NVENC zerolatency, aom realtime)",
         "zerolatency"},
        {0, NULL, NULL},
    };

    if (g_once_init_enter(&type))
        g_once_init_leave(&type, g_enum_register_static("GstGpubalanceTune", values));
    return type;
}

/* ---- shared with the other files ------------------------------------------ */

void gst_gpubalance_enc_set_selected(GstGpubalanceEnc *self, const char *backend, const char *device,
                                     const char *encoder)
{
    GST_OBJECT_LOCK(self);
    g_free(self->selected_backend);
    g_free(self->selected_device);
    g_free(self->selected_encoder);
    self->selected_backend = g_strdup(backend);
    self->selected_device = g_strdup(device);
    self->selected_encoder = g_strdup(encoder);
    GST_OBJECT_UNLOCK(self);
    g_object_notify_by_pspec(G_OBJECT(self), properties[PROP_SELECTED_BACKEND]);
    g_object_notify_by_pspec(G_OBJECT(self), properties[PROP_SELECTED_DEVICE]);
    g_object_notify_by_pspec(G_OBJECT(self), properties[PROP_SELECTED_ENCODER]);
}

/* Called with the trial lock held. */
void gst_gpubalance_enc_clear_held(GstGpubalanceEnc *self)
{
    GstBuffer *buf;

    while ((buf = g_queue_pop_head(&self->held)))
        gst_buffer_unref(buf);
}

/* ---- the sink pad's caps answer -------------------------------------------- */

/* One answer, before the chain exists and after: the formats in the order
 * a free upstream should pick, whatever the inner videoconvert would say.
 * So upstream settles once and never renegotiates because of the chain. */
static gboolean gst_gpubalance_enc_sink_query(GstPad *pad, GstObject *parent, GstQuery *query)
{
    GstCaps *ours, *filter, *caps;
    gboolean accept;

    switch (GST_QUERY_TYPE(query)) {
    case GST_QUERY_CAPS:
        ours = gst_pad_get_pad_template_caps(pad);
        gst_query_parse_caps(query, &filter);
        caps = filter ? gst_caps_intersect_full(ours, filter, GST_CAPS_INTERSECT_FIRST) : gst_caps_ref(ours);
        gst_query_set_caps_result(query, caps);
        gst_caps_unref(caps);
        gst_caps_unref(ours);
        return TRUE;
    case GST_QUERY_ACCEPT_CAPS:
        ours = gst_pad_get_pad_template_caps(pad);
        gst_query_parse_accept_caps(query, &caps);
        accept = gst_caps_is_subset(caps, ours);
        gst_query_set_accept_caps_result(query, accept);
        gst_caps_unref(ours);
        return TRUE;
    default:
        return gst_pad_query_default(pad, parent, query);
    }
}

/* ---- states ------------------------------------------------------------------ */

static GstStateChangeReturn gst_gpubalance_enc_change_state(GstElement *element, GstStateChange transition)
{
    GstGpubalanceEnc *self = GST_GPUBALANCE_ENC(element);
    GstStateChangeReturn ret = GST_ELEMENT_CLASS(gst_gpubalance_enc_parent_class)->change_state(element, transition);

    if (transition == GST_STATE_CHANGE_PAUSED_TO_READY || transition == GST_STATE_CHANGE_READY_TO_NULL) {
        gst_gpubalance_enc_end_placement(self);
        gst_video_info_init(&self->info);
        gst_gpubalance_enc_set_selected(self, NULL, NULL, NULL);
    }
    return ret;
}

static void gst_gpubalance_enc_handle_message(GstBin *bin, GstMessage *message)
{
    if (!gst_gpubalance_enc_keep_trial_error(GST_GPUBALANCE_ENC(bin), message))
        GST_BIN_CLASS(gst_gpubalance_enc_parent_class)->handle_message(bin, message);
}

/* ---- properties ------------------------------------------------------------ */

/* Validates a string property with the core's own parser, so that a bad
 * value is refused when it is set, with a warning naming it. */
static gboolean gst_gpubalance_enc_valid_or_warn(GstGpubalanceEnc *self, const char *property,
                                                 int (*check)(gpubalance_stream *, const char *), const char *value)
{
    gpubalance_stream *s;
    gboolean ok;

    if (!value)
        return TRUE;
    gpubalance_stream_new(&s);
    ok = check(s, value) == 0;
    gpubalance_stream_free(s);
    if (!ok)
        g_warning("%s: invalid value for property '%s': %s; keeping the previous value", GST_OBJECT_NAME(self),
                  property, gpubalance_last_error());
    return ok;
}

static void gst_gpubalance_enc_replace_string(GstGpubalanceEnc *self, gchar **field, const GValue *value,
                                              const char *property, int (*check)(gpubalance_stream *, const char *))
{
    const char *text = g_value_get_string(value);

    if (text && !*text)
        text = NULL; /* "" restores the default */
    if (!gst_gpubalance_enc_valid_or_warn(self, property, check, text))
        return;
    GST_OBJECT_LOCK(self);
    g_free(*field);
    *field = g_strdup(text);
    GST_OBJECT_UNLOCK(self);
}

static void gst_gpubalance_enc_set_child_settings(GstGpubalanceEnc *self, const char *text)
{
    GstCaps *parsed = NULL;
    gchar *error = NULL;

    if (text && *text && !(parsed = gpb_child_settings_parse(text, &error))) {
        g_warning("%s: invalid value for property 'child-settings': %s; keeping the previous value",
                  GST_OBJECT_NAME(self), error);
        g_free(error);
        return;
    }
    GST_OBJECT_LOCK(self);
    gst_caps_replace(&self->child_settings, parsed);
    GST_OBJECT_UNLOCK(self);
    gst_clear_caps(&parsed);
}

/* A change of an encoding setting reaches the running child where the
 * child allows it; the rest applies from the next placement. */
static void gst_gpubalance_enc_set_setting(GstGpubalanceEnc *self, guint id, const GValue *value)
{
    GpbEncodeSettings settings;
    GstElement *encoder = NULL;
    gpubalance_encoder_family family;

    GST_OBJECT_LOCK(self);
    if (id == PROP_BITRATE)
        self->settings.bitrate = g_value_get_uint(value);
    else if (id == PROP_GOP_SIZE)
        self->settings.gop_size = g_value_get_int(value);
    else if (id == PROP_SPEED)
        self->settings.speed = g_value_get_enum(value);
    else if (id == PROP_RATE_CONTROL)
        self->settings.rate_control = g_value_get_enum(value);
    else if (id == PROP_QUALITY)
        self->settings.quality = g_value_get_double(value);
    else
        self->settings.tune = g_value_get_enum(value);
    settings = self->settings;
    if (self->encoder)
        encoder = gst_object_ref(self->encoder);
    family = self->family;
    GST_OBJECT_UNLOCK(self);
    if (encoder) {
        gchar *why = NULL;

        /* the stream goes on with the child's earlier settings */
        if (!gpb_child_apply(encoder, family, &settings, TRUE, &why)) {
            GST_ELEMENT_WARNING(self, LIBRARY, SETTINGS, ("Setting not applied."), ("%s", why));
            g_free(why);
        }
        gst_object_unref(encoder);
    }
}

static void gst_gpubalance_enc_set_property(GObject *object, guint id, const GValue *value, GParamSpec *pspec)
{
    GstGpubalanceEnc *self = GST_GPUBALANCE_ENC(object);

    switch (id) {
    case PROP_CODEC:
        if (g_type_get_qdata(G_OBJECT_TYPE(self), codec_element_quark) &&
            (gint)self->codec != g_value_get_enum(value)) {
            g_warning("%s: %s encodes %s only; use gpubalanceenc to choose the codec", GST_OBJECT_NAME(self),
                      G_OBJECT_TYPE_NAME(self), gpubalance_codec_name(self->codec));
            break;
        }
        GST_OBJECT_LOCK(self);
        self->codec = g_value_get_enum(value);
        self->codec_set = TRUE;
        GST_OBJECT_UNLOCK(self);
        break;
    case PROP_BITRATE:
    case PROP_GOP_SIZE:
    case PROP_SPEED:
    case PROP_RATE_CONTROL:
    case PROP_QUALITY:
    case PROP_TUNE:
        gst_gpubalance_enc_set_setting(self, id, value);
        break;
    case PROP_CHILD_SETTINGS:
        gst_gpubalance_enc_set_child_settings(self, g_value_get_string(value));
        break;
    case PROP_POLICY:
        gst_gpubalance_enc_replace_string(self, &self->policy, value, "policy", gpubalance_stream_set_policy);
        break;
    case PROP_ORDER:
        gst_gpubalance_enc_replace_string(self, &self->order, value, "order", gpubalance_stream_set_order);
        break;
    case PROP_DEVICE:
        gst_gpubalance_enc_replace_string(self, &self->device, value, "device", gpubalance_stream_set_device);
        break;
    case PROP_WHEN_FULL:
        gst_gpubalance_enc_replace_string(self, &self->when_full, value, "when-full", gpubalance_stream_set_when_full);
        break;
    default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
    }
}

static void gst_gpubalance_enc_get_property(GObject *object, guint id, GValue *value, GParamSpec *pspec)
{
    GstGpubalanceEnc *self = GST_GPUBALANCE_ENC(object);

    GST_OBJECT_LOCK(self);
    switch (id) {
    case PROP_CODEC:
        g_value_set_enum(value, self->codec);
        break;
    case PROP_BITRATE:
        g_value_set_uint(value, self->settings.bitrate);
        break;
    case PROP_GOP_SIZE:
        g_value_set_int(value, self->settings.gop_size);
        break;
    case PROP_SPEED:
        g_value_set_enum(value, self->settings.speed);
        break;
    case PROP_RATE_CONTROL:
        g_value_set_enum(value, self->settings.rate_control);
        break;
    case PROP_QUALITY:
        g_value_set_double(value, self->settings.quality);
        break;
    case PROP_TUNE:
        g_value_set_enum(value, self->settings.tune);
        break;
    case PROP_CHILD_SETTINGS:
        g_value_take_string(value, self->child_settings ? gst_caps_to_string(self->child_settings) : NULL);
        break;
    case PROP_POLICY:
        g_value_set_string(value, self->policy);
        break;
    case PROP_ORDER:
        g_value_set_string(value, self->order);
        break;
    case PROP_DEVICE:
        g_value_set_string(value, self->device);
        break;
    case PROP_WHEN_FULL:
        g_value_set_string(value, self->when_full);
        break;
    case PROP_SELECTED_BACKEND:
        g_value_set_string(value, self->selected_backend);
        break;
    case PROP_SELECTED_DEVICE:
        g_value_set_string(value, self->selected_device);
        break;
    case PROP_SELECTED_ENCODER:
        g_value_set_string(value, self->selected_encoder);
        break;
    default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
        break;
    }
    GST_OBJECT_UNLOCK(self);
}

static void gst_gpubalance_enc_finalize(GObject *object)
{
    GstGpubalanceEnc *self = GST_GPUBALANCE_ENC(object);

    g_clear_pointer(&self->lease, gpubalance_lease_release);
    gst_gpubalance_enc_clear_held(self);
    g_free(self->trial_error);
    g_mutex_clear(&self->trial_lock);
    gst_clear_caps(&self->child_settings);
    g_free(self->policy);
    g_free(self->order);
    g_free(self->device);
    g_free(self->when_full);
    g_free(self->selected_backend);
    g_free(self->selected_device);
    g_free(self->selected_encoder);
    G_OBJECT_CLASS(gst_gpubalance_enc_parent_class)->finalize(object);
}

static void gst_gpubalance_enc_install_properties(GObjectClass *object_class)
{
    const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS;
    const GParamFlags rw_playing = rw | GST_PARAM_MUTABLE_PLAYING;
    const GParamFlags ro = G_PARAM_READABLE | G_PARAM_STATIC_STRINGS;

    properties[PROP_CODEC] =
        g_param_spec_enum("codec", "Codec", "Codec to encode; when not set, follows downstream caps (default h264)",
                          GST_TYPE_GPUBALANCE_CODEC, GPUBALANCE_CODEC_H264, rw | GST_PARAM_MUTABLE_READY);
    properties[PROP_BITRATE] =
        g_param_spec_uint("bitrate", "Bitrate",
                          "Average bitrate in kbit/s for vbr and cbr (cbr: also the cap; cq: the cap; cqp: unused), "
                          "0 = the chosen encoder's default",
                          0, 2048000, 0, rw_playing);
    properties[PROP_GOP_SIZE] =
        g_param_spec_int("gop-size", "GOP size", "Frames between keyframes, -1 = the chosen encoder's default", -1,
                         G_MAXINT, -1, rw_playing);
    properties[PROP_SPEED] =
        g_param_spec_enum("speed", "Speed", "Speed/quality trade-off, mapped to each encoder's preset",
                          GST_TYPE_GPUBALANCE_SPEED, GPB_SPEED_BALANCED, rw_playing);
    properties[PROP_RATE_CONTROL] = g_param_spec_enum("rate-control", "Rate control", "Rate control mode",
                                                      GST_TYPE_GPUBALANCE_RATE_CONTROL, GPB_RC_VBR, rw_playing);
    properties[PROP_QUALITY] = g_param_spec_double(
        "quality", "Quality",
        "Constant quality for rate-control cqp and cq, on x264's CRF scale (0 best .. 51 worst): x264/x265 CRF "
        "or QP, NVENC CQ or QP, VA ICQ or QP, AV1 encoders 0..63 scaled by 63/51",
        0, GPUBALANCE_MAX_QUALITY, 23, rw_playing);
    properties[PROP_TUNE] =
        g_param_spec_enum("tune", "Tune", "Tuning; zerolatency lowers the reported and real latency",
                          GST_TYPE_GPUBALANCE_TUNE, GPB_TUNE_NONE, rw | GST_PARAM_MUTABLE_READY);
    properties[PROP_CHILD_SETTINGS] = g_param_spec_string(
        "child-settings", "Child settings",
        "Settings for the chosen encoder, per element factory or backend (nvenc, vaapi, software, sim): "
        "\"x264enc, tune=film; nvenc, preset=p7\"; others are ignored; applied after the mapped settings",
        NULL, rw);
    properties[PROP_POLICY] = g_param_spec_string(
        "policy", "Policy", "Placement policy: balanced or fill; NULL = the configuration's", NULL, rw);
    properties[PROP_ORDER] = g_param_spec_string(
        "order", "Order", "Backends to try in order, as nvenc,vaapi,software; NULL = the configuration's", NULL, rw);
    properties[PROP_DEVICE] = g_param_spec_string(
        "device", "Device", "Force one device id (nvenc:0, vaapi:renderD128, software, sim:NAME); NULL = any", NULL,
        rw);
    properties[PROP_WHEN_FULL] =
        g_param_spec_string("when-full", "When full",
                            "When every device is full: software, wait or fail; NULL = the configuration's", NULL, rw);
    properties[PROP_SELECTED_BACKEND] =
        g_param_spec_string("selected-backend", "Selected backend",
                            "Backend of the current placement (nvenc, vaapi, software, sim)", NULL, ro);
    properties[PROP_SELECTED_DEVICE] =
        g_param_spec_string("selected-device", "Selected device", "Device id of the current placement", NULL, ro);
    properties[PROP_SELECTED_ENCODER] = g_param_spec_string("selected-encoder", "Selected encoder",
                                                            "Element factory encoding the stream now", NULL, ro);
    g_object_class_install_properties(object_class, N_PROPERTIES, properties);
}

static void gst_gpubalance_enc_class_init(GstGpubalanceEncClass *klass)
{
    GObjectClass *object_class = G_OBJECT_CLASS(klass);
    GstElementClass *element_class = GST_ELEMENT_CLASS(klass);
    GstBinClass *bin_class = GST_BIN_CLASS(klass);
    GstCaps *sink_caps = gst_gpubalance_enc_sink_caps();

    object_class->set_property = gst_gpubalance_enc_set_property;
    object_class->get_property = gst_gpubalance_enc_get_property;
    object_class->finalize = gst_gpubalance_enc_finalize;
    element_class->change_state = gst_gpubalance_enc_change_state;
    bin_class->handle_message = gst_gpubalance_enc_handle_message;
    gst_gpubalance_enc_install_properties(object_class);

    gst_element_class_add_pad_template(element_class,
                                       gst_pad_template_new("sink", GST_PAD_SINK, GST_PAD_ALWAYS, sink_caps));
    gst_caps_unref(sink_caps);
    gst_element_class_add_static_pad_template(element_class, &src_template);
    gst_element_class_set_static_metadata(
        element_class, "gpubalance encoder", "Codec/Encoder/Video/Hardware",
        "Encodes on the NVENC GPU, VA-API device or CPU that gpubalance chooses for the stream, with fallback",
        "gpubalance developers");
    gst_type_mark_as_plugin_api(GST_TYPE_GPUBALANCE_CODEC, 0);
    gst_type_mark_as_plugin_api(GST_TYPE_GPUBALANCE_SPEED, 0);
    gst_type_mark_as_plugin_api(GST_TYPE_GPUBALANCE_RATE_CONTROL, 0);
    gst_type_mark_as_plugin_api(GST_TYPE_GPUBALANCE_TUNE, 0);
    codec_element_quark = g_quark_from_static_string("gst-gpubalance-enc-codec-element");
}

static void gst_gpubalance_enc_init(GstGpubalanceEnc *self)
{
    GstElementClass *klass = GST_ELEMENT_GET_CLASS(self);
    const GstGpubalanceEncCodecElement *fixed = g_type_get_qdata(G_OBJECT_TYPE(self), codec_element_quark);

    self->sinkpad =
        gst_ghost_pad_new_no_target_from_template("sink", gst_element_class_get_pad_template(klass, "sink"));
    self->srcpad = gst_ghost_pad_new_no_target_from_template("src", gst_element_class_get_pad_template(klass, "src"));
    gst_pad_set_event_function(self->sinkpad, gst_gpubalance_enc_sink_event);
    gst_pad_set_chain_function(self->sinkpad, gst_gpubalance_enc_sink_chain);
    gst_pad_set_query_function(self->sinkpad, gst_gpubalance_enc_sink_query);
    gst_element_add_pad(GST_ELEMENT(self), self->sinkpad);
    gst_element_add_pad(GST_ELEMENT(self), self->srcpad);
    self->codec = fixed ? fixed->codec : GPUBALANCE_CODEC_H264;
    self->codec_set = fixed != NULL;
    self->settings.gop_size = -1;
    self->settings.speed = GPB_SPEED_BALANCED;
    self->settings.rate_control = GPB_RC_VBR;
    self->settings.quality = 23;
    g_mutex_init(&self->trial_lock);
    g_queue_init(&self->held);
    gst_video_info_init(&self->info);
}

/* ---- the per-codec elements --------------------------------------------------- */

static void gst_gpubalance_enc_codec_class_init(gpointer klass, gpointer data)
{
    const GstGpubalanceEncCodecElement *e = data;
    GstElementClass *element_class = GST_ELEMENT_CLASS(klass);
    GstCaps *caps = gst_caps_from_string(e->src_caps);

    /* replaces the all-codec template of the same name */
    gst_element_class_add_pad_template(element_class, gst_pad_template_new("src", GST_PAD_SRC, GST_PAD_ALWAYS, caps));
    gst_caps_unref(caps);
    gst_element_class_set_static_metadata(
        element_class, e->long_name, "Codec/Encoder/Video/Hardware",
        "Encodes on the NVENC GPU, VA-API device or CPU that gpubalance chooses for the stream, with fallback",
        "gpubalance developers");
}

gboolean gst_gpubalance_enc_register_codec_elements(GstPlugin *plugin)
{
    for (size_t i = 0; i < G_N_ELEMENTS(codec_elements); i++) {
        const GstGpubalanceEncCodecElement *e = &codec_elements[i];
        GTypeInfo info = {
            .class_size = sizeof(GstGpubalanceEncClass),
            .class_init = gst_gpubalance_enc_codec_class_init,
            .class_data = e,
            .instance_size = sizeof(GstGpubalanceEnc),
        };
        GType type = g_type_from_name(e->type_name);

        if (!type) {
            type = g_type_register_static(GST_TYPE_GPUBALANCE_ENC, e->type_name, &info, 0);
            g_type_set_qdata(type, g_quark_from_static_string("gst-gpubalance-enc-codec-element"), (gpointer)e);
        }
        if (!gst_element_register(plugin, e->feature, GST_GPUBALANCE_ENC_CODEC_RANK, type))
            return FALSE;
    }
    return TRUE;
}
