/* fakeenc.h - a stand-in hardware encoder for the element tests: an
 * element that looks like GStreamer's nvcodec encoders (a cuda-device-id
 * property, H.264 out) and refuses on its first buffer exactly as an NVENC
 * element past the GeForce cap does. Registered in the test process only. */
#ifndef GPB_FAKEENC_H
#define GPB_FAKEENC_H

#include <gst/gst.h>

/* Registers "gpbfakenvh264enc". */
void gpb_fakeenc_register(void);

/* Registers "gpbfakestarth264enc", ranked above the other: the same, but
 * it fails its NULL->READY change, as an element does that cannot create
 * its device context. */
void gpb_fakeenc_register_refusing_start(void);

#endif
