//! The dataflow thread: applies changes, reads sources, runs barriers and commits epochs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use datafusion::arrow::array::Int64Array;

use super::{
    APPLIED_SEQ_KEY, BACKFILL_BATCH, EPOCH_KEY, Lookup, Progress, Reply, Request, SOURCE_POLL,
    SinkRun, SourceRun, ViewFlow, source_offset_key, source_watermark_key, table_watermark_key,
};
use crate::source::OnTimeRows;
use crate::storage::{Store, WriteBatch};
use crate::stream::message::chunks;
use crate::stream::{ChangeBatch, Message, Result, StreamError, Watermark};
use crate::table::Table;
use crate::table::changelog::{self, LOG_TAG, LoggedChange};
use crate::table::watermark::WatermarkState;

/// The state of the dataflow thread.
pub(super) struct Worker {
    pub(super) store: Store,
    pub(super) lookup: Lookup,
    pub(super) views: BTreeMap<u32, ViewFlow>,
    pub(super) sources: BTreeMap<u32, SourceRun>,
    pub(super) sinks: BTreeMap<u32, SinkRun>,
    /// Where the watermarks of append-only tables with one stand in the rows applied.
    pub(super) table_watermarks: BTreeMap<u32, WatermarkState>,
    /// The last watermark of each column of each relation (sources, tables, views) sent to
    /// the views: what a view created later, or a restarted dataflow, starts from.
    pub(super) watermarks: BTreeMap<u32, BTreeMap<usize, Watermark>>,
    pub(super) applied_seq: u64,
    pub(super) epoch: u64,
    /// Something was applied since the last commit.
    pub(super) pending: bool,
    pub(super) waiters: Vec<(u64, Reply)>,
    /// Set when applying changes failed: views stay at their last commit.
    pub(super) failure: Option<String>,
    pub(super) progress: Arc<Progress>,
    /// The longest an epoch lasts while changes keep arriving.
    pub(super) interval: Duration,
    /// The shortest time between two commits.
    pub(super) min_interval: Duration,
}

impl Worker {
    /// Runs until stopped: replays the log, then serves requests and epochs.
    ///
    /// An epoch commits once everything that has arrived is applied (no request queued, no
    /// source with rows due at once) and `min_interval` has passed since the last commit — so a
    /// write is visible within a few milliseconds while the server keeps up — and at the latest
    /// `interval` after the last commit while changes keep arriving, which folds the changes of
    /// a busy stream into few writes per key.
    pub(super) fn run(&mut self, rx: Receiver<Request>) {
        if let Err(e) = self.replay().and_then(|()| self.send_stored_watermarks()) {
            self.fail(e);
        }
        let mut last_commit = Instant::now();
        loop {
            let mut more_due = false;
            if self.failure.is_none() && !self.sources.is_empty() {
                match self.poll_sources() {
                    Ok(more) => more_due = more,
                    Err(e) => self.fail(e),
                }
            }
            let due = self.due();
            let latest = last_commit + self.interval;
            let wait = if more_due {
                Duration::ZERO
            } else {
                let until = if due {
                    latest.min(last_commit + self.min_interval)
                } else {
                    latest
                };
                let wait = until.saturating_duration_since(Instant::now());
                if self.sources.is_empty() {
                    wait
                } else {
                    wait.min(SOURCE_POLL)
                }
            };
            let mut next = rx.recv_timeout(wait);
            // Everything queued is served before the epoch may end: a burst of writes is one
            // epoch, not one each.
            let mut drained = false;
            loop {
                match next {
                    Ok(Request::Stop(reply)) => {
                        let _ = reply.send(self.commit_durably());
                        return;
                    }
                    Ok(request) => self.serve(request),
                    Err(RecvTimeoutError::Timeout) => {
                        drained = true;
                        break;
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        let _ = self.commit_durably();
                        return;
                    }
                }
                if Instant::now() >= latest {
                    break;
                }
                next = rx.recv_timeout(Duration::ZERO);
            }
            let idle = !more_due && drained;
            let now = Instant::now();
            let due = self.due();
            if due && (now >= latest || (idle && now >= last_commit + self.min_interval)) {
                if let Err(e) = self.commit() {
                    self.fail(e);
                }
                last_commit = Instant::now();
            } else if !due && now >= latest {
                last_commit = now;
            }
        }
    }

    /// Whether an epoch has something to commit: changes applied or a FLUSH waiting (nothing
    /// after a failure: the views stay at their last commit).
    fn due(&self) -> bool {
        self.failure.is_none() && (self.pending || !self.waiters.is_empty())
    }

    /// Serves one request; a fault in an operator must not take the server down: the views
    /// stop at their last commit and say why.
    fn serve(&mut self, request: Request) {
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handle(request)));
        if let Err(panic) = outcome {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            self.fail(StreamError::Internal(what));
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

    fn handle(&mut self, request: Request) {
        match request {
            // The loop reads the sources once the queue is drained.
            Request::Wake => {}
            Request::Changes(entries) => {
                if self.failure.is_none()
                    && let Err(e) = self.apply(entries)
                {
                    self.fail(e);
                }
            }
            Request::AddView {
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
            Request::DropView {
                id,
                catalog,
                ranges,
                reply,
            } => {
                let _ = reply.send(self.drop_view(id, catalog, ranges));
            }
            Request::Flush { seq, reply } => match self.stopped() {
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
            Request::AddSource {
                flow,
                splits,
                catalog,
                reply,
            } => {
                let mut batch = WriteBatch::default();
                for (key, value) in catalog {
                    batch.put(key, value);
                }
                let id = flow.id;
                self.sources.insert(id, SourceRun::new(*flow, splits));
                let result = self.commit_with(batch);
                if result.is_err() {
                    self.sources.remove(&id);
                }
                let _ = reply.send(result);
            }
            Request::DropSource { id, catalog, reply } => {
                self.sources.remove(&id);
                let mut batch = WriteBatch::default();
                for key in catalog {
                    batch.delete(key);
                }
                batch.delete(source_offset_key(id));
                batch.delete(source_watermark_key(id));
                // What a webhook source was sent.
                batch.delete(crate::source::webhook::next_key(id));
                self.store
                    .delete_prefix_in(&mut batch, &crate::source::webhook::records_prefix(id));
                self.store
                    .delete_prefix_in(&mut batch, &super::rejected_prefix(id));
                let result = if self.failure.is_some() {
                    self.store.write(batch).map_err(StreamError::from)
                } else {
                    self.commit_with(batch)
                };
                let _ = reply.send(result);
            }
            Request::AddSink {
                flow,
                query,
                snapshot,
                catalog,
                reply,
            } => {
                let result = match self.stopped() {
                    Some(e) => Err(e),
                    None => self.add_sink(*flow, query.map(|q| *q), snapshot, catalog),
                };
                let _ = reply.send(result);
            }
            Request::DropSink {
                id,
                catalog,
                ranges,
                reply,
            } => {
                self.sinks.remove(&id);
                // A sink's own query goes with it.
                self.views.remove(&id);
                let mut batch = WriteBatch::default();
                for key in catalog {
                    batch.delete(key);
                }
                for prefix in ranges {
                    self.store.delete_prefix_in(&mut batch, &prefix);
                }
                batch.delete(crate::sink::delivered_key(id));
                self.store
                    .delete_prefix_in(&mut batch, &crate::sink::outbox_prefix(id));
                let result = if self.failure.is_some() {
                    self.store.write(batch).map_err(StreamError::from)
                } else {
                    self.commit_with(batch)
                };
                let _ = reply.send(result);
            }
            Request::Exclusive { work, reply } => {
                let result = self.commit().and_then(|()| match work(&self.store) {
                    Some(batch) => self.commit_with(batch),
                    None => Ok(()),
                });
                let _ = reply.send(result);
            }
            Request::Stop(_) => unreachable!("handled by run"),
        }
    }

    /// Whether a FLUSH that waits for log position `seq` can be answered by the next commit:
    /// the log is applied and every bounded source a view reads is read to its end (a source no
    /// view reads is not read at all).
    fn caught_up(&self, seq: u64) -> bool {
        seq <= self.applied_seq
            && self.sources.iter().all(|(id, s)| {
                s.flow.source.read_to_end(&s.splits)
                    || !self.views.values().any(|v| v.graph.reads(*id))
            })
    }

    /// Reads what is due from each source (at most one batch each) into the views; returns
    /// whether more is due at once.
    fn poll_sources(&mut self) -> Result<bool> {
        // A sink that has fallen behind holds the sources back: memory and the outbox stay
        // bounded.
        if self
            .sinks
            .values()
            .any(|s| s.flow.progress.backlog() >= crate::sink::MAX_BACKLOG)
        {
            return Ok(false);
        }
        let ids: Vec<u32> = self.sources.keys().copied().collect();
        let mut more = false;
        for id in ids {
            let read = self.views.values().any(|v| v.graph.reads(id));
            let Some(run) = self.sources.get_mut(&id) else {
                continue;
            };
            if !read {
                // A source is read while a view reads it; its pace starts over when one does.
                run.paced_from = (run.splits.records(), Instant::now());
                run.reader = None;
                continue;
            }
            let source = run.flow.source.clone();
            let done = run.splits.records();
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
            if due <= done {
                continue;
            }
            let name = run.flow.name.clone();
            // A reader's fault stops only its source, which shows it as its last_error and is
            // read again from where the views are.
            if run.reader.is_none() {
                match source.reader(&run.splits) {
                    Ok(reader) => run.reader = Some(reader),
                    Err(e) => {
                        run.flow.progress.set_last_error(Some(e.to_string()));
                        continue;
                    }
                }
            }
            let Some(reader) = run.reader.as_mut() else {
                continue;
            };
            let n = (due - done).min(BACKFILL_BATCH as u64) as usize;
            let batch = match reader.next(n) {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(source = name, "reading the source failed: {e}");
                    run.flow.progress.set_last_error(Some(e.to_string()));
                    run.reader = None;
                    continue;
                }
            };
            run.flow.progress.set_last_error(reader.last_error());
            run.flow.progress.set_ends(reader.ends());
            let Some(batch) = batch else {
                continue;
            };
            run.splits.apply(&batch, batch.rejected.len() as u64);
            run.rejected.extend(batch.rejected);
            // Only the newest are kept: an epoch of bad records stays within the retention.
            let over = run
                .rejected
                .len()
                .saturating_sub(run.flow.rejected_retention as usize);
            run.rejected.drain(..over);
            more |= due > run.splits.records();
            self.pending = true;
            let rows = match &run.flow.watermark {
                Some(w) => {
                    let state = &mut run.splits.0.entry(batch.split).or_default().mark;
                    w.watermark
                        .filter(&batch.rows, state)
                        .map_err(|e| StreamError::Internal(format!("source {name}: {e}")))?
                }
                None => batch.rows,
            };
            // The source's watermark only rises: a partition whose first row comes late (one
            // added later, or idle until now) does not take it back.
            let mark = run.splits.mark();
            let watermark = match &run.flow.watermark {
                Some(w) if mark.current > run.emitted => {
                    run.emitted = mark.current;
                    source_mark(&w.watermark, &mark)?
                }
                _ => None,
            };
            let mut messages = Vec::with_capacity(2);
            if rows.num_rows() > 0 {
                messages.push(Message::Chunk(ChangeBatch::inserts(rows)));
            }
            messages.extend(watermark.map(Message::Watermark));
            self.push(id, &messages, 0)?;
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
            let read = self.views.values().any(|v| v.graph.reads(entry.table));
            let table = match (self.lookup)(entry.table) {
                Some(table) => table,
                None if !read => continue,
                None => {
                    return Err(StreamError::Internal(format!(
                        "change log names unknown table {}",
                        entry.table
                    )));
                }
            };
            // A table with a watermark keeps it up to date for views created later.
            if !read && table.watermark().is_none() {
                continue;
            }
            let values = entry
                .deleted
                .iter()
                .chain(&entry.inserted)
                .map(Vec::as_slice);
            let rows = table
                .codec()
                .decode_values(values)
                .map_err(|e| StreamError::Internal(e.to_string()))?;
            // An append-only table's rows raise its watermark as they are applied.
            let watermark = match table.watermark() {
                Some(w) if entry.deleted.is_empty() => {
                    let state = self.table_watermarks.entry(entry.table).or_default();
                    let before = state.current;
                    w.judge(&rows, state)
                        .map_err(|e| StreamError::Internal(e.to_string()))?;
                    if state.current != before {
                        source_mark(w, state)?
                    } else {
                        None
                    }
                }
                _ => None,
            };
            let weights = std::iter::repeat_n(-1, entry.deleted.len())
                .chain(std::iter::repeat_n(1, entry.inserted.len()));
            let mut messages = Vec::with_capacity(2);
            if read {
                let changes = ChangeBatch::new(rows, Int64Array::from_iter_values(weights));
                messages.push(Message::Chunk(changes));
            }
            messages.extend(watermark.map(Message::Watermark));
            self.push(entry.table, &messages, 0)?;
        }
        Ok(())
    }

    /// The views after `after` (in id order) that read relation `input`.
    fn readers(&self, input: u32, after: u32) -> Vec<u32> {
        self.views
            .range(after.saturating_add(1)..)
            .filter(|(_, v)| v.graph.reads(input))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Feeds `messages` of relation `input` (its changes and watermarks, in order) to every
    /// view after `after` that reads it and to the sinks of it, and what they give their
    /// outputs on to the views and sinks that read those.
    fn push(&mut self, input: u32, messages: &[Message], after: u32) -> Result<()> {
        for message in messages {
            if let Message::Watermark(watermark) = message {
                self.watermarks
                    .entry(input)
                    .or_default()
                    .insert(watermark.column, watermark.clone());
            }
        }
        for sink in self.sinks.values_mut() {
            if sink.flow.input == input {
                sink.pending.extend(chunks(messages).cloned());
            }
        }
        for id in self.readers(input, after) {
            let mut out = Vec::new();
            if let Some(view) = self.views.get_mut(&id) {
                for message in messages {
                    out.extend(view.graph.push(input, message.clone())?);
                }
            }
            if !out.is_empty() {
                self.push(id, &out, id)?;
            }
        }
        Ok(())
    }

    /// After a restart: sends where the watermarks of sources and tables stood at the last
    /// commit, before any new row.
    fn send_stored_watermarks(&mut self) -> Result<()> {
        let mut marks = Vec::new();
        for (id, run) in &self.sources {
            if let Some(w) = &run.flow.watermark
                && let Some(mark) = source_mark(&w.watermark, &run.splits.mark())?
            {
                marks.push((*id, mark));
            }
        }
        for (id, state) in &self.table_watermarks {
            if let Some(table) = (self.lookup)(*id)
                && let Some(w) = table.watermark()
                && let Some(mark) = source_mark(w, state)?
            {
                marks.push((*id, mark));
            }
        }
        for (id, mark) in marks {
            self.push(id, &[Message::Watermark(mark)], 0)?;
        }
        Ok(())
    }

    /// Ends the epoch and commits it, together with `extra` writes.
    ///
    /// An epoch is written without waiting for the disk unless it must outlast a machine
    /// crash: views derive from acknowledged table writes (each already on disk) and from
    /// sources that are read again from the committed position, so an epoch lost with the
    /// machine is computed again, the same, from the change log and the sources at restart.
    /// RocksDB's log is written in order and recovered to a consistent point, so what survives
    /// is always a prefix of the epochs, and the next write that waits (an acknowledged table
    /// write) makes every earlier epoch durable with it. An epoch waits for the disk when it
    /// carries `extra` writes (catalog changes), when it stages sink output (delivered
    /// elsewhere once committed), and when it answers a FLUSH.
    fn commit_with(&mut self, extra: WriteBatch) -> Result<()> {
        let durable = !extra.is_empty() || !self.waiters.is_empty();
        self.commit_epoch(extra, durable)
    }

    /// [`Worker::commit_with`] that always waits for the disk: before stopping.
    fn commit_durably(&mut self) -> Result<()> {
        if let Some(e) = self.stopped() {
            return Err(e);
        }
        self.commit_epoch(WriteBatch::default(), true)
    }

    fn commit_epoch(&mut self, extra: WriteBatch, durable: bool) -> Result<()> {
        let ids: Vec<u32> = self.views.keys().copied().collect();
        for id in ids {
            let out = match self.views.get_mut(&id) {
                Some(view) => view.graph.push(id, Message::Barrier)?,
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
        for (id, run) in &mut self.sources {
            batch.put(source_offset_key(*id), run.splits.encode());
            batch.delete(source_watermark_key(*id));
            super::keep_rejected(&mut batch, *id, run);
        }
        for (id, state) in &self.table_watermarks {
            batch.put(table_watermark_key(*id), state.encode());
        }
        let mut staged = Vec::new();
        for (id, sink) in &mut self.sinks {
            let changes: Vec<crate::sink::Changes> = std::mem::take(&mut sink.pending)
                .into_iter()
                .filter(|c| c.rows().num_rows() > 0)
                .map(|c| crate::sink::Changes {
                    rows: c.rows().clone(),
                    weights: c.weights().clone(),
                })
                .collect();
            if changes.is_empty() {
                continue;
            }
            crate::sink::stage(&mut batch, *id, self.epoch, now, &changes)
                .map_err(|e| StreamError::Internal(format!("sink {}: {e}", sink.flow.name)))?;
            staged.push(*id);
        }
        batch.delete_range(
            changelog::log_key(0).as_slice(),
            changelog::log_key(self.applied_seq.saturating_add(1)).as_slice(),
        );
        debug_assert_eq!(changelog::log_key(0)[0], LOG_TAG);
        if durable || !staged.is_empty() {
            self.store.write(batch)?;
        } else {
            self.store.write_unsynced(batch)?;
        }
        for id in staged {
            if let Some(sink) = self.sinks.get(&id) {
                sink.flow.progress.added();
            }
        }
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
        for run in self.sources.values_mut() {
            run.flow.progress.set_committed(&run.splits);
            if let Some(reader) = run.reader.as_mut() {
                reader.committed(&run.splits);
            }
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
        self.backfill_view(&mut flow)?;
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

    /// Gives a new dataflow its inputs' rows as they stand at the last commit, then where their
    /// watermarks stand; its root emits them at the next barrier.
    fn backfill_view(&mut self, flow: &mut ViewFlow) -> Result<()> {
        for input in flow.graph.inputs() {
            if let Some(run) = self.sources.get(&input) {
                // The rows the other views saw: late ones judged again from each split's
                // first row.
                let rows = OnTimeRows::new(
                    &run.flow.source,
                    run.flow.watermark.clone(),
                    &run.splits,
                    BACKFILL_BATCH,
                )
                .map_err(|e| StreamError::Internal(format!("source {}: {e}", run.flow.name)))?;
                for rows in rows {
                    let changes = Message::Chunk(ChangeBatch::inserts(rows?));
                    let out = flow.graph.push(input, changes)?;
                    debug_assert!(out.is_empty(), "a view's root emits only at barriers");
                }
                continue;
            }
            let table = (self.lookup)(input).ok_or_else(|| {
                StreamError::Internal(format!("view input {input} is not a table or view"))
            })?;
            backfill(&self.store, &table, |changes| {
                let out = flow.graph.push(input, Message::Chunk(changes))?;
                debug_assert!(out.is_empty(), "a view's root emits only at barriers");
                Ok(())
            })?;
        }
        // Then where its inputs' watermarks stand: its rows are all in.
        for input in flow.graph.inputs() {
            let marks: Vec<Watermark> = self
                .watermarks
                .get(&input)
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default();
            for mark in marks {
                // The view's output watermarks follow its first barrier's rows.
                flow.graph.push(input, Message::Watermark(mark))?;
            }
        }
        Ok(())
    }

    /// Adds a sink: everything before it committed, then (with `snapshot`) its input's rows as
    /// its first epoch, committed with its catalog entry. A sink with its own query brings the
    /// query's dataflow (`query`, with the sink's id), backfilled here; without `snapshot` what
    /// the backfill gives is not written.
    fn add_sink(
        &mut self,
        flow: super::SinkFlow,
        query: Option<ViewFlow>,
        snapshot: bool,
        catalog: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        self.commit()?;
        let mut pending = Vec::new();
        if let Some(mut query) = query {
            self.backfill_view(&mut query)?;
            if !snapshot {
                // The query's rows as they stand stay in its operators' state, unwritten.
                query.graph.push(query.id, Message::Barrier)?;
            }
            self.views.insert(query.id, query);
        } else if snapshot {
            let view = (self.lookup)(flow.input).ok_or_else(|| {
                StreamError::Internal(format!("sink {}: its view is gone", flow.name))
            })?;
            backfill(&self.store, &view, |changes| {
                pending.push(changes);
                Ok(())
            })?;
        }
        let mut batch = WriteBatch::default();
        for (key, value) in catalog {
            batch.put(key, value);
        }
        let id = flow.id;
        self.sinks.insert(id, SinkRun { flow, pending });
        if let Err(e) = self.commit_with(batch) {
            self.sinks.remove(&id);
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

/// Where `state` stands as a watermark of `watermark`'s event-time column.
fn source_mark(
    watermark: &crate::table::watermark::WatermarkRule,
    state: &WatermarkState,
) -> Result<Option<Watermark>> {
    let value = watermark
        .value(state)
        .map_err(|e| StreamError::Internal(e.to_string()))?;
    Ok(value.map(|value| Watermark {
        column: watermark.column(),
        value,
    }))
}

/// Reads every stored row of `table` (a table or a view's storage) from one snapshot, as
/// insertions in batches.
fn backfill(
    store: &Store,
    table: &Table,
    mut apply: impl FnMut(ChangeBatch) -> Result<()>,
) -> Result<()> {
    table.read_batches(store, None, BACKFILL_BATCH, |rows, counts| {
        apply(ChangeBatch::new(rows, Int64Array::from(counts)))?;
        Ok(true)
    })?;
    Ok(())
}
