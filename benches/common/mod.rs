//! What the benchmarks share: a release `augur` on a free port with its own data directory, and
//! a tokio-postgres connection. Each benchmark uses part of it.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

/// A running server, killed when dropped.
pub struct Augur {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// Where its HTTP API listens (`host:port`).
    pub http: String,
}

impl Drop for Augur {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Augur {
    /// Starts the server with `args` added to its command line and waits until it accepts
    /// connections.
    pub fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_augur"))
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(["--http-listen", "127.0.0.1:0"])
            .args(args)
            .env("AUGUR_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start augur");
        // The server says where its HTTP API listens before it is ready.
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("augur's stdout");
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(addr) = line.strip_prefix("HTTP API on http://") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let http = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("augur did not start its HTTP API");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "augur did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Augur {
            child,
            dir,
            port,
            http,
        }
    }

    /// Its connection string.
    pub fn conn_str(&self) -> String {
        format!("host=127.0.0.1 port={} user=augur dbname=augur", self.port)
    }
}

/// Connects with tokio-postgres; the connection runs on the current runtime.
pub async fn connect(conn: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(conn, NoTls).await.expect("connect");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// CPU seconds (user + sys) the process has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields[11].parse().unwrap();
    let stime: f64 = fields[12].parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc_sysconf_clk_tck() };
    (utime + stime) / ticks
}

unsafe extern "C" {
    fn sysconf(name: i32) -> i64;
}

/// `sysconf(_SC_CLK_TCK)`.
unsafe fn libc_sysconf_clk_tck() -> f64 {
    const SC_CLK_TCK: i32 = 2;
    // SAFETY: sysconf has no preconditions.
    (unsafe { sysconf(SC_CLK_TCK) }) as f64
}

/// Deterministic pseudo-random numbers (xorshift), so every system measured sees the same keys.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The `p` quantile (0 to 1) of `sorted` durations, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A duration in microseconds, one decimal.
pub fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// The peak resident memory of the process in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The size of the files in `path` (not its subdirectories) in MiB.
pub fn dir_mib(path: &std::path::Path) -> f64 {
    let mut total = 0u64;
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            if let Ok(meta) = entry.metadata() {
                total += meta.len();
            }
        }
    }
    total as f64 / (1024.0 * 1024.0)
}

/// `AUGUR_BENCH_SCALE`, the factor on a benchmark's event counts (1 when unset).
pub fn scale() -> f64 {
    std::env::var("AUGUR_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

/// DuckDB's CPU seconds to run `query` (which must return one row) on one thread, through
/// `.venv`'s duckdb; `None` (said on stderr) when it cannot run.
pub fn duckdb_seconds(query: &str) -> Option<f64> {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let script = format!(
        "import duckdb, time\n\
         con = duckdb.connect()\n\
         con.execute('SET threads TO 1')\n\
         t = time.process_time()\n\
         con.execute({query:?}).fetchone()\n\
         print(time.process_time() - t)\n"
    );
    let out = Command::new(python).arg("-c").arg(script).output().ok()?;
    if !out.status.success() {
        eprintln!("duckdb: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}
