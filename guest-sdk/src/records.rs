//! Records back to back: one buffer of bytes and where each record ends.
//!
//! The one layout records have from Kafka to the transform and on to the
//! dead letters; the contract's `transform(records, ends)` is this layout.
//! [`RecordBuf`] owns records, [`Records`] is a run of them, sliced without
//! copying.

use std::ops::Range;

/// Records back to back, owned.
#[derive(Debug, Default, Clone)]
pub struct RecordBuf {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl RecordBuf {
    pub fn new() -> Self {
        RecordBuf::default()
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of every record, and of one being written.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    pub fn push(&mut self, record: &[u8]) {
        self.bytes.extend_from_slice(record);
        self.end();
    }

    /// Append every record of `run`.
    pub fn extend(&mut self, run: Records<'_>) {
        let base = self.bytes.len() as u32;
        self.bytes.extend_from_slice(run.bytes());
        self.ends
            .extend(run.ends.iter().map(|&e| base + (e - run.start)));
    }

    /// Where a record is written in place (a decoder writing into the
    /// buffer): what is appended here becomes a record at [`end`](Self::end)
    /// or goes at [`discard`](Self::discard).
    pub fn unended(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// The bytes written since the last record ended.
    pub fn unended_bytes(&self) -> &[u8] {
        &self.bytes[self.ends.last().map_or(0, |&e| e as usize)..]
    }

    /// End the record written since the last one ended.
    pub fn end(&mut self) {
        self.ends.push(self.bytes.len() as u32);
    }

    /// Drop what was written since the last record ended.
    pub fn discard(&mut self) {
        self.bytes
            .truncate(self.ends.last().map_or(0, |&e| e as usize));
    }

    /// Every record, numbered from 0.
    pub fn all(&self) -> Records<'_> {
        Records {
            bytes: &self.bytes,
            ends: &self.ends,
            start: 0,
            first: 0,
        }
    }

    pub fn get(&self, i: usize) -> &[u8] {
        self.all().get(i)
    }
}

impl<R: AsRef<[u8]>> FromIterator<R> for RecordBuf {
    fn from_iter<I: IntoIterator<Item = R>>(records: I) -> Self {
        let mut buf = RecordBuf::new();
        for r in records {
            buf.push(r.as_ref());
        }
        buf
    }
}

/// A run of records from one buffer, and the index its first record has in
/// the whole (errors are numbered from it).
#[derive(Debug, Clone, Copy)]
pub struct Records<'a> {
    /// The whole buffer: ends count from its first byte.
    bytes: &'a [u8],
    ends: &'a [u32],
    /// Where the run's first record starts.
    start: u32,
    first: u32,
}

/// `ends` that do not fit the bytes they index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadEnds;

impl<'a> Records<'a> {
    /// Records given as bytes and where each ends, counted from the first
    /// byte, as the contract passes them: the ends are checked once here,
    /// so nothing later indexes outside the bytes.
    pub fn new(bytes: &'a [u8], ends: &'a [u32]) -> Result<Self, BadEnds> {
        let mut last = 0;
        for &e in ends {
            if e < last || e as usize > bytes.len() {
                return Err(BadEnds);
            }
            last = e;
        }
        Ok(Records {
            bytes,
            ends,
            start: 0,
            first: 0,
        })
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The index of the run's first record in the whole it was cut from.
    pub fn first(&self) -> u32 {
        self.first
    }

    /// Number the run's records from `first` instead.
    pub fn numbered_from(self, first: u32) -> Self {
        Records { first, ..self }
    }

    fn start_of(&self, i: usize) -> usize {
        match i {
            0 => self.start as usize,
            _ => self.ends[i - 1] as usize,
        }
    }

    /// The `i`th record of the run.
    pub fn get(&self, i: usize) -> &'a [u8] {
        &self.bytes[self.start_of(i)..self.ends[i] as usize]
    }

    /// The `i`th record, and the buffer's bytes from its start on (a parser
    /// may read ahead past the record in wide windows).
    pub fn get_with_rest(&self, i: usize) -> (&'a [u8], &'a [u8]) {
        let start = self.start_of(i);
        (
            &self.bytes[start..self.ends[i] as usize],
            &self.bytes[start..],
        )
    }

    /// The run's records, back to back.
    pub fn bytes(&self) -> &'a [u8] {
        let end = self.ends.last().map_or(self.start, |&e| e) as usize;
        &self.bytes[self.start as usize..end]
    }

    /// Where each record ends, counted from the run's own first byte, as
    /// the contract takes them: `scratch` holds them when they must be
    /// rebased (a run cut from inside a buffer).
    pub fn local_ends<'s>(&self, scratch: &'s mut Vec<u32>) -> &'s [u32]
    where
        'a: 's,
    {
        if self.start == 0 {
            return self.ends;
        }
        scratch.clear();
        scratch.extend(self.ends.iter().map(|e| e - self.start));
        scratch
    }

    /// The records in `range` of this run (indices within the run).
    pub fn range(self, range: Range<usize>) -> Self {
        Records {
            bytes: self.bytes,
            ends: &self.ends[range.clone()],
            start: self.start_of(range.start) as u32,
            first: self.first + range.start as u32,
        }
    }

    /// The first `mid` records, and the rest.
    pub fn split_at(self, mid: usize) -> (Self, Self) {
        (self.range(0..mid), self.range(mid..self.len()))
    }

    pub fn iter(self) -> impl ExactSizeIterator<Item = &'a [u8]> + Clone {
        (0..self.len()).map(move |i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cut_from_a_buffer_keep_their_records_and_numbers() {
        let buf: RecordBuf = ["a", "", "bcd", "ef"].into_iter().collect();
        let all = buf.all();
        let (left, right) = all.split_at(2);
        assert_eq!(left.iter().collect::<Vec<_>>(), [&b"a"[..], b""]);
        assert_eq!(right.iter().collect::<Vec<_>>(), [&b"bcd"[..], b"ef"]);
        assert_eq!((right.first(), right.bytes()), (2, &b"bcdef"[..]));
        let mut scratch = Vec::new();
        assert_eq!(right.local_ends(&mut scratch), [3, 5]);
        let (one, rest) = right.split_at(1);
        assert_eq!((one.first(), one.get(0)), (2, &b"bcd"[..]));
        assert_eq!((rest.first(), rest.get(0)), (3, &b"ef"[..]));
        assert_eq!(rest.get_with_rest(0), (&b"ef"[..], &b"ef"[..]));
        let mut copy = RecordBuf::new();
        copy.extend(left);
        copy.extend(rest);
        assert_eq!(
            copy.all().iter().collect::<Vec<_>>(),
            [&b"a"[..], b"", b"ef"]
        );
    }

    #[test]
    fn ends_outside_the_bytes_or_going_back_are_refused() {
        assert_eq!(Records::new(b"abc", &[1, 3]).map(|r| r.len()), Ok(2));
        assert_eq!(Records::new(b"abc", &[4]).map(|r| r.len()), Err(BadEnds));
        assert_eq!(Records::new(b"abc", &[2, 1]).map(|r| r.len()), Err(BadEnds));
    }

    #[test]
    fn a_record_written_in_place_is_ended_or_discarded() {
        let mut buf = RecordBuf::new();
        buf.push(b"x");
        buf.unended().extend_from_slice(b"half");
        assert_eq!(buf.unended_bytes(), b"half");
        buf.discard();
        buf.unended().extend_from_slice(b"yz");
        buf.end();
        assert_eq!(buf.all().iter().collect::<Vec<_>>(), [&b"x"[..], b"yz"]);
        assert_eq!(buf.unended_bytes(), b"");
    }
}
