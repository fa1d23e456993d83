/* espfleet-sim: an ESP running ESP-Hosted-FG firmware, over a pseudo-terminal.
 * Options and behaviour: docs/simulator.md. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "espfleet/image.h"
#include "espfleet/log.h"
#include "faults.h"
#include "flash.h"
#include "fwversion.h"
#include "server.h"
#include "show.h"

#define DEFAULT_SLOT_SIZE (4ull * 1024 * 1024)

static void usage(FILE *to) {
  fprintf(to,
          "usage: espfleet-sim --link PATH --flash FILE [options]\n"
          "       espfleet-sim --flash FILE --show\n"
          "\n"
          "Simulates an ESP running ESP-Hosted-FG: a pseudo-terminal whose slave is\n"
          "published at PATH, speaking the control protocol (OTA, GetFwVersion, ...).\n"
          "FILE is the simulated flash (two OTA slots); it is created when missing\n"
          "and survives restarts. SIGTERM/SIGINT stop the simulator cleanly.\n"
          "\n"
          "  --link PATH            symlink to create for the device node\n"
          "  --flash FILE           simulated flash file\n"
          "  --show                 print FILE's state as JSON and exit\n"
          "  --chip NAME            simulated chip (default esp32s3)\n"
          "  --slot-size BYTES      OTA slot size for a new FILE, K/M suffix (default 4M)\n"
          "  --reboot-delay-ms N    OTA end -> reboot (default 5000)\n"
          "  --down-ms N            link absent during a reboot (default 200)\n"
          "  --init-delay-ms N      host opens the link -> ESPInit event (default 50)\n"
          "  --flash-kbps N         write speed in KiB/s (default 0: unthrottled)\n"
          "  --erase-ms-per-4k N    erase time per 4 KiB at OTA begin (default 0)\n"
          "  --latency-us N         extra time per OTA write request (default 0)\n"
          "  --fw-version NAME-a.b.c.d.e  name reported by GetFwVersion, and the\n"
          "                         numbers while no OTA image runs (default FG-0.0.0.0.0)\n"
          "  --fault SPEC           inject a fault (repeatable): begin-fail, write-fail:N,\n"
          "                         end-reject, drop-response:N, reset-after:BYTES,\n"
          "                         boot-fail, no-answer; add @K to fire at most K times\n"
          "  -v, --verbose          log every request\n"
          "  -h, --help             this text\n");
}

static int parse_num(const char *opt, const char *s, uint64_t *out) {
  char *end;
  uint64_t mult = 1;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end == 'k' || *end == 'K') mult = 1024, end++;
  else if (*end == 'm' || *end == 'M') mult = 1024 * 1024, end++;
  else if (*end == 'g' || *end == 'G') mult = 1024 * 1024 * 1024, end++;
  if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > UINT64_MAX / mult) {
    fprintf(stderr, "espfleet-sim: %s: not a number: %s\n", opt, s);
    return -1;
  }
  *out = (uint64_t)v * mult;
  return 0;
}

int main(int argc, char **argv) {
  enum { O_LINK = 256, O_FLASH, O_SHOW, O_CHIP, O_SLOT, O_REBOOT, O_DOWN, O_INIT, O_KBPS, O_ERASE,
         O_LAT, O_FAULT, O_FW };
  static const struct option opts[] = {
      {"link", required_argument, NULL, O_LINK},
      {"flash", required_argument, NULL, O_FLASH},
      {"show", no_argument, NULL, O_SHOW},
      {"chip", required_argument, NULL, O_CHIP},
      {"slot-size", required_argument, NULL, O_SLOT},
      {"reboot-delay-ms", required_argument, NULL, O_REBOOT},
      {"down-ms", required_argument, NULL, O_DOWN},
      {"init-delay-ms", required_argument, NULL, O_INIT},
      {"flash-kbps", required_argument, NULL, O_KBPS},
      {"erase-ms-per-4k", required_argument, NULL, O_ERASE},
      {"latency-us", required_argument, NULL, O_LAT},
      {"fault", required_argument, NULL, O_FAULT},
      {"fw-version", required_argument, NULL, O_FW},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  sim_config cfg = {.reboot_delay_ms = 5000, .down_ms = 200, .init_delay_ms = 50, .fw_name = "FG"};
  const char *flash_path = NULL, *chip = "esp32s3", *why;
  uint64_t slot_size = DEFAULT_SLOT_SIZE;
  bool show = false;
  sim_flash flash = {.fd = -1};
  int c, rc = 2;

  ef_log_set_ident("espfleet-sim");
  while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
    int bad = 0;
    switch (c) {
    case O_LINK: cfg.link = optarg; break;
    case O_FLASH: flash_path = optarg; break;
    case O_SHOW: show = true; break;
    case O_CHIP: chip = optarg; break;
    case O_SLOT: bad = parse_num("--slot-size", optarg, &slot_size); break;
    case O_REBOOT: bad = parse_num("--reboot-delay-ms", optarg, &cfg.reboot_delay_ms); break;
    case O_DOWN: bad = parse_num("--down-ms", optarg, &cfg.down_ms); break;
    case O_INIT: bad = parse_num("--init-delay-ms", optarg, &cfg.init_delay_ms); break;
    case O_KBPS: bad = parse_num("--flash-kbps", optarg, &cfg.flash_kbps); break;
    case O_ERASE: bad = parse_num("--erase-ms-per-4k", optarg, &cfg.erase_ms_per_4k); break;
    case O_LAT: bad = parse_num("--latency-us", optarg, &cfg.latency_us); break;
    case O_FAULT:
      if (sim_faults_parse(&cfg.faults, optarg, &why) != 0) {
        fprintf(stderr, "espfleet-sim: --fault %s: %s\n", optarg, why);
        bad = 1;
      }
      break;
    case O_FW:
      if (sim_fw_version_parse(optarg, cfg.fw_name, sizeof cfg.fw_name, cfg.factory_version) != 0) {
        fprintf(stderr, "espfleet-sim: --fw-version %s: expected NAME-a.b.c.d.e\n", optarg);
        bad = 1;
      }
      break;
    case 'v': ef_log_set_level(EF_LOG_DEBUG); break;
    case 'h': usage(stdout); return 0;
    default: bad = 1; break;
    }
    if (bad) goto usage;
  }
  if (optind != argc || !flash_path || (!show && !cfg.link)) goto usage;

  if (show) {
    rc = 1;
    if (sim_flash_open_ro(&flash, flash_path) == EF_OK && sim_show(&flash) == EF_OK) rc = 0;
    goto out;
  }
  if (ef_chip_from_name(chip, &cfg.chip_id) != EF_OK) {
    fprintf(stderr, "espfleet-sim: --chip %s: unknown chip\n", chip);
    goto usage;
  }
  if (slot_size < 65536 || slot_size % 4096 != 0) {
    fprintf(stderr, "espfleet-sim: --slot-size must be a multiple of 4096, at least 64K\n");
    goto usage;
  }

  /* The server takes these through a signalfd; block them before any
   * thread or descriptor exists so none is delivered the default way. */
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  signal(SIGPIPE, SIG_IGN);

  rc = 1;
  if (sim_flash_open(&flash, flash_path, slot_size, true) != EF_OK) goto out;
  if (sim_serve(&cfg, &flash) == EF_OK) rc = 0;
  goto out;
usage:
  usage(stderr);
  rc = 2;
out:
  sim_flash_close(&flash);
  return rc;
}
