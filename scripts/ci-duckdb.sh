#!/usr/bin/env bash
# The outputs read by tools that are not PAL's (issue 14): DuckDB joins
# connections, flows and dns on flow_id from Parquet and from JSON lines and
# must get the same rows with real timestamps; parsezeeklogs (a Zeek log
# reader from PyPI) reads the Zeek TSV logs, which must hold the JSON lines'
# records. Run by .ci/run after the cargo tests; usable by hand.
#
# Installs duckdb and parsezeeklogs from PyPI into a venv under target/
# (no system packages touched). A failed install fails the run: these checks
# are part of CI, not optional. PAL_BIN picks the binary (default: the
# debug build, brought up to date first).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/ci-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || {
    echo "error: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2
    exit 1
  }
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
  'duckdb>=1.1' 'parsezeeklogs>=3.0' || {
  echo "error: pip could not install duckdb and parsezeeklogs from PyPI" >&2
  exit 1
}
bin=${PAL_BIN:-}
if [ -z "$bin" ]; then
  # a no-op after `cargo test --workspace`; never a stale binary
  cargo build -q -p pcap-analyzer
  bin=target/debug/pcap-analyzer
fi
exec timeout 900 "$venv/bin/python" scripts/check_outputs.py --bin "$bin"
