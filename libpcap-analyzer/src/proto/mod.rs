//! Pure application-protocol parsers.
//!
//! These modules have no dependency on the plugin API: they take bytes (a UDP
//! payload, a reassembled TCP stream prefix, a flow tuple) and return owned,
//! serializable values. None of them panics on malformed input.

pub mod community_id;
pub mod dns;
pub mod preamble;
pub mod quic;
pub mod tls;

/// `data` as lowercase hexadecimal, two digits per byte.
pub(crate) fn to_hex(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().saturating_mul(2));
    for b in data {
        for nibble in [b >> 4, b & 0x0f] {
            // a nibble is always a base-16 digit: the fallback is never taken
            out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::to_hex;

    #[test]
    fn to_hex_two_lowercase_digits_per_byte() {
        assert_eq!(to_hex(&[]), "");
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa0, 0xff, 0x5c]), "000fa0ff5c");
        let all: Vec<u8> = (0..=255).collect();
        let h = to_hex(&all);
        assert_eq!(h.len(), 512);
        for (i, pair) in h.as_bytes().chunks(2).enumerate() {
            assert_eq!(pair, format!("{i:02x}").as_bytes());
        }
    }
}
