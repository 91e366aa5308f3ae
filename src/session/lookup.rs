//! Prepared primary-key lookups without DataFusion.
//!
//! A prepared `SELECT columns FROM t WHERE pk = $1` is recognised when it is planned (at Parse)
//! and then runs as one RocksDB read and a projection: no optimiser, no physical plan, no
//! streams. Serving a feature row by key is the hottest query an application sends. Anything
//! that is not exactly that shape goes through DataFusion as usual.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};

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

/// A query that reads one row by its whole primary key.
#[derive(Debug)]
pub struct PointLookup {
    table: Arc<Table>,
    store: Store,
    /// By key column, in key order.
    key: Vec<KeyValue>,
    /// Stored-row positions of the output columns.
    projection: Vec<usize>,
    schema: SchemaRef,
}

impl PointLookup {
    /// Recognises `Projection(columns) ← Filter(key = value AND ...) ← [alias] ← TableScan`.
    pub fn from_plan(plan: &LogicalPlan) -> Option<Self> {
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
        let projection_columns = projection
            .expr
            .iter()
            .map(columns_of)
            .collect::<Option<Vec<_>>>()?;

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
            projection: projection_columns,
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
                let columns = self
                    .projection
                    .iter()
                    .map(|&i| full.column(i).clone())
                    .collect();
                Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
            }
            None => Ok(RecordBatch::new_empty(self.schema.clone())),
        }
    }
}
