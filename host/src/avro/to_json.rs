//! One Avro datum (binary encoding) written as the JSON object pmacct's
//! `kafka_output: json` would have written for the same record, straight
//! into the chunk's buffer: no value tree, no allocation per record.
//!
//! The schema is parsed by the `apache-avro` crate and compiled once into
//! a [`Program`]: each field's key pre-rendered, each type a node that
//! reads its bytes and writes its JSON. What makes the JSON pmacct's:
//! - a union holding null (pmacct's optional stamps and counters) writes
//!   nothing when null: pmacct's JSON leaves such fields out;
//! - `acct_data` records (flows) start with `"event_type": "purge"`, which
//!   pmacct's JSON writes and its Avro schema lacks;
//! - a top-level `custom_primitives` map is written as top-level fields, as
//!   pmacct's JSON writes custom primitives;
//! - separators are pmacct's (`", "`, `": "`).

use apache_avro::schema::{Name, RecordSchema, ResolvedSchema, Schema};
use pmacct_guest_sdk::write_json_str;

/// Why a datum could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

fn err<T>(what: &str) -> Result<T, DecodeError> {
    Err(DecodeError(what.to_string()))
}

/// Named types nest at most this deep (a schema referring to itself
/// would otherwise compile forever).
const MAX_DEPTH: usize = 32;

/// A schema compiled for writing JSON.
#[derive(Debug)]
pub struct Program {
    root: Node,
    /// The record's name (`acct_data`, `acct_init`, `acct_close`).
    pub name: String,
}

#[derive(Debug)]
enum Node {
    Null,
    Boolean,
    Int,
    Float,
    Double,
    Bytes,
    String,
    Fixed(usize),
    /// Each symbol as a JSON string.
    Enum(Vec<Box<[u8]>>),
    Array(Box<Node>),
    Map(Box<Node>),
    Union(Vec<Node>),
    Record(Record),
}

#[derive(Debug)]
struct Record {
    fields: Vec<Field>,
    /// Written before the fields (`"event_type": "purge", `).
    prefix: &'static [u8],
}

#[derive(Debug)]
struct Field {
    /// `"name": `.
    key: Box<[u8]>,
    node: Node,
    /// A map whose entries are written as fields of the enclosing record.
    flatten: bool,
}

impl Program {
    /// Compile a record schema. `Err` names what is not supported.
    pub fn compile(schema: &Schema) -> Result<Program, String> {
        let resolved = ResolvedSchema::try_from(schema).map_err(|e| e.to_string())?;
        let names = resolved.get_names();
        let Schema::Record(r) = schema else {
            return Err("the schema is not a record".into());
        };
        let lookup = |n: &Name| names.get(n).copied();
        let mut root = record(r, &lookup, 0, true)?;
        let has_event_type = r.fields.iter().any(|f| f.name == "event_type");
        if r.name.name == "acct_data" && !has_event_type {
            root.prefix = br#""event_type": "purge", "#;
        }
        Ok(Program {
            root: Node::Record(root),
            name: r.name.name.clone(),
        })
    }

    /// Read one datum from the front of `input` (advancing it) and append
    /// its JSON object to `out`. On error `out` may hold part of it.
    pub fn write(&self, input: &mut &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
        // Nothing in the input may make the output grow without bound (an
        // array of a billion nulls is 10 bytes of Avro).
        let limit = out.len() + 64 * input.len() + 4096;
        let mut r = Reader { input, limit };
        write_node(&self.root, &mut r, out)
    }
}

type Lookup<'a, 's> = dyn Fn(&Name) -> Option<&'s Schema> + 'a;

fn record(
    r: &RecordSchema,
    lookup: &Lookup<'_, '_>,
    depth: usize,
    top: bool,
) -> Result<Record, String> {
    let mut fields = Vec::with_capacity(r.fields.len());
    for f in &r.fields {
        let node = compile(&f.schema, lookup, depth + 1)?;
        let mut key = Vec::with_capacity(f.name.len() + 4);
        write_json_str(&mut key, &f.name);
        key.extend_from_slice(b": ");
        let flatten = top && f.name == "custom_primitives" && matches!(node, Node::Map(_));
        fields.push(Field {
            key: key.into(),
            node,
            flatten,
        });
    }
    Ok(Record {
        fields,
        prefix: b"",
    })
}

fn compile(s: &Schema, lookup: &Lookup<'_, '_>, depth: usize) -> Result<Node, String> {
    if depth > MAX_DEPTH {
        return Err("named types nest too deep (a recursive schema?)".into());
    }
    Ok(match s {
        Schema::Null => Node::Null,
        Schema::Boolean => Node::Boolean,
        Schema::Int | Schema::Long | Schema::Date | Schema::TimeMillis | Schema::TimeMicros => {
            Node::Int
        }
        Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Node::Int,
        Schema::Float => Node::Float,
        Schema::Double => Node::Double,
        Schema::Bytes | Schema::BigDecimal => Node::Bytes,
        Schema::String | Schema::Uuid => Node::String,
        Schema::Fixed(f) => Node::Fixed(f.size),
        Schema::Duration => Node::Fixed(12),
        Schema::Decimal(d) => compile(&d.inner, lookup, depth + 1)?,
        Schema::Enum(e) => Node::Enum(
            e.symbols
                .iter()
                .map(|sym| {
                    let mut q = Vec::new();
                    write_json_str(&mut q, sym);
                    q.into()
                })
                .collect(),
        ),
        Schema::Array(a) => Node::Array(Box::new(compile(&a.items, lookup, depth + 1)?)),
        Schema::Map(m) => Node::Map(Box::new(compile(&m.types, lookup, depth + 1)?)),
        Schema::Union(u) => Node::Union(
            u.variants()
                .iter()
                .map(|v| compile(v, lookup, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Schema::Record(r) => Node::Record(record(r, lookup, depth + 1, false)?),
        Schema::Ref { name } => {
            let target = lookup(name).ok_or_else(|| format!("unknown type {}", name.name))?;
            compile(target, lookup, depth + 1)?
        }
    })
}

/// The input not read yet, and how large the output may grow.
struct Reader<'a, 'b> {
    input: &'a mut &'b [u8],
    limit: usize,
}

impl<'b> Reader<'_, 'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], DecodeError> {
        if n > self.input.len() {
            return err("the datum ends early");
        }
        let (head, tail) = self.input.split_at(n);
        *self.input = tail;
        Ok(head)
    }

    /// A zig-zag varint (`int` and `long`).
    #[inline]
    fn long(&mut self) -> Result<i64, DecodeError> {
        let mut v: u64 = 0;
        for (i, &b) in self.input.iter().enumerate().take(10) {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                *self.input = &self.input[i + 1..];
                return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
            }
        }
        err("a number runs past the datum or past 10 bytes")
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        usize::try_from(self.long()?).or_else(|_| err("a negative length"))
    }

    fn check_room(&self, out: &[u8]) -> Result<(), DecodeError> {
        if out.len() > self.limit {
            return err("the datum expands beyond 64 times its size");
        }
        Ok(())
    }
}

fn write_node(node: &Node, r: &mut Reader<'_, '_>, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    match node {
        Node::Null => out.extend_from_slice(b"null"),
        Node::Boolean => match r.take(1)?[0] {
            0 => out.extend_from_slice(b"false"),
            1 => out.extend_from_slice(b"true"),
            _ => return err("a boolean is neither 0 nor 1"),
        },
        Node::Int => out.extend_from_slice(itoa::Buffer::new().format(r.long()?).as_bytes()),
        Node::Float => {
            let b = r.take(4)?;
            write_float(out, f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
        }
        Node::Double => {
            let b: [u8; 8] = r.take(8)?.try_into().or_else(|_| err("a double"))?;
            write_float(out, f64::from_le_bytes(b));
        }
        Node::String => {
            let n = r.len()?;
            let s = std::str::from_utf8(r.take(n)?).or_else(|_| err("a string is not UTF-8"))?;
            write_json_str(out, s);
        }
        Node::Bytes => {
            let n = r.len()?;
            write_latin1(out, r.take(n)?);
        }
        Node::Fixed(n) => write_latin1(out, r.take(*n)?),
        Node::Enum(symbols) => {
            let i = r.len()?;
            out.extend_from_slice(symbols.get(i).ok_or(DecodeError("an enum index".into()))?);
        }
        Node::Union(branches) => {
            let i = r.len()?;
            let branch = branches.get(i).ok_or(DecodeError("a union index".into()))?;
            write_node(branch, r, out)?;
        }
        Node::Array(items) => write_blocks(r, out, b'[', b']', |r, out| write_node(items, r, out))?,
        Node::Map(values) => {
            write_blocks(r, out, b'{', b'}', |r, out| write_entry(values, r, out))?
        }
        Node::Record(rec) => {
            out.push(b'{');
            write_fields(rec, r, out)?;
            out.push(b'}');
        }
    }
    Ok(())
}

/// The fields of a record, without its braces; a null in a union is left
/// out (pmacct's JSON has no such field).
fn write_fields(
    rec: &Record,
    r: &mut Reader<'_, '_>,
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    out.extend_from_slice(rec.prefix);
    let mut first = true;
    for f in &rec.fields {
        let node = match &f.node {
            Node::Union(branches) => {
                let i = r.len()?;
                match branches.get(i) {
                    Some(Node::Null) => continue,
                    Some(b) => b,
                    None => return err("a union index"),
                }
            }
            Node::Null => continue,
            n => n,
        };
        if f.flatten {
            if let Node::Map(values) = node {
                write_flattened(values, r, out, &mut first)?;
                continue;
            }
        }
        if !first {
            out.extend_from_slice(b", ");
        }
        first = false;
        out.extend_from_slice(&f.key);
        write_node(node, r, out)?;
    }
    if first && !rec.prefix.is_empty() {
        // `"event_type": "purge", ` before no field: drop the separator.
        out.truncate(out.len() - 2);
    }
    Ok(())
}

/// Array and map blocks: a count (negative: followed by the block's size
/// in bytes), items, until a count of 0.
fn write_blocks(
    r: &mut Reader<'_, '_>,
    out: &mut Vec<u8>,
    open: u8,
    close: u8,
    mut item: impl FnMut(&mut Reader<'_, '_>, &mut Vec<u8>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    out.push(open);
    let mut first = true;
    loop {
        let mut count = r.long()?;
        if count == 0 {
            break;
        }
        if count < 0 {
            count = count
                .checked_neg()
                .ok_or(DecodeError("a block count".into()))?;
            r.long()?;
        }
        for _ in 0..count {
            if !first {
                out.extend_from_slice(b", ");
            }
            first = false;
            item(r, out)?;
            r.check_room(out)?;
        }
    }
    out.push(close);
    Ok(())
}

fn write_entry(
    values: &Node,
    r: &mut Reader<'_, '_>,
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    write_node(&Node::String, r, out)?;
    out.extend_from_slice(b": ");
    write_node(values, r, out)
}

/// A map's entries as fields of the enclosing record.
fn write_flattened(
    values: &Node,
    r: &mut Reader<'_, '_>,
    out: &mut Vec<u8>,
    first: &mut bool,
) -> Result<(), DecodeError> {
    loop {
        let mut count = r.long()?;
        if count == 0 {
            return Ok(());
        }
        if count < 0 {
            count = count
                .checked_neg()
                .ok_or(DecodeError("a block count".into()))?;
            r.long()?;
        }
        for _ in 0..count {
            if !*first {
                out.extend_from_slice(b", ");
            }
            *first = false;
            write_entry(values, r, out)?;
            r.check_room(out)?;
        }
    }
}

/// JSON has no NaN or infinity: `null`, as jansson would refuse them.
fn write_float(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Bytes as Avro's JSON encoding writes them: each byte a code point.
fn write_latin1(out: &mut Vec<u8>, bytes: &[u8]) {
    let s: String = bytes.iter().map(|&b| char::from(b)).collect();
    write_json_str(out, &s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::to_avro_datum;
    use apache_avro::types::Value as V;

    const ACCT_DATA: &str = include_str!("../../../examples/pmacct/avro/acct_data.avsc");

    fn program(schema: &str) -> (Schema, Program) {
        let s = Schema::parse_str(schema).unwrap();
        let p = Program::compile(&s).unwrap();
        (s, p)
    }

    fn json(p: &Program, mut datum: &[u8]) -> String {
        let mut out = Vec::new();
        p.write(&mut datum, &mut out).unwrap();
        assert!(datum.is_empty(), "{} bytes left", datum.len());
        String::from_utf8(out).unwrap()
    }

    fn some(v: V) -> V {
        V::Union(1, Box::new(v))
    }

    /// pmacctd's record (STACK.md, as it arrives with kafka_output: json)
    /// encoded with pmacct's schema comes out as exactly that text.
    #[test]
    fn a_pmacct_record_is_the_json_pmacct_writes() {
        let (schema, p) = program(ACCT_DATA);
        let record = V::Record(vec![
            ("ip_src".into(), V::String("10.0.0.3".into())),
            ("ip_dst".into(), V::String("10.0.0.4".into())),
            ("port_src".into(), V::Long(2222)),
            ("port_dst".into(), V::Long(53)),
            ("ip_proto".into(), V::String("udp".into())),
            (
                "stamp_inserted".into(),
                some(V::String("2025-01-01 00:00:00".into())),
            ),
            (
                "stamp_updated".into(),
                some(V::String("2026-11-25 19:46:40".into())),
            ),
            ("packets".into(), some(V::Long(5))),
            ("flows".into(), V::Union(0, Box::new(V::Null))),
            ("bytes".into(), some(V::Long(1000))),
            ("writer_id".into(), V::String("default_kafka/7424".into())),
        ]);
        let datum = to_avro_datum(&schema, record).unwrap();
        assert_eq!(
            json(&p, &datum),
            r#"{"event_type": "purge", "ip_src": "10.0.0.3", "ip_dst": "10.0.0.4", "port_src": 2222, "port_dst": 53, "ip_proto": "udp", "stamp_inserted": "2025-01-01 00:00:00", "stamp_updated": "2026-11-25 19:46:40", "packets": 5, "bytes": 1000, "writer_id": "default_kafka/7424"}"#
        );
    }

    const EVERY_TYPE: &str = r#"{"type": "record", "name": "acct_data", "namespace": "t", "fields": [
        {"name": "b", "type": "boolean"}, {"name": "i", "type": "int"}, {"name": "l", "type": "long"},
        {"name": "f", "type": "float"}, {"name": "d", "type": "double"}, {"name": "by", "type": "bytes"},
        {"name": "s", "type": "string"}, {"name": "fx", "type": {"type": "fixed", "name": "two", "size": 2}},
        {"name": "e", "type": {"type": "enum", "name": "dir", "symbols": ["ingress", "egress"]}},
        {"name": "a", "type": {"type": "array", "items": "long"}},
        {"name": "m", "type": {"type": "map", "values": "string"}},
        {"name": "r", "type": {"type": "record", "name": "inner", "fields": [{"name": "x", "type": ["null", "long"]}]}},
        {"name": "r2", "type": "inner"},
        {"name": "u", "type": ["null", "long", "string"]},
        {"name": "n", "type": "null"},
        {"name": "custom_primitives", "type": {"type": "map", "values": "string"}}
    ]}"#;

    /// Every Avro type, escapes, a named type used twice, a record's null
    /// optional fields left out (nested records too), custom primitives as
    /// top-level fields.
    #[test]
    fn every_type() {
        let (schema, p) = program(EVERY_TYPE);
        let inner = |x: V| V::Record(vec![("x".into(), x)]);
        let record = V::Record(vec![
            ("b".into(), V::Boolean(true)),
            ("i".into(), V::Int(-7)),
            ("l".into(), V::Long(i64::MAX)),
            ("f".into(), V::Float(1.5)),
            ("d".into(), V::Double(f64::NAN)),
            ("by".into(), V::Bytes(vec![0, b'"', 0xe9])),
            ("s".into(), V::String("é \"q\" \\ \n".into())),
            ("fx".into(), V::Fixed(2, vec![b'a', b'b'])),
            ("e".into(), V::Enum(1, "egress".into())),
            ("a".into(), V::Array(vec![V::Long(1), V::Long(-2)])),
            (
                "m".into(),
                V::Map([("k".to_string(), V::String("v".into()))].into()),
            ),
            ("r".into(), inner(V::Union(0, Box::new(V::Null)))),
            ("r2".into(), inner(some(V::Long(3)))),
            ("u".into(), V::Union(2, Box::new(V::String("x".into())))),
            ("n".into(), V::Null),
            (
                "custom_primitives".into(),
                V::Map([("vrf".to_string(), V::String("blue".into()))].into()),
            ),
        ]);
        let datum = to_avro_datum(&schema, record).unwrap();
        assert_eq!(
            json(&p, &datum),
            r#"{"event_type": "purge", "b": true, "i": -7, "l": 9223372036854775807, "f": 1.5, "d": null, "by": "\u0000\"é", "s": "é \"q\" \\ \n", "fx": "ab", "e": "egress", "a": [1, -2], "m": {"k": "v"}, "r": {}, "r2": {"x": 3}, "u": "x", "vrf": "blue"}"#
        );
        let text = json(&p, &datum);
        serde_json::from_str::<serde_json::Value>(&text).unwrap();
    }

    /// A datum cut anywhere, or changed in any byte, is an error or some
    /// other JSON object, never a panic; and a count of a billion nulls
    /// stops at the output limit instead of writing gigabytes.
    #[test]
    fn damaged_datums_fail_cleanly() {
        let (schema, p) = program(EVERY_TYPE);
        let record = V::Record(vec![
            ("b".into(), V::Boolean(false)),
            ("i".into(), V::Int(1)),
            ("l".into(), V::Long(2)),
            ("f".into(), V::Float(0.0)),
            ("d".into(), V::Double(2.5)),
            ("by".into(), V::Bytes(vec![])),
            ("s".into(), V::String("abc".into())),
            ("fx".into(), V::Fixed(2, vec![1, 2])),
            ("e".into(), V::Enum(0, "ingress".into())),
            ("a".into(), V::Array(vec![V::Long(5)])),
            ("m".into(), V::Map(Default::default())),
            (
                "r".into(),
                V::Record(vec![("x".into(), V::Union(0, Box::new(V::Null)))]),
            ),
            (
                "r2".into(),
                V::Record(vec![("x".into(), V::Union(0, Box::new(V::Null)))]),
            ),
            ("u".into(), V::Union(0, Box::new(V::Null))),
            ("n".into(), V::Null),
            ("custom_primitives".into(), V::Map(Default::default())),
        ]);
        let datum = to_avro_datum(&schema, record).unwrap();
        for cut in 0..datum.len() {
            let mut input = &datum[..cut];
            assert!(
                p.write(&mut input, &mut Vec::new()).is_err(),
                "cut at {cut}"
            );
        }
        for i in 0..datum.len() {
            for b in [0u8, 0x7f, 0x80, 0xff] {
                let mut bad = datum.clone();
                bad[i] = b;
                let mut input = &bad[..];
                let mut out = Vec::new();
                if p.write(&mut input, &mut out).is_ok() {
                    serde_json::from_slice::<serde_json::Value>(&out).unwrap();
                }
            }
        }
        let (_, nulls) = program(
            r#"{"type": "record", "name": "n", "fields": [{"name": "a", "type": {"type": "array", "items": "null"}}]}"#,
        );
        // One block of 2^40 nulls: 7 bytes.
        let mut input: &[u8] = &[0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 0];
        let e = nulls.write(&mut input, &mut Vec::new()).unwrap_err();
        assert!(e.0.contains("64 times"), "{e}");
    }
}
