//! File sources: CSV, JSON lines and Parquet files on the local disk and in S3 (`moto`'s server
//! from PyPI, started here on loopback) read into views, files that appear later picked up,
//! bad lines and rows kept aside with their file and line, `kill -9` while reading neither
//! losing nor repeating a row, and the errors a wrong path or column gets at CREATE.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestServer, error_code, scalar, wait_for};
use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use tokio_postgres::Client;

/// The CSV line of event `i`: id, user `i % 7`, amount `i + 0.5`.
fn csv_line(i: usize) -> String {
    format!("{i},{},{i}.5\n", i % 7)
}

/// Writes `text` to `path` under a hidden name first, then renames it: a reader never sees
/// half a file.
fn write_whole(path: &Path, text: &[u8]) {
    let hidden = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&hidden, text).unwrap();
    std::fs::rename(&hidden, path).unwrap();
}

/// `(user_id, count, sum of amount)` per user of events `ids`, as the views should hold them.
fn per_user(ids: impl IntoIterator<Item = usize>) -> Vec<(i64, i64, f64)> {
    let mut out: std::collections::BTreeMap<i64, (i64, f64)> = Default::default();
    for i in ids {
        let entry = out.entry((i % 7) as i64).or_default();
        entry.0 += 1;
        entry.1 += i as f64 + 0.5;
    }
    out.into_iter().map(|(u, (n, s))| (u, n, s)).collect()
}

async fn view_rows(client: &Client, view: &str) -> Vec<(i64, i64, f64)> {
    client
        .query(
            &format!("SELECT user_id, n, total FROM {view} ORDER BY user_id"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// A Parquet file of events `ids`: columns in another order than the source declares, the
/// user as a 32-bit integer (read into BIGINT), and a note that is the id as text, but not a
/// number for ids in `bad_note`.
fn parquet_bytes(ids: &[usize], bad_note: &[usize]) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("amount", DataType::Float64, true),
        Field::new("note", DataType::Utf8, true),
        Field::new("USER_ID", DataType::Int32, false),
        Field::new("id", DataType::Int64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Float64Array::from_iter_values(
            ids.iter().map(|&i| i as f64 + 0.5),
        )),
        Arc::new(StringArray::from_iter_values(ids.iter().map(|i| {
            if bad_note.contains(i) {
                "n/a".to_string()
            } else {
                i.to_string()
            }
        }))),
        Arc::new(Int32Array::from_iter_values(
            ids.iter().map(|&i| (i % 7) as i32),
        )),
        Arc::new(Int64Array::from_iter_values(ids.iter().map(|&i| i as i64))),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, None).unwrap();
    // Several batches, so the file has several pages to read through.
    for start in (0..batch.num_rows()).step_by(1000) {
        let n = (batch.num_rows() - start).min(1000);
        writer.write(&batch.slice(start, n)).unwrap();
    }
    writer.close().unwrap();
    out
}

#[tokio::test]
async fn csv_files_of_a_directory_into_a_view_with_later_files_and_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir(&events).unwrap();
    // a.csv: a header, 100 events, a blank line, and two lines that are not rows.
    let mut a = String::from("id,user_id,amount\n");
    for i in 0..50 {
        a.push_str(&csv_line(i));
    }
    a.push('\n');
    a.push_str("50,not a number,1.0\n");
    for i in 50..100 {
        a.push_str(&csv_line(i));
    }
    a.push_str("oops\r\n");
    write_whole(&events.join("a.csv"), a.as_bytes());
    // b.csv: the last line without a line end.
    let mut b = String::from("id,user_id,amount\n");
    for i in 100..150 {
        b.push_str(&csv_line(i));
    }
    b.pop();
    write_whole(&events.join("b.csv"), b.as_bytes());
    // Not read: another extension, and a file being written under a hidden name.
    std::fs::write(events.join("notes.txt"), "not events").unwrap();
    std::fs::write(events.join("_partial.csv"), "999,1,1.0\n").unwrap();

    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE events (id BIGINT, user_id BIGINT, amount DOUBLE PRECISION) \
             WITH (connector = 'file', path = '{}/*.csv', refresh.interval = '200ms') \
             FORMAT PLAIN ENCODE CSV; \
             CREATE MATERIALIZED VIEW per_user AS \
             SELECT user_id, count(*) AS n, sum(amount) AS total FROM events GROUP BY user_id; \
             FLUSH;",
            events.display()
        ))
        .await
        .unwrap();
    // FLUSH waited for every file listed.
    assert_eq!(view_rows(&client, "per_user").await, per_user(0..150));

    // The two bad lines: counted, and kept with their file and line number (from 0).
    let stats = client
        .query_one(
            "SELECT rows_ingested, rows_rejected FROM augur_catalog.source_stats \
             WHERE source_name = 'events'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((stats.get::<_, i64>(0), stats.get::<_, i64>(1)), (150, 2));
    let rejected: Vec<(String, i64, String)> = client
        .query(
            "SELECT file, \"offset\", payload FROM augur_catalog.rejected_rows \
             WHERE source_name = 'events' ORDER BY \"offset\"",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let a_name = events.join("a.csv").display().to_string();
    assert_eq!(
        rejected,
        vec![
            (a_name.clone(), 52, "50,not a number,1.0".to_string()),
            (a_name.clone(), 103, "oops".to_string()),
        ]
    );

    // A file that appears later is read after the others.
    let mut c = String::from("id,user_id,amount\n");
    for i in 150..400 {
        c.push_str(&csv_line(i));
    }
    write_whole(&events.join("c.csv"), c.as_bytes());
    wait_for(&client, "SELECT sum(n)::BIGINT FROM per_user", 400).await;
    assert_eq!(view_rows(&client, "per_user").await, per_user(0..400));
    let splits: Vec<(String, i64, bool)> = client
        .query(
            "SELECT file, records, done FROM augur_catalog.source_splits \
             WHERE source_name = 'events' ORDER BY split",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let name = |f: &str| events.join(f).display().to_string();
    assert_eq!(
        splits,
        vec![
            (name("a.csv"), 102, true),
            (name("b.csv"), 50, true),
            (name("c.csv"), 250, true),
        ]
    );

    // A view created after the rows arrived sees the same rows.
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW later AS \
             SELECT user_id, count(*) AS n, sum(amount) AS total FROM events GROUP BY user_id",
        )
        .await
        .unwrap();
    assert_eq!(view_rows(&client, "later").await, per_user(0..400));
}

#[tokio::test]
async fn json_lines_and_parquet_files_into_views() {
    let dir = tempfile::tempdir().unwrap();
    // JSON lines: fields by name, unknown ones ignored, one malformed line.
    let mut json = String::new();
    for i in 0..500 {
        json.push_str(&format!(
            "{{\"amount\": {i}.5, \"user_id\": {}, \"id\": {i}, \"extra\": true}}\n",
            i % 7
        ));
        if i == 250 {
            json.push_str("{\"id\": 9999, \"user_id\": \n");
        }
    }
    write_whole(&dir.path().join("events.jsonl"), json.as_bytes());
    let ids: Vec<usize> = (0..20_000).collect();
    let parquet = dir.path().join("events.parquet");
    write_whole(&parquet, &parquet_bytes(&ids, &[77, 12_345]));

    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE j (id BIGINT, user_id BIGINT, amount DOUBLE PRECISION) \
             WITH (connector = 'file', path = '{}') FORMAT PLAIN ENCODE JSON; \
             CREATE SOURCE p (id BIGINT, user_id BIGINT, amount DOUBLE PRECISION, note BIGINT) \
             WITH (connector = 'file', path = '{}') FORMAT PLAIN ENCODE PARQUET; \
             CREATE MATERIALIZED VIEW j_users AS \
             SELECT user_id, count(*) AS n, sum(amount) AS total FROM j GROUP BY user_id; \
             CREATE MATERIALIZED VIEW p_users AS \
             SELECT user_id, count(*) AS n, sum(amount) AS total FROM p GROUP BY user_id; \
             FLUSH;",
            dir.path().join("events.jsonl").display(),
            parquet.display()
        ))
        .await
        .unwrap();
    // A single file is bounded: FLUSH waited until it was read.
    assert_eq!(view_rows(&client, "j_users").await, per_user(0..500));
    let kept = ids.iter().copied().filter(|&i| i != 77 && i != 12_345);
    assert_eq!(view_rows(&client, "p_users").await, per_user(kept));

    // The views equal their queries run over the sources as batch queries.
    let batch: Vec<(i64, i64, f64)> = client
        .query(
            "SELECT user_id, count(*), sum(amount) FROM p GROUP BY user_id ORDER BY user_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(batch, view_rows(&client, "p_users").await);

    // The Parquet rows whose note does not fit its column: kept by row number, as JSON.
    let rejected: Vec<(i64, String, String)> = client
        .query(
            "SELECT \"offset\", payload, error FROM augur_catalog.rejected_rows \
             WHERE source_name = 'p' ORDER BY \"offset\"",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert_eq!(rejected[0].0, 77);
    assert!(rejected[0].1.contains("\"id\":77"), "{rejected:?}");
    assert!(rejected[0].2.contains("note"), "{rejected:?}");
    assert_eq!(rejected[1].0, 12_345);
    assert_eq!(
        scalar(
            &client,
            "SELECT \"offset\" FROM augur_catalog.rejected_rows WHERE source_name = 'j'"
        )
        .await,
        251
    );
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM augur_catalog.source_splits \
             WHERE source_name IN ('j', 'p') AND done"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn wrong_paths_options_and_columns_are_refused_at_create() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    write_whole(
        &dir.path().join("one.parquet"),
        &parquet_bytes(&[1, 2, 3], &[]),
    );
    let server = TestServer::start();
    let client = server.connect().await;
    let d = dir.path().display();
    let cases = [
        // No such file, an empty directory, a glob that matches nothing.
        (
            format!(
                "CREATE SOURCE s (id BIGINT) WITH (connector = 'file', path = '{d}/nothing.csv') \
                 FORMAT PLAIN ENCODE CSV"
            ),
            "42704",
        ),
        (
            format!(
                "CREATE SOURCE s (id BIGINT) WITH (connector = 'file', path = '{d}/empty') \
                 FORMAT PLAIN ENCODE CSV"
            ),
            "42704",
        ),
        (
            format!(
                "CREATE SOURCE s (id BIGINT) WITH (connector = 'file', path = '{d}/*.json') \
                 FORMAT PLAIN ENCODE JSON"
            ),
            "42704",
        ),
        // A relative path, an unknown option, a bad interval, S3 options on a local path.
        (
            "CREATE SOURCE s (id BIGINT) WITH (connector = 'file', path = 'data/x.csv') \
             FORMAT PLAIN ENCODE CSV"
                .to_string(),
            "22023",
        ),
        (
            format!(
                "CREATE SOURCE s (id BIGINT) WITH (connector = 'file', path = '{d}', \
                 topic = 't') FORMAT PLAIN ENCODE CSV"
            ),
            "22023",
        ),
        (
            format!(
                "CREATE SOURCE s (id BIGINT) WITH (connector = 'file', path = '{d}', \
                 refresh.interval = 'often') FORMAT PLAIN ENCODE CSV"
            ),
            "22023",
        ),
        (
            format!(
                "CREATE SOURCE s (id BIGINT) WITH (connector = 'file', path = '{d}', \
                 s3.region = 'eu-west-1') FORMAT PLAIN ENCODE CSV"
            ),
            "22023",
        ),
        // A column the Parquet file does not have.
        (
            format!(
                "CREATE SOURCE s (id BIGINT, missing_col TEXT) WITH (connector = 'file', \
                 path = '{d}/one.parquet') FORMAT PLAIN ENCODE PARQUET"
            ),
            "42703",
        ),
        // Formats files are not read in.
        (
            format!(
                "CREATE SOURCE s (id BIGINT) WITH (connector = 'file', path = '{d}') \
                 FORMAT PLAIN ENCODE AVRO (schema.registry = 'http://127.0.0.1:1')"
            ),
            "0A000",
        ),
        (
            format!(
                "CREATE SOURCE s (id BIGINT) WITH (connector = 'file', path = '{d}') \
                 FORMAT UPSERT ENCODE JSON"
            ),
            "0A000",
        ),
        (
            format!(
                "CREATE SOURCE s (id BIGINT) WITH (connector = 'file', path = '{d}') \
                 FORMAT PLAIN ENCODE XML"
            ),
            "0A000",
        ),
    ];
    for (sql, code) in cases {
        assert_eq!(error_code(&client, &sql).await, code, "{sql}");
    }
    assert_eq!(
        scalar(&client, "SELECT count(*) FROM augur_catalog.source_stats").await,
        0
    );
}

#[tokio::test]
async fn kill_9_while_reading_files_neither_loses_nor_repeats_a_row() {
    let dir = tempfile::tempdir().unwrap();
    // Four CSV files of 50,000 events and a Parquet file of 100,000.
    for f in 0..4 {
        let mut text = String::from("id,user_id,amount\n");
        for i in f * 50_000..(f + 1) * 50_000 {
            text.push_str(&csv_line(i));
        }
        write_whole(&dir.path().join(format!("part-{f}.csv")), text.as_bytes());
    }
    let ids: Vec<usize> = (200_000..300_000).collect();
    write_whole(&dir.path().join("more.parquet"), &parquet_bytes(&ids, &[]));

    let mut server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE c (id BIGINT, user_id BIGINT, amount DOUBLE PRECISION) \
             WITH (connector = 'file', path = '{d}/*.csv') FORMAT PLAIN ENCODE CSV; \
             CREATE SOURCE p (id BIGINT, user_id BIGINT, amount DOUBLE PRECISION) \
             WITH (connector = 'file', path = '{d}/more.parquet') FORMAT PLAIN ENCODE PARQUET; \
             CREATE MATERIALIZED VIEW c_users AS \
             SELECT user_id, count(*) AS n, sum(amount) AS total FROM c GROUP BY user_id; \
             CREATE MATERIALIZED VIEW p_users AS \
             SELECT user_id, count(*) AS n, sum(amount) AS total FROM p GROUP BY user_id;",
            d = dir.path().display()
        ))
        .await
        .unwrap();
    drop(client);
    // Killed three times while it reads, each time after some rows reached the views.
    let mut killed_mid_read = 0;
    for round in 0..3 {
        let client = server.connect().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let read = scalar(&client, "SELECT coalesce(sum(n), 0)::BIGINT FROM c_users").await;
            if read > (round as i64 + 1) * 20_000 || Instant::now() > deadline {
                if read < 200_000 {
                    killed_mid_read += 1;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(client);
        server.restart();
    }
    assert!(
        killed_mid_read > 0,
        "the server read everything before a kill"
    );
    let client = server.connect().await;
    client.batch_execute("FLUSH").await.unwrap();
    assert_eq!(view_rows(&client, "c_users").await, per_user(0..200_000));
    assert_eq!(
        view_rows(&client, "p_users").await,
        per_user(200_000..300_000)
    );
    assert_eq!(
        scalar(
            &client,
            "SELECT rows_ingested FROM augur_catalog.source_stats WHERE source_name = 'c'"
        )
        .await,
        200_000
    );
}

/// `moto`'s S3 server on a free loopback port, from the test command's Python environment.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Self {
        let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
        assert!(
            bin.exists(),
            "{} is missing: the test command installs moto[server] into .venv",
            bin.display()
        );
        let port = common::free_port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    fn store(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap()
    }

    /// Creates `bucket` (S3's CreateBucket: a PUT of the bucket's path).
    async fn create_bucket(&self, bucket: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .expect("create bucket");
        assert!(response.status().is_success(), "{response:?}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn csv_json_and_parquet_files_in_s3_into_views() {
    use object_store::ObjectStoreExt;
    use object_store::path::Path as StorePath;

    let moto = Moto::start();
    moto.create_bucket("lake").await;
    let store = moto.store("lake");
    let mut csv = String::from("id,user_id,amount\n");
    for i in 0..300 {
        csv.push_str(&csv_line(i));
    }
    let mut json = String::new();
    for i in 300..600 {
        json.push_str(&format!(
            "{{\"id\": {i}, \"user_id\": {}, \"amount\": {i}.5}}\n",
            i % 7
        ));
    }
    let ids: Vec<usize> = (600..5_000).collect();
    for (key, body) in [
        ("csv/day=1/a.csv", csv.into_bytes()),
        ("json/events.jsonl", json.into_bytes()),
        ("parquet/part-0.parquet", parquet_bytes(&ids, &[])),
    ] {
        store.put(&StorePath::from(key), body.into()).await.unwrap();
    }

    let server = TestServer::start();
    let client = server.connect().await;
    let s3 = format!(
        "s3.endpoint = '{}', s3.region = 'us-east-1', s3.access.key = 'test', \
         s3.secret.key = 'test'",
        moto.endpoint
    );
    client
        .batch_execute(&format!(
            "CREATE SOURCE c (id BIGINT, user_id BIGINT, amount DOUBLE PRECISION) \
             WITH (connector = 'file', path = 's3://lake/csv/', refresh.interval = '200ms', \
             {s3}) FORMAT PLAIN ENCODE CSV; \
             CREATE SOURCE j (id BIGINT, user_id BIGINT, amount DOUBLE PRECISION) \
             WITH (connector = 'file', path = 's3://lake/json/events.jsonl', {s3}) \
             FORMAT PLAIN ENCODE JSON; \
             CREATE SOURCE p (id BIGINT, user_id BIGINT, amount DOUBLE PRECISION) \
             WITH (connector = 'file', path = 's3://lake/parquet/*.parquet', {s3}) \
             FORMAT PLAIN ENCODE PARQUET; \
             CREATE MATERIALIZED VIEW all_users AS \
             SELECT user_id, count(*) AS n, sum(amount) AS total FROM \
             (SELECT * FROM c UNION ALL SELECT * FROM j UNION ALL SELECT * FROM p) \
             GROUP BY user_id; \
             FLUSH;"
        ))
        .await
        .unwrap();
    assert_eq!(view_rows(&client, "all_users").await, per_user(0..5_000));

    // An object written later under the prefix is read.
    let mut more = String::from("id,user_id,amount\n");
    for i in 5_000..5_100 {
        more.push_str(&csv_line(i));
    }
    store
        .put(
            &StorePath::from("csv/day=2/b.csv"),
            more.into_bytes().into(),
        )
        .await
        .unwrap();
    wait_for(&client, "SELECT sum(n)::BIGINT FROM all_users", 5_100).await;
    assert_eq!(view_rows(&client, "all_users").await, per_user(0..5_100));
    let files: Vec<String> = client
        .query(
            "SELECT file FROM augur_catalog.source_splits WHERE source_name = 'c' ORDER BY split",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        files,
        vec!["s3://lake/csv/day=1/a.csv", "s3://lake/csv/day=2/b.csv"]
    );

    // A sink writing the view's new values into S3, read back as a consumer would.
    client
        .batch_execute(&format!(
            "CREATE SINK to_lake FROM all_users WITH (connector = 'file', path = 's3://lake/out/', \
             force_append_only = 'true', {s3}) FORMAT PLAIN ENCODE JSON"
        ))
        .await
        .unwrap();
    wait_delivered(&client, "to_lake").await;
    let mut keys: Vec<StorePath> = Vec::new();
    let mut listing = object_store::ObjectStore::list(&store, Some(&StorePath::from("out")));
    while let Some(meta) = futures::StreamExt::next(&mut listing).await {
        keys.push(meta.unwrap().location);
    }
    keys.sort();
    assert!(!keys.is_empty());
    let mut last: std::collections::BTreeMap<i64, i64> = Default::default();
    for key in keys {
        assert!(key.as_ref().starts_with("out/to_lake-"), "{key}");
        let bytes = store.get(&key).await.unwrap().bytes().await.unwrap();
        for line in String::from_utf8_lossy(&bytes).lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            last.insert(row["user_id"].as_i64().unwrap(), row["n"].as_i64().unwrap());
        }
    }
    let want: std::collections::BTreeMap<i64, i64> = view_rows(&client, "all_users")
        .await
        .into_iter()
        .map(|(u, n, _)| (u, n))
        .collect();
    assert_eq!(last, want);

    // A prefix with nothing under it, and a store nothing answers at.
    assert_eq!(
        error_code(
            &client,
            &format!(
                "CREATE SOURCE x (id BIGINT) WITH (connector = 'file', path = 's3://lake/none/', \
                 {s3}) FORMAT PLAIN ENCODE CSV"
            )
        )
        .await,
        "42704"
    );
    let port = common::free_port();
    assert_eq!(
        error_code(
            &client,
            &format!(
                "CREATE SOURCE x (id BIGINT) WITH (connector = 'file', path = 's3://lake/csv/', \
                 s3.endpoint = 'http://127.0.0.1:{port}', s3.access.key = 'test', \
                 s3.secret.key = 'test') FORMAT PLAIN ENCODE CSV"
            )
        )
        .await,
        "08001"
    );
}

/// Every row of the Parquet files of sink `sink` in `dir`: `(id, user_id, amount)`, sorted.
fn sink_rows(dir: &Path, sink: &str) -> Vec<(i64, i64, f64)> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Float64Type, Int64Type};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let mut rows = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return rows;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with(&format!("{sink}-")) || !name.ends_with(".parquet") {
            continue;
        }
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let ids = batch.column(0).as_primitive::<Int64Type>();
            let users = batch.column(1).as_primitive::<Int64Type>();
            let amounts = batch.column(2).as_primitive::<Float64Type>();
            for i in 0..batch.num_rows() {
                rows.push((ids.value(i), users.value(i), amounts.value(i)));
            }
        }
    }
    rows.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rows
}

/// Waits until sink `sink` has nothing waiting and has written `rows` records.
async fn wait_delivered(client: &Client, sink: &str) {
    wait_for(
        client,
        &format!(
            "SELECT count(*) FROM augur_catalog.sinks WHERE sink_name = '{sink}' \
             AND backlog = 0 AND last_error IS NULL"
        ),
        1,
    )
    .await;
}

#[tokio::test]
async fn file_sinks_write_each_epoch_once_through_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE events (id BIGINT, user_id BIGINT, amount DOUBLE PRECISION) APPEND ONLY; \
             INSERT INTO events SELECT i, i % 7, i + 0.5 FROM generate_series(0, 99) AS s(i); \
             CREATE MATERIALIZED VIEW big AS SELECT id, user_id, amount FROM events \
             WHERE amount > 10; \
             CREATE MATERIALIZED VIEW per_user AS \
             SELECT user_id, count(*) AS n, sum(amount) AS total FROM events GROUP BY user_id;",
        )
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "CREATE SINK big_parquet FROM big WITH (connector = 'file', path = '{o}', \
             max.rows.per.file = '1000') FORMAT PLAIN ENCODE PARQUET; \
             CREATE SINK big_csv FROM big WITH (connector = 'file', path = '{o}/csv') \
             FORMAT PLAIN ENCODE CSV; \
             CREATE SINK users_json FROM per_user WITH (connector = 'file', path = '{o}/json', \
             force_append_only = 'true', snapshot = 'false') FORMAT PLAIN ENCODE JSON; \
             CREATE SINK big_query AS SELECT id, user_id, amount FROM events WHERE amount > 10 \
             WITH (connector = 'file', path = '{o}/query') FORMAT PLAIN ENCODE PARQUET;",
            o = out.display()
        ))
        .await
        .unwrap();
    // The rows already in the view were the sink's first epoch.
    wait_delivered(&client, "big_parquet").await;
    let expected = |n: usize| -> Vec<(i64, i64, f64)> {
        (0..n)
            .filter(|&i| i as f64 + 0.5 > 10.0)
            .map(|i| (i as i64, (i % 7) as i64, i as f64 + 0.5))
            .collect()
    };
    assert_eq!(sink_rows(&out, "big_parquet"), expected(100));
    // A sink with its own query writes the same rows, and no view is made for it.
    wait_delivered(&client, "big_query").await;
    assert_eq!(sink_rows(&out.join("query"), "big_query"), expected(100));
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM augur_catalog.sinks WHERE sink_name = 'big_query' \
             AND from_view IS NULL AND query LIKE 'SELECT id, user_id, amount FROM events%'"
        )
        .await,
        1
    );
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM pg_class WHERE relname = 'big_query'"
        )
        .await,
        0
    );

    // Rows written while the server is killed three times: each acknowledged row is in the
    // files exactly once.
    let mut next = 100;
    for _ in 0..3 {
        let client = server.connect().await;
        for _ in 0..20 {
            client
                .batch_execute(&format!(
                    "INSERT INTO events SELECT i, i % 7, i + 0.5 FROM generate_series({next}, {}) \
                     AS s(i)",
                    next + 99
                ))
                .await
                .unwrap();
            next += 100;
        }
        drop(client);
        server.restart();
    }
    let client = server.connect().await;
    client.batch_execute("FLUSH").await.unwrap();
    wait_delivered(&client, "big_parquet").await;
    assert_eq!(sink_rows(&out, "big_parquet"), expected(next));
    wait_delivered(&client, "big_query").await;
    assert_eq!(sink_rows(&out.join("query"), "big_query"), expected(next));
    wait_delivered(&client, "big_csv").await;
    let mut csv_rows = 0;
    for entry in std::fs::read_dir(out.join("csv")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("id,user_id,amount"));
        csv_rows += lines.count();
    }
    assert_eq!(csv_rows, expected(next).len());
    // No file is left half written, and none has a temporary name.
    for entry in std::fs::read_dir(&out).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name == "csv" || name == "json" || name == "query" || name.ends_with(".parquet"),
            "{name}"
        );
    }
    // The aggregate's new values, one line per changed user per epoch.
    wait_delivered(&client, "users_json").await;
    let mut last: std::collections::BTreeMap<i64, i64> = Default::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(out.join("json"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        for line in std::fs::read_to_string(path).unwrap().lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            last.insert(row["user_id"].as_i64().unwrap(), row["n"].as_i64().unwrap());
        }
    }
    let counts: std::collections::BTreeMap<i64, i64> = client
        .query("SELECT user_id, n FROM per_user", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(last, counts);

    // SHOW SINKS, the system view, and the refusals.
    let shown: Vec<String> = client
        .simple_query("SHOW SINKS")
        .await
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(
        shown,
        vec!["big_csv", "big_parquet", "big_query", "users_json"]
    );
    let o = out.display();
    for (sql, code) in [
        (
            format!(
                "CREATE SINK s FROM per_user WITH (connector = 'file', path = '{o}') \
                 FORMAT PLAIN ENCODE PARQUET"
            ),
            "22023",
        ),
        (
            format!(
                "CREATE SINK s FROM events WITH (connector = 'file', path = '{o}') \
                 FORMAT PLAIN ENCODE PARQUET"
            ),
            "42809",
        ),
        (
            format!(
                "CREATE SINK s FROM nothing WITH (connector = 'file', path = '{o}') \
                 FORMAT PLAIN ENCODE PARQUET"
            ),
            "42P01",
        ),
        (
            format!(
                "CREATE SINK s FROM big WITH (connector = 'file', path = '{o}') \
                 FORMAT PLAIN ENCODE AVRO"
            ),
            "0A000",
        ),
        (
            format!(
                "CREATE SINK big_csv FROM big WITH (connector = 'file', path = '{o}') \
                 FORMAT PLAIN ENCODE CSV"
            ),
            "42710",
        ),
        (
            "CREATE SINK s FROM big WITH (connector = 'file', path = 'relative') \
             FORMAT PLAIN ENCODE CSV"
                .to_string(),
            "22023",
        ),
        (
            "CREATE SINK s FROM big WITH (connector = 'ftp') FORMAT PLAIN ENCODE CSV".to_string(),
            "0A000",
        ),
        (
            format!(
                "CREATE SINK s AS SELECT user_id, count(*) FROM events GROUP BY user_id \
                 WITH (connector = 'file', path = '{o}') FORMAT PLAIN ENCODE PARQUET"
            ),
            "22023",
        ),
        (
            format!(
                "CREATE SINK s AS DELETE FROM events WITH (connector = 'file', path = '{o}') \
                 FORMAT PLAIN ENCODE PARQUET"
            ),
            "42601",
        ),
        (
            format!(
                "CREATE SINK s AS SELECT nope FROM events WITH (connector = 'file', \
                 path = '{o}') FORMAT PLAIN ENCODE PARQUET"
            ),
            "42703",
        ),
        ("DROP MATERIALIZED VIEW big".to_string(), "2BP01"),
        ("DROP SINK nothing".to_string(), "42704"),
    ] {
        assert_eq!(error_code(&client, &sql).await, code, "{sql}");
    }
    client
        .batch_execute("DROP SINK big_csv; DROP MATERIALIZED VIEW big CASCADE")
        .await
        .unwrap();
    assert_eq!(
        scalar(&client, "SELECT count(*) FROM augur_catalog.sinks").await,
        2
    );
    // Dropping the sink stops its query; what it wrote stays.
    client.batch_execute("DROP SINK big_query").await.unwrap();
    client
        .batch_execute("INSERT INTO events VALUES (1000000, 1, 1e6); FLUSH")
        .await
        .unwrap();
    // The epoch with the row is delivered to the sink that remains.
    wait_delivered(&client, "users_json").await;
    assert_eq!(sink_rows(&out.join("query"), "big_query"), expected(next));
}
