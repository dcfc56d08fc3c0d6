//! One optimiser step of DFT exactly as `dft train` runs it (objective → backward → gradient accumulator
//! → global-norm clipping → AdamW), plus the pieces the step benchmarks share: the batch file format
//! (the same JSON the PyTorch reference `tools/perf/torch_step.py` reads), the methods of issue 8, the
//! ablation paths ("what each change saved"), model configs, a FLOP model and `/proc` memory readings.
//!
//! Used by `benches/step.rs` and `examples/gpu_check.rs` (`use dft_test_support::step as dft_step`).

use burn::module::{Module, Param};
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, ElementConversion, Int, Tensor, TensorData};
use dft_losses::{
    dft_loss, dft_loss_naive, AuxLoss, DeepSupervisionModel, DftBatch, LossComponents, ObjectiveConfig, Sequences,
    IGNORE_INDEX,
};
use dft_models::model::{Attention, DecoderBlock, Mlp, Proj, RmsNorm};
use dft_models::{CausalLm, ModelConfig};
use serde_json::{json, Value};
use std::time::Instant;

/// HuggingFaceTB/SmolLM2-135M(-Instruct) `config.json` (the fields the decoder reads).
pub const SMOLLM2_135M: &str = r#"{
  "model_type": "llama", "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
  "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
  "rope_theta": 100000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": true, "hidden_act": "silu",
  "max_position_embeddings": 8192, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2
}"#;

/// google/gemma-2-2b `config.json` (the fields the decoder reads).
pub const GEMMA2_2B: &str = r#"{
  "model_type": "gemma2", "vocab_size": 256000, "hidden_size": 2304, "intermediate_size": 9216,
  "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
  "query_pre_attn_scalar": 256, "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "sliding_window": 4096,
  "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "hidden_activation": "gelu_pytorch_tanh",
  "hidden_act": "gelu_pytorch_tanh", "tie_word_embeddings": true, "max_position_embeddings": 8192,
  "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0
}"#;

// ---------------------------------------------------------------------------------------------------
// Methods and the ablation paths.

/// The three methods of issue 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Tft,
    DftLogits,
    DftFeature,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::Tft, Method::DftLogits, Method::DftFeature];

    pub fn name(self) -> &'static str {
        match self {
            Method::Tft => "tft",
            Method::DftLogits => "dft-logits",
            Method::DftFeature => "dft-feature",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Method::ALL.into_iter().find(|m| m.name() == s)
    }

    /// The objective: LC at `i`, ET at `j`, weights `alpha`, `beta` (ignored by TFT).
    pub fn objective(self, i: usize, j: usize, alpha: f64, beta: f64) -> ObjectiveConfig {
        let (lc, et) = match self {
            Method::Tft => (AuxLoss::Off, AuxLoss::Off),
            Method::DftLogits => (AuxLoss::Logits, AuxLoss::Logits),
            Method::DftFeature => (AuxLoss::Feature, AuxLoss::Feature),
        };
        if self == Method::Tft {
            return ObjectiveConfig::default();
        }
        ObjectiveConfig { lc, et, lc_layer: i, et_layer: j, alpha, beta, ..Default::default() }
    }

    /// The batch a method needs (TFT rows always; LC/ET rows for logits; English prompts for feature).
    pub fn select(self, full: &DftBatch) -> DftBatch {
        DftBatch {
            main: full.main.clone(),
            lc: if self == Method::DftLogits { full.lc.clone() } else { None },
            et: if self == Method::DftLogits { full.et.clone() } else { None },
            en_prompt: if self == Method::DftFeature { full.en_prompt.clone() } else { None },
        }
    }
}

/// How the loss of a step is computed: the default path and the ablations that undo one saving each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossPath {
    /// `dft_loss`: shared prefix, truncated forwards, logits at labelled rows, chunked CE.
    Default,
    /// `share_prefix: false`: LC/ET rows recompute `P(x_tgt)` (still truncated at i / j).
    NoSharePrefix,
    /// No prefix sharing and no truncation: LC/ET rows run all L blocks (the model is wrapped so that
    /// `hidden_states(.., upto = k, ..)` runs every block and returns `h_k`), as a plain
    /// `output_hidden_states=True` forward would.
    NoTruncation,
    /// `dft_loss_naive`: full-vocabulary logits + `log_softmax` under autodiff instead of the chunked CE.
    NaiveCe,
    /// TFT only: logits at *every* position (`model.forward`), then CE on the labelled ones — what
    /// `model(input_ids, labels=...)` does in transformers.
    FullLogits,
}

impl LossPath {
    pub const ALL: [LossPath; 5] =
        [LossPath::Default, LossPath::NoSharePrefix, LossPath::NoTruncation, LossPath::NaiveCe, LossPath::FullLogits];

    pub fn name(self) -> &'static str {
        match self {
            LossPath::Default => "default",
            LossPath::NoSharePrefix => "no-share-prefix",
            LossPath::NoTruncation => "no-truncation",
            LossPath::NaiveCe => "naive-ce",
            LossPath::FullLogits => "full-logits",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        LossPath::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// A model whose truncated forwards are not truncated: `hidden_states(.., upto, keep)` runs all L blocks
/// and returns `h_upto` (gradient flows only through blocks `1..=upto`, as with the real truncation; the
/// blocks above cost forward work only). No prefix sharing.
pub struct Untruncated<'a, B: Backend>(pub &'a CausalLm<B>);

impl<B: Backend> DeepSupervisionModel<B> for Untruncated<'_, B> {
    fn num_layers(&self) -> usize {
        self.0.num_layers()
    }

    fn hidden_states(
        &self,
        input_ids: Tensor<B, 2, Int>,
        lengths: &[usize],
        upto: usize,
        keep: &[usize],
    ) -> (Vec<Tensor<B, 3>>, Tensor<B, 3>) {
        let l = self.0.num_layers();
        if upto >= l {
            return DeepSupervisionModel::hidden_states(self.0, input_ids, lengths, upto, keep);
        }
        let mut keep2 = keep.to_vec();
        keep2.push(upto);
        let (mut kept, _last) = DeepSupervisionModel::hidden_states(self.0, input_ids, lengths, l, &keep2);
        let h = kept.pop().expect("h_upto");
        (kept, h)
    }

    fn final_norm(&self, h: Tensor<B, 2>, detached: bool) -> Tensor<B, 2> {
        DeepSupervisionModel::final_norm(self.0, h, detached)
    }

    fn lm_head(&self, detached: bool) -> Tensor<B, 2> {
        DeepSupervisionModel::lm_head(self.0, detached)
    }

    fn final_logit_softcap(&self) -> Option<f64> {
        DeepSupervisionModel::final_logit_softcap(self.0)
    }
}

/// TFT the transformers way: logits `[rows, seq, vocab]` at every position, `log_softmax`, then the mean
/// CE over the labelled positions.
fn tft_full_logits<B: Backend>(model: &CausalLm<B>, s: &Sequences, device: &B::Device) -> Tensor<B, 1> {
    let ids: Vec<i64> = s.input_ids.iter().map(|&x| x as i64).collect();
    let ids: Tensor<B, 2, Int> = Tensor::from_data(TensorData::new(ids, [s.rows(), s.seq_len]), device);
    let logits = model.forward(ids, Some(&s.lengths));
    let [r, t, v] = logits.dims();
    let logp = log_softmax(logits.reshape([r * t, v]), 1);
    let (pos, targets) = s.labelled_positions();
    let n = targets.len();
    let idx: Tensor<B, 1, Int> = Tensor::from_data(TensorData::new(pos, [n]), device);
    let tgt: Tensor<B, 2, Int> =
        Tensor::from_data(TensorData::new(targets.iter().map(|&x| x as i64).collect::<Vec<_>>(), [n, 1]), device);
    logp.select(0, idx).gather(1, tgt).sum().neg() / n as f64
}

// ---------------------------------------------------------------------------------------------------
// The step.

/// Wall times of one optimiser step and what it computed.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// Objective forward (including the loss components read back to the host, as the trainer does).
    pub loss_s: f64,
    pub backward_s: f64,
    /// Gradients → params, accumulator, clipping, AdamW update.
    pub optim_s: f64,
    pub components: LossComponents,
    pub grad_norm: f64,
}

impl StepReport {
    pub fn total_s(&self) -> f64 {
        self.loss_s + self.backward_s + self.optim_s
    }

    pub fn to_json(&self) -> Value {
        let c = &self.components;
        json!({
            "total_s": self.total_s(), "loss_s": self.loss_s, "backward_s": self.backward_s, "optim_s": self.optim_s,
            "loss": {"total": c.total, "main": c.main, "lc": c.lc, "et": c.et,
                     "main_tokens": c.main_tokens, "lc_tokens": c.lc_tokens, "et_tokens": c.et_tokens},
            "grad_norm": self.grad_norm,
        })
    }
}

fn sync<B: Backend>(device: &B::Device) {
    B::sync(device).expect("backend sync");
}

/// One optimiser step as `dft_train::train` runs it with `grad_accum = 1` (objective, backward, gradient
/// accumulator, global-norm clipping, AdamW at learning rate `lr`). Returns the updated model.
pub fn optimiser_step<B, O>(
    model: CausalLm<B>,
    optim: &mut O,
    batch: &DftBatch,
    cfg: &ObjectiveConfig,
    path: LossPath,
    lr: f64,
    max_grad_norm: f64,
    device: &B::Device,
) -> (CausalLm<B>, StepReport)
where
    B: AutodiffBackend,
    O: Optimizer<CausalLm<B>, B>,
{
    let t0 = Instant::now();
    let (loss, components) = match path {
        LossPath::Default => {
            let out = dft_loss(&model, batch, cfg, device).expect("objective");
            (out.loss, out.components)
        }
        LossPath::NoSharePrefix => {
            let cfg = ObjectiveConfig { share_prefix: false, ..cfg.clone() };
            let out = dft_loss(&model, batch, &cfg, device).expect("objective");
            (out.loss, out.components)
        }
        LossPath::NoTruncation => {
            let cfg = ObjectiveConfig { share_prefix: false, ..cfg.clone() };
            let out = dft_loss(&Untruncated(&model), batch, &cfg, device).expect("objective");
            (out.loss, out.components)
        }
        LossPath::NaiveCe => {
            let out = dft_loss_naive(&model, batch, cfg, device).expect("objective");
            (out.loss, out.components)
        }
        LossPath::FullLogits => {
            assert!(cfg.lc == AuxLoss::Off && cfg.et == AuxLoss::Off, "full-logits is a TFT-only variant");
            let loss = tft_full_logits(&model, &batch.main, device);
            let main = loss.clone().into_scalar().elem::<f64>();
            let n = batch.main.labelled_positions().1.len();
            (loss, LossComponents { main, main_tokens: n, total: main, ..Default::default() })
        }
    };
    sync::<B>(device);
    let loss_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let grads = loss.backward();
    sync::<B>(device);
    let backward_s = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let mut accumulator = GradientsAccumulator::<CausalLm<B>>::new();
    accumulator.accumulate(&model, GradientsParams::from_grads(grads, &model));
    let mut grads = accumulator.grads();
    let grad_norm = dft_train::clip::clip_global_norm::<B, CausalLm<B>>(&model, &mut grads, max_grad_norm);
    let model = optim.step(lr, model, grads);
    sync::<B>(device);
    let optim_s = t2.elapsed().as_secs_f64();
    (model, StepReport { loss_s, backward_s, optim_s, components, grad_norm })
}

// ---------------------------------------------------------------------------------------------------
// Batches: the JSON both implementations read (the format of tests/fixtures/objective/sequences.json).

pub fn seqs_to_json(s: &Sequences) -> Value {
    json!({
        "seq_len": s.seq_len,
        "input_ids": s.input_ids,
        "labels": s.labels,
        "lengths": s.lengths,
        "prompt_lens": s.prompt_lens,
        "query_spans": s.query_spans.iter()
            .map(|row| row.iter().map(|r| vec![r.start, r.end]).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
    })
}

pub fn seqs_from_json(v: &Value) -> Sequences {
    let nums = |k: &str| -> Vec<i64> {
        v[k].as_array()
            .unwrap_or_else(|| panic!("batch file: `{k}` missing"))
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect()
    };
    Sequences {
        seq_len: v["seq_len"].as_u64().expect("seq_len") as usize,
        input_ids: nums("input_ids").into_iter().map(|x| x as u32).collect(),
        labels: nums("labels"),
        lengths: nums("lengths").into_iter().map(|x| x as usize).collect(),
        prompt_lens: nums("prompt_lens").into_iter().map(|x| x as usize).collect(),
        query_spans: v["query_spans"]
            .as_array()
            .expect("query_spans")
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s[0].as_u64().unwrap() as usize..s[1].as_u64().unwrap() as usize)
                    .collect()
            })
            .collect(),
    }
}

/// `{"main": …, "lc": …, "et": …, "en_prompt": …}` (absent kinds omitted).
pub fn batch_to_json(b: &DftBatch) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("main".into(), seqs_to_json(&b.main));
    for (k, s) in [("lc", &b.lc), ("et", &b.et), ("en_prompt", &b.en_prompt)] {
        if let Some(s) = s {
            m.insert(k.into(), seqs_to_json(s));
        }
    }
    Value::Object(m)
}

pub fn batch_from_json(v: &Value) -> DftBatch {
    let opt = |k: &str| v.get(k).filter(|x| !x.is_null()).map(seqs_from_json);
    DftBatch { main: seqs_from_json(&v["main"]), lc: opt("lc"), et: opt("et"), en_prompt: opt("en_prompt") }
}

/// Real (non-pad) tokens of a kind.
pub fn real_tokens(s: &Sequences) -> usize {
    s.lengths.iter().sum()
}

/// Real tokens over every kind of the batch.
pub fn all_real_tokens(b: &DftBatch) -> usize {
    real_tokens(&b.main)
        + [&b.lc, &b.et, &b.en_prompt].iter().filter_map(|s| s.as_ref()).map(real_tokens).sum::<usize>()
}

/// `"4×127"` shapes of every kind, for the tables.
pub fn shapes(b: &DftBatch) -> Value {
    let mut m = serde_json::Map::new();
    for (k, s) in
        [("main", Some(&b.main)), ("lc", b.lc.as_ref()), ("et", b.et.as_ref()), ("en_prompt", b.en_prompt.as_ref())]
    {
        if let Some(s) = s {
            m.insert(
                k.into(),
                json!({"rows": s.rows(), "seq_len": s.seq_len, "real_tokens": real_tokens(s),
                       "labelled": s.labelled_positions().1.len()}),
            );
        }
    }
    Value::Object(m)
}

/// A synthetic DFT batch of `rows` examples whose TFT rows are about `seq` tokens long: prompt ≈ seq/4
/// (query content in the middle), target answer the rest; LC rows `P(x_tgt) ⊕ x_en` with x_en ≈ seq/8;
/// ET rows `P(x_tgt) ⊕ y_en` with y_en ≈ answer·0.8; English prompts ≈ prompt·0.8. Random ids in
/// `3..vocab`, lengths jittered ±10% by a fixed seed, right-padded with `pad`.
pub fn synthetic_batch(rows: usize, seq: usize, vocab: usize, pad: u32, seed: u64) -> DftBatch {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut jitter = |n: usize| -> usize {
        let spread = (n / 10).max(1) as u64;
        (n as u64 - spread + next() % (2 * spread + 1)).max(4) as usize
    };
    let mut ids_state = seed ^ 0x5555;
    let mut ids = move |n: usize| -> Vec<u32> {
        (0..n)
            .map(|_| {
                ids_state = ids_state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                3 + ((ids_state >> 33) % (vocab as u64 - 3)) as u32
            })
            .collect()
    };
    type Row = (Vec<u32>, usize, std::ops::Range<usize>, usize); // ids, prompt len, query span, labelled from
    let (mut main, mut lc, mut et, mut en) = (Vec::<Row>::new(), vec![], vec![], vec![]);
    for _ in 0..rows {
        let p = jitter(seq / 4).min(seq - 2);
        let q = (p / 8).max(1)..(p - p / 8).clamp(2, p);
        let prompt = ids(p);
        let answer = jitter(seq - seq / 4).min(seq - p).max(1);
        let tft: Vec<u32> = prompt.iter().copied().chain(ids(answer)).collect();
        main.push((tft, p, q.clone(), p));
        let x_en = jitter((seq / 8).max(2));
        lc.push((prompt.iter().copied().chain(ids(x_en)).collect(), p, q.clone(), p));
        let y_en = jitter((answer * 4 / 5).max(2));
        et.push((prompt.iter().copied().chain(ids(y_en)).collect(), p, q.clone(), p));
        let pe = jitter((p * 4 / 5).max(6));
        let qe = (pe / 8).max(1)..(pe - pe / 8).clamp(2, pe);
        en.push((ids(pe), pe, qe, pe));
    }
    let to_seqs = |rows: &[Row]| {
        let seq_len = rows.iter().map(|r| r.0.len()).max().unwrap_or(1);
        let mut s = Sequences { seq_len, ..Default::default() };
        for (ids, p, q, from) in rows {
            let n = ids.len();
            s.input_ids.extend(ids.iter().copied().chain(std::iter::repeat_n(pad, seq_len - n)));
            s.labels.extend((0..seq_len).map(|t| if t >= *from && t < n { ids[t] as i64 } else { IGNORE_INDEX }));
            s.lengths.push(n);
            s.prompt_lens.push(*p);
            s.query_spans.push(vec![q.clone()]);
        }
        s
    };
    DftBatch { main: to_seqs(&main), lc: Some(to_seqs(&lc)), et: Some(to_seqs(&et)), en_prompt: Some(to_seqs(&en)) }
}

// ---------------------------------------------------------------------------------------------------
// Models with random weights generated on the device (no host round trip: fast for billions of weights).

pub fn random_on_device<B: Backend>(config: ModelConfig, device: &B::Device) -> CausalLm<B> {
    let normal =
        |shape: [usize; 2]| Param::from_tensor(Tensor::<B, 2>::random(shape, Distribution::Normal(0.0, 0.02), device));
    let gemma = config.arch.is_gemma();
    let norm = |n: usize| RmsNorm {
        weight: Param::from_tensor(Tensor::<B, 1>::full([n], if gemma { 0.0 } else { 1.0 }, device)),
        eps: config.rms_norm_eps,
        unit_offset: gemma,
    };
    let (h, nh, nkv, d, inter) = (
        config.hidden_size,
        config.num_attention_heads,
        config.num_key_value_heads,
        config.head_dim,
        config.intermediate_size,
    );
    let proj = |i: usize, o: usize, bias: bool| {
        Proj::new(normal([i, o]), bias.then(|| Param::from_tensor(Tensor::<B, 1>::zeros([o], device))))
    };
    let layers = (0..config.num_hidden_layers)
        .map(|l| DecoderBlock {
            input_layernorm: norm(h),
            self_attn: Attention::new(
                proj(h, nh * d, config.attention_bias),
                proj(h, nkv * d, config.attention_bias),
                proj(h, nkv * d, config.attention_bias),
                proj(nh * d, h, config.attention_bias),
                config.arch.has_qk_norm().then(|| norm(d)),
                config.arch.has_qk_norm().then(|| norm(d)),
                &config,
            ),
            post_attention_layernorm: norm(h),
            pre_feedforward_layernorm: gemma.then(|| norm(h)),
            post_feedforward_layernorm: gemma.then(|| norm(h)),
            mlp: Mlp::new(
                proj(h, inter, config.mlp_bias),
                proj(h, inter, config.mlp_bias),
                proj(inter, h, config.mlp_bias),
                config.hidden_act,
            ),
            layer_type: config.layer_types[l],
        })
        .collect();
    let lm_head = (!config.tie_word_embeddings).then(|| normal([h, config.vocab_size]));
    CausalLm::new(normal([config.vocab_size, h]), layers, norm(h), lm_head, config)
}

/// Parameters of the model (all of them, embeddings included).
pub fn num_params<B: Backend>(model: &CausalLm<B>) -> usize {
    model.num_params()
}

// ---------------------------------------------------------------------------------------------------
// FLOP model.

/// Training FLOPs of one DFT step, the usual way (2 FLOPs per multiply-add, backward = 2× forward).
/// Counted on real (non-pad) tokens:
/// - decoder blocks: 6·P_block per token per block run (P_block = the block's matrix weights);
/// - attention scores and values: 12·heads·head_dim·ctx per token per block, ctx = the keys a causal
///   token attends to (position + 1, window-capped; the prefix for LC/ET suffix rows);
/// - LM head: 6·hidden·vocab per labelled row of the main CE; 4·hidden·vocab per labelled row of a lens
///   CE (frozen head: no weight gradient);
/// - the embedding lookup and its scatter-add gradient, norms, softmax and element-wise ops: not counted.
///
/// Returns the total and a breakdown.
pub fn dft_step_flops(config: &ModelConfig, batch: &DftBatch, cfg: &ObjectiveConfig) -> (f64, Value) {
    let (h, nh, nkv, d, inter, v) = (
        config.hidden_size as f64,
        config.num_attention_heads as f64,
        config.num_key_value_heads as f64,
        config.head_dim as f64,
        config.intermediate_size as f64,
        config.vocab_size as f64,
    );
    let l = config.num_hidden_layers;
    let p_block = h * nh * d * 2.0 + h * nkv * d * 2.0 + 3.0 * h * inter;
    let window = config.sliding_window.unwrap_or(usize::MAX);
    // Sum of causal contexts of `n` tokens that continue a prefix of `p` tokens.
    let ctx = |p: usize, n: usize| -> f64 { (0..n).map(|q| (p + q + 1).min(window) as f64).sum() };
    let blocks = |tokens: f64, ctx_sum: f64, k: usize| k as f64 * (6.0 * p_block * tokens + 12.0 * nh * d * ctx_sum);
    let s = &batch.main;
    let main_tokens = real_tokens(s) as f64;
    let main_ctx: f64 = s.lengths.iter().map(|&n| ctx(0, n)).sum();
    let main_labelled = s.labelled_positions().1.len() as f64;
    let main_blocks = blocks(main_tokens, main_ctx, l);
    let main_head = 6.0 * h * v * main_labelled;
    let mut parts = serde_json::Map::new();
    parts.insert("main_blocks".into(), json!(main_blocks));
    parts.insert("main_head".into(), json!(main_head));
    let mut total = main_blocks + main_head;
    for (name, mode, k, seqs) in [("lc", cfg.lc, cfg.lc_layer, &batch.lc), ("et", cfg.et, cfg.et_layer, &batch.et)] {
        if mode != AuxLoss::Logits {
            continue;
        }
        let Some(a) = seqs else { continue };
        // Shared prefix: only the suffix tokens run (over the prompt's keys).
        let (mut tok, mut cx) = (0.0, 0.0);
        for r in 0..a.rows() {
            let (p, n) = (a.prompt_lens[r], a.lengths[r]);
            let suffix = if cfg.share_prefix { n - p } else { n };
            tok += suffix as f64;
            cx += if cfg.share_prefix { ctx(p, n - p) } else { ctx(0, n) };
        }
        let f_blocks = blocks(tok, cx, k);
        let f_head = 4.0 * h * v * a.labelled_positions().1.len() as f64;
        parts.insert(format!("{name}_blocks"), json!(f_blocks));
        parts.insert(format!("{name}_head"), json!(f_head));
        total += f_blocks + f_head;
    }
    if cfg.lc == AuxLoss::Feature || cfg.et == AuxLoss::Feature {
        if let Some(en) = &batch.en_prompt {
            let upto = if cfg.et == AuxLoss::Feature { l } else { cfg.lc_layer };
            let cx: f64 = en.lengths.iter().map(|&n| ctx(0, n)).sum();
            let f = blocks(real_tokens(en) as f64, cx, upto);
            parts.insert("en_prompt_blocks".into(), json!(f));
            total += f;
        }
    }
    parts.insert("p_block".into(), json!(p_block));
    (total, Value::Object(parts))
}

pub use crate::sys::{loadavg, median, proc_status_mib};
