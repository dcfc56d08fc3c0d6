//! An f32 GEMM of our own for AVX2 + FMA and AVX-512F CPUs: `C = A·B` or `C += A·B`, `C` row-major
//! contiguous, `A` and `B` strided (row-major, column-major or any non-negative strides).
//!
//! The BLIS scheme: `B` is packed in blocks of `KC × NC` as panels of `NR` columns (`[k][NR]`, the vector
//! operand), `A` in blocks of `MC × KC` as panels of `MR` rows (`[k][MR]`, broadcast), and an `MR × NR`
//! register tile runs over each pair of panels: per `k`, `NR / lanes` vector loads, `MR` broadcasts and
//! `MR·NR / lanes` FMAs. The `B` panel stays near the core (L1, or L2 where a slow 512-bit FMA leaves
//! time) while the `A` panels of the block stream from L2. Two tiles: [`Avx2`] (6 × 16, 8-lane) and
//! [`Avx512`] (12 × 32, 16-lane). Operands stored along `k` (a transposed weight, `Xᵀ` of a weight
//! gradient) are packed through 8 × 8 register transposes, so every layout the training step produces
//! packs at vector speed. Threads split `C` into column strips (or row bands when `A` is the larger
//! operand); each packs its own share.
//!
//! Why: on an AMD EPYC (Zen 2, AVX2) it runs a SmolLM2 training step's products at 94–96 GFLOP/s on
//! 1 thread (89% of the FMA peak; the `gemm` crate 91–94) and 179–183 on 2 (163–167), the step 2–3% /
//! 7–8% faster (stop 34); on a Zen 4 (AVX-512) at 105 GFLOP/s on 1 thread (90% of the peak; the crate
//! 104–105) and 196–198 on 2 (182–192; stop 35) — `cargo bench --bench step -- --ab-gemm
//! --kernel-stats`, docs/PERFORMANCE.md. The default wherever the CPU has AVX2 + FMA (the widest tile it
//! runs); `DFT_GEMM=own` / `avx2` / `avx512` / `crate` chooses explicitly.

use rayon::prelude::*;
use std::arch::x86_64::*;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// A register tile and the cache blocking around it.
trait Tile {
    /// Rows of the register tile (the broadcast operand, `A`).
    const MR: usize;
    /// Columns of the register tile (the vector operand, `B`).
    const NR: usize;
    /// Depth of a packed block: a `B` panel is `KC·NR·4` bytes and stays in L1.
    const KC: usize;
    /// Rows of a packed `A` block (`MC·KC·4` bytes, streamed from L2 for every `B` panel).
    const MC: usize;
    /// Columns of a packed `B` block (`KC·NC·4` bytes, L3).
    const NC: usize;
    /// The `MR × NR` tile `C (+)= Ap·Bp` over `kc` steps (`Ap` `[kc][MR]`, `Bp` `[kc][NR]`).
    ///
    /// # Safety
    /// The CPU has the tile's features; `a`, `b` hold `kc` steps; `c` holds `MR` rows of `NR` floats,
    /// `ldc` apart.
    unsafe fn kernel(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, accumulate: bool);
    /// [`pack`] with `W = MR`.
    unsafe fn pack_a(dst: *mut f32, src: *const f32, ls: isize, ks: isize, kc: usize, extent: usize);
    /// [`pack`] with `W = NR`.
    unsafe fn pack_b(dst: *mut f32, src: *const f32, ls: isize, ks: isize, kc: usize, extent: usize);
}

/// `impl Tile` for `$name`: an `$mr × $nr` tile run by `$kernel`, packed by [`pack`].
macro_rules! tile {
    ($name:ident, $mr:literal x $nr:literal, KC $kc:literal, MC $mc:literal, NC $nc:literal, $kernel:path) => {
        impl Tile for $name {
            const MR: usize = $mr;
            const NR: usize = $nr;
            const KC: usize = $kc;
            const MC: usize = $mc;
            const NC: usize = $nc;
            #[inline]
            unsafe fn kernel(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, accumulate: bool) {
                $kernel(kc, a, b, c, ldc, accumulate)
            }
            #[inline]
            unsafe fn pack_a(dst: *mut f32, src: *const f32, ls: isize, ks: isize, kc: usize, extent: usize) {
                pack::<$mr>(dst, src, ls, ks, kc, extent)
            }
            #[inline]
            unsafe fn pack_b(dst: *mut f32, src: *const f32, ls: isize, ks: isize, kc: usize, extent: usize) {
                pack::<$nr>(dst, src, ls, ks, kc, extent)
            }
        }
    };
}

/// AVX2 + FMA: a 6 × 16 tile (twelve 8-lane accumulators); per `k`, two vector loads, six broadcasts and
/// twelve FMAs. KC 256 / MC 144 for a 32 KiB L1 and 512 KiB L2 (Zen 2).
struct Avx2;
tile!(Avx2, 6 x 16, KC 256, MC 144, NC 3072, kernel_avx2);

/// AVX-512F: a 12 × 32 tile (twenty-four 16-lane accumulators); per `k`, two vector loads, twelve
/// broadcasts and twenty-four FMAs. KC 384: a 48 KiB `B` panel (L1 on Intel's recent cores, L2 on
/// Zen 4, where a 512-bit FMA takes both 256-bit pipes, so a tile step lasts 24 cycles and its 128-byte
/// panel row comes from L2 in time); two passes over `C` at k = 576 instead of five — KC 128 ran the LM
/// head's product at 86–89 GFLOP/s, KC 384 at 96–97, on a Zen 4 core (`cargo bench --bench step --
/// --gemm`, stop 35).
struct Avx512;
tile!(Avx512, 12 x 32, KC 384, MC 240, NC 3072, kernel_avx512::<12>);

/// The largest tile (`MR·NR` floats) of any [`Tile`]: the edge tiles' scratch.
const TILE_MAX: usize = 12 * 32;

/// A strided f32 matrix: element `(i, j)` is `ptr[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View {
    pub(crate) ptr: *const f32,
    pub(crate) rs: isize,
    pub(crate) cs: isize,
}

impl View {
    /// The view from element `(i, j)` on.
    ///
    /// # Safety
    /// `(i, j)` is inside the matrix.
    unsafe fn at(self, i: usize, j: usize) -> View {
        View { ptr: self.ptr.offset(i as isize * self.rs + j as isize * self.cs), ..self }
    }
}

/// The f32 GEMM products take (see [`crate::GemmKernel`]).
pub(crate) use crate::GemmKernel as Kernel;

/// 0: not decided yet, else `1 + ` the index of a [`Kernel`] in [`KERNELS`].
static CHOICE: AtomicU8 = AtomicU8::new(0);
const KERNELS: [Kernel; 3] = [Kernel::Crate, Kernel::OwnAvx2, Kernel::OwnAvx512];

/// Whether the CPU can run `kernel` (the `gemm` crate always).
pub(crate) fn runs(kernel: Kernel) -> bool {
    static AVX2: OnceLock<bool> = OnceLock::new();
    static AVX512: OnceLock<bool> = OnceLock::new();
    let avx2 = *AVX2.get_or_init(|| std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"));
    match kernel {
        Kernel::Crate => true,
        Kernel::OwnAvx2 => avx2,
        Kernel::OwnAvx512 => avx2 && *AVX512.get_or_init(|| std::is_x86_feature_detected!("avx512f")),
    }
}

/// The widest own kernel the CPU runs (the `gemm` crate where it has no AVX2/FMA).
fn widest() -> Kernel {
    nearest(Kernel::OwnAvx512)
}

/// `kernel`, or the nearest the CPU runs (AVX-512 → AVX2 → the `gemm` crate).
fn nearest(kernel: Kernel) -> Kernel {
    match kernel {
        Kernel::OwnAvx512 if !runs(kernel) => nearest(Kernel::OwnAvx2),
        Kernel::OwnAvx2 if !runs(kernel) => Kernel::Crate,
        k => k,
    }
}

/// The GEMM f32 products take: by default [`default_kernel`]; `DFT_GEMM=own` (the widest
/// own kernel), `avx2`, `avx512` or `crate`, or [`set`], choose explicitly (a kernel the CPU lacks falls
/// back to the nearest it has). Another value of `DFT_GEMM` is named on stderr and ignored.
pub(crate) fn current() -> Kernel {
    match CHOICE.load(Ordering::Relaxed) {
        0 => {
            let default = default_kernel();
            let chosen = match std::env::var("DFT_GEMM") {
                Err(_) => default,
                Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
                    "" => default,
                    "own" | "dft" => widest(),
                    "avx2" | "own-avx2" => Kernel::OwnAvx2,
                    "avx512" | "own-avx512" => Kernel::OwnAvx512,
                    "crate" | "gemm" => Kernel::Crate,
                    other => {
                        eprintln!("DFT_GEMM={other:?} is not `own`, `avx2`, `avx512` or `crate`: the default is kept");
                        default
                    }
                },
            };
            let code = 1 + KERNELS.iter().position(|&k| k == nearest(chosen)).unwrap_or(0) as u8;
            let _ = CHOICE.compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed);
            KERNELS[CHOICE.load(Ordering::Relaxed) as usize - 1]
        }
        code => KERNELS[code as usize - 1],
    }
}

/// The default GEMM for this CPU: the widest own kernel it runs. In the training step it ran the
/// products faster than the `gemm` crate on a Zen 2 (AVX2: 94–96 vs 91–94 GFLOP/s on 1 thread, 179–183
/// vs 163–167 on 2) and as fast or faster on a Zen 4 (AVX-512: 105 vs 104–105 on 1 thread, 196–198 vs
/// 182–192 on 2); not measured yet on an Intel core.
fn default_kernel() -> Kernel {
    widest()
}

/// Chooses `kernel` (or the nearest the CPU runs) for the following products, overriding `DFT_GEMM`;
/// returns the one taken.
pub(crate) fn set(kernel: Kernel) -> Kernel {
    let taken = nearest(kernel);
    CHOICE.store(1 + KERNELS.iter().position(|&k| k == taken).unwrap_or(0) as u8, Ordering::Relaxed);
    taken
}

/// Packing buffers of one thread (64-byte aligned), reused across calls.
#[derive(Default)]
struct Buffers {
    a: Vec<Line>,
    b: Vec<Line>,
}

/// 16 floats on a 64-byte boundary (a cache line; whole-line vector loads from the packed panels).
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([f32; 16]);

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// A buffer of at least `floats` f32 (plus one line of slack for the 8-wide stores of `pack`).
fn grow(v: &mut Vec<Line>, floats: usize) -> *mut f32 {
    let lines = floats.div_ceil(16) + 1;
    if v.len() < lines {
        v.resize(lines, Line::default());
    }
    v.as_mut_ptr() as *mut f32
}

/// `C = A·B` (or `C += A·B` with `accumulate`) with the own kernel `kernel`, `(m, n, k)`: `A` `m × k`,
/// `B` `k × n`, `C` (pointer, row stride, accumulate) row-major; on all rayon threads when `parallel`.
///
/// # Safety
/// [`runs`]`(kernel)`, and `kernel` is not [`Kernel::Crate`]; every element of `A`, `B` (through their
/// views) and `C` is inside its allocation; `C` is initialised when `accumulate`, and does not overlap
/// `A` or `B`.
pub(crate) unsafe fn sgemm(
    kernel: Kernel,
    dims: (usize, usize, usize),
    c: (*mut f32, usize, bool),
    a: View,
    b: View,
    parallel: bool,
) {
    match kernel {
        Kernel::OwnAvx512 => sgemm_with::<Avx512>(dims, c, a, b, parallel),
        _ => sgemm_with::<Avx2>(dims, c, a, b, parallel),
    }
}

/// [`sgemm`] with the tile `T`.
unsafe fn sgemm_with<T: Tile>(
    (m, n, k): (usize, usize, usize),
    (c, ldc, accumulate): (*mut f32, usize, bool),
    a: View,
    b: View,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                std::ptr::write_bytes(c.add(i * ldc), 0, n);
            }
        }
        return;
    }
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    // Splitting columns packs all of `A` on every thread, splitting rows all of `B`: copy the smaller.
    let by_cols = m <= n;
    let (extent, unit) = if by_cols { (n, T::NR) } else { (m, T::MR) };
    let parts = threads.min(extent.div_ceil(unit * 2)).max(1);
    if parts == 1 {
        serial::<T>(m, n, k, c, ldc, accumulate, a, b);
        return;
    }
    let chunk = extent.div_ceil(parts).div_ceil(unit) * unit;
    let (c, a, b) = (c as usize, (a.ptr as usize, a.rs, a.cs), (b.ptr as usize, b.rs, b.cs));
    (0..extent.div_ceil(chunk)).into_par_iter().for_each(|p| {
        let (c, a, b) =
            (c as *mut f32, View { ptr: a.0 as _, rs: a.1, cs: a.2 }, View { ptr: b.0 as _, rs: b.1, cs: b.2 });
        let lo = p * chunk;
        let len = chunk.min(extent - lo);
        // SAFETY: the part is inside `C`, `A` and `B` by the caller's contract; parts write disjoint
        // column strips (or row bands) of `C`.
        unsafe {
            if by_cols {
                serial::<T>(m, len, k, c.add(lo), ldc, accumulate, a, b.at(0, lo));
            } else {
                serial::<T>(len, n, k, c.add(lo * ldc), ldc, accumulate, a.at(lo, 0), b);
            }
        }
    });
}

/// `total` split into blocks of at most `max` (rounded up to `unit`), all about the same size.
fn block(total: usize, max: usize, unit: usize) -> usize {
    let blocks = total.div_ceil(max);
    total.div_ceil(blocks).div_ceil(unit) * unit
}

/// [`sgemm_with`] on the calling thread.
#[allow(clippy::too_many_arguments)]
unsafe fn serial<T: Tile>(m: usize, n: usize, k: usize, c: *mut f32, ldc: usize, accumulate: bool, a: View, b: View) {
    let mut bufs = BUFFERS.with(|cell| std::mem::take(&mut *cell.borrow_mut()));
    let (kc_max, mc_max, nc_max) = (block(k, T::KC, 1), block(m, T::MC, T::MR), block(n, T::NC, T::NR));
    let ap = grow(&mut bufs.a, mc_max * kc_max);
    let bp = grow(&mut bufs.b, nc_max * kc_max);
    let mut tmp = [0f32; TILE_MAX];
    for jc in (0..n).step_by(nc_max) {
        let nc = nc_max.min(n - jc);
        for pc in (0..k).step_by(kc_max) {
            let kc = kc_max.min(k - pc);
            T::pack_b(bp, b.at(pc, jc).ptr, b.cs, b.rs, kc, nc);
            let acc = accumulate || pc > 0;
            for ic in (0..m).step_by(mc_max) {
                let mc = mc_max.min(m - ic);
                T::pack_a(ap, a.at(ic, pc).ptr, a.rs, a.cs, kc, mc);
                for jr in 0..nc.div_ceil(T::NR) {
                    let w = T::NR.min(nc - jr * T::NR);
                    let bpanel = bp.add(jr * kc * T::NR);
                    for ir in 0..mc.div_ceil(T::MR) {
                        let h = T::MR.min(mc - ir * T::MR);
                        let apanel = ap.add(ir * kc * T::MR);
                        let cp = c.add((ic + ir * T::MR) * ldc + jc + jr * T::NR);
                        if h == T::MR && w == T::NR {
                            T::kernel(kc, apanel, bpanel, cp, ldc, acc);
                        } else {
                            T::kernel(kc, apanel, bpanel, tmp.as_mut_ptr(), T::NR, false);
                            for i in 0..h {
                                for j in 0..w {
                                    let d = cp.add(i * ldc + j);
                                    let v = tmp[i * T::NR + j];
                                    *d = if acc { *d + v } else { v };
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    BUFFERS.with(|cell| *cell.borrow_mut() = bufs);
}

/// [`Avx2`]'s 6 × 16 tile.
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, accumulate: bool) {
    const MR: usize = 6;
    const NR: usize = 16;
    let mut r = [_mm256_setzero_ps(); 2 * MR];
    for i in 0..MR {
        _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc + 8) as *const i8);
    }
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let b0 = _mm256_loadu_ps(b);
        let b1 = _mm256_loadu_ps(b.add(8));
        for i in 0..MR {
            let x = _mm256_broadcast_ss(&*a.add(i));
            r[2 * i] = _mm256_fmadd_ps(x, b0, r[2 * i]);
            r[2 * i + 1] = _mm256_fmadd_ps(x, b1, r[2 * i + 1]);
        }
        a = a.add(MR);
        b = b.add(NR);
    }
    for i in 0..MR {
        let row = c.add(i * ldc);
        let (mut v0, mut v1) = (r[2 * i], r[2 * i + 1]);
        if accumulate {
            v0 = _mm256_add_ps(v0, _mm256_loadu_ps(row));
            v1 = _mm256_add_ps(v1, _mm256_loadu_ps(row.add(8)));
        }
        _mm256_storeu_ps(row, v0);
        _mm256_storeu_ps(row.add(8), v1);
    }
}

/// [`Avx512`]'s `MR` × 32 tile.
#[target_feature(enable = "avx512f")]
unsafe fn kernel_avx512<const MR: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    const NR: usize = 32;
    let mut r = [[_mm512_setzero_ps(); 2]; MR];
    for i in 0..MR {
        _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc + 16) as *const i8);
    }
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let b0 = _mm512_loadu_ps(b);
        let b1 = _mm512_loadu_ps(b.add(16));
        for (i, ri) in r.iter_mut().enumerate() {
            let x = _mm512_set1_ps(*a.add(i));
            ri[0] = _mm512_fmadd_ps(x, b0, ri[0]);
            ri[1] = _mm512_fmadd_ps(x, b1, ri[1]);
        }
        a = a.add(MR);
        b = b.add(NR);
    }
    for (i, ri) in r.iter().enumerate() {
        let row = c.add(i * ldc);
        let (mut v0, mut v1) = (ri[0], ri[1]);
        if accumulate {
            v0 = _mm512_add_ps(v0, _mm512_loadu_ps(row));
            v1 = _mm512_add_ps(v1, _mm512_loadu_ps(row.add(16)));
        }
        _mm512_storeu_ps(row, v0);
        _mm512_storeu_ps(row.add(16), v1);
    }
}

/// `v` transposed (`out[j][i] = v[i][j]`).
#[inline(always)]
unsafe fn transpose8(v: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(v[0], v[1]);
    let t1 = _mm256_unpackhi_ps(v[0], v[1]);
    let t2 = _mm256_unpacklo_ps(v[2], v[3]);
    let t3 = _mm256_unpackhi_ps(v[2], v[3]);
    let t4 = _mm256_unpacklo_ps(v[4], v[5]);
    let t5 = _mm256_unpackhi_ps(v[4], v[5]);
    let t6 = _mm256_unpacklo_ps(v[6], v[7]);
    let t7 = _mm256_unpackhi_ps(v[6], v[7]);
    let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(s0, s4),
        _mm256_permute2f128_ps::<0x20>(s1, s5),
        _mm256_permute2f128_ps::<0x20>(s2, s6),
        _mm256_permute2f128_ps::<0x20>(s3, s7),
        _mm256_permute2f128_ps::<0x31>(s0, s4),
        _mm256_permute2f128_ps::<0x31>(s1, s5),
        _mm256_permute2f128_ps::<0x31>(s2, s6),
        _mm256_permute2f128_ps::<0x31>(s3, s7),
    ]
}

/// Packs `extent` lines of `kc` values as panels of `W` lines, `[extent/W][kc][W]`, zero-padded to whole
/// panels: value `kk` of line `l` is `src[l·ls + kk·ks]`. `B` packs its columns (`ls` = its column
/// stride), `A` its rows. Lines stored along k (`ks` = 1) go through 8 × 8 transposes; with `W` not a
/// multiple of 8 their 8-wide stores write up to `8 − W % 8` floats past the last panel (the buffer's
/// slack), each overwritten by the next store otherwise.
#[target_feature(enable = "avx2,fma")]
unsafe fn pack<const W: usize>(dst: *mut f32, src: *const f32, ls: isize, ks: isize, kc: usize, extent: usize) {
    for p in 0..extent.div_ceil(W) {
        let l0 = p * W;
        let h = W.min(extent - l0);
        let out = dst.add(p * kc * W);
        let line = |l: usize| src.offset((l0 + l) as isize * ls);
        if ls == 1 && h == W {
            for kk in 0..kc {
                std::ptr::copy_nonoverlapping(line(0).offset(kk as isize * ks), out.add(kk * W), W);
            }
        } else if ks == 1 && h == W {
            let mut kk = 0;
            while kk + 8 <= kc {
                if W.is_multiple_of(8) {
                    for g in 0..W / 8 {
                        let rows: [__m256; 8] = std::array::from_fn(|l| _mm256_loadu_ps(line(g * 8 + l).add(kk)));
                        for (q, v) in transpose8(rows).into_iter().enumerate() {
                            _mm256_storeu_ps(out.add((kk + q) * W + g * 8), v);
                        }
                    }
                } else {
                    // The last group's 8-wide stores run past its line into the next: store line by
                    // line, so that the next line's own stores come after.
                    const {
                        assert!(
                            W.is_multiple_of(8) || W < 16,
                            "lines of a panel not a multiple of 8 come in at most two groups"
                        )
                    };
                    let groups: [[__m256; 8]; 2] = std::array::from_fn(|g| {
                        if g * 8 >= W {
                            return [_mm256_setzero_ps(); 8];
                        }
                        transpose8(std::array::from_fn(|l| {
                            if g * 8 + l < W {
                                _mm256_loadu_ps(line(g * 8 + l).add(kk))
                            } else {
                                _mm256_setzero_ps()
                            }
                        }))
                    });
                    for q in 0..8 {
                        for (g, t) in groups.iter().enumerate().take(W.div_ceil(8)) {
                            _mm256_storeu_ps(out.add((kk + q) * W + g * 8), t[q]);
                        }
                    }
                }
                kk += 8;
            }
            for kk in kk..kc {
                for l in 0..W {
                    *out.add(kk * W + l) = *line(l).add(kk);
                }
            }
        } else {
            for kk in 0..kc {
                for l in 0..W {
                    *out.add(kk * W + l) = if l < h { *line(l).offset(kk as isize * ks) } else { 0.0 };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random matrix buffer.
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// A strided `rows × cols` matrix in one of three layouts: 0 row-major, 1 column-major, 2 both
    /// strides padded (the general packing path), with an offset.
    fn layout(rows: usize, cols: usize, kind: usize, seed: u64) -> (Vec<f32>, View, isize) {
        let (rs, cs, off) = match kind {
            0 => (cols as isize, 1, 3),
            1 => (1, rows as isize, 5),
            _ => (2 * cols as isize + 1, 2, 1),
        };
        let len = off as usize + (rows.max(1) - 1) * rs as usize + (cols.max(1) - 1) * cs as usize + 1;
        let data = values(len, seed);
        (data, View { ptr: std::ptr::null(), rs, cs }, off)
    }

    #[test]
    fn sgemm_matches_an_f64_product_in_every_layout() {
        let kernels: Vec<Kernel> = [Kernel::OwnAvx2, Kernel::OwnAvx512].into_iter().filter(|&k| runs(k)).collect();
        if kernels.is_empty() {
            eprintln!("sgemm: no AVX2/FMA on this CPU; not run");
            return;
        }
        eprintln!("sgemm: kernels {kernels:?}");
        // Edges everywhere (m, n, k not multiples of 6 or 12 / 16 or 32 / 8), blocks split along every
        // dimension (k > KC, m > MC, n > NC), and shapes that split across threads by rows and by columns.
        let shapes = [(1, 1, 1), (5, 7, 3), (13, 37, 29), (150, 40, 400), (37, 3100, 20), (300, 33, 17), (7, 5, 0)];
        for (kernel, &(m, n, k)) in kernels.iter().flat_map(|k| shapes.iter().map(move |s| (*k, s))) {
            for ka in 0..3 {
                for kb in 0..3 {
                    for (accumulate, parallel) in [(false, false), (true, true), (false, true)] {
                        let (ad, mut av, ao) = layout(m, k, ka, 1 + m as u64);
                        let (bd, mut bv, bo) = layout(k, n, kb, 2 + n as u64);
                        av.ptr = ad.as_ptr().wrapping_offset(ao);
                        bv.ptr = bd.as_ptr().wrapping_offset(bo);
                        let ldc = n + 2;
                        let mut c = values(m * ldc, 7);
                        let before = c.clone();
                        // SAFETY: the views stay inside their buffers (built by `layout`), `c` holds
                        // m rows of ldc.
                        unsafe { sgemm(kernel, (m, n, k), (c.as_mut_ptr(), ldc, accumulate), av, bv, parallel) };
                        for i in 0..m {
                            for j in 0..ldc {
                                let got = c[i * ldc + j];
                                if j >= n {
                                    assert_eq!(got, before[i * ldc + j], "{kernel:?}: wrote past column {n}");
                                    continue;
                                }
                                let mut want: f64 = (0..k)
                                    .map(|p| {
                                        let x = ad[(ao + i as isize * av.rs + p as isize * av.cs) as usize];
                                        let y = bd[(bo + p as isize * bv.rs + j as isize * bv.cs) as usize];
                                        x as f64 * y as f64
                                    })
                                    .sum();
                                if accumulate {
                                    want += before[i * ldc + j] as f64;
                                }
                                let tol = 1e-5 * (k as f64 + 1.0);
                                assert!(
                                    (got as f64 - want).abs() <= tol,
                                    "{kernel:?} {m}x{n}x{k} layouts {ka}/{kb} acc {accumulate} par {parallel}: C[{i},{j}] = {got}, want {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
