//! The Hugging Face view of a `llama` / `gemma2` / `gemma3` GGUF: HF tensor names, HF layout, HF config.
//!
//! llama.cpp's converter changes three things that are undone here, as transformers does when it
//! loads a GGUF (`transformers/modeling_gguf_pytorch_utils.py`):
//! * names: `blk.N.attn_q.weight` → `model.layers.N.self_attn.q_proj.weight` etc.;
//! * llama: the rows of `attn_q` / `attn_k` are permuted per head (`[h, d/2, 2] ↔ [h, 2, d/2]`,
//!   interleaved RoPE pairs); transformers' `LlamaTensorProcessor._reverse_permute_weights`
//!   reshapes to `(n_head, rows / n_head / 2, 2, cols)` and swaps axes 1 and 2 (with the KV head
//!   count for `attn_k`);
//! * gemma2 / gemma3: RMSNorm weights are stored as `w + 1` (llama.cpp's converter adds 1 to every
//!   `*norm.weight`, Gemma-3's per-head `attn_q_norm` / `attn_k_norm` included); transformers'
//!   `Gemma2TensorProcessor` (also used for gemma3) subtracts 1 (in f32) from every tensor whose name
//!   contains `norm.weight`. Checked against transformers' state dict for the real Gemma-3-270M file
//!   (tests/gguf.rs, `gemma3_tensors_match_transformers`).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{GgufError, GgufFile};
use crate::config::{Activation, Arch, LayerType, ModelConfig};
use crate::error::ModelError;
use crate::tensor_source::{HostTensor, TensorSource};

/// What has to be done to a dequantised GGUF tensor to get the HF tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fix {
    None,
    /// Undo llama.cpp's per-head row permutation with this many heads.
    UnpermuteRows(usize),
    /// Gemma RMSNorm: stored `w + 1`, HF wants `w`.
    SubtractOne,
}

/// HF name of GGUF tensor `name` for architecture `arch`, `None` for tensors with no HF
/// counterpart (e.g. `rope_freqs.weight`).
pub fn gguf_to_hf_name(arch: Arch, name: &str) -> Option<String> {
    match name {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) || (layer.len() > 1 && layer.starts_with('0')) {
        return None;
    }
    let (part, suffix) = rest.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let hf = match (arch, part) {
        (_, "attn_q") => "self_attn.q_proj",
        (_, "attn_k") => "self_attn.k_proj",
        (_, "attn_v") => "self_attn.v_proj",
        (_, "attn_output") => "self_attn.o_proj",
        (_, "ffn_gate") => "mlp.gate_proj",
        (_, "ffn_up") => "mlp.up_proj",
        (_, "ffn_down") => "mlp.down_proj",
        (_, "attn_norm") => "input_layernorm",
        (Arch::Llama, "ffn_norm") => "post_attention_layernorm",
        (Arch::Gemma2 | Arch::Gemma3, "post_attention_norm") => "post_attention_layernorm",
        (Arch::Gemma2 | Arch::Gemma3, "ffn_norm") => "pre_feedforward_layernorm",
        (Arch::Gemma2 | Arch::Gemma3, "post_ffw_norm") => "post_feedforward_layernorm",
        (Arch::Gemma3, "attn_q_norm") => "self_attn.q_norm",
        (Arch::Gemma3, "attn_k_norm") => "self_attn.k_norm",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{suffix}"))
}

/// One HF tensor: where it comes from and how to fix it up.
#[derive(Debug, Clone)]
struct Entry {
    gguf_name: String,
    fix: Fix,
}

/// A GGUF file seen as an HF checkpoint of a `llama`, `gemma2` or `gemma3` model: implements
/// [`TensorSource`] (HF names, row-major HF layout, f32) and provides the [`ModelConfig`].
#[derive(Debug)]
pub struct GgufModel {
    file: GgufFile,
    config: ModelConfig,
    entries: BTreeMap<String, Entry>,
    unmapped: Vec<String>,
}

impl GgufModel {
    /// Open `path` and build the HF view; fails on an unknown `general.architecture` or
    /// unusable hyper-parameters.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        Self::new(GgufFile::open(path)?)
    }

    /// Build the HF view of an already parsed file.
    pub fn new(file: GgufFile) -> Result<Self, GgufError> {
        let config = config_from_gguf(&file)?;
        let mut entries = BTreeMap::new();
        let mut unmapped = Vec::new();
        for t in file.tensors() {
            let Some(hf) = gguf_to_hf_name(config.arch, &t.name) else {
                unmapped.push(t.name.clone());
                continue;
            };
            let fix = match config.arch {
                Arch::Llama if t.name.contains(".attn_q.") => Fix::UnpermuteRows(config.num_attention_heads),
                Arch::Llama if t.name.contains(".attn_k.") => Fix::UnpermuteRows(config.num_key_value_heads),
                Arch::Gemma2 | Arch::Gemma3 if t.name.contains("norm.weight") => Fix::SubtractOne,
                _ => Fix::None,
            };
            entries.insert(hf, Entry { gguf_name: t.name.clone(), fix });
        }
        Ok(GgufModel { file, config, entries, unmapped })
    }

    /// The model configuration read from the metadata.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The underlying file (metadata, raw tensors, tokenizer).
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// The tokenizer stored in the file; see [`GgufFile::tokenizer`].
    pub fn tokenizer(&self) -> Result<tokenizers::Tokenizer, GgufError> {
        self.file.tokenizer()
    }

    /// GGUF name behind HF tensor `hf_name`.
    pub fn gguf_name(&self, hf_name: &str) -> Option<&str> {
        self.entries.get(hf_name).map(|e| e.gguf_name.as_str())
    }

    /// GGUF tensors with no HF counterpart (ignored by the HF view), e.g. `rope_freqs.weight`.
    pub fn unmapped_tensors(&self) -> &[String] {
        &self.unmapped
    }

    /// Load HF tensor `hf_name` as f32 in HF layout.
    pub fn load_hf(&self, hf_name: &str) -> Result<HostTensor, GgufError> {
        let entry = self
            .entries
            .get(hf_name)
            .ok_or_else(|| GgufError::MissingTensor { path: self.file.path().into(), tensor: hf_name.into() })?;
        let mut t = self.file.tensor_f32(&entry.gguf_name)?;
        match entry.fix {
            Fix::None => {}
            Fix::SubtractOne => t.data.iter_mut().for_each(|x| *x -= 1.0),
            Fix::UnpermuteRows(n_head) => {
                let rows = t.shape.first().copied().unwrap_or(0);
                if n_head == 0 || rows % (2 * n_head) != 0 {
                    return Err(GgufError::BadTensor {
                        path: self.file.path().into(),
                        tensor: entry.gguf_name.clone(),
                        msg: format!("{rows} rows cannot be split into {n_head} heads of RoPE pairs"),
                    });
                }
                t.data = unpermute_rows(&t.data, rows, n_head);
            }
        }
        Ok(t)
    }
}

/// Undo llama.cpp's `permute`: GGUF row `h*2d + 2i + s` becomes HF row `h*2d + s*d + i`
/// (`d = rows / n_head / 2`), i.e. reshape `(n_head, d, 2, cols)`, swap axes 1 and 2.
fn unpermute_rows(data: &[f32], rows: usize, n_head: usize) -> Vec<f32> {
    let cols = data.len() / rows.max(1);
    let d = rows / n_head / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for s in 0..2 {
            for i in 0..d {
                let dst = h * 2 * d + s * d + i;
                let src = h * 2 * d + 2 * i + s;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) fn unpermute_rows_for_tests(data: &[f32], rows: usize, n_head: usize) -> Vec<f32> {
    unpermute_rows(data, rows, n_head)
}

impl TensorSource for GgufModel {
    fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.entries.get(name).and_then(|e| self.file.tensor_info(&e.gguf_name)).map(|t| t.shape())
    }

    /// A name the file does not hold gives [`ModelError::MissingTensor`]; other failures
    /// [`ModelError::Gguf`].
    fn load(&self, name: &str) -> crate::Result<HostTensor> {
        self.load_hf(name).map_err(|e| match e {
            GgufError::MissingTensor { path, tensor } => ModelError::MissingTensor { path, tensor },
            other => ModelError::Gguf(other),
        })
    }

    fn origin(&self) -> PathBuf {
        self.file.path().to_path_buf()
    }
}

/// Open a GGUF model and its tokenizer in one go.
pub fn load_gguf(path: impl AsRef<Path>) -> Result<(GgufModel, tokenizers::Tokenizer), GgufError> {
    let model = GgufModel::open(path)?;
    let tokenizer = model.tokenizer()?;
    Ok((model, tokenizer))
}

/// [`ModelConfig`] from `{arch}.*` metadata, mirroring transformers' GGUF config mapping (plus the
/// Gemma-2 keys llama.cpp writes that transformers ignores).
fn config_from_gguf(file: &GgufFile) -> Result<ModelConfig, GgufError> {
    let path = file.path();
    let arch_name = file.architecture()?;
    let arch = match arch_name {
        "llama" => Arch::Llama,
        "gemma2" => Arch::Gemma2,
        "gemma3" => Arch::Gemma3,
        other => return Err(GgufError::UnknownArchitecture { path: path.into(), arch: other.into() }),
    };
    let k = |suffix: &str| format!("{arch_name}.{suffix}");
    let usize_opt = |key: &str| file.opt(key, GgufFile::get_usize);
    let f64_opt = |key: &str| file.opt(key, GgufFile::get_f64);
    let unsupported = |msg: String| GgufError::Unsupported { path: path.into(), msg };

    let num_hidden_layers = file.get_usize(&k("block_count"))?;
    // Declared sizes are checked against the tensor table before anything is sized by them.
    let blocks_in_file = file
        .tensors()
        .iter()
        .filter_map(|t| t.name.strip_prefix("blk.")?.split('.').next()?.parse::<usize>().ok())
        .map(|n| n + 1)
        .max()
        .unwrap_or(0);
    if num_hidden_layers != blocks_in_file {
        return Err(GgufError::BadValue {
            path: path.into(),
            key: k("block_count"),
            msg: format!(
                "declares {num_hidden_layers} blocks, the tensor table has {blocks_in_file} (blk.0 … blk.{})",
                blocks_in_file.saturating_sub(1)
            ),
        });
    }
    let hidden_size = file.get_usize(&k("embedding_length"))?;
    let intermediate_size = file.get_usize(&k("feed_forward_length"))?;
    let num_attention_heads = file.get_usize(&k("attention.head_count"))?;
    let num_key_value_heads = usize_opt(&k("attention.head_count_kv"))?.unwrap_or(num_attention_heads);
    let head_dim = match usize_opt(&k("attention.key_length"))? {
        Some(d) => d,
        None => match usize_opt(&k("rope.dimension_count"))? {
            Some(d) if arch == Arch::Llama => d,
            _ => hidden_size / num_attention_heads.max(1),
        },
    };
    if let Some(t) = file.opt(&k("rope.scaling.type"), GgufFile::get_str)? {
        if t != "none" {
            return Err(unsupported(format!(
                "RoPE scaling `{t}` (key `{}`) is not supported, only plain RoPE",
                k("rope.scaling.type")
            )));
        }
    }
    if file.tensor_info("rope_freqs.weight").is_some() {
        return Err(unsupported(
            "tensor `rope_freqs.weight` (Llama-3 style RoPE frequency scaling) is not supported".into(),
        ));
    }
    let tokens = file.opt("tokenizer.ggml.tokens", GgufFile::get_str_array)?;
    let vocab_size = match usize_opt(&k("vocab_size"))? {
        Some(v) => v,
        None => match (tokens, file.tensor_info("token_embd.weight")) {
            (Some(t), _) => t.len(),
            (None, Some(e)) if e.dims.len() == 2 => e.dims[1] as usize,
            _ => {
                return Err(GgufError::MissingKey { path: path.into(), key: "tokenizer.ggml.tokens".into() });
            }
        },
    };
    let token_id = |key: &str| file.opt(key, GgufFile::get_u32);
    let has_bias = |part: &str| file.tensor_info(&format!("blk.0.{part}.bias")).is_some();

    let (hidden_act, rope_default, eps_default) = match arch {
        Arch::Llama => (Activation::Silu, 10000.0, 1e-6),
        Arch::Gemma2 => (Activation::GeluTanh, 10000.0, 1e-6),
        // Gemma3TextConfig's default global base
        Arch::Gemma3 => (Activation::GeluTanh, 1_000_000.0, 1e-6),
    };
    let mut cfg = ModelConfig {
        arch,
        vocab_size,
        hidden_size,
        intermediate_size,
        num_hidden_layers,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        rms_norm_eps: f64_opt(&k("attention.layer_norm_rms_epsilon"))?.unwrap_or(eps_default),
        rope_theta: f64_opt(&k("rope.freq_base"))?.unwrap_or(rope_default),
        rope_local_base_freq: None,
        max_position_embeddings: usize_opt(&k("context_length"))?.unwrap_or(4096),
        tie_word_embeddings: file.tensor_info("output.weight").is_none(),
        hidden_act,
        attention_bias: has_bias("attn_q") || has_bias("attn_k") || has_bias("attn_v"),
        mlp_bias: has_bias("ffn_up") || has_bias("ffn_gate") || has_bias("ffn_down"),
        bos_token_id: token_id("tokenizer.ggml.bos_token_id")?,
        eos_token_ids: token_id("tokenizer.ggml.eos_token_id")?.into_iter().collect(),
        pad_token_id: token_id("tokenizer.ggml.padding_token_id")?,
        query_pre_attn_scalar: None,
        attn_logit_softcapping: None,
        final_logit_softcapping: None,
        sliding_window: None,
        layer_types: vec![LayerType::Full; num_hidden_layers],
    };
    if arch == Arch::Gemma2 {
        // transformers leaves these at Gemma2Config's defaults; llama.cpp writes the softcaps and
        // the window, and scales queries by 1/sqrt(head_dim) except for the 27B model (46 layers),
        // which uses hidden_size / num_heads, as HF's `query_pre_attn_scalar` does.
        cfg.attn_logit_softcapping = Some(f64_opt(&k("attn_logit_softcapping"))?.unwrap_or(50.0));
        cfg.final_logit_softcapping = Some(f64_opt(&k("final_logit_softcapping"))?.unwrap_or(30.0));
        cfg.sliding_window = Some(usize_opt(&k("attention.sliding_window"))?.unwrap_or(4096));
        cfg.query_pre_attn_scalar = Some(if num_hidden_layers == 46 {
            (hidden_size / num_attention_heads.max(1)) as f64
        } else {
            head_dim as f64
        });
        cfg.layer_types =
            (0..num_hidden_layers).map(|i| if i % 2 == 0 { LayerType::Sliding } else { LayerType::Full }).collect();
    }
    if arch == Arch::Gemma3 {
        // The file carries the window and the global RoPE base (`rope.freq_base`, transformers'
        // `rope_theta` = `rope_parameters.full_attention`). What it does not carry is fixed by the
        // architecture, identically in transformers' GGUF loader (Gemma3TextConfig defaults) and in
        // llama.cpp (`LLM_ARCH_GEMMA3`): sliding-window pattern 6 (five local layers, then a global one),
        // local RoPE base 10,000, no softcaps. The query scale: llama.cpp uses 1/sqrt(head_dim) except for
        // the 27B model (62 layers), which uses hidden_size / num_heads, as HF's `query_pre_attn_scalar`
        // does (256 for 270M/1B/4B/12B, 168 for 27B); transformers' GGUF loader leaves the default 256,
        // which equals head_dim for every size but 27B.
        cfg.sliding_window = Some(usize_opt(&k("attention.sliding_window"))?.unwrap_or(4096));
        cfg.rope_local_base_freq = Some(10_000.0);
        cfg.query_pre_attn_scalar = Some(if num_hidden_layers == 62 {
            (hidden_size / num_attention_heads.max(1)) as f64
        } else {
            head_dim as f64
        });
        cfg.layer_types = crate::config::gemma3_layer_types(num_hidden_layers, 6);
    }
    cfg.validate().map_err(|msg| GgufError::BadValue { path: path.into(), key: format!("{arch_name}.*"), msg })?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            gguf_to_hf_name(Arch::Llama, "blk.12.attn_q.weight").unwrap(),
            "model.layers.12.self_attn.q_proj.weight"
        );
        assert_eq!(gguf_to_hf_name(Arch::Llama, "blk.0.attn_k.bias").unwrap(), "model.layers.0.self_attn.k_proj.bias");
        assert_eq!(
            gguf_to_hf_name(Arch::Llama, "blk.3.ffn_norm.weight").unwrap(),
            "model.layers.3.post_attention_layernorm.weight"
        );
        assert_eq!(
            gguf_to_hf_name(Arch::Gemma2, "blk.3.ffn_norm.weight").unwrap(),
            "model.layers.3.pre_feedforward_layernorm.weight"
        );
        assert_eq!(
            gguf_to_hf_name(Arch::Gemma2, "blk.3.post_attention_norm.weight").unwrap(),
            "model.layers.3.post_attention_layernorm.weight"
        );
        assert_eq!(
            gguf_to_hf_name(Arch::Gemma2, "blk.1.post_ffw_norm.weight").unwrap(),
            "model.layers.1.post_feedforward_layernorm.weight"
        );
        assert_eq!(gguf_to_hf_name(Arch::Llama, "blk.1.post_ffw_norm.weight"), None);
        assert_eq!(
            gguf_to_hf_name(Arch::Gemma3, "blk.4.attn_q_norm.weight").unwrap(),
            "model.layers.4.self_attn.q_norm.weight"
        );
        assert_eq!(
            gguf_to_hf_name(Arch::Gemma3, "blk.4.attn_k_norm.weight").unwrap(),
            "model.layers.4.self_attn.k_norm.weight"
        );
        assert_eq!(
            gguf_to_hf_name(Arch::Gemma3, "blk.2.ffn_norm.weight").unwrap(),
            "model.layers.2.pre_feedforward_layernorm.weight"
        );
        assert_eq!(gguf_to_hf_name(Arch::Gemma2, "blk.4.attn_q_norm.weight"), None);
        assert_eq!(gguf_to_hf_name(Arch::Llama, "output.weight").unwrap(), "lm_head.weight");
        assert_eq!(gguf_to_hf_name(Arch::Llama, "rope_freqs.weight"), None);
        assert_eq!(gguf_to_hf_name(Arch::Llama, "blk.x.attn_q.weight"), None);
        assert_eq!(gguf_to_hf_name(Arch::Llama, "blk.01.attn_q.weight"), None);
        assert_eq!(gguf_to_hf_name(Arch::Llama, "blk.1.attn_q.scale"), None);
    }

    #[test]
    fn unpermute_matches_reshape_swapaxes() {
        // 2 heads, d = 3 → 12 rows of 2 columns; value = gguf row index
        let (rows, cols, n_head) = (12, 2, 2);
        let data: Vec<f32> = (0..rows * cols).map(|i| (i / cols) as f32).collect();
        let out = unpermute_rows(&data, rows, n_head);
        // numpy: np.arange(12).reshape(2, 3, 2).swapaxes(1, 2).reshape(12)
        let want = [0, 2, 4, 1, 3, 5, 6, 8, 10, 7, 9, 11];
        for (r, &w) in want.iter().enumerate() {
            assert_eq!(out[r * cols], w as f32);
            assert_eq!(out[r * cols + 1], w as f32);
        }
    }
}
