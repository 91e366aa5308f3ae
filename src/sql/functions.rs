//! Calls of functions written in SQL, replaced by the functions' bodies.
//!
//! PostgreSQL inlines a simple SQL function into the query that calls it; Augur does so for
//! every call, before planning: `f(a, b)` becomes the body's expression with `a` and `b` in
//! place of the parameters (`$1`, `$2` or their names), each cast to its parameter's type, and
//! the whole cast to the result type. A body that is a query becomes a scalar subquery of its
//! first row; a function in FROM (`FROM f(1) AS t`) becomes a derived table of the body's rows.
//! `STRICT` makes the result NULL when an argument is. Bodies may call other SQL functions, to
//! [`MAX_NESTING`] levels.

use std::ops::ControlFlow;

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
use datafusion::sql::sqlparser::ast::{
    ArgMode, BinaryOperator, CaseWhen, CastKind, CreateFunction, CreateFunctionBody, DataType,
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, FunctionCalledOnNull,
    FunctionReturnType, Ident, ObjectName, OperateFunctionArg, Query, SelectItem, SetExpr,
    Statement, TableAlias, TableAliasColumnDef, TableFactor, Value, ValueWithSpan, VisitMut,
    VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::{normalize_ident, table_name};
use crate::catalog::function::{self, Body, FunctionDef, Functions, Returns, signature};
use crate::error::{Error, Result};

/// How deep bodies may call other SQL functions (a function that calls itself stops here).
pub const MAX_NESTING: usize = 32;

/// The functions the statements of one text see: the catalog's, and those the text's earlier
/// statements create or drop (as PostgreSQL looks a function up when it reaches the statement
/// that calls it).
pub struct Scope<'a> {
    catalog: &'a Functions,
    created: Vec<Arc<FunctionDef>>,
    dropped: Vec<String>,
}

impl<'a> Scope<'a> {
    /// The catalog's functions.
    pub fn new(catalog: &'a Functions) -> Self {
        Self {
            catalog,
            created: Vec::new(),
            dropped: Vec::new(),
        }
    }

    /// Whether any function can be called.
    pub fn any(&self) -> bool {
        self.catalog.any() || !self.created.is_empty()
    }

    /// The functions called `name`.
    fn named(&self, name: &str) -> Vec<Arc<FunctionDef>> {
        let mut found: Vec<Arc<FunctionDef>> = self
            .catalog
            .named(name)
            .into_iter()
            .filter(|f| !self.dropped.contains(&f.signature()))
            .collect();
        for def in self.created.iter().filter(|f| f.name == name) {
            found.retain(|f| f.signature() != def.signature());
            found.push(def.clone());
        }
        found
    }

    fn has(&self, name: &str) -> bool {
        !self.named(name).is_empty()
    }

    /// Takes in what `statement` creates or drops, for the statements after it.
    pub fn note(&mut self, statement: &Statement) {
        match statement {
            Statement::CreateFunction(create) => {
                if let Ok(def) = function_def(create) {
                    let signature = def.signature();
                    self.created.retain(|f| f.signature() != signature);
                    self.dropped.retain(|s| *s != signature);
                    self.created.push(Arc::new(def));
                }
            }
            Statement::DropFunction(drop) => {
                for desc in &drop.func_desc {
                    let Ok(name) = table_name(&desc.name) else {
                        continue;
                    };
                    let signatures: Vec<String> = match &desc.args {
                        Some(args) => listed_signature(&name, args).into_iter().collect(),
                        None => self.named(&name).iter().map(|f| f.signature()).collect(),
                    };
                    self.created
                        .retain(|f| !signatures.contains(&f.signature()));
                    self.dropped.extend(signatures);
                }
            }
            _ => {}
        }
    }

    /// Replaces every call of a function in `statement` by its body.
    pub fn inline(&self, statement: &mut Statement) -> Result<()> {
        if matches!(
            statement,
            Statement::CreateFunction(_) | Statement::DropFunction(_)
        ) {
            return Ok(());
        }
        let mut inliner = Inliner {
            functions: self,
            nesting: 0,
        };
        match statement.visit(&mut inliner) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(e) => Err(e),
        }
    }
}

struct Inliner<'a> {
    functions: &'a Scope<'a>,
    nesting: usize,
}

impl VisitorMut for Inliner<'_> {
    type Break = Error;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<Error> {
        // A select item that is a call keeps the function's name as its column's, as in
        // PostgreSQL, when the call becomes the body.
        if let SetExpr::Select(select) = query.body.as_mut() {
            for item in select.projection.iter_mut() {
                if let SelectItem::UnnamedExpr(Expr::Function(function)) = item
                    && table_name(&function.name).is_ok_and(|key| self.functions.has(&key))
                {
                    let alias = function
                        .name
                        .0
                        .last()
                        .and_then(|part| part.as_ident())
                        .map(|ident| Ident::with_quote('"', normalize_ident(ident)));
                    if let Some(alias) = alias {
                        let expr = Expr::Function(function.clone());
                        *item = SelectItem::ExprWithAlias { expr, alias };
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Error> {
        let Expr::Function(function) = expr else {
            return ControlFlow::Continue(());
        };
        match self.scalar_call(function) {
            Ok(Some(body)) => {
                *expr = body;
                ControlFlow::Continue(())
            }
            Ok(None) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }

    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Error> {
        let (lateral, name, args, alias, with_ordinality) = match factor {
            TableFactor::Table {
                name,
                args: Some(args),
                alias,
                with_ordinality,
                ..
            } => (false, &*name, &args.args, alias, *with_ordinality),
            TableFactor::Function {
                lateral,
                name,
                args,
                alias,
                with_ordinality,
            } => (*lateral, &*name, &*args, alias, *with_ordinality),
            _ => return ControlFlow::Continue(()),
        };
        match self.table_call(name, args, alias.take(), lateral, with_ordinality) {
            Ok(Ok(derived)) => {
                *factor = derived;
                ControlFlow::Continue(())
            }
            Ok(Err(kept)) => {
                if let TableFactor::Table { alias, .. } | TableFactor::Function { alias, .. } =
                    factor
                {
                    *alias = kept;
                }
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    }
}

impl Inliner<'_> {
    /// The body of `function` in its place, if it calls a SQL function.
    fn scalar_call(&self, function: &Function) -> Result<Option<Expr>> {
        if function.over.is_some() || function.filter.is_some() || !function.within_group.is_empty()
        {
            return Ok(None);
        }
        let FunctionArguments::List(list) = &function.args else {
            return Ok(None);
        };
        if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
            return Ok(None);
        }
        let Some((def, args)) = self.resolve(&function.name, &list.args)? else {
            return Ok(None);
        };
        if def.returns_set() {
            return Err(Error::NotSupported(format!(
                "set-returning function {}() outside FROM",
                def.name
            )));
        }
        let result = match &def.body {
            Body::Expr(sql) => self.body_expr(&def, sql, &args)?,
            Body::Query(sql) => {
                let mut query = self.body_query(&def, sql, &args)?;
                match single_expression(&query) {
                    Some(expr) => expr,
                    None => {
                        // The first row, as PostgreSQL returns it.
                        if query.limit_clause.is_none() && query.fetch.is_none() {
                            query = with_limit_one(query)?;
                        }
                        Expr::Subquery(query)
                    }
                }
            }
        };
        let Returns::Scalar(returns) = &def.returns else {
            return Err(Error::Internal("scalar function returns a set".into()));
        };
        let result = cast_result(result, returns)?;
        Ok(Some(Expr::Nested(Box::new(strict(&def, &args, result)))))
    }

    /// A derived table in place of a call of a SQL function in FROM; the alias back when the
    /// call is of another function.
    fn table_call(
        &self,
        name: &ObjectName,
        args: &[FunctionArg],
        alias: Option<TableAlias>,
        lateral: bool,
        with_ordinality: bool,
    ) -> Result<std::result::Result<TableFactor, Option<TableAlias>>> {
        let Some((def, args)) = self.resolve(name, args)? else {
            return Ok(Err(alias));
        };
        if with_ordinality {
            return Err(Error::NotSupported(format!(
                "WITH ORDINALITY on SQL function {}()",
                def.name
            )));
        }
        let short = def.name.rsplit('.').next().unwrap_or(&def.name).to_string();
        let alias_name = alias
            .as_ref()
            .map(|a| a.name.clone())
            .unwrap_or_else(|| Ident::new(short.clone()));
        // The columns the function declares: (name, type).
        let columns: Vec<(String, String)> = match &def.returns {
            Returns::Table(columns) => columns.clone(),
            Returns::SetOf(ty) | Returns::Scalar(ty) => {
                vec![(alias_name.value.clone(), ty.clone())]
            }
        };
        let body = match &def.body {
            Body::Query(sql) => {
                let mut query = self.body_query(&def, sql, &args)?;
                if !def.returns_set() && query.limit_clause.is_none() && query.fetch.is_none() {
                    query = with_limit_one(query)?;
                }
                query.to_string()
            }
            Body::Expr(sql) => format!("SELECT {}", self.body_expr(&def, sql, &args)?),
        };
        let inner: Vec<String> = (1..=columns.len()).map(|i| format!("c{i}")).collect();
        let outer: Vec<String> = columns
            .iter()
            .zip(&inner)
            .map(|((name, ty), c)| {
                let value = format!("__f.{c}");
                let value = if polymorphic(ty) {
                    value
                } else {
                    format!("CAST({value} AS {ty})")
                };
                format!("{value} AS {}", Ident::with_quote('"', name))
            })
            .collect();
        let sql = format!(
            "SELECT {} FROM ({body}) AS __f({})",
            outer.join(", "),
            inner.join(", ")
        );
        let subquery = parse_query(&sql, &def)?;
        let mut alias = alias.unwrap_or(TableAlias {
            explicit: true,
            name: alias_name,
            columns: vec![],
            at: None,
        });
        if alias.columns.is_empty() && !matches!(def.returns, Returns::Table(_)) {
            // A function of one column names it after the alias, as PostgreSQL does.
            alias.columns = vec![TableAliasColumnDef {
                name: alias.name.clone(),
                data_type: None,
            }];
        }
        Ok(Ok(TableFactor::Derived {
            lateral,
            subquery,
            alias: Some(alias),
            sample: None,
        }))
    }

    /// The SQL function `name` and `args` call, with the arguments in parameter order
    /// (defaults filled in); `None` when no SQL function of that name takes them.
    fn resolve(
        &self,
        name: &ObjectName,
        args: &[FunctionArg],
    ) -> Result<Option<(std::sync::Arc<FunctionDef>, Vec<Expr>)>> {
        let Ok(key) = table_name(name) else {
            return Ok(None);
        };
        let candidates = self.functions.named(&key);
        if candidates.is_empty() {
            return Ok(None);
        }
        let mut positional = Vec::new();
        let mut named = Vec::new();
        for arg in args {
            match arg {
                // `name := value`, which sqlparser reads as an assignment.
                FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Assignment,
                    right,
                })) if matches!(left.as_ref(), Expr::Identifier(_)) => {
                    if let Expr::Identifier(name) = left.as_ref() {
                        named.push((normalize_ident(name), right.as_ref().clone()));
                    }
                }
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) if named.is_empty() => {
                    positional.push(e.clone())
                }
                FunctionArg::Named {
                    name,
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } => named.push((normalize_ident(name), e.clone())),
                FunctionArg::ExprNamed {
                    name: Expr::Identifier(name),
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } => named.push((normalize_ident(name), e.clone())),
                _ => return Ok(None),
            }
        }
        let mut matches: Vec<(std::sync::Arc<FunctionDef>, Vec<Expr>)> = candidates
            .into_iter()
            .filter_map(|def| {
                let bound = bind(&def, &positional, &named)?;
                Some((def, bound))
            })
            .collect();
        if matches.len() > 1 {
            // Literal arguments tell overloads apart: a number is not text, text not a number.
            matches.retain(|(def, _)| literals_fit(def, &positional));
        }
        if matches.len() > 1 {
            // A quoted literal is of unknown type, which PostgreSQL resolves to text first.
            let texts: Vec<_> = matches
                .iter()
                .filter(|(def, _)| quoted_literals_text(def, &positional))
                .cloned()
                .collect();
            if texts.len() == 1 {
                matches = texts;
            }
        }
        match matches.len() {
            0 => Ok(None),
            1 => Ok(matches.pop()),
            _ => Err(Error::coded(
                "42725",
                format!("function {key} is not unique"),
            )),
        }
    }

    /// An expression body with the arguments in place.
    fn body_expr(&self, def: &FunctionDef, sql: &str, args: &[Expr]) -> Result<Expr> {
        let mut expr = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_expr())
            .map_err(|e| body_error(def, e))?;
        self.nested(def, &mut expr)?;
        substitute(def, args, &mut expr);
        Ok(expr)
    }

    /// A query body with the arguments in place.
    fn body_query(&self, def: &FunctionDef, sql: &str, args: &[Expr]) -> Result<Box<Query>> {
        let mut query = parse_query(sql, def)?;
        self.nested(def, &mut *query)?;
        substitute(def, args, &mut *query);
        Ok(query)
    }

    /// Inlines the SQL functions a body calls.
    fn nested<T: VisitMut>(&self, def: &FunctionDef, body: &mut T) -> Result<()> {
        if self.nesting >= MAX_NESTING {
            return Err(Error::coded(
                "54001",
                format!(
                    "stack depth limit exceeded: SQL function \"{}\" calls SQL functions more than {MAX_NESTING} levels deep",
                    def.name
                ),
            ));
        }
        let mut inner = Inliner {
            functions: self.functions,
            nesting: self.nesting + 1,
        };
        match body.visit(&mut inner) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(e) => Err(e),
        }
    }
}

/// The arguments of a call of `def` in parameter order, or `None` when the call does not fit.
fn bind(def: &FunctionDef, positional: &[Expr], named: &[(String, Expr)]) -> Option<Vec<Expr>> {
    if positional.len() + named.len() > def.args.len() {
        return None;
    }
    let mut bound: Vec<Option<Expr>> = positional.iter().cloned().map(Some).collect();
    bound.resize(def.args.len(), None);
    for (name, value) in named {
        let at = def
            .args
            .iter()
            .position(|a| a.name.as_deref() == Some(name.as_str()))?;
        if bound[at].is_some() {
            return None;
        }
        bound[at] = Some(value.clone());
    }
    bound
        .into_iter()
        .zip(&def.args)
        .map(|(value, arg)| match value {
            Some(value) => Some(value),
            None => arg.default.as_deref().and_then(|sql| {
                Parser::new(&PostgreSqlDialect {})
                    .try_with_sql(sql)
                    .and_then(|mut p| p.parse_expr())
                    .ok()
            }),
        })
        .collect()
}

/// Whether the literal arguments have the kind of the parameters' types.
fn literals_fit(def: &FunctionDef, args: &[Expr]) -> bool {
    args.iter().zip(&def.args).all(|(arg, param)| {
        let numeric = is_numeric_type(&param.data_type);
        match arg {
            Expr::Value(ValueWithSpan {
                value: Value::Number(..),
                ..
            }) => numeric || polymorphic(&param.data_type),
            Expr::Value(ValueWithSpan {
                value: Value::Boolean(_),
                ..
            }) => param.data_type == "boolean" || polymorphic(&param.data_type),
            _ => true,
        }
    })
}

/// Whether the parameters that quoted literals are passed to are of type text.
fn quoted_literals_text(def: &FunctionDef, args: &[Expr]) -> bool {
    args.iter().zip(&def.args).all(|(arg, param)| {
        !matches!(
            arg,
            Expr::Value(ValueWithSpan {
                value: Value::SingleQuotedString(_),
                ..
            })
        ) || param.data_type == "text"
    })
}

fn is_numeric_type(ty: &str) -> bool {
    matches!(
        ty,
        "smallint" | "integer" | "bigint" | "real" | "double precision" | "numeric"
    )
}

fn is_integer_type(ty: &str) -> bool {
    matches!(ty, "smallint" | "integer" | "bigint")
}

/// Whether `ty` is one of PostgreSQL's polymorphic types, which take any argument as it is.
pub fn polymorphic(ty: &str) -> bool {
    matches!(
        ty,
        "anyelement"
            | "anyarray"
            | "anynonarray"
            | "anycompatible"
            | "anycompatiblearray"
            | "anycompatiblenonarray"
            | "\"any\""
            | "any"
    )
}

/// `arg` as a value of parameter type `ty`.
fn cast_arg(arg: Expr, ty: &str) -> Expr {
    let integer_literal = matches!(
        &arg,
        Expr::Value(ValueWithSpan { value: Value::Number(n, _), .. })
            if !n.contains(['.', 'e', 'E'])
    );
    if polymorphic(ty) || (integer_literal && is_integer_type(ty)) {
        return nested(arg);
    }
    match parse_type(ty) {
        Some(data_type) => Expr::Cast {
            kind: CastKind::Cast,
            expr: Box::new(nested(arg)),
            data_type,
            array: false,
            format: None,
        },
        None => nested(arg),
    }
}

fn cast_result(result: Expr, ty: &str) -> Result<Expr> {
    if polymorphic(ty) {
        return Ok(nested(result));
    }
    let data_type = parse_type(ty)
        .ok_or_else(|| Error::Internal(format!("stored function type {ty} does not parse")))?;
    Ok(Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(nested(result)),
        data_type,
        array: false,
        format: None,
    })
}

fn nested(expr: Expr) -> Expr {
    match expr {
        e @ (Expr::Identifier(_)
        | Expr::CompoundIdentifier(_)
        | Expr::Value(_)
        | Expr::Nested(_)
        | Expr::Function(_)
        | Expr::Cast { .. }) => e,
        e => Expr::Nested(Box::new(e)),
    }
}

fn parse_type(ty: &str) -> Option<DataType> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(ty)
        .and_then(|mut p| p.parse_data_type())
        .ok()
}

/// `result`, or NULL when a STRICT function gets a NULL argument.
fn strict(def: &FunctionDef, args: &[Expr], result: Expr) -> Expr {
    if !def.strict {
        return result;
    }
    let is_null_literal = |e: &Expr| {
        matches!(
            e,
            Expr::Value(ValueWithSpan {
                value: Value::Null,
                ..
            })
        )
    };
    let literal = |e: &Expr| matches!(e, Expr::Value(_));
    let Returns::Scalar(ty) = &def.returns else {
        return result;
    };
    let null = || {
        cast_result(Expr::Value(ValueWithSpan::from(Value::Null)), ty.as_str())
            .unwrap_or(Expr::Value(Value::Null.into()))
    };
    if args.iter().any(is_null_literal) {
        return null();
    }
    let condition = args
        .iter()
        .filter(|a| !literal(a))
        .map(|a| Expr::IsNull(Box::new(nested(a.clone()))))
        .reduce(|a, b| Expr::BinaryOp {
            left: Box::new(a),
            op: BinaryOperator::Or,
            right: Box::new(b),
        });
    match condition {
        None => result,
        Some(condition) => Expr::Case {
            case_token: AttachedToken::empty(),
            end_token: AttachedToken::empty(),
            operand: None,
            conditions: vec![CaseWhen {
                condition,
                result: null(),
            }],
            else_result: Some(Box::new(result)),
        },
    }
}

/// Puts the arguments in place of `def`'s parameters in `body`.
fn substitute<T: VisitMut>(def: &FunctionDef, args: &[Expr], body: &mut T) {
    struct Params<'a> {
        def: &'a FunctionDef,
        args: Vec<Expr>,
        short: &'a str,
    }
    impl Params<'_> {
        fn by_name(&self, name: &Ident) -> Option<Expr> {
            let name = normalize_ident(name);
            let at = self
                .def
                .args
                .iter()
                .position(|a| a.name.as_deref() == Some(name.as_str()))?;
            Some(self.args[at].clone())
        }
    }
    impl VisitorMut for Params<'_> {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            let value = match &*expr {
                Expr::Value(ValueWithSpan {
                    value: Value::Placeholder(p),
                    ..
                }) => p
                    .strip_prefix('$')
                    .and_then(|n| n.parse::<usize>().ok())
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|n| self.args.get(n).cloned()),
                Expr::Identifier(ident) => self.by_name(ident),
                Expr::CompoundIdentifier(parts)
                    if parts.len() == 2 && normalize_ident(&parts[0]) == self.short =>
                {
                    self.by_name(&parts[1])
                }
                _ => None,
            };
            if let Some(value) = value {
                *expr = value;
            }
            ControlFlow::Continue(())
        }
    }
    let args = args
        .iter()
        .zip(&def.args)
        .map(|(arg, param)| cast_arg(arg.clone(), &param.data_type))
        .collect();
    let short = def.name.rsplit('.').next().unwrap_or(&def.name);
    let _ = body.visit(&mut Params { def, args, short });
}

/// The expression of a body that is only `SELECT expr`.
fn single_expression(query: &Query) -> Option<Expr> {
    if query.with.is_some()
        || query.order_by.is_some()
        || query.limit_clause.is_some()
        || query.fetch.is_some()
    {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    if !select.from.is_empty()
        || select.selection.is_some()
        || select.having.is_some()
        || select.distinct.is_some()
        || select.projection.len() != 1
        || !matches!(
            &select.group_by,
            datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty()
        )
    {
        return None;
    }
    match &select.projection[0] {
        datafusion::sql::sqlparser::ast::SelectItem::UnnamedExpr(e)
        | datafusion::sql::sqlparser::ast::SelectItem::ExprWithAlias { expr: e, .. } => {
            Some(e.clone())
        }
        _ => None,
    }
}

fn with_limit_one(query: Box<Query>) -> Result<Box<Query>> {
    let sql = format!("SELECT * FROM ({query}) AS __first LIMIT 1");
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_query())
        .map_err(|e| Error::Internal(format!("SQL function body: {e}")))
}

/// The one query `sql` holds, for the body of `def`.
fn parse_query(sql: &str, def: &FunctionDef) -> Result<Box<Query>> {
    let mut statements = super::parse_raw(sql).map_err(|e| body_error(def, e))?;
    match (statements.pop(), statements.is_empty()) {
        (Some(Statement::Query(query)), true) => Ok(query),
        _ => Err(Error::NotSupported(format!(
            "SQL function \"{}\": a body other than one query",
            def.name
        ))),
    }
}

fn body_error(def: &FunctionDef, e: impl std::fmt::Display) -> Error {
    Error::Syntax(format!("SQL function \"{}\": {e}", def.name))
}

/// The signature `DROP FUNCTION name(args)` names: the types of the arguments other than
/// `OUT` ones.
pub fn listed_signature(name: &str, args: &[OperateFunctionArg]) -> Result<String> {
    let types = args
        .iter()
        .filter(|a| !matches!(a.mode, Some(ArgMode::Out)))
        .map(|a| canonical_type(&a.data_type))
        .collect::<Result<Vec<_>>>()?;
    Ok(signature(name, &types))
}

/// The definition `create` gives, checked.
pub fn function_def(create: &CreateFunction) -> Result<FunctionDef> {
    let name = table_name(&create.name)?;
    if create.temporary || name.starts_with("pg_temp") {
        return Err(Error::NotSupported("temporary functions".into()));
    }
    let language = match &create.language {
        Some(language) => normalize_ident(language),
        None if matches!(create.function_body, Some(CreateFunctionBody::Return(_))) => {
            "sql".to_string()
        }
        None => return Err(Error::coded("42P13", "no language specified".to_string())),
    };
    let args = create
        .args
        .iter()
        .flatten()
        .map(function_arg)
        .collect::<Result<Vec<_>>>()?;
    let returns = match &create.return_type {
        None => {
            return Err(Error::coded(
                "42P13",
                "function result type must be specified".to_string(),
            ));
        }
        Some(FunctionReturnType::DataType(DataType::Table(Some(columns)))) => Returns::Table(
            columns
                .iter()
                .map(|c| Ok((normalize_ident(&c.name), result_type(&c.data_type)?)))
                .collect::<Result<Vec<_>>>()?,
        ),
        Some(FunctionReturnType::DataType(data_type)) => Returns::Scalar(result_type(data_type)?),
        Some(FunctionReturnType::SetOf(data_type)) => Returns::SetOf(result_type(data_type)?),
    };
    let text = |body: &Expr| match body {
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(s),
            ..
        }) => Some(s.clone()),
        Expr::Value(ValueWithSpan {
            value: Value::DollarQuotedString(s),
            ..
        }) => Some(s.value.clone()),
        _ => None,
    };
    let body = match (&create.function_body, language.as_str()) {
        (Some(CreateFunctionBody::Return(expr)), "sql") => Body::Expr(expr.to_string()),
        (
            Some(CreateFunctionBody::AsBeforeOptions {
                body,
                link_symbol: None,
            }),
            "sql",
        ) => {
            let sql = text(body).ok_or_else(|| {
                Error::Syntax("syntax error: the body of a SQL function is a string".into())
            })?;
            check_query_body(&name, &sql)?;
            Body::Query(sql)
        }
        (
            Some(CreateFunctionBody::AsBeforeOptions {
                body,
                link_symbol: None,
            }),
            "plpgsql",
        ) => {
            let expr = text(body).and_then(|b| plpgsql_return(&b)).ok_or_else(|| {
                Error::NotSupported(
                    "PL/pgSQL functions other than BEGIN RETURN expression; END".into(),
                )
            })?;
            Body::Expr(expr)
        }
        (None, _) => {
            return Err(Error::coded(
                "42P13",
                "no function body specified".to_string(),
            ));
        }
        (_, "sql" | "plpgsql") => {
            return Err(Error::Syntax(
                "syntax error: unexpected form of function body".into(),
            ));
        }
        (_, other) => {
            return Err(Error::coded(
                "0A000",
                format!(
                    "LANGUAGE {other} is not supported: Augur runs functions written in SQL (LANGUAGE sql)"
                ),
            ));
        }
    };
    if matches!(body, Body::Expr(_)) && !matches!(returns, Returns::Scalar(_)) {
        return Err(Error::coded(
            "42P13",
            "a function returning a set needs a query as its body".to_string(),
        ));
    }
    Ok(FunctionDef {
        name,
        args,
        returns,
        body,
        strict: matches!(
            create.called_on_null,
            Some(FunctionCalledOnNull::Strict | FunctionCalledOnNull::ReturnsNullOnNullInput)
        ),
        volatility: create
            .behavior
            .as_ref()
            .map_or("volatile".to_string(), |b| b.to_string().to_lowercase()),
        language,
    })
}

fn function_arg(arg: &OperateFunctionArg) -> Result<function::FunctionArg> {
    if let Some(mode @ (ArgMode::Out | ArgMode::InOut | ArgMode::Variadic)) = &arg.mode {
        return Err(Error::NotSupported(format!("{mode} parameters")));
    }
    Ok(function::FunctionArg {
        name: arg.name.as_ref().map(normalize_ident),
        data_type: canonical_type(&arg.data_type)?,
        default: arg.default_expr.as_ref().map(|e| e.to_string()),
    })
}

/// The name of `data_type` as a function's signature shows it: PostgreSQL's name, without a
/// type modifier.
pub fn canonical_type(data_type: &DataType) -> Result<String> {
    let text = data_type.to_string().to_ascii_lowercase();
    if polymorphic(&text) {
        return Ok(text);
    }
    if let Some(name) = crate::common::types::text_type(data_type) {
        return Ok(name.to_string());
    }
    let arrow = crate::common::types::arrow_type(data_type)
        .map_err(|_| Error::NotSupported(format!("functions taking or returning type {text}")))?;
    let name = crate::common::types::pg_type_name(&arrow);
    Ok(match name.split_once('(') {
        Some((base, _)) => base.to_string(),
        None => name,
    })
}

/// The type of a function's result as declared, type modifier included (`numeric(10,2)`
/// gives its values that scale), once Augur knows the type.
fn result_type(data_type: &DataType) -> Result<String> {
    let canonical = canonical_type(data_type)?;
    if polymorphic(&canonical) {
        Ok(canonical)
    } else {
        Ok(data_type.to_string())
    }
}

/// Refuses a SQL function body that is not one query.
fn check_query_body(name: &str, sql: &str) -> Result<()> {
    let statements = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| Error::Syntax(format!("SQL function \"{name}\": {e}")))?;
    match statements.as_slice() {
        [datafusion::sql::sqlparser::ast::Statement::Query(_)] => Ok(()),
        [] => Err(Error::coded(
            "42P13",
            format!("SQL function \"{name}\" has an empty body"),
        )),
        _ => Err(Error::NotSupported(format!(
            "SQL function \"{name}\": a body other than one query"
        ))),
    }
}

/// The expression of a PL/pgSQL body that is only `BEGIN RETURN expression; END`.
fn plpgsql_return(body: &str) -> Option<String> {
    let mut parser = Parser::new(&PostgreSqlDialect {}).try_with_sql(body).ok()?;
    let word = |parser: &mut Parser, expected: &str| match parser.next_token().token {
        Token::Word(w) if w.value.eq_ignore_ascii_case(expected) => Some(()),
        _ => None,
    };
    word(&mut parser, "begin")?;
    word(&mut parser, "return")?;
    let expr = parser.parse_expr().ok()?;
    if !parser.consume_token(&Token::SemiColon) {
        return None;
    }
    word(&mut parser, "end")?;
    let _ = parser.consume_token(&Token::SemiColon);
    (parser.peek_token().token == Token::EOF).then(|| expr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plpgsql_bodies_that_only_return_are_expressions() {
        assert_eq!(
            plpgsql_return("begin return $1; end").as_deref(),
            Some("$1")
        );
        assert_eq!(
            plpgsql_return(" BEGIN RETURN i + 1; END; ").as_deref(),
            Some("i + 1")
        );
        assert_eq!(plpgsql_return("begin x := 1; return x; end"), None);
        assert_eq!(plpgsql_return("declare x int; begin return x; end"), None);
        assert_eq!(plpgsql_return("begin return 1; return 2; end"), None);
    }
}
