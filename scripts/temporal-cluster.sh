#!/usr/bin/env bash
# A production Temporal server on one machine, for tests and to try a real deployment: the Temporal server built
# from its Go module (go.temporal.io/server v1.29.1) with PostgreSQL 15 (Debian's package) for persistence and
# visibility, its schema set up by temporal-sql-tool from the same module.
#
#   scripts/temporal-cluster.sh build                     build tools/bin/temporal-server and temporal-sql-tool (once)
#   scripts/temporal-cluster.sh prepare                   build, and install PostgreSQL 15 when it is missing
#   scripts/temporal-cluster.sh start DIR [FRONTEND_PORT]  PostgreSQL and the server under DIR (default port 17233)
#   scripts/temporal-cluster.sh stop DIR                  stop both, keep DIR (histories survive a restart)
#
# start prints the frontend address on its last line. The namespace `default` is registered, the search attributes
# of temporal-dev.yaml are added, and the dynamic config of temporal-dev.yaml is the server's (one partition per
# task queue, so the entrez and hub queues keep their rates).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
SERVER_VERSION="v1.29.1"
BIN="$ROOT/tools/bin"
STAMP="$BIN/.temporal-server-version"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"

build() {
  if [[ -x "$BIN/temporal-server" && -x "$BIN/temporal-sql-tool" && "$(cat "$STAMP" 2>/dev/null)" == "$SERVER_VERSION" ]]; then return 0; fi
  command -v go >/dev/null || { echo "temporal-cluster: needs Go to build the Temporal server" >&2; exit 1; }
  echo "temporal-cluster: building the Temporal server ${SERVER_VERSION} and temporal-sql-tool (first run only, several minutes)..." >&2
  mkdir -p "$BIN/.build"
  GOBIN="$BIN/.build" GOFLAGS=-trimpath go install "go.temporal.io/server/cmd/server@${SERVER_VERSION}" "go.temporal.io/server/cmd/tools/sql@${SERVER_VERSION}"
  mv "$BIN/.build/server" "$BIN/temporal-server"
  mv "$BIN/.build/sql" "$BIN/temporal-sql-tool"
  echo "$SERVER_VERSION" > "$STAMP"
}

ensure_postgres() {
  if [[ -x "$PG_BIN/initdb" ]]; then return 0; fi
  if [[ "$(id -u)" != "0" ]]; then echo "temporal-cluster: install PostgreSQL 15 (apt-get install postgresql-15) or set PG_BIN" >&2; exit 1; fi
  echo "temporal-cluster: installing Debian's postgresql-15" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
}

# Runs a PostgreSQL command as the owner of the cluster (initdb and postgres refuse root).
as_pg() {
  if [[ "$(id -u)" == "0" ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

schema_dir() {
  echo "$(go env GOMODCACHE)/go.temporal.io/server@${SERVER_VERSION}/schema/postgresql/v12/$1/versioned"
}

write_config() {
  local dir="$1" port="$2" pgport="$3"
  mkdir -p "$dir/config/dynamicconfig"
  store() {
    cat <<EOF
      sql:
        pluginName: "postgres12"
        databaseName: "$1"
        connectAddr: "127.0.0.1:${pgport}"
        connectProtocol: "tcp"
        user: "temporal"
        password: "temporal"
        maxConns: 20
        maxIdleConns: 20
        maxConnLifetime: "1h"
EOF
  }
  {
    cat <<EOF
log:
  stdout: true
  level: warn
persistence:
  defaultStore: postgres-default
  visibilityStore: postgres-visibility
  numHistoryShards: 4
  datastores:
    postgres-default:
$(store temporal)
    postgres-visibility:
$(store temporal_visibility)
global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: "127.0.0.1"
services:
EOF
    local i=0
    for svc in frontend history matching worker; do
      cat <<EOF
  ${svc}:
    rpc:
      grpcPort: $((port + i))
      membershipPort: $((port + 100 + i))
      bindOnLocalHost: true
EOF
      i=$((i + 1))
    done
    cat <<EOF
clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: "active"
  currentClusterName: "active"
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: "frontend"
      rpcAddress: "127.0.0.1:${port}"
dcRedirectionPolicy:
  policy: "noop"
dynamicConfigClient:
  filepath: "$dir/config/dynamicconfig/dynamic.yaml"
  pollInterval: "10s"
EOF
  } > "$dir/config/development.yaml"
  # temporal-dev.yaml's dynamic config, in the server's file format (a list of values per key).
  node -e '
    const { parse } = require("yaml");
    const cfg = parse(require("fs").readFileSync("temporal-dev.yaml", "utf8"));
    const out = Object.entries(cfg.dynamicConfig ?? {}).map(([k, v]) => `${k}:\n  - value: ${JSON.stringify(v)}`).join("\n");
    process.stdout.write(out + "\n");
  ' > "$dir/config/dynamicconfig/dynamic.yaml"
}

start() {
  local dir port pgport
  dir="$(mkdir -p "$1" && cd "$1" && pwd)"
  port="${2:-17233}"
  pgport=$((port + 200))
  build
  ensure_postgres
  mkdir -p "$dir/pg" "$dir/pgsock"
  [[ "$(id -u)" == "0" ]] && chown postgres "$dir" "$dir/pg" "$dir/pgsock"
  if [[ ! -f "$dir/pg/PG_VERSION" ]]; then
    as_pg "$PG_BIN/initdb" -D "$dir/pg" -U postgres -A trust >/dev/null
  fi
  if ! as_pg "$PG_BIN/pg_ctl" -D "$dir/pg" status >/dev/null 2>&1; then
    as_pg "$PG_BIN/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w -o "-p ${pgport} -k $dir/pgsock -c listen_addresses=127.0.0.1" start >/dev/null
  fi
  psql -h 127.0.0.1 -p "$pgport" -U postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname='temporal'" | grep -q 1 ||
    psql -h 127.0.0.1 -p "$pgport" -U postgres -qc "CREATE ROLE temporal LOGIN SUPERUSER PASSWORD 'temporal'"
  local sql=("$BIN/temporal-sql-tool" --plugin postgres12 --ep 127.0.0.1 -p "$pgport" -u temporal --pw temporal)
  for db in temporal temporal_visibility; do
    local kind=temporal
    [[ "$db" == temporal_visibility ]] && kind=visibility
    if ! psql -h 127.0.0.1 -p "$pgport" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1; then
      "${sql[@]}" --db "$db" create-database >/dev/null
      "${sql[@]}" --db "$db" setup-schema -v 0.0 >/dev/null
    fi
    "${sql[@]}" --db "$db" update-schema -d "$(schema_dir "$kind")" >/dev/null
  done
  write_config "$dir" "$port" "$pgport"
  if [[ -f "$dir/server.pid" ]] && kill -0 "$(cat "$dir/server.pid")" 2>/dev/null; then
    echo "127.0.0.1:${port}"
    return 0
  fi
  # Detached: its output goes to server.log only, so a caller that reads this script's output is never held open.
  (cd "$dir" && exec "$BIN/temporal-server" --root "$dir" --config config --env development start) >"$dir/server.log" 2>&1 </dev/null &
  echo $! >"$dir/server.pid"
  local cli=("$BIN/temporal" --address "127.0.0.1:${port}")
  for _ in $(seq 1 120); do
    if "${cli[@]}" operator cluster health >/dev/null 2>&1; then break; fi
    kill -0 "$(cat "$dir/server.pid")" 2>/dev/null || { echo "temporal-cluster: the server exited; see $dir/server.log" >&2; tail -20 "$dir/server.log" >&2; exit 1; }
    sleep 1
  done
  "${cli[@]}" operator cluster health >/dev/null || { echo "temporal-cluster: the server did not become healthy; see $dir/server.log" >&2; exit 1; }
  "${cli[@]}" operator namespace describe --namespace default >/dev/null 2>&1 ||
    "${cli[@]}" operator namespace create --namespace default --retention 3d >/dev/null
  for _ in $(seq 1 30); do
    "${cli[@]}" operator namespace describe --namespace default >/dev/null 2>&1 && break
    sleep 1
  done
  TEMPORAL_ADDRESS="127.0.0.1:${port}" npx tsx cli/main.ts cluster setup >&2
  echo "127.0.0.1:${port}"
}

stop() {
  local dir="$1"
  if [[ -f "$dir/server.pid" ]]; then
    kill "$(cat "$dir/server.pid")" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$(cat "$dir/server.pid")" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$(cat "$dir/server.pid")" 2>/dev/null || true
    rm -f "$dir/server.pid"
  fi
  if [[ -f "$dir/pg/PG_VERSION" ]]; then as_pg "$PG_BIN/pg_ctl" -D "$dir/pg" -m fast stop >/dev/null 2>&1 || true; fi
}

case "${1:-}" in
  build) build ;;
  prepare) build && ensure_postgres ;;
  start) start "${2:?start DIR [PORT]}" "${3:-}" ;;
  stop) stop "${2:?stop DIR}" ;;
  *) echo "usage: scripts/temporal-cluster.sh build | prepare | start DIR [FRONTEND_PORT] | stop DIR" >&2; exit 2 ;;
esac
