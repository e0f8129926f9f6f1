//! MPLS label stack encoding (RFC 3032) and pseudowire payload guessing
//! (RFC 4385 control word, RFC 4448 Ethernet pseudowire).

use super::{DecodeResult, Layer, byte, ensure, invalid, read_array, tail};

/// Maximum number of labels accepted in a stack.
pub const MAX_MPLS_LABELS: usize = 16;

/// One MPLS label stack entry (4 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MplsLabel {
    /// Label value (20 bits).
    pub label: u32,
    /// Traffic class (3 bits, formerly EXP).
    pub tc: u8,
    /// Bottom of stack bit.
    pub bottom: bool,
    /// Time to live.
    pub ttl: u8,
}

impl MplsLabel {
    /// Decodes a label stack entry from its 4 bytes.
    pub fn from_bytes(b: [u8; 4]) -> Self {
        let v = u32::from_be_bytes(b);
        MplsLabel {
            label: v >> 12,
            tc: ((v >> 9) & 0x7) as u8,
            bottom: v & 0x100 != 0,
            ttl: (v & 0xFF) as u8,
        }
    }
}

/// The label stack entries of an MPLS header (bottom-of-stack included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MplsStack<'a> {
    data: &'a [u8],
}

impl<'a> MplsStack<'a> {
    /// Number of labels.
    pub fn len(&self) -> usize {
        self.data.len() / 4
    }

    /// `true` if there are no labels (never the case for a decoded stack).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The label at `index` (0 is the top of the stack).
    pub fn label(&self, index: usize) -> Option<MplsLabel> {
        let off = index.checked_mul(4)?;
        read_array::<4>(self.data, off).map(MplsLabel::from_bytes)
    }

    /// The top (outermost) label.
    pub fn top(&self) -> Option<MplsLabel> {
        self.label(0)
    }

    /// The bottom-of-stack label.
    pub fn bottom(&self) -> Option<MplsLabel> {
        self.label(self.len().checked_sub(1)?)
    }

    /// Iterates over the labels, top first.
    pub fn iter(&self) -> impl Iterator<Item = MplsLabel> + 'a {
        self.data
            .chunks_exact(4)
            .filter_map(|c| <[u8; 4]>::try_from(c).ok())
            .map(MplsLabel::from_bytes)
    }

    /// The raw label stack bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }
}

/// Walks an MPLS label stack to the bottom-of-stack entry.
///
/// Returns the stack and the bytes after it.
///
/// # Errors
/// `Truncated` if the data ends before a bottom-of-stack label; `Invalid`
/// (field `"label count"`) if no bottom-of-stack bit is seen within
/// [`MAX_MPLS_LABELS`] labels.
pub fn parse_mpls_stack(data: &[u8]) -> DecodeResult<(MplsStack<'_>, &[u8])> {
    let mut off = 0usize;
    for _ in 0..MAX_MPLS_LABELS {
        ensure(Layer::Mpls, data, off, 4)?;
        let bottom = byte(data, off + 2) & 0x01 != 0;
        off += 4;
        if bottom {
            let (stack, rest) = data.split_at_checked(off).unwrap_or((data, &[]));
            return Ok((MplsStack { data: stack }, rest));
        }
    }
    Err(invalid(
        Layer::Mpls,
        "label count",
        MAX_MPLS_LABELS as u32 + 1,
    ))
}

/// Zero-copy view of an MPLS label stack and its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MplsSlice<'a> {
    stack: MplsStack<'a>,
    payload: &'a [u8],
}

impl<'a> MplsSlice<'a> {
    /// Decodes a label stack; see [`parse_mpls_stack`].
    ///
    /// # Errors
    /// As [`parse_mpls_stack`].
    pub fn from_slice(data: &'a [u8]) -> DecodeResult<Self> {
        let (stack, payload) = parse_mpls_stack(data)?;
        Ok(MplsSlice { stack, payload })
    }

    /// The label stack.
    pub fn stack(&self) -> MplsStack<'a> {
        self.stack
    }

    /// Length of the label stack in bytes.
    pub fn header_len(&self) -> usize {
        self.stack.data.len()
    }

    /// The bytes after the bottom-of-stack label.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

/// What an MPLS payload most likely is (MPLS carries no payload type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MplsPayload {
    /// First nibble 4.
    Ipv4,
    /// First nibble 6.
    Ipv6,
    /// An Ethernet pseudowire frame after a control word (first nibble 0).
    Ethernet,
    /// Anything else (e.g. a PW associated channel, first nibble 1).
    Unknown,
}

/// Guesses the MPLS payload type from its first nibble, like most
/// analysers do: 4 → IPv4 (at least 20 bytes), 6 → IPv6 (at least 40
/// bytes), 0 → a PW control word (RFC 4385) followed by an Ethernet frame
/// (at least 4 + 14 bytes).
///
/// Returns the guess and the bytes to decode next (after the control word
/// for [`MplsPayload::Ethernet`], unchanged otherwise).
pub fn guess_mpls_payload(payload: &[u8]) -> (MplsPayload, &[u8]) {
    let Some(first) = payload.first() else {
        return (MplsPayload::Unknown, payload);
    };
    match first >> 4 {
        4 if payload.len() >= 20 => (MplsPayload::Ipv4, payload),
        6 if payload.len() >= 40 => (MplsPayload::Ipv6, payload),
        0 if payload.len() >= 4 + 14 => (MplsPayload::Ethernet, tail(payload, 4)),
        _ => (MplsPayload::Unknown, payload),
    }
}

#[cfg(test)]
mod tests {
    use super::super::DecodeError;
    use super::*;

    // label 100, tc 0, not bottom, ttl 64; label 200, tc 5, bottom, ttl 255
    const TWO_LABELS: [u8; 10] = [
        0x00, 0x06, 0x40, 0x40, /* 100 << 12, ttl 64 */
        0x00, 0x0C, 0x8B, 0xFF, /* 200, tc 5, S, ttl 255 */
        0x45, 0x00, /* payload */
    ];

    #[test]
    fn parse_valid() {
        let (stack, payload) = parse_mpls_stack(&TWO_LABELS).unwrap();
        assert_eq!(stack.len(), 2);
        assert!(!stack.is_empty());
        assert_eq!(
            stack.top(),
            Some(MplsLabel {
                label: 100,
                tc: 0,
                bottom: false,
                ttl: 64
            })
        );
        assert_eq!(
            stack.bottom(),
            Some(MplsLabel {
                label: 200,
                tc: 5,
                bottom: true,
                ttl: 255
            })
        );
        assert_eq!(stack.iter().count(), 2);
        assert_eq!(stack.label(2), None);
        assert_eq!(stack.label(usize::MAX), None);
        assert_eq!(stack.as_bytes(), &TWO_LABELS[..8]);
        assert_eq!(payload, &[0x45, 0x00]);
        let s = MplsSlice::from_slice(&TWO_LABELS).unwrap();
        assert_eq!(s.header_len(), 8);
        assert_eq!(s.payload(), payload);
        assert_eq!(s.stack(), stack);
    }

    #[test]
    fn truncated_at_every_offset() {
        for n in 0..8 {
            assert!(
                parse_mpls_stack(&TWO_LABELS[..n])
                    .unwrap_err()
                    .is_truncated()
            );
        }
        assert!(parse_mpls_stack(&TWO_LABELS[..8]).unwrap().1.is_empty());
    }

    #[test]
    fn too_many_labels_is_invalid() {
        let buf = [0u8; 4 * 20];
        assert_eq!(
            parse_mpls_stack(&buf),
            Err(DecodeError::Invalid {
                layer: Layer::Mpls,
                field: "label count",
                value: 17
            })
        );
        let mut ok = [0u8; 4 * 16];
        ok[4 * 15 + 2] = 1;
        assert_eq!(parse_mpls_stack(&ok).unwrap().0.len(), 16);
    }

    #[test]
    fn guess_payload() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        assert_eq!(guess_mpls_payload(&v4).0, MplsPayload::Ipv4);
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        assert_eq!(guess_mpls_payload(&v6).0, MplsPayload::Ipv6);
        let pw = [0u8; 18];
        let (k, rest) = guess_mpls_payload(&pw);
        assert_eq!((k, rest.len()), (MplsPayload::Ethernet, 14));
        assert_eq!(guess_mpls_payload(&[]).0, MplsPayload::Unknown);
        assert_eq!(guess_mpls_payload(&[0x45]).0, MplsPayload::Unknown);
        let ach = [0x10u8; 20];
        assert_eq!(guess_mpls_payload(&ach), (MplsPayload::Unknown, &ach[..]));
    }
}
