/* cost.h - the cost model: how much an encoder can take, and how much the
 * streams that gpubalance did not place weigh.
 *
 * One cost unit is one 1080p30 stream (gpubalance_stream_cost()). A
 * device's budget is what it encodes in real time at a "balanced" preset,
 * in cost units. Discovery gives each device a default budget from what it
 * is (NVIDIA: architecture x NVENC engines; VA-API: vendor and
 * generation), and the config overrides it per device.
 *
 * Live utilisation (NVML encoder utilisation, DRM fdinfo engine busy time)
 * corrects the load of streams started outside gpubalance: a driver that
 * says its encoder is 60% busy while our own streams model 20% carries
 * 40% of its budget of foreign streams, whatever their number.
 */
#ifndef GPB_COST_H
#define GPB_COST_H

#include <stdbool.h>
#include <stdint.h>

/* nvmlDeviceArchitecture_t values (nvml.h). */
enum {
    GPB_NVML_ARCH_KEPLER = 2,
    GPB_NVML_ARCH_MAXWELL = 3,
    GPB_NVML_ARCH_PASCAL = 4,
    GPB_NVML_ARCH_VOLTA = 5,
    GPB_NVML_ARCH_TURING = 6,
    GPB_NVML_ARCH_AMPERE = 7,
    GPB_NVML_ARCH_ADA = 8,
    GPB_NVML_ARCH_HOPPER = 9,
    GPB_NVML_ARCH_BLACKWELL = 10,
};

/* Cost units one NVENC engine of that architecture encodes in real time at
 * a balanced preset; 0 for an architecture this table does not know. */
double gpb_nvenc_engine_budget(int architecture);

/* NVENC engines of a GPU by its marketing name (NVML's device name), from
 * NVIDIA's Video Encode and Decode GPU Support Matrix; 0 when the name is
 * not in the table. Used when the NVENC caps do not report a count. */
int gpb_nvenc_engines_by_name(const char *name);

/* The default budget of an NVIDIA GPU: engines (from NVENC's
 * NV_ENC_CAPS_NUM_ENCODER_ENGINES, else the name table, else 1) times the
 * per-engine budget. 0 (no budget, count sessions only) for an
 * architecture the table does not know. */
double gpb_nvenc_default_budget(int architecture, int engines, const char *name);

/* The default budget of a VA-API render node from its kernel driver
 * ("i915", "xe", "amdgpu") and PCI ids (from sysfs; 0 when unknown);
 * fallback where the table knows nothing better. */
double gpb_vaapi_default_budget(const char *driver, unsigned pci_vendor, unsigned pci_device, double fallback);

/* The foreign load, in cost units, that a live utilisation (0..1 of the
 * device's encoder time) implies on a device of that budget while our own
 * opened streams model `ours` cost units: what the driver sees beyond ours,
 * never negative. */
double gpb_foreign_load_from_utilisation(double utilisation, double budget, double ours);

/* The ledger keeps the foreign load as milli-units plus one, so that a
 * zeroed record reads "unknown". */
uint32_t gpb_foreign_load_encode(double load);
/* The stored load, or -1 when unknown. */
double gpb_foreign_load_decode(uint32_t stored);

#endif
