//! What an epoch's changes become in a sink: `FORMAT PLAIN` (each inserted row; deletes only
//! with `force_append_only`, which drops them), `FORMAT UPSERT` (per key the row it has after
//! the epoch, or a tombstone when it has none) and `FORMAT DEBEZIUM` (per key a change event
//! with `before`, `after` and `op` `c`, `u` or `d`, Debezium's envelope).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, StructArray, new_null_array,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};

use super::{Epoch, SinkError};

/// How changes become records: inserted rows (PLAIN), the last row of each key or a tombstone
/// (UPSERT), Debezium's change events (DEBEZIUM) — the envelopes sources read.
pub use crate::source::envelope::Envelope;

/// The envelope a sink's `FORMAT name` names.
pub fn envelope(name: &str) -> Result<Envelope, SinkError> {
    Envelope::named(name).ok_or_else(|| {
        SinkError::NotSupported(format!(
            "FORMAT {} for sinks (PLAIN, UPSERT or DEBEZIUM)",
            name.to_uppercase()
        ))
    })
}

/// A record for a log: its key and its value (`None`: a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The key's JSON, when the sink has a key.
    pub key: Option<Vec<u8>>,
    /// The value's JSON.
    pub value: Option<Vec<u8>>,
}

/// Where a row is among an epoch's batches: (batch, row).
type At = (usize, usize);

/// A key's row before an epoch (deleted) and after it (inserted).
type BeforeAfter = (Option<At>, Option<At>);

/// A change event: the key, its rows before and after, and the op.
type Event = (Vec<u8>, Option<At>, Option<At>, &'static str);

/// Debezium's change event for rows of `schema`: the row `before` and `after` (each null when
/// there is none), `op`, `ts_ms` (when the epoch committed) and `source` (Augur, the sink, the
/// epoch). Fields of the rows are nullable, as in Debezium's own schemas.
pub fn debezium_schema(schema: &SchemaRef) -> SchemaRef {
    let row: Fields = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    let source = Fields::from(vec![
        Field::new("connector", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("epoch", DataType::Int64, false),
    ]);
    Arc::new(Schema::new(vec![
        Field::new("before", DataType::Struct(row.clone()), true),
        Field::new("after", DataType::Struct(row), true),
        Field::new("op", DataType::Utf8, false),
        Field::new("ts_ms", DataType::Int64, false),
        Field::new("source", DataType::Struct(source), false),
    ]))
}

/// The change events of `events` (key, before, after, op) over rows of `batches`.
fn debezium_batch(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    events: &[Event],
    epoch: &Epoch,
    sink: &str,
) -> Result<RecordBatch, String> {
    let envelope = debezium_schema(schema);
    let DataType::Struct(row) = envelope.field(0).data_type().clone() else {
        return Err("the Debezium envelope has no row".into());
    };
    // The rows picked from the batches, a null row where an event has none.
    let rows = |pick: &dyn Fn(&Event) -> Option<At>| {
        let nulls = batches.len();
        let indices: Vec<At> = events
            .iter()
            .map(|e| pick(e).unwrap_or((nulls, 0)))
            .collect();
        let columns = row
            .iter()
            .enumerate()
            .map(|(j, field)| {
                let null = new_null_array(field.data_type(), 1);
                let sources: Vec<&dyn Array> = batches
                    .iter()
                    .map(|b| b.column(j).as_ref())
                    .chain(std::iter::once(null.as_ref()))
                    .collect();
                interleave(&sources, &indices).map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<ArrayRef>, String>>()?;
        let present = NullBuffer::from_iter(events.iter().map(|e| pick(e).is_some()));
        StructArray::try_new(row.clone(), columns, Some(present))
            .map(|a| Arc::new(a) as ArrayRef)
            .map_err(|e| e.to_string())
    };
    let n = events.len();
    let DataType::Struct(source) = envelope.field(4).data_type().clone() else {
        return Err("the Debezium envelope has no source".into());
    };
    let source = StructArray::try_new(
        source,
        vec![
            Arc::new(StringArray::from(vec!["augur"; n])),
            Arc::new(StringArray::from(vec![sink; n])),
            Arc::new(Int64Array::from(vec![epoch.number as i64; n])),
        ],
        None,
    )
    .map_err(|e| e.to_string())?;
    RecordBatch::try_new(
        envelope,
        vec![
            rows(&|e| e.1)?,
            rows(&|e| e.2)?,
            Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.3))),
            Arc::new(Int64Array::from(vec![epoch.committed_ms; n])),
            Arc::new(source),
        ],
    )
    .map_err(|e| e.to_string())
}

/// Every row of `rows` as a JSON object.
pub fn json_rows(rows: &RecordBatch) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    {
        let mut writer = datafusion::arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, datafusion::arrow::json::writer::LineDelimited>(&mut out);
        writer.write(rows).map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
    }
    Ok(out
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// Turns rows into record bytes, one per row: JSON objects, or Avro records.
pub trait RowEncoder {
    /// Every row of `rows`, encoded.
    fn encode(&mut self, rows: &RecordBatch) -> Result<Vec<Vec<u8>>, String>;
}

/// Rows as JSON objects.
#[derive(Debug, Default)]
pub struct Json;

impl RowEncoder for Json {
    fn encode(&mut self, rows: &RecordBatch) -> Result<Vec<Vec<u8>>, String> {
        json_rows(rows)
    }
}

/// The records an epoch's `changes` (rows of `schema`) become. `key` is the key's positions
/// (for PLAIN, the record key if given); `force_append_only` drops deletes in PLAIN, which
/// otherwise are an error. Keys and values are written by `keys` and `values`; Debezium's
/// values are its change events ([`debezium_schema`]).
#[allow(clippy::too_many_arguments)]
pub fn records(
    envelope: Envelope,
    schema: &SchemaRef,
    key: &[usize],
    force_append_only: bool,
    epoch: &Epoch,
    sink: &str,
    keys: &mut dyn RowEncoder,
    values: &mut dyn RowEncoder,
) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    if envelope == Envelope::Plain {
        for change in &epoch.changes {
            let rows = super::visible(&change.rows, schema)?;
            let encoded = values.encode(&rows)?;
            let row_keys = if key.is_empty() {
                None
            } else {
                Some(keys.encode(&rows.project(key).map_err(|e| e.to_string())?)?)
            };
            for (i, value) in encoded.into_iter().enumerate() {
                let weight = change.weights.value(i);
                if weight < 0 && !force_append_only {
                    return Err(format!(
                        "the view deleted a row, which FORMAT PLAIN cannot say; use FORMAT \
                         UPSERT or DEBEZIUM, or force_append_only = 'true' to drop deletes \
                         (sink {sink})"
                    ));
                }
                for _ in 0..weight.max(0) {
                    out.push(Record {
                        key: row_keys.as_ref().map(|k| k[i].clone()),
                        value: Some(value.clone()),
                    });
                }
            }
        }
        return Ok(out);
    }
    // Per key, in key order: the row it had before the epoch (deleted) and after (inserted).
    let mut batches = Vec::new();
    let mut by_key: BTreeMap<Vec<u8>, BeforeAfter> = BTreeMap::new();
    for change in &epoch.changes {
        let rows = super::visible(&change.rows, schema)?;
        let row_keys = keys.encode(&rows.project(key).map_err(|e| e.to_string())?)?;
        let b = batches.len();
        for (i, k) in row_keys.into_iter().enumerate() {
            let entry = by_key.entry(k).or_default();
            let weight = change.weights.value(i);
            if weight > 0 {
                entry.1 = Some((b, i));
            } else if weight < 0 && entry.0.is_none() {
                entry.0 = Some((b, i));
            }
        }
        batches.push(rows);
    }
    if envelope == Envelope::Upsert {
        let encoded = batches
            .iter()
            .map(|rows| values.encode(rows))
            .collect::<Result<Vec<_>, _>>()?;
        for (k, (_, after)) in by_key {
            out.push(Record {
                key: Some(k),
                value: after.map(|(b, i)| encoded[b][i].clone()),
            });
        }
        return Ok(out);
    }
    let events: Vec<Event> = by_key
        .into_iter()
        .filter_map(|(k, (before, after))| {
            let op = match (&before, &after) {
                (None, Some(_)) => "c",
                (Some(_), Some(_)) => "u",
                (Some(_), None) => "d",
                (None, None) => return None,
            };
            Some((k, before, after, op))
        })
        .collect();
    if events.is_empty() {
        return Ok(out);
    }
    let encoded = values.encode(&debezium_batch(schema, &batches, &events, epoch, sink)?)?;
    for ((k, ..), value) in events.into_iter().zip(encoded) {
        out.push(Record {
            key: Some(k),
            value: Some(value),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::sink::Changes;

    fn epoch(rows: &[(i64, &str, i64)]) -> (SchemaRef, Epoch) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap();
        let weights = Int64Array::from_iter_values(rows.iter().map(|r| r.2));
        let epoch = Epoch {
            number: 7,
            committed_ms: 1000,
            changes: vec![Changes {
                rows: batch,
                weights,
            }],
        };
        (schema, epoch)
    }

    fn text(records: &[Record]) -> Vec<(Option<String>, Option<String>)> {
        let s = |b: &Option<Vec<u8>>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
        records.iter().map(|r| (s(&r.key), s(&r.value))).collect()
    }

    #[test]
    fn upsert_keeps_the_last_row_of_each_key_and_tombstones_deletes() {
        // Key 1 updated (its old row retracted after the new one came), key 2 deleted, key 3
        // inserted.
        let (schema, epoch) = epoch(&[(1, "new", 1), (1, "old", -1), (2, "gone", -1), (3, "c", 1)]);
        let records = records(
            Envelope::Upsert,
            &schema,
            &[0],
            false,
            &epoch,
            "s",
            &mut Json,
            &mut Json,
        )
        .unwrap();
        assert_eq!(
            text(&records),
            vec![
                (
                    Some(r#"{"id":1}"#.into()),
                    Some(r#"{"id":1,"name":"new"}"#.into())
                ),
                (Some(r#"{"id":2}"#.into()), None),
                (
                    Some(r#"{"id":3}"#.into()),
                    Some(r#"{"id":3,"name":"c"}"#.into())
                ),
            ]
        );
    }

    #[test]
    fn debezium_events_carry_before_after_and_op() {
        let (schema, epoch) = epoch(&[(1, "old", -1), (1, "new", 1), (2, "gone", -1), (3, "c", 1)]);
        let records = records(
            Envelope::Debezium,
            &schema,
            &[0],
            false,
            &epoch,
            "s",
            &mut Json,
            &mut Json,
        )
        .unwrap();
        let values: Vec<serde_json::Value> = records
            .iter()
            .map(|r| serde_json::from_slice(r.value.as_ref().unwrap()).unwrap())
            .collect();
        let ops: Vec<&str> = values.iter().map(|v| v["op"].as_str().unwrap()).collect();
        assert_eq!(ops, vec!["u", "d", "c"]);
        assert_eq!(values[0]["before"]["name"], "old");
        assert_eq!(values[0]["after"]["name"], "new");
        assert!(values[1]["after"].is_null());
        assert_eq!(values[2]["source"]["epoch"], 7);
    }

    #[test]
    fn plain_writes_inserts_and_refuses_deletes_unless_forced() {
        let (schema, epoch) = epoch(&[(1, "a", 2), (2, "b", -1)]);
        assert!(
            records(
                Envelope::Plain,
                &schema,
                &[],
                false,
                &epoch,
                "s",
                &mut Json,
                &mut Json
            )
            .is_err()
        );
        let records = records(
            Envelope::Plain,
            &schema,
            &[],
            true,
            &epoch,
            "s",
            &mut Json,
            &mut Json,
        )
        .unwrap();
        assert_eq!(
            text(&records),
            vec![(None, Some(r#"{"id":1,"name":"a"}"#.into())); 2]
        );
    }
}
