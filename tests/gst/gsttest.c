/* gsttest.c - see gsttest.h. */
#include "gsttest.h"

#include <gst/check/gstcheck.h>
#include <glib/gstdio.h>
#include <string.h>

#include "fakeenc.h"
#include "helpers.h"

const char software_only[] = "[general]\ndiscover=false\n";

/* The sink's streaming thread is the only writer; the test reads after
 * EOS. */
void note_buffer(GstElement *sink, GstBuffer *buf, GstPad *pad, gpointer data)
{
    Run *run = data;

    run->frames++;
    run->bytes += gst_buffer_get_size(buf);
    if (!GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_DELTA_UNIT))
        run->keyframes++;
}

void note_message(Run *run, GstMessage *msg)
{
    const GstStructure *s = gst_message_get_structure(msg);

    if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_WARNING) {
        GError *err = NULL;
        gchar *debug = NULL;

        gst_message_parse_warning(msg, &err, &debug);
        g_printerr("bus warning from %s: %s (%s)\n", GST_MESSAGE_SRC_NAME(msg), err->message, debug);
        run->warnings++;
        g_free(run->warning_debug);
        run->warning_debug = debug;
        g_error_free(err);
    } else if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
        GError *err = NULL;
        gchar *debug = NULL;

        gst_message_parse_error(msg, &err, &debug);
        g_printerr("bus error from %s: %s (%s)\n", GST_MESSAGE_SRC_NAME(msg), err->message, debug);
        run->errors++;
        g_free(run->error_debug);
        run->error_debug = debug;
        g_error_free(err);
    } else if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ELEMENT && gst_structure_has_name(s, "gpubalance-selected")) {
        gint attempt = 0;

        gst_structure_get_int(s, "attempt", &attempt);
        g_ptr_array_add(run->selected, g_strdup_printf("%s %s %s %d", gst_structure_get_string(s, "device"),
                                                       gst_structure_get_string(s, "backend"),
                                                       gst_structure_get_string(s, "encoder"), attempt));
    }
}

/* Plays a pipeline to EOS or error, collecting what happened. A sink
 * named "sink" has its buffers counted. */
gboolean caps_change(GstCaps **last, GstCaps *caps)
{
    gboolean change = !*last || !gst_caps_is_subset(caps, *last);

    gst_caps_replace(last, caps);
    return change;
}

static GstPadProbeReturn count_caps(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    Run *run = data;
    GstCaps *caps;

    if (GST_EVENT_TYPE(GST_PAD_PROBE_INFO_EVENT(info)) != GST_EVENT_CAPS)
        return GST_PAD_PROBE_OK;
    gst_event_parse_caps(GST_PAD_PROBE_INFO_EVENT(info), &caps);
    if (caps_change(&run->last_caps, caps))
        run->caps_out++;
    return GST_PAD_PROBE_OK;
}

GstElement *play(const char *description, Run *run)
{
    GError *error = NULL;
    GstElement *pipeline = gst_parse_launch(description, &error);

    if (!pipeline)
        g_error("%s: %s", description, error->message);
    run_to_end(pipeline, run);
    return pipeline; /* still PLAYING: the caller looks, then stops it */
}

void run_to_end(GstElement *pipeline, Run *run)
{
    GstElement *sink, *enc;
    GstBus *bus;
    gboolean done = FALSE;

    memset(run, 0, sizeof(*run));
    run->selected = g_ptr_array_new_with_free_func(g_free);
    if ((enc = gst_bin_get_by_name(GST_BIN(pipeline), "enc"))) {
        GstPad *src = gst_element_get_static_pad(enc, "src");

        gst_pad_add_probe(src, GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM, count_caps, run, NULL);
        gst_object_unref(src);
        gst_object_unref(enc);
    }
    if ((sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink"))) {
        g_object_set(sink, "signal-handoffs", TRUE, NULL);
        g_signal_connect(sink, "handoff", G_CALLBACK(note_buffer), run);
        gst_object_unref(sink);
    }
    bus = gst_element_get_bus(pipeline);
    gst_element_set_state(pipeline, GST_STATE_PLAYING);
    while (!done) {
        GstMessage *msg = gst_bus_timed_pop(bus, 60 * GST_SECOND);

        g_assert_nonnull(msg); /* a hang fails here, not at the suite's timeout */
        note_message(run, msg);
        done = GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS || GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR;
        gst_message_unref(msg);
    }
    gst_object_unref(bus);
}

void assert_placed_once(const Run *run, int frames, const char *placement)
{
    g_assert_cmpint(run->errors, ==, 0);
    g_assert_cmpint(run->frames, ==, frames);
    g_assert_cmpuint(run->selected->len, ==, 1);
    g_assert_cmpstr(g_ptr_array_index(run->selected, 0), ==, placement);
}

void stop(GstElement *pipeline, Run *run)
{
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(pipeline);
    g_ptr_array_unref(run->selected);
    g_free(run->error_debug);
    g_free(run->warning_debug);
    gst_clear_caps(&run->last_caps);
}

GstElement *child_of_factory(GstElement *pipeline, const char *bin_name, const char *factory)
{
    GstElement *bin = gst_bin_get_by_name(GST_BIN(pipeline), bin_name);
    GstIterator *it = gst_bin_iterate_elements(GST_BIN(bin));
    GValue item = G_VALUE_INIT;
    GstElement *found = NULL;

    while (!found && gst_iterator_next(it, &item) == GST_ITERATOR_OK) {
        GstElement *e = g_value_get_object(&item);

        if (g_strcmp0(GST_OBJECT_NAME(gst_element_get_factory(e)), factory) == 0)
            found = gst_object_ref(e);
        g_value_reset(&item);
    }
    gst_iterator_free(it);
    gst_object_unref(bin);
    return found;
}

void setup(const char *config)
{
    gpb_test_env(config);
    setup_gstreamer();
}

void setup_gstreamer(void)
{
    GstElementFactory *factory;

    gst_check_init(NULL, NULL);
    gpb_fakeenc_register();
    factory = gst_element_factory_find("gpubalanceenc");
    if (!factory)
        g_error("the gpubalance plugin did not load (GST_PLUGIN_PATH=%s)", g_getenv("GST_PLUGIN_PATH"));
    gst_object_unref(factory);
}

/* A property's value as text (an enum's nick). */
gchar *property_text(GstElement *e, const char *name)
{
    GParamSpec *pspec = g_object_class_find_property(G_OBJECT_GET_CLASS(e), name);
    GValue v = G_VALUE_INIT;
    gchar *text;

    g_value_init(&v, G_PARAM_SPEC_VALUE_TYPE(pspec));
    g_object_get_property(G_OBJECT(e), name, &v);
    text = gst_value_serialize(&v);
    g_value_unset(&v);
    return text;
}

static GstPadProbeReturn note_decoded(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    Decoded *d = data;

    if (GST_PAD_PROBE_INFO_TYPE(info) & GST_PAD_PROBE_TYPE_BUFFER) {
        d->frames++;
    } else if (GST_EVENT_TYPE(GST_PAD_PROBE_INFO_EVENT(info)) == GST_EVENT_CAPS) {
        GstCaps *caps;
        const char *format;

        gst_event_parse_caps(GST_PAD_PROBE_INFO_EVENT(info), &caps);
        format = gst_structure_get_string(gst_caps_get_structure(caps, 0), "format");
        if (!d->format) {
            d->format = g_strdup(format);
        } else if (!g_str_has_suffix(d->format, format)) {
            gchar *both = g_strdup_printf("%s,%s", d->format, format);

            g_free(d->format);
            d->format = both;
        }
    }
    return GST_PAD_PROBE_OK;
}

/* The video stream goes to the counting sink; any other (audio) to a
 * sink of its own. */
static void on_decoded_pad(GstElement *decodebin, GstPad *pad, gpointer data)
{
    GstElement *sink = data;
    GstCaps *caps = gst_pad_get_current_caps(pad);
    gboolean video = caps && g_str_has_prefix(gst_structure_get_name(gst_caps_get_structure(caps, 0)), "video/");
    GstPad *sinkpad;

    if (!video) {
        GstElement *bin = GST_ELEMENT(gst_element_get_parent(decodebin));

        sink = gst_element_factory_make("fakesink", NULL);
        g_object_set(sink, "sync", FALSE, NULL);
        gst_bin_add(GST_BIN(bin), sink);
        gst_element_sync_state_with_parent(sink);
        gst_object_unref(bin);
    }
    sinkpad = gst_element_get_static_pad(sink, "sink");
    g_assert_cmpint(gst_pad_link(pad, sinkpad), ==, GST_PAD_LINK_OK);
    gst_object_unref(sinkpad);
    gst_clear_caps(&caps);
}

/* The video decoder decodebin chose says what was encoded (an audio
 * decoder of the same file may be made first: GStreamer 1.26 does). */
static void on_element_added(GstBin *bin, GstBin *sub, GstElement *element, gpointer data)
{
    Decoded *d = data;
    GstElementFactory *factory = gst_element_get_factory(element);

    if (factory &&
        gst_element_factory_list_is_type(factory,
                                         GST_ELEMENT_FACTORY_TYPE_DECODER | GST_ELEMENT_FACTORY_TYPE_MEDIA_VIDEO) &&
        !d->decoder)
        d->decoder = g_strdup(GST_OBJECT_NAME(factory));
}

const char *gst_test_software_av1_encoder(void)
{
    size_t n;
    const gpubalance_encoder_info *e =
        gpubalance_encoders(GPUBALANCE_FRAMEWORK_GSTREAMER, GPUBALANCE_BACKEND_SOFTWARE, GPUBALANCE_CODEC_AV1, &n);

    for (size_t i = 0; i < n; i++) {
        GstElementFactory *f = gst_element_factory_find(e[i].name);

        if (f) {
            gst_object_unref(f);
            return e[i].name;
        }
    }
    return NULL;
}

void assert_file_decodes(const char *path, int frames, const char *format, const char *decoder)
{
    Decoded d = decode_file(path);

    g_assert_cmpint(d.frames, ==, frames);
    if (format)
        g_assert_cmpstr(d.format, ==, format);
    if (decoder)
        g_assert_cmpstr(d.decoder, ==, decoder);
    decoded_clear(&d);
}

Decoded decode_file(const char *path)
{
    Decoded d = {0};
    GstElement *pipeline = gst_pipeline_new(NULL);
    GstElement *src = gst_element_factory_make("filesrc", NULL);
    GstElement *decode = gst_element_factory_make("decodebin", NULL);
    GstElement *sink = gst_element_factory_make("fakesink", NULL);
    GstPad *pad = gst_element_get_static_pad(sink, "sink");
    GstBus *bus = gst_element_get_bus(pipeline);
    GstMessage *msg;

    g_object_set(src, "location", path, NULL);
    g_object_set(sink, "sync", FALSE, NULL);
    gst_bin_add_many(GST_BIN(pipeline), src, decode, sink, NULL);
    g_assert_true(gst_element_link(src, decode));
    g_signal_connect(decode, "pad-added", G_CALLBACK(on_decoded_pad), sink);
    g_signal_connect(decode, "deep-element-added", G_CALLBACK(on_element_added), &d);
    gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM, note_decoded, &d, NULL);
    gst_element_set_state(pipeline, GST_STATE_PLAYING);
    msg = gst_bus_timed_pop_filtered(bus, 60 * GST_SECOND, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
    g_assert_nonnull(msg);
    if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
        GError *err = NULL;

        gst_message_parse_error(msg, &err, NULL);
        g_error("decoding %s failed: %s", path, err->message);
    }
    gst_message_unref(msg);
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(bus);
    gst_object_unref(pad);
    gst_object_unref(pipeline);
    return d;
}

void decoded_clear(Decoded *d)
{
    g_free(d->format);
    g_free(d->decoder);
}

gchar *test_file(const char *name)
{
    const char *dir = g_getenv("GPUBALANCE_DIR");

    g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
    return g_build_filename(dir, name, NULL);
}
