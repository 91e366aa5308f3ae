//! A loaded model: its signature, a pool of ONNX Runtime sessions, and the run of one Arrow
//! batch (arguments cast to the inputs' types, one tensor per input, one run, the needed output
//! read back).

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, Float32Type, Float64Type, Int32Type, Int64Type,
};
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{RunOptions, Session, SessionOutputs};
use ort::value::{DynValue, Tensor, ValueType};

use super::runtime::Failure;
use super::scores::{Scores, Want};
use super::signature::{Elem, InputSpec, Signature, Task};

/// A loaded model: its bytes, its signature and a pool of ONNX Runtime sessions. A session
/// runs one batch at a time (`Session::run` takes `&mut self`); concurrent queries take
/// different sessions from the pool, which grows to the number of batches run at once.
pub struct Loaded {
    bytes: Arc<[u8]>,
    /// What it takes and gives.
    pub signature: Signature,
    idle: Mutex<Vec<Session>>,
    threads: usize,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("bytes", &self.bytes.len())
            .field("signature", &self.signature)
            .finish()
    }
}

fn new_session(env: &Environment, bytes: &[u8], threads: usize) -> Result<Session, Failure> {
    Session::builder(env)
        .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::All)?))
        .and_then(|b| Ok(b.with_intra_threads(threads)?))
        .and_then(|b| Ok(b.with_inter_threads(1)?))
        .and_then(|mut b| b.commit_from_memory(bytes))
        .map_err(|e| format!("ONNX Runtime cannot load the model: {e}"))
}

impl Loaded {
    /// Loads a model from its bytes, with `threads` ONNX Runtime threads per session. Fails on
    /// what ONNX Runtime refuses; a model PREDICT cannot use still loads (its signature says
    /// why).
    pub fn new(env: &Environment, bytes: Arc<[u8]>, threads: usize) -> Result<Self, Failure> {
        let session = new_session(env, &bytes, threads)?;
        let inputs: Vec<(String, ValueType)> = session
            .inputs()
            .iter()
            .map(|o| (o.name().to_string(), o.dtype().clone()))
            .collect();
        let outputs: Vec<(String, ValueType)> = session
            .outputs()
            .iter()
            .map(|o| (o.name().to_string(), o.dtype().clone()))
            .collect();
        let signature = Signature::new(&inputs, &outputs);
        let mut loaded = Self {
            bytes,
            signature,
            idle: Mutex::new(vec![session]),
            threads,
        };
        loaded.count_classes(env);
        Ok(loaded)
    }

    /// Where the outputs do not say how many classes there are (ZipMap), one trial row of
    /// zeros tells.
    fn count_classes(&mut self, env: &Environment) {
        let Ok(Task::Classifier { classes: None, .. }) = &self.signature.task else {
            return;
        };
        let Some(arity) = self.signature.arity() else {
            return;
        };
        let args: Vec<ArrayRef> = (0..arity)
            .map(|n| -> ArrayRef {
                match self.signature.arg_elem(n) {
                    Some(Elem::Text) => {
                        Arc::new(datafusion::arrow::array::StringArray::from(vec![""]))
                    }
                    _ => Arc::new(datafusion::arrow::array::Float64Array::from(vec![0.0])),
                }
            })
            .collect();
        match self.run(env, Want::Proba, &args, 1) {
            Ok(array) => {
                let list = array.as_list::<i32>();
                let classes = list.value_length(0) as usize;
                if let Ok(Task::Classifier { classes: c, .. }) = &mut self.signature.task {
                    *c = Some(classes);
                }
            }
            Err(e) => tracing::warn!(error = %e, "a trial run of a model failed"),
        }
    }

    /// The model's bytes.
    pub fn bytes(&self) -> &Arc<[u8]> {
        &self.bytes
    }

    fn take_session(&self, env: &Environment) -> Result<Session, Failure> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(session) => Ok(session),
            None => new_session(env, &self.bytes, self.threads),
        }
    }

    fn give_back(&self, session: Session) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(session);
    }

    /// Runs the model over `rows` rows of arguments (`args`, one array per argument, in order)
    /// and returns what `want` asks for: `double precision` for [`Want::Value`], `bigint` or
    /// `text` for [`Want::Label`], `double precision[]` for [`Want::Proba`]. A row with a NULL
    /// argument gets NULL and is not given to the model. One ONNX Runtime run for the batch.
    pub fn run(
        &self,
        env: &Environment,
        want: Want,
        args: &[ArrayRef],
        rows: usize,
    ) -> Result<ArrayRef, Failure> {
        let inputs = self.signature.inputs.as_ref().map_err(Clone::clone)?;
        let task = self.signature.task.as_ref().map_err(Clone::clone)?;
        if Some(args.len()) != self.signature.arity() {
            return Err(format!(
                "the model takes {}; {} given",
                self.signature.expects(),
                args.len()
            ));
        }
        // Logical nulls: a NULL literal is a `NullArray`, which has no null buffer.
        let nulls: Vec<_> = args.iter().filter_map(|a| a.logical_nulls()).collect();
        let valid: Vec<usize> = (0..rows)
            .filter(|&row| nulls.iter().all(|n| n.is_valid(row)))
            .collect();
        let output = match (want, task) {
            (Want::Value, Task::Regressor { output }) => output.clone(),
            (Want::Value | Want::Proba, Task::Classifier { proba, .. }) => {
                proba.output().to_string()
            }
            (
                Want::Label,
                Task::Classifier {
                    label: Some((name, _)),
                    ..
                },
            ) => name.clone(),
            (Want::Label, Task::Classifier { proba, .. }) => proba.output().to_string(),
            (_, Task::Regressor { .. }) => {
                return Err("the model is a regressor: use PREDICT".into());
            }
        };
        let scores = if valid.is_empty() {
            Scores::empty(want, task)
        } else {
            let feeds = feeds(inputs, args, &valid)?;
            let mut session = self.take_session(env)?;
            let result = run_session(&mut session, feeds, &output, |outputs| {
                Scores::read(outputs, &output, want, task, valid.len())
            });
            // A session whose run failed is still usable: ONNX Runtime keeps no state.
            self.give_back(session);
            result?
        };
        scores.into_array(&valid, rows)
    }
}

/// Runs `session` over `feeds` computing only output `output`, and reads the result.
fn run_session<R>(
    session: &mut Session,
    feeds: Vec<(String, DynValue)>,
    output: &str,
    read: impl FnOnce(SessionOutputs<'_>) -> Result<R, Failure>,
) -> Result<R, Failure> {
    let options = RunOptions::new()
        .map_err(|e| e.to_string())?
        .with_outputs(ort::session::OutputSelector::no_default().with(output));
    let outputs = session
        .run_with_options(feeds, &options)
        .map_err(|e| format!("ONNX Runtime failed: {e}"))?;
    read(outputs)
}

/// The tensors of one batch: argument columns cast to each input's type and laid out row by
/// row, for the rows in `valid`.
fn feeds(
    inputs: &[InputSpec],
    args: &[ArrayRef],
    valid: &[usize],
) -> Result<Vec<(String, DynValue)>, Failure> {
    let n = valid.len();
    let mut next = 0;
    let mut feeds = Vec::with_capacity(inputs.len());
    for input in inputs {
        let columns: Vec<ArrayRef> = args[next..next + input.width]
            .iter()
            .map(|a| cast(a, &input.elem.arrow()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("argument for input {}: {e}", input.name))?;
        next += input.width;
        let shape: Vec<i64> = if input.rank == 1 {
            vec![n as i64]
        } else {
            vec![n as i64, input.width as i64]
        };
        let value: Result<DynValue, ort::Error> = match input.elem {
            Elem::F32 => tensor::<Float32Type>(shape, &columns, valid),
            Elem::F64 => tensor::<Float64Type>(shape, &columns, valid),
            Elem::I64 => tensor::<Int64Type>(shape, &columns, valid),
            Elem::I32 => tensor::<Int32Type>(shape, &columns, valid),
            Elem::Bool => {
                let columns: Vec<_> = columns.iter().map(|c| c.as_boolean()).collect();
                let data = interleave(&columns, valid, |c, i| c.value(i));
                Tensor::from_array((shape, data)).map(|t| t.into_dyn())
            }
            Elem::Text => {
                let columns: Vec<_> = columns.iter().map(|c| c.as_string::<i32>()).collect();
                // ONNX Runtime copies the text; the tensor data must own it.
                let data = interleave(&columns, valid, |c, i| c.value(i).to_string());
                Tensor::from_string_array((shape, data.as_slice())).map(|t| t.into_dyn())
            }
        };
        feeds.push((
            input.name.clone(),
            value.map_err(|e| format!("input {}: {e}", input.name))?,
        ));
    }
    Ok(feeds)
}

/// A tensor of primitive type `T` from `columns` (already cast to `T`) at rows `valid`.
fn tensor<T>(shape: Vec<i64>, columns: &[ArrayRef], valid: &[usize]) -> Result<DynValue, ort::Error>
where
    T: ArrowPrimitiveType,
    T::Native: ort::value::PrimitiveTensorElementType + std::fmt::Debug,
{
    let values: Vec<&[T::Native]> = columns
        .iter()
        .map(|c| c.as_primitive::<T>().values().as_ref())
        .collect();
    let data = interleave(&values, valid, |v, i| v[i]);
    Tensor::from_array((shape, data)).map(|t| t.into_dyn())
}

/// Row-major values of `columns` at rows `valid`: row 0's columns, then row 1's, ...
fn interleave<C, T: Default + Clone>(
    columns: &[C],
    valid: &[usize],
    get: impl Fn(&C, usize) -> T,
) -> Vec<T> {
    let width = columns.len();
    let mut data = vec![T::default(); valid.len() * width];
    for (j, column) in columns.iter().enumerate() {
        for (r, &row) in valid.iter().enumerate() {
            data[r * width + j] = get(column, row);
        }
    }
    data
}
