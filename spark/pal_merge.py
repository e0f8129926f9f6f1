"""Merge the records of pcap-analyzer runs over consecutive shards of one
capture into the records one run over the whole capture gives.

This is the one place where the merge logic lives. ``merge`` merges shards
in one process; ``pal_spark.py`` runs the same steps distributed
(``shard_elements`` in each task, ``Stitching`` per flow key, ``conn_add``
in a reduceByKey, ``pair_dns`` per stitched flow, ``sum_stats`` in a tree).
``test_pal_merge.py`` tests the merge without Spark and
``test_distributed.py`` checks that the distributed steps give the same. Records are
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

    __slots__ = ("rec", "root", "shard", "first_shard", "first_ns", "last_ns", "segments",
                 "pieces")

    def __init__(self, rec: dict, shard: int):
        self.rec = dict(rec)
        self.root = rec["flow_id"]
        self.shard = shard
        self.first_shard = shard
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


COUNT_NAMES = (
    "shards", "flow_pieces", "flows", "stitched", "stitched_turned", "tcp_stream_cut",
    "not_stitched_gap", "not_stitched_new_syn", "not_stitched_no_time",
    "end_of_input_to_timeout", "eviction", "dns_split_paired", "dns_split_unpaired",
    "dns_lone_queries_at_cut", "dns_lone_responses_at_cut")


def new_counts() -> Dict[str, int]:
    """Every counter of ``MergeResult.counts`` at zero."""
    return {k: 0 for k in COUNT_NAMES}


def add_counts(a: Dict[str, int], b: Dict[str, int]) -> Dict[str, int]:
    """``a`` plus ``b``, counter by counter (into ``a``)."""
    for k, v in b.items():
        a[k] = a.get(k, 0) + v
    return a


class Stitching:
    """Flow pieces stitched into flows. Pieces are added in the order
    (shard, first, flow_id); only pieces of the same key (``flow_keys``) ever
    meet, so the pieces of one key can be stitched on their own (what the
    Spark job does, one group per key) or all together (``merge``)."""

    def __init__(self, timeouts: Dict[str, float], counts: Dict[str, int]):
        self.t = timeouts
        self.counts = counts
        self.remap: Dict[Tuple[int, str], str] = {}
        self.chains: List[_Chain] = []
        self.chain_of: Dict[Tuple[int, str], _Chain] = {}
        self.cut_at_end: set = set()  # (shard, flow_id) of pieces alive at their shard's end
        self.continued: set = set()  # (shard, flow_id) of pieces stitched to an earlier one
        self._open_by_key: Dict[tuple, _Chain] = {}
        self._shard: Optional[int] = None
        self._seen_here: set = set()

    def add(self, k: int, key: tuple, f: dict, end_ns: Optional[int]) -> None:
        """Adds piece ``f`` of shard ``k`` (whose last packet is at ``end_ns``)."""
        counts, t = self.counts, self.t
        if k != self._shard:
            self._shard = k
            self._seen_here = set()
        counts["flow_pieces"] += 1
        if f.get("end_reason") == "eviction":
            counts["eviction"] += 1
        c = self._open_by_key.get(key) if key not in self._seen_here else None
        self._seen_here.add(key)
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
                del self._open_by_key[key]
        if stitched:
            self.remap[(k, f["flow_id"])] = c.root
            self.continued.add((k, f["flow_id"]))
        else:
            c = _Chain(f, k)
            self.chains.append(c)
            self.remap[(k, f["flow_id"])] = f["flow_id"]
        self.chain_of[(k, f["flow_id"])] = c
        c.shard = k
        if _alive_at(f, c.rec, ts_ns(f.get("last")), end_ns, t):
            self._open_by_key[key] = c
            self.cut_at_end.add((k, f["flow_id"]))
        elif self._open_by_key.get(key) is c:
            del self._open_by_key[key]

    def finish(self, global_end: Optional[int]) -> List[dict]:
        """The stitched flows: pieces that ended with their shard and were
        not continued end by timeout once the capture went past their
        deadline, as the single run ends them."""
        flows = []
        for c in self.chains:
            r = c.rec
            if r.get("end_reason") == "end-of-input" and c.last_ns is not None \
                    and global_end is not None and c.last_ns + _timeout(r, self.t) <= global_end:
                r["end_reason"] = "timeout"
                self.counts["end_of_input_to_timeout"] += 1
            flows.append(r)
        self.counts["flows"] += len(flows)
        return flows


def piece_alive_at_end(f: dict, end_ns: Optional[int], timeouts: Dict[str, float]) -> bool:
    """May piece ``f`` continue in a later shard? (It was in the flow table
    when its shard ended, judged on the piece alone: a superset of the
    stitched flows alive at their shard's end.)"""
    return _alive_at(f, f, ts_ns(f.get("last")), end_ns, timeouts)


def key_hash(key: tuple) -> int:
    """A 64-bit hash of a flow key, the same in every process."""
    import hashlib
    return int.from_bytes(hashlib.blake2b(repr(key).encode("utf-8"), digest_size=8).digest(),
                          "little")


class Bloom:
    """A Bloom filter of flow key hashes (``key_hash``): a key not in it is
    certainly not there; false positives (about 1% at 10 bits per key) only
    send a few more pieces through the stitching, whose result is exact for
    any set of whole keys."""

    HASHES = 7

    def __init__(self, bits: int, data: Optional[bytes] = None):
        self.bits = max(64, bits)
        self.data = bytearray(data) if data is not None else bytearray((self.bits + 7) // 8)

    @classmethod
    def for_keys(cls, n: int) -> "Bloom":
        """An empty filter sized for ``n`` keys."""
        return cls(max(1 << 16, 10 * n))

    def _positions(self, h: int):
        h1, h2 = h & 0xFFFFFFFF, (h >> 32) | 1
        return [(h1 + i * h2) % self.bits for i in range(self.HASHES)]

    def add(self, h: int) -> None:
        """Adds a key hash."""
        for p in self._positions(h):
            self.data[p >> 3] |= 1 << (p & 7)

    def __contains__(self, h: int) -> bool:
        return all(self.data[p >> 3] & (1 << (p & 7)) for p in self._positions(h))

    def union(self, other: "Bloom") -> "Bloom":
        """The union of two filters of the same size (into self)."""
        a = int.from_bytes(self.data, "little") | int.from_bytes(other.data, "little")
        self.data = bytearray(a.to_bytes(len(self.data), "little"))
        return self


def ref_fields(rec: dict) -> List[str]:
    """The flow ids a record names (fields ``flow_id``, ``flow``, ``id``)."""
    return [v for v in (rec.get("flow_id"), rec.get("flow"), rec.get("id")) if isinstance(v, str)]


def shard_elements(shard: Shard, timeouts: Dict[str, float]) -> Iterable[tuple]:
    """The records of one shard as the Spark job's elements (what a task
    sends on, never to the driver): ``("F", name, seq, flow, key, key hash,
    alive at end, {parent id: key hash})``, ``(tag, name, seq, record, {flow
    id: key hash})`` for connection rows (C), DNS (D), TLS (T) and Community
    ID (I) records, ``("B", name, basic-stats)`` and ``("S", name, facts)``:
    the shard's first and last packet times and how many of its pieces may
    continue (all the driver gets)."""
    keys = _flow_keys(shard.flows)
    hashes = {fid: key_hash(k) for fid, k in keys.items()}
    end_ns = shard.last_ns()
    n_open = 0
    for seq, f in enumerate(shard.flows):
        alive = piece_alive_at_end(f, end_ns, timeouts)
        n_open += alive
        ph = {p: hashes[p] for p in f.get("tunnel_parents") or [] if p in hashes}
        yield ("F", shard.name, seq, f, keys[f["flow_id"]], hashes[f["flow_id"]], alive, ph)
    for tag, recs in (("C", shard.connections), ("D", shard.dns), ("T", shard.tls),
                      ("I", shard.community_id)):
        for seq, r in enumerate(recs):
            yield (tag, shard.name, seq, r,
                   {v: hashes[v] for v in ref_fields(r) if v in hashes})
    if shard.basic_stats is not None:
        yield ("B", shard.name, shard.basic_stats)
    yield ("S", shard.name, {"name": shard.name, "start_ns": shard.start_ns(), "end_ns": end_ns,
                             "open": n_open,
                             "flow_pieces": len(shard.flows)})


def stitch_group(key: tuple, pieces: Iterable[Tuple[int, dict]], shard_end: List[Optional[int]],
                 global_end: Optional[int], timeouts: Dict[str, float]):
    """Stitches the pieces ``(shard, flow)`` of one flow key (every piece of
    the key in every shard). Returns (Stitching, flows); the Spark job reads
    the pieces' ids (``remap``, ``continued``, ``cut_at_end``) and the
    corrections (``chain_corrections``) from the Stitching."""
    st = Stitching(timeouts, new_counts())
    for k, f in sorted(pieces, key=lambda p: (p[0], p[1].get("first") or "", p[1]["flow_id"])):
        st.add(k, key, f, shard_end[k])
    return st, st.finish(global_end)


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


def conv_keys(a_ip, a_port, b_ip, b_port, proto) -> Tuple[tuple, tuple]:
    """The keys of basic-stats' l3 and l4 conversations between two endpoints."""
    k3 = tuple(sorted((a_ip, b_ip), key=repr))
    k4 = (tuple(sorted(((a_ip, a_port), (b_ip, b_port)), key=repr)), str(proto or "").upper())
    return k3, k4


def chain_corrections(c: _Chain):
    """What a stitched flow corrects in the sums: ``("conn", connection
    key, n)`` (the connection report counted the flow once per piece) and
    ``("l3"/"l4", conversation key, n)`` (basic-stats conversations)."""
    if c.segments < 2:
        return
    n: Dict[tuple, int] = {}
    for p in c.pieces:
        for uk, _ in _ukeys(p):
            n[uk] = n.get(uk, 0) + 1
    for uk, m in n.items():
        if m > 1:
            yield ("conn", uk, m - 1)
    a, b = _endpoints(c.rec)
    k3, k4 = conv_keys(a[0], a[1], b[0], b[1], c.rec.get("proto", ""))
    yield ("l3", k3, c.segments - 1)
    yield ("l4", k4, c.segments - 1)


def conn_key(r: dict) -> tuple:
    """The key of a connection report row."""
    return (r.get("src_ip"), r.get("src_port"), r.get("dst_ip"), r.get("dst_port"))


def conn_acc(r: dict, fid: Optional[str]) -> dict:
    """A connection row as a sum to add others to (``conn_add``); ``fid``:
    its flow id with stitched ids."""
    first, last = r.get("first"), r.get("last")
    key = conn_key(r)
    return {"first": first, "last": last, "flow_id": None,
            "src_ip": key[0], "src_port": key[1], "dst_ip": key[2], "dst_port": key[3],
            "protocols": set(r.get("protocols") or []), "bytes": r.get("bytes") or 0,
            "packets": r.get("packets") or 0, "flows": r.get("flows") or 0,
            "_best": (first is None, first or "", fid) if fid is not None else None,
            "_rows": 1}


def conn_correction(key: tuple, n: int) -> dict:
    """A sum that takes ``n`` flows off row ``key`` (a flow counted once per piece)."""
    return {"first": None, "last": None, "flow_id": None, "src_ip": key[0],
            "src_port": key[1], "dst_ip": key[2], "dst_port": key[3], "protocols": set(),
            "bytes": 0, "packets": 0, "flows": -n, "_best": None, "_rows": 0}


def conn_add(a: dict, b: dict) -> dict:
    """Two sums of one connection key added (into ``a``): protocols united,
    first = min, last = max, counters summed, the id of the flow with the
    row's first packet. Times compare as text: RFC 3339 of one width sorts
    in time order."""
    a["protocols"] |= b["protocols"]
    if b["first"] is not None and (a["first"] is None or b["first"] < a["first"]):
        a["first"] = b["first"]
    if b["last"] is not None and (a["last"] is None or b["last"] > a["last"]):
        a["last"] = b["last"]
    for k in ("bytes", "packets", "flows", "_rows"):
        a[k] += b[k]
    if b["_best"] is not None and (a["_best"] is None or b["_best"] < a["_best"]):
        a["_best"] = b["_best"]
    return a


def conn_final(a: dict) -> Optional[dict]:
    """The merged row of a sum (None: only corrections, no row)."""
    if a["_rows"] == 0:
        return None
    out = dict(a)
    best = out.pop("_best")
    out.pop("_rows")
    out["flow_id"] = best[2] if best is not None else None
    out["protocols"] = sorted(out["protocols"],
                              key=lambda p: (_PROTO_NUMBERS.get(p.upper(), 999), p))
    return out


def merge(shards: List[Shard], timeouts: Optional[Dict[str, float]] = None) -> MergeResult:
    """Merge the shards' records (``shards`` in time order)."""
    t = dict(DEFAULT_TIMEOUTS)
    t.update(timeouts or {})
    counts = new_counts()
    counts["shards"] = len(shards)
    st = Stitching(t, counts)
    global_end: Optional[int] = None
    for k, shard in enumerate(shards):
        end_ns = shard.last_ns()
        if end_ns is not None:
            global_end = end_ns if global_end is None else max(global_end, end_ns)
        keys = _flow_keys(shard.flows)
        # RFC 3339 times of one width sort as text in time order
        for f in sorted(shard.flows, key=lambda f: (f.get("first") or "", f["flow_id"])):
            st.add(k, keys[f["flow_id"]], f, end_ns)
    flows = st.finish(global_end)
    remap = st.remap
    # tunnel parents: the stitched ids
    for c in st.chains:
        f = c.pieces[0]
        if f.get("tunnel_parents"):
            c.rec["tunnel_parents"] = [remap.get((c.first_shard, p), p)
                                       for p in f["tunnel_parents"]]
    flows.sort(key=lambda r: (r.get("first") or "", r["flow_id"]))
    corrections = [x for c in st.chains for x in chain_corrections(c)]

    conns: Dict[tuple, dict] = {}
    for k, s in enumerate(shards):
        for r in s.connections:
            fid = r.get("flow_id")
            acc = conn_acc(r, remap.get((k, fid), fid) if fid is not None else None)
            key = conn_key(r)
            conns[key] = conn_add(conns[key], acc) if key in conns else acc
    for kind, key, n in corrections:
        if kind == "conn" and key in conns:
            conn_add(conns[key], conn_correction(key, n))
    connections = [conn_final(a) for a in conns.values()]
    connections.sort(key=lambda r: (r["first"] or "", str(r["src_ip"]), r["src_port"] or 0,
                                    str(r["dst_ip"]), r["dst_port"] or 0))

    dns = pair_dns(((_remap_fields(r, k, remap), (k, r.get("flow_id")) in st.continued,
                     (k, r.get("flow_id")) in st.cut_at_end)
                    for k, s in enumerate(shards) for r in s.dns), counts)
    dns.sort(key=lambda r: (r.get("ts") or "", r.get("flow_id") or ""))
    tls = [_remap_fields(r, k, remap) for k, s in enumerate(shards) for r in s.tls]
    community = first_per_flow(_remap_fields(r, k, remap)
                               for k, s in enumerate(shards) for r in s.community_id)
    stats = None
    for s in shards:
        if s.basic_stats is not None:
            stats = sum_stats(stats, s.basic_stats)
    stats = finish_stats(stats, count_end_reasons(flows), corrections)
    return MergeResult(flows, connections, dns, tls, community, stats, counts)


def community_flow(r: dict) -> Optional[str]:
    """The flow a Community ID record is about (``flow_id``, else ``id``)."""
    return r.get("flow_id", r.get("id"))


def first_per_flow(records: Iterable[dict]) -> List[dict]:
    """Community ID records (with stitched ids, in shard order): the first
    of each flow (a stitched flow has one per piece)."""
    out = []
    seen_ids: set = set()
    for r in records:
        fid = community_flow(r)
        if fid is not None and fid in seen_ids:
            continue
        seen_ids.add(fid)
        out.append(r)
    return out


_RESPONSE_FIELDS = ("rcode", "rcode_name", "flags", "answers", "answer_types", "ttls",
                    "authorities", "additionals")


def pair_dns(items: Iterable[Tuple[dict, bool, bool]], counts: Dict[str, int]) -> List[dict]:
    """DNS records ``(record with stitched ids, its flow piece continues an
    earlier one, its flow piece was alive at its shard's end)`` in shard and
    file order: a lone response at the start of a continuation is folded
    into the query cut off at an earlier shard's end (same stitched flow,
    transaction id and question). Records of different flows never meet,
    so each flow's records can be paired on their own."""
    out: List[dict] = []
    queries: Dict[tuple, List[dict]] = {}
    for rec, continued, cut_at_end in items:
        lone_q = rec.get("rcode") is None
        lone_r = rec.get("rcode") is not None and rec.get("rtt") is None
        if lone_r and continued:
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
        if lone_q and cut_at_end:
            counts["dns_lone_queries_at_cut"] += 1
            key = (rec.get("flow_id"), rec.get("trans_id"))
            queries.setdefault(key, []).append(rec)
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
            if k2.endswith("_port") and k2 in acc:
                continue  # part of a conversation's key (_conv_key): not a counter
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


def sum_stats(a: Optional[dict], b: Optional[dict]) -> Optional[dict]:
    """Two shards' (or sums') basic-stats summed: numbers summed, objects by
    key, conversation lists by their addresses and ports."""
    if b is None:
        return a
    return _sum_into(a, b, {})


def count_end_reasons(flows: Iterable[dict]) -> Dict[str, int]:
    """Merged flows by end reason."""
    ended: Dict[str, int] = {}
    for f in flows:
        r = f.get("end_reason") or "unknown"
        ended[r] = ended.get(r, 0) + 1
    return ended


def stats_conv_keys(stats: Optional[dict]) -> set:
    """The ("l3"/"l4", key) of every conversation basic-stats lists."""
    out = set()
    for conv in (stats or {}).get("l3_conversations") or []:
        out.add(("l3", conv_keys(conv.get("a"), None, conv.get("b"), None, "")[0]))
    for conv in (stats or {}).get("l4_conversations") or []:
        out.add(("l4", conv_keys(conv.get("a"), conv.get("a_port"), conv.get("b"),
                                 conv.get("b_port"), conv.get("protocol", ""))[1]))
    return out


def finish_stats(stats: Optional[dict], ended: Dict[str, int],
                 corrections: Iterable[Tuple[str, tuple, int]]) -> Optional[dict]:
    """Summed basic-stats made those of one run: ``flows_ended`` from the
    merged flows' end reasons (``ended``), conversations' ``flows`` less the
    stitched pieces (``corrections`` of ``chain_corrections``)."""
    if stats is None:
        return None
    if "flows_ended" in stats:
        stats["flows_ended"] = dict(sorted(ended.items()))
    extra: Dict[tuple, int] = {}
    for kind, key, n in corrections:
        if kind in ("l3", "l4"):
            extra[(kind, key)] = extra.get((kind, key), 0) + n
    for conv in stats.get("l3_conversations") or []:
        k = ("l3", conv_keys(conv.get("a"), None, conv.get("b"), None, "")[0])
        if k in extra and isinstance(conv.get("flows"), int):
            conv["flows"] -= extra[k]
    for conv in stats.get("l4_conversations") or []:
        k = ("l4", conv_keys(conv.get("a"), conv.get("a_port"), conv.get("b"),
                             conv.get("b_port"), conv.get("protocol", ""))[1])
        if k in extra and isinstance(conv.get("flows"), int):
            conv["flows"] -= extra[k]
    return stats

def iter_jsonl(lines: Iterable[str]) -> Iterable[dict]:
    """Records of JSON lines (blank lines skipped)."""
    for line in lines:
        if line.strip():
            yield json.loads(line)
