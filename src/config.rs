//! Server configuration: defaults ← `AUGUR_*` environment ← command line. Built once in `main`
//! and passed down as a value.

use std::net::SocketAddr;
use std::path::PathBuf;

/// How the server is started.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "augur",
    version,
    about = "A SQL-first streaming database for ML features and predictions"
)]
pub struct Config {
    /// Directory of the RocksDB database holding the catalog and all data.
    #[arg(long, env = "AUGUR_DATA_DIR", default_value = "./augur-data")]
    pub data_dir: PathBuf,

    /// Address to accept PostgreSQL connections on.
    #[arg(long, env = "AUGUR_LISTEN", default_value = "127.0.0.1:5440")]
    pub listen: SocketAddr,

    /// Address to serve the HTTP API on: webhook ingestion, point reads of views, PREDICT.
    #[arg(long, env = "AUGUR_HTTP_LISTEN", default_value = "127.0.0.1:5441")]
    pub http_listen: SocketAddr,

    /// Require this password (SCRAM-SHA-256) from every user.
    #[arg(long, env = "AUGUR_PASSWORD", conflicts_with = "users_file")]
    pub password: Option<String>,

    /// Require passwords (SCRAM-SHA-256) from a file of `user:password` lines.
    #[arg(long, env = "AUGUR_USERS_FILE")]
    pub users_file: Option<PathBuf>,

    /// PEM certificate chain; with --tls-key, clients may (and with a password should) use TLS.
    #[arg(long, env = "AUGUR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8) for --tls-cert.
    #[arg(long, env = "AUGUR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Skip the fsync of each write: an acknowledged write then survives a crash of the server
    /// process but not of the machine.
    #[arg(long, env = "AUGUR_NO_FSYNC")]
    pub no_fsync: bool,

    /// The longest epoch in milliseconds: while changes keep arriving faster than views apply
    /// them, views commit this often, folding many changes of a key into one write. A write is
    /// visible in views at most about this long after it is acknowledged (at once after FLUSH).
    #[arg(long, env = "AUGUR_EPOCH_MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub epoch_ms: u64,

    /// The shortest epoch in milliseconds: once views have applied everything that arrived,
    /// they commit as soon as this long has passed since their last commit, so a write is
    /// visible within about this long while the server keeps up.
    #[arg(long, env = "AUGUR_MIN_EPOCH_MS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub min_epoch_ms: u64,

    /// Memory in MiB that the operator state cached by all views together may take (aggregate
    /// groups, remembered model outputs); state beyond it stays in RocksDB and is read back
    /// when needed.
    #[arg(long, env = "AUGUR_STATE_CACHE_MB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub state_cache_mb: u64,

    /// ONNX Runtime's shared library (`libonnxruntime.so.*`), or a directory holding it. Without
    /// it, `ORT_DYLIB_PATH`, then a `.venv` (with the `onnxruntime` package) in the working
    /// directory or next to the executable.
    #[arg(long, env = "AUGUR_ONNXRUNTIME")]
    pub onnxruntime: Option<PathBuf>,

    /// Threads ONNX Runtime uses within one model run. Runs of concurrent queries go on in
    /// parallel besides, each in its own session.
    #[arg(long, env = "AUGUR_ONNX_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub onnx_threads: u16,

    /// Log filter, in `tracing`'s EnvFilter syntax (e.g. `info`, `augur=debug`).
    #[arg(long, env = "AUGUR_LOG", default_value = "info")]
    pub log: String,
}

impl Config {
    /// A configuration with every default, for a data directory (tests and embedding).
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            password: None,
            users_file: None,
            tls_cert: None,
            tls_key: None,
            no_fsync: false,
            epoch_ms: 100,
            min_epoch_ms: 5,
            state_cache_mb: 1024,
            onnxruntime: None,
            onnx_threads: 1,
            log: "info".into(),
        }
    }
}
