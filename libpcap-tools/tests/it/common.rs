//! Shared helpers: corpus location, MANIFEST parsing, reading a whole capture.

use libpcap_tools::{CaptureReader, Error, OwnedPacket, ReaderConfig};
use std::path::{Path, PathBuf};

/// The corpus directory (`PAL_CORPUS`, else `../shared/corpus` next to the
/// workspace), or `None` with a SKIPPED message.
pub(crate) fn corpus_dir() -> Option<PathBuf> {
    libpcap_tools::synth::corpus_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
}

/// One row of MANIFEST.tsv.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) path: String,
    pub(crate) format: String,
    pub(crate) packets: u64,
    pub(crate) capinfos_note: String,
    pub(crate) first_epoch: String,
    pub(crate) last_epoch: String,
}

pub(crate) fn manifest(dir: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (p, f, n, c, a, b) = (
        col("path"),
        col("format"),
        col("packets"),
        col("capinfos_note"),
        col("first_epoch"),
        col("last_epoch"),
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Vec<&str> = l.split('\t').collect();
            let g = |i: usize| v.get(i).copied().unwrap_or("").to_string();
            Entry {
                path: g(p),
                format: g(f),
                packets: g(n).parse().unwrap_or(0),
                capinfos_note: g(c),
                first_epoch: g(a),
                last_epoch: g(b),
            }
        })
        .collect()
}

/// Everything a reader gives: the packets, then the error that ended it.
pub(crate) struct ReadAll {
    pub(crate) packets: Vec<OwnedPacket>,
    pub(crate) error: Option<Error>,
}

pub(crate) fn read_reader(mut r: CaptureReader) -> ReadAll {
    let mut packets = Vec::new();
    let error = loop {
        match r.next_packet() {
            Ok(Some(p)) => packets.push(p.to_owned()),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    // after the end or an error, the reader stays at the end
    assert!(matches!(r.next_packet(), Ok(None)));
    ReadAll { packets, error }
}

pub(crate) fn read_path(path: &Path, cfg: &ReaderConfig) -> Result<ReadAll, Error> {
    Ok(read_reader(CaptureReader::open(path, cfg)?))
}

pub(crate) fn read_bytes(bytes: Vec<u8>, cfg: &ReaderConfig) -> Result<ReadAll, Error> {
    Ok(read_reader(CaptureReader::from_reader(
        std::io::Cursor::new(bytes),
        "mem",
        cfg,
    )?))
}
