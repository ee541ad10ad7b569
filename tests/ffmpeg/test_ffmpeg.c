/* test_ffmpeg.c - balance_h264 / balance_hevc in a real FFmpeg patched and
 * built from source (ffmpeg-patches/build.sh; FFMPEG_PREFIX names it).
 * Processes are synchronised through pipes: an ffmpeg reading raw video
 * from its stdin opens its encoder at the first frame and logs
 * "selected DEVICE (ENCODER)"; the test reads that line before going on. */
#define _GNU_SOURCE
#include <glib/gstdio.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define W 320
#define H 240

static char *tool(const char *name)
{
    const char *prefix = g_getenv("FFMPEG_PREFIX");

    g_assert_nonnull(prefix);
    return g_build_filename(prefix, "bin", name, NULL);
}

/* Runs argv to completion; returns the exit status. */
static int run(GPtrArray *argv, char **out, char **err)
{
    GError *error = NULL;
    int status;

    g_ptr_array_add(argv, NULL);
    if (!g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, out, err, &status, &error))
        g_error("spawn %s: %s", (char *)argv->pdata[0], error->message);
    g_ptr_array_free(argv, TRUE);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static GPtrArray *args(const char *first, ...) G_GNUC_NULL_TERMINATED;
static GPtrArray *args(const char *first, ...)
{
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
    va_list ap;

    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *))
        g_ptr_array_add(argv, g_strdup(a));
    va_end(ap);
    return argv;
}

/* ffmpeg encoding 2 s of testsrc2 to output with extra options. */
static int encode_testsrc(const char *output, const char *const *extra, char **err)
{
    GPtrArray *argv = args("-hide_banner", "-nostdin", "-y", "-f", "lavfi", "-i", NULL);

    g_ptr_array_insert(argv, 0, tool("ffmpeg"));
    g_ptr_array_add(argv, g_strdup_printf("testsrc2=size=%dx%d:rate=30:duration=2", W, H));
    for (int i = 0; extra && extra[i]; i++)
        g_ptr_array_add(argv, g_strdup(extra[i]));
    g_ptr_array_add(argv, g_strdup(output));
    return run(argv, NULL, err);
}

/* codec_name,width,height,nb_read_frames of the first video stream, after
 * decoding all of it (ffprobe errors on anything undecodable). */
static char *probe(const char *file)
{
    char *out = NULL, *err = NULL;
    GPtrArray *argv = args("-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                           "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0", file, NULL);
    int status;

    g_ptr_array_insert(argv, 0, tool("ffprobe"));
    status = run(argv, &out, &err);
    g_assert_cmpint(status, ==, 0);
    g_assert_cmpstr(err, ==, "");
    g_free(err);
    return g_strstrip(out);
}

static const char software_only[] = "[general]\ndiscover=false\n";

static void encodes_to_mp4_and_mkv_that_ffprobe_decodes(void)
{
    const char *dir = gpb_test_env(software_only);
    const char *h264[] = {"-c:v", "balance_h264", NULL};
    const char *hevc[] = {"-c:v", "balance_hevc", NULL};
    char *mp4 = g_build_filename(dir, "out.mp4", NULL);
    char *mkv = g_build_filename(dir, "out.mkv", NULL);
    char *hevc_mp4 = g_build_filename(dir, "hevc.mp4", NULL);
    char *err = NULL, *info;

    g_assert_cmpint(encode_testsrc(mp4, h264, &err), ==, 0);
    gpb_assert_contains(err, "selected software (libx264)");
    g_free(err);
    info = probe(mp4);
    g_assert_cmpstr(info, ==, "h264,320,240,60");
    g_free(info);
    g_assert_cmpint(encode_testsrc(mkv, h264, NULL), ==, 0);
    info = probe(mkv);
    g_assert_cmpstr(info, ==, "h264,320,240,60");
    g_free(info);
    g_assert_cmpint(encode_testsrc(hevc_mp4, hevc, &err), ==, 0);
    gpb_assert_contains(err, "selected software (libx265)");
    info = probe(hevc_mp4);
    g_assert_cmpstr(info, ==, "hevc,320,240,60");
    g_free(info);
    g_free(err);
    g_free(mp4);
    g_free(mkv);
    g_free(hevc_mp4);
}

static void generic_options_reach_libx264(void)
{
    const char *dir = gpb_test_env(software_only);
    const char *opts[] = {"-c:v", "balance_h264", "-b:v", "800k",       "-g",   "25",     "-bf",  "2", "-maxrate",
                          "1M",   "-bufsize",     "2M",   "-profile:v", "main", "-speed", "fast", NULL};
    char *out = g_build_filename(dir, "opts.mp4", NULL);
    gchar *data = NULL;
    gsize size = 0;
    char *sei, *profile_out = NULL;
    GPtrArray *argv;

    g_assert_cmpint(encode_testsrc(out, opts, NULL), ==, 0);
    /* libx264 records its settings in an SEI message in the stream */
    g_assert_true(g_file_get_contents(out, &data, &size, NULL));
    sei = memmem(data, size, "x264 - core", 11);
    g_assert_nonnull(sei);
    gpb_assert_contains(sei, "keyint=25 ");
    gpb_assert_contains(sei, "bframes=2 ");
    gpb_assert_contains(sei, "bitrate=800 ");
    gpb_assert_contains(sei, "vbv_maxrate=1000 ");
    gpb_assert_contains(sei, "vbv_bufsize=2000 ");
    gpb_assert_contains(sei, "subme=2 "); /* preset veryfast, from -speed fast */
    argv =
        args("-v", "error", "-select_streams", "v:0", "-show_entries", "stream=profile", "-of", "csv=p=0", out, NULL);
    g_ptr_array_insert(argv, 0, tool("ffprobe"));
    g_assert_cmpint(run(argv, &profile_out, NULL), ==, 0);
    g_assert_cmpstr(g_strstrip(profile_out), ==, "Main");
    g_free(profile_out);
    g_free(data);
    g_free(out);
}

/* ---- processes fed through their stdin ----------------------------------- */

typedef struct {
    GPid pid;
    int in;
    int err;
    char *selected; /* "sim:gpu0 (libx264)" */
    GString *log;
} Encoder;

/* Starts ffmpeg reading raw 320x240 yuv420p from stdin, encoding with
 * balance_h264 (plus extra options) into output, and waits until it has
 * opened its encoder. */
static void start_encoder(Encoder *e, const char *output, const char *const *extra)
{
    GPtrArray *argv = args("-hide_banner", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "320x240", "-r", "30",
                           "-i", "pipe:0", "-c:v", "balance_h264", "-speed", "fast", NULL);
    GError *error = NULL;
    guint8 frame[W * H * 3 / 2];

    g_ptr_array_insert(argv, 0, tool("ffmpeg"));
    for (int i = 0; extra && extra[i]; i++)
        g_ptr_array_add(argv, g_strdup(extra[i]));
    g_ptr_array_add(argv, g_strdup(output));
    g_ptr_array_add(argv, NULL);
    memset(e, 0, sizeof(*e));
    e->log = g_string_new(NULL);
    if (!g_spawn_async_with_pipes(NULL, (char **)argv->pdata, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &e->pid,
                                  &e->in, NULL, &e->err, &error))
        g_error("spawn ffmpeg: %s", error->message);
    g_ptr_array_free(argv, TRUE);
    memset(frame, 128, sizeof(frame));
    g_assert_cmpint(write(e->in, frame, sizeof(frame)), ==, sizeof(frame)); /* its first frame */
    for (;;) {
        char *line = gpb_read_line(e->err);
        char *at;

        g_string_append_printf(e->log, "%s\n", line);
        if (!*line && waitpid(e->pid, NULL, WNOHANG) == e->pid)
            g_error("ffmpeg ended before opening its encoder:\n%s", e->log->str);
        if ((at = strstr(line, "selected "))) {
            e->selected = g_strdup(at + strlen("selected "));
            g_free(line);
            return;
        }
        g_free(line);
    }
}

/* Ends the input; returns ffmpeg's exit status. */
static int finish_encoder(Encoder *e)
{
    int status;
    char buf[4096];

    close(e->in);
    while (read(e->err, buf, sizeof(buf)) > 0)
        ; /* drain its log so it never blocks on stderr */
    g_assert_cmpint(waitpid(e->pid, &status, 0), ==, e->pid);
    close(e->err);
    g_free(e->selected);
    g_string_free(e->log, TRUE);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void six_processes_place_three_on_sim_and_three_on_software(void)
{
    const char *dir = gpb_test_env(GPB_TEST_TWO_SIMS_IN_A_POOL_OF_3);
    Encoder e[6];
    int sim = 0, software = 0;
    gpubalance_context *ctx;

    for (int i = 0; i < 6; i++) {
        char *out = g_strdup_printf("%s/stream%d.mkv", dir, i);

        start_encoder(&e[i], out, NULL);
        sim += g_str_has_prefix(e[i].selected, "sim:");
        software += g_str_has_prefix(e[i].selected, "software (libx264)");
        g_free(out);
    }
    ctx = gpb_test_open();
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 6); /* all six at once */
    g_assert_cmpint(sim, ==, 3);
    g_assert_cmpint(software, ==, 3);
    for (int i = 0; i < 6; i++)
        g_assert_cmpint(finish_encoder(&e[i]), ==, 0);
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0);
    gpubalance_context_close(ctx);
}

static void enforce_sessions_refusal_falls_back_and_is_learned(void)
{
    const char *dir = gpb_test_env("[general]\ndiscover=false\norder=nvenc,software\nlearn-expiry=60\n"
                                   "[device:gpu0]\nbackend=sim\nmax-sessions=3\nenforce-sessions=1\n");
    char *a_out = g_build_filename(dir, "a.mkv", NULL);
    char *b_out = g_build_filename(dir, "b.mkv", NULL);
    Encoder a, b;
    gpubalance_context *ctx;

    start_encoder(&a, a_out, NULL);
    g_assert_cmpstr(a.selected, ==, "sim:gpu0 (libx264)");
    start_encoder(&b, b_out, NULL);
    g_assert_cmpstr(b.selected, ==, "software (libx264)");
    gpb_assert_contains(b.log->str, "sim:gpu0 (libx264) failed");
    gpb_assert_contains(b.log->str, "enforce-sessions=1");
    ctx = gpb_test_open();
    g_assert_cmpint(gpb_test_learned_limit(ctx, "sim:gpu0"), ==, 1);
    g_assert_cmpint(finish_encoder(&b), ==, 0);
    g_assert_cmpint(finish_encoder(&a), ==, 0);
    gpubalance_context_close(ctx);
    g_free(a_out);
    g_free(b_out);
}

static void killed_encoder_leaves_no_lease(void)
{
    const char *dir = gpb_test_env(GPB_TEST_TWO_SIMS_IN_A_POOL_OF_3);
    char *out = g_build_filename(dir, "killed.mkv", NULL);
    gpubalance_context *ctx;
    Encoder e;
    int status;

    start_encoder(&e, out, NULL);
    ctx = gpb_test_open();
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 1);
    kill(e.pid, SIGKILL);
    g_assert_cmpint(waitpid(e.pid, &status, 0), ==, e.pid);
    g_assert_true(WIFSIGNALED(status));
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0);
    close(e.in);
    close(e.err);
    g_free(e.selected);
    g_string_free(e.log, TRUE);
    gpubalance_context_close(ctx);
    g_free(out);
}

static void bad_option_values_fail_clearly(void)
{
    const char *dir = gpb_test_env(software_only);
    char *out = g_build_filename(dir, "bad.mp4", NULL);
    const char *bad_policy[] = {"-c:v", "balance_h264", "-policy", "random", NULL};
    const char *bad_order[] = {"-c:v", "balance_h264", "-order", "nvenc,cuda", NULL};
    const char *bad_device[] = {"-c:v", "balance_h264", "-device", "nvenc:9", NULL};
    const char *bad_speed[] = {"-c:v", "balance_h264", "-speed", "ludicrous", NULL};
    char *err = NULL;

    g_assert_cmpint(encode_testsrc(out, bad_policy, &err), !=, 0);
    gpb_assert_contains(err, "policy 'random' is not one of: balanced, fill");
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(encode_testsrc(out, bad_order, &err), !=, 0);
    gpb_assert_contains(err, "order entry 'cuda' is not one of: nvenc, vaapi, software");
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(encode_testsrc(out, bad_device, &err), !=, 0);
    gpb_assert_contains(err, "device 'nvenc:9' does not exist here");
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(encode_testsrc(out, bad_speed, &err), !=, 0);
    gpb_assert_contains(err, "ludicrous");
    g_free(err);
    g_free(out);
}

static const gpb_test_case cases[] = {
    {"encodes_to_mp4_and_mkv_that_ffprobe_decodes", encodes_to_mp4_and_mkv_that_ffprobe_decodes},
    {"generic_options_reach_libx264", generic_options_reach_libx264},
    {"six_processes_place_three_on_sim_and_three_on_software", six_processes_place_three_on_sim_and_three_on_software},
    {"enforce_sessions_refusal_falls_back_and_is_learned", enforce_sessions_refusal_falls_back_and_is_learned},
    {"killed_encoder_leaves_no_lease", killed_encoder_leaves_no_lease},
    {"bad_option_values_fail_clearly", bad_option_values_fail_clearly},
};

GPB_TEST_MAIN(cases)
