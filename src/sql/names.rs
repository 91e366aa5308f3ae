//! Output column names as PostgreSQL gives them.
//!
//! DataFusion names an unaliased expression after its text (`count(*)`, `Int64(1)`); PostgreSQL
//! names it after the function, the cast's type or the column (`count`, `?column?`, `float8`).
//! Clients show these names and pandas uses them as column labels, so Augur aliases each
//! unaliased expression of the outermost SELECT with PostgreSQL's name, where that name is unique
//! in the list (DataFusion requires unique names; PostgreSQL does not).

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    DataType, Expr, Ident, Query, SelectItem, SetExpr, Statement, Value, VisitMut, VisitorMut,
};

use super::normalize_ident;

/// Marks an internal suffix that makes a duplicated output name unique for DataFusion; the
/// server shows clients the name before it ([`client_name`]).
pub const DUPLICATE_MARK: char = '\u{1}';

/// The name a client sees for an output column: PostgreSQL allows duplicate names, DataFusion
/// does not, so duplicates carry a suffix after [`DUPLICATE_MARK`].
pub fn client_name(name: &str) -> &str {
    name.split(DUPLICATE_MARK).next().unwrap_or(name)
}

/// Aliases unaliased output expressions of a query statement with PostgreSQL's column names.
pub fn apply_pg_column_names(statement: &mut Statement) {
    // Subqueries keep DataFusion's names, except that a name repeated in one select list
    // (`SELECT DISTINCT a, b, a`) gets the suffix that makes it unique.
    let named_here = matches!(statement, Statement::Query(_) | Statement::Insert(_));
    let _ = statement.visit(&mut NestedDuplicates {
        skip_first: named_here,
    });
    match statement {
        Statement::Query(query) => name_query(query),
        // The names of an INSERT's rows do not matter, but DataFusion wants them unique.
        Statement::Insert(insert) => {
            if let Some(source) = insert.source.as_mut() {
                name_query(source);
            }
        }
        _ => {}
    }
}

struct NestedDuplicates {
    /// The statement's own query, named below, comes first.
    skip_first: bool,
}

impl VisitorMut for NestedDuplicates {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if std::mem::take(&mut self.skip_first) {
            return ControlFlow::Continue(());
        }
        if let SetExpr::Select(select) = query.body.as_mut() {
            suffix_duplicates(&mut select.projection);
        }
        ControlFlow::Continue(())
    }
}

/// Gives the repeated names of a select list the suffix after [`DUPLICATE_MARK`].
fn suffix_duplicates(projection: &mut [SelectItem]) {
    let Some(names) = item_names(projection) else {
        return;
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, (item, name)) in projection.iter_mut().zip(names).enumerate() {
        let count = seen.entry(name.clone()).or_default();
        *count += 1;
        if *count > 1 {
            set_alias(item, format!("{name}{DUPLICATE_MARK}{i}"));
        }
    }
}

/// Names `item` (an expression) `alias`.
fn set_alias(item: &mut SelectItem, alias: String) {
    let expr = match &*item {
        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr.clone(),
        _ => return,
    };
    *item = SelectItem::ExprWithAlias {
        expr,
        alias: Ident::with_quote('"', alias),
    };
}

fn name_query(query: &mut Query) {
    name_set_expr(query.body.as_mut(), false);
}

/// Names the columns of a subquery in FROM as PostgreSQL does, its plain column references
/// too: in a `LATERAL` subquery DataFusion names a reference to an outer column after the
/// reference (`outer_ref(a.x)`), PostgreSQL after the column.
pub fn name_derived(query: &mut Query) {
    name_set_expr(query.body.as_mut(), true);
}

/// Names the computed columns of a subquery in FROM or a CTE as PostgreSQL does.
pub fn name_subquery(query: &mut Query) {
    name_set_expr(query.body.as_mut(), false);
}

fn name_set_expr(body: &mut SetExpr, columns: bool) {
    match body {
        // Every branch needs names DataFusion accepts; the first one's are the result's.
        SetExpr::SetOperation { left, right, .. } => {
            name_set_expr(left, columns);
            name_set_expr(right, columns);
        }
        SetExpr::Select(select) => name_items(&mut select.projection, columns),
        SetExpr::Query(inner) => name_set_expr(inner.body.as_mut(), columns),
        _ => {}
    }
}

/// PostgreSQL's name for each item of a select list; None with a wildcard, where the full list
/// of names is unknown here (DataFusion's names stay).
fn item_names(projection: &[SelectItem]) -> Option<Vec<String>> {
    projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(expr) => Some(column_name(expr)),
            SelectItem::ExprWithAlias { alias, .. } => Some(normalize_ident(alias)),
            _ => None,
        })
        .collect()
}

fn name_items(projection: &mut [SelectItem], columns: bool) {
    let Some(names) = item_names(projection) else {
        return;
    };
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for name in &names {
        *counts.entry(name.as_str()).or_default() += 1;
    }
    let aliases: Vec<Option<String>> = projection
        .iter()
        .zip(&names)
        .enumerate()
        .map(|(i, (item, name))| {
            let unique = counts.get(name.as_str()) == Some(&1);
            match item {
                _ if !unique => Some(format!("{name}{DUPLICATE_MARK}{i}")),
                SelectItem::UnnamedExpr(expr) if columns || !is_plain_column(expr) => {
                    Some(name.clone())
                }
                _ => None,
            }
        })
        .collect();
    for (item, alias) in projection.iter_mut().zip(aliases) {
        if let Some(alias) = alias {
            set_alias(item, alias);
        }
    }
}

fn is_plain_column(expr: &Expr) -> bool {
    matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
}

/// PostgreSQL's name for an output expression (`FigureColname`).
pub fn column_name(expr: &Expr) -> String {
    figure(expr).unwrap_or_else(|| "?column?".to_string())
}

fn figure(expr: &Expr) -> Option<String> {
    figure_strength(expr).map(|(name, _)| name)
}

/// The first argument of a call, when it is an unnamed expression.
fn first_argument(f: &datafusion::sql::sqlparser::ast::Function) -> Option<&Expr> {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    match &f.args {
        FunctionArguments::List(list) => match list.args.first() {
            Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) => Some(e),
            _ => None,
        },
        _ => None,
    }
}

/// A name, and how strongly the expression gives it as PostgreSQL weighs it (`FigureColname`):
/// 2 for a column or function name, 1 for a type name (a cast, a typed literal, `CASE`), which
/// an enclosing cast or `CASE` replaces.
fn figure_strength(expr: &Expr) -> Option<(String, u8)> {
    let strong = |name: String| Some((name, 2));
    match expr {
        Expr::Identifier(ident) => strong(normalize_ident(ident)),
        Expr::CompoundIdentifier(parts) => parts.last().map(|p| (normalize_ident(p), 2)),
        // A cast to a type stored as text, rewritten into the function that reads it (see
        // `pg_exprs`): named as the cast is.
        Expr::Function(f) if text_type_reader(f).is_some() => first_argument(f)
            .and_then(figure_strength)
            .filter(|(_, s)| *s == 2)
            .or_else(|| text_type_reader(f).map(|t| (t.to_string(), 1))),
        // A scalar subquery's value (see `rewrite::aggregate_scalar_subqueries`): named as
        // what it wraps.
        Expr::Function(f)
            if f.name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| {
                i.value == crate::catalog::single_value::SINGLE_VALUE
                    || i.value == crate::catalog::single_value::SINGLE_UNWRAP
                    || i.value == crate::catalog::pg_datetime::ROUND_SECONDS
            }) =>
        {
            first_argument(f).and_then(figure_strength)
        }
        Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(normalize_ident)
            // `ARRAY(subquery)`, rewritten (see `rewrite::array_subqueries`).
            .map(|name| {
                if name == super::rewrite::ARRAY_FUNCTION {
                    ("array".into(), 2)
                } else if name == crate::catalog::pg_extract::EXTRACT {
                    ("extract".into(), 2)
                } else if name == crate::catalog::pg_extract::DATE_PART {
                    ("date_part".into(), 2)
                } else if name == crate::catalog::pg_functions::INTERVAL_IN {
                    // An interval literal read in the session's style: named as the cast.
                    ("interval".into(), 1)
                } else if name == crate::catalog::pg_regexp::SUBSTRING_REGEX
                    || name == crate::catalog::pg_regexp::SUBSTRING_SIMILAR
                {
                    ("substring".into(), 2)
                } else if name == crate::catalog::pg_builtins::FORMAT_SPREAD {
                    ("format".into(), 2)
                } else if name == crate::catalog::pg_builtins::CONCAT_SPREAD {
                    ("concat".into(), 2)
                } else if name == crate::catalog::pg_builtins::CONCAT_WS_SPREAD {
                    ("concat_ws".into(), 2)
                } else if let Some(function) =
                    name.strip_prefix(crate::catalog::window_exclude::PREFIX)
                {
                    (function.to_string(), 2)
                } else {
                    (name, 2)
                }
            }),
        Expr::Cast {
            expr, data_type, ..
        } => figure_strength(expr)
            .filter(|(_, s)| *s == 2)
            .or_else(|| Some((type_name(data_type), 1))),
        Expr::Nested(inner) => figure_strength(inner),
        Expr::Case { else_result, .. } => else_result
            .as_deref()
            .and_then(figure_strength)
            .filter(|(_, s)| *s == 2)
            .or_else(|| Some(("case".into(), 1))),
        Expr::Exists { .. } => strong("exists".into()),
        Expr::Array(_) => strong("array".into()),
        Expr::Extract { .. } => strong("extract".into()),
        Expr::Substring { shorthand, .. } => {
            strong(if *shorthand { "substr" } else { "substring" }.into())
        }
        Expr::Trim { trim_where, .. } => strong(
            match trim_where {
                Some(datafusion::sql::sqlparser::ast::TrimWhereField::Leading) => "ltrim",
                Some(datafusion::sql::sqlparser::ast::TrimWhereField::Trailing) => "rtrim",
                _ => "btrim",
            }
            .into(),
        ),
        // `a[1]`, `(ARRAY[...])[2]`: named as what is subscripted; `(r).f` after the field.
        Expr::CompoundFieldAccess { root, access_chain } => match access_chain.last() {
            Some(datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(field))) => {
                strong(normalize_ident(field))
            }
            Some(datafusion::sql::sqlparser::ast::AccessExpr::Subscript(_)) => {
                figure_strength(root)
            }
            _ => None,
        },
        Expr::Position { .. } => strong("position".into()),
        Expr::Overlay { .. } => strong("overlay".into()),
        Expr::Ceil { .. } => strong("ceil".into()),
        Expr::Floor { .. } => strong("floor".into()),
        Expr::Subquery(query) => match query.body.as_ref() {
            SetExpr::Select(select) => match select.projection.first() {
                Some(SelectItem::UnnamedExpr(e)) => figure(e).map(|n| (n, 2)),
                Some(SelectItem::ExprWithAlias { alias, .. }) => strong(normalize_ident(alias)),
                _ => None,
            },
            _ => None,
        },
        Expr::TypedString(typed) => Some((type_name(&typed.data_type), 1)),
        Expr::Interval(_) => Some(("interval".into(), 1)),
        Expr::Value(v) if matches!(v.value, Value::Boolean(_)) => Some(("bool".into(), 1)),
        _ => None,
    }
}

/// The name PostgreSQL shows for a type in a column heading (`int4`, `float8`, `text`, ...).
/// The type a call of one of the functions casts to `uuid`, `json` and `jsonb` are rewritten
/// into reads.
fn text_type_reader(f: &datafusion::sql::sqlparser::ast::Function) -> Option<&'static str> {
    let name = f.name.0.last().and_then(|p| p.as_ident())?.value.as_str();
    match name {
        crate::catalog::pg_builtins::UUID_IN => Some("uuid"),
        crate::catalog::pg_json::JSON_IN => Some("json"),
        crate::catalog::pg_json::JSONB_IN => Some("jsonb"),
        crate::catalog::pg_char::BPCHAR => Some("bpchar"),
        crate::catalog::pg_char::VARCHAR => Some("varchar"),
        _ => None,
    }
}

fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => "int4".into(),
        DataType::BigInt(_) | DataType::Int8(_) => "int8".into(),
        DataType::SmallInt(_) | DataType::Int2(_) => "int2".into(),
        DataType::Real | DataType::Float4 => "float4".into(),
        DataType::Double(_) | DataType::DoublePrecision | DataType::Float8 => "float8".into(),
        DataType::Bool | DataType::Boolean => "bool".into(),
        DataType::Varchar(_) | DataType::CharacterVarying(_) => "varchar".into(),
        DataType::Char(_) | DataType::Character(_) => "bpchar".into(),
        DataType::Numeric(_) | DataType::Decimal(_) => "numeric".into(),
        DataType::Timestamp(
            _,
            datafusion::sql::sqlparser::ast::TimezoneInfo::WithTimeZone
            | datafusion::sql::sqlparser::ast::TimezoneInfo::Tz,
        ) => "timestamptz".into(),
        DataType::Timestamp(..) => "timestamp".into(),
        DataType::Interval { .. } => "interval".into(),
        other => other.to_string().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::SqlParser;

    fn named(sql: &str) -> String {
        let mut statement = SqlParser::new().parse(sql).unwrap().remove(0);
        apply_pg_column_names(&mut statement);
        statement.to_string()
    }

    #[test]
    fn expressions_get_postgres_names() {
        assert_eq!(
            named("SELECT count(*), sum(t.amount), 1, x::text, 2::float8 FROM t"),
            "SELECT count(*) AS \"count\", sum(t.amount) AS \"sum\", 1 AS \"?column?\", \
             x::TEXT AS \"x\", 2::FLOAT8 AS \"float8\" FROM t"
        );
        // plain columns and explicit aliases stay; duplicates keep DataFusion's names
        assert_eq!(named("SELECT a, b AS c FROM t"), "SELECT a, b AS c FROM t");
        assert_eq!(
            named("SELECT 1, 2"),
            "SELECT 1 AS \"?column?\u{1}0\", 2 AS \"?column?\u{1}1\""
        );
        assert_eq!(client_name("?column?\u{1}1"), "?column?");
        // a cast over a type name takes its own type's; CASE takes its ELSE's column name
        assert_eq!(
            named(
                "SELECT 1.5::float8::text, INTERVAL '1 hour', CASE WHEN a THEN 1 ELSE b END, CASE WHEN a THEN b END FROM t"
            ),
            "SELECT 1.5::FLOAT8::TEXT AS \"text\", INTERVAL '1 hour' AS \"interval\", \
             CASE WHEN a THEN 1 ELSE b END AS \"b\", CASE WHEN a THEN b END AS \"case\" FROM t"
        );
        assert_eq!(
            named("SELECT *, count(*) FROM t"),
            "SELECT *, count(*) FROM t"
        );
    }
}
