/* fdinfo.c - see fdinfo.h. Format: Documentation/gpu/drm-usage-stats.rst
 * in the kernel: "key:<tab>value" lines; engine time as "N ns". */
#define _GNU_SOURCE
#include "fdinfo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool is_video_key(const char *key)
{
    if (g_str_has_prefix(key, "drm-engine-video")) /* i915: video, video-enhance */
        return strcmp(key, "drm-engine-video-enhance") != 0;
    if (g_str_has_prefix(key, "drm-engine-enc")) /* amdgpu: enc, enc_1 */
        return true;
    if (strcmp(key, "drm-cycles-vcs") == 0) /* xe: video codec engine cycles */
        return true;
    return false;
}

bool gpb_fdinfo_parse(const char *text, gpb_drm_client *out)
{
    gchar **lines = g_strsplit(text, "\n", -1);
    bool has_driver = false, has_client = false;

    memset(out, 0, sizeof(*out));
    for (int i = 0; lines[i]; i++) {
        char *colon = strchr(lines[i], ':');
        char *key, *value;

        if (!colon)
            continue;
        *colon = '\0';
        key = g_strstrip(lines[i]);
        value = g_strstrip(colon + 1);
        if (strcmp(key, "drm-driver") == 0) {
            g_strlcpy(out->driver, value, sizeof(out->driver));
            has_driver = true;
        } else if (strcmp(key, "drm-pdev") == 0) {
            g_strlcpy(out->pdev, value, sizeof(out->pdev));
        } else if (strcmp(key, "drm-client-id") == 0) {
            out->client_id = g_ascii_strtoull(value, NULL, 10);
            has_client = true;
        } else if (strcmp(key, "drm-total-cycles-vcs") == 0) {
            out->video_total = g_ascii_strtoull(value, NULL, 10);
        } else if (strcmp(key, "drm-engine-capacity-video") == 0 || strcmp(key, "drm-engine-capacity-vcs") == 0) {
            out->capacity = (unsigned)g_ascii_strtoull(value, NULL, 10);
        } else if (is_video_key(key)) {
            out->video += g_ascii_strtoull(value, NULL, 10);
            out->has_video = true;
        }
    }
    g_strfreev(lines);
    if (out->capacity == 0)
        out->capacity = 1;
    return has_driver && has_client;
}

static bool seen(const GArray *clients, uint64_t client_id)
{
    for (guint i = 0; i < clients->len; i++)
        if (g_array_index(clients, gpb_drm_client, i).client_id == client_id)
            return true;
    return false;
}

static void scan_process(const char *proc_root, const char *pid, const char *node_path, const char *pdev,
                         GArray *clients)
{
    gchar *fd_dir = g_build_filename(proc_root, pid, "fd", NULL);
    GDir *dir = g_dir_open(fd_dir, 0, NULL);
    const char *fd;

    while (dir && (fd = g_dir_read_name(dir))) {
        gchar *link = g_build_filename(fd_dir, fd, NULL);
        gchar *target = g_file_read_link(link, NULL);
        gchar *info_path, *text = NULL;
        gpb_drm_client client;

        if (target && strcmp(target, node_path) == 0) {
            info_path = g_build_filename(proc_root, pid, "fdinfo", fd, NULL);
            if (g_file_get_contents(info_path, &text, NULL, NULL) && gpb_fdinfo_parse(text, &client) &&
                (!*client.pdev || !pdev || strcmp(client.pdev, pdev) == 0) && !seen(clients, client.client_id))
                g_array_append_val(clients, client);
            g_free(text);
            g_free(info_path);
        }
        g_free(target);
        g_free(link);
    }
    if (dir)
        g_dir_close(dir);
    g_free(fd_dir);
}

void gpb_fdinfo_scan(const char *proc_root, const char *node_path, const char *pdev, GArray *clients)
{
    GDir *dir = g_dir_open(proc_root, 0, NULL);
    const char *name;

    while (dir && (name = g_dir_read_name(dir)))
        if (g_ascii_isdigit(name[0]))
            scan_process(proc_root, name, node_path, pdev, clients);
    if (dir)
        g_dir_close(dir);
}

int gpb_fdinfo_count_active(const GArray *before, const GArray *now)
{
    int active = 0;

    if (!before)
        return 0; /* a first look has nothing to compare with */
    for (guint i = 0; i < now->len; i++) {
        const gpb_drm_client *c = &g_array_index(now, gpb_drm_client, i);
        bool found = false;

        for (guint j = 0; j < before->len; j++) {
            const gpb_drm_client *b = &g_array_index(before, gpb_drm_client, j);

            if (b->client_id == c->client_id) {
                found = true;
                if (c->video > b->video)
                    active++;
                break;
            }
        }
        if (!found && c->video > 0)
            active++;
    }
    return active;
}

static const gpb_drm_client *find_client(const GArray *clients, uint64_t client_id)
{
    for (guint i = 0; i < clients->len; i++)
        if (g_array_index(clients, gpb_drm_client, i).client_id == client_id)
            return &g_array_index(clients, gpb_drm_client, i);
    return NULL;
}

/* One client's share of the video engines between two looks, or -1. */
static double client_busy(const gpb_drm_client *b, const gpb_drm_client *c, uint64_t elapsed_ns)
{
    if (!c->has_video || c->video < b->video)
        return -1;        /* a counter going back: another client reusing the id */
    if (c->video_total) { /* xe: cycles against the engine's clock */
        if (c->video_total <= b->video_total)
            return -1;
        return (double)(c->video - b->video) / (double)(c->video_total - b->video_total) / c->capacity;
    }
    return (double)(c->video - b->video) / ((double)elapsed_ns * c->capacity);
}

double gpb_fdinfo_utilisation(const GArray *before, const GArray *now, uint64_t elapsed_ns)
{
    double busy = 0;

    if (!before || !elapsed_ns)
        return -1;
    for (guint i = 0; i < now->len; i++) {
        const gpb_drm_client *c = &g_array_index(now, gpb_drm_client, i);
        const gpb_drm_client *b = find_client(before, c->client_id);
        double share;

        if (!b || (share = client_busy(b, c, elapsed_ns)) < 0)
            continue;
        busy += share;
    }
    return MIN(busy, 1.0);
}
