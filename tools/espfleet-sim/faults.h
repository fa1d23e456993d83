/**
 * @file faults.h
 * @brief Faults the simulator injects on request (--fault SPEC).
 *
 * SPEC is NAME[:N][@K]. N is the fault's argument; @K limits how many times
 * the fault fires in this simulator process (default: every time it applies).
 * Faults are not persisted: a restarted simulator starts with the faults of
 * its own command line. See docs/simulator.md for each fault's behaviour.
 */
#ifndef ESPFLEET_SIM_FAULTS_H
#define ESPFLEET_SIM_FAULTS_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
  SIM_FAULT_BEGIN_FAIL,    /**< OTA begin answers failure */
  SIM_FAULT_WRITE_FAIL,    /**< the Nth write of an OTA answers failure */
  SIM_FAULT_END_REJECT,    /**< OTA end refuses any image */
  SIM_FAULT_DROP_RESPONSE, /**< the Nth response since start is not sent */
  SIM_FAULT_RESET_AFTER,   /**< reset without switching once N bytes are written */
  SIM_FAULT_BOOT_FAIL,     /**< a newly selected image fails to boot: rollback */
  SIM_FAULT_NO_ANSWER,     /**< the ESP hangs: nothing is ever answered */
  SIM_FAULT__COUNT
} sim_fault_kind;

typedef struct {
  bool armed;
  uint64_t arg;       /**< N (1-based counts, bytes for reset-after) */
  uint64_t remaining; /**< times it may still fire; UINT64_MAX = unlimited */
} sim_fault;

typedef struct {
  sim_fault f[SIM_FAULT__COUNT];
} sim_faults;

/**
 * Parses one SPEC and arms it in @p fs.
 * @return 0, or -1 with a message in @p why (static text) when SPEC is bad.
 */
int sim_faults_parse(sim_faults *fs, const char *spec, const char **why);

/**
 * Asks whether fault @p kind applies now; when it does, uses up one of its
 * firings. @p value is compared with the fault's argument for the counted
 * faults (write number, response number, bytes written); ignored otherwise.
 */
bool sim_faults_fire(sim_faults *fs, sim_fault_kind kind, uint64_t value);

/** True when @p kind is armed (and may still fire). */
bool sim_faults_armed(const sim_faults *fs, sim_fault_kind kind);

/** Fault name as written in SPEC ("write-fail"). */
const char *sim_fault_name(sim_fault_kind kind);

#endif
