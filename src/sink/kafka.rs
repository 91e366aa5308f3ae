//! Kafka sinks: `CREATE SINK s FROM v WITH (connector = 'kafka', topic = ...,
//! properties.bootstrap.server = ..., primary_key = '...') FORMAT PLAIN | UPSERT | DEBEZIUM
//! ENCODE JSON`, or `FORMAT PLAIN | UPSERT ENCODE AVRO (schema.registry = 'http://...')`: Avro
//! in Confluent's wire format, the value's (and key's) schema derived from the view's columns
//! and registered as `<topic>-value` (`<topic>-key`).
//!
//! An epoch's records are produced and flushed, and every delivery report checked, before the
//! epoch counts as delivered; an epoch whose records are not all acknowledged is produced again
//! (at-least-once). Records with a key go to the partition librdkafka's partitioner picks for
//! the key, so all changes of one key stay in order.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;

use super::encode::{Envelope, Json, RowEncoder, records};
use super::{Epoch, SinkDef, SinkError, SinkWriter};
use crate::source::avro::Registry;

/// Options a Kafka sink takes besides [`super::COMMON_OPTIONS`] and `properties.*`.
const OPTIONS: &[&str] = &["topic"];

/// How long an epoch's records may take to be acknowledged before the epoch is tried again.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Counts the records the brokers did not acknowledge.
#[derive(Default)]
struct Reports {
    failed: AtomicU64,
    last: Mutex<Option<String>>,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::SeqCst);
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
        }
    }
}

/// Avro rows in Confluent's wire format with the schema registered under a subject.
struct AvroRows {
    registry: Arc<Registry>,
    subject: String,
    /// The columns, with the Avro schema in their metadata, and its id once registered.
    registered: Option<(Arc<datafusion::arrow::datatypes::Schema>, u32)>,
}

impl AvroRows {
    /// Registers the Avro schema of `columns` (once): the schema with it, and its id.
    fn register(
        &mut self,
        columns: &datafusion::arrow::datatypes::Schema,
    ) -> Result<(Arc<datafusion::arrow::datatypes::Schema>, u32), SinkError> {
        if let Some(done) = &self.registered {
            return Ok(done.clone());
        }
        let avro = arrow_avro::schema::AvroSchema::try_from(columns)
            .map_err(|e| SinkError::NotSupported(format!("these columns in Avro ({e})")))?;
        let id = self.registry.register(&self.subject, &avro.json_string)?;
        let schema = Arc::new(
            columns.clone().with_metadata(
                [(
                    arrow_avro::schema::SCHEMA_METADATA_KEY.to_string(),
                    avro.json_string,
                )]
                .into_iter()
                .collect(),
            ),
        );
        self.registered = Some((schema.clone(), id));
        Ok((schema, id))
    }
}

impl RowEncoder for AvroRows {
    fn encode(&mut self, rows: &RecordBatch) -> Result<Vec<Vec<u8>>, String> {
        let (schema, id) = self
            .register(rows.schema().as_ref())
            .map_err(|e| e.to_string())?;
        let rows = rows
            .clone()
            .with_schema(schema.clone())
            .map_err(|e| e.to_string())?;
        let mut encoder = arrow_avro::writer::WriterBuilder::new(schema.as_ref().clone())
            .with_fingerprint_strategy(arrow_avro::schema::FingerprintStrategy::Id(id))
            .build_encoder::<arrow_avro::writer::format::AvroSoeFormat>()
            .map_err(|e| e.to_string())?;
        encoder.encode(&rows).map_err(|e| e.to_string())?;
        Ok(encoder.flush().iter().map(|r| r.to_vec()).collect())
    }
}

/// How keys and values are written.
enum Encoders {
    Json,
    Avro { keys: AvroRows, values: AvroRows },
}

/// Writes epochs to a topic.
pub struct KafkaSink {
    name: String,
    topic: String,
    schema: SchemaRef,
    envelope: Envelope,
    key: Vec<usize>,
    force_append_only: bool,
    config: BTreeMap<String, String>,
    encoders: Encoders,
    producer: Option<BaseProducer<Reports>>,
}

impl KafkaSink {
    /// The sink `def` defines, writing rows of `schema`; with `check`, the brokers must answer
    /// and have the topic.
    pub fn new(def: &SinkDef, schema: SchemaRef, check: bool) -> Result<Self, SinkError> {
        let mut config = BTreeMap::new();
        for (key, value) in &def.options {
            if let Some(setting) = key.strip_prefix("properties.") {
                let setting = match setting {
                    "bootstrap.server" => "bootstrap.servers",
                    other => other,
                };
                config.insert(setting.to_string(), value.clone());
            } else if !OPTIONS.contains(&key.as_str())
                && !super::COMMON_OPTIONS.contains(&key.as_str())
            {
                return Err(SinkError::Option(format!(
                    "unknown option {key} for a 'kafka' sink"
                )));
            }
        }
        if !config.contains_key("bootstrap.servers") {
            return Err(SinkError::Option(
                "a kafka sink needs properties.bootstrap.server".into(),
            ));
        }
        let topic = def
            .options
            .get("topic")
            .cloned()
            .ok_or_else(|| SinkError::Option("a kafka sink needs topic".into()))?;
        let envelope = Envelope::new(&def.format.format)?;
        let encoders = match def.format.encode.to_ascii_lowercase().as_str() {
            "json" => {
                if let Some(option) = def.format.options.keys().next() {
                    return Err(SinkError::Option(format!(
                        "unknown option {option} for ENCODE JSON"
                    )));
                }
                Encoders::Json
            }
            "avro" => {
                if envelope == Envelope::Debezium {
                    return Err(SinkError::NotSupported(
                        "FORMAT DEBEZIUM ENCODE AVRO for kafka sinks (DEBEZIUM writes JSON)".into(),
                    ));
                }
                if let Some(option) = def
                    .format
                    .options
                    .keys()
                    .find(|k| !crate::source::avro::OPTIONS.contains(&k.as_str()))
                {
                    return Err(SinkError::Option(format!(
                        "unknown option {option} for ENCODE AVRO"
                    )));
                }
                let registry = Arc::new(Registry::new(&def.format.options)?);
                Encoders::Avro {
                    keys: AvroRows {
                        registry: registry.clone(),
                        subject: format!("{topic}-key"),
                        registered: None,
                    },
                    values: AvroRows {
                        registry,
                        subject: format!("{topic}-value"),
                        registered: None,
                    },
                }
            }
            other => {
                return Err(SinkError::NotSupported(format!(
                    "ENCODE {} for kafka sinks (JSON or AVRO)",
                    other.to_uppercase()
                )));
            }
        };
        let key = super::key_positions(&schema, &def.key)?;
        if envelope != Envelope::Plain && key.is_empty() {
            return Err(SinkError::Option(format!(
                "FORMAT {} needs a key: primary_key = 'column, ...' (the view {} has none)",
                def.format.format.to_uppercase(),
                def.from
            )));
        }
        let mut sink = Self {
            name: def.name.clone(),
            topic,
            schema,
            envelope,
            key,
            force_append_only: super::flag(&def.options, "force_append_only")?,
            config,
            encoders,
            producer: None,
        };
        if check {
            sink.check()?;
            sink.register()?;
        }
        Ok(sink)
    }

    fn producer(&self) -> Result<BaseProducer<Reports>, SinkError> {
        let mut config = ClientConfig::new();
        config.set("linger.ms", "5");
        for (key, value) in &self.config {
            config.set(key, value);
        }
        config
            .create_with_context(Reports::default())
            .map_err(|e| SinkError::Option(format!("kafka settings: {e}")))
    }

    /// For Avro: registers the value's schema (and the key's) now, so that a registry that
    /// cannot be reached or refuses the schema is an error at CREATE.
    fn register(&mut self) -> Result<(), SinkError> {
        let Encoders::Avro { keys, values } = &mut self.encoders else {
            return Ok(());
        };
        values.register(self.schema.as_ref())?;
        if !self.key.is_empty() {
            let key = self
                .schema
                .project(&self.key)
                .map_err(|e| SinkError::Option(e.to_string()))?;
            keys.register(&key)?;
        }
        Ok(())
    }

    /// The brokers answer and have the topic (asked as a consumer would, which does not
    /// create the topic by asking).
    fn check(&self) -> Result<(), SinkError> {
        let mut config = ClientConfig::new();
        for (key, value) in &self.config {
            config.set(key, value);
        }
        config.set("allow.auto.create.topics", "false");
        let consumer: rdkafka::consumer::BaseConsumer = config
            .create()
            .map_err(|e| SinkError::Option(format!("kafka settings: {e}")))?;
        let metadata = rdkafka::consumer::Consumer::fetch_metadata(
            &consumer,
            Some(&self.topic),
            Duration::from_secs(10),
        )
        .map_err(|e| SinkError::Unavailable(format!("cannot reach the kafka brokers: {e}")))?;
        let found = metadata.topics().iter().find(|t| t.name() == self.topic);
        match found.and_then(|t| t.error()) {
            None if found.is_some_and(|t| !t.partitions().is_empty()) => Ok(()),
            Some(error)
                if KafkaError::MetadataFetch(error.into()).rdkafka_error_code()
                    != Some(RDKafkaErrorCode::UnknownTopicOrPartition) =>
            {
                Err(SinkError::Unavailable(format!(
                    "kafka topic \"{}\": {}",
                    self.topic,
                    KafkaError::MetadataFetch(error.into())
                )))
            }
            _ => Err(SinkError::Missing(format!(
                "kafka topic \"{}\"",
                self.topic
            ))),
        }
    }
}

impl SinkWriter for KafkaSink {
    fn write(&mut self, epoch: &Epoch) -> Result<u64, String> {
        let mut json_keys = Json;
        let mut json_values = Json;
        let (keys, values): (&mut dyn RowEncoder, &mut dyn RowEncoder) = match &mut self.encoders {
            Encoders::Json => (&mut json_keys, &mut json_values),
            Encoders::Avro { keys, values } => (keys, values),
        };
        let records = records(
            self.envelope,
            &self.schema,
            &self.key,
            self.force_append_only,
            epoch,
            &self.name,
            keys,
            values,
        )?;
        if records.is_empty() {
            return Ok(0);
        }
        if self.producer.is_none() {
            self.producer = Some(self.producer().map_err(|e| e.to_string())?);
        }
        let Some(producer) = &self.producer else {
            return Err("no producer".into());
        };
        producer.context().failed.store(0, Ordering::SeqCst);
        for record in &records {
            let mut message = BaseRecord::<[u8], [u8]>::to(&self.topic);
            if let Some(key) = &record.key {
                message = message.key(key.as_slice());
            }
            if let Some(value) = &record.value {
                message = message.payload(value.as_slice());
            }
            let mut message = Some(message);
            while let Some(m) = message.take() {
                match producer.send(m) {
                    Ok(()) => {}
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        producer.poll(Duration::from_millis(10));
                        message = Some(back);
                    }
                    Err((e, _)) => return Err(format!("producing to {}: {e}", self.topic)),
                }
            }
            producer.poll(Duration::ZERO);
        }
        producer
            .flush(FLUSH_TIMEOUT)
            .map_err(|e| format!("waiting for kafka to acknowledge: {e}"))?;
        let failed = producer.context().failed.load(Ordering::SeqCst);
        if failed > 0 {
            let last = producer
                .context()
                .last
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_default();
            return Err(format!(
                "{failed} records to {} were not acknowledged: {last}",
                self.topic
            ));
        }
        Ok(records.len() as u64)
    }
}
