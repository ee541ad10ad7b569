/* fakeenc.c - see fakeenc.h. */
#include "fakeenc.h"

/* GStreamer 1.24+'s nvh264enc properties (nvencoder under nvbaseenc's
 * names, with p1..p7 presets and tune; as gst-inspect-1.0 shows them on
 * Debian 13's 1.26), enough for every row of the element's NVENC mapping:
 * the generation Debian 12 does not have, tested here by its names. */
enum {
    PROP_CUDA_DEVICE_ID = 1,
    PROP_PRESET,
    PROP_TUNE,
    PROP_RC_MODE,
    PROP_BITRATE,
    PROP_MAX_BITRATE,
    PROP_GOP_SIZE,
    PROP_B_FRAMES,
    PROP_RC_LOOKAHEAD,
    PROP_QP_CONST_I,
    PROP_QP_CONST_P,
    PROP_QP_CONST_B,
    PROP_CONST_QUALITY,
    PROP_ZEROLATENCY,
    N_PROPS,
};

static GParamSpec *fake_specs[N_PROPS];

typedef struct {
    GstElement parent;
    GstPad *sinkpad;
    GstPad *srcpad;
    GValue values[N_PROPS];
} GpbFakeEnc;

typedef struct {
    GstElementClass parent_class;
} GpbFakeEncClass;

static GType gpb_fake_enc_get_type(void);
G_DEFINE_TYPE(GpbFakeEnc, gpb_fake_enc, GST_TYPE_ELEMENT)

static GstStaticPadTemplate fake_sink = GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS,
                                                                GST_STATIC_CAPS("video/x-raw, format = (string) NV12"));
static GstStaticPadTemplate fake_src =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS,
                            GST_STATIC_CAPS("video/x-h264, stream-format = (string) byte-stream, "
                                            "alignment = (string) au"));

static GstFlowReturn refuse(GstPad *pad, GstObject *parent, GstBuffer *buf)
{
    gst_buffer_unref(buf);
    GST_ELEMENT_ERROR(parent, LIBRARY, INIT, ("Failed to open encoder session."),
                      ("OpenEncodeSessionEx failed: out of memory (10)"));
    return GST_FLOW_ERROR;
}

static gboolean sink_event(GstPad *pad, GstObject *parent, GstEvent *event)
{
    if (GST_EVENT_TYPE(event) == GST_EVENT_CAPS) {
        gst_event_unref(event); /* accepted; the session opens on the first buffer */
        return TRUE;
    }
    return gst_pad_event_default(pad, parent, event);
}

/* A property's value, its default until set. */
static GValue *value_of(GObject *object, guint id)
{
    GValue *v = &((GpbFakeEnc *)object)->values[id];

    if (!G_IS_VALUE(v)) {
        g_value_init(v, fake_specs[id]->value_type);
        g_param_value_set_default(fake_specs[id], v);
    }
    return v;
}

static void set_property(GObject *object, guint id, const GValue *value, GParamSpec *pspec)
{
    g_value_copy(value, value_of(object, id));
}

static void get_property(GObject *object, guint id, GValue *value, GParamSpec *pspec)
{
    g_value_copy(value_of(object, id), value);
}

static void finalize(GObject *object)
{
    for (guint id = 1; id < N_PROPS; id++)
        if (G_IS_VALUE(&((GpbFakeEnc *)object)->values[id]))
            g_value_unset(&((GpbFakeEnc *)object)->values[id]);
    G_OBJECT_CLASS(gpb_fake_enc_parent_class)->finalize(object);
}

/* The enums of 1.24's nvencoder, by their nicks (GstNvEncoderPreset,
 * GstNvEncoderTune, GstNvEncoderRCMode). */
static GType fake_enum(const char *name, const char *const *nicks)
{
    GType type = g_type_from_name(name);
    GEnumValue *values;
    guint n = g_strv_length((gchar **)nicks);

    if (type)
        return type;
    values = g_new0(GEnumValue, n + 1);
    for (guint i = 0; i < n; i++)
        values[i] = (GEnumValue){(gint)i, nicks[i], nicks[i]};
    return g_enum_register_static(name, values); /* values live as long as the type */
}

/* The base: pads, the refusal and cuda-device-id only, as an NVENC
 * element that names no setting the element maps. */
static void gpb_fake_enc_class_init(GpbFakeEncClass *klass)
{
    GObjectClass *object_class = G_OBJECT_CLASS(klass);
    GstElementClass *element_class = GST_ELEMENT_CLASS(klass);

    fake_specs[PROP_CUDA_DEVICE_ID] =
        g_param_spec_int("cuda-device-id", "", "", -1, 64, -1, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
    object_class->set_property = set_property;
    object_class->get_property = get_property;
    object_class->finalize = finalize;
    g_object_class_install_property(object_class, PROP_CUDA_DEVICE_ID, fake_specs[PROP_CUDA_DEVICE_ID]);
    gst_element_class_add_static_pad_template(element_class, &fake_sink);
    gst_element_class_add_static_pad_template(element_class, &fake_src);
    gst_element_class_set_static_metadata(element_class, "Fake NVENC H.264 encoder", "Codec/Encoder/Video/Hardware",
                                          "Refuses like NVENC past its session cap (tests only)", "gpubalance tests");
}

static void gpb_fake_enc_init(GpbFakeEnc *self)
{
    self->sinkpad = gst_pad_new_from_static_template(&fake_sink, "sink");
    self->srcpad = gst_pad_new_from_static_template(&fake_src, "src");
    gst_pad_set_chain_function(self->sinkpad, refuse);
    gst_pad_set_event_function(self->sinkpad, sink_event);
    gst_element_add_pad(GST_ELEMENT(self), self->sinkpad);
    gst_element_add_pad(GST_ELEMENT(self), self->srcpad);
}

void gpb_fakeenc_register_bare(void)
{
    gst_element_register(NULL, "gpbfakebareh264enc", GST_RANK_MARGINAL + 20, gpb_fake_enc_get_type());
}

/* ---- with 1.24's nvcodec properties ---------------------------------------- */

typedef GpbFakeEnc GpbFakeNvEnc;
typedef GpbFakeEncClass GpbFakeNvEncClass;

static GType gpb_fake_nv_enc_get_type(void);
G_DEFINE_TYPE(GpbFakeNvEnc, gpb_fake_nv_enc, gpb_fake_enc_get_type())

static void gpb_fake_nv_enc_class_init(GpbFakeNvEncClass *klass)
{
    static const char *const presets[] = {"default",
                                          "hp",
                                          "hq",
                                          "low-latency",
                                          "low-latency-hq",
                                          "low-latency-hp",
                                          "lossless",
                                          "lossless-hp",
                                          "p1",
                                          "p2",
                                          "p3",
                                          "p4",
                                          "p5",
                                          "p6",
                                          "p7",
                                          NULL};
    static const char *const tunes[] = {"default",           "high-quality", "low-latency",
                                        "ultra-low-latency", "lossless",     NULL};
    static const char *const rc_modes[] = {"default",   "constqp", "cbr",    "vbr", "vbr-minqp",
                                           "cbr-ld-hq", "cbr-hq",  "vbr-hq", NULL};
    const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING;
    GObjectClass *object_class = G_OBJECT_CLASS(klass);
    GParamSpec *all[N_PROPS] = {
        [PROP_PRESET] = g_param_spec_enum("preset", "", "", fake_enum("GpbFakeNvPreset", presets), 0, rw),
        [PROP_TUNE] = g_param_spec_enum("tune", "", "", fake_enum("GpbFakeNvTune", tunes), 0, rw),
        [PROP_RC_MODE] = g_param_spec_enum("rc-mode", "", "", fake_enum("GpbFakeNvRCMode", rc_modes), 0, rw),
        [PROP_BITRATE] = g_param_spec_uint("bitrate", "", "", 0, 2000 * 1024, 0, rw),
        [PROP_MAX_BITRATE] = g_param_spec_uint("max-bitrate", "", "", 0, 2000 * 1024, 0, rw),
        [PROP_GOP_SIZE] = g_param_spec_int("gop-size", "", "", -1, G_MAXINT, 30, rw),
        [PROP_B_FRAMES] = g_param_spec_uint("b-frames", "", "", 0, 4, 0, rw),
        [PROP_RC_LOOKAHEAD] = g_param_spec_uint("rc-lookahead", "", "", 0, 32, 0, rw),
        [PROP_QP_CONST_I] = g_param_spec_int("qp-const-i", "", "", -1, 51, -1, rw),
        [PROP_QP_CONST_P] = g_param_spec_int("qp-const-p", "", "", -1, 51, -1, rw),
        [PROP_QP_CONST_B] = g_param_spec_int("qp-const-b", "", "", -1, 51, -1, rw),
        [PROP_CONST_QUALITY] = g_param_spec_double("const-quality", "", "", 0, 51, 0, rw),
        [PROP_ZEROLATENCY] = g_param_spec_boolean("zerolatency", "", "", FALSE, rw),
    };

    object_class->set_property = set_property; /* GObject wants them on every class that installs */
    object_class->get_property = get_property;
    for (guint id = PROP_CUDA_DEVICE_ID + 1; id < N_PROPS; id++) {
        fake_specs[id] = all[id];
        g_object_class_install_property(object_class, id, all[id]);
    }
}

static void gpb_fake_nv_enc_init(GpbFakeNvEnc *self)
{
}

void gpb_fakeenc_register(void)
{
    gst_element_register(NULL, "gpbfakenvh264enc", GST_RANK_MARGINAL, gpb_fake_nv_enc_get_type());
}

/* ---- one that refuses to start --------------------------------------------- */

typedef GpbFakeEnc GpbFakeStartEnc;
typedef GpbFakeEncClass GpbFakeStartEncClass;

static GType gpb_fake_start_enc_get_type(void);
G_DEFINE_TYPE(GpbFakeStartEnc, gpb_fake_start_enc, gpb_fake_nv_enc_get_type())

static GstStateChangeReturn refuse_to_start(GstElement *element, GstStateChange transition)
{
    if (transition == GST_STATE_CHANGE_NULL_TO_READY) {
        GST_ELEMENT_ERROR(element, RESOURCE, OPEN_READ, ("Failed to create CUDA context."),
                          ("cuCtxCreate failed: no CUDA-capable device is detected"));
        return GST_STATE_CHANGE_FAILURE;
    }
    return GST_ELEMENT_CLASS(gpb_fake_start_enc_parent_class)->change_state(element, transition);
}

static void gpb_fake_start_enc_class_init(GpbFakeStartEncClass *klass)
{
    GST_ELEMENT_CLASS(klass)->change_state = refuse_to_start;
}

static void gpb_fake_start_enc_init(GpbFakeStartEnc *self)
{
}

void gpb_fakeenc_register_refusing_start(void)
{
    gst_element_register(NULL, "gpbfakestarth264enc", GST_RANK_MARGINAL + 10, gpb_fake_start_enc_get_type());
}
