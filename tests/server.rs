//! End-to-end tests against the built `augur` binary: the extended protocol, durability across
//! restarts and `kill -9`, hostile bytes on the socket, and authentication.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::TestServer;

#[tokio::test]
async fn prepared_statements_run_many_times_with_parameters() {
    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE features (user_id BIGINT PRIMARY KEY, name TEXT, score DOUBLE PRECISION, \
             active BOOLEAN, seen TIMESTAMP)",
        )
        .await
        .unwrap();

    let insert = client
        .prepare("INSERT INTO features VALUES ($1, $2, $3, $4, '2026-01-01 00:00:00')")
        .await
        .unwrap();
    for i in 0..50i64 {
        let n = client
            .execute(
                &insert,
                &[&i, &format!("user{i}"), &(i as f64 / 2.0), &(i % 2 == 0)],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
    }

    // one plan, many executions, binary results
    let lookup = client
        .prepare("SELECT name, score, active FROM features WHERE user_id = $1")
        .await
        .unwrap();
    assert_eq!(lookup.params(), &[tokio_postgres::types::Type::INT8]);
    for i in [0i64, 7, 49] {
        let row = client.query_one(&lookup, &[&i]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), format!("user{i}"));
        assert_eq!(row.get::<_, f64>(1), i as f64 / 2.0);
        assert_eq!(row.get::<_, bool>(2), i % 2 == 0);
    }
    assert!(
        client
            .query_opt(&lookup, &[&1000i64])
            .await
            .unwrap()
            .is_none()
    );

    let seen: chrono::NaiveDateTime = client
        .query_one("SELECT seen FROM features WHERE user_id = $1", &[&3i64])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen.to_string(), "2026-01-01 00:00:00");

    let updated = client
        .execute(
            "UPDATE features SET score = score + $1 WHERE user_id < $2",
            &[&100.0f64, &10i64],
        )
        .await
        .unwrap();
    assert_eq!(updated, 10);
    let total: f64 = client
        .query_one("SELECT sum(score) FROM features WHERE user_id < 10", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 1000.0 + (0..10).map(|i| i as f64 / 2.0).sum::<f64>());

    // a parameter assigned to a column takes the column's type, as in PostgreSQL
    let set = client
        .prepare(
            "UPDATE features SET name = $1, score = $2, active = $3, seen = $4 WHERE user_id = $5",
        )
        .await
        .unwrap();
    {
        use tokio_postgres::types::Type;
        assert_eq!(
            set.params(),
            &[
                Type::TEXT,
                Type::FLOAT8,
                Type::BOOL,
                Type::TIMESTAMP,
                Type::INT8
            ]
        );
    }
    let noon = chrono::NaiveDate::from_ymd_opt(2026, 3, 1)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap();
    let n = client
        .execute(&set, &[&"renamed", &-1.25f64, &false, &noon, &20i64])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let row = client
        .query_one(
            "SELECT name, score, active, seen FROM features WHERE user_id = 20",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "renamed");
    assert_eq!(row.get::<_, f64>(1), -1.25);
    assert!(!row.get::<_, bool>(2));
    assert_eq!(row.get::<_, chrono::NaiveDateTime>(3), noon);

    let deleted = client
        .execute("DELETE FROM features WHERE user_id >= $1", &[&40i64])
        .await
        .unwrap();
    assert_eq!(deleted, 10);

    // errors keep their SQLSTATE through the extended protocol
    let err = client.prepare("SELECT * FROM nowhere").await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42P01");
    let err = client
        .execute(&insert, &[&1i64, &"dup", &1.0f64, &true])
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "23505");
    // and the connection is still usable
    let n: i64 = client
        .query_one("SELECT count(*) FROM features", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 40);
}

#[tokio::test]
async fn acknowledged_writes_survive_restart_and_kill_9() {
    let mut server = TestServer::start();
    {
        let client = server.connect().await;
        client
            .batch_execute(
                "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT); CREATE TABLE log (line TEXT); \
                 INSERT INTO t VALUES (1, 'one'), (2, 'two'); INSERT INTO log VALUES ('a'), ('b'); \
                 CREATE TABLE serials (id BIGSERIAL PRIMARY KEY, v TEXT); \
                 INSERT INTO serials (v) VALUES ('a'), ('b');",
            )
            .await
            .unwrap();
    }
    assert!(server.terminate(), "SIGTERM must exit cleanly");
    server.start_again();
    {
        let client = server.connect().await;
        let rows = client
            .query("SELECT id, v FROM t ORDER BY id", &[])
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].get::<_, String>(1), "two");
        client
            .batch_execute(
                "INSERT INTO t VALUES (3, 'three'); UPDATE t SET v = 'uno' WHERE id = 1; \
                              INSERT INTO log VALUES ('c'); INSERT INTO serials (v) VALUES ('c')",
            )
            .await
            .unwrap();
    }
    server.kill();
    server.start_again();
    let client = server.connect().await;
    let rows = client
        .query("SELECT id, v FROM t ORDER BY id", &[])
        .await
        .unwrap();
    let got: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![(1, "uno".into()), (2, "two".into()), (3, "three".into())]
    );
    // hidden row ids continue after a restart: no row is overwritten
    client
        .batch_execute("INSERT INTO log VALUES ('d')")
        .await
        .unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);
    // a sequence continues after a restart and a kill: no value is handed out twice
    let ids: Vec<i64> = client
        .query("INSERT INTO serials (v) VALUES ('d') RETURNING id; ", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![4]);
}

#[tokio::test]
async fn garbage_on_the_socket_does_not_hurt_other_clients() {
    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE ok (a INT)")
        .await
        .unwrap();

    let payloads: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0xff; 64],
        vec![0, 0, 0, 8, 0xde, 0xad, 0xbe, 0xef],
        // a startup message claiming an enormous length
        vec![0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0],
        // a valid startup, then a query message with a bogus length
        {
            let mut v = startup_message();
            v.extend_from_slice(&[b'Q', 0x7f, 0xff, 0xff, 0xff, b'x']);
            v
        },
        {
            let mut v = startup_message();
            v.extend_from_slice(&[b'Z', 0, 0, 0, 4]);
            v.extend_from_slice(&[b'P', 0, 0, 0, 3]);
            v
        },
    ];
    for payload in payloads {
        let mut socket = TcpStream::connect(server.addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = socket.write_all(&payload);
        let mut buf = [0u8; 4096];
        // an error message or a close; either way the read returns
        let _ = socket.read(&mut buf);
    }
    client
        .batch_execute("INSERT INTO ok VALUES (1)")
        .await
        .unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM ok", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

fn startup_message() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196608u32.to_be_bytes());
    for s in ["user", "augur", "database", "augur"] {
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    msg
}

#[tokio::test]
async fn huge_statements_and_wrong_parameter_counts_get_errors() {
    let server = TestServer::start();
    let client = server.connect().await;
    let huge = format!("SELECT '{}'", "x".repeat(17 * 1024 * 1024));
    let err = client.simple_query(&huge).await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "54000");

    let stmt = client.prepare("SELECT $1::BIGINT + 1").await.unwrap();
    assert_eq!(stmt.params().len(), 1);
    let err = client.query(&stmt, &[]).await.unwrap_err();
    assert!(
        err.to_string().contains("parameters") || err.code().is_some(),
        "{err}"
    );
    let v: i64 = client.query_one(&stmt, &[&41i64]).await.unwrap().get(0);
    assert_eq!(v, 42);
}

#[tokio::test]
async fn a_password_turns_on_scram() {
    let server = TestServer::start_with(&["--password", "s3cret"]);
    let base = format!(
        "host={} port={} user=alice dbname=augur",
        server.addr.ip(),
        server.addr.port()
    );

    let err = tokio_postgres::connect(&format!("{base} password=wrong"), tokio_postgres::NoTls)
        .await
        .err()
        .expect("a wrong password must be refused");
    assert_eq!(err.code().map(|c| c.code()), Some("28P01"), "{err}");

    assert!(
        tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .is_err(),
        "a connection without a password must be refused"
    );

    let (client, conn) =
        tokio_postgres::connect(&format!("{base} password=s3cret"), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    let one: i64 = client
        .query_one("SELECT 1::BIGINT", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn copy_from_stdin_and_to_stdout() {
    use futures::{SinkExt, StreamExt};

    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE c (id BIGINT PRIMARY KEY, name TEXT, score DOUBLE PRECISION DEFAULT 0.5)",
        )
        .await
        .unwrap();

    // text format, a column list, DEFAULT for the missing column, data split across messages
    let sink = client
        .copy_in("COPY c (id, name) FROM STDIN")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"1\tone\n2\t\\N\n3\ttab\\there"))
        .await
        .unwrap();
    sink.send(bytes::Bytes::from_static(b"\n")).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 3);

    // CSV with a header and quoted fields
    let sink = client
        .copy_in("COPY c FROM STDIN WITH (FORMAT csv, HEADER true)")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(
        b"id,name,score\n4,\"a, b\",1.5\n5,\"\",\n",
    ))
    .await
    .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);

    let rows = client
        .query("SELECT id, name, score FROM c ORDER BY id", &[])
        .await
        .unwrap();
    let got: Vec<(i64, Option<String>, Option<f64>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, Some("one".into()), Some(0.5)),
            (2, None, Some(0.5)),
            (3, Some("tab\there".into()), Some(0.5)),
            (4, Some("a, b".into()), Some(1.5)),
            (5, Some("".into()), None),
        ]
    );

    // a bad row fails the whole COPY with the type error; nothing is written
    let sink = client
        .copy_in("COPY c (id, name) FROM STDIN")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"6\tok\nseven\tbad\n"))
        .await
        .unwrap();
    let err = sink.finish().await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "22P02", "{err}");
    let n: i64 = client
        .query_one("SELECT count(*) FROM c", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 5);

    // duplicate keys fail the COPY
    let sink = client.copy_in("COPY c (id) FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"1\n")).await.unwrap();
    let err = sink.finish().await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "23505", "{err}");

    let out = client
        .copy_out("COPY (SELECT id, name FROM c WHERE id <= 3 ORDER BY id) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = out.map(|c| c.unwrap()).collect().await;
    let text: String = chunks
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    assert_eq!(text, "1\tone\n2\t\\N\n3\ttab\\there\n");

    let out = client
        .copy_out("COPY c (id, name) TO STDOUT WITH (FORMAT csv, HEADER)")
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = out.map(|c| c.unwrap()).collect().await;
    let text: String = chunks
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "id,name");
    assert_eq!(lines.len(), 6, "{text}");
    assert!(text.contains("4,\"a, b\""), "{text}");
}

#[tokio::test]
async fn a_cancel_request_stops_a_running_query() {
    let server = TestServer::start();
    let client = server.connect().await;
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let started = std::time::Instant::now();
    let err = client
        .simple_query(
            "SELECT count(*) FROM generate_series(1, 100000000000) AS t(x) WHERE x % 7 = 3",
        )
        .await
        .expect_err("the query must be cancelled");
    canceller.await.unwrap().unwrap();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // the connection goes on
    let one: i64 = client
        .query_one("SELECT 1::BIGINT", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn row_descriptions_and_binary_values_for_every_type() {
    use tokio_postgres::types::Type;

    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE all_types (id INT PRIMARY KEY, b BOOLEAN, i2 SMALLINT, i4 INTEGER, \
             i8 BIGINT, f4 REAL, f8 DOUBLE PRECISION, n NUMERIC(10, 2), t TEXT, by BYTEA, d DATE, \
             tm TIME, ts TIMESTAMP, tz TIMESTAMPTZ, iv INTERVAL, arr BIGINT[]); \
             INSERT INTO all_types VALUES (1, true, 2, 4, 8, 1.5, 2.25, 12345.67, 'text', \
             '\\x0102ff', '2026-11-21', '13:45:01.5', '2026-11-21 13:45:01', \
             '2026-11-21 13:45:01+00', INTERVAL '1 day 2 hours', ARRAY[1, 2, 3])",
        )
        .await
        .unwrap();
    let stmt = client
        .prepare("SELECT b, i2, i4, i8, f4, f8, n, t, by, d, tm, ts, tz, iv, arr FROM all_types WHERE id = $1")
        .await
        .unwrap();
    let types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(
        types,
        vec![
            Type::BOOL,
            Type::INT2,
            Type::INT4,
            Type::INT8,
            Type::FLOAT4,
            Type::FLOAT8,
            Type::NUMERIC,
            Type::TEXT,
            Type::BYTEA,
            Type::DATE,
            Type::TIME,
            Type::TIMESTAMP,
            Type::TIMESTAMPTZ,
            Type::INTERVAL,
            Type::INT8_ARRAY,
        ]
    );
    let row = client.query_one(&stmt, &[&1i32]).await.unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, i16>(1), 2);
    assert_eq!(row.get::<_, i32>(2), 4);
    assert_eq!(row.get::<_, i64>(3), 8);
    assert_eq!(row.get::<_, f32>(4), 1.5);
    assert_eq!(row.get::<_, f64>(5), 2.25);
    assert_eq!(row.get::<_, String>(7), "text");
    assert_eq!(row.get::<_, Vec<u8>>(8), vec![1u8, 2, 255]);
    assert_eq!(row.get::<_, chrono::NaiveDate>(9).to_string(), "2026-11-21");
    assert_eq!(
        row.get::<_, chrono::NaiveTime>(10).to_string(),
        "13:45:01.500"
    );
    assert_eq!(
        row.get::<_, chrono::NaiveDateTime>(11).to_string(),
        "2026-11-21 13:45:01"
    );
    assert_eq!(
        row.get::<_, chrono::DateTime<chrono::Utc>>(12).to_rfc3339(),
        "2026-11-21T13:45:01+00:00"
    );
    assert_eq!(row.get::<_, Vec<i64>>(14), vec![1, 2, 3]);
}

#[tokio::test]
async fn kill_9_during_inserts_loses_no_acknowledged_row() {
    use std::sync::{Arc, Mutex};

    let mut server = TestServer::start();
    server
        .connect()
        .await
        .batch_execute("CREATE TABLE acked (id BIGINT PRIMARY KEY, payload TEXT)")
        .await
        .unwrap();
    let acknowledged = Arc::new(Mutex::new(Vec::<i64>::new()));
    let mut next_id = 0i64;
    for round in 0..3u64 {
        let client = server.connect().await;
        let acked = acknowledged.clone();
        let first = next_id;
        let writer = tokio::spawn(async move {
            let insert = client
                .prepare("INSERT INTO acked VALUES ($1, $2)")
                .await
                .unwrap();
            for id in first.. {
                // an error means the server is gone: stop
                if client
                    .execute(&insert, &[&id, &format!("row {id}")])
                    .await
                    .is_err()
                {
                    break;
                }
                acked.lock().unwrap().push(id);
            }
        });
        tokio::time::sleep(Duration::from_millis(150 + 100 * round)).await;
        server.kill();
        let _ = writer.await;
        server.start_again();
        let client = server.connect().await;
        let ids: Vec<i64> = client
            .query("SELECT id FROM acked ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let acked = acknowledged.lock().unwrap().clone();
        assert!(!acked.is_empty(), "round {round}: nothing was inserted");
        for id in &acked {
            assert!(
                ids.binary_search(id).is_ok(),
                "round {round}: acknowledged row {id} is lost"
            );
        }
        next_id = ids.last().map_or(0, |last| last + 1);
    }
}

#[tokio::test]
async fn indexes_serve_prepared_lookups_and_survive_restarts() {
    let mut server = TestServer::start();
    {
        let client = server.connect().await;
        client
            .batch_execute(
                "CREATE TABLE txns (id BIGINT PRIMARY KEY, card BIGINT, amount DOUBLE PRECISION); \
                 INSERT INTO txns SELECT x, x % 50, x * 1.5 FROM generate_series(1, 1000) AS g(x); \
                 CREATE INDEX txns_card ON txns (card); \
                 CREATE MATERIALIZED VIEW per_card AS SELECT card, count(*) AS n FROM txns GROUP BY card; \
                 FLUSH; CREATE INDEX per_card_n ON per_card (n);",
            )
            .await
            .unwrap();
        let plan: Vec<String> = client
            .query("EXPLAIN SELECT id FROM txns WHERE card = 7", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(1))
            .collect();
        assert!(
            plan[1].contains("IndexScan: txns_card on txns (card = 7)"),
            "{plan:?}"
        );
        // the prepared lookup path: one plan, executed by the index for every card
        let by_card = client
            .prepare("SELECT id, amount FROM txns WHERE card = $1")
            .await
            .unwrap();
        for card in [0i64, 7, 49, 50] {
            let mut ids: Vec<i64> = client
                .query(&by_card, &[&card])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            ids.sort_unstable();
            let expected: Vec<i64> = (1..=1000).filter(|x| x % 50 == card).collect();
            assert_eq!(ids, expected, "card {card}");
        }
        client
            .batch_execute("UPDATE txns SET card = 99 WHERE id = 7; DROP INDEX txns_card")
            .await
            .unwrap();
        // planned with the index, run after it is gone: still every row
        let rows = client.query(&by_card, &[&7i64]).await.unwrap();
        assert_eq!(rows.len(), 19);
        client
            .batch_execute("CREATE INDEX txns_card ON txns (card)")
            .await
            .unwrap();
    }
    server.kill();
    server.start_again();
    let client = server.connect().await;
    client
        .batch_execute("INSERT INTO txns VALUES (2000, 99, 1.0)")
        .await
        .unwrap();
    let ids: Vec<i64> = client
        .query("SELECT id FROM txns WHERE card = 99 ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![7, 2000]);
    // the view's index was built before the kill and is maintained after the restart
    client.batch_execute("FLUSH").await.unwrap();
    let by_count = client
        .prepare("SELECT card FROM per_card WHERE n = $1 ORDER BY card")
        .await
        .unwrap();
    let cards: Vec<i64> = client
        .query(&by_count, &[&19i64])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(cards, vec![7]);
    let cards: Vec<i64> = client
        .query(&by_count, &[&2i64])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(cards, vec![99]);
    let plan: Vec<String> = client
        .query("EXPLAIN SELECT id FROM txns WHERE card = 99", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(1))
        .collect();
    assert!(plan[1].contains("IndexScan: txns_card"), "{plan:?}");
}

/// A temporary table belongs to its session: it goes when the connection closes, and when the
/// server starts again after a kill -9 that left it behind. A table created later under the same
/// name is not the one dropped.
#[tokio::test]
async fn temporary_tables_go_with_their_session() {
    let mut server = TestServer::start();
    let count_named =
        |name: &'static str| format!("SELECT count(*) FROM pg_class WHERE relname = '{name}'");
    {
        let client = server.connect().await;
        client
            .batch_execute(
                "CREATE TEMP TABLE scratch (id SERIAL, v TEXT); INSERT INTO scratch (v) VALUES ('a'); \
                 CREATE VIEW scratch_view AS SELECT v FROM scratch; \
                 CREATE TEMP VIEW scratch_free AS SELECT 1 AS one",
            )
            .await
            .unwrap();
        let rows = client
            .query("SELECT v FROM scratch_view", &[])
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
    }
    let client = server.connect().await;
    let mut gone = false;
    for _ in 0..50 {
        let n: i64 = client
            .query_one(&count_named("scratch"), &[])
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the temporary table outlived its connection");
    for view in ["scratch_view", "scratch_free"] {
        let n: i64 = client
            .query_one(&count_named(view), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "the temporary view {view} outlived its connection");
    }
    // Its name is free again, for a permanent table the next session keeps.
    client
        .batch_execute("CREATE TABLE scratch (x INT); INSERT INTO scratch VALUES (1)")
        .await
        .unwrap();
    client
        .batch_execute(
            "CREATE TEMP TABLE leftover (x INT); INSERT INTO leftover VALUES (1); \
             CREATE TEMP VIEW leftover_view AS SELECT x FROM scratch",
        )
        .await
        .unwrap();
    server.kill();
    server.start_again();
    let client = server.connect().await;
    let n: i64 = client
        .query_one(&count_named("leftover"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "a temporary table survived a restart");
    let n: i64 = client
        .query_one(&count_named("leftover_view"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "a temporary view survived a restart");
    let rows = client.query("SELECT x FROM scratch", &[]).await.unwrap();
    assert_eq!(rows.len(), 1);
}

/// ALTER TABLE rewrites a table's rows in one batch: the new layout, the constraints and the
/// renames survive a kill -9, a statement prepared before the change is refused rather than
/// reading rows of another layout, and the constraints keep holding afterwards.
#[tokio::test]
async fn altered_tables_keep_their_rows_and_constraints_across_restarts() {
    let mut server = TestServer::start();
    {
        let client = server.connect().await;
        client
            .batch_execute(
                "CREATE TABLE t (id SERIAL PRIMARY KEY, a TEXT, b INT CHECK (b > 0), d TEXT UNIQUE); \
                 INSERT INTO t (a, b, d) VALUES ('x', 5, 'p'), ('y', 6, 'q');",
            )
            .await
            .unwrap();
        let before = client.prepare("SELECT * FROM t ORDER BY id").await.unwrap();
        client
            .batch_execute(
                "ALTER TABLE t ADD COLUMN c TEXT DEFAULT 'z'; ALTER TABLE t DROP COLUMN d; \
                 ALTER TABLE t RENAME COLUMN a TO name; ALTER TABLE t RENAME TO tt; \
                 ALTER TABLE tt ADD CONSTRAINT name_short CHECK (length(name) < 5);",
            )
            .await
            .unwrap();
        let err = client.query(&before, &[]).await.unwrap_err();
        assert_eq!(err.code().unwrap().code(), "0A000", "{err}");
    }
    server.kill();
    server.start_again();
    let client = server.connect().await;
    let rows: Vec<(i32, String, i32, String)> = client
        .query("SELECT id, name, b, c FROM tt ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (1, "x".to_string(), 5, "z".to_string()),
            (2, "y".to_string(), 6, "z".to_string())
        ]
    );
    for (sql, code) in [
        ("INSERT INTO tt (name, b) VALUES ('w', -1)", "23514"),
        ("INSERT INTO tt (name, b) VALUES ('longer', 1)", "23514"),
        ("SELECT d FROM tt", "42703"),
        ("SELECT * FROM t", "42P01"),
    ] {
        let err = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(err.code().unwrap().code(), code, "{sql}: {err}");
    }
    // the serial column's sequence followed the rename and did not start again
    let id: i32 = client
        .query_one("INSERT INTO tt (name, b) VALUES ('v', 1) RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    assert!(id > 2, "{id}");
    // the dropped column's unique index went with it
    let indexes: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'tt'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(indexes, 1);
}

/// A COPY into a table that does not exist fails alone through the extended protocol, and the
/// connection goes on: the error comes when the statement is prepared, before the client starts
/// sending rows.
#[tokio::test]
async fn a_copy_into_a_missing_table_fails_alone() {
    let server = TestServer::start();
    let client = server.connect().await;
    let err = client
        .copy_in::<_, bytes::Bytes>("COPY nope FROM STDIN")
        .await
        .err()
        .expect("COPY into a missing table");
    assert_eq!(err.code().unwrap().code(), "42P01", "{err}");
    for n in 1..=3i64 {
        let row = client.query_one("SELECT $1::bigint", &[&n]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), n);
    }
}

/// Schemas and what they hold survive a kill: the tables' rows, their constraints and
/// sequences, the indexes, and the materialized views, which go on being maintained.
#[tokio::test]
async fn schemas_and_what_they_hold_survive_restarts() {
    let mut server = TestServer::start();
    {
        let client = server.connect().await;
        client
            .batch_execute(
                "CREATE SCHEMA shop; \
                 CREATE TABLE shop.items (id SERIAL PRIMARY KEY, sku TEXT UNIQUE, qty INT); \
                 CREATE TABLE items (id INT PRIMARY KEY); \
                 INSERT INTO shop.items (sku, qty) VALUES ('a', 1), ('b', 2); \
                 CREATE INDEX ON shop.items (qty); \
                 CREATE MATERIALIZED VIEW shop.stock AS SELECT sum(qty) AS total FROM shop.items; \
                 CREATE SCHEMA dropped; DROP SCHEMA dropped;",
            )
            .await
            .unwrap();
    }
    server.kill();
    server.start_again();
    let client = server.connect().await;
    let schemas: Vec<String> = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname IN ('shop', 'dropped', 'public') ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(schemas, ["public", "shop"]);
    let err = client
        .batch_execute("INSERT INTO shop.items (sku, qty) VALUES ('a', 9)")
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "23505", "{err}");
    let id: i32 = client
        .query_one(
            "INSERT INTO shop.items (sku, qty) VALUES ('c', 3) RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(id > 2, "the serial column started again: {id}");
    client.batch_execute("FLUSH").await.unwrap();
    let total: i64 = client
        .query_one("SELECT total FROM shop.stock", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 6);
    let by_qty: String = client
        .query_one("SELECT sku FROM shop.items WHERE qty = 3", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(by_qty, "c");
    let indexes: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'shop'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(indexes, 3);
    let public: i64 = client
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(public, 0);
    let err = client
        .batch_execute("CREATE SCHEMA shop")
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42P06", "{err}");
}

/// A materialized view's declared key serves point reads (EXPLAIN says so) and, after a
/// restart, is still checked: a second row for a key is counted as the view's error, the
/// dataflow goes on.
#[tokio::test]
async fn a_declared_view_key_serves_lookups_and_is_checked_after_restarts() {
    let mut server = TestServer::start();
    {
        let client = server.connect().await;
        client
            .batch_execute(
                "CREATE TABLE events (event_id BIGINT, user_id INT); \
                 INSERT INTO events VALUES (1, 10), (2, 20); \
                 CREATE MATERIALIZED VIEW features WITH (primary_key = 'event_id') AS \
                   SELECT event_id, user_id * 2 AS doubled FROM events;",
            )
            .await
            .unwrap();
        let plan: Vec<String> = client
            .query("EXPLAIN SELECT * FROM features WHERE event_id = 2", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(1))
            .collect();
        assert!(
            plan.iter()
                .any(|p| p.contains("KeyLookup: features (event_id = 2)")),
            "{plan:?}"
        );
    }
    server.kill();
    server.start_again();
    let client = server.connect().await;
    client
        .batch_execute("INSERT INTO events VALUES (2, 99), (3, 30); FLUSH;")
        .await
        .unwrap();
    let rows: Vec<(i64, i64)> = client
        .query(
            "SELECT event_id, doubled FROM features ORDER BY event_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, [(1, 20), (2, 40), (3, 60)]);
    let errors: i64 = client
        .query_one(
            "SELECT errors FROM augur_catalog.views WHERE name = 'features'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(errors, 1);
}

/// Functions written in SQL are part of the catalog: they survive a kill and a restart, a view
/// that calls one is recovered with the body it was created with, and a dropped function stays
/// dropped.
#[tokio::test]
async fn sql_functions_survive_restarts() {
    let mut server = TestServer::start();
    {
        let client = server.connect().await;
        client
            .batch_execute(
                "CREATE TABLE m (id INT PRIMARY KEY, x INT); INSERT INTO m VALUES (1, 10), (2, 20); \
                 CREATE FUNCTION bump(v int, by int = 1) RETURNS int RETURN v + by; \
                 CREATE FUNCTION over_x(lim int) RETURNS TABLE (id int, x int) LANGUAGE sql \
                   AS 'SELECT id, x FROM m WHERE x > lim'; \
                 CREATE MATERIALIZED VIEW bumped AS SELECT id, bump(x, 5) AS b FROM m;",
            )
            .await
            .unwrap();
    }
    server.kill();
    server.start_again();
    let client = server.connect().await;
    let got: (i32, i32) = client
        .query_one("SELECT bump(1), bump(1, 2)", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(got, (2, 3));
    let ids: Vec<i32> = client
        .query("SELECT id FROM over_x(15)", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![2]);
    client
        .batch_execute("DROP FUNCTION bump(int, int); INSERT INTO m VALUES (3, 30); FLUSH")
        .await
        .unwrap();
    let bumped: Vec<(i32, i32)> = client
        .query("SELECT id, b FROM bumped ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(bumped, vec![(1, 15), (2, 25), (3, 35)]);
    drop(client);
    assert!(server.terminate(), "SIGTERM must exit cleanly");
    server.start_again();
    let client = server.connect().await;
    let err = client.query_one("SELECT bump(1)", &[]).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42883"), "{err}");
    let n: i64 = client
        .query_one("SELECT count(*) FROM bumped", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
}

/// `(status, body as JSON)` of an HTTP request to the server's API.
async fn http(request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let response = request.send().await.expect("HTTP request");
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn webhook_ingestion_and_point_reads_over_http() {
    let mut server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE SOURCE clicks (id BIGINT, user_id BIGINT, url TEXT) \
             WITH (connector = 'webhook') FORMAT PLAIN ENCODE JSON; \
             CREATE SOURCE gen (x BIGINT) WITH (connector = 'datagen'); \
             CREATE MATERIALIZED VIEW per_user AS \
             SELECT user_id, count(*) AS n FROM clicks GROUP BY user_id;",
        )
        .await
        .unwrap();
    let web = reqwest::Client::new();
    let base = server.http_url();
    // One object, an array, and JSON lines.
    let (status, body) = http(
        web.post(format!("{base}/ingest/clicks"))
            .body(r#"{"id": 0, "user_id": 1, "url": "/a"}"#),
    )
    .await;
    assert_eq!((status, body["rows"].as_i64()), (200, Some(1)));
    let array: Vec<serde_json::Value> = (1..100)
        .map(|i| serde_json::json!({"id": i, "user_id": i % 5, "url": format!("/{i}")}))
        .collect();
    let (status, body) = http(
        web.post(format!("{base}/ingest/clicks"))
            .body(serde_json::to_string(&array).unwrap()),
    )
    .await;
    assert_eq!((status, body["rows"].as_i64()), (200, Some(99)));
    let lines: String = (100..150)
        .map(|i| format!("{{\"id\": {i}, \"user_id\": {}}}\n", i % 5))
        .collect();
    let (status, _) = http(web.post(format!("{base}/ingest/clicks")).body(lines)).await;
    assert_eq!(status, 200);
    // A record that does not fit: the whole request is refused, nothing stored.
    let (status, body) = http(
        web.post(format!("{base}/ingest/clicks"))
            .body(r#"[{"id": 150, "user_id": 1}, {"id": "x", "user_id": 2}]"#),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("record 1"),
        "{body}"
    );
    for (path, want) in [("/ingest/nothing", 404), ("/ingest/gen", 400)] {
        let (status, _) = http(web.post(format!("{base}{path}")).body("{}")).await;
        assert_eq!(status, want, "{path}");
    }

    client.batch_execute("FLUSH").await.unwrap();
    let total: i64 = client
        .query_one("SELECT sum(n)::BIGINT FROM per_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 150);
    let want: i64 = client
        .query_one("SELECT n FROM per_user WHERE user_id = 1", &[])
        .await
        .unwrap()
        .get(0);
    // Point reads: by `key`, by the key column's name; a key no row has; no key.
    for query in ["key=1", "user_id=1"] {
        let (status, row) = http(web.get(format!("{base}/v1/views/per_user?{query}"))).await;
        assert_eq!(status, 200, "{query}");
        assert_eq!(row, serde_json::json!({"user_id": 1, "n": want}));
    }
    for (path, code) in [
        ("/v1/views/per_user?key=99", 404),
        ("/v1/views/per_user", 400),
        ("/v1/views/per_user?nope=1", 400),
        ("/v1/views/nothing?key=1", 404),
    ] {
        let (status, _) = http(web.get(format!("{base}{path}"))).await;
        assert_eq!(status, code, "{path}");
    }

    // Acknowledged records survive kill -9, and numbering goes on after them.
    drop(client);
    server.restart();
    let base = server.http_url();
    let (status, _) = http(
        web.post(format!("{base}/ingest/clicks"))
            .body(r#"{"id": 150, "user_id": 1}"#),
    )
    .await;
    assert_eq!(status, 200);
    let client = server.connect().await;
    client
        .batch_execute(
            "FLUSH; CREATE MATERIALIZED VIEW later AS \
             SELECT user_id, count(*) AS n FROM clicks GROUP BY user_id",
        )
        .await
        .unwrap();
    for view in ["per_user", "later"] {
        let total: i64 = client
            .query_one(&format!("SELECT sum(n)::BIGINT FROM {view}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(total, 151, "{view}");
    }
}

#[tokio::test]
async fn the_http_api_asks_for_the_pgwire_passwords() {
    let server = TestServer::start_with(&["--password", "secret"]);
    let web = reqwest::Client::new();
    let url = format!("{}/v1/views/nothing?key=1", server.http_url());
    let (status, _) = http(web.get(&url)).await;
    assert_eq!(status, 401);
    let (status, _) = http(web.get(&url).basic_auth("augur", Some("wrong"))).await;
    assert_eq!(status, 401);
    let (status, _) = http(web.get(&url).basic_auth("augur", Some("secret"))).await;
    assert_eq!(status, 404);
}
