//! Where the real models fetched from PyPI live — SmolLM2-135M-Instruct (Q4_1 GGUF, the embedded model)
//! and Gemma-3-270M (Q4_K_M GGUF, `scripts/fetch-gemma3.sh`). The real-model tests find them through
//! `dft_test_support::models`.

use std::path::PathBuf;

/// `DFT_SMOLLM2_GGUF`, else the cache `scripts/fetch-smollm2.sh` writes (`.cache/models/smollm2/…` in the
/// workspace root).
pub fn smollm2_gguf_path() -> PathBuf {
    std::env::var_os("DFT_SMOLLM2_GGUF").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    })
}

/// `DFT_GEMMA3_GGUF`, else the cache `scripts/fetch-gemma3.sh` writes (`.cache/models/gemma3/…` in the
/// workspace root): google/gemma-3-270m (the pretrained base model), Q4_K_M.
pub fn gemma3_gguf_path() -> PathBuf {
    std::env::var_os("DFT_GEMMA3_GGUF").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/gemma3/gemma-3-270m-q4_k_m.gguf")
    })
}
