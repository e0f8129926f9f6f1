"""The Spark job's distributed merge, replayed without Spark, against
pal_merge.merge: every shard set of test_pal_merge is merged both ways and
the results must be equal (python3 -m unittest discover -s spark).

``distributed_merge`` runs pal_spark.py's per-partition functions in the
order and with the grouping the job gives them (one partition per shard,
groupByKey, joins and reduceByKey as dictionaries), so the steps the job
distributes are checked on the same cases as the merge itself.
"""

import collections
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pal_merge as pm  # noqa: E402
import pal_spark as ps  # noqa: E402  (pyspark is imported only inside its functions)
import test_pal_merge as base  # noqa: E402

MERGE = pm.merge


class _Broadcast:
    def __init__(self, value):
        self.value = value


def _remap_join(items, info):
    for uid, (k, fids, payload) in items:
        yield uid, (payload, k, {f: info[(k, f)] for f in fids if (k, f) in info})


def distributed_merge(shards, timeouts=None):
    """What pal_spark.py's main() computes, step by step, on plain lists."""
    t = dict(pm.DEFAULT_TIMEOUTS)
    t.update(timeouts or {})
    parts = [list(pm.shard_elements(s, t)) for s in shards]  # one task per shard
    facts = [e[2] for p in parts for e in p if e[0] == "S"]
    facts.sort(key=lambda f: (f["start_ns"] is None, f["start_ns"] or 0, f["name"]))
    ends = [f["end_ns"] for f in facts]
    n_open = sum(f["open"] for f in facts)
    bits = pm.Bloom.for_keys(n_open).bits
    bloom = None
    if n_open:
        blooms = [next(ps._bloom_part(iter(p), bits)) for p in parts]
        bloom = blooms[0]
        for b in blooms[1:]:
            bloom = ps._or_bytes(bloom, b)
    bc = _Broadcast({"idx": {f["name"]: i for i, f in enumerate(facts)}, "ends": ends,
                     "global_end": max((e for e in ends if e is not None), default=None),
                     "t": t, "bits": bits, "bloom": bloom})
    groups = collections.defaultdict(list)
    for p in parts:
        for key, v in ps._candidates(iter(p), bc):
            groups[key].append(v)
    merged = list(ps._stitch_groups(iter(groups.items()), bc))
    for p in parts:
        merged += list(ps._single_flows(iter(p), bc))
    counts = pm.new_counts()
    for e in merged:
        if e[0] == "counts":
            pm.add_counts(counts, e[1])
    counts["shards"] = len(shards)
    info = {e[1]: e[2] for e in merged if e[0] == "info"}
    flows = [e[1] for e in merged if e[0] == "flow" and not e[3]]
    flows += [ps._set_parents(p, k, infos) for _, (p, k, infos) in _remap_join(
        (((e[2], e[1]["flow_id"]), (e[2], e[3], e[1])) for e in merged
         if e[0] == "flow" and e[3]), info)]

    stats = None
    for p in parts:
        for e in p:
            if e[0] == "B":
                stats = pm.sum_stats(stats, e[2])
    conv = pm.stats_conv_keys(stats)
    corr = collections.Counter()
    for e in merged:
        if e[0] == "corr" and e[1] in ("l3", "l4") and (e[1], e[2]) in conv:
            corr[(e[1], e[2])] += e[3]
    stats = pm.finish_stats(stats, pm.count_end_reasons(flows),
                            [(k[0], k[1], n) for k, n in corr.items()])

    def split(tag):
        plain = [r for p in parts for r in ps._kind_part(iter(p), tag, bc, False)]
        joined = list(_remap_join([x for p in parts for x in ps._kind_part(iter(p), tag, bc, True)],
                                  info))
        return plain, joined

    plain, joined = split("C")
    accs = [pm.conn_acc(r, r.get("flow_id")) for r in plain]
    accs += [pm.conn_acc(p, ps._remapped(p, k, i).get("flow_id")) for _, (p, k, i) in joined]
    accs += [pm.conn_correction(e[2], e[3]) for e in merged if ps._conn_corr(e)]
    sums = {}
    for a in accs:
        key = pm.conn_key(a)
        sums[key] = pm.conn_add(sums[key], a) if key in sums else a
    connections = [r for r in (pm.conn_final(a) for a in sums.values()) if r is not None]

    plain, joined = split("D")
    dns_groups = collections.defaultdict(list)
    for kv in joined:
        fid, item = ps._dns_items(kv)
        dns_groups[fid].append(item)
    dns = list(plain)
    for e in ps._pair_dns_groups(iter(dns_groups.items())):
        if e[0] == "rec":
            dns.append(e[1])
        else:
            pm.add_counts(counts, e[1])

    plain, joined = split("T")
    tls = plain + [ps._remapped(p, k, i) for _, (p, k, i) in joined]

    plain, joined = split("I")
    first = {}
    for uid, (p, k, i) in joined:
        r = ps._remapped(p, k, i)
        fid = pm.community_flow(r) or ("record", uid)
        if fid not in first or uid < first[fid][0]:
            first[fid] = (uid, r)
    community = plain + [r for _, r in first.values()]
    return pm.MergeResult(flows, connections, dns, tls, community, stats, counts)


def _canon(v):
    """Lists as multisets (the job's output order is Spark's)."""
    if isinstance(v, dict):
        return {k: _canon(x) for k, x in v.items()}
    if isinstance(v, list) and v and isinstance(v[0], dict):
        return sorted((_canon(x) for x in v), key=lambda x: json.dumps(x, sort_keys=True))
    return v


def checked_merge(shards, timeouts=None):
    """pal_merge.merge, and the distributed merge must give the same."""
    import copy
    want = MERGE(copy.deepcopy(shards), timeouts)
    got = distributed_merge(copy.deepcopy(shards), timeouts)
    tc = unittest.TestCase()
    tc.maxDiff = None
    for field in ("flows", "connections", "dns", "tls", "community_id", "basic_stats",
                  "counts"):
        tc.assertEqual(_canon(getattr(got, field)), _canon(getattr(want, field)), field)
    return want


class _Patched:
    def setUp(self):
        pm.merge = checked_merge

    def tearDown(self):
        pm.merge = MERGE


class DistributedStitching(_Patched, base.Stitching):
    pass


class DistributedRecords(_Patched, base.Records):
    pass
