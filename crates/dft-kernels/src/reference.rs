//! The fused ops as plain tensor compositions: what every backend without a fused kernel runs, and the
//! reference the fused kernels are tested against.

use crate::{GateAct, SoftmaxSpec};
use burn::tensor::activation::{gelu_approximate, silu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};

/// `softmax(scale·s + bias)` (with a softcap: `softmax(cap·tanh(scale·s / cap) + bias)`).
pub fn attention_softmax<B: Backend, const D: usize>(
    scores: Tensor<B, D>,
    bias: Option<Tensor<B, D>>,
    spec: SoftmaxSpec,
) -> Tensor<B, D> {
    let mut z = scores * spec.scale;
    if let Some(cap) = spec.softcap {
        z = (z / cap).tanh() * cap;
    }
    if let Some(bias) = bias {
        z = z + bias;
    }
    softmax(z, D - 1)
}

/// `act(gate) · up`.
pub fn gated_activation<B: Backend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
    act: GateAct,
) -> Tensor<B, D> {
    let a = match act {
        GateAct::Silu => silu(gate),
        GateAct::GeluTanh => gelu_approximate(gate),
    };
    a * up
}

/// `x · rsqrt(mean(x²) + eps) · w` over the last dimension.
pub fn rms_norm<B: Backend, const D: usize>(x: Tensor<B, D>, weight: Tensor<B, 1>, eps: f64) -> Tensor<B, D> {
    let dims = x.dims();
    let var = x.clone().powf_scalar(2.0).mean_dim(D - 1);
    let normed = x * (var + eps).sqrt().recip();
    let mut wshape = [1usize; D];
    wshape[D - 1] = dims[D - 1];
    normed * weight.reshape(wshape)
}

/// Summed `lse(z) − z[target]` over rows of raw logits `[n, vocab]` (softcap: `z = cap·tanh(raw / cap)`),
/// and with `grad` its gradient w.r.t. the raw logits: `(softmax(z) − onehot) · dz/draw`.
pub fn softmax_cross_entropy<B: Backend>(
    raw: Tensor<B, 2>,
    targets: &[u32],
    softcap: Option<f64>,
    grad: bool,
) -> (Tensor<B, 1>, Option<Tensor<B, 2>>) {
    let device = raw.device();
    let n = targets.len();
    let z = match softcap {
        Some(c) => (raw / c).tanh() * c,
        None => raw,
    };
    let tgt: Tensor<B, 2, Int> =
        Tensor::from_data(TensorData::new(targets.iter().map(|&t| t as i64).collect::<Vec<_>>(), [n, 1]), &device);
    let m = z.clone().max_dim(1);
    let e = (z.clone() - m.clone()).exp();
    let sum = e.clone().sum_dim(1);
    let lse = sum.clone().log() + m;
    let zy = z.clone().gather(1, tgt.clone());
    let loss = (lse - zy).sum();
    if !grad {
        return (loss, None);
    }
    // softmax from the exponentials already taken (one exp pass, not two), minus the one-hot.
    let mut dz = e * sum.recip();
    dz = dz.scatter(1, tgt, Tensor::<B, 2>::full([n, 1], -1.0, &device), IndexingUpdateOp::Add);
    if let Some(c) = softcap {
        // z = c·tanh(r/c)  =>  dz/dr = 1 − (z/c)²
        let t = z / c;
        dz = dz * (t.clone() * t).neg().add_scalar(1.0);
    }
    (loss, Some(dz))
}
