#!/usr/bin/env bash
# Peak RSS of pcap-analyzer on hostile floods (issue 13: memory has one
# ceiling whatever -j is). For each flood kind, writes a deterministic
# capture with test-analyzer's pal-flood (libpcap_analyzer::flood), runs
# `pcap-analyzer -q -j J -o OUT FILE` for each J and prints the peak RSS
# (/usr/bin/time -f %M) in MB. Target: under 512 MB everywhere.
#
#   scripts/flood-rss.sh [PACKETS] [KINDS...]
#
# PACKETS defaults to 3000000; KINDS to every kind (syn fragments far-ahead
# malformed-dns dns-flows quic-initials). JOBS="1 2 0" (the default) sets
# the -j values; EXTRA="-c my.conf" adds options. Files go to a temporary
# directory (TMPDIR; one capture at a time, the largest quic-initials: 3.8
# GB at 3M packets), removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKETS=${1:-3000000}
shift || true
KINDS=("$@")
[ ${#KINDS[@]} -gt 0 ] || KINDS=(syn fragments far-ahead malformed-dns dns-flows quic-initials)
JOBS=${JOBS:-"1 2 0"}
EXTRA=${EXTRA:-}
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
cargo build --release -q -p pcap-analyzer -p test-analyzer
BIN=$PWD/target/release
TMP=$(mktemp -d "${TMPDIR:-/tmp}/pal-flood.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
printf '%-14s %10s' flood packets
for j in $JOBS; do printf ' %9s' "-j $j MB"; done
printf '   %s\n' "exit codes"
for kind in "${KINDS[@]}"; do
  "$BIN/pal-flood" "$kind" "$PACKETS" "$TMP/$kind.pcap"
  printf '%-14s %10s' "$kind" "$PACKETS"
  codes=""
  for j in $JOBS; do
    rm -rf "$TMP/out"
    set +e
    # shellcheck disable=SC2086 # EXTRA is a list of options
    /usr/bin/time -f %M -o "$TMP/rss" "$BIN/pcap-analyzer" -q -j "$j" $EXTRA \
      -o "$TMP/out" "$TMP/$kind.pcap" > /dev/null 2> "$TMP/err"
    code=$?
    set -e
    kb=$(tail -n 1 "$TMP/rss")
    printf ' %9s' "$((kb / 1024))"
    codes="$codes $code"
  done
  printf '  %s\n' "$codes"
  rm -f "$TMP/$kind.pcap"
done
