//! The DataFusion `TableProvider` over a stored table.
//!
//! A scan streams rows from one RocksDB snapshot, decoded in batches on a blocking thread. When
//! the filters pin every primary-key column to a value (`WHERE id = 42`, or `$1` once bound), the
//! scan is a single point read instead.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::{Constraint, Constraints, ScalarValue};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};

use super::Table;
use super::index::Index;
use super::key::{column_equals, values_for};
use crate::storage::{Snapshot, Store};

/// A stored table as DataFusion sees it.
#[derive(Debug)]
pub struct RelationProvider {
    table: Arc<Table>,
    store: Store,
    /// Whether the hidden row id is part of the schema (only for Augur's own DML planning).
    with_hidden: bool,
    constraints: Constraints,
    /// A materialized view's rows rather than a table.
    is_view: bool,
}

impl RelationProvider {
    /// A provider for `table`; `with_hidden` exposes the hidden row id column.
    pub fn new(table: Arc<Table>, store: Store, with_hidden: bool) -> Self {
        let def = table.def();
        let constraints = if def.has_row_id() && !with_hidden {
            Constraints::default()
        } else {
            Constraints::new_unverified(vec![Constraint::PrimaryKey(def.primary_key.clone())])
        };
        Self {
            table,
            store,
            with_hidden,
            constraints,
            is_view: false,
        }
    }

    /// A provider for the rows of a materialized view, stored in `storage`.
    pub fn view(storage: Arc<Table>, store: Store) -> Self {
        let mut scan = Self::new(storage, store, false);
        if scan.table.def().counted {
            scan.constraints = Constraints::default();
        }
        scan.is_view = true;
        scan
    }

    /// The table and the store it reads.
    pub fn parts(&self) -> (&Arc<Table>, &Store) {
        (&self.table, &self.store)
    }

    fn out_schema(&self) -> &SchemaRef {
        if self.with_hidden {
            self.table.full_schema()
        } else {
            self.table.visible_schema()
        }
    }

    /// The primary-key values the filters pin, in key order, if they pin every key column.
    fn point_key(&self, filters: &[Expr]) -> Option<Vec<ScalarValue>> {
        let def = self.table.def();
        if (def.has_row_id() && !self.with_hidden) || def.counted {
            return None;
        }
        values_for(&def.primary_key, &self.pinned(filters))
    }

    /// The columns (positions in the stored row) the filters pin to a constant, and the constants.
    fn pinned(&self, filters: &[Expr]) -> Vec<(usize, ScalarValue)> {
        let schema = self.table.full_schema();
        filters
            .iter()
            .filter_map(column_equals)
            .filter_map(|(column, value)| match value {
                Expr::Literal(v, _) => Some((schema.index_of(&column.name).ok()?, v.clone())),
                _ => None,
            })
            .collect()
    }
}

impl RelationProvider {
    /// An index whose every column the filters pin to a value, with those values in index
    /// column order. Of several, the one with the most columns.
    fn index_key(&self, filters: &[Expr]) -> Option<(Arc<Index>, Vec<ScalarValue>)> {
        let pinned = self.pinned(filters);
        self.table
            .indexes()
            .iter()
            .filter_map(|index| Some((index.clone(), values_for(&index.def().columns, &pinned)?)))
            .max_by_key(|(index, _)| index.def().columns.len())
    }
}

#[async_trait]
impl TableProvider for RelationProvider {
    fn schema(&self) -> SchemaRef {
        self.out_schema().clone()
    }

    fn constraints(&self) -> Option<&Constraints> {
        Some(&self.constraints)
    }

    fn table_type(&self) -> TableType {
        if self.is_view {
            TableType::View
        } else {
            TableType::Base
        }
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        let index = self.table.full_schema().index_of(column).ok()?;
        self.table.default_of(index)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Key equalities are used for point reads; the filter stays above the scan as well.
        Ok(filters
            .iter()
            .map(|f| match column_equals(f) {
                Some((_, Expr::Literal(..))) => TableProviderFilterPushDown::Inexact,
                _ => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.table
            .check_current()
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        // One statement reads every relation from the snapshots it was given: tables as of
        // its start, views as of the last committed epoch.
        let snapshot = state
            .config()
            .get_extension::<ReadSnapshots>()
            .and_then(|reads| {
                if self.is_view {
                    reads.committed.clone()
                } else {
                    Some(reads.latest.clone())
                }
            });
        let lookup = match self.point_key(filters) {
            Some(key) => Some((Via::PrimaryKey, key)),
            None => self
                .index_key(filters)
                .map(|(index, values)| (Via::Index(index), values)),
        };
        if let Some((via, values)) = lookup {
            return Ok(Arc::new(LookupExec::new(
                self.table.clone(),
                self.store.clone(),
                snapshot,
                via,
                values,
                self.out_schema().clone(),
                projection,
                limit,
            )?));
        }
        let source = Source::Range {
            batch_size: state.config().batch_size(),
        };
        let partition = Arc::new(TablePartition {
            table: self.table.clone(),
            store: self.store.clone(),
            snapshot,
            schema: self.out_schema().clone(),
            source,
        });
        let exec = StreamingTableExec::try_new(
            self.out_schema().clone(),
            vec![partition],
            projection,
            [],
            false,
            limit,
        )?;
        Ok(Arc::new(exec))
    }
}

#[derive(Debug, Clone)]
enum Source {
    /// The whole table.
    Range { batch_size: usize },
}

/// The snapshots one statement reads from, set in its DataFusion session config.
#[derive(Debug)]
pub struct ReadSnapshots {
    /// The store at the start of the statement: what tables show.
    pub latest: Arc<Snapshot>,
    /// The store at the last committed epoch: what materialized views show (the same epoch in
    /// every view). `None` before the first epoch.
    pub committed: Option<Arc<Snapshot>>,
}

/// The rows one scan produces.
#[derive(Debug)]
struct TablePartition {
    table: Arc<Table>,
    store: Store,
    /// Read from this snapshot rather than the store's latest state.
    snapshot: Option<Arc<Snapshot>>,
    schema: SchemaRef,
    source: Source,
}

impl TablePartition {
    /// Keeps the output columns of `full` (all stored columns) that the scan schema has.
    fn shape(table: &Table, schema: &SchemaRef, full: RecordBatch) -> DfResult<RecordBatch> {
        if schema.fields().len() == full.num_columns() {
            return Ok(full);
        }
        let columns = full.columns()[..schema.fields().len()].to_vec();
        debug_assert_eq!(table.visible_schema().fields().len(), columns.len());
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

impl PartitionStream for TablePartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let schema = self.schema.clone();
        match &self.source {
            Source::Range { batch_size } => {
                let (tx, rx) = tokio::sync::mpsc::channel::<DfResult<RecordBatch>>(2);
                let table = self.table.clone();
                let store = self.store.clone();
                let snapshot = self.snapshot.clone();
                let out = self.schema.clone();
                let batch_size = (*batch_size).max(1);
                tokio::task::spawn_blocking(move || {
                    let result =
                        scan_table(&store, snapshot.as_deref(), &table, &out, batch_size, &tx);
                    if let Err(e) = result {
                        let _ = tx.blocking_send(Err(DataFusionError::External(Box::new(e))));
                    }
                });
                let stream = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                });
                Box::pin(RecordBatchStreamAdapter::new(schema, stream))
            }
        }
    }
}

/// Reads the whole table from one snapshot and sends it in batches of `batch_size` rows. Stops
/// early when the receiver is gone (a LIMIT was satisfied, or the query was cancelled).
fn scan_table(
    store: &Store,
    snapshot: Option<&Snapshot>,
    table: &Table,
    out: &SchemaRef,
    batch_size: usize,
    tx: &tokio::sync::mpsc::Sender<DfResult<RecordBatch>>,
) -> crate::Result<()> {
    table.read_batches(store, snapshot, batch_size, |full, counts| {
        let full = if counts.iter().any(|&c| c != 1) {
            repeat_rows(&full, &counts)?
        } else {
            full
        };
        let batch = TablePartition::shape(table, out, full)?;
        Ok(tx.blocking_send(Ok(batch)).is_ok())
    })
}

/// Each row of `batch` as often as `counts` says.
pub(crate) fn repeat_rows(batch: &RecordBatch, counts: &[i64]) -> crate::Result<RecordBatch> {
    let indices: Vec<u32> = counts
        .iter()
        .enumerate()
        .flat_map(|(i, &c)| std::iter::repeat_n(i as u32, c.max(0) as usize))
        .collect();
    let indices = datafusion::arrow::array::UInt32Array::from(indices);
    Ok(datafusion::arrow::compute::take_record_batch(
        batch, &indices,
    )?)
}

/// How a lookup finds its rows.
#[derive(Debug)]
enum Via {
    /// By the relation's key: one read.
    PrimaryKey,
    /// By a secondary index: the index's entries, then the rows they name.
    Index(Arc<Index>),
}

/// Reads the rows with one value of a key: `WHERE key = value` on a relation's key (one read)
/// or on indexed columns (the index, then the rows), without scanning the relation.
#[derive(Debug)]
struct LookupExec {
    table: Arc<Table>,
    store: Store,
    snapshot: Option<Arc<Snapshot>>,
    via: Via,
    /// One value per key column.
    values: Vec<ScalarValue>,
    /// The columns the scan yields (all or the visible ones), before `projection`.
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    limit: Option<usize>,
    properties: Arc<datafusion::physical_plan::PlanProperties>,
}

impl LookupExec {
    #[allow(clippy::too_many_arguments)]
    fn new(
        table: Arc<Table>,
        store: Store,
        snapshot: Option<Arc<Snapshot>>,
        via: Via,
        values: Vec<ScalarValue>,
        schema: SchemaRef,
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
    ) -> DfResult<Self> {
        use datafusion::physical_expr::EquivalenceProperties;
        use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
        use datafusion::physical_plan::{Partitioning, PlanProperties};

        let out = match projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => schema.clone(),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(out),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(Self {
            table,
            store,
            snapshot,
            via,
            values,
            schema,
            projection: projection.cloned(),
            limit,
            properties: Arc::new(properties),
        })
    }

    /// The storage keys of the rows the lookup finds.
    fn keys(&self) -> crate::Result<Vec<Vec<u8>>> {
        let index = match &self.via {
            Via::PrimaryKey => {
                let key = self.table.key_for_values(&self.values)?;
                return Ok(key.into_iter().collect());
            }
            Via::Index(index) => index,
        };
        let keys = index.find(
            &self.store,
            self.snapshot.as_deref(),
            &self.values,
            self.table.full_schema(),
        )?;
        Ok(keys
            .iter()
            .take(self.limit.unwrap_or(usize::MAX))
            .map(|k| self.table.row_key(k))
            .collect())
    }

    /// The rows the lookup finds.
    fn read(&self) -> crate::Result<RecordBatch> {
        let keys = self.keys()?;
        let values: Vec<Vec<u8>> = match &self.snapshot {
            Some(snapshot) => keys
                .iter()
                .map(|k| snapshot.get(k))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect(),
            None => self.store.multi_get(&keys)?.into_iter().flatten().collect(),
        };
        let full = self.table.decode_stored(&values)?;
        let shaped = TablePartition::shape(&self.table, &self.schema, full)?;
        Ok(match &self.projection {
            Some(p) => shaped.project(p)?,
            None => shaped,
        })
    }
}

impl datafusion::physical_plan::DisplayAs for LookupExec {
    fn fmt_as(
        &self,
        _: datafusion::physical_plan::DisplayFormatType,
        f: &mut std::fmt::Formatter,
    ) -> std::fmt::Result {
        let columns = self.table.full_schema();
        let pins = |key: &[usize]| -> String {
            key.iter()
                .zip(&self.values)
                .map(|(&c, v)| format!("{} = {v}", columns.field(c).name()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &self.via {
            Via::PrimaryKey => write!(
                f,
                "KeyLookup: {} ({})",
                self.table.name(),
                pins(&self.table.def().primary_key)
            ),
            Via::Index(index) => {
                let def = index.def();
                write!(
                    f,
                    "IndexScan: {} on {} ({})",
                    def.name,
                    def.relation,
                    pins(&def.columns)
                )
            }
        }
    }
}

impl ExecutionPlan for LookupExec {
    fn name(&self) -> &str {
        "LookupExec"
    }

    fn properties(&self) -> &Arc<datafusion::physical_plan::PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _ctx: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let batch = self
            .read()
            .map_err(|e| DataFusionError::External(Box::new(e)));
        let schema = self.properties.eq_properties.schema().clone();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter(vec![batch]),
        )))
    }
}
