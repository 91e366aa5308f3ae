//! Rewrites of parsed statements that make PostgreSQL SQL plan in DataFusion.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    ObjectName, ObjectNamePart, Query, SelectItem, SetExpr, Statement, TableFactor, Value,
    VisitMut, VisitorMut, visit_expressions, visit_relations,
};

/// Aggregates whose presence makes a scalar subquery return one row already.
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "first_value",
    "last_value",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "json_agg",
    "jsonb_agg",
    "median",
    "approx_distinct",
    "json_object_agg",
    "jsonb_object_agg",
    "bit_and",
    "bit_or",
    "corr",
    "covar_pop",
    "covar_samp",
    "regr_slope",
    "regr_intercept",
    "regr_count",
    "regr_r2",
    "regr_avgx",
    "regr_avgy",
    "regr_sxx",
    "regr_syy",
    "regr_sxy",
    "percentile_cont",
    "percentile_disc",
    "mode",
];

/// True when `function` is an aggregate call (not a window function).
pub fn is_aggregate(function: &Function) -> bool {
    function.over.is_none()
        && function
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| AGGREGATES.contains(&i.value.to_ascii_lowercase().as_str()))
}

/// True when the statement reads PostgreSQL's catalogs (`pg_catalog`, `information_schema`,
/// `pg_*` relations or functions): what clients send to introspect the database.
pub fn reads_catalog(statement: &Statement) -> bool {
    let catalog_name = |name: &ObjectName| {
        name.0.iter().any(|part| match part {
            ObjectNamePart::Identifier(ident) => {
                let v = ident.value.to_ascii_lowercase();
                v == "pg_catalog" || v == "information_schema" || v.starts_with("pg_")
            }
            ObjectNamePart::Function(_) => false,
        })
    };
    let relation = visit_relations(statement, |name| {
        if catalog_name(name) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    if relation.is_break() {
        return true;
    }
    visit_expressions(statement, |expr| match expr {
        Expr::Function(f) if catalog_name(&f.name) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// DataFusion plans a correlated scalar subquery only when it is an aggregate. A scalar subquery
/// returns at most one row, so `(SELECT x FROM ...)` equals `(SELECT first_value(x) FROM ...)`:
/// this wraps the single output expression of every non-aggregate scalar subquery that way.
pub fn aggregate_scalar_subqueries(statement: &mut Statement) {
    let _ = statement.visit(&mut ScalarSubqueries);
}

struct ScalarSubqueries;

impl VisitorMut for ScalarSubqueries {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Subquery(query) = expr {
            wrap_single_output(query);
        }
        ControlFlow::Continue(())
    }
}

fn wrap_single_output(query: &mut Query) {
    if query.limit_clause.is_some() || query.fetch.is_some() || query.order_by.is_some() {
        return;
    }
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    if select.projection.len() != 1
        || select.having.is_some()
        || select.distinct.is_some()
        || !matches!(&select.group_by, datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty())
    {
        return;
    }
    let (SelectItem::UnnamedExpr(inner) | SelectItem::ExprWithAlias { expr: inner, .. }) =
        &mut select.projection[0]
    else {
        return;
    };
    if has_aggregate(inner) {
        return;
    }
    let argument = std::mem::replace(inner, Expr::Value(Value::Null.into()));
    *inner = call("first_value", vec![argument]);
}

/// `name(args)`, a plain call of a function.
pub(crate) fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

fn has_aggregate(expr: &Expr) -> bool {
    visit_expressions(expr, |e| match e {
        Expr::Function(f) if is_aggregate(f) => ControlFlow::Break(()),
        // an aggregate inside a nested subquery belongs to that subquery
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
            ControlFlow::Continue(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// Catalog queries sometimes read a set-returning `unnest(column)` in FROM inside a correlated
/// scalar subquery, which DataFusion cannot plan. Such subqueries describe catalog features
/// Augur does not have (extended statistics, for one), so they become NULL.
pub fn null_unnest_subqueries(statement: &mut Statement) {
    let _ = statement.visit(&mut UnnestSubqueries);
}

/// In catalog queries, scalar subqueries inside CASE (SQLAlchemy's column defaults, identity
/// and collation lookups) are correlated in ways DataFusion cannot plan; they read catalogs
/// that hold nothing for Augur's tables, so they become NULL.
pub fn null_subqueries_in_case(statement: &mut Statement) {
    let _ = statement.visit(&mut CaseSubqueries);
}

struct CaseSubqueries;

impl VisitorMut for CaseSubqueries {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Case { .. } = expr {
            let _ = expr.visit(&mut NullSubqueries);
        }
        ControlFlow::Continue(())
    }
}

struct NullSubqueries;

impl VisitorMut for NullSubqueries {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Subquery(_) = expr {
            *expr = Expr::Value(Value::Null.into());
        }
        ControlFlow::Continue(())
    }
}

/// `generate_subscripts(array, 1)`, a set-returning function DataFusion lacks, becomes
/// `unnest(generate_series(1, cardinality(array)))`, which yields the same rows beside other
/// `unnest`s of the same array.
pub fn rewrite_generate_subscripts(statement: &mut Statement) {
    let _ = statement.visit(&mut GenerateSubscripts);
}

struct GenerateSubscripts;

impl VisitorMut for GenerateSubscripts {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = expr
            && f.name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("generate_subscripts"))
            && let FunctionArguments::List(list) = &f.args
            && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(array))) = list.args.first()
        {
            let sql = format!("unnest(generate_series(1, CAST(cardinality({array}) AS BIGINT)))");
            if let Ok(replacement) = datafusion::sql::sqlparser::parser::Parser::new(
                &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            )
            .try_with_sql(&sql)
            .and_then(|mut p| p.parse_expr())
            {
                *expr = replacement;
            }
        }
        ControlFlow::Continue(())
    }
}

/// `a IS DISTINCT FROM b AND c` means `(a IS DISTINCT FROM b) AND c` in PostgreSQL, where `IS`
/// binds tighter than `NOT`, `AND` and `OR`; sqlparser reads the right side of `IS [NOT] DISTINCT
/// FROM` as a whole expression, `a IS DISTINCT FROM (b AND c)`. This regroups what it read.
/// Parentheses the user wrote are kept (they parse as `Expr::Nested`).
pub fn distinct_from_precedence(statement: &mut Statement) {
    let _ = statement.visit(&mut DistinctFromPrecedence);
}

struct DistinctFromPrecedence;

impl VisitorMut for DistinctFromPrecedence {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if matches!(expr, Expr::IsDistinctFrom(..) | Expr::IsNotDistinctFrom(..)) {
            let taken = std::mem::replace(expr, Expr::Value(Value::Null.into()));
            *expr = regroup_distinct_from(taken);
        }
        ControlFlow::Continue(())
    }
}

fn regroup_distinct_from(expr: Expr) -> Expr {
    use datafusion::sql::sqlparser::ast::BinaryOperator;

    let (left, right, negated) = match expr {
        Expr::IsDistinctFrom(left, right) => (left, right, false),
        Expr::IsNotDistinctFrom(left, right) => (left, right, true),
        other => return other,
    };
    match *right {
        Expr::BinaryOp {
            left: inner,
            op: op @ (BinaryOperator::And | BinaryOperator::Or | BinaryOperator::Xor),
            right: rest,
        } => {
            let tight = if negated {
                Expr::IsNotDistinctFrom(left, inner)
            } else {
                Expr::IsDistinctFrom(left, inner)
            };
            Expr::BinaryOp {
                left: Box::new(regroup_distinct_from(tight)),
                op,
                right: rest,
            }
        }
        right if negated => Expr::IsNotDistinctFrom(left, Box::new(right)),
        right => Expr::IsDistinctFrom(left, Box::new(right)),
    }
}

/// Catalog relations Augur serves that `datafusion-pg-catalog` does not know, and so does not
/// qualify with `pg_catalog.` when a query names them alone (PostgreSQL searches `pg_catalog`
/// first).
const OWN_CATALOG_RELATIONS: &[&str] = &["pg_indexes"];

/// `FROM pg_indexes` becomes `FROM pg_catalog.pg_indexes`.
pub fn qualify_own_catalog_relations(statement: &mut Statement) {
    let _ = statement.visit(&mut QualifyOwn);
}

struct QualifyOwn;

impl VisitorMut for QualifyOwn {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name, args: None, ..
        } = factor
            && name.0.len() == 1
            && let Some(ident) = name.0[0].as_ident()
            && ident.quote_style.is_none()
            && OWN_CATALOG_RELATIONS
                .iter()
                .any(|own| own.eq_ignore_ascii_case(&ident.value))
        {
            let relation = name.0[0].clone();
            *name = ObjectName(vec![
                ObjectNamePart::Identifier(Ident::new("pg_catalog")),
                relation,
            ]);
        }
        ControlFlow::Continue(())
    }
}

/// `current_role`, a keyword in PostgreSQL that sqlparser reads as a column name, becomes a call
/// of the function of that name.
pub fn current_role(statement: &mut Statement) {
    let _ = statement.visit(&mut CurrentRole);
}

struct CurrentRole;

impl VisitorMut for CurrentRole {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Identifier(ident) = expr
            && ident.quote_style.is_none()
            && ident.value.eq_ignore_ascii_case("current_role")
        {
            *expr = call("current_role", vec![]);
        }
        ControlFlow::Continue(())
    }
}

/// `LIKE pattern ESCAPE 'c'` with an escape other than the backslash (which DataFusion refuses)
/// becomes `LIKE augur_like_escape(pattern, 'c')`: the same pattern written with the backslash
/// as its escape. `ESCAPE ''` (no escape character) works the same way.
pub fn like_escapes(statement: &mut Statement) {
    let _ = statement.visit(&mut LikeEscapes);
}

/// The function [`like_escapes`] calls.
pub const LIKE_ESCAPE_FUNCTION: &str = "augur_like_escape";

struct LikeEscapes;

impl VisitorMut for LikeEscapes {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let (pattern, escape_char) = match expr {
            Expr::Like {
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                pattern,
                escape_char,
                ..
            } => (pattern, escape_char),
            _ => return ControlFlow::Continue(()),
        };
        let Some(escape) = escape_char.take() else {
            return ControlFlow::Continue(());
        };
        if let Value::SingleQuotedString(text) | Value::EscapedStringLiteral(text) = &escape.value
            && text == "\\"
        {
            return ControlFlow::Continue(());
        }
        let taken = std::mem::replace(pattern.as_mut(), Expr::Value(Value::Null.into()));
        **pattern = call(LIKE_ESCAPE_FUNCTION, vec![taken, Expr::Value(escape)]);
        ControlFlow::Continue(())
    }
}

/// `pg_get_viewdef(oid [, pretty])` and `pg_get_indexdef(oid [, column, pretty])` become reads
/// of the definitions by OID that `pg_catalog.augur_view_definitions` and
/// `pg_catalog.augur_index_definitions` serve.
pub fn view_definitions(statement: &mut Statement) {
    let _ = statement.visit(&mut ViewDefinitions);
}

struct ViewDefinitions;

impl VisitorMut for ViewDefinitions {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Function(f) = expr else {
            return ControlFlow::Continue(());
        };
        let Some(name) = f.name.0.last().and_then(|p| p.as_ident()) else {
            return ControlFlow::Continue(());
        };
        let name = name.value.to_ascii_lowercase();
        let FunctionArguments::List(list) = &f.args else {
            return ControlFlow::Continue(());
        };
        let args: Vec<&Expr> = list
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect();
        let sql = match (name.as_str(), args.as_slice()) {
            ("pg_get_viewdef", [oid, ..]) => {
                let table = crate::catalog::pg_overlay::VIEW_DEFINITIONS;
                format!(
                    "(SELECT {table}.definition FROM pg_catalog.{table} WHERE {table}.oid = CAST({oid} AS INT))"
                )
            }
            ("pg_get_indexdef", [oid, rest @ ..]) => {
                let table = crate::catalog::pg_overlay::INDEX_DEFINITIONS;
                let column = match rest.first() {
                    Some(column) => format!("CAST({column} AS INT)"),
                    None => "0".into(),
                };
                format!(
                    "(SELECT {table}.definition FROM pg_catalog.{table} WHERE {table}.indexrelid = CAST({oid} AS INT) AND {table}.column_no = {column})"
                )
            }
            _ => return ControlFlow::Continue(()),
        };
        if let Ok(replacement) = datafusion::sql::sqlparser::parser::Parser::new(
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        )
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_expr())
        {
            *expr = replacement;
        }
        ControlFlow::Continue(())
    }
}

/// `col = 'name'::regproc` reaches here as a lookup of the function's OID in `pg_proc`, but
/// `datafusion-pg-catalog` keeps `regproc` columns (`pg_type.typinput`, ...) as names: the lookup
/// becomes the function's name, which is what the comparison means.
pub fn regproc_as_names(statement: &mut Statement) {
    let _ = statement.visit(&mut RegprocNames);
}

struct RegprocNames;

impl VisitorMut for RegprocNames {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::BinaryOp { left, right, .. } = expr {
            for side in [left, right] {
                if let Some(name) = proc_oid_lookup(side) {
                    **side = Expr::Value(Value::SingleQuotedString(name).into());
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// The function name in `(SELECT oid FROM pg_catalog.pg_proc WHERE proname = 'name')`.
fn proc_oid_lookup(expr: &Expr) -> Option<String> {
    let Expr::Subquery(query) = expr else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let [from] = select.from.as_slice() else {
        return None;
    };
    let TableFactor::Table { name, .. } = &from.relation else {
        return None;
    };
    let table = name.0.last()?.as_ident()?.value.to_ascii_lowercase();
    if table != "pg_proc" {
        return None;
    }
    let Some(Expr::BinaryOp { left, right, .. }) = &select.selection else {
        return None;
    };
    let Expr::Identifier(column) = left.as_ref() else {
        return None;
    };
    if !column.value.eq_ignore_ascii_case("proname") {
        return None;
    }
    let Expr::Value(value) = right.as_ref() else {
        return None;
    };
    let Value::SingleQuotedString(proc) = &value.value else {
        return None;
    };
    Some(proc.rsplit('.').next().unwrap_or(proc).to_string())
}

struct UnnestSubqueries;

impl VisitorMut for UnnestSubqueries {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Subquery(query) = expr
            && query_has_table_function(query, "unnest")
        {
            *expr = Expr::Value(Value::Null.into());
        }
        ControlFlow::Continue(())
    }
}

fn query_has_table_function(query: &Query, function: &str) -> bool {
    let mut found = false;
    let mut finder = TableFunctionFinder {
        function,
        found: &mut found,
    };
    let mut query = query.clone();
    let _ = query.visit(&mut finder);
    found
}

struct TableFunctionFinder<'a> {
    function: &'a str,
    found: &'a mut bool,
}

impl VisitorMut for TableFunctionFinder<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            args: Some(_),
            ..
        } = factor
            && name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case(self.function))
        {
            *self.found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

/// PostgreSQL runs a set-returning function in the select list once per row and returns a row
/// per value (several such functions side by side run in step, the shorter padded with NULLs).
/// DataFusion's `generate_series` in the select list returns an array in one row instead; this
/// wraps each select-list `generate_series(...)` in `unnest`, which DataFusion expands into rows
/// with the same stepping, and keeps the column's name.
pub fn set_returning_select_items(statement: &mut Statement) {
    let _ = statement.visit(&mut SetReturningItems);
}

struct SetReturningItems;

impl VisitorMut for SetReturningItems {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        expand_set_returning(query.body.as_mut());
        ControlFlow::Continue(())
    }
}

fn expand_set_returning(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            for item in select.projection.iter_mut() {
                let (expr, alias) = match item {
                    SelectItem::UnnamedExpr(expr) => (expr, None),
                    SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
                    _ => continue,
                };
                let Expr::Function(function) = expr else {
                    continue;
                };
                let name = function
                    .name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .map(|i| i.value.to_ascii_lowercase());
                if name.as_deref() != Some("generate_series") || function.over.is_some() {
                    continue;
                }
                let series = std::mem::replace(expr, Expr::Value(Value::Null.into()));
                let unnest = call("unnest", vec![series]);
                *item = SelectItem::ExprWithAlias {
                    expr: unnest,
                    alias: alias.unwrap_or_else(|| Ident::new("generate_series")),
                };
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            expand_set_returning(left);
            expand_set_returning(right);
        }
        _ => {}
    }
}

/// `count(t.*)` counts the rows in which `t` has a row: in an outer join, not the rows `t` did
/// not match. DataFusion plans it as `count(*)`. This gives `t` a column that is true in each of
/// its rows (`t` read through a subquery that adds it) and counts that column instead.
pub fn count_row_references(statement: &mut Statement) {
    let _ = statement.visit(&mut CountRows);
}

const ROW_MARKER: &str = "__augur_row";

struct CountRows;

impl VisitorMut for CountRows {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        let mut counted: Vec<String> = Vec::new();
        for item in select.projection.iter_mut() {
            if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
                find_counted_rows(e, &mut counted);
            }
        }
        if let Some(having) = &mut select.having {
            find_counted_rows(having, &mut counted);
        }
        counted.sort();
        counted.dedup();
        let mut marked: Vec<String> = Vec::new();
        for table in select.from.iter_mut() {
            for factor in std::iter::once(&mut table.relation)
                .chain(table.joins.iter_mut().map(|j| &mut j.relation))
            {
                let Some(name) = reference_name(factor) else {
                    continue;
                };
                if counted.contains(&name) && mark_rows(factor) {
                    marked.push(name);
                }
            }
        }
        if marked.is_empty() {
            return ControlFlow::Continue(());
        }
        let count_marker = |e: &mut Expr| {
            let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(e, |e: &mut Expr| {
                if let Some(name) = counted_row(e).filter(|n| marked.contains(n)) {
                    *e = call(
                        "count",
                        vec![Expr::CompoundIdentifier(vec![
                            Ident::new(name),
                            Ident::new(ROW_MARKER),
                        ])],
                    );
                }
                ControlFlow::<()>::Continue(())
            });
        };
        for item in select.projection.iter_mut() {
            if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
                count_marker(e);
            }
        }
        if let Some(having) = &mut select.having {
            count_marker(having);
        }
        ControlFlow::Continue(())
    }
}

/// The relation `t` of a `count(t.*)` call.
fn counted_row(expr: &Expr) -> Option<String> {
    let Expr::Function(function) = expr else {
        return None;
    };
    if !function.name.to_string().eq_ignore_ascii_case("count") || function.over.is_some() {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::QualifiedWildcard(name))]
            if list.duplicate_treatment.is_none() =>
        {
            name.0
                .last()
                .and_then(|p| p.as_ident())
                .map(super::normalize_ident)
        }
        _ => None,
    }
}

fn find_counted_rows(expr: &mut Expr, out: &mut Vec<String>) {
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(expr, |e: &mut Expr| {
        out.extend(counted_row(e));
        ControlFlow::<()>::Continue(())
    });
}

/// The name a FROM item is referred to by, when it is a table or an aliased subquery.
fn reference_name(factor: &TableFactor) -> Option<String> {
    match factor {
        TableFactor::Table { name, alias, .. } => match alias {
            Some(alias) => Some(super::normalize_ident(&alias.name)),
            None => name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(super::normalize_ident),
        },
        TableFactor::Derived {
            alias: Some(alias), ..
        } => Some(super::normalize_ident(&alias.name)),
        _ => None,
    }
}

/// Reads `factor` through `SELECT *, true AS __augur_row FROM ...` under the same name; false
/// when it cannot (column aliases, table functions, sampling).
fn mark_rows(factor: &mut TableFactor) -> bool {
    let (source, alias) = match &*factor {
        TableFactor::Table {
            name,
            alias,
            args: None,
            with_hints,
            version: None,
            partitions,
            sample: None,
            ..
        } if with_hints.is_empty()
            && partitions.is_empty()
            && alias.as_ref().is_none_or(|a| a.columns.is_empty()) =>
        {
            let reference = alias
                .as_ref()
                .map(|a| a.name.clone())
                .or_else(|| name.0.last().and_then(|p| p.as_ident()).cloned());
            let Some(reference) = reference else {
                return false;
            };
            (name.to_string(), reference)
        }
        TableFactor::Derived {
            lateral: false,
            subquery,
            alias: Some(alias),
            sample: None,
        } if alias.columns.is_empty() => {
            (format!("({subquery}) AS __augur_rows"), alias.name.clone())
        }
        _ => return false,
    };
    let sql = format!("SELECT 1 FROM (SELECT *, true AS {ROW_MARKER} FROM {source}) AS {alias}");
    let parsed = datafusion::sql::sqlparser::parser::Parser::parse_sql(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        &sql,
    );
    let Ok(mut statements) = parsed else {
        return false;
    };
    let Some(Statement::Query(query)) = statements.pop() else {
        return false;
    };
    let SetExpr::Select(mut select) = *query.body else {
        return false;
    };
    let Some(table) = select.from.pop() else {
        return false;
    };
    *factor = table.relation;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn parse(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn catalog_reads_are_recognised() {
        assert!(reads_catalog(&parse("SELECT * FROM pg_catalog.pg_class")));
        assert!(reads_catalog(&parse("SELECT relname FROM pg_class")));
        assert!(reads_catalog(&parse("SELECT pg_catalog.format_type(1, 2)")));
        assert!(reads_catalog(&parse(
            "SELECT * FROM information_schema.tables"
        )));
        assert!(!reads_catalog(&parse("SELECT * FROM users WHERE id = 1")));
    }

    #[test]
    fn scalar_subqueries_become_aggregates() {
        let mut s = parse(
            "SELECT (SELECT name FROM u WHERE u.id = t.uid), (SELECT count(*) FROM u) FROM t",
        );
        aggregate_scalar_subqueries(&mut s);
        assert_eq!(
            s.to_string(),
            "SELECT (SELECT first_value(name) FROM u WHERE u.id = t.uid), (SELECT count(*) FROM u) FROM t"
        );
    }

    #[test]
    fn regproc_lookups_become_names() {
        let mut s = parse(
            "SELECT typinput = (SELECT oid FROM pg_catalog.pg_proc WHERE proname = 'pg_catalog.array_in') FROM pg_type",
        );
        regproc_as_names(&mut s);
        assert_eq!(s.to_string(), "SELECT typinput = 'array_in' FROM pg_type");
    }

    #[test]
    fn unnest_subqueries_become_null() {
        let mut s =
            parse("SELECT a, (SELECT string_agg(x, ',') FROM pg_catalog.unnest(k) s(x)) FROM t");
        null_unnest_subqueries(&mut s);
        assert_eq!(s.to_string(), "SELECT a, NULL FROM t");
    }
}
