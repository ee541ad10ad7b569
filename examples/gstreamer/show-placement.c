/* show-placement.c - builds a pipeline with gpubalanceenc and prints every
 * placement the element reports on the bus: the device, its backend, the
 * GStreamer element encoding, and the attempt (2 or more after a fallback).
 *
 *   build/examples/show-placement [WIDTH HEIGHT FPS]
 */
#include <gst/gst.h>
#include <stdio.h>
#include <stdlib.h>

static void print_placement(const GstStructure *s)
{
    gint attempt = 0;

    gst_structure_get_int(s, "attempt", &attempt);
    printf("placed on %s (backend %s) encoding with %s, attempt %d\n  why: %s\n", gst_structure_get_string(s, "device"),
           gst_structure_get_string(s, "backend"), gst_structure_get_string(s, "encoder"), attempt,
           gst_structure_get_string(s, "reason"));
}

int main(int argc, char **argv)
{
    int width = argc > 3 ? atoi(argv[1]) : 1920;
    int height = argc > 3 ? atoi(argv[2]) : 1080;
    int fps = argc > 3 ? atoi(argv[3]) : 30;
    gchar *description;
    GstElement *pipeline;
    GstBus *bus;
    GError *error = NULL;
    int status = 0;

    gst_init(&argc, &argv);
    description = g_strdup_printf("videotestsrc num-buffers=%d ! video/x-raw,width=%d,height=%d,framerate=%d/1 ! "
                                  "gpubalanceenc speed=fast ! h264parse ! fakesink",
                                  fps * 2, width, height, fps);
    pipeline = gst_parse_launch(description, &error);
    if (!pipeline) {
        fprintf(stderr, "cannot build the pipeline: %s (is the gpubalance plugin on GST_PLUGIN_PATH?)\n",
                error->message);
        return 1;
    }
    bus = gst_element_get_bus(pipeline);
    gst_element_set_state(pipeline, GST_STATE_PLAYING);
    for (;;) {
        GstMessage *msg = gst_bus_timed_pop(bus, GST_CLOCK_TIME_NONE);
        const GstStructure *s = gst_message_get_structure(msg);

        if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ELEMENT && gst_structure_has_name(s, "gpubalance-selected")) {
            print_placement(s);
        } else if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
            GError *err = NULL;
            gchar *debug = NULL;

            gst_message_parse_error(msg, &err, &debug);
            fprintf(stderr, "error: %s\n%s\n", err->message, debug ? debug : "");
            g_error_free(err);
            g_free(debug);
            status = 1;
            gst_message_unref(msg);
            break;
        } else if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS) {
            printf("encoded %d frames\n", fps * 2);
            gst_message_unref(msg);
            break;
        }
        gst_message_unref(msg);
    }
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(bus);
    gst_object_unref(pipeline);
    g_free(description);
    return status;
}
