//! BSD loopback encapsulation: LINKTYPE_NULL and LINKTYPE_LOOP,
//! <https://www.tcpdump.org/linktypes/LINKTYPE_NULL.html>.

use super::{DecodeResult, Layer, ensure, read_array, tail};

/// AF_INET on every BSD.
pub const AF_INET: u32 = 2;
/// AF_INET6 on NetBSD, OpenBSD and BSD/OS.
pub const AF_INET6_BSD: u32 = 24;
/// AF_INET6 on FreeBSD and DragonFly BSD.
pub const AF_INET6_FREEBSD: u32 = 28;
/// AF_INET6 on Darwin (macOS, iOS).
pub const AF_INET6_DARWIN: u32 = 30;
/// AF_ISO / OSI.
pub const AF_ISO: u32 = 7;
/// AF_IPX.
pub const AF_IPX: u32 = 23;

fn is_known_af(v: u32) -> bool {
    matches!(
        v,
        AF_INET | AF_INET6_BSD | AF_INET6_FREEBSD | AF_INET6_DARWIN | AF_ISO | AF_IPX
    )
}

/// Zero-copy view of the 4-byte loopback header (an address family).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NullSlice<'a> {
    data: &'a [u8],
    family: u32,
}

impl<'a> NullSlice<'a> {
    /// Length of the header.
    pub const HEADER_LEN: usize = 4;

    /// Decodes a LINKTYPE_NULL header, whose family is in the byte order of
    /// the capturing host: the little-endian value is used if it is a known
    /// family, else the big-endian one if known, else the little-endian one.
    ///
    /// # Errors
    /// `Truncated` if fewer than 4 bytes are given.
    pub fn from_slice(data: &'a [u8]) -> DecodeResult<Self> {
        ensure(Layer::Null, data, 0, Self::HEADER_LEN)?;
        let raw = read_array::<4>(data, 0).unwrap_or_default();
        let le = u32::from_le_bytes(raw);
        let be = u32::from_be_bytes(raw);
        let family = if !is_known_af(le) && is_known_af(be) {
            be
        } else {
            le
        };
        Ok(NullSlice { data, family })
    }

    /// Decodes a LINKTYPE_LOOP header (family in network byte order).
    ///
    /// # Errors
    /// `Truncated` if fewer than 4 bytes are given.
    pub fn from_slice_loop(data: &'a [u8]) -> DecodeResult<Self> {
        ensure(Layer::Null, data, 0, Self::HEADER_LEN)?;
        let family = u32::from_be_bytes(read_array::<4>(data, 0).unwrap_or_default());
        Ok(NullSlice { data, family })
    }

    /// The address family, in host terms.
    pub fn family(&self) -> u32 {
        self.family
    }

    /// IP version of the payload: 4 for AF_INET, 6 for the BSD AF_INET6
    /// values (24, 28, 30), `None` otherwise.
    pub fn ip_version(&self) -> Option<u8> {
        match self.family {
            AF_INET => Some(4),
            AF_INET6_BSD | AF_INET6_FREEBSD | AF_INET6_DARWIN => Some(6),
            _ => None,
        }
    }

    /// Length of the header (4).
    pub fn header_len(&self) -> usize {
        Self::HEADER_LEN
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &'a [u8] {
        tail(self.data, Self::HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_valid_both_byte_orders() {
        let le = [2, 0, 0, 0, 0x45];
        let n = NullSlice::from_slice(&le).unwrap();
        assert_eq!((n.family(), n.ip_version()), (2, Some(4)));
        assert_eq!(n.payload(), &[0x45]);
        assert_eq!(n.header_len(), 4);
        let be = [0, 0, 0, 30, 0x60];
        let n = NullSlice::from_slice(&be).unwrap();
        assert_eq!((n.family(), n.ip_version()), (30, Some(6)));
        let le6 = [28, 0, 0, 0];
        assert_eq!(NullSlice::from_slice(&le6).unwrap().ip_version(), Some(6));
        let bsd6 = [24, 0, 0, 0];
        assert_eq!(NullSlice::from_slice(&bsd6).unwrap().ip_version(), Some(6));
    }

    #[test]
    fn parse_valid_loop() {
        let b = [0, 0, 0, 2, 0x45];
        let n = NullSlice::from_slice_loop(&b).unwrap();
        assert_eq!(n.ip_version(), Some(4));
        // LOOP never swaps
        let b = [2, 0, 0, 0];
        let n = NullSlice::from_slice_loop(&b).unwrap();
        assert_eq!(n.family(), 0x0200_0000);
        assert_eq!(n.ip_version(), None);
    }

    #[test]
    fn truncated_at_every_offset() {
        let b = [2, 0, 0, 0];
        for n in 0..4 {
            assert!(NullSlice::from_slice(&b[..n]).unwrap_err().is_truncated());
            assert!(
                NullSlice::from_slice_loop(&b[..n])
                    .unwrap_err()
                    .is_truncated()
            );
        }
    }

    #[test]
    fn unknown_values_roundtrip() {
        let b = [0x78, 0x56, 0x34, 0x12];
        let n = NullSlice::from_slice(&b).unwrap();
        assert_eq!(n.family(), 0x1234_5678);
        assert_eq!(n.ip_version(), None);
    }
}
