/* fuzz_trace.c - libFuzzer harness for bench/fleet's trace parser: any
 * bytes either give a workload of valid streams or a message naming the
 * line; never a crash, a leak or undefined behaviour. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "fleet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fleet_workload w = {0};
    char *error = NULL;

    if (fleet_parse_trace((const char *)data, size, "fuzz.trace", &w, &error)) {
        for (int i = 0; i < w.n; i++)
            if (!(w.streams[i].start >= 0) || !(w.streams[i].duration > 0) || !(w.streams[i].cost >= 0) ||
                (i > 0 && w.streams[i].start < w.streams[i - 1].start))
                __builtin_trap(); /* only valid streams, in start order */
        fleet_workload_clear(&w);
    } else if (!error || !*error) {
        __builtin_trap(); /* every refusal says why */
    }
    g_free(error);
    return 0;
}
