//! Streaming aggregation throughput: a `datagen` source at full speed into
//! `SELECT user_id, count(*), sum(amount), max(amount) FROM s GROUP BY user_id`, with its state in
//! RocksDB, at 100k and at 10M distinct keys.
//!
//! The figure is events per CPU-second of the server process (user + sys, from
//! `/proc/<pid>/stat`) from CREATE MATERIALIZED VIEW until FLUSH returns — FLUSH waits until the
//! bounded source is read to its end and the last epoch is committed. The reference, in the same
//! run on the same rows, is the same query run once as a batch query by DataFusion inside the
//! same server (`SELECT ... FROM s GROUP BY user_id` over the source, whose rows are generated
//! again for the scan): the cost of computing the answer once, against keeping it current. A
//! second reference is DuckDB (from `.venv`, one thread) computing the same aggregate once over
//! as many events with the same distribution of keys, generated inside DuckDB. The streaming
//! reference is Pathway (from `.venv`, one thread) keeping the same GROUP BY up to date over as
//! many events, pushed through its Python connector and committed as often (in events) as
//! Augur's epochs committed in the same run (`benches/pathway_groupby.py`).
//!
//! Run with `benches/run.sh streaming` (release build). `AUGUR_BENCH_SCALE=0.25` scales the event
//! counts; `AUGUR_BENCH_KEYS=100000` runs only the runs with that many keys.

mod common;

use std::time::Instant;

use common::{Augur, connect, cpu_seconds, dir_mib, rss_mib};

struct Run {
    epoch_ms: u64,
    keys: u64,
    events: u64,
    cpu: f64,
    wall: f64,
    batch_cpu: f64,
    batch_wall: f64,
    duckdb_cpu: Option<f64>,
    pathway_cpu: Option<f64>,
    rss: f64,
    disk: f64,
}

async fn measure(keys: u64, events: u64, epoch_ms: u64) -> Run {
    let augur = Augur::start(&["--epoch-ms", &epoch_ms.to_string()]);
    let pid = augur.child.id();
    let client = connect(&augur.conn_str()).await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE s (id BIGINT, user_id BIGINT, amount DOUBLE PRECISION, ts TIMESTAMP)
             WITH (connector = 'datagen', datagen.rows.per.second = '1000000000000',
                   datagen.rows = '{events}', fields.id.kind = 'sequence',
                   fields.user_id.min = '1', fields.user_id.max = '{keys}',
                   fields.amount.min = '0', fields.amount.max = '1000', fields.amount.seed = '7')"
        ))
        .await
        .unwrap();
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW per_user AS
             SELECT user_id, count(*) AS n, sum(amount) AS total, max(amount) AS top
             FROM s GROUP BY user_id;
             FLUSH",
        )
        .await
        .unwrap();
    let (cpu, wall) = (cpu_seconds(pid) - cpu0, t0.elapsed().as_secs_f64());
    let rows: i64 = client
        .query_one("SELECT count(*) FROM per_user", &[])
        .await
        .unwrap()
        .get(0);
    let n: i64 = client
        .query_one("SELECT sum(n) FROM per_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as u64, events, "the view counted every event once");
    assert!(rows as u64 <= keys);
    let (cpu1, t1) = (cpu_seconds(pid), Instant::now());
    let batch = client
        .query(
            "SELECT user_id, count(*), sum(amount), max(amount) FROM s GROUP BY user_id",
            &[],
        )
        .await
        .unwrap();
    let (batch_cpu, batch_wall) = (cpu_seconds(pid) - cpu1, t1.elapsed().as_secs_f64());
    assert_eq!(
        batch.len() as i64,
        rows,
        "batch and view have the same groups"
    );
    let duckdb_cpu = common::duckdb_seconds(&format!(
        "SELECT count(*) FROM (SELECT user_id, count(*), sum(amount), max(amount) \
         FROM (SELECT 1 + hash(i) % {keys} AS user_id, (hash(i + {events}) % 1000000) / 1000.0 AS amount \
               FROM range({events}) AS t(i)) GROUP BY user_id)"
    ));
    // Pathway commits as many events at a time as Augur's epochs held.
    let per_commit = ((events as f64 / wall) * epoch_ms as f64 / 1000.0).max(1.0) as u64;
    let pathway_cpu = pathway(events, keys, per_commit);
    Run {
        duckdb_cpu,
        pathway_cpu,
        epoch_ms,
        keys,
        events,
        cpu,
        wall,
        batch_cpu,
        batch_wall,
        rss: rss_mib(pid),
        disk: dir_mib(augur.dir.path()),
    }
}

/// Events per CPU-second, or why there is no figure.
fn per_cpu(events: u64, cpu: Option<f64>) -> String {
    cpu.map_or("not measured".into(), |cpu| {
        format!("{:.0}", events as f64 / cpu)
    })
}

/// Pathway's CPU seconds for the GROUP BY over `events` events, committed every `per_commit`;
/// `None` (said on stderr) when `.venv` has no pathway.
fn pathway(events: u64, keys: u64, per_commit: u64) -> Option<f64> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("benches/pathway_groupby.py"))
        .args([events, keys, per_commit].map(|n| n.to_string()))
        .env("PATHWAY_THREADS", "1")
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("pathway: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [cpu, _groups, counted] = fields[..] else {
        eprintln!("pathway: unexpected output {text:?}");
        return None;
    };
    assert_eq!(
        counted,
        events.to_string(),
        "Pathway counted every event once"
    );
    cpu.parse().ok()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let scale = common::scale();
    let small = (10_000_000.0 * scale) as u64;
    let large = (20_000_000.0 * scale) as u64;
    let runs = [
        (100_000u64, small, 100u64),
        (100_000, small, 1000),
        (10_000_000, large, 100),
        (10_000_000, large, 1000),
    ];
    println!(
        "| keys | epoch | events | incremental events/CPU-s | wall events/s | CPU s | batch events/CPU-s | batch wall s | incremental / batch | DuckDB batch events/CPU-s | Pathway events/CPU-s | peak RSS | data dir |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    // AUGUR_BENCH_KEYS=10000000 runs only the runs with that many keys.
    let only: Option<u64> = std::env::var("AUGUR_BENCH_KEYS")
        .ok()
        .and_then(|s| s.parse().ok());
    for (keys, events, epoch_ms) in runs {
        if only.is_some_and(|k| k != keys) {
            continue;
        }
        let run = runtime.block_on(measure(keys, events, epoch_ms));
        let inc = run.events as f64 / run.cpu;
        let batch = run.events as f64 / run.batch_cpu;
        println!(
            "| {} | {} ms | {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.2} | {:.2}× | {} | {} | {:.0} MiB | {:.0} MiB |",
            run.keys,
            run.epoch_ms,
            run.events,
            inc,
            run.events as f64 / run.wall,
            run.cpu,
            batch,
            run.batch_wall,
            inc / batch,
            per_cpu(run.events, run.duckdb_cpu),
            per_cpu(run.events, run.pathway_cpu),
            run.rss,
            run.disk,
        );
    }
}
