//! Rewrite throughput (MB/s of input): copy (pcap -> pcap), conversion to
//! pcapng, a port filter and conversion to raw IP.
//!
//! The input is `PAL_BENCH_PCAP` when set (e.g. the output of
//! `python3 ../shared/bench/gen-pcap.py --packets 1000000 --out /tmp/rw1m.pcap`),
//! else 200k synthetic packets written to a temporary file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use libpcap_tools::{LinkType, PcapWriter, PcapWriterOptions, Timestamp, synth};
use pcap_rewrite::convert::{ConvertConfig, TargetLink};
use pcap_rewrite::filter::{FilterSet, Rule};
use pcap_rewrite::output::OutputFormat;
use pcap_rewrite::{Options, rewrite};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

fn make_file(path: &Path) {
    let f = BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = PcapWriter::new(f, LinkType::ETHERNET, PcapWriterOptions::default()).unwrap();
    let mut written = 0;
    while written < 200_000 {
        for p in synth::packets(
            10_000,
            Timestamp::from_secs_nanos(1_700_000_000 + written, 0),
        ) {
            w.write_packet(&p.as_packet()).unwrap();
        }
        written += 10_000;
    }
    w.finish().unwrap();
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let input: PathBuf = match std::env::var_os("PAL_BENCH_PCAP") {
        Some(p) => PathBuf::from(p),
        None => {
            let p = dir.path().join("in.pcap");
            make_file(&p);
            p
        }
    };
    let size = std::fs::metadata(&input).unwrap().len();
    let out = dir.path().join("out");
    let cases: Vec<(&str, Options)> = vec![
        ("copy_pcap", Options::default()),
        (
            "to_pcapng",
            Options {
                output_format: Some(OutputFormat::PcapNg),
                ..Options::default()
            },
        ),
        (
            "filter_port_443",
            Options {
                filter: FilterSet {
                    keep: vec![Rule::parse("port=443").unwrap()],
                    ..FilterSet::default()
                },
                ..Options::default()
            },
        ),
        (
            "link_raw",
            Options {
                convert: ConvertConfig {
                    to: Some(TargetLink::Raw),
                    ..ConvertConfig::default()
                },
                ..Options::default()
            },
        ),
    ];
    let mut g = c.benchmark_group("rewrite");
    g.throughput(Throughput::Bytes(size));
    g.sample_size(10);
    for (name, opts) in &cases {
        g.bench_function(*name, |b| b.iter(|| rewrite(&input, &out, opts).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
