//! Fused causal self-attention on `Flex` / `Autodiff<Flex, C>` (f32): RoPE, grouped-query scores, the
//! masked softmax and the weighted sum of values in one op, with one analytic backward.
//!
//! What the composition in dft-models does per block — RoPE as three element-wise ops, four head
//! transposes, a `[b, t, t]` additive mask, full `t × t` score products — becomes, per (row, key head):
//! queries of the `rep` heads sharing the key head stacked as one `[t·rep, d]` matrix, products only for
//! the key span each block of [`BLOCK`] queries can see (causal: the blocks on and below the diagonal;
//! right padding and a sliding window shrink it further), the softmax over exactly the visible keys, and
//! RoPE applied while the operands are regrouped. Tasks are the (row, key head) pairs, on rayon.
//!
//! Over a KV cache ([`crate::CachedKeys`]) the keys and values are the cache's own `[b, kv_heads, slots, d]`
//! tensors (no copy): a row's key positions map to at most two runs of slots (its prompt's real tokens,
//! then everything after the prompts' padding), so each block's products are one or two GEMMs per
//! operand and the probabilities are laid out by position as without a cache.
//!
//! Kept for the backward: the rotated queries and keys, the values (grouped) and the probabilities
//! (per row and key head `[queries·rep, len]`: a short row keeps `len²` values, not `t²`; zeros where masked), and with a softcap the `tanh` values.

use crate::cpu::{self, SoftmaxSpec};
use crate::flex::{kind, new_tensor, prim, wrap, AdTensor, Kind};
use crate::{CausalAttention, RopeRows};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Shape, Tensor};
use rayon::prelude::*;

/// Query positions per block: a block multiplies only the keys its rows can see.
const BLOCK: usize = 32;

#[derive(Clone, Copy, Debug)]
struct Dims {
    b: usize,
    t: usize,
    nh: usize,
    nkv: usize,
    d: usize,
    /// Key slots per (row, key head): `t`, or the cache's slots.
    slots: usize,
}

impl Dims {
    fn rep(&self) -> usize {
        self.nh / self.nkv
    }
}

/// Where the positions of the `b` rows of width `t` are on the inputs' position axis: `[b, t]` (every
/// position) or packed (`[1, n]`: the real positions of each row, rows back to back).
#[derive(Clone, Debug)]
struct Positions {
    /// Per row: its position 0 on the axis and how many of its positions are there.
    starts: Vec<usize>,
    counts: Vec<usize>,
    /// Per position on the axis: `(row, position in the row)`.
    owner: Vec<(u32, u32)>,
}

impl Positions {
    fn new(b: usize, t: usize, packed: Option<&[usize]>) -> Self {
        let counts: Vec<usize> = match packed {
            Some(lengths) => lengths.iter().map(|&l| l.min(t)).collect(),
            None => vec![t; b],
        };
        let mut starts = Vec::with_capacity(b);
        let mut owner = Vec::new();
        for (r, &c) in counts.iter().enumerate() {
            starts.push(owner.len());
            owner.extend((0..c).map(|i| (r as u32, i as u32)));
        }
        Self { starts, counts, owner }
    }

    fn len(&self) -> usize {
        self.owner.len()
    }

    fn at(&self, row: usize, i: usize) -> Option<usize> {
        (i < self.counts[row]).then(|| self.starts[row] + i)
    }
}

/// Where a row's keys are: its queries' first position, how many key positions it has (a key's position
/// is its column in the row's probabilities), and the slots they sit in — positions below `split` in
/// slots `0..`, the others `jump` slots further (a cache skips its prompt's padding that way).
#[derive(Clone, Copy, Debug)]
struct RowKeys {
    off: usize,
    klen: usize,
    split: usize,
    jump: usize,
}

impl RowKeys {
    fn new(spec: &CausalAttention, bi: usize, t: usize) -> Self {
        let len = row_len(spec, bi, t);
        match &spec.cached {
            None => Self { off: 0, klen: len, split: usize::MAX, jump: 0 },
            Some(c) => {
                let p = c.prompt_lens[bi];
                let off = p + c.cached - c.prompt_width;
                Self { off, klen: off + len, split: p, jump: c.prompt_width - p }
            }
        }
    }

    /// Keys `lo..hi` (positions) visible to query `i` (causal, the row's real keys, window
    /// `pos − k < w`); `(0, 0)` when none is.
    fn span(&self, i: usize, window: Option<usize>) -> (usize, usize) {
        let pos = self.off + i;
        let hi = (pos + 1).min(self.klen);
        let lo = window.map_or(0, |w| (pos + 1).saturating_sub(w));
        if lo < hi {
            (lo, hi)
        } else {
            (0, 0)
        }
    }

    /// The keys `kb..ke` that queries `i0..i1` see between them; `None` when none sees any.
    fn block_span(&self, i0: usize, i1: usize, window: Option<usize>) -> Option<(usize, usize)> {
        let spans = (i0..i1).map(|i| self.span(i, window)).filter(|(lo, hi)| lo < hi);
        spans.fold(None, |acc, (lo, hi)| match acc {
            None => Some((lo, hi)),
            Some((kb, ke)) => Some((kb.min(lo), ke.max(hi))),
        })
    }

    /// Positions `a..e` as at most two runs `(first position, first slot, count)` of consecutive slots.
    fn runs(&self, a: usize, e: usize) -> impl Iterator<Item = (usize, usize, usize)> {
        let below = (a, a, e.min(self.split).saturating_sub(a));
        let from = a.max(self.split);
        let above = (from, from.saturating_add(self.jump), e.saturating_sub(from));
        [below, above].into_iter().filter(|r| r.2 > 0)
    }
}

/// `dst (m×n, row stride dst_rs) (+)= lhs (m×k) · rhs (k×n)`, strides in elements, bounds checked.
#[allow(clippy::too_many_arguments)]
fn mm(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
    par: gemm::Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    let extent = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs + 1;
    assert!(k > 0, "attention: empty inner dimension");
    assert!(extent(m, n, dst_rs, 1) <= dst.len(), "attention: product outside its destination");
    assert!(extent(m, k, lhs_rs, lhs_cs) <= lhs.len(), "attention: left operand out of range");
    assert!(extent(k, n, rhs_rs, rhs_cs) <= rhs.len(), "attention: right operand out of range");
    // SAFETY: every element the GEMM touches lies inside the slices (checked just above); `dst` is
    // exclusively borrowed and, with `accumulate`, initialised.
    unsafe {
        crate::flex_matmul::gemm_f32(
            (m, n, k),
            dst.as_mut_ptr(),
            dst_rs,
            accumulate,
            (lhs.as_ptr(), lhs_rs as isize, lhs_cs as isize),
            (rhs.as_ptr(), rhs_rs as isize, rhs_cs as isize),
            par,
        )
    }
}

/// `[positions, heads, d]` → `[b, groups, t, heads/groups, d]` (the heads sharing a key head stacked by
/// position; positions not on the axis stay zero), with RoPE applied on the way when `rope` is given.
fn to_grouped(x: &[f32], dims: Dims, at: &Positions, heads: usize, rope: Option<&RopeRows>) -> Vec<f32> {
    let Dims { b, t, nkv: groups, d, .. } = dims;
    let rep = heads / groups;
    let mut out = cpu::zeros(b * t * heads * d);
    out.par_chunks_mut(t * rep * d).enumerate().for_each(|(task, dst)| {
        let (bi, g) = (task / groups, task % groups);
        for i in 0..t {
            let Some(axis) = at.at(bi, i) else { break };
            let pos = bi * t + i;
            for r in 0..rep {
                let src = &x[(axis * heads + g * rep + r) * d..][..d];
                let y = &mut dst[(i * rep + r) * d..][..d];
                match rope {
                    Some(rp) => cpu::rope_row(src, &rp.cos[pos * d..][..d], &rp.sin[pos * d..][..d], y, false),
                    None => y.copy_from_slice(src),
                }
            }
        }
    });
    out
}

/// The inverse of [`to_grouped`], applying RoPE's transpose (a gradient's way back) when `rope` is given.
fn from_grouped(x: &[f32], dims: Dims, at: &Positions, heads: usize, rope: Option<&RopeRows>) -> Vec<f32> {
    let Dims { t, nkv: groups, d, .. } = dims;
    let rep = heads / groups;
    let mut out = cpu::zeros(at.len() * heads * d);
    out.par_chunks_mut(heads * d).enumerate().for_each(|(axis, dst)| {
        let (bi, i) = (at.owner[axis].0 as usize, at.owner[axis].1 as usize);
        let pos = bi * t + i;
        for h in 0..heads {
            let (g, r) = (h / rep, h % rep);
            let src = &x[((bi * groups + g) * t * rep + i * rep + r) * d..][..d];
            let y = &mut dst[h * d..][..d];
            match rope {
                Some(rp) => cpu::rope_row(src, &rp.cos[pos * d..][..d], &rp.sin[pos * d..][..d], y, true),
                None => y.copy_from_slice(src),
            }
        }
    });
    out
}

/// Keys or values as the products read them, `[b, kv_heads, slots, d]`: regrouped (and rotated) from
/// the inputs, or a cache's own tensor.
#[derive(Clone)]
enum Keys {
    Grouped(Vec<f32>),
    Cache(FlexTensor),
}

impl Keys {
    fn data(&self) -> &[f32] {
        match self {
            Keys::Grouped(v) => v,
            Keys::Cache(t) => t.storage(),
        }
    }
}

/// What the forward keeps for the backward.
#[derive(Clone)]
struct Saved {
    dims: Dims,
    at: Positions,
    /// The shapes of `q` and of `k` / `v` as given.
    shapes: [Shape; 2],
    spec: CausalAttention,
    /// Rotated queries `[b, kv_heads, t·rep, d]`.
    q: Vec<f32>,
    /// Rotated keys and the values, `[b, kv_heads, slots, d]`.
    k: Keys,
    v: Keys,
    /// Probabilities, per task `[queries·rep, key positions]` (zero where masked; see [`ProbLayout`]).
    layout: ProbLayout,
    p: Vec<f32>,
    /// `tanh(scale·s / cap)` where visible, with a softcap.
    th: Option<Vec<f32>>,
}

impl std::fmt::Debug for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saved").field("dims", &self.dims).field("spec", &self.spec).finish_non_exhaustive()
    }
}

fn row_len(spec: &CausalAttention, bi: usize, t: usize) -> usize {
    spec.lengths.as_ref().map_or(t, |l| l[bi].min(t))
}

/// The queries of row `bi` that are computed: all `t`, or its real ones when packed (no others exist).
fn queries(spec: &CausalAttention, bi: usize, t: usize) -> usize {
    if spec.packed_width.is_some() {
        row_len(spec, bi, t)
    } else {
        t
    }
}

/// Where each (row, key head) task's probabilities are in the flat buffer, and its key width: a task
/// holds `[queries·rep, key positions]` (queries past a row's keys see none of the keys past its
/// length), so short rows in a wide batch (and packed rows) keep `len²`, not `t²`, values.
#[derive(Clone, Debug)]
struct ProbLayout {
    offsets: Vec<usize>,
    widths: Vec<usize>,
    total: usize,
}

impl ProbLayout {
    fn new(dims: Dims, spec: &CausalAttention) -> Self {
        let (mut offsets, mut widths, mut total) = (Vec::new(), Vec::new(), 0);
        for task in 0..dims.b * dims.nkv {
            let bi = task / dims.nkv;
            let (klen, nq) = (RowKeys::new(spec, bi, dims.t).klen, queries(spec, bi, dims.t));
            offsets.push(total);
            widths.push(klen);
            total += nq * dims.rep() * klen;
        }
        Self { offsets, widths, total }
    }

    fn size(&self, task: usize) -> usize {
        self.offsets.get(task + 1).copied().unwrap_or(self.total) - self.offsets[task]
    }

    /// `buf` cut into the tasks' parts.
    fn split<'a>(&self, mut buf: &'a mut [f32]) -> Vec<&'a mut [f32]> {
        let mut parts = Vec::with_capacity(self.offsets.len());
        for task in 0..self.offsets.len() {
            let (part, rest) = std::mem::take(&mut buf).split_at_mut(self.size(task));
            parts.push(part);
            buf = rest;
        }
        parts
    }
}

/// Runs `job` on every (row, key head) task: in parallel with single-threaded products when there are
/// enough tasks for the pool, else one after the other with multi-threaded products.
fn run_tasks<T: Send>(jobs: Vec<T>, job: impl Fn(T, gemm::Parallelism) + Sync + Send) {
    if jobs.len() >= rayon::current_num_threads() {
        jobs.into_par_iter().for_each(|j| job(j, gemm::Parallelism::None));
    } else {
        jobs.into_iter().for_each(|j| job(j, gemm::Parallelism::Rayon(0)));
    }
}

/// The forward on contiguous `q: [b, t, nh, d]` and `k, v` (`[b, t, nkv, d]`, or with a cache the cache's
/// `[b, nkv, slots, d]`): the output `[b, t, nh·d]` and the backward's state.
fn forward_cpu(
    q: &[f32],
    k: &FlexTensor,
    v: &FlexTensor,
    dims: Dims,
    shapes: [Shape; 2],
    spec: &CausalAttention,
) -> (Vec<f32>, Saved) {
    let _timer = crate::stats::Timer::start(crate::stats::Kind::Attention, 0);
    let Dims { b, t, nh, nkv, d, slots } = dims;
    let rep = dims.rep();
    let rope = spec.rope.as_ref();
    let at = Positions::new(b, t, if spec.packed_width.is_some() { spec.lengths.as_deref() } else { None });
    let qg = to_grouped(q, dims, &at, nh, rope);
    let (kg, vg) = match spec.cached {
        None => (
            Keys::Grouped(to_grouped(k.storage(), dims, &at, nkv, rope)),
            Keys::Grouped(to_grouped(v.storage(), dims, &at, nkv, None)),
        ),
        Some(_) => (Keys::Cache(k.clone()), Keys::Cache(v.clone())),
    };
    let (kd, vd) = (kg.data(), vg.data());
    let rows = t * rep;
    let layout = ProbLayout::new(dims, spec);
    let mut p = cpu::zeros(layout.total);
    let mut th = spec.softcap.map(|_| cpu::zeros(layout.total));
    let mut og = cpu::zeros(b * nkv * rows * d);
    let softmax = SoftmaxSpec { scale: spec.scale, softcap: spec.softcap };
    let th_parts: Vec<Option<&mut [f32]>> = match &mut th {
        Some(th) => layout.split(th).into_iter().map(Some).collect(),
        None => (0..b * nkv).map(|_| None).collect(),
    };
    let jobs: Vec<_> =
        layout.split(&mut p).into_iter().zip(og.chunks_mut(rows * d)).zip(th_parts).enumerate().collect();
    run_tasks(jobs, |(task, ((p, o), mut th)), par| {
        let bi = task / nkv;
        let (rk, nq) = (RowKeys::new(spec, bi, t), queries(spec, bi, t));
        // Row stride of this task's probabilities: its key positions.
        let w = rk.klen;
        let qt = &qg[task * rows * d..][..rows * d];
        let (kt, vt) = (&kd[task * slots * d..][..slots * d], &vd[task * slots * d..][..slots * d]);
        for i0 in (0..nq).step_by(BLOCK) {
            let i1 = (i0 + BLOCK).min(nq);
            let Some((kb, ke)) = rk.block_span(i0, i1, spec.window) else { continue };
            let (ks, nr) = (ke - kb, (i1 - i0) * rep);
            let at = i0 * rep * w + kb;
            // Scores of the block's rows over keys kb..ke: Q_blk · K[kb..ke]ᵀ, into p.
            for (pos, slot, n) in rk.runs(kb, ke) {
                let (dst, lhs) = (&mut p[at + pos - kb..], &qt[i0 * rep * d..]);
                mm((nr, n, d), dst, w, false, lhs, (d, 1), &kt[slot * d..], (1, d), par);
            }
            for i in i0..i1 {
                let (lo, hi) = rk.span(i, spec.window);
                let (lo, hi) = if lo < hi { (lo - kb, hi - kb) } else { (0, 0) };
                for r in 0..rep {
                    let row = (i * rep + r) * w + kb;
                    let th = th.as_deref_mut().map(|th| &mut th[row..row + ks]);
                    cpu::span_softmax(&mut p[row..row + ks], lo, hi, softmax, th);
                }
            }
            // Output rows: P_blk · V[kb..ke].
            for (run, (pos, slot, n)) in rk.runs(kb, ke).enumerate() {
                let (dst, lhs) = (&mut o[i0 * rep * d..], &p[at + pos - kb..]);
                mm((nr, d, n), dst, d, run > 0, lhs, (w, 1), &vt[slot * d..], (d, 1), par);
            }
        }
    });
    let out = from_grouped(&og, dims, &at, nh, None);
    (out, Saved { dims, at, shapes, spec: spec.clone(), q: qg, k: kg, v: vg, layout, p, th })
}

/// The gradients `(dq, dk, dv)` in the inputs' layouts from the output's gradient `[b, t, nh·d]`.
fn backward_cpu(s: &Saved, dout: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let _timer = crate::stats::Timer::start(crate::stats::Kind::Attention, 0);
    let Dims { b, t, nh, nkv, d, slots } = s.dims;
    let rep = s.dims.rep();
    let rows = t * rep;
    let dog = to_grouped(dout, s.dims, &s.at, nh, None);
    let (mut dq, mut dk, mut dv) =
        (cpu::zeros(b * nkv * rows * d), cpu::zeros(b * nkv * slots * d), cpu::zeros(b * nkv * slots * d));
    let jobs: Vec<_> =
        dq.chunks_mut(rows * d).zip(dk.chunks_mut(slots * d)).zip(dv.chunks_mut(slots * d)).enumerate().collect();
    let spec = &s.spec;
    let (kd, vd) = (s.k.data(), s.v.data());
    run_tasks(jobs, |(task, ((dq, dk), dv)), par| {
        let bi = task / nkv;
        let (rk, nq) = (RowKeys::new(spec, bi, t), queries(spec, bi, t));
        let qt = &s.q[task * rows * d..][..rows * d];
        let (kt, vt) = (&kd[task * slots * d..][..slots * d], &vd[task * slots * d..][..slots * d]);
        let (off, size, w) = (s.layout.offsets[task], s.layout.size(task), s.layout.widths[task]);
        let pt = &s.p[off..off + size];
        let tht = s.th.as_ref().map(|th| &th[off..off + size]);
        let dot = &dog[task * rows * d..][..rows * d];
        let mut ds = Vec::new();
        for i0 in (0..nq).step_by(BLOCK) {
            let i1 = (i0 + BLOCK).min(nq);
            let Some((kb, ke)) = rk.block_span(i0, i1, spec.window) else { continue };
            let (ks, nr) = (ke - kb, (i1 - i0) * rep);
            let (at, qa) = (i0 * rep * w + kb, i0 * rep * d);
            ds.clear();
            ds.resize(nr * ks, 0f32);
            // dP = dO_blk · V[kb..ke]ᵀ, then dS (the softmax's backward, row by row).
            for (pos, slot, n) in rk.runs(kb, ke) {
                mm((nr, n, d), &mut ds[pos - kb..], ks, false, &dot[qa..], (d, 1), &vt[slot * d..], (1, d), par);
            }
            for (rr, dsr) in ds.chunks_exact_mut(ks).enumerate() {
                let row = at + rr * w;
                cpu::span_softmax_back(&pt[row..row + ks], dsr, tht.map(|th| &th[row..row + ks]), spec.scale);
            }
            // dV[kb..ke] += P_blkᵀ · dO_blk; dQ_blk = dS · K[kb..ke]; dK[kb..ke] += dSᵀ · Q_blk.
            for (run, (pos, slot, n)) in rk.runs(kb, ke).enumerate() {
                let (pc, dc) = (&pt[at + pos - kb..], &ds[pos - kb..]);
                mm((n, d, nr), &mut dv[slot * d..], d, true, pc, (1, w), &dot[qa..], (d, 1), par);
                mm((nr, d, n), &mut dq[qa..], d, run > 0, dc, (ks, 1), &kt[slot * d..], (d, 1), par);
                mm((n, d, nr), &mut dk[slot * d..], d, true, dc, (1, ks), &qt[qa..], (d, 1), par);
            }
        }
    });
    let rope = spec.rope.as_ref();
    let at = &s.at;
    let dq = from_grouped(&dq, s.dims, at, nh, rope);
    match spec.cached {
        // The cache's layout is the products' own.
        Some(_) => (dq, dk, dv),
        None => (dq, from_grouped(&dk, s.dims, at, nkv, rope), from_grouped(&dv, s.dims, at, nkv, None)),
    }
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let saved = ops.state;
        let dout = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (dq, dk, dv) = backward_cpu(&saved, dout.storage::<f32>());
        let [pq, pk, pv] = ops.parents;
        let [sq, skv] = &saved.shapes;
        for (parent, grad, shape) in [(pq, dq, sq), (pk, dk, skv), (pv, dv, skv)] {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, new_tensor(grad, shape.clone()));
            }
        }
    }
}

fn attention_ad<C: CheckpointStrategy>(
    q: AdTensor,
    k: AdTensor,
    v: AdTensor,
    dims: Dims,
    spec: &CausalAttention,
) -> AdTensor {
    let data = |x: &AdTensor| x.primitive.to_contiguous();
    let (qc, kc, vc) = (data(&q), data(&k), data(&v));
    let shapes = [qc.layout().shape().clone(), kc.layout().shape().clone()];
    let [qb, qn, ..] = qc.layout().shape().as_slice() else { unreachable!("rank 4") };
    let out_shape = Shape::new([*qb, *qn, dims.nh * dims.d]);
    let (out, saved) = forward_cpu(qc.storage(), &kc, &vc, dims, shapes, spec);
    let out = new_tensor(out, out_shape);
    match AttentionBackward.prepare::<C>([q.node.clone(), k.node.clone(), v.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(saved, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

type Qkv<B> = (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>);

/// See [`crate::causal_attention`].
pub(crate) fn causal_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    spec: &CausalAttention,
) -> Result<Tensor<B, 3>, Qkv<B>> {
    let Some(kind) = kind::<B>() else { return Err((q, k, v)) };
    let [qb, qn, nh, d] = q.dims();
    // Key heads and slots: `[b, t, nkv, d]`, or a cache's `[b, nkv, slots, d]`.
    let (nkv, cache_slots) = match spec.cached {
        None => (k.dims()[2], 0),
        Some(_) => (k.dims()[1], k.dims()[2]),
    };
    // Rows and width: the inputs' own, or (packed) the rows of `lengths` and the given width.
    let (b, t) = match (spec.packed_width, &spec.lengths) {
        (None, _) => (qb, qn),
        (Some(w), Some(l)) if qb == 1 && l.iter().map(|&x| x.min(w)).sum::<usize>() == qn => (l.len(), w),
        (Some(_), _) => return Err((q, k, v)),
    };
    let slots = if spec.cached.is_some() { cache_slots } else { t };
    let kv_shape = match &spec.cached {
        None => [qb, qn, nkv, d],
        Some(_) => [b, nkv, slots, d],
    };
    let cache_ok = spec.cached.as_ref().is_none_or(|c| {
        c.prompt_lens.len() == b
            && c.prompt_lens.iter().all(|&p| p <= c.prompt_width)
            && c.prompt_width <= c.cached
            && c.cached + t <= slots
    });
    let ok = [&q, &k, &v].iter().all(|x| x.dtype() == DType::F32)
        && k.dims() == kv_shape
        && v.dims() == kv_shape
        && nkv > 0
        && nh % nkv == 0
        && d > 0
        && d % 2 == 0
        && b > 0
        && t > 0
        && cache_ok
        && spec.lengths.as_ref().is_none_or(|l| l.len() == b)
        && spec.rope.as_ref().is_none_or(|r| r.cos.len() == b * t * d && r.sin.len() == b * t * d);
    if !ok {
        return Err((q, k, v));
    }
    let dims = Dims { b, t, nh, nkv, d, slots };
    let out = match kind {
        Kind::Plain => {
            let data = |x: Tensor<B, 4>| prim::<B, 4, FlexTensor>(x).to_contiguous();
            let (qc, kc, vc) = (data(q), data(k), data(v));
            let shapes = [qc.layout().shape().clone(), kc.layout().shape().clone()];
            let (out, _) = forward_cpu(qc.storage(), &kc, &vc, dims, shapes, spec);
            return Ok(wrap::<B, 3, _>(new_tensor(out, Shape::new([qb, qn, nh * d]))));
        }
        Kind::AdPlain => {
            attention_ad::<NoCheckpointing>(prim::<B, 4, _>(q), prim::<B, 4, _>(k), prim::<B, 4, _>(v), dims, spec)
        }
        Kind::AdBalanced => attention_ad::<BalancedCheckpointing>(
            prim::<B, 4, _>(q),
            prim::<B, 4, _>(k),
            prim::<B, 4, _>(v),
            dims,
            spec,
        ),
    };
    Ok(wrap::<B, 3, _>(out))
}
