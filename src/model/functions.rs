//! `PREDICT`, `PREDICT_LABEL` and `PREDICT_PROBA`: DataFusion scalar functions, so they run in
//! ad-hoc queries, prepared statements, point lookups and materialized views alike.
//!
//! The first argument names the model and must be a text literal: the model decides how many
//! arguments follow, of which types, and what the function returns, all checked when the query
//! is planned (`42704` for an unknown model, `42883` for arguments that do not fit). The
//! functions are volatile in DataFusion's sense: a model can be replaced between two runs of a
//! prepared statement, so no score is ever folded into a plan.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use super::scores::{Want, proba_item};
use super::signature::{LabelType, Task};
use super::{Model, Models, undefined};
use crate::error::Error;

/// The names of the functions.
pub const NAMES: [&str; 3] = ["predict", "predict_label", "predict_proba"];

/// One of the three functions.
#[derive(Debug)]
pub struct PredictFn {
    want: Want,
    models: Arc<Models>,
    signature: Signature,
}

impl PartialEq for PredictFn {
    fn eq(&self, other: &Self) -> bool {
        self.want == other.want && Arc::ptr_eq(&self.models, &other.models)
    }
}

impl Eq for PredictFn {}

impl std::hash::Hash for PredictFn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

/// Registers the functions in `ctx`.
pub fn register(ctx: &SessionContext, models: &Arc<Models>) {
    for want in [Want::Value, Want::Label, Want::Proba] {
        ctx.register_udf(ScalarUDF::new_from_impl(PredictFn {
            want,
            models: models.clone(),
            signature: Signature::variadic_any(Volatility::Volatile),
        }));
    }
}

fn mismatch(message: String) -> DataFusionError {
    DataFusionError::from(Error::coded("42883", message))
}

/// The model's name in the first argument.
fn model_name(function: &str, value: Option<&ScalarValue>) -> Result<String, DataFusionError> {
    match value.and_then(|v| v.try_as_str().flatten()) {
        Some(name) => Ok(name.to_string()),
        None => Err(DataFusionError::from(Error::coded(
            "42804",
            format!(
                "the first argument of {} must be a model's name, as a text literal",
                function.to_uppercase()
            ),
        ))),
    }
}

impl PredictFn {
    fn call_text(&self, model: &str) -> String {
        format!("{}('{model}', ...)", self.name().to_uppercase())
    }

    /// Checks the arguments against `model` and gives the result type.
    fn check(&self, model: &Model, args: &[DataType]) -> Result<DataType, DataFusionError> {
        let name = &model.def.name;
        let loaded = model.loaded()?;
        let signature = &loaded.signature;
        let call = self.call_text(name);
        if let Err(why) = &signature.inputs {
            return Err(mismatch(format!(
                "{call}: model \"{name}\" cannot be used: {why}"
            )));
        }
        let task = signature
            .task
            .as_ref()
            .map_err(|why| mismatch(format!("{call}: model \"{name}\" cannot be used: {why}")))?;
        let arity = signature.arity().unwrap_or(0);
        if args.len() != arity {
            return Err(mismatch(format!(
                "{call}: model \"{name}\" takes {}; {} given",
                signature.expects(),
                args.len()
            )));
        }
        for (n, ty) in args.iter().enumerate() {
            let Some(elem) = signature.arg_elem(n) else {
                continue;
            };
            if !elem.accepts(ty) {
                return Err(mismatch(format!(
                    "{call}: argument {} is {}, where model \"{name}\" takes {} ({})",
                    n + 2,
                    crate::common::types::pg_type_name(ty),
                    elem.sql(),
                    signature.expects()
                )));
            }
        }
        match (self.want, task) {
            (Want::Value, Task::Regressor { .. }) => Ok(DataType::Float64),
            (Want::Value, Task::Classifier { classes, .. }) => match classes {
                Some(n) if *n != 2 => Err(mismatch(format!(
                    "{call}: model \"{name}\" is a classifier with {n} classes; PREDICT gives \
                     the positive class's probability of a binary classifier. Use \
                     PREDICT_LABEL('{name}', ...) for the class or PREDICT_PROBA('{name}', ...) \
                     for every class's probability"
                ))),
                _ => Ok(DataType::Float64),
            },
            (Want::Label | Want::Proba, Task::Regressor { .. }) => Err(mismatch(format!(
                "{call}: model \"{name}\" is a regressor, which has no classes; use \
                 PREDICT('{name}', ...)"
            ))),
            (Want::Label, task) => Ok(match task.label_type() {
                Some(LabelType::Text) => DataType::Utf8,
                _ => DataType::Int64,
            }),
            (Want::Proba, _) => Ok(DataType::List(Arc::new(proba_item()))),
        }
    }

    fn model(&self, name: &str) -> Result<Arc<Model>, DataFusionError> {
        self.models
            .get(name)
            .ok_or_else(|| DataFusionError::from(undefined(name)))
    }
}

impl ScalarUDFImpl for PredictFn {
    fn name(&self) -> &str {
        match self.want {
            Want::Value => NAMES[0],
            Want::Label => NAMES[1],
            Want::Proba => NAMES[2],
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Err(DataFusionError::Internal(format!(
            "{} has its type from its model",
            self.name()
        )))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> datafusion::error::Result<FieldRef> {
        let name = model_name(
            self.name(),
            args.scalar_arguments.first().copied().flatten(),
        )?;
        let model = self.model(&name)?;
        let types: Vec<DataType> = args.arg_fields[1..]
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let ty = self.check(&model, &types)?;
        Ok(Arc::new(Field::new(self.name(), ty, true)))
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let name = match args.args.first() {
            Some(ColumnarValue::Scalar(value)) => model_name(self.name(), Some(value))?,
            _ => model_name(self.name(), None)?,
        };
        let model = self.model(&name)?;
        let rows = args.number_rows;
        let arrays: Vec<ArrayRef> = args.args[1..]
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<datafusion::error::Result<_>>()?;
        let result = model.run(self.models.config(), self.want, &arrays, rows)?;
        if result.data_type() != args.return_field.data_type() {
            return Err(DataFusionError::from(Error::coded(
                "42883",
                format!(
                    "{}: model \"{name}\" now gives {} where it gave {} when the statement was \
                     planned; prepare the statement again",
                    self.call_text(&name),
                    result.data_type(),
                    args.return_field.data_type()
                ),
            )));
        }
        Ok(ColumnarValue::Array(result))
    }
}

/// The model a PREDICT call names, where `expr` is one.
fn called_model(expr: &Expr) -> Option<(&str, &[Expr])> {
    let Expr::ScalarFunction(f) = expr else {
        return None;
    };
    if !NAMES.contains(&f.func.name()) {
        return None;
    }
    match f.args.first() {
        Some(Expr::Literal(value, _)) => Some((value.try_as_str().flatten()?, &f.args[1..])),
        _ => None,
    }
}

/// Whether `expr` calls a model.
pub fn calls_model(expr: &Expr) -> bool {
    let mut found = false;
    let _ = expr.apply(|e| {
        found |= called_model(e).is_some();
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// The names of the models `plan` calls, sorted.
pub fn models_used(plan: &LogicalPlan) -> Vec<String> {
    let mut names = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Some((name, _)) = called_model(e) {
                    names.push(name.to_string());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    names.sort();
    names.dedup();
    names
}

/// The types of `$n` parameters passed straight to a model: the type of the input they fill
/// (`double precision` for float inputs, `bigint` for integer ones, `boolean`, `text`).
pub fn placeholder_types(plan: &LogicalPlan, models: &Models) -> HashMap<String, DataType> {
    let mut types = HashMap::new();
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Some((name, args)) = called_model(e)
                    && let Some(model) = models.get(name)
                    && let Ok(loaded) = model.loaded()
                {
                    for (n, arg) in args.iter().enumerate() {
                        if let Expr::Placeholder(p) = arg
                            && let Some(elem) = loaded.signature.arg_elem(n)
                        {
                            types.entry(p.id.clone()).or_insert(elem.param_type());
                        }
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    types
}
