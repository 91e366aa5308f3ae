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
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use datafusion::arrow::array::Int64Array;
use tokio::sync::oneshot;

use super::graph::Graph;
use super::{ChangeBatch, Result, StreamError};
use crate::source::Source;
use crate::storage::{Snapshot, Store, WriteBatch};
use crate::table::changelog::{self, LOG_TAG, LoggedChange};
use crate::table::{Table, split_count};

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
    /// Rows read and committed, for readers of the source.
    pub committed: Arc<AtomicU64>,
}

struct SourceRun {
    flow: SourceFlow,
    /// Rows read so far.
    offset: u64,
    /// Pacing: the position and time reading (re)started from.
    paced_from: (u64, Instant),
}

/// Answers a request once it is done.
type Reply = oneshot::Sender<Result<()>>;

enum Message {
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
        catalog: Vec<(Vec<u8>, Vec<u8>)>,
        reply: Reply,
    },
    DropSource {
        id: u32,
        catalog: Vec<Vec<u8>>,
        reply: Reply,
    },
    Stop(Reply),
}

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
    tx: Sender<Message>,
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
        epoch: Duration,
    ) -> Result<Self> {
        let (applied, number, at) = committed_position(&store)?;
        let mut runs = BTreeMap::new();
        for flow in sources {
            let offset = store
                .get(&source_offset_key(flow.id))?
                .map(|v| u64::from_be_bytes(v.as_slice().try_into().unwrap_or([0; 8])))
                .unwrap_or(0);
            flow.committed.store(offset, Ordering::SeqCst);
            runs.insert(
                flow.id,
                SourceRun {
                    flow,
                    offset,
                    paced_from: (offset, Instant::now()),
                },
            );
        }
        let progress = Arc::new(Progress::default());
        progress.epoch.store(number, Ordering::SeqCst);
        progress.committed_at_ms.store(at, Ordering::SeqCst);
        progress.applied_seq.store(applied, Ordering::SeqCst);
        progress.publish(store.snapshot());
        let (tx, rx) = channel();
        let mut worker = Worker {
            store,
            lookup,
            views: views.into_iter().map(|v| (v.id, v)).collect(),
            sources: runs,
            applied_seq: applied,
            epoch: number,
            pending: false,
            waiters: Vec::new(),
            failure: None,
            progress: progress.clone(),
            interval: epoch,
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
            let _ = tx.send(Message::Changes(entries));
        })
    }

    async fn request(&self, message: impl FnOnce(Reply) -> Message) -> Result<()> {
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
        self.request(|reply| Message::AddView {
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
        self.request(|reply| Message::DropView {
            id,
            catalog,
            ranges,
            reply,
        })
        .await
    }

    /// Adds a source, committing `catalog` writes with its starting position.
    pub async fn add_source(
        &self,
        flow: SourceFlow,
        catalog: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        self.request(|reply| Message::AddSource {
            flow: Box::new(flow),
            catalog,
            reply,
        })
        .await
    }

    /// Stops reading a source and deletes the `catalog` keys.
    pub async fn drop_source(&self, id: u32, catalog: Vec<Vec<u8>>) -> Result<()> {
        self.request(|reply| Message::DropSource { id, catalog, reply })
            .await
    }

    /// Returns once every change-log entry up to `seq` is committed in every view, and every
    /// bounded source is read to its end and committed.
    pub async fn flush(&self, seq: u64) -> Result<()> {
        self.request(|reply| Message::Flush { seq, reply }).await
    }

    /// Commits what is pending and stops the thread.
    pub async fn stop(&self) -> Result<()> {
        let result = self.request(Message::Stop).await;
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

struct Worker {
    store: Store,
    lookup: Lookup,
    views: BTreeMap<u32, ViewFlow>,
    sources: BTreeMap<u32, SourceRun>,
    applied_seq: u64,
    epoch: u64,
    /// Something was applied since the last commit.
    pending: bool,
    waiters: Vec<(u64, Reply)>,
    /// Set when applying changes failed: views stay at their last commit.
    failure: Option<String>,
    progress: Arc<Progress>,
    interval: Duration,
}

impl Worker {
    fn run(&mut self, rx: Receiver<Message>) {
        if let Err(e) = self.replay() {
            self.fail(e);
        }
        let mut next_barrier = Instant::now() + self.interval;
        loop {
            let mut wait = next_barrier.saturating_duration_since(Instant::now());
            if self.failure.is_none() && !self.sources.is_empty() {
                match self.poll_sources() {
                    Ok(true) => wait = Duration::ZERO,
                    Ok(false) => wait = wait.min(SOURCE_POLL),
                    Err(e) => self.fail(e),
                }
            }
            match rx.recv_timeout(wait) {
                Ok(Message::Stop(reply)) => {
                    let _ = reply.send(self.commit());
                    return;
                }
                Ok(message) => {
                    // A fault in an operator must not take the server down: the views stop at
                    // their last commit and say why.
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        self.handle(message)
                    }));
                    if let Err(panic) = outcome {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a panic".into());
                        self.fail(StreamError::Internal(what));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.commit();
                    return;
                }
            }
            if Instant::now() >= next_barrier {
                if (self.pending || !self.waiters.is_empty())
                    && let Err(e) = self.commit()
                {
                    self.fail(e);
                }
                next_barrier = Instant::now() + self.interval;
            }
        }
    }

    fn fail(&mut self, error: StreamError) {
        tracing::error!(%error, "the dataflow stopped; views stay at their last committed epoch");
        self.failure = Some(error.to_string());
        for (_, reply) in self.waiters.drain(..) {
            let _ = reply.send(Err(StreamError::Internal(format!(
                "the dataflow stopped: {error}"
            ))));
        }
    }

    fn stopped(&self) -> Option<StreamError> {
        self.failure
            .as_ref()
            .map(|f| StreamError::Internal(format!("the dataflow stopped: {f}")))
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Changes(entries) => {
                if self.failure.is_none()
                    && let Err(e) = self.apply(entries)
                {
                    self.fail(e);
                }
            }
            Message::AddView {
                flow,
                catalog,
                reply,
            } => {
                let result = match self.stopped() {
                    Some(e) => Err(e),
                    None => self.add_view(*flow, catalog),
                };
                let _ = reply.send(result);
            }
            Message::DropView {
                id,
                catalog,
                ranges,
                reply,
            } => {
                let _ = reply.send(self.drop_view(id, catalog, ranges));
            }
            Message::Flush { seq, reply } => match self.stopped() {
                Some(e) => {
                    let _ = reply.send(Err(e));
                }
                None => {
                    self.waiters.push((seq, reply));
                    if self.caught_up(seq)
                        && let Err(e) = self.commit()
                    {
                        self.fail(e);
                    }
                }
            },
            Message::AddSource {
                flow,
                catalog,
                reply,
            } => {
                let mut batch = WriteBatch::default();
                for (key, value) in catalog {
                    batch.put(key, value);
                }
                let id = flow.id;
                self.sources.insert(
                    id,
                    SourceRun {
                        flow: *flow,
                        offset: 0,
                        paced_from: (0, Instant::now()),
                    },
                );
                let result = self.commit_with(batch);
                if result.is_err() {
                    self.sources.remove(&id);
                }
                let _ = reply.send(result);
            }
            Message::DropSource { id, catalog, reply } => {
                self.sources.remove(&id);
                let mut batch = WriteBatch::default();
                for key in catalog {
                    batch.delete(key);
                }
                batch.delete(source_offset_key(id));
                let result = if self.failure.is_some() {
                    self.store.write(batch).map_err(StreamError::from)
                } else {
                    self.commit_with(batch)
                };
                let _ = reply.send(result);
            }
            Message::Stop(_) => unreachable!("handled by run"),
        }
    }

    /// Whether a FLUSH that waits for log position `seq` can be answered by the next commit.
    fn caught_up(&self, seq: u64) -> bool {
        seq <= self.applied_seq
            && self
                .sources
                .values()
                .all(|s| s.flow.source.bound().is_none_or(|b| s.offset >= b))
    }

    /// Reads what is due from each source (at most one batch each) into the views; returns
    /// whether more is due at once.
    fn poll_sources(&mut self) -> Result<bool> {
        let ids: Vec<u32> = self.sources.keys().copied().collect();
        let mut more = false;
        for id in ids {
            let read = self.views.values().any(|v| v.graph.inputs().contains(&id));
            let Some(run) = self.sources.get_mut(&id) else {
                continue;
            };
            if !read {
                // A source is read while a view reads it; its pace starts over when one does.
                run.paced_from = (run.offset, Instant::now());
                continue;
            }
            let source = run.flow.source.clone();
            let mut due = match source.rate() {
                Some(rate) => {
                    let (from, since) = run.paced_from;
                    from + (since.elapsed().as_secs_f64() * rate) as u64
                }
                None => u64::MAX,
            };
            if let Some(bound) = source.bound() {
                due = due.min(bound);
            }
            if due <= run.offset {
                continue;
            }
            let n = (due - run.offset).min(BACKFILL_BATCH as u64) as usize;
            let rows = source
                .read(run.offset, n)
                .map_err(|e| StreamError::Internal(format!("source {}: {e}", run.flow.name)))?;
            if rows.num_rows() == 0 {
                continue;
            }
            run.offset += rows.num_rows() as u64;
            more |= due > run.offset;
            self.pending = true;
            self.push(id, &[ChangeBatch::inserts(rows)], 0)?;
        }
        Ok(more)
    }

    /// Applies the change log after the committed position (recovery).
    fn replay(&mut self) -> Result<()> {
        let entries = changelog::read_after(&self.store, self.applied_seq)
            .map_err(|e| StreamError::Internal(e.to_string()))?;
        if !entries.is_empty() {
            tracing::info!(entries = entries.len(), "replaying the change log");
            self.apply(entries)?;
            self.commit()?;
        }
        Ok(())
    }

    fn apply(&mut self, entries: Vec<LoggedChange>) -> Result<()> {
        for entry in entries {
            if entry.seq <= self.applied_seq {
                continue;
            }
            self.applied_seq = entry.seq;
            self.pending = true;
            if !self
                .views
                .values()
                .any(|v| v.graph.inputs().contains(&entry.table))
            {
                continue;
            }
            let table = (self.lookup)(entry.table).ok_or_else(|| {
                StreamError::Internal(format!("change log names unknown table {}", entry.table))
            })?;
            let values = entry
                .deleted
                .iter()
                .chain(&entry.inserted)
                .map(Vec::as_slice);
            let rows = table
                .codec()
                .decode_values(values)
                .map_err(|e| StreamError::Internal(e.to_string()))?;
            let weights = std::iter::repeat_n(-1, entry.deleted.len())
                .chain(std::iter::repeat_n(1, entry.inserted.len()));
            let changes = ChangeBatch::new(rows, Int64Array::from_iter_values(weights));
            self.push(entry.table, &[changes], 0)?;
        }
        Ok(())
    }

    /// Feeds changes of relation `input` to every view after `after` that reads it.
    fn push(&mut self, input: u32, changes: &[ChangeBatch], after: u32) -> Result<()> {
        let readers: Vec<u32> = self
            .views
            .range(after.saturating_add(1)..)
            .filter(|(_, v)| v.graph.inputs().contains(&input))
            .map(|(id, _)| *id)
            .collect();
        for id in readers {
            let mut out = Vec::new();
            if let Some(view) = self.views.get_mut(&id) {
                for batch in changes {
                    out.extend(view.graph.push(input, batch)?);
                }
            }
            if !out.is_empty() {
                self.push(id, &out, id)?;
            }
        }
        Ok(())
    }

    /// Ends the epoch and commits it, together with `extra` writes.
    fn commit_with(&mut self, extra: WriteBatch) -> Result<()> {
        let ids: Vec<u32> = self.views.keys().copied().collect();
        for id in ids {
            let out = match self.views.get_mut(&id) {
                Some(view) => view.graph.barrier()?,
                None => continue,
            };
            if !out.is_empty() {
                self.push(id, &out, id)?;
            }
        }
        let mut batch = extra;
        for view in self.views.values_mut() {
            view.graph.checkpoint(&mut batch)?;
        }
        self.epoch += 1;
        let now = chrono::Utc::now().timestamp_millis();
        let mut epoch = self.epoch.to_be_bytes().to_vec();
        epoch.extend_from_slice(&now.to_be_bytes());
        batch.put(EPOCH_KEY, epoch);
        batch.put(APPLIED_SEQ_KEY, self.applied_seq.to_be_bytes());
        for (id, run) in &self.sources {
            batch.put(source_offset_key(*id), run.offset.to_be_bytes());
        }
        batch.delete_range(
            changelog::log_key(0).as_slice(),
            changelog::log_key(self.applied_seq.saturating_add(1)).as_slice(),
        );
        debug_assert_eq!(changelog::log_key(0)[0], LOG_TAG);
        self.store.write(batch)?;
        self.progress.publish(self.store.snapshot());
        self.pending = false;
        for view in self.views.values_mut() {
            view.graph.evict();
        }
        self.progress.epoch.store(self.epoch, Ordering::SeqCst);
        self.progress.committed_at_ms.store(now, Ordering::SeqCst);
        self.progress
            .applied_seq
            .store(self.applied_seq, Ordering::SeqCst);
        for run in self.sources.values() {
            run.flow.committed.store(run.offset, Ordering::SeqCst);
        }
        let waiters = std::mem::take(&mut self.waiters);
        let (done, waiting): (Vec<_>, Vec<_>) = waiters
            .into_iter()
            .partition(|(seq, _)| self.caught_up(*seq));
        self.waiters = waiting;
        for (_, reply) in done {
            let _ = reply.send(Ok(()));
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        if let Some(e) = self.stopped() {
            return Err(e);
        }
        self.commit_with(WriteBatch::default())
    }

    fn add_view(&mut self, mut flow: ViewFlow, catalog: Vec<(Vec<u8>, Vec<u8>)>) -> Result<()> {
        // Everything before the view is committed: its inputs' stored rows are exactly what
        // the other views have seen.
        self.commit()?;
        for input in flow.graph.inputs() {
            if let Some(run) = self.sources.get(&input) {
                let mut from = 0;
                while from < run.offset {
                    let n = (run.offset - from).min(BACKFILL_BATCH as u64) as usize;
                    let rows = run.flow.source.read(from, n).map_err(|e| {
                        StreamError::Internal(format!("source {}: {e}", run.flow.name))
                    })?;
                    if rows.num_rows() == 0 {
                        break;
                    }
                    from += rows.num_rows() as u64;
                    flow.graph.push(input, &ChangeBatch::inserts(rows))?;
                }
                continue;
            }
            let table = (self.lookup)(input).ok_or_else(|| {
                StreamError::Internal(format!("view input {input} is not a table or view"))
            })?;
            backfill(&self.store, &table, |changes| {
                let out = flow.graph.push(input, &changes)?;
                debug_assert!(out.is_empty(), "a view's root emits only at barriers");
                Ok(())
            })?;
        }
        let mut batch = WriteBatch::default();
        for (key, value) in catalog {
            batch.put(key, value);
        }
        let id = flow.id;
        tracing::info!(view = flow.name, "view created");
        self.views.insert(id, flow);
        if let Err(e) = self.commit_with(batch) {
            self.views.remove(&id);
            return Err(e);
        }
        Ok(())
    }

    fn drop_view(&mut self, id: u32, catalog: Vec<Vec<u8>>, ranges: Vec<Vec<u8>>) -> Result<()> {
        self.views.remove(&id);
        let mut batch = WriteBatch::default();
        for key in catalog {
            batch.delete(key);
        }
        for prefix in ranges {
            self.store.delete_prefix_in(&mut batch, &prefix);
        }
        if self.failure.is_some() {
            self.store.write(batch)?;
            return Ok(());
        }
        self.commit_with(batch)
    }
}

/// Reads every stored row of `table` (a table or a view's storage) from one snapshot, as
/// insertions in batches.
fn backfill(
    store: &Store,
    table: &Table,
    mut apply: impl FnMut(ChangeBatch) -> Result<()>,
) -> Result<()> {
    let counted = table.def().counted;
    let mut values: Vec<Vec<u8>> = Vec::with_capacity(BACKFILL_BATCH);
    let mut weights: Vec<i64> = Vec::with_capacity(BACKFILL_BATCH);
    let mut flush = |values: &mut Vec<Vec<u8>>, weights: &mut Vec<i64>| -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        let rows = table
            .codec()
            .decode_values(values.iter().map(Vec::as_slice))
            .map_err(|e| StreamError::Internal(e.to_string()))?;
        let changes = ChangeBatch::new(rows, Int64Array::from(std::mem::take(weights)));
        values.clear();
        apply(changes)
    };
    store.scan_prefix::<StreamError>(&table.def().key_prefix(), |_, value| {
        if counted {
            let (row, count) =
                split_count(value).map_err(|e| StreamError::Corrupt(e.to_string()))?;
            values.push(row.to_vec());
            weights.push(count);
        } else {
            values.push(value.to_vec());
            weights.push(1);
        }
        if values.len() >= BACKFILL_BATCH {
            flush(&mut values, &mut weights)?;
        }
        Ok(true)
    })?;
    flush(&mut values, &mut weights)
}
