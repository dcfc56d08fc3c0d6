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
use crate::model::{DeepSupervisionModel, PrefixKv};
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
    /// Compute the prompt `P(x_tgt)` shared by the TFT, LC and ET rows once (when the model supports
    /// it): the LC/ET-logits passes then run only their suffix over the main pass's keys/values.
    /// Same values and gradients; less work.
    pub share_prefix: bool,
    #[serde(skip)]
    pub chunk: ChunkOptions,
    /// Multipliers of the three terms in the differentiable total (the components stay unscaled).
    /// A data-parallel peer passes its share of the global batch ([`TermCounts::share_of`]): summed
    /// over peers, the gradients are then those of the whole batch. All `1` = this batch alone.
    #[serde(skip)]
    pub scale: TermScale,
}

/// Multipliers of `L_TFT`, `L_LC` and `L_ET` (see [`ObjectiveConfig::scale`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TermScale {
    pub main: f64,
    pub lc: f64,
    pub et: f64,
}

impl Default for TermScale {
    fn default() -> Self {
        Self { main: 1.0, lc: 1.0, et: 1.0 }
    }
}

/// What each term of the objective averages over in a batch: labelled tokens for the cross-entropies
/// (`main`, LC/ET-logits), examples for the feature losses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TermCounts {
    pub main: usize,
    pub lc: usize,
    pub et: usize,
}

impl TermCounts {
    /// The counts of `batch` under `cfg` (plain numbers; no tensor work).
    pub fn of(batch: &DftBatch, cfg: &ObjectiveConfig) -> Self {
        let labelled = |s: &Option<Sequences>| s.as_ref().map_or(0, |s| s.labelled_positions().1.len());
        let term = |aux: AuxLoss, s: &Option<Sequences>| match aux {
            AuxLoss::Off => 0,
            AuxLoss::Logits => labelled(s),
            AuxLoss::Feature => batch.main.rows(),
        };
        Self { main: batch.main.labelled_positions().1.len(), lc: term(cfg.lc, &batch.lc), et: term(cfg.et, &batch.et) }
    }

    /// This part's share of `whole` for each term (0 where the whole has none): the scale that makes
    /// a term's mean over this part count as its part of the mean over the whole.
    pub fn share_of(&self, whole: &TermCounts) -> TermScale {
        let share = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        TermScale { main: share(self.main, whole.main), lc: share(self.lc, whole.lc), et: share(self.et, whole.et) }
    }
}

/// `t · s`, leaving `t` untouched when `s` is 1 (the single-device path stays bit for bit the same).
fn scaled<B: Backend>(t: Tensor<B, 1>, s: f64) -> Tensor<B, 1> {
    if s == 1.0 {
        t
    } else {
        t * s
    }
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
            share_prefix: true,
            chunk: ChunkOptions::default(),
            scale: TermScale::default(),
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

/// The rows of `a` then those of `b`, right-padded to the longer width (pad id 0, never read: lengths
/// mark it), and their lengths.
fn stacked_ids<B: Backend>(a: &Sequences, b: &Sequences, device: &B::Device) -> (Tensor<B, 2, Int>, Vec<usize>) {
    let width = a.seq_len.max(b.seq_len);
    let mut ids = vec![0i64; (a.rows() + b.rows()) * width];
    for (r, (s, row)) in (0..a.rows()).map(|r| (a, r)).chain((0..b.rows()).map(|r| (b, r))).enumerate() {
        for (t, &x) in s.input_ids[row * s.seq_len..(row + 1) * s.seq_len].iter().enumerate() {
            ids[r * width + t] = x as i64;
        }
    }
    let lengths = a.lengths.iter().chain(&b.lengths).copied().collect();
    (Tensor::from_data(TensorData::new(ids, [a.rows() + b.rows(), width]), device), lengths)
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
    let chunk =
        ChunkOptions { head_vocab_major: model.lm_head_is_vocab_major(), precision: model.precision(), ..chunk };
    // A frozen head (LoRA, possibly stored in bf16) is passed detached: no head gradient is computed.
    let head_grad = !detached && model.lm_head_trainable();
    let sum = ce(x, model.lm_head(!head_grad), &targets, model.final_logit_softcap(), chunk, head_grad);
    (sum / targets.len() as f64, targets.len())
}

/// Whether every row of `aux` starts with the prompt of the same row of `main`.
fn shares_prompt(main: &Sequences, aux: &Sequences) -> bool {
    main.rows() == aux.rows()
        && (0..main.rows()).all(|r| {
            let p = main.prompt_lens[r];
            aux.prompt_lens[r] == p
                && aux.lengths[r] > p
                && main.input_ids[r * main.seq_len..r * main.seq_len + p]
                    == aux.input_ids[r * aux.seq_len..r * aux.seq_len + p]
        })
}

/// The hidden rows `[n, hidden]` at block `k` that predict the labelled tokens of `aux` and their
/// targets, computing only `aux`'s suffix (after the shared prompt) over the main pass's keys/values:
/// the first supervised token is predicted from the main pass's last prompt position (`h_main_k`), the
/// others from the suffix pass. `None` if the model cannot continue a prefix.
fn shared_prefix_rows<B: Backend, M: DeepSupervisionModel<B>>(
    model: &M,
    prefix: &PrefixKv<B>,
    main: &Sequences,
    aux: &Sequences,
    k: usize,
    h_main_k: Tensor<B, 3>,
    device: &B::Device,
) -> Option<(Tensor<B, 2>, Vec<u32>)> {
    let rows = aux.rows();
    let p = &main.prompt_lens;
    let suffix_lens: Vec<usize> = (0..rows).map(|r| aux.lengths[r] - p[r]).collect();
    let smax = suffix_lens.iter().copied().max().unwrap_or(1).max(1);
    let mut ids = vec![0i64; rows * smax];
    for r in 0..rows {
        for q in 0..suffix_lens[r] {
            ids[r * smax + q] = aux.input_ids[r * aux.seq_len + p[r] + q] as i64;
        }
    }
    let ids: Tensor<B, 2, Int> = Tensor::from_data(TensorData::new(ids, [rows, smax]), device);
    let h_suffix = model.suffix_hidden_states(prefix, p, ids, &suffix_lens, k)?;
    let (mut from_main, mut t_main, mut from_suffix, mut t_suffix) = (vec![], vec![], vec![], vec![]);
    for r in 0..rows {
        let label = |pos: usize| aux.labels[r * aux.seq_len + pos];
        if label(p[r]) != crate::batch::IGNORE_INDEX {
            from_main.push((r * main.seq_len + p[r] - 1) as i64);
            t_main.push(label(p[r]) as u32);
        }
        for q in 0..suffix_lens[r].saturating_sub(1) {
            let y = label(p[r] + q + 1);
            if y != crate::batch::IGNORE_INDEX {
                from_suffix.push((r * smax + q) as i64);
                t_suffix.push(y as u32);
            }
        }
    }
    let hd = h_suffix.dims()[2];
    let mut parts = Vec::new();
    if !from_main.is_empty() {
        let n = from_main.len();
        let idx: Tensor<B, 1, Int> = Tensor::from_data(TensorData::new(from_main, [n]), device);
        parts.push(h_main_k.reshape([rows * main.seq_len, hd]).select(0, idx));
    }
    if !from_suffix.is_empty() {
        let n = from_suffix.len();
        let idx: Tensor<B, 1, Int> = Tensor::from_data(TensorData::new(from_suffix, [n]), device);
        parts.push(h_suffix.reshape([rows * smax, hd]).select(0, idx));
    }
    t_main.extend(t_suffix);
    if parts.is_empty() {
        return Some((Tensor::zeros([0, hd], device), t_main));
    }
    Some((Tensor::cat(parts, 0), t_main))
}

/// Pooling weights `[rows, seq_len]` (each row sums to 1) for the prompts of `seqs`.
fn pool_weights(seqs: &Sequences, pooling: Pooling, what: &'static str) -> Result<Vec<f32>> {
    let mut w = vec![0f32; seqs.rows() * seqs.seq_len];
    for r in 0..seqs.rows() {
        let p = seqs.prompt_lens[r];
        let spans = match pooling {
            Pooling::QueryMean => seqs.query_spans[r].clone(),
            Pooling::PromptMean => std::iter::once(0..p).collect(),
            Pooling::LastPromptToken => std::iter::once(p.saturating_sub(1)..p).collect(),
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
    dft_kernels::matmul(w, h).reshape([r, hd])
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
    // Padding after every row's last real token is read by no loss: run no pass over it.
    let trimmed = batch.trim_padding();
    let batch: &DftBatch = &trimmed;
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
    // LC/ET-logits rows that start with the main rows' prompt can continue the main pass (shared prefix).
    let mut lens_jobs: Vec<(&'static str, usize, Sequences, bool)> = Vec::new();
    if cfg.lc == AuxLoss::Logits {
        let s = need(&batch.lc, "LC sequences P(x_tgt)+x_en")?;
        let shared = cfg.share_prefix && shares_prompt(&batch.main, &s);
        lens_jobs.push(("lc", i, s, shared));
    }
    if cfg.et == AuxLoss::Logits {
        let s = need(&batch.et, "ET sequences P(x_tgt)+y_en")?;
        let shared = cfg.share_prefix && shares_prompt(&batch.main, &s);
        lens_jobs.push(("et", j, s, shared));
    }
    let capture = lens_jobs.iter().filter(|job| job.3).map(|job| job.1).max().unwrap_or(0);
    for job in lens_jobs.iter().filter(|job| job.3) {
        keep.push(job.1);
    }
    // 1. main pass. With ET in feature form (the English prompts go through every block too), the
    // teacher taking gradients and no prefix to capture, the English rows ride along: one pass over both
    // row sets (rows are independent: the same values) with larger products and one gradient per weight.
    let feature = cfg.lc == AuxLoss::Feature || cfg.et == AuxLoss::Feature;
    let ride_along = cfg.et == AuxLoss::Feature && !cfg.english_stop_grad && capture == 0;
    let mut en_pass: Option<(Vec<Tensor<B, 3>>, Tensor<B, 3>)> = None;
    let (kept, h_last, prefix) = if ride_along {
        let en = need(&batch.en_prompt, "English prompts P(x_en)")?;
        let (bm, tm, be, te) = (batch.main.rows(), batch.main.seq_len, en.rows(), en.seq_len);
        let (ids, lengths) = stacked_ids::<B>(&batch.main, &en, device);
        let (kept, last) = model.hidden_states(ids, &lengths, l, &keep);
        let hd = last.dims()[2];
        let main_rows = |h: &Tensor<B, 3>| h.clone().slice([0..bm, 0..tm, 0..hd]);
        let en_rows = |h: &Tensor<B, 3>| h.clone().slice([bm..bm + be, 0..te, 0..hd]);
        let en_kept = match cfg.lc {
            AuxLoss::Feature => vec![en_rows(&kept[keep.iter().position(|&x| x == i).expect("kept")])],
            _ => vec![],
        };
        en_pass = Some((en_kept, en_rows(&last)));
        (kept.iter().map(main_rows).collect::<Vec<_>>(), main_rows(&last), None)
    } else {
        let main_ids = ids_tensor::<B>(&batch.main, device);
        match (capture > 0)
            .then(|| model.hidden_states_sharing_prefix(main_ids.clone(), &batch.main.lengths, l, &keep, capture))
            .flatten()
        {
            Some((kept, last, prefix)) => (kept, last, Some(prefix)),
            None => {
                let (kept, last) = model.hidden_states(main_ids, &batch.main.lengths, l, &keep);
                (kept, last, None)
            }
        }
    };
    let kept_at = |k: usize| kept[keep.iter().position(|&x| x == k).expect("kept")].clone();
    let (main, main_tokens) = lm_loss(model, h_last, &batch.main, false, cfg.chunk, ce);
    let mut total = scaled(main.clone(), cfg.scale.main);
    let mut comps = LossComponents { main: scalar(&main), main_tokens, ..Default::default() };

    // 4. feature losses share one English pass (or the main pass's English rows).
    if feature {
        let en = need(&batch.en_prompt, "English prompts P(x_en)")?;
        let w_tgt = pool_weights(&batch.main, cfg.pooling, "main sequences")?;
        let w_en = pool_weights(&en, cfg.pooling, "English prompts P(x_en)")?;
        let upto = if cfg.et == AuxLoss::Feature { l } else { i };
        let en_keep: Vec<usize> = if cfg.lc == AuxLoss::Feature { vec![i] } else { vec![] };
        let (en_kept, en_last) = match en_pass {
            Some(pass) => pass,
            None => model.hidden_states(ids_tensor::<B>(&en, device), &en.lengths, upto, &en_keep),
        };
        let teacher = |t: Tensor<B, 2>| if cfg.english_stop_grad { t.detach() } else { t };
        if cfg.lc == AuxLoss::Feature {
            let tgt = pool(kept_at(i), &w_tgt);
            let eng = teacher(pool(en_kept[0].clone(), &w_en));
            let lc = cosine_loss(eng, tgt);
            comps.lc = Some(scalar(&lc));
            total = total + scaled(lc, cfg.scale.lc) * cfg.alpha;
        }
        if cfg.et == AuxLoss::Feature {
            let tgt = pool(kept_at(j), &w_tgt);
            let eng = teacher(pool(en_last, &w_en));
            let et = cosine_loss(eng, tgt);
            comps.et = Some(scalar(&et));
            total = total + scaled(et, cfg.scale.et) * cfg.beta;
        }
    }
    // 2./3. LC-logits at i and ET-logits at j.
    for (name, k, s, shared) in lens_jobs {
        let suffix = match (&prefix, shared) {
            (Some(prefix), true) => shared_prefix_rows(model, prefix, &batch.main, &s, k, kept_at(k), device),
            _ => None,
        };
        let (loss, n) = match suffix {
            Some((x, targets)) => {
                if targets.is_empty() {
                    (Tensor::zeros([1], device), 0)
                } else {
                    let x = model.final_norm(x, true);
                    let sum = ce(x, model.lm_head(true), &targets, model.final_logit_softcap(), cfg.chunk, false);
                    (sum / targets.len() as f64, targets.len())
                }
            }
            None => {
                let (_, h_k) = model.hidden_states(ids_tensor::<B>(&s, device), &s.lengths, k, &[]);
                lm_loss(model, h_k, &s, true, cfg.chunk, ce)
            }
        };
        let (weight, share) = if name == "lc" { (cfg.alpha, cfg.scale.lc) } else { (cfg.beta, cfg.scale.et) };
        if name == "lc" {
            comps.lc = Some(scalar(&loss));
            comps.lc_tokens = n;
        } else {
            comps.et = Some(scalar(&loss));
            comps.et_tokens = n;
        }
        total = total + scaled(loss, share) * weight;
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
