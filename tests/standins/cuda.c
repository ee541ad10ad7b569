/* cuda.c - a stand-in libcuda.so.1 (see standin.h): enough of the CUDA
 * driver API for FFmpeg's hwcontext_cuda and nvenc, GStreamer's nvcodec
 * (1.22's and 1.26's CUDA loader: every symbol it loads) and
 * nv-codec-headers' loader. There is no GPU: "device" memory is host
 * memory (a CUdeviceptr is the host address), every copy is synchronous,
 * so streams and events are handles with nothing behind them, and kernels
 * cannot be loaded. */
#define _GNU_SOURCE
#include <ffnvcodec/dynlink_cuda.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "standin.h"

#define CTX_STACK_DEPTH 32
#define PITCH_ALIGNMENT 512
#define ALLOC_ALIGNMENT 256

/* Error codes of the driver API that the stand-in returns. */
#define ERR_OUT_OF_MEMORY ((CUresult)2)
#define ERR_INVALID_VALUE ((CUresult)1)
#define ERR_NOT_INITIALIZED ((CUresult)3)
#define ERR_INVALID_DEVICE ((CUresult)101)
#define ERR_INVALID_CONTEXT ((CUresult)201)
#define ERR_NOT_SUPPORTED ((CUresult)801)

struct CUctx_st {
    standin_context head; /* first: the stand-in NVENC reads it */
};

/* One primary context per device, made on first retain. */
static struct CUctx_st primary[STANDIN_MAX_GPUS];
static int primary_refs[STANDIN_MAX_GPUS];
static unsigned primary_flags[STANDIN_MAX_GPUS];
static pthread_mutex_t primary_lock = PTHREAD_MUTEX_INITIALIZER;

static _Thread_local CUcontext ctx_stack[CTX_STACK_DEPTH];
static _Thread_local int ctx_depth;
static int initialized;

static int device_ok(CUdevice dev)
{
    return dev >= 0 && dev < standin_gpu_count();
}

CUresult cuInit(unsigned int flags)
{
    (void)flags;
    initialized = 1;
    return CUDA_SUCCESS;
}

CUresult cuDriverGetVersion(int *version)
{
    *version = 12020;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetCount(int *count)
{
    if (!initialized)
        return ERR_NOT_INITIALIZED;
    *count = standin_gpu_count();
    return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice *device, int ordinal)
{
    if (!initialized)
        return ERR_NOT_INITIALIZED;
    if (!device_ok(ordinal))
        return ERR_INVALID_DEVICE;
    *device = ordinal; /* a CUdevice is the CUDA ordinal */
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetName(char *name, int len, CUdevice dev)
{
    if (!device_ok(dev))
        return ERR_INVALID_DEVICE;
    snprintf(name, (size_t)len, "%s", standin_gpu_at(standin_cuda_to_nvml(dev))->name);
    return CUDA_SUCCESS;
}

CUresult cuDeviceComputeCapability(int *major, int *minor, CUdevice dev)
{
    if (!device_ok(dev))
        return ERR_INVALID_DEVICE;
    *major = 8;
    *minor = 6;
    return CUDA_SUCCESS;
}

CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
{
    if (!device_ok(dev))
        return ERR_INVALID_DEVICE;
    *bytes = (size_t)16 << 30;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetAttribute(int *value, CUdevice_attribute attribute, CUdevice dev)
{
    if (!device_ok(dev))
        return ERR_INVALID_DEVICE;
    switch ((int)attribute) {
    case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID:
        *value = (int)standin_pci_bus(standin_cuda_to_nvml(dev));
        break;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR:
        *value = 8;
        break;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR:
        *value = 6;
        break;
    case CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT:
    case CU_DEVICE_ATTRIBUTE_TEXTURE_PITCH_ALIGNMENT:
        *value = PITCH_ALIGNMENT;
        break;
    case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING:
    case CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY:
    case CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS:
    case CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY:
        *value = 1;
        break;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT:
        *value = 16;
        break;
    case CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT:
        *value = 2;
        break;
    default: /* PCI device/domain, integrated, TCC, ... */
        *value = 0;
    }
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev)
{
    if (!device_ok(dev))
        return ERR_INVALID_DEVICE;
    memset(uuid->bytes, 0, sizeof(uuid->bytes));
    uuid->bytes[0] = 0x5a;
    uuid->bytes[15] = (char)standin_cuda_to_nvml(dev);
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev)
{
    return cuDeviceGetUuid(uuid, dev);
}

CUresult cuDeviceGetPCIBusId(char *bus_id, int len, CUdevice dev)
{
    if (!device_ok(dev))
        return ERR_INVALID_DEVICE;
    snprintf(bus_id, (size_t)len, "0000:%02x:00.0", standin_pci_bus(standin_cuda_to_nvml(dev)));
    return CUDA_SUCCESS;
}

CUresult cuDeviceCanAccessPeer(int *can, CUdevice dev, CUdevice peer)
{
    (void)dev;
    (void)peer;
    *can = 0;
    return CUDA_SUCCESS;
}

/* ---- contexts ------------------------------------------------------------ */

static void init_context(struct CUctx_st *ctx, CUdevice dev)
{
    ctx->head.magic = STANDIN_CONTEXT_MAGIC;
    ctx->head.ordinal = dev;
    ctx->head.nvml_index = standin_cuda_to_nvml(dev);
}

static int context_ok(CUcontext ctx)
{
    return ctx && ctx->head.magic == STANDIN_CONTEXT_MAGIC;
}

CUresult cuCtxPushCurrent_v2(CUcontext ctx)
{
    if (!context_ok(ctx))
        return ERR_INVALID_CONTEXT;
    if (ctx_depth == CTX_STACK_DEPTH)
        return ERR_INVALID_VALUE;
    ctx_stack[ctx_depth++] = ctx;
    return CUDA_SUCCESS;
}

CUresult cuCtxPopCurrent_v2(CUcontext *ctx)
{
    if (ctx_depth == 0)
        return ERR_INVALID_CONTEXT;
    ctx_depth--;
    if (ctx)
        *ctx = ctx_stack[ctx_depth];
    return CUDA_SUCCESS;
}

CUresult cuCtxGetCurrent(CUcontext *ctx)
{
    *ctx = ctx_depth ? ctx_stack[ctx_depth - 1] : NULL;
    return CUDA_SUCCESS;
}

CUresult cuCtxSetCurrent(CUcontext ctx)
{
    if (ctx_depth)
        ctx_depth--;
    return ctx ? cuCtxPushCurrent_v2(ctx) : CUDA_SUCCESS;
}

CUresult cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
    struct CUctx_st *ctx;

    (void)flags;
    if (!initialized)
        return ERR_NOT_INITIALIZED;
    if (!device_ok(dev))
        return ERR_INVALID_DEVICE;
    ctx = calloc(1, sizeof(*ctx));
    init_context(ctx, dev);
    *pctx = ctx;
    return cuCtxPushCurrent_v2(ctx); /* a new context is made current */
}

CUresult cuCtxDestroy_v2(CUcontext ctx)
{
    if (!context_ok(ctx))
        return ERR_INVALID_CONTEXT;
    for (int i = 0; i < ctx_depth; i++)
        if (ctx_stack[i] == ctx) {
            memmove(&ctx_stack[i], &ctx_stack[i + 1], (size_t)(ctx_depth - i - 1) * sizeof(ctx));
            ctx_depth--;
            i--;
        }
    ctx->head.magic = 0;
    if (ctx < primary || ctx >= primary + STANDIN_MAX_GPUS)
        free(ctx);
    return CUDA_SUCCESS;
}

CUresult cuCtxGetDevice(CUdevice *device)
{
    if (ctx_depth == 0)
        return ERR_INVALID_CONTEXT;
    *device = ctx_stack[ctx_depth - 1]->head.ordinal;
    return CUDA_SUCCESS;
}

CUresult cuCtxSynchronize(void)
{
    return CUDA_SUCCESS;
}

CUresult cuCtxSetLimit(CUlimit limit, size_t value)
{
    (void)limit;
    (void)value;
    return CUDA_SUCCESS;
}

/* No limit is enforced on host memory: each reads as 0 ("none"). */
CUresult cuCtxGetLimit(size_t *value, CUlimit limit)
{
    (void)limit;
    *value = 0;
    return CUDA_SUCCESS;
}

CUresult cuCtxEnablePeerAccess(CUcontext peer, unsigned int flags)
{
    (void)peer;
    (void)flags;
    return ERR_NOT_SUPPORTED;
}

CUresult cuCtxDisablePeerAccess(CUcontext peer)
{
    (void)peer;
    return ERR_NOT_SUPPORTED;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
{
    if (!device_ok(dev))
        return ERR_INVALID_DEVICE;
    pthread_mutex_lock(&primary_lock);
    if (primary_refs[dev]++ == 0)
        init_context(&primary[dev], dev);
    *pctx = &primary[dev];
    pthread_mutex_unlock(&primary_lock);
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease(CUdevice dev)
{
    if (!device_ok(dev))
        return ERR_INVALID_DEVICE;
    pthread_mutex_lock(&primary_lock);
    if (primary_refs[dev] > 0)
        primary_refs[dev]--;
    pthread_mutex_unlock(&primary_lock);
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev)
{
    return cuDevicePrimaryCtxRelease(dev);
}

CUresult cuDevicePrimaryCtxSetFlags(CUdevice dev, unsigned int flags)
{
    if (!device_ok(dev))
        return ERR_INVALID_DEVICE;
    primary_flags[dev] = flags;
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags)
{
    return cuDevicePrimaryCtxSetFlags(dev, flags);
}

CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active)
{
    if (!device_ok(dev))
        return ERR_INVALID_DEVICE;
    *flags = primary_flags[dev];
    *active = primary_refs[dev] > 0;
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxReset(CUdevice dev)
{
    return device_ok(dev) ? CUDA_SUCCESS : ERR_INVALID_DEVICE;
}

CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev)
{
    return cuDevicePrimaryCtxReset(dev);
}

/* ---- memory: host memory behind device pointers ------------------------- */

static void *device_alloc(size_t size)
{
    void *p = NULL;

    if (posix_memalign(&p, ALLOC_ALIGNMENT, size ? size : 1) != 0)
        return NULL;
    memset(p, 0, size);
    return p;
}

CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
    void *p = device_alloc(bytesize);

    if (!p)
        return ERR_OUT_OF_MEMORY;
    *dptr = (CUdeviceptr)(uintptr_t)p;
    return CUDA_SUCCESS;
}

CUresult cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pitch, size_t width, size_t height, unsigned int element_size)
{
    (void)element_size;
    *pitch = (width + PITCH_ALIGNMENT - 1) / PITCH_ALIGNMENT * PITCH_ALIGNMENT;
    return cuMemAlloc_v2(dptr, *pitch * height);
}

CUresult cuMemAllocManaged(CUdeviceptr *dptr, size_t bytesize, unsigned int flags)
{
    (void)flags;
    return cuMemAlloc_v2(dptr, bytesize);
}

CUresult cuMemAllocHost_v2(void **p, size_t bytesize)
{
    *p = device_alloc(bytesize);
    return *p ? CUDA_SUCCESS : ERR_OUT_OF_MEMORY;
}

CUresult cuMemHostAlloc(void **p, size_t bytesize, unsigned int flags)
{
    (void)flags;
    return cuMemAllocHost_v2(p, bytesize);
}

CUresult cuMemFreeHost(void *p)
{
    free(p);
    return CUDA_SUCCESS;
}

CUresult cuMemFree_v2(CUdeviceptr dptr)
{
    free((void *)(uintptr_t)dptr);
    return CUDA_SUCCESS;
}

CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total)
{
    *free_bytes = (size_t)8 << 30;
    *total = (size_t)16 << 30;
    return CUDA_SUCCESS;
}

CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t n)
{
    memset((void *)(uintptr_t)dst, value, n);
    return CUDA_SUCCESS;
}

CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char value, size_t n, CUstream stream)
{
    (void)stream;
    return cuMemsetD8_v2(dst, value, n);
}

CUresult cuMemsetD2D8_v2(CUdeviceptr dst, size_t pitch, unsigned char value, size_t width, size_t height)
{
    for (size_t y = 0; y < height; y++)
        memset((char *)(uintptr_t)dst + y * pitch, value, width);
    return CUDA_SUCCESS;
}

CUresult cuMemsetD2D8Async(CUdeviceptr dst, size_t pitch, unsigned char value, size_t width, size_t height,
                           CUstream stream)
{
    (void)stream;
    return cuMemsetD2D8_v2(dst, pitch, value, width, height);
}

/* 16- and 32-bit fills, row by row (GStreamer 1.24+ loads them). */
CUresult cuMemsetD2D16_v2(CUdeviceptr dst, size_t pitch, unsigned short value, size_t width, size_t height)
{
    for (size_t y = 0; y < height; y++) {
        uint16_t *row = (uint16_t *)((char *)(uintptr_t)dst + y * pitch);

        for (size_t x = 0; x < width; x++)
            row[x] = value;
    }
    return CUDA_SUCCESS;
}

CUresult cuMemsetD2D16Async(CUdeviceptr dst, size_t pitch, unsigned short value, size_t width, size_t height,
                            CUstream stream)
{
    (void)stream;
    return cuMemsetD2D16_v2(dst, pitch, value, width, height);
}

CUresult cuMemsetD2D32_v2(CUdeviceptr dst, size_t pitch, unsigned int value, size_t width, size_t height)
{
    for (size_t y = 0; y < height; y++) {
        uint32_t *row = (uint32_t *)((char *)(uintptr_t)dst + y * pitch);

        for (size_t x = 0; x < width; x++)
            row[x] = value;
    }
    return CUDA_SUCCESS;
}

CUresult cuMemsetD2D32Async(CUdeviceptr dst, size_t pitch, unsigned int value, size_t width, size_t height,
                            CUstream stream)
{
    (void)stream;
    return cuMemsetD2D32_v2(dst, pitch, value, width, height);
}

/* Stream-ordered allocation: every copy is synchronous here, so it is
 * plain allocation. Memory pools are not offered
 * (CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED reads 0), so their entry
 * points, which GStreamer 1.24+ loads, refuse. */
CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t bytesize, CUstream stream)
{
    (void)stream;
    return cuMemAlloc_v2(dptr, bytesize);
}

CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream stream)
{
    (void)stream;
    return cuMemFree_v2(dptr);
}

CUresult cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t bytesize, void *pool, CUstream stream)
{
    (void)dptr;
    (void)bytesize;
    (void)pool;
    (void)stream;
    return ERR_NOT_SUPPORTED;
}

CUresult cuMemPoolCreate(void **pool, const void *props)
{
    (void)pool;
    (void)props;
    return ERR_NOT_SUPPORTED;
}

CUresult cuMemPoolDestroy(void *pool)
{
    (void)pool;
    return ERR_NOT_SUPPORTED;
}

CUresult cuMemPoolGetAttribute(void *pool, int attribute, void *value)
{
    (void)pool;
    (void)attribute;
    (void)value;
    return ERR_NOT_SUPPORTED;
}

CUresult cuMemPoolSetAttribute(void *pool, int attribute, void *value)
{
    (void)pool;
    (void)attribute;
    (void)value;
    return ERR_NOT_SUPPORTED;
}

/* Virtual memory management and IPC are not part of the stand-in. */
CUresult cuMemGetAccess(unsigned long long *flags, const void *location, CUdeviceptr ptr)
{
    (void)flags;
    (void)location;
    (void)ptr;
    return ERR_NOT_SUPPORTED;
}

typedef struct {
    char reserved[64]; /* CU_IPC_HANDLE_SIZE: passed by value */
} ipc_mem_handle;

CUresult cuIpcOpenMemHandle(CUdeviceptr *dptr, ipc_mem_handle handle, unsigned int flags)
{
    (void)dptr;
    (void)handle;
    (void)flags;
    return ERR_NOT_SUPPORTED;
}

CUresult cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
    memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, n);
    return CUDA_SUCCESS;
}

CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream stream)
{
    (void)stream;
    return cuMemcpy(dst, src, n);
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n)
{
    return cuMemcpy(dst, (CUdeviceptr)(uintptr_t)src, n);
}

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n, CUstream stream)
{
    (void)stream;
    return cuMemcpyHtoD_v2(dst, src, n);
}

CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n)
{
    return cuMemcpy((CUdeviceptr)(uintptr_t)dst, src, n);
}

CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n, CUstream stream)
{
    (void)stream;
    return cuMemcpyDtoH_v2(dst, src, n);
}

CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
    return cuMemcpy(dst, src, n);
}

CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream stream)
{
    (void)stream;
    return cuMemcpy(dst, src, n);
}

/* Every memory type is host memory here; arrays are not supported. */
static const char *copy_source(const CUDA_MEMCPY2D *c)
{
    const char *base = c->srcMemoryType == CU_MEMORYTYPE_HOST ? c->srcHost : (const char *)(uintptr_t)c->srcDevice;

    return base ? base + c->srcY * c->srcPitch + c->srcXInBytes : NULL;
}

static char *copy_destination(const CUDA_MEMCPY2D *c)
{
    char *base = c->dstMemoryType == CU_MEMORYTYPE_HOST ? c->dstHost : (char *)(uintptr_t)c->dstDevice;

    return base ? base + c->dstY * c->dstPitch + c->dstXInBytes : NULL;
}

CUresult cuMemcpy2D_v2(const CUDA_MEMCPY2D *copy)
{
    const char *src = copy_source(copy);
    char *dst = copy_destination(copy);

    if (copy->srcMemoryType == CU_MEMORYTYPE_ARRAY || copy->dstMemoryType == CU_MEMORYTYPE_ARRAY)
        return ERR_NOT_SUPPORTED;
    if (!src || !dst)
        return ERR_INVALID_VALUE;
    for (size_t y = 0; y < copy->Height; y++)
        memmove(dst + y * copy->dstPitch, src + y * copy->srcPitch, copy->WidthInBytes);
    return CUDA_SUCCESS;
}

CUresult cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D *copy, CUstream stream)
{
    (void)stream;
    return cuMemcpy2D_v2(copy);
}

CUresult cuMemcpy2DUnaligned_v2(const CUDA_MEMCPY2D *copy)
{
    return cuMemcpy2D_v2(copy);
}

CUresult cuMemHostRegister_v2(void *p, size_t size, unsigned int flags)
{
    (void)p;
    (void)size;
    (void)flags;
    return CUDA_SUCCESS;
}

CUresult cuMemHostUnregister(void *p)
{
    (void)p;
    return CUDA_SUCCESS;
}

CUresult cuMemHostGetDevicePointer_v2(CUdeviceptr *dptr, void *p, unsigned int flags)
{
    (void)flags;
    *dptr = (CUdeviceptr)(uintptr_t)p;
    return CUDA_SUCCESS;
}

/* ---- streams and events: everything already happened -------------------- */

struct CUstream_st {
    int unused;
};
struct CUevent_st {
    int unused;
};

/* Streams and events carry nothing (a distinct allocation each), and
 * every operation on them has already happened: one definition of the
 * create / destroy / synchronize / query entry points serves both. */
#define STANDIN_HANDLE(type, create, destroy, synchronize, query)                                                      \
    CUresult create(type *handle, unsigned int flags)                                                                  \
    {                                                                                                                  \
        (void)flags;                                                                                                   \
        *handle = calloc(1, sizeof(**handle));                                                                         \
        return CUDA_SUCCESS;                                                                                           \
    }                                                                                                                  \
    CUresult destroy##_v2(type handle)                                                                                 \
    {                                                                                                                  \
        free(handle);                                                                                                  \
        return CUDA_SUCCESS;                                                                                           \
    }                                                                                                                  \
    CUresult destroy(type handle)                                                                                      \
    {                                                                                                                  \
        return destroy##_v2(handle);                                                                                   \
    }                                                                                                                  \
    CUresult synchronize(type handle)                                                                                  \
    {                                                                                                                  \
        (void)handle;                                                                                                  \
        return CUDA_SUCCESS;                                                                                           \
    }                                                                                                                  \
    CUresult query(type handle)                                                                                        \
    {                                                                                                                  \
        (void)handle;                                                                                                  \
        return CUDA_SUCCESS;                                                                                           \
    }

STANDIN_HANDLE(CUstream, cuStreamCreate, cuStreamDestroy, cuStreamSynchronize, cuStreamQuery)
STANDIN_HANDLE(CUevent, cuEventCreate, cuEventDestroy, cuEventSynchronize, cuEventQuery)

CUresult cuStreamWaitEvent(CUstream stream, CUevent event, unsigned int flags)
{
    (void)stream;
    (void)event;
    (void)flags;
    return CUDA_SUCCESS;
}

CUresult cuStreamAddCallback(CUstream stream, CUstreamCallback *callback, void *userdata, unsigned int flags)
{
    (void)flags;
    callback(stream, CUDA_SUCCESS, userdata);
    return CUDA_SUCCESS;
}

CUresult cuEventRecord(CUevent event, CUstream stream)
{
    (void)event;
    (void)stream;
    return CUDA_SUCCESS;
}

/* ---- errors ---------------------------------------------------------------- */

CUresult cuGetErrorName(CUresult error, const char **name)
{
    switch ((int)error) {
    case 0:
        *name = "CUDA_SUCCESS";
        break;
    case (int)ERR_INVALID_VALUE:
        *name = "CUDA_ERROR_INVALID_VALUE";
        break;
    case (int)ERR_NOT_INITIALIZED:
        *name = "CUDA_ERROR_NOT_INITIALIZED";
        break;
    case (int)ERR_INVALID_DEVICE:
        *name = "CUDA_ERROR_INVALID_DEVICE";
        break;
    case (int)ERR_INVALID_CONTEXT:
        *name = "CUDA_ERROR_INVALID_CONTEXT";
        break;
    case (int)ERR_NOT_SUPPORTED:
        *name = "CUDA_ERROR_NOT_SUPPORTED";
        break;
    default:
        *name = "CUDA_ERROR_UNKNOWN";
    }
    return CUDA_SUCCESS;
}

CUresult cuGetErrorString(CUresult error, const char **text)
{
    if ((int)error == ERR_NOT_SUPPORTED) {
        *text = "operation not supported by the stand-in CUDA driver (no GPU: no kernels, no arrays, no interop)";
        return CUDA_SUCCESS;
    }
    return cuGetErrorName(error, text);
}

/* ---- what a GPU-less stand-in cannot do: kernels, arrays, interop --------- */

#define NOT_SUPPORTED(name)                                                                                            \
    CUresult name(void);                                                                                               \
    CUresult name(void)                                                                                                \
    {                                                                                                                  \
        return ERR_NOT_SUPPORTED;                                                                                      \
    }

NOT_SUPPORTED(cuLaunchKernel)
NOT_SUPPORTED(cuLinkCreate)
NOT_SUPPORTED(cuLinkCreate_v2)
NOT_SUPPORTED(cuLinkAddData)
NOT_SUPPORTED(cuLinkAddData_v2)
NOT_SUPPORTED(cuLinkComplete)
NOT_SUPPORTED(cuLinkDestroy)
NOT_SUPPORTED(cuModuleLoadData)
NOT_SUPPORTED(cuModuleLoadDataEx)
NOT_SUPPORTED(cuModuleUnload)
NOT_SUPPORTED(cuModuleGetFunction)
NOT_SUPPORTED(cuModuleGetGlobal)
NOT_SUPPORTED(cuModuleGetGlobal_v2)
NOT_SUPPORTED(cuTexObjectCreate)
NOT_SUPPORTED(cuTexObjectDestroy)
NOT_SUPPORTED(cuGLGetDevices_v2)
NOT_SUPPORTED(cuGraphicsGLRegisterImage)
NOT_SUPPORTED(cuGraphicsGLRegisterBuffer)
NOT_SUPPORTED(cuGraphicsUnregisterResource)
NOT_SUPPORTED(cuGraphicsMapResources)
NOT_SUPPORTED(cuGraphicsUnmapResources)
NOT_SUPPORTED(cuGraphicsSubResourceGetMappedArray)
NOT_SUPPORTED(cuGraphicsResourceGetMappedPointer_v2)
NOT_SUPPORTED(cuGraphicsResourceSetMapFlags_v2)
NOT_SUPPORTED(cuArrayCreate_v2)
NOT_SUPPORTED(cuArray3DCreate_v2)
NOT_SUPPORTED(cuArrayDestroy)
NOT_SUPPORTED(cuImportExternalMemory)
NOT_SUPPORTED(cuDestroyExternalMemory)
NOT_SUPPORTED(cuExternalMemoryGetMappedBuffer)
NOT_SUPPORTED(cuExternalMemoryGetMappedMipmappedArray)
NOT_SUPPORTED(cuMipmappedArrayGetLevel)
NOT_SUPPORTED(cuMipmappedArrayDestroy)
NOT_SUPPORTED(cuImportExternalSemaphore)
NOT_SUPPORTED(cuDestroyExternalSemaphore)
NOT_SUPPORTED(cuSignalExternalSemaphoresAsync)
NOT_SUPPORTED(cuWaitExternalSemaphoresAsync)
NOT_SUPPORTED(cuEGLStreamProducerConnect)
NOT_SUPPORTED(cuEGLStreamProducerDisconnect)
NOT_SUPPORTED(cuEGLStreamConsumerDisconnect)
NOT_SUPPORTED(cuEGLStreamProducerPresentFrame)
NOT_SUPPORTED(cuEGLStreamProducerReturnFrame)
NOT_SUPPORTED(cuIpcGetMemHandle)
NOT_SUPPORTED(cuIpcOpenMemHandle_v2)
NOT_SUPPORTED(cuIpcCloseMemHandle)
NOT_SUPPORTED(cuIpcGetEventHandle)
NOT_SUPPORTED(cuIpcOpenEventHandle)
NOT_SUPPORTED(cuMemAddressReserve)
NOT_SUPPORTED(cuMemAddressFree)
NOT_SUPPORTED(cuMemCreate)
NOT_SUPPORTED(cuMemRelease)
NOT_SUPPORTED(cuMemMap)
NOT_SUPPORTED(cuMemUnmap)
NOT_SUPPORTED(cuMemSetAccess)
NOT_SUPPORTED(cuMemExportToShareableHandle)
NOT_SUPPORTED(cuMemImportFromShareableHandle)
NOT_SUPPORTED(cuMemGetAllocationGranularity)
NOT_SUPPORTED(cuMemGetAllocationPropertiesFromHandle)
NOT_SUPPORTED(cuMemRetainAllocationHandle)
NOT_SUPPORTED(cuPointerGetAttribute)
