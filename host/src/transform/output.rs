//! A call's output, checked where it crosses the boundary.
//!
//! VictoriaMetrics' import skips a line it cannot read and still answers
//! 204, and remote write's encoder skips it too: a module writing such a
//! line would lose its record's samples while the record's offset is
//! committed. So the body is checked against the exact shape the contract
//! gives (`{"metric":{"__name__":"...",...},"values":[...],"timestamps":[...]}`,
//! as many values as timestamps, a metric name), without building anything:
//! one pass over the bytes, strings skipped with `memchr`. A body that fails
//! is the call's fault, like a trap: the chunk is bisected until the
//! records whose lines are bad are alone, and those are rejected with
//! `transform_bad_output` and the line's defect.
//!
//! Lines are not attributed to records (the body is flat, for speed), so a
//! record reported as an error that also wrote samples is caught only when
//! every record of the call is an error, which is exact once bisection has
//! a record alone.

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
    if body.len() > max_bytes {
        return Err(Fault::OutputTooLarge {
            bytes: body.len(),
            limit: max_bytes,
        });
    }
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
    well_formed(body, samples).map_err(bad)
}

fn bad(why: String) -> Fault {
    Fault::BadOutput(why)
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// A module's reason and detail, cut to what the host keeps.
pub fn bound_error(reason: &mut String, detail: &mut String) {
    truncate(reason, REASON_MAX);
    truncate(detail, DETAIL_MAX);
}

/// `samples` import lines, each ending in `\n`, each of the contract's
/// shape; UTF-8, with no control byte but the line ends.
pub fn well_formed(body: &[u8], samples: u32) -> Result<(), String> {
    if std::str::from_utf8(body).is_err() {
        return Err("the body is not UTF-8".into());
    }
    // Counted over the whole body at once (it vectorises): a control byte
    // anywhere but a line end is in a string, unescaped.
    let controls = body.iter().filter(|&&b| b < 0x20).count();
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
    if controls != lines {
        return Err("a string holds an unescaped control character".into());
    }
    if lines != samples as usize {
        return Err(format!("{lines} lines, but {samples} samples reported"));
    }
    Ok(())
}

/// One line, without its `\n`.
fn line(text: &[u8]) -> Result<(), &'static str> {
    let mut c = Cursor { b: text, i: 0 };
    c.lit(br#"{"metric":{"#, r#"does not start with {"metric":{"#)?;
    let mut named = false;
    if !c.eat(b'}') {
        loop {
            let name = c.string()?;
            c.lit(b":", "a label without a value")?;
            let value = c.string()?;
            named |= name == b"__name__" && !value.is_empty();
            if !c.eat(b',') {
                c.lit(b"}", "the metric object is not closed")?;
                break;
            }
        }
    }
    if !named {
        return Err("no metric name (__name__)");
    }
    c.lit(br#","values":["#, r#"no "values" array after the metric"#)?;
    let values = c.list(Cursor::value)?;
    c.lit(br#"],"timestamps":["#, r#"no "timestamps" array after the values"#)?;
    let timestamps = c.list(Cursor::integer)?;
    c.lit(b"]}", "the line is not closed after the timestamps")?;
    if c.i != text.len() {
        return Err("text after the line's end");
    }
    if values == 0 {
        return Err("no values");
    }
    if values != timestamps {
        return Err("values and timestamps differ in length");
    }
    Ok(())
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
            let at = memchr::memchr2(b'"', b'\\', &self.b[self.i..]).ok_or("a string is not closed")?;
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
        for word in [&br#""NaN""#[..], br#""Inf""#, br#""+Inf""#, br#""-Inf""#] {
            if self.b[self.i..].starts_with(word) {
                self.i += word.len();
                return Ok(());
            }
        }
        const BAD: &str = "a value is not a number";
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
            let line = format!(r#"{{"metric":{{"__name__":"a"}},"values":[{value}],"timestamps":[1]}}"#);
            assert_eq!(one(&line), Ok(()), "{line}");
        }
        let two = r#"{"metric":{"job":"j","__name__":"a"},"values":[1,2],"timestamps":[1,2]}"#;
        assert_eq!(one(two), Ok(()));
    }

    /// Each is a line VictoriaMetrics or remote write would skip.
    #[test]
    fn lines_a_store_would_drop_fail() {
        let bad = [
            (r#"{"metric":{}}"#, "no metric name"),
            (r#"{"metric":{},"values":[1],"timestamps":[1]}"#, "no metric name"),
            (r#"{"metric":{"__name__":""},"values":[1],"timestamps":[1]}"#, "no metric name"),
            (r#"{"metric":{"__name__":"a"},"values":[1,2],"timestamps":[1]}"#, "differ in length"),
            (r#"{"metric":{"__name__":"a"},"values":[],"timestamps":[]}"#, "no values"),
            (r#"{"metric":{"__name__":"a"},"values":[01],"timestamps":[1]}"#, "not a number"),
            (r#"{"metric":{"__name__":"a"},"values":[NaN],"timestamps":[1]}"#, "not a number"),
            (r#"{"metric":{"__name__":"a"},"values":[1],"timestamps":[1.5]}"#, "not closed"),
            (r#"{"metric":{"__name__":"a"},"values":[1],"timestamps":[12345678901234567890]}"#, "integer"),
            (r#"{"metric":{"__name__":"a","b":1},"values":[1],"timestamps":[1]}"#, "not a string"),
            (r#"{"metric":{"__name__":"a\q"},"values":[1],"timestamps":[1]}"#, "invalid escape"),
            (r#"{"metric":{"__name__":"a"},"values":[1],"timestamps":[1]} "#, "after the line"),
            (r#"{"metric":{"__name__":"a"},"values":[1],"timestamps":[1]"#, "not closed"),
            (r#"{"metric":{"__name__":"a"#, "not closed"),
            ("garbage", "does not start"),
        ];
        for (line, why) in bad {
            let err = one(line).expect_err(line);
            assert!(err.contains(why), "{line}: {err}");
        }
        let tab = "{\"metric\":{\"__name__\":\"a\tb\"},\"values\":[1],\"timestamps\":[1]}";
        assert!(one(tab).unwrap_err().contains("control"));
        let mut latin1 = GOOD.as_bytes().to_vec();
        latin1[25] = 0xe9;
        latin1.push(b'\n');
        assert!(well_formed(&latin1, 1).unwrap_err().contains("UTF-8"));
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
            check(body.as_bytes(), samples, errors.iter().copied(), records, 1 << 20)
        };
        assert_eq!(ok(&[1], 2, 1), Ok(()));
        assert!(matches!(ok(&[2], 2, 1), Err(Fault::BadOutput(_))));
        // Out of order and twice: tolerated, the pipeline takes each once.
        assert_eq!(ok(&[1, 1], 3, 1), Ok(()));
        assert_eq!(ok(&[1, 0], 3, 1), Ok(()));
        assert_eq!(ok(&[0, 0], 2, 1), Ok(()));
        assert!(matches!(ok(&[1, 0, 1], 2, 1), Err(Fault::BadOutput(_))));
        let both = ok(&[0], 1, 1).unwrap_err();
        assert!(both.to_string().contains("all reported as errors"), "{both}");
        let big = check(body.as_bytes(), 1, [].into_iter(), 1, 10).unwrap_err();
        assert_eq!(big.reason(), "transform_output_too_large");
    }
}
