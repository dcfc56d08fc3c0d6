//! Building a [`CausalLm`] from HF-named weights (any [`TensorSource`]) and exporting it back:
//! `load_pretrained` (HF directory or `.gguf` file), `save_pretrained` (HF directory transformers loads),
//! and seeded random initialisation for tiny test models.

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::model::{Attention, CausalLm, DecoderBlock, Mlp, Proj, RmsNorm};
use crate::safetensors_io::{atomic_write, write_safetensors, SafetensorsCheckpoint};
use crate::tensor_source::{HostTensor, TensorSource};
use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Kind of a weight, which fixes how it is laid out in Burn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// HF `[out, in]`, stored transposed `[in, out]`.
    Linear,
    /// Stored as in HF.
    Plain,
}

/// Every tensor a model with this config has: HF name, HF shape, kind.
fn expected_tensors(cfg: &ModelConfig) -> Vec<(String, Vec<usize>, Kind)> {
    let (h, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let (q, kv) = (cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim);
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, h], Kind::Plain)];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        for (name, o, inp) in [("q_proj", q, h), ("k_proj", kv, h), ("v_proj", kv, h), ("o_proj", h, q)] {
            out.push((format!("{p}.self_attn.{name}.weight"), vec![o, inp], Kind::Linear));
            if cfg.attention_bias {
                out.push((format!("{p}.self_attn.{name}.bias"), vec![o], Kind::Plain));
            }
        }
        if cfg.arch.has_qk_norm() {
            out.push((format!("{p}.self_attn.q_norm.weight"), vec![cfg.head_dim], Kind::Plain));
            out.push((format!("{p}.self_attn.k_norm.weight"), vec![cfg.head_dim], Kind::Plain));
        }
        for (name, o, inp) in [("gate_proj", i, h), ("up_proj", i, h), ("down_proj", h, i)] {
            out.push((format!("{p}.mlp.{name}.weight"), vec![o, inp], Kind::Linear));
            if cfg.mlp_bias {
                out.push((format!("{p}.mlp.{name}.bias"), vec![o], Kind::Plain));
            }
        }
        out.push((format!("{p}.input_layernorm.weight"), vec![h], Kind::Plain));
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![h], Kind::Plain));
        if cfg.arch.is_gemma() {
            out.push((format!("{p}.pre_feedforward_layernorm.weight"), vec![h], Kind::Plain));
            out.push((format!("{p}.post_feedforward_layernorm.weight"), vec![h], Kind::Plain));
        }
    }
    out.push(("model.norm.weight".to_string(), vec![h], Kind::Plain));
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![v, h], Kind::Linear));
    }
    out
}

/// Names a checkpoint may hold that we deliberately ignore.
fn ignorable(name: &str, cfg: &ModelConfig) -> bool {
    name.ends_with("rotary_emb.inv_freq") || (cfg.tie_word_embeddings && name == "lm_head.weight")
}

fn transpose(t: &HostTensor) -> HostTensor {
    let (r, c) = (t.shape[0], t.shape[1]);
    let mut out = vec![0f32; r * c];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = t.data[i * c + j];
        }
    }
    HostTensor::new(vec![c, r], out)
}

/// An in-memory [`TensorSource`] (HF names and layout).
#[derive(Debug, Clone, Default)]
pub struct HostTensors {
    pub tensors: BTreeMap<String, HostTensor>,
    pub origin: PathBuf,
}

impl TensorSource for HostTensors {
    fn names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|t| t.shape.clone())
    }
    fn load(&self, name: &str) -> Result<HostTensor> {
        self.tensors
            .get(name)
            .cloned()
            .ok_or_else(|| ModelError::MissingTensor { path: self.origin.clone(), tensor: name.into() })
    }
    fn origin(&self) -> PathBuf {
        self.origin.clone()
    }
}

fn to_tensor<B: Backend, const D: usize>(t: HostTensor, device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(t.data, t.shape), device)
}

fn to_host<B: Backend, const D: usize>(t: Tensor<B, D>) -> HostTensor {
    let shape = t.dims().to_vec();
    let data = t.into_data().convert::<f32>().to_vec::<f32>().expect("f32 data");
    HostTensor::new(shape, data)
}

impl<B: Backend> CausalLm<B> {
    /// Build the model from HF-named weights. Every expected tensor must be present with the shape the
    /// config implies, and nothing unexpected may be left over.
    pub fn from_source(config: ModelConfig, source: &dyn TensorSource, device: &B::Device) -> Result<Self> {
        config.validate().map_err(|msg| ModelError::Config { path: source.origin(), msg })?;
        let expected = expected_tensors(&config);
        let want: BTreeSet<&str> = expected.iter().map(|(n, _, _)| n.as_str()).collect();
        if let Some(extra) = source.names().into_iter().find(|n| !want.contains(n.as_str()) && !ignorable(n, &config)) {
            return Err(ModelError::UnexpectedTensor {
                path: source.origin(),
                tensor: extra,
                arch: config.arch.hf_model_type().into(),
            });
        }
        // Every shape is checked (against the config's sizes) before any tensor is read.
        for (name, shape, _) in &expected {
            let got = source
                .shape(name)
                .ok_or_else(|| ModelError::MissingTensor { path: source.origin(), tensor: name.clone() })?;
            if &got != shape {
                return Err(ModelError::ShapeMismatch {
                    path: source.origin(),
                    tensor: name.clone(),
                    got,
                    want: shape.clone(),
                });
            }
        }
        let mut loaded: HashMap<String, HostTensor> = HashMap::new();
        for (name, _, kind) in &expected {
            let t = source.load(name)?;
            loaded.insert(name.clone(), if *kind == Kind::Linear { transpose(&t) } else { t });
        }
        let mut take = |name: &str| loaded.remove(name).expect("checked above");
        let unit_offset = config.arch.is_gemma();
        let eps = config.rms_norm_eps;
        let embed_tokens = Param::from_tensor(to_tensor::<B, 2>(take("model.embed_tokens.weight"), device));
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let mut proj = |base: String, bias: bool| {
                Proj::new(
                    Param::from_tensor(to_tensor::<B, 2>(take(&format!("{base}.weight")), device)),
                    bias.then(|| Param::from_tensor(to_tensor::<B, 1>(take(&format!("{base}.bias")), device))),
                )
            };
            let (q_proj, k_proj, v_proj, o_proj) = (
                proj(format!("{p}.self_attn.q_proj"), config.attention_bias),
                proj(format!("{p}.self_attn.k_proj"), config.attention_bias),
                proj(format!("{p}.self_attn.v_proj"), config.attention_bias),
                proj(format!("{p}.self_attn.o_proj"), config.attention_bias),
            );
            let mlp = Mlp::new(
                proj(format!("{p}.mlp.gate_proj"), config.mlp_bias),
                proj(format!("{p}.mlp.up_proj"), config.mlp_bias),
                proj(format!("{p}.mlp.down_proj"), config.mlp_bias),
                config.hidden_act,
            );
            let mut norm = |name: String| RmsNorm {
                weight: Param::from_tensor(to_tensor::<B, 1>(take(&name), device)),
                eps,
                unit_offset,
            };
            let gemma = config.arch.is_gemma();
            let qk = config.arch.has_qk_norm();
            let self_attn = Attention::new(
                q_proj,
                k_proj,
                v_proj,
                o_proj,
                qk.then(|| norm(format!("{p}.self_attn.q_norm.weight"))),
                qk.then(|| norm(format!("{p}.self_attn.k_norm.weight"))),
                &config,
            );
            layers.push(DecoderBlock {
                input_layernorm: norm(format!("{p}.input_layernorm.weight")),
                self_attn,
                post_attention_layernorm: norm(format!("{p}.post_attention_layernorm.weight")),
                pre_feedforward_layernorm: gemma.then(|| norm(format!("{p}.pre_feedforward_layernorm.weight"))),
                post_feedforward_layernorm: gemma.then(|| norm(format!("{p}.post_feedforward_layernorm.weight"))),
                mlp,
                layer_type: config.layer_types[l],
            });
        }
        let norm = RmsNorm {
            weight: Param::from_tensor(to_tensor::<B, 1>(take("model.norm.weight"), device)),
            eps,
            unit_offset,
        };
        let lm_head = (!config.tie_word_embeddings)
            .then(|| Param::from_tensor(to_tensor::<B, 2>(take("lm_head.weight"), device)));
        Ok(CausalLm::new(embed_tokens, layers, norm, lm_head, config))
    }

    /// Seeded random weights (normal, std 0.02 for matrices, HF's norm init) — for tests and examples.
    pub fn random(config: ModelConfig, seed: u64, device: &B::Device) -> Result<Self> {
        let mut rng = SplitMix(seed);
        let mut host = HostTensors { tensors: BTreeMap::new(), origin: PathBuf::from("<random>") };
        for (name, shape, _) in expected_tensors(&config) {
            let n: usize = shape.iter().product();
            let data = if name.contains("norm") {
                vec![if config.arch.is_gemma() { 0.0 } else { 1.0 }; n]
            } else if name.ends_with(".bias") {
                vec![0.0; n]
            } else {
                (0..n).map(|_| 0.02 * rng.normal()).collect()
            };
            host.tensors.insert(name, HostTensor::new(shape, data));
        }
        Self::from_source(config, &host, device)
    }

    /// All weights with HF names and layout, as f32 host tensors.
    pub fn to_hf_tensors(&self) -> BTreeMap<String, HostTensor> {
        let mut out = BTreeMap::new();
        out.insert("model.embed_tokens.weight".to_string(), to_host(self.embed_tokens.val()));
        for (l, blk) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{l}");
            let mut proj = |base: String, pr: &Proj<B>| {
                out.insert(format!("{base}.weight"), transpose(&to_host(pr.weight.val())));
                if let Some(b) = &pr.bias {
                    out.insert(format!("{base}.bias"), to_host(b.val()));
                }
            };
            proj(format!("{p}.self_attn.q_proj"), &blk.self_attn.q_proj);
            proj(format!("{p}.self_attn.k_proj"), &blk.self_attn.k_proj);
            proj(format!("{p}.self_attn.v_proj"), &blk.self_attn.v_proj);
            proj(format!("{p}.self_attn.o_proj"), &blk.self_attn.o_proj);
            proj(format!("{p}.mlp.gate_proj"), &blk.mlp.gate_proj);
            proj(format!("{p}.mlp.up_proj"), &blk.mlp.up_proj);
            proj(format!("{p}.mlp.down_proj"), &blk.mlp.down_proj);
            if let Some(n) = &blk.self_attn.q_norm {
                out.insert(format!("{p}.self_attn.q_norm.weight"), to_host(n.weight.val()));
            }
            if let Some(n) = &blk.self_attn.k_norm {
                out.insert(format!("{p}.self_attn.k_norm.weight"), to_host(n.weight.val()));
            }
            out.insert(format!("{p}.input_layernorm.weight"), to_host(blk.input_layernorm.weight.val()));
            out.insert(
                format!("{p}.post_attention_layernorm.weight"),
                to_host(blk.post_attention_layernorm.weight.val()),
            );
            if let Some(n) = &blk.pre_feedforward_layernorm {
                out.insert(format!("{p}.pre_feedforward_layernorm.weight"), to_host(n.weight.val()));
            }
            if let Some(n) = &blk.post_feedforward_layernorm {
                out.insert(format!("{p}.post_feedforward_layernorm.weight"), to_host(n.weight.val()));
            }
        }
        out.insert("model.norm.weight".to_string(), to_host(self.norm.weight.val()));
        if let Some(w) = &self.lm_head {
            out.insert("lm_head.weight".to_string(), transpose(&to_host(w.val())));
        }
        out
    }

    /// Write an HF checkpoint directory: `config.json`, `model.safetensors` (f32, HF names) and, if
    /// given, `tokenizer.json`. Each file is written atomically.
    pub fn save_pretrained(&self, dir: &Path, tokenizer: Option<&tokenizers::Tokenizer>) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| ModelError::Io { path: dir.into(), source })?;
        let cfg = serde_json::to_string_pretty(&self.config.to_hf_json()).expect("json");
        atomic_write(&dir.join("config.json"), cfg.as_bytes())?;
        write_safetensors(&dir.join("model.safetensors"), &self.to_hf_tensors())?;
        if let Some(tok) = tokenizer {
            let path = dir.join("tokenizer.json");
            let text =
                tok.to_string(true).map_err(|e| ModelError::Tokenizer { path: path.clone(), msg: e.to_string() })?;
            atomic_write(&path, text.as_bytes())?;
        }
        Ok(())
    }
}

/// A model loaded from disk plus its tokenizer, if the checkpoint carries one.
pub struct Pretrained<B: Backend> {
    pub model: CausalLm<B>,
    pub tokenizer: Option<tokenizers::Tokenizer>,
    /// Special tokens, chat template and max length of the tokenizer (empty fields when unknown).
    pub meta: crate::TokenizerMeta,
}

/// Load an HF checkpoint directory (`config.json` + safetensors [+ `tokenizer.json`]) or a `.gguf` file.
pub fn load_pretrained<B: Backend>(path: &Path, device: &B::Device) -> Result<Pretrained<B>> {
    if path.extension().is_some_and(|e| e == "gguf") {
        return load_gguf(path, device);
    }
    let config = ModelConfig::from_hf_json_file(&path.join("config.json"))?;
    let weights = SafetensorsCheckpoint::open(path)?;
    let model = CausalLm::from_source(config, &weights, device)?;
    let tok_path = path.join("tokenizer.json");
    let tokenizer = if tok_path.is_file() {
        Some(
            tokenizers::Tokenizer::from_file(&tok_path)
                .map_err(|e| ModelError::Tokenizer { path: tok_path.clone(), msg: e.to_string() })?,
        )
    } else {
        None
    };
    let meta = crate::TokenizerMeta::from_hf_dir(path)?;
    Ok(Pretrained { model, tokenizer, meta })
}

/// Load a `.gguf` file: weights dequantised to f32, config and tokenizer from its metadata.
pub fn load_gguf<B: Backend>(path: &Path, device: &B::Device) -> Result<Pretrained<B>> {
    let (source, tokenizer) = crate::gguf::load_gguf(path)?;
    let model = CausalLm::from_source(source.config().clone(), &source, device)?;
    let meta = crate::TokenizerMeta::from_gguf(source.file());
    Ok(Pretrained { model, tokenizer: Some(tokenizer), meta })
}

/// The model config of a checkpoint directory or `.gguf` file, read from its header only (no weights),
/// e.g. to validate layer indices before loading.
pub fn peek_config(path: &Path) -> Result<ModelConfig> {
    if path.extension().is_some_and(|e| e == "gguf") {
        Ok(crate::gguf::GgufModel::open(path)?.config().clone())
    } else {
        ModelConfig::from_hf_json_file(&path.join("config.json"))
    }
}

/// Small deterministic RNG (SplitMix64 + Box–Muller) for reproducible random weights, LoRA initialisation
/// and sampling (crate-internal; tests and benches use `dft_test_support::rng::SplitMix`).
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f32 {
        let (u1, u2) = (self.uniform(), self.uniform());
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}
