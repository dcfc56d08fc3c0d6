//! Decoder LLMs (Llama-2, SmolLM2, Gemma-2, Gemma-3) built for deep supervision: every block's hidden state,
//! a forward truncated after block k, the logit lens `lm_head(final_norm(h_k))` (with detachable head),
//! KV-cache generation, and loading from HF safetensors + `config.json` or from GGUF files.
//! All code is generic over Burn's `Backend`.
//!
//! Load → hidden states → logit lens → generate (the tiny Llama this crate's tests load; a real
//! checkpoint folder or `.gguf` file loads the same way, with [`load_pretrained`] or [`load_gguf`]):
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::{Int, Tensor, TensorData};
//! use dft_models::generate::{generate, GenerateConfig, Sampling};
//! use dft_models::load_pretrained;
//!
//! # fn main() -> dft_models::Result<()> {
//! let device = Default::default();
//! let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-llama");
//! let model = load_pretrained::<Flex>(&dir, &device)?.model;
//!
//! // Every block's hidden state h_0..=h_L for one prompt of 5 tokens.
//! let prompt = [1u32, 17, 42, 5, 9];
//! let ids = Tensor::<Flex, 2, Int>::from_data(TensorData::new(prompt.iter().map(|&t| t as i64).collect(), [1, 5]), &device);
//! let hidden = model.all_hidden_states(ids, None);
//! assert_eq!(hidden.len(), model.num_layers() + 1);
//!
//! // The logit lens at block 1: lm_head(final_norm(h_1)), one distribution per position.
//! let lens = model.logit_lens(hidden[1].clone(), false);
//! assert_eq!(lens.dims(), [1, 5, model.config.vocab_size]);
//!
//! // Greedy decoding with the KV cache; only the new tokens come back.
//! let cfg = GenerateConfig { max_new_tokens: 4, sampling: Sampling::Greedy, stop_tokens: vec![] };
//! let new_tokens = generate(&model, &prompt, &cfg)?;
//! assert_eq!(new_tokens.len(), 4);
//! # Ok(())
//! # }
//! ```

pub mod chat;
pub mod config;
pub mod embedded;
pub mod error;
pub mod export;
pub mod generate;
pub mod gguf;
pub mod jobs;
pub mod loading;
pub mod lora;
pub mod model;
pub mod safetensors_io;
pub mod tensor_source;
pub mod tokenizer_meta;

pub use chat::{ChatMessage, ChatTemplate, SpecialTokenStrings};
pub use config::{gemma3_layer_types, Activation, Arch, LayerType, ModelConfig};
pub use dft_losses::Precision;
pub use error::{ModelError, Result};
pub use export::{ExportDtype, HfExportOptions};
pub use loading::{load_gguf, load_pretrained, peek_config, HostTensors, Pretrained};
pub use lora::{LoraSpec, LoraTarget, SavedModule};
pub use model::{CausalLm, ForwardSpec, HiddenStates, KvCache, Lengths, RaggedRows, PACKING_MIN_PADDING};
pub use safetensors_io::SafetensorsCheckpoint;
pub use tensor_source::{HostTensor, TensorSource};
pub use tokenizer_meta::TokenizerMeta;
