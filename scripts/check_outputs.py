#!/usr/bin/env python3
"""Outputs that load with zero glue (issue 14), checked with readers that are
not PAL's: DuckDB joins the record kinds on flow_id from Parquet and from JSON
lines and must get the same rows, with real timestamps; a Zeek log reader from
PyPI (parsezeeklogs) reads the Zeek TSV logs, which must hold the records of
the JSON lines.

Run by scripts/ci-duckdb.sh (which installs duckdb and parsezeeklogs in a
venv). Captures: testdata/pcap/sample.pcap (built by PAL's packet builder),
plus corpus files when the corpus is there (PAL_CORPUS, default
../shared/corpus; SKIP line otherwise).

Ends with 'N passed, N failed' and exits 1 on any failure.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import duckdb
from parsezeeklogs import ZeekLog

ROOT = Path(__file__).resolve().parent.parent

# The record kinds checked: kind -> its time columns. Adding a kind (tls,
# community_id once they write the one schema) is one line here; every kind
# after the first two is LEFT JOINed on flow_id.
KINDS = {
    "connections": ["first", "last"],
    "flows": ["first", "last"],
    "dns": ["ts"],
    "tls": ["ts"],
}

# Corpus captures (path under the corpus, what they bring).
CORPUS = [
    "apps/suricata_datasets-06-state-long.pcap",  # 1200 DNS transactions, VLAN
    "apps/zeek_tls1.2.pcap",  # a TLS handshake
]

passed = 0
failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok: {what}")
    else:
        failed += 1
        print(f"FAILED: {what}")


def run_pal(binary, capture, fmt, out):
    cmd = [str(binary), "-q", "-j", "2", "--format", fmt, "-o", str(out), str(capture)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr}")


def load(con, schema, directory, ext, types=None):
    """Views schema.KIND over the files of one run (Parquet or JSON lines)."""
    con.execute(f"CREATE SCHEMA {schema}")
    for kind in KINDS:
        path = directory / f"{kind}.{ext}"
        if ext == "parquet":
            src = f"read_parquet('{path}')"
        else:
            cols = ", ".join(f"'{n}': '{t}'" for n, t in types[kind])
            src = f"read_json('{path}', format='newline_delimited', columns={{{cols}}})"
        con.execute(f"CREATE VIEW {schema}.{kind} AS SELECT * FROM {src}")


def joined(schema, kinds):
    """connections JOIN flows, then every other kind LEFT JOINed on flow_id."""
    first, second, *rest = kinds
    sql = f"SELECT * FROM {schema}.{first} AS {first} JOIN {schema}.{second} AS {second} USING (flow_id)"
    for k in rest:
        sql += f" LEFT JOIN {schema}.{k} AS {k} USING (flow_id)"
    return sql


def duckdb_checks(name, pq, js):
    con = duckdb.connect()
    load(con, "pq", pq, "parquet")
    types = {
        k: [(r[0], r[1]) for r in con.execute(f"DESCRIBE pq.{k}").fetchall()] for k in KINDS
    }
    load(con, "js", js, "jsonl", types)
    for kind, times in KINDS.items():
        n_pq = con.execute(f"SELECT count(*) FROM pq.{kind}").fetchone()[0]
        n_js = con.execute(f"SELECT count(*) FROM js.{kind}").fetchone()[0]
        lines = sum(1 for _ in open(js / f"{kind}.jsonl", encoding="utf-8"))
        check(n_pq == n_js == lines, f"{name}: {kind}: {n_pq} Parquet rows, {n_js} JSON rows, {lines} lines")
        for t in times:
            ty = dict(types[kind])[t]
            check(ty.startswith("TIMESTAMP"), f"{name}: {kind}.{t} is a timestamp in Parquet ({ty})")
            # the JSON text parses as that timestamp, to the nanosecond
            same = con.execute(
                f"SELECT count(*) FROM (SELECT epoch_ns({t}) FROM pq.{kind} "
                f"EXCEPT ALL SELECT epoch_ns({t}) FROM js.{kind})"
            ).fetchone()[0]
            check(same == 0, f"{name}: {kind}.{t}: the same instants in Parquet and JSON")
        # flow_id joins: every record of a flow kind names a flow of flows
        if kind not in ("flows", "connections"):
            orphans = con.execute(
                f"SELECT count(*) FROM pq.{kind} WHERE flow_id IS NOT NULL "
                f"AND flow_id NOT IN (SELECT flow_id FROM pq.flows)"
            ).fetchone()[0]
            check(orphans == 0, f"{name}: every {kind} record's flow_id is a flow")
    q_pq = joined("pq", list(KINDS))
    q_js = joined("js", list(KINDS))
    n = con.execute(f"SELECT count(*) FROM ({q_pq})").fetchone()[0]
    a = con.execute(f"SELECT count(*) FROM ({q_pq} EXCEPT ALL {q_js})").fetchone()[0]
    b = con.execute(f"SELECT count(*) FROM ({q_js} EXCEPT ALL {q_pq})").fetchone()[0]
    check(n > 0 and a == 0 and b == 0, f"{name}: join of {', '.join(KINDS)} on flow_id: {n} rows, the same from Parquet and JSON ({a}/{b} differ)")
    with_dns = con.execute(f"SELECT count(*) FROM ({q_pq}) WHERE query IS NOT NULL").fetchone()[0]
    dns = con.execute("SELECT count(*) FROM pq.dns WHERE flow_id IS NOT NULL").fetchone()[0]
    check(dns == 0 or with_dns >= dns, f"{name}: every dns record found its flow and connection ({with_dns} joined rows, {dns} records)")
    return types


def rfc3339_seconds(s):
    """'2023-11-14T22:13:27.623029123Z' -> float seconds (ns kept in the fraction)."""
    base, frac = s.rstrip("Z").split(".")
    whole = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return whole + int(frac) / 10 ** len(frac)


def same(z, j, ztype):
    """A Zeek cell (as parsezeeklogs typed it) against the JSON value."""
    if ztype.startswith(("set[", "vector[")):
        inner = ztype[ztype.index("[") + 1 : -1]
        z = z or []
        j = j or []
        return len(z) == len(j) and all(same(a, b, inner) for a, b in zip(z, j))
    if z is None or j is None:
        return z is None and j is None
    if ztype == "time":
        return abs(z - rfc3339_seconds(j)) <= 1e-6
    if ztype in ("interval", "double"):
        return math.isclose(z, j, rel_tol=1e-9, abs_tol=1e-6)
    if ztype in ("count", "int", "port"):
        return int(z) == int(j)
    if ztype == "bool":
        return z == j
    return str(z) == str(j)


def zeek_checks(name, zk, js, types):
    for kind in KINDS:
        path = zk / f"{kind}.log"
        errors = []
        log = ZeekLog(str(path), on_error=lambda n, line, e: errors.append(f"line {n}: {e}"))
        header = log.header
        records = list(log)
        log.close()
        check(not errors, f"{name}: {path.name}: every line read by parsezeeklogs {errors[:3]}")
        d = header.directives if header else {}
        check(
            header is not None
            and header.separator == "\t"
            and all(k in d for k in ("set_separator", "empty_field", "unset_field", "path", "fields", "types")),
            f"{name}: {path.name}: Zeek header (#separator \\x09, #set_separator, #empty_field, #unset_field, #path, #fields, #types)",
        )
        known = ("time", "interval", "count", "int", "double", "string", "addr", "port", "bool", "enum", "subnet")
        ztypes = header.types if header else []
        bad = [t for t in ztypes if t.split("[")[-1].rstrip("]") not in known]
        check(not bad, f"{name}: {path.name}: Zeek types only {bad}")
        jl = [json.loads(line) for line in open(js / f"{kind}.jsonl", encoding="utf-8")]
        check(len(records) == len(jl), f"{name}: {path.name}: {len(records)} records, {len(jl)} JSON lines")
        # column i of the Zeek log is field i of the schema (the Parquet order)
        names = [n for n, _ in types[kind]]
        fields = header.fields if header else []
        check(len(fields) == len(names), f"{name}: {path.name}: {len(fields)} columns for {len(names)} fields")
        diffs = []
        for i, (z, j) in enumerate(zip(records, jl)):
            for zname, ztype, jname in zip(fields, ztypes, names):
                if not same(z.get(zname), j.get(jname), ztype):
                    diffs.append(f"record {i} {zname}/{jname}: {z.get(zname)!r} vs {j.get(jname)!r}")
        check(not diffs, f"{name}: {path.name}: the JSON lines' values {diffs[:3]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    args = ap.parse_args()
    captures = [("sample.pcap", ROOT / "testdata/pcap/sample.pcap")]
    corpus = Path(os.environ.get("PAL_CORPUS", ROOT.parent / "shared/corpus"))
    if corpus.is_dir():
        for c in CORPUS:
            p = corpus / c
            if p.is_file():
                captures.append((Path(c).name, p))
            else:
                print(f"SKIP: {c}: not in the corpus at {corpus}")
    else:
        print(f"SKIP: corpus not found at {corpus} (PAL_CORPUS): sample.pcap only")
    with tempfile.TemporaryDirectory(prefix="pal-duckdb-") as tmp:
        for name, capture in captures:
            dirs = {}
            for fmt in ("parquet", "jsonl", "zeek"):
                dirs[fmt] = Path(tmp) / f"{name}-{fmt}"
                run_pal(args.bin, capture, fmt, dirs[fmt])
            types = duckdb_checks(name, dirs["parquet"], dirs["jsonl"])
            zeek_checks(name, dirs["zeek"], dirs["jsonl"], types)
    print(f"duckdb/zeek outputs: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
