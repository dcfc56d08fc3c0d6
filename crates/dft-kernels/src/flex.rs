//! The fused ops on `Flex` and `Autodiff<Flex, C>`: run-time dispatch on the backend type, and the
//! custom autodiff nodes (analytic backward).
//!
//! The nodes are *memory-bound* in Burn's sense: they keep their inputs (through the checkpointer, by
//! node id), not their output, and have a retro-forward, so that under `BalancedCheckpointing` an output
//! is recomputed when the backward needs it instead of being held — as for the compositions they
//! replace. (Without checkpointing the softmax keeps its output instead of its input: the probabilities'
//! matmul holds that tensor anyway.)

use crate::cpu;
use crate::{GateAct, SoftmaxSpec};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::retro_forward::RetroForward;
use burn::backend::autodiff::checkpoint::state::BackwardStates;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::{Bytes, DType, Shape, Tensor, TensorPrimitive};
use std::any::{Any, TypeId};

/// The float primitive of `Autodiff<Flex, C>` (the same type for every checkpointing strategy).
pub(crate) type AdTensor = burn::tensor::ops::FloatTensor<Autodiff<Flex>>;

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Plain,
    AdPlain,
    AdBalanced,
}

pub(crate) fn kind<B: Backend>() -> Option<Kind> {
    let id = TypeId::of::<B>();
    if id == TypeId::of::<Flex>() {
        Some(Kind::Plain)
    } else if id == TypeId::of::<Autodiff<Flex, NoCheckpointing>>() {
        Some(Kind::AdPlain)
    } else if id == TypeId::of::<Autodiff<Flex, BalancedCheckpointing>>() {
        Some(Kind::AdBalanced)
    } else {
        None
    }
}

pub(crate) fn supported<B: Backend>() -> bool {
    kind::<B>().is_some()
}

/// Moves `x` into type `U`, which the caller has established (by `TypeId`) to be `T` itself.
fn cast<T: 'static, U: 'static>(x: T) -> U {
    let mut slot = Some(x);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<U>>()
        .and_then(Option::take)
        .expect("dft-kernels: backend type checked before the cast")
}

pub(crate) fn prim<B: Backend, const D: usize, P: 'static>(t: Tensor<B, D>) -> P {
    cast::<B::FloatTensorPrimitive, P>(t.into_primitive().tensor())
}

pub(crate) fn wrap<B: Backend, const D: usize, P: 'static>(p: P) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(cast::<P, B::FloatTensorPrimitive>(p)))
}

pub(crate) fn new_tensor(data: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(shape), DType::F32)
}

/// A contiguous f32 copy of `t`'s data that this call owns (copied only if the buffer is shared).
pub(crate) fn owned(t: FlexTensor) -> FlexTensor {
    let mut c = t.to_contiguous();
    drop(t);
    let _ = c.storage_mut::<f32>(); // copy-on-write if still shared
    c
}

fn shape_of(t: &FlexTensor) -> Shape {
    t.layout().shape().clone()
}

/// Runs `plain` on `Flex` primitives or `ad::<C>` on `Autodiff<Flex, C>` primitives.
macro_rules! by_kind {
    ($kind:expr, $plain:expr, $ad:ident :: <C> $args:tt) => {
        match $kind {
            Kind::Plain => $plain,
            Kind::AdPlain => $ad::<NoCheckpointing> $args,
            Kind::AdBalanced => $ad::<BalancedCheckpointing> $args,
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Attention softmax
// ---------------------------------------------------------------------------------------------

type Inputs2<B, const D: usize> = (Tensor<B, D>, Option<Tensor<B, D>>);

/// For a bias of shape `bias` broadcast to `scores` (each dim equal or 1, the last one equal), the
/// offset in the (contiguous) bias of the bias row of every row of `scores`; `None` if not broadcastable.
fn bias_row_starts(scores: &[usize], bias: &[usize]) -> Option<Vec<usize>> {
    let d = scores.len();
    if bias.len() != d || bias[d - 1] != scores[d - 1] || (0..d).any(|k| bias[k] != scores[k] && bias[k] != 1) {
        return None;
    }
    // Contiguous strides of the bias, zero where it broadcasts.
    let mut strides = vec![0usize; d];
    let mut acc = 1;
    for k in (0..d).rev() {
        strides[k] = if bias[k] == 1 && scores[k] != 1 { 0 } else { acc };
        acc *= bias[k];
    }
    let rows: usize = scores[..d - 1].iter().product();
    let mut idx = vec![0usize; d - 1];
    let mut starts = Vec::with_capacity(rows);
    for _ in 0..rows {
        starts.push(idx.iter().zip(&strides).map(|(i, s)| i * s).sum());
        for k in (0..d - 1).rev() {
            idx[k] += 1;
            if idx[k] < scores[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Some(starts)
}

pub(crate) fn attention_softmax<B: Backend, const D: usize>(
    scores: Tensor<B, D>,
    bias: Option<Tensor<B, D>>,
    spec: SoftmaxSpec,
) -> Result<Tensor<B, D>, Inputs2<B, D>> {
    let Some(kind) = kind::<B>() else { return Err((scores, bias)) };
    let starts = match &bias {
        Some(b) if b.dtype() == DType::F32 => match bias_row_starts(&scores.dims(), &b.dims()) {
            Some(starts) => Some(starts),
            None => return Err((scores, bias)),
        },
        Some(_) => return Err((scores, bias)),
        None => None,
    };
    if scores.dtype() != DType::F32 {
        return Err((scores, bias));
    }
    let row = scores.dims()[D - 1];
    if let Kind::Plain = kind {
        let s = prim::<B, D, FlexTensor>(scores).to_contiguous();
        let b = bias.map(|b| prim::<B, D, FlexTensor>(b).to_contiguous());
        let bias = b.as_ref().zip(starts.as_deref()).map(|(b, st)| (b.storage::<f32>(), st));
        let out = cpu::softmax_forward(s.storage(), bias, row, spec);
        return Ok(wrap::<B, D, _>(new_tensor(out, shape_of(&s))));
    }
    let s = prim::<B, D, AdTensor>(scores);
    let b = bias.map(prim::<B, D, AdTensor>);
    if b.as_ref().is_some_and(|b| b.is_tracked()) {
        // A bias that wants a gradient takes the composition.
        return Err((wrap::<B, D, _>(s), b.map(wrap::<B, D, _>)));
    }
    let out = by_kind!(kind, unreachable!(), softmax_ad::<C>(s, b.zip(starts), row, spec));
    Ok(wrap::<B, D, _>(out))
}

/// The mask operand of a softmax node: data and the offset of each scores row's bias row.
type BiasRows = Option<(FlexTensor, Vec<usize>)>;

fn softmax_flex(s: &FlexTensor, bias: &BiasRows, row: usize, spec: SoftmaxSpec) -> FlexTensor {
    let s = s.to_contiguous();
    let bias = bias.as_ref().map(|(b, starts)| (b.storage::<f32>(), starts.as_slice()));
    new_tensor(cpu::softmax_forward(s.storage(), bias, row, spec), shape_of(&s))
}

/// What a softmax node keeps for its backward.
#[derive(Clone, Debug)]
// One value per attention op in the autodiff graph: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum SoftmaxSaved {
    /// Without checkpointing: the output `p` (the probabilities' matmul holds it anyway, so this costs
    /// nothing) and, with a softcap, the scores.
    Output { p: FlexTensor, scores: Option<FlexTensor> },
    /// With checkpointing: the scores' node; `p` is recomputed in the backward (one pass).
    Scores(NodeId),
}

#[derive(Debug)]
struct SoftmaxBackward;

impl Backward<Flex, 1> for SoftmaxBackward {
    type State = (SoftmaxSaved, BiasRows, SoftmaxSpec, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let (saved, bias, spec, row) = ops.state;
        let (p, s) = match saved {
            SoftmaxSaved::Output { p, scores } => (p, scores),
            SoftmaxSaved::Scores(id) => {
                let s = checkpointer.retrieve_node_output::<FlexTensor>(id).to_contiguous();
                (softmax_flex(&s, &bias, row, spec), Some(s))
            }
        };
        unary::<Flex, _>(ops.parents, ops.node, grads, |dp| {
            let dp = dp.to_contiguous();
            let softcapped = spec.softcap.and(s.as_ref()).map(|s| s.storage::<f32>());
            new_tensor(cpu::softmax_backward(p.storage(), dp.storage(), softcapped, row, spec), shape_of(&p))
        });
    }
}

#[derive(Debug)]
struct RetroSoftmax {
    scores: NodeId,
    bias: BiasRows,
    row: usize,
    spec: SoftmaxSpec,
}

impl RetroForward for RetroSoftmax {
    fn forward(&self, states: &mut BackwardStates, out_node: NodeId) {
        let s: FlexTensor = states.get_state(&self.scores);
        states.save(out_node, softmax_flex(&s, &self.bias, self.row, self.spec));
    }
}

fn softmax_ad<C: CheckpointStrategy>(
    s: AdTensor,
    bias: Option<(AdTensor, Vec<usize>)>,
    row: usize,
    spec: SoftmaxSpec,
) -> AdTensor {
    let bias: BiasRows = bias.map(|(b, starts)| (b.primitive.to_contiguous(), starts));
    let out = softmax_flex(&s.primitive, &bias, row, spec);
    if TypeId::of::<C>() == TypeId::of::<NoCheckpointing>() {
        return match SoftmaxBackward.prepare::<C>([s.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let scores = spec.softcap.map(|_| s.primitive.to_contiguous());
                prep.finish((SoftmaxSaved::Output { p: out.clone(), scores }, bias, spec, row), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
    }
    let retro = RetroSoftmax { scores: s.node.id, bias: bias.clone(), row, spec };
    match SoftmaxBackward.prepare::<C>([s.node.clone()]).memory_bound().retro_forward(retro).parents([&s]).stateful() {
        OpsKind::Tracked(mut prep) => {
            let id = prep.checkpoint(&s);
            prep.finish((SoftmaxSaved::Scores(id), bias, spec, row), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

// ---------------------------------------------------------------------------------------------
// Gated activation
// ---------------------------------------------------------------------------------------------

pub(crate) fn gated_activation<B: Backend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
    act: GateAct,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
    let Some(kind) = kind::<B>() else { return Err((gate, up)) };
    if gate.dtype() != DType::F32 || up.dtype() != DType::F32 || gate.dims() != up.dims() {
        return Err((gate, up));
    }
    let out = by_kind!(
        kind,
        {
            let (g, u) = (prim::<B, D, FlexTensor>(gate).to_contiguous(), prim::<B, D, FlexTensor>(up).to_contiguous());
            return Ok(wrap::<B, D, _>(new_tensor(cpu::gated_forward(g.storage(), u.storage(), act), shape_of(&g))));
        },
        gated_ad::<C>(prim::<B, D, AdTensor>(gate), prim::<B, D, AdTensor>(up), act)
    );
    Ok(wrap::<B, D, _>(out))
}

fn gated_flex(g: &FlexTensor, u: &FlexTensor, act: GateAct) -> FlexTensor {
    let (g, u) = (g.to_contiguous(), u.to_contiguous());
    new_tensor(cpu::gated_forward(g.storage(), u.storage(), act), shape_of(&g))
}

#[derive(Debug)]
struct GatedBackward;

impl Backward<Flex, 2> for GatedBackward {
    type State = (NodeId, NodeId, GateAct);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let (gid, uid, act) = ops.state;
        let g = checkpointer.retrieve_node_output::<FlexTensor>(gid).to_contiguous();
        let u = checkpointer.retrieve_node_output::<FlexTensor>(uid).to_contiguous();
        let d = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (dg, du) = cpu::gated_backward(g.storage(), u.storage(), d.storage(), act);
        let [pg, pu] = ops.parents;
        if let Some(node) = pg {
            grads.register::<Flex>(node.id, new_tensor(dg, shape_of(&g)));
        }
        if let Some(node) = pu {
            grads.register::<Flex>(node.id, new_tensor(du, shape_of(&u)));
        }
    }
}

#[derive(Debug)]
struct RetroGated {
    gate: NodeId,
    up: NodeId,
    act: GateAct,
}

impl RetroForward for RetroGated {
    fn forward(&self, states: &mut BackwardStates, out_node: NodeId) {
        let g: FlexTensor = states.get_state(&self.gate);
        let u: FlexTensor = states.get_state(&self.up);
        states.save(out_node, gated_flex(&g, &u, self.act));
    }
}

fn gated_ad<C: CheckpointStrategy>(g: AdTensor, u: AdTensor, act: GateAct) -> AdTensor {
    let out = gated_flex(&g.primitive, &u.primitive, act);
    let retro = RetroGated { gate: g.node.id, up: u.node.id, act };
    match GatedBackward
        .prepare::<C>([g.node.clone(), u.node.clone()])
        .memory_bound()
        .retro_forward(retro)
        .parents([&g, &u])
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let (gid, uid) = (prep.checkpoint(&g), prep.checkpoint(&u));
            prep.finish((gid, uid, act), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

// ---------------------------------------------------------------------------------------------
// RMSNorm
// ---------------------------------------------------------------------------------------------

pub(crate) fn rms_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 1>,
    eps: f64,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, 1>)> {
    let Some(kind) = kind::<B>() else { return Err((x, weight)) };
    if x.dtype() != DType::F32 || weight.dtype() != DType::F32 || weight.dims()[0] != x.dims()[D - 1] {
        return Err((x, weight));
    }
    let eps = eps as f32;
    let out = by_kind!(
        kind,
        {
            let (x, w) =
                (prim::<B, D, FlexTensor>(x).to_contiguous(), prim::<B, 1, FlexTensor>(weight).to_contiguous());
            return Ok(wrap::<B, D, _>(new_tensor(cpu::rms_norm_forward(x.storage(), w.storage(), eps), shape_of(&x))));
        },
        rms_norm_ad::<C>(prim::<B, D, AdTensor>(x), prim::<B, 1, AdTensor>(weight), eps)
    );
    Ok(wrap::<B, D, _>(out))
}

fn rms_norm_flex(x: &FlexTensor, w: &FlexTensor, eps: f32) -> FlexTensor {
    let (x, w) = (x.to_contiguous(), w.to_contiguous());
    new_tensor(cpu::rms_norm_forward(x.storage(), w.storage(), eps), shape_of(&x))
}

#[derive(Debug)]
struct RmsNormBackward;

impl Backward<Flex, 2> for RmsNormBackward {
    type State = (NodeId, NodeId, f32);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let (xid, wid, eps) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(xid).to_contiguous();
        let w = checkpointer.retrieve_node_output::<FlexTensor>(wid).to_contiguous();
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let [px, pw] = ops.parents;
        let (dx, dw) = cpu::rms_norm_backward(x.storage(), w.storage(), dy.storage(), eps, pw.is_some());
        if let Some(node) = px {
            grads.register::<Flex>(node.id, new_tensor(dx, shape_of(&x)));
        }
        if let (Some(node), Some(dw)) = (pw, dw) {
            grads.register::<Flex>(node.id, new_tensor(dw, shape_of(&w)));
        }
    }
}

#[derive(Debug)]
struct RetroRmsNorm {
    x: NodeId,
    w: NodeId,
    eps: f32,
}

impl RetroForward for RetroRmsNorm {
    fn forward(&self, states: &mut BackwardStates, out_node: NodeId) {
        let x: FlexTensor = states.get_state(&self.x);
        let w: FlexTensor = states.get_state(&self.w);
        states.save(out_node, rms_norm_flex(&x, &w, self.eps));
    }
}

fn rms_norm_ad<C: CheckpointStrategy>(x: AdTensor, w: AdTensor, eps: f32) -> AdTensor {
    let out = rms_norm_flex(&x.primitive, &w.primitive, eps);
    let retro = RetroRmsNorm { x: x.node.id, w: w.node.id, eps };
    match RmsNormBackward
        .prepare::<C>([x.node.clone(), w.node.clone()])
        .memory_bound()
        .retro_forward(retro)
        .parents([&x, &w])
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let (xid, wid) = (prep.checkpoint(&x), prep.checkpoint(&w));
            prep.finish((xid, wid, eps), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

// ---------------------------------------------------------------------------------------------
// Softmax cross-entropy (plain Flex only: the caller runs it on the inner backend)
// ---------------------------------------------------------------------------------------------

pub(crate) fn softmax_cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    targets: &[u32],
    softcap: Option<f64>,
    grad: bool,
) -> Result<crate::XentOutput<B>, Tensor<B, 2>> {
    if !matches!(kind::<B>(), Some(Kind::Plain)) || logits.dtype() != DType::F32 {
        return Err(logits);
    }
    let device = logits.device();
    let [_, v] = logits.dims();
    // Owned, so that the gradient overwrites the logits in place.
    let mut z = owned(prim::<B, 2, FlexTensor>(logits));
    let cap = softcap.map(|c| c as f32);
    let loss = cpu::softmax_xent(z.storage_mut::<f32>(), targets, v, cap, grad);
    let loss = Tensor::<B, 1>::from_data(burn::tensor::TensorData::new(vec![loss as f32], [1]), &device);
    Ok((loss, grad.then(|| wrap::<B, 2, _>(z))))
}

// ---------------------------------------------------------------------------------------------
// Permutation, materialised
// ---------------------------------------------------------------------------------------------

/// `x.permute(axes)` as a contiguous tensor (Flex's own copy walks N-d views element by element).
fn permuted_copy(x: &FlexTensor, axes: &[usize]) -> FlexTensor {
    let view = x.permute(axes);
    let layout = view.layout();
    if layout.strides().iter().any(|&s| s < 0) {
        return view.to_contiguous();
    }
    let data = cpu::strided_copy(view.storage::<f32>(), layout.start_offset(), layout.shape(), layout.strides());
    new_tensor(data, layout.shape().clone())
}

pub(crate) fn permute_contiguous<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    axes: [usize; D],
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    let Some(kind) = kind::<B>() else { return Err(x) };
    if x.dtype() != DType::F32 {
        return Err(x);
    }
    let out = by_kind!(
        kind,
        return Ok(wrap::<B, D, _>(permuted_copy(&prim::<B, D, FlexTensor>(x), &axes))),
        permute_ad::<C>(prim::<B, D, AdTensor>(x), axes.to_vec())
    );
    Ok(wrap::<B, D, _>(out))
}

#[derive(Debug)]
struct PermuteBackward;

impl Backward<Flex, 1> for PermuteBackward {
    /// The inverse permutation.
    type State = Vec<usize>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let inverse = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| permuted_copy(&g, &inverse));
    }
}

#[derive(Debug)]
struct RetroPermute {
    x: NodeId,
    axes: Vec<usize>,
}

impl RetroForward for RetroPermute {
    fn forward(&self, states: &mut BackwardStates, out_node: NodeId) {
        let x: FlexTensor = states.get_state(&self.x);
        states.save(out_node, permuted_copy(&x, &self.axes));
    }
}

fn permute_ad<C: CheckpointStrategy>(x: AdTensor, axes: Vec<usize>) -> AdTensor {
    let out = permuted_copy(&x.primitive, &axes);
    let retro = RetroPermute { x: x.node.id, axes: axes.clone() };
    match PermuteBackward.prepare::<C>([x.node.clone()]).memory_bound().retro_forward(retro).parents([&x]).stateful() {
        OpsKind::Tracked(prep) => {
            let mut inverse = vec![0; axes.len()];
            for (i, &a) in axes.iter().enumerate() {
                inverse[a] = i;
            }
            prep.finish(inverse, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

// ---------------------------------------------------------------------------------------------
// AdamW (plain Flex: optimisers run on the inner backend)
// ---------------------------------------------------------------------------------------------

pub(crate) fn adamw_step<B: Backend, const D: usize>(
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    moments: Option<(Tensor<B, D>, Tensor<B, D>)>,
    step: cpu::AdamWStep,
) -> Result<crate::AdamWOutputs<B, D>, crate::AdamWInputs<B, D>> {
    let f32s = param.dtype() == DType::F32
        && grad.dtype() == DType::F32
        && moments.as_ref().is_none_or(|(m, v)| m.dtype() == DType::F32 && v.dtype() == DType::F32);
    let same = moments.as_ref().is_none_or(|(m, v)| m.dims() == param.dims() && v.dims() == param.dims());
    if !matches!(kind::<B>(), Some(Kind::Plain)) || !f32s || !same || param.dims() != grad.dims() {
        return Err((param, grad, moments));
    }
    let shape = param.shape();
    let n = shape.num_elements();
    let mut p = owned(prim::<B, D, FlexTensor>(param));
    let g = prim::<B, D, FlexTensor>(grad).to_contiguous();
    let first = moments.is_none();
    let (mut m, mut v) = match moments {
        Some((m, v)) => (owned(prim::<B, D, FlexTensor>(m)), owned(prim::<B, D, FlexTensor>(v))),
        None => (new_tensor(vec![0f32; n], shape.clone()), new_tensor(vec![0f32; n], shape)),
    };
    cpu::adamw(
        p.storage_mut::<f32>(),
        g.storage::<f32>(),
        m.storage_mut::<f32>(),
        v.storage_mut::<f32>(),
        cpu::AdamWStep { first, ..step },
    );
    Ok((wrap::<B, D, _>(p), wrap::<B, D, _>(m), wrap::<B, D, _>(v)))
}

// ---------------------------------------------------------------------------------------------
// Gradient clipping: sum of squares and scaling
// ---------------------------------------------------------------------------------------------

/// `Σ x²` of an f32 tensor on plain `Flex`; the input back otherwise.
pub(crate) fn sum_squares<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<f64, Tensor<B, D>> {
    if !matches!(kind::<B>(), Some(Kind::Plain)) || x.dtype() != DType::F32 {
        return Err(x);
    }
    let t = prim::<B, D, FlexTensor>(x).to_contiguous();
    Ok(cpu::sum_squares(t.storage::<f32>()))
}

/// `x · factor` of an f32 tensor on plain `Flex`, in `x`'s own buffer when nothing else holds it; the
/// input back otherwise.
pub(crate) fn scale<B: Backend, const D: usize>(x: Tensor<B, D>, factor: f32) -> Result<Tensor<B, D>, Tensor<B, D>> {
    if !matches!(kind::<B>(), Some(Kind::Plain)) || x.dtype() != DType::F32 {
        return Err(x);
    }
    let mut t = owned(prim::<B, D, FlexTensor>(x));
    cpu::scale_in_place(t.storage_mut::<f32>(), factor);
    Ok(wrap::<B, D, _>(t))
}

// ---------------------------------------------------------------------------------------------
// Gradient carrier: a zero scalar whose gradient w.r.t. `x` is a given tensor
// ---------------------------------------------------------------------------------------------

pub(crate) fn gradient_carrier<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    g: Tensor<B, D>,
) -> Result<Tensor<B, 1>, (Tensor<B, D>, Tensor<B, D>)> {
    let Some(kind @ (Kind::AdPlain | Kind::AdBalanced)) = kind::<B>() else { return Err((x, g)) };
    if x.dtype() != DType::F32 || g.dtype() != DType::F32 || x.dims() != g.dims() {
        return Err((x, g));
    }
    let g = prim::<B, D, AdTensor>(g).primitive;
    let out = by_kind!(kind, unreachable!(), carrier_ad::<C>(prim::<B, D, AdTensor>(x), g));
    Ok(wrap::<B, 1, _>(out))
}

#[derive(Debug)]
struct CarrierBackward;

impl Backward<Flex, 1> for CarrierBackward {
    /// The gradient to hand to the parent (for an upstream gradient of 1).
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let g = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |d| {
            let s = d.to_contiguous().storage::<f32>()[0];
            if s == 1.0 {
                g
            } else {
                let mut g = owned(g);
                cpu::scale_in_place(g.storage_mut::<f32>(), s);
                g
            }
        });
    }
}

fn carrier_ad<C: CheckpointStrategy>(x: AdTensor, g: FlexTensor) -> AdTensor {
    let out = new_tensor(vec![0.0], Shape::new([1]));
    match CarrierBackward.prepare::<C>([x.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(g, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}
