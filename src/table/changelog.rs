//! The change log: what each write did to a table, kept until every view has seen it.
//!
//! A write that a view depends on adds, in the same atomic `WriteBatch` as the rows themselves,
//! log entries under `l` + sequence number (u64, big-endian): the table's id and the old and new
//! versions of every row it changed. After the write is durable the entries are handed to the
//! subscriber (the dataflow runtime). The runtime commits, with each epoch, the last sequence
//! number it has applied and deletes the entries up to it; after a crash it replays the rest.
//! Nothing acknowledged is lost, and nothing is applied twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::error::{Error, Result};
use crate::storage::{StorageError, Store, WriteBatch};

/// The storage tag of log entries.
pub const LOG_TAG: u8 = b'l';

/// Rows per log entry: a large write becomes several entries.
const ROWS_PER_ENTRY: usize = 8192;

/// The changes of one log entry.
#[derive(Debug, Clone)]
pub struct LoggedChange {
    /// Position in the log.
    pub seq: u64,
    /// The table changed.
    pub table: u32,
    /// Old versions of changed and deleted rows (stored values).
    pub deleted: Vec<Vec<u8>>,
    /// New versions of changed and inserted rows (stored values).
    pub inserted: Vec<Vec<u8>>,
}

/// Receives log entries once they are durable, in order.
pub type Subscriber = Arc<dyn Fn(Vec<LoggedChange>) + Send + Sync>;

/// Hands out sequence numbers and publishes entries. Writers hold the database's write lock
/// while they log, so entries are published in sequence order.
pub struct ChangeLog {
    next_seq: AtomicU64,
    /// The last entry handed to the subscriber: every write acknowledged so far is at or
    /// before it.
    published: AtomicU64,
    subscriber: RwLock<Option<Subscriber>>,
}

impl std::fmt::Debug for ChangeLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeLog")
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

impl ChangeLog {
    /// A log whose next entry gets `next_seq`.
    pub fn new(next_seq: u64) -> Self {
        Self {
            next_seq: AtomicU64::new(next_seq),
            published: AtomicU64::new(next_seq.saturating_sub(1)),
            subscriber: RwLock::new(None),
        }
    }

    /// The last entry published: FLUSH waits for the views to apply up to here.
    pub fn published_seq(&self) -> u64 {
        self.published.load(Ordering::SeqCst)
    }

    /// Sets who receives entries.
    pub fn subscribe(&self, subscriber: Subscriber) {
        *self.subscriber.write().unwrap_or_else(|e| e.into_inner()) = Some(subscriber);
    }

    /// Adds entries for `deleted` and `inserted` rows of `table` to `batch`; returns them, to
    /// [`ChangeLog::publish`] once `batch` is written.
    pub fn append(
        &self,
        batch: &mut WriteBatch,
        table: u32,
        mut deleted: Vec<Vec<u8>>,
        mut inserted: Vec<Vec<u8>>,
    ) -> Vec<LoggedChange> {
        let mut entries = Vec::new();
        while !deleted.is_empty() || !inserted.is_empty() {
            let d: Vec<_> = deleted.drain(..deleted.len().min(ROWS_PER_ENTRY)).collect();
            let room = ROWS_PER_ENTRY - d.len();
            let i: Vec<_> = inserted.drain(..inserted.len().min(room)).collect();
            let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
            let change = LoggedChange {
                seq,
                table,
                deleted: d,
                inserted: i,
            };
            batch.put(log_key(seq), encode(&change));
            entries.push(change);
        }
        entries
    }

    /// Hands durable entries to the subscriber.
    pub fn publish(&self, entries: Vec<LoggedChange>) {
        let Some(last) = entries.last().map(|e| e.seq) else {
            return;
        };
        let subscriber = self
            .subscriber
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(subscriber) = subscriber {
            subscriber(entries);
        }
        self.published.fetch_max(last, Ordering::SeqCst);
    }
}

/// The storage key of entry `seq`.
pub fn log_key(seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(LOG_TAG);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Every entry after `after`, in order.
pub fn read_after(store: &Store, after: u64) -> Result<Vec<LoggedChange>> {
    let mut entries = Vec::new();
    store.scan_prefix::<Error>(&[LOG_TAG], |key, value| {
        let seq = u64::from_be_bytes(key[1..9].try_into().unwrap_or([0; 8]));
        if seq > after {
            entries.push(decode(seq, value)?);
        }
        Ok(true)
    })?;
    Ok(entries)
}

/// The sequence number of the last entry in the log, if any.
pub fn last_logged(store: &Store) -> Result<Option<u64>> {
    let mut last = None;
    store.scan_prefix::<Error>(&[LOG_TAG], |key, _| {
        last = Some(u64::from_be_bytes(key[1..9].try_into().unwrap_or([0; 8])));
        Ok(true)
    })?;
    Ok(last)
}

fn encode(change: &LoggedChange) -> Vec<u8> {
    let size: usize = change
        .deleted
        .iter()
        .chain(&change.inserted)
        .map(|r| r.len() + 4)
        .sum();
    let mut out = Vec::with_capacity(12 + size);
    out.extend_from_slice(&change.table.to_be_bytes());
    for rows in [&change.deleted, &change.inserted] {
        out.extend_from_slice(&(rows.len() as u32).to_be_bytes());
        for row in rows {
            out.extend_from_slice(&(row.len() as u32).to_be_bytes());
            out.extend_from_slice(row);
        }
    }
    out
}

fn decode(seq: u64, bytes: &[u8]) -> Result<LoggedChange> {
    let corrupt = || Error::Storage(StorageError::Corrupt(format!("change log entry {seq}")));
    let mut at = 0usize;
    let u32_at = |at: &mut usize| -> Result<u32> {
        let b = bytes.get(*at..*at + 4).ok_or_else(corrupt)?;
        *at += 4;
        Ok(u32::from_be_bytes(b.try_into().map_err(|_| corrupt())?))
    };
    let table = u32_at(&mut at)?;
    let mut lists = Vec::with_capacity(2);
    for _ in 0..2 {
        let n = u32_at(&mut at)? as usize;
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            let len = u32_at(&mut at)? as usize;
            rows.push(bytes.get(at..at + len).ok_or_else(corrupt)?.to_vec());
            at += len;
        }
        lists.push(rows);
    }
    let inserted = lists.pop().unwrap_or_default();
    let deleted = lists.pop().unwrap_or_default();
    Ok(LoggedChange {
        seq,
        table,
        deleted,
        inserted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_large_writes_split() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let log = ChangeLog::new(1);
        let mut batch = WriteBatch::default();
        let inserted: Vec<Vec<u8>> = (0..ROWS_PER_ENTRY + 5).map(|i| vec![i as u8; 3]).collect();
        let entries = log.append(&mut batch, 7, vec![b"old".to_vec()], inserted.clone());
        store.write(batch).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].seq, 2);
        let read = read_after(&store, 0).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].deleted, vec![b"old".to_vec()]);
        let all: Vec<Vec<u8>> = read.iter().flat_map(|e| e.inserted.clone()).collect();
        assert_eq!(all, inserted);
        assert_eq!(read_after(&store, 1).unwrap().len(), 1);
        assert_eq!(last_logged(&store).unwrap(), Some(2));
    }
}
