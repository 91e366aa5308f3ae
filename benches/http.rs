//! The HTTP API's latency, one client on loopback with a kept-alive connection, and in the same
//! run the same work over pgwire (prepared statements through tokio-postgres) as the reference:
//!
//! - a point read: `GET /v1/views/scores?key=k` against `SELECT * FROM scores WHERE user_id =
//!   $1`, random keys of a view of 100,000 rows;
//! - a score: `POST /v1/predict/gbdt` with four inputs against `SELECT PREDICT('gbdt', $1, $2,
//!   $3, $4)` (`tests/models/gbc100.onnx`, 100 trees);
//! - an ingest: `POST /ingest/clicks` of one JSON object (answered once durable: one synced
//!   write) against `INSERT INTO t VALUES ($1, $2)` into a table (also one synced write).
//!
//! Rounds alternate between HTTP and pgwire so that a stall of the machine shows in both.
//! Run with `benches/run.sh http`.

mod common;

use std::time::{Duration, Instant};

use common::{Augur, Rng, connect, percentile, us};

const USERS: i64 = 100_000;
const WARMUP: usize = 500;
const REQUESTS: usize = 2_000;
const ROUNDS: usize = 3;

fn row(name: &str, via: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "| {name} | {via} | {} | {} | {} |",
        us(percentile(&times, 0.5)),
        us(percentile(&times, 0.99)),
        us(percentile(&times, 0.999)),
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let augur = Augur::start(&[]);
    let client = connect(&augur.conn_str()).await;
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/models/gbc100.onnx");
    client
        .batch_execute(&format!(
            "CREATE MODEL gbdt FROM '{model}'; \
             CREATE TABLE f (user_id BIGINT PRIMARY KEY, a DOUBLE PRECISION, b DOUBLE PRECISION, \
             c DOUBLE PRECISION, d DOUBLE PRECISION); \
             INSERT INTO f SELECT i, i % 100, i % 7, i % 13, i % 1000 \
             FROM generate_series(1, {USERS}) AS s(i); \
             CREATE MATERIALIZED VIEW scores AS \
             SELECT user_id, a, PREDICT('gbdt', a, b, c, d) AS score FROM f; \
             CREATE SOURCE clicks (id BIGINT, user_id BIGINT) WITH (connector = 'webhook') \
             FORMAT PLAIN ENCODE JSON; \
             CREATE TABLE t (id BIGINT, user_id BIGINT) APPEND ONLY; \
             FLUSH;"
        ))
        .await
        .expect("setup");
    let base = http_base(&augur);
    let web = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let lookup = client
        .prepare("SELECT * FROM scores WHERE user_id = $1")
        .await
        .unwrap();
    let score = client
        .prepare(
            "SELECT PREDICT('gbdt', $1::DOUBLE PRECISION, $2::DOUBLE PRECISION, \
             $3::DOUBLE PRECISION, $4::DOUBLE PRECISION)",
        )
        .await
        .unwrap();
    let insert = client
        .prepare("INSERT INTO t VALUES ($1, $2)")
        .await
        .unwrap();

    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut times: [Vec<Duration>; 6] = Default::default();
    let mut id = 0i64;
    // A warm-up, then the rounds that count.
    for (count, counted) in
        std::iter::once((WARMUP, false)).chain((0..ROUNDS).map(|_| (REQUESTS, true)))
    {
        for _ in 0..count {
            let key = (rng.next() % USERS as u64) as i64 + 1;
            let inputs = [
                (rng.next() % 100) as f64,
                (rng.next() % 7) as f64,
                (rng.next() % 13) as f64,
                (rng.next() % 1000) as f64,
            ];
            id += 1;
            let read = timed(web.get(format!("{base}/v1/views/scores?key={key}"))).await;
            let predicted = timed(web.post(format!("{base}/v1/predict/gbdt")).body(format!(
                "[{}, {}, {}, {}]",
                inputs[0], inputs[1], inputs[2], inputs[3]
            )))
            .await;
            let ingested = timed(
                web.post(format!("{base}/ingest/clicks"))
                    .body(format!("{{\"id\": {id}, \"user_id\": {key}}}")),
            )
            .await;
            let t = Instant::now();
            let rows = client.query(&lookup, &[&key]).await.unwrap();
            assert_eq!(rows.len(), 1);
            let pg_read = t.elapsed();
            let t = Instant::now();
            client
                .query_one(&score, &[&inputs[0], &inputs[1], &inputs[2], &inputs[3]])
                .await
                .unwrap();
            let pg_predicted = t.elapsed();
            let t = Instant::now();
            client.execute(&insert, &[&id, &key]).await.unwrap();
            let pg_inserted = t.elapsed();
            if counted {
                let all = [
                    read,
                    pg_read,
                    predicted,
                    pg_predicted,
                    ingested,
                    pg_inserted,
                ];
                for (slot, d) in all.into_iter().enumerate() {
                    times[slot].push(d);
                }
            }
        }
    }
    println!("| request | via | p50 | p99 | p99.9 |");
    println!("|---|---|---|---|---|");
    let [
        read,
        pg_read,
        predicted,
        pg_predicted,
        ingested,
        pg_inserted,
    ] = times;
    row("point read of a view", "HTTP GET /v1/views", read);
    row("point read of a view", "pgwire, prepared", pg_read);
    row("PREDICT, 4 inputs", "HTTP POST /v1/predict", predicted);
    row("PREDICT, 4 inputs", "pgwire, prepared", pg_predicted);
    row("one event, durable", "HTTP POST /ingest", ingested);
    row("one row, durable", "pgwire INSERT, prepared", pg_inserted);
    println!();
    println!(
        "{} requests of each kind over {ROUNDS} rounds, one client, loopback.",
        REQUESTS * ROUNDS
    );
}

/// How long `request` takes to answer 200 with its whole body.
async fn timed(request: reqwest::RequestBuilder) -> Duration {
    let t = Instant::now();
    let response = request.send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.bytes().await.unwrap();
    t.elapsed()
}

/// The HTTP API's base URL.
fn http_base(augur: &Augur) -> String {
    format!("http://{}", augur.http)
}
