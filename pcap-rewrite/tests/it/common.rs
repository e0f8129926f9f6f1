//! Shared helpers: corpus location, reading captures, running the binary.

use libpcap_tools::{
    CaptureReader, LinkType, OwnedPacket, Packet, PcapNgWriter, PcapWriter, PcapWriterOptions,
    ReaderConfig, Timestamp,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The corpus directory (`PAL_CORPUS`, else `../shared/corpus` next to the
/// workspace, also tried one level up for git worktrees), or `None` after
/// printing "SKIPPED: corpus not found".
pub(crate) fn corpus_dir() -> Option<PathBuf> {
    libpcap_tools::synth::corpus_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
}

/// Every packet of a capture, and the error that ended reading, if any.
pub(crate) fn read_all(path: &Path) -> (Vec<OwnedPacket>, Option<libpcap_tools::Error>) {
    let mut r = match CaptureReader::open(path, &ReaderConfig::default()) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut v = Vec::new();
    loop {
        match r.next_packet() {
            Ok(Some(p)) => v.push(p.to_owned()),
            Ok(None) => return (v, None),
            Err(e) => return (v, Some(e)),
        }
    }
}

/// Packets of a capture that must read cleanly.
pub(crate) fn packets(path: &Path) -> Vec<OwnedPacket> {
    let (v, e) = read_all(path);
    assert!(e.is_none(), "{}: {e:?}", path.display());
    v
}

/// A packet for writing (index `i`, time `1_600_000_000 + i` s + `i` µs).
pub(crate) fn pkt(i: usize, lt: LinkType, data: Vec<u8>) -> OwnedPacket {
    OwnedPacket {
        index: i as u64,
        interface: 0,
        linktype: lt,
        ts: Some(Timestamp::from_secs_nanos(
            1_600_000_000 + i as i64,
            i as i64 * 1000,
        )),
        origlen: data.len() as u32,
        data,
    }
}

/// Writes a classic pcap file of `packets` (all of link type `lt`).
pub(crate) fn write_pcap(path: &Path, lt: LinkType, packets: &[OwnedPacket]) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::new(f, lt, PcapWriterOptions::default()).unwrap();
    for p in packets {
        w.write_packet(&p.as_packet()).unwrap();
    }
    w.finish().unwrap();
}

/// Writes a pcapng file with one nanosecond interface per link type given
/// (named `if0`, `if1`, …).
pub(crate) fn write_pcapng(path: &Path, lts: &[LinkType], packets: &[OwnedPacket]) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = PcapNgWriter::new(f, false).unwrap();
    for (i, lt) in lts.iter().enumerate() {
        let spec = libpcap_tools::InterfaceSpec {
            name: Some(format!("if{i}")),
            ..libpcap_tools::InterfaceSpec::new(*lt)
        };
        w.add_interface(&spec).unwrap();
    }
    for p in packets {
        w.write_packet(&p.as_packet()).unwrap();
    }
    w.finish().unwrap();
}

/// Path of the binary under test.
pub(crate) fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pcap-rewrite"))
}

/// Runs the binary with `args` from the crate directory.
pub(crate) fn run(args: &[&str]) -> Output {
    bin()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap()
}

/// `true` if `prog` is on the PATH.
pub(crate) fn have(prog: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {prog} >/dev/null 2>&1"))
        .status()
        .is_ok_and(|s| s.success())
}

/// Data bytes of packets, for comparisons.
pub(crate) fn datas(v: &[OwnedPacket]) -> Vec<Vec<u8>> {
    v.iter().map(|p| p.data.clone()).collect()
}

/// A borrowed packet from parts (used by the library-level tests).
#[allow(dead_code)]
pub(crate) fn as_packet(p: &OwnedPacket) -> Packet<'_> {
    p.as_packet()
}
