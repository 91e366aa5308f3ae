//! Kafka sinks: `CREATE SINK s FROM v WITH (connector = 'kafka', topic = ...,
//! properties.bootstrap.server = ..., primary_key = '...') FORMAT PLAIN | UPSERT | DEBEZIUM
//! ENCODE JSON | AVRO (schema.registry = 'http://...')`: Avro in Confluent's wire format, the
//! value's (and key's) schema derived from the view's columns — for DEBEZIUM, from its change
//! events with the row as `before` and `after` — and registered as `<topic>-value`
//! (`<topic>-key`).
//!
//! An epoch's records are produced and flushed, and every delivery report checked, before the
//! epoch counts as delivered; an epoch whose records are not all acknowledged is produced again
//! (at-least-once). With `sink.exactly_once = 'true'` each epoch is one Kafka transaction
//! (`transactional.id` `augur-sink-<id>`), which also commits the epoch's number as the offset
//! of the sink's own consumer group (`augur-sink-<id>`, partition 0 of the topic): the marker
//! and the records become visible together, so after a crash the sink asks Kafka which epoch it
//! committed last and skips the epochs up to it instead of writing them twice. Starting the
//! transactional producer fences an earlier one with the same id. Records with a key go to the partition librdkafka's partitioner picks for
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
const OPTIONS: &[&str] = &["topic", "sink.exactly_once"];

/// How long a transaction's calls may take.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// With `sink.exactly_once`: the group that marks the committed epochs, and the last
    /// epoch Kafka has (asked once per producer).
    exactly_once: Option<ExactlyOnce>,
}

/// An exactly-once sink's transaction state.
struct ExactlyOnce {
    transactional_id: String,
    marker: Box<dyn EpochMarker>,
    /// Whether the transactional producer is started and `committed` known.
    started: bool,
    committed: Option<u64>,
}

/// Where an exactly-once sink's last committed epoch is kept, inside the transactions that
/// write the epochs (a seam: rdkafka's mock cluster does not keep a transaction's group
/// offsets, so tests keep the marker themselves).
trait EpochMarker: Send {
    /// The last epoch committed, as Kafka says now.
    fn last(&mut self) -> Result<Option<u64>, String>;
    /// Adds `epoch` as the marker to the open transaction.
    fn stage(&mut self, producer: &BaseProducer<Reports>, epoch: u64) -> Result<(), String>;
    /// The transaction with `epoch`'s marker committed.
    fn committed(&mut self, epoch: u64);
}

/// The marker as the offset of partition 0 of the topic for the sink's own consumer group,
/// committed by the transaction (`send_offsets_to_transaction`).
struct GroupMarker {
    topic: String,
    consumer: rdkafka::consumer::BaseConsumer,
}

impl GroupMarker {
    fn new(config: &BTreeMap<String, String>, topic: &str, group: &str) -> Result<Self, String> {
        let mut client: ClientConfig = config.clone().into_iter().collect();
        client
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed");
        Ok(Self {
            topic: topic.to_string(),
            consumer: client
                .create()
                .map_err(|e| format!("kafka settings: {e}"))?,
        })
    }
}

impl EpochMarker for GroupMarker {
    fn last(&mut self) -> Result<Option<u64>, String> {
        let mut partition = rdkafka::TopicPartitionList::new();
        partition.add_partition(&self.topic, 0);
        let committed = rdkafka::consumer::Consumer::committed_offsets(
            &self.consumer,
            partition,
            TRANSACTION_TIMEOUT,
        )
        .map_err(|e| format!("asking kafka for the last committed epoch: {e}"))?;
        Ok(committed.elements().first().and_then(|e| match e.offset() {
            rdkafka::Offset::Offset(n) if n >= 0 => Some(n as u64),
            _ => None,
        }))
    }

    fn stage(&mut self, producer: &BaseProducer<Reports>, epoch: u64) -> Result<(), String> {
        let metadata = rdkafka::consumer::Consumer::group_metadata(&self.consumer)
            .ok_or("no consumer group for the transaction's marker")?;
        let mut marker = rdkafka::TopicPartitionList::new();
        marker
            .add_partition_offset(&self.topic, 0, rdkafka::Offset::Offset(epoch as i64))
            .map_err(|e| e.to_string())?;
        producer
            .send_offsets_to_transaction(&marker, &metadata, TRANSACTION_TIMEOUT)
            .map_err(|e| format!("adding epoch {epoch}'s marker to the transaction: {e}"))
    }

    fn committed(&mut self, _epoch: u64) {}
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
        let envelope = super::encode::envelope(&def.format.format)?;
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
                "FORMAT {} needs a key: primary_key = 'column, ...' ({} has none)",
                def.format.format.to_uppercase(),
                def.reads()
            )));
        }
        let mut sink = Self {
            name: def.name.clone(),
            topic,
            schema,
            envelope,
            key,
            force_append_only: super::flag(&def.options, "force_append_only", false)?,
            config,
            encoders,
            producer: None,
            exactly_once: None,
        };
        if super::flag(&def.options, "sink.exactly_once", false)? {
            let id = format!("augur-sink-{}", def.id);
            let marker =
                GroupMarker::new(&sink.config, &sink.topic, &id).map_err(SinkError::Option)?;
            sink.exactly_once = Some(ExactlyOnce {
                transactional_id: id,
                marker: Box::new(marker),
                started: false,
                committed: None,
            });
        }
        if check {
            sink.check()?;
            sink.register()?;
        }
        Ok(sink)
    }

    fn producer(&self) -> Result<BaseProducer<Reports>, SinkError> {
        let mut config: ClientConfig = self.config.clone().into_iter().collect();
        if config.get("linger.ms").is_none() {
            config.set("linger.ms", "5");
        }
        if let Some(exactly) = &self.exactly_once {
            config
                .set("transactional.id", &exactly.transactional_id)
                .set("enable.idempotence", "true");
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
        let value = match self.envelope {
            Envelope::Debezium => super::encode::debezium_schema(&self.schema),
            _ => self.schema.clone(),
        };
        values.register(value.as_ref())?;
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
        let mut config: ClientConfig = self.config.clone().into_iter().collect();
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

impl KafkaSink {
    /// For an exactly-once sink: starts the transactional producer (fencing an earlier one) and
    /// learns the last epoch Kafka committed. Returns whether `epoch` is still to be written.
    fn transaction_needed(&mut self, epoch: u64) -> Result<bool, String> {
        let (Some(exactly), Some(producer)) = (&mut self.exactly_once, &self.producer) else {
            return Ok(true);
        };
        if !exactly.started {
            producer
                .init_transactions(TRANSACTION_TIMEOUT)
                .map_err(|e| format!("starting kafka transactions: {e}"))?;
            exactly.committed = exactly.marker.last()?;
            exactly.started = true;
        }
        Ok(exactly.committed.is_none_or(|last| epoch > last))
    }

    /// Commits the open transaction with `epoch` as its marker.
    fn commit_transaction(&mut self, epoch: u64) -> Result<(), String> {
        let (Some(exactly), Some(producer)) = (&mut self.exactly_once, &self.producer) else {
            return Ok(());
        };
        exactly.marker.stage(producer, epoch)?;
        producer
            .commit_transaction(TRANSACTION_TIMEOUT)
            .map_err(|e| format!("committing the kafka transaction of epoch {epoch}: {e}"))?;
        exactly.marker.committed(epoch);
        exactly.committed = Some(epoch);
        Ok(())
    }

    /// Aborts the open transaction; the next write starts the producer again (a fenced or
    /// failed producer cannot go on).
    fn abort_transaction(&mut self) {
        let Some(exactly) = &mut self.exactly_once else {
            return;
        };
        if let Some(producer) = self.producer.take() {
            let _ = producer.abort_transaction(TRANSACTION_TIMEOUT);
        }
        exactly.started = false;
    }
}

impl SinkWriter for KafkaSink {
    fn write(&mut self, epoch: &Epoch) -> Result<u64, String> {
        if self.exactly_once.is_some() {
            if self.producer.is_none() {
                self.producer = Some(self.producer().map_err(|e| e.to_string())?);
            }
            match self.transaction_needed(epoch.number) {
                Ok(true) => {}
                // Kafka has this epoch already: committed before a crash.
                Ok(false) => return Ok(0),
                Err(e) => {
                    self.abort_transaction();
                    return Err(e);
                }
            }
            if let Some(producer) = &self.producer
                && let Err(e) = producer.begin_transaction()
            {
                self.abort_transaction();
                return Err(format!("beginning a kafka transaction: {e}"));
            }
        }
        let written = self.produce(epoch);
        let written = written.and_then(|n| self.commit_transaction(epoch.number).map(|()| n));
        if written.is_err() {
            self.abort_transaction();
        }
        written
    }
}

impl KafkaSink {
    /// Produces `epoch`'s records and waits until every one is acknowledged.
    fn produce(&mut self, epoch: &Epoch) -> Result<u64, String> {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::mocking::MockCluster;
    use rdkafka::{Offset, TopicPartitionList};

    use super::*;
    use crate::sink::Changes;
    use crate::source::FormatDef;

    fn def(brokers: &str) -> SinkDef {
        SinkDef {
            id: 9,
            name: "s".into(),
            from: "v".into(),
            input: 1,
            query: None,
            depends_on: Vec::new(),
            models: Vec::new(),
            options: BTreeMap::from([
                ("connector".into(), "kafka".into()),
                ("topic".into(), "out".into()),
                ("properties.bootstrap.server".into(), brokers.into()),
                ("sink.exactly_once".into(), "true".into()),
            ]),
            format: FormatDef {
                format: "upsert".into(),
                encode: "json".into(),
                options: BTreeMap::new(),
            },
            key: vec!["id".into()],
            created_ms: 0,
        }
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]))
    }

    fn epoch(number: u64, ids: &[i64]) -> Epoch {
        let rows =
            RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(ids.to_vec()))]).unwrap();
        Epoch {
            number,
            committed_ms: 0,
            changes: vec![Changes {
                rows,
                weights: Int64Array::from(vec![1; ids.len()]),
            }],
        }
    }

    /// Records in partition 0 of `out`, read to its end.
    fn records(brokers: &str) -> i64 {
        use rdkafka::error::KafkaError;
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "reader")
            .set("enable.partition.eof", "true")
            .create()
            .unwrap();
        let mut partition = TopicPartitionList::new();
        partition
            .add_partition_offset("out", 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&partition).unwrap();
        let mut read = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            assert!(std::time::Instant::now() < deadline, "out has no end");
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(_)) => read += 1,
                Some(Err(KafkaError::PartitionEOF(_))) => return read,
                _ => {}
            }
        }
    }

    /// The marker kept by the test, as Kafka keeps a transaction's group offsets: staged in
    /// the transaction, visible once it commits.
    #[derive(Clone, Default)]
    struct KeptMarker(Arc<std::sync::Mutex<Option<u64>>>);

    impl EpochMarker for KeptMarker {
        fn last(&mut self) -> Result<Option<u64>, String> {
            Ok(*self.0.lock().unwrap())
        }

        fn stage(&mut self, _: &BaseProducer<Reports>, _: u64) -> Result<(), String> {
            Ok(())
        }

        fn committed(&mut self, epoch: u64) {
            *self.0.lock().unwrap() = Some(epoch);
        }
    }

    fn sink(brokers: &str, marker: &KeptMarker) -> KafkaSink {
        let mut sink = KafkaSink::new(&def(brokers), schema(), false).unwrap();
        sink.exactly_once.as_mut().unwrap().marker = Box::new(marker.clone());
        sink
    }

    #[test]
    fn an_epoch_kafka_committed_is_not_written_again() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("out", 1, 1).unwrap();
        let brokers = cluster.bootstrap_servers();
        let marker = KeptMarker::default();
        let mut first = sink(&brokers, &marker);
        assert_eq!(first.write(&epoch(1, &[1, 2, 3])), Ok(3));
        // The server restarts with epoch 1 still in its outbox: Kafka has it, so it is skipped.
        let mut second = sink(&brokers, &marker);
        assert_eq!(second.write(&epoch(1, &[1, 2, 3])), Ok(0));
        assert_eq!(second.write(&epoch(2, &[4])), Ok(1));
        assert_eq!(records(&brokers), 4);
    }
}
