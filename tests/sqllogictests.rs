//! Runs every `sqllogictest/**/*.slt` file against its own `augur` process and data directory.
//!
//! `SLT_FILTER=substring cargo test --test sqllogictests` runs only the matching files.

mod common;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use common::TestServer;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};
use tokio_postgres::SimpleQueryMessage;

struct Augur {
    client: tokio_postgres::Client,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct DbError(String, Option<String>);

#[async_trait]
impl AsyncDB for Augur {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let messages = self.client.simple_query(sql).await.map_err(|e| {
            let state = e.code().map(|c| c.code().to_string());
            let message = e
                .as_db_error()
                .map(|db| db.message().to_string())
                .unwrap_or_else(|| e.to_string());
            DbError(message, state)
        })?;
        let mut columns = None;
        let mut rows = Vec::new();
        let mut count = 0;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(desc) => columns = Some(desc.len()),
                SimpleQueryMessage::Row(row) => {
                    let values = (0..row.len())
                        .map(|i| match row.get(i) {
                            None => "NULL".to_string(),
                            Some("") => "(empty)".to_string(),
                            Some(v) => v.to_string(),
                        })
                        .collect();
                    rows.push(values);
                }
                SimpleQueryMessage::CommandComplete(n) => count = n,
                _ => {}
            }
        }
        Ok(match columns {
            Some(n) => DBOutput::Rows {
                types: vec![DefaultColumnType::Any; n],
                rows,
            },
            None => DBOutput::StatementComplete(count),
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "augur"
    }

    fn error_sql_state(err: &DbError) -> Option<String> {
        err.1.clone()
    }
}

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            slt_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "slt") {
            out.push(path);
        }
    }
}

#[tokio::main]
async fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sqllogictest");
    let mut files = Vec::new();
    slt_files(&root, &mut files);
    if let Ok(filter) = std::env::var("SLT_FILTER") {
        files.retain(|f| f.to_string_lossy().contains(&filter));
    }
    assert!(!files.is_empty(), "no .slt files under {}", root.display());

    let mut failed = Vec::new();
    for file in &files {
        let name = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        let server = TestServer::start();
        let conn = server.conn_str();
        let mut runner = Runner::new(move || {
            let conn = conn.clone();
            async move {
                let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| DbError(e.to_string(), None))?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Ok(Augur { client })
            }
        });
        match runner.run_file_async(file).await {
            Ok(()) => println!("test {name} ... ok"),
            Err(e) => {
                println!("test {name} ... FAILED\n{e}\n");
                failed.push(name);
            }
        }
        drop(server);
    }
    let passed = files.len() - failed.len();
    println!("\n{passed} passed, {} failed", failed.len());
    if !failed.is_empty() {
        eprintln!("failed sqllogictest files: {failed:?}");
        std::process::exit(1);
    }
}
