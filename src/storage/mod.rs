//! The RocksDB store: one database per server for the catalog, every table row and counters.
//!
//! This layer knows bytes, not tables: it offers point reads, ordered prefix scans over a
//! consistent snapshot, and atomic multi-key writes. It imports nothing of Augur.
//!
//! # Key space
//!
//! Every key starts with a one-byte tag naming its kind; the layers above own what follows:
//!
//! | tag   | what                              | rest of the key              |
//! |-------|-----------------------------------|------------------------------|
//! | `c`   | catalog entries                   | kind byte, object id (u32 BE) |
//! | `m`   | counters and metadata             | a name                       |
//! | `t`   | table rows                        | table id (u32 BE), row key   |

use std::path::Path;
use std::sync::Arc;

use rocksdb::{DB, Direction, IteratorMode, Options, ReadOptions, WriteOptions};

/// Errors of the storage layer. All of them are internal faults (SQLSTATE `XX000`).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// RocksDB reported an error.
    #[error("storage error: {0}")]
    RocksDb(#[from] rocksdb::Error),
    /// Stored bytes could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

/// The storage layer's result type.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A set of puts and deletes applied atomically by [`Store::write`].
pub type WriteBatch = rocksdb::WriteBatch;

/// Handle to the RocksDB database. Cheap to clone; safe to share between threads.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    sync: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.db.path())
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database in `path`.
    ///
    /// With `sync`, every [`Store::write`] waits until its WAL record is on disk (`fsync`), so an
    /// acknowledged write survives a power loss; without it, it survives a process crash.
    pub fn open(path: &Path, sync: bool) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Snappy);
        opts.increase_parallelism(2);
        // Bloom filters: most reads of operator state at a new key find nothing.
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        table.set_block_cache(&rocksdb::Cache::new_lru_cache(256 << 20));
        opts.set_block_based_table_factory(&table);
        opts.set_write_buffer_size(128 << 20);
        // After a machine crash the database is what the log holds up to its first lost or torn
        // record: always a prefix of the writes, which is what lets the dataflow commit epochs
        // without waiting for the disk (see `stream::runtime`).
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        let db = DB::open(&opts, path)?;
        Ok(Self {
            db: Arc::new(db),
            sync,
        })
    }

    /// Reads one key.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(key)?)
    }

    /// Reads one key and passes its value to `f` without copying it.
    pub fn get_with<T>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> T) -> Result<Option<T>> {
        Ok(self.db.get_pinned(key)?.map(|v| f(&v)))
    }

    /// Reads many keys at once; the result is in the order of `keys`.
    pub fn multi_get(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.db
            .multi_get(keys)
            .into_iter()
            .map(|r| r.map_err(StorageError::from))
            .collect()
    }

    /// Visits every key starting with `prefix`, in key order, from one consistent snapshot.
    /// `f` returns `false` to stop early.
    pub fn scan_prefix<E>(
        &self,
        prefix: &[u8],
        f: impl FnMut(&[u8], &[u8]) -> std::result::Result<bool, E>,
    ) -> std::result::Result<(), E>
    where
        E: From<StorageError>,
    {
        self.snapshot().scan_prefix(prefix, f)
    }

    /// How many keys start with `prefix`, and their keys' and values' bytes.
    pub fn measure_prefix(&self, prefix: &[u8]) -> Result<(usize, usize)> {
        let (mut entries, mut bytes) = (0, 0);
        self.scan_prefix::<StorageError>(prefix, |k, v| {
            entries += 1;
            bytes += k.len() + v.len();
            Ok(true)
        })?;
        Ok((entries, bytes))
    }

    /// Visits every key in `[from, to)`, in key order, from one consistent snapshot. `f`
    /// returns `false` to stop early.
    pub fn scan_range<E>(
        &self,
        from: &[u8],
        to: &[u8],
        f: impl FnMut(&[u8], &[u8]) -> std::result::Result<bool, E>,
    ) -> std::result::Result<(), E>
    where
        E: From<StorageError>,
    {
        self.snapshot().scan_range(from, to, f)
    }

    /// Applies `batch` atomically.
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(self.sync);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }

    /// Applies `batch` atomically without waiting for the disk: it becomes durable with the next
    /// write that waits (RocksDB's log is written in order), or is lost in a machine crash.
    pub fn write_unsynced(&self, batch: WriteBatch) -> Result<()> {
        self.db.write(batch)?;
        Ok(())
    }

    /// Deletes every key starting with `prefix`, atomically with `batch`.
    pub fn delete_prefix_in(&self, batch: &mut WriteBatch, prefix: &[u8]) {
        match prefix_upper_bound(prefix) {
            Some(upper) => batch.delete_range(prefix, upper.as_slice()),
            None => batch.delete_range(prefix, &[0xffu8; 16][..]),
        }
    }
}

/// A consistent view of the whole store at one moment, kept as long as it is held: every read
/// through it sees exactly the writes before it was taken.
pub struct Snapshot {
    // Declared before `_db`: dropped first, while the database it points into still lives.
    snapshot: rocksdb::SnapshotWithThreadMode<'static, DB>,
    _db: Arc<DB>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").finish()
    }
}

impl Store {
    /// A snapshot of the store as it is now.
    pub fn snapshot(&self) -> Snapshot {
        let snapshot = self.db.snapshot();
        // SAFETY: the snapshot borrows the database; the `Arc` stored beside it keeps the
        // database alive for as long as the snapshot exists, and the field order drops the
        // snapshot first.
        let snapshot = unsafe {
            std::mem::transmute::<
                rocksdb::SnapshotWithThreadMode<'_, DB>,
                rocksdb::SnapshotWithThreadMode<'static, DB>,
            >(snapshot)
        };
        Snapshot {
            snapshot,
            _db: self.db.clone(),
        }
    }
}

impl Snapshot {
    /// Reads one key.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.snapshot.get(key)?)
    }

    /// Visits every key starting with `prefix`, in key order. `f` returns `false` to stop.
    pub fn scan_prefix<E>(
        &self,
        prefix: &[u8],
        f: impl FnMut(&[u8], &[u8]) -> std::result::Result<bool, E>,
    ) -> std::result::Result<(), E>
    where
        E: From<StorageError>,
    {
        match prefix_upper_bound(prefix) {
            Some(upper) => self.scan_range(prefix, &upper, f),
            None => self.scan_from(prefix, None, f),
        }
    }

    /// Visits every key in `[from, to)`, in key order. `f` returns `false` to stop.
    pub fn scan_range<E>(
        &self,
        from: &[u8],
        to: &[u8],
        f: impl FnMut(&[u8], &[u8]) -> std::result::Result<bool, E>,
    ) -> std::result::Result<(), E>
    where
        E: From<StorageError>,
    {
        self.scan_from(from, Some(to), f)
    }

    fn scan_from<E>(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        mut f: impl FnMut(&[u8], &[u8]) -> std::result::Result<bool, E>,
    ) -> std::result::Result<(), E>
    where
        E: From<StorageError>,
    {
        let mut read_opts = ReadOptions::default();
        if let Some(to) = to {
            read_opts.set_iterate_upper_bound(to.to_vec());
        }
        let iter = self
            .snapshot
            .iterator_opt(IteratorMode::From(from, Direction::Forward), read_opts);
        for item in iter {
            let (key, value) = item.map_err(StorageError::from)?;
            if !f(&key, &value)? {
                break;
            }
        }
        Ok(())
    }
}

/// The first 16 bytes of `key` as one big-endian number (zeros after a shorter key's end).
#[inline]
fn key_head(key: &[u8]) -> u128 {
    if let Some(head) = key.first_chunk::<16>() {
        return u128::from_be_bytes(*head);
    }
    let mut bytes = [0u8; 16];
    for (to, from) in bytes.iter_mut().zip(key) {
        *to = *from;
    }
    u128::from_be_bytes(bytes)
}

/// Orders keys whose heads ([`key_head`]) are equal: either both go on past 16 bytes, or the
/// shorter key is the other's prefix (padding made them equal where the longer one has zeros).
#[inline]
fn compare_tails(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    if a.len() > 16 && b.len() > 16 {
        a[16..].cmp(&b[16..])
    } else {
        a.len().cmp(&b.len())
    }
}

/// The positions `0..n` in the order of their keys `key(i)` (bytewise, as RocksDB orders them),
/// equal keys in position order. Faster than sorting by the keys themselves for the short keys
/// of operator state and view rows: each key's first 16 bytes are read once, as one number,
/// and compared as numbers; the rest only where those are equal.
pub fn key_order<'a>(n: usize, key: impl Fn(usize) -> &'a [u8]) -> Vec<usize> {
    let mut heads: Vec<(u128, usize)> = (0..n).map(|i| (key_head(key(i)), i)).collect();
    heads.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| compare_tails(key(a.1), key(b.1)))
            .then(a.1.cmp(&b.1))
    });
    heads.into_iter().map(|(_, i)| i).collect()
}

/// The smallest key greater than every key starting with `prefix`, if there is one.
pub fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < 0xff {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_as_bytes() {
        let keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![1],
            vec![1, 0],
            vec![1, 2],
            vec![1; 16],
            [vec![1; 16], vec![0]].concat(),
            [vec![1; 16], vec![2]].concat(),
            [vec![1; 16], vec![2, 0]].concat(),
            vec![1; 20],
            vec![2; 3],
            vec![255; 17],
        ];
        for a in &keys {
            for b in &keys {
                let pair = [a, b];
                let first = key_order(2, |i| pair[i])[0];
                let expected = if b < a { 1 } else { 0 };
                assert_eq!(first, expected, "{a:?} against {b:?}");
            }
        }
        let mut sorted: Vec<usize> = (0..keys.len()).rev().collect();
        sorted.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
        let reversed: Vec<&Vec<u8>> = keys.iter().rev().collect();
        let order = key_order(reversed.len(), |i| reversed[i]);
        let by_order: Vec<&Vec<u8>> = order.iter().map(|&i| reversed[i]).collect();
        let expected: Vec<&Vec<u8>> = sorted.iter().map(|&i| &keys[i]).collect();
        assert_eq!(by_order, expected);
        // Equal keys keep their positions' order.
        let twice = [vec![1u8, 2], vec![0u8], vec![1u8, 2]];
        assert_eq!(key_order(3, |i| &twice[i]), vec![1, 0, 2]);
    }

    #[test]
    fn upper_bound_carries() {
        assert_eq!(prefix_upper_bound(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_upper_bound(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_upper_bound(&[0xff, 0xff]), None);
    }

    #[test]
    fn scan_sees_only_the_prefix_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let mut batch = WriteBatch::default();
        for key in [&b"a1"[..], b"b2", b"b1", b"c1"] {
            batch.put(key, key);
        }
        store.write(batch).unwrap();
        let mut seen = Vec::new();
        store
            .scan_prefix::<StorageError>(b"b", |k, _| {
                seen.push(k.to_vec());
                Ok(true)
            })
            .unwrap();
        assert_eq!(seen, vec![b"b1".to_vec(), b"b2".to_vec()]);

        let mut batch = WriteBatch::default();
        store.delete_prefix_in(&mut batch, b"b");
        store.write(batch).unwrap();
        assert_eq!(store.get(b"b1").unwrap(), None);
        assert_eq!(store.get(b"a1").unwrap(), Some(b"a1".to_vec()));
    }
}
