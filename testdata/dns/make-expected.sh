#!/bin/sh
# Regenerates the expected DNS values (testdata/dns/*.tsv) from the public
# corpus with tshark. Usage: testdata/dns/make-expected.sh [CORPUS_DIR]
# (default: $PAL_CORPUS, else <repo>/../shared/corpus, else <repo>/../../shared/corpus
# for a git worktree under /work/wt/). Needs tshark and python3.
#
# Only DNS on the `dns` plugin's default ports is kept: 53, 5353 (mDNS) and
# 5355 (LLMNR); tshark also decodes other ports as DNS. `-n`: no name resolution.
# IP defragmentation and TCP reassembly are tshark's defaults (on).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
corpus=${1:-${PAL_CORPUS:-}}
if [ -z "$corpus" ]; then
    corpus=$here/../../../shared/corpus
    [ -f "$corpus/MANIFEST.tsv" ] || corpus=$here/../../../../shared/corpus
fi
filter='(dns || mdns || llmnr) && (udp.port in {53, 5353, 5355} || tcp.port in {53, 5353, 5355})'
for f in \
    apps/ndpi_bad-dns-traffic.pcap \
    apps/ndpi_dns-tunnel-iodine.pcap \
    apps/ndpi_dns_exfiltration.pcap \
    apps/suricata_datasets-06-state-long.pcap \
    apps/suricata_dns-bug-1158.pcap \
    malformed/ndpi_fuzz-2006-06-26-2594.pcap \
    apps/zeek_dns-edns-ecs.pcap \
    fragments/ndpi_dns_fragmented.pcap \
    fragments/zeek_ipv6-fragmented-dns.pcap \
    linktypes/tcpdump_dns-badcookie.pcap \
    ipv6ext/zeek_mdns.pcap
do
    name=$(basename "$f" .pcap)
    tshark -r "$corpus/$f" -n -Y "$filter" -T pdml 2>/dev/null \
        | python3 "$here/pdml2tsv.py" > "$here/$name.tsv"
    echo "$f: $(($(wc -l < "$here/$name.tsv") - 1)) messages"
done
