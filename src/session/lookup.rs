//! Prepared primary-key and index lookups without DataFusion.
//!
//! A prepared `SELECT exprs FROM t WHERE pk = $1` is recognised when it is planned (at Parse)
//! and then runs as one RocksDB read and a projection: no optimiser, no physical plan, no
//! streams. Serving a feature row by key — or a score of it, `SELECT PREDICT('m', f.a, f.b)
//! FROM f WHERE id = $1` — is the hottest query an application sends. The SELECT list may hold
//! any scalar expression over the row's columns, compiled once by DataFusion and evaluated over
//! the one row. Anything that is not exactly that shape goes through DataFusion as usual.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::datasource::source_as_provider;
use datafusion::execution::SessionState;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::Result;
use crate::storage::Store;
use crate::table::Table;
use crate::table::index::Index;
use crate::table::key::{column_equals, values_for};
use crate::table::provider::RelationProvider;

/// Where one key column's value comes from.
#[derive(Debug, Clone)]
enum KeyValue {
    /// The parameter with this id (`$1`).
    Param(String),
    Literal(ScalarValue),
}

/// One output column of a lookup.
#[derive(Debug)]
enum Output {
    /// A stored column, by position.
    Column(usize),
    /// An expression over the scanned columns.
    Expr(Arc<dyn PhysicalExpr>),
}

/// What a lookup reads by.
#[derive(Debug)]
enum Target {
    /// The primary key: at most one row.
    PrimaryKey,
    /// A secondary index: the rows it finds.
    Index(Arc<Index>),
}

/// A query that reads rows by their whole primary key, or by every column of an index.
#[derive(Debug)]
pub struct PointLookup {
    table: Arc<Table>,
    store: Store,
    target: Target,
    /// By key column, in key order.
    key: Vec<KeyValue>,
    /// The output columns.
    outputs: Vec<Output>,
    /// Stored-row positions of the scanned columns, which expressions read, and their schema.
    scanned: (Vec<usize>, SchemaRef),
    schema: SchemaRef,
}

/// Whether `expr` can be computed from the row alone, at execution: no parameters, no
/// subqueries, no aggregates or window functions.
fn row_expr(expr: &Expr) -> bool {
    let mut ok = true;
    let _ = expr.apply(|e| {
        ok &= !matches!(
            e,
            Expr::Placeholder(_)
                | Expr::ScalarSubquery(_)
                | Expr::Exists(_)
                | Expr::InSubquery(_)
                | Expr::AggregateFunction(_)
                | Expr::WindowFunction(_)
                | Expr::OuterReferenceColumn(..)
        );
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    ok
}

impl PointLookup {
    /// Recognises `Projection(exprs) ← Filter(key = value AND ...) ← [alias] ← TableScan`;
    /// expressions are compiled in `state`.
    pub fn from_plan(plan: &LogicalPlan, state: &SessionState) -> Option<Self> {
        let LogicalPlan::Projection(projection) = plan else {
            return None;
        };
        let LogicalPlan::Filter(filter) = projection.input.as_ref() else {
            return None;
        };
        let scan = match filter.input.as_ref() {
            LogicalPlan::TableScan(scan) => scan,
            LogicalPlan::SubqueryAlias(alias) => match alias.input.as_ref() {
                LogicalPlan::TableScan(scan) => scan,
                _ => return None,
            },
            _ => return None,
        };
        if !scan.filters.is_empty() || scan.fetch.is_some() {
            return None;
        }
        let provider = source_as_provider(&scan.source).ok()?;
        let table_scan = provider.as_ref().downcast_ref::<RelationProvider>()?;
        let (table, store) = table_scan.parts();
        let def = table.def();
        let visible = table.visible_schema();
        let columns_of = |expr: &Expr| -> Option<usize> {
            match expr {
                Expr::Column(c) => visible.index_of(&c.name).ok(),
                Expr::Alias(alias) => match alias.expr.as_ref() {
                    Expr::Column(c) => visible.index_of(&c.name).ok(),
                    _ => None,
                },
                _ => None,
            }
        };
        let scan_schema = filter.input.schema();
        let outputs = projection
            .expr
            .iter()
            .map(|expr| match columns_of(expr) {
                Some(column) => Some(Output::Column(column)),
                None if row_expr(expr) => state
                    .create_physical_expr(expr.clone(), scan_schema)
                    .ok()
                    .map(Output::Expr),
                None => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let scanned_columns = scan
            .projection
            .clone()
            .unwrap_or_else(|| (0..visible.fields().len()).collect());
        let scanned = (scanned_columns, Arc::new(scan_schema.as_arrow().clone()));

        // Every conjunct pins one column to a value, each column once.
        let mut pinned: Vec<(usize, KeyValue)> = Vec::new();
        for conjunct in split_conjunction(&filter.predicate) {
            let (column, value) = column_equals(conjunct)?;
            let value = match value {
                Expr::Placeholder(p) => KeyValue::Param(p.id.clone()),
                Expr::Literal(v, _) => KeyValue::Literal(v.clone()),
                _ => return None,
            };
            let position = visible.index_of(&column.name).ok()?;
            if pinned.iter().any(|(p, _)| *p == position) {
                return None;
            }
            pinned.push((position, value));
        }
        // Exactly the columns of the primary key, or of an index.
        let values_for = |columns: &[usize]| -> Option<Vec<KeyValue>> {
            if columns.len() != pinned.len() {
                return None;
            }
            values_for(columns, &pinned)
        };
        let (target, key) = match def.unique_key().and_then(values_for) {
            Some(key) => (Target::PrimaryKey, key),
            None => table.indexes().iter().find_map(|index| {
                values_for(&index.def().columns).map(|key| (Target::Index(index.clone()), key))
            })?,
        };
        Some(Self {
            table: table.clone(),
            store: store.clone(),
            target,
            key,
            outputs,
            scanned,
            schema: Arc::new(plan.schema().as_arrow().clone()),
        })
    }

    /// Every stored row whose `columns` hold `values`, by reading them all.
    fn scan_for(&self, columns: &[usize], values: &[ScalarValue]) -> Result<Option<RecordBatch>> {
        use datafusion::arrow::compute::kernels::{boolean, cmp};

        let mut found = Vec::new();
        self.table
            .read_batches(&self.store, None, 4096, |rows, counts| {
                let rows = if counts.iter().any(|&c| c != 1) {
                    crate::table::provider::repeat_rows(&rows, &counts)?
                } else {
                    rows
                };
                let mut mask: Option<datafusion::arrow::array::BooleanArray> = None;
                for (&column, value) in columns.iter().zip(values) {
                    let array = rows.column(column);
                    let value = value.cast_to(array.data_type())?.to_scalar()?;
                    let equal = cmp::eq(array, &value)?;
                    mask = Some(match mask {
                        Some(mask) => boolean::and(&mask, &equal)?,
                        None => equal,
                    });
                }
                if let Some(mask) = mask {
                    found.push(datafusion::arrow::compute::filter_record_batch(
                        &rows, &mask,
                    )?);
                }
                Ok(true)
            })?;
        let schema = self.table.full_schema().clone();
        let all = datafusion::arrow::compute::concat_batches(&schema, &found)?;
        Ok((all.num_rows() > 0).then_some(all))
    }

    /// The columns of the result.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Reads the row, if there is one.
    pub fn execute(&self, params: &ParamValues) -> Result<RecordBatch> {
        self.table.check_current()?;
        let values = self
            .key
            .iter()
            .map(|k| match k {
                KeyValue::Param(id) => Ok(params.get_placeholders_with_values(id)?.value),
                KeyValue::Literal(v) => Ok(v.clone()),
            })
            .collect::<Result<Vec<_>>>()?;
        let row = match &self.target {
            Target::PrimaryKey => match self.table.key_for_values(&values)? {
                Some(key) => self
                    .store
                    .get_with(&key, |value| self.table.codec().decode_values([value]))?
                    .transpose()?,
                None => None,
            },
            Target::Index(index) if !self.table.indexes().iter().any(|i| Arc::ptr_eq(i, index)) => {
                // Dropped since this lookup was planned: read the rows without it.
                self.scan_for(&index.def().columns, &values)?
            }
            Target::Index(index) => {
                let keys: Vec<Vec<u8>> = index
                    .find(&self.store, None, &values, self.table.full_schema())?
                    .iter()
                    .map(|k| self.table.row_key(k))
                    .collect();
                let found: Vec<Vec<u8>> =
                    self.store.multi_get(&keys)?.into_iter().flatten().collect();
                if found.is_empty() {
                    None
                } else {
                    Some(self.table.decode_stored(&found)?)
                }
            }
        };
        match row {
            Some(full) => {
                let needs_scan = self.outputs.iter().any(|o| matches!(o, Output::Expr(_)));
                let scanned = if needs_scan {
                    let (positions, schema) = &self.scanned;
                    let columns = positions.iter().map(|&i| full.column(i).clone()).collect();
                    Some(RecordBatch::try_new(schema.clone(), columns)?)
                } else {
                    None
                };
                let columns = self
                    .outputs
                    .iter()
                    .map(|output| match (output, &scanned) {
                        (Output::Column(i), _) => Ok(full.column(*i).clone()),
                        (Output::Expr(expr), Some(row)) => super::evaluate(expr, row),
                        (Output::Expr(_), None) => Err(crate::Error::Internal(
                            "a lookup expression without its row".into(),
                        )),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
            }
            None => Ok(RecordBatch::new_empty(self.schema.clone())),
        }
    }
}
