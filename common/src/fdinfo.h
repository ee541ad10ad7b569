/* fdinfo.h - DRM clients from /proc/PID/fdinfo (the kernel's
 * drm-usage-stats format), for the foreign load on VA-API devices. */
#ifndef GPB_FDINFO_H
#define GPB_FDINFO_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    char driver[32];      /* drm-driver: i915, xe, amdgpu */
    char pdev[32];        /* drm-pdev: 0000:00:02.0 */
    uint64_t client_id;   /* drm-client-id */
    uint64_t video;       /* video/encode engine use: ns (i915, amdgpu) or
                           * cycles (xe's drm-cycles-vcs) */
    bool has_video;       /* the driver reported a video engine at all */
    uint64_t video_total; /* xe: drm-total-cycles-vcs, the clock that
                           * drm-cycles-vcs is a share of; 0 elsewhere */
    unsigned capacity;    /* engines the time is summed over
                           * (drm-engine-capacity-*), 1 when not said */
} gpb_drm_client;

/* Parses one fdinfo file's text. Returns false when it is not a DRM
 * client (no drm-driver / drm-client-id). Keys counted as video use:
 * drm-engine-video (i915; not video-enhance), drm-engine-enc* (amdgpu;
 * decode engines are not counted) and drm-cycles-vcs (xe). */
bool gpb_fdinfo_parse(const char *text, gpb_drm_client *out);

/* Every DRM client (deduplicated by client id) that holds an open file of
 * the render node whose PCI address is pdev, found under proc_root
 * ("/proc" outside tests). Appends gpb_drm_client to clients. */
void gpb_fdinfo_scan(const char *proc_root, const char *node_path, const char *pdev, GArray *clients);

/* The clients of `now` whose video use advanced since `before` (arrays of
 * gpb_drm_client): the ones that are encoding. A client new since
 * `before` counts if its use is non-zero. before is NULL on a first look,
 * which has nothing to compare with and counts 0. */
int gpb_fdinfo_count_active(const GArray *before, const GArray *now);

/* How busy the node's video engines were between two looks `elapsed_ns`
 * apart, 0..1, summed over the clients seen both times: ns of engine time
 * over elapsed time times the engine count (i915, amdgpu), or cycles over
 * total cycles (xe). Clients new since `before` are left out (their
 * start is unknown), and so are clients without video keys. -1 on a
 * first look (before NULL) or when no time elapsed. */
double gpb_fdinfo_utilisation(const GArray *before, const GArray *now, uint64_t elapsed_ns);

#endif
