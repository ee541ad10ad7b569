/* plugin.c - the gpubalance GStreamer plugin. */
#include <gst/gst.h>

#include "gstgpubalanceenc.h"

static gboolean plugin_init(GstPlugin *plugin)
{
    return GST_ELEMENT_REGISTER(gpubalanceenc, plugin) && gst_gpubalance_enc_register_codec_elements(plugin);
}

#define PACKAGE "gpubalance"
GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, gpubalance,
                  "Places each encode on the right encoder of the host (NVENC, VA-API, software)", plugin_init,
                  GPUBALANCE_VERSION, "LGPL", "gpubalance", "https://example.invalid/gpubalance")
