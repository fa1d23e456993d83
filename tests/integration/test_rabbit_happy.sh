#!/usr/bin/env bash
# test_fleet_happy.sh's scenario with RabbitMQ's MQTT plugin as the broker
# (EF_BROKER=rabbitmq, lib_rabbitmq.sh): a job succeeds and the simulator runs
# the served image, duplicate and conflicting deliveries, the retained job
# result, an announce request, an installed image, the offline state; every
# state read from the broker on the exact state topic (RabbitMQ does not send
# retained messages to wildcard subscriptions; none is used). Skips (77)
# without rabbitmq-server. Not named test_fleet_*: CI runs those under
# valgrind, and a RabbitMQ start costs about 10 s (docs/brokers.md).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib_rabbitmq.sh"
rabbitmq_installed || {
  echo "SKIP: rabbitmq-server is not installed (tools/deps.sh installs it)" >&2
  exit 77
}
EF_BROKER=rabbitmq exec bash "$here/test_fleet_happy.sh"
