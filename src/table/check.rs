//! `CHECK` constraints: an expression over a row's columns that every row written must not make
//! false (NULL passes, as in PostgreSQL). Checked on every write of whole rows — INSERT, UPDATE,
//! upsert, COPY — in [`super::Table::conform`].

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, Volatility};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What `CHECK (expr)` said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckDef {
    /// The constraint's name (`<table>_<column>_check` unless named).
    pub name: String,
    /// The expression, as SQL text over the table's columns.
    pub expr: String,
}

/// A compiled `CHECK` constraint.
#[derive(Debug)]
pub struct Check {
    def: CheckDef,
    expr: Arc<dyn PhysicalExpr>,
}

impl Check {
    /// Compiles `def` over rows of `schema` (the table's stored columns). The expression must
    /// give a boolean and be immutable: a row that passed must pass when read again.
    pub fn compile(def: &CheckDef, schema: &SchemaRef) -> Result<Self> {
        let ctx = SessionContext::new();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let expr = ctx.parse_sql_expr(&def.expr, &df_schema)?;
        let mut varies = false;
        expr.apply(|e| {
            varies |= matches!(e, Expr::ScalarFunction(f)
                if f.func.signature().volatility != Volatility::Immutable);
            Ok(TreeNodeRecursion::Continue)
        })?;
        if varies {
            return Err(Error::NotSupported(format!(
                "a CHECK constraint whose value can change between reads ({})",
                def.expr
            )));
        }
        let expr = ctx.create_physical_expr(expr, &df_schema)?;
        let ty = expr.data_type(schema)?;
        if !matches!(ty, DataType::Boolean | DataType::Null) {
            return Err(Error::coded(
                "42804",
                format!(
                    "argument of CHECK must be type boolean, not type {}",
                    crate::common::types::pg_type_name(&ty)
                ),
            ));
        }
        Ok(Self {
            def: def.clone(),
            expr,
        })
    }

    /// The first row of `rows` (whole stored rows) the constraint fails, if any.
    pub fn first_failure(&self, rows: &RecordBatch) -> Result<Option<usize>> {
        let result = self.expr.evaluate(rows)?.into_array(rows.num_rows())?;
        if result.data_type() == &DataType::Null {
            return Ok(None);
        }
        let result = result.as_boolean();
        Ok((0..result.len()).find(|&i| result.is_valid(i) && !result.value(i)))
    }

    /// The constraint's name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// The constraint's definition.
    pub fn def(&self) -> &CheckDef {
        &self.def
    }
}
