#!/usr/bin/env python3
"""Analyse a set of capture files on Apache Spark with pcap-analyzer and
write what one run over the same files, in time order, would give.

    spark-submit --py-files spark/pal_merge.py spark/pal_spark.py \\
        --input 'hdfs:///caps/2023-11-14/*.pcap.gz' --out hdfs:///pal/out \\
        [--plugins dns,tls] [--bin ./pcap-analyzer] [--config pal.conf] [--hour]

Each capture file is one Spark task: the file's bytes are streamed into
``pcap-analyzer -`` (standard input; gzip/xz/lz4/zstd/bzip2 are recognised
by content) on the executor, which writes its records as JSON lines into a
temporary directory; the task reads them back and keeps them on the
executor (persisted). The driver gets a few numbers per file (first and
last packet, open flows) and orders the files by their first packet; the
merge then runs in Spark with pal_merge's functions: flow pieces that may
continue (a Bloom filter of the keys of pieces alive at their file's end)
grouped by key and stitched, the others passed through, connection rows
summed with reduceByKey, DNS queries paired per stitched flow, records of
stitched pieces given the stitched ids by a join. One Parquet dataset per
record kind is written under ``--out``, partitioned by ``day`` (and
``hour`` with ``--hour``), plus ``summary.json`` (what the merge counted,
per-shard timings). No record goes to the driver. See spark/README.md.
"""

import argparse
import json
import os
import pickle
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
# the fields of a merged connection row, in pal_merge.conn_final's order
CONNECTION_FIELDS = ["first", "last", "flow_id", "src_ip", "src_port", "dst_ip", "dst_port",
                     "protocols", "bytes", "packets", "flows"]
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


def analyse_elements(name, chunks, opts):
    """Runs pcap-analyzer over one capture and yields its records as the
    job's elements (``pal_merge.shard_elements``), the run's facts in the
    ``"S"`` element."""
    name, shard, facts = analyse(name, chunks, opts)
    batch = {}
    for e in pal_merge.shard_elements(shard, opts["timeouts"]):
        if e[0] == "S":
            e[2].update(facts)
            # the columns of the datasets: the merge adds no field to a kind
            e[2]["shapes"] = {kind: _shape(getattr(shard, kind), opts["typed"][kind],
                                           KIND_TIME[kind]) for kind in KIND_TIME}
        b = batch.setdefault(e[0], [])
        b.append(e)
        if len(b) >= _BATCH:
            yield e[0], pickle.dumps(b, protocol=pickle.HIGHEST_PROTOCOL)
            batch[e[0]] = []
    for tag, b in batch.items():
        if b:
            yield tag, pickle.dumps(b, protocol=pickle.HIGHEST_PROTOCOL)


# Elements are kept as (tag, pickled batch of elements of that tag): a pass
# over one kind of record unpickles only that kind's batches.
_BATCH = 1000


def _of(batches, *tags):
    """The elements of the given tags."""
    return batches.filter(lambda b: b[0] in tags).flatMap(lambda b: pickle.loads(b[1]))


def _value_kind(v):
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return "strings"
    if isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        return "integers"
    return "json"


def _shape(records, typed, tfield):
    """The shape of a partition's records: how many, their keys in the
    order first seen, the kinds of values of the keys without a schema type
    (``typed``: keys with one), and the earliest time (to order the keys of
    partitions as the earliest record has them)."""
    n, keys, seen, kinds, first = 0, [], set(), {}, None
    for r in records:
        n += 1
        t = r.get(tfield) or ""
        if first is None or t < first:
            first = t
        for k, v in r.items():
            if k not in seen:
                seen.add(k)
                keys.append(k)
            if k not in typed and v is not None:
                kinds.setdefault(k, set()).add(_value_kind(v))
    return {"n": n, "keys": keys, "kinds": kinds, "first": first}


def _merge_shape(a, b):
    if b["n"] == 0:
        return a
    if a["n"] == 0:
        return b
    if (b["first"] or "") < (a["first"] or ""):
        a, b = b, a
    keys = a["keys"] + [k for k in b["keys"] if k not in set(a["keys"])]
    kinds = {k: set(v) for k, v in a["kinds"].items()}
    for k, v in b["kinds"].items():
        kinds.setdefault(k, set()).update(v)
    return {"n": a["n"] + b["n"], "keys": keys, "kinds": kinds, "first": a["first"]}


def _schema_props(kind, schema_dir):
    p = os.path.join(schema_dir, "%s.schema.json" % SCHEMA_FILES.get(kind, kind))
    if os.path.exists(p):
        with open(p, encoding="utf-8") as fh:
            return json.load(fh).get("properties", {})
    return {}


def _from_json_schema(spec):
    from pyspark.sql import types as T
    simple = {"string": T.StringType(), "integer": T.LongType(), "number": T.DoubleType(),
              "boolean": T.BooleanType()}
    t = spec.get("type")
    if isinstance(t, list):
        t = [x for x in t if x != "null"][0] if [x for x in t if x != "null"] else "string"
    if t == "array":
        item = _from_json_schema(spec.get("items", {"type": "string"}))
        return T.ArrayType(item) if item is not None else None
    return simple.get(t)


def spark_schema(kind, shape, props):
    """A Spark schema for records of ``shape`` (``_shape``): the project's
    JSON Schema of the kind for every field it types, else one inferred
    from the values (objects and lists of objects as JSON text)."""
    from pyspark.sql import types as T
    simple = {"string": T.StringType(), "integer": T.LongType(), "number": T.DoubleType(),
              "boolean": T.BooleanType()}
    fields = []
    encode = set()
    for k in shape["keys"]:
        dt = _from_json_schema(props[k]) if k in props else None
        if dt is None:
            kinds = set(shape["kinds"].get(k, ()))
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
    return T.StructType(fields), list(shape["keys"]), encode


def _converter(dt, encoded):
    """How a record value becomes the value of a column of type ``dt``."""
    from pyspark.sql import types as T
    if encoded:
        return lambda v: json.dumps(v) if v is not None else None
    if isinstance(dt, T.DoubleType):
        return lambda v: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) \
            else v
    if isinstance(dt, T.ArrayType) and isinstance(dt.elementType, T.DoubleType):
        return lambda v: [float(x) if isinstance(x, int) else x for x in v] \
            if isinstance(v, list) else v
    return None


def write_kind(spark, kind, rdd, shape, out, by_hour, schema_dir, fmt):
    """Writes the records of ``rdd`` (their fields and value kinds:
    ``shape``) as the dataset ``out/kind``, partitioned by day (and hour) of
    their time; returns how many (from the written dataset's metadata)."""
    from pyspark.sql import types as T
    if shape["n"] == 0:
        return 0
    props = _schema_props(kind, schema_dir)
    tfield = KIND_TIME[kind]
    schema, keys, encode = spark_schema(kind, shape, props)
    conv = [_converter(f.dataType, f.name in encode) for f in schema.fields]

    def row(r):
        out_row = []
        for k, c in zip(keys, conv):
            v = r.get(k)
            out_row.append(c(v) if c is not None else v)
        t = r.get(tfield) or ""
        out_row.append(t[:10] if len(t) >= 10 else "unknown")
        if by_hour:
            out_row.append(t[11:13] if len(t) >= 13 else "unknown")
        return out_row

    fields = list(schema.fields) + [T.StructField("day", T.StringType(), False)]
    parts = ["day"]
    if by_hour:
        fields.append(T.StructField("hour", T.StringType(), False))
        parts.append("hour")
    df = spark.createDataFrame(rdd.map(row), T.StructType(fields), verifySchema=False)
    w = df.write.mode("overwrite").partitionBy(*parts)
    target = out.rstrip("/") + "/" + kind
    if fmt == "parquet":
        w.parquet(target)
        return spark.read.parquet(target).count()
    w.json(target)
    return spark.read.json(target).count()


# ---- the distributed merge (each function runs on the executors) ----------

def _bloom(s):
    """The Bloom filter of the keys of pieces alive at their shard's end (None: none)."""
    return pal_merge.Bloom(s["bits"], s["bloom"]) if s["bloom"] is not None else None


def _bloom_part(it, bits):
    b = pal_merge.Bloom(bits)
    for e in it:
        if e[0] == "F" and e[6]:
            b.add(e[5])
    yield bytes(b.data)


def _or_bytes(a, b):
    return (int.from_bytes(a, "little") | int.from_bytes(b, "little")).to_bytes(len(a), "little")


def _parent_refs(rec, ph, bloom):
    """Tunnel parents of a flow that may have been stitched (their id may change)."""
    if bloom is None:
        return []
    return [p for p in rec.get("tunnel_parents") or [] if p in ph and ph[p] in bloom]


def _candidates(it, bcv):
    """Flow pieces whose key may be stitched: (key, (shard, flow, parent hashes))."""
    s = bcv.value
    bloom = _bloom(s)
    if bloom is None:
        return
    for e in it:
        if e[0] == "F" and e[5] in bloom:
            yield e[4], (s["idx"][e[1]], e[3], e[7])


def _single_flows(it, bcv):
    """Flow pieces no other piece can be stitched to: flows of their own
    (pal_merge's stitching of a one-piece key: an end-of-input piece may
    become a timeout)."""
    s = bcv.value
    bloom = _bloom(s)
    counts = pal_merge.new_counts()
    for e in it:
        if e[0] != "F" or (bloom is not None and e[5] in bloom):
            continue
        k = s["idx"][e[1]]
        st = pal_merge.Stitching(s["t"], counts)
        st.add(k, e[4], e[3], s["ends"][k])
        for r in st.finish(s["global_end"]):
            yield ("flow", r, k, _parent_refs(r, e[7], bloom))
    yield ("counts", counts)


def _stitch_groups(it, bcv):
    """Every piece of a key stitched with pal_merge: flows, the pieces'
    stitched ids ("info"), corrections of the sums ("corr") and counts."""
    s = bcv.value
    bloom = _bloom(s)
    counts = pal_merge.new_counts()
    for key, pieces in it:
        pieces = list(pieces)
        ph_of = {(k, f["flow_id"]): ph for k, f, ph in pieces}
        st, _ = pal_merge.stitch_group(key, [(k, f) for k, f, _ in pieces], s["ends"],
                                       s["global_end"], s["t"])
        pal_merge.add_counts(counts, st.counts)
        for c in st.chains:
            ph = ph_of[(c.first_shard, c.pieces[0]["flow_id"])]
            yield ("flow", c.rec, c.first_shard, _parent_refs(c.rec, ph, bloom))
            for corr in pal_merge.chain_corrections(c):
                yield ("corr",) + corr
        for (k, fid), root in st.remap.items():
            yield ("info", (k, fid), (root, (k, fid) in st.continued, (k, fid) in st.cut_at_end))
    yield ("counts", counts)


def _kind_part(it, tag, bcv, affected):
    """Records of one kind: those naming no flow that may have been
    stitched (``affected`` False: the record itself), or those that do
    (``affected``: (uid, (shard, [flow ids], record)))."""
    s = bcv.value
    bloom = _bloom(s)
    for e in it:
        if e[0] != tag:
            continue
        fids = [f for f, h in e[4].items() if h in bloom] if bloom is not None else []
        if affected and fids:
            k = s["idx"][e[1]]
            yield (k, e[2]), (k, fids, e[3])
        elif not affected and not fids:
            yield e[3]


def _remap_join(items, info, parts):
    """``items`` (uid, (shard, [flow ids], payload)) with the stitched
    facts of those flow pieces: (uid, (payload, shard, {flow id: (stitched
    id, continued, alive at end)})). Only records of stitching candidates
    go through it; a record naming one flow (all but tunnelled flows) takes
    one join, others are looked up flow by flow and gathered again."""
    items = items.persist()
    one = items.filter(lambda x: len(x[1][1]) == 1) \
        .map(lambda x: ((x[1][0], x[1][1][0]), x)).leftOuterJoin(info, parts) \
        .map(lambda kv: (kv[1][0][0], (kv[1][0][1][2], kv[1][0][1][0],
                                       {kv[0][1]: kv[1][1]} if kv[1][1] is not None else {})))
    many = items.filter(lambda x: len(x[1][1]) > 1)
    refs = many.flatMap(lambda x: [((x[1][0], f), x[0]) for f in x[1][1]])
    found = refs.join(info, parts).map(lambda kv: (kv[1][0], [(kv[0][1], kv[1][1])])) \
        .reduceByKey(lambda a, b: a + b, parts)
    return one.union(many.leftOuterJoin(found, parts).map(
        lambda kv: (kv[0], (kv[1][0][2], kv[1][0][0], dict(kv[1][1] or [])))))


def _remapped(payload, k, infos):
    return pal_merge._remap_fields(payload, k, {(k, f): i[0] for f, i in infos.items()})


def _set_parents(rec, k, infos):
    rec = dict(rec)
    rec["tunnel_parents"] = [infos[p][0] if p in infos else p for p in rec["tunnel_parents"]]
    return rec


def _dns_items(kv):
    uid, (rec, k, infos) = kv
    out = _remapped(rec, k, infos)
    i = infos.get(rec.get("flow_id"))
    return out.get("flow_id"), (uid, out, bool(i and i[1]), bool(i and i[2]))


def _pair_dns_groups(it):
    counts = pal_merge.new_counts()
    for _, items in it:
        items = sorted(items, key=lambda x: x[0])
        for r in pal_merge.pair_dns(((x[1], x[2], x[3]) for x in items), counts):
            yield ("rec", r)
    yield ("counts", counts)


def _conn_corr(e):
    return e[0] == "corr" and e[1] == "conn"


def main(argv=None):
    args = parse_args(argv)
    from pyspark import StorageLevel
    from pyspark.sql import SparkSession
    t_start = time.time()
    spark = SparkSession.builder.appName("pal-spark").getOrCreate()
    sc = spark.sparkContext
    sc.addPyFile(os.path.join(HERE, "pal_merge.py"))
    files = list_inputs(spark, args.input)
    if not files:
        print("pal-spark: no capture file matches %r" % args.input, file=sys.stderr)
        return 2
    timeouts = flow_timeouts(_local_path(args.config or "") or None)
    schema_dir = os.path.join(os.path.dirname(HERE), "schema")
    typed = {kind: {k for k, spec in _schema_props(kind, schema_dir).items()
                    if _from_json_schema(spec) is not None} for kind in KIND_TIME}
    opts = {"bin": args.bin, "plugins": [p for p in args.plugins.split(",") if p],
            "config": args.config, "jobs": args.jobs, "task_timeout": args.task_timeout,
            "timeouts": timeouts, "typed": typed}
    local = [_local_path(u) for u, _ in files]
    mode = args.read
    if mode == "auto":
        mode = "stream" if all(p is not None and os.path.exists(p) for p in local) else "binary"
    t_listed = time.time()
    # 1. one task per file: pcap-analyzer, its records kept on the executors
    if mode == "stream":
        rdd = sc.parallelize(list(zip([u for u, _ in files], local)), len(files))
        elems = rdd.flatMap(lambda x: analyse_elements(x[0], _file_chunks(x[1]), opts))
    else:
        rdd = sc.binaryFiles(",".join(u for u, _ in files), minPartitions=len(files))
        elems = rdd.flatMap(lambda x: analyse_elements(x[0], _bytes_chunks(x[1]), opts))
    batches = elems.persist(StorageLevel.MEMORY_AND_DISK)
    parts = sc.defaultParallelism
    # the driver gets a few numbers per file: first and last packet, open pieces, timings
    facts = _of(batches, "S").map(lambda e: e[2]).collect()
    t_analysed = time.time()

    # 2. the files in time order; the keys of pieces that may continue
    facts.sort(key=lambda f: (f["start_ns"] is None, f["start_ns"] or 0, f["name"]))
    ends = [f["end_ns"] for f in facts]
    n_open = sum(f["open"] for f in facts)
    bits = pal_merge.Bloom.for_keys(n_open).bits
    bloom = None
    if n_open:
        bloom = _of(batches, "F").mapPartitions(lambda it: _bloom_part(it, bits)) \
            .treeReduce(_or_bytes)
    bc = sc.broadcast({"idx": {f["name"]: i for i, f in enumerate(facts)}, "ends": ends,
                       "global_end": max((e for e in ends if e is not None), default=None),
                       "t": timeouts, "bits": bits, "bloom": bloom})

    # 3. flows: candidates grouped by key and stitched, the others pass
    flow_pieces = _of(batches, "F")
    stitched = flow_pieces.mapPartitions(lambda it: _candidates(it, bc)).groupByKey(parts) \
        .mapPartitions(lambda it: _stitch_groups(it, bc))
    singles = flow_pieces.mapPartitions(lambda it: _single_flows(it, bc))
    merged = stitched.union(singles).persist(StorageLevel.MEMORY_AND_DISK)
    counts = merged.filter(lambda e: e[0] == "counts").map(lambda e: e[1]) \
        .fold(pal_merge.new_counts(), pal_merge.add_counts)
    counts["shards"] = len(files)
    info = merged.filter(lambda e: e[0] == "info").map(lambda e: (e[1], e[2])) \
        .persist(StorageLevel.MEMORY_AND_DISK)
    flow_out = merged.filter(lambda e: e[0] == "flow")
    flows = flow_out.filter(lambda e: not e[3]).map(lambda e: e[1]).union(
        _remap_join(flow_out.filter(lambda e: e[3])
                    .map(lambda e: ((e[2], e[1]["flow_id"]), (e[2], e[3], e[1]))), info,
                    parts)
        .map(lambda kv: _set_parents(kv[1][0], kv[1][1], kv[1][2])))

    # 4. basic-stats: summed in a tree, finished with the flows' end reasons
    stats = _of(batches, "B").map(lambda e: e[2]) \
        .treeAggregate(None, pal_merge.sum_stats, pal_merge.sum_stats)
    ended = dict(flow_out.map(lambda e: e[1].get("end_reason") or "unknown").countByValue())
    conv = sc.broadcast(pal_merge.stats_conv_keys(stats))
    corr = merged.filter(lambda e: e[0] == "corr" and e[1] in ("l3", "l4")) \
        .map(lambda e: ((e[1], e[2]), e[3])).reduceByKey(lambda a, b: a + b, parts) \
        .filter(lambda kv: kv[0] in conv.value).collect()
    stats = pal_merge.finish_stats(stats, ended, [(k[0], k[1], n) for k, n in corr])

    # 5. records naming a flow: remapped when their flow may have been stitched
    def split(tag):
        recs = _of(batches, tag)
        plain = recs.mapPartitions(lambda it: _kind_part(it, tag, bc, False))
        joined = _remap_join(recs.mapPartitions(lambda it: _kind_part(it, tag, bc, True)), info,
                             parts)
        return plain, joined

    plain, joined = split("C")
    connections = plain.map(lambda r: pal_merge.conn_acc(r, r.get("flow_id"))).union(
        joined.map(lambda kv: pal_merge.conn_acc(kv[1][0],
                                                 _remapped(kv[1][0], kv[1][1], kv[1][2])
                                                 .get("flow_id")))).union(
        merged.filter(_conn_corr).map(lambda e: pal_merge.conn_correction(e[2], e[3]))) \
        .map(lambda a: (pal_merge.conn_key(a), a)).reduceByKey(pal_merge.conn_add, parts) \
        .map(lambda kv: pal_merge.conn_final(kv[1])).filter(lambda r: r is not None)

    plain, joined = split("D")
    dns_paired = joined.map(_dns_items).groupByKey(parts).mapPartitions(_pair_dns_groups) \
        .persist(StorageLevel.MEMORY_AND_DISK)
    pal_merge.add_counts(counts, dns_paired.filter(lambda e: e[0] == "counts")
                         .map(lambda e: e[1]).fold(pal_merge.new_counts(),
                                                   pal_merge.add_counts))
    dns = plain.union(dns_paired.filter(lambda e: e[0] == "rec").map(lambda e: e[1]))

    plain, joined = split("T")
    tls = plain.union(joined.map(lambda kv: _remapped(kv[1][0], kv[1][1], kv[1][2])))

    plain, joined = split("I")
    # a stitched flow has one record per piece: the first (in file order) stays
    cid = joined.map(lambda kv: (kv[0], _remapped(kv[1][0], kv[1][1], kv[1][2])))
    community = plain.union(
        cid.map(lambda x: (pal_merge.community_flow(x[1]) or ("record", x[0]), x))
        .reduceByKey(lambda a, b: a if a[0] <= b[0] else b, parts).map(lambda kv: kv[1][1]))
    t_merged = time.time()

    shapes = {}
    for kind in KIND_TIME:
        shape = {"n": 0, "keys": [], "kinds": {}, "first": None}
        for f in facts:
            shape = _merge_shape(shape, f["shapes"][kind])
        shapes[kind] = shape
    shapes["connections"]["keys"] = CONNECTION_FIELDS + [
        k for k in shapes["connections"]["keys"] if k not in CONNECTION_FIELDS]
    written, write_s = {}, {}
    for kind, rdd_k in (("flows", flows), ("connections", connections), ("dns", dns),
                        ("tls", tls), ("community_id", community)):
        t = time.time()
        written[kind] = write_kind(spark, kind, rdd_k, shapes[kind], args.out, args.hour,
                                   schema_dir, args.format)
        write_s[kind] = round(time.time() - t, 3)
    t_written = time.time()
    shards = [{k: v for k, v in f.items() if k not in ("start_ns", "end_ns", "open", "shapes")}
              for f in facts]
    summary = {
        "input": args.input, "files": len(files), "read": mode,
        "counts": counts, "records": written,
        "seconds": {"start": round(t_listed - t_start, 3),
                    "analyse": round(t_analysed - t_listed, 3),
                    "merge": round(t_merged - t_analysed, 3),
                    "write": round(t_written - t_merged, 3),
                    "total": round(t_written - t_start, 3),
                    "write_by_kind": write_s},
        "shards": shards,
        "basic_stats": stats,
    }
    text = json.dumps(summary, indent=1, sort_keys=True)
    out_local = _local_path(args.out)
    if out_local is not None:
        os.makedirs(out_local, exist_ok=True)
        with open(os.path.join(out_local, "summary.json"), "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    else:
        sc.parallelize([text], 1).saveAsTextFile(args.out.rstrip("/") + "/summary")
    c = counts
    print("pal-spark: %d files, %d flow pieces -> %d flows (%d stitched), %.1f s "
          "(analyse %.1f, merge %.1f, write %.1f)"
          % (len(files), c["flow_pieces"], c["flows"], c["stitched"], t_written - t_start,
             t_analysed - t_listed, t_merged - t_analysed, t_written - t_merged))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
