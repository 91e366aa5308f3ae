//! Kafka sources against rdkafka's mock cluster (the real protocol, in this process): JSON and
//! CSV records into views, records that cannot be read kept aside, offsets committed with the
//! views so `kill -9` neither loses nor repeats a record, and a view created after the records
//! arrived that sees the same rows.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, error_code, scalar, wait_for};
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tokio_postgres::Client;

fn producer(cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .expect("producer")
}

/// Sends `payloads` to `topic`, record `i` to partition `i % partitions`, keyed by `i`.
fn produce(producer: &BaseProducer, topic: &str, partitions: i32, payloads: &[(usize, String)]) {
    for (i, payload) in payloads {
        let key = i.to_string();
        let record = BaseRecord::to(topic)
            .partition(*i as i32 % partitions)
            .key(&key)
            .payload(payload);
        producer.send(record).expect("send");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

/// The JSON of event `i`: user `i % 7`, amount `i`.
fn event(i: usize) -> String {
    format!(
        r#"{{"id": {i}, "user_id": {}, "amount": {i}.5, "ts": "2026-01-01 00:00:{:02}"}}"#,
        i % 7,
        i % 60
    )
}

#[tokio::test]
async fn json_records_into_views_with_bad_records_kept_aside() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("payments", 3, 1).expect("topic");
    let producer = producer(&cluster);
    let server = TestServer::start();
    let client = server.connect().await;

    client
        .batch_execute(&format!(
            "CREATE SOURCE payments (id BIGINT, user_id BIGINT, amount DOUBLE PRECISION, \
             ts TIMESTAMP) INCLUDE partition AS p, offset AS o, key AS k \
             WITH (connector = 'kafka', topic = 'payments', \
             properties.bootstrap.server = '{}', scan.startup.mode = 'earliest') \
             FORMAT PLAIN ENCODE JSON; \
             CREATE MATERIALIZED VIEW per_user AS \
             SELECT user_id, count(*) AS n, sum(amount) AS total FROM payments GROUP BY user_id;",
            cluster.bootstrap_servers()
        ))
        .await
        .unwrap();

    // 300 good events, and among them three records that cannot be rows.
    let mut payloads: Vec<(usize, String)> = (0..300).map(|i| (i, event(i))).collect();
    payloads.insert(10, (1000, r#"{"id": 1000, "user_id": "#.into()));
    payloads.insert(150, (1001, r#"{"id": "not a number"}"#.into()));
    payloads.insert(200, (1002, "[1, 2, 3]".into()));
    produce(&producer, "payments", 3, &payloads);

    wait_for(&client, "SELECT sum(n)::BIGINT FROM per_user", 300).await;
    let total: f64 = client
        .query_one("SELECT sum(total) FROM per_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, (0..300).map(|i| i as f64 + 0.5).sum::<f64>());
    let user3 = scalar(&client, "SELECT n FROM per_user WHERE user_id = 3").await;
    assert_eq!(user3, (0..300).filter(|i| i % 7 == 3).count() as i64);

    // The included parts: each record's partition, offset and key.
    let rows = client
        .query(
            "SELECT id, p, o, k FROM payments WHERE id IN (0, 1, 5) ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let parts: Vec<(i64, i32, Vec<u8>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(3)))
        .collect();
    assert_eq!(
        parts,
        vec![
            (0, 0, b"0".to_vec()),
            (1, 1, b"1".to_vec()),
            (5, 2, b"5".to_vec())
        ]
    );
    let offset: i64 = rows[0].get(2);
    assert_eq!(offset, 0);

    // The bad records: counted, and kept with where they were and why.
    let stats = client
        .query_one(
            "SELECT rows_ingested, rows_rejected FROM augur_catalog.source_stats \
             WHERE source_name = 'payments'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((stats.get::<_, i64>(0), stats.get::<_, i64>(1)), (300, 3));
    let rejected = client
        .query(
            "SELECT split, payload, error FROM augur_catalog.rejected_rows \
             WHERE source_name = 'payments' ORDER BY payload",
            &[],
        )
        .await
        .unwrap();
    let payloads: Vec<String> = rejected.iter().map(|r| r.get(1)).collect();
    assert_eq!(
        payloads,
        vec![
            "[1, 2, 3]".to_string(),
            r#"{"id": "not a number"}"#.to_string(),
            r#"{"id": 1000, "user_id": "#.to_string(),
        ]
    );
    let splits: Vec<i32> = rejected.iter().map(|r| r.get(0)).collect();
    assert_eq!(splits, vec![1002 % 3, 1001 % 3, 1000 % 3]);
    for row in &rejected {
        let error: String = row.get(2);
        assert!(!error.is_empty());
    }

    // A view created now reads the topic again and sees the same rows.
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW per_user_later AS \
             SELECT user_id, count(*) AS n, sum(amount) AS total FROM payments GROUP BY user_id",
        )
        .await
        .unwrap();
    let same = scalar(
        &client,
        "SELECT count(*) FROM per_user a JOIN per_user_later b \
         ON a.user_id = b.user_id AND a.n = b.n AND a.total = b.total",
    )
    .await;
    assert_eq!(same, 7);

    // And both follow new records.
    let more: Vec<(usize, String)> = (300..400).map(|i| (i, event(i))).collect();
    produce(&producer, "payments", 3, &more);
    wait_for(&client, "SELECT sum(n)::BIGINT FROM per_user", 400).await;
    wait_for(&client, "SELECT sum(n)::BIGINT FROM per_user_later", 400).await;
}

#[tokio::test]
async fn kill_9_while_ingesting_neither_loses_nor_repeats_a_record() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("clicks", 4, 1).expect("topic");
    let producer = producer(&cluster);
    let mut server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE clicks (id BIGINT, user_id BIGINT, amount DOUBLE PRECISION, \
             ts TIMESTAMP) WITH (connector = 'kafka', topic = 'clicks', \
             properties.bootstrap.server = '{}') FORMAT PLAIN ENCODE JSON; \
             CREATE MATERIALIZED VIEW counts AS \
             SELECT user_id, count(*) AS n, count(DISTINCT id) AS ids FROM clicks GROUP BY user_id;",
            cluster.bootstrap_servers()
        ))
        .await
        .unwrap();
    drop(client);

    let mut produced = 0;
    for round in 0..4 {
        let batch: Vec<(usize, String)> =
            (produced..produced + 5000).map(|i| (i, event(i))).collect();
        produce(&producer, "clicks", 4, &batch);
        produced += batch.len();
        // Killed at some moment of ingesting (the earlier rounds' records are in by now, some
        // of this round's are).
        tokio::time::sleep(Duration::from_millis(50 + 70 * round)).await;
        server.restart();
    }
    let client = server.connect().await;
    let want = produced as i64;
    wait_for(&client, "SELECT sum(n)::BIGINT FROM counts", want).await;
    assert_eq!(
        scalar(&client, "SELECT sum(ids)::BIGINT FROM counts").await,
        want
    );
    // Nothing more comes after the last record.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        scalar(&client, "SELECT sum(n)::BIGINT FROM counts").await,
        want
    );
    let ingested = scalar(
        &client,
        "SELECT rows_ingested FROM augur_catalog.source_stats WHERE source_name = 'clicks'",
    )
    .await;
    assert_eq!(ingested, want);
}

#[tokio::test]
async fn csv_records_and_startup_at_the_latest_offset() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("readings", 2, 1).expect("topic");
    let producer = producer(&cluster);
    // Records before the source exists: `latest` skips them.
    let before: Vec<(usize, String)> = (0..10).map(|i| (i, format!("{i};old;1.0"))).collect();
    produce(&producer, "readings", 2, &before);

    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE readings (id BIGINT, sensor TEXT, value DOUBLE PRECISION) \
             WITH (connector = 'kafka', topic = 'readings', \
             properties.bootstrap.server = '{}', scan.startup.mode = 'latest') \
             FORMAT PLAIN ENCODE CSV (delimiter = ';'); \
             CREATE MATERIALIZED VIEW by_sensor AS \
             SELECT sensor, count(*) AS n, sum(value) AS total FROM readings GROUP BY sensor;",
            cluster.bootstrap_servers()
        ))
        .await
        .unwrap();
    let mut after: Vec<(usize, String)> = (10..60)
        .map(|i| (i, format!("{i};s{};{}.25", i % 3, i)))
        .collect();
    after.push((60, "61;s1;not a number".into()));
    after.push((61, "62;s1".into()));
    produce(&producer, "readings", 2, &after);
    wait_for(&client, "SELECT sum(n)::BIGINT FROM by_sensor", 50).await;
    let s1 = scalar(&client, "SELECT n FROM by_sensor WHERE sensor = 's1'").await;
    assert_eq!(s1, (10..60).filter(|i| i % 3 == 1).count() as i64);
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM by_sensor WHERE sensor = 'old'"
        )
        .await,
        0
    );
    wait_for(
        &client,
        "SELECT count(*) FROM augur_catalog.rejected_rows WHERE source_name = 'readings'",
        2,
    )
    .await;
}

#[tokio::test]
async fn mistakes_at_create_are_refused_with_their_sqlstate() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("t", 1, 1).expect("topic");
    let server = TestServer::start();
    let client = server.connect().await;
    let brokers = cluster.bootstrap_servers();
    let create = |with: &str, format: &str| {
        format!(
            "CREATE SOURCE s (id BIGINT) WITH (connector = 'kafka', \
             properties.bootstrap.server = '{brokers}'{with}) {format}"
        )
    };
    let json = "FORMAT PLAIN ENCODE JSON";
    // A topic that does not exist.
    assert_eq!(
        error_code(&client, &create(", topic = 'nope'", json)).await,
        "42704"
    );
    // An option the connector does not have.
    assert_eq!(
        error_code(
            &client,
            &create(", topic = 't', scan.startup.mod = 'x'", json)
        )
        .await,
        "22023"
    );
    assert_eq!(
        error_code(
            &client,
            &create(", topic = 't', scan.startup.mode = 'x'", json)
        )
        .await,
        "22023"
    );
    // No topic, no FORMAT, an encoding Augur does not read.
    assert_eq!(error_code(&client, &create("", json)).await, "22023");
    assert_eq!(
        error_code(&client, &create(", topic = 't'", "")).await,
        "22023"
    );
    assert_eq!(
        error_code(
            &client,
            &create(", topic = 't'", "FORMAT PLAIN ENCODE PROTOBUF")
        )
        .await,
        "0A000"
    );
    assert_eq!(
        error_code(
            &client,
            &create(", topic = 't'", "FORMAT PLAIN ENCODE CSV (delim = ',')")
        )
        .await,
        "22023"
    );
    // Nothing was left behind by the refusals.
    client
        .batch_execute(&create(", topic = 't'", json))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_broker_that_goes_away_is_waited_for_and_caught_up_with() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("orders", 2, 1).expect("topic");
    let producer = producer(&cluster);
    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE orders (id BIGINT, user_id BIGINT, amount DOUBLE PRECISION, \
             ts TIMESTAMP) WITH (connector = 'kafka', topic = 'orders', \
             properties.bootstrap.server = '{}', scan.partition.discovery.interval.ms = '200') \
             FORMAT PLAIN ENCODE JSON; \
             CREATE MATERIALIZED VIEW n AS SELECT count(*) AS n FROM orders;",
            cluster.bootstrap_servers()
        ))
        .await
        .unwrap();
    let first: Vec<(usize, String)> = (0..100).map(|i| (i, event(i))).collect();
    produce(&producer, "orders", 2, &first);
    wait_for(&client, "SELECT n FROM n", 100).await;
    // Each partition read to its end: no lag.
    wait_for(
        &client,
        "SELECT sum(lag)::BIGINT FROM augur_catalog.source_splits WHERE source_name = 'orders'",
        0,
    )
    .await;
    assert_eq!(
        scalar(
            &client,
            "SELECT sum(next_offset - start_offset)::BIGINT FROM augur_catalog.source_splits \
             WHERE source_name = 'orders'"
        )
        .await,
        100
    );

    cluster.broker_down(1).expect("broker down");
    // The source says what is wrong, and the server keeps answering.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let error: Option<String> = client
            .query_one(
                "SELECT last_error FROM augur_catalog.source_stats WHERE source_name = 'orders'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if error.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no last_error while the broker is down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(scalar(&client, "SELECT n FROM n").await, 100);

    cluster.broker_up(1).expect("broker up");
    let second: Vec<(usize, String)> = (100..250).map(|i| (i, event(i))).collect();
    produce(&producer, "orders", 2, &second);
    wait_for(&client, "SELECT n FROM n", 250).await;
    wait_for(
        &client,
        "SELECT count(*) FROM augur_catalog.source_stats \
         WHERE source_name = 'orders' AND last_error IS NULL",
        1,
    )
    .await;
}

#[tokio::test]
async fn an_unreachable_broker_is_refused_at_create() {
    // A port nothing listens on.
    let port = common::free_port();
    let server = TestServer::start();
    let client = server.connect().await;
    let sql = format!(
        "CREATE SOURCE s (id BIGINT) WITH (connector = 'kafka', topic = 't', \
         properties.bootstrap.server = '127.0.0.1:{port}') FORMAT PLAIN ENCODE JSON"
    );
    assert_eq!(error_code(&client, &sql).await, "08001");
    assert_eq!(
        scalar(&client, "SELECT count(*) FROM augur_catalog.source_stats").await,
        0
    );
}

/// Sends `(key, value)` records to partition `key % partitions`; no value is a tombstone.
fn produce_keyed(
    producer: &BaseProducer,
    topic: &str,
    partitions: i32,
    records: &[(i64, Option<String>)],
) {
    for (key, value) in records {
        let key_text = key.to_string();
        let mut record = BaseRecord::to(topic)
            .partition((*key % partitions as i64) as i32)
            .key(&key_text);
        if let Some(value) = value {
            record = record.payload(value);
        }
        producer.send(record).expect("send");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

#[tokio::test]
async fn upsert_changelog_into_a_table_with_updates_and_deletes() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("users", 2, 1).expect("topic");
    let producer = producer(&cluster);
    let mut server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT, score BIGINT NOT NULL) \
             WITH (connector = 'kafka', topic = 'users', properties.bootstrap.server = '{}') \
             FORMAT UPSERT ENCODE JSON; \
             CREATE MATERIALIZED VIEW totals AS \
             SELECT count(*) AS n, sum(score) AS score FROM users;",
            cluster.bootstrap_servers()
        ))
        .await
        .unwrap();
    let value = |id: i64, name: &str, score: i64| {
        Some(format!(
            r#"{{"id": {id}, "name": "{name}", "score": {score}}}"#
        ))
    };
    // What the table must end up holding, computed alongside.
    let mut want: std::collections::BTreeMap<i64, (String, i64)> = Default::default();
    let mut records = Vec::new();
    for id in 0..50 {
        records.push((id, value(id, "a", id)));
        want.insert(id, ("a".into(), id));
    }
    for id in (0..50).step_by(3) {
        records.push((id, value(id, "b", id * 10)));
        want.insert(id, ("b".into(), id * 10));
    }
    for id in (0..50).step_by(5) {
        records.push((id, None));
        want.remove(&id);
    }
    // No score: NOT NULL refuses it; the row keeps its earlier version.
    records.push((7, Some(r#"{"id": 7, "name": "c"}"#.into())));
    // The key decides the row, whatever id the value carries.
    records.push((70, value(71, "k", 70)));
    want.insert(70, ("k".into(), 70));
    produce_keyed(&producer, "users", 2, &records);

    let n = want.len() as i64;
    let score: i64 = want.values().map(|(_, s)| s).sum();
    wait_for(&client, "SELECT count(*) FROM users", n).await;
    client.batch_execute("FLUSH").await.unwrap();
    wait_for(&client, "SELECT n FROM totals", n).await;
    assert_eq!(
        scalar(&client, "SELECT score::BIGINT FROM totals").await,
        score
    );
    let rows = client
        .query("SELECT id, name, score FROM users ORDER BY id", &[])
        .await
        .unwrap();
    let got: Vec<(i64, String, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expected: Vec<(i64, String, i64)> = want
        .iter()
        .map(|(id, (name, score))| (*id, name.clone(), *score))
        .collect();
    assert_eq!(got, expected);
    wait_for(
        &client,
        "SELECT rows_rejected FROM augur_catalog.source_stats WHERE source_name = 'users'",
        1,
    )
    .await;
    let error: String = client
        .query_one(
            "SELECT error FROM augur_catalog.rejected_rows WHERE source_name = 'users'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(error.contains("score"), "{error}");

    // Constraints that its writes would have to check are refused.
    assert_eq!(
        error_code(&client, "CREATE UNIQUE INDEX ON users (name)").await,
        "0A000"
    );
    assert_eq!(
        error_code(
            &client,
            "CREATE TABLE child (id BIGINT PRIMARY KEY, user_id BIGINT REFERENCES users (id))"
        )
        .await,
        "0A000"
    );
    // The topic owns the rows.
    for sql in [
        "INSERT INTO users VALUES (100, 'x', 1)",
        "UPDATE users SET score = 0",
        "DELETE FROM users",
        "TRUNCATE users",
    ] {
        assert_eq!(error_code(&client, sql).await, "42809", "{sql}");
    }

    // After kill -9, nothing is applied twice: deletes and updates of the same keys again.
    drop(client);
    server.restart();
    let more: Vec<(i64, Option<String>)> =
        vec![(1, value(1, "z", 1000)), (2, None), (60, value(60, "n", 6))];
    produce_keyed(&producer, "users", 2, &more);
    want.insert(1, ("z".into(), 1000));
    want.remove(&2);
    want.insert(60, ("n".into(), 6));
    let client = server.connect().await;
    let score: i64 = want.values().map(|(_, s)| s).sum();
    wait_for(&client, "SELECT score::BIGINT FROM totals", score).await;
    assert_eq!(
        scalar(&client, "SELECT n FROM totals").await,
        want.len() as i64
    );
    // A view created now fills from the table.
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW totals_later AS \
             SELECT count(*) AS n, sum(score) AS score FROM users",
        )
        .await
        .unwrap();
    assert_eq!(
        scalar(&client, "SELECT score::BIGINT FROM totals_later").await,
        score
    );
}

#[tokio::test]
async fn debezium_changes_into_a_table_and_its_views() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic("dbserver.public.accounts", 1, 1)
        .expect("topic");
    let producer = producer(&cluster);
    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE accounts (id BIGINT PRIMARY KEY, owner TEXT, balance DOUBLE PRECISION) \
             WITH (connector = 'kafka', topic = 'dbserver.public.accounts', \
             properties.bootstrap.server = '{}') FORMAT DEBEZIUM ENCODE JSON; \
             CREATE MATERIALIZED VIEW by_owner AS \
             SELECT owner, count(*) AS n, sum(balance) AS balance FROM accounts GROUP BY owner;",
            cluster.bootstrap_servers()
        ))
        .await
        .unwrap();
    let row = |id: i64, owner: &str, balance: f64| {
        format!(r#"{{"id": {id}, "owner": "{owner}", "balance": {balance}}}"#)
    };
    let events: Vec<(i64, Option<String>)> = vec![
        // The snapshot, then live changes.
        (
            1,
            Some(format!(
                r#"{{"op": "r", "before": null, "after": {}}}"#,
                row(1, "ann", 10.0)
            )),
        ),
        (
            2,
            Some(format!(
                r#"{{"op": "r", "before": null, "after": {}}}"#,
                row(2, "bob", 20.0)
            )),
        ),
        (
            3,
            Some(format!(
                r#"{{"op": "c", "before": null, "after": {}, "ts_ms": 1}}"#,
                row(3, "ann", 5.0)
            )),
        ),
        // An update, wrapped by the JSON converter with its schema.
        (
            1,
            Some(format!(
                r#"{{"schema": {{"type": "struct"}}, "payload": {{"op": "u", "before": {}, "after": {}}}}}"#,
                row(1, "ann", 10.0),
                row(1, "bob", 15.0)
            )),
        ),
        // A delete and its tombstone.
        (
            2,
            Some(format!(
                r#"{{"op": "d", "before": {}, "after": null}}"#,
                row(2, "bob", 20.0)
            )),
        ),
        (2, None),
        // An op Augur does not know, and a record that is not an event.
        (4, Some(r#"{"op": "x", "after": {"id": 4}}"#.into())),
        (5, Some("hello".into())),
        (
            6,
            Some(format!(r#"{{"op": "c", "after": {}}}"#, row(6, "cy", 1.5))),
        ),
        // An update whose new row has no key: rejected, and the old row stays.
        (
            3,
            Some(format!(
                r#"{{"op": "u", "before": {}, "after": {{"owner": "zed", "balance": 1}}}}"#,
                row(3, "ann", 5.0)
            )),
        ),
    ];
    produce_keyed(&producer, "dbserver.public.accounts", 1, &events);
    wait_for(&client, "SELECT count(*) FROM accounts", 3).await;
    client.batch_execute("FLUSH").await.unwrap();
    let rows = client
        .query("SELECT owner, n, balance FROM by_owner ORDER BY owner", &[])
        .await
        .unwrap();
    let got: Vec<(String, i64, f64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("ann".to_string(), 1, 5.0),
            ("bob".to_string(), 1, 15.0),
            ("cy".to_string(), 1, 1.5)
        ]
    );
    // The view equals its query run over the table.
    let batch = client
        .query(
            "SELECT owner, count(*), sum(balance) FROM accounts GROUP BY owner ORDER BY owner",
            &[],
        )
        .await
        .unwrap();
    let batch: Vec<(String, i64, f64)> = batch
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(got, batch);
    wait_for(
        &client,
        "SELECT count(*) FROM augur_catalog.rejected_rows WHERE source_name = 'accounts'",
        3,
    )
    .await;
    let errors: Vec<String> = client
        .query(
            "SELECT error FROM augur_catalog.rejected_rows WHERE source_name = 'accounts' \
             ORDER BY \"offset\"",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(errors[0].contains("unknown Debezium op"), "{errors:?}");

    assert_eq!(
        error_code(&client, "ALTER TABLE accounts ADD COLUMN note TEXT").await,
        "0A000"
    );
    // Dropped, it leaves nothing behind: no rows, no position, no rejected records.
    client
        .batch_execute("DROP MATERIALIZED VIEW by_owner; DROP TABLE accounts")
        .await
        .unwrap();
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM augur_catalog.rejected_rows WHERE source_name = 'accounts'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM augur_catalog.source_splits WHERE source_name = 'accounts'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_view_created_after_the_topic_dropped_records_says_so() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("logs", 1, 1).expect("topic");
    let producer = producer(&cluster);
    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE logs (id BIGINT, line TEXT) WITH (connector = 'kafka', \
             topic = 'logs', properties.bootstrap.server = '{}') FORMAT PLAIN ENCODE JSON; \
             CREATE MATERIALIZED VIEW early AS SELECT count(*) AS n FROM logs;",
            cluster.bootstrap_servers()
        ))
        .await
        .unwrap();
    // The mock broker keeps about 5 MiB per partition: 8 MiB pushes the first records out,
    // after the view has read them.
    let line = "x".repeat(1000);
    let mut sent = 0;
    for _ in 0..8 {
        let chunk: Vec<(usize, String)> = (sent..sent + 1000)
            .map(|i| (i, format!(r#"{{"id": {i}, "line": "{line}"}}"#)))
            .collect();
        produce(&producer, "logs", 1, &chunk);
        sent += chunk.len();
        wait_for(&client, "SELECT n FROM early", sent as i64).await;
    }
    client
        .batch_execute("CREATE MATERIALIZED VIEW late AS SELECT count(*) AS n FROM logs")
        .await
        .unwrap();
    let late = scalar(&client, "SELECT n FROM late").await;
    assert!(late < sent as i64, "{late}");
    let note: Option<String> = client
        .query_one(
            "SELECT backfill_note FROM augur_catalog.views WHERE name = 'late'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let note = note.expect("a note on the view created late");
    assert!(note.contains("partition 0: offsets 0 to"), "{note}");
    let early: Option<String> = client
        .query_one(
            "SELECT backfill_note FROM augur_catalog.views WHERE name = 'early'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(early, None);
}

/// A Confluent schema registry on loopback: subjects with versions of schemas, answered over
/// HTTP as the registry's REST API does (`/schemas/ids/{id}`, `/subjects/{s}/versions/latest`,
/// and `POST /subjects/{s}/versions` to register).
#[derive(Clone, Default)]
struct SchemaRegistry {
    /// (id, subject, schema text), ids from 1 in order of registration.
    schemas: std::sync::Arc<std::sync::Mutex<Vec<(u32, String, String)>>>,
}

impl SchemaRegistry {
    /// Serves the registry on a free port: its URL.
    fn serve(&self) -> String {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let schemas = self.schemas.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut schemas = schemas.lock().unwrap();
                let found = if line.starts_with("POST ") {
                    // A new version of a subject: the same schema keeps its id.
                    let subject = path
                        .strip_prefix("/subjects/")
                        .and_then(|rest| rest.strip_suffix("/versions"))
                        .unwrap_or("")
                        .to_string();
                    let text = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["schema"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    let id = match schemas.iter().find(|(_, s, t)| *s == subject && *t == text) {
                        Some((id, _, _)) => *id,
                        None => {
                            let id = schemas.len() as u32 + 1;
                            schemas.push((id, subject, text));
                            id
                        }
                    };
                    Some(serde_json::json!({ "id": id }))
                } else if let Some(id) = path.strip_prefix("/schemas/ids/") {
                    schemas
                        .iter()
                        .find(|(i, _, _)| i.to_string() == id)
                        .map(|(_, _, text)| serde_json::json!({ "schema": text }))
                } else if let Some(rest) = path.strip_prefix("/subjects/") {
                    let subject = rest.split('/').next().unwrap_or("");
                    let versions: Vec<_> =
                        schemas.iter().filter(|(_, s, _)| s == subject).collect();
                    versions.last().map(|(id, subject, text)| {
                        serde_json::json!({
                            "subject": subject, "id": id, "version": versions.len(), "schema": text
                        })
                    })
                } else {
                    None
                };
                let (status, body) = match found {
                    Some(body) => ("200 OK", body.to_string()),
                    None => ("404 Not Found", r#"{"error_code":40401}"#.to_string()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        url
    }

    /// Registers a new version of `subject`: its id.
    fn register(&self, subject: &str, schema: &str) -> u32 {
        let mut schemas = self.schemas.lock().unwrap();
        let id = schemas.len() as u32 + 1;
        schemas.push((id, subject.to_string(), schema.to_string()));
        id
    }
}

/// Each row of `rows` as a record in the Confluent wire format, written by Arrow's Avro writer
/// with the Avro schema `schema` registered as `id`.
fn avro_records(
    schema: &str,
    id: u32,
    rows: datafusion::arrow::array::RecordBatch,
) -> Vec<Vec<u8>> {
    use arrow_avro::schema::{FingerprintStrategy, SCHEMA_METADATA_KEY};
    use arrow_avro::writer::WriterBuilder;
    use arrow_avro::writer::format::AvroSoeFormat;
    let arrow = rows.schema().as_ref().clone().with_metadata(
        [(SCHEMA_METADATA_KEY.to_string(), schema.to_string())]
            .into_iter()
            .collect(),
    );
    let rows = rows
        .with_schema(std::sync::Arc::new(arrow.clone()))
        .unwrap();
    let mut encoder = WriterBuilder::new(arrow)
        .with_fingerprint_strategy(FingerprintStrategy::Id(id))
        .build_encoder::<AvroSoeFormat>()
        .expect("encoder");
    encoder.encode(&rows).expect("encode");
    encoder.flush().iter().map(|r| r.to_vec()).collect()
}

/// A record's key and value as bytes (`None`: absent).
type RawRecord = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A Debezium event: op, the row before, the row after (id, balance).
type AccountEvent<'a> = (&'a str, Option<(i64, i64)>, Option<(i64, i64)>);

/// Sends each `(key, value)` to `topic`'s partition `partition`.
fn produce_bytes(producer: &BaseProducer, topic: &str, partition: i32, records: &[RawRecord]) {
    for (key, value) in records {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(partition);
        if let Some(key) = key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = value {
            record = record.payload(value.as_slice());
        }
        producer.send(record).expect("send");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

const PAYMENT_V1: &str = r#"{"type":"record","name":"Payment","fields":[
    {"name":"id","type":"long"},{"name":"user_id","type":"long"},
    {"name":"amount","type":"double"}]}"#;
const PAYMENT_V2: &str = r#"{"type":"record","name":"Payment","fields":[
    {"name":"id","type":"long"},{"name":"user_id","type":"int"},
    {"name":"amount","type":"double"},
    {"name":"note","type":["null","string"],"default":null}]}"#;

#[tokio::test]
async fn avro_records_of_two_schema_versions_into_views() {
    use datafusion::arrow::array::{
        Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    };
    use std::sync::Arc;

    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("payments", 2, 1).expect("topic");
    let producer = producer(&cluster);
    let registry = SchemaRegistry::default();
    let url = registry.serve();
    let v1 = registry.register("payments-value", PAYMENT_V1);
    let server = TestServer::start();
    let client = server.connect().await;
    let create = |columns: &str, registry: &str| {
        format!(
            "CREATE SOURCE payments ({columns}) \
             WITH (connector = 'kafka', topic = 'payments', properties.bootstrap.server = '{}') \
             FORMAT PLAIN ENCODE AVRO (schema.registry = '{registry}')",
            cluster.bootstrap_servers()
        )
    };
    let columns = "id BIGINT, user_id BIGINT, amount DOUBLE PRECISION, note TEXT";
    // Mistakes at CREATE: a registry that does not answer, a subject it lacks, a column the
    // schema lacks (note comes with version 2).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    assert_eq!(
        error_code(&client, &create(columns, &nobody)).await,
        "08001"
    );
    assert_eq!(error_code(&client, &create(columns, &url)).await, "42703");
    assert_eq!(
        error_code(
            &client,
            &create(columns, &url).replace("topic = 'payments'", "topic = 'other'")
        )
        .await,
        "42704"
    );
    let v2 = registry.register("payments-value", PAYMENT_V2);
    client
        .batch_execute(&format!(
            "{}; CREATE MATERIALIZED VIEW per_user AS SELECT user_id, count(*) AS n, \
             sum(amount) AS total, count(note) AS notes FROM payments GROUP BY user_id",
            create(columns, &url)
        ))
        .await
        .unwrap();

    // 200 records written with version 1, then 100 with version 2 (user_id now an INT, and a
    // note), and among them three that cannot be read.
    let v1_rows = |range: std::ops::Range<i64>| {
        RecordBatch::try_from_iter(vec![
            (
                "id",
                Arc::new(Int64Array::from_iter_values(range.clone())) as _,
            ),
            (
                "user_id",
                Arc::new(Int64Array::from_iter_values(range.clone().map(|i| i % 7))) as _,
            ),
            (
                "amount",
                Arc::new(Float64Array::from_iter_values(
                    range.map(|i| i as f64 + 0.5),
                )) as _,
            ),
        ])
        .unwrap()
    };
    let v2_rows = |range: std::ops::Range<i64>| {
        RecordBatch::try_from_iter(vec![
            (
                "id",
                Arc::new(Int64Array::from_iter_values(range.clone())) as _,
            ),
            (
                "user_id",
                Arc::new(Int32Array::from_iter_values(
                    range.clone().map(|i| (i % 7) as i32),
                )) as _,
            ),
            (
                "amount",
                Arc::new(Float64Array::from_iter_values(
                    range.clone().map(|i| i as f64 + 0.5),
                )) as _,
            ),
            (
                "note",
                Arc::new(StringArray::from_iter(
                    range.map(|i| (i % 2 == 0).then(|| format!("n{i}"))),
                )) as _,
            ),
        ])
        .unwrap()
    };
    let mut records: Vec<RawRecord> = avro_records(PAYMENT_V1, v1, v1_rows(0..200))
        .into_iter()
        .map(|r| (None, Some(r)))
        .collect();
    let mut cut = records[5].1.clone().unwrap();
    cut.pop();
    records.insert(10, (None, Some(cut)));
    records.insert(50, (None, Some(br#"{"id": 1}"#.to_vec())));
    records.insert(90, (None, Some(vec![0, 0, 0, 0, 99, 2, 4, 6])));
    records.extend(
        avro_records(PAYMENT_V2, v2, v2_rows(200..300))
            .into_iter()
            .map(|r| (None, Some(r))),
    );
    produce_bytes(&producer, "payments", 0, &records[..150]);
    produce_bytes(&producer, "payments", 1, &records[150..]);

    wait_for(&client, "SELECT sum(n)::BIGINT FROM per_user", 300).await;
    let total: f64 = client
        .query_one("SELECT sum(total) FROM per_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, (0..300).map(|i| i as f64 + 0.5).sum::<f64>());
    assert_eq!(
        scalar(&client, "SELECT n FROM per_user WHERE user_id = 3").await,
        (0..300).filter(|i| i % 7 == 3).count() as i64
    );
    assert_eq!(
        scalar(&client, "SELECT sum(notes)::BIGINT FROM per_user").await,
        50
    );
    wait_for(
        &client,
        "SELECT rows_rejected FROM augur_catalog.source_stats WHERE source_name = 'payments'",
        3,
    )
    .await;
    let errors: Vec<String> = client
        .query(
            "SELECT error FROM augur_catalog.rejected_rows WHERE source_name = 'payments' \
             ORDER BY split, \"offset\"",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(errors.len(), 3);
    assert!(errors[2].contains("schema id 99"), "{errors:?}");
    // A binary payload is shown as bytea's hex.
    let payload: String = client
        .query_one(
            "SELECT payload FROM augur_catalog.rejected_rows WHERE error LIKE '%schema id 99%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(payload, "\\x0000000063020406");
}

#[tokio::test]
async fn avro_upsert_and_debezium_changelogs_into_tables() {
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, StructArray};
    use datafusion::arrow::datatypes::{DataType, Field, Fields};
    use std::sync::Arc;

    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("users", 1, 1).expect("topic");
    cluster.create_topic("accounts", 1, 1).expect("topic");
    let producer = producer(&cluster);
    let registry = SchemaRegistry::default();
    let url = registry.serve();
    let user = r#"{"type":"record","name":"User","fields":[
        {"name":"id","type":"long"},{"name":"name","type":"string"}]}"#;
    let key_id = registry.register("users-key", r#""long""#);
    let value_id = registry.register("users-value", user);
    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT) \
             WITH (connector = 'kafka', topic = 'users', properties.bootstrap.server = '{0}') \
             FORMAT UPSERT ENCODE AVRO (schema.registry = '{url}'); \
             CREATE MATERIALIZED VIEW user_count AS SELECT count(*) AS n FROM users;",
            cluster.bootstrap_servers()
        ))
        .await
        .unwrap();
    // A key is a bare Avro long; its framed bytes are zig-zag varints after the header.
    let key = |id: i64| {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&key_id.to_be_bytes());
        let mut z = ((id << 1) ^ (id >> 63)) as u64;
        while z >= 0x80 {
            bytes.push((z as u8) | 0x80);
            z >>= 7;
        }
        bytes.push(z as u8);
        bytes
    };
    let users = |ids: &[i64], name: &str| {
        let rows = RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from(ids.to_vec())) as _),
            (
                "name",
                Arc::new(StringArray::from(vec![name; ids.len()])) as _,
            ),
        ])
        .unwrap();
        avro_records(user, value_id, rows)
    };
    let mut records = Vec::new();
    for (id, value) in (0..20).zip(users(&(0..20).collect::<Vec<_>>(), "a")) {
        records.push((Some(key(id)), Some(value)));
    }
    for (id, value) in [3, 4].into_iter().zip(users(&[3, 4], "b")) {
        records.push((Some(key(id)), Some(value)));
    }
    records.push((Some(key(5)), None));
    records.push((Some(b"not avro".to_vec()), users(&[6], "c").pop()));
    produce_bytes(&producer, "users", 0, &records);
    wait_for(&client, "SELECT n FROM user_count", 19).await;
    let names: Vec<(i64, String)> = client
        .query(
            "SELECT id, name FROM users WHERE id IN (2, 3, 4, 5) ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        names,
        vec![(2, "a".into()), (3, "b".into()), (4, "b".into())]
    );
    wait_for(
        &client,
        "SELECT rows_rejected FROM augur_catalog.source_stats WHERE source_name = 'users'",
        1,
    )
    .await;

    // Debezium's Avro envelope: before and after are the row's record, op says what happened.
    let row = r#"{"type":"record","name":"Value","fields":[
        {"name":"id","type":"long"},{"name":"balance","type":"long"}]}"#;
    let envelope = format!(
        r#"{{"type":"record","name":"Envelope","fields":[
        {{"name":"before","type":["null",{row}],"default":null}},
        {{"name":"after","type":["null","Value"],"default":null}},
        {{"name":"op","type":"string"}},
        {{"name":"ts_ms","type":["null","long"],"default":null}}]}}"#
    );
    let envelope_id = registry.register("accounts-value", &envelope);
    client
        .batch_execute(&format!(
            "CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance BIGINT) \
             WITH (connector = 'kafka', topic = 'accounts', properties.bootstrap.server = '{0}') \
             FORMAT DEBEZIUM ENCODE AVRO (schema.registry = '{url}'); \
             CREATE MATERIALIZED VIEW balances AS \
             SELECT count(*) AS n, sum(balance) AS total FROM accounts;",
            cluster.bootstrap_servers()
        ))
        .await
        .unwrap();
    let fields = Fields::from(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("balance", DataType::Int64, false),
    ]);
    let side = |rows: &[Option<(i64, i64)>]| {
        let ids = Int64Array::from_iter_values(rows.iter().map(|r| r.map_or(0, |r| r.0)));
        let balances = Int64Array::from_iter_values(rows.iter().map(|r| r.map_or(0, |r| r.1)));
        let valid = datafusion::arrow::buffer::NullBuffer::from(
            rows.iter().map(Option::is_some).collect::<Vec<_>>(),
        );
        StructArray::new(
            fields.clone(),
            vec![Arc::new(ids) as _, Arc::new(balances) as _],
            Some(valid),
        )
    };
    // (op, before, after)
    let events: Vec<AccountEvent<'_>> = vec![
        ("r", None, Some((1, 100))),
        ("c", None, Some((2, 200))),
        ("c", None, Some((3, 300))),
        ("u", Some((2, 200)), Some((2, 250))),
        ("d", Some((1, 100)), None),
        ("x", None, Some((9, 900))),
    ];
    let rows = RecordBatch::try_from_iter(vec![
        (
            "before",
            Arc::new(side(&events.iter().map(|e| e.1).collect::<Vec<_>>())) as _,
        ),
        (
            "after",
            Arc::new(side(&events.iter().map(|e| e.2).collect::<Vec<_>>())) as _,
        ),
        (
            "op",
            Arc::new(StringArray::from(
                events.iter().map(|e| e.0).collect::<Vec<_>>(),
            )) as _,
        ),
        (
            "ts_ms",
            Arc::new(Int64Array::from(vec![None; events.len()])) as _,
        ),
    ])
    .unwrap();
    let records: Vec<_> = avro_records(&envelope, envelope_id, rows)
        .into_iter()
        .map(|r| (None, Some(r)))
        .collect();
    produce_bytes(&producer, "accounts", 0, &records);
    wait_for(&client, "SELECT total::BIGINT FROM balances", 550).await;
    assert_eq!(scalar(&client, "SELECT n FROM balances").await, 2);
    wait_for(
        &client,
        "SELECT rows_rejected FROM augur_catalog.source_stats WHERE source_name = 'accounts'",
        1,
    )
    .await;
}

/// A record's key and value as read back.
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Every record of `topic` (all `partitions`, from the beginning to their ends): key and value.
fn read_topic(bootstrap: &str, topic: &str, partitions: i32) -> Vec<KeyValue> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::{Message, Offset, TopicPartitionList};

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut ended = std::collections::BTreeSet::new();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ended.len() < partitions as usize {
        assert!(
            Instant::now() < deadline,
            "reading {topic} did not reach its end"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                records.push((m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec)))
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            _ => {}
        }
    }
    records
}

/// The view's rows as the JSON objects a sink writes, by id.
async fn rows_by_id(
    client: &Client,
    sql: &str,
) -> std::collections::BTreeMap<i64, serde_json::Value> {
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let id: i64 = r.get(0);
            let name: Option<String> = r.get(1);
            let score: Option<i64> = r.get(2);
            (
                id,
                serde_json::json!({"id": id, "name": name, "score": score}),
            )
        })
        .collect()
}

/// What a consumer of an UPSERT topic holds after reading it: the last value of each key.
fn upserted(records: &[KeyValue]) -> std::collections::BTreeMap<i64, serde_json::Value> {
    let mut state = std::collections::BTreeMap::new();
    for (key, value) in records {
        let key: serde_json::Value = serde_json::from_slice(key.as_ref().unwrap()).unwrap();
        let id = key["id"].as_i64().unwrap();
        match value {
            Some(v) => {
                state.insert(id, serde_json::from_slice(v).unwrap());
            }
            None => {
                state.remove(&id);
            }
        }
    }
    state
}

/// What a consumer of a Debezium topic holds after applying its events.
fn applied(records: &[KeyValue]) -> std::collections::BTreeMap<i64, serde_json::Value> {
    let mut state = std::collections::BTreeMap::new();
    for (_, value) in records {
        let event: serde_json::Value = serde_json::from_slice(value.as_ref().unwrap()).unwrap();
        match event["op"].as_str().unwrap() {
            "c" | "u" => {
                let after = event["after"].clone();
                state.insert(after["id"].as_i64().unwrap(), after);
            }
            "d" => {
                state.remove(&event["before"]["id"].as_i64().unwrap());
            }
            other => panic!("unknown op {other}"),
        }
    }
    state
}

#[tokio::test]
async fn kafka_sinks_read_back_as_the_views_rows() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for (topic, partitions) in [("upserts", 3), ("changes", 3), ("clicks_out", 2)] {
        cluster.create_topic(topic, partitions, 1).expect("topic");
    }
    let bootstrap = cluster.bootstrap_servers();
    let mut server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT, score BIGINT); \
             INSERT INTO users SELECT i, 'user ' || i, i * 10 FROM generate_series(0, 49) AS s(i); \
             CREATE MATERIALIZED VIEW good AS SELECT id, name, score FROM users WHERE score >= 0; \
             CREATE TABLE clicks (id BIGINT, user_id BIGINT) APPEND ONLY; \
             CREATE MATERIALIZED VIEW c AS SELECT id, user_id FROM clicks; \
             CREATE SINK up FROM good WITH (connector = 'kafka', topic = 'upserts', \
             properties.bootstrap.server = '{bootstrap}', sink.exactly_once = 'true') \
             FORMAT UPSERT ENCODE JSON; \
             CREATE SINK dbz FROM good WITH (connector = 'kafka', topic = 'changes', \
             properties.bootstrap.server = '{bootstrap}') FORMAT DEBEZIUM ENCODE JSON; \
             CREATE SINK pl FROM c WITH (connector = 'kafka', topic = 'clicks_out', \
             properties.bootstrap.server = '{bootstrap}', primary_key = 'user_id') \
             FORMAT PLAIN ENCODE JSON;"
        ))
        .await
        .unwrap();
    let changes = [
        "UPDATE users SET score = score + 1000 WHERE id % 3 = 0",
        "DELETE FROM users WHERE id % 5 = 0",
        "INSERT INTO users SELECT i, 'user ' || i, i FROM generate_series(50, 59) AS s(i)",
        // Leaves the view: a delete for its sinks.
        "UPDATE users SET score = -1 WHERE id = 1",
        "UPDATE users SET name = NULL WHERE id = 2",
        "INSERT INTO clicks SELECT i, i % 10 FROM generate_series(0, 499) AS s(i)",
    ];
    for sql in changes {
        client.batch_execute(sql).await.unwrap();
    }
    client.batch_execute("FLUSH").await.unwrap();
    let delivered = "SELECT count(*) FROM augur_catalog.sinks WHERE backlog = 0 \
                     AND last_error IS NULL";
    wait_for(&client, delivered, 3).await;
    let want = rows_by_id(&client, "SELECT id, name, score FROM good").await;
    assert_eq!(want.len(), 50 - 10 - 1 + 10);
    assert_eq!(upserted(&read_topic(&bootstrap, "upserts", 3)), want);
    assert_eq!(applied(&read_topic(&bootstrap, "changes", 3)), want);
    let clicks = read_topic(&bootstrap, "clicks_out", 2);
    assert_eq!(clicks.len(), 500);
    let first: serde_json::Value = serde_json::from_slice(clicks[0].1.as_ref().unwrap()).unwrap();
    let key: serde_json::Value = serde_json::from_slice(clicks[0].0.as_ref().unwrap()).unwrap();
    assert_eq!(key["user_id"], first["user_id"]);

    // Killed with changes in flight: nothing lost (a record may come twice; applying it twice
    // leaves the same rows).
    client
        .batch_execute("UPDATE users SET score = score + 1 WHERE id < 30")
        .await
        .unwrap();
    drop(client);
    server.restart();
    let client = server.connect().await;
    client
        .batch_execute("DELETE FROM users WHERE id > 55; FLUSH")
        .await
        .unwrap();
    wait_for(&client, delivered, 3).await;
    let want = rows_by_id(&client, "SELECT id, name, score FROM good").await;
    assert_eq!(upserted(&read_topic(&bootstrap, "upserts", 3)), want);
    assert_eq!(applied(&read_topic(&bootstrap, "changes", 3)), want);
    let rows = client
        .query("SELECT rows_written > 0, last_epoch > 0 FROM augur_catalog.sinks WHERE sink_name = 'up'", &[])
        .await
        .unwrap();
    assert!(rows[0].get::<_, bool>(0) && rows[0].get::<_, bool>(1));

    // Refusals: no key for UPSERT, a missing topic, brokers nobody runs.
    let port = common::free_port();
    for (sql, code) in [
        (
            format!(
                "CREATE SINK x FROM c WITH (connector = 'kafka', topic = 'upserts', \
                 properties.bootstrap.server = '{bootstrap}') FORMAT UPSERT ENCODE JSON"
            ),
            "22023",
        ),
        (
            format!(
                "CREATE SINK x FROM good WITH (connector = 'kafka', topic = 'nowhere', \
                 properties.bootstrap.server = '{bootstrap}') FORMAT UPSERT ENCODE JSON"
            ),
            "42704",
        ),
        (
            format!(
                "CREATE SINK x FROM good WITH (connector = 'kafka', topic = 'upserts', \
                 properties.bootstrap.server = '127.0.0.1:{port}') FORMAT UPSERT ENCODE JSON"
            ),
            "08001",
        ),
    ] {
        assert_eq!(error_code(&client, &sql).await, code, "{sql}");
    }
}

#[tokio::test]
async fn sinks_with_their_own_query_write_the_querys_changes() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for topic in ["q_upserts", "q_changes", "q_later"] {
        cluster.create_topic(topic, 2, 1).expect("topic");
    }
    let bootstrap = cluster.bootstrap_servers();
    let mut server = TestServer::start();
    let client = server.connect().await;
    // What each sink's query gives, run as a batch query: the oracle.
    let per_row = "SELECT id, upper(name) AS name, score * 2 AS score FROM users \
                   WHERE score < 400";
    let per_group = "SELECT score % 7 AS id, max(name) AS name, count(*) AS score FROM users \
                     GROUP BY score % 7";
    client
        .batch_execute(&format!(
            "CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT, score BIGINT); \
             INSERT INTO users SELECT i, 'user ' || i, i * 10 FROM generate_series(0, 49) AS s(i); \
             CREATE SINK q_up AS {per_row} WITH (connector = 'kafka', topic = 'q_upserts', \
             properties.bootstrap.server = '{bootstrap}') FORMAT UPSERT ENCODE JSON; \
             CREATE SINK q_dbz AS {per_group} WITH (connector = 'kafka', topic = 'q_changes', \
             properties.bootstrap.server = '{bootstrap}') FORMAT DEBEZIUM ENCODE JSON; \
             CREATE SINK q_later AS SELECT id, name, score FROM users WITH (connector = 'kafka', \
             topic = 'q_later', properties.bootstrap.server = '{bootstrap}', \
             snapshot = 'false') FORMAT UPSERT ENCODE JSON;"
        ))
        .await
        .unwrap();
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'q\\_%'"
        )
        .await,
        0,
        "no view is made for a sink's query"
    );
    async fn check(client: &Client, bootstrap: &str, per_row: &str, per_group: &str) {
        let delivered = "SELECT count(*) FROM augur_catalog.sinks WHERE backlog = 0 \
                         AND last_error IS NULL";
        client.batch_execute("FLUSH").await.unwrap();
        wait_for(client, delivered, 3).await;
        assert_eq!(
            upserted(&read_topic(bootstrap, "q_upserts", 2)),
            rows_by_id(client, per_row).await
        );
        assert_eq!(
            applied(&read_topic(bootstrap, "q_changes", 2)),
            rows_by_id(client, per_group).await
        );
    }
    check(&client, &bootstrap, per_row, per_group).await;
    // Without the snapshot, the rows as they stood at CREATE are not written.
    assert!(read_topic(&bootstrap, "q_later", 2).is_empty());
    for sql in [
        "UPDATE users SET score = score + 3 WHERE id % 3 = 0",
        "DELETE FROM users WHERE id % 5 = 0",
        "INSERT INTO users SELECT i, 'user ' || i, i FROM generate_series(50, 59) AS s(i)",
        "UPDATE users SET name = NULL WHERE id = 2",
    ] {
        client.batch_execute(sql).await.unwrap();
    }
    check(&client, &bootstrap, per_row, per_group).await;
    let later = upserted(&read_topic(&bootstrap, "q_later", 2));
    // Only the rows changed after CREATE: 17 updated of which 4 deleted, 10 inserted, 1
    // renamed.
    assert_eq!(later.len(), 17 - 4 + 10 + 1);

    // Killed with changes in flight: the queries are planned again and go on where they were.
    client
        .batch_execute("UPDATE users SET score = score + 1 WHERE id < 30")
        .await
        .unwrap();
    drop(client);
    server.restart();
    let client = server.connect().await;
    client
        .batch_execute("DELETE FROM users WHERE id > 55")
        .await
        .unwrap();
    check(&client, &bootstrap, per_row, per_group).await;

    // SHOW CREATE SINK gives a statement that makes the same sink again.
    let shown = client
        .query_one("SHOW CREATE SINK q_later", &[])
        .await
        .unwrap();
    let sql: String = shown.get(1);
    assert!(
        sql.starts_with("CREATE SINK q_later AS SELECT id, name, score FROM users WITH ("),
        "{sql}"
    );
    client.batch_execute("DROP SINK q_later").await.unwrap();
    client.batch_execute(&sql).await.unwrap();
    assert_eq!(
        error_code(&client, "SHOW CREATE SINK nothing").await,
        "42704"
    );
    // A plain view a sink's query reads keeps its definition.
    client
        .batch_execute(&format!(
            "CREATE VIEW pv AS SELECT id, name FROM users; \
             CREATE SINK q_pv AS SELECT id, name FROM pv WITH (connector = 'kafka', \
             topic = 'q_later', properties.bootstrap.server = '{bootstrap}') \
             FORMAT UPSERT ENCODE JSON"
        ))
        .await
        .unwrap();
    assert_eq!(
        error_code(
            &client,
            "CREATE OR REPLACE VIEW pv AS SELECT id, name, score FROM users"
        )
        .await,
        "0A000"
    );

    // The table is what the sinks' queries read: it is not dropped from under them.
    let err = client.batch_execute("DROP TABLE users").await.unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "2BP01");
    assert!(
        db.detail()
            .unwrap_or_default()
            .contains("sink q_up depends on table users"),
        "{:?}",
        db.detail()
    );
    assert_eq!(
        error_code(&client, "ALTER TABLE users ADD COLUMN x INT").await,
        "2BP01"
    );
    client.batch_execute("DROP SINK q_later").await.unwrap();
    client
        .batch_execute("DROP TABLE users CASCADE")
        .await
        .unwrap();
    assert_eq!(
        scalar(&client, "SELECT count(*) FROM augur_catalog.sinks").await,
        0
    );
    // Refusals: PLAIN over a query whose rows change, and a query that does not plan.
    client
        .batch_execute("CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT)")
        .await
        .unwrap();
    for (sql, code) in [
        (
            format!(
                "CREATE SINK x AS SELECT v, count(*) FROM t GROUP BY v WITH (connector = 'kafka', \
                 topic = 'q_later', properties.bootstrap.server = '{bootstrap}') \
                 FORMAT PLAIN ENCODE JSON"
            ),
            "22023",
        ),
        (
            format!(
                "CREATE SINK x AS SELECT * FROM nowhere WITH (connector = 'kafka', \
                 topic = 'q_later', properties.bootstrap.server = '{bootstrap}') \
                 FORMAT UPSERT ENCODE JSON"
            ),
            "42P01",
        ),
        (
            format!(
                "CREATE SINK x AS WITH (connector = 'kafka', topic = 'q_later', \
                 properties.bootstrap.server = '{bootstrap}') FORMAT UPSERT ENCODE JSON"
            ),
            "42601",
        ),
    ] {
        assert_eq!(error_code(&client, &sql).await, code, "{sql}");
    }
}

#[tokio::test]
async fn avro_sinks_read_back_through_avro_sources() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for topic in ["avro_upserts", "avro_clicks", "avro_changes"] {
        cluster.create_topic(topic, 2, 1).expect("topic");
    }
    let bootstrap = cluster.bootstrap_servers();
    let registry = SchemaRegistry::default();
    let url = registry.serve();
    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT, score BIGINT); \
             INSERT INTO users SELECT i, 'user ' || i, i * 10 FROM generate_series(0, 49) AS s(i); \
             CREATE MATERIALIZED VIEW good AS SELECT id, name, score FROM users WHERE score >= 0; \
             CREATE TABLE clicks (id BIGINT, user_id BIGINT) APPEND ONLY; \
             CREATE MATERIALIZED VIEW c AS SELECT id, user_id FROM clicks; \
             CREATE SINK up FROM good WITH (connector = 'kafka', topic = 'avro_upserts', \
             properties.bootstrap.server = '{bootstrap}') \
             FORMAT UPSERT ENCODE AVRO (schema.registry = '{url}'); \
             CREATE SINK pl FROM c WITH (connector = 'kafka', topic = 'avro_clicks', \
             properties.bootstrap.server = '{bootstrap}') \
             FORMAT PLAIN ENCODE AVRO (schema.registry = '{url}'); \
             CREATE SINK dbz FROM good WITH (connector = 'kafka', topic = 'avro_changes', \
             properties.bootstrap.server = '{bootstrap}') \
             FORMAT DEBEZIUM ENCODE AVRO (schema.registry = '{url}');"
        ))
        .await
        .unwrap();
    for sql in [
        "UPDATE users SET score = score + 1000 WHERE id % 3 = 0",
        "DELETE FROM users WHERE id % 5 = 0",
        "UPDATE users SET name = NULL WHERE id = 2",
        "INSERT INTO clicks SELECT i, i % 10 FROM generate_series(0, 299) AS s(i)",
        "FLUSH",
    ] {
        client.batch_execute(sql).await.unwrap();
    }
    wait_for(
        &client,
        "SELECT count(*) FROM augur_catalog.sinks WHERE backlog = 0 AND last_error IS NULL",
        3,
    )
    .await;
    // Read back by Augur's own Avro readers, through the schemas the sinks registered.
    client
        .batch_execute(&format!(
            "CREATE TABLE back (id BIGINT PRIMARY KEY, name TEXT, score BIGINT) \
             WITH (connector = 'kafka', topic = 'avro_upserts', \
             properties.bootstrap.server = '{bootstrap}') \
             FORMAT UPSERT ENCODE AVRO (schema.registry = '{url}'); \
             CREATE SOURCE clicks_back (id BIGINT, user_id BIGINT) \
             WITH (connector = 'kafka', topic = 'avro_clicks', \
             properties.bootstrap.server = '{bootstrap}') \
             FORMAT PLAIN ENCODE AVRO (schema.registry = '{url}'); \
             CREATE MATERIALIZED VIEW clicks_n AS SELECT count(*) AS n, sum(id) AS s \
             FROM clicks_back; \
             CREATE TABLE changes_back (id BIGINT PRIMARY KEY, name TEXT, score BIGINT) \
             WITH (connector = 'kafka', topic = 'avro_changes', \
             properties.bootstrap.server = '{bootstrap}') \
             FORMAT DEBEZIUM ENCODE AVRO (schema.registry = '{url}');"
        ))
        .await
        .unwrap();
    let want = rows_by_id(&client, "SELECT id, name, score FROM good").await;
    for table in ["back", "changes_back"] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = rows_by_id(&client, &format!("SELECT id, name, score FROM {table}")).await;
            if got == want {
                break;
            }
            assert!(Instant::now() < deadline, "{table}: {got:?}\n!=\n{want:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM augur_catalog.source_stats WHERE rows_rejected > 0"
        )
        .await,
        0
    );
    wait_for(&client, "SELECT n FROM clicks_n", 300).await;
    assert_eq!(
        scalar(&client, "SELECT s FROM clicks_n").await,
        (0..300).sum::<i64>()
    );
    // A registry nobody runs is refused at CREATE.
    let port = common::free_port();
    for (sql, code) in [(
        format!(
            "CREATE SINK x FROM good WITH (connector = 'kafka', topic = 'avro_upserts', \
                 properties.bootstrap.server = '{bootstrap}') \
                 FORMAT UPSERT ENCODE AVRO (schema.registry = 'http://127.0.0.1:{port}')"
        ),
        "08001",
    )] {
        assert_eq!(error_code(&client, &sql).await, code, "{sql}");
    }
}
