//! Token cross-entropy through an LM head, without ever holding `tokens × vocab` logits in full.
//!
//! Inputs are the (already final-normed) hidden rows `x: [n, hidden]` at the labelled positions only,
//! the head `w: [hidden, vocab]` and the target id of each row. The loss is the **sum** over rows of
//! `logsumexp(z) − z[target]`, with `z = x·w` (Gemma-2: `z = cap·tanh(x·w / cap)`); callers divide by the
//! token count.
//!
//! # How the memory-lean version gets its gradient
//! [`chunked_ce_sum`] walks over row chunks on the *inner* (non-autodiff) backend. For each chunk it
//! computes the logits once, the loss, and the exact gradients `∂L/∂x = (softmax(z) − onehot)·∂z/∂r · wᵀ`
//! and `∂L/∂w = xᵀ · (…)`; the chunk's logits are dropped before the next chunk. It then returns the
//! surrogate `loss + Σ(x⊙G_x − stopgrad(x⊙G_x)) + Σ(w⊙G_w − stopgrad(w⊙G_w))`: its value is exactly
//! the loss (each `a − a` is exactly 0) and Burn's autodiff propagates `G_x`, `G_w` (scaled by whatever the
//! caller multiplies the loss with — the surrogate is linear in `x` and `w`) into the graph that produced
//! `x` and `w`. This is a custom backward expressed in Burn's autodiff API that works on every
//! `AutodiffBackend` without per-backend kernels, and costs one logits pass instead of forward+recompute.
//! Peak extra memory: a few chunk-sized buffers (logits, probabilities: `rows_per_chunk · vocab` floats
//! each) plus `G_x` (`n · hidden`) and, when the head takes gradient, `G_w` — which on Burn 0.21's Flex
//! backend costs about 3 head-sized buffers at the accumulation step (accumulator, the new `xcᵀ·dz`,
//! and a transient copy Flex makes of every fresh tensor); with a detached head (the lens losses) the
//! peak is well under one head. Measured in docs/PERFORMANCE.md.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};

/// How large one chunk of logits may get.
///
/// Each chunk with a head gradient adds `xcᵀ·dz` (a full `[hidden, vocab]` product) into `∂L/∂w`, so
/// chunks of few rows make the head-sized work memory-bound: measured on 2 cores
/// (docs/PERFORMANCE.md), 16-row chunks at vocab 256,000 were 3.6× slower than naive, 256+ rows ≈ naive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkOptions {
    /// Target number of logits (`rows × vocab`) materialised at once. Default 16M (64 MiB in f32).
    pub max_chunk_logits: usize,
    /// Never fewer rows per chunk than this (default 256), whatever the vocabulary.
    pub min_rows: usize,
    /// Layout hint: `w` is a transposed view of a `[vocab, hidden]` tensor (tied embeddings). The head
    /// gradient is then computed and applied as `[vocab, hidden]`, which keeps its element-wise work on
    /// contiguous memory (≈0.2 s per SmolLM2 TFT step on Flex). Values are the same either way.
    pub head_vocab_major: bool,
    /// Precision of the head products (logits, `∂L/∂x`, `∂L/∂w`); the softmax, the loss and the
    /// accumulation of the head gradient stay f32 (see [`crate::Precision`]).
    pub precision: crate::Precision,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        Self { max_chunk_logits: 1 << 24, min_rows: 256, head_vocab_major: false, precision: crate::Precision::F32 }
    }
}

impl ChunkOptions {
    pub fn rows_per_chunk(&self, vocab: usize) -> usize {
        (self.max_chunk_logits / vocab.max(1)).max(self.min_rows).max(1)
    }
}

fn targets_tensor<B: Backend>(targets: &[u32], device: &B::Device) -> Tensor<B, 2, Int> {
    Tensor::from_data(
        TensorData::new(targets.iter().map(|&t| t as i64).collect::<Vec<_>>(), [targets.len(), 1]),
        device,
    )
}

fn softcap<B: Backend>(raw: Tensor<B, 2>, cap: Option<f64>) -> Tensor<B, 2> {
    match cap {
        Some(c) => (raw / c).tanh() * c,
        None => raw,
    }
}

/// Reference implementation: full logits, `log_softmax`, gather. Differentiable on any backend, but
/// holds `n × vocab` logits (and their gradient). Returns the summed loss as a 1-element tensor.
pub fn naive_ce_sum<B: Backend>(x: Tensor<B, 2>, w: Tensor<B, 2>, targets: &[u32], cap: Option<f64>) -> Tensor<B, 1> {
    let device = x.device();
    if targets.is_empty() {
        return Tensor::zeros([1], &device);
    }
    let z = softcap(x.matmul(w), cap);
    let logp = burn::tensor::activation::log_softmax(z, 1);
    let picked = logp.gather(1, targets_tensor::<B>(targets, &device));
    picked.sum().neg()
}

/// Loss sum and, if asked, the gradients w.r.t. `x` and `w`, chunk by chunk (no autodiff).
pub struct ChunkedCe<B: Backend> {
    pub loss_sum: Tensor<B, 1>,
    pub grad_x: Option<Tensor<B, 2>>,
    /// `[hidden, vocab]`, or `[vocab, hidden]` when `opts.head_vocab_major`.
    pub grad_w: Option<Tensor<B, 2>>,
}

/// The chunk loop behind both the forward-only and the differentiable entry points.
pub fn chunked_ce_inner<B: Backend>(
    x: Tensor<B, 2>,
    w: Tensor<B, 2>,
    targets: &[u32],
    cap: Option<f64>,
    opts: ChunkOptions,
    need_grad_x: bool,
    need_grad_w: bool,
) -> ChunkedCe<B> {
    let device = x.device();
    let [n, h] = x.dims();
    let v = w.dims()[1];
    assert_eq!(targets.len(), n, "chunked_ce: {} targets for {} rows", targets.len(), n);
    let mut loss_sum = Tensor::<B, 1>::zeros([1], &device);
    let mut grad_x_chunks = Vec::new();
    let mut grad_w: Option<Tensor<B, 2>> = None;
    let wt = (need_grad_x).then(|| w.clone().transpose());
    let mm = |a: Tensor<B, 2>, b: Tensor<B, 2>| opts.precision.matmul(a, b);
    let step = opts.rows_per_chunk(v);
    let mut r0 = 0;
    while r0 < n {
        let r1 = (r0 + step).min(n);
        let xc = x.clone().slice([r0..r1, 0..h]);
        // Loss and `∂/∂raw logits` in one op (dft-kernels: one fused pass on Flex, a composition elsewhere).
        let need_grad = need_grad_x || need_grad_w;
        let (loss, dz) =
            dft_kernels::softmax_cross_entropy(mm(xc.clone(), w.clone()), &targets[r0..r1], cap, need_grad);
        loss_sum = loss_sum + loss;
        if let Some(dz) = dz {
            if let Some(wt) = &wt {
                grad_x_chunks.push(mm(dz.clone(), wt.clone()));
            }
            if need_grad_w {
                let (l, r) = if opts.head_vocab_major { (dz.transpose(), xc) } else { (xc.transpose(), dz) };
                grad_w = Some(match grad_w {
                    // f32: the GEMM adds into the running sum's own buffer (dft-kernels, on Flex).
                    Some(acc) if opts.precision == crate::Precision::F32 => dft_kernels::matmul_add(acc, l, r),
                    Some(acc) => acc + mm(l, r),
                    None => mm(l, r),
                });
            }
        }
        r0 = r1;
    }
    let grad_x = need_grad_x.then(|| {
        if grad_x_chunks.is_empty() {
            Tensor::zeros([0, h], &device)
        } else {
            Tensor::cat(grad_x_chunks, 0)
        }
    });
    ChunkedCe {
        loss_sum,
        grad_x,
        grad_w: if need_grad_w {
            let shape = if opts.head_vocab_major { [v, h] } else { [h, v] };
            Some(grad_w.unwrap_or_else(|| Tensor::zeros(shape, &device)))
        } else {
            None
        },
    }
}

/// Forward-only chunked loss sum (evaluation; any backend).
pub fn chunked_ce_sum_forward<B: Backend>(
    x: Tensor<B, 2>,
    w: Tensor<B, 2>,
    targets: &[u32],
    cap: Option<f64>,
    opts: ChunkOptions,
    _head_grad: bool,
) -> Tensor<B, 1> {
    if targets.is_empty() {
        return Tensor::zeros([1], &x.device());
    }
    chunked_ce_inner(x, w, targets, cap, opts, false, false).loss_sum
}

/// Differentiable, memory-lean summed cross-entropy (see the module docs). Gradient flows into `x`
/// and, when `head_grad` is true, into `w` (pass `false` for a detached head: `∂L/∂w` is then not
/// even computed). Burn exposes no "is this tensor tracked" query for non-leaf tensors, hence the flag.
pub fn chunked_ce_sum<B: AutodiffBackend>(
    x: Tensor<B, 2>,
    w: Tensor<B, 2>,
    targets: &[u32],
    cap: Option<f64>,
    opts: ChunkOptions,
    head_grad: bool,
) -> Tensor<B, 1> {
    if targets.is_empty() {
        return Tensor::zeros([1], &x.device());
    }
    let need_x = true;
    let need_w = head_grad;
    let inner = chunked_ce_inner(x.clone().inner(), w.clone().inner(), targets, cap, opts, need_x, need_w);
    let mut out = Tensor::<B, 1>::from_inner(inner.loss_sum);
    if let Some(gx) = inner.grad_x {
        out = out + dft_kernels::gradient_carrier(x, Tensor::<B, 2>::from_inner(gx));
    }
    if let Some(gw) = inner.grad_w {
        let w = if opts.head_vocab_major { w.transpose() } else { w };
        out = out + dft_kernels::gradient_carrier(w, Tensor::<B, 2>::from_inner(gw));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, ElementConversion};

    type AB = Autodiff<Flex>;

    fn data(t: Tensor<Flex, 2>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    fn rel_err(a: &[f32], b: &[f32]) -> f64 {
        let num = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>().sqrt();
        let den = b.iter().map(|y| (*y as f64).powi(2)).sum::<f64>().sqrt().max(1e-30);
        num / den
    }

    /// Loss and gradients (x, w) of the chunked path against the naive one.
    fn compare(n: usize, h: usize, v: usize, chunk_logits: usize, cap: Option<f64>, seed: u64) {
        let device = Default::default();
        <Flex as Backend>::seed(&device, seed);
        let x0 = Tensor::<Flex, 2>::random([n, h], Distribution::Normal(0.0, 1.0), &device);
        let w0 = Tensor::<Flex, 2>::random([h, v], Distribution::Normal(0.0, 0.5), &device);
        let targets: Vec<u32> = (0..n).map(|i| ((i * 7919 + seed as usize) % v) as u32).collect();
        let run = |chunked: bool| {
            let x = Tensor::<AB, 2>::from_inner(x0.clone()).require_grad();
            let w = Tensor::<AB, 2>::from_inner(w0.clone()).require_grad();
            // Scale by 0.37 to check that the surrogate's gradient follows the caller's factor.
            let loss = if chunked {
                chunked_ce_sum(
                    x.clone(),
                    w.clone(),
                    &targets,
                    cap,
                    ChunkOptions { max_chunk_logits: chunk_logits, min_rows: 1, ..Default::default() },
                    true,
                )
            } else {
                naive_ce_sum(x.clone(), w.clone(), &targets, cap)
            } * 0.37;
            let g = loss.backward();
            let value = loss.into_scalar().elem::<f64>();
            (value, data(x.grad(&g).unwrap()), data(w.grad(&g).unwrap()))
        };
        let (la, gxa, gwa) = run(true);
        let (lb, gxb, gwb) = run(false);
        assert!(((la - lb) / lb).abs() <= 1e-5, "loss {la} vs {lb}");
        assert!(rel_err(&gxa, &gxb) <= 1e-5, "grad x rel err {}", rel_err(&gxa, &gxb));
        assert!(rel_err(&gwa, &gwb) <= 1e-5, "grad w rel err {}", rel_err(&gwa, &gwb));
        // Forward-only path agrees too.
        let f = chunked_ce_sum_forward(
            x0.clone(),
            w0.clone(),
            &targets,
            cap,
            ChunkOptions { max_chunk_logits: chunk_logits, min_rows: 1, ..Default::default() },
            false,
        );
        assert!(((f.into_scalar().elem::<f64>() * 0.37 - lb) / lb).abs() <= 1e-5);
    }

    /// A tied head (`w` = the transposed `[vocab, hidden]` embeddings) with the vocab-major hint: same
    /// loss and gradients (into `x` and into the embeddings) as the naive CE.
    #[test]
    fn vocab_major_head_gives_the_same_gradients() {
        let device = Default::default();
        <Flex as Backend>::seed(&device, 7);
        let (n, h, v) = (29, 12, 97);
        let x0 = Tensor::<Flex, 2>::random([n, h], Distribution::Normal(0.0, 1.0), &device);
        let e0 = Tensor::<Flex, 2>::random([v, h], Distribution::Normal(0.0, 0.5), &device);
        let targets: Vec<u32> = (0..n).map(|i| ((i * 31 + 5) % v) as u32).collect();
        let run = |chunked: bool| {
            let x = Tensor::<AB, 2>::from_inner(x0.clone()).require_grad();
            let e = Tensor::<AB, 2>::from_inner(e0.clone()).require_grad();
            let w = e.clone().transpose();
            let opts =
                ChunkOptions { max_chunk_logits: 10 * v, min_rows: 1, head_vocab_major: true, ..Default::default() };
            let loss = if chunked {
                chunked_ce_sum(x.clone(), w, &targets, Some(3.0), opts, true)
            } else {
                naive_ce_sum(x.clone(), w, &targets, Some(3.0))
            };
            let g = loss.backward();
            (loss.into_scalar().elem::<f64>(), data(x.grad(&g).unwrap()), data(e.grad(&g).unwrap()))
        };
        let (la, gxa, gea) = run(true);
        let (lb, gxb, geb) = run(false);
        assert!(((la - lb) / lb).abs() <= 1e-5, "loss {la} vs {lb}");
        assert!(rel_err(&gxa, &gxb) <= 1e-5, "grad x rel err {}", rel_err(&gxa, &gxb));
        assert!(rel_err(&gea, &geb) <= 1e-5, "grad e rel err {}", rel_err(&gea, &geb));
    }

    #[test]
    fn chunked_equals_naive_on_random_shapes() {
        // vocab sizes not divisible by the rows per chunk, single-row chunks, one big chunk, softcap.
        compare(37, 16, 101, 101 * 5, None, 1);
        compare(37, 16, 101, 1, None, 2);
        compare(64, 24, 250, 1 << 20, None, 3);
        compare(19, 8, 333, 333 * 4, Some(5.0), 4);
        compare(1, 8, 50, 50, Some(30.0), 5);
    }

    #[test]
    fn rows_with_no_labels_give_zero_not_nan() {
        let device = Default::default();
        let x = Tensor::<AB, 2>::zeros([0, 4], &device).require_grad();
        let w = Tensor::<AB, 2>::ones([4, 9], &device).require_grad();
        let l = chunked_ce_sum(x.clone(), w.clone(), &[], None, ChunkOptions::default(), true);
        assert_eq!(l.into_scalar().elem::<f64>(), 0.0);
        let n = naive_ce_sum(Tensor::<Flex, 2>::zeros([0, 4], &device), Tensor::ones([4, 9], &device), &[], None);
        assert_eq!(n.into_scalar().elem::<f64>(), 0.0);
    }

    #[test]
    fn chunked_backward_matches_finite_differences() {
        let device = Default::default();
        <Flex as Backend>::seed(&device, 11);
        let (n, h, v) = (5, 4, 13);
        let x0: Vec<f32> =
            Tensor::<Flex, 2>::random([n, h], Distribution::Normal(0.0, 1.0), &device).into_data().to_vec().unwrap();
        let w0: Vec<f32> =
            Tensor::<Flex, 2>::random([h, v], Distribution::Normal(0.0, 1.0), &device).into_data().to_vec().unwrap();
        let targets = [3u32, 0, 12, 7, 7];
        let opts = ChunkOptions { max_chunk_logits: 2 * v, min_rows: 1, ..Default::default() };
        let cap = Some(3.0);
        let x = Tensor::<AB, 2>::from_data(TensorData::new(x0.clone(), [n, h]), &device).require_grad();
        let w = Tensor::<AB, 2>::from_data(TensorData::new(w0.clone(), [h, v]), &device).require_grad();
        let loss = chunked_ce_sum(x.clone(), w.clone(), &targets, cap, opts, true);
        let g = loss.backward();
        let gx = data(x.grad(&g).unwrap());
        let gw = data(w.grad(&g).unwrap());
        // Central differences in f64 on a reference written with plain loops.
        let f = |xs: &[f64], ws: &[f64]| -> f64 {
            let mut total = 0.0;
            for r in 0..n {
                let z: Vec<f64> = (0..v)
                    .map(|c| {
                        let raw: f64 = (0..h).map(|k| xs[r * h + k] * ws[k * v + c]).sum();
                        3.0 * (raw / 3.0).tanh()
                    })
                    .collect();
                let m = z.iter().cloned().fold(f64::MIN, f64::max);
                let lse = m + z.iter().map(|q| (q - m).exp()).sum::<f64>().ln();
                total += lse - z[targets[r] as usize];
            }
            total
        };
        let xs: Vec<f64> = x0.iter().map(|&a| a as f64).collect();
        let ws: Vec<f64> = w0.iter().map(|&a| a as f64).collect();
        let eps = 1e-6;
        for i in 0..n * h {
            let (mut p, mut m) = (xs.clone(), xs.clone());
            p[i] += eps;
            m[i] -= eps;
            let fd = (f(&p, &ws) - f(&m, &ws)) / (2.0 * eps);
            assert!((fd - gx[i] as f64).abs() <= 1e-4 * (1.0 + fd.abs()), "dx[{i}]: fd {fd} vs {}", gx[i]);
        }
        for i in 0..h * v {
            let (mut p, mut m) = (ws.clone(), ws.clone());
            p[i] += eps;
            m[i] -= eps;
            let fd = (f(&xs, &p) - f(&xs, &m)) / (2.0 * eps);
            assert!((fd - gw[i] as f64).abs() <= 1e-4 * (1.0 + fd.abs()), "dw[{i}]: fd {fd} vs {}", gw[i]);
        }
    }

    #[test]
    fn detached_head_gets_no_gradient() {
        let device = Default::default();
        let x = Tensor::<AB, 2>::random([6, 4], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let w = Tensor::<AB, 2>::random([4, 10], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let loss =
            chunked_ce_sum(x.clone(), w.clone().detach(), &[1, 2, 3, 4, 5, 6], None, ChunkOptions::default(), false);
        let g = loss.backward();
        assert!(x.grad(&g).is_some());
        assert!(w.grad(&g).is_none());
    }
}
