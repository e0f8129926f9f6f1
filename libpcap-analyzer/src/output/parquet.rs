//! Parquet files, through the Apache Arrow crates: a column builder per
//! field, a row group written every [`ROW_GROUP`] rows (memory stays
//! bounded), zstd compression. Times are UTC nanosecond timestamps,
//! durations `f64` seconds, addresses text, lists Arrow lists.

use super::format::RecordWriter;
use super::row::Value;
use super::schema::{Kind, Ty};
use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampNanosecondBuilder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field as ArrowField, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use std::io::{self, Write};
use std::sync::Arc;

/// Rows per row group.
pub const ROW_GROUP: usize = 65_536;

/// Fields whose values are (nearly) all different from one record to the
/// next: a dictionary of them only costs (it fills up, falls back to plain
/// values and leaves its pages in the file), so they are written plain;
/// times and durations too. The DNS answers and their TTLs also: their
/// dictionary cost 2.9 bytes per DNS record more than zstd over plain
/// values. Measured on `gen-pcap.py --mix dns --packets 1000000 --flows
/// 300000`: 64.3 → 57.1 bytes per DNS record, 61.4 → 54.5 per flow record.
const NO_DICTIONARY: &[&str] = &[
    "flow_id",
    "community_id",
    "src_port",
    "trans_id",
    "answers",
    "ttls",
];

/// `true` when a dictionary is worth trying for `field` (see
/// [`NO_DICTIONARY`]).
fn dictionary_worth(field: &super::schema::Field) -> bool {
    !matches!(field.ty, Ty::Time | Ty::Duration) && !NO_DICTIONARY.contains(&field.name)
}

/// One column being filled.
enum Col {
    Bool(BooleanBuilder),
    U64(UInt64Builder),
    I64(Int64Builder),
    F64(Float64Builder),
    Str(StringBuilder),
    Time(TimestampNanosecondBuilder),
    StrList(ListBuilder<StringBuilder>),
    U64List(ListBuilder<UInt64Builder>),
}

fn data_type(t: Ty) -> DataType {
    match t {
        Ty::Bool => DataType::Boolean,
        Ty::U64 => DataType::UInt64,
        Ty::I64 => DataType::Int64,
        Ty::F64 | Ty::Duration => DataType::Float64,
        Ty::Str | Ty::Ip => DataType::Utf8,
        Ty::Time => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        Ty::StrList => DataType::List(Arc::new(ArrowField::new("item", DataType::Utf8, true))),
        Ty::U64List => DataType::List(Arc::new(ArrowField::new("item", DataType::UInt64, true))),
    }
}

impl Col {
    fn new(t: Ty) -> Col {
        match t {
            Ty::Bool => Col::Bool(BooleanBuilder::new()),
            Ty::U64 => Col::U64(UInt64Builder::new()),
            Ty::I64 => Col::I64(Int64Builder::new()),
            Ty::F64 | Ty::Duration => Col::F64(Float64Builder::new()),
            Ty::Str | Ty::Ip => Col::Str(StringBuilder::new()),
            Ty::Time => Col::Time(TimestampNanosecondBuilder::new().with_timezone("UTC")),
            Ty::StrList => Col::StrList(ListBuilder::new(StringBuilder::new())),
            Ty::U64List => Col::U64List(ListBuilder::new(UInt64Builder::new())),
        }
    }

    fn push(&mut self, v: &Value<'_>) {
        match (self, v) {
            (Col::Bool(b), Value::Bool(x)) => b.append_value(*x),
            (Col::U64(b), Value::U64(x)) => b.append_value(*x),
            (Col::I64(b), Value::I64(x)) => b.append_value(*x),
            (Col::F64(b), Value::F64(x)) => b.append_value(*x),
            (Col::F64(b), Value::Duration(ns)) => b.append_value(*ns as f64 / 1e9),
            (Col::Str(b), Value::Str(s)) => b.append_value(String::from_utf8_lossy(s)),
            (Col::Str(b), Value::Ip(ip)) => b.append_value(ip.to_string()),
            (Col::Time(b), Value::Time(t)) => b.append_value(t.as_nanos()),
            (Col::StrList(b), Value::StrList(l)) => {
                for s in l.strs() {
                    b.values().append_value(String::from_utf8_lossy(s));
                }
                b.append(true);
            }
            (Col::U64List(b), Value::U64List(l)) => {
                for x in l.u64s() {
                    b.values().append_value(x);
                }
                b.append(true);
            }
            // null, or (never after `decode`) a value of another type
            (Col::Bool(b), _) => b.append_null(),
            (Col::U64(b), _) => b.append_null(),
            (Col::I64(b), _) => b.append_null(),
            (Col::F64(b), _) => b.append_null(),
            (Col::Str(b), _) => b.append_null(),
            (Col::Time(b), _) => b.append_null(),
            (Col::StrList(b), _) => b.append(false),
            (Col::U64List(b), _) => b.append(false),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Col::Bool(b) => Arc::new(b.finish()),
            Col::U64(b) => Arc::new(b.finish()),
            Col::I64(b) => Arc::new(b.finish()),
            Col::F64(b) => Arc::new(b.finish()),
            Col::Str(b) => Arc::new(b.finish()),
            Col::Time(b) => Arc::new(b.finish()),
            Col::StrList(b) => Arc::new(b.finish()),
            Col::U64List(b) => Arc::new(b.finish()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Col::Bool(b) => b.len(),
            Col::U64(b) => b.len(),
            Col::I64(b) => b.len(),
            Col::F64(b) => b.len(),
            Col::Str(b) => b.len(),
            Col::Time(b) => b.len(),
            Col::StrList(b) => b.len(),
            Col::U64List(b) => b.len(),
        }
    }
}

/// The Arrow schema of a record kind.
pub fn arrow_schema(kind: &Kind) -> Schema {
    Schema::new(
        kind.fields
            .iter()
            .map(|f| ArrowField::new(f.name, data_type(f.ty), f.nullable))
            .collect::<Vec<_>>(),
    )
    .with_metadata(std::collections::HashMap::from([
        ("pal.kind".to_string(), kind.name.to_string()),
        (
            "pal.schema_version".to_string(),
            super::schema::VERSION.to_string(),
        ),
    ]))
}

/// A Parquet file being written.
pub(super) struct Parquet<W: Write + Send> {
    schema: Arc<Schema>,
    cols: Vec<Col>,
    writer: ArrowWriter<W>,
}

fn pq_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("parquet: {e}"))
}

impl<W: Write + Send> Parquet<W> {
    pub(super) fn new(kind: &'static Kind, out: W) -> io::Result<Self> {
        let schema = Arc::new(arrow_schema(kind));
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(pq_err)?))
            .set_max_row_group_row_count(Some(ROW_GROUP));
        for f in kind.fields.iter().filter(|f| !dictionary_worth(f)) {
            // a list's values are the leaf column `NAME.list.item`
            let path = match f.ty {
                Ty::StrList | Ty::U64List => ColumnPath::from(vec![
                    f.name.to_string(),
                    "list".to_string(),
                    "item".to_string(),
                ]),
                _ => ColumnPath::from(f.name),
            };
            props = props.set_column_dictionary_enabled(path, false);
        }
        let props = props.build();
        let writer = ArrowWriter::try_new(out, schema.clone(), Some(props)).map_err(pq_err)?;
        Ok(Parquet {
            cols: kind.fields.iter().map(|f| Col::new(f.ty)).collect(),
            schema,
            writer,
        })
    }

    fn flush_group(&mut self) -> io::Result<()> {
        if self.cols.first().is_none_or(|c| c.len() == 0) {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self.cols.iter_mut().map(Col::finish).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(pq_err)?;
        self.writer.write(&batch).map_err(pq_err)?;
        self.writer.flush().map_err(pq_err)
    }
}

impl<W: Write + Send> RecordWriter for Parquet<W> {
    fn write_row(&mut self, row: &[Value<'_>]) -> io::Result<()> {
        for (c, v) in self.cols.iter_mut().zip(row) {
            c.push(v);
        }
        if self.cols.first().is_some_and(|c| c.len() >= ROW_GROUP) {
            self.flush_group()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.flush_group()?;
        let mut out = self.writer.into_inner().map_err(pq_err)?;
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::format::{Format, writer};
    use crate::output::row::{RowBuf, decode};
    use crate::output::schema::DNS;
    use arrow_array::Array;
    use libpcap_tools::Timestamp;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn rows_read_back_with_their_types_across_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dns.parquet");
        let f = std::fs::File::create(&path).unwrap();
        let mut w = writer(Format::Parquet, &DNS, std::io::BufWriter::new(f)).unwrap();
        let n = ROW_GROUP + 10;
        let key = libpcap_tools::FiveTuple {
            src: "10.0.0.1".parse().unwrap(),
            dst: "2001:db8::53".parse().unwrap(),
            src_port: 5353,
            dst_port: 53,
            proto: 17,
        };
        let msg = |b: Vec<u8>, ts: i64| crate::plugins::dns::Message {
            ts: Some(Timestamp(ts)),
            msg: crate::proto::dns::parse_dns_message(&b).unwrap(),
        };
        let addrs = ["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap()];
        for i in 0..n as u64 {
            let id = (i % 65536) as u16;
            let q = msg(
                crate::build::dns_query(id, "example.org", 1),
                i as i64 * 1000,
            );
            let r = msg(
                crate::build::dns_response(id, "example.org", 1, 0, &addrs, 60),
                i as i64 * 1000 + 500,
            );
            let mut row = RowBuf::new(&DNS);
            // every other one unanswered: nulls in the response columns
            let response = (i % 2 == 1).then_some(&r);
            crate::plugins::dns::fill_row(
                &mut row,
                libpcap_tools::FlowId(i),
                &key,
                Some(&q),
                response,
            );
            let bytes = row.finish().unwrap().to_vec();
            let mut vals = Vec::new();
            decode(&DNS, &bytes, &mut vals).unwrap();
            w.write_row(&vals).unwrap();
        }
        w.finish().unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let b = ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
        assert_eq!(b.metadata().num_row_groups(), 2);
        // no dictionary for the flow id, times and durations; one for the
        // names (the same query in every row)
        let rg = b.metadata().row_group(0);
        let dictionary = |name: &str| {
            let c = rg
                .columns()
                .iter()
                .find(|c| c.column_path().string() == name)
                .unwrap_or_else(|| panic!("no column {name}"));
            c.dictionary_page_offset().is_some()
        };
        for name in [
            "flow_id",
            "ts",
            "rtt",
            "trans_id",
            "src_port",
            "answers.list.item",
            "ttls.list.item",
        ] {
            assert!(!dictionary(name), "{name}");
        }
        for name in ["query", "qtype_name", "dst_ip", "answer_types.list.item"] {
            assert!(dictionary(name), "{name}");
        }
        let mut rows = 0;
        for batch in b.build().unwrap() {
            let batch = batch.unwrap();
            rows += batch.num_rows();
            let ts = batch.column(0);
            assert_eq!(
                ts.data_type(),
                &DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
            );
            let edns_do = batch.column(DNS.index("edns_do").unwrap());
            assert_eq!(edns_do.null_count(), batch.num_rows());
            let rcode = batch.column(DNS.index("rcode").unwrap());
            assert_eq!(rcode.null_count(), batch.num_rows() / 2);
            let answers = batch.column(DNS.index("answers").unwrap());
            assert_eq!(
                answers.data_type(),
                &DataType::List(Arc::new(ArrowField::new("item", DataType::Utf8, true)))
            );
        }
        assert_eq!(rows, n);
    }
}
