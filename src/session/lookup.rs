//! Prepared primary-key lookups without DataFusion.
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
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::Result;
use crate::storage::Store;
use crate::table::Table;
use crate::table::provider::TableScan;
use crate::table::writer::key_for_values;

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

/// A query that reads one row by its whole primary key.
#[derive(Debug)]
pub struct PointLookup {
    table: Arc<Table>,
    store: Store,
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
        let table_scan = provider.as_ref().downcast_ref::<TableScan>()?;
        let (table, store) = table_scan.parts();
        let def = table.def();
        if def.unique_key().is_none_or(<[usize]>::is_empty) {
            return None;
        }
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

        let mut key: Vec<Option<KeyValue>> = vec![None; def.primary_key.len()];
        for conjunct in split_conjunction(&filter.predicate) {
            let Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) = conjunct
            else {
                return None;
            };
            let (column, value) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), v) | (v, Expr::Column(c)) => (c, v),
                _ => return None,
            };
            let value = match value {
                Expr::Placeholder(p) => KeyValue::Param(p.id.clone()),
                Expr::Literal(v, _) => KeyValue::Literal(v.clone()),
                _ => return None,
            };
            let position = visible.index_of(&column.name).ok()?;
            let key_index = def.primary_key.iter().position(|&k| k == position)?;
            if key[key_index].is_some() {
                return None;
            }
            key[key_index] = Some(value);
        }
        let key = key.into_iter().collect::<Option<Vec<_>>>()?;
        Some(Self {
            table: table.clone(),
            store: store.clone(),
            key,
            outputs,
            scanned,
            schema: Arc::new(plan.schema().as_arrow().clone()),
        })
    }

    /// The columns of the result.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Reads the row, if there is one.
    pub fn execute(&self, params: &ParamValues) -> Result<RecordBatch> {
        let values = self
            .key
            .iter()
            .map(|k| match k {
                KeyValue::Param(id) => Ok(params.get_placeholders_with_values(id)?.value),
                KeyValue::Literal(v) => Ok(v.clone()),
            })
            .collect::<Result<Vec<_>>>()?;
        let row = match key_for_values(&self.table, &values)? {
            Some(key) => self
                .store
                .get_with(&key, |value| self.table.codec().decode_values([value]))?
                .transpose()?,
            None => None,
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
