//! Foreign keys checked at the end of each statement that writes a table (see
//! [`crate::table::foreign_key`]): the rows it writes name existing parent rows, and the parent
//! keys it removes are referenced by no row.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::ScalarValue;

use super::Database;
use crate::error::{Error, Result};
use crate::table::Table;
use crate::table::foreign_key::ForeignKeyDef;
use crate::table::writer::TableChanges;

/// A new table's foreign keys with their referenced columns filled in and checked: the parent
/// exists (or is the table itself), is not temporary under a permanent table, and the
/// referenced columns are its primary key.
pub fn resolve(db: &Database, def: &mut crate::table::TableDef) -> Result<()> {
    let own_key: Vec<String> = if def.has_row_id() {
        Vec::new()
    } else {
        def.primary_key
            .iter()
            .map(|&i| def.columns[i].name.clone())
            .collect()
    };
    for fk in def.foreign_keys.iter_mut() {
        let (parent_key, parent_columns): (Vec<String>, Vec<String>) = if fk.parent == def.name {
            let columns = def.columns.iter().map(|c| c.name.clone()).collect();
            (own_key.clone(), columns)
        } else {
            let parent = db.catalog().table(&fk.parent).ok_or_else(|| {
                if db.catalog().view(&fk.parent).is_some() {
                    Error::coded(
                        "42809",
                        format!("referenced relation \"{}\" is not a table", fk.parent),
                    )
                } else {
                    Error::coded(
                        "42P01",
                        format!("relation \"{}\" does not exist", fk.parent),
                    )
                }
            })?;
            if parent.def().connector.is_some() {
                return Err(Error::NotSupported(format!(
                    "a foreign key referencing \"{}\", which its connector feeds (its rows \
                     change without checks)",
                    fk.parent
                )));
            }
            if parent.def().temporary && !def.temporary {
                return Err(Error::coded(
                    "42P16",
                    "constraints on permanent tables may reference only permanent tables",
                ));
            }
            let key = if parent.def().has_row_id() {
                Vec::new()
            } else {
                parent
                    .def()
                    .primary_key
                    .iter()
                    .map(|&i| parent.def().columns[i].name.clone())
                    .collect()
            };
            let columns = parent
                .def()
                .columns
                .iter()
                .map(|c| c.name.clone())
                .collect();
            (key, columns)
        };
        if fk.parent_columns.is_empty() {
            if parent_key.is_empty() {
                return Err(Error::coded(
                    "42830",
                    format!(
                        "there is no primary key for referenced table \"{}\"",
                        fk.parent
                    ),
                ));
            }
            fk.parent_columns = parent_key.clone();
        }
        for column in &fk.parent_columns {
            if !parent_columns.contains(column) {
                return Err(Error::UndefinedColumn(format!(
                    "column \"{column}\" referenced in foreign key constraint does not exist"
                )));
            }
        }
        if fk.columns.len() != fk.parent_columns.len() {
            return Err(Error::coded(
                "42830",
                "number of referencing and referenced columns for foreign key disagree",
            ));
        }
        let mut sorted = fk.parent_columns.clone();
        sorted.sort();
        let mut key = parent_key.clone();
        key.sort();
        if sorted != key {
            return Err(Error::NotSupported(format!(
                "a foreign key referencing columns of \"{}\" other than its primary key",
                fk.parent
            )));
        }
    }
    Ok(())
}

/// The tables with a foreign key referencing `table`, with those keys.
pub fn referencing(db: &Database, table: &Table) -> Vec<(Arc<Table>, ForeignKeyDef)> {
    let mut out = Vec::new();
    for name in db.catalog().table_names() {
        let Some(child) = db.catalog().table(&name) else {
            continue;
        };
        for fk in &child.def().foreign_keys {
            if fk.parent == table.name() {
                out.push((child.clone(), fk.clone()));
            }
        }
    }
    out
}

/// The positions among `child`'s stored columns of the referencing columns of `fk`, in the
/// order of the parent's primary key (`parent`'s).
fn in_key_order(child: &Table, parent: &Table, fk: &ForeignKeyDef) -> Result<Vec<usize>> {
    let names: Vec<String> = parent
        .def()
        .primary_key
        .iter()
        .map(|&i| {
            let key = &parent.def().columns[i].name;
            fk.parent_columns
                .iter()
                .position(|c| c == key)
                .map(|j| fk.columns[j].clone())
                .ok_or_else(|| Error::Internal(format!("foreign key {} lost its key", fk.name)))
        })
        .collect::<Result<_>>()?;
    positions(child, &names)
}

/// Positions of `names` among `table`'s stored columns.
fn positions(table: &Table, names: &[String]) -> Result<Vec<usize>> {
    names
        .iter()
        .map(|n| {
            table.full_schema().index_of(n).map_err(|_| {
                Error::Internal(format!(
                    "foreign key column {n} missing from {}",
                    table.name()
                ))
            })
        })
        .collect()
}

/// The values of `columns` in row `row`, or `None` where one is NULL (such a row references
/// nothing).
fn values_of(
    rows: &RecordBatch,
    columns: &[usize],
    row: usize,
) -> Result<Option<Vec<ScalarValue>>> {
    let mut values = Vec::with_capacity(columns.len());
    for &c in columns {
        let value = ScalarValue::try_from_array(rows.column(c), row)?;
        if value.is_null() {
            return Ok(None);
        }
        values.push(value);
    }
    Ok(Some(values))
}

fn describe(names: &[String], values: &[ScalarValue]) -> String {
    let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    format!("Key ({})=({})", names.join(", "), values.join(", "))
}

/// The rows `written` (whole rows of `table`, written by this statement) reference rows their
/// parents have, as the statement leaves them where the parent is `table` itself.
pub fn check_written(
    db: &Database,
    table: &Table,
    changes: &TableChanges<'_>,
    written: &[RecordBatch],
) -> Result<()> {
    for fk in &table.def().foreign_keys {
        let own = fk.parent == table.name();
        let parent = if own {
            None
        } else {
            Some(db.catalog().table(&fk.parent).ok_or_else(|| {
                Error::coded(
                    "42P01",
                    format!("relation \"{}\" does not exist", fk.parent),
                )
            })?)
        };
        let parent_table: &Table = parent.as_deref().unwrap_or(table);
        let columns = positions(table, &fk.columns)?;
        let keyed = in_key_order(table, parent_table, fk)?;
        // Each distinct referenced key (the referencing values, as declared) and the parent's
        // storage key for it (None where no parent row can have it).
        let mut seen: HashSet<Vec<ScalarValue>> = HashSet::new();
        let mut referenced: Vec<(Vec<ScalarValue>, Option<Vec<u8>>)> = Vec::new();
        for rows in written {
            for row in 0..rows.num_rows() {
                let Some(values) = values_of(rows, &columns, row)? else {
                    continue;
                };
                if seen.insert(values.clone()) {
                    let key_values = values_of(rows, &keyed, row)?.unwrap_or_default();
                    referenced.push((values, parent_table.key_for_values(&key_values)?));
                }
            }
        }
        let keys: Vec<Vec<u8>> = referenced.iter().filter_map(|(_, k)| k.clone()).collect();
        let mut present = if own {
            changes.has_keys(&keys)?
        } else {
            db.store()
                .multi_get(&keys)?
                .into_iter()
                .map(|v| v.is_some())
                .collect()
        }
        .into_iter();
        for (values, key) in &referenced {
            let found = key.is_some() && present.next().unwrap_or(false);
            if !found {
                return Err(Error::ForeignKeyViolation {
                    message: format!(
                        "insert or update on table \"{}\" violates foreign key constraint \"{}\"",
                        crate::common::names::split(table.name()).1,
                        fk.name
                    ),
                    detail: format!(
                        "{} is not present in table \"{}\".",
                        describe(&fk.columns, values),
                        crate::common::names::split(&fk.parent).1
                    ),
                });
            }
        }
    }
    Ok(())
}

/// No row references a key of `table` that this statement removed: the keys of `removed`
/// (whole rows of `table` it deleted or updated) that no row of `table` has afterwards.
pub fn check_removed(
    db: &Database,
    table: &Table,
    changes: &TableChanges<'_>,
    removed: &[RecordBatch],
) -> Result<()> {
    let children = referencing(db, table);
    if children.is_empty() || table.def().has_row_id() {
        return Ok(());
    }
    let key_columns = table.def().primary_key.clone();
    let mut gone: HashSet<Vec<ScalarValue>> = HashSet::new();
    for rows in removed {
        for (row, kept) in changes.taken(rows)?.into_iter().enumerate() {
            if !kept && let Some(values) = values_of(rows, &key_columns, row)? {
                gone.insert(values);
            }
        }
    }
    if gone.is_empty() {
        return Ok(());
    }
    let parent_types: Vec<_> = key_columns
        .iter()
        .map(|&i| table.full_schema().field(i).data_type().clone())
        .collect();
    for (child, fk) in children {
        let own = child.name() == table.name();
        let columns = in_key_order(&child, table, &fk)?;
        // The removed key row `row` of `rows` references, if it references one.
        let check = |rows: &RecordBatch, row: usize| -> Result<Option<Vec<ScalarValue>>> {
            let Some(values) = values_of(rows, &columns, row)? else {
                return Ok(None);
            };
            let values = values
                .iter()
                .zip(&parent_types)
                .map(|(v, t)| v.cast_to(t))
                .collect::<std::result::Result<Vec<_>, _>>();
            Ok(values.ok().filter(|values| gone.contains(values)))
        };
        let mut found: Option<Vec<ScalarValue>> = None;
        child.read_batches_with_keys(db.store(), None, 1024, |rows, keys| {
            for (row, key) in keys.iter().enumerate() {
                // The statement's own changes to a self-referencing table: rows it deleted
                // reference nothing, rows it wrote are checked below.
                if own && changes.changed(&child.row_key(key)) {
                    continue;
                }
                if let Some(values) = check(&rows, row)? {
                    found = Some(values);
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        if own && found.is_none() {
            'written: for rows in changes.written_rows()? {
                for row in 0..rows.num_rows() {
                    if let Some(values) = check(&rows, row)? {
                        found = Some(values);
                        break 'written;
                    }
                }
            }
        }
        if let Some(values) = found {
            let names: Vec<String> = key_columns
                .iter()
                .map(|&i| table.def().columns[i].name.clone())
                .collect();
            return Err(Error::ForeignKeyViolation {
                message: format!(
                    "update or delete on table \"{}\" violates foreign key constraint \"{}\" on table \"{}\"",
                    crate::common::names::split(table.name()).1,
                    fk.name,
                    crate::common::names::split(child.name()).1
                ),
                detail: format!(
                    "{} is still referenced from table \"{}\".",
                    describe(&names, &values),
                    crate::common::names::split(child.name()).1
                ),
            });
        }
    }
    Ok(())
}
