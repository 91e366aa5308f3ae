//! What one connection keeps between its statements: statements prepared with `PREPARE`, open
//! cursors, the names of the statements the client prepared through the extended protocol
//! (which `DEALLOCATE ALL` forgets too), and the temporary tables it created.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

use super::Prepared;
use crate::catalog::sequence_functions::SessionSequences;
use crate::error::{Error, Result};

/// A statement prepared with `PREPARE name [(types)] AS ...`.
#[derive(Debug, Clone)]
pub struct NamedStatement {
    /// The statement.
    pub prepared: Prepared,
    /// The type of each parameter: as declared, else as the statement implies (`Null` where
    /// nothing does).
    pub param_types: Vec<DataType>,
}

/// An open cursor: the rows of a query, read as they are fetched. It keeps the last
/// [`KEPT_ROWS`] rows it read, so that `FETCH BACKWARD`, `PRIOR`, `ABSOLUTE` and `RELATIVE`
/// can move back over them; a `NO SCROLL` cursor moves forward only.
pub struct Cursor {
    schema: SchemaRef,
    rows: Option<SendableRecordBatchStream>,
    /// `WITH HOLD`: stays open after the transaction that declared it.
    hold: bool,
    /// `NO SCROLL`.
    forward_only: bool,
    /// The rows read and kept, oldest first.
    kept: std::collections::VecDeque<RecordBatch>,
    /// The number (from 1) of the first kept row.
    first_kept: usize,
    /// Rows read from the query so far.
    read: usize,
    /// Whether the query has no more rows.
    done: bool,
    /// Where the cursor stands, as PostgreSQL counts: 0 before the first row, `n` on row `n`,
    /// one past the last row after it.
    position: usize,
}

/// Rows a cursor keeps behind it for moving backward.
pub const KEPT_ROWS: usize = 100_000;

/// Where a `FETCH` moves a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Motion {
    /// The next `n` rows (all of them for `None`).
    Forward(Option<usize>),
    /// The previous `n` rows, nearest first (all of them for `None`).
    Backward(Option<usize>),
    /// Row `n` (from the end when negative; before the first for 0).
    Absolute(i64),
    /// The row `n` away (the current row for 0).
    Relative(i64),
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("hold", &self.hold)
            .field("position", &self.position)
            .finish()
    }
}

impl Cursor {
    /// A cursor over `rows`.
    pub fn new(rows: SendableRecordBatchStream, hold: bool) -> Self {
        Self {
            schema: rows.schema(),
            rows: Some(rows),
            hold,
            forward_only: false,
            kept: std::collections::VecDeque::new(),
            first_kept: 1,
            read: 0,
            done: false,
            position: 0,
        }
    }

    /// `NO SCROLL` when `yes`: moving backward is refused.
    pub fn forward_only(mut self, yes: bool) -> Self {
        self.forward_only = yes;
        self
    }

    /// The columns of its rows.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Reads from the query until row `n` is read or there are no more rows.
    async fn read_to(&mut self, n: usize) -> Result<()> {
        while self.read < n && !self.done {
            let Some(rows) = self.rows.as_mut() else {
                self.done = true;
                break;
            };
            match rows.next().await {
                Some(batch) => {
                    let batch = batch?;
                    if batch.num_rows() == 0 {
                        continue;
                    }
                    self.read += batch.num_rows();
                    self.kept.push_back(batch);
                    // Forget the oldest rows beyond what is kept, but never one still ahead.
                    while let Some(front) = self.kept.front() {
                        let kept = self.read + 1 - self.first_kept;
                        let behind = self.position.saturating_sub(self.first_kept);
                        if kept - front.num_rows() >= KEPT_ROWS && front.num_rows() <= behind {
                            self.first_kept += front.num_rows();
                            self.kept.pop_front();
                        } else {
                            break;
                        }
                    }
                }
                None => {
                    self.done = true;
                    self.rows = None;
                }
            }
        }
        Ok(())
    }

    /// Rows `from..=to` (numbers from 1, all read and kept), in order.
    fn rows_between(&self, from: usize, to: usize) -> Result<Vec<RecordBatch>> {
        if from < self.first_kept {
            return Err(Error::coded(
                "55000",
                format!("cursor can only move back over the last {KEPT_ROWS} rows it read"),
            ));
        }
        let mut out = Vec::new();
        let mut start = self.first_kept;
        for batch in &self.kept {
            let end = start + batch.num_rows() - 1;
            if end >= from && start <= to {
                let a = from.max(start) - start;
                let b = to.min(end) - start;
                out.push(batch.slice(a, b - a + 1));
            }
            if end >= to {
                break;
            }
            start = end + 1;
        }
        Ok(out)
    }

    /// Rows `to..=from` (from > to), nearest first: `from`, `from - 1`, ..., `to`.
    fn rows_backward(&self, from: usize, to: usize) -> Result<Vec<RecordBatch>> {
        let forward = self.rows_between(to, from)?;
        if forward.is_empty() {
            return Ok(forward);
        }
        let all = datafusion::arrow::compute::concat_batches(&self.schema, &forward)?;
        let indices = datafusion::arrow::array::UInt32Array::from_iter_values(
            (0..all.num_rows() as u32).rev(),
        );
        Ok(vec![datafusion::arrow::compute::take_record_batch(
            &all, &indices,
        )?])
    }

    /// Row `n` alone, where the cursor then stands; none (before the first or after the last
    /// row) when there is no such row.
    async fn row_at(&mut self, n: i64) -> Result<Vec<RecordBatch>> {
        let target = if n < 0 {
            self.read_to(usize::MAX).await?;
            self.read as i64 + 1 + n
        } else {
            n
        };
        if target <= 0 {
            self.position = 0;
            return Ok(Vec::new());
        }
        let target = target as usize;
        self.read_to(target).await?;
        if target > self.read {
            self.position = self.read + 1;
            return Ok(Vec::new());
        }
        let rows = self.rows_between(target, target)?;
        self.position = target;
        Ok(rows)
    }

    /// Moves the cursor as `motion` says and returns the rows it passes, as PostgreSQL does.
    pub async fn fetch(&mut self, motion: Motion) -> Result<Vec<RecordBatch>> {
        let backward = match motion {
            Motion::Backward(_) => true,
            Motion::Absolute(n) => (n as i128) < self.position as i128 || n < 0,
            Motion::Relative(n) => n < 0,
            Motion::Forward(_) => false,
        };
        if backward && self.forward_only {
            return Err(Error::coded(
                "55000",
                "cursor can only scan forward (it was declared NO SCROLL)",
            ));
        }
        match motion {
            Motion::Forward(count) => {
                let count = count.unwrap_or(usize::MAX);
                if count == 0 {
                    // FETCH FORWARD 0: the current row again.
                    return self.row_at(self.position as i64).await;
                }
                let from = self.position + 1;
                let to = from.saturating_add(count - 1);
                self.read_to(to).await?;
                let last = to.min(self.read);
                let rows = if from <= last {
                    self.rows_between(from, last)?
                } else {
                    Vec::new()
                };
                self.position = if last < to { self.read + 1 } else { to };
                Ok(rows)
            }
            Motion::Backward(count) => {
                let count = count.unwrap_or(usize::MAX);
                if count == 0 {
                    return self.row_at(self.position as i64).await;
                }
                if self.position == 0 {
                    return Ok(Vec::new());
                }
                let from = self.position - 1;
                if from == 0 {
                    self.position = 0;
                    return Ok(Vec::new());
                }
                let to = from.saturating_sub(count - 1).max(1);
                let rows = self.rows_backward(from, to)?;
                // On the last row returned, or before the first when the rows ran out.
                self.position = if from >= count { from + 1 - count } else { 0 };
                Ok(rows)
            }
            Motion::Absolute(n) => self.row_at(n).await,
            Motion::Relative(n) => {
                let target = self.position as i64 + n;
                self.row_at(target.max(0)).await
            }
        }
    }
}

/// A connection's named statements and cursors.
#[derive(Debug, Default)]
pub struct ConnectionState {
    prepared: Mutex<HashMap<String, NamedStatement>>,
    cursors: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Cursor>>>>,
    /// Names the client gave statements it prepared through the extended protocol.
    protocol_statements: Mutex<BTreeSet<String>>,
    /// Protocol statements deallocated by `DEALLOCATE`, for the wire layer to forget.
    deallocated: Mutex<Vec<String>>,
    /// What `nextval` gave in this session, for `currval` and `lastval`.
    sequences: SessionSequences,
    /// Who logged in, for `current_user` and `session_user`.
    user: crate::catalog::pg_functions::SessionUser,
    /// Tables created with `CREATE TEMPORARY TABLE`, dropped when the connection ends.
    temporary: TemporaryTables,
    /// The statements that drop what the open transaction block created, in creation order.
    created_in_block: Mutex<Vec<String>>,
    /// The number of this connection's schema of temporary relations, once it has one.
    temp_slot: TempSlot,
}

/// A connection's number for its schema of temporary relations (`pg_temp_N`): the smallest
/// number no other open connection holds, handed back when the connection ends, so that the
/// schemas are as many as the connections that were open at once.
#[derive(Debug, Default)]
struct TempSlot(std::sync::OnceLock<u32>);

static TEMP_SLOTS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

impl TempSlot {
    fn number(&self) -> u32 {
        *self.0.get_or_init(|| {
            let mut taken = lock(&TEMP_SLOTS);
            let free = (1..).find(|n| !taken.contains(n)).unwrap_or(u32::MAX);
            taken.insert(free);
            free
        })
    }
}

impl Drop for TempSlot {
    fn drop(&mut self) {
        if let Some(n) = self.0.get() {
            lock(&TEMP_SLOTS).remove(n);
        }
    }
}

/// The temporary tables of one connection, by name and id; dropped with it. A table dropped
/// earlier, or replaced by another of the same name, is left alone.
#[derive(Default)]
pub struct TemporaryTables {
    tables: Mutex<Vec<(String, u32)>>,
    views: Mutex<Vec<(String, u32)>>,
    catalog: Mutex<Option<Arc<crate::catalog::Catalog>>>,
}

impl std::fmt::Debug for TemporaryTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(lock(&self.tables).iter()).finish()
    }
}

impl TemporaryTables {
    /// Records a temporary table this connection created.
    pub fn add(&self, catalog: &Arc<crate::catalog::Catalog>, name: String, id: u32) {
        lock(&self.catalog).get_or_insert_with(|| catalog.clone());
        lock(&self.tables).push((name, id));
    }

    /// Records a temporary view this connection created.
    pub fn add_view(&self, catalog: &Arc<crate::catalog::Catalog>, name: String, id: u32) {
        lock(&self.catalog).get_or_insert_with(|| catalog.clone());
        lock(&self.views).push((name, id));
    }
}

impl Drop for TemporaryTables {
    fn drop(&mut self) {
        let Some(catalog) = lock(&self.catalog).take() else {
            return;
        };
        // Views first, newest first, with the (temporary) views other sessions made over them.
        let views: Vec<(String, u32)> = lock(&self.views).drain(..).rev().collect();
        for (name, id) in views {
            if catalog.view(&name).is_none_or(|v| v.def().id != id) {
                continue;
            }
            let mut doomed = vec![name];
            let mut i = 0;
            while i < doomed.len() {
                if let Some(view) = catalog.view(&doomed[i]) {
                    for dependent in catalog.dependents(view.def().id) {
                        if !dependent.def().materialized {
                            doomed.push(dependent.name().to_string());
                        }
                    }
                }
                i += 1;
            }
            for name in doomed.iter().rev() {
                if let Err(e) = catalog.drop_plain_view(name) {
                    tracing::warn!(view = %name, error = %e, "dropping a temporary view failed");
                }
            }
        }
        let tables: Vec<(String, u32)> = lock(&self.tables).drain(..).collect();
        // Views other sessions made over these tables (temporary too) go first.
        for (name, id) in &tables {
            if catalog.table(name).is_none_or(|t| t.def().id != *id) {
                continue;
            }
            let mut doomed: Vec<String> = Vec::new();
            let mut frontier = vec![*id];
            while let Some(read) = frontier.pop() {
                for view in catalog.dependents(read) {
                    if !view.def().materialized && !doomed.iter().any(|d| d == view.name()) {
                        frontier.push(view.def().id);
                        doomed.push(view.name().to_string());
                    }
                }
            }
            for view in doomed.iter().rev() {
                if let Err(e) = catalog.drop_plain_view(view) {
                    tracing::warn!(view = %view, error = %e, "dropping a temporary view failed");
                }
            }
        }
        for (name, id) in tables {
            if catalog.table(&name).is_some_and(|t| t.def().id == id)
                && let Err(e) = catalog.drop_table(&name)
            {
                tracing::warn!(table = %name, error = %e, "dropping a temporary table failed");
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn no_cursor(name: &str) -> Error {
    Error::coded("34000", format!("cursor \"{name}\" does not exist"))
}

impl ConnectionState {
    /// The state of a new connection of `user`.
    pub fn for_user(user: String) -> Self {
        Self {
            user: crate::catalog::pg_functions::SessionUser(user),
            ..Self::default()
        }
    }

    /// The name of this connection's schema of temporary relations (`pg_temp_N`).
    pub fn temp_schema(&self) -> String {
        format!(
            "{}{}",
            crate::catalog::schema::TEMP_SCHEMA_PREFIX,
            self.temp_slot.number()
        )
    }

    /// This connection's schema of temporary relations, when it has made one.
    pub fn temp_schema_if_any(&self) -> Option<String> {
        self.temp_slot
            .0
            .get()
            .map(|n| format!("{}{n}", crate::catalog::schema::TEMP_SCHEMA_PREFIX))
    }

    /// Records that the open transaction block created an object `drop` drops.
    pub fn created_in_block(&self, drop: String) {
        lock(&self.created_in_block).push(drop);
    }

    /// The statements that drop what the transaction block created, newest first; forgotten.
    pub fn take_created_in_block(&self) -> Vec<String> {
        let mut drops = std::mem::take(&mut *lock(&self.created_in_block));
        drops.reverse();
        drops
    }

    /// Who logged in.
    pub fn user(&self) -> &crate::catalog::pg_functions::SessionUser {
        &self.user
    }
    /// The temporary tables this connection created.
    pub fn temporary_tables(&self) -> &TemporaryTables {
        &self.temporary
    }

    /// What `nextval` gave in this session.
    pub fn sequences(&self) -> &SessionSequences {
        &self.sequences
    }

    /// The statement prepared as `name`.
    pub fn prepared(&self, name: &str) -> Result<NamedStatement> {
        lock(&self.prepared).get(name).cloned().ok_or_else(|| {
            Error::coded(
                "26000",
                format!("prepared statement \"{name}\" does not exist"),
            )
        })
    }

    /// Keeps `statement` as `name`; `42P05` when the name is taken.
    pub fn prepare(&self, name: &str, statement: NamedStatement) -> Result<()> {
        let mut prepared = lock(&self.prepared);
        if prepared.contains_key(name) || lock(&self.protocol_statements).contains(name) {
            return Err(Error::coded(
                "42P05",
                format!("prepared statement \"{name}\" already exists"),
            ));
        }
        prepared.insert(name.to_string(), statement);
        Ok(())
    }

    /// `DEALLOCATE name`, or every statement when `name` is `None`.
    pub fn deallocate(&self, name: Option<&str>) -> Result<()> {
        let mut protocol = lock(&self.protocol_statements);
        let mut deallocated = lock(&self.deallocated);
        match name {
            None => {
                lock(&self.prepared).clear();
                deallocated.extend(std::mem::take(&mut *protocol));
            }
            Some(name) => {
                let sql = lock(&self.prepared).remove(name).is_some();
                let wire = protocol.remove(name);
                if wire {
                    deallocated.push(name.to_string());
                }
                if !sql && !wire {
                    return Err(Error::coded(
                        "26000",
                        format!("prepared statement \"{name}\" does not exist"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The client prepared a statement called `name` through the extended protocol.
    pub fn protocol_statement_prepared(&self, name: &str) {
        if !name.is_empty() {
            lock(&self.protocol_statements).insert(name.to_string());
        }
    }

    /// Protocol statements `DEALLOCATE` removed since the last call.
    pub fn take_deallocated(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.deallocated))
    }

    /// Opens cursor `name`; `42P03` when one is open under that name.
    pub fn declare(&self, name: &str, cursor: Cursor) -> Result<()> {
        let mut cursors = lock(&self.cursors);
        if cursors.contains_key(name) {
            return Err(Error::coded(
                "42P03",
                format!("cursor \"{name}\" already exists"),
            ));
        }
        cursors.insert(name.to_string(), Arc::new(tokio::sync::Mutex::new(cursor)));
        Ok(())
    }

    /// The open cursor `name`.
    pub fn cursor(&self, name: &str) -> Result<Arc<tokio::sync::Mutex<Cursor>>> {
        lock(&self.cursors)
            .get(name)
            .cloned()
            .ok_or_else(|| no_cursor(name))
    }

    /// The columns of cursor `name`'s rows, if it is open.
    pub fn cursor_schema(&self, name: &str) -> Option<SchemaRef> {
        let cursor = lock(&self.cursors).get(name).cloned()?;
        cursor.try_lock().ok().map(|c| c.schema().clone())
    }

    /// `CLOSE name`, or every cursor when `name` is `None`.
    pub fn close(&self, name: Option<&str>) -> Result<()> {
        let mut cursors = lock(&self.cursors);
        match name {
            None => cursors.clear(),
            Some(name) => {
                cursors.remove(name).ok_or_else(|| no_cursor(name))?;
            }
        }
        Ok(())
    }

    /// A transaction block ended: cursors declared without `WITH HOLD` close.
    pub fn transaction_ended(&self) {
        lock(&self.cursors).retain(|_, cursor| cursor.try_lock().is_ok_and(|c| c.hold));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

    fn numbers(batches: &[std::ops::Range<i64>]) -> SendableRecordBatchStream {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batches: Vec<_> = batches
            .iter()
            .map(|r| {
                RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(Int64Array::from_iter_values(r.clone()))],
                )
                .map_err(Into::into)
            })
            .collect();
        Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter(batches),
        ))
    }

    fn values(batches: &[RecordBatch]) -> Vec<i64> {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::Int64Type;
        batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    #[tokio::test]
    async fn fetches_split_and_join_batches() {
        let mut cursor = Cursor::new(numbers(&[0..3, 3..10]), false);
        let forward = |n| Motion::Forward(Some(n));
        assert_eq!(values(&cursor.fetch(forward(2)).await.unwrap()), vec![0, 1]);
        assert_eq!(
            values(&cursor.fetch(forward(4)).await.unwrap()),
            vec![2, 3, 4, 5]
        );
        assert_eq!(
            values(&cursor.fetch(Motion::Forward(None)).await.unwrap()),
            vec![6, 7, 8, 9]
        );
        assert!(cursor.fetch(forward(5)).await.unwrap().is_empty());
    }

    /// PostgreSQL's cursor positions: before the first row, on a row, after the last.
    #[tokio::test]
    async fn cursors_move_back_as_postgresql_cursors_do() {
        let mut c = Cursor::new(numbers(&[0..3, 3..10]), false);
        let mut fetch = async |m| values(&c.fetch(m).await.unwrap());
        assert_eq!(fetch(Motion::Forward(Some(3))).await, vec![0, 1, 2]);
        assert_eq!(fetch(Motion::Backward(Some(1))).await, vec![1]);
        assert_eq!(fetch(Motion::Backward(None)).await, vec![0]);
        assert_eq!(fetch(Motion::Backward(Some(1))).await, Vec::<i64>::new());
        assert_eq!(fetch(Motion::Forward(Some(1))).await, vec![0]);
        assert_eq!(fetch(Motion::Absolute(-1)).await, vec![9]);
        assert_eq!(fetch(Motion::Forward(Some(1))).await, Vec::<i64>::new());
        assert_eq!(fetch(Motion::Backward(Some(2))).await, vec![9, 8]);
        assert_eq!(fetch(Motion::Relative(-2)).await, vec![6]);
        assert_eq!(fetch(Motion::Relative(0)).await, vec![6]);
        assert_eq!(fetch(Motion::Absolute(2)).await, vec![1]);
        assert_eq!(
            fetch(Motion::Forward(None)).await,
            vec![2, 3, 4, 5, 6, 7, 8, 9]
        );
        assert_eq!(
            fetch(Motion::Backward(None)).await,
            vec![9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
        );
        assert_eq!(fetch(Motion::Absolute(20)).await, Vec::<i64>::new());
        assert_eq!(fetch(Motion::Backward(Some(1))).await, vec![9]);
        let mut forward_only = Cursor::new(numbers(&[0..2, 2..3]), false).forward_only(true);
        assert!(forward_only.fetch(Motion::Backward(Some(1))).await.is_err());
    }

    #[test]
    fn names_are_unique_and_deallocate_all_reaches_protocol_statements() {
        let state = ConnectionState::default();
        state.protocol_statement_prepared("_pg3_0");
        state.protocol_statement_prepared("_pg3_1");
        let err = state.deallocate(Some("nope")).unwrap_err();
        assert_eq!(err.sqlstate(), "26000");
        state.deallocate(Some("_pg3_1")).unwrap();
        assert_eq!(state.take_deallocated(), vec!["_pg3_1".to_string()]);
        state.deallocate(None).unwrap();
        assert_eq!(state.take_deallocated(), vec!["_pg3_0".to_string()]);
        assert!(state.take_deallocated().is_empty());
    }

    #[test]
    fn cursors_without_hold_close_with_the_transaction() {
        let state = ConnectionState::default();
        state
            .declare("a", Cursor::new(numbers(&[]), false))
            .unwrap();
        state.declare("b", Cursor::new(numbers(&[]), true)).unwrap();
        assert_eq!(
            state
                .declare("b", Cursor::new(numbers(&[]), true))
                .unwrap_err()
                .sqlstate(),
            "42P03"
        );
        state.transaction_ended();
        assert_eq!(state.cursor("a").unwrap_err().sqlstate(), "34000");
        assert!(state.cursor("b").is_ok());
        state.close(None).unwrap();
        assert!(state.cursor("b").is_err());
    }
}
