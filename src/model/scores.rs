//! What a run gives back: a model's outputs read into values, labels or probabilities, and
//! laid out as the result column.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field};
use ort::session::SessionOutputs;
use ort::value::{DynMapValueType, DynValue};

use super::runtime::Failure;
use super::signature::{LabelType, Proba, Task};

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

/// What one run gave, for the rows that ran.
pub(super) enum Scores {
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
    pub(super) fn empty(want: Want, task: &Task) -> Self {
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

    pub(super) fn read(
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
    pub(super) fn into_array(self, valid: &[usize], rows: usize) -> Result<ArrayRef, Failure> {
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
