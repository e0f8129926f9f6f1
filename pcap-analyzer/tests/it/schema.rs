//! Every record of a corpus run, in every format, against the one schema:
//! JSON lines validated with the JSON Schema files of the repository
//! (`schema/*.schema.json`, draft 2020-12, formats checked), CSV and Zeek
//! headers and values, and Parquet column names, types and nullability
//! checked against `libpcap_analyzer::output::schema`; every format holds
//! the same number of records of each kind. The checkers are shown to fail
//! on wrong records too.

use crate::{corpus, run, stderr};
use arrow_schema::{DataType, TimeUnit};
use libpcap_analyzer::output::schema::{self, Kind, Ty};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The plugins that write records.
const PLUGINS: &str = "flows,connections,dns,tls,community-id";

/// A subset of the corpus that finishes quickly in a debug build: every
/// capture of apps/, tunnels/, icmp/ and sctp/, every fifth of the others
/// (MANIFEST order, sorted), and the Community ID baseline capture.
fn captures(dir: &Path) -> Vec<PathBuf> {
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let mut paths: Vec<&str> = manifest
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next())
        .collect();
    paths.sort_unstable();
    paths.dedup();
    let mut out: Vec<PathBuf> = paths
        .iter()
        .enumerate()
        .filter(|(i, p)| {
            ["apps/", "tunnels/", "icmp/", "sctp/"]
                .iter()
                .any(|d| p.starts_with(d))
                || (i + 1) % 5 == 0
        })
        .map(|(_, p)| dir.join(p))
        .filter(|p| p.exists())
        .collect();
    out.push(dir.join("community-id/combined.pcap"));
    out
}

/// The JSON Schema of `kind` as committed in the repository.
fn json_schema(kind: &Kind) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schema")
        .join(format!("{}.schema.json", kind.name));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn validator(kind: &Kind) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(&json_schema(kind))
        .unwrap()
}

/// Checks JSON lines of `kind`; the number of records, or the first error.
fn check_jsonl(kind: &Kind, v: &jsonschema::Validator, text: &str) -> Result<usize, String> {
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        let r: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("{} line {}: {e}", kind.name, i + 1))?;
        if let Some(e) = v.iter_errors(&r).next() {
            return Err(format!("{} line {}: {e} in {line}", kind.name, i + 1));
        }
        n += 1;
    }
    Ok(n)
}

/// A CSV text split into records of fields (RFC 4180 quoting).
fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

/// RFC 3339 UTC with nanoseconds, as the schema's times are.
fn is_time(s: &str) -> bool {
    s.len() == 30
        && s.ends_with('Z')
        && s.as_bytes().get(19) == Some(&b'.')
        && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

/// Checks one CSV value of type `ty` (empty: null, an empty text or list).
fn check_csv_value(ty: Ty, nullable: bool, v: &str) -> bool {
    if v.is_empty() {
        return nullable || matches!(ty, Ty::Str | Ty::StrList | Ty::U64List);
    }
    match ty {
        Ty::Bool => v == "true" || v == "false",
        Ty::U64 => v.parse::<u64>().is_ok(),
        Ty::I64 => v.parse::<i64>().is_ok(),
        Ty::F64 | Ty::Duration => v.parse::<f64>().is_ok_and(f64::is_finite),
        Ty::Str | Ty::StrList => true,
        Ty::Ip => v.parse::<IpAddr>().is_ok(),
        Ty::Time => is_time(v),
        Ty::U64List => v.split(',').all(|x| x.parse::<u64>().is_ok()),
    }
}

/// Checks a CSV file of `kind`: the header is the field names, every value
/// has its field's type.
fn check_csv(kind: &Kind, text: &str) -> Result<usize, String> {
    let rows = parse_csv(text)?;
    let names: Vec<&str> = kind.fields.iter().map(|f| f.name).collect();
    let Some((header, rows)) = rows.split_first() else {
        return Err(format!("{}: no header", kind.name));
    };
    if header != &names {
        return Err(format!(
            "{}: header {header:?}, schema {names:?}",
            kind.name
        ));
    }
    for (i, r) in rows.iter().enumerate() {
        if r.len() != names.len() {
            return Err(format!("{} row {}: {} fields", kind.name, i + 1, r.len()));
        }
        for (f, v) in kind.fields.iter().zip(r) {
            if !check_csv_value(f.ty, f.nullable, v) {
                return Err(format!("{} row {}: {} = {v:?}", kind.name, i + 1, f.name));
            }
        }
    }
    Ok(rows.len())
}

/// The Zeek type of a field: the type's, `port` for the endpoints' ports,
/// `enum` for `proto` in logs Zeek has.
fn zeek_type(kind: &Kind, f: &schema::Field) -> &'static str {
    match f.zeek {
        Some("id.orig_p" | "id.resp_p") => "port",
        _ if f.name == "proto" && kind.zeek_path.is_some() && f.ty == Ty::Str => "enum",
        _ => f.ty.zeek(),
    }
}

/// Checks one Zeek log value.
fn check_zeek_value(ty: &str, nullable: bool, v: &str) -> bool {
    if v == "-" {
        return nullable;
    }
    if v == "(empty)" {
        return matches!(ty, "string" | "vector[string]" | "vector[count]");
    }
    let num = |x: &str| x.parse::<f64>().is_ok_and(f64::is_finite);
    match ty {
        "bool" => v == "T" || v == "F",
        "count" => v.parse::<u64>().is_ok(),
        "port" => v.parse::<u16>().is_ok(),
        "int" => v.parse::<i64>().is_ok(),
        "double" | "interval" | "time" => num(v),
        "addr" => v.parse::<IpAddr>().is_ok(),
        "vector[count]" => v.split(',').all(|x| x.parse::<u64>().is_ok()),
        _ => true,
    }
}

/// Checks a Zeek log of `kind`: its headers from the schema, every value
/// of its type.
fn check_zeek(kind: &Kind, text: &str) -> Result<usize, String> {
    let lines: Vec<&str> = text.lines().collect();
    let fields: Vec<&str> = kind
        .fields
        .iter()
        .map(|f| f.zeek.unwrap_or(f.name))
        .collect();
    let types: Vec<&str> = kind.fields.iter().map(|f| zeek_type(kind, f)).collect();
    let path = kind.zeek_path.unwrap_or(kind.file);
    let want = [
        "#separator \\x09".to_string(),
        "#set_separator\t,".to_string(),
        "#empty_field\t(empty)".to_string(),
        "#unset_field\t-".to_string(),
        format!("#path\t{path}"),
        format!("#fields\t{}", fields.join("\t")),
        format!("#types\t{}", types.join("\t")),
    ];
    for (i, w) in want.iter().enumerate() {
        let have = lines.get(i).copied().unwrap_or_default();
        if have != w {
            return Err(format!(
                "{}: header line {}: {have:?}, want {w:?}",
                kind.name,
                i + 1
            ));
        }
    }
    let mut n = 0;
    for (i, l) in lines.iter().enumerate().skip(want.len()) {
        if l.starts_with('#') {
            continue;
        }
        let vals: Vec<&str> = l.split('\t').collect();
        if vals.len() != fields.len() {
            return Err(format!(
                "{} line {}: {} values",
                kind.name,
                i + 1,
                vals.len()
            ));
        }
        for ((f, t), v) in kind.fields.iter().zip(&types).zip(&vals) {
            if !check_zeek_value(t, f.nullable, v) {
                return Err(format!("{} line {}: {} = {v:?}", kind.name, i + 1, f.name));
            }
        }
        n += 1;
    }
    Ok(n)
}

/// The Parquet (Arrow) type the schema gives a type.
fn arrow_type(ty: Ty) -> DataType {
    let list = |t: DataType| {
        DataType::List(std::sync::Arc::new(arrow_schema::Field::new(
            "item", t, true,
        )))
    };
    match ty {
        Ty::Bool => DataType::Boolean,
        Ty::U64 => DataType::UInt64,
        Ty::I64 => DataType::Int64,
        Ty::F64 | Ty::Duration => DataType::Float64,
        Ty::Str | Ty::Ip => DataType::Utf8,
        Ty::Time => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        Ty::StrList => list(DataType::Utf8),
        Ty::U64List => list(DataType::UInt64),
    }
}

/// Checks a Parquet file of `kind`: column names, types and nullability.
fn check_parquet(kind: &Kind, path: &Path) -> Result<usize, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let cols = b.schema().fields();
    if cols.len() != kind.fields.len() {
        return Err(format!("{}: {} columns", kind.name, cols.len()));
    }
    for (c, f) in cols.iter().zip(kind.fields) {
        let want = arrow_type(f.ty);
        if c.name() != f.name || c.data_type() != &want || c.is_nullable() != f.nullable {
            return Err(format!(
                "{}: column {} {:?} nullable {}, schema {} {want:?} nullable {}",
                kind.name,
                c.name(),
                c.data_type(),
                c.is_nullable(),
                f.name,
                f.nullable
            ));
        }
    }
    usize::try_from(b.metadata().file_metadata().num_rows()).map_err(|e| e.to_string())
}

#[test]
fn every_output_of_the_corpus_run_follows_the_schema() {
    let Some(dir) = corpus() else { return };
    let caps = captures(&dir);
    assert!(caps.len() > 50, "{} captures", caps.len());
    let tmp = tempfile::tempdir().unwrap();
    let validators: Vec<_> = schema::ALL.iter().map(|k| validator(k)).collect();
    // records per kind, per format
    let mut counts: BTreeMap<&str, Vec<(&str, usize)>> = BTreeMap::new();
    for format in ["jsonl", "csv", "zeek", "parquet"] {
        let out = tmp.path().join(format);
        let mut args: Vec<std::ffi::OsString> = ["-q", "-p", PLUGINS, "--format", format, "-o"]
            .iter()
            .map(Into::into)
            .collect();
        args.push(out.clone().into());
        args.extend(caps.iter().map(|c| c.clone().into_os_string()));
        let o = run(&args);
        // 3: some captures have a link type without a decoder
        assert!(
            matches!(o.status.code(), Some(0 | 3)),
            "{format}: {}",
            stderr(&o)
        );
        let ext = match format {
            "zeek" => "log",
            f => f,
        };
        for (kind, v) in schema::ALL.iter().zip(&validators) {
            let path = out.join(format!("{}.{ext}", kind.file));
            assert!(path.exists(), "{} missing", path.display());
            let n = match format {
                "parquet" => check_parquet(kind, &path),
                _ => {
                    let text = std::fs::read_to_string(&path).unwrap();
                    match format {
                        "jsonl" => check_jsonl(kind, v, &text),
                        "csv" => check_csv(kind, &text),
                        _ => check_zeek(kind, &text),
                    }
                }
            }
            .unwrap_or_else(|e| panic!("{format}: {e}"));
            assert!(n > 0, "{format}: no {} record", kind.name);
            counts.entry(kind.name).or_default().push((format, n));
        }
    }
    for (kind, c) in &counts {
        assert!(
            c.iter().all(|(_, n)| *n == c[0].1),
            "{kind}: records per format differ: {c:?}"
        );
        println!(
            "{kind}: {} records valid in jsonl, csv, zeek, parquet",
            c[0].1
        );
    }
}

/// A valid `community_id` record.
fn good_record() -> serde_json::Value {
    serde_json::json!({
        "ts": "2020-06-10T09:19:54.740079000Z",
        "flow_id": "2d272b48ffac6655",
        "src_ip": "192.168.1.11", "src_port": 43966,
        "dst_ip": "2001:db8::1", "dst_port": 53,
        "proto": "udp", "proto_num": 17,
        "community_id": "1:hTSGlFQnR58UCk+NfKRZzA32dPg="
    })
}

#[test]
fn the_checks_catch_wrong_records() {
    let kind = &schema::COMMUNITY_ID;
    let v = validator(kind);
    let line = |r: &serde_json::Value| r.to_string() + "\n";
    assert_eq!(check_jsonl(kind, &v, &line(&good_record())), Ok(1));
    let mut without_ts = good_record();
    without_ts.as_object_mut().unwrap().remove("ts");
    assert_eq!(
        check_jsonl(kind, &v, &line(&without_ts)),
        Ok(1),
        "ts is nullable"
    );
    let wrong: [(&str, serde_json::Value); 7] = [
        ("src_port", "43966".into()),
        ("src_port", (-1).into()),
        ("ts", 1_591_780_794.into()),
        ("ts", "2020-06-10 09:19:54".into()),
        ("dst_ip", "2001:db8::zz".into()),
        ("proto_num", serde_json::Value::Null),
        ("extra", 1.into()),
    ];
    for (k, val) in wrong {
        let mut r = good_record();
        r[k] = val;
        assert!(check_jsonl(kind, &v, &line(&r)).is_err(), "{r}");
    }
    let mut r = good_record();
    r.as_object_mut().unwrap().remove("community_id");
    assert!(
        check_jsonl(kind, &v, &line(&r)).is_err(),
        "a required field missing"
    );

    let header = "ts,flow_id,src_ip,src_port,dst_ip,dst_port,proto,proto_num,community_id\r\n";
    let row = "2020-06-10T09:19:54.740079000Z,2d272b48ffac6655,192.168.1.11,43966,2001:db8::1,53,udp,17,\"1:a,b\"\r\n";
    assert_eq!(check_csv(kind, &format!("{header}{row}")), Ok(1));
    assert!(
        check_csv(
            kind,
            &format!("{}{row}", header.replace("proto_num", "protocol"))
        )
        .is_err()
    );
    assert!(check_csv(kind, &format!("{header}{}", row.replace(",17,", ",x,"))).is_err());
    assert!(check_csv(kind, &format!("{header}{}", row.replace(",17,", ",,"))).is_err());
    assert!(
        check_csv(
            kind,
            &format!("{header}{}", row.replace("192.168.1.11", "host"))
        )
        .is_err()
    );
    assert!(
        check_csv(
            kind,
            &format!("{header}{}", row.replace(".740079000Z", "Z"))
        )
        .is_err()
    );

    let zeek = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n\
                #path\tcommunity-id\n\
                #fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tproto_num\tcommunity_id\n\
                #types\ttime\tstring\taddr\tport\taddr\tport\tstring\tcount\tstring\n\
                1591780794.740079\t2d272b48ffac6655\t192.168.1.11\t43966\t2001:db8::1\t53\tudp\t17\t1:x\n";
    assert_eq!(check_zeek(kind, zeek), Ok(1));
    assert!(check_zeek(kind, &zeek.replace("\tcount\t", "\tint\t")).is_err());
    assert!(check_zeek(kind, &zeek.replace("\t53\t", "\t70000\t")).is_err());
    assert!(check_zeek(kind, &zeek.replace("\t17\t", "\t-\t")).is_err());

    // a Parquet file whose src_port is signed
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.parquet");
    let cols: Vec<arrow_schema::Field> = kind
        .fields
        .iter()
        .map(|f| {
            let t = if f.name == "src_port" {
                DataType::Int64
            } else {
                arrow_type(f.ty)
            };
            arrow_schema::Field::new(f.name, t, f.nullable)
        })
        .collect();
    let sch = std::sync::Arc::new(arrow_schema::Schema::new(cols));
    let w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), sch, None)
        .unwrap();
    w.close().unwrap();
    let e = check_parquet(kind, &path).unwrap_err();
    assert!(e.contains("src_port"), "{e}");
}
