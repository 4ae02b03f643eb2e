//! A borrowed view of one pmacct record: the JSON object parsed once, its
//! values kept as the exact text the producer wrote.
//!
//! Keeping the text is what makes labels right (`443` stays `"443"`, `1.50`
//! stays `"1.50"`) and makes the metric value free to write: a JSON number is
//! already a valid import value.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::bytes;
use crate::error::RecordError;
use crate::records::Records;
use crate::time;
use crate::zone::{StampZone, UTC};

/// One field's value, as written in the record.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// A JSON string, unescaped.
    Str(Cow<'a, str>),
    /// A JSON number, as its original text (`9000`, `1.5`, `1e3`).
    Number(&'a str),
    Bool(bool),
    Null,
    /// An object or array, as its JSON text.
    Other(&'a str),
}

impl<'a> Value<'a> {
    /// The string, for a JSON string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number, for a JSON number or a string holding a decimal number.
    pub fn as_f64(&self) -> Option<f64> {
        let f = match self {
            Value::Number(n) => n.parse::<f64>().ok()?,
            Value::Str(s) => s.trim().parse::<f64>().ok()?,
            _ => return None,
        };
        f.is_finite().then_some(f)
    }

    /// The value as a label: strings as they are, everything else as its
    /// JSON text (`443` → `443`, `true` → `true`, `null` → `null`).
    pub fn as_label(&self) -> &str {
        match self {
            Value::Str(s) => s,
            Value::Number(n) | Value::Other(n) => n,
            Value::Bool(true) => "true",
            Value::Bool(false) => "false",
            Value::Null => "null",
        }
    }
}

/// One field of a record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Field<'a> {
    key: Cow<'a, str>,
    value: Value<'a>,
    /// The value as label text, when it and the key can be written between
    /// quotes as they are (no escaping): decided once, while parsing, so
    /// that writing labels tests one pointer instead of dispatching on the
    /// value's kind (a jump table that predicts badly when kinds alternate).
    plain_label: Option<&'a str>,
}

impl<'a> Field<'a> {
    fn new(key: Cow<'a, str>, value: Value<'a>) -> Self {
        // Borrowed text came out of the parsers unescaped, which they only
        // do for strings without `\`, quotes or control characters; `Field`
        // is private, so nothing else can put a borrowed string here.
        let plain_label = match (&key, &value) {
            (Cow::Owned(_), _) | (_, Value::Str(Cow::Owned(_)) | Value::Other(_)) => None,
            (_, Value::Str(Cow::Borrowed(s))) => Some(*s),
            (_, Value::Number(n)) => Some(*n),
            (_, Value::Bool(true)) => Some("true"),
            (_, Value::Bool(false)) => Some("false"),
            (_, Value::Null) => Some("null"),
        };
        Field {
            key,
            value,
            plain_label,
        }
    }
}

/// Fields in the order the producer wrote them.
pub(crate) type Fields<'a> = Vec<Field<'a>>;

/// A parsed record: its fields in the order the producer wrote them.
#[derive(Debug)]
pub struct Record<'a> {
    fields: Fields<'a>,
    /// The record as received and, inside a chunk, the records after it:
    /// label text borrowed from the record can be copied 16 bytes at a
    /// time from here, past its end too (see `bytes::append_strings`).
    readable: &'a [u8],
    /// Some field owns its text (the serde_json path unescaped it).
    owns: bool,
    /// How stamps without an offset are read (`STAMP_TIMEZONE`).
    zone: &'a StampZone,
}

impl<'a> Record<'a> {
    /// Parse one JSON object. The only error reasons are `invalid_json` and
    /// `not_an_object`. Its stamps without an offset are read as UTC.
    pub fn parse(payload: &'a [u8]) -> Result<Self, RecordError> {
        // The fast path only fills the room there is (see `parse_flat`).
        let mut fields = Vec::with_capacity(16);
        let owns = Self::parse_into(payload, &mut fields)?;
        Ok(Record {
            fields,
            readable: payload,
            owns,
            zone: &UTC,
        })
    }

    /// The same record with its stamps without an offset read in `zone`.
    pub fn in_zone(self, zone: &'a StampZone) -> Self {
        Record { zone, ..self }
    }

    /// Parse `payload` into a vector the caller reuses from record to
    /// record; `readable` starts with `payload` (the rest of the chunk).
    pub(crate) fn parse_reusing(
        payload: &'a [u8],
        readable: &'a [u8],
        zone: &'a StampZone,
        mut fields: Fields<'a>,
    ) -> Result<Self, (RecordError, Fields<'a>)> {
        debug_assert!(readable.as_ptr() == payload.as_ptr() && readable.len() >= payload.len());
        fields.clear();
        match Self::parse_into(payload, &mut fields) {
            Ok(owns) => Ok(Record {
                fields,
                readable,
                owns,
                zone,
            }),
            Err(e) => Err((e, fields)),
        }
    }

    /// Parse each record of `records` in turn (`None` for one that is no
    /// JSON object), reusing one field vector: for a host or a tool that
    /// reads the fields of many records. Stamps without an offset read as
    /// UTC.
    pub fn each(records: Records<'a>, mut f: impl FnMut(usize, Option<&Record<'a>>)) {
        let mut fields = Vec::with_capacity(16);
        for i in 0..records.len() {
            let (payload, rest) = records.get_with_rest(i);
            match Self::parse_reusing(payload, rest, &UTC, fields) {
                Ok(record) => {
                    f(i, Some(&record));
                    fields = record.into_fields();
                }
                Err((_, emptied)) => {
                    fields = emptied;
                    f(i, None);
                }
            }
        }
    }

    /// The field vector, emptied, for the next record.
    #[inline]
    pub(crate) fn into_fields(mut self) -> Fields<'a> {
        if self.owns {
            self.fields.clear();
        } else {
            // SAFETY: shortening a vector is sound whatever it holds (the
            // elements are forgotten, not dropped), and fields of the fast
            // path only borrow, so nothing leaks. `clear` would walk every
            // field to find nothing to free: in WASM a loop with a time
            // check per field.
            unsafe { self.fields.set_len(0) };
        }
        self.fields
    }

    /// Whether some field owns its text.
    fn parse_into(payload: &'a [u8], fields: &mut Fields<'a>) -> Result<bool, RecordError> {
        // pmacct writes flat objects of plain strings and numbers: read those
        // directly; anything else (escapes, nesting, errors) takes the full
        // serde_json path, which also words the error.
        if parse_flat(payload, fields).is_some() {
            return Ok(false);
        }
        parse_slow(payload, fields).map(|()| true)
    }

    /// The field's value. With a repeated key the last one wins, as in
    /// most JSON readers.
    // Inlined with `number_text` and `require`: in a WASM module each call
    // is a time check and spills the caller's registers. Only the three
    // together save time there (15-20 ns a record of the default rules);
    // native code is the same either way.
    #[inline(always)]
    pub fn get(&self, name: &str) -> Option<&Value<'a>> {
        self.fields
            .iter()
            .rev()
            .find(|f| bytes::eq(f.key.as_bytes(), name.as_bytes()))
            .map(|f| &f.value)
    }

    /// Every field, in the producer's order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Value<'a>)> {
        self.fields.iter().map(|f| (f.key.as_ref(), &f.value))
    }

    /// Every field as (name, value as a label, and, when both can be
    /// written between quotes as they are, that label text).
    pub(crate) fn labels(&self) -> impl Iterator<Item = (&str, &Value<'a>, Option<&str>)> {
        self.fields
            .iter()
            .map(|f| (f.key.as_ref(), &f.value, f.plain_label))
    }

    /// Bytes that start with the record's and that plain label text,
    /// borrowed from the record, can be read from past its end.
    pub(crate) fn readable(&self) -> &'a [u8] {
        self.readable
    }

    /// A string field, or `missing_field` / `wrong_type`.
    pub fn str(&self, name: &str) -> Result<&str, RecordError> {
        match self.require(name)? {
            Value::Str(s) => Ok(s),
            other => Err(RecordError::new(
                "wrong_type",
                format!(
                    "field {name:?} is {} where a string was expected",
                    kind(other)
                ),
            )),
        }
    }

    /// A numeric field, or `missing_field` / `non_numeric_value`.
    pub fn number(&self, name: &str) -> Result<f64, RecordError> {
        let v = self.require(name)?;
        v.as_f64().ok_or_else(|| non_numeric(name, v))
    }

    /// A numeric field kept as the exact text to write as a sample value:
    /// no float round trip for JSON numbers. A number too large for a
    /// 64-bit float (`1e309`) is `bad_number`: a store would make it +Inf.
    #[inline(always)] // see `get`
    pub fn number_text(&self, name: &str) -> Result<crate::SampleValue<'_>, RecordError> {
        match self.require(name)? {
            Value::Number(n) if bytes::may_overflow(n.as_bytes()) => overflowing(name, n),
            Value::Number(n) => Ok(crate::SampleValue::Text(n)),
            v => v
                .as_f64()
                .map(crate::SampleValue::F64)
                .ok_or_else(|| non_numeric(name, v)),
        }
    }

    /// A timestamp field in milliseconds since the epoch: pmacct's
    /// `YYYY-MM-DD HH:MM:SS` (optional fraction and offset; without an
    /// offset in the host's `STAMP_TIMEZONE`, UTC by default) or epoch
    /// seconds (`timestamps_since_epoch: true`, number or string, optional
    /// fraction).
    pub fn timestamp_ms(&self, name: &str) -> Result<i64, RecordError> {
        let v = self.require(name)?;
        let parsed = match v {
            Value::Str(s) => time::parse_timestamp_in(s, self.zone),
            Value::Number(n) => time::parse_epoch_seconds_ms(n),
            _ => None,
        };
        parsed.ok_or_else(|| {
            RecordError::new(
                "invalid_timestamp",
                format!(
                    "field {name:?} = {} is neither 'YYYY-MM-DD HH:MM:SS' nor epoch seconds",
                    v.as_label()
                ),
            )
        })
    }

    #[inline(always)] // see `get`
    fn require(&self, name: &str) -> Result<&Value<'a>, RecordError> {
        self.get(name)
            .ok_or_else(|| RecordError::new("missing_field", format!("no field {name:?}")))
    }
}

fn kind(v: &Value<'_>) -> &'static str {
    match v {
        Value::Str(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
        Value::Other(_) => "an object or array",
    }
}

/// A number text that may be too large for a 64-bit float: itself if it
/// is not, else `bad_number`.
#[cold]
#[inline(never)]
fn overflowing<'v>(name: &str, n: &'v str) -> Result<crate::SampleValue<'v>, RecordError> {
    if n.parse::<f64>().is_ok_and(f64::is_finite) {
        return Ok(crate::SampleValue::Text(n));
    }
    Err(RecordError::new(
        "bad_number",
        format!("field {name:?} = {n} is out of the range of a 64-bit float"),
    ))
}

fn non_numeric(name: &str, v: &Value<'_>) -> RecordError {
    RecordError::new(
        "non_numeric_value",
        format!("field {name:?} = {} is not a number", v.as_label()),
    )
}

/// Kept out of line: inlined, the fallback's code crowds the fast path's
/// registers (Cranelift spilled the loop's state to the stack).
#[cold]
#[inline(never)]
fn parse_slow<'a>(payload: &'a [u8], fields: &mut Fields<'a>) -> Result<(), RecordError> {
    fields.clear();
    let text = std::str::from_utf8(payload)
        .map_err(|e| RecordError::new("invalid_json", format!("not UTF-8: {e}")))?;
    parse_serde(text, fields)
}

/// Visits the top-level object, pushing each field without building a tree.
/// The full parser: any JSON, with serde_json's error messages.
fn parse_serde<'a>(text: &'a str, fields: &mut Fields<'a>) -> Result<(), RecordError> {
    let first = text.trim_start().as_bytes().first().copied();
    if first != Some(b'{') {
        if first.is_some() && serde_json::from_str::<de::IgnoredAny>(text).is_ok() {
            return Err(RecordError::new(
                "not_an_object",
                "the record is valid JSON but not an object",
            ));
        }
        return Err(RecordError::new(
            "invalid_json",
            "the record does not start with '{'",
        ));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    FieldsSeed(fields)
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| RecordError::new("invalid_json", e.to_string()))
}

/// The fast path for flat objects: string values without escapes, numbers,
/// `true`, `false`, `null`. `None` for anything else, valid or not.
///
/// It accepts exactly what a JSON parser accepts for such objects (RFC 8259
/// whitespace, number grammar, no control characters in strings, UTF-8).
/// It reads bytes: text outside strings must be ASCII to be accepted, and a
/// string is checked for UTF-8 only when it holds a byte ≥ 0x80, so a
/// record of ASCII is read in one pass.
///
/// Its loop makes no call and holds no inner loop (in a module either is a
/// place where the time check may call out, and Cranelift then kept the
/// loop's state on the stack, not in registers: a third of the parser's
/// instructions were stack loads and stores). So it declines, to the slow
/// path, what would need one: a vector without room for another field
/// (the slow path grows it, and the records after fit), three whitespace
/// bytes in a row, numbers of over 24 digits, and in a module strings of
/// over 64 bytes or with a byte ≥ 0x80.
fn parse_flat<'a>(b: &'a [u8], fields: &mut Fields<'a>) -> Option<()> {
    let mut i = skip_ws(b, 0)?;
    if *b.get(i)? != b'{' {
        return None;
    }
    i = skip_ws(b, i + 1)?;
    if *b.get(i)? == b'}' {
        return (skip_ws(b, i + 1)? == b.len()).then_some(());
    }
    loop {
        if *b.get(i)? != b'"' || fields.len() == fields.capacity() {
            return None;
        }
        let (key, key_end) = string_at(b, i + 1)?;
        // `": "` or `":` (pmacct writes one of them) in one two-byte test;
        // anything else the general way.
        i = match bytes::load2(b, key_end + 1) {
            Some(KEY_SEP_SPACE) => key_end + 3,
            Some(w) if w as u8 == b':' => key_end + 2,
            _ => {
                let colon = skip_ws(b, key_end + 1)?;
                if *b.get(colon)? != b':' {
                    return None;
                }
                colon + 1
            }
        };
        i = skip_ws(b, i)?;
        let (value, text, end) = value_at(b, i)?;
        fields.push(Field {
            key: Cow::Borrowed(key),
            value,
            plain_label: Some(text),
        });
        // `, "` or `,"` before the next key, likewise.
        i = match bytes::load2(b, end) {
            Some(NEXT_SEP_SPACE) => end + 2,
            Some(w) if w as u8 == b',' => end + 1,
            _ => {
                let after = skip_ws(b, end)?;
                match *b.get(after)? {
                    b',' => skip_ws(b, after + 1)?,
                    b'}' => return (skip_ws(b, after + 1)? == b.len()).then_some(()),
                    _ => return None,
                }
            }
        };
        i = skip_ws(b, i)?;
    }
}

/// The value starting at `i`: the value, its label text, and where it
/// ends. Inlined into the parser's loop, which must make no call.
///
/// Strings and numbers first, as an if-chain: a jump table on the first
/// byte predicts badly when the two alternate. The label text is known
/// here, without a second dispatch on the value's kind.
#[inline(always)]
fn value_at(b: &[u8], i: usize) -> Option<(Value<'_>, &str, usize)> {
    let c = *b.get(i)?;
    if c == b'"' {
        let (s, e) = string_at(b, i + 1)?;
        Some((Value::Str(Cow::Borrowed(s)), s, e + 1))
    } else if c.is_ascii_digit() || c == b'-' {
        let e = number_end(b, i)?;
        let n = bytes::ascii_str(&b[i..e]);
        Some((Value::Number(n), n, e))
    } else {
        literal(&b[i..]).map(|(v, text)| (v, text, i + text.len()))
    }
}

const KEY_SEP_SPACE: u16 = u16::from_le_bytes(*b": ");
const NEXT_SEP_SPACE: u16 = u16::from_le_bytes(*b", ");

/// `true`, `false` or `null` at the start of `b`, and its text.
fn literal(b: &[u8]) -> Option<(Value<'static>, &'static str)> {
    if b.starts_with(b"true") {
        Some((Value::Bool(true), "true"))
    } else if b.starts_with(b"false") {
        Some((Value::Bool(false), "false"))
    } else if b.starts_with(b"null") {
        Some((Value::Null, "null"))
    } else {
        None
    }
}

/// The first non-whitespace index from `i`, after none, one or two
/// whitespace bytes; `None` (decline) after more: no loop (see
/// `parse_flat`). pmacct writes one space at most.
#[inline(always)]
fn skip_ws(b: &[u8], i: usize) -> Option<usize> {
    let ws = |i: usize| matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r'));
    if !ws(i) {
        return Some(i);
    }
    if !ws(i + 1) {
        return Some(i + 1);
    }
    (!ws(i + 2)).then_some(i + 2)
}

/// The text of a string starting at `from` and the index of its closing
/// quote, if the string holds no escape and no control character and is
/// UTF-8.
#[inline(always)]
fn string_at(b: &[u8], from: usize) -> Option<(&str, usize)> {
    let rest = b.get(from..)?;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        // Loop-free, and no call for bytes ≥ 0x80 (see `parse_flat`).
        let at = bytes::first_special_near(b, from)?;
        (rest[at] == b'"').then(|| (bytes::ascii_str(&rest[..at]), from + at))
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        let at = bytes::first_special::<true>(rest)?;
        if rest[at] == b'"' {
            return Some((bytes::ascii_str(&rest[..at]), from + at));
        }
        non_ascii_string_at(rest, at).map(|(text, end)| (text, from + end))
    }
}

/// The rest of `string_at` for a string with a byte ≥ 0x80 at `at` (or an
/// escape or control byte, which it declines): rare in pmacct records,
/// kept out of the parser's loop.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[cold]
#[inline(never)]
fn non_ascii_string_at(rest: &[u8], at: usize) -> Option<(&str, usize)> {
    if rest[at] < 0x80 {
        return None;
    }
    let end = at + bytes::first_special::<false>(&rest[at..])?;
    if rest[end] != b'"' {
        return None;
    }
    let text = std::str::from_utf8(&rest[..end]).ok()?;
    Some((text, end))
}

/// The end of a JSON number starting at `i` (RFC 8259 grammar), and a
/// token boundary after it.
fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |b: &[u8], i: usize| {
        let end = bytes::digits_end(b, i);
        (end > i).then_some(end)
    };
    if b[i] == b'-' {
        i += 1;
    }
    match b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(b, i)?,
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        i = digits(b, i + 1)?;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        i = digits(b, i)?;
    }
    Some(i)
}

struct FieldsSeed<'v, 'a>(&'v mut Fields<'a>);

impl<'de, 'v> DeserializeSeed<'de> for FieldsSeed<'v, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'v> Visitor<'de> for FieldsSeed<'v, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let raw: &'de RawValue = map.next_value()?;
            let value = classify(raw.get()).map_err(de::Error::custom)?;
            self.0.push(Field::new(key.0, value));
        }
        Ok(())
    }
}

/// A key, borrowed from the input unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

fn classify(raw: &str) -> Result<Value<'_>, serde_json::Error> {
    Ok(match raw.as_bytes()[0] {
        b'"' => {
            let inner = &raw[1..raw.len() - 1];
            if inner.contains('\\') {
                Value::Str(Cow::Owned(serde_json::from_str::<String>(raw)?))
            } else {
                Value::Str(Cow::Borrowed(inner))
            }
        }
        b't' => Value::Bool(true),
        b'f' => Value::Bool(false),
        b'n' => Value::Null,
        b'{' | b'[' => Value::Other(raw),
        _ => Value::Number(raw),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path reads exactly what serde_json reads, and declines
    /// (leaving the record to serde_json) whatever it does not handle.
    #[test]
    fn flat_path_agrees_with_serde_json() {
        let cases: &[&str] = &[
            r#"{"event_type": "purge", "ip_src": "10.0.0.1", "port_src": 443, "bytes": 9000}"#,
            r#"{"a":1,"b":-0,"c":1.50,"d":-2.5e-3,"e":1E9,"f":true,"g":false,"h":null,"i":""}"#,
            " \t\r\n{ \"a\" :\t\"x y\" ,\"b\":0 } \n",
            "{}",
            r#"{"a":"é ü 北京","long":"0123456789abcdefghijklmnopqrstuvwxyz0123456789"}"#,
            r#"{"a":1,"a":2}"#,
            // Not for the fast path: serde_json decides.
            r#"{"a":"x\"y"}"#,
            r#"{"k\u0041":1}"#,
            r#"{"a":[1,2],"b":{"c":1}}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":tru}"#,
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            r#"{"a" 1}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":1"#,
            r#"{"a":"unterminated}"#,
            "[1]",
            "",
        ];
        for case in cases {
            let mut fast = Vec::with_capacity(16);
            let mut slow = Vec::new();
            let slow_result = parse_serde(case, &mut slow);
            if parse_flat(case.as_bytes(), &mut fast).is_some() {
                assert!(slow_result.is_ok(), "fast path accepted {case:?}");
                assert_eq!(fast, slow, "{case:?}");
                assert!(
                    fast.iter().all(|f| matches!(f.key, Cow::Borrowed(_))
                        && !matches!(f.value, Value::Str(Cow::Owned(_)))),
                    "{case:?}"
                );
            }
            // Through the public entry point the outcome is serde_json's.
            let public = Record::parse(case.as_bytes());
            assert_eq!(public.is_ok(), slow_result.is_ok(), "{case:?}");
            if let (Ok(r), Ok(())) = (&public, &slow_result) {
                assert_eq!(r.fields, slow, "{case:?}");
            }
        }
        // The common pmacct shape takes the fast path.
        let mut f = Vec::with_capacity(16);
        assert!(parse_flat(cases[0].as_bytes(), &mut f).is_some());
        f.clear();
        assert!(parse_flat(cases[1].as_bytes(), &mut f).is_some());
    }

    /// The fast path fills the room the vector has and declines a record
    /// that needs more; the slow path then grows it, so that the records
    /// after it, reusing the vector, fit.
    #[test]
    fn a_record_wider_than_the_vector_grows_it_once() {
        let wide: String = (0..40)
            .map(|k| format!(r#""f{k}": {k}"#))
            .collect::<Vec<_>>()
            .join(", ");
        let wide = format!("{{{wide}}}");
        let mut fields = Vec::with_capacity(16);
        assert!(parse_flat(wide.as_bytes(), &mut fields).is_none());
        fields.clear();
        let r = Record::parse_reusing(wide.as_bytes(), wide.as_bytes(), &UTC, fields).unwrap();
        assert_eq!(r.fields.len(), 40);
        assert_eq!(r.get("f39"), Some(&Value::Number("39")));
        let mut fields = r.into_fields();
        assert!(fields.capacity() >= 40);
        assert!(parse_flat(wide.as_bytes(), &mut fields).is_some());
        assert_eq!(fields.len(), 40);
    }

    /// The same agreement on bytes: pmacct-like records with a few bytes
    /// replaced by ones that matter to a JSON reader (quotes, escapes,
    /// digits, signs, whitespace, control and non-ASCII bytes, invalid
    /// UTF-8), many thousands of them, deterministically.
    #[test]
    fn flat_path_agrees_with_serde_json_on_damaged_records() {
        const BASE: &[u8] = "{\"event_type\": \"purge\", \"ip_src\": \"10.0.0.1\", \"port_src\": 443, \"x\": -1.5e3, \"t\": true, \"n\": null, \"u\": \"\u{e9}t\u{e9}\", \"bytes\": 9000}".as_bytes();
        const BYTES: &[u8] = b"\"\\{}[]:, \t\n0129-+.eEtfnulx\x00\x1f\x7f\x80\xbf\xc3\xe2\xff";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut fast_taken, mut rejected) = (0, 0);
        for _ in 0..40_000 {
            let mut rec = BASE.to_vec();
            for _ in 0..1 + next() % 3 {
                let at = (next() % rec.len() as u64) as usize;
                let byte = BYTES[(next() % BYTES.len() as u64) as usize];
                match next() % 3 {
                    0 => rec[at] = byte,
                    1 => rec.insert(at, byte),
                    _ => {
                        rec.remove(at);
                    }
                }
            }
            let mut slow = Vec::new();
            let slow_result = std::str::from_utf8(&rec)
                .map_err(|_| ())
                .and_then(|t| parse_serde(t, &mut slow).map_err(|_| ()));
            let mut fast = Vec::with_capacity(16);
            if parse_flat(&rec, &mut fast).is_some() {
                fast_taken += 1;
                assert!(
                    slow_result.is_ok(),
                    "fast path accepted {:?}",
                    String::from_utf8_lossy(&rec)
                );
                assert_eq!(fast, slow, "{:?}", String::from_utf8_lossy(&rec));
            }
            let public = Record::parse(&rec);
            assert_eq!(
                public.is_ok(),
                slow_result.is_ok(),
                "{:?}",
                String::from_utf8_lossy(&rec)
            );
            rejected += usize::from(public.is_err());
        }
        // Both outcomes were exercised, not just one.
        assert!(
            fast_taken > 5_000 && rejected > 5_000,
            "{fast_taken} fast, {rejected} rejected"
        );
    }

    #[test]
    fn keeps_number_text_and_unescapes_strings() {
        let r =
            Record::parse(br#"{"a": 443, "b": "x\"y", "c": 1.50, "d": true, "e": null, "f": [1]}"#)
                .unwrap();
        assert_eq!(r.get("a"), Some(&Value::Number("443")));
        assert_eq!(r.get("b").unwrap().as_label(), "x\"y");
        assert_eq!(r.get("c").unwrap().as_label(), "1.50");
        assert_eq!(r.get("d").unwrap().as_label(), "true");
        assert_eq!(r.get("e").unwrap().as_label(), "null");
        assert_eq!(r.get("f").unwrap().as_label(), "[1]");
        assert_eq!(r.number("c").unwrap(), 1.5);
    }

    #[test]
    fn rejects_what_is_not_an_object() {
        assert_eq!(Record::parse(b"[1,2]").unwrap_err().reason, "not_an_object");
        assert_eq!(Record::parse(b"42").unwrap_err().reason, "not_an_object");
        assert_eq!(
            Record::parse(b"{\"a\":").unwrap_err().reason,
            "invalid_json"
        );
        assert_eq!(Record::parse(b"").unwrap_err().reason, "invalid_json");
        assert_eq!(Record::parse(b"{} x").unwrap_err().reason, "invalid_json");
        assert_eq!(
            Record::parse(&[0xff, 0xfe]).unwrap_err().reason,
            "invalid_json"
        );
    }

    #[test]
    fn typed_getters_name_the_field() {
        let r = Record::parse(br#"{"bytes": "lots", "ip": 1}"#).unwrap();
        let e = r.number("bytes").unwrap_err();
        assert_eq!(e.reason, "non_numeric_value");
        assert!(e.detail.contains("bytes"), "{}", e.detail);
        assert_eq!(r.number("packets").unwrap_err().reason, "missing_field");
        assert_eq!(r.str("ip").unwrap_err().reason, "wrong_type");
    }
}
