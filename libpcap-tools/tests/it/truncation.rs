//! A capture cut at every byte offset of its last 3 records gives every
//! complete packet before the cut, then `Error::Truncated` (or a clean end
//! when the cut falls on a block boundary); never a panic.

use crate::common::{corpus_dir, read_bytes};
use libpcap_tools::{
    CaptureReader, Error, InterfaceSpec, LinkType, OwnedPacket, PcapNgWriter, PcapWriterOptions,
    ReaderConfig, Timestamp, synth,
};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// Reads `bytes` fully; returns the packets with the end offset of each, and
/// the end offsets of every block (packets and others).
fn layout(bytes: &[u8]) -> (Vec<(OwnedPacket, u64)>, BTreeSet<u64>) {
    let cfg = ReaderConfig::default();
    let mut r =
        CaptureReader::from_reader(std::io::Cursor::new(bytes.to_vec()), "x", &cfg).unwrap();
    let ends = Arc::new(Mutex::new(BTreeSet::new()));
    let e2 = ends.clone();
    r.set_block_callback(Box::new(move |b| {
        e2.lock().unwrap().insert(b.offset + b.raw.len() as u64);
    }));
    let mut out = Vec::new();
    while let Some(p) = r.next_packet().unwrap() {
        let p = p.to_owned();
        out.push((p, r.offset()));
    }
    let mut all = ends.lock().unwrap().clone();
    all.extend(out.iter().map(|x| x.1));
    (out, all)
}

fn check_cuts(name: &str, bytes: &[u8]) {
    let (packets, boundaries) = layout(bytes);
    assert!(!packets.is_empty(), "{name}: no packets");
    // from the end of the 4th-last packet (or of the first block) to the end
    let from = if packets.len() > 3 {
        packets[packets.len() - 4].1
    } else {
        *boundaries.iter().next().unwrap()
    };
    for cfg in [
        ReaderConfig {
            buffer_size: 8192,
            max_block_size: 1 << 20,
            ..ReaderConfig::default()
        },
        ReaderConfig {
            buffer_size: 64,
            max_block_size: 1 << 20,
            ..ReaderConfig::default()
        },
    ] {
        for cut in from as usize..bytes.len() {
            let r = read_bytes(bytes[..cut].to_vec(), &cfg).unwrap();
            let want: Vec<&OwnedPacket> = packets
                .iter()
                .filter(|p| p.1 <= cut as u64)
                .map(|p| &p.0)
                .collect();
            let got: Vec<&OwnedPacket> = r.packets.iter().collect();
            assert_eq!(got, want, "{name} cut at {cut}");
            if boundaries.contains(&(cut as u64)) {
                assert!(
                    r.error.is_none(),
                    "{name} cut at boundary {cut}: {:?}",
                    r.error
                );
            } else {
                match &r.error {
                    Some(Error::Truncated { offset, .. }) => {
                        assert!(*offset < cut as u64, "{name} cut at {cut}: offset {offset}")
                    }
                    other => panic!("{name} cut at {cut}: {other:?}"),
                }
            }
        }
    }
}

#[test]
fn corpus_files_cut_at_every_offset() {
    let Some(dir) = corpus_dir() else { return };
    for f in [
        "formats/pcapparser_ntp.pcap",                    // pcap LE us
        "formats/tcpdump_pptp.pcap",                      // pcap BE us
        "formats/scapy_netflowv9.pcap",                   // pcap LE ns
        "formats/derived_be-nsec_get-to-ssh-server.pcap", // pcap BE ns
        "formats/pcapparser_modified-format.pcap",        // modified
        "formats/zeek_pcapng-multi-interface.pcapng",     // pcapng LE, 2 IDB
        "formats/pcapngtestgen_be_test006.pcapng",        // pcapng BE
        "formats/pcapngtestgen_le_test202.pcapng",        // 3 sections BE+LE
        "formats/pcapngtestgen_le_test016.pcapng",        // SPB, NRB
        "formats/ndpi_http.pcapng",                       // pcapng ns
    ] {
        let bytes = std::fs::read(dir.join(f)).unwrap();
        check_cuts(f, &bytes);
    }
}

#[test]
fn written_files_cut_at_every_offset() {
    let pk = synth::packets(12, Timestamp::from_secs_nanos(1_700_000_000, 123_456_789));
    for (nanos, big_endian) in [(false, false), (true, false), (false, true), (true, true)] {
        let b = synth::pcap_bytes(
            &pk,
            LinkType::ETHERNET,
            PcapWriterOptions {
                nanos,
                big_endian,
                snaplen: 65535,
            },
        )
        .unwrap();
        check_cuts(&format!("pcap nanos={nanos} be={big_endian}"), &b);
    }
    for be in [false, true] {
        let mut w = PcapNgWriter::new(Vec::new(), be).unwrap();
        w.add_interface(&InterfaceSpec::new(LinkType::ETHERNET))
            .unwrap();
        w.add_interface(&InterfaceSpec {
            tsresol: 0x80 | 30,
            ..InterfaceSpec::new(LinkType::RAW)
        })
        .unwrap();
        for (i, p) in pk.iter().enumerate() {
            let mut p = p.clone();
            p.interface = (i % 2) as u32;
            p.linktype = if i % 2 == 0 {
                LinkType::ETHERNET
            } else {
                LinkType::RAW
            };
            w.write_packet(&p.as_packet()).unwrap();
            if i == 9 {
                w.write_raw_block(0x0000_0BAD, b"\x00\x00\x7e\xdecustom")
                    .unwrap();
            }
        }
        let b = w.finish().unwrap();
        check_cuts(&format!("pcapng be={be}"), &b);
    }
}
