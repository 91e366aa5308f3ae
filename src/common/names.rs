//! Names every layer agrees on: the database and default schema relations live in, how a
//! relation's catalog key splits into schema and name, and the field metadata that carries a
//! column's PostgreSQL type.

/// Name of the DataFusion catalog (the database clients connect to, whatever name they ask for).
pub const CATALOG_NAME: &str = "augur";
/// Name of the schema holding users' tables.
pub const SCHEMA_NAME: &str = "public";

/// The schema and name of catalog key `key`: `schema.name`, or `name` for a relation in
/// [`SCHEMA_NAME`] (schema and relation names never contain a dot).
pub fn split(key: &str) -> (&str, &str) {
    key.split_once('.').unwrap_or((SCHEMA_NAME, key))
}

/// Field metadata naming the PostgreSQL type a text column carries (`uuid`, `json`, `jsonb`,
/// `character(n)`), which decides the type clients are told and how the value is read.
pub const PG_TYPE_KEY: &str = "augur.pg_type";
