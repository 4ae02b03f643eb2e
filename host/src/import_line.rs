//! One VictoriaMetrics import line, as a transform writes it:
//! `{"metric":{"__name__":...,labels},"values":[v,...],"timestamps":[ms,...]}`.
//! Read in place: the parts stay text borrowed from the body, so reading a
//! batch allocates nothing per line.

use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
pub struct Line<'a> {
    #[serde(borrow)]
    pub metric: &'a RawValue,
    #[serde(borrow)]
    pub values: &'a RawValue,
    #[serde(borrow)]
    pub timestamps: &'a RawValue,
}

impl<'a> Line<'a> {
    pub fn parse(line: &'a [u8]) -> Option<Line<'a>> {
        serde_json::from_slice(line).ok()
    }
}

/// The lines of a body, blank ones skipped, each with its byte offset.
pub fn lines(body: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut start = 0;
    body.split(|&b| b == b'\n').filter_map(move |line| {
        let at = start;
        start += line.len() + 1;
        (!line.iter().all(u8::is_ascii_whitespace)).then_some((at, line))
    })
}

/// The numbers of a JSON array of numbers, as text (none for `[]`).
pub fn numbers(array: &RawValue) -> Option<impl Iterator<Item = &str>> {
    let inner = array.get().trim().strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner.trim();
    Some(
        (!inner.is_empty())
            .then(|| inner.split(','))
            .into_iter()
            .flatten()
            .map(str::trim),
    )
}

/// A line's samples as (value, timestamp) text pairs; `None` when the
/// arrays are not arrays, an `Err` item when they differ in length.
pub fn pairs<'a>(
    values: &'a RawValue,
    timestamps: &'a RawValue,
) -> Option<impl Iterator<Item = Result<(&'a str, &'a str), ()>>> {
    let (mut values, mut timestamps) = (numbers(values)?, numbers(timestamps)?);
    let mut done = false;
    Some(std::iter::from_fn(move || {
        if done {
            return None;
        }
        match (values.next(), timestamps.next()) {
            (None, None) => None,
            (Some(v), Some(t)) => Some(Ok((v, t))),
            _ => {
                done = true;
                Some(Err(()))
            }
        }
    }))
}
