//! # Augur
//!
//! A SQL-first streaming database for ML features and predictions. One server process speaks the
//! PostgreSQL wire protocol; DataFusion plans and evaluates every query; materialized views are
//! kept up to date incrementally by a dataflow of change batches; RocksDB holds the catalog,
//! every row and every operator's state.
//!
//! # Layout
//!
//! Each module is one layer; dependencies point one way, from the wire down to storage:
//!
//! ```text
//! server (pgwire only) → session (statement dispatch) → planner → sql · catalog · model · stream · source · sink · table → storage, common
//! ```
//!
//! - [`server`]: the PostgreSQL wire protocol (pgwire): startup and authentication, the simple and
//!   extended query protocols, COPY, cancel requests. It turns [`Error`]s into SQLSTATE responses
//!   and nothing else knows about the wire.
//! - [`session`]: one per connection. Parses a statement, routes it (DDL to the catalog, DML to
//!   the table writer, queries to DataFusion) and returns a [`session::Output`].
//! - [`sql`]: parsing (sqlparser with PostgreSQL compatibility rewrites), the window table
//!   functions (TUMBLE, HOP, SESSION), checked integer arithmetic, and the planning helpers for
//!   DML.
//! - [`catalog`]: table definitions, persisted in RocksDB, exposed to DataFusion as the `public`
//!   schema of the `augur` catalog, with `pg_catalog` from `datafusion-pg-catalog` beside it.
//! - [`planner`]: a view's or sink's query from DataFusion's logical plan to its operators:
//!   analyse, rewrite `NOW()` into event time, optimise, build the operator tree.
//! - [`stream`]: incremental dataflow: change batches (rows with weights ±1), one operator per
//!   file (filter, project, aggregate, join, union, top-n, windows, materialize), the state
//!   table they keep their state in, and the runtime that commits every view in epochs.
//! - [`model`]: ONNX models stored in RocksDB and run by ONNX Runtime (loaded at run time from
//!   the `onnxruntime` Python package's library) inside SQL: `PREDICT`, `PREDICT_LABEL`,
//!   `PREDICT_PROBA`, one run per Arrow batch.
//! - [`source`]: rows from outside, addressed by position so they can be replayed (datagen,
//!   nexmark, Kafka, files and S3).
//! - [`sink`]: views' changes leaving Augur epoch by epoch, through an outbox committed with
//!   each epoch (Kafka topics, files and S3).
//! - [`table`]: durable tables: row encoding with Arrow's row format, the DataFusion
//!   `TableProvider` that scans them (an equality filter on the whole primary key becomes a point
//!   read), and the writer that applies INSERT / UPDATE / DELETE atomically.
//! - [`storage`]: the RocksDB store. Imports nothing of Augur.
//! - [`common`]: leaf helpers every layer uses (SQL types to Arrow types, event-time
//!   arithmetic, shared names). Imports nothing of Augur but [`Error`].
//!
//! # Data flow of a statement
//!
//! ```text
//! client ──pgwire──> server ──> session ──parse──> sql
//!                                  │ CREATE/DROP TABLE ──> catalog ──> storage (one WriteBatch)
//!                                  │ INSERT/UPDATE/DELETE/COPY ──> table::writer ──> storage
//!                                  │        └─ rows + change log, one batch ─┐
//!                                  │ CREATE MATERIALIZED VIEW ──> planner ──> stream operators
//!                                  │                                          ▼
//!                                  │ sources ──> stream::runtime: operators, a barrier per epoch,
//!                                  │             state + view rows + positions, one batch ──> storage
//!                                  │ SELECT ──> DataFusion ──> table::provider ──> storage
//!                                  │            (tables as of now, views as of the last epoch)
//!                                  ▼
//!                        Output (rows as Arrow batches, or a command tag)
//! ```

pub mod catalog;
pub mod common;
pub mod config;
pub mod error;
pub mod model;
pub mod planner;
pub mod server;
pub mod session;
pub mod sink;
pub mod source;
pub mod sql;
pub mod storage;
pub mod stream;
pub mod table;

pub use config::Config;
pub use error::{Error, Result};
