//! The HTTP API (`--http-listen`, default `127.0.0.1:5441`), for applications and services that
//! do not speak SQL:
//!
//! - `POST /ingest/{source}`: a JSON object, an array of objects, or JSON lines into a webhook
//!   source; `200 {"rows": n}` once every record is durable, `400` (and nothing stored) when a
//!   record does not fit the columns.
//! - `GET /v1/views/{view}?key=value` (or `?column=value&...` for every key column): the row of
//!   a materialized view with that key, as a JSON object; `404` when there is none.
//! - `POST /v1/predict/{model}`: the model's inputs as a JSON array (one row) or an array of
//!   arrays (several), in `PREDICT`'s order; `{"prediction": p}` or `{"predictions": [...]}`.
//!
//! Requests run as statements of a session of their own, so they see what psql sees. With
//! `--password` or `--users-file`, requests need HTTP Basic authentication with the same users
//! and passwords. Errors are `{"error": message, "code": SQLSTATE}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use datafusion::arrow::array::RecordBatch;
use futures::TryStreamExt;
use serde_json::{Value, json};

use super::auth::Users;
use crate::Config;
use crate::error::{Error, Result};
use crate::session::{ConnectionState, Database, Output, Session};

/// Largest request body accepted (64 MiB).
const MAX_BODY: usize = 64 << 20;

/// What every request handler shares.
struct Api {
    db: Arc<Database>,
    users: Option<Users>,
}

/// The HTTP API, bound and ready to serve.
pub struct HttpServer {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl HttpServer {
    /// Binds `config.http_listen` for `db`.
    pub async fn bind(config: &Config, db: Arc<Database>) -> Result<Self> {
        let api = Arc::new(Api {
            db,
            users: super::users_of(config)?,
        });
        let router = Router::new()
            .route("/ingest/{source}", post(ingest))
            .route("/v1/views/{view}", get(view_row))
            .route("/v1/predict/{model}", post(predict))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
            .with_state(api);
        let listener = tokio::net::TcpListener::bind(config.http_listen)
            .await
            .map_err(|e| {
                Error::InvalidParameter(format!(
                    "cannot listen for HTTP on {}: {e}",
                    config.http_listen
                ))
            })?;
        Ok(Self { listener, router })
    }

    /// The address the API accepts connections on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::Internal(format!("HTTP listener address: {e}")))
    }

    /// Serves requests until `shutdown` completes.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| Error::Internal(format!("HTTP server: {e}")))
    }
}

/// An error as the API answers it: a status, the message and the SQLSTATE.
fn failure(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": message.into(), "code": code});
    (status, axum::Json(body)).into_response()
}

/// A statement's error, with the status its SQLSTATE calls for.
fn error_response(e: &Error) -> Response {
    let code = e.sqlstate();
    let status = match code {
        "28P01" | "28000" => StatusCode::UNAUTHORIZED,
        "42P01" | "42704" => StatusCode::NOT_FOUND,
        "08001" | "57014" | "55P03" => StatusCode::SERVICE_UNAVAILABLE,
        c if c.starts_with("22") || c.starts_with("42") => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    failure(status, code, e.to_string())
}

/// The user a request runs as: checked against the users when authentication is on.
fn authenticate(api: &Api, headers: &HeaderMap) -> std::result::Result<String, Box<Response>> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|text| {
            text.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });
    let Some(users) = &api.users else {
        return Ok(given.map_or_else(|| "augur".to_string(), |(user, _)| user));
    };
    match given {
        Some((user, password)) if users.check(&user, &password) => Ok(user),
        _ => {
            let mut response = failure(
                StatusCode::UNAUTHORIZED,
                "28P01",
                "password authentication failed: give a user and password (HTTP Basic)",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"augur\""),
            );
            Err(Box::new(response))
        }
    }
}

/// Runs one SQL statement as `user`; its rows.
async fn query(db: &Database, user: &str, sql: &str) -> Result<Vec<RecordBatch>> {
    let conn = ConnectionState::for_user(user.to_string());
    let mut vars = HashMap::new();
    let mut session = Session::new(db, &mut vars, &conn);
    let statement = session
        .parse(sql)?
        .pop()
        .ok_or_else(|| Error::Internal("an empty statement".into()))?;
    match session.run(statement).await? {
        Output::Rows { stream, .. } => stream.try_collect().await.map_err(Error::from),
        _ => Ok(Vec::new()),
    }
}

/// Rows as JSON objects.
fn objects(batches: &[RecordBatch]) -> std::result::Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for batch in batches {
        for row in crate::sink::encode::json_rows(batch)? {
            out.push(serde_json::from_slice(&row).map_err(|e| e.to_string())?);
        }
    }
    Ok(out)
}

/// `"name"`: an identifier quoted.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `E'text'`: a string literal.
fn literal(text: &str) -> String {
    format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// The records of a request body: one JSON object, an array of objects, or JSON lines.
fn records(body: &[u8]) -> std::result::Result<Vec<Vec<u8>>, String> {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        return match value {
            Value::Object(_) => Ok(vec![body.to_vec()]),
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Object(_) => serde_json::to_vec(&item).map_err(|e| e.to_string()),
                    _ => Err(format!("record {i}: not a JSON object")),
                })
                .collect(),
            _ => Err("the body must be a JSON object, an array of objects, or JSON lines".into()),
        };
    }
    Ok(body
        .split(|&b| b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::to_vec)
        .collect())
}

/// `POST /ingest/{source}`.
async fn ingest(
    State(api): State<Arc<Api>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = authenticate(&api, &headers) {
        return *response;
    }
    let Some(entry) = api.db.catalog().source(&source) else {
        return failure(
            StatusCode::NOT_FOUND,
            "42P01",
            format!("source \"{source}\" does not exist"),
        );
    };
    let Some(webhook) = entry.scan.source.as_webhook() else {
        return failure(
            StatusCode::BAD_REQUEST,
            "42809",
            format!("source \"{source}\" is not a webhook source"),
        );
    };
    let records = match records(&body) {
        Ok(records) if !records.is_empty() => records,
        Ok(_) => return failure(StatusCode::BAD_REQUEST, "22P02", "no records"),
        Err(e) => return failure(StatusCode::BAD_REQUEST, "22P02", e),
    };
    let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    match webhook.accept(&refs).await {
        Ok(rows) => {
            api.db.runtime().wake();
            (StatusCode::OK, axum::Json(json!({"rows": rows}))).into_response()
        }
        Err(e) => failure(StatusCode::BAD_REQUEST, "22P02", e),
    }
}

/// `GET /v1/views/{view}?key=...`.
async fn view_row(
    State(api): State<Arc<Api>>,
    Path(view): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let user = match authenticate(&api, &headers) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    let found = api.db.catalog().view(&view);
    let Some((def, storage)) = found
        .as_ref()
        .and_then(|v| v.storage().map(|s| (v.def().clone(), s.clone())))
    else {
        return failure(
            StatusCode::NOT_FOUND,
            "42P01",
            format!("materialized view \"{view}\" does not exist"),
        );
    };
    let schema = storage.visible_schema();
    let key: Vec<String> = def
        .key
        .iter()
        .flatten()
        .filter_map(|&i| schema.fields().get(i).map(|f| f.name().clone()))
        .collect();
    let mut conditions: Vec<(String, String)> = Vec::new();
    for (name, value) in params {
        if name == "key" && key.len() == 1 {
            conditions.push((key[0].clone(), value));
        } else if schema.index_of(&name).is_ok() {
            conditions.push((name, value));
        } else {
            return failure(
                StatusCode::BAD_REQUEST,
                "42703",
                format!("\"{name}\" is not a column of \"{view}\""),
            );
        }
    }
    if key.is_empty() || key.iter().any(|k| !conditions.iter().any(|(c, _)| c == k)) {
        let wanted = if key.len() == 1 {
            format!("?key=... or ?{}=...", key[0])
        } else if key.is_empty() {
            "a view with a key".to_string()
        } else {
            format!("every key column: {}", key.join(", "))
        };
        return failure(
            StatusCode::BAD_REQUEST,
            "22023",
            format!("a point read of \"{view}\" needs {wanted}"),
        );
    }
    let filter = conditions
        .iter()
        .map(|(c, v)| format!("{} = {}", ident(c), literal(v)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let sql = format!("SELECT * FROM {} WHERE {filter}", ident(&view));
    let rows = match query(&api.db, &user, &sql).await {
        Ok(rows) => rows,
        Err(e) => return error_response(&e),
    };
    match objects(&rows) {
        Ok(mut found) if found.len() == 1 => {
            (StatusCode::OK, axum::Json(found.remove(0))).into_response()
        }
        Ok(found) if found.is_empty() => {
            failure(StatusCode::NOT_FOUND, "02000", "no row has that key")
        }
        Ok(found) => (StatusCode::OK, axum::Json(Value::Array(found))).into_response(),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, "XX000", e),
    }
}

/// A JSON value as a SQL literal.
fn value_literal(value: &Value) -> std::result::Result<String, String> {
    match value {
        Value::Null => Ok("NULL".into()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(literal(s)),
        other => Err(format!("{other} is not a number, text, boolean or null")),
    }
}

/// `POST /v1/predict/{model}`.
async fn predict(
    State(api): State<Arc<Api>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = match authenticate(&api, &headers) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => return failure(StatusCode::BAD_REQUEST, "22P02", format!("not JSON: {e}")),
    };
    let Value::Array(items) = parsed else {
        return failure(
            StatusCode::BAD_REQUEST,
            "22023",
            "the body must be the model's inputs as a JSON array, or an array of such arrays",
        );
    };
    let many = items.first().is_some_and(Value::is_array);
    let rows: Vec<Vec<Value>> = if many {
        let mut rows = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Value::Array(row) => rows.push(row),
                _ => {
                    return failure(
                        StatusCode::BAD_REQUEST,
                        "22023",
                        "every row must be an array of the model's inputs",
                    );
                }
            }
        }
        rows
    } else {
        vec![items]
    };
    let width = rows.first().map_or(0, Vec::len);
    if width == 0 || rows.iter().any(|r| r.len() != width) {
        return failure(
            StatusCode::BAD_REQUEST,
            "22023",
            "every row needs the same number of inputs, at least one",
        );
    }
    let mut values = Vec::with_capacity(rows.len());
    for (n, row) in rows.iter().enumerate() {
        let mut literals = vec![n.to_string()];
        for value in row {
            match value_literal(value) {
                Ok(l) => literals.push(l),
                Err(e) => return failure(StatusCode::BAD_REQUEST, "22023", e),
            }
        }
        values.push(format!("({})", literals.join(", ")));
    }
    let columns: Vec<String> = (1..=width).map(|i| format!("c{i}")).collect();
    let sql = format!(
        "SELECT PREDICT({}, {}) AS prediction FROM (VALUES {}) AS t(n, {}) ORDER BY n",
        literal(&model),
        columns.join(", "),
        values.join(", "),
        columns.join(", ")
    );
    let batches = match query(&api.db, &user, &sql).await {
        Ok(batches) => batches,
        Err(e) => return error_response(&e),
    };
    let predictions: Vec<Value> = match objects(&batches) {
        Ok(rows) => rows
            .into_iter()
            .map(|mut r| r["prediction"].take())
            .collect(),
        Err(e) => return failure(StatusCode::INTERNAL_SERVER_ERROR, "XX000", e),
    };
    let body = if many {
        json!({ "predictions": predictions })
    } else {
        json!({ "prediction": predictions.into_iter().next().unwrap_or(Value::Null) })
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}
