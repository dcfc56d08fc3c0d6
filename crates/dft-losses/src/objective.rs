//! The DFT objective (METHOD.md §3): `L = L_TFT + α·L_LC + β·L_ET`, with LC and ET each off, on the
//! logit lens (`logits`) or on pooled hidden states (`feature`).
//!
//! One step, in the order it runs:
//! 1. main pass on `P(x_tgt) ⊕ y_tgt` through all L blocks → CE on `y_tgt` (logits only at labelled rows);
//!    the same pass keeps `h_i` / `h_j` for the feature losses (`P(x_tgt)` is its prefix, so with causal
//!    attention those states are exactly those of `P(x_tgt)` alone);
//! 2. LC-logits: `P(x_tgt) ⊕ x_en` through blocks 1..=i only → CE of the lens `z_i` on `x_en`;
//! 3. ET-logits: `P(x_tgt) ⊕ y_en` through blocks 1..=j only → CE of `z_j` on `y_en`;
//! 4. feature losses: `P(x_en)` through blocks 1..=i (LC) or all L (ET) → `1 − cos` of pooled states.
//!
//! The lens losses use the final norm and LM head with detached weights: they shape blocks 1..k and the
//! embeddings only.

use crate::batch::{DftBatch, Sequences};
use crate::cross_entropy::{chunked_ce_sum, chunked_ce_sum_forward, ChunkOptions};
use crate::error::{LossError, Result};
use crate::model::DeepSupervisionModel;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Form of an auxiliary (LC or ET) loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuxLoss {
    #[default]
    Off,
    /// Cross-entropy of the logit lens at the layer (Eq. 4 / Eq. 6).
    Logits,
    /// `1 − cos` between pooled hidden states (Eq. 5 / Eq. 7).
    Feature,
}

/// How hidden states of a prompt are pooled for the feature losses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mean over the query-content tokens (instruction + input, not the template). The default.
    #[default]
    QueryMean,
    /// Mean over the whole prompt.
    PromptMean,
    /// The last prompt token.
    LastPromptToken,
}

/// Which losses to compute and how to weigh them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectiveConfig {
    pub lc: AuxLoss,
    pub et: AuxLoss,
    /// Layer i of Language Conversion (1..=L).
    pub lc_layer: usize,
    /// Layer j of English Thinking (1..=L).
    pub et_layer: usize,
    /// Weight α of L_LC.
    pub alpha: f64,
    /// Weight β of L_ET.
    pub beta: f64,
    pub pooling: Pooling,
    /// Treat the English side of the feature losses as a fixed teacher (no gradient through it).
    pub english_stop_grad: bool,
    #[serde(skip)]
    pub chunk: ChunkOptions,
}

impl Default for ObjectiveConfig {
    /// Plain TFT (no auxiliary loss), α = β = 1.
    fn default() -> Self {
        Self {
            lc: AuxLoss::Off,
            et: AuxLoss::Off,
            lc_layer: 1,
            et_layer: 1,
            alpha: 1.0,
            beta: 1.0,
            pooling: Pooling::QueryMean,
            english_stop_grad: false,
            chunk: ChunkOptions::default(),
        }
    }
}

impl ObjectiveConfig {
    /// Check layer indices against the model depth and the weights.
    pub fn validate(&self, num_layers: usize) -> Result<()> {
        for (which, on, layer) in
            [("LC", self.lc != AuxLoss::Off, self.lc_layer), ("ET", self.et != AuxLoss::Off, self.et_layer)]
        {
            if on && (layer == 0 || layer > num_layers) {
                return Err(LossError::LayerOutOfRange { which, layer, num_layers });
            }
        }
        for (name, value) in [("alpha", self.alpha), ("beta", self.beta)] {
            if !value.is_finite() || value < 0.0 {
                return Err(LossError::BadWeight { name, value });
            }
        }
        Ok(())
    }
}

/// Every component, as plain numbers for logging (means over the batch).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LossComponents {
    /// L_TFT (or L_SFT): mean CE over the labelled tokens of the main sequences.
    pub main: f64,
    pub main_tokens: usize,
    /// L_LC (unweighted), if on.
    pub lc: Option<f64>,
    /// Labelled tokens of LC-logits (0 for feature mode).
    pub lc_tokens: usize,
    /// L_ET (unweighted), if on.
    pub et: Option<f64>,
    pub et_tokens: usize,
    /// `main + α·lc + β·et`.
    pub total: f64,
}

/// The differentiable total and its components.
#[derive(Debug, Clone)]
pub struct ObjectiveOutput<B: Backend> {
    pub loss: Tensor<B, 1>,
    pub components: LossComponents,
}

/// `(x, w, targets, softcap, chunking, head takes gradient) -> summed CE`.
type CeFn<B> = fn(Tensor<B, 2>, Tensor<B, 2>, &[u32], Option<f64>, ChunkOptions, bool) -> Tensor<B, 1>;

fn scalar<B: Backend>(t: &Tensor<B, 1>) -> f64 {
    t.clone().into_scalar().elem::<f64>()
}

fn ids_tensor<B: Backend>(s: &Sequences, device: &B::Device) -> Tensor<B, 2, Int> {
    let ids: Vec<i64> = s.input_ids.iter().map(|&x| x as i64).collect();
    Tensor::from_data(TensorData::new(ids, [s.rows(), s.seq_len]), device)
}

/// Mean CE through the (optionally detached) final norm + head over the labelled rows of `h`.
fn lm_loss<B: Backend, M: DeepSupervisionModel<B>>(
    model: &M,
    h: Tensor<B, 3>,
    seqs: &Sequences,
    detached: bool,
    chunk: ChunkOptions,
    ce: CeFn<B>,
) -> (Tensor<B, 1>, usize) {
    let device = h.device();
    let (pos, targets) = seqs.labelled_positions();
    if pos.is_empty() {
        return (Tensor::zeros([1], &device), 0);
    }
    let [r, t, hd] = h.dims();
    let idx: Tensor<B, 1, Int> = Tensor::from_data(TensorData::new(pos, [targets.len()]), &device);
    let rows = h.reshape([r * t, hd]).select(0, idx);
    let x = model.final_norm(rows, detached);
    let sum = ce(x, model.lm_head(detached), &targets, model.final_logit_softcap(), chunk, !detached);
    (sum / targets.len() as f64, targets.len())
}

/// Pooling weights `[rows, seq_len]` (each row sums to 1) for the prompts of `seqs`.
fn pool_weights(seqs: &Sequences, pooling: Pooling, what: &'static str) -> Result<Vec<f32>> {
    let mut w = vec![0f32; seqs.rows() * seqs.seq_len];
    for r in 0..seqs.rows() {
        let p = seqs.prompt_lens[r];
        let spans = match pooling {
            Pooling::QueryMean => seqs.query_spans[r].clone(),
            Pooling::PromptMean => vec![0..p],
            Pooling::LastPromptToken => vec![p.saturating_sub(1)..p],
        };
        let n: usize = spans.iter().map(|s| s.len()).sum();
        if n == 0 {
            return Err(LossError::EmptyPoolSpan { what, row: r });
        }
        let inv = 1.0 / n as f32;
        for t in spans.into_iter().flatten() {
            w[r * seqs.seq_len + t] = inv;
        }
    }
    Ok(w)
}

/// `[rows, seq, hidden] -> [rows, hidden]` with the given weights.
fn pool<B: Backend>(h: Tensor<B, 3>, weights: &[f32]) -> Tensor<B, 2> {
    let [r, t, hd] = h.dims();
    let w: Tensor<B, 3> = Tensor::from_data(TensorData::new(weights.to_vec(), [r, 1, t]), &h.device());
    w.matmul(h).reshape([r, hd])
}

/// Mean over rows of `1 − cos(a, b)`, with PyTorch's `cosine_similarity` epsilon (1e-8).
pub fn cosine_loss<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 1> {
    let dot = (a.clone() * b.clone()).sum_dim(1);
    let na = (a.clone() * a).sum_dim(1);
    let nb = (b.clone() * b).sum_dim(1);
    let denom = (na * nb).sqrt().clamp_min(1e-8);
    let cos = dot / denom;
    cos.neg().add_scalar(1.0).mean().reshape([1])
}

fn objective_with<B: Backend, M: DeepSupervisionModel<B>>(
    model: &M,
    batch: &DftBatch,
    cfg: &ObjectiveConfig,
    ce: CeFn<B>,
    device: &B::Device,
) -> Result<ObjectiveOutput<B>> {
    let l = model.num_layers();
    cfg.validate(l)?;
    batch.main.validate("main sequences")?;
    let rows = batch.main.rows();
    let need = |s: &Option<Sequences>, name: &'static str| -> Result<Sequences> {
        let s = s.clone().ok_or(LossError::MissingSequences(name))?;
        s.validate(name)?;
        if s.rows() != rows {
            return Err(LossError::BadBatch {
                what: name,
                msg: format!("{} rows, the main sequences have {rows}", s.rows()),
            });
        }
        Ok(s)
    };
    let (i, j) = (cfg.lc_layer, cfg.et_layer);
    let mut keep = Vec::new();
    if cfg.lc == AuxLoss::Feature {
        keep.push(i);
    }
    if cfg.et == AuxLoss::Feature {
        keep.push(j);
    }
    // 1. main pass
    let (kept, h_last) = model.hidden_states(ids_tensor::<B>(&batch.main, device), &batch.main.lengths, l, &keep);
    let (main, main_tokens) = lm_loss(model, h_last, &batch.main, false, cfg.chunk, ce);
    let mut total = main.clone();
    let mut comps = LossComponents { main: scalar(&main), main_tokens, ..Default::default() };

    // 4. feature losses share one English pass.
    if cfg.lc == AuxLoss::Feature || cfg.et == AuxLoss::Feature {
        let en = need(&batch.en_prompt, "English prompts P(x_en)")?;
        let w_tgt = pool_weights(&batch.main, cfg.pooling, "main sequences")?;
        let w_en = pool_weights(&en, cfg.pooling, "English prompts P(x_en)")?;
        let upto = if cfg.et == AuxLoss::Feature { l } else { i };
        let en_keep: Vec<usize> = if cfg.lc == AuxLoss::Feature { vec![i] } else { vec![] };
        let (en_kept, en_last) = model.hidden_states(ids_tensor::<B>(&en, device), &en.lengths, upto, &en_keep);
        let teacher = |t: Tensor<B, 2>| if cfg.english_stop_grad { t.detach() } else { t };
        let mut kept = kept.into_iter();
        if cfg.lc == AuxLoss::Feature {
            let tgt = pool(kept.next().expect("h_i kept"), &w_tgt);
            let eng = teacher(pool(en_kept[0].clone(), &w_en));
            let lc = cosine_loss(eng, tgt);
            comps.lc = Some(scalar(&lc));
            total = total + lc * cfg.alpha;
        }
        if cfg.et == AuxLoss::Feature {
            let tgt = pool(kept.next().expect("h_j kept"), &w_tgt);
            let eng = teacher(pool(en_last, &w_en));
            let et = cosine_loss(eng, tgt);
            comps.et = Some(scalar(&et));
            total = total + et * cfg.beta;
        }
    }
    // 2. LC-logits
    if cfg.lc == AuxLoss::Logits {
        let s = need(&batch.lc, "LC sequences P(x_tgt)+x_en")?;
        let (_, h_i) = model.hidden_states(ids_tensor::<B>(&s, device), &s.lengths, i, &[]);
        let (lc, n) = lm_loss(model, h_i, &s, true, cfg.chunk, ce);
        comps.lc = Some(scalar(&lc));
        comps.lc_tokens = n;
        total = total + lc * cfg.alpha;
    }
    // 3. ET-logits
    if cfg.et == AuxLoss::Logits {
        let s = need(&batch.et, "ET sequences P(x_tgt)+y_en")?;
        let (_, h_j) = model.hidden_states(ids_tensor::<B>(&s, device), &s.lengths, j, &[]);
        let (et, n) = lm_loss(model, h_j, &s, true, cfg.chunk, ce);
        comps.et = Some(scalar(&et));
        comps.et_tokens = n;
        total = total + et * cfg.beta;
    }
    comps.total = comps.main + cfg.alpha * comps.lc.unwrap_or(0.0) + cfg.beta * comps.et.unwrap_or(0.0);
    Ok(ObjectiveOutput { loss: total, components: comps })
}

/// The training objective (differentiable; memory-lean CE with its exact gradient).
pub fn dft_loss<B: AutodiffBackend, M: DeepSupervisionModel<B>>(
    model: &M,
    batch: &DftBatch,
    cfg: &ObjectiveConfig,
    device: &B::Device,
) -> Result<ObjectiveOutput<B>> {
    objective_with(model, batch, cfg, chunked_ce_sum::<B>, device)
}

/// The same objective for evaluation on any backend (no gradient; chunked forward CE).
pub fn dft_loss_eval<B: Backend, M: DeepSupervisionModel<B>>(
    model: &M,
    batch: &DftBatch,
    cfg: &ObjectiveConfig,
    device: &B::Device,
) -> Result<ObjectiveOutput<B>> {
    objective_with(model, batch, cfg, chunked_ce_sum_forward::<B>, device)
}

/// The objective with the naive (full-logits) cross-entropy: the reference the chunked path is tested
/// and benchmarked against.
pub fn dft_loss_naive<B: Backend, M: DeepSupervisionModel<B>>(
    model: &M,
    batch: &DftBatch,
    cfg: &ObjectiveConfig,
    device: &B::Device,
) -> Result<ObjectiveOutput<B>> {
    fn naive<B: Backend>(
        x: Tensor<B, 2>,
        w: Tensor<B, 2>,
        t: &[u32],
        cap: Option<f64>,
        _: ChunkOptions,
        _: bool,
    ) -> Tensor<B, 1> {
        crate::cross_entropy::naive_ce_sum(x, w, t, cap)
    }
    objective_with(model, batch, cfg, naive::<B>, device)
}
