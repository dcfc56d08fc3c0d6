//! Decoder LLMs (Llama-2, SmolLM2, Gemma-2, Gemma-3) built for deep supervision: every block's hidden state,
//! a forward truncated after block k, the logit lens `lm_head(final_norm(h_k))` (with detachable head),
//! KV-cache generation, and loading from HF safetensors + `config.json` or from GGUF files.
//! All code is generic over Burn's `Backend`.

pub mod chat;
pub mod config;
pub mod embedded;
pub mod error;
pub mod export;
pub mod generate;
pub mod gguf;
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
pub use model::{CausalLm, ForwardSpec, HiddenStates, KvCache, Lengths, RaggedRows};
pub use safetensors_io::SafetensorsCheckpoint;
pub use tensor_source::{HostTensor, TensorSource};
pub use tokenizer_meta::TokenizerMeta;
