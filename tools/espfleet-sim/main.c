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
#include "server.h"
#include "show.h"

/* Facts of each chip as ESP-Hosted-FG ships it: the OTA slot size of its
 * partition table (network_adapter/partitions.<chip>.csv; chips without an
 * FG table get ESP-IDF's "two OTA" default, 1 MB) and whether the chip has
 * Bluetooth (enable_disable_feature refuses to enable it otherwise). */
static const struct chip_facts {
  const char *name;
  uint64_t slot_size;
  bool bluetooth;
} chips[] = {
    {"esp32", 1792 * 1024, true},   {"esp32s2", 1536 * 1024, false}, {"esp32s3", 1536 * 1024, true},
    {"esp32c2", 0xF0000, true},     {"esp32c3", 1536 * 1024, true},  {"esp32c5", 1536 * 1024, true},
    {"esp32c6", 1536 * 1024, true}, {"esp32h2", 1024 * 1024, true},  {"esp32p4", 1024 * 1024, false},
};

/* The release in esp_fw_version.h of the ESP-Hosted source the simulator
 * was checked against. */
#define DEFAULT_RELEASE "FG-1.0.0.0.0"
/* Erasing flash: ESP-IDF erases in 64 KiB blocks where it can, about 150 ms
 * each on typical SPI NOR flash, so ~10 ms per 4 KiB: 3.8 s for a 1536K slot. */
#define DEFAULT_ERASE_MS_PER_4K 10
/* The receive task's wait while the buffer is full: vTaskDelay(10) with
 * CONFIG_FREERTOS_HZ=1000 (sdkconfig.defaults). */
#define DEFAULT_RX_POLL_MS 10

static const struct chip_facts *chip_facts(uint16_t chip_id) {
  const char *name = ef_chip_name(chip_id);
  for (size_t i = 0; name && i < sizeof chips / sizeof chips[0]; i++)
    if (strcmp(chips[i].name, name) == 0) return &chips[i];
  return NULL;
}

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
          "  --slot-size BYTES      OTA slot size for a new FILE, K/M suffix (default:\n"
          "                         the chip's ESP-Hosted partition table, 1536K on esp32s3)\n"
          "  --reboot-delay-ms N    OTA end -> reboot (default 5000, the firmware's timer)\n"
          "  --down-ms N            link absent during a reboot (default 200)\n"
          "  --init-delay-ms N      link up after a boot -> ESPInit event (default 50)\n"
          "  --flash-kbps N         write speed in KiB/s (default 0: unthrottled)\n"
          "  --erase-ms-per-4k N    erase time per 4 KiB at OTA begin (default 10)\n"
          "  --latency-us N         extra time per OTA write request (default 0)\n"
          "  --rx-poll-ms N         the receive task's wait while its buffer is full\n"
          "                         (default 10, the firmware's vTaskDelay(10))\n"
          "  --fw-version NAME-a.b.c.d.e  ESP-Hosted release of the factory firmware and\n"
          "                         of images without a release record (default " DEFAULT_RELEASE
          ")\n"
          "  --fault SPEC           inject a fault (repeatable): begin-fail, write-fail:N,\n"
          "                         end-reject, drop-response:N, reset-after:BYTES,\n"
          "                         boot-fail, no-answer; add @K to fire at most K times\n"
          "  -v, --verbose          log every request\n"
          "  -h, --help             this text\n"
          "      --version          print the version and exit\n");
}

static int parse_num(const char *opt, const char *s, uint64_t *out) {
  char *end;
  uint64_t mult = 1;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end == 'k' || *end == 'K')
    mult = 1024, end++;
  else if (*end == 'm' || *end == 'M')
    mult = 1024 * 1024, end++;
  else if (*end == 'g' || *end == 'G')
    mult = 1024 * 1024 * 1024, end++;
  if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > UINT64_MAX / mult) {
    fprintf(stderr, "espfleet-sim: %s: not a number: %s\n", opt, s);
    return -1;
  }
  *out = (uint64_t)v * mult;
  return 0;
}

/* The command line. */
typedef struct {
  sim_config cfg;
  const char *flash_path, *chip;
  uint64_t slot_size; /* 0: the chip's */
  bool show, fw_set;
} sim_args;

/* Parses argv into @p a. @return -1 to run, 0 after --help or --version,
 * 2 on a usage error (before usage is printed). */
static int parse_sim_args(int argc, char **argv, sim_args *a) {
  enum {
    O_LINK = 256,
    O_FLASH,
    O_SHOW,
    O_CHIP,
    O_SLOT,
    O_REBOOT,
    O_DOWN,
    O_INIT,
    O_KBPS,
    O_ERASE,
    O_LAT,
    O_FAULT,
    O_FW,
    O_POLL,
    O_VERSION
  };
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
      {"rx-poll-ms", required_argument, NULL, O_POLL},
      {"version", no_argument, NULL, O_VERSION},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  sim_config *cfg = &a->cfg;
  const char *why;
  int c;
  while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
    int bad = 0;
    switch (c) {
    case O_LINK: cfg->link = optarg; break;
    case O_FLASH: a->flash_path = optarg; break;
    case O_SHOW: a->show = true; break;
    case O_CHIP: a->chip = optarg; break;
    case O_SLOT: bad = parse_num("--slot-size", optarg, &a->slot_size); break;
    case O_REBOOT: bad = parse_num("--reboot-delay-ms", optarg, &cfg->reboot_delay_ms); break;
    case O_DOWN: bad = parse_num("--down-ms", optarg, &cfg->down_ms); break;
    case O_INIT: bad = parse_num("--init-delay-ms", optarg, &cfg->init_delay_ms); break;
    case O_KBPS: bad = parse_num("--flash-kbps", optarg, &cfg->flash_kbps); break;
    case O_ERASE: bad = parse_num("--erase-ms-per-4k", optarg, &cfg->erase_ms_per_4k); break;
    case O_LAT: bad = parse_num("--latency-us", optarg, &cfg->latency_us); break;
    case O_FAULT:
      if (sim_faults_parse(&cfg->faults, optarg, &why) != 0) {
        fprintf(stderr, "espfleet-sim: --fault %s: %s\n", optarg, why);
        bad = 1;
      }
      break;
    case O_FW:
      if (ef_fw_version_parse(optarg, &cfg->release) != EF_OK) {
        fprintf(stderr, "espfleet-sim: --fw-version %s: expected NAME-a.b.c.d.e\n", optarg);
        bad = 1;
      }
      a->fw_set = true;
      break;
    case O_POLL: bad = parse_num("--rx-poll-ms", optarg, &cfg->rx_poll_ms); break;
    case O_VERSION: printf("espfleet-sim %s\n", ESPFLEET_VERSION); return 0;
    case 'v': ef_log_set_level(EF_LOG_DEBUG); break;
    case 'h': usage(stdout); return 0;
    default: bad = 1; break;
    }
    if (bad) return 2;
  }
  if (optind != argc || !a->flash_path || (!a->show && !cfg->link)) return 2;
  return -1;
}

/* What the chip decides (Bluetooth, slot size) and the default release.
 * @return false after saying why (a usage error). */
static bool complete_config(sim_args *a) {
  sim_config *cfg = &a->cfg;
  if (ef_chip_from_name(a->chip, &cfg->chip_id) != EF_OK) {
    fprintf(stderr, "espfleet-sim: --chip %s: unknown chip\n", a->chip);
    return false;
  }
  const struct chip_facts *facts = chip_facts(cfg->chip_id);
  cfg->has_bluetooth = facts ? facts->bluetooth : true;
  if (a->slot_size == 0) a->slot_size = facts ? facts->slot_size : 1024 * 1024;
  if (!a->fw_set && ef_fw_version_parse(DEFAULT_RELEASE, &cfg->release) != EF_OK) return false;
  if (a->slot_size < 65536 || a->slot_size % 4096 != 0) {
    fprintf(stderr, "espfleet-sim: --slot-size must be a multiple of 4096, at least 64K\n");
    return false;
  }
  return true;
}

/* The server takes SIGTERM and SIGINT through a signalfd; block them before
 * any thread or descriptor exists so none is delivered the default way. */
static void block_signals_for_server(void) {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  signal(SIGPIPE, SIG_IGN);
}

int main(int argc, char **argv) {
  sim_args a = {.cfg = {.reboot_delay_ms = 5000,
                        .down_ms = 200,
                        .init_delay_ms = 50,
                        .erase_ms_per_4k = DEFAULT_ERASE_MS_PER_4K,
                        .rx_poll_ms = DEFAULT_RX_POLL_MS},
                .chip = "esp32s3"};
  sim_flash flash = {.fd = -1};
  int rc;

  ef_log_set_ident("espfleet-sim");
  rc = parse_sim_args(argc, argv, &a);
  if (rc == 0) return 0;
  if (rc == 2) goto usage;

  if (a.show) {
    rc = 1;
    if (sim_flash_open_ro(&flash, a.flash_path) == EF_OK && sim_show(&flash) == EF_OK) rc = 0;
    goto out;
  }
  if (!complete_config(&a)) goto usage;
  block_signals_for_server();
  rc = 1;
  if (sim_flash_open(&flash, a.flash_path, a.slot_size, true) != EF_OK) goto out;
  if (sim_serve(&a.cfg, &flash) == EF_OK) rc = 0;
  goto out;
usage:
  usage(stderr);
  rc = 2;
out:
  sim_flash_close(&flash);
  return rc;
}
