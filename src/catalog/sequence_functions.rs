//! `nextval`, `currval`, `setval`, `lastval` and `pg_get_serial_sequence`.
//!
//! `currval` and `lastval` answer with what `nextval` gave in the same session, as in
//! PostgreSQL: a query runs with its connection's [`SessionSequences`] among its configuration
//! extensions (sessions that have none, such as a view's dataflow, cannot call them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use super::sequence::{Sequence, Sequences};
use crate::error::Error;

/// The values `nextval` gave in one session, for `currval` and `lastval`.
#[derive(Debug, Clone, Default)]
pub struct SessionSequences(Arc<Mutex<SessionValues>>);

#[derive(Debug, Default)]
struct SessionValues {
    by_sequence: HashMap<u32, i64>,
    last: Option<i64>,
}

impl SessionSequences {
    fn record(&self, sequence: &Sequence, value: i64) {
        let mut values = self.0.lock().unwrap_or_else(|e| e.into_inner());
        values.by_sequence.insert(sequence.def().id, value);
        values.last = Some(value);
    }

    fn current(&self, sequence: &Sequence) -> Option<i64> {
        let values = self.0.lock().unwrap_or_else(|e| e.into_inner());
        values.by_sequence.get(&sequence.def().id).copied()
    }

    fn last(&self) -> Option<i64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).last
    }
}

// A copy shares the session's values: every query of a session adds to the same ones.
crate::catalog::pg_functions::session_extension!(SessionSequences, "augur_sequences");

/// The sequence functions over `sequences`.
pub fn functions(sequences: &Arc<Sequences>) -> Vec<ScalarUDF> {
    [
        Kind::Nextval,
        Kind::Currval,
        Kind::Setval,
        Kind::Lastval,
        Kind::SerialSequence,
    ]
    .into_iter()
    .map(|kind| {
        ScalarUDF::new_from_impl(SequenceFunction {
            kind,
            sequences: sequences.clone(),
            signature: kind.signature(),
        })
    })
    .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Nextval,
    Currval,
    Setval,
    Lastval,
    /// `pg_get_serial_sequence(table, column)`: the sequence a column's default uses.
    SerialSequence,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Nextval => "nextval",
            Kind::Currval => "currval",
            Kind::Setval => "setval",
            Kind::Lastval => "lastval",
            Kind::SerialSequence => "pg_get_serial_sequence",
        }
    }

    fn signature(self) -> Signature {
        let types = match self {
            Kind::Nextval | Kind::Currval => vec![TypeSignature::Exact(vec![DataType::Utf8])],
            Kind::Setval => vec![
                TypeSignature::Exact(vec![DataType::Utf8, DataType::Int64]),
                TypeSignature::Exact(vec![DataType::Utf8, DataType::Int64, DataType::Boolean]),
            ],
            Kind::Lastval => vec![TypeSignature::Nullary],
            Kind::SerialSequence => {
                vec![TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8])]
            }
        };
        Signature::one_of(types, Volatility::Volatile)
    }
}

#[derive(Debug)]
struct SequenceFunction {
    kind: Kind,
    sequences: Arc<Sequences>,
    signature: Signature,
}

impl PartialEq for SequenceFunction {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && Arc::ptr_eq(&self.sequences, &other.sequences)
    }
}

impl Eq for SequenceFunction {}

impl std::hash::Hash for SequenceFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
    }
}

fn not_in_session(what: String) -> DataFusionError {
    DataFusionError::from(Error::coded(
        "55000",
        format!("{what} is not yet defined in this session"),
    ))
}

impl SequenceFunction {
    /// `pg_get_serial_sequence(table, column)`: `schema.name` of the sequence the column owns
    /// (SERIAL, identity, `OWNED BY`), NULL when it owns none.
    fn serial_sequence(
        &self,
        args: &[ColumnarValue],
        rows: usize,
    ) -> datafusion::common::Result<ColumnarValue> {
        let tables = args[0].to_array(rows)?;
        let columns = args[1].to_array(rows)?;
        let (tables, columns) = (tables.as_string::<i32>(), columns.as_string::<i32>());
        let sequences = self.sequences.all();
        let out: datafusion::arrow::array::StringArray = (0..rows)
            .map(|i| {
                if tables.is_null(i) || columns.is_null(i) {
                    return None;
                }
                let table = super::sequence::resolve_name(tables.value(i));
                let column = columns.value(i).to_lowercase();
                sequences
                    .iter()
                    .find(|s| {
                        s.def()
                            .owned_by
                            .as_ref()
                            .is_some_and(|(t, c)| *t == table && *c == column)
                    })
                    .map(|s| {
                        let (schema, name) = crate::catalog::schema::split(&s.def().name);
                        format!("{schema}.{name}")
                    })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

impl ScalarUDFImpl for SequenceFunction {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(match self.kind {
            Kind::SerialSequence => DataType::Utf8,
            _ => DataType::Int64,
        })
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let session = args.config_options.extensions.get::<SessionSequences>();
        let rows = args.number_rows;
        if self.kind == Kind::Lastval {
            let value = session
                .and_then(SessionSequences::last)
                .ok_or_else(|| not_in_session("lastval".into()))?;
            return Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(value))));
        }
        if self.kind == Kind::SerialSequence {
            return self.serial_sequence(&args.args, rows);
        }
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        let names = arrays[0].as_string::<i32>();
        let store = self.sequences.store();
        // A run of rows naming one sequence is served together: one write for a whole batch.
        let mut out: Vec<Option<i64>> = Vec::with_capacity(rows);
        let mut i = 0;
        while i < rows {
            if names.is_null(i) {
                out.push(None);
                i += 1;
                continue;
            }
            let name = names.value(i);
            let run = (i..rows)
                .take_while(|&j| names.is_valid(j) && names.value(j) == name)
                .count();
            let sequence = self.sequences.resolve(name)?;
            match self.kind {
                Kind::Nextval => {
                    let values = sequence.next(store, run)?;
                    if let (Some(session), Some(last)) = (session, values.last()) {
                        session.record(&sequence, *last);
                    }
                    out.extend(values.into_iter().map(Some));
                }
                Kind::Currval => {
                    let value = session.and_then(|s| s.current(&sequence)).ok_or_else(|| {
                        not_in_session(format!("currval of sequence \"{}\"", sequence.def().name))
                    })?;
                    out.extend(std::iter::repeat_n(Some(value), run));
                }
                Kind::Setval => {
                    for j in i..i + run {
                        let values =
                            arrays[1].as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                        if values.is_null(j) {
                            out.push(None);
                            continue;
                        }
                        let called = arrays
                            .get(2)
                            .map(|a| a.as_boolean())
                            .is_none_or(|a| a.is_null(j) || a.value(j));
                        let value = sequence.set(store, values.value(j), called)?;
                        if let (Some(session), true) = (session, called) {
                            session.record(&sequence, value);
                        }
                        out.push(Some(value));
                    }
                }
                Kind::Lastval | Kind::SerialSequence => unreachable!("answered above"),
            }
            i += run;
        }
        let array: ArrayRef = Arc::new(Int64Array::from(out));
        Ok(ColumnarValue::Array(array))
    }
}
