//! Incremental dataflow: the operators that keep materialized views up to date.
//!
//! A view's query becomes a tree of [`Operator`]s (built by `planner`). One [`Message`] type flows
//! along every edge, from the runtime into a view's [`graph`], between its operators, and from a
//! view to the views and sinks that read it: [`ChangeBatch`]es (rows with a weight of +1 or −1
//! each), watermarks, and the barrier that ends each epoch. Every operator turns the changes of
//! its inputs into the changes of its output, so the view at the root changes by exactly what
//! its query's answer changes by. At the barrier operators that hold changes back (aggregates
//! emit once per epoch) emit them, then every operator writes the state it changed into the
//! epoch's one RocksDB `WriteBatch` ([`runtime`]).
//!
//! State lives in memory while hot and in RocksDB under `s` + view id + operator id, with keys in
//! Arrow's row format. Depends on `storage`, `table` (the change log, view storage) and `source`.

pub mod aggregate;
pub mod change;
pub mod emit;
pub mod filter;
pub mod graph;
pub mod join;
pub mod materialize;
pub mod memo;
pub mod message;
pub mod over;
pub mod project;
pub mod runtime;
pub mod session_window;
pub mod sliding;
pub mod state;
pub mod temporal;
pub mod topn;
pub mod union;
pub mod watermark;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

pub use change::ChangeBatch;
pub use message::Message;
pub use watermark::Watermark;

/// Rows of one view whose expressions failed and got NULL (a model run that failed, a division
/// by zero), since the server started; shown in `augur_catalog.views`.
#[derive(Debug, Default)]
pub struct ExprErrors {
    /// Rows that got NULL.
    pub rows: std::sync::atomic::AtomicU64,
    /// The last failure.
    pub last: std::sync::Mutex<Option<String>>,
}

impl ExprErrors {
    /// Counts `rows` rows that failed with `error`.
    pub fn record(&self, rows: u64, error: String) {
        self.rows
            .fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }
}

use crate::storage::{StorageError, WriteBatch};

/// Errors of the dataflow layer.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The query uses something Augur cannot maintain incrementally; the text names it.
    #[error("{0} is not supported in a materialized view")]
    NotSupported(String),
    /// Planning or evaluating an expression failed.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// An Arrow kernel failed.
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    /// Reading or writing state failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A table-layer operation (row encoding) failed.
    #[error(transparent)]
    Table(Box<crate::Error>),
    /// Stored state could not be decoded.
    #[error("corrupt operator state: {0}")]
    Corrupt(String),
    /// A fault in Augur.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The dataflow layer's result type.
pub type Result<T, E = StreamError> = std::result::Result<T, E>;

impl From<StreamError> for crate::Error {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::NotSupported(what) => {
                crate::Error::NotSupported(format!("{what} in a materialized view"))
            }
            StreamError::DataFusion(e) => crate::Error::from(e),
            StreamError::Arrow(e) => crate::Error::from(e),
            StreamError::Storage(e) => crate::Error::Storage(e),
            StreamError::Table(e) => *e,
            StreamError::Corrupt(m) => crate::Error::Internal(format!("corrupt state: {m}")),
            StreamError::Internal(m) => crate::Error::Internal(m),
        }
    }
}

impl From<crate::Error> for StreamError {
    fn from(e: crate::Error) -> Self {
        StreamError::Table(Box::new(e))
    }
}

/// One incremental operator: it turns changes of its inputs into changes of its output.
///
/// The runtime calls [`Operator::process`] for every change batch that reaches the operator,
/// then, once per epoch, [`Operator::on_barrier`] (to emit what was held back) and
/// [`Operator::checkpoint`] (to persist what changed). Operators are driven by one thread at a
/// time and never see two calls at once.
pub trait Operator: Send + std::fmt::Debug {
    /// Applies `changes` that arrived on input `side` (0, or 1 for a join's right input) and
    /// appends the resulting changes of the output to `out`.
    fn process(
        &mut self,
        side: usize,
        changes: ChangeBatch,
        out: &mut Vec<ChangeBatch>,
    ) -> Result<()>;

    /// The epoch ends: appends the changes held back until now to `out`. All inputs have
    /// delivered their changes of this epoch before this is called.
    fn on_barrier(&mut self, _out: &mut Vec<ChangeBatch>) -> Result<()> {
        Ok(())
    }

    /// A watermark arrived on input `side`, after every change it covers: appends the
    /// watermarks it gives the output to `out`. An operator that holds changes back until the
    /// barrier holds their watermarks too, and gives them in [`Operator::held_watermarks`].
    /// The default drops it: the output carries no watermark.
    fn on_watermark(
        &mut self,
        _side: usize,
        _watermark: Watermark,
        _out: &mut Vec<Watermark>,
    ) -> Result<()> {
        Ok(())
    }

    /// Right after [`Operator::on_barrier`]: appends the watermarks held back until the
    /// changes emitted there to `out`.
    fn held_watermarks(&mut self, _out: &mut Vec<Watermark>) {}

    /// Adds the state changed since the last checkpoint to `batch`, which the runtime commits
    /// together with every other operator's and the sources' positions.
    fn checkpoint(&mut self, _batch: &mut WriteBatch) -> Result<()> {
        Ok(())
    }

    /// After a commit: drops cached state beyond the operator's memory share. Only state that is
    /// safely in RocksDB may be dropped.
    fn evict(&mut self) {}

    /// The schema of the changes this operator emits.
    fn schema(&self) -> SchemaRef;

    /// One line for `EXPLAIN CREATE MATERIALIZED VIEW`.
    fn explain(&self) -> String;
}

/// A reproducible random number source for the randomized tests of operators: each call gives
/// a number below its argument (xorshift64 from `seed`).
#[cfg(test)]
pub(crate) fn xorshift(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    }
}
