//! The `tls` plugin on handshakes whose messages span many TLS records.
//!
//! Every case feeds one connection to the plugin through its public
//! [`Plugin::handle_stream`] in TCP segments of 1460 bytes, then ends the
//! flow; throughput is over the bytes of both directions.
//!
//! * `hello_pair`: a ClientHello and a ServerHello of ~100 bytes, each in
//!   one record and one segment (the common case: nothing spans anything).
//! * `server_flight_200k`: the server's first flight as servers send it, one
//!   handshake stream cut into 16 KiB records: ServerHello, a 200 KB
//!   Certificate, ServerHelloDone. The ServerHello shares its record with the
//!   start of the Certificate, so its message group ends only with the
//!   Certificate.
//! * `client_hello_64b_records`: a ClientHello padded to ~60 KB (a padding
//!   extension, RFC 7685) cut into records of 64 bytes.
//! * `client_hello_1b_records`: a ClientHello padded to ~40 KB cut into
//!   records of 1 byte (6 bytes on the wire per byte of message).
//!
//! Run: `cargo bench -p libpcap-analyzer --bench tls`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use libpcap_analyzer::build::{tls_client_hello, tls_server_hello};
use libpcap_analyzer::plugin::{EndReason, PacketContext, Plugin, PluginBuilder as _, StreamData};
use libpcap_analyzer::plugins::tls::TlsPluginBuilder;
use libpcap_tools::{Config, Direction, FiveTuple, Flow, FlowContext, FlowId, Packet};
use std::hint::black_box;
use std::time::Duration;

const SEGMENT: usize = 1460;

/// The handshake message inside a one-record hello made by the builder.
fn message(record: &[u8]) -> Vec<u8> {
    record[5..].to_vec()
}

/// A handshake message header and body.
fn handshake(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![msg_type];
    v.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    v.extend_from_slice(body);
    v
}

/// `payload` cut into records of `ctype` carrying at most `chunk` bytes each.
fn records(ctype: u8, payload: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload.len() / chunk * 5 + 5);
    for c in payload.chunks(chunk) {
        out.extend_from_slice(&[ctype, 3, 3]);
        out.extend_from_slice(&(c.len() as u16).to_be_bytes());
        out.extend_from_slice(c);
    }
    out
}

/// The builder's ClientHello message with a padding extension (type 21)
/// of `pad` zero bytes appended to its extensions.
fn padded_client_hello(pad: usize) -> Vec<u8> {
    let mut m = message(&tls_client_hello("bench.example", &["h2", "http/1.1"]));
    // legacy_version 2, random 32, session id 1, 3 suites 2+6, compression 2
    let ext_len_at = 4 + 2 + 32 + 1 + 8 + 2;
    let ext_len = u16::from_be_bytes([m[ext_len_at], m[ext_len_at + 1]]) as usize;
    m.extend_from_slice(&21u16.to_be_bytes());
    m.extend_from_slice(&(pad as u16).to_be_bytes());
    m.resize(m.len() + pad, 0);
    let new_ext = (ext_len + 4 + pad) as u16;
    m[ext_len_at..ext_len_at + 2].copy_from_slice(&new_ext.to_be_bytes());
    let body_len = (m.len() - 4) as u32;
    m[1..4].copy_from_slice(&body_len.to_be_bytes()[1..]);
    m
}

/// ServerHello, a Certificate of `cert` bytes, ServerHelloDone, as one
/// handshake stream cut into records of 16 KiB.
fn server_flight(cert: usize) -> Vec<u8> {
    let mut hs = message(&tls_server_hello(0xc02f, Some("h2")));
    let mut body = Vec::with_capacity(cert);
    let chain = cert - 3;
    body.extend_from_slice(&(chain as u32).to_be_bytes()[1..]);
    body.extend((0..chain).map(|i| (i % 251) as u8));
    hs.extend(handshake(11, &body));
    hs.extend(handshake(14, &[]));
    records(22, &hs, 1 << 14)
}

struct Case {
    name: &'static str,
    client: Vec<u8>,
    server: Vec<u8>,
}

fn run(case: &Case, config: &Config) -> Box<dyn Plugin> {
    let mut p = TlsPluginBuilder.build(config).unwrap();
    let pkt = Packet::pseudo(None);
    let ctx = PacketContext::new(&pkt, FlowContext::default());
    let flow = Flow::new(FlowId(1), FiveTuple::default(), FlowContext::default());
    for (dir, stream) in [
        (Direction::ToServer, &case.client),
        (Direction::ToClient, &case.server),
    ] {
        let mut offset = 0u64;
        for seg in stream.chunks(SEGMENT) {
            p.handle_stream(&ctx, &flow, dir, StreamData::Data { offset, data: seg })
                .unwrap();
            offset += seg.len() as u64;
        }
    }
    p.flow_destroyed(&flow, EndReason::EndOfInput).unwrap();
    p
}

/// Runs `case` once writing `tls.jsonl`, and checks that both hellos are in it.
fn check(case: &Case) {
    let dir = tempfile::tempdir().unwrap();
    let config =
        Config::from_toml(&format!("[output]\ndir = \"{}\"\n", dir.path().display())).unwrap();
    let mut p = run(case, &config);
    p.save_results(dir.path()).unwrap();
    let text = std::fs::read_to_string(dir.path().join("tls.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(
        line["client_hello"]["sni"], "bench.example",
        "{}",
        case.name
    );
    assert_eq!(line["server_hello"]["alpn"], "h2", "{}", case.name);
}

fn bench(c: &mut Criterion) {
    let small_client = tls_client_hello("bench.example", &["h2"]);
    let small_server = tls_server_hello(0xc02f, Some("h2"));
    let cases = [
        Case {
            name: "hello_pair",
            client: small_client.clone(),
            server: small_server.clone(),
        },
        Case {
            name: "server_flight_200k",
            client: small_client.clone(),
            server: server_flight(200_000),
        },
        Case {
            name: "client_hello_64b_records",
            client: records(22, &padded_client_hello(60_000), 64),
            server: small_server.clone(),
        },
        Case {
            name: "client_hello_1b_records",
            client: records(22, &padded_client_hello(40_000), 1),
            server: small_server.clone(),
        },
    ];
    let mut g = c.benchmark_group("tls_plugin");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(4));
    let config = Config::new();
    for case in &cases {
        // every case must find both hellos, or it measures the wrong thing
        check(case);
        g.throughput(Throughput::Bytes(
            (case.client.len() + case.server.len()) as u64,
        ));
        g.bench_function(case.name, |b| {
            b.iter(|| black_box(run(black_box(case), &config).results()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
