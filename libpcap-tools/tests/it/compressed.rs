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
