//! `FOREIGN KEY ... REFERENCES parent`: a row's key columns, when none is NULL, name a row of
//! the parent table, checked at the end of each statement that writes either table (PostgreSQL's
//! `NO ACTION`, the default; `RESTRICT` is the same for a statement).

use serde::{Deserialize, Serialize};

/// One foreign key of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKeyDef {
    /// The constraint's name (`<table>_<columns>_fkey` unless named).
    pub name: String,
    /// The referencing columns, by name.
    pub columns: Vec<String>,
    /// The referenced table, as the catalog names it.
    pub parent: String,
    /// The referenced columns, by name, matching `columns` one by one: the parent's primary
    /// key.
    pub parent_columns: Vec<String>,
}
