/* libFuzzer harness: arbitrary configuration file text through the
 * config parser. Errors must carry a message; nothing may crash. */
#include <stdint.h>
#include <string.h>

#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pico_config cfg;
    char err[512] = "";

    config_defaults(&cfg);
    if (config_parse(&cfg, "fuzz.conf", (const char *)data, size, err,
                     sizeof(err)) < 0 &&
        strncmp(err, "fuzz.conf", 9) != 0)
        __builtin_trap();
    return 0;
}
