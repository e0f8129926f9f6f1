//! The chunked classic-pcap reader gives exactly what `CaptureReader` gives.

use crate::common::corpus_dir;
use libpcap_tools::{
    CaptureReader, ChunkedPcapReader, LenientSource, OwnedPacket, PacketSource, ReaderConfig,
    SharedEvent, SourceEvent,
};
use std::path::Path;

fn via_reader(path: &Path) -> Option<(Vec<OwnedPacket>, Vec<String>)> {
    let r = CaptureReader::open(path, &ReaderConfig::default()).ok()?;
    let mut s = LenientSource::new(r);
    let mut out = Vec::new();
    loop {
        match s.next_event() {
            Ok(SourceEvent::Packet(p)) => out.push(p.to_owned()),
            Ok(_) => break,
            Err(_) => return None,
        }
    }
    let w = s.warnings().iter().map(|e| format!("{e}")).collect();
    Some((out, w))
}

fn via_chunks(
    path: &Path,
    buffer_size: usize,
    shared: bool,
) -> Option<(Vec<OwnedPacket>, Vec<String>)> {
    let cfg = ReaderConfig {
        buffer_size,
        ..ReaderConfig::default()
    };
    let mut r = ChunkedPcapReader::open(path, &cfg).ok()??;
    let mut out = Vec::new();
    if shared {
        loop {
            match r.next_shared() {
                Ok(SharedEvent::Packet(p)) => out.push(p.as_packet().to_owned()),
                Ok(_) => break,
                Err(_) => return None,
            }
        }
    } else {
        loop {
            match r.next_event() {
                Ok(SourceEvent::Packet(p)) => out.push(p.to_owned()),
                Ok(_) => break,
                Err(_) => return None,
            }
        }
    }
    let w = r.warnings().iter().map(|e| format!("{e}")).collect();
    Some((out, w))
}

fn is_classic_pcap(path: &Path) -> bool {
    let Ok(b) = std::fs::read(path) else {
        return false;
    };
    matches!(
        b.get(..4),
        Some(
            [0xd4, 0xc3, 0xb2, 0xa1]
                | [0x4d, 0x3c, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0xc3, 0xd4]
                | [0xa1, 0xb2, 0x3c, 0x4d]
        )
    )
}

#[test]
fn chunked_reader_equals_capture_reader_on_the_corpus() {
    let Some(dir) = corpus_dir() else { return };
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let mut files = 0;
    for line in manifest.lines().skip(1) {
        let rel = line.split('\t').next().unwrap();
        let path = dir.join(rel);
        if !is_classic_pcap(&path) {
            continue;
        }
        let Some(expected) = via_reader(&path) else {
            // an error before the first packet: the chunked reader errs too
            assert!(via_chunks(&path, 1 << 20, true).is_none(), "{rel}");
            continue;
        };
        for size in [64, 1000, 1 << 20] {
            for shared in [true, false] {
                let got = via_chunks(&path, size, shared)
                    .unwrap_or_else(|| panic!("{rel}: chunked reader failed"));
                assert_eq!(
                    got.0.len(),
                    expected.0.len(),
                    "{rel} (chunk {size}, shared {shared})"
                );
                assert!(got.0 == expected.0, "{rel}: packets differ (chunk {size})");
                // both end the same way: cleanly or with the same kind of warning
                assert_eq!(
                    got.1.len(),
                    expected.1.len(),
                    "{rel}: {:?} vs {:?}",
                    got.1,
                    expected.1
                );
            }
        }
        files += 1;
    }
    assert!(files > 150, "{files} classic pcap files");
}

#[test]
fn chunked_reader_cut_at_every_offset() {
    use libpcap_tools::{LinkType, PcapWriterOptions, Timestamp, synth};
    let packets = synth::packets(6, Timestamp(1_000_000_000));
    let bytes =
        synth::pcap_bytes(&packets, LinkType::ETHERNET, PcapWriterOptions::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for cut in 24..=bytes.len() {
        let path = tmp.path().join("cut.pcap");
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let expected = via_reader(&path).unwrap();
        for size in [64, 1 << 20] {
            for shared in [true, false] {
                let got = via_chunks(&path, size, shared).unwrap();
                assert!(got.0 == expected.0, "cut {cut}, shared {shared}");
                assert_eq!(
                    got.1.len(),
                    expected.1.len(),
                    "cut {cut}: {:?} vs {:?}",
                    got.1,
                    expected.1
                );
            }
        }
    }
}

#[test]
fn both_readers_apply_the_same_record_size_limit() {
    use libpcap_tools::{LinkType, Packet, PcapWriter, PcapWriterOptions, Timestamp};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sizes.pcap");
    let mut w =
        PcapWriter::new(Vec::new(), LinkType::ETHERNET, PcapWriterOptions::default()).unwrap();
    for (i, len) in [100usize, 1000, 1001, 50].into_iter().enumerate() {
        let data = vec![i as u8; len];
        w.write_packet(&Packet {
            index: i as u64,
            interface: 0,
            linktype: LinkType::ETHERNET,
            ts: Some(Timestamp::from_secs_nanos(1, 0)),
            origlen: len as u32,
            data: &data,
        })
        .unwrap();
    }
    std::fs::write(&path, w.finish().unwrap()).unwrap();
    // a record of 16 + 1000 bytes is at the cap; 16 + 1001 is over it
    let cfg = ReaderConfig {
        max_block_size: 1016,
        buffer_size: 256,
        ..ReaderConfig::default()
    };
    let mut streaming = LenientSource::new(CaptureReader::open(&path, &cfg).unwrap());
    let mut chunked = ChunkedPcapReader::open(&path, &cfg).unwrap().unwrap();
    let mut lens = [Vec::new(), Vec::new()];
    for (k, src) in [&mut streaming as &mut dyn PacketSource, &mut chunked]
        .into_iter()
        .enumerate()
    {
        loop {
            match src.next_event() {
                Ok(SourceEvent::Packet(p)) => lens[k].push(p.data.len()),
                Ok(_) => break,
                Err(e) => panic!("reader {k}: {e:?} after {:?}", lens[k]),
            }
        }
        let w = src.warnings();
        assert_eq!(w.len(), 1, "reader {k}: {w:?}");
        // the third record, after the file header (24) and two records
        // (16 + 100, 16 + 1000)
        assert!(
            matches!(
                w[0],
                libpcap_tools::Error::BlockTooLarge {
                    offset: 1156,
                    block_index: 3,
                    length: 1017,
                    cap: 1016,
                    header: 16,
                }
            ),
            "reader {k}: {:?}",
            w[0]
        );
    }
    assert_eq!(lens[0], vec![100, 1000]);
    assert_eq!(lens[1], lens[0]);
}

/// Records longer than the room kept at the front of a chunk (64 KiB) and
/// longer than a chunk, cut by chunk ends at many places, read ahead by
/// a thread (`next_event`) or in place (`next_shared`): the same packets as
/// the streaming reader, and the bytes read end at the file's length.
#[test]
fn records_longer_than_the_headroom_and_than_a_chunk_read_whole() {
    use libpcap_tools::{LinkType, Packet, PcapWriter, PcapWriterOptions, Timestamp};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.pcap");
    let mut w =
        PcapWriter::new(Vec::new(), LinkType::ETHERNET, PcapWriterOptions::default()).unwrap();
    let lens = [
        60usize, 70_000, 1_500, 65_536, 65_520, 200_000, 9_000, 1_300_000, 64, 131_072, 60,
    ];
    for (i, len) in lens.into_iter().enumerate() {
        let data: Vec<u8> = (0..len).map(|b| (b * 7 + i) as u8).collect();
        w.write_packet(&Packet {
            index: i as u64,
            interface: 0,
            linktype: LinkType::ETHERNET,
            ts: Some(Timestamp::from_secs_nanos(1, i as i64 * 1000)),
            origlen: len as u32,
            data: &data,
        })
        .unwrap();
    }
    let bytes = w.finish().unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let expected = via_reader(&path).unwrap();
    assert_eq!(expected.0.len(), lens.len());
    for size in [64, 1000, 65_536, 100_000, 1 << 20] {
        for shared in [true, false] {
            let got = via_chunks(&path, size, shared).unwrap();
            assert!(got.0 == expected.0, "chunk {size}, shared {shared}");
            assert!(got.1.is_empty(), "chunk {size}: {:?}", got.1);
        }
        let cfg = ReaderConfig {
            buffer_size: size,
            ..ReaderConfig::default()
        };
        let mut r = ChunkedPcapReader::open(&path, &cfg).unwrap().unwrap();
        while let Ok(SourceEvent::Packet(_)) = r.next_event() {}
        assert_eq!(r.progress().bytes, bytes.len() as u64, "chunk {size}");
    }
}
