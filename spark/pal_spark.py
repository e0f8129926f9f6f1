#!/usr/bin/env python3
"""Analyse a set of capture files on Apache Spark with pcap-analyzer and
write what one run over the same files, in time order, would give.

    spark-submit --py-files spark/pal_merge.py spark/pal_spark.py \\
        --input 'hdfs:///caps/2023-11-14/*.pcap.gz' --out hdfs:///pal/out \\
        [--plugins dns,tls] [--bin ./pcap-analyzer] [--config pal.conf] [--hour]

Each capture file is one Spark task: the file's bytes are streamed into
``pcap-analyzer -`` (standard input; gzip/xz/lz4/zstd/bzip2 are recognised
by content) on the executor, which writes its records as JSON lines into a
temporary directory; the task reads them back and returns them. The driver
orders the shards by their first packet, merges them with pal_merge (flows
cut at a file boundary stitched back, connection report rows summed, ...)
and writes one Parquet dataset per record kind under ``--out``, partitioned
by ``day`` (and ``hour`` with ``--hour``), plus ``summary.json`` (what the
merge counted, per-shard timings). See spark/README.md.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import pal_merge  # noqa: E402  (shipped to executors with --py-files or addPyFile)

# Plugins whose records the merge needs, always run.
REQUIRED_PLUGINS = ["flows", "connections", "basic-stats"]
KIND_TIME = {"flows": "first", "connections": "first", "dns": "ts", "tls": "ts",
             "community_id": "ts"}
SCHEMA_FILES = {"flows": "flow", "connections": "connection", "dns": "dns", "tls": "tls",
                "community_id": "community_id"}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", required=True,
                    help="capture file, directory or glob (any Hadoop filesystem)")
    ap.add_argument("--out", required=True, help="output directory (Parquet datasets)")
    ap.add_argument("--plugins", default="",
                    help="extra plugins, comma-separated (flows, connections and "
                         "basic-stats always run; default: every default plugin)")
    ap.add_argument("--bin", default="pcap-analyzer",
                    help="pcap-analyzer on the executors: an absolute path present on every "
                         "node, or the name of a file shipped with --files (default: "
                         "pcap-analyzer, from --files or PATH)")
    ap.add_argument("--config", default=None,
                    help="pcap-analyzer configuration (TOML; shipped with --files or a path on "
                         "every node); its [flows] timeouts are used by the merge")
    ap.add_argument("--jobs", type=int, default=1,
                    help="pcap-analyzer -j per task (match spark.task.cpus; default 1)")
    ap.add_argument("--hour", action="store_true", help="partition by day and hour")
    ap.add_argument("--read", choices=["auto", "stream", "binary"], default="auto",
                    help="stream: each task opens its local file and streams it; binary: "
                         "Spark reads the file (binaryFiles: HDFS, S3, ...) and the task "
                         "pipes its bytes; auto: stream for local files")
    ap.add_argument("--task-timeout", type=float, default=3600.0,
                    help="seconds one pcap-analyzer run may take (default 3600)")
    ap.add_argument("--format", choices=["parquet", "jsonl"], default="parquet",
                    help="output format of the datasets (default parquet)")
    return ap.parse_args(argv)


def _resolve_bin(name):
    if os.path.isabs(name) and os.access(name, os.X_OK):
        return name
    try:
        from pyspark import SparkFiles
        p = SparkFiles.get(os.path.basename(name))
        if os.path.exists(p):
            if not os.access(p, os.X_OK):
                os.chmod(p, 0o755)
            return p
    except Exception:  # noqa: BLE001  (no SparkContext: plain path lookup)
        pass
    p = shutil.which(name)
    if p:
        return p
    if os.path.exists(name):
        return os.path.abspath(name)
    raise RuntimeError("pcap-analyzer not found on this executor: %r (ship it with --files "
                       "or give an absolute --bin)" % name)


def _resolve_file(name):
    if name is None:
        return None
    if os.path.exists(name):
        return os.path.abspath(name)
    from pyspark import SparkFiles
    p = SparkFiles.get(os.path.basename(name))
    if os.path.exists(p):
        return p
    raise RuntimeError("configuration not found on this executor: %r" % name)


def analyse(name, chunks, opts):
    """Runs pcap-analyzer over one capture (``chunks``: an iterable of bytes)
    and returns (name, Shard, facts)."""
    binary = _resolve_bin(opts["bin"])
    plugins = list(REQUIRED_PLUGINS)
    for p in opts["plugins"]:
        if p not in plugins:
            plugins.append(p)
    # without --plugins: every default plugin (the three above among them)
    select = ["-p", ",".join(plugins)] if opts["plugins"] else []
    tmp = tempfile.mkdtemp(prefix="pal-spark-")
    try:
        out = os.path.join(tmp, "out")
        stats = os.path.join(tmp, "stats.json")
        cmd = [binary, "-q", "-j", str(opts["jobs"]), "--format", "jsonl", "-o", out,
               "--stats-json", stats] + select
        if opts.get("config"):
            cmd += ["-c", _resolve_file(opts["config"])]
        cmd.append("-")
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        err_buf = []
        reader = threading.Thread(target=lambda: err_buf.append(proc.stderr.read()), daemon=True)
        reader.start()
        fed = 0
        deadline = t0 + opts["task_timeout"]
        timer = threading.Timer(opts["task_timeout"], proc.kill)
        timer.start()
        try:
            for chunk in chunks:
                proc.stdin.write(chunk)
                fed += len(chunk)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            rc = proc.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        timer.cancel()
        reader.join(10)
        err = (err_buf[0] if err_buf else b"").decode("utf-8", "replace")
        t_run = time.time() - t0
        if time.time() >= deadline:
            raise RuntimeError("%s: pcap-analyzer took more than %.0f s" % (name, opts["task_timeout"]))
        # 3: input cut or damaged, every packet before the damage analysed
        if rc not in (0, 3):
            raise RuntimeError("%s: pcap-analyzer exit %d: %s" % (name, rc, err.strip()[-2000:]))
        t1 = time.time()
        shard = pal_merge.read_dir(name, out)
        facts = {"name": name, "exit": rc, "input_bytes": fed, "analyse_s": round(t_run, 3),
                 "read_back_s": round(time.time() - t1, 3)}
        if os.path.exists(stats):
            with open(stats, encoding="utf-8") as fh:
                s = json.load(fh)
            facts["packets"] = s.get("packets")
            facts["losses"] = s.get("losses")
        if rc == 3:
            facts["warning"] = err.strip()[-500:]
        return name, shard, facts
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _local_path(uri):
    if uri.startswith("file:"):
        p = uri[5:]
        while p.startswith("//"):
            p = p[1:]
        return p
    if "://" not in uri:
        return uri
    return None


def _file_chunks(path, size=1 << 20):
    with open(path, "rb") as fh:
        while True:
            b = fh.read(size)
            if not b:
                return
            yield b


def _bytes_chunks(data, size=1 << 20):
    view = memoryview(data)
    for i in range(0, len(view), size):
        yield view[i:i + size]


def list_inputs(spark, pattern):
    """(uri, size) of every capture file the pattern names (glob, directory
    or file), sorted by name, through Hadoop's FileSystem."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path(pattern)
    fs = path.getFileSystem(conf)
    statuses = fs.globStatus(path) or []
    files = []
    for st in statuses:
        if st.isDirectory():
            for c in fs.listStatus(st.getPath()):
                if c.isFile() and not c.getPath().getName().startswith((".", "_")):
                    files.append((c.getPath().toString(), c.getLen()))
        elif st.isFile():
            files.append((st.getPath().toString(), st.getLen()))
    return sorted(set(files))


def flow_timeouts(config_path):
    """The [flows] timeouts of a pcap-analyzer configuration (defaults without one)."""
    t = dict(pal_merge.DEFAULT_TIMEOUTS)
    if config_path:
        import tomllib
        with open(config_path, "rb") as fh:
            conf = tomllib.load(fh)
        for k in t:
            if k in conf.get("flows", {}):
                t[k] = float(conf["flows"][k])
    return t


def spark_schema(kind, records, schema_dir):
    """A Spark schema for ``records``: the project's JSON Schema of the kind
    when every field is in it, else one inferred from the values (objects
    and lists of objects as JSON text)."""
    from pyspark.sql import types as T
    simple = {"string": T.StringType(), "integer": T.LongType(), "number": T.DoubleType(),
              "boolean": T.BooleanType()}
    keys = []
    seen = set()
    for r in records:
        for k in r:
            if k not in seen:
                seen.add(k)
                keys.append(k)
    props = {}
    p = os.path.join(schema_dir, "%s.schema.json" % SCHEMA_FILES.get(kind, kind))
    if os.path.exists(p):
        with open(p, encoding="utf-8") as fh:
            props = json.load(fh).get("properties", {})
    fields = []
    encode = set()

    def from_json_schema(spec):
        t = spec.get("type")
        if isinstance(t, list):
            t = [x for x in t if x != "null"][0] if [x for x in t if x != "null"] else "string"
        if t == "array":
            item = from_json_schema(spec.get("items", {"type": "string"}))
            return T.ArrayType(item) if item is not None else None
        return simple.get(t)

    for k in keys:
        dt = from_json_schema(props[k]) if k in props else None
        if dt is None:
            kinds = set()
            for r in records:
                v = r.get(k)
                if v is None:
                    continue
                if isinstance(v, bool):
                    kinds.add("boolean")
                elif isinstance(v, int):
                    kinds.add("integer")
                elif isinstance(v, float):
                    kinds.add("number")
                elif isinstance(v, str):
                    kinds.add("string")
                elif isinstance(v, list) and all(isinstance(x, str) for x in v):
                    kinds.add("strings")
                elif isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool)
                                                 for x in v):
                    kinds.add("integers")
                else:
                    kinds.add("json")
            if kinds == {"integer", "number"}:
                kinds = {"number"}
            if len(kinds) == 1 and kinds != {"json"}:
                (kk,) = kinds
                dt = {"strings": T.ArrayType(T.StringType()),
                      "integers": T.ArrayType(T.LongType())}.get(kk) or simple[kk]
            else:
                dt = T.StringType()
                if kinds - {"string"}:
                    encode.add(k)
        fields.append(T.StructField(k, dt, True))
    return T.StructType(fields), keys, encode


def _data_frame(spark, rows, schema):
    """A DataFrame of ``rows`` (lists in ``schema``'s order): through an
    Arrow table when pyarrow is there (columnar: several times faster than
    pickling rows), else from the rows."""
    try:
        import pyarrow as pa
        from pyspark.sql import types as T
    except ImportError:
        return spark.createDataFrame(rows, schema)

    def arrow_type(dt):
        if isinstance(dt, T.ArrayType):
            return pa.list_(arrow_type(dt.elementType))
        return {T.StringType: pa.string(), T.LongType: pa.int64(), T.DoubleType: pa.float64(),
                T.BooleanType: pa.bool_()}[type(dt)]

    try:
        arrays = [pa.array([r[i] for r in rows], type=arrow_type(f.dataType))
                  for i, f in enumerate(schema.fields)]
        table = pa.Table.from_arrays(arrays, names=[f.name for f in schema.fields])
    except (pa.ArrowException, KeyError, TypeError, ValueError):
        return spark.createDataFrame(rows, schema)
    try:
        return spark.createDataFrame(table, schema)  # Spark 4
    except (TypeError, ValueError):
        # Spark 3.5: through pandas with Arrow enabled
        spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
        return spark.createDataFrame(table.to_pandas(), schema)


def write_kind(spark, kind, records, out, by_hour, schema_dir, fmt):
    from pyspark.sql import types as T
    if not records:
        return 0
    schema, keys, encode = spark_schema(kind, records, schema_dir)
    tfield = KIND_TIME[kind]
    rows = []
    for r in records:
        row = [json.dumps(r.get(k)) if k in encode and r.get(k) is not None else r.get(k)
               for k in keys]
        t = r.get(tfield) or ""
        row.append(t[:10] if len(t) >= 10 else "unknown")
        if by_hour:
            row.append(t[11:13] if len(t) >= 13 else "unknown")
        rows.append(row)
    fields = list(schema.fields) + [T.StructField("day", T.StringType(), False)]
    parts = ["day"]
    if by_hour:
        fields.append(T.StructField("hour", T.StringType(), False))
        parts.append("hour")
    df = _data_frame(spark, rows, T.StructType(fields))
    w = df.write.mode("overwrite").partitionBy(*parts)
    target = out.rstrip("/") + "/" + kind
    if fmt == "parquet":
        w.parquet(target)
    else:
        w.json(target)
    return len(rows)


def main(argv=None):
    args = parse_args(argv)
    from pyspark.sql import SparkSession
    t_start = time.time()
    spark = SparkSession.builder.appName("pal-spark").getOrCreate()
    sc = spark.sparkContext
    sc.addPyFile(os.path.join(HERE, "pal_merge.py"))
    files = list_inputs(spark, args.input)
    if not files:
        print("pal-spark: no capture file matches %r" % args.input, file=sys.stderr)
        return 2
    opts = {"bin": args.bin, "plugins": [p for p in args.plugins.split(",") if p],
            "config": args.config, "jobs": args.jobs, "task_timeout": args.task_timeout}
    local = [_local_path(u) for u, _ in files]
    mode = args.read
    if mode == "auto":
        mode = "stream" if all(p is not None and os.path.exists(p) for p in local) else "binary"
    t_listed = time.time()
    if mode == "stream":
        rdd = sc.parallelize(list(zip([u for u, _ in files], local)), len(files))
        results = rdd.map(lambda x: analyse(x[0], _file_chunks(x[1]), opts)).collect()
    else:
        rdd = sc.binaryFiles(",".join(u for u, _ in files), minPartitions=len(files))
        results = rdd.map(lambda x: analyse(x[0], _bytes_chunks(x[1]), opts)).collect()
    t_analysed = time.time()
    results.sort(key=lambda r: (r[1].start_ns() is None, r[1].start_ns() or 0, r[0]))
    shards = [r[1] for r in results]
    merged = pal_merge.merge(shards, flow_timeouts(_local_path(args.config or "") or None))
    t_merged = time.time()
    schema_dir = os.path.join(os.path.dirname(HERE), "schema")
    written, write_s = {}, {}
    for kind in ("flows", "connections", "dns", "tls", "community_id"):
        t = time.time()
        written[kind] = write_kind(spark, kind, getattr(merged, kind), args.out, args.hour,
                                   schema_dir, args.format)
        write_s[kind] = round(time.time() - t, 3)
    t_written = time.time()
    summary = {
        "input": args.input, "files": len(files), "read": mode,
        "counts": merged.counts, "records": written,
        "seconds": {"start": round(t_listed - t_start, 3),
                    "analyse": round(t_analysed - t_listed, 3),
                    "merge": round(t_merged - t_analysed, 3),
                    "write": round(t_written - t_merged, 3),
                    "total": round(t_written - t_start, 3),
                    "write_by_kind": write_s},
        "shards": [r[2] for r in results],
        "basic_stats": merged.basic_stats,
    }
    text = json.dumps(summary, indent=1, sort_keys=True)
    out_local = _local_path(args.out)
    if out_local is not None:
        os.makedirs(out_local, exist_ok=True)
        with open(os.path.join(out_local, "summary.json"), "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    else:
        sc.parallelize([text], 1).saveAsTextFile(args.out.rstrip("/") + "/summary")
    c = merged.counts
    print("pal-spark: %d files, %d flow pieces -> %d flows (%d stitched), %.1f s "
          "(analyse %.1f, merge %.1f, write %.1f)"
          % (len(files), c["flow_pieces"], c["flows"], c["stitched"], t_written - t_start,
             t_analysed - t_listed, t_merged - t_analysed, t_written - t_merged))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
