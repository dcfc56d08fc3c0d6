//! Model configuration, read from (and written to) Hugging Face `config.json`.
use crate::error::{ModelError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Decoder family. SmolLM2 and Llama-2 are `Llama`; Gemma-3 is its text-only decoder (`gemma3_text`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Llama,
    Gemma2,
    Gemma3,
}

impl Arch {
    pub fn hf_model_type(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Gemma2 => "gemma2",
            Arch::Gemma3 => "gemma3_text",
        }
    }
    pub fn hf_architecture(self) -> &'static str {
        match self {
            Arch::Llama => "LlamaForCausalLM",
            Arch::Gemma2 => "Gemma2ForCausalLM",
            Arch::Gemma3 => "Gemma3ForCausalLM",
        }
    }
    /// Gemma-2 and Gemma-3: `(1 + w)` RMSNorms, embeddings × sqrt(hidden), sandwich norms around the
    /// attention and the MLP.
    pub fn is_gemma(self) -> bool {
        matches!(self, Arch::Gemma2 | Arch::Gemma3)
    }
    /// Gemma-3: RMSNorm over `head_dim` on every query and key head (before RoPE).
    pub fn has_qk_norm(self) -> bool {
        self == Arch::Gemma3
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
    /// RoPE base (Gemma-3: of the global, full-attention layers).
    pub rope_theta: f64,
    /// Gemma-3: RoPE base of the sliding-window layers (HF `rope_parameters.sliding_attention.rope_theta`,
    /// formerly `rope_local_base_freq`). `None`: every layer uses `rope_theta`.
    pub rope_local_base_freq: Option<f64>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub hidden_act: Activation,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    /// Gemma: attention scores are scaled by `query_pre_attn_scalar^-0.5` instead of `head_dim^-0.5`.
    pub query_pre_attn_scalar: Option<f64>,
    /// Gemma-2: `scores = cap * tanh(scores / cap)` before masking (Gemma-3 has none: QK-norm instead).
    pub attn_logit_softcapping: Option<f64>,
    /// Gemma-2 (Gemma-3 if set): `logits = cap * tanh(logits / cap)`.
    pub final_logit_softcapping: Option<f64>,
    pub sliding_window: Option<usize>,
    /// One entry per layer.
    pub layer_types: Vec<LayerType>,
}

/// The largest value a size field of a real model can have; larger ones come from corrupt files and
/// would make loading allocate without bound.
pub fn size_limit(field: &str) -> u64 {
    match field {
        "num_hidden_layers" => 1024,
        "num_attention_heads" | "num_key_value_heads" => 1024,
        "head_dim" => 4096,
        "hidden_size" => 65_536,
        "intermediate_size" => 1 << 20,
        "vocab_size" => 1 << 22,
        "max_position_embeddings" => 1 << 25,
        _ => u64::MAX,
    }
}

fn get<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    v.get(key).filter(|x| !x.is_null())
}

/// Gemma-3's attention pattern (transformers' `Gemma3TextConfig` and llama.cpp): layer `i` is global
/// (full attention) when `(i + 1) % pattern == 0`, sliding-window otherwise — five local layers, then one
/// global, for the default pattern 6.
pub fn gemma3_layer_types(num_layers: usize, pattern: usize) -> Vec<LayerType> {
    (0..num_layers)
        .map(|i| if pattern > 0 && (i + 1) % pattern == 0 { LayerType::Full } else { LayerType::Sliding })
        .collect()
}

impl ModelConfig {
    /// RoPE base of layer `layer` (0-based): Gemma-3's sliding layers use `rope_local_base_freq`.
    pub fn rope_base(&self, layer: usize) -> f64 {
        match (self.layer_types.get(layer), self.rope_local_base_freq) {
            (Some(LayerType::Sliding), Some(local)) => local,
            _ => self.rope_theta,
        }
    }

    /// Read an HF `config.json` (`model_type` `llama`, `gemma2` or `gemma3_text`; the multimodal `gemma3` is
    /// refused with an explanation).
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
            "gemma3_text" => Arch::Gemma3,
            "gemma3" => {
                return Err(err("model_type `gemma3` is the multimodal Gemma-3 (text_config + vision tower); only \
                     the text-only `gemma3_text` (Gemma3ForCausalLM) is supported"
                    .into()))
            }
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
        // Sizes are bounded before anything is allocated from them (the weights are checked against
        // them later, tensor by tensor).
        for k in [
            "num_hidden_layers",
            "hidden_size",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "intermediate_size",
            "vocab_size",
            "max_position_embeddings",
        ] {
            if let Some(x) = get(&v, k).and_then(|x| x.as_u64()) {
                let limit = size_limit(k);
                if x > limit {
                    return Err(err(format!(
                        "field `{k}` is {x}, beyond any real model (at most {limit}); the file is corrupt"
                    )));
                }
            }
        }
        let num_key_value_heads =
            get(&v, "num_key_value_heads").and_then(|x| x.as_u64()).map(|x| x as usize).unwrap_or(num_attention_heads);
        let head_dim = get(&v, "head_dim")
            .and_then(|x| x.as_u64())
            .map(|x| x as usize)
            .unwrap_or(hidden_size / num_attention_heads.max(1));
        // transformers >= 5 may nest rope settings in `rope_parameters`; Gemma-3 keys them by layer type
        // (`{"full_attention": {...}, "sliding_attention": {...}}`).
        let rope = get(&v, "rope_parameters").or_else(|| get(&v, "rope_scaling"));
        let per_type = |t: &str| rope.and_then(|r| r.get(t)).filter(|x| x.is_object());
        let check_rope = |r: &serde_json::Value, what: &str| -> Result<()> {
            match r.get("rope_type").or_else(|| r.get("type")).and_then(|x| x.as_str()) {
                Some(t) if t != "default" => {
                    Err(err(format!("{what}: rope type `{t}` is not supported (only the default RoPE)")))
                }
                _ => Ok(()),
            }
        };
        let (full_rope, sliding_rope) = (per_type("full_attention"), per_type("sliding_attention"));
        if full_rope.is_some() || sliding_rope.is_some() {
            for (r, what) in
                [(full_rope, "rope_parameters.full_attention"), (sliding_rope, "rope_parameters.sliding_attention")]
            {
                if let Some(r) = r {
                    check_rope(r, what)?;
                }
            }
        } else if let Some(r) = rope {
            check_rope(r, "rope_parameters")?;
        }
        let theta_of = |r: Option<&serde_json::Value>| r.and_then(|r| r.get("rope_theta")).and_then(|x| x.as_f64());
        let rope_theta = theta_of(full_rope)
            .or_else(|| f64_opt("rope_theta"))
            .or_else(|| theta_of(rope))
            .unwrap_or(if arch == Arch::Gemma3 { 1_000_000.0 } else { 10000.0 });
        let rope_local_base_freq = match arch {
            Arch::Gemma3 => {
                Some(theta_of(sliding_rope).or_else(|| f64_opt("rope_local_base_freq")).unwrap_or(10_000.0))
            }
            _ => None,
        };
        if arch == Arch::Gemma3 && get(&v, "use_bidirectional_attention").and_then(|x| x.as_bool()) == Some(true) {
            return Err(err("field `use_bidirectional_attention`: bidirectional Gemma-3 is not supported".into()));
        }
        let act_name = get(&v, "hidden_activation")
            .or_else(|| get(&v, "hidden_act"))
            .and_then(|x| x.as_str())
            .unwrap_or(if arch.is_gemma() { "gelu_pytorch_tanh" } else { "silu" });
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
        let sliding_window = get(&v, "sliding_window")
            .and_then(|x| x.as_u64())
            .map(|x| x as usize)
            .or((arch == Arch::Gemma3).then_some(4096));
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
            None => match arch {
                Arch::Gemma2 => (0..num_hidden_layers)
                    .map(|i| if i % 2 == 0 { LayerType::Sliding } else { LayerType::Full })
                    .collect(),
                // transformers' Gemma3TextConfig: `sliding_window_pattern` (default 6) — five local layers,
                // then one global.
                Arch::Gemma3 => {
                    let pattern = get(&v, "sliding_window_pattern").and_then(|x| x.as_u64()).unwrap_or(6) as usize;
                    gemma3_layer_types(num_hidden_layers, pattern)
                }
                Arch::Llama => vec![LayerType::Full; num_hidden_layers],
            },
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
            rope_local_base_freq,
            max_position_embeddings: get(&v, "max_position_embeddings").and_then(|x| x.as_u64()).unwrap_or(4096)
                as usize,
            tie_word_embeddings: get(&v, "tie_word_embeddings").and_then(|x| x.as_bool()).unwrap_or(arch.is_gemma()),
            hidden_act,
            attention_bias: get(&v, "attention_bias").and_then(|x| x.as_bool()).unwrap_or(false),
            mlp_bias: get(&v, "mlp_bias").and_then(|x| x.as_bool()).unwrap_or(false),
            bos_token_id: ids("bos_token_id").first().copied(),
            eos_token_ids: ids("eos_token_id"),
            pad_token_id: ids("pad_token_id").first().copied(),
            // Gemma3TextConfig defaults to 256; Gemma-2 keeps the field as given.
            query_pre_attn_scalar: f64_opt("query_pre_attn_scalar").or((arch == Arch::Gemma3).then_some(256.0)),
            // transformers' Gemma-3 attention never applies `attn_logit_softcapping` (QK-norm instead).
            attn_logit_softcapping: if arch == Arch::Gemma3 { None } else { f64_opt("attn_logit_softcapping") },
            final_logit_softcapping: f64_opt("final_logit_softcapping"),
            sliding_window,
            layer_types,
        };
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    /// Internal consistency checks; the message names the offending field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (k, v) in [
            ("num_hidden_layers", self.num_hidden_layers),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("intermediate_size", self.intermediate_size),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v as u64 > size_limit(k) {
                return Err(format!("`{k}` is {v}, beyond any real model (at most {})", size_limit(k)));
            }
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0 && self.rms_norm_eps < 1.0) {
            return Err(format!("`rms_norm_eps` must be a small positive number, got {}", self.rms_norm_eps));
        }
        for (k, v) in [
            ("query_pre_attn_scalar", self.query_pre_attn_scalar),
            ("attn_logit_softcapping", self.attn_logit_softcapping),
            ("final_logit_softcapping", self.final_logit_softcapping),
        ] {
            if v.is_some_and(|x| !(x.is_finite() && x > 0.0)) {
                return Err(format!("`{k}` must be a positive number, got {}", v.unwrap_or_default()));
            }
        }
        if self.max_position_embeddings == 0 {
            return Err("`max_position_embeddings` must be > 0".into());
        }
        if self.num_attention_heads == 0 || self.num_key_value_heads == 0 {
            return Err("`num_attention_heads` and `num_key_value_heads` must be > 0".into());
        }
        if !self.num_attention_heads.is_multiple_of(self.num_key_value_heads) {
            return Err(format!(
                "`num_attention_heads` ({}) must be a multiple of `num_key_value_heads` ({})",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!("`head_dim` ({}) must be even for RoPE", self.head_dim));
        }
        if self.layer_types.len() != self.num_hidden_layers {
            return Err(format!(
                "`layer_types` has {} entries, `num_hidden_layers` is {}",
                self.layer_types.len(),
                self.num_hidden_layers
            ));
        }
        if self.layer_types.contains(&LayerType::Sliding) && self.sliding_window.is_none_or(|w| w == 0) {
            return Err("sliding-attention layers need `sliding_window` > 0".into());
        }
        for (k, v) in [("rope_theta", Some(self.rope_theta)), ("rope_local_base_freq", self.rope_local_base_freq)] {
            if v.is_some_and(|x| !(x.is_finite() && x > 0.0)) {
                return Err(format!("`{k}` must be a positive number"));
            }
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
            Arch::Gemma2 | Arch::Gemma3 => {
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
        if self.arch == Arch::Gemma3 {
            // transformers 5: RoPE per layer type; the flat keys are what transformers 4.5x read.
            let local = self.rope_local_base_freq.unwrap_or(self.rope_theta);
            m.insert(
                "rope_parameters".into(),
                json!({
                    "full_attention": {"rope_type": "default", "rope_theta": self.rope_theta},
                    "sliding_attention": {"rope_type": "default", "rope_theta": local},
                }),
            );
            m.insert("rope_local_base_freq".into(), json!(local));
            m.insert("use_bidirectional_attention".into(), json!(false));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ModelConfig> {
        ModelConfig::from_hf_json_str(text, Path::new("config.json"))
    }

    /// google/gemma-3-270m's config.json as the Hub has it (transformers 4.55: flat RoPE keys).
    const GEMMA3_270M_HUB: &str = r#"{
      "_sliding_window_pattern": 6, "architectures": ["Gemma3ForCausalLM"], "attention_bias": false,
      "attention_dropout": 0.0, "attn_logit_softcapping": null, "bos_token_id": 2, "eos_token_id": 1,
      "final_logit_softcapping": null, "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh",
      "hidden_size": 640, "initializer_range": 0.02, "intermediate_size": 2048,
      "max_position_embeddings": 32768, "model_type": "gemma3_text", "num_attention_heads": 4,
      "num_hidden_layers": 18, "num_key_value_heads": 1, "pad_token_id": 0, "query_pre_attn_scalar": 256,
      "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000.0, "rope_scaling": null, "rope_theta": 1000000.0,
      "sliding_window": 512, "torch_dtype": "bfloat16", "use_bidirectional_attention": false,
      "use_cache": true, "vocab_size": 262144
    }"#;

    #[test]
    fn gemma3_hub_config_with_flat_rope_keys() {
        let c = parse(GEMMA3_270M_HUB).unwrap();
        assert_eq!(c.arch, Arch::Gemma3);
        assert_eq!((c.rope_theta, c.rope_local_base_freq), (1_000_000.0, Some(10_000.0)));
        assert_eq!((c.sliding_window, c.query_pre_attn_scalar), (Some(512), Some(256.0)));
        assert_eq!((c.attn_logit_softcapping, c.final_logit_softcapping), (None, None));
        assert!(c.tie_word_embeddings);
        assert_eq!(c.hidden_act, Activation::GeluTanh);
        // no `layer_types`: the pattern 6 default (five local, one global)
        let full: Vec<usize> = (0..18).filter(|&i| c.layer_types[i] == LayerType::Full).collect();
        assert_eq!(full, vec![5, 11, 17]);
        assert_eq!((c.rope_base(0), c.rope_base(5)), (10_000.0, 1_000_000.0));
        // what we write, transformers-5 style, reads back identically
        let again = parse(&c.to_hf_json().to_string()).unwrap();
        assert_eq!(again, c);
        assert_eq!(c.to_hf_json()["rope_parameters"]["sliding_attention"]["rope_theta"], 10_000.0);
    }

    #[test]
    fn gemma3_rope_parameters_by_layer_type_and_explicit_pattern() {
        let text = GEMMA3_270M_HUB
            .replace(r#""rope_local_base_freq": 10000.0, "rope_scaling": null, "rope_theta": 1000000.0,"#, r#""rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 500000.0}, "sliding_attention": {"rope_type": "default", "rope_theta": 1000.0}},"#)
            .replace(r#""_sliding_window_pattern": 6,"#, r#""sliding_window_pattern": 3,"#);
        let c = parse(&text).unwrap();
        assert_eq!((c.rope_theta, c.rope_local_base_freq), (500_000.0, Some(1000.0)));
        let full: Vec<usize> = (0..18).filter(|&i| c.layer_types[i] == LayerType::Full).collect();
        assert_eq!(full, vec![2, 5, 8, 11, 14, 17]);
        // scaled RoPE (Gemma-3 4B+ global layers) is refused, naming the key
        let scaled = text.replace(
            r#""full_attention": {"rope_type": "default", "rope_theta": 500000.0}"#,
            r#""full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0}"#,
        );
        let e = parse(&scaled).unwrap_err().to_string();
        assert!(e.contains("rope_parameters.full_attention") && e.contains("linear"), "{e}");
    }

    #[test]
    fn gemma3_defaults_and_refusals() {
        // minimal gemma3_text config: transformers' defaults fill the rest
        let c = parse(
            r#"{"model_type": "gemma3_text", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
                "num_hidden_layers": 7, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}"#,
        )
        .unwrap();
        assert_eq!((c.rope_theta, c.rope_local_base_freq), (1_000_000.0, Some(10_000.0)));
        assert_eq!((c.sliding_window, c.query_pre_attn_scalar), (Some(4096), Some(256.0)));
        assert_eq!(c.layer_types, gemma3_layer_types(7, 6));
        assert_eq!(c.layer_types[5], LayerType::Full);
        let e = parse(r#"{"model_type": "gemma3", "text_config": {}}"#).unwrap_err().to_string();
        assert!(e.contains("gemma3_text"), "{e}");
        let e = parse(
            &GEMMA3_270M_HUB
                .replace(r#""use_bidirectional_attention": false"#, r#""use_bidirectional_attention": true"#),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("use_bidirectional_attention"), "{e}");
        // Gemma-2 and Llama keep one RoPE base
        let g2 = parse(
            r#"{"model_type": "gemma2", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
                "num_hidden_layers": 2, "num_attention_heads": 2, "sliding_window": 8}"#,
        )
        .unwrap();
        assert_eq!((g2.rope_local_base_freq, g2.rope_base(0)), (None, 10_000.0));
    }
}
