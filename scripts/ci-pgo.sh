#!/usr/bin/env bash
# CI check of the profile-guided build (scripts/pgo-build.sh --quick): it
# must build, and its results must be the debug build's, byte for byte,
# on the repo's captures and a generated one, at -j 1 and -j 2 (every file
# but the manifest and the log, which hold times). Run by .ci/run after the
# cargo tests; usable by hand. Prints SKIP (exit 0) when rustc's
# llvm-profdata cannot be had (rustup's llvm-tools component).
set -euo pipefail
cd "$(dirname "$0")/.."
code=0
log=$(mktemp)
work=$(mktemp -d)
trap 'rm -rf "$log" "$work"' EXIT
timeout 2400 scripts/pgo-build.sh --quick > "$log" 2>&1 || code=$?
if [ "$code" -eq 3 ]; then
  echo "SKIP pgo build: $(tail -1 "$log")"
  exit 0
fi
if [ "$code" -ne 0 ]; then
  cat "$log" >&2
  echo "FAIL pgo build (exit $code)"
  exit 1
fi
pgo=target/pgo/pcap-analyzer
# a no-op after `cargo test --workspace`; never a stale binary
cargo build -q -p pcap-analyzer
ref=target/debug/pcap-analyzer
captures=(testdata/pcap/sample.pcap testdata/pcap/sample.pcapng)
if [ -f ../shared/bench/gen-pcap.py ]; then
  python3 ../shared/bench/gen-pcap.py --seed 5 --packets 20000 --flows 3000 \
    --out "$work/mixed.pcap" --quiet > /dev/null 2> "$work/gen.log" \
    || { cat "$work/gen.log" >&2; exit 1; }
  captures+=("$work/mixed.pcap")
fi
failed=0
for c in "${captures[@]}"; do
  for j in 1 2; do
    for b in pgo ref; do
      bin=$pgo
      [ "$b" = ref ] && bin=$ref
      timeout 300 "$bin" -q -j "$j" -o "$work/$b" "$c" > /dev/null 2>&1 || {
        rc=$?
        [ "$rc" -eq 3 ] || { echo "FAIL pgo: $b -j $j $c exited $rc"; failed=1; }
      }
    done
    if [ "$(ls "$work/ref")" != "$(ls "$work/pgo")" ]; then
      echo "FAIL pgo: not the same files on $c at -j $j"
      failed=1
    fi
    # no file but the manifest and the log (or none) is a failure said
    # below, not a silent exit of grep under pipefail
    files=$(ls "$work/ref" 2> /dev/null | grep -v -e '^run.json$' -e '^pcap-analyzer.log$' || true)
    [ -n "$files" ] || { echo "FAIL pgo: no output for $c"; failed=1; }
    for f in $files; do
      cmp -s "$work/ref/$f" "$work/pgo/$f" || {
        echo "FAIL pgo: $f differs on $c at -j $j"
        failed=1
      }
    done
    rm -rf "$work/ref" "$work/pgo"
  done
done
if [ "$failed" -ne 0 ]; then
  exit 1
fi
echo "ok pgo build: results identical to the debug build's on ${#captures[@]} captures at -j 1 and -j 2"
