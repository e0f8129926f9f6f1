//! Compressed copies (gzip incl. multi-member, xz, lz4 frame, zstd), made
//! here with the crates, read the same packets as the plain file, whatever
//! their file name.

use crate::common::{corpus_dir, read_path};
use libpcap_tools::{CaptureReader, Compression, ReaderConfig};
use std::io::Write;
use std::path::Path;

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn compress_all(plain: &[u8]) -> Vec<(Compression, Vec<u8>)> {
    let mut out = vec![(Compression::Gzip, gzip(plain))];
    // two gzip members
    let half = plain.len() / 2;
    let mut multi = gzip(&plain[..half]);
    multi.extend(gzip(&plain[half..]));
    out.push((Compression::Gzip, multi));
    let mut x = liblzma::write::XzEncoder::new(Vec::new(), 6);
    x.write_all(plain).unwrap();
    out.push((Compression::Xz, x.finish().unwrap()));
    let mut l = lz4_flex::frame::FrameEncoder::new(Vec::new());
    l.write_all(plain).unwrap();
    out.push((Compression::Lz4, l.finish().unwrap()));
    out.push((Compression::Zstd, zstd::encode_all(plain, 3).unwrap()));
    out
}

fn check(dir: &Path, name: &str, plain: &[u8]) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = ReaderConfig {
        buffer_size: 4096,
        max_block_size: 1 << 24,
        ..ReaderConfig::default()
    };
    let p = tmp.path().join("plain.bin");
    std::fs::write(&p, plain).unwrap();
    let want = read_path(&p, &cfg).unwrap();
    assert!(want.error.is_none(), "{name}");
    for (i, (comp, bytes)) in compress_all(plain).into_iter().enumerate() {
        // misleading extension on purpose: detection is by magic
        let p = tmp.path().join(format!("copy{i}.pcap"));
        std::fs::write(&p, &bytes).unwrap();
        let r = CaptureReader::open(&p, &cfg).unwrap();
        assert_eq!(r.compression(), comp, "{name}");
        let total = bytes.len() as u64;
        assert_eq!(
            libpcap_tools::PacketSource::progress(&r).total_bytes,
            Some(total)
        );
        let mut r = r;
        while r.next_packet().unwrap().is_some() {}
        assert_eq!(
            libpcap_tools::PacketSource::progress(&r).bytes,
            total,
            "{name} {comp:?}"
        );
        let got = crate::common::read_reader(CaptureReader::open(&p, &cfg).unwrap());
        assert!(got.error.is_none(), "{name} {comp:?}: {:?}", got.error);
        assert_eq!(got.packets, want.packets, "{name} {comp:?}");
        // a cut compressed file: packets so far, then a clean error
        let cut = &bytes[..bytes.len() * 2 / 3];
        let r = crate::common::read_bytes(cut.to_vec(), &cfg);
        if let Ok(r) = r {
            assert!(r.packets.len() <= want.packets.len());
            assert_eq!(
                r.packets[..],
                want.packets[..r.packets.len()],
                "{name} {comp:?} cut"
            );
            assert!(r.error.is_some(), "{name} {comp:?} cut: no error");
        }
    }
    let _ = dir;
}

#[test]
fn compressed_copies_read_the_same() {
    let Some(dir) = corpus_dir() else { return };
    for f in [
        "formats/pcapparser_ntp.pcap",
        "formats/tcpdump_pptp.pcap",
        "formats/ndpi_sites.pcapng",
        "formats/pcapngtestgen_le_test202.pcapng",
        "large/suricata_dhcp-request-flood.pcap",
    ] {
        let plain = std::fs::read(dir.join(f)).unwrap();
        check(&dir, f, &plain);
    }
}

/// A small pcap file, xz-compressed with a 256 KiB dictionary, whose LZMA2
/// dictionary-size byte is then set to `prop` (40: 4 GiB - 1) and the block
/// header's CRC32 fixed: the data still decodes with any dictionary at
/// least as large as the one used to write it.
fn xz_declaring_dictionary(prop: u8) -> (Vec<u8>, usize) {
    let packets = libpcap_tools::synth::packets(5, libpcap_tools::Timestamp(0));
    let plain = libpcap_tools::synth::pcap_bytes(
        &packets,
        libpcap_tools::LinkType::ETHERNET,
        libpcap_tools::PcapWriterOptions::default(),
    )
    .unwrap();
    let mut x = liblzma::write::XzEncoder::new(Vec::new(), 0);
    x.write_all(&plain).unwrap();
    let mut xz = x.finish().unwrap();
    // stream header (12 bytes), then the block header: its size byte, flags,
    // the LZMA2 filter (id 0x21, 1 byte of properties), padding, CRC32
    let len = (usize::from(xz[12]) + 1) * 4;
    let header = &mut xz[12..12 + len];
    let at = header.windows(2).position(|w| w == [0x21, 0x01]).unwrap() + 2;
    header[at] = prop;
    let mut crc = flate2::Crc::new();
    crc.update(&header[..len - 4]);
    header[len - 4..].copy_from_slice(&crc.sum().to_le_bytes());
    (xz, packets.len())
}

#[test]
fn xz_dictionary_over_the_decoder_memory_cap_is_an_error() {
    // found by fuzzing (capture_reader): a 2 KB .xz file declaring a 4 GiB
    // dictionary made the decoder allocate 4 GiB, and a decompression bomb
    // behind it could fill them; the decoder is now capped at
    // max(max_block_size, 128 MiB)
    let (xz, _) = xz_declaring_dictionary(40);
    let r = CaptureReader::from_reader(std::io::Cursor::new(xz), "4g.xz", &ReaderConfig::default());
    match r {
        Err(libpcap_tools::Error::Io { offset: 0, source }) => {
            let m = source.to_string();
            assert!(m.starts_with("xz: "), "{m}");
            assert!(m.contains("memory") && m.contains("256 MiB"), "{m}");
        }
        other => panic!("a 4 GiB dictionary was accepted: {other:?}"),
    }
    // the same file declaring 2 MiB reads every packet: only the size matters
    let (xz, n) = xz_declaring_dictionary(18);
    let got = crate::common::read_bytes(xz, &ReaderConfig::default()).unwrap();
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.packets.len(), n);
}

#[test]
fn zstd_window_over_the_decoder_memory_cap_is_an_error() {
    // a zstd frame header asking for a 2 GiB window (descriptor exponent 21)
    let frame = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa8, 0x01, 0x00, 0x00];
    let cfg = ReaderConfig {
        max_block_size: 1 << 30,
        ..ReaderConfig::default()
    };
    match CaptureReader::from_reader(std::io::Cursor::new(frame.to_vec()), "2g.zst", &cfg) {
        Err(libpcap_tools::Error::Io { offset: 0, source }) => {
            let m = source.to_string();
            assert!(m.starts_with("zstd: "), "{m}");
            assert!(m.contains("memory") && m.contains("1024 MiB"), "{m}");
        }
        other => panic!("a 2 GiB window was accepted: {other:?}"),
    }
}
