/* gstgpubalanceenc-chain.c - placement and the inner chain.
 *
 * When caps arrive (size and rate are known then) the element describes
 * the stream to the core, takes a lease and builds
 *   videoconvert ! capsfilter(format) ! ENCODER ! PARSER ! capsfilter
 * inside itself.
 *
 * Why the format capsfilter. Upstream negotiates against the element's own
 * caps answer, which never changes (gst_gpubalance_enc_sink_caps()), and
 * the format the encoder sees is decided here from the input caps, the
 * downstream profiles and what the child takes: nothing in the chain can
 * make upstream renegotiate when the chain is built, and videoconvert
 * only ever converts into that one format. So the output's chroma, bit
 * depth and codec_data stay those of the first placement until upstream
 * itself changes caps.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstgpubalanceenc-private.h"

#define GST_CAT_DEFAULT gst_gpubalance_enc_debug

/* ---- formats -------------------------------------------------------------- */

typedef enum {
    CHROMA_420,
    CHROMA_422,
    CHROMA_444,
} GpbChroma;

/* What the encoder is given: its bit depth and chroma subsampling. */
typedef struct {
    guint depth; /* 8 or 10 */
    GpbChroma chroma;
} GpbSampling;

/* The formats the element takes, the order a free upstream picks from:
 * 8-bit 4:2:0 first (every encoder and decoder takes it), as x264enc's
 * answer would be if 4:4:4 were not first there. */
static const char sink_formats[] = "{ I420, NV12, YV12, Y42B, Y444, YUY2, UYVY, BGRx, RGBx, BGRA, RGBA, "
                                   "I420_10LE, P010_10LE, I422_10LE, Y444_10LE }";

GstCaps *gst_gpubalance_enc_sink_caps(void)
{
    gchar *text = g_strdup_printf("video/x-raw, format = (string) %s, width = (int) [ %d, %d ], "
                                  "height = (int) [ %d, %d ], framerate = (fraction) [ 0/1, %d/1 ]",
                                  sink_formats, GPUBALANCE_MIN_DIMENSION, GPUBALANCE_MAX_DIMENSION,
                                  GPUBALANCE_MIN_DIMENSION, GPUBALANCE_MAX_DIMENSION, GPUBALANCE_MAX_FPS);
    GstCaps *caps = gst_caps_from_string(text);

    g_free(text);
    return caps;
}

/* Encoder formats per sampling, most preferred first. */
static const GstVideoFormat formats_by_sampling[2][3][4] = {
    {
        [CHROMA_420] = {GST_VIDEO_FORMAT_I420, GST_VIDEO_FORMAT_NV12, GST_VIDEO_FORMAT_YV12},
        [CHROMA_422] = {GST_VIDEO_FORMAT_Y42B, GST_VIDEO_FORMAT_NV16, GST_VIDEO_FORMAT_YUY2},
        [CHROMA_444] = {GST_VIDEO_FORMAT_Y444, GST_VIDEO_FORMAT_BGRx, GST_VIDEO_FORMAT_BGRA},
    },
    {
        [CHROMA_420] = {GST_VIDEO_FORMAT_I420_10LE, GST_VIDEO_FORMAT_P010_10LE},
        [CHROMA_422] = {GST_VIDEO_FORMAT_I422_10LE},
        [CHROMA_444] = {GST_VIDEO_FORMAT_Y444_10LE},
    },
};

/* RGB is encoded as 4:2:0, as NVENC and VA-API encode it: 4:4:4 from RGB
 * would make the output depend on which candidate got the stream (x264
 * takes Y444, most GPUs not) and few players decode it. YUV keeps its
 * subsampling. */
static GpbSampling gst_gpubalance_enc_sampling_of_info(const GstVideoInfo *info)
{
    const GstVideoFormatInfo *f = info->finfo;
    GpbSampling s = {GST_VIDEO_FORMAT_INFO_DEPTH(f, 0) > 8 ? 10 : 8, CHROMA_420};

    if (GST_VIDEO_FORMAT_INFO_IS_RGB(f) || GST_VIDEO_FORMAT_INFO_N_COMPONENTS(f) < 3)
        s.chroma = CHROMA_420;
    else if (GST_VIDEO_FORMAT_INFO_W_SUB(f, 1) == 0 && GST_VIDEO_FORMAT_INFO_H_SUB(f, 1) == 0)
        s.chroma = CHROMA_444;
    else if (GST_VIDEO_FORMAT_INFO_H_SUB(f, 1) == 0)
        s.chroma = CHROMA_422;
    return s;
}

/* The most a downstream profile allows, or FALSE for a profile this table
 * does not know (it then restricts nothing). */
static gboolean gst_gpubalance_enc_sampling_of_profile(const char *profile, GpbSampling *s)
{
    static const struct {
        const char *profile;
        GpbSampling most;
    } profiles[] = {
        /* H.264 */
        {"constrained-baseline", {8, CHROMA_420}},
        {"baseline", {8, CHROMA_420}},
        {"main", {8, CHROMA_420}}, /* also H.265 main */
        {"extended", {8, CHROMA_420}},
        {"high", {8, CHROMA_420}}, /* also AV1 high: 4:4:4, see below */
        {"high-10", {10, CHROMA_420}},
        {"high-10-intra", {10, CHROMA_420}},
        {"high-4:2:2", {10, CHROMA_422}},
        {"high-4:2:2-intra", {10, CHROMA_422}},
        {"high-4:4:4", {10, CHROMA_444}},
        {"high-4:4:4-intra", {10, CHROMA_444}},
        /* H.265 */
        {"main-10", {10, CHROMA_420}},
        {"main-422-10", {10, CHROMA_422}},
        {"main-444", {8, CHROMA_444}},
        {"main-444-10", {10, CHROMA_444}},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(profiles); i++)
        if (g_strcmp0(profile, profiles[i].profile) == 0) {
            *s = profiles[i].most;
            return TRUE;
        }
    return FALSE;
}

/* The most any downstream structure of the codec allows. A structure
 * without a profile, or with one not in the table, allows everything. */
static GpbSampling gst_gpubalance_enc_downstream_most(GstGpubalanceEnc *self, gpubalance_codec codec)
{
    GpbSampling most = {8, CHROMA_420}, everything = {10, CHROMA_444};
    GstCaps *peer = gst_pad_peer_query_caps(self->srcpad, NULL);
    gboolean restricted = peer && !gst_caps_is_any(peer) && !gst_caps_is_empty(peer);

    if (codec == GPUBALANCE_CODEC_AV1)
        restricted = FALSE; /* AV1's main takes 10-bit 4:2:0, high 4:4:4: encoders pick */
    for (guint i = 0; restricted && i < gst_caps_get_size(peer); i++) {
        const GstStructure *st = gst_caps_get_structure(peer, i);
        const GValue *v = gst_structure_get_value(st, "profile");
        guint n = v && GST_VALUE_HOLDS_LIST(v) ? gst_value_list_get_size(v) : 1;

        if (!v || (!G_VALUE_HOLDS_STRING(v) && !GST_VALUE_HOLDS_LIST(v))) {
            restricted = FALSE;
            break;
        }
        for (guint j = 0; j < n; j++) {
            const GValue *one = GST_VALUE_HOLDS_LIST(v) ? gst_value_list_get_value(v, j) : v;
            GpbSampling s;

            if (!G_VALUE_HOLDS_STRING(one) || !gst_gpubalance_enc_sampling_of_profile(g_value_get_string(one), &s)) {
                restricted = FALSE;
                break;
            }
            most.depth = MAX(most.depth, s.depth);
            most.chroma = MAX(most.chroma, s.chroma);
        }
    }
    gst_clear_caps(&peer);
    return restricted ? most : everything;
}

/* The sampling the encoder is given: the input's, within what downstream
 * allows. A function of the input caps and downstream alone, so every
 * candidate encodes the same. */
static GpbSampling gst_gpubalance_enc_stream_sampling(GstGpubalanceEnc *self, const GstVideoInfo *info,
                                                      gpubalance_codec codec)
{
    GpbSampling in = gst_gpubalance_enc_sampling_of_info(info), most = gst_gpubalance_enc_downstream_most(self, codec);

    in.depth = MIN(in.depth, most.depth);
    in.chroma = MIN(in.chroma, most.chroma);
    return in;
}

static gboolean gst_gpubalance_enc_takes_format(GstCaps *accepted, GstVideoFormat format)
{
    GstCaps *one =
        gst_caps_new_simple("video/x-raw", "format", G_TYPE_STRING, gst_video_format_to_string(format), NULL);
    gboolean ok = gst_caps_can_intersect(one, accepted);

    gst_caps_unref(one);
    return ok;
}

/* The format for the encoder: the first it takes for the sampling, else
 * the closest lower sampling it takes, else whatever it takes first. */
static GstVideoFormat gst_gpubalance_enc_encoder_format(GstElement *encoder, GpbSampling want)
{
    GstPad *sink = gst_element_get_static_pad(encoder, "sink");
    GstCaps *accepted = gst_pad_query_caps(sink, NULL);
    GstVideoFormat found = GST_VIDEO_FORMAT_UNKNOWN;

    for (int depth = want.depth == 10; depth >= 0 && !found; depth--)
        for (int chroma = want.chroma; chroma >= 0 && !found; chroma--)
            for (guint i = 0; i < G_N_ELEMENTS(formats_by_sampling[0][0]) && !found; i++) {
                GstVideoFormat f = formats_by_sampling[depth][chroma][i];

                if (f != GST_VIDEO_FORMAT_UNKNOWN && gst_gpubalance_enc_takes_format(accepted, f))
                    found = f;
            }
    if (!found && gst_caps_get_size(accepted) > 0) {
        const GValue *v = gst_structure_get_value(gst_caps_get_structure(accepted, 0), "format");

        if (v && GST_VALUE_HOLDS_LIST(v))
            v = gst_value_list_get_value(v, 0);
        if (v && G_VALUE_HOLDS_STRING(v))
            found = gst_video_format_from_string(g_value_get_string(v));
    }
    gst_caps_unref(accepted);
    gst_object_unref(sink);
    return found;
}

/* ---- the child chain ---------------------------------------------------- */

/* Stops and drops a child, whether or not it made it into the bin. */
static void gst_gpubalance_enc_remove_child(GstGpubalanceEnc *self, GstElement **child)
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

void gst_gpubalance_enc_teardown_chain(GstGpubalanceEnc *self)
{
    gst_ghost_pad_set_target(GST_GHOST_PAD(self->sinkpad), NULL);
    gst_ghost_pad_set_target(GST_GHOST_PAD(self->srcpad), NULL);
    gst_gpubalance_enc_remove_child(self, &self->convert);
    gst_gpubalance_enc_remove_child(self, &self->format_filter);
    gst_gpubalance_enc_remove_child(self, &self->encoder);
    gst_gpubalance_enc_remove_child(self, &self->parser);
    gst_gpubalance_enc_remove_child(self, &self->capsfilter);
}

static const char *gst_gpubalance_enc_codec_media_type(gpubalance_codec codec)
{
    return codec == GPUBALANCE_CODEC_HEVC  ? "video/x-h265"
           : codec == GPUBALANCE_CODEC_AV1 ? "video/x-av1"
                                           : "video/x-h264";
}

/* The parser after the encoder, and the capsfilter that holds the output
 * to whole access units (temporal units for AV1). */
static GstElement *gst_gpubalance_enc_make_parser(gpubalance_codec codec, GstElement **capsfilter)
{
    static const char *const parsers[] = {
        [GPUBALANCE_CODEC_H264] = "h264parse",
        [GPUBALANCE_CODEC_HEVC] = "h265parse",
        [GPUBALANCE_CODEC_AV1] = "av1parse",
    };
    GstCaps *caps = gst_caps_new_simple(gst_gpubalance_enc_codec_media_type(codec), "alignment", G_TYPE_STRING,
                                        codec == GPUBALANCE_CODEC_AV1 ? "tu" : "au", NULL);

    *capsfilter = gst_element_factory_make("capsfilter", NULL);
    if (*capsfilter)
        g_object_set(*capsfilter, "caps", caps, NULL);
    gst_caps_unref(caps);
    return gst_element_factory_make(parsers[codec], NULL);
}

static GstElement *gst_gpubalance_enc_make_format_filter(GstVideoFormat format)
{
    GstElement *filter = gst_element_factory_make("capsfilter", NULL);
    GstCaps *caps =
        gst_caps_new_simple("video/x-raw", "format", G_TYPE_STRING, gst_video_format_to_string(format), NULL);

    if (filter)
        g_object_set(filter, "caps", caps, NULL);
    gst_caps_unref(caps);
    return filter;
}

static void gst_gpubalance_enc_post_selected(GstGpubalanceEnc *self, const char *encoder_name)
{
    gpubalance_lease *lease = self->lease;
    const char *backend = gpubalance_backend_name(gpubalance_lease_backend(lease));
    GstStructure *s =
        gst_structure_new("gpubalance-selected", "backend", G_TYPE_STRING, backend, "device", G_TYPE_STRING,
                          gpubalance_lease_device(lease), "encoder", G_TYPE_STRING, encoder_name, "attempt", G_TYPE_INT,
                          gpubalance_lease_attempt(lease), "reason", G_TYPE_STRING, gpubalance_lease_reason(lease),
                          "format", G_TYPE_STRING, gst_video_format_to_string(self->encoder_format), NULL);

    gst_gpubalance_enc_set_selected(self, backend, gpubalance_lease_device(lease), encoder_name);
    GST_INFO_OBJECT(self, "selected %s (%s, %s, %s), attempt %d: %s", gpubalance_lease_device(lease), backend,
                    encoder_name, gst_video_format_to_string(self->encoder_format), gpubalance_lease_attempt(lease),
                    gpubalance_lease_reason(lease));
    gst_element_post_message(GST_ELEMENT(self), gst_message_new_element(GST_OBJECT(self), s));
}

/* Maps the element's settings and the user's child-settings onto the
 * child. FALSE with *why when the child cannot honour a setting. */
static gboolean gst_gpubalance_enc_configure_encoder(GstGpubalanceEnc *self, gchar **why)
{
    GpbEncodeSettings settings;
    GstCaps *user = NULL;

    GST_OBJECT_LOCK(self);
    settings = self->settings;
    if (self->child_settings)
        user = gst_caps_ref(self->child_settings);
    GST_OBJECT_UNLOCK(self);
    if (!gpb_child_apply(self->encoder, self->family, &settings, FALSE, why)) {
        gst_clear_caps(&user);
        return FALSE;
    }
    gpb_child_apply_user(GST_ELEMENT(self), self->encoder, gpubalance_lease_backend(self->lease), user);
    gst_clear_caps(&user);
    return TRUE;
}

static void gst_gpubalance_enc_set_ghost_targets(GstGpubalanceEnc *self)
{
    GstPad *pad = gst_element_get_static_pad(self->capsfilter, "src");

    gst_ghost_pad_set_target(GST_GHOST_PAD(self->srcpad), pad);
    gst_object_unref(pad);
    pad = gst_element_get_static_pad(self->convert, "sink");
    gst_ghost_pad_set_target(GST_GHOST_PAD(self->sinkpad), pad);
    gst_object_unref(pad);
}

/* Downstream first, so that nothing pushes into a stopped element. */
static gboolean gst_gpubalance_enc_start_chain(GstGpubalanceEnc *self)
{
    return gst_element_sync_state_with_parent(self->capsfilter) && gst_element_sync_state_with_parent(self->parser) &&
           gst_element_sync_state_with_parent(self->encoder) &&
           gst_element_sync_state_with_parent(self->format_filter) && gst_element_sync_state_with_parent(self->convert);
}

/* Names the attempt in the core's list by the element GStreamer would use
 * for it, until the child is known: its creation may fail. */
static void gst_gpubalance_enc_name_attempt(GstGpubalanceEnc *self)
{
    size_t n = 0;
    const gpubalance_encoder_info *hints = gpubalance_encoders(
        GPUBALANCE_FRAMEWORK_GSTREAMER, gpubalance_lease_backend(self->lease), self->active_codec, &n);

    if (n > 0)
        gpubalance_lease_set_encoder(self->lease, hints[0].name);
}

/* Builds the chain for the lease. Returns FALSE with *why set (and
 * nothing left in the bin) on failure; *settings_refused tells a child
 * that cannot honour a setting from one that failed to open or start. */
static gboolean gst_gpubalance_enc_build_chain(GstGpubalanceEnc *self, GpbSampling sampling, gchar **why,
                                               gboolean *settings_refused)
{
    const char *factory;
    GpbEncodeSettings settings;

    GST_OBJECT_LOCK(self);
    settings = self->settings;
    GST_OBJECT_UNLOCK(self);
    gst_gpubalance_enc_name_attempt(self);
    self->encoder = gpb_child_create(self->lease, self->active_codec, &settings, &self->family, why);
    if (!self->encoder)
        return FALSE;
    factory = GST_OBJECT_NAME(gst_element_get_factory(self->encoder));
    gpubalance_lease_set_encoder(self->lease, factory);
    self->encoder_format = gst_gpubalance_enc_encoder_format(self->encoder, sampling);
    self->convert = gst_element_factory_make("videoconvert", NULL);
    self->format_filter = gst_gpubalance_enc_make_format_filter(self->encoder_format);
    self->parser = gst_gpubalance_enc_make_parser(self->active_codec, &self->capsfilter);
    if (!self->convert || !self->format_filter || !self->parser || !self->capsfilter) {
        *why = g_strdup("videoconvert, capsfilter or the parser (h264parse, h265parse, av1parse) is missing "
                        "(gst-plugins-base/-bad)");
        goto fail;
    }
    if (!gst_gpubalance_enc_configure_encoder(self, why)) {
        *settings_refused = TRUE;
        goto fail;
    }
    gst_bin_add_many(GST_BIN(self), self->convert, self->format_filter, self->encoder, self->parser, self->capsfilter,
                     NULL);
    if (!gst_element_link_many(self->convert, self->format_filter, self->encoder, self->parser, self->capsfilter,
                               NULL)) {
        *why = g_strdup_printf("cannot link videoconvert ! %s ! %s ! parser",
                               gst_video_format_to_string(self->encoder_format), factory);
        goto fail;
    }
    gst_gpubalance_enc_start_trial(self);
    gst_gpubalance_enc_set_ghost_targets(self);
    if (!gst_gpubalance_enc_start_chain(self)) {
        g_mutex_lock(&self->trial_lock);
        *why = g_strdup_printf("%s refused to start%s%s", factory, self->trial_error ? ": " : "",
                               self->trial_error ? self->trial_error : "");
        g_mutex_unlock(&self->trial_lock);
        goto fail;
    }
    gst_gpubalance_enc_post_selected(self, factory);
    return TRUE;
fail:
    gst_gpubalance_enc_clear_trial(self);
    gst_gpubalance_enc_teardown_chain(self);
    return FALSE;
}

gboolean gst_gpubalance_enc_next_candidate(GstGpubalanceEnc *self, gpubalance_failure kind, const char *why)
{
    GST_WARNING_OBJECT(self, "%s failed: %s; trying the next candidate", gpubalance_lease_device(self->lease), why);
    return gpubalance_lease_report_failure(&self->lease, kind, why) == 0;
}

gboolean gst_gpubalance_enc_open_failed(GstGpubalanceEnc *self, const char *why)
{
    char detail[200];
    gpubalance_failure kind = gpubalance_lease_classify_failure(self->lease, 0, why, detail, sizeof(detail));
    gchar *reason = *detail ? g_strdup_printf("%s (%s)", why, detail) : g_strdup(why);
    gboolean ok = gst_gpubalance_enc_next_candidate(self, kind, reason);

    g_free(reason);
    return ok;
}

static GpbSampling gst_gpubalance_enc_current_sampling(GstGpubalanceEnc *self)
{
    return gst_gpubalance_enc_stream_sampling(self, &self->info, self->active_codec);
}

gboolean gst_gpubalance_enc_place_on_candidates(GstGpubalanceEnc *self)
{
    GpbSampling sampling = gst_gpubalance_enc_current_sampling(self);

    for (;;) {
        gchar *why = NULL;
        gboolean settings_refused = FALSE;
        gboolean ok;

        if (gpubalance_lease_check_open(self->lease) < 0) {
            ok = gst_gpubalance_enc_next_candidate(self, GPUBALANCE_FAILURE_CAPACITY, gpubalance_last_error());
        } else if (gst_gpubalance_enc_build_chain(self, sampling, &why, &settings_refused)) {
            return TRUE;
        } else {
            /* a setting this child cannot take says nothing about the device */
            ok = settings_refused ? gst_gpubalance_enc_next_candidate(self, GPUBALANCE_FAILURE_OTHER, why)
                                  : gst_gpubalance_enc_open_failed(self, why);
            g_free(why);
        }
        if (!ok) {
            GST_ELEMENT_ERROR(self, STREAM, ENCODE, ("No encoder could encode this stream."),
                              ("%s", gpubalance_last_error()));
            return FALSE;
        }
    }
}

/* ---- placement ------------------------------------------------------------ */

static gpubalance_codec gst_gpubalance_enc_codec_for_stream(GstGpubalanceEnc *self)
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
        /* the first media type downstream prefers */
        const GstStructure *first = gst_caps_get_structure(peer, 0);

        if (gst_structure_has_name(first, "video/x-h265"))
            codec = GPUBALANCE_CODEC_HEVC;
        else if (gst_structure_has_name(first, "video/x-av1"))
            codec = GPUBALANCE_CODEC_AV1;
        else if (gst_structure_has_name(first, "video/x-h264"))
            codec = GPUBALANCE_CODEC_H264;
    }
    gst_clear_caps(&peer);
    return codec;
}

static gpubalance_stream *gst_gpubalance_enc_describe_stream(GstGpubalanceEnc *self, const GstVideoInfo *info,
                                                             guint depth)
{
    gpubalance_stream *s;
    double fps = info->fps_d ? (double)info->fps_n / info->fps_d : 0;

    gpubalance_stream_new(&s);
    gpubalance_stream_set_codec(s, self->active_codec);
    gpubalance_stream_set_size(s, CLAMP(info->width, GPUBALANCE_MIN_DIMENSION, GPUBALANCE_MAX_DIMENSION),
                               CLAMP(info->height, GPUBALANCE_MIN_DIMENSION, GPUBALANCE_MAX_DIMENSION));
    gpubalance_stream_set_fps(s, CLAMP(fps, 0, GPUBALANCE_MAX_FPS));
    gpubalance_stream_set_bit_depth(s, depth);
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

void gst_gpubalance_enc_end_placement(GstGpubalanceEnc *self)
{
    gst_gpubalance_enc_teardown_chain(self);
    gst_gpubalance_enc_clear_trial(self);
    g_mutex_lock(&self->trial_lock);
    gst_gpubalance_enc_clear_held(self);
    g_mutex_unlock(&self->trial_lock);
    g_clear_pointer(&self->lease, gpubalance_lease_release);
}

static GstPadProbeReturn gst_gpubalance_enc_drop_eos(GstPad *pad, GstPadProbeInfo *info, gpointer user_data)
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
static void gst_gpubalance_enc_drain_chain(GstGpubalanceEnc *self)
{
    GstPad *in, *out;
    gboolean drained = FALSE;
    gulong probe;

    if (!self->convert || !self->capsfilter)
        return;
    in = gst_element_get_static_pad(self->convert, "sink");
    out = gst_element_get_static_pad(self->capsfilter, "src");
    probe = gst_pad_add_probe(out, GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM, gst_gpubalance_enc_drop_eos, &drained, NULL);
    gst_pad_send_event(in, gst_event_new_eos());
    gst_pad_remove_probe(out, probe);
    GST_INFO_OBJECT(self, "drained %s before placing again: %s", GST_OBJECT_NAME(self->encoder),
                    drained ? "done" : "its EOS did not come through");
    gst_object_unref(in);
    gst_object_unref(out);
}

/* The same encode as the current one: size, rate and sampling. A new
 * input format that converts into the same encoder format keeps it. */
static gboolean gst_gpubalance_enc_same_encode(GstGpubalanceEnc *self, const GstVideoInfo *info)
{
    GpbSampling now, then;

    if (!self->lease || info->width != self->info.width || info->height != self->info.height ||
        info->fps_n != self->info.fps_n || info->fps_d != self->info.fps_d)
        return FALSE;
    now = gst_gpubalance_enc_stream_sampling(self, info, self->active_codec);
    then = gst_gpubalance_enc_current_sampling(self);
    return now.depth == then.depth && now.chroma == then.chroma;
}

gboolean gst_gpubalance_enc_place(GstGpubalanceEnc *self, GstCaps *caps)
{
    gpubalance_context *ctx;
    gpubalance_stream *stream;
    GstVideoInfo info;
    int status;

    if (!gst_video_info_from_caps(&info, caps)) {
        GST_ELEMENT_ERROR(self, STREAM, FORMAT, ("Unsupported input."),
                          ("cannot read video caps %" GST_PTR_FORMAT, caps));
        return FALSE;
    }
    if (gst_gpubalance_enc_same_encode(self, &info)) {
        self->info = info;
        return TRUE;
    }
    if (self->lease) {
        GST_INFO_OBJECT(self, "the stream changed to %" GST_PTR_FORMAT ": placing it again", caps);
        gst_gpubalance_enc_drain_chain(self);
    }
    gst_gpubalance_enc_end_placement(self);
    self->info = info;
    if (!(ctx = gpubalance_context_shared())) {
        GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS, ("gpubalance is not usable."), ("%s", gpubalance_last_error()));
        return FALSE;
    }
    self->active_codec = gst_gpubalance_enc_codec_for_stream(self);
    stream = gst_gpubalance_enc_describe_stream(self, &info, gst_gpubalance_enc_current_sampling(self).depth);
    status = gpubalance_lease_acquire(ctx, stream, &self->lease);
    gpubalance_stream_free(stream);
    if (status < 0) {
        GST_ELEMENT_ERROR(self, RESOURCE, BUSY, ("No encoder is available for this stream."),
                          ("%s: %s", gpubalance_strerror(status), gpubalance_last_error()));
        return FALSE;
    }
    return gst_gpubalance_enc_place_on_candidates(self);
}
