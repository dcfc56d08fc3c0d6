//! Test helpers shared by the unit tests of this crate.
use burn::backend::Flex;
use dft_models::{CausalLm, ModelConfig};

/// A 2-block random Llama (hidden 32, GQA 4/2 heads, tied head) over `vocab` tokens; BOS 0, EOS 1.
pub(crate) fn tiny_model(vocab: usize) -> CausalLm<Flex> {
    let json = format!(
        r#"{{"model_type": "llama", "vocab_size": {vocab}, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "tie_word_embeddings": true, "bos_token_id": 0, "eos_token_id": 1}}"#
    );
    let cfg = ModelConfig::from_hf_json_str(&json, "tiny.json".as_ref()).unwrap();
    CausalLm::random(cfg, 3, &Default::default()).unwrap()
}
