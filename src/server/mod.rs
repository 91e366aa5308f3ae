//! The PostgreSQL wire protocol front end (pgwire). Only this layer knows about the wire: it
//! accepts connections, authenticates them, and turns [`crate::session::Output`] and
//! [`crate::Error`] into protocol messages.

mod auth;
mod cancel;
mod copy;
mod handler;
pub mod http;
mod params;
pub mod text;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pgwire::api::ConnectionManager;
use pgwire::tokio::process_socket;
use pgwire::tokio::tokio_rustls::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls::ServerConfig;
use pgwire::tokio::tokio_rustls::rustls::pki_types::pem::PemObject;
use pgwire::tokio::tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use auth::Users;
pub use handler::error_info;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::session::Database;

/// How long connections get to finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    handlers: Arc<handler::Handlers>,
    tls: Option<TlsAcceptor>,
}

impl Server {
    /// Binds `config.listen` and sets up authentication and TLS for `db`.
    pub async fn bind(config: &Config, db: Arc<Database>) -> Result<Self> {
        let connections = Arc::new(ConnectionManager::new());
        let users = users_of(config)?;
        let startup = match users {
            Some(users) => auth::Startup::scram(users, connections.clone()),
            None => auth::Startup::trust(connections.clone()),
        };
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            _ => None,
        };
        let listener = TcpListener::bind(config.listen).await.map_err(|e| {
            Error::InvalidParameter(format!("cannot listen on {}: {e}", config.listen))
        })?;
        Ok(Self {
            listener,
            handlers: Arc::new(handler::Handlers::new(db, startup, connections)),
            tls,
        })
    }

    /// The address the server accepts connections on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::Internal(format!("listener address: {e}")))
    }

    /// Serves connections until `shutdown` completes, then stops accepting and gives open
    /// connections a few seconds to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((socket, peer)) => {
                        let _ = socket.set_nodelay(true);
                        let handlers = self.handlers.clone();
                        let tls = self.tls.clone();
                        connections.spawn(async move {
                            if let Err(e) = process_socket(socket, tls, handlers).await {
                                tracing::debug!(%peer, error = %e, "connection ended with an error");
                            }
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, "accept failed"),
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(self.listener);
        tracing::info!(
            open = connections.len(),
            "shutting down: no new connections"
        );
        let drain = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tracing::warn!("closing connections still open after {SHUTDOWN_GRACE:?}");
            connections.shutdown().await;
        }
        Ok(())
    }
}

/// The users and passwords `--password` or `--users-file` give; none: authentication is off.
pub(crate) fn users_of(config: &Config) -> Result<Option<Users>> {
    Ok(match (&config.password, &config.users_file) {
        (Some(password), _) => Some(Users::any_user(password.clone())),
        (None, Some(path)) => Some(Users::from_file(path)?),
        (None, None) => None,
    })
}

fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor> {
    let bad =
        |what: &str, e: &dyn std::fmt::Display| Error::InvalidParameter(format!("TLS {what}: {e}"));
    let _ = pgwire::tokio::tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("certificate", &e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad("certificate", &e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", &e))?;
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("configuration", &e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
