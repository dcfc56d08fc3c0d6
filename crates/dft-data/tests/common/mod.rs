//! Paths and the tokenizer shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use tokenizers::Tokenizer;

/// The workspace root (`crates/dft-data/../..`).
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `crates/dft-data/tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The project's shared data: `$DFT_SHARED_DATA`, else `../shared/data` beside the workspace.
pub fn shared_data() -> PathBuf {
    let dir = std::env::var_os("DFT_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    assert!(
        dir.join("train/alpaca_en_zh/data_v3").is_dir(),
        "shared data not found at {} (set DFT_SHARED_DATA to the folder holding train/alpaca_en_zh)",
        dir.display()
    );
    dir
}

pub fn alpaca_en_zh_dir() -> PathBuf {
    shared_data().join("train/alpaca_en_zh/data_v3")
}

/// SmolLM2-135M-Instruct's tokenizer as transformers builds it from the GGUF (see
/// tools/oracle/data_fixtures.py).
pub fn smollm2_tokenizer() -> Tokenizer {
    Tokenizer::from_file(fixture("smollm2-tokenizer.json")).expect("tokenizer fixture")
}
