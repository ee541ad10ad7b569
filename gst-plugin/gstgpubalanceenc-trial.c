/* gstgpubalanceenc-trial.c - the trial of a new child, replay and fallback.
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
 * failed does one error, the core's list of attempts, reach the
 * application.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstgpubalanceenc-private.h"

#define GST_CAT_DEFAULT gst_gpubalance_enc_debug

/* The first encoded buffer ends the trial: the lease is opened. */
static GstPadProbeReturn gst_gpubalance_enc_on_first_output(GstPad *pad, GstPadProbeInfo *info, gpointer user_data)
{
    GstGpubalanceEnc *self = user_data;

    g_mutex_lock(&self->trial_lock);
    if (self->on_trial) {
        self->on_trial = FALSE;
        gst_gpubalance_enc_clear_held(self);
        if (self->lease)
            gpubalance_lease_mark_opened(self->lease);
        GST_INFO_OBJECT(self, "%s produced its first buffer; lease opened",
                        self->lease ? gpubalance_lease_device(self->lease) : "?");
    }
    g_mutex_unlock(&self->trial_lock);
    return GST_PAD_PROBE_REMOVE;
}

void gst_gpubalance_enc_start_trial(GstGpubalanceEnc *self)
{
    GstPad *pad = gst_element_get_static_pad(self->encoder, "src");

    g_mutex_lock(&self->trial_lock); /* a new child starts its trial clean */
    self->on_trial = TRUE;
    g_clear_pointer(&self->trial_error, g_free);
    g_mutex_unlock(&self->trial_lock);
    gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, gst_gpubalance_enc_on_first_output, self, NULL);
    gst_object_unref(pad);
}

/* Nothing of a child's trial stays behind it. */
void gst_gpubalance_enc_clear_trial(GstGpubalanceEnc *self)
{
    g_mutex_lock(&self->trial_lock);
    self->on_trial = FALSE;
    g_clear_pointer(&self->trial_error, g_free);
    g_mutex_unlock(&self->trial_lock);
}

/* The trial's failure after a push, if any (newly allocated). */
static gchar *gst_gpubalance_enc_trial_failure(GstGpubalanceEnc *self, GstFlowReturn ret)
{
    gchar *why = NULL;

    g_mutex_lock(&self->trial_lock);
    if (self->on_trial && (self->trial_error || ret == GST_FLOW_ERROR || ret == GST_FLOW_NOT_NEGOTIATED))
        why = g_strdup(self->trial_error ? self->trial_error : gst_flow_get_name(ret));
    g_mutex_unlock(&self->trial_lock);
    return why;
}

/* Ends the trial and takes the buffers it held. */
static void gst_gpubalance_enc_take_held(GstGpubalanceEnc *self, GQueue *into)
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
static GstFlowReturn gst_gpubalance_enc_replay(GstGpubalanceEnc *self, GstPad *pad, GstObject *parent, GQueue *held,
                                               gchar **why)
{
    GstFlowReturn ret = GST_FLOW_OK;
    GstBuffer *buf;

    GST_INFO_OBJECT(self, "replaying %u held buffer(s) into %s", held->length, GST_OBJECT_NAME(self->encoder));
    while (!*why && (buf = g_queue_pop_head(held))) {
        g_mutex_lock(&self->trial_lock);
        if (self->on_trial && self->held.length < GST_GPUBALANCE_ENC_MAX_HELD)
            g_queue_push_tail(&self->held, gst_buffer_ref(buf));
        g_mutex_unlock(&self->trial_lock);
        ret = gst_proxy_pad_chain_default(pad, parent, buf);
        *why = gst_gpubalance_enc_trial_failure(self, ret);
        if (ret != GST_FLOW_OK && !*why)
            break; /* flushing or EOS downstream: not the child's failure */
    }
    return ret;
}

/* The child on trial failed: each next candidate gets the held buffers,
 * until one takes them or none is left. */
static GstFlowReturn gst_gpubalance_enc_fall_back(GstGpubalanceEnc *self, GstPad *pad, GstObject *parent, gchar *why)
{
    GQueue held = G_QUEUE_INIT;
    GstFlowReturn ret = GST_FLOW_ERROR;

    gst_gpubalance_enc_take_held(self, &held);
    while (why) {
        gst_gpubalance_enc_teardown_chain(self);
        if (!gst_gpubalance_enc_open_failed(self, why)) {
            GST_ELEMENT_ERROR(self, STREAM, ENCODE, ("No encoder could encode this stream."),
                              ("%s", gpubalance_last_error()));
            g_free(why);
            break;
        }
        g_clear_pointer(&why, g_free);
        if (!gst_gpubalance_enc_place_on_candidates(self))
            break; /* it posted the error */
        ret = gst_gpubalance_enc_replay(self, pad, parent, &held, &why);
        if (why) { /* that one failed too: its held buffers go on */
            GQueue again = G_QUEUE_INIT;
            GstBuffer *rest;

            gst_gpubalance_enc_take_held(self, &again);
            while ((rest = g_queue_pop_head(&held)))
                g_queue_push_tail(&again, rest);
            held = again;
        }
    }
    g_queue_clear_full(&held, (GDestroyNotify)gst_buffer_unref);
    return ret;
}

GstFlowReturn gst_gpubalance_enc_sink_chain(GstPad *pad, GstObject *parent, GstBuffer *buf)
{
    GstGpubalanceEnc *self = GST_GPUBALANCE_ENC(parent);
    GstFlowReturn ret;
    gboolean on_trial;
    gchar *why = NULL;

    g_mutex_lock(&self->trial_lock);
    on_trial = self->on_trial;
    if (on_trial && self->held.length < GST_GPUBALANCE_ENC_MAX_HELD)
        g_queue_push_tail(&self->held, gst_buffer_ref(buf));
    g_mutex_unlock(&self->trial_lock);

    ret = gst_proxy_pad_chain_default(pad, parent, buf);
    if (on_trial && (why = gst_gpubalance_enc_trial_failure(self, ret)))
        ret = gst_gpubalance_enc_fall_back(self, pad, parent, why); /* takes why */
    return ret;
}

gboolean gst_gpubalance_enc_sink_event(GstPad *pad, GstObject *parent, GstEvent *event)
{
    GstGpubalanceEnc *self = GST_GPUBALANCE_ENC(parent);

    if (GST_EVENT_TYPE(event) == GST_EVENT_CAPS) {
        GstCaps *caps;

        gst_event_parse_caps(event, &caps);
        if (!gst_gpubalance_enc_place(self, caps)) {
            gst_event_unref(event);
            return FALSE;
        }
    }
    return gst_pad_event_default(pad, parent, event);
}

/* Errors of a child on trial are the element's to handle, not the
 * application's: keeps them for the streaming thread, which falls back.
 * TRUE when the message was kept (and is no longer the caller's). */
gboolean gst_gpubalance_enc_keep_trial_error(GstGpubalanceEnc *self, GstMessage *message)
{
    gboolean kept = FALSE;

    if (GST_MESSAGE_TYPE(message) != GST_MESSAGE_ERROR)
        return FALSE;
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
        kept = TRUE;
    }
    g_mutex_unlock(&self->trial_lock);
    if (kept)
        gst_message_unref(message);
    return kept;
}
