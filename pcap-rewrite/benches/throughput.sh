#!/bin/sh
# Times the release binary on a large capture and prints MB/s (input bytes
# per second of wall time, best of 3 runs) for a few typical rewrites.
# OUT=/dev/null measures without the cost of writing to disk.
#
#   python3 ../shared/bench/gen-pcap.py --packets 1000000 --out /tmp/rw1m.pcap --quiet
#   cargo build --release -p pcap-rewrite
#   sh pcap-rewrite/benches/throughput.sh /tmp/rw1m.pcap
set -eu
IN=${1:-/tmp/rw1m.pcap}
BIN=${BIN:-$(dirname "$0")/../../target/release/pcap-rewrite}
OUT=${OUT:-/tmp/pcap-rewrite-bench.out}
SIZE=$(stat -c %s "$IN")
run() { # name args...
    name=$1; shift
    best=""
    for _ in 1 2 3; do
        t0=$(date +%s.%N)
        "$BIN" -q "$IN" "$OUT" "$@"
        t1=$(date +%s.%N)
        t=$(echo "$t1 - $t0" | bc -l)
        if [ -z "$best" ] || [ "$(echo "$t < $best" | bc -l)" = 1 ]; then best=$t; fi
    done
    printf '%-28s %8.3f s  %8.1f MB/s\n' "$name" "$best" "$(echo "$SIZE / $best / 1000000" | bc -l)"
}
echo "input: $IN ($SIZE bytes)"
run "copy pcap->pcap"
run "pcap->pcapng" -o pcapng
run "pcap->pcap-ns" -o pcap-ns
run "filter -k port=443" -k port=443
run "filter -d net=10.0.0.0/8" -d net=10.0.0.0/8
run "--link raw" --link raw
run "--fix-checksums" --fix-checksums
# remove only a regular file we wrote (never a device such as /dev/null)
if [ -f "$OUT" ]; then rm -f "$OUT"; fi
