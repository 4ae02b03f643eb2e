//! Samples as structure: what a chunk's records became, as contract 2.0
//! hands it to the host. Strings are stored back to back; a series is a
//! run of consecutive strings (its name, then label names and values in
//! pairs); a point is a series, a value and a timestamp.
//!
//! Nothing in it is text to be parsed again: the host writes import lines
//! or remote write from it, and a label's value is never JSON-escaped in
//! the module.

/// Samples as structure. Built by [`Samples`](crate::Samples) in a module
/// (valid by construction); read from a module by the host, which checks
/// it before trusting an index.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SampleSet {
    /// Every string back to back, UTF-8.
    pub text: Vec<u8>,
    /// String `i` is `text[string_ends[i - 1]..string_ends[i]]` (from 0 for
    /// the first).
    pub string_ends: Vec<u32>,
    /// Series `s` is the strings `series_ends[s - 1]..series_ends[s]`:
    /// its name, then label name and value pairs.
    pub series_ends: Vec<u32>,
    /// Point `p` is the series `point_series[p]`, `values[p]` at
    /// `timestamps[p]` (milliseconds since the epoch).
    pub point_series: Vec<u32>,
    pub values: Vec<f64>,
    pub timestamps: Vec<i64>,
}

/// How long each part was: a record's samples are cut back to it when
/// the record is rejected, a sample's when it is dropped unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    text: usize,
    strings: usize,
    series_ends: usize,
    points: usize,
}

impl Mark {
    /// The number of points the set had.
    pub fn points(&self) -> usize {
        self.points
    }
}

impl SampleSet {
    /// The number of points.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// No string, no series, no point: what `append` may replace whole.
    pub fn is_blank(&self) -> bool {
        self.string_ends.is_empty() && self.series_ends.is_empty() && self.values.is_empty()
    }

    /// Room for the samples of about `records` records of `bytes` bytes:
    /// a module grows its lists by doubling, each a copy and, in a module,
    /// a call out of the sandbox.
    pub fn reserve_for(&mut self, bytes: usize, records: usize) {
        self.text.reserve(bytes);
        self.string_ends.reserve(bytes / 8);
        self.series_ends.reserve(records * 2);
        self.point_series.reserve(records * 2);
        self.values.reserve(records * 2);
        self.timestamps.reserve(records * 2);
    }

    pub fn clear(&mut self) {
        self.text.clear();
        self.string_ends.clear();
        self.series_ends.clear();
        self.point_series.clear();
        self.values.clear();
        self.timestamps.clear();
    }

    /// Bytes the structure takes on the boundary (the host's output limit).
    pub fn bytes(&self) -> usize {
        self.text.len()
            + 4 * (self.string_ends.len() + self.series_ends.len() + self.point_series.len())
            + 8 * (self.values.len() + self.timestamps.len())
    }

    /// String `i`. Panics outside the table: for a set built here or
    /// checked by the host.
    pub fn string(&self, i: u32) -> &[u8] {
        let i = i as usize;
        let start = if i == 0 {
            0
        } else {
            self.string_ends[i - 1] as usize
        };
        &self.text[start..self.string_ends[i] as usize]
    }

    /// Series `s`'s strings: its name, then label pairs.
    pub fn series_strings(&self, s: u32) -> std::ops::Range<u32> {
        let s = s as usize;
        let start = if s == 0 { 0 } else { self.series_ends[s - 1] };
        start..self.series_ends[s]
    }

    /// Series `s`: its name, and its labels as (name, value) pairs.
    pub fn series(&self, s: u32) -> (&[u8], impl Iterator<Item = (&[u8], &[u8])>) {
        let strings = self.series_strings(s);
        let labels = (strings.start + 1..strings.end)
            .step_by(2)
            .map(|i| (self.string(i), self.string(i + 1)));
        (self.string(strings.start), labels)
    }

    pub fn mark(&self) -> Mark {
        Mark {
            text: self.text.len(),
            strings: self.string_ends.len(),
            series_ends: self.series_ends.len(),
            points: self.values.len(),
        }
    }

    pub fn truncate(&mut self, m: Mark) {
        self.text.truncate(m.text);
        self.string_ends.truncate(m.strings);
        self.series_ends.truncate(m.series_ends);
        self.point_series.truncate(m.points);
        self.values.truncate(m.points);
        self.timestamps.truncate(m.points);
    }

    /// Strings the text has already grown by, given by their ends in
    /// order, added to the table (and so to the open series).
    #[inline(always)]
    pub(crate) fn end_strings(&mut self, ends: &[u32]) {
        self.string_ends.extend_from_slice(ends);
    }

    /// Add `s` to the table and to the open series (a transform adds
    /// samples with [`Samples`](crate::Samples); this is for the host).
    #[inline(always)]
    pub fn push_string(&mut self, s: &[u8]) {
        self.text.extend_from_slice(s);
        self.string_ends.push(self.text.len() as u32);
    }

    /// Close the open series and add its one point.
    #[inline(always)]
    pub fn push_point(&mut self, value: f64, timestamp_ms: i64) {
        let series = self.end_series();
        self.add_point(series, value, timestamp_ms);
    }

    /// Close the open series: the strings added since the last one closed
    /// are its own. Returns its index.
    #[inline(always)]
    pub fn end_series(&mut self) -> u32 {
        self.series_ends.push(self.string_ends.len() as u32);
        self.series_ends.len() as u32 - 1
    }

    /// A point of a series already closed.
    #[inline(always)]
    pub fn add_point(&mut self, series: u32, value: f64, timestamp_ms: i64) {
        self.point_series.push(series);
        self.values.push(value);
        self.timestamps.push(timestamp_ms);
    }

    /// Add `other`'s strings, series and points after this set's.
    pub fn append(&mut self, other: &SampleSet) {
        if self.is_blank() {
            self.clone_from(other);
            return;
        }
        let (text, strings) = (self.text.len() as u32, self.string_ends.len() as u32);
        let series_count = self.series_ends.len() as u32;
        self.text.extend_from_slice(&other.text);
        self.string_ends
            .extend(other.string_ends.iter().map(|&e| e + text));
        self.series_ends
            .extend(other.series_ends.iter().map(|&e| e + strings));
        self.point_series
            .extend(other.point_series.iter().map(|&s| s + series_count));
        self.values.extend_from_slice(&other.values);
        self.timestamps.extend_from_slice(&other.timestamps);
    }

    /// The import line of every point, in order, each ending in `\n`.
    pub fn write_import_lines(&self, out: &mut Vec<u8>) {
        crate::import_lines::write(self, 0..self.len(), out);
    }

    /// The import lines of the points in `points`.
    pub fn write_import_lines_of(&self, points: std::ops::Range<usize>, out: &mut Vec<u8>) {
        crate::import_lines::write(self, points, out);
    }

    /// [`write_import_lines`](Self::write_import_lines) as text: for tests.
    pub fn import_lines(&self) -> String {
        let mut out = Vec::new();
        self.write_import_lines(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Samples;

    fn set(names: &[&str]) -> SampleSet {
        let mut set = SampleSet::default();
        let mut s = Samples::for_set(&mut set);
        for (i, name) in names.iter().enumerate() {
            s.sample(name)
                .label("i", &i.to_string())
                .finish(i as f64, 1);
        }
        set
    }

    /// Appended sets read as their lines one after the other, whichever is
    /// empty, and a mark cuts back exactly what came after it.
    #[test]
    fn appended_sets_read_as_their_lines_in_order() {
        let (a, b) = (set(&["a", "b"]), set(&["c"]));
        let mut all = SampleSet::default();
        all.append(&a);
        let mark = all.mark();
        all.append(&b);
        all.append(&SampleSet::default());
        assert_eq!(all.import_lines(), a.import_lines() + &b.import_lines());
        assert_eq!(all.series(2).0, b"c");
        all.truncate(mark);
        assert_eq!(all, a);
        assert!(SampleSet::default().is_blank() && !a.is_blank());
    }
}
