//! A binary trie of address prefixes, for matching an address against many
//! CIDR keys or rules in time bounded by the address length (32 or 128
//! steps at most, fewer when the trie is shallower) instead of the number of
//! prefixes.
//!
//! Each prefix carries a number (the position of its rule or key); a lookup
//! returns the smallest number among the prefixes that contain the address,
//! so that "the first rule that matches" keeps its meaning.

use crate::filter::Cidr;
use std::net::IpAddr;

/// No child / no value.
const NONE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Node {
    child: [u32; 2],
    value: u32,
}

const EMPTY: Node = Node {
    child: [NONE; 2],
    value: NONE,
};

/// Prefixes of both families (two roots: IPv4 and IPv6), each with a value.
#[derive(Debug, Clone)]
pub(crate) struct PrefixTrie {
    /// Node 0 is the IPv4 root, node 1 the IPv6 root.
    nodes: Vec<Node>,
    len: usize,
}

impl Default for PrefixTrie {
    fn default() -> Self {
        PrefixTrie {
            nodes: vec![EMPTY, EMPTY],
            len: 0,
        }
    }
}

/// The address as 128 bits, left-aligned (IPv4 in the top 32), and the
/// root for its family.
fn bits(ip: IpAddr) -> (u128, usize, u32) {
    match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)) << 96, 0, 32),
        IpAddr::V6(a) => (u128::from(a), 1, 128),
    }
}

impl PrefixTrie {
    /// Number of prefixes inserted.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// `true` if no prefix was inserted.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `prefix` with `value` (a prefix given twice keeps the smaller
    /// value). `false` if the trie is full (over 4 billion nodes).
    pub(crate) fn insert(&mut self, prefix: Cidr, value: u32) -> bool {
        let (addr, root, _) = bits(prefix.addr());
        let mut n = root;
        for i in 0..u32::from(prefix.prefix_len()) {
            let bit = ((addr >> (127 - i)) & 1) as usize;
            let next = self
                .nodes
                .get(n)
                .and_then(|node| node.child.get(bit))
                .copied()
                .unwrap_or(NONE);
            n = if next == NONE {
                let Ok(id) = u32::try_from(self.nodes.len()) else {
                    return false;
                };
                if id == NONE {
                    return false;
                }
                self.nodes.push(EMPTY);
                if let Some(slot) = self.nodes.get_mut(n).and_then(|p| p.child.get_mut(bit)) {
                    *slot = id;
                }
                id as usize
            } else {
                next as usize
            };
        }
        if let Some(node) = self.nodes.get_mut(n) {
            node.value = node.value.min(value);
        }
        self.len += 1;
        true
    }

    /// The smallest value of the prefixes containing `ip`.
    pub(crate) fn lookup(&self, ip: IpAddr) -> Option<u32> {
        let (addr, root, width) = bits(ip);
        let mut best = NONE;
        let mut n = root;
        let mut i = 0;
        while let Some(node) = self.nodes.get(n) {
            best = best.min(node.value);
            if i == width {
                break;
            }
            let bit = ((addr >> (127 - i)) & 1) as usize;
            let next = node.child.get(bit).copied().unwrap_or(NONE);
            if next == NONE {
                break;
            }
            n = next as usize;
            i += 1;
        }
        (best != NONE).then_some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie(prefixes: &[&str]) -> PrefixTrie {
        let mut t = PrefixTrie::default();
        for (i, p) in prefixes.iter().enumerate() {
            assert!(t.insert(Cidr::parse(p).unwrap(), i as u32));
        }
        t
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn smallest_value_of_the_containing_prefixes() {
        let t = trie(&[
            "10.1.0.0/16",
            "10.0.0.0/8",
            "10.1.2.3",
            "2001:db8::/32",
            "::/0",
        ]);
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(0));
        assert_eq!(t.lookup(ip("10.2.0.1")), Some(1));
        assert_eq!(t.lookup(ip("11.0.0.1")), None);
        assert_eq!(t.lookup(ip("2001:db8::1")), Some(3));
        assert_eq!(
            t.lookup(ip("fe80::1")),
            Some(4),
            "::/0 holds every IPv6 address"
        );
        let t = trie(&["10.1.2.3", "10.0.0.0/8"]);
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(0));
        assert_eq!(t.lookup(ip("10.1.2.4")), Some(1));
        assert_eq!(trie(&["0.0.0.0/0"]).lookup(ip("1.2.3.4")), Some(0));
        assert_eq!(trie(&["0.0.0.0/0"]).lookup(ip("::1")), None);
        assert!(trie(&[]).is_empty());
    }

    #[test]
    fn agrees_with_a_linear_scan() {
        // a deterministic spread of prefixes and addresses of both families
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut cidrs = Vec::new();
        for _ in 0..300 {
            let r = next();
            let c = if r & 1 == 0 {
                // few distinct leading bits, so that prefixes nest
                let a = std::net::Ipv4Addr::from(((r >> 8) as u32) & 0xc0ff_ff00);
                Cidr::parse(&format!("{a}/{}", (r >> 40) % 33)).unwrap()
            } else {
                let a = std::net::Ipv6Addr::from(u128::from(r) << 64 & (0xc000_ffffu128 << 96));
                Cidr::parse(&format!("{a}/{}", (r >> 40) % 129)).unwrap()
            };
            cidrs.push(c);
        }
        let mut t = PrefixTrie::default();
        for (i, c) in cidrs.iter().enumerate() {
            t.insert(*c, i as u32);
        }
        assert_eq!(t.len(), cidrs.len());
        for _ in 0..20_000 {
            let r = next();
            let a = if r & 1 == 0 {
                IpAddr::V4(std::net::Ipv4Addr::from(((r >> 8) as u32) & 0xc0ff_ffff))
            } else {
                IpAddr::V6(std::net::Ipv6Addr::from(
                    (u128::from(r) << 64 | u128::from(next())) & !(0x3fff_0000u128 << 96),
                ))
            };
            let want = cidrs.iter().position(|c| c.contains(a)).map(|i| i as u32);
            assert_eq!(t.lookup(a), want, "{a}");
        }
    }
}
