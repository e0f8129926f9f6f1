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
