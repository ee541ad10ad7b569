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

static inline void gpb_devset_remove(gpb_devset *set, int index)
{
    set->bits[(unsigned)index / 64] &= ~(UINT64_C(1) << ((unsigned)index % 64));
}

/* The first index in the set at or after from, or -1: walks a sparse set
 * a word at a time, so that a loop over it costs what the set holds,
 * not GPB_MAX_DEVICES. */
static inline int gpb_devset_next(const gpb_devset *set, int from)
{
    for (unsigned w = (unsigned)from / 64; from >= 0 && w < GPB_MAX_DEVICES / 64; w++) {
        uint64_t bits = set->bits[w];

        if (w == (unsigned)from / 64)
            bits &= ~UINT64_C(0) << ((unsigned)from % 64);
        if (bits)
            return (int)(w * 64 + (unsigned)__builtin_ctzll(bits));
    }
    return -1;
}

#define GPB_DEVSET_FOREACH(set, i) for (int i = gpb_devset_next((set), 0); i >= 0; i = gpb_devset_next((set), i + 1))

#endif
