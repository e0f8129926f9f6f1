use super::*;
use crate::build::{self, MAC_A, MAC_B, flags};
use crate::plugin::{Interest, PluginError, PluginResult};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};

const C: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const S: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

type Log = Arc<Mutex<Vec<String>>>;

/// Records every callback as a line of text.
struct Recorder {
    log: Log,
    interest: Interest,
    fail_transport: bool,
    panic_on_transport: bool,
    decap_port: Option<u16>,
    /// Stream data equal to this makes the plugin leave the direction.
    leave_on: Option<&'static str>,
}

impl Recorder {
    fn new(log: &Log, layers: Layers) -> Recorder {
        Recorder {
            log: log.clone(),
            interest: Interest::new(layers),
            fail_transport: false,
            panic_on_transport: false,
            decap_port: None,
            leave_on: None,
        }
    }
    fn push(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }
}

impl Plugin for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn interest(&self) -> Interest {
        self.interest.clone()
    }
    fn handle_link(
        &mut self,
        ctx: &PacketContext<'_>,
        l: &LinkLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        self.push(format!(
            "link d{} et={:04x} vlans={:?}",
            ctx.depth, l.ethertype, l.vlans
        ));
        Ok(None)
    }
    fn handle_network(
        &mut self,
        ctx: &PacketContext<'_>,
        n: &NetworkLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        self.push(format!(
            "net d{} et={:04x} proto={} re={}",
            ctx.depth, n.ethertype, n.protocol, n.reassembled
        ));
        Ok(None)
    }
    fn handle_transport(
        &mut self,
        ctx: &PacketContext<'_>,
        t: &TransportLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        if self.panic_on_transport {
            panic!("boom");
        }
        self.push(format!(
            "tr d{} {} dir={:?} frames={} bytes={} len={}",
            ctx.depth,
            t.key,
            t.direction,
            t.frames,
            t.wire_bytes,
            t.payload.len()
        ));
        if self.fail_transport {
            return Err(PluginError::new("recorder", "fail"));
        }
        if Some(t.key.dst_port) == self.decap_port {
            return Ok(Some(Decapsulated {
                layer: DecapLayer::Network(0x0800),
                data: t.payload.to_vec(),
            }));
        }
        Ok(None)
    }
    fn handle_stream(
        &mut self,
        ctx: &PacketContext<'_>,
        _: &Flow,
        dir: Direction,
        d: StreamData<'_>,
    ) -> PluginResult<()> {
        match d {
            StreamData::Data { offset, data } => {
                self.push(format!(
                    "stream {dir:?} @{offset} {}",
                    String::from_utf8_lossy(data)
                ));
                if self.leave_on.is_some_and(|l| l.as_bytes() == data) {
                    ctx.stream_done();
                }
            }
            StreamData::Gap { offset, len } => self.push(format!("gap {dir:?} @{offset} +{len}")),
        }
        Ok(())
    }
    fn flow_created(&mut self, f: &Flow) -> PluginResult<()> {
        self.push(format!("created {}", f.key));
        Ok(())
    }
    fn flow_destroyed(&mut self, f: &Flow, r: EndReason) -> PluginResult<()> {
        self.push(format!(
            "destroyed {} {r} pkts={} bytes={}",
            f.key,
            f.packets(),
            f.bytes()
        ));
        Ok(())
    }
}

fn pkt(index: u64, secs: i64, data: &[u8]) -> Packet<'_> {
    Packet {
        index,
        interface: 0,
        linktype: LinkType::ETHERNET,
        ts: Some(Timestamp::from_secs_nanos(secs, 0)),
        origlen: data.len() as u32,
        data,
    }
}

fn run_frames(plugin: Recorder, frames: &[Vec<u8>]) -> (Vec<String>, AnalyzerStats) {
    let log = plugin.log.clone();
    let mut a = Analyzer::new(&Config::new(), vec![Box::new(plugin)]).unwrap();
    for (i, f) in frames.iter().enumerate() {
        a.handle_packet(&pkt(i as u64, 1000 + i as i64, f));
    }
    let (_, stats) = a.into_parts();
    let l = log.lock().unwrap().clone();
    (l, stats)
}

fn udp_frame(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let u = build::udp(C.into(), S.into(), sport, dport, payload);
    build::ethernet(MAC_A, MAC_B, 0x0800, &build::ipv4(C, S, 17, 1, &u))
}

#[test]
fn vlan_stack_is_crossed_and_vlan_separates_flows() {
    let log = Log::default();
    let u = build::udp(C.into(), S.into(), 1, 2, b"x");
    let ip = build::ipv4(C, S, 17, 1, &u);
    let inner = build::vlan_tag(20, 0x0800, &ip);
    let f1 = build::ethernet(MAC_A, MAC_B, 0x8100, &build::vlan_tag(10, 0x8100, &inner));
    let f2 = build::ethernet(
        MAC_A,
        MAC_B,
        0x88a8,
        &build::vlan_tag(10, 0x8100, &build::vlan_tag(30, 0x0800, &ip)),
    );
    let (l, stats) = run_frames(Recorder::new(&log, Layers::all()), &[f1, f2]);
    assert!(
        l.contains(&"link d0 et=0800 vlans=[10, 20]".to_string()),
        "{l:#?}"
    );
    assert_eq!(
        l.iter().filter(|s| s.starts_with("created")).count(),
        2,
        "{l:#?}"
    );
    assert_eq!(stats.udp, 2);
}

#[test]
fn fragments_out_of_order_are_rebuilt_and_counted_as_frames() {
    let log = Log::default();
    let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let dgram = build::udp(C.into(), S.into(), 4000, 5000, &payload);
    let mut frames: Vec<Vec<u8>> = build::ipv4_fragments(C, S, 17, 77, &dgram, 1480)
        .into_iter()
        .map(|f| build::ethernet(MAC_A, MAC_B, 0x0800, &f))
        .collect();
    frames.reverse();
    let total: usize = frames.iter().map(Vec::len).sum();
    let (l, stats) = run_frames(
        Recorder::new(&log, Layers::TRANSPORT | Layers::NETWORK),
        &frames,
    );
    let tr: Vec<_> = l.iter().filter(|s| s.starts_with("tr")).collect();
    assert_eq!(tr.len(), 1, "{l:#?}");
    assert_eq!(
        *tr[0],
        format!(
            "tr d0 UDP 10.0.0.1:4000 -> 10.0.0.2:5000 dir=ToServer frames=3 bytes={total} len=3000"
        )
    );
    assert!(l.contains(&"net d0 et=0800 proto=17 re=true".to_string()));
    assert_eq!((stats.fragments, stats.reassembled), (3, 1));
}

#[test]
fn ipv6_fragments_are_rebuilt() {
    let log = Log::default();
    let (a, b): (Ipv6Addr, Ipv6Addr) = (
        "2001:db8::1".parse().unwrap(),
        "2001:db8::2".parse().unwrap(),
    );
    let payload = vec![7u8; 2000];
    let dgram = build::udp(a.into(), b.into(), 1, 2, &payload);
    let (p1, p2) = dgram.split_at(1232);
    let f1 = build::ethernet(
        MAC_A,
        MAC_B,
        0x86dd,
        &build::ipv6(a, b, 44, &build::ipv6_fragment_header(17, 0, true, 5, p1)),
    );
    let f2 = build::ethernet(
        MAC_A,
        MAC_B,
        0x86dd,
        &build::ipv6(
            a,
            b,
            44,
            &build::ipv6_fragment_header(17, 1232, false, 5, p2),
        ),
    );
    let (l, _) = run_frames(Recorder::new(&log, Layers::TRANSPORT), &[f2, f1]);
    let tr: Vec<_> = l.iter().filter(|s| s.starts_with("tr")).collect();
    assert_eq!(tr.len(), 1, "{l:#?}");
    assert!(
        tr[0].contains("frames=2") && tr[0].contains("len=2000"),
        "{l:#?}"
    );
}

#[test]
fn vxlan_outer_layers_come_before_inner_ones() {
    let log = Log::default();
    let (ia, ib) = (Ipv4Addr::new(192, 168, 0, 1), Ipv4Addr::new(192, 168, 0, 2));
    let inner_tcp = build::tcp(ia.into(), ib.into(), 1000, 80, 1, 0, flags::SYN, b"");
    let inner = build::ethernet(MAC_A, MAC_B, 0x0800, &build::ipv4(ia, ib, 6, 1, &inner_tcp));
    let outer = udp_frame(55555, 4789, &build::vxlan(42, &inner));
    let (l, stats) = run_frames(
        Recorder::new(&log, Layers::all()),
        std::slice::from_ref(&outer),
    );
    let order: Vec<&str> = l
        .iter()
        .map(|s| s.split(' ').take(2).collect::<Vec<_>>())
        .map(|v| v[0])
        .collect();
    assert_eq!(
        order,
        [
            "link",
            "net",
            "created",
            "tr",
            "link",
            "net",
            "created",
            "tr",
            "destroyed",
            "destroyed"
        ],
        "{l:#?}"
    );
    assert!(
        l.iter()
            .any(|s| s.starts_with("tr d1 TCP 192.168.0.1:1000 -> 192.168.0.2:80")),
        "{l:#?}"
    );
    // the inner flow counts the whole frame as it was on the wire
    assert!(
        l.iter()
            .any(|s| s.starts_with("tr d1") && s.contains(&format!("bytes={}", outer.len()))),
        "{l:#?}"
    );
    assert_eq!(stats.tunnels, 1);
}

#[test]
fn gre_and_ipip_are_decoded_and_depth_is_capped() {
    let log = Log::default();
    let u = build::udp(C.into(), S.into(), 7, 8, b"in");
    let inner_ip = build::ipv4(C, S, 17, 1, &u);
    let gre = build::ethernet(
        MAC_A,
        MAC_B,
        0x0800,
        &build::ipv4(S, C, 47, 2, &build::gre(0x0800, Some(9), &inner_ip)),
    );
    // IP-in-IP nested deeper than the default cap of 4
    let mut p = inner_ip.clone();
    for _ in 0..6 {
        p = build::ipv4(S, C, 4, 3, &p);
    }
    let deep = build::ethernet(MAC_A, MAC_B, 0x0800, &p);
    let (l, stats) = run_frames(Recorder::new(&log, Layers::TRANSPORT), &[gre, deep]);
    assert!(
        l.iter()
            .any(|s| s.starts_with("tr d1 UDP 10.0.0.1:7 -> 10.0.0.2:8")),
        "{l:#?}"
    );
    assert_eq!(stats.anomalies.get("tunnel_too_deep"), Some(&1));
}

#[test]
fn tcp_stream_is_delivered_in_order() {
    let log = Log::default();
    let (c, s) = (IpAddr::V4(C), IpAddr::V4(S));
    let f = |sp, dp, seq, ack, fl, data: &[u8], rev: bool| {
        let (a, b) = if rev { (s, c) } else { (c, s) };
        build::eth_ip(a, b, 6, &build::tcp(a, b, sp, dp, seq, ack, fl, data))
    };
    let frames = vec![
        f(40000, 80, 100, 0, flags::SYN, b"", false),
        f(80, 40000, 500, 101, flags::SYN | flags::ACK, b"", true),
        f(40000, 80, 101, 501, flags::ACK, b"", false),
        f(40000, 80, 106, 501, flags::ACK, b"world", false), // out of order
        f(40000, 80, 101, 501, flags::ACK, b"hello", false),
        f(40000, 80, 101, 501, flags::ACK, b"hello", false), // retransmission
        f(80, 40000, 501, 111, flags::ACK | flags::PSH, b"ok", true),
        f(40000, 80, 111, 503, flags::FIN | flags::ACK, b"", false),
        f(80, 40000, 503, 112, flags::FIN | flags::ACK, b"", true),
        f(40000, 80, 112, 504, flags::ACK, b"", false),
    ];
    let (l, _) = run_frames(
        Recorder::new(&log, Layers::STREAM | Layers::FLOW_EVENTS),
        &frames,
    );
    let streams: Vec<_> = l
        .iter()
        .filter(|s| s.starts_with("stream"))
        .cloned()
        .collect();
    assert_eq!(
        streams,
        [
            "stream ToServer @0 hello",
            "stream ToServer @5 world",
            "stream ToClient @0 ok"
        ],
        "{l:#?}"
    );
    let destroyed: Vec<_> = l.iter().filter(|s| s.starts_with("destroyed")).collect();
    assert_eq!(destroyed.len(), 1, "{l:#?}");
    assert!(destroyed[0].contains(" fin pkts=10"), "{l:#?}");
}

/// A flow of a SYN and a SYN-ACK (a scan, a flood) holds no reassembly
/// state, and its segments are counted; a flow whose handshake goes on
/// gets its stream from the first byte after the SYN, as before (the
/// bare ACK that makes the state counts once, as do the others).
#[test]
fn handshake_only_flows_hold_no_reassembly_state() {
    let (c, s) = (IpAddr::V4(C), IpAddr::V4(S));
    let f = |sp, dp, seq, ack, fl, data: &[u8], rev: bool| {
        let (a, b) = if rev { (s, c) } else { (c, s) };
        build::eth_ip(a, b, 6, &build::tcp(a, b, sp, dp, seq, ack, fl, data))
    };
    let log = Log::default();
    let mut a = Analyzer::new(
        &Config::new(),
        vec![Box::new(Recorder::new(&log, Layers::STREAM))],
    )
    .unwrap();
    let mut frames = Vec::new();
    for port in 1000..1100u16 {
        frames.push(f(port, 443, 7, 0, flags::SYN, b"", false));
        if port % 2 == 0 {
            frames.push(f(443, port, 900, 8, flags::SYN | flags::ACK, b"", true));
        }
    }
    // one flow goes on: its bare ACK makes the state, its data starts at 0
    frames.push(f(2000, 443, 100, 0, flags::SYN, b"", false));
    frames.push(f(443, 2000, 500, 101, flags::SYN | flags::ACK, b"", true));
    frames.push(f(2000, 443, 101, 501, flags::ACK, b"", false));
    frames.push(f(
        2000,
        443,
        101,
        501,
        flags::ACK | flags::PSH,
        b"hi",
        false,
    ));
    frames.push(f(443, 2000, 501, 103, flags::ACK | flags::PSH, b"yo", true));
    for (i, fr) in frames.iter().enumerate() {
        a.handle_packet(&pkt(i as u64, 1000, fr));
    }
    let held: Vec<_> = a
        .flows
        .flows()
        .filter(|f| f.key.src_port == 2000 || f.key.dst_port == 2000)
        .collect();
    assert_eq!(held.len(), 1);
    let with_state = a
        .flows
        .entries()
        .filter(|e| e.ext.streams.is_some())
        .count();
    assert_eq!(with_state, 1, "only the flow that goes on holds a state");
    let (_, stats) = a.into_parts();
    assert_eq!(stats.reassembly.segments, 150 + 5, "{stats:?}");
    let l = log.lock().unwrap().clone();
    assert_eq!(
        l,
        ["stream ToServer @0 hi", "stream ToClient @0 yo"],
        "{l:#?}"
    );
}

#[test]
fn a_plugin_that_leaves_a_stream_direction_gets_no_more_of_it() {
    let (c, s) = (IpAddr::V4(C), IpAddr::V4(S));
    let f = |sp, dp, seq, ack, fl, data: &[u8], rev: bool| {
        let (a, b) = if rev { (s, c) } else { (c, s) };
        build::eth_ip(a, b, 6, &build::tcp(a, b, sp, dp, seq, ack, fl, data))
    };
    let frames = [
        f(40000, 443, 100, 0, flags::SYN, b"", false),
        f(443, 40000, 500, 101, flags::SYN | flags::ACK, b"", true),
        f(40000, 443, 101, 501, flags::ACK, b"hello", false),
        f(40000, 443, 111, 501, flags::ACK, b"later", false), // out of order
        f(40000, 443, 106, 501, flags::ACK, b"world", false),
        f(443, 40000, 501, 111, flags::ACK | flags::PSH, b"ok", true),
        f(443, 40000, 503, 111, flags::ACK | flags::PSH, b"more", true),
    ];
    let run = |plugins: Vec<Recorder>| {
        let logs: Vec<Log> = plugins.iter().map(|p| p.log.clone()).collect();
        let boxed = plugins
            .into_iter()
            .map(|p| Box::new(p) as Box<dyn Plugin>)
            .collect();
        let mut a = Analyzer::new(&Config::new(), boxed).unwrap();
        for (i, fr) in frames.iter().enumerate() {
            a.handle_packet(&pkt(i as u64, 1000 + i as i64, fr));
        }
        let (_, stats) = a.into_parts();
        let streams = |l: &Log| -> Vec<String> {
            let l = l.lock().unwrap();
            l.iter()
                .filter(|s| s.starts_with("stream") || s.starts_with("gap"))
                .cloned()
                .collect()
        };
        (logs.iter().map(streams).collect::<Vec<_>>(), stats)
    };
    let leaver = || {
        let mut p = Recorder::new(&Log::default(), Layers::STREAM);
        p.leave_on = Some("hello");
        p
    };
    // alone: the direction it left is no longer reassembled (the held
    // out-of-order segment is dropped, no gap at the end); the other
    // direction goes on
    let (logs, stats) = run(vec![leaver()]);
    assert_eq!(
        logs[0],
        [
            "stream ToServer @0 hello",
            "stream ToClient @0 ok",
            "stream ToClient @2 more"
        ]
    );
    assert_eq!(stats.stream_bytes, 5 + 2 + 4);
    // "later" and "world" were counted, not reassembled
    assert_eq!(stats.reassembly.unwanted_bytes, 10, "{stats:?}");
    assert_eq!(stats.reassembly.segments, 7, "{stats:?}");
    assert!(!stats.anomalies.contains_key("tcp_stream_gap"), "{stats:?}");
    // with a plugin that stays, the direction goes on for that one only
    let stays = Recorder::new(&Log::default(), Layers::STREAM);
    let (logs, _) = run(vec![leaver(), stays]);
    assert_eq!(
        logs[0],
        [
            "stream ToServer @0 hello",
            "stream ToClient @0 ok",
            "stream ToClient @2 more"
        ]
    );
    assert_eq!(
        logs[1],
        [
            "stream ToServer @0 hello",
            "stream ToServer @5 world",
            "stream ToServer @10 later",
            "stream ToClient @0 ok",
            "stream ToClient @2 more"
        ]
    );
}

#[test]
fn plugin_errors_are_counted_and_the_run_goes_on() {
    let log = Log::default();
    let mut r = Recorder::new(&log, Layers::TRANSPORT);
    r.fail_transport = true;
    let frames: Vec<_> = (0..5).map(|i| udp_frame(1000 + i, 53, b"q")).collect();
    let (l, stats) = run_frames(r, &frames);
    assert_eq!(l.len(), 5);
    assert_eq!(stats.plugin_errors.get("recorder"), Some(&5));
}

#[test]
fn panicking_plugin_ends_the_run_with_its_name() {
    struct One(Option<Vec<u8>>);
    impl PacketSource for One {
        fn next_event(&mut self) -> libpcap_tools::Result<SourceEvent<'_>> {
            match &self.0 {
                Some(_) => {
                    let d = self.0.as_deref().unwrap_or(&[]);
                    Ok(SourceEvent::Packet(pkt(0, 1, d)))
                }
                None => Ok(SourceEvent::End),
            }
        }
        fn name(&self) -> &str {
            "one"
        }
        fn progress(&self) -> libpcap_tools::SourceProgress {
            libpcap_tools::SourceProgress::default()
        }
    }
    let log = Log::default();
    let mut r = Recorder::new(&log, Layers::TRANSPORT);
    r.panic_on_transport = true;
    let mut a = Analyzer::new(&Config::new(), vec![Box::new(r)]).unwrap();
    let mut src = One(Some(udp_frame(1, 2, b"")));
    let err = a.run(&mut src).unwrap_err();
    assert!(err.to_string().contains("recorder"), "{err}");
}

#[test]
fn plugin_decapsulation_is_decoded_one_level_deeper() {
    let log = Log::default();
    let mut r = Recorder::new(&log, Layers::TRANSPORT);
    r.decap_port = Some(9999);
    let inner = build::ipv4(
        Ipv4Addr::new(1, 1, 1, 1),
        Ipv4Addr::new(2, 2, 2, 2),
        17,
        1,
        &build::udp(
            Ipv4Addr::new(1, 1, 1, 1).into(),
            Ipv4Addr::new(2, 2, 2, 2).into(),
            11,
            22,
            b"",
        ),
    );
    let (l, _) = run_frames(r, &[udp_frame(1234, 9999, &inner)]);
    assert!(
        l.iter()
            .any(|s| s.starts_with("tr d1 UDP 1.1.1.1:11 -> 2.2.2.2:22")),
        "{l:#?}"
    );
}

#[test]
fn unsupported_link_type_is_counted() {
    let mut a = Analyzer::new(&Config::new(), Vec::new()).unwrap();
    let d = [0u8; 30];
    let mut p = pkt(0, 1, &d);
    p.linktype = LinkType::IEEE802_11_RADIOTAP;
    a.handle_packet(&p);
    assert_eq!(
        a.stats().anomalies.get("unsupported_linktype_127"),
        Some(&1)
    );
}

#[test]
fn truncated_frames_never_panic_and_count_what_they_can() {
    let log = Log::default();
    let (c, s) = (IpAddr::V4(C), IpAddr::V4(S));
    let samples = vec![
        udp_frame(1, 2, b"hello"),
        build::eth_ip(c, s, 6, &build::tcp(c, s, 1, 2, 3, 4, flags::ACK, b"data")),
        udp_frame(5, 4789, &build::vxlan(1, &udp_frame(3, 4, b"x"))),
        build::eth_ip(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            17,
            &build::udp(
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
                1,
                2,
                b"v6",
            ),
        ),
    ];
    for f in &samples {
        for cut in 0..f.len() {
            let mut a = Analyzer::new(
                &Config::new(),
                vec![Box::new(Recorder::new(&log, Layers::all()))],
            )
            .unwrap();
            let mut p = pkt(0, 1, &f[..cut]);
            p.origlen = f.len() as u32;
            a.handle_packet(&p);
            a.finish();
        }
    }
    // a UDP header cut after its ports still counts for the connection
    let f = &samples[0];
    let log2 = Log::default();
    let mut a = Analyzer::new(
        &Config::new(),
        vec![Box::new(Recorder::new(&log2, Layers::TRANSPORT))],
    )
    .unwrap();
    a.handle_packet(&pkt(0, 1, &f[..14 + 20 + 4]));
    assert_eq!(log2.lock().unwrap().len(), 1);
}

#[test]
fn flows_end_once_with_their_reason() {
    let log = Log::default();
    let mut cfg = Config::new();
    cfg.set("flows", "udp_timeout", 10.0);
    let mut a = Analyzer::new(
        &cfg,
        vec![Box::new(Recorder::new(&log, Layers::FLOW_EVENTS))],
    )
    .unwrap();
    let f = udp_frame(1, 2, b"");
    let g = udp_frame(3, 4, b"");
    a.handle_packet(&pkt(0, 100, &f));
    a.handle_packet(&pkt(1, 105, &g));
    a.handle_packet(&pkt(2, 111, &g)); // f expires at 110
    a.finish();
    a.finish();
    let l = log.lock().unwrap().clone();
    assert_eq!(
        l,
        [
            "created UDP 10.0.0.1:1 -> 10.0.0.2:2",
            "created UDP 10.0.0.1:3 -> 10.0.0.2:4",
            "destroyed UDP 10.0.0.1:1 -> 10.0.0.2:2 timeout pkts=1 bytes=42",
            "destroyed UDP 10.0.0.1:3 -> 10.0.0.2:4 end-of-input pkts=2 bytes=84",
        ]
    );
}

#[test]
fn anomalies_are_counted_under_their_documented_names() {
    let mut a = Analyzer::new(&Config::new(), Vec::new()).unwrap();
    let (c, s) = (IpAddr::V4(C), IpAddr::V4(S));
    let udp = build::eth_ip(c, s, 17, &build::udp(c, s, 1, 2, b"x"));
    // an IPv4 header cut after 10 of its 20 bytes
    let short_ip = udp[..14 + 10].to_vec();
    // a TCP header whose data offset says 4 words (less than the 5 minimum)
    let mut bad_tcp = build::tcp(c, s, 1, 2, 3, 4, flags::ACK, b"");
    bad_tcp[12] = 0x40;
    let bad_tcp = build::eth_ip(c, s, 6, &bad_tcp);
    let pppoe_discovery = build::ethernet(MAC_A, MAC_B, 0x8863, &[0x11, 0x09, 0, 0, 0, 0]);
    // 802.3 length field, LLC to the spanning tree (no SNAP)
    let stp = build::ethernet(MAC_A, MAC_B, 38, &[0x42, 0x42, 0x03, 0, 0, 0]);
    // the first fragment of a datagram whose other fragments never come
    let lone = build::ipv4_fragment(C, S, 17, 7, 0, true, &[0; 16]);
    let lone = build::ethernet(MAC_A, MAC_B, 0x0800, &lone);
    for (i, f) in [short_ip, bad_tcp, pppoe_discovery, stp, lone]
        .iter()
        .enumerate()
    {
        a.handle_packet(&pkt(i as u64, 1, f));
    }
    a.finish();
    let got: Vec<(&str, u64)> = a
        .stats()
        .anomalies
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        got,
        [
            ("defrag_end_of_input", 1),
            ("ipv4_truncated", 1),
            ("llc_frame", 1),
            ("non_ip_pppoe_discovery", 1),
            ("tcp_invalid", 1),
        ]
    );
}

/// Drops UDP to `port` at the transport layer, and (when `net_drop`) every
/// IPv4 packet with `0xdd` as its first transport byte at the network layer.
struct Dropper {
    port: u16,
    /// A second opinion, given after the drop: it cannot take it back.
    accept_after: bool,
    /// Drops every frame at the stream layer (TCP data).
    stream_drop: bool,
}

impl Plugin for Dropper {
    fn name(&self) -> &str {
        "dropper"
    }
    fn interest(&self) -> Interest {
        Interest::new(Layers::TRANSPORT | Layers::STREAM)
    }
    fn handle_transport(
        &mut self,
        ctx: &PacketContext<'_>,
        t: &TransportLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        assert_eq!(ctx.verdict(), Verdict::Accept, "reset for every frame");
        if t.key.dst_port == self.port {
            ctx.drop_packet();
            assert_eq!(ctx.verdict(), Verdict::Drop);
            if self.accept_after {
                ctx.set_verdict(Verdict::Accept);
            }
        }
        Ok(None)
    }
    fn handle_stream(
        &mut self,
        ctx: &PacketContext<'_>,
        _: &Flow,
        _: Direction,
        _: StreamData<'_>,
    ) -> PluginResult<()> {
        if self.stream_drop {
            ctx.drop_packet();
        }
        Ok(())
    }
}

#[test]
fn plugin_verdict_is_the_strictest_and_reset_for_every_frame() {
    let log = Log::default();
    let mut a = Analyzer::new(
        &Config::new(),
        vec![
            Box::new(Dropper {
                port: 53,
                accept_after: true,
                stream_drop: false,
            }),
            // another plugin after it sees the frame too
            Box::new(Recorder::new(&log, Layers::TRANSPORT)),
        ],
    )
    .unwrap();
    let frames = [
        udp_frame(1000, 53, b"q"),
        udp_frame(1000, 54, b"q"),
        udp_frame(1001, 53, b"q"),
        b"not even ethernet".to_vec(),
    ];
    let mut got = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        a.handle_packet(&pkt(i as u64, 1000, f));
        got.push(a.verdict());
    }
    use Verdict::{Accept, Drop};
    assert_eq!(got, [Drop, Accept, Drop, Accept]);
    assert_eq!(log.lock().unwrap().len(), 3, "every plugin still ran");
    // a context outside a frame has no cell: drop_packet goes nowhere
    let p = pkt(0, 0, &frames[0]);
    let ctx = PacketContext::new(&p, FlowContext::default());
    ctx.drop_packet();
    assert_eq!(ctx.verdict(), Accept);
}

#[test]
fn stream_callbacks_and_fragments_give_their_own_frame_verdict() {
    // the stream layer runs on the frame that carried the data
    let mut a = Analyzer::new(
        &Config::new(),
        vec![Box::new(Dropper {
            port: 0,
            accept_after: false,
            stream_drop: true,
        })],
    )
    .unwrap();
    let (c, s) = (IpAddr::V4(C), IpAddr::V4(S));
    let f = |seq, ack, fl, data: &[u8], rev: bool| {
        let (x, y, sp, dp) = if rev {
            (s, c, 80, 4000)
        } else {
            (c, s, 4000, 80)
        };
        build::eth_ip(x, y, 6, &build::tcp(x, y, sp, dp, seq, ack, fl, data))
    };
    let frames = [
        f(100, 0, flags::SYN, b"", false),
        f(500, 101, flags::SYN | flags::ACK, b"", true),
        f(101, 501, flags::ACK, b"", false),
        f(101, 501, flags::ACK | flags::PSH, b"data", false),
    ];
    let mut got = Vec::new();
    for (i, fr) in frames.iter().enumerate() {
        a.handle_packet(&pkt(i as u64, 1000, fr));
        got.push(a.verdict());
    }
    use Verdict::{Accept, Drop};
    assert_eq!(got, [Accept, Accept, Accept, Drop]);

    // fragments: the datagram's transport verdict lands on its last fragment
    let mut a = Analyzer::new(
        &Config::new(),
        vec![Box::new(Dropper {
            port: 5000,
            accept_after: false,
            stream_drop: false,
        })],
    )
    .unwrap();
    let dgram = build::udp(C.into(), S.into(), 4000, 5000, &[7; 3000]);
    let frags: Vec<Vec<u8>> = build::ipv4_fragments(C, S, 17, 9, &dgram, 1480)
        .into_iter()
        .map(|fr| build::ethernet(MAC_A, MAC_B, 0x0800, &fr))
        .collect();
    let mut got = Vec::new();
    for (i, fr) in frags.iter().enumerate() {
        a.handle_packet(&pkt(i as u64, 1000, fr));
        got.push(a.verdict());
    }
    assert_eq!(got, [Accept, Accept, Drop]);
}

/// An inline source over a list of frames that records the verdicts.
struct InlineFrames {
    frames: Vec<Vec<u8>>,
    next: usize,
    verdicts: Arc<Mutex<Vec<(u64, Verdict)>>>,
    inline: bool,
}

impl PacketSource for InlineFrames {
    fn next_event(&mut self) -> libpcap_tools::Result<SourceEvent<'_>> {
        let i = self.next;
        self.next += 1;
        Ok(match self.frames.get(i) {
            Some(f) => SourceEvent::Packet(pkt(i as u64 + 100, 1000, f)),
            None => SourceEvent::End,
        })
    }
    fn name(&self) -> &str {
        "inline"
    }
    fn progress(&self) -> libpcap_tools::SourceProgress {
        libpcap_tools::SourceProgress::default()
    }
    fn is_inline(&self) -> bool {
        self.inline
    }
    fn set_verdict(&mut self, index: u64, verdict: Verdict) -> libpcap_tools::Result<()> {
        self.verdicts.lock().unwrap().push((index, verdict));
        Ok(())
    }
}

#[test]
fn run_gives_inline_sources_one_verdict_per_packet_and_others_none() {
    for inline in [true, false] {
        let verdicts = Arc::new(Mutex::new(Vec::new()));
        let mut src = InlineFrames {
            frames: vec![
                udp_frame(1, 53, b""),
                udp_frame(1, 80, b""),
                vec![0; 3], // undecodable: accepted
            ],
            next: 0,
            verdicts: verdicts.clone(),
            inline,
        };
        let mut a = Analyzer::new(
            &Config::new(),
            vec![Box::new(Dropper {
                port: 53,
                accept_after: false,
                stream_drop: false,
            })],
        )
        .unwrap();
        a.run(&mut src).unwrap();
        let v = verdicts.lock().unwrap().clone();
        if inline {
            assert_eq!(
                v,
                [
                    (100, Verdict::Drop),
                    (101, Verdict::Accept),
                    (102, Verdict::Accept)
                ]
            );
        } else {
            assert!(v.is_empty(), "{v:?}");
        }
    }
}
