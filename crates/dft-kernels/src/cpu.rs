//! Slice kernels for the fused ops, forward and backward, on contiguous f32 rows.
//!
//! Every kernel is written once as plain, branch-free Rust (`#[inline(always)]` bodies) and compiled
//! twice: for the build's baseline target and, on x86-64, inside a `#[target_feature(enable = "avx2,fma")]`
//! wrapper chosen at run time, where LLVM vectorises the loops 8 lanes wide. Reductions keep 8 partial
//! accumulators so that they vectorise without reassociation flags. Work is split over rows with rayon
//! (the pool Burn's CPU backends use), in tasks of at least [`MIN_TASK`] elements.

use rayon::prelude::*;

/// Smallest number of elements one rayon task handles (smaller tensors run on the calling thread).
pub const MIN_TASK: usize = 16 * 1024;

const LANES: usize = 8;

/// Whether the AVX2 + FMA versions are used (x86-64 CPUs that have them).
pub fn simd_level() -> &'static str {
    if has_avx2() {
        "avx2+fma"
    } else {
        "baseline"
    }
}

#[inline]
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `pub fn $name(args)` that runs `$body` through the AVX2 + FMA copy when the CPU has it.
macro_rules! dispatch {
    ($(#[$m:meta])* $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) $(-> $ret:ty)? => $imp:ident) => {
        $(#[$m])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $imp($($arg),*)
                }
                if has_avx2() {
                    // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $imp($($arg),*)
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Scalar math that vectorises: no calls into libm, no data-dependent branches.
// ---------------------------------------------------------------------------------------------

/// `e^x` in f32 (Cody–Waite range reduction, degree-6 minimax polynomial: relative error < 2e-7 on the
/// whole range); 0 below −87.3 (where f32's normal range ends), saturating at e^88.3 (finite).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest with the 1.5·2^23 trick (exact for |v| < 2^22).
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.3, 88.3);
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let poly = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    let y = poly * scale;
    if x < -87.3 {
        0.0
    } else {
        y
    }
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh x = 1 − 2 / (e^{2x} + 1)` (absolute error < 2e-7; ±1 where e^{2x} saturates).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// The gate activations of a gated MLP: `act(gate) · up`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateAct {
    /// `x · σ(x)` (Llama).
    Silu,
    /// `½x(1 + tanh(√(2/π)(x + 0.044715x³)))` (Gemma's `gelu_pytorch_tanh`).
    GeluTanh,
}

const GELU_C: f32 = 0.797_884_6; // sqrt(2/pi)
const GELU_A: f32 = 0.044_715;

#[inline(always)]
fn act_value(act: GateAct, x: f32) -> f32 {
    match act {
        GateAct::Silu => x * sigmoid(x),
        GateAct::GeluTanh => 0.5 * x * (1.0 + tanh(GELU_C * (x + GELU_A * x * x * x))),
    }
}

/// `(act(x), act'(x))`.
#[inline(always)]
fn act_value_grad(act: GateAct, x: f32) -> (f32, f32) {
    match act {
        GateAct::Silu => {
            let s = sigmoid(x);
            (x * s, s * (1.0 + x * (1.0 - s)))
        }
        GateAct::GeluTanh => {
            let t = tanh(GELU_C * (x + GELU_A * x * x * x));
            let dt = (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * x * x);
            (0.5 * x * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * x * dt)
        }
    }
}

#[inline(always)]
fn sum8(v: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for &x in rest {
        s += x;
    }
    s
}

#[inline(always)]
fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[inline(always)]
fn max8(v: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &x in acc.iter().chain(rest) {
        m = if x > m { x } else { m };
    }
    m
}

/// `n` zeros for a kernel's output. Large buffers are written by the rayon pool: a fresh buffer's zero
/// fill (and its page faults) on the calling thread alone is serial time the other threads wait out.
pub fn zeros(n: usize) -> Vec<f32> {
    if n < 1 << 18 {
        return vec![0f32; n];
    }
    let mut v: Vec<f32> = Vec::with_capacity(n);
    v.spare_capacity_mut().par_chunks_mut(1 << 16).for_each(|c| {
        for x in c {
            x.write(0.0);
        }
    });
    // SAFETY: the first `n` elements were all written just above.
    unsafe { v.set_len(n) };
    v
}

/// Rows per rayon task for rows of `row_len` elements.
fn rows_per_task(row_len: usize) -> usize {
    MIN_TASK.div_ceil(row_len.max(1)).max(1)
}

// ---------------------------------------------------------------------------------------------
// Softmax over the last dimension of `scale·s (+ softcap) + bias`.
// ---------------------------------------------------------------------------------------------

/// Options of [`softmax_forward`]: `z = cap·tanh(scale·s / cap) + bias` (no cap: `scale·s + bias`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoftmaxSpec {
    pub scale: f32,
    pub softcap: Option<f32>,
}

#[inline(always)]
fn softmax_rows_imp(s: &[f32], bias: Option<(&[f32], &[usize])>, out: &mut [f32], row_len: usize, spec: SoftmaxSpec) {
    for (r, o) in out.chunks_exact_mut(row_len).enumerate() {
        let si = &s[r * row_len..(r + 1) * row_len];
        match spec.softcap {
            Some(cap) => {
                let inv = spec.scale / cap;
                for (z, &x) in o.iter_mut().zip(si) {
                    *z = cap * tanh(x * inv);
                }
            }
            None => {
                for (z, &x) in o.iter_mut().zip(si) {
                    *z = x * spec.scale;
                }
            }
        }
        if let Some((bias, starts)) = bias {
            for (z, &b) in o.iter_mut().zip(&bias[starts[r]..starts[r] + row_len]) {
                *z += b;
            }
        }
        let m = max8(o);
        for z in o.iter_mut() {
            *z = exp(*z - m);
        }
        let inv_sum = 1.0 / sum8(o);
        for z in o.iter_mut() {
            *z *= inv_sum;
        }
    }
}

dispatch!(softmax_rows(s: &[f32], bias: Option<(&[f32], &[usize])>, out: &mut [f32], row_len: usize, spec: SoftmaxSpec) => softmax_rows_imp);

/// `out = softmax(z)` over rows of `row_len` (see [`SoftmaxSpec`]). The bias is given as its data and,
/// for every row of `s`, the offset of that row's bias row in it (a bias broadcast over heads repeats
/// offsets; one the shape of `s` has offsets `0, row_len, 2·row_len, …`).
pub fn softmax_forward(s: &[f32], bias: Option<(&[f32], &[usize])>, row_len: usize, spec: SoftmaxSpec) -> Vec<f32> {
    assert!(s.len().is_multiple_of(row_len));
    if let Some((b, starts)) = bias {
        assert_eq!(starts.len(), s.len() / row_len, "softmax_forward: one bias offset per row");
        assert!(starts.iter().all(|&o| o + row_len <= b.len()), "softmax_forward: bias offset out of range");
    }
    let mut out = zeros(s.len());
    let rows = rows_per_task(row_len);
    let chunk = rows * row_len;
    out.par_chunks_mut(chunk).enumerate().for_each(|(i, o)| {
        let at = i * chunk;
        let bias = bias.map(|(b, starts)| (b, &starts[i * rows..i * rows + o.len() / row_len]));
        softmax_rows(&s[at..at + o.len()], bias, o, row_len, spec);
    });
    out
}

#[inline(always)]
fn softmax_back_rows_imp(p: &[f32], dp: &[f32], s: Option<&[f32]>, ds: &mut [f32], row_len: usize, spec: SoftmaxSpec) {
    for (r, d) in ds.chunks_exact_mut(row_len).enumerate() {
        let range = r * row_len..(r + 1) * row_len;
        let (pr, dpr) = (&p[range.clone()], &dp[range.clone()]);
        let dot = dot8(pr, dpr);
        for ((o, &pi), &gi) in d.iter_mut().zip(pr).zip(dpr) {
            *o = pi * (gi - dot) * spec.scale;
        }
        if let (Some(cap), Some(s)) = (spec.softcap, s) {
            let inv = spec.scale / cap;
            for (o, &x) in d.iter_mut().zip(&s[range]) {
                let t = tanh(x * inv);
                *o *= 1.0 - t * t;
            }
        }
    }
}

dispatch!(softmax_back_rows(p: &[f32], dp: &[f32], s: Option<&[f32]>, ds: &mut [f32], row_len: usize, spec: SoftmaxSpec) => softmax_back_rows_imp);

/// Gradient into `s` of [`softmax_forward`] given its output `p` and the output gradient `dp`
/// (`s` itself is needed only with a softcap). The bias gets `ds / scale` (no softcap) — not computed:
/// the bias is a constant mask.
pub fn softmax_backward(p: &[f32], dp: &[f32], s: Option<&[f32]>, row_len: usize, spec: SoftmaxSpec) -> Vec<f32> {
    assert_eq!(p.len(), dp.len());
    let mut ds = zeros(p.len());
    let chunk = rows_per_task(row_len) * row_len;
    ds.par_chunks_mut(chunk).enumerate().for_each(|(i, d)| {
        let at = i * chunk;
        let range = at..at + d.len();
        softmax_back_rows(&p[range.clone()], &dp[range.clone()], s.map(|s| &s[range]), d, row_len, spec);
    });
    ds
}

// ---------------------------------------------------------------------------------------------
// Gated activation `act(gate) · up`.
// ---------------------------------------------------------------------------------------------

#[inline(always)]
fn gated_imp(g: &[f32], u: &[f32], out: &mut [f32], act: GateAct) {
    for ((o, &x), &y) in out.iter_mut().zip(g).zip(u) {
        *o = act_value(act, x) * y;
    }
}

dispatch!(gated_chunk(g: &[f32], u: &[f32], out: &mut [f32], act: GateAct) => gated_imp);

/// `act(g) · u`, element-wise.
pub fn gated_forward(g: &[f32], u: &[f32], act: GateAct) -> Vec<f32> {
    assert_eq!(g.len(), u.len());
    let mut out = zeros(g.len());
    out.par_chunks_mut(MIN_TASK).enumerate().for_each(|(i, o)| {
        let at = i * MIN_TASK;
        gated_chunk(&g[at..at + o.len()], &u[at..at + o.len()], o, act);
    });
    out
}

#[inline(always)]
fn gated_back_imp(g: &[f32], u: &[f32], d: &[f32], dg: &mut [f32], du: &mut [f32], act: GateAct) {
    for i in 0..d.len() {
        let (a, da) = act_value_grad(act, g[i]);
        dg[i] = d[i] * u[i] * da;
        du[i] = d[i] * a;
    }
}

dispatch!(gated_back_chunk(g: &[f32], u: &[f32], d: &[f32], dg: &mut [f32], du: &mut [f32], act: GateAct) => gated_back_imp);

/// Gradients `(d/dg, d/du)` of [`gated_forward`] given the output gradient `d`.
pub fn gated_backward(g: &[f32], u: &[f32], d: &[f32], act: GateAct) -> (Vec<f32>, Vec<f32>) {
    assert!(g.len() == u.len() && u.len() == d.len());
    let (mut dg, mut du) = (zeros(g.len()), zeros(g.len()));
    dg.par_chunks_mut(MIN_TASK).zip(du.par_chunks_mut(MIN_TASK)).enumerate().for_each(|(i, (a, b))| {
        let r = i * MIN_TASK..i * MIN_TASK + a.len();
        gated_back_chunk(&g[r.clone()], &u[r.clone()], &d[r], a, b, act);
    });
    (dg, du)
}

// ---------------------------------------------------------------------------------------------
// RMSNorm over the last dimension: `y = x · rsqrt(mean(x²) + eps) · w`.
// ---------------------------------------------------------------------------------------------

#[inline(always)]
fn inv_rms(x: &[f32], eps: f32) -> f32 {
    1.0 / (dot8(x, x) / x.len() as f32 + eps).sqrt()
}

#[inline(always)]
fn rms_norm_imp(x: &[f32], w: &[f32], out: &mut [f32], eps: f32) {
    let n = w.len();
    for (xr, o) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let r = inv_rms(xr, eps);
        for ((y, &v), &wi) in o.iter_mut().zip(xr).zip(w) {
            *y = v * r * wi;
        }
    }
}

dispatch!(rms_norm_rows(x: &[f32], w: &[f32], out: &mut [f32], eps: f32) => rms_norm_imp);

/// RMSNorm of rows of `w.len()` elements.
pub fn rms_norm_forward(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let n = w.len();
    assert!(x.len().is_multiple_of(n));
    let mut out = zeros(x.len());
    let chunk = rows_per_task(n) * n;
    out.par_chunks_mut(chunk).enumerate().for_each(|(i, o)| {
        rms_norm_rows(&x[i * chunk..i * chunk + o.len()], w, o, eps);
    });
    out
}

/// `dx` for the rows; adds this chunk's `dw` contribution into `dw` when given.
#[inline(always)]
fn rms_norm_back_imp(x: &[f32], w: &[f32], dy: &[f32], dx: &mut [f32], dw: Option<&mut [f32]>, eps: f32) {
    let n = w.len();
    let mut dw = dw;
    for ((xr, dyr), dxr) in x.chunks_exact(n).zip(dy.chunks_exact(n)).zip(dx.chunks_exact_mut(n)) {
        let r = inv_rms(xr, eps);
        // g = dy·w; dx = r·g − x·r³·mean(g·x)
        let mut acc = [0f32; LANES];
        let mut tail = 0f32;
        let full = n - n % LANES;
        for c in (0..full).step_by(LANES) {
            for l in 0..LANES {
                acc[l] += dyr[c + l] * w[c + l] * xr[c + l];
            }
        }
        for i in full..n {
            tail += dyr[i] * w[i] * xr[i];
        }
        let gx = acc.iter().sum::<f32>() + tail;
        let k = r * r * r * gx / n as f32;
        for i in 0..n {
            dxr[i] = r * dyr[i] * w[i] - xr[i] * k;
        }
        if let Some(dw) = dw.as_deref_mut() {
            for i in 0..n {
                dw[i] += dyr[i] * xr[i] * r;
            }
        }
    }
}

dispatch!(rms_norm_back_rows(x: &[f32], w: &[f32], dy: &[f32], dx: &mut [f32], dw: Option<&mut [f32]>, eps: f32) => rms_norm_back_imp);

/// Gradients of [`rms_norm_forward`]: `dx`, and `dw` (summed over rows) when `want_dw`.
pub fn rms_norm_backward(x: &[f32], w: &[f32], dy: &[f32], eps: f32, want_dw: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    let n = w.len();
    assert!(x.len() == dy.len() && x.len().is_multiple_of(n));
    let mut dx = zeros(x.len());
    let chunk = rows_per_task(n) * n;
    let partial: Vec<Option<Vec<f32>>> = dx
        .par_chunks_mut(chunk)
        .enumerate()
        .map(|(i, d)| {
            let r = i * chunk..i * chunk + d.len();
            let mut dw = want_dw.then(|| vec![0f32; n]);
            rms_norm_back_rows(&x[r.clone()], w, &dy[r], d, dw.as_deref_mut(), eps);
            dw
        })
        .collect();
    let dw = want_dw.then(|| {
        let mut total = vec![0f32; n];
        for p in partial.into_iter().flatten() {
            for (t, v) in total.iter_mut().zip(p) {
                *t += v;
            }
        }
        total
    });
    (dx, dw)
}

// ---------------------------------------------------------------------------------------------
// Softmax cross-entropy over rows of logits (the LM-head loss), loss and gradient in one pass.
// ---------------------------------------------------------------------------------------------

/// `Σ e^{z−m}` over a row, in [`sum8`]'s order (so that it equals `sum8` of the stored exponentials).
#[inline(always)]
fn sum_exp8(row: &[f32], m: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for ch in chunks {
        for l in 0..LANES {
            acc[l] += exp(ch[l] - m);
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for &z in rest {
        s += exp(z - m);
    }
    s
}

/// One row: returns `lse(z) − z[t]` and, when `grad`, overwrites the row with `∂/∂raw` of it:
/// `(softmax(z) − onehot(t)) · dz/draw`, where `z = raw` or `z = cap·tanh(raw / cap)`.
#[inline(always)]
fn xent_row(row: &mut [f32], t: usize, cap: Option<f32>, grad: bool) -> f64 {
    if let Some(c) = cap {
        let inv = 1.0 / c;
        for z in row.iter_mut() {
            *z = c * tanh(*z * inv);
        }
    }
    let zt = row[t];
    let m = max8(row);
    let sum = match (grad, cap) {
        (false, _) => sum_exp8(row, m),
        // No softcap: the row keeps e^{z−m} (one exp pass), scaled to softmax − onehot below.
        (true, None) => {
            for z in row.iter_mut() {
                *z = exp(*z - m);
            }
            let sum = sum8(row);
            let inv_sum = 1.0 / sum;
            for z in row.iter_mut() {
                *z *= inv_sum;
            }
            row[t] -= 1.0;
            sum
        }
        // Softcap: the derivative needs z, so the row keeps z until the last pass.
        (true, Some(c)) => {
            let sum = sum_exp8(row, m);
            let (inv_sum, inv) = (1.0 / sum, 1.0 / c);
            for z in row.iter_mut() {
                let (p, u) = (exp(*z - m) * inv_sum, *z * inv);
                *z = p * (1.0 - u * u);
            }
            let u = zt * inv;
            row[t] -= 1.0 - u * u;
            sum
        }
    };
    m as f64 + (sum as f64).ln() - zt as f64
}

#[inline(always)]
fn xent_rows_imp(rows: &mut [f32], targets: &[u32], v: usize, cap: Option<f32>, grad: bool) -> f64 {
    let mut loss = 0f64;
    for (row, &t) in rows.chunks_exact_mut(v).zip(targets) {
        loss += xent_row(row, t as usize, cap, grad);
    }
    loss
}

dispatch!(xent_rows(rows: &mut [f32], targets: &[u32], v: usize, cap: Option<f32>, grad: bool) -> f64 => xent_rows_imp);

/// Summed softmax cross-entropy of the rows of `logits` (`[targets.len(), v]`, raw head outputs; with a
/// softcap `z = cap·tanh(raw / cap)`). With `grad`, `logits` is overwritten by `∂loss/∂raw`.
///
/// # Panics
/// If a target is not below `v`, or the sizes disagree.
pub fn softmax_xent(logits: &mut [f32], targets: &[u32], v: usize, cap: Option<f32>, grad: bool) -> f64 {
    assert_eq!(
        logits.len(),
        targets.len() * v,
        "softmax_xent: {} logits for {} rows of {v}",
        logits.len(),
        targets.len()
    );
    if let Some(&bad) = targets.iter().find(|&&t| t as usize >= v) {
        panic!("softmax_xent: target id {bad} is outside the vocabulary of {v}");
    }
    let rows = rows_per_task(v);
    logits
        .par_chunks_mut(rows * v)
        .zip(targets.par_chunks(rows))
        .map(|(chunk, t)| xent_rows(chunk, t, v, cap, grad))
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Strided copy: materialise a strided view (e.g. a permutation) contiguously.
// ---------------------------------------------------------------------------------------------

/// Drops size-1 dims and merges dims that are contiguous with their inner neighbour.
fn collapse(shape: &[usize], strides: &[isize]) -> (Vec<usize>, Vec<isize>) {
    let (mut sh, mut st): (Vec<usize>, Vec<isize>) = (Vec::new(), Vec::new());
    for (&n, &s) in shape.iter().zip(strides) {
        if n == 1 {
            continue;
        }
        match (sh.last_mut(), st.last_mut()) {
            (Some(pn), Some(ps)) if *ps == s * n as isize => {
                *pn *= n;
                *ps = s;
            }
            _ => {
                sh.push(n);
                st.push(s);
            }
        }
    }
    (sh, st)
}

/// The elements of the view (`shape`, `strides` ≥ 0 in elements, `offset`) over `src`, in row-major order.
/// Runs along the innermost dimension are copied whole when it is contiguous; the outer dimensions are
/// split over rayon tasks.
///
/// # Panics
/// If a stride is negative or the view reaches outside `src`.
pub fn strided_copy(src: &[f32], offset: usize, shape: &[usize], strides: &[isize]) -> Vec<f32> {
    assert_eq!(shape.len(), strides.len());
    assert!(strides.iter().all(|&s| s >= 0), "strided_copy: negative strides");
    let n: usize = shape.iter().product();
    let (sh, st) = collapse(shape, strides);
    if n == 0 {
        return Vec::new();
    }
    if sh.is_empty() {
        return vec![src[offset]];
    }
    let (inner, inner_stride) = (*sh.last().unwrap(), *st.last().unwrap() as usize);
    let (outer_shape, outer_strides) = (&sh[..sh.len() - 1], &st[..st.len() - 1]);
    let max_at = offset + sh.iter().zip(&st).map(|(&n, &s)| (n - 1) * s as usize).sum::<usize>();
    assert!(max_at < src.len(), "strided_copy: view reaches element {max_at} of {}", src.len());
    let mut out = zeros(n);
    let rows = rows_per_task(inner);
    out.par_chunks_mut(rows * inner).enumerate().for_each(|(task, dst)| {
        // Odometer over the outer dims, starting at this task's first outer index.
        let mut idx = vec![0usize; outer_shape.len()];
        let mut o = task * rows;
        for d in (0..outer_shape.len()).rev() {
            idx[d] = o % outer_shape[d];
            o /= outer_shape[d];
        }
        for row in dst.chunks_exact_mut(inner) {
            let base = offset + idx.iter().zip(outer_strides).map(|(&i, &s)| i * s as usize).sum::<usize>();
            if inner_stride == 1 {
                row.copy_from_slice(&src[base..base + inner]);
            } else {
                for (k, v) in row.iter_mut().enumerate() {
                    *v = src[base + k * inner_stride];
                }
            }
            for d in (0..outer_shape.len()).rev() {
                idx[d] += 1;
                if idx[d] < outer_shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    });
    out
}

// ---------------------------------------------------------------------------------------------
// AdamW update, in place, one pass.
// ---------------------------------------------------------------------------------------------

/// One AdamW step's constants, with Burn's `AdamW` arithmetic (f32): `m ← β1·m + (1−β1)·g`,
/// `v ← β2·v + (1−β2)·g²` (first step: `m = (1−β1)·g`, `v = (1−β2)·g²`), `δ = (m / bc1) / (√(v / bc2) + ε)`
/// with `bc = 1 − β^t`, and `p ← p·decay − lr·δ` with `decay = 1 − lr·wd`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    pub lr: f32,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub decay: f32,
    pub bias_correction_1: f32,
    pub bias_correction_2: f32,
    /// No moments yet (they are initialised from the gradient).
    pub first: bool,
}

#[inline(always)]
fn adamw_imp(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: AdamWStep) {
    let (f1, f2) = (1.0 - h.beta_1, 1.0 - h.beta_2);
    for i in 0..p.len() {
        let gi = g[i];
        let (mi, vi) =
            if h.first { (gi * f1, gi * gi * f2) } else { (m[i] * h.beta_1 + gi * f1, v[i] * h.beta_2 + gi * gi * f2) };
        m[i] = mi;
        v[i] = vi;
        let delta = (mi / h.bias_correction_1) / ((vi / h.bias_correction_2).sqrt() + h.epsilon);
        p[i] = if h.decay == 1.0 { p[i] } else { p[i] * h.decay } - delta * h.lr;
    }
}

dispatch!(adamw_chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: AdamWStep) => adamw_imp);

/// AdamW on parameter `p` with gradient `g` and moments `m`, `v` (overwritten; ignored on input when
/// `h.first`), in place.
pub fn adamw(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: AdamWStep) {
    assert!(p.len() == g.len() && g.len() == m.len() && m.len() == v.len(), "adamw: sizes differ");
    const CHUNK: usize = 64 * 1024;
    p.par_chunks_mut(CHUNK).zip(m.par_chunks_mut(CHUNK)).zip(v.par_chunks_mut(CHUNK)).enumerate().for_each(
        |(i, ((p, m), v))| {
            let at = i * CHUNK;
            adamw_chunk(p, &g[at..at + p.len()], m, v, h);
        },
    );
}

/// Elements per task of [`sum_squares`] and [`scale_in_place`]: fixed, so that the partial sums (and
/// so the result) do not depend on the thread count.
const REDUCE_CHUNK: usize = 1 << 16;

/// `Σ x²` with an f64 sum per chunk of 64 Ki elements (chunks in parallel, their sums added
/// in order): deterministic for any thread count.
pub fn sum_squares(x: &[f32]) -> f64 {
    let partial: Vec<f64> = x
        .par_chunks(REDUCE_CHUNK)
        .map(|c| {
            // Eight f32 lanes per step, widened per block of 8 (the compiler vectorises it).
            let mut acc = [0f64; 8];
            let mut blocks = c.chunks_exact(8);
            for b in &mut blocks {
                for k in 0..8 {
                    acc[k] += f64::from(b[k] * b[k]);
                }
            }
            acc.iter().sum::<f64>() + blocks.remainder().iter().map(|&v| f64::from(v * v)).sum::<f64>()
        })
        .collect();
    partial.iter().sum()
}

/// `x *= factor`, chunks in parallel.
pub fn scale_in_place(x: &mut [f32], factor: f32) {
    x.par_chunks_mut(REDUCE_CHUNK).for_each(|c| c.iter_mut().for_each(|v| *v *= factor));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_to_two_ulp_scale() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((a - b) / b).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(-1e9), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(1e9).is_finite());
    }

    #[test]
    fn tanh_and_sigmoid_match_std() {
        let mut x = -20.0f32;
        while x < 20.0 {
            assert!((tanh(x) - x.tanh()).abs() < 3e-7, "tanh({x})");
            assert!((sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs() < 3e-7, "sigmoid({x})");
            x += 0.01;
        }
        assert_eq!(tanh(100.0), 1.0);
        assert_eq!(tanh(-100.0), -1.0);
    }

    #[test]
    fn activation_derivatives_match_finite_differences() {
        for act in [GateAct::Silu, GateAct::GeluTanh] {
            let mut x = -6.0f64;
            while x < 6.0 {
                let h = 1e-3f32;
                let xf = x as f32;
                let fd = (act_value(act, xf + h) as f64 - act_value(act, xf - h) as f64) / (2.0 * h as f64);
                let (_, d) = act_value_grad(act, xf);
                assert!((fd - d as f64).abs() < 2e-3, "{act:?} at {x}: fd {fd} vs {d}");
                x += 0.05;
            }
        }
    }

    #[test]
    fn softmax_xent_matches_f64_reference() {
        let v = 1003;
        let raw: Vec<f32> = (0..3 * v).map(|i| ((i * 7919) % 101) as f32 * 0.2 - 10.0).collect();
        let targets = [5u32, 1002, 0];
        for cap in [None, Some(7.0f32)] {
            let mut buf = raw.clone();
            let loss = softmax_xent(&mut buf, &targets, v, cap, true);
            let mut expect = 0f64;
            for (r, &t) in targets.iter().enumerate() {
                let z: Vec<f64> = raw[r * v..(r + 1) * v]
                    .iter()
                    .map(|&x| match cap {
                        Some(c) => c as f64 * (x as f64 / c as f64).tanh(),
                        None => x as f64,
                    })
                    .collect();
                let m = z.iter().cloned().fold(f64::MIN, f64::max);
                let s: f64 = z.iter().map(|q| (q - m).exp()).sum();
                expect += m + s.ln() - z[t as usize];
                for k in 0..v {
                    let mut d = (z[k] - m).exp() / s - if k == t as usize { 1.0 } else { 0.0 };
                    if let Some(c) = cap {
                        d *= 1.0 - (z[k] / c as f64).powi(2);
                    }
                    assert!((buf[r * v + k] as f64 - d).abs() < 1e-6, "row {r} col {k}: {} vs {d}", buf[r * v + k]);
                }
            }
            assert!((loss - expect).abs() < 1e-4 * expect.abs(), "{loss} vs {expect}");
            let mut again = raw.clone();
            assert_eq!(softmax_xent(&mut again, &targets, v, cap, false), loss);
        }
    }

    #[test]
    fn strided_copy_of_a_permutation() {
        // [2, 3, 4, 5] contiguous, permuted to [0, 2, 1, 3] and [3, 1, 0, 2].
        let shape = [2usize, 3, 4, 5];
        let src: Vec<f32> = (0..120).map(|i| i as f32).collect();
        let strides = [60isize, 20, 5, 1];
        for perm in [[0usize, 2, 1, 3], [3, 1, 0, 2], [0, 1, 2, 3]] {
            let (psh, pst): (Vec<usize>, Vec<isize>) = perm.iter().map(|&a| (shape[a], strides[a])).unzip();
            let got = strided_copy(&src, 0, &psh, &pst);
            let mut expect = Vec::new();
            for a in 0..psh[0] {
                for b in 0..psh[1] {
                    for c in 0..psh[2] {
                        for d in 0..psh[3] {
                            let at =
                                a as isize * pst[0] + b as isize * pst[1] + c as isize * pst[2] + d as isize * pst[3];
                            expect.push(src[at as usize]);
                        }
                    }
                }
            }
            assert_eq!(got, expect, "perm {perm:?}");
        }
        // An offset view with a size-1 dim.
        assert_eq!(strided_copy(&src, 7, &[2, 1, 3], &[10, 99, 2]), vec![7.0, 9.0, 11.0, 17.0, 19.0, 21.0]);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_masked_entries_are_zero() {
        let row = 37; // not a multiple of the lane count
        let s: Vec<f32> = (0..row * 5).map(|i| ((i * 7919) % 23) as f32 * 0.3 - 3.0).collect();
        let mut bias = vec![0f32; s.len()];
        for r in 0..5 {
            for k in r + 30..row {
                bias[r * row + k] = -1e9;
            }
        }
        let spec = SoftmaxSpec { scale: 0.125, softcap: None };
        let starts: Vec<usize> = (0..5).map(|r| r * row).collect();
        let p = softmax_forward(&s, Some((&bias, &starts)), row, spec);
        for r in 0..5 {
            let pr = &p[r * row..(r + 1) * row];
            assert!((pr.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            assert!(pr[r + 30..].iter().all(|&v| v == 0.0));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rows of the fused causal attention: masked softmax over a key span, its backward, RoPE.
// ---------------------------------------------------------------------------------------------

#[inline(always)]
fn span_softmax_imp(row: &mut [f32], lo: usize, hi: usize, spec: SoftmaxSpec, th: Option<&mut [f32]>) {
    if lo >= hi {
        row.fill(0.0);
        if let Some(th) = th {
            th.fill(0.0);
        }
        return;
    }
    row[..lo].fill(0.0);
    row[hi..].fill(0.0);
    let z = &mut row[lo..hi];
    match (spec.softcap, th) {
        (Some(cap), Some(th)) => {
            let inv = spec.scale / cap;
            for (zi, ti) in z.iter_mut().zip(&mut th[lo..hi]) {
                let t = tanh(*zi * inv);
                *ti = t;
                *zi = cap * t;
            }
        }
        (Some(cap), None) => {
            let inv = spec.scale / cap;
            for zi in z.iter_mut() {
                *zi = cap * tanh(*zi * inv);
            }
        }
        (None, _) => {
            for zi in z.iter_mut() {
                *zi *= spec.scale;
            }
        }
    }
    let m = max8(z);
    for zi in z.iter_mut() {
        *zi = exp(*zi - m);
    }
    let inv_sum = 1.0 / sum8(z);
    for zi in z.iter_mut() {
        *zi *= inv_sum;
    }
}

dispatch!(
    /// In place: `row` holds raw scores `s` over a span of keys; the keys `lo..hi` of it are visible.
    /// Writes `softmax(z)` over them (`z = scale·s`, or `cap·tanh(scale·s / cap)` with a softcap, whose
    /// `tanh` values go to `th` when given) and zeros elsewhere (everywhere when `lo ≥ hi`).
    span_softmax(row: &mut [f32], lo: usize, hi: usize, spec: SoftmaxSpec, th: Option<&mut [f32]>) => span_softmax_imp
);

#[inline(always)]
fn span_softmax_back_imp(p: &[f32], dp: &mut [f32], th: Option<&[f32]>, scale: f32) {
    let dot = dot8(p, dp);
    for (d, &pi) in dp.iter_mut().zip(p) {
        *d = pi * (*d - dot) * scale;
    }
    if let Some(th) = th {
        for (d, &t) in dp.iter_mut().zip(th) {
            *d *= 1.0 - t * t;
        }
    }
}

dispatch!(
    /// In place: `dp` (the gradient w.r.t. the probabilities `p` of one row) becomes the gradient w.r.t.
    /// the raw scores (`th`: the row's `tanh` values when softcapped).
    span_softmax_back(p: &[f32], dp: &mut [f32], th: Option<&[f32]>, scale: f32) => span_softmax_back_imp
);

/// RoPE in HF's rotate-half layout on one head row: `y = x·cos + rotate_half(x)·sin`; with `inverse`, the
/// transpose (the gradient: `dx = dy·cos + rotate_halfᵀ(dy·sin)`).
#[inline(always)]
pub fn rope_row(x: &[f32], cos: &[f32], sin: &[f32], y: &mut [f32], inverse: bool) {
    let h = x.len() / 2;
    let (x1, x2) = x.split_at(h);
    let (y1, y2) = y.split_at_mut(h);
    let (c1, c2) = cos.split_at(h);
    let (s1, s2) = sin.split_at(h);
    if inverse {
        for j in 0..h {
            y1[j] = x1[j] * c1[j] + x2[j] * s2[j];
            y2[j] = x2[j] * c2[j] - x1[j] * s1[j];
        }
    } else {
        for j in 0..h {
            y1[j] = x1[j] * c1[j] - x2[j] * s1[j];
            y2[j] = x2[j] * c2[j] + x1[j] * s2[j];
        }
    }
}
