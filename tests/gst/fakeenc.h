/* fakeenc.h - a stand-in hardware encoder for the element tests: an
 * element that looks like GStreamer 1.24's nvcodec encoders (their
 * properties and enums: cuda-device-id, preset p1..p7, tune, rc-mode,
 * H.264 out) and refuses on its first buffer exactly as an NVENC element
 * past the GeForce cap does. Registered in the test process only. */
#ifndef GPB_FAKEENC_H
#define GPB_FAKEENC_H

#include <gst/gst.h>

/* Registers "gpbfakenvh264enc". */
void gpb_fakeenc_register(void);

/* Registers "gpbfakebareh264enc", ranked above the others: the same
 * refusal with a cuda-device-id and no other property, so that no setting
 * the element maps can be honoured on it. */
void gpb_fakeenc_register_bare(void);

/* Registers "gpbfakestarth264enc", ranked above the other: the same, but
 * it fails its NULL->READY change, as an element does that cannot create
 * its device context. */
void gpb_fakeenc_register_refusing_start(void);

#endif
