/* gstgpubalanceenc.c - a bin that encodes through whatever libgpubalance
 * chose for the stream, and falls back when the chosen encoder refuses.
 *
 * Placement happens when caps arrive (size and rate are known then): the
 * element describes the stream to the core, takes a lease and builds
 * videoconvert ! ENCODER ! PARSER ! capsfilter inside itself.
 *
 * Why a trial. Hardware encoders open their session at caps time or on
 * the first buffer, not at READY, so a refusal (the GeForce cap, no NVENC,
 * a VA context failure) shows up as an error while streaming. Until the
 * child produces its first encoded buffer, the element holds the input
 * buffers it has passed on, keeps the child's errors off the pipeline bus
 * (GstBin::handle_message), and on failure reports it to the core, tears
 * the child down, builds the next candidate and replays the held buffers.
 * The sticky events (stream-start, caps, segment) reach the new child by
 * themselves: relinking a pad re-sends them. Only when every candidate has
 * failed does one error, listing each attempt, reach the application.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstgpubalanceenc.h"

#include <gst/video/video.h>
#include <string.h>

#include "children.h"
#include "gpubalance.h"

GST_DEBUG_CATEGORY(gst_gpubalance_enc_debug);
#define GST_CAT_DEFAULT gst_gpubalance_enc_debug

/* Buffers held for replay while a child is on trial; an encoder with
 * lookahead may take this many before its first output. */
#define MAX_HELD_BUFFERS 300

enum {
    PROP_0,
    PROP_CODEC,
    PROP_BITRATE,
    PROP_GOP_SIZE,
    PROP_SPEED,
    PROP_RATE_CONTROL,
    PROP_POLICY,
    PROP_ORDER,
    PROP_DEVICE,
    PROP_WHEN_FULL,
    PROP_SELECTED_BACKEND,
    PROP_SELECTED_DEVICE,
    PROP_SELECTED_ENCODER,
    N_PROPERTIES
};

static GParamSpec *properties[N_PROPERTIES];

struct _GstGpubalanceEnc {
    GstBin parent;
    GstPad *sinkpad; /* ghost pads */
    GstPad *srcpad;

    /* properties, under the object lock */
    gpubalance_codec codec;
    gboolean codec_set; /* else follow fixed downstream caps */
    GpbEncodeSettings settings;
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
    GstVideoInfo info;
    GstElement *convert;
    GstElement *encoder;
    GstElement *parser;
    GstElement *capsfilter;
    GpbChildKind kind;
    gchar *encoder_factory; /* of the current or last child */
    GString *attempts;      /* "device (element): why; ..." */

    /* trial state, also touched by the child's output thread and bus */
    GMutex trial_lock;
    gboolean on_trial;
    GQueue held;
    gchar *trial_error;
};

G_DEFINE_TYPE_WITH_CODE(GstGpubalanceEnc, gst_gpubalance_enc, GST_TYPE_BIN,
                        GST_DEBUG_CATEGORY_INIT(gst_gpubalance_enc_debug, "gpubalanceenc", 0,
                                                "gpubalance encoder placement"));
GST_ELEMENT_REGISTER_DEFINE(gpubalanceenc, "gpubalanceenc", GST_RANK_NONE, GST_TYPE_GPUBALANCE_ENC);

/* Formats videoconvert turns into whatever the chosen encoder takes; the
 * first is what a free upstream settles on. 10-bit formats make a 10-bit
 * stream for placement. */
static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE(
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("video/x-raw, format = (string) { I420, NV12, YV12, Y42B, Y444, YUY2, UYVY, BGRx, RGBx, "
                    "BGRA, RGBA, P010_10LE, I420_10LE, I422_10LE, Y444_10LE }"));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS,
                            GST_STATIC_CAPS("video/x-h264, stream-format = (string) { byte-stream, avc }, "
                                            "alignment = (string) au; "
                                            "video/x-h265, stream-format = (string) { byte-stream, hvc1, hev1 }, "
                                            "alignment = (string) au"));

/* ---- enums -------------------------------------------------------------- */

#define GST_TYPE_GPUBALANCE_CODEC (gpb_codec_enum_get_type())
static GType gpb_codec_enum_get_type(void)
{
    static GType type;
    static const GEnumValue values[] = {
        {GPUBALANCE_CODEC_H264, "H.264 / AVC", "h264"},
        {GPUBALANCE_CODEC_HEVC, "H.265 / HEVC", "h265"},
        {0, NULL, NULL},
    };

    if (g_once_init_enter(&type))
        g_once_init_leave(&type, g_enum_register_static("GstGpubalanceCodec", values));
    return type;
}

#define GST_TYPE_GPUBALANCE_SPEED (gpb_speed_enum_get_type())
static GType gpb_speed_enum_get_type(void)
{
    static GType type;
    static const GEnumValue values[] = {
        {GPB_SPEED_FAST, "Fastest encode (x264 veryfast, NVENC p2, VA target-usage 7)", "fast"},
        {GPB_SPEED_BALANCED, "Balanced (x264 medium, NVENC p4, VA target-usage 4)", "balanced"},
        {GPB_SPEED_QUALITY, "Best quality (x264 slow, NVENC p6, VA target-usage 1)", "quality"},
        {0, NULL, NULL},
    };

    if (g_once_init_enter(&type))
        g_once_init_leave(&type, g_enum_register_static("GstGpubalanceSpeed", values));
    return type;
}

#define GST_TYPE_GPUBALANCE_RATE_CONTROL (gpb_rate_control_enum_get_type())
static GType gpb_rate_control_enum_get_type(void)
{
    static GType type;
    static const GEnumValue values[] = {
        {GPB_RC_CBR, "Constant bitrate", "cbr"},
        {GPB_RC_VBR, "Variable bitrate", "vbr"},
        {GPB_RC_CQP, "Constant quantizer", "cqp"},
        {0, NULL, NULL},
    };

    if (g_once_init_enter(&type))
        g_once_init_leave(&type, g_enum_register_static("GstGpubalanceRateControl", values));
    return type;
}

/* ---- the process-wide context ------------------------------------------ */

/* One context per process: opening one discovers the hardware, which a
 * pipeline of dozens of encoders should pay once. Kept for the process's
 * lifetime, like a plugin's registry data. */
static gpubalance_context *shared_context(gchar **error)
{
    static GMutex lock;
    static gpubalance_context *ctx;
    gpubalance_context *result;

    g_mutex_lock(&lock);
    if (!ctx && gpubalance_context_open(NULL, &ctx) < 0) {
        *error = g_strdup(gpubalance_last_error());
        ctx = NULL;
    }
    result = ctx;
    g_mutex_unlock(&lock);
    return result;
}

static void route_log(gpubalance_log_level level, const char *message, void *user_data)
{
    static const GstDebugLevel levels[] = {GST_LEVEL_ERROR, GST_LEVEL_WARNING, GST_LEVEL_INFO, GST_LEVEL_DEBUG};

    gst_debug_log(gst_gpubalance_enc_debug, levels[level], __FILE__, "libgpubalance", __LINE__, NULL, "%s", message);
}

/* ---- the child chain ---------------------------------------------------- */

static void set_selected(GstGpubalanceEnc *self, const char *backend, const char *device, const char *encoder)
{
    GST_OBJECT_LOCK(self);
    g_free(self->selected_backend);
    g_free(self->selected_device);
    g_free(self->selected_encoder);
    self->selected_backend = g_strdup(backend);
    self->selected_device = g_strdup(device);
    self->selected_encoder = g_strdup(encoder);
    GST_OBJECT_UNLOCK(self);
    g_object_notify_by_pspec(G_OBJECT(self), properties[PROP_SELECTED_BACKEND]);
    g_object_notify_by_pspec(G_OBJECT(self), properties[PROP_SELECTED_DEVICE]);
    g_object_notify_by_pspec(G_OBJECT(self), properties[PROP_SELECTED_ENCODER]);
}

static void clear_held(GstGpubalanceEnc *self)
{
    GstBuffer *buf;

    while ((buf = g_queue_pop_head(&self->held)))
        gst_buffer_unref(buf);
}

/* Stops and drops a child, whether or not it made it into the bin. */
static void remove_child(GstGpubalanceEnc *self, GstElement **child)
{
    if (!*child)
        return;
    gst_element_set_locked_state(*child, TRUE);
    gst_element_set_state(*child, GST_STATE_NULL);
    if (GST_OBJECT_PARENT(*child) == GST_OBJECT(self))
        gst_bin_remove(GST_BIN(self), *child);
    else
        gst_object_unref(gst_object_ref_sink(*child));
    *child = NULL;
}

static void teardown_chain(GstGpubalanceEnc *self)
{
    gst_ghost_pad_set_target(GST_GHOST_PAD(self->sinkpad), NULL);
    gst_ghost_pad_set_target(GST_GHOST_PAD(self->srcpad), NULL);
    remove_child(self, &self->convert);
    remove_child(self, &self->encoder);
    remove_child(self, &self->parser);
    remove_child(self, &self->capsfilter);
}

/* The first encoded buffer ends the trial: the lease is opened. */
static GstPadProbeReturn on_first_output(GstPad *pad, GstPadProbeInfo *info, gpointer user_data)
{
    GstGpubalanceEnc *self = user_data;

    g_mutex_lock(&self->trial_lock);
    if (self->on_trial) {
        self->on_trial = FALSE;
        clear_held(self);
        if (self->lease)
            gpubalance_lease_mark_opened(self->lease);
        GST_INFO_OBJECT(self, "%s produced its first buffer; lease opened",
                        self->lease ? gpubalance_lease_device(self->lease) : "?");
    }
    g_mutex_unlock(&self->trial_lock);
    return GST_PAD_PROBE_REMOVE;
}

static GstElement *make_parser(gpubalance_codec codec, GstElement **capsfilter)
{
    const char *media = codec == GPUBALANCE_CODEC_HEVC ? "video/x-h265" : "video/x-h264";
    GstCaps *caps = gst_caps_new_simple(media, "alignment", G_TYPE_STRING, "au", NULL);

    *capsfilter = gst_element_factory_make("capsfilter", NULL);
    if (*capsfilter)
        g_object_set(*capsfilter, "caps", caps, NULL);
    gst_caps_unref(caps);
    return gst_element_factory_make(codec == GPUBALANCE_CODEC_HEVC ? "h265parse" : "h264parse", NULL);
}

static void post_selected(GstGpubalanceEnc *self, const char *encoder_name)
{
    gpubalance_lease *lease = self->lease;
    const char *backend = gpubalance_backend_name(gpubalance_lease_backend(lease));
    GstStructure *s = gst_structure_new("gpubalance-selected", "backend", G_TYPE_STRING, backend, "device",
                                        G_TYPE_STRING, gpubalance_lease_device(lease), "encoder", G_TYPE_STRING,
                                        encoder_name, "attempt", G_TYPE_INT, gpubalance_lease_attempt(lease), "reason",
                                        G_TYPE_STRING, gpubalance_lease_reason(lease), NULL);

    set_selected(self, backend, gpubalance_lease_device(lease), encoder_name);
    GST_INFO_OBJECT(self, "selected %s (%s, %s), attempt %d: %s", gpubalance_lease_device(lease), backend, encoder_name,
                    gpubalance_lease_attempt(lease), gpubalance_lease_reason(lease));
    gst_element_post_message(GST_ELEMENT(self), gst_message_new_element(GST_OBJECT(self), s));
}

/* Builds videoconvert ! encoder ! parser ! capsfilter for the lease.
 * Returns FALSE with *why set (and nothing left in the bin) on failure. */
static gboolean build_chain(GstGpubalanceEnc *self, gchar **why)
{
    GpbEncodeSettings settings;
    GstPad *pad;
    gchar *factory;

    g_clear_pointer(&self->encoder_factory, g_free);
    self->encoder = gpb_child_create(self->lease, self->active_codec, &self->kind, why);
    if (!self->encoder)
        return FALSE;
    self->encoder_factory = g_strdup(GST_OBJECT_NAME(gst_element_get_factory(self->encoder)));
    self->convert = gst_element_factory_make("videoconvert", NULL);
    self->parser = make_parser(self->active_codec, &self->capsfilter);
    if (!self->convert || !self->parser || !self->capsfilter) {
        *why = g_strdup("videoconvert, h264parse/h265parse or capsfilter is missing (gst-plugins-base/-bad)");
        goto fail;
    }
    GST_OBJECT_LOCK(self);
    settings = self->settings;
    GST_OBJECT_UNLOCK(self);
    gpb_child_apply(self->encoder, self->kind, &settings, FALSE);
    gst_bin_add_many(GST_BIN(self), self->convert, self->encoder, self->parser, self->capsfilter, NULL);
    if (!gst_element_link_many(self->convert, self->encoder, self->parser, self->capsfilter, NULL)) {
        *why = g_strdup_printf("cannot link videoconvert ! %s ! parser", GST_OBJECT_NAME(self->encoder));
        goto fail;
    }
    pad = gst_element_get_static_pad(self->encoder, "src");
    g_mutex_lock(&self->trial_lock); /* a new child starts its trial clean */
    self->on_trial = TRUE;
    g_clear_pointer(&self->trial_error, g_free);
    g_mutex_unlock(&self->trial_lock);
    gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, on_first_output, self, NULL);
    gst_object_unref(pad);
    pad = gst_element_get_static_pad(self->capsfilter, "src");
    gst_ghost_pad_set_target(GST_GHOST_PAD(self->srcpad), pad);
    gst_object_unref(pad);
    pad = gst_element_get_static_pad(self->convert, "sink");
    gst_ghost_pad_set_target(GST_GHOST_PAD(self->sinkpad), pad);
    gst_object_unref(pad);
    /* downstream first, so that nothing pushes into a stopped element */
    if (!gst_element_sync_state_with_parent(self->capsfilter) || !gst_element_sync_state_with_parent(self->parser) ||
        !gst_element_sync_state_with_parent(self->encoder) || !gst_element_sync_state_with_parent(self->convert)) {
        g_mutex_lock(&self->trial_lock);
        *why = g_strdup_printf("%s refused to start%s%s", GST_OBJECT_NAME(self->encoder), self->trial_error ? ": " : "",
                               self->trial_error ? self->trial_error : "");
        g_mutex_unlock(&self->trial_lock);
        goto fail;
    }
    factory = gst_plugin_feature_get_name(GST_PLUGIN_FEATURE(gst_element_get_factory(self->encoder)));
    post_selected(self, factory);
    return TRUE;
fail:
    g_mutex_lock(&self->trial_lock); /* nothing of this child's trial stays */
    self->on_trial = FALSE;
    g_clear_pointer(&self->trial_error, g_free);
    g_mutex_unlock(&self->trial_lock);
    teardown_chain(self);
    return FALSE;
}

/* A refusal that looks like a capacity limit teaches the core a limit;
 * anything else only skips the device for this stream. */
static gpubalance_failure classify(const char *why)
{
    static const char *const capacity[] = {"out of memory",   "OUT_OF_MEMORY", "(10)",
                                           "vaCreateContext", "too many",      "session"};

    for (size_t i = 0; i < G_N_ELEMENTS(capacity); i++)
        if (why && strstr(why, capacity[i]))
            return GPUBALANCE_FAILURE_CAPACITY;
    return GPUBALANCE_FAILURE_OTHER;
}

/* Reports the current lease's failure and moves to the next candidate.
 * FALSE when none is left (the lease is gone; attempts says why). */
static gboolean next_candidate(GstGpubalanceEnc *self, gpubalance_failure kind, const char *why)
{
    const char *encoder = self->encoder_factory ? self->encoder_factory : gpubalance_lease_gst_encoder(self->lease);

    g_string_append_printf(self->attempts, "%s%s (%s): %s", self->attempts->len ? "; " : "",
                           gpubalance_lease_device(self->lease), encoder, why);
    GST_WARNING_OBJECT(self, "%s failed: %s; trying the next candidate", gpubalance_lease_device(self->lease), why);
    return gpubalance_lease_report_failure(&self->lease, kind, why) == 0;
}

/* From a fresh or just-failed lease, builds the first chain that starts:
 * a sim device that refuses as its driver would, a missing element and a
 * child that will not start are each reported and skipped. */
static gboolean place_on_candidates(GstGpubalanceEnc *self)
{
    for (;;) {
        gchar *why = NULL;
        gboolean ok;

        if (gpubalance_lease_check_open(self->lease) < 0) {
            ok = next_candidate(self, GPUBALANCE_FAILURE_CAPACITY, gpubalance_last_error());
        } else if (build_chain(self, &why)) {
            return TRUE;
        } else {
            gpubalance_failure kind = g_str_has_prefix(why, "no ") ? GPUBALANCE_FAILURE_UNAVAILABLE : classify(why);

            ok = next_candidate(self, kind, why);
            g_free(why);
        }
        if (!ok) {
            GST_ELEMENT_ERROR(self, STREAM, ENCODE, ("No encoder could encode this stream."),
                              ("every candidate failed: %s (%s)", self->attempts->str, gpubalance_last_error()));
            return FALSE;
        }
    }
}

/* ---- placement ------------------------------------------------------------ */

static gpubalance_codec codec_for_stream(GstGpubalanceEnc *self)
{
    gpubalance_codec codec;
    gboolean explicit_codec;
    GstCaps *peer;

    GST_OBJECT_LOCK(self);
    codec = self->codec;
    explicit_codec = self->codec_set;
    GST_OBJECT_UNLOCK(self);
    if (explicit_codec)
        return codec;
    peer = gst_pad_peer_query_caps(self->srcpad, NULL);
    if (peer && !gst_caps_is_empty(peer) && !gst_caps_is_any(peer)) {
        gboolean all_h265 = TRUE;

        for (guint i = 0; i < gst_caps_get_size(peer); i++)
            all_h265 &= gst_structure_has_name(gst_caps_get_structure(peer, i), "video/x-h265");
        if (all_h265)
            codec = GPUBALANCE_CODEC_HEVC;
    }
    gst_clear_caps(&peer);
    return codec;
}

static gpubalance_stream *describe_stream(GstGpubalanceEnc *self, const GstVideoInfo *info)
{
    gpubalance_stream *s;
    double fps = info->fps_d ? (double)info->fps_n / info->fps_d : 0;

    gpubalance_stream_new(&s);
    gpubalance_stream_set_codec(s, self->active_codec);
    gpubalance_stream_set_size(s, CLAMP(info->width, 16, 16384), CLAMP(info->height, 16, 16384));
    gpubalance_stream_set_fps(s, CLAMP(fps, 0, 1000));
    gpubalance_stream_set_bit_depth(s, GST_VIDEO_INFO_COMP_DEPTH(info, 0) > 8 ? 10 : 8);
    gpubalance_stream_set_label(s, GST_OBJECT_NAME(self));
    GST_OBJECT_LOCK(self);
    /* each was checked when the property was set */
    gpubalance_stream_set_policy(s, self->policy);
    gpubalance_stream_set_order(s, self->order);
    gpubalance_stream_set_device(s, self->device);
    gpubalance_stream_set_when_full(s, self->when_full);
    GST_OBJECT_UNLOCK(self);
    return s;
}

static void end_placement(GstGpubalanceEnc *self)
{
    teardown_chain(self);
    g_mutex_lock(&self->trial_lock);
    self->on_trial = FALSE;
    clear_held(self);
    g_clear_pointer(&self->trial_error, g_free);
    g_mutex_unlock(&self->trial_lock);
    g_clear_pointer(&self->lease, gpubalance_lease_release);
}

static GstPadProbeReturn drop_eos(GstPad *pad, GstPadProbeInfo *info, gpointer user_data)
{
    if (GST_EVENT_TYPE(GST_PAD_PROBE_INFO_EVENT(info)) == GST_EVENT_EOS) {
        *(gboolean *)user_data = TRUE;
        return GST_PAD_PROBE_DROP;
    }
    return GST_PAD_PROBE_OK;
}

/* Before a chain is replaced mid-stream, the frames inside its encoder
 * (x264 holds dozens for lookahead) go downstream: an EOS sent into the
 * chain makes every element finish, and is dropped where the chain ends,
 * so downstream never sees it. Runs in the streaming thread. */
static void drain_chain(GstGpubalanceEnc *self)
{
    GstPad *in, *out;
    gboolean drained = FALSE;
    gulong probe;

    if (!self->convert || !self->capsfilter)
        return;
    in = gst_element_get_static_pad(self->convert, "sink");
    out = gst_element_get_static_pad(self->capsfilter, "src");
    probe = gst_pad_add_probe(out, GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM, drop_eos, &drained, NULL);
    gst_pad_send_event(in, gst_event_new_eos());
    gst_pad_remove_probe(out, probe);
    GST_INFO_OBJECT(self, "drained %s before placing again: %s", GST_OBJECT_NAME(self->encoder),
                    drained ? "done" : "its EOS did not come through");
    gst_object_unref(in);
    gst_object_unref(out);
}

/* Places the stream described by caps: a lease, then a chain. A new size
 * or rate re-places (the cost changed); the same caps keep the chain. */
static gboolean place(GstGpubalanceEnc *self, GstCaps *caps)
{
    gpubalance_context *ctx;
    gpubalance_stream *stream;
    GstVideoInfo info;
    gchar *error = NULL;
    int status;

    if (!gst_video_info_from_caps(&info, caps)) {
        gchar *text = gst_caps_to_string(caps);

        GST_ELEMENT_ERROR(self, STREAM, FORMAT, ("Unsupported input."), ("cannot read video caps %s", text));
        g_free(text);
        return FALSE;
    }
    if (self->lease && info.width == self->info.width && info.height == self->info.height &&
        info.fps_n == self->info.fps_n && info.fps_d == self->info.fps_d)
        return TRUE;
    if (self->lease) {
        GST_INFO_OBJECT(self, "size or rate changed to %dx%d@%d/%d: placing the stream again", info.width, info.height,
                        info.fps_n, info.fps_d);
        drain_chain(self);
    }
    end_placement(self);
    self->info = info;
    if (!(ctx = shared_context(&error))) {
        GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("gpubalance is not usable."), ("%s", error));
        g_free(error);
        return FALSE;
    }
    self->active_codec = codec_for_stream(self);
    g_string_truncate(self->attempts, 0);
    stream = describe_stream(self, &info);
    status = gpubalance_lease_acquire(ctx, stream, &self->lease);
    gpubalance_stream_free(stream);
    if (status < 0) {
        GST_ELEMENT_ERROR(self, RESOURCE, BUSY, ("No encoder is available for this stream."),
                          ("%s: %s", gpubalance_strerror(status), gpubalance_last_error()));
        return FALSE;
    }
    return place_on_candidates(self);
}

/* ---- streaming ------------------------------------------------------------ */

static gboolean sink_event(GstPad *pad, GstObject *parent, GstEvent *event)
{
    GstGpubalanceEnc *self = GST_GPUBALANCE_ENC(parent);

    if (GST_EVENT_TYPE(event) == GST_EVENT_CAPS) {
        GstCaps *caps;

        gst_event_parse_caps(event, &caps);
        if (!place(self, caps)) {
            gst_event_unref(event);
            return FALSE;
        }
    }
    return gst_pad_event_default(pad, parent, event);
}

/* The trial's failure after a push, if any (newly allocated). */
static gchar *trial_failure(GstGpubalanceEnc *self, GstFlowReturn ret)
{
    gchar *why = NULL;

    g_mutex_lock(&self->trial_lock);
    if (self->on_trial && (self->trial_error || ret == GST_FLOW_ERROR || ret == GST_FLOW_NOT_NEGOTIATED))
        why = g_strdup(self->trial_error ? self->trial_error : gst_flow_get_name(ret));
    g_mutex_unlock(&self->trial_lock);
    return why;
}

/* Ends the trial and takes the buffers it held. */
static void take_held(GstGpubalanceEnc *self, GQueue *into)
{
    g_mutex_lock(&self->trial_lock);
    *into = self->held;
    g_queue_init(&self->held);
    self->on_trial = FALSE;
    g_clear_pointer(&self->trial_error, g_free);
    g_mutex_unlock(&self->trial_lock);
}

/* Pushes the held buffers into the new child, still holding them while it
 * is on trial. Returns the flow, and in *why a new failure of the trial. */
static GstFlowReturn replay(GstGpubalanceEnc *self, GstPad *pad, GstObject *parent, GQueue *held, gchar **why)
{
    GstFlowReturn ret = GST_FLOW_OK;
    GstBuffer *buf;

    GST_INFO_OBJECT(self, "replaying %u held buffer(s) into %s", held->length, GST_OBJECT_NAME(self->encoder));
    while (!*why && (buf = g_queue_pop_head(held))) {
        g_mutex_lock(&self->trial_lock);
        if (self->on_trial && self->held.length < MAX_HELD_BUFFERS)
            g_queue_push_tail(&self->held, gst_buffer_ref(buf));
        g_mutex_unlock(&self->trial_lock);
        ret = gst_proxy_pad_chain_default(pad, parent, buf);
        *why = trial_failure(self, ret);
        if (ret != GST_FLOW_OK && !*why)
            break; /* flushing or EOS downstream: not the child's failure */
    }
    return ret;
}

/* The child on trial failed: each next candidate gets the held buffers,
 * until one takes them or none is left. */
static GstFlowReturn fall_back(GstGpubalanceEnc *self, GstPad *pad, GstObject *parent, gchar *why)
{
    GQueue held = G_QUEUE_INIT;
    GstFlowReturn ret = GST_FLOW_ERROR;

    take_held(self, &held);
    while (why) {
        teardown_chain(self);
        if (!next_candidate(self, classify(why), why)) {
            GST_ELEMENT_ERROR(self, STREAM, ENCODE, ("No encoder could encode this stream."),
                              ("every candidate failed: %s (%s)", self->attempts->str, gpubalance_last_error()));
            g_free(why);
            break;
        }
        g_clear_pointer(&why, g_free);
        if (!place_on_candidates(self))
            break; /* it posted the error */
        ret = replay(self, pad, parent, &held, &why);
        if (why) { /* that one failed too: its held buffers go on */
            GQueue again = G_QUEUE_INIT;
            GstBuffer *rest;

            take_held(self, &again);
            while ((rest = g_queue_pop_head(&held)))
                g_queue_push_tail(&again, rest);
            held = again;
        }
    }
    g_queue_clear_full(&held, (GDestroyNotify)gst_buffer_unref);
    return ret;
}

static GstFlowReturn sink_chain(GstPad *pad, GstObject *parent, GstBuffer *buf)
{
    GstGpubalanceEnc *self = GST_GPUBALANCE_ENC(parent);
    GstFlowReturn ret;
    gboolean on_trial;
    gchar *why = NULL;

    g_mutex_lock(&self->trial_lock);
    on_trial = self->on_trial;
    if (on_trial && self->held.length < MAX_HELD_BUFFERS)
        g_queue_push_tail(&self->held, gst_buffer_ref(buf));
    g_mutex_unlock(&self->trial_lock);

    ret = gst_proxy_pad_chain_default(pad, parent, buf);
    if (on_trial && (why = trial_failure(self, ret)))
        ret = fall_back(self, pad, parent, why); /* takes why */
    return ret;
}

/* Errors of a child on trial are the element's to handle, not the
 * application's: keep them, and let the streaming thread fall back. */
static void handle_message(GstBin *bin, GstMessage *message)
{
    GstGpubalanceEnc *self = GST_GPUBALANCE_ENC(bin);

    if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_ERROR) {
        gboolean swallow = FALSE;

        g_mutex_lock(&self->trial_lock);
        if (self->on_trial) {
            GError *err = NULL;
            gchar *debug = NULL;

            gst_message_parse_error(message, &err, &debug);
            g_free(self->trial_error);
            self->trial_error = g_strdup_printf("%s%s%s", err->message, debug ? " -- " : "", debug ? debug : "");
            GST_INFO_OBJECT(self, "error of %s on trial kept off the bus: %s", GST_MESSAGE_SRC_NAME(message),
                            self->trial_error);
            g_error_free(err);
            g_free(debug);
            swallow = TRUE;
        }
        g_mutex_unlock(&self->trial_lock);
        if (swallow) {
            gst_message_unref(message);
            return;
        }
    }
    GST_BIN_CLASS(gst_gpubalance_enc_parent_class)->handle_message(bin, message);
}

static GstStateChangeReturn change_state(GstElement *element, GstStateChange transition)
{
    GstGpubalanceEnc *self = GST_GPUBALANCE_ENC(element);
    GstStateChangeReturn ret = GST_ELEMENT_CLASS(gst_gpubalance_enc_parent_class)->change_state(element, transition);

    if (transition == GST_STATE_CHANGE_PAUSED_TO_READY || transition == GST_STATE_CHANGE_READY_TO_NULL) {
        end_placement(self);
        gst_video_info_init(&self->info);
        set_selected(self, NULL, NULL, NULL);
    }
    return ret;
}

/* ---- properties ------------------------------------------------------------ */

/* Validates a string property with the core's own parser, so that a bad
 * value is refused when it is set, with a warning naming it. */
static gboolean valid_or_warn(GstGpubalanceEnc *self, const char *property,
                              int (*check)(gpubalance_stream *, const char *), const char *value)
{
    gpubalance_stream *s;
    gboolean ok;

    if (!value)
        return TRUE;
    gpubalance_stream_new(&s);
    ok = check(s, value) == 0;
    gpubalance_stream_free(s);
    if (!ok)
        g_warning("%s: invalid value for property '%s': %s; keeping the previous value", GST_OBJECT_NAME(self),
                  property, gpubalance_last_error());
    return ok;
}

static void replace_string(GstGpubalanceEnc *self, gchar **field, const GValue *value, const char *property,
                           int (*check)(gpubalance_stream *, const char *))
{
    const char *text = g_value_get_string(value);

    if (text && !*text)
        text = NULL; /* "" restores the default */
    if (!valid_or_warn(self, property, check, text))
        return;
    GST_OBJECT_LOCK(self);
    g_free(*field);
    *field = g_strdup(text);
    GST_OBJECT_UNLOCK(self);
}

static void set_property(GObject *object, guint id, const GValue *value, GParamSpec *pspec)
{
    GstGpubalanceEnc *self = GST_GPUBALANCE_ENC(object);
    GpbEncodeSettings settings;
    GstElement *encoder = NULL;

    switch (id) {
    case PROP_CODEC:
        GST_OBJECT_LOCK(self);
        self->codec = g_value_get_enum(value);
        self->codec_set = TRUE;
        GST_OBJECT_UNLOCK(self);
        return;
    case PROP_BITRATE:
    case PROP_GOP_SIZE:
    case PROP_SPEED:
    case PROP_RATE_CONTROL:
        GST_OBJECT_LOCK(self);
        if (id == PROP_BITRATE)
            self->settings.bitrate = g_value_get_uint(value);
        else if (id == PROP_GOP_SIZE)
            self->settings.gop_size = g_value_get_int(value);
        else if (id == PROP_SPEED)
            self->settings.speed = g_value_get_enum(value);
        else
            self->settings.rate_control = g_value_get_enum(value);
        settings = self->settings;
        if (self->encoder)
            encoder = gst_object_ref(self->encoder);
        GST_OBJECT_UNLOCK(self);
        if (encoder) { /* reach the running child where it allows it */
            gpb_child_apply(encoder, self->kind, &settings, TRUE);
            gst_object_unref(encoder);
        }
        return;
    case PROP_POLICY:
        replace_string(self, &self->policy, value, "policy", gpubalance_stream_set_policy);
        return;
    case PROP_ORDER:
        replace_string(self, &self->order, value, "order", gpubalance_stream_set_order);
        return;
    case PROP_DEVICE:
        replace_string(self, &self->device, value, "device", gpubalance_stream_set_device);
        return;
    case PROP_WHEN_FULL:
        replace_string(self, &self->when_full, value, "when-full", gpubalance_stream_set_when_full);
        return;
    default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
    }
}

static void get_property(GObject *object, guint id, GValue *value, GParamSpec *pspec)
{
    GstGpubalanceEnc *self = GST_GPUBALANCE_ENC(object);

    GST_OBJECT_LOCK(self);
    switch (id) {
    case PROP_CODEC:
        g_value_set_enum(value, self->codec);
        break;
    case PROP_BITRATE:
        g_value_set_uint(value, self->settings.bitrate);
        break;
    case PROP_GOP_SIZE:
        g_value_set_int(value, self->settings.gop_size);
        break;
    case PROP_SPEED:
        g_value_set_enum(value, self->settings.speed);
        break;
    case PROP_RATE_CONTROL:
        g_value_set_enum(value, self->settings.rate_control);
        break;
    case PROP_POLICY:
        g_value_set_string(value, self->policy);
        break;
    case PROP_ORDER:
        g_value_set_string(value, self->order);
        break;
    case PROP_DEVICE:
        g_value_set_string(value, self->device);
        break;
    case PROP_WHEN_FULL:
        g_value_set_string(value, self->when_full);
        break;
    case PROP_SELECTED_BACKEND:
        g_value_set_string(value, self->selected_backend);
        break;
    case PROP_SELECTED_DEVICE:
        g_value_set_string(value, self->selected_device);
        break;
    case PROP_SELECTED_ENCODER:
        g_value_set_string(value, self->selected_encoder);
        break;
    default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
        break;
    }
    GST_OBJECT_UNLOCK(self);
}

static void finalize(GObject *object)
{
    GstGpubalanceEnc *self = GST_GPUBALANCE_ENC(object);

    g_clear_pointer(&self->lease, gpubalance_lease_release);
    clear_held(self);
    g_free(self->trial_error);
    g_free(self->encoder_factory);
    g_mutex_clear(&self->trial_lock);
    g_string_free(self->attempts, TRUE);
    g_free(self->policy);
    g_free(self->order);
    g_free(self->device);
    g_free(self->when_full);
    g_free(self->selected_backend);
    g_free(self->selected_device);
    g_free(self->selected_encoder);
    G_OBJECT_CLASS(gst_gpubalance_enc_parent_class)->finalize(object);
}

static void gst_gpubalance_enc_class_init(GstGpubalanceEncClass *klass)
{
    GObjectClass *object_class = G_OBJECT_CLASS(klass);
    GstElementClass *element_class = GST_ELEMENT_CLASS(klass);
    GstBinClass *bin_class = GST_BIN_CLASS(klass);
    const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS;
    const GParamFlags rw_playing = rw | GST_PARAM_MUTABLE_PLAYING;

    object_class->set_property = set_property;
    object_class->get_property = get_property;
    object_class->finalize = finalize;
    element_class->change_state = change_state;
    bin_class->handle_message = handle_message;

    properties[PROP_CODEC] = g_param_spec_enum(
        "codec", "Codec", "Codec to encode; when not set, follows fixed downstream caps (default h264)",
        GST_TYPE_GPUBALANCE_CODEC, GPUBALANCE_CODEC_H264, rw | GST_PARAM_MUTABLE_READY);
    properties[PROP_BITRATE] = g_param_spec_uint(
        "bitrate", "Bitrate", "Target bitrate in kbit/s, 0 = the chosen encoder's default", 0, 2048000, 0, rw_playing);
    properties[PROP_GOP_SIZE] =
        g_param_spec_int("gop-size", "GOP size", "Frames between keyframes, -1 = the chosen encoder's default", -1,
                         G_MAXINT, -1, rw_playing);
    properties[PROP_SPEED] =
        g_param_spec_enum("speed", "Speed", "Speed/quality trade-off, mapped to each encoder's preset",
                          GST_TYPE_GPUBALANCE_SPEED, GPB_SPEED_BALANCED, rw_playing);
    properties[PROP_RATE_CONTROL] = g_param_spec_enum("rate-control", "Rate control", "Rate control mode",
                                                      GST_TYPE_GPUBALANCE_RATE_CONTROL, GPB_RC_VBR, rw_playing);
    properties[PROP_POLICY] = g_param_spec_string(
        "policy", "Policy", "Placement policy: balanced or fill; NULL = the configuration's", NULL, rw);
    properties[PROP_ORDER] = g_param_spec_string(
        "order", "Order", "Backends to try in order, as nvenc,vaapi,software; NULL = the configuration's", NULL, rw);
    properties[PROP_DEVICE] = g_param_spec_string(
        "device", "Device", "Force one device id (nvenc:0, vaapi:renderD128, software, sim:NAME); NULL = any", NULL,
        rw);
    properties[PROP_WHEN_FULL] =
        g_param_spec_string("when-full", "When full",
                            "When every device is full: software, wait or fail; NULL = the configuration's", NULL, rw);
    properties[PROP_SELECTED_BACKEND] = g_param_spec_string(
        "selected-backend", "Selected backend", "Backend of the current placement (nvenc, vaapi, software, sim)", NULL,
        G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
    properties[PROP_SELECTED_DEVICE] =
        g_param_spec_string("selected-device", "Selected device", "Device id of the current placement", NULL,
                            G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
    properties[PROP_SELECTED_ENCODER] =
        g_param_spec_string("selected-encoder", "Selected encoder", "Element factory encoding the stream now", NULL,
                            G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
    g_object_class_install_properties(object_class, N_PROPERTIES, properties);

    gst_element_class_add_static_pad_template(element_class, &sink_template);
    gst_element_class_add_static_pad_template(element_class, &src_template);
    gst_element_class_set_static_metadata(
        element_class, "gpubalance encoder", "Codec/Encoder/Video",
        "Encodes on the NVENC GPU, VA-API device or CPU that gpubalance chooses for the stream, with fallback",
        "gpubalance developers");
    gst_type_mark_as_plugin_api(GST_TYPE_GPUBALANCE_CODEC, 0);
    gst_type_mark_as_plugin_api(GST_TYPE_GPUBALANCE_SPEED, 0);
    gst_type_mark_as_plugin_api(GST_TYPE_GPUBALANCE_RATE_CONTROL, 0);
    gpubalance_set_log_handler(route_log, NULL);
}

static void gst_gpubalance_enc_init(GstGpubalanceEnc *self)
{
    GstPadTemplate *sink = gst_static_pad_template_get(&sink_template);
    GstPadTemplate *src = gst_static_pad_template_get(&src_template);

    self->sinkpad = gst_ghost_pad_new_no_target_from_template("sink", sink);
    self->srcpad = gst_ghost_pad_new_no_target_from_template("src", src);
    gst_object_unref(sink);
    gst_object_unref(src);
    gst_pad_set_event_function(self->sinkpad, sink_event);
    gst_pad_set_chain_function(self->sinkpad, sink_chain);
    gst_element_add_pad(GST_ELEMENT(self), self->sinkpad);
    gst_element_add_pad(GST_ELEMENT(self), self->srcpad);
    self->codec = GPUBALANCE_CODEC_H264;
    self->settings.gop_size = -1;
    self->settings.speed = GPB_SPEED_BALANCED;
    self->settings.rate_control = GPB_RC_VBR;
    self->attempts = g_string_new(NULL);
    g_mutex_init(&self->trial_lock);
    g_queue_init(&self->held);
    gst_video_info_init(&self->info);
}
