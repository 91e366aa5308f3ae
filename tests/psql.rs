//! psql against a live server: its catalog queries (`\d`, `\dt`, `\l`, ...) and `\copy`.

mod common;

use std::process::Command;

use common::TestServer;

/// Runs psql against `server` with `args` after the connection options; returns its stdout and
/// fails the test when psql fails.
fn psql_with(server: &TestServer, args: &[&str]) -> String {
    let output = Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(server.addr.ip().to_string())
        .arg("-p")
        .arg(server.addr.port().to_string())
        .args(["-U", "augur", "-d", "augur"])
        .args(args)
        .output()
        .expect("psql must be installed (Debian package postgresql-client)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "psql {args:?} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

fn psql(server: &TestServer, command: &str) -> String {
    psql_with(server, &["-c", command])
}

#[test]
fn psql_describe_commands() {
    let server = TestServer::start();
    psql(
        &server,
        "CREATE TABLE users (user_id BIGINT PRIMARY KEY, country TEXT NOT NULL, score DOUBLE PRECISION)",
    );
    let dt = psql(&server, "\\dt");
    assert!(dt.contains("users"), "{dt}");
    let d = psql(&server, "\\d");
    assert!(d.contains("users"), "{d}");
    let d_users = psql(&server, "\\d users");
    for expected in [
        "user_id",
        "bigint",
        "country",
        "text",
        "not null",
        "double precision",
    ] {
        assert!(
            d_users.contains(expected),
            "\\d users lacks {expected}:\n{d_users}"
        );
    }
    for command in ["\\l", "\\dn", "\\dv", "\\dm"] {
        psql(&server, command);
    }
    let l = psql(&server, "\\l");
    assert!(l.contains("augur"), "{l}");
    let dn = psql(&server, "\\dn");
    assert!(dn.contains("public"), "{dn}");

    // Materialized views: \dm lists them, \d describes them, pg_matviews has their queries.
    psql(
        &server,
        "CREATE MATERIALIZED VIEW user_count AS SELECT country, count(*) AS n FROM users GROUP BY country",
    );
    let dm = psql(&server, "\\dm");
    assert!(
        dm.contains("user_count") && dm.contains("materialized view"),
        "{dm}"
    );
    let dt = psql(&server, "\\dt");
    assert!(!dt.contains("user_count"), "a view is not a table: {dt}");
    let d = psql(&server, "\\d user_count");
    assert!(d.contains("country") && d.contains("bigint"), "{d}");
    let matviews = psql(&server, "SELECT matviewname, definition FROM pg_matviews");
    assert!(
        matviews.contains("user_count") && matviews.contains("GROUP BY country"),
        "{matviews}"
    );
    // Schemas: \dn lists them, \dt schema.* and \d schema.name find what they hold; \dt
    // alone lists the search path's relations, public's.
    psql(&server, "CREATE SCHEMA ml");
    psql(
        &server,
        "CREATE TABLE ml.users (id INT PRIMARY KEY, label TEXT UNIQUE, w NUMERIC(6,2) DEFAULT 1 CHECK (w > 0))",
    );
    psql(&server, "CREATE INDEX ON ml.users (w)");
    psql(
        &server,
        "CREATE MATERIALIZED VIEW ml.labels AS SELECT label, count(*) AS n FROM ml.users GROUP BY label",
    );
    let dn = psql(&server, "\\dn");
    assert!(dn.contains(" ml ") && dn.contains("public"), "{dn}");
    let dt = psql(&server, "\\dt ml.*");
    assert!(dt.contains(" ml ") && dt.contains("users"), "{dt}");
    let dt = psql(&server, "\\dt");
    assert!(!dt.contains(" ml "), "ml is not on the search path: {dt}");
    let d = psql(&server, "\\d ml.users");
    for expected in [
        "Table \"ml.users\"",
        "numeric(6,2)",
        "\"users_pkey\" PRIMARY KEY, btree (id)",
        "\"users_label_key\" UNIQUE CONSTRAINT, btree (label)",
        "Check constraints:",
        "\"users_w_check\" CHECK ((w > 0))",
        "\"users_w_idx\" btree (w)",
    ] {
        assert!(d.contains(expected), "\\d ml.users lacks {expected}:\n{d}");
    }
    let dm = psql(&server, "\\dm ml.*");
    assert!(dm.contains("labels"), "{dm}");
    let d = psql(&server, "\\d+ ml.labels");
    assert!(d.contains("GROUP BY label"), "{d}");
}

/// What psql shows of types, defaults, identities, indexes, sizes, functions, roles and types,
/// as PostgreSQL shows it.
#[test]
fn psql_describes_columns_indexes_functions_and_roles() {
    let server = TestServer::start();
    psql(
        &server,
        "CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT NOT NULL, price NUMERIC(10,2), \
         tags TEXT[], seen TIMESTAMPTZ, qty INT DEFAULT 3, ttl INTERVAL, \
         n INT GENERATED ALWAYS AS IDENTITY, s SERIAL)",
    );
    psql(
        &server,
        "INSERT INTO items (id, name, price) SELECT g, 'n' || (g % 10), g FROM generate_series(1, 1000) AS t(g)",
    );
    psql(&server, "CREATE INDEX items_name ON items (name)");
    psql(
        &server,
        "CREATE VIEW cheap AS SELECT id, name FROM items WHERE price < 10",
    );

    // \d: PostgreSQL's type names with modifiers, defaults, identity, and the indexes.
    let d = psql(&server, "\\d items");
    for expected in [
        "numeric(10,2)",
        "text[]",
        "timestamp with time zone",
        "| interval",
        "| 3",
        "generated always as identity",
        "nextval('items_s_seq')",
        "Indexes:",
        "\"items_pkey\" PRIMARY KEY, btree (id)",
        "\"items_name\" btree (name)",
    ] {
        assert!(d.contains(expected), "\\d items lacks {expected}:\n{d}");
    }
    // \d+ also shows storage and, for a view, its definition; a view's columns are nullable.
    let d_plus = psql(&server, "\\d+ items");
    assert!(
        d_plus.contains("Storage") && d_plus.contains("numeric(10,2)"),
        "{d_plus}"
    );
    let view = psql(&server, "\\d+ cheap");
    assert!(
        view.contains("View definition:") && !view.contains("not null"),
        "{view}"
    );

    // \di+ and \dt+ give sizes; the secondary index holds 1,000 entries.
    let di = psql(&server, "\\di+");
    let index_line = di
        .lines()
        .find(|l| l.contains("items_name"))
        .unwrap_or_default();
    assert!(index_line.contains("kB"), "{di}");
    let dt = psql(&server, "\\dt+");
    let table_line = dt
        .lines()
        .find(|l| l.contains(" items "))
        .unwrap_or_default();
    assert!(
        table_line.contains("kB") && table_line.contains("augur"),
        "{dt}"
    );
    assert!(
        !dt.contains("augur_catalog"),
        "system schemas are not on the search path: {dt}"
    );
    assert_eq!(
        psql_with(
            &server,
            &[
                "-tA",
                "-c",
                "SELECT pg_size_pretty(20 * 1024 * 1024::bigint)"
            ]
        )
        .trim(),
        "20 MB"
    );

    // \df lists PostgreSQL's functions with their signatures.
    let df = psql(&server, "\\df abs");
    for expected in [
        "double precision | double precision",
        "bigint           | bigint",
    ] {
        assert!(df.contains(expected), "\\df abs lacks {expected}:\n{df}");
    }
    let df = psql(&server, "\\df concat");
    assert!(df.contains("VARIADIC \"any\""), "{df}");
    // \du lists the roles, \dT the user-defined types (none), \dv the views.
    let du = psql(&server, "\\du");
    assert!(du.contains("augur") && du.contains("Superuser"), "{du}");
    psql(&server, "\\dT");
    assert!(psql(&server, "\\dv+").contains("cheap"));
}

#[test]
fn psql_copy_round_trip() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let output = dir.path().join("out.csv");
    std::fs::write(&input, "id,label\n1,one\n2,\"two, too\"\n3,\n").unwrap();
    psql(
        &server,
        "CREATE TABLE items (id INT PRIMARY KEY, label TEXT)",
    );
    let copied = psql(
        &server,
        &format!(
            "\\copy items FROM '{}' WITH (FORMAT csv, HEADER)",
            input.display()
        ),
    );
    assert!(copied.contains("COPY 3"), "{copied}");
    psql(
        &server,
        &format!(
            "\\copy (SELECT id, label FROM items ORDER BY id) TO '{}' WITH (FORMAT csv)",
            output.display()
        ),
    );
    assert_eq!(
        std::fs::read_to_string(&output).unwrap(),
        "1,one\n2,\"two, too\"\n3,\n"
    );
}

#[test]
fn tls_with_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl must be installed");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let server = TestServer::start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let output = Command::new("psql")
        .arg("-X")
        .arg(format!(
            "host={} port={} user=augur dbname=augur sslmode=require",
            server.addr.ip(),
            server.addr.port()
        ))
        .args(["-c", "\\conninfo", "-c", "SELECT 40 + 2"])
        .output()
        .expect("psql");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("SSL connection"), "{stdout}");
    assert!(stdout.contains("42"), "{stdout}");
}

#[test]
fn the_quickstart_script_runs() {
    let server = TestServer::start();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/quickstart.sql");
    let stdout = psql_with(&server, &["-f", script.to_str().unwrap()]);
    for expected in [
        "INSERT 0 3",
        " DE      |     2",
        "       2 | US      | new",
        "running_total",
        "65.5",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}
