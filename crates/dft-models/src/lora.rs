//! LoRA adapters (Hu et al., 2021) on the decoder's linear layers, in Hugging Face PEFT's format.
//!
//! A target projection `y = x·W (+ b)` becomes `y = x·W (+ b) + s · (dropout(x)·A)·B` with `A: [in, r]`,
//! `B: [r, out]` and `s = alpha / r` (rsLoRA: `alpha / √r`) — PEFT's `LoraLayer` with `bias = "none"`,
//! no DoRA. The base weights are frozen (no gradient, hence no optimiser state); only `A`, `B` and the
//! optional `modules_to_save` (`lm_head`, `embed_tokens`: trained in full) take gradient.
//!
//! On disk an adapter is what `peft.PeftModel.save_pretrained` writes — `adapter_config.json` and
//! `adapter_model.safetensors` with PEFT's names and layout (`…q_proj.lora_A.weight: [r, in]`,
//! `…lora_B.weight: [out, r]`, modules to save as `base_model.model.lm_head.weight`) — so
//! `PeftModel.from_pretrained(base, dir)` loads ours and [`CausalLm::load_adapter`] loads PEFT's.
//! Checked against PEFT (tools/oracle/lora_fixtures.py): logits, the gradients of `A` and `B`, merged
//! logits and the saved tensors.
//!
//! ```no_run
//! # use dft_models::{load_pretrained, lora::{LoraSpec, LoraTarget}};
//! # type B = burn::backend::Autodiff<burn::backend::Flex>;
//! # fn main() -> dft_models::Result<()> {
//! let base = load_pretrained::<B>("base-model-dir".as_ref(), &Default::default())?.model;
//! let spec = LoraSpec { rank: 16, alpha: 32.0, ..Default::default() };
//! let model = base.with_lora(&spec, 0)?; // base frozen, adapters trainable
//! // ... train ...
//! model.save_adapter("runs/x/adapter".as_ref(), "base-model-dir")?;
//! let merged = model.merge_lora(); // plain weights W + s·A·B, no adapters
//! # Ok(()) }
//! ```

use crate::error::{ModelError, Result};
use crate::loading::SplitMix;
use crate::model::{CausalLm, Proj};
use crate::safetensors_io::{atomic_write, write_safetensors, SafetensorsCheckpoint};
use crate::tensor_source::{HostTensor, TensorSource};
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use dft_losses::Precision;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A projection that can carry an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LoraTarget {
    #[serde(rename = "q", alias = "q_proj")]
    Q,
    #[serde(rename = "k", alias = "k_proj")]
    K,
    #[serde(rename = "v", alias = "v_proj")]
    V,
    #[serde(rename = "o", alias = "o_proj")]
    O,
    #[serde(rename = "gate", alias = "gate_proj")]
    Gate,
    #[serde(rename = "up", alias = "up_proj")]
    Up,
    #[serde(rename = "down", alias = "down_proj")]
    Down,
}

impl LoraTarget {
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::Q,
        LoraTarget::K,
        LoraTarget::V,
        LoraTarget::O,
        LoraTarget::Gate,
        LoraTarget::Up,
        LoraTarget::Down,
    ];

    /// The module name in HF / PEFT (`q_proj`, …).
    pub fn hf_name(self) -> &'static str {
        match self {
            LoraTarget::Q => "q_proj",
            LoraTarget::K => "k_proj",
            LoraTarget::V => "v_proj",
            LoraTarget::O => "o_proj",
            LoraTarget::Gate => "gate_proj",
            LoraTarget::Up => "up_proj",
            LoraTarget::Down => "down_proj",
        }
    }

    /// `self_attn` or `mlp`.
    pub fn parent(self) -> &'static str {
        match self {
            LoraTarget::Q | LoraTarget::K | LoraTarget::V | LoraTarget::O => "self_attn",
            _ => "mlp",
        }
    }

    pub fn from_hf_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.hf_name() == name || t.hf_name().trim_end_matches("_proj") == name)
    }
}

/// A module trained in full next to the adapters (PEFT's `modules_to_save`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SavedModule {
    LmHead,
    EmbedTokens,
}

impl SavedModule {
    pub fn hf_name(self) -> &'static str {
        match self {
            SavedModule::LmHead => "lm_head",
            SavedModule::EmbedTokens => "embed_tokens",
        }
    }

    /// The tensor's name in a PEFT adapter file.
    pub fn peft_tensor(self) -> &'static str {
        match self {
            SavedModule::LmHead => "base_model.model.lm_head.weight",
            SavedModule::EmbedTokens => "base_model.model.model.embed_tokens.weight",
        }
    }
}

/// What to adapt and how (the `[lora]` section of a run config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraSpec {
    /// Rank `r` of `A: [in, r]`, `B: [r, out]`.
    pub rank: usize,
    /// Scaling numerator: the update is `alpha / r · x·A·B`.
    pub alpha: f64,
    /// Dropout on the adapter's input while training (PEFT's `lora_dropout`).
    pub dropout: f64,
    /// Projections that get an adapter (default: every attention and MLP projection).
    pub targets: Vec<LoraTarget>,
    /// Modules trained in full besides the adapters (`lm_head`, `embed_tokens`; untied models only).
    pub modules_to_save: Vec<SavedModule>,
    /// rsLoRA scaling `alpha / √r`.
    pub use_rslora: bool,
}

impl Default for LoraSpec {
    fn default() -> Self {
        Self {
            rank: 16,
            alpha: 32.0,
            dropout: 0.0,
            targets: LoraTarget::ALL.to_vec(),
            modules_to_save: Vec::new(),
            use_rslora: false,
        }
    }
}

impl LoraSpec {
    /// `(key, message)` of the first bad value.
    pub fn check(&self) -> std::result::Result<(), (&'static str, String)> {
        if self.rank == 0 {
            return Err(("lora.rank", "must be >= 1".into()));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(("lora.alpha", format!("must be finite and > 0, got {}", self.alpha)));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(("lora.dropout", format!("must be in [0, 1), got {}", self.dropout)));
        }
        if self.targets.is_empty() {
            return Err(("lora.targets", "name at least one of q, k, v, o, gate, up, down".into()));
        }
        Ok(())
    }

    /// `alpha / r`, or `alpha / √r` with rsLoRA.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    fn targets_sorted(&self) -> Vec<LoraTarget> {
        self.targets.iter().copied().collect::<BTreeSet<_>>().into_iter().collect()
    }

    /// PEFT's `adapter_config.json` for this spec.
    pub fn to_peft_config(&self, base_model: &str) -> serde_json::Value {
        let targets: Vec<&str> = self.targets_sorted().iter().map(|t| t.hf_name()).collect();
        let saved: Option<Vec<&str>> =
            (!self.modules_to_save.is_empty()).then(|| self.modules_to_save.iter().map(|m| m.hf_name()).collect());
        serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": self.rank,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "target_modules": targets,
            "modules_to_save": saved,
            "use_rslora": self.use_rslora,
            "bias": "none",
            "fan_in_fan_out": false,
            "init_lora_weights": true,
            "inference_mode": true,
            "use_dora": false,
            "layers_to_transform": null,
            "layers_pattern": null,
            "rank_pattern": {},
            "alpha_pattern": {},
            "revision": null,
            "library": "dft-rs",
        })
    }

    /// Read PEFT's `adapter_config.json`, refusing options that would change the numerics and that
    /// dft-rs does not implement (DoRA, per-layer ranks, biases, …) with a message naming the key.
    pub fn from_peft_config(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io { path: path.into(), source })?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::Config { path: path.into(), msg: format!("not JSON: {e}") })?;
        let bad = |msg: String| ModelError::Config { path: path.into(), msg };
        let get = |k: &str| v.get(k).filter(|x| !x.is_null());
        match get("peft_type").and_then(|x| x.as_str()) {
            Some("LORA") => {}
            other => return Err(bad(format!("peft_type is {other:?}; only LORA adapters are supported"))),
        }
        let rank = get("r")
            .and_then(|x| x.as_u64())
            .ok_or_else(|| bad("`r` (rank) missing or not an integer".into()))? as usize;
        let alpha = get("lora_alpha")
            .and_then(|x| x.as_f64())
            .ok_or_else(|| bad("`lora_alpha` missing or not a number".into()))?;
        let dropout = get("lora_dropout").and_then(|x| x.as_f64()).unwrap_or(0.0);
        let use_rslora = get("use_rslora").and_then(|x| x.as_bool()).unwrap_or(false);
        for (key, ok) in [
            ("use_dora", get("use_dora").is_none_or(|x| x == false)),
            ("fan_in_fan_out", get("fan_in_fan_out").is_none_or(|x| x == false)),
            ("bias", get("bias").is_none_or(|x| x == "none")),
            ("lora_bias", get("lora_bias").is_none_or(|x| x == false)),
            ("layers_to_transform", get("layers_to_transform").is_none()),
            ("rank_pattern", get("rank_pattern").is_none_or(|x| x.as_object().is_some_and(|o| o.is_empty()))),
            ("alpha_pattern", get("alpha_pattern").is_none_or(|x| x.as_object().is_some_and(|o| o.is_empty()))),
            ("use_qalora", get("use_qalora").is_none_or(|x| x == false)),
            ("target_parameters", get("target_parameters").is_none()),
            ("trainable_token_indices", get("trainable_token_indices").is_none()),
        ] {
            if !ok {
                return Err(bad(format!("`{key}` = {} is not supported by dft-rs (plain LoRA only)", v[key])));
            }
        }
        let targets = match get("target_modules") {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|t| {
                    t.as_str().and_then(LoraTarget::from_hf_name).ok_or_else(|| {
                        bad(format!("target module {t} is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"))
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            Some(serde_json::Value::String(s)) if s == "all-linear" => {
                return Err(bad("target_modules = \"all-linear\" also adapts lm_head in PEFT; list the modules instead".into()))
            }
            other => return Err(bad(format!("target_modules must be a list of module names, got {other:?}"))),
        };
        let modules_to_save = match get("modules_to_save") {
            None => Vec::new(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|m| match m.as_str() {
                    Some("lm_head") => Ok(SavedModule::LmHead),
                    Some("embed_tokens") => Ok(SavedModule::EmbedTokens),
                    _ => Err(bad(format!("modules_to_save entry {m} is not supported (lm_head, embed_tokens)"))),
                })
                .collect::<Result<Vec<_>>>()?,
            Some(other) => return Err(bad(format!("modules_to_save must be a list, got {other}"))),
        };
        let spec = LoraSpec { rank, alpha, dropout, targets, modules_to_save, use_rslora };
        spec.check().map_err(|(k, m)| bad(format!("{}: {m}", k.trim_start_matches("lora."))))?;
        Ok(spec)
    }
}

/// The low-rank update of one projection.
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// `[in, r]` (PEFT stores `lora_A.weight` as `[r, in]`).
    pub a: Param<Tensor<B, 2>>,
    /// `[r, out]` (PEFT: `lora_B.weight`, `[out, r]`).
    pub b: Param<Tensor<B, 2>>,
    #[module(skip)]
    pub scaling: f64,
    #[module(skip)]
    pub dropout: f64,
}

impl<B: Backend> LoraAdapter<B> {
    /// `s · (dropout(x)·A)·B` for rows `x: [n, in]`. Dropout only acts while gradients are tracked
    /// (an autodiff backend); its mask is the next draw of this thread's dropout stream
    /// ([`seed_dropout`]), not of the backend's process-wide RNG.
    pub fn delta(&self, x: Tensor<B, 2>, precision: Precision) -> Tensor<B, 2> {
        let device = x.device();
        let x = if self.dropout > 0.0 && B::ad_enabled(&device) {
            let keep = 1.0 - self.dropout;
            let mask = if dft_kernels::fast_path::<B>() {
                let [n, d] = x.dims();
                Tensor::<B, 2>::from_data(TensorData::new(dropout_mask(n * d, keep), [n, d]), &device)
            } else {
                device_dropout_mask::<B>(x.dims(), keep, &device)
            };
            x * mask
        } else {
            x
        };
        precision.matmul(precision.matmul(x, self.a.val()), self.b.val()) * self.scaling
    }
}

thread_local! {
    /// This thread's LoRA-dropout stream: the seed of the next mask (`None`: never seeded here).
    static DROPOUT_STREAM: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Restores the thread's previous dropout stream when dropped (see [`seed_dropout`]).
#[must_use = "the stream is reset when the guard drops"]
pub struct DropoutSeedGuard {
    previous: Option<u64>,
}

impl Drop for DropoutSeedGuard {
    fn drop(&mut self) {
        DROPOUT_STREAM.with(|s| s.set(self.previous));
    }
}

/// Seeds the calling thread's LoRA-dropout stream until the guard drops: every adapter's mask drawn on
/// this thread meanwhile is a pure function of `seed` and the order of the draws (the forward order),
/// whatever other threads, trainings or the backend's own RNG (`B::seed`, `Tensor::random`) do at the
/// same time. A trainer seeds it per optimiser step, so a resumed run draws the masks of an
/// uninterrupted one. A thread that never seeded it draws from seed 0.
pub fn seed_dropout(seed: u64) -> DropoutSeedGuard {
    DropoutSeedGuard { previous: DROPOUT_STREAM.with(|s| s.replace(Some(seed))) }
}

/// The next seed of this thread's dropout stream.
fn next_dropout_seed() -> u64 {
    DROPOUT_STREAM.with(|s| {
        let mut stream = SplitMix(s.get().unwrap_or(0));
        let seed = stream.next_u64();
        s.set(Some(stream.0));
        seed
    })
}

/// Serialises reseeding and drawing from the backend's process-wide RNG (see [`device_dropout_mask`]).
static BACKEND_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The mask on a backend whose tensors live on an accelerator (CUDA): drawn there by the backend's own
/// RNG (no host → device copy of every mask), reseeded from this thread's stream under a process-wide
/// lock, so the trainings and data-parallel peers of this process never interleave their draws and each
/// mask is a function of the stream. (Code outside dft-rs that draws from the backend's RNG at the same
/// moment, without the lock, still could; the CPU path, [`dropout_mask`], has no such caveat.)
fn device_dropout_mask<B: Backend>(dims: [usize; 2], keep: f64, device: &B::Device) -> Tensor<B, 2> {
    let seed = next_dropout_seed();
    let mask = {
        let _draws = BACKEND_RNG.lock().unwrap_or_else(|e| e.into_inner());
        B::seed(device, seed);
        Tensor::<B, 2>::random(dims, burn::tensor::Distribution::Bernoulli(keep), device)
    };
    mask / keep
}

/// Inverted-dropout mask of `len` elements: `1 / keep` with probability `keep`, else 0 (PEFT's
/// `nn.Dropout` scaling), from the next seed of this thread's stream. Each 64-bit draw gives two
/// elements (32-bit uniforms against `keep · 2³²`); chunks of 64 Ki elements are filled in parallel,
/// each from its own SplitMix stream keyed by the mask's seed and the chunk index, so the mask does not
/// depend on the number of threads.
fn dropout_mask(len: usize, keep: f64) -> Vec<f32> {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 16;
    let seed = next_dropout_seed();
    let threshold = (keep * 4_294_967_296.0).round() as u64;
    let scale = (1.0 / keep) as f32;
    let mut mask = vec![0f32; len];
    mask.par_chunks_mut(CHUNK).enumerate().for_each(|(c, out)| {
        let mut rng = SplitMix(seed ^ (c as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        let pick = |u: u64| if u < threshold { scale } else { 0.0 };
        let mut pairs = out.chunks_exact_mut(2);
        for pair in &mut pairs {
            let r = rng.next_u64();
            pair[0] = pick(r & 0xFFFF_FFFF);
            pair[1] = pick(r >> 32);
        }
        if let [last] = pairs.into_remainder() {
            *last = pick(rng.next_u64() & 0xFFFF_FFFF);
        }
    });
    mask
}

/// Every trainable part of a LoRA model (adapters in a fixed order, and the modules trained in full):
/// what a LoRA run's checkpoint holds instead of the whole model.
#[derive(Module, Debug)]
pub struct LoraParts<B: Backend> {
    pub adapters: Vec<LoraAdapter<B>>,
    pub lm_head: Option<Param<Tensor<B, 2>>>,
    pub embed_tokens: Option<Param<Tensor<B, 2>>>,
}

fn host<B: Backend>(t: Tensor<B, 2>) -> HostTensor {
    let shape = t.dims().to_vec();
    HostTensor::new(shape, t.into_data().convert::<f32>().to_vec::<f32>().expect("f32 data"))
}

fn transposed(t: &HostTensor) -> HostTensor {
    let (r, c) = (t.shape[0], t.shape[1]);
    let mut out = vec![0f32; r * c];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = t.data[i * c + j];
        }
    }
    HostTensor::new(vec![c, r], out)
}

fn device_tensor<B: Backend>(t: HostTensor, device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(t.data, t.shape), device)
}

/// PEFT's name of the adapter of `target` in block `layer` (0-based), without the `.lora_A.weight` suffix.
pub fn peft_prefix(layer: usize, target: LoraTarget) -> String {
    format!("base_model.model.model.layers.{layer}.{}.{}", target.parent(), target.hf_name())
}

impl<B: Backend> CausalLm<B> {
    fn proj_mut(&mut self, layer: usize, target: LoraTarget) -> &mut Proj<B> {
        let blk = &mut self.layers[layer];
        match target {
            LoraTarget::Q => &mut blk.self_attn.q_proj,
            LoraTarget::K => &mut blk.self_attn.k_proj,
            LoraTarget::V => &mut blk.self_attn.v_proj,
            LoraTarget::O => &mut blk.self_attn.o_proj,
            LoraTarget::Gate => &mut blk.mlp.gate_proj,
            LoraTarget::Up => &mut blk.mlp.up_proj,
            LoraTarget::Down => &mut blk.mlp.down_proj,
        }
    }

    fn proj_ref(&self, layer: usize, target: LoraTarget) -> &Proj<B> {
        let blk = &self.layers[layer];
        match target {
            LoraTarget::Q => &blk.self_attn.q_proj,
            LoraTarget::K => &blk.self_attn.k_proj,
            LoraTarget::V => &blk.self_attn.v_proj,
            LoraTarget::O => &blk.self_attn.o_proj,
            LoraTarget::Gate => &blk.mlp.gate_proj,
            LoraTarget::Up => &blk.mlp.up_proj,
            LoraTarget::Down => &blk.mlp.down_proj,
        }
    }

    fn check_saved_modules(&self, spec: &LoraSpec) -> Result<()> {
        if !spec.modules_to_save.is_empty() && self.lm_head.is_none() {
            return Err(ModelError::InvalidArgument(format!(
                "lora.modules_to_save = {:?}: this model ties its LM head to the embeddings, and training either \
                 in full would change both (PEFT unties them); leave modules_to_save empty for tied models",
                spec.modules_to_save.iter().map(|m| m.hf_name()).collect::<Vec<_>>()
            )));
        }
        Ok(())
    }

    /// Freeze every base weight and add adapters as `spec` says, initialised as PEFT does (`A` Kaiming-
    /// uniform with a = √5, i.e. U(−1/√in, 1/√in), from a SplitMix stream seeded by `seed`; `B = 0`, so
    /// the model's outputs are unchanged until the first update). `modules_to_save` stay trainable.
    pub fn with_lora(self, spec: &LoraSpec, seed: u64) -> Result<Self> {
        spec.check().map_err(|(k, m)| ModelError::InvalidArgument(format!("{k}: {m}")))?;
        if self.lora.is_some() {
            return Err(ModelError::InvalidArgument("the model already has LoRA adapters".into()));
        }
        self.check_saved_modules(spec)?;
        let device = self.device();
        let mut model = self.no_grad();
        for m in &spec.modules_to_save {
            match m {
                SavedModule::LmHead => model.lm_head = model.lm_head.map(|p| p.set_require_grad(true)),
                SavedModule::EmbedTokens => model.embed_tokens = model.embed_tokens.set_require_grad(true),
            }
        }
        let mut rng = SplitMix(seed ^ 0x4c6f_5241); // "LoRA"
        for layer in 0..model.num_layers() {
            for target in spec.targets_sorted() {
                let proj = model.proj_mut(layer, target);
                let [fan_in, fan_out] = proj.weight.dims();
                let bound = 1.0 / (fan_in as f64).sqrt();
                let a: Vec<f32> =
                    (0..fan_in * spec.rank).map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32).collect();
                let a = Tensor::<B, 2>::from_data(TensorData::new(a, [fan_in, spec.rank]), &device);
                proj.lora = Some(LoraAdapter {
                    a: Param::from_tensor(a),
                    b: Param::from_tensor(Tensor::zeros([spec.rank, fan_out], &device)),
                    scaling: spec.scaling(),
                    dropout: spec.dropout,
                });
            }
        }
        model.lora = Some(spec.clone());
        Ok(model)
    }

    /// The adapter's tensors with PEFT's names and layout (what `adapter_model.safetensors` holds).
    pub fn adapter_tensors(&self) -> Result<BTreeMap<String, HostTensor>> {
        let spec =
            self.lora.as_ref().ok_or_else(|| ModelError::InvalidArgument("the model has no LoRA adapters".into()))?;
        let mut out = BTreeMap::new();
        for layer in 0..self.num_layers() {
            for target in spec.targets_sorted() {
                let ad = self.proj_ref(layer, target).lora.as_ref().expect("adapter present for every target");
                let p = peft_prefix(layer, target);
                out.insert(format!("{p}.lora_A.weight"), transposed(&host(ad.a.val())));
                out.insert(format!("{p}.lora_B.weight"), transposed(&host(ad.b.val())));
            }
        }
        for m in &spec.modules_to_save {
            let t = match m {
                SavedModule::LmHead => transposed(&host(self.lm_head.as_ref().expect("untied").val())),
                SavedModule::EmbedTokens => host(self.embed_tokens.val()),
            };
            out.insert(m.peft_tensor().to_string(), t);
        }
        Ok(out)
    }

    /// Write `dir/adapter_config.json` and `dir/adapter_model.safetensors` as PEFT does (atomically).
    /// `base_model` goes into `base_model_name_or_path`.
    pub fn save_adapter(&self, dir: &Path, base_model: &str) -> Result<()> {
        let spec =
            self.lora.as_ref().ok_or_else(|| ModelError::InvalidArgument("the model has no LoRA adapters".into()))?;
        // Never write into a folder that holds something else: only an earlier adapter is replaced.
        if let Ok(entries) = std::fs::read_dir(dir) {
            let ours = ["adapter_config.json", "adapter_model.safetensors", "README.md"];
            let is_ours = |n: &std::ffi::OsString| ours.contains(&n.to_string_lossy().as_ref());
            if let Some(other) = entries.flatten().map(|e| e.file_name()).find(|n| !is_ours(n)) {
                return Err(ModelError::InvalidArgument(format!(
                    "{}: not writing a LoRA adapter into a folder that holds `{}` (only an earlier adapter's files \
                     are replaced); choose an empty or new folder",
                    dir.display(),
                    other.to_string_lossy()
                )));
            }
        }
        std::fs::create_dir_all(dir).map_err(|source| ModelError::Io { path: dir.into(), source })?;
        write_safetensors(&dir.join("adapter_model.safetensors"), &self.adapter_tensors()?)?;
        let cfg = serde_json::to_string_pretty(&spec.to_peft_config(base_model)).expect("json");
        atomic_write(&dir.join("adapter_config.json"), cfg.as_bytes())
    }

    /// Add the adapter saved in `dir` (by PEFT or by [`save_adapter`](Self::save_adapter)) to this base
    /// model. Every tensor the config implies must be there with the right shape, and nothing else.
    /// The base stays frozen and the adapters trainable, as after [`with_lora`](Self::with_lora).
    pub fn load_adapter(self, dir: &Path) -> Result<Self> {
        let spec = LoraSpec::from_peft_config(&dir.join("adapter_config.json"))?;
        let file = dir.join("adapter_model.safetensors");
        if !file.is_file() {
            let bin = dir.join("adapter_model.bin");
            let hint = if bin.is_file() {
                " (adapter_model.bin is a pickle; re-save it with safe_serialization=True)"
            } else {
                ""
            };
            return Err(ModelError::Io {
                path: file,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, format!("adapter weights not found{hint}")),
            });
        }
        let source = SafetensorsCheckpoint::open(&file)?;
        let mut model = self.with_lora(&spec, 0)?;
        let device = model.device();
        let mut expected: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for layer in 0..model.num_layers() {
            for target in spec.targets_sorted() {
                let [fan_in, fan_out] = model.proj_ref(layer, target).weight.dims();
                let p = peft_prefix(layer, target);
                expected.insert(format!("{p}.lora_A.weight"), vec![spec.rank, fan_in]);
                expected.insert(format!("{p}.lora_B.weight"), vec![fan_out, spec.rank]);
            }
        }
        let [vocab, hidden] = model.embed_tokens.dims();
        for m in &spec.modules_to_save {
            expected.insert(m.peft_tensor().to_string(), vec![vocab, hidden]);
        }
        // PEFT may save the adapter name inside the key (`lora_A.default.weight`) when asked to; accept both.
        let names: BTreeMap<String, String> =
            source.names().into_iter().map(|n| (n.replace(".default.weight", ".weight"), n)).collect();
        if let Some(extra) = names.keys().find(|n| !expected.contains_key(*n)) {
            return Err(ModelError::UnexpectedTensor {
                path: file.clone(),
                tensor: names[extra].clone(),
                arch: format!("LoRA adapter of {} with this adapter_config.json", model.config.arch.hf_model_type()),
            });
        }
        let load = |name: &str, want: &[usize]| -> Result<HostTensor> {
            let stored = names
                .get(name)
                .ok_or_else(|| ModelError::MissingTensor { path: file.clone(), tensor: name.to_string() })?;
            let got = source.shape(stored).unwrap_or_default();
            if got != want {
                return Err(ModelError::ShapeMismatch {
                    path: file.clone(),
                    tensor: stored.clone(),
                    got,
                    want: want.to_vec(),
                });
            }
            source.load(stored)
        };
        for layer in 0..model.num_layers() {
            for target in spec.targets_sorted() {
                let p = peft_prefix(layer, target);
                let (ka, kb) = (format!("{p}.lora_A.weight"), format!("{p}.lora_B.weight"));
                let a = transposed(&load(&ka, &expected[&ka])?);
                let b = transposed(&load(&kb, &expected[&kb])?);
                let ad = model.proj_mut(layer, target).lora.as_mut().expect("adapter");
                ad.a = Param::from_tensor(device_tensor::<B>(a, &device));
                ad.b = Param::from_tensor(device_tensor::<B>(b, &device));
            }
        }
        for m in &spec.modules_to_save {
            let t = load(m.peft_tensor(), &expected[m.peft_tensor()])?;
            match m {
                SavedModule::LmHead => {
                    model.lm_head = Some(Param::from_tensor(device_tensor::<B>(transposed(&t), &device)))
                }
                SavedModule::EmbedTokens => model.embed_tokens = Param::from_tensor(device_tensor::<B>(t, &device)),
            }
        }
        Ok(model)
    }

    /// Fold every adapter into its base weight (`W ← W + s·A·B`, in f32) and drop the adapters: a plain
    /// model with the same outputs, saved as an ordinary HF checkpoint. Every weight is trainable again.
    pub fn merge_lora(mut self) -> Self {
        let Some(spec) = self.lora.take() else { return self };
        for layer in 0..self.num_layers() {
            for target in spec.targets_sorted() {
                let proj = self.proj_mut(layer, target);
                if let Some(ad) = proj.lora.take() {
                    let w = dft_losses::precision::as_f32(proj.weight.val().detach())
                        + ad.a.val().detach().matmul(ad.b.val().detach()) * ad.scaling;
                    proj.weight = Param::from_tensor(w);
                }
            }
        }
        self.map(&mut RequireGrad)
    }

    /// Store every frozen matrix (the base projections, embeddings and head that take no gradient) in
    /// `dtype` — bf16 halves the base's memory in a LoRA run. Trainable parameters and the norms stay
    /// f32; the forward widens or narrows as [`Precision`] says, so outputs are those of a bf16-rounded
    /// base. [`merge_lora`](Self::merge_lora) and [`to_hf_tensors`](Self::to_hf_tensors) give f32.
    pub fn with_frozen_base_dtype(self, dtype: burn::tensor::FloatDType) -> Self {
        struct Narrow(burn::tensor::FloatDType);
        impl<B: Backend> burn::module::ModuleMapper<B> for Narrow {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
                if D == 2 && !param.is_require_grad() {
                    let dtype = self.0;
                    if dtype == burn::tensor::FloatDType::BF16 && !dft_losses::precision::has_bf16::<B>(&param.device())
                    {
                        // No bf16 storage on this backend (ndarray): bf16-rounded values kept in f32.
                        return param.map(|t| dft_losses::precision::round_bf16(t).set_require_grad(false));
                    }
                    param.map(|t| t.cast(dtype).set_require_grad(false))
                } else {
                    param
                }
            }
        }
        self.map(&mut Narrow(dtype))
    }

    /// The trainable parts (adapters, modules to save), for a LoRA run's checkpoint.
    pub fn lora_parts(&self) -> Option<LoraParts<B>> {
        let spec = self.lora.as_ref()?;
        let mut adapters = Vec::new();
        for layer in 0..self.num_layers() {
            for target in spec.targets_sorted() {
                adapters.push(self.proj_ref(layer, target).lora.clone().expect("adapter"));
            }
        }
        let saved = |m| spec.modules_to_save.contains(&m);
        Some(LoraParts {
            adapters,
            lm_head: if saved(SavedModule::LmHead) { self.lm_head.clone() } else { None },
            embed_tokens: saved(SavedModule::EmbedTokens).then(|| self.embed_tokens.clone()),
        })
    }

    /// Put parts from [`lora_parts`](Self::lora_parts) (e.g. loaded from a checkpoint) back in place.
    pub fn with_lora_parts(mut self, parts: LoraParts<B>) -> Result<Self> {
        let spec =
            self.lora.clone().ok_or_else(|| ModelError::InvalidArgument("the model has no LoRA adapters".into()))?;
        let want = self.num_layers() * spec.targets_sorted().len();
        if parts.adapters.len() != want {
            return Err(ModelError::InvalidArgument(format!(
                "checkpoint holds {} LoRA adapters, this configuration has {want}",
                parts.adapters.len()
            )));
        }
        let mut it = parts.adapters.into_iter();
        for layer in 0..self.num_layers() {
            for target in spec.targets_sorted() {
                self.proj_mut(layer, target).lora = it.next();
            }
        }
        if let Some(h) = parts.lm_head {
            self.lm_head = Some(h);
        }
        if let Some(e) = parts.embed_tokens {
            self.embed_tokens = e;
        }
        Ok(self)
    }

    /// `(trainable, total)` parameter counts.
    pub fn parameter_counts(&self) -> (usize, usize) {
        use burn::module::ModuleVisitor;
        struct Count(usize, usize);
        impl<B: Backend> ModuleVisitor<B> for Count {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
                let n = p.shape().num_elements();
                self.1 += n;
                if p.is_require_grad() {
                    self.0 += n;
                }
            }
        }
        let mut c = Count(0, 0);
        self.visit(&mut c);
        (c.0, c.1)
    }
}

struct RequireGrad;
impl<B: Backend> burn::module::ModuleMapper<B> for RequireGrad {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.set_require_grad(true)
    }
}

#[cfg(test)]
mod dropout_tests {
    use super::{dropout_mask, seed_dropout};

    #[test]
    fn mask_keeps_the_right_share_scaled_by_one_over_keep() {
        let _g = seed_dropout(3);
        for keep in [0.9, 0.75, 0.5, 0.05] {
            let n = 1 << 20;
            let m = dropout_mask(n, keep);
            let scale = (1.0 / keep) as f32;
            assert!(m.iter().all(|&v| v == 0.0 || v == scale), "values other than 0 and 1/keep");
            let kept = m.iter().filter(|&&v| v != 0.0).count() as f64;
            let sd = (n as f64 * keep * (1.0 - keep)).sqrt();
            assert!((kept - n as f64 * keep).abs() < 5.0 * sd, "keep {keep}: {kept} of {n} kept");
            // Neighbours (the two halves of one 64-bit draw, and chunk borders) are independent.
            let both = m.windows(2).filter(|w| w[0] != 0.0 && w[1] != 0.0).count() as f64;
            let expect = (n - 1) as f64 * keep * keep;
            assert!((both - expect).abs() < 6.0 * expect.sqrt().max(1.0), "keep {keep}: pairs {both} vs {expect}");
        }
    }

    /// The accelerator path (exercised here on Flex, whose RNG is process-wide like CUDA's): two threads
    /// drawing at once with their own seeds each get what they get alone.
    #[test]
    fn device_masks_follow_the_threads_seed_under_concurrency() {
        use super::device_dropout_mask;
        use burn::backend::Flex;
        let draw = |seed: u64| -> Vec<Vec<f32>> {
            let _g = seed_dropout(seed);
            (0..50)
                .map(|_| device_dropout_mask::<Flex>([64, 48], 0.75, &Default::default()).into_data().to_vec().unwrap())
                .collect()
        };
        let (a, b) = (draw(1), draw(2));
        assert_ne!(a, b, "the seed has no effect");
        assert_ne!(a[0], a[1], "consecutive draws repeat");
        let kept = a.iter().flatten().filter(|&&v| v != 0.0).count() as f64 / (50.0 * 64.0 * 48.0);
        assert!((kept - 0.75).abs() < 0.02, "kept share {kept}");
        assert!(a.iter().flatten().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
        for _ in 0..10 {
            let (x, y) = std::thread::scope(|s| {
                let x = s.spawn(|| draw(1));
                let y = s.spawn(|| draw(2));
                (x.join().unwrap(), y.join().unwrap())
            });
            assert_eq!((&x, &y), (&a, &b), "concurrent draws interleaved");
        }
    }

    #[test]
    fn masks_follow_the_threads_seed_and_not_the_thread_count() {
        let draw = |seed: u64| {
            let _g = seed_dropout(seed);
            (dropout_mask(300_001, 0.8), dropout_mask(1000, 0.8))
        };
        let pool = |n: usize| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap();
        let one = pool(1).install(|| draw(11));
        let two = pool(2).install(|| draw(11));
        assert_eq!(one, two, "the mask depends on the number of threads");
        assert_ne!(one.0[..1000], one.1[..], "consecutive draws repeat");
        assert_ne!(draw(12).0, one.0, "the seed has no effect");
        // The guard restores the outer stream: an inner seeding does not shift the outer draws.
        let outer = {
            let _g = seed_dropout(5);
            let a = dropout_mask(4096, 0.5);
            {
                let _inner = seed_dropout(6);
                dropout_mask(4096, 0.5);
            }
            (a, dropout_mask(4096, 0.5))
        };
        let plain = {
            let _g = seed_dropout(5);
            (dropout_mask(4096, 0.5), dropout_mask(4096, 0.5))
        };
        assert_eq!(outer, plain);
        // Another thread's stream is its own.
        let _g = seed_dropout(11);
        let other = std::thread::spawn(|| {
            let _g = seed_dropout(99);
            dropout_mask(300_001, 0.8)
        });
        let mine = dropout_mask(300_001, 0.8);
        other.join().unwrap();
        assert_eq!(mine, one.0);
    }
}
