//! The `augur` server binary.

use anyhow::Context;
use augur::Config;
use augur::server::Server;
use augur::server::http::HttpServer;
use augur::session::Database;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// The dataflow allocates and frees many small rows and keys per event; under glibc's allocator
/// a per-event feature view spent a quarter of its time consolidating and unlinking free chunks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    // Statements are parsed, planned and run on the runtime's threads; deeply nested ones recurse
    // deeply, so the threads get stacks sized for the deepest statement Augur accepts.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(augur::sql::depth::STATEMENT_STACK_BYTES)
        .build()
        .context("starting the async runtime")?
        .block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&config.log).context("invalid --log filter")?)
        .init();

    let db = Database::open(&config)
        .await
        .with_context(|| format!("opening data directory {}", config.data_dir.display()))?;
    let server = Server::bind(&config, db.clone()).await?;
    let addr = server.local_addr()?;
    let http = HttpServer::bind(&config, db.clone()).await?;
    let http_addr = http.local_addr()?;
    let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(http.run(async move {
        let _ = stopped.await;
    }));
    tracing::info!(
        data_dir = %config.data_dir.display(),
        "Augur {} listening on {addr}",
        env!("CARGO_PKG_VERSION")
    );
    println!("HTTP API on http://{http_addr}");
    println!(
        "Augur is ready. Connect with:\n  psql -h {} -p {} -U augur augur",
        addr.ip(),
        addr.port()
    );

    server.run(shutdown_signal()).await?;
    let _ = stop_http.send(());
    if let Ok(Err(e)) = http.await {
        tracing::warn!("HTTP API: {e}");
    }
    db.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received");
}
