//! Differential test of materialized views: seeded random inserts, updates and deletes over
//! three tables, and views covering every operator, some created before the data and some after.
//! After every FLUSH each view must hold exactly the rows its query gives when run as a batch
//! query by DataFusion over the same tables.
//!
//! `AUGUR_DIFF_CASES=1000 cargo test --test differential` runs more cases (default 3);
//! `AUGUR_DIFF_SEED=n` starts from another seed.

use std::collections::HashMap;

use augur::Config;
use augur::session::{Database, Output, Session};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::StreamExt;

/// Every view's query; the views at even positions are created before any data.
const VIEWS: &[&str] = &[
    "SELECT k, count(*) AS n, sum(v) AS sv, avg(v) AS av, min(v) AS mn, max(v) AS mx FROM a GROUP BY k",
    "SELECT count(*) AS n, sum(f) AS sf, min(s) AS ms, max(s) AS xs, count(v) AS cv FROM a",
    "SELECT k, count(DISTINCT s) AS ds, sum(DISTINCT v) AS sdv, avg(DISTINCT v) AS adv FROM a GROUP BY k",
    "SELECT k, stddev(f) AS sd, var_samp(f) AS var, stddev_pop(f) AS sdp, var_pop(f) AS vp FROM a GROUP BY k",
    "SELECT k, bool_and(b) AS ba, bool_or(b) AS bo FROM a GROUP BY k",
    "SELECT k, string_agg(s, ',' ORDER BY s) AS ss, array_agg(v ORDER BY v) AS vs FROM a GROUP BY k",
    "SELECT k, count(*) AS n FROM a GROUP BY k HAVING count(*) > 2",
    "SELECT a.id, a.v, b.w FROM a JOIN b ON a.k = b.k",
    "SELECT a.id, b.id AS bid FROM a LEFT JOIN b ON a.k = b.k AND a.v < b.w",
    "SELECT a.id, b.id AS bid, b.t FROM a RIGHT JOIN b ON a.id = b.id",
    "SELECT a.id, b.id AS bid, a.s, b.t FROM a FULL JOIN b ON a.id = b.id",
    "SELECT id, v FROM a UNION ALL SELECT id, w FROM b",
    "SELECT DISTINCT k, s FROM a",
    "SELECT id, v FROM a ORDER BY v DESC, id LIMIT 5",
    "SELECT id, v FROM a ORDER BY id LIMIT 3 OFFSET 2",
    "SELECT k, total FROM (SELECT k, sum(v) AS total FROM a GROUP BY k) AS sub WHERE total > 0",
    "WITH big AS (SELECT * FROM a WHERE v > 0) SELECT big.k, count(*) AS n FROM big JOIN b ON big.k = b.k GROUP BY big.k",
    "SELECT x, count(*) AS n, min(y) AS my FROM c GROUP BY x",
    "SELECT x, y FROM c WHERE x > 2",
    "SELECT id, upper(s) AS us, v * 2 + 1 AS v2, CASE WHEN f > 1 THEN 'hi' ELSE 'lo' END AS band FROM a",
    "SELECT a.k, count(*) AS n, max(b.w) AS mw, min(b.t) AS mt FROM a JOIN b ON a.k = b.k GROUP BY a.k",
    "SELECT id FROM a WHERE k IN (SELECT k FROM b WHERE w > 0)",
    "SELECT id FROM a WHERE NOT EXISTS (SELECT 1 FROM b WHERE b.id = a.id)",
    "SELECT k, sum(v) FILTER (WHERE b) AS sv, count(*) FILTER (WHERE s = 'x') AS nx FROM a GROUP BY k",
    "SELECT b.k, count(*) AS n, sum(b.w) AS sw FROM b GROUP BY b.k",
    "SELECT a.id, c.y FROM a JOIN c ON a.k = c.x",
    "SELECT s, count(*) AS n FROM a WHERE s IS NOT NULL GROUP BY s ORDER BY n DESC, s LIMIT 2",
    "SELECT k, s FROM a EXCEPT ALL SELECT k, t FROM b",
    "SELECT k FROM a INTERSECT ALL SELECT k FROM b",
];

/// Views over the append-only event table `e`, whose rows arrive out of order within its
/// watermark (late ones are dropped before any view or query sees them): per-event sliding
/// aggregates, OVER frames that recompute, sessions, and joins that delete rows under the
/// watermarks. The views at even positions are created before any event.
const EVENT_VIEWS: &[&str] = &[
    "SELECT id, u, ts, count(*) OVER (PARTITION BY u ORDER BY ts RANGE BETWEEN INTERVAL '10 seconds' PRECEDING AND CURRENT ROW) AS n10, \
     sum(amount) OVER (PARTITION BY u ORDER BY ts RANGE BETWEEN INTERVAL '10 seconds' PRECEDING AND CURRENT ROW) AS s10, \
     avg(n) OVER (PARTITION BY u ORDER BY ts RANGE BETWEEN INTERVAL '10 seconds' PRECEDING AND CURRENT ROW) AS a10, \
     min(amount) OVER (PARTITION BY u ORDER BY ts RANGE BETWEEN INTERVAL '1 minute' PRECEDING AND CURRENT ROW) AS mn60, \
     max(n) OVER (PARTITION BY u ORDER BY ts RANGE BETWEEN INTERVAL '1 minute' PRECEDING AND CURRENT ROW) AS mx60, \
     count(n) OVER (PARTITION BY u ORDER BY ts RANGE BETWEEN CURRENT ROW AND CURRENT ROW) AS peers \
     FROM e",
    "SELECT id, sum(n) OVER (ORDER BY ts RANGE BETWEEN INTERVAL '5 seconds' PRECEDING AND CURRENT ROW) AS s5 FROM e",
    "SELECT id, u, sum(amount) OVER (PARTITION BY u ORDER BY ts RANGE BETWEEN INTERVAL '5 seconds' PRECEDING AND INTERVAL '2 seconds' FOLLOWING) AS around, \
     row_number() OVER (PARTITION BY u ORDER BY ts, id) AS rn FROM e",
    "SELECT u, window_start, window_end, count(*) AS n, sum(amount) AS total FROM SESSION(e, ts, INTERVAL '3 seconds') GROUP BY u, window_start, window_end",
    "SELECT x.id, y.id AS yid FROM e x JOIN e y ON x.u = y.u AND y.ts BETWEEN x.ts - INTERVAL '4 seconds' AND x.ts",
    "SELECT window_start, u, count(*) AS n, max(amount) AS top FROM TUMBLE(e, ts, INTERVAL '10 seconds') GROUP BY window_start, u",
];

/// Views over views: `(name, query)`, created after all of the above.
const STACKED: &[(&str, &str)] = &[
    ("s0", "SELECT k, n FROM v0 WHERE n > 1"),
    ("s1", "SELECT count(*) AS groups, sum(n) AS rows FROM v0"),
    ("s2", "SELECT v7.id, v0.mx FROM v7 JOIN v0 ON v7.v = v0.mx"),
];

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn int_or_null(&mut self, lo: i64, hi: i64) -> String {
        if self.chance(10) {
            "NULL".into()
        } else {
            (lo + self.below((hi - lo + 1) as u64)).to_string()
        }
    }

    fn text_or_null(&mut self) -> String {
        match self.below(5) {
            0 => "NULL".into(),
            i => format!("'{}'", ["x", "y", "z", "w"][i as usize - 1]),
        }
    }

    fn float_or_null(&mut self) -> String {
        if self.chance(10) {
            "NULL".into()
        } else {
            // Quarters: sums of them are exact in binary, whatever the order.
            format!("{}", (self.below(41) - 20) as f64 * 0.25)
        }
    }

    fn bool_or_null(&mut self) -> &'static str {
        ["NULL", "true", "false"][self.below(3) as usize]
    }
}

/// One random write.
fn random_write(rng: &mut Rng) -> String {
    let id = rng.below(30);
    match rng.below(12) {
        0..=3 => format!(
            "INSERT INTO a VALUES ({id}, {}, {}, {}, {}, {}) ON CONFLICT (id) DO UPDATE SET k = excluded.k, v = excluded.v, f = excluded.f, s = excluded.s, b = excluded.b",
            rng.int_or_null(0, 4),
            rng.int_or_null(-10, 10),
            rng.float_or_null(),
            rng.text_or_null(),
            rng.bool_or_null()
        ),
        4 => format!(
            "UPDATE a SET v = v + 1, s = {} WHERE k = {}",
            rng.text_or_null(),
            rng.below(5)
        ),
        5 => format!("DELETE FROM a WHERE id % 7 = {}", rng.below(7)),
        6 | 7 => format!(
            "INSERT INTO b VALUES ({id}, {}, {}, {}) ON CONFLICT (id) DO NOTHING",
            rng.int_or_null(0, 4),
            rng.int_or_null(-10, 10),
            rng.text_or_null()
        ),
        8 => format!(
            "UPDATE b SET k = {}, w = w - 3 WHERE id % 5 = {}",
            rng.int_or_null(0, 4),
            rng.below(5)
        ),
        9 => format!("DELETE FROM b WHERE k = {}", rng.below(5)),
        10 => format!(
            "INSERT INTO c VALUES ({}, {}), ({}, {})",
            rng.int_or_null(0, 5),
            rng.text_or_null(),
            rng.int_or_null(0, 5),
            rng.text_or_null()
        ),
        _ => format!("DELETE FROM c WHERE x = {}", rng.below(6)),
    }
}

async fn run(db: &Database, sql: &str) -> Vec<RecordBatch> {
    let mut vars = HashMap::new();
    let conn = augur::session::ConnectionState::default();
    let mut session = Session::new(db, &mut vars, &conn);
    let mut batches = Vec::new();
    for statement in session.parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}")) {
        match session.run(statement).await {
            Ok(Output::Rows { mut stream, .. }) => {
                while let Some(batch) = stream.next().await {
                    batches.push(batch.unwrap_or_else(|e| panic!("{sql}: {e}")));
                }
            }
            Ok(_) => {}
            Err(e) => panic!("{sql}: {e}"),
        }
    }
    batches
}

/// A value of a result row: floats are compared with a tolerance, everything else as text.
#[derive(Debug, Clone)]
enum Value {
    Float(f64),
    Text(String),
}

impl Value {
    fn matches(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Float(a), Value::Float(b)) => {
                (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
            }
            (Value::Text(a), Value::Text(b)) => a == b,
            _ => false,
        }
    }
}

/// A column's values.
fn values(column: &dyn Array) -> Vec<Value> {
    if column.data_type() == &DataType::Float64 {
        let floats = column.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        return (0..floats.len())
            .map(|i| {
                if floats.is_null(i) {
                    Value::Text("NULL".into())
                } else {
                    Value::Float(floats.value(i))
                }
            })
            .collect();
    }
    let options = FormatOptions::default().with_null("NULL");
    let formatter = ArrayFormatter::try_new(column, &options).unwrap();
    (0..column.len())
        .map(|i| Value::Text(formatter.value(i).to_string()))
        .collect()
}

/// The rows of `batches`.
fn rows(batches: &[RecordBatch]) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for batch in batches {
        let columns: Vec<Vec<Value>> = batch.columns().iter().map(|c| values(c.as_ref())).collect();
        for i in 0..batch.num_rows() {
            out.push(columns.iter().map(|c| c[i].clone()).collect());
        }
    }
    out
}

/// Whether two bags of rows are equal, floats within a relative 1e-9.
fn same_rows(left: &[Vec<Value>], right: &[Vec<Value>]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    let mut unmatched: Vec<&Vec<Value>> = right.iter().collect();
    for row in left {
        let Some(at) = unmatched.iter().position(|other| {
            other.len() == row.len() && other.iter().zip(row).all(|(a, b)| a.matches(b))
        }) else {
            return false;
        };
        unmatched.swap_remove(at);
    }
    true
}

async fn check(db: &Database, created: &[(String, String)], context: &str) {
    run(db, "FLUSH").await;
    for (name, query) in created {
        let view = rows(&run(db, &format!("SELECT * FROM {name}")).await);
        let batch = rows(&run(db, query).await);
        assert!(
            same_rows(&view, &batch),
            "{context}: view {name} differs from its query\n  {query}\n  view: {view:?}\n  query: {batch:?}"
        );
    }
}

async fn case(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_data_dir(dir.path().join("data"));
    config.no_fsync = true;
    config.epoch_ms = 20;
    let db = Database::open(&config).await.unwrap();
    run(
        &db,
        "CREATE TABLE a (id INT PRIMARY KEY, k INT, v BIGINT, f DOUBLE PRECISION, s TEXT, b BOOLEAN);
         CREATE TABLE b (id INT PRIMARY KEY, k INT, w BIGINT, t TEXT);
         CREATE TABLE c (x INT, y TEXT);
         CREATE TABLE e (id INT, u INT, ts TIMESTAMP, amount DOUBLE PRECISION, n BIGINT,
                         WATERMARK FOR ts AS ts - INTERVAL '5 seconds') APPEND ONLY",
    )
    .await;
    // Event time in seconds: it moves forward, and rows come up to 8 s behind it (those more
    // than 5 s behind the largest so far are late).
    let mut clock: i64 = 100;
    let mut event_id = 0;
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut created: Vec<(String, String)> = Vec::new();
    let create = |i: usize| (format!("v{i}"), VIEWS[i].to_string());
    for i in (0..VIEWS.len()).step_by(2) {
        let (name, query) = create(i);
        run(&db, &format!("CREATE MATERIALIZED VIEW {name} AS {query}")).await;
        created.push((name, query));
    }
    let create_event = |i: usize| (format!("e{i}"), EVENT_VIEWS[i].to_string());
    for i in (0..EVENT_VIEWS.len()).step_by(2) {
        let (name, query) = create_event(i);
        run(&db, &format!("CREATE MATERIALIZED VIEW {name} AS {query}")).await;
        created.push((name, query));
    }
    for round in 0..12 {
        for _ in 0..8 {
            let write = random_write(&mut rng);
            if std::env::var("AUGUR_DIFF_TRACE").is_ok() {
                eprintln!("{write};");
            }
            run(&db, &write).await;
        }
        let mut events = Vec::new();
        for _ in 0..6 {
            event_id += 1;
            clock += rng.below(3);
            let ts = clock - rng.below(9);
            events.push(format!(
                "({event_id}, {}, TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '{ts} seconds', {}, {})",
                rng.below(4),
                rng.float_or_null(),
                rng.int_or_null(-10, 10)
            ));
        }
        // One statement per row: a row is judged against the watermark the rows before it set.
        for row in events {
            run(&db, &format!("INSERT INTO e VALUES {row}")).await;
        }
        if round == 4 {
            for i in (1..VIEWS.len()).step_by(2) {
                let (name, query) = create(i);
                run(&db, &format!("CREATE MATERIALIZED VIEW {name} AS {query}")).await;
                created.push((name, query));
            }
            for i in (1..EVENT_VIEWS.len()).step_by(2) {
                let (name, query) = create_event(i);
                run(&db, &format!("CREATE MATERIALIZED VIEW {name} AS {query}")).await;
                created.push((name, query));
            }
            for (name, query) in STACKED {
                run(&db, &format!("CREATE MATERIALIZED VIEW {name} AS {query}")).await;
                created.push((name.to_string(), query.to_string()));
            }
        }
        check(&db, &created, &format!("seed {seed}, round {round}")).await;
    }
    db.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_equal_their_queries_run_as_batch_queries() {
    let cases: u64 = std::env::var("AUGUR_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let first: u64 = std::env::var("AUGUR_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for seed in first..first + cases {
        case(seed).await;
    }
}
