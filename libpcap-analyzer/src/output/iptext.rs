//! IP addresses as text, the text `Display` gives (RFC 5952 for IPv6: lower
//! case, no leading zeros, the first longest run of two or more zero groups
//! as `::`, an IPv4-mapped address as `::ffff:a.b.c.d`), written into a
//! stack buffer: `Display` goes through the formatting machinery, several
//! times the instructions for the addresses of every record and report row.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest text of an address (`ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff`
/// is 39 bytes; `::ffff:255.255.255.255` is 22).
const MAX_TEXT: usize = 39;

/// The decimal text of every octet value followed by a dot, and the count
/// of its digits.
const OCTETS: [([u8; 4], usize); 256] = {
    let mut t = [([0u8; 4], 0usize); 256];
    let mut v = 0;
    while v < 256 {
        let b = v as u8;
        t[v] = if b >= 100 {
            ([b'0' + b / 100, b'0' + b / 10 % 10, b'0' + b % 10, b'.'], 3)
        } else if b >= 10 {
            ([b'0' + b / 10, b'0' + b % 10, b'.', 0], 2)
        } else {
            ([b'0' + b, b'.', 0, 0], 1)
        };
        v += 1;
    }
    t
};

/// The text of an address, built on the stack.
pub(crate) struct IpText {
    buf: [u8; MAX_TEXT],
    len: usize,
}

impl IpText {
    /// The text of `ip`.
    pub(crate) fn new(ip: &IpAddr) -> IpText {
        let mut t = IpText {
            buf: [0; MAX_TEXT],
            len: 0,
        };
        match ip {
            IpAddr::V4(a) => t.v4(a),
            IpAddr::V6(a) => t.v6(a),
        }
        t
    }

    /// The text's bytes (ASCII).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// The text (only ASCII is written, so it is always whole).
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn v4(&mut self, a: &Ipv4Addr) {
        // each octet's digits and a dot written at once (4 bytes, room
        // checked once), the length moved by the digits' count
        for x in a.octets() {
            let (Some(&(digits, n)), Some(slot)) = (
                OCTETS.get(usize::from(x)),
                self.buf.get_mut(self.len..self.len + 4),
            ) else {
                return;
            };
            slot.copy_from_slice(&digits);
            self.len += n + 1;
        }
        // no dot after the last octet
        self.len = self.len.saturating_sub(1);
    }

    fn hex_group(&mut self, g: u16) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut started = false;
        for shift in [12u16, 8, 4, 0] {
            let d = usize::from((g >> shift) & 0xf);
            if d != 0 || started || shift == 0 {
                started = true;
                self.push(HEX.get(d).copied().unwrap_or(b'0'));
            }
        }
    }

    fn groups(&mut self, groups: &[u16]) {
        for (i, &g) in groups.iter().enumerate() {
            if i > 0 {
                self.push(b':');
            }
            self.hex_group(g);
        }
    }

    fn v6(&mut self, a: &Ipv6Addr) {
        if let Some(v4) = a.to_ipv4_mapped() {
            for &b in b"::ffff:" {
                self.push(b);
            }
            self.v4(&v4);
            return;
        }
        let s = a.segments();
        // the first longest run of zero groups
        let (mut best, mut best_len, mut run, mut run_len) = (0, 0, 0, 0);
        for (i, &g) in s.iter().enumerate() {
            if g == 0 {
                if run_len == 0 {
                    run = i;
                }
                run_len += 1;
                if run_len > best_len {
                    (best, best_len) = (run, run_len);
                }
            } else {
                run_len = 0;
            }
        }
        if best_len > 1 {
            self.groups(s.get(..best).unwrap_or_default());
            self.push(b':');
            self.push(b':');
            self.groups(s.get(best + best_len..).unwrap_or_default());
        } else {
            self.groups(&s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic generator (splitmix64).
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn text_is_what_display_gives() {
        let mut addrs: Vec<IpAddr> = [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "::",
            "::1",
            "1::",
            "::ffff:10.0.0.1",
            "::ffff:0.0.0.0",
            "::10.0.0.1",
            "64:ff9b::192.0.2.33",
            "2001:db8::1",
            "2001:db8:0:0:1:0:0:1",
            "2001:0:0:1:0:0:0:1",
            "2001:db8:0:1:1:1:1:1",
            "fe80::1:0:0:0",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "0:1:0:1:0:1:0:1",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        // random addresses with groups zero half of the time (runs of every
        // length and place), and random IPv4 ones
        let mut state = 7u64;
        for _ in 0..20_000 {
            let mut g = [0u16; 8];
            for x in &mut g {
                let r = next(&mut state);
                if r & 1 == 1 {
                    *x = (r >> 8) as u16 >> ((r >> 4) & 15);
                }
            }
            addrs.push(IpAddr::V6(Ipv6Addr::from(g)));
            addrs.push(IpAddr::V4(Ipv4Addr::from(next(&mut state) as u32)));
        }
        for a in &addrs {
            assert_eq!(IpText::new(a).as_bytes(), a.to_string().as_bytes(), "{a:?}");
        }
    }
}
