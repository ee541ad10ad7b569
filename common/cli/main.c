/* main.c - the gpubalance command: status, probe, pick, exec, reset
 * (metrics in metrics.c, log in log.c, status --watch in watch.c).
 *
 * It uses only the public API (gpubalance.h), like any other front end. */
#define _GNU_SOURCE
#include <errno.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <locale.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "gpubalance.h"

/* shared with the other files of the command (cli.h) */
#define fail cli_fail
#define parse_options cli_parse_options

/* ---- text from elsewhere ------------------------------------------------
 *
 * Labels (by default a program's name), device ids and names come from
 * other processes through the ledger, and from the environment. Printed
 * raw, an escape sequence would reach another user's terminal, and a
 * newline would forge a line of status. So text is printed with C0 and C1
 * controls, DEL, bidirectional overrides and bytes that are not UTF-8
 * written as \xNN or \u{NNNN} (and a backslash as \\); JSON gets
 * valid UTF-8 (invalid bytes become U+FFFD; json-glib escapes controls). */

static bool needs_escape(gunichar c)
{
    return c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) || (c >= 0x202a && c <= 0x202e) ||
           (c >= 0x2066 && c <= 0x2069) || c == 0x200e || c == 0x200f || c == 0x061c;
}

static gchar *display_text(const char *text)
{
    GString *out = g_string_new(NULL);
    const char *p = text ? text : "";

    while (*p) {
        gunichar c = g_utf8_get_char_validated(p, -1);

        if (c == (gunichar)-1 || c == (gunichar)-2) {
            g_string_append_printf(out, "\\x%02x", (unsigned char)*p);
            p++;
            continue;
        }
        if (c == '\\')
            g_string_append(out, "\\\\");
        else if (c < 0x80 && needs_escape(c))
            g_string_append_printf(out, "\\x%02x", (unsigned)c);
        else if (needs_escape(c))
            g_string_append_printf(out, "\\u{%04x}", (unsigned)c);
        else
            g_string_append_len(out, p, g_utf8_next_char(p) - p);
        p = g_utf8_next_char(p);
    }
    return g_string_free(out, FALSE);
}

/* A pool of display_text() results, freed together. */
static const char *shown(GPtrArray *pool, const char *text)
{
    gchar *safe = display_text(text);

    g_ptr_array_add(pool, safe);
    return safe;
}

int cli_fail(const char *what, int status)
{
    const char *detail = gpubalance_last_error();
    gchar *safe = display_text(detail && *detail ? detail : gpubalance_strerror(status));

    fprintf(stderr, "gpubalance %s: %s\n", what, safe);
    g_free(safe);
    return EXIT_FAILURE;
}

static int usage_error(GOptionContext *octx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_error(GOptionContext *octx, const char *fmt, ...)
{
    va_list ap;
    gchar *help;

    va_start(ap, fmt);
    fprintf(stderr, "gpubalance: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (octx) {
        help = g_option_context_get_help(octx, TRUE, NULL);
        fprintf(stderr, "\n%s", help);
        g_free(help);
    }
    return EXIT_USAGE;
}

static void print_json(JsonBuilder *builder, gboolean pretty)
{
    JsonGenerator *gen = json_generator_new();
    JsonNode *root = json_builder_get_root(builder);
    gchar *text;

    json_generator_set_root(gen, root);
    json_generator_set_pretty(gen, pretty);
    text = json_generator_to_data(gen, NULL);
    printf("%s\n", text);
    fflush(stdout);
    g_free(text);
    json_node_unref(root);
    g_object_unref(gen);
}

/* Adds text as a JSON string, made valid UTF-8. */
static void add_text(JsonBuilder *b, const char *value)
{
    gchar *valid = g_utf8_make_valid(value, -1);

    json_builder_add_string_value(b, valid);
    g_free(valid);
}

static void add_string_or_null(JsonBuilder *b, const char *key, const char *value)
{
    json_builder_set_member_name(b, key);
    if (value)
        add_text(b, value);
    else
        json_builder_add_null_value(b);
}

static void add_codecs(JsonBuilder *b, unsigned codecs)
{
    json_builder_set_member_name(b, "codecs");
    json_builder_begin_array(b);
    for (int c = 0; c < GPUBALANCE_N_CODECS; c++)
        if (codecs & (1u << c))
            json_builder_add_string_value(b, gpubalance_codec_name((gpubalance_codec)c));
    json_builder_end_array(b);
}

static gchar *codecs_text(unsigned codecs)
{
    GString *s = g_string_new(NULL);

    for (int c = 0; c < GPUBALANCE_N_CODECS; c++)
        if (codecs & (1u << c))
            g_string_append_printf(s, "%s%s", s->len ? "," : "", gpubalance_codec_name((gpubalance_codec)c));
    return g_string_free(s, FALSE);
}

static gchar *iso_time(int64_t unix_ms)
{
    GDateTime *dt = g_date_time_new_from_unix_utc(unix_ms / 1000);
    gchar *text = dt ? g_date_time_format_iso8601(dt) : g_strdup("");

    if (dt)
        g_date_time_unref(dt);
    return text;
}

/* Parses a command's options; a bad option or a stray argument prints
 * the problem and the command's help. Returns 0 or EXIT_USAGE. */
int cli_parse_options(GOptionContext *octx, const char *command, int *argc, char ***argv)
{
    GError *error = NULL;

    if (!g_option_context_parse(octx, argc, argv, &error)) {
        int rc = usage_error(octx, "%s: %s", command, error->message);

        g_error_free(error);
        return rc;
    }
    if (*argc > 1)
        return usage_error(octx, "%s: unexpected argument '%s'", command, (*argv)[1]);
    return 0;
}

/* ---- status ----------------------------------------------------------- */

static void device_json(JsonBuilder *b, const gpubalance_device_info *d)
{
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "id");
    add_text(b, d->id);
    json_builder_set_member_name(b, "backend");
    json_builder_add_string_value(b, gpubalance_backend_name(d->backend));
    add_string_or_null(b, "name", d->name);
    add_codecs(b, d->codecs);
    json_builder_set_member_name(b, "sessions");
    json_builder_add_int_value(b, d->sessions);
    json_builder_set_member_name(b, "max_sessions");
    json_builder_add_int_value(b, d->max_sessions);
    json_builder_set_member_name(b, "foreign_sessions");
    json_builder_add_int_value(b, d->foreign_sessions);
    json_builder_set_member_name(b, "load");
    json_builder_add_double_value(b, d->load);
    json_builder_set_member_name(b, "budget");
    json_builder_add_double_value(b, d->budget);
    add_string_or_null(b, "pool", d->pool);
    json_builder_set_member_name(b, "learned_limit");
    if (d->learned_limit >= 0)
        json_builder_add_int_value(b, d->learned_limit);
    else
        json_builder_add_null_value(b);
    if (d->backend == GPUBALANCE_BACKEND_SIM) {
        json_builder_set_member_name(b, "imitates");
        json_builder_add_string_value(b, gpubalance_backend_name(d->order_backend));
        json_builder_set_member_name(b, "enforce_sessions");
        json_builder_add_int_value(b, d->enforce_sessions);
    }
    if (d->backend == GPUBALANCE_BACKEND_NVENC) {
        json_builder_set_member_name(b, "cuda_ordinal");
        json_builder_add_int_value(b, d->cuda_ordinal);
        add_string_or_null(b, "gpu_uuid", d->gpu_uuid);
    }
    if (d->backend == GPUBALANCE_BACKEND_VAAPI)
        add_string_or_null(b, "render_node", d->render_node);
    json_builder_set_member_name(b, "declared");
    json_builder_add_boolean_value(b, d->declared);
    json_builder_set_member_name(b, "offered");
    json_builder_add_boolean_value(b, d->not_offered_why == NULL);
    if (d->not_offered_why)
        add_string_or_null(b, "not_offered_why", d->not_offered_why);
    if (d->pci_bus_id)
        add_string_or_null(b, "pci_bus_id", d->pci_bus_id);
    if (d->driver)
        add_string_or_null(b, "driver", d->driver);
    json_builder_end_object(b);
}

/* One lease's members, set on an object reused for every lease (setting
 * a member again replaces it in place, keeping the order). */
static void lease_json(JsonObject *o, const gpubalance_lease_info *l)
{
    gchar *since = iso_time(l->since_unix_ms);
    gchar *device = g_utf8_make_valid(l->device, -1), *label = g_utf8_make_valid(l->label, -1);

    json_object_set_string_member(o, "device", device);
    json_object_set_int_member(o, "pid", l->pid);
    json_object_set_string_member(o, "codec", gpubalance_codec_name(l->codec));
    json_object_set_int_member(o, "width", l->width);
    json_object_set_int_member(o, "height", l->height);
    json_object_set_double_member(o, "fps", l->fps);
    json_object_set_double_member(o, "cost", l->cost);
    json_object_set_string_member(o, "state", gpubalance_lease_state_name(l->state));
    json_object_set_string_member(o, "label", label);
    json_object_set_string_member(o, "since", since);
    json_object_set_int_member(o, "pid_namespace", (gint64)l->pid_namespace);
    g_free(since);
    g_free(device);
    g_free(label);
}

/* The "leases" member, appended to out as json-glib would have written it
 * in the tree: each lease generated on its own from one reused object
 * (and, when pretty, indented to its depth). A tree of every lease (an
 * object, a hash table and eleven nodes each, built and then walked) was
 * most of what `status --json` cost with 1000 leases. */
static void append_leases_json(GString *out, const gpubalance_snapshot *snap, gboolean pretty)
{
    JsonGenerator *gen = json_generator_new();
    JsonObject *lease = json_object_new();
    JsonNode *node = json_node_new(JSON_NODE_OBJECT);
    GString *one = g_string_sized_new(512);
    size_t n = gpubalance_snapshot_n_leases(snap);

    json_node_set_object(node, lease);
    json_generator_set_root(gen, node);
    json_generator_set_pretty(gen, pretty);
    g_string_append(out, pretty ? ",\n  \"leases\" : [" : ",\"leases\":[");
    for (size_t i = 0; i < n; i++) {
        lease_json(lease, gpubalance_snapshot_lease(snap, i));
        g_string_append(out, i ? "," : "");
        if (!pretty) {
            json_generator_to_gstring(gen, out);
            continue;
        }
        g_string_truncate(one, 0);
        json_generator_to_gstring(gen, one);
        g_string_append(out, "\n    ");
        for (const char *line = one->str, *end; *line; line = end) { /* a string holds no raw newline */
            end = strchrnul(line, '\n');
            end += *end == '\n';
            g_string_append_len(out, line, end - line);
            if (end[-1] == '\n')
                g_string_append(out, "    ");
        }
    }
    g_string_append(out, pretty && n ? "\n  ]\n}" : pretty ? "]\n}" : "]}");
    g_string_free(one, TRUE);
    json_node_unref(node);
    json_object_unref(lease);
    g_object_unref(gen);
}

static void status_json(const gpubalance_snapshot *snap, gboolean pretty)
{
    JsonBuilder *b = json_builder_new();

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "devices");
    json_builder_begin_array(b);
    for (size_t i = 0; i < gpubalance_snapshot_n_devices(snap); i++)
        device_json(b, gpubalance_snapshot_device(snap, i));
    json_builder_end_array(b);
    json_builder_set_member_name(b, "pools");
    json_builder_begin_array(b);
    for (size_t i = 0; i < gpubalance_snapshot_n_pools(snap); i++) {
        const gpubalance_pool_info *p = gpubalance_snapshot_pool(snap, i);

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        add_text(b, p->name);
        json_builder_set_member_name(b, "sessions");
        json_builder_add_int_value(b, p->sessions);
        json_builder_set_member_name(b, "max_sessions");
        json_builder_add_int_value(b, p->max_sessions);
        json_builder_set_member_name(b, "learned_limit");
        if (p->learned_limit >= 0)
            json_builder_add_int_value(b, p->learned_limit);
        else
            json_builder_add_null_value(b);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    {
        JsonGenerator *gen = json_generator_new();
        JsonNode *root = json_builder_get_root(b);
        GString *out = g_string_sized_new(4096 + 256 * gpubalance_snapshot_n_leases(snap));

        json_generator_set_root(gen, root);
        json_generator_set_pretty(gen, pretty);
        json_generator_to_gstring(gen, out);
        /* the object closed without its leases: reopen it for them */
        while (out->len > 0 && out->str[out->len - 1] != '}')
            g_string_truncate(out, out->len - 1);
        g_string_truncate(out, out->len - 1);
        while (out->len > 0 && g_ascii_isspace(out->str[out->len - 1]))
            g_string_truncate(out, out->len - 1);
        append_leases_json(out, snap, pretty);
        printf("%s\n", out->str);
        fflush(stdout);
        g_string_free(out, TRUE);
        json_node_unref(root);
        g_object_unref(gen);
    }
    g_object_unref(b);
}

static gchar *limit_text(int max_sessions, int learned)
{
    if (learned >= 0)
        return g_strdup_printf("%d (learned)", learned);
    return max_sessions > 0 ? g_strdup_printf("%d", max_sessions) : g_strdup("-");
}

static void status_text(const gpubalance_snapshot *snap)
{
    GPtrArray *pool = g_ptr_array_new_with_free_func(g_free);

    printf("%-20s %-8s %8s %7s %-12s %-15s %-10s %s\n", "DEVICE", "BACKEND", "SESSIONS", "FOREIGN", "LIMIT",
           "LOAD/BUDGET", "POOL", "CODECS");
    for (size_t i = 0; i < gpubalance_snapshot_n_devices(snap); i++) {
        const gpubalance_device_info *d = gpubalance_snapshot_device(snap, i);
        gchar *limit = limit_text(d->max_sessions, d->learned_limit);
        gchar *load =
            d->budget > 0 ? g_strdup_printf("%.2f/%.2f", d->load, d->budget) : g_strdup_printf("%.2f/-", d->load);
        gchar *codecs = codecs_text(d->codecs);

        printf("%-20s %-8s %8d %7d %-12s %-15s %-10s %s\n", shown(pool, d->id), gpubalance_backend_name(d->backend),
               d->sessions, d->foreign_sessions, limit, load, d->pool ? shown(pool, d->pool) : "-", codecs);
        g_free(limit);
        g_free(load);
        g_free(codecs);
    }
    for (size_t i = 0; i < gpubalance_snapshot_n_pools(snap); i++) {
        const gpubalance_pool_info *p = gpubalance_snapshot_pool(snap, i);
        gchar *limit = limit_text(p->max_sessions, p->learned_limit);

        printf("pool %s: %d sessions, limit %s\n", shown(pool, p->name), p->sessions, limit);
        g_free(limit);
    }
    printf("%zu lease(s)\n", gpubalance_snapshot_n_leases(snap));
    for (size_t i = 0; i < gpubalance_snapshot_n_leases(snap); i++) {
        const gpubalance_lease_info *l = gpubalance_snapshot_lease(snap, i);
        gchar *since = iso_time(l->since_unix_ms);

        printf("  %-20s pid %-7d %s %dx%d@%g cost %.2f %-7s %s %s\n", shown(pool, l->device), (int)l->pid,
               gpubalance_codec_name(l->codec), l->width, l->height, l->fps, l->cost,
               gpubalance_lease_state_name(l->state), since, shown(pool, l->label));
        g_free(since);
    }
    g_ptr_array_unref(pool);
}

/* One refresh of status --watch: JSON on one line per change. */
static void print_status(const gpubalance_snapshot *snap, gboolean json)
{
    if (json)
        status_json(snap, FALSE);
    else
        status_text(snap);
}

static int cmd_status(int argc, char **argv)
{
    gboolean json = FALSE, watch = FALSE;
    GOptionEntry entries[] = {
        {"json", 0, 0, G_OPTION_ARG_NONE, &json, "Print one JSON object (one line per change with --watch)", NULL},
        {"watch", 0, 0, G_OPTION_ARG_NONE, &watch, "Redraw whenever a lease is taken or ends, until interrupted", NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    GOptionContext *octx = g_option_context_new("- devices, pools, leases and foreign load");
    gpubalance_context *ctx = NULL;
    int status, rc = EXIT_SUCCESS;

    g_option_context_add_main_entries(octx, entries, NULL);
    if ((rc = parse_options(octx, "status", &argc, &argv)) != 0)
        goto out;
    if ((status = gpubalance_context_open(NULL, &ctx)) < 0) {
        rc = fail("status", status);
        goto out;
    }
    if (watch) {
        rc = cli_watch_status(ctx, json, print_status);
    } else {
        gpubalance_snapshot *snap;

        if ((status = gpubalance_snapshot_take(ctx, &snap)) < 0) {
            rc = fail("status", status);
            goto out;
        }
        if (json)
            status_json(snap, TRUE);
        else
            status_text(snap);
        gpubalance_snapshot_free(snap);
    }
out:
    gpubalance_context_close(ctx);
    g_option_context_free(octx);
    return rc;
}

/* ---- probe ------------------------------------------------------------ */

static int cmd_probe(int argc, char **argv)
{
    gboolean json = FALSE, refresh = FALSE;
    GOptionEntry entries[] = {
        {"json", 0, 0, G_OPTION_ARG_NONE, &json, "Print one JSON object", NULL},
        {"refresh", 0, 0, G_OPTION_ARG_NONE, &refresh, "Probe the hardware again, ignoring the cache", NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    GOptionContext *octx = g_option_context_new("- what discovery found, and why not");
    gpubalance_context *ctx = NULL;
    gpubalance_snapshot *snap = NULL;
    int status, rc = EXIT_SUCCESS;

    g_option_context_add_main_entries(octx, entries, NULL);
    if ((rc = parse_options(octx, "probe", &argc, &argv)) != 0)
        goto out;
    if ((status = gpubalance_context_open_with_flags(NULL, refresh ? GPUBALANCE_OPEN_REFRESH_PROBES : 0, &ctx)) < 0 ||
        (status = gpubalance_snapshot_take(ctx, &snap)) < 0) {
        rc = fail("probe", status);
        goto out;
    }
    if (json) {
        JsonBuilder *b = json_builder_new();

        json_builder_begin_object(b);
        add_string_or_null(b, "config", gpubalance_context_config_path(ctx));
        add_string_or_null(b, "ledger", gpubalance_context_ledger_path(ctx));
        json_builder_set_member_name(b, "devices");
        json_builder_begin_array(b);
        for (size_t i = 0; i < gpubalance_snapshot_n_devices(snap); i++)
            device_json(b, gpubalance_snapshot_device(snap, i));
        json_builder_end_array(b);
        json_builder_set_member_name(b, "notes");
        json_builder_begin_array(b);
        for (size_t i = 0; i < gpubalance_context_n_notes(ctx); i++)
            add_text(b, gpubalance_context_note(ctx, i));
        json_builder_end_array(b);
        json_builder_end_object(b);
        print_json(b, TRUE);
        g_object_unref(b);
    } else {
        GPtrArray *text = g_ptr_array_new_with_free_func(g_free);

        printf("config: %s\nledger: %s\n",
               gpubalance_context_config_path(ctx) ? shown(text, gpubalance_context_config_path(ctx))
                                                   : "(built-in defaults)",
               shown(text, gpubalance_context_ledger_path(ctx)));
        for (size_t i = 0; i < gpubalance_snapshot_n_devices(snap); i++) {
            const gpubalance_device_info *d = gpubalance_snapshot_device(snap, i);
            gchar *codecs = codecs_text(d->codecs);

            printf("%-20s %-8s %-10s %s%s%s%s\n", shown(text, d->id), gpubalance_backend_name(d->backend), codecs,
                   shown(text, d->name), d->declared ? " [declared]" : "",
                   d->not_offered_why ? " -- not offered: " : "",
                   d->not_offered_why ? shown(text, d->not_offered_why) : "");
            g_free(codecs);
        }
        for (size_t i = 0; i < gpubalance_context_n_notes(ctx); i++)
            printf("note: %s\n", shown(text, gpubalance_context_note(ctx, i)));
        g_ptr_array_unref(text);
    }
out:
    gpubalance_snapshot_free(snap);
    gpubalance_context_close(ctx);
    g_option_context_free(octx);
    return rc;
}

/* ---- pick and exec ---------------------------------------------------- */

typedef struct {
    gchar *codec;
    gint width;
    gint height;
    gdouble fps;
    gint bit_depth;
    gchar *label;
    gchar *policy;
    gchar *order;
    gchar *when_full;
    gchar *device;
    gdouble wait_timeout;
    gboolean json;
} pick_options;

static void add_pick_entries(GOptionContext *octx, pick_options *o, gboolean with_json)
{
    GOptionEntry entries[] = {
        {"codec", 'c', 0, G_OPTION_ARG_STRING, &o->codec, "Codec: h264, hevc, av1 (required)", "C"},
        {"width", 'w', 0, G_OPTION_ARG_INT, &o->width, "Width in pixels (required)", "W"},
        {"height", 0, 0, G_OPTION_ARG_INT, &o->height, "Height in pixels (required)", "H"},
        {"fps", 'f', 0, G_OPTION_ARG_DOUBLE, &o->fps, "Frames per second (default: unknown, counted as 30)", "F"},
        {"bit-depth", 0, 0, G_OPTION_ARG_INT, &o->bit_depth, "8 or 10 (default 8)", "N"},
        /* raw bytes, as a file name: a label is accepted in any locale */
        {"label", 'l', 0, G_OPTION_ARG_FILENAME, &o->label, "Free text shown in status", "TEXT"},
        {"policy", 0, 0, G_OPTION_ARG_STRING, &o->policy, "balanced or fill (default: config)", "P"},
        {"order", 0, 0, G_OPTION_ARG_STRING, &o->order, "Backend order, as nvenc,vaapi,software", "LIST"},
        {"when-full", 0, 0, G_OPTION_ARG_STRING, &o->when_full, "software, wait or fail (default: config)", "W"},
        {"wait-timeout", 0, 0, G_OPTION_ARG_DOUBLE, &o->wait_timeout, "Seconds to wait with when-full=wait", "S"},
        {"device", 'd', 0, G_OPTION_ARG_STRING, &o->device, "Force one device id (nvenc:0, sim:gpu0...)", "ID"},
        {"json", 0, 0, G_OPTION_ARG_NONE, &o->json, "Print {\"device\", \"backend\", \"reason\", ...}", NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };

    if (!with_json)
        entries[G_N_ELEMENTS(entries) - 2] = entries[G_N_ELEMENTS(entries) - 1];
    g_option_context_add_main_entries(octx, entries, NULL);
}

static void pick_options_clear(pick_options *o)
{
    g_free(o->codec);
    g_free(o->label);
    g_free(o->policy);
    g_free(o->order);
    g_free(o->when_full);
    g_free(o->device);
}

/* Builds the stream from the options; prints the problem and returns
 * EXIT_USAGE on a bad one. */
static int stream_from_options(GOptionContext *octx, const pick_options *o, gpubalance_stream **out)
{
    gpubalance_stream *s;
    int codec;

    if (!o->codec || !o->width || !o->height)
        return usage_error(octx, "--codec, --width and --height are required");
    if ((codec = gpubalance_codec_from_name(o->codec)) < 0)
        return usage_error(octx, "--codec %s: not one of h264, hevc, av1", o->codec);
    gpubalance_stream_new(&s);
    if (gpubalance_stream_set_codec(s, (gpubalance_codec)codec) < 0 ||
        gpubalance_stream_set_size(s, o->width, o->height) < 0 || gpubalance_stream_set_fps(s, o->fps) < 0 ||
        (o->bit_depth && gpubalance_stream_set_bit_depth(s, o->bit_depth) < 0) ||
        gpubalance_stream_set_label(s, o->label) < 0 || gpubalance_stream_set_policy(s, o->policy) < 0 ||
        gpubalance_stream_set_order(s, o->order) < 0 || gpubalance_stream_set_when_full(s, o->when_full) < 0 ||
        gpubalance_stream_set_wait_timeout(s, o->wait_timeout) < 0 || gpubalance_stream_set_device(s, o->device) < 0) {
        gpubalance_stream_free(s);
        return usage_error(octx, "%s", gpubalance_last_error());
    }
    *out = s;
    return 0;
}

static void print_pick(const gpubalance_lease *lease, gboolean json)
{
    if (json) {
        JsonBuilder *b = json_builder_new();

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "device");
        add_text(b, gpubalance_lease_device(lease));
        json_builder_set_member_name(b, "backend");
        json_builder_add_string_value(b, gpubalance_backend_name(gpubalance_lease_backend(lease)));
        json_builder_set_member_name(b, "reason");
        add_text(b, gpubalance_lease_reason(lease));
        json_builder_set_member_name(b, "ffmpeg_encoder");
        json_builder_add_string_value(b, gpubalance_lease_ffmpeg_encoder(lease));
        json_builder_set_member_name(b, "gst_encoder");
        json_builder_add_string_value(b, gpubalance_lease_gst_encoder(lease));
        if (gpubalance_lease_cuda_ordinal(lease) >= 0) {
            json_builder_set_member_name(b, "cuda_ordinal");
            json_builder_add_int_value(b, gpubalance_lease_cuda_ordinal(lease));
        }
        if (gpubalance_lease_render_node(lease))
            add_string_or_null(b, "render_node", gpubalance_lease_render_node(lease));
        json_builder_end_object(b);
        print_json(b, FALSE);
        g_object_unref(b);
        return;
    }
    {
        gchar *device = display_text(gpubalance_lease_device(lease));
        gchar *reason = display_text(gpubalance_lease_reason(lease));

        printf("%s (%s): ffmpeg %s, gstreamer %s\n  %s\n", device,
               gpubalance_backend_name(gpubalance_lease_backend(lease)), gpubalance_lease_ffmpeg_encoder(lease),
               gpubalance_lease_gst_encoder(lease), reason);
        g_free(device);
        g_free(reason);
    }
}

static int cmd_pick(int argc, char **argv)
{
    pick_options o = {.wait_timeout = -1};
    GOptionContext *octx = g_option_context_new("- what would be chosen for this stream now");
    gpubalance_context *ctx = NULL;
    gpubalance_stream *stream = NULL;
    gpubalance_lease *lease = NULL;
    int status, rc;

    add_pick_entries(octx, &o, TRUE);
    if ((rc = parse_options(octx, "pick", &argc, &argv)) != 0)
        goto out;
    if ((rc = stream_from_options(octx, &o, &stream)) != 0)
        goto out;
    if ((status = gpubalance_context_open(NULL, &ctx)) < 0 ||
        (status = gpubalance_lease_acquire(ctx, stream, &lease)) < 0) {
        rc = fail("pick", status);
        goto out;
    }
    print_pick(lease, o.json);
    rc = EXIT_SUCCESS;
out:
    gpubalance_lease_release(lease);
    gpubalance_stream_free(stream);
    gpubalance_context_close(ctx);
    pick_options_clear(&o);
    g_option_context_free(octx);
    return rc;
}

/* CUDA_VISIBLE_DEVICES narrowed to the leased GPU: its UUID where known
 * (unambiguous whatever the order), else the entry of the current list at
 * the lease's ordinal, else the ordinal itself. */
static gchar *narrowed_cuda_devices(const gpubalance_lease *lease)
{
    const char *current = g_getenv("CUDA_VISIBLE_DEVICES");
    int ordinal = gpubalance_lease_cuda_ordinal(lease);
    gchar *result = NULL;

    if (gpubalance_lease_gpu_uuid(lease))
        return g_strdup(gpubalance_lease_gpu_uuid(lease));
    if (current && *current) {
        gchar **list = g_strsplit(current, ",", -1);

        if (ordinal < (int)g_strv_length(list))
            result = g_strdup(g_strstrip(list[ordinal]));
        g_strfreev(list);
    }
    return result ? result : g_strdup_printf("%d", ordinal);
}

static void export_lease(const gpubalance_lease *lease, int fd)
{
    gchar *fd_text = g_strdup_printf("%d", fd);

    g_setenv("GPUBALANCE_DEVICE", gpubalance_lease_device(lease), TRUE);
    g_setenv("GPUBALANCE_BACKEND", gpubalance_backend_name(gpubalance_lease_backend(lease)), TRUE);
    g_setenv("GPUBALANCE_FFMPEG_ENCODER", gpubalance_lease_ffmpeg_encoder(lease), TRUE);
    g_setenv("GPUBALANCE_GST_ENCODER", gpubalance_lease_gst_encoder(lease), TRUE);
    g_setenv("GPUBALANCE_LEASE_FD", fd_text, TRUE);
    if (gpubalance_lease_backend(lease) == GPUBALANCE_BACKEND_NVENC) {
        gchar *devices = narrowed_cuda_devices(lease);

        g_setenv("CUDA_VISIBLE_DEVICES", devices, TRUE);
        g_free(devices);
    }
    if (gpubalance_lease_render_node(lease))
        g_setenv("GPUBALANCE_RENDER_NODE", gpubalance_lease_render_node(lease), TRUE);
    g_free(fd_text);
}

static int cmd_exec(int argc, char **argv)
{
    pick_options o = {.wait_timeout = -1};
    GOptionContext *octx = g_option_context_new("[OPTIONS] -- CMD [ARGS...] - hold a lease for CMD's lifetime");
    gpubalance_context *ctx = NULL;
    gpubalance_stream *stream = NULL;
    gpubalance_lease *lease = NULL;
    char **cmd = NULL;
    int status, rc, fd;

    /* Everything after "--" is the command, untouched by option parsing. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            cmd = &argv[i + 1];
            argc = i;
            break;
        }
    }
    add_pick_entries(octx, &o, FALSE);
    if ((rc = parse_options(octx, "exec", &argc, &argv)) != 0)
        goto out;
    if (!cmd || !cmd[0]) {
        rc = usage_error(octx, "exec: no command; write it after --, as in: gpubalance exec --codec h264 "
                               "--width 1920 --height 1080 -- ffmpeg ...");
        goto out;
    }
    if ((rc = stream_from_options(octx, &o, &stream)) != 0)
        goto out;
    if (!o.label)
        gpubalance_stream_set_label(stream, cmd[0]);
    if ((status = gpubalance_context_open(NULL, &ctx)) < 0 ||
        (status = gpubalance_lease_acquire(ctx, stream, &lease)) < 0 ||
        (status = fd = gpubalance_lease_keep_across_exec(lease)) < 0) {
        rc = fail("exec", status);
        goto out;
    }
    export_lease(lease, fd);
    execvp(cmd[0], cmd);
    fprintf(stderr, "gpubalance exec: cannot run %s: %s\n", cmd[0], g_strerror(errno));
    rc = errno == ENOENT ? 127 : 126;
out:
    gpubalance_lease_release(lease);
    gpubalance_stream_free(stream);
    gpubalance_context_close(ctx);
    pick_options_clear(&o);
    g_option_context_free(octx);
    return rc;
}

/* ---- reset ------------------------------------------------------------ */

static int cmd_reset(int argc, char **argv)
{
    gboolean force = FALSE;
    GOptionEntry entries[] = {
        {"force", 0, 0, G_OPTION_ARG_NONE, &force, "Start a new ledger even while leases are live", NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    GOptionContext *octx = g_option_context_new("- rebuild a damaged or stale ledger");
    int status, rc = EXIT_SUCCESS;

    g_option_context_add_main_entries(octx, entries, NULL);
    if ((rc = parse_options(octx, "reset", &argc, &argv)) != 0) {
        /* printed */
    } else if ((status = gpubalance_ledger_reset(force)) < 0) {
        rc = fail("reset", status);
    } else {
        printf("ledger reset\n");
    }
    g_option_context_free(octx);
    return rc;
}

/* ---- main ------------------------------------------------------------- */

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"status", cmd_status, "status [--json] [--watch]       devices, pools, leases, foreign load"},
    {"probe", cmd_probe, "probe [--json] [--refresh]      what discovery found, and why not"},
    {"pick", cmd_pick, "pick --codec C --width W --height H [--fps F] [--json]"},
    {"exec", cmd_exec, "exec [pick options] -- CMD...   hold a lease for CMD's lifetime"},
    {"reset", cmd_reset, "reset [--force]                 rebuild a damaged or stale ledger"},
    {"metrics", cmd_metrics, "metrics [--textfile DIR]        state and counters for Prometheus"},
    {"log", cmd_log, "log [--lines N] [--follow]      the host's placements, refusals and expiries"},
};

static int usage(FILE *out)
{
    fprintf(out, "usage: gpubalance COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++)
        fprintf(out, "  gpubalance %s\n", commands[i].summary);
    fprintf(out, "\n'gpubalance COMMAND --help' describes a command's options.\n"
                 "Environment: GPUBALANCE_CONFIG, GPUBALANCE_DIR, GPUBALANCE_LOG.\n");
    return out == stdout ? EXIT_SUCCESS : EXIT_USAGE;
}

int main(int argc, char **argv)
{
    /* The locale's character set, for option values and messages. */
    setlocale(LC_ALL, "");
    if (argc < 2)
        return usage(stderr);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0)
        return usage(stdout);
    if (strcmp(argv[1], "--version") == 0) {
        printf("gpubalance %d.%d.%d\n", GPUBALANCE_VERSION_MAJOR, GPUBALANCE_VERSION_MINOR, GPUBALANCE_VERSION_MICRO);
        return EXIT_SUCCESS;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            argv[1] = g_strdup_printf("gpubalance %s", commands[i].name);
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "gpubalance: unknown command '%s'\n\n", argv[1]);
    return usage(stderr);
}
