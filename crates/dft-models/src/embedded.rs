//! Where the real models fetched from PyPI live — SmolLM2-135M-Instruct (Q4_1 GGUF, the embedded model)
//! and Gemma-3-270M (Q4_K_M GGUF, `scripts/fetch-gemma3.sh`) — and the one rule the real-model tests of
//! every crate share for finding them.

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

/// `DFT_GEMMA3_GGUF`, else the cache `scripts/fetch-gemma3.sh` writes (`.cache/models/gemma3/…` in the
/// workspace root): google/gemma-3-270m (the pretrained base model), Q4_K_M.
pub fn gemma3_gguf_path() -> PathBuf {
    std::env::var_os("DFT_GEMMA3_GGUF").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/gemma3/gemma-3-270m-q4_k_m.gguf")
    })
}

/// For tests: the Gemma-3-270M GGUF if present; otherwise `None` with a message — unless
/// `DFT_REQUIRE_MODELS=1`, which turns its absence into a failure (as for SmolLM2).
pub fn gemma3_gguf_for_tests() -> Option<PathBuf> {
    let p = gemma3_gguf_path();
    if p.is_file() {
        return Some(p);
    }
    let msg =
        format!("Gemma-3-270M GGUF not found at {} (run scripts/fetch-gemma3.sh or set DFT_GEMMA3_GGUF)", p.display());
    if std::env::var("DFT_REQUIRE_MODELS").as_deref() == Ok("1") {
        panic!("{msg}; DFT_REQUIRE_MODELS=1");
    }
    eprintln!("skipping: {msg}");
    None
}
