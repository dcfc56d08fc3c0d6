//! Global-norm gradient clipping (PyTorch's `clip_grad_norm_`): one norm over all parameters, every
//! gradient scaled by `max_norm / (norm + 1e-6)` when the norm exceeds `max_norm`. (Burn's own
//! clipping works per tensor.)

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};

struct SquaredNorm<'a, B: Backend> {
    grads: &'a GradientsParams,
    acc: Option<Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for SquaredNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B, D>(param.id) {
            let s = (g.clone() * g).sum();
            self.acc = Some(match self.acc.take() {
                Some(a) => a + s,
                None => s,
            });
        }
    }
}

struct Scale<'a, B: Backend> {
    grads: &'a mut GradientsParams,
    factor: f64,
    _b: std::marker::PhantomData<B>,
}

impl<B: Backend> ModuleVisitor<B> for Scale<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B, D>(param.id) {
            self.grads.register::<B, D>(param.id, g * self.factor);
        }
    }
}

/// The global L2 norm of all gradients of `model` held in `grads`.
pub fn global_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(model: &M, grads: &GradientsParams) -> f64 {
    let valid = model.valid();
    let mut v = SquaredNorm::<B::InnerBackend> { grads, acc: None };
    valid.visit(&mut v);
    v.acc.map(|a| a.into_scalar().elem::<f64>().sqrt()).unwrap_or(0.0)
}

/// Clip to `max_norm` (if > 0); returns the norm before clipping.
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let norm = global_grad_norm::<B, M>(model, grads);
    if max_norm > 0.0 && norm > max_norm {
        let valid = model.valid();
        let mut s = Scale::<B::InnerBackend> { grads, factor: max_norm / (norm + 1e-6), _b: Default::default() };
        valid.visit(&mut s);
    }
    norm
}
