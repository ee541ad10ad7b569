/* fuzz_config.c - libFuzzer harness for the config parser: any bytes
 * either parse or give GPUBALANCE_ERR_CONFIG with a message; never a crash,
 * a leak or undefined behaviour. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gpb_config *config = NULL;
    int status = gpb_config_parse((const char *)data, size, "fuzz.conf", &config);

    if (status == 0)
        gpb_config_free(config);
    else if (status != GPUBALANCE_ERR_CONFIG || !*gpubalance_last_error())
        __builtin_trap(); /* every refusal is a config error with a message */
    return 0;
}
