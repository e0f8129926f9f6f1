#!/usr/bin/env bash
# Profile-guided build of pcap-analyzer (the build to deploy where speed
# matters): the compiler lays out and inlines the per-packet code by how
# often each branch and call ran on real work, not by guesses.
#
#   scripts/pgo-build.sh [--profile P] [--quick] [--keep] [CAPTURE ...]
#
# 1. builds pcap-analyzer instrumented (target/pgo-gen/);
# 2. runs it on the training captures, each with the default plugins at
#    -j 1 and -j 2 and with `-o` (the record files, the connection report,
#    the spilled runs and their merge), and the small ones once in each
#    record format;
# 3. merges the profiles (llvm-profdata of rustup's `llvm-tools` component,
#    the one matching rustc's LLVM; installed with `rustup component add
#    llvm-tools` when missing and rustup can);
# 4. builds pcap-analyzer with them, cargo profile P (default release-lto:
#    link-time optimisation too; the instrumented build uses the same, for
#    the profiles to match the code: a release-lto build given profiles of
#    a release build ran more instructions than the release build with
#    them), and copies it to target/pgo/.
#
# Training captures: the repo's testdata/pcap/, the CAPTUREs given (your
# own traffic is the best teacher: the build favours what it saw), and,
# when ../shared/bench/gen-pcap.py is there, two generated ones (a mixed
# capture and a DNS one, with seeds and sizes of their own, not the
# benchmark's captures). Nothing is trained on the files the benchmarks
# time unless you give them.
#
# --quick: small generated captures and the release profile (a check of the
# script, as CI runs it); --keep: keep the training directory.
#
# The binary computes the same results as any other build (the CI check
# compares their outputs byte for byte); only its speed differs. Exit
# status: 0 built, 1 a step failed, 2 usage, 3 llvm-profdata unavailable.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=release-lto
QUICK=0
KEEP=0
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE=$2; shift 2 ;;
    --quick) QUICK=1; PROFILE=release; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) [ -f "$1" ] || { echo "no such capture: $1" >&2; exit 2; }
       EXTRA+=("$(realpath "$1")"); shift ;;
  esac
done

sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
PROFDATA="$sysroot/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$PROFDATA" ] && command -v rustup > /dev/null; then
  timeout 300 rustup component add llvm-tools > /dev/null 2>&1 || true
fi
if [ ! -x "$PROFDATA" ]; then
  echo "llvm-profdata of rustc's LLVM not found ($PROFDATA): rustup component add llvm-tools" >&2
  exit 3
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pal-pgo.XXXXXX")
if [ "$KEEP" = 1 ]; then
  echo "training directory: $WORK" >&2
else
  trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK/raw" "$WORK/captures"
GEN_TARGET=target/pgo-gen
USE_TARGET=target/pgo-use
ROOT=$(pwd)

echo "== instrumented build ($PROFILE)" >&2
# the build scripts are instrumented too: their profiles go aside (a path
# that does not change, so that an unchanged tree is not built again)
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$ROOT/$GEN_TARGET/build-scripts" \
  cargo build --profile "$PROFILE" -q -p pcap-analyzer --target-dir "$GEN_TARGET"
dir_of() { [ "$1" = dev ] && echo debug || echo "$1"; }
GEN="$GEN_TARGET/$(dir_of "$PROFILE")/pcap-analyzer"

SMALL=(testdata/pcap/*.pcap testdata/pcap/*.pcapng)
CAPTURES=("${SMALL[@]}" "${EXTRA[@]}")
GENPY=../shared/bench/gen-pcap.py
if [ -f "$GENPY" ]; then
  if [ "$QUICK" = 1 ]; then sizes=(40000 12000 30000 9000); else sizes=(600000 60000 400000 120000); fi
  python3 "$GENPY" --seed 11 --packets "${sizes[0]}" --flows "${sizes[1]}" \
    --out "$WORK/captures/mixed.pcap" --quiet > /dev/null 2> "$WORK/gen.log" \
    || { cat "$WORK/gen.log" >&2; exit 1; }
  python3 "$GENPY" --seed 12 --mix dns --packets "${sizes[2]}" --flows "${sizes[3]}" \
    --out "$WORK/captures/dns.pcap" --quiet > /dev/null 2> "$WORK/gen.log" \
    || { cat "$WORK/gen.log" >&2; exit 1; }
  CAPTURES+=("$WORK/captures/mixed.pcap" "$WORK/captures/dns.pcap")
fi

# One training run (at most an hour: the instrumented build is slower):
# the output directory is the one place the run may write once it has
# dropped its rights (Landlock), so the profile is written there, then
# moved aside. A run that writes no profile stops the build: the training
# would be partial without a word.
n=0
train() { # ARGS... (the capture last)
  n=$((n + 1))
  local out="$WORK/out$n"
  mkdir -p "$out"
  local code=0
  LLVM_PROFILE_FILE="$out/pal-%p-%m.profraw" timeout 3600 "$GEN" -q -o "$out" "$@" \
    > /dev/null 2>&1 || code=$?
  # 3: results written, the input truncated or partly corrupt
  if [ "$code" -ne 0 ] && [ "$code" -ne 3 ]; then
    echo "training run failed (exit $code): pcap-analyzer -o DIR $*" >&2
    exit 1
  fi
  if ! mv "$out"/*.profraw "$WORK/raw/" 2> /dev/null; then
    echo "training run wrote no profile: pcap-analyzer -o DIR $*" >&2
    exit 1
  fi
  rm -rf "$out"
}

echo "== training on ${#CAPTURES[@]} captures" >&2
for c in "${CAPTURES[@]}"; do
  train -j 1 "$c"
  train -j 2 "$c"
done
for c in "${SMALL[@]}"; do
  for f in csv zeek parquet; do
    train -j 1 --format "$f" "$c"
  done
done
profiles=("$WORK"/raw/*.profraw)
"$PROFDATA" merge -o "$WORK/merged.profdata" "${profiles[@]}"
# named by its digest: cargo rebuilds when the flags change, not when the
# file behind them does
mkdir -p target/pgo
rm -f target/pgo/merged-*.profdata
merged="$ROOT/target/pgo/merged-$(sha256sum "$WORK/merged.profdata" | cut -c1-16).profdata"
cp "$WORK/merged.profdata" "$merged"

echo "== optimised build ($PROFILE, ${#profiles[@]} profiles)" >&2
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$merged" \
  cargo build --profile "$PROFILE" -q -p pcap-analyzer --target-dir "$USE_TARGET"
# copied beside and renamed: never a half-copied binary in its place
cp "$USE_TARGET/$(dir_of "$PROFILE")/pcap-analyzer" target/pgo/.pcap-analyzer.new
mv target/pgo/.pcap-analyzer.new target/pgo/pcap-analyzer
echo "target/pgo/pcap-analyzer"
