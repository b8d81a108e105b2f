//! Sequence sets (RFC 3501 `sequence-set`): parsing, membership, selection over the numbers in
//! use, and compact writing for response codes such as COPYUID and for ESEARCH.
//!
//! A set is kept as the ranges the client sent, each normalised so that a numeric lower bound
//! comes first. `*` stays symbolic until a question is asked, because its value (the largest
//! message sequence number or UID in use) changes as the mailbox does.

use super::parser::ParseError;

/// One end of a range: a number or `*` (the largest number in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeqBound {
    Number(u32),
    Star,
}

impl SeqBound {
    /// The value with `*` standing for `largest`.
    fn resolve(self, largest: u32) -> u32 {
        match self {
            SeqBound::Number(n) => n,
            SeqBound::Star => largest,
        }
    }
}

/// A parsed `sequence-set` such as `1,3:4,7:*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceSet {
    /// For two numbers the smaller comes first; `*` is always second when present. Never
    /// empty when parsed; empty only for an empty saved search result `$` (RFC 5182), which
    /// every method treats as naming nothing.
    ranges: Vec<(SeqBound, SeqBound)>,
}

impl SequenceSet {
    /// Parses a sequence set: comma-separated numbers and `a:b` ranges, where either end may be
    /// `*` and `b` may be smaller than `a`. Zero, overflow, leading zeros, signs and empty parts
    /// are rejected with [`ParseError::BadAtom`].
    pub fn parse(atom: &[u8]) -> Result<SequenceSet, ParseError> {
        if atom.is_empty() {
            return Err(ParseError::BadAtom);
        }
        let mut ranges = Vec::new();
        for part in atom.split(|&b| b == b',') {
            let mut ends = part.splitn(2, |&b| b == b':');
            let first = parse_bound(ends.next().unwrap_or_default())?;
            let range = match ends.next() {
                None => (first, first),
                Some(second) => {
                    let second = parse_bound(second)?;
                    match (first, second) {
                        (SeqBound::Star, n @ SeqBound::Number(_)) => (n, SeqBound::Star),
                        (SeqBound::Number(a), SeqBound::Number(b)) if a > b => {
                            (SeqBound::Number(b), SeqBound::Number(a))
                        }
                        other => other,
                    }
                }
            };
            ranges.push(range);
        }
        Ok(SequenceSet { ranges })
    }

    /// A set of the given ranges (each `(low, high)` in either order; `*` allowed on either side).
    /// Returns `None` when `ranges` is empty or holds a zero.
    pub fn from_ranges(ranges: &[(SeqBound, SeqBound)]) -> Option<SequenceSet> {
        if ranges.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(ranges.len());
        for &(a, b) in ranges {
            if a == SeqBound::Number(0) || b == SeqBound::Number(0) {
                return None;
            }
            out.push(match (a, b) {
                (SeqBound::Star, n @ SeqBound::Number(_)) => (n, SeqBound::Star),
                (SeqBound::Number(x), SeqBound::Number(y)) if x > y => {
                    (SeqBound::Number(y), SeqBound::Number(x))
                }
                other => other,
            });
        }
        Some(SequenceSet { ranges: out })
    }

    /// The set of `numbers` (strictly ascending, no zero), as few ranges as they allow; empty
    /// when `numbers` is. For the saved search result `$` of RFC 5182.
    pub fn of_ascending(numbers: &[u32]) -> SequenceSet {
        let mut ranges: Vec<(SeqBound, SeqBound)> = Vec::new();
        for &n in numbers {
            match ranges.last_mut() {
                Some((_, SeqBound::Number(hi))) if hi.checked_add(1) == Some(n) => *hi = n,
                _ => ranges.push((SeqBound::Number(n), SeqBound::Number(n))),
            }
        }
        SequenceSet { ranges }
    }

    /// The ranges as parsed (numeric bounds ordered, `*` second).
    pub fn ranges(&self) -> &[(SeqBound, SeqBound)] {
        &self.ranges
    }

    /// The largest number written explicitly in the set (ignoring `*`), e.g. to reject message
    /// sequence numbers beyond the mailbox's size; `None` for sets made of `*` only.
    pub fn max_number(&self) -> Option<u32> {
        self.ranges
            .iter()
            .flat_map(|&(a, b)| [a, b])
            .filter_map(|bound| match bound {
                SeqBound::Number(n) => Some(n),
                SeqBound::Star => None,
            })
            .max()
    }

    /// The inclusive numeric interval of one range, with `*` as `largest`; `None` when the range
    /// uses `*` and the mailbox is empty (`largest == 0`).
    fn interval(range: (SeqBound, SeqBound), largest: u32) -> Option<(u32, u32)> {
        let (a, b) = range;
        if largest == 0 && (a == SeqBound::Star || b == SeqBound::Star) {
            return None;
        }
        let (a, b) = (a.resolve(largest), b.resolve(largest));
        Some((a.min(b), a.max(b)))
    }

    /// Whether `n` is in the set, where `*` means `largest` (the largest message sequence number
    /// or UID in use). When the mailbox is empty (`largest == 0`), ranges with `*` match nothing.
    /// As RFC 3501 requires, `n:*` with `n > largest` means `largest:n`, so it still holds the
    /// largest UID.
    pub fn contains(&self, n: u32, largest: u32) -> bool {
        self.ranges
            .iter()
            .any(|&range| Self::interval(range, largest).is_some_and(|(lo, hi)| lo <= n && n <= hi))
    }

    /// Whether the set uses `*` anywhere (RFC 7162 forbids it in QRESYNC's known-uids and
    /// seq-match-data).
    pub fn has_star(&self) -> bool {
        self.ranges
            .iter()
            .any(|&(a, b)| a == SeqBound::Star || b == SeqBound::Star)
    }

    /// The set as disjoint, ascending, inclusive intervals, with `*` as `largest` (ranges with
    /// `*` are left out when `largest` is 0). Costs O(r log r) for r ranges, never the size of
    /// the ranges: `1:4294967295` is one interval.
    pub fn intervals(&self, largest: u32) -> Vec<(u32, u32)> {
        let mut spans: Vec<(u32, u32)> = self
            .ranges
            .iter()
            .filter_map(|&range| Self::interval(range, largest))
            .collect();
        spans.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(spans.len());
        for (lo, hi) in spans {
            match merged.last_mut() {
                Some(last) if u64::from(lo) <= u64::from(last.1) + 1 => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        merged
    }

    /// The numbers of a set without `*`, in the order the client wrote them (each range
    /// ascending). Lazy: a caller that stops early never walks a huge range. `*` bounds are
    /// skipped (callers reject such sets first).
    pub fn numbers(&self) -> impl Iterator<Item = u32> + '_ {
        self.ranges.iter().flat_map(|&(a, b)| {
            let (lo, hi) = match (a, b) {
                (SeqBound::Number(lo), SeqBound::Number(hi)) => (lo, hi),
                // `*` has no value here: an empty range.
                _ => (1, 0),
            };
            lo..=hi
        })
    }

    /// The members present in `sorted` (strictly ascending numbers in use, e.g. every UID of the
    /// mailbox or `1..=exists`), ascending and without duplicates. `*` is the last element of
    /// `sorted`. Costs a binary search per range plus the output.
    pub fn select(&self, sorted: &[u32]) -> Vec<u32> {
        let mut out = Vec::new();
        for (start, end) in self.position_spans(sorted) {
            out.extend_from_slice(&sorted[start..end]);
        }
        out
    }

    /// Like [`select`](Self::select), returning indexes into `sorted` instead of the numbers.
    pub fn positions(&self, sorted: &[u32]) -> Vec<usize> {
        let mut out = Vec::new();
        for (start, end) in self.position_spans(sorted) {
            out.extend(start..end);
        }
        out
    }

    /// Disjoint, ascending half-open index spans of `sorted` covered by the set.
    fn position_spans(&self, sorted: &[u32]) -> Vec<(usize, usize)> {
        let Some(&largest) = sorted.last() else {
            return Vec::new();
        };
        let mut spans: Vec<(usize, usize)> = self
            .ranges
            .iter()
            .filter_map(|&range| Self::interval(range, largest))
            .map(|(lo, hi)| {
                (
                    sorted.partition_point(|&x| x < lo),
                    sorted.partition_point(|&x| x <= hi),
                )
            })
            .filter(|(start, end)| start < end)
            .collect();
        spans.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
        for (start, end) in spans {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }
}

/// Parses one end of a range: `*` or a non-zero number without leading zeros that fits in u32.
fn parse_bound(bytes: &[u8]) -> Result<SeqBound, ParseError> {
    if bytes == b"*" {
        return Ok(SeqBound::Star);
    }
    match bytes.first() {
        Some(b'1'..=b'9') => {}
        _ => return Err(ParseError::BadAtom),
    }
    let mut value: u32 = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return Err(ParseError::BadAtom);
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u32::from(b - b'0')))
            .ok_or(ParseError::BadAtom)?;
    }
    Ok(SeqBound::Number(value))
}

/// Writes disjoint ascending inclusive ranges as a sequence set, e.g. `1:3,7,9:10` (for
/// VANISHED, whose UID lists come as ranges and may cover UIDs that never existed, so they are
/// never expanded). Adjacent ranges are joined. Writes nothing for an empty slice.
pub fn write_ranges(ranges: &[(u32, u32)], out: &mut Vec<u8>) {
    let mut pending: Option<(u32, u32)> = None;
    let flush = |range: (u32, u32), first: bool, out: &mut Vec<u8>| {
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(range.0.to_string().as_bytes());
        if range.1 != range.0 {
            out.push(b':');
            out.extend_from_slice(range.1.to_string().as_bytes());
        }
    };
    let mut first = true;
    for &(lo, hi) in ranges {
        pending = match pending {
            Some((a, b)) if u64::from(lo) <= u64::from(b) + 1 => Some((a, b.max(hi))),
            Some(done) => {
                flush(done, first, out);
                first = false;
                Some((lo, hi))
            }
            None => Some((lo, hi)),
        };
    }
    if let Some(done) = pending {
        flush(done, first, out);
    }
}

/// Writes `sorted` (ascending; duplicates are skipped) as a compact sequence set, e.g.
/// `1:3,7,9:10`. Writes nothing for an empty slice.
pub fn write_compact(sorted: &[u32], out: &mut Vec<u8>) {
    let mut iter = sorted.iter().copied();
    let Some(first) = iter.next() else {
        return;
    };
    let mut start = first;
    let mut end = first;
    let mut wrote_any = false;
    let mut flush = |start: u32, end: u32, out: &mut Vec<u8>| {
        if wrote_any {
            out.push(b',');
        }
        wrote_any = true;
        out.extend_from_slice(start.to_string().as_bytes());
        if end != start {
            out.push(b':');
            out.extend_from_slice(end.to_string().as_bytes());
        }
    };
    for n in iter {
        if n == end {
            continue;
        }
        if end.checked_add(1) == Some(n) {
            end = n;
        } else {
            flush(start, end, out);
            start = n;
            end = n;
        }
    }
    flush(start, end, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use SeqBound::{Number as N, Star};

    #[test]
    fn saved_results_become_compact_sets() {
        let set = SequenceSet::of_ascending(&[2, 3, 4, 7, 9, 10]);
        assert_eq!(set.ranges(), &[(N(2), N(4)), (N(7), N(7)), (N(9), N(10))]);
        assert!(set.contains(3, 10) && !set.contains(5, 10));
        // The empty saved result names nothing, `*` included.
        let empty = SequenceSet::of_ascending(&[]);
        assert!(!empty.contains(1, 1));
        assert_eq!(empty.max_number(), None);
        assert!(empty.select(&[1, 2, 3]).is_empty());
        assert!(empty.intervals(5).is_empty());
        let top = SequenceSet::of_ascending(&[u32::MAX - 1, u32::MAX]);
        assert_eq!(top.ranges(), &[(N(u32::MAX - 1), N(u32::MAX))]);
    }

    fn set(s: &str) -> SequenceSet {
        SequenceSet::parse(s.as_bytes()).expect("valid sequence set")
    }

    #[test]
    fn intervals_numbers_and_ranges() {
        assert_eq!(set("7:9,1,2,4:*").intervals(6), vec![(1, 2), (4, 9)]);
        assert_eq!(set("7:9,4:*").intervals(5), vec![(4, 5), (7, 9)]);
        assert_eq!(set("3:*").intervals(0), vec![]);
        assert_eq!(set("1:4294967295").intervals(3), vec![(1, u32::MAX)]);
        assert!(set("1,3:*").has_star());
        assert!(!set("1,3:4").has_star());
        assert_eq!(set("5,1:3").numbers().collect::<Vec<_>>(), vec![5, 1, 2, 3]);
        assert_eq!(set("1:4294967295").numbers().take(2).count(), 2);
        let mut out = Vec::new();
        write_ranges(&[(1, 3), (4, 4), (7, 7), (9, u32::MAX)], &mut out);
        assert_eq!(out, b"1:4,7,9:4294967295");
        out.clear();
        write_ranges(&[], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn parses_forms() {
        assert_eq!(set("1").ranges(), &[(N(1), N(1))]);
        assert_eq!(set("1:5").ranges(), &[(N(1), N(5))]);
        assert_eq!(set("5:1").ranges(), &[(N(1), N(5))]);
        assert_eq!(set("*").ranges(), &[(Star, Star)]);
        assert_eq!(set("3:*").ranges(), &[(N(3), Star)]);
        assert_eq!(set("*:3").ranges(), &[(N(3), Star)]);
        assert_eq!(
            set("1,3:4,7:*").ranges(),
            &[(N(1), N(1)), (N(3), N(4)), (N(7), Star)]
        );
        assert_eq!(set("4294967295").ranges(), &[(N(u32::MAX), N(u32::MAX))]);
    }

    #[test]
    fn rejects_bad_sets() {
        for bad in [
            "",
            "0",
            "0:5",
            "5:0",
            "1,",
            ",1",
            "1,,2",
            "1:",
            ":1",
            "1:2:3",
            "a",
            "1a",
            "-1",
            "+1",
            "01",
            "4294967296",
            "99999999999999999999",
            "**",
            "1 2",
            "*,",
            "1:*:2",
        ] {
            assert_eq!(
                SequenceSet::parse(bad.as_bytes()),
                Err(ParseError::BadAtom),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn contains_with_star() {
        let s = set("1,3:4,7:*");
        let hits: Vec<u32> = (1..=10).filter(|&n| s.contains(n, 10)).collect();
        assert_eq!(hits, vec![1, 3, 4, 7, 8, 9, 10]);
        // n:* with n beyond the largest still holds the largest.
        let s = set("20:*");
        assert!(s.contains(10, 10));
        assert!(!s.contains(9, 10));
        // * alone is the largest.
        assert!(set("*").contains(5, 5));
        assert!(!set("*").contains(4, 5));
        // Empty mailbox: * matches nothing.
        assert!(!set("*").contains(0, 0));
        assert!(!set("1:*").contains(1, 0));
        assert!(set("1:3").contains(2, 0));
    }

    #[test]
    fn select_and_positions() {
        let uids = [2, 5, 9, 10, 11, 40];
        assert_eq!(set("1:*").select(&uids), uids.to_vec());
        assert_eq!(set("*").select(&uids), vec![40]);
        assert_eq!(set("100:*").select(&uids), vec![40]);
        assert_eq!(set("9:5,10,3:9,11").select(&uids), vec![5, 9, 10, 11]);
        assert_eq!(set("9:5,10,3:9,11").positions(&uids), vec![1, 2, 3, 4]);
        assert_eq!(set("12:39").select(&uids), Vec::<u32>::new());
        assert_eq!(set("1:*").select(&[]), Vec::<u32>::new());
        assert_eq!(set("1:3").positions(&[1, 2, 3]), vec![0, 1, 2]);
    }

    #[test]
    fn max_number_and_from_ranges() {
        assert_eq!(set("3,9:2,*").max_number(), Some(9));
        assert_eq!(set("*").max_number(), None);
        assert_eq!(
            SequenceSet::from_ranges(&[(N(5), N(2)), (Star, N(3))]),
            Some(set("2:5,3:*"))
        );
        assert_eq!(SequenceSet::from_ranges(&[]), None);
        assert_eq!(SequenceSet::from_ranges(&[(N(0), N(2))]), None);
    }

    #[test]
    fn compact_writing() {
        let w = |v: &[u32]| {
            let mut out = Vec::new();
            write_compact(v, &mut out);
            String::from_utf8(out).expect("ascii")
        };
        assert_eq!(w(&[]), "");
        assert_eq!(w(&[7]), "7");
        assert_eq!(w(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(w(&[1, 1, 2, 2, 4]), "1:2,4");
        assert_eq!(w(&[u32::MAX - 1, u32::MAX]), "4294967294:4294967295");
    }

    fn bound() -> impl Strategy<Value = SeqBound> {
        prop_oneof![4 => (1u32..60).prop_map(N), 1 => Just(Star)]
    }

    proptest! {
        #[test]
        fn select_equals_filtering_with_contains(
            ranges in prop::collection::vec((bound(), bound()), 1..6),
            numbers in prop::collection::btree_set(1u32..60, 0..30),
        ) {
            let s = SequenceSet::from_ranges(&ranges).expect("non-empty, no zero");
            let sorted: Vec<u32> = numbers.into_iter().collect();
            let largest = sorted.last().copied().unwrap_or(0);
            let expected: Vec<u32> =
                sorted.iter().copied().filter(|&n| s.contains(n, largest)).collect();
            prop_assert_eq!(s.select(&sorted), expected.clone());
            let via_positions: Vec<u32> = s.positions(&sorted).into_iter().map(|i| sorted[i]).collect();
            prop_assert_eq!(via_positions, expected);
        }

        #[test]
        fn compact_round_trips(numbers in prop::collection::btree_set(1u32..200, 1..40)) {
            let sorted: Vec<u32> = numbers.into_iter().collect();
            let mut out = Vec::new();
            write_compact(&sorted, &mut out);
            let parsed = SequenceSet::parse(&out).expect("compact output parses");
            let universe: Vec<u32> = (1..200).collect();
            prop_assert_eq!(parsed.select(&universe), sorted);
        }
    }
}
