//! Statements executed from their text rather than a plan: CREATE/DROP/TRUNCATE TABLE, COPY,
//! SET/SHOW, and the transaction statements.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyOption, CopyOption, CopySource, CopyTarget, CreateTable, ObjectType, Reset, Statement,
};

use super::{
    Notice, Output, Plan, Session, TXN_START, TXN_WROTE, copy, in_transaction, rows_output,
    run_query, vars,
};
use crate::error::{Error, Result};
use crate::sql::{Stmt, ddl, table_name};
use crate::table::watermark::WatermarkDef;

impl Session<'_> {
    /// `CREATE TABLE`, with Augur's `APPEND ONLY` and `WATERMARK FOR` if given.
    pub(super) async fn create_table(
        &mut self,
        create: &CreateTable,
        append_only: bool,
        watermark: Option<WatermarkDef>,
        connector: Option<crate::table::ConnectorDef>,
    ) -> Result<Output> {
        if let Some(query) = &create.query {
            if append_only || watermark.is_some() || connector.is_some() {
                return Err(Error::NotSupported(
                    "APPEND ONLY or WATERMARK with CREATE TABLE ... AS".into(),
                ));
            }
            return self.create_table_as(create, query).await;
        }
        let (mut def, sequences) = ddl::table_def(create)?;
        super::foreign_keys::resolve(self.db, &mut def)?;
        // UNIQUE constraints, as positions among the visible columns.
        let unique = ddl::unique_constraints(create)?
            .into_iter()
            .map(|(name, columns)| {
                let positions = columns
                    .iter()
                    .map(|c| {
                        def.columns
                            .iter()
                            .position(|d| &d.name == c && !d.hidden)
                            .ok_or_else(|| {
                                Error::UndefinedColumn(format!(
                                    "column \"{c}\" named in key does not exist"
                                ))
                            })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok((name, positions))
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(watermark) = &watermark {
            if !append_only {
                return Err(Error::NotSupported(
                    "WATERMARK on a table that is not APPEND ONLY (rows that can be updated or \
                     deleted have no event-time order); write CREATE TABLE ... APPEND ONLY"
                        .into(),
                ));
            }
            // Every row needs an event time.
            if let Some(column) = def.columns.iter_mut().find(|c| c.name == watermark.column) {
                column.nullable = false;
            }
        }
        def.append_only = append_only;
        def.watermark = watermark;
        if connector.is_some() {
            if def.temporary {
                return Err(Error::NotSupported(
                    "a temporary table with a connector".into(),
                ));
            }
            if !def.foreign_keys.is_empty() || !unique.is_empty() {
                return Err(Error::NotSupported(
                    "FOREIGN KEY and UNIQUE constraints on a table fed by a connector (its rows \
                     are the topic's)"
                        .into(),
                ));
            }
        }
        def.connector = connector;
        let name = def.name.clone();
        let created =
            self.db
                .catalog()
                .create_table(def, create.if_not_exists, sequences, unique)?;
        if let Some(table) = &created
            && let Some(connector) = table.def().connector.clone()
            && let Err(e) = self.start_feed(table.clone(), connector).await
        {
            // Nothing of a table whose connector cannot start is kept.
            let _guard = self.write_guard().await?;
            self.db.catalog().drop_table(&name)?;
            return Err(e);
        }
        match created {
            None => self.notice(
                "42P07",
                format!("relation \"{name}\" already exists, skipping"),
            ),
            Some(table) if table.def().temporary => {
                self.conn
                    .temporary_tables()
                    .add(self.db.catalog(), name, table.def().id);
            }
            Some(_) => {}
        }
        Ok(Output::Command("CREATE TABLE".into()))
    }

    /// Finds where a new table's connector starts, stores it, and starts feeding the table.
    async fn start_feed(
        &self,
        table: std::sync::Arc<crate::table::Table>,
        connector: crate::table::ConnectorDef,
    ) -> Result<()> {
        let (source, splits) = {
            let table = table.clone();
            tokio::task::spawn_blocking(move || -> Result<_> {
                let source = super::ingest::open(&table, &connector)?;
                let splits = crate::source::Source::initial_splits(&source)?;
                Ok((source, splits))
            })
            .await
            .map_err(|e| Error::Internal(format!("opening the connector failed: {e}")))??
        };
        let mut batch = crate::storage::WriteBatch::default();
        batch.put(
            crate::table::Table::feed_key(table.def().id),
            splits.encode(),
        );
        self.db.store().write(batch)?;
        super::ingest::start(
            self.db.feeder(),
            table,
            source,
            Some(splits),
            std::sync::Arc::new(crate::source::SourceProgress::default()),
        )
    }

    /// A unique index for each `UNIQUE` constraint of a new table, under the constraint's name.
    pub(super) fn add_unique_constraints(
        &self,
        table: &std::sync::Arc<crate::table::Table>,
        unique: Vec<(String, Vec<String>)>,
    ) -> Result<()> {
        let visible = table.visible_schema();
        for (name, columns) in unique {
            let positions = columns
                .iter()
                .map(|c| {
                    visible.index_of(c).map_err(|_| {
                        Error::UndefinedColumn(format!(
                            "column \"{c}\" named in key does not exist"
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let def = crate::table::index::IndexDef {
                id: 0,
                name: name.clone(),
                relation: table.name().to_string(),
                columns: positions,
                unique: true,
                constraint: true,
            };
            let store = self.db.store().clone();
            if !self
                .db
                .catalog()
                .create_index(table, def, false, |index, batch| {
                    super::indexes::build(&store, table, index, batch)
                })?
            {
                return Err(Error::coded(
                    "42P07",
                    format!("relation \"{name}\" already exists"),
                ));
            }
        }
        Ok(())
    }

    /// `CREATE TABLE name [(columns)] AS query`: a table with the query's columns and types
    /// (named by the column list where there is one), filled with its rows. The table is dropped
    /// again when the rows cannot be written.
    async fn create_table_as(
        &mut self,
        create: &CreateTable,
        query: &datafusion::sql::sqlparser::ast::Query,
    ) -> Result<Output> {
        let name = table_name(&create.name)?;
        if self.db.catalog().exists(&name) {
            if create.if_not_exists {
                self.notice(
                    "42P07",
                    format!("relation \"{name}\" already exists, skipping"),
                );
                return Ok(Output::Command("CREATE TABLE AS".into()));
            }
            return Err(Error::coded(
                "42P07",
                format!("relation \"{name}\" already exists"),
            ));
        }
        let prepared = self
            .prepare(Stmt::Sql(Box::new(Statement::Query(Box::new(
                query.clone(),
            )))))
            .await?;
        let schema = prepared
            .schema()
            .cloned()
            .ok_or_else(|| Error::Internal("CREATE TABLE AS: the query has no columns".into()))?;
        if create.columns.len() > schema.fields().len() {
            return Err(Error::coded(
                "42601",
                "CREATE TABLE AS specifies too many column names",
            ));
        }
        let quote = super::dml::quote;
        let columns: Vec<String> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let column = create
                    .columns
                    .get(i)
                    .map(|c| crate::sql::normalize_ident(&c.name))
                    .unwrap_or_else(|| field.name().clone());
                format!("{} {}", quote(&column), stored_type(field.data_type()))
            })
            .collect();
        let definition = format!(
            "CREATE {}TABLE {} ({})",
            if create.temporary { "TEMPORARY " } else { "" },
            super::dml::quote_key(&name),
            columns.join(", ")
        );
        let Some(Stmt::Sql(statement)) = self.parse(&definition)?.pop() else {
            return Err(Error::Internal(format!("CREATE TABLE AS: {definition}")));
        };
        let Statement::CreateTable(table) = *statement else {
            return Err(Error::Internal(format!("CREATE TABLE AS: {definition}")));
        };
        let (def, sequences) = ddl::table_def(&table)?;
        if let Some(table) = self
            .db
            .catalog()
            .create_table(def, false, sequences, vec![])?
            && table.def().temporary
        {
            self.conn
                .temporary_tables()
                .add(self.db.catalog(), name.clone(), table.def().id);
        }
        let insert = format!("INSERT INTO {} {query}", super::dml::quote_key(&name));
        let inserted = match self.parse(&insert) {
            // Boxed: running a statement can come back here.
            Ok(mut stmts) if stmts.len() == 1 => Box::pin(self.run(stmts.remove(0))).await,
            Ok(_) => Err(Error::Internal(format!("CREATE TABLE AS: {insert}"))),
            Err(e) => Err(e),
        };
        match inserted {
            Ok(Output::Command(tag)) => {
                let rows = tag.rsplit(' ').next().unwrap_or("0").to_string();
                Ok(Output::Command(format!("SELECT {rows}")))
            }
            other => {
                self.db.catalog().drop_table(&name)?;
                match other {
                    Err(e) => Err(e),
                    Ok(_) => Err(Error::Internal("CREATE TABLE AS: unexpected output".into())),
                }
            }
        }
    }

    /// `CREATE SEQUENCE`.
    fn create_sequence(
        &mut self,
        name: &datafusion::sql::sqlparser::ast::ObjectName,
        data_type: Option<&datafusion::sql::sqlparser::ast::DataType>,
        options: &[datafusion::sql::sqlparser::ast::SequenceOptions],
        owned_by: Option<&datafusion::sql::sqlparser::ast::ObjectName>,
        if_not_exists: bool,
    ) -> Result<Output> {
        let name = table_name(name)?;
        let mut def = ddl::sequence_def(name.clone(), data_type, options)?;
        def.owned_by = match owned_by {
            None => None,
            Some(owner) if owner.to_string().eq_ignore_ascii_case("none") => None,
            Some(owner) => Some(self.sequence_owner(owner)?),
        };
        if !self.db.catalog().create_sequence(def, if_not_exists)? {
            self.notice(
                "42P07",
                format!("relation \"{name}\" already exists, skipping"),
            );
        }
        Ok(Output::Command("CREATE SEQUENCE".into()))
    }

    /// The table and column of `OWNED BY table.column`.
    fn sequence_owner(
        &self,
        owner: &datafusion::sql::sqlparser::ast::ObjectName,
    ) -> Result<(String, String)> {
        let parts: Vec<String> = owner
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(crate::sql::normalize_ident)
            .collect();
        let [.., table, column] = parts.as_slice() else {
            return Err(Error::coded(
                "42601",
                "invalid OWNED BY option: specify OWNED BY table.column or OWNED BY NONE",
            ));
        };
        let found = self
            .db
            .catalog()
            .table(table)
            .ok_or_else(|| Error::UndefinedTable(table.clone()))?;
        if found.visible_schema().index_of(column).is_err() {
            return Err(Error::UndefinedColumn(format!(
                "column \"{column}\" of relation \"{table}\" does not exist"
            )));
        }
        Ok((table.clone(), column.clone()))
    }

    /// `DROP SEQUENCE [IF EXISTS] name, ...`.
    fn drop_sequences(
        &mut self,
        names: &[datafusion::sql::sqlparser::ast::ObjectName],
        if_exists: bool,
    ) -> Result<Output> {
        for name in names {
            let name = table_name(name)?;
            if !self.db.catalog().drop_sequence(&name)? {
                if !if_exists {
                    return Err(Error::coded(
                        "42P01",
                        format!("sequence \"{name}\" does not exist"),
                    ));
                }
                self.notice(
                    "00000",
                    format!("sequence \"{name}\" does not exist, skipping"),
                );
            }
        }
        Ok(Output::Command("DROP SEQUENCE".into()))
    }

    pub(super) async fn execute_utility(&mut self, statement: &Statement) -> Result<Output> {
        match statement {
            Statement::CreateSequence {
                temporary: true, ..
            } => Err(Error::NotSupported("temporary sequences".into())),
            Statement::CreateSequence {
                if_not_exists,
                name,
                data_type,
                sequence_options,
                owned_by,
                ..
            } => self.create_sequence(
                name,
                data_type.as_ref(),
                sequence_options,
                owned_by.as_ref(),
                *if_not_exists,
            ),
            Statement::Drop {
                object_type: ObjectType::Sequence,
                if_exists,
                names,
                ..
            } => self.drop_sequences(names, *if_exists),
            Statement::CreateSchema {
                schema_name,
                if_not_exists,
                with,
                options,
                default_collate_spec,
                clone,
            } => {
                if let Some(option) = with.iter().chain(options).flatten().next() {
                    return Err(Error::coded(
                        "22023",
                        format!("unrecognized parameter {option} of CREATE SCHEMA"),
                    ));
                }
                if default_collate_spec.is_some() || clone.is_some() {
                    return Err(Error::NotSupported(
                        "CREATE SCHEMA with DEFAULT COLLATE or CLONE".into(),
                    ));
                }
                self.create_schema(schema_name, *if_not_exists).await
            }
            Statement::Drop {
                object_type: ObjectType::Schema,
                if_exists,
                names,
                cascade,
                ..
            } => self.drop_schemas(names, *if_exists, *cascade).await,
            Statement::CreateIndex(create) => self.create_index(create).await,
            Statement::CreateFunction(create) => self.create_function(create),
            Statement::DropFunction(drop) => self.drop_functions(drop),
            Statement::Drop {
                object_type: ObjectType::Index,
                if_exists,
                names,
                ..
            } => self.drop_indexes(names, *if_exists).await,
            Statement::CreateTable(create) => self.create_table(create, false, None, None).await,
            Statement::AlterTable(alter) => self.alter_table(alter).await,
            Statement::Drop {
                object_type:
                    object_type @ (ObjectType::Table | ObjectType::View | ObjectType::MaterializedView),
                if_exists,
                names,
                cascade,
                ..
            } => {
                let kind = super::views::Kind::of(*object_type)
                    .ok_or_else(|| Error::Internal("not a relation".into()))?;
                let names = super::views::drop_names(names)?;
                self.drop_relations(kind, *if_exists, &names, *cascade)
                    .await
            }
            Statement::CreateView(create) => self.create_view(create, false).await,
            Statement::ShowViews { materialized, .. } => self.show_views(*materialized),
            Statement::ShowTables { .. } => {
                super::views::names_output(self.db.catalog().table_names())
            }
            Statement::Explain { statement, .. } => match statement.as_ref() {
                Statement::CreateView(create) if create.materialized => {
                    self.explain_view(create, false).await
                }
                _ => Err(Error::Internal("EXPLAIN planned as a utility".into())),
            },
            Statement::Truncate(truncate) => {
                let _guard = self.write_guard().await?;
                let names = truncate
                    .table_names
                    .iter()
                    .map(|t| table_name(&t.name))
                    .collect::<Result<Vec<_>>>()?;
                for name in &names {
                    let table = self.db.catalog().table_to_write(name, "truncate")?;
                    if let Some((child, fk)) = super::foreign_keys::referencing(self.db, &table)
                        .into_iter()
                        .find(|(child, _)| !names.iter().any(|n| n == child.name()))
                    {
                        return Err(Error::coded(
                            "0A000",
                            format!(
                                "cannot truncate a table referenced in a foreign key constraint: table \"{}\" references \"{name}\" ({}); truncate them together",
                                child.name(),
                                fk.name
                            ),
                        ));
                    }
                }
                for name in &names {
                    let table = self.db.catalog().table_to_write(name, "truncate")?;
                    super::dml::refuse_if_append_only(&table, "TRUNCATE")?;
                    let log = self.db.log_for(table.def().id);
                    crate::table::writer::truncate(self.db.store(), &table, log)?;
                }
                Ok(Output::Command("TRUNCATE TABLE".into()))
            }
            Statement::Copy {
                source,
                to,
                target,
                options,
                legacy_options,
                ..
            } => {
                self.copy(source, *to, target, options, legacy_options)
                    .await
            }
            Statement::Set(set) => {
                for (name, value) in vars::apply_set(self.vars, set)? {
                    self.notices.push(Notice::Parameter(name, value));
                }
                if let Ok(path) = vars::get(self.vars, "search_path")
                    && let Some(first) = vars::first_user_schema(&path)
                    && first != crate::common::names::SCHEMA_NAME
                {
                    self.notices.push(Notice::Message(
                        "WARNING",
                        "01000",
                        format!(
                            "search_path is kept but not applied: names without a schema resolve in public, not in \"{first}\"; write {first}.name"
                        ),
                    ));
                }
                Ok(Output::Command("SET".into()))
            }
            Statement::Reset(reset) => {
                let changed = match &reset.reset {
                    Reset::ALL => vars::reset_all(self.vars),
                    Reset::ConfigurationParameter(name) => {
                        let name = name.to_string();
                        vars::set(self.vars, &name, None)?.into_iter().collect()
                    }
                };
                for (name, value) in changed {
                    self.notices.push(Notice::Parameter(name, value));
                }
                Ok(Output::Command("RESET".into()))
            }
            Statement::ShowVariable { variable } => {
                let rows = if variable.len() == 1 && variable[0].value.eq_ignore_ascii_case("all") {
                    vars::all(self.vars)
                } else {
                    let name = show_name(variable);
                    let value = vars::get(self.vars, &name)?;
                    vec![(name, value)]
                };
                show_output(
                    rows,
                    variable.len() == 1 && variable[0].value.eq_ignore_ascii_case("all"),
                )
            }
            Statement::StartTransaction { .. } => {
                if in_transaction(self.vars) {
                    self.notices.push(Notice::Message(
                        "WARNING",
                        "25001",
                        "there is already a transaction in progress".into(),
                    ));
                }
                if !in_transaction(self.vars) {
                    // `now()`, `current_timestamp` and the text 'now' are the moment the
                    // block began, for all of its statements.
                    self.vars.insert(
                        TXN_START.into(),
                        chrono::Utc::now().timestamp_micros().to_string(),
                    );
                }
                self.vars.insert("augur.in_txn".into(), "1".into());
                Ok(Output::TransactionStart("BEGIN".into()))
            }
            Statement::Commit { .. } => {
                let failed = self.vars.contains_key("augur.txn_failed");
                // A block that failed is rolled back.
                let created = self.conn.take_created_in_block();
                self.end_transaction();
                if failed {
                    self.drop_created(created).await;
                }
                Ok(Output::TransactionEnd(
                    if failed { "ROLLBACK" } else { "COMMIT" }.into(),
                ))
            }
            Statement::Savepoint { .. } => {
                self.require_transaction("SAVEPOINT")?;
                Ok(Output::Command("SAVEPOINT".into()))
            }
            Statement::ReleaseSavepoint { .. } => {
                self.require_transaction("RELEASE SAVEPOINT")?;
                Ok(Output::Command("RELEASE".into()))
            }
            Statement::Rollback {
                savepoint: Some(_), ..
            } => {
                self.require_transaction("ROLLBACK TO SAVEPOINT")?;
                self.warn_if_wrote();
                // As in PostgreSQL, the block is usable again after rolling back to a savepoint.
                self.vars.remove("augur.txn_failed");
                Ok(Output::Command("ROLLBACK".into()))
            }
            Statement::Rollback { .. } => {
                self.warn_if_wrote();
                let created = self.conn.take_created_in_block();
                self.end_transaction();
                self.drop_created(created).await;
                Ok(Output::TransactionEnd("ROLLBACK".into()))
            }
            Statement::Prepare {
                name,
                data_types,
                statement,
            } => self.prepare_named(name, data_types, statement).await,
            Statement::Deallocate { name, .. } => self.deallocate(name),
            Statement::Fetch {
                name, direction, ..
            } => self.fetch(name, direction).await,
            Statement::Close { cursor } => self.close(cursor),
            other => Err(Error::NotSupported(statement_kind(other))),
        }
    }

    fn require_transaction(&self, what: &str) -> Result<()> {
        if in_transaction(self.vars) {
            Ok(())
        } else {
            Err(Error::coded(
                "25P01",
                format!("{what} can only be used in transaction blocks"),
            ))
        }
    }

    /// Drops what a transaction block that is rolled back created (`drops`, newest first), so
    /// that its tables, views, indexes, sequences and schemas are gone as in PostgreSQL.
    async fn drop_created(&mut self, drops: Vec<String>) {
        for drop in drops {
            let result = match self.db.parser().parse_stmts(&drop) {
                Ok(stmts) => {
                    let mut result = Ok(());
                    for stmt in stmts {
                        if let Err(e) = Box::pin(self.run(stmt)).await {
                            result = Err(e);
                        }
                    }
                    result
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                self.notices.push(Notice::Message(
                    "WARNING",
                    "01000",
                    format!("ROLLBACK could not undo a creation ({drop}): {e}"),
                ));
            }
        }
    }

    fn warn_if_wrote(&mut self) {
        if self.vars.contains_key(TXN_WROTE) {
            self.notices.push(Notice::Message(
                "WARNING",
                "01000",
                "changes in this transaction block were already committed: each \
                         statement commits when it completes, and ROLLBACK undoes only the \
                         creation of tables, views, indexes, sequences and schemas"
                    .into(),
            ));
        }
    }

    async fn copy(
        &mut self,
        source: &CopySource,
        to: bool,
        target: &CopyTarget,
        options: &[CopyOption],
        legacy_options: &[CopyLegacyOption],
    ) -> Result<Output> {
        let format = copy::CopyFormat::from_options(options, legacy_options)?;
        match (to, target, source) {
            (
                false,
                CopyTarget::Stdin,
                CopySource::Table {
                    table_name: name,
                    columns,
                },
            ) => {
                let name = table_name(name)?;
                let table = self.db.catalog().table_to_write(&name, "copy to")?;
                Ok(Output::CopyIn(
                    copy::CopyIn::new(self.db, table, columns, format)?
                        .with_lock_timeout(vars::duration(self.vars, "lock_timeout"))
                        .with_datetime_settings(
                            &vars::get(self.vars, "TimeZone")?,
                            &vars::get(self.vars, "DateStyle")?,
                            self.vars.get(TXN_START).and_then(|m| m.parse().ok()),
                        ),
                ))
            }
            (true, CopyTarget::Stdout, source) => {
                let query = match source {
                    CopySource::Query(query) => query.to_string(),
                    CopySource::Table {
                        table_name: name,
                        columns,
                    } => {
                        let list = if columns.is_empty() {
                            "*".to_string()
                        } else {
                            columns
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        format!("SELECT {list} FROM {name}")
                    }
                };
                let statement = self
                    .db
                    .parser()
                    .parse(&query)?
                    .pop()
                    .ok_or_else(|| Error::Syntax("syntax error: empty COPY query".into()))?;
                let prepared = self
                    .prepare(crate::sql::Stmt::Sql(Box::new(statement)))
                    .await?;
                let rows = match &prepared.0.plan {
                    Plan::Query(plan) => run_query(self.db, &self.env(), plan.clone()).await?,
                    Plan::Lookup(lookup) => {
                        let batch = lookup.execute(&ParamValues::List(vec![]))?;
                        rows_output(lookup.schema().clone(), vec![batch], "SELECT".into())
                    }
                    _ => {
                        return Err(Error::NotSupported(
                            "COPY of a statement that returns no rows".into(),
                        ));
                    }
                };
                let Output::Rows { schema, stream, .. } = rows else {
                    return Err(Error::Internal("a query returned no rows".into()));
                };
                Ok(Output::CopyOut {
                    schema,
                    stream,
                    format,
                })
            }
            (false, CopyTarget::Stdin, CopySource::Query(_)) => Err(Error::Syntax(
                "syntax error: COPY FROM needs a table".into(),
            )),
            _ => Err(Error::NotSupported(
                "COPY to or from a file or program on the server; use STDIN/STDOUT (psql's \\copy)"
                    .into(),
            )),
        }
    }

    fn end_transaction(&mut self) {
        self.conn.transaction_ended();
        for key in ["augur.in_txn", "augur.txn_failed", TXN_WROTE, TXN_START] {
            self.vars.remove(key);
        }
        self.vars.remove("transaction_isolation");
    }

    pub(super) fn notice(&mut self, code: &'static str, message: String) {
        self.notices.push(Notice::Message("NOTICE", code, message));
    }
}

/// Refuses, at prepare time, the statements Augur does not run.
pub(super) fn check_utility(statement: &Statement) -> Result<()> {
    match statement {
        Statement::CreateTable(_)
        | Statement::AlterTable(_)
        | Statement::CreateSequence { .. }
        | Statement::CreateIndex(_)
        | Statement::CreateView(_)
        | Statement::CreateSchema { .. }
        | Statement::CreateFunction(_)
        | Statement::DropFunction(_)
        | Statement::ShowViews { .. }
        | Statement::ShowTables { .. }
        | Statement::Drop {
            object_type:
                ObjectType::Table
                | ObjectType::View
                | ObjectType::MaterializedView
                | ObjectType::Sequence
                | ObjectType::Index
                | ObjectType::Schema,
            ..
        }
        | Statement::Truncate(_)
        | Statement::Copy { .. }
        | Statement::Set(_)
        | Statement::Reset(_)
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Prepare { .. }
        | Statement::Deallocate { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. } => Ok(()),
        other => Err(Error::NotSupported(statement_kind(other))),
    }
}

/// A short name for a kind of statement, for "... is not supported" errors.
fn statement_kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    let kind = match words.as_slice() {
        [first, second]
            if matches!(
                first.to_ascii_uppercase().as_str(),
                "CREATE" | "DROP" | "ALTER" | "SHOW"
            ) =>
        {
            format!("{first} {second}")
        }
        [first, ..] => first.to_string(),
        [] => "statement".to_string(),
    };
    format!("statement {}", kind.to_ascii_uppercase())
}

pub(super) fn show_name(variable: &[datafusion::sql::sqlparser::ast::Ident]) -> String {
    let joined = variable
        .iter()
        .map(|i| i.value.clone())
        .collect::<Vec<_>>()
        .join(" ");
    match joined.to_ascii_lowercase().as_str() {
        "time zone" => "TimeZone".into(),
        "transaction isolation level" => "transaction_isolation".into(),
        _ => joined,
    }
}

pub(super) fn show_schema(name: Option<&str>) -> SchemaRef {
    match name {
        Some(name) => Arc::new(Schema::new(vec![Field::new(
            super::vars::canonical_name(name),
            DataType::Utf8,
            false,
        )])),
        None => Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("setting", DataType::Utf8, false),
        ])),
    }
}

fn show_output(rows: Vec<(String, String)>, all: bool) -> Result<Output> {
    let (names, values): (Vec<String>, Vec<String>) = rows.into_iter().unzip();
    let schema = if all {
        show_schema(None)
    } else {
        show_schema(names.first().map(String::as_str))
    };
    let columns: Vec<Arc<dyn datafusion::arrow::array::Array>> = if all {
        vec![
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(values)),
        ]
    } else {
        vec![Arc::new(StringArray::from(values))]
    };
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(rows_output(schema, vec![batch], "SHOW".into()))
}

/// The column type a table made by `CREATE TABLE AS` stores a query column of type `dt` as:
/// PostgreSQL's name for it, with strings, timestamps and dictionaries in the forms tables keep
/// and an untyped NULL as text (as in PostgreSQL).
fn stored_type(dt: &DataType) -> String {
    match dt {
        DataType::Null => "text".into(),
        DataType::Dictionary(_, value) => stored_type(value),
        other => crate::common::types::pg_type_name(other),
    }
}
