/* children.h - the encoder elements gpubalanceenc builds for each backend,
 * and the one table that maps its properties onto each of them. */
#ifndef GPB_GST_CHILDREN_H
#define GPB_GST_CHILDREN_H

#include <gst/gst.h>

#include "gpubalance.h"

typedef enum {
    GPB_SPEED_FAST,
    GPB_SPEED_BALANCED,
    GPB_SPEED_QUALITY,
} GpbSpeed;

typedef enum {
    GPB_RC_CBR,
    GPB_RC_VBR,
    GPB_RC_CQP,
} GpbRateControl;

/* The element's encoding settings, as the user set them. */
typedef struct {
    guint bitrate; /* kbit/s, 0 = the encoder's default */
    gint gop_size; /* frames, -1 = the encoder's default */
    GpbSpeed speed;
    GpbRateControl rate_control;
} GpbEncodeSettings;

/* What kind of child an encoder element is, for the mapping table. */
typedef enum {
    GPB_CHILD_X264,
    GPB_CHILD_X265,
    GPB_CHILD_OPENH264,
    GPB_CHILD_NVCODEC,
    GPB_CHILD_VA,
} GpbChildKind;

/* Creates the encoder for a lease: for nvenc the nvcodec element whose
 * cuda-device-id is (or can be set to) the lease's CUDA ordinal; for vaapi
 * the va element whose device-path is the lease's render node; for
 * software and sim x264enc / x265enc (openh264enc second for H.264).
 * Factories are found by their properties, never by their names' shape.
 * Returns NULL with *why set when this GStreamer has no such element. */
GstElement *gpb_child_create(const gpubalance_lease *lease, gpubalance_codec codec, GpbChildKind *kind, gchar **why);

/* Applies every setting to the child, each in the child's own property,
 * unit and values. With only_mutable, skips the properties the child
 * cannot change in its current state (a change while PLAYING). */
void gpb_child_apply(GstElement *child, GpbChildKind kind, const GpbEncodeSettings *settings, gboolean only_mutable);

#endif
