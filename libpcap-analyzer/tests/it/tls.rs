//! The `tls` plugin through the whole engine: TCP connections built with the
//! packet builder, whose handshakes arrive whole, one byte per TCP segment,
//! or as a 200 KB server flight in 1460-byte segments, give the same
//! ClientHello and ServerHello records in `tls.jsonl`.

// test code: a failed unwrap or index is a test failure with a message
#![allow(clippy::indexing_slicing)]

use crate::engine::Mem;
use libpcap_analyzer::Engine;
use libpcap_analyzer::build::{self, flags, tls_client_hello, tls_server_hello};
use libpcap_analyzer::plugins::builtin_registry;
use libpcap_tools::{Config, LinkType, OwnedPacket, Timestamp};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20));

/// `payload` cut into TLS records of type `ctype` carrying at most `chunk`
/// bytes each (version 3.1, as the builder's hellos).
fn records(ctype: u8, payload: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in payload.chunks(chunk) {
        out.extend_from_slice(&[ctype, 3, 1]);
        out.extend_from_slice(&(c.len() as u16).to_be_bytes());
        out.extend_from_slice(c);
    }
    out
}

/// A handshake message: type, 24-bit length, body.
fn handshake(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![msg_type];
    v.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    v.extend_from_slice(body);
    v
}

/// One TCP connection from client port `port` to 443: three-way handshake,
/// the client stream in segments of `client_seg` bytes, then the server
/// stream in segments of `server_seg` bytes, then FINs.
fn connection(
    packets: &mut Vec<OwnedPacket>,
    port: u16,
    client: &[u8],
    client_seg: usize,
    server: &[u8],
    server_seg: usize,
) {
    let mut push = |from_client: bool, seq: u32, ack: u32, fl: u8, data: &[u8]| {
        let (s, d, sp, dp) = if from_client {
            (CLIENT, SERVER, port, 443)
        } else {
            (SERVER, CLIENT, 443, port)
        };
        let frame = build::eth_ip(s, d, 6, &build::tcp(s, d, sp, dp, seq, ack, fl, data));
        let index = packets.len() as u64;
        packets.push(OwnedPacket {
            index,
            interface: 0,
            linktype: LinkType::ETHERNET,
            ts: Some(Timestamp(1_700_000_000_000_000_000 + index as i64 * 1000)),
            origlen: frame.len() as u32,
            data: frame,
        });
    };
    let (mut c, mut s) = (1000u32, 5000u32);
    push(true, c, 0, flags::SYN, b"");
    push(false, s, c + 1, flags::SYN | flags::ACK, b"");
    c += 1;
    s += 1;
    push(true, c, s, flags::ACK, b"");
    for seg in client.chunks(client_seg) {
        push(true, c, s, flags::ACK | flags::PSH, seg);
        c += seg.len() as u32;
    }
    for seg in server.chunks(server_seg) {
        push(false, s, c, flags::ACK | flags::PSH, seg);
        s += seg.len() as u32;
    }
    push(true, c, s, flags::FIN | flags::ACK, b"");
    push(false, s, c + 1, flags::FIN | flags::ACK, b"");
    push(true, c + 1, s + 1, flags::ACK, b"");
}

#[test]
fn tls_hellos_are_the_same_however_the_handshake_is_cut() {
    let ch = tls_client_hello("www.example.com", &["h2", "http/1.1"]);
    let sh = tls_server_hello(0xc02f, Some("h2"));
    // the server's first flight: ServerHello, a 200 KB Certificate,
    // ServerHelloDone, in 16 KiB records (the ServerHello shares the first)
    let mut flight = sh[5..].to_vec();
    let chain = 200_000 - 3;
    let mut cert = (chain as u32).to_be_bytes()[1..].to_vec();
    cert.extend((0..chain).map(|i| (i % 251) as u8));
    flight.extend(handshake(11, &cert));
    flight.extend(handshake(14, &[]));
    let flight = records(22, &flight, 1 << 14);

    let mut packets = Vec::new();
    connection(&mut packets, 40001, &ch, ch.len(), &sh, sh.len());
    connection(&mut packets, 40002, &ch, 1, &flight, 1460);
    // the ClientHello in one-byte records, five bytes per segment
    connection(&mut packets, 40003, &records(22, &ch[5..], 1), 5, &sh, 1);

    let dir = tempfile::tempdir().unwrap();
    let config =
        Config::from_toml(&format!("[output]\ndir = \"{}\"\n", dir.path().display())).unwrap();
    let registry = builtin_registry();
    let names = vec!["tls".to_string()];
    let factory = || registry.build(&names, &config);
    let mut out = Engine::new(&config, 1)
        .unwrap()
        .run(&factory, &mut Mem::new(packets))
        .unwrap();
    out.save_results(dir.path()).unwrap();
    let text = std::fs::read_to_string(dir.path().join("tls.jsonl")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // one record per hello: a ClientHello and a ServerHello per connection
    assert_eq!(lines.len(), 6, "{text}");
    let of = |port: u64, hello: &str| -> Value {
        let found: Vec<&Value> = lines
            .iter()
            .filter(|l| l["src_port"] == port && l["hello"] == hello)
            .collect();
        assert_eq!(found.len(), 1, "{port} {hello}: {text}");
        let mut v = found[0].clone();
        // what differs between the connections: time, flow, port
        for k in ["ts", "flow_id", "src_port"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    let client = of(40001, "client_hello");
    let server = of(40001, "server_hello");
    assert_eq!(client["sni"], "www.example.com");
    assert_eq!(client["index"], 0);
    assert_eq!(client["ja3"], "771,4865-49199-156,0-10-11-13-16-43,29-23,0");
    assert_eq!(server["ja3s"], "771,49199,65281-16");
    assert_eq!(server["alpn"], serde_json::json!(["h2"]));
    assert_eq!(
        server["cipher_name"],
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    );
    for port in [40002, 40003] {
        assert_eq!(of(port, "client_hello"), client, "{port}");
        assert_eq!(of(port, "server_hello"), server, "{port}");
    }
    // records come ordered by time
    let ts: Vec<&str> = lines.iter().map(|l| l["ts"].as_str().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
}

/// One TCP connection from client port `port` to `server_port`: three-way
/// handshake, then each message of `talk` (from the client when its flag is
/// set) in one segment, in that order, then FINs.
fn exchange(packets: &mut Vec<OwnedPacket>, port: u16, server_port: u16, talk: &[(bool, &[u8])]) {
    let mut push = |from_client: bool, seq: u32, ack: u32, fl: u8, data: &[u8]| {
        let (s, d, sp, dp) = if from_client {
            (CLIENT, SERVER, port, server_port)
        } else {
            (SERVER, CLIENT, server_port, port)
        };
        let frame = build::eth_ip(s, d, 6, &build::tcp(s, d, sp, dp, seq, ack, fl, data));
        let index = packets.len() as u64;
        packets.push(OwnedPacket {
            index,
            interface: 0,
            linktype: LinkType::ETHERNET,
            ts: Some(Timestamp(1_700_000_000_000_000_000 + index as i64 * 1000)),
            origlen: frame.len() as u32,
            data: frame,
        });
    };
    let (mut c, mut s) = (1000u32, 5000u32);
    push(true, c, 0, flags::SYN, b"");
    push(false, s, c + 1, flags::SYN | flags::ACK, b"");
    c += 1;
    s += 1;
    push(true, c, s, flags::ACK, b"");
    for (from_client, data) in talk {
        if *from_client {
            push(true, c, s, flags::ACK | flags::PSH, data);
            c += data.len() as u32;
        } else {
            push(false, s, c, flags::ACK | flags::PSH, data);
            s += data.len() as u32;
        }
    }
    push(true, c, s, flags::FIN | flags::ACK, b"");
    push(false, s, c + 1, flags::FIN | flags::ACK, b"");
    push(true, c + 1, s + 1, flags::ACK, b"");
}

/// TLS after a plaintext exchange on the same TCP stream: SOCKS5 (RFC 1928
/// greeting, method selection, CONNECT request and reply), SOCKS4a, HTTP
/// `CONNECT` with its `200` response, and SMTP `STARTTLS` (RFC 3207) give
/// the same ClientHello and ServerHello records (SNI, JA3, JA4 ...) as the
/// same hellos at the start of a stream; a plain SMTP session without TLS
/// gives none.
#[test]
fn tls_after_socks_connect_and_starttls_is_found() {
    let ch = tls_client_hello("www.example.com", &["h2", "http/1.1"]);
    let sh = tls_server_hello(0xc02f, Some("h2"));
    let mut socks5_request = vec![5, 1, 0, 3, 15];
    socks5_request.extend_from_slice(b"www.example.com");
    socks5_request.extend_from_slice(&443u16.to_be_bytes());
    let mut socks4a_request = vec![4, 1, 1, 0xbb, 0, 0, 0, 1];
    socks4a_request.extend_from_slice(b"user\0www.example.com\0");

    let mut packets = Vec::new();
    exchange(&mut packets, 40010, 443, &[(true, &ch), (false, &sh)]);
    exchange(
        &mut packets,
        40011,
        1080,
        &[
            (true, &[5, 1, 0]),
            (false, &[5, 0]),
            (true, &socks5_request),
            (false, &[5, 0, 0, 1, 198, 51, 100, 20, 0x9c, 0x41]),
            (true, &ch),
            (false, &sh),
        ],
    );
    exchange(
        &mut packets,
        40012,
        1080,
        &[
            (true, &socks4a_request),
            (false, &[0, 0x5a, 0, 0, 0, 0, 0, 0]),
            (true, &ch),
            (false, &sh),
        ],
    );
    exchange(
        &mut packets,
        40013,
        3128,
        &[
            (
                true,
                b"CONNECT www.example.com:443 HTTP/1.1\r\nHost: www.example.com:443\r\n\r\n",
            ),
            (false, b"HTTP/1.1 200 Connection established\r\n\r\n"),
            (true, &ch),
            (false, &sh),
        ],
    );
    exchange(
        &mut packets,
        40014,
        25,
        &[
            (false, b"220 mx.example.com ESMTP\r\n"),
            (true, b"EHLO client.example.org\r\n"),
            (
                false,
                b"250-mx.example.com\r\n250-STARTTLS\r\n250 SIZE 1000000\r\n",
            ),
            (true, b"STARTTLS\r\n"),
            (false, b"220 2.0.0 Ready to start TLS\r\n"),
            (true, &ch),
            (false, &sh),
        ],
    );
    // a warning alert (unrecognized_name) before the ServerHello is TLS,
    // not a plaintext exchange
    let mut alert_first = vec![0x15, 3, 3, 0, 2, 1, 0x70];
    alert_first.extend_from_slice(&sh);
    exchange(
        &mut packets,
        40016,
        443,
        &[(true, &ch), (false, &alert_first)],
    );
    exchange(
        &mut packets,
        40015,
        25,
        &[
            (false, b"220 mx.example.com ESMTP\r\n"),
            (true, b"EHLO client.example.org\r\n"),
            (false, b"250 mx.example.com\r\n"),
            (true, b"QUIT\r\n"),
            (false, b"221 Bye\r\n"),
        ],
    );

    let dir = tempfile::tempdir().unwrap();
    let config =
        Config::from_toml(&format!("[output]\ndir = \"{}\"\n", dir.path().display())).unwrap();
    let registry = builtin_registry();
    let names = vec!["tls".to_string()];
    let factory = || registry.build(&names, &config);
    let mut out = Engine::new(&config, 1)
        .unwrap()
        .run(&factory, &mut Mem::new(packets))
        .unwrap();
    out.save_results(dir.path()).unwrap();
    let text = std::fs::read_to_string(dir.path().join("tls.jsonl")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 12, "{text}");
    let of = |port: u64, hello: &str| -> Value {
        let found: Vec<&Value> = lines
            .iter()
            .filter(|l| l["src_port"] == port && l["hello"] == hello)
            .collect();
        assert_eq!(found.len(), 1, "{port} {hello}: {text}");
        let mut v = found[0].clone();
        for k in ["ts", "flow_id", "src_port", "dst_port"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    let client = of(40010, "client_hello");
    let server = of(40010, "server_hello");
    assert_eq!(client["sni"], "www.example.com");
    assert!(
        client["ja4"].as_str().unwrap().starts_with("t13d0306h2_"),
        "{client}"
    );
    for port in [40011, 40012, 40013, 40014, 40016] {
        assert_eq!(of(port, "client_hello"), client, "{port}");
        assert_eq!(of(port, "server_hello"), server, "{port}");
    }
    assert!(!lines.iter().any(|l| l["src_port"] == 40015), "{text}");
}
