//! `CREATE SCHEMA` and `DROP SCHEMA`: namespaces for tables, views, sources, sequences and
//! indexes, named `schema.name` (see [`crate::catalog::schema`]).

use datafusion::sql::sqlparser::ast::{ObjectName, SchemaName};

use super::{Output, Session};
use crate::catalog::schema::{SCHEMA_NAME, SYSTEM_SCHEMAS};
use crate::error::{Error, Result};
use crate::sql::normalize_ident;

/// A schema's name: one identifier, without a dot (a dot separates schema and name).
fn schema_name(name: &ObjectName) -> Result<String> {
    let [part] = name.0.as_slice() else {
        return Err(Error::NotSupported(format!(
            "cross-database references: {name}"
        )));
    };
    let ident = part
        .as_ident()
        .ok_or_else(|| Error::Syntax(format!("syntax error: {name} is not a schema name")))?;
    let name = normalize_ident(ident);
    if name.contains('.') {
        return Err(Error::coded(
            "42602",
            format!("invalid name \"{name}\": Augur's names cannot contain \".\""),
        ));
    }
    Ok(name)
}

impl Session<'_> {
    /// `CREATE SCHEMA [IF NOT EXISTS] name [AUTHORIZATION role]` (`AUTHORIZATION role` alone
    /// names the schema after the role, as in PostgreSQL).
    pub(super) async fn create_schema(
        &mut self,
        schema: &SchemaName,
        if_not_exists: bool,
    ) -> Result<Output> {
        let name = match schema {
            SchemaName::Simple(name) | SchemaName::NamedAuthorization(name, _) => {
                schema_name(name)?
            }
            SchemaName::UnnamedAuthorization(role) => normalize_ident(role),
        };
        if name.starts_with("pg_") {
            return Err(Error::coded(
                "42939",
                format!(
                    "unacceptable schema name \"{name}\": the prefix \"pg_\" is reserved for \
                     system schemas"
                ),
            ));
        }
        let _guard = self.write_guard().await?;
        let catalog = self.db.catalog();
        let exists = SYSTEM_SCHEMAS.contains(&name.as_str()) || !catalog.create_schema(&name)?;
        if exists {
            if if_not_exists {
                self.notice(
                    "42P06",
                    format!("schema \"{name}\" already exists, skipping"),
                );
                return Ok(Output::Command("CREATE SCHEMA".into()));
            }
            return Err(Error::coded(
                "42P06",
                format!("schema \"{name}\" already exists"),
            ));
        }
        self.db.attach_schema(&name)?;
        Ok(Output::Command("CREATE SCHEMA".into()))
    }

    /// `DROP SCHEMA [IF EXISTS] name, ... [CASCADE | RESTRICT]`: refused (`2BP01`, naming
    /// each object) while a schema holds anything, unless CASCADE, which drops what it holds
    /// and the views elsewhere that read it.
    pub(super) async fn drop_schemas(
        &mut self,
        names: &[ObjectName],
        if_exists: bool,
        cascade: bool,
    ) -> Result<Output> {
        let names = names.iter().map(schema_name).collect::<Result<Vec<_>>>()?;
        let _guard = self.write_guard().await?;
        let catalog = self.db.catalog().clone();
        let mut doomed = Vec::new();
        for name in names {
            if SYSTEM_SCHEMAS.contains(&name.as_str()) {
                let reason = if name == SCHEMA_NAME {
                    "Augur keeps it for relations named without a schema"
                } else {
                    "it is required by the database system"
                };
                return Err(Error::coded(
                    "2BP01",
                    format!("cannot drop schema {name} because {reason}"),
                ));
            }
            if !catalog.has_schema(&name) {
                if if_exists {
                    self.notice(
                        "00000",
                        format!("schema \"{name}\" does not exist, skipping"),
                    );
                    continue;
                }
                return Err(Error::coded(
                    "3F000",
                    format!("schema \"{name}\" does not exist"),
                ));
            }
            doomed.push(name);
        }
        for name in &doomed {
            let held = catalog.relations_in(name);
            // A sequence a column of the schema's tables owns (SERIAL, identity) goes with its
            // table, unnamed, as in PostgreSQL.
            let owned = |key: &String| {
                catalog.sequences().get(key).is_some_and(|s| {
                    s.def()
                        .owned_by
                        .as_ref()
                        .is_some_and(|(table, _)| held.contains(table))
                })
            };
            let described: Vec<String> = held
                .iter()
                .filter(|key| !owned(key))
                .map(|key| format!("{} {key}", self.describe(key)))
                .collect();
            if !held.is_empty() && !cascade {
                return Err(Error::DependentObjects {
                    message: format!(
                        "cannot drop schema {name} because other objects depend on it"
                    ),
                    detail: described
                        .iter()
                        .map(|d| format!("{d} depends on schema {name}"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                });
            }
            // What the schema holds, then (named by the drop below) the views elsewhere that
            // read it.
            for object in described {
                self.notice("00000", format!("drop cascades to {object}"));
            }
            // Views, sources and what reads them (in any schema), then tables and sequences.
            let seeds = held
                .iter()
                .filter_map(|key| catalog.relation_id(key).map(|id| (id, key.clone())))
                .map(|(id, key)| (id, format!("{} {key}", self.describe(&key))))
                .collect();
            self.drop_with_dependents("schema", name, seeds, Vec::new(), true)
                .await?;
            for key in &held {
                if catalog.table(key).is_some() {
                    catalog.drop_table(key)?;
                }
            }
            for key in &held {
                if catalog.sequences().get(key).is_some() {
                    catalog.drop_sequence(key)?;
                }
            }
            catalog.drop_schema(name)?;
            self.db.detach_schema(name)?;
        }
        Ok(Output::Command("DROP SCHEMA".into()))
    }

    /// "table", "view", "materialized view", "source" or "sequence", for what `key` is.
    fn describe(&self, key: &str) -> &'static str {
        let catalog = self.db.catalog();
        if catalog.table(key).is_some() {
            "table"
        } else if catalog.source(key).is_some() {
            "source"
        } else if let Some(view) = catalog.view(key) {
            if view.def().materialized {
                "materialized view"
            } else {
                "view"
            }
        } else {
            "sequence"
        }
    }
}
