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

/// An open cursor: the rows of a query, read as they are fetched.
pub struct Cursor {
    schema: SchemaRef,
    rows: Option<SendableRecordBatchStream>,
    /// Rows read from the stream but not fetched yet.
    pending: Option<RecordBatch>,
    /// `WITH HOLD`: stays open after the transaction that declared it.
    hold: bool,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor").field("hold", &self.hold).finish()
    }
}

impl Cursor {
    /// A cursor over `rows`.
    pub fn new(rows: SendableRecordBatchStream, hold: bool) -> Self {
        Self {
            schema: rows.schema(),
            rows: Some(rows),
            pending: None,
            hold,
        }
    }

    /// The columns of its rows.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The next `limit` rows (all that are left when `None`), as batches.
    pub async fn fetch(&mut self, limit: Option<usize>) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        let mut wanted = limit.unwrap_or(usize::MAX);
        while wanted > 0 {
            let batch = match self.pending.take() {
                Some(batch) => batch,
                None => match self.rows.as_mut() {
                    None => break,
                    Some(rows) => match rows.next().await {
                        Some(batch) => batch?,
                        None => {
                            self.rows = None;
                            break;
                        }
                    },
                },
            };
            if batch.num_rows() > wanted {
                out.push(batch.slice(0, wanted));
                self.pending = Some(batch.slice(wanted, batch.num_rows() - wanted));
                wanted = 0;
            } else {
                wanted -= batch.num_rows();
                out.push(batch);
            }
        }
        Ok(out)
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
}

/// The temporary tables of one connection, by name and id; dropped with it. A table dropped
/// earlier, or replaced by another of the same name, is left alone.
#[derive(Default)]
pub struct TemporaryTables {
    tables: Mutex<Vec<(String, u32)>>,
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
}

impl Drop for TemporaryTables {
    fn drop(&mut self) {
        let Some(catalog) = lock(&self.catalog).take() else {
            return;
        };
        for (name, id) in lock(&self.tables).drain(..) {
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
        assert_eq!(values(&cursor.fetch(Some(2)).await.unwrap()), vec![0, 1]);
        assert_eq!(
            values(&cursor.fetch(Some(4)).await.unwrap()),
            vec![2, 3, 4, 5]
        );
        assert_eq!(values(&cursor.fetch(None).await.unwrap()), vec![6, 7, 8, 9]);
        assert!(cursor.fetch(Some(5)).await.unwrap().is_empty());
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
