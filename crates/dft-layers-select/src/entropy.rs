//! Per-layer entropy of the logit-lens distribution `softmax(lm_head(final_norm(h_k)))`.
//!
//! [`row_entropy`] is the numerically stable kernel; [`lens_entropies`] runs a model over token
//! sequences in right-padded batches and returns the entropy of every real position at every block
//! `k = 0..=L`; [`TokenEntropies::curve`] summarises them as mean ± 95% CI per block, over all positions
//! and over the last position of each input.
//!
//! Memory: one batch's hidden states (`(L+1) × batch × seq × hidden`) plus one chunk of lens logits
//! (`max_chunk_logits` floats); `[tokens × vocab]` is never held for more than one chunk of one block.
use std::f64::consts::LN_2;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use dft_models::CausalLm;
use serde::{Deserialize, Serialize};

use crate::error::{LayersError, Result};
use crate::stats::MeanCi;

/// Entropy in nats of `softmax(z)` for each row of `z: [n, vocab]`, computed in the tensor's float type
/// (f32) as `logsumexp(z) − Σ softmax(z)·z`, written with the row maximum `m` factored out:
/// `ln Σ e^{z−m} − Σ p·(z−m)`. Underflowing probabilities contribute `0·(z−m)`, with `z−m` clamped to
/// the finite range so that `-inf` logits give 0, not NaN. Tiny negative rounding is clamped to 0.
/// Rows need at least one finite logit and none `+inf`.
pub fn row_entropy<B: Backend>(z: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, _] = z.dims();
    let m = z.clone().max_dim(1);
    let s = (z - m).clamp_min(f32::MIN);
    let e = s.clone().exp();
    let sum = e.clone().sum_dim(1);
    let weighted = (e * s).sum_dim(1) / sum.clone();
    (sum.log() - weighted).clamp_min(0.0).reshape([n])
}

/// How [`lens_entropies`] batches its work.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LensOptions {
    /// Inputs per forward pass (inputs are sorted by length first, so batches carry little padding).
    pub batch_size: usize,
    /// Most lens logits (`rows × vocab`) materialised at once. Default 4M (16 MB in f32; the entropy
    /// kernel holds a few such buffers).
    pub max_chunk_logits: usize,
    /// Token id written into padded positions (never attended to nor counted).
    pub pad_id: u32,
}

impl Default for LensOptions {
    fn default() -> Self {
        Self { batch_size: 8, max_chunk_logits: 1 << 22, pad_id: 0 }
    }
}

/// Entropy (nats) of the lens at every real position of every input, for blocks `0..=L`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenEntropies {
    /// `nats[k][offsets[s] + p]`: block `k`, input `s`, position `p`.
    pub nats: Vec<Vec<f32>>,
    /// `offsets[s]..offsets[s + 1]` are the positions of input `s` (length: inputs + 1).
    pub offsets: Vec<usize>,
}

impl TokenEntropies {
    /// Number of curve points (`L + 1`: block 0 = embeddings, block L = the final logits).
    pub fn num_points(&self) -> usize {
        self.nats.len()
    }

    pub fn num_inputs(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn num_tokens(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0)
    }

    /// Entropies of input `s` at block `k`, one per position.
    pub fn input(&self, k: usize, s: usize) -> &[f32] {
        &self.nats[k][self.offsets[s]..self.offsets[s + 1]]
    }

    /// Mean ± CI per block over all positions and over the last position of each input.
    pub fn curve(&self) -> EntropyCurve {
        let layers = self
            .nats
            .iter()
            .enumerate()
            .map(|(k, row)| LayerEntropy {
                layer: k,
                all: MeanCi::of(row.iter().map(|&x| x as f64)),
                last: MeanCi::of(self.offsets.windows(2).map(|w| row[w[1] - 1] as f64)),
            })
            .collect();
        EntropyCurve { layers }
    }
}

/// Lens entropy statistics of one block, in nats.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LayerEntropy {
    /// Block index `k` (0 = embeddings).
    pub layer: usize,
    /// Over every real position of every input.
    pub all: MeanCi,
    /// Over the last position of each input (the next-token prediction after the whole prompt).
    pub last: MeanCi,
}

/// Lens entropy per block, `0..=L`, in nats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntropyCurve {
    pub layers: Vec<LayerEntropy>,
}

impl EntropyCurve {
    /// Mean entropy over all positions per block (the curve the detector reads), nats.
    pub fn means(&self) -> Vec<f64> {
        self.layers.iter().map(|l| l.all.mean).collect()
    }

    /// Mean entropy at the last position per block, nats.
    pub fn last_means(&self) -> Vec<f64> {
        self.layers.iter().map(|l| l.last.mean).collect()
    }
}

/// nats → bits.
pub fn to_bits(nats: f64) -> f64 {
    nats / LN_2
}

/// Run `model` over `inputs` (token ids, each non-empty) and return the lens entropy of every real
/// position at every block `0..=L`. Inputs are batched by length with right padding; only the real
/// positions are sent through the lens.
pub fn lens_entropies<B: Backend>(
    model: &CausalLm<B>,
    inputs: &[Vec<u32>],
    opts: &LensOptions,
) -> Result<TokenEntropies> {
    lens_entropies_with_progress(model, inputs, opts, |_, _| {})
}

/// [`lens_entropies`] calling `progress(done_inputs, total_inputs)` after each batch.
pub fn lens_entropies_with_progress<B: Backend>(
    model: &CausalLm<B>,
    inputs: &[Vec<u32>],
    opts: &LensOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<TokenEntropies> {
    if let Some(index) = inputs.iter().position(|x| x.is_empty()) {
        return Err(LayersError::EmptyInput { what: "lens input".into(), index });
    }
    let points = model.num_layers() + 1;
    let mut offsets = Vec::with_capacity(inputs.len() + 1);
    offsets.push(0);
    for x in inputs {
        offsets.push(offsets.last().unwrap() + x.len());
    }
    let total = *offsets.last().unwrap();
    let mut nats = vec![vec![0f32; total]; points];
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&s| std::cmp::Reverse(inputs[s].len()));
    let device = model.device();
    // The head `[hidden, vocab]` once (tied models: the transposed embeddings), not once per chunk.
    let head = model.lm_head_weight(true);
    let mut done = 0;
    for batch in order.chunks(opts.batch_size.max(1)) {
        let lengths: Vec<usize> = batch.iter().map(|&s| inputs[s].len()).collect();
        let t = *lengths.iter().max().unwrap();
        let b = batch.len();
        let mut ids = vec![opts.pad_id as i64; b * t];
        let mut rows = Vec::new();
        for (r, &s) in batch.iter().enumerate() {
            for (p, &id) in inputs[s].iter().enumerate() {
                ids[r * t + p] = id as i64;
                rows.push((r * t + p) as i64);
            }
        }
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [b, t]), &device);
        let real = Tensor::<B, 1, Int>::from_data(TensorData::new(rows.clone(), [rows.len()]), &device);
        let states = model.all_hidden_states(ids, Some(&lengths));
        for (k, h) in states.into_iter().enumerate() {
            let hd = h.dims()[2];
            let h = h.reshape([b * t, hd]).select(0, real.clone());
            let values = layer_entropies(model, &head, h, opts.max_chunk_logits);
            // `rows` lists the batch's real positions in (row, position) order; map back to the input.
            let mut it = values.into_iter();
            for &s in batch {
                for slot in &mut nats[k][offsets[s]..offsets[s + 1]] {
                    *slot = it.next().expect("one entropy per real position");
                }
            }
        }
        done += b;
        progress(done, inputs.len());
    }
    Ok(TokenEntropies { nats, offsets })
}

/// Lens entropy of each row of `h: [n, hidden]` (hidden states of one block), chunked over rows:
/// `z = softcap(final_norm(h) · head)`, as [`CausalLm::logit_lens`] computes it.
fn layer_entropies<B: Backend>(
    model: &CausalLm<B>,
    head: &Tensor<B, 2>,
    h: Tensor<B, 2>,
    max_chunk_logits: usize,
) -> Vec<f32> {
    let [n, hd] = h.dims();
    let v = head.dims()[1];
    let step = (max_chunk_logits / v.max(1)).max(1);
    let normed = model.final_norm(h, true);
    let mut out = Vec::with_capacity(n);
    let mut r0 = 0;
    while r0 < n {
        let r1 = (r0 + step).min(n);
        let z = model.softcap_logits(normed.clone().slice([r0..r1, 0..hd]).matmul(head.clone()));
        out.extend(row_entropy(z).into_data().convert::<f32>().to_vec::<f32>().expect("f32 entropies"));
        r0 = r1;
    }
    out
}

/// Probability mass the lens puts on given token sets at the **last** position of each input, per block.
///
/// `inputs[s]` are the token ids of input `s`; `sets[s]` the token-id sets whose mass is wanted there
/// (e.g. `[english_tokens, target_tokens]`). Returns `mass[k][s][q] = Σ_{t ∈ sets[s][q]} p_k(t)`.
pub fn lens_last_position_mass<B: Backend>(
    model: &CausalLm<B>,
    inputs: &[Vec<u32>],
    sets: &[Vec<Vec<u32>>],
    opts: &LensOptions,
) -> Result<Vec<Vec<Vec<f64>>>> {
    if let Some(index) = inputs.iter().position(|x| x.is_empty()) {
        return Err(LayersError::EmptyInput { what: "lens input".into(), index });
    }
    assert_eq!(inputs.len(), sets.len(), "one list of token sets per input");
    let points = model.num_layers() + 1;
    let v = model.config.vocab_size;
    let device = model.device();
    let mut mass = vec![vec![Vec::new(); inputs.len()]; points];
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&s| std::cmp::Reverse(inputs[s].len()));
    for batch in order.chunks(opts.batch_size.max(1)) {
        let lengths: Vec<usize> = batch.iter().map(|&s| inputs[s].len()).collect();
        let t = *lengths.iter().max().unwrap();
        let b = batch.len();
        let mut ids = vec![opts.pad_id as i64; b * t];
        for (r, &s) in batch.iter().enumerate() {
            for (p, &id) in inputs[s].iter().enumerate() {
                ids[r * t + p] = id as i64;
            }
        }
        let last: Vec<i64> = lengths.iter().enumerate().map(|(r, &n)| (r * t + n - 1) as i64).collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [b, t]), &device);
        let last = Tensor::<B, 1, Int>::from_data(TensorData::new(last, [b]), &device);
        let states = model.all_hidden_states(ids, Some(&lengths));
        for (k, h) in states.into_iter().enumerate() {
            let hd = h.dims()[2];
            let h = h.reshape([b * t, hd]).select(0, last.clone()).reshape([1, b, hd]);
            let z = model.logit_lens(h, true).reshape([b, v]);
            let p = burn::tensor::activation::softmax(z, 1);
            let p = p.into_data().convert::<f32>().to_vec::<f32>().expect("f32 probabilities");
            for (r, &s) in batch.iter().enumerate() {
                let row = &p[r * v..(r + 1) * v];
                mass[k][s] = sets[s]
                    .iter()
                    .map(|set| set.iter().map(|&id| row.get(id as usize).copied().unwrap_or(0.0) as f64).sum())
                    .collect();
            }
        }
    }
    Ok(mass)
}

#[cfg(test)]
mod tests {
    use super::*;
    type B = burn::backend::Flex;

    fn entropy_of(rows: &[Vec<f32>]) -> Vec<f32> {
        let v = rows[0].len();
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let z = Tensor::<B, 2>::from_data(TensorData::new(flat, [rows.len(), v]), &Default::default());
        row_entropy(z).into_data().to_vec::<f32>().unwrap()
    }

    /// f64 reference: −Σ p ln p with p from a max-shifted softmax.
    fn reference(z: &[f32]) -> f64 {
        let m = z.iter().fold(f64::NEG_INFINITY, |a, &x| a.max(x as f64));
        let s: f64 = z.iter().map(|&x| (x as f64 - m).exp()).sum();
        z.iter()
            .map(|&x| {
                let p = (x as f64 - m).exp() / s;
                if p > 0.0 {
                    -p * p.ln()
                } else {
                    0.0
                }
            })
            .sum()
    }

    #[test]
    fn uniform_one_hot_and_two_point() {
        let v = 1000;
        let h = entropy_of(&[vec![0.0; v], {
            let mut r = vec![0.0; v];
            r[3] = 200.0;
            r
        }]);
        assert!((h[0] as f64 - (v as f64).ln()).abs() < 1e-4, "{}", h[0]);
        assert_eq!(h[1], 0.0);
        let h = entropy_of(&[vec![5.0, 5.0]]);
        assert!((h[0] as f64 - 2f64.ln()).abs() < 1e-6);
    }

    #[test]
    fn extreme_logits_give_finite_exact_entropies() {
        let rows = vec![
            vec![1e4, -1e4, 0.0, 3e4, 3e4 - 1.0],
            vec![-3e38, 3e38, 0.0, 1.0, -1.0],
            vec![f32::NEG_INFINITY, 0.0, 0.5, f32::NEG_INFINITY, -0.5],
            vec![-1e30, -1e30 + 1e24, -1e30, -1e30, -1e30],
            vec![80.0, 80.0, 80.0, -80.0, 0.0],
        ];
        let h = entropy_of(&rows);
        for (r, (row, &got)) in rows.iter().zip(&h).enumerate() {
            assert!(got.is_finite() && got >= 0.0, "row {r}: {got}");
            let want = reference(row);
            assert!((got as f64 - want).abs() < 1e-5, "row {r}: {got} vs {want}");
        }
    }

    #[test]
    fn curve_statistics_use_real_positions_and_last_positions() {
        let te = TokenEntropies { nats: vec![vec![1.0, 2.0, 3.0, 10.0, 20.0]], offsets: vec![0, 3, 5] };
        let c = te.curve();
        assert_eq!(c.layers[0].all.n, 5);
        assert!((c.layers[0].all.mean - 7.2).abs() < 1e-9);
        assert_eq!(c.layers[0].last.n, 2);
        assert!((c.layers[0].last.mean - 11.5).abs() < 1e-9);
        assert_eq!(te.input(0, 1), &[10.0, 20.0]);
    }
}
