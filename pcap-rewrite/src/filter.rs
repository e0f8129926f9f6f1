//! Packet filters: keep and drop rules, key sets loaded from CSV files, time
//! windows and index ranges.
//!
//! # Rules
//!
//! A rule is a conjunction of terms written `TERM&TERM&…`; a packet matches
//! the rule when it matches every term. Terms:
//!
//! | term | matches |
//! | --- | --- |
//! | `host=IP` | source or destination address is `IP` |
//! | `src=IP`, `dst=IP` | source / destination address |
//! | `pair=IP1,IP2` | a packet between `IP1` and `IP2`, either direction |
//! | `net=CIDR`, `src-net=CIDR`, `dst-net=CIDR` | an address in the prefix (`10.0.0.0/8`, `2001:db8::/32`) |
//! | `proto=P` | transport protocol: `tcp`, `udp`, `icmp`, `icmpv6`, `sctp`, `gre`, `esp` or a number |
//! | `port=N`, `sport=N`, `dport=N` | either / source / destination port (TCP, UDP, SCTP, UDP-Lite, DCCP) |
//! | `tuple=PROTO,IP1,PORT1,IP2,PORT2` | the 5-tuple, either direction |
//! | `time=START..END` | capture time in `[START, END)`; either bound may be empty |
//! | `index=A-B` | packet number in `A..=B`, 1-based as in Wireshark (`A-` and `-B` allowed) |
//!
//! Times are seconds since the epoch (`1486012623.5`) or RFC 3339
//! (`2017-02-02T05:17:03.5Z`, `…+01:00`).
//!
//! # Decision
//!
//! A packet is written when it matches at least one keep rule or keep key
//! (or there are none), and matches no drop rule or drop key. Packets without
//! an IP header never match address, protocol or port terms (so they are
//! dropped when keep rules use such terms, and kept by drop rules).
//! Addresses, protocol and ports are those of the first IP header of the
//! packet as written (after any link conversion or decapsulation).
//!
//! # Key files
//!
//! One key per line, comma-separated: `IP` or `CIDR` (a host or prefix, either
//! direction), `IP1,IP2` (an address pair, either direction), or
//! `PROTO,IP1,PORT1,IP2,PORT2` (a 5-tuple, either direction). Blank lines and
//! lines starting with `#` are ignored, and so is a first line in which no
//! field is an address (a header such as `proto,src,sport,dst,dport`).
//!
//! # Cost
//!
//! Deciding allocates nothing (the [`Label`] of a kept packet borrows the
//! rule or holds the key). Key lookups are hashed, prefixes are in a binary
//! trie; [`FilterSet::matcher`] puts single-term address rules in tries as
//! well when there are several, so thousands of keys or rules cost about
//! as much as a few.

use crate::key::PacketKey;
use crate::prefix::PrefixTrie;
use crate::{Error, Result};
use libpcap_tools::Timestamp;
use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

/// An address prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// Parses `ADDR/LEN` or a bare address (a host prefix).
    ///
    /// # Errors
    /// [`Error::Usage`] for an invalid address or length.
    pub fn parse(s: &str) -> Result<Cidr> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr = parse_ip(a)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| Error::Usage(format!("invalid prefix length in '{s}'")))?,
            None => max,
        };
        Ok(Cidr { addr, len })
    }

    /// The address as written (bits beyond the prefix length included).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// `true` if `ip` is in the prefix (an IPv4 address never matches an
    /// IPv6 prefix and conversely).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A 5-tuple in canonical order (the smaller endpoint first), so that both
/// directions of a flow give the same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowTuple {
    /// Transport protocol.
    pub proto: u8,
    /// The smaller (address, port) endpoint.
    pub a: (IpAddr, u16),
    /// The larger endpoint.
    pub b: (IpAddr, u16),
}

impl FlowTuple {
    /// The canonical tuple of two endpoints.
    pub fn new(proto: u8, x: (IpAddr, u16), y: (IpAddr, u16)) -> FlowTuple {
        if x <= y {
            FlowTuple { proto, a: x, b: y }
        } else {
            FlowTuple { proto, a: y, b: x }
        }
    }

    /// The tuple of a packet, when its ports are known.
    pub fn of(k: &PacketKey) -> Option<FlowTuple> {
        let (sp, dp) = k.ports?;
        Some(FlowTuple::new(k.proto, (k.src, sp), (k.dst, dp)))
    }
}

/// The readable label of the flow, as [`flow_label`] gives it.
impl fmt::Display for FlowTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.proto {
            6 => f.write_str("tcp")?,
            17 => f.write_str("udp")?,
            132 => f.write_str("sctp")?,
            n => write!(f, "proto{n}")?,
        }
        write!(f, "_{}_{}_{}_{}", self.a.0, self.a.1, self.b.0, self.b.1)
    }
}

fn canon_pair(x: IpAddr, y: IpAddr) -> (IpAddr, IpAddr) {
    if x <= y { (x, y) } else { (y, x) }
}

/// One condition of a rule (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Term {
    /// Source or destination address.
    Host(IpAddr),
    /// Source address.
    Src(IpAddr),
    /// Destination address.
    Dst(IpAddr),
    /// Both addresses, either direction (stored in canonical order).
    Pair(IpAddr, IpAddr),
    /// Source or destination in the prefix.
    Net(Cidr),
    /// Source in the prefix.
    SrcNet(Cidr),
    /// Destination in the prefix.
    DstNet(Cidr),
    /// Transport protocol.
    Proto(u8),
    /// Source or destination port.
    Port(u16),
    /// Source port.
    SrcPort(u16),
    /// Destination port.
    DstPort(u16),
    /// The 5-tuple, either direction.
    Tuple(FlowTuple),
    /// Capture time in `[start, end)`.
    Time(Option<Timestamp>, Option<Timestamp>),
    /// 1-based packet number in `first..=last`.
    Index(u64, u64),
}

/// What a term is evaluated on.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The packet's key, `None` when it has no IP header.
    pub key: Option<&'a PacketKey>,
    /// Capture time (`None` for pcapng Simple Packet Blocks).
    pub ts: Option<Timestamp>,
    /// 0-based index of the packet in the input.
    pub index: u64,
}

impl Term {
    /// `true` if the term needs the transport ports.
    pub fn needs_ports(&self) -> bool {
        matches!(
            self,
            Term::Port(_) | Term::SrcPort(_) | Term::DstPort(_) | Term::Tuple(_)
        )
    }

    /// Evaluates the term.
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        match self {
            Term::Time(start, end) => {
                let Some(ts) = s.ts else { return false };
                start.is_none_or(|a| ts >= a) && end.is_none_or(|b| ts < b)
            }
            Term::Index(a, b) => {
                let n = s.index.saturating_add(1);
                n >= *a && n <= *b
            }
            _ => {
                let Some(k) = s.key else { return false };
                match self {
                    Term::Host(ip) => k.src == *ip || k.dst == *ip,
                    Term::Src(ip) => k.src == *ip,
                    Term::Dst(ip) => k.dst == *ip,
                    Term::Pair(x, y) => canon_pair(k.src, k.dst) == (*x, *y),
                    Term::Net(n) => n.contains(k.src) || n.contains(k.dst),
                    Term::SrcNet(n) => n.contains(k.src),
                    Term::DstNet(n) => n.contains(k.dst),
                    Term::Proto(p) => k.proto == *p,
                    Term::Port(p) => k.ports.is_some_and(|(a, b)| a == *p || b == *p),
                    Term::SrcPort(p) => k.ports.is_some_and(|(a, _)| a == *p),
                    Term::DstPort(p) => k.ports.is_some_and(|(_, b)| b == *p),
                    Term::Tuple(t) => FlowTuple::of(k).is_some_and(|f| f == *t),
                    Term::Time(..) | Term::Index(..) => false,
                }
            }
        }
    }
}

/// A conjunction of terms, with the text it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The terms, all of which must match.
    pub terms: Vec<Term>,
    /// The rule as written (used to name files in `--split key` mode).
    pub text: String,
}

impl Rule {
    /// Parses `TERM&TERM&…` (see the [module docs](self)).
    ///
    /// # Errors
    /// [`Error::Usage`] naming the bad term.
    pub fn parse(text: &str) -> Result<Rule> {
        let mut terms = Vec::new();
        for t in text.split('&') {
            terms.push(parse_term(t.trim())?);
        }
        Ok(Rule {
            terms,
            text: text.to_string(),
        })
    }

    /// `true` if every term matches.
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        self.terms.iter().all(|t| t.matches(s))
    }

    fn needs_ports(&self) -> bool {
        self.terms.iter().any(Term::needs_ports)
    }
}

fn parse_ip(s: &str) -> Result<IpAddr> {
    s.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| Error::Usage(format!("invalid IP address '{s}'")))
}

fn parse_port(s: &str) -> Result<u16> {
    s.trim()
        .parse()
        .map_err(|_| Error::Usage(format!("invalid port '{s}'")))
}

/// Parses a protocol name or number.
///
/// # Errors
/// [`Error::Usage`] for an unknown name.
pub fn parse_proto(s: &str) -> Result<u8> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "icmp" => 1,
        "igmp" => 2,
        "ipip" => 4,
        "tcp" => 6,
        "udp" => 17,
        "ipv6" => 41,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "icmpv6" | "icmp6" => 58,
        "sctp" => 132,
        other => other
            .parse()
            .map_err(|_| Error::Usage(format!("unknown protocol '{s}'")))?,
    })
}

fn parse_tuple(v: &str) -> Result<FlowTuple> {
    let f: Vec<&str> = v.split(',').collect();
    let [p, a, ap, b, bp] = f.as_slice() else {
        return Err(Error::Usage(format!(
            "a 5-tuple is PROTO,IP1,PORT1,IP2,PORT2, got '{v}'"
        )));
    };
    Ok(FlowTuple::new(
        parse_proto(p)?,
        (parse_ip(a)?, parse_port(ap)?),
        (parse_ip(b)?, parse_port(bp)?),
    ))
}

fn parse_term(t: &str) -> Result<Term> {
    let Some((name, v)) = t.split_once('=') else {
        return Err(Error::Usage(format!(
            "invalid filter term '{t}': expected NAME=VALUE (host, src, dst, pair, net, src-net, \
             dst-net, proto, port, sport, dport, tuple, time, index)"
        )));
    };
    let v = v.trim();
    Ok(match name.trim() {
        "host" => Term::Host(parse_ip(v)?),
        "src" => Term::Src(parse_ip(v)?),
        "dst" => Term::Dst(parse_ip(v)?),
        "pair" => {
            let (a, b) = v
                .split_once(',')
                .ok_or_else(|| Error::Usage(format!("pair=IP1,IP2 expected, got '{v}'")))?;
            let (a, b) = canon_pair(parse_ip(a)?, parse_ip(b)?);
            Term::Pair(a, b)
        }
        "net" => Term::Net(Cidr::parse(v)?),
        "src-net" => Term::SrcNet(Cidr::parse(v)?),
        "dst-net" => Term::DstNet(Cidr::parse(v)?),
        "proto" => Term::Proto(parse_proto(v)?),
        "port" => Term::Port(parse_port(v)?),
        "sport" => Term::SrcPort(parse_port(v)?),
        "dport" => Term::DstPort(parse_port(v)?),
        "tuple" => Term::Tuple(parse_tuple(v)?),
        "time" => {
            let (a, b) = v
                .split_once("..")
                .ok_or_else(|| Error::Usage(format!("time=START..END expected, got '{v}'")))?;
            let opt = |s: &str| -> Result<Option<Timestamp>> {
                if s.trim().is_empty() {
                    Ok(None)
                } else {
                    parse_time(s).map(Some)
                }
            };
            Term::Time(opt(a)?, opt(b)?)
        }
        "index" => {
            let (a, b) = parse_index_range(v)?;
            Term::Index(a, b)
        }
        other => {
            return Err(Error::Usage(format!(
                "unknown filter term '{other}' in '{t}'"
            )));
        }
    })
}

/// Parses `A-B`, `A-`, `-B` or `A` (1-based, inclusive, `A <= B`).
///
/// # Errors
/// [`Error::Usage`] for anything else: not numbers, a packet number 0, or
/// `A` after `B` (`5-2`).
pub fn parse_index_range(v: &str) -> Result<(u64, u64)> {
    let bad = || {
        Error::Usage(format!(
            "invalid index range '{v}' (expected A-B, A-, -B or A, packet numbers from 1)"
        ))
    };
    let num = |s: &str, d: u64| -> Result<u64> {
        if s.trim().is_empty() {
            Ok(d)
        } else {
            s.trim().parse().map_err(|_| bad())
        }
    };
    let (a, b) = match v.split_once('-') {
        Some((a, b)) => (num(a, 1)?, num(b, u64::MAX)?),
        None => {
            let n = num(v, 0)?;
            (n, n)
        }
    };
    if a == 0 || b == 0 {
        return Err(bad());
    }
    if a > b {
        return Err(Error::Usage(format!(
            "invalid index range '{v}': packet {a} comes after packet {b}; give the first \
             packet first (A-B with A <= B)"
        )));
    }
    Ok((a, b))
}

/// Parses a time: seconds since the epoch with an optional fraction
/// (`1486012623.234684`, exact to the nanosecond), or RFC 3339
/// (`2017-02-02T05:17:03.234684Z`, `2017-02-02 06:17:03+01:00`).
///
/// # Errors
/// [`Error::Usage`] for anything else.
pub fn parse_time(s: &str) -> Result<Timestamp> {
    let s = s.trim();
    let bad = || {
        Error::Usage(format!(
            "invalid time '{s}' (expected epoch seconds or RFC 3339 such as 2017-02-02T05:17:03Z)"
        ))
    };
    if s.contains('-') && s.len() >= 10 && !s.starts_with('-') {
        return parse_rfc3339(s).ok_or_else(bad);
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let (secs, frac) = body.split_once('.').unwrap_or((body, ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    let nanos = parse_frac(frac).ok_or_else(bad)?;
    let t = secs
        .checked_mul(1_000_000_000)
        .and_then(|v| v.checked_add(nanos))
        .ok_or_else(bad)?;
    Ok(Timestamp(if neg { -t } else { t }))
}

/// Nanoseconds from the digits after a decimal point (beyond 9 digits truncated).
fn parse_frac(frac: &str) -> Option<i64> {
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut n: i64 = 0;
    for i in 0..9 {
        let d = frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
        n = n * 10 + d;
    }
    Some(n)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = s.get(r)?;
        if t.bytes().all(|b| b.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let y = i64::from(num(0..4)?);
    let mo = num(5..7)?;
    let d = num(8..10)?;
    if s.get(4..5)? != "-"
        || s.get(7..8)? != "-"
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
    {
        return None;
    }
    let rest = s.get(10..)?;
    let (h, mi, sec, nanos, tz) = if rest.is_empty() {
        (0, 0, 0, 0, "Z")
    } else {
        let sep = rest.get(..1)?;
        if sep != "T" && sep != "t" && sep != " " {
            return None;
        }
        let h = num(11..13)?;
        let mi = num(14..16)?;
        let sec = num(17..19)?;
        if s.get(13..14)? != ":" || s.get(16..17)? != ":" || h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let mut tail = s.get(19..)?;
        let mut nanos = 0;
        if let Some(f) = tail.strip_prefix('.') {
            let end = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
            nanos = parse_frac(f.get(..end)?)?;
            tail = f.get(end..)?;
        }
        (h, mi, sec, nanos, tail)
    };
    let offset: i64 = match tz {
        "Z" | "z" | "" => 0,
        t => {
            let sign = match t.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let hh: i64 = t.get(1..3)?.parse().ok()?;
            let mm: i64 = t.get(4..6)?.parse().ok()?;
            if t.get(3..4)? != ":" || t.len() != 6 {
                return None;
            }
            sign * (hh * 3600 + mm * 60)
        }
    };
    let secs = days_from_civil(y, mo, d) * 86_400
        + i64::from(h) * 3600
        + i64::from(mi) * 60
        + i64::from(sec)
        - offset;
    Some(Timestamp::from_secs_nanos(secs, nanos))
}

/// A set of keys from a CSV file (see the [module docs](self)).
///
/// Hosts, pairs and 5-tuples are hash sets; prefixes are in a binary trie,
/// so a lookup costs at most one step per address bit whatever the number
/// of keys.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    hosts: HashSet<IpAddr>,
    /// Prefixes in file order (the trie's values index this).
    nets: Vec<Cidr>,
    net_trie: PrefixTrie,
    pairs: HashSet<(IpAddr, IpAddr)>,
    tuples: HashSet<FlowTuple>,
}

/// The key of a [`KeySet`] that a packet matched (see [`KeySet::find`]);
/// its [`Display`](fmt::Display) is the label that names the file in
/// `--split key` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMatch {
    /// A 5-tuple key (label: [`flow_label`]).
    Tuple(FlowTuple),
    /// An address-pair key, in canonical order (label: `A_B`).
    Pair(IpAddr, IpAddr),
    /// A host key (label: the address).
    Host(IpAddr),
    /// A prefix key (label: `ADDR/LEN`).
    Net(Cidr),
}

impl fmt::Display for KeyMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyMatch::Tuple(t) => t.fmt(f),
            KeyMatch::Pair(a, b) => write!(f, "{a}_{b}"),
            KeyMatch::Host(ip) => ip.fmt(f),
            KeyMatch::Net(c) => c.fmt(f),
        }
    }
}

impl KeySet {
    /// Parses the text of a key file (`path` is used in messages).
    ///
    /// # Errors
    /// [`Error::KeyFileSyntax`] for a bad line.
    pub fn parse(text: &str, path: &Path) -> Result<KeySet> {
        let mut ks = KeySet::default();
        let mut first = true;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let is_first = std::mem::replace(&mut first, false);
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let r = ks.add(&fields);
            if let Err(e) = r {
                let header = is_first && fields.iter().all(|f| Cidr::parse(f).is_err());
                if header {
                    continue;
                }
                return Err(Error::KeyFileSyntax {
                    path: path.to_path_buf(),
                    line: i + 1,
                    reason: e.to_string(),
                });
            }
        }
        Ok(ks)
    }

    /// Reads a key file.
    ///
    /// # Errors
    /// [`Error::KeyFile`] if it cannot be read, [`Error::KeyFileSyntax`].
    pub fn load(path: &Path) -> Result<KeySet> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::KeyFile {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    fn add(&mut self, f: &[&str]) -> Result<()> {
        match f {
            [one] => {
                let c = Cidr::parse(one)?;
                let max = if c.addr.is_ipv4() { 32 } else { 128 };
                if c.len == max {
                    self.hosts.insert(c.addr);
                } else {
                    let pos = u32::try_from(self.nets.len()).ok();
                    if !pos.is_some_and(|pos| self.net_trie.insert(c, pos)) {
                        return Err(Error::Usage("too many prefixes".into()));
                    }
                    self.nets.push(c);
                }
            }
            [a, b] => {
                self.pairs.insert(canon_pair(parse_ip(a)?, parse_ip(b)?));
            }
            [_, _, _, _, _] => {
                self.tuples.insert(parse_tuple(&f.join(","))?);
            }
            _ => {
                return Err(Error::Usage(format!(
                    "expected IP, CIDR, IP1,IP2 or PROTO,IP1,PORT1,IP2,PORT2; got {} fields",
                    f.len()
                )));
            }
        }
        Ok(())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.hosts.len() + self.nets.len() + self.pairs.len() + self.tuples.len()
    }

    /// `true` if there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn needs_ports(&self) -> bool {
        !self.tuples.is_empty()
    }

    /// The key matching `k`: the most specific kind first (5-tuple, pair,
    /// host — the source before the destination — then prefix, the first
    /// of the file that holds either address).
    pub fn find(&self, k: &PacketKey) -> Option<KeyMatch> {
        if !self.tuples.is_empty()
            && let Some(t) = FlowTuple::of(k)
            && self.tuples.contains(&t)
        {
            return Some(KeyMatch::Tuple(t));
        }
        if !self.pairs.is_empty() {
            let (a, b) = canon_pair(k.src, k.dst);
            if self.pairs.contains(&(a, b)) {
                return Some(KeyMatch::Pair(a, b));
            }
        }
        if !self.hosts.is_empty() {
            for ip in [k.src, k.dst] {
                if self.hosts.contains(&ip) {
                    return Some(KeyMatch::Host(ip));
                }
            }
        }
        if self.net_trie.is_empty() {
            return None;
        }
        let pos = match (self.net_trie.lookup(k.src), self.net_trie.lookup(k.dst)) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return None,
        };
        self.nets.get(pos as usize).copied().map(KeyMatch::Net)
    }
}

/// A readable label of a flow: `tcp_10.0.0.1_1234_10.0.0.2_80` (the
/// [`Display`](fmt::Display) of [`FlowTuple`], which writes it without
/// allocating).
pub fn flow_label(t: &FlowTuple) -> String {
    t.to_string()
}

/// The complete filter: keep and drop rules and key sets, and conditions
/// every written packet must meet.
#[derive(Debug, Clone, Default)]
pub struct FilterSet {
    /// Terms every written packet must match, whatever the rules say (the
    /// `--start`/`--end` window and `--index-range`).
    pub require: Vec<Term>,
    /// Keep rules (a packet is kept if one matches).
    pub keep: Vec<Rule>,
    /// Drop rules (a packet is dropped if one matches).
    pub drop: Vec<Rule>,
    /// Keep keys.
    pub keep_keys: Option<KeySet>,
    /// Drop keys.
    pub drop_keys: Option<KeySet>,
}

/// What a kept packet matched; its [`Display`](fmt::Display) names the file
/// in `--split key` mode (written only when needed: deciding allocates
/// nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label<'a> {
    /// A keep rule (label: the rule as written).
    Rule(&'a Rule),
    /// A keep key.
    Key(KeyMatch),
}

impl fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Label::Rule(r) => f.write_str(&r.text),
            Label::Key(k) => k.fmt(f),
        }
    }
}

/// The decision on a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Write it; the label names the keep rule or key that matched, if any.
    Keep(Option<Label<'a>>),
    /// Drop it.
    Drop,
}

/// The rules of one list (keep or drop) that are a single address term
/// (`host`, `src`, `dst`, `net`, `src-net`, `dst-net`), in prefix tries by
/// the address they look at, with their position as value; the other rules
/// are tried in order.
#[derive(Debug, Clone, Default)]
struct RuleIndex {
    /// `host=` and `net=`: source or destination.
    either: PrefixTrie,
    /// `src=` and `src-net=`.
    src: PrefixTrie,
    /// `dst=` and `dst-net=`.
    dst: PrefixTrie,
    /// Positions of the rules not in a trie, ascending.
    rest: Vec<usize>,
}

fn host_prefix(ip: IpAddr) -> Cidr {
    Cidr {
        addr: ip,
        len: if ip.is_ipv4() { 32 } else { 128 },
    }
}

/// Fewer single-term address rules than this are tried in order: for a
/// handful, comparing masks is cheaper than walking a trie.
const INDEX_MIN_RULES: usize = 4;

impl RuleIndex {
    fn new(rules: &[Rule]) -> RuleIndex {
        let mut ix = RuleIndex::default();
        let indexable = |r: &Rule| {
            matches!(
                r.terms.as_slice(),
                [Term::Host(_)
                    | Term::Net(_)
                    | Term::Src(_)
                    | Term::SrcNet(_)
                    | Term::Dst(_)
                    | Term::DstNet(_)]
            )
        };
        if rules.iter().filter(|r| indexable(r)).count() < INDEX_MIN_RULES {
            ix.rest = (0..rules.len()).collect();
            return ix;
        }
        for (i, r) in rules.iter().enumerate() {
            let indexed = match (u32::try_from(i), r.terms.as_slice()) {
                (Ok(pos), [Term::Host(ip)]) => ix.either.insert(host_prefix(*ip), pos),
                (Ok(pos), [Term::Net(c)]) => ix.either.insert(*c, pos),
                (Ok(pos), [Term::Src(ip)]) => ix.src.insert(host_prefix(*ip), pos),
                (Ok(pos), [Term::SrcNet(c)]) => ix.src.insert(*c, pos),
                (Ok(pos), [Term::Dst(ip)]) => ix.dst.insert(host_prefix(*ip), pos),
                (Ok(pos), [Term::DstNet(c)]) => ix.dst.insert(*c, pos),
                _ => false,
            };
            if !indexed {
                ix.rest.push(i);
            }
        }
        ix
    }

    /// Position of the first rule of `rules` (those the index was built
    /// from) that matches.
    fn first_match(&self, rules: &[Rule], s: &Subject<'_>) -> Option<usize> {
        if self.rest.len() == rules.len() {
            // nothing indexed
            return rules.iter().position(|r| r.matches(s));
        }
        let mut best = usize::MAX;
        if let Some(k) = s.key {
            for (trie, ip) in [
                (&self.either, k.src),
                (&self.either, k.dst),
                (&self.src, k.src),
                (&self.dst, k.dst),
            ] {
                if !trie.is_empty()
                    && let Some(pos) = trie.lookup(ip)
                {
                    best = best.min(pos as usize);
                }
            }
        }
        for &i in &self.rest {
            if i >= best {
                break;
            }
            if rules.get(i).is_some_and(|r| r.matches(s)) {
                return Some(i);
            }
        }
        (best != usize::MAX).then_some(best)
    }
}

/// A [`FilterSet`] prepared for deciding on many packets
/// ([`FilterSet::matcher`]): when a rule list (keep or drop) has at least 4
/// rules made of a single address or prefix term (`host`, `src`, `dst`,
/// `net`, `src-net`, `dst-net`), these are looked up in prefix tries (a cost
/// bounded by the address length, whatever the number of such rules)
/// instead of being tried one after the other. Decisions are those of
/// [`FilterSet::decide`].
#[derive(Debug, Clone)]
pub struct Matcher<'a> {
    set: &'a FilterSet,
    keep: RuleIndex,
    drop: RuleIndex,
}

impl<'a> Matcher<'a> {
    /// The filter this was made from.
    pub fn filter(&self) -> &'a FilterSet {
        self.set
    }

    /// Decides on a packet, as [`FilterSet::decide`].
    pub fn decide(&self, s: &Subject<'_>) -> Decision<'a> {
        self.set.decide_with(s, Some((&self.keep, &self.drop)))
    }
}

impl FilterSet {
    /// `true` if no rule or key is set: every packet is kept.
    pub fn is_empty(&self) -> bool {
        self.require.is_empty()
            && self.keep.is_empty()
            && self.drop.is_empty()
            && self.keep_keys.is_none()
            && self.drop_keys.is_none()
    }

    /// `true` if some rule or key needs the transport ports (so fragments
    /// must wait for the first fragment of their datagram).
    pub fn needs_ports(&self) -> bool {
        self.keep.iter().chain(&self.drop).any(Rule::needs_ports)
            || self.require.iter().any(Term::needs_ports)
            || self.keep_keys.as_ref().is_some_and(KeySet::needs_ports)
            || self.drop_keys.as_ref().is_some_and(KeySet::needs_ports)
    }

    /// `true` if some rule or key looks at the packet's addresses, protocol
    /// or ports (and so needs its [`PacketKey`]).
    pub fn needs_key(&self) -> bool {
        self.keep_keys.is_some()
            || self.drop_keys.is_some()
            || self
                .keep
                .iter()
                .chain(&self.drop)
                .flat_map(|r| &r.terms)
                .chain(&self.require)
                .any(|t| !matches!(t, Term::Time(..) | Term::Index(..)))
    }

    /// `true` if the packet meets the conditions every written packet must
    /// meet ([`FilterSet::require`]).
    pub fn meets_requirements(&self, s: &Subject<'_>) -> bool {
        self.require.iter().all(|t| t.matches(s))
    }

    /// The filter prepared for many packets (see [`Matcher`]).
    pub fn matcher(&self) -> Matcher<'_> {
        Matcher {
            set: self,
            keep: RuleIndex::new(&self.keep),
            drop: RuleIndex::new(&self.drop),
        }
    }

    /// Decides on a packet (trying the rules in order; a [`Matcher`] gives
    /// the same decisions faster when there are many rules).
    pub fn decide(&self, s: &Subject<'_>) -> Decision<'_> {
        self.decide_with(s, None)
    }

    /// Decides, with the (keep, drop) indexes when given.
    fn decide_with(&self, s: &Subject<'_>, ix: Option<(&RuleIndex, &RuleIndex)>) -> Decision<'_> {
        let first = |rules: &[Rule], ix: Option<&RuleIndex>| match ix {
            Some(ix) => ix.first_match(rules, s),
            None => rules.iter().position(|r| r.matches(s)),
        };
        if !self.meets_requirements(s) {
            return Decision::Drop;
        }
        let dropped = first(&self.drop, ix.map(|(_, d)| d)).is_some()
            || self
                .drop_keys
                .as_ref()
                .is_some_and(|ks| s.key.is_some_and(|k| ks.find(k).is_some()));
        if dropped {
            return Decision::Drop;
        }
        if self.keep.is_empty() && self.keep_keys.is_none() {
            return Decision::Keep(None);
        }
        if let Some(r) = first(&self.keep, ix.map(|(k, _)| k)).and_then(|i| self.keep.get(i)) {
            return Decision::Keep(Some(Label::Rule(r)));
        }
        if let (Some(ks), Some(k)) = (&self.keep_keys, s.key)
            && let Some(m) = ks.find(k)
        {
            return Decision::Keep(Some(Label::Key(m)));
        }
        Decision::Drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_rfc3339_times_agree() {
        let a = parse_time("1486012623.234684").unwrap();
        assert_eq!(a, Timestamp(1_486_012_623_234_684_000));
        let b = parse_time("2017-02-02T05:17:03.234684Z").unwrap();
        assert_eq!(a, b);
        let c = parse_time("2017-02-02T06:17:03.234684+01:00").unwrap();
        assert_eq!(a, c);
        assert_eq!(parse_time("1970-01-01").unwrap(), Timestamp(0));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2017-13-02T00:00:00Z").is_err());
    }

    #[test]
    fn cidr_matching() {
        let n = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        let z = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(z.contains("1.2.3.4".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn rule_parse_errors_name_the_term() {
        let e = Rule::parse("proto=tcp&prot=80").unwrap_err().to_string();
        assert!(e.contains("prot"), "{e}");
        assert!(Rule::parse("tuple=tcp,1.2.3.4,1").is_err());
    }

    #[test]
    fn key_file_with_header_and_comments() {
        let t = "proto,src,sport,dst,dport\n# c\ntcp,10.0.0.2,80,10.0.0.1,1234\n10.9.0.0/16\n1.1.1.1,2.2.2.2\n";
        let ks = KeySet::parse(t, Path::new("k.csv")).unwrap();
        assert_eq!(ks.len(), 3);
        let bad = KeySet::parse("1.1.1.1\nnope,1\n", Path::new("k.csv")).unwrap_err();
        assert!(bad.to_string().contains("line 2"), "{bad}");
    }

    #[test]
    fn index_ranges() {
        assert_eq!(parse_index_range("3-5").unwrap(), (3, 5));
        assert_eq!(parse_index_range("3-").unwrap(), (3, u64::MAX));
        assert_eq!(parse_index_range("-5").unwrap(), (1, 5));
        assert_eq!(parse_index_range("4").unwrap(), (4, 4));
        for bad in ["5-2", "0", "0-3", "-0", "", "a-b", "1-2-3"] {
            let e = parse_index_range(bad).unwrap_err();
            assert!(e.is_usage(), "{bad}: {e}");
        }
        assert!(
            parse_index_range("5-2")
                .unwrap_err()
                .to_string()
                .contains("packet 5 comes after packet 2")
        );
        assert_eq!(parse_index_range("7").unwrap(), (7, 7));
        assert!(parse_index_range("a-b").is_err());
    }

    fn key(src: &str, dst: &str, proto: u8, ports: Option<(u16, u16)>) -> PacketKey {
        PacketKey {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto,
            ports,
            frag: None,
        }
    }

    #[test]
    fn key_set_prefixes_first_in_file_order_either_address() {
        let ks = KeySet::parse(
            "10.1.0.0/16\n10.0.0.0/8\n192.168.0.0/16\n2001:db8::/32\n",
            Path::new("k.csv"),
        )
        .unwrap();
        let net = |s: &str| Some(KeyMatch::Net(Cidr::parse(s).unwrap()));
        let f = |a: &str, b: &str| ks.find(&key(a, b, 6, Some((1, 2))));
        assert_eq!(f("10.1.2.3", "1.1.1.1"), net("10.1.0.0/16"));
        assert_eq!(f("10.2.2.3", "1.1.1.1"), net("10.0.0.0/8"));
        // the destination's prefix comes first in the file
        assert_eq!(f("10.2.2.3", "10.1.0.1"), net("10.1.0.0/16"));
        assert_eq!(f("1.1.1.1", "192.168.9.9"), net("192.168.0.0/16"));
        assert_eq!(f("2001:db8::1", "::1"), net("2001:db8::/32"));
        assert_eq!(f("1.1.1.1", "2.2.2.2"), None);
        assert_eq!(net("10.1.0.0/16").unwrap().to_string(), "10.1.0.0/16");
    }

    #[test]
    fn key_matches_are_labelled_as_before() {
        let t = "tcp,10.0.0.2,80,10.0.0.1,1234\n1.1.1.1,2.2.2.2\n3.3.3.3\n";
        let ks = KeySet::parse(t, Path::new("k.csv")).unwrap();
        let label = |k: PacketKey| ks.find(&k).map(|m| m.to_string());
        assert_eq!(
            label(key("10.0.0.1", "10.0.0.2", 6, Some((1234, 80)))).as_deref(),
            Some("tcp_10.0.0.1_1234_10.0.0.2_80")
        );
        assert_eq!(
            label(key("2.2.2.2", "1.1.1.1", 17, None)).as_deref(),
            Some("1.1.1.1_2.2.2.2")
        );
        assert_eq!(
            label(key("9.9.9.9", "3.3.3.3", 17, None)).as_deref(),
            Some("3.3.3.3")
        );
    }

    /// Rules of every kind, the single-term address ones nested and
    /// interleaved with others, and packets around them.
    fn rules_and_keys() -> (Vec<Rule>, Vec<PacketKey>) {
        let texts = [
            "net=10.0.0.0/8&port=53",
            "host=10.1.2.3",
            "src-net=10.1.0.0/16",
            "proto=udp",
            "dst=192.168.1.1",
            "net=10.0.0.0/8",
            "dst-net=192.168.0.0/16",
            "src=10.9.9.9",
            "net=2001:db8::/32",
            "pair=10.1.2.3,192.168.1.1",
            "host=2001:db8::5",
            "sport=443",
            "net=0.0.0.0/0",
            "dst-net=::/0",
        ];
        let rules = texts.iter().map(|t| Rule::parse(t).unwrap()).collect();
        let addrs = [
            "10.1.2.3",
            "10.1.9.9",
            "10.9.9.9",
            "10.200.0.1",
            "192.168.1.1",
            "192.168.7.7",
            "8.8.8.8",
        ];
        let addrs6 = ["2001:db8::5", "2001:db8::6", "fe80::1"];
        let mut keys = Vec::new();
        for (i, a) in addrs.iter().enumerate() {
            for (j, b) in addrs.iter().enumerate() {
                let ports = [None, Some((443, 1000)), Some((1000, 53))][(i + j) % 3];
                keys.push(key(a, b, if i % 2 == 0 { 6 } else { 17 }, ports));
            }
        }
        for a in addrs6 {
            for b in addrs6 {
                keys.push(key(a, b, 58, None));
            }
        }
        (rules, keys)
    }

    #[test]
    fn matcher_decides_as_the_rules_in_order() {
        let (rules, keys) = rules_and_keys();
        // every suffix of the list as keep rules, every prefix as drop rules
        for n in 0..=rules.len() {
            let set = FilterSet {
                keep: rules[n..].to_vec(),
                drop: rules[..n / 2].to_vec(),
                ..FilterSet::default()
            };
            let m = set.matcher();
            for k in &keys {
                for key in [Some(k), None] {
                    let s = Subject {
                        key,
                        ts: None,
                        index: 0,
                    };
                    assert_eq!(m.decide(&s), set.decide(&s), "{n} {key:?}");
                }
            }
        }
        // the single address terms are in the tries, the rest is tried in
        // order
        let ix = RuleIndex::new(&rules);
        assert_eq!(ix.rest, [0, 3, 9, 11]);
        // a few are simply tried in order
        let ix = RuleIndex::new(&rules[..3]);
        assert_eq!(ix.rest, [0, 1, 2]);
        assert!(ix.either.is_empty() && ix.src.is_empty());
    }
}
