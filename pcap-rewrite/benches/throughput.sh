#!/bin/sh
# Times the release binary on a large capture: for a few typical rewrites,
# the median wall time of RUNS runs (default 5), the input MB/s at that
# median, and the median CPU time (user + system; steadier than the wall
# time on a busy machine; needs /usr/bin/time, else "-").
#
# OUT=/dev/null measures without the cost of writing to disk. BIN chooses
# the binary. BASE=other-binary compares two builds in one sitting: each
# case runs BASE and BIN in turn, RUNS times each, and prints both.
#
#   python3 ../shared/bench/gen-pcap.py --packets 1000000 --out /tmp/rw1m.pcap --quiet
#   cargo build --release -p pcap-rewrite
#   sh pcap-rewrite/benches/throughput.sh /tmp/rw1m.pcap
set -eu
IN=${1:-/tmp/rw1m.pcap}
BIN=${BIN:-$(dirname "$0")/../../target/release/pcap-rewrite}
BASE=${BASE:-}
OUT=${OUT:-/tmp/pcap-rewrite-bench.out}
RUNS=${RUNS:-5}
SIZE=$(stat -c %s "$IN")
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# 1000 prefixes (100.64.0.0/10, matching none of the generated traffic, so
# that every one is looked at) as a key file, and 200 of them as rules
awk 'BEGIN { for (i = 0; i < 1000; i++) printf "100.%d.%d.0/24\n", 64 + int(i / 256), i % 256 }' \
    >"$TMP/nets.csv"
NET_RULES=$(head -n 200 "$TMP/nets.csv" | sed 's/^/-d net=/' | tr '\n' ' ')

once() { # tag binary args...: appends "wall cpu" to $TMP/tag
    tag=$1; bin=$2; shift 2
    t0=$(date +%s.%N)
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f '%U %S' -o "$TMP/one" "$bin" -q "$IN" "$OUT" "$@"
        cpu=$(awk '{ printf "%.2f", $1 + $2 }' "$TMP/one")
    else
        "$bin" -q "$IN" "$OUT" "$@"
        cpu=-
    fi
    t1=$(date +%s.%N)
    echo "$(echo "$t1 - $t0" | bc -l) $cpu" >>"$TMP/$tag"
}
median() { # tag column
    sort -n -k "$2" "$TMP/$1" | sed -n "$(( (RUNS + 1) / 2 ))p" | cut -d ' ' -f "$2"
}
report() { # label tag
    wall=$(median "$2" 1)
    printf '  %-4s wall %7.3f s  %8.1f MB/s  cpu %7s s\n' "$1" "$wall" \
        "$(echo "$SIZE / $wall / 1000000" | bc -l)" "$(median "$2" 2)"
}
run() { # name args...
    name=$1; shift
    : >"$TMP/new"
    : >"$TMP/base"
    i=0
    while [ "$i" -lt "$RUNS" ]; do
        if [ -n "$BASE" ]; then once base "$BASE" "$@"; fi
        once new "$BIN" "$@"
        i=$((i + 1))
    done
    echo "$name"
    if [ -n "$BASE" ]; then report base base; fi
    report new new
}
echo "input: $IN ($SIZE bytes), medians of $RUNS runs"
echo "new: $BIN"
if [ -n "$BASE" ]; then echo "base: $BASE"; fi
run "copy pcap->pcap"
run "pcap->pcapng" -o pcapng
run "pcap->pcap-ns" -o pcap-ns
run "filter -k port=443" -k port=443
run "filter -d net=10.0.0.0/8" -d net=10.0.0.0/8
# shellcheck disable=SC2086 # one word per rule
run "filter 200 x -d net=" $NET_RULES
run "--drop-keys 1000 prefixes" --drop-keys "$TMP/nets.csv"
run "--link raw" --link raw
run "--link raw -k port=443" --link raw -k port=443
run "--fix-checksums" --fix-checksums
# remove only a regular file we wrote (never a device such as /dev/null)
if [ -f "$OUT" ]; then rm -f "$OUT"; fi
