//! Kafka JSON ingestion: small JSON events from a 4-partition topic (rdkafka's mock cluster, in
//! this process) into `GROUP BY user_id` and one-minute `TUMBLE` views.
//!
//! The figure is events per CPU-second of the server process (user + sys, from `/proc`) from the
//! first record produced until the view has counted the last one. The mock broker keeps about
//! 5 MiB per partition, so the events are produced in rounds of 100,000, each once the view has
//! counted the round before. In the same run: the cost of turning the same payloads into Arrow
//! rows alone (Augur's JSON decoder, in batches of 8,192: the floor of any ingestion), and
//! DuckDB's `read_json` over the same events as one file, grouped the same way (`.venv`'s
//! duckdb, when installed).
//!
//! Run with `benches/run.sh kafka` (release build). `AUGUR_BENCH_SCALE=0.1` scales the events.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use augur::source::encoding::{Encoding, RecordDecoder};
use common::{Augur, connect, cpu_seconds};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const PARTITIONS: i32 = 4;
const ROUND: usize = 100_000;
const USERS: usize = 100_000;

fn event(i: usize) -> String {
    format!(
        r#"{{"id":{i},"user_id":{},"amount":{}.{:02},"ts":"2026-01-01 {:02}:{:02}:{:02}"}}"#,
        (i * 7919) % USERS,
        i % 1000,
        i % 100,
        (i / 3_600_000) % 24,
        (i / 60_000) % 60,
        (i / 1000) % 60
    )
}

fn produce(producer: &BaseProducer, from: usize, to: usize) {
    for i in from..to {
        let payload = event(i);
        let record = BaseRecord::<(), _>::to("events")
            .partition(i as i32 % PARTITIONS)
            .payload(&payload);
        let mut record = Some(record);
        while let Some(r) = record.take() {
            if let Err((_, back)) = producer.send(r) {
                // The local queue is full: let it drain.
                producer.poll(Duration::from_millis(1));
                record = Some(back);
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// Server CPU seconds and wall seconds to ingest `events` into the view `view_sql` defines.
fn measure(
    runtime: &tokio::runtime::Runtime,
    events: usize,
    view_sql: &str,
    count_sql: &str,
) -> (f64, f64) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic("events", PARTITIONS, 1)
        .expect("topic");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let augur = Augur::start(&[]);
    let pid = augur.child.id();
    let client = runtime.block_on(connect(&augur.conn_str()));
    runtime
        .block_on(client.batch_execute(&format!(
            "CREATE SOURCE events (id BIGINT, user_id BIGINT, amount DOUBLE PRECISION, \
             ts TIMESTAMP) WITH (connector = 'kafka', topic = 'events', \
             properties.bootstrap.server = '{}') FORMAT PLAIN ENCODE JSON; {view_sql}",
            cluster.bootstrap_servers()
        )))
        .expect("create");
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    let mut produced = 0;
    while produced < events {
        let to = (produced + ROUND).min(events);
        produce(&producer, produced, to);
        produced = to;
        loop {
            let n: i64 = runtime
                .block_on(client.query_one(count_sql, &[]))
                .map(|r| r.get::<_, Option<i64>>(0).unwrap_or(0))
                .unwrap_or(0);
            if n as usize >= produced {
                assert_eq!(n as usize, produced, "every event counted once");
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    (cpu_seconds(pid) - cpu0, t0.elapsed().as_secs_f64())
}

/// CPU seconds of this thread to decode `events` payloads in batches of 8,192.
fn decode_only(events: usize) -> f64 {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("user_id", DataType::Int64, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
    ]));
    let decoder = RecordDecoder::new(schema, Encoding::Json);
    let mut seconds = 0.0;
    let mut rows = 0;
    let mut from = 0;
    while from < events {
        let to = (from + 8192).min(events);
        let payloads: Vec<String> = (from..to).map(event).collect();
        let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_bytes()).collect();
        let t = Instant::now();
        let (batch, _, failures) = decoder.decode(&refs);
        seconds += t.elapsed().as_secs_f64();
        assert!(failures.is_empty());
        rows += batch.num_rows();
        from = to;
    }
    assert_eq!(rows, events);
    seconds
}

/// DuckDB's CPU seconds to read the events as JSON lines and group them by user, if `.venv` has
/// duckdb.
fn duckdb(events: usize) -> Option<f64> {
    let dir = tempfile::tempdir().ok()?;
    let path = dir.path().join("events.json");
    let mut text = String::with_capacity(events * 90);
    for i in 0..events {
        text.push_str(&event(i));
        text.push('\n');
    }
    std::fs::write(&path, text).ok()?;
    common::duckdb_seconds(&format!(
        "SELECT count(*) FROM (SELECT user_id, count(*), sum(amount) FROM read_json('{}', \
         columns = {{'id': 'BIGINT', 'user_id': 'BIGINT', 'amount': 'DOUBLE', \
         'ts': 'TIMESTAMP'}}) GROUP BY user_id)",
        path.display()
    ))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let events = (10_000_000.0 * common::scale()) as usize;
    println!("| view | events | server events/CPU-s | wall events/s | server CPU s |");
    println!("|---|---|---|---|---|");
    let views = [
        (
            "GROUP BY user_id",
            "CREATE MATERIALIZED VIEW v AS SELECT user_id, count(*) AS n, sum(amount) AS total \
             FROM events GROUP BY user_id",
            "SELECT sum(n)::BIGINT FROM v",
        ),
        (
            "TUMBLE 1 minute",
            "CREATE MATERIALIZED VIEW v AS SELECT window_start, count(*) AS n, sum(amount) AS \
             total FROM TUMBLE(events, ts, INTERVAL '1 minute') GROUP BY window_start",
            "SELECT sum(n)::BIGINT FROM v",
        ),
    ];
    let mut slowest = f64::INFINITY;
    for (name, view, count) in views {
        let (cpu, wall) = measure(&runtime, events, view, count);
        let rate = events as f64 / cpu;
        slowest = slowest.min(rate);
        println!(
            "| {name} | {events} | {rate:.0} | {:.0} | {cpu:.2} |",
            events as f64 / wall
        );
    }
    let decode = decode_only(events);
    println!();
    println!(
        "JSON → Arrow alone (the floor): {:.0} events/CPU-s ({decode:.2} s); ingestion into the \
         slower view costs {:.1}× decoding alone.",
        events as f64 / decode,
        (events as f64 / slowest) / decode
    );
    match duckdb(events) {
        Some(seconds) => println!(
            "DuckDB read_json + GROUP BY user_id, one thread, as one batch: {:.0} events/CPU-s \
             ({seconds:.2} s).",
            events as f64 / seconds
        ),
        None => println!("DuckDB: not measured (no duckdb in .venv)."),
    }
}
