/* test_ffmpeg.c - balance_h264 / balance_hevc / balance_av1 in a real FFmpeg
 * patched and built from source (ffmpeg-patches/build.sh; FFMPEG_PREFIX
 * names it). Options are checked in the output: libx264 writes its settings
 * into an SEI message, ffprobe reports the rest.
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

/* One ffprobe answer: -show_entries ENTRIES of the first video stream (or
 * the format, for format=...), as csv without the section name. */
static char *probe_entries(const char *file, const char *entries)
{
    char *out = NULL;
    GPtrArray *argv =
        args("-v", "error", "-select_streams", "v:0", "-show_entries", entries, "-of", "csv=p=0", file, NULL);

    g_ptr_array_insert(argv, 0, tool("ffprobe"));
    g_assert_cmpint(run(argv, &out, NULL), ==, 0);
    return g_strstrip(out);
}

/* libx264's settings, from the SEI message it writes into the stream. */
static char *x264_settings(const char *file)
{
    gchar *data = NULL;
    gsize size = 0;
    char *sei, *settings;

    g_assert_true(g_file_get_contents(file, &data, &size, NULL));
    sei = memmem(data, size, "x264 - core", 11);
    g_assert_nonnull(sei);
    settings = g_strndup(sei, strnlen(sei, data + size - sei));
    g_free(data);
    return settings;
}

/* The value of one x264 setting ("threads") from the SEI. */
static char *x264_setting(const char *settings, const char *name)
{
    char *key = g_strdup_printf(" %s=", name);
    const char *at = strstr(settings, key);
    char *value;

    g_assert_nonnull(at);
    at += strlen(key);
    value = g_strndup(at, strcspn(at, " "));
    g_free(key);
    return value;
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
    const char *opts[] = {"-c:v",        "balance_h264", "-b:v",     "800k",     "-g",     "25",      "-bf",
                          "2",           "-maxrate",     "1M",       "-bufsize", "2M",     "-refs",   "1",
                          "-keyint_min", "12",           "-trellis", "0",        "-qcomp", "0.5",     "-sc_threshold",
                          "30",          "-profile:v",   "main",     "-level",   "3.1",    "-preset", "veryfast",
                          NULL};
    char *out = g_build_filename(dir, "opts.mp4", NULL);
    char *sei, *info;

    g_assert_cmpint(encode_testsrc(out, opts, NULL), ==, 0);
    sei = x264_settings(out);
    gpb_assert_contains(sei, " keyint=25 ");
    gpb_assert_contains(sei, " keyint_min=12 ");
    gpb_assert_contains(sei, " bframes=2 ");
    gpb_assert_contains(sei, " bitrate=800 ");
    gpb_assert_contains(sei, " vbv_maxrate=1000 ");
    gpb_assert_contains(sei, " vbv_bufsize=2000 ");
    gpb_assert_contains(sei, " ref=1 ");
    gpb_assert_contains(sei, " trellis=0 ");
    gpb_assert_contains(sei, " qcomp=0.50 ");
    gpb_assert_contains(sei, " scenecut=30 ");
    gpb_assert_contains(sei, " subme=2 ");    /* preset veryfast */
    gpb_assert_contains(sei, " open_gop=0 "); /* x264's closed GOP kept */
    info = probe_entries(out, "stream=profile,level");
    g_assert_cmpstr(info, ==, "Main,31");
    g_free(info);
    g_free(sei);
    g_free(out);
}

static void quality_options_reach_libx264(void)
{
    const char *dir = gpb_test_env(software_only);
    const char *crf[] = {"-c:v", "balance_h264", "-crf", "35", "-tune", "zerolatency", NULL};
    const char *qp[] = {"-c:v", "balance_h264", "-qp", "20", "-x264-params", "ref=5", NULL};
    char *crf_out = g_build_filename(dir, "crf.mkv", NULL);
    char *qp_out = g_build_filename(dir, "qp.mkv", NULL);
    char *sei;

    g_assert_cmpint(encode_testsrc(crf_out, crf, NULL), ==, 0);
    sei = x264_settings(crf_out);
    gpb_assert_contains(sei, " rc=crf ");
    gpb_assert_contains(sei, " crf=35.0 ");
    gpb_assert_contains(sei, " bframes=0 "); /* tune zerolatency */
    gpb_assert_contains(sei, " mbtree=0 ");  /* no lookahead */
    g_free(sei);
    g_assert_cmpint(encode_testsrc(qp_out, qp, NULL), ==, 0);
    sei = x264_settings(qp_out);
    gpb_assert_contains(sei, " rc=cqp ");
    gpb_assert_contains(sei, " qp=20 ");
    gpb_assert_contains(sei, " ref=5 ");
    g_free(sei);
    g_free(crf_out);
    g_free(qp_out);
}

/* With default options libx264 under the wrapper runs with the thread
 * count plain libx264 picks; -threads N reaches it. */
static void thread_count_is_libx264s_own(void)
{
    const char *dir = gpb_test_env(software_only);
    const char *plain[] = {"-c:v", "libx264", NULL};
    const char *wrapped[] = {"-c:v", "balance_h264", NULL};
    const char *three[] = {"-c:v", "balance_h264", "-threads", "3", NULL};
    char *plain_out = g_build_filename(dir, "plain.mkv", NULL);
    char *wrapped_out = g_build_filename(dir, "wrapped.mkv", NULL);
    char *three_out = g_build_filename(dir, "three.mkv", NULL);
    char *plain_sei, *wrapped_sei, *three_sei, *plain_threads, *wrapped_threads, *three_threads;

    g_assert_cmpint(encode_testsrc(plain_out, plain, NULL), ==, 0);
    g_assert_cmpint(encode_testsrc(wrapped_out, wrapped, NULL), ==, 0);
    g_assert_cmpint(encode_testsrc(three_out, three, NULL), ==, 0);
    plain_sei = x264_settings(plain_out);
    wrapped_sei = x264_settings(wrapped_out);
    three_sei = x264_settings(three_out);
    plain_threads = x264_setting(plain_sei, "threads");
    wrapped_threads = x264_setting(wrapped_sei, "threads");
    three_threads = x264_setting(three_sei, "threads");
    g_test_message("threads: libx264 %s, balance_h264 %s, balance_h264 -threads 3: %s", plain_threads, wrapped_threads,
                   three_threads);
    g_assert_cmpstr(wrapped_threads, ==, plain_threads);
    g_assert_cmpstr(three_threads, ==, "3");
    /* and the whole configuration is the same as plain libx264's */
    g_assert_cmpstr(wrapped_sei, ==, plain_sei);
    g_free(plain_threads);
    g_free(wrapped_threads);
    g_free(three_threads);
    g_free(plain_sei);
    g_free(wrapped_sei);
    g_free(three_sei);
    g_free(plain_out);
    g_free(wrapped_out);
    g_free(three_out);
}

/* child_opts reaches libx264 (nal-hrd=cbr); the bitrate of a CBR encode is
 * within 10% of the target; a key no candidate has is an error. */
static void child_opts_reach_libx264_and_cbr_holds_its_rate(void)
{
    const char *dir = gpb_test_env(software_only);
    const char *cbr[] = {"-c:v",     "balance_h264", "-b:v",        "400k",        "-maxrate", "400k",
                         "-bufsize", "400k",         "-child_opts", "nal-hrd=cbr", NULL};
    const char *typo[] = {"-c:v", "balance_h264", "-child_opts", "nal-hdr=cbr", NULL};
    char *out = g_build_filename(dir, "cbr.mkv", NULL);
    char *sei, *sizes, *err = NULL;
    char **lines;
    double bits = 0, kbps;

    g_assert_cmpint(encode_testsrc(out, cbr, NULL), ==, 0);
    sei = x264_settings(out);
    gpb_assert_contains(sei, " nal_hrd=cbr ");
    /* the video stream's own rate: its packets over its 2 s */
    sizes = probe_entries(out, "packet=size");
    lines = g_strsplit(sizes, "\n", -1);
    for (int i = 0; lines[i]; i++)
        bits += 8 * g_ascii_strtod(lines[i], NULL);
    kbps = bits / 2 / 1000;
    g_test_message("CBR target 400 kbit/s, video stream %.0f kbit/s", kbps);
    g_assert_cmpfloat(kbps, >=, 400 * 0.9);
    g_assert_cmpfloat(kbps, <=, 400 * 1.1);
    g_strfreev(lines);
    g_free(sizes);
    g_assert_cmpint(encode_testsrc(out, typo, &err), !=, 0);
    gpb_assert_contains(err, "child_opts: no encoder balance_h264 may choose has an option 'nal-hdr'");
    g_free(err);
    g_free(sei);
    g_free(out);
}

/* An option the chosen child does not use is named in a warning. */
static void option_the_child_ignores_is_a_warning(void)
{
    const char *dir = gpb_test_env(software_only);
    const char *opts[] = {"-c:v", "balance_hevc", "-trellis", "1", "-tune", "film", NULL};
    char *out = g_build_filename(dir, "warn.mkv", NULL);
    char *err = NULL;

    g_assert_cmpint(encode_testsrc(out, opts, &err), ==, 0);
    gpb_assert_contains(err, "libx265 does not use -trellis; ignored");
    gpb_assert_contains(err, "libx265 has no equivalent of tune=film; ignored");
    g_free(err);
    g_free(out);
}

/* nv12 (which libx265 does not take) is converted by ffmpeg, as for
 * libx265; 10-bit 4:2:2 is encoded as such. */
static void hevc_takes_nv12_and_ten_bit_422(void)
{
    const char *dir = gpb_test_env(software_only);
    const char *nv12[] = {"-pix_fmt", "nv12", "-c:v", "balance_hevc", NULL};
    const char *p422[] = {"-pix_fmt", "yuv422p10le", "-c:v", "balance_hevc", NULL};
    char *out = g_build_filename(dir, "nv12.mkv", NULL);
    char *out422 = g_build_filename(dir, "422.mkv", NULL);
    char *info;

    g_assert_cmpint(encode_testsrc(out, nv12, NULL), ==, 0);
    info = probe(out);
    g_assert_cmpstr(info, ==, "hevc,320,240,60");
    g_free(info);
    g_assert_cmpint(encode_testsrc(out422, p422, NULL), ==, 0);
    info = probe_entries(out422, "stream=pix_fmt,profile");
    g_assert_cmpstr(info, ==, "Rext,yuv422p10le");
    g_free(info);
    g_free(out);
    g_free(out422);
}

static void av1_encodes_with_libsvtav1_and_decodes(void)
{
    const char *dir = gpb_test_env("[general]\ndiscover=false\n[software]\ncodecs=h264,hevc,av1\n");
    const char *av1[] = {"-c:v", "balance_av1", "-preset", "ultrafast", "-crf", "40", NULL};
    char *out = g_build_filename(dir, "av1.mkv", NULL);
    char *err = NULL, *info;

    g_assert_cmpint(encode_testsrc(out, av1, &err), ==, 0);
    gpb_assert_contains(err, "selected software (libsvtav1)");
    info = probe(out);
    g_assert_cmpstr(info, ==, "av1,320,240,60");
    g_free(info);
    g_free(err);
    g_free(out);
}

/* HLS and MPEG-TS written by the built ffmpeg decode completely. */
static void hls_and_mpegts_outputs_decode(void)
{
    const char *dir = gpb_test_env(software_only);
    char *playlist = g_build_filename(dir, "live.m3u8", NULL);
    char *ts = g_build_filename(dir, "out.ts", NULL);
    const char *hls[] = {"-c:v", "balance_h264",   "-g", "30", "-f", "hls", "-hls_time",
                         "1",    "-hls_list_size", "0",  NULL};
    const char *mpegts[] = {"-c:v", "balance_hevc", "-f", "mpegts", NULL};
    char *info;

    g_assert_cmpint(encode_testsrc(playlist, hls, NULL), ==, 0);
    info = probe(playlist); /* the stream, listed in its program too */
    g_assert_true(g_str_has_prefix(info, "h264,320,240,60"));
    g_free(info);
    g_assert_cmpint(encode_testsrc(ts, mpegts, NULL), ==, 0);
    info = probe(ts);
    g_assert_true(g_str_has_prefix(info, "hevc,320,240,60"));
    g_free(info);
    g_free(playlist);
    g_free(ts);
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
                           "-i", "pipe:0", "-c:v", "balance_h264", "-preset", "veryfast", NULL);
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
    const char *bad_preset[] = {"-c:v", "balance_h264", "-preset", "ludicrous", NULL};
    char *err = NULL;

    g_assert_cmpint(encode_testsrc(out, bad_policy, &err), !=, 0);
    gpb_assert_contains(err, "policy");
    gpb_assert_contains(err, "random");
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(encode_testsrc(out, bad_order, &err), !=, 0);
    gpb_assert_contains(err, "order entry 'cuda' is not one of: nvenc, vaapi, software");
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(encode_testsrc(out, bad_device, &err), !=, 0);
    gpb_assert_contains(err, "device 'nvenc:9' does not exist here");
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(encode_testsrc(out, bad_preset, &err), !=, 0);
    gpb_assert_contains(err, "preset 'ludicrous' is not one of: ultrafast superfast veryfast faster fast medium "
                             "slow slower veryslow");
    g_free(err);
    g_free(out);
}

static char *file_text(const char *path)
{
    char *text = NULL;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    return text;
}

/* ---- memcheck ----------------------------------------------------------- */

/* ffmpeg (the unstripped ffmpeg_g of build.sh's build directory when it is
 * there, for names in the stacks) under valgrind's memcheck, encoding a
 * short testsrc with balance_h264 (on device, when given); any invalid access or definitely lost
 * block is an error. Returns the exit status; ffmpeg's log in *err,
 * valgrind's in *report. */
static int memcheck_balance_h264(const char *dir, const char *device, char **err, char **report)
{
    char *report_path = g_build_filename(dir, "memcheck.log", NULL);
    char *unstripped = g_build_filename(g_getenv("FFMPEG_PREFIX"), "build", "ffmpeg_g", NULL);
    char *valgrind = g_find_program_in_path("valgrind");
    GPtrArray *argv;
    int status;

    if (!valgrind)
        gpb_test_skip("valgrind is not installed");
    argv =
        args("--leak-check=full", "--errors-for-leak-kinds=definite", "--error-exitcode=99", "--num-callers=30", NULL);
    g_ptr_array_insert(argv, 0, valgrind);
    g_ptr_array_add(argv, g_strdup_printf("--log-file=%s", report_path));
    g_ptr_array_add(argv, g_file_test(unstripped, G_FILE_TEST_IS_EXECUTABLE) ? g_strdup(unstripped) : tool("ffmpeg"));
    g_ptr_array_add(argv, g_strdup("-hide_banner"));
    g_ptr_array_add(argv, g_strdup("-nostdin"));
    g_ptr_array_add(argv, g_strdup("-f"));
    g_ptr_array_add(argv, g_strdup("lavfi"));
    g_ptr_array_add(argv, g_strdup("-i"));
    g_ptr_array_add(argv, g_strdup("testsrc2=size=128x96:rate=10:duration=0.3"));
    g_ptr_array_add(argv, g_strdup("-c:v"));
    g_ptr_array_add(argv, g_strdup("balance_h264"));
    if (device) {
        g_ptr_array_add(argv, g_strdup("-device"));
        g_ptr_array_add(argv, g_strdup(device));
    }
    g_ptr_array_add(argv, g_strdup("-f"));
    g_ptr_array_add(argv, g_strdup("null"));
    g_ptr_array_add(argv, g_strdup("-"));
    status = run(argv, NULL, err);
    *report = file_text(report_path);
    g_test_message("%s", *report);
    g_free(report_path);
    g_free(unstripped);
    return status;
}

/* The wrapper on its software path, and falling back from a sim device
 * that refuses (its one session held by another ffmpeg), under memcheck:
 * no invalid read or write, nothing definitely lost, the process-wide
 * gpubalance context closed at exit. */
static void memcheck_finds_no_leak_or_bad_access_in_the_wrapper(void)
{
    const char *dir = gpb_test_env("[general]\ndiscover=false\norder=nvenc,software\n"
                                   "[device:gpu0]\nbackend=sim\nmax-sessions=3\nenforce-sessions=1\n");
    char *held_out = g_build_filename(dir, "held.mkv", NULL);
    char *err = NULL, *report = NULL;
    Encoder held;

    g_assert_cmpint(memcheck_balance_h264(dir, "software", &err, &report), ==, 0);
    gpb_assert_contains(err, "selected software (libx264)");
    gpb_assert_contains(report, "ERROR SUMMARY: 0 errors");
    g_clear_pointer(&err, g_free);
    g_clear_pointer(&report, g_free);

    start_encoder(&held, held_out, NULL);
    g_assert_cmpstr(held.selected, ==, "sim:gpu0 (libx264)");
    g_assert_cmpint(memcheck_balance_h264(dir, NULL, &err, &report), ==, 0);
    gpb_assert_contains(err, "sim:gpu0 (libx264) failed");
    gpb_assert_contains(err, "selected software (libx264)");
    gpb_assert_contains(report, "ERROR SUMMARY: 0 errors");
    g_assert_cmpint(finish_encoder(&held), ==, 0);
    g_free(err);
    g_free(report);
    g_free(held_out);
}

/* ---- on the stand-in NVIDIA stack (tests/standins) -------------------------- */

/* A test directory whose gpubalance discovers the stand-in GPUs: the
 * stand-in libcuda/libnvidia-encode/libnvidia-ml come first on the library
 * path of every ffmpeg started from here (for libgpubalance's discovery
 * and for FFmpeg's own nvenc), and their session directory is the test's. */
static const char *standin_nvidia(const char *config_text, const char *gpus, const char *driver)
{
    const char *standins = g_getenv("GPB_STANDIN_DIR");
    const char *dir;
    char *state, *path;

    if (!standins)
        gpb_test_skip("the stand-in NVIDIA stack is not built (x264/x265 development files missing)");
    dir = gpb_test_env(config_text);
    state = g_build_filename(dir, "standin-sessions", NULL);
    path = g_strjoin(":", standins, g_getenv("LD_LIBRARY_PATH"), NULL);
    g_setenv("GPB_STANDIN_STATE", state, TRUE);
    g_setenv("LD_LIBRARY_PATH", path, TRUE);
    g_setenv("GPUBALANCE_NVIDIA_ROOT", g_getenv("GPB_STANDIN_NVIDIA_ROOT"), TRUE);
    if (gpus)
        g_setenv("GPB_STANDIN_GPUS", gpus, TRUE);
    if (driver)
        g_setenv("GPB_STANDIN_DRIVER", driver, TRUE);
    g_free(state);
    g_free(path);
    return dir;
}

/* The stand-in NVENC speaks API 11.1 (Debian 12's nv-codec-headers); an
 * FFmpeg built against a newer API refuses it as it would refuse an old
 * driver, and one built without nvenc has no h264_nvenc: both skip. */
static void require_nvenc_api_of_the_standin(void)
{
    const char *probe_nvenc[] = {"-c:v", "h264_nvenc", "-frames:v", "1", "-f", "null", NULL};
    char *err = NULL;

    if (encode_testsrc("-", probe_nvenc, &err) != 0) {
        if (strstr(err, "required nvenc API version"))
            gpb_test_skip("this FFmpeg needs a newer NVENC API than the stand-in's 11.1");
        if (strstr(err, "Unknown encoder"))
            gpb_test_skip("this FFmpeg is built without h264_nvenc");
        g_error("plain h264_nvenc on the stand-in failed:\n%s", err);
    }
    g_free(err);
}

/* balance_ENCODER with options on the stand-in GPUs: it selects what
 * selected says, the stand-in NVENC logs its session on the GPU logged
 * names ("encode NVML-INDEX CODEC NAME"), and the stream decodes. */
static void encodes_on_the_standin(const char *gpus, const char *const *options, const char *selected,
                                   const char *logged, const char *codec)
{
    const char *dir = standin_nvidia("[general]\ndiscover=true\n", gpus, NULL);
    char *log = g_build_filename(dir, "encodes.log", NULL);
    char *out = g_build_filename(dir, "nvenc.mkv", NULL);
    char *want = g_strdup_printf("%s,320,240,60", codec);
    char *err = NULL, *info, *text;

    require_nvenc_api_of_the_standin();
    g_setenv("GPB_STANDIN_LOG", log, TRUE);
    g_assert_cmpint(encode_testsrc(out, options, &err), ==, 0);
    gpb_assert_contains(err, selected);
    text = file_text(log);
    g_assert_cmpstr(text, ==, logged);
    info = probe(out);
    g_assert_cmpstr(info, ==, want);
    g_free(info);
    g_free(text);
    g_free(want);
    g_free(err);
    g_free(log);
    g_free(out);
}

/* Placed by gpubalance on the stand-in NVENC (one datacenter GPU), the
 * wrapper runs FFmpeg's own h264_nvenc there. */
static void balance_h264_placed_on_the_standin_nvenc_encodes_there(void)
{
    const char *h264[] = {"-c:v", "balance_h264", NULL};

    encodes_on_the_standin(NULL, h264, "selected nvenc:0 (h264_nvenc)", "encode 0 h264 Stand-in datacenter GPU\n",
                           "h264");
}

/* Forced onto nvenc:0 of two GPUs (CUDA ordinal 0, which the stand-in's
 * NVML lists second), hevc_nvenc opens on that GPU: the lease's ordinal
 * reaches the child's -gpu. */
static void balance_hevc_on_nvenc_0_runs_on_the_gpu_of_that_cuda_ordinal(void)
{
    const char *hevc[] = {"-c:v", "balance_hevc", "-device", "nvenc:0", NULL};

    encodes_on_the_standin("Stand-in GeForce A,geforce,h264+hevc;Stand-in L4,datacenter,h264+hevc", hevc,
                           "selected nvenc:0 (hevc_nvenc)", "encode 1 hevc Stand-in L4\n", "hevc");
}

/* Filling NVENC first: the driver caps this GeForce at 3 sessions while gpubalance expects 5
 * from the driver version (a driver that changed its cap). Three
 * balance_h264 processes hold NVENC sessions; the 4th is refused by the
 * driver with its real error, falls back to software, and gpubalance
 * learns the GeForce pool's cap from the refusal. */
static void fourth_balance_h264_on_a_full_standin_geforce_falls_back_and_learns_the_cap(void)
{
    const char *dir = standin_nvidia("[general]\ndiscover=true\norder=nvenc,software\npolicy=fill\nlearn-expiry=60\n",
                                     "Stand-in GeForce A,geforce,h264+hevc", "535.104.05");
    Encoder held[3], fourth;
    gpubalance_context *ctx;
    char *outs[4];

    g_setenv("GPB_STANDIN_GEFORCE_CAP", "3", TRUE);
    /* three 320x240 streams use a small part of a real encoder: what NVML
     * reports must not make the GPU look full before the driver refuses */
    g_setenv("GPB_STANDIN_BUSY_PERCENT", "10", TRUE);
    require_nvenc_api_of_the_standin();
    for (int i = 0; i < 4; i++)
        outs[i] = g_strdup_printf("%s/geforce%d.mkv", dir, i);
    for (int i = 0; i < 3; i++) {
        start_encoder(&held[i], outs[i], NULL);
        if (strcmp(held[i].selected, "nvenc:0 (h264_nvenc)") != 0)
            g_error("encoder %d selected %s, not nvenc:0 (h264_nvenc):\n%s", i, held[i].selected, held[i].log->str);
    }
    start_encoder(&fourth, outs[3], NULL);
    g_assert_cmpstr(fourth.selected, ==, "software (libx264)");
    gpb_assert_contains(fourth.log->str, "OpenEncodeSessionEx failed: out of memory (10)");
    gpb_assert_contains(fourth.log->str, "nvenc:0 (h264_nvenc) failed");
    ctx = gpb_test_open();
    g_assert_cmpint(gpb_test_pool_learned_limit(ctx, "geforce"), ==, 3);
    g_assert_cmpint(finish_encoder(&fourth), ==, 0);
    for (int i = 0; i < 3; i++)
        g_assert_cmpint(finish_encoder(&held[i]), ==, 0);
    for (int i = 0; i < 4; i++) {
        char *info = probe(outs[i]);

        g_assert_true(g_str_has_prefix(info, "h264,320,240,"));
        g_free(info);
        g_free(outs[i]);
    }
    gpubalance_context_close(ctx);
}

/* Placed by gpubalance on the stand-in render node (the stand-in VA-API
 * driver behind a regular file the stand-in libdrm answer takes for a
 * node, found through GPUBALANCE_DRI_ROOT, which test builds read), the
 * wrapper uploads to VA surfaces and runs FFmpeg's own h264_vaapi. An
 * elementary stream: the stand-in writes no packed headers, so there is
 * no extradata for a container's global header. */
static void balance_h264_placed_on_the_standin_render_node_encodes_with_h264_vaapi(void)
{
    const char *dir = standin_nvidia("[general]\ndiscover=true\norder=vaapi,software\n", NULL, NULL);
    /* nv12: the stand-in driver's only image format (a real driver's
     * list decides whether yuv420p uploads too; the wrapper says when not) */
    const char *h264[] = {"-pix_fmt", "nv12", "-c:v", "balance_h264", NULL};
    char *dri = g_build_filename(dir, "dri", NULL), *node = g_build_filename(dri, "renderD128", NULL);
    char *out = g_build_filename(dir, "vaapi.h264", NULL), *err = NULL, *info;

    g_assert_cmpint(g_mkdir(dri, 0700), ==, 0);
    g_assert_true(g_file_set_contents(node, "", 0, NULL));
    g_setenv("GPUBALANCE_DRI_ROOT", dri, TRUE);
    g_setenv("LIBVA_DRIVER_NAME", "standin", TRUE);
    g_setenv("LIBVA_DRIVERS_PATH", g_getenv("GPB_STANDIN_DIR"), TRUE);
    g_setenv("LD_PRELOAD", g_getenv("GPB_STANDIN_DRM_SHIM"), TRUE);
    if (encode_testsrc(out, h264, &err) != 0)
        g_error("balance_h264 on the stand-in node failed:\n%s", err);
    gpb_assert_contains(err, "selected vaapi:renderD128 (h264_vaapi)");
    info = probe(out);
    g_assert_cmpstr(info, ==, "h264,320,240,60");
    g_free(info);
    g_free(err);
    g_free(out);
    g_free(node);
    g_free(dri);
}

static const gpb_test_case cases[] = {
    {"encodes_to_mp4_and_mkv_that_ffprobe_decodes", encodes_to_mp4_and_mkv_that_ffprobe_decodes},
    {"generic_options_reach_libx264", generic_options_reach_libx264},
    {"quality_options_reach_libx264", quality_options_reach_libx264},
    {"thread_count_is_libx264s_own", thread_count_is_libx264s_own},
    {"child_opts_reach_libx264_and_cbr_holds_its_rate", child_opts_reach_libx264_and_cbr_holds_its_rate},
    {"option_the_child_ignores_is_a_warning", option_the_child_ignores_is_a_warning},
    {"hevc_takes_nv12_and_ten_bit_422", hevc_takes_nv12_and_ten_bit_422},
    {"av1_encodes_with_libsvtav1_and_decodes", av1_encodes_with_libsvtav1_and_decodes},
    {"hls_and_mpegts_outputs_decode", hls_and_mpegts_outputs_decode},
    {"six_processes_place_three_on_sim_and_three_on_software", six_processes_place_three_on_sim_and_three_on_software},
    {"enforce_sessions_refusal_falls_back_and_is_learned", enforce_sessions_refusal_falls_back_and_is_learned},
    {"killed_encoder_leaves_no_lease", killed_encoder_leaves_no_lease},
    {"bad_option_values_fail_clearly", bad_option_values_fail_clearly},
    {"memcheck_finds_no_leak_or_bad_access_in_the_wrapper", memcheck_finds_no_leak_or_bad_access_in_the_wrapper},
    {"balance_h264_placed_on_the_standin_nvenc_encodes_there", balance_h264_placed_on_the_standin_nvenc_encodes_there},
    {"balance_hevc_on_nvenc_0_runs_on_the_gpu_of_that_cuda_ordinal",
     balance_hevc_on_nvenc_0_runs_on_the_gpu_of_that_cuda_ordinal},
    {"fourth_balance_h264_on_a_full_standin_geforce_falls_back_and_learns_the_cap",
     fourth_balance_h264_on_a_full_standin_geforce_falls_back_and_learns_the_cap},
    {"balance_h264_placed_on_the_standin_render_node_encodes_with_h264_vaapi",
     balance_h264_placed_on_the_standin_render_node_encodes_with_h264_vaapi},
};

GPB_TEST_MAIN(cases)
