//! Expressions that sqlparser or DataFusion read differently from PostgreSQL, rewritten in the
//! statement before planning:
//!
//! - `-2 ^ 2` is `(-2) ^ 2` (unary minus binds tighter than `^` in PostgreSQL);
//! - `x [NOT] SIMILAR TO 'pattern' [ESCAPE 'e']` is the regular expression PostgreSQL makes of
//!   the pattern (`%` any text, `_` any character, the whole value matched), where DataFusion
//!   read the pattern as a regular expression as it is;
//! - a `timestamp` (without time zone) literal ignores a UTC offset written after the time, as
//!   PostgreSQL does (`TIMESTAMP '2024-05-06 07:08:09+02'` is 07:08:09), where DataFusion
//!   converted the time to UTC;
//! - a cast to `uuid`, `json` or `jsonb` (stored as text) is the function that checks and
//!   normalizes the text and types the result.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CastKind, DataType, DateTimeField, Expr, Function, FunctionArg,
    FunctionArgExpr, FunctionArgOperator, FunctionArguments, Ident, NamedWindowExpr, ObjectName,
    ObjectNamePart, Select, Statement, TypedString, UnaryOperator, Value, ValueWithSpan, VisitMut,
    VisitorMut, WindowFrameBound, WindowSpec, WindowType,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Applies every rewrite of this module to `statement`.
pub fn rewrite(statement: &mut Statement) {
    let _ = statement.visit(&mut PgExprs);
}

/// Applies every rewrite of this module to one expression (a column's DEFAULT).
pub fn rewrite_expr(expr: &mut Expr) {
    let _ = expr.visit(&mut PgExprs);
}

struct PgExprs;

impl VisitorMut for PgExprs {
    type Break = ();

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        // A `lag`/`lead` rewritten below keeps its name as the column's.
        for item in &mut select.projection {
            if let datafusion::sql::sqlparser::ast::SelectItem::UnnamedExpr(
                expr @ Expr::Function(Function { .. }),
            ) = item
                && variable_offset(expr).is_some()
                && let Expr::Function(Function { name, .. }) = expr
                && let Some(ObjectNamePart::Identifier(function)) = name.0.last()
            {
                let alias = Ident::new(function.value.to_ascii_lowercase());
                let expr = std::mem::replace(expr, null());
                *item = datafusion::sql::sqlparser::ast::SelectItem::ExprWithAlias { expr, alias };
            }
        }
        for window in &mut select.named_window {
            if let NamedWindowExpr::WindowSpec(spec) = &mut window.1 {
                literal_frame_offsets(spec);
            }
        }
        if let Some(selection) = &mut select.selection {
            row_in_subqueries(selection);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        // `f1 * '-10'`, `f1 ^ '2.0'`: a quoted number in arithmetic with something that is not
        // quoted takes the other operand's type in PostgreSQL (an untyped literal); DataFusion
        // refuses arithmetic on text, so the number is written unquoted.
        if let Expr::BinaryOp { left, op, right } = expr
            && matches!(
                op,
                BinaryOperator::Plus
                    | BinaryOperator::Minus
                    | BinaryOperator::Multiply
                    | BinaryOperator::Divide
                    | BinaryOperator::Modulo
                    | BinaryOperator::PGExp
            )
        {
            let quoted = |e: &Expr| match e {
                Expr::Value(v) => match &v.value {
                    Value::SingleQuotedString(s) => Some(s.clone()),
                    _ => None,
                },
                _ => None,
            };
            let number = |text: &str| -> Option<Expr> {
                let text = text.trim();
                let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
                if digits.is_empty()
                    || !digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
                    || text.parse::<f64>().is_err()
                {
                    return None;
                }
                Parser::new(&PostgreSqlDialect {})
                    .try_with_sql(text)
                    .and_then(|mut p| p.parse_expr())
                    .ok()
                    .map(|e| Expr::Nested(Box::new(e)))
            };
            match (quoted(left), quoted(right)) {
                (Some(text), None) => {
                    if let Some(n) = number(&text) {
                        **left = n;
                    }
                }
                (None, Some(text)) => {
                    if let Some(n) = number(&text) {
                        **right = n;
                    }
                }
                _ => {}
            }
        }
        // `booleq(a, b)` and its kin: the functions of PostgreSQL's `boolean` comparison
        // operators, called by name.
        if let Expr::Function(function) = expr
            && function.over.is_none()
            && function.filter.is_none()
            && let Some(op) = [
                ("booleq", BinaryOperator::Eq),
                ("boolne", BinaryOperator::NotEq),
                ("boollt", BinaryOperator::Lt),
                ("boolgt", BinaryOperator::Gt),
                ("boolle", BinaryOperator::LtEq),
                ("boolge", BinaryOperator::GtEq),
            ]
            .into_iter()
            .find_map(|(name, op)| function_named(function, name).then_some(op))
            && let [left, right] = function_arguments(function)[..]
            && matches!(&function.args, FunctionArguments::List(list) if list.args.len() == 2)
        {
            let boolean = |e: &Expr| Box::new(cast_to(e.clone(), DataType::Boolean));
            *expr = Expr::Nested(Box::new(Expr::BinaryOp {
                left: boolean(left),
                op,
                right: boolean(right),
            }));
        }
        // `~x`: bitwise not, `x # -1` (exclusive or with all bits set).
        if let Expr::UnaryOp {
            op: UnaryOperator::BitwiseNot,
            expr: operand,
        } = expr
        {
            let operand = std::mem::replace(operand.as_mut(), null());
            *expr = Expr::Nested(Box::new(Expr::BinaryOp {
                left: Box::new(Expr::Nested(Box::new(operand))),
                op: BinaryOperator::PGBitwiseXor,
                right: Box::new(Expr::UnaryOp {
                    op: UnaryOperator::Minus,
                    expr: Box::new(Expr::value(Value::Number("1".into(), false))),
                }),
            }));
        }
        // `@ x`, `|/ x`, `||/ x`: PostgreSQL's prefix operators for abs, sqrt and cbrt.
        if let Expr::UnaryOp { op, expr: operand } = expr
            && let Some(function) = match op {
                UnaryOperator::PGAbs => Some("abs"),
                UnaryOperator::PGSquareRoot => Some("sqrt"),
                UnaryOperator::PGCubeRoot => Some("cbrt"),
                _ => None,
            }
        {
            let operand = std::mem::replace(operand.as_mut(), null());
            *expr = crate::sql::rewrite::call(function, vec![Expr::Nested(Box::new(operand))]);
        }
        // `f(name := value)`, PostgreSQL's older spelling of `f(name => value)`, which
        // sqlparser reads as an assignment expression.
        if let Expr::Function(Function {
            args: FunctionArguments::List(list),
            ..
        }) = expr
        {
            for arg in &mut list.args {
                if let FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Assignment,
                    right,
                })) = arg
                    && let Expr::Identifier(name) = left.as_ref()
                {
                    let value = std::mem::replace(right.as_mut(), null());
                    *arg = FunctionArg::Named {
                        name: name.clone(),
                        arg: FunctionArgExpr::Expr(value),
                        operator: FunctionArgOperator::RightArrow,
                    };
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(Function {
                over: Some(WindowType::WindowSpec(_)),
                ..
            }) if variable_offset(expr).is_some() => {
                if let Some(rewritten) = variable_offset(expr) {
                    *expr = rewritten;
                }
            }
            Expr::Function(function)
                if matches!(function.over, Some(WindowType::WindowSpec(_))) =>
            {
                widen_lead_lag_default(function);
                if let Some(WindowType::WindowSpec(spec)) = &mut function.over {
                    literal_frame_offsets(spec);
                }
            }
            // `- INTERVAL '1 day 2 hours'`: DataFusion negates by putting a minus before the
            // text, which negates its first field only; the whole value is negated here.
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr: inner,
            } if negated_interval(inner).is_some() => {
                if let Some(negated) = negated_interval(inner) {
                    *expr = negated;
                }
            }
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr: inner,
            } if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: BinaryOperator::PGExp,
                    ..
                }
            ) =>
            {
                let inner = std::mem::replace(inner.as_mut(), null());
                *expr = negate_base(inner);
            }
            Expr::SimilarTo {
                negated,
                expr: value,
                pattern,
                escape_char,
            } => {
                let Some(pattern) = string_literal(pattern) else {
                    return ControlFlow::Continue(());
                };
                // PostgreSQL's escape is one character or none (''); anything else is left to
                // be refused.
                let escape = match escape_char {
                    None => Some('\\'),
                    Some(v) => match &v.value {
                        Value::SingleQuotedString(s) if s.chars().count() <= 1 => s.chars().next(),
                        _ => return ControlFlow::Continue(()),
                    },
                };
                let regex = similar_to_regex(&pattern, escape);
                let value = std::mem::replace(value.as_mut(), null());
                *expr = Expr::BinaryOp {
                    left: Box::new(value),
                    op: if *negated {
                        BinaryOperator::PGRegexNotMatch
                    } else {
                        BinaryOperator::PGRegexMatch
                    },
                    right: Box::new(Expr::value(Value::SingleQuotedString(regex))),
                };
            }
            // `SUBSTRING(text FROM 'pattern')` takes a regular expression and `SUBSTRING(text
            // FROM 'pattern' FOR 'escape')` a SQL one (what `SIMILAR ... ESCAPE` reads), where
            // DataFusion takes positions only.
            Expr::Substring {
                expr: text,
                substring_from: Some(from),
                substring_for,
                ..
            } if string_literal(from).is_some()
                && substring_for
                    .as_deref()
                    .is_none_or(|f| string_literal(f).is_some()) =>
            {
                let text = std::mem::replace(text.as_mut(), null());
                let from = std::mem::replace(from.as_mut(), null());
                *expr = match substring_for.take() {
                    None => super::rewrite::call(
                        crate::catalog::pg_regexp::SUBSTRING_REGEX,
                        vec![text, from],
                    ),
                    Some(escape) => super::rewrite::call(
                        crate::catalog::pg_regexp::SUBSTRING_SIMILAR,
                        vec![text, from, *escape],
                    ),
                };
            }
            // `character(n)` and `character varying(n)`: text cut to `n` characters, typed.
            Expr::Cast {
                kind: CastKind::Cast | CastKind::DoubleColon,
                data_type,
                ..
            } if char_cast(data_type).is_some() => {
                if let Some((function, length)) = char_cast(data_type)
                    && let Expr::Cast { expr: inner, .. } = expr
                {
                    let inner = std::mem::replace(inner.as_mut(), null());
                    *expr = super::rewrite::call(
                        function,
                        vec![cast_to(inner, DataType::Text), length],
                    );
                }
            }
            Expr::TypedString(typed) if char_cast(&typed.data_type).is_some() => {
                if let Some((function, length)) = char_cast(&typed.data_type) {
                    let value = Expr::Value(typed.value.clone());
                    *expr = super::rewrite::call(function, vec![value, length]);
                }
            }
            // Types stored as text and read by a function of their own.
            Expr::Cast {
                kind: CastKind::Cast | CastKind::DoubleColon,
                data_type,
                ..
            } if text_type_reader(data_type).is_some() => {
                let reader = text_type_reader(data_type).unwrap_or_default();
                if let Expr::Cast { expr: inner, .. } = expr {
                    let inner = std::mem::replace(inner.as_mut(), null());
                    *expr = super::rewrite::call(reader, vec![inner]);
                }
            }
            // `interval(p) '...'`, `'...'::interval(p)`: the seconds rounded to `p` digits.
            Expr::TypedString(typed)
                if interval_precision(&typed.data_type).is_some()
                    && matches!(typed.value.value, Value::SingleQuotedString(_)) =>
            {
                if let (Some(p), Value::SingleQuotedString(text)) =
                    (interval_precision(&typed.data_type), &typed.value.value)
                    && let Some(rounded) = rounded_interval(text, p)
                {
                    *expr = rounded;
                }
            }
            Expr::Cast {
                kind: CastKind::Cast | CastKind::DoubleColon,
                expr: inner,
                data_type,
                ..
            } if interval_precision(data_type).is_some()
                && matches!(inner.as_ref(), Expr::Value(v) if matches!(v.value, Value::SingleQuotedString(_))) =>
            {
                if let (Some(p), Expr::Value(v)) = (interval_precision(data_type), inner.as_ref())
                    && let Value::SingleQuotedString(text) = &v.value
                    && let Some(rounded) = rounded_interval(text, p)
                {
                    *expr = rounded;
                }
            }
            Expr::TypedString(typed) if text_type_reader(&typed.data_type).is_some() => {
                let reader = text_type_reader(&typed.data_type).unwrap_or_default();
                let value = Expr::Value(typed.value.clone());
                *expr = super::rewrite::call(reader, vec![value]);
            }
            // Interval text as PostgreSQL reads it (`41 mon 12 days 360:00`, `@ 1 minute`,
            // `1.5 weeks`), rewritten into the form DataFusion's reader takes.
            // `INTERVAL(p) '...'`: the seconds rounded to `p` digits.
            Expr::Interval(interval)
                if interval.leading_field.is_none()
                    && interval.last_field.is_none()
                    && interval
                        .leading_precision
                        .or(interval.fractional_seconds_precision)
                        .is_some() =>
            {
                let digits = interval
                    .leading_precision
                    .or(interval.fractional_seconds_precision)
                    .unwrap_or(6);
                if let Expr::Value(v) = interval.value.as_ref()
                    && let Value::SingleQuotedString(text) = &v.value
                    && let Some(rounded) = rounded_interval(text, digits)
                {
                    *expr = rounded;
                }
            }
            // Text whose reading depends on the session's `IntervalStyle`: read as the
            // statement runs.
            Expr::Interval(datafusion::sql::sqlparser::ast::Interval {
                value,
                leading_field: None,
                last_field: None,
                fractional_seconds_precision: None,
                ..
            })
            | Expr::Cast {
                kind: CastKind::Cast | CastKind::DoubleColon,
                expr: value,
                data_type:
                    DataType::Interval {
                        fields: None,
                        precision: None,
                    },
                ..
            } if string_literal(value).is_some_and(|t| super::interval::depends_on_style(&t)) => {
                let value = std::mem::replace(value.as_mut(), null());
                *expr =
                    super::rewrite::call(crate::catalog::pg_functions::INTERVAL_IN, vec![value]);
            }
            Expr::Interval(interval)
                if interval.leading_field.is_none() && interval.last_field.is_none() =>
            {
                canonical_interval(interval.value.as_mut());
            }
            // `INTERVAL '1 2:03' DAY TO SECOND(2)`: read with its qualifier, as PostgreSQL
            // reads it; DataFusion takes a single field only.
            Expr::Interval(interval)
                if interval.last_field.is_some()
                    || interval.fractional_seconds_precision.is_some()
                    || (interval.leading_precision.is_some()
                        && interval.leading_field == Some(DateTimeField::Second)) =>
            {
                qualified_interval(interval);
            }
            Expr::Cast {
                kind: CastKind::Cast | CastKind::DoubleColon,
                expr: inner,
                data_type:
                    DataType::Interval {
                        fields: None,
                        precision: None,
                    },
                ..
            } => canonical_interval(inner.as_mut()),
            // `date_part('epoch', x)` and the other fields `EXTRACT` computes itself: as
            // `EXTRACT` computes them (an interval's year is 365.25 days, not 360; seconds keep
            // their fraction).
            Expr::Function(function)
                if function_named(function, "date_part")
                    && matches!(
                        function_arguments(function)[..],
                        [field, _] if string_literal(field).is_some_and(|f| {
                            [
                                "decade",
                                "century",
                                "millennium",
                                "quarter",
                                "epoch",
                                "second",
                                "year",
                                "isoyear",
                            ]
                            .contains(&f.to_ascii_lowercase().as_str())
                        })
                    ) =>
            {
                if let FunctionArguments::List(list) = &mut function.args
                    && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(field))) =
                        list.args.first_mut()
                    && let Some(text) = string_literal(field)
                {
                    *field = Expr::value(Value::SingleQuotedString(text.to_ascii_lowercase()));
                }
                function.name =
                    ObjectName::from(vec![Ident::new(crate::catalog::pg_extract::DATE_PART)]);
            }
            // Fields DataFusion's `date_part` does not have (or not for intervals).
            Expr::Extract {
                field:
                    field @ (DateTimeField::Decade
                    | DateTimeField::Century
                    | DateTimeField::Millennium
                    | DateTimeField::Quarter
                    | DateTimeField::Epoch
                    | DateTimeField::Second
                    | DateTimeField::Seconds
                    | DateTimeField::Year
                    | DateTimeField::Isoyear),
                expr: inner,
                ..
            } => {
                let name = match field {
                    DateTimeField::Seconds => "second".to_string(),
                    field => field.to_string().to_ascii_lowercase(),
                };
                let inner = std::mem::replace(inner.as_mut(), null());
                *expr = super::rewrite::call(
                    crate::catalog::pg_extract::EXTRACT,
                    vec![Expr::value(Value::SingleQuotedString(name)), inner],
                );
            }
            // `generate_series(start, stop, '1 day')`: the step of a series of timestamps is
            // an interval, as PostgreSQL resolves the untyped literal.
            Expr::Function(function)
                if function_named(function, "generate_series")
                    && matches!(
                        function_arguments(function)[..],
                        [_, _, step] if string_literal(step).is_some_and(|t| {
                            t.trim().parse::<f64>().is_err()
                                && super::interval::parse(&t).is_some()
                        })
                    ) =>
            {
                if let FunctionArguments::List(list) = &mut function.args
                    && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(step))) =
                        list.args.get_mut(2)
                {
                    let mut literal = std::mem::replace(step, null());
                    if string_literal(&literal)
                        .is_some_and(|t| super::interval::depends_on_style(&t))
                    {
                        *step = super::rewrite::call(
                            crate::catalog::pg_functions::INTERVAL_IN,
                            vec![literal],
                        );
                        return ControlFlow::Continue(());
                    }
                    canonical_interval(&mut literal);
                    *step = Expr::Cast {
                        kind: CastKind::DoubleColon,
                        expr: Box::new(literal),
                        data_type: DataType::Interval {
                            fields: None,
                            precision: None,
                        },
                        array: false,
                        format: None,
                    };
                }
            }
            // `make_interval(days => 10)`: named arguments in their places, zero for the others.
            Expr::Function(function)
                if function
                    .name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .is_some_and(|i| i.value.eq_ignore_ascii_case("make_interval")) =>
            {
                positional_make_interval(function);
            }
            // Timestamps in microseconds, as tables store them and as PostgreSQL keeps them
            // (DataFusion reads `timestamp` as nanoseconds, which reach only 1677 to 2262, and
            // knows no precision but 0, 3, 6 and 9).
            Expr::TypedString(TypedString { data_type, .. }) | Expr::Cast { data_type, .. } if matches!(&*data_type, DataType::Timestamp(p, _) if *p != Some(6)) =>
            {
                let mut digits = None;
                if let DataType::Timestamp(precision, _) = data_type {
                    digits = precision.filter(|p| *p < 6);
                    *precision = Some(6);
                }
                // `timestamp(p)`: the seconds rounded to `p` digits.
                if let Some(p) = digits {
                    let value = std::mem::replace(expr, null());
                    *expr = super::rewrite::call(
                        crate::catalog::pg_datetime::ROUND_SECONDS,
                        vec![value, Expr::value(Value::Number(p.to_string(), false))],
                    );
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// `rank(v, ...) WITHIN GROUP (ORDER BY k, ...)` and `dense_rank`, `percent_rank`, `cume_dist`
/// of a hypothetical row: where the row `v` would stand among the group's rows, counted with
/// filtered aggregates (`1 + count(*) FILTER (WHERE (k) sorts before (v))` for `rank`), nulls
/// sorted last ascending and first descending unless the order says otherwise.
fn hypothetical_set(expr: &Expr) -> Option<Expr> {
    let Expr::Function(function) = expr else {
        return None;
    };
    if function.within_group.is_empty() || function.over.is_some() || function.filter.is_some() {
        return None;
    }
    let name = function
        .name
        .0
        .last()?
        .as_ident()?
        .value
        .to_ascii_lowercase();
    if !matches!(
        name.as_str(),
        "rank" | "dense_rank" | "percent_rank" | "cume_dist"
    ) {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    let values = unnamed_args(list)?;
    if values.len() != function.within_group.len() || list.duplicate_treatment.is_some() {
        return None;
    }
    let keys = &function.within_group;
    // The hypothetical row is one value per group: the column it is ranked by is not one.
    let columns = |e: &Expr| {
        let mut names = Vec::new();
        let _ = datafusion::sql::sqlparser::ast::visit_expressions(e, |e| {
            match e {
                Expr::Identifier(i) => names.push(i.value.to_ascii_lowercase()),
                Expr::CompoundIdentifier(parts) => {
                    names.extend(parts.last().map(|i| i.value.to_ascii_lowercase()))
                }
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        });
        names
    };
    let ranked: Vec<String> = keys.iter().flat_map(|k| columns(&k.expr)).collect();
    if values
        .iter()
        .any(|v| columns(v).iter().any(|c| ranked.contains(c)))
    {
        return None;
    }
    // (k) before (v) in the order, key by key; (k) a peer of (v).
    let before = |i: usize| {
        let (k, v) = (&keys[i].expr, values[i]);
        let ascending = keys[i].options.asc.unwrap_or(true);
        let nulls_first = keys[i].options.nulls_first.unwrap_or(!ascending);
        let op = if ascending { "<" } else { ">" };
        if nulls_first {
            format!("(({k}) {op} ({v}) OR (({k}) IS NULL AND ({v}) IS NOT NULL))")
        } else {
            format!("(({k}) {op} ({v}) OR (({v}) IS NULL AND ({k}) IS NOT NULL))")
        }
    };
    let peer = |i: usize| format!("(({}) IS NOT DISTINCT FROM ({}))", keys[i].expr, values[i]);
    let precedes = (0..keys.len())
        .map(|i| {
            (0..i)
                .map(peer)
                .chain(std::iter::once(before(i)))
                .collect::<Vec<_>>()
                .join(" AND ")
        })
        .collect::<Vec<_>>()
        .join(" OR ");
    let peers = (0..keys.len()).map(peer).collect::<Vec<_>>().join(" AND ");
    let sql = match name.as_str() {
        "rank" => format!("(count(*) FILTER (WHERE {precedes}) + 1)"),
        "dense_rank" if keys.len() == 1 => {
            let k = &keys[0].expr;
            format!(
                "(count(DISTINCT {k}) FILTER (WHERE {precedes}) + CASE WHEN count(*) FILTER \
                 (WHERE ({k}) IS NULL AND ({precedes})) > 0 THEN 2 ELSE 1 END)"
            )
        }
        "percent_rank" => format!(
            "(CASE WHEN count(*) = 0 THEN CAST(0 AS DOUBLE PRECISION) ELSE \
             CAST(count(*) FILTER (WHERE {precedes}) AS DOUBLE PRECISION) / count(*) END)"
        ),
        "cume_dist" => format!(
            "(CAST(count(*) FILTER (WHERE {precedes} OR ({peers})) + 1 AS DOUBLE PRECISION) \
             / (count(*) + 1))"
        ),
        _ => return None,
    };
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// `percentile_cont(ARRAY[f1, f2, ...]) WITHIN GROUP (ORDER BY x)` (and `percentile_disc`): the
/// array of the percentiles at each fraction, `ARRAY[percentile_cont(f1) WITHIN GROUP (ORDER BY
/// x), ...]`, NULL where a fraction is NULL.
fn fraction_array(expr: &Expr) -> Option<Expr> {
    let Expr::Function(function) = expr else {
        return None;
    };
    if function.within_group.is_empty() || function.over.is_some() {
        return None;
    }
    let name = function
        .name
        .0
        .last()?
        .as_ident()?
        .value
        .to_ascii_lowercase();
    if !matches!(name.as_str(), "percentile_cont" | "percentile_disc") {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Array(array)))] = list.args.as_slice()
    else {
        return None;
    };
    if array.elem.iter().any(|e| matches!(e, Expr::Array(_))) {
        return None;
    }
    let elem = array
        .elem
        .iter()
        .map(|fraction| {
            if matches!(fraction, Expr::Value(v) if matches!(v.value, Value::Null)) {
                return null();
            }
            let mut call = function.clone();
            if let FunctionArguments::List(list) = &mut call.args {
                list.args = vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(
                    fraction.clone(),
                ))];
            }
            Expr::Function(call)
        })
        .collect();
    Some(Expr::Array(datafusion::sql::sqlparser::ast::Array {
        elem,
        named: true,
    }))
}

/// `float8(x)`, `int4(x)`, ...: a type's name called as a function is a cast to it (after the
/// columns are named: the column is named after the type, as the call).
fn function_style_cast(expr: &mut Expr) {
    if let Expr::Function(Function {
        name,
        args: FunctionArguments::List(list),
        over: None,
        filter: None,
        ..
    }) = expr
        && let [ObjectNamePart::Identifier(function)] = name.0.as_slice()
        && function.quote_style.is_none()
        && let [FunctionArg::Unnamed(FunctionArgExpr::Expr(argument))] = list.args.as_slice()
        && list.duplicate_treatment.is_none()
        && list.clauses.is_empty()
    {
        let data_type = match function.value.to_ascii_lowercase().as_str() {
            "float8" => Some(DataType::Float8),
            "float4" => Some(DataType::Float4),
            "int2" => Some(DataType::Int2(None)),
            "int4" => Some(DataType::Int4(None)),
            "int8" => Some(DataType::Int8(None)),
            _ => None,
        };
        if let Some(data_type) = data_type {
            *expr = Expr::Cast {
                kind: CastKind::Cast,
                expr: Box::new(argument.clone()),
                data_type,
                array: false,
                format: None,
            };
        }
    }
}

/// The rewrites that run after the columns are named, so that a column keeps the name of what
/// was written: casts to `name`, PostgreSQL's type of identifiers, as casts to text (which
/// Augur stores names as), so that `'x'::name` is named `name`; hypothetical-set aggregates
/// (see [`hypothetical_set`]), so that `rank(3) WITHIN GROUP (...)` is named `rank`.
pub fn after_naming(statement: &mut Statement) {
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(statement, |expr| {
        if let Some(counted) = hypothetical_set(expr) {
            *expr = counted;
        }
        if let Some(each) = fraction_array(expr) {
            *expr = each;
        }
        function_style_cast(expr);
        // `SUBSTRING(x FROM p FOR n)` by positions as a call of `substr`, which takes `bytea`
        // too (DataFusion plans the syntax with its own text-only function).
        if let Expr::Substring {
            expr: text,
            substring_from,
            substring_for,
            ..
        } = expr
        {
            let text = std::mem::replace(text.as_mut(), null());
            let from = substring_from
                .take()
                .map_or_else(|| Expr::value(Value::Number("1".into(), false)), |f| *f);
            let args = std::iter::once(text)
                .chain(std::iter::once(from))
                .chain(substring_for.take().map(|f| *f))
                .collect();
            *expr = super::rewrite::call("substr", args);
        }
        // `every`, the standard's name of `bool_and`.
        if let Expr::Function(function) = expr
            && let [ObjectNamePart::Identifier(name)] = function.name.0.as_slice()
            && name.quote_style.is_none()
            && name.value.eq_ignore_ascii_case("every")
        {
            function.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new("bool_and"))]);
        }
        match expr {
            Expr::Cast { data_type, .. } if is_name_type(data_type) => *data_type = DataType::Text,
            Expr::TypedString(typed) if is_name_type(&typed.data_type) => {
                typed.data_type = DataType::Text;
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
}

fn is_name_type(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Custom(name, modifiers)
        if modifiers.is_empty() && name.to_string().eq_ignore_ascii_case("name"))
}

/// The function that reads text as a value of `data_type`, for the types Augur stores as
/// checked text: `uuid`, `json` and `jsonb`.
fn text_type_reader(data_type: &DataType) -> Option<&'static str> {
    match data_type {
        DataType::Uuid => Some(crate::catalog::pg_builtins::UUID_IN),
        DataType::JSON => Some(crate::catalog::pg_json::JSON_IN),
        DataType::JSONB => Some(crate::catalog::pg_json::JSONB_IN),
        DataType::Custom(name, modifiers) if modifiers.is_empty() => {
            match name.to_string().to_ascii_lowercase().as_str() {
                "uuid" => Some(crate::catalog::pg_builtins::UUID_IN),
                "json" => Some(crate::catalog::pg_json::JSON_IN),
                "jsonb" => Some(crate::catalog::pg_json::JSONB_IN),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The function a cast to `character(n)` / `character varying(n)` is planned as, and `n` (`char`
/// alone is `char(1)`; `varchar` alone is text and needs none).
fn char_cast(data_type: &DataType) -> Option<(&'static str, Expr)> {
    let (kind, length) = crate::catalog::pg_char::char_length(data_type)?;
    Some((
        kind.cast_function(),
        Expr::value(Value::Number(length.to_string(), false)),
    ))
}

/// `CAST(expr AS data_type)`.
fn cast_to(expr: Expr, data_type: DataType) -> Expr {
    Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(expr),
        data_type,
        array: false,
        format: None,
    }
}

/// A string literal of interval text in the form DataFusion reads, when PostgreSQL reads it.
fn canonical_interval(value: &mut Expr) {
    if let Expr::Value(ValueWithSpan {
        value: Value::SingleQuotedString(text),
        ..
    }) = value
        && let Some(interval) = super::interval::parse(text)
    {
        // Text DataFusion reads the same way stays as written (it names plan columns).
        let same =
            datafusion::arrow::compute::kernels::cast_utils::parse_interval_month_day_nano(text)
                .is_ok_and(|theirs| theirs == interval);
        if !same {
            *text = super::interval::canonical_text(interval);
        }
    }
}

/// An interval literal with a qualifier, as an unqualified literal of the value PostgreSQL
/// reads. Left as it is when the text is not an interval (DataFusion then refuses it).
fn qualified_interval(interval: &mut datafusion::sql::sqlparser::ast::Interval) {
    use super::interval::Field;
    let field = |f: &Option<DateTimeField>| -> Option<Field> {
        Some(match f.as_ref()? {
            DateTimeField::Year | DateTimeField::Years => Field::Year,
            DateTimeField::Month | DateTimeField::Months => Field::Month,
            DateTimeField::Day | DateTimeField::Days => Field::Day,
            DateTimeField::Hour | DateTimeField::Hours => Field::Hour,
            DateTimeField::Minute | DateTimeField::Minutes => Field::Minute,
            DateTimeField::Second | DateTimeField::Seconds => Field::Second,
            _ => return None,
        })
    };
    let Some(leading) = field(&interval.leading_field) else {
        return;
    };
    let last = match &interval.last_field {
        Some(_) => match field(&interval.last_field) {
            Some(last) => Some(last),
            None => return,
        },
        None => None,
    };
    let precision = interval
        .fractional_seconds_precision
        .or(interval.leading_precision);
    let Expr::Value(ValueWithSpan {
        value: Value::SingleQuotedString(text),
        ..
    }) = interval.value.as_mut()
    else {
        return;
    };
    let Some(value) = super::interval::parse_qualified(text, leading, last, precision) else {
        return;
    };
    *text = super::interval::canonical_text(value);
    interval.leading_field = None;
    interval.leading_precision = None;
    interval.last_field = None;
    interval.fractional_seconds_precision = None;
}

/// Rewrites named arguments of a `make_interval` call into positions (the missing ones zero).
fn positional_make_interval(function: &mut datafusion::sql::sqlparser::ast::Function) {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    let FunctionArguments::List(list) = &mut function.args else {
        return;
    };
    // `days => 10` comes as a named argument, or one named by an identifier expression
    for arg in &mut list.args {
        if let FunctionArg::ExprNamed {
            name: Expr::Identifier(ident),
            arg: value,
            operator,
        } = arg
        {
            *arg = FunctionArg::Named {
                name: ident.clone(),
                arg: value.clone(),
                operator: operator.clone(),
            };
        }
    }
    if !list
        .args
        .iter()
        .any(|a| matches!(a, FunctionArg::Named { .. }))
    {
        return;
    }
    let names = crate::catalog::pg_builtins::MAKE_INTERVAL_PARAMETERS;
    let mut positional: Vec<Option<Expr>> = vec![None; names.len()];
    let mut last = 0;
    for (i, arg) in list.args.iter().enumerate() {
        let (slot, value) = match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => (i, e),
            FunctionArg::Named {
                name,
                arg: FunctionArgExpr::Expr(e),
                ..
            } => match names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(&name.value))
            {
                Some(slot) => (slot, e),
                // An unknown name is left for the planner to refuse.
                None => return,
            },
            _ => return,
        };
        if slot >= names.len() {
            return;
        }
        positional[slot] = Some(value.clone());
        last = last.max(slot + 1);
    }
    list.args = positional
        .into_iter()
        .take(last)
        .map(|e| {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(
                e.unwrap_or_else(|| Expr::value(Value::Number("0".into(), false))),
            ))
        })
        .collect();
}

fn null() -> Expr {
    Expr::value(Value::Null)
}

fn string_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(s),
            ..
        }) => Some(s.clone()),
        _ => None,
    }
}

/// `-(a ^ b ^ c)` as PostgreSQL reads `-a ^ b ^ c`: `((-a) ^ b) ^ c`.
fn negate_base(expr: Expr) -> Expr {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::PGExp,
            right,
        } => Expr::BinaryOp {
            left: Box::new(negate_base(*left)),
            op: BinaryOperator::PGExp,
            right,
        },
        other => Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr: Box::new(other),
        },
    }
}

/// The regular expression PostgreSQL makes of a `SIMILAR TO` pattern: anchored at both ends,
/// `%` and `_` as any text and any character, `(` as a non-capturing group, the characters that
/// are special to regular expressions but not to `SIMILAR TO` (`.`, `^`, `$`, `\`) taken
/// literally, and the character after `escape` taken literally.
pub fn similar_to_regex(pattern: &str, escape: Option<char>) -> String {
    format!("^(?:{})$", similar_body(pattern, escape))
}

/// The regular expression of a SIMILAR TO pattern, without anchors; its parentheses do not
/// capture.
pub fn similar_body(pattern: &str, escape: Option<char>) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            if let Some(next) = chars.next() {
                push_literal(&mut out, next);
            } else {
                push_literal(&mut out, c);
            }
            continue;
        }
        if in_class {
            if c == '\\' {
                out.push('\\');
            }
            out.push(c);
            if c == ']' {
                in_class = false;
            }
            continue;
        }
        match c {
            '[' => {
                out.push('[');
                in_class = true;
                // A leading `^` negates; a `]` right after the opening is a member.
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push_str("\\]");
                    chars.next();
                }
            }
            '%' => out.push_str(".*"),
            '_' => out.push('.'),
            '(' => out.push_str("(?:"),
            '.' | '^' | '$' | '\\' => push_literal(&mut out, c),
            other => out.push(other),
        }
    }
    out
}

fn push_literal(out: &mut String, c: char) {
    if c.is_ascii_punctuation() {
        out.push('\\');
    }
    out.push(c);
}

/// A call's arguments, when none is named.
fn unnamed_args(
    list: &datafusion::sql::sqlparser::ast::FunctionArgumentList,
) -> Option<Vec<&Expr>> {
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect()
}

/// `lag(x, n [, d])` and `lead(x, n [, d])` with an `n` that is not a constant, which
/// DataFusion's functions do not take: the partition's values as an array (`array_agg` over the
/// whole partition) read at the row's position moved by `n`, as PostgreSQL reads them: NULL for
/// a NULL `n`, `d` (or NULL) outside the partition.
fn variable_offset(expr: &Expr) -> Option<Expr> {
    let Expr::Function(Function {
        name,
        args: FunctionArguments::List(list),
        over: Some(WindowType::WindowSpec(spec)),
        filter: None,
        null_treatment: None,
        within_group,
        ..
    }) = expr
    else {
        return None;
    };
    let function = match name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] if ident.quote_style.is_none() => {
            ident.value.to_ascii_lowercase()
        }
        _ => return None,
    };
    if !within_group.is_empty() || list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
        return None;
    }
    let args = unnamed_args(list)?;
    fn constant(e: &Expr) -> bool {
        match e {
            Expr::Value(_) => true,
            Expr::UnaryOp { expr, .. } | Expr::Nested(expr) | Expr::Cast { expr, .. } => {
                constant(expr)
            }
            _ => false,
        }
    }
    let (value, offset) = match args.as_slice() {
        [value, offset, ..] if !constant(offset) => (*value, *offset),
        _ => return None,
    };
    let mut whole = spec.clone();
    whole.window_frame = Some(datafusion::sql::sqlparser::ast::WindowFrame {
        units: datafusion::sql::sqlparser::ast::WindowFrameUnits::Rows,
        start_bound: WindowFrameBound::Preceding(None),
        end_bound: Some(WindowFrameBound::Following(None)),
    });
    let mut partition = spec.clone();
    partition.order_by.clear();
    partition.window_frame = None;
    let text = match (function.as_str(), args.len()) {
        ("lag" | "lead", 2 | 3) => {
            let sign = if function == "lag" { '-' } else { '+' };
            let default = args.get(2).map_or("NULL".to_string(), |d| d.to_string());
            let position =
                format!("(CAST(row_number() OVER ({spec}) AS BIGINT) {sign} ({offset}))");
            format!(
                "CASE WHEN ({offset}) IS NULL THEN NULL \
                 WHEN {position} BETWEEN 1 AND count(*) OVER ({partition}) \
                 THEN (array_agg({value}) OVER ({whole}))[{position}] ELSE {default} END"
            )
        }
        ("nth_value", 2) => format!(
            "CASE WHEN ({offset}) <= 0 THEN augur_raise('22016', 'argument of nth_value must be greater than zero') \
             ELSE (array_agg({value}) OVER ({spec}))[{offset}] END"
        ),
        _ => return None,
    };
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// `(a, b) [NOT] IN (SELECT x, y ...)` among a WHERE clause's conjuncts, which DataFusion refuses
/// (its IN takes one column): `EXISTS (SELECT FROM (SELECT x, y ...) s (c1, c2) WHERE s.c1 = a
/// AND s.c2 = b)`, and for NOT IN `NOT EXISTS (... WHERE (s.c1 = a AND s.c2 = b) IS NOT
/// FALSE)`: a row that compares unknown keeps NOT IN from being true. Where the clause only
/// filters, an unknown IN and a false one are the same.
fn row_in_subqueries(expr: &mut Expr) {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            row_in_subqueries(left);
            row_in_subqueries(right);
        }
        Expr::Nested(inner) => row_in_subqueries(inner),
        Expr::InSubquery {
            expr: tested,
            subquery,
            negated,
        } if matches!(tested.as_ref(), Expr::Tuple(items) if items.len() > 1) => {
            let Expr::Tuple(items) = tested.as_ref() else {
                return;
            };
            let columns: Vec<String> = (1..=items.len()).map(|n| format!("c{n}")).collect();
            let matches = items
                .iter()
                .zip(&columns)
                .map(|(item, c)| format!("\"augur.row_in\".{c} = ({item})"))
                .collect::<Vec<_>>()
                .join(" AND ");
            let condition = if *negated {
                format!("({matches}) IS NOT FALSE")
            } else {
                matches
            };
            let text = format!(
                "{}EXISTS (SELECT 1 FROM ({subquery}) AS \"augur.row_in\" ({}) WHERE {condition})",
                if *negated { "NOT " } else { "" },
                columns.join(", ")
            );
            if let Ok(rewritten) = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&text)
                .and_then(|mut p| p.parse_expr())
            {
                *expr = rewritten;
            }
        }
        _ => {}
    }
}

/// `2::int8 PRECEDING`: a frame offset that is a number cast to a number type is the number,
/// which DataFusion (taking literal offsets only) reads as the ORDER BY key's type.
fn literal_frame_offsets(spec: &mut WindowSpec) {
    let Some(frame) = spec.window_frame.as_mut() else {
        return;
    };
    for bound in std::iter::once(&mut frame.start_bound).chain(frame.end_bound.as_mut()) {
        if let WindowFrameBound::Preceding(Some(offset)) | WindowFrameBound::Following(Some(offset)) =
            bound
            && let Expr::Cast {
                expr: inner,
                data_type,
                ..
            } = offset.as_mut()
            && is_number_type(data_type)
            && let Expr::Value(ValueWithSpan {
                value: Value::Number(number, _),
                ..
            }) = inner.as_ref()
        {
            **offset = Expr::value(Value::Number(number.clone(), false));
        }
    }
}

fn is_number_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::SmallInt(_)
            | DataType::Int2(_)
            | DataType::Int(_)
            | DataType::Integer(_)
            | DataType::Int4(_)
            | DataType::BigInt(_)
            | DataType::Int8(_)
            | DataType::Real
            | DataType::Float4
            | DataType::Double(_)
            | DataType::DoublePrecision
            | DataType::Float8
            | DataType::Float(_)
            | DataType::Numeric(_)
            | DataType::Decimal(_)
    )
}

/// An unqualified interval literal negated field by field, as the zero interval minus it (an
/// expression, named `?column?` as PostgreSQL names a negation).
fn negated_interval(expr: &Expr) -> Option<Expr> {
    let Expr::Interval(interval) = expr else {
        return None;
    };
    if interval.leading_field.is_some() || interval.last_field.is_some() {
        return None;
    }
    super::interval::parse(&string_literal(&interval.value)?)?;
    let mut zero = interval.clone();
    zero.value = Box::new(Expr::value(Value::SingleQuotedString("0 seconds".into())));
    Some(Expr::BinaryOp {
        left: Box::new(Expr::Interval(zero)),
        op: BinaryOperator::Minus,
        right: Box::new(expr.clone()),
    })
}

fn function_named(function: &datafusion::sql::sqlparser::ast::Function, name: &str) -> bool {
    function.name.0.len() == 1
        && function
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| i.quote_style.is_none() && i.value.eq_ignore_ascii_case(name))
}

/// The unnamed arguments of a call.
fn function_arguments(function: &datafusion::sql::sqlparser::ast::Function) -> Vec<&Expr> {
    match &function.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `lead(x, n, 1.5)`, `lag(...)`: PostgreSQL gives the value and the default their common type;
/// DataFusion casts the default to the value's type (`-1.4` to `-1`), so a default with a
/// fraction makes the value `double precision`.
fn widen_lead_lag_default(function: &mut datafusion::sql::sqlparser::ast::Function) {
    fn fractional(e: &Expr) -> bool {
        match e {
            Expr::Value(v) => {
                matches!(&v.value, Value::Number(n, _) if n.contains(['.', 'e', 'E']))
            }
            Expr::UnaryOp { expr, .. } | Expr::Nested(expr) => fractional(expr),
            _ => false,
        }
    }
    if !(function_named(function, "lead") || function_named(function, "lag"))
        || !function_arguments(function)
            .get(2)
            .is_some_and(|d| fractional(d))
    {
        return;
    }
    if let FunctionArguments::List(list) = &mut function.args
        && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(value))) = list.args.first_mut()
    {
        let inner = std::mem::replace(value, null());
        *value = Expr::Cast {
            kind: CastKind::Cast,
            expr: Box::new(inner),
            data_type: DataType::DoublePrecision,
            array: false,
            format: None,
        };
    }
}

/// The precision of `interval(p)`.
fn interval_precision(data_type: &DataType) -> Option<u64> {
    match data_type {
        DataType::Interval {
            fields: None,
            precision: Some(p),
        } => Some(*p),
        _ => None,
    }
}

/// Interval text read as PostgreSQL reads it, its seconds rounded to `digits` after the point
/// (halves away from zero), as an interval literal.
fn rounded_interval(text: &str, digits: u64) -> Option<Expr> {
    let value = super::interval::parse(text)?;
    let step = 10i64.pow(6 - digits.min(6) as u32) * 1000;
    let nanos = value.nanoseconds;
    let rounded = if nanos >= 0 {
        (nanos + step / 2) / step * step
    } else {
        -((-nanos + step / 2) / step * step)
    };
    let value =
        datafusion::arrow::datatypes::IntervalMonthDayNano::new(value.months, value.days, rounded);
    Some(Expr::Interval(datafusion::sql::sqlparser::ast::Interval {
        value: Box::new(Expr::value(Value::SingleQuotedString(
            super::interval::canonical_text(value),
        ))),
        leading_field: None,
        leading_precision: None,
        last_field: None,
        fractional_seconds_precision: None,
    }))
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

    fn rewritten(sql: &str) -> String {
        let mut statement = parse(sql);
        rewrite(&mut statement);
        statement.to_string()
    }

    fn first_item(sql: &str) -> Expr {
        let mut statement = parse(sql);
        rewrite(&mut statement);
        let Statement::Query(query) = statement else {
            panic!("not a query")
        };
        let datafusion::sql::sqlparser::ast::SetExpr::Select(select) = *query.body else {
            panic!("not a select")
        };
        match select.projection[0].clone() {
            datafusion::sql::sqlparser::ast::SelectItem::UnnamedExpr(e) => e,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn unary_minus_binds_tighter_than_power() {
        // (-2) ^ 2: the power's base is negated.
        let Expr::BinaryOp { left, .. } = first_item("SELECT -2 ^ 2") else {
            panic!("not a power")
        };
        assert!(
            matches!(*left, Expr::UnaryOp { .. } | Expr::Value(_)),
            "{left}"
        );
        // -(2 ^ 2) stays a negated power.
        assert!(matches!(
            first_item("SELECT -(2 ^ 2)"),
            Expr::UnaryOp { .. }
        ));
    }

    #[test]
    fn similar_to_patterns_as_postgresql_reads_them() {
        assert_eq!(similar_to_regex("a%", Some('\\')), "^(?:a.*)$");
        assert_eq!(similar_to_regex("(a|b)%c", Some('\\')), "^(?:(?:a|b).*c)$");
        assert_eq!(similar_to_regex("_b.d%", Some('\\')), "^(?:.b\\.d.*)$");
        assert_eq!(similar_to_regex("a\\%b", Some('\\')), "^(?:a\\%b)$");
        assert_eq!(similar_to_regex("[^a]_", None), "^(?:[^a].)$");
        assert_eq!(
            rewritten("SELECT 'abc' NOT SIMILAR TO 'a%'"),
            "SELECT 'abc' !~ '^(?:a.*)$'"
        );
    }

    #[test]
    fn timestamps_are_microseconds() {
        assert_eq!(
            rewritten("SELECT TIMESTAMP '2024-05-06 07:08:09+02', '1997-02-10'::timestamp(2)"),
            "SELECT TIMESTAMP(6) '2024-05-06 07:08:09+02', \
             augur_round_seconds('1997-02-10'::TIMESTAMP(6), 2)"
        );
    }
}
