/* espfleet mkimage: writes a valid, deterministic application image. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "espfleet/ctrl.h"
#include "espfleet/image.h"
#include "espfleet/mkimage.h"

const char cli_mkimage_usage[] =
    "Usage: espfleet mkimage --chip NAME --version V --project P --size BYTES\n"
    "                        [--secure-version N] [--hosted-release NAME-a.b.c.d.e]\n"
    "                        -o OUT\n"
    "\n"
    "Writes a valid ESP-IDF application image: header (flash mode DIO, SHA-256\n"
    "appended), an app description with version V and project P, segments of\n"
    "pseudo-random bytes, checksum and SHA-256 digest. The same arguments always\n"
    "give the same bytes; a different version gives different bytes. Memory use\n"
    "does not depend on the size.\n"
    "\n"
    "  --chip NAME           target chip: esp32, esp32s2, esp32c3, esp32s3,\n"
    "                        esp32c2, esp32c6, esp32h2, esp32p4, esp32c5\n"
    "                        (\"ESP32-S3\" and \"esp32-s3\" work too)\n"
    "  --version V           app version string, at most 31 characters\n"
    "  --project P           project name, at most 31 characters\n"
    "  --size BYTES          about this many bytes (at most 47 fewer), 512 to\n"
    "                        224M; suffixes K, M, G are powers of 1024 (8M)\n"
    "  --secure-version N    anti-rollback counter in the app description\n"
    "                        (default 0)\n"
    "  --hosted-release R    ESP-Hosted release the image stands for (FG-1.0.3.0.0):\n"
    "                        a record espfleet-sim reports through GetFwVersion\n"
    "                        once the image runs (default: no record)\n"
    "  -o, --output OUT      file to write (replaced atomically); '-' = stdout\n"
    "  -h, --help            show this help\n"
    "\n"
    "Example: espfleet mkimage --chip esp32s3 --version 1.2.0 --project demo \\\n"
    "           --size 1M -o demo-1.2.0.bin\n";

/* Prints a usage error of mkimage; false, so that a parser can return it. */
#define USAGE_ERROR(...) (cli_usage_error("mkimage", __VA_ARGS__), false)

/* Parses argv into @p o and @p out_path. @return true when the command
 * should run, false after printing a usage error (exit CLI_USAGE). */
static bool parse_mkimage_args(int argc, char **argv, ef_mkimage_options *o, const char **out_path) {
  static const struct option opts[] = {
      {"chip", required_argument, NULL, 'c'},           {"version", required_argument, NULL, 'v'},
      {"project", required_argument, NULL, 'p'},        {"size", required_argument, NULL, 's'},
      {"secure-version", required_argument, NULL, 'S'}, {"output", required_argument, NULL, 'o'},
      {"hosted-release", required_argument, NULL, 'R'}, {NULL, 0, NULL, 0},
  };
  const char *chip = NULL;
  bool have_size = false;
  int c;
  long l;

  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":o:", opts, NULL)) != -1) {
    switch (c) {
    case 'c': chip = optarg; break;
    case 'v': o->version = optarg; break;
    case 'p': o->project = optarg; break;
    case 's':
      if (!cli_parse_size(optarg, &o->size)) return USAGE_ERROR("bad --size '%s'", optarg);
      have_size = true;
      break;
    case 'S':
      if (!cli_parse_long(optarg, 0, UINT32_MAX, &l)) return USAGE_ERROR("bad --secure-version '%s'", optarg);
      o->secure_version = (uint32_t)l;
      break;
    case 'o': *out_path = optarg; break;
    case 'R': {
      ef_fw_version rel;
      if (ef_fw_version_parse(optarg, &rel) != EF_OK || strlen(optarg) > EF_MKIMAGE_RELEASE_MAX)
        return USAGE_ERROR("bad --hosted-release '%s' (NAME-a.b.c.d.e, at most %d characters)", optarg,
                           EF_MKIMAGE_RELEASE_MAX);
      o->hosted_release = optarg;
      break;
    }
    case ':': return USAGE_ERROR("option '%s' needs a value", argv[optind - 1]);
    default: return USAGE_ERROR("unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return USAGE_ERROR("unexpected argument '%s'", argv[optind]);
  if (!chip || !o->version || !o->project || !have_size || !*out_path)
    return USAGE_ERROR("--chip, --version, --project, --size and -o are required");
  if (ef_chip_from_name(chip, &o->chip_id) != EF_OK) return USAGE_ERROR("unknown chip '%s'", chip);
  if (strlen(o->version) > 31 || strlen(o->project) > 31)
    return USAGE_ERROR("--version and --project hold at most 31 characters");
  if (o->size < EF_MKIMAGE_MIN_SIZE || o->size > EF_MKIMAGE_MAX_SIZE)
    return USAGE_ERROR("--size must be between %u and %llu bytes", EF_MKIMAGE_MIN_SIZE,
                       (unsigned long long)EF_MKIMAGE_MAX_SIZE);
  return true;
}

int cmd_mkimage(int argc, char **argv) {
  ef_mkimage_options o = {.chip_id = EF_CHIP_INVALID};
  const char *out_path = NULL;
  char *tmp_path = NULL;
  FILE *f = NULL;
  int rc = CLI_FAIL;

  if (!parse_mkimage_args(argc, argv, &o, &out_path)) return CLI_USAGE;

  bool to_stdout = strcmp(out_path, "-") == 0;
  char detail[512] = "";
  ef_err err = EF_OK;
  uint64_t written = 0;
  if (to_stdout) {
    f = stdout;
  } else {
    /* A half-written image under the final name could be flashed by mistake. */
    if (asprintf(&tmp_path, "%s.tmp.%ld", out_path, (long)getpid()) < 0) {
      tmp_path = NULL;
      err = EF_ERR_NOMEM;
      goto out;
    }
    f = fopen(tmp_path, "wb");
    if (!f) {
      err = EF_ERR_IO;
      snprintf(detail, sizeof detail, "cannot create %s: %s", tmp_path, strerror(errno));
      goto out;
    }
  }
  ef_status st = EF_STATUS_INIT;
  err = ef_mkimage_write(&o, f, &written, &st);
  if (err != EF_OK) {
    snprintf(detail, sizeof detail, "writing %s: %s", to_stdout ? "stdout" : out_path, st.detail);
    goto out;
  }
  if (!to_stdout) {
    int cerr = fclose(f);
    f = NULL;
    if (cerr != 0 || rename(tmp_path, out_path) != 0) {
      err = EF_ERR_IO;
      snprintf(detail, sizeof detail, "writing %s: %s", out_path, strerror(errno));
      goto out;
    }
    printf("wrote %s: %" PRIu64 " bytes, %s, version %s, project %s\n", out_path, written,
           ef_chip_name(o.chip_id), o.version, o.project);
  }
  rc = CLI_OK;
out:
  if (f && f != stdout) fclose(f);
  if (rc != CLI_OK) {
    if (tmp_path) unlink(tmp_path);
    cli_fail(err, detail);
  }
  free(tmp_path);
  return rc;
}
