//! Webhook sources: `CREATE SOURCE clicks (...) WITH (connector = 'webhook') FORMAT PLAIN ENCODE
//! JSON`, fed by applications over HTTP (`POST /ingest/clicks`, see `server::http`).
//!
//! A request's records are checked against the columns, then written to RocksDB under the
//! source's id and a sequence number, in one synced write, before the request is answered: an
//! acknowledged record is durable and has its position. The source reads them back by sequence
//! number (one split whose offsets are sequence numbers), so a view created later, or a restart,
//! reads exactly the same records. Requests are serialized while they take their numbers and
//! write, so the records are stored in the order of their numbers.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;

use super::encoding::{Encoding, RecordDecoder};
use super::{Result, Source, SourceBatch, SourceDef, SourceError, SourceReader, Splits};
use crate::storage::{Store, WriteBatch};

/// Records per batch read back.
const BATCH: usize = 8192;

/// The prefix of source `id`'s records.
pub fn records_prefix(id: u32) -> Vec<u8> {
    let mut key = b"mwebhook/".to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// Storage key of the sequence number after source `id`'s last stored record.
pub fn next_key(id: u32) -> Vec<u8> {
    let mut key = b"mwebhook_next/".to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn record_key(id: u32, seq: u64) -> Vec<u8> {
    let mut key = records_prefix(id);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// A source fed over HTTP.
#[derive(Debug, Clone)]
pub struct WebhookSource {
    id: u32,
    schema: SchemaRef,
    decoder: RecordDecoder,
    store: Store,
    /// The next sequence number; held while a request's records are written.
    next: Arc<tokio::sync::Mutex<u64>>,
}

impl WebhookSource {
    /// The source `def` defines, its records in `store`.
    pub fn new(schema: SchemaRef, def: &SourceDef, store: Store) -> Result<Self> {
        if let Some(unknown) = def
            .options
            .keys()
            .find(|k| !["connector", "rejected.retention.rows"].contains(&k.as_str()))
        {
            return Err(SourceError::Option(format!(
                "unknown option {unknown} for connector 'webhook'"
            )));
        }
        if !def.includes.is_empty() {
            return Err(SourceError::Option(
                "INCLUDE is for kafka sources, not 'webhook'".into(),
            ));
        }
        let format = def.format.as_ref().ok_or_else(|| {
            SourceError::Option("a webhook source needs FORMAT PLAIN ENCODE JSON".into())
        })?;
        if !format.format.eq_ignore_ascii_case("plain")
            || !format.encode.eq_ignore_ascii_case("json")
        {
            return Err(SourceError::NotSupported(format!(
                "FORMAT {} ENCODE {} for webhook sources (FORMAT PLAIN ENCODE JSON)",
                format.format.to_uppercase(),
                format.encode.to_uppercase()
            )));
        }
        let encoding = Encoding::new(&format.encode, &format.options)?;
        let next = store
            .get(&next_key(def.id))
            .map_err(|e| SourceError::Unavailable(format!("reading the source: {e}")))?
            .and_then(|v| v.try_into().ok())
            .map_or(0, u64::from_be_bytes);
        Ok(Self {
            id: def.id,
            decoder: RecordDecoder::new(schema.clone(), encoding),
            schema,
            store,
            next: Arc::new(tokio::sync::Mutex::new(next)),
        })
    }

    /// Checks `records` (one JSON object each) against the columns and stores them all, or
    /// none: the error names the first record that does not fit (from 0). Returns how many
    /// were stored.
    pub async fn accept(&self, records: &[&[u8]]) -> std::result::Result<u64, String> {
        let (_, _, failures) = self.decoder.decode(records);
        if let Some((i, error)) = failures.first() {
            return Err(format!("record {i}: {error}"));
        }
        let mut next = self.next.lock().await;
        let first = *next;
        let end = first + records.len() as u64;
        let mut batch = WriteBatch::default();
        for (n, record) in records.iter().enumerate() {
            batch.put(record_key(self.id, first + n as u64), record);
        }
        batch.put(next_key(self.id), end.to_be_bytes());
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.write(batch))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        *next = end;
        Ok(records.len() as u64)
    }

    /// Up to `max` records from sequence number `from`, stopping before `end`.
    fn read(&self, from: u64, end: Option<u64>, max: usize) -> Result<Option<SourceBatch>> {
        let mut payloads: Vec<Vec<u8>> = Vec::new();
        let mut last = from;
        let start = record_key(self.id, from);
        let stop = match end {
            Some(end) => record_key(self.id, end),
            None => record_key(self.id, u64::MAX),
        };
        self.store
            .scan_range::<crate::storage::StorageError>(&start, &stop, |key, value| {
                last = key
                    .get(key.len() - 8..)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(last);
                payloads.push(value.to_vec());
                Ok(payloads.len() < max)
            })
            .map_err(|e| SourceError::Unavailable(format!("reading the records: {e}")))?;
        if payloads.is_empty() {
            return Ok(None);
        }
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let (rows, _, failures) = self.decoder.decode(&refs);
        let rejected = failures
            .into_iter()
            .map(|(i, error)| super::Rejected {
                split: 0,
                offset: from as i64 + i as i64,
                payload: payloads[i].clone(),
                error,
            })
            .collect();
        Ok(Some(SourceBatch {
            split: 0,
            start: 0,
            rows,
            next: last as i64 + 1,
            records: payloads.len() as u64,
            rejected,
            changes: None,
            name: None,
            done: false,
        }))
    }
}

impl Source for WebhookSource {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn reader(&self, from: &Splits) -> Result<Box<dyn SourceReader>> {
        Ok(Box::new(Stored {
            source: Arc::new(self.clone()),
            next: from.0.get(&0).map_or(0, |s| s.next.max(0) as u64),
            end: None,
        }))
    }

    fn reread(&self, until: &Splits) -> Result<Box<dyn SourceReader>> {
        Ok(Box::new(Stored {
            source: Arc::new(self.clone()),
            next: 0,
            end: Some(until.0.get(&0).map_or(0, |s| s.next.max(0) as u64)),
        }))
    }

    fn bound(&self) -> Option<u64> {
        None
    }

    /// Every record acknowledged so far is read (what FLUSH waits for).
    fn read_to_end(&self, splits: &Splits) -> bool {
        let read = splits.0.get(&0).map_or(0, |s| s.next.max(0) as u64);
        match self.next.try_lock() {
            Ok(next) => read >= *next,
            // A request is being stored: not yet.
            Err(_) => false,
        }
    }

    fn rate(&self) -> Option<f64> {
        None
    }

    fn as_webhook(&self) -> Option<&WebhookSource> {
        Some(self)
    }
}

/// Reads stored records from a sequence number, up to `end` if given.
struct Stored {
    source: Arc<WebhookSource>,
    next: u64,
    end: Option<u64>,
}

impl SourceReader for Stored {
    fn next(&mut self, max_rows: usize) -> Result<Option<SourceBatch>> {
        let batch = self
            .source
            .read(self.next, self.end, max_rows.clamp(1, BATCH))?;
        if let Some(batch) = &batch {
            self.next = batch.next as u64;
        }
        Ok(batch)
    }
}
