//! Nexmark over the in-process generator, one query at a time, and per-user fraud features over
//! 1 h, 24 h and 7 d against one 1 h window.
//!
//! Each query runs in a fresh server: three `nexmark` sources splitting one bounded stream of
//! events (`nexmark.event.num`, read as fast as possible, watermark 4 s behind `date_time`, as
//! in RisingWave's scripts), then `CREATE MATERIALIZED VIEW` with RisingWave's text and `FLUSH`,
//! which returns once the sources are read to their end and the last epoch is committed.
//! **events/CPU-s** is the stream's events divided by the server's CPU time (user + sys, from
//! `/proc/<pid>/stat`) over that span; the sources a query does not read cost nothing, so
//! **rows/CPU-s** counts the rows of the sources it reads. The reference, in the same run, is
//! the same query run once as a batch query by DataFusion in the same server over the same rows
//! (generated again for the scan), whose row count must equal the view's. While the view is
//! built, the state it holds (`augur_catalog.view_state`) and the data directory are sampled:
//! bounded state stays flat as the events go by.
//!
//! The ceiling for queries over bids: the `nexmark` crate's generator alone, in this process on
//! one thread, producing the same bids (`generator`).
//!
//! Run with `benches/run.sh nexmark` (release build). `AUGUR_BENCH_SCALE=0.1` scales the event
//! counts; `AUGUR_BENCH_ONLY=q5` runs one query (`fraud` for the fraud features, `generator`
//! for the generator alone).

mod common;

use std::time::{Duration, Instant};

use common::{Augur, connect, cpu_seconds, dir_mib, rss_mib};

const Q0: &str = "SELECT auction, bidder, price, date_time FROM bid";
const Q1: &str = "SELECT auction, bidder, 0.908 * price as price, date_time FROM bid";
const Q2: &str = "SELECT auction, price FROM bid
WHERE auction = 1007 OR auction = 1020 OR auction = 2001 OR auction = 2019 OR auction = 2087";
const Q5: &str = "SELECT AuctionBids.auction, AuctionBids.num
FROM (
    SELECT bid.auction, count(*) AS num, window_start AS starttime
    FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
    GROUP BY window_start, bid.auction
) AS AuctionBids
JOIN (
    SELECT max(CountBids.num) AS maxn, CountBids.starttime_c
    FROM (
        SELECT count(*) AS num, window_start AS starttime_c
        FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
        GROUP BY bid.auction, window_start
    ) AS CountBids
    GROUP BY CountBids.starttime_c
) AS MaxBids
ON AuctionBids.starttime = MaxBids.starttime_c AND AuctionBids.num >= MaxBids.maxn";
const Q7: &str = "SELECT B.auction, B.price, B.bidder, B.date_time
FROM bid B
JOIN (
    SELECT MAX(price) AS maxprice, window_end as date_time
    FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND)
    GROUP BY window_end
) B1 ON B.price = B1.maxprice
WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10' SECOND AND B1.date_time";
const Q8: &str = "SELECT P.id, P.name, P.starttime
FROM (
    SELECT id, name, window_start AS starttime, window_end AS endtime
    FROM TUMBLE(person, date_time, INTERVAL '10' SECOND)
    GROUP BY id, name, window_start, window_end
) P
JOIN (
    SELECT seller, window_start AS starttime, window_end AS endtime
    FROM TUMBLE(auction, date_time, INTERVAL '10' SECOND)
    GROUP BY seller, window_start, window_end
) A ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime";

/// One per-user window of the fraud features.
fn fraud_window(name: &str, span: &str) -> String {
    format!(
        "{name} AS (PARTITION BY user_id ORDER BY ts RANGE BETWEEN INTERVAL '{span}' PRECEDING AND CURRENT ROW)"
    )
}

/// count, sum and avg of `amount` over each named window, per transaction; and the batch
/// query that counts its rows with every feature computed (a bare count would let DataFusion
/// drop the window functions).
fn fraud_query(windows: &[(&str, &str)]) -> (String, String) {
    let features: Vec<String> = windows
        .iter()
        .map(|(w, _)| {
            format!(
                "count(*) OVER {w} AS n_{w}, sum(amount) OVER {w} AS s_{w}, avg(amount) OVER {w} AS a_{w}"
            )
        })
        .collect();
    let defs: Vec<String> = windows.iter().map(|(w, s)| fraud_window(w, s)).collect();
    let query = format!(
        "SELECT id, user_id, {} FROM tx WINDOW {}",
        features.join(", "),
        defs.join(", ")
    );
    let all: Vec<String> = windows
        .iter()
        .map(|(w, _)| format!("n_{w} + s_{w} + a_{w}"))
        .collect();
    let batch = format!(
        "SELECT count(*) FROM ({query}) AS q WHERE {} IS NOT NULL",
        all.join(" + ")
    );
    (query, batch)
}

/// A sample while the view is built: seconds since CREATE, rows read, state entries and bytes,
/// data directory MiB.
type Sample = (f64, i64, i64, i64, f64);

struct Run {
    name: String,
    events: u64,
    rows: i64,
    cpu: f64,
    wall: f64,
    view_rows: i64,
    batch_cpu: f64,
    samples: Vec<Sample>,
    rss: f64,
    disk: f64,
}

/// Builds view `name` over `sources` (statements run first) and measures it; `read` are the
/// sources whose rows it reads.
async fn measure(
    name: &str,
    sources: &str,
    (query, batch): (&str, &str),
    read: &[&str],
    events: u64,
) -> Run {
    let augur = Augur::start(&[]);
    let pid = augur.child.id();
    let client = connect(&augur.conn_str()).await;
    client.batch_execute(sources).await.unwrap();
    let watcher = connect(&augur.conn_str()).await;
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    let statements = format!("CREATE MATERIALIZED VIEW v AS {query}; FLUSH");
    let create = client.batch_execute(&statements);
    tokio::pin!(create);
    let list = read
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut samples = Vec::new();
    loop {
        tokio::select! {
            done = &mut create => { done.unwrap(); break; }
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                let row = watcher
                    .query_one(
                        &format!(
                            "SELECT (SELECT sum(rows_ingested) FROM augur_catalog.source_stats WHERE source_name IN ({list}))::bigint,
                                    state_entries, state_bytes
                             FROM augur_catalog.view_state WHERE view_name = 'v'"
                        ),
                        &[],
                    )
                    .await;
                if let Ok(row) = row {
                    samples.push((
                        t0.elapsed().as_secs_f64(),
                        row.get::<_, Option<i64>>(0).unwrap_or(0),
                        row.get(1),
                        row.get(2),
                        dir_mib(augur.dir.path()),
                    ));
                }
            }
        }
    }
    let (cpu, wall) = (cpu_seconds(pid) - cpu0, t0.elapsed().as_secs_f64());
    let state: (i64, i64) = {
        let row = client
            .query_one(
                "SELECT state_entries, state_bytes FROM augur_catalog.view_state WHERE view_name = 'v'",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    let rows: i64 = client
        .query_one(
            &format!(
                "SELECT sum(rows_ingested)::bigint FROM augur_catalog.source_stats WHERE source_name IN ({list})"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    samples.push((wall, rows, state.0, state.1, dir_mib(augur.dir.path())));
    let view_rows: i64 = client
        .query_one("SELECT count(*) FROM v", &[])
        .await
        .unwrap()
        .get(0);
    let cpu1 = cpu_seconds(pid);
    let batch_rows: i64 = client.query_one(batch, &[]).await.unwrap().get(0);
    let batch_cpu = cpu_seconds(pid) - cpu1;
    assert_eq!(
        view_rows, batch_rows,
        "{name}: the view has the batch query's rows"
    );
    Run {
        name: name.to_string(),
        events,
        rows,
        cpu,
        wall,
        view_rows,
        batch_cpu,
        samples,
        rss: rss_mib(pid),
        disk: dir_mib(augur.dir.path()),
    }
}

fn nexmark_sources(events: u64) -> String {
    let with = |table: &str| {
        format!(
            "WITH (connector = 'nexmark', nexmark.table.type = '{table}', nexmark.event.num = '{events}',
                   nexmark.min.event.gap.in.ns = '0')"
        )
    };
    format!(
        "CREATE SOURCE person (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) {};
         CREATE SOURCE auction (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) {};
         CREATE SOURCE bid (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) {};",
        with("Person"),
        with("Auction"),
        with("Bid")
    )
}

fn fraud_source(events: u64) -> String {
    format!(
        "CREATE SOURCE tx (id BIGINT, user_id BIGINT, amount DOUBLE PRECISION, ts TIMESTAMP,
           WATERMARK FOR ts AS ts - INTERVAL '5 seconds')
         WITH (connector = 'datagen', datagen.rows.per.second = '1000000000000',
               datagen.rows = '{events}', fields.id.kind = 'sequence',
               fields.user_id.min = '1', fields.user_id.max = '100000',
               fields.amount.min = '0', fields.amount.max = '1000', fields.amount.seed = '7',
               fields.ts.step = '1 second')"
    )
}

fn print(runs: &[Run]) {
    println!(
        "| query | events | rows read | events/CPU-s | rows/CPU-s | wall events/s | CPU s | batch rows/CPU-s | view rows | state at end | peak RSS | data dir |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in runs {
        let last = r.samples.last().copied().unwrap_or_default();
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.0} | {} | {} entries, {:.1} MiB | {:.0} MiB | {:.0} MiB |",
            r.name,
            r.events,
            r.rows,
            r.events as f64 / r.cpu,
            r.rows as f64 / r.cpu,
            r.events as f64 / r.wall,
            r.cpu,
            r.rows as f64 / r.batch_cpu,
            r.view_rows,
            last.2,
            last.3 as f64 / (1024.0 * 1024.0),
            r.rss,
            r.disk,
        );
    }
    println!();
    println!(
        "State while the view is built (seconds, rows read, state entries, state MiB, data dir MiB):"
    );
    println!();
    for r in runs {
        let samples: Vec<String> = r
            .samples
            .iter()
            .map(|(t, rows, n, bytes, disk)| {
                format!(
                    "{t:.0}s {rows} {n} {:.1} {disk:.0}",
                    *bytes as f64 / (1024.0 * 1024.0)
                )
            })
            .collect();
        println!("- {}: {}", r.name, samples.join(" · "));
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let scale = common::scale();
    let only = std::env::var("AUGUR_BENCH_ONLY").ok();
    let events = (10_000_000.0 * scale) as u64;
    let fraud_events = (2_000_000.0 * scale) as u64;
    let queries: [(&str, &str, &[&str]); 6] = [
        ("q0", Q0, &["bid"]),
        ("q1", Q1, &["bid"]),
        ("q2", Q2, &["bid"]),
        ("q5", Q5, &["bid"]),
        ("q7", Q7, &["bid"]),
        ("q8", Q8, &["person", "auction"]),
    ];
    let mut runs = Vec::new();
    for (name, query, read) in queries {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        eprintln!("==> {name}");
        let batch = format!("SELECT count(*) FROM ({query}) AS q");
        runs.push(runtime.block_on(measure(
            name,
            &nexmark_sources(events),
            (query, &batch),
            read,
            events,
        )));
    }
    if only.as_deref().is_none_or(|o| o == "fraud") {
        let single = fraud_query(&[("h", "1 hour")]);
        let triple = fraud_query(&[("h", "1 hour"), ("d", "24 hours"), ("w", "7 days")]);
        for (name, (query, batch)) in [("fraud 1 h", single), ("fraud 1 h + 24 h + 7 d", triple)] {
            eprintln!("==> {name}");
            runs.push(runtime.block_on(measure(
                name,
                &fraud_source(fraud_events),
                (&query, &batch),
                &["tx"],
                fraud_events,
            )));
        }
    }
    print(&runs);
    if only.as_deref().is_none_or(|o| o == "generator") {
        eprintln!("==> generator");
        let (bids, seconds) = generator_alone(events);
        println!(
            "\nThe generator alone (one thread, bids of {events} events, nothing converted or \
             stored): {bids} bids in {seconds:.2} s, {:.0} bids/s, {:.0} events/s.",
            bids as f64 / seconds,
            events as f64 / seconds
        );
    }
}

/// Generates the bids of the first `events` events with the `nexmark` crate, as the `nexmark`
/// source does, and does nothing else with them: how many, and the seconds it took.
fn generator_alone(events: u64) -> (u64, f64) {
    use nexmark::EventGenerator;
    use nexmark::config::NexmarkConfig;
    use nexmark::event::{Event, EventType};
    let mut generator =
        EventGenerator::new(NexmarkConfig::default()).with_type_filter(EventType::Bid);
    let start = Instant::now();
    let (mut bids, mut bytes) = (0u64, 0usize);
    // The bids among the first `events` events: the generator knows each one's place.
    while generator.global_offset() < events {
        if let Some(Event::Bid(bid)) = generator.next() {
            bytes += bid.extra.len() + bid.url.len() + bid.channel.len();
        }
        bids += 1;
    }
    std::hint::black_box(bytes);
    (bids, start.elapsed().as_secs_f64())
}
