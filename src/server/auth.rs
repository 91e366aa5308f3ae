//! Startup: trust (no password configured) or SCRAM-SHA-256, and the parameters reported to a
//! new connection.

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use pgwire::api::auth::{AuthSource, LoginInfo, Password, ServerParameterProvider, StartupHandler};
use pgwire::api::{ClientInfo, ConnectionManager, METADATA_USER};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::error::{Error, Result};
use crate::session::vars;

/// SCRAM iterations for stored passwords (PostgreSQL's default).
const SCRAM_ITERATIONS: usize = 4096;

/// The parameters a client is told about at startup.
#[derive(Debug, Default)]
pub struct Parameters;

impl Parameters {
    fn values<C: ClientInfo>(client: &C) -> HashMap<String, String> {
        let mut out: HashMap<String, String> = vars::startup_parameters()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let metadata = client.metadata();
        if let Some(user) = metadata.get(METADATA_USER) {
            out.insert("session_authorization".into(), user.clone());
        }
        if let Some(app) = metadata.get("application_name") {
            out.insert("application_name".into(), app.clone());
        }
        out
    }
}

impl ServerParameterProvider for Parameters {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        Some(Self::values(client))
    }
}

/// Users and their passwords.
#[derive(Debug, Clone)]
pub struct Users {
    /// `None`: any user name with this password.
    passwords: HashMap<Option<String>, String>,
    /// Salt and salted password per user, computed once: SCRAM asks for them more than once per
    /// login, and they must agree.
    salted: Arc<std::sync::Mutex<HashMap<String, Password>>>,
}

impl Users {
    fn new(passwords: HashMap<Option<String>, String>) -> Self {
        Self {
            passwords,
            salted: Arc::default(),
        }
    }

    /// Every user name, one password.
    pub fn any_user(password: String) -> Self {
        Self::new(HashMap::from([(None, password)]))
    }

    /// The user names this list names (none when any name logs in with one password).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.passwords.keys().flatten().cloned().collect();
        names.sort();
        names
    }

    /// `user:password` lines; blank lines and lines starting with `#` are skipped.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::InvalidParameter(format!("cannot read users file {}: {e}", path.display()))
        })?;
        let mut passwords = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, password) = line.split_once(':').ok_or_else(|| {
                Error::InvalidParameter(format!(
                    "{}:{}: expected user:password",
                    path.display(),
                    n + 1
                ))
            })?;
            passwords.insert(Some(user.to_string()), password.to_string());
        }
        Ok(Self::new(passwords))
    }

    /// Whether `password` is `user`'s (compared in time independent of where they differ).
    pub fn check(&self, user: &str, password: &str) -> bool {
        let Some(expected) = self.password_of(user) else {
            return false;
        };
        let (a, b) = (expected.as_bytes(), password.as_bytes());
        let mut differ = a.len() ^ b.len();
        for i in 0..a.len().max(b.len()) {
            differ |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
        }
        differ == 0
    }

    fn password_of(&self, user: &str) -> Option<&String> {
        self.passwords
            .get(&Some(user.to_string()))
            .or_else(|| self.passwords.get(&None))
    }
}

#[async_trait]
impl AuthSource for Users {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        let password = self
            .password_of(user)
            .ok_or_else(|| PgWireError::InvalidPassword(user.to_string()))?;
        let mut salted = self.salted.lock().unwrap_or_else(|e| e.into_inner());
        let entry = salted.entry(user.to_string()).or_insert_with(|| {
            let salt = random_salt();
            let key = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
            Password::new(Some(salt.to_vec()), key)
        });
        Ok(entry.clone())
    }
}

/// 16 bytes from the operating system's randomness (through the hasher keys std seeds from it).
fn random_salt() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 16];
    for chunk in out.chunks_mut(8) {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0);
        chunk.copy_from_slice(&hasher.finish().to_le_bytes()[..chunk.len()]);
    }
    out
}

/// Accepts every user; reports Augur's parameters.
pub struct Trust {
    connections: Arc<ConnectionManager>,
}

#[async_trait]
impl NoopStartupHandler for Trust {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.connections.clone())
    }

    async fn post_startup<C>(
        &self,
        client: &mut C,
        _message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // pgwire reported its own defaults already; these come later and win.
        for (name, value) in Parameters::values(client) {
            client
                .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    name, value,
                )))
                .await?;
        }
        Ok(())
    }
}

/// How connections authenticate. pgwire's SASL handler keeps the state of one login, so every
/// connection gets its own (see [`Startup::for_connection`]).
pub enum Startup {
    /// No password configured.
    Trust(Arc<ConnectionManager>),
    /// SCRAM-SHA-256 with these users' passwords.
    Scram(Arc<Users>, Arc<ConnectionManager>),
}

impl Startup {
    /// Trust every connection.
    pub fn trust(connections: Arc<ConnectionManager>) -> Self {
        Startup::Trust(connections)
    }

    /// Require SCRAM-SHA-256 with `users`' passwords.
    pub fn scram(users: Users, connections: Arc<ConnectionManager>) -> Self {
        Startup::Scram(Arc::new(users), connections)
    }

    /// The startup handler of one new connection.
    pub fn for_connection(&self) -> ConnectionStartup {
        match self {
            Startup::Trust(connections) => ConnectionStartup::Trust(Trust {
                connections: connections.clone(),
            }),
            Startup::Scram(users, connections) => {
                let mut scram = ScramAuth::new(users.clone());
                scram.set_iterations(SCRAM_ITERATIONS);
                ConnectionStartup::Scram(
                    SASLAuthStartupHandler::new(Arc::new(Parameters))
                        .with_scram(scram)
                        .with_connection_manager(connections.clone()),
                )
            }
        }
    }
}

/// The startup handler of one connection.
pub enum ConnectionStartup {
    /// No password configured.
    Trust(Trust),
    /// SCRAM-SHA-256.
    Scram(SASLAuthStartupHandler<Parameters>),
}

#[async_trait]
impl StartupHandler for ConnectionStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            ConnectionStartup::Trust(trust) => trust.on_startup(client, message).await,
            ConnectionStartup::Scram(scram) => scram.on_startup(client, message).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, "# analysts\nalice:s3cret\n\nbob:pass:with:colons\n").unwrap();
        let users = Users::from_file(&path).unwrap();
        assert_eq!(
            users.password_of("alice").map(String::as_str),
            Some("s3cret")
        );
        assert_eq!(
            users.password_of("bob").map(String::as_str),
            Some("pass:with:colons")
        );
        assert_eq!(users.password_of("mallory"), None);

        std::fs::write(&path, "no colon here\n").unwrap();
        let err = Users::from_file(&path).unwrap_err();
        assert!(
            err.to_string().contains(":1: expected user:password"),
            "{err}"
        );
    }
}
