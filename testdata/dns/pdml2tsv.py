#!/usr/bin/env python3
"""Turns tshark PDML (on stdin) into one TSV row per DNS message (on stdout).

Written for PAL's DNS ground-truth tests (see README.md). Standard library only.

Columns (header line first):
  frame      frame.number of the packet that completed the message
  pdu        index of the DNS message inside that frame (0, 1, ... for TCP
             segments carrying several messages)
  ts         frame.time_epoch as shown by tshark (seconds.nanoseconds)
  protocols  frame.protocols (e.g. eth:ethertype:ip:udp:dns)
  malformed  1 when tshark hit the end of the data while dissecting DNS
             ("[Malformed Packet: DNS]", _ws.malformed), else 0
  ext_label  1 when a name anywhere in the message (owner or RDATA) uses an
             extended label type (tshark shows "<Unknown extended label>")
  id qr opcode rcode ext_rcode
             dns.id (decimal), dns.flags.response, dns.flags.opcode,
             dns.flags.rcode (empty when tshark shows none: queries),
             dns.resp.ext_rcode of the OPT record (empty without OPT)
  qd an ns ar
             the four header counts (dns.count.*; zones/prerequisites/updates
             for UPDATE messages)
  questions answers authorities additionals
             JSON arrays. A question is [name, type]; a record is
             [name, type, ttl, data], ttl null when tshark shows none (OPT),
             data the dns.a / dns.aaaa / dns.cname value, or null.
             Names are tshark's `show` values, unchanged.
"""
import json
import sys
import xml.etree.ElementTree as ET

SECTIONS = {
    "Queries": "questions",
    "Zone": "questions",
    "Answers": "answers",
    "Prerequisites": "answers",
    "Authoritative nameservers": "authorities",
    "Updates": "authorities",
    "Additional records": "additionals",
}
COUNTS = {
    "dns.count.queries": "qd",
    "dns.count.zones": "qd",
    "dns.count.answers": "an",
    "dns.count.prerequisites": "an",
    "dns.count.auth_rr": "ns",
    "dns.count.updates": "ns",
    "dns.count.add_rr": "ar",
}
DATA = ("dns.a", "dns.aaaa", "dns.cname")
COLUMNS = [
    "frame", "pdu", "ts", "protocols", "malformed", "ext_label", "id", "qr", "opcode", "rcode",
    "ext_rcode", "qd", "an", "ns", "ar", "questions", "answers", "authorities",
    "additionals",
]


def fields(elem, name):
    """Direct child <field> elements named `name`."""
    return [f for f in elem.findall("field") if f.get("name") == name]


def first(elem, name):
    """`show` of the first descendant field named `name`, or None."""
    for f in elem.iter("field"):
        if f.get("name") == name:
            return f.get("show")
    return None


def child_show(elem, name):
    """`show` of the first direct child field named `name`, or None."""
    for f in fields(elem, name):
        return f.get("show")
    return None


def question(entry):
    return [child_show(entry, "dns.qry.name"), int(child_show(entry, "dns.qry.type") or -1)]


def record(entry):
    ttl = child_show(entry, "dns.resp.ttl")
    data = None
    for d in DATA:
        v = child_show(entry, d)
        if v is not None:
            data = v
            break
    return [
        child_show(entry, "dns.resp.name"),
        int(child_show(entry, "dns.resp.type") or -1),
        None if ttl is None else int(ttl),
        data,
    ]


def message(dns):
    row = {k: "" for k in COLUMNS}
    row["id"] = str(int(child_show(dns, "dns.id"), 16))
    flags = fields(dns, "dns.flags")
    if flags:
        row["qr"] = child_show(flags[0], "dns.flags.response") or ""
        row["opcode"] = child_show(flags[0], "dns.flags.opcode") or ""
        row["rcode"] = child_show(flags[0], "dns.flags.rcode") or ""
    for f in dns.findall("field"):
        if f.get("name") in COUNTS:
            row[COUNTS[f.get("name")]] = f.get("show")
    secs = {"questions": [], "answers": [], "authorities": [], "additionals": []}
    for f in dns.findall("field"):
        if f.get("name") == "" and f.get("show") in SECTIONS:
            sec = SECTIONS[f.get("show")]
            for entry in f.findall("field"):
                if sec == "questions":
                    secs[sec].append(question(entry))
                else:
                    secs[sec].append(record(entry))
    for sec, v in secs.items():
        row[sec] = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    ext = None
    for f in dns.iter("field"):
        if f.get("name") == "dns.resp.ext_rcode":
            ext = f.get("show")
            break
    row["ext_rcode"] = "" if ext is None else str(int(ext, 16))
    row["ext_label"] = "1" if any(
        "<Unknown extended label>" in (f.get("show") or "") for f in dns.iter("field")
    ) else "0"
    return row


def main():
    out = sys.stdout
    out.write("\t".join(COLUMNS) + "\n")
    for _, pkt in ET.iterparse(sys.stdin.buffer, events=("end",)):
        if pkt.tag != "packet":
            continue
        protos = pkt.findall("proto")
        frame = next(p for p in protos if p.get("name") == "frame")
        number = first(frame, "frame.number")
        ts = first(frame, "frame.time_epoch")
        plist = first(frame, "frame.protocols")
        # an exception while dissecting DNS adds a top-level "[Malformed
        # Packet: DNS]"; a malformed lower layer (e.g. a bogus UDP length)
        # puts its own marker inside that layer instead
        malformed = "1" if any(
            p.get("name") == "_ws.malformed" and any(n in (p.get("showname") or "") for n in ("DNS", "MDNS", "LLMNR"))
            for p in protos
        ) else "0"
        pdu = 0
        for p in pkt.iter("proto"):
            if p.get("name") not in ("dns", "mdns", "llmnr"):
                continue
            row = message(p)
            row.update(frame=number, pdu=str(pdu), ts=ts, protocols=plist, malformed=malformed)
            out.write("\t".join(row[k] for k in COLUMNS) + "\n")
            pdu += 1
        pkt.clear()


if __name__ == "__main__":
    main()
