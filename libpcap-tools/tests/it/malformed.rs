//! Damaged inputs end with packets and a clean error: no panic, no endless
//! loop, bounded memory.

use crate::common::{corpus_dir, read_bytes, read_path};
use libpcap_tools::{Error, ReaderConfig};
use std::time::{Duration, Instant};

#[test]
fn every_malformed_file_ends_cleanly() {
    let Some(dir) = corpus_dir() else { return };
    let mut n = 0;
    for e in std::fs::read_dir(dir.join("malformed")).unwrap() {
        let path = e.unwrap().path();
        for cfg in [
            ReaderConfig::default(),
            ReaderConfig {
                buffer_size: 64,
                max_block_size: 1 << 20,
                ..ReaderConfig::default()
            },
        ] {
            let t = Instant::now();
            // either an open error or packets then the end / an error
            let _ = read_path(&path, &cfg);
            assert!(t.elapsed() < Duration::from_secs(10), "{}", path.display());
        }
        n += 1;
    }
    assert!(n >= 40, "{n} files");
}

#[test]
fn formats_with_huge_or_bad_lengths_give_typed_errors() {
    let Some(dir) = corpus_dir() else { return };
    let cfg = ReaderConfig::default();
    let r = read_path(
        &dir.join("formats/suricata_smtp-to-comma_10.7.29.101_49898-178.63.41.150_25.pcap"),
        &cfg,
    )
    .unwrap();
    assert_eq!(r.packets.len(), 18);
    assert!(
        matches!(
            r.error,
            Some(Error::BlockTooLarge {
                length: 3_925_868_829,
                block_index: 19,
                ..
            })
        ),
        "{:?}",
        r.error
    );
    // a 4 MiB record length in a short file: Truncated, without a 4 MiB buffer
    let r = read_path(
        &dir.join("formats/suricata_bug-1450-04_tls_DER-incomplete-header.pcap"),
        &cfg,
    )
    .unwrap();
    assert_eq!(r.packets.len(), 6);
    assert!(
        matches!(r.error, Some(Error::Truncated { .. })),
        "{:?}",
        r.error
    );
    let e = read_path(
        &dir.join("formats/derived_truncated-file-header_ntp.pcap"),
        &cfg,
    )
    .err();
    assert!(
        matches!(e, Some(Error::Truncated { offset: 0, .. })),
        "{e:?}"
    );
    // 590 bytes: 5 complete records, then a 16-byte record header at 554
    // declaring 90 bytes of which 20 are present
    let r = read_path(
        &dir.join("formats/derived_truncated-mid-packet_ntp.pcap"),
        &cfg,
    )
    .unwrap();
    assert_eq!(r.packets.len(), 5);
    assert!(
        matches!(
            r.error,
            Some(Error::Truncated {
                offset: 554,
                block_index: 6,
                needed: 70
            })
        ),
        "{:?}",
        r.error
    );
}

/// Deterministic byte mutations of corpus files of both formats: whatever
/// happens, reading ends quickly without a panic.
#[test]
fn mutated_files_never_panic() {
    let Some(dir) = corpus_dir() else { return };
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for f in [
        "formats/pcapparser_ntp.pcap",
        "formats/zeek_pcapng-multi-interface.pcapng",
        "formats/pcapngtestgen_le_test202.pcapng",
        "formats/ndpi_sites.pcapng",
        "formats/derived_gz_ntp.pcap.gz",
    ] {
        let orig = std::fs::read(dir.join(f)).unwrap();
        for _ in 0..300 {
            let mut b = orig.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % b.len() as u64) as usize;
                b[at] = match next() % 3 {
                    0 => 0xff,
                    1 => 0,
                    _ => next() as u8,
                };
            }
            let t = Instant::now();
            let cfg = ReaderConfig {
                buffer_size: 256,
                max_block_size: 1 << 20,
                ..ReaderConfig::default()
            };
            let _ = read_bytes(b, &cfg);
            assert!(t.elapsed() < Duration::from_secs(5), "{f}");
        }
    }
}

/// Found by fuzzing (capture_reader): pcap-parser accepts a Process
/// Information Block (type 0x80000001) declaring 4 to 11 bytes and subtracts
/// 12 from that length, which panicked with overflow checks on. Every
/// packet before such a block is read, then it is a `Corrupt` error.
#[test]
fn pcapng_block_shorter_than_its_header_is_corrupt_not_a_panic() {
    let packets = libpcap_tools::synth::packets(3, libpcap_tools::Timestamp(0));
    let spec = [libpcap_tools::InterfaceSpec::new(
        libpcap_tools::LinkType::ETHERNET,
    )];
    for big_endian in [false, true] {
        for declared in [10u32, 4, 11, 0] {
            let mut b = libpcap_tools::synth::pcapng_bytes(&packets, &spec, big_endian).unwrap();
            let at = b.len() as u64;
            let u32b = |v: u32| {
                if big_endian {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                }
            };
            b.extend_from_slice(&u32b(0x8000_0001));
            b.extend_from_slice(&u32b(declared));
            b.extend_from_slice(&[0u8; 16]);
            for cfg in [
                ReaderConfig::default(),
                ReaderConfig {
                    buffer_size: 64,
                    ..ReaderConfig::default()
                },
            ] {
                let r = read_bytes(b.clone(), &cfg).unwrap();
                assert_eq!(r.packets.len(), 3, "{big_endian} {declared}");
                match &r.error {
                    Some(Error::Corrupt { offset, reason, .. }) => {
                        assert_eq!(*offset, at, "{big_endian} {declared}");
                        assert!(
                            reason.contains(&format!("invalid length {declared}")),
                            "{reason}"
                        );
                    }
                    other => panic!("{big_endian} {declared}: {other:?}"),
                }
            }
        }
    }
}
