//! Models end to end: CREATE MODEL from the ONNX files in `tests/models/`, PREDICT,
//! PREDICT_LABEL and PREDICT_PROBA checked against what ONNX Runtime computed in Python
//! (`tests/models/expected.json`, written by `tests/models/train.py`) within 1e-5, in ad-hoc
//! queries, with parameters, over point lookups and in materialized views; errors and their
//! SQLSTATEs; models after a restart without their files.

mod common;

use common::TestServer;
use serde_json::Value;
use tokio_postgres::Client;

const TOLERANCE: f64 = 1e-5;

fn expected() -> Value {
    let text = std::fs::read_to_string("tests/models/expected.json").expect("expected.json");
    serde_json::from_str(&text).expect("expected.json parses")
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect()
}

fn close(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= TOLERANCE * expected.abs().max(1.0)
}

fn assert_close(actual: &[f64], expected: &[f64], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(close(*a, *e), "{what}[{i}]: {a} vs {e}");
    }
}

/// A table `features` of the rows the expected outputs are for: id, a, b, c, d, country.
async fn load_rows(client: &Client, expected: &Value) {
    client
        .batch_execute(
            "CREATE TABLE features (id BIGINT PRIMARY KEY, a DOUBLE PRECISION, \
             b DOUBLE PRECISION, c DOUBLE PRECISION, d DOUBLE PRECISION, country TEXT)",
        )
        .await
        .unwrap();
    let countries = expected["mixed"]["country"].as_array().unwrap();
    let insert = client
        .prepare("INSERT INTO features VALUES ($1, $2, $3, $4, $5, $6)")
        .await
        .unwrap();
    for (i, row) in expected["rows"].as_array().unwrap().iter().enumerate() {
        let row = floats(row);
        let country = countries[i].as_str().unwrap();
        client
            .execute(
                &insert,
                &[&(i as i64), &row[0], &row[1], &row[2], &row[3], &country],
            )
            .await
            .unwrap();
    }
}

async fn create_models(client: &Client) {
    for name in [
        "logreg",
        "logreg_tensor",
        "forest",
        "forest_tensor",
        "gbc",
        "gbc_tensor",
        "pipeline",
        "gbr",
        "tiers",
        "mixed",
        "lookup",
    ] {
        client
            .batch_execute(&format!(
                "CREATE MODEL {name} FROM 'tests/models/{name}.onnx'"
            ))
            .await
            .unwrap_or_else(|e| panic!("CREATE MODEL {name}: {e:?}"));
    }
}

fn sqlstate(error: &tokio_postgres::Error) -> String {
    error
        .code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {error}"))
}

async fn error_of(client: &Client, sql: &str) -> (String, String) {
    let error = client
        .batch_execute(sql)
        .await
        .expect_err(&format!("{sql} should fail"));
    let message = error
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    (sqlstate(&error), message)
}

#[tokio::test]
async fn every_kind_of_model_scores_as_onnx_runtime_does() {
    let server = TestServer::start();
    let client = server.connect().await;
    let expected = expected();
    load_rows(&client, &expected).await;
    create_models(&client).await;

    let binary = [
        "logreg",
        "logreg_tensor",
        "forest",
        "forest_tensor",
        "gbc",
        "gbc_tensor",
        "pipeline",
    ];
    for model in binary {
        let rows = client
            .query(
                &format!(
                    "SELECT PREDICT('{model}', a, b, c, d), PREDICT_LABEL('{model}', a, b, c, d), \
                     PREDICT_PROBA('{model}', a, b, c, d) FROM features ORDER BY id"
                ),
                &[],
            )
            .await
            .unwrap();
        let proba: Vec<Vec<f64>> = expected[model]["proba"]
            .as_array()
            .unwrap()
            .iter()
            .map(floats)
            .collect();
        let labels: Vec<i64> = expected[model]["label"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(rows.len(), proba.len(), "{model}");
        let scores: Vec<f64> = rows.iter().map(|r| r.get(0)).collect();
        let positive: Vec<f64> = proba.iter().map(|p| p[1]).collect();
        assert_close(&scores, &positive, &format!("PREDICT {model}"));
        let got_labels: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
        assert_eq!(got_labels, labels, "PREDICT_LABEL {model}");
        for (i, row) in rows.iter().enumerate() {
            let got: Vec<f64> = row.get(2);
            assert_close(&got, &proba[i], &format!("PREDICT_PROBA {model} row {i}"));
        }
    }

    // A regressor over three of the features.
    let rows = client
        .query(
            "SELECT PREDICT('gbr', b, c, d) FROM features ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let values: Vec<f64> = rows.iter().map(|r| r.get(0)).collect();
    assert_close(&values, &floats(&expected["gbr"]["value"]), "gbr");

    // Three classes with text labels: labels, and probabilities in the classes' order.
    let rows = client
        .query(
            "SELECT PREDICT_LABEL('tiers', a, b, c, d), PREDICT_PROBA('tiers', a, b, c, d) \
             FROM features ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    for (i, row) in rows.iter().enumerate() {
        let label: String = row.get(0);
        assert_eq!(label, expected["tiers"]["label"][i].as_str().unwrap());
        let proba: Vec<f64> = row.get(1);
        assert_close(&proba, &floats(&expected["tiers"]["proba"][i]), "tiers");
    }

    // Several inputs: a float, an integer (cast from double precision) and a text column.
    let rows = client
        .query(
            "SELECT PREDICT('mixed', a, b, country), PREDICT_LABEL('mixed', a, b::bigint, country) \
             FROM features ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    for (i, row) in rows.iter().enumerate() {
        let score: f64 = row.get(0);
        let p = floats(&expected["mixed"]["proba"][i]);
        assert!(close(score, p[1]), "mixed row {i}: {score} vs {}", p[1]);
        let label: i64 = row.get(1);
        assert_eq!(label, expected["mixed"]["label"][i].as_i64().unwrap());
    }

    // Integer and boolean arguments are cast to the input's type; a NULL gives NULL.
    let row = client
        .query_one(
            "SELECT PREDICT('lookup', 2), PREDICT('lookup', 7.0), PREDICT('lookup', true), \
             PREDICT('lookup', NULL)",
            &[],
        )
        .await
        .unwrap();
    let lookup = floats(&expected["lookup"]["value"]);
    assert!(close(row.get(0), lookup[0]));
    assert!(close(row.get(1), lookup[1]));
    assert!(close(row.get(2), 1.5));
    assert_eq!(row.get::<_, Option<f64>>(3), None);

    // What ran is counted.
    let row = client
        .query_one(
            "SELECT version, kind, inputs, rows_scored > 0, errors FROM augur_catalog.models \
             WHERE name = 'gbc'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(row.get::<_, String>(1), "binary classifier");
    assert_eq!(row.get::<_, String>(2), "features real[?,4]");
    assert!(row.get::<_, bool>(3));
    assert_eq!(row.get::<_, i64>(4), 0);
}

#[tokio::test]
async fn parameters_point_lookups_and_concurrent_clients() {
    let server = TestServer::start();
    let client = server.connect().await;
    let expected = expected();
    load_rows(&client, &expected).await;
    create_models(&client).await;
    let proba = |i: usize| floats(&expected["gbc"]["proba"][i])[1];

    // Features as parameters: typed by the model's input.
    let statement = client
        .prepare("SELECT PREDICT('gbc', $1, $2, $3, $4)")
        .await
        .unwrap();
    for i in [0usize, 7, 49] {
        let r = floats(&expected["rows"][i]);
        let row = client
            .query_one(&statement, &[&r[0], &r[1], &r[2], &r[3]])
            .await
            .unwrap();
        assert!(close(row.get(0), proba(i)), "row {i}");
    }
    let none: Option<f64> = None;
    let row = client
        .query_one(&statement, &[&1.0f64, &none, &3.0f64, &4.0f64])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<f64>>(0), None);

    // Over a point lookup of the features.
    let lookup = client
        .prepare("SELECT PREDICT('gbc', f.a, f.b, f.c, f.d) FROM features f WHERE id = $1")
        .await
        .unwrap();
    for i in [3i64, 11, 42] {
        let row = client.query_one(&lookup, &[&i]).await.unwrap();
        assert!(close(row.get(0), proba(i as usize)), "id {i}");
    }
    assert!(client.query(&lookup, &[&1000i64]).await.unwrap().is_empty());

    // Several clients at once, each scoring whole batches and single rows.
    let mut tasks = Vec::new();
    for t in 0..6 {
        let client = server.connect().await;
        let expected = expected.clone();
        tasks.push(tokio::spawn(async move {
            let lookup = client
                .prepare("SELECT PREDICT('gbc', f.a, f.b, f.c, f.d) FROM features f WHERE id = $1")
                .await
                .unwrap();
            for n in 0..30i64 {
                let id = (n * 7 + t) % 50;
                let row = client.query_one(&lookup, &[&id]).await.unwrap();
                let want = floats(&expected["gbc"]["proba"][id as usize])[1];
                assert!(close(row.get(0), want));
                let all = client
                    .query_one(
                        "SELECT sum(PREDICT('forest_tensor', a, b, c, d)) FROM features",
                        &[],
                    )
                    .await
                    .unwrap();
                let want: f64 = expected["forest_tensor"]["proba"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| floats(p)[1])
                    .sum();
                assert!(close(all.get(0), want));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn mistakes_get_clear_errors_with_sqlstates() {
    let server = TestServer::start();
    let client = server.connect().await;
    create_models(&client).await;
    client
        .batch_execute("CREATE TABLE t (id BIGINT PRIMARY KEY, x DOUBLE PRECISION, s TEXT)")
        .await
        .unwrap();
    for (sql, code, says) in [
        (
            "SELECT PREDICT('nope', 1.0)",
            "42704",
            "model \"nope\" does not exist",
        ),
        (
            "SELECT PREDICT('gbc', 1, 2, 3)",
            "42883",
            "takes 4 arguments (features real[4]); 3 given",
        ),
        (
            "SELECT PREDICT('gbc', 1, 2, 3, 'x')",
            "42883",
            "argument 5 is text",
        ),
        ("SELECT PREDICT('mixed', 1, 2, 3)", "42883", "country text"),
        (
            "SELECT PREDICT_LABEL('gbr', 1, 2, 3)",
            "42883",
            "is a regressor",
        ),
        (
            "SELECT PREDICT_PROBA('gbr', 1, 2, 3)",
            "42883",
            "is a regressor",
        ),
        (
            "SELECT PREDICT('tiers', 1, 2, 3, 4)",
            "42883",
            "PREDICT_LABEL('tiers', ...)",
        ),
        (
            "SELECT PREDICT(s, 1.0) FROM t",
            "42804",
            "model's name, as a text literal",
        ),
        (
            "CREATE MODEL gbc FROM 'tests/models/gbc.onnx'",
            "42710",
            "already exists",
        ),
        (
            "CREATE MODEL m FROM 'tests/models/no_such.onnx'",
            "58P01",
            "could not open model file",
        ),
        (
            "CREATE MODEL m FROM 'tests/models/expected.json'",
            "22023",
            "not a model ONNX Runtime can run",
        ),
        ("CREATE MODEL m FROM tests", "42601", "quoted string"),
        ("DROP MODEL nope", "42704", "model \"nope\" does not exist"),
        (
            "SELECT PREDICT('lookup', 12.0)",
            "38000",
            "model \"lookup\" failed",
        ),
    ] {
        let (state, message) = error_of(&client, sql).await;
        assert_eq!(state, code, "{sql}: {message}");
        assert!(message.contains(says), "{sql}: {message}");
    }
    // IF EXISTS / IF NOT EXISTS, and the failure above is counted.
    client
        .batch_execute(
            "DROP MODEL IF EXISTS nope; CREATE MODEL IF NOT EXISTS gbc FROM 'tests/models/x.onnx'",
        )
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT errors, last_error FROM augur_catalog.models WHERE name = 'lookup'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert!(
        row.get::<_, String>(1).contains("out of"),
        "{:?}",
        row.get::<_, String>(1)
    );
    // The server is still there.
    client
        .batch_execute("SELECT PREDICT('gbr', 1, 2, 3)")
        .await
        .unwrap();
}

async fn score(client: &Client, r: &[f64]) -> f64 {
    client
        .query_one(
            "SELECT PREDICT('fraud', $1, $2, $3, $4)",
            &[&r[0], &r[1], &r[2], &r[3]],
        )
        .await
        .unwrap()
        .get::<_, f64>(0)
}

#[tokio::test]
async fn models_are_stored_versioned_and_survive_restarts_without_their_files() {
    let mut server = TestServer::start();
    let client = server.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    std::fs::copy("tests/models/logreg_tensor.onnx", &path).unwrap();
    client
        .batch_execute(&format!("CREATE MODEL fraud FROM '{}'", path.display()))
        .await
        .unwrap();
    let expected = expected();
    let r = floats(&expected["rows"][5]);
    assert!(close(
        score(&client, &r).await,
        floats(&expected["logreg_tensor"]["proba"][5])[1]
    ));

    // A new version from another file.
    std::fs::copy("tests/models/forest_tensor.onnx", &path).unwrap();
    client
        .batch_execute(&format!(
            "CREATE OR REPLACE MODEL fraud FROM '{}'",
            path.display()
        ))
        .await
        .unwrap();
    let forest = floats(&expected["forest_tensor"]["proba"][5])[1];
    assert!(close(score(&client, &r).await, forest));
    let bytes = std::fs::read(&path).unwrap();
    drop(client);
    drop(dir);

    // The file is gone; the model is in the database.
    server.restart();
    let client = server.connect().await;
    assert!(close(score(&client, &r).await, forest));
    let row = client
        .query_one(
            "SELECT version, sha256, size_bytes FROM augur_catalog.models WHERE name = 'fraud'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    assert_eq!(row.get::<_, String>(1), augur::model::sha256_hex(&bytes));
    assert_eq!(row.get::<_, i64>(2), bytes.len() as i64);
    let names: Vec<String> = client
        .simple_query("SHOW MODELS")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(names, vec!["fraud".to_string()]);
    client.batch_execute("DROP MODEL fraud").await.unwrap();
    server.restart();
    let client = server.connect().await;
    let (state, _) = error_of(&client, "SELECT PREDICT('fraud', 1, 2, 3, 4)").await;
    assert_eq!(state, "42704");
}

async fn scores_of(client: &Client, sql: &str) -> Vec<(i64, Option<f64>)> {
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn same_scores(view: &[(i64, Option<f64>)], batch: &[(i64, Option<f64>)]) -> bool {
    view.len() == batch.len()
        && view.iter().zip(batch).all(|(v, b)| {
            v.0 == b.0
                && match (v.1, b.1) {
                    (Some(x), Some(y)) => close(x, y),
                    (x, y) => x == y,
                }
        })
}

/// Gives row `id` of `features` the features `r`.
async fn set_features(client: &Client, id: i64, r: &[f64]) {
    client
        .execute(
            "UPDATE features SET a = $1, b = $2, c = $3, d = $4 WHERE id = $5",
            &[&r[0], &r[1], &r[2], &r[3], &id],
        )
        .await
        .unwrap();
}

/// `risky` (an aggregate over scores) agrees with `scored` (the scores).
async fn consistent(client: &Client) {
    let risky = client
        .query_one("SELECT n, total FROM risky", &[])
        .await
        .unwrap();
    let direct = client
        .query_one(
            "SELECT count(*), sum(score) FROM scored WHERE score > 0.5",
            &[],
        )
        .await
        .unwrap();
    let n: i64 = risky.get(0);
    assert_eq!(n, direct.get::<_, i64>(0));
    if n > 0 {
        assert!(close(risky.get(1), direct.get(1)));
    }
}

#[tokio::test]
async fn views_keep_scores_current_and_take_back_exactly_what_they_gave() {
    let mut server = TestServer::start();
    let client = server.connect().await;
    let expected = expected();
    load_rows(&client, &expected).await;
    client
        .batch_execute(
            "CREATE MODEL fraud FROM 'tests/models/logreg_tensor.onnx';
             CREATE MATERIALIZED VIEW scored AS
               SELECT id, PREDICT('fraud', a, b, c, d) AS score FROM features;
             CREATE MATERIALIZED VIEW risky AS
               SELECT count(*) AS n, sum(s) AS total
               FROM (SELECT id, PREDICT('fraud', a, b, c, d) AS s FROM features) x
               WHERE s > 0.5;
             FLUSH",
        )
        .await
        .unwrap();
    let batch_query = "SELECT id, PREDICT('fraud', a, b, c, d) FROM features ORDER BY id";
    let view_query = "SELECT id, score FROM scored ORDER BY id";
    let logreg = |i: usize| floats(&expected["logreg_tensor"]["proba"][i])[1];
    let view = scores_of(&client, view_query).await;
    assert_eq!(view.len(), 50);
    for (id, score) in &view {
        assert!(close(score.unwrap(), logreg(*id as usize)), "id {id}");
    }
    // The aggregate over the scores agrees with the scored rows.
    consistent(&client).await;

    // An update retracts the old score and emits the new one; a delete takes it back.
    set_features(&client, 0, &floats(&expected["rows"][1])).await;
    client
        .batch_execute("DELETE FROM features WHERE id = 2; FLUSH")
        .await
        .unwrap();
    let view = scores_of(&client, view_query).await;
    assert!(same_scores(&view, &scores_of(&client, batch_query).await));
    assert_eq!(view.len(), 49);
    assert!(close(view[0].1.unwrap(), logreg(1)));
    consistent(&client).await;

    // A new version: new rows get its scores, rows scored before keep theirs until they
    // change, and taking one of those back takes back the score it was given.
    client
        .batch_execute("CREATE OR REPLACE MODEL fraud FROM 'tests/models/forest_tensor.onnx'")
        .await
        .unwrap();
    let forest = |i: usize| floats(&expected["forest_tensor"]["proba"][i])[1];
    set_features(&client, 5, &floats(&expected["rows"][3])).await;
    client.batch_execute("FLUSH").await.unwrap();
    let view = scores_of(&client, view_query).await;
    let score = |id: i64| view.iter().find(|(i, _)| *i == id).unwrap().1.unwrap();
    assert!(close(score(5), forest(3)));
    assert!(close(score(4), logreg(4)));
    consistent(&client).await;

    // What a view remembers survives a restart.
    drop(client);
    server.restart();
    let client = server.connect().await;
    client
        .batch_execute("DELETE FROM features WHERE id IN (4, 6, 7); FLUSH")
        .await
        .unwrap();
    assert_eq!(scores_of(&client, view_query).await.len(), 46);
    consistent(&client).await;

    // A version that takes or gives other types is refused while views use the model.
    let (state, message) = error_of(
        &client,
        "CREATE OR REPLACE MODEL fraud FROM 'tests/models/gbr.onnx'",
    )
    .await;
    assert_eq!(state, "2BP01", "{message}");
    // Dropping the model is refused while views use it, and CASCADE drops them.
    let (state, message) = error_of(&client, "DROP MODEL fraud").await;
    assert_eq!(state, "2BP01", "{message}");
    client
        .batch_execute("DROP MODEL fraud CASCADE")
        .await
        .unwrap();
    let (state, _) = error_of(&client, "SELECT * FROM scored").await;
    assert_eq!(state, "42P01");

    // A sink's own query scores rows as PREDICT does, and keeps its model from DROP.
    let out = tempfile::tempdir().unwrap();
    client
        .batch_execute(&format!(
            "CREATE MODEL fraud FROM 'tests/models/logreg_tensor.onnx'; \
             CREATE SINK scores_out AS SELECT id, PREDICT('fraud', a, b, c, d) AS score \
             FROM features WHERE id < 20 WITH (connector = 'file', path = '{}', \
             force_append_only = 'true') FORMAT PLAIN ENCODE JSON",
            out.path().display()
        ))
        .await
        .unwrap();
    common::wait_for(
        &client,
        "SELECT count(*) FROM augur_catalog.sinks WHERE last_epoch IS NOT NULL AND backlog = 0",
        1,
    )
    .await;
    let mut written: Vec<(i64, Option<f64>)> = Vec::new();
    for entry in std::fs::read_dir(out.path()).unwrap() {
        for line in std::fs::read_to_string(entry.unwrap().path())
            .unwrap()
            .lines()
        {
            let row: Value = serde_json::from_str(line).unwrap();
            written.push((row["id"].as_i64().unwrap(), row["score"].as_f64()));
        }
    }
    written.sort_by_key(|(id, _)| *id);
    let batch = scores_of(
        &client,
        "SELECT id, PREDICT('fraud', a, b, c, d) FROM features WHERE id < 20 ORDER BY id",
    )
    .await;
    assert!(batch.len() > 10);
    assert!(same_scores(&written, &batch), "{written:?} != {batch:?}");
    let (state, message) = error_of(&client, "DROP MODEL fraud").await;
    assert_eq!(state, "2BP01", "{message}");
    client
        .batch_execute("DROP MODEL fraud CASCADE")
        .await
        .unwrap();
    assert_eq!(
        common::scalar(&client, "SELECT count(*) FROM augur_catalog.sinks").await,
        0
    );
}

#[tokio::test]
async fn a_failing_model_run_in_a_view_gives_null_and_is_counted() {
    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE MODEL lookup FROM 'tests/models/lookup.onnx';
             CREATE TABLE t (id BIGINT PRIMARY KEY, x DOUBLE PRECISION);
             CREATE MATERIALIZED VIEW looked_up AS SELECT id, PREDICT('lookup', x) AS y FROM t;
             INSERT INTO t VALUES (1, 1), (2, 12), (3, 3);
             FLUSH",
        )
        .await
        .unwrap();
    let rows = scores_of(&client, "SELECT id, y FROM looked_up ORDER BY id").await;
    assert_eq!(rows, vec![(1, Some(1.5)), (2, None), (3, Some(4.5))]);
    let row = client
        .query_one(
            "SELECT errors, last_error FROM augur_catalog.views WHERE name = 'looked_up'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert!(row.get::<_, String>(1).contains("lookup"));
    // The pipeline goes on.
    client
        .batch_execute("INSERT INTO t VALUES (4, 4); UPDATE t SET x = 2 WHERE id = 2; FLUSH")
        .await
        .unwrap();
    let rows = scores_of(&client, "SELECT id, y FROM looked_up ORDER BY id").await;
    assert_eq!(
        rows,
        vec![
            (1, Some(1.5)),
            (2, Some(3.0)),
            (3, Some(4.5)),
            (4, Some(6.0))
        ]
    );

    // Over a source, in WHERE and in an aggregate: failing rows count as the view's errors too.
    client
        .batch_execute(
            "CREATE SOURCE s (id BIGINT, x BIGINT) WITH (connector = 'datagen', \
               datagen.rows = '500', datagen.rows.per.second = '1000000', \
               fields.id.kind = 'sequence', fields.x.min = '0', fields.x.max = '19');
             CREATE MATERIALIZED VIEW kept AS SELECT count(*) AS n, sum(PREDICT('lookup', x)) \
               AS total FROM s WHERE PREDICT('lookup', x) >= 3;
             FLUSH",
        )
        .await
        .unwrap();
    let expected = client
        .query_one(
            "SELECT count(*) FILTER (WHERE x BETWEEN 2 AND 9), \
               sum(1.5 * x) FILTER (WHERE x BETWEEN 2 AND 9), count(*) FILTER (WHERE x >= 10) \
             FROM s",
            &[],
        )
        .await
        .unwrap();
    let view = client
        .query_one("SELECT n, total FROM kept", &[])
        .await
        .unwrap();
    assert_eq!(view.get::<_, i64>(0), expected.get::<_, i64>(0));
    assert!(close(view.get(1), expected.get(1)));
    let failing: i64 = expected.get(2);
    assert!(failing > 0);
    let row = client
        .query_one(
            "SELECT errors, last_error FROM augur_catalog.views WHERE name = 'kept'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), failing);
    assert!(row.get::<_, String>(1).contains("lookup"));
}

#[tokio::test]
async fn model_calls_outside_the_select_list_need_rows_that_only_grow() {
    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE MODEL gbr FROM 'tests/models/gbr.onnx';
             CREATE TABLE t (id BIGINT PRIMARY KEY, b DOUBLE PRECISION, c DOUBLE PRECISION, \
               d DOUBLE PRECISION);
             CREATE SOURCE s (id BIGINT, b DOUBLE PRECISION, c DOUBLE PRECISION, \
               d DOUBLE PRECISION) WITH (connector = 'datagen', datagen.rows = '2000', \
               datagen.rows.per.second = '1000000', \
               fields.id.kind = 'sequence', fields.b.min = '0', fields.b.max = '8', \
               fields.c.min = '0', fields.c.max = '200', fields.d.min = '0', fields.d.max = '1000')",
        )
        .await
        .unwrap();
    // Over a table, rows change: a model call in WHERE or an aggregate is refused.
    for sql in [
        "CREATE MATERIALIZED VIEW v AS SELECT id FROM t WHERE PREDICT('gbr', b, c, d) > 100",
        "CREATE MATERIALIZED VIEW v AS SELECT avg(PREDICT('gbr', b, c, d)) FROM t",
    ] {
        let (state, message) = error_of(&client, sql).await;
        assert_eq!(state, "0A000", "{sql}: {message}");
        assert!(message.contains("SELECT list of a subquery"), "{message}");
    }
    // Over a source, rows only grow: anywhere goes; the view equals its batch query.
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW high AS SELECT count(*) AS n, avg(PREDICT('gbr', b, c, d)) \
               AS mean FROM s WHERE PREDICT('gbr', b, c, d) > 100;
             FLUSH",
        )
        .await
        .unwrap();
    let view = client
        .query_one("SELECT n, mean FROM high", &[])
        .await
        .unwrap();
    let batch = client
        .query_one(
            "SELECT count(*), avg(PREDICT('gbr', b, c, d)) FROM s WHERE PREDICT('gbr', b, c, d) > 100",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(view.get::<_, i64>(0), batch.get::<_, i64>(0));
    assert!(view.get::<_, i64>(0) > 0);
    assert!(close(view.get(1), batch.get(1)));
}

#[tokio::test]
async fn without_onnx_runtime_the_server_runs_and_create_model_says_how_to_install_it() {
    let server = TestServer::start_with(&["--onnxruntime", "/nonexistent/libonnxruntime.so"]);
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE t (id BIGINT PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let (state, message) = error_of(&client, "CREATE MODEL m FROM 'tests/models/gbr.onnx'").await;
    assert_eq!(state, "58000", "{message}");
    assert!(message.contains("pip install onnxruntime"), "{message}");
    let row = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
}

#[tokio::test]
async fn predict_over_http_scores_as_predict_in_sql() {
    let server = TestServer::start();
    let client = server.connect().await;
    client
        .batch_execute("CREATE MODEL fraud FROM 'tests/models/gbc_tensor.onnx'")
        .await
        .unwrap();
    let in_sql: f64 = client
        .query_one("SELECT PREDICT('fraud', 195.2, 3, 25.1, 641.0)", &[])
        .await
        .unwrap()
        .get(0);
    let other: f64 = client
        .query_one("SELECT PREDICT('fraud', 20.0, 9, 30.0, 12.0)", &[])
        .await
        .unwrap()
        .get(0);
    let web = reqwest::Client::new();
    let url = format!("{}/v1/predict/fraud", server.http_url());
    let post = |body: &str| web.post(&url).body(body.to_string()).send();
    let one: Value = post("[195.2, 3, 25.1, 641.0]")
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    assert!(close(one["prediction"].as_f64().unwrap(), in_sql), "{one}");
    let many: Value = post("[[195.2, 3, 25.1, 641.0], [20.0, 9, 30.0, 12.0]]")
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    let scores: Vec<f64> = many["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        close(scores[0], in_sql) && close(scores[1], other),
        "{many}"
    );
    // Wrong inputs, an unknown model, a body that is not inputs.
    let response = post("[1, 2, 3]").await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let error: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(error["code"], "42883", "{error}");
    let response = web
        .post(format!("{}/v1/predict/nothing", server.http_url()))
        .body("[1]")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    for body in ["{\"a\": 1}", "not json", "[[1, 2], [1]]", "[{}]"] {
        assert_eq!(post(body).await.unwrap().status().as_u16(), 400, "{body}");
    }
}
