//! Where reading a source stands, split by split.
//!
//! A source is read in splits: a Kafka topic's partitions, a file source's files (named, offsets
//! are line or row numbers), or the single split of a generated source, whose offsets are row
//! numbers. Each split has the offset its rows are read from (fixed
//! when the split is first seen: `scan.startup.mode` at CREATE, the start of a partition added
//! later), the next offset to read, the records read, and where its watermark stands. All of it
//! is committed with the views' state in every epoch, so after a crash reading resumes exactly
//! where the committed views end, and a view created later re-reads each split from its start
//! up to the same place.
//!
//! Late rows are judged split by split: a row is late when it is below the watermark of its own
//! split. Which rows are dropped then does not depend on how the splits' records interleave, so a
//! re-read drops the same rows. The source's watermark is the lowest of its splits' (of the
//! splits that have had a row), so no row on time in its split is below it.

use std::collections::BTreeMap;

use crate::table::watermark::WatermarkState;

/// One split's position and counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SplitState {
    /// The first offset read (where a re-read starts).
    pub start: i64,
    /// The next offset to read.
    pub next: i64,
    /// Records read from `start` to `next`.
    pub records: u64,
    /// The split's watermark, and its late and rejected records.
    pub mark: WatermarkState,
    /// Whether the split has been read to its end and has no more records (a file read).
    pub done: bool,
}

/// Every split of a source, by split number, and the names of the splits that have one (a file
/// source's files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Splits(pub BTreeMap<i32, SplitState>, pub BTreeMap<i32, String>);

/// Bytes of one encoded split in the first form: number, start, next, records, watermark state.
const ENCODED_SPLIT: usize = 4 + 8 + 8 + 8 + 25;

/// Tag of the first encoded form (the first byte), to tell it from the single row count stored
/// before sources had splits.
const FORMAT: u8 = 1;

/// Tag of the encoded form with the splits' count, a done flag per split and the names.
const FORMAT_NAMED: u8 = 2;

impl Splits {
    /// One split, `0`, starting at offset 0: sources whose offsets are row numbers.
    pub fn single() -> Self {
        Self(
            BTreeMap::from([(0, SplitState::default())]),
            BTreeMap::new(),
        )
    }

    /// Records read from every split.
    pub fn records(&self) -> u64 {
        self.0.values().map(|s| s.records).sum()
    }

    /// The splits' watermark states together: the lowest watermark of the splits that have one,
    /// and the late and rejected records of all.
    pub fn mark(&self) -> WatermarkState {
        let mut out = WatermarkState::default();
        for split in self.0.values() {
            if let Some(current) = split.mark.current {
                out.current = Some(out.current.map_or(current, |c| c.min(current)));
            }
            out.late += split.mark.late;
            out.rejected += split.mark.rejected;
        }
        out
    }

    /// Records that `records` more records of `split` were read, up to offset `next` (first
    /// seen: the split starts at `start`), of which `rejected` gave no row. Returns the split.
    pub fn advance(
        &mut self,
        split: i32,
        start: i64,
        next: i64,
        records: u64,
        rejected: u64,
    ) -> &mut SplitState {
        let state = self.0.entry(split).or_insert_with(|| SplitState {
            start,
            next: start,
            ..SplitState::default()
        });
        state.next = next;
        state.records += records;
        state.mark.rejected += rejected;
        state
    }

    /// Records a batch read from one split: [`Splits::advance`], the split's name, and whether
    /// it is read to its end. Returns the split.
    pub fn apply(&mut self, batch: &super::SourceBatch, rejected: u64) -> &mut SplitState {
        if let Some(name) = &batch.name {
            self.1.entry(batch.split).or_insert_with(|| name.clone());
        }
        let state = self.advance(
            batch.split,
            batch.start,
            batch.next,
            batch.records,
            rejected,
        );
        state.done |= batch.done;
        state
    }

    /// The stored form: the count of splits, each split (number, start, next, records,
    /// watermark state, done), then each name (split, length, text).
    pub fn encode(&self) -> Vec<u8> {
        let names: usize = self.1.values().map(|n| 8 + n.len()).sum();
        let mut out = Vec::with_capacity(5 + self.0.len() * (ENCODED_SPLIT + 1) + names);
        out.push(FORMAT_NAMED);
        out.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        for (split, state) in &self.0 {
            out.extend_from_slice(&split.to_be_bytes());
            out.extend_from_slice(&state.start.to_be_bytes());
            out.extend_from_slice(&state.next.to_be_bytes());
            out.extend_from_slice(&state.records.to_be_bytes());
            out.extend_from_slice(&state.mark.encode());
            out.push(u8::from(state.done));
        }
        for (split, name) in &self.1 {
            out.extend_from_slice(&split.to_be_bytes());
            out.extend_from_slice(&(name.len() as u32).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
        }
        out
    }

    /// Reads [`Splits::encode`]'s output; `legacy_mark` is the watermark state stored apart
    /// before sources had splits. A stored row count (8 bytes, the form before splits) is split
    /// 0 at that offset.
    pub fn decode(bytes: &[u8], legacy_mark: Option<WatermarkState>) -> Option<Self> {
        if bytes.len() == 8 {
            let rows = u64::from_be_bytes(bytes.try_into().ok()?);
            let state = SplitState {
                start: 0,
                next: rows as i64,
                records: rows,
                mark: legacy_mark.unwrap_or_default(),
                done: false,
            };
            return Some(Self(BTreeMap::from([(0, state)]), BTreeMap::new()));
        }
        let (&format, mut rest) = bytes.split_first()?;
        let (count, size) = match format {
            FORMAT if rest.len() % ENCODED_SPLIT == 0 => {
                (rest.len() / ENCODED_SPLIT, ENCODED_SPLIT)
            }
            FORMAT_NAMED => {
                let count = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
                rest = &rest[4..];
                (count, ENCODED_SPLIT + 1)
            }
            _ => return None,
        };
        let mut splits = BTreeMap::new();
        for _ in 0..count {
            let one = rest.get(..size)?;
            let word = |at: usize| -> Option<[u8; 8]> { one[at..at + 8].try_into().ok() };
            let split = i32::from_be_bytes(one[..4].try_into().ok()?);
            let state = SplitState {
                start: i64::from_be_bytes(word(4)?),
                next: i64::from_be_bytes(word(12)?),
                records: u64::from_be_bytes(word(20)?),
                mark: WatermarkState::decode(&one[28..ENCODED_SPLIT]).ok()?,
                done: one.get(ENCODED_SPLIT) == Some(&1),
            };
            splits.insert(split, state);
            rest = &rest[size..];
        }
        let mut names = BTreeMap::new();
        while !rest.is_empty() {
            let split = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
            let len = u32::from_be_bytes(rest.get(4..8)?.try_into().ok()?) as usize;
            let name = std::str::from_utf8(rest.get(8..8 + len)?).ok()?;
            names.insert(split, name.to_string());
            rest = &rest[8 + len..];
        }
        Some(Self(splits, names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        let mut splits = Splits::default();
        splits.0.insert(
            0,
            SplitState {
                start: 3,
                next: 10,
                records: 7,
                mark: WatermarkState {
                    current: Some(-5),
                    late: 1,
                    rejected: 2,
                },
                done: false,
            },
        );
        splits.0.insert(
            7,
            SplitState {
                start: 0,
                next: 1 << 40,
                records: 1 << 40,
                mark: WatermarkState::default(),
                done: true,
            },
        );
        splits
            .1
            .insert(7, "s3://bucket/day=1/part-0.parquet".into());
        assert_eq!(Splits::decode(&splits.encode(), None), Some(splits.clone()));
        assert_eq!(Splits::decode(&[FORMAT, 1, 2], None), None);
        assert_eq!(Splits::decode(&[FORMAT_NAMED, 0, 0, 0, 1, 2], None), None);
        // The first form, without done flags and names, still reads.
        let mut first = vec![FORMAT];
        first.extend_from_slice(&splits.encode()[5..5 + ENCODED_SPLIT]);
        let read = Splits::decode(&first, None).unwrap();
        assert_eq!(read.0[&0], splits.0[&0]);
        assert!(read.1.is_empty());
    }

    #[test]
    fn a_stored_row_count_is_split_zero() {
        let mark = WatermarkState {
            current: Some(9),
            late: 4,
            rejected: 0,
        };
        let splits = Splits::decode(&42u64.to_be_bytes(), Some(mark)).unwrap();
        assert_eq!(splits.records(), 42);
        assert_eq!(splits.0[&0].next, 42);
        assert_eq!(splits.mark(), mark);
    }

    #[test]
    fn the_watermark_is_the_lowest_of_the_splits_that_have_one() {
        let mut splits = Splits::default();
        for (split, current, late) in [(0, Some(50), 1), (1, Some(20), 2), (2, None, 0)] {
            let mark = WatermarkState {
                current,
                late,
                rejected: 0,
            };
            splits.0.insert(
                split,
                SplitState {
                    mark,
                    ..Default::default()
                },
            );
        }
        let mark = splits.mark();
        assert_eq!(mark.current, Some(20));
        assert_eq!(mark.late, 3);
    }
}
