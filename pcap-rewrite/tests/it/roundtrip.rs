//! pcap -> pcapng -> pcap round trips keep every packet byte, original
//! length and timestamp (checked with our reader, and with tshark where
//! installed).

use crate::common::{corpus_dir, have, packets, read_all};
use libpcap_tools::{CaptureFormat, CaptureReader, OwnedPacket, ReaderConfig, Timestamp};
use pcap_rewrite::output::OutputFormat;
use pcap_rewrite::{Options, rewrite};
use std::path::{Path, PathBuf};
use std::process::Command;

fn convert(input: &Path, output: &Path, f: OutputFormat) -> pcap_rewrite::Summary {
    let opts = Options {
        output_format: Some(f),
        ..Options::default()
    };
    rewrite(input, output, &opts).unwrap_or_else(|e| panic!("{}: {e}", input.display()))
}

/// Corpus files that our reader reads without error.
fn clean_files(corpus: &Path) -> Vec<PathBuf> {
    let manifest = std::fs::read_to_string(corpus.join("MANIFEST.tsv")).unwrap();
    manifest
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next())
        .filter(|p| !p.starts_with("malformed/"))
        .map(|p| corpus.join(p))
        .filter(|p| read_all(p).1.is_none())
        .collect()
}

fn same(a: &[OwnedPacket], b: &[OwnedPacket], what: &str, ts: impl Fn(&OwnedPacket) -> Timestamp) {
    assert_eq!(a.len(), b.len(), "{what}: packet count");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.data, y.data, "{what}: data of packet {}", x.index);
        assert_eq!(
            x.origlen, y.origlen,
            "{what}: origlen of packet {}",
            x.index
        );
        assert_eq!(
            x.linktype, y.linktype,
            "{what}: linktype of packet {}",
            x.index
        );
        // a timestamp the reader saturated (beyond the year 2262) has no
        // exact value to keep
        if ts(x) != Timestamp(i64::MAX) {
            assert_eq!(ts(x), ts(y), "{what}: timestamp of packet {}", x.index);
        }
    }
}

#[test]
fn corpus_round_trips_keep_bytes_and_timestamps() {
    let Some(corpus) = corpus_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ng = dir.path().join("a.pcapng");
    let back = dir.path().join("b.pcap");
    let files = clean_files(&corpus);
    assert!(files.len() > 200, "only {} clean files", files.len());
    let mut pcap_legs = 0;
    for f in &files {
        let orig = packets(f);
        let name = f.display().to_string();
        let s = convert(f, &ng, OutputFormat::PcapNg);
        assert_eq!(s.packets_written, orig.len() as u64, "{name}");
        let mid = packets(&ng);
        // pcapng keeps everything, including the absence of a timestamp
        same(&orig, &mid, &format!("{name} -> pcapng"), |p| {
            p.ts.unwrap_or(Timestamp(i64::MIN))
        });
        // pcapng -> nanosecond pcap, when the file fits classic pcap
        let one_linktype = orig.windows(2).all(|w| w[0].linktype == w[1].linktype);
        let in_range = orig
            .iter()
            .all(|p| p.ts.is_none_or(|t| (0..1i64 << 32).contains(&t.secs())));
        if !one_linktype || !in_range {
            continue;
        }
        let s = convert(&ng, &back, OutputFormat::PcapNs);
        assert_eq!(s.timestamps_truncated, 0);
        assert_eq!(s.packets_written, orig.len() as u64, "{name}");
        let fin = packets(&back);
        same(&orig, &fin, &format!("{name} -> pcapng -> pcap-ns"), |p| {
            p.ts.unwrap_or_default()
        });
        pcap_legs += 1;
    }
    assert!(pcap_legs > 150, "only {pcap_legs} pcap round trips");
}

#[test]
fn classic_pcap_round_trip_is_byte_identical() {
    let Some(corpus) = corpus_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "apps/ndpi_bad-dns-traffic.pcap",
        "formats/ndpi_nfsv3.pcap",
        "formats/zeek_get-to-ssh-server.pcap",
        "linktypes/ndpi_KakaoTalk_chat.pcap",
    ] {
        let f = corpus.join(name);
        let ng = dir.path().join("x.pcapng");
        let back = dir.path().join("x.pcap");
        convert(&f, &ng, OutputFormat::PcapNg);
        // default output format of a pcapng input is pcapng: ask for the
        // original's flavour explicitly
        let r = CaptureReader::open(&f, &ReaderConfig::default()).unwrap();
        let fmt = match r.format() {
            CaptureFormat::Pcap { nanos: true, .. } => OutputFormat::PcapNs,
            _ => OutputFormat::Pcap,
        };
        drop(r);
        let opts = Options {
            output_format: Some(fmt),
            ..Options::default()
        };
        rewrite(&ng, &back, &opts).unwrap();
        let a = std::fs::read(&f).unwrap();
        let b = std::fs::read(&back).unwrap();
        // records are identical; the file header may differ only in the
        // byte order (pcapng -> pcap is little-endian) and snaplen
        if a.get(..4) == Some(&[0xd4, 0xc3, 0xb2, 0xa1])
            || a.get(..4) == Some(&[0x4d, 0x3c, 0xb2, 0xa1])
        {
            assert_eq!(a[24..], b[24..], "{name}: records differ");
        }
        // and a direct pcap -> pcap copy has the same records, byte for
        // byte, and the same header but for version, zone and sigfigs
        // (always written as 2.4, 0, 0)
        let copy = dir.path().join("copy.pcap");
        rewrite(&f, &copy, &Options::default()).unwrap();
        let c = std::fs::read(&copy).unwrap();
        assert_eq!(c[24..], a[24..], "{name}: pcap copy records");
        assert_eq!(
            (&c[..4], &c[16..24]),
            (&a[..4], &a[16..24]),
            "{name}: magic, snaplen, linktype"
        );
    }
}

/// tshark's view of a capture: time, lengths and protocol stack per frame.
fn tshark_view(p: &Path) -> String {
    let o = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(p)
        .args([
            "-T",
            "fields",
            "-e",
            "frame.time_epoch",
            "-e",
            "frame.len",
            "-e",
            "frame.cap_len",
            "-e",
            "frame.protocols",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn round_trip_seen_the_same_by_tshark() {
    if !have("tshark") {
        eprintln!("SKIPPED: tshark not installed");
        return;
    }
    let Some(corpus) = corpus_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "apps/ndpi_doq_adguard.pcapng",
        "formats/ndpi_sites.pcapng",
        "formats/scapy_netflowv9.pcap",
        "formats/derived_tsoffset_pcapng-multi-interface.pcapng",
        "large/suricata_decode-sll2-02.pcap",
        "linktypes/suricata_http-ipv6.pcap",
    ] {
        let f = corpus.join(name);
        let ng = dir.path().join("t.pcapng");
        let back = dir.path().join("t.pcap");
        convert(&f, &ng, OutputFormat::PcapNg);
        convert(&ng, &back, OutputFormat::PcapNs);
        let want = tshark_view(&f);
        assert!(!want.is_empty(), "{name}");
        assert_eq!(tshark_view(&ng), want, "{name} as pcapng");
        assert_eq!(tshark_view(&back), want, "{name} as pcap-ns");
        if have("capinfos") {
            let c = |p: &Path| {
                let o = Command::new("capinfos")
                    .args(["-c", "-M"])
                    .arg(p)
                    .output()
                    .unwrap();
                let s = String::from_utf8_lossy(&o.stdout).into_owned();
                s.lines()
                    .find(|l| l.contains("Number of packets"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
            };
            assert_eq!(c(&back), c(&f), "{name}: capinfos packet count");
        } else {
            eprintln!("SKIPPED: capinfos not installed");
        }
    }
}
