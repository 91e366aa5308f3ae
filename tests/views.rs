//! Materialized views across crashes: the server is killed (`kill -9`) at random moments while
//! a client writes; after every restart each acknowledged write is there and every view equals
//! its query run as a batch query.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestServer;

const VIEWS: &[(&str, &str)] = &[
    (
        "per_user",
        "SELECT user_id, count(*) AS n, sum(amount) AS total, max(amount) AS top FROM events GROUP BY user_id",
    ),
    (
        "totals",
        "SELECT count(*) AS n, sum(amount) AS total FROM events",
    ),
    ("big", "SELECT id, amount FROM events WHERE amount > 50"),
    (
        "with_counts",
        "SELECT e.id, p.n FROM events AS e JOIN per_user AS p ON e.user_id = p.user_id",
    ),
    ("amounts", "SELECT amount FROM events"),
];

/// Rows of a query as sorted text lines.
async fn lines(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    for message in client.simple_query(sql).await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            let values: Vec<String> = (0..row.len())
                .map(|i| row.get(i).unwrap_or("NULL").to_string())
                .collect();
            out.push(values.join("|"));
        }
    }
    out.sort();
    out
}

#[derive(Default)]
struct Acked {
    inserted: BTreeSet<i64>,
    deleted: BTreeSet<i64>,
    /// Rows a DELETE was sent for: gone if it committed before the kill, even unacknowledged.
    maybe_deleted: BTreeSet<i64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_equal_their_queries_after_kill_9_at_random_moments() {
    let mut server = TestServer::start_with(&["--epoch-ms", "30"]);
    {
        let client = server.connect().await;
        client
            .batch_execute(
                "CREATE TABLE events (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, amount DOUBLE PRECISION)",
            )
            .await
            .unwrap();
        for (name, query) in VIEWS {
            client
                .batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
                .await
                .unwrap();
        }
    }
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut next_id = 0i64;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..10u64 {
        let client = server.connect().await;
        let log = acked.clone();
        let first = next_id;
        let writer = tokio::spawn(async move {
            let mut id = first;
            for step in 0u64.. {
                let (sql, inserted, deleted) = if step % 7 == 6 && id > 20 {
                    let victim = id - 1 - (step as i64 * 13) % 20;
                    (
                        format!("DELETE FROM events WHERE id = {victim}"),
                        vec![],
                        vec![victim],
                    )
                } else if step % 5 == 4 {
                    (
                        format!(
                            "UPDATE events SET amount = amount + 1 WHERE user_id = {}",
                            step % 17
                        ),
                        vec![],
                        vec![],
                    )
                } else {
                    let rows: Vec<String> = (id..id + 5)
                        .map(|i| format!("({i}, {}, {})", i % 17, (i * 37 % 101) as f64 * 0.5))
                        .collect();
                    let ids: Vec<i64> = (id..id + 5).collect();
                    id += 5;
                    (
                        format!("INSERT INTO events VALUES {}", rows.join(", ")),
                        ids,
                        vec![],
                    )
                };
                log.lock()
                    .unwrap()
                    .maybe_deleted
                    .extend(deleted.iter().copied());
                if client.batch_execute(&sql).await.is_err() {
                    break; // the server is gone
                }
                let mut log = log.lock().unwrap();
                log.inserted.extend(inserted);
                for d in deleted {
                    log.deleted.insert(d);
                }
            }
        });
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(40 + seed % 400)).await;
        server.kill();
        let _ = writer.await;
        server.start_again();

        let client = server.connect().await;
        let ids: BTreeSet<i64> = lines(&client, "SELECT id FROM events")
            .await
            .iter()
            .map(|l| l.parse().unwrap())
            .collect();
        {
            let log = acked.lock().unwrap();
            for id in log.inserted.difference(&log.maybe_deleted) {
                assert!(
                    ids.contains(id),
                    "round {round}: acknowledged row {id} is lost"
                );
            }
            for id in &log.deleted {
                assert!(!ids.contains(id), "round {round}: deleted row {id} is back");
            }
        }
        client.batch_execute("FLUSH").await.unwrap();
        for (name, query) in VIEWS {
            let view = lines(&client, &format!("SELECT * FROM {name}")).await;
            let batch = lines(&client, query).await;
            assert_eq!(
                view, batch,
                "round {round}: view {name} differs from its query"
            );
        }
        // Never reuse an id: not one that exists, was acknowledged, or was deleted.
        let log = acked.lock().unwrap();
        let used = [ids.last(), log.inserted.last(), log.deleted.last()];
        next_id = used.into_iter().flatten().max().map_or(0, |m| m + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_resumes_where_its_last_epoch_left_it_after_kill_9() {
    let mut server = TestServer::start_with(&["--epoch-ms", "30"]);
    let per_user =
        "SELECT user_id, count(*) AS n, min(id) AS first, max(id) AS last FROM s GROUP BY user_id";
    {
        let client = server.connect().await;
        client
            .batch_execute(&format!(
                "CREATE SOURCE s (id BIGINT, user_id BIGINT) WITH (connector = 'datagen',
                   datagen.rows.per.second = '40000', datagen.rows = '60000',
                   fields.id.kind = 'sequence', fields.user_id.min = '1', fields.user_id.max = '300');
                 CREATE MATERIALIZED VIEW per_user AS {per_user};
                 CREATE MATERIALIZED VIEW total AS SELECT count(*) AS n, count(DISTINCT id) AS ids FROM s"
            ))
            .await
            .unwrap();
    }
    for round in 0..3u64 {
        tokio::time::sleep(Duration::from_millis(150 + 170 * round)).await;
        server.kill();
        server.start_again();
        let client = server.connect().await;
        // Whatever was committed is consistent: the view counts every row read once.
        // (the source goes on meanwhile: its count read later can only be larger)
        let total = lines(&client, "SELECT n, ids FROM total").await;
        let read: u64 = lines(&client, "SELECT count(*) FROM s").await[0]
            .parse()
            .unwrap();
        let n = total[0].split('|').next().unwrap().to_string();
        assert_eq!(
            total[0],
            format!("{n}|{n}"),
            "round {round}: a row counted twice"
        );
        assert!(
            n.parse::<u64>().unwrap() <= read,
            "round {round}: the view is ahead of the source"
        );
    }
    let client = server.connect().await;
    client.batch_execute("FLUSH").await.unwrap();
    assert_eq!(
        lines(&client, "SELECT * FROM total").await,
        vec!["60000|60000"]
    );
    assert_eq!(
        lines(&client, "SELECT * FROM per_user").await,
        lines(&client, per_user).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_views_over_one_table_never_disagree() {
    let server = TestServer::start_with(&["--epoch-ms", "5"]);
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT);
             CREATE MATERIALIZED VIEW counted AS SELECT count(*) AS n FROM t;
             CREATE MATERIALIZED VIEW summed AS SELECT sum(v) AS n FROM t",
        )
        .await
        .unwrap();
    let writer = server.connect().await;
    let writes = tokio::spawn(async move {
        for id in 0..300i64 {
            writer
                .batch_execute(&format!("INSERT INTO t VALUES ({id}, 1)"))
                .await
                .unwrap();
        }
    });
    // Every statement reads both views from the same committed epoch.
    let mut checks = 0;
    while !writes.is_finished() {
        let row = client
            .query_one(
                "SELECT c.n, coalesce(s.n, 0) FROM counted AS c CROSS JOIN summed AS s",
                &[],
            )
            .await
            .unwrap();
        let (count, sum): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(count, sum, "two views over one table disagree");
        checks += 1;
    }
    writes.await.unwrap();
    assert!(
        checks > 10,
        "only {checks} reads happened during the writes"
    );
}

/// Views over an append-only table with a watermark, one per event-time operator: sliding
/// per-event aggregates, a window function that recomputes its partition, sessions, an
/// interval join that deletes rows out of reach, a top-n and a windowed aggregate. Rows come
/// out of order (some too late, dropped before any view sees them).
const EVENT_VIEWS: &[(&str, &str)] = &[
    (
        "features",
        "SELECT id, count(*) OVER (PARTITION BY user_id ORDER BY ts RANGE BETWEEN INTERVAL '10 seconds' PRECEDING AND CURRENT ROW) AS n10, \
         sum(amount) OVER (PARTITION BY user_id ORDER BY ts RANGE BETWEEN INTERVAL '10 seconds' PRECEDING AND CURRENT ROW) AS s10, \
         max(amount) OVER (PARTITION BY user_id ORDER BY ts RANGE BETWEEN INTERVAL '1 minute' PRECEDING AND CURRENT ROW) AS m60 \
         FROM ev",
    ),
    (
        "ranks",
        "SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY ts, id) AS rn FROM ev",
    ),
    (
        "sessions",
        "SELECT user_id, window_start, window_end, count(*) AS n, sum(amount) AS total \
         FROM SESSION(ev, ts, INTERVAL '2 seconds') GROUP BY user_id, window_start, window_end",
    ),
    (
        "pairs",
        "SELECT a.id, b.id AS bid FROM ev AS a JOIN ev AS b \
         ON a.user_id = b.user_id AND b.ts BETWEEN a.ts - INTERVAL '3 seconds' AND a.ts",
    ),
    (
        "top",
        "SELECT id, amount FROM ev ORDER BY amount DESC, id LIMIT 5",
    ),
    (
        "per_window",
        "SELECT window_start, user_id, count(*) AS n, max(amount) AS top \
         FROM TUMBLE(ev, ts, INTERVAL '10 seconds') GROUP BY window_start, user_id",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_time_views_equal_their_queries_after_kill_9() {
    let mut server = TestServer::start_with(&["--epoch-ms", "30"]);
    {
        let client = server.connect().await;
        client
            .batch_execute(
                "CREATE TABLE ev (id BIGINT, user_id BIGINT, ts TIMESTAMP, amount BIGINT,
                                  WATERMARK FOR ts AS ts - INTERVAL '5 seconds') APPEND ONLY",
            )
            .await
            .unwrap();
        for (name, query) in EVENT_VIEWS {
            client
                .batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
                .await
                .unwrap();
        }
    }
    let mut next_id = 0i64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..6u64 {
        let client = server.connect().await;
        let first = next_id;
        let writer = tokio::spawn(async move {
            for id in (first..).step_by(4) {
                // Event time runs at ~1 s per 3 rows; a row is up to 7 s behind it.
                let rows: Vec<String> = (id..id + 4)
                    .map(|i| {
                        format!(
                            "({i}, {}, TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '{} seconds', {})",
                            i % 7,
                            i / 3 - (i * 31 % 8),
                            i * 37 % 101
                        )
                    })
                    .collect();
                let sql = format!("INSERT INTO ev VALUES {}", rows.join(", "));
                if client.batch_execute(&sql).await.is_err() {
                    return id; // the server is gone
                }
            }
            unreachable!()
        });
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(60 + seed % 400)).await;
        server.kill();
        // Ids are never reused: the next round starts after any that may have been sent.
        next_id = writer.await.unwrap() + 4;
        server.start_again();
        let client = server.connect().await;
        client.batch_execute("FLUSH").await.unwrap();
        for (name, query) in EVENT_VIEWS {
            let view = lines(&client, &format!("SELECT * FROM {name}")).await;
            let batch = lines(&client, query).await;
            assert_eq!(
                view, batch,
                "round {round}: view {name} differs from its query"
            );
        }
    }
    let client = server.connect().await;
    let rows: i64 = lines(&client, "SELECT count(*) FROM features").await[0]
        .parse()
        .unwrap();
    assert!(rows > 100, "only {rows} events arrived in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_beyond_the_cache_is_evicted_and_read_back_exactly() {
    // 100,000 groups, join keys, distinct rows and window partitions take several MiB each:
    // far more than the 1 MiB the views may cache together.
    let server = TestServer::start_with(&["--state-cache-mb", "1", "--epoch-ms", "20"]);
    let client = server.connect().await;
    let per_user = "SELECT user_id, count(*) AS n, sum(amount) AS total, max(amount) AS top \
                    FROM s GROUP BY user_id";
    let joined = "SELECT s.id, s.amount, u.tier FROM s JOIN u ON s.user_id = u.user_id";
    let top = "SELECT id, amount FROM s ORDER BY amount DESC, id LIMIT 5";
    // No key: each distinct (n, top) row is stored once with its multiplicity.
    let shapes = "SELECT n, top FROM per_user";
    // Window functions and sessions keep each user's rows as one partition. (A RANGE frame
    // along `ts` would be kept by the sliding operator, whose rows within the watermark's reach
    // stay in memory whatever the cache's size.)
    let recent = "SELECT id, user_id, \
                  count(*) OVER (PARTITION BY user_id ORDER BY ts ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS n, \
                  sum(amount) OVER (PARTITION BY user_id ORDER BY ts ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS total \
                  FROM s";
    let sessions = "SELECT user_id, window_start, window_end, count(*) AS n, sum(amount) AS total \
                    FROM SESSION(s, ts, INTERVAL '30 seconds') GROUP BY user_id, window_start, window_end";
    client
        .batch_execute(&format!(
            "CREATE TABLE u (user_id BIGINT PRIMARY KEY, tier TEXT);
             INSERT INTO u SELECT i, 'tier ' || (i % 7) FROM generate_series(1, 100000) AS g(i);
             CREATE SOURCE s (id BIGINT, user_id BIGINT, amount BIGINT, ts TIMESTAMP,
                              WATERMARK FOR ts AS ts - INTERVAL '1 second')
             WITH (connector = 'datagen', datagen.rows.per.second = '1000000000',
                   datagen.rows = '300000', fields.id.kind = 'sequence',
                   fields.user_id.min = '1', fields.user_id.max = '100000',
                   fields.amount.min = '0', fields.amount.max = '1000',
                   fields.ts.step = '2 milliseconds');
             CREATE MATERIALIZED VIEW per_user AS {per_user};
             CREATE MATERIALIZED VIEW joined AS {joined};
             CREATE MATERIALIZED VIEW top AS {top};
             CREATE MATERIALIZED VIEW shapes AS {shapes};
             CREATE MATERIALIZED VIEW recent AS {recent};
             CREATE MATERIALIZED VIEW sessions AS {sessions};
             FLUSH"
        ))
        .await
        .unwrap();
    let view = lines(&client, "SELECT * FROM per_user").await;
    assert!(view.len() > 90_000, "{} groups", view.len());
    assert_eq!(view, lines(&client, per_user).await);
    let digest = |relation: &str| {
        format!("SELECT count(*), sum(id), sum(amount), sum(length(tier)) FROM ({relation}) AS j")
    };
    let joined_digest = lines(&client, &digest("SELECT * FROM joined")).await;
    assert!(joined_digest[0].starts_with("300000|"), "{joined_digest:?}");
    assert_eq!(joined_digest, lines(&client, &digest(joined)).await);
    assert_eq!(
        lines(&client, "SELECT * FROM top ORDER BY amount DESC, id").await,
        lines(&client, top).await
    );
    assert_eq!(
        lines(&client, "SELECT * FROM shapes").await,
        lines(&client, shapes).await
    );
    let windowed = |relation: &str| {
        format!("SELECT count(*), sum(user_id), sum(n), sum(total) FROM ({relation}) AS w")
    };
    let recent_digest = lines(&client, &windowed("SELECT * FROM recent")).await;
    assert!(recent_digest[0].starts_with("300000|"), "{recent_digest:?}");
    assert_eq!(recent_digest, lines(&client, &windowed(recent)).await);
    let sessions_digest = lines(&client, &windowed("SELECT * FROM sessions")).await;
    assert_eq!(sessions_digest, lines(&client, &windowed(sessions)).await);
    let cache = lines(
        &client,
        "SELECT limit_bytes, cached_bytes, reads, evicted FROM augur_catalog.state_cache",
    )
    .await;
    let numbers: Vec<i64> = cache[0].split('|').map(|v| v.parse().unwrap()).collect();
    let [limit, cached, reads, evicted] = numbers[..] else {
        panic!("{cache:?}");
    };
    assert_eq!(limit, 1 << 20);
    assert!(
        cached <= limit,
        "{cached} bytes cached over a limit of {limit}"
    );
    assert!(evicted > 0 && reads > 0, "{cache:?}");
}
