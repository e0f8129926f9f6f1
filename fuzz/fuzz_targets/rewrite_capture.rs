//! Arbitrary bytes as the input of `pcap-rewrite`: the first byte picks the
//! options (output format, link conversion, VLAN strip, decapsulation,
//! checksum fixing, a keep rule needing ports or not, per-flow split with
//! tiny caps, tiny fragment caps), the rest is the capture file. Whatever
//! the input, a rewrite that succeeds must have written readable captures
//! holding exactly the packets it says it wrote.

#![no_main]

use libfuzzer_sys::fuzz_target;
use libpcap_tools::{CaptureReader, ReaderConfig};
use pcap_rewrite::convert::{ConvertConfig, TargetLink};
use pcap_rewrite::filter::{FilterSet, Rule};
use pcap_rewrite::frag::{FragConfig, OrphanPolicy};
use pcap_rewrite::output::{OutputFormat, SplitBy, SplitConfig};
use pcap_rewrite::{Options, rewrite};
use std::path::Path;

const RULES: [&str; 4] = [
    "dport=53",
    "proto=17&net=10.0.0.0/8",
    "port=443",
    "src=10.0.0.1",
];

fn options(setup: u8) -> Options {
    let b = |i: u8| setup & (1 << i) != 0;
    Options {
        other_inputs: Vec::new(),
        output_format: Some(match setup & 3 {
            0 => OutputFormat::Pcap,
            1 => OutputFormat::PcapNs,
            _ => OutputFormat::PcapNg,
        }),
        convert: ConvertConfig {
            to: match (setup >> 2) & 3 {
                1 => Some(TargetLink::Raw),
                2 => Some(TargetLink::Ethernet),
                _ => None,
            },
            strip_vlan: b(4),
            decap: b(5),
            fix_checksums: b(4) && b(5),
        },
        filter: FilterSet {
            keep: if b(6) {
                let rule = RULES[usize::from(setup >> 4) % RULES.len()];
                Rule::parse(rule).into_iter().collect()
            } else {
                Vec::new()
            },
            ..FilterSet::default()
        },
        frag: FragConfig {
            max_buffered: 3,
            max_datagrams: 2,
            timeout_ns: 1_000_000_000,
            orphans: if b(2) {
                OrphanPolicy::Keep
            } else {
                OrphanPolicy::Evaluate
            },
        },
        split: b(7).then_some(SplitConfig {
            by: SplitBy::Flow,
            max_open: 2,
            max_files: 4,
        }),
        reader: ReaderConfig {
            buffer_size: 64,
            max_block_size: 1 << 20,
            shared_chunks: false,
        },
        write_buffer: 4096,
        // the BPF term has its own target (bpf_program)
        bpf: None,
    }
}

/// Packets in every capture at `path` (a file, or the files of a split
/// directory); every one must read to its end without an error.
fn packets_in(path: &Path) -> u64 {
    if path.is_dir() {
        let mut n = 0;
        for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
            n += packets_in(&e.path());
        }
        return n;
    }
    let mut r = CaptureReader::open(path, &ReaderConfig::default())
        .unwrap_or_else(|e| panic!("our output {} does not open: {e}", path.display()));
    let mut n = 0;
    loop {
        match r.next_packet() {
            Ok(Some(_)) => n += 1,
            Ok(None) => return n,
            Err(e) => panic!("our output {} is unreadable: {e}", path.display()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&setup, capture)) = data.split_first() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("pal-fuzz-rw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let input = dir.join("in.pcap");
    if std::fs::write(&input, capture).is_err() {
        return;
    }
    let opts = options(setup);
    let output = if opts.split.is_some() {
        dir.join("split")
    } else {
        dir.join("out")
    };
    if let Ok(s) = rewrite(&input, &output, &opts) {
        assert_eq!(
            s.packets_read,
            s.packets_written
                + s.dropped_by_filter
                + s.skipped_unreadable
                + s.skipped_unconvertible
                + s.skipped_unwritable,
            "{s:?}"
        );
        assert_eq!(packets_in(&output), s.packets_written, "{s:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
});
