//! SQL text to statements: parsing, names, types, and the planning of CREATE TABLE.
//!
//! Standard SQL is parsed by sqlparser (the version DataFusion re-exports) through
//! `datafusion-pg-catalog`'s PostgreSQL compatibility parser, which rewrites what clients such as
//! psql, DBeaver and Metabase send into SQL DataFusion can plan.

pub mod balance;
pub mod checked;
pub mod ddl;
pub mod depth;
pub mod functions;
pub mod interval;
pub mod names;
pub mod operators;
pub mod pg_exprs;
pub mod recursive;
pub mod rewrite;
pub mod search_cycle;
pub mod sequence_options;
pub mod shared_ctes;
pub mod unicode_escapes;
pub mod using;
pub mod windows;

use datafusion::sql::sqlparser::ast::helpers::stmt_create_table::CreateTableBuilder;
use datafusion::sql::sqlparser::ast::{CreateTable, Ident, ObjectName, ObjectNamePart, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_pg_catalog::sql::rules::{self, SqlStatementRewriteRule};

use crate::common::names::CATALOG_NAME;
use crate::error::{Error, Result};
use crate::table::watermark::WatermarkDef;

/// A statement Augur runs: standard SQL, or one of Augur's own statements, which sqlparser does
/// not know.
#[derive(Debug, Clone)]
pub enum Stmt {
    /// Standard SQL.
    Sql(Box<Statement>),
    /// `FLUSH`: wait until everything written before is visible in every view.
    Flush,
    /// `CREATE SOURCE`.
    CreateSource(CreateSource),
    /// `DROP SOURCE [IF EXISTS] name, ... [CASCADE]`.
    DropSource {
        /// Sources to drop.
        names: Vec<String>,
        /// IF EXISTS.
        if_exists: bool,
        /// CASCADE: drop the views that read them too.
        cascade: bool,
    },
    /// `SHOW SOURCES`.
    ShowSources,
    /// `CREATE SINK`.
    CreateSink(CreateSink),
    /// `DROP SINK [IF EXISTS] name, ...`.
    DropSink {
        /// Sinks to drop.
        names: Vec<String>,
        /// IF EXISTS.
        if_exists: bool,
    },
    /// `SHOW SINKS`.
    ShowSinks,
    /// `SHOW CREATE SINK name`.
    ShowCreateSink(String),
    /// `CREATE [OR REPLACE] MODEL [IF NOT EXISTS] name FROM 'file.onnx'`.
    CreateModel(CreateModel),
    /// `DROP MODEL [IF EXISTS] name, ... [CASCADE]`.
    DropModel {
        /// Models to drop.
        names: Vec<String>,
        /// IF EXISTS.
        if_exists: bool,
        /// CASCADE: drop the views that use them too.
        cascade: bool,
    },
    /// `SHOW MODELS`.
    ShowModels,
    /// `VACUUM` or `ANALYZE` (`command`) of `tables` (all when empty). Augur's storage compacts
    /// itself and its planner keeps no statistics: the tables are checked and nothing else is
    /// done, so that scripts written for PostgreSQL run.
    Maintenance {
        /// `VACUUM` or `ANALYZE`.
        command: &'static str,
        /// The tables named.
        tables: Vec<String>,
    },
    /// `CREATE TABLE` with Augur's event-time clauses: `WATERMARK FOR column AS expr` among the
    /// columns, `APPEND ONLY` after them.
    CreateTable {
        /// The standard part of the statement.
        create: Box<CreateTable>,
        /// `APPEND ONLY`.
        append_only: bool,
        /// `WATERMARK FOR column AS expr`.
        watermark: Option<WatermarkDef>,
        /// `WITH (connector = ...) FORMAT ... ENCODE ...`: a table fed by a connector.
        connector: Option<crate::table::ConnectorDef>,
    },
    /// `[EXPLAIN] CREATE MATERIALIZED VIEW ... EMIT ON WINDOW CLOSE`: the query's GROUP BY
    /// emits each group once, when the watermark closes it.
    EmitOnWindowClose {
        /// The statement without the clause.
        create: Box<datafusion::sql::sqlparser::ast::CreateView>,
        /// EXPLAIN: show the dataflow, create nothing.
        explain: bool,
    },
}

/// `CREATE [OR REPLACE] MODEL [IF NOT EXISTS] name FROM 'path'`.
#[derive(Debug, Clone)]
pub struct CreateModel {
    /// The model's name.
    pub name: String,
    /// The ONNX file, on the server; relative to its working directory.
    pub path: String,
    /// OR REPLACE: a new version of an existing model.
    pub or_replace: bool,
    /// IF NOT EXISTS.
    pub if_not_exists: bool,
}

/// `CREATE SINK [IF NOT EXISTS] name FROM view WITH (options) FORMAT ... ENCODE ...`.
#[derive(Debug, Clone)]
pub struct CreateSink {
    /// The sink's name.
    pub name: String,
    /// IF NOT EXISTS.
    pub if_not_exists: bool,
    /// What it writes: a materialized view's changes or its own query's.
    pub input: SinkInput,
    /// `WITH (key = 'value', ...)`, keys lower-cased.
    pub options: Vec<(String, String)>,
    /// `FORMAT ... ENCODE ... (options)`.
    pub format: Option<crate::source::FormatDef>,
}

/// What a sink writes.
#[derive(Debug, Clone)]
pub enum SinkInput {
    /// `FROM view`: the changes of a materialized view.
    View(String),
    /// `AS query`: the changes of the query's result, maintained for the sink alone.
    Query(Box<datafusion::sql::sqlparser::ast::Query>),
}

/// `CREATE SOURCE [IF NOT EXISTS] name (columns) WITH (options) [FORMAT ... ENCODE ...]`.
#[derive(Debug, Clone)]
pub struct CreateSource {
    /// The source's name.
    pub name: String,
    /// IF NOT EXISTS.
    pub if_not_exists: bool,
    /// Column definitions as parsed.
    pub columns: Vec<datafusion::sql::sqlparser::ast::ColumnDef>,
    /// `WITH (key = 'value', ...)`, keys lower-cased.
    pub options: Vec<(String, String)>,
    /// `WATERMARK FOR column AS expr`.
    pub watermark: Option<WatermarkDef>,
    /// `INCLUDE part [AS column]`, in order.
    pub includes: Vec<crate::source::IncludeDef>,
    /// `FORMAT ... ENCODE ... (options)`.
    pub format: Option<crate::source::FormatDef>,
}

impl std::fmt::Display for Stmt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stmt::Sql(statement) => write!(f, "{statement}"),
            Stmt::Flush => write!(f, "FLUSH"),
            Stmt::CreateSource(create) => write!(f, "CREATE SOURCE {}", create.name),
            Stmt::DropSource { names, .. } => write!(f, "DROP SOURCE {}", names.join(", ")),
            Stmt::ShowSources => write!(f, "SHOW SOURCES"),
            Stmt::CreateSink(create) => write!(f, "CREATE SINK {}", create.name),
            Stmt::DropSink { names, .. } => write!(f, "DROP SINK {}", names.join(", ")),
            Stmt::ShowSinks => write!(f, "SHOW SINKS"),
            Stmt::ShowCreateSink(name) => write!(f, "SHOW CREATE SINK {name}"),
            Stmt::CreateModel(create) => write!(f, "CREATE MODEL {}", create.name),
            Stmt::DropModel { names, .. } => write!(f, "DROP MODEL {}", names.join(", ")),
            Stmt::ShowModels => write!(f, "SHOW MODELS"),
            Stmt::Maintenance { command, tables } => write!(f, "{command} {}", tables.join(", ")),
            Stmt::CreateTable { create, .. } => write!(f, "{create}"),
            Stmt::EmitOnWindowClose { create, explain } => {
                let explain = if *explain { "EXPLAIN " } else { "" };
                write!(f, "{explain}{create} EMIT ON WINDOW CLOSE")
            }
        }
    }
}

/// Statements longer than this are refused before parsing (`54000`).
pub const MAX_STATEMENT_BYTES: usize = 16 * 1024 * 1024;

/// Parses SQL text into statements.
#[derive(Debug)]
pub struct SqlParser {
    /// For catalog reads.
    compat: PostgresCompatibilityParser,
    /// The compatibility rewrites that keep a statement's meaning, applied to every statement:
    /// `x = ANY(array)`, `'{1,2}'` array literals, `pg_catalog.`-qualified function names,
    /// `current_user`, `COLLATE`.
    exact_rules: Vec<Box<dyn SqlStatementRewriteRule>>,
    /// The functions written in SQL, whose calls are replaced by their bodies.
    functions: Option<std::sync::Arc<crate::catalog::function::Functions>>,
}

impl Default for SqlParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SqlParser {
    /// A parser with PostgreSQL compatibility rewrites.
    pub fn new() -> Self {
        Self {
            compat: PostgresCompatibilityParser::new(),
            exact_rules: vec![
                Box::new(rules::RewriteArrayAnyAllOperation),
                Box::new(rules::FixArrayLiteral),
                Box::new(rules::StripCallableQualifier),
                Box::new(rules::CurrentUserVariableToSessionUserFunctionCall),
                Box::new(rules::StripCollate),
            ],
            functions: None,
        }
    }

    /// This parser, replacing calls of `functions` by their bodies.
    pub fn with_functions(
        mut self,
        functions: std::sync::Arc<crate::catalog::function::Functions>,
    ) -> Self {
        self.functions = Some(functions);
        self
    }

    /// Parses `sql` — standard SQL and Augur's own statements — into statements.
    pub fn parse_stmts(&self, sql: &str) -> Result<Vec<Stmt>> {
        let sql = &*unicode_escapes::rewrite(sql).map_err(|m| Error::coded("42601", m))?;
        match self.parse(sql) {
            Ok(statements) => Ok(statements.into_iter().map(own_statement).collect()),
            // Augur's own statements are syntax errors to sqlparser; text too long or nested
            // too deeply is not one of them.
            Err(error) if error.sqlstate() == "42601" => {
                if let Some(reordered) = sequence_options::in_parser_order(sql) {
                    return self.parse_stmts(&reordered);
                }
                match self.parse_extended(sql) {
                    Some(stmts) => stmts,
                    None => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    /// Parses text that holds Augur's own statements, statement by statement; `None` when it
    /// holds none of them.
    fn parse_extended(&self, sql: &str) -> Option<Result<Vec<Stmt>>> {
        use datafusion::sql::sqlparser::tokenizer::Token;

        let mut parser = Parser::new(&PostgreSqlDialect {}).try_with_sql(sql).ok()?;
        // The tokens once more, to look ahead to the end of a statement in one pass.
        let tokens: Vec<_> =
            datafusion::sql::sqlparser::tokenizer::Tokenizer::new(&PostgreSqlDialect {}, sql)
                .tokenize_with_location()
                .ok()?
                .into_iter()
                .filter(|t| !matches!(t.token, Token::Whitespace(_)))
                .collect();
        let mut stmts = Vec::new();
        let mut own = false;
        loop {
            while parser.consume_token(&Token::SemiColon) {}
            if parser.peek_token() == Token::EOF {
                break;
            }
            let words: Vec<String> = (0..4)
                .map(|n| match parser.peek_nth_token(n).token {
                    Token::Word(w) => w.value.to_ascii_lowercase(),
                    _ => String::new(),
                })
                .collect();
            let word = |n: usize, text: &str| words[n] == text;
            if parser.parse_keyword(Keyword::FLUSH) {
                own = true;
                stmts.push(Stmt::Flush);
            } else if word(0, "create") && word(1, "source") {
                own = true;
                parser.next_token();
                parser.next_token();
                match parse_create_source(&mut parser) {
                    Ok(create) => stmts.push(Stmt::CreateSource(create)),
                    Err(e) => return Some(Err(e)),
                }
            } else if word(0, "drop") && word(1, "source") {
                own = true;
                parser.next_token();
                parser.next_token();
                match parse_drop_names(&mut parser) {
                    Ok((names, if_exists, cascade)) => stmts.push(Stmt::DropSource {
                        names,
                        if_exists,
                        cascade,
                    }),
                    Err(e) => return Some(Err(e)),
                }
            } else if word(0, "create") && word(1, "sink") {
                own = true;
                parser.next_token();
                parser.next_token();
                match parse_create_sink(&mut parser, sql, self) {
                    Ok(create) => stmts.push(Stmt::CreateSink(create)),
                    Err(e) => return Some(Err(e)),
                }
            } else if word(0, "drop") && word(1, "sink") {
                own = true;
                parser.next_token();
                parser.next_token();
                match parse_drop_names(&mut parser) {
                    Ok((_, _, true)) => {
                        return Some(Err(Error::Syntax(
                            "DROP SINK takes no CASCADE: nothing depends on a sink".into(),
                        )));
                    }
                    Ok((names, if_exists, false)) => {
                        stmts.push(Stmt::DropSink { names, if_exists })
                    }
                    Err(e) => return Some(Err(e)),
                }
            } else if word(0, "show") && word(1, "create") && word(2, "sink") {
                own = true;
                for _ in 0..3 {
                    parser.next_token();
                }
                match parser
                    .parse_object_name(false)
                    .map_err(Error::from)
                    .and_then(|name| table_name(&name))
                {
                    Ok(name) => stmts.push(Stmt::ShowCreateSink(name)),
                    Err(e) => return Some(Err(e)),
                }
            } else if word(0, "show") && word(1, "sinks") {
                own = true;
                parser.next_token();
                parser.next_token();
                stmts.push(Stmt::ShowSinks);
            } else if word(0, "show") && word(1, "sources") {
                own = true;
                parser.next_token();
                parser.next_token();
                stmts.push(Stmt::ShowSources);
            } else if word(0, "create")
                && (word(1, "model") || (word(1, "or") && word(2, "replace") && word(3, "model")))
            {
                own = true;
                let or_replace = word(1, "or");
                for _ in 0..if or_replace { 4 } else { 2 } {
                    parser.next_token();
                }
                match parse_create_model(&mut parser, or_replace) {
                    Ok(create) => stmts.push(Stmt::CreateModel(create)),
                    Err(e) => return Some(Err(e)),
                }
            } else if word(0, "drop") && word(1, "model") {
                own = true;
                parser.next_token();
                parser.next_token();
                match parse_drop_names(&mut parser) {
                    Ok((names, if_exists, cascade)) => stmts.push(Stmt::DropModel {
                        names,
                        if_exists,
                        cascade,
                    }),
                    Err(e) => return Some(Err(e)),
                }
            } else if let Some(clause) = emit_on_window_close(&parser, &tokens, sql) {
                own = true;
                // Up to the clause, as a standard statement; then past it.
                let create = self.parse(&sql[clause.statement..clause.clause]);
                while parser.peek_token().span.start != clause.end {
                    parser.next_token();
                }
                parser.next_token();
                let mut statements = match create {
                    Ok(statements) => statements,
                    Err(e) => return Some(Err(e)),
                };
                let statement = match (statements.pop(), statements.is_empty()) {
                    (Some(Statement::Explain { statement, .. }), true) => Some((true, *statement)),
                    (Some(statement), true) => Some((false, statement)),
                    _ => None,
                };
                match statement {
                    Some((explain, Statement::CreateView(create))) if create.materialized => {
                        stmts.push(Stmt::EmitOnWindowClose {
                            create: Box::new(create),
                            explain,
                        });
                    }
                    _ => {
                        return Some(Err(Error::Syntax(
                            "EMIT ON WINDOW CLOSE ends a CREATE MATERIALIZED VIEW".into(),
                        )));
                    }
                }
            } else if word(0, "create") && word(1, "table") && !standard_statement(&mut parser) {
                own = true;
                parser.next_token();
                parser.next_token();
                match parse_create_table(&mut parser) {
                    Ok(stmt) => stmts.push(stmt),
                    Err(e) => return Some(Err(e)),
                }
            } else if let Some(command) =
                ["vacuum", "analyze", "analyse"].iter().find(|w| word(0, w))
            {
                own = true;
                parser.next_token();
                match parse_maintenance(&mut parser) {
                    Ok(tables) => stmts.push(Stmt::Maintenance {
                        command: if *command == "vacuum" {
                            "VACUUM"
                        } else {
                            "ANALYZE"
                        },
                        tables,
                    }),
                    Err(e) => return Some(Err(e)),
                }
            } else if word(0, "show") && word(1, "models") {
                own = true;
                parser.next_token();
                parser.next_token();
                stmts.push(Stmt::ShowModels);
            } else {
                let statement = parser.parse_statement().ok()?;
                // Standard statements go through the usual path, rewrites included.
                let text = statement.to_string();
                match self.parse(&text) {
                    Ok(parsed) => stmts.extend(parsed.into_iter().map(own_statement)),
                    Err(e) => return Some(Err(e)),
                }
            }
            if parser.peek_token() != Token::EOF && !parser.consume_token(&Token::SemiColon) {
                let found = parser.peek_token();
                return Some(Err(Error::Syntax(format!(
                    "syntax error at or near \"{found}\""
                ))));
            }
        }
        own.then_some(Ok(stmts))
    }

    /// Parses `sql`, which may hold several statements separated by `;`. Empty and comment-only
    /// text gives no statements.
    ///
    /// Users' statements are parsed as they are. Text that reads PostgreSQL's catalogs — what
    /// psql, drivers and BI tools send to introspect — goes through `datafusion-pg-catalog`'s
    /// compatibility parser, whose rewrites trade exactness for plans DataFusion can run (a
    /// correlated subquery it cannot plan becomes NULL, for one); they are never applied to
    /// users' own queries.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        if sql.len() > MAX_STATEMENT_BYTES {
            return Err(Error::coded(
                "54000",
                format!(
                    "statement of {} bytes exceeds the limit of {MAX_STATEMENT_BYTES} bytes",
                    sql.len()
                ),
            ));
        }
        let sql = &*unicode_escapes::rewrite(sql).map_err(|m| Error::coded("42601", m))?;
        let plain = parse_raw(sql);
        if let Err(ParserError::RecursionLimitExceeded) = plain {
            return Err(depth::too_deep("the statement"));
        }
        if let Ok(statements) = &plain
            && let Some(e) = statements.iter().find_map(|s| depth::check(s).err())
        {
            plain.into_iter().flatten().for_each(depth::dismantle);
            return Err(e);
        }
        // Calls of functions written in SQL become their bodies, before every other rewrite
        // sees the statement.
        let plain = match (plain, &self.functions) {
            (Ok(mut statements), Some(functions)) => {
                let mut scope = functions::Scope::new(functions);
                for statement in statements.iter_mut() {
                    if scope.any() {
                        scope.inline(statement)?;
                        depth::check(statement)?;
                    }
                    scope.note(statement);
                }
                Ok(statements)
            }
            (plain, _) => plain,
        };
        let mut statements = match plain {
            Ok(statements) if !statements.iter().any(rewrite::reads_catalog) => statements
                .into_iter()
                .map(|mut statement| {
                    recursive::check(&statement)?;
                    shared_ctes::refuse(&statement)?;
                    search_cycle::apply(&mut statement)?;
                    rewrite::fetch_first(&mut statement)?;
                    using::refuse_natural_outer_joins(&statement)?;
                    rewrite::distinct_from_precedence(&mut statement);
                    using::merge_using_columns(&mut statement);
                    rewrite::like_escapes(&mut statement);
                    rewrite::current_role(&mut statement);
                    rewrite::set_returning_select_items(&mut statement);
                    rewrite::name_function_columns(&mut statement);
                    rewrite::count_row_references(&mut statement);
                    rewrite::zero_column_set_operations(&mut statement);
                    rewrite::array_subqueries(&mut statement);
                    pg_exprs::rewrite(&mut statement);
                    balance::balance(&mut statement);
                    let mut statement = self
                        .exact_rules
                        .iter()
                        .fold(statement, |s, rule| rule.rewrite(s));
                    rewrite::inline_outer_aggregates(&mut statement);
                    rewrite::aggregate_scalar_subqueries(&mut statement);
                    rewrite::name_lateral_columns(&mut statement);
                    rewrite::window_clauses(&mut statement);
                    windows::expand(&mut statement)?;
                    Ok(statement)
                })
                .collect::<Result<Vec<_>>>()?,
            // Catalog reads, and what plain sqlparser refuses (`ABORT`, for one).
            _ => {
                let shielded = plain
                    .as_ref()
                    .ok()
                    .and_then(|s| rewrite::shield_correlated_subqueries(s));
                let mut statements = self.compat.parse(shielded.as_deref().unwrap_or(sql))?;
                for statement in statements.iter_mut() {
                    rewrite::unshield_subqueries(statement);
                    rewrite::array_subqueries(statement);
                    rewrite::null_unnest_subqueries(statement);
                    rewrite::null_subqueries_in_case(statement);
                    rewrite::rewrite_generate_subscripts(statement);
                    rewrite::expand_arrays(statement);
                    rewrite::view_definitions(statement);
                    rewrite::like_escapes(statement);
                    rewrite::qualify_own_catalog_relations(statement);
                    rewrite::regproc_as_names(statement);
                    rewrite::aggregate_scalar_subqueries(statement);
                }
                statements
            }
        };
        statements.iter_mut().for_each(names::apply_pg_column_names);
        statements.iter_mut().for_each(pg_exprs::after_naming);
        Ok(statements)
    }
}

/// `sql` as sqlparser parses it, with the PostgreSQL forms it does not take rewritten token by
/// token; none of Augur's rewrites applied.
pub(crate) fn parse_raw(sql: &str) -> std::result::Result<Vec<Statement>, ParserError> {
    let sql = &*unicode_escapes::rewrite(sql).map_err(ParserError::ParserError)?;
    let precise = interval_precision_literals(sql);
    let sql = precise.as_deref().unwrap_or(sql);
    let parser =
        Parser::new(&PostgreSqlDialect {}).with_recursion_limit(depth::PARSER_RECURSION_LIMIT);
    let plain = if sql.len() > depth::MAX_DEPTH {
        // Long enough to nest too deeply: look at the tokens before building a tree.
        let tokens =
            datafusion::sql::sqlparser::tokenizer::Tokenizer::new(&PostgreSqlDialect {}, sql)
                .with_unescape(true)
                .tokenize_with_location();
        match tokens {
            Ok(tokens) if depth::chain_depth(&tokens) > depth::MAX_DEPTH => {
                return Err(ParserError::RecursionLimitExceeded);
            }
            Ok(tokens) => parser.with_tokens_with_locations(tokens).parse_statements(),
            Err(e) => Err(ParserError::from(e)),
        }
    } else {
        parser
            .try_with_sql(sql)
            .and_then(|mut parser| parser.parse_statements())
    };
    // PostgreSQL forms sqlparser does not take, rewritten token by token when the text does
    // not parse as written.
    match plain {
        Err(ParserError::ParserError(message)) => postgresql_token_forms(sql)
            .and_then(|tokens| {
                Parser::new(&PostgreSqlDialect {})
                    .with_recursion_limit(depth::PARSER_RECURSION_LIMIT)
                    .with_tokens_with_locations(tokens)
                    .parse_statements()
                    .ok()
            })
            .ok_or(ParserError::ParserError(message)),
        other => other,
    }
}

/// `sql` with each `interval(p) 'text'` written `'text'::interval(p)`, when it has one:
/// sqlparser reads the first form but drops its precision. Only those words change; the rest
/// of the text is copied as it is.
fn interval_precision_literals(sql: &str) -> Option<String> {
    use datafusion::sql::sqlparser::tokenizer::{Location, Token, Tokenizer};
    if !sql.contains('(') || !sql.to_ascii_lowercase().contains("interval") {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    // Byte offsets of the lines, to find a token's text from its line and column.
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let offset = |at: Location| -> Option<usize> {
        let start = *line_starts.get(usize::try_from(at.line).ok()?.checked_sub(1)?)?;
        let column = usize::try_from(at.column).ok()?.checked_sub(1)?;
        Some(
            sql[start..]
                .char_indices()
                .nth(column)
                .map_or(sql.len(), |(i, _)| start + i),
        )
    };
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    let mut out = String::with_capacity(sql.len() + 16);
    let mut copied = 0;
    for (at, &i) in significant.iter().enumerate() {
        if matches!(&tokens[i].token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("interval"))
            && let Some(&[open, digits, close, literal]) = significant.get(at + 1..at + 5)
            && tokens[open].token == Token::LParen
            && matches!(&tokens[digits].token, Token::Number(n, _) if n.bytes().all(|b| b.is_ascii_digit()))
            && tokens[close].token == Token::RParen
            && matches!(tokens[literal].token, Token::SingleQuotedString(_))
            && let (Some(from), Some(text_from), Some(to)) = (
                offset(tokens[i].span.start),
                offset(tokens[literal].span.start),
                offset(tokens[literal].span.end),
            )
            && copied <= from
            && from <= text_from
            && text_from <= to
        {
            out.push_str(&sql[copied..from]);
            out.push_str(&sql[text_from..to]);
            out.push_str(&format!("::interval({})", tokens[digits].token));
            copied = to;
        }
    }
    (copied > 0).then(|| {
        out.push_str(&sql[copied..]);
        out
    })
}

/// The position of the token that closes the parenthesis or bracket at `open`, and the
/// positions at its top level (inside it, not inside a nested one) of the tokens `mark` picks.
fn enclosed(
    tokens: &[datafusion::sql::sqlparser::tokenizer::TokenWithSpan],
    open: usize,
    mark: impl Fn(&datafusion::sql::sqlparser::tokenizer::Token) -> bool,
) -> Option<(usize, Vec<usize>)> {
    use datafusion::sql::sqlparser::tokenizer::Token;
    let mut depth = 0;
    let mut marked = Vec::new();
    for (j, t) in tokens.iter().enumerate().skip(open) {
        match &t.token {
            Token::LParen | Token::LBracket => depth += 1,
            Token::RParen | Token::RBracket => {
                depth -= 1;
                if depth == 0 {
                    return Some((j, marked));
                }
            }
            other if depth == 1 && mark(other) => marked.push(j),
            _ => {}
        }
    }
    None
}

/// The window functions whose value does not depend on the frame: an `EXCLUDE` clause in their
/// window changes nothing.
const FRAMELESS_WINDOW_FUNCTIONS: &[&str] = &[
    "lag",
    "lead",
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
];

/// The tokens of `sql` with PostgreSQL's forms that sqlparser does not take rewritten into ones it
/// does; None when there are none.
///
/// - `CREATE RECURSIVE VIEW v (cols) AS q`: `CREATE VIEW v AS WITH RECURSIVE v (cols) AS (q)
///   SELECT cols FROM v`.
/// - `JOIN ... USING (k) AS x`: the alias taken out, `x.k` written `k` and `x.*` the columns.
/// - `'1 day'::interval PRECEDING`: sqlparser reads a quoted window frame offset as an interval
///   already, and stops at the cast, which is left out.
/// - `ORDER BY x USING <` (or `>`): `ASC` (or `DESC`).
/// - `FROM t* alias`: the `*` (a table and its inheritance children; Augur's tables have none).
/// - `'a'` and `'b'` separated by whitespace holding a newline: one constant, `'ab'`.
/// - `SUBSTRING(text SIMILAR pattern ESCAPE escape)`: a call of a function of the three.
/// - `f(a, VARIADIC ARRAY[x, y])`: `f(a, x, y)`.
/// - `f(x) OVER (... EXCLUDE mode)`: `augur_exclude_f('mode', x) OVER (...)`; the clause is
///   dropped where `f` does not read its frame (`lag`, `rank`, ...).
fn postgresql_token_forms(
    sql: &str,
) -> Option<Vec<datafusion::sql::sqlparser::tokenizer::TokenWithSpan>> {
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .ok()?;
    let views = recursive::views(&tokens);
    let mut changed = views.is_some();
    let tokens = views.unwrap_or(tokens);
    let aliased = using::join_aliases(&tokens);
    changed |= aliased.is_some();
    let tokens = aliased.unwrap_or(tokens);
    let marked = search_cycle::mark(&tokens);
    changed |= marked.is_some();
    let tokens = marked.unwrap_or(tokens);
    let significant = |t: &Token| !matches!(t, Token::Whitespace(_));
    let word = |t: &Token, w: &str| matches!(t, Token::Word(word) if word.value.eq_ignore_ascii_case(w) && word.quote_style.is_none());
    let next_significant = |from: usize, n: usize| -> Vec<usize> {
        (from..tokens.len())
            .filter(|&j| significant(&tokens[j].token))
            .take(n)
            .collect()
    };
    let keyword = |text: &str, keyword: Keyword| {
        Token::Word(Word {
            value: text.to_string(),
            quote_style: None,
            keyword,
        })
    };
    let mut out: Vec<datafusion::sql::sqlparser::tokenizer::TokenWithSpan> =
        Vec::with_capacity(tokens.len());
    // Tokens left out (an EXCLUDE clause), first and last.
    let mut skipped: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < tokens.len() {
        if let Some((first, last)) = skipped
            && i == first
        {
            i = last + 1;
            skipped = None;
            continue;
        }
        let token = &tokens[i].token;
        if let Token::SingleQuotedString(text) = token {
            let next = next_significant(i + 1, 3);
            if let [cast, ty, bound] = next.as_slice()
                && tokens[*cast].token == Token::DoubleColon
                && word(&tokens[*ty].token, "interval")
                && (word(&tokens[*bound].token, "preceding")
                    || word(&tokens[*bound].token, "following"))
            {
                out.push(tokens[i].clone());
                i = *ty + 1;
                changed = true;
                continue;
            }
            // Constants continued on the next line.
            let mut joined = text.clone();
            let mut j = i + 1;
            loop {
                let mut k = j;
                let mut newline = false;
                while let Some(Token::Whitespace(space)) = tokens.get(k).map(|t| &t.token) {
                    newline |= space.to_string().contains('\n');
                    k += 1;
                }
                match tokens.get(k).map(|t| &t.token) {
                    Some(Token::SingleQuotedString(more)) if newline => {
                        joined.push_str(more);
                        j = k + 1;
                    }
                    _ => break,
                }
            }
            if j > i + 1 {
                let mut merged = tokens[i].clone();
                merged.token = Token::SingleQuotedString(joined);
                out.push(merged);
                i = j;
                changed = true;
                continue;
            }
        }
        // `TABLE name` where a query begins: `SELECT * FROM name`.
        if word(token, "table")
            && let [name] = next_significant(i + 1, 1).as_slice()
            && matches!(tokens[*name].token, Token::Word(_))
            && match out
                .iter()
                .rev()
                .find(|t| significant(&t.token))
                .map(|t| &t.token)
            {
                None | Some(Token::SemiColon | Token::LParen) => true,
                Some(previous) => ["union", "intersect", "except", "all", "distinct"]
                    .iter()
                    .any(|w| word(previous, w)),
            }
        {
            for replacement in [
                keyword("SELECT", Keyword::SELECT),
                Token::Mul,
                keyword("FROM", Keyword::FROM),
            ] {
                let mut t = tokens[i].clone();
                t.token = replacement;
                out.push(t);
                let mut space = tokens[i].clone();
                space.token =
                    Token::Whitespace(datafusion::sql::sqlparser::tokenizer::Whitespace::Space);
                out.push(space);
            }
            i += 1;
            changed = true;
            continue;
        }
        // `TRIM(BOTH | LEADING | TRAILING FROM text)`: spaces are what goes.
        if word(token, "trim")
            && let [open, side, from] = next_significant(i + 1, 3).as_slice()
            && tokens[*open].token == Token::LParen
            && ["both", "leading", "trailing"]
                .iter()
                .any(|w| word(&tokens[*side].token, w))
            && word(&tokens[*from].token, "from")
        {
            out.extend(tokens[i..*from].iter().cloned());
            let mut space = tokens[*from].clone();
            space.token = Token::SingleQuotedString(" ".into());
            out.push(space);
            out.push(tokens[*from].clone());
            i = *from + 1;
            changed = true;
            continue;
        }
        // `name 'text'`: a literal of type name.
        if word(token, "name")
            && let [literal] = next_significant(i + 1, 1).as_slice()
            && matches!(tokens[*literal].token, Token::SingleQuotedString(_))
        {
            out.push(tokens[*literal].clone());
            let mut colons = tokens[i].clone();
            colons.token = Token::DoubleColon;
            out.push(colons);
            out.push(tokens[i].clone());
            i = *literal + 1;
            changed = true;
            continue;
        }
        // `SUBSTRING(text SIMILAR pattern ESCAPE escape)`: a call of the function that reads it.
        if word(token, "substring")
            && let [open] = next_significant(i + 1, 1).as_slice()
            && tokens[*open].token == Token::LParen
        {
            let (close, separators) =
                enclosed(&tokens, *open, |t| word(t, "similar") || word(t, "escape")).unzip();
            let separators = separators.unwrap_or_default();
            if let (Some(close), [similar, escape]) = (close, separators.as_slice())
                && word(&tokens[*similar].token, "similar")
                && word(&tokens[*escape].token, "escape")
            {
                let mut function = tokens[i].clone();
                function.token =
                    Token::make_word(crate::catalog::pg_regexp::SUBSTRING_SIMILAR, None);
                out.push(function);
                for (j, t) in tokens.iter().enumerate().take(close + 1).skip(i + 1) {
                    let mut t = t.clone();
                    if j == *similar || j == *escape {
                        t.token = Token::Comma;
                    }
                    out.push(t);
                }
                i = close + 1;
                changed = true;
                continue;
            }
        }
        // `f(a, VARIADIC ARRAY[x, y])`: the array's elements as the arguments (`f(a, x, y)`),
        // each cast where the array is (`VARIADIC ARRAY[x, y]::text[]`).
        if word(token, "variadic")
            && let [array, open] = next_significant(i + 1, 2).as_slice()
            && word(&tokens[*array].token, "array")
            && tokens[*open].token == Token::LBracket
        {
            let found = enclosed(&tokens, *open, |t| *t == Token::Comma);
            if let Some((close, commas)) = found {
                // The elements: the tokens between the bracket and the commas.
                let bounds: Vec<usize> = std::iter::once(*open)
                    .chain(commas)
                    .chain(std::iter::once(close))
                    .collect();
                let elements: Vec<std::ops::Range<usize>> =
                    bounds.windows(2).map(|w| w[0] + 1..w[1]).collect();
                let after = next_significant(close + 1, 4);
                let cast = match after.as_slice() {
                    [colons, ty, l, r]
                        if tokens[*colons].token == Token::DoubleColon
                            && matches!(tokens[*ty].token, Token::Word(_))
                            && tokens[*l].token == Token::LBracket
                            && tokens[*r].token == Token::RBracket =>
                    {
                        Some((*colons, *ty, *r))
                    }
                    _ => None,
                };
                for (n, element) in elements.iter().enumerate() {
                    if n > 0 {
                        let mut comma = tokens[i].clone();
                        comma.token = Token::Comma;
                        out.push(comma);
                    }
                    out.extend(tokens[element.clone()].iter().cloned());
                    if let Some((colons, ty, _)) = cast {
                        out.push(tokens[colons].clone());
                        out.push(tokens[ty].clone());
                    }
                }
                i = cast.map_or(close, |(_, _, r)| r) + 1;
                changed = true;
                continue;
            }
        }
        // `concat(VARIADIC a)`, `concat_ws(sep, VARIADIC a)` and `format(f, VARIADIC a)` with an
        // array that is not written out: the array's elements as the arguments, by
        // `array_to_string` (which skips NULLs as `concat` does) and a `format` that spreads
        // an array.
        if word(token, "variadic")
            && let Some((name_at, open_at)) = enclosing_call(&out)
            && let Token::Word(name) = &out[name_at].token
            // Where the call ends: its closing parenthesis.
            && let Some(close) = unmatched_bracket(&tokens, i..tokens.len(), true)
        {
            let function = name.value.to_ascii_lowercase();
            let before: Vec<usize> = (open_at + 1..out.len())
                .filter(|&k| significant(&out[k].token))
                .collect();
            let rename = |out: &mut Vec<datafusion::sql::sqlparser::tokenizer::TokenWithSpan>,
                          to: &str| {
                out[name_at].token = Token::make_word(to, None);
            };
            match function.as_str() {
                "concat" if before.is_empty() => {
                    rename(&mut out, crate::catalog::pg_builtins::CONCAT_SPREAD);
                    out.extend(tokens[i + 1..close].iter().cloned());
                    let mut comma = tokens[i].clone();
                    comma.token = Token::Comma;
                    out.push(comma);
                    let mut empty = tokens[i].clone();
                    empty.token = Token::SingleQuotedString(String::new());
                    out.push(empty);
                    i = close;
                    changed = true;
                    continue;
                }
                "concat_ws"
                    if before.last().is_some_and(|&k| out[k].token == Token::Comma)
                        && top_level_commas(&out[open_at + 1..]) == 1 =>
                {
                    let separator: Vec<_> = out.drain(open_at + 1..).collect();
                    let separator = &separator[..separator
                        .iter()
                        .rposition(|t| t.token == Token::Comma)
                        .unwrap_or(0)];
                    rename(&mut out, crate::catalog::pg_builtins::CONCAT_WS_SPREAD);
                    out.extend(tokens[i + 1..close].iter().cloned());
                    let mut comma = tokens[i].clone();
                    comma.token = Token::Comma;
                    out.push(comma);
                    out.extend(separator.iter().cloned());
                    i = close;
                    changed = true;
                    continue;
                }
                "format" if !before.is_empty() => {
                    rename(&mut out, crate::catalog::pg_builtins::FORMAT_SPREAD);
                    i += 1;
                    changed = true;
                    continue;
                }
                _ => {}
            }
        }
        // `f(x) OVER (... EXCLUDE CURRENT ROW | GROUP | TIES | NO OTHERS)`: DataFusion's
        // frames have no exclusion; `augur_exclude_f('mode', x) OVER (...)` computes it (see
        // `catalog::window_exclude`).
        if word(token, "over")
            && let [open] = next_significant(i + 1, 1).as_slice()
            && tokens[*open].token == Token::LParen
        {
            let exclude = enclosed(&tokens, *open, |t| word(t, "exclude"))
                .and_then(|(_, marked)| marked.last().copied());
            let mode = exclude.and_then(|e| {
                let words = next_significant(e + 1, 2);
                let first = words.first()?;
                let second = words.get(1);
                let is = |j: Option<&usize>, w: &str| j.is_some_and(|&j| word(&tokens[j].token, w));
                if is(Some(first), "current") && is(second, "row") {
                    Some(("current row", *second?))
                } else if is(Some(first), "no") && is(second, "others") {
                    Some(("no others", *second?))
                } else if is(Some(first), "group") {
                    Some(("group", *first))
                } else if is(Some(first), "ties") {
                    Some(("ties", *first))
                } else {
                    None
                }
            });
            // The call before OVER: `name ( args )`, the name one of the functions that take
            // an exclusion, or one that does not read its frame (the exclusion has nothing to
            // leave out: `lag`, `rank`, ...), which says `None` for the place of its name.
            let call = || -> Option<(Option<usize>, usize, bool)> {
                let significant_out: Vec<usize> = (0..out.len())
                    .rev()
                    .filter(|&k| significant(&out[k].token))
                    .collect();
                let last = *significant_out.first()?;
                if out[last].token != Token::RParen {
                    return None;
                }
                let mut depth = 0;
                let mut open_at = None;
                for k in (0..=last).rev() {
                    match out[k].token {
                        Token::RParen => depth += 1,
                        Token::LParen => {
                            depth -= 1;
                            if depth == 0 {
                                open_at = Some(k);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let open_at = open_at?;
                let name_at = (0..open_at).rev().find(|&k| significant(&out[k].token))?;
                let Token::Word(name) = &out[name_at].token else {
                    return None;
                };
                let lower = name.value.to_ascii_lowercase();
                if name.quote_style.is_some() {
                    return None;
                }
                let empty = (open_at + 1..last).all(|k| !significant(&out[k].token));
                if crate::catalog::window_exclude::FUNCTIONS.contains(&lower.as_str()) {
                    Some((Some(name_at), open_at, empty))
                } else if FRAMELESS_WINDOW_FUNCTIONS.contains(&lower.as_str()) {
                    Some((None, open_at, empty))
                } else {
                    None
                }
            };
            if let (Some(exclude), Some((_, end))) = (exclude, mode)
                && let Some((None, _, _)) = call()
            {
                skipped = Some((exclude, end));
                out.push(tokens[i].clone());
                i += 1;
                changed = true;
                continue;
            }
            if let (Some(exclude), Some((mode, end))) = (exclude, mode)
                && let Some((Some(name_at), open_at, empty)) = call()
            {
                let Token::Word(name) = &out[name_at].token else {
                    unreachable!("checked by call()")
                };
                let renamed = format!(
                    "{}{}",
                    crate::catalog::window_exclude::PREFIX,
                    name.value.to_ascii_lowercase()
                );
                out[name_at].token = Token::make_word(&renamed, None);
                let mut inserted = vec![Token::SingleQuotedString(mode.to_string())];
                if !empty {
                    inserted.push(Token::Comma);
                }
                for (n, t) in inserted.into_iter().enumerate() {
                    let mut with_span = out[open_at].clone();
                    with_span.token = t;
                    out.insert(open_at + 1 + n, with_span);
                }
                skipped = Some((exclude, end));
                out.push(tokens[i].clone());
                i += 1;
                changed = true;
                continue;
            }
        }
        if word(token, "using") {
            let next = next_significant(i + 1, 1);
            if let [op] = next.as_slice()
                && matches!(tokens[*op].token, Token::Lt | Token::Gt)
            {
                let mut direction = tokens[i].clone();
                direction.token = if tokens[*op].token == Token::Lt {
                    keyword("ASC", Keyword::ASC)
                } else {
                    keyword("DESC", Keyword::DESC)
                };
                out.push(direction);
                i = *op + 1;
                changed = true;
                continue;
            }
        }
        if *token == Token::Mul
            && matches!(
                out.iter()
                    .rev()
                    .find(|t| significant(&t.token))
                    .map(|t| &t.token),
                Some(Token::Word(_))
            )
        {
            // The word before the `*` must follow FROM, JOIN or ONLY.
            let mut before = out.iter().rev().filter(|t| significant(&t.token));
            let _table = before.next();
            if before.next().is_some_and(|t| {
                word(&t.token, "from") || word(&t.token, "join") || word(&t.token, "only")
            }) {
                i += 1;
                changed = true;
                continue;
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    changed |= nest_joins(&mut out);
    changed.then_some(out)
}

/// How many commas `tokens` holds outside parentheses and brackets.
fn top_level_commas(tokens: &[datafusion::sql::sqlparser::tokenizer::TokenWithSpan]) -> usize {
    use datafusion::sql::sqlparser::tokenizer::Token;
    let mut depth = 0i32;
    tokens
        .iter()
        .filter(|t| {
            depth += bracket_step(&t.token);
            t.token == Token::Comma && depth == 0
        })
        .count()
}

/// How much `token` deepens the nesting of parentheses and brackets: 1, -1 or 0.
fn bracket_step(token: &datafusion::sql::sqlparser::tokenizer::Token) -> i32 {
    use datafusion::sql::sqlparser::tokenizer::Token;
    match token {
        Token::LParen | Token::LBracket => 1,
        Token::RParen | Token::RBracket => -1,
        _ => 0,
    }
}

/// The first of `positions` (walked forward or backward through `tokens`) that holds a
/// parenthesis or bracket closing (`forward`) or opening (backward) one the walk did not pass.
/// The tokens of a statement that are not white space, counted by `k`: what the token passes
/// read (`CREATE RECURSIVE VIEW`, `SEARCH`/`CYCLE`, `USING (...) AS x`).
pub(crate) struct Significant<'a> {
    tokens: &'a [datafusion::sql::sqlparser::tokenizer::TokenWithSpan],
    /// The position in `tokens` of each.
    pub at: Vec<usize>,
}

impl<'a> Significant<'a> {
    pub fn new(tokens: &'a [datafusion::sql::sqlparser::tokenizer::TokenWithSpan]) -> Self {
        use datafusion::sql::sqlparser::tokenizer::Token;
        let at = (0..tokens.len())
            .filter(|&j| !matches!(tokens[j].token, Token::Whitespace(_)))
            .collect();
        Self { tokens, at }
    }

    /// The `k`th of them.
    pub fn token(&self, k: usize) -> Option<&'a datafusion::sql::sqlparser::tokenizer::Token> {
        self.at.get(k).map(|&j| &self.tokens[j].token)
    }

    /// The `k`th, if it is a word.
    pub fn word(&self, k: usize) -> Option<&'a datafusion::sql::sqlparser::tokenizer::Word> {
        match self.token(k) {
            Some(datafusion::sql::sqlparser::tokenizer::Token::Word(w)) => Some(w),
            _ => None,
        }
    }

    /// Whether the `k`th is the unquoted word `w` (any case).
    pub fn is(&self, k: usize, w: &str) -> bool {
        self.word(k)
            .is_some_and(|x| x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w))
    }
}

fn unmatched_bracket(
    tokens: &[datafusion::sql::sqlparser::tokenizer::TokenWithSpan],
    positions: impl Iterator<Item = usize>,
    forward: bool,
) -> Option<usize> {
    let mut depth = 0i32;
    let sign = if forward { 1 } else { -1 };
    positions.into_iter().find(|&k| {
        depth += sign * bracket_step(&tokens[k].token);
        depth < 0
    })
}

/// The positions in `out` of the name and the opening parenthesis of the call whose arguments
/// `out` ends inside.
fn enclosing_call(
    out: &[datafusion::sql::sqlparser::tokenizer::TokenWithSpan],
) -> Option<(usize, usize)> {
    use datafusion::sql::sqlparser::tokenizer::Token;
    let open = unmatched_bracket(out, (0..out.len()).rev(), false)?;
    if out[open].token != Token::LParen {
        return None;
    }
    let name = (0..open)
        .rev()
        .find(|&k| !matches!(out[k].token, Token::Whitespace(_)))?;
    matches!(out[name].token, Token::Word(_)).then_some((name, open))
}

/// Puts parentheses around the right side of a join that holds a join of its own written
/// without them: `a LEFT JOIN b JOIN c ON x ON y` is `a LEFT JOIN (b JOIN c ON x) ON y` in
/// PostgreSQL's grammar, which sqlparser does not take. `true` when it changed `tokens`.
fn nest_joins(tokens: &mut Vec<datafusion::sql::sqlparser::tokenizer::TokenWithSpan>) -> bool {
    use datafusion::sql::sqlparser::tokenizer::Token;
    let word = |t: &Token, w: &str| matches!(t, Token::Word(word) if word.value.eq_ignore_ascii_case(w) && word.quote_style.is_none());
    struct Pending {
        depth: usize,
        /// Where the join's right side starts.
        right: usize,
        /// A join inside the right side waits for its ON first.
        nested: bool,
    }
    let mut pending: Vec<Pending> = Vec::new();
    // (position, token) to insert, in any order.
    let mut inserts: Vec<(usize, Token)> = Vec::new();
    let mut depth = 0usize;
    let mut previous_word: Option<String> = None;
    for (i, t) in tokens.iter().enumerate() {
        match &t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                pending.retain(|p| p.depth < depth);
                depth = depth.saturating_sub(1);
            }
            Token::Comma | Token::SemiColon => pending.retain(|p| p.depth != depth),
            tok if word(tok, "join") => {
                let takes_condition = !matches!(previous_word.as_deref(), Some("cross"))
                    && !tokens[..i]
                        .iter()
                        .rev()
                        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
                        .take(3)
                        .any(|t| word(&t.token, "natural"));
                if takes_condition {
                    if let Some(outer) = pending.iter_mut().rev().find(|p| p.depth == depth) {
                        outer.nested = true;
                    }
                    let right = (i + 1..tokens.len())
                        .find(|&j| !matches!(tokens[j].token, Token::Whitespace(_)))
                        .unwrap_or(tokens.len());
                    pending.push(Pending {
                        depth,
                        right,
                        nested: false,
                    });
                }
            }
            tok if word(tok, "on") || word(tok, "using") => {
                if let Some(at) = pending.iter().rposition(|p| p.depth == depth) {
                    let join = pending.remove(at);
                    if join.nested {
                        inserts.push((join.right, Token::LParen));
                        inserts.push((i, Token::RParen));
                    }
                }
            }
            _ => {}
        }
        if let Token::Word(w) = &t.token {
            previous_word = Some(w.value.to_ascii_lowercase());
        }
    }
    if inserts.is_empty() {
        return false;
    }
    // Later positions first, so that earlier ones stay where they are; at one position a
    // closing parenthesis goes before an opening one.
    inserts.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then((a.1 == Token::LParen).cmp(&(b.1 == Token::LParen)))
    });
    for (at, token) in inserts {
        let mut inserted = tokens[at.min(tokens.len() - 1)].clone();
        inserted.token = token;
        tokens.insert(at, inserted);
    }
    true
}

/// Where a statement that ends in `EMIT ON WINDOW CLOSE` lies in the text.
struct WindowCloseClause {
    /// Byte offset of the statement's first token.
    statement: usize,
    /// Byte offset of `EMIT`.
    clause: usize,
    /// Where `CLOSE` starts.
    end: datafusion::sql::sqlparser::tokenizer::Location,
}

/// Finds `EMIT ON WINDOW CLOSE` at the end of the statement at the parser's position; `all` are
/// the text's tokens without whitespace.
fn emit_on_window_close(
    parser: &Parser<'_>,
    all: &[datafusion::sql::sqlparser::tokenizer::TokenWithSpan],
    sql: &str,
) -> Option<WindowCloseClause> {
    use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

    let start = parser.peek_token().span.start;
    let first = all.iter().position(|t| t.span.start == start)?;
    let tokens: Vec<&TokenWithSpan> = all[first..]
        .iter()
        .take_while(|t| !matches!(t.token, Token::EOF | Token::SemiColon))
        .collect();
    let n = tokens.len();
    if n < 5 {
        return None;
    }
    let is = |t: &TokenWithSpan, word: &str| matches!(&t.token, Token::Word(w) if w.value.eq_ignore_ascii_case(word) && w.quote_style.is_none());
    let tail = ["emit", "on", "window", "close"];
    if !tokens[n - 4..].iter().zip(tail).all(|(t, w)| is(t, w)) {
        return None;
    }
    let offset = |location| byte_offset(sql, location);
    Some(WindowCloseClause {
        statement: offset(tokens[0].span.start)?,
        clause: offset(tokens[n - 4].span.start)?,
        end: tokens[n - 1].span.start,
    })
}

/// The byte offset in `sql` of a token's `location` (lines and columns count from 1, columns in
/// characters).
pub(crate) fn byte_offset(
    sql: &str,
    location: datafusion::sql::sqlparser::tokenizer::Location,
) -> Option<usize> {
    let mut line_start = 0;
    for _ in 1..location.line {
        line_start += sql[line_start..].find('\n')? + 1;
    }
    let column = usize::try_from(location.column).ok()?.checked_sub(1)?;
    Some(
        line_start
            + sql[line_start..]
                .char_indices()
                .nth(column)
                .map_or(sql.len() - line_start, |(i, _)| i),
    )
}

/// Augur's statements that sqlparser reads as something else: `SHOW SOURCES` and `SHOW MODELS`
/// parse as showing a setting called `sources` or `models`.
fn own_statement(statement: Statement) -> Stmt {
    match &statement {
        Statement::ShowVariable { variable }
            if variable.len() == 1 && variable[0].value.eq_ignore_ascii_case("sources") =>
        {
            Stmt::ShowSources
        }
        Statement::ShowVariable { variable }
            if variable.len() == 1 && variable[0].value.eq_ignore_ascii_case("models") =>
        {
            Stmt::ShowModels
        }
        Statement::ShowVariable { variable }
            if variable.len() == 1 && variable[0].value.eq_ignore_ascii_case("sinks") =>
        {
            Stmt::ShowSinks
        }
        Statement::Vacuum(vacuum) => maintenance("VACUUM", vacuum.table_name.as_ref()),
        Statement::Analyze(analyze) => maintenance("ANALYZE", analyze.table_name.as_ref()),
        _ => Stmt::Sql(Box::new(statement)),
    }
}

fn maintenance(command: &'static str, table: Option<&ObjectName>) -> Stmt {
    Stmt::Maintenance {
        command,
        tables: table
            .map(|t| table_name(t).unwrap_or_else(|_| t.to_string()))
            .into_iter()
            .collect(),
    }
}

/// The rest of PostgreSQL's `VACUUM` and `ANALYZE` after the command word: options in
/// parentheses or as words (`FULL`, `FREEZE`, `VERBOSE`, `ANALYZE`), then tables, each with an
/// optional column list. Returns the tables' names.
fn parse_maintenance(parser: &mut Parser<'_>) -> Result<Vec<String>> {
    use datafusion::sql::sqlparser::tokenizer::Token;

    if parser.consume_token(&Token::LParen) {
        let mut depth = 1;
        while depth > 0 {
            match parser.next_token().token {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                Token::EOF => return Err(Error::Syntax("syntax error at end of input".into())),
                _ => {}
            }
        }
    }
    while let Token::Word(w) = &parser.peek_token().token {
        let upper = w.value.to_ascii_uppercase();
        if w.quote_style.is_none()
            && matches!(
                upper.as_str(),
                "FULL" | "FREEZE" | "VERBOSE" | "ANALYZE" | "ANALYSE"
            )
        {
            parser.next_token();
        } else {
            break;
        }
    }
    let mut tables = Vec::new();
    if matches!(parser.peek_token().token, Token::EOF | Token::SemiColon) {
        return Ok(tables);
    }
    loop {
        let name = parser
            .parse_object_name(false)
            .map_err(|e| Error::Syntax(e.to_string()))?;
        tables.push(table_name(&name)?);
        if parser.consume_token(&Token::LParen) {
            parser
                .parse_comma_separated(|p| p.parse_identifier())
                .map_err(|e| Error::Syntax(e.to_string()))?;
            parser
                .expect_token(&Token::RParen)
                .map_err(|e| Error::Syntax(e.to_string()))?;
        }
        if !parser.consume_token(&Token::Comma) {
            return Ok(tables);
        }
    }
}

fn parse_create_model(parser: &mut Parser<'_>, or_replace: bool) -> Result<CreateModel> {
    use datafusion::sql::sqlparser::tokenizer::Token;

    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    if or_replace && if_not_exists {
        return Err(Error::Syntax(
            "syntax error: OR REPLACE and IF NOT EXISTS cannot both be given".into(),
        ));
    }
    let name = table_name(&parser.parse_object_name(false)?)?;
    if name.contains('.') {
        return Err(Error::NotSupported(format!(
            "model {name}: models are not kept in schemas; name it without one"
        )));
    }
    parser.expect_keyword(Keyword::FROM)?;
    let path = match parser.next_token().token {
        Token::SingleQuotedString(path) => path,
        other => {
            return Err(Error::Syntax(format!(
                "syntax error at or near \"{other}\": CREATE MODEL {name} FROM takes the model \
                 file's path as a quoted string"
            )));
        }
    };
    Ok(CreateModel {
        name,
        path,
        or_replace,
        if_not_exists,
    })
}

fn parse_create_sink(parser: &mut Parser<'_>, sql: &str, full: &SqlParser) -> Result<CreateSink> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = table_name(&parser.parse_object_name(false)?)?;
    let input = if parser.parse_keyword(Keyword::AS) {
        SinkInput::Query(Box::new(sink_query(parser, sql, full)?))
    } else {
        parser.expect_keyword(Keyword::FROM)?;
        SinkInput::View(table_name(&parser.parse_object_name(false)?)?)
    };
    let options = if parser.parse_keyword(Keyword::WITH) {
        parse_source_options(parser)?
    } else {
        Vec::new()
    };
    let format = parse_format(parser)?;
    Ok(CreateSink {
        name,
        if_not_exists,
        input,
        options,
        format,
    })
}

/// The query of `CREATE SINK name AS query WITH (...)`: the text up to the options' `WITH (`,
/// parsed as any query is. (sqlparser alone would read `FROM t WITH (...)` as table hints.)
fn sink_query(
    parser: &mut Parser<'_>,
    sql: &str,
    full: &SqlParser,
) -> Result<datafusion::sql::sqlparser::ast::Query> {
    use datafusion::sql::sqlparser::tokenizer::Token;

    let offset = |parser: &Parser<'_>| {
        let token = parser.peek_token();
        match token.token {
            Token::EOF => Some(sql.len()),
            _ => byte_offset(sql, token.span.start),
        }
    };
    let start = offset(parser);
    let mut depth = 0usize;
    loop {
        match parser.peek_token().token {
            Token::EOF | Token::SemiColon => break,
            Token::LParen | Token::LBracket => depth += 1,
            Token::RParen | Token::RBracket => depth = depth.saturating_sub(1),
            Token::Word(w)
                if depth == 0
                    && w.keyword == Keyword::WITH
                    && parser.peek_nth_token(1).token == Token::LParen =>
            {
                break;
            }
            _ => {}
        }
        parser.next_token();
    }
    let text = match (start, offset(parser)) {
        (Some(start), Some(end)) if start < end => &sql[start..end],
        _ => {
            return Err(Error::Syntax(
                "CREATE SINK name AS needs a query: AS SELECT ... WITH (connector = ...)".into(),
            ));
        }
    };
    let mut stmts = full.parse_stmts(text)?;
    match (stmts.pop(), stmts.is_empty()) {
        (Some(Stmt::Sql(statement)), true) => match *statement {
            Statement::Query(query) => Ok(*query),
            other => Err(Error::Syntax(format!(
                "CREATE SINK ... AS takes a query, not {}",
                other
                    .to_string()
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            ))),
        },
        _ => Err(Error::Syntax("CREATE SINK ... AS takes one query".into())),
    }
}

fn parse_create_source(parser: &mut Parser<'_>) -> Result<CreateSource> {
    use datafusion::sql::sqlparser::tokenizer::Token;

    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = table_name(&parser.parse_object_name(false)?)?;
    // The column list may be left out where the connector implies the columns.
    let mut columns = Vec::new();
    let mut watermark = None;
    if parser.consume_token(&Token::LParen) {
        loop {
            if is_word(parser, 0, "watermark") {
                set_watermark(&mut watermark, parse_watermark(parser)?)?;
            } else {
                columns.push(parser.parse_column_def()?);
            }
            if !parser.consume_token(&Token::Comma) {
                break;
            }
        }
        parser.expect_token(&Token::RParen)?;
    }
    // INCLUDE partition [AS p], offset [AS o], ...: what a record adds besides its payload.
    let mut includes = Vec::new();
    while is_word(parser, 0, "include") {
        parser.next_token();
        loop {
            let part = match parser.next_token().token {
                Token::Word(w) => w.value.to_lowercase(),
                other => {
                    return Err(Error::Syntax(format!(
                        "syntax error at or near \"{other}\": INCLUDE takes partition, offset, \
                         timestamp or key"
                    )));
                }
            };
            let column = if parser.parse_keyword(Keyword::AS) {
                normalize_ident(&parser.parse_identifier()?)
            } else {
                format!("_rw_kafka_{part}")
            };
            includes.push(crate::source::IncludeDef { part, column });
            if !parser.consume_token(&Token::Comma) {
                break;
            }
        }
    }
    let options = if parser.parse_keyword(Keyword::WITH) {
        parse_source_options(parser)?
    } else {
        Vec::new()
    };
    let format = parse_format(parser)?;
    Ok(CreateSource {
        name,
        if_not_exists,
        columns,
        options,
        watermark,
        includes,
        format,
    })
}

/// `FORMAT PLAIN ENCODE JSON [(options)]`, if it comes next.
fn parse_format(parser: &mut Parser<'_>) -> Result<Option<crate::source::FormatDef>> {
    use datafusion::sql::sqlparser::tokenizer::Token;
    if !is_word(parser, 0, "format") {
        return Ok(None);
    }
    parser.next_token();
    let format = parse_word(parser, "FORMAT")?;
    if !is_word(parser, 0, "encode") {
        return Err(Error::Syntax(format!(
            "FORMAT {} needs ENCODE JSON | CSV after it",
            format.to_uppercase()
        )));
    }
    parser.next_token();
    let encode = parse_word(parser, "ENCODE")?;
    let mut options = std::collections::BTreeMap::new();
    if parser.peek_token().token == Token::LParen {
        for (key, value) in parse_source_options(parser)? {
            if options.insert(key.clone(), value).is_some() {
                return Err(Error::InvalidParameter(format!("option {key} given twice")));
            }
        }
    }
    Ok(Some(crate::source::FormatDef {
        format,
        encode,
        options,
    }))
}

/// A word, lower-cased: what `FORMAT` and `ENCODE` take.
fn parse_word(parser: &mut Parser<'_>, after: &str) -> Result<String> {
    use datafusion::sql::sqlparser::tokenizer::Token;
    match parser.next_token().token {
        Token::Word(w) => Ok(w.value.to_lowercase()),
        other => Err(Error::Syntax(format!(
            "syntax error at or near \"{other}\" after {after}"
        ))),
    }
}

/// `(key = 'value', ...)`, keys dotted words lower-cased: `datagen.rows.per.second`,
/// `properties.bootstrap.server`.
fn parse_source_options(parser: &mut Parser<'_>) -> Result<Vec<(String, String)>> {
    use datafusion::sql::sqlparser::tokenizer::Token;
    let mut options = Vec::new();
    parser.expect_token(&Token::LParen)?;
    loop {
        let mut key = String::new();
        loop {
            match parser.next_token().token {
                Token::Word(w) => key.push_str(&w.value.to_lowercase()),
                Token::Period => key.push('.'),
                Token::Number(n, _) => key.push_str(&n),
                Token::Eq => break,
                other => {
                    return Err(Error::Syntax(format!(
                        "syntax error at or near \"{other}\" in the WITH options"
                    )));
                }
            }
        }
        let value = match parser.next_token().token {
            Token::SingleQuotedString(s) => s,
            Token::Number(n, _) => n,
            Token::Word(w) => w.value,
            other => {
                return Err(Error::Syntax(format!(
                    "syntax error at or near \"{other}\": option {key} needs a value"
                )));
            }
        };
        options.push((key, value));
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    parser.expect_token(&Token::RParen)?;
    Ok(options)
}

/// Whether the `n`-th token ahead is the word `word`.
fn is_word(parser: &Parser<'_>, n: usize, word: &str) -> bool {
    use datafusion::sql::sqlparser::tokenizer::Token;
    matches!(&parser.peek_nth_token(n).token, Token::Word(w) if w.value.eq_ignore_ascii_case(word))
}

/// Whether a standard statement, and nothing more, comes next (the parser does not move).
fn standard_statement(parser: &mut Parser<'_>) -> bool {
    use datafusion::sql::sqlparser::tokenizer::Token;
    let mut alone = false;
    // The probe always fails, so that the parser goes back to where it was.
    let _ = parser.try_parse(|p| -> std::result::Result<(), ParserError> {
        p.parse_statement()?;
        alone = matches!(p.peek_token().token, Token::SemiColon | Token::EOF);
        Err(ParserError::ParserError(String::new()))
    });
    alone
}

/// `WATERMARK FOR column AS expr`.
fn parse_watermark(parser: &mut Parser<'_>) -> Result<WatermarkDef> {
    parser.next_token();
    parser.expect_keyword(Keyword::FOR)?;
    let column = normalize_ident(&parser.parse_identifier()?);
    parser.expect_keyword(Keyword::AS)?;
    let expr = parser.parse_expr()?;
    Ok(WatermarkDef {
        column,
        expr: expr.to_string(),
    })
}

fn set_watermark(slot: &mut Option<WatermarkDef>, watermark: WatermarkDef) -> Result<()> {
    if slot.is_some() {
        return Err(Error::Syntax(
            "syntax error: a relation has at most one WATERMARK".into(),
        ));
    }
    *slot = Some(watermark);
    Ok(())
}

/// `CREATE TABLE [IF NOT EXISTS] name (columns, constraints, WATERMARK FOR column AS expr)
/// [APPEND ONLY]`, after `CREATE TABLE`.
fn parse_create_table(parser: &mut Parser<'_>) -> Result<Stmt> {
    use datafusion::sql::sqlparser::tokenizer::Token;

    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parser.parse_object_name(false)?;
    parser.expect_token(&Token::LParen)?;
    let mut columns = Vec::new();
    let mut constraints = Vec::new();
    let mut watermark = None;
    loop {
        if is_word(parser, 0, "watermark") && is_word(parser, 1, "for") {
            set_watermark(&mut watermark, parse_watermark(parser)?)?;
        } else if let Some(constraint) = parser.parse_optional_table_constraint()? {
            constraints.push(constraint);
        } else {
            columns.push(parser.parse_column_def()?);
        }
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    parser.expect_token(&Token::RParen)?;
    let append_only = is_word(parser, 0, "append");
    if append_only {
        parser.next_token();
        if !is_word(parser, 0, "only") {
            return Err(Error::Syntax(format!(
                "syntax error at or near \"{}\": APPEND ONLY expected",
                parser.peek_token()
            )));
        }
        parser.next_token();
    }
    // WITH (connector = 'kafka', ...) FORMAT ... ENCODE ...: rows from a connector.
    let connector = if parser.parse_keyword(Keyword::WITH) {
        let options: std::collections::BTreeMap<String, String> =
            parse_source_options(parser)?.into_iter().collect();
        if !options.contains_key("connector") {
            return Err(Error::NotSupported(
                "WITH options on CREATE TABLE other than a connector's".into(),
            ));
        }
        let format = parse_format(parser)?.ok_or_else(|| {
            Error::Syntax(
                "a table with a connector needs FORMAT PLAIN | UPSERT | DEBEZIUM ENCODE ... \
                 after its options"
                    .into(),
            )
        })?;
        Some(crate::table::ConnectorDef {
            options,
            format: format.format,
            encode: format.encode,
            encode_options: format.options,
        })
    } else {
        None
    };
    let create = CreateTableBuilder::new(name)
        .if_not_exists(if_not_exists)
        .columns(columns)
        .constraints(constraints)
        .build();
    Ok(Stmt::CreateTable {
        create: Box::new(create),
        append_only,
        watermark,
        connector,
    })
}

/// `[IF EXISTS] name, ... [CASCADE | RESTRICT]` of a DROP.
fn parse_drop_names(parser: &mut Parser<'_>) -> Result<(Vec<String>, bool, bool)> {
    use datafusion::sql::sqlparser::tokenizer::Token;

    let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let mut names = vec![table_name(&parser.parse_object_name(false)?)?];
    while parser.consume_token(&Token::Comma) {
        names.push(table_name(&parser.parse_object_name(false)?)?);
    }
    let cascade = parser.parse_keyword(Keyword::CASCADE);
    if !cascade {
        let _ = parser.parse_keyword(Keyword::RESTRICT);
    }
    Ok((names, if_exists, cascade))
}

/// An identifier as PostgreSQL resolves it: unquoted names fold to lower case.
pub fn normalize_ident(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// The catalog key of relation `name` (see [`crate::catalog::schema`]): the name in `public`,
/// `schema.name` in another schema; `augur.` may qualify either.
pub fn table_name(name: &ObjectName) -> Result<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => Ok(normalize_ident(ident)),
            ObjectNamePart::Function(_) => Err(Error::Syntax(format!(
                "syntax error: {name} is not a table name"
            ))),
        })
        .collect::<Result<_>>()?;
    if let Some(dotted) = parts.iter().find(|p| p.contains('.')) {
        return Err(Error::coded(
            "42602",
            format!("invalid name \"{dotted}\": Augur's names cannot contain \".\""),
        ));
    }
    match parts.as_slice() {
        [table] => Ok(table.clone()),
        [schema, table] => Ok(crate::catalog::schema::qualify(schema, table)),
        [catalog, schema, table] if catalog == CATALOG_NAME => {
            Ok(crate::catalog::schema::qualify(schema, table))
        }
        [catalog, ..] => Err(Error::NotSupported(format!(
            "cross-database references: {name} (database \"{catalog}\")"
        ))),
        [] => Err(Error::Syntax("syntax error: empty table name".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_precision_literals_change_only_those_words() {
        let sql =
            "SELECT 'é', E'a\\'b', -- interval(1) 'x'\n  INTERVAL (2) '1.234 s', interval '1 s'";
        assert_eq!(
            interval_precision_literals(sql).as_deref(),
            Some(
                "SELECT 'é', E'a\\'b', -- interval(1) 'x'\n  '1.234 s'::interval(2), interval '1 s'"
            )
        );
        assert_eq!(interval_precision_literals("SELECT interval '1 s'"), None);
    }

    #[test]
    fn empty_and_comment_only_text_has_no_statements() {
        let parser = SqlParser::new();
        assert!(parser.parse("").unwrap().is_empty());
        assert!(parser.parse("-- ping").unwrap().is_empty());
        assert!(parser.parse("  ;  ").unwrap().is_empty());
        assert_eq!(parser.parse("SELECT 1; SELECT 2").unwrap().len(), 2);
    }

    #[test]
    fn postgresql_forms_sqlparser_does_not_take() {
        let parsed = |sql: &str| {
            SqlParser::new()
                .parse(sql)
                .unwrap()
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        };
        assert_eq!(
            parsed("SELECT a FROM t ORDER BY a USING >, b USING <"),
            "SELECT a FROM t ORDER BY a DESC, b ASC"
        );
        assert_eq!(
            parsed("SELECT p.a FROM person* p JOIN q* ON true"),
            "SELECT p.a FROM person p JOIN q ON true"
        );
        assert_eq!(
            parsed("SELECT 2* 3 FROM t"),
            "SELECT 2 * 3 AS \"?column?\" FROM t"
        );
        assert_eq!(
            parsed("SELECT 'first line'\n' - next line'\n\t' - third' AS x"),
            "SELECT 'first line - next line - third' AS x"
        );
    }

    #[test]
    fn syntax_errors_are_42601() {
        let err = SqlParser::new().parse("SELEC 1").unwrap_err();
        assert_eq!(err.sqlstate(), "42601");
    }

    #[test]
    fn quoted_frame_offsets_take_a_cast() {
        let parsed = SqlParser::new()
            .parse(
                "SELECT sum(x) OVER (ORDER BY d RANGE BETWEEN '1 year'::interval PRECEDING \
                 AND '1 day'::INTERVAL FOLLOWING) FROM t",
            )
            .unwrap();
        let text = parsed[0].to_string();
        assert!(
            text.contains("'1 year' PRECEDING") || text.contains("INTERVAL '1 year' PRECEDING"),
            "{text}"
        );
        assert!(SqlParser::new()
            .parse("SELECT sum(x) OVER (ORDER BY d RANGE BETWEEN 'a'::text PRECEDING AND CURRENT ROW) FROM t")
            .is_err());
    }

    #[test]
    fn names_resolve_to_catalog_keys() {
        let parse = |sql: &str| match &SqlParser::new().parse(sql).unwrap()[0] {
            Statement::Drop { names, .. } => table_name(&names[0]),
            other => panic!("{other}"),
        };
        assert_eq!(parse("DROP TABLE Foo").unwrap(), "foo");
        assert_eq!(parse("DROP TABLE \"Foo\"").unwrap(), "Foo");
        assert_eq!(parse("DROP TABLE public.foo").unwrap(), "foo");
        assert_eq!(parse("DROP TABLE Other.Foo").unwrap(), "other.foo");
        assert_eq!(parse("DROP TABLE augur.other.foo").unwrap(), "other.foo");
        assert_eq!(parse("DROP TABLE \"a.b\"").unwrap_err().sqlstate(), "42602");
        assert_eq!(
            parse("DROP TABLE db.s.foo").unwrap_err().sqlstate(),
            "0A000"
        );
    }
}
