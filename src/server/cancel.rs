//! Cancel requests: a client opens a second connection and names the first by its process id
//! and secret key; the statement running on the first stops with `57014`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use pgwire::api::ClientInfo;
use pgwire::api::cancel::CancelHandler;
use pgwire::messages::cancel::CancelRequest;

use crate::session::limits::Interrupt;

/// Every connection's [`Interrupt`], by process id and secret key.
#[derive(Debug, Default)]
pub struct Interrupts {
    connections: Mutex<HashMap<(i32, Bytes), Weak<Interrupt>>>,
}

impl Interrupts {
    /// The interrupt of `client`'s connection, registered on first use and forgotten when the
    /// connection ends.
    pub fn of<C: ClientInfo>(self: &Arc<Self>, client: &C) -> Arc<Interrupt> {
        client
            .session_extensions()
            .get_or_insert_with(|| {
                let (pid, secret) = client.pid_and_secret_key();
                let key = (pid, secret.to_bytes());
                let interrupt = Arc::new(Interrupt::default());
                self.lock().insert(key.clone(), Arc::downgrade(&interrupt));
                Registered {
                    interrupts: self.clone(),
                    key,
                    interrupt,
                }
            })
            .interrupt
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(i32, Bytes), Weak<Interrupt>>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection's registration; dropped with the connection's session extensions.
struct Registered {
    interrupts: Arc<Interrupts>,
    key: (i32, Bytes),
    interrupt: Arc<Interrupt>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.interrupts.lock().remove(&self.key);
    }
}

/// Answers cancel requests. A request naming no connection, or a wrong key, does nothing, as in
/// PostgreSQL.
pub struct CancelRequests(pub Arc<Interrupts>);

#[async_trait]
impl CancelHandler for CancelRequests {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let key = (request.pid, request.secret_key.to_bytes());
        let interrupt = self.0.lock().get(&key).and_then(Weak::upgrade);
        if let Some(interrupt) = interrupt {
            interrupt.cancel();
        }
    }
}
