/* gsttest.h - what the GStreamer element's test programs share: running a
 * pipeline to its end, finding the element's child, reading a property as
 * text, decoding a written file. */
#ifndef GPB_GSTTEST_H
#define GPB_GSTTEST_H

#include <gst/gst.h>

typedef struct {
    int frames;    /* buffers that reached the sink named "sink" */
    int keyframes; /* of those, without the delta-unit flag */
    guint64 bytes; /* their size */
    int errors;
    int warnings;
    int caps_out;       /* caps out of the element named "enc" that changed the stream */
    GstCaps *last_caps; /* the last of them */
    gchar *error_debug;
    gchar *warning_debug; /* of the last warning */
    GPtrArray *selected;  /* "device backend encoder attempt" per placement */
} Run;

/* A configuration with only the software device. */
extern const char software_only[];

/* The test's environment (config, ledger directory), GStreamer, the fake
 * encoders and the plugin; fails the test when the plugin is missing. */
void setup(const char *config);
/* Its second half, for a test that prepares its environment first. */
void setup_gstreamer(void);

/* Plays a pipeline to EOS or error (a hang fails after a minute of no bus
 * message), collecting what happened. Returns it still playing. */
GstElement *play(const char *description, Run *run);
/* The same for a pipeline already built. */
void run_to_end(GstElement *pipeline, Run *run);
void stop(GstElement *pipeline, Run *run);
/* A run without an error whose sink counted frames, placed once on
 * placement ("device backend encoder attempt"). */
void assert_placed_once(const Run *run, int frames, const char *placement);
/* A fakesink handoff handler counting into the Run in data. */
void note_buffer(GstElement *sink, GstBuffer *buf, GstPad *pad, gpointer data);
/* Notes an error, warning or placement message into run. */
void note_message(Run *run, GstMessage *msg);

/* The child of the bin named bin_name made by factory, or NULL. */
GstElement *child_of_factory(GstElement *pipeline, const char *bin_name, const char *factory);

/* Whether caps change the stream after *last (kept in *last): a parser
 * completing its first caps (profile, level found in the stream) only adds
 * fields, which makes caps that are a subset of the previous ones. */
gboolean caps_change(GstCaps **last, GstCaps *caps);

/* A property's value as text (an enum's nick). */
gchar *property_text(GstElement *e, const char *name);

/* What decoding a file found: the decoded format and the frame count. */
typedef struct {
    gchar *format;  /* "I420", "I420_10LE"; "I420,I420_10LE" for a change */
    gchar *decoder; /* the decoder decodebin chose: "avdec_h264" */
    int frames;
} Decoded;

/* Decodes a file with decodebin; fails the test on a decoding error. */
Decoded decode_file(const char *path);

/* The software AV1 element the element builds on this host (the core's
 * order: svtav1enc, then av1enc), or NULL when there is none. */
const char *gst_test_software_av1_encoder(void);
void decoded_clear(Decoded *d);

/* Decodes a file and checks its frame count, and the decoded format and
 * the decoder decodebin chose where they are not NULL. */
void assert_file_decodes(const char *path, int frames, const char *format, const char *decoder);

/* A path for a file the test writes, in the test's own directory (removed
 * with it). */
gchar *test_file(const char *name);

#endif
