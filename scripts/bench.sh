#!/usr/bin/env bash
# Whole-process benchmark of pcap-analyzer against the floors, side by side,
# in alternating rounds (one warm-up round, then RUNS counted ones; medians).
#
#   scripts/bench.sh [--profile P | --pgo] [--runs N] [--readers] [FILE ...]
#   scripts/bench.sh [--profile P | --pgo] --callgrind
#
# Without FILE it uses two generated captures (made once in bench-out/ by
# ../shared/bench/gen-pcap.py): big.pcap (`--packets 5000000`, 4.16 GB of
# large frames, 100k flows) and dns.pcap (`--mix dns --packets 1000000
# --flows 300000`, small packets, many flows). For each capture it times:
#   floor         ../shared/bench/floor `flows FILE fx`: every record through
#                 pcap-parser and an FxHash 5-tuple table (the "flow floor")
#   pal-j1/-j2    pcap-analyzer -q, default plugins, no output directory
#   pal-j1-o/-j2-o  the same with -o (every record file written)
# and prints median wall seconds, packets/s, the ratio to the floor, the
# ratio of -o to no -o and of -j 2 to -j 1, and the peak RSS. `--readers`
# adds `cat` and the reading floors (bare pcap-parser, PAL's reader).
#
# --profile P builds and times PAL with cargo profile P (default release;
# release-lto is the whole-program optimised build, see Cargo.toml).
# --pgo times target/pgo/pcap-analyzer, the profile-guided build of
# scripts/pgo-build.sh (built first when missing: after a change to the
# code, run scripts/pgo-build.sh again).
#
# --callgrind prints instructions per packet (valgrind's callgrind: the same
# count on a busy machine) for the floor, pcap-analyzer -j 1 with the default
# plugins and with `-p connections`, on bench-out/cg.pcap (`--packets 300000
# --flows 20000`).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=5
PROFILE=release
READERS=0
CALLGRIND=0
PGO=0
FILES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    --readers) READERS=1; shift ;;
    --callgrind) CALLGRIND=1; shift ;;
    --pgo) PGO=1; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) FILES+=("$1"); shift ;;
  esac
done
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
SHARED=../shared/bench
[ -f "$SHARED/gen-pcap.py" ] || { echo "needs $SHARED (gen-pcap.py, floor/)" >&2; exit 1; }
mkdir -p bench-out
gen() { # FILE ARGS...: generate once
  local f=$1; shift
  [ -s "$f" ] || python3 "$SHARED/gen-pcap.py" "$@" --out "$f" --quiet
}

cargo build --profile "$PROFILE" -q -p pcap-analyzer
cargo build --profile "$PROFILE" -q -p libpcap-tools --example read_bench
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# ../shared may be read-only: build the floor into our own target directory
CARGO_TARGET_DIR=target/bench-floor cargo build --release -q \
  --manifest-path "$SHARED/floor/Cargo.toml" --bin flows 2> "$TMP/floor.log" \
  || { cat "$TMP/floor.log" >&2; exit 1; }
BIN=target/$PROFILE
PAL=$BIN/pcap-analyzer
if [ "$PGO" = 1 ]; then
  [ -x target/pgo/pcap-analyzer ] || scripts/pgo-build.sh > /dev/null
  PAL=target/pgo/pcap-analyzer
fi
FLOOR=target/bench-floor/release/flows

if [ "$CALLGRIND" = 1 ]; then
  command -v valgrind > /dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
  CG=bench-out/cg.pcap
  gen "$CG" --packets 300000 --flows 20000
  PACKETS=$($BIN/examples/read_bench "$CG" pal | sed -E 's/^pal: ([0-9]+) packets.*/\1/')
  printf '%-22s %16s %14s %10s\n' command instructions "per packet" "x floor"
  FLOOR_IR=
  for name in floor pal-default pal-connections; do
    case $name in
      floor) cmd=("$FLOOR" "$CG" fx) ;;
      pal-default) cmd=("$PAL" -q -j 1 "$CG") ;;
      pal-connections) cmd=("$PAL" -q -j 1 -p connections "$CG") ;;
    esac
    valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" "${cmd[@]}" \
      > /dev/null 2> "$TMP/cg.err"
    ir=$(sed -nE 's/.*Collected : ([0-9]+).*/\1/p' "$TMP/cg.err" | tail -1)
    [ -n "$FLOOR_IR" ] || FLOOR_IR=$ir
    awk -v n="$name" -v i="$ir" -v p="$PACKETS" -v f="$FLOOR_IR" \
      'BEGIN {printf "%-22s %16d %14.0f %10.2f\n", n, i, i/p, i/f}'
  done
  echo "($PACKETS packets in $CG)"
  exit 0
fi

if [ ${#FILES[@]} -eq 0 ]; then
  gen bench-out/big.pcap --packets 5000000
  gen bench-out/dns.pcap --mix dns --packets 1000000 --flows 300000
  FILES=(bench-out/big.pcap bench-out/dns.pcap)
fi

median() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for FILE in "${FILES[@]}"; do
  PACKETS=$($BIN/examples/read_bench "$FILE" pal | sed -E 's/^pal: ([0-9]+) packets.*/\1/')
  BYTES=$(stat -c %s "$FILE")
  cat "$FILE" > /dev/null  # page cache
  OUT=$TMP/out
  declare -A CMD=(
    [cat]="cat \"$FILE\""
    [bare-pcap-parser]="$BIN/examples/read_bench \"$FILE\" bare"
    [pal-reader]="$BIN/examples/read_bench \"$FILE\" pal"
    [floor]="$FLOOR \"$FILE\" fx"
    [pal-j1]="$PAL -q -j 1 \"$FILE\""
    [pal-j2]="$PAL -q -j 2 \"$FILE\""
    [pal-j1-o]="$PAL -q -j 1 -o $OUT \"$FILE\""
    [pal-j2-o]="$PAL -q -j 2 -o $OUT \"$FILE\""
  )
  ORDER=(floor pal-j1 pal-j2 pal-j1-o pal-j2-o)
  [ "$READERS" = 1 ] && ORDER=(cat bare-pcap-parser pal-reader "${ORDER[@]}")
  rm -f "$TMP"/t.*
  for round in $(seq 0 "$RUNS"); do
    for name in "${ORDER[@]}"; do
      rm -rf "$OUT"
      /usr/bin/time -f "%e %M" -o "$TMP/t" sh -c "${CMD[$name]} > /dev/null"
      [ "$round" -eq 0 ] && continue   # warm-up
      cat "$TMP/t" >> "$TMP/t.$name"
    done
  done
  rm -rf "$OUT"
  echo "== $FILE: $PACKETS packets, $BYTES bytes, $RUNS rounds"
  printf '%-18s %10s %12s %10s %12s\n' command "median s" packets/s "x floor" "peak RSS MB"
  F=$(median "$TMP/t.floor")
  for name in "${ORDER[@]}"; do
    sort -n "$TMP/t.$name" | awk -v p="$PACKETS" -v f="$F" -v n="$name" '
      {s[NR]=$1; if ($2 > m) m=$2}
      END {med=s[int((NR+1)/2)]; printf "%-18s %10.3f %12.0f %10.2f %12.1f\n", n, med, p/med, med/f, m/1024}'
  done
  J1=$(median "$TMP/t.pal-j1"); J2=$(median "$TMP/t.pal-j2")
  J1O=$(median "$TMP/t.pal-j1-o"); J2O=$(median "$TMP/t.pal-j2-o")
  awk -v a="$J1" -v b="$J2" -v c="$J1O" -v d="$J2O" 'BEGIN {
    printf "-j 2 / -j 1: %.2f without -o, %.2f with -o;  -o / no -o: %.2f at -j 1, %.2f at -j 2\n",
      b/a, d/c, c/a, d/b }'
  unset CMD
done
