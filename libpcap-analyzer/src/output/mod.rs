//! Records and the files they are written to: one schema for everything
//! PAL writes.
//!
//! - [`schema`] declares each record kind ([`schema::FLOW`],
//!   [`schema::CONNECTION`], [`schema::DNS`], [`schema::TLS`],
//!   [`schema::COMMUNITY_ID`]) with its fields, their types and meanings;
//!   plugins fill records ([`RowBuf`]) field by field, they do not name
//!   fields themselves. [`json_schema`] gives the JSON Schema of a kind (the
//!   repository's `schema/` folder holds them, checked by a test).
//! - Conventions: snake_case names; `src_*`/`dst_*` from the originator's
//!   view; `flow_id` in every record that belongs to a flow, the same in
//!   every file; a time in every record (`ts`, or `first`/`last`): RFC 3339
//!   with nanoseconds in JSON and CSV, a UTC timestamp in Parquet, epoch
//!   seconds in Zeek logs; a name next to every code that has one
//!   (`rcode_name`, `qtype_name`, `cipher_name`, …); a field keeps its type
//!   whatever its content (a null is left out of a JSON line).
//! - [`Format`]: JSON lines, CSV, Zeek TSV logs, Parquet ([`format`](mod@format)).
//! - [`RecordSpool`]: the records of one kind from one worker, kept in
//!   memory up to a budget and spilled as sorted runs beyond it, merged at
//!   the end into one file ordered by time then flow id — the same file
//!   whatever the number of workers.

pub mod format;
pub(crate) mod iptext;
#[cfg(feature = "parquet")]
pub mod parquet;
pub mod row;
pub mod schema;
pub mod spool;
pub mod time;

pub use format::{Format, RecordWriter, writer};
pub use row::{RowBuf, Value, decode};
pub use schema::{Field, Kind, Ty};
pub use spool::RecordSpool;

/// The JSON Schema (draft 2020-12) of the JSON lines of `kind`.
pub fn json_schema(kind: &Kind) -> serde_json::Value {
    use serde_json::json;
    let mut props = serde_json::Map::new();
    let mut required = Vec::new();
    for f in kind.fields {
        let mut t = match f.ty {
            Ty::Bool => json!({ "type": "boolean" }),
            Ty::U64 => json!({ "type": "integer", "minimum": 0 }),
            Ty::I64 => json!({ "type": "integer" }),
            Ty::F64 => json!({ "type": "number" }),
            Ty::Str => json!({ "type": "string" }),
            Ty::Ip => json!({
                "type": "string",
                "anyOf": [ { "format": "ipv4" }, { "format": "ipv6" } ]
            }),
            Ty::Time => json!({
                "type": "string",
                "format": "date-time",
                "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{9}Z$"
            }),
            Ty::Duration => json!({ "type": "number" }),
            Ty::StrList => json!({ "type": "array", "items": { "type": "string" } }),
            Ty::U64List => json!({ "type": "array", "items": { "type": "integer", "minimum": 0 } }),
        };
        if let Some(o) = t.as_object_mut() {
            o.insert("description".into(), f.doc.into());
        }
        props.insert(f.name.to_string(), t);
        if !f.nullable {
            required.push(f.name);
        }
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("https://pal.example.invalid/schema/v{}/{}.schema.json", schema::VERSION, kind.name),
        "title": format!("PAL {} record (schema version {})", kind.name, schema::VERSION),
        "description": kind.doc,
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

/// A writer that computes the size and SHA-256 of what goes through it,
/// so that a run manifest need not read its files back.
#[derive(Debug)]
pub struct DigestWriter<W> {
    inner: W,
    state: std::sync::Arc<std::sync::Mutex<(sha2::Sha256, u64)>>,
}

impl<W> DigestWriter<W> {
    /// Wraps `inner`; `digest` reads the result once the writing is done.
    pub fn new(inner: W) -> (DigestWriter<W>, Digest) {
        let state = std::sync::Arc::new(std::sync::Mutex::new((
            <sha2::Sha256 as sha2::Digest>::new(),
            0,
        )));
        (
            DigestWriter {
                inner,
                state: state.clone(),
            },
            Digest(state),
        )
    }
}

impl<W: std::io::Write> std::io::Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Ok(mut s) = self.state.lock() {
            sha2::Digest::update(&mut s.0, buf.get(..n).unwrap_or_default());
            s.1 += n as u64;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A buffered writer whose full buffers are written by a thread of its
/// own: what produces the bytes (the merge of a spool's runs, formatting)
/// goes on while the buffer before is written (and hashed, through a
/// [`DigestWriter`]). At most [`PipeWriter::BUFFERS`] buffers exist, so a
/// slow `inner` holds the producer back. Without a thread it writes in
/// place, as a `BufWriter` would.
///
/// [`Write::flush`] returns once every byte handed over is written and
/// `inner` flushed, with the first error of the writing thread.
pub struct PipeWriter<W: std::io::Write + Send + 'static> {
    buf: Vec<u8>,
    to: PipeTo<W>,
}

enum PipeTo<W> {
    Inline(W),
    Thread {
        full: Option<crossbeam_channel::Sender<Vec<u8>>>,
        empty: crossbeam_channel::Receiver<Vec<u8>>,
        thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
        /// Buffers handed over and not yet given back.
        out: usize,
    },
    /// The thread failed and was joined: its error was returned once.
    Failed,
}

impl<W: std::io::Write + Send + 'static> std::fmt::Debug for PipeWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeWriter")
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl<W: std::io::Write + Send + 'static> PipeWriter<W> {
    /// Bytes of a buffer.
    pub const BUFFER: usize = 1 << 20;
    /// Buffers at most: one filling, the others written or waiting.
    pub const BUFFERS: usize = 3;

    /// Writes into `inner` through a thread named `name` (in place when no
    /// thread can be had).
    pub fn new(inner: W, name: &str) -> PipeWriter<W> {
        let (full_tx, full_rx) = crossbeam_channel::bounded::<Vec<u8>>(Self::BUFFERS);
        let (empty_tx, empty_rx) = crossbeam_channel::bounded::<Vec<u8>>(Self::BUFFERS);
        let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(inner)));
        let theirs = std::sync::Arc::clone(&slot);
        let spawned =
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || -> std::io::Result<()> {
                    let inner = theirs.lock().ok().and_then(|mut i| i.take());
                    let Some(mut inner) = inner else {
                        return Err(std::io::Error::other("the output was gone"));
                    };
                    for mut buf in full_rx {
                        inner.write_all(&buf)?;
                        inner.flush()?;
                        buf.clear();
                        let _ = empty_tx.send(buf);
                    }
                    Ok(())
                });
        let to = match spawned {
            Ok(thread) => PipeTo::Thread {
                full: Some(full_tx),
                empty: empty_rx,
                thread: Some(thread),
                out: 0,
            },
            Err(_) => match slot.lock().ok().and_then(|mut i| i.take()) {
                Some(inner) => PipeTo::Inline(inner),
                None => PipeTo::Failed,
            },
        };
        PipeWriter {
            buf: Vec::with_capacity(Self::BUFFER),
            to,
        }
    }

    /// Hands the buffer over (written in place without a thread).
    fn hand_over(&mut self) -> std::io::Result<()> {
        match &mut self.to {
            PipeTo::Inline(w) => {
                w.write_all(&self.buf)?;
                self.buf.clear();
                Ok(())
            }
            PipeTo::Thread {
                full, empty, out, ..
            } => {
                // the next buffer: one given back, else a new one while
                // fewer than BUFFERS exist, else wait for one
                let next = match empty.try_recv() {
                    Ok(b) => Some(b),
                    Err(_) if *out + 1 < Self::BUFFERS => None,
                    Err(_) => match empty.recv() {
                        Ok(b) => Some(b),
                        Err(_) => return Err(self.fail()),
                    },
                };
                if next.is_some() {
                    *out = out.saturating_sub(1);
                }
                let next = next.unwrap_or_else(|| Vec::with_capacity(Self::BUFFER));
                let filled = std::mem::replace(&mut self.buf, next);
                let sent = full.as_ref().map(|f| f.send(filled));
                match sent {
                    Some(Ok(())) => {
                        *out += 1;
                        Ok(())
                    }
                    _ => Err(self.fail()),
                }
            }
            PipeTo::Failed => Err(std::io::Error::other("an earlier write failed")),
        }
    }

    /// Joins the writing thread after it stopped: its error.
    fn fail(&mut self) -> std::io::Error {
        let to = std::mem::replace(&mut self.to, PipeTo::Failed);
        let PipeTo::Thread {
            full, mut thread, ..
        } = to
        else {
            return std::io::Error::other("an earlier write failed");
        };
        drop(full);
        match thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => std::io::Error::other("the thread writing the output stopped"),
        }
    }
}

impl<W: std::io::Write + Send + 'static> std::io::Write for PipeWriter<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + b.len() > Self::BUFFER && !self.buf.is_empty() {
            self.hand_over()?;
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.hand_over()?;
        }
        match &mut self.to {
            PipeTo::Inline(w) => w.flush(),
            PipeTo::Thread { empty, out, .. } => {
                // every buffer handed over comes back once written
                while *out > 0 {
                    if empty.recv().is_err() {
                        return Err(self.fail());
                    }
                    *out -= 1;
                }
                Ok(())
            }
            PipeTo::Failed => Err(std::io::Error::other("an earlier write failed")),
        }
    }
}

impl<W: std::io::Write + Send + 'static> Drop for PipeWriter<W> {
    fn drop(&mut self) {
        if let PipeTo::Thread { full, thread, .. } = &mut self.to {
            // the thread ends when its queue closes (what was not flushed is
            // written, but its errors are lost: flush to see them)
            drop(full.take());
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// The digest side of a [`DigestWriter`].
#[derive(Debug)]
pub struct Digest(std::sync::Arc<std::sync::Mutex<(sha2::Sha256, u64)>>);

impl Digest {
    /// The bytes written so far and their SHA-256 (lowercase hex).
    pub fn result(&self) -> (u64, String) {
        use std::fmt::Write as _;
        let (h, n) = match self.0.lock() {
            Ok(s) => (sha2::Digest::finalize(s.0.clone()), s.1),
            Err(_) => (
                sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new()),
                0,
            ),
        };
        let mut hex = String::with_capacity(64);
        for b in h {
            let _ = write!(hex, "{b:02x}");
        }
        (n, hex)
    }
}

/// A file this process wrote in full: its path, identity (device and
/// inode, which a rename keeps), size and SHA-256.
type Written = (
    std::path::PathBuf,
    libpcap_tools::outfile::FileId,
    u64,
    String,
);

/// The files this process wrote in full, the last one written at each path.
static WRITTEN: std::sync::Mutex<Vec<Written>> = std::sync::Mutex::new(Vec::new());

/// Notes that the file at `path` was written in full with `size` bytes of
/// SHA-256 `sha256` (see [`written_digest`]). One entry is kept per path
/// (a report rewritten every minute of a long live run is one entry).
pub fn note_written(path: &std::path::Path, size: u64, sha256: String) {
    if let Ok(Some(id)) = libpcap_tools::outfile::FileId::of(path)
        && let Ok(mut w) = WRITTEN.lock()
    {
        w.retain(|e| e.0 != path && e.1 != id);
        w.push((path.to_path_buf(), id, size, sha256));
    }
}

/// Size and SHA-256 of the file at `path` when this process wrote it (see
/// [`note_written`]) and its size is still the one written; `None`
/// otherwise (read it to know).
pub fn written_digest(path: &std::path::Path) -> Option<(u64, String)> {
    let id = libpcap_tools::outfile::FileId::of(path).ok()??;
    let len = std::fs::metadata(path).ok()?.len();
    let w = WRITTEN.lock().ok()?;
    w.iter()
        .find(|e| e.1 == id && e.2 == len)
        .map(|e| (e.2, e.3.clone()))
}

#[cfg(test)]
mod digest_tests {
    use super::*;
    use std::io::Write as _;

    /// FIPS 180-2's "abc" example, written in two pieces.
    #[test]
    fn digest_writer_hashes_what_it_writes() {
        let (mut w, d) = DigestWriter::new(Vec::new());
        w.write_all(b"ab").unwrap();
        w.write_all(b"c").unwrap();
        assert_eq!(w.inner, b"abc");
        assert_eq!(
            d.result(),
            (
                3,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_string()
            )
        );
    }

    /// A sink shared with the test, that fails once it holds `fail_at`
    /// bytes, and counts its flushes.
    #[derive(Clone, Default)]
    struct Sink(
        std::sync::Arc<std::sync::Mutex<(Vec<u8>, usize)>>,
        Option<usize>,
    );
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            if self.1.is_some_and(|at| s.0.len() + b.len() > at) {
                return Err(std::io::Error::other("disk full"));
            }
            s.0.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.lock().unwrap().1 += 1;
            Ok(())
        }
    }

    /// Writes of every size, some larger than a buffer, come out whole and
    /// in order; after `flush` everything is in the sink (the writing
    /// thread is done with it), and again after more writes.
    #[test]
    fn a_pipe_writer_writes_everything_in_order_by_the_time_flush_returns() {
        let sink = Sink::default();
        let mut w = PipeWriter::new(sink.clone(), "pal-test-write");
        let mut want = Vec::new();
        let mut x = 0x1234_5678u32;
        for i in 0..600usize {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let n = if i % 97 == 0 {
                PipeWriter::<Sink>::BUFFER + 5
            } else {
                x as usize % 20_000
            };
            let piece: Vec<u8> = (0..n).map(|k| (k ^ i) as u8).collect();
            w.write_all(&piece).unwrap();
            want.extend_from_slice(&piece);
            if i == 300 {
                w.flush().unwrap();
                assert_eq!(sink.0.lock().unwrap().0, want, "flushed half-way");
            }
        }
        w.flush().unwrap();
        let (got, flushes) = sink.0.lock().unwrap().clone();
        assert!(got.len() > 4 * PipeWriter::<Sink>::BUFFER);
        assert_eq!(got, want);
        assert!(flushes > 0, "the sink is flushed");
        drop(w);
    }

    /// The sink's error reaches the writer (at a later write or at the
    /// flush), and every call after it fails too.
    #[test]
    fn a_pipe_writer_reports_the_error_of_its_sink() {
        let sink = Sink(Default::default(), Some(3 << 20));
        let mut w = PipeWriter::new(sink.clone(), "pal-test-write");
        let piece = vec![7u8; 100_000];
        let mut failed = None;
        for _ in 0..100 {
            if let Err(e) = w.write_all(&piece) {
                failed = Some(e);
                break;
            }
        }
        let e = match failed {
            Some(e) => e,
            None => w.flush().unwrap_err(),
        };
        assert_eq!(e.to_string(), "disk full");
        assert!(w.write_all(&piece).and_then(|()| w.flush()).is_err());
        assert!(sink.0.lock().unwrap().0.len() <= 3 << 20);
    }

    #[test]
    fn a_written_digest_holds_while_the_size_is_the_one_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(written_digest(&p), None);
        note_written(&p, 3, "x".into());
        assert_eq!(written_digest(&p), Some((3, "x".into())));
        std::fs::write(&p, b"abcd").unwrap();
        assert_eq!(written_digest(&p), None, "changed since");
    }

    /// A file rewritten again and again (the periodic connection report)
    /// is one entry, whatever inode each version gets.
    #[test]
    fn a_path_written_many_times_is_noted_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("report.txt");
        for i in 0..50u8 {
            crate::plugin::write_atomically_with(&p, |w| w.write_all(&[i; 3])).unwrap();
        }
        let entries = WRITTEN.lock().unwrap().iter().filter(|e| e.0 == p).count();
        assert_eq!(entries, 1);
        let want = {
            use sha2::Digest as _;
            let h = sha2::Sha256::digest([49u8; 3]);
            h.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        assert_eq!(written_digest(&p), Some((3, want)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The committed schemas (`schema/*.schema.json`) are the generated
    /// ones; `PAL_UPDATE_SCHEMAS=1` rewrites them.
    #[test]
    fn the_committed_json_schemas_are_up_to_date() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema");
        let update = std::env::var_os("PAL_UPDATE_SCHEMAS").is_some();
        for k in schema::ALL {
            let path = dir.join(format!("{}.schema.json", k.name));
            let want = serde_json::to_string_pretty(&json_schema(k)).unwrap() + "\n";
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &want).unwrap();
            }
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            assert_eq!(
                have,
                want,
                "{} differs: run PAL_UPDATE_SCHEMAS=1 cargo test -p libpcap-analyzer json_schemas",
                path.display()
            );
        }
    }
}
