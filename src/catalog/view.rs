//! Views: named queries, and materialized views whose rows the dataflow keeps up to date.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use datafusion::arrow::datatypes::Schema;
use datafusion::logical_expr::LogicalPlan;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::stream::ExprErrors;
use crate::table::{ColumnDef, Table, TableDef};

/// The stored definition of a view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewDef {
    /// Unique id, from the same counter as tables'. A materialized view's rows and state are
    /// stored under it.
    pub id: u32,
    /// The view's name.
    pub name: String,
    /// The query, as SQL text.
    pub query: String,
    /// True for a materialized view.
    pub materialized: bool,
    /// The view's columns.
    pub columns: Vec<ColumnDef>,
    /// Positions of the columns that are unique in every row, if the query gives such a key
    /// or the view declares one.
    pub key: Option<Vec<usize>>,
    /// The key was declared (`WITH (primary_key = '...')`) where the planner derives none that
    /// it implies: the view's root checks that it holds.
    #[serde(default)]
    pub key_checked: bool,
    /// Ids of the tables and views the query reads.
    pub depends_on: Vec<u32>,
    /// Names of the models the query calls.
    #[serde(default)]
    pub models: Vec<String>,
    /// When the view was created (ms since 1970).
    pub created_ms: i64,
    /// `EMIT ON WINDOW CLOSE`: the query's GROUP BY emits each group once, when the watermark
    /// closes it.
    #[serde(default)]
    pub emit_on_window_close: bool,
    /// The view's rows are only ever inserted.
    #[serde(default)]
    pub append_only: bool,
    /// Positions of the columns that carry a watermark to views reading this one.
    #[serde(default)]
    pub watermarks: Vec<usize>,
    /// What the view could not fill itself with when it was created: records a source had
    /// read that its topic no longer holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_note: Option<String>,
    /// `CREATE TEMPORARY VIEW` (or a view over a temporary relation): dropped when the
    /// connection that created it ends, or when the server starts again.
    #[serde(default)]
    pub temporary: bool,
    /// Rows without a key that are only ever inserted are stored in arrival order, each under
    /// its sequence number, instead of once per distinct row with a count.
    #[serde(default)]
    pub appended: bool,
}

impl ViewDef {
    /// The definition of the table-like storage of a materialized view's rows: keyed by the
    /// view's key, or by all columns with a count per distinct row when there is none.
    pub fn storage_def(&self) -> TableDef {
        let (primary_key, counted) = match &self.key {
            Some(key) => (key.clone(), false),
            None => ((0..self.columns.len()).collect(), true),
        };
        TableDef {
            id: self.id,
            name: self.name.clone(),
            columns: self.columns.clone(),
            primary_key,
            definition: self.query.clone(),
            counted,
            appended: self.appended && counted,
            append_only: self.append_only,
            watermark: None,
            temporary: false,
            checks: Vec::new(),
            foreign_keys: Vec::new(),
            connector: None,
        }
    }

    /// Columns of the types of a planned `schema`, under `names`.
    pub fn columns_of(schema: &Schema, names: &[String]) -> Vec<ColumnDef> {
        schema
            .fields()
            .iter()
            .zip(names)
            .map(|(f, name)| ColumnDef {
                pg_type: f
                    .metadata()
                    .get(crate::catalog::pg_builtins::PG_TYPE_KEY)
                    .cloned(),
                ..ColumnDef::nullable(name.clone(), f.data_type())
            })
            .collect()
    }
}

/// A view ready for use.
#[derive(Debug)]
pub struct View {
    def: ViewDef,
    /// A materialized view's rows.
    storage: Option<Arc<Table>>,
    /// A plain view's plan, inlined into the queries that read it.
    plan: Option<LogicalPlan>,
    /// A materialized view's row count as of the last committed epoch.
    rows: Arc<AtomicI64>,
    /// Rows whose expressions failed and got NULL.
    errors: Arc<ExprErrors>,
}

impl View {
    /// A materialized view.
    pub fn materialized(def: ViewDef) -> Result<Self> {
        let storage = Table::new(def.storage_def(), 0, |_| {
            Err(crate::Error::Internal("views have no defaults".into()))
        })?;
        Ok(Self {
            def,
            storage: Some(Arc::new(storage)),
            plan: None,
            rows: Arc::new(AtomicI64::new(0)),
            errors: Arc::default(),
        })
    }

    /// The view, counting its failing rows in `errors` (which its dataflow was planned with).
    pub fn with_errors(mut self, errors: Arc<ExprErrors>) -> Self {
        self.errors = errors;
        self
    }

    /// Rows of a materialized view whose expressions failed and got NULL.
    pub fn errors(&self) -> &Arc<ExprErrors> {
        &self.errors
    }

    /// A plain view over `plan`.
    pub fn plain(def: ViewDef, plan: LogicalPlan) -> Self {
        Self {
            def,
            storage: None,
            plan: Some(plan),
            rows: Arc::new(AtomicI64::new(0)),
            errors: Arc::default(),
        }
    }

    /// The stored definition.
    pub fn def(&self) -> &ViewDef {
        &self.def
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// A materialized view's rows.
    pub fn storage(&self) -> Option<&Arc<Table>> {
        self.storage.as_ref()
    }

    /// The row count of a materialized view, kept by its dataflow.
    pub fn rows(&self) -> &Arc<AtomicI64> {
        &self.rows
    }

    /// A plain view's plan.
    pub fn plan(&self) -> Option<&LogicalPlan> {
        self.plan.as_ref()
    }
}
