/* metrics.c - `gpubalance metrics`: the host's state and counters in the
 * Prometheus text exposition format (version 0.0.4), on stdout or as a
 * file for node_exporter's textfile collector.
 *
 * Names follow Prometheus' conventions: a gpubalance_ prefix, the unit in
 * the name (cost units: one 1080p30 stream's worth of encoding), _total on
 * counters. Every metric is listed in gpubalance(1). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define TEXTFILE_NAME "gpubalance.prom"

/* A label value: backslash, double quote and newline escaped. */
static void append_label(GString *out, const char *name, const char *value, gboolean first)
{
    g_string_append_printf(out, "%s%s=\"", first ? "" : ",", name);
    for (const char *p = value ? value : ""; *p; p++) {
        if (*p == '\\' || *p == '"')
            g_string_append_c(out, '\\');
        if (*p == '\n')
            g_string_append(out, "\\n");
        else
            g_string_append_c(out, *p);
    }
    g_string_append_c(out, '"');
}

static void header(GString *out, const char *name, const char *type, const char *help)
{
    g_string_append_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* {id="...",backend="...",name="...",pool="..."} and an optional extra
 * label, as the start of a sample line. */
static void device_sample(GString *out, const char *name, const gpubalance_device_info *d, const char *extra_name,
                          const char *extra_value)
{
    g_string_append_printf(out, "%s{", name);
    append_label(out, "id", d->id, TRUE);
    append_label(out, "backend", gpubalance_backend_name(d->backend), FALSE);
    append_label(out, "name", d->name, FALSE);
    append_label(out, "pool", d->pool, FALSE);
    if (extra_name)
        append_label(out, extra_name, extra_value, FALSE);
    g_string_append(out, "} ");
}

static void value(GString *out, double v)
{
    char text[G_ASCII_DTOSTR_BUF_SIZE];

    /* the C locale's decimal point, whatever the user's locale */
    g_string_append_printf(out, "%s\n", g_ascii_dtostr(text, sizeof(text), v));
}

typedef enum { SESSIONS, FOREIGN, LIMIT, LEARNED, LOAD, BUDGET } device_gauge;

static const struct {
    const char *name;
    const char *help;
} device_gauges[] = {
    [SESSIONS] = {"gpubalance_device_sessions", "Leases held on the device by gpubalance users."},
    [FOREIGN] = {"gpubalance_device_foreign_sessions", "Encode sessions on the device that gpubalance did not grant."},
    [LIMIT] = {"gpubalance_device_session_limit", "Configured session limit of the device (absent: none)."},
    [LEARNED] = {"gpubalance_device_learned_session_limit",
                 "Session limit learned from a refusal, while in force (absent: none)."},
    [LOAD] = {"gpubalance_device_load_cost_units", "Sum of the costs of the device's leases (1 = one 1080p30 stream)."},
    [BUDGET] = {"gpubalance_device_budget_cost_units", "Cost budget of the device (absent: none)."},
};

/* Whether the device has this gauge, and its value. */
static gboolean device_gauge_value(const gpubalance_device_info *d, device_gauge g, double *v)
{
    switch (g) {
    case SESSIONS:
        *v = d->sessions;
        return TRUE;
    case FOREIGN:
        *v = d->foreign_sessions;
        return TRUE;
    case LIMIT:
        *v = d->max_sessions;
        return d->max_sessions > 0;
    case LEARNED:
        *v = d->learned_limit;
        return d->learned_limit >= 0;
    case LOAD:
        *v = d->load;
        return TRUE;
    case BUDGET:
        *v = d->budget;
        return d->budget > 0;
    }
    return FALSE;
}

static void device_gauges_text(GString *out, const gpubalance_snapshot *snap)
{
    for (size_t g = 0; g < G_N_ELEMENTS(device_gauges); g++) {
        header(out, device_gauges[g].name, "gauge", device_gauges[g].help);
        for (size_t i = 0; i < gpubalance_snapshot_n_devices(snap); i++) {
            const gpubalance_device_info *d = gpubalance_snapshot_device(snap, i);
            double v;

            if (!device_gauge_value(d, (device_gauge)g, &v))
                continue;
            device_sample(out, device_gauges[g].name, d, NULL, NULL);
            value(out, v);
        }
    }
}

static void pool_gauges_text(GString *out, const gpubalance_snapshot *snap)
{
    static const char *const names[] = {"gpubalance_pool_sessions", "gpubalance_pool_session_limit",
                                        "gpubalance_pool_learned_session_limit"};
    static const char *const helps[] = {"Leases held on the pool's devices.",
                                        "Configured session limit of the pool (absent: none).",
                                        "Session limit of the pool learned from a refusal, while in force."};

    for (size_t g = 0; g < G_N_ELEMENTS(names); g++) {
        header(out, names[g], "gauge", helps[g]);
        for (size_t i = 0; i < gpubalance_snapshot_n_pools(snap); i++) {
            const gpubalance_pool_info *p = gpubalance_snapshot_pool(snap, i);
            int v = g == 0 ? p->sessions : g == 1 ? p->max_sessions : p->learned_limit;

            if ((g == 1 && v <= 0) || (g == 2 && v < 0))
                continue; /* no limit of that kind */
            g_string_append_printf(out, "%s{", names[g]);
            append_label(out, "pool", p->name, TRUE);
            g_string_append(out, "} ");
            value(out, v);
        }
    }
}

/* Counters kept per device; one metric may gather several (by a label). */
static const struct {
    const char *name;
    const char *help;
    gpubalance_counter counter;
    const char *label;
    const char *label_value;
} device_counters[] = {
    {"gpubalance_placements_total", "Leases granted on the device, every attempt and fallback included.",
     GPUBALANCE_COUNTER_PLACEMENTS, NULL, NULL},
    {"gpubalance_software_fallbacks_total", "Leases placed on the device by when-full=software.",
     GPUBALANCE_COUNTER_FALLBACKS, NULL, NULL},
    {"gpubalance_open_failures_total", "Encoder opens reported failed on the device, by failure kind.",
     GPUBALANCE_COUNTER_FAILURES_CAPACITY, "kind", "capacity"},
    {"gpubalance_open_failures_total", NULL, GPUBALANCE_COUNTER_FAILURES_UNAVAILABLE, "kind", "unavailable"},
    {"gpubalance_open_failures_total", NULL, GPUBALANCE_COUNTER_FAILURES_OTHER, "kind", "other"},
    {"gpubalance_learned_limits_total", "Session limits learned from capacity refusals on the device.",
     GPUBALANCE_COUNTER_LIMITS_LEARNED, NULL, NULL},
    {"gpubalance_expired_leases_total", "Leases on the device whose process ended without releasing them.",
     GPUBALANCE_COUNTER_LEASES_EXPIRED, NULL, NULL},
};

static void device_counters_text(GString *out, const gpubalance_snapshot *snap)
{
    for (size_t c = 0; c < G_N_ELEMENTS(device_counters); c++) {
        if (device_counters[c].help)
            header(out, device_counters[c].name, "counter", device_counters[c].help);
        for (size_t i = 0; i < gpubalance_snapshot_n_devices(snap); i++) {
            device_sample(out, device_counters[c].name, gpubalance_snapshot_device(snap, i), device_counters[c].label,
                          device_counters[c].label_value);
            value(out, (double)gpubalance_snapshot_counter(snap, i, device_counters[c].counter));
        }
    }
}

static void host_text(GString *out, const gpubalance_snapshot *snap)
{
    static const struct {
        const char *reason;
        gpubalance_counter counter;
    } rejected[] = {
        {"full", GPUBALANCE_COUNTER_REFUSED_FULL},
        {"timeout", GPUBALANCE_COUNTER_REFUSED_TIMEOUT},
        {"unsupported", GPUBALANCE_COUNTER_REFUSED_UNSUPPORTED},
        {"no_candidate", GPUBALANCE_COUNTER_REFUSED_NO_CANDIDATE},
    };

    header(out, "gpubalance_leases", "gauge", "Leases held on the host, every device included.");
    g_string_append(out, "gpubalance_leases ");
    value(out, (double)gpubalance_snapshot_n_leases(snap));
    header(out, "gpubalance_waits_total", "counter", "Acquires that blocked with when-full=wait.");
    g_string_append(out, "gpubalance_waits_total ");
    value(out, (double)gpubalance_snapshot_counter(snap, GPUBALANCE_HOST, GPUBALANCE_COUNTER_WAITS));
    header(out, "gpubalance_rejected_requests_total", "counter", "Acquires that got no lease, by reason.");
    for (size_t i = 0; i < G_N_ELEMENTS(rejected); i++) {
        g_string_append(out, "gpubalance_rejected_requests_total{");
        append_label(out, "reason", rejected[i].reason, TRUE);
        g_string_append(out, "} ");
        value(out, (double)gpubalance_snapshot_counter(snap, GPUBALANCE_HOST, rejected[i].counter));
    }
}

/* The whole exposition of one snapshot. */
static gchar *metrics_text(const gpubalance_snapshot *snap)
{
    GString *out = g_string_new(NULL);

    device_gauges_text(out, snap);
    pool_gauges_text(out, snap);
    device_counters_text(out, snap);
    host_text(out, snap);
    return g_string_free(out, FALSE);
}

/* node_exporter reads *.prom files whenever it is scraped: the file is
 * written under another name and renamed into place, so a scrape never
 * sees half of it (GLib's consistent mode: temp file, fsync, rename). */
static int write_textfile(const char *dir, const char *text)
{
    gchar *path = g_build_filename(dir, TEXTFILE_NAME, NULL);
    GError *error = NULL;
    int rc = EXIT_SUCCESS;

    if (!g_file_set_contents_full(path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0644, &error)) {
        fprintf(stderr, "gpubalance metrics: cannot write %s: %s\n", path, error->message);
        g_error_free(error);
        rc = EXIT_FAILURE;
    }
    g_free(path);
    return rc;
}

int cmd_metrics(int argc, char **argv)
{
    gchar *textfile = NULL;
    GOptionEntry entries[] = {
        {"textfile", 0, 0, G_OPTION_ARG_FILENAME, &textfile,
         "Write DIR/" TEXTFILE_NAME " atomically (for node_exporter's textfile collector) instead of printing", "DIR"},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    cli_command cmd = {
        .name = "metrics", .parameter = "- the host's state and counters for Prometheus", .entries = entries};
    gpubalance_snapshot *snap;
    gchar *text;
    int rc;

    if ((rc = cli_start(&cmd, &argc, &argv)) == 0 && (rc = cli_snapshot(&cmd, &snap)) == 0) {
        text = metrics_text(snap);
        if (textfile) {
            rc = write_textfile(textfile, text);
        } else {
            fputs(text, stdout);
            rc = fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        }
        g_free(text);
        gpubalance_snapshot_free(snap);
    }
    g_free(textfile);
    return cli_end(&cmd, rc);
}
