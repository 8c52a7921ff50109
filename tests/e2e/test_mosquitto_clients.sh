#!/usr/bin/env bash
# End-to-end checks with Debian's mosquitto_pub / mosquitto_sub against the broker under
# test: pub/sub at QoS 0/1/2 over MQTT 5, 3.1.1 and 3.1, retained set/clear, wildcards,
# user properties, $SYS, and the clients' -C (count) and -W (timeout) options.
#
# Starts its own broker (BROKER=nanomq|mosquitto, default nanomq; NANOMQ_BIN overrides the
# binary) on 127.0.0.1 port 0, reads the port from the log, and stops everything on exit.
# Prints TAP-style "ok N - name" / "not ok N - name" lines, then "N passed, M failed";
# exits non-zero if any test failed.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BROKER="${BROKER:-nanomq}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/nanomq-e2e-sh.XXXXXX")"
LOG="$WORK/broker.log"
BROKER_PID=""
PORT=""
declare -a BG_PIDS=()
# The broker gets SIGKILL if this script dies without running its EXIT trap.
DIE_WITH_US=()
command -v setpriv >/dev/null && DIE_WITH_US=(setpriv --pdeathsig KILL --)
PASSED=0
FAILED=0
N=0

cleanup() {
  local pid
  for pid in "${BG_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  if [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$BROKER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$BROKER_PID" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
  echo "not ok - $*"
  [[ -f "$LOG" ]] && sed 's/^/# broker: /' "$LOG" | tail -50
  echo "0 passed, 1 failed"
  exit 1
}

for tool in mosquitto_pub mosquitto_sub timeout stdbuf python3; do
  command -v "$tool" >/dev/null || die "$tool not installed (apt-get install mosquitto-clients)"
done

start_broker() {
  if [[ "$BROKER" == "nanomq" ]]; then
    local bin="${NANOMQ_BIN:-$ROOT/target/debug/nanomq}"
    [[ "$bin" == /* ]] || bin="$ROOT/$bin"
    [[ -x "$bin" ]] || die "broker binary $bin not found (cargo build -p nanomq)"
    cp "$ROOT/tests/e2e/nanomq.toml" "$WORK/nanomq.toml"
    # NANOMQ_ALLOW_ROOT: tests run as root in CI, where nanomq refuses to start without it.
    NO_COLOR=1 NANOMQ_ALLOW_ROOT=1 "${DIE_WITH_US[@]}" "$bin" start --config "$WORK/nanomq.toml" </dev/null >/dev/null 2>"$LOG" &
    BROKER_PID=$!
    local line
    for _ in $(seq 200); do  # 20 s
      line="$(sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$LOG" \
        | grep -oE 'listening on tcp [^ ]+:[0-9]+' | head -1 || true)"
      if [[ -n "$line" ]]; then
        PORT="${line##*:}"
        return 0
      fi
      kill -0 "$BROKER_PID" 2>/dev/null || die "nanomq exited before listening"
      sleep 0.1
    done
    die "nanomq printed no 'listening on tcp' line within 20 s"
  elif [[ "$BROKER" == "mosquitto" ]]; then
    # Validation mode only: mosquitto cannot report a port-0 bind, so take a free port.
    PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nsys_interval 1\nlog_dest stderr\n' \
      "$PORT" >"$WORK/mosquitto.conf"
    [[ "$(id -u)" -eq 0 ]] && echo "user root" >>"$WORK/mosquitto.conf"
    "${DIE_WITH_US[@]}" mosquitto -c "$WORK/mosquitto.conf" </dev/null >/dev/null 2>"$LOG" &
    BROKER_PID=$!
    for _ in $(seq 200); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
      kill -0 "$BROKER_PID" 2>/dev/null || die "mosquitto exited"
      sleep 0.1
    done
    die "mosquitto not accepting connections within 20 s"
  else
    die "BROKER must be nanomq or mosquitto, not $BROKER"
  fi
}

# ---------------------------------------------------------------- helpers

MSG_FORMAT='MSG|%t|%q|%r|%p'

# sub_start OUTFILE ARGS...: start mosquitto_sub in the background, wait for its SUBACK.
sub_start() {
  local out="$1"
  shift
  timeout 20 stdbuf -oL mosquitto_sub -h 127.0.0.1 -p "$PORT" -d -F "$MSG_FORMAT" "$@" >"$out" 2>&1 &
  SUB_PID=$!
  BG_PIDS+=("$SUB_PID")
  for _ in $(seq 100); do  # 10 s
    grep -qs 'received SUBACK' "$out" && return 0
    kill -0 "$SUB_PID" 2>/dev/null || { echo "# mosquitto_sub exited early:"; sed 's/^/#   /' "$out"; return 1; }
    sleep 0.1
  done
  echo "# no SUBACK within 10 s"
  return 1
}

# sub_wait: wait for the last started mosquitto_sub; returns its exit code.
sub_wait() {
  local rc=0
  wait "$SUB_PID" || rc=$?
  return "$rc"
}

pub() {
  timeout 10 mosquitto_pub -h 127.0.0.1 -p "$PORT" "$@"
}

messages() {  # messages OUTFILE: the MSG| lines only
  grep '^MSG|' "$1" || true
}

expect_eq() {  # expect_eq WHAT EXPECTED ACTUAL
  if [[ "$2" != "$3" ]]; then
    echo "# $1: expected [$2]"
    echo "#   got [$3]"
    return 1
  fi
}

run() {  # run NAME FUNCTION ARGS...
  local name="$1"
  shift
  N=$((N + 1))
  local out="$WORK/test$N.out"
  if "$@" >"$out" 2>&1; then
    PASSED=$((PASSED + 1))
    echo "ok $N - $name"
  else
    FAILED=$((FAILED + 1))
    echo "not ok $N - $name"
    sed 's/^\([^#]\)/# \1/' "$out"
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
      echo "# broker is no longer running; log tail:"
      tail -30 "$LOG" | sed 's/^/# broker: /'
    fi
  fi
}

# ---------------------------------------------------------------- tests

t_pubsub() {  # t_pubsub VERSION QOS
  local v="$1" q="$2"
  local out="$WORK/sub-$v-$q.out" topic="sh/pubsub/$v/$q"
  sub_start "$out" -V "$v" -q "$q" -t "$topic" -C 3 -W 10 || return 1
  local i
  for i in 1 2 3; do
    pub -V "$v" -q "$q" -t "$topic" -m "m$i" || { echo "# mosquitto_pub failed"; return 1; }
  done
  sub_wait || { echo "# mosquitto_sub exit $?"; cat "$out"; return 1; }
  expect_eq "messages" "MSG|$topic|$q|0|m1
MSG|$topic|$q|0|m2
MSG|$topic|$q|0|m3" "$(messages "$out")"
}

t_qos_downgrade() {  # subscriber QoS 0, publisher QoS 2 -> delivered at QoS 0
  local out="$WORK/downgrade.out"
  sub_start "$out" -V mqttv5 -q 0 -t sh/down -C 1 -W 10 || return 1
  pub -V mqttv5 -q 2 -t sh/down -m x || return 1
  sub_wait || return 1
  expect_eq "messages" "MSG|sh/down|0|0|x" "$(messages "$out")"
}

t_retained() {  # VERSION
  local v="$1"
  local out="$WORK/ret-$v.out" topic="sh/ret/$v"
  pub -V "$v" -q 1 -r -t "$topic" -m old || return 1
  pub -V "$v" -q 1 -r -t "$topic" -m state || return 1
  # A subscriber arriving later gets the retained message at once, with RETAIN set.
  sub_start "$out" -V "$v" -q 1 -t "$topic" -C 1 -W 5 || return 1
  sub_wait || { echo "# no retained message"; cat "$out"; return 1; }
  expect_eq "retained" "MSG|$topic|1|1|state" "$(messages "$out")" || return 1
  # Clearing: an empty retained message removes it; a new subscriber then times out.
  pub -V "$v" -q 1 -r -n -t "$topic" || return 1
  local rc=0
  timeout 10 mosquitto_sub -h 127.0.0.1 -p "$PORT" -V "$v" -t "$topic" -C 1 -W 2 \
    -F "$MSG_FORMAT" >"$out" 2>&1 || rc=$?
  expect_eq "after clear" "" "$(messages "$out")" || return 1
  [[ "$rc" -ne 0 ]] || { echo "# -W 2 should end with a timeout status, got 0"; return 1; }
}

t_timeout_W() {  # -W ends a subscriber that receives nothing, non-zero, in about W s
  local start end rc=0
  start=$(date +%s%N)
  timeout 15 mosquitto_sub -h 127.0.0.1 -p "$PORT" -t sh/nothing/here -C 1 -W 1 \
    -F "$MSG_FORMAT" >"$WORK/w.out" 2>&1 || rc=$?
  end=$(date +%s%N)
  local ms=$(((end - start) / 1000000))
  echo "# exit $rc after ${ms} ms"
  [[ "$rc" -eq 27 ]] || { echo "# expected exit 27 (timeout), got $rc"; return 1; }
  [[ "$ms" -ge 900 && "$ms" -le 5000 ]] || { echo "# -W 1 took ${ms} ms"; return 1; }
  expect_eq "messages" "" "$(messages "$WORK/w.out")"
}

t_count_C() {  # -C 3 stops after exactly three of five messages
  local out="$WORK/count.out"
  sub_start "$out" -V mqttv311 -q 1 -t sh/count -C 3 -W 10 || return 1
  printf 'a\nb\nc\nd\ne\n' | pub -V mqttv311 -q 1 -t sh/count -l || return 1
  sub_wait || return 1
  expect_eq "messages" "MSG|sh/count|1|0|a
MSG|sh/count|1|0|b
MSG|sh/count|1|0|c" "$(messages "$out")"
}

t_wildcards() {
  local out="$WORK/wild.out"
  sub_start "$out" -V mqttv5 -q 1 -t 'sh/w/+/x' -t 'sh/h/#' -C 3 -W 10 || return 1
  local t
  for t in sh/w/a/x sh/w/a/y sh/w/a/b/x sh/h sh/h/1/2 other/h; do
    pub -V mqttv5 -q 1 -t "$t" -m "$t" || return 1
  done
  sub_wait || return 1
  expect_eq "messages" "MSG|sh/w/a/x|1|0|sh/w/a/x
MSG|sh/h|1|0|sh/h
MSG|sh/h/1/2|1|0|sh/h/1/2" "$(messages "$out")"
}

t_user_properties() {
  local out="$WORK/props.out"
  timeout 20 stdbuf -oL mosquitto_sub -h 127.0.0.1 -p "$PORT" -d -V mqttv5 -q 1 -t sh/props -C 1 -W 10 \
    -F 'MSG|%P|%p' >"$out" 2>&1 &
  SUB_PID=$!
  BG_PIDS+=("$SUB_PID")
  for _ in $(seq 100); do grep -qs 'received SUBACK' "$out" && break; sleep 0.1; done
  pub -V mqttv5 -q 1 -t sh/props -m body -D publish user-property colour blue \
    -D publish user-property size 9 || return 1
  sub_wait || return 1
  expect_eq "user properties" "MSG|colour:blue size:9|body" "$(messages "$out")"
}

t_mqtt31() {
  local out="$WORK/v31.out"
  sub_start "$out" -V mqttv31 -q 2 -t sh/v31 -C 1 -W 10 -i sh-v31-sub || return 1
  pub -V mqttv31 -q 2 -t sh/v31 -m old-protocol -i sh-v31-pub || return 1
  sub_wait || return 1
  expect_eq "messages" "MSG|sh/v31|2|0|old-protocol" "$(messages "$out")"
}

t_mixed_versions() {  # v5 publisher, v3.1.1 subscriber and back
  local out="$WORK/mixed.out"
  sub_start "$out" -V mqttv311 -q 1 -t sh/mixed -C 1 -W 10 || return 1
  pub -V mqttv5 -q 1 -t sh/mixed -m from-v5 -D publish user-property k v || return 1
  sub_wait || return 1
  expect_eq "messages" "MSG|sh/mixed|1|0|from-v5" "$(messages "$out")"
}

t_persistent_session() {  # -c with a fixed id: messages published while away arrive later
  local out="$WORK/persist.out"
  timeout 10 mosquitto_sub -h 127.0.0.1 -p "$PORT" -V mqttv311 -q 1 -c -i sh-persist \
    -t sh/persist -W 1 >/dev/null 2>&1 || true  # creates the session, then leaves
  pub -V mqttv311 -q 1 -t sh/persist -m while-away || return 1
  timeout 15 mosquitto_sub -h 127.0.0.1 -p "$PORT" -V mqttv311 -q 1 -c -i sh-persist \
    -t sh/persist -C 1 -W 5 -F "$MSG_FORMAT" >"$out" 2>&1 || { cat "$out"; return 1; }
  expect_eq "messages" "MSG|sh/persist|1|0|while-away" "$(messages "$out")"
}

# shellcheck disable=SC2016 # '$SYS' is a literal topic
t_sys() {
  local out="$WORK/sys.out"
  timeout 15 mosquitto_sub -h 127.0.0.1 -p "$PORT" -t '$SYS/broker/version' -C 1 -W 5 \
    -F '%t|%p' >"$out" 2>&1 || { cat "$out"; return 1; }
  grep -qE '^\$SYS/broker/version\|.+' "$out" || { cat "$out"; return 1; }
}

t_pub_refused_connection() {  # mosquitto_pub reports failure when nothing listens
  local rc=0
  local dead
  dead="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  timeout 10 mosquitto_pub -h 127.0.0.1 -p "$dead" -t x -m y >/dev/null 2>&1 || rc=$?
  [[ "$rc" -ne 0 ]] || { echo "# mosquitto_pub to a closed port returned 0"; return 1; }
}

# ---------------------------------------------------------------- main

start_broker
echo "# $BROKER on 127.0.0.1:$PORT"

for v in mqttv5 mqttv311; do
  for q in 0 1 2; do
    run "pub/sub $v QoS $q" t_pubsub "$v" "$q"
  done
done
run "QoS downgrade 2 -> 0" t_qos_downgrade
run "retained set/replace/clear mqttv5" t_retained mqttv5
run "retained set/replace/clear mqttv311" t_retained mqttv311
run "mosquitto_sub -W timeout" t_timeout_W
run "mosquitto_sub -C count" t_count_C
run "wildcards + and #" t_wildcards
run "v5 user properties" t_user_properties
run "MQTT 3.1 (mqttv31) QoS 2" t_mqtt31
run "v5 publisher to v3.1.1 subscriber" t_mixed_versions
run "persistent session (-c) v3.1.1" t_persistent_session
run "\$SYS/broker/version" t_sys
run "mosquitto_pub fails on a closed port" t_pub_refused_connection

if ! kill -0 "$BROKER_PID" 2>/dev/null; then
  N=$((N + 1))
  FAILED=$((FAILED + 1))
  echo "not ok $N - broker still running at the end"
fi
echo "$PASSED passed, $FAILED failed"
[[ "$FAILED" -eq 0 ]]
