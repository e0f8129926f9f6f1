//! Reader throughput: our `CaptureReader` against a bare pcap-parser
//! `LegacyPcapReader` loop, on a classic pcap file of 200k packets of mixed
//! sizes written with our writer into a temporary file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use libpcap_tools::{
    CaptureReader, LinkType, PcapWriter, PcapWriterOptions, ReaderConfig, Timestamp, synth,
};
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{LegacyPcapReader, PcapBlockOwned, PcapError};
use std::io::BufWriter;
use std::path::Path;

const PACKETS: usize = 200_000;

fn make_file(path: &Path) {
    let f = BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = PcapWriter::new(f, LinkType::ETHERNET, PcapWriterOptions::default()).unwrap();
    // write the synthetic set in chunks to keep memory low
    let mut written = 0;
    while written < PACKETS {
        let n = (PACKETS - written).min(10_000);
        for p in synth::packets(
            n,
            Timestamp::from_secs_nanos(1_700_000_000 + written as i64, 0),
        ) {
            w.write_packet(&p.as_packet()).unwrap();
        }
        written += n;
    }
    w.finish().unwrap();
}

fn pal(path: &Path) -> (u64, u64) {
    let mut r = CaptureReader::open(path, &ReaderConfig::default()).unwrap();
    let (mut n, mut sum) = (0u64, 0u64);
    while let Some(p) = r.next_packet().unwrap() {
        n += 1;
        sum += u64::from(p.origlen);
    }
    (n, sum)
}

fn bare(path: &Path) -> (u64, u64) {
    let f = std::fs::File::open(path).unwrap();
    let mut r = LegacyPcapReader::new(1 << 20, f).unwrap();
    let (mut n, mut sum) = (0u64, 0u64);
    loop {
        match r.next() {
            Ok((off, block)) => {
                if let PcapBlockOwned::Legacy(b) = block {
                    n += 1;
                    sum += u64::from(b.origlen);
                }
                r.consume(off);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => r.refill().unwrap(),
            Err(e) => panic!("{e:?}"),
        }
    }
    (n, sum)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.pcap");
    make_file(&path);
    let bytes = std::fs::metadata(&path).unwrap().len();
    assert_eq!(pal(&path), bare(&path));

    let mut g = c.benchmark_group("read_bytes");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("pal", |b| b.iter(|| pal(&path)));
    g.bench_function("bare_pcap_parser", |b| b.iter(|| bare(&path)));
    g.finish();

    let mut g = c.benchmark_group("read_packets");
    g.sample_size(20);
    g.throughput(Throughput::Elements(PACKETS as u64));
    g.bench_function("pal", |b| b.iter(|| pal(&path)));
    g.bench_function("bare_pcap_parser", |b| b.iter(|| bare(&path)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
