//! Starts the built `augur` binary on a free port with its own data directory.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `augur` process. Killed when dropped.
pub struct TestServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    extra_args: Vec<String>,
    /// Where the HTTP API listens (a free port, told by the server at start).
    http: std::sync::Arc<std::sync::Mutex<Option<SocketAddr>>>,
    _tmp: Option<tempfile::TempDir>,
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

impl TestServer {
    /// Starts a server over a fresh temporary data directory.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra command-line arguments.
    pub fn start_with(args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = tmp.path().join("data");
        let mut server = Self {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            data_dir,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            http: Default::default(),
            _tmp: Some(tmp),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_augur"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.addr.to_string())
            .args(
                (!self.extra_args.iter().any(|a| a == "--http-listen"))
                    .then_some(["--http-listen", "127.0.0.1:0"])
                    .into_iter()
                    .flatten(),
            )
            .args(&self.extra_args)
            .env("AUGUR_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start augur");
        // Ready once this process says so: a port that accepts connections may be another
        // process's, when this one could not listen on it.
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("augur's stdout");
        let http = self.http.clone();
        *http.lock().unwrap() = None;
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(addr) = line.strip_prefix("HTTP API on http://") {
                    *http.lock().unwrap() = addr.parse().ok();
                }
                if line.starts_with("Augur is ready") {
                    let _ = ready_tx.send(());
                }
            }
        });
        self.child = Some(child);
        self.wait_ready(ready);
    }

    fn wait_ready(&mut self, ready: std::sync::mpsc::Receiver<()>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if ready.recv_timeout(Duration::from_millis(20)).is_ok() {
                assert!(
                    TcpStream::connect(self.addr).is_ok(),
                    "augur is ready but does not accept connections on {}",
                    self.addr
                );
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("augur exited before accepting connections: {status}");
            }
        }
        panic!(
            "augur did not accept connections on {} within 60 s",
            self.addr
        );
    }

    /// `kill -9`: no shutdown, nothing flushed beyond what was acknowledged.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit; returns whether the exit status was success.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Starts the server again over the same data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts the server again after it was stopped.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "server is still running");
        self.spawn();
    }

    /// A libpq-style connection string.
    pub fn conn_str(&self) -> String {
        format!(
            "host={} port={} user=augur dbname=augur",
            self.addr.ip(),
            self.addr.port()
        )
    }

    /// Connects with tokio-postgres; the connection task runs on the current runtime.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.conn_str(), tokio_postgres::NoTls)
            .await
            .expect("connect to augur");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// The HTTP API's base URL.
    pub fn http_url(&self) -> String {
        let addr = self
            .http
            .lock()
            .unwrap()
            .expect("the server told its HTTP address");
        format!("http://{addr}")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `sql`'s single value is `want`; panics with the last value after 60 s.
pub async fn wait_for(client: &tokio_postgres::Client, sql: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(row) = client.query_one(sql, &[]).await {
            let value: Option<i64> = row.get(0);
            if value == Some(want) {
                return;
            }
            last = value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{sql}: {last:?} after 60 s, expected {want}");
}

/// `sql`'s single `bigint` value.
pub async fn scalar(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// The SQLSTATE `sql` fails with (it must fail).
pub async fn error_code(client: &tokio_postgres::Client, sql: &str) -> String {
    let error = client.batch_execute(sql).await.expect_err(sql);
    error
        .code()
        .map(|c| c.code().to_string())
        .unwrap_or_default()
}
