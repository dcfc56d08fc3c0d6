//! The small interface a model must offer to be trained with the DFT objective.
//!
//! `dft-models` implements it for its Llama / SmolLM2 / Gemma-2 / Gemma-3 decoders; any other Burn model
//! can implement it (four required methods: `num_layers`, `hidden_states`, `final_norm`, `lm_head`; the
//! others have defaults or are optional speed-ups) and get the whole objective. See the crate docs for a
//! compiling example.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

/// What deep supervision needs from a decoder-only LM.
///
/// Layer numbering: block `k` is the output of decoder block `k` (`k = 1..=L`); block 0 is the embeddings.
pub trait DeepSupervisionModel<B: Backend> {
    /// Number of decoder blocks `L`.
    fn num_layers(&self) -> usize;

    /// Run blocks `1..=upto` only (blocks above are not run) on right-padded `input_ids: [rows, seq]`
    /// whose row `r` has `lengths[r]` real tokens. Returns `h_k` for each `k` in `keep` (in that order)
    /// and `h_upto`, all `[rows, seq, hidden]`; `h_L` is the last block's output *before* the final norm.
    fn hidden_states(
        &self,
        input_ids: Tensor<B, 2, Int>,
        lengths: &[usize],
        upto: usize,
        keep: &[usize],
    ) -> (Vec<Tensor<B, 3>>, Tensor<B, 3>);

    /// The model's final norm on rows `[n, hidden]`. `detached`: the norm's weights are used but take
    /// no gradient (the logit lens of the LC/ET losses).
    fn final_norm(&self, h: Tensor<B, 2>, detached: bool) -> Tensor<B, 2>;

    /// The LM head as `[hidden, vocab]` (tied models: the transposed embeddings), optionally detached.
    fn lm_head(&self, detached: bool) -> Tensor<B, 2>;

    /// Whether [`lm_head`](Self::lm_head) is a transposed view of a `[vocab, hidden]` tensor (tied
    /// embeddings). A layout hint only: the CE then computes the head gradient in that orientation, so
    /// its element-wise work runs on contiguous memory. Default `false`.
    fn lm_head_is_vocab_major(&self) -> bool {
        false
    }

    /// Softcap applied to the head's output (`cap·tanh(z/cap)`, Gemma-2); `None` for most models.
    fn final_logit_softcap(&self) -> Option<f64> {
        None
    }

    /// Whether the LM head takes gradient (false when it is frozen, e.g. under LoRA): the objective then
    /// skips the head-gradient work of its cross-entropy. Default `true`.
    fn lm_head_trainable(&self) -> bool {
        true
    }

    /// Precision of the model's matrix products; the objective runs the LM-head products of its
    /// cross-entropies and logit lenses in the same precision (see [`crate::Precision`]). Default f32.
    fn precision(&self) -> crate::Precision {
        crate::Precision::F32
    }

    /// Optional, for speed: like [`hidden_states`](Self::hidden_states), and also return the keys and
    /// values of blocks `1..=capture` so that sequences sharing a prefix with these rows can be continued
    /// by [`suffix_hidden_states`](Self::suffix_hidden_states) without recomputing it. `None` (the
    /// default) makes the objective recompute the shared prompt in each LC/ET pass.
    fn hidden_states_sharing_prefix(
        &self,
        _input_ids: Tensor<B, 2, Int>,
        _lengths: &[usize],
        _upto: usize,
        _keep: &[usize],
        _capture: usize,
    ) -> Option<(Vec<Tensor<B, 3>>, Tensor<B, 3>, PrefixKv<B>)> {
        None
    }

    /// Optional, for speed: `h_upto` of `suffix_ids: [rows, s]` (right-padded, `suffix_lengths`) where row
    /// `r` continues the first `prefix_lens[r]` tokens of the pass that produced `prefix`.
    fn suffix_hidden_states(
        &self,
        _prefix: &PrefixKv<B>,
        _prefix_lens: &[usize],
        _suffix_ids: Tensor<B, 2, Int>,
        _suffix_lengths: &[usize],
        _upto: usize,
    ) -> Option<Tensor<B, 3>> {
        None
    }
}

/// Per-block keys and values of earlier positions (a prefix pass, or the KV cache of generation):
/// `(k, v)` per block, each `[rows, kv_heads, capacity, head_dim]` (keys after RoPE) of which the
/// first `len` positions are filled; `None` for blocks not captured. dft-models calls it `KvCache`.
#[derive(Debug, Clone)]
pub struct PrefixKv<B: Backend> {
    pub layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    /// Number of positions held.
    pub len: usize,
}

impl<B: Backend> PrefixKv<B> {
    /// An empty cache for `num_layers` blocks.
    pub fn new(num_layers: usize) -> Self {
        Self { layers: vec![None; num_layers], len: 0 }
    }

    /// The cache of the rows `rows` (in that order; a row may repeat): the choices of one context
    /// share its keys/values, and finished rows drop out of batched generation.
    pub fn select_rows(&self, rows: &[usize]) -> Self {
        let data: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let layers = self
            .layers
            .iter()
            .map(|l| {
                l.as_ref().map(|(k, v)| {
                    let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(data.clone(), [rows.len()]), &k.device());
                    (k.clone().select(0, idx.clone()), v.clone().select(0, idx))
                })
            })
            .collect();
        Self { layers, len: self.len }
    }

    /// Room for `more` positions after the `len` held, allocated once: the model writes the keys and
    /// values of later steps into it in place instead of growing every block's tensors per step
    /// (batched generation reserves its `max_new_tokens`). Positions past `len` are zeros that no
    /// query reads. A no-op where the room is already there.
    pub fn reserve(&mut self, more: usize) {
        let want = self.len + more;
        for (k, v) in self.layers.iter_mut().flatten() {
            let [rows, heads, cap, dim] = k.dims();
            if cap >= want {
                continue;
            }
            let grow = |x: &Tensor<B, 4>| {
                let held = x.clone().slice([0..rows, 0..heads, 0..self.len, 0..dim]);
                let room = Tensor::zeros([rows, heads, want - self.len, dim], (&x.device(), x.dtype()));
                Tensor::cat(vec![held, room], 2)
            };
            (*k, *v) = (grow(k), grow(v));
        }
    }

    /// Positions the blocks' tensors can hold before they grow again (0 when nothing is captured).
    pub fn capacity(&self) -> usize {
        self.layers.iter().flatten().map(|(k, _)| k.dims()[2]).min().unwrap_or(0)
    }
}
