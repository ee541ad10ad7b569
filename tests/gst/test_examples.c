/* test_examples.c - the GStreamer examples, run as a user runs them: the
 * file transcode on a file with audio and one without, the live
 * multi-stream script and the show-placement program. */
#include <gst/check/gstcheck.h>
#include <string.h>

#include "gsttest.h"
#include "helpers.h"

/* Runs argv to its end; returns its stdout, the test failing on a
 * non-zero exit. */
static gchar *run_example(const char *const *argv)
{
    gchar *out = NULL, *err = NULL;
    GError *error = NULL;
    gint status = 0;

    g_assert_true(g_spawn_sync(NULL, (gchar **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err, &status, &error));
    g_printerr("%s:\n%s%s", argv[0], out, err);
    g_assert_true(g_spawn_check_wait_status(status, &error));
    g_free(err);
    return out;
}

/* The scripts run Debian's gst-launch-1.0, which cannot load a plugin
 * built with sanitizers. */
static gchar *example_path(const char *name)
{
    if (g_strcmp0(g_getenv("GPB_SANITIZE"), "none") != 0)
        gpb_test_skip("gst-launch-1.0 cannot load a plugin built with -Db_sanitize=%s", g_getenv("GPB_SANITIZE"));
    return g_build_filename(g_getenv("GPB_EXAMPLES"), name, NULL);
}

/* Writes a 2 s test file, with a second of AAC audio or none. */
static gchar *make_input(const char *name, gboolean with_audio)
{
    gchar *path = test_file(name);
    gchar *description = g_strdup_printf("videotestsrc num-buffers=60 ! video/x-raw,format=I420,framerate=30/1 ! "
                                         "x264enc speed-preset=ultrafast ! mux. %s "
                                         "mp4mux name=mux ! filesink location=%s",
                                         with_audio ? "audiotestsrc num-buffers=40 ! avenc_aac ! mux." : "", path);
    Run run;
    GstElement *p = play(description, &run);

    g_assert_cmpint(run.errors, ==, 0);
    stop(p, &run);
    g_free(description);
    return path;
}

static void transcode(gboolean with_audio)
{
    gchar *input, *output = NULL, *script = example_path("gstreamer/transcode-file.sh"), *out;

    setup(software_only);
    input = make_input("input.mp4", with_audio);
    output = test_file("output.mp4");
    {
        const char *argv[] = {script, input, output, "500", NULL};

        out = run_example(argv);
    }
    gpb_assert_contains(out, "gpubalance-selected");
    assert_file_decodes(output, 60, NULL, "avdec_h264");
    g_free(out);
    g_free(script);
    g_free(input);
    g_free(output);
}

static void transcode_file_example_with_audio(void)
{
    transcode(TRUE);
}

static void transcode_file_example_without_audio(void)
{
    transcode(FALSE);
}

static void live_multistream_example_places_every_stream(void)
{
    gchar *script = example_path("gstreamer/live-multistream.sh"), *out;
    const char *argv[] = {NULL, "2", "1", NULL};
    int placements = 0;

    setup(software_only);
    argv[0] = script;
    out = run_example(argv);
    for (const char *p = out; (p = strstr(p, "gpubalance-selected")); p++)
        placements++;
    g_assert_cmpint(placements, ==, 2);
    g_free(out);
    g_free(script);
}

static void show_placement_example_prints_the_placement(void)
{
    const char *argv[] = {g_getenv("GPB_SHOW_PLACEMENT"), "320", "240", "30", NULL};
    gchar *out;

    setup(software_only);
    out = run_example(argv);
    gpb_assert_contains(out, "placed on software (backend software) encoding with x264enc, attempt 1");
    gpb_assert_contains(out, "encoded 60 frames");
    g_free(out);
}

static const gpb_test_case cases[] = {
    GPB_TEST(transcode_file_example_with_audio),
    GPB_TEST(transcode_file_example_without_audio),
    GPB_TEST(live_multistream_example_places_every_stream),
    GPB_TEST(show_placement_example_prints_the_placement),
};

GPB_TEST_MAIN(cases)
