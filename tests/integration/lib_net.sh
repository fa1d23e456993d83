# shellcheck shell=bash
# Loopback ports for integration tests, tools/quickstart.sh and tools/bench.sh.
# Sourced by lib_mosquitto.sh and lib_nginx.sh; needs nothing but bash.

# free_port: prints a TCP port on 127.0.0.1 that nobody listens on now. It is
# picked below the kernel's ephemeral range (32768+), so outgoing connections
# do not take it meanwhile, and at random, so parallel tests rarely meet; a
# caller that may still lose the race (nginx_start) retries.
free_port() {
  local port i
  for ((i = 0; i < 200; i++)); do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  echo "free_port: no free port found" >&2
  return 1
}

# wait_for_port PORT [SECONDS] [PID]: waits until something accepts TCP
# connections on 127.0.0.1:PORT; returns 1 after SECONDS (default 5), or as
# soon as PID (the server being waited for) has exited.
wait_for_port() {
  local port=$1 deadline=$((SECONDS + ${2:-5})) pid=${3:-}
  while ((SECONDS < deadline)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    sleep 0.05
  done
  return 1
}
