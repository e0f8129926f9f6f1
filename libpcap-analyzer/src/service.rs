//! Application protocols recognised by content, never by port: the
//! `service` of a flow record (Zeek's `conn.log` field).
//!
//! The analyzer looks at the first two payload packets of each side of a
//! flow ([`detect`]); each test reads a protocol's fixed structure:
//!
//! | service | transport | the payload starts with |
//! | --- | --- | --- |
//! | `dns` | UDP, TCP (after the 2-byte length) | a header with a known opcode, zero Z bit, 1 to 16 questions, section counts that fit the message, and a first question whose name and type/class are whole |
//! | `ssl` | TCP | a TLS handshake record (type 22, version 3.x, length up to 2^14 + 2048) holding a ClientHello or ServerHello |
//! | `http` | TCP | an HTTP/1 request line (a known method, a target, `HTTP/1.`) or status line (`HTTP/1.x NNN`) |
//! | `ssh` | TCP | the SSH identification string `SSH-2.` or `SSH-1.` |
//! | `quic` | UDP | a long-header Initial packet of QUIC v1, v2 or a draft version, with connection ids of at most 20 bytes |

use libpcap_tools::conn::service;
use libpcap_tools::ipproto;

/// The [`service`] bits the payload of one packet of IP protocol `proto`
/// shows (0 when none).
pub fn detect(proto: u8, payload: &[u8]) -> u8 {
    match proto {
        ipproto::TCP => {
            if is_tls(payload) {
                service::SSL
            } else if is_http(payload) {
                service::HTTP
            } else if payload.starts_with(b"SSH-2.") || payload.starts_with(b"SSH-1.") {
                service::SSH
            } else if payload.len() >= 14 && is_dns(&payload[2..]) {
                service::DNS
            } else {
                0
            }
        }
        ipproto::UDP => {
            if is_quic(payload) {
                service::QUIC
            } else if is_dns(payload) {
                service::DNS
            } else {
                0
            }
        }
        _ => 0,
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn is_tls(p: &[u8]) -> bool {
    let (Some(&t), Some(&major), Some(&minor), Some(len), Some(&hs)) =
        (p.first(), p.get(1), p.get(2), be16(p, 3), p.get(5))
    else {
        return false;
    };
    t == 22 && major == 3 && minor <= 4 && (4..=16384 + 2048).contains(&len) && (hs == 1 || hs == 2)
}

fn is_http(p: &[u8]) -> bool {
    const METHODS: [&[u8]; 9] = [
        b"GET ",
        b"POST ",
        b"HEAD ",
        b"PUT ",
        b"DELETE ",
        b"OPTIONS ",
        b"CONNECT ",
        b"TRACE ",
        b"PATCH ",
    ];
    // a request or status line starts with a method or the version: look
    // for its end only then (payloads are mostly not HTTP)
    if !p.starts_with(b"HTTP/1.") && !METHODS.iter().any(|m| p.starts_with(m)) {
        return false;
    }
    let line = p.get(..p.len().min(4096)).unwrap_or(p);
    let line = match line.iter().position(|&b| b == b'\n') {
        Some(n) => line.get(..n).unwrap_or(line),
        None => line,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(rest) = line.strip_prefix(b"HTTP/1.") {
        // status line: HTTP/1.x NNN
        return rest.len() >= 5
            && rest.first().is_some_and(u8::is_ascii_digit)
            && rest.get(1) == Some(&b' ')
            && rest
                .get(2..5)
                .is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    }
    let Some(m) = METHODS.iter().find(|m| line.starts_with(m)) else {
        return false;
    };
    let rest = line.get(m.len()..).unwrap_or(&[]);
    // the target has no space; then " HTTP/1.x"
    match rest.iter().position(|&b| b == b' ') {
        Some(n) if n > 0 => rest
            .get(n + 1..)
            .is_some_and(|v| v.starts_with(b"HTTP/1.") && v.len() == 8),
        _ => false,
    }
}

fn is_dns(m: &[u8]) -> bool {
    if m.len() < 17 {
        return false;
    }
    let (Some(flags), Some(qd), Some(an), Some(ns), Some(ar)) =
        (be16(m, 2), be16(m, 4), be16(m, 6), be16(m, 8), be16(m, 10))
    else {
        return false;
    };
    let opcode = (flags >> 11) & 0xf;
    if !matches!(opcode, 0 | 1 | 2 | 4 | 5 | 6) || flags & 0x0040 != 0 {
        return false;
    }
    if !(1..=16).contains(&qd) {
        return false;
    }
    // every record takes at least 5 bytes (question) or 11 (others)
    let least =
        12 + 5 * usize::from(qd) + 11 * (usize::from(an) + usize::from(ns) + usize::from(ar));
    if least > m.len() && flags & 0x0200 == 0 {
        // not truncated (TC) yet too short for its counts
        return false;
    }
    // the first question: labels, then type and class
    let mut at = 12;
    let mut total = 0usize;
    loop {
        let Some(&n) = m.get(at) else {
            return false;
        };
        if n == 0 {
            at += 1;
            break;
        }
        if n > 63 {
            return false;
        }
        total += usize::from(n) + 1;
        if total > 255 {
            return false;
        }
        at += usize::from(n) + 1;
    }
    let (Some(qtype), Some(qclass)) = (be16(m, at), be16(m, at + 2)) else {
        return false;
    };
    // class IN, CH, HS, NONE, ANY (the top bit is mDNS's unicast-response)
    qtype != 0 && matches!(qclass & 0x7fff, 1 | 3 | 4 | 254 | 255)
}

fn is_quic(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else {
        return false;
    };
    if b0 & 0xc0 != 0xc0 {
        return false; // not a long header with the fixed bit
    }
    let Some(v) = p.get(1..5) else {
        return false;
    };
    let version = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
    let ty = (b0 >> 4) & 3;
    let initial = match version {
        1 => ty == 0,
        0x6b33_43cf => ty == 1, // QUIC v2 (RFC 9369) renumbers the types
        v if v & 0xffff_ff00 == 0xff00_0000 && (v & 0xff) >= 27 => ty == 0,
        _ => false,
    };
    if !initial {
        return false;
    }
    let Some(&dcid) = p.get(5) else {
        return false;
    };
    let at = 6 + usize::from(dcid);
    let Some(&scid) = p.get(at) else {
        return false;
    };
    dcid <= 20 && scid <= 20 && p.len() > at + 1 + usize::from(scid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use libpcap_tools::conn::service::*;

    #[test]
    fn each_protocol_by_its_first_bytes() {
        let dns_query = crate::build::dns_query(0x1234, "www.example.org", 1);
        assert_eq!(detect(ipproto::UDP, &dns_query), DNS);
        let mut over_tcp = (dns_query.len() as u16).to_be_bytes().to_vec();
        over_tcp.extend_from_slice(&dns_query);
        assert_eq!(detect(ipproto::TCP, &over_tcp), DNS);
        let hello = crate::build::tls_client_hello("example.org", &["h2"]);
        assert_eq!(detect(ipproto::TCP, &hello), SSL);
        assert_eq!(
            detect(ipproto::TCP, b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n"),
            HTTP
        );
        assert_eq!(detect(ipproto::TCP, b"HTTP/1.1 200 OK\r\n"), HTTP);
        assert_eq!(detect(ipproto::TCP, b"SSH-2.0-OpenSSH_9.2\r\n"), SSH);
        // a QUIC v1 client Initial: long header, version 1, 8-byte DCID
        let mut quic = vec![0xc3, 0, 0, 0, 1, 8];
        quic.extend_from_slice(&[7; 8]);
        quic.push(0);
        quic.extend_from_slice(&[0; 1200]);
        assert_eq!(detect(ipproto::UDP, &quic), QUIC);
        // not by port, not by chance
        for junk in [
            &b"hello world, this is not a protocol"[..],
            b"GET",
            b"GETX / HTTP/1.1\r\n",
            b"\x16\x03\x01\x00\x05\x0b\x00\x00\x01\x00",
            &[0u8; 64],
            &[0xffu8; 64],
        ] {
            assert_eq!(detect(ipproto::TCP, junk), 0, "{junk:?}");
            assert_eq!(detect(ipproto::UDP, junk), 0, "{junk:?}");
        }
    }
}
