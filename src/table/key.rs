//! From `WHERE key = value` to a stored row's key: the one codec for point reads.
//!
//! An ad-hoc scan with filters ([`super::provider`]), a prepared point lookup
//! (`session::lookup`, whose values may be parameters bound later) and a foreign-key check all
//! find rows by the values their conditions pin a table's primary key (or an index) to. They
//! share [`column_equals`] (which conjuncts pin a column), [`values_for`] (whether the pinned
//! columns are exactly a key's, in its order) and [`Table::key_for_values`] (the storage key
//! those values give).

use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};

use super::Table;
use crate::error::Result;

/// `column = value` or `value = column`: the column and the other side.
pub fn column_equals(expr: &Expr) -> Option<(&Column, &Expr)> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    }) = expr
    else {
        return None;
    };
    match (left.as_ref(), right.as_ref()) {
        (Expr::Column(c), value) | (value, Expr::Column(c))
            if !matches!(value, Expr::Column(_)) =>
        {
            Some((c, value))
        }
        _ => None,
    }
}

/// The values `pinned` (column position, value) gives `columns`, in `columns`' order, when it
/// gives every one of them; `None` when one is missing or `columns` is empty.
pub fn values_for<V: Clone>(columns: &[usize], pinned: &[(usize, V)]) -> Option<Vec<V>> {
    if columns.is_empty() {
        return None;
    }
    columns
        .iter()
        .map(|c| pinned.iter().find(|(p, _)| p == c).map(|(_, v)| v.clone()))
        .collect()
}

impl Table {
    /// The storage key of the row whose primary-key columns have `values` (in key order), or
    /// `None` when no row can have it (a NULL, or a value that does not fit the column's type).
    pub fn key_for_values(&self, values: &[ScalarValue]) -> Result<Option<Vec<u8>>> {
        let def = self.def();
        let schema = self.full_schema();
        let mut columns = Vec::with_capacity(values.len());
        for (value, &index) in values.iter().zip(&def.primary_key) {
            let target = schema.field(index).data_type();
            let Ok(value) = value.cast_to(target) else {
                return Ok(None);
            };
            if value.is_null() {
                return Ok(None);
            }
            columns.push(value.to_array_of_size(1)?);
        }
        let keys = self.codec().encode_keys(&columns)?;
        Ok(Some(self.row_key(keys.row(0).as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, lit, placeholder};

    use super::*;

    #[test]
    fn a_condition_pins_a_column_either_way_round() {
        let e = col("id").eq(lit(42i64));
        let (c, v) = column_equals(&e).expect("pins id");
        assert_eq!((c.name.as_str(), v), ("id", &lit(42i64)));
        let e = placeholder("$1").eq(col("id"));
        assert_eq!(column_equals(&e).map(|(c, _)| c.name.as_str()), Some("id"));
        assert!(column_equals(&col("a").eq(col("b"))).is_none());
        assert!(column_equals(&col("a").gt(lit(1))).is_none());
    }

    #[test]
    fn values_follow_the_key_order_and_need_every_column() {
        let pinned = [(3, "c"), (1, "a")];
        assert_eq!(values_for(&[1, 3], &pinned), Some(vec!["a", "c"]));
        assert_eq!(values_for(&[3, 1], &pinned), Some(vec!["c", "a"]));
        assert_eq!(values_for(&[1, 2], &pinned), None);
        assert_eq!(values_for::<&str>(&[], &pinned), None);
    }
}
