/* workload.c - the modelled hosts, the seeded workload generator and the
 * trace format (bench/README.md documents both). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cost.h"
#include "fleet.h"

#define H264 (1u << GPUBALANCE_CODEC_H264)
#define HEVC (1u << GPUBALANCE_CODEC_HEVC)
#define AV1 (1u << GPUBALANCE_CODEC_AV1)
#define ALL_CODECS (H264 | HEVC | AV1)

/* A CPU encodes one cost unit per two cores (the core's software default). */
#define CPU(cores)                                                                                                     \
    {                                                                                                                  \
        "software", "CPU (" #cores " cores)", KIND_SOFTWARE, true, false, ALL_CODECS, (cores) / 2.0                    \
    }

static fleet_host host_a = {
    "a",
    "two GeForce GPUs under the per-system cap of 8, a VA-API iGPU, the CPU",
    {
        {"gpu0", "GeForce RTX 3060", KIND_NVENC, true, true, H264 | HEVC, 0},
        {"gpu1", "GeForce RTX 4060", KIND_NVENC, true, true, ALL_CODECS, 0},
        {"igpu", "Intel UHD Graphics 770", KIND_VAAPI, true, false, H264 | HEVC, 16},
        CPU(8),
    },
    4,
    8,
    20,
};

static fleet_host host_b = {
    "b",
    "four datacenter GPUs with throughput budgets, no session cap",
    {
        {"gpu0", "NVIDIA L4", KIND_NVENC, true, false, ALL_CODECS, 0},
        {"gpu1", "NVIDIA L4", KIND_NVENC, true, false, ALL_CODECS, 0},
        {"gpu2", "NVIDIA L4", KIND_NVENC, true, false, ALL_CODECS, 0},
        {"gpu3", "NVIDIA L4", KIND_NVENC, true, false, ALL_CODECS, 0},
        CPU(32),
    },
    5,
    0,
    85,
};

static fleet_host host_c = {
    "c",
    "a mix: an H100 without NVENC first, an L4, an RTX A4000, the CPU",
    {
        {"gpu0", "NVIDIA H100", KIND_NVENC, false, false, 0, 0},
        {"gpu1", "NVIDIA L4", KIND_NVENC, true, false, ALL_CODECS, 0},
        {"gpu2", "NVIDIA RTX A4000", KIND_NVENC, true, false, H264 | HEVC, 0},
        CPU(16),
    },
    4,
    0,
    32,
};

const fleet_host *const fleet_hosts[] = {&host_a, &host_b, &host_c, NULL};

/* NVIDIA capacities come from the core's cost model (common/src/cost.c),
 * the same table that gives discovered GPUs their default budget. */
static void fill_nvidia_capacities(void)
{
    static const struct {
        const char *model;
        int architecture;
    } archs[] = {
        {"GeForce RTX 3060", GPB_NVML_ARCH_AMPERE}, {"GeForce RTX 4060", GPB_NVML_ARCH_ADA},
        {"NVIDIA L4", GPB_NVML_ARCH_ADA},           {"NVIDIA H100", GPB_NVML_ARCH_HOPPER},
        {"NVIDIA RTX A4000", GPB_NVML_ARCH_AMPERE},
    };
    fleet_host *hosts[] = {&host_a, &host_b, &host_c};

    for (size_t h = 0; h < G_N_ELEMENTS(hosts); h++)
        for (int d = 0; d < hosts[h]->n_devices; d++) {
            fleet_device *dev = &hosts[h]->devices[d];

            for (size_t a = 0; a < G_N_ELEMENTS(archs) && dev->kind == KIND_NVENC; a++)
                if (strcmp(dev->model, archs[a].model) == 0)
                    dev->capacity =
                        dev->has_encoder ? gpb_nvenc_default_budget(archs[a].architecture, 0, dev->model) : 0;
        }
}

const fleet_host *fleet_host_find(const char *key)
{
    static gsize once;

    if (g_once_init_enter(&once)) {
        fill_nvidia_capacities();
        g_once_init_leave(&once, 1);
    }
    for (int i = 0; fleet_hosts[i]; i++)
        if (strcmp(fleet_hosts[i]->key, key) == 0)
            return fleet_hosts[i];
    return NULL;
}

/* The core's formula, kept in milli-units as the ledger keeps loads. */
static double stream_cost(int width, int height, double fps)
{
    return round((double)width * height * fps / (1920.0 * 1080.0 * 30.0) * 1000) / 1000;
}

/* One value of a weighted table, drawn with rand. */
static int weighted(GRand *rand, const double *weights, int n)
{
    double x = g_rand_double(rand), sum = 0;

    for (int i = 0; i < n; i++) {
        sum += weights[i];
        if (x < sum)
            return i;
    }
    return n - 1;
}

void fleet_generate(const fleet_host *host, guint32 seed, int n, double load, fleet_workload *out)
{
    static const int sizes[][2] = {{854, 480}, {1280, 720}, {1920, 1080}, {2560, 1440}, {3840, 2160}};
    static const double size_weights[] = {0.20, 0.25, 0.35, 0.10, 0.10};
    static const double rates[] = {25, 30, 50, 60};
    static const double rate_weights[] = {0.25, 0.40, 0.15, 0.20};
    static const double min_duration = 60, max_duration = 600;
    GRand *rand = g_rand_new_with_seed(seed);
    /* Little's law: concurrency = arrival rate x mean duration */
    double mean_gap = (min_duration + max_duration) / 2 / (host->mean_concurrency * load);
    double t = 0;

    out->streams = g_new0(fleet_stream, n);
    out->n = n;
    for (int i = 0; i < n; i++) {
        fleet_stream *s = &out->streams[i];
        int size = weighted(rand, size_weights, G_N_ELEMENTS(size_weights));

        /* A quarter of the arrivals come in bursts (a batch of jobs, a
         * playlist started at once): within two seconds of the previous. */
        if (i > 0)
            t += g_rand_double(rand) < 0.25 ? g_rand_double_range(rand, 0, 2) : -mean_gap * log(g_rand_double(rand));
        s->start = round(t * 1000) / 1000;
        s->duration = round(g_rand_double_range(rand, min_duration, max_duration) * 1000) / 1000;
        s->codec = g_rand_double(rand) < 0.7 ? GPUBALANCE_CODEC_H264 : GPUBALANCE_CODEC_HEVC;
        s->width = sizes[size][0];
        s->height = sizes[size][1];
        s->fps = rates[weighted(rand, rate_weights, G_N_ELEMENTS(rate_weights))];
        s->cost = stream_cost(s->width, s->height, s->fps);
    }
    g_rand_free(rand);
}

void fleet_workload_clear(fleet_workload *w)
{
    g_free(w->streams);
    w->streams = NULL;
    w->n = 0;
}

/* Parses one trace line's fields into s, or says what is wrong. */
static const char *parse_stream(char **fields, fleet_stream *s)
{
    char *end;
    int codec, used = 0;

    if (g_strv_length(fields) != 5)
        return "expected 5 fields: START DURATION CODEC WIDTHxHEIGHT FPS";
    s->start = g_ascii_strtod(fields[0], &end);
    if (*end || !(s->start >= 0) || s->start > 1e9)
        return "START must be a number of seconds, 0..1e9";
    s->duration = g_ascii_strtod(fields[1], &end);
    if (*end || !(s->duration > 0) || s->duration > 1e9)
        return "DURATION must be a number of seconds, above 0 and at most 1e9";
    if ((codec = gpubalance_codec_from_name(fields[2])) < 0)
        return "CODEC must be h264, hevc (h265) or av1";
    s->codec = (gpubalance_codec)codec;
    if (sscanf(fields[3], "%dx%d%n", &s->width, &s->height, &used) != 2 || fields[3][used] || s->width < 16 ||
        s->width > 16384 || s->height < 16 || s->height > 16384)
        return "size must be WIDTHxHEIGHT, each 16..16384";
    s->fps = g_ascii_strtod(fields[4], &end);
    if (*end || !(s->fps > 0) || s->fps > 1000)
        return "FPS must be a number in (0, 1000]";
    s->cost = stream_cost(s->width, s->height, s->fps);
    return NULL;
}

static gint by_start(gconstpointer a, gconstpointer b)
{
    const fleet_stream *x = a, *y = b;

    return (x->start > y->start) - (x->start < y->start);
}

bool fleet_parse_trace(const char *text, size_t length, const char *name, fleet_workload *out, char **error)
{
    gchar *copy = g_strndup(text, length); /* stops at a NUL byte: the rest is not a line */
    gchar **lines = g_strsplit(copy, "\n", -1);
    GArray *streams = g_array_new(FALSE, TRUE, sizeof(fleet_stream));
    bool ok = true;

    for (int i = 0; lines[i] && ok; i++) {
        gchar *line = g_strstrip(lines[i]);
        gchar **fields;
        fleet_stream s;
        const char *why;

        if (!*line || *line == '#')
            continue;
        fields = g_regex_split_simple("[ \t]+", line, 0, 0);
        if ((why = parse_stream(fields, &s))) {
            *error = g_strdup_printf("%s:%d: %s (got \"%s\")", name, i + 1, why, line);
            ok = false;
        } else {
            g_array_append_val(streams, s);
        }
        g_strfreev(fields);
    }
    if (ok && streams->len == 0) {
        *error = g_strdup_printf("%s: no streams in the trace", name);
        ok = false;
    }
    g_strfreev(lines);
    g_free(copy);
    if (!ok) {
        g_array_unref(streams);
        return false;
    }
    g_array_sort(streams, by_start); /* stable: ties keep file order */
    out->n = (int)streams->len;
    out->streams = (fleet_stream *)g_array_free(streams, FALSE);
    return true;
}

bool fleet_read_trace(const char *path, fleet_workload *out, char **error)
{
    gchar *text = NULL;
    gsize length = 0;
    GError *gerror = NULL;
    bool ok;

    if (!g_file_get_contents(path, &text, &length, &gerror)) {
        *error = g_strdup_printf("%s: %s", path, gerror->message);
        g_error_free(gerror);
        return false;
    }
    ok = fleet_parse_trace(text, length, path, out, error);
    g_free(text);
    return ok;
}

bool fleet_write_trace(const char *path, const fleet_workload *w, char **error)
{
    GString *text = g_string_new("# gpubalance fleet trace: START DURATION CODEC WIDTHxHEIGHT FPS (seconds)\n");
    GError *gerror = NULL;
    bool ok;

    for (int i = 0; i < w->n; i++) {
        const fleet_stream *s = &w->streams[i];
        char start[G_ASCII_DTOSTR_BUF_SIZE], duration[G_ASCII_DTOSTR_BUF_SIZE], fps[G_ASCII_DTOSTR_BUF_SIZE];

        g_string_append_printf(text, "%s %s %s %dx%d %s\n", g_ascii_formatd(start, sizeof(start), "%.3f", s->start),
                               g_ascii_formatd(duration, sizeof(duration), "%.3f", s->duration),
                               gpubalance_codec_name(s->codec), s->width, s->height,
                               g_ascii_formatd(fps, sizeof(fps), "%g", s->fps));
    }
    ok = g_file_set_contents(path, text->str, (gssize)text->len, &gerror);
    if (!ok) {
        *error = g_strdup_printf("%s: %s", path, gerror->message);
        g_error_free(gerror);
    }
    g_string_free(text, TRUE);
    return ok;
}
