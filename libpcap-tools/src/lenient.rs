//! [`LenientSource`]: a capture read to its last good packet.

use crate::{CaptureReader, Error, PacketSource, Result, SourceEvent, SourceProgress};

/// A [`CaptureReader`] whose input ends, instead of failing, when it is cut
/// short (truncated) or turns out corrupt after its first packet. The
/// error is kept in [`LenientSource::warnings`], so a tool can report it and
/// still save what it found in every good packet before it.
///
/// An error before the first packet (not a capture, corrupt header) is still
/// returned as an error.
#[derive(Debug)]
pub struct LenientSource {
    reader: CaptureReader,
    warnings: Vec<Error>,
    done: bool,
}

impl LenientSource {
    /// Wraps an open reader.
    pub fn new(reader: CaptureReader) -> LenientSource {
        LenientSource {
            reader,
            warnings: Vec::new(),
            done: false,
        }
    }

    /// The truncation or corruption that ended the input, if any (also
    /// [`PacketSource::warnings`]).
    pub fn warnings(&self) -> &[Error] {
        &self.warnings
    }

    /// The reader.
    pub fn reader(&self) -> &CaptureReader {
        &self.reader
    }
}

impl PacketSource for LenientSource {
    fn next_event(&mut self) -> Result<SourceEvent<'_>> {
        if self.done {
            return Ok(SourceEvent::End);
        }
        let read_before = self.reader.packets_read();
        match self.reader.next_packet() {
            Ok(Some(p)) => Ok(SourceEvent::Packet(p)),
            Ok(None) => Ok(SourceEvent::End),
            Err(e) if read_before > 0 || e.is_truncation() => {
                self.done = true;
                self.warnings.push(e);
                Ok(SourceEvent::End)
            }
            Err(e) => Err(e),
        }
    }

    fn name(&self) -> &str {
        self.reader.name()
    }

    fn warnings(&self) -> &[Error] {
        &self.warnings
    }

    fn progress(&self) -> SourceProgress {
        self.reader.progress()
    }
}

/// Opens a capture for analysis: classic pcap files are read into shared
/// chunks ([`crate::ChunkedPcapReader`], no copy when packets go to worker
/// threads), everything else (pcapng, compressed files, standard input)
/// through a [`LenientSource`]. Either way a truncated or partly corrupt
/// file ends with [`PacketSource::warnings`] instead of an error.
///
/// # Errors
/// When the input cannot be opened or is not a capture.
pub fn open_capture(
    path: &std::path::Path,
    cfg: &crate::ReaderConfig,
) -> Result<Box<dyn PacketSource>> {
    if cfg.shared_chunks
        && let Some(r) = crate::ChunkedPcapReader::open(path, cfg)?
    {
        return Ok(Box::new(r));
    }
    Ok(Box::new(LenientSource::new(CaptureReader::open(
        path, cfg,
    )?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ReaderConfig, synth};

    #[test]
    fn truncated_input_ends_with_a_warning_after_every_good_packet() {
        let bytes = synth::pcap_bytes(
            &synth::packets(5, crate::Timestamp(0)),
            crate::LinkType::ETHERNET,
            crate::PcapWriterOptions::default(),
        )
        .unwrap();
        let cut = bytes.len() - 10;
        let r = CaptureReader::from_reader(
            std::io::Cursor::new(bytes[..cut].to_vec()),
            "cut",
            &ReaderConfig::default(),
        )
        .unwrap();
        let mut s = LenientSource::new(r);
        let mut n = 0;
        while let SourceEvent::Packet(_) = s.next_event().unwrap() {
            n += 1;
        }
        assert_eq!(n, 4);
        assert!(PacketSource::warnings(&s)[0].is_truncation());
        assert_eq!(s.next_event().unwrap(), SourceEvent::End);
    }
}
