//! The `port-scan` plugin driven through the public analyzer API, on packets
//! built with `libpcap_analyzer::build`.

// the helpers outside #[test] functions fail the test the same way
#![allow(clippy::unwrap_used, clippy::panic)]

use explugin_example::{Detection, NAME, PortScanPlugin, PortScanPluginBuilder, ScanKind};
use libpcap_analyzer::build::{self, flags};
use libpcap_analyzer::plugin::{Plugin, PluginBuilder, downcast};
use libpcap_analyzer::{Analyzer, Engine, PluginHandle};
use libpcap_tools::{
    Config, LinkType, OwnedPacket, PacketSource, SourceEvent, SourceProgress, Timestamp,
};
use std::net::{IpAddr, Ipv4Addr};

/// 2023-11-14T22:13:20Z, in nanoseconds.
const T0: i64 = 1_700_000_000 * 1_000_000_000;
const MS: i64 = 1_000_000;
const SEC: i64 = 1_000_000_000;

fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// A frame and its capture time.
#[derive(Clone)]
struct Frame {
    ts: i64,
    src: IpAddr,
    dst: IpAddr,
    data: Vec<u8>,
}

#[allow(clippy::too_many_arguments)] // the fields of a TCP header, plus time
fn tcp(
    ts: i64,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    tcp_flags: u8,
    payload: &[u8],
) -> Frame {
    let seg = build::tcp(src, dst, sport, dport, seq, ack, tcp_flags, payload);
    Frame {
        ts,
        src,
        dst,
        data: build::eth_ip(src, dst, 6, &seg),
    }
}

fn syn(ts: i64, src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Frame {
    tcp(ts, src, dst, sport, dport, 1000, 0, flags::SYN, b"")
}

fn udp(ts: i64, src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Frame {
    let seg = build::udp(src, dst, sport, dport, payload);
    Frame {
        ts,
        src,
        dst,
        data: build::eth_ip(src, dst, 17, &seg),
    }
}

fn packets(frames: &[Frame]) -> Vec<OwnedPacket> {
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| OwnedPacket {
            index: i as u64,
            interface: 0,
            linktype: LinkType::ETHERNET,
            ts: Some(Timestamp(f.ts)),
            origlen: f.data.len() as u32,
            data: f.data.clone(),
        })
        .collect()
}

/// Feeds `frames` to one analyzer running `plugin`, and returns the plugin
/// (post-processed when `finish`).
fn feed(config: &Config, plugin: PortScanPlugin, frames: &[Frame]) -> Box<PortScanPlugin> {
    let mut a = Analyzer::new(config, vec![Box::new(plugin)]).unwrap();
    for p in packets(frames) {
        a.handle_packet(&p.as_packet());
    }
    let (handles, _stats) = a.into_parts();
    let Some(PluginHandle::Owned(p)) = handles.into_iter().next() else {
        panic!("the plugin was not handed back");
    };
    downcast::<PortScanPlugin>(NAME, p).unwrap()
}

fn analyze(config: &Config, frames: &[Frame]) -> Box<PortScanPlugin> {
    let mut p = feed(config, PortScanPlugin::from_config(config).unwrap(), frames);
    p.post_process().unwrap();
    p
}

fn toml(text: &str) -> Config {
    Config::from_toml(text).unwrap()
}

/// A SYN scan of ports 1..=100 of 10.0.0.1 by 10.0.0.66, 10 ms apart; ports
/// 20..30 answer SYN-ACK (and the scanner resets them), the others RST.
fn vertical_scan() -> Vec<Frame> {
    let (scanner, host) = (ip(10, 0, 0, 66), ip(10, 0, 0, 1));
    let mut v = Vec::new();
    for port in 1..=100u16 {
        let ts = T0 + i64::from(port - 1) * 10 * MS;
        v.push(syn(ts, scanner, host, 40000, port));
        if (20..30).contains(&port) {
            v.push(tcp(
                ts + MS,
                host,
                scanner,
                port,
                40000,
                7,
                1001,
                flags::SYN | flags::ACK,
                b"",
            ));
            v.push(tcp(
                ts + 2 * MS,
                scanner,
                host,
                40000,
                port,
                1001,
                0,
                flags::RST,
                b"",
            ));
        } else {
            v.push(tcp(
                ts + MS,
                host,
                scanner,
                port,
                40000,
                0,
                1001,
                flags::RST | flags::ACK,
                b"",
            ));
        }
    }
    v
}

/// SYNs to port 22 of 10.1.0.1..=10.1.0.60 from 192.168.1.50, 5 ms apart, unanswered.
fn horizontal_scan() -> Vec<Frame> {
    (1..=60u8)
        .map(|h| {
            let ts = T0 + i64::from(h) * 5 * MS;
            syn(
                ts,
                ip(192, 168, 1, 50),
                ip(10, 1, 0, h),
                50000 + u16::from(h),
                22,
            )
        })
        .collect()
}

/// A client, 10.0.0.5, opening 5 HTTPS connections to 5 servers with full
/// handshakes, data both ways and FIN; and sending 100 DNS queries to
/// 10.0.0.53 from 100 source ports, each answered.
fn normal_client() -> Vec<Frame> {
    let c = ip(10, 0, 0, 5);
    let mut v = Vec::new();
    for i in 0..5u8 {
        let s = ip(172, 16, 0, 10 + i);
        let sport = 50000 + u16::from(i);
        let t = T0 + i64::from(i) * SEC;
        let f = flags::ACK | flags::PSH;
        v.push(syn(t, c, s, sport, 443));
        v.push(tcp(
            t + MS,
            s,
            c,
            443,
            sport,
            5000,
            1001,
            flags::SYN | flags::ACK,
            b"",
        ));
        v.push(tcp(
            t + 2 * MS,
            c,
            s,
            sport,
            443,
            1001,
            5001,
            flags::ACK,
            b"",
        ));
        v.push(tcp(
            t + 3 * MS,
            c,
            s,
            sport,
            443,
            1001,
            5001,
            f,
            b"GET / HTTP/1.1\r\n\r\n",
        ));
        v.push(tcp(
            t + 4 * MS,
            s,
            c,
            443,
            sport,
            5001,
            1019,
            f,
            b"HTTP/1.1 200 OK\r\n\r\n",
        ));
        v.push(tcp(
            t + 5 * MS,
            c,
            s,
            sport,
            443,
            1019,
            5020,
            flags::FIN | flags::ACK,
            b"",
        ));
        v.push(tcp(
            t + 6 * MS,
            s,
            c,
            443,
            sport,
            5020,
            1020,
            flags::FIN | flags::ACK,
            b"",
        ));
        v.push(tcp(
            t + 7 * MS,
            c,
            s,
            sport,
            443,
            1020,
            5021,
            flags::ACK,
            b"",
        ));
    }
    let dns = ip(10, 0, 0, 53);
    for q in 0..100u16 {
        let t = T0 + i64::from(q) * 10 * MS;
        v.push(udp(t, c, dns, 30000 + q, 53, b"query"));
        v.push(udp(t + MS, dns, c, 53, 30000 + q, b"answer"));
    }
    v
}

#[test]
fn vertical_syn_scan_of_100_ports_is_flagged() {
    let p = analyze(&Config::new(), &vertical_scan());
    assert_eq!(
        p.detections(),
        vec![Detection {
            source: ip(10, 0, 0, 66),
            kind: ScanKind::Vertical,
            protocol: 6,
            host: Some(ip(10, 0, 0, 1)),
            port: None,
            distinct_ports: 100,
            distinct_hosts: 1,
            probes: 100,
            open: 10,
            closed: 90,
            first: Timestamp(T0),
            last: Timestamp(T0 + 990 * MS),
        }]
    );
    assert_eq!(
        (p.sources_tracked(), p.targets_tracked(), p.probes()),
        (1, 100, 100)
    );
}

#[test]
fn horizontal_scan_of_60_hosts_on_port_22_is_flagged() {
    let p = analyze(&Config::new(), &horizontal_scan());
    assert_eq!(
        p.detections(),
        vec![Detection {
            source: ip(192, 168, 1, 50),
            kind: ScanKind::Horizontal,
            protocol: 6,
            host: None,
            port: Some(22),
            distinct_ports: 1,
            distinct_hosts: 60,
            probes: 60,
            open: 0,
            closed: 0,
            first: Timestamp(T0 + 5 * MS),
            last: Timestamp(T0 + 300 * MS),
        }]
    );
}

#[test]
fn normal_client_is_not_flagged_even_with_low_thresholds() {
    let frames = normal_client();
    let p = analyze(&Config::new(), &frames);
    assert_eq!(p.detections(), vec![]);
    // 5 HTTPS servers + the DNS server; the answers are not probes
    assert_eq!(
        (p.sources_tracked(), p.targets_tracked(), p.probes()),
        (1, 6, 105)
    );
    // the 5 connections carried data, the DNS target got 100 datagrams
    let low = toml("[plugin.port-scan]\nmin_hosts = 2\nmin_ports = 2\n");
    assert_eq!(analyze(&low, &frames).detections(), vec![]);
}

#[test]
fn thresholds_from_toml_change_the_outcome() {
    // 30 ports: under the default min_ports = 50, over 20
    let short: Vec<_> = vertical_scan()
        .into_iter()
        .filter(|f| f.src == ip(10, 0, 0, 66) && tcp_dport(f) <= 30)
        .collect();
    assert_eq!(analyze(&Config::new(), &short).detections(), vec![]);
    let d = analyze(&toml("[plugin.port-scan]\nmin_ports = 20\n"), &short).detections();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].distinct_ports, 30);

    // 100 ports 1 s apart: at most 11 in a 10 s window, all within 120 s
    let slow: Vec<_> = (1..=100u16)
        .map(|port| {
            syn(
                T0 + i64::from(port) * SEC,
                ip(10, 0, 0, 66),
                ip(10, 0, 0, 1),
                40000,
                port,
            )
        })
        .collect();
    let d = analyze(
        &toml("[plugin.port-scan]\nwindow_secs = 10.0\nmin_ports = 11\n"),
        &slow,
    )
    .detections();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].distinct_ports, 11);
    assert_eq!(
        (d[0].first, d[0].last),
        (Timestamp(T0 + SEC), Timestamp(T0 + 11 * SEC))
    );
    assert_eq!(
        analyze(&toml("[plugin.port-scan]\nwindow_secs = 10.0\n"), &slow).detections(),
        vec![]
    );
    let d = analyze(&toml("[plugin.port-scan]\nwindow_secs = 120.0\n"), &slow).detections();
    assert_eq!(d[0].distinct_ports, 100);

    // every probe sent 4 times: more than max_packets_per_target = 3
    let retried: Vec<_> = horizontal_scan()
        .into_iter()
        .flat_map(|f| {
            (0..4).map(move |i| Frame {
                ts: f.ts + i * MS,
                ..f.clone()
            })
        })
        .collect();
    assert_eq!(analyze(&Config::new(), &retried).detections(), vec![]);
    let d = analyze(
        &toml("[plugin.port-scan]\nmax_packets_per_target = 4\n"),
        &retried,
    )
    .detections();
    assert_eq!((d.len(), d[0].distinct_hosts, d[0].probes), (1, 60, 240));

    // UDP probes count only when count_udp
    let udp_scan: Vec<_> = (1..=60u16)
        .map(|port| {
            udp(
                T0 + i64::from(port) * MS,
                ip(10, 0, 0, 7),
                ip(10, 0, 0, 1),
                999,
                port,
                b"",
            )
        })
        .collect();
    let d = analyze(&Config::new(), &udp_scan).detections();
    assert_eq!((d.len(), d[0].protocol, d[0].distinct_ports), (1, 17, 60));
    let off = analyze(&toml("[plugin.port-scan]\ncount_udp = false\n"), &udp_scan);
    assert_eq!((off.detections().len(), off.probes()), (0, 0));
}

fn tcp_dport(f: &Frame) -> u16 {
    // Ethernet (14) + IPv4 (20), then the TCP destination port
    u16::from_be_bytes([f.data[36], f.data[37]])
}

#[test]
fn invalid_config_is_a_build_error() {
    for text in [
        "[plugin.port-scan]\nmin_ports = \"many\"\n",
        "[plugin.port-scan]\nwindow_secs = 0.0\n",
        "[plugin.port-scan]\nmax_packets_per_target = 0\n",
    ] {
        let e = PortScanPluginBuilder.build(&toml(text)).err().unwrap();
        assert_eq!(e.plugin, NAME, "{text}");
    }
}

/// Everything at once, shuffled in time order.
fn mixed() -> Vec<Frame> {
    let mut v = vertical_scan();
    v.extend(horizontal_scan());
    v.extend(normal_client());
    v.extend((1..=60u16).map(|port| {
        udp(
            T0 + i64::from(port) * MS,
            ip(10, 0, 0, 7),
            ip(10, 0, 0, 1),
            999,
            port,
            b"",
        )
    }));
    v.sort_by_key(|f| f.ts);
    v
}

/// Which of two workers gets a frame: symmetric in the two addresses, as
/// the engine's dispatcher.
fn worker_of(f: &Frame) -> usize {
    let sum = |a: IpAddr| match a {
        IpAddr::V4(v) => v.octets().iter().map(|&b| usize::from(b)).sum::<usize>(),
        IpAddr::V6(v) => v.octets().iter().map(|&b| usize::from(b)).sum::<usize>(),
    };
    (sum(f.src) + sum(f.dst)) % 2
}

#[test]
fn merging_two_halves_gives_the_same_result_as_one() {
    let config = Config::new();
    let frames = mixed();
    let one = analyze(&config, &frames);
    assert_eq!(one.detections().len(), 3);

    let (a, b): (Vec<Frame>, Vec<Frame>) = frames.iter().cloned().partition(|f| worker_of(f) == 0);
    assert!(!a.is_empty() && !b.is_empty());
    let mut merged = feed(&config, PortScanPlugin::from_config(&config).unwrap(), &a);
    let other = feed(&config, PortScanPlugin::from_config(&config).unwrap(), &b);
    // neither half holds the whole horizontal scan
    assert!(merged.detections().len() < 3 || other.detections().len() < 3);
    merged.merge(other).unwrap();
    merged.post_process().unwrap();
    assert_eq!(merged.detections(), one.detections());
    assert_eq!(merged.results(), one.results());
}

/// An in-memory source, to run the plugin through the multi-threaded engine.
struct MemSource {
    packets: Vec<OwnedPacket>,
    next: usize,
}

impl PacketSource for MemSource {
    fn next_event(&mut self) -> libpcap_tools::Result<SourceEvent<'_>> {
        let Some(p) = self.packets.get(self.next) else {
            return Ok(SourceEvent::End);
        };
        self.next += 1;
        Ok(SourceEvent::Packet(p.as_packet()))
    }

    fn name(&self) -> &str {
        "memory"
    }

    fn progress(&self) -> SourceProgress {
        SourceProgress {
            packets: self.next as u64,
            ..SourceProgress::default()
        }
    }
}

#[test]
fn engine_with_two_workers_gives_the_same_result_as_one() {
    let config = Config::new();
    let mut registry = libpcap_analyzer::plugin::PluginRegistry::new();
    explugin_example::register(&mut registry);
    let names = vec![NAME.to_string()];
    let factory = || registry.build(&names, &config);
    let run = |jobs: usize| {
        let mut source = MemSource {
            packets: packets(&mixed()),
            next: 0,
        };
        let out = Engine::new(&config, jobs)
            .unwrap()
            .run(&factory, &mut source)
            .unwrap();
        // the run's counters are those of the merged instance
        let counters = out.plugin_counters();
        assert_eq!(counters.len(), 1);
        assert_eq!(counters[0].0, NAME);
        let results = out.plugin(NAME).unwrap().results().unwrap();
        assert_eq!(
            counters[0].1.get("probes"),
            results["probes"].as_u64(),
            "-j {jobs}"
        );
        results
    };
    let one = run(1);
    assert_eq!(one["scanners"].as_array().unwrap().len(), 3);
    assert_eq!(run(2), one);
}

#[test]
fn memory_caps_are_enforced_and_counted() {
    // 5 scanners of 10 ports each, only 2 sources tracked
    let frames: Vec<_> = (1..=5u8)
        .flat_map(|s| {
            (1..=10u16).map(move |port| {
                syn(
                    T0 + i64::from(port) * MS,
                    ip(10, 9, 0, s),
                    ip(10, 0, 0, 1),
                    40000,
                    port,
                )
            })
        })
        .collect();
    let p = analyze(
        &toml("[plugin.port-scan]\nmax_sources = 2\nmin_ports = 10\n"),
        &frames,
    );
    assert_eq!(
        (p.sources_tracked(), p.targets_tracked(), p.probes()),
        (2, 20, 50)
    );
    assert_eq!((p.dropped().source_cap, p.dropped().target_cap), (30, 0));
    assert_eq!(p.detections().len(), 2);
    // the same figures as counters, the drops as losses
    let c = p.counters();
    assert_eq!(c.get("probes"), Some(50));
    assert_eq!(c.get("sources_tracked"), Some(2));
    assert_eq!(c.get("targets_tracked"), Some(20));
    let losses: Vec<_> = c.losses().map(|l| (l.name.as_ref(), l.value)).collect();
    assert_eq!(losses, [("dropped_source_cap", 30)]);

    // 100 ports, only 10 targets per source: still a scan at min_ports = 10
    let p = analyze(
        &toml("[plugin.port-scan]\nmax_targets_per_source = 10\nmin_ports = 10\n"),
        &vertical_scan(),
    );
    assert_eq!((p.targets_tracked(), p.dropped().target_cap), (10, 90));
    let d = p.detections();
    assert_eq!((d.len(), d[0].distinct_ports), (1, 10));

    // a total of 15 targets over all sources
    let p = analyze(&toml("[plugin.port-scan]\nmax_targets = 15\n"), &frames);
    assert_eq!((p.sources_tracked(), p.targets_tracked()), (2, 15));
    assert_eq!(p.dropped().target_cap, 35);
    let json = p.results().unwrap();
    assert_eq!(
        json["dropped"],
        serde_json::json!({ "source_cap": 0, "target_cap": 35 })
    );

    // the caps hold when merging too
    let config = toml("[plugin.port-scan]\nmax_sources = 3\n");
    let (a, b): (Vec<Frame>, Vec<Frame>) = frames
        .iter()
        .cloned()
        .partition(|f| f.src < ip(10, 9, 0, 3));
    let mut merged = feed(&config, PortScanPlugin::from_config(&config).unwrap(), &a);
    merged
        .merge(feed(
            &config,
            PortScanPlugin::from_config(&config).unwrap(),
            &b,
        ))
        .unwrap();
    assert_eq!(
        (merged.sources_tracked(), merged.dropped().source_cap),
        (3, 20)
    );
}

#[test]
fn results_are_saved_as_port_scan_json() {
    let mut p = analyze(&Config::new(), &mixed());
    let dir = tempfile::tempdir().unwrap();
    let files = p.save_results(dir.path()).unwrap();
    assert_eq!(files, vec![dir.path().join("port-scan.json")]);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(Some(saved.clone()), p.results());
    let kinds: Vec<_> = saved["scanners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["source"].as_str().unwrap(),
                s["kind"].as_str().unwrap(),
                s["protocol"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("10.0.0.7", "vertical", "udp"),
            ("10.0.0.66", "vertical", "tcp"),
            ("192.168.1.50", "horizontal", "tcp"),
        ]
    );
}

/// The pipeline of the `analyze_with_portscan` example: a pcap file written
/// with our writer, read back with `CaptureReader`, the built-in plugins
/// plus `port-scan`, two workers, results saved.
#[test]
fn capture_file_through_builtin_registry_and_engine() {
    use libpcap_tools::{CaptureReader, PcapWriter, PcapWriterOptions, ReaderConfig};
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("mixed.pcap");
    let opts = PcapWriterOptions {
        nanos: true,
        ..PcapWriterOptions::default()
    };
    let mut w = PcapWriter::new(
        std::fs::File::create(&pcap).unwrap(),
        LinkType::ETHERNET,
        opts,
    )
    .unwrap();
    for p in packets(&mixed()) {
        w.write_packet(&p.as_packet()).unwrap();
    }
    w.finish().unwrap();

    let outdir = dir.path().join("out");
    let mut config = Config::new();
    config.set("output", "dir", outdir.display().to_string());
    let mut registry = libpcap_analyzer::plugins::builtin_registry();
    explugin_example::register(&mut registry);
    let mut names = registry.select(None).unwrap();
    assert!(!names.contains(&NAME.to_string()), "port-scan is opt-in");
    names.push(NAME.to_string());
    let factory = || registry.build(&names, &config);
    let mut reader = CaptureReader::open(&pcap, &ReaderConfig::default()).unwrap();
    let mut out = Engine::new(&config, 2)
        .unwrap()
        .run(&factory, &mut reader)
        .unwrap();
    assert!(out.warning.is_none());
    let files = out.save_results(&outdir).unwrap();
    assert!(files.contains(&outdir.join("port-scan.json")), "{files:?}");
    assert!(files.len() > 1, "the built-in plugins wrote too: {files:?}");

    let expected = analyze(&Config::new(), &mixed()).results().unwrap();
    let text = std::fs::read_to_string(outdir.join("port-scan.json")).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(saved, expected);
}

#[test]
fn ipv6_horizontal_udp_scan_is_flagged() {
    let scanner: IpAddr = "2001:db8::66".parse().unwrap();
    let frames: Vec<_> = (1..=50u16)
        .map(|h| {
            let host: IpAddr = format!("2001:db8:1::{h:x}").parse().unwrap();
            udp(T0 + i64::from(h) * MS, scanner, host, 5000, 161, b"probe")
        })
        .collect();
    let d = analyze(&Config::new(), &frames).detections();
    assert_eq!(d.len(), 1);
    assert_eq!(
        (
            d[0].source,
            d[0].kind,
            d[0].protocol,
            d[0].port,
            d[0].distinct_hosts
        ),
        (scanner, ScanKind::Horizontal, 17, Some(161), 50)
    );
}

#[test]
fn unknown_config_key_is_a_warning() {
    let config = toml("[plugin.port-scan]\nmin_port = 5\n");
    let p = PortScanPlugin::from_config(&config).unwrap();
    assert_eq!(p.config().min_ports, 50);
    let w = config.take_warnings();
    assert!(
        w.iter().any(|m| m.contains("plugin.port-scan.min_port")),
        "{w:?}"
    );
}

/// `pal-portscan`, the whole tool with the plugin added by
/// `pcap_analyzer::main_with`: `-p` accepts it, it writes its results with
/// the built-in plugins', its counters reach the summary, and the tool's
/// exit codes hold.
#[test]
fn the_pal_portscan_binary_is_the_whole_tool_with_the_plugin() {
    use libpcap_tools::{PcapWriter, PcapWriterOptions};
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("mixed.pcap");
    let mut w = PcapWriter::new(
        std::fs::File::create(&pcap).unwrap(),
        LinkType::ETHERNET,
        PcapWriterOptions::default(),
    )
    .unwrap();
    for p in packets(&mixed()) {
        w.write_packet(&p.as_packet()).unwrap();
    }
    w.finish().unwrap();
    let bin = env!("CARGO_BIN_EXE_pal-portscan");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .env_remove("PCAP_ANALYZER_LOG")
            .output()
            .unwrap()
    };
    let o = run(&["--list-builders"]);
    assert_eq!(o.status.code(), Some(0));
    let list = String::from_utf8_lossy(&o.stdout);
    assert!(list.contains("port-scan"), "{list}");
    assert!(list.contains("connections"), "{list}");
    let out = dir.path().join("out");
    let stats = dir.path().join("stats.json");
    let o = run(&[
        "-q",
        "-j",
        "2",
        "-p",
        "port-scan,connections",
        "-o",
        out.to_str().unwrap(),
        "--stats-json",
        stats.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("port-scan.json")).unwrap())
            .unwrap();
    assert_eq!(saved, analyze(&Config::new(), &mixed()).results().unwrap());
    assert!(out.join("connections.txt").exists());
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert!(
        s["plugins"]["port-scan"]["probes"].as_u64().unwrap() > 0,
        "{s}"
    );
    // the tool's usage errors
    let o = run(&["-p", "no-such-plugin", pcap.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
}
