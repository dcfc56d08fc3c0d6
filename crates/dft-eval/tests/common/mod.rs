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

/// The real SmolLM2-135M-Instruct GGUF (`DFT_SMOLLM2_GGUF` or the fetch script's cache). `None` (with a
/// message) when absent — unless `DFT_REQUIRE_MODELS=1`, which turns absence into a failure.
pub fn smollm2_gguf() -> Option<PathBuf> {
    let p = std::env::var_os("DFT_SMOLLM2_GGUF").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    if p.is_file() {
        return Some(p);
    }
    let msg =
        format!("SmolLM2 GGUF not found at {} (run scripts/fetch-smollm2.sh or set DFT_SMOLLM2_GGUF)", p.display());
    if std::env::var("DFT_REQUIRE_MODELS").as_deref() == Ok("1") {
        panic!("{msg}; DFT_REQUIRE_MODELS=1");
    }
    eprintln!("skipping: {msg}");
    None
}
