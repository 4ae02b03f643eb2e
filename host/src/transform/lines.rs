//! Contract 1.0's import lines read into structure: a 1.0 module's output,
//! once [`output::check`](super::output::check) has passed it, becomes the
//! [`SampleSet`] a 2.0 module returns, so the rest of the host knows one
//! form. One pass a line with serde_json: strings are borrowed from the
//! line unless escaped, and the arrays stay text until their numbers are
//! read.

use std::borrow::Cow;
use std::fmt;

use pmacct_guest_sdk::SampleSet;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

type Label<'a> = (Cow<'a, str>, Cow<'a, str>);

/// Append the samples of `body`'s lines to `set`; on an error, `set` is as
/// it was and the error names the line and its defect.
pub fn read(body: &[u8], set: &mut SampleSet) -> Result<(), String> {
    let mark = set.mark();
    let mut labels = Vec::new();
    for (n, line) in lines(body).enumerate() {
        if let Err(why) = read_line(line, &mut labels, set) {
            set.truncate(mark);
            return Err(format!("line {}: {why}", n + 1));
        }
    }
    Ok(())
}

/// One line: its series, then a point per value.
fn read_line<'a>(
    line: &'a [u8],
    labels: &mut Vec<Label<'a>>,
    set: &mut SampleSet,
) -> Result<(), &'static str> {
    labels.clear();
    let mut de = serde_json::Deserializer::from_slice(line);
    let arrays = LineInto(labels)
        .deserialize(&mut de)
        .map_err(|_| "not an import line")?;
    de.end().map_err(|_| "text after the line's object")?;
    let (values, timestamps) = match (arrays.values, arrays.timestamps) {
        (Some(v), Some(t)) => (v, t),
        _ => return Err("no values or no timestamps"),
    };
    let name = labels
        .iter()
        .position(|(n, _)| n == "__name__")
        .ok_or("no metric name")?;
    set.push_string(labels[name].1.as_bytes());
    for (i, (n, v)) in labels.iter().enumerate() {
        if i != name {
            set.push_string(n.as_bytes());
            set.push_string(v.as_bytes());
        }
    }
    let series = set.end_series();
    let pairs = pairs(values, timestamps).ok_or("an array that is not one")?;
    for pair in pairs {
        let (v, t) = pair.map_err(|()| "values and timestamps differ in length")?;
        let ts = t
            .parse::<i64>()
            .map_err(|_| "a timestamp that is not an integer")?;
        set.add_point(series, value(v).ok_or("a value that is not a number")?, ts);
    }
    Ok(())
}

/// The lines of a body, blank ones skipped.
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|&b| b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
}

/// The numbers of a JSON array of numbers, as text (none for `[]`).
fn numbers(array: &RawValue) -> Option<impl Iterator<Item = &str>> {
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
fn pairs<'a>(
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

/// A value as an import line holds it: a JSON number, or `"NaN"`, `"Inf"`,
/// `"-Inf"` as strings.
fn value(text: &str) -> Option<f64> {
    match text {
        "\"NaN\"" => Some(f64::NAN),
        "\"Inf\"" | "\"+Inf\"" => Some(f64::INFINITY),
        "\"-Inf\"" => Some(f64::NEG_INFINITY),
        _ => text.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

/// A JSON string, borrowed from the line unless it has escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// An import line's arrays, left as text; its `metric` goes to the labels.
struct Arrays<'a> {
    values: Option<&'a RawValue>,
    timestamps: Option<&'a RawValue>,
}

/// Reads an import line: `metric` onto the end of a label list, the
/// arrays as text, other keys skipped.
struct LineInto<'v, 'a>(&'v mut Vec<Label<'a>>);

impl<'de> DeserializeSeed<'de> for LineInto<'_, 'de> {
    type Value = Arrays<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Arrays<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LineInto<'_, 'de> {
    type Value = Arrays<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an import line")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Arrays<'de>, M::Error> {
        let mut arrays = Arrays {
            values: None,
            timestamps: None,
        };
        let mut metric = false;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match &*key.0 {
                "metric" if !metric => {
                    map.next_value_seed(LabelsInto(&mut *self.0))?;
                    metric = true;
                }
                "values" => arrays.values = Some(map.next_value()?),
                "timestamps" => arrays.timestamps = Some(map.next_value()?),
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        if !metric {
            return Err(serde::de::Error::missing_field("metric"));
        }
        Ok(arrays)
    }
}

/// Reads a `metric` object's entries onto the end of a label list.
struct LabelsInto<'v, 'a>(&'v mut Vec<Label<'a>>);

impl<'de> DeserializeSeed<'de> for LabelsInto<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LabelsInto<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of label names and values")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some((name, value)) = map.next_entry::<Text<'de>, Text<'de>>()? {
            self.0.push((name.0, value.0));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_back_as_they_were_written() {
        let lines = concat!(
            r#"{"metric":{"__name__":"bytes","ip":"10.0.0.1","q":"a\"b\\c\n\u0001é"},"values":[9000],"timestamps":[1795600862000]}"#,
            "\n",
            r#"{"metric":{"__name__":"rate"},"values":[0.25,"NaN","Inf","-Inf"],"timestamps":[5,6,7,8]}"#,
            "\n",
        );
        let mut set = SampleSet::default();
        read(lines.as_bytes(), &mut set).unwrap();
        assert_eq!(set.len(), 5);
        assert_eq!(set.point_series, [0, 1, 1, 1, 1]);
        assert!(set.values[2].is_nan() && set.values[3] == f64::INFINITY);
        let mut again = Vec::new();
        set.write_import_lines_of(0..1, &mut again);
        assert_eq!(
            String::from_utf8(again).unwrap(),
            lines.lines().next().unwrap().to_string() + "\n"
        );
    }

    #[test]
    fn a_defect_names_its_line_and_adds_nothing() {
        let mut set = SampleSet::default();
        let good = r#"{"metric":{"__name__":"a"},"values":[1],"timestamps":[1]}"#;
        for (bad, why) in [
            (
                r#"{"metric":{"x":"a"},"values":[1],"timestamps":[1]}"#,
                "no metric name",
            ),
            (
                r#"{"metric":{"__name__":"a"},"values":[1,2],"timestamps":[1]}"#,
                "differ",
            ),
            (
                r#"{"metric":{"__name__":"a"},"values":["x"],"timestamps":[1]}"#,
                "not a number",
            ),
            (
                r#"{"metric":{"__name__":"a"},"values":[1],"timestamps":[1.5]}"#,
                "not an integer",
            ),
            (
                r#"{"metric":{"__name__":"a"},"values":[1]}"#,
                "no values or no timestamps",
            ),
            (
                r#"{"metric":{"__name__":"a"},"values":[1],"timestamps":[1]} x"#,
                "text after",
            ),
        ] {
            let body = format!("{good}\n{bad}\n");
            let got = read(body.as_bytes(), &mut set).unwrap_err();
            assert!(
                got.starts_with("line 2: ") && got.contains(why),
                "{bad}: {got}"
            );
            assert_eq!(set, SampleSet::default());
        }
    }
}
