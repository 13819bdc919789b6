#!/usr/bin/env bash
# Run a throwaway Orthanc on loopback, as the reference server for benchmarks/stow.py.
#
# Why Orthanc: it is a mature DICOMweb server that Debian packages, so our own server's STOW
# figures can be read side by side with a known one on the same machine.
#
# Why not the Debian service: that one keeps its database under /var/lib/orthanc across runs,
# compresses nothing but listens on the default ports, and would mix leftover state into the
# figures. This script runs a private Orthanc with its own temporary storage and index,
# and stops the packaged service if installing the package started it.
#
# Usage:
#   benchmarks/orthanc.sh start    install if needed, start, print the PID (the default)
#   benchmarks/orthanc.sh stop     stop the Orthanc this script started, delete its storage
#   benchmarks/orthanc.sh status   print PID, directory and URL of the running one
#
# Environment:
#   ORTHANC_HTTP_PORT   HTTP port (default 8042); the DICOMweb root is then
#                       http://127.0.0.1:$ORTHANC_HTTP_PORT/dicom-web
#   ORTHANC_SYNC        "true" (default, Orthanc's own default) fsyncs every stored file;
#                       "false" lets the page cache absorb writes
#   ORTHANC_STATE_DIR   where the state file lives (default: $TMPDIR or /tmp)
set -euo pipefail

HTTP_PORT="${ORTHANC_HTTP_PORT:-8042}"
SYNC="${ORTHANC_SYNC:-true}"
STATE_FILE="${ORTHANC_STATE_DIR:-${TMPDIR:-/tmp}}/dicomweb-bench-orthanc-${HTTP_PORT}.state"
DICOMWEB_PLUGIN=/usr/share/orthanc/plugins/libOrthancDicomWeb.so

log() { printf 'orthanc.sh: %s\n' "$*" >&2; }

install_orthanc() {
  if [[ -x /usr/sbin/Orthanc && -e "$DICOMWEB_PLUGIN" ]]; then
    return
  fi
  log "installing orthanc and orthanc-dicomweb with apt-get"
  local packages=(orthanc orthanc-dicomweb)
  # On a fresh machine the package lists may be missing: update once, then retry.
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    "${packages[@]}" >&2; then
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      "${packages[@]}" >&2
  fi
  stop_debian_service
}

# The package's postinst may start the system service (where policy-rc.d allows it). It binds
# 8042 and 4242 with the /var/lib/orthanc database, so it must not be what we measure. Only
# the service itself is stopped (systemd unit, or the process in the init script's pidfile):
# matching processes by name would also hit the Orthanc this script started.
stop_debian_service() {
  if [[ -d /run/systemd/system ]] && systemctl is-active --quiet orthanc 2>/dev/null; then
    log "stopping the Debian orthanc service (systemd)"
    systemctl stop orthanc >&2
    return
  fi
  local pid=""
  if [[ -r /run/orthanc.pid ]]; then
    read -r pid </run/orthanc.pid || true
  fi
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && [[ -x /etc/init.d/orthanc ]]; then
    log "stopping the Debian orthanc service (pid $pid)"
    /etc/init.d/orthanc stop >&2 || true
  fi
}

port_in_use() {
  ss -Htln "sport = :$1" | grep -q .
}

# A free TCP port on loopback for the DICOM listener, which the benchmark never uses but
# which Orthanc 1.10 opens unless disabled; we disable it, and still pick a free port in
# case a later Orthanc ignores the switch.
free_port() {
  local port
  for port in $(seq 14242 14342); do
    if ! port_in_use "$port"; then
      echo "$port"
      return
    fi
  done
  log "no free port for the DICOM listener"
  exit 1
}

write_config() {
  local dir="$1" dicom_port="$2"
  cat >"$dir/orthanc.json" <<EOF
{
  "Name": "dicomweb-bench",
  "StorageDirectory": "$dir/storage",
  "IndexDirectory": "$dir",
  "StorageCompression": false,
  "OverwriteInstances": true,
  "SyncStorageArea": $SYNC,
  "MaximumStorageSize": 0,
  "MaximumPatientCount": 0,
  "Plugins": ["$DICOMWEB_PLUGIN"],
  "DicomWeb": {
    "Enable": true,
    "Root": "/dicom-web/"
  },
  "HttpServerEnabled": true,
  "HttpPort": $HTTP_PORT,
  "HttpThreadsCount": 50,
  "HttpCompressionEnabled": false,
  "HttpRequestTimeout": 3600,
  "KeepAlive": true,
  "TcpNoDelay": true,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "SslEnabled": false,
  "OrthancExplorerEnabled": false,
  "WebDavEnabled": false,
  "DicomServerEnabled": false,
  "DicomPort": $dicom_port,
  "DicomAet": "BENCHORTHANC",
  "SaveJobs": false,
  "LuaScripts": []
}
EOF
}

# Prints "PID DIR" of the recorded instance if it is still alive, else nothing.
recorded_instance() {
  [[ -f "$STATE_FILE" ]] || return 0
  local pid dir
  read -r pid dir <"$STATE_FILE" || return 0
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    echo "$pid $dir"
  fi
}

start() {
  if [[ -n "$(recorded_instance)" ]]; then
    log "already running: $(recorded_instance) (run '$0 stop' first)"
    exit 1
  fi
  install_orthanc
  stop_debian_service
  if port_in_use "$HTTP_PORT"; then
    log "port $HTTP_PORT is taken by another process; set ORTHANC_HTTP_PORT"
    exit 1
  fi
  local dir dicom_port pid
  dir="$(mktemp -d "${TMPDIR:-/tmp}/orthanc-bench.XXXXXX")"
  dicom_port="$(free_port)"
  write_config "$dir" "$dicom_port"
  # setsid + nohup: Orthanc must outlive this script and the shell that ran it.
  setsid nohup /usr/sbin/Orthanc --logfile="$dir/orthanc.log" "$dir/orthanc.json" \
    </dev/null >"$dir/stdout.log" 2>&1 &
  pid=$!
  echo "$pid $dir" >"$STATE_FILE"
  for _ in $(seq 1 150); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$HTTP_PORT/dicom-web/studies?limit=1" 2>/dev/null
    then
      log "Orthanc $(/usr/sbin/Orthanc --version | head -n1 | awk '{print $NF}') ready," \
        "DICOMweb root http://127.0.0.1:$HTTP_PORT/dicom-web, storage $dir"
      echo "$pid"
      return
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      log "Orthanc exited during start-up; its log:"
      cat "$dir/orthanc.log" "$dir/stdout.log" >&2 || true
      rm -rf -- "$dir" "$STATE_FILE"
      exit 1
    fi
    sleep 0.2
  done
  log "Orthanc did not answer within 30 s; stopping it"
  stop
  exit 1
}

stop() {
  local pid dir
  if [[ ! -f "$STATE_FILE" ]]; then
    log "nothing recorded in $STATE_FILE"
    return 0
  fi
  read -r pid dir <"$STATE_FILE" || true
  if [[ -n "${pid:-}" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "Orthanc $pid ignored SIGTERM for 10 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped Orthanc $pid"
  fi
  # Only ever delete a directory this script made.
  if [[ -n "${dir:-}" && "$dir" == */orthanc-bench.* && -d "$dir" ]]; then
    rm -rf -- "$dir"
    log "deleted $dir"
  fi
  rm -f -- "$STATE_FILE"
}

status() {
  local running
  running="$(recorded_instance)"
  if [[ -z "$running" ]]; then
    log "not running"
    exit 1
  fi
  echo "$running http://127.0.0.1:$HTTP_PORT/dicom-web"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *)
    log "usage: $0 [start|stop|status]"
    exit 2
    ;;
esac
