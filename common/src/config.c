/* config.c - reads the GKeyFile configuration and checks every value.
 *
 * Every error names the file, the group, the key, the value and what is
 * allowed, because a config mistake on a transcode farm is found by reading
 * the message, not the source. */
#define _GNU_SOURCE
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define SIM_DEFAULT_CODECS ((1u << GPUBALANCE_CODEC_H264) | (1u << GPUBALANCE_CODEC_HEVC))
#define SOFTWARE_DEFAULT_CODECS ((1u << GPUBALANCE_CODEC_H264) | (1u << GPUBALANCE_CODEC_HEVC))
#define MAX_SESSIONS_LIMIT 4096
#define MAX_BUDGET 1e6

static const char *const general_keys[] = {"policy",   "order",        "when-full", "wait-timeout",
                                           "discover", "learn-expiry", NULL};
static const char *const software_keys[] = {"budget", "codecs", NULL};
static const char *const vaapi_keys[] = {"budget", NULL};
static const char *const pool_keys[] = {"max-sessions", NULL};
static const char *const device_keys[] = {
    "backend",   "codecs",     "max-sessions", "budget", "pool",        "enforce-sessions", "imitates",
    "max-width", "max-height", "ten-bit",      "name",   "cuda-device", "render-node",      NULL};

typedef struct {
    const char *file;
    GKeyFile *kf;
} parse_ctx;

static void device_config_free(gpointer data)
{
    gpb_device_config *dev = data;

    g_free(dev->group_name);
    g_free(dev->id);
    g_free(dev->display_name);
    g_free(dev->pool);
    g_free(dev->render_node);
    g_free(dev);
}

static void pool_config_free(gpointer data)
{
    gpb_pool_config *pool = data;

    g_free(pool->name);
    g_free(pool);
}

gpb_config *gpb_config_new_default(void)
{
    gpb_config *config = g_new0(gpb_config, 1);

    config->policy = GPUBALANCE_POLICY_BALANCED;
    config->order.backends[0] = GPUBALANCE_BACKEND_NVENC;
    config->order.backends[1] = GPUBALANCE_BACKEND_VAAPI;
    config->order.backends[2] = GPUBALANCE_BACKEND_SOFTWARE;
    config->order.n = 3;
    config->when_full = GPUBALANCE_WHEN_FULL_SOFTWARE;
    config->wait_timeout = 30;
    config->discover = true;
    config->learn_expiry = 600;
    config->software_budget = -1; /* the core-count formula */
    config->vaapi_budget = GPB_VAAPI_DEFAULT_BUDGET;
    config->software_codecs = SOFTWARE_DEFAULT_CODECS;
    config->devices = g_ptr_array_new_with_free_func(device_config_free);
    config->pools = g_ptr_array_new_with_free_func(pool_config_free);
    return config;
}

void gpb_config_free(gpb_config *config)
{
    if (!config)
        return;
    g_free(config->path);
    g_ptr_array_unref(config->devices);
    g_ptr_array_unref(config->pools);
    g_free(config);
}

/* ---- value parsers shared with the stream setters ---------------------- */

int gpb_policy_parse(const char *text, gpubalance_policy *out)
{
    if (g_strcmp0(text, "balanced") == 0)
        *out = GPUBALANCE_POLICY_BALANCED;
    else if (g_strcmp0(text, "fill") == 0)
        *out = GPUBALANCE_POLICY_FILL;
    else
        return gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "policy '%s' is not one of: balanced, fill", text ? text : "");
    return 0;
}

int gpb_when_full_parse(const char *text, gpubalance_when_full *out)
{
    if (g_strcmp0(text, "software") == 0)
        *out = GPUBALANCE_WHEN_FULL_SOFTWARE;
    else if (g_strcmp0(text, "wait") == 0)
        *out = GPUBALANCE_WHEN_FULL_WAIT;
    else if (g_strcmp0(text, "fail") == 0)
        *out = GPUBALANCE_WHEN_FULL_FAIL;
    else
        return gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "when-full '%s' is not one of: software, wait, fail",
                        text ? text : "");
    return 0;
}

int gpb_order_parse(const char *text, gpb_order *out)
{
    gchar **parts;
    gpb_order order = {.n = 0};
    int status = 0;

    if (!text)
        return gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "order is empty");
    parts = g_strsplit(text, ",", -1);
    for (int i = 0; parts[i]; i++) {
        gpubalance_backend backend;
        char *name = g_strstrip(parts[i]);

        if (gpb_backend_from_name(name, &backend) < 0 || backend == GPUBALANCE_BACKEND_SIM) {
            status = gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "order entry '%s' is not one of: nvenc, vaapi, software",
                              name);
            goto out;
        }
        for (int j = 0; j < order.n; j++) {
            if (order.backends[j] == backend) {
                status = gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "order names '%s' twice", name);
                goto out;
            }
        }
        order.backends[order.n++] = backend;
    }
    if (order.n == 0) {
        status =
            gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "order is empty; list one or more of: nvenc, vaapi, software");
        goto out;
    }
    *out = order;
out:
    g_strfreev(parts);
    return status;
}

gpubalance_backend gpb_order_backend(gpubalance_backend backend, gpubalance_backend imitates)
{
    return backend == GPUBALANCE_BACKEND_SIM ? imitates : backend;
}

/* ---- helpers that read one key and name it in errors ------------------- */

static int key_error(const parse_ctx *pc, const char *group, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int key_error(const parse_ctx *pc, const char *group, const char *key, const char *fmt, ...)
{
    char what[512];
    gchar *value = g_key_file_get_value(pc->kf, group, key, NULL);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    gpb_fail(GPUBALANCE_ERR_CONFIG, "%s: [%s] %s=%s: %s", pc->file, group, key, value ? value : "", what);
    g_free(value);
    return GPUBALANCE_ERR_CONFIG;
}

static int check_keys(const parse_ctx *pc, const char *group, const char *const *allowed)
{
    gchar **keys = g_key_file_get_keys(pc->kf, group, NULL, NULL);
    int status = 0;

    for (int i = 0; keys && keys[i]; i++) {
        if (!g_strv_contains(allowed, keys[i])) {
            gchar *list = g_strjoinv(", ", (gchar **)allowed);

            status = gpb_fail(GPUBALANCE_ERR_CONFIG, "%s: [%s] unknown key '%s'; allowed keys: %s", pc->file, group,
                              keys[i], list);
            g_free(list);
            break;
        }
    }
    g_strfreev(keys);
    return status;
}

static gchar *get_string(const parse_ctx *pc, const char *group, const char *key)
{
    gchar *value = g_key_file_get_string(pc->kf, group, key, NULL);

    return value ? g_strstrip(value) : NULL;
}

static int get_int(const parse_ctx *pc, const char *group, const char *key, int min, int max, int *out)
{
    gchar *text = get_string(pc, group, key);
    gchar *end = NULL;
    gint64 value;
    int status = 0;

    if (!text)
        return 0; /* absent: keep the default */
    errno = 0;
    value = g_ascii_strtoll(text, &end, 10);
    if (!*text || *end || errno)
        status = key_error(pc, group, key, "not an integer; allowed: %d..%d", min, max);
    else if (value < min || value > max)
        status = key_error(pc, group, key, "out of range; allowed: %d..%d", min, max);
    else
        *out = (int)value;
    g_free(text);
    return status;
}

static int get_double(const parse_ctx *pc, const char *group, const char *key, double min, double max, double *out)
{
    gchar *text = get_string(pc, group, key);
    gchar *end = NULL;
    double value;
    int status = 0;

    if (!text)
        return 0;
    errno = 0;
    value = g_ascii_strtod(text, &end);
    if (!*text || *end || errno || !isfinite(value))
        status = key_error(pc, group, key, "not a number; allowed: %g..%g", min, max);
    else if (value < min || value > max)
        status = key_error(pc, group, key, "out of range; allowed: %g..%g", min, max);
    else
        *out = value;
    g_free(text);
    return status;
}

static int get_bool(const parse_ctx *pc, const char *group, const char *key, bool *out)
{
    gchar *text = get_string(pc, group, key);
    int status = 0;

    if (!text)
        return 0;
    if (g_ascii_strcasecmp(text, "true") == 0 || strcmp(text, "1") == 0 || g_ascii_strcasecmp(text, "yes") == 0)
        *out = true;
    else if (g_ascii_strcasecmp(text, "false") == 0 || strcmp(text, "0") == 0 || g_ascii_strcasecmp(text, "no") == 0)
        *out = false;
    else
        status = key_error(pc, group, key, "not a boolean; allowed: true, false");
    g_free(text);
    return status;
}

static int get_codecs(const parse_ctx *pc, const char *group, const char *key, unsigned *out)
{
    gchar *text = get_string(pc, group, key);
    gchar **parts;
    unsigned codecs = 0;
    int status = 0;

    if (!text)
        return 0;
    parts = g_strsplit(text, ",", -1);
    for (int i = 0; parts[i]; i++) {
        int codec = gpubalance_codec_from_name(g_strstrip(parts[i]));

        if (codec < 0) {
            status = key_error(pc, group, key, "unknown codec '%s'; allowed: h264, hevc, av1", parts[i]);
            goto out;
        }
        codecs |= 1u << codec;
    }
    if (!codecs)
        status = key_error(pc, group, key, "no codec listed; allowed: h264, hevc, av1");
    else
        *out = codecs;
out:
    g_strfreev(parts);
    g_free(text);
    return status;
}

/* Reads a key whose value is parsed by one of the shared parsers above,
 * and turns its message into one that names the file, group and key. */
static int get_parsed(const parse_ctx *pc, const char *group, const char *key, int (*parse)(const char *, void *),
                      void *out)
{
    gchar *text = get_string(pc, group, key);
    int status = 0;

    if (!text)
        return 0;
    if (parse(text, out) < 0) {
        char what[512];

        g_strlcpy(what, gpubalance_last_error(), sizeof(what));
        status = key_error(pc, group, key, "%s", what);
    }
    g_free(text);
    return status;
}

/* ---- groups ------------------------------------------------------------ */

static int parse_general(const parse_ctx *pc, gpb_config *config)
{
    const char *g = "general";
    int status;

    if (!g_key_file_has_group(pc->kf, g))
        return 0;
    if ((status = check_keys(pc, g, general_keys)) < 0 ||
        (status = get_parsed(pc, g, "policy", (int (*)(const char *, void *))gpb_policy_parse, &config->policy)) < 0 ||
        (status = get_parsed(pc, g, "order", (int (*)(const char *, void *))gpb_order_parse, &config->order)) < 0 ||
        (status = get_parsed(pc, g, "when-full", (int (*)(const char *, void *))gpb_when_full_parse,
                             &config->when_full)) < 0 ||
        (status = get_double(pc, g, "wait-timeout", 0, 86400, &config->wait_timeout)) < 0 ||
        (status = get_bool(pc, g, "discover", &config->discover)) < 0 ||
        (status = get_double(pc, g, "learn-expiry", 0, 30 * 86400, &config->learn_expiry)) < 0)
        return status;
    return 0;
}

static int parse_software(const parse_ctx *pc, gpb_config *config)
{
    const char *g = "software";
    int status;

    if (!g_key_file_has_group(pc->kf, g))
        return 0;
    if ((status = check_keys(pc, g, software_keys)) < 0 ||
        (status = get_double(pc, g, "budget", 0, MAX_BUDGET, &config->software_budget)) < 0 ||
        (status = get_codecs(pc, g, "codecs", &config->software_codecs)) < 0)
        return status;
    return 0;
}

static int parse_vaapi(const parse_ctx *pc, gpb_config *config)
{
    const char *g = "vaapi";
    int status;

    if (!g_key_file_has_group(pc->kf, g))
        return 0;
    if ((status = check_keys(pc, g, vaapi_keys)) < 0 ||
        (status = get_double(pc, g, "budget", 0, MAX_BUDGET, &config->vaapi_budget)) < 0)
        return status;
    return 0;
}

static int parse_pool(const parse_ctx *pc, const char *group, gpb_config *config)
{
    const char *name = group + strlen("pool:");
    gpb_pool_config *pool;
    int status;

    if (!*name)
        return gpb_fail(GPUBALANCE_ERR_CONFIG, "%s: [%s]: a pool needs a name, as in [pool:geforce]", pc->file, group);
    pool = g_new0(gpb_pool_config, 1);
    pool->name = g_strdup(name);
    g_ptr_array_add(config->pools, pool);
    if ((status = check_keys(pc, group, pool_keys)) < 0 ||
        (status = get_int(pc, group, "max-sessions", 0, MAX_SESSIONS_LIMIT, &pool->max_sessions)) < 0)
        return status;
    return 0;
}

static bool valid_name(const char *name)
{
    if (!*name || strlen(name) > 40)
        return false;
    for (const char *p = name; *p; p++)
        if (!g_ascii_isalnum(*p) && *p != '-' && *p != '_' && *p != '.')
            return false;
    return true;
}

/* The keys that only make sense for some backends. */
static int check_backend_keys(const parse_ctx *pc, const char *group, gpubalance_backend backend)
{
    static const struct {
        const char *key;
        gpubalance_backend backend;
    } only[] = {
        {"enforce-sessions", GPUBALANCE_BACKEND_SIM},
        {"imitates", GPUBALANCE_BACKEND_SIM},
        {"cuda-device", GPUBALANCE_BACKEND_NVENC},
        {"render-node", GPUBALANCE_BACKEND_VAAPI},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(only); i++) {
        if (backend != only[i].backend && g_key_file_has_key(pc->kf, group, only[i].key, NULL))
            return key_error(pc, group, only[i].key, "only allowed with backend=%s",
                             gpubalance_backend_name(only[i].backend));
    }
    return 0;
}

static int parse_device_backend(const parse_ctx *pc, const char *group, gpb_device_config *dev)
{
    gchar *text = get_string(pc, group, "backend");
    int status = 0;

    if (!text)
        return gpb_fail(GPUBALANCE_ERR_CONFIG, "%s: [%s]: missing key 'backend'; allowed: sim, nvenc, vaapi", pc->file,
                        group);
    if (gpb_backend_from_name(text, &dev->backend) < 0)
        status = key_error(pc, group, "backend", "allowed: sim, nvenc, vaapi");
    else if (dev->backend == GPUBALANCE_BACKEND_SOFTWARE)
        status = key_error(pc, group, "backend", "the software device is always present; configure it in [software]");
    g_free(text);
    return status;
}

static int parse_device_identity(const parse_ctx *pc, const char *group, gpb_device_config *dev)
{
    int status = 0;

    switch (dev->backend) {
    case GPUBALANCE_BACKEND_SIM: {
        gchar *text = get_string(pc, group, "imitates");

        dev->id = g_strdup_printf("sim:%s", dev->group_name);
        dev->display_name = g_strdup_printf("sim %s", dev->group_name);
        if (text && (gpb_backend_from_name(text, &dev->imitates) < 0 ||
                     (dev->imitates != GPUBALANCE_BACKEND_NVENC && dev->imitates != GPUBALANCE_BACKEND_VAAPI)))
            status = key_error(pc, group, "imitates", "allowed: nvenc, vaapi");
        g_free(text);
        break;
    }
    case GPUBALANCE_BACKEND_NVENC:
        if (!g_key_file_has_key(pc->kf, group, "cuda-device", NULL))
            return gpb_fail(GPUBALANCE_ERR_CONFIG,
                            "%s: [%s]: backend=nvenc needs key 'cuda-device' (the CUDA ordinal, 0..63)", pc->file,
                            group);
        status = get_int(pc, group, "cuda-device", 0, 63, &dev->cuda_ordinal);
        dev->id = g_strdup_printf("nvenc:%d", dev->cuda_ordinal);
        dev->display_name = g_strdup_printf("NVIDIA GPU %d (declared)", dev->cuda_ordinal);
        break;
    case GPUBALANCE_BACKEND_VAAPI: {
        gchar *node = get_string(pc, group, "render-node");

        if (!node)
            return gpb_fail(GPUBALANCE_ERR_CONFIG,
                            "%s: [%s]: backend=vaapi needs key 'render-node' (as in /dev/dri/renderD128)", pc->file,
                            group);
        if (!g_str_has_prefix(node, "/dev/dri/renderD") || !valid_name(node + strlen("/dev/dri/")))
            status = key_error(pc, group, "render-node", "allowed: a path /dev/dri/renderD<N>");
        dev->render_node = node;
        dev->id = g_strdup_printf("vaapi:%s", node + strlen("/dev/dri/"));
        dev->display_name = g_strdup_printf("VA-API %s (declared)", node);
        break;
    }
    default:
        break;
    }
    return status;
}

static int parse_device(const parse_ctx *pc, const char *group, gpb_config *config)
{
    const char *name = group + strlen("device:");
    gpb_device_config *dev;
    int status;

    if (!valid_name(name))
        return gpb_fail(GPUBALANCE_ERR_CONFIG,
                        "%s: [%s]: a device name is 1-40 letters, digits, '-', '_' or '.', as in [device:gpu0]",
                        pc->file, group);
    dev = g_new0(gpb_device_config, 1);
    g_ptr_array_add(config->devices, dev);
    dev->group_name = g_strdup(name);
    dev->imitates = GPUBALANCE_BACKEND_NVENC;
    dev->codecs = SIM_DEFAULT_CODECS;
    dev->max_width = GPB_DEFAULT_MAX_SIZE;
    dev->max_height = GPB_DEFAULT_MAX_SIZE;
    dev->cuda_ordinal = -1;
    if ((status = check_keys(pc, group, device_keys)) < 0 || (status = parse_device_backend(pc, group, dev)) < 0 ||
        (status = check_backend_keys(pc, group, dev->backend)) < 0 ||
        (status = parse_device_identity(pc, group, dev)) < 0)
        return status;
    dev->ten_bit = dev->backend == GPUBALANCE_BACKEND_SIM;
    if ((status = get_codecs(pc, group, "codecs", &dev->codecs)) < 0 ||
        (status = get_int(pc, group, "max-sessions", 0, MAX_SESSIONS_LIMIT, &dev->max_sessions)) < 0 ||
        (status = get_int(pc, group, "enforce-sessions", 0, MAX_SESSIONS_LIMIT, &dev->enforce_sessions)) < 0 ||
        (status = get_double(pc, group, "budget", 0, MAX_BUDGET, &dev->budget)) < 0 ||
        (status = get_int(pc, group, "max-width", 16, GPB_SOFTWARE_MAX_SIZE, &dev->max_width)) < 0 ||
        (status = get_int(pc, group, "max-height", 16, GPB_SOFTWARE_MAX_SIZE, &dev->max_height)) < 0 ||
        (status = get_bool(pc, group, "ten-bit", &dev->ten_bit)) < 0)
        return status;
    dev->pool = get_string(pc, group, "pool");
    {
        gchar *display = get_string(pc, group, "name");

        if (display) {
            g_free(dev->display_name);
            dev->display_name = display;
        }
    }
    return 0;
}

static gpb_pool_config *find_pool(gpb_config *config, const char *name)
{
    for (guint i = 0; i < config->pools->len; i++) {
        gpb_pool_config *pool = g_ptr_array_index(config->pools, i);

        if (strcmp(pool->name, name) == 0)
            return pool;
    }
    return NULL;
}

/* Checks that hold between groups: pools exist, ids are unique. */
static int check_cross_references(const parse_ctx *pc, gpb_config *config)
{
    for (guint i = 0; i < config->devices->len; i++) {
        gpb_device_config *dev = g_ptr_array_index(config->devices, i);
        gchar *group = g_strdup_printf("device:%s", dev->group_name);
        int status = 0;

        if (dev->pool && !find_pool(config, dev->pool))
            status = key_error(pc, group, "pool", "no pool of that name; add a [pool:%s] group", dev->pool);
        for (guint j = 0; j < i && status == 0; j++) {
            gpb_device_config *other = g_ptr_array_index(config->devices, j);

            if (strcmp(other->id, dev->id) == 0)
                status = gpb_fail(GPUBALANCE_ERR_CONFIG, "%s: [%s] and [device:%s] both describe device %s", pc->file,
                                  group, other->group_name, dev->id);
        }
        g_free(group);
        if (status < 0)
            return status;
    }
    return 0;
}

static int parse_group(const parse_ctx *pc, const char *group, gpb_config *config)
{
    if (strcmp(group, "general") == 0 || strcmp(group, "software") == 0 || strcmp(group, "vaapi") == 0)
        return 0; /* read by parse_general / _software / _vaapi */
    if (g_str_has_prefix(group, "pool:"))
        return parse_pool(pc, group, config);
    if (g_str_has_prefix(group, "device:"))
        return parse_device(pc, group, config);
    return gpb_fail(
        GPUBALANCE_ERR_CONFIG,
        "%s: unknown group [%s]; allowed groups: [general], [software], [vaapi], [pool:NAME], [device:NAME]", pc->file,
        group);
}

/* GKeyFile merges a group written twice into one, so a second
 * [device:gpu0] would silently change the first. The text is scanned for
 * group lines (as GKeyFile reads them: '[' first after leading blanks) and
 * a repeat is an error naming both lines. Called after GKeyFile accepted
 * the text, so every such line is a well-formed group header. */
static int check_duplicate_groups(const char *data, size_t length, const char *display_name)
{
    GHashTable *seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    gchar *text = g_strndup(data, length);
    gchar **lines = g_strsplit(text, "\n", -1);
    int status = 0;

    for (int i = 0; lines[i] && status == 0; i++) {
        gchar *line = g_strstrip(lines[i]);
        size_t len = strlen(line);
        gchar *name;
        gpointer first;

        if (len < 2 || line[0] != '[' || line[len - 1] != ']')
            continue;
        name = g_strndup(line + 1, len - 2);
        if (g_hash_table_lookup_extended(seen, name, NULL, &first)) {
            status = gpb_fail(GPUBALANCE_ERR_CONFIG, "%s: group [%s] appears twice (lines %d and %d); write it once",
                              display_name, name, GPOINTER_TO_INT(first), i + 1);
            g_free(name);
        } else {
            g_hash_table_insert(seen, name, GINT_TO_POINTER(i + 1));
        }
    }
    g_strfreev(lines);
    g_free(text);
    g_hash_table_unref(seen);
    return status;
}

int gpb_config_parse(const char *data, size_t length, const char *display_name, gpb_config **out)
{
    gpb_config *config = gpb_config_new_default();
    parse_ctx pc = {.file = display_name, .kf = g_key_file_new()};
    GError *error = NULL;
    gchar **groups = NULL;
    int status;

    if (!g_key_file_load_from_data(pc.kf, data, length, G_KEY_FILE_NONE, &error)) {
        status = gpb_fail(GPUBALANCE_ERR_CONFIG, "%s: %s", display_name, error->message);
        g_error_free(error);
        goto fail;
    }
    if ((status = check_duplicate_groups(data, length, display_name)) < 0)
        goto fail;
    groups = g_key_file_get_groups(pc.kf, NULL);
    for (int i = 0; groups[i]; i++)
        if ((status = parse_group(&pc, groups[i], config)) < 0)
            goto fail;
    if ((status = parse_general(&pc, config)) < 0 || (status = parse_software(&pc, config)) < 0 ||
        (status = parse_vaapi(&pc, config)) < 0 || (status = check_cross_references(&pc, config)) < 0)
        goto fail;
    g_strfreev(groups);
    g_key_file_free(pc.kf);
    *out = config;
    return 0;
fail:
    g_strfreev(groups);
    g_key_file_free(pc.kf);
    gpb_config_free(config);
    return status;
}

/* A config file is small text. Anything else named by GPUBALANCE_CONFIG
 * (a device, a FIFO, a huge file) would block or read without end, so it
 * is refused by what it is before a byte is read. */
#define CONFIG_MAX_BYTES (1024 * 1024)

static int read_config_file(const char *path, gchar **data_out, gsize *length_out)
{
    struct stat st;
    gchar *data;
    ssize_t got;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    int status = 0;

    if (fd < 0)
        return gpb_fail(GPUBALANCE_ERR_CONFIG, "cannot read config file %s: %s", path, g_strerror(errno));
    if (fstat(fd, &st) < 0) {
        status = gpb_fail(GPUBALANCE_ERR_CONFIG, "cannot inspect config file %s: %s", path, g_strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        status = gpb_fail(GPUBALANCE_ERR_CONFIG, "config file %s is not a regular file; point GPUBALANCE_CONFIG at one",
                          path);
    } else if (st.st_size > CONFIG_MAX_BYTES) {
        status = gpb_fail(GPUBALANCE_ERR_CONFIG, "config file %s is %lld bytes; a config file is at most %d bytes",
                          path, (long long)st.st_size, CONFIG_MAX_BYTES);
    }
    if (status < 0) {
        close(fd);
        return status;
    }
    /* One byte more than allowed, in case it grew since fstat(). */
    data = g_malloc((gsize)st.st_size + 2);
    got = pread(fd, data, (size_t)st.st_size + 1, 0);
    close(fd);
    if (got < 0 || got > CONFIG_MAX_BYTES) {
        status = got < 0 ? gpb_fail(GPUBALANCE_ERR_CONFIG, "cannot read config file %s: %s", path, g_strerror(errno))
                         : gpb_fail(GPUBALANCE_ERR_CONFIG, "config file %s is over %d bytes", path, CONFIG_MAX_BYTES);
        g_free(data);
        return status;
    }
    data[got] = '\0';
    *data_out = data;
    *length_out = (gsize)got;
    return 0;
}

int gpb_config_load(const char *path, gpb_config **out)
{
    gchar *data = NULL;
    gsize length = 0;
    int status;

    if ((status = read_config_file(path, &data, &length)) < 0)
        return status;
    status = gpb_config_parse(data, length, path, out);
    if (status == 0)
        (*out)->path = g_strdup(path);
    g_free(data);
    return status;
}

char *gpb_config_find(int *status)
{
    const char *env = g_getenv("GPUBALANCE_CONFIG");
    gchar *user;

    *status = 0;
    if (env && *env) {
        if (!g_file_test(env, G_FILE_TEST_EXISTS)) {
            *status = gpb_fail(GPUBALANCE_ERR_CONFIG, "GPUBALANCE_CONFIG=%s: no such file", env);
            return NULL;
        }
        return g_strdup(env);
    }
    if (g_file_test("/etc/gpubalance.conf", G_FILE_TEST_EXISTS))
        return g_strdup("/etc/gpubalance.conf");
    user = g_build_filename(g_get_user_config_dir(), "gpubalance.conf", NULL);
    if (g_file_test(user, G_FILE_TEST_EXISTS))
        return user;
    g_free(user);
    return NULL;
}
