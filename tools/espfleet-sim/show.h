/**
 * @file show.h
 * @brief `espfleet-sim --flash FILE --show`: the flash state as JSON.
 */
#ifndef ESPFLEET_SIM_SHOW_H
#define ESPFLEET_SIM_SHOW_H

#include "flash.h"

/**
 * Prints @p f's state as one JSON document on stdout (format in
 * docs/simulator.md).
 * @return EF_OK; EF_ERR_NOMEM.
 */
ef_err sim_show(const sim_flash *f) EF_MUST_CHECK;

#endif
