//! The small interface a model must offer to be trained with the DFT objective.
//!
//! `dft-models` implements it for its Llama / Gemma-2 decoders; any other Burn model can implement it
//! (five methods) and get the whole objective. See the crate docs for a compiling example.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

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

    /// Softcap applied to the head's output (`cap·tanh(z/cap)`, Gemma-2); `None` for most models.
    fn final_logit_softcap(&self) -> Option<f64> {
        None
    }
}
