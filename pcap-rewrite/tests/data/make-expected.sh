#!/bin/sh
# Regenerates filters.tsv: for each (corpus file, pcap-rewrite filter) pair
# below, the number of packets that a tshark display filter with the same
# meaning keeps. The tests (tests/it/filters.rs) run pcap-rewrite with the
# CLI arguments of each row and compare with the stored count; they do not
# need tshark.
#
# Usage: sh make-expected.sh [CORPUS_DIR] > filters.tsv
# Made with: TShark (Wireshark) 4.0.17 (Debian 12 package 4.0.17-0+deb12u3).
#
# Methods:
#   plain  tshark -n -r FILE -Y FILTER | wc -l
#   frag   for captures with IP fragments. With its default ip.defragment /
#          ipv6.defragment TRUE, tshark matches a port filter on the
#          reassembled datagram only (shown on its last fragment), so
#          instead: defragmentation off, count the frames matching FILTER
#          (unfragmented packets and first fragments, which carry the ports),
#          plus the non-first fragments of the datagrams whose first fragment
#          matched (same source, destination, protocol and IP identification /
#          IPv6 fragment identification). This is "fragments follow their
#          datagram", computed independently of pcap-rewrite.
#   frag-drop  the complement of frag (total frames - frag count).
#
# Notes on equivalence: tshark's ip.addr/udp also match headers quoted
# inside ICMP errors and inner tunnel headers, while pcap-rewrite looks at the
# first IP header only; where a file has such ICMP errors the filter uses the
# first layer explicitly (ip.src#1, ip.proto#1). Port filters of pcap-rewrite
# cover TCP, UDP and SCTP alike, hence 'udp.port == 53 || tcp.port == 53'.
# Fragments whose first fragment is missing (orphans) are evaluated without
# ports; with the 'frag' method they would never count, so the rows avoid
# files where that matters for the filter used.
set -eu
CORPUS=${1:-$(dirname "$0")/../../../../shared/corpus}
TS="tshark -n"

plain() { # file filter
    $TS -r "$CORPUS/$1" -Y "$2" 2>/dev/null | wc -l | tr -d ' '
}

frag_count() { # file filter
    f="$CORPUS/$1"
    fields="-e frame.number -e ip.src -e ip.dst -e ip.proto -e ip.id -e ip.flags.mf -e ip.frag_offset -e ipv6.src -e ipv6.dst -e ipv6.fraghdr.ident -e ipv6.fraghdr.offset -e ipv6.fraghdr.more -e ipv6.nxt"
    all=$(mktemp); hit=$(mktemp)
    $TS -r "$f" -o ip.defragment:FALSE -o ipv6.defragment:FALSE -T fields -E separator=/t $fields 2>/dev/null > "$all"
    $TS -r "$f" -o ip.defragment:FALSE -o ipv6.defragment:FALSE -Y "$2" -T fields -e frame.number 2>/dev/null > "$hit"
    python3 - "$all" "$hit" <<'PY'
import sys
rows = [l.rstrip('\n').split('\t') for l in open(sys.argv[1])]
hits = {l.strip() for l in open(sys.argv[2]) if l.strip()}
first = lambda v: v.split(',')[0]
def frag(r):
    # (datagram key, is_first) or None when not a fragment
    n, s4, d4, p4, id4, mf, off4, s6, d6, id6, off6, more6, nxt6 = (r + [''] * 13)[:13]
    if s4:
        mf_, off = first(mf) in ('1', 'True'), int(first(off4) or 0)
        if mf_ or off:
            return (s4.split(',')[0], first(d4), first(p4), first(id4)), off == 0
        return None
    # a Fragment header quoted inside an ICMPv6 error is not the packet's own
    if id6 and first(nxt6) in ('0', '43', '44', '60'):
        off, more = int(first(off6) or 0), first(more6) in ('1', 'True')
        if off or more:
            return (first(s6), first(d6), first(id6)), off == 0
    return None
first_keys = set()
for r in rows:
    f = frag(r)
    if r[0] in hits and f and f[1]:
        first_keys.add(f[0])
count = 0
for r in rows:
    f = frag(r)
    if f and not f[1]:
        count += f[0] in first_keys
    else:
        count += r[0] in hits
print(count)
PY
    rm -f "$all" "$hit"
}

printf 'file\tcli_args\ttshark_filter\tmethod\texpected\n'
while IFS='|' read -r method file args filter; do
    [ -z "$method" ] && continue
    case "$method" in
        '#'*) continue ;;
        plain) n=$(plain "$file" "$filter") ;;
        frag) n=$(frag_count "$file" "$filter") ;;
        frag-drop) total=$(plain "$file" "frame") ; k=$(frag_count "$file" "$filter"); n=$((total - k)) ;;
    esac
    printf '%s\t%s\t%s\t%s\t%s\n' "$file" "$args" "$filter" "$method" "$n"
done <<'ROWS'
# method|file|pcap-rewrite arguments (split on spaces)|tshark display filter
plain|apps/ndpi_bad-dns-traffic.pcap|-k proto=udp&port=53|udp.port == 53
plain|apps/ndpi_dns-tunnel-iodine.pcap|-k src=10.0.2.30|ip.src == 10.0.2.30
plain|apps/ndpi_dns-tunnel-iodine.pcap|-d dst=10.0.2.30|!(ip.dst == 10.0.2.30)
plain|apps/ndpi_http_ipv6.pcap|-k proto=tcp&port=443|tcp.port == 443
plain|apps/ndpi_http_ipv6.pcap|-d proto=tcp|!tcp
plain|apps/suricata_datasets-06-state-long.pcap|-k port=53|udp.port == 53 || tcp.port == 53
plain|apps/zeek_methods.pcap|-k net=173.194.0.0/16|ip.addr == 173.194.0.0/16
plain|apps/ndpi_gnutella.pcap|-k tuple=tcp,10.0.2.15,50284,104.156.226.72,53258|(ip.src == 10.0.2.15 && tcp.srcport == 50284 && ip.dst == 104.156.226.72 && tcp.dstport == 53258) || (ip.dst == 10.0.2.15 && tcp.dstport == 50284 && ip.src == 104.156.226.72 && tcp.srcport == 53258)
plain|apps/ndpi_gnutella.pcap|-d proto=udp -k host=10.0.2.15|(ip.src#1 == 10.0.2.15 || ip.dst#1 == 10.0.2.15) && ip.proto#1 != 17
plain|large/ndpi_1kxun.pcap|-k src=192.168.115.8|ip.src == 192.168.115.8
plain|large/ndpi_1kxun.pcap|-k dst-net=192.168.0.0/16|ip.dst == 192.168.0.0/16
plain|large/ndpi_1kxun.pcap|-k pair=192.168.2.126,161.117.13.29|ip.addr == 192.168.2.126 && ip.addr == 161.117.13.29
plain|large/ndpi_1kxun.pcap|-k sport=1900 -k dport=68|udp.srcport == 1900 || tcp.srcport == 1900 || udp.dstport == 68 || tcp.dstport == 68
plain|large/ndpi_1kxun.pcap|--keep-keys tests/data/keys-1kxun.csv|(ip.addr == 161.117.13.29 && ip.addr == 192.168.2.126 && tcp.port == 80 && tcp.port == 45380) || (ip.addr == 192.168.115.8 && ip.addr == 106.187.35.246) || ip.addr == 192.168.119.1 || ip.addr == 14.136.136.0/24
plain|large/ndpi_1kxun.pcap|--drop-keys tests/data/keys-1kxun.csv|!((ip.addr == 161.117.13.29 && ip.addr == 192.168.2.126 && tcp.port == 80 && tcp.port == 45380) || (ip.addr == 192.168.115.8 && ip.addr == 106.187.35.246) || ip.addr == 192.168.119.1 || ip.addr == 14.136.136.0/24)
plain|large/ndpi_alexa-app.pcapng|-d net=10.0.0.0/8|!(ip.addr == 10.0.0.0/8)
plain|large/ndpi_netflix.pcap|--start 1484319050.5 --end 1484319080.25|frame.time_epoch >= 1484319050.5 && frame.time_epoch < 1484319080.25
plain|large/ndpi_netflix.pcap|--start 2017-01-13T14:51:00Z -k proto=tcp|frame.time_epoch >= 1484319060 && tcp
plain|tcp/zeek_ssh.pcap|--index-range 100-250|frame.number >= 100 && frame.number <= 250
plain|tcp/zeek_ssh.pcap|-k index=1-10 -k index=1700-|frame.number <= 10 || frame.number >= 1700
plain|tcp/zeek_ssh.pcap|-k time=..1324071340&dport=22|frame.time_epoch < 1324071340 && tcp.dstport == 22
plain|linktypes/ndpi_KakaoTalk_chat.pcap|-k proto=tcp&port=443|tcp.port == 443
plain|linktypes/ndpi_KakaoTalk_chat.pcap|-k host=10.24.82.188&proto=udp|(ip.src#1 == 10.24.82.188 || ip.dst#1 == 10.24.82.188) && ip.proto#1 == 17
plain|large/suricata_decode-sll2-02.pcap|-k dport=80|tcp.dstport == 80 || udp.dstport == 80
plain|linktypes/suricata_http-ipv6.pcap|-k net=::/0&sport=8000|ipv6 && (tcp.srcport == 8000 || udp.srcport == 8000)
plain|linktypes/suricata_linktype-228_flow-test-01.pcap|-k src=192.168.0.1|ip.src == 192.168.0.1
plain|formats/ndpi_sites.pcapng|-k proto=udp|udp
plain|formats/ndpi_nfsv3.pcap|-k proto=udp&port=2049|udp.port == 2049
plain|large/pcapparser_wireshark_samples-test.pcapng|-k dst=224.0.0.7|ip.dst == 224.0.0.7
frag|fragments/ndpi_dns_fragmented.pcap|-k port=53|udp.port == 53 || tcp.port == 53
frag-drop|fragments/ndpi_dns_fragmented.pcap|-d port=53|udp.port == 53 || tcp.port == 53
frag|fragments/zeek_ipv6-fragmented-dns.pcap|-k proto=udp&port=53|udp.port == 53
frag|fragments/zeek_fragmented-3.pcap|-k proto=tcp&port=21|tcp.port == 21
frag|fragments/suricata_bug-6887-defrag-eth-vlan-ipv4-tcp-syn_frag-eth-vlan-ip-tcp-syn.pcap|-k proto=tcp&dport=8080|tcp.dstport == 8080
frag|fragments/suricata_bug-6887-defrag-ipv6-tcp_frag-ip-tcp.pcap|-k proto=tcp&dport=8080|tcp.dstport == 8080
frag|fragments/zeek_fragmented-syn.pcap|-k dport=80|tcp.dstport == 80 || udp.dstport == 80
frag|fragments/pcapanalyzer_frag_tcp_80_ipv4.pcap|-k port=80|tcp.port == 80
frag|fragments/suricata_ipv6-malformed-fragments-15.pcap|-k proto=icmpv6|icmpv6
ROWS
