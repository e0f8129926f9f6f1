//! Small helpers to build captures in memory (tests, benches, examples).
//!
//! Not behind a feature: the functions are cheap and deterministic.

use crate::{
    InterfaceSpec, LinkType, OwnedPacket, Packet, PcapNgWriter, PcapWriter, PcapWriterOptions,
    Result, Timestamp,
};

/// xorshift64*: deterministic pseudo-random numbers for tests (the same
/// sequence on every machine, from a nonzero seed).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `n` deterministic Ethernet/IPv4/UDP-looking packets of mixed sizes
/// (60 to 1514 bytes), 1 ms apart from `start`, with every 7th packet
/// snaplen-truncated to 96 bytes (`origlen` keeps the full size).
pub fn packets(n: usize, start: Timestamp) -> Vec<OwnedPacket> {
    let mut out = Vec::with_capacity(n);
    let mut seed: u32 = 0x1234_5678;
    for i in 0..n {
        // xorshift32
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let size = match seed % 4 {
            0 => 60,
            1 => 60 + (seed >> 8) as usize % 200,
            2 => 576,
            _ => 1514,
        };
        let mut data = Vec::with_capacity(size);
        data.extend_from_slice(&[
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0x08, 0x00,
        ]);
        data.extend_from_slice(&[0x45, 0x00]);
        data.extend_from_slice(&((size - 14) as u16).to_be_bytes());
        while data.len() < size {
            data.push((data.len() as u8) ^ (i as u8));
        }
        let origlen = size as u32;
        if i % 7 == 6 {
            data.truncate(96);
        }
        out.push(OwnedPacket {
            index: i as u64,
            interface: 0,
            linktype: LinkType::ETHERNET,
            ts: Some(Timestamp(start.0 + i as i64 * 1_000_123)),
            origlen,
            data,
        });
    }
    out
}

/// Writes `packets` as a classic pcap file in memory.
///
/// # Errors
/// As [`PcapWriter::write_packet`].
pub fn pcap_bytes(
    packets: &[OwnedPacket],
    linktype: LinkType,
    opts: PcapWriterOptions,
) -> Result<Vec<u8>> {
    let mut w = PcapWriter::new(Vec::new(), linktype, opts)?;
    for p in packets {
        w.write_packet(&p.as_packet())?;
    }
    w.finish()
}

/// Writes `packets` as a one-section pcapng file in memory, with one
/// interface per spec (each packet's `interface` selects its IDB).
///
/// # Errors
/// As [`PcapNgWriter::write_packet`].
pub fn pcapng_bytes(
    packets: &[OwnedPacket],
    interfaces: &[InterfaceSpec],
    big_endian: bool,
) -> Result<Vec<u8>> {
    let mut w = PcapNgWriter::new(Vec::new(), big_endian)?;
    for i in interfaces {
        w.add_interface(i)?;
    }
    for p in packets {
        w.write_packet(&p.as_packet())?;
    }
    w.finish()
}

/// A packet view with the given fields (convenience for tests).
pub fn packet<'a>(index: u64, ts: Option<Timestamp>, origlen: u32, data: &'a [u8]) -> Packet<'a> {
    Packet {
        index,
        interface: 0,
        linktype: LinkType::ETHERNET,
        ts,
        origlen,
        data,
    }
}

/// The shared corpus of real captures for tests: `PAL_CORPUS` if set, else
/// `../shared/corpus` next to the workspace (and one level further up, for
/// git worktrees), where `crate_dir` is a member crate's
/// `CARGO_MANIFEST_DIR`. Prints `SKIPPED: corpus not found at …` and gives
/// `None` when there is none, so a test can return early and say why.
pub fn corpus_dir(crate_dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let root = crate_dir.join("..");
    let default = root.join("../shared/corpus");
    let candidates = match std::env::var_os("PAL_CORPUS") {
        Some(d) => vec![std::path::PathBuf::from(d)],
        None => vec![default.clone(), root.join("../../shared/corpus")],
    };
    match candidates
        .into_iter()
        .find(|d| d.join("MANIFEST.tsv").is_file())
    {
        Some(d) => Some(d),
        None => {
            let shown = std::env::var_os("PAL_CORPUS").map_or(default, std::path::PathBuf::from);
            eprintln!(
                "SKIPPED: corpus not found at {} (set PAL_CORPUS)",
                shown.display()
            );
            None
        }
    }
}

/// A [`PacketSource`](crate::PacketSource) over packets held in memory, for
/// tests, examples and benches: delivers them in order, then ends.
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    packets: Vec<OwnedPacket>,
    next: usize,
    delay: Option<std::time::Duration>,
}

impl MemorySource {
    /// A source delivering `packets`.
    pub fn new(packets: Vec<OwnedPacket>) -> MemorySource {
        MemorySource {
            packets,
            next: 0,
            delay: None,
        }
    }

    /// Sleeps `delay` before each event (a slow source, for tests of what
    /// happens while a run goes on).
    pub fn with_delay(mut self, delay: std::time::Duration) -> MemorySource {
        self.delay = Some(delay);
        self
    }

    /// Packets delivered so far.
    pub fn delivered(&self) -> usize {
        self.next.min(self.packets.len())
    }
}

impl crate::PacketSource for MemorySource {
    fn next_event(&mut self) -> crate::Result<crate::SourceEvent<'_>> {
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        let i = self.next;
        self.next = self.next.saturating_add(1);
        Ok(match self.packets.get(i) {
            Some(p) => crate::SourceEvent::Packet(p.as_packet()),
            None => crate::SourceEvent::End,
        })
    }

    fn name(&self) -> &str {
        "memory"
    }

    fn progress(&self) -> crate::SourceProgress {
        let done = &self.packets[..self.delivered()];
        crate::SourceProgress {
            packets: done.len() as u64,
            bytes: done.iter().map(|p| p.data.len() as u64).sum(),
            total_bytes: Some(self.packets.iter().map(|p| p.data.len() as u64).sum()),
            dropped: None,
        }
    }
}
