/* swenc.h - the software encoder under the stand-in hardware encoders
 * (NVENC and VA-API): x264 for H.264, x265 for HEVC, set for one frame in,
 * one frame out (no B-frames, no lookahead), as the stand-ins declare. */
#ifndef GPB_STANDIN_SWENC_H
#define GPB_STANDIN_SWENC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { SWENC_H264, SWENC_HEVC } swenc_codec;
typedef enum { SWENC_RC_CQP, SWENC_RC_VBR, SWENC_RC_CBR, SWENC_RC_QUALITY } swenc_rc;
typedef enum { SWENC_FRAME_IDR, SWENC_FRAME_I, SWENC_FRAME_P, SWENC_FRAME_B } swenc_frame_type;

typedef struct {
    swenc_codec codec;
    int width, height;
    int fps_num, fps_den;
    int keyint; /* 0: only the first frame is a keyframe */
    swenc_rc rc;
    int qp;              /* CQP, and QUALITY's constant-quality target */
    int bitrate_kbps;    /* VBR/CBR */
    int max_kbps;        /* 0: unbounded */
    int vbv_kbits;       /* 0: encoder's choice */
    const char *profile; /* x264/x265 profile name, or NULL */
} swenc_params;

typedef struct {
    const uint8_t *data; /* Annex B; valid until the next call */
    size_t size;
    swenc_frame_type type;
    int qp;
} swenc_frame;

typedef struct swenc swenc;

/* NULL when the encoder refuses the parameters (a message on stderr). */
swenc *swenc_open(const swenc_params *params);
/* The parameter sets (SPS/PPS, and VPS for HEVC) in Annex B. */
int swenc_headers(swenc *enc, const uint8_t **data, size_t *size);
/* Encodes one I420 picture; 0 on success. */
int swenc_encode(swenc *enc, const uint8_t *const planes[3], const int strides[3], bool force_idr, swenc_frame *out);
void swenc_close(swenc *enc);

#endif
