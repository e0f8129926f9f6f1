//! Stream Control Transmission Protocol common header and chunks
//! (RFC 9260 section 3).

use super::{DecodeError, DecodeResult, Layer, be16, be32, byte, ensure, invalid, tail};

/// One SCTP chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SctpChunk<'a> {
    /// Chunk type (0 DATA, 1 INIT, ...).
    pub chunk_type: u8,
    /// Chunk flags.
    pub flags: u8,
    /// Chunk length field (header included, padding excluded).
    pub length: u16,
    /// Chunk value (`length - 4` bytes, fewer if the capture is cut).
    pub value: &'a [u8],
}

impl SctpChunk<'_> {
    /// Chunk type DATA.
    pub const DATA: u8 = 0;
    /// Chunk type INIT.
    pub const INIT: u8 = 1;
    /// Chunk type INIT ACK.
    pub const INIT_ACK: u8 = 2;
    /// Chunk type SACK.
    pub const SACK: u8 = 3;
    /// Chunk type ABORT.
    pub const ABORT: u8 = 6;
    /// Chunk type SHUTDOWN.
    pub const SHUTDOWN: u8 = 7;

    /// `true` if the value is shorter than the length field says.
    pub fn is_truncated(&self) -> bool {
        self.value.len() < usize::from(self.length).saturating_sub(4)
    }
}

/// Iterator over SCTP chunks; see [`SctpSlice::chunks`].
///
/// A chunk whose length runs past the data is yielded with the bytes
/// available (see [`SctpChunk::is_truncated`]) and ends the iteration; a
/// length below 4 ends it without a chunk. [`error`](Self::error) tells why
/// it ended early.
#[derive(Debug, Clone)]
pub struct SctpChunks<'a> {
    rest: &'a [u8],
    offset: usize,
    error: Option<DecodeError>,
}

impl<'a> SctpChunks<'a> {
    /// Iterates over the chunks in `data` (the bytes after the common header).
    pub fn new(data: &'a [u8]) -> Self {
        SctpChunks {
            rest: data,
            offset: SctpSlice::HEADER_LEN,
            error: None,
        }
    }

    /// The error that ended the iteration early, if any (offsets relative to
    /// the SCTP common header).
    pub fn error(&self) -> Option<&DecodeError> {
        self.error.as_ref()
    }
}

impl<'a> Iterator for SctpChunks<'a> {
    type Item = SctpChunk<'a>;

    fn next(&mut self) -> Option<SctpChunk<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        if self.rest.len() < 4 {
            self.error = Some(DecodeError::Truncated {
                layer: Layer::Sctp,
                offset: self.offset,
                needed: 4,
                have: self.rest.len(),
            });
            self.rest = &[];
            return None;
        }
        let length = be16(self.rest, 2);
        let len = usize::from(length);
        if len < 4 {
            self.error = Some(invalid(Layer::Sctp, "chunk length", u32::from(length)));
            self.rest = &[];
            return None;
        }
        let chunk = SctpChunk {
            chunk_type: byte(self.rest, 0),
            flags: byte(self.rest, 1),
            length,
            value: self.rest.get(4..len).unwrap_or_else(|| tail(self.rest, 4)),
        };
        if chunk.is_truncated() {
            self.error = Some(DecodeError::Truncated {
                layer: Layer::Sctp,
                offset: self.offset,
                needed: len,
                have: self.rest.len(),
            });
            self.rest = &[];
            return Some(chunk);
        }
        let padded = len.saturating_add(3) & !3;
        self.rest = tail(self.rest, padded);
        self.offset = self.offset.saturating_add(padded);
        Some(chunk)
    }
}

/// Zero-copy view of an SCTP packet.
///
/// ```text
/// src_port(16) dst_port(16) | verification_tag(32) | checksum(32) | chunks ...
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SctpSlice<'a> {
    data: &'a [u8],
}

impl<'a> SctpSlice<'a> {
    /// Length of the common header.
    pub const HEADER_LEN: usize = 12;

    /// Decodes the 12-byte common header.
    ///
    /// # Errors
    /// `Truncated` if fewer than 12 bytes are given.
    pub fn from_slice(data: &'a [u8]) -> DecodeResult<Self> {
        ensure(Layer::Sctp, data, 0, Self::HEADER_LEN)?;
        Ok(SctpSlice { data })
    }

    /// Source port (bytes 0..2).
    pub fn src_port(&self) -> u16 {
        be16(self.data, 0)
    }

    /// Destination port (bytes 2..4).
    pub fn dst_port(&self) -> u16 {
        be16(self.data, 2)
    }

    /// Verification tag (bytes 4..8).
    pub fn verification_tag(&self) -> u32 {
        be32(self.data, 4)
    }

    /// CRC32c checksum (bytes 8..12), as read big-endian.
    pub fn checksum(&self) -> u32 {
        be32(self.data, 8)
    }

    /// Iterates over the chunks.
    pub fn chunks(&self) -> SctpChunks<'a> {
        SctpChunks::new(self.payload())
    }

    /// Length of the common header (12).
    pub fn header_len(&self) -> usize {
        Self::HEADER_LEN
    }

    /// The bytes after the common header (the chunks).
    pub fn payload(&self) -> &'a [u8] {
        tail(self.data, Self::HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKET: [u8; 32] = [
        0x0B, 0x59, 0x0B, 0x59, /* ports 2905 */
        0xDE, 0xAD, 0xBE, 0xEF, /* vtag */
        0x01, 0x02, 0x03, 0x04, /* checksum */
        0x00, 0x03, 0x00, 0x07, /* DATA, flags B|E, length 7 */
        0xAA, 0xBB, 0xCC, 0x00, /* value + 1 byte padding */
        0x03, 0x00, 0x00, 0x0C, /* SACK, length 12 */
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x10, 0x00,
    ];

    #[test]
    fn parse_valid() {
        let s = SctpSlice::from_slice(&PACKET).unwrap();
        assert_eq!((s.src_port(), s.dst_port()), (2905, 2905));
        assert_eq!(s.verification_tag(), 0xDEAD_BEEF);
        assert_eq!(s.checksum(), 0x0102_0304);
        assert_eq!(s.header_len(), 12);
        assert_eq!(s.payload().len(), 20);
        let c: Vec<_> = s.chunks().collect();
        assert_eq!(
            c,
            vec![
                SctpChunk {
                    chunk_type: SctpChunk::DATA,
                    flags: 3,
                    length: 7,
                    value: &[0xAA, 0xBB, 0xCC]
                },
                SctpChunk {
                    chunk_type: SctpChunk::SACK,
                    flags: 0,
                    length: 12,
                    value: &[0, 0, 0, 1, 0, 0, 0x10, 0]
                }
            ]
        );
        let mut it = s.chunks();
        assert_eq!(it.by_ref().count(), 2);
        assert!(it.error().is_none());
    }

    #[test]
    fn truncated_at_every_offset() {
        for n in 0..12 {
            assert!(
                SctpSlice::from_slice(&PACKET[..n])
                    .unwrap_err()
                    .is_truncated()
            );
        }
        for n in 12..PACKET.len() {
            let s = SctpSlice::from_slice(&PACKET[..n]).unwrap();
            let mut it = s.chunks();
            let chunks: Vec<_> = it.by_ref().collect();
            assert!(chunks.len() <= 2);
            if n < 16 && n > 12 || (n > 20 && n < 24) {
                assert!(it.error().unwrap().is_truncated(), "{n}");
            }
            if n > 16 && n < 19 {
                assert!(chunks[0].is_truncated());
            }
        }
    }

    #[test]
    fn bad_chunk_length_stops() {
        let mut b = PACKET;
        b[15] = 2;
        let s = SctpSlice::from_slice(&b).unwrap();
        let mut it = s.chunks();
        assert_eq!(it.next(), None);
        assert_eq!(
            it.error(),
            Some(&DecodeError::Invalid {
                layer: Layer::Sctp,
                field: "chunk length",
                value: 2
            })
        );
        // huge length: one truncated chunk then end
        b[14] = 0xFF;
        b[15] = 0xFF;
        let s = SctpSlice::from_slice(&b).unwrap();
        let c: Vec<_> = s.chunks().collect();
        assert_eq!(c.len(), 1);
        assert!(c[0].is_truncated());
        assert_eq!(c[0].value.len(), 16);
    }

    #[test]
    fn unknown_values_roundtrip() {
        let b = [0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0xC0, 0xFF, 0x00, 0x04];
        let c: Vec<_> = SctpSlice::from_slice(&b).unwrap().chunks().collect();
        assert_eq!(c[0].chunk_type, 0xC0);
        assert_eq!(c[0].flags, 0xFF);
        assert!(c[0].value.is_empty());
    }
}
