//! Kafka sinks: `CREATE SINK s FROM v WITH (connector = 'kafka', topic = ...,
//! properties.bootstrap.server = ..., primary_key = '...') FORMAT PLAIN | UPSERT | DEBEZIUM
//! ENCODE JSON`.
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

use super::encode::{Envelope, records};
use super::{Epoch, SinkDef, SinkError, SinkWriter};

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

/// Writes epochs to a topic.
pub struct KafkaSink {
    name: String,
    topic: String,
    schema: SchemaRef,
    envelope: Envelope,
    key: Vec<usize>,
    force_append_only: bool,
    config: BTreeMap<String, String>,
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
        if !def.format.encode.eq_ignore_ascii_case("json") {
            return Err(SinkError::NotSupported(format!(
                "ENCODE {} for kafka sinks (JSON)",
                def.format.encode.to_uppercase()
            )));
        }
        if let Some(option) = def.format.options.keys().next() {
            return Err(SinkError::Option(format!(
                "unknown option {option} for ENCODE JSON"
            )));
        }
        let key = super::key_positions(&schema, &def.key)?;
        if envelope != Envelope::Plain && key.is_empty() {
            return Err(SinkError::Option(format!(
                "FORMAT {} needs a key: primary_key = 'column, ...' (the view {} has none)",
                def.format.format.to_uppercase(),
                def.from
            )));
        }
        let sink = Self {
            name: def.name.clone(),
            topic,
            schema,
            envelope,
            key,
            force_append_only: super::flag(&def.options, "force_append_only")?,
            config,
            producer: None,
        };
        if check {
            sink.check()?;
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
        let records = records(
            self.envelope,
            &self.schema,
            &self.key,
            self.force_append_only,
            epoch,
            &self.name,
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
