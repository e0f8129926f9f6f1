#!/usr/bin/env bash
# Whole-process benchmark of pcap-analyzer against the reading floors, side by
# side on one file: `cat`, a bare pcap-parser loop, our reader alone, and
# pcap-analyzer with the default plugins at -j 1 and -j 2. For each command:
# median wall seconds over RUNS alternating rounds (after one warm-up round),
# packets/s, MB/s and peak RSS (/usr/bin/time -f %M).
#
#   scripts/bench.sh [FILE] [RUNS]
#
# Without FILE it makes ../bench-out/big.pcap with
# `python3 ../shared/bench/gen-pcap.py --packets 5000000` (4.16 GB, ~45 s).
set -euo pipefail
cd "$(dirname "$0")/.."
FILE=${1:-}
RUNS=${2:-5}
if [ -z "$FILE" ]; then
  mkdir -p bench-out
  FILE=bench-out/big.pcap
  [ -s "$FILE" ] || python3 ../shared/bench/gen-pcap.py --packets 5000000 --out "$FILE" --quiet
fi
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
cargo build --release -q -p pcap-analyzer
cargo build --release -q -p libpcap-tools --example read_bench
BIN=target/release
PACKETS=$($BIN/examples/read_bench "$FILE" pal | sed -E 's/^pal: ([0-9]+) packets.*/\1/')
BYTES=$(stat -c %s "$FILE")
cat "$FILE" > /dev/null  # page cache

declare -A CMD=(
  [cat]="sh -c 'cat \"$FILE\" > /dev/null'"
  [bare-pcap-parser]="$BIN/examples/read_bench \"$FILE\" bare"
  [pal-reader]="$BIN/examples/read_bench \"$FILE\" pal"
  [pal-j1]="$BIN/pcap-analyzer -q -j 1 \"$FILE\""
  [pal-j2]="$BIN/pcap-analyzer -q -j 2 \"$FILE\""
)
ORDER=(cat bare-pcap-parser pal-reader pal-j1 pal-j2)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for round in $(seq 0 "$RUNS"); do
  for name in "${ORDER[@]}"; do
    /usr/bin/time -f "%e %M" -o "$TMP/t" sh -c "${CMD[$name]} > /dev/null"
    [ "$round" -eq 0 ] && continue   # warm-up
    cat "$TMP/t" >> "$TMP/$name"
  done
done
printf '%-18s %10s %12s %10s %10s %12s\n' command "median s" packets/s MB/s "x cat" "peak RSS MB"
CAT=$(sort -n "$TMP/cat" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
for name in "${ORDER[@]}"; do
  sort -n "$TMP/$name" | awk -v p="$PACKETS" -v b="$BYTES" -v c="$CAT" -v n="$name" '
    {s[NR]=$1; if ($2 > m) m=$2}
    END {med=s[int((NR+1)/2)]; printf "%-18s %10.3f %12.0f %10.0f %10.2f %12.1f\n", n, med, p/med, b/1e6/med, med/c, m/1024}'
done
J1=$(sort -n "$TMP/pal-j1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
J2=$(sort -n "$TMP/pal-j2" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "pal -j 2 / -j 1 wall: $(awk -v a="$J2" -v b="$J1" 'BEGIN {printf "%.2f", a/b}')  ($PACKETS packets, $BYTES bytes)"
