//! Packet sources built from the command line: several files read one after
//! another as one stream, with packets skipped at the start.

use libpcap_tools::{
    CaptureReader, Error, PacketSource, ReaderConfig, SourceEvent, SourceProgress,
};
use std::fs::File;
use std::path::PathBuf;

/// Several capture files (or `-`) read in the order given, as one stream.
///
/// Every file is opened by [`MultiSource::open`], before any is read: the
/// program may give up the right to open them (privilege drop) before
/// reading starts. Only the file handles are held; a file's reader (and
/// its buffer) is made when its turn comes.
///
/// Packet indexes continue from one file to the next. Each packet is copied
/// into one reused buffer (the borrow of a reader cannot be returned from a
/// loop over several readers); a single input without `--skip` is read
/// directly instead. A file that ends
/// early (truncated) or turns out corrupt after its first packets is
/// recorded as a warning and reading goes on with the next file.
pub struct MultiSource {
    inputs: Vec<(PathBuf, Option<File>)>,
    next: usize,
    current: Option<CaptureReader>,
    cfg: ReaderConfig,
    base_index: u64,
    base_bytes: u64,
    skip: u64,
    name: String,
    warnings: Vec<Error>,
    total: Option<u64>,
    packet: libpcap_tools::OwnedPacket,
}

impl MultiSource {
    /// Opens every file of `paths` (`-`: standard input, read in its turn)
    /// for a source that skips the first `skip` packets.
    ///
    /// # Errors
    /// [`Error::Open`] naming the first file that cannot be opened.
    pub fn open(paths: Vec<PathBuf>, cfg: ReaderConfig, skip: u64) -> Result<MultiSource, Error> {
        let mut inputs = Vec::with_capacity(paths.len());
        let mut total = Some(0u64);
        for p in paths {
            if p.as_os_str() == "-" {
                total = None;
                inputs.push((p, None));
                continue;
            }
            let f = File::open(&p).map_err(|source| Error::Open {
                path: p.clone(),
                source,
            })?;
            let len = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
            total = total.zip(len).map(|(a, b)| a + b);
            inputs.push((p, Some(f)));
        }
        let name = inputs
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Ok(MultiSource {
            inputs,
            next: 0,
            current: None,
            cfg,
            base_index: 0,
            base_bytes: 0,
            skip,
            name,
            warnings: Vec::new(),
            total,
            packet: libpcap_tools::OwnedPacket::default(),
        })
    }

    fn advance(&mut self) -> Result<bool, Error> {
        if let Some(cur) = self.current.take() {
            self.base_index += cur.packets_read();
            self.base_bytes += cur.progress().bytes;
        }
        let Some((path, file)) = self.inputs.get_mut(self.next) else {
            return Ok(false);
        };
        self.next += 1;
        let opened = match file.take() {
            Some(f) => CaptureReader::from_file(f, path.display().to_string(), &self.cfg),
            None => CaptureReader::open(path, &self.cfg),
        };
        match opened {
            Ok(r) => {
                log::info!(
                    "reading {} ({:?}, {:?})",
                    path.display(),
                    r.format(),
                    r.compression()
                );
                self.current = Some(r);
                Ok(true)
            }
            Err(e) => Err(named(path.display().to_string(), e)),
        }
    }
}

/// `e` with the name of the file it happened in.
fn named(name: String, e: Error) -> Error {
    match e {
        e @ Error::Open { .. } => e,
        e => Error::Source {
            context: format!("cannot read '{name}'"),
            source: Box::new(e),
        },
    }
}

impl PacketSource for MultiSource {
    fn next_event(&mut self) -> libpcap_tools::Result<SourceEvent<'_>> {
        loop {
            if self.current.is_none() && !self.advance()? {
                return Ok(SourceEvent::End);
            }
            let Some(cur) = self.current.as_mut() else {
                return Ok(SourceEvent::End);
            };
            match cur.next_packet() {
                Ok(Some(p)) => {
                    if self.skip > 0 {
                        self.skip -= 1;
                        continue;
                    }
                    let o = &mut self.packet;
                    o.index = p.index + self.base_index;
                    o.interface = p.interface;
                    o.linktype = p.linktype;
                    o.ts = p.ts;
                    o.origlen = p.origlen;
                    o.data.clear();
                    o.data.extend_from_slice(p.data);
                    break;
                }
                Ok(None) => self.current = None,
                Err(e) => {
                    let first = cur.packets_read() == 0 && self.next == 1 && !e.is_truncation();
                    if first {
                        return Err(named(cur.name().to_string(), e));
                    }
                    log::debug!("{}: {e}", cur.name());
                    self.warnings.push(Error::Source {
                        context: cur.name().to_string(),
                        source: Box::new(e),
                    });
                    self.current = None;
                }
            }
        }
        Ok(SourceEvent::Packet(self.packet.as_packet()))
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// Truncations and corruptions met after the first packet of a file,
    /// each with the file's name.
    fn warnings(&self) -> &[Error] {
        &self.warnings
    }

    fn progress(&self) -> SourceProgress {
        let cur = self
            .current
            .as_ref()
            .map(|c| c.progress())
            .unwrap_or_default();
        SourceProgress {
            packets: self.base_index + cur.packets,
            bytes: self.base_bytes + cur.bytes,
            total_bytes: self.total,
            dropped: None,
        }
    }
}
