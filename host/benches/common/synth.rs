//! Deterministic, realistic pmacct records (about 300 bytes, written the way
//! pmacct's Kafka plugin writes them) for benchmarks.

// Each benchmark uses what it needs of this.
#![allow(dead_code)]

use std::io::Write;

/// Append record number `i` to `out` (no newline).
pub fn record(i: u64, out: &mut Vec<u8>) {
    // A small multiplicative hash: deterministic, varied, no RNG dependency.
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16;
    let protos = ["tcp", "udp", "icmp"];
    let proto = protos[(i % 3) as usize];
    let port_dst = [443, 80, 53, 123, 22, 8080][(h % 6) as usize];
    let packets = 1 + h % 500;
    let bytes = packets * (40 + (h >> 9) % 1460);
    let minute = (i / 1000) % 60;
    let _ = write!(
        out,
        "{{\"event_type\": \"purge\", \"ip_src\": \"10.{}.{}.{}\", \"ip_dst\": \"192.168.{}.{}\", \
         \"port_src\": {}, \"port_dst\": {}, \"ip_proto\": \"{}\", \"tos\": {}, \
         \"stamp_inserted\": \"2026-11-25 10:{:02}:00\", \"stamp_updated\": \"2026-11-25 10:{:02}:{:02}\", \
         \"packets\": {}, \"bytes\": {}, \"writer_id\": \"default_kafka/{}\"}}",
        i % 7,
        (i / 7) % 250,
        1 + i % 200,
        i % 5,
        1 + (h >> 20) % 250,
        1024 + (h >> 3) % 60000,
        port_dst,
        proto,
        (h >> 30) % 4 * 8,
        minute,
        minute,
        i % 60,
        packets,
        bytes,
        4242 + i % 4,
    );
}

/// `n` records back to back, with their end offsets (the transform's input).
pub fn batch(first: u64, n: usize) -> (Vec<u8>, Vec<u32>) {
    let mut bytes = Vec::with_capacity(n * 320);
    let mut ends = Vec::with_capacity(n);
    for i in 0..n as u64 {
        record(first + i, &mut bytes);
        ends.push(bytes.len() as u32);
    }
    (bytes, ends)
}

/// pmacct's Avro schema for [`record`]'s fields (`plugin_cmn_avro.c`: the
/// primitives in its order, optional stamps and counters, `writer_id` last).
pub const AVRO_SCHEMA: &str = r#"{"type": "record", "name": "acct_data", "fields": [
  {"name": "ip_src", "type": "string"}, {"name": "ip_dst", "type": "string"},
  {"name": "port_src", "type": "long"}, {"name": "port_dst", "type": "long"},
  {"name": "ip_proto", "type": "string"}, {"name": "tos", "type": "long"},
  {"name": "stamp_inserted", "type": ["null", "string"]}, {"name": "stamp_updated", "type": ["null", "string"]},
  {"name": "packets", "type": ["null", "long"]}, {"name": "flows", "type": ["null", "long"]},
  {"name": "bytes", "type": ["null", "long"]}, {"name": "writer_id", "type": "string"}]}"#;

/// Record number `i` as an Avro datum of [`AVRO_SCHEMA`] (no framing): the
/// same record [`record`] writes as JSON.
pub fn avro_record(i: u64, schema: &apache_avro::Schema) -> Vec<u8> {
    use apache_avro::types::Value as A;
    let mut text = Vec::new();
    record(i, &mut text);
    let json: serde_json::Value = serde_json::from_slice(&text).expect("synth JSON");
    let apache_avro::Schema::Record(r) = schema else {
        panic!("AVRO_SCHEMA is a record")
    };
    let value = |name: &str, s: &apache_avro::Schema| {
        let v = &json[name];
        let plain = |s: &apache_avro::Schema| match s {
            apache_avro::Schema::String => A::String(v.as_str().expect(name).into()),
            _ => A::Long(v.as_i64().expect(name)),
        };
        match s {
            apache_avro::Schema::Union(_) if v.is_null() => A::Union(0, Box::new(A::Null)),
            apache_avro::Schema::Union(u) => A::Union(1, Box::new(plain(&u.variants()[1]))),
            s => plain(s),
        }
    };
    let fields = r
        .fields
        .iter()
        .map(|f| (f.name.clone(), value(&f.name, &f.schema)))
        .collect();
    apache_avro::to_avro_datum(schema, A::Record(fields)).expect("encode")
}
