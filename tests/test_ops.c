/* test_ops.c - what the people who run encode hosts use: `gpubalance
 * metrics` scraped by Debian's real prometheus-node-exporter, the event
 * log (through the log handler and `gpubalance log`), `status --watch` in
 * a real terminal (tmux), and the man pages against every command's
 * --help. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "internal.h"

/* Two sims in a pool, gpu0 with room for one session; software last. */
/* clang-format off */
static const char ops_config[] = "[general]\n"
                                 "discover=false\n"
                                 "order=nvenc,software\n"
                                 GPB_TEST_POOL_OF_3
                                 GPB_TEST_POOLED_SIM("gpu0") "max-sessions=1\n"
                                 "name=Sim \"quoted\" \\\\ card\n" /* "\\" in a key file: one backslash */
                                 GPB_TEST_POOLED_SIM("gpu1");
/* clang-format on */

static gpubalance_lease *acquire_on(gpubalance_context *ctx, const char *device, const char *label, int fps)
{
    gpubalance_stream *s = gpb_test_stream("h264", 1920, 1080, fps);
    gpubalance_lease *lease;

    if (device)
        gpubalance_stream_set_device(s, device);
    gpubalance_stream_set_label(s, label);
    lease = gpb_test_acquire(ctx, s);
    gpubalance_stream_free(s);
    return lease;
}

/* ---- metrics through node_exporter -------------------------------------- */

/* A loopback port nobody listens on now (the kernel's choice). */
static int free_port(void)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), ==, 0);
    g_assert_cmpint(getsockname(fd, (struct sockaddr *)&addr, &len), ==, 0);
    close(fd);
    return ntohs(addr.sin_port);
}

/* node_exporter ends with this test, however the test ends. */
static void die_with_parent(gpointer user_data)
{
    (void)user_data;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
}

/* One line from fd, NULL at end of file. */
static char *read_line_or_eof(int fd)
{
    GString *line = g_string_new(NULL);
    char c;
    ssize_t n;

    while ((n = read(fd, &c, 1)) == 1 && c != '\n')
        g_string_append_c(line, c);
    if (n != 1 && line->len == 0) {
        g_string_free(line, TRUE);
        return NULL;
    }
    return g_string_free(line, FALSE);
}

/* Starts node_exporter with only the textfile collector, and returns once
 * it logs that it listens (no polling, no sleeping: its own word). */
static GPid start_node_exporter(const char *exporter, const char *textfile_dir, int port)
{
    gchar *dir_arg = g_strdup_printf("--collector.textfile.directory=%s", textfile_dir);
    gchar *listen_arg = g_strdup_printf("--web.listen-address=127.0.0.1:%d", port);
    const char *argv[] = {exporter, "--collector.disable-defaults", "--collector.textfile", dir_arg, listen_arg, NULL};
    GError *error = NULL;
    GPid pid;
    int err_fd;
    char *line;
    gboolean listening = FALSE;

    if (!g_spawn_async_with_pipes(NULL, (char **)argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, die_with_parent, NULL, &pid,
                                  NULL, NULL, &err_fd, &error))
        g_error("spawn %s: %s", exporter, error->message);
    while (!listening && (line = read_line_or_eof(err_fd))) {
        g_printerr("node_exporter: %s\n", line);
        listening = strstr(line, "Listening on") != NULL;
        g_free(line);
    }
    if (!listening)
        g_error("node_exporter ended without listening (its log is above)");
    /* its later log lines go to a pipe nobody reads: it logs little */
    g_free(dir_arg);
    g_free(listen_arg);
    return pid;
}

/* GET /metrics over a plain socket (GIO's client would consult the proxy
 * settings, and libproxy does not run under AddressSanitizer). */
static char *http_get_metrics(int port)
{
    struct sockaddr_in addr = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    const char request[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    GString *body = g_string_new(NULL);
    char buf[8192];
    ssize_t n;

    g_assert_cmpint(fd, >=, 0);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
        g_error("connect to node_exporter: %s", g_strerror(errno));
    g_assert_cmpint(write(fd, request, strlen(request)), ==, (ssize_t)strlen(request));
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        g_string_append_len(body, buf, n);
    g_assert_cmpint(n, ==, 0);
    close(fd);
    gpb_assert_contains(body->str, "200 OK");
    return g_string_free(body, FALSE);
}

/* The value of the sample of metric whose labels contain match (NULL: a
 * sample without labels); fails the test when there is none. */
static double sample(const char *body, const char *metric, const char *match)
{
    gchar **lines = g_strsplit(body, "\n", -1);
    double value = 0;
    gboolean found = FALSE;

    for (int i = 0; lines[i] && !found; i++) {
        const char *l = lines[i];

        if (!g_str_has_prefix(l, metric))
            continue;
        if (match ? (l[strlen(metric)] != '{' || !strstr(l, match)) : l[strlen(metric)] != ' ')
            continue;
        value = g_ascii_strtod(strrchr(l, ' ') + 1, NULL);
        found = TRUE;
    }
    if (!found)
        g_error("no sample %s{%s} in:\n%s\n(no sample %s{%s} above)", metric, match ? match : "", body, metric,
                match ? match : "");
    g_strfreev(lines);
    return value;
}

static gboolean has_sample(const char *body, const char *metric, const char *match)
{
    gchar *needle = g_strdup_printf("\n%s{", metric);
    const char *p = body;
    gboolean found = FALSE;

    while (!found && (p = strstr(p, needle))) {
        const char *end = strchr(p + 1, '\n');
        gchar *line = g_strndup(p, end ? (gsize)(end - p) : strlen(p));

        found = strstr(line, match) != NULL;
        g_free(line);
        p++;
    }
    g_free(needle);
    return found;
}

static JsonObject *status_json(JsonParser *parser)
{
    const char *argv[] = {gpb_test_bin(), "status", "--json", NULL};
    char *out = NULL;
    GError *error = NULL;

    g_assert_cmpint(gpb_test_run(argv, &out, NULL), ==, 0);
    if (!json_parser_load_from_data(parser, out, -1, &error))
        g_error("status --json: %s: %s", error->message, out);
    g_free(out);
    return json_node_get_object(json_parser_get_root(parser));
}

static void node_exporter_serves_the_textfile_matching_status(void)
{
    gchar *exporter = g_find_program_in_path("prometheus-node-exporter");
    const char *dir;
    gchar *textfile_dir, *id_match, *body;
    const char *metrics[] = {gpb_test_bin(), "metrics", "--textfile", NULL, NULL};
    gpubalance_context *ctx;
    gpubalance_lease *l[3];
    JsonParser *parser = json_parser_new();
    JsonObject *status;
    JsonArray *devices;
    int port, exit_status;
    GPid pid;

    if (!exporter)
        gpb_test_skip("prometheus-node-exporter is not installed (tools/deps.sh installs it)");
    dir = gpb_test_env(ops_config);
    textfile_dir = g_build_filename(dir, "textfile", NULL);
    g_assert_cmpint(mkdir(textfile_dir, 0755), ==, 0);
    metrics[3] = textfile_dir;
    ctx = gpb_test_open();
    l[0] = acquire_on(ctx, "sim:gpu0", "cam-a", 60); /* cost 2 */
    l[1] = acquire_on(ctx, "sim:gpu1", "cam-b", 30);
    l[2] = acquire_on(ctx, "sim:gpu1", "cam-c", 30);
    g_assert_cmpint(gpb_test_run(metrics, NULL, NULL), ==, 0);

    port = free_port();
    pid = start_node_exporter(exporter, textfile_dir, port);
    body = http_get_metrics(port);
    /* node_exporter accepted the file: a format error would set this */
    g_assert_cmpfloat(sample(body, "node_textfile_scrape_error", NULL), ==, 0);

    status = status_json(parser);
    devices = json_object_get_array_member(status, "devices");
    for (guint i = 0; i < json_array_get_length(devices); i++) {
        JsonObject *d = json_array_get_object_element(devices, i);

        id_match = g_strdup_printf("id=\"%s\"", json_object_get_string_member(d, "id"));
        g_assert_cmpfloat(sample(body, "gpubalance_device_sessions", id_match), ==,
                          json_object_get_int_member(d, "sessions"));
        g_assert_cmpfloat(sample(body, "gpubalance_device_foreign_sessions", id_match), ==,
                          json_object_get_int_member(d, "foreign_sessions"));
        g_assert_cmpfloat_with_epsilon(sample(body, "gpubalance_device_load_cost_units", id_match),
                                       json_object_get_double_member(d, "load"), 1e-9);
        if (json_object_get_int_member(d, "max_sessions") > 0)
            g_assert_cmpfloat(sample(body, "gpubalance_device_session_limit", id_match), ==,
                              json_object_get_int_member(d, "max_sessions"));
        else
            g_assert_false(has_sample(body, "gpubalance_device_session_limit", id_match));
        /* every lease of this test was a placement: counters agree */
        g_assert_cmpfloat(sample(body, "gpubalance_placements_total", id_match), ==,
                          json_object_get_int_member(d, "sessions"));
        g_free(id_match);
    }
    g_assert_cmpfloat(sample(body, "gpubalance_device_sessions", "id=\"sim:gpu1\""), ==, 2);
    g_assert_cmpfloat(sample(body, "gpubalance_device_load_cost_units", "id=\"sim:gpu0\""), ==, 2);
    /* a name with a quote and a backslash survived the escaping */
    gpb_assert_contains(body, "name=\"Sim \\\"quoted\\\" \\\\ card\"");
    g_assert_cmpfloat(sample(body, "gpubalance_pool_sessions", "pool=\"geforce\""), ==, 3);
    g_assert_cmpfloat(sample(body, "gpubalance_pool_session_limit", "pool=\"geforce\""), ==, 3);
    g_assert_cmpfloat(sample(body, "gpubalance_leases", NULL), ==,
                      json_array_get_length(json_object_get_array_member(status, "leases")));

    kill(pid, SIGTERM);
    g_assert_cmpint(waitpid(pid, &exit_status, 0), ==, pid);
    for (int i = 0; i < 3; i++)
        gpubalance_lease_release(l[i]);
    gpubalance_context_close(ctx);
    g_object_unref(parser);
    g_free(body);
    g_free(textfile_dir);
    g_free(exporter);
}

/* Every sample has HELP and TYPE lines before it, counters end in _total,
 * and the file is replaced whole (no temporary left beside it). */
static void metrics_text_follows_the_exposition_format(void)
{
    const char *argv[] = {gpb_test_bin(), "metrics", NULL};
    char *out = NULL;
    gchar **lines;
    GHashTable *types = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    int samples = 0;

    gpb_test_env(ops_config);
    g_assert_cmpint(gpb_test_run(argv, &out, NULL), ==, 0);
    lines = g_strsplit(out, "\n", -1);
    for (int i = 0; lines[i] && *lines[i]; i++) {
        gchar **words = g_strsplit(lines[i], " ", 4);

        if (g_str_has_prefix(lines[i], "# TYPE ")) {
            g_hash_table_insert(types, g_strdup(words[2]), g_strdup(words[3]));
            g_assert_true(strcmp(words[3], "counter") == 0 || strcmp(words[3], "gauge") == 0);
            g_assert_cmpint(g_str_has_suffix(words[2], "_total"), ==, strcmp(words[3], "counter") == 0);
            g_assert_true(g_str_has_prefix(lines[i - 1], "# HELP ") && strstr(lines[i - 1], words[2]));
        } else if (lines[i][0] != '#') {
            gchar *name = g_strndup(lines[i], strcspn(lines[i], "{ "));

            if (!g_hash_table_contains(types, name))
                g_error("sample before its TYPE line: %s", lines[i]);
            g_assert_true(g_str_has_prefix(name, "gpubalance_"));
            samples++;
            g_free(name);
        }
        g_strfreev(words);
    }
    g_assert_cmpint(samples, >, 20);
    g_assert_true(g_hash_table_contains(types, "gpubalance_device_sessions"));
    g_assert_true(g_hash_table_contains(types, "gpubalance_open_failures_total"));
    g_hash_table_unref(types);
    g_strfreev(lines);
    g_free(out);
}

/* ---- the event log ------------------------------------------------------ */

static void keep_line(gpubalance_log_level level, const char *message, void *user_data)
{
    if (level <= GPUBALANCE_LOG_INFO)
        g_ptr_array_add(user_data, g_strdup(message));
}

/* The line of the handler's that starts with "event=KIND", asserted. */
static const char *event_line(GPtrArray *lines, const char *kind)
{
    gchar *prefix = g_strdup_printf("event=%s ", kind);

    for (guint i = 0; i < lines->len; i++) {
        if (g_str_has_prefix(g_ptr_array_index(lines, i), prefix)) {
            g_free(prefix);
            return g_ptr_array_index(lines, i);
        }
    }
    g_error("no %s line among %u", prefix, lines->len);
}

static void every_decision_is_one_structured_line(void)
{
    GPtrArray *lines = g_ptr_array_new_with_free_func(g_free);
    const char *log_argv[] = {gpb_test_bin(), "log", NULL};
    gpubalance_context *ctx;
    gpubalance_stream *s;
    gpubalance_lease *a, *b, *c = NULL;
    gpubalance_snapshot *snap;
    GPid holder;
    int in, out;
    char *ready, *log_out = NULL;

    g_setenv("GPUBALANCE_LOG", "info", TRUE); /* read at the first line */
    gpb_test_env("[general]\ndiscover=false\norder=nvenc\nwhen-full=software\n"
                 "[device:gpu0]\nbackend=sim\nenforce-sessions=1\n");
    gpubalance_set_log_handler(keep_line, lines);
    ctx = gpb_test_open();
    /* a: placed, opened */
    a = acquire_on(ctx, NULL, "cam-a", 30);
    g_assert_cmpint(gpubalance_lease_check_open(a), ==, 0);
    g_assert_cmpint(gpubalance_lease_mark_opened(a), ==, 0);
    gpb_assert_contains(event_line(lines, "placed"), "label=cam-a");
    gpb_assert_contains(event_line(lines, "placed"), "device=sim:gpu0 attempt=1");
    /* b: placed on gpu0, the sim refuses, a limit is learned, software */
    b = acquire_on(ctx, NULL, "cam-b", 30);
    g_assert_cmpint(gpubalance_lease_check_open(b), ==, GPUBALANCE_ERR_REFUSED);
    g_assert_cmpint(gpubalance_lease_report_failure(&b, GPUBALANCE_FAILURE_CAPACITY, "out of memory (10)"), ==, 0);
    gpb_assert_contains(event_line(lines, "refused"), "label=cam-b");
    gpb_assert_contains(event_line(lines, "refused"), "device=sim:gpu0 attempt=1 kind=capacity");
    gpb_assert_contains(event_line(lines, "refused"), "reason=\"out of memory (10)\"");
    gpb_assert_contains(event_line(lines, "learned"), "scope=sim:gpu0 limit=1");
    gpb_assert_contains(event_line(lines, "fallback"), "label=cam-b");
    gpb_assert_contains(event_line(lines, "fallback"), "device=software attempt=2");
    gpb_assert_contains(event_line(lines, "fallback"), "reason=\"when-full=software");
    /* c: nothing has room and it will not fall back */
    s = gpb_test_stream("h264", 1920, 1080, 30);
    gpubalance_stream_set_label(s, "cam-c");
    gpubalance_stream_set_when_full(s, "fail");
    g_assert_cmpint(gpubalance_lease_acquire(ctx, s, &c), ==, GPUBALANCE_ERR_FULL);
    gpb_assert_contains(event_line(lines, "rejected"), "label=cam-c");
    gpb_assert_contains(event_line(lines, "rejected"), "status=full");
    /* waiting: a zero timeout gives up at once */
    gpubalance_stream_set_when_full(s, "wait");
    gpubalance_stream_set_wait_timeout(s, 0);
    g_assert_cmpint(gpubalance_lease_acquire(ctx, s, &c), ==, GPUBALANCE_ERR_TIMEOUT);
    gpb_assert_contains(event_line(lines, "waiting"), "label=cam-c");
    gpubalance_stream_free(s);
    /* expiry: another process's lease ends with a SIGKILL */
    gpubalance_lease_release(a);
    {
        const char *argv[] = {gpb_test_bin(),
                              "exec",
                              "-c",
                              "h264",
                              "-w",
                              "640",
                              "--height",
                              "360",
                              "--label",
                              "doomed",
                              "--",
                              "sh",
                              "-c",
                              "echo ready; read x",
                              NULL};
        GError *error = NULL;

        if (!g_spawn_async_with_pipes(NULL, (char **)argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &holder, &in,
                                      &out, NULL, &error))
            g_error("spawn: %s", error->message);
    }
    ready = gpb_read_line(out);
    g_assert_cmpstr(ready, ==, "ready");
    kill(holder, SIGKILL);
    g_assert_cmpint(waitpid(holder, NULL, 0), ==, holder);
    g_assert_cmpint(gpubalance_snapshot_take(ctx, &snap), ==, 0); /* its sweep finds the dead holder */
    gpb_assert_contains(event_line(lines, "expired"), "label=doomed");
    {
        gchar *pid_pair = g_strdup_printf("pid=%d ", holder);

        gpb_assert_contains(event_line(lines, "expired"), pid_pair);
        g_free(pid_pair);
    }
    /* the counters saw the same */
    g_assert_cmpuint(gpubalance_snapshot_counter(snap, 0, GPUBALANCE_COUNTER_PLACEMENTS), ==, 3);
    g_assert_cmpuint(gpubalance_snapshot_counter(snap, 0, GPUBALANCE_COUNTER_FAILURES_CAPACITY), ==, 1);
    g_assert_cmpuint(gpubalance_snapshot_counter(snap, 0, GPUBALANCE_COUNTER_LIMITS_LEARNED), ==, 1);
    g_assert_cmpuint(gpubalance_snapshot_counter(snap, 0, GPUBALANCE_COUNTER_LEASES_EXPIRED), ==, 1);
    g_assert_cmpuint(gpubalance_snapshot_counter(snap, 1, GPUBALANCE_COUNTER_FALLBACKS), ==, 1);
    g_assert_cmpuint(gpubalance_snapshot_counter(snap, GPUBALANCE_HOST, GPUBALANCE_COUNTER_PLACEMENTS), ==, 4);
    g_assert_cmpuint(gpubalance_snapshot_counter(snap, GPUBALANCE_HOST, GPUBALANCE_COUNTER_REFUSED_FULL), ==, 1);
    g_assert_cmpuint(gpubalance_snapshot_counter(snap, GPUBALANCE_HOST, GPUBALANCE_COUNTER_REFUSED_TIMEOUT), ==, 1);
    g_assert_cmpuint(gpubalance_snapshot_counter(snap, GPUBALANCE_HOST, GPUBALANCE_COUNTER_WAITS), ==, 1);
    gpubalance_snapshot_free(snap);
    /* and `gpubalance log`, another process, shows the host's events in order */
    g_assert_cmpint(gpb_test_run(log_argv, &log_out, NULL), ==, 0);
    {
        static const char *const order[] = {"event=placed label=cam-a",   "event=placed label=cam-b",
                                            "event=refused label=cam-b",  "event=learned label=cam-b",
                                            "event=fallback label=cam-b", "event=rejected label=cam-c",
                                            "event=waiting label=cam-c",  "event=rejected label=cam-c",
                                            "event=placed label=doomed",  "event=expired label=doomed"};
        const char *p = log_out;

        for (size_t i = 0; i < G_N_ELEMENTS(order); i++) {
            const char *found = strstr(p, order[i]);

            if (!found)
                g_error("'%s' missing or out of order in:\n%s", order[i], log_out);
            p = found + 1;
        }
    }
    gpubalance_lease_release(b);
    gpubalance_set_log_handler(NULL, NULL);
    gpubalance_context_close(ctx);
    g_ptr_array_unref(lines);
    g_free(ready);
    g_free(log_out);
}

/* The ring is outside input too: records holding the right sequence
 * numbers but random levels, lengths and bytes (seeded, so a failure
 * repeats) come out bounded, printable and with a known level. */
static void check_clean(const gpubalance_event *event, void *user_data)
{
    g_assert_cmpuint(strlen(event->text), <, GPB_EVENT_TEXT_SIZE);
    for (const char *p = event->text; *p; p++)
        g_assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);
    g_assert_cmpint(event->level, <=, GPUBALANCE_LOG_DEBUG);
    (*(int *)user_data)++;
}

static void garbage_in_the_event_ring_is_read_safely(void)
{
    const int events = GPB_EVENT_CAPACITY + 100;
    const size_t record = 24 + GPB_EVENT_TEXT_SIZE;
    GRand *rand = g_rand_new_with_seed(15);
    gpubalance_context *ctx;
    gpubalance_stream *s;
    struct stat st;
    uint8_t *garbage;
    int fd, read_back = 0;

    gpb_test_env(ops_config);
    ctx = gpb_test_open();
    g_assert_nonnull(ctx->events);
    s = gpb_test_stream("h264", 640, 360, 30);
    for (int i = 0; i < events; i++) /* a full ring, wrapped */
        gpubalance_lease_release(gpb_test_acquire(ctx, s));
    gpubalance_stream_free(s);
    fd = open(gpb_events_path(ctx->events), O_RDWR | O_CLOEXEC);
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    garbage = g_malloc(record);
    for (int slot = 0; slot < GPB_EVENT_CAPACITY; slot++) {
        uint64_t seq = (uint64_t)(events - GPB_EVENT_CAPACITY) + 1 +
                       (uint64_t)((slot - (events - GPB_EVENT_CAPACITY) % GPB_EVENT_CAPACITY + GPB_EVENT_CAPACITY) %
                                  GPB_EVENT_CAPACITY);

        for (size_t i = 0; i < record; i++)
            garbage[i] = (uint8_t)g_rand_int(rand);
        memcpy(garbage, &seq, sizeof(seq)); /* the one field that must be right to be read at all */
        g_assert_cmpint(pwrite(fd, garbage, record,
                               st.st_size - (off_t)(record * GPB_EVENT_CAPACITY) + (off_t)(record * (size_t)slot)),
                        ==, (ssize_t)record);
    }
    gpubalance_events_read(ctx, 0, check_clean, &read_back);
    g_assert_cmpint(read_back, ==, GPB_EVENT_CAPACITY);
    close(fd);
    g_free(garbage);
    g_rand_free(rand);
    gpubalance_context_close(ctx);
}

/* A label is the user's text: a newline or a quote in it cannot forge a
 * second event or end the value early. */
static void hostile_label_stays_one_quoted_value(void)
{
    const char *log_argv[] = {gpb_test_bin(), "log", NULL};
    gpubalance_context *ctx;
    gpubalance_lease *lease;
    char *out = NULL;
    gchar **lines;

    gpb_test_env(ops_config);
    ctx = gpb_test_open();
    lease = acquire_on(ctx, "sim:gpu1", "cam\nevent=expired \"x\"=y", 30);
    g_assert_cmpint(gpb_test_run(log_argv, &out, NULL), ==, 0);
    lines = g_strsplit(out, "\n", -1);
    g_assert_cmpuint(g_strv_length(lines), ==, 2); /* one line, then "" after its newline */
    gpb_assert_contains(lines[0], "event=placed label=\"cam\\nevent=expired \\\"x\\\"=y\" pid=");
    g_strfreev(lines);
    gpubalance_lease_release(lease);
    gpubalance_context_close(ctx);
    g_free(out);
}

/* The events file is outside input: garbage in it is moved aside and a
 * new one started; placement never depends on it. */
static void damaged_event_log_is_replaced_not_trusted(void)
{
    const char *log_argv[] = {gpb_test_bin(), "log", NULL};
    const char *pick[] = {gpb_test_bin(), "pick", "-c",      "h264",  "-w", "640",
                          "--height",     "360",  "--label", "after", NULL};
    gchar *ledger, *dir, *events_path = NULL, *out = NULL, *err = NULL;
    GDir *d;
    const char *name;
    gboolean aside = FALSE;

    gpb_test_env(ops_config);
    gpubalance_context_close(gpb_test_open());
    ledger = gpb_test_ledger_path();
    dir = g_path_get_dirname(ledger);
    g_free(ledger);
    d = g_dir_open(dir, 0, NULL);
    while ((name = g_dir_read_name(d)))
        if (g_str_has_suffix(name, ".events"))
            events_path = g_build_filename(dir, name, NULL);
    g_dir_close(d);
    g_assert_nonnull(events_path);
    g_assert_true(g_file_set_contents(events_path, "GPBEVNTS but not really", -1, NULL));
    g_assert_cmpint(gpb_test_run(pick, NULL, &err), ==, 0);
    gpb_assert_contains(err, "is damaged or not ours; moved aside");
    g_assert_cmpint(gpb_test_run(log_argv, &out, NULL), ==, 0);
    gpb_assert_contains(out, "event=placed label=after");
    d = g_dir_open(dir, 0, NULL);
    while ((name = g_dir_read_name(d)))
        aside = aside || strstr(name, ".events.damaged-") != NULL;
    g_dir_close(d);
    g_assert_true(aside);
    g_free(dir);
    g_free(events_path);
    g_free(out);
    g_free(err);
}

/* log --follow prints an event of another process as it happens (its
 * read blocks until then: no sleeping, no polling), and ends cleanly on
 * SIGINT. */
static void log_follow_prints_new_events_until_interrupted(void)
{
    const char *argv[] = {gpb_test_bin(), "log", "--follow", NULL};
    gpubalance_context *ctx;
    gpubalance_lease *lease;
    GError *error = NULL;
    GPid pid;
    int out, status;
    char *line = NULL;

    gpb_test_env(ops_config);
    ctx = gpb_test_open();
    lease = acquire_on(ctx, "sim:gpu1", "before-follow", 30);
    if (!g_spawn_async_with_pipes(NULL, (char **)argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &pid, NULL, &out,
                                  NULL, &error))
        g_error("spawn: %s", error->message);
    line = gpb_read_line(out);
    gpb_assert_contains(line, "event=placed label=before-follow");
    gpubalance_lease_release(lease);
    lease = acquire_on(ctx, "sim:gpu0", "while-following", 30);
    g_free(line);
    line = gpb_read_line(out);
    gpb_assert_contains(line, " info event=placed label=while-following");
    gpb_assert_contains(line, "device=sim:gpu0 attempt=1");
    kill(pid, SIGINT);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    gpubalance_lease_release(lease);
    gpubalance_context_close(ctx);
    close(out);
    g_free(line);
}

/* ---- status --watch in a terminal --------------------------------------- */

typedef struct {
    gchar *socket;
} terminal;

static char *tmux(const terminal *t, const char *const *args)
{
    const char *argv[16] = {"tmux", "-S", t->socket};
    char *out = NULL;
    int n = 3;

    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    g_assert_cmpint(gpb_test_run(argv, &out, NULL), ==, 0);
    return out;
}

/* The guard must outlive a kill of this test's process group (what
 * timeout(1) and meson do on a timeout). */
static void own_session(gpointer user_data)
{
    (void)user_data;
    setsid();
}

/* Starts the server (a daemon: its output goes nowhere, or a capture of
 * it would wait for it) and a guard that ends it when this test process
 * ends, whatever ends it: the guard's stdin is a pipe whose only writer
 * is this process. */
static void start_server(const terminal *t, const char *const *args)
{
    const char *argv[16] = {"tmux", "-S", t->socket};
    const char *pid_args[] = {"display-message", "-p", "-t", "t", "#{pid}", NULL};
    const char *guard[] = {"sh", "-c", "read x; kill $0", NULL, NULL};
    GError *error = NULL;
    int n = 3, status, guard_in;
    char *server_pid;

    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    if (!g_spawn_sync(NULL, (char **)argv, NULL,
                      G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, NULL,
                      NULL, &status, &error))
        g_error("spawn tmux: %s", error->message);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    server_pid = tmux(t, pid_args);
    guard[3] = g_strstrip(server_pid);
    if (!g_spawn_async_with_pipes(NULL, (char **)guard, NULL, G_SPAWN_SEARCH_PATH, own_session, NULL, NULL, &guard_in,
                                  NULL, NULL, &error))
        g_error("spawn the guard: %s", error->message);
    g_free(server_pid); /* guard_in stays open until this process ends */
}

static char *pane_text(const terminal *t)
{
    const char *args[] = {"capture-pane", "-p", "-t", "t", NULL};

    return tmux(t, args);
}

/* Looks at the pane until every needle is shown (or, with absent, one is
 * no longer shown): a bounded number of looks, each a full capture. */
static void wait_for_pane(const terminal *t, const char *const *needles, const char *absent)
{
    for (int look = 0; look < 5000; look++) {
        char *text = pane_text(t);
        gboolean all = absent == NULL || strstr(text, absent) == NULL;

        for (int i = 0; all && needles[i]; i++)
            all = strstr(text, needles[i]) != NULL;
        if (all) {
            g_free(text);
            return;
        }
        if (look == 4999)
            g_error("the pane never showed what was expected; it shows:\n%s", text);
        g_free(text);
    }
}

static void send_keys(const terminal *t, const char *keys, gboolean enter)
{
    const char *args[] = {"send-keys", "-t", "t", keys, enter ? "Enter" : NULL, NULL};

    g_free(tmux(t, args));
}

static void status_watch_redraws_in_a_terminal(void)
{
    gchar *tmux_path = g_find_program_in_path("tmux");
    terminal t;
    gchar *command;
    gpubalance_context *ctx;
    gpubalance_lease *lease;
    const char *ready[] = {"shell-ready", NULL};
    const char *empty[] = {"Ctrl-C quits", "0 lease(s)", NULL};
    const char *held[] = {"1 lease(s)", "tmux-cam", "[##############################]  100% 1 session(s)", NULL};
    const char *released[] = {"0 lease(s)", NULL};
    const char *ended[] = {"watch-exit=0", "shell-ready", NULL};
    const char *new_session[] = {"-f", "/dev/null", "new-session", "-d", "-s", "t",
                                 "-x", "150",       "-y",          "45", "sh", NULL};
    const char *alternate[] = {"display-message", "-p", "-t", "t", "#{alternate_on} #{cursor_flag}", NULL};
    const char *kill_server[] = {"kill-server", NULL};
    char *flags;

    if (!tmux_path)
        gpb_test_skip("tmux is not installed (tools/deps.sh installs it)");
    t.socket = g_build_filename(gpb_test_env(ops_config), "tmux.sock", NULL);
    /* the tmux server inherits this environment: GPUBALANCE_DIR, _CONFIG */
    start_server(&t, new_session);
    send_keys(&t, "echo shell-ready", TRUE);
    wait_for_pane(&t, ready, NULL);
    command = g_strdup_printf("%s status --watch; echo watch-exit=$?", gpb_test_bin());
    send_keys(&t, command, TRUE);
    wait_for_pane(&t, empty, NULL);

    ctx = gpb_test_open();
    lease = acquire_on(ctx, "sim:gpu0", "tmux-cam", 30);
    wait_for_pane(&t, held, NULL);
    gpubalance_lease_release(lease);
    wait_for_pane(&t, released, "tmux-cam");

    send_keys(&t, "C-c", FALSE);
    wait_for_pane(&t, ended, NULL);
    flags = tmux(&t, alternate);
    g_assert_cmpstr(flags, ==, "0 1\n"); /* back on the main screen, cursor shown */
    g_free(tmux(&t, kill_server));
    gpubalance_context_close(ctx);
    g_free(flags);
    g_free(command);
    g_free(t.socket);
    g_free(tmux_path);
}

/* ---- man pages ----------------------------------------------------------- */

/* The long options of a --help text's "Application Options" part. */
static GPtrArray *help_options(const char *help)
{
    GPtrArray *options = g_ptr_array_new_with_free_func(g_free);
    const char *part = strstr(help, "Application Options:");

    for (const char *p = part; p && (p = strstr(p, "\n  ")); p++) {
        const char *dashes = strstr(p, "--");
        const char *eol = strchr(p + 1, '\n');

        if (dashes && (!eol || dashes < eol) && dashes - p <= 8)
            g_ptr_array_add(options, g_strndup(dashes + 2, strcspn(dashes + 2, "= \n")));
    }
    return options;
}

/* The long options a man page documents under ".SS COMMAND": the first
 * words of its .TP entries. */
static GPtrArray *man_options(const char *page, const char *command)
{
    GPtrArray *options = g_ptr_array_new_with_free_func(g_free);
    gchar *heading = g_strdup_printf("\n.SS %s\n", command);
    const char *start = strstr(page, heading);
    const char *end;

    if (!start)
        g_error("gpubalance.1 has no section \".SS %s\"", command);
    start += strlen(heading);
    end = strstr(start, "\n.S");
    for (const char *p = start; (p = strstr(p, "\n.TP\n")) && (!end || p < end); p++) {
        const char *line = p + 5;
        const char *dashes = strstr(line, "\\-\\-");

        if (dashes && dashes < strchr(line, '\n')) {
            /* roff writes a hyphen as \- : --bit\-depth is --bit-depth */
            gchar *word = g_strndup(dashes + 4, strcspn(dashes + 4, " \"\n"));
            gchar **parts = g_strsplit(word, "\\-", -1);

            g_ptr_array_add(options, g_strjoinv("-", parts));
            g_strfreev(parts);
            g_free(word);
        }
    }
    g_free(heading);
    return options;
}

static gboolean contains(GPtrArray *list, const char *item)
{
    for (guint i = 0; i < list->len; i++)
        if (strcmp(g_ptr_array_index(list, i), item) == 0)
            return TRUE;
    return FALSE;
}

static void man_page_documents_every_option_of_every_command(void)
{
    const char *usage_argv[] = {gpb_test_bin(), "--help", NULL};
    gchar *page_path = g_build_filename(g_getenv("GPB_MAN_DIR"), "gpubalance.1", NULL);
    gchar *page = NULL, *usage = NULL;
    gchar **lines;
    int commands = 0;

    g_assert_true(g_file_get_contents(page_path, &page, NULL, NULL));
    g_assert_cmpint(gpb_test_run(usage_argv, &usage, NULL), ==, 0);
    lines = g_strsplit(usage, "\n", -1);
    for (int i = 0; lines[i]; i++) {
        const char *help_argv[] = {gpb_test_bin(), NULL, "--help", NULL};
        gchar *command, *help = NULL;
        GPtrArray *from_help, *from_man;

        if (!g_str_has_prefix(lines[i], "  gpubalance "))
            continue;
        command = g_strndup(lines[i] + 13, strcspn(lines[i] + 13, " "));
        help_argv[1] = command;
        g_assert_cmpint(gpb_test_run(help_argv, &help, NULL), ==, 0);
        from_help = help_options(help);
        from_man = man_options(page, command);
        for (guint j = 0; j < from_help->len; j++)
            if (!contains(from_man, g_ptr_array_index(from_help, j)))
                g_error("gpubalance %s --%s is not in gpubalance(1)", command, (char *)g_ptr_array_index(from_help, j));
        for (guint j = 0; j < from_man->len; j++)
            if (!contains(from_help, g_ptr_array_index(from_man, j)))
                g_error("gpubalance(1) documents %s --%s, which --help does not list", command,
                        (char *)g_ptr_array_index(from_man, j));
        g_assert_cmpuint(from_help->len, >, 0);
        commands++;
        g_ptr_array_unref(from_help);
        g_ptr_array_unref(from_man);
        g_free(help);
        g_free(command);
    }
    g_assert_cmpint(commands, ==, 7);
    g_strfreev(lines);
    g_free(usage);
    g_free(page);
    g_free(page_path);
}

/* Every page renders without a warning from groff. */
static void man_pages_render_cleanly(void)
{
    static const char *const pages[] = {"gpubalance.1", "gpubalance.conf.5", "gpubalance-encoders.7"};
    gchar *man = g_find_program_in_path("man");

    if (!man)
        gpb_test_skip("man is not installed (tools/deps.sh installs man-db)");
    g_setenv("MANWIDTH", "80", TRUE);
    for (size_t i = 0; i < G_N_ELEMENTS(pages); i++) {
        gchar *path = g_build_filename(g_getenv("GPB_MAN_DIR"), pages[i], NULL);
        const char *argv[] = {man, "--warnings=all", "-l", path, NULL};
        char *out = NULL, *err = NULL;

        g_assert_cmpint(gpb_test_run(argv, &out, &err), ==, 0);
        if (*err)
            g_error("%s: %s", pages[i], err);
        g_assert_cmpuint(strlen(out), >, 500);
        g_free(out);
        g_free(err);
        g_free(path);
    }
    g_free(man);
}

/* ---- the shared directory as a system ships it ------------------------- */

/* sysusers.d makes the group, tmpfiles.d the directory (2770, setgid),
 * here inside a scratch root; a ledger made there then belongs to the
 * group and is shared with it (0660). */
static void tmpfiles_snippet_makes_a_directory_two_users_share(void)
{
    gchar *tmpfiles = g_find_program_in_path("systemd-tmpfiles");
    gchar *sysusers = g_find_program_in_path("systemd-sysusers");
    const char *pick[] = {gpb_test_bin(), "pick", "-c", "h264", "-w", "640", "--height", "360", NULL};
    gchar *root, *run_dir, *ledger, *group_file, *root_arg, *command;
    gchar *group_text = NULL;
    struct stat dir_st, ledger_st;
    const char *test_dir;
    gchar *etc;

    if (!tmpfiles || !sysusers)
        gpb_test_skip("systemd-tmpfiles or systemd-sysusers is not installed");
    if (geteuid() != 0)
        gpb_test_skip("systemd-tmpfiles gives the directory to root: this test runs as root only");
    test_dir = gpb_test_env(ops_config);
    root = g_build_filename(test_dir, "root", NULL);
    group_file = g_build_filename(root, "etc", "group", NULL);
    g_assert_cmpint(g_mkdir_with_parents(root, 0755), ==, 0);
    etc = g_path_get_dirname(group_file);
    g_assert_cmpint(mkdir(etc, 0755), ==, 0);
    g_free(etc);
    g_assert_true(g_file_set_contents(group_file, "", 0, NULL));
    /* with --root the tools read their configuration inside the root: give it on stdin */
    root_arg = g_strdup_printf("--root=%s", root);
    command =
        g_strdup_printf("%s %s - < %s/sysusers.d/gpubalance.conf && %s --create %s - < %s/tmpfiles.d/gpubalance.conf",
                        sysusers, root_arg, g_getenv("GPB_DATA_DIR"), tmpfiles, root_arg, g_getenv("GPB_DATA_DIR"));
    {
        const char *argv[] = {"sh", "-c", command, NULL};

        g_assert_cmpint(gpb_test_run(argv, NULL, NULL), ==, 0);
    }
    g_assert_true(g_file_get_contents(group_file, &group_text, NULL, NULL));
    gpb_assert_contains(group_text, "gpubalance:x:");
    run_dir = g_build_filename(root, "run", "gpubalance", NULL);
    g_assert_cmpint(stat(run_dir, &dir_st), ==, 0);
    g_assert_cmpint(dir_st.st_mode & 07777, ==, 02770);
    g_assert_cmpint(dir_st.st_uid, ==, 0);
    g_assert_cmpint(dir_st.st_gid, ==, atoi(strchr(strchr(group_text, ':') + 1, ':') + 1));

    g_setenv("GPUBALANCE_DIR", run_dir, TRUE);
    g_assert_cmpint(gpb_test_run(pick, NULL, NULL), ==, 0);
    ledger = g_build_filename(run_dir, "ledger", NULL);
    g_assert_cmpint(stat(ledger, &ledger_st), ==, 0);
    g_assert_cmpint(ledger_st.st_gid, ==, dir_st.st_gid);
    g_assert_cmpint(ledger_st.st_mode & 0777, ==, 0660);

    /* another user of the group places a stream beside root's, in the
     * same ledger, counters and event log */
    {
        gchar *groups = g_strdup_printf("%u", (unsigned)dir_st.st_gid);
        const char *as_nobody[] = {"setpriv",  "--reuid",      "65534",   "--regid", "65534", "--groups", groups,
                                   "--",       gpb_test_bin(), "pick",    "-c",      "h264",  "-w",       "640",
                                   "--height", "360",          "--label", "nobody",  NULL};
        const char *log_argv[] = {"setpriv", "--reuid", "65534",        "--regid", "65534", "--groups",
                                  groups,    "--",      gpb_test_bin(), "log",     NULL};
        char *err = NULL, *out = NULL;

        g_assert_cmpint(chmod(test_dir, 0755), ==, 0); /* the scratch root must be reachable */
        g_assert_cmpint(chmod(root, 0755), ==, 0);
        if (gpb_test_run(as_nobody, NULL, &err) != 0)
            g_error("pick as uid 65534 in group %s: %s", groups, err);
        g_assert_cmpint(gpb_test_run(log_argv, &out, NULL), ==, 0);
        gpb_assert_contains(out, "event=placed label=nobody");
        gpb_assert_contains(out, "event=placed label=\"\" pid="); /* root's pick */
        g_free(groups);
        g_free(err);
        g_free(out);
    }
    g_free(tmpfiles);
    g_free(sysusers);
    g_free(root);
    g_free(run_dir);
    g_free(ledger);
    g_free(group_file);
    g_free(root_arg);
    g_free(command);
    g_free(group_text);
}

static const gpb_test_case cases[] = {
    GPB_TEST(node_exporter_serves_the_textfile_matching_status),
    GPB_TEST(metrics_text_follows_the_exposition_format),
    GPB_TEST(every_decision_is_one_structured_line),
    GPB_TEST(hostile_label_stays_one_quoted_value),
    GPB_TEST(garbage_in_the_event_ring_is_read_safely),
    GPB_TEST(damaged_event_log_is_replaced_not_trusted),
    GPB_TEST(log_follow_prints_new_events_until_interrupted),
    GPB_TEST(status_watch_redraws_in_a_terminal),
    GPB_TEST(man_page_documents_every_option_of_every_command),
    GPB_TEST(man_pages_render_cleanly),
    GPB_TEST(tmpfiles_snippet_makes_a_directory_two_users_share),
};

GPB_TEST_MAIN(cases)
