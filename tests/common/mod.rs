//! Shared helpers of the root package's integration tests: the repository root and the tiny random Llama
//! (SmolLM2's 49,152-token vocabulary and tokenizer) that the training tests run on.
#![allow(dead_code)]
use dft_models::{Arch, CausalLm, LayerType, ModelConfig};
use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tiny Llama config (hidden 16, 2 heads / 1 KV head) with SmolLM2's vocabulary.
pub fn tiny_config(layers: usize, tied: bool) -> ModelConfig {
    ModelConfig {
        arch: Arch::Llama,
        vocab_size: 49152,
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: layers,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 8,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_local_base_freq: None,
        max_position_embeddings: 512,
        tie_word_embeddings: tied,
        hidden_act: dft_models::Activation::Silu,
        attention_bias: false,
        mlp_bias: false,
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
        pad_token_id: Some(2),
        query_pre_attn_scalar: None,
        attn_logit_softcapping: None,
        final_logit_softcapping: None,
        sliding_window: None,
        layer_types: vec![LayerType::Full; layers],
    }
}

/// SmolLM2's tokenizer (the committed fixture).
pub fn smollm2_tokenizer() -> tokenizers::Tokenizer {
    tokenizers::Tokenizer::from_file(root().join("crates/dft-data/tests/fixtures/smollm2-tokenizer.json")).unwrap()
}

/// The tiny model with seeded random weights and SmolLM2's tokenizer, saved as an HF directory `dir/model`.
pub fn save_tiny_model(dir: &Path, layers: usize, tied: bool) -> PathBuf {
    let model = CausalLm::<burn::backend::Flex>::random(tiny_config(layers, tied), 5, &Default::default()).unwrap();
    let path = dir.join("model");
    model.save_pretrained(&path, Some(&smollm2_tokenizer())).unwrap();
    path
}
