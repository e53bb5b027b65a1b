#!/usr/bin/env bash
# The multi-host lab: an origin, relays and viewers, each in its own Linux network
# namespace with its own address on a bridged LAN (veth pairs, no loopback shortcuts),
# with delay and loss emulated on every node's outgoing datagrams (--emulate-delay,
# --emulate-loss: `tc netem` is not available here). It runs a scenario -- everyone
# joins, the relay with the most children is killed (SIGKILL), later the remaining relay
# with the most children is drained (SIGTERM: it hands its children over) -- then prints
# a report from the viewers' --report JSON and checks it (deploy/lab/report.py).
#
# Needs root and `ip netns` (iproute2). Every namespace and process it started is
# removed on exit, also on failure or Ctrl-C.
#
#   sudo deploy/lab/lab.sh                     # defaults below
#   LAB_VIEWERS=8 LAB_SECS=60 LAB_DELAY=30ms LAB_LOSS=1% sudo -E deploy/lab/lab.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

BIN="${LAB_BIN:-}"
if [ -z "$BIN" ]; then  # the newest build
    BIN="$(ls -t "$root/target/release/treecast" "$root/target/debug/treecast" 2>/dev/null | head -1 || true)"
fi
[ -x "$BIN" ] || { echo "error: no treecast binary: cargo build, or set LAB_BIN" >&2; exit 1; }
RELAYS="${LAB_RELAYS:-3}"           # dedicated relays
VIEWERS="${LAB_VIEWERS:-4}"         # headless, watch-only viewers
RELAY_SLOTS="${LAB_RELAY_SLOTS:-2}" # children per relay
SECS="${LAB_SECS:-24}"              # how long each viewer watches
KILL_AT="${LAB_KILL_AT:-8}"         # seconds after the last viewer joined
DRAIN_AT="${LAB_DRAIN_AT:-15}"
DELAY="${LAB_DELAY:-10ms}"          # one-way, added by each sender: 20 ms RTT per link
LOSS="${LAB_LOSS:-0.5%}"
BUFFER="${LAB_BUFFER:-2s}"          # viewers' playout buffer
OUT="${LAB_OUT:-$(mktemp -d /tmp/treecast-lab.XXXXXX)}"
mkdir -p "$OUT"

if [ "$(id -u)" -ne 0 ]; then echo "error: the lab needs root (ip netns)" >&2; exit 1; fi
if (( RELAYS > 9 || VIEWERS > 9 )); then echo "error: at most 9 relays and 9 viewers" >&2; exit 1; fi

P="tcl$$"     # namespace prefix: runs do not collide
SW="$P-sw"    # the switch: a bridge in a namespace of its own
NSES=()
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for ns in "${NSES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[lab $(date +%T)] $*"; }
# A sleep that a signal interrupts at once (bash runs traps only between commands).
pause() { sleep "$1" & wait $!; }

ip netns add "$SW"; NSES+=("$SW")
ip -n "$SW" link add br0 type bridge
ip -n "$SW" link set br0 up

# host NAME IP: a namespace with one veth into the switch.
nhost=0
host() {
    local ns="$P-$1"
    nhost=$((nhost + 1))
    ip netns add "$ns"; NSES+=("$ns")
    ip -n "$SW" link add "v$nhost" type veth peer name eth0 netns "$ns"
    ip -n "$SW" link set "v$nhost" master br0 up
    ip -n "$ns" addr add "$2/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
}

# start NAME ARGS...: runs treecast in NAME's namespace; stdout and stderr to $OUT.
declare -A PID
start() {
    local name="$1"; shift
    # A little ahead of other work on the machine: the checks are about the tree, not
    # about CPU contention (a starved player counts gaps over 100 ms as stalls).
    nice -n "${LAB_NICE:--5}" ip netns exec "$P-$name" "$BIN" "$@" \
        >"$OUT/$name.out" 2>"$OUT/$name.log" &
    PID[$name]=$!
    PIDS+=("$!")
}

# address NAME: waits for the address NAME prints once it is up (joined).
address() {
    local i
    for i in $(seq 1 300); do
        if [ -s "$OUT/$1.out" ]; then head -1 "$OUT/$1.out" | awk '{print $NF}'; return; fi
        if ! kill -0 "${PID[$1]}" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "error: $1 did not come up; its log:" >&2
    tail -5 "$OUT/$1.log" >&2
    return 1
}

# children NAME: the child count on NAME's latest status line.
children() {
    grep -o '| children [0-9]*' "$OUT/$1.log" | tail -1 | awk '{print $3}' || true
}

load_start="$(cut -d' ' -f1 /proc/loadavg)"
emulate=(--emulate-delay "$DELAY" --emulate-loss "$LOSS")
host origin 10.77.0.1
for i in $(seq 1 "$RELAYS"); do host "relay$i" "10.77.0.1$i"; done
for i in $(seq 1 "$VIEWERS"); do host "viewer$i" "10.77.0.2$i"; done
log "$((RELAYS + VIEWERS + 1)) namespaces on 10.77.0.0/24; links: $DELAY each way per sender, $LOSS loss; output in $OUT"

# The origin keeps one slot per relay, so the viewers settle below the relays.
start origin publish --ephemeral --listen 10.77.0.1:4433 --max-children "$RELAYS" \
    --width 320 --height 180 --video-kbps 400 "${emulate[@]}"
ORIGIN="$(address origin)"
echo "origin $ORIGIN" >"$OUT/addresses"
log "origin $ORIGIN"
for i in $(seq 1 "$RELAYS"); do
    start "relay$i" relay --ephemeral --listen "10.77.0.1$i:4434" --join "$ORIGIN" \
        --max-children "$RELAY_SLOTS" "${emulate[@]}"
    a="$(address "relay$i")"
    echo "relay$i $a" >>"$OUT/addresses"
    log "relay$i $a"
done
for i in $(seq 1 "$VIEWERS"); do
    start "viewer$i" watch "$ORIGIN" --headless --ephemeral \
        --listen "10.77.0.2$i:4435" --max-children 0 --buffer "$BUFFER" \
        --duration "${SECS}s" --report "$OUT/viewer$i.json" "${emulate[@]}"
    a="$(address "viewer$i")"
    echo "viewer$i $a" >>"$OUT/addresses"
    log "viewer$i $a, $(sed -n 2p "$OUT/viewer$i.out" | xargs)"
done

# pick: the live relay with the most children (ties: the lowest number).
pick() {
    local best="" most=-1 i n
    for i in $(seq 1 "$RELAYS"); do
        kill -0 "${PID[relay$i]}" 2>/dev/null || continue
        n="$(children "relay$i")"; n="${n:-0}"
        if (( n > most )); then best="relay$i"; most=$n; fi
    done
    echo "$best $most"
}

pause "$KILL_AT"
read -r killed killed_children < <(pick)
log "SIGKILL $killed (children: $killed_children)"
kill -9 "${PID[$killed]}"
wait "${PID[$killed]}" 2>/dev/null || true

pause "$((DRAIN_AT - KILL_AT))"
read -r drained drained_children < <(pick)
log "SIGTERM $drained (children: $drained_children)"
t0=$(date +%s%N)
kill -TERM "${PID[$drained]}"
drain_rc=0
wait "${PID[$drained]}" || drain_rc=$?
drain_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
log "$drained left after ${drain_ms} ms (exit $drain_rc)"

viewers_rc=()
for i in $(seq 1 "$VIEWERS"); do
    rc=0
    wait "${PID[viewer$i]}" || rc=$?
    viewers_rc+=("viewer$i=$rc")
done
log "viewers done: ${viewers_rc[*]}"
for i in $(seq 1 "$RELAYS"); do kill -TERM "${PID[relay$i]}" 2>/dev/null || true; done
kill -TERM "${PID[origin]}" 2>/dev/null || true

cat >"$OUT/scenario.json" <<JSON
{"secs": $SECS, "load": [$load_start, $(cut -d' ' -f1 /proc/loadavg)], "cpus": $(nproc), "buffer": "$BUFFER", "delay": "$DELAY", "loss": "$LOSS",
 "killed": "$killed", "killed_children": $killed_children,
 "drained": "$drained", "drained_children": $drained_children,
 "drain_exit": $drain_rc, "drain_ms": $drain_ms,
 "viewers_exit": "${viewers_rc[*]}"}
JSON
python3 "$here/report.py" "$OUT"
