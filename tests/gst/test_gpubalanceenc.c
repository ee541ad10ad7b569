/* test_gpubalanceenc.c - the GStreamer element in real pipelines with real
 * x264enc/x265enc, parsers and decoders (gst-check for init and harness).
 * Hardware that no machine here has is stood in for by sim devices, and
 * by a fake NVENC element that refuses as NVENC does past its cap. */
#define _GNU_SOURCE
#include <glib/gstdio.h>
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fakeenc.h"
#include "gsttest.h"
#include "helpers.h"

static void setup_in_child(void)
{
    gst_init(NULL, NULL);
    if (!gst_element_factory_find("gpubalanceenc"))
        _exit(4);
}

/* ---- tests ------------------------------------------------------------------ */

static void encodes_and_the_output_decodes(void)
{
    Run run;
    GstElement *p;

    setup(software_only);
    p = play("videotestsrc num-buffers=60 ! video/x-raw,width=320,height=240,framerate=30/1 ! "
             "gpubalanceenc name=enc ! h264parse ! avdec_h264 ! fakesink name=sink",
             &run);
    assert_placed_once(&run, 60, "software software x264enc 1");
    stop(p, &run);
}

static void downstream_caps_choose_codec_and_stream_format(void)
{
    Run run;
    GstElement *p, *enc;
    GstPad *src;
    GstCaps *caps;
    gchar *encoder = NULL;

    setup(software_only);
    p = play("videotestsrc num-buffers=10 ! video/x-raw,width=320,height=240 ! gpubalanceenc name=enc ! "
             "video/x-h264,stream-format=avc ! fakesink name=sink",
             &run);
    g_assert_cmpint(run.errors, ==, 0);
    enc = gst_bin_get_by_name(GST_BIN(p), "enc");
    src = gst_element_get_static_pad(enc, "src");
    caps = gst_pad_get_current_caps(src);
    g_assert_true(gst_structure_has_field(gst_caps_get_structure(caps, 0), "codec_data"));
    g_assert_cmpstr(gst_structure_get_string(gst_caps_get_structure(caps, 0), "stream-format"), ==, "avc");
    g_assert_cmpstr(gst_structure_get_string(gst_caps_get_structure(caps, 0), "alignment"), ==, "au");
    gst_caps_unref(caps);
    gst_object_unref(src);
    gst_object_unref(enc);
    stop(p, &run);

    p = play("videotestsrc num-buffers=10 ! video/x-raw,width=320,height=240 ! gpubalanceenc name=enc ! "
             "video/x-h265 ! h265parse ! avdec_h265 ! fakesink name=sink",
             &run);
    g_assert_cmpint(run.errors, ==, 0);
    g_assert_cmpint(run.frames, ==, 10);
    enc = gst_bin_get_by_name(GST_BIN(p), "enc");
    g_object_get(enc, "selected-encoder", &encoder, NULL);
    g_assert_cmpstr(encoder, ==, "x265enc");
    g_free(encoder);
    gst_object_unref(enc);
    stop(p, &run);
}

static void every_property_reaches_x264enc(void)
{
    Run run;
    GstElement *p, *x264, *enc;
    guint bitrate = 0, key_int_max = 0;
    gchar *preset = NULL, *pass = NULL;

    setup(software_only);
    p = play("videotestsrc num-buffers=5 ! video/x-raw,width=320,height=240 ! "
             "gpubalanceenc name=enc bitrate=1234 gop-size=17 speed=fast rate-control=cbr ! fakesink",
             &run);
    g_assert_cmpint(run.errors, ==, 0);
    x264 = child_of_factory(p, "enc", "x264enc");
    g_assert_nonnull(x264);
    g_object_get(x264, "bitrate", &bitrate, "key-int-max", &key_int_max, NULL);
    g_assert_cmpuint(bitrate, ==, 1234);
    g_assert_cmpuint(key_int_max, ==, 17);
    preset = property_text(x264, "speed-preset");
    pass = property_text(x264, "pass");
    g_assert_cmpstr(preset, ==, "veryfast");
    g_assert_cmpstr(pass, ==, "cbr");
    /* bitrate may change while PLAYING, and reaches the child */
    enc = gst_bin_get_by_name(GST_BIN(p), "enc");
    g_object_set(enc, "bitrate", 999, NULL);
    g_object_get(x264, "bitrate", &bitrate, NULL);
    g_assert_cmpuint(bitrate, ==, 999);
    gst_object_unref(enc);
    gst_object_unref(x264);
    g_free(preset);
    g_free(pass);
    stop(p, &run);
}

static const char two_sims_and_software[] = GPB_TEST_TWO_SIMS_IN_A_POOL_OF_3;

/* A child process: one live pipeline; reports its placement, holds it
 * until told, then stops. */
static G_GNUC_NORETURN void placed_pipeline(int report_fd, int go_fd)
{
    GstElement *p = gst_parse_launch("videotestsrc is-live=true ! video/x-raw,width=640,height=360 ! "
                                     "gpubalanceenc name=enc speed=fast ! fakesink",
                                     NULL);
    GstBus *bus = gst_element_get_bus(p);
    char c;

    gst_element_set_state(p, GST_STATE_PLAYING);
    for (;;) {
        GstMessage *msg = gst_bus_timed_pop(bus, 60 * GST_SECOND);
        const GstStructure *s = msg ? gst_message_get_structure(msg) : NULL;

        if (!msg || GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR)
            _exit(2);
        if (s && gst_structure_has_name(s, "gpubalance-selected")) {
            dprintf(report_fd, "%s\n", gst_structure_get_string(s, "backend"));
            gst_message_unref(msg);
            break;
        }
        gst_message_unref(msg);
    }
    if (read(go_fd, &c, 1) < 0)
        _exit(3);
    gst_element_set_state(p, GST_STATE_NULL);
    _exit(0);
}

static void five_processes_place_three_on_sim_and_two_on_software(void)
{
    int report[2], go[2], sim = 0, software = 0;
    pid_t pids[5];
    gpubalance_context *ctx;

    gpb_test_env(two_sims_and_software);
    g_assert_cmpint(pipe(report), ==, 0);
    g_assert_cmpint(pipe(go), ==, 0);
    for (int i = 0; i < 5; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            close(go[1]); /* or no child would ever see the parent's EOF */
            close(report[0]);
            setup_in_child();
            placed_pipeline(report[1], go[0]);
        }
    }
    close(report[1]); /* a child that dies ends the parent's read */
    close(go[0]);
    for (int i = 0; i < 5; i++) {
        char *backend = gpb_read_line(report[0]);

        sim += strcmp(backend, "sim") == 0;
        software += strcmp(backend, "software") == 0;
        g_free(backend);
    }
    /* all five hold their leases now */
    ctx = gpb_test_open();
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 5);
    g_assert_cmpint(sim, ==, 3);
    g_assert_cmpint(software, ==, 2);
    close(go[1]); /* let them all stop */
    for (int i = 0; i < 5; i++) {
        int status;

        waitpid(pids[i], &status, 0);
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0);
    gpubalance_context_close(ctx);
}

static GstElement *start_live(const char *description, Run *run)
{
    GstElement *p = gst_parse_launch(description, NULL);
    GstBus *bus = gst_element_get_bus(p);

    memset(run, 0, sizeof(*run));
    run->selected = g_ptr_array_new_with_free_func(g_free);
    gst_element_set_state(p, GST_STATE_PLAYING);
    /* until the element has settled on an encoder that produced output */
    for (;;) {
        GstMessage *msg = gst_bus_timed_pop(bus, 60 * GST_SECOND);

        g_assert_nonnull(msg);
        note_message(run, msg);
        if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR ||
            (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ASYNC_DONE && run->selected->len > 0)) {
            gst_message_unref(msg);
            break;
        }
        gst_message_unref(msg);
    }
    gst_object_unref(bus);
    return p;
}

static void enforce_sessions_refusal_falls_back_and_is_learned(void)
{
    Run first, second;
    GstElement *a, *b;
    gpubalance_context *ctx;

    setup("[general]\ndiscover=false\norder=nvenc,software\nlearn-expiry=60\n"
          "[device:gpu0]\nbackend=sim\nmax-sessions=3\nenforce-sessions=1\n");
    a = start_live("videotestsrc is-live=true ! video/x-raw,width=320,height=240 ! gpubalanceenc ! fakesink", &first);
    g_assert_cmpstr(g_ptr_array_index(first.selected, 0), ==, "sim:gpu0 sim x264enc 1");
    b = start_live("videotestsrc is-live=true ! video/x-raw,width=320,height=240 ! gpubalanceenc ! fakesink", &second);
    g_assert_cmpint(second.errors, ==, 0);
    /* gpu0 had room by max-sessions=3 but refused as its driver would */
    g_assert_cmpstr(g_ptr_array_index(second.selected, 0), ==, "software software x264enc 2");
    ctx = gpb_test_open();
    g_assert_cmpint(gpb_test_learned_limit(ctx, "sim:gpu0"), ==, 1);
    stop(b, &second);
    stop(a, &first);
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0);
    gpubalance_context_close(ctx);
}

static const char fake_nvenc_config[] = "[general]\ndiscover=false\norder=nvenc,software\n"
                                        "[device:g0]\nbackend=nvenc\ncuda-device=0\n"
                                        "[device:g1]\nbackend=nvenc\ncuda-device=1\n";

static void refusing_encoder_falls_back_without_an_error(void)
{
    Run run;
    GstElement *p;
    gpubalance_context *ctx;

    setup(fake_nvenc_config);
    p = play("videotestsrc num-buffers=30 ! video/x-raw,width=320,height=240,framerate=30/1 ! "
             "gpubalanceenc device=nvenc:0 when-full=software ! h264parse ! avdec_h264 ! fakesink name=sink",
             &run);
    g_assert_cmpint(run.errors, ==, 0);  /* the refusal never reached the bus */
    g_assert_cmpint(run.frames, ==, 30); /* the held first buffer was replayed */
    g_assert_cmpuint(run.selected->len, ==, 2);
    g_assert_cmpstr(g_ptr_array_index(run.selected, 0), ==, "nvenc:0 nvenc gpbfakenvh264enc 1");
    g_assert_cmpstr(g_ptr_array_index(run.selected, 1), ==, "software software x264enc 2");
    ctx = gpb_test_open();
    g_assert_cmpint(gpb_test_learned_limit(ctx, "nvenc:0"), ==, 0); /* out of memory (10): a capacity refusal */
    gpubalance_context_close(ctx);
    stop(p, &run);
}

static void when_every_candidate_fails_one_error_lists_them(void)
{
    Run run;
    GstElement *p;

    setup(fake_nvenc_config);
    p = play("videotestsrc num-buffers=5 ! video/x-raw,width=320,height=240 ! "
             "gpubalanceenc order=nvenc when-full=fail ! fakesink",
             &run);
    g_assert_cmpint(run.errors, ==, 1);
    gpb_assert_contains(run.error_debug, "every candidate failed");
    gpb_assert_contains(run.error_debug, "nvenc:0 (gpbfakenvh264enc");
    gpb_assert_contains(run.error_debug, "nvenc:1 (gpbfakenvh264enc");
    gpb_assert_contains(run.error_debug, "out of memory (10)");
    stop(p, &run);
}

static void two_hundred_cycles_leak_no_lease(void)
{
    GstElement *p;
    gpubalance_context *ctx;

    setup(two_sims_and_software);
    ctx = gpb_test_open();
    p = gst_parse_launch("videotestsrc num-buffers=2 ! video/x-raw,width=64,height=64 ! gpubalanceenc name=enc "
                         "speed=fast ! fakesink",
                         NULL);
    for (int i = 0; i < 200; i++) {
        GstBus *bus = gst_element_get_bus(p);
        GstMessage *msg;

        gst_element_set_state(p, GST_STATE_PLAYING);
        msg = gst_bus_timed_pop_filtered(bus, 60 * GST_SECOND, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
        g_assert_nonnull(msg);
        g_assert_cmpint(GST_MESSAGE_TYPE(msg), ==, GST_MESSAGE_EOS);
        if (i % 50 == 0)
            g_assert_cmpint(gpb_test_total_leases(ctx), ==, 1); /* held while PLAYING */
        gst_message_unref(msg);
        gst_element_set_state(p, GST_STATE_NULL);
        gst_object_unref(bus);
    }
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0);
    gst_object_unref(p);
    gpubalance_context_close(ctx);
}

static int warnings;

static void count_warning(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer data)
{
    g_print("expected warning: %s\n", message);
    warnings++;
}

static void invalid_property_values_are_refused_with_a_warning(void)
{
    GstElement *enc;
    gchar *value = NULL;
    gint gop = 0;
    guint handler;

    setup(software_only);
    enc = gst_element_factory_make("gpubalanceenc", NULL);
    handler = g_log_set_handler(NULL, G_LOG_LEVEL_WARNING, count_warning, NULL);
    guint gobject_handler =
        g_log_set_handler("GLib-GObject", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL, count_warning, NULL);
    g_object_set(enc, "order", "nvenc,software", NULL);
    g_object_set(enc, "order", "nvenc,cuda", NULL);
    g_object_set(enc, "policy", "random", NULL);
    g_object_set(enc, "when-full", "later", NULL);
    g_object_set(enc, "gop-size", -5, NULL);
    g_assert_cmpint(warnings, ==, 4);
    g_object_get(enc, "order", &value, "gop-size", &gop, NULL);
    g_assert_cmpstr(value, ==, "nvenc,software"); /* the last good value stays */
    g_assert_cmpint(gop, ==, -1);
    g_free(value);
    g_object_get(enc, "policy", &value, NULL);
    g_assert_null(value);
    g_log_remove_handler(NULL, handler);
    g_log_remove_handler("GLib-GObject", gobject_handler);
    gst_object_unref(gst_object_ref_sink(enc));
}

static void new_resolution_places_the_stream_again(void)
{
    GstHarness *h;
    gpubalance_context *ctx;
    gpubalance_snapshot *snap;

    setup(software_only);
    ctx = gpb_test_open();
    h = gst_harness_new("gpubalanceenc");
    gst_harness_set_src_caps_str(h, "video/x-raw,format=I420,width=320,height=240,framerate=30/1");
    for (int i = 0; i < 3; i++)
        g_assert_cmpint(gst_harness_push(h, gst_harness_create_buffer(h, 320 * 240 * 3 / 2)), ==, GST_FLOW_OK);
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    g_assert_cmpuint(gpubalance_snapshot_n_leases(snap), ==, 1);
    g_assert_cmpint(gpubalance_snapshot_lease(snap, 0)->width, ==, 320);
    gpubalance_snapshot_free(snap);
    gst_harness_set_src_caps_str(h, "video/x-raw,format=I420,width=1280,height=720,framerate=60/1");
    g_assert_cmpint(gst_harness_push(h, gst_harness_create_buffer(h, 1280 * 720 * 3 / 2)), ==, GST_FLOW_OK);
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    g_assert_cmpuint(gpubalance_snapshot_n_leases(snap), ==, 1);
    g_assert_cmpint(gpubalance_snapshot_lease(snap, 0)->width, ==, 1280);
    g_assert_cmpfloat_with_epsilon(gpubalance_snapshot_lease(snap, 0)->cost, 1280.0 * 720 * 60 / (1920 * 1080 * 30),
                                   0.001);
    gpubalance_snapshot_free(snap);
    gst_harness_teardown(h);
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0);
    gpubalance_context_close(ctx);
}

static void lease_is_opened_by_the_first_encoded_buffer(void)
{
    Run run;
    GstElement *p;
    gpubalance_context *ctx;
    gpubalance_snapshot *snap;

    setup(software_only);
    ctx = gpb_test_open();
    p = play("videotestsrc num-buffers=40 ! video/x-raw,width=320,height=240 ! gpubalanceenc ! fakesink", &run);
    g_assert_cmpint(run.errors, ==, 0);
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    g_assert_cmpuint(gpubalance_snapshot_n_leases(snap), ==, 1);
    g_assert_cmpint(gpubalance_snapshot_lease(snap, 0)->state, ==, GPUBALANCE_LEASE_OPENED);
    gpubalance_snapshot_free(snap);
    stop(p, &run);
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0); /* released on the way to NULL */
    gpubalance_context_close(ctx);
}

static void backend_without_an_element_is_skipped(void)
{
    Run run;
    GstElement *p;

    /* a declared VA-API device, but this GStreamer has no va encoder for
     * it: reported as unavailable, and the stream goes on in software */
    setup("[general]\ndiscover=false\norder=vaapi,software\n"
          "[device:arc]\nbackend=vaapi\nrender-node=/dev/dri/renderD128\n");
    if (gst_element_factory_find("vah264enc"))
        gpb_test_skip("this machine has a va encoder element");
    p = play("videotestsrc num-buffers=10 ! video/x-raw,width=320,height=240 ! gpubalanceenc ! fakesink name=sink",
             &run);
    assert_placed_once(&run, 10, "software software x264enc 2");
    stop(p, &run);
}

static void replacement_loses_no_frame(void)
{
    GstHarness *h;
    guint out = 0;
    GstBuffer *b;

    setup(software_only);
    h = gst_harness_new("gpubalanceenc");
    gst_harness_set_src_caps_str(h, "video/x-raw,format=I420,width=320,height=240,framerate=30/1");
    for (int i = 0; i < 20; i++)
        g_assert_cmpint(gst_harness_push(h, gst_harness_create_buffer(h, 320 * 240 * 3 / 2)), ==, GST_FLOW_OK);
    gst_harness_set_src_caps_str(h, "video/x-raw,format=I420,width=640,height=480,framerate=30/1");
    for (int i = 0; i < 20; i++)
        g_assert_cmpint(gst_harness_push(h, gst_harness_create_buffer(h, 640 * 480 * 3 / 2)), ==, GST_FLOW_OK);
    g_assert_true(gst_harness_push_event(h, gst_event_new_eos()));
    while ((b = gst_harness_try_pull(h))) {
        out++;
        gst_buffer_unref(b);
    }
    g_assert_cmpuint(out, ==, 40); /* the first encoder was drained, not dropped */
    gst_harness_teardown(h);
}

static void child_refusing_to_start_falls_back_without_an_error(void)
{
    Run run;
    GstElement *p;

    setup(fake_nvenc_config);
    gpb_fakeenc_register_refusing_start();
    p = play("videotestsrc num-buffers=20 ! video/x-raw,width=320,height=240 ! "
             "gpubalanceenc device=nvenc:0 ! h264parse ! avdec_h264 ! fakesink name=sink",
             &run);
    /* its error never reached the bus; it never started, so never "selected" */
    assert_placed_once(&run, 20, "software software x264enc 2");
    stop(p, &run);
}

static void default_rate_control_writes_no_file(void)
{
    Run run;
    GstElement *p, *x264;
    gchar *pass;
    char *stats;

    setup(software_only);
    g_assert_cmpint(g_mkdir_with_parents(g_getenv("GPUBALANCE_DIR"), 0700), ==, 0);
    g_assert_cmpint(g_chdir(g_getenv("GPUBALANCE_DIR")), ==, 0);
    p = play("videotestsrc num-buffers=30 ! video/x-raw,width=320,height=240 ! gpubalanceenc name=enc ! "
             "fakesink name=sink",
             &run);
    g_assert_cmpint(run.errors, ==, 0);
    x264 = child_of_factory(p, "enc", "x264enc");
    pass = property_text(x264, "pass");
    /* the default vbr is x264's single-pass average bitrate with no VBV
     * cap; never pass1, the first of two passes, which writes stats */
    g_assert_cmpstr(pass, ==, "cbr");
    stop(p, &run);
    stats = g_build_filename(g_getenv("GPUBALANCE_DIR"), "x264_2pass.log", NULL);
    g_assert_false(g_file_test(stats, G_FILE_TEST_EXISTS)); /* nothing written into the cwd */
    gst_object_unref(x264);
    g_free(pass);
    g_free(stats);
}

static const gpb_test_case cases[] = {
    GPB_TEST(default_rate_control_writes_no_file),
    GPB_TEST(child_refusing_to_start_falls_back_without_an_error),
    GPB_TEST(replacement_loses_no_frame),
    GPB_TEST(lease_is_opened_by_the_first_encoded_buffer),
    GPB_TEST(backend_without_an_element_is_skipped),
    GPB_TEST(encodes_and_the_output_decodes),
    GPB_TEST(downstream_caps_choose_codec_and_stream_format),
    GPB_TEST(every_property_reaches_x264enc),
    GPB_TEST(five_processes_place_three_on_sim_and_two_on_software),
    GPB_TEST(enforce_sessions_refusal_falls_back_and_is_learned),
    GPB_TEST(refusing_encoder_falls_back_without_an_error),
    GPB_TEST(when_every_candidate_fails_one_error_lists_them),
    GPB_TEST(two_hundred_cycles_leak_no_lease),
    GPB_TEST(invalid_property_values_are_refused_with_a_warning),
    GPB_TEST(new_resolution_places_the_stream_again),
};

GPB_TEST_MAIN(cases)
