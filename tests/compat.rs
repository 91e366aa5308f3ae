//! Augur and PostgreSQL 15 side by side: every statement of a script runs on both, and the
//! answers are compared. `scripts/test.sh` starts the reference server (`AUGUR_COMPAT_PG`) and
//! fetches PostgreSQL's regression scripts (`AUGUR_PG_REGRESS`); without them these tests fail
//! and say so.
//!
//! Each statement gets one outcome:
//! - `same`: the same rows (in the same order where the query has an ORDER BY), the same column
//!   names, or the same command result;
//! - `names`: the same rows under different column names;
//! - `error`: PostgreSQL answers, Augur refuses (a loud difference);
//! - `wrong`: both answer, differently (a silent one);
//! - `order`: the same rows in another order although the query has an ORDER BY;
//! - `accepts`: PostgreSQL refuses, Augur answers;
//! - `refused`: both refuse;
//! - `hang`: Augur did not answer within the time limit;
//! - `plan`: both explained a query (each system's own plan, not compared).
//!
//! The outcomes are recorded in `tests/compat/outcomes/*.txt`; a run that differs from the record
//! fails and shows where. `AUGUR_COMPAT_BLESS=1` rewrites the record after a change that was
//! meant. Details of every difference go to `target/compat/*.diff`.

mod common;
#[path = "compat/script.rs"]
mod script;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::TestServer;
use script::Statement;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// The regression scripts compared, in PostgreSQL's schedule order, after `test_setup`.
const REGRESS: &[&str] = &[
    "boolean",
    "int4",
    "int8",
    "float8",
    "text",
    "strings",
    "case",
    "select",
    "select_distinct",
    "aggregates",
    "join",
    "union",
    "subselect",
    "with",
    "window",
    "limit",
    "timestamp",
    "interval",
];

/// How long a statement may run before it counts as a hang. The slowest statement that finishes
/// (join.sql's `tenk1 a, tenk1 b JOIN LATERAL (VALUES (a.unique1), (-1))`, whose subquery runs
/// once per row of `a`) takes about 30 s in a debug build on two cores: a hang is a statement
/// that has not finished in twice that.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Outcome {
    Same,
    Names,
    Error,
    Wrong,
    Order,
    Accepts,
    Refused,
    Hang,
    Plan,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Same => "same",
            Outcome::Names => "names",
            Outcome::Error => "error",
            Outcome::Wrong => "wrong",
            Outcome::Order => "order",
            Outcome::Accepts => "accepts",
            Outcome::Refused => "refused",
            Outcome::Hang => "hang",
            Outcome::Plan => "plan",
        }
    }
}

/// What one server said to one statement.
#[derive(Debug, PartialEq)]
enum Answer {
    Rows {
        columns: Vec<String>,
        rows: Vec<Vec<Option<String>>>,
    },
    Command(u64),
    Error(String),
    Timeout,
}

fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run ./scripts/test.sh, which starts PostgreSQL 15 for this test")
    })
}

async fn connect(conn: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(conn, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {conn}: {e}"));
    tokio::spawn(connection);
    client
}

/// A fresh database on the reference server, with Augur's session defaults.
async fn reference_database(name: &str) -> Client {
    let admin_conn = env_var("AUGUR_COMPAT_PG");
    let admin = connect(&admin_conn).await;
    admin
        .simple_query(&format!("DROP DATABASE IF EXISTS {name}"))
        .await
        .expect("drop the reference database");
    // CREATE DATABASE copies template1 and fails while another session copies it.
    let mut attempts = 0;
    while let Err(e) = admin.simple_query(&format!("CREATE DATABASE {name}")).await {
        attempts += 1;
        assert!(attempts < 50, "create the reference database: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let client = connect(&format!("{admin_conn} dbname={name}")).await;
    client
        .batch_execute("SET TimeZone = 'UTC'")
        .await
        .expect("set the reference session");
    client
}

/// A session on Augur that runs each query on one thread, so that answers PostgreSQL leaves to
/// the implementation (a window frame over rows in no particular order) are the same every run.
async fn augur_session(server: &TestServer) -> Client {
    let client = server.connect().await;
    client
        .batch_execute(ONE_THREAD)
        .await
        .expect("set up the Augur session");
    client
}

const ONE_THREAD: &str = "SET max_parallel_workers_per_gather = 0";

async fn run(client: &Client, statement: &Statement) -> Answer {
    let work = async {
        if let Some(data) = &statement.copy_data {
            let sink = match client
                .copy_in::<_, bytes::Bytes>(statement.sql.as_str())
                .await
            {
                Ok(sink) => sink,
                Err(e) => return error_answer(&e),
            };
            use futures::SinkExt;
            let mut sink = Box::pin(sink);
            if let Err(e) = sink.send(bytes::Bytes::from(data.clone())).await {
                return error_answer(&e);
            }
            return match sink.as_mut().finish().await {
                Ok(n) => Answer::Command(n),
                Err(e) => error_answer(&e),
            };
        }
        match client.simple_query(&statement.sql).await {
            Err(e) => error_answer(&e),
            Ok(messages) => {
                let mut columns = None;
                let mut rows = Vec::new();
                let mut count = 0;
                for message in messages {
                    match message {
                        SimpleQueryMessage::RowDescription(cols) => {
                            columns = Some(cols.iter().map(|c| c.name().to_string()).collect());
                        }
                        SimpleQueryMessage::Row(row) => {
                            if columns.is_none() {
                                columns = Some(
                                    row.columns().iter().map(|c| c.name().to_string()).collect(),
                                );
                            }
                            rows.push(
                                (0..row.len())
                                    .map(|i| row.get(i).map(str::to_string))
                                    .collect(),
                            );
                        }
                        SimpleQueryMessage::CommandComplete(n) => count = n,
                        _ => {}
                    }
                }
                match columns {
                    Some(columns) => Answer::Rows { columns, rows },
                    None => Answer::Command(count),
                }
            }
        }
    };
    match tokio::time::timeout(STATEMENT_TIMEOUT, work).await {
        Ok(answer) => answer,
        Err(_) => {
            let _ = client.cancel_token().cancel_query(NoTls).await;
            Answer::Timeout
        }
    }
}

fn error_answer(e: &tokio_postgres::Error) -> Answer {
    match e.as_db_error() {
        Some(db) => Answer::Error(format!("{}: {}", db.code().code(), db.message())),
        None => Answer::Error(format!("connection: {e}")),
    }
}

/// Whether the statement's outermost query has an ORDER BY (then row order is part of the
/// answer).
fn ordered(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut depth = 0i32;
    let mut quote = false;
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'\'' => quote = !quote,
            b'(' if !quote => depth += 1,
            b')' if !quote => depth -= 1,
            b'o' if !quote && depth == 0 && lower[i..].starts_with("order by") => return true,
            _ => {}
        }
    }
    false
}

fn compare(sql: &str, pg: &Answer, augur: &Answer) -> Outcome {
    match (pg, augur) {
        (_, Answer::Timeout) => Outcome::Hang,
        (Answer::Timeout, _) => Outcome::Hang,
        (Answer::Error(_), Answer::Error(_)) => Outcome::Refused,
        (Answer::Error(_), _) => Outcome::Accepts,
        (_, Answer::Error(_)) => Outcome::Error,
        _ if sql
            .trim_start()
            .get(..7)
            .is_some_and(|w| w.eq_ignore_ascii_case("explain")) =>
        {
            Outcome::Plan
        }
        (Answer::Command(a), Answer::Command(b)) => {
            if a == b {
                Outcome::Same
            } else {
                Outcome::Wrong
            }
        }
        (
            Answer::Rows {
                columns: pc,
                rows: pr,
            },
            Answer::Rows {
                columns: ac,
                rows: ar,
            },
        ) => {
            let named = |o| if pc == ac { Outcome::Same } else { o };
            if pr == ar {
                return named(Outcome::Names);
            }
            let mut ps = pr.clone();
            let mut sorted = ar.clone();
            ps.sort();
            sorted.sort();
            if ps != sorted {
                Outcome::Wrong
            } else if ordered(sql) {
                Outcome::Order
            } else {
                named(Outcome::Names)
            }
        }
        _ => Outcome::Wrong,
    }
}

fn show(answer: &Answer) -> String {
    match answer {
        Answer::Rows { columns, rows } => {
            let mut s = columns.join(" | ");
            for row in rows.iter().take(20) {
                s.push_str("\n  ");
                let cells: Vec<&str> = row.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect();
                s.push_str(&cells.join(" | "));
            }
            if rows.len() > 20 {
                let _ = write!(s, "\n  ... {} rows", rows.len());
            }
            s
        }
        Answer::Command(n) => format!("OK {n}"),
        Answer::Error(e) => format!("ERROR {e}"),
        Answer::Timeout => "no answer in time".to_string(),
    }
}

/// The outcome of every statement of one script.
struct Report {
    name: String,
    lines: Vec<String>,
    counts: HashMap<Outcome, usize>,
    details: String,
}

async fn compare_script(
    name: &str,
    statements: &[Statement],
    pg: &Client,
    augur: &mut Client,
    server: &TestServer,
    quote: bool,
) -> Report {
    let mut report = Report {
        name: name.to_string(),
        lines: Vec::new(),
        counts: HashMap::new(),
        details: String::new(),
    };
    for statement in statements {
        let p = run(pg, statement).await;
        // Scripts change the setting for their own purposes; every statement runs on one
        // thread. (Refused inside a failed transaction block, where nothing runs anyway.)
        let _ = augur.simple_query(ONE_THREAD).await;
        let a = run(augur, statement).await;
        let outcome = compare(&statement.sql, &p, &a);
        if matches!(a, Answer::Timeout) || augur.is_closed() {
            assert!(
                !augur.is_closed() || server_alive(server).await,
                "Augur went away at {name}:{}: {}",
                statement.line,
                statement.sql
            );
            *augur = augur_session(server).await;
        }
        *report.counts.entry(outcome).or_default() += 1;
        // Statements of PostgreSQL's scripts are named by their line; Augur's own by their text.
        let label: String = if quote {
            statement
                .sql
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(100)
                .collect()
        } else {
            format!("line {}", statement.line)
        };
        report.lines.push(format!("{}\t{label}", outcome.name()));
        if !matches!(outcome, Outcome::Same | Outcome::Refused) {
            let _ = write!(
                report.details,
                "-- {name}:{} {}\n{}\n-- PostgreSQL: {}\n-- Augur: {}\n\n",
                statement.line,
                outcome.name(),
                statement.sql,
                show(&p),
                show(&a)
            );
        }
    }
    report
}

async fn server_alive(server: &TestServer) -> bool {
    tokio_postgres::connect(&server.conn_str(), NoTls)
        .await
        .is_ok()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compares the reports with the recorded outcomes (or records them), writes the details and a
/// summary, and fails on any difference from the record.
fn check(reports: &[Report], summary_title: &str) {
    let bless = std::env::var("AUGUR_COMPAT_BLESS").is_ok_and(|v| v == "1");
    let outcomes_dir = root().join("tests/compat/outcomes");
    let details_dir = root().join("target/compat");
    std::fs::create_dir_all(&details_dir).expect("create target/compat");
    let mut failures = String::new();
    let mut summary = format!(
        "{summary_title}\n{:<16} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7} {:>6} {:>6}\n",
        "script",
        "stmts",
        "same",
        "names",
        "error",
        "wrong",
        "order",
        "accepts",
        "refused",
        "hang",
        "plan"
    );
    let mut total: HashMap<Outcome, usize> = HashMap::new();
    for report in reports {
        let record = outcomes_dir.join(format!("{}.txt", report.name));
        let actual = report.lines.join("\n") + "\n";
        std::fs::write(
            details_dir.join(format!("{}.diff", report.name)),
            &report.details,
        )
        .expect("write details");
        if bless {
            std::fs::create_dir_all(&outcomes_dir).expect("create outcomes dir");
            std::fs::write(&record, &actual).expect("write outcomes");
        } else {
            let expected = std::fs::read_to_string(&record).unwrap_or_default();
            if expected != actual {
                let _ = writeln!(
                    failures,
                    "{}: outcomes differ from {}",
                    report.name,
                    record.display()
                );
                let expected: Vec<&str> = expected.lines().collect();
                let mut shown = 0;
                for (i, line) in report.lines.iter().enumerate() {
                    if expected.get(i) != Some(&line.as_str()) && shown < 30 {
                        shown += 1;
                        let _ = writeln!(
                            failures,
                            "  #{}: recorded {:?}\n       now      {:?}",
                            i + 1,
                            expected.get(i).unwrap_or(&"(nothing)"),
                            line
                        );
                    }
                }
                if expected.len() != report.lines.len() {
                    let _ = writeln!(
                        failures,
                        "  {} statements recorded, {} now",
                        expected.len(),
                        report.lines.len()
                    );
                }
            }
        }
        let c = |o| report.counts.get(&o).copied().unwrap_or(0);
        for (o, n) in &report.counts {
            *total.entry(*o).or_default() += n;
        }
        let _ = writeln!(
            summary,
            "{:<16} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7} {:>6} {:>6}",
            report.name,
            report.lines.len(),
            c(Outcome::Same),
            c(Outcome::Names),
            c(Outcome::Error),
            c(Outcome::Wrong),
            c(Outcome::Order),
            c(Outcome::Accepts),
            c(Outcome::Refused),
            c(Outcome::Hang),
            c(Outcome::Plan)
        );
    }
    let t = |o| total.get(&o).copied().unwrap_or(0);
    let accepted = t(Outcome::Same)
        + t(Outcome::Names)
        + t(Outcome::Error)
        + t(Outcome::Wrong)
        + t(Outcome::Order);
    let answered = t(Outcome::Same) + t(Outcome::Names);
    let _ = writeln!(
        summary,
        "PostgreSQL answers {accepted} statements (EXPLAIN aside); Augur gives the same answer to {answered} ({:.1}%), a different one to {} and refuses {}; it accepts {} that PostgreSQL refuses; {} hang",
        100.0 * answered as f64 / accepted.max(1) as f64,
        t(Outcome::Wrong) + t(Outcome::Order),
        t(Outcome::Error),
        t(Outcome::Accepts),
        t(Outcome::Hang)
    );
    println!("{summary}");
    std::fs::write(
        details_dir.join(format!("{}.summary", summary_title.replace(' ', "_"))),
        &summary,
    )
    .expect("write summary");
    assert!(
        failures.is_empty(),
        "{summary}\n{failures}\nDetails in {}. If the change is intended, run with AUGUR_COMPAT_BLESS=1 and commit tests/compat/outcomes.",
        details_dir.display()
    );
}

fn statements_of(path: &Path, env: &HashMap<&str, String>) -> Vec<Statement> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    script::split(&text, env)
}

/// PostgreSQL's regression scripts, after their common setup, statement by statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_regression_scripts() {
    let regress = PathBuf::from(env_var("AUGUR_PG_REGRESS"));
    let env = HashMap::from([
        ("PG_ABS_SRCDIR", regress.display().to_string()),
        ("PG_LIBDIR", "/nonexistent".to_string()),
        ("PG_DLSUFFIX", ".so".to_string()),
    ]);
    let pg = reference_database("compat_regress").await;
    let server = TestServer::start();
    let mut augur = augur_session(&server).await;
    let mut reports = Vec::new();
    for name in std::iter::once("test_setup").chain(REGRESS.iter().copied()) {
        let statements = statements_of(&regress.join(format!("sql/{name}.sql")), &env);
        reports.push(compare_script(name, &statements, &pg, &mut augur, &server, false).await);
    }
    check(&reports, "regression scripts");
}

/// Augur's own list of PostgreSQL behaviours that clients rely on (tests/compat/behaviours.sql).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_behaviours() {
    let pg = reference_database("compat_behaviours").await;
    let server = TestServer::start();
    let mut augur = augur_session(&server).await;
    let statements = statements_of(&root().join("tests/compat/behaviours.sql"), &HashMap::new());
    let report = compare_script("behaviours", &statements, &pg, &mut augur, &server, true).await;
    check(&[report], "behaviours");
}
