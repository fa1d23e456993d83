/*
 * mqtt_probe: drives one espfleet MQTT session for the integration tests.
 *
 * Prints one line per event on stdout (line-buffered), so a test can wait
 * for "connected reconnect=1" or read the received messages:
 *   connected reconnect=0|1
 *   disconnected CAUSE
 *   recv TOPIC PAYLOAD
 *   published N
 *   flushed
 * Exit codes: 0 done, 2 bad usage or options, 3 timeout, 4 publish refused,
 * 5 flush timed out.
 */
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "espfleet/clock.h"
#include "espfleet/log.h"
#include "espfleet/mqtt.h"

static atomic_int received;
static atomic_bool until_seen;
static atomic_bool stop_requested;
static const char *until_payload;

static void on_message(void *arg, const char *topic, const void *payload, size_t len) {
  printf("recv %s %.*s\n", topic, (int)len, (const char *)payload);
  if (until_payload && strlen(until_payload) == len && memcmp(until_payload, payload, len) == 0)
    atomic_store(&until_seen, true);
  atomic_fetch_add(&received, 1);
}

static void on_connected(void *arg, bool reconnect) { printf("connected reconnect=%d\n", reconnect ? 1 : 0); }

static void on_disconnected(void *arg, const char *cause) { printf("disconnected %s\n", cause); }

static void on_signal(int sig) { atomic_store(&stop_requested, true); }

static double now_s(void) { return (double)ef_mono_ms() / 1000.0; }

static void usage(void) {
  fprintf(stderr,
          "usage: mqtt_probe --uri URI [--id ID] [--sub TOPIC]... [--wait-connected]\n"
          "  [--pub-topic T --count N [--rate HZ] [--qos Q] [--retain | --retain-last]]\n"
          "  [--expect N] [--until PAYLOAD] [--run-for S] [--timeout S] [--flush-ms MS]\n"
          "  [--will-topic T [--will-payload P] [--will-retain]] [--ca F] [--cert F] [--key F]\n"
          "  [--clean] [--reconnect-min-ms MS] [--reconnect-max-ms MS] [--max-buffered N]\n");
}

int main(int argc, char **argv) {
  enum {
    O_URI = 256,
    O_ID,
    O_SUB,
    O_WAIT,
    O_PUBT,
    O_COUNT,
    O_RATE,
    O_QOS,
    O_RETAIN,
    O_RETAIN_LAST,
    O_EXPECT,
    O_UNTIL,
    O_RUN_FOR,
    O_TIMEOUT,
    O_FLUSH,
    O_WILL_T,
    O_WILL_P,
    O_WILL_R,
    O_CA,
    O_CERT,
    O_KEY,
    O_CLEAN,
    O_RMIN,
    O_RMAX,
    O_MAXBUF,
  };
  static const struct option longopts[] = {
      {"uri", required_argument, NULL, O_URI},
      {"id", required_argument, NULL, O_ID},
      {"sub", required_argument, NULL, O_SUB},
      {"wait-connected", no_argument, NULL, O_WAIT},
      {"pub-topic", required_argument, NULL, O_PUBT},
      {"count", required_argument, NULL, O_COUNT},
      {"rate", required_argument, NULL, O_RATE},
      {"qos", required_argument, NULL, O_QOS},
      {"retain", no_argument, NULL, O_RETAIN},
      {"retain-last", no_argument, NULL, O_RETAIN_LAST},
      {"expect", required_argument, NULL, O_EXPECT},
      {"until", required_argument, NULL, O_UNTIL},
      {"run-for", required_argument, NULL, O_RUN_FOR},
      {"timeout", required_argument, NULL, O_TIMEOUT},
      {"flush-ms", required_argument, NULL, O_FLUSH},
      {"will-topic", required_argument, NULL, O_WILL_T},
      {"will-payload", required_argument, NULL, O_WILL_P},
      {"will-retain", no_argument, NULL, O_WILL_R},
      {"ca", required_argument, NULL, O_CA},
      {"cert", required_argument, NULL, O_CERT},
      {"key", required_argument, NULL, O_KEY},
      {"clean", no_argument, NULL, O_CLEAN},
      {"reconnect-min-ms", required_argument, NULL, O_RMIN},
      {"reconnect-max-ms", required_argument, NULL, O_RMAX},
      {"max-buffered", required_argument, NULL, O_MAXBUF},
      {NULL, 0, NULL, 0},
  };
  ef_mqtt_options o = {0};
  ef_mqtt_subscription subs[EF_MQTT_MAX_SUBSCRIPTIONS];
  size_t n_subs = 0;
  const char *pub_topic = NULL;
  int count = 0, qos = 1, expect = -1, flush_ms = 10000;
  double rate = 10, timeout_s = 30, run_for_s = 0;
  bool wait_connected = false, retain = false, retain_last = false;
  int opt, rc = 2;
  ef_mqtt *s = NULL;

  o.client_id = "mqtt_probe";
  while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (opt) {
    case O_URI: o.uri = optarg; break;
    case O_ID: o.client_id = optarg; break;
    case O_SUB:
      if (n_subs == EF_MQTT_MAX_SUBSCRIPTIONS) goto bad_usage;
      subs[n_subs].topic = optarg;
      subs[n_subs++].qos = 1;
      break;
    case O_WAIT: wait_connected = true; break;
    case O_PUBT: pub_topic = optarg; break;
    case O_COUNT: count = atoi(optarg); break;
    case O_RATE: rate = atof(optarg); break;
    case O_QOS: qos = atoi(optarg); break;
    case O_RETAIN: retain = true; break;
    case O_RETAIN_LAST: retain_last = true; break;
    case O_EXPECT: expect = atoi(optarg); break;
    case O_UNTIL: until_payload = optarg; break;
    case O_RUN_FOR: run_for_s = atof(optarg); break;
    case O_TIMEOUT: timeout_s = atof(optarg); break;
    case O_FLUSH: flush_ms = atoi(optarg); break;
    case O_WILL_T:
      o.will_topic = optarg;
      o.will_qos = 1;
      break;
    case O_WILL_P: o.will_payload = optarg; break;
    case O_WILL_R: o.will_retain = true; break;
    case O_CA: o.ca_file = optarg; break;
    case O_CERT: o.cert_file = optarg; break;
    case O_KEY: o.key_file = optarg; break;
    case O_CLEAN: o.clean_session = true; break;
    case O_RMIN: o.reconnect_min_ms = atoi(optarg); break;
    case O_RMAX: o.reconnect_max_ms = atoi(optarg); break;
    case O_MAXBUF: o.max_buffered = atoi(optarg); break;
    default: goto bad_usage;
    }
  }
  if (!o.uri || optind != argc || (count > 0 && !pub_topic) || rate <= 0) goto bad_usage;

  setvbuf(stdout, NULL, _IOLBF, 0);
  ef_log_set_ident("mqtt_probe");
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  o.subscriptions = subs;
  o.n_subscriptions = n_subs;
  o.on_message = on_message;
  o.on_connected = on_connected;
  o.on_disconnected = on_disconnected;

  double deadline = now_s() + timeout_s;
  ef_status st = EF_STATUS_INIT;
  if (ef_mqtt_start(&o, &s, &st) != EF_OK) {
    char line[EF_STATUS_DETAIL_MAX + 64];
    fprintf(stderr, "mqtt_probe: cannot start the MQTT session: %s\n",
            ef_status_text(&st, line, sizeof line));
    goto out; /* rc 2 */
  }

  rc = 3;
  while (wait_connected && !ef_mqtt_is_connected(s)) {
    if (now_s() > deadline || atomic_load(&stop_requested)) goto out;
    ef_sleep_ms(20);
  }

  for (int i = 1; i <= count; i++) {
    char payload[64];
    int n = snprintf(payload, sizeof payload, "{\"seq\":%d,\"of\":%d}", i, count);
    bool r = retain || (retain_last && i == count);
    ef_status pst = EF_STATUS_INIT;
    if (ef_mqtt_publish(s, pub_topic, payload, (size_t)n, qos, r, &pst) != EF_OK) {
      fprintf(stderr, "mqtt_probe: publish %d refused: %s\n", i, pst.detail);
      rc = 4;
      goto out;
    }
    if (i < count) ef_sleep_ms((long)(1000.0 / rate));
  }
  if (count > 0) {
    printf("published %d\n", count);
    double left_ms = (deadline - now_s()) * 1000.0;
    int budget = flush_ms < left_ms ? flush_ms : (left_ms > 0 ? (int)left_ms : 0);
    if (ef_mqtt_flush(s, budget, NULL) != EF_OK) {
      rc = 5;
      goto out;
    }
    printf("flushed\n");
  }

  double run_until = run_for_s > 0 ? now_s() + run_for_s : 0;
  for (;;) {
    bool want_more = (expect >= 0 && atomic_load(&received) < expect) ||
                     (until_payload && !atomic_load(&until_seen)) || (run_until > 0 && now_s() < run_until);
    if (!want_more || atomic_load(&stop_requested)) break;
    if (now_s() > deadline) goto out; /* rc 3 */
    ef_sleep_ms(20);
  }
  rc = 0;
out:
  ef_mqtt_stop(s, 2000);
  return rc;
bad_usage:
  usage();
  return 2;
}
