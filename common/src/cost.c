/* cost.c - default encoder budgets and the utilisation correction. See
 * cost.h. */
#include "cost.h"

#include <glib.h>
#include <math.h>
#include <string.h>

/*
 * NVENC throughput per engine, in 1080p30 cost units at a balanced preset
 * (NVENC P4 / the old "HQ" presets), by NVML architecture.
 *
 *   arch        units  source
 *   Kepler        4    NVENC application note (Kepler): "up to 8x real-time
 *                      1080p30" at the high-performance preset, "4x" at HQ
 *   Maxwell       8    NVENC application note (Maxwell): "16x real-time"
 *                      at high performance, so 8 at a balanced preset
 *   Pascal        8    same H.264/HEVC throughput class as 2nd-gen Maxwell
 *   Volta         8    Volta and TU117 share Pascal's NVENC (application
 *                      note, capability table "Volta and TU117 GPUs")
 *   Turing       16    Video Codec SDK FAQ: Turing presets give Pascal's
 *                      quality at 2x the performance, per engine
 *   Ampere       16    same NVENC as Turing (application note, capability
 *                      table "Ampere and TU GPUs")
 *   Ada          16    a lower bound: the application note (SDK 12.x,
 *                      "NVENC Performance") says that "with every
 *                      generation of NVIDIA GPUs (Maxwell 1st/2nd gen,
 *                      Pascal, Volta, Turing, Ampere and Ada), NVENC
 *                      performance has increased steadily", so an Ada
 *                      engine does at least Ampere's. Its per-engine
 *                      figures for Pascal, Turing and Ada (Table 2) are
 *                      published as an image, which no tool here could
 *                      read: the exact Ada figure is not used
 *   Hopper        0    H100 has no NVENC: the open probe says so and the
 *                      GPU is never offered; no budget
 *   Blackwell    16    assumed at least Ada's: the SDK 13.0 note lists
 *                      Blackwell as an NVENC generation of its own (its
 *                      capability tables) but gives no figure we could read
 *
 * The GPU's total is this times its engine count: "if the GPU has 2
 * NVENCs (e.g. GP104, AD104), multiply [the per-NVENC figure] by the
 * number of NVENCs per chip" (application note, NVENC performance;
 * aggregate throughput needs several sessions, which is our case).
 * These are defaults for spreading load, not promises; [device:...]
 * budget= overrides them.
 */
static const struct {
    int architecture;
    double units_per_engine;
} nvenc_engine_budgets[] = {
    {GPB_NVML_ARCH_KEPLER, 4}, {GPB_NVML_ARCH_MAXWELL, 8}, {GPB_NVML_ARCH_PASCAL, 8},
    {GPB_NVML_ARCH_VOLTA, 8},  {GPB_NVML_ARCH_TURING, 16}, {GPB_NVML_ARCH_AMPERE, 16},
    {GPB_NVML_ARCH_ADA, 16},   {GPB_NVML_ARCH_HOPPER, 0},  {GPB_NVML_ARCH_BLACKWELL, 16},
};

/*
 * NVENC engines per GPU, from NVIDIA's "Video Encode and Decode GPU
 * Support Matrix", for GPUs with more than one (a name not listed counts
 * as one). Longer names first: matching is by substring.
 */
static const struct {
    const char *name;
    int engines;
} nvenc_engines_by_name[] = {
    {"RTX 6000 Ada", 3}, {"L40S", 3},     {"L40", 3},      {"RTX 5090", 3}, {"RTX 5080", 2},
    {"RTX 5070 Ti", 2},  {"RTX 4090", 2}, {"RTX 4080", 2}, {"RTX 4070", 2}, /* AD104, Ti too */
    {"GTX 1080", 2},     {"GTX 1070", 2},                                   /* GP104 */
};

double gpb_nvenc_engine_budget(int architecture)
{
    for (size_t i = 0; i < G_N_ELEMENTS(nvenc_engine_budgets); i++)
        if (nvenc_engine_budgets[i].architecture == architecture)
            return nvenc_engine_budgets[i].units_per_engine;
    return 0;
}

/* "NVIDIA L4" must not match "L40": a name entry matches as a whole word. */
static bool contains_word(const char *text, const char *word)
{
    size_t n = strlen(word);

    for (const char *p = strstr(text, word); p; p = strstr(p + 1, word))
        if ((p == text || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
            return true;
    return false;
}

int gpb_nvenc_engines_by_name(const char *name)
{
    if (!name)
        return 0;
    for (size_t i = 0; i < G_N_ELEMENTS(nvenc_engines_by_name); i++)
        if (contains_word(name, nvenc_engines_by_name[i].name))
            return nvenc_engines_by_name[i].engines;
    if (contains_word(name, "L4"))
        return 2;
    return 0;
}

double gpb_nvenc_default_budget(int architecture, int engines, const char *name)
{
    double per_engine = gpb_nvenc_engine_budget(architecture);

    if (engines <= 0)
        engines = gpb_nvenc_engines_by_name(name);
    if (engines <= 0)
        engines = 1;
    return per_engine * engines;
}

/*
 * VA-API budgets per render node where the vendor gives a figure, in cost
 * units, by PCI device id range (one render node is one GPU):
 *
 *   Xe-HPG (DG2: Arc A-series, Data Center GPU Flex 140/170)   20
 *     An Intel Flex 140 runs ~20 1080p60 H.264 streams at a balanced
 *     preset (Intel's Flex series figures, as quoted in DESIGN.md) = 40
 *     units on a card that carries two GPUs, each its own render node with
 *     two VDBOX encode engines. Every Xe-HPG GPU has that same pair of
 *     VDBOX engines (Intel's media-delivery Flex benchmark table: ATS-M75
 *     "2 per SoC", ATS-M150 2; the Arc A-series list two Xe media
 *     engines), so each gets the Flex 140 node's figure. The device ids are
 *     those the kernel's i915 driver lists for DG2 and ATS-M.
 *
 * Everything else keeps the default of 16. An explicit [vaapi] budget=
 * applies to every node instead, and a [device:...] budget= to its node.
 */
static const struct {
    unsigned vendor;
    unsigned first_device, last_device;
    double units;
} vaapi_budgets[] = {
    {0x8086, 0x5690, 0x5697, 20}, /* DG2 mobile */
    {0x8086, 0x56a0, 0x56a6, 20}, /* DG2 desktop: A770, A750, A580, A380, A310 */
    {0x8086, 0x56b0, 0x56b3, 20}, /* DG2 workstation: Arc Pro A30M..A60 */
    {0x8086, 0x56ba, 0x56bf, 20}, /* DG2 embedded */
    {0x8086, 0x56c0, 0x56c2, 20}, /* ATS-M: Flex 170 (56c0), Flex 140 (56c1) */
};

double gpb_vaapi_default_budget(const char *driver, unsigned pci_vendor, unsigned pci_device, double fallback)
{
    (void)driver; /* kept for generations told apart by driver alone */
    for (size_t i = 0; i < G_N_ELEMENTS(vaapi_budgets); i++)
        if (vaapi_budgets[i].vendor == pci_vendor && pci_device >= vaapi_budgets[i].first_device &&
            pci_device <= vaapi_budgets[i].last_device)
            return vaapi_budgets[i].units;
    return fallback;
}

double gpb_foreign_load_from_utilisation(double utilisation, double budget, double ours)
{
    if (!(utilisation > 0) || budget <= 0)
        return 0;
    return MAX(0.0, MIN(utilisation, 1.0) * budget - ours);
}

uint32_t gpb_foreign_load_encode(double load)
{
    if (load < 0)
        return 0;
    return (uint32_t)MIN(lround(load * 1000) + 1, (long)UINT32_MAX);
}

double gpb_foreign_load_decode(uint32_t stored)
{
    return stored ? (stored - 1) / 1000.0 : -1;
}
