//! # dft-losses
//!
//! The Deep supervision Fine-Tuning objective — TFT/SFT cross-entropy, Language Conversion (LC) and
//! English Thinking (ET) in logits and feature form, their weighted total — and a memory-lean
//! large-vocabulary cross-entropy. Generic over Burn's `Backend`; it does **not** depend on our model
//! crate: any model that implements [`DeepSupervisionModel`] gets the whole objective.
//!
//! The objective lives in [`objective`] (one file); the chunked cross-entropy in [`cross_entropy`].
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::module::{Module, Param};
//! use burn::tensor::{backend::Backend, Int, Tensor};
//! use dft_losses::{dft_loss, AuxLoss, DeepSupervisionModel, DftBatch, ObjectiveConfig, Sequences};
//!
//! // Your own model: an embedding, L residual "blocks", a norm-less head.
//! #[derive(Module, Debug)]
//! struct MyLm<B: Backend> {
//!     embed: Param<Tensor<B, 2>>,       // [vocab, hidden]
//!     blocks: Vec<Param<Tensor<B, 2>>>, // [hidden, hidden] each
//!     head: Param<Tensor<B, 2>>,        // [hidden, vocab]
//! }
//!
//! impl<B: Backend> DeepSupervisionModel<B> for MyLm<B> {
//!     fn num_layers(&self) -> usize { self.blocks.len() }
//!     fn hidden_states(&self, ids: Tensor<B, 2, Int>, _lengths: &[usize], upto: usize, keep: &[usize])
//!         -> (Vec<Tensor<B, 3>>, Tensor<B, 3>) {
//!         let mut h = burn::tensor::module::embedding(self.embed.val(), ids);
//!         let mut states = vec![h.clone()];
//!         for w in &self.blocks[..upto] {
//!             h = h.clone() + h.matmul(w.val().unsqueeze_dim(0)).tanh();
//!             states.push(h.clone());
//!         }
//!         (keep.iter().map(|&k| states[k].clone()).collect(), h)
//!     }
//!     fn final_norm(&self, h: Tensor<B, 2>, _detached: bool) -> Tensor<B, 2> { h }
//!     fn lm_head(&self, detached: bool) -> Tensor<B, 2> {
//!         if detached { self.head.val().detach() } else { self.head.val() }
//!     }
//! }
//!
//! type AB = Autodiff<Flex>;
//! let device = Default::default();
//! let p = |shape: [usize; 2]| Param::from_tensor(Tensor::<AB, 2>::random(shape,
//!     burn::tensor::Distribution::Normal(0.0, 0.1), &device));
//! let model = MyLm { embed: p([16, 8]), blocks: vec![p([8, 8]), p([8, 8]), p([8, 8])], head: p([8, 16]) };
//!
//! // Two examples: a prompt of 3 tokens followed by a 2-token answer (labels -100 on the prompt).
//! let seqs = Sequences {
//!     seq_len: 5,
//!     input_ids: vec![1, 2, 3, 4, 5, 1, 6, 7, 8, 9],
//!     labels: vec![-100, -100, -100, 4, 5, -100, -100, -100, 8, 9],
//!     lengths: vec![5, 5],
//!     prompt_lens: vec![3, 3],
//!     query_spans: vec![vec![1..3], vec![1..3]],
//! };
//! let batch = DftBatch { main: seqs.clone(), et: Some(seqs), ..Default::default() };
//! let cfg = ObjectiveConfig { et: AuxLoss::Logits, et_layer: 2, beta: 0.5, ..Default::default() };
//! let out = dft_loss(&model, &batch, &cfg, &device).unwrap();
//! let grads = out.loss.backward();
//! assert!(out.components.et.is_some());
//! assert!(model.blocks[0].val().grad(&grads).is_some());
//! ```

#![forbid(unsafe_code)]

pub mod batch;
pub mod cross_entropy;
pub mod error;
pub mod model;
pub mod objective;
pub mod precision;

pub use batch::{DftBatch, Sequences, IGNORE_INDEX};
pub use cross_entropy::{chunked_ce_sum, chunked_ce_sum_forward, naive_ce_sum, ChunkOptions};
pub use error::{LossError, Result};
pub use model::{DeepSupervisionModel, PrefixKv};
pub use objective::{
    cosine_loss, dft_loss, dft_loss_eval, dft_loss_naive, AuxLoss, LossComponents, ObjectiveConfig, ObjectiveOutput,
    Pooling, TermCounts, TermScale,
};
pub use precision::Precision;
