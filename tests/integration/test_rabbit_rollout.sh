#!/usr/bin/env bash
# The staged rollouts of test_swarm_rollout.sh (a failing canary aborts, the
# fixed release completes step by step, a controller killed with SIGKILL
# resumes) on RabbitMQ's MQTT plugin instead of mosquitto, with 5 devices: the
# controller learns device states through its announce request, since
# RabbitMQ gives retained messages to exact subscriptions only
# (docs/brokers.md). Skips without rabbitmq-server.
export EF_BROKER=rabbitmq SWARM_N=${SWARM_N:-5}
exec bash "$(dirname "$0")/test_swarm_rollout.sh"
