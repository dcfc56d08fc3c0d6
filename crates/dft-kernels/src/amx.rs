//! Matrix products with bf16 operands on Intel AMX tiles (`tdpbf16ps`), for the bf16-mixed path.
//!
//! `C = round_bf16(Σ_t bf16(L_t) · bf16(R_t))`: operands rounded to bf16 (round to nearest even, as a
//! cast), products accumulated in f32 by the tile unit, the sum rounded to bf16 once — the values a
//! `cast(bf16) → matmul → cast(f32)` chain gives, up to the order of the f32 accumulation.
//!
//! Layout: each operand is packed (and converted) into 1 KiB tiles, zero-padded to whole tiles:
//! the left operand as `[row tile][k slice][16 rows][32 bf16]`, the right one in AMX's pair layout
//! `[col tile][k slice][16 pairs][16 cols][2 bf16]` (`(R[2p][j], R[2p+1][j])`). Every 32 × 32 block of
//! C accumulates in four tiles (tmm0–3) from two left (tmm4–5) and two right (tmm6–7) tiles per k slice
//! of 32. Threads take 32-column strips of C (the strip's right panel stays in L1 while the left panel
//! streams from L2), or 32-row bands when there are too few strips; batches of small products run one
//! product per thread.
//!
//! Used only when the CPU has AMX-TILE and AMX-BF16 and Linux grants the tile state to the process
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`); `DFT_AMX=0` (or off) turns it off (the caller then takes Burn's bf16
//! matmul). [`available`] says which.

use crate::flex_matmul::{Mats, Src};
use rayon::prelude::*;
use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// f32 elements per tile row (and bf16 pairs per tile row of the right operand).
const TILE: usize = 16;
/// bf16 values along k per tile.
const KT: usize = 32;
/// bf16 values per tile.
const TILE_ELEMS: usize = TILE * KT;
/// A batch of products each under this many multiply-adds runs one product per thread.
const BATCH_SPLIT_OPS: usize = 256 * 256 * 256;
/// A product (or batch) under this many multiply-adds (a few µs on the tiles) runs on the calling thread.
const THREADED_OPS: usize = 128 * 128 * 128;

/// Whether the AMX path is used: the CPU has it, the OS grants it and `DFT_AMX` is not `0` / `off` /
/// `false` / `no` (another unrecognised value is named on stderr and leaves it on).
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let wanted = match std::env::var("DFT_AMX") {
            Err(_) => true,
            Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
                "" | "1" | "on" | "true" | "yes" => true,
                "0" | "off" | "false" | "no" => false,
                other => {
                    eprintln!("DFT_AMX={other:?} is not 0/1 (off/on): AMX stays on where the CPU has it");
                    true
                }
            },
        };
        wanted && detect().is_ok()
    })
}

/// Why AMX is not used, or `Ok` when it can be (ignores `DFT_AMX`).
pub fn detect() -> Result<(), String> {
    if !std::arch::is_x86_feature_detected!("avx512f")
        || !std::arch::is_x86_feature_detected!("avx512bw")
        || !std::arch::is_x86_feature_detected!("avx512vl")
        || !std::arch::is_x86_feature_detected!("avx512bf16")
    {
        return Err("the CPU has no AVX-512 F/BW/VL/BF16".into());
    }
    let max_leaf = std::arch::x86_64::__cpuid(0).eax;
    let edx = if max_leaf >= 7 { std::arch::x86_64::__cpuid_count(7, 0).edx } else { 0 };
    if max_leaf < 7 || edx & (1 << 24) == 0 || edx & (1 << 22) == 0 {
        return Err("the CPU has no AMX-TILE / AMX-BF16".into());
    }
    // arch_prctl(ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18): Linux ≥ 5.16 grants the tile
    // data state to the whole process on request (idempotent).
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

/// `x` rounded to bf16 (nearest, ties to even; NaN stays NaN), as bits.
#[inline(always)]
fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        ((b >> 16) | 0x40) as u16
    } else {
        ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) as u16
    }
}

/// Tile configuration (palette 1): eight tiles of 16 rows × 64 bytes.
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

/// Runs `f` with the tiles configured on this thread, releasing them after.
fn with_tiles<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: `available()` was checked by the caller (the tile state is granted); CONFIG is a valid
    // palette-1 configuration, 64-byte aligned as ldtilecfg requires.
    unsafe { asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly)) };
    let out = f();
    // SAFETY: releases this thread's tile state (valid after ldtilecfg).
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
    out
}

/// Tiles needed to cover `n` values in steps of `step`, rounded up to an even count (blocks are 2 × 2).
fn tiles(n: usize, step: usize) -> usize {
    n.div_ceil(step).div_ceil(2) * 2
}

/// 64 bytes on a cache line of its own: tile rows must not straddle two lines (a split tile load is
/// several times slower).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u16; 32]);

/// A 32 × 32 f32 block, cache-line aligned (tile stores).
#[repr(C, align(64))]
struct Block([f32; 1024]);

/// One operand of a product packed into tiles.
struct Packed {
    /// Tile rows (32 bf16 each); a tile is 16 consecutive lines.
    data: Vec<Line>,
    /// Tiles along the operand's outer dimension (rows of the left one, columns of the right one).
    outer: usize,
    /// k slices of 32.
    kt: usize,
}

impl Packed {
    #[inline(always)]
    fn tile(&self, outer: usize, ks: usize) -> *const u16 {
        // Offsets are in range by construction (outer < self.outer, ks < self.kt).
        self.data[(outer * self.kt + ks) * TILE..].as_ptr() as *const u16
    }
}

/// Packing buffers kept between products: fresh memory costs a page fault per 4 KiB on first touch
/// (the head's packed weight is 56 MiB), more than packing itself. At most [`POOL_KEEP`] are kept.
static POOL: std::sync::Mutex<Vec<Vec<Line>>> = std::sync::Mutex::new(Vec::new());
const POOL_KEEP: usize = 8;

/// An empty buffer with room for `lines`: the smallest pooled one that fits, else a new one.
fn take_buffer(lines: usize) -> Vec<Line> {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let fit = pool.iter().enumerate().filter(|(_, b)| b.capacity() >= lines).min_by_key(|(_, b)| b.capacity());
    match fit.map(|(i, _)| i) {
        Some(i) => pool.swap_remove(i),
        None => {
            // Grow the largest pooled buffer (its pages are already mapped) or start a new one.
            let largest = pool.iter().enumerate().max_by_key(|(_, b)| b.capacity()).map(|(i, _)| i);
            let mut b = largest.map(|i| pool.swap_remove(i)).unwrap_or_default();
            drop(pool);
            b.clear();
            b.reserve_exact(lines);
            b
        }
    }
}

/// Returns a buffer to the pool (dropping the smallest when it is full).
fn give_back(mut b: Vec<Line>) {
    b.clear();
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    pool.push(b);
    if pool.len() > POOL_KEEP {
        let smallest = pool.iter().enumerate().min_by_key(|(_, b)| b.capacity()).map(|(i, _)| i);
        if let Some(i) = smallest {
            pool.swap_remove(i);
        }
    }
}

impl Drop for Packed {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.data));
    }
}

/// Packs `outer` strips of `kt` tiles, each written in full (data and zero padding) by `strip(t, dst)`.
fn pack(outer: usize, kt: usize, parallel: bool, strip: impl Fn(usize, *mut u16) + Sync) -> Packed {
    let per = kt * TILE_ELEMS;
    let mut data = take_buffer(outer * kt * TILE);
    let base = data.as_mut_ptr() as usize;
    let one = |t: usize| strip(t, (base as *mut u16).wrapping_add(t * per));
    if parallel {
        (0..outer).into_par_iter().for_each(one);
    } else {
        (0..outer).for_each(one);
    }
    // SAFETY: capacity `outer·per`, and every strip wrote all of its `per` values.
    unsafe { data.set_len(outer * kt * TILE) };
    Packed { data, outer, kt }
}

/// Zeros `n` values at `p`.
///
/// # Safety
/// `p..p+n` writable.
#[inline]
unsafe fn zero(p: *mut u16, n: usize) {
    // SAFETY: the caller's contract.
    unsafe { std::ptr::write_bytes(p, 0, n) };
}

/// The left operand `L` (`m × k`, at element offset `off` of `l.data`) as row tiles.
fn pack_left(l: &Mats, off: isize, parallel: bool) -> Packed {
    let (m, k) = (l.rows, l.cols);
    let (outer, kt) = (tiles(m, TILE), k.div_ceil(KT));
    pack(outer, kt, parallel, |t, dst| {
        let rows = (t * TILE).min(m)..((t + 1) * TILE).min(m);
        // SAFETY: AVX-512 F/BW/BF16 were detected (`available`); the reads stay inside `l`'s matrix and
        // `dst` is this strip's `kt` tiles.
        unsafe { pack_left_strip(dst, l, off, rows, kt) }
    })
}

/// Rows `rows` (at most 16) of `L` into the `kt` tiles `[16][32]` at `out`, zero-padded.
///
/// # Safety
/// The CPU has AVX-512 (F, BW, BF16); every `(i, j)` with `i` in `rows`, `j < l.cols` is inside `l.data`
/// at `off + i·rs + j·cs`; `out` has room for `kt·512` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn pack_left_strip(out: *mut u16, l: &Mats, off: isize, rows: std::ops::Range<usize>, kt: usize) {
    let (k, h, r0) = (l.cols, rows.len(), rows.start);
    let base = Reader::at(l.data, off);
    if l.cs == 1 {
        // Rows contiguous: 32 values at a time, converted and stored as one tile row (zeros past k).
        for ks in 0..kt {
            let tile = out.add(ks * TILE_ELEMS);
            for i in 0..h {
                let v = convert32(base, (r0 + i) as isize * l.rs + (ks * KT) as isize, k - ks * KT);
                _mm512_storeu_si512(tile.add(i * KT) as *mut __m512i, v);
            }
            zero(tile.add(h * KT), (TILE - h) * KT);
        }
    } else if l.rs == 1 {
        // Columns contiguous (a transposed view, e.g. Xᵀ): per k slice, 16 column pairs of 16 rows
        // interleaved (one u32 per row and pair), transposed in registers into the 16 tile rows.
        let mask = lanes(h);
        let col = |j: usize| {
            if j < k {
                base.load16(j as isize * l.cs + r0 as isize, mask)
            } else {
                _mm512_setzero_ps()
            }
        };
        for ks in 0..kt {
            let mut v = [_mm512_setzero_si512(); 16];
            for (q, vq) in v.iter_mut().enumerate() {
                let j = ks * KT + 2 * q;
                *vq = interleave16(col(j), col(j + 1));
            }
            let rows = transpose16(v);
            for (i, r) in rows.iter().enumerate() {
                _mm512_storeu_si512(out.add(ks * TILE_ELEMS + i * KT) as *mut __m512i, *r);
            }
        }
    } else {
        zero(out, kt * TILE_ELEMS);
        for j in 0..k {
            for i in 0..h {
                let x = base.get((r0 + i) as isize * l.rs + j as isize * l.cs);
                *out.add((j / KT) * TILE_ELEMS + i * KT + j % KT) = bf16_bits(x);
            }
        }
    }
}

/// Where a packing pass reads: an operand's f32 values, or its bf16 bits (a bf16-stored weight), from
/// an element offset on.
#[derive(Clone, Copy)]
enum Reader {
    F32(*const f32),
    Bf16(*const u16),
}

impl Reader {
    /// The operand's storage from element `off` on.
    ///
    /// # Safety
    /// `off` is inside the storage.
    unsafe fn at(src: Src, off: isize) -> Self {
        match src {
            Src::F32(d) => Reader::F32(d.as_ptr().offset(off)),
            Src::Bf16(d) => Reader::Bf16(d.as_ptr().offset(off)),
        }
    }

    /// 16 consecutive values from element `at` as f32 (lanes outside `mask` read as zero and are not
    /// touched in memory). bf16 widens exactly, so packing converts it back bit for bit.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL; the lanes in `mask` are readable.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn load16(self, at: isize, mask: __mmask16) -> __m512 {
        match self {
            Reader::F32(p) => _mm512_maskz_loadu_ps(mask, p.offset(at)),
            Reader::Bf16(p) => {
                let bits = _mm256_maskz_loadu_epi16(mask, p.offset(at) as *const i16);
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(bits)))
            }
        }
    }

    /// The value at element `at`, as f32.
    ///
    /// # Safety
    /// `at` is readable.
    #[inline]
    unsafe fn get(self, at: isize) -> f32 {
        match self {
            Reader::F32(p) => *p.offset(at),
            Reader::Bf16(p) => f32::from_bits((*p.offset(at) as u32) << 16),
        }
    }
}

/// A mask of the first `min(n, 16)` of 16 lanes.
#[inline]
fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xFFFF
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// Up to 32 consecutive values from element `at` (`len` of them valid; the rest read as zero) as 32 bf16.
///
/// # Safety
/// AVX-512 F/BW/VL/BF16; elements `at..at+min(len, 32)` readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn convert32(src: Reader, at: isize, len: usize) -> __m512i {
    let lo = src.load16(at, lanes(len));
    let hi = src.load16(at + 16, lanes(len.saturating_sub(16)));
    std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo))
}

/// The transpose of a 16 × 16 matrix of u32 (`v[i]` is row i).
///
/// # Safety
/// AVX-512 F.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn transpose16(v: [__m512i; 16]) -> [__m512i; 16] {
    // 1. Rows 2i, 2i+1 interleaved by 32-bit element within each 128-bit lane.
    let mut t = [_mm512_setzero_si512(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
    }
    // 2. By 64-bit element: s[4g + c] holds, in 128-bit lane L, column c + 4L of rows 4g..4g+3.
    let mut s = [_mm512_setzero_si512(); 16];
    for g in 0..4 {
        s[4 * g] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        s[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        s[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        s[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
    // 3. Gather lane L of the four groups: column c + 4L.
    let mut out = [_mm512_setzero_si512(); 16];
    for c in 0..4 {
        let u01 = _mm512_shuffle_i32x4::<0x88>(s[c], s[4 + c]); // g0 L0, g0 L2, g1 L0, g1 L2
        let v01 = _mm512_shuffle_i32x4::<0xDD>(s[c], s[4 + c]); // g0 L1, g0 L3, g1 L1, g1 L3
        let u23 = _mm512_shuffle_i32x4::<0x88>(s[8 + c], s[12 + c]);
        let v23 = _mm512_shuffle_i32x4::<0xDD>(s[8 + c], s[12 + c]);
        out[c] = _mm512_shuffle_i32x4::<0x88>(u01, u23);
        out[c + 8] = _mm512_shuffle_i32x4::<0xDD>(u01, u23);
        out[c + 4] = _mm512_shuffle_i32x4::<0x88>(v01, v23);
        out[c + 12] = _mm512_shuffle_i32x4::<0xDD>(v01, v23);
    }
    out
}

/// `(a[0], b[0]), (a[1], b[1]), …` as 16 pairs of bf16 (one u32 each).
///
/// # Safety
/// AVX-512 F/BW/BF16.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn interleave16(a: __m512, b: __m512) -> __m512i {
    let v = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(b, a));
    static IDX: [u16; 32] = [
        0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30,
        15, 31,
    ];
    _mm512_permutexvar_epi16(_mm512_loadu_si512(IDX.as_ptr() as *const __m512i), v)
}

/// The right operand `R` (`k × n`, at element offset `off` of `r.data`) as column tiles in pair layout.
fn pack_right(r: &Mats, off: isize, parallel: bool) -> Packed {
    let (k, n) = (r.rows, r.cols);
    let (outer, kt) = (tiles(n, TILE), k.div_ceil(KT));
    pack(outer, kt, parallel, |t, dst| {
        let cols = (t * TILE).min(n)..((t + 1) * TILE).min(n);
        // SAFETY: as in `pack_left`.
        unsafe { pack_right_strip(dst, r, off, cols, kt) }
    })
}

/// Columns `cols` (at most 16) of `R` into the `kt` tiles `[16 pairs][16 cols][2]` at `out`,
/// zero-padded.
///
/// # Safety
/// As [`pack_left_strip`], for `(p, j)` with `p < r.rows`, `j` in `cols`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn pack_right_strip(out: *mut u16, r: &Mats, off: isize, cols: std::ops::Range<usize>, kt: usize) {
    let (k, w, c0) = (r.rows, cols.len(), cols.start);
    let base = Reader::at(r.data, off);
    if r.cs == 1 && w > 0 {
        // Rows of R contiguous: two rows at a time, interleaved into one 64-byte pair row.
        if !k.is_multiple_of(KT) {
            zero(out.add((kt - 1) * TILE_ELEMS), TILE_ELEMS);
        }
        let mask = lanes(w);
        let mut p = 0;
        while p < k {
            let r0 = base.load16(p as isize * r.rs + c0 as isize, mask);
            let r1 =
                if p + 1 < k { base.load16((p + 1) as isize * r.rs + c0 as isize, mask) } else { _mm512_setzero_ps() };
            let at = out.add((p / KT) * TILE_ELEMS + (p % KT) / 2 * KT);
            _mm512_storeu_si512(at as *mut __m512i, interleave16(r0, r1));
            p += 2;
        }
    } else if r.rs == 1 && w > 0 {
        // Columns of R contiguous (a transposed weight): per k slice, the 32 values of each column are
        // 16 pairs (one u32 per pair row); 16 columns transposed in registers into the 16 pair rows.
        for ks in 0..kt {
            let mut v = [_mm512_setzero_si512(); 16];
            for (j, vj) in v.iter_mut().enumerate().take(w) {
                *vj = convert32(base, (c0 + j) as isize * r.cs + (ks * KT) as isize, k - ks * KT);
            }
            let rows = transpose16(v);
            for (p, row) in rows.iter().enumerate() {
                _mm512_storeu_si512(out.add(ks * TILE_ELEMS + p * KT) as *mut __m512i, *row);
            }
        }
    } else {
        zero(out, kt * TILE_ELEMS);
        for j in 0..w {
            for p in 0..k {
                let x = base.get(p as isize * r.rs + (c0 + j) as isize * r.cs);
                *out.add((p / KT) * TILE_ELEMS + (p % KT) / 2 * KT + j * 2 + p % 2) = bf16_bits(x);
            }
        }
    }
}

/// `C[32 × 32] = Σ_terms Σ_ks L(band) · R(strip)` into `tmp` (row stride 32).
///
/// # Safety
/// Tiles configured on this thread (`with_tiles`); `2·band + 1 < l.outer`, `2·strip + 1 < r.outer` and
/// `l.kt == r.kt` for every term.
#[inline(always)]
unsafe fn block(terms: &[(Packed, Packed)], band: usize, strip: usize, tmp: &mut Block) {
    // SAFETY: every tileloadd reads one packed 1 KiB tile (16 rows of 64 bytes, stride 64) inside its
    // operand's buffer (indices checked by the caller's contract); the stores write 16 rows of 64 bytes
    // at stride 128 bytes inside `tmp` (4 KiB).
    unsafe {
        asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
        for (l, r) in terms {
            for ks in 0..l.kt {
                asm!(
                    "tileloadd tmm4, [{a0} + {s}*1]",
                    "tileloadd tmm6, [{b0} + {s}*1]",
                    "tileloadd tmm5, [{a1} + {s}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tileloadd tmm7, [{b1} + {s}*1]",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) l.tile(2 * band, ks), a1 = in(reg) l.tile(2 * band + 1, ks),
                    b0 = in(reg) r.tile(2 * strip, ks), b1 = in(reg) r.tile(2 * strip + 1, ks),
                    s = in(reg) 64isize,
                    options(nostack, readonly),
                );
            }
        }
        let c = tmp.0.as_mut_ptr();
        asm!(
            "tilestored [{c0} + {s}*1], tmm0",
            "tilestored [{c1} + {s}*1], tmm1",
            "tilestored [{c2} + {s}*1], tmm2",
            "tilestored [{c3} + {s}*1], tmm3",
            c0 = in(reg) c, c1 = in(reg) c.add(16), c2 = in(reg) c.add(512), c3 = in(reg) c.add(528),
            s = in(reg) 128isize,
            options(nostack),
        );
    }
}

/// Rounds the block in `tmp` to bf16 and writes (or adds) its valid part into `dst` (`m × n`,
/// contiguous) at rows `32·band`, columns `32·strip`.
///
/// # Safety
/// AVX-512 F/BW/BF16; `dst` holds `m·n` f32 (initialised when `accumulate`); no other thread writes
/// this block.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn write_block(dst: *mut f32, m: usize, n: usize, band: usize, strip: usize, tmp: &Block, accumulate: bool) {
    let (r0, c0) = (band * 32, strip * 32);
    let (h, w) = ((m - r0.min(m)).min(32), (n - c0.min(n)).min(32));
    let (m0, m1) = (lanes(w), lanes(w.saturating_sub(16)));
    for i in 0..h {
        let row = dst.add((r0 + i) * n + c0);
        for (half, mk) in [(0, m0), (16, m1)] {
            if mk == 0 {
                continue;
            }
            let v = _mm512_loadu_ps(tmp.0.as_ptr().add(i * 32 + half));
            // Round to bf16 (nearest even) and widen back: the bf16 bits in the high half of each f32.
            let b = std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v));
            let mut x = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(b)));
            if accumulate {
                x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mk, row.add(half)));
            }
            _mm512_mask_storeu_ps(row.add(half), mk, x);
        }
    }
}

/// Writes the product of one group (`Σ` over its terms) into `dst` (`m × n`, contiguous).
///
/// # Safety
/// As [`products_bf16`], for one group.
unsafe fn group_product(
    dst: *mut f32,
    terms: &[(Packed, Packed)],
    m: usize,
    n: usize,
    accumulate: bool,
    parallel: bool,
) {
    let (bands, strips) = (terms[0].0.outer / 2, terms[0].1.outer / 2);
    let dst = dst as usize;
    // The blocks of `strip_range` × `band_range`, strip by strip (the strip's right panel stays in L1).
    let run = |strip_range: std::ops::Range<usize>, band_range: std::ops::Range<usize>| {
        with_tiles(|| {
            let mut tmp = Block([0f32; 1024]);
            for strip in strip_range {
                for band in band_range.clone() {
                    // SAFETY: indices in range; tiles configured; blocks are disjoint between tasks.
                    unsafe {
                        block(terms, band, strip, &mut tmp);
                        write_block(dst as *mut f32, m, n, band, strip, &tmp, accumulate);
                    }
                }
            }
        })
    };
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    let chunks = |total: usize| {
        let chunk = total.div_ceil(threads * 2).max(1);
        (0..total.div_ceil(chunk)).map(move |c| c * chunk..((c + 1) * chunk).min(total))
    };
    if threads <= 1 {
        run(0..strips, 0..bands);
    } else if strips >= 2 * threads || strips >= bands {
        // Strips in contiguous chunks (a few per thread, for balance).
        chunks(strips).collect::<Vec<_>>().into_par_iter().for_each(|r| run(r, 0..bands));
    } else {
        // Few strips, many bands (a narrow product): split the bands.
        chunks(bands).collect::<Vec<_>>().into_par_iter().for_each(|r| run(0..strips, r));
    }
}

/// `dst[g] = round_bf16(Σ_{(l, r) in groups[g]} bf16(L[l])·bf16(R[r]))` (or `dst[g] +=` with
/// `accumulate`), `dst` contiguous `[groups, L.rows, R.cols]`; `L.cols == R.rows > 0`; a group without
/// terms is left as it is (zeros the caller wrote).
///
/// # Safety
/// [`available`] returned true; `dst` holds `groups.len()·L.rows·R.cols` elements (initialised when
/// `accumulate`); every offset with its matrix's rows, cols and strides stays inside that matrix's buffer.
pub(crate) unsafe fn products_bf16(
    dst: *mut f32,
    l: &Mats,
    r: &Mats,
    groups: &[Vec<(isize, isize)>],
    accumulate: bool,
) {
    let (m, n, k) = (l.rows, r.cols, l.cols);
    debug_assert!(k > 0 && k == r.rows && groups.iter().all(|g| !g.is_empty()));
    let dst = dst as usize;
    let one = |g: usize, parallel: bool| {
        if groups[g].is_empty() {
            return; // a sum with no term: the caller's zeros
        }
        let terms: Vec<(Packed, Packed)> =
            groups[g].iter().map(|&(lo, ro)| (pack_left(l, lo, parallel), pack_right(r, ro, parallel))).collect();
        // SAFETY: group g's block of `dst` (m·n elements at g·m·n) belongs to this call alone.
        unsafe { group_product((dst as *mut f32).add(g * m * n), &terms, m, n, accumulate, parallel) };
    };
    // Large products use every thread inside; batches of small ones one product per thread; a single
    // small product runs on the calling thread.
    let ops = m * n * k;
    if groups.len() > 1 && (ops < BATCH_SPLIT_OPS || groups.len() >= 2 * rayon::current_num_threads()) {
        (0..groups.len()).into_par_iter().for_each(|g| one(g, false));
    } else {
        let parallel = ops * groups.len() >= THREADED_OPS;
        (0..groups.len()).for_each(|g| one(g, parallel));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose16_transposes() {
        if !available() {
            return;
        }
        let m: Vec<i32> = (0..256).collect();
        // SAFETY: AVX-512 F is present (`available`); loads and stores of 16 i32 inside `m` / `got`.
        let got = unsafe {
            let rows: [__m512i; 16] =
                std::array::from_fn(|i| _mm512_loadu_si512(m[i * 16..].as_ptr() as *const __m512i));
            let t = transpose16(rows);
            let mut got = vec![0i32; 256];
            for (i, r) in t.iter().enumerate() {
                _mm512_storeu_si512(got[i * 16..].as_mut_ptr() as *mut __m512i, *r);
            }
            got
        };
        for i in 0..16 {
            for j in 0..16 {
                assert_eq!(got[i * 16 + j], m[j * 16 + i], "({i}, {j})");
            }
        }
    }
}
