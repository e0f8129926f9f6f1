//! Writers round trip; pcapng features (if_tsresol, if_tsoffset, byte
//! orders, sections, SPB, obsolete PB, block callback); buffer growth and
//! the block size cap.

use crate::common::{corpus_dir, read_bytes, read_path};
use libpcap_tools::{
    BlockInfo, CaptureFormat, CaptureReader, Endianness, Error, InterfaceSpec, LinkType,
    OwnedPacket, PacketSource, PcapNgWriter, PcapWriterOptions, ReaderConfig, SourceEvent,
    Timestamp, synth,
};
use std::sync::{Arc, Mutex};

fn cfg() -> ReaderConfig {
    ReaderConfig::default()
}

fn reader(bytes: Vec<u8>) -> CaptureReader {
    CaptureReader::from_reader(std::io::Cursor::new(bytes), "mem", &cfg()).unwrap()
}

#[test]
fn pcap_round_trip_every_field() {
    let pk = synth::packets(50, Timestamp::from_secs_nanos(1_700_000_000, 987_654_321));
    for (nanos, big_endian) in [(false, false), (true, false), (false, true), (true, true)] {
        let opts = PcapWriterOptions {
            nanos,
            big_endian,
            snaplen: 1500,
        };
        let b = synth::pcap_bytes(&pk, LinkType(276), opts).unwrap();
        let r = reader(b.clone());
        let endianness = if big_endian {
            Endianness::Big
        } else {
            Endianness::Little
        };
        assert_eq!(
            r.format(),
            CaptureFormat::Pcap {
                endianness,
                nanos,
                modified: false
            }
        );
        assert_eq!(r.linktype(), Some(LinkType(276)));
        assert_eq!(r.snaplen(), Some(1500));
        let got = read_bytes(b, &cfg()).unwrap();
        assert!(got.error.is_none());
        assert_eq!(got.packets.len(), pk.len());
        for (g, w) in got.packets.iter().zip(&pk) {
            let mut w = w.clone();
            w.linktype = LinkType(276);
            if !nanos {
                w.ts = w.ts.map(|t| Timestamp(t.0 - t.0.rem_euclid(1000)));
            }
            assert_eq!(g, &w);
        }
    }
}

#[test]
fn pcap_linktype_upper_bits_are_masked() {
    let pk = synth::packets(1, Timestamp(0));
    let mut b = synth::pcap_bytes(&pk, LinkType::ETHERNET, PcapWriterOptions::default()).unwrap();
    b[20..24].copy_from_slice(&0x1234_0001u32.to_le_bytes());
    let r = reader(b);
    assert_eq!(r.linktype(), Some(LinkType::ETHERNET));
}

#[test]
fn pcap_out_of_range_subsecond_is_computed_as_stored() {
    let pk = synth::packets(1, Timestamp(0));
    let mut b = synth::pcap_bytes(&pk, LinkType::ETHERNET, PcapWriterOptions::default()).unwrap();
    b[24..28].copy_from_slice(&10u32.to_le_bytes());
    b[28..32].copy_from_slice(&1_500_000u32.to_le_bytes());
    let got = read_bytes(b, &cfg()).unwrap();
    assert_eq!(got.packets[0].ts, Some(Timestamp(11_500_000_000)));
}

fn ng_packets() -> (Vec<InterfaceSpec>, Vec<OwnedPacket>) {
    let specs = vec![
        InterfaceSpec {
            name: Some("eth0".into()),
            snaplen: 65535,
            ..InterfaceSpec::new(LinkType::ETHERNET)
        },
        InterfaceSpec {
            tsresol: 6,
            ..InterfaceSpec::new(LinkType::RAW)
        },
        InterfaceSpec {
            tsresol: 0x80 | 30,
            ..InterfaceSpec::new(LinkType::LINUX_SLL)
        },
        InterfaceSpec {
            tsresol: 0x80 | 10,
            tsoffset: 1_600_000_000,
            ..InterfaceSpec::new(LinkType(147))
        },
        InterfaceSpec {
            tsresol: 9,
            tsoffset: -10,
            ..InterfaceSpec::new(LinkType::IPV4)
        },
    ];
    let mut pk = synth::packets(40, Timestamp::from_secs_nanos(1_650_000_000, 111_222_333));
    for (i, p) in pk.iter_mut().enumerate() {
        let k = i % specs.len();
        p.interface = k as u32;
        p.linktype = specs[k].linktype;
        p.ts = p.ts.map(|t| match specs[k].tsresol {
            6 => Timestamp(t.0 - t.0.rem_euclid(1000)),
            // 2^-10 s: only exact multiples survive; use whole seconds
            0x8a => Timestamp(t.0 - t.0.rem_euclid(1_000_000_000)),
            _ => t,
        });
    }
    (specs, pk)
}

#[test]
fn pcapng_round_trip_every_field_both_byte_orders() {
    let (specs, pk) = ng_packets();
    for be in [false, true] {
        let b = synth::pcapng_bytes(&pk, &specs, be).unwrap();
        let mut r = reader(b.clone());
        assert_eq!(r.format(), CaptureFormat::PcapNg);
        assert_eq!(r.linktype(), None);
        let mut got = Vec::new();
        while let Some(p) = r.next_packet().unwrap() {
            got.push(p.to_owned());
        }
        assert_eq!(got, pk, "be={be}");
        let ifs = r.interfaces();
        assert_eq!(ifs.len(), specs.len());
        for (i, s) in ifs.iter().zip(&specs) {
            assert_eq!(
                (i.linktype, i.snaplen, i.tsresol, i.tsoffset),
                (s.linktype, s.snaplen, s.tsresol, s.tsoffset)
            );
            assert_eq!(i.name, s.name);
        }
    }
}

#[test]
fn pcapng_tsresol_powers_of_two_and_tsoffset() {
    let spec = InterfaceSpec {
        tsresol: 0x80 | 20,
        tsoffset: 1_000,
        ..InterfaceSpec::new(LinkType::ETHERNET)
    };
    let mut w = PcapNgWriter::new(Vec::new(), false).unwrap();
    w.add_interface(&spec).unwrap();
    // 2^-20 s units: 1.5 s after the offset = 1_572_864 units exactly
    let d = [0u8; 20];
    let p = synth::packet(0, Some(Timestamp(1_001_500_000_000)), 20, &d);
    w.write_packet(&p).unwrap();
    let b = w.finish().unwrap();
    // SHB (28) + IDB (20 + if_tsresol 8 + if_tsoffset 12 + end 4) = 72;
    // the EPB timestamp (at +12) is 1.5 * 2^20 units = 0x180000
    assert_eq!(&b[72 + 12..72 + 20], &[0, 0, 0, 0, 0x00, 0x00, 0x18, 0x00]);
    let got = read_bytes(b, &cfg()).unwrap();
    assert_eq!(got.packets[0].ts, Some(Timestamp(1_001_500_000_000)));
}

#[test]
fn pcapng_sections_restart_interfaces_and_callback_sees_blocks() {
    let mut w = PcapNgWriter::new(Vec::new(), true).unwrap();
    w.add_interface(&InterfaceSpec::new(LinkType::ETHERNET))
        .unwrap();
    w.add_interface(&InterfaceSpec::new(LinkType::RAW)).unwrap();
    let d = [0x45u8; 40];
    let mut p = synth::packet(0, Some(Timestamp(5_000_000_000)), 40, &d);
    p.interface = 1;
    w.write_packet(&p).unwrap();
    w.write_raw_block(4, &[0, 0, 0, 0]).unwrap(); // empty NRB
    w.write_raw_block(0x0000_0BAD, b"\x00\x00\x7e\xdehello")
        .unwrap(); // custom
    w.new_section(false).unwrap();
    w.add_interface(&InterfaceSpec {
        snaplen: 16,
        ..InterfaceSpec::new(LinkType::IPV6)
    })
    .unwrap();
    p.interface = 0;
    w.write_packet(&p).unwrap();
    // SPB: no timestamp, caplen = min(origlen, snaplen)
    p.ts = None;
    w.write_packet(&p).unwrap();
    // obsolete Packet Block (type 2) on interface 0
    let mut pb = Vec::new();
    pb.extend_from_slice(&0u16.to_le_bytes());
    pb.extend_from_slice(&0u16.to_le_bytes());
    // 7e9 ns units = 1 << 32 | 2_705_032_704
    pb.extend_from_slice(&1u32.to_le_bytes());
    pb.extend_from_slice(&2_705_032_704u32.to_le_bytes());
    pb.extend_from_slice(&4u32.to_le_bytes());
    pb.extend_from_slice(&60u32.to_le_bytes());
    pb.extend_from_slice(&[1, 2, 3, 4]);
    w.write_raw_block(2, &pb).unwrap();
    let b = w.finish().unwrap();

    type Seen = Vec<(u32, u64, u32, bool, usize)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let s2 = seen.clone();
    let mut r = reader(b);
    r.set_block_callback(Box::new(move |b: &BlockInfo<'_>| {
        s2.lock()
            .unwrap()
            .push((b.block_type, b.offset, b.section, b.big_endian, b.raw.len()));
    }));
    let p0 = r.next_packet().unwrap().unwrap().to_owned();
    assert_eq!((p0.index, p0.interface, p0.linktype), (0, 1, LinkType::RAW));
    assert_eq!(r.section_index(), 0);
    let p1 = r.next_packet().unwrap().unwrap().to_owned();
    assert_eq!(
        (p1.index, p1.interface, p1.linktype),
        (1, 0, LinkType::IPV6)
    );
    assert_eq!(r.section_index(), 1);
    assert_eq!(r.interfaces().len(), 1);
    let p2 = r.next_packet().unwrap().unwrap().to_owned();
    assert_eq!((p2.ts, p2.origlen, p2.data.len()), (None, 40, 16));
    let p3 = r.next_packet().unwrap().unwrap().to_owned();
    assert_eq!(
        (p3.ts, p3.origlen, p3.data.as_slice()),
        (Some(Timestamp(7_000_000_000)), 60, &[1u8, 2, 3, 4][..])
    );
    assert!(r.next_packet().unwrap().is_none());
    let seen = seen.lock().unwrap().clone();
    let types: Vec<(u32, u32, bool)> = seen.iter().map(|s| (s.0, s.2, s.3)).collect();
    assert_eq!(
        types,
        [
            (0x0A0D_0D0A, 0, true),
            (1, 0, true),
            (1, 0, true),
            (4, 0, true),
            (0xBAD, 0, true),
            (0x0A0D_0D0A, 1, false),
            (1, 1, false)
        ]
    );
    assert_eq!(seen[0].1, 0);
    assert_eq!(seen[1].1, 28);
}

#[test]
fn pcapng_undefined_interface_is_corrupt() {
    let mut w = PcapNgWriter::new(Vec::new(), false).unwrap();
    w.add_interface(&InterfaceSpec::new(LinkType::ETHERNET))
        .unwrap();
    w.add_interface(&InterfaceSpec::new(LinkType::ETHERNET))
        .unwrap();
    let d = [0u8; 8];
    let mut p = synth::packet(0, Some(Timestamp(1)), 8, &d);
    w.write_packet(&p).unwrap();
    p.interface = 1;
    w.write_packet(&p).unwrap();
    let mut b = w.finish().unwrap();
    // retarget the second EPB to interface 7
    let second = b.len() - 40;
    b[second + 8..second + 12].copy_from_slice(&7u32.to_le_bytes());
    let got = read_bytes(b, &cfg()).unwrap();
    assert_eq!(got.packets.len(), 1);
    assert!(
        matches!(got.error, Some(Error::Corrupt { block_index: 4, .. })),
        "{:?}",
        got.error
    );
}

#[test]
fn buffer_grows_for_large_blocks() {
    let big = vec![0xabu8; 200_000];
    for be in [false, true] {
        let mut w = PcapNgWriter::new(Vec::new(), be).unwrap();
        w.add_interface(&InterfaceSpec::new(LinkType::ETHERNET))
            .unwrap();
        w.write_packet(&synth::packet(0, Some(Timestamp(1)), 200_000, &big))
            .unwrap();
        w.write_packet(&synth::packet(1, Some(Timestamp(2)), 3, &big[..3]))
            .unwrap();
        let b = w.finish().unwrap();
        let small = ReaderConfig {
            buffer_size: 64,
            max_block_size: 1 << 20,
            ..ReaderConfig::default()
        };
        let got = read_bytes(b, &small).unwrap();
        assert!(got.error.is_none());
        assert_eq!(got.packets.len(), 2);
        assert_eq!(got.packets[0].data, big);
    }
    let Some(dir) = corpus_dir() else { return };
    let small = ReaderConfig {
        buffer_size: 64,
        max_block_size: 1 << 20,
        ..ReaderConfig::default()
    };
    let got = read_path(
        &dir.join("formats/pcapparser_err-buffertoosmall.pcapng"),
        &small,
    )
    .unwrap();
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.packets.len(), 27);
}

#[test]
fn max_block_size_caps_declared_lengths() {
    let big = vec![0u8; 100_000];
    let pk = vec![synth::packet(0, Some(Timestamp(1)), 100_000, &big).to_owned()];
    let b = synth::pcap_bytes(&pk, LinkType::ETHERNET, PcapWriterOptions::default()).unwrap();
    let capped = ReaderConfig {
        buffer_size: 4096,
        max_block_size: 65536,
        ..ReaderConfig::default()
    };
    let got = read_bytes(b.clone(), &capped).unwrap();
    assert!(got.packets.is_empty());
    match got.error {
        Some(Error::BlockTooLarge {
            offset: 24,
            block_index: 1,
            length: 100_016,
            cap: 65536,
            header: 16,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(read_bytes(b, &cfg()).unwrap().packets.len(), 1);
    // pcapng
    let specs = [InterfaceSpec::new(LinkType::ETHERNET)];
    let b = synth::pcapng_bytes(&pk, &specs, true).unwrap();
    let got = read_bytes(b, &capped).unwrap();
    assert!(
        matches!(
            got.error,
            Some(Error::BlockTooLarge {
                length: 100_032,
                ..
            })
        ),
        "{:?}",
        got.error
    );
    // a huge SHB
    let mut b = synth::pcapng_bytes(&pk, &specs, false).unwrap();
    b[4..8].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    assert!(matches!(
        read_bytes(b, &capped),
        Err(Error::BlockTooLarge { offset: 0, .. })
    ));
}

#[test]
fn not_a_capture_and_empty_input() {
    assert!(matches!(
        read_bytes(b"hello world, not a capture".to_vec(), &cfg()),
        Err(Error::UnknownFormat { .. })
    ));
    assert!(matches!(
        read_bytes(Vec::new(), &cfg()),
        Err(Error::Truncated { offset: 0, .. })
    ));
    // a header-only pcap file has no packets and no error
    let b = synth::pcap_bytes(&[], LinkType::ETHERNET, PcapWriterOptions::default()).unwrap();
    let got = read_bytes(b, &cfg()).unwrap();
    assert!(got.packets.is_empty() && got.error.is_none());
}

#[test]
fn packet_source_and_progress() {
    let pk = synth::packets(3, Timestamp(0));
    let b = synth::pcap_bytes(&pk, LinkType::ETHERNET, PcapWriterOptions::default()).unwrap();
    let len = b.len() as u64;
    let mut r = reader(b);
    let mut n = 0;
    while let SourceEvent::Packet(p) = r.next_event().unwrap() {
        assert_eq!(p.index, n);
        n += 1;
    }
    assert_eq!(n, 3);
    assert_eq!(r.next_event().unwrap(), SourceEvent::End);
    assert_eq!(r.progress().packets, 3);
    assert_eq!(r.progress().bytes, len);
    assert_eq!(r.name(), "mem");
}

#[test]
fn a_file_opened_earlier_is_read_after_its_name_is_gone() {
    let pk = synth::packets(7, Timestamp::from_secs_nanos(1_700_000_000, 0));
    let opts = PcapWriterOptions {
        nanos: true,
        ..PcapWriterOptions::default()
    };
    let b = synth::pcap_bytes(&pk, LinkType::ETHERNET, opts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("early.pcap");
    std::fs::write(&path, &b).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    // opened, then the path goes: only the handle is left
    std::fs::remove_file(&path).unwrap();
    let mut r = CaptureReader::from_file(f, "early.pcap", &cfg()).unwrap();
    assert_eq!(r.progress().total_bytes, Some(b.len() as u64));
    let mut got = Vec::new();
    while let Some(p) = r.next_packet().unwrap() {
        got.push(p.to_owned());
    }
    assert!(got == pk, "{} packets read, not the 7 written", got.len());
}
