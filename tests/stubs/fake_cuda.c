/* fake_cuda.c - a stand-in libcuda.so.1 for tests (see fake_gpus.h).
 * nv-codec-headers' loader refuses a libcuda that lacks any symbol it
 * requires, and each release requires more (12.1, Debian 13's, added
 * cuDriverGetVersion, cuCtxGetCurrent, cuStreamWaitEvent). So every symbol
 * of 11.1 and 12.1, optional ones too, is here; the ones the probe never
 * calls fail if called. The test stand_ins_serve_every_loader_symbol
 * checks this list against the installed headers' loader. */
#include "fake_gpus.h"

/* CUDA ordinal -> NVML index: reverse order, minus a hidden GPU. */
static int nvml_index(int ordinal)
{
    int hidden = fake_env_int("FAKE_CUDA_HIDE", -1);

    for (int i = fake_gpu_count() - 1, n = 0; i >= 0; i--) {
        if (i == hidden)
            continue;
        if (n++ == ordinal)
            return i;
    }
    return -1;
}

int cuInit(unsigned flags)
{
    (void)flags;
    return 0;
}

int cuDeviceGetCount(int *count)
{
    *count = fake_gpu_count() - (fake_env_int("FAKE_CUDA_HIDE", -1) >= 0 ? 1 : 0);
    return 0;
}

int cuDeviceGet(int *device, int ordinal)
{
    *device = nvml_index(ordinal);
    return *device < 0 ? 101 /* CUDA_ERROR_INVALID_DEVICE */ : 0;
}

int cuDeviceGetAttribute(int *value, int attribute, int device)
{
    switch (attribute) {
    case 33: /* PCI bus */
        *value = (int)fake_pci_bus(device);
        return 0;
    case 34: /* PCI device */
    case 50: /* PCI domain */
        *value = 0;
        return 0;
    default:
        return 1;
    }
}

/* A context is the NVML index + 1, so the NVENC stub knows the GPU. */
int cuCtxCreate_v2(void **ctx, unsigned flags, int device)
{
    (void)flags;
    *ctx = (void *)(unsigned long)(device + 1);
    return 0;
}

int cuCtxDestroy_v2(void *ctx)
{
    (void)ctx;
    return 0;
}

#define UNUSED_SYMBOL(name)                                                                                            \
    int name(void);                                                                                                    \
    int name(void)                                                                                                     \
    {                                                                                                                  \
        return 999;                                                                                                    \
    }

UNUSED_SYMBOL(cuDriverGetVersion)
UNUSED_SYMBOL(cuDeviceGetName)
UNUSED_SYMBOL(cuDeviceComputeCapability)
UNUSED_SYMBOL(cuCtxSetLimit)
UNUSED_SYMBOL(cuCtxPushCurrent_v2)
UNUSED_SYMBOL(cuCtxPopCurrent_v2)
UNUSED_SYMBOL(cuCtxGetCurrent)
UNUSED_SYMBOL(cuMemAlloc_v2)
UNUSED_SYMBOL(cuMemAllocPitch_v2)
UNUSED_SYMBOL(cuMemAllocManaged)
UNUSED_SYMBOL(cuMemsetD8Async)
UNUSED_SYMBOL(cuMemFree_v2)
UNUSED_SYMBOL(cuMemcpy)
UNUSED_SYMBOL(cuMemcpyAsync)
UNUSED_SYMBOL(cuMemcpy2D_v2)
UNUSED_SYMBOL(cuMemcpy2DAsync_v2)
UNUSED_SYMBOL(cuMemcpyHtoD_v2)
UNUSED_SYMBOL(cuMemcpyHtoDAsync_v2)
UNUSED_SYMBOL(cuMemcpyDtoH_v2)
UNUSED_SYMBOL(cuMemcpyDtoHAsync_v2)
UNUSED_SYMBOL(cuMemcpyDtoD_v2)
UNUSED_SYMBOL(cuMemcpyDtoDAsync_v2)
UNUSED_SYMBOL(cuGetErrorName)
UNUSED_SYMBOL(cuGetErrorString)
UNUSED_SYMBOL(cuCtxGetDevice)
UNUSED_SYMBOL(cuDevicePrimaryCtxRetain)
UNUSED_SYMBOL(cuDevicePrimaryCtxRelease)
UNUSED_SYMBOL(cuDevicePrimaryCtxSetFlags)
UNUSED_SYMBOL(cuDevicePrimaryCtxGetState)
UNUSED_SYMBOL(cuDevicePrimaryCtxReset)
UNUSED_SYMBOL(cuStreamCreate)
UNUSED_SYMBOL(cuStreamQuery)
UNUSED_SYMBOL(cuStreamSynchronize)
UNUSED_SYMBOL(cuStreamDestroy_v2)
UNUSED_SYMBOL(cuStreamAddCallback)
UNUSED_SYMBOL(cuStreamWaitEvent)
UNUSED_SYMBOL(cuEventCreate)
UNUSED_SYMBOL(cuEventDestroy_v2)
UNUSED_SYMBOL(cuEventSynchronize)
UNUSED_SYMBOL(cuEventQuery)
UNUSED_SYMBOL(cuEventRecord)
UNUSED_SYMBOL(cuLaunchKernel)
UNUSED_SYMBOL(cuLinkCreate)
UNUSED_SYMBOL(cuLinkAddData)
UNUSED_SYMBOL(cuLinkComplete)
UNUSED_SYMBOL(cuLinkDestroy)
UNUSED_SYMBOL(cuModuleLoadData)
UNUSED_SYMBOL(cuModuleUnload)
UNUSED_SYMBOL(cuModuleGetFunction)
UNUSED_SYMBOL(cuModuleGetGlobal)
UNUSED_SYMBOL(cuTexObjectCreate)
UNUSED_SYMBOL(cuTexObjectDestroy)
UNUSED_SYMBOL(cuGLGetDevices_v2)
UNUSED_SYMBOL(cuGraphicsGLRegisterImage)
UNUSED_SYMBOL(cuGraphicsUnregisterResource)
UNUSED_SYMBOL(cuGraphicsMapResources)
UNUSED_SYMBOL(cuGraphicsUnmapResources)
UNUSED_SYMBOL(cuGraphicsSubResourceGetMappedArray)
UNUSED_SYMBOL(cuGraphicsResourceGetMappedPointer_v2)
UNUSED_SYMBOL(cuArray3DCreate_v2)
UNUSED_SYMBOL(cuArrayDestroy)
UNUSED_SYMBOL(cuDeviceGetUuid)
UNUSED_SYMBOL(cuDeviceGetUuid_v2)
UNUSED_SYMBOL(cuDeviceGetLuid)
UNUSED_SYMBOL(cuDeviceGetByPCIBusId)
UNUSED_SYMBOL(cuDeviceGetPCIBusId)
UNUSED_SYMBOL(cuImportExternalMemory)
UNUSED_SYMBOL(cuDestroyExternalMemory)
UNUSED_SYMBOL(cuExternalMemoryGetMappedBuffer)
UNUSED_SYMBOL(cuExternalMemoryGetMappedMipmappedArray)
UNUSED_SYMBOL(cuMipmappedArrayGetLevel)
UNUSED_SYMBOL(cuMipmappedArrayDestroy)
UNUSED_SYMBOL(cuImportExternalSemaphore)
UNUSED_SYMBOL(cuDestroyExternalSemaphore)
UNUSED_SYMBOL(cuSignalExternalSemaphoresAsync)
UNUSED_SYMBOL(cuWaitExternalSemaphoresAsync)
UNUSED_SYMBOL(cuArrayCreate_v2)
UNUSED_SYMBOL(cuCtxSynchronize)
UNUSED_SYMBOL(cuEGLStreamProducerConnect)
UNUSED_SYMBOL(cuEGLStreamProducerDisconnect)
UNUSED_SYMBOL(cuEGLStreamConsumerDisconnect)
UNUSED_SYMBOL(cuEGLStreamProducerPresentFrame)
UNUSED_SYMBOL(cuEGLStreamProducerReturnFrame)
