#!/usr/bin/env bash
# The Spark test (spark/README.md): a generated capture of more than 1M
# packets cut into 8 time shards by `pcap-rewrite --split time`, analysed by
# pal_spark.py on Spark local[2] (plain and gzip shards), must give what one
# `pcap-analyzer -j 2` run over the whole capture gives.
#
# Needs Java 17+ (installed with apt-get when missing and run as root) and
# pyspark + pyarrow: python3's own when it has them, else from PyPI into a
# virtualenv (PAL_SPARK_VENV, default ~/.cache/pal-spark-venv, kept between
# runs). Without them and without root
# it prints SKIP and exits 0; as root (CI) a failed install fails the test.
# Uses the pcap-analyzer and pcap-rewrite built by `cargo test --workspace`
# (target/debug; PAL_BIN_DIR to choose another build).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN_DIR=$(cd "${PAL_BIN_DIR:-target/debug}" && pwd)
SHARED=${PAL_SHARED:-$ROOT/../shared}
VENV=${PAL_SPARK_VENV:-$HOME/.cache/pal-spark-venv}
PACKETS=${PAL_SPARK_PACKETS:-1000000}
START=1700006100   # 2023-11-14T23:55:00Z: the capture crosses midnight (two day partitions)
PERIOD=75
SHARDS=8
T_BEGIN=$(date +%s)

# the merge's own unit tests first: they need neither Java nor Spark
timeout 120 python3 -m unittest discover -s spark -p 'test_*.py'

is_root() { [ "$(id -u)" -eq 0 ]; }
skip_or_fail() {
  if is_root; then echo "spark test: $1 (as root: failing)" >&2; exit 1; fi
  echo "SKIP spark test: $1"; exit 0
}
java_ok() { java -version 2>&1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])'; }

if ! java_ok; then
  if is_root && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    # Debian 12 has openjdk-17; later releases only newer ones (default-jre)
    timeout 300 apt-get install -y -qq openjdk-17-jre-headless >/dev/null ||
      timeout 300 apt-get install -y -qq default-jre-headless >/dev/null || true
  fi
  java_ok || skip_or_fail "Java 17+ not available"
fi
if python3 -c 'import pyspark, pyarrow' 2>/dev/null; then
  PY=$(command -v python3)
else
  if ! "$VENV/bin/python" -c 'import pyspark, pyarrow' 2>/dev/null; then
    rm -rf "$VENV"
    python3 -m venv "$VENV" || skip_or_fail "python3 -m venv failed"
    timeout 600 "$VENV/bin/pip" install -q --disable-pip-version-check \
      'pyspark>=3.5,<5' 'pyarrow>=14' 'pandas>=2,<3' || skip_or_fail "pip install pyspark failed"
  fi
  PY=$VENV/bin/python
fi
SPARK_SUBMIT=$("$PY" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "bin", "spark-submit"))')
[ -x "$BIN_DIR/pcap-analyzer" ] && [ -x "$BIN_DIR/pcap-rewrite" ] ||
  { echo "spark test: $BIN_DIR/pcap-analyzer or pcap-rewrite missing (cargo build first)" >&2; exit 1; }
[ -f "$SHARED/bench/gen-pcap.py" ] || skip_or_fail "$SHARED/bench/gen-pcap.py not found"
echo "spark test: tools ready in $(( $(date +%s) - T_BEGIN )) s ($(java -version 2>&1 | head -1); pyspark $("$PY" -c 'import pyspark; print(pyspark.__version__)'))"

# A step that fails says which one, with its exit code (124: its deadline;
# 137: killed, e.g. by the OOM killer), rather than ending the script mute.
trap 'echo "spark test: FAIL: the step at line $LINENO of spark/ci-test.sh exited with $?" >&2' ERR

# Disk: the 1M-packet capture is about 600 MB; it, its shards, their gzip
# copies, the single run's files and Spark's outputs and scratch peak near
# 1.5 GB. The work directory is the first of $TMPDIR (or /tmp), /var/tmp and
# the build's target directory with NEED_MB free: a small tmpfs /tmp must not
# fail the test half-way with "no space left" (or, worse, mid-write).
NEED_MB=${PAL_SPARK_NEED_MB:-$((PACKETS * 2 / 1000))}
avail_mb() { df -Pk "$1" 2>/dev/null | awk 'NR == 2 { print int($4 / 1024) }'; }
WORK_PARENT=
seen=
for d in "${TMPDIR:-/tmp}" /var/tmp "$ROOT/target"; do
  [ -d "$d" ] && [ -w "$d" ] || continue
  a=$(avail_mb "$d"); a=${a:-0}
  seen="$seen $d: ${a} MB;"
  if [ "$a" -ge "$NEED_MB" ]; then WORK_PARENT=$d; break; fi
done
# Too little disk is this machine's limit, not the job's fault: SKIP, saying
# so, even as root (the missing tools above fail a root run instead).
[ -n "$WORK_PARENT" ] || { echo "SKIP spark test: no directory with ${NEED_MB} MB free for the capture and its shards (free:$seen)"; exit 0; }
WORK=$(mktemp -d "$WORK_PARENT/pal-spark-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
echo "spark test: working in $WORK ($(avail_mb "$WORK") MB free, ${NEED_MB} MB needed)"
# gen-pcap's --quiet drops its progress lines; its errors still show
timeout 300 python3 "$SHARED/bench/gen-pcap.py" --quiet --packets "$PACKETS" --flows 100000 \
  --start "$START" --duration $((PERIOD * SHARDS - 15)) --out base.pcap >/dev/null
timeout 300 python3 "$ROOT/spark/gen-crossing.py" --base base.pcap --out capture.pcap \
  --start "$START" --period "$PERIOD" --shards "$SHARDS"
rm base.pcap
timeout 300 "$BIN_DIR/pcap-rewrite" -q --split time --split-every "$PERIOD" capture.pcap shards
n=$(ls shards/*.pcap | wc -l)
[ "$n" -eq "$SHARDS" ] || { echo "spark test: $n shards, expected $SHARDS" >&2; ls shards >&2; exit 1; }
mkdir gz
for f in shards/*.pcap; do gzip -1 -c "$f" > "gz/$(basename "$f").gz"; done
timeout 600 "$BIN_DIR/pcap-analyzer" -q -j 2 --format jsonl -o whole capture.pcap
rm capture.pcap   # the checks compare with whole/; the shards stay for Spark
mkdir spark-local
echo "spark test: capture, shards and single run ready at $(( $(date +%s) - T_BEGIN )) s"

export PYSPARK_PYTHON=$PY PYSPARK_DRIVER_PYTHON=$PY
run_spark() { # INPUT OUT [ARGS...]
  local input=$1 out=$2; shift 2
  timeout 600 "$SPARK_SUBMIT" --master 'local[2]' --driver-memory 2g \
    --conf spark.ui.enabled=false --conf spark.ui.showConsoleProgress=false \
    --conf "spark.local.dir=$WORK/spark-local" \
    "$ROOT/spark/pal_spark.py" --input "$input" --out "$out" \
    --bin "$BIN_DIR/pcap-analyzer" "$@" 2> "$out.log" ||
    { echo "spark test: spark-submit failed" >&2; tail -40 "$out.log" >&2; exit 1; }
}
rc=0
run_spark "$WORK/shards/*.pcap" "$WORK/out-plain"
"$PY" "$ROOT/spark/check_spark_run.py" --whole whole --spark out-plain --label plain || rc=1
# gzip shards, read by Spark itself (binaryFiles) and piped to the tasks
run_spark "file://$WORK/gz" "$WORK/out-gz" --read binary
"$PY" "$ROOT/spark/check_spark_run.py" --whole whole --spark out-gz --label gzip || rc=1
ls out-plain/flows | grep -q '^day=2023-11-14$' && ls out-plain/flows | grep -q '^day=2023-11-15$' ||
  { echo "FAIL: flows not partitioned by day: $(ls out-plain/flows)"; rc=1; }
echo "spark test: done in $(( $(date +%s) - T_BEGIN )) s"
exit $rc
