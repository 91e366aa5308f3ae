//! The runtime: one thread that drives every view's dataflow in epochs.
//!
//! Table writes arrive as change-log entries, in order. Each is applied to the views that read
//! the table at once; every epoch (100 ms by default) a barrier runs through all views in
//! creation order — which puts every view after the views it reads — and every operator's
//! changed state, every view's changed rows and the position in the change log are committed in
//! one RocksDB `WriteBatch`. Readers therefore always see one committed epoch, the same one in
//! every view. On start, the runtime replays the change log after the committed position, so a
//! crash loses nothing acknowledged and applies nothing twice.
//!
//! Creating a view commits everything pending, reads its inputs from one snapshot (the
//! backfill), and commits the view's catalog entry together with its first state.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

mod worker;

use super::graph::Graph;
use super::{Result, StreamError};
use crate::source::{Source, SourceProgress, SourceReader, SourceWatermark, Splits};
use crate::storage::{Snapshot, Store};
use crate::table::Table;
use crate::table::changelog::{self, LoggedChange};
use crate::table::watermark::WatermarkState;

/// Storage key of the last change-log position the views have applied.
pub const APPLIED_SEQ_KEY: &[u8] = b"mstream_applied_seq";
/// Storage key of the last committed epoch: number (u64) and commit time (ms since 1970, i64).
pub const EPOCH_KEY: &[u8] = b"mstream_epoch";

/// Rows per batch when a view reads its inputs at creation, and per read from a source.
const BACKFILL_BATCH: usize = 8192;

/// The longest the runtime sleeps while a paced source may have rows due.
const SOURCE_POLL: Duration = Duration::from_millis(5);

/// Storage key of source `id`'s committed position.
pub fn source_offset_key(id: u32) -> Vec<u8> {
    let mut key = b"msource/".to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// Storage key of where the watermark of append-only table `id` stands in the rows the
/// dataflow has applied (tables with `WATERMARK FOR`).
pub fn table_watermark_key(id: u32) -> Vec<u8> {
    let mut key = TABLE_WATERMARK_PREFIX.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The prefix of [`table_watermark_key`]s.
const TABLE_WATERMARK_PREFIX: &[u8] = b"mflow_table_watermark/";

/// Storage key of source `id`'s watermark (sources that have one).
pub fn source_watermark_key(id: u32) -> Vec<u8> {
    let mut key = b"msource_watermark/".to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The prefix of the storage keys of source `id`'s rejected records.
pub fn rejected_prefix(id: u32) -> Vec<u8> {
    let mut key = REJECTED_PREFIX.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The prefix of every source's rejected records: source id, then a number that grows with
/// each rejection (the source's count of rejected records when it was rejected).
pub const REJECTED_PREFIX: &[u8] = b"mrejected/";

/// Adds the records `run` rejected since the last commit to `batch`, and deletes those past the
/// source's retention.
fn keep_rejected(batch: &mut crate::storage::WriteBatch, id: u32, run: &mut SourceRun) {
    let rejected = std::mem::take(&mut run.rejected);
    let total = run.splits.mark().rejected;
    write_rejected(batch, id, total, rejected, run.flow.rejected_retention);
}

/// Adds `rejected`, the last of `total` records source (or table) `id` has rejected, to
/// `batch`, and deletes all but the newest `retention`.
pub fn write_rejected(
    batch: &mut crate::storage::WriteBatch,
    id: u32,
    total: u64,
    rejected: Vec<crate::source::Rejected>,
    retention: u64,
) {
    if rejected.is_empty() {
        return;
    }
    let now = chrono::Utc::now().timestamp_millis();
    let first = total.saturating_sub(rejected.len() as u64);
    for (n, rejected) in rejected.into_iter().enumerate() {
        let mut key = rejected_prefix(id);
        key.extend_from_slice(&(first + n as u64).to_be_bytes());
        batch.put(key, rejected.encode(now));
    }
    let keep_from = total.saturating_sub(retention);
    if keep_from > 0 {
        let mut end = rejected_prefix(id);
        end.extend_from_slice(&keep_from.to_be_bytes());
        batch.delete_range(rejected_prefix(id).as_slice(), end.as_slice());
    }
}

/// Finds the table (or a view's storage) with an id.
pub type Lookup = Arc<dyn Fn(u32) -> Option<Arc<Table>> + Send + Sync>;

/// A view ready to run.
pub struct ViewFlow {
    /// The view's id.
    pub id: u32,
    /// Its name, for logs.
    pub name: String,
    /// Its dataflow, root included.
    pub graph: Graph,
}

/// A source ready to be read.
pub struct SourceFlow {
    /// The source's id: views name it as their input.
    pub id: u32,
    /// Its name, for logs.
    pub name: String,
    /// Its rows.
    pub source: Arc<dyn Source>,
    /// How far the views have read and committed, for readers of the source.
    pub progress: Arc<SourceProgress>,
    /// Its watermark, if it has one; late rows never reach a view.
    pub watermark: Option<Arc<SourceWatermark>>,
    /// How many rejected records to keep (the newest).
    pub rejected_retention: u64,
}

/// A sink ready to take a view's changes.
pub struct SinkFlow {
    /// The sink's id: its outbox's key.
    pub id: u32,
    /// Its name, for logs.
    pub name: String,
    /// The view whose changes it takes.
    pub input: u32,
    /// Its delivery: told of each epoch added; sources wait while its backlog is long.
    pub progress: Arc<crate::sink::SinkProgress>,
}

struct SinkRun {
    flow: SinkFlow,
    /// The view's changes in the epoch being run.
    pending: Vec<super::ChangeBatch>,
}

struct SourceRun {
    flow: SourceFlow,
    /// Where each split stands after the records read so far.
    splits: Splits,
    /// Reads on from `splits`, opened when a view first reads the source.
    reader: Option<Box<dyn SourceReader>>,
    /// Pacing: the records read and the time reading (re)started from.
    paced_from: (u64, Instant),
    /// Records rejected since the last commit, kept with it.
    rejected: Vec<crate::source::Rejected>,
    /// The highest watermark sent to the views (event-time units).
    emitted: Option<i64>,
}

impl SourceRun {
    fn new(flow: SourceFlow, splits: Splits) -> Self {
        Self {
            paced_from: (splits.records(), Instant::now()),
            emitted: splits.mark().current,
            flow,
            splits,
            reader: None,
            rejected: Vec::new(),
        }
    }
}

/// How long epochs last: a commit follows as soon as everything that arrived is applied and
/// `shortest` has passed since the last one, and at the latest `longest` after it while
/// changes keep arriving.
#[derive(Debug, Clone, Copy)]
pub struct Epochs {
    /// The shortest time between two commits.
    pub shortest: Duration,
    /// The longest an epoch lasts.
    pub longest: Duration,
}

/// Answers a request once it is done.
type Reply = oneshot::Sender<Result<()>>;

/// A request to the dataflow thread.
enum Request {
    Changes(Vec<LoggedChange>),
    AddView {
        flow: Box<ViewFlow>,
        /// Catalog writes committed with the view's first state.
        catalog: Vec<(Vec<u8>, Vec<u8>)>,
        reply: Reply,
    },
    DropView {
        id: u32,
        /// Catalog keys deleted with the view's state.
        catalog: Vec<Vec<u8>>,
        /// Key ranges deleted (state and rows).
        ranges: Vec<Vec<u8>>,
        reply: Reply,
    },
    Flush {
        seq: u64,
        reply: Reply,
    },
    AddSource {
        flow: Box<SourceFlow>,
        /// Where reading starts.
        splits: Splits,
        catalog: Vec<(Vec<u8>, Vec<u8>)>,
        reply: Reply,
    },
    DropSource {
        id: u32,
        catalog: Vec<Vec<u8>>,
        reply: Reply,
    },
    AddSink {
        flow: Box<SinkFlow>,
        /// The dataflow of the sink's own query, if it has one.
        query: Option<Box<ViewFlow>>,
        /// Whether the sink starts with the view's rows as they are.
        snapshot: bool,
        catalog: Vec<(Vec<u8>, Vec<u8>)>,
        reply: Reply,
    },
    DropSink {
        id: u32,
        catalog: Vec<Vec<u8>>,
        /// Key prefixes to delete: the state of the sink's own query.
        ranges: Vec<Vec<u8>>,
        reply: Reply,
    },
    /// Runs `work` between two epochs, with everything before committed and nothing after
    /// begun; what it returns is committed with the next epoch.
    Exclusive {
        work: ExclusiveWork,
        reply: Reply,
    },
    /// A source has records to read (a webhook accepted some): read the sources now rather
    /// than at the next poll.
    Wake,
    Stop(Reply),
}

/// Work run between epochs (see [`Runtime::exclusive`]).
pub type ExclusiveWork = Box<dyn FnOnce(&Store) -> Option<crate::storage::WriteBatch> + Send>;

/// What readers can see of the runtime.
#[derive(Debug, Default)]
pub struct Progress {
    /// Last committed epoch.
    pub epoch: AtomicU64,
    /// When it was committed (ms since 1970).
    pub committed_at_ms: AtomicI64,
    /// Last change-log position applied and committed.
    pub applied_seq: AtomicU64,
    /// The store as of the last commit: what readers of views read.
    snapshot: std::sync::RwLock<Option<Arc<Snapshot>>>,
}

impl Progress {
    /// The store as of the last committed epoch.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn publish(&self, snapshot: Snapshot) {
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(snapshot));
    }
}

/// Handle to the runtime thread.
pub struct Runtime {
    tx: Sender<Request>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    progress: Arc<Progress>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("progress", &self.progress)
            .finish()
    }
}

impl Runtime {
    /// Starts the runtime over `views` (recovered from the catalog, in id order), first replaying
    /// the change log after the committed position.
    pub fn start(
        store: Store,
        lookup: Lookup,
        views: Vec<ViewFlow>,
        sources: Vec<SourceFlow>,
        sinks: Vec<SinkFlow>,
        epochs: Epochs,
    ) -> Result<Self> {
        let (applied, number, at) = committed_position(&store)?;
        let mut runs = BTreeMap::new();
        for flow in sources {
            // Before sources had splits, the watermark was stored apart.
            let legacy_mark = store
                .get(&source_watermark_key(flow.id))?
                .map(|v| WatermarkState::decode(&v))
                .transpose()
                .map_err(|e| StreamError::Corrupt(e.to_string()))?;
            let splits = match store.get(&source_offset_key(flow.id))? {
                Some(v) => Splits::decode(&v, legacy_mark).ok_or_else(|| {
                    StreamError::Corrupt(format!("stored position of source {}", flow.name))
                })?,
                None => Splits::single(),
            };
            flow.progress.set_committed(&splits);
            runs.insert(flow.id, SourceRun::new(flow, splits));
        }
        let mut table_watermarks = BTreeMap::new();
        store.scan_prefix::<StreamError>(TABLE_WATERMARK_PREFIX, |key, value| {
            let id = key[TABLE_WATERMARK_PREFIX.len()..]
                .try_into()
                .map(u32::from_be_bytes)
                .map_err(|_| StreamError::Corrupt("table watermark key".into()))?;
            let state =
                WatermarkState::decode(value).map_err(|e| StreamError::Corrupt(e.to_string()))?;
            table_watermarks.insert(id, state);
            Ok(true)
        })?;
        let progress = Arc::new(Progress::default());
        progress.epoch.store(number, Ordering::SeqCst);
        progress.committed_at_ms.store(at, Ordering::SeqCst);
        progress.applied_seq.store(applied, Ordering::SeqCst);
        progress.publish(store.snapshot());
        let (tx, rx) = channel();
        let mut worker = worker::Worker {
            store,
            lookup,
            views: views.into_iter().map(|v| (v.id, v)).collect(),
            sources: runs,
            sinks: sinks
                .into_iter()
                .map(|flow| {
                    (
                        flow.id,
                        SinkRun {
                            flow,
                            pending: Vec::new(),
                        },
                    )
                })
                .collect(),
            table_watermarks,
            watermarks: BTreeMap::new(),
            applied_seq: applied,
            epoch: number,
            pending: false,
            waiters: Vec::new(),
            failure: None,
            progress: progress.clone(),
            interval: epochs.longest,
            min_interval: epochs.shortest.min(epochs.longest),
        };
        let thread = std::thread::Builder::new()
            .name("augur-dataflow".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| StreamError::Internal(format!("cannot start the dataflow thread: {e}")))?;
        Ok(Self {
            tx,
            thread: std::sync::Mutex::new(Some(thread)),
            progress,
        })
    }

    /// The committed epoch and position.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// A subscriber for the change log that feeds this runtime.
    pub fn subscriber(&self) -> changelog::Subscriber {
        let tx = std::sync::Mutex::new(self.tx.clone());
        Arc::new(move |entries| {
            let tx = tx.lock().unwrap_or_else(|e| e.into_inner());
            let _ = tx.send(Request::Changes(entries));
        })
    }

    /// Tells the dataflow that a source has new records, so that it reads them at once.
    pub fn wake(&self) {
        let _ = self.tx.send(Request::Wake);
    }

    async fn request(&self, message: impl FnOnce(Reply) -> Request) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(message(reply))
            .map_err(|_| StreamError::Internal("the dataflow has stopped".into()))?;
        answer
            .await
            .map_err(|_| StreamError::Internal("the dataflow has stopped".into()))?
    }

    /// Adds a view: backfills it from its inputs and commits it with `catalog` writes.
    pub async fn add_view(&self, flow: ViewFlow, catalog: Vec<(Vec<u8>, Vec<u8>)>) -> Result<()> {
        self.request(|reply| Request::AddView {
            flow: Box::new(flow),
            catalog,
            reply,
        })
        .await
    }

    /// Removes a view and deletes `ranges` and the `catalog` keys in one commit.
    pub async fn drop_view(
        &self,
        id: u32,
        catalog: Vec<Vec<u8>>,
        ranges: Vec<Vec<u8>>,
    ) -> Result<()> {
        self.request(|reply| Request::DropView {
            id,
            catalog,
            ranges,
            reply,
        })
        .await
    }

    /// Adds a source, committing `catalog` writes with its starting position, `splits`.
    pub async fn add_source(
        &self,
        flow: SourceFlow,
        splits: Splits,
        catalog: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        self.request(|reply| Request::AddSource {
            flow: Box::new(flow),
            splits,
            catalog,
            reply,
        })
        .await
    }

    /// Stops reading a source and deletes the `catalog` keys.
    pub async fn drop_source(&self, id: u32, catalog: Vec<Vec<u8>>) -> Result<()> {
        self.request(|reply| Request::DropSource { id, catalog, reply })
            .await
    }

    /// Adds a sink of a view's changes, or of its own query's (`query`, the dataflow with the
    /// sink's id), committing `catalog` writes with it; with `snapshot`, its first epoch holds
    /// the rows as they are.
    pub async fn add_sink(
        &self,
        flow: SinkFlow,
        query: Option<ViewFlow>,
        snapshot: bool,
        catalog: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        self.request(|reply| Request::AddSink {
            flow: Box::new(flow),
            query: query.map(Box::new),
            snapshot,
            catalog,
            reply,
        })
        .await
    }

    /// Stops giving a sink changes (and stops its own query) and deletes its outbox, the
    /// `catalog` keys and the key prefixes `ranges`.
    pub async fn drop_sink(
        &self,
        id: u32,
        catalog: Vec<Vec<u8>>,
        ranges: Vec<Vec<u8>>,
    ) -> Result<()> {
        self.request(|reply| Request::DropSink {
            id,
            catalog,
            ranges,
            reply,
        })
        .await
    }

    /// Returns once every change-log entry up to `seq` is committed in every view, and every
    /// bounded source is read to its end and committed.
    pub async fn flush(&self, seq: u64) -> Result<()> {
        self.request(|reply| Request::Flush { seq, reply }).await
    }

    /// Runs `work` on the dataflow's thread between two epochs: every change before it is
    /// committed and no view writes until it returns, so it sees views' storage still. The
    /// writes it returns are committed with the next epoch.
    pub async fn exclusive(&self, work: ExclusiveWork) -> Result<()> {
        self.request(|reply| Request::Exclusive { work, reply })
            .await
    }

    /// Commits what is pending and stops the thread.
    pub async fn stop(&self) -> Result<()> {
        let result = self.request(Request::Stop).await;
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        result
    }
}

/// `(applied change-log position, epoch, commit time)` as last committed.
fn committed_position(store: &Store) -> Result<(u64, u64, i64)> {
    let applied = store
        .get(APPLIED_SEQ_KEY)?
        .map(|v| u64::from_be_bytes(v.as_slice().try_into().unwrap_or([0; 8])))
        .unwrap_or(0);
    let (epoch, at) = match store.get(EPOCH_KEY)? {
        Some(v) if v.len() == 16 => (
            u64::from_be_bytes(v[..8].try_into().unwrap_or([0; 8])),
            i64::from_be_bytes(v[8..].try_into().unwrap_or([0; 8])),
        ),
        _ => (0, 0),
    };
    Ok((applied, epoch, at))
}
