//! Arbitrary bytes as a capture file: through `CaptureReader` (every
//! packet, every non-packet block offered to the callback), through
//! `LenientSource`, and, for classic pcap, through `ChunkedPcapReader`
//! from a file, whose packets must be the streaming reader's.

#![no_main]

use libfuzzer_sys::fuzz_target;
use libpcap_tools::{
    CaptureReader, ChunkedPcapReader, LenientSource, OwnedPacket, PacketSource, ReaderConfig,
    SharedEvent, SourceEvent,
};
use std::io::Cursor;

/// Even lengths: the smallest buffer (it grows block by block) and a 32 MiB
/// block cap, far more than any fuzz input, so that a run with
/// `-malloc_limit_mb=160` reports an allocation sized from a declared length
/// instead of the bytes present (decompressors may take 128 MiB for their
/// window whatever the cap). Odd lengths: a 64 KiB buffer and a 1 MiB cap,
/// so that over-long blocks are refused.
fn reader_config(data: &[u8]) -> ReaderConfig {
    let small = data.len().is_multiple_of(2);
    ReaderConfig {
        buffer_size: if small { 64 } else { 1 << 16 },
        max_block_size: if small { 32 << 20 } else { 1 << 20 },
        shared_chunks: true,
    }
}

fn streaming(data: &[u8], cfg: &ReaderConfig) {
    let Ok(mut r) = CaptureReader::from_reader(Cursor::new(data.to_vec()), "fuzz", cfg) else {
        return;
    };
    r.set_block_callback(Box::new(|b| {
        assert!(b.raw.len() >= 12, "{b:?}");
        std::hint::black_box(b.raw.len());
    }));
    let _ = (r.format(), r.compression(), r.linktype(), r.snaplen());
    let mut n = 0u64;
    loop {
        match r.next_packet() {
            Ok(Some(p)) => {
                assert_eq!(p.index, n);
                std::hint::black_box((p.caplen(), p.is_truncated(), p.ts, p.to_owned()));
                n += 1;
            }
            Ok(None) => break,
            Err(e) => {
                std::hint::black_box((e.to_string(), e.is_truncation()));
                // errors are final
                assert!(matches!(r.next_packet(), Ok(None)));
                break;
            }
        }
        std::hint::black_box((r.interfaces(), r.section_index(), r.offset(), r.progress()));
    }
    assert_eq!(r.packets_read(), n);
}

/// Every packet of a lenient source, and whether it ended with a warning.
fn lenient(data: &[u8], cfg: &ReaderConfig) -> Option<(Vec<OwnedPacket>, bool)> {
    let r = CaptureReader::from_reader(Cursor::new(data.to_vec()), "fuzz", cfg).ok()?;
    let mut s = LenientSource::new(r);
    let mut out = Vec::new();
    loop {
        match s.next_event() {
            Ok(SourceEvent::Packet(p)) => out.push(p.to_owned()),
            Ok(SourceEvent::End) => break,
            Ok(SourceEvent::Timeout { .. }) => panic!("a file source timed out"),
            Err(e) => {
                assert!(out.is_empty(), "error after a packet: {e}");
                break;
            }
        }
    }
    assert_eq!(s.next_event().ok(), Some(SourceEvent::End));
    let warned = !PacketSource::warnings(&s).is_empty();
    Some((out, warned))
}

fn is_classic(data: &[u8]) -> bool {
    matches!(
        data.get(..4),
        Some([0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] | [0xa1, 0xb2, 0xc3, 0xd4])
            | Some([0xa1, 0xb2, 0x3c, 0x4d] | [0x34, 0xcd, 0xb2, 0xa1])
    )
}

fn chunked(data: &[u8], cfg: &ReaderConfig) -> Option<Vec<OwnedPacket>> {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("pal-fuzz-chunked-{}.pcap", std::process::id()));
    std::fs::write(&path, data).ok()?;
    let r = ChunkedPcapReader::open(&path, cfg);
    let _ = std::fs::remove_file(&path);
    let mut r = r.ok()??;
    let mut out = Vec::new();
    let mut shared = data.len().is_multiple_of(3);
    loop {
        // alternate the two ways of reading
        shared = !shared;
        if shared {
            match r.next_shared() {
                Ok(SharedEvent::Packet(p)) => {
                    assert_eq!(p.data().len(), p.len);
                    out.push(p.as_packet().to_owned());
                }
                Ok(SharedEvent::End) => break,
                Ok(SharedEvent::Timeout { .. }) => panic!("a file source timed out"),
                Err(_) => break,
            }
        } else {
            match r.next_event() {
                Ok(SourceEvent::Packet(p)) => out.push(p.to_owned()),
                Ok(SourceEvent::End) => break,
                Ok(SourceEvent::Timeout { .. }) => panic!("a file source timed out"),
                Err(_) => break,
            }
        }
    }
    std::hint::black_box(r.progress());
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let cfg = reader_config(data);
    streaming(data, &cfg);
    let lenient_packets = lenient(data, &cfg);
    if is_classic(data) {
        let chunked_packets = chunked(data, &cfg);
        // both readers give the same packets of a classic pcap file
        if let (Some((a, _)), Some(b)) = (&lenient_packets, &chunked_packets) {
            assert_eq!(a, b, "streaming and chunked readers disagree");
        }
    }
});
