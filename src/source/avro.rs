//! `ENCODE AVRO`: records in the Confluent wire format (magic byte 0, a 4-byte big-endian schema
//! id, then the Avro body), with their schemas read from a Confluent schema registry.
//!
//! Each record is decoded with its own writer schema, the one its id names in the registry
//! (`arrow-avro` decodes into Arrow), and the rows are then matched to the declared columns by
//! name: a field the columns lack is ignored, a column no field has is NULL, and a value is cast
//! to its column's type. Records written with any version of a subject's schema therefore read
//! into the same columns, as Avro's writer → reader resolution intends.
//!
//! Schemas are fetched over HTTP once per id and kept. An id the registry does not have makes
//! its records rejected; a registry that cannot be reached is an outage the reader retries
//! through ([`SourceError::Unavailable`]), never a reason to reject records.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use serde_json::Value;

use super::{Result, SourceError};

/// Rows decoded at most at once by one Avro decoder.
const BATCH: usize = 8192;

/// The field a schema that is not a record is wrapped in (the Avro body of a record with one
/// field is the field's value, so the same bytes decode either way).
const WRAPPED: &str = "__value";

/// The options of `ENCODE AVRO (...)`.
pub const OPTIONS: &[&str] = &[
    "schema.registry",
    "schema.registry.username",
    "schema.registry.password",
];

/// What the registry said about a schema id.
#[derive(Debug, Clone)]
enum Known {
    /// The writer schema, wrapped in a record when it is not one.
    Schema { avro: AvroSchema, wrapped: bool },
    /// The registry does not have it (or not as Avro): why.
    Missing(String),
}

/// A Confluent schema registry: its addresses and the schemas fetched from it.
#[derive(Debug)]
pub struct Registry {
    urls: Vec<String>,
    auth: Option<(String, String)>,
    schemas: Mutex<HashMap<u32, Known>>,
}

impl Registry {
    /// The registry `ENCODE AVRO (schema.registry = 'http://...', ...)` names; several
    /// addresses may be given, separated by commas, and are tried in order.
    pub fn new(options: &BTreeMap<String, String>) -> Result<Self> {
        let urls: Vec<String> = options
            .get("schema.registry")
            .map(|u| {
                u.split(',')
                    .map(|u| u.trim().trim_end_matches('/').to_string())
                    .filter(|u| !u.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if urls.is_empty() {
            return Err(SourceError::Option(
                "ENCODE AVRO needs schema.registry = 'http://host:port'".into(),
            ));
        }
        if let Some(bad) = urls
            .iter()
            .find(|u| !u.starts_with("http://") && !u.starts_with("https://"))
        {
            return Err(SourceError::Option(format!(
                "invalid value '{bad}' for option schema.registry: an http:// or https:// URL"
            )));
        }
        let auth = match (
            options.get("schema.registry.username"),
            options.get("schema.registry.password"),
        ) {
            (Some(user), password) => Some((user.clone(), password.cloned().unwrap_or_default())),
            (None, Some(_)) => {
                return Err(SourceError::Option(
                    "schema.registry.password needs schema.registry.username".into(),
                ));
            }
            (None, None) => None,
        };
        Ok(Self {
            urls,
            auth,
            schemas: Mutex::new(HashMap::new()),
        })
    }

    /// The registry's answer to `GET path`: `None` when it says there is no such thing (404).
    fn get(&self, path: &str) -> Result<Option<Value>> {
        let mut last = String::new();
        for url in &self.urls {
            let address = format!("{url}{path}");
            match http_request(&address, self.auth.clone(), None) {
                Ok((200, body)) => {
                    return serde_json::from_str(&body).map(Some).map_err(|e| {
                        SourceError::Unavailable(format!(
                            "the schema registry at {url} answered {path} with no JSON: {e}"
                        ))
                    });
                }
                Ok((404, _)) => return Ok(None),
                Ok((status, body)) => {
                    last = format!(
                        "the schema registry at {url} answered {path} with HTTP {status}: {}",
                        body.chars().take(200).collect::<String>()
                    );
                }
                Err(e) => last = format!("cannot reach the schema registry at {url}: {e}"),
            }
        }
        Err(SourceError::Unavailable(last))
    }

    /// Registers Avro schema `schema` (JSON text) under `subject`: its id (the same schema
    /// registered again keeps its id).
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32> {
        let body = serde_json::json!({ "schema": schema }).to_string();
        let path = format!("/subjects/{subject}/versions");
        let mut last = String::new();
        for url in &self.urls {
            let address = format!("{url}{path}");
            match http_request(&address, self.auth.clone(), Some(body.clone())) {
                Ok((200, answer)) => {
                    let id = serde_json::from_str::<Value>(&answer)
                        .ok()
                        .and_then(|v| v.get("id").and_then(Value::as_u64));
                    return id.map(|id| id as u32).ok_or_else(|| {
                        SourceError::Unavailable(format!(
                            "the schema registry at {url} answered {path} without an id"
                        ))
                    });
                }
                Ok((status, answer)) => {
                    last = format!(
                        "the schema registry at {url} refused the schema for {subject} (HTTP \
                         {status}): {}",
                        answer.chars().take(200).collect::<String>()
                    );
                    if (400..500).contains(&status) {
                        return Err(SourceError::Option(last));
                    }
                }
                Err(e) => last = format!("cannot reach the schema registry at {url}: {e}"),
            }
        }
        Err(SourceError::Unavailable(last))
    }

    /// The latest schema of `subject` (its id and JSON text), or `None` if the registry has no
    /// such subject.
    pub fn latest(&self, subject: &str) -> Result<Option<(u32, String)>> {
        let Some(found) = self.get(&format!("/subjects/{subject}/versions/latest"))? else {
            return Ok(None);
        };
        let id = found.get("id").and_then(Value::as_u64);
        let schema = found.get("schema").and_then(Value::as_str);
        match (id, schema) {
            (Some(id), Some(schema)) => {
                let id = u32::try_from(id).map_err(|_| {
                    SourceError::Unavailable(format!("the schema registry gave a bad id {id}"))
                })?;
                Ok(Some((id, schema.to_string())))
            }
            _ => Err(SourceError::Unavailable(format!(
                "the schema registry's answer for subject {subject} has no id and schema"
            ))),
        }
    }

    /// Fetches every id of `ids` not known yet. Ids the registry lacks are remembered as
    /// missing; an error only if the registry cannot be asked.
    pub fn resolve(&self, ids: impl IntoIterator<Item = u32>) -> Result<()> {
        let mut wanted: Vec<u32> = {
            let known = self.schemas.lock().unwrap_or_else(|e| e.into_inner());
            ids.into_iter()
                .filter(|id| !known.contains_key(id))
                .collect()
        };
        wanted.sort_unstable();
        wanted.dedup();
        for id in wanted {
            let known = match self.get(&format!("/schemas/ids/{id}"))? {
                None => Known::Missing(format!("schema id {id} is not in the schema registry")),
                Some(found) => known_schema(id, &found),
            };
            self.schemas
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, known);
        }
        Ok(())
    }

    fn known(&self, id: u32) -> Option<Known> {
        self.schemas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }
}

/// What the registry's `/schemas/ids/{id}` answer holds.
fn known_schema(id: u32, found: &Value) -> Known {
    let kind = found
        .get("schemaType")
        .and_then(Value::as_str)
        .unwrap_or("AVRO");
    if !kind.eq_ignore_ascii_case("AVRO") {
        return Known::Missing(format!("schema id {id} is {kind}, not Avro"));
    }
    let Some(text) = found.get("schema").and_then(Value::as_str) else {
        return Known::Missing(format!("the schema registry's schema id {id} has no text"));
    };
    let Ok(schema) = serde_json::from_str::<Value>(text) else {
        return Known::Missing(format!("schema id {id} is not JSON"));
    };
    let is_record = schema.get("type").and_then(Value::as_str) == Some("record");
    if is_record {
        return Known::Schema {
            avro: AvroSchema::new(text.to_string()),
            wrapped: false,
        };
    }
    let wrapped = serde_json::json!({
        "type": "record",
        "name": "augur_wrapped",
        "fields": [{"name": WRAPPED, "type": schema}],
    });
    Known::Schema {
        avro: AvroSchema::new(wrapped.to_string()),
        wrapped: true,
    }
}

/// The field names of the record schema `text` (of the record in field `inner`'s type, when
/// given: Debezium's `after`); `None` when it is not a record.
pub fn record_fields(text: &str, inner: Option<&str>) -> Option<Vec<String>> {
    let schema: Value = serde_json::from_str(text).ok()?;
    let fields = |record: &Value| -> Option<Vec<String>> {
        record.get("fields")?.as_array().map(|fields| {
            fields
                .iter()
                .filter_map(|f| f.get("name")?.as_str().map(str::to_string))
                .collect()
        })
    };
    let Some(inner) = inner else {
        return fields(&schema);
    };
    let field = schema
        .get("fields")?
        .as_array()?
        .iter()
        .find(|f| f.get("name").and_then(Value::as_str) == Some(inner))?;
    // `["null", {record}]` or the record itself.
    match field.get("type")? {
        Value::Array(branches) => branches.iter().find_map(fields),
        record => fields(record),
    }
}

/// `GET url`, or `POST url` of a JSON `body`: the status and the answer. Registry requests
/// are rare (one per schema), each on a runtime of its own so that any thread may make one.
fn http_request(
    url: &str,
    auth: Option<(String, String)>,
    body: Option<String>,
) -> std::result::Result<(u16, String), String> {
    super::on_own_runtime(move || async move {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let mut request = match body {
            None => client.get(url).header(
                "Accept",
                "application/vnd.schemaregistry.v1+json, application/json",
            ),
            Some(body) => client
                .post(url)
                .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                .body(body),
        };
        if let Some((user, password)) = auth {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(error_chain)?;
        let status = response.status().as_u16();
        let answer = response.text().await.map_err(error_chain)?;
        Ok((status, answer))
    })?
}

/// An error with its causes ("error sending request: connection refused").
fn error_chain(e: reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The schema id of a record in the Confluent wire format.
pub fn schema_id(payload: &[u8]) -> Option<u32> {
    match payload {
        [0, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// Decodes Avro records of one registry, keeping a decoder per writer schema.
#[derive(Debug)]
pub struct AvroFormat {
    registry: Registry,
    decoders: Mutex<HashMap<u32, Decoder>>,
}

impl AvroFormat {
    /// Records whose schemas are in the registry `options` name.
    pub fn new(options: &BTreeMap<String, String>) -> Result<Self> {
        Ok(Self {
            registry: Registry::new(options)?,
            decoders: Mutex::new(HashMap::new()),
        })
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Fetches the schemas `payloads` are written with that are not known yet: an error only
    /// if the registry cannot be reached.
    pub fn resolve<'a>(&self, payloads: impl IntoIterator<Item = &'a [u8]>) -> Result<()> {
        self.registry
            .resolve(payloads.into_iter().filter_map(schema_id))
    }

    /// Every payload as one row each, in order, in batches of the writers' own Arrow schemas
    /// (one batch per run of records with the same schema), or the first error.
    pub fn decode(&self, payloads: &[&[u8]]) -> std::result::Result<Vec<Decoded>, String> {
        let mut out = Vec::new();
        let mut start = 0;
        while start < payloads.len() {
            let id = schema_id(payloads[start]).ok_or_else(not_framed)?;
            let end = payloads[start..]
                .iter()
                .position(|p| schema_id(p) != Some(id))
                .map_or(payloads.len(), |n| start + n);
            out.push(self.decode_run(id, &payloads[start..end])?);
            start = end;
        }
        Ok(out)
    }

    /// Records all written with schema `id`.
    fn decode_run(&self, id: u32, payloads: &[&[u8]]) -> std::result::Result<Decoded, String> {
        let (avro, wrapped) = match self.registry.known(id) {
            Some(Known::Schema { avro, wrapped }) => (avro, wrapped),
            Some(Known::Missing(why)) => return Err(why),
            None => return Err(format!("schema id {id} has not been fetched")),
        };
        let cached = self
            .decoders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        let mut decoder = match cached {
            Some(decoder) => decoder,
            None => {
                let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
                store
                    .set(Fingerprint::Id(id), avro)
                    .map_err(|e| format!("schema id {id}: {e}"))?;
                ReaderBuilder::new()
                    .with_batch_size(BATCH)
                    .with_writer_schema_store(store)
                    .build_decoder()
                    .map_err(|e| format!("schema id {id}: {e}"))?
            }
        };
        // On an error the decoder is dropped: it may hold part of a row.
        let mut parts = Vec::new();
        for payload in payloads {
            let mut rest: &[u8] = payload;
            loop {
                let read = decoder.decode(rest).map_err(|e| e.to_string())?;
                rest = &rest[read..];
                if rest.is_empty() {
                    break;
                }
                if !decoder.batch_is_full() {
                    return Err("the record's Avro body is cut short".into());
                }
                if let Some(batch) = decoder.flush().map_err(|e| e.to_string())? {
                    parts.push(batch);
                }
            }
        }
        if let Some(batch) = decoder.flush().map_err(|e| e.to_string())? {
            parts.push(batch);
        }
        let rows: usize = parts.iter().map(RecordBatch::num_rows).sum();
        if rows != payloads.len() {
            return Err(format!(
                "a record must hold one row; {} records held {rows}",
                payloads.len()
            ));
        }
        self.decoders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, decoder);
        Ok(Decoded { parts, wrapped })
    }
}

fn not_framed() -> String {
    "not in the Confluent Avro wire format (magic byte 0 and a 4-byte schema id)".into()
}

/// Rows as their writer schema has them.
#[derive(Debug)]
pub struct Decoded {
    /// The rows, in order.
    pub parts: Vec<RecordBatch>,
    /// Whether the writer schema is not a record, its value in the one column [`WRAPPED`].
    pub wrapped: bool,
}

impl Decoded {
    /// The rows as columns of `schema`, matched by name (exactly, else ignoring case); a
    /// column no field has is NULL; values are cast to the column's type, and an error if one
    /// does not fit. A wrapped value fills a schema of one column.
    pub fn project(&self, schema: &SchemaRef) -> std::result::Result<Vec<RecordBatch>, String> {
        self.parts
            .iter()
            .map(|part| {
                if self.wrapped && schema.fields().len() == 1 {
                    // The value is the one column, whatever its name.
                    let renamed = RecordBatch::try_new(
                        Arc::new(Schema::new(vec![Field::new(
                            schema.field(0).name(),
                            part.column(0).data_type().clone(),
                            true,
                        )])),
                        vec![part.column(0).clone()],
                    )
                    .map_err(|e| e.to_string())?;
                    return super::encoding::by_name(&renamed, schema);
                }
                super::encoding::by_name(part, schema)
            })
            .collect()
    }

    /// Each row as a JSON object (or, wrapped, its value), for the changelog envelopes.
    pub fn json(&self) -> std::result::Result<Vec<Vec<u8>>, String> {
        let mut out = Vec::new();
        for part in &self.parts {
            let mut buffer = Vec::new();
            let mut writer = datafusion::arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, datafusion::arrow::json::writer::LineDelimited>(&mut buffer);
            writer.write(part).map_err(|e| e.to_string())?;
            writer.finish().map_err(|e| e.to_string())?;
            drop(writer);
            for line in buffer.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                if self.wrapped {
                    let object: Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
                    let value = object.get(WRAPPED).cloned().unwrap_or(Value::Null);
                    out.push(value.to_string().into_bytes());
                } else {
                    out.push(line.to_vec());
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use std::sync::Arc;

    use super::*;

    /// Avro's zig-zag varint of `n`.
    fn long(n: i64, out: &mut Vec<u8>) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }

    /// A framed record of schema `id` with body `body`.
    fn framed(id: u32, body: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    const V1: &str = r#"{"type":"record","name":"Payment","fields":[
        {"name":"id","type":"long"},{"name":"name","type":"string"}]}"#;
    const V2: &str = r#"{"type":"record","name":"Payment","fields":[
        {"name":"id","type":"long"},{"name":"name","type":"string"},
        {"name":"amount","type":["null","double"],"default":null}]}"#;

    fn v1(id: i64, name: &str) -> Vec<u8> {
        let mut body = Vec::new();
        long(id, &mut body);
        long(name.len() as i64, &mut body);
        body.extend_from_slice(name.as_bytes());
        framed(1, &body)
    }

    fn v2(id: i64, name: &str, amount: Option<f64>) -> Vec<u8> {
        let mut body = Vec::new();
        long(id, &mut body);
        long(name.len() as i64, &mut body);
        body.extend_from_slice(name.as_bytes());
        match amount {
            None => long(0, &mut body),
            Some(a) => {
                long(1, &mut body);
                body.extend_from_slice(&a.to_le_bytes());
            }
        }
        framed(2, &body)
    }

    fn options(url: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("schema.registry".to_string(), url.to_string())])
    }

    /// A format whose registry already knows `schemas` (the registry's HTTP side is tested
    /// with a server in `tests/kafka.rs`).
    fn known(schemas: &[(u32, &str)]) -> AvroFormat {
        let format = AvroFormat::new(&options("http://127.0.0.1:1")).unwrap();
        let mut known = format.registry.schemas.lock().unwrap();
        for (id, text) in schemas {
            known.insert(
                *id,
                known_schema(*id, &serde_json::json!({ "schema": text })),
            );
        }
        drop(known);
        format
    }

    #[test]
    fn records_of_two_schema_versions_read_into_the_same_columns() {
        let format = known(&[(1, V1), (2, V2)]);
        let records = [
            v1(1, "a"),
            v2(2, "b", Some(2.5)),
            v2(3, "c", None),
            v1(4, "d"),
        ];
        let payloads: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        format.resolve(payloads.iter().copied()).unwrap();
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("amount", DataType::Float64, true),
            Field::new("ID", DataType::Int64, true),
            Field::new("missing", DataType::Utf8, true),
        ]));
        let decoded = format.decode(&payloads).unwrap();
        assert_eq!(decoded.len(), 3, "one batch per run of one schema");
        let rows: Vec<RecordBatch> = decoded
            .iter()
            .flat_map(|d| d.project(&schema).unwrap())
            .collect();
        let rows = datafusion::arrow::compute::concat_batches(&schema, &rows).unwrap();
        let ids = rows
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(ids.values(), &[1, 2, 3, 4]);
        let amounts = rows
            .column(0)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(
            amounts.iter().collect::<Vec<_>>(),
            vec![None, Some(2.5), None, None]
        );
        assert_eq!(rows.column(2).null_count(), 4);
    }

    #[test]
    fn bad_records_and_unknown_ids_are_errors_not_panics() {
        let format = known(&[(1, V1)]);
        format.registry.schemas.lock().unwrap().insert(
            9,
            Known::Missing("schema id 9 is not in the schema registry".into()),
        );
        let good = v1(1, "a");
        let cut = &good[..good.len() - 1];
        let unknown = framed(9, &[2]);
        assert!(format.decode(&[cut]).is_err());
        assert!(format.decode(&[b"{\"id\": 1}"]).is_err());
        let missing = format.decode(&[unknown.as_slice()]).unwrap_err();
        assert!(missing.contains("not in the schema registry"), "{missing}");
        // A good record after the bad ones still decodes (the broken decoder was dropped).
        let decoded = format.decode(&[good.as_slice()]).unwrap();
        let json = decoded[0].json().unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&json[0]).unwrap(),
            serde_json::json!({"id": 1, "name": "a"})
        );
        let names: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("name", DataType::Int64, true)]));
        assert!(decoded[0].project(&names).is_err(), "'a' is no BIGINT");
    }

    #[test]
    fn a_schema_that_is_not_a_record_is_its_value() {
        let format = known(&[(5, r#""string""#)]);
        let mut body = Vec::new();
        long(2, &mut body);
        body.extend_from_slice(b"k1");
        let record = framed(5, &body);
        let decoded = format.decode(&[record.as_slice()]).unwrap();
        assert_eq!(decoded[0].json().unwrap(), vec![br#""k1""#.to_vec()]);
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new(
            "user_id",
            DataType::Utf8,
            true,
        )]));
        let rows = decoded[0].project(&schema).unwrap();
        let names = rows[0]
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(names.value(0), "k1");
    }

    #[test]
    fn an_unreachable_registry_is_an_outage() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let format = AvroFormat::new(&options(&url)).unwrap();
        let record = v1(1, "a");
        match format.resolve([record.as_slice()]) {
            Err(SourceError::Unavailable(e)) => assert!(e.contains(&url), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(AvroFormat::new(&BTreeMap::new()).is_err());
        assert!(AvroFormat::new(&options("localhost:8081")).is_err());
        let unknown = known(&[]);
        assert!(
            unknown.decode(&[record.as_slice()]).is_err(),
            "not fetched yet"
        );
    }
}
