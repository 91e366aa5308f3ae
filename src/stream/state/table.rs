//! The state table: keyed operator state with a cache of hot keys, shared by every stateful
//! operator.
//!
//! An operator keeps its state as records (an aggregate's group, a join key's rows, a memo's
//! remembered output) decoded in memory, each under a key in Arrow's row format. The table
//! knows which records are cached, which changed since the last checkpoint, and which keys are
//! known to have no stored record, so that
//!
//! - a record is read from RocksDB at most once while it stays cached, and the reads of a batch
//!   of changes go in one `multi_get`;
//! - a key known to be absent (a new group, when the operator's state started empty or the key
//!   was deleted) is never read;
//! - each changed record is written once per epoch, at the checkpoint, in key order;
//! - the records of every operator of every view together stay within the server's cache
//!   budget (`--state-cache-mb`): after each commit, a table over its share drops the records
//!   touched longest ago (all of them safely stored by then) and reads them back when they are
//!   needed again.
//!
//! How a record is laid out in storage is the operator's: it decodes what [`StateTable::load`]
//! read and encodes each changed record at [`StateTable::checkpoint`] (a record may span several
//! stored entries, such as an aggregate's value multisets).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use datafusion::common::HashMap;
use datafusion::parquet::bloom_filter::Sbbf;

use super::StateScope;
use crate::storage::WriteBatch;
use crate::stream::Result;

/// Memory the cached state of all views may take together: `--state-cache-mb`.
#[derive(Debug)]
pub struct CacheBudget {
    limit: AtomicUsize,
    used: AtomicUsize,
    /// Keys looked up in RocksDB because they were not cached, since the server started.
    reads: AtomicU64,
    /// Records dropped from the cache to stay within the limit, since the server started.
    evicted: AtomicU64,
}

impl CacheBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: AtomicUsize::new(bytes),
            used: AtomicUsize::new(0),
            reads: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        })
    }

    /// Sets the limit (at start, from the configuration).
    pub fn set_limit(&self, bytes: usize) {
        self.limit.store(bytes, Ordering::Relaxed);
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Bytes cached now, over all tables.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Keys looked up in RocksDB so far because they were not cached.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Records evicted so far.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Counts `bytes` more.
    pub fn add(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `bytes` less.
    pub fn sub(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(bytes))
            });
    }
}

/// The budget when nothing else is configured: 1 GiB.
pub const DEFAULT_CACHE_BYTES: usize = 1 << 30;

/// A record an operator keeps in a [`StateTable`].
pub trait Record {
    /// About how many bytes of memory the record takes (with its key), for the budget.
    fn size(&self) -> usize;
}

/// A count (a row's multiplicity).
impl Record for i64 {
    fn size(&self) -> usize {
        8
    }
}

/// Bytes, stored as they are (an index entry's value, a session's start).
impl Record for Vec<u8> {
    fn size(&self) -> usize {
        24 + self.len()
    }
}

/// A key that is its own record: an index entry.
impl Record for () {
    fn size(&self) -> usize {
        0
    }
}

/// A cached key: its record, or `None` when it has none.
#[derive(Debug)]
struct Slot<V> {
    record: Option<V>,
    /// Changed since the last checkpoint.
    dirty: bool,
    /// The epoch it was last touched in: eviction drops the oldest.
    touched: u64,
    /// The size counted for it in the budget.
    size: usize,
}

/// Bytes a cached key costs beyond its record: the key, the slot and the map's entry.
const SLOT_OVERHEAD: usize = 64;

/// One operator's keyed state (see the module docs).
#[derive(Debug)]
pub struct StateTable<V> {
    scope: StateScope,
    /// What every stored entry's key starts with.
    prefix: Vec<u8>,
    slots: HashMap<Box<[u8]>, Slot<V>>,
    /// Keys changed since the last checkpoint, each once.
    dirty: Vec<Box<[u8]>>,
    /// Ranges `[from, to)` of keys deleted since the last checkpoint.
    deleted: Vec<(Vec<u8>, Vec<u8>)>,
    /// Every stored record is cached: a key not cached has no record, without a read.
    complete: bool,
    /// Every key stored with a record since the table was opened with nothing stored (`None`
    /// when it was opened over stored records): a key it has never seen is absent, without a
    /// read, after eviction too.
    stored: Option<KeyFilter>,
    /// Bytes counted in the budget for this table.
    bytes: usize,
    epoch: u64,
    /// Reads from the store, for tests and statistics.
    reads: u64,
}

impl<V: Record> StateTable<V> {
    /// The records under `tag` in `scope`. When none is stored yet, the table knows that any
    /// key it has not cached is absent.
    pub fn new(scope: StateScope, tag: u8) -> Result<Self> {
        let prefix = scope.key(tag, &[]);
        Self::at(scope, prefix)
    }

    /// The records stored under `prefix` (which need not be in the scope's own key space: a
    /// view's rows), read and written through `scope`'s store, cached within its budget.
    pub fn at(scope: StateScope, prefix: Vec<u8>) -> Result<Self> {
        let mut complete = true;
        scope
            .store()
            .scan_prefix::<crate::stream::StreamError>(&prefix, |_, _| {
                complete = false;
                Ok(false)
            })?;
        Ok(Self {
            scope,
            prefix,
            slots: HashMap::new(),
            dirty: Vec::new(),
            deleted: Vec::new(),
            stored: complete.then(KeyFilter::default),
            complete,
            bytes: 0,
            epoch: 0,
            reads: 0,
        })
    }

    /// The scope the records are stored in.
    pub fn scope(&self) -> &StateScope {
        &self.scope
    }

    /// The storage key of the entry `key` (the prefix of a record spanning several entries).
    pub fn storage_key(&self, key: &[u8]) -> Vec<u8> {
        [self.prefix.as_slice(), key].concat()
    }

    /// Records read from the store so far.
    pub fn reads(&self) -> u64 {
        self.reads
    }

    /// Number of cached keys.
    pub fn cached(&self) -> usize {
        self.slots.len()
    }

    /// Makes sure `keys` are cached: the missing ones are read in one call (unless known to be
    /// absent) and decoded by `decode(key, stored value)`.
    pub fn load(
        &mut self,
        keys: &[&[u8]],
        mut decode: impl FnMut(&[u8], Vec<u8>) -> Result<V>,
    ) -> Result<()> {
        let mut missing: Vec<&[u8]> = keys
            .iter()
            .copied()
            .filter(|k| !self.slots.contains_key(*k))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort_unstable();
        missing.dedup();
        // Keys in a range deleted since the last checkpoint have no record, whatever is stored;
        // neither have keys never stored.
        let (gone, missing): (Vec<&[u8]>, Vec<&[u8]>) =
            missing.into_iter().partition(|k| self.known_absent(k));
        for key in gone {
            self.insert_clean(key, None);
        }
        if missing.is_empty() {
            return Ok(());
        }
        let found = if self.complete {
            vec![None; missing.len()]
        } else {
            let storage_keys: Vec<Vec<u8>> = missing.iter().map(|k| self.storage_key(k)).collect();
            self.reads += storage_keys.len() as u64;
            self.scope
                .budget()
                .reads
                .fetch_add(storage_keys.len() as u64, Ordering::Relaxed);
            self.scope.store().multi_get(&storage_keys)?
        };
        for (key, value) in missing.into_iter().zip(found) {
            let record = value.map(|v| decode(key, v)).transpose()?;
            self.insert_clean(key, record);
        }
        Ok(())
    }

    /// [`StateTable::load`] for records that span several entries, all under the record's
    /// key: each missing key's entries are read with one prefix scan and decoded by
    /// `decode(key, [(rest of the entry's key, value)])` (never called without entries).
    pub fn load_entries(
        &mut self,
        keys: &[&[u8]],
        mut decode: impl FnMut(&[u8], Vec<(Box<[u8]>, Vec<u8>)>) -> Result<V>,
    ) -> Result<()> {
        for &key in keys {
            self.load_with(key, |store, prefix| {
                let mut entries = Vec::new();
                store.scan_prefix::<crate::stream::StreamError>(prefix, |k, v| {
                    entries.push((k[prefix.len()..].into(), v.to_vec()));
                    Ok(true)
                })?;
                if entries.is_empty() {
                    return Ok(None);
                }
                decode(key, entries).map(Some)
            })?;
        }
        Ok(())
    }

    /// The record of a cached key (`None` inside: the key has none); `None` when not cached.
    pub fn get(&self, key: &[u8]) -> Option<&Option<V>> {
        self.slots.get(key).map(|s| &s.record)
    }

    /// The record of a cached key to change, marking it changed; `None` when not cached.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Option<V>> {
        let slot = self.slots.get_mut(key)?;
        slot.touched = self.epoch;
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(key.into());
        }
        Some(&mut slot.record)
    }

    /// Sets the record of `key` (`None`: it has none), cached or not, without reading what is
    /// stored: a write that does not depend on the old record.
    pub fn put(&mut self, key: &[u8], record: Option<V>) {
        if !self.slots.contains_key(key) {
            self.insert_clean(key, None);
        }
        if let Some(slot) = self.get_mut(key) {
            *slot = record;
        }
    }

    /// Marks a cached key as used now, so that eviction keeps it longer: for records read
    /// without being changed.
    pub fn touch(&mut self, key: &[u8]) {
        if let Some(slot) = self.slots.get_mut(key) {
            slot.touched = self.epoch;
        }
    }

    /// Changes the record of a cached key by `change` without marking it changed, for a change
    /// the caller writes itself (a stored entry deleted directly); nothing when not cached.
    pub fn update_unchanged(&mut self, key: &[u8], change: impl FnOnce(&mut Option<V>)) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        change(&mut slot.record);
        resize(slot, key, self.scope.budget(), &mut self.bytes);
    }

    /// The keys changed since the last checkpoint, in the order they first changed.
    pub fn changed(&self) -> &[Box<[u8]>] {
        &self.dirty
    }

    /// The record of the `i`th key of [`StateTable::changed`], to change.
    pub fn changed_mut(&mut self, i: usize) -> Option<&mut Option<V>> {
        let key = self.dirty.get(i)?;
        self.slots.get_mut(key).map(|s| &mut s.record)
    }

    /// The keys in `[from, to)` (to the end of the table when `to` is `None`) that have a record
    /// now, in order: the stored ones merged with those changed since the last checkpoint.
    pub fn keys_in_range(&mut self, from: &[u8], to: Option<&[u8]>) -> Result<Vec<Box<[u8]>>> {
        self.scan_range(from, to, |_, _, _| Ok(true))
    }

    /// [`StateTable::keys_in_range`], caching the stored records read on the way (decoded by
    /// `decode(key, stored value)`), so that [`StateTable::get`] has every key returned.
    pub fn load_range(
        &mut self,
        from: &[u8],
        to: Option<&[u8]>,
        mut decode: impl FnMut(&[u8], Vec<u8>) -> Result<V>,
    ) -> Result<Vec<Box<[u8]>>> {
        self.scan_range(from, to, |table, key, value| {
            let record = decode(key, value)?;
            table.insert_clean(key, Some(record));
            Ok(true)
        })
    }

    /// The keys in `[from, to)` with a record now; `read(table, key, stored value)` is called for
    /// each stored key not cached, and returns whether it has a record.
    fn scan_range(
        &mut self,
        from: &[u8],
        to: Option<&[u8]>,
        mut read: impl FnMut(&mut Self, &[u8], Vec<u8>) -> Result<bool>,
    ) -> Result<Vec<Box<[u8]>>> {
        let in_span = |k: &[u8]| k >= from && to.is_none_or(|to| k < to);
        // Cached keys that are not dirty are stored as they are cached: the scan finds them.
        // Dirty ones decide for themselves.
        let mut keys: Vec<Box<[u8]>> = Vec::new();
        let mut stored: Vec<(Box<[u8]>, Vec<u8>)> = Vec::new();
        let prefix = self.prefix.len();
        let end = match to {
            Some(to) => self.storage_key(to),
            None => super::upper_bound(&self.prefix),
        };
        self.scope
            .store()
            .scan_range::<crate::stream::StreamError>(&self.storage_key(from), &end, |k, v| {
                let key = &k[prefix..];
                if !in_ranges(&self.deleted, key) {
                    stored.push((key.into(), v.to_vec()));
                }
                Ok(true)
            })?;
        for (key, value) in stored {
            match self.slots.get(&key) {
                Some(slot) => {
                    if slot.record.is_some() {
                        keys.push(key);
                    }
                }
                None => {
                    if read(self, &key, value)? {
                        keys.push(key);
                    }
                }
            }
        }
        for key in &self.dirty {
            if in_span(key) && self.slots.get(key).is_some_and(|s| s.record.is_some()) {
                keys.push(key.clone());
            }
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// Whether `key` (not cached) is known to have no record without reading the store: every
    /// stored record is cached, or the key was never stored, or its range was deleted since the
    /// last checkpoint.
    fn known_absent(&self, key: &[u8]) -> bool {
        self.complete
            || self.stored.as_ref().is_some_and(|f| !f.may_contain(key))
            || in_ranges(&self.deleted, key)
    }

    /// Caches a record read by the caller (`None`: the key has none) as stored: not changed.
    fn insert_clean(&mut self, key: &[u8], record: Option<V>) {
        let size = SLOT_OVERHEAD + key.len() + record.as_ref().map_or(0, Record::size);
        self.bytes += size;
        self.scope.budget().add(size);
        self.slots.insert(
            key.into(),
            Slot {
                record,
                dirty: false,
                touched: self.epoch,
                size,
            },
        );
    }

    /// Makes sure `key` is cached without reading it: a key known to have no record is cached as
    /// such, any other as `unknown()` (a record standing for what is stored, read later).
    pub fn cache_unread(&mut self, key: &[u8], unknown: impl FnOnce() -> V) {
        if self.slots.contains_key(key) {
            return;
        }
        if self.known_absent(key) {
            self.insert_clean(key, None);
        } else {
            self.insert_clean(key, Some(unknown()));
        }
    }

    /// Makes sure `key` is cached: when it is not (and may be stored), `read(store, storage
    /// key)` reads its record; a key known to have none is cached as such without a read.
    pub fn load_with(
        &mut self,
        key: &[u8],
        read: impl FnOnce(&crate::storage::Store, &[u8]) -> Result<Option<V>>,
    ) -> Result<()> {
        if self.slots.contains_key(key) {
            return Ok(());
        }
        if self.known_absent(key) {
            self.insert_clean(key, None);
            return Ok(());
        }
        let storage_key = self.storage_key(key);
        let record = read(self.scope.store(), &storage_key)?;
        self.reads += 1;
        self.scope.budget().reads.fetch_add(1, Ordering::Relaxed);
        self.insert_clean(key, record);
        Ok(())
    }

    /// The first keys after `after` (all keys when `None`) that have a record now, in key
    /// order: at least `n` of them, or every one when there are fewer. Stored records read on
    /// the way are cached, decoded by `decode(key, stored value)`.
    pub fn first_after(
        &mut self,
        after: Option<&[u8]>,
        n: usize,
        mut decode: impl FnMut(&[u8], Vec<u8>) -> Result<V>,
    ) -> Result<Vec<Box<[u8]>>> {
        let mut out: Vec<Box<[u8]>> = Vec::new();
        // Keys from `from` on, inclusive: just past `after`.
        let mut from: Vec<u8> = after.map_or_else(Vec::new, |a| [a, &[0]].concat());
        let prefix = self.storage_key(&[]).len();
        let end = super::upper_bound(&self.storage_key(&[]));
        let batch = n.max(16);
        // Records written since the last checkpoint, in order: merged span by span below.
        let mut changed: Vec<Box<[u8]>> = self
            .dirty
            .iter()
            .filter(|k| {
                k.as_ref() >= from.as_slice()
                    && self.slots.get(*k).is_some_and(|s| s.record.is_some())
            })
            .cloned()
            .collect();
        changed.sort_unstable();
        let mut changed = changed.into_iter().peekable();
        loop {
            // The next stored entries; keys changed since the last checkpoint are merged below.
            let mut scanned: Vec<(Box<[u8]>, Vec<u8>)> = Vec::new();
            let mut exhausted = true;
            self.scope
                .store()
                .scan_range::<crate::stream::StreamError>(
                    &self.storage_key(&from),
                    &end,
                    |k, v| {
                        scanned.push((k[prefix..].into(), v.to_vec()));
                        if scanned.len() >= batch {
                            exhausted = false;
                            return Ok(false);
                        }
                        Ok(true)
                    },
                )?;
            let last: Option<Box<[u8]>> = if exhausted {
                None
            } else {
                scanned.last().map(|(k, _)| k.clone())
            };
            let mut found: Vec<Box<[u8]>> = Vec::new();
            for (key, value) in scanned {
                if in_ranges(&self.deleted, &key) {
                    continue;
                }
                match self.slots.get(&key) {
                    // A cached key decides (it may have changed since it was stored).
                    Some(slot) => {
                        if slot.record.is_some() {
                            found.push(key);
                        }
                    }
                    None => {
                        let record = decode(&key, value)?;
                        self.insert_clean(&key, Some(record));
                        found.push(key);
                    }
                }
            }
            // Records written since the last checkpoint in the span scanned.
            while let Some(key) =
                changed.next_if(|k| last.as_ref().is_none_or(|l| k.as_ref() <= l.as_ref()))
            {
                found.push(key);
            }
            found.sort_unstable();
            found.dedup();
            out.extend(found);
            match last {
                Some(last) if out.len() < n => from = [&last[..], &[0]].concat(),
                _ => return Ok(out),
            }
        }
    }

    /// Deletes every record with a key in `[from, to)`, stored or cached; the stored entries go
    /// at the checkpoint (an entry is any key under the record's, so records spanning several
    /// entries go whole when `to` is past their last entry).
    pub fn delete_range(&mut self, from: &[u8], to: &[u8]) {
        let budget = self.scope.budget().clone();
        let mut freed = 0;
        self.slots.retain(|k, s| {
            let gone = k.as_ref() >= from && k.as_ref() < to;
            if gone {
                freed += s.size;
            }
            !gone
        });
        self.bytes -= freed;
        budget.sub(freed);
        self.dirty
            .retain(|k| !(k.as_ref() >= from && k.as_ref() < to));
        self.deleted.push((from.to_vec(), to.to_vec()));
    }

    /// Adds the changed records to `batch`, in key order: `write(key, record, batch)` writes a
    /// record, or deletes its entries when the key has none (it may also set the record to
    /// `None` once written: the key stays cached as known to have none). Then the deleted
    /// ranges.
    pub fn checkpoint(
        &mut self,
        batch: &mut WriteBatch,
        mut write: impl FnMut(&[u8], &mut Option<V>, &mut WriteBatch) -> Result<()>,
    ) -> Result<()> {
        // Ranges first: a record written after its range was deleted stays.
        for (from, to) in std::mem::take(&mut self.deleted) {
            batch.delete_range(self.storage_key(&from), self.storage_key(&to));
        }
        let dirty = std::mem::take(&mut self.dirty);
        let budget = self.scope.budget().clone();
        for i in crate::storage::key_order(dirty.len(), |i| &dirty[i]) {
            let key = &dirty[i];
            let Some(slot) = self.slots.get_mut(key) else {
                continue;
            };
            slot.dirty = false;
            write(key, &mut slot.record, batch)?;
            resize(slot, key, &budget, &mut self.bytes);
            if slot.record.is_some()
                && let Some(filter) = &mut self.stored
            {
                let grown = filter.insert(key);
                self.bytes += grown;
                budget.add(grown);
            }
        }
        Ok(())
    }

    /// [`StateTable::checkpoint`] for records stored as one entry each under their key:
    /// `encode(record, value)` appends a record's stored value; a key without one is deleted.
    pub fn checkpoint_entries(
        &mut self,
        batch: &mut WriteBatch,
        mut encode: impl FnMut(&V, &mut Vec<u8>),
    ) -> Result<()> {
        let prefix = self.storage_key(&[]);
        let (mut key, mut value) = (prefix.clone(), Vec::new());
        self.checkpoint(batch, |k, slot, batch| {
            key.truncate(prefix.len());
            key.extend_from_slice(k);
            match slot {
                Some(record) => {
                    value.clear();
                    encode(record, &mut value);
                    batch.put(&key, &value);
                }
                None => batch.delete(&key),
            }
            Ok(())
        })
    }

    /// After a commit: when the cached state of all views is over the budget, drops this
    /// table's records touched longest ago until it holds its share (three quarters of the
    /// budget, in proportion to what each table holds). Changed records are never dropped.
    pub fn evict(&mut self) {
        self.epoch += 1;
        let budget = self.scope.budget().clone();
        let (used, limit) = (budget.used(), budget.limit());
        if used <= limit || self.bytes == 0 {
            return;
        }
        let target = (self.bytes as u128 * (limit as u128 * 3 / 4) / used as u128) as usize;
        // The filter of stored keys stays while it is well within the table's share; past that
        // it goes (keys not cached are then read, as over a table opened with stored records).
        let filter = self.stored.as_ref().map_or(0, KeyFilter::bytes);
        if filter > target / 2 {
            self.stored = None;
            self.bytes -= filter;
            budget.sub(filter);
        }
        let mut ages: Vec<(u64, usize)> = self
            .slots
            .values()
            .filter(|s| !s.dirty)
            .map(|s| (s.touched, s.size))
            .collect();
        ages.sort_unstable_by_key(|(touched, _)| *touched);
        // Drop whole epochs, oldest first, until what is left fits.
        let mut left = self.bytes;
        let mut below = 0;
        for (touched, size) in ages {
            if left <= target {
                break;
            }
            left -= size;
            below = touched + 1;
        }
        let (mut freed, mut dropped) = (0, 0);
        self.slots.retain(|_, s| {
            let drop = !s.dirty && s.touched < below;
            if drop {
                freed += s.size;
                dropped += 1;
            }
            !drop
        });
        budget.evicted.fetch_add(dropped, Ordering::Relaxed);
        if freed > 0 {
            self.complete = false;
            self.bytes -= freed;
            budget.sub(freed);
        }
    }
}

/// A filter of keys (a scalable Bloom filter, of Parquet's split-block filters): it may say a
/// key it never saw is there (at most about 2% of the time), never that a key it saw is not.
/// Filters of doubling capacity are added as keys come, each with half the false positives of
/// the one before, so that all of them together have about twice the first's.
#[derive(Default)]
struct KeyFilter {
    /// Each filter with the keys it holds and the keys it was made for.
    filters: Vec<(Sbbf, usize, usize)>,
}

impl std::fmt::Debug for KeyFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFilter")
            .field("filters", &self.filters.len())
            .field("bytes", &self.bytes())
            .finish()
    }
}

/// Keys the first filter holds, and its false positives.
const FIRST_FILTER_KEYS: usize = 1 << 10;
const FIRST_FILTER_FPP: f64 = 0.01;

impl KeyFilter {
    /// Notes `key`; returns the bytes the filter grew by.
    fn insert(&mut self, key: &[u8]) -> usize {
        if self.may_contain(key) {
            return 0;
        }
        let mut grown = 0;
        if self
            .filters
            .last()
            .is_none_or(|(_, keys, capacity)| keys >= capacity)
        {
            let stage = self.filters.len();
            let capacity = FIRST_FILTER_KEYS << stage;
            let fpp = FIRST_FILTER_FPP / f64::from(1u32 << stage.min(30));
            let filter = Sbbf::new_with_ndv_fpp(capacity as u64, fpp)
                .unwrap_or_else(|_| Sbbf::new_with_num_of_bytes(capacity * 2));
            grown = filter.num_blocks() * SBBF_BLOCK_BYTES;
            self.filters.push((filter, 0, capacity));
        }
        if let Some((filter, keys, _)) = self.filters.last_mut() {
            filter.insert(key);
            *keys += 1;
        }
        grown
    }

    /// The memory the filter takes.
    fn bytes(&self) -> usize {
        self.filters
            .iter()
            .map(|(f, _, _)| f.num_blocks() * SBBF_BLOCK_BYTES)
            .sum()
    }

    /// Whether `key` may have been noted.
    fn may_contain(&self, key: &[u8]) -> bool {
        self.filters.iter().any(|(f, _, _)| f.check(key))
    }
}

/// Bytes in one block of a split-block Bloom filter (eight 32-bit words).
const SBBF_BLOCK_BYTES: usize = 32;

/// Counts `slot`'s record at its current size, in `budget` and in its table's `bytes`.
fn resize<V: Record>(slot: &mut Slot<V>, key: &[u8], budget: &CacheBudget, bytes: &mut usize) {
    let size = SLOT_OVERHEAD + key.len() + slot.record.as_ref().map_or(0, Record::size);
    if size >= slot.size {
        budget.add(size - slot.size);
        *bytes += size - slot.size;
    } else {
        budget.sub(slot.size - size);
        *bytes -= slot.size - size;
    }
    slot.size = size;
}

/// Whether `key` is in one of the ranges `[from, to)`.
fn in_ranges(ranges: &[(Vec<u8>, Vec<u8>)], key: &[u8]) -> bool {
    ranges
        .iter()
        .any(|(from, to)| key >= from.as_slice() && key < to.as_slice())
}

impl<V> Drop for StateTable<V> {
    fn drop(&mut self) {
        self.scope.budget().sub(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Store;

    fn decode(_: &[u8], bytes: Vec<u8>) -> Result<i64> {
        Ok(i64::from_be_bytes(bytes.try_into().unwrap()))
    }

    fn commit(table: &mut StateTable<i64>, store: &Store) -> usize {
        let mut batch = WriteBatch::default();
        let mut written = 0;
        table
            .checkpoint(&mut batch, |key, record, batch| {
                written += 1;
                let k = table_key(key);
                match record {
                    Some(v) => batch.put(k, v.to_be_bytes()),
                    None => batch.delete(k),
                }
                Ok(())
            })
            .unwrap();
        store.write(batch).unwrap();
        table.evict();
        written
    }

    /// The storage key of `key` in view 1, operator 0, tag `k`.
    fn table_key(key: &[u8]) -> Vec<u8> {
        let mut k = vec![super::super::STATE_TAG, 0, 0, 0, 1, 0, 0, b'k'];
        k.extend_from_slice(key);
        k
    }

    fn add(table: &mut StateTable<i64>, key: u64, by: i64) {
        let key = key.to_be_bytes();
        table.load(&[&key], decode).unwrap();
        let slot = table.get_mut(&key).unwrap();
        *slot.get_or_insert(0) += by;
    }

    #[test]
    fn keys_of_a_new_table_are_never_read_and_each_changed_key_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let scope = StateScope::new(store.clone(), 1, 0);
        let mut table: StateTable<i64> = StateTable::new(scope, b'k').unwrap();
        for round in 0..3 {
            for key in 0..100u64 {
                add(&mut table, key, round + 1);
            }
        }
        assert_eq!(table.reads(), 0, "a new table knows its keys are absent");
        assert_eq!(commit(&mut table, &store), 100, "one write per changed key");
        assert_eq!(
            store.get(&table_key(&7u64.to_be_bytes())).unwrap(),
            Some(6i64.to_be_bytes().to_vec())
        );
    }

    #[test]
    fn keys_never_stored_are_not_read_after_eviction() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let budget = CacheBudget::new(64 << 10);
        let scope = StateScope::new(store.clone(), 1, 0).with_budget(budget.clone());
        let mut table: StateTable<i64> = StateTable::new(scope, b'k').unwrap();
        for key in 0..5_000u64 {
            add(&mut table, key, 1);
            if key % 500 == 499 {
                commit(&mut table, &store);
            }
        }
        assert!(table.cached() < 5_000, "{}", table.cached());
        let before = table.reads();
        // New keys: the filter knows they were never stored.
        for key in 1_000_000..1_010_000u64 {
            add(&mut table, key, 1);
        }
        let unread = 10_000 - (table.reads() - before);
        assert!(
            unread > 9_500,
            "only {unread} of 10,000 new keys were not read"
        );
        // Stored keys are read back, exactly.
        let before = table.reads();
        add(&mut table, 7, 1);
        assert_eq!(table.reads(), before + 1);
        assert_eq!(table.get(&7u64.to_be_bytes()), Some(&Some(2)));
    }

    #[test]
    fn the_key_filter_never_forgets_a_key() {
        let mut filter = KeyFilter::default();
        let keys: Vec<[u8; 8]> = (0..200_000u64).map(|k| (k * 7919).to_be_bytes()).collect();
        for key in &keys {
            filter.insert(key);
        }
        assert!(keys.iter().all(|k| filter.may_contain(k)));
        let false_positives = (0..100_000u64)
            .filter(|k| filter.may_contain(&(k * 7919 + 1).to_be_bytes()))
            .count();
        assert!(
            false_positives < 5_000,
            "{false_positives} false positives in 100,000"
        );
    }

    #[test]
    fn records_over_the_budget_are_evicted_and_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let budget = CacheBudget::new(64 << 10);
        let scope = StateScope::new(store.clone(), 1, 0).with_budget(budget.clone());
        let mut table: StateTable<i64> = StateTable::new(scope.clone(), b'k').unwrap();
        let keys = 10_000u64;
        for key in 0..keys {
            add(&mut table, key, key as i64);
            if key % 1000 == 999 {
                commit(&mut table, &store);
                assert!(
                    budget.used() <= budget.limit(),
                    "{} cached bytes over a budget of {}",
                    budget.used(),
                    budget.limit()
                );
            }
        }
        assert!(table.cached() < keys as usize / 2, "{}", table.cached());
        // Every key again: the evicted ones are read back, and the sums are exact.
        for key in 0..keys {
            add(&mut table, key, 1);
        }
        assert!(table.reads() > 0);
        commit(&mut table, &store);
        for key in [0u64, 1, 4_321, keys - 1] {
            assert_eq!(
                store.get(&table_key(&key.to_be_bytes())).unwrap(),
                Some((key as i64 + 1).to_be_bytes().to_vec())
            );
        }
        // A table reopened over the stored records reads them.
        drop(table);
        assert_eq!(budget.used(), 0, "a dropped table gives its memory back");
        let mut reopened: StateTable<i64> = StateTable::new(scope, b'k').unwrap();
        add(&mut reopened, 5, 0);
        assert_eq!(reopened.get(&5u64.to_be_bytes()), Some(&Some(6)));
    }

    #[test]
    fn a_key_written_after_its_range_was_deleted_is_kept_and_stored_keys_in_it_read_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let scope = StateScope::new(store.clone(), 1, 0);
        let mut table: StateTable<i64> = StateTable::new(scope.clone(), b'k').unwrap();
        for key in 0..10u64 {
            add(&mut table, key, 1);
        }
        commit(&mut table, &store);
        // Over stored state, nothing cached.
        let mut table: StateTable<i64> = StateTable::new(scope.clone(), b'k').unwrap();
        let (from, to) = (0u64.to_be_bytes(), 5u64.to_be_bytes());
        table.delete_range(&from, &to);
        assert_eq!(table.reads(), 0);
        // A stored key in the range reads as absent; one written again survives the checkpoint.
        add(&mut table, 3, 7);
        assert_eq!(table.get(&3u64.to_be_bytes()), Some(&Some(7)));
        assert!(table.keys_in_range(&from, Some(&to)).unwrap().len() == 1);
        commit(&mut table, &store);
        let mut reopened: StateTable<i64> = StateTable::new(scope, b'k').unwrap();
        let kept = reopened.keys_in_range(&from, Some(&to)).unwrap();
        assert_eq!(kept, vec![Box::from(&3u64.to_be_bytes()[..])]);
        add(&mut reopened, 3, 0);
        assert_eq!(reopened.get(&3u64.to_be_bytes()), Some(&Some(7)));
    }

    #[test]
    fn a_deleted_range_goes_from_the_cache_and_from_storage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let scope = StateScope::new(store.clone(), 1, 0);
        let mut table: StateTable<i64> = StateTable::new(scope.clone(), b'k').unwrap();
        for key in 0..10u64 {
            add(&mut table, key, 1);
        }
        commit(&mut table, &store);
        add(&mut table, 2, 1);
        let (from, to) = (0u64.to_be_bytes(), 5u64.to_be_bytes());
        assert_eq!(table.keys_in_range(&from, Some(&to)).unwrap().len(), 5);
        table.delete_range(&from, &to);
        assert_eq!(table.keys_in_range(&from, Some(&to)).unwrap().len(), 0);
        commit(&mut table, &store);
        let mut reopened: StateTable<i64> = StateTable::new(scope, b'k').unwrap();
        assert_eq!(reopened.keys_in_range(&from, Some(&to)).unwrap().len(), 0);
        let rest = reopened.keys_in_range(&from, None).unwrap();
        assert_eq!(rest.first().map(|k| k.to_vec()), Some(to.to_vec()));
        assert_eq!(rest.len(), 5);
    }

    #[test]
    fn the_first_keys_after_a_key_merge_stored_and_changed_records_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let scope = StateScope::new(store.clone(), 1, 0);
        let mut table: StateTable<i64> = StateTable::new(scope.clone(), b'k').unwrap();
        for key in (0..100u64).step_by(2) {
            add(&mut table, key, 1);
        }
        commit(&mut table, &store);
        let mut table: StateTable<i64> = StateTable::new(scope, b'k').unwrap();
        // Not yet stored: 5 comes, 6 goes, 40..50 go by range.
        add(&mut table, 5, 1);
        add(&mut table, 6, -1);
        *table.get_mut(&6u64.to_be_bytes()).unwrap() = None;
        table.delete_range(&40u64.to_be_bytes(), &50u64.to_be_bytes());
        let first = |table: &mut StateTable<i64>, after: Option<u64>, n| -> Vec<u64> {
            let after = after.map(u64::to_be_bytes);
            table
                .first_after(after.as_ref().map(|a| &a[..]), n, decode)
                .unwrap()
                .iter()
                .map(|k| u64::from_be_bytes(k[..].try_into().unwrap()))
                .collect()
        };
        assert_eq!(first(&mut table, None, 5)[..5], [0, 2, 4, 5, 8]);
        assert_eq!(first(&mut table, Some(4), 2)[..2], [5, 8]);
        let tail = first(&mut table, Some(36), 3);
        assert_eq!(tail[..3], [38, 50, 52]);
        // Fewer than asked: every one that is left.
        assert_eq!(first(&mut table, Some(94), 10), vec![96, 98]);
        // What was read on the way is cached.
        assert_eq!(table.get(&52u64.to_be_bytes()), Some(&Some(1)));
    }

    #[test]
    fn records_of_several_entries_load_with_one_scan_each() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let scope = StateScope::new(store.clone(), 1, 0);
        let mut batch = WriteBatch::default();
        for (key, part) in [(1u8, 1u8), (1, 2), (1, 3), (2, 1)] {
            batch.put(table_key(&[key, part]), [part]);
        }
        store.write(batch).unwrap();
        let mut table: StateTable<i64> = StateTable::new(scope, b'k').unwrap();
        let sum = |_: &[u8], entries: Vec<(Box<[u8]>, Vec<u8>)>| -> Result<i64> {
            Ok(entries.iter().map(|(_, v)| i64::from(v[0])).sum())
        };
        table.load_entries(&[&[1], &[2], &[3]], sum).unwrap();
        assert_eq!(table.get(&[1]), Some(&Some(6)));
        assert_eq!(table.get(&[2]), Some(&Some(1)));
        assert_eq!(table.get(&[3]), Some(&None));
        assert_eq!(table.reads(), 3);
        table.load_entries(&[&[1], &[3]], sum).unwrap();
        assert_eq!(table.reads(), 3, "cached keys are not read again");
    }
}
