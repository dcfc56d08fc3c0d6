//! Fused decoder ops for any Burn backend, with fast CPU kernels where the backend is Flex.
//!
//! Three ops dominate the element-wise work of a decoder step: the attention softmax (with its scale,
//! optional softcap and additive mask), the gated MLP activation `act(gate) · up`, and RMSNorm. Written
//! as tensor compositions they cost 5–10 passes over memory each way and, on Burn's CPU backend (Flex),
//! run single-threaded with scalar `exp`. Here each is one op:
//!
//! - on **`Flex`** and **`Autodiff<Flex>`** (either checkpointing strategy), with f32 tensors and the
//!   `flex` feature on: one multi-threaded, vectorised pass forward and one backward (a custom autodiff
//!   node with the analytic gradient);
//! - on **every other backend** (CUDA, ndarray, …) or dtype: the same tensor composition the model used
//!   before ([`reference`](mod@reference)), so results and gradients are unchanged there.
//!
//! [`causal_attention`] goes further: a block's whole attention (RoPE, grouped-query scores over the
//! keys each query block can see, masked softmax, weighted values) as one op with one backward, where
//! the caller keeps its composition on other backends.
//!
//! The choice is made at run time from the backend's type (`TypeId`), so model code stays generic over
//! `B: Backend`. [`fast_path::<B>()`](fast_path) says which one a backend gets. Tests check the fused
//! ops against the compositions (values and gradients) on `Autodiff<Flex>`; the model parity tests
//! check the whole decoder against transformers.

#[cfg(all(feature = "flex", target_arch = "x86_64"))]
mod amx;
#[cfg(feature = "flex")]
mod attention;
pub mod cpu;
#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "flex")]
mod flex_matmul;
pub mod reference;
#[cfg(all(feature = "flex", target_arch = "x86_64"))]
mod sgemm;
pub mod stats;

pub use cpu::{AdamWStep, GateAct, SoftmaxSpec};

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use std::sync::Arc;

/// Whether backend `B` runs the fused CPU kernels (for f32 tensors).
pub fn fast_path<B: Backend>() -> bool {
    #[cfg(feature = "flex")]
    {
        flex::supported::<B>()
    }
    #[cfg(not(feature = "flex"))]
    {
        false
    }
}

/// Attention probabilities `softmax(z, last dim)` with `z = scale·scores + bias`, or, with a softcap,
/// `z = cap·tanh(scale·scores / cap) + bias`. `bias` (the additive mask) has the shape of `scores` or
/// one that broadcasts to it (dims of size 1, e.g. one mask for all heads); it is a constant: no gradient
/// flows into it on the fused path (a tracked bias takes the composition).
pub fn attention_softmax<B: Backend, const D: usize>(
    scores: Tensor<B, D>,
    bias: Option<Tensor<B, D>>,
    spec: SoftmaxSpec,
) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let (scores, bias) = match flex::attention_softmax(scores, bias, spec) {
        Ok(out) => return out,
        Err(inputs) => inputs,
    };
    reference::attention_softmax(scores, bias, spec)
}

/// `act(gate) · up`, element-wise (the gated MLP of Llama and Gemma).
pub fn gated_activation<B: Backend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
    act: GateAct,
) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let (gate, up) = match flex::gated_activation(gate, up, act) {
        Ok(out) => return out,
        Err(inputs) => inputs,
    };
    reference::gated_activation(gate, up, act)
}

/// RMSNorm over the last dimension: `x · rsqrt(mean(x²) + eps) · weight` (`weight: [x.dims()[D-1]]`;
/// Gemma's `1 + w` is the caller's to add).
pub fn rms_norm<B: Backend, const D: usize>(x: Tensor<B, D>, weight: Tensor<B, 1>, eps: f64) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let (x, weight) = match flex::rms_norm(x, weight, eps) {
        Ok(out) => return out,
        Err(inputs) => inputs,
    };
    reference::rms_norm(x, weight, eps)
}

/// `x.permute(axes)`, materialised contiguously on Flex (a fast strided copy; its gradient is the inverse
/// permutation, materialised the same way) so that neither the forward's consumers nor the backward
/// meet a strided layout; on other backends the permuted view itself.
pub fn permute_contiguous<B: Backend, const D: usize>(x: Tensor<B, D>, axes: [usize; D]) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex::permute_contiguous(x, axes) {
        Ok(out) => return out,
        Err(x) => x,
    };
    x.permute(axes)
}

/// RoPE tables for [`causal_attention`]: `cos` and `sin` in HF's rotate-half layout, one `head_dim` row
/// per (row, position), `[b · t · head_dim]` each.
#[derive(Clone, Debug)]
pub struct RopeRows {
    pub cos: Arc<[f32]>,
    pub sin: Arc<[f32]>,
}

/// Options of [`causal_attention`].
#[derive(Clone, Debug)]
pub struct CausalAttention {
    /// Multiplies the scores `q·k` (e.g. `head_dim^-½`).
    pub scale: f32,
    /// Gemma-2's attention softcap: `z = cap·tanh(scale·s / cap)`.
    pub softcap: Option<f32>,
    /// Sliding window: query `i` sees keys `k` with `i − k < window`.
    pub window: Option<usize>,
    /// Real tokens per row (right padding); `None`: every position is real.
    pub lengths: Option<Arc<[usize]>>,
    /// RoPE applied to queries and keys inside the op; `None`: they come rotated.
    pub rope: Option<RopeRows>,
    /// `Some(t)`: `q`, `k`, `v` and the output are packed, `[1, n, …]`: the `lengths[r]` real positions
    /// of each of the `lengths.len()` rows of width `t`, row after row (needs `lengths`). Only real
    /// queries exist then. (With [`cached`](Self::cached) only `q` and the output are packed.)
    pub packed_width: Option<usize>,
    /// `Some`: the keys and values come from a KV cache that already holds the new positions (see
    /// [`CachedKeys`]); `lengths` then counts the real new positions of each row.
    pub cached: Option<CachedKeys>,
}

/// The layout of a KV cache that [`causal_attention`]'s queries continue: `k, v: [b, kv_heads, slots, d]`
/// (head-major, keys already rotated: RoPE, when given, applies to the queries only, each at its own
/// position). Slots `0..prompt_width` hold right-padded prompts (row `r`'s first `prompt_lens[r]` are
/// real), slots `prompt_width..cached` tokens that followed every prompt, and slots `cached..cached + t`
/// the `t` new positions whose queries are given. So query `i` of row `r` is at position
/// `prompt_lens[r] + cached − prompt_width + i` and sees the keys at positions up to its own (a prompt's
/// padding is skipped, not seen), of the new positions only the row's `lengths[r]` real ones, inside the
/// window — what an unpadded forward of the row's own sequence computes.
#[derive(Clone, Debug)]
pub struct CachedKeys {
    pub prompt_width: usize,
    pub prompt_lens: Arc<[usize]>,
    pub cached: usize,
}

/// Causal self-attention of one block: `q: [b, t, heads, d]`, `k, v: [b, t, kv_heads, d]`
/// (grouped-query: query head `h` reads key head `h / (heads / kv_heads)`) → `[b, t, heads · d]` (or
/// packed rows, `[1, n, …]`: see [`CausalAttention::packed_width`]), where
/// query `i` of row `r` attends to keys `k ≤ i`, `k < lengths[r]` (and inside the window) with
/// `softmax(z)` as in [`attention_softmax`]. RoPE (when given) is applied to `q` and `k` first. Over a
/// KV cache ([`CausalAttention::cached`]) `k, v` are the cache's `[b, kv_heads, slots, d]`.
///
/// On `Flex` / `Autodiff<Flex, _>` (f32) one fused op with an analytic backward: products only over the
/// keys each block of queries can see, no mask tensor, no head transposes. Queries that see no key at
/// all (padding past a window, empty rows) get zeros — a composition with an additive mask gives them
/// the mean of all values instead; neither reaches a real position. Elsewhere the inputs come back
/// (`Err`) for the caller's composition.
#[allow(clippy::type_complexity)]
pub fn causal_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    spec: &CausalAttention,
) -> Result<Tensor<B, 3>, (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>)> {
    #[cfg(feature = "flex")]
    {
        attention::causal_attention(q, k, v, spec)
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = spec;
        Err((q, k, v))
    }
}

/// `a.matmul(b)` (batched over the leading dims, which broadcast). On `Flex` and `Autodiff<Flex, _>`
/// (f32) the product is written once into a fresh buffer (Flex's own matmul zero-fills and copies its
/// output) and the backward multiplies the strided operands directly, summing over broadcast batch
/// dims inside the GEMM; elsewhere Burn's `matmul`.
pub fn matmul<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let (a, b) = match flex_matmul::matmul(a, b, flex_matmul::Prec::F32) {
        Ok(out) => return out,
        Err(inputs) => inputs,
    };
    a.matmul(b)
}

/// `a·b` with bf16 operands and a bf16 result, accumulated in f32 and returned as f32 tensors — the
/// values of `a.cast(BF16).matmul(b.cast(BF16)).cast(F32)` up to the order of the f32 sums, gradients
/// alike (the backward products also take bf16 operands and round their results to bf16). Runs on
/// the CPU's AMX tiles for f32 tensors on `Flex` / `Autodiff<Flex, _>` when [`amx_available`] — and
/// for bf16-stored operands that need no gradient (a frozen base), read without widening; otherwise the
/// inputs come back (`Err`) for the caller's own bf16 product.
#[allow(clippy::type_complexity)]
pub fn matmul_bf16<B: Backend, const D: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, D>,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
    #[cfg(feature = "flex")]
    {
        flex_matmul::matmul(a, b, flex_matmul::Prec::Bf16)
    }
    #[cfg(not(feature = "flex"))]
    {
        Err((a, b))
    }
}

/// Whether [`matmul_bf16`] runs on AMX tiles here: an x86-64 CPU with AMX-TILE and AMX-BF16, a kernel
/// that grants the tile state, the `flex` feature, and `DFT_AMX` not set to `0`.
pub fn amx_available() -> bool {
    #[cfg(all(feature = "flex", target_arch = "x86_64"))]
    {
        amx::available()
    }
    #[cfg(not(all(feature = "flex", target_arch = "x86_64")))]
    {
        false
    }
}

/// The GEMM behind f32 products on `Flex`: [`matmul`], [`matmul_add`] (a model's projections, LM head and
/// their gradients) and the fused attention's per-head products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmKernel {
    /// The `gemm` crate (what Flex's own matmul calls).
    Crate,
    /// This crate's BLIS-style kernel for AVX2 + FMA (6 × 16 tile of 8-lane vectors).
    OwnAvx2,
    /// This crate's BLIS-style kernel for AVX-512F (12 × 32 tile of 16-lane vectors).
    OwnAvx512,
}

/// The GEMM f32 products take now. The default is this crate's own widest kernel on x86-64 CPUs with
/// AVX2 + FMA (AVX-512F where the CPU has it), the `gemm` crate elsewhere; `DFT_GEMM=own` (the widest
/// own kernel), `avx2`, `avx512` or `crate` chooses explicitly; [`set_gemm_kernel`] switches at run time.
pub fn gemm_kernel() -> GemmKernel {
    #[cfg(all(feature = "flex", target_arch = "x86_64"))]
    {
        sgemm::current()
    }
    #[cfg(not(all(feature = "flex", target_arch = "x86_64")))]
    {
        GemmKernel::Crate
    }
}

/// Chooses the GEMM for the f32 products that follow (overrides `DFT_GEMM`); a kernel the CPU cannot run
/// falls back to the nearest it can (AVX-512 → AVX2 → the `gemm` crate). Returns the one taken.
pub fn set_gemm_kernel(kernel: GemmKernel) -> GemmKernel {
    #[cfg(all(feature = "flex", target_arch = "x86_64"))]
    {
        sgemm::set(kernel)
    }
    #[cfg(not(all(feature = "flex", target_arch = "x86_64")))]
    {
        let _ = kernel;
        GemmKernel::Crate
    }
}

/// Whether f32 products take one of this crate's own GEMM kernels rather than the `gemm` crate
/// ([`gemm_kernel`] is not [`GemmKernel::Crate`]).
pub fn own_gemm() -> bool {
    gemm_kernel() != GemmKernel::Crate
}

/// Chooses the widest own GEMM kernel the CPU runs (`true`; AVX-512F, else AVX2 + FMA) or the `gemm`
/// crate for the f32 products that follow; overrides `DFT_GEMM`.
pub fn set_own_gemm(on: bool) {
    // The widest tile falls back to the narrower one (or the crate) where the CPU lacks it.
    set_gemm_kernel(if on { GemmKernel::OwnAvx512 } else { GemmKernel::Crate });
}

/// Why [`amx_available`] is false (a test helper).
#[cfg(test)]
pub(crate) fn amx_why() -> String {
    #[cfg(all(feature = "flex", target_arch = "x86_64"))]
    {
        amx::detect().err().unwrap_or_else(|| "DFT_AMX=0".into())
    }
    #[cfg(not(all(feature = "flex", target_arch = "x86_64")))]
    {
        "not an x86-64 build with the flex feature".into()
    }
}

/// `acc + a.matmul(b)` for 2-d tensors (no autodiff); on plain `Flex` (f32) accumulated by the GEMM into
/// `acc`'s own buffer when nothing else holds it.
pub fn matmul_add<B: Backend>(acc: Tensor<B, 2>, a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
    #[cfg(feature = "flex")]
    let (acc, a, b) = match flex_matmul::matmul_add(acc, a, b) {
        Ok(out) => return out,
        Err(inputs) => inputs,
    };
    acc + a.matmul(b)
}

/// `Σ x²` over all elements, for global-norm gradient clipping. On `Flex` (f32) one multi-threaded pass
/// with f64 partial sums over fixed chunks (the same result for any thread count), returned as `Ok`;
/// elsewhere the input comes back (`Err`) for the caller's tensor composition (which stays on the
/// device: no synchronisation per tensor).
pub fn sum_squares<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<f64, Tensor<B, D>> {
    #[cfg(feature = "flex")]
    {
        flex::sum_squares(x)
    }
    #[cfg(not(feature = "flex"))]
    {
        Err(x)
    }
}

/// `x · factor`. On `Flex` (f32) one multi-threaded pass, in `x`'s own buffer when nothing else holds
/// it (Burn's scalar product there is single-threaded); elsewhere `x * factor`.
pub fn scale<B: Backend, const D: usize>(x: Tensor<B, D>, factor: f64) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match flex::scale(x, factor as f32) {
        Ok(out) => return out,
        Err(x) => x,
    };
    x * factor
}

/// A scalar zero whose gradient w.r.t. `x` is `g` (a constant): how a loss computed outside the autodiff
/// graph (the chunked cross-entropy, which computes its own gradients) hands them to it. On
/// `Autodiff<Flex, _>` (f32) one node that passes `g` on, scaled by the upstream gradient — no pass over
/// the data forward; elsewhere the composition `(x·g − detach(x·g)).sum()`.
pub fn gradient_carrier<B: Backend, const D: usize>(x: Tensor<B, D>, g: Tensor<B, D>) -> Tensor<B, 1> {
    #[cfg(feature = "flex")]
    let (x, g) = match flex::gradient_carrier(x, g) {
        Ok(out) => return out,
        Err(inputs) => inputs,
    };
    let y = x * g;
    (y.clone() - y.detach()).sum()
}

/// `(param, m, v)` after [`adamw_step`].
pub type AdamWOutputs<B, const D: usize> = (Tensor<B, D>, Tensor<B, D>, Tensor<B, D>);

/// The inputs of [`adamw_step`], handed back where it has no fused kernel.
pub type AdamWInputs<B, const D: usize> = (Tensor<B, D>, Tensor<B, D>, Option<(Tensor<B, D>, Tensor<B, D>)>);

/// One in-place AdamW step (see [`AdamWStep`]) on an f32 parameter, its gradient and its moments
/// (`None` on the first step), on the `Flex` backend: one multi-threaded pass instead of Burn's ~12
/// tensor ops, writing into the parameter's and moments' own buffers when nothing else shares them.
/// Returns `(param, m, v)`, or the inputs untouched where the backend or dtype has no fused kernel,
/// so that the caller can fall back to its optimiser.
pub fn adamw_step<B: Backend, const D: usize>(
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    moments: Option<(Tensor<B, D>, Tensor<B, D>)>,
    step: AdamWStep,
) -> Result<AdamWOutputs<B, D>, AdamWInputs<B, D>> {
    #[cfg(feature = "flex")]
    {
        flex::adamw_step(param, grad, moments, step)
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = step;
        Err((param, grad, moments))
    }
}

/// The summed loss and, when asked, the gradient w.r.t. the raw logits.
pub type XentOutput<B> = (Tensor<B, 1>, Option<Tensor<B, 2>>);

/// Softmax cross-entropy over rows of raw LM-head logits `[n, vocab]` (softcap: `z = cap·tanh(raw / cap)`):
/// the summed loss `Σ lse(z) − z[target]` and, with `grad`, its gradient w.r.t. the raw logits. Not a
/// differentiable op: the chunked cross-entropy of dft-losses calls it on the inner backend and applies
/// the gradient itself. On `Flex` (f32) the gradient is written over the logits' own buffer.
///
/// # Panics
/// If `targets.len()` is not the number of rows or a target is not below `vocab`.
pub fn softmax_cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    targets: &[u32],
    softcap: Option<f64>,
    grad: bool,
) -> XentOutput<B> {
    let [n, v] = logits.dims();
    assert_eq!(n, targets.len(), "softmax_cross_entropy: {n} rows for {} targets", targets.len());
    if let Some(&bad) = targets.iter().find(|&&t| t as usize >= v) {
        panic!("softmax_cross_entropy: target id {bad} is outside the vocabulary of {v}");
    }
    #[cfg(feature = "flex")]
    let logits = match flex::softmax_cross_entropy(logits, targets, softcap, grad) {
        Ok(out) => return out,
        Err(logits) => logits,
    };
    reference::softmax_cross_entropy(logits, targets, softcap, grad)
}

#[cfg(test)]
mod tests;
