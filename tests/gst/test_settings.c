/* test_settings.c - gpubalanceenc's settings mean one thing on every child:
 * every row of the mapping table on each child this host has, bitrate as
 * the average, tune=zerolatency's latency against x264enc's, key-unit
 * requests, and child-settings. */
#include <gst/check/gstcheck.h>
#include <gst/video/video.h>
#include <string.h>

#include "fakeenc.h"
#include "gsttest.h"
#include "helpers.h"

/* ---- the mapping table ------------------------------------------------------- */

typedef struct {
    const char *settings; /* gpubalanceenc's properties */
    const char *expect;   /* the child's, "name=value ..." (values as text, strings raw) */
} MappingRow;

/* A child property as text: strings raw, the rest serialized (enum nicks,
 * flags' nicks). */
static gchar *child_text(GstElement *child, const char *name)
{
    GParamSpec *pspec = g_object_class_find_property(G_OBJECT_GET_CLASS(child), name);
    GValue v = G_VALUE_INIT;
    gchar *text;

    g_assert_nonnull(pspec);
    g_value_init(&v, pspec->value_type);
    g_object_get_property(G_OBJECT(child), name, &v);
    if (G_VALUE_HOLDS_STRING(&v)) {
        text = g_value_dup_string(&v);
    } else if (G_VALUE_HOLDS_FLAGS(&v)) { /* nicks, not gst_value_serialize's descriptions */
        GFlagsClass *klass = g_type_class_ref(pspec->value_type);
        GString *nicks = g_string_new(NULL);
        guint flags = g_value_get_flags(&v);

        for (guint i = 0; i < klass->n_values; i++)
            if (klass->values[i].value && (flags & klass->values[i].value) == klass->values[i].value)
                g_string_append_printf(nicks, "%s%s", nicks->len ? "+" : "", klass->values[i].value_nick);
        g_type_class_unref(klass);
        text = g_string_free(nicks, FALSE);
    } else {
        text = gst_value_serialize(&v);
    }
    g_value_unset(&v);
    return text;
}

typedef struct {
    const char *factory;
    GstElement *child; /* the first child of that factory the element built */
} Built;

/* The child as the element built it: it may refuse and be gone by the
 * time the pipeline ends (the fake NVENC), its properties stay. */
static void note_built(GstBin *bin, GstBin *sub_bin, GstElement *element, gpointer data)
{
    Built *built = data;
    GstElementFactory *factory = gst_element_get_factory(element);

    if (!built->child && factory && g_strcmp0(GST_OBJECT_NAME(factory), built->factory) == 0)
        built->child = gst_object_ref(element);
}

/* Each row on the factory's child: gpubalanceenc with placement (the
 * element's other properties) and the row's settings. */
static void check_rows_placed(const char *factory, const char *codec, const char *placement, const MappingRow *rows,
                              size_t n)
{
    GstElementFactory *f = gst_element_factory_find(factory);

    if (!f)
        gpb_test_skip("%s is not installed here", factory);
    gst_object_unref(f);
    for (size_t i = 0; i < n; i++) {
        gchar *description = g_strdup_printf("videotestsrc num-buffers=3 ! video/x-raw,width=320,height=240 ! "
                                             "gpubalanceenc name=enc codec=%s %s %s ! fakesink",
                                             codec, placement, rows[i].settings);
        gchar **pairs = g_strsplit(rows[i].expect, " ", -1);
        Built built = {factory, NULL};
        GError *error = NULL;
        GstElement *p = gst_parse_launch(description, &error);
        Run run;

        g_assert_no_error(error);
        g_signal_connect(p, "deep-element-added", G_CALLBACK(note_built), &built);
        run_to_end(p, &run);
        g_assert_cmpint(run.errors, ==, 0);
        g_assert_nonnull(built.child);
        for (gchar **pair = pairs; *pair; pair++) {
            const char *eq = strchr(*pair, '=');
            gchar *name = g_strndup(*pair, eq - *pair);
            gchar *value = child_text(built.child, name);

            g_printerr("%s: %s: %s = %s (want %s)\n", factory, rows[i].settings, name, value, eq + 1);
            g_assert_cmpstr(value, ==, eq + 1);
            g_free(value);
            g_free(name);
        }
        gst_object_unref(built.child);
        stop(p, &run);
        g_strfreev(pairs);
        g_free(description);
    }
}

static void check_rows(const char *factory, const char *codec, const MappingRow *rows, size_t n)
{
    check_rows_placed(factory, codec, "", rows, n);
}

static void mapping_rows_reach_x264enc(void)
{
    static const MappingRow rows[] = {
        {"rate-control=vbr bitrate=1000", "pass=cbr bitrate=1000 vbv-buf-capacity=0"},
        {"rate-control=cbr bitrate=1000", "pass=cbr bitrate=1000 vbv-buf-capacity=600"},
        {"rate-control=cqp quality=30", "pass=quant quantizer=30"},
        {"rate-control=cq quality=28", "pass=qual quantizer=28 vbv-buf-capacity=0"},
        {"rate-control=cq quality=28 bitrate=3000", "pass=qual quantizer=28 bitrate=3000 vbv-buf-capacity=600"},
        {"gop-size=17 speed=fast", "key-int-max=17 speed-preset=veryfast"},
        {"speed=balanced", "speed-preset=medium"},
        {"speed=quality", "speed-preset=slow"},
        {"tune=zerolatency", "tune=zerolatency"},
    };

    setup(software_only);
    check_rows("x264enc", "h264", rows, G_N_ELEMENTS(rows));
}

static void mapping_rows_reach_x265enc(void)
{
    static const MappingRow rows[] = {
        {"rate-control=vbr bitrate=1000", "bitrate=1000 qp=-1"},
        {"rate-control=cbr bitrate=1000", "bitrate=1000 option-string=vbv-maxrate=1000:vbv-bufsize=1000"},
        {"rate-control=cqp quality=30", "qp=30"},
        {"rate-control=cq quality=28", "option-string=crf=28 qp=-1"},
        {"rate-control=cq quality=28 bitrate=3000",
         "bitrate=3000 option-string=crf=28:vbv-maxrate=3000:vbv-bufsize=3000"},
        {"gop-size=17 speed=fast", "key-int-max=17 speed-preset=veryfast"},
        {"speed=quality", "speed-preset=slow"},
        {"tune=zerolatency", "tune=zerolatency"},
    };

    setup(software_only);
    check_rows("x265enc", "h265", rows, G_N_ELEMENTS(rows));
}

static void mapping_rows_reach_openh264enc(void)
{
    static const MappingRow rows[] = {
        {"rate-control=vbr bitrate=1000", "rate-control=bitrate bitrate=1000000"},
        {"rate-control=cbr bitrate=1000", "rate-control=bitrate bitrate=1000000 max-bitrate=1000000"},
        {"rate-control=cqp quality=30", "rate-control=quality qp-min=30 qp-max=30"},
        {"rate-control=cq quality=28", "rate-control=quality qp-min=28 qp-max=28"},
        {"gop-size=17 speed=fast", "gop-size=17 complexity=low"},
        {"speed=quality", "complexity=high"},
    };
    GstPluginFeature *x264;

    setup(software_only);
    /* openh264enc is the second software H.264 encoder: hide the first */
    x264 = gst_registry_lookup_feature(gst_registry_get(), "x264enc");
    if (x264) {
        gst_registry_remove_feature(gst_registry_get(), x264);
        gst_object_unref(x264);
    }
    check_rows("openh264enc", "h264", rows, G_N_ELEMENTS(rows));
}

static void mapping_rows_reach_av1enc(void)
{
    /* quality on the AV1 scale: 30 * 63/51 = 37, 28 * 63/51 = 35 */
    static const MappingRow rows[] = {
        {"rate-control=vbr bitrate=1000", "end-usage=vbr target-bitrate=1000"},
        {"rate-control=cbr bitrate=1000", "end-usage=cbr target-bitrate=1000"},
        {"rate-control=cqp quality=30", "end-usage=q min-quantizer=37 max-quantizer=37"},
        {"rate-control=cq quality=28", "end-usage=q min-quantizer=35 max-quantizer=35"},
        {"gop-size=17 speed=fast", "keyframe-max-dist=17 cpu-used=6"},
        {"speed=quality", "cpu-used=3"},
        {"tune=zerolatency", "lag-in-frames=0 usage-profile=realtime"},
    };

    setup(software_only);
    if (g_strcmp0(gst_test_software_av1_encoder(), "av1enc") != 0)
        gpb_test_skip("the element builds %s for AV1 here, not av1enc (svtav1enc comes first)",
                      gst_test_software_av1_encoder() ? gst_test_software_av1_encoder() : "nothing");
    check_rows("av1enc", "av1", rows, G_N_ELEMENTS(rows));
}

/* svtav1enc, where it is the software AV1 child (Debian 13's 1.26) */
static void mapping_rows_reach_svtav1enc(void)
{
    /* quality on the AV1 scale: 30 * 63/51 = 37, 28 * 63/51 = 35 */
    static const MappingRow rows[] = {
        {"rate-control=vbr bitrate=1000", "target-bitrate=1000 parameters-string=rc=1"},
        {"rate-control=cqp quality=30", "cqp=37"},
        {"rate-control=cq quality=28 bitrate=3000", "crf=35 max-bitrate=3000"},
        {"gop-size=17 speed=fast", "intra-period-length=17 preset=10"},
        {"speed=quality", "preset=6"},
    };
    /* what svtav1enc cannot finish goes to the next AV1 encoder, av1enc */
    static const MappingRow to_av1enc[] = {
        {"rate-control=cbr bitrate=1000", "end-usage=cbr target-bitrate=1000"},
        {"tune=zerolatency", "lag-in-frames=0 usage-profile=realtime"},
    };

    setup(software_only);
    if (g_strcmp0(gst_test_software_av1_encoder(), "svtav1enc") != 0)
        gpb_test_skip("the element builds %s for AV1 here, not svtav1enc",
                      gst_test_software_av1_encoder() ? gst_test_software_av1_encoder() : "nothing");
    check_rows("svtav1enc", "av1", rows, G_N_ELEMENTS(rows));
    check_rows("av1enc", "av1", to_av1enc, G_N_ELEMENTS(to_av1enc));
}

/* ---- nvcodec, both generations ---------------------------------------------- */

/* GStreamer 1.24+'s nvh264enc (p1..p7, tune, rc-mode with constqp,
 * qp-const-i/p/b, zerolatency), carried by the fake NVENC element; the
 * same rows run on the real one against the stand-in NVENC where the
 * host has 1.24 or later. */
static const MappingRow nvh264enc_1_24_rows[] = {
    {"rate-control=vbr bitrate=1000", "rc-mode=vbr bitrate=1000"},
    {"rate-control=cbr bitrate=1000", "rc-mode=cbr bitrate=1000"},
    {"rate-control=cqp quality=30", "rc-mode=constqp qp-const-i=30 qp-const-p=30 qp-const-b=30"},
    {"rate-control=cq quality=28 bitrate=3000", "rc-mode=vbr bitrate=0 const-quality=28 max-bitrate=3000"},
    {"gop-size=17 speed=fast", "gop-size=17 preset=p2"},
    {"speed=balanced", "preset=p4"},
    {"speed=quality", "preset=p5"},
    {"tune=zerolatency", "zerolatency=true tune=ultra-low-latency preset=p4"},
};

static const char fake_nvenc_config[] = "[general]\ndiscover=false\norder=nvenc,software\nlearn-expiry=0\n"
                                        "[device:g0]\nbackend=nvenc\ncuda-device=0\n";

static void mapping_rows_reach_nvh264enc_1_24_names(void)
{
    setup(fake_nvenc_config);
    check_rows_placed("gpbfakenvh264enc", "h264", "device=nvenc:0 when-full=software", nvh264enc_1_24_rows,
                      G_N_ELEMENTS(nvh264enc_1_24_rows));
}

/* A child without the property a setting maps to (or without a value that
 * means it) cannot honour it: that child fails with an error naming the
 * setting and the child, and the stream goes to the next candidate. */
static void a_setting_the_child_cannot_honour_is_an_error_naming_both(void)
{
    Run run;
    GstElement *p;

    setup(fake_nvenc_config);
    gpb_fakeenc_register_bare();
    p = play("videotestsrc num-buffers=5 ! video/x-raw,width=320,height=240 ! "
             "gpubalanceenc speed=fast device=nvenc:0 when-full=fail ! fakesink",
             &run);
    g_assert_cmpint(run.errors, ==, 1);
    gpb_assert_contains(run.error_debug, "speed=fast cannot be honoured by gpbfakebareh264enc: it has no writable "
                                         "property preset");
    stop(p, &run);
    /* with a candidate left, the stream goes on there */
    p = play("videotestsrc num-buffers=5 ! video/x-raw,width=320,height=240 ! "
             "gpubalanceenc speed=fast device=nvenc:0 when-full=software ! fakesink name=sink",
             &run);
    assert_placed_once(&run, 5, "software software x264enc 2");
    stop(p, &run);
}

/* The nvcodec elements this host's GStreamer registers against the
 * stand-in NVENC (tests/standins): 1.22's nvh264enc (nvbaseenc: presets
 * default/hp/hq/low-latency*, rc-mode, qp-const, zerolatency) and
 * nvcudah264enc (nvencoder without p1..p7), or 1.24+'s nvh264enc with
 * p1..p7 and tune. Each is made the first choice in turn. */
static const MappingRow nvbaseenc_1_22_rows[] = {
    {"rate-control=vbr bitrate=1000", "rc-mode=vbr bitrate=1000"},
    {"rate-control=cbr bitrate=1000", "rc-mode=cbr bitrate=1000"},
    {"rate-control=cqp quality=30", "rc-mode=constqp qp-const-i=30 qp-const-p=30 qp-const-b=30"},
    {"rate-control=cq quality=28 bitrate=3000", "rc-mode=vbr bitrate=0 const-quality=28 max-bitrate=3000"},
    {"gop-size=17 speed=fast", "gop-size=17 preset=hp"},
    {"speed=balanced", "preset=default"},
    {"speed=quality", "preset=hq"},
    {"tune=zerolatency", "zerolatency=true preset=low-latency"},
    {"tune=zerolatency speed=fast", "zerolatency=true preset=low-latency-hp"},
    {"tune=zerolatency speed=quality", "preset=low-latency-hq"},
};

static const MappingRow nvencoder_1_22_rows[] = {
    {"rate-control=vbr bitrate=1000", "rate-control=vbr bitrate=1000"},
    {"rate-control=cbr bitrate=1000", "rate-control=cbr bitrate=1000"},
    {"rate-control=cqp quality=30", "rate-control=cqp qp-i=30 qp-p=30 qp-b=30"},
    {"rate-control=cq quality=28 bitrate=3000", "rate-control=vbr bitrate=0 const-quality=28 max-bitrate=3000"},
    {"gop-size=17 speed=fast", "gop-size=17 preset=hp"},
    {"speed=quality", "preset=hq"},
    {"tune=zerolatency", "zero-reorder-delay=true preset=low-latency"},
};

static gboolean enum_has_nick(const char *factory, const char *property, const char *nick)
{
    GstElement *e = gst_element_factory_make(factory, NULL);
    GParamSpec *pspec = g_object_class_find_property(G_OBJECT_GET_CLASS(e), property);
    gboolean has = pspec && G_IS_PARAM_SPEC_ENUM(pspec) &&
                   g_enum_get_value_by_nick(G_PARAM_SPEC_ENUM(pspec)->enum_class, nick) != NULL;

    gst_object_unref(gst_object_ref_sink(e));
    return has;
}

/* Makes factory the first nvcodec H.264 element the element tries. */
static void prefer(const char *factory)
{
    GstPluginFeature *f = gst_registry_lookup_feature(gst_registry_get(), factory);

    g_assert_nonnull(f);
    gst_plugin_feature_set_rank(f, GST_RANK_PRIMARY * 4);
    gst_object_unref(f);
}

static void mapping_rows_reach_nvcodec_of_this_gstreamer(void)
{
    const char *dir = gpb_test_env("[general]\ndiscover=true\norder=nvenc,software\n");
    gchar *state = g_build_filename(dir, "standin-sessions", NULL);
    int checked = 0;

    if (!g_getenv("GPB_STANDIN_NVENC"))
        gpb_test_skip("no stand-in NVENC in this build (x264/x265 development files missing)");
    g_setenv("GPB_STANDIN_STATE", state, TRUE); /* before nvcodec opens its sessions at the scan */
    g_free(state);
    /* a registry of this test's own: nvcodec registers at the scan what the
     * stand-ins answer then, and a kept registry would keep an old answer */
    state = g_build_filename(dir, "registry.bin", NULL);
    g_setenv("GST_REGISTRY", state, TRUE);
    g_free(state);
    setup_gstreamer();
    if (!gst_element_factory_find("nvh264enc"))
        g_error("GStreamer's nvcodec registered no nvh264enc against the stand-in NVENC in %s",
                g_getenv("LD_LIBRARY_PATH"));
    if (enum_has_nick("nvh264enc", "preset", "p4")) { /* 1.24 and later */
        /* the stand-in offers no B-frames or lookahead: neither property */
        prefer("nvh264enc");
        check_rows_placed("nvh264enc", "h264", "device=nvenc:0", nvh264enc_1_24_rows,
                          G_N_ELEMENTS(nvh264enc_1_24_rows));
        checked++;
    } else {
        prefer("nvh264enc");
        check_rows_placed("nvh264enc", "h264", "device=nvenc:0", nvbaseenc_1_22_rows,
                          G_N_ELEMENTS(nvbaseenc_1_22_rows));
        checked++;
        if (gst_element_factory_find("nvcudah264enc")) {
            prefer("nvcudah264enc");
            check_rows_placed("nvcudah264enc", "h264", "device=nvenc:0", nvencoder_1_22_rows,
                              G_N_ELEMENTS(nvencoder_1_22_rows));
            checked++;
        }
    }
    g_assert_cmpint(checked, >, 0);
}

/* ---- bitrate means the average ------------------------------------------------ */

/* Encodes 5 s of noise (the hardest content: nothing for the encoder to
 * save on) and returns the average bitrate in kbit/s. */
static double average_kbps(const char *settings)
{
    gchar *description = g_strdup_printf("videotestsrc num-buffers=150 pattern=snow ! "
                                         "video/x-raw,width=320,height=240,framerate=30/1 ! "
                                         "gpubalanceenc name=enc speed=fast %s ! fakesink name=sink",
                                         settings);
    Run run;
    GstElement *p = play(description, &run);
    double kbps = run.bytes * 8.0 / 1000 / 5;

    g_assert_cmpint(run.errors, ==, 0);
    g_assert_cmpint(run.frames, ==, 150);
    g_printerr("%s: %.0f kbit/s\n", settings, kbps);
    stop(p, &run);
    g_free(description);
    return kbps;
}

static void bitrate_is_the_average_in_vbr_and_cbr(void)
{
    static const char *const settings[] = {
        "codec=h264 rate-control=vbr bitrate=400",
        "codec=h264 rate-control=cbr bitrate=400",
        "codec=h265 rate-control=vbr bitrate=400",
        "codec=h265 rate-control=cbr bitrate=400",
    };

    setup(software_only);
    for (size_t i = 0; i < G_N_ELEMENTS(settings); i++) {
        double kbps = average_kbps(settings[i]);

        g_assert_cmpfloat(kbps, >, 400 * 0.8);
        g_assert_cmpfloat(kbps, <, 400 * 1.2);
    }
}

/* ---- latency ------------------------------------------------------------------- */

typedef struct {
    GMutex lock;
    GCond cond;
    int buffers;
} Arrivals;

static GstPadProbeReturn count_arrival(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    Arrivals *a = data;

    g_mutex_lock(&a->lock);
    a->buffers++;
    g_cond_signal(&a->cond);
    g_mutex_unlock(&a->lock);
    return GST_PAD_PROBE_OK;
}

/* The minimum latency a live pipeline reports once output flows. */
static GstClockTime live_latency(const char *encoder)
{
    gchar *description = g_strdup_printf("videotestsrc is-live=true ! "
                                         "video/x-raw,width=320,height=240,framerate=30/1,format=I420 ! %s ! "
                                         "fakesink name=sink sync=true",
                                         encoder);
    GstElement *p = gst_parse_launch(description, NULL);
    GstElement *sink = gst_bin_get_by_name(GST_BIN(p), "sink");
    GstPad *pad = gst_element_get_static_pad(sink, "sink");
    GstQuery *query = gst_query_new_latency();
    Arrivals a = {0};
    GstClockTime min = GST_CLOCK_TIME_NONE;
    gboolean live;

    g_mutex_init(&a.lock);
    g_cond_init(&a.cond);
    gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, count_arrival, &a, NULL);
    gst_element_set_state(p, GST_STATE_PLAYING);
    g_mutex_lock(&a.lock);
    while (a.buffers < 5) /* the encoders have set their latency by then */
        g_cond_wait(&a.cond, &a.lock);
    g_mutex_unlock(&a.lock);
    g_assert_true(gst_element_query(p, query));
    gst_query_parse_latency(query, &live, &min, NULL);
    g_assert_true(live);
    g_printerr("%s: latency %" GST_TIME_FORMAT "\n", encoder, GST_TIME_ARGS(min));
    gst_query_unref(query);
    gst_element_set_state(p, GST_STATE_NULL);
    gst_object_unref(pad);
    gst_object_unref(sink);
    gst_object_unref(p);
    g_mutex_clear(&a.lock);
    g_cond_clear(&a.cond);
    g_free(description);
    return min;
}

static void zerolatency_lowers_the_latency_like_x264enc(void)
{
    GstClockTime ours_default, ours_zero, x264_zero;
    const GstClockTime frame = GST_SECOND / 30;

    setup(software_only);
    ours_default = live_latency("gpubalanceenc");
    ours_zero = live_latency("gpubalanceenc tune=zerolatency");
    x264_zero = live_latency("x264enc tune=zerolatency");
    g_assert_cmpuint(ours_zero, <, ours_default);
    g_assert_cmpuint(ours_zero, <=, x264_zero + frame);
}

/* ---- key units ------------------------------------------------------------------- */

typedef struct {
    GstElement *enc;
    int seen;
} KeyRequest;

/* At the tenth input frame, asks for a key unit the way a muxer or a
 * WebRTC sender does: an upstream event into the element's src pad. */
static GstPadProbeReturn request_key_unit(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    KeyRequest *r = data;

    if (++r->seen == 10) {
        GstPad *src = gst_element_get_static_pad(r->enc, "src");

        g_assert_true(
            gst_pad_send_event(src, gst_video_event_new_upstream_force_key_unit(GST_CLOCK_TIME_NONE, TRUE, 1)));
        gst_object_unref(src);
    }
    return GST_PAD_PROBE_OK;
}

/* Keyframes out of 30 frames with a request at the tenth; encoder is an
 * element description named enc, with no keyframe interval of its own
 * within the 30 frames. */
static int keyframes_with_one_request(const char *encoder)
{
    gchar *description = g_strdup_printf("videotestsrc num-buffers=30 ! "
                                         "video/x-raw,width=320,height=240,framerate=30/1 ! %s ! "
                                         "fakesink name=sink",
                                         encoder);
    GError *error = NULL;
    GstElement *p = gst_parse_launch(description, &error);
    KeyRequest r = {gst_bin_get_by_name(GST_BIN(p), "enc"), 0};
    GstPad *sink = gst_element_get_static_pad(r.enc, "sink");
    GstElement *fakesink = gst_bin_get_by_name(GST_BIN(p), "sink");
    int keyframes = 0, frames = 0;
    GstBus *bus = gst_element_get_bus(p);
    GstMessage *msg;
    GstPad *out = gst_element_get_static_pad(fakesink, "sink");
    Run counts = {0};

    gst_pad_add_probe(sink, GST_PAD_PROBE_TYPE_BUFFER, request_key_unit, &r, NULL);
    g_object_set(fakesink, "signal-handoffs", TRUE, NULL);
    g_signal_connect(fakesink, "handoff", G_CALLBACK(note_buffer), &counts);
    gst_element_set_state(p, GST_STATE_PLAYING);
    msg = gst_bus_timed_pop_filtered(bus, 60 * GST_SECOND, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
    g_assert_nonnull(msg);
    g_assert_cmpint(GST_MESSAGE_TYPE(msg), ==, GST_MESSAGE_EOS);
    gst_message_unref(msg);
    keyframes = counts.keyframes;
    frames = counts.frames;
    g_printerr("%s: %d keyframes in %d frames\n", encoder, keyframes, frames);
    g_assert_cmpint(frames, ==, 30);
    gst_element_set_state(p, GST_STATE_NULL);
    gst_object_unref(out);
    gst_object_unref(bus);
    gst_object_unref(fakesink);
    gst_object_unref(sink);
    gst_object_unref(r.enc);
    gst_object_unref(p);
    g_free(description);
    return keyframes;
}

/* A request reaches the child: the element gives the keyframes the child
 * gives on its own (x264enc, x265enc: the first and the requested one;
 * Debian 12's av1enc does not act on requests at all). */
static void key_unit_requests_reach_every_child(void)
{
    static const struct {
        const char *factory;
        const char *direct;
        const char *through;
    } children[] = {
        {"x264enc", "x264enc name=enc key-int-max=1000 speed-preset=veryfast",
         "gpubalanceenc name=enc codec=h264 gop-size=1000 speed=fast"},
        {"x265enc", "x265enc name=enc key-int-max=1000 speed-preset=veryfast",
         "gpubalanceenc name=enc codec=h265 gop-size=1000 speed=fast"},
        {"av1enc", "av1enc name=enc keyframe-max-dist=1000 cpu-used=6",
         "gpubalanceenc name=enc codec=av1 gop-size=1000 speed=fast"},
    };

    setup(software_only);
    for (size_t i = 0; i < G_N_ELEMENTS(children); i++) {
        GstElementFactory *f = gst_element_factory_find(children[i].factory);
        int direct;

        if (!f) {
            g_printerr("%s is not installed: not checked\n", children[i].factory);
            continue;
        }
        gst_object_unref(f);
        if (i == 2 && g_strcmp0(gst_test_software_av1_encoder(), "av1enc") != 0) {
            g_printerr("the element builds %s for AV1 here, not av1enc: not compared\n",
                       gst_test_software_av1_encoder());
            continue;
        }
        direct = keyframes_with_one_request(children[i].direct);
        g_assert_cmpint(keyframes_with_one_request(children[i].through), ==, direct);
        if (i < 2)
            g_assert_cmpint(direct, ==, 2);
    }
}

/* ---- child-settings ------------------------------------------------------------- */

static void child_settings_reach_the_chosen_child_only(void)
{
    Run run;
    GstElement *p, *x264;
    gchar *tune, *bframes;

    setup(software_only);
    p = play("videotestsrc num-buffers=5 ! video/x-raw,width=320,height=240 ! gpubalanceenc name=enc "
             "child-settings=\"x264enc, tune=fastdecode, bframes=1; software, ref=2; nvenc, preset=p7; "
             "x265enc, qp=10\" ! fakesink",
             &run);
    g_assert_cmpint(run.errors, ==, 0);
    g_assert_cmpint(run.warnings, ==, 0); /* the nvenc and x265enc settings are someone else's */
    x264 = child_of_factory(p, "enc", "x264enc");
    tune = child_text(x264, "tune");
    bframes = child_text(x264, "bframes");
    g_assert_cmpstr(tune, ==, "fastdecode");
    g_assert_cmpstr(bframes, ==, "1");
    g_free(tune);
    g_free(bframes);
    tune = child_text(x264, "ref");
    g_assert_cmpstr(tune, ==, "2"); /* by backend */
    g_free(tune);
    gst_object_unref(x264);
    stop(p, &run);
}

static void count_warning(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer data)
{
    g_print("expected warning: %s\n", message);
    (*(int *)data)++;
}

static void invalid_child_settings_warn_naming_child_and_setting(void)
{
    Run run;
    GstElement *p, *enc;
    int warnings = 0;
    guint handler;
    gchar *kept = NULL;

    setup(software_only);
    p = play("videotestsrc num-buffers=5 ! video/x-raw,width=320,height=240 ! gpubalanceenc name=enc "
             "child-settings=\"x264enc, no-such-setting=1\" ! fakesink",
             &run);
    g_assert_cmpint(run.errors, ==, 0);
    g_assert_cmpint(run.warnings, ==, 1);
    gpb_assert_contains(run.warning_debug, "x264enc has no writable property 'no-such-setting'");
    stop(p, &run);

    p = play("videotestsrc num-buffers=5 ! video/x-raw,width=320,height=240 ! gpubalanceenc name=enc "
             "child-settings=\"x264enc, speed-preset=warp9\" ! fakesink",
             &run);
    g_assert_cmpint(run.warnings, ==, 1);
    gpb_assert_contains(run.warning_debug, "x264enc does not take speed-preset=warp9");
    stop(p, &run);

    /* text that is no structure list is refused when set */
    handler = g_log_set_handler(NULL, G_LOG_LEVEL_WARNING, count_warning, &warnings);
    enc = gst_element_factory_make("gpubalanceenc", NULL);
    g_object_set(enc, "child-settings", "x264enc, tune=film", NULL);
    g_object_set(enc, "child-settings", "=;;", NULL);
    g_assert_cmpint(warnings, ==, 1);
    g_object_get(enc, "child-settings", &kept, NULL);
    g_assert_cmpstr(kept, ==, "x264enc, tune=(string)film"); /* the last good value stays */
    g_free(kept);
    g_log_remove_handler(NULL, handler);
    gst_object_unref(gst_object_ref_sink(enc));
}

static const gpb_test_case cases[] = {
    GPB_TEST(mapping_rows_reach_x264enc),
    GPB_TEST(mapping_rows_reach_x265enc),
    GPB_TEST(mapping_rows_reach_openh264enc),
    GPB_TEST(mapping_rows_reach_av1enc),
    GPB_TEST(mapping_rows_reach_svtav1enc),
    GPB_TEST(mapping_rows_reach_nvh264enc_1_24_names),
    GPB_TEST(a_setting_the_child_cannot_honour_is_an_error_naming_both),
    GPB_TEST(mapping_rows_reach_nvcodec_of_this_gstreamer),
    GPB_TEST(bitrate_is_the_average_in_vbr_and_cbr),
    GPB_TEST(zerolatency_lowers_the_latency_like_x264enc),
    GPB_TEST(key_unit_requests_reach_every_child),
    GPB_TEST(child_settings_reach_the_chosen_child_only),
    GPB_TEST(invalid_child_settings_warn_naming_child_and_setting),
};

GPB_TEST_MAIN(cases)
