//! Rewrites of parsed statements that make PostgreSQL SQL plan in DataFusion.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    ObjectName, ObjectNamePart, Query, SelectItem, SetExpr, SetOperator, Statement, TableFactor,
    Value, VisitMut, VisitorMut, visit_expressions, visit_relations,
};

/// Aggregates whose presence makes a scalar subquery return one row already.
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "array_agg",
    ARRAY_FUNCTION,
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
                v == "pg_catalog"
                    || v == "information_schema"
                    || v.starts_with("pg_")
                    || v.ends_with("_description")
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

/// DataFusion turns a correlated scalar subquery into a join only when it is an aggregate. A
/// scalar subquery returns its one row's value, NULL for none, and fails for more, so
/// `(SELECT x FROM ...)` equals `augur_single_unwrap((SELECT augur_single_value(x) FROM ...))`
/// (see `catalog::single_value`): this wraps every non-aggregate scalar subquery that way.
pub fn aggregate_scalar_subqueries(statement: &mut Statement) {
    let _ = statement.visit(&mut ScalarSubqueries::default());
}

#[derive(Default)]
struct ScalarSubqueries {
    /// The subqueries of `x op ANY (...)` / `x op ALL (...)`: sets, not scalars.
    sets: Vec<*const Query>,
}

impl VisitorMut for ScalarSubqueries {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } = expr
            && let Expr::Subquery(query) = right.as_ref()
        {
            self.sets.push(query.as_ref() as *const Query);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Subquery(query) = expr
            && !self.sets.contains(&(query.as_ref() as *const Query))
            && wrap_single_output(query)
        {
            let subquery = std::mem::replace(expr, Expr::Value(Value::Null.into()));
            *expr = call(crate::catalog::single_value::SINGLE_UNWRAP, vec![subquery]);
        }
        ControlFlow::Continue(())
    }
}

fn wrap_single_output(query: &mut Query) -> bool {
    if query.limit_clause.is_some() || query.fetch.is_some() || query.order_by.is_some() {
        return false;
    }
    let SetExpr::Select(select) = query.body.as_mut() else {
        return false;
    };
    if select.projection.len() != 1
        || select.having.is_some()
        || select.distinct.is_some()
        || !matches!(&select.group_by, datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty())
    {
        return false;
    }
    let (SelectItem::UnnamedExpr(inner) | SelectItem::ExprWithAlias { expr: inner, .. }) =
        &mut select.projection[0]
    else {
        return false;
    };
    if has_aggregate(inner) {
        return false;
    }
    let argument = std::mem::replace(inner, Expr::Value(Value::Null.into()));
    *inner = call(crate::catalog::single_value::SINGLE_VALUE, vec![argument]);
    true
}

/// `OVER (w frame)` spelled out with `w`'s partitioning and ordering (DataFusion drops `w`'s
/// ORDER BY when the clause adds a frame); and window functions with an exclusion
/// (`augur_exclude_f('mode', x)`, see `catalog::window_exclude`) get their argument count and
/// their window's ORDER BY keys as arguments: `augur_exclude_f('mode', 1, x, k1, k2)`, the
/// keys deciding which rows are peers.
pub fn window_clauses(statement: &mut Statement) {
    let _ = statement.visit(&mut WindowClauses::default());
}

/// The named windows of each query being visited, innermost last.
#[derive(Default)]
struct WindowClauses {
    windows: Vec<Vec<(String, datafusion::sql::sqlparser::ast::NamedWindowExpr)>>,
}

impl WindowClauses {
    /// The definition of the named window `name`, through windows defined by other names.
    fn spec_of(&self, mut name: String) -> Option<datafusion::sql::sqlparser::ast::WindowSpec> {
        use datafusion::sql::sqlparser::ast::NamedWindowExpr;
        let named = self.windows.last()?;
        for _ in 0..=named.len() {
            match named.iter().find(|(n, _)| *n == name).map(|(_, e)| e)? {
                NamedWindowExpr::WindowSpec(spec) => {
                    let mut spec = spec.clone();
                    if let Some(base) = spec.window_name.take()
                        && let Some(base) = self.spec_of(super::normalize_ident(&base))
                    {
                        inherit(&mut spec, base);
                    }
                    return Some(spec);
                }
                NamedWindowExpr::NamedWindow(base) => name = super::normalize_ident(base),
            }
        }
        None
    }
}

/// `OVER (w ...)`: the window's partitioning, ordering and frame where the clause has none.
fn inherit(
    spec: &mut datafusion::sql::sqlparser::ast::WindowSpec,
    base: datafusion::sql::sqlparser::ast::WindowSpec,
) {
    if spec.partition_by.is_empty() {
        spec.partition_by = base.partition_by;
    }
    if spec.order_by.is_empty() {
        spec.order_by = base.order_by;
    }
    if spec.window_frame.is_none() {
        spec.window_frame = base.window_frame;
    }
}

impl VisitorMut for WindowClauses {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let named = match query.body.as_ref() {
            SetExpr::Select(select) => select
                .named_window
                .iter()
                .map(|d| (super::normalize_ident(&d.0), d.1.clone()))
                .collect(),
            _ => Vec::new(),
        };
        self.windows.push(named);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.windows.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        use datafusion::sql::sqlparser::ast::WindowType;
        let Expr::Function(f) = expr else {
            return ControlFlow::Continue(());
        };
        // `OVER (w ROWS ...)` is `w`'s partitioning and ordering with this frame: spelled out,
        // as DataFusion would otherwise drop `w`'s ORDER BY.
        if let Some(WindowType::WindowSpec(spec)) = &mut f.over
            && let Some(name) = spec.window_name.clone()
            && let Some(base) = self.spec_of(super::normalize_ident(&name))
        {
            spec.window_name = None;
            inherit(spec, base);
        }
        if f.name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| i.value.starts_with(crate::catalog::window_exclude::PREFIX))
            && matches!(&f.args, FunctionArguments::List(list) if !list.args.is_empty())
        {
            let keys: Vec<Expr> = match &f.over {
                Some(WindowType::WindowSpec(spec)) => {
                    spec.order_by.iter().map(|o| o.expr.clone()).collect()
                }
                Some(WindowType::NamedWindow(w)) => self
                    .spec_of(super::normalize_ident(w))
                    .map(|s| s.order_by.iter().map(|o| o.expr.clone()).collect())
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            if let FunctionArguments::List(list) = &mut f.args {
                let arguments = list.args.len() - 1;
                list.args.insert(
                    1,
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(Value::Number(
                        arguments.to_string(),
                        false,
                    )))),
                );
                list.args.extend(
                    keys.into_iter()
                        .map(|k| FunctionArg::Unnamed(FunctionArgExpr::Expr(k))),
                );
            }
        }
        ControlFlow::Continue(())
    }
}

/// The output columns of a subquery in FROM and of a CTE are named as PostgreSQL names them
/// (`SELECT max FROM (SELECT max(x) FROM t) s`); in a `LATERAL` subquery plain column references
/// too (see [`super::names::name_derived`]).
pub fn name_lateral_columns(statement: &mut Statement) {
    let _ = statement.visit(&mut LateralColumns);
}

struct LateralColumns;

impl VisitorMut for LateralColumns {
    type Break = ();

    fn pre_visit_query(
        &mut self,
        query: &mut datafusion::sql::sqlparser::ast::Query,
    ) -> ControlFlow<()> {
        if let Some(with) = query.with.as_mut() {
            for cte in with.cte_tables.iter_mut() {
                super::names::name_subquery(&mut cte.query);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(
        &mut self,
        factor: &mut datafusion::sql::sqlparser::ast::TableFactor,
    ) -> ControlFlow<()> {
        if let datafusion::sql::sqlparser::ast::TableFactor::Derived {
            lateral, subquery, ..
        } = factor
        {
            if *lateral {
                super::names::name_derived(subquery);
            } else {
                super::names::name_subquery(subquery);
            }
        }
        ControlFlow::Continue(())
    }
}

/// The function a correlated subquery in a select list is wrapped in while the compatibility
/// parser runs (see [`shield_correlated_subqueries`]).
const SHIELD: &str = "augur_shielded_subquery";

/// The compatibility parser turns every correlated subquery of a select list into NULL, also
/// those DataFusion plans (psql's `\d` reads a column's default that way). This wraps each
/// select-list subquery DataFusion can decorrelate — one select of one expression, no grouping,
/// ordering or limit, correlated only through `inner = outer` (or outer-only) conditions of its
/// WHERE — in a call the parser leaves alone; [`unshield_subqueries`] unwraps it afterwards.
/// `None` when there is nothing to wrap.
pub fn shield_correlated_subqueries(statements: &[Statement]) -> Option<String> {
    let mut shielded = statements.to_vec();
    let mut visitor = Shield { wrapped: false };
    for statement in shielded.iter_mut() {
        let _ = statement.visit(&mut visitor);
    }
    visitor.wrapped.then(|| {
        shielded
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(";\n")
    })
}

/// Undoes [`shield_correlated_subqueries`] after the compatibility parser.
pub fn unshield_subqueries(statement: &mut Statement) {
    let _ = statement.visit(&mut Unshield);
}

struct Shield {
    wrapped: bool,
}

impl VisitorMut for Shield {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        for item in select.projection.iter_mut() {
            let (SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) = item
            else {
                continue;
            };
            if let Expr::Subquery(subquery) = expr
                && decorrelatable(subquery)
            {
                let taken = std::mem::replace(expr, Expr::Value(Value::Null.into()));
                *expr = call(SHIELD, vec![taken]);
                self.wrapped = true;
            }
        }
        ControlFlow::Continue(())
    }
}

struct Unshield;

impl VisitorMut for Unshield {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = expr
            && f.name.to_string() == SHIELD
            && let FunctionArguments::List(list) = &mut f.args
            && let [FunctionArg::Unnamed(FunctionArgExpr::Expr(inner))] = list.args.as_mut_slice()
        {
            let inner = std::mem::replace(inner, Expr::Value(Value::Null.into()));
            *expr = inner;
        }
        ControlFlow::Continue(())
    }
}

/// True when `query` is a correlated scalar subquery DataFusion decorrelates; its outer-only
/// conditions are then moved into an equality (see below).
fn decorrelatable(query: &mut Query) -> bool {
    if query.with.is_some()
        || query.limit_clause.is_some()
        || query.fetch.is_some()
        || query.order_by.is_some()
    {
        return false;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    let select = select.clone();
    let ungrouped = matches!(&select.group_by, datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty());
    if select.projection.len() != 1
        || !ungrouped
        || select.having.is_some()
        || select.distinct.is_some()
    {
        return false;
    }
    let mut local = std::collections::HashSet::new();
    for from in &select.from {
        for relation in
            std::iter::once(&from.relation).chain(from.joins.iter().map(|j| &j.relation))
        {
            match relation {
                TableFactor::Table { name, alias, .. } => {
                    let name = match alias {
                        Some(alias) => alias.name.value.clone(),
                        None => match name.0.last().and_then(|p| p.as_ident()) {
                            Some(ident) => ident.value.clone(),
                            None => return false,
                        },
                    };
                    local.insert(name.to_ascii_lowercase());
                }
                _ => return false,
            }
        }
        if from.joins.iter().any(|j| {
            !matches!(
                j.join_operator,
                datafusion::sql::sqlparser::ast::JoinOperator::CrossJoin(_)
            )
        }) {
            return false;
        }
    }
    // Which sides of an expression it reads: (outer columns, local columns, a subquery).
    let sides = |expr: &Expr| {
        let (mut outer, mut inner, mut nested) = (false, false, false);
        let _ = visit_expressions(expr, |e| {
            match e {
                Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                    if local.contains(&parts[0].value.to_ascii_lowercase()) {
                        inner = true;
                    } else {
                        outer = true;
                    }
                }
                Expr::Identifier(_) => inner = true,
                Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => nested = true,
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        });
        (outer, inner, nested)
    };
    let (SelectItem::UnnamedExpr(output) | SelectItem::ExprWithAlias { expr: output, .. }) =
        &select.projection[0]
    else {
        return false;
    };
    let (outer, _, nested) = sides(output);
    if outer || nested {
        return false;
    }
    let Some(selection) = &select.selection else {
        return false;
    };
    // The WHERE's conjuncts: local ones, equalities of a local and an outer side (and which
    // side is outer), and outer-only ones.
    let mut pending = vec![selection.clone()];
    let (mut kept, mut equalities, mut outer_only) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(conjunct) = pending.pop() {
        match conjunct {
            Expr::BinaryOp {
                left,
                op: datafusion::sql::sqlparser::ast::BinaryOperator::And,
                right,
            } => {
                pending.push(*right);
                pending.push(*left);
            }
            Expr::Nested(inner) => pending.push(*inner),
            other => {
                let (outer, inner, nested) = sides(&other);
                if nested && outer {
                    return false;
                }
                if !outer {
                    kept.push(other);
                    continue;
                }
                if !inner {
                    outer_only.push(other);
                    continue;
                }
                let Expr::BinaryOp {
                    left,
                    op: datafusion::sql::sqlparser::ast::BinaryOperator::Eq,
                    right,
                } = &other
                else {
                    return false;
                };
                let (l, r) = (sides(left), sides(right));
                let outer_side = if l.0 && !l.1 && !r.0 {
                    0
                } else if r.0 && !r.1 && !l.0 {
                    1
                } else {
                    return false;
                };
                equalities.push((other, outer_side));
            }
        }
    }
    if equalities.is_empty() {
        return false;
    }
    // DataFusion cannot push an outer-only condition into some views: it goes into the first
    // equality instead, as `inner = CASE WHEN condition THEN outer END`.
    if let Some(condition) = outer_only.into_iter().reduce(|a, b| Expr::BinaryOp {
        left: Box::new(a),
        op: datafusion::sql::sqlparser::ast::BinaryOperator::And,
        right: Box::new(b),
    }) {
        let (equality, outer_side) = &mut equalities[0];
        if let Expr::BinaryOp { left, right, .. } = equality {
            let side = if *outer_side == 0 { left } else { right };
            let value = std::mem::replace(side.as_mut(), Expr::Value(Value::Null.into()));
            **side = Expr::Case {
                case_token:
                    datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
                end_token:
                    datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
                operand: None,
                conditions: vec![datafusion::sql::sqlparser::ast::CaseWhen {
                    condition,
                    result: value,
                }],
                else_result: None,
            };
        }
    }
    let condition = kept
        .into_iter()
        .chain(equalities.into_iter().map(|(e, _)| e))
        .reduce(|a, b| Expr::BinaryOp {
            left: Box::new(a),
            op: datafusion::sql::sqlparser::ast::BinaryOperator::And,
            right: Box::new(b),
        });
    if let SetExpr::Select(select) = query.body.as_mut() {
        select.selection = condition;
    }
    true
}

/// `ARRAY(subquery)`: an array of the subquery's rows, empty when it has none. A subquery that
/// selects one expression without grouping becomes `(SELECT augur_array(expr ORDER BY ...)
/// FROM ...)`, its `ORDER BY` moved into the aggregate; any other is read as a derived table,
/// `(SELECT augur_array(s.v) FROM (subquery) AS s(v))`.
pub fn array_subqueries(statement: &mut Statement) {
    let _ = statement.visit(&mut ArraySubqueries);
}

struct ArraySubqueries;

impl VisitorMut for ArraySubqueries {
    type Break = ();

    /// PostgreSQL names an `ARRAY(subquery)` column `array`: in a derived table or CTE, where
    /// the name is read, an only one gets that alias.
    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        let is_array = |expr: &Expr| {
            matches!(expr, Expr::Function(f) if matches!(f.args, FunctionArguments::Subquery(_))
                && f.name.to_string().eq_ignore_ascii_case("array"))
        };
        let arrays = select
            .projection
            .iter()
            .filter(|item| matches!(item, SelectItem::UnnamedExpr(e) if is_array(e)))
            .count();
        let named_array = select.projection.iter().any(|item| {
            matches!(item, SelectItem::ExprWithAlias { alias, .. } if alias.value.eq_ignore_ascii_case("array"))
        });
        if arrays != 1 || named_array {
            return ControlFlow::Continue(());
        }
        for item in select.projection.iter_mut() {
            if let SelectItem::UnnamedExpr(expr) = item
                && is_array(expr)
            {
                *item = SelectItem::ExprWithAlias {
                    expr: expr.clone(),
                    alias: Ident::with_quote('"', "array"),
                };
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Function(f) = expr else {
            return ControlFlow::Continue(());
        };
        let FunctionArguments::Subquery(query) = &mut f.args else {
            return ControlFlow::Continue(());
        };
        if !matches!(f.name.0.as_slice(), [ObjectNamePart::Identifier(name)] if name.value.eq_ignore_ascii_case("array"))
        {
            return ControlFlow::Continue(());
        }
        let replacement = match inline_array_aggregate(query) {
            Some(()) => Some(Expr::Subquery(query.clone())),
            None => {
                let (columns, order) = ordered_rows(query);
                parse_expr(&format!(
                    "(SELECT {ARRAY_FUNCTION}(augur_array_rows.v{order}) FROM ({query}) AS augur_array_rows({columns}))"
                ))
            }
        };
        if let Some(replacement) = replacement {
            *expr = replacement;
        }
        ControlFlow::Continue(())
    }
}

/// The aggregate `ARRAY(subquery)` becomes: `array_agg` that gives an empty array for no rows.
pub const ARRAY_FUNCTION: &str = "augur_array";

/// Turns `SELECT expr FROM ... [ORDER BY ...]` into `SELECT augur_array(expr ORDER BY ...) FROM
/// ...`; `None` (and `query` unchanged) when the query is not that simple.
fn inline_array_aggregate(query: &mut Query) -> Option<()> {
    if query.limit_clause.is_some() || query.fetch.is_some() || query.with.is_some() {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let simple = select.projection.len() == 1
        && select.having.is_none()
        && select.distinct.is_none()
        && matches!(&select.group_by, datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty());
    if !simple {
        return None;
    }
    let (value, alias) = match &select.projection[0] {
        SelectItem::UnnamedExpr(e) => (e.clone(), None),
        SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(alias.value.clone())),
        _ => return None,
    };
    if has_aggregate(&value) {
        return None;
    }
    let mut orders = Vec::new();
    if let Some(order_by) = &query.order_by {
        let datafusion::sql::sqlparser::ast::OrderByKind::Expressions(exprs) = &order_by.kind
        else {
            return None;
        };
        for order in exprs {
            let mut order = order.clone();
            // `ORDER BY 1` and `ORDER BY alias` name the selected expression.
            let names_value = match &order.expr {
                Expr::Value(v) => matches!(&v.value, Value::Number(n, _) if n == "1"),
                Expr::Identifier(ident) => alias.as_deref() == Some(ident.value.as_str()),
                _ => false,
            };
            if names_value {
                order.expr = value.clone();
            }
            orders.push(order.to_string());
        }
    }
    let call = if orders.is_empty() {
        format!("{ARRAY_FUNCTION}({value})")
    } else {
        format!("{ARRAY_FUNCTION}({value} ORDER BY {})", orders.join(", "))
    };
    let aggregate = parse_expr(&call)?;
    select.projection[0] = SelectItem::UnnamedExpr(aggregate);
    query.order_by = None;
    Some(())
}

/// For `ARRAY(subquery)` read as a derived table: the derived table's column names and the
/// aggregate's ` ORDER BY ...` that keeps the subquery's order. The subquery's `ORDER BY` keys
/// that are not its output become extra outputs (`o1`, ...) of a plain select; under DISTINCT
/// or a set operation they can only be the output, `v`.
fn ordered_rows(query: &mut Query) -> (String, String) {
    let Some(order_by) = &query.order_by else {
        return ("v".into(), String::new());
    };
    let datafusion::sql::sqlparser::ast::OrderByKind::Expressions(exprs) = &order_by.kind else {
        return ("v".into(), String::new());
    };
    let exprs = exprs.clone();
    let (output, alias, extendable) = match query.body.as_ref() {
        SetExpr::Select(select) => match select.projection.as_slice() {
            [SelectItem::UnnamedExpr(e)] => (Some(e.clone()), None, select.distinct.is_none()),
            [SelectItem::ExprWithAlias { expr, alias }] => (
                Some(expr.clone()),
                Some(alias.value.clone()),
                select.distinct.is_none(),
            ),
            _ => (None, None, false),
        },
        _ => (None, None, false),
    };
    let mut columns = vec!["v".to_string()];
    let mut keys = Vec::new();
    for order in exprs {
        let names_output = match &order.expr {
            Expr::Value(v) => matches!(&v.value, Value::Number(n, _) if n == "1"),
            Expr::Identifier(ident) => {
                alias.as_deref() == Some(ident.value.as_str())
                    || matches!(&output, Some(Expr::Identifier(o)) if o.value == ident.value)
            }
            e => output.as_ref() == Some(e),
        };
        let mut key = order.clone();
        if names_output || output.is_none() {
            key.expr = Expr::Identifier(Ident::new("augur_array_rows.v"));
        } else if extendable {
            let name = format!("o{}", columns.len());
            if let SetExpr::Select(select) = query.body.as_mut() {
                select
                    .projection
                    .push(SelectItem::UnnamedExpr(order.expr.clone()));
            }
            key.expr = Expr::Identifier(Ident::new(format!("augur_array_rows.{name}")));
            columns.push(name);
        } else {
            return ("v".into(), String::new());
        }
        keys.push(key.to_string());
    }
    (columns.join(", "), format!(" ORDER BY {}", keys.join(", ")))
}

fn parse_expr(sql: &str) -> Option<Expr> {
    datafusion::sql::sqlparser::parser::Parser::new(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
    )
    .try_with_sql(sql)
    .and_then(|mut p| p.parse_expr())
    .ok()
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

/// `(record).field` as DataFusion's `get_field(record, 'field')`, and
/// `information_schema._pg_expandarray(a)`, the set-returning function pgjdbc's
/// `getPrimaryKeys` (and so DBeaver's and Metabase's key discovery) calls in a select list: one
/// row per element, `(x, n)` records of the element and its place. `(...).x` becomes
/// `unnest(a)`, `(...).n` the places, and the record itself the unnested records of
/// `augur_expandarray(a)`; side by side in one select list they unnest in step.
pub fn expand_arrays(statement: &mut Statement) {
    let _ = statement.visit(&mut ExpandArrays);
}

struct ExpandArrays;

/// The array argument of a call of `_pg_expandarray`.
fn expanded_array(expr: &Expr) -> Option<&Expr> {
    let mut expr = expr;
    while let Expr::Nested(inner) = expr {
        expr = inner;
    }
    let Expr::Function(f) = expr else {
        return None;
    };
    let named = f
        .name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .is_some_and(|i| i.value.eq_ignore_ascii_case("_pg_expandarray"));
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match (named, list.args.as_slice()) {
        (true, [FunctionArg::Unnamed(FunctionArgExpr::Expr(array))]) => Some(array),
        _ => None,
    }
}

impl VisitorMut for ExpandArrays {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::CompoundFieldAccess { root, access_chain } = expr
            && let [datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(key))] =
                access_chain.as_slice()
            && let Some(array) = expanded_array(root)
        {
            let sql = match key.value.to_ascii_lowercase().as_str() {
                "x" => format!("unnest({array})"),
                "n" => format!(
                    "unnest(CAST(generate_series(1, CAST(cardinality({array}) AS BIGINT)) AS INT[]))"
                ),
                _ => return ControlFlow::Continue(()),
            };
            if let Some(replacement) = parse_expr(&sql) {
                *expr = replacement;
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        // `(record).field`: DataFusion's `get_field`.
        if let Expr::CompoundFieldAccess { root, access_chain } = expr
            && matches!(root.as_ref(), Expr::Nested(_))
            && access_chain.iter().all(|a| {
                matches!(
                    a,
                    datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(_))
                )
            })
        {
            let mut out = std::mem::replace(root.as_mut(), Expr::Value(Value::Null.into()));
            for access in access_chain.iter() {
                if let datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(field)) =
                    access
                {
                    let name = crate::sql::normalize_ident(field);
                    out = call(
                        "get_field",
                        vec![out, Expr::Value(Value::SingleQuotedString(name).into())],
                    );
                }
            }
            *expr = out;
            return ControlFlow::Continue(());
        }
        if let Some(array) = expanded_array(expr) {
            let sql = format!(
                "unnest({}({array}))",
                crate::catalog::pg_builtins::EXPAND_ARRAY
            );
            if let Some(replacement) = parse_expr(&sql) {
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

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        // `a LIKE b ESCAPE 'c'::bytea` reads as the match cast to bytea: the cast is of the
        // escape character, which is one either way.
        if let Expr::Cast {
            expr: inner,
            data_type: datafusion::sql::sqlparser::ast::DataType::Bytea,
            ..
        } = expr
            && matches!(
                inner.as_ref(),
                Expr::Like {
                    escape_char: Some(_),
                    ..
                }
            )
        {
            *expr = std::mem::replace(inner.as_mut(), Expr::Value(Value::Null.into()));
        }
        ControlFlow::Continue(())
    }

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

/// Catalog functions of an OID become reads of catalog tables by that OID:
/// - `pg_get_viewdef(oid [, pretty])` and `pg_get_indexdef(oid [, column, pretty])` of the
///   definitions `pg_catalog.augur_view_definitions` and `pg_catalog.augur_index_definitions`
///   serve;
/// - `obj_description`, `col_description` and `shobj_description` of `pg_description` and
///   `pg_shdescription`;
/// - `pg_get_function_result`, `pg_get_function_arguments` and
///   `pg_get_function_identity_arguments` of `pg_proc`;
/// - `pg_table_is_visible` of `pg_class`: the relations of `public`, `pg_catalog` and the
///   schemas of temporary relations (not `augur_catalog` or `information_schema`);
/// - `pg_table_size`, `pg_relation_size`, `pg_total_relation_size` and `pg_indexes_size` of
///   `pg_catalog.augur_relation_sizes` (by OID, or by name for a text literal).
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
                    "(SELECT {table}.augur_viewdef AS pg_get_viewdef FROM pg_catalog.{table} WHERE {table}.augur_view_oid = CAST({oid} AS INT))"
                )
            }
            ("pg_get_constraintdef", [oid, ..]) => {
                let table = crate::catalog::pg_overlay::CONSTRAINT_DEFINITIONS;
                format!(
                    "(SELECT {table}.augur_constraintdef AS pg_get_constraintdef FROM pg_catalog.{table} WHERE {table}.augur_constraint_oid = CAST({oid} AS INT))"
                )
            }
            ("pg_get_indexdef", [oid, rest @ ..]) => {
                let table = crate::catalog::pg_overlay::INDEX_DEFINITIONS;
                let column = match rest.first() {
                    Some(column) => format!("CAST({column} AS INT)"),
                    None => "0".into(),
                };
                format!(
                    "(SELECT {table}.augur_indexdef AS pg_get_indexdef FROM pg_catalog.{table} WHERE {table}.augur_index_oid = CAST({oid} AS INT) AND {table}.augur_column_no = {column})"
                )
            }
            ("obj_description" | "col_description" | "shobj_description", [oid, rest @ ..]) => {
                let (table, subid, class) = match (name.as_str(), rest) {
                    ("col_description", [column]) => (
                        "pg_description",
                        format!("CAST({column} AS INT)"),
                        Some(1259),
                    ),
                    ("shobj_description", [class]) => {
                        ("pg_shdescription", "0".into(), class_oid(class))
                    }
                    (_, []) => ("pg_description", "0".into(), None),
                    (_, [class]) => ("pg_description", "0".into(), class_oid(class)),
                    _ => return ControlFlow::Continue(()),
                };
                let subid = if table == "pg_shdescription" {
                    String::new()
                } else {
                    format!(" AND augur_d.objsubid = {subid}")
                };
                let class = class
                    .map(|c| format!(" AND augur_d.classoid = {c}"))
                    .unwrap_or_default();
                format!(
                    "(SELECT augur_d.description AS {name} FROM pg_catalog.{table} augur_d WHERE augur_d.objoid = CAST({oid} AS INT){subid}{class})"
                )
            }
            (
                "pg_get_function_result"
                | "pg_get_function_arguments"
                | "pg_get_function_identity_arguments",
                [oid],
            ) => {
                let call = match name.as_str() {
                    "pg_get_function_result" => format!(
                        "{}(CAST(augur_p.prorettype AS INT), augur_p.proretset, ",
                        crate::catalog::pg_functions::FUNCTION_RESULT
                    ),
                    "pg_get_function_arguments" => format!(
                        "{}(augur_p.proargtypes, ",
                        crate::catalog::pg_functions::FUNCTION_ARGUMENTS
                    ),
                    _ => format!(
                        "{}(augur_p.proargtypes, ",
                        crate::catalog::pg_functions::FUNCTION_IDENTITY_ARGUMENTS
                    ),
                };
                format!(
                    "(SELECT {call}augur_p.proargnames, augur_p.proallargtypes, augur_p.proargmodes) FROM pg_catalog.pg_proc augur_p WHERE augur_p.oid = CAST({oid} AS INT))"
                )
            }
            ("pg_table_is_visible", [oid]) => format!(
                "(CAST({oid} AS INT) IN (SELECT augur_c.oid FROM pg_catalog.pg_class augur_c JOIN pg_catalog.pg_namespace augur_n ON augur_c.relnamespace = augur_n.oid WHERE augur_n.nspname IN ('public', 'pg_catalog') OR augur_n.nspname LIKE 'pg\\_temp\\_%'))"
            ),
            (
                "pg_table_size" | "pg_relation_size" | "pg_total_relation_size" | "pg_indexes_size",
                [relation, ..],
            ) => {
                let table = crate::catalog::pg_overlay::RELATION_SIZES;
                let column = match name.as_str() {
                    "pg_indexes_size" => "index_bytes",
                    "pg_total_relation_size" => "total_bytes",
                    _ => "table_bytes",
                };
                let matches = match relation {
                    Expr::Value(v) if matches!(v.value, Value::SingleQuotedString(_)) => {
                        format!("augur_s.relname = {relation}")
                    }
                    _ => format!("augur_s.oid = CAST({relation} AS INT)"),
                };
                format!(
                    "(SELECT augur_s.{column} AS {name} FROM pg_catalog.{table} augur_s WHERE {matches})"
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

/// The OID of the catalog named by a literal (`'pg_class'`), as `pg_description.classoid` has it.
fn class_oid(class: &Expr) -> Option<i32> {
    let Expr::Value(v) = class else {
        return None;
    };
    let Value::SingleQuotedString(name) = &v.value else {
        return None;
    };
    Some(match name.trim_start_matches("pg_catalog.") {
        "pg_class" => 1259,
        "pg_type" => 1247,
        "pg_proc" => 1255,
        "pg_namespace" => 2615,
        "pg_am" => 2601,
        "pg_constraint" => 2606,
        "pg_database" => 1262,
        "pg_authid" => 1260,
        "pg_tablespace" => 1213,
        "pg_collation" => 3456,
        "pg_operator" => 2617,
        "pg_opclass" => 2616,
        "pg_opfamily" => 2753,
        "pg_language" => 2612,
        "pg_cast" => 2605,
        "pg_conversion" => 2607,
        "pg_extension" => 3079,
        "pg_trigger" => 2620,
        "pg_aggregate" => 2600,
        _ => return None,
    })
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
                let Some(name) = name else {
                    continue;
                };
                // The array function each set-returning function's rows come from.
                let array_function = match name.as_str() {
                    "generate_series" => None,
                    "regexp_matches" => Some(crate::catalog::pg_regexp::REGEXP_MATCHES_ARRAY),
                    "regexp_split_to_table" => Some("regexp_split_to_array"),
                    _ => continue,
                };
                if function.over.is_some() {
                    continue;
                }
                if let Some(array_function) = array_function {
                    function.name = ObjectName::from(vec![Ident::new(array_function)]);
                }
                let series = std::mem::replace(expr, Expr::Value(Value::Null.into()));
                let unnest = call("unnest", vec![series]);
                *item = SelectItem::ExprWithAlias {
                    expr: unnest,
                    alias: alias.unwrap_or_else(|| Ident::new(name)),
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

/// A function in FROM that returns one column names it as PostgreSQL does: after the alias
/// (`FROM generate_series(1, 3) AS x` has column `x`), or after the function when there is
/// none (`generate_series`, `unnest`). DataFusion calls it `value` or `UNNEST(...)`.
pub fn name_function_columns(statement: &mut Statement) {
    let _ = statement.visit(&mut FunctionColumns);
}

/// Functions in FROM that return one column.
const SINGLE_COLUMN_FUNCTIONS: &[&str] = &["generate_series", "unnest"];

struct FunctionColumns;

impl VisitorMut for FunctionColumns {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        use datafusion::sql::sqlparser::ast::{TableAlias, TableAliasColumnDef};

        // `FROM regexp_split_to_table(...)`: the rows of `unnest(regexp_split_to_array(...))`.
        if let TableFactor::Table {
            name,
            args: Some(args),
            alias,
            with_ordinality: false,
            ..
        } = factor
            && name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("regexp_split_to_table"))
        {
            let arguments: Vec<Expr> = args
                .args
                .iter()
                .filter_map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                    _ => None,
                })
                .collect();
            *factor = TableFactor::UNNEST {
                alias: alias.take(),
                array_exprs: vec![call("regexp_split_to_array", arguments)],
                with_offset: false,
                with_offset_alias: None,
                with_ordinality: false,
            };
        }
        // `LATERAL unnest(t.a)`: DataFusion knows `unnest` in FROM without the keyword only.
        if let TableFactor::Function {
            name, args, alias, ..
        } = factor
            && name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("unnest"))
        {
            let array_exprs: Vec<Expr> = args
                .iter()
                .filter_map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                    _ => None,
                })
                .collect();
            if array_exprs.len() == args.len() {
                *factor = TableFactor::UNNEST {
                    alias: alias.take(),
                    array_exprs,
                    with_offset: false,
                    with_offset_alias: None,
                    with_ordinality: false,
                };
            }
        }
        // `generate_series(1, t.n)` reading columns of the tables before it (a function in FROM
        // is lateral): DataFusion's table function takes constants only, so the rows are the
        // elements of the array the scalar `generate_series` gives, in a lateral subquery.
        let series = match &*factor {
            TableFactor::Table {
                name,
                args: Some(args),
                alias,
                with_ordinality: false,
                ..
            } => Some((name, &args.args, alias)),
            TableFactor::Function {
                name, args, alias, ..
            } => Some((name, args, alias)),
            _ => None,
        };
        if let Some((name, args, alias)) = series
            && name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("generate_series"))
            && args.iter().any(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => reads_columns(e),
                _ => false,
            })
        {
            let alias = alias.clone().unwrap_or_else(|| TableAlias {
                explicit: true,
                name: Ident::new("generate_series"),
                columns: vec![],
                at: None,
            });
            let column = alias
                .columns
                .first()
                .map_or_else(|| alias.name.clone(), |c| c.name.clone());
            let arguments: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            if let Ok(Statement::Query(subquery)) = single_statement(&format!(
                "SELECT unnest(generate_series({})) AS {column}",
                arguments.join(", ")
            )) {
                *factor = TableFactor::Derived {
                    lateral: true,
                    subquery,
                    alias: Some(alias),
                    sample: None,
                };
                return ControlFlow::Continue(());
            }
        }
        let (function, alias) = match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                alias,
                with_ordinality: false,
                ..
            } => {
                let Some(function) = name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .map(|i| i.value.to_ascii_lowercase())
                    .filter(|f| SINGLE_COLUMN_FUNCTIONS.contains(&f.as_str()))
                else {
                    return ControlFlow::Continue(());
                };
                (function, alias)
            }
            TableFactor::UNNEST {
                alias,
                array_exprs,
                with_offset: false,
                with_ordinality: false,
                ..
            } if array_exprs.len() == 1 => {
                let function = match &array_exprs[0] {
                    Expr::Function(f)
                        if f.name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| {
                            i.value.eq_ignore_ascii_case("regexp_split_to_array")
                        }) =>
                    {
                        "regexp_split_to_table"
                    }
                    _ => "unnest",
                };
                (function.to_string(), alias)
            }
            _ => return ControlFlow::Continue(()),
        };
        match alias {
            Some(alias) if alias.columns.is_empty() => {
                alias.columns = vec![TableAliasColumnDef {
                    name: alias.name.clone(),
                    data_type: None,
                }];
            }
            Some(_) => {}
            None => {
                *alias = Some(TableAlias {
                    explicit: true,
                    name: Ident::new(&function),
                    columns: vec![TableAliasColumnDef::from_name(function.as_str())],
                    at: None,
                });
            }
        }
        ControlFlow::Continue(())
    }
}

/// True when `expr` reads a column.
fn reads_columns(expr: &Expr) -> bool {
    visit_expressions(expr, |e| match e {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
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

/// `FETCH FIRST n ROWS ONLY` as `LIMIT n` (after any `OFFSET`), and `FETCH FIRST n ROWS WITH
/// TIES` as `QUALIFY rank() OVER (ORDER BY the query's order) <= n`: the first `n` rows and
/// every row that sorts equal to the last of them. `FETCH` that neither form covers (`PERCENT`,
/// `WITH TIES` after an `OFFSET` or without `ORDER BY`) is left for the planner to refuse.
pub fn fetch_first(statement: &mut Statement) -> crate::error::Result<()> {
    struct Fetches;
    impl VisitorMut for Fetches {
        type Break = crate::error::Error;
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<Self::Break> {
            table_as_select(query.body.as_mut());
            match fetch_as_limit(query) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => ControlFlow::Break(e),
            }
        }
    }
    match statement.visit(&mut Fetches) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(e) => Err(e),
    }
}

/// `TABLE name`, in a query or a branch of a set operation, as `SELECT * FROM name`.
fn table_as_select(body: &mut SetExpr) {
    match body {
        SetExpr::SetOperation { left, right, .. } => {
            table_as_select(left);
            table_as_select(right);
        }
        SetExpr::Table(table) => {
            let name = match (&table.schema_name, &table.table_name) {
                (Some(schema), Some(name)) => format!("{schema}.{name}"),
                (None, Some(name)) => name.clone(),
                _ => return,
            };
            let parsed = datafusion::sql::sqlparser::parser::Parser::new(
                &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            )
            .try_with_sql(&format!("SELECT * FROM {name}"))
            .and_then(|mut p| p.parse_query());
            if let Ok(query) = parsed {
                *body = *query.body;
            }
        }
        _ => {}
    }
}

fn fetch_as_limit(query: &mut Query) -> crate::error::Result<()> {
    use crate::error::Error;
    use datafusion::sql::sqlparser::ast::{LimitClause, OrderByKind};
    let Some(fetch) = query.fetch.as_ref() else {
        return Ok(());
    };
    if fetch.percent {
        return Ok(());
    }
    if fetch.with_ties {
        if matches!(&fetch.quantity, Some(Expr::Value(v)) if v.value == Value::Null) {
            return Err(Error::coded(
                "2201W",
                "row count cannot be null in FETCH FIRST ... WITH TIES clause".to_string(),
            ));
        }
        if query.locks.iter().any(|l| l.nonblock.is_some()) {
            return Err(Error::coded(
                "42601",
                "SKIP LOCKED and WITH TIES options cannot be used together".to_string(),
            ));
        }
    }
    let quantity = fetch
        .quantity
        .clone()
        .unwrap_or_else(|| Expr::value(Value::Number("1".into(), false)));
    if !fetch.with_ties {
        match &mut query.limit_clause {
            None => {
                query.limit_clause = Some(LimitClause::LimitOffset {
                    limit: Some(quantity),
                    offset: None,
                    limit_by: vec![],
                })
            }
            Some(LimitClause::LimitOffset {
                limit: limit @ None,
                ..
            }) => *limit = Some(quantity),
            _ => return Ok(()),
        }
        query.fetch = None;
        return Ok(());
    }
    if query.limit_clause.is_some() {
        return Ok(());
    }
    let Some(OrderByKind::Expressions(order)) = query.order_by.as_ref().map(|o| &o.kind) else {
        return Err(Error::coded(
            "42601",
            "WITH TIES cannot be specified without ORDER BY clause".to_string(),
        ));
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Ok(());
    };
    if order.is_empty() || select.qualify.is_some() {
        return Ok(());
    }
    // The order's keys as expressions of the select's input: output positions and aliases
    // replaced by what they name.
    let keys: Vec<String> = order
        .iter()
        .map(|key| {
            let item = match &key.expr {
                Expr::Value(v) => match &v.value {
                    Value::Number(n, _) => n
                        .parse::<usize>()
                        .ok()
                        .and_then(|n| n.checked_sub(1))
                        .and_then(|n| select.projection.get(n)),
                    _ => None,
                },
                Expr::Identifier(name) => select.projection.iter().find(|item| {
                    matches!(item, SelectItem::ExprWithAlias { alias, .. }
                        if super::normalize_ident(alias) == super::normalize_ident(name))
                }),
                _ => None,
            };
            let expr = match item {
                Some(SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) => {
                    e.clone()
                }
                _ => key.expr.clone(),
            };
            let mut resolved = key.clone();
            resolved.expr = expr;
            resolved.to_string()
        })
        .collect();
    let sql = format!("rank() OVER (ORDER BY {}) <= ({quantity})", keys.join(", "));
    let Some(qualify) = parse_expr(&sql) else {
        return Ok(());
    };
    select.qualify = Some(qualify);
    query.fetch = None;
    Ok(())
}

/// `SELECT FROM a INTERSECT SELECT FROM b` (and EXCEPT): set operations of rows without columns,
/// which DataFusion's intersection and difference cannot join. Each side selects a constant
/// instead, and an outer `SELECT FROM (...)` drops it again: the rows counted are the same.
pub fn zero_column_set_operations(statement: &mut Statement) {
    let _ = statement.visit(&mut ZeroColumnSetOperations);
}

struct ZeroColumnSetOperations;

/// True when every select of `body` has no columns; `compares` notes an INTERSECT or EXCEPT.
fn zero_columns(body: &SetExpr, compares: &mut bool) -> bool {
    match body {
        SetExpr::Select(select) => select.projection.is_empty(),
        SetExpr::Query(query) => zero_columns(&query.body, compares),
        SetExpr::SetOperation {
            op, left, right, ..
        } => {
            if !matches!(op, SetOperator::Union) {
                *compares = true;
            }
            zero_columns(left, compares) && zero_columns(right, compares)
        }
        _ => false,
    }
}

/// Gives every select of `body` the one column `1`.
fn select_constant(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            select.projection = vec![SelectItem::UnnamedExpr(Expr::Value(
                Value::Number("1".into(), false).into(),
            ))]
        }
        SetExpr::Query(query) => select_constant(&mut query.body),
        SetExpr::SetOperation { left, right, .. } => {
            select_constant(left);
            select_constant(right);
        }
        _ => {}
    }
}

impl VisitorMut for ZeroColumnSetOperations {
    type Break = ();

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let mut compares = false;
        if !matches!(*query.body, SetExpr::SetOperation { .. })
            || !zero_columns(&query.body, &mut compares)
            || !compares
        {
            return ControlFlow::Continue(());
        }
        let Ok(Statement::Query(mut outer)) =
            single_statement("SELECT FROM (SELECT 1) AS \"augur.zero_columns\"")
        else {
            return ControlFlow::Continue(());
        };
        let mut body = query.body.clone();
        select_constant(&mut body);
        let SetExpr::Select(select) = outer.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        let Some(TableFactor::Derived { subquery, .. }) =
            select.from.first_mut().map(|f| &mut f.relation)
        else {
            return ControlFlow::Continue(());
        };
        subquery.body = body;
        query.body = outer.body;
        ControlFlow::Continue(())
    }
}

/// The one statement `sql` parses to, with PostgreSQL's dialect.
fn single_statement(sql: &str) -> Result<Statement, ()> {
    let mut statements = datafusion::sql::sqlparser::parser::Parser::parse_sql(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        sql,
    )
    .map_err(|_| ())?;
    if statements.len() == 1 {
        Ok(statements.remove(0))
    } else {
        Err(())
    }
}

/// A relation's name used as a value (`SELECT t FROM t`, `(SELECT t)`), which PostgreSQL reads
/// as the relation's whole row: `ROW(t.*)`, named `t` in the select list. Applied when planning
/// found no column `name`; true when the statement changed.
pub fn whole_row_references(statement: &mut Statement, name: &str) -> bool {
    let mut rewrite = WholeRows {
        name: name.to_string(),
        depth: Vec::new(),
        changed: false,
    };
    let _ = statement.visit(&mut rewrite);
    rewrite.changed
}

struct WholeRows {
    name: String,
    /// For each query being visited, whether it or one around it reads a relation `name`.
    depth: Vec<bool>,
    changed: bool,
}

impl WholeRows {
    fn row(&self) -> Option<Expr> {
        parse_expr(&format!("ROW({}.*)", Ident::with_quote('"', &self.name)))
    }

    fn is_name(&self, expr: &Expr) -> bool {
        matches!(expr, Expr::Identifier(i) if crate::sql::normalize_ident(i) == self.name)
    }
}

impl VisitorMut for WholeRows {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let outer = self.depth.last().copied().unwrap_or(false);
        let here = match query.body.as_mut() {
            SetExpr::Select(select) => {
                let reads = select.from.iter().any(|from| {
                    std::iter::once(&from.relation)
                        .chain(from.joins.iter().map(|j| &j.relation))
                        .any(|factor| match factor {
                            TableFactor::Table { name, alias, .. } => match alias {
                                Some(alias) => {
                                    crate::sql::normalize_ident(&alias.name) == self.name
                                }
                                None => {
                                    name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| {
                                        crate::sql::normalize_ident(i) == self.name
                                    })
                                }
                            },
                            TableFactor::Derived {
                                alias: Some(alias), ..
                            }
                            | TableFactor::Function {
                                alias: Some(alias), ..
                            }
                            | TableFactor::UNNEST {
                                alias: Some(alias), ..
                            } => crate::sql::normalize_ident(&alias.name) == self.name,
                            _ => false,
                        })
                });
                if outer || reads {
                    let row = self.row();
                    for item in select.projection.iter_mut() {
                        if let SelectItem::UnnamedExpr(expr) = item
                            && self.is_name(expr)
                            && let Some(row) = row.clone()
                        {
                            *item = SelectItem::ExprWithAlias {
                                expr: row,
                                alias: Ident::new(&self.name),
                            };
                            self.changed = true;
                        }
                    }
                }
                outer || reads
            }
            _ => outer,
        };
        self.depth.push(here);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.depth.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if self.depth.last().copied().unwrap_or(false)
            && self.is_name(expr)
            && let Some(row) = self.row()
        {
            *expr = row;
            self.changed = true;
        }
        ControlFlow::Continue(())
    }
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
            "SELECT augur_single_unwrap((SELECT augur_single_value(name) FROM u WHERE u.id = t.uid)), (SELECT count(*) FROM u) FROM t"
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
    fn relation_names_as_values_become_whole_rows() {
        let mut s = parse("SELECT t, (SELECT t), x FROM t WHERE t IS NOT NULL");
        assert!(whole_row_references(&mut s, "t"));
        assert_eq!(
            s.to_string(),
            "SELECT ROW(\"t\".*) AS t, (SELECT ROW(\"t\".*) AS t), x FROM t WHERE ROW(\"t\".*) IS NOT NULL"
        );
        // Only where a relation of that name is read.
        let mut s = parse("SELECT u FROM t");
        assert!(!whole_row_references(&mut s, "u"));
    }

    #[test]
    fn unnest_subqueries_become_null() {
        let mut s =
            parse("SELECT a, (SELECT string_agg(x, ',') FROM pg_catalog.unnest(k) s(x)) FROM t");
        null_unnest_subqueries(&mut s);
        assert_eq!(s.to_string(), "SELECT a, NULL FROM t");
    }
}

/// A scalar subquery without FROM whose value is an aggregate of outer columns
/// (`SELECT (SELECT max(o.x) FILTER (WHERE o.ok)) FROM o`) is that aggregate computed in the
/// outer query, as PostgreSQL places an aggregate at the level of the columns it reads.
pub fn inline_outer_aggregates(statement: &mut Statement) {
    let _ = statement.visit(&mut OuterAggregates);
}

struct OuterAggregates;

impl VisitorMut for OuterAggregates {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Subquery(query) = expr else {
            return ControlFlow::Continue(());
        };
        let SetExpr::Select(select) = query.body.as_ref() else {
            return ControlFlow::Continue(());
        };
        let plain = query.with.is_none()
            && query.order_by.is_none()
            && query.limit_clause.is_none()
            && query.fetch.is_none()
            && select.from.is_empty()
            && select.selection.is_none()
            && select.having.is_none()
            && select.distinct.is_none()
            && matches!(&select.group_by, datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty())
            && select.projection.len() == 1;
        if !plain {
            return ControlFlow::Continue(());
        }
        let value = match &select.projection[0] {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => return ControlFlow::Continue(()),
        };
        let mut finder = ReadingAggregate::default();
        let _ = datafusion::sql::sqlparser::ast::Visit::visit(value, &mut finder);
        if finder.found {
            *expr = Expr::Nested(Box::new(value.clone()));
        }
        ControlFlow::Continue(())
    }
}

/// Finds an aggregate at the top level of an expression that reads a column: one not defined
/// by a subquery inside the aggregate.
#[derive(Default)]
struct ReadingAggregate {
    found: bool,
}

impl datafusion::sql::sqlparser::ast::Visitor for ReadingAggregate {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                // Aggregates inside a subquery belong to it.
                ControlFlow::Continue(())
            }
            Expr::Function(f) if is_aggregate(f) => {
                let mut columns = OuterColumns::default();
                let _ = datafusion::sql::sqlparser::ast::Visit::visit(f, &mut columns);
                // DataFusion cannot run a correlated subquery inside an aggregate's argument:
                // such a query keeps the error that says what to write instead.
                if columns.outer && !columns.subqueries {
                    self.found = true;
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

/// Whether an expression reads a column from outside it: an unqualified column outside its
/// subqueries, or a qualified one whose table none of its subqueries defines.
#[derive(Default)]
struct OuterColumns {
    depth: usize,
    defined: Vec<String>,
    qualified: Vec<String>,
    outer: bool,
    subqueries: bool,
}

impl datafusion::sql::sqlparser::ast::Visitor for OuterColumns {
    type Break = ();

    fn pre_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.depth += 1;
        self.subqueries = true;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.depth -= 1;
        if self.depth == 0 {
            self.outer |= self.qualified.iter().any(|q| !self.defined.contains(q));
            self.qualified.clear();
            self.defined.clear();
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(
        &mut self,
        factor: &datafusion::sql::sqlparser::ast::TableFactor,
    ) -> ControlFlow<()> {
        if let datafusion::sql::sqlparser::ast::TableFactor::Table { name, alias, .. } = factor {
            if let Some(alias) = alias {
                self.defined.push(super::normalize_ident(&alias.name));
            } else if let Some(last) = name.0.last().and_then(|p| p.as_ident()) {
                self.defined.push(super::normalize_ident(last));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Identifier(_) if self.depth == 0 => self.outer = true,
            Expr::CompoundIdentifier(parts) if self.depth == 0 && !parts.is_empty() => {
                self.outer = true
            }
            Expr::CompoundIdentifier(parts) if parts.len() > 1 => self
                .qualified
                .push(super::normalize_ident(&parts[parts.len() - 2])),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
