//! The decoder: Llama (Llama-2, SmolLM2), Gemma-2 and Gemma-3 (text), one code path with per-architecture
//! switches.
//!
//! Readable side by side with transformers' `modeling_llama.py` / `modeling_gemma2.py` /
//! `modeling_gemma3.py` (eager attention). Gemma-3 differs from Gemma-2 by an RMSNorm over `head_dim` on
//! every query and key head before RoPE (QK-norm) instead of attention softcapping, no final softcap, and a
//! RoPE base per layer kind (local sliding-window layers vs global layers).
//! Layers are numbered as the deep-supervision spec does: block k is the output of decoder block k
//! (k = 1..L); block 0 is the (scaled) embeddings.
//!
//! Linear weights are stored in Burn's `[in, out]` layout (HF stores `[out, in]`; loaders transpose).

use crate::config::{Activation, LayerType, ModelConfig};
use crate::lora::{LoraAdapter, LoraSpec};
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use dft_kernels::{GateAct, SoftmaxSpec};
use dft_losses::Precision;
use std::sync::Arc;

/// Right-padded batch description: the number of real tokens in each row (the rest is padding).
/// `None` everywhere in the API means "no padding".
pub type Lengths<'a> = Option<&'a [usize]>;

#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    #[module(skip)]
    pub eps: f64,
    /// Gemma computes `x̂ · (1 + w)`; Llama `x̂ · w`.
    #[module(skip)]
    pub unit_offset: bool,
}

impl<B: Backend> RmsNorm<B> {
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        self.forward_with(x, false)
    }

    /// `detached`: use the weight without letting gradient reach it (logit lens of DFT).
    pub fn forward_with<const D: usize>(&self, x: Tensor<B, D>, detached: bool) -> Tensor<B, D> {
        let w = if detached { self.weight.val().detach() } else { self.weight.val() };
        let w = if self.unit_offset { w + 1.0 } else { w };
        dft_kernels::rms_norm(x, w, self.eps)
    }
}

/// A bias-free (by default) linear layer with weight `[in, out]`, optionally with a LoRA adapter.
#[derive(Module, Debug)]
pub struct Proj<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Low-rank update `s·(x·A)·B` added to the output (see [`crate::lora`]); `None` for plain layers.
    pub lora: Option<LoraAdapter<B>>,
}

impl<B: Backend> Proj<B> {
    pub fn new(weight: Param<Tensor<B, 2>>, bias: Option<Param<Tensor<B, 1>>>) -> Self {
        Self { weight, bias, lora: None }
    }

    /// `x·W (+ b) (+ LoRA)` in f32.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward_in(x, Precision::F32)
    }

    /// `x·W (+ b) (+ LoRA)` with the products in `precision` (see [`Precision`]).
    pub fn forward_in(&self, x: Tensor<B, 3>, precision: Precision) -> Tensor<B, 3> {
        let [b, t, i] = x.dims();
        let o = self.weight.dims()[1];
        let x = x.reshape([b * t, i]);
        let mut y = precision.matmul(x.clone(), self.weight.val());
        if let Some(lora) = &self.lora {
            y = y + lora.delta(x, precision);
        }
        let y = match &self.bias {
            Some(bias) => y + bias.val().unsqueeze_dim(0),
            None => y,
        };
        y.reshape([b, t, o])
    }
}

/// Self-attention with grouped-query heads, RoPE, optional QK-norm (Gemma-3) and score softcap
/// (Gemma-2). The head counts, scale and softcap come from the config ([`Attention::new`]).
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub q_proj: Proj<B>,
    pub k_proj: Proj<B>,
    pub v_proj: Proj<B>,
    pub o_proj: Proj<B>,
    /// Gemma-3 only: `(1 + w)` RMSNorm over `head_dim`, per query head, before RoPE.
    pub q_norm: Option<RmsNorm<B>>,
    /// Gemma-3 only: the same for every key head.
    pub k_norm: Option<RmsNorm<B>>,
    #[module(skip)]
    pub num_heads: usize,
    #[module(skip)]
    pub num_kv_heads: usize,
    #[module(skip)]
    pub head_dim: usize,
    /// Scores are `scale · q·kᵀ`: `query_pre_attn_scalar^-½` (Gemma) or `head_dim^-½`.
    #[module(skip)]
    pub scale: f64,
    /// Gemma-2: scores are softcapped, `c · tanh(s / c)`.
    #[module(skip)]
    pub softcap: Option<f64>,
}

/// The gated MLP: `down(act(gate(x)) · up(x))`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Proj<B>,
    pub up_proj: Proj<B>,
    pub down_proj: Proj<B>,
    #[module(skip)]
    pub act: Activation,
}

/// One decoder block: pre-norm attention and MLP with residuals (Gemma-2/3 add post-norms).
#[derive(Module, Debug)]
pub struct DecoderBlock<B: Backend> {
    pub input_layernorm: RmsNorm<B>,
    pub self_attn: Attention<B>,
    pub post_attention_layernorm: RmsNorm<B>,
    /// Gemma-2/3 only.
    pub pre_feedforward_layernorm: Option<RmsNorm<B>>,
    /// Gemma-2/3 only.
    pub post_feedforward_layernorm: Option<RmsNorm<B>>,
    pub mlp: Mlp<B>,
    /// Full or sliding-window attention (which mask and RoPE base the block uses).
    #[module(skip)]
    pub layer_type: LayerType,
}

/// The keys and values of one block in a [`KvCache`]: `[rows, kv_heads, capacity, head_dim]` each
/// (the attention's head-major layout, so a step reads the cache without copying it), of which the
/// first `cache.len` positions are filled; [`KvCache::reserve`] preallocates room that later steps
/// write in place.
pub type KvSlot<B> = Option<(Tensor<B, 4>, Tensor<B, 4>)>;

/// A decoder-only causal LM exposing what deep supervision needs.
#[derive(Module, Debug)]
pub struct CausalLm<B: Backend> {
    /// `[vocab, hidden]` (HF layout; also the tied LM head).
    pub embed_tokens: Param<Tensor<B, 2>>,
    pub layers: Vec<DecoderBlock<B>>,
    pub norm: RmsNorm<B>,
    /// `[hidden, vocab]`; `None` when tied to the embeddings.
    pub lm_head: Option<Param<Tensor<B, 2>>>,
    #[module(skip)]
    pub config: ModelConfig,
    /// Precision of the matrix products (f32 or bf16-mixed; the weights stay f32 either way).
    #[module(skip)]
    pub precision: Precision,
    /// The LoRA configuration when the projections carry adapters ([`CausalLm::with_lora`]).
    #[module(skip)]
    pub lora: Option<LoraSpec>,
    /// Whether forwards over right-padded rows run their position-wise work on the real positions only
    /// ([`CausalLm::with_row_packing`]; on by default).
    #[module(skip)]
    pub row_packing: bool,
    /// Whether forwards without a cache run each block's attention as one fused op where the backend
    /// has one ([`CausalLm::with_fused_attention`]; on by default).
    #[module(skip)]
    pub fused_attention: bool,
}

/// Per-layer keys and values of earlier positions, for incremental decoding and shared prefixes: the
/// one cache type of the workspace, shared with `dft-losses` (which continues prefixes through
/// [`dft_losses::DeepSupervisionModel::suffix_hidden_states`]).
pub use dft_losses::PrefixKv as KvCache;

/// The layout of a [`KvCache`] whose first `prompt_width` positions are right-padded prompts: row `r`
/// has `prompt_lens[r]` real prompt tokens (see [`CausalLm::forward_ragged`]).
#[derive(Debug, Clone, Copy)]
pub struct RaggedRows<'a> {
    pub prompt_width: usize,
    pub prompt_lens: &'a [usize],
}

/// What a forward pass should run and return.
#[derive(Debug, Clone, Default)]
pub struct ForwardSpec {
    /// Run blocks 1..=`upto` only (`None` = all L blocks).
    pub upto: Option<usize>,
    /// Block indices (0..=upto) whose hidden states are returned.
    pub keep: Vec<usize>,
}

/// Hidden states returned by [`CausalLm::forward_hidden`].
#[derive(Debug, Clone)]
pub struct HiddenStates<B: Backend> {
    /// `(k, h_k)` for each requested k, in the order requested, `h_k: [batch, seq, hidden]`.
    pub kept: Vec<(usize, Tensor<B, 3>)>,
    /// Output of the last block run (`h_upto`).
    pub last: Tensor<B, 3>,
}

impl<B: Backend> HiddenStates<B> {
    pub fn get(&self, k: usize) -> Option<&Tensor<B, 3>> {
        self.kept.iter().find(|(i, _)| *i == k).map(|(_, h)| h)
    }
}

/// RoPE `cos` and `sin` in HF's rotate-half layout, one `head_dim` row per (row, position):
/// `[b * len * head_dim]` each. Row `r` starts at position `offsets[r]` (one offset: the same for every row).
fn rope_rows(theta: f64, head_dim: usize, offsets: &[usize], b: usize, len: usize) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    // transformers computes inv_freq in f32 and the angle as an f32 product; do the same so cos/sin agree.
    let inv_freq: Vec<f32> =
        (0..half).map(|i| 1.0f32 / (theta as f32).powf((2 * i) as f32 / head_dim as f32)).collect();
    let (mut cos, mut sin) = (vec![0f32; b * len * head_dim], vec![0f32; b * len * head_dim]);
    for r in 0..b {
        let offset = if offsets.len() == 1 { offsets[0] } else { offsets[r] };
        for (q, p) in (offset..offset + len).enumerate() {
            let at = (r * len + q) * head_dim;
            for (i, f) in inv_freq.iter().enumerate() {
                let angle = (p as f32) * f;
                (cos[at + i], sin[at + i]) = (angle.cos(), angle.sin());
                (cos[at + half + i], sin[at + half + i]) = (cos[at + i], sin[at + i]);
            }
        }
    }
    (cos, sin)
}

/// One table from [`rope_rows`], repeated over `heads` into the projections' layout `[b, len, heads, d]`
/// (materialised so that the element-wise products need no broadcasting).
fn rope_over_heads<B: Backend>(
    rows: &[f32],
    b: usize,
    len: usize,
    heads: usize,
    d: usize,
    device: &B::Device,
) -> Tensor<B, 4> {
    let mut out = Vec::with_capacity(rows.len() * heads);
    for row in rows.chunks(d) {
        for _ in 0..heads {
            out.extend_from_slice(row);
        }
    }
    Tensor::from_data(TensorData::new(out, [b, len, heads, d]), device)
}

/// The RoPE tables of one base frequency, for the query and the key heads.
pub(crate) struct RopeTables<B: Backend> {
    q: (Tensor<B, 4>, Tensor<B, 4>),
    k: (Tensor<B, 4>, Tensor<B, 4>),
    /// The same tables once per (row, position), for the fused attention.
    rows: dft_kernels::RopeRows,
}

impl<B: Backend> RopeTables<B> {
    fn new(cfg: &ModelConfig, theta: f64, offsets: &[usize], b: usize, len: usize, device: &B::Device) -> Self {
        let d = cfg.head_dim;
        let (cos, sin) = rope_rows(theta, d, offsets, b, len);
        let table = |heads| {
            (rope_over_heads::<B>(&cos, b, len, heads, d, device), rope_over_heads::<B>(&sin, b, len, heads, d, device))
        };
        let q = table(cfg.num_attention_heads);
        let k =
            if cfg.num_key_value_heads == cfg.num_attention_heads { q.clone() } else { table(cfg.num_key_value_heads) };
        Self { q, k, rows: dft_kernels::RopeRows { cos: cos.into(), sin: sin.into() } }
    }
}

/// RoPE of one forward pass: the global (full-attention) layers' tables and, when Gemma-3's sliding
/// layers use another base, theirs; and `rotate_half` as a `[d, d]` signed permutation.
pub(crate) struct Ropes<B: Backend> {
    full: RopeTables<B>,
    sliding: Option<RopeTables<B>>,
    rotate_half: Tensor<B, 2>,
}

impl<B: Backend> Ropes<B> {
    fn new(cfg: &ModelConfig, offsets: &[usize], b: usize, len: usize, device: &B::Device) -> Self {
        let full = RopeTables::new(cfg, cfg.rope_theta, offsets, b, len, device);
        let sliding = match cfg.rope_local_base_freq {
            Some(local) if local != cfg.rope_theta && cfg.layer_types.contains(&LayerType::Sliding) => {
                Some(RopeTables::new(cfg, local, offsets, b, len, device))
            }
            _ => None,
        };
        // x @ R = rotate_half(x) = [-x2, x1]: R[half + i, i] = -1, R[i, half + i] = 1 (exact in any float).
        let (d, half) = (cfg.head_dim, cfg.head_dim / 2);
        let mut r = vec![0f32; d * d];
        for i in 0..half {
            r[(half + i) * d + i] = -1.0;
            r[i * d + half + i] = 1.0;
        }
        let rotate_half = Tensor::from_data(TensorData::new(r, [d, d]), device);
        Self { full, sliding, rotate_half }
    }

    fn for_layer(&self, kind: LayerType) -> &RopeTables<B> {
        match (kind, &self.sliding) {
            (LayerType::Sliding, Some(s)) => s,
            _ => &self.full,
        }
    }
}

/// `x * cos + rotate_half(x) * sin` for `x: [b, t, heads, d]` and tables of the same shape.
/// `rotate_half` is a matmul with a signed permutation (exact), which is cheaper on CPU backends than
/// slicing and concatenating the halves, and keeps every operand contiguous.
fn apply_rope<B: Backend>(
    x: Tensor<B, 4>,
    table: &(Tensor<B, 4>, Tensor<B, 4>),
    rotate: &Tensor<B, 2>,
) -> Tensor<B, 4> {
    let [b, t, h, d] = x.dims();
    let rotated = dft_kernels::matmul(x.clone().reshape([b * t * h, d]), rotate.clone()).reshape([b, t, h, d]);
    x * table.0.clone() + rotated * table.1.clone()
}

/// Additive attention bias `[b, 1, 1, t, s]` (0 = visible, -1e9 = masked) for queries at absolute
/// positions `q_offset..q_offset+t` over keys `0..s`, with right padding given by `lengths` and an optional
/// window. One mask for all heads: it broadcasts over `[kv_heads, rep]`.
fn attention_bias<B: Backend>(
    b: usize,
    t: usize,
    s: usize,
    q_offset: usize,
    lengths: Lengths,
    window: Option<usize>,
    device: &B::Device,
) -> Tensor<B, 5> {
    let mut bias = vec![0f32; b * t * s];
    for row in 0..b {
        let len = lengths.map(|l| l[row]).unwrap_or(s);
        for qi in 0..t {
            let q = q_offset + qi;
            for k in 0..s {
                let visible = k <= q && k < len && window.is_none_or(|w| q - k < w);
                if !visible {
                    bias[(row * t + qi) * s + k] = -1e9;
                }
            }
        }
    }
    expand_bias(bias, b, t, s, device)
}

/// `[b, t, s]` bias values → the `[b, 1, 1, t, s]` tensor that broadcasts over the scores' heads
/// `[b, kv_heads, rep, t, s]` (the fused softmax of dft-kernels reads it per row; other backends broadcast).
fn expand_bias<B: Backend>(bias: Vec<f32>, b: usize, t: usize, s: usize, device: &B::Device) -> Tensor<B, 5> {
    Tensor::from_data(TensorData::new(bias, [b, 1, 1, t, s]), device)
}

/// The attention masks of one forward pass: the full-attention one and, when the model has
/// sliding-window layers, theirs. Each block picks its own ([`Masks::for_layer`]).
pub(crate) struct Masks<B: Backend> {
    full: Tensor<B, 5>,
    sliding: Option<Tensor<B, 5>>,
    /// For a pass without a cache whose attention may run fused: the rows' lengths and the sliding
    /// layers' window (the masks above say the same as tensors).
    causal: Option<Causal>,
}

/// The mask of a pass as data, for the fused attention: real tokens per row (`None`: all), the window
/// of the sliding layers, and for a pass over a KV cache of right-padded prompts
/// ([`CausalLm::forward_ragged`]) the prompts' width and real lengths.
#[derive(Clone)]
pub(crate) struct Causal {
    lengths: Option<Arc<[usize]>>,
    sliding_window: Option<usize>,
    prompts: Option<(usize, Arc<[usize]>)>,
}

/// [`Causal`] for one block: its window (`None` on full-attention blocks).
#[derive(Clone)]
pub(crate) struct FusedMask {
    lengths: Option<Arc<[usize]>>,
    window: Option<usize>,
    prompts: Option<(usize, Arc<[usize]>)>,
}

impl<B: Backend> Masks<B> {
    /// Builds the full mask with `make(None)` and, if the config has sliding layers, the windowed one
    /// with `make(sliding_window)`.
    fn new(cfg: &ModelConfig, make: impl Fn(Option<usize>) -> Tensor<B, 5>) -> Self {
        let sliding = cfg.layer_types.contains(&LayerType::Sliding).then(|| make(cfg.sliding_window));
        Self { full: make(None), sliding, causal: None }
    }

    /// These masks, also described as data for the fused attention: a pass from position 0 without a
    /// cache (`prompts: None`), or one over a cache of right-padded prompts `(width, real lengths)`.
    fn with_causal(mut self, cfg: &ModelConfig, lengths: Lengths, prompts: Option<(usize, &[usize])>) -> Self {
        self.causal = Some(Causal {
            lengths: lengths.map(Arc::from),
            sliding_window: cfg.sliding_window,
            prompts: prompts.map(|(w, lens)| (w, Arc::from(lens))),
        });
        self
    }

    /// The mask of block kind `kind` as data for the fused attention, when this pass has it.
    fn causal_for_layer(&self, kind: LayerType) -> Option<FusedMask> {
        let c = self.causal.as_ref()?;
        let window = match kind {
            LayerType::Sliding => c.sliding_window,
            _ => None,
        };
        Some(FusedMask { lengths: c.lengths.clone(), window, prompts: c.prompts.clone() })
    }

    fn for_layer(&self, kind: LayerType) -> &Tensor<B, 5> {
        match (kind, &self.sliding) {
            (LayerType::Sliding, Some(s)) => s,
            _ => &self.full,
        }
    }
}

/// Attention bias `[b, 1, 1, t, keys]` for `t` new queries after a cache of `cached` positions laid out
/// as `rows` (right-padded prompts, then tokens shared by every row), the new tokens right-padded by
/// `lengths`. Row `r`'s prompt keys beyond `prompt_lens[r]` and padded new keys are masked; positions
/// (for the window) count real tokens only.
fn ragged_bias<B: Backend>(
    b: usize,
    t: usize,
    cached: usize,
    rows: &RaggedRows,
    lengths: Lengths,
    window: Option<usize>,
    device: &B::Device,
) -> Tensor<B, 5> {
    let keys = cached + t;
    let width = rows.prompt_width;
    let mut bias = vec![0f32; b * t * keys];
    for r in 0..b {
        let p = rows.prompt_lens[r];
        let new = lengths.map_or(t, |l| l[r]);
        for q in 0..t {
            let pos = p + (cached - width) + q;
            for k in 0..keys {
                let (visible, key_pos) = if k < width {
                    (k < p, k)
                } else if k < cached {
                    (true, p + k - width)
                } else {
                    (k - cached <= q && k - cached < new, p + k - width)
                };
                if !(visible && window.is_none_or(|w| pos - key_pos < w)) {
                    bias[(r * t + q) * keys + k] = -1e9;
                }
            }
        }
    }
    expand_bias(bias, b, t, keys, device)
}

/// Fewest padded positions, as a share of all, for which a forward packs its rows: packing costs two
/// row copies per block (and their gradients), which padding below this saves less than.
pub const PACKING_MIN_PADDING: f64 = 0.02;

/// The real positions of right-padded rows: position-wise work runs on them only (see
/// [`CausalLm::with_row_packing`]).
pub(crate) struct Packing<B: Backend> {
    b: usize,
    t: usize,
    n: usize,
    /// `[n]`: the flat index `row · t + position` of each real position, row by row.
    real: Tensor<B, 1, Int>,
    /// `[b · t]`: the packed index each position of the `[b, t]` layout reads (a padded position reads its
    /// row's last real token, or token 0 for an empty row: any real value; masks keep it out of every
    /// real position, and a gradient only reaches it through a loss that reads padding).
    spread: Tensor<B, 1, Int>,
}

impl<B: Backend> Packing<B> {
    /// Whether rows right-padded to `lengths` are padded enough for packing to pay
    /// ([`PACKING_MIN_PADDING`]) and have a real token at all.
    fn worth_it(b: usize, t: usize, lengths: Lengths) -> bool {
        let Some(lengths) = lengths else { return false };
        let n: usize = lengths.iter().map(|&l| l.min(t)).sum();
        n > 0 && ((b * t - n) as f64) >= PACKING_MIN_PADDING * (b * t) as f64
    }

    /// The packing of rows right-padded to `lengths`; `None` where [`worth_it`](Self::worth_it) is not.
    fn new(b: usize, t: usize, lengths: Lengths, device: &B::Device) -> Option<Self> {
        if !Self::worth_it(b, t, lengths) {
            return None;
        }
        let lengths = lengths?;
        assert_eq!(lengths.len(), b, "Packing: {} lengths for {b} rows", lengths.len());
        let n: usize = lengths.iter().map(|&l| l.min(t)).sum();
        let mut real = Vec::with_capacity(n);
        let mut spread = Vec::with_capacity(b * t);
        let mut start = 0usize;
        for (row, &len) in lengths.iter().enumerate() {
            let len = len.min(t);
            real.extend((0..len).map(|p| (row * t + p) as i64));
            spread.extend((0..t).map(|p| if len == 0 { 0 } else { (start + p.min(len - 1)) as i64 }));
            start += len;
        }
        let real = Tensor::from_data(TensorData::new(real, [n]), device);
        let spread = Tensor::from_data(TensorData::new(spread, [b * t]), device);
        Some(Self { b, t, n, real, spread })
    }

    /// `[b, t]` ids → `[1, n]`: the real tokens, row by row.
    fn pack_ids(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 2, Int> {
        ids.reshape([self.b * self.t]).select(0, self.real.clone()).reshape([1, self.n])
    }

    /// `[b, t, d]` → `[1, n, d]`.
    fn pack(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let d = x.dims()[2];
        x.reshape([self.b * self.t, d]).select(0, self.real.clone()).reshape([1, self.n, d])
    }

    /// `[1, n, heads, d]` → `[b, t, heads, d]` (as [`unpack`](Self::unpack)).
    fn unpack_heads(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [_, n, h, d] = x.dims();
        self.unpack(x.reshape([1, n, h * d])).reshape([self.b, self.t, h, d])
    }

    /// `[1, n, d]` → `[b, t, d]` (padded positions: see `spread`).
    fn unpack(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let d = x.dims()[2];
        x.reshape([self.n, d]).select(0, self.spread.clone()).reshape([self.b, self.t, d])
    }
}

impl<B: Backend> Attention<B> {
    /// An attention layer from its projections and norms, with head counts, scale and softcap from
    /// `cfg`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        q_proj: Proj<B>,
        k_proj: Proj<B>,
        v_proj: Proj<B>,
        o_proj: Proj<B>,
        q_norm: Option<RmsNorm<B>>,
        k_norm: Option<RmsNorm<B>>,
        cfg: &ModelConfig,
    ) -> Self {
        let scale = match cfg.query_pre_attn_scalar {
            Some(q) => q.powf(-0.5),
            None => (cfg.head_dim as f64).powf(-0.5),
        };
        Self {
            q_proj,
            k_proj,
            v_proj,
            o_proj,
            q_norm,
            k_norm,
            num_heads: cfg.num_attention_heads,
            num_kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim,
            scale,
            softcap: cfg.attn_logit_softcapping,
        }
    }

    /// `x: [b, t, hidden]` → `[b, t, hidden]` (with `packing`: `[1, n, hidden]` → `[1, n, hidden]`, the
    /// projections on the `[b, t]` layout in between). With `cache`, the new keys/values are appended to
    /// the block's slot and the queries attend over all of them (`bias` covers every key). With `causal`
    /// (`bias` as data: lengths, window, and over a cache the prompts' layout) and f32 products, the
    /// attention runs as one fused op where the backend has it ([`dft_kernels::causal_attention`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RopeTables<B>,
        rotate: &Tensor<B, 2>,
        bias: &Tensor<B, 5>,
        causal: Option<FusedMask>,
        cache: Option<(&mut KvSlot<B>, usize)>,
        packing: Option<&Packing<B>>,
        p: Precision,
    ) -> Tensor<B, 3> {
        // Fused (f32 products, a backend with the op): packed rows stay packed through the projections
        // and the attention; otherwise attention works on the `[b, t]` layout.
        let fused = match (causal, p) {
            (Some(c), Precision::F32) if dft_kernels::fast_path::<B>() => Some(c),
            _ => None,
        };
        let x = match packing {
            Some(pk) if fused.is_none() => pk.unpack(x),
            _ => x,
        };
        let [xb, xt, _] = x.dims();
        let (nh, nkv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        // Heads stay in the projections' layout `[b, t, heads, d]` through QK-norm, RoPE and the KV cache.
        let mut q = self.q_proj.forward_in(x.clone(), p).reshape([xb, xt, nh, d]);
        let mut k = self.k_proj.forward_in(x.clone(), p).reshape([xb, xt, nkv, d]);
        let v = self.v_proj.forward_in(x, p).reshape([xb, xt, nkv, d]);
        if let Some(n) = &self.q_norm {
            q = n.forward(q);
        }
        if let Some(n) = &self.k_norm {
            k = n.forward(k);
        }
        let spec = |f: &FusedMask, cached| dft_kernels::CausalAttention {
            scale: self.scale as f32,
            softcap: self.softcap.map(|c| c as f32),
            window: f.window,
            lengths: f.lengths.clone(),
            rope: Some(rope.rows.clone()),
            packed_width: packing.map(|pk| pk.t),
            cached,
        };
        let unpack = |x: Tensor<B, 4>| match packing {
            Some(pk) => pk.unpack_heads(x),
            None => x,
        };
        // The keys and values the composition below reads: this pass's own, or the slot's first positions.
        enum Kv<T> {
            Own(T, T),
            Slot(T, T, usize),
        }
        let kv = match (fused, cache) {
            // Over a cache of right-padded prompts: the new keys (rotated) and values go into the slot,
            // and the op reads the slot's keys per row by position.
            (Some(f), Some((slot, len))) if f.prompts.is_some() => {
                let (width, prompt_lens) = f.prompts.clone().expect("checked");
                let (kc, vc) = append_to_slot(slot, len, apply_rope(unpack(k), &rope.k, rotate), unpack(v));
                let cached = dft_kernels::CachedKeys { prompt_width: width, prompt_lens, cached: len };
                match dft_kernels::causal_attention(q, kc, vc, &spec(&f, Some(cached))) {
                    // Packed in, packed out.
                    Ok(out) => return self.o_proj.forward_in(out, p),
                    Err((qb, kc, vc)) => {
                        q = unpack(qb);
                        Kv::Slot(kc, vc, len + q.dims()[1])
                    }
                }
            }
            // Without a cache (or capturing one from position 0).
            (Some(f), cache) => {
                let kv = cache.as_ref().map(|_| (k.clone(), v.clone()));
                match dft_kernels::causal_attention(q, k, v, &spec(&f, None)) {
                    Ok(out) => {
                        if let (Some((slot, len)), Some((k, v))) = (cache, kv) {
                            // A captured pass: the cache gets the rotated keys and the values as the
                            // composition below would store them, `[b, kv_heads, t, d]` (gradients flow back).
                            assert_eq!(len, 0, "Attention: a causal pass captures its keys from position 0");
                            let k = apply_rope(unpack(k), &rope.k, rotate);
                            *slot = Some((
                                dft_kernels::permute_contiguous(k, [0, 2, 1, 3]),
                                dft_kernels::permute_contiguous(unpack(v), [0, 2, 1, 3]),
                            ));
                        }
                        return self.o_proj.forward_in(out, p);
                    }
                    Err((qb, kb, vb)) => {
                        q = unpack(qb);
                        let (kb, vb) = (unpack(kb), unpack(vb));
                        match cache {
                            Some((slot, len)) => {
                                let (kc, vc) = append_to_slot(slot, len, apply_rope(kb, &rope.k, rotate), vb);
                                Kv::Slot(kc, vc, len + q.dims()[1])
                            }
                            None => Kv::Own(kb, vb),
                        }
                    }
                }
            }
            (None, Some((slot, len))) => {
                let (kc, vc) = append_to_slot(slot, len, apply_rope(k, &rope.k, rotate), v);
                Kv::Slot(kc, vc, len + xt)
            }
            (None, None) => Kv::Own(k, v),
        };
        let [b, t, _, _] = q.dims();
        let rep = nh / nkv;
        let q = apply_rope(q, &rope.q, rotate);
        // Grouped-query attention without materialising repeated keys: query head `g * rep + r` uses key
        // head `g`; the keys broadcast over `r`. The head transposes are materialised by
        // `permute_contiguous` (on Flex a fast strided copy whose gradient comes back contiguous too;
        // elsewhere the permuted view), and the keys are read transposed by the score matmul.
        let q = dft_kernels::permute_contiguous(q.reshape([b, t, nkv, rep, d]), [0, 2, 3, 1, 4]); // [b, nkv, rep, t, d]
        let (k, v) = match kv {
            Kv::Own(k, v) => {
                let k = apply_rope(k, &rope.k, rotate);
                (
                    dft_kernels::permute_contiguous(k.reshape([b, t, nkv, 1, d]), [0, 2, 3, 1, 4]), // [b, nkv, 1, t, d]
                    dft_kernels::permute_contiguous(v.reshape([b, t, nkv, 1, d]), [0, 2, 3, 1, 4]),
                )
            }
            // The filled positions of the slot as strided views `[b, nkv, 1, s, d]` (the matmul reads strides).
            Kv::Slot(kc, vc, s) => {
                let filled = [0..b, 0..nkv, 0..s, 0..d];
                (kc.slice(filled.clone()).unsqueeze_dim::<5>(2), vc.slice(filled).unsqueeze_dim::<5>(2))
            }
        };
        // kᵀ: [b, nkv, 1, d, s].
        let kt = k.swap_dims(3, 4);
        // softmax(scale·qkᵀ (Gemma-2: softcapped) + mask), one fused op (dft-kernels).
        let spec = SoftmaxSpec { scale: self.scale as f32, softcap: self.softcap.map(|c| c as f32) };
        let probs = dft_kernels::attention_softmax(p.matmul(q, kt), Some(bias.clone()), spec);
        let out = dft_kernels::permute_contiguous(p.matmul(probs, v), [0, 3, 1, 2, 4]).reshape([b, t, nh * d]);
        let out = match packing {
            Some(pk) => pk.pack(out),
            None => out,
        };
        self.o_proj.forward_in(out, p)
    }
}

/// Appends the new rotated keys and values `[b, t, kv_heads, d]` after the slot's first `len` positions and
/// returns the slot's tensors `[b, kv_heads, slots, d]` (slots ≥ `len + t`). Only the new positions are
/// transposed; they go into the slot's free room in place (Flex writes into the slot's own buffer: the
/// slot holds its only reference between steps), or the slot grows by one concatenation when it has no
/// room left.
fn append_to_slot<B: Backend>(
    slot: &mut KvSlot<B>,
    len: usize,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let [b, t, nkv, d] = k.dims();
    let kn = dft_kernels::permute_contiguous(k, [0, 2, 1, 3]); // [b, nkv, t, d]
    let vn = dft_kernels::permute_contiguous(v, [0, 2, 1, 3]);
    let s = len + t;
    let (kc, vc) = match slot.take() {
        Some((pk, pv)) if pk.dims()[2] >= s => {
            let at = [0..b, 0..nkv, len..s, 0..d];
            (pk.slice_assign(at.clone(), kn), pv.slice_assign(at, vn))
        }
        Some((pk, pv)) => {
            let held = [0..b, 0..nkv, 0..len, 0..d];
            (Tensor::cat(vec![pk.slice(held.clone()), kn], 2), Tensor::cat(vec![pv.slice(held), vn], 2))
        }
        None => {
            assert_eq!(len, 0, "Attention: a cache of {len} positions without keys/values");
            (kn, vn)
        }
    };
    *slot = Some((kc.clone(), vc.clone()));
    (kc, vc)
}

impl<B: Backend> Mlp<B> {
    pub fn new(gate_proj: Proj<B>, up_proj: Proj<B>, down_proj: Proj<B>, act: Activation) -> Self {
        Self { gate_proj, up_proj, down_proj, act }
    }

    /// `x: [b, t, hidden]` → `[b, t, hidden]`, the gated activation fused (dft-kernels).
    pub fn forward(&self, x: Tensor<B, 3>, p: Precision) -> Tensor<B, 3> {
        let gate = self.gate_proj.forward_in(x.clone(), p);
        let act = match self.act {
            Activation::Silu => GateAct::Silu,
            Activation::GeluTanh => GateAct::GeluTanh,
        };
        self.down_proj.forward_in(dft_kernels::gated_activation(gate, self.up_proj.forward_in(x, p), act), p)
    }
}

impl<B: Backend> DecoderBlock<B> {
    /// `h_{k-1}` → `h_k`; the block takes its RoPE table and mask by its [`LayerType`].
    pub(crate) fn forward(
        &self,
        h: Tensor<B, 3>,
        ropes: &Ropes<B>,
        masks: &Masks<B>,
        cache: Option<(&mut KvSlot<B>, usize)>,
        packing: Option<&Packing<B>>,
        p: Precision,
    ) -> Tensor<B, 3> {
        let rope = ropes.for_layer(self.layer_type);
        let bias = masks.for_layer(self.layer_type);
        let causal = masks.causal_for_layer(self.layer_type);
        let normed = self.input_layernorm.forward(h.clone());
        let a = self.self_attn.forward(normed, rope, &ropes.rotate_half, bias, causal, cache, packing, p);
        match (&self.pre_feedforward_layernorm, &self.post_feedforward_layernorm) {
            (Some(pre), Some(post)) => {
                let h = h + self.post_attention_layernorm.forward(a);
                let m = self.mlp.forward(pre.forward(h.clone()), p);
                h + post.forward(m)
            }
            _ => {
                let h = h + a;
                let m = self.mlp.forward(self.post_attention_layernorm.forward(h.clone()), p);
                h + m
            }
        }
    }
}

impl<B: Backend> CausalLm<B> {
    /// A model from its parts, computing in f32, without adapters.
    pub fn new(
        embed_tokens: Param<Tensor<B, 2>>,
        layers: Vec<DecoderBlock<B>>,
        norm: RmsNorm<B>,
        lm_head: Option<Param<Tensor<B, 2>>>,
        config: ModelConfig,
    ) -> Self {
        Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            config,
            precision: Precision::F32,
            lora: None,
            row_packing: true,
            fused_attention: true,
        }
    }

    /// The same model computing its matrix products in `precision` (see [`Precision`]).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The same model with row packing on or off (on by default). With it on, a forward over right-padded
    /// rows whose padding is at least [`PACKING_MIN_PADDING`] of the positions runs the embedding, norms,
    /// projections, MLPs and residuals on the real positions only, packed as `[1, n, hidden]`; attention
    /// spreads its input back to the `[b, t]` layout (masks, RoPE and the KV cache are per row) and packs
    /// its output. The returned hidden states are in the `[b, t]` layout either way; their values at
    /// padded positions are unspecified (off: what the pad tokens compute; on: a copy of the row's last
    /// real position) and no gradient reaches the model through them unless a loss reads them.
    pub fn with_row_packing(mut self, on: bool) -> Self {
        self.row_packing = on;
        self
    }

    /// The same model with fused attention on or off (on by default). With it on, every forward (training,
    /// layer selection, alignment, the suffix passes over a shared prefix, scoring, generation over its
    /// KV cache) runs each block's RoPE, scores, masked softmax and weighted values as one op with an
    /// analytic backward where the backend has one (`Flex`, f32 products:
    /// [`dft_kernels::causal_attention`]), multiplying only the keys each query block can see;
    /// elsewhere, and off, the tensor composition.
    pub fn with_fused_attention(mut self, on: bool) -> Self {
        self.fused_attention = on;
        self
    }

    /// Whether a forward over `b` rows of width `t`, right-padded to `lengths`, packs its rows (see
    /// [`with_row_packing`](Self::with_row_packing)).
    pub fn packs_rows(&self, b: usize, t: usize, lengths: Lengths) -> bool {
        self.row_packing && Packing::<B>::worth_it(b, t, lengths)
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Weights one token is multiplied through: `(decoder blocks, LM head)`. A forward costs about two
    /// FLOPs per weight and token (attention scores and element-wise work not counted), which is how
    /// throughput reports count GFLOP/s.
    pub fn matmul_params(&self) -> (usize, usize) {
        let c = &self.config;
        let per_layer = c.hidden_size * c.head_dim * (2 * c.num_attention_heads + 2 * c.num_key_value_heads)
            + 3 * c.hidden_size * c.intermediate_size;
        (per_layer * c.num_hidden_layers, c.hidden_size * c.vocab_size)
    }

    pub fn device(&self) -> B::Device {
        self.embed_tokens.device()
    }

    /// Block 0: token embeddings (Gemma: × sqrt(hidden)). `input_ids: [batch, seq]`.
    pub fn embed(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let h = dft_losses::precision::as_f32(burn::tensor::module::embedding(self.embed_tokens.val(), input_ids));
        if self.config.arch.is_gemma() {
            h * (self.config.hidden_size as f32).sqrt()
        } else {
            h
        }
    }

    /// Run the blocks `1..=spec.upto` on `input_ids` (right-padded by `lengths`) and return the requested
    /// hidden states. Blocks above `upto` are not run (the truncated forward of deep supervision).
    pub fn forward_hidden(
        &self,
        input_ids: Tensor<B, 2, Int>,
        lengths: Lengths,
        spec: &ForwardSpec,
    ) -> HiddenStates<B> {
        self.forward_hidden_capture(input_ids, lengths, spec, 0).0
    }

    /// [`forward_hidden`](Self::forward_hidden) that also returns the keys and values (after RoPE) of
    /// blocks `1..=capture_layers`, as a [`KvCache`] over the whole sequence — for
    /// [`forward_suffix`](Self::forward_suffix), which continues a shared prefix without recomputing it.
    pub fn forward_hidden_capture(
        &self,
        input_ids: Tensor<B, 2, Int>,
        lengths: Lengths,
        spec: &ForwardSpec,
        capture_layers: usize,
    ) -> (HiddenStates<B>, KvCache<B>) {
        let upto = spec.upto.unwrap_or(self.num_layers()).min(self.num_layers());
        let [b, t] = input_ids.dims();
        let device = self.device();
        let rope = Ropes::new(&self.config, &[0], b, t, &device);
        let mut masks = Masks::new(&self.config, |window| attention_bias::<B>(b, t, t, 0, lengths, window, &device));
        if self.fused_attention {
            masks = masks.with_causal(&self.config, lengths, None);
        }
        let packing = if self.row_packing { Packing::new(b, t, lengths, &device) } else { None };
        let packing = packing.as_ref();
        // Packed: `h` is `[1, n, hidden]` (real positions only) until the states are handed out.
        let unpack = |h: Tensor<B, 3>| match packing {
            Some(pk) => pk.unpack(h),
            None => h,
        };
        let mut h = self.embed(match packing {
            Some(pk) => pk.pack_ids(input_ids),
            None => input_ids,
        });
        let mut kept = Vec::with_capacity(spec.keep.len());
        let mut states: Vec<Option<Tensor<B, 3>>> = vec![None; upto + 1];
        if spec.keep.contains(&0) {
            states[0] = Some(h.clone());
        }
        let mut cache = KvCache::new(self.num_layers());
        for (layer, block) in self.layers[..upto].iter().enumerate() {
            let capture = (layer < capture_layers).then(|| (&mut cache.layers[layer], 0));
            h = block.forward(h, &rope, &masks, capture, packing, self.precision);
            if spec.keep.contains(&(layer + 1)) {
                states[layer + 1] = Some(h.clone());
            }
        }
        // A block kept twice (or kept and last) is unpacked once.
        let mut unpacked: Vec<Option<Tensor<B, 3>>> = vec![None; upto + 1];
        for &k in &spec.keep {
            if let Some(s) = states.get(k).and_then(|s| s.clone()) {
                let s = unpacked[k].get_or_insert_with(|| unpack(s)).clone();
                kept.push((k, s));
            }
        }
        let last = match &unpacked[upto] {
            Some(s) => s.clone(),
            None => unpack(h),
        };
        cache.len = t;
        (HiddenStates { kept, last }, cache)
    }

    /// Continue shared prefixes: row `r` of `suffix_ids: [b, s]` (right-padded, `suffix_lengths[r]` real
    /// tokens) follows the first `prefix_lens[r]` tokens of the sequence whose keys/values `prefix` holds
    /// (from [`forward_hidden_capture`](Self::forward_hidden_capture) with at least `upto` layers).
    /// Returns `h_upto` of the suffix tokens: exactly what a forward of `prefix ⊕ suffix` gives at those
    /// positions (causal attention), without recomputing the prefix; gradient flows into the prefix pass.
    pub fn forward_suffix(
        &self,
        prefix: &KvCache<B>,
        prefix_lens: &[usize],
        suffix_ids: Tensor<B, 2, Int>,
        suffix_lengths: &[usize],
        upto: usize,
    ) -> Tensor<B, 3> {
        let mut cache = prefix.clone();
        let rows = RaggedRows { prompt_width: prefix.len, prompt_lens: prefix_lens };
        self.forward_ragged(suffix_ids, Some(suffix_lengths), &mut cache, &rows, upto)
    }

    /// Incremental forward over a cache of right-padded prompts: the first `rows.prompt_width` cached
    /// positions are the prompts (row `r` has `rows.prompt_lens[r]` real tokens, the rest is padding that
    /// no query sees), the cached positions after them are tokens that followed each prompt (all real),
    /// and `input_ids: [b, t]` (right-padded by `lengths`) come next. RoPE positions and the causal /
    /// sliding-window mask are per row, so every row computes what an unpadded forward of its own
    /// sequence gives. Runs blocks `1..=upto`, appends the new keys/values to `cache` (`cache.len += t`)
    /// and returns `h_upto` of the new tokens (before the final norm). Used by
    /// [`forward_suffix`](Self::forward_suffix) and by batched generation ([`crate::generate`]).
    ///
    /// # Panics
    /// When `cache` lacks keys/values for a block that runs.
    pub fn forward_ragged(
        &self,
        input_ids: Tensor<B, 2, Int>,
        lengths: Lengths,
        cache: &mut KvCache<B>,
        rows: &RaggedRows,
        upto: usize,
    ) -> Tensor<B, 3> {
        let [b, t] = input_ids.dims();
        let device = self.device();
        let done = cache.len - rows.prompt_width;
        let offsets: Vec<usize> = rows.prompt_lens.iter().map(|&p| p + done).collect();
        let rope = Ropes::new(&self.config, &offsets, b, t, &device);
        let mut masks =
            Masks::new(&self.config, |window| ragged_bias::<B>(b, t, cache.len, rows, lengths, window, &device));
        if self.fused_attention {
            masks = masks.with_causal(&self.config, lengths, Some((rows.prompt_width, rows.prompt_lens)));
        }
        let packing = if self.row_packing { Packing::new(b, t, lengths, &device) } else { None };
        let mut h = self.embed(match &packing {
            Some(pk) => pk.pack_ids(input_ids),
            None => input_ids,
        });
        let upto = upto.min(self.num_layers());
        for (layer, (block, slot)) in self.layers[..upto].iter().zip(&mut cache.layers).enumerate() {
            assert!(slot.is_some(), "forward_ragged: the cache has no keys/values for block {}", layer + 1);
            h = block.forward(h, &rope, &masks, Some((slot, cache.len)), packing.as_ref(), self.precision);
        }
        cache.len += t;
        match &packing {
            Some(pk) => pk.unpack(h),
            None => h,
        }
    }

    /// Logits `[n, vocab]` of the positions `(row, position)` of `h: [b, t, hidden]` only (final norm,
    /// LM head, softcap): the prompt pass of generation needs the last position of each row, scoring
    /// the positions that predict a continuation token.
    pub fn logits_at(&self, h: Tensor<B, 3>, positions: &[(usize, usize)]) -> Tensor<B, 2> {
        let [b, t, hidden] = h.dims();
        let idx: Vec<i64> = positions
            .iter()
            .map(|&(r, p)| {
                assert!(r < b && p < t, "logits_at: position ({r}, {p}) outside [{b}, {t}]");
                (r * t + p) as i64
            })
            .collect();
        let n = idx.len();
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [n]), &h.device());
        let rows = h.reshape([b * t, hidden]).select(0, idx);
        self.head_2d(self.final_norm(rows, false), false)
    }

    /// Hidden states of every block, `h_0..=h_L` (`h_L` before the final norm).
    pub fn all_hidden_states(&self, input_ids: Tensor<B, 2, Int>, lengths: Lengths) -> Vec<Tensor<B, 3>> {
        let spec = ForwardSpec { upto: None, keep: (0..=self.num_layers()).collect() };
        self.forward_hidden(input_ids, lengths, &spec).kept.into_iter().map(|(_, h)| h).collect()
    }

    /// `h_k`: the output of block k, running blocks 1..=k only.
    pub fn truncated_forward(&self, input_ids: Tensor<B, 2, Int>, lengths: Lengths, k: usize) -> Tensor<B, 3> {
        self.forward_hidden(input_ids, lengths, &ForwardSpec { upto: Some(k), keep: vec![] }).last
    }

    /// The final RMSNorm, optionally with a detached weight.
    pub fn final_norm<const D: usize>(&self, h: Tensor<B, D>, detached: bool) -> Tensor<B, D> {
        self.norm.forward_with(h, detached)
    }

    /// LM head weight as `[hidden, vocab]` (tied: the transposed embeddings), optionally detached.
    pub fn lm_head_weight(&self, detached: bool) -> Tensor<B, 2> {
        let w = match &self.lm_head {
            Some(w) => w.val(),
            None => self.embed_tokens.val().transpose(),
        };
        if detached {
            w.detach()
        } else {
            w
        }
    }

    /// The final logit softcap (Gemma-2; Gemma-3 if configured) (identity otherwise), applied to raw head outputs.
    pub fn softcap_logits<const D: usize>(&self, logits: Tensor<B, D>) -> Tensor<B, D> {
        match self.config.final_logit_softcapping {
            Some(cap) => (logits / cap).tanh() * cap,
            None => logits,
        }
    }

    /// Head on already-normed states `[n, hidden] -> [n, vocab]` (with softcap).
    pub fn head_2d(&self, normed: Tensor<B, 2>, detached: bool) -> Tensor<B, 2> {
        self.softcap_logits(self.precision.matmul(normed, self.lm_head_weight(detached)))
    }

    /// Logit lens `z_k = lm_head(final_norm(h_k))` (Gemma-2: with the final softcap). `detached`: the
    /// norm and head weights take part in the forward pass but receive no gradient.
    pub fn logit_lens(&self, h: Tensor<B, 3>, detached: bool) -> Tensor<B, 3> {
        let [b, t, hd] = h.dims();
        let normed = self.final_norm(h, detached).reshape([b * t, hd]);
        let v = self.config.vocab_size;
        self.head_2d(normed, detached).reshape([b, t, v])
    }

    /// Full forward: logits `[batch, seq, vocab]`.
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>, lengths: Lengths) -> Tensor<B, 3> {
        let h = self.forward_hidden(input_ids, lengths, &ForwardSpec::default()).last;
        self.logit_lens(h, false)
    }

    /// Incremental forward with a KV cache: `input_ids: [batch, new]` at positions `cache.len..`;
    /// returns the logits of the new positions. All rows must be unpadded.
    pub fn forward_cached(&self, input_ids: Tensor<B, 2, Int>, cache: &mut KvCache<B>) -> Tensor<B, 3> {
        let [b, t] = input_ids.dims();
        let offset = cache.len;
        let device = self.device();
        let rope = Ropes::new(&self.config, &[offset], b, t, &device);
        let mut masks =
            Masks::new(&self.config, |window| attention_bias::<B>(b, t, offset + t, offset, None, window, &device));
        if self.fused_attention {
            // Unpadded rows: a cache with empty prompts, every cached position shared.
            masks = masks.with_causal(&self.config, None, Some((0, &vec![0; b])));
        }
        let mut h = self.embed(input_ids);
        for (block, slot) in self.layers.iter().zip(&mut cache.layers) {
            h = block.forward(h, &rope, &masks, Some((slot, offset)), None, self.precision);
        }
        cache.len += t;
        self.logit_lens(h, false)
    }
}

/// The interface of `dft-losses`: our decoders get the whole DFT objective through it.
impl<B: Backend> dft_losses::DeepSupervisionModel<B> for CausalLm<B> {
    fn num_layers(&self) -> usize {
        self.layers.len()
    }

    fn hidden_states(
        &self,
        input_ids: Tensor<B, 2, Int>,
        lengths: &[usize],
        upto: usize,
        keep: &[usize],
    ) -> (Vec<Tensor<B, 3>>, Tensor<B, 3>) {
        let padded = lengths.iter().any(|&l| l != input_ids.dims()[1]);
        let spec = ForwardSpec { upto: Some(upto), keep: keep.to_vec() };
        let out = self.forward_hidden(input_ids, if padded { Some(lengths) } else { None }, &spec);
        (out.kept.into_iter().map(|(_, h)| h).collect(), out.last)
    }

    fn final_norm(&self, h: Tensor<B, 2>, detached: bool) -> Tensor<B, 2> {
        self.norm.forward_with(h, detached)
    }

    fn lm_head(&self, detached: bool) -> Tensor<B, 2> {
        self.lm_head_weight(detached)
    }

    fn final_logit_softcap(&self) -> Option<f64> {
        self.config.final_logit_softcapping
    }

    fn lm_head_is_vocab_major(&self) -> bool {
        self.lm_head.is_none()
    }

    fn precision(&self) -> Precision {
        self.precision
    }

    fn lm_head_trainable(&self) -> bool {
        match &self.lm_head {
            Some(w) => w.is_require_grad(),
            None => self.embed_tokens.is_require_grad(),
        }
    }

    fn hidden_states_sharing_prefix(
        &self,
        input_ids: Tensor<B, 2, Int>,
        lengths: &[usize],
        upto: usize,
        keep: &[usize],
        capture: usize,
    ) -> Option<(Vec<Tensor<B, 3>>, Tensor<B, 3>, dft_losses::PrefixKv<B>)> {
        let padded = lengths.iter().any(|&l| l != input_ids.dims()[1]);
        let spec = ForwardSpec { upto: Some(upto), keep: keep.to_vec() };
        let (out, cache) =
            self.forward_hidden_capture(input_ids, if padded { Some(lengths) } else { None }, &spec, capture);
        Some((out.kept.into_iter().map(|(_, h)| h).collect(), out.last, cache))
    }

    fn suffix_hidden_states(
        &self,
        prefix: &dft_losses::PrefixKv<B>,
        prefix_lens: &[usize],
        suffix_ids: Tensor<B, 2, Int>,
        suffix_lengths: &[usize],
        upto: usize,
    ) -> Option<Tensor<B, 3>> {
        Some(self.forward_suffix(prefix, prefix_lens, suffix_ids, suffix_lengths, upto))
    }
}
