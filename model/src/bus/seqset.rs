//! Sets of event sequence numbers, compressed: what a subscription owes and holds as dead
//! letters, whatever the backlog.
//!
//! A [`SeqSet`] is a roaring bitmap: events accepted one after another have consecutive
//! sequence numbers, so a backlog of a million owed events takes about 130 KB, a few bits
//! each, instead of a tree node each. In records it is the bitmap's portable serialization
//! (the format the C, Java and Go implementations share), in base64.

use std::ops::{Deref, DerefMut, RangeBounds};

use base64::Engine;
use roaring::RoaringTreemap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A set of sequence numbers. See the module documentation.
#[derive(Clone, Default, PartialEq)]
pub struct SeqSet(RoaringTreemap);

impl SeqSet {
    /// The empty set.
    pub fn new() -> Self {
        SeqSet(RoaringTreemap::new())
    }

    /// The members in `range`, in order.
    pub fn range<R: RangeBounds<u64> + 'static>(&self, range: R) -> impl Iterator<Item = u64> + '_ {
        let start = match range.start_bound() {
            std::ops::Bound::Included(&s) => s,
            std::ops::Bound::Excluded(&s) => s.saturating_add(1),
            std::ops::Bound::Unbounded => 0,
        };
        let mut iter = self.0.iter();
        iter.advance_to(start);
        iter.take_while(move |seq| range.contains(seq))
    }

    /// Whether it has no members (for serde's `skip_serializing_if`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The members up to and including `last`, as a set.
    pub fn through(&self, last: u64) -> SeqSet {
        let mut out = self.clone();
        if let Some(after) = last.checked_add(1) {
            out.0.remove_range(after..);
        }
        out
    }

    /// Adds every member of `other`.
    pub fn add_all(&mut self, other: &SeqSet) {
        self.0 |= &other.0;
    }

    /// Removes every member of `other`.
    pub fn remove_all(&mut self, other: &SeqSet) {
        self.0 -= &other.0;
    }

    /// Keeps only the members `other` has too.
    pub fn intersect_with(&mut self, other: &SeqSet) {
        self.0 &= &other.0;
    }

    /// The `n` smallest members, as a set.
    pub fn first(&self, n: u64) -> SeqSet {
        match n.checked_sub(1).and_then(|i| self.0.select(i)) {
            Some(last) if n < self.0.len() => self.through(last),
            _ if n == 0 => SeqSet::new(),
            _ => self.clone(),
        }
    }
}

impl Deref for SeqSet {
    type Target = RoaringTreemap;

    fn deref(&self) -> &RoaringTreemap {
        &self.0
    }
}

impl DerefMut for SeqSet {
    fn deref_mut(&mut self) -> &mut RoaringTreemap {
        &mut self.0
    }
}

impl FromIterator<u64> for SeqSet {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Self {
        SeqSet(iter.into_iter().collect())
    }
}

impl std::fmt::Debug for SeqSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Runs rather than members: a backlog is mostly consecutive numbers.
        let mut runs = Vec::new();
        let mut iter = self.0.iter().peekable();
        while let Some(first) = iter.next() {
            let mut last = first;
            while iter.peek() == Some(&(last + 1)) {
                last += 1;
                iter.next();
            }
            runs.push(if first == last {
                first.to_string()
            } else {
                format!("{first}..={last}")
            });
            if runs.len() == 16 {
                runs.push("…".to_owned());
                break;
            }
        }
        write!(f, "{{{}}}", runs.join(", "))
    }
}

impl Serialize for SeqSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(self.0.serialized_size());
        self.0
            .serialize_into(&mut bytes)
            .map_err(serde::ser::Error::custom)?;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }
}

impl<'de> Deserialize<'de> for SeqSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)?;
        RoaringTreemap::deserialize_from(bytes.as_slice())
            .map(SeqSet)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_prefixes_and_json_round_trips() {
        let set: SeqSet = [1, 2, 3, 10, 11, 500].into_iter().collect();
        assert_eq!(set.range(2..11).collect::<Vec<_>>(), [2, 3, 10]);
        assert_eq!(set.range(11..).collect::<Vec<_>>(), [11, 500]);
        assert_eq!(set.through(10).iter().collect::<Vec<_>>(), [1, 2, 3, 10]);
        assert_eq!(set.through(u64::MAX), set);
        assert_eq!(set.first(2).iter().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(set.first(0), SeqSet::new());
        assert_eq!(set.first(99), set);
        assert_eq!(format!("{set:?}"), "{1..=3, 10..=11, 500}");
        let text = serde_json::to_string(&set).expect("serializes");
        let back: SeqSet = serde_json::from_str(&text).expect("deserializes");
        assert_eq!(back, set);
        assert!(serde_json::from_str::<SeqSet>("\"not base64!\"").is_err());
        assert!(serde_json::from_str::<SeqSet>("\"AAAA\"").is_err());
    }

    #[test]
    fn a_million_consecutive_members_take_a_few_bits_each() {
        let mut set = SeqSet::new();
        set.insert_range(1_000..1_001_000);
        assert_eq!(set.len(), 1_000_000);
        assert!(set.serialized_size() < 200_000, "{}", set.serialized_size());
    }
}
