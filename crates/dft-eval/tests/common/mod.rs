//! Helpers shared by the integration tests: fixture and data locations.
#![allow(dead_code)]
use std::path::PathBuf;

/// `tests/fixtures/<name>` parsed as JSON (written by tools/oracle/metric_fixtures.py).
pub fn fixture(name: &str) -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The benchmark samples: `$DFT_EVAL_DATA`, else `shared/data/eval` inside or beside the repository.
pub fn eval_data_dir() -> PathBuf {
    if let Ok(d) = std::env::var("DFT_EVAL_DATA") {
        return PathBuf::from(d);
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    for cand in [repo.join("shared/data/eval"), repo.join("../shared/data/eval")] {
        if cand.is_dir() {
            return cand;
        }
    }
    panic!("benchmark samples not found: set DFT_EVAL_DATA to the shared/data/eval folder");
}

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use dft_test_support::models::smollm2_gguf;
