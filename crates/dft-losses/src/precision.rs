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
//! Where the work runs: on CUDA the bf16 products run on tensor cores. On Flex with a CPU that has
//! AMX-BF16 (Sapphire Rapids and later) they run on AMX tiles ([`dft_kernels::matmul_bf16`]: the f32
//! operands rounded to bf16 while packed, f32 accumulation, the result rounded to bf16 — 2–3× the f32
//! GEMM's speed); elsewhere (Flex without AMX, or `DFT_AMX=0`) Burn computes a bf16 product by widening
//! to f32, so bf16-mixed there checks correctness rather than speed. The fused Flex kernels of dft-kernels (softmax, gated activation, RMSNorm, CE) keep
//! their f32 paths. ndarray has no bf16 tensors: there the products are emulated in f32 ([`round_bf16`] on
//! operands and results; backward products in f32).

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
    /// Operands stored in another float type (a LoRA run's frozen bf16 base) are read as they are on the
    /// AMX path and widened to f32 first elsewhere.
    pub fn matmul<B: Backend, const D: usize>(self, a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Precision::F32 => dft_kernels::matmul(as_f32(a), as_f32(b)),
            // Flex on a CPU with AMX: bf16 tiles, straight from the f32 tensors (dft-kernels), or from
            // bf16 storage (a LoRA run's frozen base) without widening it first.
            Precision::Bf16Mixed => match dft_kernels::matmul_bf16(a, b) {
                Ok(c) => c,
                Err((a, b)) => bf16_product(a, b),
            },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16Mixed => "bf16-mixed",
        }
    }
}

/// The bf16 product through Burn's casts, or emulated in f32 where the backend has no bf16 tensors.
fn bf16_product<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    if has_bf16::<B>(&a.device()) {
        a.cast(FloatDType::BF16).matmul(b.cast(FloatDType::BF16)).cast(FloatDType::F32)
    } else {
        // Backends without bf16 tensors (ndarray): operands and result rounded to bf16's 8 significant
        // bits; the backward products then run in f32.
        round_bf16(round_bf16(as_f32(a)).matmul(round_bf16(as_f32(b))))
    }
}

/// Whether the backend stores bf16 tensors (Flex, CUDA: yes; ndarray: no).
pub fn has_bf16<B: Backend>(device: &B::Device) -> bool {
    !B::dtype_usage(device, burn::tensor::DType::BF16).is_empty()
}

/// f32 values rounded to bf16's precision (8 significant bits, round to nearest), kept in f32: Veltkamp's
/// split `c = (2¹⁶+1)·x; x_hi = c − (c − x)`. Its gradient is the identity (straight-through), as a cast's.
pub fn round_bf16<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let c = x.clone() * 65537.0;
    c.clone() - (c - x)
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::{bf16, Distribution, TensorData};

    #[test]
    fn rounding_to_bf16_matches_the_half_crates_conversion() {
        let x = Tensor::<Flex, 1>::random([20_000], Distribution::Normal(0.0, 3.0), &Default::default());
        let v = x.clone().into_data().to_vec::<f32>().unwrap();
        let got = round_bf16(x).into_data().to_vec::<f32>().unwrap();
        let mut differ = 0;
        for (a, g) in v.iter().zip(&got) {
            let want = bf16::from_f32(*a).to_f32();
            if *g != want {
                differ += 1;
                // Only exact ties may round the other way: within one bf16 unit in the last place.
                assert!((g - want).abs() <= want.abs() * 2f32.powi(-7), "{a}: {g} vs {want}");
            }
            assert_eq!(bf16::from_f32(*g).to_f32(), *g, "{a} -> {g} is not a bf16 value");
        }
        assert!(differ <= 20, "{differ} of 20000 values differ from round-to-nearest-even");
    }

    #[test]
    fn emulated_bf16_product_equals_the_real_one() {
        let d = Default::default();
        let a = Tensor::<Flex, 2>::random([64, 96], Distribution::Normal(0.0, 1.0), &d);
        let b = Tensor::<Flex, 2>::random([96, 48], Distribution::Normal(0.0, 1.0), &d);
        let real = Precision::Bf16Mixed.matmul(a.clone(), b.clone()).into_data().to_vec::<f32>().unwrap();
        let emulated = round_bf16(round_bf16(a.clone()).matmul(round_bf16(b.clone())));
        let emulated = emulated.into_data().to_vec::<f32>().unwrap();
        let exact = a.matmul(b).into_data().to_vec::<f32>().unwrap();
        let scale = exact.iter().fold(0f32, |m, x| m.max(x.abs()));
        let d_emul = real.iter().zip(&emulated).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        let d_f32 = real.iter().zip(&exact).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(d_emul <= scale * 2f32.powi(-7), "emulated vs bf16: {d_emul} (scale {scale})");
        assert!(d_f32 > 0.0, "the bf16 product must differ from f32");
        let _ = TensorData::new(vec![0f32], [1]);
    }
}
