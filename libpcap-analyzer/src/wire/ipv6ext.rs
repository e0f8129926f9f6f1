//! IPv6 extension headers (RFC 8200 section 4, RFC 4302 AH, RFC 2675
//! jumbo payload option).

use super::{DecodeResult, Layer, be16, be32, byte, ensure, invalid, sub_clamped, tail};

/// Hop-by-Hop Options header.
pub const IPV6_HOP_BY_HOP: u8 = 0;
/// Routing header.
pub const IPV6_ROUTING: u8 = 43;
/// Fragment header.
pub const IPV6_FRAGMENT: u8 = 44;
/// Encapsulating Security Payload (terminal).
pub const IPV6_ESP: u8 = 50;
/// Authentication Header.
pub const IPV6_AH: u8 = 51;
/// No Next Header (terminal).
pub const IPV6_NO_NEXT_HEADER: u8 = 59;
/// Destination Options header.
pub const IPV6_DEST_OPTS: u8 = 60;
/// Mobility header (terminal).
pub const IPV6_MOBILITY: u8 = 135;

/// Maximum number of extension headers walked.
pub const MAX_IPV6_EXTENSIONS: u8 = 32;

/// Jumbo payload option type (RFC 2675).
const OPT_JUMBO: u8 = 0xC2;

/// The decoded Fragment header (8 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6FragmentHeader {
    /// Next header of the fragmentable part.
    pub next_header: u8,
    /// Fragment offset in bytes.
    pub offset_bytes: u32,
    /// More fragments flag.
    pub more: bool,
    /// Identification.
    pub identification: u32,
}

impl Ipv6FragmentHeader {
    /// `true` for the first fragment (offset 0).
    pub fn is_first(&self) -> bool {
        self.offset_bytes == 0
    }
}

/// Result of [`walk_ipv6_extensions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6ExtensionChain<'a> {
    /// Next header value after the last extension header walked: the
    /// transport protocol, or a terminal header (ESP 50, No Next Header 59,
    /// Mobility 135), or the fragment's next header for a non-first
    /// fragment.
    pub transport: u8,
    /// Bytes after the last extension header walked.
    pub payload: &'a [u8],
    /// The Fragment header, if one was seen.
    pub fragment: Option<Ipv6FragmentHeader>,
    /// Bytes after the Fragment header (the fragment data to reassemble),
    /// if one was seen.
    pub fragment_data: Option<&'a [u8]>,
    /// Number of extension headers walked.
    pub headers: u8,
    /// Jumbo payload length from a Hop-by-Hop option (type 0xC2).
    pub jumbo_len: Option<u32>,
}

impl<'a> Ipv6ExtensionChain<'a> {
    /// Total length of the extension headers walked, given the payload the
    /// walk started from.
    pub fn header_len(&self, start: &[u8]) -> usize {
        start.len().saturating_sub(self.payload.len())
    }
}

/// Looks for a Jumbo Payload option in the options area of a Hop-by-Hop
/// header (bytes after its 2-byte prefix).
fn find_jumbo(mut opts: &[u8]) -> Option<u32> {
    while let Some((&t, rest)) = opts.split_first() {
        if t == 0 {
            // Pad1
            opts = rest;
            continue;
        }
        let len = usize::from(*rest.first()?);
        let (body, next) = rest.get(1..)?.split_at_checked(len)?;
        if t == OPT_JUMBO && len == 4 {
            return Some(be32(body, 0));
        }
        opts = next;
    }
    None
}

/// Walks the IPv6 extension headers starting with `first_next_header` (the
/// fixed header's next header) over `payload` (the bytes after the fixed
/// header).
///
/// Follows Hop-by-Hop (0), Routing (43), Fragment (44), Destination Options
/// (60) and AH (51); stops at ESP (50), No Next Header (59), Mobility (135)
/// and any other value (the transport). After a Fragment header with a
/// non-zero offset the walk stops: `transport` is the fragment's next header
/// and `payload` the fragment data. After a first fragment the walk goes on;
/// if a later header is cut by the fragmentation, the walk stops there
/// (`transport` is that header's type) instead of failing.
///
/// # Errors
/// `Truncated` (layer `Ipv6Ext`) if a header does not fit, outside a
/// fragment; `Invalid` (field `"extension header count"`) beyond
/// [`MAX_IPV6_EXTENSIONS`] headers.
pub fn walk_ipv6_extensions(
    first_next_header: u8,
    payload: &[u8],
) -> DecodeResult<Ipv6ExtensionChain<'_>> {
    let mut chain = Ipv6ExtensionChain {
        transport: first_next_header,
        payload,
        fragment: None,
        fragment_data: None,
        headers: 0,
        jumbo_len: None,
    };
    let mut nh = first_next_header;
    let mut off = 0usize;
    loop {
        let len = match nh {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS | IPV6_AH => {
                if !ensure_or_stop(&mut chain, payload, off, 2, nh)? {
                    return Ok(chain);
                }
                let l = usize::from(byte(payload, off + 1));
                if nh == IPV6_AH {
                    (l + 2) * 4
                } else {
                    (l + 1) * 8
                }
            }
            IPV6_FRAGMENT => 8,
            _ => {
                chain.transport = nh;
                chain.payload = tail(payload, off);
                return Ok(chain);
            }
        };
        if chain.headers >= MAX_IPV6_EXTENSIONS {
            return Err(invalid(
                Layer::Ipv6Ext,
                "extension header count",
                u32::from(chain.headers) + 1,
            ));
        }
        if !ensure_or_stop(&mut chain, payload, off, len, nh)? {
            return Ok(chain);
        }
        let hdr = sub_clamped(payload, off, off + len);
        chain.headers += 1;
        let next = byte(hdr, 0);
        match nh {
            IPV6_HOP_BY_HOP => {
                if let Some(j) = find_jumbo(tail(hdr, 2)) {
                    chain.jumbo_len = Some(j);
                }
            }
            IPV6_FRAGMENT => {
                let fo = be16(hdr, 2);
                let frag = Ipv6FragmentHeader {
                    next_header: next,
                    offset_bytes: u32::from(fo & 0xFFF8),
                    more: fo & 1 != 0,
                    identification: be32(hdr, 4),
                };
                chain.fragment = Some(frag);
                chain.fragment_data = Some(tail(payload, off + len));
                if !frag.is_first() {
                    chain.transport = next;
                    chain.payload = tail(payload, off + len);
                    return Ok(chain);
                }
            }
            _ => {}
        }
        off += len;
        nh = next;
    }
}

/// Checks that `needed` bytes fit at `off`. Outside a fragment a miss is a
/// `Truncated` error; inside a fragment it stops the walk at this header
/// (returns `Ok(false)` after filling `chain`).
fn ensure_or_stop<'a>(
    chain: &mut Ipv6ExtensionChain<'a>,
    payload: &'a [u8],
    off: usize,
    needed: usize,
    nh: u8,
) -> DecodeResult<bool> {
    match ensure(Layer::Ipv6Ext, payload, off, needed) {
        Ok(()) => Ok(true),
        Err(e) => {
            if chain.fragment.is_some() {
                chain.transport = nh;
                chain.payload = tail(payload, off);
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::DecodeError;
    use super::*;

    #[test]
    fn no_extension_is_transport() {
        let c = walk_ipv6_extensions(6, &[1, 2, 3]).unwrap();
        assert_eq!(c.transport, 6);
        assert_eq!(c.payload, &[1, 2, 3]);
        assert_eq!(c.headers, 0);
        assert_eq!(c.fragment, None);
        assert_eq!(c.jumbo_len, None);
    }

    /// HBH (8 bytes, jumbo option) -> Routing (16 bytes) -> DestOpts (8) ->
    /// AH (12 bytes) -> UDP
    fn chain() -> Vec<u8> {
        let mut v = vec![
            43, 0, /* HBH: next Routing, len 0 */ 0xC2, 4, 0x00, 0x01, 0x00,
            0x00,
            /* jumbo 65536 */
        ];
        v.extend_from_slice(&[60, 1, 0, 0, 0, 0, 0, 0]); // Routing: next DestOpts, 16 bytes
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&[51, 0, 1, 4, 0, 0, 0, 0]); // DestOpts: PadN 4, next AH
        v.extend_from_slice(&[17, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2]); // AH len 1 -> 12 bytes
        v.extend_from_slice(&[0xAA, 0xBB]); // UDP (start)
        v
    }

    #[test]
    fn parse_valid_chain() {
        let b = chain();
        let c = walk_ipv6_extensions(0, &b).unwrap();
        assert_eq!(c.transport, 17);
        assert_eq!(c.payload, &[0xAA, 0xBB]);
        assert_eq!(c.headers, 4);
        assert_eq!(c.jumbo_len, Some(65536));
        assert_eq!(c.fragment, None);
        assert_eq!(c.fragment_data, None);
        assert_eq!(c.header_len(&b), 44);
    }

    #[test]
    fn truncated_at_every_offset() {
        let b = chain();
        for n in 0..44 {
            let e = walk_ipv6_extensions(0, &b[..n]).unwrap_err();
            assert!(e.is_truncated(), "{n}");
            assert_eq!(e.layer(), Layer::Ipv6Ext);
        }
        assert!(
            walk_ipv6_extensions(0, &b[..44])
                .unwrap()
                .payload
                .is_empty()
        );
    }

    #[test]
    fn non_first_fragment_stops() {
        // Fragment: next TCP, offset 185*8 = 1480, M=1, id 0x12345678
        let b = [6, 0, 0x05, 0xC9, 0x12, 0x34, 0x56, 0x78, 0xDE, 0xAD];
        let c = walk_ipv6_extensions(44, &b).unwrap();
        assert_eq!(c.transport, 6);
        assert_eq!(c.payload, &[0xDE, 0xAD]);
        assert_eq!(c.fragment_data, Some(&[0xDE, 0xAD][..]));
        assert_eq!(
            c.fragment,
            Some(Ipv6FragmentHeader {
                next_header: 6,
                offset_bytes: 1480,
                more: true,
                identification: 0x1234_5678
            })
        );
        assert!(!c.fragment.unwrap().is_first());
    }

    #[test]
    fn first_fragment_continues_and_stops_softly() {
        // Fragment (offset 0, M) -> DestOpts (8 bytes) -> UDP
        let mut b = vec![60, 0, 0x00, 0x01, 0, 0, 0, 9];
        b.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0, 0xAB]);
        let c = walk_ipv6_extensions(44, &b).unwrap();
        assert_eq!(c.transport, 17);
        assert_eq!(c.payload, &[0xAB]);
        assert_eq!(c.headers, 2);
        assert_eq!(c.fragment_data, Some(&b[8..]));
        assert!(c.fragment.unwrap().is_first());
        // the DestOpts cut by the fragmentation: stop there, no error
        let c = walk_ipv6_extensions(44, &b[..12]).unwrap();
        assert_eq!(c.transport, 60);
        assert_eq!(c.payload, &b[8..12]);
        assert_eq!(c.headers, 1);
    }

    #[test]
    fn terminal_headers_stop() {
        for t in [IPV6_ESP, IPV6_NO_NEXT_HEADER, IPV6_MOBILITY] {
            let c = walk_ipv6_extensions(t, &[1, 2, 3, 4]).unwrap();
            assert_eq!(c.transport, t);
            assert_eq!(c.payload.len(), 4);
            assert_eq!(c.headers, 0);
        }
    }

    #[test]
    fn too_many_headers_is_invalid() {
        // 40 DestOpts headers, each 8 bytes, chained
        let mut b = Vec::new();
        for _ in 0..40 {
            b.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        }
        assert_eq!(
            walk_ipv6_extensions(60, &b),
            Err(DecodeError::Invalid {
                layer: Layer::Ipv6Ext,
                field: "extension header count",
                value: 33
            })
        );
    }

    #[test]
    fn malformed_hbh_options_ignored() {
        // HBH with an option whose length runs past the header: no jumbo
        let b = [17, 0, 0xC2, 200, 0, 0, 0, 0];
        let c = walk_ipv6_extensions(0, &b).unwrap();
        assert_eq!(c.jumbo_len, None);
        assert_eq!(c.transport, 17);
        // Pad1 then jumbo
        let b = [17, 0, 0, 0, 0xC2, 4, 0, 1];
        let c = walk_ipv6_extensions(0, &b).unwrap();
        assert_eq!(c.jumbo_len, None); // jumbo body cut at the header end
    }
}
