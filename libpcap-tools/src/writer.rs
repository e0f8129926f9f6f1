//! Capture writers: classic pcap ([`PcapWriter`]) and pcapng
//! ([`PcapNgWriter`]), for test fixtures and for rewriting tools.
//!
//! Both write [`Packet`]s as they are: `data` is the captured bytes and
//! `origlen` the original length. Timestamps are converted from nanoseconds
//! since the epoch to the resolution of the file (truncating towards negative
//! infinity); a packet that the format cannot represent (a timestamp before
//! 1970 or after 2106 in classic pcap, data longer than 4 GiB) is refused
//! with [`Error::Unwritable`].

use crate::{Error, LinkType, Packet, Result, Timestamp};
use std::io::Write;

/// Options of a classic pcap file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcapWriterOptions {
    /// Nanosecond timestamps (magic `a1b23c4d`) instead of microseconds.
    pub nanos: bool,
    /// Write big-endian headers instead of little-endian.
    pub big_endian: bool,
    /// Snapshot length written in the file header. Packets are not cut to it.
    pub snaplen: u32,
}

impl Default for PcapWriterOptions {
    fn default() -> Self {
        PcapWriterOptions {
            nanos: false,
            big_endian: false,
            snaplen: 262_144,
        }
    }
}

/// Appends `v` in the chosen byte order.
fn put32(out: &mut Vec<u8>, v: u32, be: bool) {
    out.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
}

fn put16(out: &mut Vec<u8>, v: u16, be: bool) {
    out.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
}

/// A classic pcap writer.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    opts: PcapWriterOptions,
    written: u64,
    scratch: Vec<u8>,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header and returns the writer.
    ///
    /// # Errors
    /// [`Error::Write`] if writing fails.
    pub fn new(out: W, linktype: LinkType, opts: PcapWriterOptions) -> Result<Self> {
        let mut w = PcapWriter {
            out,
            opts,
            written: 0,
            scratch: Vec::with_capacity(2048),
        };
        let be = opts.big_endian;
        let mut h = Vec::with_capacity(24);
        put32(
            &mut h,
            if opts.nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 },
            be,
        );
        put16(&mut h, 2, be);
        put16(&mut h, 4, be);
        put32(&mut h, 0, be);
        put32(&mut h, 0, be);
        put32(&mut h, opts.snaplen, be);
        put32(&mut h, linktype.0, be);
        w.emit(&h)?;
        Ok(w)
    }

    fn emit(&mut self, b: &[u8]) -> Result<()> {
        self.out.write_all(b).map_err(|source| Error::Write {
            offset: self.written,
            source,
        })?;
        self.written += b.len() as u64;
        Ok(())
    }

    /// Appends one packet record (`ts: None` is written as time 0).
    ///
    /// # Errors
    /// [`Error::Unwritable`] when the timestamp is out of the format's range
    /// or the data longer than `u32::MAX`; [`Error::Write`] if writing fails.
    pub fn write_packet(&mut self, p: &Packet<'_>) -> Result<()> {
        let ts = p.ts.unwrap_or_default();
        let secs = u32::try_from(ts.secs())
            .map_err(|_| unwritable(p, "timestamp out of the pcap range (1970-2106)"))?;
        let frac = if self.opts.nanos {
            ts.subsec_nanos()
        } else {
            ts.subsec_nanos() / 1000
        };
        let caplen =
            u32::try_from(p.data.len()).map_err(|_| unwritable(p, "packet longer than 4 GiB"))?;
        let be = self.opts.big_endian;
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        put32(&mut s, secs, be);
        put32(&mut s, frac, be);
        put32(&mut s, caplen, be);
        put32(&mut s, p.origlen, be);
        let r = self.emit(&s).and_then(|()| self.emit(p.data));
        self.scratch = s;
        r
    }

    /// Flushes and returns the underlying writer.
    ///
    /// # Errors
    /// [`Error::Write`] if flushing fails.
    pub fn finish(mut self) -> Result<W> {
        self.out.flush().map_err(|source| Error::Write {
            offset: self.written,
            source,
        })?;
        Ok(self.out)
    }
}

fn unwritable(p: &Packet<'_>, reason: &str) -> Error {
    Error::Unwritable {
        index: p.index,
        reason: reason.to_string(),
    }
}

/// Description of an interface written by [`PcapNgWriter::add_interface`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSpec {
    /// Link type of the interface's packets (the low 16 bits are written).
    pub linktype: LinkType,
    /// Snapshot length (0 = no limit).
    pub snaplen: u32,
    /// `if_tsresol`: 6 = microseconds, 9 = nanoseconds, `0x80 | n` = 2^-n s.
    /// The option is omitted for the default (6).
    pub tsresol: u8,
    /// `if_tsoffset` in seconds (omitted when 0).
    pub tsoffset: i64,
    /// `if_name` (omitted when `None`).
    pub name: Option<String>,
}

impl InterfaceSpec {
    /// An interface with nanosecond timestamps, no snaplen, no offset.
    pub fn new(linktype: LinkType) -> Self {
        InterfaceSpec {
            linktype,
            snaplen: 0,
            tsresol: 9,
            tsoffset: 0,
            name: None,
        }
    }
}

/// A pcapng writer: a Section Header Block, Interface Description Blocks and
/// Enhanced Packet Blocks (Simple Packet Blocks for packets without a
/// timestamp on interface 0).
#[derive(Debug)]
pub struct PcapNgWriter<W: Write> {
    out: W,
    be: bool,
    interfaces: Vec<InterfaceSpec>,
    written: u64,
    scratch: Vec<u8>,
}

impl<W: Write> PcapNgWriter<W> {
    /// Writes a Section Header Block (byte order chosen by `big_endian`).
    ///
    /// # Errors
    /// [`Error::Write`] if writing fails.
    pub fn new(out: W, big_endian: bool) -> Result<Self> {
        let mut w = PcapNgWriter {
            out,
            be: big_endian,
            interfaces: Vec::new(),
            written: 0,
            scratch: Vec::new(),
        };
        w.write_shb()?;
        Ok(w)
    }

    fn write_shb(&mut self) -> Result<()> {
        let be = self.be;
        let mut b = Vec::with_capacity(28);
        put32(&mut b, 0x0A0D_0D0A, be);
        put32(&mut b, 28, be);
        put32(&mut b, 0x1A2B_3C4D, be);
        put16(&mut b, 1, be);
        put16(&mut b, 0, be);
        b.extend_from_slice(&[0xff; 8]); // section length unknown (-1)
        put32(&mut b, 28, be);
        self.emit(&b)
    }

    /// Starts a new section (interface ids restart at 0).
    ///
    /// # Errors
    /// [`Error::Write`] if writing fails.
    pub fn new_section(&mut self, big_endian: bool) -> Result<()> {
        self.be = big_endian;
        self.interfaces.clear();
        self.write_shb()
    }

    fn emit(&mut self, b: &[u8]) -> Result<()> {
        self.out.write_all(b).map_err(|source| Error::Write {
            offset: self.written,
            source,
        })?;
        self.written += b.len() as u64;
        Ok(())
    }

    /// Writes an Interface Description Block; returns the interface id.
    ///
    /// # Errors
    /// [`Error::Write`] if writing fails.
    pub fn add_interface(&mut self, spec: &InterfaceSpec) -> Result<u32> {
        let be = self.be;
        let mut opts = Vec::new();
        if let Some(name) = &spec.name {
            push_option(&mut opts, 2, name.as_bytes(), be);
        }
        if spec.tsresol != 6 {
            push_option(&mut opts, 9, &[spec.tsresol], be);
        }
        if spec.tsoffset != 0 {
            let v = if be {
                spec.tsoffset.to_be_bytes()
            } else {
                spec.tsoffset.to_le_bytes()
            };
            push_option(&mut opts, 14, &v, be);
        }
        if !opts.is_empty() {
            push_option(&mut opts, 0, &[], be);
        }
        let len = 20 + opts.len() as u32;
        let mut b = Vec::with_capacity(len as usize);
        put32(&mut b, 1, be);
        put32(&mut b, len, be);
        put16(&mut b, (spec.linktype.0 & 0xffff) as u16, be);
        put16(&mut b, 0, be);
        put32(&mut b, spec.snaplen, be);
        b.extend_from_slice(&opts);
        put32(&mut b, len, be);
        self.emit(&b)?;
        self.interfaces.push(spec.clone());
        Ok(u32::try_from(self.interfaces.len() - 1).unwrap_or(u32::MAX))
    }

    /// Writes a block of any type with the given body (padded to 32 bits),
    /// e.g. a custom or name resolution block.
    ///
    /// # Errors
    /// [`Error::Unwritable`] if the body is too long, [`Error::Write`].
    pub fn write_raw_block(&mut self, block_type: u32, body: &[u8]) -> Result<()> {
        let be = self.be;
        let padded = body.len().div_ceil(4) * 4;
        let len = u32::try_from(padded + 12).map_err(|_| Error::Unwritable {
            index: 0,
            reason: "block longer than 4 GiB".into(),
        })?;
        let mut b = Vec::with_capacity(padded + 12);
        put32(&mut b, block_type, be);
        put32(&mut b, len, be);
        b.extend_from_slice(body);
        b.resize(padded + 8, 0);
        put32(&mut b, len, be);
        self.emit(&b)
    }

    /// Writes a packet on interface `p.interface`: an Enhanced Packet Block,
    /// or a Simple Packet Block when `p.ts` is `None` (interface 0 only).
    ///
    /// # Errors
    /// [`Error::Unwritable`] when the interface is not defined, the timestamp
    /// is not representable or the packet too long; [`Error::Write`].
    pub fn write_packet(&mut self, p: &Packet<'_>) -> Result<()> {
        let be = self.be;
        let Some(spec) = self.interfaces.get(p.interface as usize) else {
            return Err(unwritable(p, "interface not defined in this section"));
        };
        let caplen =
            u32::try_from(p.data.len()).map_err(|_| unwritable(p, "packet longer than 4 GiB"))?;
        let padded = p.data.len().div_ceil(4) * 4;
        // everything that can refuse the packet is checked before the scratch
        // buffer is borrowed
        let block = match p.ts {
            Some(ts) => {
                let units = ts_units(ts, spec.tsresol, spec.tsoffset).ok_or_else(|| {
                    unwritable(
                        p,
                        "timestamp not representable with this if_tsresol/if_tsoffset",
                    )
                })?;
                let len = u32::try_from(32 + padded)
                    .map_err(|_| unwritable(p, "packet longer than 4 GiB"))?;
                (Some(units), len, p.data.len())
            }
            None => {
                if p.interface != 0 {
                    return Err(unwritable(
                        p,
                        "a packet without timestamp must be on interface 0",
                    ));
                }
                // a Simple Packet Block stores no captured length: readers take
                // min(original length, snaplen) bytes, so those are written, and
                // a packet captured shorter than that cannot be
                let snaplen = if spec.snaplen == 0 {
                    u32::MAX
                } else {
                    spec.snaplen
                };
                if caplen < p.origlen.min(snaplen) {
                    return Err(unwritable(
                        p,
                        "a packet without timestamp must hold min(original length, snaplen) bytes",
                    ));
                }
                let kept = p.origlen.min(snaplen) as usize;
                let len = u32::try_from(16 + kept.div_ceil(4) * 4)
                    .map_err(|_| unwritable(p, "packet longer than 4 GiB"))?;
                (None, len, kept)
            }
        };
        // the header from the scratch buffer, the packet's bytes as they
        // are (no copy), then the padding and the trailing length
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        let (units, len, kept) = block;
        let data = match units {
            Some(units) => {
                put32(&mut s, 6, be);
                put32(&mut s, len, be);
                put32(&mut s, p.interface, be);
                put32(&mut s, (units >> 32) as u32, be);
                put32(&mut s, units as u32, be);
                put32(&mut s, caplen, be);
                put32(&mut s, p.origlen, be);
                p.data
            }
            None => {
                put32(&mut s, 3, be);
                put32(&mut s, len, be);
                put32(&mut s, p.origlen, be);
                p.data.get(..kept).unwrap_or(p.data)
            }
        };
        let header = s.len();
        s.resize(header + (4 - data.len() % 4) % 4, 0);
        put32(&mut s, len, be);
        let (head, tail) = s.split_at(header);
        let r = self
            .emit(head)
            .and_then(|()| self.emit(data))
            .and_then(|()| self.emit(tail));
        self.scratch = s;
        r
    }

    /// Flushes and returns the underlying writer.
    ///
    /// # Errors
    /// [`Error::Write`] if flushing fails.
    pub fn finish(mut self) -> Result<W> {
        self.out.flush().map_err(|source| Error::Write {
            offset: self.written,
            source,
        })?;
        Ok(self.out)
    }
}

fn push_option(out: &mut Vec<u8>, code: u16, value: &[u8], be: bool) {
    put16(out, code, be);
    put16(out, u16::try_from(value.len()).unwrap_or(u16::MAX), be);
    out.extend_from_slice(value);
    out.resize(out.len() + (value.len().div_ceil(4) * 4 - value.len()), 0);
}

/// Converts a timestamp to a count of `tsresol` units after subtracting
/// `tsoffset` seconds (the inverse of [`crate::pcapng_timestamp`], rounding
/// down so that reading back gives the same value when the unit divides a
/// nanosecond count exactly).
fn ts_units(ts: Timestamp, tsresol: u8, tsoffset: i64) -> Option<u64> {
    let ns = i128::from(ts.0) - i128::from(tsoffset) * 1_000_000_000;
    let ns = u128::try_from(ns).ok()?;
    let exp = u32::from(tsresol & 0x7f);
    let units = if tsresol & 0x80 != 0 {
        // ceil(ns * 2^exp / 1e9), so that floor(units * 1e9 / 2^exp) == ns
        // whenever the unit is at most a nanosecond
        let num = ns.checked_shl(exp).filter(|v| v >> exp == ns)?;
        num.div_ceil(1_000_000_000)
    } else if exp <= 9 {
        ns / 10u128.pow(9 - exp)
    } else {
        ns.checked_mul(10u128.checked_pow(exp - 9)?)?
    };
    u64::try_from(units).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcapng_timestamp;

    #[test]
    fn ts_units_inverse() {
        let t = Timestamp(1_600_000_000_123_456_789);
        for r in [9u8, 10, 0x80 | 30, 0x80 | 32] {
            let u = ts_units(t, r, 0).unwrap();
            assert_eq!(pcapng_timestamp(u, r, 0), t, "tsresol {r:#x}");
        }
        let u = ts_units(t, 6, 0).unwrap();
        assert_eq!(
            pcapng_timestamp(u, 6, 0),
            Timestamp(1_600_000_000_123_456_000)
        );
        let u = ts_units(t, 9, 1_600_000_000).unwrap();
        assert_eq!(u, 123_456_789);
        assert_eq!(pcapng_timestamp(u, 9, 1_600_000_000), t);
        assert!(ts_units(Timestamp(-1), 9, 0).is_none());
        assert!(
            ts_units(t, 12, 0).is_none(),
            "picoseconds since 1970 overflow 64 bits"
        );
    }

    #[test]
    fn pcap_refuses_negative_time() {
        let mut w =
            PcapWriter::new(Vec::new(), LinkType::ETHERNET, PcapWriterOptions::default()).unwrap();
        let p = Packet {
            index: 3,
            interface: 0,
            linktype: LinkType::ETHERNET,
            ts: Some(Timestamp(-5)),
            origlen: 0,
            data: &[],
        };
        assert!(matches!(
            w.write_packet(&p),
            Err(Error::Unwritable { index: 3, .. })
        ));
    }
}
