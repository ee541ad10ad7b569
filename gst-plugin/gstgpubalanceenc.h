/* gstgpubalanceenc.h - the gpubalanceenc element: encodes through whatever
 * encoder libgpubalance places the stream on. */
#ifndef GST_GPUBALANCE_ENC_H
#define GST_GPUBALANCE_ENC_H

#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_GPUBALANCE_ENC (gst_gpubalance_enc_get_type())
G_DECLARE_FINAL_TYPE(GstGpubalanceEnc, gst_gpubalance_enc, GST, GPUBALANCE_ENC, GstBin)

GST_ELEMENT_REGISTER_DECLARE(gpubalanceenc);

/* Registers gpubalanceh264enc, gpubalanceh265enc and gpubalanceav1enc:
 * gpubalanceenc with one codec, for autopluggers. */
gboolean gst_gpubalance_enc_register_codec_elements(GstPlugin *plugin);

G_END_DECLS

#endif
