#!/bin/sh
# A real single-node Apache Kafka broker (KRaft, broker + controller in one JVM) for tests and
# benches, without Docker: the jars come from Maven Central through Maven (scripts/kafka/pom.xml),
# cached outside the tracked files; each broker lives in a directory of its own.
#
#   sh scripts/kafka/kafka.sh fetch         resolve the jars into the cache (once; later runs reuse it)
#   sh scripts/kafka/kafka.sh start DIR     format DIR (first time), start the broker on free 127.0.0.1
#                                           ports, wait until it answers; prints the bootstrap address
#   sh scripts/kafka/kafka.sh stop DIR      SIGTERM by pid, SIGKILL after KAFKA_STOP_TIMEOUT seconds
#   sh scripts/kafka/kafka.sh status DIR    exit 0 and print the bootstrap address while it runs
#
# start and stop are idempotent. A second `start DIR` after `stop DIR` reuses DIR's data, cluster
# id and ports (tests stop and restart Kafka mid-test). In DIR: kafka.pid, bootstrap
# ("127.0.0.1:PORT"), ports, server.properties, log4j.properties, kafka.log, data/. An optional
# DIR/extra.properties is appended to the generated server.properties.
#
# Environment (all optional):
#   KAFKA_VERSION        3.9.1                      org.apache.kafka:kafka_2.13 version (3.9.x: pom's binding)
#   KAFKA_CACHE          <repo>/.cache/kafka        jars go to $KAFKA_CACHE/$KAFKA_VERSION/libs
#   KAFKA_PORT, KAFKA_CONTROLLER_PORT               fixed ports for a new DIR (default: free ones)
#   KAFKA_HEAP_OPTS      -Xms256m -Xmx256m (fixed)
#   KAFKA_JVM_OPTS       ZGC with one GC thread, exit on OOM, C1 JIT only (see below)
#   KAFKA_GC_LOG         1: stop-the-world pauses (GC and safepoints) to DIR/gc.log (default); 0: none
#   KAFKA_START_TIMEOUT  90   seconds until the broker must answer
#   KAFKA_STOP_TIMEOUT   30   seconds between SIGTERM and SIGKILL
#   KAFKA_WATCH_PID      a pid (e.g. the test runner's): the broker is stopped when it is gone
set -eu

HERE=$(cd "$(dirname "$0")" && pwd -P)
ROOT=$(cd "$HERE/../.." && pwd -P)
KAFKA_VERSION=${KAFKA_VERSION:-3.9.1}
KAFKA_CACHE=${KAFKA_CACHE:-$ROOT/.cache/kafka}
LIBS=$KAFKA_CACHE/$KAFKA_VERSION/libs
# A fixed heap: the broker's live set under bench/kafka is 45-75 MiB; a fixed size spares the
# collector resizing decisions and leaves ZGC (below) room to collect concurrently.
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx256m}
# C1 only (-XX:TieredStopAtLevel=1): a test or bench broker lives for seconds to minutes, and C2
# spent its whole life compiling (bench/kafka: the compiler threads used as much CPU as the
# request handlers, 40 s in), taking the 2 shared cores from the gateway under test. With C1 only
# Kafka's CPU per bridged message fell from 98-160 to 55-68 us (bench/kafka, 3 alternating rounds).
# ZGC with one GC thread (-XX:ConcGCThreads=1 -XX:ParallelGCThreads=1) instead of G1: on 2 shared
# cores G1's young pauses stop every request thread for as long as its workers wait for a core
# (bench/kafka, DIR/gc.log, load 4-10: G1 with Kafka's 20 ms pause target, 2 workers: stop-the-world p90 10-15 ms,
# p99 29-93 ms, 160-370 ms per run; G1 with 1 worker and a fixed heap worse, p90 20-48 ms), while
# ZGC's pauses do no work proportional to the heap (p90 0.47-2.2 ms; what remains are waits for
# a core to reach the safepoint), for the same CPU per message. -XX:+PerfDisableSharedMem: the JVM's
# statistics are not an mmap'd file in /tmp (its page writeback can stall a safepoint).
KAFKA_JVM_OPTS=${KAFKA_JVM_OPTS:--XX:+UseZGC -XX:ConcGCThreads=1 -XX:ParallelGCThreads=1 -XX:+PerfDisableSharedMem -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true -XX:TieredStopAtLevel=1}
KAFKA_GC_LOG=${KAFKA_GC_LOG:-1}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
# Short-lived tool JVMs (StorageTool, the readiness check): C1 only, serial GC, small heap.
TOOL_OPTS="-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true"

say () { echo "kafka.sh: $*" >&2; }
die () { say "$*"; exit 1; }

usage () {
  sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Java and Maven: there on this project's machines; installed from Debian's packages otherwise.
ensure_tools () {
  missing=""
  command -v java >/dev/null 2>&1 || missing="$missing openjdk-17-jre-headless"
  command -v mvn >/dev/null 2>&1 || missing="$missing maven"
  if [ -n "$missing" ]; then
    # shellcheck disable=SC1091
    . "$ROOT/scripts/lib.sh"
    # shellcheck disable=SC2086
    apt_install $missing
  fi
}

# Resolves the broker's jars into $LIBS once. The copy goes to a temporary folder that is renamed
# when complete, so an interrupted download is redone and never half-used.
fetch () {
  [ -f "$LIBS/.complete" ] && return 0
  ensure_tools
  mkdir -p "$KAFKA_CACHE/$KAFKA_VERSION"
  tmp="$LIBS.tmp.$$"
  mlog="$KAFKA_CACHE/$KAFKA_VERSION/maven.log"
  rm -rf "$tmp"
  say "resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION with Maven into $LIBS (first run only)"
  if ! timeout 900 mvn -q -B -Dstyle.color=never -f "$HERE/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DoutputDirectory="$tmp" -DincludeScope=runtime >"$mlog" 2>&1; then
    rm -rf "$tmp"
    cat "$mlog" >&2
    die "Maven could not resolve Kafka $KAFKA_VERSION (log above, also in $mlog)"
  fi
  [ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ] || { rm -rf "$tmp"; die "Maven copied no kafka_2.13-$KAFKA_VERSION.jar"; }
  touch "$tmp/.complete"
  if [ -f "$LIBS/.complete" ]; then rm -rf "$tmp"; else rm -rf "$LIBS"; mv "$tmp" "$LIBS"; fi
}

# The broker of DIR is running: its pid file names a live, non-zombie kafka.Kafka process that
# was started with DIR's server.properties (so a recycled pid is never mistaken for it).
pid_of () { if [ -f "$1/kafka.pid" ]; then cat "$1/kafka.pid"; fi; }
alive () {
  pid=$1
  [ -n "$pid" ] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [ -r "/proc/$pid/stat" ]; then
    state=$(sed 's/^.*) //' "/proc/$pid/stat" | cut -d' ' -f1)
    [ "$state" != Z ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "kafka.Kafka $2/server.properties" || return 1
  fi
  return 0
}

# A port that nothing listens on, below Linux's ephemeral range (32768+) so that no outgoing
# connection and no listen(0) of the tests can take it between now and the broker's bind.
free_port () {
  avoid=${1:-0}
  i=0
  while [ $i -lt 200 ]; do
    i=$((i + 1))
    p=$(( $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 22000 + 10000 ))
    [ "$p" -ne "$avoid" ] || continue
    if command -v ss >/dev/null 2>&1; then
      [ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ] || continue
    fi
    echo "$p"
    return 0
  done
  die "no free port found"
}

# A Kafka Uuid (16 random bytes, base64url without padding), never starting with '-' (which the
# tools' argument parser would take for an option; Kafka's own Uuid.randomUuid() avoids it too).
random_uuid () {
  while :; do
    u=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    case "$u" in -*) ;; *) echo "$u"; return 0 ;; esac
  done
}

write_config () {
  dir=$1 port=$2 cport=$3
  cat >"$dir/server.properties" <<EOF
# Generated by scripts/kafka/kafka.sh: single node, KRaft, broker + controller, 127.0.0.1 only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
auto.create.topics.enable=true
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
group.initial.rebalance.delay.ms=0
# A small machine (2 cores): few threads, a small log-cleaner buffer (default 128 MiB).
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
num.replica.fetchers=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
EOF
  if [ -f "$dir/extra.properties" ]; then
    echo "# from extra.properties" >>"$dir/server.properties"
    cat "$dir/extra.properties" >>"$dir/server.properties"
  fi
  cat >"$dir/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.org.apache.kafka.common.config.AbstractConfig=WARN
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
EOF
  cat >"$dir/log4j-tools.properties" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
}

# Sends SIGTERM, then SIGKILL after KAFKA_STOP_TIMEOUT seconds; returns when the process is gone.
kill_broker () {
  dir=$1 pid=$2
  alive "$pid" "$dir" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  end=$(( $(date +%s) + KAFKA_STOP_TIMEOUT ))
  while alive "$pid" "$dir" && [ "$(date +%s)" -lt "$end" ]; do sleep 0.2; done
  if alive "$pid" "$dir"; then
    say "broker $pid still running ${KAFKA_STOP_TIMEOUT}s after SIGTERM: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    end=$(( $(date +%s) + 10 ))
    while alive "$pid" "$dir" && [ "$(date +%s)" -lt "$end" ]; do sleep 0.2; done
    alive "$pid" "$dir" && die "broker $pid survived SIGKILL"
  fi
  return 0
}

stop_watcher () {
  dir=$1
  if [ -f "$dir/watcher.pid" ]; then
    w=$(cat "$dir/watcher.pid")
    # Only our watcher: a sh whose command line names this script and DIR.
    if [ -r "/proc/$w/cmdline" ] && tr '\0' ' ' <"/proc/$w/cmdline" | grep -qF "kafka.sh __watch $dir "; then
      kill -TERM "$w" 2>/dev/null || true
    fi
    rm -f "$dir/watcher.pid"
  fi
}

# Shows why a start failed: the log's errors since this start, then its last lines.
show_failure () {
  dir=$1 from=$2
  {
    echo "--- errors in $dir/kafka.log:"
    tail -c +"$from" "$dir/kafka.log" | grep -E 'ERROR|FATAL|Exception' | tail -n 15
    echo "--- last lines:"
    tail -c +"$from" "$dir/kafka.log" | tail -n 15
  } >&2
}

# Starts kafka.Kafka on DIR's server.properties and waits until it answers. Returns 1 on failure
# (the broker stopped; LAUNCH_ERR says why); LAUNCH_FROM is where this start's log begins.
launch () {
  dir=$1 port=$2 cport=$3
  LAUNCH_FROM=$(( $(wc -c <"$dir/kafka.log") + 1 ))
  echo "=== kafka.sh start $(date '+%Y-%m-%d %H:%M:%S') $KAFKA_VERSION 127.0.0.1:$port (controller $cport)" >>"$dir/kafka.log"
  # shellcheck disable=SC2086
  # Every stop-the-world pause (GC or other safepoint) with its time to reach the safepoint, written
  # off the pause by the JVM's async logger; bench/kafka reads it per run.
  gclog=""
  [ "$KAFKA_GC_LOG" = 0 ] || gclog="-Xlog:async -Xlog:gc,safepoint:file=$dir/gc.log:uptime,level,tags:filecount=2,filesize=10m"
  java $KAFKA_HEAP_OPTS $KAFKA_JVM_OPTS $gclog -Dlog4j.configuration="file:$dir/log4j.properties" \
    -Dkafka.logs.dir="$dir" -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
    </dev/null >>"$dir/kafka.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/kafka.pid"

  # Ready: the broker logged that it started (in KRaft that is after it was unfenced), then a
  # client's request to the advertised address answers (ApiVersions to every broker in the metadata).
  end=$(( $(date +%s) + KAFKA_START_TIMEOUT ))
  until tail -c +"$LAUNCH_FROM" "$dir/kafka.log" | grep -q 'Kafka Server started'; do
    if ! alive "$pid" "$dir"; then
      rm -f "$dir/kafka.pid"
      LAUNCH_ERR="broker exited during startup (log: $dir/kafka.log)"
      return 1
    fi
    if [ "$(date +%s)" -ge "$end" ]; then
      kill_broker "$dir" "$pid"
      rm -f "$dir/kafka.pid"
      LAUNCH_ERR="broker did not start within ${KAFKA_START_TIMEOUT}s (log: $dir/kafka.log)"
      return 1
    fi
    sleep 0.25
  done
  left=$(( end - $(date +%s) ))
  [ "$left" -ge 5 ] || left=5
  # shellcheck disable=SC2086
  if ! out=$(timeout "$left" java $TOOL_OPTS \
      -Dlog4j.configuration="file:$dir/log4j-tools.properties" -cp "$LIBS/*" \
      kafka.admin.BrokerApiVersionsCommand --bootstrap-server "127.0.0.1:$port" 2>&1) \
      || ! printf '%s\n' "$out" | grep -q "^127.0.0.1:$port (id: 1"; then
    kill_broker "$dir" "$pid"
    rm -f "$dir/kafka.pid"
    printf '%s\n' "$out" >>"$dir/kafka.log"
    LAUNCH_ERR="broker started but 127.0.0.1:$port did not answer an ApiVersions request (log: $dir/kafka.log)"
    return 1
  fi
  return 0
}

cmd_start () {
  [ $# -eq 1 ] || usage
  mkdir -p "$1"
  dir=$(cd "$1" && pwd -P)
  pid=$(pid_of "$dir")
  if alive "$pid" "$dir"; then
    cat "$dir/bootstrap"
    return 0
  fi
  rm -f "$dir/kafka.pid"
  fetch
  ensure_tools
  t0=$(date +%s)

  # Ports: DIR keeps the ones of its first successful start, so a restart answers on the same
  # address. Ports picked here are picked again if the broker finds one taken (at most 3 tries).
  fresh=0
  if [ -f "$dir/ports" ]; then
    read -r port cport <"$dir/ports"
  else
    port=${KAFKA_PORT:-$(free_port)}
    cport=${KAFKA_CONTROLLER_PORT:-$(free_port "$port")}
    [ -n "${KAFKA_PORT:-}${KAFKA_CONTROLLER_PORT:-}" ] || fresh=1
  fi
  touch "$dir/kafka.log"
  tries=1
  while :; do
    write_config "$dir" "$port" "$cport"
    echo "127.0.0.1:$port" >"$dir/bootstrap"
    if [ ! -f "$dir/data/meta.properties" ]; then
      [ -f "$dir/cluster.id" ] || random_uuid >"$dir/cluster.id"
      # shellcheck disable=SC2086
      if ! timeout 120 java $TOOL_OPTS -Dlog4j.configuration="file:$dir/log4j-tools.properties" \
          -cp "$LIBS/*" kafka.tools.StorageTool format --ignore-formatted \
          -t "$(cat "$dir/cluster.id")" -c "$dir/server.properties" >>"$dir/kafka.log" 2>&1; then
        tail -n 30 "$dir/kafka.log" >&2
        die "formatting $dir/data failed (log: $dir/kafka.log)"
      fi
    fi
    if launch "$dir" "$port" "$cport"; then break; fi
    if [ "$fresh" -eq 1 ] && [ "$tries" -lt 3 ] \
        && tail -c +"$LAUNCH_FROM" "$dir/kafka.log" | grep -q 'Address already in use'; then
      tries=$((tries + 1))
      say "$LAUNCH_ERR: port $port or $cport was taken meanwhile; again with other ports"
      port=$(free_port)
      cport=$(free_port "$port")
      continue
    fi
    show_failure "$dir" "$LAUNCH_FROM"
    die "$LAUNCH_ERR"
  done
  echo "$port $cport" >"$dir/ports"

  if [ -n "${KAFKA_WATCH_PID:-}" ]; then
    stop_watcher "$dir"
    nohup sh "$HERE/kafka.sh" __watch "$dir" "$KAFKA_WATCH_PID" "$pid" </dev/null >/dev/null 2>&1 &
    echo $! >"$dir/watcher.pid"
  fi
  say "Kafka $KAFKA_VERSION up at 127.0.0.1:$port (pid $pid) in $(( $(date +%s) - t0 ))s"
  echo "127.0.0.1:$port"
}

cmd_stop () {
  [ $# -eq 1 ] || usage
  [ -d "$1" ] || return 0
  dir=$(cd "$1" && pwd -P)
  stop_watcher "$dir"
  pid=$(pid_of "$dir")
  kill_broker "$dir" "$pid"
  rm -f "$dir/kafka.pid"
}

cmd_status () {
  [ $# -eq 1 ] || usage
  [ -d "$1" ] || exit 1
  dir=$(cd "$1" && pwd -P)
  if alive "$(pid_of "$dir")" "$dir"; then cat "$dir/bootstrap"; else exit 1; fi
}

# Internal: stops DIR's broker once WATCH_PID is gone (a test runner killed before its cleanup).
cmd_watch () {
  dir=$1 watch=$2 pid=$3
  while kill -0 "$watch" 2>/dev/null && alive "$pid" "$dir"; do sleep 1; done
  if alive "$pid" "$dir"; then
    rm -f "$dir/watcher.pid"
    kill_broker "$dir" "$pid"
    rm -f "$dir/kafka.pid"
  fi
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
  fetch) [ $# -eq 0 ] || usage; fetch; echo "$LIBS" ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  status) cmd_status "$@" ;;
  __watch) cmd_watch "$@" ;;
  *) usage ;;
esac
