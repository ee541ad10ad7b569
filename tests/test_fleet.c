/* test_fleet.c - bench/fleet keeps its promises: the JSON shape of the
 * issue, and gpubalance meeting its targets, on tiny seeded workloads so
 * the benchmark cannot rot. Decision times are never asserted. */
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <string.h>
#include <sys/wait.h>

#include "helpers.h"

static const char *const placer_fields[] = {"name",           "refused",     "on_hardware",
                                            "on_software",    "over_budget", "imbalance_peak",
                                            "imbalance_mean", "decision_us", NULL};
static const char *const baselines[] = {"first-gpu", "round-robin", "tdarr", "handbrake", "random", NULL};

typedef struct {
    int status; /* exit status, -1 if killed */
    char *out;
    char *err;
} fleet_run;

/* Runs bench/fleet with the arguments (NULL-terminated). */
static fleet_run run_fleet(const char *first, ...)
{
    GPtrArray *argv = g_ptr_array_new();
    GError *error = NULL;
    fleet_run r = {0};
    va_list ap;

    g_ptr_array_add(argv, (char *)g_getenv("FLEET_BIN"));
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *))
        g_ptr_array_add(argv, (char *)a);
    va_end(ap);
    g_ptr_array_add(argv, NULL);
    if (!g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &r.out, &r.err, &r.status, &error))
        g_error("cannot run %s: %s", (char *)argv->pdata[0], error->message);
    g_ptr_array_unref(argv);
    r.status = WIFEXITED(r.status) ? WEXITSTATUS(r.status) : -1;
    if (r.err && *r.err)
        g_printerr("%s", r.err);
    return r;
}

static void fleet_run_clear(fleet_run *r)
{
    g_free(r->out);
    g_free(r->err);
}

static JsonNode *parse(const char *text)
{
    GError *error = NULL;
    JsonNode *root = json_from_string(text, &error);

    if (!root)
        g_error("not JSON (%s): %s", error->message, text);
    return root;
}

static JsonObject *placer(JsonObject *root, const char *name)
{
    JsonArray *placers = json_object_get_array_member(root, "placers");

    for (guint i = 0; i < json_array_get_length(placers); i++) {
        JsonObject *p = json_array_get_object_element(placers, i);

        if (strcmp(json_object_get_string_member(p, "name"), name) == 0)
            return p;
    }
    g_error("no placer %s", name);
}

static gint64 member(JsonObject *o, const char *name)
{
    return json_object_get_int_member(o, name);
}

static void fleet_json_has_the_issue_shape(void)
{
    fleet_run r = run_fleet("--host", "a", "--streams", "12", "--load", "3", "--seed", "7", "--json", NULL);
    JsonNode *root;
    JsonObject *o, *optimum;
    JsonArray *placers;
    GList *members;

    g_assert_cmpint(r.status, ==, 0);
    root = parse(r.out);
    o = json_node_get_object(root);
    members = json_object_get_members(o);
    g_assert_cmpuint(g_list_length(members), ==, 2); /* placers and optimum, nothing else */
    g_list_free(members);
    placers = json_object_get_array_member(o, "placers");
    g_assert_cmpuint(json_array_get_length(placers), ==, 6); /* gpubalance and five baselines */
    for (guint i = 0; i < json_array_get_length(placers); i++) {
        JsonObject *p = json_array_get_object_element(placers, i);

        members = json_object_get_members(p);
        g_assert_cmpuint(g_list_length(members), ==, g_strv_length((gchar **)placer_fields));
        g_list_free(members);
        for (int f = 0; placer_fields[f]; f++)
            g_assert_true(json_object_has_member(p, placer_fields[f]));
        g_assert_cmpint(member(p, "on_hardware") + member(p, "on_software"), ==, 12);
    }
    g_assert_cmpstr(json_object_get_string_member(json_array_get_object_element(placers, 0), "name"), ==, "gpubalance");
    for (int b = 0; baselines[b]; b++)
        placer(o, baselines[b]);
    /* 12 streams: the optimum is computed exactly, with each placer's
     * distance to it */
    optimum = json_object_get_object_member(o, "optimum");
    g_assert_true(json_object_get_boolean_member(optimum, "exact"));
    g_assert_cmpint(member(optimum, "refused"), ==, 0);
    g_assert_true(json_object_has_member(json_object_get_object_member(optimum, "distance"), "gpubalance"));
    gpb_assert_contains(json_object_get_string_member(optimum, "best_means"), "lexicographic");
    json_node_unref(root);
    fleet_run_clear(&r);
}

/* The issue's targets, from the JSON: no refusal, never more refusals or
 * over-budget streams than any baseline, and no more software than the
 * optimum allows when it is known. */
static void assert_targets(const char *host, const char *streams, const char *load, const char *seed)
{
    fleet_run r =
        run_fleet("--host", host, "--streams", streams, "--load", load, "--seed", seed, "--json", "--check", NULL);
    JsonNode *root;
    JsonObject *o, *g;

    if (r.status != 0)
        g_error("host %s seed %s: targets missed (exit %d): %s", host, seed, r.status, r.err);
    root = parse(r.out);
    o = json_node_get_object(root);
    g = placer(o, "gpubalance");
    g_assert_cmpint(member(g, "refused"), ==, 0);
    for (int b = 0; baselines[b]; b++) {
        JsonObject *p = placer(o, baselines[b]);

        g_assert_cmpint(member(g, "refused"), <=, member(p, "refused"));
        g_assert_cmpint(member(g, "over_budget"), <=, member(p, "over_budget"));
    }
    gpb_assert_contains(r.err, "target met: streams sent to software while hardware had room: 0");
    gpb_assert_contains(r.err, "no placement raised the imbalance more than 1.0");
    g_assert_null(strstr(r.err, "MISSED"));
    json_node_unref(root);
    fleet_run_clear(&r);
}

static void fleet_targets_hold_on_every_host(void)
{
    static const char *const hosts[] = {"a", "b", "c"};
    static const char *const seeds[] = {"1", "2", "3"};

    for (size_t h = 0; h < G_N_ELEMENTS(hosts); h++)
        for (size_t s = 0; s < G_N_ELEMENTS(seeds); s++) {
            assert_targets(hosts[h], "12", "3", seeds[s]); /* small: with the optimum */
            assert_targets(hosts[h], "60", "1.5", seeds[s]);
        }
}

static void fleet_learns_an_unknown_cap_from_one_refusal(void)
{
    fleet_run r =
        run_fleet("--host", "a", "--streams", "60", "--load", "2", "--unknown-caps", "--json", "--check", NULL);
    JsonNode *root;

    g_assert_cmpint(r.status, ==, 0);
    root = parse(r.out);
    /* the first open past the cap is refused and teaches it; no other is */
    g_assert_cmpint(member(placer(json_node_get_object(root), "gpubalance"), "refused"), ==, 1);
    g_assert_cmpint(member(placer(json_node_get_object(root), "first-gpu"), "refused"), >, 1);
    json_node_unref(root);
    fleet_run_clear(&r);
}

/* The JSON of a run without the decision times (they vary). */
static char *without_times(const char *json)
{
    GRegex *re = g_regex_new("\"decision_us\" : [0-9.e+-]+", 0, 0, NULL);
    char *result = g_regex_replace_literal(re, json, -1, 0, "\"decision_us\" : _", 0, NULL);

    g_regex_unref(re);
    return result;
}

static void fleet_trace_round_trips_and_bad_lines_are_named(void)
{
    const char *dir = gpb_test_env(NULL);
    char *trace = g_build_filename(dir, "w.trace", NULL);
    char *bad = g_build_filename(dir, "bad.trace", NULL);
    fleet_run generated, replayed, refused;
    char *a, *b;

    generated = run_fleet("--host", "b", "--streams", "20", "--seed", "3", "--write-trace", trace, "--json", NULL);
    g_assert_cmpint(generated.status, ==, 0);
    replayed = run_fleet("--host", "b", "--trace", trace, "--seed", "3", "--json", NULL); /* random's seed */
    g_assert_cmpint(replayed.status, ==, 0);
    a = without_times(generated.out);
    b = without_times(replayed.out);
    g_assert_cmpstr(a, ==, b); /* the trace holds the whole workload */

    g_assert_true(g_file_set_contents(bad, "# a comment\n0 60 h264 1920x1080 30\n\n5 60 vp9 1280x720 30\n", -1, NULL));
    refused = run_fleet("--host", "a", "--trace", bad, NULL);
    g_assert_cmpint(refused.status, ==, 2);
    gpb_assert_contains(refused.err, "bad.trace:4: CODEC must be h264, hevc (h265) or av1 (got \"5 60 vp9");
    fleet_run_clear(&refused);
    g_assert_true(g_file_set_contents(bad, "0 -3 h264 1920x1080 30\n", -1, NULL));
    refused = run_fleet("--host", "a", "--trace", bad, NULL);
    gpb_assert_contains(refused.err, "bad.trace:1: DURATION must be a number of seconds, above 0 and at most 1e9");
    fleet_run_clear(&refused);
    g_free(a);
    g_free(b);
    fleet_run_clear(&generated);
    fleet_run_clear(&replayed);
    g_free(trace);
    g_free(bad);
}

static void fleet_plot_draws_a_png(void)
{
    const char *dir = gpb_test_env(NULL);
    char *png = g_build_filename(dir, "fleet.png", NULL);
    gchar *data = NULL;
    gsize size = 0;
    char *gnuplot = g_find_program_in_path("gnuplot");
    fleet_run r;

    if (!gnuplot)
        gpb_test_skip("gnuplot is not installed (tools/deps.sh installs gnuplot-nox)");
    g_free(gnuplot);
    r = run_fleet("--host", "c", "--streams", "30", "--plot", png, NULL);
    g_assert_cmpint(r.status, ==, 0);
    g_assert_true(g_file_get_contents(png, &data, &size, NULL));
    g_assert_cmpuint(size, >, 1000);
    g_assert_cmpint(memcmp(data, "\x89PNG", 4), ==, 0);
    g_free(data);
    g_free(png);
    fleet_run_clear(&r);
}

static const gpb_test_case cases[] = {
    {"fleet_json_has_the_issue_shape", fleet_json_has_the_issue_shape},
    {"fleet_targets_hold_on_every_host", fleet_targets_hold_on_every_host},
    {"fleet_learns_an_unknown_cap_from_one_refusal", fleet_learns_an_unknown_cap_from_one_refusal},
    {"fleet_trace_round_trips_and_bad_lines_are_named", fleet_trace_round_trips_and_bad_lines_are_named},
    {"fleet_plot_draws_a_png", fleet_plot_draws_a_png},
};

GPB_TEST_MAIN(cases)
