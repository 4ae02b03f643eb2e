//! A small set of field names, for rules like "every field but these".

use crate::bytes;

/// Field names to test record fields against. A lookup usually costs one
/// bit test (on a hash of the name's length and last byte); a plain
/// `Vec<String>` search compares every entry.
#[derive(Debug, Clone, Default)]
pub struct FieldSet {
    names: Vec<String>,
    /// Bit `filter_bit(name)` set for every name in the set.
    filter: u64,
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
            self.filter |= filter_bit(name.as_bytes());
            self.names.push(name);
        }
    }

    #[inline]
    pub fn contains(&self, name: &str) -> bool {
        self.filter & filter_bit(name.as_bytes()) != 0
            && self
                .names
                .iter()
                .any(|n| bytes::eq(n.as_bytes(), name.as_bytes()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }
}

/// The name's bit in the 64-bit filter. The length alone (the first
/// version) put `port_src`, `port_dst`, `ip_proto` and `instance` on one bit
/// and sent those fields to the string compares, a loop: in WASM 6 % of the
/// default transform's time. The last byte is one load more, and the set stays one
/// word that needs no index.
#[inline(always)]
fn filter_bit(name: &[u8]) -> u64 {
    let last = name.last().map_or(0, |&b| b as usize);
    1 << ((name.len().wrapping_mul(37) ^ last.wrapping_mul(5)) & 63)
}

#[cfg(test)]
mod tests {
    use super::{filter_bit, FieldSet};

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

    /// Names that share a filter bit with a member are told apart by the
    /// compare behind it.
    #[test]
    fn filter_collisions_still_compare() {
        let set = FieldSet::new(["bytes", "port_src"]);
        let mut collisions = 0;
        for i in 0..5000 {
            let name = format!("f{i}");
            if filter_bit(name.as_bytes()) & set.filter != 0 {
                collisions += 1;
                assert!(!set.contains(&name), "{name}");
            }
        }
        assert!(collisions > 10, "{collisions}");
        // The pmacct fields the default rules keep as labels each have a
        // bit of their own against the names they skip.
        let skip = FieldSet::new(["bytes", "stamp_updated", "__name__", "job", "instance"]);
        for kept in [
            "event_type",
            "ip_src",
            "ip_dst",
            "port_src",
            "port_dst",
            "ip_proto",
            "tos",
            "stamp_inserted",
            "packets",
            "writer_id",
        ] {
            assert_eq!(filter_bit(kept.as_bytes()) & skip.filter, 0, "{kept}");
        }
    }
}
