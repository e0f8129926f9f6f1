//! pcapng helpers: lenient parsing of section and interface blocks, and the
//! timestamp conversion.

use crate::{LinkType, Timestamp};

/// Block type of the Section Header Block (the same in both byte orders).
pub(crate) const SHB: u32 = 0x0A0D_0D0A;
/// Block type of the Interface Description Block.
pub(crate) const IDB: u32 = 1;
/// Block type of the obsolete Packet Block.
pub(crate) const PB: u32 = 2;
/// Byte-order magic of the Section Header Block.
pub(crate) const BOM: u32 = 0x1A2B_3C4D;

/// Reads a `u32` at `at` in the given byte order.
pub(crate) fn u32_at(b: &[u8], at: usize, be: bool) -> Option<u32> {
    let a: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if be {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    })
}

/// Reads a `u16` at `at` in the given byte order.
pub(crate) fn u16_at(b: &[u8], at: usize, be: bool) -> Option<u16> {
    let a: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(if be {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    })
}

/// Byte order of a section from the first 12 bytes of its SHB: `Some(true)`
/// for big-endian, `None` when the byte-order magic is wrong.
pub(crate) fn shb_big_endian(b: &[u8]) -> Option<bool> {
    match u32_at(b, 8, false)? {
        BOM => Some(false),
        x if x == BOM.swap_bytes() => Some(true),
        _ => None,
    }
}

/// Declared total length of the block starting at `b` (which may be
/// incomplete), with `be` the byte order of the current section.
pub(crate) fn declared_block_len(b: &[u8], be: bool) -> Option<u32> {
    let be = if u32_at(b, 0, false)? == SHB {
        shb_big_endian(b)?
    } else {
        be
    };
    u32_at(b, 4, be)
}

/// What a Section Header Block says (options are parsed leniently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SectionInfo {
    pub(crate) big_endian: bool,
    pub(crate) major: u16,
    pub(crate) minor: u16,
}

/// Parses the fixed part of a complete SHB.
pub(crate) fn parse_shb(b: &[u8]) -> Option<SectionInfo> {
    let be = shb_big_endian(b)?;
    Some(SectionInfo {
        big_endian: be,
        major: u16_at(b, 12, be)?,
        minor: u16_at(b, 14, be)?,
    })
}

/// A description of one capture interface (pcapng Interface Description
/// Block, or the file header of a classic pcap file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// Index of the pcapng section (0 for the first; always 0 for pcap).
    pub section: u32,
    /// Interface id within the section (the order of its IDB, from 0).
    pub id: u32,
    /// Link-layer type of its packets.
    pub linktype: LinkType,
    /// Snapshot length (0 means no limit in pcapng).
    pub snaplen: u32,
    /// `if_name` option, when present and valid UTF-8.
    pub name: Option<String>,
    /// `if_tsresol` option as stored (default 6: microseconds). The high bit
    /// selects powers of 2, the low 7 bits are the exponent.
    pub tsresol: u8,
    /// `if_tsoffset` option: seconds added to every timestamp (default 0).
    pub tsoffset: i64,
}

/// Parses a complete IDB; options are read leniently: a malformed option
/// ends the option list instead of failing the block.
pub(crate) fn parse_idb(b: &[u8], be: bool, section: u32, id: u32) -> Option<InterfaceInfo> {
    let linktype = u16_at(b, 8, be)?;
    let snaplen = u32_at(b, 12, be)?;
    let total = usize::try_from(u32_at(b, 4, be)?).ok()?.min(b.len());
    let mut info = InterfaceInfo {
        section,
        id,
        linktype: LinkType(u32::from(linktype)),
        snaplen,
        name: None,
        tsresol: 6,
        tsoffset: 0,
    };
    let opts = b.get(16..total.saturating_sub(4)).unwrap_or_default();
    let mut at = 0usize;
    while let (Some(code), Some(len)) = (u16_at(opts, at, be), u16_at(opts, at + 2, be)) {
        let len = usize::from(len);
        let Some(value) = opts.get(at + 4..at + 4 + len) else {
            break;
        };
        match code {
            0 => break,
            2 => {
                info.name = std::str::from_utf8(value)
                    .ok()
                    .map(|s| s.trim_end_matches('\0').to_string())
            }
            9 => {
                if let Some(&r) = value.first() {
                    info.tsresol = r;
                }
            }
            14 => {
                if let Ok(a) = <[u8; 8]>::try_from(value) {
                    info.tsoffset = if be {
                        i64::from_be_bytes(a)
                    } else {
                        i64::from_le_bytes(a)
                    };
                }
            }
            _ => {}
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    Some(info)
}

/// Converts a pcapng timestamp (a count of `tsresol` units) to nanoseconds
/// since the epoch, adding `tsoffset` seconds. Exact integer arithmetic;
/// sub-nanosecond units are truncated; saturates at the `i64` limits.
pub fn pcapng_timestamp(units: u64, tsresol: u8, tsoffset: i64) -> Timestamp {
    let units = u128::from(units);
    let exp = u32::from(tsresol & 0x7f);
    let nanos: u128 = if tsresol & 0x80 != 0 {
        // unit = 2^-exp s; exp <= 127 so 2^exp fits a u128, units * 1e9 < 2^94
        (units * 1_000_000_000) >> exp
    } else if exp <= 9 {
        units * 10u128.pow(9 - exp)
    } else {
        match 10u128.checked_pow(exp - 9) {
            Some(div) => units / div,
            None => 0,
        }
    };
    let total = i128::try_from(nanos)
        .unwrap_or(i128::MAX)
        .saturating_add(i128::from(tsoffset).saturating_mul(1_000_000_000));
    Timestamp(i64::try_from(total).unwrap_or(if total < 0 { i64::MIN } else { i64::MAX }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_powers_of_ten() {
        assert_eq!(pcapng_timestamp(1_500_000, 6, 0), Timestamp(1_500_000_000));
        assert_eq!(
            pcapng_timestamp(1_500_000_001, 9, 0),
            Timestamp(1_500_000_001)
        );
        assert_eq!(pcapng_timestamp(15, 1, 0), Timestamp(1_500_000_000));
        assert_eq!(
            pcapng_timestamp(1_234_567_891_234, 12, 0),
            Timestamp(1_234_567_891)
        );
        assert_eq!(pcapng_timestamp(u64::MAX, 127, 0), Timestamp(0));
        assert_eq!(pcapng_timestamp(3, 0, 0), Timestamp(3_000_000_000));
    }

    #[test]
    fn ts_powers_of_two() {
        // 2^-10 s units: 1024 units = 1 s, 1 unit = 976562.5 ns -> 976562
        assert_eq!(
            pcapng_timestamp(1024, 0x80 | 10, 0),
            Timestamp(1_000_000_000)
        );
        assert_eq!(pcapng_timestamp(1, 0x80 | 10, 0), Timestamp(976_562));
        assert_eq!(
            pcapng_timestamp(3 << 30, 0x80 | 30, 0),
            Timestamp(3_000_000_000)
        );
        assert_eq!(pcapng_timestamp(u64::MAX, 0x80 | 127, 0), Timestamp(0));
        assert_eq!(pcapng_timestamp(5, 0x80, 0), Timestamp(5_000_000_000));
    }

    #[test]
    fn ts_offset_and_saturation() {
        assert_eq!(
            pcapng_timestamp(1, 0, 1_600_000_000),
            Timestamp(1_600_000_001_000_000_000)
        );
        assert_eq!(pcapng_timestamp(0, 6, -5), Timestamp(-5_000_000_000));
        assert_eq!(pcapng_timestamp(u64::MAX, 9, i64::MAX), Timestamp(i64::MAX));
        assert_eq!(pcapng_timestamp(0, 9, i64::MIN), Timestamp(i64::MIN));
        assert_eq!(pcapng_timestamp(u64::MAX, 0, 0), Timestamp(i64::MAX));
    }

    #[test]
    fn idb_lenient_options() {
        // IDB LE: linktype 1, snaplen 100, if_name "eth0", if_tsresol 9,
        // then an option whose length runs past the block
        let mut b = vec![1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 100, 0, 0, 0];
        b.extend_from_slice(&[2, 0, 4, 0, b'e', b't', b'h', b'0']);
        b.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0]);
        b.extend_from_slice(&[14, 0, 0x30, 0x30]);
        b.extend_from_slice(&[0, 0, 0, 0]);
        let len = b.len() as u32;
        b[4..8].copy_from_slice(&len.to_le_bytes());
        let n = b.len();
        b[n - 4..].copy_from_slice(&len.to_le_bytes());
        let i = parse_idb(&b, false, 0, 0).unwrap();
        assert_eq!(i.linktype, LinkType::ETHERNET);
        assert_eq!(i.snaplen, 100);
        assert_eq!(i.name.as_deref(), Some("eth0"));
        assert_eq!(i.tsresol, 9);
        assert_eq!(i.tsoffset, 0);
        assert!(parse_idb(&b[..10], false, 0, 0).is_none());
    }
}
