/* context.c - opening a context, and stream descriptions. */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "internal.h"
#include "util.h"

/* The unit of cost: one 1080p30 stream. Also a new stream's size. */
#define UNIT_WIDTH 1920
#define UNIT_HEIGHT 1080
#define UNIT_FPS 30.0

_Static_assert(GPB_LABEL_SIZE == GPUBALANCE_MAX_LABEL + 1, "a label is GPUBALANCE_MAX_LABEL bytes and a NUL");

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

/* The process-wide context. A pthread mutex rather than GMutex so that
 * ThreadSanitizer sees it. The destructor drops the reference at exit:
 * leases still alive keep the context until they are released, and a
 * process that exits without releasing them loses them to the kernel
 * anyway (their locks die with it). */
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static gpubalance_context *shared_ctx;

gpubalance_context *gpubalance_context_shared(void)
{
    gpubalance_context *ctx;

    pthread_mutex_lock(&shared_lock);
    if (!shared_ctx && gpubalance_context_open(NULL, &shared_ctx) < 0)
        shared_ctx = NULL;
    ctx = shared_ctx;
    pthread_mutex_unlock(&shared_lock);
    return ctx;
}

__attribute__((destructor)) static void close_shared_context(void)
{
    pthread_mutex_lock(&shared_lock);
    gpubalance_context_close(shared_ctx);
    shared_ctx = NULL;
    pthread_mutex_unlock(&shared_lock);
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
    s->width = UNIT_WIDTH;
    s->height = UNIT_HEIGHT;
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
    if (width < GPUBALANCE_MIN_DIMENSION || width > GPUBALANCE_MAX_DIMENSION || height < GPUBALANCE_MIN_DIMENSION ||
        height > GPUBALANCE_MAX_DIMENSION)
        return gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "size %dx%d is outside %dx%d..%dx%d", width, height,
                        GPUBALANCE_MIN_DIMENSION, GPUBALANCE_MIN_DIMENSION, GPUBALANCE_MAX_DIMENSION,
                        GPUBALANCE_MAX_DIMENSION);
    s->width = width;
    s->height = height;
    return 0;
}

int gpubalance_stream_set_fps(gpubalance_stream *s, double fps)
{
    if (!isfinite(fps) || fps < 0 || fps > GPUBALANCE_MAX_FPS)
        return gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "fps %g is outside 0..%d (0 = unknown)", fps,
                        GPUBALANCE_MAX_FPS);
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
    g_strlcpy(s->label, label ? label : "", sizeof(s->label));
    return 0;
}

/* The stream's own policy, order and when-full override the context's:
 * has_* says whether the stream has its own. A parser writes the value
 * only on success, so a refused value leaves the previous one. */
static int unset(bool *has)
{
    *has = false;
    return 0;
}

static int own_setting(int parse_status, bool *has)
{
    if (parse_status == 0)
        *has = true;
    return parse_status;
}

int gpubalance_stream_set_policy(gpubalance_stream *s, const char *name)
{
    if (!name)
        return unset(&s->has_policy);
    return own_setting(gpb_policy_parse(name, &s->policy), &s->has_policy);
}

int gpubalance_stream_set_order(gpubalance_stream *s, const char *order)
{
    if (!order)
        return unset(&s->has_order);
    return own_setting(gpb_order_parse(order, &s->order), &s->has_order);
}

int gpubalance_stream_set_when_full(gpubalance_stream *s, const char *name)
{
    if (!name)
        return unset(&s->has_when_full);
    return own_setting(gpb_when_full_parse(name, &s->when_full), &s->has_when_full);
}

int gpubalance_stream_set_wait_timeout(gpubalance_stream *s, double seconds)
{
    if (!isfinite(seconds) || seconds > GPB_MAX_WAIT_TIMEOUT)
        return gpb_fail(GPUBALANCE_ERR_INVALID_ARGUMENT, "wait timeout %g is above %g seconds", seconds,
                        GPB_MAX_WAIT_TIMEOUT);
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
    double fps = s->fps > 0 ? s->fps : UNIT_FPS; /* unknown counts as the unit's */

    return (double)s->width * s->height * fps / ((double)UNIT_WIDTH * UNIT_HEIGHT * UNIT_FPS);
}
