//! A small set of field names, for rules like "every field but these".

use crate::bytes;

/// Field names to test record fields against. Most fields of a record are
/// told apart by their length alone, so a lookup usually costs one bit test;
/// a plain `Vec<String>` search compares every entry.
#[derive(Debug, Clone, Default)]
pub struct FieldSet {
    names: Vec<String>,
    /// Bit `n` set when some name is `n` bytes long (63: 63 or longer).
    lengths: u64,
}

impl FieldSet {
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        let mut set = FieldSet::default();
        for n in names {
            set.insert(n);
        }
        set
    }

    pub fn insert(&mut self, name: impl Into<String>) {
        let name = name.into();
        if !self.contains(&name) {
            self.lengths |= length_bit(name.len());
            self.names.push(name);
        }
    }

    #[inline]
    pub fn contains(&self, name: &str) -> bool {
        self.lengths & length_bit(name.len()) != 0
            && self
                .names
                .iter()
                .any(|n| bytes::eq(n.as_bytes(), name.as_bytes()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }
}

#[inline(always)]
fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

#[cfg(test)]
mod tests {
    use super::FieldSet;

    #[test]
    fn membership() {
        let long = "x".repeat(70);
        let set = FieldSet::new(["bytes", "stamp_updated", "job", "", long.as_str(), "job"]);
        assert_eq!(set.iter().count(), 5);
        for n in ["bytes", "stamp_updated", "job", "", long.as_str()] {
            assert!(set.contains(n), "{n}");
        }
        let other_long = "y".repeat(70);
        for n in [
            "byte",
            "bytez",
            "packets",
            "jo",
            "Job",
            "stamp_updatex",
            other_long.as_str(),
        ] {
            assert!(!set.contains(n), "{n}");
        }
    }
}
