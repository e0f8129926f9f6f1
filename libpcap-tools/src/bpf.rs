//! Classic BPF: the programs libpcap compiles capture filters into, checked
//! and run in safe Rust.
//!
//! A capture filter in tcpdump syntax (`tcp port 80 and not host 10.0.0.1`)
//! is compiled by libpcap's own compiler (`pcap_compile`, loaded at run time
//! by `libpcap-live`, see [`FilterCompiler`](crate::FilterCompiler)) into a
//! classic BPF program. That program is then either attached in the kernel
//! (live capture with `AF_PACKET`) or run here, on each packet read from a
//! file, standard input or an NFQUEUE queue. Running libpcap's program
//! (rather than a second compiler of ours) makes the packet selection
//! exactly tcpdump's, link-type quirks included.
//!
//! # Programs
//!
//! [`BpfProgram::new`] checks a list of [`BpfInsn`] the way libpcap's
//! `bpf_validate` and the Linux kernel do, so that running it can never
//! loop, jump outside the program or touch memory it does not own:
//!
//! - 1 to [`MAX_INSNS`] instructions, the last one a `ret`;
//! - only the opcodes listed in [`op`] (those of libpcap's interpreter);
//! - jumps go forward only (the encoding has no backward jump) and land
//!   inside the program;
//! - scratch memory indexes are below [`MEMWORDS`];
//! - no division or modulo by the constant 0, no shift by a constant of 32
//!   or more (the kernel refuses those too; libpcap's compiler refuses to
//!   emit them).
//!
//! # Running
//!
//! [`BpfProgram::run`] follows libpcap's `bpf_filter`: the accumulator `A`,
//! the index register `X` and the 16 scratch words start at 0; a packet load
//! (`ld [k]`, `ldh [x + k]`, `ldxb 4*([k]&0xf)`, …) outside the captured
//! bytes ends the program with 0 (no match); a division or modulo by `X = 0`
//! ends it with 0; `len` is the length of the packet *on the wire*
//! (`wirelen`, the original length of a capture record), not the captured
//! length; a shift by `X >= 32` gives 0. The return value is the number of
//! bytes to keep, 0 meaning "reject": for filtering only `!= 0` matters.
//!
//! Loads at the Linux kernel's ancillary offsets (`SKF_AD_OFF + n`, such as
//! the VLAN tag the kernel took out of the frame, which libpcap uses for
//! programs it attaches on a live Linux interface) are offsets beyond any
//! packet here and so fail like any out-of-bounds load: such programs are
//! meant for the kernel, not for files.
//!
//! ```
//! use libpcap_tools::bpf::{BpfInsn, BpfProgram, op};
//! // "ip": ldh [12]; jeq #0x800 jt 0 jf 1; ret #262144; ret #0
//! let prog = BpfProgram::new(vec![
//!     BpfInsn::stmt(op::LD | op::H | op::ABS, 12),
//!     BpfInsn::jump(op::JMP | op::JEQ | op::K, 0x800, 0, 1),
//!     BpfInsn::stmt(op::RET | op::K, 262_144),
//!     BpfInsn::stmt(op::RET | op::K, 0),
//! ])?;
//! let mut frame = [0u8; 34];
//! frame[12] = 0x08;
//! assert_eq!(prog.run(&frame, 60), 262_144);
//! assert_eq!(prog.run(&frame[..13], 60), 0); // the load is cut: no match
//! # Ok::<(), libpcap_tools::bpf::ProgramError>(())
//! ```

use crate::Packet;
use std::fmt;

/// Most instructions in a program (`BPF_MAXINSNS` of libpcap and Linux).
pub const MAX_INSNS: usize = 4096;

/// Number of 32-bit scratch memory words (`BPF_MEMWORDS`).
pub const MEMWORDS: usize = 16;

/// Opcode parts of classic BPF (`<pcap/bpf.h>`): an opcode is a class ORed
/// with a size and mode (loads), an operation and source (ALU, jumps) or a
/// return source.
pub mod op {
    /// Class: load into `A`.
    pub const LD: u16 = 0x00;
    /// Class: load into `X`.
    pub const LDX: u16 = 0x01;
    /// Class: store `A` in scratch memory.
    pub const ST: u16 = 0x02;
    /// Class: store `X` in scratch memory.
    pub const STX: u16 = 0x03;
    /// Class: arithmetic on `A`.
    pub const ALU: u16 = 0x04;
    /// Class: jump.
    pub const JMP: u16 = 0x05;
    /// Class: return.
    pub const RET: u16 = 0x06;
    /// Class: register transfers.
    pub const MISC: u16 = 0x07;

    /// Size: 32-bit word (big-endian in the packet).
    pub const W: u16 = 0x00;
    /// Size: 16-bit half word (big-endian in the packet).
    pub const H: u16 = 0x08;
    /// Size: byte.
    pub const B: u16 = 0x10;

    /// Mode: the constant `k`.
    pub const IMM: u16 = 0x00;
    /// Mode: packet bytes at offset `k`.
    pub const ABS: u16 = 0x20;
    /// Mode: packet bytes at offset `X + k`.
    pub const IND: u16 = 0x40;
    /// Mode: scratch memory word `k`.
    pub const MEM: u16 = 0x60;
    /// Mode: the packet's length on the wire.
    pub const LEN: u16 = 0x80;
    /// Mode (`ldx` only, byte size): `4 * (packet[k] & 0xf)`, the IPv4
    /// header length.
    pub const MSH: u16 = 0xa0;

    /// ALU: `A + src`.
    pub const ADD: u16 = 0x00;
    /// ALU: `A - src`.
    pub const SUB: u16 = 0x10;
    /// ALU: `A * src`.
    pub const MUL: u16 = 0x20;
    /// ALU: `A / src`.
    pub const DIV: u16 = 0x30;
    /// ALU: `A | src`.
    pub const OR: u16 = 0x40;
    /// ALU: `A & src`.
    pub const AND: u16 = 0x50;
    /// ALU: `A << src`.
    pub const LSH: u16 = 0x60;
    /// ALU: `A >> src`.
    pub const RSH: u16 = 0x70;
    /// ALU: `-A` (no source).
    pub const NEG: u16 = 0x80;
    /// ALU: `A % src`.
    pub const MOD: u16 = 0x90;
    /// ALU: `A ^ src`.
    pub const XOR: u16 = 0xa0;

    /// Jump: always, `k` instructions forward.
    pub const JA: u16 = 0x00;
    /// Jump: `A == src`.
    pub const JEQ: u16 = 0x10;
    /// Jump: `A > src`.
    pub const JGT: u16 = 0x20;
    /// Jump: `A >= src`.
    pub const JGE: u16 = 0x30;
    /// Jump: `A & src != 0`.
    pub const JSET: u16 = 0x40;

    /// Source: the constant `k`.
    pub const K: u16 = 0x00;
    /// Source: the register `X`.
    pub const X: u16 = 0x08;
    /// Return source: the accumulator `A`.
    pub const A: u16 = 0x10;

    /// Misc: `X = A`.
    pub const TAX: u16 = 0x00;
    /// Misc: `A = X`.
    pub const TXA: u16 = 0x80;
}

/// One classic BPF instruction (`struct bpf_insn`, `struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BpfInsn {
    /// Opcode (see [`op`]).
    pub code: u16,
    /// Instructions to skip when a conditional jump is taken.
    pub jt: u8,
    /// Instructions to skip when it is not.
    pub jf: u8,
    /// The constant operand (offset, value, memory index, jump length).
    pub k: u32,
}

impl BpfInsn {
    /// An instruction with every field given.
    pub const fn new(code: u16, jt: u8, jf: u8, k: u32) -> BpfInsn {
        BpfInsn { code, jt, jf, k }
    }

    /// A statement (not a conditional jump): `BPF_STMT(code, k)`.
    pub const fn stmt(code: u16, k: u32) -> BpfInsn {
        BpfInsn {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }

    /// A conditional jump: `BPF_JUMP(code, k, jt, jf)`.
    pub const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> BpfInsn {
        BpfInsn { code, jt, jf, k }
    }
}

impl fmt::Display for BpfInsn {
    /// The `tcpdump -ddd` form: `code jt jf k` in decimal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} {}", self.code, self.jt, self.jf, self.k)
    }
}

/// Why a list of instructions is not a valid program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProgramError {
    /// No instruction at all.
    #[error("empty BPF program")]
    Empty,
    /// More than [`MAX_INSNS`] instructions.
    #[error("BPF program of {len} instructions, over the limit of {MAX_INSNS}")]
    TooLong {
        /// The number of instructions.
        len: usize,
    },
    /// An opcode the interpreter does not know.
    #[error("BPF instruction {index}: unknown opcode {code:#06x}")]
    UnknownOpcode {
        /// Index of the instruction.
        index: usize,
        /// Its opcode.
        code: u16,
    },
    /// A jump lands beyond the last instruction.
    #[error("BPF instruction {index}: jump beyond the end of the program")]
    JumpOutOfRange {
        /// Index of the jump.
        index: usize,
    },
    /// A scratch memory index of [`MEMWORDS`] or more.
    #[error("BPF instruction {index}: scratch memory index {k} (at most {})", MEMWORDS - 1)]
    ScratchOutOfRange {
        /// Index of the instruction.
        index: usize,
        /// The memory index.
        k: u32,
    },
    /// A division or modulo by the constant 0.
    #[error("BPF instruction {index}: division by the constant 0")]
    DivisionByZero {
        /// Index of the instruction.
        index: usize,
    },
    /// A shift by a constant of 32 or more.
    #[error("BPF instruction {index}: shift by {k} bits (at most 31)")]
    ShiftTooLarge {
        /// Index of the instruction.
        index: usize,
        /// The shift.
        k: u32,
    },
    /// The last instruction is not a return.
    #[error("BPF program does not end with a return")]
    NoFinalReturn,
}

/// A validated classic BPF program (see the [module docs](self)).
///
/// Running it never panics, loops or reads outside the packet, whatever the
/// packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BpfProgram {
    insns: Box<[BpfInsn]>,
}

/// Every opcode the interpreter runs (those of libpcap's `bpf_filter`);
/// [`BpfProgram::new`] refuses any other.
pub const OPCODES: [u16; 49] = {
    use op::*;
    [
        LD | W | ABS,
        LD | H | ABS,
        LD | B | ABS,
        LD | W | IND,
        LD | H | IND,
        LD | B | IND,
        LD | W | LEN,
        LD | IMM,
        LD | MEM,
        LDX | W | IMM,
        LDX | W | MEM,
        LDX | W | LEN,
        LDX | B | MSH,
        ST,
        STX,
        ALU | ADD | K,
        ALU | ADD | X,
        ALU | SUB | K,
        ALU | SUB | X,
        ALU | MUL | K,
        ALU | MUL | X,
        ALU | DIV | K,
        ALU | DIV | X,
        ALU | MOD | K,
        ALU | MOD | X,
        ALU | OR | K,
        ALU | OR | X,
        ALU | AND | K,
        ALU | AND | X,
        ALU | XOR | K,
        ALU | XOR | X,
        ALU | LSH | K,
        ALU | LSH | X,
        ALU | RSH | K,
        ALU | RSH | X,
        ALU | NEG,
        JMP | JA,
        JMP | JEQ | K,
        JMP | JEQ | X,
        JMP | JGT | K,
        JMP | JGT | X,
        JMP | JGE | K,
        JMP | JGE | X,
        JMP | JSET | K,
        JMP | JSET | X,
        RET | K,
        RET | A,
        MISC | TAX,
        MISC | TXA,
    ]
};

/// `true` for the opcodes the interpreter runs.
fn known_opcode(code: u16) -> bool {
    OPCODES.contains(&code)
}

impl BpfProgram {
    /// Checks `insns` (see the [module docs](self)) and makes a program of
    /// them.
    ///
    /// # Errors
    /// A [`ProgramError`] naming the first offending instruction.
    pub fn new(insns: Vec<BpfInsn>) -> Result<BpfProgram, ProgramError> {
        use op::*;
        let len = insns.len();
        if len == 0 {
            return Err(ProgramError::Empty);
        }
        if len > MAX_INSNS {
            return Err(ProgramError::TooLong { len });
        }
        for (index, i) in insns.iter().enumerate() {
            if !known_opcode(i.code) {
                return Err(ProgramError::UnknownOpcode {
                    index,
                    code: i.code,
                });
            }
            // instructions left after this one
            let left = len - index - 1;
            let class = i.code & 0x07;
            let mode = i.code & 0xe0;
            match class {
                LD | LDX if mode == MEM && i.k as usize >= MEMWORDS => {
                    return Err(ProgramError::ScratchOutOfRange { index, k: i.k });
                }
                ST | STX if i.k as usize >= MEMWORDS => {
                    return Err(ProgramError::ScratchOutOfRange { index, k: i.k });
                }
                ALU if i.code & 0x08 == K => match i.code & 0xf0 {
                    DIV | MOD if i.k == 0 => return Err(ProgramError::DivisionByZero { index }),
                    LSH | RSH if i.k >= 32 => {
                        return Err(ProgramError::ShiftTooLarge { index, k: i.k });
                    }
                    _ => {}
                },
                JMP => {
                    let ok = if i.code & 0xf0 == JA {
                        (i.k as usize) < left
                    } else {
                        usize::from(i.jt) < left && usize::from(i.jf) < left
                    };
                    if !ok {
                        return Err(ProgramError::JumpOutOfRange { index });
                    }
                }
                _ => {}
            }
        }
        if insns.last().is_none_or(|i| i.code & 0x07 != RET) {
            return Err(ProgramError::NoFinalReturn);
        }
        Ok(BpfProgram {
            insns: insns.into_boxed_slice(),
        })
    }

    /// The instructions.
    pub fn instructions(&self) -> &[BpfInsn] {
        &self.insns
    }

    /// Number of instructions (at least 1).
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Always `false`: a valid program has at least one instruction.
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// `true` when the program accepts the packet (libpcap's
    /// `pcap_offline_filter`): [`BpfProgram::run`] on its captured bytes,
    /// with its original length as `len`.
    pub fn matches(&self, packet: &Packet<'_>) -> bool {
        self.run(packet.data, packet.origlen) != 0
    }

    /// Runs the program on `data` (the captured bytes) for a packet that
    /// was `wirelen` bytes long on the wire, and returns its result: 0 for
    /// "reject", else the number of bytes to keep. See the
    /// [module docs](self) for the semantics.
    pub fn run(&self, data: &[u8], wirelen: u32) -> u32 {
        use op::*;
        let mut a: u32 = 0;
        let mut x: u32 = 0;
        let mut mem = [0u32; MEMWORDS];
        let mut pc: usize = 0;
        loop {
            // a validated program always ends in a return before running
            // off its end; `None` is only defensive
            let Some(&BpfInsn { code, jt, jf, k }) = self.insns.get(pc) else {
                return 0;
            };
            pc += 1;
            match code & 0x07 {
                LD => {
                    a = match code & 0xe0 {
                        IMM => k,
                        MEM => mem.get(k as usize).copied().unwrap_or(0),
                        LEN => wirelen,
                        ABS => match load(data, u64::from(k), code & 0x18) {
                            Some(v) => v,
                            None => return 0,
                        },
                        IND => match load(data, u64::from(x) + u64::from(k), code & 0x18) {
                            Some(v) => v,
                            None => return 0,
                        },
                        _ => return 0,
                    };
                }
                LDX => {
                    x = match code & 0xe0 {
                        IMM => k,
                        MEM => mem.get(k as usize).copied().unwrap_or(0),
                        LEN => wirelen,
                        MSH => match data.get(k as usize) {
                            Some(b) => u32::from(b & 0x0f) << 2,
                            None => return 0,
                        },
                        _ => return 0,
                    };
                }
                ST => {
                    if let Some(m) = mem.get_mut(k as usize) {
                        *m = a;
                    }
                }
                STX => {
                    if let Some(m) = mem.get_mut(k as usize) {
                        *m = x;
                    }
                }
                ALU => {
                    let src = if code & 0x08 == X { x } else { k };
                    a = match code & 0xf0 {
                        ADD => a.wrapping_add(src),
                        SUB => a.wrapping_sub(src),
                        MUL => a.wrapping_mul(src),
                        DIV => match a.checked_div(src) {
                            Some(v) => v,
                            None => return 0,
                        },
                        MOD => match a.checked_rem(src) {
                            Some(v) => v,
                            None => return 0,
                        },
                        OR => a | src,
                        AND => a & src,
                        XOR => a ^ src,
                        LSH => a.checked_shl(src).unwrap_or(0),
                        RSH => a.checked_shr(src).unwrap_or(0),
                        NEG => a.wrapping_neg(),
                        _ => return 0,
                    };
                }
                JMP => {
                    let src = if code & 0x08 == X { x } else { k };
                    let skip = match code & 0xf0 {
                        JA => k as usize,
                        JEQ => usize::from(if a == src { jt } else { jf }),
                        JGT => usize::from(if a > src { jt } else { jf }),
                        JGE => usize::from(if a >= src { jt } else { jf }),
                        JSET => usize::from(if a & src != 0 { jt } else { jf }),
                        _ => return 0,
                    };
                    pc = pc.saturating_add(skip);
                }
                RET => return if code & 0x18 == A { a } else { k },
                // MISC
                _ => {
                    if code & 0xf8 == TXA {
                        a = x;
                    } else {
                        x = a;
                    }
                }
            }
        }
    }
}

/// The big-endian value of `size` (`W`, `H` or `B`) at `offset` of
/// `data`, or `None` when any of its bytes is beyond `data`.
fn load(data: &[u8], offset: u64, size: u16) -> Option<u32> {
    let start = usize::try_from(offset).ok()?;
    match size {
        op::W => {
            let b: [u8; 4] = data.get(start..start.checked_add(4)?)?.try_into().ok()?;
            Some(u32::from_be_bytes(b))
        }
        op::H => {
            let b: [u8; 2] = data.get(start..start.checked_add(2)?)?.try_into().ok()?;
            Some(u32::from(u16::from_be_bytes(b)))
        }
        op::B => data.get(start).map(|&b| u32::from(b)),
        _ => None,
    }
}

impl fmt::Display for BpfProgram {
    /// The `tcpdump -ddd` form: the count, then one `code jt jf k` line per
    /// instruction.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.insns.len())?;
        for i in self.insns.iter() {
            writeln!(f, "{i}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::op::*;
    use super::*;

    fn prog(v: Vec<BpfInsn>) -> BpfProgram {
        BpfProgram::new(v).unwrap()
    }
    fn s(code: u16, k: u32) -> BpfInsn {
        BpfInsn::stmt(code, k)
    }
    fn j(code: u16, k: u32, jt: u8, jf: u8) -> BpfInsn {
        BpfInsn::jump(code, k, jt, jf)
    }
    /// A program that computes A with `body` and returns it.
    fn ret_a(mut body: Vec<BpfInsn>) -> BpfProgram {
        body.push(s(RET | A, 0));
        prog(body)
    }

    #[test]
    fn opcode_values_are_those_of_pcap_bpf_h() {
        // values from <pcap/bpf.h> / tcpdump -ddd output
        assert_eq!(LD | H | ABS, 0x28);
        assert_eq!(LD | B | ABS, 0x30);
        assert_eq!(LD | W | ABS, 0x20);
        assert_eq!(LD | H | IND, 0x48);
        assert_eq!(LDX | B | MSH, 0xb1);
        assert_eq!(JMP | JEQ | K, 0x15);
        assert_eq!(JMP | JSET | K, 0x45);
        assert_eq!(RET | K, 0x06);
        assert_eq!(RET | A, 0x16);
        assert_eq!(ALU | AND | K, 0x54);
        assert_eq!(MISC | TAX, 0x07);
        assert_eq!(MISC | TXA, 0x87);
        assert_eq!(LD | W | LEN, 0x80);
        assert_eq!(ALU | NEG, 0x84);
        assert_eq!(ALU | MOD | X, 0x9c);
        assert_eq!(ALU | XOR | K, 0xa4);
    }

    #[test]
    fn loads_are_big_endian_and_fail_out_of_bounds() {
        let d = [0x11, 0x22, 0x33, 0x44, 0x55];
        assert_eq!(ret_a(vec![s(LD | W | ABS, 0)]).run(&d, 5), 0x1122_3344);
        assert_eq!(ret_a(vec![s(LD | W | ABS, 1)]).run(&d, 5), 0x2233_4455);
        assert_eq!(ret_a(vec![s(LD | W | ABS, 2)]).run(&d, 5), 0, "cut");
        assert_eq!(ret_a(vec![s(LD | H | ABS, 3)]).run(&d, 5), 0x4455);
        assert_eq!(ret_a(vec![s(LD | H | ABS, 4)]).run(&d, 5), 0, "cut");
        assert_eq!(ret_a(vec![s(LD | B | ABS, 4)]).run(&d, 5), 0x55);
        // an out-of-bounds load ends the program at once with 0, whatever follows
        let p = prog(vec![s(LD | B | ABS, 5), s(RET | K, 7)]);
        assert_eq!(p.run(&d, 5), 0);
        // huge offsets (the kernel's ancillary area) are out of bounds
        let p = prog(vec![s(LD | B | ABS, 0xffff_f000 + 44), s(RET | K, 7)]);
        assert_eq!(p.run(&d, 5), 0);
        assert_eq!(
            prog(vec![s(LD | W | ABS, u32::MAX), s(RET | K, 7)]).run(&d, 5),
            0
        );
    }

    #[test]
    fn indirect_loads_add_x_without_overflow() {
        let d = [0, 1, 2, 3, 4, 5, 6, 7];
        let p = |code, x, k| ret_a(vec![s(LDX | W | IMM, x), s(code, k)]);
        assert_eq!(p(LD | B | IND, 3, 2).run(&d, 8), 5);
        assert_eq!(p(LD | H | IND, 3, 2).run(&d, 8), 0x0506);
        assert_eq!(p(LD | W | IND, 2, 2).run(&d, 8), 0x0405_0607);
        assert_eq!(p(LD | W | IND, 2, 3).run(&d, 8), 0, "cut");
        // X + k would wrap around in 32 bits: still out of bounds
        assert_eq!(p(LD | B | IND, u32::MAX, 1).run(&d, 8), 0);
        assert_eq!(p(LD | B | IND, 1, u32::MAX).run(&d, 8), 0);
    }

    #[test]
    fn msh_loads_the_ipv4_header_length() {
        let d = [0x00, 0x46];
        let p = prog(vec![s(LDX | B | MSH, 1), s(MISC | TXA, 0), s(RET | A, 0)]);
        assert_eq!(p.run(&d, 2), 24);
        let p = prog(vec![s(LDX | B | MSH, 2), s(RET | K, 1)]);
        assert_eq!(p.run(&d, 2), 0, "out of bounds");
    }

    #[test]
    fn len_is_the_wire_length_not_the_captured_one() {
        let p = ret_a(vec![s(LD | W | LEN, 0)]);
        assert_eq!(p.run(&[0; 10], 1500), 1500);
        let p = prog(vec![s(LDX | W | LEN, 0), s(MISC | TXA, 0), s(RET | A, 0)]);
        assert_eq!(p.run(&[], 77), 77);
    }

    #[test]
    fn immediates_scratch_memory_and_transfers() {
        let p = ret_a(vec![
            s(LD | IMM, 5),
            s(ST, 3),
            s(LDX | W | IMM, 9),
            s(STX, 15),
            s(LD | IMM, 0),
            s(LD | MEM, 3), // A = 5
            s(LDX | W | MEM, 15),
            s(ALU | ADD | X, 0), // 14
            s(MISC | TAX, 0),
            s(LD | IMM, 1),
            s(MISC | TXA, 0),
        ]);
        assert_eq!(p.run(&[], 0), 14);
        // memory starts at zero
        assert_eq!(ret_a(vec![s(LD | MEM, 7)]).run(&[], 0), 0);
    }

    #[test]
    fn alu_operations_with_k_and_x() {
        let k = |operation: u16, a: u32, k: u32| {
            ret_a(vec![s(LD | IMM, a), s(ALU | operation | K, k)]).run(&[], 0)
        };
        let x = |operation: u16, a: u32, xv: u32| {
            ret_a(vec![
                s(LDX | W | IMM, xv),
                s(LD | IMM, a),
                s(ALU | operation | X, 0),
            ])
            .run(&[], 0)
        };
        for f in [k, x] {
            assert_eq!(f(ADD, u32::MAX, 2), 1, "wraps");
            assert_eq!(f(SUB, 1, 2), u32::MAX, "wraps");
            assert_eq!(f(MUL, 0x8000_0000, 2), 0, "wraps");
            assert_eq!(f(DIV, 17, 5), 3);
            assert_eq!(f(MOD, 17, 5), 2);
            assert_eq!(f(OR, 0xf0, 0x0f), 0xff);
            assert_eq!(f(AND, 0xf0, 0x3c), 0x30);
            assert_eq!(f(XOR, 0xff, 0x0f), 0xf0);
            assert_eq!(f(LSH, 1, 31), 0x8000_0000);
            assert_eq!(f(RSH, 0x8000_0000, 31), 1);
        }
        // shifts by X of 32 or more give 0 (the kernel's and libpcap's choice)
        assert_eq!(x(LSH, 1, 32), 0);
        assert_eq!(x(RSH, u32::MAX, 200), 0);
        // division and modulo by X = 0 reject the packet
        let p = prog(vec![s(LD | IMM, 7), s(ALU | DIV | X, 0), s(RET | K, 99)]);
        assert_eq!(p.run(&[], 0), 0);
        let p = prog(vec![s(LD | IMM, 7), s(ALU | MOD | X, 0), s(RET | K, 99)]);
        assert_eq!(p.run(&[], 0), 0);
        let neg = ret_a(vec![s(LD | IMM, 1), s(ALU | NEG, 0)]);
        assert_eq!(neg.run(&[], 0), u32::MAX);
        let neg0 = ret_a(vec![s(ALU | NEG, 0)]);
        assert_eq!(neg0.run(&[], 0), 0);
    }

    #[test]
    fn conditional_jumps_with_k_and_x() {
        // returns 1 when the jump is taken, 2 when not
        let k = |cond: u16, a: u32, kv: u32| {
            prog(vec![
                s(LD | IMM, a),
                j(JMP | cond | K, kv, 0, 1),
                s(RET | K, 1),
                s(RET | K, 2),
            ])
            .run(&[], 0)
        };
        let x = |cond: u16, a: u32, xv: u32| {
            prog(vec![
                s(LDX | W | IMM, xv),
                s(LD | IMM, a),
                j(JMP | cond | X, 0, 0, 1),
                s(RET | K, 1),
                s(RET | K, 2),
            ])
            .run(&[], 0)
        };
        for f in [k, x] {
            assert_eq!(f(JEQ, 5, 5), 1);
            assert_eq!(f(JEQ, 5, 6), 2);
            assert_eq!(f(JGT, 6, 5), 1);
            assert_eq!(f(JGT, 5, 5), 2);
            assert_eq!(f(JGE, 5, 5), 1);
            assert_eq!(f(JGE, 4, 5), 2);
            assert_eq!(f(JSET, 0b0110, 0b0100), 1);
            assert_eq!(f(JSET, 0b0110, 0b1001), 2);
            // comparisons are unsigned
            assert_eq!(f(JGT, 0x8000_0000, 1), 1);
        }
        // both offsets used
        let p = prog(vec![
            s(LD | IMM, 1),
            j(JMP | JEQ | K, 1, 2, 0),
            s(RET | K, 10),
            s(RET | K, 11),
            s(RET | K, 12),
        ]);
        assert_eq!(p.run(&[], 0), 12);
        // ja skips k instructions
        let p = prog(vec![s(JMP | JA, 1), s(RET | K, 1), s(RET | K, 2)]);
        assert_eq!(p.run(&[], 0), 2);
    }

    #[test]
    fn returns_k_or_a() {
        assert_eq!(prog(vec![s(RET | K, 262_144)]).run(&[], 0), 262_144);
        assert_eq!(prog(vec![s(RET | K, 0)]).run(&[1], 1), 0);
        assert_eq!(ret_a(vec![s(LD | IMM, 42)]).run(&[], 0), 42);
    }

    #[test]
    fn validation_refuses_what_libpcap_and_the_kernel_refuse() {
        let err = |v: Vec<BpfInsn>| BpfProgram::new(v).unwrap_err();
        assert_eq!(err(vec![]), ProgramError::Empty);
        assert_eq!(
            err(vec![s(RET | K, 0); MAX_INSNS + 1]),
            ProgramError::TooLong { len: MAX_INSNS + 1 }
        );
        assert!(BpfProgram::new(vec![s(RET | K, 0); MAX_INSNS]).is_ok());
        assert_eq!(err(vec![s(LD | IMM, 1)]), ProgramError::NoFinalReturn);
        assert_eq!(
            err(vec![s(JMP | JA, 1), s(RET | K, 0)]),
            ProgramError::JumpOutOfRange { index: 0 }
        );
        assert_eq!(
            err(vec![s(JMP | JA, u32::MAX), s(RET | K, 0)]),
            ProgramError::JumpOutOfRange { index: 0 }
        );
        assert_eq!(
            err(vec![j(JMP | JEQ | K, 0, 0, 1), s(RET | K, 0)]),
            ProgramError::JumpOutOfRange { index: 0 }
        );
        assert_eq!(
            err(vec![j(JMP | JEQ | K, 0, 1, 0), s(RET | K, 0)]),
            ProgramError::JumpOutOfRange { index: 0 }
        );
        // a jump as the last instruction has nowhere to go
        assert_eq!(
            err(vec![s(RET | K, 0), j(JMP | JEQ | K, 0, 0, 0)]),
            ProgramError::JumpOutOfRange { index: 1 }
        );
        for code in [LD | MEM, LDX | W | MEM, ST, STX] {
            assert_eq!(
                err(vec![s(code, 16), s(RET | K, 0)]),
                ProgramError::ScratchOutOfRange { index: 0, k: 16 }
            );
            assert!(BpfProgram::new(vec![s(code, 15), s(RET | K, 0)]).is_ok());
        }
        for operation in [DIV, MOD] {
            assert_eq!(
                err(vec![s(ALU | operation | K, 0), s(RET | K, 0)]),
                ProgramError::DivisionByZero { index: 0 }
            );
            // by X: checked at run time
            assert!(BpfProgram::new(vec![s(ALU | operation | X, 0), s(RET | K, 0)]).is_ok());
        }
        for operation in [LSH, RSH] {
            assert_eq!(
                err(vec![s(ALU | operation | K, 32), s(RET | K, 0)]),
                ProgramError::ShiftTooLarge { index: 0, k: 32 }
            );
        }
        // opcodes libpcap's interpreter does not run
        for code in [
            LD | H | IMM,
            LD | B | LEN,
            LD | W | MSH,
            LDX | W | ABS,
            LDX | H | MSH,
            RET | X,
            ALU | 0xb0,
            JMP | 0x50,
            MISC | 0x10,
            0x100 | RET,
            ST | 0x08,
        ] {
            assert!(
                matches!(
                    err(vec![s(code, 0), s(RET | K, 0)]),
                    ProgramError::UnknownOpcode { index: 0, .. }
                ),
                "{code:#x}"
            );
        }
        let e = err(vec![s(0xff, 0), s(RET | K, 0)]);
        assert_eq!(e.to_string(), "BPF instruction 0: unknown opcode 0x00ff");
    }

    #[test]
    fn a_program_compiled_by_libpcap_runs_as_in_libpcap() {
        // tcpdump -ddd -y EN10MB 'tcp[tcpflags] & tcp-syn != 0' (libpcap 1.10,
        // snaplen 262144): IPv4, protocol 6, not a non-first fragment, then
        // the flags byte at the TCP header found with ldxb 4*([14]&0xf)
        let p = prog(vec![
            BpfInsn::new(40, 0, 0, 12),
            BpfInsn::new(21, 0, 8, 2048),
            BpfInsn::new(48, 0, 0, 23),
            BpfInsn::new(21, 0, 6, 6),
            BpfInsn::new(40, 0, 0, 20),
            BpfInsn::new(69, 4, 0, 8191),
            BpfInsn::new(177, 0, 0, 14),
            BpfInsn::new(80, 0, 0, 27),
            BpfInsn::new(69, 0, 1, 2),
            BpfInsn::new(6, 0, 0, 262_144),
            BpfInsn::new(6, 0, 0, 0),
        ]);
        let mut f = vec![0u8; 54];
        f[12] = 0x08; // IPv4
        f[14] = 0x45; // IHL 5
        f[23] = 6; // TCP
        f[14 + 20 + 13] = 0x02; // SYN
        assert_eq!(p.run(&f, 54), 262_144);
        f[14 + 20 + 13] = 0x10; // ACK only
        assert_eq!(p.run(&f, 54), 0);
        f[14 + 20 + 13] = 0x12;
        f[20] = 0x00;
        f[21] = 0x10; // fragment offset 16: not the first fragment
        assert_eq!(p.run(&f, 54), 0);
        f[21] = 0;
        assert_eq!(p.run(&f[..47], 54), 0, "flags byte not captured");
        assert_eq!(p.run(&f[..48], 54), 262_144);
        assert_eq!(p.to_string().lines().next(), Some("11"));
    }

    use crate::synth::Rng;

    #[test]
    fn random_programs_on_random_packets_never_panic() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let mut valid = 0;
        let (mut zero, mut nonzero) = (0, 0);
        for round in 0..50_000 {
            let n = 1 + (r.next_u64() % 24) as usize;
            let insns: Vec<BpfInsn> = (0..n)
                .map(|i| {
                    let v = r.next_u64();
                    // mostly known opcodes so that many programs validate
                    let code = match v & 15 {
                        0 => (v >> 8) as u16,
                        1 => (v >> 8) as u16 & 0xff,
                        _ => OPCODES[(v >> 8) as usize % OPCODES.len()],
                    };
                    let k = match v >> 60 {
                        0..=5 => (v >> 16) as u32 % 64,
                        6..=8 => (v >> 16) as u32,
                        _ => (n - i) as u32 / 2,
                    };
                    let mut insn = BpfInsn::new(code, (v >> 40) as u8 % 4, (v >> 48) as u8 % 4, k);
                    if i == n - 1 && round % 2 == 0 {
                        insn.code = RET | ((v >> 2) as u16 & A);
                    }
                    insn
                })
                .collect();
            let Ok(p) = BpfProgram::new(insns) else {
                continue;
            };
            valid += 1;
            for _ in 0..4 {
                let len = (r.next_u64() % 80) as usize;
                let data: Vec<u8> = (0..len).map(|_| r.next_u64() as u8).collect();
                let wire = r.next_u64() as u32;
                if p.run(&data, wire) == 0 {
                    zero += 1;
                } else {
                    nonzero += 1;
                }
            }
        }
        assert!(valid > 3000, "only {valid} random programs were valid");
        assert!(
            nonzero > 500 && zero > 500,
            "{nonzero} accepted, {zero} rejected"
        );
    }
}
