/* probe_vaapi.c - VA-API render nodes: what each can encode, and which
 * other processes are encoding on it (DRM fdinfo).
 *
 * Every /dev/dri/renderD* is listed. A node offers a codec when one of its
 * profiles has an encode entrypoint (EncSlice or the low-power EncSliceLP);
 * a node with none is listed and not offered. VA-API has no session cap,
 * so a node gets a throughput budget ([vaapi] budget=, or per device).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <va/va.h>
#include <va/va_drm.h>

#include "cost.h"
#include "fdinfo.h"
#include "inventory.h"
#include "util.h"

typedef struct {
    char *node;         /* /dev/dri/renderD128 */
    char *pdev;         /* 0000:00:02.0, from sysfs */
    GArray *before;     /* gpb_drm_client of the previous look, NULL at first */
    uint64_t before_ns; /* when that look was taken */
    double utilisation; /* of the video engines between the last two looks,
                         * 0..1, -1 unknown */
    bool asked_before;  /* a first request is answered without a look */
} vaapi_data;

static void silence(void *user_context, const char *message)
{
    gpb_debug("libva (%s): %s", (const char *)user_context, message);
}

static bool has_encode_entrypoint(VADisplay dpy, VAProfile profile)
{
    VAEntrypoint entrypoints[32];
    int n = 0;

    if (vaMaxNumEntrypoints(dpy) > (int)G_N_ELEMENTS(entrypoints) ||
        vaQueryConfigEntrypoints(dpy, profile, entrypoints, &n) != VA_STATUS_SUCCESS)
        return false;
    for (int i = 0; i < n; i++)
        if (entrypoints[i] == VAEntrypointEncSlice || entrypoints[i] == VAEntrypointEncSliceLP)
            return true;
    return false;
}

/* The largest picture an encode config of this profile accepts. */
static void max_size(VADisplay dpy, VAProfile profile, int *width, int *height)
{
    VAConfigAttrib attribs[2] = {{.type = VAConfigAttribMaxPictureWidth}, {.type = VAConfigAttribMaxPictureHeight}};
    VAEntrypoint entrypoint = has_encode_entrypoint(dpy, profile) ? VAEntrypointEncSlice : VAEntrypointEncSliceLP;

    if (vaGetConfigAttributes(dpy, profile, entrypoint, attribs, 2) != VA_STATUS_SUCCESS &&
        vaGetConfigAttributes(dpy, profile, VAEntrypointEncSliceLP, attribs, 2) != VA_STATUS_SUCCESS)
        return;
    if (attribs[0].value != VA_ATTRIB_NOT_SUPPORTED)
        *width = MAX(*width, (int)attribs[0].value);
    if (attribs[1].value != VA_ATTRIB_NOT_SUPPORTED)
        *height = MAX(*height, (int)attribs[1].value);
}

static void read_encode_caps(VADisplay dpy, gpb_device *d)
{
    static const struct {
        VAProfile profile;
        gpubalance_codec codec;
        bool ten_bit;
    } profiles[] = {
        {VAProfileH264ConstrainedBaseline, GPUBALANCE_CODEC_H264, false},
        {VAProfileH264Main, GPUBALANCE_CODEC_H264, false},
        {VAProfileH264High, GPUBALANCE_CODEC_H264, false},
        {VAProfileHEVCMain, GPUBALANCE_CODEC_HEVC, false},
        {VAProfileHEVCMain10, GPUBALANCE_CODEC_HEVC, true},
        {VAProfileAV1Profile0, GPUBALANCE_CODEC_AV1, false},
    };
    int width = 0, height = 0;

    for (size_t i = 0; i < G_N_ELEMENTS(profiles); i++) {
        if (!has_encode_entrypoint(dpy, profiles[i].profile))
            continue;
        d->codecs |= 1u << profiles[i].codec;
        d->ten_bit |= profiles[i].ten_bit;
        max_size(dpy, profiles[i].profile, &width, &height);
    }
    d->max_width = width ? width : GPB_ASSUMED_MAX_SIZE;
    d->max_height = height ? height : GPB_ASSUMED_MAX_SIZE;
}

/* A hexadecimal sysfs attribute ("0x8086\n"), 0 when unreadable. */
static unsigned read_hex(const char *dir, const char *name)
{
    gchar *path = g_build_filename(dir, name, NULL);
    gchar *text = NULL;
    unsigned value = 0;

    if (g_file_get_contents(path, &text, NULL, NULL))
        value = (unsigned)g_ascii_strtoull(text, NULL, 16);
    g_free(text);
    g_free(path);
    return value;
}

/* The node's kernel driver and PCI address, from sysfs, and the default
 * budget its vendor and device imply (cost.c). */
static void read_sysfs(const char *node_name, const gpb_config *config, gpb_device *d, vaapi_data *data)
{
    gchar *dev = g_strdup_printf("/sys/class/drm/%s/device", node_name);
    gchar *driver_link = g_build_filename(dev, "driver", NULL);
    gchar *driver = g_file_read_link(driver_link, NULL);
    gchar *real = g_canonicalize_filename(dev, NULL);
    gchar *pdev = g_path_get_basename(real);

    if (driver) {
        gchar *base = g_path_get_basename(driver);

        g_free(d->driver);
        d->driver = base;
    }
    if (strchr(pdev, ':'))
        data->pdev = g_strdup(pdev);
    if (!config->vaapi_budget_set) /* the config's word beats the table */
        d->budget = gpb_vaapi_default_budget(d->driver, read_hex(dev, "vendor"), read_hex(dev, "device"), d->budget);
    g_free(pdev);
    g_free(real);
    g_free(driver);
    g_free(driver_link);
    g_free(dev);
}

static gpb_device *probe_node(gpb_inventory *inv, const gpb_config *config, const char *name)
{
    gchar *path = g_build_filename(gpb_discovery_dri_dir(), name, NULL);
    gchar *id = g_strdup_printf("vaapi:%s", name);
    gpb_device *d = gpb_device_new(id, GPUBALANCE_BACKEND_VAAPI);
    vaapi_data *data = g_new0(vaapi_data, 1);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    VADisplay dpy = NULL;
    int major, minor;

    d->render_node = g_strdup(path);
    d->budget = config->vaapi_budget;
    d->probe = &gpb_vaapi_probe;
    d->probe_data = data;
    data->node = g_strdup(path);
    data->utilisation = -1;
    read_sysfs(name, config, d, data);
    if (fd < 0) {
        d->not_offered_why = g_strdup_printf("cannot open %s: %s%s", path, g_strerror(errno),
                                             errno == EACCES ? " (is the user in group render?)" : "");
        goto out;
    }
    dpy = vaGetDisplayDRM(fd);
    if (!dpy) {
        d->not_offered_why = g_strdup("vaGetDisplayDRM failed");
        goto out;
    }
    vaSetErrorCallback(dpy, silence, (void *)name);
    vaSetInfoCallback(dpy, silence, (void *)name);
    if (vaInitialize(dpy, &major, &minor) != VA_STATUS_SUCCESS) {
        d->not_offered_why = g_strdup("vaInitialize failed (no VA-API driver for this GPU?)");
        goto out;
    }
    d->name = g_strdup(vaQueryVendorString(dpy));
    read_encode_caps(dpy, d);
    if (!d->codecs)
        d->not_offered_why = g_strdup("no encode entrypoint (EncSlice/EncSliceLP) for H.264, HEVC or AV1");
    vaTerminate(dpy);
out:
    if (!d->name)
        d->name = g_strdup_printf("render node %s", name);
    if (fd >= 0)
        close(fd);
    gpb_inventory_note(inv, "%s: %s, driver %s, PCI %s: %s", id, d->name, d->driver ? d->driver : "unknown",
                       data->pdev ? data->pdev : "unknown", d->not_offered_why ? d->not_offered_why : "encodes");
    g_free(id);
    g_free(path);
    return d;
}

static gint compare_names(gconstpointer a, gconstpointer b)
{
    return g_strcmp0(*(char *const *)a, *(char *const *)b);
}

/* The render nodes of the DRI directory, sorted. opendir(), not
 * g_dir_open(): GLib formats a translated message for every failure, and
 * on the many hosts without /dev/dri that loads message catalogues on
 * each cold start. */
static GPtrArray *list_render_nodes(void)
{
    GPtrArray *nodes = g_ptr_array_new_with_free_func(g_free);
    DIR *dir = opendir(gpb_discovery_dri_dir());
    const struct dirent *entry;

    while (dir && (entry = readdir(dir)))
        if (g_str_has_prefix(entry->d_name, "renderD"))
            g_ptr_array_add(nodes, g_strdup(entry->d_name));
    if (dir)
        closedir(dir);
    g_ptr_array_sort(nodes, compare_names);
    return nodes;
}

static int vaapi_discover(gpb_inventory *inv, const gpb_config *config, gpb_ledger *ledger, bool refresh)
{
    GPtrArray *nodes = list_render_nodes();
    int status = 0;

    if (nodes->len == 0)
        gpb_inventory_note(inv, "vaapi: no render nodes in %s", gpb_discovery_dri_dir());
    for (guint i = 0; i < nodes->len && status >= 0; i++)
        status = gpb_inventory_add(inv, probe_node(inv, config, g_ptr_array_index(nodes, i)));
    g_ptr_array_unref(nodes);
    return status < 0 ? status : 0;
}

/* Clients of the node whose video engine use advanced since our last
 * look (-1 while there is nothing to compare with yet).
 *
 * A look walks the descriptors of every process on the host, and a first
 * look yields no figure: so a process takes its first look only when it
 * asks a second time. A process that places one stream and exits (`pick`,
 * a single encode) never pays for a scan that could not inform it, and
 * its cost does not grow with the number of processes on the host. */
static int vaapi_driver_sessions(gpb_device *d)
{
    vaapi_data *data = d->probe_data;
    GArray *now;
    uint64_t now_ns;
    int active = -1;

    if (!data->asked_before) {
        data->asked_before = true;
        return -1;
    }
    now = g_array_new(FALSE, TRUE, sizeof(gpb_drm_client));
    now_ns = gpb_boottime_ns();
    gpb_fdinfo_scan(gpb_discovery_proc_dir(), data->node, data->pdev, now);
    data->utilisation = gpb_fdinfo_utilisation(data->before, now, now_ns - data->before_ns);
    if (data->before)
        active = gpb_fdinfo_count_active(data->before, now);
    if (data->before)
        g_array_unref(data->before);
    data->before = now;
    data->before_ns = now_ns;
    return active;
}

/* The busy time of the same two looks (driver_sessions() just took them). */
static double vaapi_driver_utilisation(gpb_device *d)
{
    return ((vaapi_data *)d->probe_data)->utilisation;
}

gpb_device *gpb_vaapi_device_new(const char *name, const char *node_path, const char *pdev, unsigned codecs)
{
    gpb_device *d = gpb_device_new(name, GPUBALANCE_BACKEND_VAAPI);
    vaapi_data *data = g_new0(vaapi_data, 1);

    data->node = g_strdup(node_path);
    data->pdev = g_strdup(pdev);
    data->utilisation = -1;
    d->render_node = g_strdup(node_path);
    d->codecs = codecs;
    d->probe = &gpb_vaapi_probe;
    d->probe_data = data;
    return d;
}

static void vaapi_free(void *p)
{
    vaapi_data *data = p;

    g_free(data->node);
    g_free(data->pdev);
    if (data->before)
        g_array_unref(data->before);
    g_free(data);
}

const gpb_probe gpb_vaapi_probe = {
    .name = "vaapi",
    .discover = vaapi_discover,
    .driver_sessions = vaapi_driver_sessions,
    .driver_utilisation = vaapi_driver_utilisation,
    .free_data = vaapi_free,
};
