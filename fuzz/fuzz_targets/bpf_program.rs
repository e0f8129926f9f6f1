//! Arbitrary classic BPF programs, validated, then run on arbitrary packets.
//!
//! Input: `[mode] [n] [n × 8 bytes of instructions] [4 bytes wire length]
//! [packet bytes…]`. Each instruction is `code` (u16 LE), `jt`, `jf`, `k`
//! (u32 LE). With bit 0 of `mode` set the instructions are steered towards
//! valid programs (opcodes from the interpreter's list, jumps and memory
//! indexes in range, a final return), so that most inputs reach the
//! interpreter; without it they are taken as they come and mostly exercise
//! validation. A program that validates must run without panicking, give
//! the same result twice, and agree with `matches`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use libpcap_tools::bpf::{BpfInsn, BpfProgram, MEMWORDS, OPCODES, op};
use libpcap_tools::{LinkType, Packet};

fuzz_target!(|data: &[u8]| {
    let [mode, n, rest @ ..] = data else {
        return;
    };
    let steer = mode & 1 == 1;
    let n = usize::from(*n).max(1);
    let Some((code, rest)) = rest.split_at_checked(n * 8) else {
        return;
    };
    let mut insns: Vec<BpfInsn> = code
        .chunks_exact(8)
        .map(|c| {
            BpfInsn::new(
                u16::from_le_bytes([c[0], c[1]]),
                c[2],
                c[3],
                u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            )
        })
        .collect();
    if steer {
        let len = insns.len();
        for (i, insn) in insns.iter_mut().enumerate() {
            insn.code = OPCODES[usize::from(insn.code) % OPCODES.len()];
            let left = len - i - 1;
            let class = insn.code & 0x07;
            if class == op::JMP {
                if left == 0 {
                    insn.code = op::RET | op::K;
                } else {
                    insn.jt = (usize::from(insn.jt) % left) as u8;
                    insn.jf = (usize::from(insn.jf) % left) as u8;
                    if insn.code == op::JMP | op::JA {
                        insn.k %= left as u32;
                    }
                }
            }
            if matches!(class, op::ST | op::STX) || insn.code & 0xe0 == op::MEM {
                insn.k %= MEMWORDS as u32;
            }
            if class == op::ALU && insn.code & 0x08 == op::K {
                match insn.code & 0xf0 {
                    op::DIV | op::MOD if insn.k == 0 => insn.k = 1,
                    op::LSH | op::RSH => insn.k %= 32,
                    _ => {}
                }
            }
        }
        if let Some(last) = insns.last_mut() {
            last.code = op::RET | (last.code & op::A);
        }
    }
    let Ok(prog) = BpfProgram::new(insns) else {
        assert!(!steer, "a steered program must validate");
        return;
    };
    let Some((wire, packet)) = rest.split_at_checked(4) else {
        return;
    };
    let wirelen = u32::from_le_bytes([wire[0], wire[1], wire[2], wire[3]]);
    let r = prog.run(packet, wirelen);
    assert_eq!(r, prog.run(packet, wirelen));
    let p = Packet {
        index: 0,
        interface: 0,
        linktype: LinkType::ETHERNET,
        ts: None,
        origlen: wirelen,
        data: packet,
    };
    assert_eq!(prog.matches(&p), r != 0);
    // the text form round-trips the instructions
    let text = prog.to_string();
    assert_eq!(text.lines().count(), prog.len() + 1);
});
