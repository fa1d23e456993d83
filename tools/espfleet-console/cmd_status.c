/* espfleet-console status: the retained state of every device (or some), as a table or JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console.h"

const char con_status_usage[] =
    "Usage: espfleet-console status [--device ID ...] [--json] [OPTIONS]\n"
    "\n"
    "Subscribes to P/devices/+/state (or the state topics of the given\n"
    "devices), collects the retained state documents and prints one row per\n"
    "device: device, online, state, job, app version, fw version, error code.\n"
    "\n"
    "  --device ID             only this device (repeatable); a device without\n"
    "                          a state shows as 'unknown'\n"
    "  --json                  print a JSON array of the state documents,\n"
    "                          sorted by device (a listed device without a\n"
    "                          state appears as {\"device_id\": ID, \"state\": null})\n"
    "\n"
    "--timeout S is how long states are collected after connecting (2 s); with\n"
    "--device it ends as soon as every listed device has answered.\n"
    "Exit status: 0 done; 1 error (broker unreachable); 2 usage error.\n";

typedef struct {
  char device[EF_JOB_ID_MAX + 1];
  bool seen;
  con_doc doc;
} row;

typedef struct {
  row *rows;
  size_t n, cap;
} table;

static row *table_get(table *t, const char *device) {
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->rows[i].device, device) == 0) return &t->rows[i];
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 16;
    row *r = realloc(t->rows, cap * sizeof *r);
    if (!r) return NULL;
    t->rows = r;
    t->cap = cap;
  }
  row *r = &t->rows[t->n++];
  memset(r, 0, sizeof *r);
  snprintf(r->device, sizeof r->device, "%s", device);
  return r;
}

static int by_device(const void *a, const void *b) {
  return strcmp(((const row *)a)->device, ((const row *)b)->device);
}

static const char *or_dash(const char *s) { return s && *s ? s : "-"; }

static void print_cell(const char *s, size_t width, bool last) {
  if (last)
    printf("%s\n", s);
  else
    printf("%-*s  ", (int)width, s);
}

static void print_table(const table *t) {
  static const char *const head[] = {"DEVICE", "ONLINE", "STATE", "JOB", "APP", "FW", "ERROR"};
  enum { COLS = 7 };
  size_t w[COLS];
  for (int i = 0; i < COLS; i++) w[i] = strlen(head[i]);
  const char *cell[COLS];
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1) {
      for (int i = 0; i < COLS; i++) print_cell(head[i], w[i], i + 1 == COLS);
    }
    for (size_t r = 0; r < t->n; r++) {
      const row *x = &t->rows[r];
      const con_doc *d = &x->doc;
      cell[0] = x->device;
      cell[1] = !x->seen || !d->has_online ? "?" : d->online ? "yes" : "no";
      cell[2] = x->seen ? or_dash(d->state_name) : "unknown";
      cell[3] = or_dash(d->job_id);
      cell[4] = or_dash(d->app_version);
      cell[5] = or_dash(d->fw_version);
      cell[6] = or_dash(d->error_code);
      for (int i = 0; i < COLS; i++) {
        if (pass == 0 && strlen(cell[i]) > w[i]) w[i] = strlen(cell[i]);
        if (pass == 1) print_cell(cell[i], w[i], i + 1 == COLS);
      }
    }
  }
}

static int print_json(const table *t) {
  cJSON *arr = cJSON_CreateArray();
  char *text = NULL;
  int rc = CON_FAIL;
  if (!arr) goto out;
  for (size_t r = 0; r < t->n; r++) {
    cJSON *item;
    if (t->rows[r].seen) {
      item = cJSON_Duplicate(t->rows[r].doc.doc, true);
    } else {
      item = cJSON_CreateObject();
      if (item && (!cJSON_AddStringToObject(item, "device_id", t->rows[r].device) ||
                   !cJSON_AddNullToObject(item, "state"))) {
        cJSON_Delete(item);
        item = NULL;
      }
    }
    if (!item || !cJSON_AddItemToArray(arr, item)) {
      cJSON_Delete(item);
      goto out;
    }
  }
  if (!(text = cJSON_Print(arr))) goto out;
  printf("%s\n", text);
  rc = CON_OK;
out:
  if (rc != CON_OK) con_fail(EF_ERR_NOMEM, NULL);
  cJSON_Delete(arr);
  free(text);
  return rc;
}

/* The command line of `status`. */
typedef struct {
  con_common c;
  const char *devices[CON_MAX_DEVICES];
  int n_devices; /* 0: every device */
  bool json;
} status_args;

/* @return CON_OK when the command should run, else the exit status (the
 * usage error printed). */
static int parse_status_args(int argc, char **argv, status_args *a) {
  enum { O_DEVICE = CON_OPT_CMD, O_JSON };
  static const struct option longopts[] = {
      {"device", required_argument, NULL, O_DEVICE},
      {"json", no_argument, NULL, O_JSON},
      CON_COMMON_LONGOPTS,
  };
  int opt;
  memset(a, 0, sizeof *a);
  con_common_init(&a->c);
  while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    int r = con_common_opt(&a->c, "status", opt, optarg);
    if (r < 0) return CON_USAGE;
    if (r > 0) continue;
    if (opt == O_JSON) {
      a->json = true;
    } else if (opt == O_DEVICE) {
      if (!ef_id_valid(optarg) || a->n_devices == CON_MAX_DEVICES)
        return con_usage_error("status", "--device: '%s' is not a device id, or more than %d devices", optarg,
                               CON_MAX_DEVICES);
      a->devices[a->n_devices++] = optarg;
    } else {
      return con_usage_error("status", "unknown option");
    }
  }
  if (optind != argc) return con_usage_error("status", "unexpected argument '%s'", argv[optind]);
  return con_common_check(&a->c, "status");
}

/* Keeps the newest state document of each device until @p deadline_ms (or,
 * with --device, until every named device answered) in @p t. @return false
 * when out of memory. */
static bool collect_states(con_link *link, const status_args *a, table *t, int64_t deadline_ms) {
  int unseen = a->n_devices;
  con_msg *m;
  while ((a->n_devices == 0 || unseen > 0) && (m = con_link_next(link, deadline_ms))) {
    con_doc d;
    bool ok = con_doc_parse(m, a->c.prefix, &d) && !d.progress;
    con_msg_free(m);
    if (!ok) {
      con_doc_clear(&d);
      continue;
    }
    if (a->n_devices) {
      row *x = NULL;
      for (size_t i = 0; i < t->n && !x; i++)
        if (strcmp(t->rows[i].device, d.device) == 0) x = &t->rows[i];
      if (!x) {
        con_doc_clear(&d);
        continue;
      }
      if (!x->seen) unseen--;
    }
    row *x = table_get(t, d.device);
    if (!x) {
      con_doc_clear(&d);
      return false;
    }
    con_doc_clear(&x->doc);
    x->doc = d;
    x->seen = true;
  }
  return true;
}

int cmd_status(int argc, char **argv) {
  status_args a;
  char topics[CON_MAX_DEVICES][512];
  const char *topic_ptrs[CON_MAX_DEVICES];
  table t = {0};
  con_link *link = NULL;
  int rc = parse_status_args(argc, argv, &a);
  if (rc != CON_OK) goto out;
  rc = CON_FAIL;
  int n_topics = a.n_devices ? a.n_devices : 1;
  for (int i = 0; i < n_topics; i++) {
    if (!con_topic(topics[i], sizeof topics[i], a.c.prefix, "devices", a.n_devices ? a.devices[i] : "+",
                   "state")) {
      con_fail(EF_ERR_INVALID_ARG, "topic too long");
      goto out;
    }
    topic_ptrs[i] = topics[i];
  }
  for (int i = 0; i < a.n_devices; i++)
    if (!table_get(&t, a.devices[i])) goto nomem;

  con_catch_signals();
  if (con_link_open(&a.c, topic_ptrs, (size_t)n_topics, CON_CONNECT_TIMEOUT_S, &link) != EF_OK) goto out;
  int64_t deadline = ef_mono_ms() + (int64_t)((a.c.timeout_s > 0 ? a.c.timeout_s : 2.0) * 1000);
  if (!collect_states(link, &a, &t, deadline)) goto nomem;
  /* t.rows is NULL when no device answered: qsort must not see it (C11
   * 7.22.5 wants a valid pointer even for 0 elements). */
  if (t.n > 1) qsort(t.rows, t.n, sizeof *t.rows, by_device);
  if (a.json) {
    rc = print_json(&t);
  } else {
    if (t.n == 0)
      printf("no device has published a state under %s/devices/\n", a.c.prefix);
    else
      print_table(&t);
    rc = CON_OK;
  }
  goto out;
nomem:
  rc = con_fail(EF_ERR_NOMEM, NULL);
out:
  con_link_close(link);
  for (size_t i = 0; i < t.n; i++) con_doc_clear(&t.rows[i].doc);
  free(t.rows);
  return rc;
}
