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

static void print_json_then_leases(JsonBuilder *builder, const gpubalance_snapshot *snap, gboolean pretty);

/* Ends the builder's top object, prints it and frees the builder. */
static void print_json(JsonBuilder *builder, gboolean pretty)
{
    print_json_then_leases(builder, NULL, pretty);
}

/* Adds text as a JSON string, made valid UTF-8. */
static void add_text(JsonBuilder *b, const char *value)
{
    gchar *valid = g_utf8_make_valid(value, -1);

    json_builder_add_string_value(b, valid);
    g_free(valid);
}

/* Starts a member of an object: member(b, "key") then its value. */
static JsonBuilder *member(JsonBuilder *b, const char *key)
{
    return json_builder_set_member_name(b, key);
}

/* A limit: null where there is none (negative). */
static void member_limit(JsonBuilder *b, const char *key, int value)
{
    json_builder_set_member_name(b, key);
    if (value >= 0)
        json_builder_add_int_value(b, value);
    else
        json_builder_add_null_value(b);
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
    json_builder_begin_array(member(b, "codecs"));
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

/* ---- a subcommand's start and end (cli.h) ------------------------------ */

int cli_start(cli_command *cmd, int *argc, char ***argv)
{
    GError *error = NULL;

    cmd->octx = g_option_context_new(cmd->parameter);
    g_option_context_add_main_entries(cmd->octx, cmd->entries, NULL);
    if (!g_option_context_parse(cmd->octx, argc, argv, &error)) {
        int rc = usage_error(cmd->octx, "%s: %s", cmd->name, error->message);

        g_error_free(error);
        return rc;
    }
    if (*argc > 1)
        return usage_error(cmd->octx, "%s: unexpected argument '%s'", cmd->name, (*argv)[1]);
    return cmd->open == CLI_OPEN_CONTEXT ? cli_open(cmd, 0) : 0;
}

int cli_open(cli_command *cmd, unsigned flags)
{
    int status = gpubalance_context_open_with_flags(NULL, flags, &cmd->ctx);

    return status < 0 ? fail(cmd->name, status) : 0;
}

int cli_snapshot(const cli_command *cmd, gpubalance_snapshot **snap)
{
    int status = gpubalance_snapshot_take(cmd->ctx, snap);

    return status < 0 ? fail(cmd->name, status) : 0;
}

int cli_end(cli_command *cmd, int rc)
{
    gpubalance_context_close(cmd->ctx);
    if (cmd->octx)
        g_option_context_free(cmd->octx);
    /* Output that never arrived (a full disk, an I/O error) is a failure:
     * a script reading `status --json > file` must not take a cut-off file
     * for the whole. */
    if ((fflush(stdout) != 0 || ferror(stdout)) && rc == EXIT_SUCCESS) {
        fprintf(stderr, "gpubalance %s: cannot write the output: %s\n", cmd->name, g_strerror(errno));
        rc = EXIT_FAILURE;
    }
    return rc;
}

/* ---- status ----------------------------------------------------------- */

static void device_json(JsonBuilder *b, const gpubalance_device_info *d)
{
    json_builder_begin_object(b);
    add_text(member(b, "id"), d->id);
    json_builder_add_string_value(member(b, "backend"), gpubalance_backend_name(d->backend));
    add_string_or_null(b, "name", d->name);
    add_codecs(b, d->codecs);
    json_builder_add_int_value(member(b, "sessions"), d->sessions);
    json_builder_add_int_value(member(b, "max_sessions"), d->max_sessions);
    json_builder_add_int_value(member(b, "foreign_sessions"), d->foreign_sessions);
    json_builder_add_double_value(member(b, "load"), d->load);
    json_builder_add_double_value(member(b, "budget"), d->budget);
    add_string_or_null(b, "pool", d->pool);
    member_limit(b, "learned_limit", d->learned_limit);
    if (d->backend == GPUBALANCE_BACKEND_SIM) {
        json_builder_add_string_value(member(b, "imitates"), gpubalance_backend_name(d->order_backend));
        json_builder_add_int_value(member(b, "enforce_sessions"), d->enforce_sessions);
    }
    if (d->backend == GPUBALANCE_BACKEND_NVENC) {
        json_builder_add_int_value(member(b, "cuda_ordinal"), d->cuda_ordinal);
        add_string_or_null(b, "gpu_uuid", d->gpu_uuid);
    }
    if (d->backend == GPUBALANCE_BACKEND_VAAPI)
        add_string_or_null(b, "render_node", d->render_node);
    json_builder_add_boolean_value(member(b, "declared"), d->declared);
    json_builder_add_boolean_value(member(b, "offered"), d->not_offered_why == NULL);
    if (d->not_offered_why)
        add_string_or_null(b, "not_offered_why", d->not_offered_why);
    if (d->pci_bus_id)
        add_string_or_null(b, "pci_bus_id", d->pci_bus_id);
    if (d->driver)
        add_string_or_null(b, "driver", d->driver);
    json_builder_end_object(b);
}

/* The value nodes of the one object every lease is written from: each
 * lease sets their values in place. Setting members anew (a hash lookup,
 * a node freed and one allocated, per member per lease) was two thirds of
 * the time spent on 1000 leases. */
typedef struct {
    JsonObject *object;
    JsonNode *device, *pid, *codec, *width, *height, *fps, *cost, *state, *label, *since, *pid_namespace;
    int64_t since_second; /* the second `since` holds now, or -1 */
} lease_object;

static JsonNode *lease_member(JsonObject *o, const char *name, GType type)
{
    JsonNode *node = json_node_init(json_node_alloc(), JSON_NODE_VALUE);

    if (type == G_TYPE_STRING)
        json_node_set_string(node, "");
    else if (type == G_TYPE_DOUBLE)
        json_node_set_double(node, 0);
    else
        json_node_set_int(node, 0);
    json_object_set_member(o, name, node); /* the object owns it, kept in this order */
    return node;
}

static void lease_object_init(lease_object *lo)
{
    JsonObject *o = lo->object = json_object_new();

    lo->device = lease_member(o, "device", G_TYPE_STRING);
    lo->pid = lease_member(o, "pid", G_TYPE_INT64);
    lo->codec = lease_member(o, "codec", G_TYPE_STRING);
    lo->width = lease_member(o, "width", G_TYPE_INT64);
    lo->height = lease_member(o, "height", G_TYPE_INT64);
    lo->fps = lease_member(o, "fps", G_TYPE_DOUBLE);
    lo->cost = lease_member(o, "cost", G_TYPE_DOUBLE);
    lo->state = lease_member(o, "state", G_TYPE_STRING);
    lo->label = lease_member(o, "label", G_TYPE_STRING);
    lo->since = lease_member(o, "since", G_TYPE_STRING);
    lo->pid_namespace = lease_member(o, "pid_namespace", G_TYPE_INT64);
    lo->since_second = -1;
}

/* A string member from text read out of the ledger: made valid UTF-8.
 * Text equal to the previous lease's is left in place: leases of one
 * device, codec and state follow each other, and setting a string frees
 * and copies it (four of each per lease otherwise). */
static void set_text(JsonNode *node, const char *text)
{
    if (g_strcmp0(json_node_get_string(node), text) == 0)
        return;
    if (g_utf8_validate(text, -1, NULL)) {
        json_node_set_string(node, text);
    } else {
        gchar *valid = g_utf8_make_valid(text, -1);

        json_node_set_string(node, valid);
        g_free(valid);
    }
}

static void lease_json(lease_object *lo, const gpubalance_lease_info *l)
{
    set_text(lo->device, l->device);
    json_node_set_int(lo->pid, l->pid);
    set_text(lo->codec, gpubalance_codec_name(l->codec));
    json_node_set_int(lo->width, l->width);
    json_node_set_int(lo->height, l->height);
    json_node_set_double(lo->fps, l->fps);
    json_node_set_double(lo->cost, l->cost);
    set_text(lo->state, gpubalance_lease_state_name(l->state));
    set_text(lo->label, l->label);
    if (l->since_unix_ms / 1000 != lo->since_second) { /* leases started in one second share the text */
        gchar *since = iso_time(l->since_unix_ms);

        json_node_set_string(lo->since, since);
        lo->since_second = l->since_unix_ms / 1000;
        g_free(since);
    }
    json_node_set_int(lo->pid_namespace, (gint64)l->pid_namespace);
}

/* Output is built in a GString and written out in pieces of about this
 * size: the leases of a large ledger would otherwise take a fresh buffer
 * of hundreds of kilobytes, page-faulted in a page at a time. */
#define OUTPUT_CHUNK (64 * 1024)

/* Writes out what out holds and empties it. Not printf("%s"): no strlen,
 * no copy through stdio's buffer. A write that fails sets stdout's error
 * flag, which cli_end() reports. */
static void write_out(GString *out)
{
    fwrite(out->str, 1, out->len, stdout);
    g_string_truncate(out, 0);
}

/* The "leases" member, appended to out as json-glib would have written it
 * in the tree: each lease generated on its own from one reused object. A
 * tree of every lease (an object, a hash table and eleven nodes each,
 * built and then walked) was most of what `status --json` cost with 1000
 * leases. Pretty, the object is generated inside two arrays, [[{...}]],
 * which puts it at the depth the tree gives it (root object, "leases"
 * array), and the text between the arrays' brackets is kept. */
static void append_leases_json(GString *out, const gpubalance_snapshot *snap, gboolean pretty)
{
    static const char open_arrays[] = "[\n  [\n    ", close_arrays[] = "\n  ]\n]";
    JsonGenerator *gen = json_generator_new();
    JsonNode *root = json_node_new(JSON_NODE_ARRAY), *inner = json_node_new(JSON_NODE_ARRAY);
    JsonArray *outer_array = json_array_new(), *inner_array = json_array_new();
    GString *one = g_string_sized_new(512);
    size_t n = gpubalance_snapshot_n_leases(snap);
    lease_object lease;

    lease_object_init(&lease);
    json_array_add_object_element(inner_array, json_object_ref(lease.object));
    json_node_take_array(inner, inner_array);
    json_array_add_element(outer_array, inner);
    json_node_take_array(root, outer_array);
    json_generator_set_root(gen, pretty ? root : json_array_get_element(inner_array, 0));
    json_generator_set_pretty(gen, pretty);
    g_string_append(out, pretty ? ",\n  \"leases\" : [" : ",\"leases\":[");
    for (size_t i = 0; i < n; i++) {
        if (out->len >= OUTPUT_CHUNK) /* written as it fills: a buffer that stays small stays in cache */
            write_out(out);
        lease_json(&lease, gpubalance_snapshot_lease(snap, i));
        g_string_append(out, i ? "," : "");
        if (!pretty) {
            json_generator_to_gstring(gen, out);
            continue;
        }
        g_string_truncate(one, 0);
        json_generator_to_gstring(gen, one);
        g_string_append(out, "\n    ");
        if (g_str_has_prefix(one->str, open_arrays) && g_str_has_suffix(one->str, close_arrays))
            g_string_append_len(out, one->str + strlen(open_arrays),
                                (gssize)(one->len - strlen(open_arrays) - strlen(close_arrays)));
        else /* another json-glib's layout: still valid JSON, indented its way */
            g_string_append(out, one->str);
    }
    g_string_append(out, pretty && n ? "\n  ]\n}" : pretty ? "]\n}" : "]}");
    g_string_free(one, TRUE);
    json_node_unref(root);
    json_object_unref(lease.object);
    g_object_unref(gen);
}

/* "devices": [...], as status and probe print them */
static void devices_json(JsonBuilder *b, const gpubalance_snapshot *snap)
{
    json_builder_begin_array(member(b, "devices"));
    for (size_t i = 0; i < gpubalance_snapshot_n_devices(snap); i++)
        device_json(b, gpubalance_snapshot_device(snap, i));
    json_builder_end_array(b);
}

/* print_json(), and with a snapshot its leases as the object's last
 * member "leases", appended by append_leases_json() before the object
 * closes again. */
static void print_json_then_leases(JsonBuilder *builder, const gpubalance_snapshot *snap, gboolean pretty)
{
    JsonGenerator *gen = json_generator_new();
    JsonNode *root = json_builder_get_root(json_builder_end_object(builder));
    GString *out = g_string_sized_new(OUTPUT_CHUNK + 4096);

    json_generator_set_root(gen, root);
    json_generator_set_pretty(gen, pretty);
    json_generator_to_gstring(gen, out);
    if (snap) {
        /* reopen the object: drop its closing brace and the space before it */
        while (out->len > 0 && out->str[out->len - 1] != '}')
            g_string_truncate(out, out->len - 1);
        g_string_truncate(out, out->len ? out->len - 1 : 0);
        while (out->len > 0 && g_ascii_isspace(out->str[out->len - 1]))
            g_string_truncate(out, out->len - 1);
        append_leases_json(out, snap, pretty);
    }
    g_string_append_c(out, '\n');
    write_out(out);
    fflush(stdout);
    g_string_free(out, TRUE);
    json_node_unref(root);
    g_object_unref(gen);
    g_object_unref(builder);
}

static void status_json(const gpubalance_snapshot *snap, gboolean pretty)
{
    JsonBuilder *b = json_builder_new();

    json_builder_begin_object(b);
    devices_json(b, snap);
    json_builder_begin_array(member(b, "pools"));
    for (size_t i = 0; i < gpubalance_snapshot_n_pools(snap); i++) {
        const gpubalance_pool_info *p = gpubalance_snapshot_pool(snap, i);

        json_builder_begin_object(b);
        add_text(member(b, "name"), p->name);
        json_builder_add_int_value(member(b, "sessions"), p->sessions);
        json_builder_add_int_value(member(b, "max_sessions"), p->max_sessions);
        member_limit(b, "learned_limit", p->learned_limit);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    print_json_then_leases(b, snap, pretty);
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
    cli_command cmd = {.name = "status", .parameter = "- devices, pools, leases and foreign load", .entries = entries};
    gpubalance_snapshot *snap;
    int rc;

    if ((rc = cli_start(&cmd, &argc, &argv)) != 0)
        return cli_end(&cmd, rc);
    if (watch)
        return cli_end(&cmd, cli_watch_status(cmd.ctx, json, print_status));
    if ((rc = cli_snapshot(&cmd, &snap)) != 0)
        return cli_end(&cmd, rc);
    if (json)
        status_json(snap, TRUE);
    else
        status_text(snap);
    gpubalance_snapshot_free(snap);
    return cli_end(&cmd, EXIT_SUCCESS);
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
    cli_command cmd = {.name = "probe",
                       .parameter = "- what discovery found, and why not",
                       .entries = entries,
                       .open = CLI_OPEN_LATER};
    gpubalance_snapshot *snap;
    gpubalance_context *ctx;
    int rc;

    if ((rc = cli_start(&cmd, &argc, &argv)) != 0 ||
        (rc = cli_open(&cmd, refresh ? GPUBALANCE_OPEN_REFRESH_PROBES : 0)) != 0 ||
        (rc = cli_snapshot(&cmd, &snap)) != 0)
        return cli_end(&cmd, rc);
    ctx = cmd.ctx;
    if (json) {
        JsonBuilder *b = json_builder_new();

        json_builder_begin_object(b);
        add_string_or_null(b, "config", gpubalance_context_config_path(ctx));
        add_string_or_null(b, "ledger", gpubalance_context_ledger_path(ctx));
        devices_json(b, snap);
        json_builder_begin_array(member(b, "notes"));
        for (size_t i = 0; i < gpubalance_context_n_notes(ctx); i++)
            add_text(b, gpubalance_context_note(ctx, i));
        json_builder_end_array(b);
        print_json(b, TRUE);
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
    gpubalance_snapshot_free(snap);
    return cli_end(&cmd, EXIT_SUCCESS);
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

#define N_PICK_ENTRIES 13 /* the terminator included */

/* pick's options into entries (exec's: the same without --json). */
static void pick_entries(pick_options *o, gboolean with_json, GOptionEntry entries[N_PICK_ENTRIES])
{
    const GOptionEntry all[N_PICK_ENTRIES] = {
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

    memcpy(entries, all, sizeof(all));
    if (!with_json)
        entries[N_PICK_ENTRIES - 2] = entries[N_PICK_ENTRIES - 1];
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
        add_text(member(b, "device"), gpubalance_lease_device(lease));
        json_builder_add_string_value(member(b, "backend"), gpubalance_backend_name(gpubalance_lease_backend(lease)));
        add_text(member(b, "reason"), gpubalance_lease_reason(lease));
        json_builder_add_string_value(member(b, "ffmpeg_encoder"), gpubalance_lease_ffmpeg_encoder(lease));
        json_builder_add_string_value(member(b, "gst_encoder"), gpubalance_lease_gst_encoder(lease));
        if (gpubalance_lease_cuda_ordinal(lease) >= 0) {
            json_builder_add_int_value(member(b, "cuda_ordinal"), gpubalance_lease_cuda_ordinal(lease));
        }
        if (gpubalance_lease_render_node(lease))
            add_string_or_null(b, "render_node", gpubalance_lease_render_node(lease));
        print_json(b, FALSE);
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

/* pick and exec: the stream from the options, placed. */
typedef struct {
    pick_options o;
    GOptionEntry entries[N_PICK_ENTRIES];
    cli_command cmd;
    gpubalance_stream *stream;
    gpubalance_lease *lease;
} placement;

static int placement_start(placement *p, const char *name, const char *parameter, gboolean with_json, int *argc,
                           char ***argv)
{
    p->o.wait_timeout = -1;
    pick_entries(&p->o, with_json, p->entries);
    p->cmd = (cli_command){.name = name, .parameter = parameter, .entries = p->entries, .open = CLI_OPEN_LATER};
    return cli_start(&p->cmd, argc, argv);
}

/* Builds the stream (labelled default_label unless --label says), then
 * opens the context and takes the lease: a bad stream is a usage error
 * whatever the ledger's state. */
static int placement_acquire(placement *p, const char *default_label)
{
    int rc, status;

    if ((rc = stream_from_options(p->cmd.octx, &p->o, &p->stream)) != 0)
        return rc;
    if (!p->o.label && default_label)
        gpubalance_stream_set_label(p->stream, default_label);
    if ((rc = cli_open(&p->cmd, 0)) != 0)
        return rc;
    if ((status = gpubalance_lease_acquire(p->cmd.ctx, p->stream, &p->lease)) < 0)
        return fail(p->cmd.name, status);
    return 0;
}

static int placement_end(placement *p, int rc)
{
    gpubalance_lease_release(p->lease);
    gpubalance_stream_free(p->stream);
    pick_options_clear(&p->o);
    return cli_end(&p->cmd, rc);
}

static int cmd_pick(int argc, char **argv)
{
    placement p = {0};
    int rc;

    if ((rc = placement_start(&p, "pick", "- what would be chosen for this stream now", TRUE, &argc, &argv)) == 0 &&
        (rc = placement_acquire(&p, NULL)) == 0)
        print_pick(p.lease, p.o.json);
    return placement_end(&p, rc);
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
    placement p = {0};
    char **child = NULL;
    int rc, fd, exec_errno;

    /* Everything after "--" is the command, untouched by option parsing. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            child = &argv[i + 1];
            argc = i;
            break;
        }
    }
    if ((rc = placement_start(&p, "exec", "[OPTIONS] -- CMD [ARGS...] - hold a lease for CMD's lifetime", FALSE, &argc,
                              &argv)) != 0)
        return placement_end(&p, rc);
    if (!child || !child[0])
        return placement_end(&p, usage_error(p.cmd.octx, "exec: no command; write it after --, as in: gpubalance "
                                                         "exec --codec h264 --width 1920 --height 1080 -- ffmpeg ..."));
    if ((rc = placement_acquire(&p, child[0])) != 0)
        return placement_end(&p, rc);
    if ((fd = gpubalance_lease_keep_across_exec(p.lease)) < 0)
        return placement_end(&p, fail("exec", fd));
    export_lease(p.lease, fd);
    execvp(child[0], child);
    exec_errno = errno;
    fprintf(stderr, "gpubalance exec: cannot run %s: %s\n", child[0], g_strerror(exec_errno));
    return placement_end(&p, exec_errno == ENOENT ? 127 : 126);
}

/* ---- reset ------------------------------------------------------------ */

static int cmd_reset(int argc, char **argv)
{
    gboolean force = FALSE;
    GOptionEntry entries[] = {
        {"force", 0, 0, G_OPTION_ARG_NONE, &force, "Start a new ledger even while leases are live", NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    /* no context: a damaged ledger may not open */
    cli_command cmd = {.name = "reset",
                       .parameter = "- rebuild a damaged or stale ledger",
                       .entries = entries,
                       .open = CLI_OPEN_LATER};
    int status, rc;

    if ((rc = cli_start(&cmd, &argc, &argv)) != 0)
        return cli_end(&cmd, rc);
    if ((status = gpubalance_ledger_reset(force)) < 0)
        return cli_end(&cmd, fail("reset", status));
    printf("ledger reset\n");
    return cli_end(&cmd, EXIT_SUCCESS);
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
