/* test_autoplug.c - encodebin and uritranscodebin choose the gpubalance
 * elements for H.264, H.265 and AV1 profiles, a named profile works, a
 * lowered rank gives the choice back, and AV1 encodes end to end. */
#include <glib/gstdio.h>
#include <gst/check/gstcheck.h>
#include <string.h>

#include "gsttest.h"
#include "helpers.h"

/* The factory names of the encoders anywhere inside pipeline, "a,b"
 * (codecs, not encodebin itself). */
static gchar *encoders_inside(GstElement *pipeline)
{
    GstIterator *it = gst_bin_iterate_recurse(GST_BIN(pipeline));
    GValue item = G_VALUE_INIT;
    GString *names = g_string_new(NULL);

    while (gst_iterator_next(it, &item) == GST_ITERATOR_OK) {
        GstElementFactory *f = gst_element_get_factory(g_value_get_object(&item));

        if (f && gst_element_factory_list_is_type(f, GST_ELEMENT_FACTORY_TYPE_ENCODER) &&
            strstr(gst_element_factory_get_metadata(f, GST_ELEMENT_METADATA_KLASS), "Codec"))
            g_string_append_printf(names, "%s%s", names->len ? "," : "", GST_OBJECT_NAME(f));
        g_value_reset(&item);
    }
    g_value_unset(&item);
    gst_iterator_free(it);
    return g_string_free(names, FALSE);
}

/* Runs description (writing to file name), checks which encoders it used
 * (outer first: a bin's children come after it in the recursion) and
 * decodes the file. */
static void encode_check(const char *description_fmt, const char *name, const char *want_encoders,
                         const char *want_decoder, int frames)
{
    gchar *path = test_file(name);
    gchar *description = g_strdup_printf(description_fmt, path);
    gchar *encoders;
    Run run;
    GstElement *p;

    g_printerr("%s\n", description);
    p = play(description, &run);
    g_assert_cmpint(run.errors, ==, 0);
    encoders = encoders_inside(p);
    g_printerr("encoders: %s\n", encoders);
    g_assert_cmpstr(encoders, ==, want_encoders);
    stop(p, &run);
    assert_file_decodes(path, frames, NULL, want_decoder);
    g_free(encoders);
    g_free(description);
    g_free(path);
}

static void encodebin_h264_profile_chooses_gpubalance(void)
{
    setup(software_only);
    encode_check("videotestsrc num-buffers=20 ! encodebin profile=video/quicktime,variant=iso:video/x-h264 ! "
                 "filesink location=%s",
                 "out.mp4", "gpubalanceh264enc,x264enc", "avdec_h264", 20);
}

static void encodebin_h265_profile_chooses_gpubalance(void)
{
    setup(software_only);
    encode_check("videotestsrc num-buffers=20 ! encodebin profile=video/x-matroska:video/x-h265 ! "
                 "filesink location=%s",
                 "out.mkv", "gpubalanceh265enc,x265enc", "avdec_h265", 20);
}

static void encodebin_named_profile_uses_gpubalanceenc(void)
{
    setup(software_only);
    encode_check("videotestsrc num-buffers=20 ! encodebin profile=mp4mux:gpubalanceenc ! filesink location=%s",
                 "out.mp4", "gpubalanceenc,x264enc", "avdec_h264", 20);
}

static void lowered_rank_gives_the_choice_back(void)
{
    /* as a user would, before GStreamer starts */
    g_setenv("GST_PLUGIN_FEATURE_RANK", "gpubalanceh264enc:NONE", TRUE);
    setup(software_only);
    encode_check("videotestsrc num-buffers=20 ! encodebin profile=video/quicktime,variant=iso:video/x-h264 ! "
                 "filesink location=%s",
                 "out.mp4", "x264enc", "avdec_h264", 20);
}

/* uritranscodebin decodes a file (without audio) and encodes it again
 * through encodebin. */
static void uritranscodebin_chooses_gpubalance(void)
{
    gchar *source = NULL, *uri, *description;

    setup(software_only);
    source = test_file("source.mp4");
    encode_check("videotestsrc num-buffers=20 ! x264enc ! mp4mux ! filesink location=%s", "source.mp4", "x264enc",
                 "avdec_h264", 20);
    uri = gst_filename_to_uri(source, NULL);
    description = g_strdup_printf("uritranscodebin source-uri=%s dest-uri=file://%%s "
                                  "profile=video/x-matroska:video/x-h265",
                                  uri);
    encode_check(description, "out.mkv", "gpubalanceh265enc,x265enc", "avdec_h265", 20);
    g_free(description);
    g_free(uri);
    g_free(source);
}

static void av1_encodes_end_to_end(void)
{
    const char *child;
    gchar *by_element, *by_encodebin;

    setup(software_only);
    if (!(child = gst_test_software_av1_encoder()))
        gpb_test_skip("no software AV1 encoder (svtav1enc, av1enc) here");
    by_element = g_strdup_printf("gpubalanceenc,%s", child);
    by_encodebin = g_strdup_printf("gpubalanceav1enc,%s", child);
    encode_check("videotestsrc num-buffers=15 ! gpubalanceenc codec=av1 speed=fast ! matroskamux ! "
                 "filesink location=%s",
                 "out.mkv", by_element, "av1dec", 15);
    /* downstream caps choose AV1 without the codec property */
    encode_check("videotestsrc num-buffers=15 ! gpubalanceenc speed=fast ! video/x-av1 ! mp4mux ! "
                 "filesink location=%s",
                 "out.mp4", by_element, "av1dec", 15);
    encode_check("videotestsrc num-buffers=15 ! encodebin profile=video/x-matroska:video/x-av1 ! "
                 "filesink location=%s",
                 "auto.mkv", by_encodebin, "av1dec", 15);
    g_free(by_element);
    g_free(by_encodebin);
}

static const gpb_test_case cases[] = {
    GPB_TEST(encodebin_h264_profile_chooses_gpubalance),  GPB_TEST(encodebin_h265_profile_chooses_gpubalance),
    GPB_TEST(encodebin_named_profile_uses_gpubalanceenc), GPB_TEST(lowered_rank_gives_the_choice_back),
    GPB_TEST(uritranscodebin_chooses_gpubalance),         GPB_TEST(av1_encodes_end_to_end),
};

GPB_TEST_MAIN(cases)
