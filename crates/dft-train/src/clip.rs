//! Global-norm gradient clipping (PyTorch's `clip_grad_norm_`): one norm over all parameters, every
//! gradient scaled by `max_norm / (norm + 1e-6)` when the norm exceeds `max_norm`. (Burn's own
//! clipping works per tensor.)

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};

/// Sums the squared gradients: on CPU (Flex) in one multi-threaded f64 pass per tensor
/// (`dft_kernels::sum_squares`), elsewhere as device tensors added up and read once.
struct SquaredNorm<'a, B: Backend> {
    grads: &'a GradientsParams,
    host: f64,
    acc: Option<Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for SquaredNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B, D>(param.id) {
            match dft_kernels::sum_squares(g) {
                Ok(s) => self.host += s,
                Err(g) => {
                    let s = (g.clone() * g).sum();
                    self.acc = Some(match self.acc.take() {
                        Some(a) => a + s,
                        None => s,
                    });
                }
            }
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
            self.grads.register::<B, D>(param.id, dft_kernels::scale(g, self.factor));
        }
    }
}

/// The global L2 norm of all gradients of `model` held in `grads`.
pub fn global_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(model: &M, grads: &GradientsParams) -> f64 {
    let valid = model.valid();
    let mut v = SquaredNorm::<B::InnerBackend> { grads, host: 0.0, acc: None };
    valid.visit(&mut v);
    (v.host + v.acc.map(|a| a.into_scalar().elem::<f64>()).unwrap_or(0.0)).sqrt()
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::TensorData;

    type Ad = Autodiff<Flex>;

    /// `(weight grad, bias grad)` of a 3 → 2 linear layer under `sum(linear(x)²)`, and the layer.
    fn grads() -> (Linear<Ad>, GradientsParams) {
        let dev = Default::default();
        let layer = LinearConfig::new(3, 2).init::<Ad>(&dev);
        let x = Tensor::<Ad, 2>::from_data(TensorData::new(vec![1.0f32, -2.0, 0.5, 3.0, 0.25, -1.0], [2, 3]), &dev);
        let y = layer.forward(x);
        let g = (y.clone() * y).sum().backward();
        let grads = GradientsParams::from_grads(g, &layer);
        (layer, grads)
    }

    fn flat(layer: &Linear<Ad>, grads: &GradientsParams) -> Vec<f32> {
        let w = grads.get::<Flex, 2>(layer.weight.id).unwrap().into_data().to_vec::<f32>().unwrap();
        let b = grads.get::<Flex, 1>(layer.bias.as_ref().unwrap().id).unwrap().into_data().to_vec::<f32>().unwrap();
        w.into_iter().chain(b).collect()
    }

    /// PyTorch's `clip_grad_norm_`: the norm over all gradients is returned; above `max_norm` every
    /// gradient is scaled by `max_norm / (norm + 1e-6)`, below it nothing changes.
    #[test]
    fn clipping_scales_every_gradient_by_the_global_factor() {
        let (layer, mut g) = grads();
        let before = flat(&layer, &g);
        let norm: f64 = before.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt();
        assert!(norm > 1.0, "test gradients too small: {norm}");
        let got = clip_global_norm::<Ad, _>(&layer, &mut g, norm * 2.0);
        assert!((got - norm).abs() <= 1e-6 * norm, "norm {got} vs {norm}");
        assert_eq!(flat(&layer, &g), before, "clipped below max_norm");
        let max = norm / 4.0;
        let got = clip_global_norm::<Ad, _>(&layer, &mut g, max);
        assert!((got - norm).abs() <= 1e-6 * norm);
        let factor = max / (norm + 1e-6);
        for (a, b) in flat(&layer, &g).iter().zip(&before) {
            assert!(
                (f64::from(*a) - f64::from(*b) * factor).abs() <= 1e-6 * f64::from(b.abs()).max(1.0),
                "{a} vs {b}·{factor}"
            );
        }
        let after = global_grad_norm::<Ad, _>(&layer, &g);
        assert!((after - max).abs() <= 1e-5 * max, "norm after clipping {after}, wanted {max}");
    }
}
