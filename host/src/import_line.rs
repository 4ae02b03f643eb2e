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

/// A series' identity whatever the order its labels were written in:
/// `metric` (a flat JSON object of strings, as an import line holds it)
/// with its pairs sorted by name. Returns `None` when `metric` is already
/// in that order (the common case: no copy), else writes the sorted object
/// to `out` (cleared first) and returns `Some(())`. `pairs` is scratch
/// space, reused across calls. Names compare as written (escapes and
/// all); `None` too for an object this scan cannot read, which then keys
/// as written.
pub fn sort_labels<'a>(
    metric: &'a str,
    pairs: &mut Vec<(&'a str, &'a str)>,
    out: &mut String,
) -> Option<()> {
    pairs.clear();
    let mut rest = metric.trim().strip_prefix('{')?.strip_suffix('}')?.trim();
    let mut sorted = true;
    while !rest.is_empty() {
        let (name, after) = json_string(rest)?;
        let after = after.trim_start().strip_prefix(':')?.trim_start();
        let (value, after) = json_string(after)?;
        if pairs.last().is_some_and(|&(last, _)| last > name) {
            sorted = false;
        }
        pairs.push((name, value));
        rest = after.trim_start();
        rest = rest.strip_prefix(',').map_or(rest, str::trim_start);
    }
    if sorted {
        return None;
    }
    pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.clear();
    out.push('{');
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push(':');
        out.push_str(value);
    }
    out.push('}');
    Some(())
}

/// A JSON string token at the start of `text` (quotes and escapes kept),
/// and what follows it.
fn json_string(text: &str) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', &bytes[i..])?;
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        return Some((&text[..=i], &text[i + 1..]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sort_into_one_identity() {
        let (mut pairs, mut out) = (Vec::new(), String::new());
        let sorted = r#"{"__name__":"bytes","a":"1","b":"x\"y"}"#;
        assert_eq!(sort_labels(sorted, &mut pairs, &mut out), None);
        let shuffled = r#"{ "b" : "x\"y", "__name__":"bytes","a":"1" }"#;
        assert_eq!(sort_labels(shuffled, &mut pairs, &mut out), Some(()));
        assert_eq!(out, sorted);
        assert_eq!(sort_labels("[1]", &mut pairs, &mut out), None);
        assert_eq!(sort_labels(r#"{"a":1}"#, &mut pairs, &mut out), None);
    }
}
