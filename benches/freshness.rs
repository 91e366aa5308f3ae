//! Freshness: how long after a write is acknowledged a SELECT on a view sees it, under a steady
//! load of other writes.
//!
//! A server with its defaults (fsync on) holds an append-only table `events`, a webhook source
//! `clicks` and a `GROUP BY user_id` view over each (count and sum). Load: `INSERT INTO events`
//! of 100 rows per statement (100,000 users) at a target rate, from four connections. Probes,
//! one at a time, alternate between the two paths: an `INSERT` of one row for a user no load
//! touches, or a `POST /ingest/clicks` of one row; from its acknowledgement, a second connection
//! runs `SELECT n FROM <view> WHERE user_id = <probe user>` (prepared) back to back until the
//! count shows the row. The figure is that time: acknowledged to visible through pgwire.
//!
//! The reference, in the same run, is the same measurement with every epoch as long as the
//! longest (`--min-epoch-ms 100`): views committing on a fixed 100 ms clock.
//!
//! Run with `benches/run.sh freshness` (release build). `AUGUR_BENCH_PROBES` sets the probes per
//! path and run (default 300).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Augur, connect, cpu_seconds, percentile, rss_mib};

const USERS: i64 = 100_000;
const ROWS_PER_INSERT: i64 = 100;
const LOADERS: usize = 4;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

struct Measured {
    table: Vec<Duration>,
    source: Vec<Duration>,
    achieved: f64,
    cpu_share: f64,
    rss: f64,
}

async fn measure(rate: u64, args: &[&str], probes: usize) -> Measured {
    let augur = Augur::start(args);
    let pid = augur.child.id();
    let client = connect(&augur.conn_str()).await;
    client
        .batch_execute(
            "CREATE TABLE events (id BIGINT, user_id BIGINT, amount DOUBLE PRECISION) APPEND ONLY;
             CREATE SOURCE clicks (id BIGINT, user_id BIGINT) WITH (connector = 'webhook')
             FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW per_user AS
             SELECT user_id, count(*) AS n, sum(amount) AS total FROM events GROUP BY user_id;
             CREATE MATERIALIZED VIEW clicks_per_user AS
             SELECT user_id, count(*) AS n FROM clicks GROUP BY user_id;
             FLUSH",
        )
        .await
        .expect("setup");

    // The load: each loader sends its share of `rate` rows per second, 100 per statement.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut loaders = Vec::new();
    for loader in 0..LOADERS as i64 {
        let conn = augur.conn_str();
        let (stop, sent) = (stop.clone(), sent.clone());
        loaders.push(tokio::spawn(async move {
            let client = connect(&conn).await;
            let insert = client
                .prepare(&format!(
                    "INSERT INTO events SELECT $1::BIGINT + i, ($1::BIGINT + i) % {USERS}, 1.5
                     FROM generate_series(0, {}) AS s(i)",
                    ROWS_PER_INSERT - 1
                ))
                .await
                .unwrap();
            let statements_per_second = rate as f64 / ROWS_PER_INSERT as f64 / LOADERS as f64;
            let period = Duration::from_secs_f64(1.0 / statements_per_second);
            let start = Instant::now();
            let mut n: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let due = start + period.mul_f64(n as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
                let first = (n * LOADERS as i64 + loader) * ROWS_PER_INSERT;
                client.execute(&insert, &[&first]).await.unwrap();
                sent.fetch_add(ROWS_PER_INSERT as u64, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    // Let the load settle before the first probe.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (sent0, cpu0, t0) = (
        sent.load(Ordering::Relaxed),
        cpu_seconds(pid),
        Instant::now(),
    );

    let writer = connect(&augur.conn_str()).await;
    let reader = connect(&augur.conn_str()).await;
    let probe_insert = writer
        .prepare("INSERT INTO events VALUES ($1, -1, 1.0)")
        .await
        .unwrap();
    let table_count = reader
        .prepare("SELECT n FROM per_user WHERE user_id = -1")
        .await
        .unwrap();
    let source_count = reader
        .prepare("SELECT n FROM clicks_per_user WHERE user_id = -2")
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let ingest = format!("http://{}/ingest/clicks", augur.http);
    let (mut table, mut source) = (Vec::new(), Vec::new());
    for probe in 1..=probes as i64 {
        for via_source in [false, true] {
            let acknowledged = if via_source {
                let response = http
                    .post(&ingest)
                    .body(format!("{{\"id\": {probe}, \"user_id\": -2}}"))
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success(), "{}", response.status());
                Instant::now()
            } else {
                writer.execute(&probe_insert, &[&(-probe)]).await.unwrap();
                Instant::now()
            };
            let count = if via_source {
                &source_count
            } else {
                &table_count
            };
            loop {
                let seen: i64 = reader
                    .query_opt(count, &[])
                    .await
                    .unwrap()
                    .map_or(0, |row| row.get(0));
                if seen >= probe {
                    break;
                }
            }
            let took = acknowledged.elapsed();
            if via_source {
                source.push(took);
            } else {
                table.push(took);
            }
        }
        // Probes start at unrelated moments of the epoch.
        tokio::time::sleep(Duration::from_micros(
            (probe as u64 * 7_919) % 20_000 + 1_000,
        ))
        .await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let achieved = (sent.load(Ordering::Relaxed) - sent0) as f64 / elapsed;
    let cpu_share = (cpu_seconds(pid) - cpu0) / elapsed;
    stop.store(true, Ordering::Relaxed);
    for loader in loaders {
        loader.await.unwrap();
    }
    table.sort();
    source.sort();
    Measured {
        table,
        source,
        achieved,
        cpu_share,
        rss: rss_mib(pid),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let probes: usize = std::env::var("AUGUR_BENCH_PROBES")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(300);
    println!(
        "| load (target) | load (achieved) | epochs | path | p50 | p99 | max | server CPU | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for rate in [10_000u64, 100_000] {
        for (epochs, args) in [
            ("defaults", &[][..]),
            (
                "fixed 100 ms (`--min-epoch-ms 100`)",
                &["--min-epoch-ms", "100"][..],
            ),
        ] {
            let m = runtime.block_on(measure(rate, args, probes));
            for (path, times) in [
                ("INSERT → view", &m.table),
                ("webhook → source → view", &m.source),
            ] {
                println!(
                    "| {rate} rows/s | {:.0} rows/s | {epochs} | {path} | {} | {} | {} | {:.0}% | {:.0} MiB |",
                    m.achieved,
                    ms(percentile(times, 0.5)),
                    ms(percentile(times, 0.99)),
                    ms(*times.last().unwrap()),
                    m.cpu_share * 100.0,
                    m.rss,
                );
            }
        }
    }
}
