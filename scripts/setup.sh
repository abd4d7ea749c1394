#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: the pinned Temporal CLI (dev server) in a git-ignored tools/ folder.
# node_modules come from `npm ci`, which the quick-start commands run first.
set -euo pipefail
cd "$(dirname "$0")/.."

TEMPORAL_CLI_VERSION="v1.5.1"   # newest tag without a replace directive in go.mod: later tags refuse `go install`
TOOLS_DIR="$PWD/tools"
BIN="$TOOLS_DIR/bin/temporal"
STAMP="$TOOLS_DIR/bin/.temporal-version"

suitable() { # a temporal CLI whose dev server takes the flags temporal-dev.yaml needs
  "$1" server start-dev --help 2>/dev/null | grep -q -- '--search-attribute' &&
    "$1" server start-dev --help 2>/dev/null | grep -q -- '--db-filename'
}

ensure_test_python() { # a venv with the Python readers the tests use on our outputs (pyarrow, ...)
  local venv="$TOOLS_DIR/py" req="test/requirements.txt"
  if [[ -x "$venv/bin/python" ]] && cmp -s "$req" "$venv/.requirements" 2>/dev/null; then return 0; fi
  echo "setup: installing the tests' Python readers into tools/py ($(grep -v '^#' "$req" | tr '\n' ' '))" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$venv/.requirements"
}
ensure_chromium() { # headless Chromium for the review-gallery test (Debian's package; CHROMIUM= points elsewhere)
  if [[ -n "${CHROMIUM:-}" ]] || command -v chromium >/dev/null 2>&1; then return 0; fi
  echo "setup: installing Debian's chromium for the gallery test" >&2
  if [[ "$(id -u)" == "0" ]]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "setup: could not install chromium; the gallery test will say so" >&2
  else
    echo "setup: not root: install chromium (apt-get install chromium) or set CHROMIUM=/path/to/chromium" >&2
  fi
}

ensure_openssl() { # the TLS test makes its own CA and certificates with openssl (Debian's package)
  if command -v openssl >/dev/null 2>&1; then return 0; fi
  echo "setup: installing Debian's openssl for the TLS test" >&2
  if [[ "$(id -u)" == "0" ]]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null) || echo "setup: could not install openssl; the TLS test will say so" >&2
  else
    echo "setup: not root: install openssl (apt-get install openssl)" >&2
  fi
}

if [[ "${1:-}" == "--tests" ]]; then
  ensure_test_python
  ensure_chromium
  ensure_openssl
  # The production server test: the Temporal server and its SQL tool built from the Go module, and PostgreSQL 15.
  bash scripts/temporal-cluster.sh prepare
fi

if [[ -x "$BIN" ]] && [[ "$(cat "$STAMP" 2>/dev/null)" == "$TEMPORAL_CLI_VERSION" ]]; then
  exit 0
fi
if [[ -n "${TEMPORAL_CLI:-}" ]] && suitable "$TEMPORAL_CLI"; then
  mkdir -p "$TOOLS_DIR/bin"; ln -sf "$TEMPORAL_CLI" "$BIN"; echo "$TEMPORAL_CLI_VERSION" > "$STAMP"; exit 0
fi
if command -v temporal >/dev/null 2>&1 && suitable "$(command -v temporal)"; then
  mkdir -p "$TOOLS_DIR/bin"; ln -sf "$(command -v temporal)" "$BIN"; echo "$TEMPORAL_CLI_VERSION" > "$STAMP"; exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "setup: no 'temporal' CLI ${TEMPORAL_CLI_VERSION} on PATH and no Go toolchain to build it." >&2
  echo "setup: install Go, or install the Temporal CLI as docs.temporal.io describes and set TEMPORAL_CLI=/path/to/temporal." >&2
  exit 1
fi
echo "setup: building the Temporal CLI ${TEMPORAL_CLI_VERSION} with go install (first run only, a few minutes)..." >&2
mkdir -p "$TOOLS_DIR/bin"
GOBIN="$TOOLS_DIR/bin" GOFLAGS="-trimpath" go install "github.com/temporalio/cli/cmd/temporal@${TEMPORAL_CLI_VERSION}"
echo "$TEMPORAL_CLI_VERSION" > "$STAMP"
"$BIN" --version >&2
