//! Records as compact bytes: what plugins fill ([`RowBuf`]), what the
//! spools keep, and what the format writers read back ([`Value`]).
//!
//! A row is its values in field order, each a tag byte and a payload
//! (integers as LEB128 varints, signed ones zigzagged; times and floats as
//! eight little-endian bytes; texts and lists with a varint length).
//! Decoding never panics: a damaged row gives
//! [`RowError`].

use super::schema::{Kind, Ty};
use libpcap_tools::Timestamp;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const U64: u8 = 3;
const I64: u8 = 4;
const F64: u8 = 5;
const STR: u8 = 6;
const IP4: u8 = 7;
const IP6: u8 = 8;
const TIME: u8 = 9;
const DURATION: u8 = 10;
const STR_LIST: u8 = 11;
const U64_LIST: u8 = 12;

#[inline]
fn put_varint(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        // lengths, counts, small numbers: most values
        out.push(v as u8);
    } else {
        put_long_varint(out, v);
    }
}

/// [`varint`] pushed straight into the row: the values of every record
/// pass here, and pushing measured faster than building the array.
#[inline(never)]
fn put_long_varint(out: &mut Vec<u8>, mut v: u64) {
    out.reserve(10);
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The LEB128 bytes of `v` (at most 10), for the list counts of the rows
/// and the spool's run entries.
pub(super) struct Varint {
    bytes: [u8; 10],
    len: usize,
}

impl Varint {
    /// The encoded bytes.
    pub(super) fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&self.bytes)
    }
}

/// Encodes `v` (see [`Varint`]).
#[inline]
pub(super) fn varint(mut v: u64) -> Varint {
    let mut bytes = [0u8; 10];
    let mut len = 0;
    while v >= 0x80 {
        if let Some(b) = bytes.get_mut(len) {
            *b = (v as u8) | 0x80;
        }
        v >>= 7;
        len += 1;
    }
    if let Some(b) = bytes.get_mut(len) {
        *b = v as u8;
    }
    Varint {
        bytes,
        len: len + 1,
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A row being filled, value by value in the kind's field order.
///
/// The setters append; [`RowBuf::finish`] checks (in debug builds, by
/// assertion in tests) that the row has as many values as its kind has
/// fields. Cheap to reuse: [`RowBuf::clear`] keeps the buffer.
#[derive(Debug, Clone)]
pub struct RowBuf {
    kind: &'static Kind,
    bytes: Vec<u8>,
    values: usize,
    list: Option<(usize, u64)>,
    /// Where [`RowBuf::str_list_with`] writes each item.
    scratch: String,
}

impl RowBuf {
    /// An empty row of `kind`.
    pub fn new(kind: &'static Kind) -> RowBuf {
        RowBuf {
            kind,
            bytes: Vec::with_capacity(256),
            values: 0,
            list: None,
            scratch: String::new(),
        }
    }

    /// The kind of the row.
    pub fn kind(&self) -> &'static Kind {
        self.kind
    }

    /// Empties the row for the next record.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.values = 0;
        self.list = None;
    }

    /// The encoded row, once every field has its value (`None` otherwise:
    /// a plugin bug, which the spool counts instead of writing a bad row).
    pub fn finish(&self) -> Option<&[u8]> {
        (self.values == self.kind.fields.len() && self.list.is_none()).then_some(&self.bytes)
    }

    fn tag(&mut self, t: u8) -> &mut Self {
        self.bytes.push(t);
        self.values += 1;
        self
    }

    /// A null value.
    pub fn null(&mut self) -> &mut Self {
        self.tag(NULL)
    }

    /// A boolean.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.tag(if v { TRUE } else { FALSE })
    }

    /// An unsigned integer.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.tag(U64);
        put_varint(&mut self.bytes, v);
        self
    }

    /// A signed integer.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.tag(I64);
        put_varint(&mut self.bytes, zigzag(v));
        self
    }

    /// A float.
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.tag(F64);
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A text.
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.tag(STR);
        put_varint(&mut self.bytes, v.len() as u64);
        self.bytes.extend_from_slice(v.as_bytes());
        self
    }

    /// A flow id: its 16 lowercase hex digits, as text.
    pub fn flow_id(&mut self, id: u64) -> &mut Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.tag(STR);
        let mut text = [16u8; 17];
        for (i, c) in text[1..].iter_mut().enumerate() {
            *c = HEX[((id >> ((15 - i) * 4)) & 0xf) as usize];
        }
        self.bytes.extend_from_slice(&text);
        self
    }

    /// A text or null.
    pub fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(s) => self.str(s),
            None => self.null(),
        }
    }

    /// An unsigned integer or null.
    pub fn opt_u64(&mut self, v: Option<u64>) -> &mut Self {
        match v {
            Some(x) => self.u64(x),
            None => self.null(),
        }
    }

    /// A boolean or null.
    pub fn opt_bool(&mut self, v: Option<bool>) -> &mut Self {
        match v {
            Some(x) => self.bool(x),
            None => self.null(),
        }
    }

    /// An address.
    pub fn ip(&mut self, v: IpAddr) -> &mut Self {
        match v {
            IpAddr::V4(a) => {
                self.tag(IP4);
                self.bytes.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                self.tag(IP6);
                self.bytes.extend_from_slice(&a.octets());
            }
        }
        self
    }

    /// A time.
    pub fn time(&mut self, v: Timestamp) -> &mut Self {
        // eight bytes as they are: a time since the epoch in ns needs nine
        // as a varint, pushed one by one
        self.tag(TIME);
        self.bytes.extend_from_slice(&v.as_nanos().to_le_bytes());
        self
    }

    /// A time or null.
    pub fn opt_time(&mut self, v: Option<Timestamp>) -> &mut Self {
        match v {
            Some(t) => self.time(t),
            None => self.null(),
        }
    }

    /// A duration in nanoseconds.
    pub fn duration(&mut self, ns: i64) -> &mut Self {
        self.tag(DURATION);
        put_varint(&mut self.bytes, zigzag(ns));
        self
    }

    /// A list of texts.
    pub fn str_list<'s>(&mut self, items: impl IntoIterator<Item = &'s str>) -> &mut Self {
        self.tag(STR_LIST);
        let at = self.bytes.len();
        // the count is patched in once known (at most 10 varint bytes)
        self.bytes.extend_from_slice(&[0; 10]);
        let mut n = 0u64;
        for s in items {
            put_varint(&mut self.bytes, s.len() as u64);
            self.bytes.extend_from_slice(s.as_bytes());
            n += 1;
        }
        self.patch_count(at, n);
        self
    }

    /// A list of texts that `write` appends, one per item, to the string
    /// it is given (so that no item needs a string of its own).
    pub fn str_list_with<T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        mut write: impl FnMut(T, &mut String),
    ) -> &mut Self {
        self.tag(STR_LIST);
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&[0; 10]);
        let mut n = 0u64;
        let mut s = std::mem::take(&mut self.scratch);
        for item in items {
            s.clear();
            write(item, &mut s);
            put_varint(&mut self.bytes, s.len() as u64);
            self.bytes.extend_from_slice(s.as_bytes());
            n += 1;
        }
        self.scratch = s;
        self.patch_count(at, n);
        self
    }

    /// A list of unsigned integers.
    pub fn u64_list(&mut self, items: impl IntoIterator<Item = u64>) -> &mut Self {
        self.tag(U64_LIST);
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&[0; 10]);
        let mut n = 0u64;
        for v in items {
            put_varint(&mut self.bytes, v);
            n += 1;
        }
        self.patch_count(at, n);
        self
    }

    /// Writes `n` as a varint in place of the 10 bytes reserved at `at`.
    fn patch_count(&mut self, at: usize, n: u64) {
        let count = varint(n);
        let c = count.as_slice();
        let len = c.len();
        // the count takes `len` of the 10 bytes reserved: close the gap
        let end = self.bytes.len();
        if at + 10 <= end {
            self.bytes.copy_within(at + 10..end, at + len);
            self.bytes.truncate(end - (10 - len));
            if let Some(dst) = self.bytes.get_mut(at..at + len) {
                dst.copy_from_slice(c);
            }
        }
    }
}

/// A damaged row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("damaged row at byte {0}")]
pub struct RowError(pub usize);

/// One decoded value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// Null.
    Null,
    /// A boolean.
    Bool(bool),
    /// An unsigned integer.
    U64(u64),
    /// A signed integer.
    I64(i64),
    /// A float.
    F64(f64),
    /// A text: the UTF-8 bytes that [`RowBuf::str`] took as a `&str`
    /// (the text formats copy and escape bytes, so they are not checked
    /// again; a damaged row may give other bytes, never a panic).
    Str(&'a [u8]),
    /// An address.
    Ip(IpAddr),
    /// A time.
    Time(Timestamp),
    /// A duration, nanoseconds.
    Duration(i64),
    /// A list of texts.
    StrList(List<'a>),
    /// A list of unsigned integers.
    U64List(List<'a>),
}

impl Value<'_> {
    /// `true` for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The type of the value (`None` for null).
    pub fn ty(&self) -> Option<Ty> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(_) => Ty::Bool,
            Value::U64(_) => Ty::U64,
            Value::I64(_) => Ty::I64,
            Value::F64(_) => Ty::F64,
            Value::Str(_) => Ty::Str,
            Value::Ip(_) => Ty::Ip,
            Value::Time(_) => Ty::Time,
            Value::Duration(_) => Ty::Duration,
            Value::StrList(_) => Ty::StrList,
            Value::U64List(_) => Ty::U64List,
        })
    }
}

/// The items of an encoded list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct List<'a> {
    len: u64,
    bytes: &'a [u8],
}

impl<'a> List<'a> {
    /// Number of items.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// `true` without items.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The items of a text list, as the bytes of [`Value::Str`] (stops at
    /// damage).
    pub fn strs(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut c = Cursor {
            bytes: self.bytes,
            at: 0,
        };
        (0..self.len).map_while(move |_| c.str().ok())
    }

    /// The items of an integer list (stops at damage).
    pub fn u64s(&self) -> impl Iterator<Item = u64> + 'a {
        let mut c = Cursor {
            bytes: self.bytes,
            at: 0,
        };
        (0..self.len).map_while(move |_| c.varint().ok())
    }
}

/// A reading position in an encoded row.
#[derive(Debug, Clone)]
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Result<u8, RowError> {
        let b = *self.bytes.get(self.at).ok_or(RowError(self.at))?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RowError> {
        let end = self.at.checked_add(n).ok_or(RowError(self.at))?;
        let s = self.bytes.get(self.at..end).ok_or(RowError(self.at))?;
        self.at = end;
        Ok(s)
    }

    /// The next `N` bytes as an array (floats, times, addresses).
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RowError> {
        let at = self.at;
        self.take(N)?.try_into().map_err(|_| RowError(at))
    }

    fn varint(&mut self) -> Result<u64, RowError> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return Err(RowError(self.at));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(RowError(self.at))
    }

    fn str(&mut self) -> Result<&'a [u8], RowError> {
        let at = self.at;
        let n = usize::try_from(self.varint()?).map_err(|_| RowError(at))?;
        self.take(n)
    }

    /// Skips the items of a list, returning it.
    fn list(&mut self, strings: bool) -> Result<List<'a>, RowError> {
        let len = self.varint()?;
        let start = self.at;
        for _ in 0..len {
            if strings {
                self.str()?;
            } else {
                self.varint()?;
            }
        }
        Ok(List {
            len,
            bytes: self.bytes.get(start..self.at).ok_or(RowError(start))?,
        })
    }

    fn value(&mut self) -> Result<Value<'a>, RowError> {
        let at = self.at;
        Ok(match self.byte()? {
            NULL => Value::Null,
            FALSE => Value::Bool(false),
            TRUE => Value::Bool(true),
            U64 => Value::U64(self.varint()?),
            I64 => Value::I64(unzigzag(self.varint()?)),
            F64 => Value::F64(f64::from_le_bytes(self.array()?)),
            STR => Value::Str(self.str()?),
            IP4 => Value::Ip(IpAddr::V4(Ipv4Addr::from(self.array::<4>()?))),
            IP6 => Value::Ip(IpAddr::V6(Ipv6Addr::from(self.array::<16>()?))),
            TIME => Value::Time(Timestamp(i64::from_le_bytes(self.array()?))),
            DURATION => Value::Duration(unzigzag(self.varint()?)),
            STR_LIST => Value::StrList(self.list(true)?),
            U64_LIST => Value::U64List(self.list(false)?),
            _ => return Err(RowError(at)),
        })
    }
}

/// Decodes the values of one row into `out` (cleared first), checking
/// that there is one per field of `kind`, each of its field's type or null
/// where allowed.
///
/// # Errors
/// [`RowError`] for a damaged row or one that does not fit `kind`.
pub fn decode<'a>(kind: &Kind, row: &'a [u8], out: &mut Vec<Value<'a>>) -> Result<(), RowError> {
    out.clear();
    let mut c = Cursor { bytes: row, at: 0 };
    for field in kind.fields {
        let at = c.at;
        let v = c.value()?;
        match v.ty() {
            None if field.nullable => {}
            Some(t) if t == field.ty => {}
            _ => return Err(RowError(at)),
        }
        out.push(v);
    }
    if c.at != row.len() {
        return Err(RowError(c.at));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::schema::{COMMUNITY_ID, Field, Kind};

    const ALLTYPES: Kind = Kind {
        name: "t",
        file: "t",
        zeek_path: None,
        doc: "test",
        fields: &[
            Field {
                name: "b",
                ty: Ty::Bool,
                nullable: false,
                zeek: None,
                doc: "x",
            },
            Field {
                name: "u",
                ty: Ty::U64,
                nullable: false,
                zeek: None,
                doc: "x",
            },
            Field {
                name: "i",
                ty: Ty::I64,
                nullable: false,
                zeek: None,
                doc: "x",
            },
            Field {
                name: "f",
                ty: Ty::F64,
                nullable: false,
                zeek: None,
                doc: "x",
            },
            Field {
                name: "s",
                ty: Ty::Str,
                nullable: true,
                zeek: None,
                doc: "x",
            },
            Field {
                name: "a",
                ty: Ty::Ip,
                nullable: false,
                zeek: None,
                doc: "x",
            },
            Field {
                name: "a6",
                ty: Ty::Ip,
                nullable: false,
                zeek: None,
                doc: "x",
            },
            Field {
                name: "t",
                ty: Ty::Time,
                nullable: false,
                zeek: None,
                doc: "x",
            },
            Field {
                name: "d",
                ty: Ty::Duration,
                nullable: false,
                zeek: None,
                doc: "x",
            },
            Field {
                name: "ls",
                ty: Ty::StrList,
                nullable: false,
                zeek: None,
                doc: "x",
            },
            Field {
                name: "lu",
                ty: Ty::U64List,
                nullable: false,
                zeek: None,
                doc: "x",
            },
        ],
    };

    #[test]
    fn every_type_goes_through_and_back() {
        let mut r = RowBuf::new(&ALLTYPES);
        r.bool(true)
            .u64(u64::MAX)
            .i64(i64::MIN)
            .f64(-0.25)
            .null()
            .ip("192.0.2.1".parse().unwrap())
            .ip("2001:db8::1".parse().unwrap())
            .time(Timestamp(-1))
            .duration(1_500_000_000)
            .str_list(["a", "", "ü"])
            .u64_list([0, 300, u64::MAX]);
        let bytes = r.finish().unwrap().to_vec();
        let mut v = Vec::new();
        decode(&ALLTYPES, &bytes, &mut v).unwrap();
        assert_eq!(v[0], Value::Bool(true));
        assert_eq!(v[1], Value::U64(u64::MAX));
        assert_eq!(v[2], Value::I64(i64::MIN));
        assert_eq!(v[3], Value::F64(-0.25));
        assert_eq!(v[4], Value::Null);
        assert_eq!(v[7], Value::Time(Timestamp(-1)));
        assert_eq!(v[8], Value::Duration(1_500_000_000));
        let Value::StrList(l) = v[9] else { panic!() };
        assert_eq!(
            l.strs().collect::<Vec<_>>(),
            ["a".as_bytes(), b"", "ü".as_bytes()]
        );
        let Value::U64List(l) = v[10] else { panic!() };
        assert_eq!(l.u64s().collect::<Vec<_>>(), [0, 300, u64::MAX]);
    }

    /// Integers at every varint length boundary, and flow ids as the
    /// 16-digit hex `format!` gives.
    #[test]
    fn varint_boundaries_and_flow_ids_go_through_and_back() {
        const KIND: Kind = Kind {
            name: "t",
            file: "t",
            zeek_path: None,
            doc: "test",
            fields: &[required("n", Ty::U64), required("id", Ty::Str)],
        };
        const fn required(name: &'static str, ty: Ty) -> Field {
            Field {
                name,
                ty,
                nullable: false,
                zeek: None,
                doc: "x",
            }
        }
        let kind = &KIND;
        let mut values: Vec<u64> = (0..64).flat_map(|b| [(1u64 << b) - 1, 1 << b]).collect();
        values.extend([u64::MAX, 0x0123_4567_89ab_cdef]);
        for n in values {
            let mut r = RowBuf::new(kind);
            r.u64(n).flow_id(n);
            let mut v = Vec::new();
            decode(kind, r.finish().unwrap(), &mut v).unwrap();
            assert_eq!(v[0], Value::U64(n));
            assert_eq!(v[1], Value::Str(format!("{n:016x}").as_bytes()), "{n}");
        }
    }

    /// Lists of every count size (one- and two-byte varint counts, empty),
    /// built by `str_list`, `str_list_with` and `u64_list`, decode to their
    /// items and leave the next values in place.
    #[test]
    fn lists_of_any_length_decode_to_their_items() {
        for n in [0usize, 1, 127, 128, 300, 20_000] {
            let items: Vec<String> = (0..n).map(|i| format!("x{i}")).collect();
            for with in [false, true] {
                let mut r = RowBuf::new(&ALLTYPES);
                r.bool(false).u64(1).i64(-1).f64(0.5).str("s");
                r.ip("192.0.2.1".parse().unwrap())
                    .ip("::1".parse().unwrap())
                    .time(Timestamp(7))
                    .duration(3);
                if with {
                    r.str_list_with(0..n, |i, out| {
                        out.push('x');
                        out.push_str(&i.to_string());
                    });
                } else {
                    r.str_list(items.iter().map(String::as_str));
                }
                r.u64_list(0..n as u64);
                let bytes = r.finish().unwrap().to_vec();
                let mut v = Vec::new();
                decode(&ALLTYPES, &bytes, &mut v).unwrap();
                let Value::StrList(l) = v[9] else { panic!() };
                assert!(
                    l.strs().eq(items.iter().map(|i| i.as_bytes())),
                    "{n} {with}"
                );
                let Value::U64List(l) = v[10] else { panic!() };
                assert!(l.u64s().eq(0..n as u64), "{n}");
                assert_eq!(v[8], Value::Duration(3));
            }
        }
    }

    #[test]
    fn times_read_back_whole_at_both_ends_of_the_range() {
        for t in [i64::MIN, -1, 0, 1, 1_700_000_000_123_456_789, i64::MAX] {
            let mut r = RowBuf::new(&COMMUNITY_ID);
            r.time(Timestamp(t))
                .flow_id(0)
                .ip("10.0.0.1".parse().unwrap())
                .u64(1)
                .ip("10.0.0.2".parse().unwrap())
                .u64(2)
                .str("udp")
                .u64(17)
                .str("1:x");
            let mut v = Vec::new();
            decode(&COMMUNITY_ID, r.finish().unwrap(), &mut v).unwrap();
            assert_eq!(v[0], Value::Time(Timestamp(t)));
        }
    }

    #[test]
    fn an_incomplete_row_is_not_finished() {
        let mut r = RowBuf::new(&COMMUNITY_ID);
        r.time(Timestamp(0)).str("x");
        assert!(r.finish().is_none());
    }

    #[test]
    fn damaged_or_mistyped_rows_are_errors_never_panics() {
        let mut r = RowBuf::new(&ALLTYPES);
        r.bool(false)
            .u64(1)
            .i64(-1)
            .f64(1.0)
            .str("abc")
            .ip("10.0.0.1".parse().unwrap())
            .ip("::1".parse().unwrap())
            .time(Timestamp(5))
            .duration(5)
            .str_list(["x"])
            .u64_list([1]);
        let good = r.finish().unwrap().to_vec();
        let mut v = Vec::new();
        for cut in 0..good.len() {
            assert!(
                decode(&ALLTYPES, &good[..cut], &mut v).is_err(),
                "cut {cut}"
            );
        }
        // every single byte changed: an error or another row, never a panic
        for i in 0..good.len() {
            for b in [0u8, 0x7f, 0x80, 0xff, 13] {
                let mut bad = good.clone();
                bad[i] = b;
                let mut w = Vec::new();
                let _ = decode(&ALLTYPES, &bad, &mut w);
            }
        }
        // a value of the wrong type
        let mut r = RowBuf::new(&COMMUNITY_ID);
        r.u64(1);
        for _ in 1..COMMUNITY_ID.fields.len() {
            r.u64(1);
        }
        assert!(decode(&COMMUNITY_ID, r.finish().unwrap(), &mut v).is_err());
    }
}
