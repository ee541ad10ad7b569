/* vaapi.c - a stand-in VA-API driver (standin_drv_video.so, loaded with
 * LIBVA_DRIVER_NAME=standin and LIBVA_DRIVERS_PATH): H.264 and HEVC
 * encode entrypoints (VAEntrypointEncSlice), NV12 surfaces in host memory,
 * images (create, derive, get, put) for upload, coded buffers, and x264 or
 * x265 underneath (swenc.h). It declares what it does: no packed headers
 * (the driver writes the whole bitstream, parameter sets included), one
 * reference frame and no B-frames, one slice. It never touches the DRM
 * file descriptor, so any character device that libva takes for a render
 * node can carry it (see test_standins.c). Test infrastructure only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <va/va.h>
#include <va/va_backend.h>
#include <va/va_enc_h264.h>
#include <va/va_enc_hevc.h>

#include "swenc.h"

#define MAX_OBJECTS 4096
#define MAX_DIMENSION 4096
#define MIN_DIMENSION 16
#define DEFAULT_QP 26

typedef enum { OBJ_FREE, OBJ_CONFIG, OBJ_SURFACE, OBJ_CONTEXT, OBJ_BUFFER, OBJ_IMAGE } object_kind;

typedef struct {
    VAProfile profile;
    unsigned rc_mode;
} config;

typedef struct {
    int width, height, pitch;
    unsigned char *data; /* NV12: luma, then interleaved chroma at pitch * height */
} surface;

typedef struct {
    VABufferType type;
    unsigned size, n_elements;
    unsigned char *data;          /* NULL for an image's buffer that aliases a surface */
    unsigned char *alias;         /* a derived image's surface memory */
    VACodedBufferSegment segment; /* a coded buffer's one segment */
    unsigned char *coded;
    size_t coded_cap;
} buffer;

typedef struct {
    VAImage image;
    int derived;
} image;

typedef struct {
    VAProfile profile;
    unsigned rc_mode;
    int width, height;
    VASurfaceID target;
    VABufferID coded_buf;
    int idr;
    int qp;
    unsigned bits_per_second;
    unsigned fps_num, fps_den;
    swenc *enc;
} context;

typedef struct {
    object_kind kind;
    void *data;
} object;

static object objects[MAX_OBJECTS];

static VAGenericID new_object(object_kind kind, void *data)
{
    for (unsigned i = 1; i < MAX_OBJECTS; i++)
        if (objects[i].kind == OBJ_FREE) {
            objects[i] = (object){kind, data};
            return i;
        }
    return VA_INVALID_ID;
}

static void *object_of(VAGenericID id, object_kind kind)
{
    return id < MAX_OBJECTS && objects[id].kind == kind ? objects[id].data : NULL;
}

static void free_object(VAGenericID id)
{
    free(objects[id].data);
    objects[id] = (object){OBJ_FREE, NULL};
}

static int profile_supported(VAProfile profile)
{
    return profile == VAProfileH264ConstrainedBaseline || profile == VAProfileH264Main ||
           profile == VAProfileH264High || profile == VAProfileHEVCMain;
}

static int is_hevc(VAProfile profile)
{
    return profile == VAProfileHEVCMain;
}

/* ---- configuration ---------------------------------------------------------- */

static VAStatus query_profiles(VADriverContextP ctx, VAProfile *list, int *n)
{
    static const VAProfile profiles[] = {VAProfileH264ConstrainedBaseline, VAProfileH264Main, VAProfileH264High,
                                         VAProfileHEVCMain};

    (void)ctx;
    memcpy(list, profiles, sizeof(profiles));
    *n = sizeof(profiles) / sizeof(profiles[0]);
    return VA_STATUS_SUCCESS;
}

static VAStatus query_entrypoints(VADriverContextP ctx, VAProfile profile, VAEntrypoint *list, int *n)
{
    (void)ctx;
    if (!profile_supported(profile))
        return VA_STATUS_ERROR_UNSUPPORTED_PROFILE;
    list[0] = VAEntrypointEncSlice;
    *n = 1;
    return VA_STATUS_SUCCESS;
}

static unsigned attribute_value(VAConfigAttribType type)
{
    switch (type) {
    case VAConfigAttribRTFormat:
        return VA_RT_FORMAT_YUV420;
    case VAConfigAttribRateControl:
        return VA_RC_CQP | VA_RC_CBR | VA_RC_VBR;
    case VAConfigAttribEncPackedHeaders:
        return VA_ENC_PACKED_HEADER_NONE;
    case VAConfigAttribEncMaxRefFrames:
        return 1; /* one in list 0, none in list 1: no B-frames */
    case VAConfigAttribEncMaxSlices:
        return 1;
    case VAConfigAttribEncQualityRange:
        return 1;
    default:
        return VA_ATTRIB_NOT_SUPPORTED;
    }
}

static VAStatus get_config_attributes(VADriverContextP ctx, VAProfile profile, VAEntrypoint entrypoint,
                                      VAConfigAttrib *list, int n)
{
    (void)ctx;
    if (!profile_supported(profile))
        return VA_STATUS_ERROR_UNSUPPORTED_PROFILE;
    if (entrypoint != VAEntrypointEncSlice)
        return VA_STATUS_ERROR_UNSUPPORTED_ENTRYPOINT;
    for (int i = 0; i < n; i++)
        list[i].value = attribute_value(list[i].type);
    return VA_STATUS_SUCCESS;
}

static VAStatus create_config(VADriverContextP ctx, VAProfile profile, VAEntrypoint entrypoint, VAConfigAttrib *list,
                              int n, VAConfigID *id)
{
    config *c;

    (void)ctx;
    if (!profile_supported(profile))
        return VA_STATUS_ERROR_UNSUPPORTED_PROFILE;
    if (entrypoint != VAEntrypointEncSlice)
        return VA_STATUS_ERROR_UNSUPPORTED_ENTRYPOINT;
    c = calloc(1, sizeof(*c));
    c->profile = profile;
    c->rc_mode = VA_RC_CQP;
    for (int i = 0; i < n; i++) {
        if (list[i].type == VAConfigAttribRateControl)
            c->rc_mode = list[i].value;
        else if (list[i].type == VAConfigAttribRTFormat && list[i].value != VA_RT_FORMAT_YUV420) {
            free(c);
            return VA_STATUS_ERROR_UNSUPPORTED_RT_FORMAT;
        }
    }
    *id = new_object(OBJ_CONFIG, c);
    return VA_STATUS_SUCCESS;
}

static VAStatus destroy_config(VADriverContextP ctx, VAConfigID id)
{
    (void)ctx;
    if (!object_of(id, OBJ_CONFIG))
        return VA_STATUS_ERROR_INVALID_CONFIG;
    free_object(id);
    return VA_STATUS_SUCCESS;
}

static VAStatus query_config_attributes(VADriverContextP ctx, VAConfigID id, VAProfile *profile,
                                        VAEntrypoint *entrypoint, VAConfigAttrib *list, int *n)
{
    config *c = object_of(id, OBJ_CONFIG);

    (void)ctx;
    if (!c)
        return VA_STATUS_ERROR_INVALID_CONFIG;
    *profile = c->profile;
    *entrypoint = VAEntrypointEncSlice;
    list[0] = (VAConfigAttrib){VAConfigAttribRTFormat, VA_RT_FORMAT_YUV420};
    list[1] = (VAConfigAttrib){VAConfigAttribRateControl, c->rc_mode};
    *n = 2;
    return VA_STATUS_SUCCESS;
}

/* ---- surfaces --------------------------------------------------------------------- */

static VAStatus create_surfaces2(VADriverContextP ctx, unsigned format, unsigned width, unsigned height,
                                 VASurfaceID *ids, unsigned n, VASurfaceAttrib *attribs, unsigned n_attribs)
{
    (void)ctx;
    for (unsigned i = 0; i < n_attribs; i++)
        if (attribs[i].type == VASurfaceAttribPixelFormat && attribs[i].value.value.i != VA_FOURCC_NV12)
            return VA_STATUS_ERROR_UNSUPPORTED_RT_FORMAT;
    if (format != VA_RT_FORMAT_YUV420)
        return VA_STATUS_ERROR_UNSUPPORTED_RT_FORMAT;
    if (width < 1 || height < 1 || width > MAX_DIMENSION || height > MAX_DIMENSION)
        return VA_STATUS_ERROR_RESOLUTION_NOT_SUPPORTED;
    for (unsigned i = 0; i < n; i++) {
        surface *s = calloc(1, sizeof(*s));

        s->width = (int)width;
        s->height = (int)((height + 1) & ~1u);
        s->pitch = (int)((width + 63) & ~63u);
        s->data = calloc(1, (size_t)s->pitch * (size_t)s->height * 3 / 2);
        ids[i] = new_object(OBJ_SURFACE, s);
    }
    return VA_STATUS_SUCCESS;
}

static VAStatus create_surfaces(VADriverContextP ctx, int width, int height, int format, int n, VASurfaceID *ids)
{
    return create_surfaces2(ctx, (unsigned)format, (unsigned)width, (unsigned)height, ids, (unsigned)n, NULL, 0);
}

static VAStatus destroy_surfaces(VADriverContextP ctx, VASurfaceID *ids, int n)
{
    (void)ctx;
    for (int i = 0; i < n; i++) {
        surface *s = object_of(ids[i], OBJ_SURFACE);

        if (!s)
            return VA_STATUS_ERROR_INVALID_SURFACE;
        free(s->data);
        free_object(ids[i]);
    }
    return VA_STATUS_SUCCESS;
}

static VAStatus query_surface_attributes(VADriverContextP ctx, VAConfigID id, VASurfaceAttrib *list, unsigned *n)
{
    const VASurfaceAttrib attribs[] = {
        {VASurfaceAttribPixelFormat,
         VA_SURFACE_ATTRIB_GETTABLE | VA_SURFACE_ATTRIB_SETTABLE,
         {VAGenericValueTypeInteger, {.i = VA_FOURCC_NV12}}},
        {VASurfaceAttribMinWidth, VA_SURFACE_ATTRIB_GETTABLE, {VAGenericValueTypeInteger, {.i = MIN_DIMENSION}}},
        {VASurfaceAttribMinHeight, VA_SURFACE_ATTRIB_GETTABLE, {VAGenericValueTypeInteger, {.i = MIN_DIMENSION}}},
        {VASurfaceAttribMaxWidth, VA_SURFACE_ATTRIB_GETTABLE, {VAGenericValueTypeInteger, {.i = MAX_DIMENSION}}},
        {VASurfaceAttribMaxHeight, VA_SURFACE_ATTRIB_GETTABLE, {VAGenericValueTypeInteger, {.i = MAX_DIMENSION}}},
        {VASurfaceAttribMemoryType,
         VA_SURFACE_ATTRIB_GETTABLE | VA_SURFACE_ATTRIB_SETTABLE,
         {VAGenericValueTypeInteger, {.i = VA_SURFACE_ATTRIB_MEM_TYPE_VA}}},
    };
    unsigned count = sizeof(attribs) / sizeof(attribs[0]);

    (void)ctx;
    if (!object_of(id, OBJ_CONFIG))
        return VA_STATUS_ERROR_INVALID_CONFIG;
    if (!list) {
        *n = count;
        return VA_STATUS_SUCCESS;
    }
    if (*n < count) {
        *n = count;
        return VA_STATUS_ERROR_MAX_NUM_EXCEEDED;
    }
    memcpy(list, attribs, sizeof(attribs));
    *n = count;
    return VA_STATUS_SUCCESS;
}

static VAStatus sync_surface(VADriverContextP ctx, VASurfaceID id)
{
    (void)ctx;
    return object_of(id, OBJ_SURFACE) ? VA_STATUS_SUCCESS : VA_STATUS_ERROR_INVALID_SURFACE;
}

static VAStatus query_surface_status(VADriverContextP ctx, VASurfaceID id, VASurfaceStatus *status)
{
    (void)ctx;
    if (!object_of(id, OBJ_SURFACE))
        return VA_STATUS_ERROR_INVALID_SURFACE;
    *status = VASurfaceReady; /* every operation is synchronous */
    return VA_STATUS_SUCCESS;
}

/* ---- buffers -------------------------------------------------------------------------- */

static VAStatus create_buffer(VADriverContextP ctx, VAContextID context_id, VABufferType type, unsigned size,
                              unsigned n_elements, void *data, VABufferID *id)
{
    buffer *b = calloc(1, sizeof(*b));

    (void)ctx;
    (void)context_id;
    b->type = type;
    b->size = size;
    b->n_elements = n_elements;
    b->data = calloc(1, (size_t)size * n_elements + 1);
    if (data && type != VAEncCodedBufferType)
        memcpy(b->data, data, (size_t)size * n_elements);
    *id = new_object(OBJ_BUFFER, b);
    return VA_STATUS_SUCCESS;
}

static VAStatus buffer_set_num_elements(VADriverContextP ctx, VABufferID id, unsigned n)
{
    buffer *b = object_of(id, OBJ_BUFFER);

    (void)ctx;
    if (!b)
        return VA_STATUS_ERROR_INVALID_BUFFER;
    if (n > b->n_elements)
        return VA_STATUS_ERROR_INVALID_PARAMETER;
    b->n_elements = n;
    return VA_STATUS_SUCCESS;
}

static VAStatus map_buffer(VADriverContextP ctx, VABufferID id, void **out)
{
    buffer *b = object_of(id, OBJ_BUFFER);

    (void)ctx;
    if (!b)
        return VA_STATUS_ERROR_INVALID_BUFFER;
    if (b->type == VAEncCodedBufferType)
        *out = &b->segment;
    else
        *out = b->alias ? b->alias : b->data;
    return VA_STATUS_SUCCESS;
}

static VAStatus unmap_buffer(VADriverContextP ctx, VABufferID id)
{
    (void)ctx;
    return object_of(id, OBJ_BUFFER) ? VA_STATUS_SUCCESS : VA_STATUS_ERROR_INVALID_BUFFER;
}

static VAStatus destroy_buffer(VADriverContextP ctx, VABufferID id)
{
    buffer *b = object_of(id, OBJ_BUFFER);

    (void)ctx;
    if (!b)
        return VA_STATUS_ERROR_INVALID_BUFFER;
    free(b->data);
    free(b->coded);
    free_object(id);
    return VA_STATUS_SUCCESS;
}

static VAStatus buffer_info(VADriverContextP ctx, VABufferID id, VABufferType *type, unsigned *size, unsigned *n)
{
    buffer *b = object_of(id, OBJ_BUFFER);

    (void)ctx;
    if (!b)
        return VA_STATUS_ERROR_INVALID_BUFFER;
    *type = b->type;
    *size = b->size;
    *n = b->n_elements;
    return VA_STATUS_SUCCESS;
}

/* ---- images: NV12 only ----------------------------------------------------------------- */

static const VAImageFormat nv12_format = {.fourcc = VA_FOURCC_NV12, .byte_order = VA_LSB_FIRST, .bits_per_pixel = 12};

static VAStatus query_image_formats(VADriverContextP ctx, VAImageFormat *list, int *n)
{
    (void)ctx;
    list[0] = nv12_format;
    *n = 1;
    return VA_STATUS_SUCCESS;
}

static void describe_nv12(VAImage *img, int width, int height, int pitch)
{
    img->format = nv12_format;
    img->width = (uint16_t)width;
    img->height = (uint16_t)height;
    img->num_planes = 2;
    img->pitches[0] = img->pitches[1] = (uint32_t)pitch;
    img->offsets[0] = 0;
    img->offsets[1] = (uint32_t)(pitch * height);
    img->data_size = (uint32_t)(pitch * height * 3 / 2);
}

static VAStatus new_image(VAImage *out, int derived)
{
    image *img = calloc(1, sizeof(*img));

    img->derived = derived;
    out->image_id = new_object(OBJ_IMAGE, img);
    img->image = *out;
    return VA_STATUS_SUCCESS;
}

static VAStatus create_image(VADriverContextP ctx, VAImageFormat *format, int width, int height, VAImage *out)
{
    int pitch = (width + 63) & ~63, even_height = (height + 1) & ~1;

    if (format->fourcc != VA_FOURCC_NV12)
        return VA_STATUS_ERROR_INVALID_IMAGE_FORMAT;
    memset(out, 0, sizeof(*out));
    describe_nv12(out, width, even_height, pitch);
    create_buffer(ctx, 0, VAImageBufferType, out->data_size, 1, NULL, &out->buf);
    return new_image(out, 0);
}

static VAStatus derive_image(VADriverContextP ctx, VASurfaceID id, VAImage *out)
{
    surface *s = object_of(id, OBJ_SURFACE);
    buffer *b;

    (void)ctx;
    if (!s)
        return VA_STATUS_ERROR_INVALID_SURFACE;
    memset(out, 0, sizeof(*out));
    describe_nv12(out, s->width, s->height, s->pitch);
    b = calloc(1, sizeof(*b));
    b->type = VAImageBufferType;
    b->size = out->data_size;
    b->n_elements = 1;
    b->alias = s->data;
    out->buf = new_object(OBJ_BUFFER, b);
    return new_image(out, 1);
}

static VAStatus destroy_image(VADriverContextP ctx, VAImageID id)
{
    image *img = object_of(id, OBJ_IMAGE);

    if (!img)
        return VA_STATUS_ERROR_INVALID_IMAGE;
    destroy_buffer(ctx, img->image.buf);
    free_object(id);
    return VA_STATUS_SUCCESS;
}

static void copy_nv12(unsigned char *dst, int dst_pitch, int dst_height, const unsigned char *src, int src_pitch,
                      int src_height, int width, int height)
{
    for (int y = 0; y < height; y++)
        memcpy(dst + (size_t)y * dst_pitch, src + (size_t)y * src_pitch, (size_t)width);
    for (int y = 0; y < (height + 1) / 2; y++)
        memcpy(dst + (size_t)dst_pitch * dst_height + (size_t)y * dst_pitch,
               src + (size_t)src_pitch * src_height + (size_t)y * src_pitch, (size_t)((width + 1) & ~1));
}

static VAStatus image_and_surface(VAImageID image_id, VASurfaceID surface_id, image **img, surface **s,
                                  unsigned char **pixels)
{
    buffer *b;

    *img = object_of(image_id, OBJ_IMAGE);
    *s = object_of(surface_id, OBJ_SURFACE);
    if (!*img)
        return VA_STATUS_ERROR_INVALID_IMAGE;
    if (!*s)
        return VA_STATUS_ERROR_INVALID_SURFACE;
    b = object_of((*img)->image.buf, OBJ_BUFFER);
    *pixels = b->alias ? b->alias : b->data;
    return VA_STATUS_SUCCESS;
}

/* Whole-picture copies only: what upload and download use. */
static VAStatus get_image(VADriverContextP ctx, VASurfaceID surface_id, int x, int y, unsigned width, unsigned height,
                          VAImageID image_id)
{
    image *img;
    surface *s;
    unsigned char *pixels;
    VAStatus st = image_and_surface(image_id, surface_id, &img, &s, &pixels);

    (void)ctx;
    if (st != VA_STATUS_SUCCESS)
        return st;
    if (x || y)
        return VA_STATUS_ERROR_UNIMPLEMENTED;
    copy_nv12(pixels, (int)img->image.pitches[0], img->image.height, s->data, s->pitch, s->height, (int)width,
              (int)height);
    return VA_STATUS_SUCCESS;
}

static VAStatus put_image(VADriverContextP ctx, VASurfaceID surface_id, VAImageID image_id, int src_x, int src_y,
                          unsigned src_width, unsigned src_height, int dest_x, int dest_y, unsigned dest_width,
                          unsigned dest_height)
{
    image *img;
    surface *s;
    unsigned char *pixels;
    VAStatus st = image_and_surface(image_id, surface_id, &img, &s, &pixels);

    (void)ctx;
    if (st != VA_STATUS_SUCCESS)
        return st;
    if (src_x || src_y || dest_x || dest_y || src_width != dest_width || src_height != dest_height)
        return VA_STATUS_ERROR_UNIMPLEMENTED; /* no scaling in the stand-in */
    copy_nv12(s->data, s->pitch, s->height, pixels, (int)img->image.pitches[0], img->image.height, (int)src_width,
              (int)src_height);
    return VA_STATUS_SUCCESS;
}

/* ---- encoding ----------------------------------------------------------------------------- */

static VAStatus create_context(VADriverContextP ctx, VAConfigID config_id, int width, int height, int flag,
                               VASurfaceID *targets, int n_targets, VAContextID *id)
{
    config *c = object_of(config_id, OBJ_CONFIG);
    context *x;

    (void)ctx;
    (void)flag;
    (void)targets;
    (void)n_targets;
    if (!c)
        return VA_STATUS_ERROR_INVALID_CONFIG;
    if (width < MIN_DIMENSION || height < MIN_DIMENSION || width > MAX_DIMENSION || height > MAX_DIMENSION)
        return VA_STATUS_ERROR_RESOLUTION_NOT_SUPPORTED;
    x = calloc(1, sizeof(*x));
    x->profile = c->profile;
    x->rc_mode = c->rc_mode;
    x->width = width;
    x->height = height;
    x->qp = DEFAULT_QP;
    x->fps_num = 30;
    x->fps_den = 1;
    *id = new_object(OBJ_CONTEXT, x);
    return VA_STATUS_SUCCESS;
}

static VAStatus destroy_context(VADriverContextP ctx, VAContextID id)
{
    context *x = object_of(id, OBJ_CONTEXT);

    (void)ctx;
    if (!x)
        return VA_STATUS_ERROR_INVALID_CONTEXT;
    swenc_close(x->enc);
    free_object(id);
    return VA_STATUS_SUCCESS;
}

static VAStatus begin_picture(VADriverContextP ctx, VAContextID id, VASurfaceID target)
{
    context *x = object_of(id, OBJ_CONTEXT);

    (void)ctx;
    if (!x)
        return VA_STATUS_ERROR_INVALID_CONTEXT;
    if (!object_of(target, OBJ_SURFACE))
        return VA_STATUS_ERROR_INVALID_SURFACE;
    x->target = target;
    x->coded_buf = VA_INVALID_ID;
    x->idr = 0;
    return VA_STATUS_SUCCESS;
}

static void read_picture_params(context *x, const buffer *b)
{
    if (is_hevc(x->profile)) {
        const VAEncPictureParameterBufferHEVC *p = (const void *)b->data;

        x->coded_buf = p->coded_buf;
        x->idr = p->pic_fields.bits.idr_pic_flag;
        x->qp = p->pic_init_qp;
    } else {
        const VAEncPictureParameterBufferH264 *p = (const void *)b->data;

        x->coded_buf = p->coded_buf;
        x->idr = p->pic_fields.bits.idr_pic_flag;
        x->qp = p->pic_init_qp;
    }
}

static void read_misc_params(context *x, const buffer *b)
{
    const VAEncMiscParameterBuffer *misc = (const void *)b->data;

    if (misc->type == VAEncMiscParameterTypeRateControl) {
        const VAEncMiscParameterRateControl *rc = (const void *)misc->data;

        x->bits_per_second = rc->bits_per_second;
    } else if (misc->type == VAEncMiscParameterTypeFrameRate) {
        const VAEncMiscParameterFrameRate *fr = (const void *)misc->data;

        /* the denominator is in the top 16 bits; 0 means 1 */
        x->fps_num = fr->framerate & 0xffff;
        x->fps_den = fr->framerate >> 16 ? fr->framerate >> 16 : 1;
    }
}

static VAStatus render_picture(VADriverContextP ctx, VAContextID id, VABufferID *ids, int n)
{
    context *x = object_of(id, OBJ_CONTEXT);

    (void)ctx;
    if (!x)
        return VA_STATUS_ERROR_INVALID_CONTEXT;
    for (int i = 0; i < n; i++) {
        buffer *b = object_of(ids[i], OBJ_BUFFER);

        if (!b)
            return VA_STATUS_ERROR_INVALID_BUFFER;
        if (b->type == VAEncPictureParameterBufferType)
            read_picture_params(x, b);
        else if (b->type == VAEncMiscParameterBufferType)
            read_misc_params(x, b);
        /* sequence and slice parameters: the software encoder decides */
    }
    return VA_STATUS_SUCCESS;
}

static int start_encoder(context *x)
{
    swenc_params p = {
        .codec = is_hevc(x->profile) ? SWENC_HEVC : SWENC_H264,
        .width = x->width,
        .height = x->height,
        .fps_num = (int)x->fps_num,
        .fps_den = (int)x->fps_den,
        .keyint = 0, /* the client marks IDR pictures */
        .qp = x->qp,
    };

    if (x->rc_mode & VA_RC_CQP || !x->bits_per_second) {
        p.rc = SWENC_RC_CQP;
    } else {
        p.rc = x->rc_mode & VA_RC_CBR ? SWENC_RC_CBR : SWENC_RC_VBR;
        p.bitrate_kbps = (int)(x->bits_per_second / 1000);
    }
    if (!is_hevc(x->profile))
        p.profile = x->profile == VAProfileH264ConstrainedBaseline ? "baseline"
                    : x->profile == VAProfileH264Main              ? "main"
                                                                   : "high";
    x->enc = swenc_open(&p);
    return x->enc ? 0 : -1;
}

static int store_coded(buffer *b, const swenc_frame *frame)
{
    if (frame->size > b->coded_cap) {
        unsigned char *grown = realloc(b->coded, frame->size);

        if (!grown)
            return -1;
        b->coded = grown;
        b->coded_cap = frame->size;
    }
    memcpy(b->coded, frame->data, frame->size);
    b->segment = (VACodedBufferSegment){.size = (uint32_t)frame->size, .buf = b->coded};
    return 0;
}

static VAStatus end_picture(VADriverContextP ctx, VAContextID id)
{
    context *x = object_of(id, OBJ_CONTEXT);
    surface *s;
    buffer *coded;
    unsigned char *chroma;
    const uint8_t *planes[3];
    int strides[3], cw, ch;
    swenc_frame frame;
    int rc;

    (void)ctx;
    if (!x)
        return VA_STATUS_ERROR_INVALID_CONTEXT;
    s = object_of(x->target, OBJ_SURFACE);
    coded = object_of(x->coded_buf, OBJ_BUFFER);
    if (!s || !coded)
        return VA_STATUS_ERROR_INVALID_PARAMETER;
    if (!x->enc && start_encoder(x) < 0)
        return VA_STATUS_ERROR_ENCODING_ERROR;
    cw = (x->width + 1) / 2;
    ch = (x->height + 1) / 2;
    chroma = malloc((size_t)cw * (size_t)ch * 2);
    for (int yy = 0; yy < ch; yy++)
        for (int xx = 0; xx < cw; xx++) {
            const unsigned char *uv = s->data + (size_t)s->pitch * s->height + (size_t)yy * s->pitch + 2 * xx;

            chroma[yy * cw + xx] = uv[0];
            chroma[cw * ch + yy * cw + xx] = uv[1];
        }
    planes[0] = s->data;
    planes[1] = chroma;
    planes[2] = chroma + cw * ch;
    strides[0] = s->pitch;
    strides[1] = strides[2] = cw;
    rc = swenc_encode(x->enc, planes, strides, x->idr, &frame);
    free(chroma);
    if (rc < 0 || store_coded(coded, &frame) < 0)
        return VA_STATUS_ERROR_ENCODING_ERROR;
    return VA_STATUS_SUCCESS;
}

/* ---- what an encoder-only stand-in leaves out ------------------------------------------------ */

static VAStatus terminate(VADriverContextP ctx)
{
    (void)ctx;
    return VA_STATUS_SUCCESS;
}

#define UNIMPLEMENTED(name, ...)                                                                                       \
    static VAStatus name(VADriverContextP ctx, __VA_ARGS__)                                                            \
    {                                                                                                                  \
        (void)ctx;                                                                                                     \
        return VA_STATUS_ERROR_UNIMPLEMENTED;                                                                          \
    }

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
UNIMPLEMENTED(query_surface_error, VASurfaceID s, VAStatus e, void **info)
UNIMPLEMENTED(put_surface, VASurfaceID s, void *d, short a, short b, unsigned short c, unsigned short e, short f,
              short g, unsigned short h, unsigned short i, VARectangle *r, unsigned int n, unsigned int fl)
UNIMPLEMENTED(set_image_palette, VAImageID i, unsigned char *p)
UNIMPLEMENTED(create_subpicture, VAImageID i, VASubpictureID *s)
UNIMPLEMENTED(destroy_subpicture, VASubpictureID s)
UNIMPLEMENTED(set_subpicture_image, VASubpictureID s, VAImageID i)
UNIMPLEMENTED(set_subpicture_chromakey, VASubpictureID s, unsigned a, unsigned b, unsigned c)
UNIMPLEMENTED(set_subpicture_global_alpha, VASubpictureID s, float a)
UNIMPLEMENTED(associate_subpicture, VASubpictureID s, VASurfaceID *t, int n, short a, short b, unsigned short c,
              unsigned short d, short e, short f, unsigned short g, unsigned short h, unsigned int fl)
UNIMPLEMENTED(deassociate_subpicture, VASubpictureID s, VASurfaceID *t, int n)
UNIMPLEMENTED(get_display_attributes, VADisplayAttribute *a, int n)
UNIMPLEMENTED(set_display_attributes, VADisplayAttribute *a, int n)
UNIMPLEMENTED(lock_surface, VASurfaceID s, unsigned *a, unsigned *b, unsigned *c, unsigned *d, unsigned *e, unsigned *f,
              unsigned *g, unsigned *h, void **buf)
UNIMPLEMENTED(unlock_surface, VASurfaceID s)
#pragma GCC diagnostic pop

static VAStatus query_subpicture_formats(VADriverContextP ctx, VAImageFormat *list, unsigned *flags, unsigned *n)
{
    (void)ctx;
    (void)list;
    (void)flags;
    *n = 0;
    return VA_STATUS_SUCCESS;
}

static VAStatus query_display_attributes(VADriverContextP ctx, VADisplayAttribute *list, int *n)
{
    (void)ctx;
    (void)list;
    *n = 0;
    return VA_STATUS_SUCCESS;
}

VAStatus __vaDriverInit_1_0(VADriverContextP ctx);
VAStatus __vaDriverInit_1_0(VADriverContextP ctx)
{
    struct VADriverVTable *vt = ctx->vtable;

    ctx->version_major = VA_MAJOR_VERSION;
    ctx->version_minor = VA_MINOR_VERSION;
    ctx->max_profiles = 4;
    ctx->max_entrypoints = 1;
    ctx->max_attributes = 16;
    ctx->max_image_formats = 1;
    ctx->max_subpic_formats = 1;
    ctx->max_display_attributes = 1;
    ctx->str_vendor = "gpubalance stand-in VA-API driver (software encode, not a GPU)";
    vt->vaTerminate = terminate;
    vt->vaQueryConfigProfiles = query_profiles;
    vt->vaQueryConfigEntrypoints = query_entrypoints;
    vt->vaGetConfigAttributes = get_config_attributes;
    vt->vaCreateConfig = create_config;
    vt->vaDestroyConfig = destroy_config;
    vt->vaQueryConfigAttributes = query_config_attributes;
    vt->vaCreateSurfaces = create_surfaces;
    vt->vaCreateSurfaces2 = create_surfaces2;
    vt->vaQuerySurfaceAttributes = query_surface_attributes;
    vt->vaDestroySurfaces = destroy_surfaces;
    vt->vaCreateContext = create_context;
    vt->vaDestroyContext = destroy_context;
    vt->vaCreateBuffer = create_buffer;
    vt->vaBufferSetNumElements = buffer_set_num_elements;
    vt->vaMapBuffer = map_buffer;
    vt->vaUnmapBuffer = unmap_buffer;
    vt->vaDestroyBuffer = destroy_buffer;
    vt->vaBufferInfo = buffer_info;
    vt->vaBeginPicture = begin_picture;
    vt->vaRenderPicture = render_picture;
    vt->vaEndPicture = end_picture;
    vt->vaSyncSurface = sync_surface;
    vt->vaQuerySurfaceStatus = query_surface_status;
    vt->vaQuerySurfaceError = query_surface_error;
    vt->vaPutSurface = put_surface;
    vt->vaQueryImageFormats = query_image_formats;
    vt->vaCreateImage = create_image;
    vt->vaDeriveImage = derive_image;
    vt->vaDestroyImage = destroy_image;
    vt->vaSetImagePalette = set_image_palette;
    vt->vaGetImage = get_image;
    vt->vaPutImage = put_image;
    vt->vaQuerySubpictureFormats = query_subpicture_formats;
    vt->vaCreateSubpicture = create_subpicture;
    vt->vaDestroySubpicture = destroy_subpicture;
    vt->vaSetSubpictureImage = set_subpicture_image;
    vt->vaSetSubpictureChromakey = set_subpicture_chromakey;
    vt->vaSetSubpictureGlobalAlpha = set_subpicture_global_alpha;
    vt->vaAssociateSubpicture = associate_subpicture;
    vt->vaDeassociateSubpicture = deassociate_subpicture;
    vt->vaQueryDisplayAttributes = query_display_attributes;
    vt->vaGetDisplayAttributes = get_display_attributes;
    vt->vaSetDisplayAttributes = set_display_attributes;
    vt->vaLockSurface = lock_surface;
    vt->vaUnlockSurface = unlock_surface;
    return VA_STATUS_SUCCESS;
}
