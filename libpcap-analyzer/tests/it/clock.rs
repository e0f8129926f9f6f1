//! Capture time going back (issue 13): pcapng sections recorded out of
//! order, a clock stepped back inside one file, files given out of order.
//! Flows must not be torn apart, and expiry must go on after the step.
//! The semantics are in `libpcap_analyzer::clock`.

use libpcap_analyzer::plugin::{EndReason, Interest, Layers, Plugin, PluginResult, downcast};
use libpcap_analyzer::plugins::builtin_registry;
use libpcap_analyzer::{Engine, RunOutput, build};
use libpcap_tools::synth::MemorySource;
use libpcap_tools::{
    CaptureReader, Config, Flow, InterfaceSpec, LinkType, OwnedPacket, PacketSource, PcapNgWriter,
    PcapWriter, PcapWriterOptions, ReaderConfig, Timestamp,
};
use std::path::Path;

/// Every flow ended: protocol, packets both ways, end reason.
#[derive(Default)]
struct Ended(Vec<(u8, u64, EndReason)>);

impl Plugin for Ended {
    fn name(&self) -> &str {
        "ended"
    }
    fn interest(&self) -> Interest {
        Interest::new(Layers::FLOW_EVENTS)
    }
    fn flow_destroyed(&mut self, flow: &Flow, reason: EndReason) -> PluginResult<()> {
        let packets = flow.to_server.packets + flow.to_client.packets;
        self.0.push((flow.key.proto, packets, reason));
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        self.0.extend(downcast::<Self>("ended", other)?.0);
        Ok(())
    }
}

/// What a run gave: the flows ended (sorted), the TLS hellos per
/// connection, the anomalies.
#[derive(Debug, PartialEq)]
struct Outcome {
    ended: Vec<(u8, u64, EndReason)>,
    tls: Vec<serde_json::Value>,
    steps: u64,
}

fn run(source: &mut dyn PacketSource, jobs: usize) -> Outcome {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = Config::new();
    config.set("output", "dir", tmp.path().display().to_string());
    let registry = builtin_registry();
    let engine = Engine::new(&config, jobs).unwrap();
    let factory = || {
        let mut v = registry.build(&["tls".to_string()], &config)?;
        v.push(Box::new(Ended::default()) as Box<dyn Plugin>);
        Ok(v)
    };
    let mut out: RunOutput = engine.run(&factory, source).unwrap();
    out.save_results(tmp.path()).unwrap();
    let any: &dyn std::any::Any = out.plugin("ended").unwrap();
    let mut ended = any.downcast_ref::<Ended>().unwrap().0.clone();
    ended.sort_by_key(|(p, n, r)| (*p, *n, r.to_string()));
    // one `tls` record per hello, gathered per connection (in the order
    // of their first record): {"client_hello": …, "server_hello": …}
    let mut tls: Vec<serde_json::Value> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = Default::default();
    for l in std::fs::read_to_string(tmp.path().join("tls.jsonl"))
        .unwrap_or_default()
        .lines()
    {
        let r: serde_json::Value = serde_json::from_str(l).unwrap();
        let flow = r["flow_id"].as_str().unwrap().to_string();
        let i = *at.entry(flow).or_insert_with(|| {
            tls.push(serde_json::json!({}));
            tls.len() - 1
        });
        let hello = r["hello"].as_str().unwrap().to_string();
        tls[i][hello] = r;
    }
    Outcome {
        ended,
        tls,
        steps: out
            .stats
            .anomalies
            .get("clock_step_back")
            .copied()
            .unwrap_or(0),
    }
}

/// Frames with their capture times.
type Frames = Vec<(Timestamp, Vec<u8>)>;

fn secs(s: i64, ms: i64) -> Timestamp {
    Timestamp::from_secs_nanos(s, ms * 1_000_000)
}

/// A TCP connection from `port` to 443 with a TLS ClientHello and
/// ServerHello, 10 frames 20 ms apart from `t0` (as derived_two-sections).
fn tls_connection(port: u16, t0: Timestamp) -> Vec<(Timestamp, Vec<u8>)> {
    let (c, s) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let (a, b) = (build::MAC_A, build::MAC_B);
    let ch = build::tls_client_hello("example.org", &["h2"]);
    let sh = build::tls_server_hello(0x1301, Some("h2"));
    let (syn, ack, psh_ack, fin_ack) = (0x02, 0x10, 0x18, 0x11);
    let cl = ch.len() as u32;
    let sl = sh.len() as u32;
    let frames = vec![
        build::eth_tcp4(a, b, c, s, port, 443, 100, 0, syn, &[]),
        build::eth_tcp4(b, a, s, c, 443, port, 900, 101, syn | ack, &[]),
        build::eth_tcp4(a, b, c, s, port, 443, 101, 901, ack, &[]),
        build::eth_tcp4(a, b, c, s, port, 443, 101, 901, psh_ack, &ch),
        build::eth_tcp4(b, a, s, c, 443, port, 901, 101 + cl, ack, &[]),
        build::eth_tcp4(b, a, s, c, 443, port, 901, 101 + cl, psh_ack, &sh),
        build::eth_tcp4(a, b, c, s, port, 443, 101 + cl, 901 + sl, ack, &[]),
        build::eth_tcp4(a, b, c, s, port, 443, 101 + cl, 901 + sl, fin_ack, &[]),
        build::eth_tcp4(b, a, s, c, 443, port, 901 + sl, 102 + cl, fin_ack, &[]),
        build::eth_tcp4(a, b, c, s, port, 443, 102 + cl, 902 + sl, ack, &[]),
    ];
    frames
        .into_iter()
        .enumerate()
        .map(|(i, f)| (Timestamp(t0.0 + i as i64 * 20_000_000), f))
        .collect()
}

/// A UDP datagram from 10.0.0.5:`port` to 10.0.0.6:9999.
fn udp(port: u16, t: Timestamp) -> (Timestamp, Vec<u8>) {
    let f = build::eth_udp4(
        build::MAC_A,
        build::MAC_B,
        None,
        [10, 0, 0, 5],
        [10, 0, 0, 6],
        port,
        9999,
        b"x",
    );
    (t, f)
}

fn owned(frames: &[(Timestamp, Vec<u8>)]) -> Vec<OwnedPacket> {
    frames
        .iter()
        .enumerate()
        .map(|(i, (t, data))| OwnedPacket {
            index: i as u64,
            interface: 0,
            linktype: LinkType::ETHERNET,
            ts: Some(*t),
            origlen: data.len() as u32,
            data: data.clone(),
        })
        .collect()
}

const T0: i64 = 1_742_291_025;

/// Before the step: one datagram at T0. After it (a day earlier): a TLS
/// connection, then UDP flows that show expiry still works: port 7000 idle
/// 120 s between its two datagrams (two flows, the first ended by timeout),
/// port 7001 idle 30 s (one flow).
fn stepped() -> (Frames, Frames) {
    let before = vec![udp(6000, secs(T0, 0))];
    let t1 = T0 - 86_400;
    let mut after = tls_connection(40000, secs(t1, 0));
    after.push(udp(7000, secs(t1 + 1, 0)));
    after.push(udp(7001, secs(t1 + 1, 0)));
    after.push(udp(7001, secs(t1 + 31, 0)));
    after.push(udp(7000, secs(t1 + 121, 0)));
    (before, after)
}

/// The expected outcome of [`stepped`]: flows whole, one TLS connection
/// with both hellos, timeouts after the step counted on the run's clock
/// (which goes on from T0): port 6000 (idle since T0) and the first 7000
/// flow time out, and 7001 (last seen 90 s before the end) too; the second
/// 7000 datagram ends with the input.
fn check_stepped(o: &Outcome, what: &str) {
    use EndReason::*;
    let expected = vec![
        (6, 10, Fin),
        (17, 1, EndOfInput),
        (17, 1, Timeout),
        (17, 1, Timeout),
        (17, 2, Timeout),
    ];
    assert_eq!(o.ended, expected, "{what}");
    assert_eq!(o.tls.len(), 1, "{what}");
    assert!(o.tls[0]["client_hello"].is_object(), "{what}: {:?}", o.tls);
    assert!(o.tls[0]["server_hello"].is_object(), "{what}: {:?}", o.tls);
    assert_eq!(o.steps, 1, "{what}");
}

#[test]
fn a_second_pcapng_section_recorded_earlier_keeps_its_flows_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("two-sections.pcapng");
    let (before, after) = stepped();
    let mut w = PcapNgWriter::new(std::fs::File::create(&path).unwrap(), false).unwrap();
    w.add_interface(&InterfaceSpec::new(LinkType::ETHERNET))
        .unwrap();
    for p in owned(&before) {
        w.write_packet(&p.as_packet()).unwrap();
    }
    w.new_section(false).unwrap();
    w.add_interface(&InterfaceSpec::new(LinkType::ETHERNET))
        .unwrap();
    for p in owned(&after) {
        w.write_packet(&p.as_packet()).unwrap();
    }
    w.finish().unwrap();
    let mut results = Vec::new();
    for jobs in [1, 2] {
        let mut r = CaptureReader::open(&path, &ReaderConfig::default()).unwrap();
        let o = run(&mut r, jobs);
        check_stepped(&o, &format!("pcapng, -j {jobs}"));
        results.push(o);
    }
    assert_eq!(results[0], results[1]);
}

#[test]
fn a_clock_stepped_back_inside_one_pcap_file_keeps_its_flows_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("stepped.pcap");
    let (mut all, after) = stepped();
    all.extend(after);
    let file = std::fs::File::create(&path).unwrap();
    let mut w = PcapWriter::new(file, LinkType::ETHERNET, PcapWriterOptions::default()).unwrap();
    for p in owned(&all) {
        w.write_packet(&p.as_packet()).unwrap();
    }
    w.finish().unwrap();
    for jobs in [1, 2] {
        let mut r = CaptureReader::open(&path, &ReaderConfig::default()).unwrap();
        check_stepped(&run(&mut r, jobs), &format!("pcap, -j {jobs}"));
    }
}

#[test]
fn files_given_out_of_order_keep_their_flows_whole() {
    // file A: a TLS connection at T0; file B an hour later. Read B then A,
    // as `pcap-analyzer B A` does (one stream, interface 0 in both)
    let a = tls_connection(40000, secs(T0, 0));
    let b = tls_connection(40001, secs(T0 + 3600, 0));
    let mut frames = b.clone();
    frames.extend(a.clone());
    for jobs in [1, 2] {
        let o = run(&mut MemorySource::new(owned(&frames)), jobs);
        assert_eq!(o.ended, vec![(6, 10, EndReason::Fin); 2], "-j {jobs}");
        assert_eq!(o.tls.len(), 2, "-j {jobs}");
        for t in &o.tls {
            assert!(t["server_hello"].is_object(), "-j {jobs}: {t}");
        }
        assert_eq!(o.steps, 1, "-j {jobs}");
    }
    // in order: the same flows, no step
    let mut in_order = a;
    in_order.extend(b);
    let o = run(&mut MemorySource::new(owned(&in_order)), 1);
    assert_eq!(o.ended, vec![(6, 10, EndReason::Fin); 2]);
    assert_eq!(o.steps, 0);
}

#[test]
fn packets_slightly_out_of_order_are_no_step() {
    // two interfaces interleaved, the second 300 ms behind: no step, and
    // the flows are those of a capture in order
    let mut frames = owned(&tls_connection(40000, secs(T0, 0)));
    for (i, p) in frames.iter_mut().enumerate() {
        if i % 2 == 1 {
            p.interface = 1;
            p.ts = p.ts.map(|t| Timestamp(t.0 - 300_000_000));
        }
    }
    let o = run(&mut MemorySource::new(frames), 1);
    assert_eq!(o.ended, vec![(6, 10, EndReason::Fin)]);
    assert_eq!(o.steps, 0);
    assert!(o.tls[0]["server_hello"].is_object());
}

/// The corpus capture of the issue: frames 3–12 are one TCP stream with a
/// ServerHello in frame 8 (tshark: `tcp.stream` 0 for all ten).
#[test]
fn derived_two_sections_gives_one_flow_with_its_server_hello() {
    let Some(dir) = libpcap_tools::synth::corpus_dir(Path::new(env!("CARGO_MANIFEST_DIR"))) else {
        return;
    };
    let path = dir.join("formats/derived_two-sections.pcapng");
    let streams = tshark_tcp_streams(&path);
    for jobs in [1, 2] {
        let mut r = CaptureReader::open(&path, &ReaderConfig::default()).unwrap();
        let o = run(&mut r, jobs);
        let tcp: Vec<_> = o.ended.iter().filter(|(p, _, _)| *p == 6).collect();
        assert_eq!(tcp.len(), 1, "-j {jobs}: {:?}", o.ended);
        assert_eq!(tcp[0].1, 10, "-j {jobs}");
        if let Some(s) = &streams {
            assert_eq!(s, &vec![10], "tshark's streams and packets");
        }
        assert_eq!(o.tls.len(), 1, "-j {jobs}");
        assert_eq!(o.tls[0]["server_hello"]["cipher"], 0x1301, "-j {jobs}");
    }
}

/// Packets per TCP stream according to tshark, if it is installed.
fn tshark_tcp_streams(path: &Path) -> Option<Vec<usize>> {
    let out = std::process::Command::new("tshark")
        .args([
            "-r".as_ref(),
            path.as_os_str(),
            "-T".as_ref(),
            "fields".as_ref(),
        ])
        .args(["-e", "tcp.stream", "-Y", "tcp"])
        .output();
    let Some(out) = out.ok().filter(|o| o.status.success()) else {
        eprintln!("SKIP derived_two_sections tshark cross-check: tshark not available");
        return None;
    };
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        *counts.entry(l.trim().to_string()).or_default() += 1;
    }
    Some(counts.into_values().collect())
}

#[test]
fn fragments_after_a_step_are_reassembled() {
    // a datagram in three fragments 10 ms apart, a day before the first
    // packet of the capture: the defragmenter's timeout (60 s) counts on
    // the run's clock too, so the datagram is rebuilt, not timed out
    let (s, d) = (
        std::net::Ipv4Addr::new(10, 0, 0, 7),
        std::net::Ipv4Addr::new(10, 0, 0, 8),
    );
    let dgram = build::udp(s.into(), d.into(), 5353, 5354, &[0xab; 3000]);
    let mut frames = vec![udp(6000, secs(T0, 0))];
    let t1 = T0 - 86_400;
    for (i, f) in build::ipv4_fragments(s, d, 17, 77, &dgram, 1400)
        .into_iter()
        .enumerate()
    {
        let frame = build::ethernet(build::MAC_A, build::MAC_B, 0x0800, &f);
        frames.push((secs(t1, 10 * i as i64), frame));
    }
    assert_eq!(frames.len(), 4);
    let config = Config::new();
    for jobs in [1, 2] {
        let engine = Engine::new(&config, jobs).unwrap();
        let factory = || Ok(Vec::<Box<dyn Plugin>>::new());
        let out = engine
            .run(&factory, &mut MemorySource::new(owned(&frames)))
            .unwrap();
        assert_eq!(
            out.stats.reassembled, 1,
            "-j {jobs}: {:?}",
            out.stats.anomalies
        );
        assert_eq!(out.stats.anomalies.get("clock_step_back"), Some(&1));
        assert!(
            !out.stats.anomalies.contains_key("defrag_timeout"),
            "-j {jobs}"
        );
    }
}

/// A capture whose second frame is 21 years early (a lone wrong timestamp):
/// one TCP flow of 6 packets, as tshark's one stream, not torn in two.
#[test]
fn a_lone_wrong_timestamp_keeps_its_flow_whole() {
    let Some(dir) = libpcap_tools::synth::corpus_dir(Path::new(env!("CARGO_MANIFEST_DIR"))) else {
        return;
    };
    let path = dir.join("formats/suricata_bug-1450-04_tls_DER-incomplete-header.pcap");
    let streams = tshark_tcp_streams(&path);
    for jobs in [1, 2] {
        let mut r = CaptureReader::open(&path, &ReaderConfig::default()).unwrap();
        let o = run(&mut r, jobs);
        assert_eq!(o.ended, vec![(6, 6, EndReason::EndOfInput)], "-j {jobs}");
        if let Some(s) = &streams {
            assert_eq!(s, &vec![6], "tshark's streams and packets");
        }
        assert_eq!(o.steps, 1, "-j {jobs}");
    }
}
