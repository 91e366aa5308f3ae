//! Point lookups and bulk load: Augur against PostgreSQL, same client library, same machine,
//! same run.
//!
//! Run with `benches/run.sh`, which starts a throwaway PostgreSQL 15 and passes its address in
//! `AUGUR_BENCH_PG`. Without it only Augur is measured.
//!
//! - lookup: `SELECT user_id, amount, merchant FROM bench WHERE id = $1` through one prepared
//!   statement, one client, over loopback, random keys of a 100k-row table: p50, p99, mean.
//! - view index: `SELECT user_id, doubled, merchant FROM bench_features WHERE txn_id = $1`, a
//!   per-event feature view (no key of its own) over a 100k-row table of events, read through
//!   `CREATE INDEX ON bench_features (txn_id)`: the same figures. PostgreSQL answers from a
//!   materialized view with the same index.
//! - view key: the same lookup over the same view declared `WITH (primary_key = 'txn_id')`, a
//!   point read in Augur; PostgreSQL answers from a materialized view with a unique index.
//! - load: `COPY bench FROM STDIN` of 1M rows in text format: rows/s.

mod common;

use std::time::{Duration, Instant};

use common::{Augur, Rng, connect, us};
use futures::SinkExt;
use tokio_postgres::Client;

const ROWS: i64 = 100_000;
const LOAD_ROWS: i64 = 1_000_000;
const WARMUP: usize = 5_000;
const LOOKUPS: usize = 50_000;

fn rows_text(from: i64, to: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(((to - from) * 48) as usize);
    for id in from..to {
        let user = id % 10_007;
        let amount = (id % 1000) as f64 / 10.0 + 0.25;
        out.extend_from_slice(
            format!(
                "{id}\t{user}\t{amount}\tmerchant-{}\t2026-01-01 00:00:{:02}\n",
                id % 97,
                id % 60
            )
            .as_bytes(),
        );
    }
    out
}

async fn copy_rows(client: &Client, table: &str, from: i64, to: i64) -> Duration {
    let data = rows_text(from, to);
    let start = Instant::now();
    let sink = client
        .copy_in(&format!("COPY {table} FROM STDIN"))
        .await
        .expect("copy in");
    futures::pin_mut!(sink);
    for chunk in data.chunks(64 * 1024) {
        sink.send(bytes::Bytes::copy_from_slice(chunk))
            .await
            .expect("copy data");
    }
    let n = sink.finish().await.expect("copy done");
    assert_eq!(n as i64, to - from);
    start.elapsed()
}

struct Latency {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

struct Figures {
    pk: Latency,
    view_index: Latency,
    view_key: Latency,
    load_rows_per_s: f64,
}

/// Runs `lookup` with warm-up, then times it over pseudo-random ids below `ROWS`; `check`
/// verifies each answer's first column for its id.
async fn time_lookups(
    client: &Client,
    lookup: &tokio_postgres::Statement,
    check: impl Fn(i64, &tokio_postgres::Row),
) -> Latency {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..WARMUP {
        let id = (rng.next() % ROWS as u64) as i64;
        client.query_one(lookup, &[&id]).await.expect("lookup");
    }
    let mut latencies = Vec::with_capacity(LOOKUPS);
    for _ in 0..LOOKUPS {
        let id = (rng.next() % ROWS as u64) as i64;
        let start = Instant::now();
        let row = client.query_one(lookup, &[&id]).await.expect("lookup");
        latencies.push(start.elapsed());
        check(id, &row);
    }
    latencies.sort();
    let total: Duration = latencies.iter().sum();
    Latency {
        p50: latencies[LOOKUPS / 2],
        p99: latencies[LOOKUPS * 99 / 100],
        mean: total / LOOKUPS as u32,
    }
}

async fn measure(name: &str, conn: &str, augur: bool) -> Figures {
    let client = connect(conn).await;
    let ddl = "(id BIGINT PRIMARY KEY, user_id BIGINT, amount DOUBLE PRECISION, merchant TEXT, ts TIMESTAMP)";
    // Events have no key; in Augur they are appended, as a stream of events is.
    let events = if augur {
        "(id BIGINT, user_id BIGINT, amount DOUBLE PRECISION, merchant TEXT, ts TIMESTAMP) APPEND ONLY"
    } else {
        "(id BIGINT, user_id BIGINT, amount DOUBLE PRECISION, merchant TEXT, ts TIMESTAMP)"
    };
    client
        .batch_execute(&format!(
            "DROP MATERIALIZED VIEW IF EXISTS bench_features; \
             DROP MATERIALIZED VIEW IF EXISTS bench_keyed; DROP TABLE IF EXISTS bench_events; \
             DROP TABLE IF EXISTS bench; DROP TABLE IF EXISTS bench_load; \
             CREATE TABLE bench {ddl}; CREATE TABLE bench_load {ddl}; CREATE TABLE bench_events {events}"
        ))
        .await
        .expect("create tables");

    let load = copy_rows(&client, "bench_load", 0, LOAD_ROWS).await;
    let load_rows_per_s = LOAD_ROWS as f64 / load.as_secs_f64();
    copy_rows(&client, "bench", 0, ROWS).await;

    let lookup = client
        .prepare("SELECT user_id, amount, merchant FROM bench WHERE id = $1")
        .await
        .expect("prepare");
    let pk = time_lookups(&client, &lookup, |id, row| {
        assert_eq!(row.get::<_, i64>(0), id % 10_007);
    })
    .await;

    copy_rows(&client, "bench_events", 0, ROWS).await;
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW bench_features AS \
             SELECT id AS txn_id, user_id, amount * 2 AS doubled, merchant FROM bench_events",
        )
        .await
        .expect("create view");
    if augur {
        client.batch_execute("FLUSH").await.expect("flush");
    }
    client
        .batch_execute("CREATE INDEX bench_features_txn ON bench_features (txn_id)")
        .await
        .expect("create index");
    let by_txn = client
        .prepare("SELECT user_id, doubled, merchant FROM bench_features WHERE txn_id = $1")
        .await
        .expect("prepare");
    let view_index = time_lookups(&client, &by_txn, |id, row| {
        assert_eq!(row.get::<_, i64>(0), id % 10_007);
    })
    .await;

    // The same view with its key declared: Augur stores it by the key; PostgreSQL's
    // equivalent is a unique index on the materialized view.
    let keyed = "SELECT id AS txn_id, user_id, amount * 2 AS doubled, merchant FROM bench_events";
    let create = if augur {
        format!(
            "CREATE MATERIALIZED VIEW bench_keyed WITH (primary_key = 'txn_id') AS {keyed}; FLUSH"
        )
    } else {
        format!(
            "CREATE MATERIALIZED VIEW bench_keyed AS {keyed}; \
             CREATE UNIQUE INDEX bench_keyed_txn ON bench_keyed (txn_id)"
        )
    };
    client
        .batch_execute(&create)
        .await
        .expect("create keyed view");
    let by_key = client
        .prepare("SELECT user_id, doubled, merchant FROM bench_keyed WHERE txn_id = $1")
        .await
        .expect("prepare");
    let view_key = time_lookups(&client, &by_key, |id, row| {
        assert_eq!(row.get::<_, i64>(0), id % 10_007);
    })
    .await;

    let figures = Figures {
        pk,
        view_index,
        view_key,
        load_rows_per_s,
    };
    eprintln!(
        "{name}: lookup p50 {:?} p99 {:?} mean {:?}; view index p50 {:?} p99 {:?} mean {:?}; view key p50 {:?} p99 {:?}; COPY {:.0} rows/s",
        figures.pk.p50,
        figures.pk.p99,
        figures.pk.mean,
        figures.view_index.p50,
        figures.view_index.p99,
        figures.view_index.mean,
        figures.view_key.p50,
        figures.view_key.p99,
        figures.load_rows_per_s
    );
    figures
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we do not use.
    let augur = Augur::start(&[]);
    let augur_figures = measure("augur", &augur.conn_str(), true).await;
    let pg = match std::env::var("AUGUR_BENCH_PG") {
        Ok(conn) => Some(measure("postgresql", &conn, false).await),
        Err(_) => None,
    };

    println!(
        "\n| system | lookup p50 | lookup p99 | lookup mean | view index p50 | view index p99 | view index mean | view key p50 | view key p99 | COPY rows/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let row = |name: &str, f: &Figures| {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |",
            us(f.pk.p50),
            us(f.pk.p99),
            us(f.pk.mean),
            us(f.view_index.p50),
            us(f.view_index.p99),
            us(f.view_index.mean),
            us(f.view_key.p50),
            us(f.view_key.p99),
            f.load_rows_per_s
        )
    };
    row("Augur", &augur_figures);
    println!(
        "\nAugur view index / Augur primary key: p50 {:.2}×, p99 {:.2}×; view key / primary key: p50 {:.2}×, p99 {:.2}×",
        augur_figures.view_index.p50.as_secs_f64() / augur_figures.pk.p50.as_secs_f64(),
        augur_figures.view_index.p99.as_secs_f64() / augur_figures.pk.p99.as_secs_f64(),
        augur_figures.view_key.p50.as_secs_f64() / augur_figures.pk.p50.as_secs_f64(),
        augur_figures.view_key.p99.as_secs_f64() / augur_figures.pk.p99.as_secs_f64(),
    );
    if let Some(pg) = &pg {
        row("PostgreSQL 15", pg);
        println!(
            "\nAugur / PostgreSQL: lookup p50 {:.2}×, p99 {:.2}×; view index p50 {:.2}×, p99 {:.2}×; view key p50 {:.2}×, p99 {:.2}×; COPY throughput {:.2}×",
            augur_figures.pk.p50.as_secs_f64() / pg.pk.p50.as_secs_f64(),
            augur_figures.pk.p99.as_secs_f64() / pg.pk.p99.as_secs_f64(),
            augur_figures.view_index.p50.as_secs_f64() / pg.view_index.p50.as_secs_f64(),
            augur_figures.view_index.p99.as_secs_f64() / pg.view_index.p99.as_secs_f64(),
            augur_figures.view_key.p50.as_secs_f64() / pg.view_key.p50.as_secs_f64(),
            augur_figures.view_key.p99.as_secs_f64() / pg.view_key.p99.as_secs_f64(),
            augur_figures.load_rows_per_s / pg.load_rows_per_s,
        );
    } else {
        println!("\n(AUGUR_BENCH_PG not set: PostgreSQL not measured; run benches/run.sh)");
    }
}
