//! Compute precision of a forward/backward pass.
//!
//! `Bf16Mixed` is what PyTorch's `torch.autocast(dtype=torch.bfloat16)` does for a model whose weights
//! are f32: every matrix product (the linear layers and their LoRA adapters, the attention scores and
//! the attention-weighted values, the LM head / logit lens and the chunked cross-entropy's head products)
//! takes bf16 operands and gives a bf16 result; gradients flow back through the same casts, so the
//! backward products run in bf16 too and the parameters' gradients arrive in f32. Everything else stays
//! f32: the master weights and AdamW state, the residual stream, RMSNorm (its statistics and output),
//! RoPE, softmax / log-softmax, the gated activation, the losses and every reduction. No loss scaling is
//! needed for bf16 (same exponent range as f32).
//!
//! Where the work runs: on CUDA the bf16 products run on tensor cores; on the CPU backends (Flex,
//! ndarray) Burn computes a bf16 product by widening to f32, so bf16-mixed there checks correctness
//! rather than speed. The fused Flex kernels of dft-kernels (softmax, gated activation, RMSNorm, CE) keep
//! their f32 paths.

use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};
use serde::{Deserialize, Serialize};

/// See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Precision {
    /// Every operation in f32.
    #[default]
    #[serde(rename = "f32")]
    F32,
    /// Matrix products in bf16 (operands and result), everything else in f32; f32 master weights.
    #[serde(rename = "bf16-mixed")]
    Bf16Mixed,
}

impl Precision {
    /// `a @ b` in this precision; the result is f32 either way.
    /// Operands stored in another float type (a LoRA run's frozen bf16 base) are widened to f32 first.
    pub fn matmul<B: Backend, const D: usize>(self, a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Precision::F32 => as_f32(a).matmul(as_f32(b)),
            Precision::Bf16Mixed => {
                a.cast(FloatDType::BF16).matmul(b.cast(FloatDType::BF16)).cast(FloatDType::F32)
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16Mixed => "bf16-mixed",
        }
    }
}

/// `t` in f32 (no-op, and no autodiff node, when it already is).
pub fn as_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    if t.dtype() == burn::tensor::DType::F32 {
        t
    } else {
        t.cast(FloatDType::F32)
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
