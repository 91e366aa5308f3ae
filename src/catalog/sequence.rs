//! Sequences: `CREATE SEQUENCE`, and the ones behind `SERIAL` and identity columns.
//!
//! A sequence's definition lives under `cq` + id as JSON, its position under `mq` + id (the
//! last value handed out, 8 bytes big-endian, then 1 if it was handed out). `nextval` hands out
//! the values a whole batch of rows needs with one write. As in PostgreSQL, values are never
//! given back: a statement that fails leaves a gap. The position is written without waiting for
//! the disk; a write that waits (the row that used the value) makes it durable too, since
//! RocksDB's log is written in order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::{Store, WriteBatch};

const DEF_PREFIX: &[u8] = b"cq";
const STATE_PREFIX: &[u8] = b"mq";

/// What `CREATE SEQUENCE` said, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceDef {
    /// Unique id, from the catalog's counter.
    pub id: u32,
    /// The sequence's name.
    pub name: String,
    /// `smallint`, `integer` or `bigint`: bounds the default minimum and maximum.
    pub data_type: String,
    /// The first value.
    pub start: i64,
    /// The step (negative counts down).
    pub increment: i64,
    /// The smallest value.
    pub min: i64,
    /// The largest value.
    pub max: i64,
    /// Whether it starts over past its end.
    pub cycle: bool,
    /// The column whose default it is (`SERIAL`, identity): dropped with that table.
    pub owned_by: Option<(String, String)>,
}

impl SequenceDef {
    /// A sequence counting up from 1 by 1 within the range of `data_type`.
    pub fn counting(name: String, data_type: &str) -> Result<Self> {
        let (_, max) = type_range(data_type)?;
        Ok(Self {
            id: 0,
            name,
            data_type: data_type.to_string(),
            start: 1,
            increment: 1,
            min: 1,
            max,
            cycle: false,
            owned_by: None,
        })
    }

    /// Checks the bounds as PostgreSQL does.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(Error::InvalidParameter(message));
        if self.increment == 0 {
            return bad("INCREMENT must not be zero".into());
        }
        if self.min >= self.max {
            return bad(format!(
                "MINVALUE ({}) must be less than MAXVALUE ({})",
                self.min, self.max
            ));
        }
        if self.start < self.min {
            return bad(format!(
                "START value ({}) cannot be less than MINVALUE ({})",
                self.start, self.min
            ));
        }
        if self.start > self.max {
            return bad(format!(
                "START value ({}) cannot be greater than MAXVALUE ({})",
                self.start, self.max
            ));
        }
        Ok(())
    }
}

/// The values a sequence of `data_type` can take.
pub fn type_range(data_type: &str) -> Result<(i64, i64)> {
    Ok(match data_type {
        "smallint" => (i16::MIN.into(), i16::MAX.into()),
        "integer" => (i32::MIN.into(), i32::MAX.into()),
        "bigint" => (i64::MIN, i64::MAX),
        other => {
            return Err(Error::InvalidParameter(format!(
                "sequence type must be smallint, integer, or bigint, not {other}"
            )));
        }
    })
}

/// Where a sequence stands.
#[derive(Debug, Clone, Copy)]
struct Position {
    last: i64,
    /// Whether `last` was handed out (false right after creation or `setval(.., false)`).
    called: bool,
}

/// A sequence and its position.
#[derive(Debug)]
pub struct Sequence {
    def: SequenceDef,
    /// Shared with the sequence's next definition when its owner is renamed, so that no value
    /// is handed out twice.
    position: Arc<Mutex<Position>>,
}

impl Sequence {
    /// The definition.
    pub fn def(&self) -> &SequenceDef {
        &self.def
    }

    /// Hands out the next `n` values, in order, with one write.
    pub fn next(&self, store: &Store, n: usize) -> Result<Vec<i64>> {
        let mut position = self.position.lock().unwrap_or_else(|e| e.into_inner());
        let mut at = *position;
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            let value = if at.called {
                match at.last.checked_add(self.def.increment) {
                    Some(v) if v >= self.def.min && v <= self.def.max => v,
                    _ if self.def.cycle => {
                        if self.def.increment > 0 {
                            self.def.min
                        } else {
                            self.def.max
                        }
                    }
                    _ => {
                        // What was handed out before the end stays handed out.
                        if !values.is_empty() {
                            self.persist(store, at)?;
                            *position = at;
                        }
                        let (end, bound) = if self.def.increment > 0 {
                            ("maximum", self.def.max)
                        } else {
                            ("minimum", self.def.min)
                        };
                        return Err(Error::coded(
                            "2200H",
                            format!(
                                "nextval: reached {end} value of sequence \"{}\" ({bound})",
                                self.def.name
                            ),
                        ));
                    }
                }
            } else {
                at.last
            };
            at = Position {
                last: value,
                called: true,
            };
            values.push(value);
        }
        if n > 0 {
            self.persist(store, at)?;
            *position = at;
        }
        Ok(values)
    }

    /// `setval(seq, value, called)`.
    pub fn set(&self, store: &Store, value: i64, called: bool) -> Result<i64> {
        if value < self.def.min || value > self.def.max {
            return Err(Error::coded(
                "22003",
                format!(
                    "setval: value {value} is out of bounds for sequence \"{}\" ({}..{})",
                    self.def.name, self.def.min, self.def.max
                ),
            ));
        }
        let mut position = self.position.lock().unwrap_or_else(|e| e.into_inner());
        let at = Position {
            last: value,
            called,
        };
        self.persist(store, at)?;
        *position = at;
        Ok(value)
    }

    /// The last value handed out, if any (`last_value` of `pg_sequences`).
    pub fn last_value(&self) -> Option<i64> {
        let position = self.position.lock().unwrap_or_else(|e| e.into_inner());
        position.called.then_some(position.last)
    }

    fn persist(&self, store: &Store, at: Position) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put(state_key(self.def.id), encode(at));
        store.write_unsynced(batch)?;
        Ok(())
    }
}

fn encode(at: Position) -> Vec<u8> {
    let mut value = at.last.to_be_bytes().to_vec();
    value.push(u8::from(at.called));
    value
}

fn decode(bytes: &[u8]) -> Option<Position> {
    let last = i64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    Some(Position {
        last,
        called: bytes.get(8) == Some(&1),
    })
}

fn entry_key(prefix: &[u8], id: u32) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn state_key(id: u32) -> Vec<u8> {
    entry_key(STATE_PREFIX, id)
}

/// Every sequence, by name.
#[derive(Debug)]
pub struct Sequences {
    store: Store,
    by_name: RwLock<BTreeMap<String, Arc<Sequence>>>,
}

impl Sequences {
    /// Loads every sequence from `store`.
    pub fn load(store: Store) -> Result<Self> {
        let mut by_name = BTreeMap::new();
        let mut defs: Vec<SequenceDef> = Vec::new();
        store.scan_prefix::<Error>(DEF_PREFIX, |_, value| {
            defs.push(serde_json::from_slice(value).map_err(|e| {
                crate::storage::StorageError::Corrupt(format!("sequence definition: {e}"))
            })?);
            Ok(true)
        })?;
        for def in defs {
            let position = store
                .get(&state_key(def.id))?
                .as_deref()
                .and_then(decode)
                .unwrap_or(Position {
                    last: def.start,
                    called: false,
                });
            by_name.insert(
                def.name.clone(),
                Arc::new(Sequence {
                    def,
                    position: Arc::new(Mutex::new(position)),
                }),
            );
        }
        Ok(Self {
            store,
            by_name: RwLock::new(by_name),
        })
    }

    /// The store positions are written to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The sequence called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Sequence>> {
        self.read().get(name).cloned()
    }

    /// The sequence a `nextval('name')` argument names (`name`, `public.name`, `"Name"`).
    pub fn resolve(&self, text: &str) -> Result<Arc<Sequence>> {
        let name = resolve_name(text);
        self.get(&name)
            .ok_or_else(|| Error::coded("42P01", format!("relation \"{name}\" does not exist")))
    }

    /// The names of all sequences.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// All sequences, by name.
    pub fn all(&self) -> Vec<Arc<Sequence>> {
        self.read().values().cloned().collect()
    }

    /// The sequences owned by columns of `table`.
    pub fn owned_by(&self, table: &str) -> Vec<Arc<Sequence>> {
        self.read()
            .values()
            .filter(|s| s.def.owned_by.as_ref().is_some_and(|(t, _)| t == table))
            .cloned()
            .collect()
    }

    /// Adds the writes that create `def` to `batch`; [`Sequences::insert`] makes it visible
    /// once the batch is written.
    pub fn create_in(&self, batch: &mut WriteBatch, def: SequenceDef) -> Result<Arc<Sequence>> {
        def.validate()?;
        let position = Position {
            last: def.start,
            called: false,
        };
        batch.put(
            entry_key(DEF_PREFIX, def.id),
            serde_json::to_vec(&def)
                .map_err(|e| Error::Internal(format!("encoding a sequence: {e}")))?,
        );
        batch.put(state_key(def.id), encode(position));
        Ok(Arc::new(Sequence {
            def,
            position: Arc::new(Mutex::new(position)),
        }))
    }

    /// Adds the writes that make `sequence` owned by `owner` (a table and column) to `batch`;
    /// returns the sequence to [`Sequences::insert`] once the batch is written. It keeps its
    /// position.
    pub fn reown_in(
        &self,
        batch: &mut WriteBatch,
        sequence: &Sequence,
        owner: Option<(String, String)>,
    ) -> Result<Arc<Sequence>> {
        let mut def = sequence.def.clone();
        def.owned_by = owner;
        batch.put(
            entry_key(DEF_PREFIX, def.id),
            serde_json::to_vec(&def)
                .map_err(|e| Error::Internal(format!("encoding a sequence: {e}")))?,
        );
        Ok(Arc::new(Sequence {
            def,
            position: sequence.position.clone(),
        }))
    }

    /// Makes a created sequence visible.
    pub fn insert(&self, sequence: Arc<Sequence>) {
        self.write().insert(sequence.def.name.clone(), sequence);
    }

    /// Adds the writes that drop `sequence` to `batch`.
    pub fn drop_in(&self, batch: &mut WriteBatch, sequence: &Sequence) {
        batch.delete(entry_key(DEF_PREFIX, sequence.def.id));
        batch.delete(state_key(sequence.def.id));
    }

    /// Forgets a dropped sequence.
    pub fn remove(&self, name: &str) {
        self.write().remove(name);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Sequence>>> {
        self.by_name.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Sequence>>> {
        self.by_name.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// `nextval('...')` of the sequence with catalog key `key`, its name quoted where it must be
/// for [`resolve_name`] to read it back (`nextval('"Sales"."t_id_seq"')`).
pub fn nextval_default(key: &str) -> String {
    let quote = super::pg_overlay::quote_ident;
    let text = match key.split_once('.') {
        Some((schema, name)) => format!("{}.{}", quote(schema), quote(name)),
        None => quote(key),
    };
    format!("nextval('{}')", text.replace('\'', "''"))
}

/// A relation name as text (`name`, `public.name`, `schema.name`, `"Name"`) as the catalog keys
/// it: unquoted parts folded to lower case, `public.` dropped.
pub fn resolve_name(text: &str) -> String {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut quoted = false;
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                part.push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut part)),
            c if quoted => part.push(c),
            c => part.extend(c.to_lowercase()),
        }
    }
    parts.push(part);
    match parts.as_slice() {
        [.., schema, name] => crate::catalog::schema::qualify(schema, name),
        [name] => name.clone(),
        [] => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        (dir, store)
    }

    fn create(sequences: &Sequences, def: SequenceDef) -> Arc<Sequence> {
        let mut batch = WriteBatch::default();
        let sequence = sequences.create_in(&mut batch, def).unwrap();
        sequences.store().write(batch).unwrap();
        sequences.insert(sequence.clone());
        sequence
    }

    #[test]
    fn values_in_order_across_restarts() {
        let (_dir, store) = store();
        let sequences = Sequences::load(store.clone()).unwrap();
        let mut def = SequenceDef::counting("s".into(), "bigint").unwrap();
        def.id = 7;
        def.start = 10;
        def.min = 1;
        def.increment = 5;
        let s = create(&sequences, def);
        assert_eq!(s.next(&store, 3).unwrap(), vec![10, 15, 20]);
        assert_eq!(s.last_value(), Some(20));
        let reloaded = Sequences::load(store.clone()).unwrap();
        let s = reloaded.resolve("public.S").unwrap();
        assert_eq!(s.next(&store, 1).unwrap(), vec![25]);
        s.set(&store, 100, false).unwrap();
        assert_eq!(s.next(&store, 2).unwrap(), vec![100, 105]);
        assert_eq!(reloaded.resolve("nope").unwrap_err().sqlstate(), "42P01");
    }

    #[test]
    fn the_end_is_an_error_unless_it_cycles() {
        let (_dir, store) = store();
        let sequences = Sequences::load(store.clone()).unwrap();
        let mut def = SequenceDef::counting("small".into(), "smallint").unwrap();
        def.id = 1;
        def.max = 3;
        let s = create(&sequences, def.clone());
        assert_eq!(s.next(&store, 3).unwrap(), vec![1, 2, 3]);
        assert_eq!(s.next(&store, 1).unwrap_err().sqlstate(), "2200H");
        def.id = 2;
        def.name = "round".into();
        def.cycle = true;
        let s = create(&sequences, def);
        assert_eq!(s.next(&store, 5).unwrap(), vec![1, 2, 3, 1, 2]);
        let mut bad = SequenceDef::counting("bad".into(), "integer").unwrap();
        bad.increment = 0;
        assert!(
            sequences
                .create_in(&mut WriteBatch::default(), bad)
                .is_err()
        );
    }
}
