//! The request body for a batch's samples, in the output's wire format:
//! import lines as they are or gzip-compressed (`OUTPUT=vm-import`), or a
//! snappy-compressed remote-write `WriteRequest` (`OUTPUT=remote-write`),
//! each written from the samples' structure, with no parse.
//!
//! Encoding is CPU work on a whole batch, done once per batch (never per
//! record) on tokio's blocking pool: off the source thread and off the
//! reactor that carries the requests.

use std::io::Write;

use bytes::Bytes;
use pmacct_guest_sdk::SampleSet;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};

use super::error::Protocol;
use super::remote_write;

/// How batches are written on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// VictoriaMetrics' `/api/v1/import` JSON lines.
    Import { gzip: bool },
    /// Prometheus remote write 1.0, with labels added to every series.
    RemoteWrite { extra_labels: Vec<(String, String)> },
}

/// One batch's request body.
pub struct Encoded {
    pub body: Bytes,
    /// Bytes of the body before compression.
    pub raw_len: usize,
    /// The samples in it, when the format counts them (remote write).
    pub counts: Option<remote_write::Counts>,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot encode the batch: {0}")]
pub struct EncodeError(String);

impl EncodeError {
    pub fn new(why: String) -> Self {
        EncodeError(why)
    }
}

impl Format {
    pub fn protocol(&self) -> Protocol {
        match self {
            Format::Import { .. } => Protocol::VmImport,
            Format::RemoteWrite { .. } => Protocol::RemoteWrite,
        }
    }

    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        let mut set = |name: HeaderName, value: &'static str| {
            h.insert(name, HeaderValue::from_static(value));
        };
        match self {
            Format::Import { gzip } => {
                set(CONTENT_TYPE, "application/stream+json");
                if *gzip {
                    set(CONTENT_ENCODING, "gzip");
                }
            }
            Format::RemoteWrite { .. } => {
                set(CONTENT_TYPE, "application/x-protobuf");
                set(CONTENT_ENCODING, "snappy");
                set(
                    HeaderName::from_static("x-prometheus-remote-write-version"),
                    "0.1.0",
                );
            }
        }
        h
    }

    /// The body for a batch's samples.
    pub fn encode(&self, samples: &SampleSet) -> Result<Encoded, EncodeError> {
        match self {
            Format::Import { gzip } => {
                let mut lines = Vec::with_capacity(samples.text.len() + samples.len() * 80);
                samples.write_import_lines(&mut lines);
                let raw_len = lines.len();
                let body = match gzip {
                    true => self::gzip(&lines)?,
                    false => lines,
                };
                Ok(Encoded {
                    body: body.into(),
                    raw_len,
                    counts: None,
                })
            }
            Format::RemoteWrite { extra_labels } => {
                let mut proto = Vec::with_capacity(samples.text.len() + samples.len() * 24);
                let counts = remote_write::write_request(samples, extra_labels, &mut proto);
                let body = snap::raw::Encoder::new()
                    .compress_vec(&proto)
                    .map_err(|e| EncodeError(format!("snappy: {e}")))?;
                Ok(Encoded {
                    body: body.into(),
                    raw_len: proto.len(),
                    counts: Some(counts),
                })
            }
        }
    }
}

/// Level 1: the import lines repeat their label names on every line, so
/// the fastest level already shrinks them about tenfold (docs/performance.md).
fn gzip(lines: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(lines.len() / 8 + 64),
        flate2::Compression::fast(),
    );
    gz.write_all(lines)
        .and_then(|()| gz.finish())
        .map_err(|e| EncodeError(format!("gzip: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const LINES: &[u8] =
        b"{\"metric\":{\"__name__\":\"bytes\",\"a\":\"1\"},\"values\":[9000],\"timestamps\":[1000]}\n";

    fn samples(lines: &[u8]) -> SampleSet {
        let mut set = SampleSet::default();
        crate::transform::read_import_lines(lines, &mut set).unwrap();
        set
    }

    #[test]
    fn gzip_bodies_decompress_to_the_lines() {
        let e = Format::Import { gzip: true }
            .encode(&samples(LINES))
            .unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&e.body[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, LINES);
        let empty = Format::Import { gzip: true }
            .encode(&SampleSet::default())
            .unwrap();
        assert!(
            !empty.body.is_empty(),
            "a valid gzip stream even when empty"
        );
    }

    #[test]
    fn remote_write_bodies_are_snappy_protobuf() {
        use prost::Message;
        let f = Format::RemoteWrite {
            extra_labels: Vec::new(),
        };
        let e = f.encode(&samples(LINES)).unwrap();
        let proto = snap::raw::Decoder::new().decompress_vec(&e.body).unwrap();
        let req = remote_write::schema::WriteRequest::decode(&proto[..]).unwrap();
        assert_eq!(req.timeseries[0].samples[0].value, 9000.0);
        assert_eq!(e.counts.unwrap().samples, 1);
        assert_eq!(f.headers()["content-encoding"], "snappy");
        assert_eq!(f.headers()["x-prometheus-remote-write-version"], "0.1.0");
        // The start-up probe: an empty request is valid snappy.
        let empty = f.encode(&SampleSet::default()).unwrap();
        assert!(snap::raw::Decoder::new()
            .decompress_vec(&empty.body)
            .is_ok());
    }
}
