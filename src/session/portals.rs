//! Named statements and cursors in SQL: `PREPARE`, `EXECUTE`, `DEALLOCATE`, `DECLARE ...
//! CURSOR`, `FETCH` and `CLOSE`. Drivers use them: psycopg sends `DEALLOCATE ALL` after a
//! rollback once it has prepared statements itself, and its named cursors (SQLAlchemy's
//! `stream_results`) are `DECLARE` / `FETCH FORWARD n` / `CLOSE`.

use datafusion::common::metadata::ScalarAndMetadata;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::sql::sqlparser::ast::{
    CloseCursor, Declare, DeclareType, Expr as SqlExpr, FetchDirection, Ident, ObjectName, Query,
    Value,
};

use super::connection::{Cursor, Motion, NamedStatement};
use super::{Output, Session, in_transaction, rows_output, run_query};
use crate::common::types;
use crate::error::{Error, Result};
use crate::sql::normalize_ident;

/// A cursor declaration: its name, query and whether it is held past its transaction.
pub(super) struct CursorDeclaration<'a> {
    pub name: String,
    pub query: &'a Query,
    pub hold: bool,
    pub no_scroll: bool,
}

/// Reads `DECLARE name [BINARY] [NO SCROLL] CURSOR [WITH[OUT] HOLD] FOR query`.
pub(super) fn cursor_declaration(stmts: &[Declare]) -> Result<CursorDeclaration<'_>> {
    let [declare] = stmts else {
        return Err(Error::Syntax(
            "syntax error: DECLARE declares one cursor".into(),
        ));
    };
    let (Some(DeclareType::Cursor), Some(query), [name]) = (
        declare.declare_type.as_ref(),
        declare.for_query.as_deref(),
        declare.names.as_slice(),
    ) else {
        return Err(Error::NotSupported(
            "DECLARE other than DECLARE name CURSOR FOR query".into(),
        ));
    };
    Ok(CursorDeclaration {
        name: normalize_ident(name),
        query,
        hold: declare.hold == Some(true),
        no_scroll: declare.scroll == Some(false),
    })
}

/// The name in `EXECUTE name`.
pub(super) fn statement_name(name: &ObjectName) -> Result<String> {
    match name.0.as_slice() {
        [part] => part
            .as_ident()
            .map(normalize_ident)
            .ok_or_else(|| Error::Syntax(format!("syntax error: {name} is not a name"))),
        _ => Err(Error::Syntax(format!("syntax error: {name} is not a name"))),
    }
}

/// Where `FETCH direction` moves a cursor.
fn fetch_motion(direction: &FetchDirection) -> Result<Motion> {
    let number = |value: &datafusion::sql::sqlparser::ast::ValueWithSpan| match &value.value {
        Value::Number(n, _) => n.parse::<i64>().map_err(|_| {
            Error::Syntax(format!("syntax error at or near \"{n}\": not a row count"))
        }),
        other => Err(Error::Syntax(format!(
            "syntax error at or near \"{other}\": not a row count"
        ))),
    };
    // A negative count goes the other way.
    let steps = |n: i64, forward: bool| {
        if (n >= 0) == forward {
            Motion::Forward(Some(n.unsigned_abs() as usize))
        } else {
            Motion::Backward(Some(n.unsigned_abs() as usize))
        }
    };
    Ok(match direction {
        FetchDirection::Next | FetchDirection::Forward { limit: None } => Motion::Forward(Some(1)),
        FetchDirection::Prior | FetchDirection::Backward { limit: None } => {
            Motion::Backward(Some(1))
        }
        FetchDirection::All | FetchDirection::ForwardAll => Motion::Forward(None),
        FetchDirection::BackwardAll => Motion::Backward(None),
        FetchDirection::Forward { limit: Some(v) } | FetchDirection::Count { limit: v } => {
            steps(number(v)?, true)
        }
        FetchDirection::Backward { limit: Some(v) } => steps(number(v)?, false),
        FetchDirection::First => Motion::Absolute(1),
        FetchDirection::Last => Motion::Absolute(-1),
        FetchDirection::Absolute { limit } => Motion::Absolute(number(limit)?),
        FetchDirection::Relative { limit } => Motion::Relative(number(limit)?),
    })
}

impl Session<'_> {
    /// `PREPARE name [(types)] AS statement`.
    pub(super) async fn prepare_named(
        &mut self,
        name: &Ident,
        declared: &[datafusion::sql::sqlparser::ast::DataType],
        statement: &datafusion::sql::sqlparser::ast::Statement,
    ) -> Result<Output> {
        let prepared = self
            .prepare(crate::sql::Stmt::Sql(Box::new(statement.clone())))
            .await?;
        let mut param_types = prepared.param_types().to_vec();
        for (i, declared) in declared.iter().enumerate() {
            let ty = types::arrow_type(declared)?;
            match param_types.get_mut(i) {
                Some(slot) => *slot = ty,
                None => param_types.push(ty),
            }
        }
        self.conn.prepare(
            &normalize_ident(name),
            NamedStatement {
                prepared,
                param_types,
            },
        )?;
        Ok(Output::Command("PREPARE".into()))
    }

    /// `EXECUTE name [(arguments)]`: the arguments are evaluated, cast to the parameters'
    /// types, and the statement runs with them.
    pub(super) async fn execute_named(
        &mut self,
        target: &NamedStatement,
        arguments: &[SqlExpr],
    ) -> Result<Output> {
        let expected = target.prepared.param_types().len();
        if arguments.len() != expected {
            return Err(Error::coded(
                "42601",
                format!(
                    "wrong number of parameters for prepared statement: {expected} expected, {} given",
                    arguments.len()
                ),
            ));
        }
        let mut values = Vec::with_capacity(arguments.len());
        if !arguments.is_empty() {
            let list = arguments
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let df = self.db.ctx().sql(&format!("SELECT {list}")).await?;
            let batches = df.collect().await?;
            let batch = batches
                .first()
                .filter(|b| b.num_rows() == 1)
                .ok_or_else(|| Error::Internal("EXECUTE arguments gave no row".into()))?;
            for (i, column) in batch.columns().iter().enumerate() {
                let value = ScalarValue::try_from_array(column, 0)?;
                let value = match target.param_types.get(i) {
                    Some(ty) if !ty.is_null() => value.cast_to(ty)?,
                    _ => value,
                };
                values.push(ScalarAndMetadata::from(value));
            }
        }
        Box::pin(self.execute(&target.prepared, ParamValues::List(values))).await
    }

    /// `DEALLOCATE [PREPARE] name | ALL`.
    pub(super) fn deallocate(&mut self, name: &Ident) -> Result<Output> {
        let all = name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all");
        if all {
            self.conn.deallocate(None)?;
            Ok(Output::Command("DEALLOCATE ALL".into()))
        } else {
            self.conn.deallocate(Some(&normalize_ident(name)))?;
            Ok(Output::Command("DEALLOCATE".into()))
        }
    }

    /// `DECLARE name CURSOR FOR query`, with the query planned and its parameters given.
    pub(super) async fn declare(
        &mut self,
        name: &str,
        plan: &datafusion::logical_expr::LogicalPlan,
        hold: bool,
        no_scroll: bool,
        params: &ParamValues,
    ) -> Result<Output> {
        if !hold && !in_transaction(self.vars) {
            return Err(Error::coded(
                "25P01",
                "DECLARE CURSOR can only be used in transaction blocks",
            ));
        }
        let plan = plan.clone().replace_params_with_values(params)?;
        let Output::Rows { stream, .. } = run_query(self.db, &self.env(), plan).await? else {
            return Err(Error::Internal("a cursor's query returned no rows".into()));
        };
        self.conn
            .declare(name, Cursor::new(stream, hold).forward_only(no_scroll))?;
        Ok(Output::Command("DECLARE CURSOR".into()))
    }

    /// `FETCH [direction] [FROM | IN] name`.
    pub(super) async fn fetch(
        &mut self,
        name: &Ident,
        direction: &FetchDirection,
    ) -> Result<Output> {
        let motion = fetch_motion(direction)?;
        let cursor = self.conn.cursor(&normalize_ident(name))?;
        let mut cursor = cursor.lock().await;
        let batches = cursor.fetch(motion).await?;
        Ok(rows_output(
            cursor.schema().clone(),
            batches,
            "FETCH".into(),
        ))
    }

    /// `CLOSE name | ALL`.
    pub(super) fn close(&mut self, cursor: &CloseCursor) -> Result<Output> {
        match cursor {
            CloseCursor::All => self.conn.close(None)?,
            CloseCursor::Specific { name } => self.conn.close(Some(&normalize_ident(name)))?,
        }
        Ok(Output::Command("CLOSE CURSOR".into()))
    }
}
