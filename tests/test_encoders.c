/* test_encoders.c - the knowledge both front ends take from the core:
 * encoders per backend and framework, presets, the quality scale, the
 * classification of failed opens, the attempts list and the shared
 * context. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "helpers.h"

static const gpubalance_backend placeable[] = {GPUBALANCE_BACKEND_NVENC, GPUBALANCE_BACKEND_VAAPI,
                                               GPUBALANCE_BACKEND_SOFTWARE, GPUBALANCE_BACKEND_SIM};

static void every_backend_and_codec_has_an_encoder_in_each_framework(void)
{
    for (int f = GPUBALANCE_FRAMEWORK_FFMPEG; f <= GPUBALANCE_FRAMEWORK_GSTREAMER; f++) {
        for (size_t b = 0; b < G_N_ELEMENTS(placeable); b++) {
            for (int c = 0; c < GPUBALANCE_N_CODECS; c++) {
                size_t n = 99;
                const gpubalance_encoder_info *e = gpubalance_encoders(f, placeable[b], c, &n);

                g_assert_nonnull(e);
                g_assert_cmpuint(n, >=, 1);
                for (size_t i = 0; i < n; i++)
                    g_assert_cmpint(gpubalance_encoder_family_of(e[i].name), ==, (int)e[i].family);
            }
        }
    }
}

static void encoder_table_names_what_each_framework_opens(void)
{
    size_t n;
    const gpubalance_encoder_info *e;

    e = gpubalance_encoders(GPUBALANCE_FRAMEWORK_FFMPEG, GPUBALANCE_BACKEND_NVENC, GPUBALANCE_CODEC_HEVC, &n);
    g_assert_cmpstr(e[0].name, ==, "hevc_nvenc");
    e = gpubalance_encoders(GPUBALANCE_FRAMEWORK_FFMPEG, GPUBALANCE_BACKEND_SOFTWARE, GPUBALANCE_CODEC_AV1, &n);
    g_assert_cmpuint(n, ==, 2);
    g_assert_cmpstr(e[0].name, ==, "libsvtav1");
    g_assert_cmpstr(e[1].name, ==, "libaom-av1");
    e = gpubalance_encoders(GPUBALANCE_FRAMEWORK_GSTREAMER, GPUBALANCE_BACKEND_SIM, GPUBALANCE_CODEC_H264, &n);
    g_assert_cmpuint(n, ==, 2);
    g_assert_cmpstr(e[0].name, ==, "x264enc");
    g_assert_cmpint(e[1].family, ==, GPUBALANCE_ENCODER_OPENH264);
    e = gpubalance_encoders(GPUBALANCE_FRAMEWORK_GSTREAMER, GPUBALANCE_BACKEND_VAAPI, GPUBALANCE_CODEC_H264, &n);
    g_assert_cmpstr(e[0].name, ==, "vah264enc");
    /* names GStreamer gives per device and release */
    g_assert_cmpint(gpubalance_encoder_family_of("nvautogpuh264enc"), ==, GPUBALANCE_ENCODER_NVENC);
    g_assert_cmpint(gpubalance_encoder_family_of("varenderD129h265enc"), ==, GPUBALANCE_ENCODER_VAAPI);
    g_assert_cmpint(gpubalance_encoder_family_of("mpeg2enc"), ==, -1);
    g_assert_null(gpubalance_encoders(GPUBALANCE_FRAMEWORK_FFMPEG, 42, GPUBALANCE_CODEC_H264, &n));
    g_assert_cmpuint(n, ==, 0);
}

static void every_preset_has_a_value_on_every_family(void)
{
    const char *previous_nvenc = "p0";
    int previous_va = 8;
    size_t count = 0;

    for (size_t i = 0; gpubalance_preset_name(i); i++, count++) {
        const char *name = gpubalance_preset_name(i);

        for (int f = 0; f < GPUBALANCE_N_ENCODER_FAMILIES; f++)
            g_assert_nonnull(gpubalance_preset_value(f, name));
        /* slower presets never map to a faster setting */
        g_assert_cmpstr(gpubalance_preset_value(GPUBALANCE_ENCODER_NVENC, name), >=, previous_nvenc);
        g_assert_cmpint(atoi(gpubalance_preset_value(GPUBALANCE_ENCODER_VAAPI, name)), <=, previous_va);
        previous_nvenc = gpubalance_preset_value(GPUBALANCE_ENCODER_NVENC, name);
        previous_va = atoi(gpubalance_preset_value(GPUBALANCE_ENCODER_VAAPI, name));
    }
    g_assert_cmpuint(count, ==, 9);
    g_assert_cmpstr(gpubalance_preset_value(GPUBALANCE_ENCODER_X264, "veryfast"), ==, "veryfast");
    g_assert_cmpstr(gpubalance_preset_value(GPUBALANCE_ENCODER_NVENC, "ultrafast"), ==, "p1");
    g_assert_cmpstr(gpubalance_preset_value(GPUBALANCE_ENCODER_NVENC, "medium"), ==, "p4");
    g_assert_cmpstr(gpubalance_preset_value(GPUBALANCE_ENCODER_NVENC, "veryslow"), ==, "p7");
    g_assert_cmpstr(gpubalance_preset_value(GPUBALANCE_ENCODER_VAAPI, "medium"), ==, "4");
    g_assert_cmpstr(gpubalance_preset_value(GPUBALANCE_ENCODER_OPENH264, "slow"), ==, "high");
    g_assert_null(gpubalance_preset_value(GPUBALANCE_ENCODER_X264, "placebo"));
    g_assert_null(gpubalance_preset_value(GPUBALANCE_ENCODER_X264, "turbo"));
    g_assert_null(gpubalance_preset_value(GPUBALANCE_ENCODER_X264, NULL));
}

static void quality_scale_maps_onto_each_family(void)
{
    g_assert_cmpfloat(gpubalance_quality_value(GPUBALANCE_ENCODER_X264, 23), ==, 23);
    g_assert_cmpfloat(gpubalance_quality_value(GPUBALANCE_ENCODER_X265, 28.5), ==, 28.5);
    g_assert_cmpfloat(gpubalance_quality_value(GPUBALANCE_ENCODER_SVTAV1, 51), ==, 63);
    g_assert_cmpfloat(gpubalance_quality_value(GPUBALANCE_ENCODER_AOM, 0), ==, 0);
    g_assert_cmpfloat(gpubalance_quality_value(GPUBALANCE_ENCODER_SVTAV1, 34), ==, 42);
    /* NVENC cq 0 and VA-API ICQ 0 mean "automatic": the best is 1 */
    g_assert_cmpfloat(gpubalance_quality_value(GPUBALANCE_ENCODER_NVENC, 0), ==, 1);
    g_assert_cmpfloat(gpubalance_quality_value(GPUBALANCE_ENCODER_VAAPI, 0.2), ==, 1);
    g_assert_cmpfloat(gpubalance_quality_value(GPUBALANCE_ENCODER_NVENC, 99), ==, GPUBALANCE_MAX_QUALITY);
}

static void failures_are_classified_by_one_rule(void)
{
    static const struct {
        gpubalance_backend backend;
        int error_number;
        const char *message;
        gpubalance_failure expected;
    } cases[] = {
        /* what FFmpeg's nvenc prints past the GeForce cap */
        {GPUBALANCE_BACKEND_NVENC, ENOMEM, "OpenEncodeSessionEx failed: out of memory (10)",
         GPUBALANCE_FAILURE_CAPACITY},
        {GPUBALANCE_BACKEND_NVENC, ENOMEM, NULL, GPUBALANCE_FAILURE_CAPACITY},
        /* GStreamer's nvcodec */
        {GPUBALANCE_BACKEND_NVENC, 0, "Failed to open encode session, status NV_ENC_ERR_OUT_OF_MEMORY (10)",
         GPUBALANCE_FAILURE_CAPACITY},
        /* a GPU without NVENC (H100) */
        {GPUBALANCE_BACKEND_NVENC, 0, "OpenEncodeSessionEx failed: unsupported device (2)",
         GPUBALANCE_FAILURE_UNAVAILABLE},
        {GPUBALANCE_BACKEND_NVENC, 0, "No capable devices found", GPUBALANCE_FAILURE_UNAVAILABLE},
        {GPUBALANCE_BACKEND_VAAPI, 0, "Failed to create encode pipeline context: 2 (resource allocation failed)",
         GPUBALANCE_FAILURE_CAPACITY},
        {GPUBALANCE_BACKEND_VAAPI, 0,
         "Failed to create encode pipeline context: 12 (the requested VAProfile is not supported)",
         GPUBALANCE_FAILURE_OTHER},
        {GPUBALANCE_BACKEND_VAAPI, 0, "vaCreateContext: VA_STATUS_ERROR_ALLOCATION_FAILED",
         GPUBALANCE_FAILURE_CAPACITY},
        {GPUBALANCE_BACKEND_VAAPI, ENOMEM, NULL, GPUBALANCE_FAILURE_CAPACITY},
        {GPUBALANCE_BACKEND_SIM, 0, "sim:gpu0 refused a session: 2 open, enforce-sessions=2",
         GPUBALANCE_FAILURE_CAPACITY},
        /* software running out of memory says nothing about a cap */
        {GPUBALANCE_BACKEND_SOFTWARE, ENOMEM, "malloc failed", GPUBALANCE_FAILURE_OTHER},
        {GPUBALANCE_BACKEND_SOFTWARE, ENOENT, "Encoder libx264 not found", GPUBALANCE_FAILURE_UNAVAILABLE},
        {GPUBALANCE_BACKEND_SOFTWARE, 0, "no such element factory \"x264enc\"", GPUBALANCE_FAILURE_UNAVAILABLE},
        {GPUBALANCE_BACKEND_SOFTWARE, EINVAL, "Invalid preset", GPUBALANCE_FAILURE_OTHER},
        {GPUBALANCE_BACKEND_NVENC, ENODEV, NULL, GPUBALANCE_FAILURE_UNAVAILABLE},
        {GPUBALANCE_BACKEND_NVENC, 0, NULL, GPUBALANCE_FAILURE_OTHER},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        gpubalance_failure got = gpubalance_failure_classify(cases[i].backend, cases[i].error_number, cases[i].message);

        if (got != cases[i].expected)
            g_error("case %zu (%s, %d, \"%s\"): got %d, expected %d", i, gpubalance_backend_name(cases[i].backend),
                    cases[i].error_number, cases[i].message ? cases[i].message : "(null)", got, cases[i].expected);
    }
}

static void failed_attempts_name_the_encoder_the_front_end_opened(void)
{
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *l;

    l = gpb_test_start("[general]\ndiscover=false\norder=nvenc,software\nwhen-full=fail\n"
                       "[device:a]\nbackend=sim\n",
                       &ctx, &s);
    g_assert_cmpstr(gpubalance_lease_attempts(l), ==, "");
    g_assert_cmpint(gpubalance_lease_set_encoder(l, "openh264enc"), ==, 0);
    g_assert_cmpint(gpubalance_lease_report_failure(&l, GPUBALANCE_FAILURE_OTHER, "bad profile"), ==, 0);
    g_assert_cmpstr(gpubalance_lease_device(l), ==, "software");
    g_assert_cmpstr(gpubalance_lease_attempts(l), ==, "sim:a (openh264enc): bad profile");
    /* not set for this attempt: the FFmpeg name */
    g_assert_cmpint(gpubalance_lease_report_failure(&l, GPUBALANCE_FAILURE_OTHER, "no memory"), ==,
                    GPUBALANCE_ERR_NO_CANDIDATE);
    g_assert_null(l);
    g_assert_cmpstr(gpubalance_last_error(), ==,
                    "every candidate failed: sim:a (openh264enc): bad profile; software (libx264): no memory");
    g_assert_cmpint(gpubalance_lease_set_encoder(NULL, "x"), ==, GPUBALANCE_ERR_INVALID_ARGUMENT);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
}

static void *take_shared(void *unused)
{
    return gpubalance_context_shared();
}

static void shared_context_is_one_per_process(void)
{
    pthread_t threads[8];
    gpubalance_context *seen[8];
    gpubalance_lease *l;
    gpubalance_stream *s;

    gpb_test_env("[general]\ndiscover=false\n[device:a]\nbackend=sim\n");
    for (size_t i = 0; i < G_N_ELEMENTS(threads); i++)
        g_assert_cmpint(pthread_create(&threads[i], NULL, take_shared, NULL), ==, 0);
    for (size_t i = 0; i < G_N_ELEMENTS(threads); i++)
        g_assert_cmpint(pthread_join(threads[i], (void **)&seen[i]), ==, 0);
    g_assert_nonnull(seen[0]);
    for (size_t i = 1; i < G_N_ELEMENTS(threads); i++)
        g_assert_true(seen[i] == seen[0]);
    g_assert_true(gpubalance_context_shared() == seen[0]);
    /* usable; the caller never closes it (the library does at exit) */
    s = gpb_test_stream("h264", 1280, 720, 30);
    l = gpb_test_acquire(seen[0], s);
    g_assert_cmpstr(gpubalance_lease_device(l), ==, "sim:a");
    gpubalance_lease_release(l);
    gpubalance_stream_free(s);
}

static void shared_context_failure_is_reported_and_retried(void)
{
    const char *dir = gpb_test_env("[general]\npolicy=sideways\n");
    char *good;

    g_assert_null(gpubalance_context_shared());
    gpb_assert_contains(gpubalance_last_error(), "sideways");
    good = g_build_filename(dir, "good.conf", NULL);
    g_assert_true(g_file_set_contents(good, "[general]\ndiscover=false\n", -1, NULL));
    g_setenv("GPUBALANCE_CONFIG", good, TRUE);
    g_assert_nonnull(gpubalance_context_shared());
    g_free(good);
}

static void stream_limits_are_the_public_constants(void)
{
    gpubalance_stream *s;

    gpubalance_stream_new(&s);
    g_assert_cmpint(gpubalance_stream_set_size(s, GPUBALANCE_MAX_DIMENSION, GPUBALANCE_MIN_DIMENSION), ==, 0);
    g_assert_cmpint(gpubalance_stream_set_size(s, GPUBALANCE_MAX_DIMENSION + 1, 64), ==,
                    GPUBALANCE_ERR_INVALID_ARGUMENT);
    g_assert_cmpint(gpubalance_stream_set_size(s, 64, GPUBALANCE_MIN_DIMENSION - 1), ==,
                    GPUBALANCE_ERR_INVALID_ARGUMENT);
    g_assert_cmpint(gpubalance_stream_set_fps(s, GPUBALANCE_MAX_FPS), ==, 0);
    g_assert_cmpint(gpubalance_stream_set_fps(s, GPUBALANCE_MAX_FPS + 0.5), ==, GPUBALANCE_ERR_INVALID_ARGUMENT);
    gpubalance_stream_free(s);
}

static const gpb_test_case cases[] = {
    GPB_TEST(every_backend_and_codec_has_an_encoder_in_each_framework),
    GPB_TEST(encoder_table_names_what_each_framework_opens),
    GPB_TEST(every_preset_has_a_value_on_every_family),
    GPB_TEST(quality_scale_maps_onto_each_family),
    GPB_TEST(failures_are_classified_by_one_rule),
    GPB_TEST(failed_attempts_name_the_encoder_the_front_end_opened),
    GPB_TEST(shared_context_is_one_per_process),
    GPB_TEST(shared_context_failure_is_reported_and_retried),
    GPB_TEST(stream_limits_are_the_public_constants),
};

GPB_TEST_MAIN(cases)
