//! Samples as structure: what a chunk's records became, as contract 2.0
//! hands it to the host. Strings are stored once each, back to back; a
//! series is a run of string indices (its name, then label names and
//! values in pairs); a point is a series, a value and a timestamp.
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
    /// Each series' strings, as indices: its name, then label name and
    /// value pairs.
    pub series: Vec<u32>,
    /// Series `s` is `series[series_ends[s - 1]..series_ends[s]]`.
    pub series_ends: Vec<u32>,
    /// Point `p` is the series `point_series[p]`, `values[p]` at
    /// `timestamps[p]` (milliseconds since the epoch).
    pub point_series: Vec<u32>,
    pub values: Vec<f64>,
    pub timestamps: Vec<i64>,
}

/// How long each part was: a record's samples are cut back to it when
/// the record is rejected, a sample's when it is dropped unfinished.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    text: usize,
    strings: usize,
    series: usize,
    series_ends: usize,
    points: usize,
}

impl SampleSet {
    /// The number of points.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn clear(&mut self) {
        self.text.clear();
        self.string_ends.clear();
        self.series.clear();
        self.series_ends.clear();
        self.point_series.clear();
        self.values.clear();
        self.timestamps.clear();
    }

    /// Bytes the structure takes on the boundary (the host's output limit).
    pub fn bytes(&self) -> usize {
        self.text.len()
            + 4 * (self.string_ends.len()
                + self.series.len()
                + self.series_ends.len()
                + self.point_series.len())
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
    pub fn series_strings(&self, s: u32) -> &[u32] {
        let s = s as usize;
        let start = if s == 0 {
            0
        } else {
            self.series_ends[s - 1] as usize
        };
        &self.series[start..self.series_ends[s] as usize]
    }

    pub(crate) fn mark(&self) -> Mark {
        Mark {
            text: self.text.len(),
            strings: self.string_ends.len(),
            series: self.series.len(),
            series_ends: self.series_ends.len(),
            points: self.values.len(),
        }
    }

    pub(crate) fn truncate(&mut self, m: Mark) {
        self.text.truncate(m.text);
        self.string_ends.truncate(m.strings);
        self.series.truncate(m.series);
        self.series_ends.truncate(m.series_ends);
        self.point_series.truncate(m.points);
        self.values.truncate(m.points);
        self.timestamps.truncate(m.points);
    }

    /// Strings the text has already grown by, given by their ends in
    /// order, added to the table and to the open series.
    #[inline(always)]
    pub(crate) fn end_strings(&mut self, ends: impl Iterator<Item = u32>) {
        for (index, end) in (self.string_ends.len() as u32..).zip(ends) {
            self.string_ends.push(end);
            self.series.push(index);
        }
    }

    /// Add `s` to the table and to the open series.
    #[inline(always)]
    pub(crate) fn push_string(&mut self, s: &[u8]) {
        self.text.extend_from_slice(s);
        let end = self.text.len() as u32;
        self.end_strings(std::iter::once(end));
    }

    /// Close the open series and add its one point.
    #[inline(always)]
    pub(crate) fn push_point(&mut self, value: f64, timestamp_ms: i64) {
        self.series_ends.push(self.series.len() as u32);
        self.point_series.push(self.series_ends.len() as u32 - 1);
        self.values.push(value);
        self.timestamps.push(timestamp_ms);
    }

    /// The import line of every point, in order, each ending in `\n`.
    pub fn write_import_lines(&self, out: &mut Vec<u8>) {
        crate::import_lines::write(self, out);
    }

    /// [`write_import_lines`](Self::write_import_lines) as text: for tests.
    pub fn import_lines(&self) -> String {
        let mut out = Vec::new();
        self.write_import_lines(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}
