/*
 * espfleet-console status: the retained state of every device (or some), as
 * a table with each job's counts per state, or as JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console.h"

const char con_status_usage[] =
    "Usage: espfleet-console status [--device ID ...] [--json] [--no-announce] [OPTIONS]\n"
    "\n"
    "Subscribes to P/devices/+/state (or the state topics of the given\n"
    "devices), asks every device to publish its state again (an announce\n"
    "request on P/announce), collects the state documents and prints one row\n"
    "per device: device, online, state, progress (while downloading), job,\n"
    "app version, fw version, error code; then, for each job, how many\n"
    "devices are in each state.\n"
    "\n"
    "  --device ID             only this device (repeatable); a device without\n"
    "                          a state shows as 'unknown'\n"
    "  --json                  print a JSON array of the state documents,\n"
    "                          sorted by device (a listed device without a\n"
    "                          state appears as {\"device_id\": ID, \"state\": null})\n"
    "  --no-announce           do not ask the devices to publish their state\n"
    "                          again: only retained states show (brokers such\n"
    "                          as RabbitMQ do not deliver those to P/devices/+)\n"
    "\n"
    "--timeout S is how long states are collected after connecting (2 s); with\n"
    "--device it ends as soon as every listed device has answered.\n"
    "Exit status: 0 done; 1 error (broker unreachable); 2 usage error.\n";

typedef struct {
  char device[EF_JOB_ID_MAX + 1];
  bool seen;
  con_device_doc d;
  char *payload; /* as received, for --json */
  size_t len;
} row;

typedef struct {
  row *rows;
  size_t n, cap;
} table;

static row *table_find(table *t, const char *device) {
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->rows[i].device, device) == 0) return &t->rows[i];
  return NULL;
}

static row *table_get(table *t, const char *device) {
  row *r = table_find(t, device);
  if (r) return r;
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 16;
    row *grown = realloc(t->rows, cap * sizeof *grown);
    if (!grown) return NULL;
    t->rows = grown;
    t->cap = cap;
  }
  r = &t->rows[t->n++];
  memset(r, 0, sizeof *r);
  snprintf(r->device, sizeof r->device, "%s", device);
  return r;
}

static int by_device(const void *a, const void *b) {
  return strcmp(((const row *)a)->device, ((const row *)b)->device);
}

static const char *or_dash(const char *s) { return s && *s ? s : "-"; }

/* One row per device. @return false when out of memory. */
static bool print_devices(const table *t, bool tty) {
  static const char *const head[] = {"DEVICE", "ONLINE", "STATE", "PROGRESS", "JOB", "APP", "FW", "ERROR"};
  enum { COLS = sizeof head / sizeof head[0] };
  con_table *out = con_table_new(COLS, head);
  bool ok = out != NULL;
  for (size_t r = 0; ok && r < t->n; r++) {
    const row *x = &t->rows[r];
    const ef_state_view *v = &x->d.v;
    char progress[16] = "-";
    /* The state document carries bytes and total; they mean progress only while downloading. */
    if (x->seen && v->state_known && v->state == EF_STATE_DOWNLOADING && v->total)
      snprintf(progress, sizeof progress, "%d%%", v->percent);
    const char *state = x->seen ? or_dash(v->state_name) : "unknown";
    const char *cells[COLS] = {x->device,
                               !x->seen || !v->has_online ? "?"
                               : v->online                ? "yes"
                                                          : "no",
                               state,
                               progress,
                               or_dash(v->job_id),
                               or_dash(v->app_version),
                               or_dash(v->fw_version),
                               or_dash(v->error_code)};
    const char *colors[COLS] = {NULL, x->d.offline ? "\033[31m" : NULL, con_term_state_color(state)};
    ok = con_table_add(out, cells, colors);
  }
  if (ok) con_table_print(out, stdout, tty, 0, "\n");
  con_table_free(out);
  return ok;
}

/* For each job a device reported on: how many devices are in each state.
 * Only the states some device is in get a column. @return false when out
 * of memory. */
static bool print_job_counts(const table *t, bool tty) {
  typedef struct {
    const char *job_id;
    int devices;
    int in[EF_STATE__COUNT];
  } job_count;
  job_count *jobs = calloc(t->n ? t->n : 1, sizeof *jobs);
  size_t n_jobs = 0;
  bool used[EF_STATE__COUNT] = {false};
  const char *head[2 + EF_STATE__COUNT];
  char names[EF_STATE__COUNT][24];
  con_table *out = NULL;
  bool ok = false;
  if (!jobs) goto out;
  for (size_t r = 0; r < t->n; r++) {
    const ef_state_view *v = &t->rows[r].d.v;
    if (!t->rows[r].seen || !v->job_id[0] || !v->state_known) continue;
    size_t j = 0;
    while (j < n_jobs && strcmp(jobs[j].job_id, v->job_id) != 0) j++;
    if (j == n_jobs) jobs[n_jobs++].job_id = v->job_id;
    jobs[j].devices++;
    jobs[j].in[v->state]++;
    used[v->state] = true;
  }
  ok = true;
  if (n_jobs == 0) goto out;
  size_t cols = 0;
  int state_of[EF_STATE__COUNT];
  head[cols++] = "JOB";
  head[cols++] = "DEVICES";
  for (int s = 0; s < EF_STATE__COUNT; s++) {
    if (!used[s]) continue;
    size_t i = 0;
    for (const char *p = ef_state_name((ef_job_state)s); *p && i + 1 < sizeof names[s]; p++)
      names[s][i++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
    names[s][i] = '\0';
    state_of[cols - 2] = s;
    head[cols++] = names[s];
  }
  ok = (out = con_table_new(cols, head)) != NULL;
  for (size_t j = 0; ok && j < n_jobs; j++) {
    char nums[2 + EF_STATE__COUNT][16];
    const char *cells[2 + EF_STATE__COUNT];
    cells[0] = jobs[j].job_id;
    snprintf(nums[1], sizeof nums[1], "%d", jobs[j].devices);
    cells[1] = nums[1];
    for (size_t c = 2; c < cols; c++) {
      snprintf(nums[c], sizeof nums[c], "%d", jobs[j].in[state_of[c - 2]]);
      cells[c] = nums[c];
    }
    ok = con_table_add(out, cells, NULL);
  }
  if (ok) {
    con_table_sort(out);
    printf("\n");
    con_table_print(out, stdout, tty, 0, "\n");
  }
out:
  con_table_free(out);
  free(jobs);
  return ok;
}

static int print_json(const table *t) {
  cJSON *arr = cJSON_CreateArray();
  char *text = NULL;
  int rc = CON_FAIL;
  if (!arr) goto out;
  for (size_t r = 0; r < t->n; r++) {
    cJSON *item;
    if (t->rows[r].seen) {
      item = cJSON_ParseWithLength(t->rows[r].payload, t->rows[r].len);
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
  bool json, no_announce;
} status_args;

/* @return CON_OK when the command should run, else the exit status (the
 * usage error printed). */
static int parse_status_args(int argc, char **argv, status_args *a) {
  enum { O_DEVICE = CON_OPT_CMD, O_JSON, O_NO_ANNOUNCE };
  static const struct option longopts[] = {
      {"device", required_argument, NULL, O_DEVICE},
      {"json", no_argument, NULL, O_JSON},
      {"no-announce", no_argument, NULL, O_NO_ANNOUNCE},
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
    } else if (opt == O_NO_ANNOUNCE) {
      a->no_announce = true;
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
  ef_inbox_msg *m;
  bool ok = true;
  while (ok && (a->n_devices == 0 || unseen > 0) && (m = con_link_next(link, deadline_ms))) {
    con_device_doc d;
    row *x = NULL;
    if (con_device_doc_read(m, a->c.prefix, &d) && d.kind == EF_TOPIC_DEVICE_STATE) {
      /* with --device only the listed devices have rows */
      x = a->n_devices ? table_find(t, d.device) : table_get(t, d.device);
      ok = x || a->n_devices;
    }
    if (x) {
      if (!x->seen) unseen--;
      free(x->payload);
      x->d = d;
      x->seen = true;
      x->payload = m->payload; /* taken over */
      x->len = m->len;
      m->payload = NULL;
    }
    ef_inbox_msg_free(m);
  }
  return ok;
}

int cmd_status(int argc, char **argv) {
  status_args a;
  char topics[CON_MAX_DEVICES][EF_TOPIC_MAX];
  const char *topic_ptrs[CON_MAX_DEVICES];
  table t = {0};
  con_link *link = NULL;
  int rc = parse_status_args(argc, argv, &a);
  if (rc != CON_OK) goto out;
  rc = CON_FAIL;
  int n_topics = a.n_devices ? a.n_devices : 1;
  for (int i = 0; i < n_topics; i++) {
    if (!con_topic(topics[i], a.c.prefix, EF_TOPIC_DEVICE_STATE, a.n_devices ? a.devices[i] : "+")) goto out;
    topic_ptrs[i] = topics[i];
  }
  for (int i = 0; i < a.n_devices; i++)
    if (!table_get(&t, a.devices[i])) goto nomem;

  con_catch_signals();
  if (con_link_open(&a.c, topic_ptrs, (size_t)n_topics, CON_CONNECT_TIMEOUT_S, &link) != EF_OK) goto out;
  int64_t deadline = ef_mono_ms() + (int64_t)((a.c.timeout_s > 0 ? a.c.timeout_s : 2.0) * 1000);
  if (!a.no_announce &&
      con_link_announce(link, a.c.prefix, EF_ANNOUNCE_DEVICES, NULL, CON_CONNECT_TIMEOUT_S) != EF_OK)
    goto out;
  if (!collect_states(link, &a, &t, deadline)) goto nomem;
  /* t.rows is NULL when no device answered: qsort must not see it (C11
   * 7.22.5 wants a valid pointer even for 0 elements). */
  if (t.n > 1) qsort(t.rows, t.n, sizeof *t.rows, by_device);
  if (a.json) {
    rc = print_json(&t);
  } else if (t.n == 0) {
    printf("no device has published a state under %s/devices/\n", a.c.prefix);
    rc = CON_OK;
  } else {
    bool tty = con_term_is_tty();
    if (!print_devices(&t, tty) || !print_job_counts(&t, tty)) goto nomem;
    rc = CON_OK;
  }
  goto out;
nomem:
  rc = con_fail(EF_ERR_NOMEM, NULL);
out:
  con_link_close(link);
  for (size_t i = 0; i < t.n; i++) free(t.rows[i].payload);
  free(t.rows);
  return rc;
}
