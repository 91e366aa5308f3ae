//! State kept per partition in key order: the rows of a window operator's partitions (OVER,
//! SESSION), read in ranges and deleted in ranges.
//!
//! A partition is one record of a [`StateTable`]. The first time it is needed its entries
//! (stored under the partition's key) are read with one prefix scan; a partition of up to
//! [`WHOLE_ENTRIES`] entries is then kept whole in memory, in key order, within the cache
//! budget, and read without touching the store. A larger one keeps only what changed since the
//! last checkpoint, and each range read scans the store under those changes. Either way each
//! entry changed is written once at the checkpoint, and a write or a range deletion to a
//! partition not in memory reads nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use super::{Record, StateScope, StateTable, upper_bound};
use crate::storage::{Store, WriteBatch};
use crate::stream::{Result, StreamError};

/// Partitions of up to this many entries are kept whole in memory.
pub const WHOLE_ENTRIES: usize = 4096;

/// An entry's key (relative to its partition's) and value.
pub type Entry = (Box<[u8]>, Box<[u8]>);

/// Keys `[from, to)` (`None`: to the end).
type KeyRange = (Box<[u8]>, Option<Box<[u8]>>);

/// The bounds of `[from, to)` over a map of keys.
type Bounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// One partition: all its entries (`whole`), or those changed since the last checkpoint.
#[derive(Debug, Default)]
pub struct Sorted {
    /// Entries by key; `None` marks one deleted since the last checkpoint.
    entries: BTreeMap<Box<[u8]>, Option<Box<[u8]>>>,
    changed: BTreeSet<Box<[u8]>>,
    /// Ranges `[from, to)` (`None`: to the end) deleted since the last checkpoint, of a
    /// partition not held whole.
    deleted: Vec<KeyRange>,
    /// Every stored entry is in `entries`.
    whole: bool,
    /// Bytes of the entries' keys and values.
    bytes: usize,
}

impl Record for Sorted {
    fn size(&self) -> usize {
        48 + 64 * self.entries.len() + self.bytes + 32 * self.changed.len()
    }
}

/// Whether `key` is in `[from, to)`.
fn within(key: &[u8], from: &[u8], to: Option<&[u8]>) -> bool {
    key >= from && to.is_none_or(|to| key < to)
}

impl Sorted {
    /// A partition with no entries, all of them known.
    fn empty() -> Self {
        Sorted {
            whole: true,
            ..Sorted::default()
        }
    }

    fn bounds<'a>(from: &'a [u8], to: Option<&'a [u8]>) -> Option<Bounds<'a>> {
        match to {
            Some(to) if to <= from => None,
            Some(to) => Some((Bound::Included(from), Bound::Excluded(to))),
            None => Some((Bound::Included(from), Bound::Unbounded)),
        }
    }

    /// The entries held in memory in `[from, to)`, deletions included.
    fn held<'a>(
        &'a self,
        from: &'a [u8],
        to: Option<&'a [u8]>,
    ) -> impl Iterator<Item = (&'a Box<[u8]>, &'a Option<Box<[u8]>>)> + 'a {
        Self::bounds(from, to)
            .into_iter()
            .flat_map(|bounds| self.entries.range::<[u8], _>(bounds))
    }

    fn is_deleted(&self, key: &[u8]) -> bool {
        self.deleted
            .iter()
            .any(|(from, to)| within(key, from, to.as_deref()))
    }

    /// Sets `key` to `value`, or deletes it with `None`.
    fn set(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        self.bytes += key.len() + value.as_ref().map_or(0, Vec::len);
        if let Some(old) = self
            .entries
            .insert(key.into(), value.map(Vec::into_boxed_slice))
        {
            self.bytes -= key.len() + old.map_or(0, |v| v.len());
        }
        if !self.changed.contains(key) {
            self.changed.insert(key.into());
        }
    }

    /// Deletes the entries in `[from, to)`.
    fn delete_range(&mut self, from: &[u8], to: Option<&[u8]>) {
        let keys: Vec<Box<[u8]>> = self
            .held(from, to)
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.set(&key, None);
        }
        if !self.whole {
            self.deleted.push((from.into(), to.map(Into::into)));
        }
    }

    /// Writes the ranges deleted, then the entries changed, under `prefix` (the partition's
    /// storage key); keeps what a partition held whole or nothing.
    fn write(&mut self, prefix: &[u8], batch: &mut WriteBatch) {
        let key = |part: &[u8]| [prefix, part].concat();
        for (from, to) in std::mem::take(&mut self.deleted) {
            let end = match to {
                Some(to) => key(&to),
                None => upper_bound(prefix),
            };
            batch.delete_range(key(&from), end);
        }
        for changed in std::mem::take(&mut self.changed) {
            match self.entries.get(&changed) {
                Some(Some(value)) => batch.put(key(&changed), value),
                _ => batch.delete(key(&changed)),
            }
        }
        if self.whole {
            let bytes = &mut self.bytes;
            self.entries.retain(|k, v| {
                if v.is_none() {
                    *bytes -= k.len();
                }
                v.is_some()
            });
        } else {
            self.entries.clear();
            self.bytes = 0;
        }
    }

    /// Whether the partition is known to have no entries.
    fn is_empty(&self) -> bool {
        self.whole && self.entries.values().all(Option::is_none)
    }
}

/// Partitions under one tag of an operator's state, each a [`Sorted`] record.
#[derive(Debug)]
pub struct Partitions {
    table: StateTable<Sorted>,
}

impl Partitions {
    /// The partitions stored under `tag` in `scope`.
    pub fn new(scope: StateScope, tag: u8) -> Result<Self> {
        Ok(Self {
            table: StateTable::new(scope, tag)?,
        })
    }

    /// Makes sure `partition` is cached, reading its first entries with one prefix scan.
    fn load(&mut self, partition: &[u8]) -> Result<()> {
        self.table.load_with(partition, |store, prefix| {
            let mut sorted = Sorted::empty();
            store.scan_prefix::<StreamError>(prefix, |k, v| {
                if sorted.entries.len() == WHOLE_ENTRIES {
                    sorted.whole = false;
                    return Ok(false);
                }
                sorted.bytes += k.len() - prefix.len() + v.len();
                sorted
                    .entries
                    .insert(k[prefix.len()..].into(), Some(v.into()));
                Ok(true)
            })?;
            if !sorted.whole {
                sorted = Sorted::default();
            }
            Ok((!sorted.is_empty()).then_some(sorted))
        })?;
        self.table.touch(partition);
        Ok(())
    }

    /// The cached partition, to read.
    fn cached(&self, partition: &[u8]) -> Result<Option<&Sorted>> {
        match self.table.get(partition) {
            Some(slot) => Ok(slot.as_ref()),
            None => Err(StreamError::Internal("a partition not loaded".into())),
        }
    }

    /// The partition to change, a new one when it has no entries.
    fn cached_mut(&mut self, partition: &[u8]) -> Result<&mut Sorted> {
        match self.table.get_mut(partition) {
            Some(slot) => Ok(slot.get_or_insert_with(Sorted::empty)),
            None => Err(StreamError::Internal("a partition not loaded".into())),
        }
    }

    /// The entries of `partition` in `[from, to)` (to its end when `to` is `None`), in order.
    pub fn range(
        &mut self,
        partition: &[u8],
        from: &[u8],
        to: Option<&[u8]>,
    ) -> Result<Vec<Entry>> {
        self.load(partition)?;
        let Some(sorted) = self.cached(partition)? else {
            return Ok(Vec::new());
        };
        let held = sorted.held(from, to);
        if sorted.whole {
            return Ok(held
                .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
                .collect());
        }
        let mut found: BTreeMap<Box<[u8]>, Box<[u8]>> = BTreeMap::new();
        scan(
            self.table.scope().store(),
            &self.table.storage_key(partition),
            from,
            to,
            |k, v| {
                if !sorted.is_deleted(k) {
                    found.insert(k.into(), v.into());
                }
                Ok(true)
            },
        )?;
        for (k, v) in held {
            match v {
                Some(v) => found.insert(k.clone(), v.clone()),
                None => found.remove(k),
            };
        }
        Ok(found.into_iter().collect())
    }

    /// The first entry of `partition` at or after `from`.
    pub fn first(&mut self, partition: &[u8], from: &[u8]) -> Result<Option<Entry>> {
        self.load(partition)?;
        let Some(sorted) = self.cached(partition)? else {
            return Ok(None);
        };
        let held = sorted
            .held(from, None)
            .find_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())));
        if sorted.whole {
            return Ok(held);
        }
        let mut stored = None;
        scan(
            self.table.scope().store(),
            &self.table.storage_key(partition),
            from,
            None,
            |k, v| {
                if sorted.is_deleted(k) || sorted.entries.get(k).is_some_and(Option::is_none) {
                    return Ok(true);
                }
                stored = Some((k.into(), v.into()));
                Ok(false)
            },
        )?;
        Ok(match (held, stored) {
            (Some(h), Some(s)) => Some(if h.0 <= s.0 { h } else { s }),
            (h, s) => h.or(s),
        })
    }

    /// Sets `key` of `partition` to `value`, or deletes it with `None`.
    pub fn set(&mut self, partition: &[u8], key: &[u8], value: Option<Vec<u8>>) -> Result<()> {
        // Not cached: the write goes at the checkpoint, nothing is read for it.
        self.table.cache_unread(partition, Sorted::default);
        self.cached_mut(partition)?.set(key, value);
        Ok(())
    }

    /// Deletes the entries of `partition` in `[from, to)` (to its end when `to` is `None`); a
    /// partition not in memory is not read for it.
    pub fn delete_range(&mut self, partition: &[u8], from: &[u8], to: Option<&[u8]>) -> Result<()> {
        self.table.cache_unread(partition, Sorted::default);
        self.cached_mut(partition)?.delete_range(from, to);
        Ok(())
    }

    /// Adds the entries changed since the last checkpoint to `batch`.
    pub fn checkpoint(&mut self, batch: &mut WriteBatch) -> Result<()> {
        let prefix = self.table.storage_key(&[]);
        let mut key = prefix.clone();
        self.table.checkpoint(batch, |partition, slot, batch| {
            if let Some(sorted) = slot {
                key.truncate(prefix.len());
                key.extend_from_slice(partition);
                sorted.write(&key, batch);
                if sorted.is_empty() {
                    *slot = None;
                }
            }
            Ok(())
        })
    }

    /// Drops partitions used longest ago when the cache is over its budget.
    pub fn evict(&mut self) {
        self.table.evict();
    }
}

/// Calls `f(key relative to prefix, value)` for the stored entries under `prefix` in
/// `[from, to)`, in order, while it returns true.
fn scan(
    store: &Store,
    prefix: &[u8],
    from: &[u8],
    to: Option<&[u8]>,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
) -> Result<()> {
    if Sorted::bounds(from, to).is_none() {
        return Ok(());
    }
    let end = match to {
        Some(to) => [prefix, to].concat(),
        None => upper_bound(prefix),
    };
    store.scan_range::<StreamError>(&[prefix, from].concat(), &end, |k, v| {
        f(&k[prefix.len()..], v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::state::CacheBudget;

    type Model = BTreeMap<(u8, Vec<u8>), Vec<u8>>;

    fn commit(partitions: &mut Partitions, store: &Store) {
        let mut batch = WriteBatch::default();
        partitions.checkpoint(&mut batch).unwrap();
        store.write(batch).unwrap();
        partitions.evict();
    }

    fn key(i: u32) -> Vec<u8> {
        i.to_be_bytes().to_vec()
    }

    fn model_range(
        model: &Model,
        p: u8,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        model
            .iter()
            .filter(|((q, k), _)| *q == p && within(k, from, to))
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect()
    }

    fn owned(entries: Vec<Entry>) -> Vec<(Vec<u8>, Vec<u8>)> {
        entries
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    /// Random writes, range deletions, range and first reads over partitions small enough to
    /// be held whole and one too large for it, through checkpoints, eviction and reopening:
    /// every read equals a map's.
    #[test]
    fn partitions_read_what_a_map_holds_whole_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let budget = CacheBudget::new(4 << 10);
        let scope = StateScope::new(store.clone(), 1, 0).with_budget(budget);
        let mut partitions = Partitions::new(scope.clone(), b'p').unwrap();
        let mut model = Model::new();
        // Partition 0 is larger than a partition held whole.
        let big = WHOLE_ENTRIES as u32 + 500;
        for i in 0..big {
            partitions.set(&[0], &key(i * 2), Some(vec![0, 1])).unwrap();
            model.insert((0, key(i * 2)), vec![0, 1]);
        }
        commit(&mut partitions, &store);
        let mut next = crate::stream::xorshift(0x2545_f491_4f6c_dd1d);
        for step in 0..3000u32 {
            let p = next(4) as u8;
            let span = if p == 0 { big as u64 * 2 } else { 64 };
            let a = next(span) as u32;
            let b = a + next(span / 4 + 1) as u32;
            match next(6) {
                0 | 1 => {
                    let value = vec![p, step as u8];
                    partitions.set(&[p], &key(a), Some(value.clone())).unwrap();
                    model.insert((p, key(a)), value);
                }
                2 => {
                    partitions.set(&[p], &key(a), None).unwrap();
                    model.remove(&(p, key(a)));
                }
                3 => {
                    let to = (next(4) > 0).then(|| key(b));
                    partitions
                        .delete_range(&[p], &key(a), to.as_deref())
                        .unwrap();
                    model.retain(|(q, k), _| !(*q == p && within(k, &key(a), to.as_deref())));
                }
                4 => {
                    let to = (next(4) > 0).then(|| key(b));
                    let got = owned(partitions.range(&[p], &key(a), to.as_deref()).unwrap());
                    assert_eq!(
                        got,
                        model_range(&model, p, &key(a), to.as_deref()),
                        "step {step}"
                    );
                }
                _ => {
                    let got = partitions.first(&[p], &key(a)).unwrap();
                    let want = model_range(&model, p, &key(a), None).into_iter().next();
                    assert_eq!(
                        got.map(|(k, v)| (k.to_vec(), v.to_vec())),
                        want,
                        "step {step}"
                    );
                }
            }
            if step % 97 == 0 {
                commit(&mut partitions, &store);
            }
            if step % 701 == 0 {
                commit(&mut partitions, &store);
                partitions = Partitions::new(scope.clone(), b'p').unwrap();
            }
        }
        commit(&mut partitions, &store);
        let mut reopened = Partitions::new(scope, b'p').unwrap();
        for p in 0..4u8 {
            let got = owned(reopened.range(&[p], &[], None).unwrap());
            assert_eq!(got, model_range(&model, p, &[], None), "partition {p}");
        }
    }

    #[test]
    fn writes_and_deletions_to_partitions_not_in_memory_read_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let scope = StateScope::new(store.clone(), 1, 0);
        let mut partitions = Partitions::new(scope.clone(), b'p').unwrap();
        for i in 0..10 {
            partitions.set(b"a", &key(i), Some(vec![1])).unwrap();
        }
        commit(&mut partitions, &store);
        let mut reopened = Partitions::new(scope, b'p').unwrap();
        reopened.delete_range(b"a", &key(0), Some(&key(5))).unwrap();
        reopened.set(b"a", &key(20), Some(vec![2])).unwrap();
        assert_eq!(reopened.table.reads(), 0);
        let keys: Vec<Vec<u8>> = owned(reopened.range(b"a", &[], None).unwrap())
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, [5, 6, 7, 8, 9, 20].map(key));
        commit(&mut reopened, &store);
        let first = reopened.first(b"a", &[]).unwrap().map(|(k, _)| k.to_vec());
        assert_eq!(first, Some(key(5)));
    }
}
