//! Leaf helpers that every layer uses and that import nothing of Augur but [`crate::error`]:
//! SQL types and their Arrow types ([`types`]), timestamps along event time ([`time`]), and the
//! names the catalog, tables and the wire agree on ([`names`]). Kept here so that `table`,
//! `model`, `source` and `stream` need not import `sql` or `catalog` for them.

pub mod names;
pub mod time;
pub mod types;
