/* test_cli.c - the gpubalance command, run as a real process:
 * exec holds a lease exactly as long as CMD lives, status and pick print
 * the documented JSON, bad usage is a clear error. Also the pid-namespace
 * test, whose second process runs under unshare(1). */
#define _GNU_SOURCE
#include <json-glib/json-glib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

/* Two sims in a pool, gpu0 with room for one session; software last. */
/* clang-format off */
static const char sim_config[] = "[general]\n"
                                 "discover=false\n"
                                 "order=nvenc,software\n"
                                 GPB_TEST_POOL_OF_3
                                 GPB_TEST_POOLED_SIM("gpu0") "max-sessions=1\n"
                                 GPB_TEST_POOLED_SIM("gpu1");
/* clang-format on */

static JsonObject *parse_object(JsonParser *parser, const char *text)
{
    GError *error = NULL;

    if (!json_parser_load_from_data(parser, text, -1, &error))
        g_error("not JSON (%s): %s", error->message, text);
    g_assert_true(JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser)));
    return json_node_get_object(json_parser_get_root(parser));
}

/* Starts `gpubalance exec ... -- sh -c SCRIPT` with pipes to its stdin
 * and stdout. */
static GPid spawn_exec(const char *device, const char *script, int *in, int *out)
{
    const char *argv[] = {gpb_test_bin(), "exec",  "--codec", "h264",     "--width", "1280",    "--height",
                          "720",          "--fps", "50",      "--device", device,    "--label", "camera-7",
                          "--",           "sh",    "-c",      script,     NULL};
    GError *error = NULL;
    GPid pid;

    if (!g_spawn_async_with_pipes(NULL, (char **)argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &pid, in, out, NULL,
                                  &error))
        g_error("spawn: %s", error->message);
    return pid;
}

static int wait_exit(GPid pid)
{
    int status;

    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void exec_holds_the_lease_while_cmd_runs(void)
{
    int in, out;
    GPid pid;
    char *line;
    gpubalance_context *ctx;
    gpubalance_snapshot *snap;
    const gpubalance_lease_info *l;

    gpb_test_env(sim_config);
    pid = spawn_exec("sim:gpu0", "echo $GPUBALANCE_DEVICE $GPUBALANCE_BACKEND $GPUBALANCE_FFMPEG_ENCODER; read x", &in,
                     &out);
    line = gpb_read_line(out);
    g_assert_cmpstr(line, ==, "sim:gpu0 sim libx264");
    ctx = gpb_test_open();
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    g_assert_cmpuint(gpubalance_snapshot_n_leases(snap), ==, 1);
    l = gpubalance_snapshot_lease(snap, 0);
    g_assert_cmpstr(l->device, ==, "sim:gpu0");
    g_assert_cmpint(l->pid, ==, pid); /* exec keeps the pid: it is CMD's */
    g_assert_cmpstr(l->label, ==, "camera-7");
    g_assert_cmpint(l->state, ==, GPUBALANCE_LEASE_OPENED);
    g_assert_cmpfloat_with_epsilon(l->cost, 1280.0 * 720 * 50 / (1920.0 * 1080 * 30), 0.001);
    gpubalance_snapshot_free(snap);
    g_assert_cmpint(write(in, "\n", 1), ==, 1); /* let CMD finish */
    g_assert_cmpint(wait_exit(pid), ==, 0);
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0);
    gpubalance_context_close(ctx);
    g_free(line);
}

static void exec_lease_ends_when_cmd_is_killed(void)
{
    int in, out;
    GPid pid;
    char *line;
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *l = NULL;

    gpb_test_env(sim_config);
    pid = spawn_exec("sim:gpu0", "echo ready; read x", &in, &out);
    line = gpb_read_line(out);
    g_assert_cmpstr(line, ==, "ready");
    ctx = gpb_test_open();
    s = gpb_test_stream("h264", 1920, 1080, 30);
    gpubalance_stream_set_device(s, "sim:gpu0");
    gpubalance_stream_set_when_full(s, "fail");
    g_assert_cmpint(gpubalance_lease_acquire(ctx, s, &l), ==, GPUBALANCE_ERR_FULL);
    kill(pid, SIGKILL);
    g_assert_cmpint(wait_exit(pid), ==, 128 + SIGKILL);
    g_assert_cmpint(gpb_test_total_leases(ctx), ==, 0);
    g_assert_cmpint(gpubalance_lease_acquire(ctx, s, &l), ==, 0); /* the device is free again */
    gpubalance_lease_release(l);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
    g_free(line);
}

static void exec_passes_the_exit_status_through(void)
{
    const char *argv[] = {gpb_test_bin(), "exec", "-c", "h264", "-w",     "640", "--height",
                          "360",          "--",   "sh", "-c",   "exit 7", NULL};
    const char *missing[] = {gpb_test_bin(),     "exec", "-c", "h264", "-w", "640", "--height", "360", "--",
                             "/nonexistent/cmd", NULL};
    char *err = NULL;

    gpb_test_env(sim_config);
    g_assert_cmpint(gpb_test_run(argv, NULL, NULL), ==, 7);
    g_assert_cmpint(gpb_test_run(missing, NULL, &err), ==, 127);
    gpb_assert_contains(err, "cannot run /nonexistent/cmd");
    g_free(err);
}

static void exec_narrows_cuda_visible_devices(void)
{
    const char *argv[] = {gpb_test_bin(),
                          "exec",
                          "-c",
                          "hevc",
                          "-w",
                          "3840",
                          "--height",
                          "2160",
                          "--",
                          "sh",
                          "-c",
                          "echo $GPUBALANCE_DEVICE $CUDA_VISIBLE_DEVICES $GPUBALANCE_FFMPEG_ENCODER",
                          NULL};
    char *out = NULL;

    gpb_test_env("[general]\ndiscover=false\n[device:g]\nbackend=nvenc\ncuda-device=1\n");
    g_setenv("CUDA_VISIBLE_DEVICES", "4,5", TRUE);
    g_assert_cmpint(gpb_test_run(argv, &out, NULL), ==, 0);
    g_assert_cmpstr(out, ==, "nvenc:1 5 hevc_nvenc\n");
    g_unsetenv("CUDA_VISIBLE_DEVICES");
    g_free(out);
}

static void status_json_has_the_documented_fields(void)
{
    const char *argv[] = {gpb_test_bin(), "status", "--json", NULL};
    static const char *const device_fields[] = {
        "id",   "backend", "name", "codecs",        "sessions", "max_sessions", "foreign_sessions",
        "load", "budget",  "pool", "learned_limit", NULL};
    static const char *const lease_fields[] = {"device", "pid",   "codec", "width", "height", "fps",
                                               "cost",   "state", "label", "since", NULL};
    JsonParser *parser = json_parser_new();
    JsonObject *root, *dev, *lease, *pool;
    gpubalance_context *ctx;
    gpubalance_lease *l;
    char *out = NULL;

    gpb_test_env(sim_config);
    ctx = gpb_test_open();
    gpubalance_stream *s = gpb_test_stream("hevc", 1920, 1080, 60);

    gpubalance_stream_set_device(s, "sim:gpu0");
    l = gpb_test_acquire(ctx, s);
    gpubalance_stream_free(s);
    g_assert_cmpint(gpb_test_run(argv, &out, NULL), ==, 0);
    root = parse_object(parser, out);
    g_assert_cmpuint(json_array_get_length(json_object_get_array_member(root, "devices")), ==, 3);
    dev = json_array_get_object_element(json_object_get_array_member(root, "devices"), 0);
    for (int i = 0; device_fields[i]; i++)
        g_assert_true(json_object_has_member(dev, device_fields[i]));
    g_assert_cmpstr(json_object_get_string_member(dev, "id"), ==, "sim:gpu0");
    g_assert_cmpstr(json_object_get_string_member(dev, "backend"), ==, "sim");
    g_assert_cmpint(json_object_get_int_member(dev, "sessions"), ==, 1);
    g_assert_cmpint(json_object_get_int_member(dev, "max_sessions"), ==, 1);
    g_assert_cmpstr(json_object_get_string_member(dev, "pool"), ==, "geforce");
    g_assert_true(json_object_get_null_member(dev, "learned_limit"));
    pool = json_array_get_object_element(json_object_get_array_member(root, "pools"), 0);
    g_assert_cmpstr(json_object_get_string_member(pool, "name"), ==, "geforce");
    g_assert_cmpint(json_object_get_int_member(pool, "sessions"), ==, 1);
    g_assert_cmpint(json_object_get_int_member(pool, "max_sessions"), ==, 3);
    lease = json_array_get_object_element(json_object_get_array_member(root, "leases"), 0);
    for (int i = 0; lease_fields[i]; i++)
        g_assert_true(json_object_has_member(lease, lease_fields[i]));
    g_assert_cmpstr(json_object_get_string_member(lease, "codec"), ==, "hevc");
    g_assert_cmpint(json_object_get_int_member(lease, "pid"), ==, getpid());
    g_assert_cmpfloat(json_object_get_double_member(lease, "cost"), ==, 2.0);
    g_assert_cmpstr(json_object_get_string_member(lease, "state"), ==, "granted");
    gpubalance_lease_release(l);
    gpubalance_context_close(ctx);
    g_object_unref(parser);
    g_free(out);
}

static void pick_json_names_device_backend_and_reason(void)
{
    const char *argv[] = {gpb_test_bin(), "pick",     "--codec", "h264",   "--width",
                          "1920",         "--height", "1080",    "--json", NULL};
    JsonParser *parser = json_parser_new();
    JsonObject *root;
    char *out = NULL;

    gpb_test_env(sim_config);
    g_assert_cmpint(gpb_test_run(argv, &out, NULL), ==, 0);
    root = parse_object(parser, out);
    /* gpu0 (max-sessions=1) would be full after it; gpu1 has no limit */
    g_assert_cmpstr(json_object_get_string_member(root, "device"), ==, "sim:gpu1");
    g_assert_cmpstr(json_object_get_string_member(root, "backend"), ==, "sim");
    gpb_assert_contains(json_object_get_string_member(root, "reason"),
                        "balanced: device with room leaving the smallest spread of utilisation");
    g_object_unref(parser);
    g_free(out);
}

static void bad_usage_is_a_clear_error(void)
{
    /* the arguments after the command's path, and what stderr must say */
    static const struct {
        const char *args[10];
        const char *message;
    } cases[] = {
        {{"pick", "--codec", "h264"}, "--codec, --width and --height are required"},
        {{"pick", "--codec", "vp9", "--width", "64", "--height", "64"}, "--codec vp9: not one of h264, hevc, av1"},
        {{"pick", "-c", "h264", "-w", "64", "--height", "64", "--policy", "x"},
         "policy 'x' is not one of: balanced, fill"},
        {{"exec", "-c", "h264", "-w", "64", "--height", "64"}, "no command; write it after --"},
        {{"frobnicate"}, "unknown command 'frobnicate'"},
        {{"status", "--jsn"}, "--jsn"},
    };

    gpb_test_env(sim_config);
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        const char *argv[G_N_ELEMENTS(cases[i].args) + 2] = {gpb_test_bin()};
        char *err = NULL;

        for (size_t j = 0; cases[i].args[j]; j++)
            argv[j + 1] = cases[i].args[j];
        g_assert_cmpint(gpb_test_run(argv, NULL, &err), ==, 2);
        gpb_assert_contains(err, cases[i].message);
        g_free(err);
    }
}

static void damaged_ledger_message_reaches_the_user(void)
{
    const char *status[] = {gpb_test_bin(), "status", NULL};
    const char *reset[] = {gpb_test_bin(), "reset", NULL};
    char *path, *err = NULL;

    gpb_test_env(sim_config);
    gpubalance_context_close(gpb_test_open());
    path = gpb_test_ledger_path();
    g_assert_true(g_file_set_contents(path, "not a ledger at all", -1, NULL));
    g_assert_cmpint(gpb_test_run(status, NULL, &err), ==, 1);
    gpb_assert_contains(err, path);
    gpb_assert_contains(err, "run 'gpubalance reset'");
    g_assert_cmpint(gpb_test_run(reset, NULL, NULL), ==, 0);
    g_assert_cmpint(gpb_test_run(status, NULL, NULL), ==, 0);
    g_free(path);
    g_free(err);
}

/* ---- pid namespaces ----------------------------------------------------- */

/* Which unshare invocation works here: as root a new pid namespace alone,
 * otherwise inside a new user namespace. */
static const char *const *unshare_prefix(void)
{
    static const char *const plain[] = {"unshare", "--pid", "--fork", NULL};
    static const char *const user[] = {"unshare", "--user", "--map-root-user", "--pid", "--fork", NULL};
    const char *const *candidates[] = {plain, user};

    for (size_t i = 0; i < G_N_ELEMENTS(candidates); i++) {
        GPtrArray *argv = g_ptr_array_new();
        int status = -1;

        for (int j = 0; candidates[i][j]; j++)
            g_ptr_array_add(argv, (char *)candidates[i][j]);
        g_ptr_array_add(argv, "true");
        g_ptr_array_add(argv, NULL);
        g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL,
                     NULL, NULL, &status, NULL);
        g_ptr_array_free(argv, TRUE);
        if (status == 0)
            return candidates[i];
    }
    return NULL;
}

static void leases_exclude_each_other_across_pid_namespaces(void)
{
    const char *const *prefix = unshare_prefix();
    GPtrArray *argv;
    GError *error = NULL;
    GPid pid;
    int in, out;
    char *line;
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *l = NULL;
    gpubalance_snapshot *snap;
    struct stat own_ns;

    if (!prefix)
        gpb_test_skip("this machine forbids unshare --pid (no privilege and no user namespaces)");
    gpb_test_env("[general]\ndiscover=false\nwhen-full=fail\norder=nvenc\n"
                 "[device:gpu0]\nbackend=sim\nmax-sessions=1\n");
    argv = g_ptr_array_new();
    for (int j = 0; prefix[j]; j++)
        g_ptr_array_add(argv, (char *)prefix[j]);
    const char *rest[] = {gpb_test_bin(),    "exec", "-c", "h264", "-w", "1920", "--height", "1080", "--", "sh", "-c",
                          "echo $$; read x", NULL};
    for (int j = 0; rest[j]; j++)
        g_ptr_array_add(argv, (char *)rest[j]);
    g_ptr_array_add(argv, NULL);
    if (!g_spawn_async_with_pipes(NULL, (char **)argv->pdata, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD,
                                  NULL, NULL, &pid, &in, &out, NULL, &error))
        g_error("spawn unshare: %s", error->message);
    line = gpb_read_line(out);
    g_assert_cmpstr(line, ==, "1"); /* the holder is pid 1 of its own namespace */

    ctx = gpb_test_open();
    s = gpb_test_stream("h264", 1920, 1080, 30);
    g_assert_cmpint(gpubalance_lease_acquire(ctx, s, &l), ==, GPUBALANCE_ERR_FULL);
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    g_assert_cmpuint(gpubalance_snapshot_n_leases(snap), ==, 1);
    g_assert_cmpint(gpubalance_snapshot_lease(snap, 0)->pid, ==, 1);
    g_assert_cmpint(stat("/proc/self/ns/pid", &own_ns), ==, 0);
    g_assert_cmpuint(gpubalance_snapshot_lease(snap, 0)->pid_namespace, !=, own_ns.st_ino);
    gpubalance_snapshot_free(snap);

    g_assert_cmpint(write(in, "\n", 1), ==, 1);
    g_assert_cmpint(wait_exit(pid), ==, 0);
    g_assert_cmpint(gpubalance_lease_acquire(ctx, s, &l), ==, 0);
    gpubalance_lease_release(l);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
    g_ptr_array_free(argv, TRUE);
    g_free(line);
}

/* A label with escape sequences, a newline and bytes that are not UTF-8
 * (labels default to a program's name: anyone chooses them) is shown
 * escaped by status, and --json stays valid UTF-8 JSON. */
static void status_escapes_what_others_wrote(void)
{
    static const char evil[] = "\x1b[2J\x1b[31mEVIL\nsim:gpu0 pid 1 forged\xff\xfe\xc2\x9b\xe2\x80\xae";
    const char *text_argv[] = {gpb_test_bin(), "status", NULL};
    const char *json_argv[] = {gpb_test_bin(), "status", "--json", NULL};
    JsonParser *parser = json_parser_new();
    JsonObject *root, *lease;
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *l;
    char *out = NULL;

    gpb_test_env(sim_config);
    ctx = gpb_test_open();
    s = gpb_test_stream("h264", 1280, 720, 30);
    gpubalance_stream_set_label(s, evil);
    l = gpb_test_acquire(ctx, s);
    g_assert_cmpint(gpb_test_run(text_argv, &out, NULL), ==, 0);
    g_assert_null(strchr(out, '\x1b'));
    g_assert_null(strstr(out, "\nsim:gpu0 pid 1 forged"));
    gpb_assert_contains(out, "\\x1b[2J\\x1b[31mEVIL\\x0asim:gpu0 pid 1 forged\\xff\\xfe\\u{009b}\\u{202e}");
    g_assert_true(g_utf8_validate(out, -1, NULL));
    g_free(out);
    g_assert_cmpint(gpb_test_run(json_argv, &out, NULL), ==, 0);
    g_assert_true(g_utf8_validate(out, -1, NULL));
    root = parse_object(parser, out);
    lease = json_array_get_object_element(json_object_get_array_member(root, "leases"), 0);
    gpb_assert_contains(json_object_get_string_member(lease, "label"),
                        "\x1b[2J\x1b[31mEVIL\nsim:gpu0 pid 1 forged\xef\xbf\xbd");
    gpubalance_lease_release(l);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
    g_object_unref(parser);
    g_free(out);
}

/* status --json over more leases than one piece of output holds (they
 * are written out as they fill), with devices, codecs and labels that
 * repeat and change from lease to lease (text equal to the previous
 * lease's is kept rather than set again): every lease is listed once, in
 * the snapshot's order, with its own values. */
static void status_json_lists_many_leases_each_with_its_own_values(void)
{
    static const char config[] = "[general]\ndiscover=false\n[device:a]\nbackend=sim\n[device:b]\nbackend=sim\n";
    static const char *const labels[] = {"cam", "cam", "", "bad\xff", "bad\xff", "cam-2"};
    const char *argv[] = {gpb_test_bin(), "status", "--json", NULL};
    enum { N_LEASES = 400 };
    gpubalance_lease *held[N_LEASES];
    JsonParser *parser = json_parser_new();
    gpubalance_snapshot *snap;
    gpubalance_context *ctx;
    JsonArray *leases;
    char *out = NULL;

    gpb_test_env(config);
    ctx = gpb_test_open();
    for (int i = 0; i < N_LEASES; i++) {
        gpubalance_stream *s = gpb_test_stream(i % 7 < 4 ? "h264" : "hevc", 640, 360, 30);

        gpubalance_stream_set_device(s, i % 5 < 3 ? "sim:a" : "sim:b");
        gpubalance_stream_set_label(s, labels[i % G_N_ELEMENTS(labels)]);
        held[i] = gpb_test_acquire(ctx, s);
        gpubalance_stream_free(s);
    }
    g_assert_cmpint(gpb_test_run(argv, &out, NULL), ==, 0);
    g_assert_cmpuint(strlen(out), >, 64 * 1024);
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    leases = json_object_get_array_member(parse_object(parser, out), "leases");
    g_assert_cmpuint(json_array_get_length(leases), ==, N_LEASES);
    g_assert_cmpuint(gpubalance_snapshot_n_leases(snap), ==, N_LEASES);
    for (guint i = 0; i < N_LEASES; i++) {
        JsonObject *lease = json_array_get_object_element(leases, i);
        const gpubalance_lease_info *want = gpubalance_snapshot_lease(snap, i);
        gchar *label = g_utf8_make_valid(want->label, -1);

        g_assert_cmpstr(json_object_get_string_member(lease, "device"), ==, want->device);
        g_assert_cmpstr(json_object_get_string_member(lease, "codec"), ==, gpubalance_codec_name(want->codec));
        g_assert_cmpstr(json_object_get_string_member(lease, "label"), ==, label);
        g_assert_cmpstr(json_object_get_string_member(lease, "state"), ==, "granted");
        g_assert_cmpint(json_object_get_int_member(lease, "pid"), ==, getpid());
        g_free(label);
    }
    gpubalance_snapshot_free(snap);
    for (int i = 0; i < N_LEASES; i++)
        gpubalance_lease_release(held[i]);
    gpubalance_context_close(ctx);
    g_object_unref(parser);
    g_free(out);
}

/* A label longer than the ledger keeps is cut before a character that
 * does not fit whole, never inside it. */
static void long_labels_are_cut_between_characters(void)
{
    GString *label = g_string_new(NULL);
    gpubalance_context *ctx;
    gpubalance_snapshot *snap;
    gpubalance_stream *s;
    gpubalance_lease *l;
    const char *kept;

    while (label->len < 61)
        g_string_append_c(label, 'a');
    g_string_append(label, "\xc3\xa9\xe2\x82\xac"); /* 61 + 2 + 3 bytes: the euro sign does not fit */
    gpb_test_env(sim_config);
    ctx = gpb_test_open();
    s = gpb_test_stream("h264", 1280, 720, 30);
    gpubalance_stream_set_label(s, label->str);
    l = gpb_test_acquire(ctx, s);
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
    kept = gpubalance_snapshot_lease(snap, 0)->label;
    g_assert_true(g_utf8_validate(kept, -1, NULL));
    g_assert_cmpuint(strlen(kept), ==, 63);
    g_assert_true(g_str_has_suffix(kept, "a\xc3\xa9"));
    gpubalance_snapshot_free(snap);
    gpubalance_lease_release(l);
    gpubalance_stream_free(s);
    gpubalance_context_close(ctx);
    g_string_free(label, TRUE);
}

/* --label café works under a UTF-8 locale (and, as bytes, in any). */
static void a_utf8_label_is_accepted(void)
{
    const char *locales[] = {"C.UTF-8", "C"};

    for (size_t i = 0; i < G_N_ELEMENTS(locales); i++) {
        const char *argv[] = {
            gpb_test_bin(), "exec", "--codec", "h264", "--width",           "640", "--height", "480", "--label",
            "caf\xc3\xa9",  "--",   "sh",      "-c",   "echo held; read x", NULL};
        gchar **env;
        gpubalance_context *ctx;
        gpubalance_snapshot *snap;
        int in, out;
        GPid pid;
        char *line;

        gpb_test_env(sim_config);
        env = g_environ_setenv(g_get_environ(), "LC_ALL", locales[i], TRUE);
        if (!g_spawn_async_with_pipes(NULL, (char **)argv, env, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &pid, &in, &out,
                                      NULL, NULL))
            g_error("cannot start gpubalance exec");
        line = gpb_read_line(out);
        g_assert_cmpstr(line, ==, "held");
        ctx = gpb_test_open();
        g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0);
        g_assert_cmpstr(gpubalance_snapshot_lease(snap, 0)->label, ==, "caf\xc3\xa9");
        gpubalance_snapshot_free(snap);
        g_assert_cmpint(write(in, "\n", 1), ==, 1);
        g_assert_cmpint(wait_exit(pid), ==, 0);
        gpubalance_context_close(ctx);
        close(in);
        close(out);
        g_free(line);
        g_strfreev(env);
    }
}

/* Output that cannot be written (a full disk) fails the command, naming
 * the cause, instead of leaving a cut-off file that looks whole. */
static void output_that_cannot_be_written_is_an_error(void)
{
    const char *commands[] = {"status --json", "status", "pick --codec h264 --width 640 --height 360"};

    if (access("/dev/full", W_OK) != 0) {
        g_test_skip("no /dev/full");
        return;
    }
    gpb_test_env(sim_config);
    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++) {
        gchar *script = g_strdup_printf("exec '%s' %s > /dev/full", gpb_test_bin(), commands[i]);
        const char *argv[] = {"sh", "-c", script, NULL};
        char *err = NULL;

        g_assert_cmpint(gpb_test_run(argv, NULL, &err), ==, 1);
        gpb_assert_contains(err, "cannot write the output: ");
        g_free(err);
        g_free(script);
    }
}

static const gpb_test_case cases[] = {
    GPB_TEST(exec_holds_the_lease_while_cmd_runs),
    GPB_TEST(exec_lease_ends_when_cmd_is_killed),
    GPB_TEST(exec_passes_the_exit_status_through),
    GPB_TEST(exec_narrows_cuda_visible_devices),
    GPB_TEST(status_json_has_the_documented_fields),
    GPB_TEST(pick_json_names_device_backend_and_reason),
    GPB_TEST(bad_usage_is_a_clear_error),
    GPB_TEST(damaged_ledger_message_reaches_the_user),
    GPB_TEST(leases_exclude_each_other_across_pid_namespaces),
    GPB_TEST(status_escapes_what_others_wrote),
    GPB_TEST(status_json_lists_many_leases_each_with_its_own_values),
    GPB_TEST(long_labels_are_cut_between_characters),
    GPB_TEST(a_utf8_label_is_accepted),
    GPB_TEST(output_that_cannot_be_written_is_an_error),
};

GPB_TEST_MAIN(cases)
