//! What AMX-bf16 tiles would give the training step (issue 21's stretch, measured before built).
//!
//! `cargo bench --bench amx -- [--threads 1,2] [--reps N]`
//!
//! At the SmolLM2 step's matmul shapes (batch 4 × 216 tokens of the bundled zh data, hidden 576,
//! MLP 1536, LM head at the labelled positions), one run times side by side:
//! - Flex f32 (`Tensor::matmul`, the gemm crate: what the f32 step uses today);
//! - a small AMX-bf16 kernel of ours: `C[m×n] (f32) = A[m×k] · B[k×n]` with A, B in bf16, 2 × 2 tiles
//!   of 16 × 16 f32 accumulators per 32 × 32 block (`tdpbf16ps`), B repacked to AMX's pair layout.
//!   Reported twice: the kernel alone (operands already bf16 and packed: what a bf16 weight copy
//!   kept between steps would give) and including the f32 → bf16 conversion and packing of both
//!   operands on every call (what a drop-in for an f32 matmul would give);
//! - the result's relative error against an f64 product, for both.
//!
//! The table ends with what the step would gain: the step's matmul FLOPs per shape (forward and the
//! two backward products: 3×) timed at each speed. The machine must have AMX-bf16 (CPUID leaf 7:
//! AMX-TILE and AMX-BF16) and Linux must grant the tile state (`arch_prctl(ARCH_REQ_XCOMP_PERM)`);
//! otherwise the bench says so and times Flex only. Results: target/bench-results/amx.json.
#![allow(clippy::needless_range_loop)]

use burn::tensor::{Tensor, TensorData};
use dft_rs::backend::Inner;
use half::bf16;
use serde_json::json;
use std::time::Instant;

/// `(name, m, k, n, times per step)`: the step's matmuls at batch 4 × 216 (864 tokens), 30 blocks;
/// the head at the 602 labelled positions of that batch.
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

fn main() {
    let threads: Vec<usize> = arg::<String>("--threads")
        .unwrap_or_else(|| "1,2".into())
        .split(',')
        .map(|t| t.parse().expect("--threads 1,2"))
        .collect();
    let reps: usize = arg("--reps").unwrap_or(5);
    let amx = amx::available();
    println!(
        "AMX-bf16: {}",
        amx.as_ref().map(|_| "available".to_string()).unwrap_or_else(|e| format!("not used ({e})"))
    );
    let mut rows = Vec::new();
    let mut md = String::from(
        "| shape (m×k×n) | threads | Flex f32 GFLOP/s | AMX bf16 kernel GFLOP/s | AMX incl. f32→bf16 + packing | rel. error f32 / AMX |\n|---|---:|---:|---:|---:|---|\n",
    );
    let mut step = Vec::new();
    for &t in &threads {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().expect("rayon pool");
        let (mut flex_s, mut amx_s, mut amx_conv_s) = (0.0, 0.0, 0.0);
        for &(name, m, k, n, per_step) in &SHAPES {
            let a = fill(m * k, 1);
            let b = fill(k * n, 2);
            let flops = 2.0 * (m * k * n) as f64;
            let reference = matmul_f64(&a, &b, m, k, n);
            // Flex f32.
            let device = Default::default();
            let ta = Tensor::<Inner, 2>::from_data(TensorData::new(a.clone(), [m, k]), &device);
            let tb = Tensor::<Inner, 2>::from_data(TensorData::new(b.clone(), [k, n]), &device);
            let (t_flex, c_flex) = pool
                .install(|| best_of(reps, || ta.clone().matmul(tb.clone()).into_data().to_vec::<f32>().expect("f32")));
            let err_flex = rel_err(&c_flex, &reference);
            let (amx_cells, t_kernel, t_conv) = match &amx {
                Ok(()) => {
                    let (pa, pb) = (amx::pack_a(&a), amx::pack_b(&b, k, n));
                    let (t_kernel, c) = best_of(reps, || amx::matmul(&pa, &pb, m, k, n, t));
                    let (t_conv, _) =
                        best_of(reps, || amx::matmul(&amx::pack_a(&a), &amx::pack_b(&b, k, n), m, k, n, t));
                    let err = rel_err(&c, &reference);
                    (
                        (
                            format!("{:.0}", flops / t_kernel / 1e9),
                            format!("{:.0}", flops / t_conv / 1e9),
                            format!("{err_flex:.1e} / {err:.1e}"),
                        ),
                        Some(t_kernel),
                        Some(t_conv),
                    )
                }
                Err(_) => (("–".into(), "–".into(), format!("{err_flex:.1e} / –")), None, None),
            };
            md += &format!(
                "| {name} {m}×{k}×{n} | {t} | {:.0} | {} | {} | {} |\n",
                flops / t_flex / 1e9,
                amx_cells.0,
                amx_cells.1,
                amx_cells.2
            );
            let w = 3.0 * per_step as f64; // forward, grad wrt input, grad wrt weight
            flex_s += w * t_flex;
            amx_s += w * t_kernel.unwrap_or(f64::NAN);
            amx_conv_s += w * t_conv.unwrap_or(f64::NAN);
            rows.push(json!({"shape": name, "m": m, "k": k, "n": n, "threads": t, "per_step": per_step,
                "flex_f32_s": t_flex, "amx_kernel_s": t_kernel, "amx_with_conversion_s": t_conv,
                "flex_rel_err": err_flex}));
        }
        step.push(
            json!({"threads": t, "flex_f32_s": flex_s, "amx_kernel_s": amx_s, "amx_with_conversion_s": amx_conv_s}),
        );
    }
    println!("\n{md}");
    println!("The step's projection and head matmuls (× 3 for the backward), summed:");
    for s in &step {
        println!(
            "  {} thread(s): Flex f32 {:.2} s, AMX bf16 kernel {:.2} s, AMX incl. conversion {:.2} s",
            s["threads"],
            s["flex_f32_s"].as_f64().unwrap_or(f64::NAN),
            s["amx_kernel_s"].as_f64().unwrap_or(f64::NAN),
            s["amx_with_conversion_s"].as_f64().unwrap_or(f64::NAN)
        );
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-results");
    std::fs::create_dir_all(&dir).expect("results dir");
    let out = json!({"bench": "amx", "amx": amx.is_ok(), "rows": rows, "step": step, "markdown": md});
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

/// The product in f64 on a sample of rows (every 37th), to measure each kernel's error.
fn matmul_f64(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<(usize, Vec<f64>)> {
    (0..m)
        .step_by(37)
        .map(|i| {
            let mut row = vec![0f64; n];
            for p in 0..k {
                let x = a[i * k + p] as f64;
                for j in 0..n {
                    row[j] += x * b[p * n + j] as f64;
                }
            }
            (i, row)
        })
        .collect()
}

fn rel_err(c: &[f32], reference: &[(usize, Vec<f64>)]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (i, row) in reference {
        let n = row.len();
        for j in 0..n {
            num += (c[i * n + j] as f64 - row[j]).powi(2);
            den += row[j].powi(2);
        }
    }
    (num / den).sqrt()
}

fn best_of<T>(reps: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut out = f(); // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        out = f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    (best, out)
}

#[cfg(target_arch = "x86_64")]
mod amx {
    //! A minimal AMX-bf16 GEMM: enough to measure the hardware's speed at the step's shapes.
    use super::bf16;
    use std::arch::asm;

    /// Tile configuration (palette 1): tmm0–3 accumulate a 32 × 32 f32 block, tmm4–5 hold two
    /// 16 × 32 bf16 row tiles of A, tmm6–7 two 16-pair × 16 tiles of B.
    #[repr(C, align(64))]
    struct TileConfig {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        colsb: [u16; 16],
        rows: [u8; 16],
    }

    const CONFIG: TileConfig = TileConfig {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        colsb: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
        rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
    };

    /// Ok when the CPU has AMX-TILE and AMX-BF16 and the kernel lets this process use the tile state.
    pub fn available() -> Result<(), String> {
        if std::arch::x86_64::__cpuid(0).eax < 7 {
            return Err("CPUID has no leaf 7".into());
        }
        let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
        if edx & (1 << 24) == 0 || edx & (1 << 22) == 0 {
            return Err("the CPU has no AMX-TILE / AMX-BF16".into());
        }
        // arch_prctl(ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18): Linux ≥ 5.16 grants the
        // tile data state to the process on request.
        let ret: i64;
        // SAFETY: a plain Linux syscall (arch_prctl = 158) with integer arguments; it reads and writes no
        // user memory, and `syscall` clobbers only rcx and r11 besides the return in rax.
        unsafe {
            asm!("syscall", inlateout("rax") 158i64 => ret, in("rdi") 0x1023i64, in("rsi") 18i64,
                 lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        if ret != 0 {
            return Err(format!("arch_prctl(ARCH_REQ_XCOMP_PERM) returned {ret}"));
        }
        Ok(())
    }

    /// A `[m, k]` row-major, converted to bf16 (round to nearest even).
    pub fn pack_a(a: &[f32]) -> Vec<bf16> {
        a.iter().map(|&x| bf16::from_f32(x)).collect()
    }

    /// B `[k, n]` row-major → bf16 tiles in AMX's pair layout: for each 16-column strip and each 32-row
    /// slice, 16 rows of (B[2p][j], B[2p+1][j]) for j in the strip — 512 values, contiguous.
    pub fn pack_b(b: &[f32], k: usize, n: usize) -> Vec<bf16> {
        assert!(k.is_multiple_of(32) && n.is_multiple_of(32), "the probe handles k, n multiples of 32");
        let mut out = vec![bf16::ZERO; k * n];
        let kb = k / 32;
        for nb in 0..n / 16 {
            for s in 0..kb {
                let tile = &mut out[(nb * kb + s) * 512..][..512];
                for p in 0..16 {
                    for j in 0..16 {
                        for e in 0..2 {
                            tile[p * 32 + j * 2 + e] = bf16::from_f32(b[(s * 32 + 2 * p + e) * n + nb * 16 + j]);
                        }
                    }
                }
            }
        }
        out
    }

    /// `C = A · B` (f32 out) on `threads` threads. Each thread takes every `threads`-th 32-column strip
    /// of C and runs down all 32-row bands of A for it, so the strip's packed B (k × 32 bf16, 36 KiB at
    /// k = 576) stays in L1 while A streams from L2.
    pub fn matmul(a: &[bf16], b: &[bf16], m: usize, k: usize, n: usize, threads: usize) -> Vec<f32> {
        assert!(
            m.is_multiple_of(32) && k.is_multiple_of(32) && n.is_multiple_of(32),
            "the probe handles multiples of 32"
        );
        assert!(a.len() == m * k && b.len() == k * n);
        let mut c = vec![0f32; m * n];
        let c_addr = c.as_mut_ptr() as usize;
        std::thread::scope(|scope| {
            for w in 0..threads {
                scope.spawn(move || {
                    // SAFETY: the tile state was granted (`available`), CONFIG is a valid palette-1
                    // configuration of 64-byte rows, and it is 64-byte aligned as ldtilecfg requires.
                    unsafe { asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly)) };
                    for strip in (w..n / 32).step_by(threads) {
                        for band in 0..m / 32 {
                            // SAFETY: `c` outlives the scope; thread `w` writes only the columns of its own
                            // strips (strip ≡ w mod threads), so no two threads write the same element.
                            unsafe { block(a, b, c_addr as *mut f32, band * 32, strip * 2, k, n) };
                        }
                    }
                    // SAFETY: releases this thread's tile state (always valid after ldtilecfg).
                    unsafe { asm!("tilerelease", options(nostack, nomem)) };
                });
            }
        });
        c
    }

    /// The 32 × 32 block at rows `row0..row0+32`, columns `nb*16..nb*16+32` of C (`c`: m × n f32),
    /// accumulated over k in steps of 32.
    ///
    /// # Safety
    /// The tiles are configured on this thread, `c` points to m × n f32 with `row0 + 32 <= m` and
    /// `nb * 16 + 32 <= n`, and no other thread writes that block.
    unsafe fn block(a: &[bf16], b: &[bf16], c: *mut f32, row0: usize, nb: usize, k: usize, n: usize) {
        let kb = k / 32;
        let a_stride = (k * 2) as isize; // bytes per A row
                                         // SAFETY: the tiles were configured (ldtilecfg) by this thread; every tileloadd reads 16 rows of
                                         // 64 bytes inside `a` (rows row0..row0+32, columns s*32..s*32+32 with k % 32 == 0) or one
                                         // 1,024-byte packed tile of `b` (index < (n/16) * kb, asserted by the caller's shapes); the stores
                                         // write 16 rows of 64 bytes inside the block of `c` the caller owns (see # Safety).
        unsafe {
            asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
            for s in 0..kb {
                let a0 = a.as_ptr().add(row0 * k + s * 32);
                let a1 = a0.add(16 * k);
                let b0 = b.as_ptr().add((nb * kb + s) * 512);
                let b1 = b.as_ptr().add(((nb + 1) * kb + s) * 512);
                asm!(
                    "tileloadd tmm4, [{a0} + {sa}*1]",
                    "tileloadd tmm5, [{a1} + {sa}*1]",
                    "tileloadd tmm6, [{b0} + {sb}*1]",
                    "tileloadd tmm7, [{b1} + {sb}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) a0, a1 = in(reg) a1, b0 = in(reg) b0, b1 = in(reg) b1,
                    sa = in(reg) a_stride, sb = in(reg) 64isize,
                    options(nostack, readonly),
                );
            }
            let c_stride = (n * 4) as isize;
            let c0 = c.add(row0 * n + nb * 16);
            let c1 = c0.add(16 * n);
            asm!(
                "tilestored [{c0} + {sc}*1], tmm0",
                "tilestored [{c0b} + {sc}*1], tmm1",
                "tilestored [{c1} + {sc}*1], tmm2",
                "tilestored [{c1b} + {sc}*1], tmm3",
                c0 = in(reg) c0, c0b = in(reg) c0.add(16), c1 = in(reg) c1, c1b = in(reg) c1.add(16),
                sc = in(reg) c_stride,
                options(nostack),
            );
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod amx {
    use super::bf16;
    pub fn available() -> Result<(), String> {
        Err("not an x86-64 CPU".into())
    }
    pub fn pack_a(_: &[f32]) -> Vec<bf16> {
        unreachable!()
    }
    pub fn pack_b(_: &[f32], _: usize, _: usize) -> Vec<bf16> {
        unreachable!()
    }
    pub fn matmul(_: &[bf16], _: &[bf16], _: usize, _: usize, _: usize, _: usize) -> Vec<f32> {
        unreachable!()
    }
}
