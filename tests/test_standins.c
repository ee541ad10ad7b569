/* test_standins.c - unmodified FFmpeg and GStreamer encoders, and
 * gpubalance's discovery, against the stand-in NVIDIA stack that encodes
 * for real (tests/standins, on LD_LIBRARY_PATH for every test here).
 *
 * Each test declares its GPUs (GPB_STANDIN_GPUS) and its own session
 * directory (GPB_STANDIN_STATE) in its own test directory, runs Debian's
 * ffmpeg, ffprobe, gst-launch-1.0 or the gpubalance command as child
 * processes, and asserts on what they print and what they wrote. A
 * session that must be open while something else runs is known to be open
 * because its encoder already returned bytes: no test sleeps. */
#define _GNU_SOURCE
#include <errno.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <poll.h>
#include <json-glib/json-glib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ffnvcodec/nvEncodeAPI.h>

#include "helpers.h"
#include "inventory.h"

#define WIDTH 320
#define HEIGHT 240
#define FRAME_BYTES (WIDTH * HEIGHT * 3 / 2)
#define SIZE_ARG "320x240"

static const char *test_dir;

/* A test directory, the session directory inside it, and the GPUs. */
static void standin_env(const char *gpus, const char *driver)
{
    char *state;

    test_dir = gpb_test_env("[general]\ndiscover=true\n");
    state = g_build_filename(test_dir, "standin-sessions", NULL);
    g_setenv("GPB_STANDIN_STATE", state, TRUE);
    g_free(state);
    if (gpus)
        g_setenv("GPB_STANDIN_GPUS", gpus, TRUE);
    else
        g_unsetenv("GPB_STANDIN_GPUS");
    if (driver)
        g_setenv("GPB_STANDIN_DRIVER", driver, TRUE);
    else
        g_unsetenv("GPB_STANDIN_DRIVER");
}

static char *in_test_dir(const char *name)
{
    return g_build_filename(test_dir, name, NULL);
}

static void require_program(const char *name)
{
    char *path = g_find_program_in_path(name);

    if (!path)
        gpb_test_skip("%s is not installed", name);
    g_free(path);
}

/* Runs argv to the end; returns its exit status, stderr in *err. */
static int run(const char *const *argv, char **out, char **err)
{
    GError *error = NULL;
    int wait_status = 0;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, out, err, &wait_status, &error))
        g_error("cannot run %s: %s", argv[0], error->message);
    return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
}

static int run_ffmpeg_encode(const char *encoder, const char *gpu, const char *output, char **err)
{
    const char *argv[] = {
        "ffmpeg",    "-nostdin", "-hide_banner", "-f",      "lavfi", "-i",    "testsrc=size=" SIZE_ARG ":rate=25",
        "-frames:v", "12",       "-pix_fmt",     "yuv420p", "-c:v",  encoder, "-gpu",
        gpu,         "-y",       output,         NULL};

    return run(argv, NULL, err);
}

/* The stand-in NVENC serves the API of this host's nv-codec-headers (11.1
 * on Debian 12, 12.1 on Debian 13), which is what the release's own
 * ffmpeg was built against. An ffmpeg built against newer headers than the
 * host has refuses it as it would refuse an old driver: those tests skip,
 * saying so. */
static void require_ffmpeg_nvenc_api_of_the_standin(void)
{
    const char *argv[] = {"ffmpeg",
                          "-nostdin",
                          "-hide_banner",
                          "-f",
                          "lavfi",
                          "-i",
                          "testsrc=size=" SIZE_ARG,
                          "-frames:v",
                          "1",
                          "-pix_fmt",
                          "yuv420p",
                          "-c:v",
                          "h264_nvenc",
                          "-f",
                          "null",
                          "-",
                          NULL};
    char *err = NULL;

    require_program("ffmpeg");
    if (run(argv, NULL, &err) != 0 && strstr(err, "required nvenc API version"))
        gpb_test_skip("this ffmpeg needs a newer NVENC API than the stand-in's %d.%d (this host's nv-codec-headers)",
                      NVENCAPI_MAJOR_VERSION, NVENCAPI_MINOR_VERSION);
    g_free(err);
}

/* The codec and the number of frames a decoder reads from path. */
static void assert_decodes(const char *path, const char *codec, int frames)
{
    const char *argv[] = {"ffprobe",
                          "-v",
                          "error",
                          "-count_frames",
                          "-select_streams",
                          "v:0",
                          "-show_entries",
                          "stream=codec_name,nb_read_frames",
                          "-of",
                          "default=noprint_wrappers=1",
                          path,
                          NULL};
    char *out = NULL, *err = NULL;
    char *want_codec = g_strdup_printf("codec_name=%s\n", codec);
    char *want_frames = g_strdup_printf("nb_read_frames=%d\n", frames);

    g_assert_cmpint(run(argv, &out, &err), ==, 0);
    gpb_assert_contains(out, want_codec);
    gpb_assert_contains(out, want_frames);
    g_free(want_codec);
    g_free(want_frames);
    g_free(out);
    g_free(err);
}

static void plain_ffmpeg_encodes_and_decodes(const char *encoder, const char *codec)
{
    char *output, *err = NULL;
    int rc;

    require_program("ffmpeg");
    require_program("ffprobe");
    standin_env(NULL, NULL);
    require_ffmpeg_nvenc_api_of_the_standin();
    output = in_test_dir("out.mp4");
    rc = run_ffmpeg_encode(encoder, "0", output, &err);
    if (rc != 0)
        g_error("ffmpeg -c:v %s failed (%d):\n%s", encoder, rc, err);
    assert_decodes(output, codec, 12);
    g_free(output);
    g_free(err);
}

static void plain_ffmpeg_h264_nvenc_encodes_decodable_h264(void)
{
    plain_ffmpeg_encodes_and_decodes("h264_nvenc", "h264");
}

static void plain_ffmpeg_hevc_nvenc_encodes_decodable_hevc(void)
{
    plain_ffmpeg_encodes_and_decodes("hevc_nvenc", "hevc");
}

/* ---- encoders that stay open ---------------------------------------------- */

/* A plain ffmpeg encoding raw frames from its stdin to H.264 on its
 * stdout, one packet flushed per frame. */
typedef struct {
    GPid pid;
    int in, out;
    size_t partial; /* bytes of a frame written so far */
} live_encoder;

static live_encoder start_live_encoder(const char *gpu)
{
    const char *argv[] = {"ffmpeg",
                          "-hide_banner",
                          "-loglevel",
                          "error",
                          "-f",
                          "rawvideo",
                          "-pix_fmt",
                          "yuv420p",
                          "-s",
                          SIZE_ARG,
                          "-r",
                          "25",
                          "-i",
                          "pipe:0",
                          "-c:v",
                          "h264_nvenc",
                          "-gpu",
                          gpu,
                          "-flush_packets",
                          "1",
                          "-f",
                          "h264",
                          "pipe:1",
                          NULL};
    live_encoder e = {0};
    GError *error = NULL;

    if (!g_spawn_async_with_pipes(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD, NULL,
                                  NULL, &e.pid, &e.in, &e.out, NULL, &error))
        g_error("cannot start ffmpeg: %s", error->message);
    return e;
}

/* Feeds frames until the first bytes of the encoding come out: then the
 * encoder's NVENC session is open. FFmpeg's nvenc holds packets back
 * until a few frames are in flight, so it takes as many frames as it
 * reads; poll() tells which side can move. */
static void wait_until_encoding(live_encoder *e)
{
    static guint8 frame[FRAME_BYTES];
    guint8 start[4];
    size_t got = 0, written = e->partial;

    memset(frame, 0x80, sizeof(frame));
    g_assert_true(g_unix_set_fd_nonblocking(e->in, TRUE, NULL));
    while (got < sizeof(start)) {
        struct pollfd fds[] = {{.fd = e->out, .events = POLLIN}, {.fd = e->in, .events = POLLOUT}};

        g_assert_cmpint(poll(fds, 2, -1), >, 0);
        if (fds[0].revents) {
            gssize n = read(e->out, start + got, sizeof(start) - got);

            if (n <= 0)
                g_error("ffmpeg ended before encoding its first frame");
            got += (size_t)n;
        } else if (fds[1].revents & POLLOUT) {
            gssize n = write(e->in, frame + written, sizeof(frame) - written);

            if (n < 0 && errno != EAGAIN)
                g_error("ffmpeg stopped reading: %s", g_strerror(errno));
            written = n > 0 ? (written + (size_t)n) % sizeof(frame) : written;
        } else {
            g_error("ffmpeg closed its input before encoding");
        }
    }
    g_assert_cmpmem(start, 4, "\0\0\0\1", 4); /* an Annex B start code */
    g_assert_true(g_unix_set_fd_nonblocking(e->in, FALSE, NULL));
    e->partial = written;
}

/* Closes its input: it drains and exits; returns its exit status. */
static int finish_live_encoder(live_encoder *e)
{
    char buf[4096];
    int wait_status;

    static const guint8 grey[FRAME_BYTES];

    /* Whole frames only: the rest of the one begun, blocking (its output
     * is small enough for the pipe). */
    if (e->partial)
        g_assert_cmpint(write(e->in, grey, sizeof(grey) - e->partial), ==, (gssize)(sizeof(grey) - e->partial));
    close(e->in);
    while (read(e->out, buf, sizeof(buf)) > 0)
        ;
    close(e->out);
    g_assert_cmpint(waitpid(e->pid, &wait_status, 0), ==, e->pid);
    g_spawn_close_pid(e->pid);
    return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
}

/* Driver 525 caps GeForce at 3 sessions per system: the 4th is refused
 * with the error the real driver returns, as FFmpeg prints it; once the
 * three end, a session opens again. */
static void fourth_geforce_session_is_refused_with_the_drivers_error(void)
{
    live_encoder open_ones[3];
    char *output, *err = NULL;

    require_program("ffmpeg");
    standin_env("Stand-in GeForce RTX,geforce,h264+hevc", "525.147.05");
    require_ffmpeg_nvenc_api_of_the_standin();
    for (int i = 0; i < 3; i++) {
        open_ones[i] = start_live_encoder("0");
        wait_until_encoding(&open_ones[i]);
    }
    output = in_test_dir("fourth.mp4");
    g_assert_cmpint(run_ffmpeg_encode("h264_nvenc", "0", output, &err), !=, 0);
    gpb_assert_contains(err, "OpenEncodeSessionEx failed: out of memory (10)");
    for (int i = 0; i < 3; i++)
        g_assert_cmpint(finish_live_encoder(&open_ones[i]), ==, 0);
    g_free(err);
    err = NULL;
    g_assert_cmpint(run_ffmpeg_encode("h264_nvenc", "0", output, &err), ==, 0);
    assert_decodes(output, "h264", 12);
    g_free(output);
    g_free(err);
}

/* ---- gpubalance against the stand-ins -------------------------------------- */

static JsonNode *status_json(void)
{
    const char *argv[] = {g_getenv("GPUBALANCE_BIN"), "status", "--json", NULL};
    char *out = NULL, *err = NULL;
    JsonNode *root;
    GError *error = NULL;

    if (run(argv, &out, &err) != 0)
        g_error("gpubalance status failed:\n%s", err);
    root = json_from_string(out, &error);
    g_assert_no_error(error);
    g_free(out);
    g_free(err);
    return root;
}

/* A placement, which refreshes every device's foreign load from its
 * driver (the first refresh of this ledger: never skipped as recent). */
static void pick(void)
{
    const char *argv[] = {
        g_getenv("GPUBALANCE_BIN"), "pick", "--codec", "h264", "--width", "320", "--height", "240", NULL};
    char *out = NULL, *err = NULL;

    if (run(argv, &out, &err) != 0)
        g_error("gpubalance pick failed:\n%s%s", out, err);
    g_free(out);
    g_free(err);
}

/* The device of that name in `gpubalance status --json`. */
static JsonObject *device_named(JsonNode *status, const char *name)
{
    JsonArray *devices = json_object_get_array_member(json_node_get_object(status), "devices");

    for (guint i = 0; i < json_array_get_length(devices); i++) {
        JsonObject *d = json_array_get_object_element(devices, i);

        if (json_object_has_member(d, "name") && !json_object_get_null_member(d, "name") &&
            g_strcmp0(json_object_get_string_member(d, "name"), name) == 0)
            return d;
    }
    g_error("no device named \"%s\" in gpubalance status", name);
}

/* A GPU declared without NVENC: FFmpeg hears the driver's refusal, and
 * gpubalance never offers it, while the GPU beside it is offered. */
static void gpu_without_nvenc_refuses_and_is_never_offered(void)
{
    char *output, *err = NULL;
    JsonNode *status;

    require_program("ffmpeg");
    standin_env("Stand-in GeForce RTX,geforce,h264+hevc;Stand-in H100,datacenter,none", NULL);
    require_ffmpeg_nvenc_api_of_the_standin();
    output = in_test_dir("out.mp4");
    /* CUDA lists the GPUs in reverse: ordinal 0 is the H100. */
    g_assert_cmpint(run_ffmpeg_encode("h264_nvenc", "0", output, &err), !=, 0);
    gpb_assert_contains(err, "OpenEncodeSessionEx failed: unsupported device (2)");
    status = status_json();
    g_assert_false(json_object_get_boolean_member(device_named(status, "Stand-in H100"), "offered"));
    g_assert_true(json_object_get_boolean_member(device_named(status, "Stand-in GeForce RTX"), "offered"));
    g_assert_cmpint(json_object_get_int_member(device_named(status, "Stand-in GeForce RTX"), "cuda_ordinal"), ==, 1);
    json_node_unref(status);
    g_free(output);
    g_free(err);
}

/* A plain ffmpeg started outside gpubalance holds an NVENC session: NVML
 * counts it, and gpubalance shows it as foreign load on that GPU. */
static void plain_ffmpeg_session_shows_as_foreign_in_status(void)
{
    live_encoder outside;
    JsonNode *status;
    JsonObject *gpu;

    require_program("ffmpeg");
    standin_env("Stand-in GeForce RTX,geforce,h264+hevc;Stand-in L4,datacenter,h264+hevc", NULL);
    require_ffmpeg_nvenc_api_of_the_standin();
    status = status_json();
    g_assert_cmpint(json_object_get_int_member(device_named(status, "Stand-in L4"), "foreign_sessions"), ==, 0);
    json_node_unref(status);
    outside = start_live_encoder("0"); /* CUDA ordinal 0: the L4, NVML index 1 */
    wait_until_encoding(&outside);
    pick(); /* foreign load is read from NVML when placing, not by status */
    status = status_json();
    gpu = device_named(status, "Stand-in L4");
    g_assert_cmpint(json_object_get_int_member(gpu, "foreign_sessions"), ==, 1);
    g_assert_cmpint(json_object_get_int_member(gpu, "sessions"), ==, 0);
    g_assert_cmpint(json_object_get_int_member(device_named(status, "Stand-in GeForce RTX"), "foreign_sessions"), ==,
                    0);
    json_node_unref(status);
    g_assert_cmpint(finish_live_encoder(&outside), ==, 0);
}

/* ---- GStreamer's nvcodec ---------------------------------------------------- */

/* A private registry: nvcodec registers its NVENC elements at plugin scan
 * from what the stand-ins answer. */
static void gst_env(void)
{
    char *registry = in_test_dir("gst-registry.bin");

    g_setenv("GST_REGISTRY", registry, TRUE);
    g_setenv("GST_REGISTRY_FORK", "no", TRUE);
    g_free(registry);
}

/* GStreamer's nvcodec registers its encoders only where it can open a
 * session at the plugin scan, at the NVENC API of the stand-in (that of
 * the nv-codec-headers it was built with: 11.1 on Debian 12, 12.1 on
 * Debian 13). A missing element is a failure. */
static void require_nvcodec_element(const char *element, const char *inspect_output)
{
    if (!strstr(inspect_output, element))
        g_error("GStreamer's nvcodec registered no %s against the stand-in NVENC:\n%s", element, inspect_output);
}

/* The first of "a|b" in gst-inspect-1.0's listing (newly allocated). */
static char *first_nvcodec_element(const char *choices, const char *inspect_output)
{
    char **names = g_strsplit(choices, "|", -1), *found = NULL;
    char *line_name;

    for (char **n = names; *n && !found; n++) {
        line_name = g_strdup_printf("  %s: ", *n); /* as a line of the listing names it */
        if (strstr(inspect_output, line_name))
            found = g_strdup(*n);
        g_free(line_name);
    }
    g_strfreev(names);
    if (!found)
        require_nvcodec_element(choices, inspect_output);
    return found;
}

/* gst-launch-1.0 -m encoding 12 NV12 frames through encoder (elements and
 * properties as gst-launch-1.0 reads them) into an MP4 at output; fails the
 * test if it fails. The bus messages (gpubalance-selected) come back in
 * *out. */
static void gst_launch_into_mp4(const char *encoder, const char *output, char **out)
{
    char *pipeline = g_strdup_printf("videotestsrc num-buffers=12 ! "
                                     "video/x-raw,format=NV12,width=320,height=240,framerate=25/1 ! %s ! mp4mux ! "
                                     "filesink location=%s",
                                     encoder, output);
    /* one argument a word: gst-launch-1.0 escapes the spaces inside one */
    char *command = g_strdup_printf("gst-launch-1.0 -m %s", pipeline);
    char **argv = g_strsplit(command, " ", -1);
    char *err = NULL;
    int rc;

    require_program("gst-launch-1.0");
    rc = run((const char *const *)argv, out, &err);
    g_strfreev(argv);
    g_free(command);
    if (rc != 0)
        g_error("gst-launch-1.0 %s failed (%d):\n%s%s", pipeline, rc, *out, err);
    g_free(pipeline);
    g_free(err);
}

/* elements: "a|b", the first that nvcodec registered. */
static void gst_nvcodec_encodes_and_decodes(const char *elements, const char *parser, const char *codec)
{
    char *output, *encoder, *element, *out = NULL;

    require_program("gst-launch-1.0");
    require_program("ffprobe");
    standin_env(NULL, NULL);
    gst_env();
    {
        const char *inspect[] = {"gst-inspect-1.0", "nvcodec", NULL};
        char *listing = NULL;

        run(inspect, &listing, NULL);
        element = first_nvcodec_element(elements, listing ? listing : "");
        g_free(listing);
    }
    output = in_test_dir("out.mp4");
    encoder = g_strdup_printf("%s ! %s", element, parser);
    gst_launch_into_mp4(encoder, output, &out);
    assert_decodes(output, codec, 12);
    g_free(encoder);
    g_free(element);
    g_free(output);
    g_free(out);
}

static void gstreamer_nvh264enc_encodes_decodable_h264(void)
{
    gst_nvcodec_encodes_and_decodes("nvh264enc", "h264parse", "h264");
}

/* The HEVC encoder of nvcodec's newer generation: nvcudah265enc on 1.22,
 * named nvh265enc from 1.24 on (the older one gone). */
static void gstreamer_nvcodec_hevc_encoder_encodes_decodable_hevc(void)
{
    gst_nvcodec_encodes_and_decodes("nvcudah265enc|nvh265enc", "h265parse", "hevc");
}

/* ---- gpubalanceenc with GStreamer's real nvcodec children ------------------------- */

/* A private registry with this build's plugin, scanned now: nvcodec
 * registers its NVENC elements at the scan only if it can open a session
 * on the GPU then (so a GeForce at its cap during the scan has none until
 * the registry is rebuilt, with the real driver as with the stand-in). */
static void scan_gst_registry(void)
{
    char *registry = in_test_dir("gst-registry.bin");
    const char *argv[] = {"gst-inspect-1.0", "nvcodec", NULL};
    char *out = NULL, *err = NULL;

    require_program("gst-inspect-1.0");
    g_setenv("GST_REGISTRY", registry, TRUE);
    g_setenv("GST_REGISTRY_FORK", "no", TRUE);
    g_setenv("GST_PLUGIN_PATH", g_getenv("GPB_GST_PLUGIN_DIR"), TRUE);
    g_assert_cmpint(run(argv, &out, &err), ==, 0);
    require_nvcodec_element("nvh264enc", out);
    g_free(registry);
    g_free(out);
    g_free(err);
}

/* gpubalanceenc (this build's plugin, in the registry scan_gst_registry()
 * made) with properties, into an MP4. */
static void run_gpubalanceenc(const char *properties, const char *output, char **out)
{
    char *encoder = g_strdup_printf("gpubalanceenc %s ! h264parse", properties);

    gst_launch_into_mp4(encoder, output, out);
    g_free(encoder);
}

/* Forced onto nvenc:1 (CUDA ordinal 1, which is NVML GPU 0 here), the
 * element runs nvcodec's encoder for that CUDA device, and the stand-in
 * saw the encode on that GPU. */
static void gpubalanceenc_runs_nvcodec_on_the_gpu_of_its_cuda_device_id(void)
{
    char *output, *out = NULL, *log, *text = NULL;

    if (!g_getenv("GPB_GST_PLUGIN_DIR"))
        gpb_test_skip("no gpubalanceenc element that gst-launch-1.0 can load (not built, or built with a sanitizer)");
    standin_env("Stand-in GeForce A,geforce,h264+hevc;Stand-in L4,datacenter,h264+hevc", NULL);
    log = in_test_dir("encodes.log");
    g_setenv("GPB_STANDIN_LOG", log, TRUE);
    output = in_test_dir("out.mp4");
    scan_gst_registry();
    run_gpubalanceenc("device=nvenc:1", output, &out);
    gpb_assert_contains(out, "backend=(string)nvenc, device=(string)nvenc:1");
    g_assert_true(g_file_get_contents(log, &text, NULL, NULL));
    g_assert_cmpstr(text, ==, "encode 0 h264 Stand-in GeForce A\n");
    assert_decodes(output, "h264", 12);
    g_free(text);
    g_free(log);
    g_free(out);
    g_free(output);
}

/* The pool the devices of the stand-in GeForce cards share, from
 * `gpubalance status --json`. */
static JsonObject *geforce_pool(JsonNode *status)
{
    JsonArray *pools = json_object_get_array_member(json_node_get_object(status), "pools");

    for (guint i = 0; i < json_array_get_length(pools); i++) {
        JsonObject *p = json_array_get_object_element(pools, i);

        if (g_strcmp0(json_object_get_string_member(p, "name"), "geforce") == 0)
            return p;
    }
    g_error("no geforce pool in gpubalance status");
}

/* The driver's cap is 3 while gpubalance expects 5 from the driver
 * version (a driver that changed its cap), and three plain ffmpeg sessions
 * hold the GeForce. gpubalance sees room and tries NVENC, but GStreamer's
 * nvcodec registers its encoders for a GPU in plugin_init by opening a
 * session there, so in a process that starts while the GPU is full there
 * is no nvcodec encoder for it. Its failure ("no such element") carries no
 * driver status, so the core asks NVENC itself, hears
 * NV_ENC_ERR_OUT_OF_MEMORY and learns the cap, 3, for the GeForce pool;
 * the element moves on to software without an error (attempt 2), and the
 * output decodes. */
static void gpubalanceenc_falls_back_to_software_when_the_geforce_is_full(void)
{
    live_encoder outside[3];
    char *output, *out = NULL;
    JsonNode *status;

    require_program("ffmpeg");
    if (!g_getenv("GPB_GST_PLUGIN_DIR"))
        gpb_test_skip("no gpubalanceenc element that gst-launch-1.0 can load (not built, or built with a sanitizer)");
    standin_env("Stand-in GeForce A,geforce,h264+hevc", "535.104.05");
    require_ffmpeg_nvenc_api_of_the_standin();
    g_setenv("GPB_STANDIN_GEFORCE_CAP", "3", TRUE);
    scan_gst_registry(); /* before the GPU is full */
    for (int i = 0; i < 3; i++) {
        outside[i] = start_live_encoder("0");
        wait_until_encoding(&outside[i]);
    }
    output = in_test_dir("out.mp4");
    run_gpubalanceenc("order=nvenc,software", output, &out);
    gpb_assert_contains(out, "backend=(string)software, device=(string)software, encoder=(string)x264enc, "
                             "attempt=(int)2");
    assert_decodes(output, "h264", 12);
    status = status_json();
    g_assert_cmpint(json_object_get_int_member(geforce_pool(status), "max_sessions"), ==, 5); /* 535's cap */
    g_assert_cmpint(json_object_get_int_member(geforce_pool(status), "learned_limit"), ==, 3);
    json_node_unref(status);
    for (int i = 0; i < 3; i++)
        g_assert_cmpint(finish_live_encoder(&outside[i]), ==, 0);
    g_free(out);
    g_free(output);
}

/* nvcodec's words for a session the driver refused: no status in them.
 * With the GeForce at its cap the core asks NVENC and classifies them as
 * the capacity refusal they are; with room, the same words are some other
 * failure. */
static void nvcodec_words_at_the_cap_are_classified_by_asking_nvenc(void)
{
    static const char nvcodec_words[] = "Could not initialize supporting library. -- Failed to open encoder session";
    live_encoder outside[3];
    gpubalance_context *ctx;
    gpubalance_stream *stream;
    gpubalance_lease *lease;
    char detail[200];

    require_program("ffmpeg");
    standin_env("Stand-in GeForce A,geforce,h264+hevc", "535.104.05");
    require_ffmpeg_nvenc_api_of_the_standin();
    g_setenv("GPB_STANDIN_GEFORCE_CAP", "3", TRUE);
    ctx = gpb_test_open();
    stream = gpb_test_stream("h264", WIDTH, HEIGHT, 25);
    g_assert_cmpint(gpubalance_stream_set_device(stream, "nvenc:0"), ==, 0);
    lease = gpb_test_acquire(ctx, stream);
    g_assert_cmpint(gpubalance_lease_classify_failure(lease, 0, nvcodec_words, detail, sizeof(detail)), ==,
                    GPUBALANCE_FAILURE_OTHER);
    gpb_assert_contains(detail, "NVENC opened");
    for (int i = 0; i < 3; i++) {
        outside[i] = start_live_encoder("0");
        wait_until_encoding(&outside[i]);
    }
    g_assert_cmpint(gpubalance_lease_classify_failure(lease, 0, nvcodec_words, detail, sizeof(detail)), ==,
                    GPUBALANCE_FAILURE_CAPACITY);
    gpb_assert_contains(detail, "NV_ENC_ERR_OUT_OF_MEMORY (10)");
    /* FFmpeg's message carries the status: nothing to ask */
    g_assert_cmpint(gpubalance_lease_classify_failure(lease, 0, "OpenEncodeSessionEx failed: out of memory (10)",
                                                      detail, sizeof(detail)),
                    ==, GPUBALANCE_FAILURE_CAPACITY);
    g_assert_cmpstr(detail, ==, "");
    for (int i = 0; i < 3; i++)
        g_assert_cmpint(finish_live_encoder(&outside[i]), ==, 0);
    gpubalance_lease_release(lease);
    gpubalance_stream_free(stream);
    gpubalance_context_close(ctx);
}

/* ---- the stand-in VA-API driver on a stand-in render node -------------------------- */

/* A directory in place of /dev/dri holding renderD128: a regular file
 * that the stand-in libdrm answer (drm_shim.c) takes for a render node.
 * This test binary carries that answer itself (linked in, exported);
 * ffmpeg children get it preloaded. */
static char *standin_render_node(void)
{
    char *dri = in_test_dir("dri");
    char *node = g_build_filename(dri, "renderD128", NULL);

    g_assert_cmpint(g_mkdir(dri, 0700), ==, 0);
    g_assert_true(g_file_set_contents(node, "", 0, NULL));
    g_free(dri);
    return node;
}

static void plain_ffmpeg_vaapi_encodes_and_decodes(const char *encoder, const char *codec)
{
    char *node, *output, *err = NULL;
    int rc;

    require_program("ffmpeg");
    require_program("ffprobe");
    standin_env(NULL, NULL);
    node = standin_render_node();
    /* An elementary stream: the stand-in writes no packed headers, so FFmpeg
     * has no extradata for a container's global header. */
    output = g_strdup_printf("%s/out.%s", test_dir, codec);
    g_setenv("LD_PRELOAD", g_getenv("GPB_STANDIN_DRM_SHIM"), TRUE); /* for the children */
    {
        const char *argv[] = {"ffmpeg",
                              "-nostdin",
                              "-hide_banner",
                              "-vaapi_device",
                              node,
                              "-f",
                              "lavfi",
                              "-i",
                              "testsrc=size=" SIZE_ARG ":rate=25",
                              "-frames:v",
                              "12",
                              "-vf",
                              "format=nv12,hwupload",
                              "-c:v",
                              encoder,
                              "-y",
                              output,
                              NULL};

        rc = run(argv, NULL, &err);
    }
    g_unsetenv("LD_PRELOAD");
    if (rc != 0)
        g_error("ffmpeg -c:v %s on the stand-in node failed (%d):\n%s", encoder, rc, err);
    assert_decodes(output, codec, 12);
    g_free(node);
    g_free(output);
    g_free(err);
}

static void plain_ffmpeg_h264_vaapi_encodes_decodable_h264(void)
{
    plain_ffmpeg_vaapi_encodes_and_decodes("h264_vaapi", "h264");
}

static void plain_ffmpeg_hevc_vaapi_encodes_decodable_hevc(void)
{
    plain_ffmpeg_vaapi_encodes_and_decodes("hevc_vaapi", "hevc");
}

/* gpubalance's discovery lists the stand-in node, offers H.264 and HEVC on
 * it and names it by the vendor string the stand-in driver declares. */
static void discovery_offers_the_standin_render_node_by_its_own_name(void)
{
    gpubalance_context *ctx;
    gpubalance_snapshot *snap;
    const gpubalance_device_info *node;
    char *path, *dri;

    standin_env("Stand-in L4,datacenter,h264+hevc", NULL);
    path = standin_render_node();
    dri = g_path_get_dirname(path);
    gpb_discovery_set_roots(dri, NULL);
    ctx = gpb_test_open();
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    node = gpb_test_device(snap, "vaapi:renderD128");
    g_assert_null(node->not_offered_why);
    g_assert_true(node->codecs & (1u << GPUBALANCE_CODEC_H264));
    g_assert_true(node->codecs & (1u << GPUBALANCE_CODEC_HEVC));
    gpb_assert_contains(node->name, "stand-in");
    gpubalance_snapshot_free(snap);
    gpubalance_context_close(ctx);
    g_free(dri);
    g_free(path);
}

/* ---- stand-ins are never presented as real GPUs -------------------------------- */

/* What only output captured on the stand-ins carries: their UUIDs. A
 * line of the documentation or the examples that shows one must say that
 * it is a stand-in. */
static void scan_for_standin_output(const char *path, int *offending)
{
    GDir *dir = g_dir_open(path, 0, NULL);
    const char *name;

    if (!dir) {
        gchar *text = NULL;

        if (g_file_get_contents(path, &text, NULL, NULL)) {
            gchar **lines = g_strsplit(text, "\n", -1);

            for (int i = 0; lines[i]; i++) {
                gchar *lower = g_ascii_strdown(lines[i], -1);

                if (strstr(lower, "gpu-5a4d0000") && !strstr(lower, "stand-in")) {
                    g_printerr("%s:%d shows a stand-in GPU without saying so: %s\n", path, i + 1, lines[i]);
                    (*offending)++;
                }
                g_free(lower);
            }
            g_strfreev(lines);
            g_free(text);
        }
        return;
    }
    while ((name = g_dir_read_name(dir))) {
        char *child = g_build_filename(path, name, NULL);

        scan_for_standin_output(child, offending);
        g_free(child);
    }
    g_dir_close(dir);
}

static void standins_are_never_labelled_real_gpus(void)
{
    const char *root = g_getenv("GPB_SOURCE_ROOT");
    const char *places[] = {"examples", "docs", "README.md"};
    int offending = 0;
    JsonNode *status;

    g_assert_nonnull(root);
    for (size_t i = 0; i < G_N_ELEMENTS(places); i++) {
        char *path = g_build_filename(root, places[i], NULL);

        scan_for_standin_output(path, &offending);
        g_free(path);
    }
    g_assert_cmpint(offending, ==, 0);
    /* And gpubalance reports a stand-in by the name it declares. */
    standin_env(NULL, NULL);
    status = status_json();
    g_assert_true(json_object_get_boolean_member(device_named(status, "Stand-in datacenter GPU"), "offered"));
    json_node_unref(status);
}

static const gpb_test_case cases[] = {
    GPB_TEST(plain_ffmpeg_h264_nvenc_encodes_decodable_h264),
    GPB_TEST(plain_ffmpeg_hevc_nvenc_encodes_decodable_hevc),
    GPB_TEST(fourth_geforce_session_is_refused_with_the_drivers_error),
    GPB_TEST(gpu_without_nvenc_refuses_and_is_never_offered),
    GPB_TEST(plain_ffmpeg_session_shows_as_foreign_in_status),
    GPB_TEST(gstreamer_nvh264enc_encodes_decodable_h264),
    GPB_TEST(gstreamer_nvcodec_hevc_encoder_encodes_decodable_hevc),
    GPB_TEST(gpubalanceenc_runs_nvcodec_on_the_gpu_of_its_cuda_device_id),
    GPB_TEST(gpubalanceenc_falls_back_to_software_when_the_geforce_is_full),
    GPB_TEST(nvcodec_words_at_the_cap_are_classified_by_asking_nvenc),
    GPB_TEST(plain_ffmpeg_h264_vaapi_encodes_decodable_h264),
    GPB_TEST(plain_ffmpeg_hevc_vaapi_encodes_decodable_hevc),
    GPB_TEST(discovery_offers_the_standin_render_node_by_its_own_name),
    GPB_TEST(standins_are_never_labelled_real_gpus),
};

GPB_TEST_MAIN(cases)
