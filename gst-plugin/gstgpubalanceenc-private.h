/* gstgpubalanceenc-private.h - the element's state, shared by its three
 * files: gstgpubalanceenc.c (type, properties, enums, pads, states),
 * gstgpubalanceenc-chain.c (input format, placement, the inner chain) and
 * gstgpubalanceenc-trial.c (trial, replay and fallback while streaming). */
#ifndef GST_GPUBALANCE_ENC_PRIVATE_H
#define GST_GPUBALANCE_ENC_PRIVATE_H

#include <gst/video/video.h>

#include "children.h"
#include "gpubalance.h"
#include "gstgpubalanceenc.h"

G_BEGIN_DECLS

GST_DEBUG_CATEGORY_EXTERN(gst_gpubalance_enc_debug);

/* Buffers held for replay while a child is on trial; an encoder with
 * lookahead may take this many before its first output. */
#define GST_GPUBALANCE_ENC_MAX_HELD 300

struct _GstGpubalanceEnc {
    GstBin parent;
    GstPad *sinkpad; /* ghost pads */
    GstPad *srcpad;

    /* properties, under the object lock */
    gpubalance_codec codec;
    gboolean codec_set; /* else follow fixed downstream caps */
    GpbEncodeSettings settings;
    GstCaps *child_settings; /* structures per factory or backend, or NULL */
    gchar *policy;
    gchar *order;
    gchar *device;
    gchar *when_full;
    gchar *selected_backend;
    gchar *selected_device;
    gchar *selected_encoder;

    /* streaming state: changed by the streaming thread, or with it stopped */
    gpubalance_lease *lease;
    gpubalance_codec active_codec;
    GstVideoInfo info;             /* input as upstream sends it */
    GstVideoFormat encoder_format; /* what the inner capsfilter pins */
    GstElement *convert;
    GstElement *format_filter; /* capsfilter: videoconvert's output format */
    GstElement *encoder;
    GstElement *parser;
    GstElement *capsfilter;
    gpubalance_encoder_family family;

    /* trial state, also touched by the child's output thread and bus */
    GMutex trial_lock;
    gboolean on_trial;
    GQueue held;
    gchar *trial_error;
};

/* gstgpubalanceenc.c */
void gst_gpubalance_enc_set_selected(GstGpubalanceEnc *self, const char *backend, const char *device,
                                     const char *encoder);
void gst_gpubalance_enc_clear_held(GstGpubalanceEnc *self);

/* gstgpubalanceenc-chain.c */
/* The raw formats the element takes, in the order a free upstream should
 * prefer them (8-bit 4:2:0 first, as every encoder takes it). */
GstCaps *gst_gpubalance_enc_sink_caps(void);
/* Places the stream that caps describe, or keeps the placement when the
 * encoder would see the same stream. FALSE after posting an error. */
gboolean gst_gpubalance_enc_place(GstGpubalanceEnc *self, GstCaps *caps);
/* From a fresh or just-failed lease, builds the first chain that starts,
 * reporting each candidate that cannot. FALSE after posting the error. */
gboolean gst_gpubalance_enc_place_on_candidates(GstGpubalanceEnc *self);
/* Reports the lease's failure; FALSE when no candidate is left. */
gboolean gst_gpubalance_enc_next_candidate(GstGpubalanceEnc *self, gpubalance_failure kind, const char *why);
/* The same for a child that failed to open or start, classified by the
 * core (which asks NVENC itself when nvcodec's message hides its
 * status). */
gboolean gst_gpubalance_enc_open_failed(GstGpubalanceEnc *self, const char *why);
void gst_gpubalance_enc_teardown_chain(GstGpubalanceEnc *self);
void gst_gpubalance_enc_end_placement(GstGpubalanceEnc *self);

/* gstgpubalanceenc-trial.c */
void gst_gpubalance_enc_start_trial(GstGpubalanceEnc *self);
void gst_gpubalance_enc_clear_trial(GstGpubalanceEnc *self);
GstFlowReturn gst_gpubalance_enc_sink_chain(GstPad *pad, GstObject *parent, GstBuffer *buf);
gboolean gst_gpubalance_enc_sink_event(GstPad *pad, GstObject *parent, GstEvent *event);
gboolean gst_gpubalance_enc_keep_trial_error(GstGpubalanceEnc *self, GstMessage *message);

G_END_DECLS

#endif
