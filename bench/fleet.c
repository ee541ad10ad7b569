/* fleet.c - bench/fleet: placement quality of gpubalance against the
 * placers people use today, over one workload, on modelled hosts.
 *
 *   bench/fleet [--host a|b|c] [--streams N] [--seed N] [--load F]
 *               [--trace FILE] [--write-trace FILE] [--unknown-caps]
 *               [--threads N] [--optimum-max N] [--json] [--plot FILE]
 *               [--check]
 *
 * bench/README.md says what each host, placer and metric is, and keeps
 * the table this prints. */
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet.h"
#include "util.h" /* gpb_remove_tree */

#define OPTIMUM_MAX_NODES 20000000L

typedef struct {
    char *host;
    int streams;
    int seed;
    double load;
    char *trace;
    char *write_trace;
    bool unknown_caps;
    int threads;
    int optimum_max;
    bool json;
    char *plot;
    bool check;
} options;

/* One placer's replay. */
typedef struct {
    const char *name;
    fleet_world world;
} result;

typedef struct {
    const fleet_host *host;
    fleet_workload workload;
    result results[8];
    int n_results;
    bool have_optimum;
    fleet_optimum optimum;
    fleet_world optimum_world;
    char *optimum_why; /* why there is none */
} run;

static double decision_us(const fleet_world *w)
{
    return fleet_decision_us((fleet_world *)w); /* sorts its samples in place */
}

static double imbalance_mean(const fleet_world *w)
{
    return w->span > 0 ? w->imbalance_area / w->span : 0;
}

static bool replay_one(run *r, fleet_placer *p, bool timeline, char **error)
{
    result *res = &r->results[r->n_results];

    if (!p)
        return false;
    res->name = p->name;
    if (!fleet_replay(p, r->host, &r->workload, timeline, &res->world, error)) {
        fleet_placer_free(p);
        return false;
    }
    fleet_placer_free(p);
    r->n_results++;
    return true;
}

static bool run_host(run *r, const options *o, char **error)
{
    fleet_placer *p;

    if (o->trace) {
        if (!fleet_read_trace(o->trace, &r->workload, error))
            return false;
    } else {
        fleet_generate(r->host, (guint32)o->seed, o->streams, o->load, &r->workload);
    }
    if (o->write_trace && !fleet_write_trace(o->write_trace, &r->workload, error))
        return false;
    if (!(p = fleet_gpubalance_new(r->host, &r->workload, o->threads, !o->unknown_caps, error)) ||
        !replay_one(r, p, o->plot != NULL, error))
        return false;
    for (int i = 0; fleet_baseline_names[i]; i++)
        if (!replay_one(r, fleet_baseline_new(fleet_baseline_names[i], r->host, (guint32)o->seed), o->plot != NULL,
                        error))
            return false;
    if (r->workload.n > o->optimum_max) {
        r->optimum_why = g_strdup_printf("computed exactly only up to %d streams (--optimum-max); this workload has %d",
                                         o->optimum_max, r->workload.n);
        return true;
    }
    fleet_optimum_search(r->host, &r->workload, OPTIMUM_MAX_NODES, &r->optimum);
    if (!r->optimum.exact) {
        r->optimum_why = g_strdup_printf("search stopped after %ld nodes", r->optimum.nodes);
        return true;
    }
    p = fleet_assignment_placer_new("optimum", r->optimum.assignment);
    if (!fleet_replay(p, r->host, &r->workload, false, &r->optimum_world, error)) {
        fleet_placer_free(p);
        return false;
    }
    fleet_placer_free(p);
    r->have_optimum = true;
    return true;
}

static void run_clear(run *r)
{
    for (int i = 0; i < r->n_results; i++)
        fleet_world_clear(&r->results[i].world);
    g_free(r->optimum.assignment);
    g_free(r->optimum_why);
    fleet_workload_clear(&r->workload);
}

/* ---- targets ---------------------------------------------------------- */

/* Sessions caps gpubalance may have to learn: one per capped pool. */
static int caps_to_learn(const fleet_host *h)
{
    return h->pool_cap > 0 ? 1 : 0;
}

/* Prints each target and whether it is met; returns true if all are. */
static bool check_targets(const run *r, const options *o, FILE *out)
{
    const fleet_world *g = &r->results[0].world;
    int allowed = o->unknown_caps ? caps_to_learn(r->host) : 0;
    bool all = true, ok;

    ok = g->refused <= allowed;
    fprintf(out, "target %s: refused opens %d <= %d (%s)\n", ok ? "met" : "MISSED", g->refused, allowed,
            o->unknown_caps ? "caps unknown: only the refusal that teaches each cap" : "caps known: none");
    all &= ok;
    ok = g->software_while_hardware_fits == 0;
    fprintf(out, "target %s: streams sent to software while hardware had room: %d\n", ok ? "met" : "MISSED",
            g->software_while_hardware_fits);
    all &= ok;
    ok = g->excess_peak <= 1.0 + FLEET_EPSILON;
    fprintf(out,
            "target %s: no placement raised the imbalance more than 1.0 above the best device of its kind "
            "(worst: %.2f)\n",
            ok ? "met" : "MISSED", g->excess_peak);
    all &= ok;
    for (int i = 1; i < r->n_results; i++) {
        const fleet_world *b = &r->results[i].world;

        /* With unknown caps, the refusal that teaches a cap is not held
         * against it, and over-budget streams are not compared: until
         * the cap is learned gpubalance cannot keep the capped sessions
         * for the streams that need them (shown, not a target). */
        ok = g->refused - allowed <= b->refused && (o->unknown_caps || g->over_budget <= b->over_budget);
        fprintf(out, "target %s: vs %s: refused %d%s <= %d, over budget %d <= %d%s\n", ok ? "met" : "MISSED",
                r->results[i].name, g->refused, allowed ? " (less the teaching refusal)" : "", b->refused,
                g->over_budget, b->over_budget, o->unknown_caps ? " (not compared: caps unknown)" : "");
        all &= ok;
    }
    return all;
}

/* ---- output ----------------------------------------------------------- */

static void add_metrics(JsonBuilder *b, const fleet_world *w)
{
    json_builder_set_member_name(b, "refused");
    json_builder_add_int_value(b, w->refused);
    json_builder_set_member_name(b, "on_hardware");
    json_builder_add_int_value(b, w->on_hardware);
    json_builder_set_member_name(b, "on_software");
    json_builder_add_int_value(b, w->on_software);
    json_builder_set_member_name(b, "over_budget");
    json_builder_add_int_value(b, w->over_budget);
    json_builder_set_member_name(b, "imbalance_peak");
    json_builder_add_double_value(b, w->imbalance_peak);
    json_builder_set_member_name(b, "imbalance_mean");
    json_builder_add_double_value(b, imbalance_mean(w));
}

static void add_distance(JsonBuilder *b, const fleet_world *w, const fleet_world *best)
{
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "refused");
    json_builder_add_int_value(b, w->refused - best->refused);
    json_builder_set_member_name(b, "over_budget");
    json_builder_add_int_value(b, w->over_budget - best->over_budget);
    json_builder_set_member_name(b, "on_software");
    json_builder_add_int_value(b, w->on_software - best->on_software);
    json_builder_set_member_name(b, "imbalance_peak");
    json_builder_add_double_value(b, w->imbalance_peak - best->imbalance_peak);
    json_builder_end_object(b);
}

static void add_optimum(JsonBuilder *b, const run *r)
{
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "exact");
    json_builder_add_boolean_value(b, r->have_optimum);
    json_builder_set_member_name(b, "streams");
    json_builder_add_int_value(b, r->workload.n);
    json_builder_set_member_name(b, "best_means");
    json_builder_add_string_value(b, "no refused open; then the lexicographic minimum of over_budget, on_software, "
                                     "imbalance_peak");
    if (!r->have_optimum) {
        json_builder_set_member_name(b, "why_not");
        json_builder_add_string_value(b, r->optimum_why);
    } else {
        json_builder_set_member_name(b, "search_nodes");
        json_builder_add_int_value(b, r->optimum.nodes);
        add_metrics(b, &r->optimum_world);
        json_builder_set_member_name(b, "distance");
        json_builder_begin_object(b);
        for (int i = 0; i < r->n_results; i++) {
            json_builder_set_member_name(b, r->results[i].name);
            add_distance(b, &r->results[i].world, &r->optimum_world);
        }
        json_builder_end_object(b);
    }
    json_builder_end_object(b);
}

static void print_json(const run *r)
{
    JsonBuilder *b = json_builder_new();
    JsonGenerator *gen = json_generator_new();
    JsonNode *root;
    gchar *text;

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "placers");
    json_builder_begin_array(b);
    for (int i = 0; i < r->n_results; i++) {
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, r->results[i].name);
        add_metrics(b, &r->results[i].world);
        json_builder_set_member_name(b, "decision_us");
        json_builder_add_double_value(b, decision_us(&r->results[i].world));
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_set_member_name(b, "optimum");
    add_optimum(b, r);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    json_generator_set_pretty(gen, TRUE);
    text = json_generator_to_data(gen, NULL);
    printf("%s\n", text);
    g_free(text);
    json_node_unref(root);
    g_object_unref(gen);
    g_object_unref(b);
}

static void print_row(const char *name, const fleet_world *w, bool with_time)
{
    char time[32] = "-";

    if (with_time)
        snprintf(time, sizeof(time), "%.2f", decision_us(w));
    printf("| %-16s | %7d | %11d | %11d | %11d | %14.2f | %14.2f | %12.2f | %11s |\n", name, w->refused, w->on_hardware,
           w->on_software, w->over_budget, w->imbalance_peak, imbalance_mean(w), w->excess_peak, time);
}

static void print_table(const run *r, const options *o)
{
    printf("### host %s: %s\n\n", r->host->key, r->host->title);
    printf("%d streams (%s), caps %s.\n\n", r->workload.n, o->trace ? o->trace : "generated",
           o->unknown_caps ? "unknown to gpubalance" : "known");
    printf("| %-16s | %7s | %11s | %11s | %11s | %14s | %14s | %12s | %11s |\n", "placer", "refused", "on hardware",
           "on software", "over budget", "imbalance peak", "imbalance mean", "worst excess", "decision µs");
    printf("|------------------|--------:|------------:|------------:|------------:|---------------:|---------------:"
           "|-------------:|------------:|\n");
    for (int i = 0; i < r->n_results; i++)
        print_row(r->results[i].name, &r->results[i].world, true);
    if (r->have_optimum)
        print_row("offline optimum", &r->optimum_world, false);
    printf("\n");
    if (!r->have_optimum)
        printf("Offline optimum: not computed: %s.\n\n", r->optimum_why);
}

/* ---- plot -------------------------------------------------------------- */

static char *plot_path(const char *base, const char *host_key, bool several)
{
    const char *dot = strrchr(base, '.');

    if (!several)
        return g_strdup(base);
    if (!dot || strchr(dot, '/'))
        return g_strdup_printf("%s-%s", base, host_key);
    return g_strdup_printf("%.*s-%s%s", (int)(dot - base), base, host_key, dot);
}

static bool write_plot_data(const char *dir, int index, const result *res, const fleet_host *h)
{
    GString *data = g_string_new(NULL);
    char *path;
    bool ok;

    for (guint k = 0; k < res->world.samples->len; k++) {
        const fleet_sample *s = &g_array_index(res->world.samples, fleet_sample, k);

        g_string_append_printf(data, "%.3f", s->t / 60);
        for (int d = 0; d < h->n_devices; d++)
            g_string_append_printf(data, " %.2f", 100 * s->utilisation[d]);
        g_string_append_c(data, '\n');
    }
    path = g_strdup_printf("%s/%d.dat", dir, index);
    ok = g_file_set_contents(path, data->str, -1, NULL);
    g_free(path);
    g_string_truncate(data, 0);
    for (guint k = 0; k < res->world.refusals->len; k++)
        g_string_append_printf(data, "%.3f\n", g_array_index(res->world.refusals, double, k) / 60);
    path = g_strdup_printf("%s/%d.ref", dir, index);
    ok = ok && g_file_set_contents(path, data->str, -1, NULL);
    g_free(path);
    g_string_free(data, TRUE);
    return ok;
}

static void plot_panel(GString *gp, const char *dir, int index, const result *res, const fleet_host *h)
{
    const fleet_world *w = &res->world;
    bool first = true;

    g_string_append_printf(gp,
                           "set title \"%s: %d refused, %d on software, %d over budget, peak imbalance %.1f\" "
                           "font \",10\"\nplot ",
                           res->name, w->refused, w->on_software, w->over_budget, w->imbalance_peak);
    for (int d = 0; d < h->n_devices; d++) {
        if (h->devices[d].capacity <= 0)
            continue; /* a GPU without an encoder carries nothing */
        g_string_append_printf(gp, "%s'%s/%d.dat' using 1:%d with steps lw 1.5 title '%s (%s)'", first ? "" : ", ", dir,
                               index, d + 2, h->devices[d].name, h->devices[d].model);
        first = false;
    }
    if (w->refusals->len)
        g_string_append_printf(gp,
                               ", '%s/%d.ref' using 1:(190) with points pt 7 ps 0.7 lc rgb 'red' title 'refused "
                               "open'",
                               dir, index);
    g_string_append(gp, "\n");
}

static bool plot(const run *r, const char *file, char **error)
{
    char *dir = g_dir_make_tmp("gpubalance-fleet-plot-XXXXXX", NULL);
    GString *gp = g_string_new(NULL);
    char *script, *out = NULL, *err = NULL;
    gchar *argv[3] = {"gnuplot", NULL, NULL};
    GError *gerror = NULL;
    int status = 0;
    bool ok = dir != NULL;

    for (int i = 0; ok && i < r->n_results; i++)
        ok = write_plot_data(dir, i, &r->results[i], r->host);
    g_string_append_printf(gp,
                           "set terminal pngcairo size 1100,%d font \",9\"\nset output '%s'\n"
                           "set multiplot layout %d,1 title \"host %s: %s, %d streams\\nutilisation of each device's "
                           "budget over replayed time; red dots: refused opens\"\n"
                           "set yrange [0:200]\nset ylabel \"%% of budget (cut at 200)\"\nset xlabel \"minutes\"\n"
                           "set key outside right top box\nset grid ytics\nset ytics 50\n",
                           220 * r->n_results + 60, file, r->n_results, r->host->key, r->host->title, r->workload.n);
    for (int i = 0; i < r->n_results; i++)
        plot_panel(gp, dir, i, &r->results[i], r->host);
    g_string_append(gp, "unset multiplot\n");
    script = g_build_filename(dir ? dir : ".", "fleet.gp", NULL);
    ok = ok && g_file_set_contents(script, gp->str, -1, NULL);
    argv[1] = script;
    if (ok && !g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err, &status, &gerror)) {
        *error = g_strdup_printf("cannot run gnuplot (install it: apt-get install gnuplot-nox): %s", gerror->message);
        g_error_free(gerror);
        ok = false;
    } else if (ok && !g_spawn_check_wait_status(status, NULL)) {
        *error = g_strdup_printf("gnuplot failed on %s: %s", script, err);
        ok = false;
    } else if (!ok) {
        *error = g_strdup("cannot write the plot's data files");
    }
    if (dir && !g_getenv("FLEET_KEEP_PLOT_DATA"))
        gpb_remove_tree(dir);
    g_free(out);
    g_free(err);
    g_free(script);
    g_free(dir);
    g_string_free(gp, TRUE);
    return ok;
}

/* ---- main -------------------------------------------------------------- */

static bool parse_options(int argc, char **argv, options *o, char **error)
{
    GOptionEntry entries[] = {
        {"host", 0, 0, G_OPTION_ARG_STRING, &o->host, "Modelled host: a, b or c (default: all; --json: a)", "KEY"},
        {"streams", 0, 0, G_OPTION_ARG_INT, &o->streams, "Streams to generate (default 200)", "N"},
        {"seed", 0, 0, G_OPTION_ARG_INT, &o->seed, "Generator seed (default 1)", "N"},
        {"load", 0, 0, G_OPTION_ARG_DOUBLE, &o->load, "Offered load, 1.0 = the host's nominal (default 1)", "F"},
        {"trace", 0, 0, G_OPTION_ARG_FILENAME, &o->trace, "Replay this trace instead of generating", "FILE"},
        {"write-trace", 0, 0, G_OPTION_ARG_FILENAME, &o->write_trace, "Write the workload as a trace", "FILE"},
        {"unknown-caps", 0, 0, G_OPTION_ARG_NONE, &o->unknown_caps, "Do not tell gpubalance the session cap", NULL},
        {"threads", 0, 0, G_OPTION_ARG_INT, &o->threads, "Programs (threads) placing streams (default 4)", "N"},
        {"optimum-max", 0, 0, G_OPTION_ARG_INT, &o->optimum_max,
         "Compute the offline optimum up to this many streams (default 16)", "N"},
        {"json", 0, 0, G_OPTION_ARG_NONE, &o->json, "Print JSON", NULL},
        {"plot", 0, 0, G_OPTION_ARG_FILENAME, &o->plot, "Draw utilisation and refusals to this PNG (gnuplot)", "FILE"},
        {"check", 0, 0, G_OPTION_ARG_NONE, &o->check, "Exit 1 unless gpubalance meets every target", NULL},
        G_OPTION_ENTRY_NULL,
    };
    GOptionContext *oc = g_option_context_new("- placement quality against today's placers");
    GError *gerror = NULL;
    bool ok;

    o->streams = 200;
    o->seed = 1;
    o->load = 1.0;
    o->threads = 4;
    o->optimum_max = 16;
    g_option_context_add_main_entries(oc, entries, NULL);
    ok = g_option_context_parse(oc, &argc, &argv, &gerror);
    if (!ok) {
        *error = g_strdup(gerror->message);
        g_error_free(gerror);
    } else if (argc > 1) {
        *error = g_strdup_printf("unexpected argument '%s'", argv[1]);
        ok = false;
    } else if (o->streams < 1 || o->streams > 100000) {
        *error = g_strdup("--streams must be 1..100000");
        ok = false;
    } else if (!(o->load > 0) || o->load > 100) {
        *error = g_strdup("--load must be in (0, 100]");
        ok = false;
    } else if (o->threads < 1 || o->threads > 64) {
        *error = g_strdup("--threads must be 1..64");
        ok = false;
    } else if (o->host && !fleet_host_find(o->host)) {
        *error = g_strdup_printf("--host '%s': the modelled hosts are a, b and c", o->host);
        ok = false;
    } else if ((o->json || o->trace || o->write_trace) && !o->host) {
        o->host = g_strdup("a"); /* one host: one JSON object, one trace */
    }
    g_option_context_free(oc);
    return ok;
}

int main(int argc, char **argv)
{
    options o = {0};
    char *error = NULL;
    bool all_met = true;
    int status = 0;

    fleet_host_find("a"); /* fills the model's capacities */
    if (!parse_options(argc, argv, &o, &error)) {
        g_printerr("fleet: %s\n", error);
        return 2;
    }
    for (int h = 0; fleet_hosts[h] && status == 0; h++) {
        run r = {.host = fleet_hosts[h]};

        if (o.host && strcmp(o.host, r.host->key) != 0)
            continue;
        if (!run_host(&r, &o, &error)) {
            g_printerr("fleet: %s\n", error ? error : "failed");
            status = 2;
        } else {
            if (o.json)
                print_json(&r);
            else
                print_table(&r, &o);
            all_met &= check_targets(&r, &o, o.json ? stderr : stdout);
            if (!o.json)
                printf("\n");
            if (o.plot) {
                char *file = plot_path(o.plot, r.host->key, !o.host);

                if (!plot(&r, file, &error)) {
                    g_printerr("fleet: %s\n", error);
                    status = 2;
                }
                g_free(file);
            }
        }
        run_clear(&r);
    }
    if (status == 0 && o.check && !all_met)
        status = 1;
    g_free(error);
    g_free(o.host);
    g_free(o.trace);
    g_free(o.write_trace);
    g_free(o.plot);
    return status;
}
