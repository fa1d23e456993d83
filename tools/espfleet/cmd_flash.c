/* espfleet flash: validates an image, then runs the OTA sequence over ESP-Hosted. */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "espfleet/ctrl.h"
#include "espfleet/hex.h"
#include "espfleet/image.h"
#include "espfleet/ota.h"
#include "espfleet/source.h"
#include "espfleet/transport.h"
#include "progress.h"

/* How long flash waits for the ESP to come back (the daemon has its own,
 * esp.boot_timeout_s). */
#define CLI_DEFAULT_BOOT_TIMEOUT_MS 30000

const char cli_flash_usage[] =
    "Usage: espfleet flash [--device PATH] [--chip NAME] [--chunk-size N]\n"
    "                      [--window N] [--timeout-ms N] [--begin-timeout-ms N]\n"
    "                      [--boot-timeout-ms N] [--max-size BYTES] [--no-wait]\n"
    "                      IMAGE\n"
    "\n"
    "Writes IMAGE to the ESP over the ESP-Hosted control path (OTA begin,\n"
    "writes, OTA end). Before the device is opened the whole file is validated\n"
    "(header, app description, checksum, SHA-256) and, with --chip, its chip\n"
    "is checked: a corrupt or wrong image never reaches OTA begin, and OTA end\n"
    "is sent only after every byte written was hashed and validated again.\n"
    "After OTA end the ESP reboots into the new image; espfleet waits for it\n"
    "to come back and prints its firmware version and\n"
    "  flashed <version> (<project>), sha256 <hex of the file>\n"
    "Progress goes to stderr: a bar on a terminal, 'progress N%' lines every\n"
    "10 % otherwise. Ctrl-C before OTA end cancels without activating.\n"
    "\n"
    "  --device PATH          control device (default " EF_DEFAULT_DEVICE ")\n"
    "  --chip NAME            chip of the ESP (esp32s3, ESP32-C6, ...); refuse\n"
    "                         an image built for another chip\n"
    "  --chunk-size N         bytes per OTA write, 1.." EF_STR(EF_CTRL_MAX_CHUNK) " (default " EF_STR(EF_CTRL_DEFAULT_CHUNK) "):\n"
    "                         the firmware drops messages above " EF_STR(EF_CTRL_FW_MSG_MAX) " bytes\n"
    "  --window N             OTA writes in flight, 1.." EF_STR(EF_CTRL_MAX_WINDOW) " (default " EF_STR(EF_CTRL_DEFAULT_WINDOW) ")\n"
    "  --timeout-ms N         timeout of each ordinary request (default " EF_STR(EF_CTRL_DEFAULT_TIMEOUT_MS) ")\n"
    "  --begin-timeout-ms N   timeout of OTA begin, which erases the slot\n"
    "                         (default " EF_STR(EF_CTRL_DEFAULT_OTA_BEGIN_TIMEOUT_MS) ")\n"
    "  --boot-timeout-ms N    how long to wait for the reboot (default " EF_STR(CLI_DEFAULT_BOOT_TIMEOUT_MS) ")\n"
    "  --max-size BYTES       refuse images larger than this (the OTA slot);\n"
    "                         suffixes K, M, G\n"
    "  --no-wait              return right after OTA end is accepted\n"
    "  -h, --help             show this help\n"
    "\n"
    "Exit status: 0 when the ESP accepted the image (and came back, unless\n"
    "--no-wait); 1 on failure with one line\n"
    "  espfleet: error: <code>: <sentence> (<detail>)\n"
    "e.g. image_bad_checksum, chip_mismatch, esp_unavailable, esp_timeout,\n"
    "ota_begin_failed, ota_write_failed, ota_end_rejected, canceled;\n"
    "2 on a usage error.\n";

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
}

typedef struct {
  cli_progress progress;
  const char *device;
} flash_ui;

static void on_progress(void *arg, uint64_t done, uint64_t total) {
  flash_ui *ui = arg;
  cli_progress_update(&ui->progress, done, total);
}

static void on_phase(void *arg, ef_ota_phase phase) {
  flash_ui *ui = arg;
  switch (phase) {
  case EF_OTA_PHASE_TRANSFER: fprintf(stderr, "OTA begin accepted by %s; writing\n", ui->device); break;
  case EF_OTA_PHASE_VERIFY:
    cli_progress_end(&ui->progress);
    fprintf(stderr, "verifying\n");
    break;
  case EF_OTA_PHASE_ACTIVATE: fprintf(stderr, "activating (OTA end)\n"); break;
  }
}

static bool should_cancel(void *arg) {
  (void)arg;
  return interrupted != 0;
}

/* The command line of `espfleet flash`. */
typedef struct {
  ef_ctrl_options co;
  const char *path;
  int chip_id; /* -1: --chip not given */
  long chunk;
  long boot_timeout_ms;
  uint64_t max_size; /* 0: no limit */
  bool wait;
} flash_args;

/* Parses argv into @p a. @return -1 when the command should run, or the
 * usage error's exit status (the message printed). */
static int parse_flash_args(int argc, char **argv, flash_args *a) {
  enum {
    O_DEVICE = 256,
    O_CHIP,
    O_CHUNK,
    O_WINDOW,
    O_TIMEOUT,
    O_BEGIN_TIMEOUT,
    O_BOOT_TIMEOUT,
    O_MAX_SIZE,
    O_NO_WAIT
  };
  static const struct option opts[] = {
      {"device", required_argument, NULL, O_DEVICE},
      {"chip", required_argument, NULL, O_CHIP},
      {"chunk-size", required_argument, NULL, O_CHUNK},
      {"window", required_argument, NULL, O_WINDOW},
      {"timeout-ms", required_argument, NULL, O_TIMEOUT},
      {"begin-timeout-ms", required_argument, NULL, O_BEGIN_TIMEOUT},
      {"boot-timeout-ms", required_argument, NULL, O_BOOT_TIMEOUT},
      {"max-size", required_argument, NULL, O_MAX_SIZE},
      {"no-wait", no_argument, NULL, O_NO_WAIT},
      {NULL, 0, NULL, 0},
  };
  const char *chip_name = NULL;
  long l;
  int c;

  ef_ctrl_options_default(&a->co);
  a->chip_id = -1;
  a->chunk = EF_CTRL_DEFAULT_CHUNK;
  a->boot_timeout_ms = CLI_DEFAULT_BOOT_TIMEOUT_MS;
  a->max_size = 0;
  a->wait = true;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    const char *bad = NULL;
    switch (c) {
    case O_DEVICE: a->co.device = optarg; break;
    case O_CHIP: chip_name = optarg; break;
    case O_CHUNK:
      if (!cli_parse_long(optarg, 1, EF_CTRL_MAX_CHUNK, &a->chunk))
        bad = "--chunk-size (1.." EF_STR(EF_CTRL_MAX_CHUNK) ": the firmware drops messages above " EF_STR(
            EF_CTRL_FW_MSG_MAX) " bytes)";
      break;
    case O_WINDOW:
      if (!cli_parse_long(optarg, 1, EF_CTRL_MAX_WINDOW, &l))
        bad = "--window (1.." EF_STR(EF_CTRL_MAX_WINDOW) ")";
      a->co.window = (int)l;
      break;
    case O_TIMEOUT:
      if (!cli_parse_long(optarg, 1, CLI_MAX_TIMEOUT_MS, &l)) bad = "--timeout-ms";
      a->co.timeout_ms = (int)l;
      break;
    case O_BEGIN_TIMEOUT:
      if (!cli_parse_long(optarg, 1, CLI_MAX_TIMEOUT_MS, &l)) bad = "--begin-timeout-ms";
      a->co.ota_begin_timeout_ms = (int)l;
      break;
    case O_BOOT_TIMEOUT:
      if (!cli_parse_long(optarg, 1, CLI_MAX_TIMEOUT_MS, &a->boot_timeout_ms)) bad = "--boot-timeout-ms";
      break;
    case O_MAX_SIZE:
      if (!cli_parse_size(optarg, &a->max_size)) bad = "--max-size";
      break;
    case O_NO_WAIT: a->wait = false; break;
    case ':': return cli_usage_error("flash", "option '%s' needs a value", argv[optind - 1]);
    default: return cli_usage_error("flash", "unknown option '%s'", argv[optind - 1]);
    }
    if (bad) return cli_usage_error("flash", "bad value '%s' for %s", optarg, bad);
  }
  if (argc - optind != 1) return cli_usage_error("flash", "expected exactly one IMAGE");
  a->path = argv[optind];
  if (chip_name) {
    uint16_t id;
    if (ef_chip_from_name(chip_name, &id) != EF_OK)
      return cli_usage_error("flash", "unknown chip '%s'", chip_name);
    a->chip_id = id;
  }
  return -1;
}

/* Pre-flight: the whole file is validated, and checked against --chip and
 * --max-size, before anything touches the device. */
static ef_err preflight(const flash_args *a, ef_app_desc *desc, ef_image_summary *sum, ef_status *st) {
  ef_image_header hdr;
  ef_err err = ef_image_check_file(a->path, &hdr, desc, sum, st);
  if (err != EF_OK) return err;
  const char *image_chip = ef_chip_name(hdr.chip_id);
  if (a->chip_id >= 0 && hdr.chip_id != a->chip_id)
    return ef_status_fail(st, EF_ERR_CHIP_MISMATCH, "image is for %s (0x%04x), the ESP is %s (0x%04x)",
                          image_chip ? image_chip : "an unknown chip", hdr.chip_id,
                          ef_chip_name((uint16_t)a->chip_id), a->chip_id);
  if (a->max_size && sum->total_size > a->max_size)
    return ef_status_fail(st, EF_ERR_TOO_LARGE, "image has %" PRIu64 " bytes, --max-size is %" PRIu64,
                          sum->total_size, a->max_size);
  fprintf(stderr, "image %s: %s (%s) for %s, %" PRIu64 " bytes\n", a->path, desc->version, desc->project_name,
          image_chip ? image_chip : "unknown chip", sum->total_size);
  return EF_OK;
}

/* SIGINT and SIGTERM cancel the transfer (before OTA end) instead of killing us. */
static void cancel_on_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

/* After OTA end: waits for the ESP to come back and prints its firmware version. */
static ef_err wait_for_new_firmware(ef_ctrl *ctrl, long boot_timeout_ms, ef_status *st) {
  ef_fw_version fw;
  char fw_text[96];
  fprintf(stderr, "OTA end accepted; waiting up to %ld ms for the ESP to reboot\n", boot_timeout_ms);
  /* ef_ctrl_wait_boot waits for the reboot itself first: the old firmware
   * keeps answering until then. */
  ef_status why = EF_STATUS_INIT;
  ef_err err =
      ef_ctrl_wait_boot(ctrl, boot_timeout_ms > 0x7fffffff ? 0x7fffffff : (int)boot_timeout_ms, &fw, &why);
  if (err != EF_OK) return ef_status_fail(st, err, "OTA end was accepted, but %s", why.detail);
  ef_fw_version_format(&fw, fw_text, sizeof fw_text);
  printf("firmware %s\n", fw_text);
  return EF_OK;
}

int cmd_flash(int argc, char **argv) {
  flash_args a;
  ef_ctrl *ctrl = NULL;
  ef_source src = {0};
  bool src_open = false;
  int rc = CLI_FAIL;
  ef_status st = EF_STATUS_INIT;
  ef_err err;

  int usage = parse_flash_args(argc, argv, &a);
  if (usage >= 0) return usage;

  ef_app_desc desc;
  ef_image_summary sum;
  err = preflight(&a, &desc, &sum, &st);
  if (err != EF_OK) goto out;

  err = ef_ctrl_open(&a.co, &ctrl, &st);
  if (err != EF_OK) goto out;
  err = ef_file_source_open(a.path, &src, &st);
  if (err != EF_OK) goto out;
  src_open = true;

  flash_ui ui = {.device = a.co.device};
  cli_progress_init(&ui.progress, stderr);
  ef_ota_request req;
  ef_ota_request_init(&req);
  req.chip_id = a.chip_id;
  /* Pin the stream to what pre-flight saw: a file replaced meanwhile fails. */
  req.size = sum.total_size;
  req.max_size = a.max_size;
  req.version = desc.version;
  req.project = desc.project_name;
  req.chunk_size = (size_t)a.chunk;
  req.arg = &ui;
  req.on_progress = on_progress;
  req.on_phase = on_phase;
  req.should_cancel = should_cancel;

  cancel_on_signals();
  ef_ota_result res;
  err = ef_ota_run(ctrl, &src, &req, &res, &st);
  cli_progress_end(&ui.progress);
  if (err != EF_OK) goto out;
  /* Past OTA end a signal must not turn success into a cancel. */
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);

  char hex[65];
  ef_hex(res.sha256, 32, hex);
  if (a.wait) {
    err = wait_for_new_firmware(ctrl, a.boot_timeout_ms, &st);
    if (err != EF_OK) goto out;
  }
  printf("flashed %s (%s), sha256 %s\n", res.app.version, res.app.project_name, hex);
  rc = CLI_OK;
out:
  if (src_open) ef_file_source_close(&src);
  ef_ctrl_close(ctrl);
  if (rc != CLI_OK) cli_fail(err, st.detail);
  return rc;
}
