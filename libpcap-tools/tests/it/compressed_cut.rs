//! A compressed capture cut anywhere gives every whole packet that a
//! streaming decompressor can produce before the cut, then a truncation
//! ([`Error::is_truncation`]); an error without packets only when the cut
//! falls inside the capture's file header.
//!
//! "What a decompressor can produce" is the output of the crate decoder the
//! reader uses, read to its first error: the packets expected are those of
//! the uncut capture that end within it. The system's own command-line
//! decompressor (`gzip -dc`, `xz -dc`, `zstd -dc`, `lz4 -dc`, `bzip2 -dc`;
//! other implementations than the crates, except for xz and zstd) gives a
//! lower bound: the reader must give at least the packets within its output
//! (`bzip2` writes nothing of a stream whose end is cut, the crate gives its
//! complete blocks). A missing tool is said with a SKIP line.

use crate::common::{corpus_dir, read_bytes};
use libpcap_tools::{CaptureReader, Compression, Error, OwnedPacket, ReaderConfig};
use std::io::{Read, Write};
use std::process::{Command, Stdio};

/// Every packet of `plain` with the offset where it ends.
fn packet_ends(plain: &[u8]) -> Vec<(OwnedPacket, u64)> {
    let mut r = CaptureReader::from_reader(
        std::io::Cursor::new(plain.to_vec()),
        "plain",
        &ReaderConfig::default(),
    )
    .unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet().unwrap() {
        let p = p.to_owned();
        out.push((p, r.offset()));
    }
    out
}

/// Length of the file header (pcap) or first section header block (pcapng).
fn header_len(plain: &[u8]) -> usize {
    if plain.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let le = plain[8..12] == [0x4d, 0x3c, 0x2b, 0x1a];
        let b: [u8; 4] = plain[4..8].try_into().unwrap();
        (if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }) as usize
    } else {
        24
    }
}

fn compress(comp: Compression, plain: &[u8]) -> Vec<u8> {
    match comp {
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(plain).unwrap();
            e.finish().unwrap()
        }
        Compression::Xz => {
            let mut x = liblzma::write::XzEncoder::new(Vec::new(), 6);
            x.write_all(plain).unwrap();
            x.finish().unwrap()
        }
        Compression::Lz4 => {
            // 64 KiB blocks (the lz4 tool's are 4 MiB): cuts between blocks
            let info =
                lz4_flex::frame::FrameInfo::new().block_size(lz4_flex::frame::BlockSize::Max64KB);
            let mut l = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            l.write_all(plain).unwrap();
            l.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(plain, 3).unwrap(),
        Compression::Bzip2 => {
            let mut b = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
            b.write_all(plain).unwrap();
            b.finish().unwrap()
        }
        other => panic!("{other:?}"),
    }
}

fn tool(comp: Compression) -> &'static str {
    match comp {
        Compression::Gzip => "gzip",
        Compression::Xz => "xz",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
        Compression::Bzip2 => "bzip2",
        other => panic!("{other:?}"),
    }
}

/// What the command-line decompressor writes for `cut` before it fails
/// (`None` when the tool cannot be run).
fn tool_output(comp: Compression, cut: &[u8]) -> Option<Vec<u8>> {
    let mut child = Command::new(tool(comp))
        .args(["-d", "-c", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let data = cut.to_vec();
    // the decompressor may stop reading early: a write error is fine
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let mut out = Vec::new();
    child.stdout.take()?.read_to_end(&mut out).ok()?;
    let _ = child.wait();
    let _ = feeder.join();
    Some(out)
}

/// What the crate decoder gives for `cut`, read to its first error.
fn crate_output(comp: Compression, cut: &[u8]) -> Vec<u8> {
    let mut d: Box<dyn Read> = match comp {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(cut)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(cut)),
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(cut)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(cut).unwrap()),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(cut)),
        other => panic!("{other:?}"),
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match d.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// Cuts `compressed` (of `plain`) at 50 offsets and a few inside its first
/// bytes, and checks what the reader gives for each.
fn check_cuts(name: &str, comp: Compression, plain: &[u8], compressed: &[u8]) {
    let ends = packet_ends(plain);
    assert!(!ends.is_empty(), "{name}");
    let header = header_len(plain);
    let cfg = ReaderConfig::default();
    let use_tool = tool_output(comp, compressed).is_some_and(|o| o == plain);
    if !use_tool {
        println!(
            "SKIP {name} {comp:?}: no working '{}' command for the lower bound",
            tool(comp)
        );
    }
    let mut cuts: Vec<usize> = (1..50).map(|k| compressed.len() * k / 50).collect();
    cuts.extend([1, 4, 10, 30, 100, compressed.len() - 1]);
    cuts.retain(|&c| c > 0 && c < compressed.len());
    let (mut with_packets, mut header_errors) = (0, 0);
    for cut in cuts {
        let part = &compressed[..cut];
        // what the reader must give: the crate decoder's output read to its
        // first error; the command-line tool's output is a lower bound
        let out = crate_output(comp, part);
        assert!(plain.starts_with(&out), "{name} {comp:?} cut {cut}");
        let lower = if use_tool {
            let t = tool_output(comp, part).unwrap();
            assert!(plain.starts_with(&t), "{name} {comp:?} cut {cut}: tool");
            t.len()
        } else {
            0
        };
        let upto = |len: usize| -> Vec<&OwnedPacket> {
            ends.iter()
                .filter(|(_, end)| *end <= len as u64)
                .map(|(p, _)| p)
                .collect()
        };
        let want = upto(out.len());
        let at_least = upto(lower).len();
        match read_bytes(part.to_vec(), &cfg) {
            Ok(got) => {
                let got_refs: Vec<&OwnedPacket> = got.packets.iter().collect();
                assert_eq!(
                    got_refs.len(),
                    want.len(),
                    "{name} {comp:?} cut at {cut} of {}: {} bytes decompressed",
                    compressed.len(),
                    out.len()
                );
                assert!(got_refs == want, "{name} {comp:?} cut {cut}: other packets");
                assert!(
                    got_refs.len() >= at_least,
                    "{name} {comp:?} cut {cut}: {} packets, '{}' gives {at_least}",
                    got_refs.len(),
                    tool(comp)
                );
                let Some(e) = got.error else {
                    panic!(
                        "{name} {comp:?} cut {cut} of {}: no error",
                        compressed.len()
                    )
                };
                assert!(e.is_truncation(), "{name} {comp:?} cut {cut}: {e}");
                if !got.packets.is_empty() {
                    with_packets += 1;
                }
            }
            Err(e) => {
                // only a cut inside the capture's header may fail to open
                assert!(
                    out.len() < header,
                    "{name} {comp:?} cut {cut}: {} bytes decompressed, header {header}: {e}",
                    out.len()
                );
                header_errors += 1;
            }
        }
    }
    // a file larger than any codec's block (bzip2's are 900 kB) gives packets
    // for some cuts (a smaller one may fit in a single block)
    assert!(
        plain.len() < 1_000_000 || with_packets > 0,
        "{name} {comp:?}: no cut gave packets"
    );
    println!("{name} {comp:?}: {with_packets} cuts with packets, {header_errors} in the header");
}

const CODECS: [Compression; 5] = [
    Compression::Gzip,
    Compression::Xz,
    Compression::Lz4,
    Compression::Zstd,
    Compression::Bzip2,
];

#[test]
fn cut_compressed_files_give_every_whole_packet_then_a_truncation() {
    let Some(dir) = corpus_dir() else { return };
    for f in [
        "formats/tcpdump_pptp.pcap",
        "formats/ndpi_sites.pcapng",
        "large/ndpi_netflix.pcap",
    ] {
        let plain = std::fs::read(dir.join(f)).unwrap();
        for comp in CODECS {
            let c = compress(comp, &plain);
            check_cuts(f, comp, &plain, &c);
        }
    }
}

#[test]
fn cut_corpus_gzip_files_give_every_whole_packet_then_a_truncation() {
    let Some(dir) = corpus_dir() else { return };
    for f in [
        "formats/scapy_http_chunk.pcap.gz",
        "apps/zeek_1000-requests-one-dropped-response.pcap.gz",
        "formats/derived_gz_pcapng-multi-interface.pcapng.gz",
        "malformed/zeek_mpls-6in6-broken.pcap.gz",
    ] {
        let gz = std::fs::read(dir.join(f)).unwrap();
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut plain)
            .unwrap();
        check_cuts(f, Compression::Gzip, &plain, &gz);
    }
}

#[test]
fn issue_13_gzip_cut_at_99_percent_reads_its_packets() {
    // was: "read error at offset 0: gzip: incomplete deflate stream" and no
    // packet, because the error came while the reader filled its first
    // 1 MiB buffer and the bytes decompressed so far were dropped
    let Some(dir) = corpus_dir() else { return };
    let gz = std::fs::read(dir.join("formats/scapy_http_chunk.pcap.gz")).unwrap();
    let cut = gz[..gz.len() * 99 / 100].to_vec();
    let got = read_bytes(cut, &ReaderConfig::default()).unwrap();
    assert!(got.packets.len() > 50, "{}", got.packets.len());
    match got.error {
        Some(Error::CompressedTruncated { codec: "gzip", .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn bzip2_input_reads_like_the_plain_file() {
    let packets = libpcap_tools::synth::packets(20, libpcap_tools::Timestamp(5));
    let plain = libpcap_tools::synth::pcap_bytes(
        &packets,
        libpcap_tools::LinkType::ETHERNET,
        libpcap_tools::PcapWriterOptions::default(),
    )
    .unwrap();
    // two streams, as `cat a.bz2 b.bz2` makes
    let mut two = compress(Compression::Bzip2, &plain[..100]);
    two.extend(compress(Compression::Bzip2, &plain[100..]));
    let r = CaptureReader::from_reader(
        std::io::Cursor::new(two.clone()),
        "x.bz2",
        &ReaderConfig::default(),
    )
    .unwrap();
    assert_eq!(r.compression(), Compression::Bzip2);
    let want = read_bytes(plain, &ReaderConfig::default()).unwrap();
    let got = read_bytes(two, &ReaderConfig::default()).unwrap();
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.packets.len(), packets.len());
    assert!(got.packets == want.packets);
}

#[test]
fn a_read_error_under_a_decompressor_stays_a_read_error() {
    // the file under the decompressor fails (EIO): not a truncation
    struct Failing(Vec<u8>, usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.1 >= self.0.len() {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.0.len() - self.1).min(512);
            buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }
    let packets = libpcap_tools::synth::packets(200, libpcap_tools::Timestamp(5));
    let plain = libpcap_tools::synth::pcap_bytes(
        &packets,
        libpcap_tools::LinkType::ETHERNET,
        libpcap_tools::PcapWriterOptions::default(),
    )
    .unwrap();
    let gz = compress(Compression::Gzip, &plain);
    let half = gz[..gz.len() / 2].to_vec();
    let r = CaptureReader::from_reader(Failing(half, 0), "x.gz", &ReaderConfig::default());
    let got = crate::common::read_reader(r.unwrap());
    match got.error {
        Some(Error::Io { source, .. }) => {
            assert_eq!(libpcap_tools::error_text(&source), "disk on fire")
        }
        other => panic!("{other:?}"),
    }
    assert!(!got.packets.is_empty());
}
