//! Event time across restarts: a watermark and its counts are committed with the rows, so a
//! restarted server drops exactly the rows it would have dropped had it kept running.

mod common;

use common::TestServer;
use futures::SinkExt;
use tokio_postgres::Client;

async fn stats(client: &Client, name: &str) -> (i64, i64, i64) {
    let row = client
        .query_one(
            "SELECT rows_ingested, rows_late, rows_rejected FROM augur_catalog.source_stats \
             WHERE source_name = $1",
            &[&name],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

async fn inserted(client: &Client, sql: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn watermarks_and_late_counts_survive_restarts() {
    let mut server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE events (id BIGINT PRIMARY KEY, ts TIMESTAMP, \
               WATERMARK FOR ts AS ts - INTERVAL '1 minute') APPEND ONLY;
             CREATE MATERIALIZED VIEW n_events AS SELECT count(*) AS n FROM events;
             CREATE SOURCE clicks (id BIGINT, ts TIMESTAMP, \
               WATERMARK FOR ts AS ts - INTERVAL '1 second') WITH (connector = 'datagen', \
               datagen.rows.per.second = '100000', datagen.rows = '3000', \
               fields.id.kind = 'sequence', fields.ts.step = '1 second', \
               fields.ts.max_past = '4 seconds');
             CREATE MATERIALIZED VIEW n_clicks AS SELECT count(*) AS n, max(id) AS top FROM clicks;
             FLUSH",
        )
        .await
        .unwrap();
    let ids = inserted(
        &client,
        "INSERT INTO events VALUES (1, '2026-01-01 10:00:00'), (2, '2026-01-01 08:00:00') \
         RETURNING id",
    )
    .await;
    assert_eq!(ids, vec![1]);
    let clicks_before = stats(&client, "clicks").await;
    assert!(clicks_before.1 > 0, "{clicks_before:?}");
    assert_eq!(clicks_before.0 + clicks_before.1, 3000);
    let view_before: i64 = client
        .query_one("SELECT n FROM n_clicks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(view_before, clicks_before.0);
    drop(client);

    server.restart();
    let client = server.connect().await;
    // The watermark is still 09:59: a row at 09:58 is late, one at 09:59:30 is not.
    let ids = inserted(
        &client,
        "INSERT INTO events VALUES (3, '2026-01-01 09:58:00'), (4, '2026-01-01 09:59:30') \
         RETURNING id",
    )
    .await;
    assert_eq!(ids, vec![4]);
    // COPY counts the rows it stored.
    let sink = client.copy_in("COPY events FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(
        b"5\t2026-01-01 09:57:00\n6\t2026-01-01 10:00:30\n",
    ))
    .await
    .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 1);
    client.batch_execute("FLUSH").await.unwrap();
    assert_eq!(stats(&client, "events").await, (3, 3, 0));
    let n: i64 = client
        .query_one("SELECT n FROM n_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    // The source's counts were committed with its position; a view created now sees the rows
    // the others saw.
    assert_eq!(stats(&client, "clicks").await, clicks_before);
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW n_clicks_after AS SELECT count(*) AS n, max(id) AS top \
             FROM clicks; FLUSH",
        )
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT a.n, a.top, b.n, b.top FROM n_clicks a, n_clicks_after b",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), view_before);
    assert_eq!(row.get::<_, i64>(0), row.get::<_, i64>(2));
    assert_eq!(row.get::<_, i64>(1), row.get::<_, i64>(3));
}

async fn windows(client: &Client, view: &str) -> Vec<(String, i64)> {
    client
        .query(
            &format!("SELECT window_start::text, n FROM {view} ORDER BY window_start"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn closed_windows_are_emitted_once_across_restarts() {
    let mut server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE t (ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1 minute') \
               APPEND ONLY;
             CREATE MATERIALIZED VIEW per_hour AS SELECT window_start, count(*) AS n \
               FROM TUMBLE(t, ts, INTERVAL '1 hour') GROUP BY window_start EMIT ON WINDOW CLOSE;
             INSERT INTO t VALUES ('2026-01-01 10:10:00'), ('2026-01-01 10:50:00'), \
               ('2026-01-01 11:30:00');
             FLUSH",
        )
        .await
        .unwrap();
    // The watermark (11:29) has passed 11:00: the 10:00 window is out.
    let first = vec![("2026-01-01 10:00:00".to_string(), 2)];
    assert_eq!(windows(&client, "per_hour").await, first);
    drop(client);

    server.restart();
    let client = server.connect().await;
    client
        .batch_execute("INSERT INTO t VALUES ('2026-01-01 11:40:00'); FLUSH")
        .await
        .unwrap();
    // Nothing new has closed, and the closed window is not emitted again.
    assert_eq!(windows(&client, "per_hour").await, first);
    client
        .batch_execute("INSERT INTO t VALUES ('2026-01-01 12:05:00'); FLUSH")
        .await
        .unwrap();
    assert_eq!(
        windows(&client, "per_hour").await,
        vec![
            ("2026-01-01 10:00:00".to_string(), 2),
            ("2026-01-01 11:00:00".to_string(), 2)
        ]
    );
}
