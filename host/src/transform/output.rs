//! A call's output, checked where it crosses the boundary: a 2.0 module's
//! structure ([`check_set`]), a 1.0 module's import lines ([`check`]).
//!
//! A 2.0 module's structure is checked whole before an index is trusted:
//! the text UTF-8 and cut on characters, every index inside its table,
//! every series a name (not empty) and label pairs, every label name one a
//! store takes, the points' lists of one length. Its cost is a pass over
//! the indices and one over the text (measured in docs/performance.md).
//!
//! A 1.0 module's lines:
//! VictoriaMetrics' import skips a line it cannot read and still answers
//! 204, and remote write's encoder skips it too: a module writing such a
//! line would lose its record's samples while the record's offset is
//! committed. So each line is checked against the shape the contract gives,
//! `{"metric":{"__name__":"NAME",...labels},"values":[...],"timestamps":[...]}`:
//! the name first and not empty, as many values (JSON numbers, or `"NaN"`,
//! `"Inf"`, `"-Inf"`) as timestamps (integers), and the labels' quotes
//! balanced. It reads the line's two ends and counts the labels' quotes
//! (vectorised); labels holding a backslash are read exactly. A body that
//! fails is the call's fault, like a trap: the chunk is bisected until the
//! records whose lines are bad are alone, and those are rejected with
//! `transform_bad_output` and the line's defect.
//!
//! It costs 0.09–0.15 µs a record of the default rules (two lines, 590
//! bytes) on this project's machine, against 0.4–0.5 µs for the call. What
//! it does not read, to stay that cheap: whether label text is UTF-8
//! without control characters, and a label value holding a multiple of
//! four stray quotes.
//! Lines are not attributed to records (the body is flat, for speed), so a
//! record reported as an error that also wrote samples is caught only when
//! every record of the call is an error, which is exact once bisection has
//! a record alone.

use pmacct_guest_sdk::{label_name_ok_in, SampleSet};

use super::Fault;

/// The longest `reason` kept (it becomes a label value).
const REASON_MAX: usize = 64;
/// The longest `detail` kept (it goes to the log and a dead letter's header).
const DETAIL_MAX: usize = 1024;

/// Check one call's output: `records` went in, `errors` are the indices
/// the module reported, in its order (any order, even twice: the
/// pipeline takes each rejected record once).
pub fn check(
    body: &[u8],
    samples: u32,
    errors: impl ExactSizeIterator<Item = u32> + Clone,
    records: usize,
    max_bytes: usize,
) -> Result<(), Fault> {
    check_size(body.len(), max_bytes)?;
    check_errors(errors, samples, records)?;
    well_formed(body, samples).map_err(bad)
}

/// Check a 2.0 module's call: as [`check`], for samples as structure.
pub fn check_set(
    set: &SampleSet,
    errors: impl ExactSizeIterator<Item = u32> + Clone,
    records: usize,
    max_bytes: usize,
) -> Result<(), Fault> {
    check_size(set.bytes(), max_bytes)?;
    check_errors(errors, set.len() as u32, records)?;
    well_built(set).map_err(bad)
}

fn check_size(bytes: usize, limit: usize) -> Result<(), Fault> {
    match bytes > limit {
        true => Err(Fault::OutputTooLarge { bytes, limit }),
        false => Ok(()),
    }
}

/// Errors name records the call had, and not every record of a call that
/// wrote samples.
fn check_errors(
    errors: impl ExactSizeIterator<Item = u32> + Clone,
    samples: u32,
    records: usize,
) -> Result<(), Fault> {
    if let Some(index) = errors.clone().find(|&i| i as usize >= records) {
        return Err(bad(format!(
            "an error for record {index}, of {records} it was given"
        )));
    }
    // Only then can every record be an error; rare, so the set is built
    // only then.
    if samples > 0 && records > 0 && errors.len() >= records {
        let mut rejected = vec![false; records];
        errors.for_each(|i| rejected[i as usize] = true);
        if rejected.iter().all(|&r| r) {
            return Err(bad(format!(
                "{samples} samples from records all reported as errors"
            )));
        }
    }
    Ok(())
}

/// Every index of `set` inside its table, and what it names of the shape
/// the contract gives.
pub fn well_built(set: &SampleSet) -> Result<(), String> {
    let text = std::str::from_utf8(&set.text).map_err(|e| format!("the text is not UTF-8: {e}"))?;
    // In ASCII every end is on a character: only the order is checked, in
    // a loop without a branch a string.
    let ascii = text.is_ascii();
    let ordered = set.string_ends.windows(2).all(|w| w[0] <= w[1]);
    let last = set.string_ends.last().map_or(0, |&e| e as usize);
    if !ordered || last > text.len() || (!ascii && !on_characters(text, &set.string_ends)) {
        let mut start = 0;
        for (i, &end) in set.string_ends.iter().enumerate() {
            let end = end as usize;
            if end < start || !text.is_char_boundary(end) {
                return Err(format!(
                    "string {i} ends at {end}: before it starts, past the text or inside a character"
                ));
            }
            start = end;
        }
    }
    if last != text.len() {
        return Err("the text goes on after the last string".into());
    }
    let strings = set.string_ends.len() as u32;
    let mut start = 0;
    for (s, &end) in set.series_ends.iter().enumerate() {
        if end < start || end > strings {
            return Err(format!(
                "series {s} ends at string {end}: before it starts or past the table of {strings}"
            ));
        }
        series(set, start..end).map_err(|why| format!("series {s}: {why}"))?;
        start = end;
    }
    if start != strings {
        return Err("the string table goes on after the last series".into());
    }
    points(set)
}

fn on_characters(text: &str, ends: &[u32]) -> bool {
    ends.iter().all(|&e| text.is_char_boundary(e as usize))
}

/// One series' strings: a name that is not empty, then label pairs whose
/// names a store takes.
fn series(set: &SampleSet, strings: std::ops::Range<u32>) -> Result<(), String> {
    if strings.len() % 2 == 0 {
        return Err("no name, or a label without a value".into());
    }
    if set.string(strings.start).is_empty() {
        return Err("an empty metric name".into());
    }
    for i in (strings.start + 1..strings.end).step_by(2) {
        let i = i as usize;
        let start = i.checked_sub(1).map_or(0, |p| set.string_ends[p] as usize);
        if !label_name_ok_in(&set.text, start, set.string_ends[i] as usize) {
            let name = String::from_utf8_lossy(set.string(i as u32));
            return Err(format!("{name:?} cannot be a label name"));
        }
    }
    Ok(())
}

fn points(set: &SampleSet) -> Result<(), String> {
    let n = set.values.len();
    if set.point_series.len() != n || set.timestamps.len() != n {
        return Err("the points' series, values and timestamps differ in length".into());
    }
    let count = set.series_ends.len() as u32;
    match set.point_series.iter().position(|&s| s >= count) {
        Some(p) => Err(format!(
            "point {p} is of series {}, of {count}",
            set.point_series[p]
        )),
        None => Ok(()),
    }
}

fn bad(why: String) -> Fault {
    Fault::BadOutput(why)
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn truncate(s: &mut String, max: usize) {
    let cut = prefix(s, max).len();
    s.truncate(cut);
}

/// The first at most `max` bytes of `s`, on a character boundary
/// (`str::floor_char_boundary` is newer than this crate's MSRV).
pub fn prefix(s: &str, max: usize) -> &str {
    let mut cut = max.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// A module's reason and detail, cut to what the host keeps.
pub fn bound_error(reason: &mut String, detail: &mut String) {
    truncate(reason, REASON_MAX);
    truncate(detail, DETAIL_MAX);
}

/// `samples` import lines, each ending in `\n`, each of the contract's
/// shape.
pub fn well_formed(body: &[u8], samples: u32) -> Result<(), String> {
    let mut lines = 0usize;
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', body) {
        line(&body[start..end]).map_err(|why| format!("line {}: {why}", lines + 1))?;
        lines += 1;
        start = end + 1;
    }
    if start != body.len() {
        return Err(format!("line {}: no line end", lines + 1));
    }
    if lines != samples as usize {
        return Err(format!("{lines} lines, but {samples} samples reported"));
    }
    Ok(())
}

/// Every line starts so: the metric object, its name first.
const HEAD: &[u8] = br#"{"metric":{"__name__":""#;
/// The end of the labels and the start of the values.
const VALUES: &[u8] = br#""},"values":["#;
const TIMESTAMPS: &[u8] = br#"],"timestamps":["#;

/// One line, without its `\n`: read from both ends, values and timestamps
/// from the end (no label holds a `[` after them).
fn line(text: &[u8]) -> Result<(), &'static str> {
    if !text.starts_with(HEAD) {
        return Err(r#"does not start with {"metric":{"__name__":" (the metric name first)"#);
    }
    let arrays = text
        .strip_suffix(b"]}")
        .ok_or("does not end with the timestamps array and }")?;
    let ts_open = memchr::memrchr(b'[', arrays).ok_or("no timestamps array")?;
    let before_ts = arrays[..=ts_open]
        .strip_suffix(TIMESTAMPS)
        .ok_or(r#"no "timestamps" array after the values"#)?;
    let values_open = memchr::memrchr(b'[', before_ts).ok_or("no values array")?;
    let metric = before_ts[..=values_open]
        .strip_suffix(VALUES)
        .ok_or(r#"no "values" array after the metric"#)?;
    match metric.get(HEAD.len()..) {
        None | Some([] | [b'"', ..]) => return Err("an empty metric name"),
        // From the name's opening quote to the last value's closing one.
        Some(_) => labels(&text[HEAD.len() - 1..=metric.len()])?,
    }
    let values = items(&before_ts[values_open + 1..], Cursor::value)?;
    let timestamps = items(&arrays[ts_open + 1..], Cursor::integer)?;
    if values == 0 {
        return Err("no values");
    }
    if values != timestamps {
        return Err("values and timestamps differ in length");
    }
    Ok(())
}

/// `"name","label":"value",...`: without a backslash, its quotes must come
/// four a label; with one, it is read string by string.
fn labels(text: &[u8]) -> Step {
    if memchr::memchr(b'\\', text).is_none() {
        // memchr counts with SIMD; a filtered iterator was 10 times slower.
        let quotes = memchr::memchr_iter(b'"', text).count();
        return if quotes % 4 == 2 {
            Ok(())
        } else {
            Err("the labels' quotes do not pair up (an unescaped quote in a label)")
        };
    }
    let mut c = Cursor { b: text, i: 0 };
    c.string()?;
    while c.eat(b',') {
        c.string()?;
        c.lit(b":", "a label without a value")?;
        c.string()?;
    }
    if c.i != text.len() {
        return Err("the metric object is not closed");
    }
    Ok(())
}

/// The items of an array's text (between its brackets), each read by `item`.
fn items<'a>(text: &'a [u8], item: fn(&mut Cursor<'a>) -> Step) -> Result<usize, &'static str> {
    if text.is_empty() {
        return Ok(0);
    }
    let mut c = Cursor { b: text, i: 0 };
    let n = c.list(item)?;
    if c.i != text.len() {
        return Err("an array holds something that is not a number");
    }
    Ok(n)
}

type Step = Result<(), &'static str>;

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }

    fn lit(&mut self, s: &[u8], what: &'static str) -> Step {
        if !self.b[self.i..].starts_with(s) {
            return Err(what);
        }
        self.i += s.len();
        Ok(())
    }

    /// A JSON string; its text between the quotes, escapes as written.
    fn string(&mut self) -> Result<&'a [u8], &'static str> {
        if !self.eat(b'"') {
            return Err("a label name or value is not a string");
        }
        let start = self.i;
        loop {
            let at =
                memchr::memchr2(b'"', b'\\', &self.b[self.i..]).ok_or("a string is not closed")?;
            self.i += at + 1;
            if self.b[self.i - 1] == b'"' {
                return Ok(&self.b[start..self.i - 1]);
            }
            match self.peek() {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                Some(b'u') if self.hex4() => self.i += 5,
                _ => return Err("a string holds an invalid escape"),
            }
        }
    }

    fn hex4(&self) -> bool {
        self.b
            .get(self.i + 1..self.i + 5)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    }

    /// Items separated by commas, up to (not past) the closing `]`.
    fn list(&mut self, item: fn(&mut Self) -> Step) -> Result<usize, &'static str> {
        if self.peek() == Some(b']') {
            return Ok(0);
        }
        let mut n = 0;
        loop {
            item(self)?;
            n += 1;
            if !self.eat(b',') {
                return Ok(n);
            }
        }
    }

    fn digits(&mut self) -> usize {
        let n = self.b[self.i..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        self.i += n;
        n
    }

    /// A JSON number, or the words VictoriaMetrics reads for NaN and the
    /// infinities (JSON has none).
    fn value(&mut self) -> Step {
        const BAD: &str = "a value is not a number";
        if self.peek() == Some(b'"') {
            let words = [&br#""NaN""#[..], br#""Inf""#, br#""+Inf""#, br#""-Inf""#];
            let word = words
                .iter()
                .find(|w| self.b[self.i..].starts_with(w))
                .ok_or(BAD)?;
            self.i += word.len();
            return Ok(());
        }
        self.eat(b'-');
        match self.digits() {
            0 => return Err(BAD),
            n if n > 1 && self.b[self.i - n] == b'0' => return Err(BAD),
            _ => {}
        }
        if self.eat(b'.') && self.digits() == 0 {
            return Err(BAD);
        }
        if self.eat(b'e') || self.eat(b'E') {
            let _ = self.eat(b'+') || self.eat(b'-');
            if self.digits() == 0 {
                return Err(BAD);
            }
        }
        Ok(())
    }

    /// Milliseconds: an integer that fits in 64 bits.
    fn integer(&mut self) -> Step {
        self.eat(b'-');
        match self.digits() {
            1..=18 => Ok(()),
            _ => Err("a timestamp is not an integer of milliseconds"),
        }
    }
}

#[cfg(test)]
mod set_tests {
    //! A 2.0 module's structure as the bindings lift it (the SDK's type,
    //! its vectors moved): each defect built by hand, as a module that
    //! does not use the SDK could send it.
    use super::*;

    /// `bytes{job="j",q="é"} 9000 @1000` and `rate 0.5 @1000`, as the SDK
    /// writes them.
    fn good() -> SampleSet {
        let mut set = SampleSet::default();
        for s in ["bytes", "job", "j", "q", "é", "rate"] {
            set.text.extend_from_slice(s.as_bytes());
            set.string_ends.push(set.text.len() as u32);
        }
        set.series_ends = vec![5, 6];
        set.point_series = vec![0, 1];
        set.values = vec![9000.0, 0.5];
        set.timestamps = vec![1000, 1000];
        set
    }

    fn why(change: impl FnOnce(&mut SampleSet)) -> String {
        let mut set = good();
        change(&mut set);
        well_built(&set).expect_err("a defect")
    }

    #[test]
    fn the_sdks_structure_passes_and_reads_as_its_lines() {
        assert_eq!(well_built(&good()), Ok(()));
        assert_eq!(well_built(&SampleSet::default()), Ok(()));
        assert_eq!(
            good().import_lines(),
            "{\"metric\":{\"__name__\":\"bytes\",\"job\":\"j\",\"q\":\"é\"},\"values\":[9000],\"timestamps\":[1000]}\n\
             {\"metric\":{\"__name__\":\"rate\"},\"values\":[0.5],\"timestamps\":[1000]}\n"
        );
    }

    #[test]
    fn every_index_outside_its_table_is_refused() {
        type Change = Box<dyn FnOnce(&mut SampleSet)>;
        let cases: [(&str, Change); 12] = [
            ("not UTF-8", Box::new(|s| s.text[0] = 0xff)),
            ("inside a character", Box::new(|s| s.string_ends[4] -= 1)),
            ("past the text", Box::new(|s| s.string_ends[5] += 1)),
            ("before it starts", Box::new(|s| s.string_ends.swap(0, 1))),
            (
                "goes on after the last string",
                Box::new(|s| s.text.push(b'x')),
            ),
            ("past the table of 6", Box::new(|s| s.series_ends[1] = 7)),
            (
                "series 1 ends at string 4: before",
                Box::new(|s| s.series_ends[1] = 4),
            ),
            (
                "goes on after the last series",
                Box::new(|s| {
                    s.series_ends.pop();
                    s.point_series[1] = 0;
                }),
            ),
            (
                "a label without a value",
                Box::new(|s| s.series_ends[0] = 4),
            ),
            (
                "point 1 is of series 2, of 2",
                Box::new(|s| s.point_series[1] = 2),
            ),
            ("differ in length", Box::new(|s| s.timestamps.truncate(1))),
            ("differ in length", Box::new(|s| s.values.push(1.0))),
        ];
        for (want, change) in cases {
            let got = why(change);
            assert!(got.contains(want), "{want:?}: {got}");
        }
    }

    /// One series of `strings` in order, and one point of it.
    fn one_series(strings: &[&str]) -> SampleSet {
        let mut set = SampleSet::default();
        for s in strings {
            set.text.extend_from_slice(s.as_bytes());
            set.string_ends.push(set.text.len() as u32);
        }
        set.series_ends = vec![strings.len() as u32];
        set.point_series = vec![0];
        set.values = vec![1.0];
        set.timestamps = vec![1];
        set
    }

    #[test]
    fn names_a_store_cannot_take_are_refused() {
        let got = well_built(&one_series(&["", "a", "b"])).unwrap_err();
        assert_eq!(got, "series 0: an empty metric name");
        for name in ["__name__", "__x", "9a", "ip-src", "", "é"] {
            let got = well_built(&one_series(&["m", name, "v"])).unwrap_err();
            assert!(got.contains("cannot be a label name"), "{name:?}: {got}");
        }
        let fine = one_series(&["m", "_ok9", "any \" \n value", "b", ""]);
        assert_eq!(well_built(&fine), Ok(()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"metric":{"__name__":"a","q":"x\"y\\z\u00e9"},"values":[1.5e3],"timestamps":[1795600862000]}"#;

    fn one(line: &str) -> Result<(), String> {
        well_formed(format!("{line}\n").as_bytes(), 1)
    }

    #[test]
    fn the_contracts_lines_pass() {
        assert_eq!(one(GOOD), Ok(()));
        assert_eq!(well_formed(b"", 0), Ok(()));
        for value in ["0", "-0.5", "12", "1E+2", r#""NaN""#, r#""-Inf""#] {
            let line =
                format!(r#"{{"metric":{{"__name__":"a"}},"values":[{value}],"timestamps":[1]}}"#);
            assert_eq!(one(&line), Ok(()), "{line}");
        }
        let two = r#"{"metric":{"__name__":"a","job":"j"},"values":[1,2],"timestamps":[1,2]}"#;
        assert_eq!(one(two), Ok(()));
    }

    /// Each is a line VictoriaMetrics or remote write would skip, and what
    /// the check says of it.
    const DROPPED: &[(&str, &str)] = &[
        (r#"{"metric":{}}"#, "does not start"),
        (
            r#"{"metric":{},"values":[1],"timestamps":[1]}"#,
            "does not start",
        ),
        (
            r#"{"metric":{"job":"j"},"values":[1],"timestamps":[1]}"#,
            "does not start",
        ),
        (
            r#"{"metric":{"__name__":""},"values":[1],"timestamps":[1]}"#,
            "empty metric name",
        ),
        (
            r#"{"metric":{"__name__":"","a":"b"},"values":[1],"timestamps":[1]}"#,
            "empty metric name",
        ),
        (
            r#"{"metric":{"__name__":"a"},"values":[1,2],"timestamps":[1]}"#,
            "differ in length",
        ),
        (
            r#"{"metric":{"__name__":"a"},"values":[],"timestamps":[]}"#,
            "no values",
        ),
        (
            r#"{"metric":{"__name__":"a"},"values":[01],"timestamps":[1]}"#,
            "not a number",
        ),
        (
            r#"{"metric":{"__name__":"a"},"values":[NaN],"timestamps":[1]}"#,
            "not a number",
        ),
        (
            r#"{"metric":{"__name__":"a"},"values":[1],"timestamps":[1.5]}"#,
            "not a number",
        ),
        (
            r#"{"metric":{"__name__":"a"},"values":[1],"timestamps":[12345678901234567890]}"#,
            "integer",
        ),
        (
            r#"{"metric":{"__name__":"a","b":1},"values":[1],"timestamps":[1]}"#,
            "after the metric",
        ),
        (
            r#"{"metric":{"__name__":"a","b":"x"y"},"values":[1],"timestamps":[1]}"#,
            "quotes",
        ),
        (
            r#"{"metric":{"__name__":"a\q"},"values":[1],"timestamps":[1]}"#,
            "invalid escape",
        ),
        (
            r#"{"metric":{"__name__":"a\"},"values":[1],"timestamps":[1]}"#,
            "not closed",
        ),
        (
            r#"{"metric":{"__name__":"a"},"values":[1],"timestamps":[1]} "#,
            "does not end",
        ),
        (
            r#"{"metric":{"__name__":"a"},"values":[1],"timestamps":[1]"#,
            "does not end",
        ),
        (r#"{"metric":{"__name__":"a"#, "does not end"),
        (
            r#"{"metric":{"__name__":"a"},"values":[1]],"timestamps":[1]}"#,
            "not a number",
        ),
        ("garbage", "does not start"),
    ];

    #[test]
    fn lines_a_store_would_drop_fail() {
        for (line, why) in DROPPED {
            let err = one(line).expect_err(line);
            assert!(err.contains(why), "{line}: {err}");
        }
    }

    #[test]
    fn counts_and_ends_must_match() {
        let body = format!("{GOOD}\n");
        assert!(well_formed(body.as_bytes(), 2).is_err(), "count");
        assert!(well_formed(GOOD.as_bytes(), 1).is_err(), "no line end");
    }

    #[test]
    fn errors_are_in_range_and_exclusive() {
        let body = format!("{GOOD}\n");
        let ok = |errors: &[u32], records, samples| {
            check(
                body.as_bytes(),
                samples,
                errors.iter().copied(),
                records,
                1 << 20,
            )
        };
        assert_eq!(ok(&[1], 2, 1), Ok(()));
        assert!(matches!(ok(&[2], 2, 1), Err(Fault::BadOutput(_))));
        // Out of order and twice: tolerated, the pipeline takes each once.
        assert_eq!(ok(&[1, 1], 3, 1), Ok(()));
        assert_eq!(ok(&[1, 0], 3, 1), Ok(()));
        assert_eq!(ok(&[0, 0], 2, 1), Ok(()));
        assert!(matches!(ok(&[1, 0, 1], 2, 1), Err(Fault::BadOutput(_))));
        let both = ok(&[0], 1, 1).unwrap_err();
        assert!(
            both.to_string().contains("all reported as errors"),
            "{both}"
        );
        let big = check(body.as_bytes(), 1, [].into_iter(), 1, 10).unwrap_err();
        assert_eq!(big.reason(), "transform_output_too_large");
    }
}
