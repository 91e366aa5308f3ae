//! Changelog envelopes: records that say how a keyed table changes, not only what to append.
//!
//! - `FORMAT PLAIN`: each record is a row. In a table with a primary key, a row replaces the
//!   row with its key (RisingWave's tables with connectors do the same).
//! - `FORMAT UPSERT`: the record's key is the row's primary key (a JSON object with the key's
//!   columns, or a bare value for a one-column key) and its value the whole row; a record with
//!   no value (a tombstone) deletes the key's row.
//! - `FORMAT DEBEZIUM`: Debezium's envelope, `{"before", "after", "op"}`, with or without the
//!   converter's `{"schema", "payload"}` wrapper. `c` (create) and `r` (snapshot read) insert
//!   `after`, `u` replaces `before` by `after`, `d` deletes `before`; tombstones (no value) are
//!   skipped; another op is a rejected record.
//!
//! The result is a list of operations in record order over two batches of whole rows: rows
//! to write and rows whose key is deleted (only their key columns matter).
//!
//! Keys and values may be JSON or Avro (`ENCODE AVRO`: each decoded with its writer schema and
//! then read as the JSON object of its fields, so both encodings share one reading of the
//! envelopes).

use std::collections::BTreeMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use serde_json::Value;

use super::avro::AvroFormat;
use super::encoding::{Encoding, RecordDecoder};
use super::{Result, SourceError};

/// How records change a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// Each record a row.
    Plain,
    /// Key and value; no value deletes.
    Upsert,
    /// Debezium's change events.
    Debezium,
}

impl Envelope {
    /// The envelope `FORMAT name` names, if there is one: sources read and sinks write the
    /// same three.
    pub fn named(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "plain" => Some(Self::Plain),
            "upsert" => Some(Self::Upsert),
            "debezium" => Some(Self::Debezium),
            _ => None,
        }
    }

    /// The envelope a source's `FORMAT name` names.
    pub fn new(name: &str) -> Result<Self> {
        Self::named(name).ok_or_else(|| {
            SourceError::NotSupported(format!(
                "FORMAT {} (Augur reads PLAIN, UPSERT and DEBEZIUM)",
                name.to_uppercase()
            ))
        })
    }
}

/// One record's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Write row `n` of [`Changes::rows`] (replacing the row with its key).
    Write(usize),
    /// Delete the row with the key of row `n` of [`Changes::deleted`].
    Delete(usize),
}

/// What a batch of records does to a table.
#[derive(Debug)]
pub struct Changes {
    /// Rows to write.
    pub rows: RecordBatch,
    /// The record each row to write came from (its index).
    pub row_records: Vec<usize>,
    /// The record each deleted key came from (its index).
    pub deleted_records: Vec<usize>,
    /// Rows whose keys are deleted.
    pub deleted: RecordBatch,
    /// The operations, in record order.
    pub ops: Vec<Op>,
    /// Records that gave nothing, by index, with why.
    pub failures: Vec<(usize, String)>,
}

/// A record: its key and its value (`None`: a tombstone).
pub type Record<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Reads records of one envelope into changes of a table whose whole rows are `schema`.
#[derive(Debug, Clone)]
pub struct ChangeDecoder {
    envelope: Envelope,
    decoder: RecordDecoder,
    /// The key's column names, for bare upsert keys.
    key: Vec<String>,
    schema: SchemaRef,
    /// For `ENCODE AVRO`: how keys and values are read into the JSON the envelopes read.
    avro: Option<std::sync::Arc<AvroFormat>>,
}

impl ChangeDecoder {
    /// Decodes `encoding` records in `envelope` into rows of `schema`, whose primary key is the
    /// columns named `key`.
    pub fn new(
        schema: SchemaRef,
        key: Vec<String>,
        envelope: Envelope,
        encoding: Encoding,
    ) -> Result<Self> {
        let (encoding, avro) = match encoding {
            Encoding::Avro(format) if envelope != Envelope::Plain => (Encoding::Json, Some(format)),
            Encoding::Csv { .. } if envelope != Envelope::Plain => {
                return Err(SourceError::NotSupported(format!(
                    "FORMAT {} ENCODE CSV (changes are read from JSON or AVRO)",
                    format!("{envelope:?}").to_uppercase()
                )));
            }
            other => (other, None),
        };
        if envelope != Envelope::Plain && key.is_empty() {
            return Err(SourceError::Option(format!(
                "FORMAT {} needs a table with a PRIMARY KEY",
                format!("{envelope:?}").to_uppercase()
            )));
        }
        // NOT NULL is the table's to check (a row that breaks it is rejected alone); a key to
        // delete has no other columns.
        let schema = std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        Ok(Self {
            envelope,
            decoder: RecordDecoder::new(schema.clone(), encoding),
            key,
            schema,
            avro,
        })
    }

    /// The envelope.
    pub fn envelope(&self) -> Envelope {
        self.envelope
    }

    /// The columns of the rows.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// How the records the envelope reads are encoded (JSON when Avro is read as JSON).
    pub fn encoding(&self) -> &Encoding {
        self.decoder.encoding()
    }

    /// The Avro format keys and values are read with, if they are Avro.
    pub fn avro(&self) -> Option<&AvroFormat> {
        self.avro.as_deref()
    }

    /// Readies what decoding `records` needs from outside (Avro's writer schemas): an error,
    /// to retry later, only if an outside system cannot be reached.
    pub fn resolve(&self, records: &[Record<'_>]) -> Result<()> {
        match &self.avro {
            Some(format) => {
                format.resolve(records.iter().flat_map(|(k, v)| k.iter().chain(v).copied()))
            }
            None => self.decoder.resolve(records.iter().filter_map(|(_, v)| *v)),
        }
    }

    /// The changes `records` make, in order.
    pub fn decode(&self, records: &[Record<'_>]) -> Changes {
        let Some(format) = &self.avro else {
            return self.decode_records(records);
        };
        // Avro keys and values as JSON; a record that does not read is rejected here.
        let keys = self.avro_json(format, records.iter().map(|(k, _)| *k));
        let values = self.avro_json(format, records.iter().map(|(_, v)| *v));
        let mut failures = Vec::new();
        let mut read = Vec::with_capacity(records.len());
        let mut at = Vec::with_capacity(records.len());
        for (i, (key, value)) in keys.into_iter().zip(values).enumerate() {
            match (key, value) {
                (Ok(key), Ok(value)) => {
                    read.push((key, value));
                    at.push(i);
                }
                (Err(e), _) => failures.push((i, format!("the key: {e}"))),
                (_, Err(e)) => failures.push((i, e)),
            }
        }
        let json: Vec<Record<'_>> = read
            .iter()
            .map(|(k, v)| (k.as_deref(), v.as_deref()))
            .collect();
        let mut changes = self.decode_records(&json);
        for i in changes
            .row_records
            .iter_mut()
            .chain(changes.deleted_records.iter_mut())
        {
            *i = at[*i];
        }
        for (i, _) in changes.failures.iter_mut() {
            *i = at[*i];
        }
        changes.failures.extend(failures);
        changes.failures.sort_by_key(|(i, _)| *i);
        changes
    }

    /// Each Avro payload (absent or empty: none) as JSON, or why it does not read. Decoded
    /// together, and one by one only if that fails.
    fn avro_json<'a>(
        &self,
        format: &AvroFormat,
        payloads: impl Iterator<Item = Option<&'a [u8]>>,
    ) -> Vec<std::result::Result<Option<Vec<u8>>, String>> {
        let payloads: Vec<Option<&[u8]>> = payloads.map(|p| p.filter(|p| !p.is_empty())).collect();
        let present: Vec<&[u8]> = payloads.iter().flatten().copied().collect();
        let read_all = |batch: &[&[u8]]| -> std::result::Result<Vec<Vec<u8>>, String> {
            let mut out = Vec::with_capacity(batch.len());
            for decoded in format.decode(batch)? {
                out.extend(decoded.json()?);
            }
            Ok(out)
        };
        let mut read: Vec<std::result::Result<Vec<u8>, String>> = match read_all(&present) {
            Ok(all) => all.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(_) => present
                .iter()
                .map(|p| read_all(&[p]).map(|mut one| one.remove(0)))
                .collect(),
        }
        .into_iter()
        .rev()
        .collect();
        payloads
            .into_iter()
            .map(|p| match p {
                None => Ok(None),
                Some(_) => read.pop().unwrap_or_else(|| Err("no row".into())).map(Some),
            })
            .collect()
    }

    fn decode_records(&self, records: &[Record<'_>]) -> Changes {
        match self.envelope {
            Envelope::Plain => {
                let values: Vec<&[u8]> = records.iter().map(|(_, v)| v.unwrap_or(&[])).collect();
                let (rows, kept, failures) = self.decoder.decode(&values);
                Changes {
                    ops: (0..kept.len()).map(Op::Write).collect(),
                    row_records: kept,
                    deleted_records: Vec::new(),
                    rows,
                    deleted: RecordBatch::new_empty(self.schema.clone()),
                    failures,
                }
            }
            Envelope::Upsert => self.upserts(records),
            Envelope::Debezium => self.debezium(records),
        }
    }

    fn upserts(&self, records: &[Record<'_>]) -> Changes {
        let mut failures = Vec::new();
        let mut writes: Vec<Vec<u8>> = Vec::new();
        let mut write_at = Vec::new();
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut key_at = Vec::new();
        for (i, (key, value)) in records.iter().enumerate() {
            match value {
                Some(value) if !value.is_empty() => match key.map(|k| self.keyed_value(k, value)) {
                    Some(Ok(row)) => {
                        writes.push(row);
                        write_at.push(i);
                    }
                    Some(Err(e)) => failures.push((i, e)),
                    // No key: the value's own key columns.
                    None => {
                        writes.push(value.to_vec());
                        write_at.push(i);
                    }
                },
                _ => match key.map(|k| self.key_object(k)) {
                    Some(Ok(key)) => {
                        keys.push(Value::Object(key).to_string().into_bytes());
                        key_at.push(i);
                    }
                    Some(Err(e)) => failures.push((i, e)),
                    None => failures.push((i, "a record with neither key nor value".into())),
                },
            }
        }
        let writes: Vec<&[u8]> = writes.iter().map(Vec::as_slice).collect();
        self.assemble((writes, write_at), (keys, key_at), failures, None)
    }

    /// An upsert record's value with the key's columns taken from its key: the key decides
    /// which row the value is.
    fn keyed_value(&self, key: &[u8], value: &[u8]) -> std::result::Result<Vec<u8>, String> {
        let key = self.key_object(key)?;
        let mut row = match serde_json::from_slice::<Value>(value) {
            Ok(Value::Object(row)) => row,
            // Not an object: the decoder says what is wrong with it.
            _ => return Ok(value.to_vec()),
        };
        row.extend(key);
        Ok(Value::Object(row).to_string().into_bytes())
    }

    /// An upsert record's key as a JSON object of the key's columns.
    fn key_object(
        &self,
        key: &[u8],
    ) -> std::result::Result<serde_json::Map<String, Value>, String> {
        let value: Value =
            serde_json::from_slice(key).map_err(|e| format!("the key is not JSON: {e}"))?;
        match value {
            Value::Object(object) => Ok(object),
            Value::Null | Value::Array(_) => Err("the key must be a JSON object or value".into()),
            scalar if self.key.len() == 1 => {
                let mut object = serde_json::Map::new();
                object.insert(self.key[0].clone(), scalar);
                Ok(object)
            }
            _ => Err(format!(
                "the key must be a JSON object of the key columns ({})",
                self.key.join(", ")
            )),
        }
    }

    fn debezium(&self, records: &[Record<'_>]) -> Changes {
        let mut failures = Vec::new();
        // (record, is a delete, row JSON)
        let mut parts: Vec<(usize, bool, Vec<u8>)> = Vec::new();
        for (i, (_, value)) in records.iter().enumerate() {
            let Some(value) = value.filter(|v| !v.is_empty()) else {
                continue; // A tombstone, after a delete: nothing to do.
            };
            match debezium_event(value) {
                Ok(event) => {
                    for (delete, row) in event {
                        parts.push((i, delete, row));
                    }
                }
                Err(e) => failures.push((i, e)),
            }
        }
        let mut writes = Vec::new();
        let mut write_at = Vec::new();
        let mut keys = Vec::new();
        let mut key_at = Vec::new();
        let mut order = Vec::with_capacity(parts.len());
        for (i, delete, row) in parts {
            if delete {
                key_at.push(i);
                keys.push(row);
                order.push(true);
            } else {
                write_at.push(i);
                writes.push(row);
                order.push(false);
            }
        }
        let writes: Vec<&[u8]> = writes.iter().map(Vec::as_slice).collect();
        let mut changes = self.assemble((writes, write_at), (keys, key_at), failures, Some(order));
        changes.failures.sort_by_key(|(i, _)| *i);
        changes
    }

    /// Decodes the rows written and the keys deleted, and orders their operations: by record,
    /// or as `order` says (true: the next delete) where one record makes two.
    fn assemble(
        &self,
        (writes, write_at): (Vec<&[u8]>, Vec<usize>),
        (keys, key_at): (Vec<Vec<u8>>, Vec<usize>),
        mut failures: Vec<(usize, String)>,
        order: Option<Vec<bool>>,
    ) -> Changes {
        let (rows, rows_kept, row_failures) = self.decoder.decode(&writes);
        let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let (deleted, keys_kept, key_failures) = self.decoder.decode(&key_refs);
        let mut failed = std::collections::BTreeSet::new();
        for (j, e) in row_failures {
            failed.insert(write_at[j]);
            failures.push((write_at[j], e));
        }
        for (j, e) in key_failures {
            failed.insert(key_at[j]);
            failures.push((key_at[j], e));
        }
        // Where each decoded row and key is in its batch.
        let row_index: BTreeMap<usize, usize> =
            rows_kept.iter().enumerate().map(|(n, &j)| (j, n)).collect();
        let key_index: BTreeMap<usize, usize> =
            keys_kept.iter().enumerate().map(|(n, &j)| (j, n)).collect();
        let mut ops = Vec::new();
        let (mut w, mut k) = (0, 0);
        let order = order.unwrap_or_else(|| {
            // By record: merge the two position lists.
            let mut all: Vec<(usize, bool)> = write_at
                .iter()
                .map(|&i| (i, false))
                .chain(key_at.iter().map(|&i| (i, true)))
                .collect();
            all.sort();
            all.into_iter().map(|(_, delete)| delete).collect()
        });
        for delete in order {
            if delete {
                if !failed.contains(&key_at[k])
                    && let Some(&n) = key_index.get(&k)
                {
                    ops.push(Op::Delete(n));
                }
                k += 1;
            } else {
                if !failed.contains(&write_at[w])
                    && let Some(&n) = row_index.get(&w)
                {
                    ops.push(Op::Write(n));
                }
                w += 1;
            }
        }
        Changes {
            row_records: rows_kept.iter().map(|&j| write_at[j]).collect(),
            deleted_records: keys_kept.iter().map(|&j| key_at[j]).collect(),
            rows,
            deleted,
            ops,
            failures,
        }
    }
}

/// A Debezium event's effect: `(is a delete, row as JSON)` in order.
fn debezium_event(value: &[u8]) -> std::result::Result<Vec<(bool, Vec<u8>)>, String> {
    let event: Value =
        serde_json::from_slice(value).map_err(|e| format!("not a Debezium event: {e}"))?;
    let mut event = match event {
        Value::Object(map) => map,
        _ => return Err("not a Debezium event: a JSON object expected".into()),
    };
    // The JSON converter with schemas on wraps the event.
    if event.contains_key("schema")
        && let Some(Value::Object(payload)) = event.remove("payload")
    {
        event = payload;
    }
    let row = |part: &str, event: &serde_json::Map<String, Value>| match event.get(part) {
        Some(Value::Object(row)) => Ok(Value::Object(row.clone()).to_string().into_bytes()),
        _ => Err(format!("a Debezium event without \"{part}\"")),
    };
    match event.get("op").and_then(Value::as_str) {
        Some("c" | "r") => Ok(vec![(false, row("after", &event)?)]),
        Some("u") => {
            let after = row("after", &event)?;
            // The old version goes first: its key may differ from the new one's.
            match row("before", &event) {
                Ok(before) => Ok(vec![(true, before), (false, after)]),
                Err(_) => Ok(vec![(false, after)]),
            }
        }
        Some("d") => Ok(vec![(true, row("before", &event)?)]),
        Some(other) => Err(format!("unknown Debezium op \"{other}\"")),
        None => Err("a Debezium event without \"op\"".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn decoder(envelope: Envelope) -> ChangeDecoder {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        ChangeDecoder::new(schema, vec!["id".into()], envelope, Encoding::Json).unwrap()
    }

    fn ids(rows: &RecordBatch) -> Vec<i64> {
        let ids = rows
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        ids.iter().flatten().collect()
    }

    #[test]
    fn upsert_values_write_and_tombstones_delete_by_key() {
        let d = decoder(Envelope::Upsert);
        let records: Vec<Record<'_>> = vec![
            // The key decides the row, whatever the value says.
            (Some(b"1"), Some(br#"{"id": 9, "name": "a"}"#)),
            (Some(br#"{"id": 2}"#), None),
            (Some(b"not json"), None),
            (Some(b"3"), Some(br#"{"id": 3, "name": "c"}"#)),
            (Some(b"1"), Some(b"")),
        ];
        let changes = d.decode(&records);
        assert_eq!(ids(&changes.rows), vec![1, 3]);
        assert_eq!(ids(&changes.deleted), vec![2, 1]);
        assert_eq!(
            changes.ops,
            vec![Op::Write(0), Op::Delete(0), Op::Write(1), Op::Delete(1)]
        );
        assert_eq!(changes.failures.len(), 1);
        assert_eq!(changes.failures[0].0, 2);
    }

    #[test]
    fn debezium_ops_with_and_without_the_schema_wrapper() {
        let d = decoder(Envelope::Debezium);
        let wrapped = br#"{"schema": {}, "payload": {"op": "u", "before": {"id": 1, "name": "a"}, "after": {"id": 1, "name": "b"}}}"#;
        let records: Vec<Record<'_>> = vec![
            (
                None,
                Some(br#"{"op": "r", "before": null, "after": {"id": 1, "name": "a"}}"#),
            ),
            (None, Some(wrapped)),
            (
                None,
                Some(br#"{"op": "d", "before": {"id": 1, "name": "b"}, "after": null}"#),
            ),
            (None, None),
            (None, Some(br#"{"op": "t"}"#)),
            (
                None,
                Some(br#"{"op": "c", "after": {"id": 2, "name": "x"}}"#),
            ),
        ];
        let changes = d.decode(&records);
        assert_eq!(ids(&changes.rows), vec![1, 1, 2]);
        let names = changes
            .rows
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(names.value(1), "b");
        assert_eq!(ids(&changes.deleted), vec![1, 1]);
        assert_eq!(
            changes.ops,
            vec![
                Op::Write(0),
                Op::Delete(0),
                Op::Write(1),
                Op::Delete(1),
                Op::Write(2)
            ]
        );
        assert_eq!(changes.failures.len(), 1);
        assert_eq!(changes.failures[0].0, 4);
        assert!(changes.failures[0].1.contains("unknown Debezium op"));
    }

    #[test]
    fn upsert_and_debezium_need_a_key_and_json() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        assert!(
            ChangeDecoder::new(schema.clone(), vec![], Envelope::Upsert, Encoding::Json).is_err()
        );
        let csv = Encoding::Csv {
            delimiter: b',',
            header: false,
        };
        assert!(ChangeDecoder::new(schema, vec!["id".into()], Envelope::Debezium, csv).is_err());
    }
}
