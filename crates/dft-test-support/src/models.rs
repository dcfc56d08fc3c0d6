//! The real models for tests: present, or skipped with a message — unless `DFT_REQUIRE_MODELS=1` (CI sets
//! it), which turns a missing model into a failure, so real-model tests never pass silently.
use dft_models::embedded::{gemma3_gguf_path, smollm2_gguf_path};
use std::path::PathBuf;

fn present_or_skip(p: PathBuf, what: &str, fetch: &str, var: &str) -> Option<PathBuf> {
    if p.is_file() {
        return Some(p);
    }
    let msg = format!("{what} GGUF not found at {} (run scripts/{fetch} or set {var})", p.display());
    if std::env::var("DFT_REQUIRE_MODELS").as_deref() == Ok("1") {
        panic!("{msg}; DFT_REQUIRE_MODELS=1");
    }
    eprintln!("skipping: {msg}");
    None
}

/// SmolLM2-135M-Instruct (Q4_1 GGUF): `DFT_SMOLLM2_GGUF` or the fetch script's cache.
pub fn smollm2_gguf() -> Option<PathBuf> {
    present_or_skip(smollm2_gguf_path(), "SmolLM2", "fetch-smollm2.sh", "DFT_SMOLLM2_GGUF")
}

/// Gemma-3-270M (Q4_K_M GGUF): `DFT_GEMMA3_GGUF` or the fetch script's cache.
pub fn gemma3_gguf() -> Option<PathBuf> {
    present_or_skip(gemma3_gguf_path(), "Gemma-3-270M", "fetch-gemma3.sh", "DFT_GEMMA3_GGUF")
}
