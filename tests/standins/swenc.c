/* swenc.c - x264/x265 under the stand-in hardware encoders (see swenc.h). */
#include "swenc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <x264.h>
#include <x265.h>

struct swenc {
    swenc_params params;
    x264_t *x264;
    x265_encoder *x265;
    x265_param *x265_params;
    x265_picture *x265_pic;
    uint8_t *headers;
    size_t headers_size;
    uint8_t *frame; /* the last frame's NAL units, concatenated */
    size_t frame_cap;
};

static int append(uint8_t **buf, size_t *size, size_t *cap, const uint8_t *data, size_t n)
{
    if (*size + n > *cap) {
        size_t want = (*size + n) * 2;
        uint8_t *grown = realloc(*buf, want);

        if (!grown)
            return -1;
        *buf = grown;
        *cap = want;
    }
    memcpy(*buf + *size, data, n);
    *size += n;
    return 0;
}

/* ---- x264 ----------------------------------------------------------------- */

static void x264_rate_control(x264_param_t *p, const swenc_params *sp)
{
    switch (sp->rc) {
    case SWENC_RC_CQP:
        p->rc.i_rc_method = X264_RC_CQP;
        p->rc.i_qp_constant = sp->qp;
        break;
    case SWENC_RC_QUALITY:
        p->rc.i_rc_method = X264_RC_CRF;
        p->rc.f_rf_constant = (float)sp->qp;
        break;
    case SWENC_RC_VBR:
    case SWENC_RC_CBR:
        p->rc.i_rc_method = X264_RC_ABR;
        p->rc.i_bitrate = sp->bitrate_kbps;
        p->rc.i_vbv_max_bitrate = sp->rc == SWENC_RC_CBR ? sp->bitrate_kbps : sp->max_kbps;
        if (p->rc.i_vbv_max_bitrate)
            p->rc.i_vbv_buffer_size = sp->vbv_kbits ? sp->vbv_kbits : p->rc.i_vbv_max_bitrate;
        break;
    }
}

static int open_x264(swenc *enc)
{
    const swenc_params *sp = &enc->params;
    x264_param_t p;
    x264_nal_t *nals;
    int n_nals;
    size_t cap = 0;

    if (x264_param_default_preset(&p, "ultrafast", "zerolatency") < 0)
        return -1;
    p.i_threads = 1;
    p.i_width = sp->width;
    p.i_height = sp->height;
    p.i_csp = X264_CSP_I420;
    p.i_fps_num = (uint32_t)(sp->fps_num > 0 ? sp->fps_num : 30);
    p.i_fps_den = (uint32_t)(sp->fps_den > 0 ? sp->fps_den : 1);
    p.i_keyint_max = sp->keyint > 0 ? sp->keyint : X264_KEYINT_MAX_INFINITE;
    p.i_bframe = 0;
    p.b_annexb = 1;
    p.b_repeat_headers = 1; /* NVENC and VA-API put SPS/PPS before every IDR */
    p.i_log_level = X264_LOG_ERROR;
    x264_rate_control(&p, sp);
    /* ultrafast turns off what main and high profiles mean */
    p.b_cabac = !sp->profile || strcmp(sp->profile, "baseline") != 0;
    p.analyse.b_transform_8x8 = !sp->profile || strcmp(sp->profile, "high") == 0;
    if (sp->profile && x264_param_apply_profile(&p, sp->profile) < 0)
        return -1;
    enc->x264 = x264_encoder_open(&p);
    if (!enc->x264)
        return -1;
    if (x264_encoder_headers(enc->x264, &nals, &n_nals) < 0)
        return -1;
    for (int i = 0; i < n_nals; i++)
        if (nals[i].i_type == NAL_SPS || nals[i].i_type == NAL_PPS)
            if (append(&enc->headers, &enc->headers_size, &cap, nals[i].p_payload, (size_t)nals[i].i_payload) < 0)
                return -1;
    return 0;
}

static swenc_frame_type x264_type(const x264_picture_t *pic)
{
    if (pic->i_type == X264_TYPE_IDR)
        return SWENC_FRAME_IDR;
    if (IS_X264_TYPE_I(pic->i_type))
        return SWENC_FRAME_I;
    return IS_X264_TYPE_B(pic->i_type) ? SWENC_FRAME_B : SWENC_FRAME_P;
}

static int encode_x264(swenc *enc, const uint8_t *const planes[3], const int strides[3], bool force_idr,
                       swenc_frame *out)
{
    x264_picture_t in, pic_out;
    x264_nal_t *nals;
    int n_nals, size;

    x264_picture_init(&in);
    in.img.i_csp = X264_CSP_I420;
    in.img.i_plane = 3;
    for (int i = 0; i < 3; i++) {
        in.img.plane[i] = (uint8_t *)planes[i];
        in.img.i_stride[i] = strides[i];
    }
    in.i_type = force_idr ? X264_TYPE_IDR : X264_TYPE_AUTO;
    size = x264_encoder_encode(enc->x264, &nals, &n_nals, &in, &pic_out);
    if (size <= 0)
        return -1; /* one in, one out: nothing out is a failure */
    /* x264's NAL payloads are contiguous. */
    out->data = nals[0].p_payload;
    out->size = (size_t)size;
    out->type = x264_type(&pic_out);
    out->qp = pic_out.i_qpplus1 - 1;
    return 0;
}

/* ---- x265 ----------------------------------------------------------------- */

static int open_x265(swenc *enc)
{
    const swenc_params *sp = &enc->params;
    x265_param *p = x265_param_alloc();
    x265_nal *nals;
    uint32_t n_nals;
    size_t cap = 0;

    enc->x265_params = p;
    if (!p || x265_param_default_preset(p, "ultrafast", "zerolatency") < 0)
        return -1;
    x265_param_parse(p, "pools", "none");
    x265_param_parse(p, "frame-threads", "1");
    x265_param_parse(p, "log-level", "error");
    p->sourceWidth = sp->width;
    p->sourceHeight = sp->height;
    p->internalCsp = X265_CSP_I420;
    p->fpsNum = (uint32_t)(sp->fps_num > 0 ? sp->fps_num : 30);
    p->fpsDenom = (uint32_t)(sp->fps_den > 0 ? sp->fps_den : 1);
    p->keyframeMax = sp->keyint > 0 ? sp->keyint : -1;
    p->bframes = 0;
    p->bRepeatHeaders = 1;
    p->bAnnexB = 1;
    switch (sp->rc) {
    case SWENC_RC_CQP:
        p->rc.rateControlMode = X265_RC_CQP;
        p->rc.qp = sp->qp;
        break;
    case SWENC_RC_QUALITY:
        p->rc.rateControlMode = X265_RC_CRF;
        p->rc.rfConstant = sp->qp;
        break;
    default:
        p->rc.rateControlMode = X265_RC_ABR;
        p->rc.bitrate = sp->bitrate_kbps;
        p->rc.vbvMaxBitrate = sp->rc == SWENC_RC_CBR ? sp->bitrate_kbps : sp->max_kbps;
        if (p->rc.vbvMaxBitrate)
            p->rc.vbvBufferSize = sp->vbv_kbits ? sp->vbv_kbits : p->rc.vbvMaxBitrate;
    }
    if (sp->profile && x265_param_apply_profile(p, sp->profile) < 0)
        return -1;
    enc->x265 = x265_encoder_open(p);
    if (!enc->x265)
        return -1;
    enc->x265_pic = x265_picture_alloc();
    x265_picture_init(p, enc->x265_pic);
    if (x265_encoder_headers(enc->x265, &nals, &n_nals) < 0)
        return -1;
    for (uint32_t i = 0; i < n_nals; i++)
        if (nals[i].type == NAL_UNIT_VPS || nals[i].type == NAL_UNIT_SPS || nals[i].type == NAL_UNIT_PPS)
            if (append(&enc->headers, &enc->headers_size, &cap, nals[i].payload, nals[i].sizeBytes) < 0)
                return -1;
    return 0;
}

static swenc_frame_type x265_type(int slice_type, bool idr)
{
    if (idr)
        return SWENC_FRAME_IDR;
    return slice_type == X265_TYPE_I ? SWENC_FRAME_I : slice_type == X265_TYPE_P ? SWENC_FRAME_P : SWENC_FRAME_B;
}

static int encode_x265(swenc *enc, const uint8_t *const planes[3], const int strides[3], bool force_idr,
                       swenc_frame *out)
{
    x265_picture *in = enc->x265_pic, pic_out;
    x265_nal *nals;
    uint32_t n_nals = 0;
    size_t size = 0;
    bool idr = false;

    for (int i = 0; i < 3; i++) {
        in->planes[i] = (void *)planes[i];
        in->stride[i] = strides[i];
    }
    in->sliceType = force_idr ? X265_TYPE_IDR : X265_TYPE_AUTO;
    if (x265_encoder_encode(enc->x265, &nals, &n_nals, in, &pic_out) <= 0)
        return -1;
    for (uint32_t i = 0; i < n_nals; i++) {
        idr |= nals[i].type == NAL_UNIT_CODED_SLICE_IDR_W_RADL || nals[i].type == NAL_UNIT_CODED_SLICE_IDR_N_LP;
        if (append(&enc->frame, &size, &enc->frame_cap, nals[i].payload, nals[i].sizeBytes) < 0)
            return -1;
    }
    out->data = enc->frame;
    out->size = size;
    out->type = x265_type(pic_out.sliceType, idr);
    out->qp = (int)pic_out.frameData.qp;
    return 0;
}

/* ---- the interface ----------------------------------------------------------- */

swenc *swenc_open(const swenc_params *params)
{
    swenc *enc = calloc(1, sizeof(*enc));
    int ret;

    if (!enc)
        return NULL;
    enc->params = *params;
    ret = params->codec == SWENC_H264 ? open_x264(enc) : open_x265(enc);
    if (ret < 0) {
        fprintf(stderr, "stand-in encoder: %s refused %dx%d\n", params->codec == SWENC_H264 ? "x264" : "x265",
                params->width, params->height);
        swenc_close(enc);
        return NULL;
    }
    return enc;
}

int swenc_headers(swenc *enc, const uint8_t **data, size_t *size)
{
    *data = enc->headers;
    *size = enc->headers_size;
    return 0;
}

int swenc_encode(swenc *enc, const uint8_t *const planes[3], const int strides[3], bool force_idr, swenc_frame *out)
{
    return enc->params.codec == SWENC_H264 ? encode_x264(enc, planes, strides, force_idr, out)
                                           : encode_x265(enc, planes, strides, force_idr, out);
}

void swenc_close(swenc *enc)
{
    if (!enc)
        return;
    if (enc->x264)
        x264_encoder_close(enc->x264);
    if (enc->x265)
        x265_encoder_close(enc->x265);
    if (enc->x265_pic)
        x265_picture_free(enc->x265_pic);
    if (enc->x265_params)
        x265_param_free(enc->x265_params);
    free(enc->headers);
    free(enc->frame);
    free(enc);
}
