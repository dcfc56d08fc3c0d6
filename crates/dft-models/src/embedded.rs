//! Where the embedded real model (SmolLM2-135M-Instruct, Q4_1 GGUF from PyPI) lives, and the one rule the
//! real-model tests of every crate share for finding it.

use std::path::PathBuf;

/// `DFT_SMOLLM2_GGUF`, else the cache `scripts/fetch-smollm2.sh` writes (`.cache/models/smollm2/…` in the
/// workspace root).
pub fn smollm2_gguf_path() -> PathBuf {
    std::env::var_os("DFT_SMOLLM2_GGUF").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    })
}

/// For tests: the GGUF if present; otherwise `None` with a message — unless `DFT_REQUIRE_MODELS=1` (CI sets
/// it), which turns the model's absence into a failure, so real-model tests never pass silently.
pub fn smollm2_gguf_for_tests() -> Option<PathBuf> {
    let p = smollm2_gguf_path();
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
