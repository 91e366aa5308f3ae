//! ONNX Runtime: finding and loading its library, a model's signature (what goes in, what comes
//! out, what kind of model it is), a pool of sessions, and the run of one Arrow batch.
//!
//! The library is loaded at run time (`ort`'s `load-dynamic`), from the `onnxruntime` Python
//! package's `capi/libonnxruntime.so.*`: the same runtime data scientists validate their models
//! with, and nothing to download when Augur is built.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, Float32Type, Float64Type, Int32Type, Int64Type,
};
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{RunOptions, Session, SessionOutputs};
use ort::value::{DynMapValueType, DynValue, Tensor, TensorElementType, ValueType};

/// Why something about a model failed, in words for the user.
pub type Failure = String;

static ENVIRONMENT: OnceLock<Result<Environment, Failure>> = OnceLock::new();

/// The file names ONNX Runtime's library has (`libonnxruntime.so.1.31.1`, ...).
fn is_library(name: &str) -> bool {
    name.starts_with("libonnxruntime.so")
        || name == "libonnxruntime.dylib"
        || (name.starts_with("libonnxruntime.") && name.ends_with(".dylib"))
}

/// The library in directory `dir`, if there is one.
fn library_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| is_library(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    found.sort();
    found.pop()
}

/// `<root>/lib/python3*/site-packages/onnxruntime/capi`: where pip puts the library.
fn site_packages_library(root: &Path) -> Option<PathBuf> {
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(root.join("lib"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path())
        .collect();
    pythons.sort();
    pythons
        .iter()
        .rev()
        .find_map(|p| library_in(&p.join("site-packages/onnxruntime/capi")))
}

/// Where the library is looked for, in order: `explicit` (`--onnxruntime`, a file or a
/// directory), `ORT_DYLIB_PATH`, then a `.venv` in the working directory or next to the
/// executable (where `scripts/start.sh` installs it), then the user's pip directory.
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf, Failure> {
    let named = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from));
    if let Some(path) = named {
        if path.is_dir() {
            return library_in(&path)
                .ok_or_else(|| format!("no libonnxruntime in {}", path.display()));
        }
        if path.is_file() {
            return Ok(path);
        }
        return Err(format!("{} does not exist", path.display()));
    }
    let mut roots = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd.join(".venv"));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(|dir| dir.join(".venv")));
    }
    if let Some(home) = std::env::var_os("HOME") {
        roots.push(PathBuf::from(home).join(".local"));
    }
    roots
        .iter()
        .find_map(|root| site_packages_library(root))
        .ok_or_else(|| "no libonnxruntime found in ORT_DYLIB_PATH or a .venv".to_string())
}

/// The process's ONNX Runtime environment, loading the library on first use. One per process:
/// the first caller's `explicit` path decides which library.
pub fn environment(explicit: Option<&Path>) -> Result<&'static Environment, Failure> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = find_library(explicit)?;
            let env = ort::init_from(&path)
                .map_err(|e| format!("cannot load {}: {e}", path.display()))?
                .with_name("augur")
                .build()
                .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", path.display()))?;
            env.set_log_level(ort::logging::LogLevel::Error);
            tracing::info!(library = %path.display(), "ONNX Runtime loaded");
            Ok(env)
        })
        .as_ref()
        .map_err(|e| {
            format!(
                "ONNX Runtime is not available: {e}. Install it with \
                 `python3 -m venv .venv && .venv/bin/pip install onnxruntime` where Augur runs \
                 (scripts/start.sh does), or point ORT_DYLIB_PATH or --onnxruntime at \
                 libonnxruntime.so"
            )
        })
}

/// The element type of a model input, as far as PREDICT can fill it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    /// `float`.
    F32,
    /// `double`.
    F64,
    /// `int64`.
    I64,
    /// `int32`.
    I32,
    /// `bool`.
    Bool,
    /// `string`.
    Text,
}

impl Elem {
    fn of(ty: TensorElementType) -> Option<Self> {
        Some(match ty {
            TensorElementType::Float32 => Elem::F32,
            TensorElementType::Float64 => Elem::F64,
            TensorElementType::Int64 => Elem::I64,
            TensorElementType::Int32 => Elem::I32,
            TensorElementType::Bool => Elem::Bool,
            TensorElementType::String => Elem::Text,
            _ => return None,
        })
    }

    /// The SQL name of the type.
    pub fn sql(self) -> &'static str {
        match self {
            Elem::F32 => "real",
            Elem::F64 => "double precision",
            Elem::I64 => "bigint",
            Elem::I32 => "integer",
            Elem::Bool => "boolean",
            Elem::Text => "text",
        }
    }

    /// The Arrow type an argument is cast to.
    fn arrow(self) -> DataType {
        match self {
            Elem::F32 => DataType::Float32,
            Elem::F64 => DataType::Float64,
            Elem::I64 => DataType::Int64,
            Elem::I32 => DataType::Int32,
            Elem::Bool => DataType::Boolean,
            Elem::Text => DataType::Utf8,
        }
    }

    /// The type a `$n` parameter passed for this input gets: what clients most likely send.
    pub fn param_type(self) -> DataType {
        match self {
            Elem::F32 | Elem::F64 => DataType::Float64,
            Elem::I64 | Elem::I32 => DataType::Int64,
            Elem::Bool => DataType::Boolean,
            Elem::Text => DataType::Utf8,
        }
    }

    /// Whether an argument of type `ty` can be passed for this input: numbers and booleans to
    /// numeric and boolean inputs, text to text inputs, NULL to any.
    pub fn accepts(self, ty: &DataType) -> bool {
        let text = matches!(
            ty,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        );
        let number = ty.is_numeric() || matches!(ty, DataType::Boolean);
        matches!(ty, DataType::Null)
            || match self {
                Elem::Text => text,
                _ => number,
            }
    }
}

/// One input of a model: a tensor `[N]` (one argument) or `[N, width]` (`width` arguments).
#[derive(Debug, Clone)]
pub struct InputSpec {
    /// The input's name in the model.
    pub name: String,
    /// Its element type.
    pub elem: Elem,
    /// How many arguments fill one row of it.
    pub width: usize,
    /// Rank 1 (`[N]`) or 2 (`[N, width]`).
    rank: usize,
}

impl std::fmt::Display for InputSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.width == 1 {
            write!(f, "{} {}", self.name, self.elem.sql())
        } else {
            write!(f, "{} {}[{}]", self.name, self.elem.sql(), self.width)
        }
    }
}

/// The type of a classifier's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelType {
    /// Integer labels: `bigint`.
    Int,
    /// Text labels: `text`.
    Text,
}

/// Where a classifier's probabilities come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proba {
    /// A float tensor `[N, classes]`, columns in class order.
    Tensor(String),
    /// scikit-learn's ZipMap: `seq(map(label, float))`, one map per row; class order is the
    /// labels' order.
    ZipMap(String, LabelType),
}

impl Proba {
    /// The output holding the probabilities.
    fn output(&self) -> &str {
        match self {
            Proba::Tensor(name) | Proba::ZipMap(name, _) => name,
        }
    }
}

/// What kind of model it is, and the outputs PREDICT reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// One value per row.
    Regressor {
        /// The output holding it.
        output: String,
    },
    /// Labels and class probabilities.
    Classifier {
        /// The label output; without one, the label is the index of the likeliest class.
        label: Option<(String, LabelType)>,
        /// The probabilities.
        proba: Proba,
        /// How many classes, where the model says so or a trial run told.
        classes: Option<usize>,
    },
}

impl Task {
    /// The type of PREDICT_LABEL's result.
    pub fn label_type(&self) -> Option<LabelType> {
        match self {
            Task::Regressor { .. } => None,
            Task::Classifier { label, proba, .. } => Some(match (label, proba) {
                (Some((_, ty)), _) => *ty,
                (None, Proba::ZipMap(_, ty)) => *ty,
                (None, Proba::Tensor(_)) => LabelType::Int,
            }),
        }
    }

    /// A word for the system view: regressor, classifier (with its class count).
    pub fn describe(&self) -> String {
        match self {
            Task::Regressor { .. } => "regressor".into(),
            Task::Classifier {
                classes: Some(2), ..
            } => "binary classifier".into(),
            Task::Classifier {
                classes: Some(n), ..
            } => format!("classifier ({n} classes)"),
            Task::Classifier { classes: None, .. } => "classifier".into(),
        }
    }
}

/// What a model takes and gives, worked out from its inputs and outputs.
#[derive(Debug, Clone)]
pub struct Signature {
    /// The inputs, in order, or why PREDICT cannot fill them.
    pub inputs: Result<Vec<InputSpec>, Failure>,
    /// The task, or why no output is usable.
    pub task: Result<Task, Failure>,
    /// Every input as `name type[shape]`, for the system view.
    pub input_text: Vec<String>,
    /// Every output as `name type[shape]`.
    pub output_text: Vec<String>,
}

impl Signature {
    /// How many arguments (after the model's name) PREDICT takes.
    pub fn arity(&self) -> Option<usize> {
        self.inputs
            .as_ref()
            .ok()
            .map(|inputs| inputs.iter().map(|i| i.width).sum())
    }

    /// The element type of argument `n` (0-based, after the model's name).
    pub fn arg_elem(&self, n: usize) -> Option<Elem> {
        let mut left = n;
        for input in self.inputs.as_ref().ok()? {
            if left < input.width {
                return Some(input.elem);
            }
            left -= input.width;
        }
        None
    }

    /// What views that use the model rely on: each argument's kind (text or not), the task,
    /// the label type and whether it is binary. A new version must keep it.
    pub fn interface(&self) -> Option<(Vec<bool>, bool, Option<LabelType>, bool)> {
        let arity = self.arity()?;
        let task = self.task.as_ref().ok()?;
        let args = (0..arity)
            .map(|n| self.arg_elem(n) == Some(Elem::Text))
            .collect();
        let binary = matches!(
            task,
            Task::Classifier {
                classes: Some(2),
                ..
            }
        );
        Some((
            args,
            matches!(task, Task::Regressor { .. }),
            task.label_type(),
            binary,
        ))
    }

    /// `4 arguments (features real[4])`: what PREDICT expects, for error messages.
    pub fn expects(&self) -> String {
        match &self.inputs {
            Ok(inputs) => {
                let n = self.arity().unwrap_or(0);
                let list: Vec<String> = inputs.iter().map(ToString::to_string).collect();
                format!(
                    "{n} argument{} ({})",
                    if n == 1 { "" } else { "s" },
                    list.join(", ")
                )
            }
            Err(why) => why.clone(),
        }
    }
}

fn type_text(ty: &ValueType) -> String {
    match ty {
        ValueType::Tensor { ty, shape, .. } => {
            let dims: Vec<String> = shape
                .iter()
                .map(|d| {
                    if *d < 0 {
                        "?".to_string()
                    } else {
                        d.to_string()
                    }
                })
                .collect();
            let elem = Elem::of(*ty).map_or_else(|| ty.to_string(), |e| e.sql().to_string());
            format!("{elem}[{}]", dims.join(","))
        }
        ValueType::Sequence(inner) => format!("seq({})", type_text(inner)),
        ValueType::Map { key, value } => {
            let key = Elem::of(*key).map_or_else(|| key.to_string(), |e| e.sql().to_string());
            let value = Elem::of(*value).map_or_else(|| value.to_string(), |e| e.sql().to_string());
            format!("map({key}, {value})")
        }
        other => other.to_string(),
    }
}

fn input_spec(name: &str, ty: &ValueType) -> Result<InputSpec, Failure> {
    let ValueType::Tensor { ty, shape, .. } = ty else {
        return Err(format!("input {name} is a {}, not a tensor", type_text(ty)));
    };
    let elem = Elem::of(*ty)
        .ok_or_else(|| format!("input {name} has element type {ty}, which PREDICT cannot fill"))?;
    match shape.len() {
        1 => Ok(InputSpec {
            name: name.to_string(),
            elem,
            width: 1,
            rank: 1,
        }),
        2 if shape[1] > 0 => Ok(InputSpec {
            name: name.to_string(),
            elem,
            width: usize::try_from(shape[1]).unwrap_or(1),
            rank: 2,
        }),
        _ => Err(format!(
            "input {name} has shape [{}]; PREDICT fills inputs of shape [N] or [N, k] with a \
             fixed k",
            shape
                .iter()
                .map(|d| if *d < 0 {
                    "?".to_string()
                } else {
                    d.to_string()
                })
                .collect::<Vec<_>>()
                .join(",")
        )),
    }
}

/// The task of a model with these outputs: scikit-learn's classifier outputs (a label tensor
/// and probabilities as a tensor or a ZipMap), a regressor's single value, or a tensor of class
/// probabilities alone.
fn task_of(outputs: &[(String, ValueType)]) -> Result<Task, Failure> {
    let label = outputs.iter().find_map(|(name, ty)| match ty {
        ValueType::Tensor { ty, shape, .. } if shape.len() <= 2 => match ty {
            TensorElementType::Int64 => Some((name.clone(), LabelType::Int)),
            TensorElementType::String => Some((name.clone(), LabelType::Text)),
            _ => None,
        },
        _ => None,
    });
    let float = |ty: &TensorElementType| {
        matches!(ty, TensorElementType::Float32 | TensorElementType::Float64)
    };
    let zipmap = outputs.iter().find_map(|(name, ty)| match ty {
        ValueType::Sequence(inner) => match inner.as_ref() {
            ValueType::Map { key, value } if float(value) => match key {
                TensorElementType::Int64 => Some(Proba::ZipMap(name.clone(), LabelType::Int)),
                TensorElementType::String => Some(Proba::ZipMap(name.clone(), LabelType::Text)),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    });
    // A float tensor [N, C] with C other than 1: class probabilities.
    let proba_tensor = outputs.iter().find_map(|(name, ty)| match ty {
        ValueType::Tensor { ty, shape, .. } if float(ty) && shape.len() == 2 && shape[1] != 1 => {
            Some((name.clone(), shape[1]))
        }
        _ => None,
    });
    let value = outputs.iter().find_map(|(name, ty)| match ty {
        ValueType::Tensor { ty, shape, .. }
            if float(ty) && (shape.len() == 1 || (shape.len() == 2 && shape[1] == 1)) =>
        {
            Some(name.clone())
        }
        _ => None,
    });
    let known = |c: i64| usize::try_from(c).ok().filter(|&c| c > 0);
    match (zipmap, proba_tensor, label, value) {
        (Some(proba), _, label, _) => Ok(Task::Classifier {
            label,
            proba,
            classes: None,
        }),
        (None, Some((name, classes)), label, _) => Ok(Task::Classifier {
            label,
            proba: Proba::Tensor(name),
            classes: known(classes),
        }),
        (None, None, _, Some(output)) => Ok(Task::Regressor { output }),
        _ => Err(format!(
            "the model has no output PREDICT can use (a float value per row, or class \
             probabilities); its outputs are {}",
            outputs
                .iter()
                .map(|(n, t)| format!("{n} {}", type_text(t)))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// What a run should read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// PREDICT: a regressor's value, or a binary classifier's probability of its second class.
    Value,
    /// PREDICT_LABEL.
    Label,
    /// PREDICT_PROBA.
    Proba,
}

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
        let signature = Signature {
            inputs: inputs.iter().map(|(n, t)| input_spec(n, t)).collect(),
            task: task_of(&outputs),
            input_text: inputs
                .iter()
                .map(|(n, t)| format!("{n} {}", type_text(t)))
                .collect(),
            output_text: outputs
                .iter()
                .map(|(n, t)| format!("{n} {}", type_text(t)))
                .collect(),
        };
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

/// What one run gave, for the rows that ran.
enum Scores {
    Values(Vec<f64>),
    IntLabels(Vec<i64>),
    TextLabels(Vec<String>),
    /// Row-major probabilities, `classes` per row.
    Proba {
        values: Vec<f64>,
        classes: usize,
    },
}

fn floats(value: &DynValue) -> Result<Vec<f64>, Failure> {
    if let Ok((_, data)) = value.try_extract_tensor::<f32>() {
        return Ok(data.iter().map(|&v| f64::from(v)).collect());
    }
    value
        .try_extract_tensor::<f64>()
        .map(|(_, data)| data.to_vec())
        .map_err(|e| format!("reading the model's output: {e}"))
}

/// Probabilities from a ZipMap output: one map per row, classes in their labels' order.
fn zipmap(value: &DynValue, labels: LabelType) -> Result<(Vec<f64>, usize), Failure> {
    let err = |e: ort::Error| format!("reading the model's probabilities: {e}");
    let maps = value
        .try_extract_sequence::<DynMapValueType>()
        .map_err(err)?;
    let mut values = Vec::new();
    let mut classes = None;
    for map in &maps {
        let row: Vec<f64> = match labels {
            LabelType::Int => {
                let mut pairs = map.try_extract_key_values::<i64, f32>().map_err(err)?;
                pairs.sort_by_key(|(k, _)| *k);
                pairs.into_iter().map(|(_, v)| f64::from(v)).collect()
            }
            LabelType::Text => {
                let mut pairs = map.try_extract_key_values::<String, f32>().map_err(err)?;
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                pairs.into_iter().map(|(_, v)| f64::from(v)).collect()
            }
        };
        if *classes.get_or_insert(row.len()) != row.len() {
            return Err("the model gave rows with different numbers of classes".into());
        }
        values.extend(row);
    }
    Ok((values, classes.unwrap_or(0)))
}

impl Scores {
    fn empty(want: Want, task: &Task) -> Self {
        match (want, task.label_type()) {
            (Want::Label, Some(LabelType::Text)) => Scores::TextLabels(vec![]),
            (Want::Label, _) => Scores::IntLabels(vec![]),
            (Want::Proba, _) => Scores::Proba {
                values: vec![],
                classes: 0,
            },
            (Want::Value, _) => Scores::Values(vec![]),
        }
    }

    fn read(
        mut outputs: SessionOutputs<'_>,
        name: &str,
        want: Want,
        task: &Task,
        rows: usize,
    ) -> Result<Self, Failure> {
        let value = outputs
            .remove(name)
            .ok_or_else(|| format!("the model gave no output {name}"))?;
        let scores = match task {
            Task::Regressor { .. } => Scores::Values(floats(&value)?),
            Task::Classifier { label, proba, .. } => {
                let reading_label = want == Want::Label && label.is_some();
                if reading_label {
                    match label.as_ref().map(|(_, t)| *t) {
                        Some(LabelType::Text) => Scores::TextLabels(
                            value
                                .try_extract_strings()
                                .map(|(_, s)| s)
                                .map_err(|e| format!("reading the model's labels: {e}"))?,
                        ),
                        _ => Scores::IntLabels(
                            value
                                .try_extract_tensor::<i64>()
                                .map(|(_, d)| d.to_vec())
                                .map_err(|e| format!("reading the model's labels: {e}"))?,
                        ),
                    }
                } else {
                    let (values, classes) = match proba {
                        Proba::Tensor(_) => {
                            let values = floats(&value)?;
                            let classes = values.len().checked_div(rows).unwrap_or(0);
                            (values, classes)
                        }
                        Proba::ZipMap(_, labels) => zipmap(&value, *labels)?,
                    };
                    let proba = Scores::Proba { values, classes };
                    match want {
                        Want::Proba => proba,
                        Want::Value => proba.positive_class()?,
                        Want::Label => proba.argmax(),
                    }
                }
            }
        };
        if scores.len() != rows {
            return Err(format!(
                "the model gave {} results for {rows} rows",
                scores.len()
            ));
        }
        Ok(scores)
    }

    fn len(&self) -> usize {
        match self {
            Scores::Values(v) => v.len(),
            Scores::IntLabels(v) => v.len(),
            Scores::TextLabels(v) => v.len(),
            Scores::Proba { values, classes } => {
                if *classes == 0 {
                    0
                } else {
                    values.len() / classes
                }
            }
        }
    }

    /// A binary classifier's probability of its second class, as scikit-learn's
    /// `predict_proba(x)[:, 1]`.
    fn positive_class(self) -> Result<Self, Failure> {
        let Scores::Proba { values, classes } = self else {
            return Ok(self);
        };
        if classes != 2 {
            return Err(format!(
                "the model is a classifier with {classes} classes: PREDICT gives the probability \
                 of the positive class of a binary classifier; use PREDICT_LABEL or PREDICT_PROBA"
            ));
        }
        Ok(Scores::Values(values.chunks(2).map(|p| p[1]).collect()))
    }

    /// The index of the likeliest class of each row (the first of equals).
    fn argmax(self) -> Self {
        let Scores::Proba { values, classes } = self else {
            return self;
        };
        if classes == 0 {
            return Scores::IntLabels(vec![]);
        }
        Scores::IntLabels(
            values
                .chunks(classes)
                .map(|p| {
                    let mut best = 0;
                    for (i, v) in p.iter().enumerate() {
                        if *v > p[best] {
                            best = i;
                        }
                    }
                    best as i64
                })
                .collect(),
        )
    }

    /// The result column: scores at rows `valid`, NULL elsewhere.
    fn into_array(self, valid: &[usize], rows: usize) -> Result<ArrayRef, Failure> {
        let mut at = vec![None; rows];
        for (i, &row) in valid.iter().enumerate() {
            at[row] = Some(i);
        }
        Ok(match self {
            Scores::Values(v) => {
                let mut b = Float64Builder::with_capacity(rows);
                at.iter().for_each(|i| b.append_option(i.map(|i| v[i])));
                Arc::new(b.finish())
            }
            Scores::IntLabels(v) => {
                let mut b = Int64Builder::with_capacity(rows);
                at.iter().for_each(|i| b.append_option(i.map(|i| v[i])));
                Arc::new(b.finish())
            }
            Scores::TextLabels(v) => {
                let mut b = StringBuilder::with_capacity(rows, rows * 8);
                at.iter()
                    .for_each(|i| b.append_option(i.map(|i| v[i].as_str())));
                Arc::new(b.finish())
            }
            Scores::Proba { values, classes } => {
                let mut b = ListBuilder::with_capacity(Float64Builder::new(), rows)
                    .with_field(Arc::new(proba_item()));
                for i in &at {
                    match i {
                        Some(i) => {
                            b.values()
                                .append_slice(&values[i * classes..(i + 1) * classes]);
                            b.append(true);
                        }
                        None => b.append(false),
                    }
                }
                Arc::new(b.finish())
            }
        })
    }
}

/// The element field of PREDICT_PROBA's `double precision[]`.
pub fn proba_item() -> Field {
    Field::new("item", DataType::Float64, true)
}
