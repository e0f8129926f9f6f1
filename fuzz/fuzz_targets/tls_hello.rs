//! Arbitrary bytes as a TLS stream: records parsed whole and fed in two
//! pieces, as QUIC CRYPTO data, and behind the preamble skipper (SOCKS,
//! HTTP CONNECT, STARTTLS). No panic; every JA4 that comes out has the
//! shape the JA4 specification gives it (a 10-character `a` part of ASCII
//! letters and digits, then two 12-digit lowercase hex hashes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use libpcap_analyzer::proto::preamble::{PreambleSkipper, Step};
use libpcap_analyzer::proto::tls::{
    TlsEvent, TlsStreamParser, parse_tls_records, quic_handshake_messages,
};

fn check(events: &[TlsEvent]) {
    for e in events {
        if let TlsEvent::ClientHello(h) = e {
            let parts: Vec<&str> = h.ja4.split('_').collect();
            assert_eq!(parts.len(), 3, "{}", h.ja4);
            assert!(
                parts[0].len() == 10 && parts[0].bytes().all(|c| c.is_ascii_alphanumeric()),
                "{}",
                h.ja4
            );
            for p in &parts[1..] {
                assert!(
                    p.len() == 12 && p.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
                    "{}",
                    h.ja4
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let (events, consumed) = parse_tls_records(bytes);
    assert!(consumed <= bytes.len());
    check(&events);
    // the same bytes in two pieces
    let cut = usize::from(sel) * bytes.len() / 256;
    let mut parser = TlsStreamParser::new();
    let mut sink: Vec<TlsEvent> = Vec::new();
    parser.feed(bytes.get(..cut).unwrap_or_default(), &mut sink);
    parser.feed(bytes.get(cut..).unwrap_or_default(), &mut sink);
    check(&sink);
    // as the CRYPTO stream of a QUIC Initial
    let (events, used) = quic_handshake_messages(bytes);
    assert!(used <= bytes.len());
    check(&events);
    // behind an exchange that comes before TLS
    let mut skip = PreambleSkipper::new(sel & 1 == 1, 4096);
    for piece in [
        bytes.get(..cut).unwrap_or_default(),
        bytes.get(cut..).unwrap_or_default(),
    ] {
        match skip.feed(piece) {
            Step::More => continue,
            Step::Tls(tls) => {
                let (events, _) = parse_tls_records(&tls);
                check(&events);
                break;
            }
            _ => break,
        }
    }
});
