//! Walking the packets of one TPACKET_V3 block: pure, safe code over a byte
//! slice, so that it can be tested on hand-built blocks.
//!
//! A block (`struct tpacket_block_desc`) starts with `version`,
//! `offset_to_priv`, then `tpacket_hdr_v1`: `block_status`, `num_pkts`,
//! `offset_to_first_pkt`, `blk_len`, `seq_num`, the first and last packet
//! times. Each packet starts with a `struct tpacket3_hdr` (48 bytes) at an
//! offset from the block start; `tp_next_offset` leads to the next one,
//! `tp_mac` (from the packet header) to the frame, whose `tp_snaplen` bytes
//! were captured of `tp_len`. Every value comes from shared memory the
//! kernel writes: each is bounds-checked against the block before use, and a
//! bad one is an error, never a panic or an out-of-bounds read.

use std::fmt;

/// Offset of `num_pkts` in the block descriptor.
pub const NUM_PKTS: usize = 12;
/// Offset of `offset_to_first_pkt` in the block descriptor.
pub const OFFSET_TO_FIRST_PKT: usize = 16;
/// Size of the block descriptor (`tpacket_block_desc`, 8-byte aligned).
pub const BLOCK_DESC_LEN: usize = 48;

/// Offsets of the fields of `struct tpacket3_hdr`.
pub mod hdr {
    /// `tp_next_offset` (u32): offset of the next packet from this one.
    pub const NEXT_OFFSET: usize = 0;
    /// `tp_sec` (u32).
    pub const SEC: usize = 4;
    /// `tp_nsec` (u32).
    pub const NSEC: usize = 8;
    /// `tp_snaplen` (u32): bytes captured.
    pub const SNAPLEN: usize = 12;
    /// `tp_len` (u32): length on the wire.
    pub const LEN: usize = 16;
    /// `tp_status` (u32).
    pub const STATUS: usize = 20;
    /// `tp_mac` (u16): offset of the frame from the packet header.
    pub const MAC: usize = 24;
    /// `hv1.tp_vlan_tci` (u32).
    pub const VLAN_TCI: usize = 32;
    /// `hv1.tp_vlan_tpid` (u16).
    pub const VLAN_TPID: usize = 36;
    /// Size of the header.
    pub const SIZE: usize = 48;
}

/// A bad value in a ring block (the kernel ABI was not what we expect, or
/// the memory was damaged): the capture stops with this error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// A field that should lie inside the block does not.
    #[error("ring block: {field} {value} at offset {at} is out of the block of {block_len} bytes")]
    OutOfBlock {
        /// The field (e.g. `tp_next_offset`).
        field: &'static str,
        /// Its value.
        value: u64,
        /// Offset in the block of the packet (or block) header holding it.
        at: usize,
        /// The block size.
        block_len: usize,
    },
    /// A packet other than the last has `tp_next_offset` 0.
    #[error(
        "ring block: packet at offset {at} has tp_next_offset 0 but {remaining} packets follow"
    )]
    NoNext {
        /// Offset of the packet header.
        at: usize,
        /// Packets still announced by `num_pkts`.
        remaining: u32,
    },
}

/// Where the walk of a block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Offset of the next packet header in the block.
    pub offset: usize,
    /// Packets left to read.
    pub remaining: u32,
}

/// One packet of a block, by offsets into it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RingPacket {
    /// Seconds of the capture time.
    pub sec: u32,
    /// Nanoseconds of the capture time.
    pub nsec: u32,
    /// Offset of the frame in the block.
    pub data_offset: usize,
    /// Bytes captured (`tp_snaplen`).
    pub snaplen: usize,
    /// Length on the wire (`tp_len`).
    pub len: u32,
    /// `tp_status`.
    pub status: u32,
    /// The 802.1Q tag the kernel took out of the frame, as (TPID, TCI), when
    /// `TP_STATUS_VLAN_VALID` is set (TPID 0x8100 unless
    /// `TP_STATUS_VLAN_TPID_VALID` gives another).
    pub vlan: Option<(u16, u16)>,
}

impl fmt::Debug for RingPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingPacket")
            .field("ts", &format_args!("{}.{:09}", self.sec, self.nsec))
            .field("data_offset", &self.data_offset)
            .field("snaplen", &self.snaplen)
            .field("len", &self.len)
            .field("status", &format_args!("{:#x}", self.status))
            .field("vlan", &self.vlan)
            .finish()
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let bytes = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes(bytes.try_into().ok()?))
}

fn out(field: &'static str, value: u64, at: usize, block: &[u8]) -> RingError {
    RingError::OutOfBlock {
        field,
        value,
        at,
        block_len: block.len(),
    }
}

/// The start of the walk of a block handed to userspace.
///
/// # Errors
/// When the block descriptor does not fit or points outside the block.
pub fn start(block: &[u8]) -> Result<Cursor, RingError> {
    let n = u32_at(block, NUM_PKTS).ok_or_else(|| out("block header", 0, 0, block))?;
    let first =
        u32_at(block, OFFSET_TO_FIRST_PKT).ok_or_else(|| out("block header", 0, 0, block))?;
    let offset = first as usize;
    if n > 0 && (offset < BLOCK_DESC_LEN || offset.saturating_add(hdr::SIZE) > block.len()) {
        return Err(out("offset_to_first_pkt", u64::from(first), 0, block));
    }
    Ok(Cursor {
        offset,
        remaining: n,
    })
}

/// The next packet of `block` at `cursor`, which moves past it; `None` once
/// `num_pkts` packets were read.
///
/// # Errors
/// When a header field points outside the block (the cursor is then left
/// as it was).
pub fn next(block: &[u8], cursor: &mut Cursor) -> Result<Option<RingPacket>, RingError> {
    if cursor.remaining == 0 {
        return Ok(None);
    }
    let at = cursor.offset;
    let end = at
        .checked_add(hdr::SIZE)
        .filter(|&e| e <= block.len())
        .ok_or_else(|| out("packet header offset", at as u64, at, block))?;
    let h = block
        .get(at..end)
        .ok_or_else(|| out("packet header", 0, at, block))?;
    let field = |o: usize| u32_at(h, o).unwrap_or(0);
    let next_offset = field(hdr::NEXT_OFFSET);
    let snaplen = field(hdr::SNAPLEN);
    let mac = u16_at(h, hdr::MAC).unwrap_or(0);
    let status = field(hdr::STATUS);
    let data_offset = at + usize::from(mac);
    if usize::from(mac) < hdr::SIZE || data_offset > block.len() {
        return Err(out("tp_mac", u64::from(mac), at, block));
    }
    let data_end = data_offset.checked_add(snaplen as usize);
    if data_end.is_none_or(|e| e > block.len()) {
        return Err(out("tp_snaplen", u64::from(snaplen), at, block));
    }
    let remaining = cursor.remaining - 1;
    let next_at = if remaining > 0 {
        if next_offset == 0 {
            return Err(RingError::NoNext { at, remaining });
        }
        let n = at.checked_add(next_offset as usize);
        match n {
            Some(n) if n.saturating_add(hdr::SIZE) <= block.len() => n,
            _ => return Err(out("tp_next_offset", u64::from(next_offset), at, block)),
        }
    } else {
        at
    };
    let vlan = (status & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
        let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
            u16_at(h, hdr::VLAN_TPID).unwrap_or(0x8100)
        } else {
            0x8100
        };
        // the TCI is 16 bits stored in a u32
        (tpid, (field(hdr::VLAN_TCI) & 0xffff) as u16)
    });
    *cursor = Cursor {
        offset: next_at,
        remaining,
    };
    Ok(Some(RingPacket {
        sec: field(hdr::SEC),
        nsec: field(hdr::NSEC),
        data_offset,
        snaplen: snaplen as usize,
        len: field(hdr::LEN),
        status,
        vlan,
    }))
}

/// Writes into `out` the frame `data` with the 802.1Q tag (`tpid`, `tci`)
/// put back after the two MAC addresses, as it was on the wire. A frame too
/// short to hold two MAC addresses is copied as it is.
pub fn reinsert_vlan(data: &[u8], tpid: u16, tci: u16, out: &mut Vec<u8>) {
    out.clear();
    match data.split_at_checked(12) {
        Some((macs, rest)) => {
            out.extend_from_slice(macs);
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&tci.to_be_bytes());
            out.extend_from_slice(rest);
        }
        None => out.extend_from_slice(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn offsets_match_the_kernel_structs_of_libc() {
        assert_eq!(
            offset_of!(libc::tpacket3_hdr, tp_next_offset),
            hdr::NEXT_OFFSET
        );
        assert_eq!(offset_of!(libc::tpacket3_hdr, tp_sec), hdr::SEC);
        assert_eq!(offset_of!(libc::tpacket3_hdr, tp_nsec), hdr::NSEC);
        assert_eq!(offset_of!(libc::tpacket3_hdr, tp_snaplen), hdr::SNAPLEN);
        assert_eq!(offset_of!(libc::tpacket3_hdr, tp_len), hdr::LEN);
        assert_eq!(offset_of!(libc::tpacket3_hdr, tp_status), hdr::STATUS);
        assert_eq!(offset_of!(libc::tpacket3_hdr, tp_mac), hdr::MAC);
        let hv1 = offset_of!(libc::tpacket3_hdr, hv1);
        assert_eq!(
            hv1 + offset_of!(libc::tpacket_hdr_variant1, tp_vlan_tci),
            hdr::VLAN_TCI
        );
        assert_eq!(
            hv1 + offset_of!(libc::tpacket_hdr_variant1, tp_vlan_tpid),
            hdr::VLAN_TPID
        );
        assert_eq!(size_of::<libc::tpacket3_hdr>(), hdr::SIZE);
        let h = offset_of!(libc::tpacket_block_desc, hdr);
        assert_eq!(
            h + offset_of!(libc::tpacket_hdr_v1, block_status),
            crate::sys::BLOCK_STATUS_OFFSET
        );
        assert_eq!(h + offset_of!(libc::tpacket_hdr_v1, num_pkts), NUM_PKTS);
        assert_eq!(
            h + offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt),
            OFFSET_TO_FIRST_PKT
        );
        assert_eq!(size_of::<libc::tpacket_block_desc>(), BLOCK_DESC_LEN);
    }

    /// A packet to put in a hand-built block.
    struct P<'a> {
        data: &'a [u8],
        len: u32,
        status: u32,
        tci: u32,
        tpid: u16,
    }

    fn put32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }

    /// A block of `size` bytes laid out as the kernel does: packets from
    /// offset 48, each header 16-byte aligned, the frame at `tp_mac` = 82
    /// (as for SOCK_RAW Ethernet: 48-byte header and 20-byte sockaddr_ll,
    /// the network header aligned to 16 at 96, the 14-byte MAC header before).
    fn block(size: usize, packets: &[P<'_>]) -> Vec<u8> {
        let mut b = vec![0u8; size];
        put32(&mut b, NUM_PKTS, packets.len() as u32);
        put32(&mut b, OFFSET_TO_FIRST_PKT, 48);
        let mut at = 48;
        for (i, p) in packets.iter().enumerate() {
            let mac = 82usize;
            let next = (mac + p.data.len() + 15) & !15;
            put32(
                &mut b,
                at + hdr::NEXT_OFFSET,
                if i + 1 < packets.len() {
                    next as u32
                } else {
                    0
                },
            );
            put32(&mut b, at + hdr::SEC, 1_700_000_000 + i as u32);
            put32(&mut b, at + hdr::NSEC, 123_456_789);
            put32(&mut b, at + hdr::SNAPLEN, p.data.len() as u32);
            put32(&mut b, at + hdr::LEN, p.len);
            put32(&mut b, at + hdr::STATUS, p.status);
            b[at + hdr::MAC..at + hdr::MAC + 2].copy_from_slice(&(mac as u16).to_ne_bytes());
            put32(&mut b, at + hdr::VLAN_TCI, p.tci);
            b[at + hdr::VLAN_TPID..at + hdr::VLAN_TPID + 2].copy_from_slice(&p.tpid.to_ne_bytes());
            b[at + mac..at + mac + p.data.len()].copy_from_slice(p.data);
            at += next;
        }
        b
    }

    fn plain(data: &[u8]) -> P<'_> {
        P {
            data,
            len: data.len() as u32,
            status: libc::TP_STATUS_USER,
            tci: 0,
            tpid: 0,
        }
    }

    fn all(b: &[u8]) -> Result<Vec<RingPacket>, RingError> {
        let mut c = start(b)?;
        let mut v = Vec::new();
        while let Some(p) = next(b, &mut c)? {
            v.push(p);
        }
        Ok(v)
    }

    #[test]
    fn walk_yields_every_packet_with_its_bytes_times_and_lengths() {
        let a: Vec<u8> = (0..60).collect();
        let c: Vec<u8> = (100..=200).collect();
        let mut short = plain(&a[..20]);
        short.len = 1514; // snaplen-truncated
        let b = block(4096, &[plain(&a), short, plain(&c)]);
        let ps = all(&b).unwrap();
        assert_eq!(ps.len(), 3);
        assert_eq!(&b[ps[0].data_offset..][..ps[0].snaplen], &a[..]);
        assert_eq!(ps[0].data_offset, 48 + 82);
        assert_eq!((ps[1].snaplen, ps[1].len), (20, 1514));
        assert_eq!(&b[ps[2].data_offset..][..ps[2].snaplen], &c[..]);
        assert_eq!((ps[2].sec, ps[2].nsec), (1_700_000_002, 123_456_789));
        assert!(ps.iter().all(|p| p.vlan.is_none()));
    }

    #[test]
    fn an_empty_block_yields_nothing() {
        let b = block(4096, &[]);
        assert_eq!(all(&b).unwrap(), vec![]);
    }

    #[test]
    fn vlan_tag_is_taken_from_the_header_with_its_tpid() {
        let f: Vec<u8> = (0..64).collect();
        let mut q = plain(&f);
        q.status |= libc::TP_STATUS_VLAN_VALID;
        q.tci = 0x2064; // priority 1, VLAN 100
        let mut ad = plain(&f);
        ad.status |= libc::TP_STATUS_VLAN_VALID | libc::TP_STATUS_VLAN_TPID_VALID;
        ad.tci = 7;
        ad.tpid = 0x88a8;
        let mut tci_no_valid = plain(&f);
        tci_no_valid.tci = 5; // no TP_STATUS_VLAN_VALID: no tag
        let b = block(4096, &[q, ad, tci_no_valid]);
        let ps = all(&b).unwrap();
        assert_eq!(ps[0].vlan, Some((0x8100, 0x2064)));
        assert_eq!(ps[1].vlan, Some((0x88a8, 7)));
        assert_eq!(ps[2].vlan, None);
    }

    #[test]
    fn reinserted_tag_sits_after_the_mac_addresses() {
        let frame: Vec<u8> = (0..30).collect();
        let mut out = Vec::new();
        reinsert_vlan(&frame, 0x8100, 0x0064, &mut out);
        assert_eq!(out.len(), 34);
        assert_eq!(&out[..12], &frame[..12]);
        assert_eq!(&out[12..16], &[0x81, 0x00, 0x00, 0x64]);
        assert_eq!(&out[16..], &frame[12..]);
        reinsert_vlan(&frame[..5], 0x8100, 1, &mut out);
        assert_eq!(out, &frame[..5]);
    }

    fn set_first_header(b: &mut [u8], field: usize, v: u32) {
        put32(b, 48 + field, v);
    }

    #[test]
    fn bad_offsets_are_errors_not_panics() {
        let f = [0xAAu8; 100];
        let good = block(4096, &[plain(&f), plain(&f)]);
        // next offset past the block
        let mut b = good.clone();
        set_first_header(&mut b, hdr::NEXT_OFFSET, 5000);
        assert!(matches!(
            all(&b),
            Err(RingError::OutOfBlock {
                field: "tp_next_offset",
                ..
            })
        ));
        // next offset 0 with a packet to come
        let mut b = good.clone();
        set_first_header(&mut b, hdr::NEXT_OFFSET, 0);
        assert!(matches!(
            all(&b),
            Err(RingError::NoNext { remaining: 1, .. })
        ));
        // snaplen past the block
        let mut b = good.clone();
        set_first_header(&mut b, hdr::SNAPLEN, 4000);
        assert!(matches!(
            all(&b),
            Err(RingError::OutOfBlock {
                field: "tp_snaplen",
                ..
            })
        ));
        // snaplen near u32::MAX (no overflow)
        let mut b = good.clone();
        set_first_header(&mut b, hdr::SNAPLEN, u32::MAX);
        assert!(all(&b).is_err());
        // tp_mac inside the header, or past the block
        let mut b = good.clone();
        b[48 + hdr::MAC..48 + hdr::MAC + 2].copy_from_slice(&10u16.to_ne_bytes());
        assert!(matches!(
            all(&b),
            Err(RingError::OutOfBlock {
                field: "tp_mac",
                ..
            })
        ));
        let mut b = good.clone();
        b[48 + hdr::MAC..48 + hdr::MAC + 2].copy_from_slice(&u16::MAX.to_ne_bytes());
        assert!(matches!(
            all(&b),
            Err(RingError::OutOfBlock {
                field: "tp_mac",
                ..
            })
        ));
        // first packet offset past the block, or inside the descriptor
        let mut b = good.clone();
        put32(&mut b, OFFSET_TO_FIRST_PKT, 4090);
        assert!(matches!(
            start(&b),
            Err(RingError::OutOfBlock {
                field: "offset_to_first_pkt",
                ..
            })
        ));
        let mut b = good.clone();
        put32(&mut b, OFFSET_TO_FIRST_PKT, 8);
        assert!(start(&b).is_err());
        // more packets announced than there are: the third header is read
        // where the second's next offset (0) says nothing: an error
        let mut b = good.clone();
        put32(&mut b, NUM_PKTS, 3);
        assert!(matches!(all(&b), Err(RingError::NoNext { .. })));
        // a block too small for its descriptor
        assert!(start(&good[..10]).is_err());
    }

    #[test]
    fn every_corruption_of_a_header_byte_is_handled() {
        // flip each byte of the two packet headers and the descriptor to
        // 0xFF: the walk may succeed or fail, never panic or read out of it
        let f = [1u8; 40];
        let good = block(1024, &[plain(&f), plain(&f)]);
        for i in 0..256 {
            let mut b = good.clone();
            b[i] = 0xFF;
            let _ = all(&b);
            if let Ok(ps) = all(&b) {
                for p in ps {
                    assert!(p.data_offset + p.snaplen <= b.len());
                }
            }
        }
    }
}
