//! Matrix products on `Flex` and `Autodiff<Flex, C>` that write straight into their output.
//!
//! Flex's own matmul allocates every output through `FlexTensor::empty`, which zero-fills a byte
//! vector and then copies it into a 64-byte-aligned buffer — two passes over fresh memory per product
//! (measured: 8.5% of a SmolLM2 training step, in `memset`, `memmove` and page faults). Here the output
//! is an uninitialised `Vec<f32>` that the `gemm` crate (the same kernels Flex calls) fills once, and the
//! backward computes `∂A = ∂C·Bᵀ` and `∂B = Aᵀ·∂C` from the strided operands without transposed copies,
//! summing over broadcast batch dimensions inside the products (accumulating GEMMs) instead of
//! materialising every batch and reducing it afterwards.

use crate::flex::{kind, new_tensor, owned, prim, wrap, AdTensor, Kind};
use crate::stats;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Shape, Tensor};
use rayon::prelude::*;

/// Products with at least this many multiply-adds use all threads inside the GEMM (Flex's threshold).
const PARALLEL_OPS: usize = 192 * 192 * 192;
/// Batches of smaller products run one product per thread once their total reaches this (Flex's).
const BATCH_PARALLEL_OPS: usize = 128 * 128 * 128;

/// Equally shaped strided matrices in one buffer: element `(i, j)` of the matrix at offset `o` is
/// `data[o + i·rs + j·cs]` (the offsets come with each product, see [`products_into`]).
pub(crate) struct Mats<'a> {
    pub(crate) data: Src<'a>,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) rs: isize,
    pub(crate) cs: isize,
}

/// The storage a [`Mats`] reads: f32, or bf16 bits (only the bf16 products read those; a LoRA run's
/// frozen base is stored in bf16).
#[derive(Clone, Copy)]
pub(crate) enum Src<'a> {
    F32(&'a [f32]),
    Bf16(&'a [u16]),
}

impl<'a> Src<'a> {
    /// The f32 storage (the f32 GEMM takes only f32 operands: see [`eligible`]).
    fn f32s(self) -> &'a [f32] {
        match self {
            Src::F32(d) => d,
            Src::Bf16(_) => unreachable!("an f32 product over bf16 storage (excluded by `eligible`)"),
        }
    }
}

/// How a product is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prec {
    /// f32 operands and result (the `gemm` crate).
    F32,
    /// bf16 operands (rounded to nearest even), f32 accumulation, the result rounded to bf16 and stored
    /// in f32: AMX tiles (see `amx`).
    Bf16,
}

impl Mats<'_> {
    fn transposed(&self) -> Self {
        Mats { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }
}

/// `f(index)` for every multi-index of `dims`, in row-major order.
fn for_each_index(dims: &[usize], mut f: impl FnMut(&[usize])) {
    let total: usize = dims.iter().product();
    let mut idx = vec![0usize; dims.len()];
    for _ in 0..total {
        f(&idx);
        for k in (0..idx.len()).rev() {
            idx[k] += 1;
            if idx[k] < dims[k] {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// For every entry of the output batch `out_batch` (row-major), the element offset of the matrix of
/// `t` it reads (`t`'s batch dims broadcast: a dim of size 1 stays put).
fn batch_offsets(t: &FlexTensor, out_batch: &[usize]) -> Vec<isize> {
    let layout = t.layout();
    let dims = layout.shape().as_slice();
    let lead = out_batch.len() - (dims.len() - 2);
    let mut bstride = vec![0isize; out_batch.len()];
    for (k, (&d, &s)) in dims[..dims.len() - 2].iter().zip(layout.strides()).enumerate() {
        if d != 1 {
            bstride[lead + k] = s;
        }
    }
    let mut out = Vec::with_capacity(out_batch.iter().product());
    for_each_index(out_batch, |idx| {
        out.push(
            layout.start_offset() as isize + idx.iter().zip(&bstride).map(|(&i, &s)| i as isize * s).sum::<isize>(),
        )
    });
    out
}

/// For every entry of the output batch `out_batch` (row-major), the flat index of the matrix it reads in
/// a contiguous batch of dims `dims` broadcast to `out_batch`.
fn operand_batch_index(dims: &[usize], out_batch: &[usize]) -> Vec<usize> {
    let lead = out_batch.len() - dims.len();
    let mut out = Vec::with_capacity(out_batch.iter().product());
    for_each_index(out_batch, |idx| {
        out.push(dims.iter().enumerate().fold(0, |flat, (k, &d)| flat * d + if d == 1 { 0 } else { idx[lead + k] }))
    });
    out
}

/// `C (+)= A·B` in f32, `C` `m × n` row-major with rows `ldc` apart, `A` and `B` given as (pointer, row
/// stride, column stride): the one place that picks the GEMM for every f32 product — dft-kernels' own
/// ([`crate::gemm_kernel`]: AVX2 or AVX-512) or the `gemm` crate.
///
/// # Safety
/// Every element of `A`, `B` and `C` is inside its allocation; `C` is initialised when `read_dst` and
/// overlaps neither operand.
pub(crate) unsafe fn gemm_f32(
    (m, n, k): (usize, usize, usize),
    c: *mut f32,
    ldc: usize,
    read_dst: bool,
    (lp, l_rs, l_cs): (*const f32, isize, isize),
    (rp, r_rs, r_cs): (*const f32, isize, isize),
    par: gemm::Parallelism,
) {
    #[cfg(target_arch = "x86_64")]
    {
        let kernel = crate::sgemm::current();
        if kernel != crate::GemmKernel::Crate {
            use crate::sgemm::{sgemm, View};
            let (lv, rv) = (View { ptr: lp, rs: l_rs, cs: l_cs }, View { ptr: rp, rs: r_rs, cs: r_cs });
            let parallel = matches!(par, gemm::Parallelism::Rayon(_));
            // SAFETY: the caller's contract; `current` only returns an own kernel the CPU runs.
            unsafe { sgemm(kernel, (m, n, k), (c, ldc, read_dst), lv, rv, parallel) };
            return;
        }
    }
    // SAFETY: the caller's contract (`gemm` takes column strides first: dst, lhs and rhs as cs, rs).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            ldc as isize,
            read_dst,
            lp,
            l_cs,
            l_rs,
            rp,
            r_cs,
            r_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    };
}

/// `dst[g] = Σ_{(l, r) in groups[g]} L[l]·R[r]` (or `dst[g] +=` with `accumulate`), `dst` contiguous
/// `[groups, L.rows, R.cols]`.
///
/// # Safety
/// `dst` holds `groups.len()·L.rows·R.cols` elements (initialised when `accumulate`); every offset with
/// its matrix's rows, cols and strides stays inside that matrix's buffer.
unsafe fn products_into(
    dst: *mut f32,
    l: &Mats,
    r: &Mats,
    groups: &[Vec<(isize, isize)>],
    accumulate: bool,
    prec: Prec,
) {
    assert_eq!(l.cols, r.rows, "matmul: inner dimensions {} and {}", l.cols, r.rows);
    let (m, n, k) = (l.rows, r.cols, l.cols);
    if k == 0 || m * n == 0 {
        return;
    }
    let terms: usize = groups.iter().map(Vec::len).sum();
    let kind = if prec == Prec::Bf16 { stats::Kind::ProductsBf16 } else { stats::Kind::ProductsF32 };
    let _timer = stats::Timer::start(kind, (2 * m * n * k * terms) as u64);
    if prec == Prec::Bf16 {
        // SAFETY: the same contract; `matmul` takes this path only when `amx_available()`.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            crate::amx::products_bf16(dst, l, r, groups, accumulate)
        };
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("bf16 products need AMX (x86-64)");
        #[cfg(target_arch = "x86_64")]
        return;
    }
    let dst = dst as usize;
    let run = |g: usize, par: gemm::Parallelism| {
        let p = (dst as *mut f32).wrapping_add(g * m * n);
        for (i, &(lo, ro)) in groups[g].iter().enumerate() {
            let (lp, rp) = (l.data.f32s().as_ptr().wrapping_offset(lo), r.data.f32s().as_ptr().wrapping_offset(ro));
            // SAFETY: by the contract above; without `accumulate` the first term writes the whole block
            // (read_dst false) before any later term reads it.
            unsafe { gemm_f32((m, n, k), p, n, accumulate || i > 0, (lp, l.rs, l.cs), (rp, r.rs, r.cs), par) };
        }
    };
    // Flex's strategy: large products use every thread inside the GEMM, batches of small ones one
    // product per thread.
    let ops = m * n * k;
    let total_ops = ops * terms;
    let batch_parallel = groups.len() >= 4 && total_ops >= BATCH_PARALLEL_OPS;
    if ops >= PARALLEL_OPS && !batch_parallel {
        (0..groups.len()).for_each(|g| run(g, gemm::Parallelism::Rayon(0)));
    } else if total_ops >= BATCH_PARALLEL_OPS && groups.len() > 1 {
        (0..groups.len()).into_par_iter().for_each(|g| run(g, gemm::Parallelism::None));
    } else {
        (0..groups.len()).for_each(|g| run(g, gemm::Parallelism::None));
    }
}

/// `out[g] = Σ_{(l, r) in groups[g]} L[l]·R[r]`, a fresh contiguous `[groups, m, n]` buffer written once.
fn grouped_products(l: &Mats, r: &Mats, groups: &[Vec<(isize, isize)>], prec: Prec) -> Vec<f32> {
    let total = l.rows * r.cols * groups.len();
    if l.cols == 0 || groups.iter().any(Vec::is_empty) {
        // Sums with no term are zeros, which the GEMM would not write.
        let mut out = vec![0f32; total];
        // SAFETY: `out` is initialised and sized as `products_into` requires.
        unsafe { products_into(out.as_mut_ptr(), l, r, groups, true, prec) };
        return out;
    }
    let mut out = Vec::with_capacity(total);
    // SAFETY: capacity `total`; every block is written by its first term before `set_len`.
    unsafe {
        products_into(out.as_mut_ptr(), l, r, groups, false, prec);
        out.set_len(total);
    }
    out
}

fn mats(t: &FlexTensor) -> Mats<'_> {
    let layout = t.layout();
    let dims = layout.shape().as_slice();
    let strides = layout.strides();
    let d = dims.len();
    let data = if t.dtype() == DType::BF16 {
        let v = t.storage::<burn::tensor::bf16>();
        // SAFETY: `half::bf16` is a `repr(transparent)` u16: same size, alignment and bit validity.
        Src::Bf16(unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u16, v.len()) })
    } else {
        Src::F32(t.storage::<f32>())
    };
    Mats { data, rows: dims[d - 2], cols: dims[d - 1], rs: strides[d - 2], cs: strides[d - 1] }
}

/// The broadcast batch dims of `a` and `b` (both of rank ≥ 2), or `None` if they do not broadcast.
fn broadcast_batch(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let (na, nb) = (a.len() - 2, b.len() - 2);
    let n = na.max(nb);
    (0..n)
        .map(|i| {
            let x = if i + na >= n { a[i + na - n] } else { 1 };
            let y = if i + nb >= n { b[i + nb - n] } else { 1 };
            match (x, y) {
                (x, y) if x == y => Some(x),
                (1, y) => Some(y),
                (x, 1) => Some(x),
                _ => None,
            }
        })
        .collect()
}

/// Whether the fast path takes `a·b` in `prec`: f32 operands (bf16 products also read bf16 storage),
/// rank ≥ 2, matching inner dims, broadcastable batches and non-negative strides.
fn eligible(a: &FlexTensor, b: &FlexTensor, prec: Prec) -> bool {
    let (sa, sb) = (a.layout().shape().as_slice(), b.layout().shape().as_slice());
    let dtype_ok = |d: DType| d == DType::F32 || (prec == Prec::Bf16 && d == DType::BF16);
    dtype_ok(a.dtype())
        && dtype_ok(b.dtype())
        && sa.len() >= 2
        && sa.len() == sb.len()
        && sa[sa.len() - 1] == sb[sb.len() - 2]
        && broadcast_batch(sa, sb).is_some()
        && a.layout().strides().iter().chain(b.layout().strides()).all(|&s| s >= 0)
}

/// `a·b` on Flex primitives.
fn forward(a: &FlexTensor, b: &FlexTensor, prec: Prec) -> FlexTensor {
    let (sa, sb) = (a.layout().shape().as_slice(), b.layout().shape().as_slice());
    let batch = broadcast_batch(sa, sb).expect("checked by `eligible`");
    let (ao, bo) = (batch_offsets(a, &batch), batch_offsets(b, &batch));
    let groups: Vec<Vec<(isize, isize)>> = ao.into_iter().zip(bo).map(|p| vec![p]).collect();
    let (la, rb) = (mats(a), mats(b));
    let out = grouped_products(&la, &rb, &groups, prec);
    let mut dims = batch;
    dims.extend([la.rows, rb.cols]);
    new_tensor(out, Shape::from(dims))
}

/// `∂A` (`lhs = true`, shape `a_shape`) or `∂B` of `C = A·B` from `∂C` and the other operand.
fn grad(d: &FlexTensor, other: &FlexTensor, target: &Shape, lhs: bool, prec: Prec) -> FlexTensor {
    let out_batch: Vec<usize> = d.layout().shape().as_slice()[..d.layout().shape().num_dims() - 2].to_vec();
    let tdims = target.as_slice();
    let tb = &tdims[..tdims.len() - 2];
    let owner = operand_batch_index(tb, &out_batch);
    let ndest: usize = tb.iter().product();
    let (dof, oof) = (batch_offsets(d, &out_batch), batch_offsets(other, &out_batch));
    let mut groups = vec![Vec::new(); ndest];
    for (e, &dest) in owner.iter().enumerate() {
        groups[dest].push(if lhs { (dof[e], oof[e]) } else { (oof[e], dof[e]) });
    }
    let (dm, om) = (mats(d), mats(other));
    let out = if lhs {
        // ∂A = ∂C · Bᵀ
        grouped_products(&dm, &om.transposed(), &groups, prec)
    } else {
        // ∂B = Aᵀ · ∂C
        grouped_products(&om.transposed(), &dm, &groups, prec)
    };
    new_tensor(out, target.clone())
}

/// The backward of a product computed in `.0` (its gradient products run in the same precision, as
/// a cast → matmul → cast chain's would).
#[derive(Debug)]
struct MatmulBackward(Prec);

impl Backward<Flex, 2> for MatmulBackward {
    /// `A` (kept when `B` needs a gradient), `B` (kept when `A` does) and both shapes.
    type State = (Option<NodeId>, Option<NodeId>, Shape, Shape);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let (aid, bid, ashape, bshape) = ops.state;
        let a = aid.map(|id| checkpointer.retrieve_node_output::<FlexTensor>(id));
        let b = bid.map(|id| checkpointer.retrieve_node_output::<FlexTensor>(id));
        let d = grads.consume::<Flex>(&ops.node);
        let d = if d.layout().strides().iter().any(|&s| s < 0) { d.to_contiguous() } else { d };
        let [pa, pb] = ops.parents;
        if let (Some(node), Some(b)) = (pa, &b) {
            grads.register::<Flex>(node.id, grad(&d, b, &ashape, true, self.0));
        }
        if let (Some(node), Some(a)) = (pb, &a) {
            grads.register::<Flex>(node.id, grad(&d, a, &bshape, false, self.0));
        }
    }
}

fn matmul_ad<C: CheckpointStrategy>(a: AdTensor, b: AdTensor, prec: Prec) -> AdTensor {
    let (at, bt) = (a.is_tracked(), b.is_tracked());
    let (ashape, bshape) = (a.primitive.layout().shape().clone(), b.primitive.layout().shape().clone());
    match MatmulBackward(prec).prepare::<C>([a.node.clone(), b.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let astate = bt.then(|| prep.checkpoint(&a));
            let bstate = at.then(|| prep.checkpoint(&b));
            prep.finish((astate, bstate, ashape, bshape), forward(&a.primitive, &b.primitive, prec))
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&a.primitive, &b.primitive, prec)),
    }
}

/// `a·b` in `prec` on Flex / `Autodiff<Flex, _>` for f32 tensors; the inputs back otherwise.
pub(crate) fn matmul<B: Backend, const D: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, D>,
    prec: Prec,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
    let Some(kind) = kind::<B>() else { return Err((a, b)) };
    if prec == Prec::Bf16 && !crate::amx_available() {
        return Err((a, b));
    }
    let out = match kind {
        Kind::Plain => {
            let (pa, pb) = (prim::<B, D, FlexTensor>(a), prim::<B, D, FlexTensor>(b));
            if !eligible(&pa, &pb, prec) {
                return Err((wrap::<B, D, _>(pa), wrap::<B, D, _>(pb)));
            }
            return Ok(wrap::<B, D, _>(forward(&pa, &pb, prec)));
        }
        Kind::AdPlain | Kind::AdBalanced => {
            let (pa, pb) = (prim::<B, D, AdTensor>(a), prim::<B, D, AdTensor>(b));
            // A bf16 operand must be a constant (a frozen base): its gradient would have to be bf16.
            let constant_or_f32 = |t: &AdTensor| t.primitive.dtype() == DType::F32 || !t.is_tracked();
            if !eligible(&pa.primitive, &pb.primitive, prec) || !constant_or_f32(&pa) || !constant_or_f32(&pb) {
                return Err((wrap::<B, D, _>(pa), wrap::<B, D, _>(pb)));
            }
            if matches!(kind, Kind::AdPlain) {
                matmul_ad::<NoCheckpointing>(pa, pb, prec)
            } else {
                matmul_ad::<BalancedCheckpointing>(pa, pb, prec)
            }
        }
    };
    Ok(wrap::<B, D, _>(out))
}

/// `acc + a·b` for 2-d f32 tensors on plain Flex, written into `acc`'s own buffer when nothing else
/// holds it.
pub(crate) fn matmul_add<B: Backend>(
    acc: Tensor<B, 2>,
    a: Tensor<B, 2>,
    b: Tensor<B, 2>,
) -> Result<Tensor<B, 2>, (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>)> {
    if !matches!(kind::<B>(), Some(Kind::Plain))
        || [&acc, &a, &b].iter().any(|t| t.dtype() != DType::F32)
        || acc.dims() != [a.dims()[0], b.dims()[1]]
    {
        return Err((acc, a, b));
    }
    let (pc, pa, pb) = (prim::<B, 2, FlexTensor>(acc), prim::<B, 2, FlexTensor>(a), prim::<B, 2, FlexTensor>(b));
    if !eligible(&pa, &pb, Prec::F32) {
        return Err((wrap::<B, 2, _>(pc), wrap::<B, 2, _>(pa), wrap::<B, 2, _>(pb)));
    }
    let mut c = owned(pc);
    let offset = c.layout().start_offset();
    let dst = c.storage_mut::<f32>()[offset..].as_mut_ptr();
    let terms = vec![vec![(pa.layout().start_offset() as isize, pb.layout().start_offset() as isize)]];
    // SAFETY: `c` is a contiguous [m, n] f32 tensor this call owns; the operands' offsets are theirs.
    unsafe { products_into(dst, &mats(&pa), &mats(&pb), &terms, true, Prec::F32) };
    Ok(wrap::<B, 2, _>(c))
}
