//! Issue 21's question: how fast is the f32 GEMM Flex uses (the `gemm` crate 0.19, strided operands
//! as Flex passes them) against the system OpenBLAS at the SmolLM2 training step's shapes?
//!
//! ```sh
//! sudo apt-get install libopenblas-dev
//! cd tools/perf/blas-probe && cargo build --release
//! OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=1 target/release/blas-probe 1
//! OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=2 target/release/blas-probe 2
//! /work/oracle-venv/bin/python torch_matmul.py 1   # PyTorch (MKL), the same shapes
//! ```
//! Debian 12's OpenBLAS 0.3.21 does not recognise Sapphire Rapids and falls back to a slow generic
//! kernel unless `OPENBLAS_CORETYPE=SkylakeX` (AVX-512) is set. Each shape: best of `PROBE_REPS` (3)
//! after a warm-up, both libraries on the same operands; the maximum difference of the products is
//! printed. Before each shape it measures the CPU's f32 FMA peak (twelve independent AVX-512 FMA chains
//! per thread, no memory operands): the ceiling any f32 GEMM has, to read the products' rates against.
use std::time::Instant;

/// GFLOP/s of `threads` threads each running twelve independent 16-lane FMA chains (no loads): what
/// this CPU's FMA units can do at most, on the same clock and VM phase as the products after it.
fn fma_peak(threads: usize) -> f64 {
    #[target_feature(enable = "avx512f")]
    unsafe fn chains(iters: u64) -> f32 {
        use std::arch::x86_64::*;
        let mut acc = [_mm512_setzero_ps(); 12];
        for (i, a) in acc.iter_mut().enumerate() {
            *a = _mm512_set1_ps(1.0 + i as f32 * 0.1);
        }
        let b = _mm512_set1_ps(std::hint::black_box(0.999_999_9));
        let c = _mm512_set1_ps(std::hint::black_box(1e-7));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, b, c);
            }
        }
        let mut s = _mm512_setzero_ps();
        for a in acc {
            s = _mm512_add_ps(s, a);
        }
        _mm512_reduce_add_ps(s)
    }
    assert!(std::arch::is_x86_feature_detected!("avx512f"), "the FMA probe needs AVX-512");
    let iters = 50_000_000u64;
    let mut best = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let sum: f32 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads).map(|_| s.spawn(|| unsafe { chains(iters) })).collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        std::hint::black_box(sum);
        best = best.max((threads as u64 * iters * 12 * 16 * 2) as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}
extern "C" {
    fn cblas_sgemm(
        layout: i32,
        ta: i32,
        tb: i32,
        m: i32,
        n: i32,
        k: i32,
        alpha: f32,
        a: *const f32,
        lda: i32,
        b: *const f32,
        ldb: i32,
        beta: f32,
        c: *mut f32,
        ldc: i32,
    );
    fn openblas_set_num_threads(n: i32);
}
const ROW: i32 = 101;
const NT: i32 = 111;
const T: i32 = 112;
/// Timed repetitions per product (`PROBE_REPS`, default 3): the VM's speed swings within seconds, so
/// more repetitions give the best-of a better chance to catch a quiet moment.
fn reps() -> usize {
    match std::env::var("PROBE_REPS") {
        Err(_) => 3,
        Ok(v) => v.trim().parse().ok().filter(|&n| n > 0).unwrap_or_else(|| {
            eprintln!("blas-probe: PROBE_REPS={v:?} is not a positive whole number");
            std::process::exit(2)
        }),
    }
}
fn best<F: FnMut()>(mut f: F) -> f64 {
    let mut b = f64::MAX;
    f();
    for _ in 0..reps() {
        let t = Instant::now();
        f();
        b = b.min(t.elapsed().as_secs_f64());
    }
    b
}
fn main() {
    let threads: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(1);
    unsafe { openblas_set_num_threads(threads as i32) };
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // The step's products as dft-rs runs them (bundled TFT batch: 864 tokens, 608 scored positions):
    // (name, m, k, n, lhs stored transposed, rhs stored transposed). Projections keep W as [in, out];
    // the tied head is the embedding [vocab, hidden] seen transposed.
    let shapes = [
        ("q/o proj fwd", 864, 576, 576, false, false),
        ("gate/up fwd", 864, 576, 1536, false, false),
        ("down fwd", 864, 1536, 576, false, false),
        ("gate/up dX = dY·Wᵀ", 864, 1536, 576, false, true),
        ("gate/up dW = Xᵀ·dY", 576, 864, 1536, true, false),
        ("head fwd X·Eᵀ", 608, 576, 49152, false, true),
        ("head dX = dZ·E", 608, 49152, 576, false, false),
        ("head dE = dZᵀ·X", 49152, 608, 576, true, false),
    ];
    println!(
        "{threads} thread(s), GFLOP/s (best of {}): the gemm crate as Flex calls it vs OpenBLAS; the f32 FMA \
         peak measured just before each shape (the VM's clock drifts), and each library's % of it",
        reps()
    );
    for (name, m, k, n, lt, rt) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.01).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.01).collect();
        let mut c1 = vec![0f32; m * n];
        let mut c2 = vec![0f32; m * n];
        // Element (i, j) of A is a[i*k + j] when stored as is, a[j*m + i] when stored transposed.
        let (ars, acs) = if lt { (1isize, m as isize) } else { (k as isize, 1isize) };
        let (brs, bcs) = if rt { (1isize, k as isize) } else { (n as isize, 1isize) };
        let g = best(|| unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c1.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                acs,
                ars,
                b.as_ptr(),
                bcs,
                brs,
                0.0,
                1.0,
                false,
                false,
                false,
                par,
            )
        });
        let o = best(|| unsafe {
            cblas_sgemm(
                ROW,
                if lt { T } else { NT },
                if rt { T } else { NT },
                m as i32,
                n as i32,
                k as i32,
                1.0,
                a.as_ptr(),
                if lt { m as i32 } else { k as i32 },
                b.as_ptr(),
                if rt { k as i32 } else { n as i32 },
                0.0,
                c2.as_mut_ptr(),
                n as i32,
            )
        });
        let err = c1.iter().zip(&c2).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        let fl = 2.0 * (m * n * k) as f64 / 1e9;
        let (rg, ro) = (fl / g, fl / o);
        let peak = fma_peak(threads);
        println!(
            "{name:>20} {m}x{k}x{n}: peak {peak:>4.0}  gemm {rg:>4.0} ({:>3.0}%)  openblas {ro:>4.0} ({:>3.0}%)  (max diff {err:.1e})",
            100.0 * rg / peak,
            100.0 * ro / peak
        );
    }
}
