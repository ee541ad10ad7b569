/* children.h - the encoder elements gpubalanceenc builds for each backend,
 * the one table that maps its settings onto each family of them, and the
 * user's own per-child settings (child-settings). */
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
    GPB_RC_CQ,
} GpbRateControl;

typedef enum {
    GPB_TUNE_NONE,
    GPB_TUNE_ZEROLATENCY,
} GpbTune;

/* The element's encoding settings, as the user set them. */
typedef struct {
    guint bitrate; /* kbit/s, 0 = the encoder's default */
    gint gop_size; /* frames, -1 = the encoder's default */
    GpbSpeed speed;
    GpbRateControl rate_control;
    gdouble quality; /* x264's CRF scale, for cqp and cq */
    GpbTune tune;
} GpbEncodeSettings;

/* The x264 preset name a speed stands for (gpubalance_preset_value()
 * turns it into each family's own preset). */
const char *gpb_speed_preset(GpbSpeed speed);

/* Creates the encoder for a lease: for nvenc the nvcodec element whose
 * cuda-device-id is (or can be set to) the lease's CUDA ordinal; for vaapi
 * the va element whose device-path is the lease's render node; for
 * software and sim the core's list (x264enc then openh264enc, x265enc,
 * svtav1enc then av1enc). Hardware factories are found by property, never
 * by the shape of their names; a software family whose table says it
 * can never honour the settings is passed over for the next (svtav1enc's
 * CBR and tune=zerolatency go to av1enc). *family gets the mapping family. Returns
 * NULL with *why set when this GStreamer has no such element. */
GstElement *gpb_child_create(const gpubalance_lease *lease, gpubalance_codec codec, const GpbEncodeSettings *settings,
                             gpubalance_encoder_family *family, gchar **why);

/* Applies every setting to the child, each in the child's own property,
 * unit and values, as this release of the child names them. A setting
 * the child cannot honour (no such property, no value that means it) is
 * FALSE with *why naming the setting and the child: never dropped. With
 * only_mutable, skips the properties the child cannot change in its
 * current state (a change while PLAYING). */
gboolean gpb_child_apply(GstElement *child, gpubalance_encoder_family family, const GpbEncodeSettings *settings,
                         gboolean only_mutable, gchar **why);

/* Parses a child-settings text, "x264enc, tune=film; nvenc, preset=p7":
 * structures named by an element factory, a backend (nvenc, vaapi,
 * software, sim) or a family's software element. NULL with *error set
 * when it does not parse. */
GstCaps *gpb_child_settings_parse(const char *text, gchar **error);

/* Applies the structures of settings that name the child's factory or
 * backend. A setting the child lacks, or a value it refuses, is posted as
 * a warning on the element naming the child and the setting; structures
 * for other children are skipped with a debug line. */
void gpb_child_apply_user(GstElement *element, GstElement *child, gpubalance_backend backend, const GstCaps *settings);

#endif
