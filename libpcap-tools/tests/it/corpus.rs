//! Every capture of the corpus is read with the packet count and the
//! first/last timestamps of MANIFEST.tsv.

use crate::common::{ReadAll, corpus_dir, manifest, read_bytes, read_path};
use libpcap_tools::ReaderConfig;
use std::io::Read;

/// Files where tshark's `frame.time_epoch` (the MANIFEST columns) is not what
/// the format specification gives; we check our value instead. Each entry:
/// (path, which end, our value, why).
const TIME_EXCEPTIONS: &[(&str, &str, &str, &str)] = &[
    // tshark refuses these files (version / link type checks), so the
    // MANIFEST has no time; we read them (see the reader's "Decisions").
    (
        "formats/libpcap_pcap-invalid-version-1.pcap",
        "first",
        "1338986423.226395000",
        "pcap version 1.4 refused by tshark",
    ),
    (
        "formats/libpcap_pcap-invalid-version-1.pcap",
        "last",
        "1338986423.226395000",
        "pcap version 1.4 refused by tshark",
    ),
    (
        "formats/libpcap_pcapng-invalid-vers-1.pcapng",
        "first",
        "1392902931.311277000",
        "SHB version 0.1 refused by tshark",
    ),
    (
        "formats/libpcap_pcapng-invalid-vers-1.pcapng",
        "last",
        "1392902931.311277000",
        "SHB version 0.1 refused by tshark",
    ),
    (
        "formats/libpcap_pcapng-invalid-vers-2.pcapng",
        "first",
        "1392902931.311277000",
        "SHB version 1.1 refused by tshark",
    ),
    (
        "formats/libpcap_pcapng-invalid-vers-2.pcapng",
        "last",
        "1392902931.311277000",
        "SHB version 1.1 refused by tshark",
    ),
    (
        "linktypes/tcpdump_brcm-tag.pcap",
        "first",
        "7820.634030000",
        "link type 281 unknown to tshark 4.0",
    ),
    (
        "linktypes/tcpdump_brcm-tag.pcap",
        "last",
        "7838.321602000",
        "link type 281 unknown to tshark 4.0",
    ),
    (
        "linktypes/tcpdump_dsa.pcap",
        "first",
        "80499.544060000",
        "link type 284 unknown to tshark 4.0",
    ),
    (
        "linktypes/tcpdump_dsa.pcap",
        "last",
        "80504.560415000",
        "link type 284 unknown to tshark 4.0",
    ),
    // the EPB timestamp is 0x3030303030303030 microseconds: beyond i64
    // nanoseconds, so it saturates (tshark refuses the damaged SHB)
    (
        "formats/libpcap_shb-option-too-long.pcapng",
        "first",
        "9223372036.854775807",
        "saturated",
    ),
    (
        "formats/libpcap_shb-option-too-long.pcapng",
        "last",
        "9223372036.854775807",
        "saturated",
    ),
    // out-of-range sub-second fields: the format says ts = sec + usec/1e6
    // (or nsec/1e9), which we compute as stored; tshark prints a clamped or
    // sign-garbled value for them
    (
        "formats/tcpdump_timestamp_invalid_micro.pcap",
        "last",
        "1418147517.483648000",
        "usec = 2147483648",
    ),
    (
        "formats/tcpdump_timestamp_invalid_nano.pcap",
        "last",
        "1418145372.147483648",
        "nsec = 2147483648",
    ),
    // tshark decodes a second record from a header declaring caplen
    // 1409179648 (over our 256 MiB cap: BlockTooLarge after 1 packet), and
    // reads its seconds field as signed
    (
        "formats/suricata_bug-6875-01_fuzz.pcap",
        "last",
        "1508525002.992213000",
        "second record is corrupt",
    ),
    // no complete record, see COUNT_EXCEPTIONS
    (
        "formats/ndpi_fuzz-2021-10-13.pcap",
        "first",
        "",
        "no complete record",
    ),
    (
        "formats/ndpi_fuzz-2021-10-13.pcap",
        "last",
        "",
        "no complete record",
    ),
];

/// Files whose count differs from the MANIFEST on purpose: (path, our count, why).
const COUNT_EXCEPTIONS: &[(&str, u64, &str)] = &[
    // the only record declares caplen 524501 but 215 bytes follow the file
    // header: by the format there is no complete record, so 0 packets and
    // Error::Truncated. Wiretap hands out the partial record as packet 1.
    (
        "formats/ndpi_fuzz-2021-10-13.pcap",
        0,
        "single record cut short",
    ),
];

/// Time of the first (or last) record that has one: tshark prints no
/// `frame.time_epoch` for a Simple Packet Block, so the MANIFEST columns are
/// those of the first/last timestamped record.
fn epoch(r: &ReadAll, last: bool) -> String {
    let mut it = r.packets.iter().filter_map(|p| p.ts);
    let t = if last { it.next_back() } else { it.next() };
    t.map(|t| t.to_string()).unwrap_or_default()
}

#[test]
fn corpus_counts_and_timestamps() {
    let Some(dir) = corpus_dir() else { return };
    let cfg = ReaderConfig::default();
    let mut failures = Vec::new();
    let mut checked = 0;
    for e in manifest(&dir) {
        let path = dir.join(&e.path);
        let r = match read_path(&path, &cfg) {
            Ok(r) => r,
            Err(err) => {
                if e.packets != 0 {
                    failures.push(format!("{}: open failed: {err}", e.path));
                }
                continue;
            }
        };
        checked += 1;
        let n = r.packets.len() as u64;
        let want_n = COUNT_EXCEPTIONS
            .iter()
            .find(|x| x.0 == e.path)
            .map_or(e.packets, |x| x.1);
        if n != want_n {
            failures.push(format!(
                "{}: {n} packets, manifest {} (end: {:?})",
                e.path, e.packets, r.error
            ));
        }
        for (last, want) in [(false, &e.first_epoch), (true, &e.last_epoch)] {
            let which = if last { "last" } else { "first" };
            let got = epoch(&r, last);
            let want = TIME_EXCEPTIONS
                .iter()
                .find(|x| x.0 == e.path && x.1 == which)
                .map_or(want.as_str(), |x| x.2);
            if got != want {
                failures.push(format!(
                    "{}: {which} ts {got:?}, manifest {want:?} ({})",
                    e.path, e.format
                ));
            }
        }
        if let Some(err) = &r.error
            && e.capinfos_note.is_empty()
        {
            failures.push(format!("{}: error {err} on a file capinfos reads", e.path));
        }
        // a tiny initial buffer (it grows) reads the same
        let small = ReaderConfig {
            buffer_size: 64,
            max_block_size: cfg.max_block_size,
            ..ReaderConfig::default()
        };
        let s = read_path(&path, &small).unwrap();
        if s.packets != r.packets || format!("{:?}", s.error) != format!("{:?}", r.error) {
            failures.push(format!(
                "{}: reads differently with a 64-byte buffer: {:?}",
                e.path, s.error
            ));
        }
        // .gz files: the decompressed bytes read the same
        if e.path.ends_with(".gz") {
            let mut plain = Vec::new();
            flate2::read::MultiGzDecoder::new(std::fs::File::open(&path).unwrap())
                .read_to_end(&mut plain)
                .unwrap();
            let p = read_bytes(plain, &cfg).unwrap();
            if p.packets != r.packets {
                failures.push(format!("{}: decompressed copy reads differently", e.path));
            }
        }
    }
    for f in &failures {
        eprintln!("FAIL {f}");
    }
    assert!(checked > 250, "only {checked} files read");
    assert!(failures.is_empty(), "{} failures", failures.len());
}

/// The block callback sees the non-packet blocks of the pcapng files, in
/// order, each with its whole raw bytes.
#[test]
fn corpus_pcapng_blocks_reach_the_callback() {
    use libpcap_tools::{CaptureFormat, CaptureReader};
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};
    let Some(dir) = corpus_dir() else { return };
    let types: Arc<Mutex<BTreeSet<u32>>> = Arc::default();
    for e in manifest(&dir) {
        let Ok(mut r) = CaptureReader::open(&dir.join(&e.path), &ReaderConfig::default()) else {
            continue;
        };
        if r.format() != CaptureFormat::PcapNg {
            continue;
        }
        let t2 = types.clone();
        let last_end = Arc::new(Mutex::new(0u64));
        let path = e.path.clone();
        r.set_block_callback(Box::new(move |b| {
            let mut end = last_end.lock().unwrap();
            assert!(
                b.offset >= *end,
                "{path}: block at {} before {}",
                b.offset,
                *end
            );
            let len = if b.big_endian {
                u32::from_be_bytes(b.raw[4..8].try_into().unwrap())
            } else {
                u32::from_le_bytes(b.raw[4..8].try_into().unwrap())
            };
            assert_eq!(len as usize, b.raw.len(), "{path}");
            *end = b.offset + b.raw.len() as u64;
            t2.lock().unwrap().insert(b.block_type);
        }));
        while let Ok(Some(_)) = r.next_packet() {}
    }
    let types = types.lock().unwrap();
    for t in [0x0A0D_0D0A, 1, 4, 5, 0xA, 0xBAD, 0x4000_0BAD] {
        assert!(
            types.contains(&t),
            "block type {t:#x} never seen: {types:x?}"
        );
    }
    eprintln!("block types seen: {types:x?}");
}
