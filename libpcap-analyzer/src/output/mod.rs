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
