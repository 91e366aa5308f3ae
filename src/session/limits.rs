//! What stops a statement: a cancel request, `statement_timeout`, `lock_timeout`, and a panic.
//!
//! A statement runs in two phases: it is prepared and executed up to its first batch of rows,
//! and then its rows stream to the client. [`StatementLimits`] guards both: the first phase as a
//! future raced against a cancel request and the statement's deadline, the second as a stream
//! that ends with the same errors. A panic in either phase ends the statement with `XX000` and
//! leaves the connection and the server running. Cancellation takes effect at the statement's
//! next await point; DataFusion's operators yield to the runtime regularly, so a running query
//! stops within milliseconds.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use futures::{FutureExt, Stream};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::{Error, Result};

/// One connection's cancel state. Every query message the connection sends gets a serial
/// number; a cancel request cancels the message running when it arrives, and nothing later.
#[derive(Debug, Default)]
pub struct Interrupt {
    /// Serial number of the latest query message.
    latest: AtomicU64,
    /// Messages up to this serial number are cancelled.
    cancelled: AtomicU64,
    notify: Notify,
}

impl Interrupt {
    /// A new message begins; returns its serial number.
    pub fn begin(&self) -> u64 {
        self.latest.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// A cancel request: stops the message running now, if any.
    pub fn cancel(&self) {
        self.cancelled
            .fetch_max(self.latest.load(Ordering::SeqCst), Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn is_cancelled(&self, serial: u64) -> bool {
        self.cancelled.load(Ordering::SeqCst) >= serial
    }

    /// Completes when message `serial` is cancelled.
    async fn cancelled(&self, serial: u64) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled(serial) {
                return;
            }
            notified.await;
        }
    }
}

/// The error of a statement stopped by a cancel request.
pub fn canceled() -> Error {
    Error::coded("57014", "canceling statement due to user request")
}

/// The error of a statement that ran past `statement_timeout`.
pub fn timed_out() -> Error {
    Error::coded("57014", "canceling statement due to statement timeout")
}

/// The error of a statement that waited past `lock_timeout`.
pub fn lock_timed_out() -> Error {
    Error::coded("55P03", "canceling statement due to lock timeout")
}

/// What may stop one statement.
#[derive(Debug, Clone)]
pub struct StatementLimits {
    interrupt: Arc<Interrupt>,
    serial: u64,
    deadline: Option<Instant>,
}

impl StatementLimits {
    /// Limits for a statement of message `serial`, which may run for `timeout` (none: no limit).
    pub fn new(interrupt: Arc<Interrupt>, serial: u64, timeout: Option<Duration>) -> Self {
        Self {
            interrupt,
            serial,
            deadline: timeout.map(|t| Instant::now() + t),
        }
    }

    /// Why the statement must stop now, if it must.
    fn stopped(&self) -> Option<Error> {
        if self.interrupt.is_cancelled(self.serial) {
            Some(canceled())
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            Some(timed_out())
        } else {
            None
        }
    }

    /// Completes with the error that stops the statement: a cancel request or the deadline.
    fn stop(&self) -> impl Future<Output = Error> + Send + 'static {
        let interrupt = self.interrupt.clone();
        let serial = self.serial;
        let deadline = self.deadline;
        // Outside the task's cooperative budget: the statement's own work may spend all of it
        // every time the task runs, and this must still see the cancel request.
        tokio::task::unconstrained(async move {
            let deadline = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = interrupt.cancelled(serial) => canceled(),
                _ = deadline => timed_out(),
            }
        })
    }

    /// Runs `work` until it completes, the statement is cancelled or its deadline passes; a
    /// panic in it is the statement's `XX000`.
    pub async fn run<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        if let Some(e) = self.stopped() {
            return Err(e);
        }
        let stop = self.stop();
        tokio::select! {
            biased;
            result = AssertUnwindSafe(work).catch_unwind() => result.unwrap_or_else(|panic| Err(panicked(panic))),
            e = stop => Err(e),
        }
    }

    /// `rows`, ending with an error when the statement is cancelled or its deadline passes, or
    /// when producing a batch panics.
    pub fn guard(&self, rows: SendableRecordBatchStream) -> SendableRecordBatchStream {
        Box::pin(GuardedRows {
            schema: rows.schema(),
            rows: Some(rows),
            limits: self.clone(),
            stop: None,
        })
    }
}

/// Turns a panic's payload into the statement's error.
fn panicked(payload: Box<dyn std::any::Any + Send>) -> Error {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown cause".into());
    tracing::error!(%message, "a statement panicked");
    Error::Internal(format!("the statement failed: {message}"))
}

struct GuardedRows {
    schema: SchemaRef,
    /// `None` once the stream ended.
    rows: Option<SendableRecordBatchStream>,
    limits: StatementLimits,
    /// Wakes the stream when it must stop; set up the first time the rows are not ready (rows
    /// already in memory never need it).
    stop: Option<Pin<Box<dyn Future<Output = Error> + Send>>>,
}

impl GuardedRows {
    fn end(&mut self, error: Error) -> Poll<Option<datafusion::error::Result<RecordBatch>>> {
        // Dropping the rows stops the work behind them.
        self.rows = None;
        Poll::Ready(Some(Err(DataFusionError::External(Box::new(error)))))
    }
}

impl Stream for GuardedRows {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = match self.rows.as_mut() {
            None => return Poll::Ready(None),
            Some(rows) => {
                std::panic::catch_unwind(AssertUnwindSafe(|| rows.as_mut().poll_next(cx)))
            }
        };
        match polled {
            Err(panic) => return self.end(panicked(panic)),
            Ok(Poll::Ready(None)) => {
                self.rows = None;
                return Poll::Ready(None);
            }
            Ok(Poll::Ready(Some(batch))) => {
                // A batch is ready, but a statement that must stop gives no more rows.
                if let Some(e) = self.limits.stopped() {
                    return self.end(e);
                }
                return Poll::Ready(Some(batch));
            }
            Ok(Poll::Pending) => {}
        }
        let limits = self.limits.clone();
        let stop = self.stop.get_or_insert_with(|| Box::pin(limits.stop()));
        match stop.as_mut().poll(cx) {
            Poll::Ready(e) => self.end(e),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl RecordBatchStream for GuardedRows {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// Parses a duration setting as PostgreSQL does: a number of milliseconds, or a number with
/// one of the units `us`, `ms`, `s`, `min`, `h`, `d`. Zero means no limit.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let millis = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" => number,
        "us" => number / 1000.0,
        "s" => number * 1000.0,
        "min" => number * 60_000.0,
        "h" => number * 3_600_000.0,
        "d" => number * 86_400_000.0,
        _ => return None,
    };
    (millis.is_finite() && millis >= 0.0 && millis <= i32::MAX as f64)
        .then(|| Duration::from_micros((millis * 1000.0).round() as u64))
}

/// A duration setting as PostgreSQL shows it: in the largest unit that divides it.
pub fn show_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms == 0 {
        return "0".into();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("min", 60_000),
        ("s", 1000),
    ] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[test]
    fn durations_read_and_show_as_in_postgresql() {
        for (text, shown) in [
            ("0", "0"),
            ("5000", "5s"),
            ("1500ms", "1500ms"),
            ("2 s", "2s"),
            ("1min", "1min"),
            ("90s", "90s"),
            ("2h", "2h"),
            ("1d", "1d"),
        ] {
            assert_eq!(
                show_duration(parse_duration(text).unwrap()),
                shown,
                "{text}"
            );
        }
        for bad in ["abc", "-5", "5 parsecs", ""] {
            assert!(parse_duration(bad).is_none(), "{bad}");
        }
    }

    #[tokio::test]
    async fn cancel_stops_the_running_message_only() {
        let interrupt = Arc::new(Interrupt::default());
        let first = interrupt.begin();
        let limits = StatementLimits::new(interrupt.clone(), first, None);
        let waiting = {
            let limits = limits.clone();
            tokio::spawn(async move {
                limits
                    .run(async {
                        std::future::pending::<()>().await;
                        Ok(())
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        interrupt.cancel();
        let err = waiting.await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), canceled().to_string());
        // the next message is not cancelled
        let next = StatementLimits::new(interrupt.clone(), interrupt.begin(), None);
        assert_eq!(next.run(async { Ok(7) }).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn deadlines_and_panics_end_the_statement() {
        let interrupt = Arc::new(Interrupt::default());
        let limits = StatementLimits::new(
            interrupt.clone(),
            interrupt.begin(),
            Some(Duration::from_millis(30)),
        );
        let err = limits
            .run(async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            })
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), timed_out().to_string());
        assert_eq!(err.sqlstate(), "57014");

        let limits = StatementLimits::new(interrupt.clone(), interrupt.begin(), None);
        let err = limits
            .run(async {
                if limits.serial > 0 {
                    panic!("boom");
                }
                Ok(())
            })
            .await
            .unwrap_err();
        assert_eq!(err.sqlstate(), "XX000");
        assert!(err.to_string().contains("boom"), "{err}");

        // a stream that never ends stops at the deadline
        let limits = StatementLimits::new(
            interrupt.clone(),
            interrupt.begin(),
            Some(Duration::from_millis(30)),
        );
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::empty());
        let endless = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
            schema.clone(),
            futures::stream::repeat_with(move || Ok(RecordBatch::new_empty(schema.clone()))).then(
                |b| async {
                    tokio::task::yield_now().await;
                    b
                },
            ),
        );
        let mut guarded = limits.guard(Box::pin(endless));
        let mut batches = 0;
        let error = loop {
            match guarded.next().await {
                Some(Ok(_)) => batches += 1,
                Some(Err(e)) => break e,
                None => panic!("the stream ended"),
            }
        };
        assert!(batches > 0);
        assert_eq!(Error::from(error).sqlstate(), "57014");
        assert!(guarded.next().await.is_none());
    }
}
