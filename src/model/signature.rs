//! A model's signature: what goes in, what comes out, and what kind of model it is, worked out
//! from the inputs and outputs ONNX Runtime reports.

use datafusion::arrow::datatypes::DataType;
use ort::value::{TensorElementType, ValueType};

use super::runtime::Failure;

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
    pub(super) fn arrow(self) -> DataType {
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
    pub(super) rank: usize,
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
    pub(super) fn output(&self) -> &str {
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
    /// The signature of a model with these inputs and outputs (name and type each).
    pub fn new(inputs: &[(String, ValueType)], outputs: &[(String, ValueType)]) -> Self {
        let text = |values: &[(String, ValueType)]| {
            values
                .iter()
                .map(|(n, t)| format!("{n} {}", type_text(t)))
                .collect()
        };
        Signature {
            inputs: inputs.iter().map(|(n, t)| input_spec(n, t)).collect(),
            task: task_of(outputs),
            input_text: text(inputs),
            output_text: text(outputs),
        }
    }

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
