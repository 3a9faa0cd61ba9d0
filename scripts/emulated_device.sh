#!/usr/bin/env bash
# An emulated Cortex-A72 as a TVM RPC device: an arm64 Debian rootfs run under qemu-user
# (binfmt_misc), with TVM's RPC server in a chroot registered at a tracker.
#
#   scripts/emulated_device.sh check     can this machine host it? (exit 3 + the reason if not)
#   scripts/emulated_device.sh setup     build the rootfs and its venv once (cached; ~5 min)
#   scripts/emulated_device.sh start --tracker HOST:PORT --key KEY [--port N]
#                                        one RPC server in the chroot; returns once the tracker
#                                        lists it (start several for several devices)
#   scripts/emulated_device.sh stop [--port N]   stop one server (or all), unmount when none left
#   scripts/emulated_device.sh status
#
# Needs root (debootstrap, chroot, mount) and a mountable binfmt_misc. The rootfs is at
# $PROM_TVM_ARM64_ROOTFS (default /var/tmp/prom_tvm/arm64-rootfs) and is shared: other tools run
# aarch64 code in it, so it is never moved or deleted here. PID files and logs are in
# $PROM_TVM_ARM64_ROOTFS-run. The chroot gets a clean environment (env -i) and only proc and a
# tmpfs on /dev/shm are mounted in it (never a bind mount of the host's /dev).
# Timings under qemu are not A72 timings: the device checks correctness and the tooling.
set -euo pipefail

ROOT=${PROM_TVM_ARM64_ROOTFS:-/var/tmp/prom_tvm/arm64-rootfs}
RUN_DIR="$ROOT-run"
SUITE=bookworm
# the device's Python side; apache-tvm / apache-tvm-ffi must be the host's (RPC protocol,
# pyproject.toml), the others are the host venv's versions
PINS=(apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post1 tornado==6.6.1 psutil==7.2.2
      cloudpickle==3.1.3 numpy==2.4.6)
HOST_PACKAGES=(debootstrap qemu-user-static binfmt-support gcc-aarch64-linux-gnu)
READY="$ROOT/.prom_tvm_ready"          # written last by setup: the pins it installed
START_TIMEOUT=${PROM_TVM_ARM64_START_TIMEOUT:-180}  # seconds for a server to register
REPO=$(cd "$(dirname "$0")/.." && pwd)
HOST_PY=${PROM_TVM_HOST_PYTHON:-$REPO/.venv/bin/python}
CHROOT_ENV=(env -i PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8
            PYTHONDONTWRITEBYTECODE=1)

say() { echo "emulated_device: $*" >&2; }
die() { say "error: $*"; exit 1; }
cannot() { say "cannot host the emulated device here: $*"; exit 3; }
# a download that failed (no mirror, no network, a proxy): this machine cannot build the
# device, which is not a fault of the code; the log's last lines say what happened
offline() { cannot "$1 failed (no network or mirror here?): $(tail -n 3 "$2" | tr '\n' ' ')"; }

# ------------------------------------------------------------------------------------------
# what this machine needs

need_root() {
    [[ $(id -u) == 0 ]] || cannot "needs root (debootstrap, chroot, mount); run it as root"
}

binfmt_ready() {  # binfmt_misc mounted and qemu-aarch64 registered (fix-binary: no qemu in ROOT)
    if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
            || cannot "binfmt_misc cannot be mounted on /proc/sys/fs/binfmt_misc (a container" \
                      "without it cannot run arm64 binaries through qemu-user)"
    fi
    if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
        command -v update-binfmts >/dev/null || return 0  # installed by setup
        update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 \
            || cannot "qemu-aarch64 cannot be registered with binfmt_misc (update-binfmts failed)"
    fi
    [[ $(cat /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null | head -1) == enabled ]] \
        || cannot "binfmt_misc has qemu-aarch64 disabled"
}

host_packages() {
    local missing=() p
    for p in "${HOST_PACKAGES[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [[ ${#missing[@]} == 0 ]] && return 0
    command -v apt-get >/dev/null || cannot "no apt-get to install ${missing[*]}"
    say "installing ${missing[*]} ..."
    local log=/tmp/prom_tvm_emulated_apt.log
    apt-get update -qq >"$log" 2>&1 || offline "apt-get update" "$log"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >"$log" 2>&1 \
        || offline "apt-get install ${missing[*]}" "$log"
}

debian_mirror() {  # the mirror apt uses here
    local uri
    uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | awk '{print $2}' | grep -v security | head -1 || true)
    [[ -n $uri ]] || uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null \
                           | awk '{print $2}' | grep -v security | head -1 || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

cmd_check() {
    need_root
    [[ $(uname -m) == x86_64 || $(uname -m) == aarch64 ]] || cannot "unsupported host $(uname -m)"
    binfmt_ready
    say "ok: root, binfmt_misc mounted; rootfs $ROOT $( [[ -f $READY ]] && echo ready \
        || echo 'not built yet (setup)')"
}

# ------------------------------------------------------------------------------------------
# setup: the rootfs (debootstrap) and the venv (pip, inside the chroot), each once

in_chroot() { chroot "$ROOT" "${CHROOT_ENV[@]}" "$@"; }

cmd_setup() {
    need_root
    host_packages
    binfmt_ready
    [[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] \
        || cannot "qemu-aarch64 is not registered with binfmt_misc after installing qemu-user-static"
    if [[ -f $READY && $(cat "$READY") == "${PINS[*]}" ]]; then
        say "rootfs $ROOT is ready (cached)"
        return 0
    fi
    mkdir -p "$(dirname "$ROOT")" "$RUN_DIR"
    if [[ ! -x $ROOT/usr/bin/python3 || ! -f $ROOT/.prom_tvm_debootstrap_done ]]; then
        # a half-built rootfs (interrupted debootstrap) is built again in a fresh folder
        local part="$ROOT.partial"
        [[ -e $part ]] && rm -rf --one-file-system "$part"
        [[ -e $ROOT ]] && die "$ROOT exists but is not a finished rootfs; move it away" \
                              "(it is not deleted here: other tools may use it)"
        local mirror
        mirror=$(debian_mirror)
        say "debootstrap arm64 $SUITE from $mirror into $ROOT (~3 min) ..."
        debootstrap --arch=arm64 --variant=minbase \
            --include=python3,python3-venv,python3-pip,ca-certificates \
            "$SUITE" "$part" "$mirror" >"$RUN_DIR/debootstrap.log" 2>&1 \
            || offline "debootstrap from $mirror" "$RUN_DIR/debootstrap.log"
        touch "$part/.prom_tvm_debootstrap_done"
        mv "$part" "$ROOT"
    fi
    [[ -s $ROOT/etc/resolv.conf ]] || cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    say "the device's venv (/opt/venv in the rootfs): ${PINS[*]} (~1 min) ..."
    [[ -x $ROOT/opt/venv/bin/python ]] || in_chroot python3 -m venv /opt/venv
    # the host's CA bundle (where the registry is reached through a TLS-inspecting proxy, its
    # certificate is only there); nothing else of the host's pip settings goes in
    local ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
    [[ -f $ca ]] && cp "$ca" "$ROOT/opt/host-ca.crt"
    in_chroot env PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=120 \
        $( [[ -f $ROOT/opt/host-ca.crt ]] && echo PIP_CERT=/opt/host-ca.crt ) \
        /opt/venv/bin/pip install -q "${PINS[@]}" >"$RUN_DIR/pip.log" 2>&1 \
        || offline "pip install in the rootfs" "$RUN_DIR/pip.log"
    in_chroot /opt/venv/bin/python -c "import tvm, tvm.rpc, tornado, psutil, cloudpickle" \
        || die "the rootfs venv cannot import tvm.rpc"
    echo "${PINS[*]}" >"$READY"
    say "rootfs ready: $ROOT ($(du -sh --one-file-system "$ROOT" | cut -f1))"
}

# ------------------------------------------------------------------------------------------
# mounts (only what this script mounted is unmounted, and only when no server is left)

mount_into_root() {
    mkdir -p "$RUN_DIR" "$ROOT/proc" "$ROOT/dev/shm"
    if ! mountpoint -q "$ROOT/proc"; then
        mount -t proc proc "$ROOT/proc" && touch "$RUN_DIR/mounted-proc"
    fi
    if ! mountpoint -q "$ROOT/dev/shm"; then
        mount -t tmpfs -o size=512m,mode=1777 tmpfs "$ROOT/dev/shm" && touch "$RUN_DIR/mounted-shm"
    fi
}

unmount_from_root() {
    local m dir
    for m in shm proc; do
        [[ -f $RUN_DIR/mounted-$m ]] || continue
        dir="$ROOT/proc"; [[ $m == shm ]] && dir="$ROOT/dev/shm"
        if ! mountpoint -q "$dir" || umount "$dir" 2>/dev/null; then
            rm -f "$RUN_DIR/mounted-$m"
        else
            say "warning: $dir is busy (another process in the rootfs?); left mounted"
        fi
    done
}

# ------------------------------------------------------------------------------------------
# servers

free_port() {
    "$HOST_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

registered() {  # registered TRACKER_HOST TRACKER_PORT KEY PORT: is server PORT listed under KEY?
    "$HOST_PY" - "$@" <<'EOF' 2>/dev/null
import socket, sys
from tvm.rpc import base
host, port, key, mine = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.create_connection((host, port), timeout=5)  # one bounded question, no retries
s.settimeout(5)
s.sendall(base.struct.pack("<i", base.RPC_TRACKER_MAGIC))
assert base.struct.unpack("<i", base.recvall(s, 4))[0] == base.RPC_TRACKER_MAGIC
base.sendjson(s, [base.TrackerCode.SUMMARY])
info = base.recvjson(s)[1]
sys.exit(0 if any(i.get("key") == f"server:{key}" and int(i["addr"][1]) == mine
                  for i in info.get("server_info", [])) else 1)
EOF
}

cmd_start() {
    local tracker="" key="" port=""
    while [[ $# -gt 0 ]]; do
        case $1 in
            --tracker) tracker=$2; shift 2 ;;
            --key) key=$2; shift 2 ;;
            --port) port=$2; shift 2 ;;
            *) die "start: unknown argument $1 (start --tracker HOST:PORT --key KEY [--port N])" ;;
        esac
    done
    [[ $tracker == *:* && -n $key ]] || die "start needs --tracker HOST:PORT and --key KEY"
    need_root
    binfmt_ready
    [[ -f $READY ]] || die "no rootfs at $ROOT: run scripts/emulated_device.sh setup first"
    [[ -x $HOST_PY ]] || die "no host python with tvm at $HOST_PY (scripts/setup.sh, or set" \
                             "PROM_TVM_HOST_PYTHON)"
    local thost=${tracker%:*} tport=${tracker##*:}
    "$HOST_PY" -c "import socket; socket.create_connection(('$thost', $tport), 5).close()" \
        2>/dev/null || die "no RPC tracker answers at $tracker (python -m tvm.exec.rpc_tracker" \
                           "--host $thost --port $tport)"
    port=${port:-$(free_port)}
    local pidf="$RUN_DIR/server-$port.pid" log="$RUN_DIR/server-$port.log"
    mkdir -p "$RUN_DIR"
    [[ -f $pidf ]] && kill -0 "$(cat "$pidf")" 2>/dev/null && die "a server on port $port runs"
    mount_into_root
    # setsid: the server and its forked workers form one process group, stopped as one
    setsid chroot "$ROOT" "${CHROOT_ENV[@]}" /opt/venv/bin/python -m tvm.exec.rpc_server \
        --tracker "$tracker" --key "$key" --host 127.0.0.1 --port "$port" \
        --port-end "$((port + 1))" </dev/null >"$log" 2>&1 &
    local pid=$!
    echo "$pid" >"$pidf"
    local deadline=$((SECONDS + START_TIMEOUT))
    until registered "$thost" "$tport" "$key" "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pidf"
            say "the server exited; its log ($log):"; tail -n 20 "$log" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            stop_one "$port"
            die "the server on port $port did not register with $tracker within" \
                "${START_TIMEOUT} s (PROM_TVM_ARM64_START_TIMEOUT); log: $log"
        fi
        sleep 1
    done
    say "server pid $pid, port $port, key $key registered at $tracker (log $log)"
    echo "$port"
}

stop_one() {  # stop_one PORT: TERM the process group, KILL after 10 s
    local pidf="$RUN_DIR/server-$1.pid" pid
    [[ -f $pidf ]] || return 0
    pid=$(cat "$pidf")
    if kill -TERM -- "-$pid" 2>/dev/null; then
        for _ in $(seq 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.2; done
        if kill -KILL -- "-$pid" 2>/dev/null; then  # gone before the unmount
            for _ in $(seq 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.2; done
        fi
    fi
    rm -f "$pidf"
    say "stopped the server on port $1"
}

cmd_stop() {
    local port=""
    [[ ${1:-} == --port ]] && port=$2
    if [[ -n $port ]]; then
        stop_one "$port"
    else
        local f
        for f in "$RUN_DIR"/server-*.pid; do
            [[ -e $f ]] || continue
            f=${f##*/server-}; stop_one "${f%.pid}"
        done
    fi
    compgen -G "$RUN_DIR/server-*.pid" >/dev/null || unmount_from_root
}

cmd_status() {
    echo "rootfs $ROOT: $( [[ -f $READY ]] && echo "ready ($(cat "$READY"))" || echo 'not built')"
    local f pid
    for f in "$RUN_DIR"/server-*.pid; do
        [[ -e $f ]] || continue
        pid=$(cat "$f")
        echo "server ${f##*/} pid $pid: $(kill -0 "$pid" 2>/dev/null && echo running || echo dead)"
    done
}

main() {
    case ${1:-} in
        check) cmd_check ;;
        setup) cmd_setup ;;
        start) shift; cmd_start "$@" ;;
        stop) shift; cmd_stop "$@" ;;
        status) cmd_status ;;
        *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
}

# one line, read before anything runs: an edit of this file during a run cannot shift it
main "$@"; exit $?
