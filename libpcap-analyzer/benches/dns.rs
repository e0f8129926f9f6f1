//! DNS messages decoded per second.
//!
//! * `dns_parse`: `parse_dns_message` on a fixed set of realistic messages
//!   built here (queries with and without EDNS, responses with 1-4 A/AAAA
//!   answers behind a compression pointer, NXDOMAIN with SOA, a CNAME chain,
//!   a referral with NS + glue and a DNSSEC-sized RRSIG, TXT).
//! * `dns_engine`: the whole engine with only the `dns` plugin (no output
//!   directory) over the capture named by `PAL_DNS_PCAP`, with 1 and 2
//!   workers; skipped when the variable is unset. Make the file with
//!   `python3 /work/shared/bench/gen-pcap.py --mix dns --packets 200000
//!   --flows 60000 --out /tmp/dns-200k.pcap --quiet`.
//!
//! Run: `PAL_DNS_PCAP=/tmp/dns-200k.pcap cargo bench -p libpcap-analyzer --bench dns`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use libpcap_analyzer::Engine;
use libpcap_analyzer::plugins::builtin_registry;
use libpcap_analyzer::proto::dns::parse_dns_message;
use libpcap_tools::{CaptureReader, Config, ReaderConfig};
use std::hint::black_box;
use std::path::Path;

fn name(n: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for l in n.split('.').filter(|l| !l.is_empty()) {
        v.push(l.len() as u8);
        v.extend_from_slice(l.as_bytes());
    }
    v.push(0);
    v
}

fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut v = Vec::with_capacity(512);
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        v.extend_from_slice(&c.to_be_bytes());
    }
    v
}

fn rr(m: &mut Vec<u8>, owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) {
    m.extend_from_slice(owner);
    m.extend_from_slice(&rtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&ttl.to_be_bytes());
    m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    m.extend_from_slice(rdata);
}

fn opt(m: &mut Vec<u8>, options: &[u8]) {
    m.push(0);
    m.extend_from_slice(&41u16.to_be_bytes());
    m.extend_from_slice(&1232u16.to_be_bytes());
    m.extend_from_slice(&0u32.to_be_bytes());
    m.extend_from_slice(&(options.len() as u16).to_be_bytes());
    m.extend_from_slice(options);
}

fn query(id: u16, qname: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut m = header(id, 0x0100, [1, 0, 0, u16::from(edns)]);
    m.extend(name(qname));
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    if edns {
        opt(&mut m, &[]);
    }
    m
}

/// The set of messages parsed by `dns_parse`, roughly in the proportions of
/// a resolver's traffic: half queries, half responses.
fn messages() -> Vec<Vec<u8>> {
    let ptr = [0xc0, 0x0c];
    let mut out = vec![
        query(1, "www.example.com", 1, false),
        query(2, "cdn.images.example.net", 28, true),
        query(3, "mail.example.org", 15, false),
        query(4, "a1b2c3.tracker.example.io", 1, true),
    ];
    // A response, 1 answer
    let mut m = header(1, 0x8180, [1, 1, 0, 0]);
    m.extend(name("www.example.com"));
    m.extend_from_slice(&[0, 1, 0, 1]);
    rr(&mut m, &ptr, 1, 300, &[93, 184, 216, 34]);
    out.push(m);
    // AAAA response, 4 answers, EDNS
    let mut m = header(2, 0x8180, [1, 4, 0, 1]);
    m.extend(name("cdn.images.example.net"));
    m.extend_from_slice(&[0, 28, 0, 1]);
    for i in 0..4u8 {
        let mut a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        a[15] = i + 1;
        rr(&mut m, &ptr, 28, 60, &a);
    }
    opt(&mut m, &[]);
    out.push(m);
    // NXDOMAIN with SOA
    let mut m = header(4, 0x8183, [1, 0, 1, 1]);
    m.extend(name("a1b2c3.tracker.example.io"));
    m.extend_from_slice(&[0, 1, 0, 1]);
    let mut soa = name("ns1.example.io");
    soa.extend(name("hostmaster.example.io"));
    for v in [2024010101u32, 7200, 3600, 1209600, 300] {
        soa.extend_from_slice(&v.to_be_bytes());
    }
    rr(&mut m, &[0xc0, 0x1b], 6, 900, &soa); // example.io at 12 + 15
    opt(&mut m, &[]);
    out.push(m);
    // CNAME chain then 2 A
    let mut m = header(5, 0x8180, [1, 3, 0, 0]);
    m.extend(name("www.shop.example"));
    m.extend_from_slice(&[0, 1, 0, 1]);
    let mut cname = name("shop.edge");
    cname.truncate(cname.len() - 1);
    cname.extend_from_slice(&[0xc0, 0x10]); // shop.edge.example... -> "shop.example"
    let target = m.len() + 12;
    rr(&mut m, &ptr, 5, 60, &cname);
    let tptr = [0xc0 | (target >> 8) as u8, target as u8];
    rr(&mut m, &tptr, 1, 20, &[198, 51, 100, 7]);
    rr(&mut m, &tptr, 1, 20, &[198, 51, 100, 8]);
    out.push(m);
    // MX response
    let mut m = header(3, 0x8180, [1, 2, 0, 0]);
    m.extend(name("mail.example.org"));
    m.extend_from_slice(&[0, 15, 0, 1]);
    for (pref, host) in [(10u16, "mx1"), (20, "mx2")] {
        let mut mx = pref.to_be_bytes().to_vec();
        mx.push(3);
        mx.extend_from_slice(host.as_bytes());
        mx.extend_from_slice(&[0xc0, 0x11]); // example.org
        rr(&mut m, &ptr, 15, 3600, &mx);
    }
    out.push(m);
    // referral: 4 NS + 4 glue A + 2 glue AAAA, EDNS with a cookie
    let mut m = header(6, 0x8100, [1, 0, 4, 7]);
    m.extend(name("www.example.com"));
    m.extend_from_slice(&[0, 1, 0, 1]);
    let mut ns_at = Vec::new();
    for c in ["a", "b", "c", "d"] {
        // <c>.gtld-servers.com
        let mut ns = vec![1, c.as_bytes()[0], 12];
        ns.extend_from_slice(b"gtld-servers");
        ns.extend_from_slice(&[0xc0, 0x18]); // com
        ns_at.push(m.len() + 12);
        rr(&mut m, &[0xc0, 0x18], 2, 172800, &ns);
    }
    for (i, at) in ns_at.iter().enumerate() {
        let p = [0xc0 | (at >> 8) as u8, *at as u8];
        rr(&mut m, &p, 1, 172800, &[192, 5, 6, 30 + i as u8]);
    }
    for at in &ns_at[..2] {
        let p = [0xc0 | (at >> 8) as u8, *at as u8];
        rr(
            &mut m,
            &p,
            28,
            172800,
            &[0x20, 1, 5, 3, 0xa8, 0x3e, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0x30],
        );
    }
    let mut cookie = vec![0, 10, 0, 24];
    cookie.extend_from_slice(&[0x5a; 24]);
    opt(&mut m, &cookie);
    out.push(m);
    // signed answer: A + RRSIG (opaque RDATA), and TXT
    let mut m = header(7, 0x8580, [1, 3, 0, 0]);
    m.extend(name("signed.example"));
    m.extend_from_slice(&[0, 1, 0, 1]);
    rr(&mut m, &ptr, 1, 3600, &[203, 0, 113, 9]);
    let mut sig = vec![0, 1, 13, 2, 0, 0, 14, 16];
    sig.extend_from_slice(&[0x11; 8]);
    sig.extend_from_slice(&[0x30, 0x39]);
    sig.extend(name("example"));
    sig.extend_from_slice(&[0x42; 64]);
    rr(&mut m, &ptr, 46, 3600, &sig);
    let mut txt = vec![21];
    txt.extend_from_slice(b"v=spf1 -all include:");
    txt.push(b'x');
    rr(&mut m, &ptr, 16, 300, &txt);
    out.push(m);
    for m in &out {
        parse_dns_message(m).unwrap_or_else(|e| panic!("bench message does not parse: {e}"));
    }
    out
}

fn bench_parse(c: &mut Criterion) {
    let msgs = messages();
    let mut g = c.benchmark_group("dns_parse");
    g.throughput(Throughput::Elements(msgs.len() as u64));
    g.bench_function("parse_dns_message", |b| {
        b.iter(|| {
            let mut answers = 0usize;
            for m in &msgs {
                answers += parse_dns_message(black_box(m)).unwrap().answers.len();
            }
            answers
        })
    });
    g.finish();
}

/// Runs the engine with only `dns` and returns the plugin's message count.
fn run_engine(path: &Path, jobs: usize) -> u64 {
    let config = Config::from_toml("").unwrap();
    let registry = builtin_registry();
    let names = vec!["dns".to_string()];
    let factory = || registry.build(&names, &config);
    let engine = Engine::new(&config, jobs).unwrap();
    let mut reader = CaptureReader::open(path, &ReaderConfig::default()).unwrap();
    let out = engine.run(&factory, &mut reader).unwrap();
    let r = out.plugin("dns").unwrap().results().unwrap();
    r["messages"].as_u64().unwrap()
}

fn bench_engine(c: &mut Criterion) {
    let Some(path) = std::env::var_os("PAL_DNS_PCAP") else {
        eprintln!("dns_engine: PAL_DNS_PCAP not set, skipped");
        return;
    };
    let path = Path::new(&path);
    if !path.is_file() {
        eprintln!("dns_engine: {} not found, skipped", path.display());
        return;
    }
    let messages = run_engine(path, 1);
    let mut g = c.benchmark_group("dns_engine");
    g.sample_size(10);
    g.throughput(Throughput::Elements(messages));
    for jobs in [1, 2] {
        g.bench_function(format!("jobs_{jobs}"), |b| {
            b.iter(|| assert_eq!(run_engine(path, jobs), messages))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_parse, bench_engine);
criterion_main!(benches);
