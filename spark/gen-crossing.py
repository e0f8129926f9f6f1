#!/usr/bin/env python3
"""Adds flows that cross every shard boundary to a classic pcap (Ethernet,
microseconds, little-endian, as ../shared/bench/gen-pcap.py writes), merging
them in time order: the test capture of spark/ci-test.sh.

    gen-crossing.py --base base.pcap --out test.pcap --start T --period 75 --shards 8

Standard library only; deterministic (no randomness). The added traffic,
for a capture [T, T + period * shards):

* long TCP connections (IPv4 and IPv6) with a request/response every few
  seconds from T+1 to the end, closed by FIN: one flow crossing every
  boundary; one of them answers first after each boundary (the piece in the
  next shard starts with the server's packet);
* long UDP exchanges (IPv4 and IPv6), both directions, every 10-15 s;
* a VXLAN tunnel (outer UDP/4789 between two VTEPs, VNI 42) carrying a long
  TCP connection, both directions;
* DNS queries sent 10 ms before each boundary, answered 20 ms after it;
* TCP closed by FIN just before a boundary with its last ACK just after it
  (the flow lingers: one flow), and a port reused by a new SYN right after a
  FIN close across a boundary (two flows);
* a TCP and a UDP flow idle longer than their timeout across a boundary
  (two flows each in one run too: the first ends by timeout).
"""

import argparse
import heapq
import ipaddress
import struct

MAC_A = bytes.fromhex("020000000a01")
MAC_B = bytes.fromhex("020000000b01")


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ip_header(src, dst, proto, payload_len, ident=0):
    if src.version == 4:
        h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, ident & 0xFFFF, 0x4000, 64,
                        proto, 0, src.packed, dst.packed)
        return h[:10] + struct.pack("!H", csum(h)) + h[12:], 0x0800
    h = struct.pack("!IHBB16s16s", 0x60000000, payload_len, proto, 64, src.packed, dst.packed)
    return h, 0x86DD


def pseudo(src, dst, proto, length):
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, proto, length)
    return src.packed + dst.packed + struct.pack("!IxxxB", length, proto)


def tcp(src, sport, dst, dport, seq, ack, flags, payload=b""):
    h = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4,
                    flags, 65535, 0, 0)
    c = csum(pseudo(src, dst, 6, len(h) + len(payload)) + h + payload)
    return h[:16] + struct.pack("!H", c) + h[18:] + payload


def udp(src, sport, dst, dport, payload):
    n = 8 + len(payload)
    h = struct.pack("!HHHH", sport, dport, n, 0)
    c = csum(pseudo(src, dst, 17, n) + h + payload) or 0xFFFF
    return h[:6] + struct.pack("!H", c) + payload


def frame(src, dst, proto, l4, to_b=True):
    ip, et = ip_header(src, dst, proto, len(l4))
    macs = MAC_B + MAC_A if to_b else MAC_A + MAC_B
    return macs + struct.pack("!H", et) + ip + l4


def addr(s):
    return ipaddress.ip_address(s)


class Tcp:
    """One TCP connection: consistent sequence numbers both ways."""

    def __init__(self, out, c, cp, s, sp, wrap=None):
        self.out, self.c, self.cp, self.s, self.sp = out, addr(c), cp, addr(s), sp
        self.cseq, self.sseq = 1000, 500000
        self.wrap = wrap

    def _emit(self, t, from_client, flags, payload=b""):
        if from_client:
            l4 = tcp(self.c, self.cp, self.s, self.sp, self.cseq, self.sseq, flags, payload)
            f = frame(self.c, self.s, 6, l4, True)
            self.cseq += len(payload) + (1 if flags & 0x03 else 0)
        else:
            l4 = tcp(self.s, self.sp, self.c, self.cp, self.sseq, self.cseq, flags, payload)
            f = frame(self.s, self.c, 6, l4, False)
            self.sseq += len(payload) + (1 if flags & 0x03 else 0)
        if self.wrap:
            f = self.wrap(f, from_client)
        self.out.append((t, f))

    def handshake(self, t):
        self._emit(t, True, 0x02)
        self._emit(t + 0.001, False, 0x12)
        self._emit(t + 0.002, True, 0x10)

    def exchange(self, t, n_req=100, n_resp=900, server_first=False):
        if server_first:
            self._emit(t, False, 0x18, b"s" * n_resp)
            self._emit(t + 0.001, True, 0x18, b"c" * n_req)
            self._emit(t + 0.002, False, 0x10)
        else:
            self._emit(t, True, 0x18, b"c" * n_req)
            self._emit(t + 0.001, False, 0x18, b"s" * n_resp)
            self._emit(t + 0.002, True, 0x10)

    def close(self, t, last_ack_at=None):
        self._emit(t, True, 0x11)
        self._emit(t + 0.001, False, 0x11)
        self._emit(last_ack_at if last_ack_at is not None else t + 0.002, True, 0x10)


def dns_msg(ident, name, response, answer=None):
    flags = 0x8180 if response else 0x0100
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    q += struct.pack("!HH", 1, 1)
    body = struct.pack("!HHHHHH", ident, flags, 1, 1 if answer else 0, 0, 0) + q
    if answer:
        body += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + addr(answer).packed
    return body


def vxlan_wrap(vtep_a, vtep_b, vni):
    a, b = addr(vtep_a), addr(vtep_b)

    def wrap(inner, from_client):
        src, dst = (a, b) if from_client else (b, a)
        payload = struct.pack("!II", 0x08000000, vni << 8) + inner
        return frame(src, dst, 17, udp(src, 49152 + vni, dst, 4789, payload), from_client)

    return wrap


def crossing_packets(t0, period, shards):
    out = []
    end = t0 + period * shards
    # long TCP, IPv4 and IPv6; the second answers first after each boundary
    for (c, s, step, sp) in (("10.200.0.1", "198.51.100.10", 20.0, 443),
                             ("2001:db8:200::1", "2001:db8:300::10", 30.0, 8443)):
        conn = Tcp(out, c, 40001, s, sp)
        conn.handshake(t0 + 1)
        t = t0 + 2
        while t < end - 5:
            conn.exchange(t)
            t += step
        conn.close(end - 3)
    conn = Tcp(out, "10.200.0.2", 40002, "198.51.100.11", 80)
    conn.handshake(t0 + 1.5)
    for k in range(1, shards):
        conn.exchange(t0 + period * k - 2.0)
        conn.exchange(t0 + period * k + 0.5, server_first=True)
    conn.close(end - 2)
    # long UDP both ways, IPv4 and IPv6
    for (c, s, step, port) in (("10.200.0.3", "198.51.100.12", 10.0, 5004),
                               ("2001:db8:200::3", "2001:db8:300::12", 15.0, 3478)):
        a, b = addr(c), addr(s)
        t = t0 + 0.7
        while t < end - 1:
            out.append((t, frame(a, b, 17, udp(a, 41000, b, port, b"u" * 200))))
            out.append((t + 0.003, frame(b, a, 17, udp(b, port, a, 41000, b"v" * 300), False)))
            t += step
    # TCP inside a VXLAN tunnel, both directions
    conn = Tcp(out, "192.168.77.1", 40003, "192.168.77.2", 22,
               wrap=vxlan_wrap("10.250.0.1", "10.250.0.2", 42))
    conn.handshake(t0 + 0.9)
    t = t0 + 3
    while t < end - 5:
        conn.exchange(t, 64, 400)
        t += 25.0
    conn.close(end - 4)
    # DNS queries cut from their responses by each boundary
    cl, srv = addr("10.200.0.4"), addr("10.0.0.53")
    for k in range(1, shards):
        tb = t0 + period * k
        ident, name = 0x4000 + k, "cut%d.example.net" % k
        sport = 30000 + k
        out.append((tb - 0.010, frame(cl, srv, 17, udp(cl, sport, srv, 53, dns_msg(ident, name, False)))))
        out.append((tb + 0.020, frame(srv, cl, 17, udp(srv, 53, cl, sport,
                                                       dns_msg(ident, name, True, "203.0.113.%d" % k)),
                                      False)))
    # FIN close before boundary 1, last ACK after it (lingers: one flow)
    conn = Tcp(out, "10.200.0.5", 40005, "198.51.100.13", 443)
    conn.handshake(t0 + period - 3)
    conn.exchange(t0 + period - 2)
    conn.close(t0 + period - 0.05, last_ack_at=t0 + period + 0.05)
    # port reuse: FIN close before boundary 2, new SYN on the same ports after it
    conn = Tcp(out, "10.200.0.6", 40006, "198.51.100.14", 443)
    conn.handshake(t0 + 2 * period - 3)
    conn.exchange(t0 + 2 * period - 2)
    conn.close(t0 + 2 * period - 0.05)
    conn = Tcp(out, "10.200.0.6", 40006, "198.51.100.14", 443)
    conn.cseq, conn.sseq = 900000, 700000
    conn.handshake(t0 + 2 * period + 0.5)
    conn.exchange(t0 + 2 * period + 1)
    conn.close(t0 + 2 * period + 2)
    # idle beyond the timeout across boundary 3: TCP 310 s, UDP 70 s
    conn = Tcp(out, "10.200.0.7", 40007, "198.51.100.15", 443)
    conn.handshake(t0 + 3 * period - 10)
    conn.exchange(t0 + 3 * period - 9)
    conn.exchange(t0 + 3 * period - 9 + 310)
    a, b = addr("10.200.0.8"), addr("198.51.100.16")
    for t in (t0 + 3 * period - 30, t0 + 3 * period + 40):
        out.append((t, frame(a, b, 17, udp(a, 42000, b, 9999, b"idle"))))
    out.sort(key=lambda x: x[0])
    return out


def records(path):
    with open(path, "rb") as fh:
        head = fh.read(24)
        if head[:4] != b"\xd4\xc3\xb2\xa1":
            raise SystemExit("%s: not a little-endian microsecond pcap" % path)
        yield head
        while True:
            h = fh.read(16)
            if len(h) < 16:
                return
            sec, usec, incl, orig = struct.unpack("<IIII", h)
            yield (sec * 1_000_000 + usec, h + fh.read(incl))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="input pcap (gen-pcap.py output)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--start", type=int, required=True, help="capture start, Unix seconds")
    ap.add_argument("--period", type=int, default=75, help="seconds per shard")
    ap.add_argument("--shards", type=int, default=8)
    a = ap.parse_args()
    extra = []
    for t, f in crossing_packets(a.start, a.period, a.shards):
        us = int(round(t * 1_000_000))
        extra.append((us, struct.pack("<IIII", us // 1_000_000, us % 1_000_000, len(f), len(f)) + f))
    it = records(a.base)
    head = next(it)
    n = 0
    with open(a.out, "wb") as out:
        out.write(head)
        buf = []
        for _, rec in heapq.merge(it, iter(extra), key=lambda x: x[0]):
            buf.append(rec)
            n += 1
            if len(buf) >= 4096:
                out.write(b"".join(buf))
                buf.clear()
        out.write(b"".join(buf))
    print('{"packets": %d, "added": %d}' % (n, len(extra)))


if __name__ == "__main__":
    main()
