//! The fused ops against their tensor compositions ([`crate::reference`]): values and gradients, on
//! `Flex`, `Autodiff<Flex>` and `Autodiff<Flex, BalancedCheckpointing>`.

use super::*;
use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use std::sync::Arc;

type Ad = Autodiff<Flex>;
type AdCkpt = Autodiff<Flex, BalancedCheckpointing>;

/// Deterministic pseudo-normal data (no global RNG: tests run in parallel).
fn random<B: Backend, const D: usize>(shape: [usize; D], seed: u64) -> Tensor<B, D> {
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    // Sum of four uniforms: roughly normal, spread ±3.
    let v: Vec<f32> = (0..n).map(|_| ((0..4).map(|_| uniform()).sum::<f64>() - 2.0) as f32 * 1.5).collect();
    Tensor::from_data(TensorData::new(v, shape), &Default::default())
}

fn assert_close<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>, tol: f32, what: &str) {
    let (a, b) = (a.into_data().to_vec::<f32>().unwrap(), b.into_data().to_vec::<f32>().unwrap());
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0f32, f32::max);
    assert!(worst <= tol, "{what}: worst scaled difference {worst} > {tol}");
}

/// A causal mask with right padding, as the model builds it: `[b, h, t, s]`, 0 or -1e9.
fn mask_bias<B: Backend>(b: usize, h: usize, t: usize, s: usize) -> Tensor<B, 4> {
    let mut v = vec![0f32; b * h * t * s];
    for r in 0..b {
        let len = s - r; // row r has r padded keys
        for hh in 0..h {
            for q in 0..t {
                for k in 0..s {
                    if k > q + (s - t) || k >= len {
                        v[((r * h + hh) * t + q) * s + k] = -1e9;
                    }
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(v, [b, h, t, s]), &Default::default())
}

fn softmax_grads<B: AutodiffBackend>(
    fused: bool,
    spec: SoftmaxSpec,
) -> (Tensor<B::InnerBackend, 4>, Tensor<B::InnerBackend, 4>) {
    let (b, h, t, s) = (3, 2, 19, 21);
    // Non-contiguous scores (a permuted view), like the attention's strided matmul outputs may be.
    let scores = random::<B, 4>([b, t, h, s], 1).permute([0, 2, 1, 3]).require_grad();
    let bias = mask_bias::<B>(b, h, t, s);
    let w = random::<B, 4>([b, h, t, s], 2);
    let p = if fused {
        attention_softmax(scores.clone(), Some(bias), spec)
    } else {
        reference::attention_softmax(scores.clone(), Some(bias), spec)
    };
    let grads = (p.clone() * w).sum().backward();
    (p.inner(), scores.grad(&grads).expect("grad into scores"))
}

#[test]
fn backends_with_fused_kernels() {
    // With the `flex` feature (as the workspace builds it) Flex takes the fused kernels; without it
    // every backend takes the compositions, and the tests below compare the compositions with themselves.
    let on = cfg!(feature = "flex");
    assert_eq!(fast_path::<Flex>(), on);
    assert_eq!(fast_path::<Ad>(), on);
    assert_eq!(fast_path::<AdCkpt>(), on);
}

#[test]
fn attention_softmax_matches_composition() {
    for spec in [SoftmaxSpec { scale: 0.125, softcap: None }, SoftmaxSpec { scale: 0.3, softcap: Some(5.0) }] {
        let (p_ref, g_ref) = softmax_grads::<Ad>(false, spec);
        let (p, g) = softmax_grads::<Ad>(true, spec);
        assert_close(p, p_ref.clone(), 1e-6, "softmax values");
        assert_close(g, g_ref.clone(), 1e-5, "softmax grad");
        let (p, g) = softmax_grads::<AdCkpt>(true, spec);
        assert_close(p, p_ref, 1e-6, "softmax values (checkpointing)");
        assert_close(g, g_ref, 1e-5, "softmax grad (checkpointing)");
    }
    // A mask shared by all heads ([b, 1, t, s]) broadcasts, fused and composed alike.
    let spec = SoftmaxSpec { scale: 0.2, softcap: None };
    let run = |fused: bool| {
        let scores = random::<Ad, 4>([3, 4, 19, 21], 16).require_grad();
        let bias = mask_bias::<Ad>(3, 1, 19, 21);
        let w = random::<Ad, 4>([3, 4, 19, 21], 17);
        let p = if fused {
            attention_softmax(scores.clone(), Some(bias), spec)
        } else {
            reference::attention_softmax(scores.clone(), Some(bias), spec)
        };
        let grads = (p.clone() * w).sum().backward();
        (p.inner(), scores.grad(&grads).unwrap())
    };
    let ((p0, g0), (p1, g1)) = (run(false), run(true));
    assert_close(p1, p0, 1e-6, "broadcast bias values");
    assert_close(g1, g0, 1e-5, "broadcast bias grad");
    // Plain Flex, no bias.
    let spec = SoftmaxSpec { scale: 0.5, softcap: None };
    let x = random::<Flex, 3>([4, 5, 33], 3);
    assert_close(attention_softmax(x.clone(), None, spec), reference::attention_softmax(x, None, spec), 1e-6, "plain");
}

#[test]
fn gated_activation_matches_composition() {
    for act in [GateAct::Silu, GateAct::GeluTanh] {
        let run = |fused: bool| {
            let g = random::<Ad, 3>([2, 7, 300], 4).require_grad();
            let u = random::<Ad, 3>([2, 7, 300], 5).require_grad();
            let w = random::<Ad, 3>([2, 7, 300], 6);
            let y = if fused {
                gated_activation(g.clone(), u.clone(), act)
            } else {
                reference::gated_activation(g.clone(), u.clone(), act)
            };
            let grads = (y.clone() * w).sum().backward();
            (y.inner(), g.grad(&grads).unwrap(), u.grad(&grads).unwrap())
        };
        let (y0, dg0, du0) = run(false);
        let (y1, dg1, du1) = run(true);
        assert_close(y1, y0, 2e-6, "gated values");
        assert_close(dg1, dg0, 1e-5, "gated grad gate");
        assert_close(du1, du0, 2e-6, "gated grad up");
    }
    // Only `up` tracked (the other parent absent).
    let g = random::<Ad, 2>([9, 40], 7);
    let u = random::<Ad, 2>([9, 40], 8).require_grad();
    let grads = gated_activation(g.clone(), u.clone(), GateAct::Silu).sum().backward();
    assert_close(
        u.grad(&grads).unwrap(),
        reference::gated_activation(g.inner(), Tensor::ones([9, 40], &Default::default()), GateAct::Silu),
        2e-6,
        "d/du",
    );
}

#[test]
fn rms_norm_matches_composition() {
    for weight_tracked in [true, false] {
        let run = |fused: bool| {
            let x = random::<Ad, 4>([2, 5, 3, 72], 9).require_grad();
            let mut wt = random::<Ad, 1>([72], 10);
            if weight_tracked {
                wt = wt.require_grad();
            }
            let w = random::<Ad, 4>([2, 5, 3, 72], 11);
            let y = if fused {
                rms_norm(x.clone(), wt.clone(), 1e-6)
            } else {
                reference::rms_norm(x.clone(), wt.clone(), 1e-6)
            };
            let grads = (y.clone() * w).sum().backward();
            (y.inner(), x.grad(&grads).unwrap(), wt.grad(&grads))
        };
        let (y0, dx0, dw0) = run(false);
        let (y1, dx1, dw1) = run(true);
        assert_close(y1, y0, 2e-6, "rms values");
        assert_close(dx1, dx0, 2e-5, "rms grad x");
        assert_eq!(dw0.is_some(), weight_tracked);
        assert_eq!(dw1.is_some(), weight_tracked);
        if let (Some(a), Some(b)) = (dw1, dw0) {
            assert_close(a, b, 2e-5, "rms grad w");
        }
    }
}

#[test]
fn untracked_inputs_give_untracked_outputs() {
    // No input requires a gradient: the op is not recorded, and the result is still right.
    let x = random::<Ad, 2>([6, 64], 12);
    let w = Tensor::<Ad, 1>::ones([64], &Default::default());
    let y = rms_norm(x.clone(), w.clone(), 1e-5);
    assert!(!y.is_require_grad());
    assert_close(y.inner(), reference::rms_norm(x.inner(), w.inner(), 1e-5), 2e-6, "untracked");
}

#[test]
fn softmax_cross_entropy_matches_composition() {
    let targets = [3u32, 0, 99, 42, 7];
    for cap in [None, Some(4.0)] {
        let z = random::<Flex, 2>([5, 100], 13);
        let (l0, g0) = reference::softmax_cross_entropy(z.clone(), &targets, cap, true);
        let (l1, g1) = softmax_cross_entropy(z.clone(), &targets, cap, true);
        assert_close(l1, l0.clone(), 1e-6, "xent loss");
        assert_close(g1.unwrap(), g0.unwrap(), 1e-6, "xent grad");
        let (l2, g2) = softmax_cross_entropy(z, &targets, cap, false);
        assert!(g2.is_none());
        assert_close(l2, l0, 1e-6, "xent loss without grad");
    }
}

#[test]
fn permute_contiguous_matches_permute() {
    let x = random::<Ad, 4>([2, 5, 3, 7], 14).require_grad();
    let w = random::<Ad, 4>([3, 2, 7, 5], 15);
    let y = permute_contiguous(x.clone(), [2, 0, 3, 1]);
    assert_close(y.clone().inner(), x.clone().inner().permute([2, 0, 3, 1]), 0.0, "values");
    // A strided gradient (a transposed view) comes back through the inverse permutation.
    let g = (y.swap_dims(0, 2) * w.clone().swap_dims(0, 2)).sum().backward();
    let expect = w.inner().permute([1, 3, 0, 2]);
    assert_close(x.grad(&g).unwrap(), expect, 0.0, "grad");
}

/// Values and gradients (w.r.t. both operands) of [`matmul`] against Burn's own `matmul`, on autodiff
/// backend `B`; `make` builds the two operands (possibly strided views) from the backend's tensors.
fn matmul_case<B: AutodiffBackend, const D: usize>(
    a_shape: [usize; D],
    b_shape: [usize; D],
    view: impl Fn(Tensor<B, D>, Tensor<B, D>) -> (Tensor<B, D>, Tensor<B, D>),
    what: &str,
) {
    let run = |fused: bool| {
        let a = random::<B, D>(a_shape, 11).require_grad();
        let b = random::<B, D>(b_shape, 12).require_grad();
        let (va, vb) = view(a.clone(), b.clone());
        let c = if fused { matmul(va, vb) } else { va.matmul(vb) };
        let w = random::<B, D>(c.dims(), 13);
        let grads = (c.clone() * w).sum().backward();
        (c.inner(), a.grad(&grads).expect("grad into a"), b.grad(&grads).expect("grad into b"))
    };
    let (c, ga, gb) = run(true);
    let (c0, ga0, gb0) = run(false);
    assert_eq!(c.dims(), c0.dims(), "{what}: output shape");
    // Two f32 GEMMs summing in different orders (blocks, threads) differ by rounding that grows with
    // the longest sum (observed vs f64 at 200×300×250: 2.2e-5 ours, 1.7e-5 the `gemm` crate's).
    let batch: usize = a_shape[..D - 2].iter().chain(&b_shape[..D - 2]).product();
    let longest = *a_shape.iter().chain(&b_shape).max().unwrap() * batch;
    let tol = (2e-7 * longest as f32).max(1e-5);
    assert_close(c, c0, tol, &format!("{what}: value"));
    assert_close(ga, ga0, tol, &format!("{what}: grad a"));
    assert_close(gb, gb0, tol, &format!("{what}: grad b"));
}

fn matmul_cases<B: AutodiffBackend>() {
    matmul_case::<B, 2>([37, 23], [23, 41], |a, b| (a, b), "2-d");
    // The tied LM head: the weight read transposed; a row slice of the activations (start offset).
    matmul_case::<B, 2>([50, 23], [41, 23], |a, b| (a.slice([7..44, 0..23]), b.transpose()), "strided 2-d");
    // Large enough for the GEMM's own threads.
    matmul_case::<B, 2>([200, 300], [300, 250], |a, b| (a, b), "parallel 2-d");
    // Grouped-query attention: keys broadcast over the query heads of their group and read transposed.
    matmul_case::<B, 5>([2, 3, 2, 5, 4], [2, 3, 1, 6, 4], |a, b| (a, b.swap_dims(3, 4)), "broadcast batch");
    // Many small products, one per thread.
    matmul_case::<B, 3>([8, 64, 64], [8, 64, 64], |a, b| (a, b), "batch-parallel");
    matmul_case::<B, 4>([1, 4, 9, 7], [3, 1, 7, 5], |a, b| (a, b), "both operands broadcast");
}

#[test]
fn matmul_matches_burn_with_gradients() {
    // Every f32 GEMM the CPU runs (this is the only test that switches them).
    use crate::GemmKernel;
    #[cfg(target_arch = "x86_64")]
    let (avx2, avx512) = (
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"),
        std::is_x86_feature_detected!("avx512f"),
    );
    #[cfg(not(target_arch = "x86_64"))]
    let (avx2, avx512) = (false, false);
    let default = crate::gemm_kernel();
    for kernel in [GemmKernel::OwnAvx512, GemmKernel::OwnAvx2, GemmKernel::Crate] {
        let expect = match kernel {
            GemmKernel::OwnAvx512 if avx2 && avx512 => kernel,
            GemmKernel::OwnAvx512 | GemmKernel::OwnAvx2 if avx2 => GemmKernel::OwnAvx2,
            _ => GemmKernel::Crate,
        };
        assert_eq!(crate::set_gemm_kernel(kernel), expect, "the GEMM switch");
        assert_eq!(crate::gemm_kernel(), expect, "the GEMM switch");
        assert_eq!(crate::own_gemm(), expect != GemmKernel::Crate);
        matmul_cases::<Ad>();
        matmul_cases::<AdCkpt>();
    }
    crate::set_gemm_kernel(default);
    // Plain Flex and an empty inner dimension.
    let (a, b) = (random::<Flex, 3>([2, 6, 5], 1), random::<Flex, 3>([1, 5, 3], 2));
    assert_close(matmul(a.clone(), b.clone()), a.matmul(b), 1e-5, "plain Flex");
    let z = matmul(Tensor::<Flex, 2>::zeros([3, 0], &Default::default()), Tensor::zeros([0, 4], &Default::default()));
    assert_eq!(z.into_data().to_vec::<f32>().unwrap(), vec![0f32; 12], "k = 0");
}

#[test]
fn matmul_add_accumulates_without_touching_shared_buffers() {
    let (a, b) = (random::<Flex, 2>([30, 20], 3), random::<Flex, 2>([40, 20], 4).transpose());
    let acc = random::<Flex, 2>([30, 40], 5);
    let keep = acc.clone(); // shared: the sum must go to a copy
    let want = acc.clone() + a.clone().matmul(b.clone());
    let got = matmul_add(acc, a.clone(), b.clone());
    assert_close(got.clone(), want.clone(), 1e-5, "shared accumulator");
    assert_close(keep.clone(), random::<Flex, 2>([30, 40], 5), 0.0, "the shared accumulator is untouched");
    // Unique accumulator: in place, same result.
    assert_close(matmul_add(got, a.clone(), b.clone()), want + a.matmul(b), 1e-5, "owned accumulator");
}

/// `x` as bf16 bits' neighbour count from `y` (0: equal after rounding both to bf16).
fn bf16_ulps(x: f32, y: f32) -> i64 {
    let key = |v: f32| {
        let b = (v.to_bits() >> 16) as i32 as i64;
        if b & 0x8000 != 0 {
            -(b & 0x7FFF)
        } else {
            b
        }
    };
    (key(x) - key(y)).abs()
}

/// `got` and `want` (both bf16 values stored in f32) agree to one bf16 step everywhere and exactly at
/// `exact_share` of the elements (the f32 sums are accumulated in another order, which can move a sum
/// across a bf16 rounding boundary).
fn assert_bf16_close(got: &[f32], want: &[f32], exact_share: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits() & 0xFFFF, 0, "{what}: element {i} = {g} is not a bf16 value");
        assert!(bf16_ulps(g, w) <= 1 || (g - w).abs() <= 1e-6, "{what}: element {i}: {g} vs {w}");
    }
    let exact = got.iter().zip(want).filter(|(g, w)| g == w).count() as f64 / got.len() as f64;
    assert!(exact >= exact_share, "{what}: only {:.1}% of the elements equal", 100.0 * exact);
}

/// `random` rounded to bf16 values (see [`matmul_bf16_case`]).
fn random_bf16<B: Backend, const D: usize>(shape: [usize; D], seed: u64) -> Tensor<B, D> {
    let v = random::<B, D>(shape, seed).into_data().to_vec::<f32>().unwrap();
    Tensor::from_data(TensorData::new(v.into_iter().map(half_round).collect::<Vec<_>>(), shape), &Default::default())
}

/// [`matmul_bf16`] (AMX) against Burn's f32 product with results rounded to bf16 (`rt`: a cast to bf16
/// and back, which rounds the value forward and the gradient backward), values and both gradients.
/// The operands and the upstream gradient are bf16 values already: Burn 0.21's f32 → bf16 cast on Flex
/// is not round-to-nearest (it rounds 0x…8003-type values down; see the next test), so only the
/// results' rounding goes through it, and the operands' rounding is checked against f64 separately.
fn matmul_bf16_case<B: AutodiffBackend, const D: usize>(
    a_shape: [usize; D],
    b_shape: [usize; D],
    view: impl Fn(Tensor<B, D>, Tensor<B, D>) -> (Tensor<B, D>, Tensor<B, D>),
    exact_share: f64,
    what: &str,
) {
    use burn::tensor::FloatDType;
    let run = |amx: bool| {
        let a = random_bf16::<B, D>(a_shape, 21).require_grad();
        let b = random_bf16::<B, D>(b_shape, 22).require_grad();
        let (va, vb) = view(a.clone(), b.clone());
        let c = if amx {
            matmul_bf16(va, vb).unwrap_or_else(|_| panic!("{what}: AMX path not taken"))
        } else {
            let rt = |t: Tensor<B, D>| t.cast(FloatDType::BF16).cast(FloatDType::F32);
            // On the bf16 operands the inner casts change no value; backward they round the gradients.
            rt(rt(va).matmul(rt(vb)))
        };
        let w = random_bf16::<B, D>(c.dims(), 23);
        let grads = (c.clone() * w).sum().backward();
        let v = |t: Tensor<B::InnerBackend, D>| t.into_data().convert::<f32>().to_vec::<f32>().unwrap();
        (v(c.inner()), v(a.grad(&grads).expect("grad into a")), v(b.grad(&grads).expect("grad into b")))
    };
    let (c, ga, gb) = run(true);
    let (c0, ga0, gb0) = run(false);
    assert_bf16_close(&c, &c0, exact_share, &format!("{what}: value"));
    assert_bf16_close(&ga, &ga0, exact_share, &format!("{what}: grad a"));
    assert_bf16_close(&gb, &gb0, exact_share, &format!("{what}: grad b"));
}

#[test]
fn matmul_bf16_on_amx_matches_burn_with_gradients() {
    if !amx_available() {
        let (a, b) = (random::<Flex, 2>([3, 4], 1), random::<Flex, 2>([4, 5], 2));
        assert!(matmul_bf16(a, b).is_err(), "without AMX the inputs come back");
        eprintln!("matmul_bf16: no AMX here ({}); only the fallback was checked", crate::amx_why());
        return;
    }
    fn cases<B: AutodiffBackend>() {
        // Edges everywhere: m, k, n not multiples of 16 / 32.
        matmul_bf16_case::<B, 2>([37, 45], [45, 70], |a, b| (a, b), 0.97, "2-d, ragged");
        // The tied LM head: activations sliced (offset), the weight read transposed.
        matmul_bf16_case::<B, 2>([50, 64], [99, 64], |a, b| (a.slice([7..44, 0..64]), b.transpose()), 0.97, "strided");
        // Large enough for the threaded path (strips across threads) …
        matmul_bf16_case::<B, 2>([200, 300], [300, 260], |a, b| (a, b), 0.97, "parallel");
        // … and a narrow one (row bands across threads).
        matmul_bf16_case::<B, 2>([300, 200], [200, 40], |a, b| (a, b), 0.97, "parallel, narrow");
        // Grouped-query attention's keys: broadcast over the heads of a group, read transposed.
        matmul_bf16_case::<B, 5>([2, 3, 2, 5, 40], [2, 3, 1, 6, 40], |a, b| (a, b.swap_dims(3, 4)), 0.97, "broadcast");
        matmul_bf16_case::<B, 3>([8, 64, 48], [8, 48, 33], |a, b| (a, b), 0.97, "batch-parallel");
    }
    cases::<Ad>();
    cases::<AdCkpt>();
}

/// The AMX product against an f64 product of the operands rounded to nearest-even bf16, rounded to
/// bf16: operands are rounded (not truncated) on every packing path (row-major, transposed views,
/// offsets) and the sum is rounded once. Also pins the Burn cast behaviour the test above works around.
#[test]
fn matmul_bf16_rounds_operands_and_result_to_nearest() {
    let x = f32::from_bits(0xbe9c_8003); // just above halfway between two bf16 values
    assert_eq!(half_round(x).to_bits(), 0xbe9d_0000);
    if !amx_available() {
        return; // covered by the test above
    }
    for (m, k, n, transposed) in [(45, 300, 67, false), (200, 300, 260, false), (37, 45, 70, true), (16, 300, 16, true)]
    {
        let (a, b) = (random::<Flex, 2>([m, k], 31), random::<Flex, 2>([k, n], 32));
        let (av, bv) = (a.clone().into_data().to_vec::<f32>().unwrap(), b.clone().into_data().to_vec::<f32>().unwrap());
        let (a, b) = if transposed {
            // The same matrices, stored transposed and read through transposed views.
            (a.transpose().into_data(), b.transpose().into_data())
        } else {
            (a.into_data(), b.into_data())
        };
        let (a, b) = (
            Tensor::<Flex, 2>::from_data(a, &Default::default()),
            Tensor::<Flex, 2>::from_data(b, &Default::default()),
        );
        let (a, b) = if transposed { (a.transpose(), b.transpose()) } else { (a, b) };
        let got = matmul_bf16(a, b).ok().unwrap().into_data().to_vec::<f32>().unwrap();
        let r = |x: f32| half_round(x) as f64;
        let mut want = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                want[i * n + j] = half_round((0..k).map(|p| r(av[i * k + p]) * r(bv[p * n + j])).sum::<f64>() as f32);
            }
        }
        assert_bf16_close(&got, &want, 0.99, &format!("{m}×{k}×{n} (transposed: {transposed}) against f64"));
    }
}

/// Round to nearest even bf16, written independently of the kernel's bit trick.
fn half_round(x: f32) -> f32 {
    let (lo, hi) = (f32::from_bits(x.to_bits() & 0xFFFF_0000), f32::from_bits((x.to_bits() & 0xFFFF_0000) + 0x1_0000));
    let (dl, dh) = ((x - lo).abs(), (hi - x).abs());
    if dl < dh || (dl == dh && (lo.to_bits() >> 16) & 1 == 0) {
        lo
    } else {
        hi
    }
}

/// bf16-stored operands (a LoRA run's frozen base) are read as they are: the product, and the gradient
/// into the f32 operand, equal bit for bit those of the same values stored in f32 — with the weight read
/// row-major (forward) and transposed (its gradient product, the tied head), on the left and the right.
#[test]
fn matmul_bf16_reads_bf16_storage_like_f32() {
    use burn::tensor::FloatDType;
    if !amx_available() {
        return; // covered by the fallback check above
    }
    let vals = |t: Tensor<Flex, 2>| t.into_data().convert::<f32>().to_vec::<f32>().unwrap();
    for (m, k, n) in [(37, 45, 70), (64, 96, 48), (200, 300, 260)] {
        let x = random::<Ad, 2>([m, k], 41).require_grad();
        let w32 = random_bf16::<Ad, 2>([k, n], 42); // bf16 values, f32 storage
        let w16 = w32.clone().cast(FloatDType::BF16); // the same values, bf16 storage
        assert_eq!(w16.dtype(), burn::tensor::DType::BF16);
        let up = random::<Ad, 2>([m, n], 43);
        let run = |w: Tensor<Ad, 2>| {
            let c = matmul_bf16(x.clone(), w).unwrap_or_else(|_| panic!("AMX path not taken"));
            let g = (c.clone() * up.clone()).sum().backward();
            (vals(c.inner()), vals(x.grad(&g).expect("grad into x")))
        };
        let (c32, g32) = run(w32.clone());
        let (c16, g16) = run(w16.clone());
        assert_eq!(c16, c32, "{m}×{k}×{n}: product over bf16 storage");
        assert_eq!(g16, g32, "{m}×{k}×{n}: gradient through bf16 storage (the weight read transposed)");
        // bf16 storage on the left, read transposed, on plain Flex.
        let (l32, l16) = (w32.inner().transpose(), w16.inner().transpose());
        let r = random::<Flex, 2>([k, 29], 44);
        let a = vals(matmul_bf16(l16, r.clone()).unwrap_or_else(|_| panic!("AMX path")));
        let b = vals(matmul_bf16(l32, r).unwrap_or_else(|_| panic!("AMX path")));
        assert_eq!(a, b, "{m}×{k}×{n}: bf16 storage on the left, transposed");
    }
    // A tracked bf16 operand would need a bf16 gradient: not this path.
    let w = random::<Ad, 2>([8, 4], 45).cast(FloatDType::BF16).require_grad();
    assert!(matmul_bf16(random::<Ad, 2>([3, 8], 46), w).is_err());
}

/// Gradient clipping's two passes on Flex: `sum_squares` equals an f64 sum of the squares (for any
/// thread count: fixed chunks), `scale` equals `x * factor` and writes into an unshared buffer; on
/// `Autodiff<Flex>` (not the inner backend) the input comes back for the composition.
#[test]
fn sum_squares_and_scale_match_the_composition() {
    let x = random::<Flex, 2>([300, 1000], 7); // several 64-Ki chunks and a remainder
    let v = x.clone().into_data().to_vec::<f32>().unwrap();
    let exact: f64 = v.iter().map(|&a| f64::from(a) * f64::from(a)).sum();
    let got = sum_squares(x.clone()).unwrap_or_else(|_| panic!("no fast path on Flex"));
    assert!((got - exact).abs() <= 1e-6 * exact, "sum_squares {got} vs {exact}");
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let single = one.install(|| sum_squares(x.clone()).ok().unwrap());
    assert_eq!(single.to_bits(), got.to_bits(), "sum_squares depends on the thread count");
    assert_close(scale(x.clone(), 0.37), x.clone() * 0.37, 1e-7, "scale");
    assert!(sum_squares(random::<Ad, 2>([4, 4], 1)).is_err(), "Autodiff<Flex> took the host path");
    assert_close(scale(random::<Ad, 2>([4, 4], 1), 2.0), random::<Ad, 2>([4, 4], 1) * 2.0, 0.0, "scale on Ad");
}

/// RoPE tables as the model builds them (`theta` 10 000, positions from 0).
fn rope_rows_for(b: usize, t: usize, d: usize) -> RopeRows {
    let half = d / 2;
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    for _ in 0..b {
        for p in 0..t {
            for j in 0..d {
                let f = 1.0f32 / 10_000f32.powf((2 * (j % half)) as f32 / d as f32);
                cos.push((p as f32 * f).cos());
                sin.push((p as f32 * f).sin());
            }
        }
    }
    RopeRows { cos: cos.into(), sin: sin.into() }
}

/// RoPE by slicing halves (HF's `rotate_half`) on `x: [b, t, heads, d]` with one table row per (row, position).
fn rope_by_halves<B: Backend>(x: Tensor<B, 4>, r: &RopeRows) -> Tensor<B, 4> {
    let [b, t, heads, d] = x.dims();
    let dev = x.device();
    let table = |v: &[f32]| {
        let rows: Vec<f32> = v.chunks(d).flat_map(|row| (0..heads).flat_map(move |_| row.iter().copied())).collect();
        Tensor::<B, 4>::from_data(TensorData::new(rows, [b, t, heads, d]), &dev)
    };
    let (x1, x2) =
        (x.clone().slice([0..b, 0..t, 0..heads, 0..d / 2]), x.clone().slice([0..b, 0..t, 0..heads, d / 2..d]));
    x * table(&r.cos) + Tensor::cat(vec![x2.neg(), x1], 3) * table(&r.sin)
}

/// `softmax(scale·q·kᵀ (softcapped) + mask)·v` for `q: [b, kv_heads, rep, t, d]` and `k, v: [b, kv_heads,
/// rep, s, d]` with a full additive mask from `visible(row, query, key)` → `[b, t, heads·d]`.
fn masked_attention<B: Backend>(
    q: Tensor<B, 5>,
    k: Tensor<B, 5>,
    v: Tensor<B, 5>,
    spec: &CausalAttention,
    visible: impl Fn(usize, usize, usize) -> bool,
) -> Tensor<B, 3> {
    let [b, nkv, rep, t, d] = q.dims();
    let (s, nh) = (k.dims()[3], nkv * rep);
    let mut bias = vec![0f32; b * nh * t * s];
    for r in 0..b {
        for h in 0..nh {
            for i in 0..t {
                for j in 0..s {
                    if !visible(r, i, j) {
                        bias[((r * nh + h) * t + i) * s + j] = -1e9;
                    }
                }
            }
        }
    }
    let bias = Tensor::<B, 5>::from_data(TensorData::new(bias, [b, nkv, rep, t, s]), &q.device());
    let scores = q.matmul(k.swap_dims(3, 4)) * spec.scale;
    let z = match spec.softcap {
        Some(cap) => (scores / cap).tanh() * cap,
        None => scores,
    };
    let p = burn::tensor::activation::softmax(z + bias, 4);
    p.matmul(v).permute([0, 3, 1, 2, 4]).reshape([b, t, nh * d])
}

/// The attention the model composes from Burn's own ops: RoPE by slicing halves, keys and values
/// repeated over the query heads, a full additive mask, softmax, products.
fn attention_composition<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    spec: &CausalAttention,
) -> Tensor<B, 3> {
    let [b, t, nh, d] = q.dims();
    let nkv = k.dims()[2];
    let rep = nh / nkv;
    let rope = |x: Tensor<B, 4>| match &spec.rope {
        None => x,
        Some(r) => rope_by_halves(x, r),
    };
    let (q, k) = (rope(q), rope(k));
    let q = q.reshape([b, t, nkv, rep, d]).permute([0, 2, 3, 1, 4]);
    let k = k.reshape([b, t, nkv, 1, d]).permute([0, 2, 3, 1, 4]).repeat_dim(2, rep);
    let v = v.reshape([b, t, nkv, 1, d]).permute([0, 2, 3, 1, 4]).repeat_dim(2, rep);
    masked_attention(q, k, v, spec, |r, i, j| {
        let len = spec.lengths.as_ref().map_or(t, |l| l[r]);
        j <= i && j < len && spec.window.is_none_or(|w| i - j < w)
    })
}

/// Output and the gradients of q, k, v: fused vs composed.
#[allow(clippy::type_complexity)]
fn assert_attention_close<B: Backend>(
    (fo, fq, fk, fv): (Tensor<B, 3>, Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>),
    (co, cq, ck, cv): (Tensor<B, 3>, Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>),
    what: &str,
) {
    assert_close(fo, co, 1e-5, &format!("output, {what}"));
    assert_close(fq, cq, 1e-4, &format!("dq, {what}"));
    assert_close(fk, ck, 1e-4, &format!("dk, {what}"));
    assert_close(fv, cv, 1e-4, &format!("dv, {what}"));
}

/// Fused vs composed attention on `B`: outputs (where a query sees a key) and the gradients of q, k, v
/// (with [`CausalAttention::cached`]: of q and of the whole cache) under a random upstream gradient that is
/// zero at queries seeing nothing. Without a cache: 3 rows of 70 positions; over one: 7 new positions
/// after the cache's `cached` slots, 2 spare slots.
fn attention_case<B: AutodiffBackend>(nh: usize, nkv: usize, spec: CausalAttention, seed: u64) {
    let cached = spec.cached.clone();
    let (b, d) = (3, 8);
    let t = if cached.is_some() { 7 } else { 70 };
    let kv_shape = match &cached {
        None => [b, t, nkv, d],
        Some(c) => [b, nkv, c.cached + t + 2, d],
    };
    // Fresh leaves for each run: a leaf reused after a backward can lose its gradient when another test
    // thread's backward runs at the same time (Burn 0.21's autodiff, tracel-ai/burn#5573).
    let leaves = || {
        (
            random::<B, 4>([b, t, nh, d], seed).require_grad(),
            random::<B, 4>(kv_shape, seed + 1).require_grad(),
            random::<B, 4>(kv_shape, seed + 2).require_grad(),
        )
    };
    let mut w = random::<B, 3>([b, t, nh * d], seed + 3).into_data().to_vec::<f32>().unwrap();
    for r in 0..b {
        let (off, klen) = match cached {
            None => (0, spec.lengths.as_ref().map_or(t, |l| l[r])),
            Some(_) => {
                let (off, klen, _) = cached_geometry(&spec, r, t);
                (off, klen)
            }
        };
        for i in 0..t {
            let pos = off + i;
            if !(0..klen).any(|j| j <= pos && spec.window.is_none_or(|w| pos - j < w)) {
                w[(r * t + i) * nh * d..][..nh * d].fill(0.0);
            }
        }
    }
    let w = Tensor::<B, 3>::from_data(TensorData::new(w, [b, t, nh * d]), &Default::default());
    // Packed: the fused op sees the real positions only, taken from (and its gradients flowing back into)
    // the same [b, t] inputs (a cache's keys are never packed); the composition's outputs are compared at
    // those positions.
    let packed = spec.packed_width.is_some();
    let rows: Vec<i64> = (0..b)
        .flat_map(|r| {
            let len = if packed { spec.lengths.as_ref().unwrap()[r] } else { t };
            (0..len).map(move |i| (r * t + i) as i64)
        })
        .collect();
    let n = rows.len();
    let rows = Tensor::<B, 1, burn::tensor::Int>::from_data(TensorData::new(rows, [n]), &Default::default());
    let pick = |x: Tensor<B, 4>| {
        let [_, _, h, d] = x.dims();
        x.reshape([b * t, h, d]).select(0, rows.clone()).reshape([1, n, h, d])
    };
    let pick_kv = |x: Tensor<B, 4>| if cached.is_some() { x } else { pick(x) };
    let pick3 = |x: Tensor<B, 3>| x.reshape([b * t, nh * d]).select(0, rows.clone()).reshape([1, n, nh * d]);
    let run = |fused: bool| {
        let (q, k, v) = leaves();
        let out = match (fused, packed) {
            (true, true) => {
                causal_attention(pick(q.clone()), pick_kv(k.clone()), pick_kv(v.clone()), &spec)
                    .map_err(|_| ())
                    .expect("the fused path")
                    * pick3(w.clone())
            }
            (true, false) => {
                let out =
                    causal_attention(q.clone(), k.clone(), v.clone(), &spec).map_err(|_| ()).expect("the fused path");
                pick3(out * w.clone())
            }
            (false, _) => {
                let spec = CausalAttention { packed_width: None, ..spec.clone() };
                let composed = match cached {
                    None => attention_composition(q.clone(), k.clone(), v.clone(), &spec),
                    Some(_) => cached_attention_composition(q.clone(), k.clone(), v.clone(), &spec),
                };
                pick3(composed * w.clone())
            }
        };
        let grads = out.clone().sum().backward();
        (out.inner(), q.grad(&grads).unwrap(), k.grad(&grads).unwrap(), v.grad(&grads).unwrap())
    };
    let (fused, composed) = (run(true), run(false));
    let what = format!(
        "cached {cached:?}, heads {nh}/{nkv}, softcap {:?}, window {:?}, lengths {:?}, rope {}, packed {packed}",
        spec.softcap,
        spec.window,
        spec.lengths,
        spec.rope.is_some()
    );
    assert_attention_close(fused, composed, &what);
}

#[test]
fn causal_attention_matches_composition_with_gradients() {
    if !cfg!(feature = "flex") {
        return;
    }
    let lengths: Arc<[usize]> = vec![70, 41, 5].into();
    let rope = Some(rope_rows_for(3, 70, 8));
    let cases = [
        // (heads, kv heads, scale, softcap, window, lengths, rope, packed)
        (6, 2, 0.35, None, None, None, rope.clone(), false),
        (6, 2, 0.35, None, None, Some(lengths.clone()), rope.clone(), false),
        (3, 3, 0.5, Some(2.0), None, Some(lengths.clone()), None, false),
        (4, 1, 0.35, Some(3.0), Some(9), Some(lengths.clone()), rope.clone(), false),
        (6, 2, 0.35, None, Some(40), Some(lengths.clone()), rope.clone(), false),
        (6, 2, 0.35, None, None, Some(lengths.clone()), rope.clone(), true),
        (4, 1, 0.35, Some(3.0), Some(9), Some(lengths), rope, true),
    ];
    for (i, (nh, nkv, scale, softcap, window, lengths, rope, packed)) in cases.into_iter().enumerate() {
        let spec =
            CausalAttention { scale, softcap, window, lengths, rope, packed_width: packed.then_some(70), cached: None };
        attention_case::<Ad>(nh, nkv, spec.clone(), 10 * i as u64 + 1);
        attention_case::<AdCkpt>(nh, nkv, spec.clone(), 10 * i as u64 + 1);
        if packed {
            continue;
        }
        // The plain backend's forward (inference) gives the same values.
        let [q, k, v] = [nh, nkv, nkv].map(|h| random::<Flex, 4>([3, 70, h, 8], 7 + h as u64));
        let fused = causal_attention(q.clone(), k.clone(), v.clone(), &spec).map_err(|_| ()).unwrap();
        let composed = attention_composition(q, k, v, &spec);
        if spec.window.is_none() {
            assert_close(fused, composed, 1e-5, "plain Flex forward");
        }
    }
}

/// Causal attention with `scale` and nothing else: no softcap, window, padding, RoPE, packing or cache.
fn plain_attention(scale: f32) -> CausalAttention {
    CausalAttention { scale, softcap: None, window: None, lengths: None, rope: None, packed_width: None, cached: None }
}

#[test]
fn causal_attention_leaves_other_inputs_to_the_caller() {
    // A head count that does not group (5 query heads over 2 key heads) comes back untouched.
    let spec = plain_attention(1.0);
    let q = random::<Flex, 4>([1, 4, 5, 8], 1);
    let kv = random::<Flex, 4>([1, 4, 2, 8], 2);
    assert!(causal_attention(q, kv.clone(), kv, &spec).is_err());
    // A cache without room for the new positions, and a prompt longer than the prompts' width.
    let q = random::<Flex, 4>([2, 4, 4, 8], 1);
    let kv = random::<Flex, 4>([2, 2, 9, 8], 2);
    let cached = |prompt_lens: Vec<usize>, cached| CausalAttention {
        cached: Some(CachedKeys { prompt_width: 4, prompt_lens: prompt_lens.into(), cached }),
        ..spec.clone()
    };
    assert!(causal_attention(q.clone(), kv.clone(), kv.clone(), &cached(vec![4, 2], 6)).is_err());
    assert!(causal_attention(q.clone(), kv.clone(), kv.clone(), &cached(vec![5, 2], 5)).is_err());
    assert!(causal_attention(q, kv.clone(), kv, &cached(vec![4, 2], 5)).is_ok());
}

/// What a row of a cached pass sees, by key position: `(query offset, key positions, slot of a position)`.
fn cached_geometry(spec: &CausalAttention, r: usize, t: usize) -> (usize, usize, impl Fn(usize) -> usize) {
    let c = spec.cached.clone().unwrap();
    let p = c.prompt_lens[r];
    let off = p + c.cached - c.prompt_width;
    let len = spec.lengths.as_ref().map_or(t, |l| l[r]);
    (off, off + len, move |pos: usize| if pos < p { pos } else { pos - p + c.prompt_width })
}

/// Attention over a KV cache composed from Burn's ops: each row's keys gathered by position (prompt
/// padding skipped), RoPE on the queries at their positions, a full additive mask, softmax, products.
fn cached_attention_composition<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    spec: &CausalAttention,
) -> Tensor<B, 3> {
    let [b, t, nh, d] = q.dims();
    let [_, nkv, slots, _] = k.dims();
    let rep = nh / nkv;
    let dev = q.device();
    let kmax = (0..b).map(|r| cached_geometry(spec, r, t).1).max().unwrap();
    let mut idx = Vec::new();
    for r in 0..b {
        let (_, klen, slot) = cached_geometry(spec, r, t);
        for g in 0..nkv {
            for pos in 0..kmax {
                idx.push(((r * nkv + g) * slots + if pos < klen { slot(pos) } else { 0 }) as i64);
            }
        }
    }
    let idx = Tensor::<B, 1, burn::tensor::Int>::from_data(TensorData::new(idx, [b * nkv * kmax]), &dev);
    let gather = |x: Tensor<B, 4>| {
        x.reshape([b * nkv * slots, d]).select(0, idx.clone()).reshape([b, nkv, 1, kmax, d]).repeat_dim(2, rep)
    };
    let (k, v) = (gather(k), gather(v));
    let q = match &spec.rope {
        None => q,
        Some(r) => rope_by_halves(q, r),
    };
    let q = q.reshape([b, t, nkv, rep, d]).permute([0, 2, 3, 1, 4]);
    masked_attention(q, k, v, spec, |r, i, j| {
        let (off, klen, _) = cached_geometry(spec, r, t);
        let pos = off + i;
        j <= pos && j < klen && spec.window.is_none_or(|w| pos - j < w)
    })
}

/// RoPE rows for queries at positions `offsets[r] + i`.
fn rope_rows_at(offsets: &[usize], t: usize, d: usize) -> RopeRows {
    let all = rope_rows_for(1, offsets.iter().max().unwrap() + t, d);
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    for &o in offsets {
        cos.extend_from_slice(&all.cos[o * d..(o + t) * d]);
        sin.extend_from_slice(&all.sin[o * d..(o + t) * d]);
    }
    RopeRows { cos: cos.into(), sin: sin.into() }
}

#[test]
fn cached_attention_matches_composition_with_gradients() {
    if !cfg!(feature = "flex") {
        return;
    }
    // Prompts of 5, 9 and 0 real tokens in 9 slots, 3 tokens after them, 7 new positions (7, 4, 1 real).
    let (width, done, t, d) = (9, 3, 7, 8);
    let prompt_lens: Arc<[usize]> = vec![5, 9, 0].into();
    let cached = Some(CachedKeys { prompt_width: width, prompt_lens: prompt_lens.clone(), cached: width + done });
    let offsets: Vec<usize> = prompt_lens.iter().map(|&p| p + done).collect();
    let rope = Some(rope_rows_at(&offsets, t, d));
    let lengths: Arc<[usize]> = vec![7, 4, 1].into();
    let cases = [
        // (heads, kv heads, softcap, window, lengths, rope, packed)
        (6, 2, None, None, None, rope.clone(), false),
        (6, 2, None, None, Some(lengths.clone()), rope.clone(), false),
        (3, 3, Some(2.0), None, Some(lengths.clone()), None, false),
        (4, 1, Some(3.0), Some(4), Some(lengths.clone()), rope.clone(), false),
        (6, 2, None, Some(11), Some(lengths.clone()), rope.clone(), true),
        (4, 1, None, None, Some(lengths), rope, true),
    ];
    for (i, (nh, nkv, softcap, window, lengths, rope, packed)) in cases.into_iter().enumerate() {
        let spec = CausalAttention {
            scale: 0.35,
            softcap,
            window,
            lengths,
            rope,
            packed_width: packed.then_some(t),
            cached: cached.clone(),
        };
        attention_case::<Ad>(nh, nkv, spec.clone(), 10 * i as u64 + 3);
        attention_case::<AdCkpt>(nh, nkv, spec.clone(), 10 * i as u64 + 3);
        if packed {
            continue;
        }
        // The plain backend's forward (generation, scoring) gives the same values.
        let q = random::<Flex, 4>([3, t, nh, d], 5);
        let [k, v] = [6, 7].map(|s| random::<Flex, 4>([3, nkv, width + done + t + 2, d], s));
        let fused = causal_attention(q.clone(), k.clone(), v.clone(), &spec).map_err(|_| ()).unwrap();
        let composed = cached_attention_composition(q, k, v, &spec);
        if spec.window.is_none() {
            assert_close(fused, composed, 1e-5, "plain Flex forward over a cache");
        }
    }
}

fn carrier_case<B: AutodiffBackend>() {
    // A non-contiguous `x` (a transposed view), as the LM head of a vocab-major model is handed in.
    let x = random::<B, 2>([7, 5], 1).require_grad();
    let g = random::<B, 2>([5, 7], 2);
    let xt = x.clone().transpose();
    let fused = gradient_carrier(xt.clone(), g.clone()) * 3.0 + xt.clone().sum();
    let grads = fused.clone().backward();
    let got = x.grad(&grads).unwrap();
    // A fresh graph for the composition (a backward consumes the one it ran through).
    let xt = x.clone().transpose();
    let y = xt.clone() * g.clone();
    let composed = (y.clone() - y.detach()).sum() * 3.0 + xt.sum();
    let grads = composed.clone().backward();
    let want = x.grad(&grads).unwrap();
    assert_close(fused.inner(), composed.inner(), 1e-6, "carrier value");
    assert_close(got, want, 1e-6, "carrier gradient");
}

#[test]
fn gradient_carrier_passes_its_gradient_scaled() {
    carrier_case::<Ad>();
    carrier_case::<AdCkpt>();
}

/// The kernel counters ([`stats`]): nothing while off; on, at least a product's work (2·m·k·n FLOPs)
/// and an attention's forward and backward. The only test that switches counting on (other tests'
/// kernels running at the same time can only add to what it counts, so on-phase checks are lower bounds).
#[test]
fn kernel_stats_count_products_and_attention_only_while_on() {
    let _ = stats::take();
    let (a, b) = (random::<Flex, 2>([24, 40], 1), random::<Flex, 2>([40, 16], 2));
    let _ = matmul(a.clone(), b.clone()).into_data();
    assert_eq!(stats::take(), stats::KernelStats::default(), "counted while off");

    stats::set_enabled(true);
    let _ = matmul(a, b).into_data();
    let spec = plain_attention(0.5);
    let q = Tensor::<Ad, 4>::from_inner(random::<Flex, 4>([2, 8, 4, 8], 3)).require_grad();
    let kv = Tensor::<Ad, 4>::from_inner(random::<Flex, 4>([2, 8, 2, 8], 4)).require_grad();
    let out = causal_attention(q, kv.clone(), kv, &spec).expect("fused attention");
    let _ = out.sum().backward();
    let s = stats::take();
    stats::set_enabled(false);
    assert!(s.products_f32.calls >= 1 && s.products_f32.flops >= (2 * 24 * 40 * 16) as f64, "{s:?}");
    assert!(s.products_f32.seconds > 0.0 && s.products_f32.gflops() > 0.0, "{s:?}");
    assert!(s.attention.calls >= 2 && s.attention.seconds > 0.0, "forward and backward: {s:?}");
}
