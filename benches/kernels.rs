//! The fused decoder kernels of `dft-kernels` against the tensor compositions they replace, at the
//! shapes of one SmolLM2-135M step (batch 4 × 216 tokens: 9 query / 3 key heads of 64, hidden 576,
//! MLP 1536, vocabulary 49,152), on Flex — forward + backward under `Autodiff<Flex>` for the ops with a
//! gradient, forward only for the LM-head cross-entropy chunk (it computes its own gradient), and one
//! optimiser update of a 10M-parameter tensor (Burn's `AdamW` vs `dft_train::FusedAdamW`).
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo bench --bench kernels            # criterion, 10 samples per point
//! ```
//! Allocations behave as in `dft` (`dft_train::retain_freed_memory`). Both sides of every pair compute the same values (checked by `dft-kernels`' and `dft-train`'s tests).

use burn::backend::{Autodiff, Flex};
use burn::optim::{AdamWConfig, SimpleOptimizer};
use burn::tensor::{Distribution, Tensor, TensorData};
use criterion::{criterion_group, BatchSize, Criterion};
use dft_kernels::{reference, GateAct, SoftmaxSpec};
use dft_train::FusedAdamW;
use std::hint::black_box;
use std::time::Duration;

type B = Flex;
type AB = Autodiff<Flex>;

fn randn<const D: usize>(shape: [usize; D]) -> Tensor<B, D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
}

/// Forward + backward of `f` on `inputs` (all tracked), weighted by `w` so that the output gradient is
/// not all ones; returns nothing (the work is what is timed).
fn fwd_bwd<const D: usize, const E: usize>(
    inputs: &[Tensor<B, D>],
    w: &Tensor<B, E>,
    f: &dyn Fn(Vec<Tensor<AB, D>>) -> Tensor<AB, E>,
) {
    let xs: Vec<Tensor<AB, D>> = inputs.iter().map(|x| Tensor::from_inner(x.clone()).require_grad()).collect();
    let y = f(xs.clone());
    let grads = (y * Tensor::from_inner(w.clone())).sum().backward();
    for x in xs {
        black_box(x.grad(&grads));
    }
}

fn bench_kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("kernels");

    // Attention softmax: scores [4, 3 kv heads, 3 per group, 216, 216] with the causal mask.
    let scores = randn([4, 3, 3, 216, 216]);
    let mut mask = vec![0f32; 216 * 216];
    for q in 0..216 {
        for k in q + 1..216 {
            mask[q * 216 + k] = -1e9;
        }
    }
    let bias: Tensor<B, 5> = Tensor::<B, 2>::from_data(TensorData::new(mask, [216, 216]), &Default::default())
        .reshape([1, 1, 1, 216, 216])
        .expand([4, 3, 3, 216, 216]);
    let bias = Tensor::<B, 5>::from_data(bias.into_data(), &Default::default());
    let w5 = randn([4, 3, 3, 216, 216]);
    let spec = SoftmaxSpec { scale: 0.125, softcap: None };
    let ad_bias = Tensor::<AB, 5>::from_inner(bias.clone());
    group.bench_function("attention softmax fwd+bwd [4x9x216x216]/composition", |b| {
        b.iter(|| {
            fwd_bwd(std::slice::from_ref(&scores), &w5, &|x| {
                reference::attention_softmax(x[0].clone(), Some(ad_bias.clone()), spec)
            })
        })
    });
    group.bench_function("attention softmax fwd+bwd [4x9x216x216]/fused", |b| {
        b.iter(|| {
            fwd_bwd(std::slice::from_ref(&scores), &w5, &|x| {
                dft_kernels::attention_softmax(x[0].clone(), Some(ad_bias.clone()), spec)
            })
        })
    });

    // A whole attention (after the projections): RoPE, scores, masked softmax, weighted values, for
    // q [4, 216, 9, 64] and k, v [4, 216, 3, 64] — the model's composition (what `CausalLm` runs with
    // `with_fused_attention(false)`) against `dft_kernels::causal_attention`.
    let (bt, t, nh, nkv, d) = (4usize, 216usize, 9usize, 3usize, 64usize);
    let qkv = [randn([bt, t, nh, d]), randn([bt, t, nkv, d]), randn([bt, t, nkv, d])];
    let w_attn = randn([bt, t, nh * d]);
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    for _ in 0..bt {
        for pos in 0..t {
            for j in 0..d {
                let f = 1.0f32 / 100_000f32.powf((2 * (j % (d / 2))) as f32 / d as f32);
                cos.push((pos as f32 * f).cos());
                sin.push((pos as f32 * f).sin());
            }
        }
    }
    let table = |v: &[f32], heads: usize| {
        let rows: Vec<f32> = v.chunks(d).flat_map(|r| (0..heads).flat_map(move |_| r.iter().copied())).collect();
        Tensor::<AB, 4>::from_data(TensorData::new(rows, [bt, t, heads, d]), &Default::default())
    };
    let (cq, sq, ck, sk) = (table(&cos, nh), table(&sin, nh), table(&cos, nkv), table(&sin, nkv));
    let mut r = vec![0f32; d * d];
    for i in 0..d / 2 {
        r[(d / 2 + i) * d + i] = -1.0;
        r[i * d + d / 2 + i] = 1.0;
    }
    let rotate = Tensor::<AB, 2>::from_data(TensorData::new(r, [d, d]), &Default::default());
    let causal_bias = Tensor::<AB, 5>::from_inner(Tensor::<B, 5>::from_data(
        bias.clone().slice([0..1, 0..1, 0..1]).into_data(),
        &Default::default(),
    ))
    .expand([bt, 1, 1, t, t]);
    let causal_bias = Tensor::<AB, 5>::from_data(causal_bias.into_data(), &Default::default());
    let attn_spec = dft_kernels::CausalAttention {
        scale: 0.125,
        softcap: None,
        window: None,
        lengths: None,
        rope: Some(dft_kernels::RopeRows { cos: cos.into(), sin: sin.into() }),
        packed_width: None,
        cached: None,
    };
    group.bench_function("attention fwd+bwd [4x216, 9/3 heads of 64]/composition", |b| {
        b.iter(|| {
            fwd_bwd(&qkv, &w_attn, &|x| {
                let rope = |x: Tensor<AB, 4>, c: &Tensor<AB, 4>, s: &Tensor<AB, 4>| {
                    let [b_, t_, h_, d_] = x.dims();
                    let rot = dft_kernels::matmul(x.clone().reshape([b_ * t_ * h_, d_]), rotate.clone())
                        .reshape([b_, t_, h_, d_]);
                    x * c.clone() + rot * s.clone()
                };
                let q = rope(x[0].clone(), &cq, &sq);
                let k = rope(x[1].clone(), &ck, &sk);
                let q = dft_kernels::permute_contiguous(q.reshape([bt, t, nkv, 3, d]), [0, 2, 3, 1, 4]);
                let k = dft_kernels::permute_contiguous(k.reshape([bt, t, nkv, 1, d]), [0, 2, 3, 1, 4]);
                let v = dft_kernels::permute_contiguous(x[2].clone().reshape([bt, t, nkv, 1, d]), [0, 2, 3, 1, 4]);
                let scores = dft_kernels::matmul(q, k.swap_dims(3, 4));
                let probs = dft_kernels::attention_softmax(scores, Some(causal_bias.clone()), spec);
                dft_kernels::permute_contiguous(dft_kernels::matmul(probs, v), [0, 3, 1, 2, 4]).reshape([bt, t, nh * d])
            })
        })
    });
    group.bench_function("attention fwd+bwd [4x216, 9/3 heads of 64]/fused", |b| {
        b.iter(|| {
            fwd_bwd(&qkv, &w_attn, &|x| {
                dft_kernels::causal_attention(x[0].clone(), x[1].clone(), x[2].clone(), &attn_spec)
                    .map_err(|_| ())
                    .expect("fused attention on Autodiff<Flex>")
            })
        })
    });

    // Gated MLP activation silu(gate) · up on [864, 1536].
    let gu = [randn([864, 1536]), randn([864, 1536])];
    let w2 = randn([864, 1536]);
    group.bench_function("silu(gate)*up fwd+bwd [864x1536]/composition", |b| {
        b.iter(|| fwd_bwd(&gu, &w2, &|x| reference::gated_activation(x[0].clone(), x[1].clone(), GateAct::Silu)))
    });
    group.bench_function("silu(gate)*up fwd+bwd [864x1536]/fused", |b| {
        b.iter(|| fwd_bwd(&gu, &w2, &|x| dft_kernels::gated_activation(x[0].clone(), x[1].clone(), GateAct::Silu)))
    });

    // RMSNorm on [4, 216, 576] with a trained weight.
    let x = [randn([4, 216, 576])];
    let wn = Tensor::<AB, 1>::from_inner(randn([576])).require_grad();
    let w3 = randn([4, 216, 576]);
    group.bench_function("rmsnorm fwd+bwd [864x576]/composition", |b| {
        b.iter(|| fwd_bwd(&x, &w3, &|x| reference::rms_norm(x[0].clone(), wn.clone(), 1e-5)))
    });
    group.bench_function("rmsnorm fwd+bwd [864x576]/fused", |b| {
        b.iter(|| fwd_bwd(&x, &w3, &|x| dft_kernels::rms_norm(x[0].clone(), wn.clone(), 1e-5)))
    });

    // Head transpose [4, 216, 3, 3, 64] -> [4, 3, 3, 216, 64], materialised.
    let q = [randn([4, 216, 3, 3, 64])];
    let wq = randn([4, 3, 3, 216, 64]);
    group.bench_function("head transpose fwd+bwd [4x216x9x64]/composition", |b| {
        b.iter(|| {
            fwd_bwd(&q, &wq, &|x| {
                // Burn's way to materialise a permutation: a reshape of the permuted view.
                x[0].clone().permute([0, 2, 3, 1, 4]).reshape([4, 3, 3, 216 * 64]).reshape([4, 3, 3, 216, 64])
            })
        })
    });
    group.bench_function("head transpose fwd+bwd [4x216x9x64]/fused", |b| {
        b.iter(|| fwd_bwd(&q, &wq, &|x| dft_kernels::permute_contiguous(x[0].clone(), [0, 2, 3, 1, 4])))
    });

    // One chunk of the LM-head cross-entropy: loss and d/dlogits of 256 rows × 49,152.
    let logits = randn([256, 49_152]) * 3.0;
    let targets: Vec<u32> = (0..256u32).map(|i| i * 191 % 49_152).collect();
    // Each iteration gets its own copy of the inputs (made outside the timing), as in training, where
    // the logits / parameters / moments are not shared and the fused kernels write into them in place.
    let fresh = |t: &Tensor<B, 2>| Tensor::<B, 2>::from_data(t.to_data(), &Default::default());
    group.bench_function("xent loss+grad [256x49152]/composition", |b| {
        b.iter_batched(
            || fresh(&logits),
            |z| black_box(reference::softmax_cross_entropy(z, &targets, None, true)),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("xent loss+grad [256x49152]/fused", |b| {
        b.iter_batched(
            || fresh(&logits),
            |z| black_box(dft_kernels::softmax_cross_entropy(z, &targets, None, true)),
            BatchSize::LargeInput,
        )
    });

    // AdamW on a 10M-parameter tensor (second step: moments exist).
    let p = randn([10_000, 1_000]);
    let g = randn([10_000, 1_000]) * 0.01;
    let burn_adamw = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(0.0).build();
    let fused = FusedAdamW::new(0.9, 0.999, 1e-8, 0.0);
    let (_, state) = SimpleOptimizer::<B>::step(&burn_adamw, 1e-4, p.clone(), g.clone(), None);
    let state = state.unwrap();
    let inputs = || {
        let mut s = state.clone();
        s.momentum.moment_1 = fresh(&s.momentum.moment_1);
        s.momentum.moment_2 = fresh(&s.momentum.moment_2);
        (fresh(&p), s)
    };
    group.bench_function("adamw step [10M params]/burn AdamW", |b| {
        b.iter_batched(
            inputs,
            |(p, s)| black_box(SimpleOptimizer::<B>::step(&burn_adamw, 1e-4, p, g.clone(), Some(s))),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("adamw step [10M params]/FusedAdamW", |b| {
        b.iter_batched(inputs, |(p, s)| black_box(fused.step(1e-4, p, g.clone(), Some(s))), BatchSize::LargeInput)
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_kernels
}

fn main() {
    // As `dft` and the step bench: glibc keeps freed memory, so repeated large allocations do not
    // page-fault (otherwise every iteration pays the kernel's page zeroing for its fresh buffers).
    dft_train::retain_freed_memory();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
