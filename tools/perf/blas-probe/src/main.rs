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
//! kernel unless `OPENBLAS_CORETYPE=SkylakeX` (AVX-512) is set. Each shape: best of 3 after a warm-up,
//! both libraries on the same operands; the maximum difference of the products is printed.
use std::time::Instant;
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
fn best<F: FnMut()>(mut f: F) -> f64 {
    let mut b = f64::MAX;
    f();
    for _ in 0..3 {
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
    println!("{threads} thread(s), GFLOP/s (best of 3): the gemm crate as Flex calls it vs OpenBLAS");
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
        println!("{name:>20} {m}x{k}x{n}: gemm {:>4.0}  openblas {:>4.0}  (max diff {err:.1e})", fl / g, fl / o);
    }
}
