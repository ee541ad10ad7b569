/* devset.h - a set of device indices (inventory or ledger), as a bitset.
 *
 * Replaces the 64-bit masks that capped a host at 63 declared devices
 * plus software: large VA-API hosts, multi-GPU boxes and tests with many
 * sim devices need more. GPB_MAX_DEVICES bounds both the inventory and
 * the ledger's device table.
 */
#ifndef GPB_DEVSET_H
#define GPB_DEVSET_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define GPB_MAX_DEVICES 256

typedef struct {
    uint64_t bits[GPB_MAX_DEVICES / 64];
} gpb_devset;

static inline void gpb_devset_clear(gpb_devset *set)
{
    memset(set, 0, sizeof(*set));
}

static inline void gpb_devset_add(gpb_devset *set, int index)
{
    set->bits[(unsigned)index / 64] |= UINT64_C(1) << ((unsigned)index % 64);
}

static inline bool gpb_devset_has(const gpb_devset *set, int index)
{
    return index >= 0 && index < GPB_MAX_DEVICES &&
           (set->bits[(unsigned)index / 64] >> ((unsigned)index % 64) & 1u) != 0;
}

static inline bool gpb_devset_empty(const gpb_devset *set)
{
    for (unsigned i = 0; i < GPB_MAX_DEVICES / 64; i++)
        if (set->bits[i])
            return false;
    return true;
}

static inline void gpb_devset_fill(gpb_devset *set)
{
    memset(set, 0xff, sizeof(*set));
}

#endif
