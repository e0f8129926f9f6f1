//! Link-layer rewriting: tunnel decapsulation, conversion to raw IP or to
//! Ethernet, VLAN tag removal and checksum recomputation.
//!
//! The steps run in this order on every packet: decapsulate (`--decap`),
//! convert the link type (`--link`), remove VLAN tags (`--strip-vlan`), fix
//! checksums (`--fix-checksums`). Without any of them a packet is passed on
//! untouched and without copying; stripping layer 2 and decapsulating
//! borrow a sub-slice of the input; only synthesising an Ethernet header,
//! removing tags and fixing checksums copy the packet into a scratch buffer.
//!
//! # Synthesised Ethernet headers
//!
//! Converting Linux cooked (SLL, SLL2), BSD loopback (NULL, LOOP) or raw-IP
//! packets to Ethernet prepends a 14-byte header whose type is the packet's
//! protocol and whose addresses are locally administered placeholders:
//! destination [`SYNTH_DST_MAC`] (`02:00:00:00:00:02`) and source
//! [`SYNTH_SRC_MAC`] (`02:00:00:00:00:01`), except that the source is the
//! link-layer address of an SLL/SLL2 header when that address is 6 bytes long.
//! The same header wraps IP packets found inside a tunnel when the output is
//! Ethernet.
//!
//! # Decapsulation
//!
//! One tunnel level is removed, so that the inner packet becomes the packet:
//! IP-in-IP (protocols 4 and 41, over IPv4 or IPv6), GRE (inner Ethernet
//! `0x6558` or IP), VXLAN (UDP destination port 4789 or 8472) and Geneve
//! (UDP port 6081, inner Ethernet or IP). The outer IP header must not be a
//! fragment. Packets that are not such a tunnel are kept as they are and
//! counted as not tunnelled. Inner packets are Ethernet or raw IP; since a
//! capture file (or a pcapng interface) has one link type, the output of
//! `--decap` is Ethernet unless `--link raw` is also given.

use libpcap_analyzer::decode::link::decode_link;
use libpcap_analyzer::wire::{
    GeneveSlice, GreSlice, Ipv4Slice, Ipv6Slice, NullSlice, Sll2Slice, SllSlice, UdpSlice,
    VxlanSlice, fold, internet_checksum, pseudo_header_sum_v4, pseudo_header_sum_v6, sum16,
    walk_ipv6_extensions,
};
use libpcap_tools::{LinkType, Packet};

/// Destination address of synthesised Ethernet headers.
pub const SYNTH_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// Source address of synthesised Ethernet headers (when no address is known).
pub const SYNTH_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_TEB: u16 = 0x6558;

/// Target link type of `--link`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetLink {
    /// Raw IP (`LINKTYPE_RAW`, 101): layer 2 removed; non-IP packets cannot
    /// be converted.
    Raw,
    /// Ethernet (`LINKTYPE_ETHERNET`, 1), with a synthesised header where
    /// the input has none.
    Ethernet,
}

/// What to do to each packet's framing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConvertConfig {
    /// Convert to this link type.
    pub to: Option<TargetLink>,
    /// Remove 802.1Q / 802.1ad / 0x9100 tags after the Ethernet addresses.
    pub strip_vlan: bool,
    /// Decapsulate one tunnel level.
    pub decap: bool,
    /// Recompute IPv4 header and TCP/UDP/ICMP/ICMPv6 checksums.
    pub fix_checksums: bool,
}

/// Why a packet was not converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The packet cannot be represented in the target link type (a non-IP
    /// packet to raw IP, an unsupported source link type).
    Unconvertible(String),
    /// The packet's headers could not be decoded.
    Unreadable(String),
}

/// Where the network layer of a converted packet starts, when the
/// conversion had to find it anyway (so that the filter need not decode the
/// link layer again): [`Converter::convert_located`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkLayer {
    /// Ethertype of the network layer (`0x0800`, `0x86dd`, …).
    pub ethertype: u16,
    /// Offset of the network header in the converted packet's data.
    pub offset: usize,
}

/// Per-packet conversion, with its scratch buffer and counters.
#[derive(Debug, Default)]
pub struct Converter {
    cfg: ConvertConfig,
    scratch: Vec<u8>,
    /// Packets decapsulated.
    pub decapsulated: u64,
    /// Packets that `--decap` found not to be tunnels.
    pub not_tunneled: u64,
    /// Packets whose checksums were recomputed.
    pub checksums_fixed: u64,
}

/// Where the current packet bytes are.
#[derive(Clone, Copy)]
enum Loc {
    Input(usize, usize),
    Scratch,
}

fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize)
}

fn is_raw(lt: LinkType) -> bool {
    matches!(
        lt,
        LinkType::RAW | LinkType::RAW_12 | LinkType::RAW_14 | LinkType::IPV4 | LinkType::IPV6
    )
}

impl Converter {
    /// A converter for `cfg`.
    pub fn new(cfg: ConvertConfig) -> Converter {
        Converter {
            cfg,
            scratch: Vec::with_capacity(65_600),
            ..Converter::default()
        }
    }

    /// `true` if packets pass through unchanged.
    pub fn is_identity(&self) -> bool {
        self.cfg == ConvertConfig::default()
    }

    /// The link type the output will have for input packets of `lt`.
    pub fn output_linktype(&self, lt: LinkType) -> LinkType {
        match self.cfg.to {
            Some(TargetLink::Raw) => LinkType::RAW,
            Some(TargetLink::Ethernet) => LinkType::ETHERNET,
            None if self.cfg.decap => LinkType::ETHERNET,
            None => lt,
        }
    }

    /// Converts one packet. The result borrows the input or the converter's
    /// scratch buffer; `origlen` is adjusted by the bytes removed or added.
    ///
    /// # Errors
    /// A [`Skip`] saying why the packet cannot be written.
    pub fn convert<'a>(&'a mut self, p: Packet<'a>) -> Result<Packet<'a>, Skip> {
        self.convert_located(p).map(|(p, _)| p)
    }

    /// As [`Converter::convert`], also giving where the network layer of the
    /// result is when a conversion step decoded the headers down to it
    /// (`--link raw`, a synthesised Ethernet header, `--fix-checksums`);
    /// `None` when no step did (then decode the result's link layer). When
    /// given, it is what [`decode_link`] finds in the result.
    ///
    /// # Errors
    /// A [`Skip`] saying why the packet cannot be written.
    pub fn convert_located<'a>(
        &'a mut self,
        p: Packet<'a>,
    ) -> Result<(Packet<'a>, Option<NetworkLayer>), Skip> {
        if self.is_identity() {
            return Ok((p, None));
        }
        let mut l3 = None;
        let data = p.data;
        let mut lt = p.linktype;
        let mut loc = Loc::Input(0, data.len());
        let mut added: usize = 0;
        let target = match self.cfg.to {
            None if self.cfg.decap => Some(TargetLink::Ethernet),
            t => t,
        };

        if self.cfg.decap {
            match find_tunnel(lt, data) {
                Some((inner_lt, off, end)) => {
                    self.decapsulated += 1;
                    lt = inner_lt;
                    loc = Loc::Input(off, end);
                }
                None => self.not_tunneled += 1,
            }
        }

        let cur = |loc: Loc, scratch: &[u8]| -> (usize, usize) {
            match loc {
                Loc::Input(a, b) => (a, b),
                Loc::Scratch => (0, scratch.len()),
            }
        };

        match target {
            None => {}
            Some(TargetLink::Raw) => {
                let (a, b) = cur(loc, &self.scratch);
                let frame = data.get(a..b).unwrap_or(&[]);
                let (ethertype, s, e) = to_raw(lt, frame)?;
                loc = Loc::Input(a + s, a + e);
                lt = LinkType::RAW;
                l3 = Some(NetworkLayer {
                    ethertype,
                    offset: 0,
                });
            }
            Some(TargetLink::Ethernet) if lt == LinkType::ETHERNET => {}
            Some(TargetLink::Ethernet) => {
                let (a, b) = cur(loc, &self.scratch);
                let frame = data.get(a..b).unwrap_or(&[]);
                let (src, ethertype, start) = ethernet_parts(lt, frame)?;
                let payload = frame.get(start..).unwrap_or(&[]);
                self.scratch.clear();
                self.scratch.extend_from_slice(&SYNTH_DST_MAC);
                self.scratch.extend_from_slice(&src);
                self.scratch.extend_from_slice(&ethertype.to_be_bytes());
                self.scratch.extend_from_slice(payload);
                added = 14;
                loc = Loc::Scratch;
                lt = LinkType::ETHERNET;
                // an IP ethertype leads straight to the IP header (another,
                // such as a VLAN tag, would be followed by decode_link)
                if matches!(ethertype, ETH_IPV4 | ETH_IPV6) {
                    l3 = Some(NetworkLayer {
                        ethertype,
                        offset: 14,
                    });
                }
            }
        }

        if self.cfg.strip_vlan && lt == LinkType::ETHERNET {
            let (a, b) = cur(loc, &self.scratch);
            let tagged = |buf: &[u8]| {
                matches!(
                    buf.get(12..14).map(|t| u16::from_be_bytes([t[0], t[1]])),
                    Some(0x8100 | 0x88a8 | 0x9100)
                ) && buf.len() >= 18
            };
            let needs = match loc {
                Loc::Input(..) => tagged(data.get(a..b).unwrap_or(&[])),
                Loc::Scratch => tagged(&self.scratch),
            };
            if needs {
                if let Loc::Input(..) = loc {
                    self.scratch.clear();
                    self.scratch
                        .extend_from_slice(data.get(a..b).unwrap_or(&[]));
                    loc = Loc::Scratch;
                }
                // count the stacked tags, then remove them in one move (one
                // drain per tag would copy the frame once per tag)
                let mut k = 0;
                while tagged(self.scratch.get(4 * k..).unwrap_or(&[])) {
                    k += 1;
                }
                self.scratch.drain(12..12 + 4 * k);
                l3 = None;
            }
        }

        if self.cfg.fix_checksums {
            if let Loc::Input(a, b) = loc {
                self.scratch.clear();
                self.scratch
                    .extend_from_slice(data.get(a..b).unwrap_or(&[]));
                loc = Loc::Scratch;
            }
            let (fixed, found) = fix_checksums_located(lt, &mut self.scratch);
            if fixed {
                self.checksums_fixed += 1;
            }
            l3 = found;
        }

        let out: &'a [u8] = match loc {
            Loc::Input(a, b) => data.get(a..b).unwrap_or(&[]),
            Loc::Scratch => &self.scratch,
        };
        // origlen: the bytes removed from the captured data are removed from
        // the original length too; synthesised bytes are added
        let removed = (data.len() + added) as i64 - out.len() as i64;
        let origlen = i64::from(p.origlen)
            .saturating_sub(removed)
            .max(out.len() as i64);
        Ok((
            Packet {
                linktype: lt,
                data: out,
                origlen: u32::try_from(origlen).unwrap_or(u32::MAX),
                ..p
            },
            l3,
        ))
    }
}

/// The raw-IP part of a frame: its ethertype, the offsets of the IP header
/// and of the end of the IP packet (Ethernet padding excluded).
fn to_raw(lt: LinkType, frame: &[u8]) -> Result<(u16, usize, usize), Skip> {
    let (et, l3) = if is_raw(lt) {
        match frame.first().map(|b| b >> 4) {
            Some(4) => (ETH_IPV4, 0),
            Some(6) => (ETH_IPV6, 0),
            _ => return Err(Skip::Unreadable("raw IP packet without IP version".into())),
        }
    } else {
        let info = decode_link(lt, frame).map_err(|e| link_skip(&e))?;
        (info.ethertype, info.l3_offset)
    };
    let ip = frame.get(l3..).unwrap_or(&[]);
    let len = match et {
        ETH_IPV4 => Ipv4Slice::from_slice(ip)
            .map(|v| usize::from(v.total_len()))
            .map_err(|e| Skip::Unreadable(e.to_string()))?,
        ETH_IPV6 => Ipv6Slice::from_slice(ip)
            .map(|v| match v.payload_len() {
                0 => 0,
                n => 40 + usize::from(n),
            })
            .map_err(|e| Skip::Unreadable(e.to_string()))?,
        other => {
            return Err(Skip::Unconvertible(format!(
                "ethertype {other:#06x} is not IP"
            )));
        }
    };
    let end = if len == 0 || len > ip.len() {
        frame.len()
    } else {
        l3 + len
    };
    Ok((et, l3, end))
}

fn link_skip(e: &libpcap_analyzer::decode::link::LinkError) -> Skip {
    use libpcap_analyzer::decode::link::LinkError;
    match e {
        LinkError::Decode(d) => Skip::Unreadable(d.to_string()),
        other => Skip::Unconvertible(other.kind().into_owned()),
    }
}

/// Source address, ethertype and payload offset of a non-Ethernet frame.
fn ethernet_parts(lt: LinkType, frame: &[u8]) -> Result<([u8; 6], u16, usize), Skip> {
    let unreadable = |e: libpcap_analyzer::wire::DecodeError| Skip::Unreadable(e.to_string());
    let mac = |addr: &[u8]| -> [u8; 6] {
        addr.get(..6)
            .filter(|_| addr.len() == 6)
            .and_then(|a| a.try_into().ok())
            .unwrap_or(SYNTH_SRC_MAC)
    };
    let checked = |et: u16| {
        if et >= 0x0600 {
            Ok(et)
        } else {
            Err(Skip::Unconvertible(format!(
                "protocol {et:#06x} is not an ethertype"
            )))
        }
    };
    match lt {
        LinkType::LINUX_SLL => {
            let s = SllSlice::from_slice(frame).map_err(unreadable)?;
            Ok((
                mac(s.addr()),
                checked(s.protocol().0)?,
                offset_in(frame, s.payload()),
            ))
        }
        LinkType::LINUX_SLL2 => {
            let s = Sll2Slice::from_slice(frame).map_err(unreadable)?;
            Ok((
                mac(s.addr()),
                checked(s.protocol().0)?,
                offset_in(frame, s.payload()),
            ))
        }
        LinkType::NULL | LinkType::LOOP => {
            let n = if lt == LinkType::LOOP {
                NullSlice::from_slice_loop(frame)
            } else {
                NullSlice::from_slice(frame)
            }
            .map_err(unreadable)?;
            let et = match n.ip_version() {
                Some(4) => ETH_IPV4,
                Some(6) => ETH_IPV6,
                _ => {
                    return Err(Skip::Unconvertible(format!(
                        "loopback family {} is not IP",
                        n.family()
                    )));
                }
            };
            Ok((SYNTH_SRC_MAC, et, offset_in(frame, n.payload())))
        }
        l if is_raw(l) => match frame.first().map(|b| b >> 4) {
            Some(4) => Ok((SYNTH_SRC_MAC, ETH_IPV4, 0)),
            Some(6) => Ok((SYNTH_SRC_MAC, ETH_IPV6, 0)),
            _ => Err(Skip::Unreadable("raw IP packet without IP version".into())),
        },
        other => Err(Skip::Unconvertible(format!(
            "link type {other} cannot be converted to Ethernet"
        ))),
    }
}

/// Finds a tunnel: the inner link type (Ethernet or raw IP) and the inner
/// packet's offsets in `frame`.
fn find_tunnel(lt: LinkType, frame: &[u8]) -> Option<(LinkType, usize, usize)> {
    let info = decode_link(lt, frame).ok()?;
    let l3 = frame.get(info.l3_offset..)?;
    let (proto, l4) = match info.ethertype {
        ETH_IPV4 => {
            let ip = Ipv4Slice::from_slice(l3).ok()?;
            if ip.more_fragments() || ip.fragment_offset() != 0 {
                return None;
            }
            (ip.protocol(), ip.payload())
        }
        ETH_IPV6 => {
            let ip = Ipv6Slice::from_slice(l3).ok()?;
            let chain = walk_ipv6_extensions(ip.next_header(), ip.payload()).ok()?;
            if chain
                .fragment
                .is_some_and(|f| f.offset_bytes != 0 || f.more)
            {
                return None;
            }
            (chain.transport, chain.payload)
        }
        _ => return None,
    };
    let (inner_lt, inner) = match proto {
        4 | 41 => (LinkType::RAW, l4),
        47 => {
            let g = GreSlice::from_slice(l4).ok()?;
            if g.version() != 0 {
                return None;
            }
            by_ethertype(g.protocol_type().0, g.payload())?
        }
        17 => {
            let u = UdpSlice::from_slice(l4).ok()?;
            match u.dst_port() {
                4789 | 8472 => {
                    let v = VxlanSlice::from_slice(u.payload()).ok()?;
                    (LinkType::ETHERNET, v.payload())
                }
                6081 => {
                    let g = GeneveSlice::from_slice(u.payload()).ok()?;
                    by_ethertype(g.protocol_type().0, g.payload())?
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    if inner.is_empty() {
        return None;
    }
    let off = offset_in(frame, inner);
    Some((inner_lt, off, off + inner.len()))
}

fn by_ethertype(et: u16, inner: &[u8]) -> Option<(LinkType, &[u8])> {
    match et {
        ETH_TEB => Some((LinkType::ETHERNET, inner)),
        ETH_IPV4 | ETH_IPV6 => Some((LinkType::RAW, inner)),
        _ => None,
    }
}

/// Recomputes the checksums of the first IP header of `frame` and of its
/// TCP/UDP/ICMP/ICMPv6 segment (when the packet is whole and not a
/// fragment). Returns `true` if anything was computed.
pub fn fix_checksums(lt: LinkType, frame: &mut [u8]) -> bool {
    fix_checksums_located(lt, frame).0
}

/// As [`fix_checksums`], also giving the network layer that
/// [`decode_link`] found.
fn fix_checksums_located(lt: LinkType, frame: &mut [u8]) -> (bool, Option<NetworkLayer>) {
    let Ok(info) = decode_link(lt, frame) else {
        return (false, None);
    };
    let l3 = Some(NetworkLayer {
        ethertype: info.ethertype,
        offset: info.l3_offset,
    });
    let Some(ip) = frame.get_mut(info.l3_offset..) else {
        return (false, l3);
    };
    let fixed = match info.ethertype {
        ETH_IPV4 => fix_ipv4(ip),
        ETH_IPV6 => fix_ipv6(ip),
        _ => false,
    };
    (fixed, l3)
}

fn put16(buf: &mut [u8], at: usize, v: u16) {
    if let Some(d) = buf.get_mut(at..at + 2) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

/// Recomputes a transport checksum in `seg` (`at` = offset of its field;
/// `pseudo` = pseudo-header sum, 0 for ICMPv4).
fn fix_transport(seg: &mut [u8], proto: u8, pseudo: u32, zero_means_none: bool) {
    let at = match proto {
        6 => 16,
        17 => 6,
        1 | 58 => 2,
        _ => return,
    };
    let min = if proto == 6 { 20 } else { 8 };
    if seg.len() < min {
        return;
    }
    if proto == 17 && zero_means_none && seg.get(6..8) == Some(&[0, 0]) {
        return; // "no checksum" stays so
    }
    put16(seg, at, 0);
    let mut c = !fold(sum16(seg) + pseudo);
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    put16(seg, at, c);
}

fn fix_ipv4(ip: &mut [u8]) -> bool {
    let (hl, total, frag, proto, src, dst) = match Ipv4Slice::from_slice(ip) {
        Ok(v) => (
            v.header_len(),
            usize::from(v.total_len()),
            v.more_fragments() || v.fragment_offset() != 0,
            v.protocol(),
            v.src(),
            v.dst(),
        ),
        Err(_) => return false,
    };
    put16(ip, 10, 0);
    let c = internet_checksum(ip.get(..hl).unwrap_or(&[]));
    put16(ip, 10, c);
    if frag || total < hl || total > ip.len() {
        return true;
    }
    if let Some(seg) = ip.get_mut(hl..total) {
        let len = u32::try_from(seg.len()).unwrap_or(u32::MAX);
        let pseudo = if proto == 1 {
            0
        } else {
            pseudo_header_sum_v4(src, dst, proto, len)
        };
        fix_transport(seg, proto, pseudo, true);
    }
    true
}

fn fix_ipv6(ip: &mut [u8]) -> bool {
    let (start, end, proto, src, dst) = {
        let Ok(v) = Ipv6Slice::from_slice(ip) else {
            return false;
        };
        let pl = usize::from(v.payload_len());
        if pl == 0 || 40 + pl > ip.len() {
            return false;
        }
        let Ok(chain) = walk_ipv6_extensions(v.next_header(), v.payload()) else {
            return false;
        };
        if chain
            .fragment
            .is_some_and(|f| f.offset_bytes != 0 || f.more)
        {
            return false;
        }
        let start = offset_in(ip, chain.payload);
        (
            start,
            start + chain.payload.len(),
            chain.transport,
            v.src(),
            v.dst(),
        )
    };
    if let Some(seg) = ip.get_mut(start..end) {
        let len = u32::try_from(seg.len()).unwrap_or(u32::MAX);
        fix_transport(
            seg,
            proto,
            pseudo_header_sum_v6(src, dst, proto, len),
            false,
        );
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use libpcap_analyzer::build;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn frames() -> Vec<Vec<u8>> {
        let (a, b) = (
            IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)),
            IpAddr::V4(Ipv4Addr::new(5, 6, 7, 8)),
        );
        let (c, d) = (
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        );
        let inner = build::eth_ip(a, b, 6, &build::tcp(a, b, 1, 2, 3, 4, 2, b"x"));
        vec![
            build::eth_ip(
                a,
                b,
                17,
                &build::udp(a, b, 9, 4789, &build::vxlan(1, &inner)),
            ),
            build::eth_ip(
                a,
                b,
                17,
                &build::udp(a, b, 9, 6081, &build::geneve(1, 0x6558, &inner)),
            ),
            build::eth_ip(a, b, 47, &build::gre(0x6558, Some(1), &inner)),
            build::eth_ip(
                c,
                d,
                41,
                &build::ipv6(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, 58, b"ab"),
            ),
            build::ethernet(
                [1; 6],
                [2; 6],
                0x8100,
                &build::vlan_tag(3, 0x0800, &inner[14..]),
            ),
            build::eth_ip(a, b, 1, &build::icmpv4_echo(false, 1, 1, b"p")),
        ]
    }

    #[test]
    fn every_truncation_of_every_frame_with_every_option_is_handled() {
        let targets = [None, Some(TargetLink::Raw), Some(TargetLink::Ethernet)];
        let mut located = 0;
        for f in frames() {
            for to in targets {
                for flags in 0..8u8 {
                    let cfg = ConvertConfig {
                        to,
                        strip_vlan: flags & 1 != 0,
                        decap: flags & 2 != 0,
                        fix_checksums: flags & 4 != 0,
                    };
                    for lt in [
                        LinkType::ETHERNET,
                        LinkType::RAW,
                        LinkType::LINUX_SLL,
                        LinkType::NULL,
                    ] {
                        let mut c = Converter::new(cfg);
                        for n in 0..=f.len() {
                            let p = Packet {
                                index: 0,
                                interface: 0,
                                linktype: lt,
                                ts: None,
                                origlen: f.len() as u32,
                                data: &f[..n],
                            };
                            if let Ok((out, l3)) = c.convert_located(p) {
                                assert!(out.origlen as usize >= out.data.len());
                                // where the conversion says the network
                                // layer is, decode_link finds it too
                                if let Some(l3) = l3 {
                                    let info = decode_link(out.linktype, out.data).unwrap();
                                    assert_eq!(
                                        (info.ethertype, info.l3_offset),
                                        (l3.ethertype, l3.offset),
                                        "{cfg:?} {lt} {n}"
                                    );
                                    located += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(located > 1000, "{located}");
    }

    #[test]
    fn fix_checksums_on_garbage_does_not_panic() {
        let mut buf = [0x45u8; 64];
        for n in 0..buf.len() {
            let _ = fix_checksums(LinkType::RAW, &mut buf[..n]);
            let _ = fix_checksums(LinkType::ETHERNET, &mut buf[..n]);
        }
        buf[0] = 0x60;
        for n in 0..buf.len() {
            let _ = fix_checksums(LinkType::RAW, &mut buf[..n]);
        }
    }
}
