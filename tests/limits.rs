//! No statement takes the server down or holds a connection forever: statements nested
//! thousands deep run or fail alone with `54001`, while other clients go on; a cancel request,
//! `statement_timeout` and `lock_timeout` stop a running statement; recursive queries that
//! PostgreSQL refuses are refused.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use tokio_postgres::{Client, SimpleQueryMessage};

/// The single value a simple query returns.
async fn value(client: &Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    let messages = client.simple_query(sql).await?;
    Ok(messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("NULL").to_string()),
            _ => None,
        })
        .expect("a row"))
}

fn sqlstate(err: &tokio_postgres::Error) -> &str {
    err.code().map(|c| c.code()).unwrap_or("none")
}

fn message(err: &tokio_postgres::Error) -> String {
    err.as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_else(|| err.to_string())
}

fn join(n: usize, item: impl Fn(usize) -> String, separator: &str) -> String {
    (0..n).map(item).collect::<Vec<_>>().join(separator)
}

#[tokio::test]
async fn statements_nested_thousands_deep_run_or_fail_alone() {
    let server = TestServer::start();
    let bystander = server.connect().await;
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, s TEXT); \
             INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        )
        .await
        .unwrap();

    let n = 2_000;
    let ors = join(n, |i| format!("id = {}", i + 2), " OR ");
    let list = join(n, |i| (i + 2).to_string(), ", ");
    // (statement, its single value), each as PostgreSQL answers it
    let cases = [
        (
            format!("SELECT count(*) FROM t WHERE {ors}"),
            "2".to_string(),
        ),
        (
            format!("SELECT count(*) FROM t WHERE id IN ({list})"),
            "2".into(),
        ),
        (
            format!("SELECT {}", vec!["1"; n].join(" + ")),
            n.to_string(),
        ),
        (
            format!("SELECT length({})", vec!["'ab'"; n].join(" || ")),
            (2 * n).to_string(),
        ),
        (
            format!(
                "SELECT count(*) FROM ({}) AS u",
                join(n, |i| format!("SELECT {i} AS x"), " UNION ALL ")
            ),
            n.to_string(),
        ),
        (
            format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n)),
            "1".into(),
        ),
        (
            format!(
                "SELECT {}1{}",
                "CASE WHEN true THEN ".repeat(n),
                " END".repeat(n)
            ),
            "1".into(),
        ),
    ];
    for (sql, expected) in &cases {
        let started = Instant::now();
        let got = value(&client, sql)
            .await
            .unwrap_or_else(|e| panic!("{}...: {e}", &sql[..60]));
        assert_eq!(&got, expected, "{}...", &sql[..60]);
        eprintln!("{:?}: {}...", started.elapsed(), &sql[..40]);
    }

    // The same inside materialized views, checked against the batch query.
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "CREATE MATERIALIZED VIEW deep_or AS SELECT id, s FROM t WHERE {ors}; \
             CREATE MATERIALIZED VIEW deep_union AS {}; \
             INSERT INTO t VALUES (4, 'd'); FLUSH",
            join(
                n,
                |i| format!("SELECT id, s || '{i}' AS s FROM t WHERE id = {}", i % 5),
                " UNION ALL "
            )
        ))
        .await
        .unwrap();
    eprintln!("{:?}: views", started.elapsed());
    assert_eq!(
        value(&client, "SELECT count(*) FROM deep_or")
            .await
            .unwrap(),
        "3"
    );
    let per_id = (n / 5).to_string();
    assert_eq!(
        value(&client, "SELECT count(*) FROM deep_union WHERE id = 4")
            .await
            .unwrap(),
        per_id
    );

    // Deeper than the limit: 54001, for this statement only.
    let deep = 20_000;
    for sql in [
        format!("SELECT {}", vec!["1"; deep].join(" + ")),
        format!(
            "SELECT count(*) FROM t WHERE {}",
            join(deep, |i| format!("id = {i}"), " OR ")
        ),
        join(deep, |i| format!("SELECT {i}"), " UNION ALL "),
        format!("SELECT {}1{}", "(".repeat(deep), ")".repeat(deep)),
        format!(
            "CREATE MATERIALIZED VIEW too_deep AS SELECT {} AS x FROM t",
            vec!["id"; deep].join(" + ")
        ),
        // the check does not depend on the statement's size: a million levels is refused as fast
        format!("SELECT {}", vec!["1"; 1_000_000].join("+")),
    ] {
        let err = client.simple_query(&sql).await.unwrap_err();
        assert_eq!(sqlstate(&err), "54001", "{}...: {err}", &sql[..50]);
    }
    // Subqueries nest a limited depth.
    let nested = |k: usize| format!("SELECT {}1{}", "(SELECT ".repeat(k), ")".repeat(k));
    assert_eq!(value(&client, &nested(8)).await.unwrap(), "1");
    let err = client.simple_query(&nested(40)).await.unwrap_err();
    assert_eq!(sqlstate(&err), "54001", "{err}");

    // Both connections go on.
    assert_eq!(value(&client, "SELECT count(*) FROM t").await.unwrap(), "4");
    assert_eq!(value(&bystander, "SELECT 'alive'").await.unwrap(), "alive");
    assert!(
        client
            .simple_query("SELECT * FROM too_deep")
            .await
            .is_err_and(|e| sqlstate(&e) == "42P01")
    );
}

/// Runs `sql` on `client`, cancels it from another connection after `after`, and returns the
/// error and how long the statement took to stop once the cancel request was sent.
async fn cancel_after(
    client: &Client,
    sql: &str,
    after: Duration,
) -> (tokio_postgres::Error, Duration) {
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let sent = Instant::now();
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
        sent
    });
    let err = client
        .simple_query(sql)
        .await
        .expect_err("the statement must be cancelled");
    let stopped = Instant::now();
    let sent = canceller.await.unwrap();
    (err, stopped.saturating_duration_since(sent))
}

#[tokio::test]
async fn cancel_requests_and_statement_timeout_stop_any_statement() {
    let server = TestServer::start();
    let client = server.connect().await;
    let endless = [
        // a recursive query that never ends, read whole or counted
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT * FROM r",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
        // a long aggregate and a long sort
        "SELECT count(*) FROM generate_series(1, 100000000000) AS g(x) WHERE x % 7 = 3",
        "SELECT x FROM generate_series(1, 100000000000) AS g(x) ORDER BY x DESC LIMIT 1",
        // a sleep, which holds no thread
        "SELECT pg_sleep(3600)",
    ];
    for sql in endless {
        let (err, took) = cancel_after(&client, sql, Duration::from_millis(300)).await;
        assert_eq!(sqlstate(&err), "57014", "{sql}: {err}");
        assert!(message(&err).contains("user request"), "{err}");
        eprintln!("cancelled {took:?} after the request: {sql}");
        // Generous for a loaded machine (the suite runs other tests beside this one, and a
        // sort checks for cancellation between batches); the figure above is what it took.
        assert!(took < Duration::from_secs(5), "{sql}: {took:?}");
        assert_eq!(value(&client, "SELECT 1").await.unwrap(), "1");
    }
    // A cancel request while nothing runs does not cancel the next statement.
    client
        .cancel_token()
        .cancel_query(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(value(&client, "SELECT 2").await.unwrap(), "2");

    client
        .simple_query("SET statement_timeout = '250ms'")
        .await
        .unwrap();
    assert_eq!(
        value(&client, "SHOW statement_timeout").await.unwrap(),
        "250ms"
    );
    for sql in endless {
        let started = Instant::now();
        let err = client.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err), "57014", "{sql}: {err}");
        assert!(message(&err).contains("statement timeout"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3), "{sql}");
    }
    // Through the extended protocol too.
    let err = client
        .query(
            "SELECT count(*) FROM generate_series(1, 100000000000) AS g(x) WHERE x > $1",
            &[&1i64],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "57014", "{err}");
    client
        .simple_query("SET statement_timeout = 0")
        .await
        .unwrap();
    assert_eq!(value(&client, "SELECT 3").await.unwrap(), "3");
    let err = client
        .simple_query("SET statement_timeout = 'soon'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22023");
}

#[tokio::test]
async fn lock_timeout_stops_a_statement_waiting_for_writers() {
    let server = TestServer::start();
    let writer = server.connect().await;
    let waiter = server.connect().await;
    writer
        .batch_execute("CREATE TABLE big (x BIGINT)")
        .await
        .unwrap();
    // A long write holds the write lock while it runs.
    let token = writer.cancel_token();
    let long_write = tokio::spawn(async move {
        writer
            .simple_query("INSERT INTO big SELECT x FROM generate_series(1, 100000000000) AS g(x)")
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    waiter
        .simple_query("SET lock_timeout = '200ms'")
        .await
        .unwrap();
    let started = Instant::now();
    let err = waiter
        .simple_query("INSERT INTO big VALUES (1)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "55P03", "{err}");
    assert!(message(&err).contains("lock timeout"), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let err = long_write.await.unwrap().unwrap_err();
    assert_eq!(sqlstate(&err), "57014", "{err}");
    // The cancelled write wrote nothing; the lock is free again.
    waiter
        .simple_query("INSERT INTO big VALUES (2)")
        .await
        .unwrap();
    assert_eq!(
        value(&waiter, "SELECT count(*) FROM big").await.unwrap(),
        "1"
    );
}

#[tokio::test]
async fn recursive_queries_postgresql_refuses_are_refused() {
    let server = TestServer::start();
    let client = server.connect().await;
    for sql in [
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT count(*) FROM r) SELECT * FROM r",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < (SELECT max(n) FROM r)) SELECT * FROM r",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT r.n + 1 FROM r, r AS s) SELECT * FROM r",
    ] {
        let err = client.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42P19", "{sql}: {err}");
    }
    assert_eq!(
        value(
            &client,
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 100) SELECT sum(n) FROM r"
        )
        .await
        .unwrap(),
        "5050"
    );
    // Read through a subquery in FROM or a CTE of the recursive term, as PostgreSQL allows.
    for sql in [
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM (SELECT * FROM r) s WHERE n < 100) SELECT sum(n) FROM r",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL (WITH c AS (SELECT * FROM r) SELECT n + 1 FROM c WHERE n < 100)) SELECT sum(n) FROM r",
    ] {
        assert_eq!(value(&client, sql).await.unwrap(), "5050", "{sql}");
    }
    // A CTE reading the recursive query named twice would read it twice: refused, not wrong.
    let err = client
        .simple_query(
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL (WITH c AS (SELECT * FROM r) SELECT c.n + 1 FROM c, c AS d WHERE c.n < 3)) SELECT * FROM r",
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "0A000", "{err}");
}
