//! Bind parameters sent as one number type for a placeholder of another: psycopg sends a Python
//! `float` as `float8` and an `int` as `int8` whatever the column is, so `INSERT INTO t (price)
//! VALUES (%s)` binds a `float8` to a `numeric(10,2)` placeholder. PostgreSQL converts such a
//! value as an assignment cast would; so does Augur, where arrow-pg's decoder refuses it.

use arrow_pg::datatypes::df::deserialize_parameters;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{ParamValues, ScalarValue};
use pgwire::api::Type;
use pgwire::api::portal::Portal;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

/// The portal's parameters, each as the type its placeholder has.
pub(super) fn deserialize<S: Clone>(
    portal: &Portal<S>,
    types: &[Option<&DataType>],
) -> PgWireResult<ParamValues> {
    let sent = &portal.statement.parameter_types;
    // Positions decoded as the client sent them and converted here.
    let converted: Vec<bool> = (0..types.len())
        .map(|i| {
            let client = sent.get(i).and_then(|t| t.as_ref());
            matches!((client, types[i]), (Some(c), Some(t)) if number_type(c) && needs_conversion(c, t))
        })
        .collect();
    if !converted.contains(&true) {
        return deserialize_parameters(portal, types);
    }
    let decoding: Vec<Option<&DataType>> = types
        .iter()
        .zip(&converted)
        .map(|(t, c)| if *c { None } else { *t })
        .collect();
    let ParamValues::List(mut values) = deserialize_parameters(portal, &decoding)? else {
        return Err(PgWireError::ApiError("parameters are positional".into()));
    };
    for (i, value) in values.iter_mut().enumerate() {
        if let (true, Some(target)) = (converted[i], types[i]) {
            value.value = convert(&value.value, target)?;
        }
    }
    Ok(ParamValues::List(values))
}

fn number_type(t: &Type) -> bool {
    [
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::NUMERIC,
    ]
    .contains(t)
}

/// Whether arrow-pg's own decoding of a `client` value into `target` would refuse it or
/// truncate where PostgreSQL rounds.
fn needs_conversion(client: &Type, target: &DataType) -> bool {
    let fractional = [Type::FLOAT4, Type::FLOAT8, Type::NUMERIC].contains(client);
    match target {
        DataType::Decimal128(..) => *client != Type::NUMERIC,
        t if t.is_integer() => fractional,
        _ => false,
    }
}

/// `value` as `target`, rounded as PostgreSQL's casts round: a float to the nearest integer,
/// ties to even; a numeric to the nearest, ties away from zero; to the target's scale for a
/// numeric target.
fn convert(value: &ScalarValue, target: &DataType) -> PgWireResult<ScalarValue> {
    if value.is_null() {
        return ScalarValue::try_from(target).map_err(|e| invalid(e.to_string()));
    }
    let rounded = match (value, target) {
        (ScalarValue::Float32(Some(x)), t) if t.is_integer() => {
            ScalarValue::Float64(Some((*x as f64).round_ties_even()))
        }
        (ScalarValue::Float64(Some(x)), t) if t.is_integer() => {
            ScalarValue::Float64(Some(x.round_ties_even()))
        }
        (ScalarValue::Decimal128(Some(m), p, s), t) if t.is_integer() && *s > 0 => {
            let unit = 10i128.pow(*s as u32);
            let (q, r) = (m / unit, m % unit);
            let q = if r.abs() * 2 >= unit {
                q + m.signum()
            } else {
                q
            };
            ScalarValue::Decimal128(Some(q), *p, 0)
        }
        (v, _) => v.clone(),
    };
    let finite = match &rounded {
        ScalarValue::Float64(Some(x)) => x.is_finite(),
        ScalarValue::Float32(Some(x)) => x.is_finite(),
        _ => true,
    };
    if !finite && !matches!(target, DataType::Float32 | DataType::Float64) {
        return Err(out_of_range(target));
    }
    let converted = rounded.cast_to(target).map_err(|_| out_of_range(target))?;
    // Arrow's cast gives NULL for a value the target cannot hold.
    if converted.is_null() {
        return Err(out_of_range(target));
    }
    Ok(converted)
}

fn out_of_range(target: &DataType) -> PgWireError {
    let what = match target {
        DataType::Int16 => "smallint out of range".to_string(),
        DataType::Int32 => "integer out of range".to_string(),
        DataType::Int64 => "bigint out of range".to_string(),
        DataType::Decimal128(p, s) => format!(
            "numeric field overflow: a field with precision {p}, scale {s} must round to an \
             absolute value less than 10^{}",
            *p as i16 - *s as i16
        ),
        other => format!("value out of range for {other}"),
    };
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "22003".into(),
        what,
    )))
}

fn invalid(message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "22023".into(),
        message,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_as_postgresql_casts_do() {
        let c = |v: ScalarValue, t: DataType| convert(&v, &t).unwrap();
        assert_eq!(
            c(ScalarValue::Float64(Some(2.5)), DataType::Int32),
            ScalarValue::Int32(Some(2))
        );
        assert_eq!(
            c(ScalarValue::Float64(Some(3.5)), DataType::Int64),
            ScalarValue::Int64(Some(4))
        );
        assert_eq!(
            c(ScalarValue::Decimal128(Some(-25), 2, 1), DataType::Int32),
            ScalarValue::Int32(Some(-3))
        );
        assert_eq!(
            c(ScalarValue::Float64(Some(2.2)), DataType::Decimal128(10, 2)),
            ScalarValue::Decimal128(Some(220), 10, 2)
        );
        assert_eq!(
            c(ScalarValue::Int64(Some(5)), DataType::Decimal128(10, 2)),
            ScalarValue::Decimal128(Some(500), 10, 2)
        );
        assert_eq!(
            c(ScalarValue::Int64(None), DataType::Decimal128(10, 2)),
            ScalarValue::Decimal128(None, 10, 2)
        );
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for (v, t) in [
            (ScalarValue::Float64(Some(1e12)), DataType::Int32),
            (ScalarValue::Float64(Some(f64::NAN)), DataType::Int64),
            (
                ScalarValue::Int64(Some(123_456)),
                DataType::Decimal128(5, 2),
            ),
        ] {
            let Err(PgWireError::UserError(info)) = convert(&v, &t) else {
                panic!("{v:?} as {t} accepted");
            };
            assert_eq!(info.code, "22003");
        }
    }
}
