//! Arbitrary datagrams as QUIC: long headers, Initial packets opened with
//! the keys of their own connection id and of a fixed one, frames walked and
//! CRYPTO data put in order under a small limit. No panic; a stream never
//! holds more than its limit.

#![no_main]

use libfuzzer_sys::fuzz_target;
use libpcap_analyzer::proto::quic::{
    CryptoStream, InitialKeys, PacketType, crypto_frames, parse_long_header,
};

fuzz_target!(|data: &[u8]| {
    let mut stream = CryptoStream::new(4096);
    let mut rest = data;
    for _ in 0..8 {
        let Ok(h) = parse_long_header(rest) else {
            break;
        };
        let packet = rest.get(..h.len).unwrap_or(rest);
        if h.packet_type == Some(PacketType::Initial) {
            for client in [true, false] {
                if let Some(keys) = InitialKeys::new(h.version, h.dcid, client)
                    && let Ok((_, plain)) = keys.open(packet, &h)
                    && let Ok(frames) = crypto_frames(&plain)
                {
                    for f in frames {
                        stream.add(f.offset, f.data);
                    }
                }
            }
            // the frame walker on the unprotected bytes too
            if let Ok(frames) = crypto_frames(packet) {
                for f in frames {
                    stream.add(f.offset, f.data);
                }
            }
        }
        assert!(stream.contiguous().len() <= 4096);
        if h.len == 0 || h.len >= rest.len() {
            break;
        }
        rest = &rest[h.len..];
    }
});
