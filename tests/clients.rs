//! Python clients (psycopg 3, SQLAlchemy, pandas) against a live server. The libraries live in
//! `./.venv`, which `scripts/test.sh` creates; without it this test fails and says so.

mod common;

use std::path::Path;
use std::process::Command;

use common::TestServer;

#[test]
fn psycopg_sqlalchemy_and_pandas() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run ./scripts/test.sh, which installs the Python client libraries",
        python.display()
    );
    let server = TestServer::start();
    let output = Command::new(&python)
        .arg(root.join("tests/clients/test_clients.py"))
        .arg(server.addr.ip().to_string())
        .arg(server.addr.port().to_string())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "client tests failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
