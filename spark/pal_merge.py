"""Merge the records of pcap-analyzer runs over consecutive shards of one
capture into the records one run over the whole capture gives.

This is the one place where the merge logic lives; ``pal_spark.py`` calls it
on the driver and ``test_pal_merge.py`` tests it without Spark. Records are
the dicts of pcap-analyzer's JSON-lines outputs (``--format jsonl``), one
schema for every record kind (``schema/*.schema.json``).

What is merged and how (see spark/README.md, "What the merge gives"):

* flows cut at a shard boundary are stitched back: same canonical 5-tuple,
  VLAN and tunnel context (the parents' own keys), the earlier piece still
  alive at the end of its shard (ended by the end of input, or closed by
  FIN/RST and still lingering), the gap below the protocol's timeout as the
  flow table counts it (a flow expires once a packet comes at or after
  ``last + timeout``), and, after a FIN/RST close, a continuation that does
  not open with a bare SYN (which starts a new connection). Counters are
  summed by direction (a continuation seen the other way round is turned),
  ``last`` and ``end_reason`` come from the last piece, the id from the
  first (flow ids are a hash of the key and the first packet's time, so the
  first piece's id is the whole flow's). A piece that ended by the end of
  its shard and has no continuation ends by ``timeout`` when the capture
  went on past its deadline, as the single run would have ended it.
* every record that names a flow (DNS, TLS, Community ID, connection rows,
  tunnel parents) gets the id of the stitched flow.
* connection report rows are summed by their key (protocols united, first
  = min, last = max, bytes and packets summed); ``flows`` is corrected for
  the flows counted once per piece.
* a DNS query left without its response at the end of a shard is paired
  with the lone response of the same stitched flow, transaction id and
  question in a later shard.
* basic-stats counters are summed; ``flows_ended`` is recounted from the
  merged flows and the conversations' ``flows`` corrected for stitched
  pieces.

``conn_state`` and ``history`` of a stitched TCP flow are rebuilt from the
pieces' history letters (approximate: Zeek's logarithmic letters and the
24-letter cap are not replayed); everything else listed above is exact up to
the limits counted in ``MergeResult.counts`` and listed in the README.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from typing import Any, Dict, Iterable, List, Optional, Tuple

# Defaults of libpcap-analyzer's FlowConfig ([flows] in the configuration).
DEFAULT_TIMEOUTS = {
    "tcp_timeout": 300.0,
    "tcp_close_timeout": 5.0,
    "udp_timeout": 60.0,
    "icmp_timeout": 60.0,
    "other_timeout": 60.0,
}

# Record kinds and the files pcap-analyzer writes them to with --format jsonl.
RECORD_FILES = {
    "flows": "flows.jsonl",
    "connections": "connections.jsonl",
    "dns": "dns.jsonl",
    "tls": "tls.jsonl",
    "community_id": "community-id.jsonl",
}

_DIRECTIONAL = ("bytes", "ip_bytes", "pkts", "wire_bytes")
_SERVICES = ["dns", "ssl", "http", "ssh", "quic"]
_TCP_FLAGS = "FSRPAUEC"
_PROTO_NUMBERS = {"ICMP": 1, "IGMP": 2, "TCP": 6, "UDP": 17, "GRE": 47, "ESP": 50,
                  "AH": 51, "ICMPV6": 58, "SCTP": 132}
_ONCE = set("ADIQ^")

_SEC_CACHE: Dict[str, int] = {}


def ts_ns(s: Optional[str]) -> Optional[int]:
    """Nanoseconds since the epoch of an RFC 3339 UTC time as pcap-analyzer
    writes it (``2023-11-14T22:13:20.000620000Z``); None stays None."""
    if s is None:
        return None
    head = s[:19]
    secs = _SEC_CACHE.get(head)
    if secs is None:
        d = datetime.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S")
        secs = int(d.replace(tzinfo=datetime.timezone.utc).timestamp())
        if len(_SEC_CACHE) > 100_000:
            _SEC_CACHE.clear()
        _SEC_CACHE[head] = secs
    frac = s[19:].rstrip("Z")
    ns = 0
    if frac.startswith("."):
        digits = frac[1:10]
        ns = int(digits.ljust(9, "0")) if digits else 0
    return secs * 1_000_000_000 + ns


def ns_ts(ns: int) -> str:
    """The RFC 3339 text of ``ns`` (nanosecond digits, as pcap-analyzer)."""
    secs, frac = divmod(ns, 1_000_000_000)
    d = datetime.datetime.fromtimestamp(secs, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + ".%09dZ" % frac


@dataclasses.dataclass
class Shard:
    """The records of one pcap-analyzer run over one shard (one file)."""

    name: str
    flows: List[dict] = dataclasses.field(default_factory=list)
    connections: List[dict] = dataclasses.field(default_factory=list)
    dns: List[dict] = dataclasses.field(default_factory=list)
    tls: List[dict] = dataclasses.field(default_factory=list)
    community_id: List[dict] = dataclasses.field(default_factory=list)
    basic_stats: Optional[dict] = None
    # capture time (ns) of the shard's last packet; None: the latest flow end
    end_ns: Optional[int] = None

    def start_ns(self) -> Optional[int]:
        """Time of the shard's first packet (its earliest flow), for ordering."""
        t = [ts_ns(f.get("first")) for f in self.flows]
        t = [x for x in t if x is not None]
        return min(t) if t else None

    def last_ns(self) -> Optional[int]:
        """Capture time of the shard's last packet (as far as flows tell)."""
        if self.end_ns is not None:
            return self.end_ns
        t = [ts_ns(f.get("last")) for f in self.flows]
        t = [x for x in t if x is not None]
        return max(t) if t else None


def read_dir(name: str, path: str) -> Shard:
    """The records pcap-analyzer wrote into ``path`` (``-o path --format jsonl``)."""
    shard = Shard(name=name)
    for kind, file in RECORD_FILES.items():
        p = os.path.join(path, file)
        if os.path.exists(p):
            with open(p, encoding="utf-8") as fh:
                setattr(shard, kind, [json.loads(line) for line in fh if line.strip()])
    p = os.path.join(path, "basic-stats.json")
    if os.path.exists(p):
        with open(p, encoding="utf-8") as fh:
            shard.basic_stats = json.load(fh)
    return shard


@dataclasses.dataclass
class MergeResult:
    """The merged records and what the merge counted."""

    flows: List[dict]
    connections: List[dict]
    dns: List[dict]
    tls: List[dict]
    community_id: List[dict]
    basic_stats: Optional[dict]
    counts: Dict[str, int]


class _Chain:
    """A flow being stitched from its pieces."""

    __slots__ = ("rec", "root", "shard", "first_ns", "last_ns", "segments", "pieces")

    def __init__(self, rec: dict, shard: int):
        self.rec = dict(rec)
        self.root = rec["flow_id"]
        self.shard = shard
        self.first_ns = ts_ns(rec.get("first"))
        self.last_ns = ts_ns(rec.get("last"))
        self.segments = 1
        self.pieces = [rec]


def _proto_timeout(proto_num: int, t: Dict[str, float]) -> int:
    if proto_num == 6:
        s = t["tcp_timeout"]
    elif proto_num == 17:
        s = t["udp_timeout"]
    elif proto_num in (1, 58):
        s = t["icmp_timeout"]
    else:
        s = t["other_timeout"]
    return int(round(s * 1e9))


def _closing(rec: dict) -> bool:
    return rec.get("end_reason") in ("fin", "rst")


def _timeout(rec: dict, t: Dict[str, float]) -> int:
    """The idle timeout the flow table applies to a flow in ``rec``'s state."""
    if _closing(rec):
        return int(round(t["tcp_close_timeout"] * 1e9))
    return _proto_timeout(rec.get("proto_num", 0), t)


def _alive_at(piece: dict, rec: dict, last_ns: Optional[int], end_ns: Optional[int],
              t) -> bool:
    """Was the flow (merged so far: ``rec``) still in the flow table when the
    shard of its last piece (``piece``) ended?"""
    if piece.get("end_reason") not in ("end-of-input", "fin", "rst"):
        return False
    if _closing(rec):
        # lingering after FIN/RST: until last + tcp_close_timeout
        if last_ns is None or end_ns is None:
            return True
        return last_ns + _timeout(rec, t) > end_ns
    return piece.get("end_reason") == "end-of-input"


def _merged_reason(prev: dict, f: dict, orig_flags: str, resp_flags: str) -> str:
    """End reason of a flow ``prev`` continued by piece ``f``: a flow closed
    by FIN/RST stays closed (it lingers, then ends with that reason, as the
    flow table does), also when the two FINs fall in different pieces."""
    if _closing(prev):
        return prev["end_reason"]
    if _closing(f):
        return f["end_reason"]
    if prev.get("proto_num") == 6 and f.get("end_reason") in ("end-of-input", "timeout"):
        if "R" in orig_flags or "R" in resp_flags:
            return "rst"
        if "F" in orig_flags and "F" in resp_flags:
            return "fin"
    return f.get("end_reason")


def _endpoints(rec: dict) -> Tuple[tuple, tuple]:
    return (rec.get("src_ip"), rec.get("src_port")), (rec.get("dst_ip"), rec.get("dst_port"))


def _flow_keys(flows: List[dict]) -> Dict[str, tuple]:
    """Canonical key of every flow of a shard: protocol, VLAN, tunnel depth,
    both endpoints (sorted) and the keys of its tunnel parents."""
    by_id = {f["flow_id"]: f for f in flows}
    keys: Dict[str, tuple] = {}

    def key(fid: str, depth: int) -> tuple:
        if fid in keys:
            return keys[fid]
        f = by_id.get(fid)
        if f is None or depth > 16:
            return ("?", fid)
        a, b = _endpoints(f)
        parents = tuple(sorted((key(p, depth + 1) for p in f.get("tunnel_parents") or []),
                               key=repr))
        k = (f.get("proto_num"), f.get("vlan"), f.get("tunnel_depth") or 0,
             min(a, b, key=repr), max(a, b, key=repr), parents)
        keys[fid] = k
        return k

    for f in flows:
        key(f["flow_id"], 0)
    return keys


def _union_letters(a: str, b: str, order: str) -> str:
    s = set(a or "") | set(b or "")
    return "".join(c for c in order if c in s)


def _swap_case(h: str) -> str:
    return "".join(c.lower() if c.isupper() else c.upper() for c in h if c != "^")


def _merge_history(a: str, b: str) -> str:
    out = list(a or "")
    for c in b or "":
        if c == "^":
            continue
        if c.upper() in _ONCE and c in out:
            continue
        out.append(c)
    return "".join(out)[:24]


def conn_state_from_history(proto_num: int, history: str, orig_bytes: int,
                            resp_bytes: int, orig_pkts: int, resp_pkts: int) -> str:
    """Zeek's conn_state from the history letters, following the endpoint
    states of libpcap_tools::conn (an approximation: only the letters are
    known, not every packet)."""
    if proto_num == 17:
        return {(True, True): "SF", (True, False): "S0", (False, True): "SHR"}.get(
            (orig_pkts > 0, resp_pkts > 0), "OTH")
    if proto_num != 6:
        return "OTH"
    state = {True: "inactive", False: "inactive"}
    for c in history:
        if c == "^":
            continue
        orig = c.isupper()
        u = c.upper()
        side, peer = state[orig], state[not orig]
        if u in ("R", "I"):
            state[orig] = "reset"
        elif u in ("F",):
            if side != "reset":
                state[orig] = "closed"
        elif u in ("S", "H"):
            if side == "inactive":
                state[orig] = "synack" if u == "H" else "syn"
        elif u in ("A", "D"):
            if side == "inactive":
                state[orig] = "partial"
            elif side in ("syn", "synack") and peer != "inactive":
                state[orig] = "established"
                if peer in ("syn", "synack"):
                    state[not orig] = "established"
    os_, rs = state[True], state[False]
    o_in = os_ in ("inactive", "partial")
    r_in = rs in ("inactive", "partial")
    if rs == "reset":
        if os_ in ("syn", "synack") or (os_ == "reset" and orig_bytes == 0 and resp_bytes == 0):
            return "REJ"
        return "RSTRH" if o_in else "RSTR"
    if os_ == "reset":
        if r_in:
            h = history.lstrip("^")
            if h.startswith("S"):
                for c in h[1:]:
                    if c == "R":
                        return "RSTOS0"
                    if c in "HAFGIQ":
                        break
            return "OTH"
        return "RSTO"
    if rs == "closed" and os_ == "closed":
        return "SF"
    if os_ == "closed":
        return "SH" if r_in else "S2"
    if rs == "closed":
        return "SHR" if o_in else "S3"
    if os_ == "syn" and rs == "inactive":
        return "S0"
    if os_ == "established" and rs == "established":
        return "S1"
    return "OTH"


def _stitch(c: _Chain, f: dict, counts: Dict[str, int]) -> None:
    r = c.rec
    turned = _endpoints(f)[0] != _endpoints(r)[0]
    if turned:
        counts["stitched_turned"] += 1
    for d in _DIRECTIONAL:
        ro, rr = "orig_" + d, "resp_" + d
        fo, fr = (rr, ro) if turned else (ro, rr)
        r[ro] = (r.get(ro) or 0) + (f.get(fo) or 0)
        r[rr] = (r.get(rr) or 0) + (f.get(fr) or 0)
    r["missed_bytes"] = (r.get("missed_bytes") or 0) + (f.get("missed_bytes") or 0)
    fo_flags, fr_flags = f.get("tcp_flags_orig", ""), f.get("tcp_flags_resp", "")
    if turned:
        fo_flags, fr_flags = fr_flags, fo_flags
    if "tcp_flags_orig" in r or "tcp_flags_orig" in f:
        r["tcp_flags_orig"] = _union_letters(r.get("tcp_flags_orig", ""), fo_flags, _TCP_FLAGS)
        r["tcp_flags_resp"] = _union_letters(r.get("tcp_flags_resp", ""), fr_flags, _TCP_FLAGS)
    services = set((r.get("service") or "").split(",")) | set((f.get("service") or "").split(","))
    services.discard("")
    if services:
        r["service"] = ",".join([s for s in _SERVICES if s in services]
                                + sorted(services - set(_SERVICES)))
    h = f.get("history") or ""
    h = _swap_case(h) if turned else h
    if "history" in r:
        r["history"] = _merge_history(r.get("history") or "", h)
        r["conn_state"] = conn_state_from_history(
            r.get("proto_num", 0), r["history"], r.get("orig_bytes") or 0,
            r.get("resp_bytes") or 0, r.get("orig_pkts") or 0, r.get("resp_pkts") or 0)
    f_last = ts_ns(f.get("last"))
    if f_last is not None and (c.last_ns is None or f_last >= c.last_ns):
        c.last_ns = f_last
        r["last"] = f.get("last")
    if c.first_ns is not None and c.last_ns is not None:
        r["duration"] = round((c.last_ns - c.first_ns) / 1e9, 9)
    r["end_reason"] = _merged_reason(r, f, r.get("tcp_flags_orig", ""),
                                     r.get("tcp_flags_resp", ""))
    if r.get("proto_num") == 6 and ((r.get("orig_bytes") or 0) - (f.get("orig_bytes") or 0)
                                     + (r.get("resp_bytes") or 0) - (f.get("resp_bytes") or 0)) > 0 \
            and ((f.get("orig_bytes") or 0) + (f.get("resp_bytes") or 0)) > 0:
        # data on both sides of the cut: reassembled-stream records (TLS
        # hellos, DNS over TCP) crossing it were lost in both shards
        counts["tcp_stream_cut"] += 1
    c.segments += 1
    c.pieces.append(f)


def _starts_with_syn(f: dict) -> bool:
    h = (f.get("history") or "").lstrip("^")
    return f.get("proto_num") == 6 and h.startswith("S")


def _remap_fields(rec: dict, shard: int, remap: Dict[Tuple[int, str], str]) -> dict:
    out = dict(rec)
    for field in ("flow_id", "flow", "id"):
        v = out.get(field)
        if isinstance(v, str):
            out[field] = remap.get((shard, v), v)
    return out


def merge(shards: List[Shard], timeouts: Optional[Dict[str, float]] = None) -> MergeResult:
    """Merge the shards' records (``shards`` in time order)."""
    t = dict(DEFAULT_TIMEOUTS)
    t.update(timeouts or {})
    counts = {k: 0 for k in (
        "shards", "flow_pieces", "flows", "stitched", "stitched_turned", "tcp_stream_cut",
        "not_stitched_gap", "not_stitched_new_syn", "not_stitched_no_time",
        "end_of_input_to_timeout", "eviction", "dns_split_paired", "dns_split_unpaired",
        "dns_lone_queries_at_cut", "dns_lone_responses_at_cut")}
    counts["shards"] = len(shards)
    remap: Dict[Tuple[int, str], str] = {}
    chains: List[_Chain] = []
    open_by_key: Dict[tuple, _Chain] = {}
    chain_of: Dict[Tuple[int, str], _Chain] = {}
    cut_at_end: set = set()  # (shard, flow_id) of pieces alive at their shard's end
    continued: set = set()  # (shard, flow_id) of pieces stitched to an earlier one
    global_end: Optional[int] = None

    for k, shard in enumerate(shards):
        end_ns = shard.last_ns()
        if end_ns is not None:
            global_end = end_ns if global_end is None else max(global_end, end_ns)
        keys = _flow_keys(shard.flows)
        seen_here: set = set()
        # RFC 3339 times of one width sort as text in time order
        order = sorted(shard.flows, key=lambda f: (f.get("first") or "", f["flow_id"]))
        counts["flow_pieces"] += len(order)
        for f in order:
            key = keys[f["flow_id"]]
            if f.get("end_reason") == "eviction":
                counts["eviction"] += 1
            c = open_by_key.get(key) if key not in seen_here else None
            seen_here.add(key)
            stitched = False
            if c is not None and c.shard < k:
                f_first = ts_ns(f.get("first"))
                if f_first is None or c.last_ns is None:
                    counts["not_stitched_no_time"] += 1
                elif f_first - c.last_ns >= _timeout(c.rec, t):
                    counts["not_stitched_gap"] += 1
                elif _closing(c.rec) and _starts_with_syn(f):
                    counts["not_stitched_new_syn"] += 1
                else:
                    _stitch(c, f, counts)
                    counts["stitched"] += 1
                    stitched = True
                if not stitched:
                    del open_by_key[key]
            if stitched:
                remap[(k, f["flow_id"])] = c.root
                continued.add((k, f["flow_id"]))
            else:
                c = _Chain(f, k)
                chains.append(c)
                remap[(k, f["flow_id"])] = f["flow_id"]
            chain_of[(k, f["flow_id"])] = c
            c.shard = k
            if _alive_at(f, c.rec, ts_ns(f.get("last")), end_ns, t):
                open_by_key[key] = c
                cut_at_end.add((k, f["flow_id"]))
            elif open_by_key.get(key) is c:
                del open_by_key[key]

    # pieces that ended with their shard and were not continued: the single
    # run ends them by timeout once the capture went past their deadline
    flows = []
    for c in chains:
        r = c.rec
        if r.get("end_reason") == "end-of-input" and c.last_ns is not None \
                and global_end is not None and c.last_ns + _timeout(r, t) <= global_end:
            r["end_reason"] = "timeout"
            counts["end_of_input_to_timeout"] += 1
        flows.append(r)
    # tunnel parents: the stitched ids
    for k, shard in enumerate(shards):
        for f in shard.flows:
            c = chain_of[(k, f["flow_id"])]
            if c.pieces[0] is f and f.get("tunnel_parents"):
                c.rec["tunnel_parents"] = [remap.get((k, p), p) for p in f["tunnel_parents"]]
    flows.sort(key=lambda r: (r.get("first") or "", r["flow_id"]))
    counts["flows"] = len(flows)

    connections = _merge_connections(shards, chains, remap)
    dns = _merge_dns(shards, remap, continued, cut_at_end, counts)
    tls = [_remap_fields(r, k, remap) for k, s in enumerate(shards) for r in s.tls]
    community = []
    seen_ids: set = set()
    for k, s in enumerate(shards):
        for r in s.community_id:
            r = _remap_fields(r, k, remap)
            fid = r.get("flow_id", r.get("id"))
            if fid is not None and fid in seen_ids:
                continue
            seen_ids.add(fid)
            community.append(r)
    stats = _merge_basic_stats(shards, chains, flows)
    return MergeResult(flows, connections, dns, tls, community, stats, counts)


def _ukeys(rec: dict) -> List[Tuple[tuple, str]]:
    """Unidirectional connection keys a flow piece counts in, with the
    direction whose packets it counts there."""
    out = []
    a, b = _endpoints(rec)
    if (rec.get("orig_pkts") or 0) > 0:
        out.append((a + b, "orig"))
    if (rec.get("resp_pkts") or 0) > 0:
        out.append((b + a, "resp"))
    return out


def _merge_connections(shards: List[Shard], chains: List[_Chain],
                       remap: Dict[Tuple[int, str], str]) -> List[dict]:
    correction: Dict[tuple, int] = {}
    for c in chains:
        if c.segments < 2:
            continue
        n: Dict[tuple, int] = {}
        for p in c.pieces:
            for uk, _ in _ukeys(p):
                n[uk] = n.get(uk, 0) + 1
        for uk, m in n.items():
            if m > 1:
                correction[uk] = correction.get(uk, 0) + m - 1
    rows: Dict[tuple, dict] = {}
    best: Dict[tuple, tuple] = {}
    for k, s in enumerate(shards):
        for r in s.connections:
            key = (r.get("src_ip"), r.get("src_port"), r.get("dst_ip"), r.get("dst_port"))
            # times compared as text: RFC 3339 of one width sorts in time order
            first, last = r.get("first"), r.get("last")
            acc = rows.get(key)
            if acc is None:
                acc = rows[key] = {"first": None, "last": None, "flow_id": None,
                                   "src_ip": key[0], "src_port": key[1],
                                   "dst_ip": key[2], "dst_port": key[3],
                                   "protocols": set(), "bytes": 0, "packets": 0, "flows": 0}
            acc["protocols"].update(r.get("protocols") or [])
            if first is not None and (acc["first"] is None or first < acc["first"]):
                acc["first"] = first
            if last is not None and (acc["last"] is None or last > acc["last"]):
                acc["last"] = last
            acc["bytes"] += r.get("bytes") or 0
            acc["packets"] += r.get("packets") or 0
            acc["flows"] += r.get("flows") or 0
            fid = r.get("flow_id")
            if fid is not None:
                cand = (first is None, first or "", remap.get((k, fid), fid))
                if key not in best or cand < best[key]:
                    best[key] = cand
                    acc["flow_id"] = cand[2]
    out = []
    for key, acc in rows.items():
        acc["flows"] -= correction.get(key, 0)
        acc["protocols"] = sorted(acc["protocols"],
                                  key=lambda p: (_PROTO_NUMBERS.get(p.upper(), 999), p))
        out.append(acc)
    out.sort(key=lambda r: (r["first"] or "", str(r["src_ip"]), r["src_port"] or 0,
                            str(r["dst_ip"]), r["dst_port"] or 0))
    return out


_RESPONSE_FIELDS = ("rcode", "rcode_name", "flags", "answers", "answer_types", "ttls",
                    "authorities", "additionals")


def _merge_dns(shards, remap, continued, cut_at_end, counts) -> List[dict]:
    out: List[dict] = []
    queries: Dict[tuple, List[dict]] = {}
    for k, s in enumerate(shards):
        for r in s.dns:
            fid = r.get("flow_id")
            rec = _remap_fields(r, k, remap)
            lone_q = r.get("rcode") is None
            lone_r = r.get("rcode") is not None and r.get("rtt") is None
            if lone_r and (k, fid) in continued:
                # a response in a continuation: look for its query cut off
                # at an earlier shard's end
                counts["dns_lone_responses_at_cut"] += 1
                q = _take_query(queries, rec)
                if q is not None:
                    q_ts, r_ts = ts_ns(q.get("ts")), ts_ns(rec.get("ts"))
                    for field in _RESPONSE_FIELDS:
                        if field in rec:
                            q[field] = rec[field]
                    if q.get("edns_udp_size") is None and rec.get("edns_udp_size") is not None:
                        q["edns_udp_size"] = rec["edns_udp_size"]
                        q["edns_do"] = rec.get("edns_do")
                    if q_ts is not None and r_ts is not None:
                        q["rtt"] = round((r_ts - q_ts) / 1e9, 9)
                    if rec.get("partial"):
                        q["partial"] = True
                    counts["dns_split_paired"] += 1
                    continue
                counts["dns_split_unpaired"] += 1
            out.append(rec)
            if lone_q and (k, fid) in cut_at_end:
                counts["dns_lone_queries_at_cut"] += 1
                key = (rec.get("flow_id"), rec.get("trans_id"))
                queries.setdefault(key, []).append(rec)
    out.sort(key=lambda r: (r.get("ts") or "", r.get("flow_id") or ""))
    return out


def _take_query(queries, resp) -> Optional[dict]:
    cands = queries.get((resp.get("flow_id"), resp.get("trans_id")))
    if not cands:
        return None
    for i, q in enumerate(cands):
        if q.get("query") == resp.get("query") and q.get("qtype") == resp.get("qtype"):
            return cands.pop(i)
    return cands.pop(0)


def _sum_into(acc: Any, v: Any, indexes: Dict[int, dict]) -> Any:
    """Adds ``v`` into ``acc``: numbers summed, objects by key, lists of
    objects by their non-numeric fields (``indexes`` keeps each list's
    index between calls)."""
    if acc is None:
        return json.loads(json.dumps(v)) if isinstance(v, (dict, list)) else v
    if isinstance(v, bool):
        return acc
    if isinstance(v, (int, float)) and isinstance(acc, (int, float)):
        return acc + v
    if isinstance(v, dict) and isinstance(acc, dict):
        for k2, v2 in v.items():
            acc[k2] = _sum_into(acc.get(k2), v2, indexes)
        return acc
    if isinstance(v, list) and isinstance(acc, list):
        index = indexes.get(id(acc))
        if index is None:
            index = indexes[id(acc)] = {_conv_key(x): x for x in acc if isinstance(x, dict)}
        for x in v:
            if isinstance(x, dict):
                kx = _conv_key(x)
                if kx in index:
                    _sum_into(index[kx], x, indexes)
                    continue
                x = json.loads(json.dumps(x))
                index[kx] = x
            acc.append(x)
        return acc
    return acc


def _conv_key(x: dict) -> tuple:
    return tuple((k, v) for k, v in x.items()
                 if isinstance(v, str) or v is None or k.endswith("_port"))


def _merge_basic_stats(shards: List[Shard], chains: List[_Chain],
                       flows: List[dict]) -> Optional[dict]:
    stats = None
    indexes: Dict[int, dict] = {}
    for s in shards:
        if s.basic_stats is not None:
            stats = _sum_into(stats, s.basic_stats, indexes)
    if stats is None:
        return None
    ended: Dict[str, int] = {}
    for f in flows:
        r = f.get("end_reason") or "unknown"
        ended[r] = ended.get(r, 0) + 1
    if "flows_ended" in stats:
        stats["flows_ended"] = dict(sorted(ended.items()))
    extra3: Dict[frozenset, int] = {}
    extra4: Dict[tuple, int] = {}
    for c in chains:
        if c.segments > 1:
            a, b = _endpoints(c.rec)
            k3 = frozenset((a[0], b[0]))
            k4 = (frozenset((a, b)), str(c.rec.get("proto", "")).upper())
            extra3[k3] = extra3.get(k3, 0) + c.segments - 1
            extra4[k4] = extra4.get(k4, 0) + c.segments - 1
    for conv in stats.get("l3_conversations") or []:
        k3 = frozenset((conv.get("a"), conv.get("b")))
        if k3 in extra3 and isinstance(conv.get("flows"), int):
            conv["flows"] -= extra3[k3]
    for conv in stats.get("l4_conversations") or []:
        k4 = (frozenset(((conv.get("a"), conv.get("a_port")), (conv.get("b"), conv.get("b_port")))),
              str(conv.get("protocol", "")).upper())
        if k4 in extra4 and isinstance(conv.get("flows"), int):
            conv["flows"] -= extra4[k4]
    return stats


def iter_jsonl(lines: Iterable[str]) -> Iterable[dict]:
    """Records of JSON lines (blank lines skipped)."""
    for line in lines:
        if line.strip():
            yield json.loads(line)
