#!/usr/bin/env bash
# Local storage/messaging engines for development and tests, without Docker or systemd.
#
#   scripts/engines.sh up     [engine...]   start (idempotent) and wait until each really answers
#   scripts/engines.sh down   [engine...]   stop what this script started, wait until gone
#   scripts/engines.sh status [engine...]   engine, pid, port, state, RSS, version;
#                                           exit 0 only when every engine named is up
#   engines: etcd redis kafka cassandra (default: all)
#
# Everything lives under .engines/ in the repo root (CHAT_ENGINES_DIR overrides):
#   .engines/<engine>/{data,logs,conf,lib}, .engines/<engine>/<engine>.pid
#   .engines/engines.env   addresses for tests/apps (read by test/support/engines.ts)
#
# Where the engines come from (only package registries are reachable here):
#   etcd, Redis      Debian packages etcd-server/etcd-client, redis-server/redis-tools
#                    (apt-get install when the binaries are missing)
#   Kafka 3.9.x      jars from Maven Central (scripts/engines/kafka/pom.xml), KRaft mode
#   Cassandra 5.0.x  jars from Maven Central (scripts/engines/cassandra/pom.xml), Java 17
#
# Ports (env vars; defaults deliberately not the engines' usual ports so they cannot
# collide with system services). Everything binds 127.0.0.1 only.
#   CHAT_ETCD_PORT=23790  CHAT_ETCD_PEER_PORT=23800  CHAT_REDIS_PORT=63790
#   CHAT_KAFKA_PORT=19092  CHAT_KAFKA_CONTROLLER_PORT=19093
#   CHAT_CASSANDRA_PORT=19042  CHAT_CASSANDRA_STORAGE_PORT=17000  CHAT_CASSANDRA_JMX_PORT=17199
# Other knobs: CHAT_ENGINES_TIMEOUT (s per engine, default 180: from its first start step,
#   Kafka's storage format, until it answers; fetching jars is not counted), CHAT_KAFKA_HEAP (512m),
#   CHAT_CASSANDRA_HEAP (1G), CHAT_ENGINES_TIMER_SLACK_US (1000; 0 keeps the kernel's 50 µs).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=$ROOT/scripts/engines
ENGINES_DIR=${CHAT_ENGINES_DIR:-$ROOT/.engines}
ALL_ENGINES=(etcd redis kafka cassandra)

ETCD_PORT=${CHAT_ETCD_PORT:-23790}
ETCD_PEER_PORT=${CHAT_ETCD_PEER_PORT:-23800}
REDIS_PORT=${CHAT_REDIS_PORT:-63790}
KAFKA_PORT=${CHAT_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${CHAT_KAFKA_CONTROLLER_PORT:-19093}
CASSANDRA_PORT=${CHAT_CASSANDRA_PORT:-19042}
CASSANDRA_STORAGE_PORT=${CHAT_CASSANDRA_STORAGE_PORT:-17000}
CASSANDRA_JMX_PORT=${CHAT_CASSANDRA_JMX_PORT:-17199}
# SimpleSnitch always names the local data centre "datacenter1".
CASSANDRA_DC=datacenter1
TIMEOUT=${CHAT_ENGINES_TIMEOUT:-180}
# Bash arithmetic takes a word for a variable (0) and "90s" for a syntax error: either stopped an engine at once.
if [[ ! $TIMEOUT =~ ^[1-9][0-9]*$ ]]; then
  echo "engines: CHAT_ENGINES_TIMEOUT must be a whole number of seconds, at least 1, got '$TIMEOUT'" >&2
  exit 2
fi
TIMER_SLACK_US=${CHAT_ENGINES_TIMER_SLACK_US:-1000}
if [[ ! $TIMER_SLACK_US =~ ^[0-9]+$ ]]; then
  echo "engines: CHAT_ENGINES_TIMER_SLACK_US must be a whole number of microseconds, got '$TIMER_SLACK_US'" >&2
  exit 2
fi
KAFKA_HEAP=${CHAT_KAFKA_HEAP:-512m}
CASSANDRA_HEAP=${CHAT_CASSANDRA_HEAP:-1G}
HOST=127.0.0.1

# ---------------------------------------------------------------------------- helpers

say() { printf '%s\n' "$*"; }
warn() { printf '%s\n' "$*" >&2; }
die() { warn "error: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# When the engine being started must answer by (a `now` time): set by engine_up, one per
# engine (each starts in a subshell of its own). Every step of its start is cut off there.
DEADLINE=
start_clock() { DEADLINE=$(awk -v n="$(now)" -v t="$TIMEOUT" 'BEGIN { printf "%.3f", n + t }'); }
# Seconds left until the deadline, at least 0.1 (timeout(1) takes 0 for "never").
left() { awk -v d="$DEADLINE" -v n="$(now)" 'BEGIN { l = d - n; printf "%.1f", (l > 0.1 ? l : 0.1) }'; }
past_deadline() { awk -v d="$DEADLINE" -v n="$(now)" 'BEGIN { exit !(n >= d) }'; }
# Runs a command of a start step, killed at the deadline (exit 124): a probe or Kafka's
# storage format that hangs would otherwise run past CHAT_ENGINES_TIMEOUT by its own limits.
bounded() { timeout -k 2 "$(left)" "$@"; }
# The line a start past the deadline ends with: which engine, where to look, what to raise.
# timed_out ENGINE WHAT [THEN]
timed_out() {
  warn "$1: $2 within CHAT_ENGINES_TIMEOUT=${TIMEOUT}s${3:-} (logs: $(out_file "$1") and $(log_file "$1")); raise CHAT_ENGINES_TIMEOUT if it only needs longer"
}

# True when something accepts TCP connections on 127.0.0.1:$1 (bash's /dev/tcp, no nc needed).
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

engine_dir() { printf '%s/%s' "$ENGINES_DIR" "$1"; }
pid_file() { printf '%s/%s/%s.pid' "$ENGINES_DIR" "$1" "$1"; }
log_file() {
  case $1 in
    etcd | redis) printf '%s/logs/%s.log' "$(engine_dir "$1")" "$1" ;;
    kafka) printf '%s/logs/server.log' "$(engine_dir kafka)" ;;
    cassandra) printf '%s/logs/system.log' "$(engine_dir cassandra)" ;;
  esac
}
# Where the process's own stdout/stderr go (JVM crashes, bad options, ...).
out_file() { printf '%s/logs/stdout.log' "$(engine_dir "$1")"; }

main_port() {
  case $1 in
    etcd) say "$ETCD_PORT" ;; redis) say "$REDIS_PORT" ;;
    kafka) say "$KAFKA_PORT" ;; cassandra) say "$CASSANDRA_PORT" ;;
  esac
}
all_ports() {
  case $1 in
    etcd) say "$ETCD_PORT $ETCD_PEER_PORT" ;;
    redis) say "$REDIS_PORT" ;;
    kafka) say "$KAFKA_PORT $KAFKA_CONTROLLER_PORT" ;;
    cassandra) say "$CASSANDRA_PORT $CASSANDRA_STORAGE_PORT $CASSANDRA_JMX_PORT" ;;
  esac
}

# A pid counts as alive unless it is gone or a zombie: PID 1 on these machines does not
# necessarily reap orphans, so a stopped engine can linger as a zombie that `kill -0` still
# "finds".
pid_alive() {
  local state
  [[ -r /proc/$1/stat ]] || return 1
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

# Prints the pid of the engine this script started, if it is still running. The pid file
# alone is not trusted (pids get reused): the process's command line must mention this
# engine's directory under .engines/.
running_pid() {
  local pf pid
  pf=$(pid_file "$1")
  [[ -s $pf ]] || return 1
  pid=$(<"$pf")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  pid_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$(engine_dir "$1")" || return 1
  say "$pid"
}

# Starts "$@" detached (own session, so it outlives this script and a Ctrl-C here), with
# stdin closed and output appended to the engine's stdout.log; the pid is the engine's own
# (bash execs it). fd 9 (the script's lock) is closed so the engine does not hold it.
#
# The engine gets a timer slack of CHAT_ENGINES_TIMER_SLACK_US (inherited by every thread
# it starts). Cassandra's request pools keep a worker spinning between requests, parked
# for 10 µs at a time; with the kernel's 50 µs slack that is tens of thousands of wake-ups
# a second, which made a lightly loaded node cost 1 to 3 ms of CPU per request
# (bench/cassandra-cost.ts) and took most of a core on this 2-core machine. With 1 ms a
# request costs about a third of that; the price is about a third of a node's flat-out
# throughput, which nothing on one machine comes near (figures in docs/capacity.md).
start_detached() {
  local engine=$1 pf
  shift
  pf=$(pid_file "$engine")
  rm -f "$pf"
  # shellcheck disable=SC2016
  SLACK_NS=$((TIMER_SLACK_US * 1000)) setsid bash -c '
    echo $$ >"$0"
    # Needs CAP_SYS_NICE for another process, never for itself; an old kernel lacks the file.
    if ((SLACK_NS > 0)); then echo "$SLACK_NS" >"/proc/$$/timerslack_ns" 2>/dev/null || true; fi
    unset SLACK_NS
    exec "$@"' "$pf" "$@" </dev/null >>"$(out_file "$engine")" 2>&1 9>&- &
  local i
  for i in $(seq 50); do [[ -s $pf ]] && return 0; sleep 0.1; done
  die "$engine: could not start (no pid file)"
}

show_log_tail() {
  local engine=$1 f
  for f in "$(out_file "$engine")" "$(log_file "$engine")"; do
    [[ -s $f ]] || continue
    warn "----- last lines of $f -----"
    tail -n 40 "$f" >&2
  done
}

# Polls "$engine"_ready until it succeeds, the process dies, or the deadline passes.
wait_ready() {
  local engine=$1 pid=$2 interval=0.3
  [[ $engine == kafka || $engine == cassandra ]] && interval=1
  while true; do
    if "${engine}_ready"; then return 0; fi
    if ! pid_alive "$pid"; then
      warn "$engine: process $pid exited during start-up"
      show_log_tail "$engine"
      return 1
    fi
    if past_deadline; then
      show_log_tail "$engine"
      timed_out "$engine" "no answer on port $(main_port "$engine") from pid $pid" ", so it is stopped"
      stop_engine "$engine" >/dev/null 2>&1 || true
      return 1
    fi
    sleep "$(awk -v i="$interval" -v l="$(left)" 'BEGIN { print (l < i ? l : i) }')"
  done
}

# Installs the Debian packages whose binaries are missing (etcd/redis and tools, Maven).
ensure_packages() {
  local need=() e
  for e in "$@"; do
    case $e in
      etcd)
        command -v etcd >/dev/null || need+=(etcd-server)
        command -v etcdctl >/dev/null || need+=(etcd-client)
        ;;
      redis)
        command -v redis-server >/dev/null || need+=(redis-server)
        command -v redis-cli >/dev/null || need+=(redis-tools)
        ;;
      kafka | cassandra) command -v mvn >/dev/null || need+=(maven) ;;
    esac
  done
  ((${#need[@]})) || return 0
  local sudo=()
  ((EUID == 0)) || sudo=(sudo)
  say "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Try without refreshing the package lists first (fast when they are recent enough).
  "${sudo[@]}" apt-get install -y -q "${need[@]}" >/dev/null 2>&1 ||
    { "${sudo[@]}" apt-get update -q >/dev/null && "${sudo[@]}" apt-get install -y -q "${need[@]}" >/dev/null; } ||
    die "apt-get install ${need[*]} failed"
}

# Cassandra 5.0 runs on Java 11 or 17 only (not 21/25); Kafka 3.9 is fine on 17 too, so
# both use the same JVM.
JAVA17=
find_java17() {
  [[ -n $JAVA17 ]] && return 0
  local c
  for c in "${JAVA_HOME:+$JAVA_HOME/bin/java}" /usr/lib/jvm/java-17-openjdk-*/bin/java \
    /usr/lib/jvm/*-17*/bin/java /usr/lib/jvm/*17*/bin/java "$(command -v java || true)"; do
    [[ -n $c && -x $c ]] || continue
    if "$c" -version 2>&1 | head -n 1 | grep -Eq 'version "17[."]'; then
      JAVA17=$c
      return 0
    fi
  done
  die "no Java 17 found (looked at JAVA_HOME, /usr/lib/jvm/*17*, java on PATH); Cassandra 5.0 needs 17: apt-get install openjdk-17-jdk-headless"
}

# Copies an engine's runtime jars from Maven (~/.m2 caches them between runs) into
# .engines/<engine>/lib, only when lib is missing or the pom changed since (hash stored).
ensure_jars() {
  local engine=$1 pom=$SRC/$1/pom.xml lib hash
  lib=$(engine_dir "$engine")/lib
  hash=$(sha256sum "$pom" | cut -d' ' -f1)
  if [[ -f $lib/.pom.sha256 && $(<"$lib/.pom.sha256") == "$hash" ]]; then
    return 0
  fi
  local t0 mvnlog
  t0=$(now)
  mvnlog=$(engine_dir "$engine")/logs/maven.log
  say "fetching jars with Maven ($pom)"
  rm -rf "$lib.tmp"
  # One Maven at a time: Maven 3.8 does not lock its local repository, and Kafka and
  # Cassandra share artifacts.
  if ! flock -w 900 "$ENGINES_DIR/.maven.lock" \
    mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$lib.tmp" >"$mvnlog" 2>&1; then
    tail -n 30 "$mvnlog" >&2
    die "$engine: Maven could not fetch the jars (log: $mvnlog)"
  fi
  say "$hash" >"$lib.tmp/.pom.sha256"
  rm -rf "$lib"
  mv "$lib.tmp" "$lib"
  say "jars ready in $(elapsed "$t0")s ($(find "$lib" -name '*.jar' | wc -l) jars)"
}

# Replaces @NAME@ placeholders: render TEMPLATE OUT NAME=value...
render() {
  local tpl=$1 out=$2 expr=() kv
  shift 2
  for kv in "$@"; do expr+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  sed "${expr[@]}" "$tpl" >"$out.tmp"
  if grep -v '^#' "$out.tmp" | grep -q '@[A-Z_]*@'; then die "unrendered placeholder in $out"; fi
  mv "$out.tmp" "$out"
}

# ---------------------------------------------------------------------------- etcd

etcd_version() { etcd --version 2>/dev/null | awk '/etcd Version/ { print $3 }'; }
etcd_prepare() { ensure_packages etcd; }
etcd_start() {
  local d
  d=$(engine_dir etcd)
  start_detached etcd etcd --name chatd-dev --data-dir "$d/data" \
    --listen-client-urls "http://$HOST:$ETCD_PORT" --advertise-client-urls "http://$HOST:$ETCD_PORT" \
    --listen-peer-urls "http://$HOST:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://$HOST:$ETCD_PEER_PORT" \
    --initial-cluster "chatd-dev=http://$HOST:$ETCD_PEER_PORT" \
    --logger zap --log-outputs "$(log_file etcd)"
}
etcd_ready() {
  bounded env ETCDCTL_API=3 etcdctl --endpoints "$HOST:$ETCD_PORT" --dial-timeout 1s --command-timeout 2s \
    endpoint health >/dev/null 2>&1
}

# ---------------------------------------------------------------------------- redis

redis_version() { redis-server --version 2>/dev/null | sed -n 's/.* v=\([^ ]*\).*/\1/p'; }
redis_prepare() { ensure_packages redis; }
redis_start() {
  local d
  d=$(engine_dir redis)
  # A cache/pub-sub for dev and tests: no RDB snapshots, no AOF.
  start_detached redis redis-server --port "$REDIS_PORT" --bind "$HOST" --protected-mode no \
    --save "" --appendonly no --dir "$d/data" --daemonize no --set-proc-title no --logfile "$(log_file redis)"
}
redis_ready() {
  [[ $(bounded redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

# ---------------------------------------------------------------------------- kafka

kafka_version() {
  local j
  j=$(compgen -G "$(engine_dir kafka)/lib/kafka_2.13-*.jar" | head -n 1) || true
  [[ -n $j ]] && basename "$j" .jar | sed 's/^kafka_2.13-//'
}
kafka_prepare() {
  local d
  d=$(engine_dir kafka)
  find_java17
  ensure_jars kafka
  render "$SRC/kafka/server.properties.in" "$d/conf/server.properties" \
    PORT="$KAFKA_PORT" CONTROLLER_PORT="$KAFKA_CONTROLLER_PORT" DATA_DIR="$d/data"
  cp "$SRC/kafka/log4j.properties" "$d/conf/log4j.properties"
}
kafka_start() {
  local d rc=0
  d=$(engine_dir kafka)
  # KRaft refuses to start on unformatted storage ("No readable meta.properties files");
  # format once, with a fresh cluster id (Kafka's base64url UUID form, no leading '-').
  # A JVM of its own, so part of the start's time: a slow one left the broker less of it.
  if [[ ! -f $d/data/meta.properties ]]; then
    local id
    id=$(node -e "let i;do{i=require('crypto').randomBytes(16).toString('base64url')}while(i.startsWith('-'));console.log(i)")
    say "formatting KRaft storage (cluster id $id)"
    bounded "$JAVA17" -Xmx256m -Dlog4j.configuration="file:$d/conf/log4j.properties" -Dkafka.logs.dir="$d/logs" \
      -cp "$d/lib/*" kafka.tools.StorageTool format -t "$id" -c "$d/conf/server.properties" \
      >>"$(out_file kafka)" 2>&1 || rc=$?
    if ((rc == 124 || rc == 137)); then
      timed_out kafka "formatting its storage did not finish"
      exit 1
    fi
    if ((rc != 0)); then
      tail -n 20 "$(out_file kafka)" >&2
      die "kafka: formatting storage failed"
    fi
  fi
  # JVM flags as in Kafka's bin/kafka-run-class.sh / kafka-server-start.sh.
  start_detached kafka "$JAVA17" "-Xms$KAFKA_HEAP" "-Xmx$KAFKA_HEAP" \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$d/conf/log4j.properties" -Dkafka.logs.dir="$d/logs" \
    -cp "$d/lib/*" kafka.Kafka "$d/conf/server.properties"
}
kafka_ready() {
  port_open "$KAFKA_PORT" && bounded node "$SRC/check.mjs" kafka "$HOST:$KAFKA_PORT" >/dev/null 2>&1
}

# ---------------------------------------------------------------------------- cassandra

cassandra_version() {
  local j
  j=$(compgen -G "$(engine_dir cassandra)/lib/cassandra-all-*.jar" | head -n 1) || true
  [[ -n $j ]] && basename "$j" .jar | sed 's/^cassandra-all-//'
}
cassandra_prepare() {
  local d
  d=$(engine_dir cassandra)
  find_java17
  ensure_jars cassandra
  mkdir -p "$d/data/data" "$d/data/commitlog" "$d/data/saved_caches" "$d/data/hints" "$d/data/cdc_raw"
  render "$SRC/cassandra/cassandra.yaml.in" "$d/conf/cassandra.yaml" \
    PORT="$CASSANDRA_PORT" STORAGE_PORT="$CASSANDRA_STORAGE_PORT" DATA_DIR="$d/data"
  cp "$SRC/cassandra/logback.xml" "$d/conf/logback.xml"
}
cassandra_start() {
  local d jamm opts=()
  d=$(engine_dir cassandra)
  jamm=$(compgen -G "$d/lib/jamm-*.jar" | head -n 1) || die "cassandra: no jamm jar in $d/lib"
  # Options from Cassandra's jvm-server.options / jvm17-server.options (curated copy).
  mapfile -t opts < <(grep -E '^-' "$SRC/cassandra/jvm-server.options")
  start_detached cassandra "$JAVA17" "-Xms$CASSANDRA_HEAP" "-Xmx$CASSANDRA_HEAP" "${opts[@]}" \
    -javaagent:"$jamm" \
    -Dcassandra-foreground=yes \
    -Dcassandra.config="file://$d/conf/cassandra.yaml" \
    -Dcassandra.storagedir="$d/data" -Dcassandra.logdir="$d/logs" \
    -Dlogback.configurationFile="file://$d/conf/logback.xml" \
    -Dcassandra.jmx.local.port="$CASSANDRA_JMX_PORT" -Dcom.sun.management.jmxremote.rmi.port="$CASSANDRA_JMX_PORT" \
    -cp "$d/conf:$d/lib/*" org.apache.cassandra.service.CassandraDaemon
}
cassandra_ready() {
  port_open "$CASSANDRA_PORT" &&
    bounded node "$SRC/check.mjs" cassandra "$HOST:$CASSANDRA_PORT" "$CASSANDRA_DC" >/dev/null 2>&1
}

# ---------------------------------------------------------------------------- commands

# Brings one engine up and prints how long it took. Runs in a background subshell per
# engine, so engines start in parallel.
engine_up() {
  local engine=$1 t0 pid port
  t0=$(now)
  port=$(main_port "$engine")
  mkdir -p "$(engine_dir "$engine")"/{data,logs,conf}
  start_clock
  if pid=$(running_pid "$engine"); then
    if "${engine}_ready"; then
      say "already running (pid $pid, port $port)"
      return 0
    fi
    say "already started (pid $pid), waiting for it to answer"
    start_clock
  else
    local p
    for p in $(all_ports "$engine"); do
      if port_open "$p"; then
        die "$engine: port $p on $HOST is taken by a process this script did not start; stop it or set the CHAT_*_PORT variables"
      fi
    done
    "${engine}_prepare"
    local t1
    t1=$(now)
    # The budget is the start's own (Kafka's format, the launch, the wait), not Maven's fetch.
    start_clock
    "${engine}_start"
    pid=$(running_pid "$engine") || { show_log_tail "$engine"; die "$engine: exited right after start"; }
    say "started (pid $pid), waiting for it to answer"
    wait_ready "$engine" "$pid" || return 1
    say "up in $(elapsed "$t0")s total, process answering $(elapsed "$t1")s after launch (pid $pid, port $port, $(rss_mb "$pid") MB RSS)"
    return 0
  fi
  wait_ready "$engine" "$pid" || return 1
  say "up in $(elapsed "$t0")s (pid $pid, port $port)"
}

write_env() {
  local f=$ENGINES_DIR/engines.env
  cat >"$f.tmp" <<EOF
# Written by scripts/engines.sh up; read by test/support/engines.ts. Variables already set
# in the environment win over these.
CHAT_ETCD_ENDPOINTS=$HOST:$ETCD_PORT
CHAT_REDIS_URL=redis://$HOST:$REDIS_PORT
CHAT_KAFKA_BROKERS=$HOST:$KAFKA_PORT
CHAT_CASSANDRA_CONTACT_POINTS=$HOST:$CASSANDRA_PORT
CHAT_CASSANDRA_DC=$CASSANDRA_DC
EOF
  mv "$f.tmp" "$f"
}

cmd_up() {
  local engines=("$@") e t0 failed=()
  t0=$(now)
  mkdir -p "$ENGINES_DIR"
  # The Kafka and Cassandra readiness probes are Node clients: without them every probe
  # fails, which would read as an engine not answering and stop one that is serving.
  for e in "${engines[@]}"; do
    if [[ $e == kafka || $e == cassandra ]] && ! node "$SRC/check.mjs" clients >/dev/null 2>&1; then
      die "the readiness probe ($SRC/check.mjs) cannot load kafkajs and cassandra-driver: run npm install (or npm ci) in $ROOT first"
    fi
  done
  # Packages are installed up front, one apt-get at a time (dpkg has a single lock).
  ensure_packages "${engines[@]}"
  for e in "${engines[@]}"; do [[ $e == kafka || $e == cassandra ]] && find_java17; done
  # Slowest first, so Cassandra gets the Maven lock and the CPU before Kafka.
  local order=() pids=()
  for e in cassandra kafka etcd redis; do [[ " ${engines[*]} " == *" $e "* ]] && order+=("$e"); done
  for e in "${order[@]}"; do
    (
      set -o pipefail
      engine_up "$e" 2>&1 | sed -u "s/^/[$e] /"
    ) &
    pids+=($!)
  done
  local i
  for i in "${!order[@]}"; do
    wait "${pids[$i]}" || failed+=("${order[$i]}")
  done
  write_env
  if ((${#failed[@]})); then
    die "failed to start: ${failed[*]} (logs under $ENGINES_DIR/<engine>/logs)"
  fi
  say "all up in $(elapsed "$t0")s: ${order[*]}; addresses in $ENGINES_DIR/engines.env"
}

# Sends SIGTERM (clean shutdown: Cassandra drains, Kafka does a controlled shutdown), then
# SIGKILL after 60 s, and returns once the process is gone.
stop_engine() {
  local engine=$1 pid i
  if ! pid=$(running_pid "$engine"); then
    rm -f "$(pid_file "$engine")"
    say "[$engine] not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 600); do
    pid_alive "$pid" || break
    ((i == 600)) && { warn "[$engine] still running after 60s, sending SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; }
    sleep 0.1
  done
  for i in $(seq 100); do pid_alive "$pid" || break; sleep 0.1; done
  pid_alive "$pid" && die "[$engine] pid $pid would not die"
  # Best effort: give PID 1 a moment to reap the zombie, so `pgrep` shows nothing of ours.
  for i in $(seq 50); do [[ -e /proc/$pid ]] || break; sleep 0.1; done
  rm -f "$(pid_file "$engine")"
  say "[$engine] stopped (pid $pid)"
}

cmd_down() {
  local e pids=() rc=0
  # In parallel: Cassandra's drain takes a few seconds, no need to wait for it serially.
  for e in "$@"; do
    stop_engine "$e" &
    pids+=($!)
  done
  for e in "${pids[@]}"; do wait "$e" || rc=1; done
  return "$rc"
}

rss_mb() { ps -o rss= -p "$1" 2>/dev/null | awk '{ printf "%d", $1 / 1024 }'; }

cmd_status() {
  local e pid port state rss rc=0
  printf '%-10s %-8s %-6s %-24s %-8s %s\n' ENGINE PID PORT STATE RSS_MB VERSION
  for e in "$@"; do
    port=$(main_port "$e")
    rss=-
    if pid=$(running_pid "$e"); then
      rss=$(rss_mb "$pid")
      if port_open "$port"; then state=up; else state=starting; fi
    else
      pid=-
      if port_open "$port"; then state="down (port used by other)"; else state=down; fi
    fi
    [[ $state == up ]] || rc=1
    printf '%-10s %-8s %-6s %-24s %-8s %s\n' "$e" "$pid" "$port" "$state" "$rss" "$("${e}_version" 2>/dev/null || true)"
  done
  # Scripts use the exit code (scripts/test.sh starts the engines when this fails).
  return "$rc"
}

usage() {
  sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 2
}

main() {
  (($#)) || usage
  local cmd=$1 e
  shift
  local engines=("$@")
  ((${#engines[@]})) || engines=("${ALL_ENGINES[@]}")
  for e in "${engines[@]}"; do
    [[ " ${ALL_ENGINES[*]} " == *" $e "* ]] || die "unknown engine '$e' (known: ${ALL_ENGINES[*]})"
  done
  case $cmd in
    up | down)
      mkdir -p "$ENGINES_DIR"
      # One up/down at a time per .engines directory (fd 9 is closed for the engines).
      exec 9>"$ENGINES_DIR/.lock"
      flock -w 900 9 || die "another engines.sh up/down is still running"
      "cmd_$cmd" "${engines[@]}"
      ;;
    status) cmd_status "${engines[@]}" ;;
    *) usage ;;
  esac
}

main "$@"
