//! The bf16 products on AMX tiles (`dft_kernels::matmul_bf16`, the bf16-mixed path on Flex) against the
//! f32 products (`dft_kernels::matmul`, the `gemm` crate) at the SmolLM2 training step's shapes, in one run.
//!
//! `cargo bench --bench amx -- [--threads 1,2] [--reps N]`
//!
//! Each shape is timed as the step runs it: the forward `X·W`, the input gradient `∂Y·Wᵀ` (the weight
//! read transposed) and the weight gradient `Xᵀ·∂Y` (the activations read transposed), with the tied
//! head's weight `[vocab, hidden]` read transposed in its forward. Both ops take the same f32 tensors,
//! so the bf16 times include rounding and packing the operands into tiles (nothing is cached between
//! calls). Best of `--reps` (5) after a warm-up. The relative error against an f64 product of the f32
//! operands is printed for both. Ends with the step's products summed (each shape × its count per step).
//! Results: target/bench-results/amx.json.

use burn::tensor::{Tensor, TensorData};
use dft_rs::backend::Inner;
use serde_json::json;
use std::time::Instant;

/// `(name, m, k, n, per step)`: the forward products of the step at batch 4 × 216 (864 tokens), 30
/// blocks; the head at the 608 labelled positions.
const SHAPES: [(&str, usize, usize, usize, usize); 5] = [
    ("q/o proj", 864, 576, 576, 60),
    ("k/v proj", 864, 576, 192, 60),
    ("gate/up", 864, 576, 1536, 60),
    ("down", 864, 1536, 576, 30),
    ("head", 608, 576, 49152, 1),
];

fn arg<T: std::str::FromStr>(name: &str) -> Option<T> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok())
}

fn tensor(v: &[f32], shape: [usize; 2]) -> Tensor<Inner, 2> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), &Default::default())
}

fn main() {
    let threads: Vec<usize> = arg::<String>("--threads")
        .unwrap_or_else(|| "1,2".into())
        .split(',')
        .map(|t| t.parse().expect("--threads 1,2"))
        .collect();
    let reps: usize = arg("--reps").unwrap_or(5);
    // As `dft train` and the step bench: freed memory is reused rather than returned and faulted in again.
    dft_train::retain_freed_memory();
    let amx = dft_kernels::amx_available();
    println!("AMX-bf16: {}", if amx { "used" } else { "not available (or DFT_AMX=0): bf16 column empty" });
    let mut rows = Vec::new();
    let mut md = String::from(
        "| product (m×k×n) | threads | f32 GFLOP/s | bf16 AMX GFLOP/s | bf16 / f32 speed | rel. error f32 / bf16 |\n|---|---:|---:|---:|---:|---|\n",
    );
    let mut step = Vec::new();
    for &t in &threads {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().expect("rayon pool");
        let (mut f32_s, mut bf16_s) = (0.0, 0.0);
        for &(name, m, k, n, per_step) in &SHAPES {
            let head = name == "head";
            let x = fill(m * k, 1);
            let w = fill(k * n, 2); // [k, n] row-major (the head: [n, k], read transposed)
            let dy = fill(m * n, 3);
            // (label, left, right, dims): the three products, operands as the step's views.
            let xt = tensor(&x, [m, k]);
            let wt = if head { tensor(&w, [n, k]).transpose() } else { tensor(&w, [k, n]) };
            let dyt = tensor(&dy, [m, n]);
            let products: [(&str, Tensor<Inner, 2>, Tensor<Inner, 2>); 3] = [
                ("X·W", xt.clone(), wt.clone()),
                ("∂Y·Wᵀ", dyt.clone(), wt.clone().transpose()),
                ("Xᵀ·∂Y", xt.clone().transpose(), dyt.clone()),
            ];
            for (label, a, b) in products {
                let [pm, pk] = a.dims();
                let pn = b.dims()[1];
                let flops = 2.0 * (pm * pk * pn) as f64;
                let reference = sample_f64(&a, &b);
                let (t32, c32) = pool.install(|| best_of(reps, || dft_kernels::matmul(a.clone(), b.clone())));
                let e32 = rel_err(&c32, &reference);
                let (t16, e16) = if amx {
                    let (t16, c16) = pool.install(|| {
                        best_of(reps, || {
                            dft_kernels::matmul_bf16(a.clone(), b.clone())
                                .unwrap_or_else(|_| panic!("AMX path not taken"))
                        })
                    });
                    (Some(t16), Some(rel_err(&c16, &reference)))
                } else {
                    (None, None)
                };
                md += &format!(
                    "| {name} {label} {pm}×{pk}×{pn} | {t} | {:.0} | {} | {} | {e32:.1e} / {} |\n",
                    flops / t32 / 1e9,
                    t16.map(|s| format!("{:.0}", flops / s / 1e9)).unwrap_or_else(|| "–".into()),
                    t16.map(|s| format!("{:.2}×", t32 / s)).unwrap_or_else(|| "–".into()),
                    e16.map(|e| format!("{e:.1e}")).unwrap_or_else(|| "–".into()),
                );
                f32_s += per_step as f64 * t32;
                bf16_s += per_step as f64 * t16.unwrap_or(f64::NAN);
                rows.push(json!({"shape": name, "product": label, "m": pm, "k": pk, "n": pn, "threads": t,
                    "per_step": per_step, "f32_s": t32, "bf16_amx_s": t16, "f32_rel_err": e32, "bf16_rel_err": e16}));
            }
        }
        step.push(json!({"threads": t, "f32_s": f32_s, "bf16_amx_s": bf16_s}));
    }
    println!("\n{md}");
    println!("The step's projection and head products (forward + both gradients), summed:");
    for s in &step {
        let (a, b) = (s["f32_s"].as_f64().unwrap_or(f64::NAN), s["bf16_amx_s"].as_f64().unwrap_or(f64::NAN));
        println!("  {} thread(s): f32 {a:.2} s, bf16 AMX {b:.2} s ({:.2}× the f32 speed)", s["threads"], a / b);
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-results");
    std::fs::create_dir_all(&dir).expect("results dir");
    let out = json!({"bench": "amx", "amx": amx, "rows": rows, "step": step, "markdown": md});
    std::fs::write(dir.join("amx.json"), serde_json::to_string_pretty(&out).unwrap()).expect("write amx.json");
}

/// Deterministic values in [-1, 1).
fn fill(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Rows 0, 37, 74, … of `a·b` in f64 (to measure each op's error).
fn sample_f64(a: &Tensor<Inner, 2>, b: &Tensor<Inner, 2>) -> Vec<(usize, Vec<f64>)> {
    let ([m, k], n) = (a.dims(), b.dims()[1]);
    let av = a.clone().into_data().to_vec::<f32>().expect("f32");
    let bv = b.clone().into_data().to_vec::<f32>().expect("f32");
    (0..m)
        .step_by(37)
        .map(|i| {
            let mut row = vec![0f64; n];
            for p in 0..k {
                let x = av[i * k + p] as f64;
                for (j, r) in row.iter_mut().enumerate() {
                    *r += x * bv[p * n + j] as f64;
                }
            }
            (i, row)
        })
        .collect()
}

fn rel_err(c: &Tensor<Inner, 2>, reference: &[(usize, Vec<f64>)]) -> f64 {
    let c = c.clone().into_data().to_vec::<f32>().expect("f32");
    let (mut num, mut den) = (0f64, 0f64);
    for (i, row) in reference {
        let n = row.len();
        for (j, r) in row.iter().enumerate() {
            num += (c[i * n + j] as f64 - r).powi(2);
            den += r.powi(2);
        }
    }
    (num / den).sqrt()
}

/// Best time of `reps` calls after a warm-up; the product is forced (Flex is eager) and returned.
fn best_of(reps: usize, mut f: impl FnMut() -> Tensor<Inner, 2>) -> (f64, Tensor<Inner, 2>) {
    let mut out = f();
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        out = f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    (best, out)
}
