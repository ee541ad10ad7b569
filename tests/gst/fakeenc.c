/* fakeenc.c - see fakeenc.h. */
#include "fakeenc.h"

typedef struct {
    GstElement parent;
    GstPad *sinkpad;
    GstPad *srcpad;
    gint cuda_device_id;
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

enum { PROP_CUDA_DEVICE_ID = 1 };

static void set_property(GObject *object, guint id, const GValue *value, GParamSpec *pspec)
{
    ((GpbFakeEnc *)object)->cuda_device_id = g_value_get_int(value);
}

static void get_property(GObject *object, guint id, GValue *value, GParamSpec *pspec)
{
    g_value_set_int(value, ((GpbFakeEnc *)object)->cuda_device_id);
}

static void gpb_fake_enc_class_init(GpbFakeEncClass *klass)
{
    GObjectClass *object_class = G_OBJECT_CLASS(klass);
    GstElementClass *element_class = GST_ELEMENT_CLASS(klass);

    object_class->set_property = set_property;
    object_class->get_property = get_property;
    g_object_class_install_property(object_class, PROP_CUDA_DEVICE_ID,
                                    g_param_spec_int("cuda-device-id", "CUDA device", "CUDA device ordinal", -1, 64, -1,
                                                     G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));
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
    self->cuda_device_id = -1;
}

void gpb_fakeenc_register(void)
{
    gst_element_register(NULL, "gpbfakenvh264enc", GST_RANK_MARGINAL, gpb_fake_enc_get_type());
}

/* ---- one that refuses to start --------------------------------------------- */

typedef GpbFakeEnc GpbFakeStartEnc;
typedef GpbFakeEncClass GpbFakeStartEncClass;

static GType gpb_fake_start_enc_get_type(void);
G_DEFINE_TYPE(GpbFakeStartEnc, gpb_fake_start_enc, gpb_fake_enc_get_type())

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
