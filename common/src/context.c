/* context.c - opening a context, and stream descriptions. */
#define _GNU_SOURCE
#include <math.h>
#include <string.h>

#include "internal.h"
#include "util.h"

int gpubalance_context_open(const char *config_path, gpubalance_context **out)
{
    return gpubalance_context_open_with_flags(config_path, 0, out);
}

int gpubalance_context_open_with_flags(const char *config_path, unsigned flags, gpubalance_context **out)
{
    gpubalance_context *ctx;
    char *path = NULL;
    int status = 0;

    if (!out)
        return gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "gpubalance_context_open: out is NULL");
    gpb_clear_error();
    ctx = g_new0(gpubalance_context, 1);
    ctx->refcount = 1;
    path = config_path ? g_strdup(config_path) : gpb_config_find(&status);
    if (status < 0)
        goto fail;
    if (path)
        status = gpb_config_load(path, &ctx->config);
    else
        ctx->config = gpb_config_new_default();
    if (status < 0 || (status = gpb_ledger_open(NULL, &ctx->ledger)) < 0 ||
        (status = gpb_inventory_build(ctx->config, ctx->ledger, flags & GPUBALANCE_OPEN_REFRESH_PROBES,
                                      &ctx->inventory)) < 0)
        goto fail;
    gpb_debug("context: config %s, ledger %s, %u devices", path ? path : "(defaults)", gpb_ledger_path(ctx->ledger),
              ctx->inventory->devices->len);
    g_free(path);
    *out = ctx;
    return 0;
fail:
    g_free(path);
    gpubalance_context_close(ctx);
    return status;
}

gpubalance_context *gpb_context_ref(gpubalance_context *ctx)
{
    g_atomic_int_inc(&ctx->refcount);
    return ctx;
}

void gpubalance_context_close(gpubalance_context *ctx)
{
    if (!ctx || !g_atomic_int_dec_and_test(&ctx->refcount))
        return;
    if (ctx->ledger)
        gpb_ledger_set_moved_hook(ctx->ledger, NULL, NULL); /* the inventory goes first */
    gpb_inventory_free(ctx->inventory);
    gpb_ledger_close(ctx->ledger);
    gpb_config_free(ctx->config);
    g_free(ctx);
}

const char *gpubalance_context_ledger_path(const gpubalance_context *ctx)
{
    return gpb_ledger_path(ctx->ledger);
}

const char *gpubalance_context_config_path(const gpubalance_context *ctx)
{
    return ctx->config->path;
}

size_t gpubalance_context_n_notes(const gpubalance_context *ctx)
{
    return ctx->inventory->notes->len;
}

const char *gpubalance_context_note(const gpubalance_context *ctx, size_t index)
{
    return index < ctx->inventory->notes->len ? g_ptr_array_index(ctx->inventory->notes, index) : NULL;
}

/* ---- streams ---------------------------------------------------------- */

int gpubalance_stream_new(gpubalance_stream **out)
{
    gpubalance_stream *s = g_new0(gpubalance_stream, 1);

    s->codec = GPUBALANCE_CODEC_H264;
    s->width = 1920;
    s->height = 1080;
    s->bit_depth = 8;
    s->wait_timeout = -1;
    *out = s;
    return 0;
}

void gpubalance_stream_free(gpubalance_stream *s)
{
    if (!s)
        return;
    g_free(s->device);
    g_free(s);
}

void gpb_stream_copy(gpubalance_stream *dst, const gpubalance_stream *src)
{
    *dst = *src;
    dst->device = g_strdup(src->device);
}

int gpubalance_stream_set_codec(gpubalance_stream *s, gpubalance_codec codec)
{
    if ((unsigned)codec >= GPUBALANCE_N_CODECS)
        return gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "codec %d is not one of: h264, hevc, av1", (int)codec);
    s->codec = codec;
    return 0;
}

int gpubalance_stream_set_size(gpubalance_stream *s, int width, int height)
{
    if (width < 16 || width > 16384 || height < 16 || height > 16384)
        return gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "size %dx%d is outside 16x16..16384x16384", width, height);
    s->width = width;
    s->height = height;
    return 0;
}

int gpubalance_stream_set_fps(gpubalance_stream *s, double fps)
{
    if (!isfinite(fps) || fps < 0 || fps > 1000)
        return gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "fps %g is outside 0..1000 (0 = unknown)", fps);
    s->fps = fps;
    return 0;
}

int gpubalance_stream_set_bit_depth(gpubalance_stream *s, int bit_depth)
{
    if (bit_depth != 8 && bit_depth != 10)
        return gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "bit depth %d is not 8 or 10", bit_depth);
    s->bit_depth = bit_depth;
    return 0;
}

int gpubalance_stream_set_label(gpubalance_stream *s, const char *label)
{
    size_t length = label ? strlen(label) : 0;

    /* A label that does not fit is cut where a UTF-8 character starts,
     * never inside one. */
    if (length >= sizeof(s->label)) {
        length = sizeof(s->label) - 1;
        while (length > 0 && ((unsigned char)label[length] & 0xc0) == 0x80)
            length--;
    }
    memcpy(s->label, label ? label : "", length);
    s->label[length] = '\0';
    return 0;
}

int gpubalance_stream_set_policy(gpubalance_stream *s, const char *name)
{
    int status;

    if (!name) {
        s->has_policy = false;
        return 0;
    }
    if ((status = gpb_policy_parse(name, &s->policy)) < 0)
        return status;
    s->has_policy = true;
    return 0;
}

int gpubalance_stream_set_order(gpubalance_stream *s, const char *order)
{
    int status;

    if (!order) {
        s->has_order = false;
        return 0;
    }
    if ((status = gpb_order_parse(order, &s->order)) < 0)
        return status;
    s->has_order = true;
    return 0;
}

int gpubalance_stream_set_when_full(gpubalance_stream *s, const char *name)
{
    int status;

    if (!name) {
        s->has_when_full = false;
        return 0;
    }
    if ((status = gpb_when_full_parse(name, &s->when_full)) < 0)
        return status;
    s->has_when_full = true;
    return 0;
}

int gpubalance_stream_set_wait_timeout(gpubalance_stream *s, double seconds)
{
    if (!isfinite(seconds) || seconds > 86400)
        return gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "wait timeout %g is above 86400 seconds", seconds);
    s->wait_timeout = seconds < 0 ? -1 : seconds;
    return 0;
}

int gpubalance_stream_set_device(gpubalance_stream *s, const char *id)
{
    if (id && (!*id || strlen(id) >= GPB_ID_SIZE))
        return gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "device id '%s' is empty or too long", id);
    g_free(s->device);
    s->device = g_strdup(id);
    return 0;
}

double gpubalance_stream_cost(const gpubalance_stream *s)
{
    double fps = s->fps > 0 ? s->fps : 30.0;

    return (double)s->width * s->height * fps / (1920.0 * 1080.0 * 30.0);
}
