//! A 1 GB Parquet file into a view: `CREATE SOURCE ... ENCODE PARQUET` over one file of events
//! (id, user_id, amount, ts and a 32-character note; snappy, row groups of 1M rows) and a
//! `GROUP BY user_id` view over it, timed from CREATE MATERIALIZED VIEW until FLUSH returns
//! (FLUSH waits until a single-file source is read).
//!
//! The figures are rows per CPU-second of the server process (user + sys, from `/proc`) and the
//! file's megabytes per wall second. In the same run: the Parquet crate reading the same file
//! into Arrow batches alone in this process (the floor of any ingestion), and DuckDB's
//! `read_parquet` with the same GROUP BY on one thread (`.venv`'s duckdb).
//!
//! The file is written once into `target/bench-data` and kept. Run with `benches/run.sh files`
//! (release build). `AUGUR_BENCH_SCALE=0.1` scales the rows.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use common::{Augur, connect, cpu_seconds};
use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;

const USERS: u64 = 100_000;
/// Rows of the full-size file: about 1 GB (snappy) with the 32-character notes.
const ROWS: usize = 21_500_000;

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("user_id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("note", DataType::Utf8, false),
    ]))
}

/// Rows `from..to` of the file.
fn rows(from: usize, to: usize) -> RecordBatch {
    let ids: Vec<u64> = (from as u64..to as u64).collect();
    // A cheap mix so that users, amounts and notes look random and do not compress away.
    let mix = |i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(ids.iter().map(|&i| i as i64))),
        Arc::new(Int64Array::from_iter_values(
            ids.iter().map(|&i| (mix(i) % USERS) as i64),
        )),
        Arc::new(Float64Array::from_iter_values(
            ids.iter().map(|&i| (mix(i) % 100_000) as f64 / 100.0),
        )),
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            ids.iter().map(|&i| 1_767_225_600_000_000 + i as i64 * 1000),
        )),
        Arc::new(StringArray::from_iter_values(
            ids.iter()
                .map(|&i| format!("{:016x}{:016x}", mix(i), mix(i ^ 0x5555))),
        )),
    ];
    RecordBatch::try_new(schema(), columns).unwrap()
}

/// The file of `n` rows, written if it is not there yet.
fn file(n: usize) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("events-{n}.parquet"));
    if path.exists() {
        return path;
    }
    let partial = dir.join(format!(".events-{n}.parquet"));
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(1 << 20))
        .build();
    let mut writer =
        ArrowWriter::try_new(File::create(&partial).unwrap(), schema(), Some(properties)).unwrap();
    for from in (0..n).step_by(65_536) {
        writer.write(&rows(from, (from + 65_536).min(n))).unwrap();
    }
    writer.close().unwrap();
    std::fs::rename(&partial, &path).unwrap();
    path
}

/// CPU seconds of this thread to read every column of `path` into Arrow batches of 8,192.
fn read_only(path: &Path, n: usize) -> f64 {
    let t = cpu_time();
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .with_batch_size(8192)
        .build()
        .unwrap();
    let mut read = 0;
    for batch in reader {
        read += batch.unwrap().num_rows();
    }
    assert_eq!(read, n);
    cpu_time() - t
}

/// This process's CPU seconds so far.
fn cpu_time() -> f64 {
    cpu_seconds(std::process::id())
}

/// DuckDB's CPU seconds to group the file by user on one thread, if `.venv` has duckdb.
fn duckdb(path: &Path) -> Option<f64> {
    common::duckdb_seconds(&format!(
        "SELECT count(*) FROM (SELECT user_id, count(*), sum(amount) FROM read_parquet('{}') \
         GROUP BY user_id)",
        path.display()
    ))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let n = (ROWS as f64 * common::scale()) as usize;
    let path = file(n);
    let mb = std::fs::metadata(&path).unwrap().len() as f64 / 1e6;

    let augur = Augur::start(&[]);
    let pid = augur.child.id();
    let client = runtime.block_on(connect(&augur.conn_str()));
    runtime
        .block_on(client.batch_execute(&format!(
            "CREATE SOURCE events (id BIGINT, user_id BIGINT, amount DOUBLE PRECISION, \
             ts TIMESTAMP, note TEXT) WITH (connector = 'file', path = '{}') \
             FORMAT PLAIN ENCODE PARQUET",
            path.display()
        )))
        .expect("create source");
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    runtime
        .block_on(client.batch_execute(
            "CREATE MATERIALIZED VIEW v AS SELECT user_id, count(*) AS n, sum(amount) AS total \
             FROM events GROUP BY user_id; FLUSH",
        ))
        .expect("view");
    let (cpu, wall) = (cpu_seconds(pid) - cpu0, t0.elapsed().as_secs_f64());
    let counted: i64 = runtime
        .block_on(client.query_one("SELECT sum(n)::BIGINT FROM v", &[]))
        .unwrap()
        .get(0);
    assert_eq!(counted as usize, n, "every row counted once");

    println!(
        "| Parquet file into a GROUP BY view | rows | MB | rows/CPU-s | MB/s (wall) | server CPU s | wall s |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| Augur | {n} | {mb:.0} | {:.0} | {:.0} | {cpu:.2} | {wall:.2} |",
        n as f64 / cpu,
        mb / wall
    );
    let read = read_only(&path, n);
    println!(
        "| Parquet → Arrow alone (the floor) | {n} | {mb:.0} | {:.0} | | {read:.2} | |",
        n as f64 / read
    );
    match duckdb(&path) {
        Some(seconds) => println!(
            "| DuckDB read_parquet + GROUP BY, one thread | {n} | {mb:.0} | {:.0} | | {seconds:.2} | |",
            n as f64 / seconds
        ),
        None => println!("DuckDB: not measured (no duckdb in .venv)."),
    }
}
