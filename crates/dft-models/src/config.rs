//! Model configuration, read from (and written to) Hugging Face `config.json`.
use crate::error::{ModelError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Decoder family. SmolLM2 and Llama-2 are `Llama`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Llama,
    Gemma2,
}

impl Arch {
    pub fn hf_model_type(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Gemma2 => "gemma2",
        }
    }
    pub fn hf_architecture(self) -> &'static str {
        match self {
            Arch::Llama => "LlamaForCausalLM",
            Arch::Gemma2 => "Gemma2ForCausalLM",
        }
    }
}

/// MLP activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// SiLU (Llama): `silu(gate) * up`.
    Silu,
    /// tanh-approximated GELU (Gemma's `gelu_pytorch_tanh`): `gelu_tanh(gate) * up`.
    GeluTanh,
}

/// Attention kind of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LayerType {
    Full,
    /// Sliding-window attention: query `i` sees key `j` iff `j <= i` and `i - j < window`.
    Sliding,
}

/// Everything the decoders need. Field names follow HF `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub hidden_act: Activation,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    /// Gemma-2: attention scores are scaled by `query_pre_attn_scalar^-0.5` instead of `head_dim^-0.5`.
    pub query_pre_attn_scalar: Option<f64>,
    /// Gemma-2: `scores = cap * tanh(scores / cap)` before masking.
    pub attn_logit_softcapping: Option<f64>,
    /// Gemma-2: `logits = cap * tanh(logits / cap)`.
    pub final_logit_softcapping: Option<f64>,
    pub sliding_window: Option<usize>,
    /// One entry per layer.
    pub layer_types: Vec<LayerType>,
}

fn get<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    v.get(key).filter(|x| !x.is_null())
}

impl ModelConfig {
    /// Read an HF `config.json` (model_type `llama` or `gemma2`).
    pub fn from_hf_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io { path: path.into(), source })?;
        Self::from_hf_json_str(&text, path)
    }

    /// Parse HF `config.json` text; `path` is only used in error messages.
    pub fn from_hf_json_str(text: &str, path: &Path) -> Result<Self> {
        let err = |msg: String| ModelError::Config { path: path.into(), msg };
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| err(format!("line {} column {}: {e}", e.line(), e.column())))?;
        let model_type =
            get(&v, "model_type").and_then(|x| x.as_str()).ok_or_else(|| err("missing field `model_type`".into()))?;
        let arch = match model_type {
            "llama" => Arch::Llama,
            "gemma2" => Arch::Gemma2,
            other => return Err(ModelError::UnknownArchitecture { path: path.into(), arch: other.into() }),
        };
        let usize_field = |k: &str| -> Result<usize> {
            get(&v, k)
                .and_then(|x| x.as_u64())
                .map(|x| x as usize)
                .ok_or_else(|| err(format!("missing or non-integer field `{k}`")))
        };
        let f64_opt = |k: &str| get(&v, k).and_then(|x| x.as_f64());
        let hidden_size = usize_field("hidden_size")?;
        let num_attention_heads = usize_field("num_attention_heads")?;
        let num_hidden_layers = usize_field("num_hidden_layers")?;
        let num_key_value_heads =
            get(&v, "num_key_value_heads").and_then(|x| x.as_u64()).map(|x| x as usize).unwrap_or(num_attention_heads);
        let head_dim = get(&v, "head_dim")
            .and_then(|x| x.as_u64())
            .map(|x| x as usize)
            .unwrap_or(hidden_size / num_attention_heads.max(1));
        // transformers >= 5 may nest rope settings in `rope_parameters`.
        let rope = get(&v, "rope_parameters").or_else(|| get(&v, "rope_scaling"));
        if let Some(r) = rope {
            if let Some(t) = r.get("rope_type").or_else(|| r.get("type")).and_then(|x| x.as_str()) {
                if t != "default" {
                    return Err(err(format!("rope type `{t}` is not supported (only the default RoPE)")));
                }
            }
        }
        let rope_theta = f64_opt("rope_theta")
            .or_else(|| rope.and_then(|r| r.get("rope_theta")).and_then(|x| x.as_f64()))
            .unwrap_or(10000.0);
        let act_name = get(&v, "hidden_activation")
            .or_else(|| get(&v, "hidden_act"))
            .and_then(|x| x.as_str())
            .unwrap_or(match arch {
                Arch::Llama => "silu",
                Arch::Gemma2 => "gelu_pytorch_tanh",
            });
        let hidden_act = match act_name {
            "silu" | "swish" => Activation::Silu,
            "gelu_pytorch_tanh" | "gelu_tanh" => Activation::GeluTanh,
            other => return Err(err(format!("field `hidden_act`: unsupported activation `{other}`"))),
        };
        let ids = |k: &str| -> Vec<u32> {
            match get(&v, k) {
                Some(serde_json::Value::Array(a)) => a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect(),
                Some(x) => x.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
                None => vec![],
            }
        };
        let sliding_window = get(&v, "sliding_window").and_then(|x| x.as_u64()).map(|x| x as usize);
        let layer_types = match get(&v, "layer_types").and_then(|x| x.as_array()) {
            Some(a) => a
                .iter()
                .enumerate()
                .map(|(i, t)| match t.as_str() {
                    Some("full_attention") => Ok(LayerType::Full),
                    Some("sliding_attention") => Ok(LayerType::Sliding),
                    _ => Err(err(format!(
                        "field `layer_types[{i}]`: expected \"full_attention\" or \"sliding_attention\""
                    ))),
                })
                .collect::<Result<Vec<_>>>()?,
            None => (0..num_hidden_layers)
                .map(|i| if arch == Arch::Gemma2 && i % 2 == 0 { LayerType::Sliding } else { LayerType::Full })
                .collect(),
        };
        let cfg = ModelConfig {
            arch,
            vocab_size: usize_field("vocab_size")?,
            hidden_size,
            intermediate_size: usize_field("intermediate_size")?,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: f64_opt("rms_norm_eps").unwrap_or(1e-6),
            rope_theta,
            max_position_embeddings: get(&v, "max_position_embeddings").and_then(|x| x.as_u64()).unwrap_or(4096)
                as usize,
            tie_word_embeddings: get(&v, "tie_word_embeddings")
                .and_then(|x| x.as_bool())
                .unwrap_or(arch == Arch::Gemma2),
            hidden_act,
            attention_bias: get(&v, "attention_bias").and_then(|x| x.as_bool()).unwrap_or(false),
            mlp_bias: get(&v, "mlp_bias").and_then(|x| x.as_bool()).unwrap_or(false),
            bos_token_id: ids("bos_token_id").first().copied(),
            eos_token_ids: ids("eos_token_id"),
            pad_token_id: ids("pad_token_id").first().copied(),
            query_pre_attn_scalar: f64_opt("query_pre_attn_scalar"),
            attn_logit_softcapping: f64_opt("attn_logit_softcapping"),
            final_logit_softcapping: f64_opt("final_logit_softcapping"),
            sliding_window,
            layer_types,
        };
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    /// Internal consistency checks; the message names the offending field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.num_attention_heads == 0 || self.num_key_value_heads == 0 {
            return Err("`num_attention_heads` and `num_key_value_heads` must be > 0".into());
        }
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            return Err(format!(
                "`num_attention_heads` ({}) must be a multiple of `num_key_value_heads` ({})",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if self.head_dim % 2 != 0 {
            return Err(format!("`head_dim` ({}) must be even for RoPE", self.head_dim));
        }
        if self.layer_types.len() != self.num_hidden_layers {
            return Err(format!(
                "`layer_types` has {} entries, `num_hidden_layers` is {}",
                self.layer_types.len(),
                self.num_hidden_layers
            ));
        }
        if self.layer_types.contains(&LayerType::Sliding) && self.sliding_window.is_none() {
            return Err("sliding-attention layers need `sliding_window`".into());
        }
        for (k, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
        ] {
            if v == 0 {
                return Err(format!("`{k}` must be > 0"));
            }
        }
        Ok(())
    }

    /// HF `config.json` for this model, as transformers expects it.
    pub fn to_hf_json(&self) -> serde_json::Value {
        use serde_json::json;
        let eos = match self.eos_token_ids.as_slice() {
            [] => serde_json::Value::Null,
            [one] => json!(one),
            many => json!(many),
        };
        let mut v = json!({
            "architectures": [self.arch.hf_architecture()],
            "model_type": self.arch.hf_model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "pad_token_id": self.pad_token_id,
            "torch_dtype": "float32",
        });
        let m = v.as_object_mut().unwrap();
        match self.arch {
            Arch::Llama => {
                m.insert("hidden_act".into(), json!("silu"));
                m.insert("mlp_bias".into(), json!(self.mlp_bias));
            }
            Arch::Gemma2 => {
                m.insert("hidden_activation".into(), json!("gelu_pytorch_tanh"));
                m.insert("hidden_act".into(), json!("gelu_pytorch_tanh"));
                // transformers validates this field as an integer.
                let qpas =
                    self.query_pre_attn_scalar.map(|q| if q.fract() == 0.0 { json!(q as i64) } else { json!(q) });
                m.insert("query_pre_attn_scalar".into(), json!(qpas));
                m.insert("attn_logit_softcapping".into(), json!(self.attn_logit_softcapping));
                m.insert("final_logit_softcapping".into(), json!(self.final_logit_softcapping));
                m.insert("sliding_window".into(), json!(self.sliding_window));
                let lt: Vec<&str> = self
                    .layer_types
                    .iter()
                    .map(|t| if *t == LayerType::Full { "full_attention" } else { "sliding_attention" })
                    .collect();
                m.insert("layer_types".into(), json!(lt));
            }
        }
        v
    }
}
