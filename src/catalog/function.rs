//! Functions written in SQL: `CREATE FUNCTION ... LANGUAGE sql`.
//!
//! A function's definition lives under `cf` + its signature (`name(type, ...)`) as JSON. Augur
//! runs a call by putting the function's body in its place, the arguments in place of the
//! parameters (see `sql::functions`), as PostgreSQL does when it inlines a SQL function: the
//! planner then sees one query, and a view that calls a function keeps the body it was created
//! with. As in PostgreSQL, functions may share a name when their argument types differ.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::{StorageError, Store, WriteBatch};

const PREFIX: &[u8] = b"cf";

/// One parameter of a function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionArg {
    /// The parameter's name, if it has one (the body may also say `$n`).
    pub name: Option<String>,
    /// Its type, as SQL.
    pub data_type: String,
    /// `DEFAULT expr` / `= expr`, as SQL.
    pub default: Option<String>,
}

/// What a function returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Returns {
    /// One value of this type.
    Scalar(String),
    /// `SETOF type`: rows of one column.
    SetOf(String),
    /// `TABLE (name type, ...)`: rows of these columns.
    Table(Vec<(String, String)>),
}

/// A function's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Body {
    /// `RETURN expr` (or a PL/pgSQL body that is only `RETURN expr`): an expression.
    Expr(String),
    /// `AS 'query'`: a query, whose first row (or, for a set-returning function, every row) is
    /// the result.
    Query(String),
}

/// What `CREATE FUNCTION` said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    /// The function's name, as a catalog key (`name`, or `schema.name` outside `public`).
    pub name: String,
    /// Its parameters.
    pub args: Vec<FunctionArg>,
    /// Its result.
    pub returns: Returns,
    /// Its body.
    pub body: Body,
    /// `STRICT` / `RETURNS NULL ON NULL INPUT`: a NULL argument makes the result NULL.
    pub strict: bool,
    /// `IMMUTABLE`, `STABLE` or `VOLATILE`.
    pub volatility: String,
    /// The language it was written in (`sql`, or `plpgsql` for a body that only returns).
    pub language: String,
}

impl FunctionDef {
    /// `name(type, ...)`: what tells it apart from other functions of the same name.
    pub fn signature(&self) -> String {
        signature(
            &self.name,
            &self
                .args
                .iter()
                .map(|a| a.data_type.clone())
                .collect::<Vec<_>>(),
        )
    }

    /// Whether it returns rows rather than one value.
    pub fn returns_set(&self) -> bool {
        !matches!(self.returns, Returns::Scalar(_))
    }
}

/// `name(type, ...)` with the types in canonical form.
pub fn signature(name: &str, types: &[String]) -> String {
    format!("{name}({})", types.join(", "))
}

/// Every SQL function, by name; functions of one name in order of signature.
#[derive(Debug)]
pub struct Functions {
    store: Store,
    by_name: RwLock<BTreeMap<String, Vec<Arc<FunctionDef>>>>,
}

impl Functions {
    /// Loads every function from `store`.
    pub fn load(store: Store) -> Result<Self> {
        let mut by_name: BTreeMap<String, Vec<Arc<FunctionDef>>> = BTreeMap::new();
        store.scan_prefix::<Error>(PREFIX, |_, value| {
            let def: FunctionDef = serde_json::from_slice(value)
                .map_err(|e| StorageError::Corrupt(format!("function definition: {e}")))?;
            by_name
                .entry(def.name.clone())
                .or_default()
                .push(Arc::new(def));
            Ok(true)
        })?;
        Ok(Self {
            store,
            by_name: RwLock::new(by_name),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Vec<Arc<FunctionDef>>>> {
        self.by_name.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Vec<Arc<FunctionDef>>>> {
        self.by_name.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The functions called `name`.
    pub fn named(&self, name: &str) -> Vec<Arc<FunctionDef>> {
        self.read().get(name).cloned().unwrap_or_default()
    }

    /// Whether there is any function at all.
    pub fn any(&self) -> bool {
        !self.read().is_empty()
    }

    /// Creates `def`, or with `or_replace` replaces the function of the same signature. A
    /// replacement must return the same type, as in PostgreSQL.
    pub fn create(&self, def: FunctionDef, or_replace: bool) -> Result<()> {
        let signature = def.signature();
        let mut by_name = self.write();
        let same_name = by_name.entry(def.name.clone()).or_default();
        let existing = same_name.iter().position(|f| f.signature() == signature);
        if let Some(at) = existing {
            if !or_replace {
                return Err(Error::coded(
                    "42723",
                    format!("function {signature} already exists with same argument types"),
                ));
            }
            if same_name[at].returns != def.returns {
                return Err(Error::coded(
                    "42P13",
                    "cannot change return type of existing function".to_string(),
                ));
            }
        }
        let value = serde_json::to_vec(&def)
            .map_err(|e| Error::Internal(format!("function definition: {e}")))?;
        let mut batch = WriteBatch::default();
        batch.put(key(&signature), value);
        self.store.write(batch)?;
        match existing {
            Some(at) => same_name[at] = Arc::new(def),
            None => {
                same_name.push(Arc::new(def));
                same_name.sort_by_key(|f| f.signature());
            }
        }
        Ok(())
    }

    /// Drops the function with `signature`; `false` when there is none.
    pub fn remove(&self, name: &str, signature: &str) -> Result<bool> {
        let mut by_name = self.write();
        let Some(same_name) = by_name.get_mut(name) else {
            return Ok(false);
        };
        let Some(at) = same_name.iter().position(|f| f.signature() == signature) else {
            return Ok(false);
        };
        let mut batch = WriteBatch::default();
        batch.delete(key(signature));
        self.store.write(batch)?;
        same_name.remove(at);
        if same_name.is_empty() {
            by_name.remove(name);
        }
        Ok(true)
    }
}

fn key(signature: &str) -> Vec<u8> {
    let mut key = PREFIX.to_vec();
    key.extend_from_slice(signature.as_bytes());
    key
}
