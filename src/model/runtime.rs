//! Finding and loading ONNX Runtime's library, and the process's one environment.
//!
//! The library is loaded at run time (`ort`'s `load-dynamic`), from the `onnxruntime` Python
//! package's `capi/libonnxruntime.so.*`: the same runtime data scientists validate their models
//! with, and nothing to download when Augur is built.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

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
