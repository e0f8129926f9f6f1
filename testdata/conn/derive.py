#!/usr/bin/env python3
"""Derive the expected TCP/UDP rows of the `connections` report for the
captures of the corpus categories fragments/ and tunnels/, from tshark's
per-layer decoding with reassembly turned off.

Usage:  derive.py [CORPUS_DIR] [OUT_DIR]
  CORPUS_DIR defaults to $PAL_CORPUS, else /work/shared/corpus;
  OUT_DIR defaults to the directory holding this script.
Writes OUT_DIR/<category>__<file>.tsv for every file it can derive and
OUT_DIR/INDEX.tsv (file, status, reason) for every capture it looked at.

Per frame, one tshark run per file (-T fields, occurrence=a) gives every
occurrence of the IP / IPv6 / fragment / TCP / UDP fields; frame.protocols
gives the order of the layers.  Occurrences are consumed in the order of the
ip / ipv6 / ipv6.fraghdr / tcp / udp tokens of frame.protocols, so the n-th
'ip' token owns the n-th ip.src, ip.dst, ... (a file where the number of
occurrences differs from the number of tokens is skipped: the pairing would
be a guess).

Semantics (the module doc of libpcap-analyzer/src/plugins/connections.rs):
  - every IP layer of a frame, outermost first, up to the first icmp/icmpv6
    token (layers quoted by an ICMP error never count), whose transport (the
    first token after it that is not an IPv6 extension header) is tcp or udp
    with both ports, gives the key (src ip, src port, dst ip, dst port); the
    frame counts once for each such layer (a tunnelled frame counts for the
    outer and for each inner connection, each with the whole frame.len);
  - an IP layer that is a fragment (IPv4 MF=1 or offset>0; IPv6 with a
    Fragment header that is not atomic, i.e. offset>0 or M=1) belongs to the
    datagram (version, src, dst, id, protocol) (IPv4: a datagram is closed
    once its bytes 0..end are all held, ip.len - ip.hdr_len bytes at
    ip.frag_offset * 8; a later fragment with the same key starts a new
    datagram); that layer and everything inside it is taken from the datagram's first fragment (offset 0): every
    frame of the datagram counts for each key found there.  A datagram
    without a first fragment gives nothing.  first/last = min/max of the
    frames' floor(frame.time_epoch * 1000), bytes = sum of frame.len,
    packets = number of frames.
"""
import collections
import ipaddress
import os
import subprocess
import sys

TSHARK_OPTS = [
    '-n',
    '-o', 'ip.defragment:FALSE',
    '-o', 'ipv6.defragment:FALSE',
    '-o', 'tcp.desegment_tcp_streams:FALSE',
    '-o', 'tcp.analyze_sequence_numbers:FALSE',
    '-o', 'tcp.try_heuristic_first:FALSE',
    '-o', 'udp.try_heuristic_first:FALSE',
    '-o', 'ip.check_checksum:FALSE',
    '-o', 'tcp.check_checksum:FALSE',
    '-o', 'udp.check_checksum:FALSE',
]
IP4 = ['ip.src', 'ip.dst', 'ip.proto', 'ip.id', 'ip.flags.mf', 'ip.frag_offset', 'ip.len',
       'ip.hdr_len']
IP6 = ['ipv6.src', 'ipv6.dst', 'ipv6.nxt']
FRAG6 = ['ipv6.fraghdr.ident', 'ipv6.fraghdr.offset', 'ipv6.fraghdr.more', 'ipv6.fraghdr.nxt']
TCP = ['tcp.srcport', 'tcp.dstport']
UDP = ['udp.srcport', 'udp.dstport']
FIELDS = (['frame.number', 'frame.time_epoch', 'frame.len', 'frame.protocols']
          + IP4 + IP6 + FRAG6 + TCP + UDP)
TOKEN_FIELDS = {'ip': IP4, 'ipv6': IP6, 'ipv6.fraghdr': FRAG6, 'tcp': TCP, 'udp': UDP}

# Per-file tshark decode-as rules: tunnels on ports tshark 4.0 does not
# associate with the tunnel by default (the analyzer does).
DECODE_AS = {
    'tunnels/tcpdump_vxlan_port_8472.pcap': ['-d', 'udp.port==8472,vxlan'],
}

# Files for which tshark's decoding gives no independent answer.
SKIP = {}


def epoch_ms(s):
    """frame.time_epoch text -> floor(ms since the epoch)."""
    neg = s.startswith('-')
    whole, _, frac = s.lstrip('-').partition('.')
    if not frac:
        ns = 0
    elif len(frac) <= 9:
        ns = int(frac) * 10 ** (9 - len(frac))
    else:
        ns = int(frac)
    total = int(whole) * 10 ** 9 + ns
    if neg:
        total = -total
    return total // 10 ** 6


def ipkey(a):
    ip = ipaddress.ip_address(a)
    return (ip.version, ip.packed)


def canon(a):
    """IPs as tshark prints them; IPv6 in RFC 5952 form."""
    return str(ipaddress.ip_address(a))


def truthy(v):
    return v in ('1', 'True', 'true')


def run_tshark(path, extra):
    cmd = ['tshark', '-r', path] + TSHARK_OPTS + extra + [
        '-T', 'fields', '-E', 'separator=/t', '-E', 'occurrence=a',
        '-E', 'aggregator=,', '-E', 'quote=n']
    for f in FIELDS:
        cmd += ['-e', f]
    p = subprocess.run(cmd, capture_output=True, text=True, errors='replace')
    return p.returncode, p.stdout, p.stderr


def layers_of(d):
    """The frame's IP layers, outermost first, up to the first ICMP token:
    list of dicts (version, src, dst, proto, frag: None or (id, offset, more),
    transport: None or (name, sport, dport)).  Raises ValueError when the
    field occurrences cannot be paired with the tokens."""
    occ = {f: (d[f].split(',') if d[f] else []) for f in FIELDS}
    used = collections.Counter()
    stack = d['frame.protocols'].split(':')

    def take(token):
        vals = {}
        for f in TOKEN_FIELDS[token]:
            i = used[token]
            vals[f] = occ[f][i] if i < len(occ[f]) else None
        used[token] += 1
        return vals

    layers = []
    in_icmp = False
    for t in stack:
        if t in ('icmp', 'icmpv6'):
            in_icmp = True
        if t not in TOKEN_FIELDS:
            continue
        vals = take(t)
        if in_icmp:
            continue
        if t in ('ip', 'ipv6'):
            if t == 'ip':
                ly = {'v': 4, 'src': vals['ip.src'], 'dst': vals['ip.dst'],
                      'proto': vals['ip.proto'], 'frag': None, 'transport': None,
                      'done': False}
                mf, off = vals['ip.flags.mf'], vals['ip.frag_offset']
                if truthy(mf) or (off not in (None, '', '0')):
                    ly['frag'] = (vals['ip.id'], off, mf)
                    try:  # payload bytes start..end (ip.frag_offset is in 8-byte units)
                        start = int(off) * 8
                        ly['range'] = (start, start + int(vals['ip.len']) - int(vals['ip.hdr_len']))
                    except (TypeError, ValueError):
                        ly['range'] = None
            else:
                ly = {'v': 6, 'src': vals['ipv6.src'], 'dst': vals['ipv6.dst'],
                      'proto': vals['ipv6.nxt'], 'frag': None, 'transport': None,
                      'done': False}
            layers.append(ly)
        elif t == 'ipv6.fraghdr':
            if layers and layers[-1]['v'] == 6 and not layers[-1]['done']:
                off, more = vals['ipv6.fraghdr.offset'], vals['ipv6.fraghdr.more']
                if truthy(more) or off not in (None, '', '0'):  # not atomic
                    layers[-1]['frag'] = (vals['ipv6.fraghdr.ident'], off, more)
                    layers[-1]['proto'] = vals['ipv6.fraghdr.nxt']
        else:  # tcp / udp
            if layers and not layers[-1]['done']:
                sp, dp = vals[t + '.srcport'], vals[t + '.dstport']
                if sp and dp:
                    layers[-1]['transport'] = (t.upper(), int(sp), int(dp))
                layers[-1]['done'] = True
    # every token must have had its own occurrence of each field
    for tok, fields in TOKEN_FIELDS.items():
        for f in fields:
            if len(occ[f]) != used[tok]:
                raise ValueError('frame %s: %d %r tokens but %d occurrences of %s' % (
                    d['frame.number'], used[tok], tok, len(occ[f]), f))
    return layers


def covered(ranges, end):
    """Whether the byte ranges cover 0..end."""
    pos = 0
    for a, b in sorted(ranges):
        if a > pos:
            return False
        pos = max(pos, b)
    return pos >= end


def first_fragment(frag):
    return frag[1] in (None, '', '0')


def derive(path, extra):
    rc, out, err = run_tshark(path, extra)
    if rc != 0 and not out:
        return None, 'tshark cannot read the file: ' + err.strip().splitlines()[-1]
    conns = {}
    groups = {}  # datagram key -> its latest datagram
    datagrams = []  # every datagram, in order of its first frame
    frames = 0

    def add(key, proto, ms, flen):
        e = conns.setdefault(key, {'protos': set(), 'first': None, 'last': None,
                                   'bytes': 0, 'packets': 0})
        e['protos'].add(proto)
        if ms is not None:
            e['first'] = ms if e['first'] is None else min(e['first'], ms)
            e['last'] = ms if e['last'] is None else max(e['last'], ms)
        e['bytes'] += flen
        e['packets'] += 1

    for line in out.splitlines():
        c = line.split('\t')
        c += [''] * (len(FIELDS) - len(c))
        d = dict(zip(FIELDS, c))
        frames += 1
        try:
            layers = layers_of(d)
        except ValueError as e:
            return None, 'tshark fields cannot be paired with its layers (%s)' % e
        ms = epoch_ms(d['frame.time_epoch']) if d['frame.time_epoch'] else None
        flen = int(d['frame.len'])
        for i, ly in enumerate(layers):
            if ly['frag'] is not None:
                g = (ly['v'], ly['src'], ly['dst'], ly['frag'][0], ly['proto'])
                # the open datagram of this key (IPv4: a datagram is closed
                # once its bytes 0..end are all held; a later fragment with
                # the same key starts a new datagram)
                grp = groups.get(g)
                if grp is None or grp['closed']:
                    grp = {'g': g, 'frames': [], 'keys': None, 'lasts': [], 'ranges': [],
                           'end': None, 'closed': False}
                    groups[g] = grp
                    datagrams.append(grp)
                grp['frames'].append((ms, flen))
                if not truthy(ly['frag'][2]):
                    grp['lasts'].append(d['frame.number'])
                rng = ly.get('range')
                if rng is not None:
                    grp['ranges'].append(rng)
                    if not truthy(ly['frag'][2]):
                        grp['end'] = rng[1]
                    if grp['end'] is not None and covered(grp['ranges'], grp['end']):
                        grp['closed'] = True
                if first_fragment(ly['frag']) and grp['keys'] is None:
                    keys = []
                    for inner in layers[i:]:
                        if inner['transport']:
                            n, sp, dp = inner['transport']
                            keys.append(((inner['src'], sp, inner['dst'], dp), n))
                    grp['keys'] = keys
                break
            if ly['transport']:
                n, sp, dp = ly['transport']
                add((ly['src'], sp, ly['dst'], dp), n, ms, flen)
    for grp in datagrams:
        g = grp['g']
        if len(grp['lasts']) > 1:
            # Several last fragments under one (src, dst, id, protocol): the
            # id was reused for several datagrams (or a last fragment was
            # repeated). Telling them apart needs reassembly (which bytes
            # each datagram holds), which tshark does not do with
            # defragmentation off: no independent answer.
            return None, ('datagram id %s (%s -> %s) has %d last fragments (frames %s): '
                          'several datagrams share the id, grouping by id cannot separate them'
                          % (g[3], g[1], g[2], len(grp['lasts']), ', '.join(grp['lasts'])))
        for key, n in grp['keys'] or []:
            for ms, flen in grp['frames']:
                add(key, n, ms, flen)
    if frames == 0:
        return None, 'tshark reads no frame'
    rows = []
    order = sorted(conns, key=lambda k: (ipkey(k[0]), k[1], ipkey(k[2]), k[3]))
    for k in order:
        e = conns[k]
        opt = lambda v: '' if v is None else str(v)
        rows.append('\t'.join([canon(k[0]), str(k[1]), canon(k[2]), str(k[3]),
                               '[' + ','.join(sorted(e['protos'])) + ']',
                               opt(e['first']), opt(e['last']),
                               str(e['bytes']), str(e['packets'])]))
    return rows, None


HEADER = 'src_ip\tsrc_port\tdst_ip\tdst_port\tprotocols\tfirst_ms\tlast_ms\tbytes\tpackets'


def main():
    corpus = sys.argv[1] if len(sys.argv) > 1 else os.environ.get('PAL_CORPUS', '/work/shared/corpus')
    outdir = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(__file__))
    index = []
    for cat in ('fragments', 'tunnels'):
        for name in sorted(os.listdir(os.path.join(corpus, cat))):
            rel = cat + '/' + name
            if rel in SKIP:
                index.append((rel, 'skipped', SKIP[rel]))
                continue
            rows, why = derive(os.path.join(corpus, rel), DECODE_AS.get(rel, []))
            out = os.path.join(outdir, '%s__%s.tsv' % (cat, name))
            if rows is None:
                index.append((rel, 'skipped', why))
                if os.path.exists(out):
                    os.remove(out)  # no stale expectations
                continue
            with open(out, 'w') as f:
                f.write(HEADER + '\n')
                for r in rows:
                    f.write(r + '\n')
            index.append((rel, 'derived', '%d rows' % len(rows)))
    with open(os.path.join(outdir, 'INDEX.tsv'), 'w') as f:
        f.write('path\tstatus\treason\n')
        for r in index:
            f.write('\t'.join(r) + '\n')
    for r in index:
        print('\t'.join(r))


if __name__ == '__main__':
    main()
