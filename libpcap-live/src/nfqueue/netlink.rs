//! The nfnetlink_queue protocol, by hand: encoders for the messages we
//! send (queue configuration, verdicts) and a decoder for the messages the
//! kernel sends (queued packets, acknowledgements), over plain byte slices.
//!
//! Layouts are those of `linux/netlink.h`, `linux/netfilter/nfnetlink.h`
//! and `linux/netfilter/nfnetlink_queue.h`: a `struct nlmsghdr` (16 bytes,
//! host byte order), a `struct nfgenmsg` (family, version, queue number in
//! network byte order), then attributes (`struct nlattr`, 4 bytes of
//! length and type in host byte order, contents padded to 4 bytes; the
//! contents of nfqueue attributes are in network byte order).
//!
//! Every length read from the kernel is checked against the bytes that are
//! really there: a bad one gives a [`NetlinkError`], never a panic.

/// `NETLINK_NETFILTER`, the netlink family of nfnetlink.
pub const NETLINK_NETFILTER: i32 = 12;
/// Bytes of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Bytes of `struct nfgenmsg`.
pub const NFGENMSG_LEN: usize = 4;
/// Bytes of `struct nlattr`.
pub const NLA_HDRLEN: usize = 4;
/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 1;
/// `NLM_F_ACK`: the kernel answers with an `NLMSG_ERROR` (0 for success).
pub const NLM_F_ACK: u16 = 4;
/// `NLMSG_NOOP`.
pub const NLMSG_NOOP: u16 = 1;
/// `NLMSG_ERROR` (also the acknowledgement).
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`.
pub const NLMSG_DONE: u16 = 3;
/// `NFNL_SUBSYS_QUEUE`: the high byte of nfqueue message types.
pub const NFNL_SUBSYS_QUEUE: u16 = 3;
/// `NFQNL_MSG_PACKET`: a packet, kernel to us.
pub const NFQNL_MSG_PACKET: u16 = 0;
/// `NFQNL_MSG_VERDICT`: a verdict, us to kernel.
pub const NFQNL_MSG_VERDICT: u16 = 1;
/// `NFQNL_MSG_CONFIG`: queue configuration.
pub const NFQNL_MSG_CONFIG: u16 = 2;
/// `NFQNL_MSG_VERDICT_BATCH`: one verdict for every packet of the queue
/// whose id is at most the one given, us to kernel.
pub const NFQNL_MSG_VERDICT_BATCH: u16 = 3;
/// `NFNETLINK_V0`.
pub const NFNETLINK_V0: u8 = 0;

/// `NFQA_PACKET_HDR` (`struct nfqnl_msg_packet_hdr`: be32 id, be16 hw
/// protocol, u8 hook; packed, 7 bytes).
pub const NFQA_PACKET_HDR: u16 = 1;
/// `NFQA_VERDICT_HDR` (`struct nfqnl_msg_verdict_hdr`: be32 verdict, be32 id).
pub const NFQA_VERDICT_HDR: u16 = 2;
/// `NFQA_TIMESTAMP` (`struct nfqnl_msg_packet_timestamp`: be64 sec, be64 usec).
pub const NFQA_TIMESTAMP: u16 = 4;
/// `NFQA_PAYLOAD`: the packet from its IP header on.
pub const NFQA_PAYLOAD: u16 = 10;
/// `NFQA_CAP_LEN` (be32): the packet's length when the payload was cut to
/// the copy range.
pub const NFQA_CAP_LEN: u16 = 13;

/// `NFQA_CFG_CMD` (`struct nfqnl_msg_config_cmd`: u8 command, u8 pad, be16 pf).
pub const NFQA_CFG_CMD: u16 = 1;
/// `NFQA_CFG_PARAMS` (`struct nfqnl_msg_config_params`: be32 copy range,
/// u8 copy mode; packed, 5 bytes).
pub const NFQA_CFG_PARAMS: u16 = 2;
/// `NFQA_CFG_QUEUE_MAXLEN` (be32).
pub const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
/// `NFQA_CFG_MASK` (be32): which flags `NFQA_CFG_FLAGS` sets.
pub const NFQA_CFG_MASK: u16 = 4;
/// `NFQA_CFG_FLAGS` (be32).
pub const NFQA_CFG_FLAGS: u16 = 5;

/// `NFQNL_CFG_CMD_BIND`.
pub const NFQNL_CFG_CMD_BIND: u8 = 1;
/// `NFQNL_CFG_CMD_UNBIND`.
pub const NFQNL_CFG_CMD_UNBIND: u8 = 2;
/// `NFQNL_CFG_CMD_PF_BIND` (a no-op since Linux 3.8, sent for older kernels).
pub const NFQNL_CFG_CMD_PF_BIND: u8 = 3;
/// `NFQNL_COPY_PACKET`.
pub const NFQNL_COPY_PACKET: u8 = 2;
/// `NFQA_CFG_F_FAIL_OPEN`: accept instead of drop when the queue is full.
pub const NFQA_CFG_F_FAIL_OPEN: u32 = 1;
/// `NFQA_CFG_F_GSO`: hand over GSO packets whole (no segmentation).
pub const NFQA_CFG_F_GSO: u32 = 4;

/// `NF_DROP`.
pub const NF_DROP: u32 = 0;
/// `NF_ACCEPT`.
pub const NF_ACCEPT: u32 = 1;

/// `NLA_F_NESTED | NLA_F_NET_BYTEORDER`, cleared from attribute types.
const NLA_TYPE_FLAGS: u16 = 0xc000;

/// Rounds up to the netlink alignment (4 bytes).
const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A malformed message from the kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetlinkError {
    /// A header or attribute claims more bytes than there are, or fewer
    /// than its own header.
    #[error("{what}: length {claimed} with {available} bytes available")]
    BadLength {
        /// Which header.
        what: &'static str,
        /// The length it declares.
        claimed: usize,
        /// The bytes there are.
        available: usize,
    },
    /// A packet message without `NFQA_PACKET_HDR` (no id to answer).
    #[error("packet message without NFQA_PACKET_HDR")]
    NoPacketHeader,
    /// A fixed-size attribute of the wrong size.
    #[error("attribute {attr}: {len} bytes, {want} expected")]
    BadAttribute {
        /// The attribute type.
        attr: u16,
        /// Its length.
        len: usize,
        /// The length it must have (at least).
        want: usize,
    },
}

/// Builds one netlink message: header, `nfgenmsg`, attributes.
#[derive(Debug, Clone)]
pub struct MsgBuilder {
    buf: Vec<u8>,
}

impl MsgBuilder {
    /// An nfqueue message of type `msg` (`NFQNL_MSG_*`) for `queue`.
    pub fn new(msg: u16, flags: u16, seq: u32, family: u8, queue: u16) -> MsgBuilder {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        buf.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | msg).to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
        buf.extend_from_slice(&[family, NFNETLINK_V0]);
        buf.extend_from_slice(&queue.to_be_bytes());
        MsgBuilder { buf }
    }

    /// Adds attribute `ty` with `data`, padded to 4 bytes.
    pub fn attr(mut self, ty: u16, data: &[u8]) -> MsgBuilder {
        let len = u16::try_from(NLA_HDRLEN + data.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    /// The message, with its length set.
    pub fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// A configuration command (`NFQA_CFG_CMD`) for `queue` and protocol
/// family `pf`, acknowledged.
pub fn config_cmd(queue: u16, seq: u32, cmd: u8, pf: u16) -> Vec<u8> {
    let [a, b] = pf.to_be_bytes();
    MsgBuilder::new(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, 0, queue)
        .attr(NFQA_CFG_CMD, &[cmd, 0, a, b])
        .finish()
}

/// The copy mode (`NFQNL_COPY_PACKET`, `copy_range` bytes) of `queue`,
/// acknowledged.
pub fn config_params(queue: u16, seq: u32, copy_range: u32) -> Vec<u8> {
    let mut p = copy_range.to_be_bytes().to_vec();
    p.push(NFQNL_COPY_PACKET);
    MsgBuilder::new(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, 0, queue)
        .attr(NFQA_CFG_PARAMS, &p)
        .finish()
}

/// The most packets `queue` holds waiting for a verdict, acknowledged.
pub fn config_maxlen(queue: u16, seq: u32, maxlen: u32) -> Vec<u8> {
    MsgBuilder::new(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, 0, queue)
        .attr(NFQA_CFG_QUEUE_MAXLEN, &maxlen.to_be_bytes())
        .finish()
}

/// Sets the flags of `mask` to `flags` (`NFQA_CFG_F_*`), acknowledged.
pub fn config_flags(queue: u16, seq: u32, flags: u32, mask: u32) -> Vec<u8> {
    MsgBuilder::new(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, 0, queue)
        .attr(NFQA_CFG_FLAGS, &flags.to_be_bytes())
        .attr(NFQA_CFG_MASK, &mask.to_be_bytes())
        .finish()
}

/// A verdict (`NF_ACCEPT`, `NF_DROP`) for packet `id` of `queue`, not
/// acknowledged (32 bytes).
pub fn verdict(queue: u16, id: u32, verdict: u32) -> Vec<u8> {
    verdict_msg(NFQNL_MSG_VERDICT, queue, id, verdict)
}

/// A verdict for every packet of `queue` whose id is at most `id` (and that
/// has none yet), not acknowledged (32 bytes; `NFQNL_MSG_VERDICT_BATCH`).
pub fn verdict_batch(queue: u16, id: u32, verdict: u32) -> Vec<u8> {
    verdict_msg(NFQNL_MSG_VERDICT_BATCH, queue, id, verdict)
}

fn verdict_msg(ty: u16, queue: u16, id: u32, verdict: u32) -> Vec<u8> {
    let mut v = verdict.to_be_bytes().to_vec();
    v.extend_from_slice(&id.to_be_bytes());
    MsgBuilder::new(ty, NLM_F_REQUEST, 0, 0, queue)
        .attr(NFQA_VERDICT_HDR, &v)
        .finish()
}

/// One netlink message of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NlMsg<'a> {
    /// `nlmsg_type`.
    pub ty: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// The bytes after the header.
    pub payload: &'a [u8],
}

fn u16_ne(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_ne(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u32_be(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_be(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The first message of `buf` and the length it takes (padded), or an
/// error when its header is short or its length impossible.
///
/// # Errors
/// [`NetlinkError::BadLength`].
pub fn next_message(buf: &[u8]) -> Result<(NlMsg<'_>, usize), NetlinkError> {
    let bad = |claimed| NetlinkError::BadLength {
        what: "nlmsghdr",
        claimed,
        available: buf.len(),
    };
    let len = u32_ne(buf, 0).ok_or(bad(NLMSG_HDRLEN))? as usize;
    if len < NLMSG_HDRLEN || len > buf.len() {
        return Err(bad(len));
    }
    let msg = NlMsg {
        ty: u16_ne(buf, 4).unwrap_or(0),
        flags: u16_ne(buf, 6).unwrap_or(0),
        seq: u32_ne(buf, 8).unwrap_or(0),
        payload: buf.get(NLMSG_HDRLEN..len).unwrap_or(&[]),
    };
    Ok((msg, align4(len).min(buf.len())))
}

/// The attributes of an nfnetlink message payload (after `nfgenmsg`), as
/// (type without flags, contents).
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    /// The attributes of `data`.
    pub fn new(data: &'a [u8]) -> Attrs<'a> {
        Attrs { rest: data }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<(u16, &'a [u8]), NetlinkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let available = self.rest.len();
        let len = match u16_ne(self.rest, 0) {
            Some(l) if usize::from(l) >= NLA_HDRLEN && usize::from(l) <= available => {
                usize::from(l)
            }
            other => {
                self.rest = &[];
                return Some(Err(NetlinkError::BadLength {
                    what: "nlattr",
                    claimed: other.map_or(available, usize::from),
                    available,
                }));
            }
        };
        let ty = u16_ne(self.rest, 2).unwrap_or(0) & !NLA_TYPE_FLAGS;
        let data = self.rest.get(NLA_HDRLEN..len).unwrap_or(&[]);
        self.rest = self.rest.get(align4(len)..).unwrap_or(&[]);
        Some(Ok((ty, data)))
    }
}

/// A packet message (`NFQNL_MSG_PACKET`), decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedPacket<'a> {
    /// Queue number (`nfgenmsg.res_id`).
    pub queue: u16,
    /// The kernel's id of the packet, to give the verdict for.
    pub id: u32,
    /// Ethertype of the packet (`ETH_P_IP`, `ETH_P_IPV6`).
    pub hw_protocol: u16,
    /// Netfilter hook it was queued from.
    pub hook: u8,
    /// The packet from its IP header on (empty without `NFQA_PAYLOAD`).
    pub payload: &'a [u8],
    /// `NFQA_TIMESTAMP`: seconds and microseconds.
    pub timestamp: Option<(u64, u64)>,
    /// `NFQA_CAP_LEN`: the packet's length when `payload` was cut.
    pub cap_len: Option<u32>,
}

/// A packet message that could not be decoded whole. `id` is the packet's
/// id when its `NFQA_PACKET_HDR` was read (the packet can then still be
/// given a verdict).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed nfqueue packet message (id {id:?}): {error}")]
pub struct MalformedPacket {
    /// The packet's id, if known.
    pub id: Option<u32>,
    /// What was wrong.
    pub error: NetlinkError,
}

/// Decodes the payload of an `NFQNL_MSG_PACKET` message: attributes in any
/// order, unknown ones skipped.
///
/// # Errors
/// [`MalformedPacket`] for a short `nfgenmsg`, a bad attribute length, a
/// fixed-size attribute of the wrong size, or no `NFQA_PACKET_HDR`.
pub fn parse_packet(payload: &[u8]) -> Result<QueuedPacket<'_>, MalformedPacket> {
    let Some(attrs) = payload.get(NFGENMSG_LEN..) else {
        return Err(MalformedPacket {
            id: None,
            error: NetlinkError::BadLength {
                what: "nfgenmsg",
                claimed: NFGENMSG_LEN,
                available: payload.len(),
            },
        });
    };
    let queue = payload
        .get(2..4)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let mut hdr: Option<(u32, u16, u8)> = None;
    let mut p = QueuedPacket {
        queue,
        id: 0,
        hw_protocol: 0,
        hook: 0,
        payload: &[],
        timestamp: None,
        cap_len: None,
    };
    let mut error = None;
    for a in Attrs::new(attrs) {
        let (ty, data) = match a {
            Ok(a) => a,
            Err(e) => {
                error = Some(e);
                break;
            }
        };
        let bad = |want| NetlinkError::BadAttribute {
            attr: ty,
            len: data.len(),
            want,
        };
        match ty {
            NFQA_PACKET_HDR => match (u32_be(data, 0), data.get(4..7)) {
                (Some(id), Some(&[h0, h1, hook])) => {
                    hdr = Some((id, u16::from_be_bytes([h0, h1]), hook));
                }
                _ => {
                    error.get_or_insert(bad(7));
                }
            },
            NFQA_PAYLOAD => p.payload = data,
            NFQA_TIMESTAMP => match (data.len(), u64_be(data, 0), u64_be(data, 8)) {
                (16, Some(s), Some(us)) => p.timestamp = Some((s, us)),
                _ => {
                    error.get_or_insert(bad(16));
                }
            },
            NFQA_CAP_LEN => match (data.len(), u32_be(data, 0)) {
                (4, Some(l)) => p.cap_len = Some(l),
                _ => {
                    error.get_or_insert(bad(4));
                }
            },
            _ => {}
        }
    }
    match (hdr, error) {
        (Some((id, hw, hook)), None) => {
            p.id = id;
            p.hw_protocol = hw;
            p.hook = hook;
            Ok(p)
        }
        (hdr, Some(error)) => Err(MalformedPacket {
            id: hdr.map(|h| h.0),
            error,
        }),
        (None, None) => Err(MalformedPacket {
            id: None,
            error: NetlinkError::NoPacketHeader,
        }),
    }
}

/// The error code of an `NLMSG_ERROR` payload (0: acknowledgement,
/// otherwise a negative errno).
///
/// # Errors
/// [`NetlinkError::BadLength`] when shorter than its 4-byte code.
pub fn parse_error(payload: &[u8]) -> Result<i32, NetlinkError> {
    u32_ne(payload, 0)
        .map(|v| v as i32)
        .ok_or(NetlinkError::BadLength {
            what: "nlmsgerr",
            claimed: 4,
            available: payload.len(),
        })
}

/// `true` for a message of nfqueue type `msg`.
pub fn is_queue_msg(ty: u16, msg: u16) -> bool {
    ty == (NFNL_SUBSYS_QUEUE << 8) | msg
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A netlink header in host byte order.
    fn nlh(len: u32, ty: u16, flags: u16, seq: u32) -> Vec<u8> {
        let mut v = len.to_ne_bytes().to_vec();
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v
    }

    fn nla(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut v = u16::try_from(4 + data.len())
            .unwrap()
            .to_ne_bytes()
            .to_vec();
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(data);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn bind_command_is_byte_exact() {
        let m = config_cmd(0x1234, 7, NFQNL_CFG_CMD_BIND, 0);
        let mut want = nlh(28, 0x0302, NLM_F_REQUEST | NLM_F_ACK, 7);
        want.extend_from_slice(&[0, 0, 0x12, 0x34]); // AF_UNSPEC, v0, queue (be16)
        want.extend_from_slice(&nla(NFQA_CFG_CMD, &[1, 0, 0, 0]));
        assert_eq!(m, want);
        // PF_BIND for AF_INET6 (10): pf in network byte order
        let m = config_cmd(1, 2, NFQNL_CFG_CMD_PF_BIND, 10);
        assert_eq!(&m[20..], &nla(NFQA_CFG_CMD, &[3, 0, 0, 10])[..]);
    }

    #[test]
    fn params_maxlen_and_flags_are_byte_exact() {
        let m = config_params(3, 9, 0xffff);
        // nfqnl_msg_config_params is packed: 5 bytes, padded to 8 in the attribute
        let mut want = nlh(32, 0x0302, 5, 9);
        want.extend_from_slice(&[0, 0, 0, 3]);
        want.extend_from_slice(&nla(NFQA_CFG_PARAMS, &[0, 0, 0xff, 0xff, 2]));
        assert_eq!(
            want[20..22],
            9u16.to_ne_bytes(),
            "nla_len counts the 5 bytes, not the padding"
        );
        assert_eq!(m, want);
        let m = config_maxlen(3, 10, 4096);
        let mut want = nlh(28, 0x0302, 5, 10);
        want.extend_from_slice(&[0, 0, 0, 3]);
        want.extend_from_slice(&nla(NFQA_CFG_QUEUE_MAXLEN, &[0, 0, 0x10, 0]));
        assert_eq!(m, want);
        let m = config_flags(3, 11, NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO, 5);
        let mut want = nlh(36, 0x0302, 5, 11);
        want.extend_from_slice(&[0, 0, 0, 3]);
        want.extend_from_slice(&nla(NFQA_CFG_FLAGS, &[0, 0, 0, 5]));
        want.extend_from_slice(&nla(NFQA_CFG_MASK, &[0, 0, 0, 5]));
        assert_eq!(m, want);
    }

    #[test]
    fn verdict_is_byte_exact() {
        let m = verdict(2, 0xdead_beef, NF_DROP);
        let mut want = nlh(32, 0x0301, NLM_F_REQUEST, 0);
        want.extend_from_slice(&[0, 0, 0, 2]);
        want.extend_from_slice(&nla(
            NFQA_VERDICT_HDR,
            &[0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef],
        ));
        assert_eq!(m, want);
        assert_eq!(m.len(), 32);
        assert_eq!(&verdict(2, 1, NF_ACCEPT)[24..28], &[0, 0, 0, 1]);
        // the batch verdict: the same layout, message type 3 of subsystem 3
        let m = verdict_batch(2, 0xdead_beef, NF_ACCEPT);
        let mut want = nlh(32, 0x0303, NLM_F_REQUEST, 0);
        want.extend_from_slice(&[0, 0, 0, 2]);
        want.extend_from_slice(&nla(
            NFQA_VERDICT_HDR,
            &[0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef],
        ));
        assert_eq!(m, want);
    }

    /// A packet message as the kernel builds it, with `attrs` in that order.
    fn packet_msg(queue: u16, attrs: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = attrs.concat();
        let len = 16 + 4 + body.len();
        let mut v = nlh(u32::try_from(len).unwrap(), 0x0300, 0, 0);
        v.extend_from_slice(&[2, 0]);
        v.extend_from_slice(&queue.to_be_bytes());
        v.extend_from_slice(&body);
        v
    }

    fn hdr(id: u32, proto: u16, hook: u8) -> Vec<u8> {
        let mut d = id.to_be_bytes().to_vec();
        d.extend_from_slice(&proto.to_be_bytes());
        d.push(hook);
        nla(NFQA_PACKET_HDR, &d)
    }

    fn ts(sec: u64, usec: u64) -> Vec<u8> {
        let mut d = sec.to_be_bytes().to_vec();
        d.extend_from_slice(&usec.to_be_bytes());
        nla(NFQA_TIMESTAMP, &d)
    }

    fn decode(m: &[u8]) -> Result<QueuedPacket<'_>, MalformedPacket> {
        let (msg, used) = next_message(m).unwrap();
        assert_eq!(used, m.len());
        assert!(is_queue_msg(msg.ty, NFQNL_MSG_PACKET));
        parse_packet(msg.payload)
    }

    #[test]
    fn packet_attributes_in_any_order_unknown_ones_skipped() {
        let ip = [
            0x45u8, 0, 0, 21, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
        ];
        let a = packet_msg(
            5,
            &[
                hdr(42, 0x0800, 1),
                nla(3, &7u32.to_be_bytes()), // NFQA_MARK: skipped
                ts(1_700_000_000, 123_456),
                nla(NFQA_PAYLOAD, &ip),
                nla(NFQA_CAP_LEN, &1500u32.to_be_bytes()),
            ],
        );
        let p = decode(&a).unwrap();
        assert_eq!(
            p,
            QueuedPacket {
                queue: 5,
                id: 42,
                hw_protocol: 0x0800,
                hook: 1,
                payload: &ip,
                timestamp: Some((1_700_000_000, 123_456)),
                cap_len: Some(1500),
            }
        );
        // reversed, with an unknown nested attribute (flag bits set) in between
        let b = packet_msg(
            5,
            &[
                nla(NFQA_CAP_LEN, &1500u32.to_be_bytes()),
                nla(NFQA_PAYLOAD, &ip),
                nla(0x8000 | 19, &[1, 2, 3, 4, 5]),
                ts(1_700_000_000, 123_456),
                hdr(42, 0x0800, 1),
            ],
        );
        assert_eq!(decode(&b).unwrap(), p);
        // no timestamp, no cap len, the attribute type with NLA_F_NET_BYTEORDER
        let mut h = hdr(7, 0x86dd, 3);
        h[2..4].copy_from_slice(&(0x4000 | NFQA_PACKET_HDR).to_ne_bytes());
        let c = packet_msg(0, &[h, nla(NFQA_PAYLOAD, &[0x60])]);
        let p = decode(&c).unwrap();
        assert_eq!((p.id, p.hw_protocol, p.hook), (7, 0x86dd, 3));
        assert_eq!(
            (p.timestamp, p.cap_len, p.payload),
            (None, None, &[0x60][..])
        );
    }

    #[test]
    fn bad_lengths_are_errors_that_keep_the_id_when_known() {
        // an attribute claiming more bytes than the message holds
        let mut m = packet_msg(1, &[hdr(9, 0x0800, 1), nla(NFQA_PAYLOAD, &[0x45; 8])]);
        let at = 20 + 12; // second attribute
        m[at..at + 2].copy_from_slice(&200u16.to_ne_bytes());
        let e = decode(&m).unwrap_err();
        assert_eq!(e.id, Some(9));
        assert!(matches!(
            e.error,
            NetlinkError::BadLength {
                what: "nlattr",
                claimed: 200,
                ..
            }
        ));
        // an attribute shorter than its own header
        m[at..at + 2].copy_from_slice(&2u16.to_ne_bytes());
        assert!(matches!(
            decode(&m).unwrap_err().error,
            NetlinkError::BadLength { claimed: 2, .. }
        ));
        // a packet header of 6 bytes, a timestamp of 8, a cap len of 2
        let short = packet_msg(1, &[nla(NFQA_PACKET_HDR, &[0, 0, 0, 1, 8, 0])]);
        let e = decode(&short).unwrap_err();
        assert_eq!(e.id, None);
        assert_eq!(
            e.error,
            NetlinkError::BadAttribute {
                attr: 1,
                len: 6,
                want: 7
            }
        );
        let e = decode(&packet_msg(
            1,
            &[hdr(3, 0x800, 1), nla(NFQA_TIMESTAMP, &[0; 8])],
        ))
        .unwrap_err();
        assert_eq!(
            (e.id, e.error),
            (
                Some(3),
                NetlinkError::BadAttribute {
                    attr: 4,
                    len: 8,
                    want: 16
                }
            )
        );
        let e = decode(&packet_msg(
            1,
            &[hdr(3, 0x800, 1), nla(NFQA_CAP_LEN, &[0; 2])],
        ))
        .unwrap_err();
        assert_eq!(e.id, Some(3));
        // no packet header at all
        let e = decode(&packet_msg(1, &[nla(NFQA_PAYLOAD, &[0x45])])).unwrap_err();
        assert_eq!((e.id, e.error), (None, NetlinkError::NoPacketHeader));
        // a short nfgenmsg
        assert!(parse_packet(&[2, 0]).is_err());
        // message headers: short, too long, shorter than a header
        assert!(next_message(&[0; 10]).is_err());
        let mut h = nlh(100, 0x0300, 0, 0);
        assert!(matches!(
            next_message(&h),
            Err(NetlinkError::BadLength { claimed: 100, .. })
        ));
        h[..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(next_message(&h).is_err());
        // NLMSG_ERROR: the code, or an error when short
        let mut e = nlh(36, NLMSG_ERROR, 0, 4);
        e.extend_from_slice(&(-16i32).to_ne_bytes());
        e.extend_from_slice(&nlh(28, 0x0302, 5, 4));
        let (msg, _) = next_message(&e).unwrap();
        assert_eq!((msg.ty, msg.seq), (NLMSG_ERROR, 4));
        assert_eq!(parse_error(msg.payload), Ok(-16));
        assert!(parse_error(&[0, 0]).is_err());
    }

    #[test]
    fn two_messages_in_one_datagram_are_split() {
        let a = packet_msg(1, &[hdr(1, 0x800, 1), nla(NFQA_PAYLOAD, &[0x45, 0, 0])]);
        let b = packet_msg(1, &[hdr(2, 0x800, 1)]);
        let both = [a.clone(), b].concat();
        let (m1, used) = next_message(&both).unwrap();
        assert_eq!(used, a.len());
        assert_eq!(parse_packet(m1.payload).unwrap().id, 1);
        let (m2, used2) = next_message(&both[used..]).unwrap();
        assert_eq!(used + used2, both.len());
        assert_eq!(parse_packet(m2.payload).unwrap().id, 2);
    }

    #[test]
    fn byte_flip_sweep_never_panics() {
        let m = packet_msg(
            1,
            &[
                hdr(42, 0x0800, 1),
                ts(1, 2),
                nla(NFQA_PAYLOAD, &[0x45; 13]),
                nla(NFQA_CAP_LEN, &[0, 0, 5, 0xdc]),
            ],
        );
        let mut decoded = 0;
        for i in 0..m.len() {
            for v in [0u8, 1, 2, 3, 4, 0x7f, 0x80, 0xfe, 0xff, m[i] ^ 0x55] {
                let mut b = m.clone();
                b[i] = v;
                // and every truncation of the flipped message
                for cut in [b.len(), b.len() - 1, b.len() / 2, 3] {
                    let b = &b[..cut];
                    if let Ok((msg, used)) = next_message(b) {
                        assert!(used <= b.len());
                        if parse_packet(msg.payload).is_ok() {
                            decoded += 1;
                        }
                        let _ = parse_error(msg.payload);
                    }
                }
            }
        }
        assert!(decoded > 0);
    }
}
