//! AdamW with Burn's exact update rule and record format, one fused pass per parameter on Flex.
//!
//! Burn's `AdamW` runs ~12 tensor ops per parameter (each a single-threaded pass on its CPU backend:
//! ≈0.5 s per SmolLM2 step); [`FusedAdamW`] does the same arithmetic in one multi-threaded pass
//! (`dft_kernels::adamw_step`) where the backend has the kernel, and otherwise *is* Burn's `AdamW`
//! (it delegates). Its state is Burn's `AdamWState`, so checkpoints written with either optimiser load
//! into the other.

use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, SimpleOptimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::Device;
use burn::tensor::Tensor;
use dft_kernels::AdamWStep;

/// See the module docs. Decoupled weight decay, no AMSGrad, no cautious decay (what `dft train` uses).
#[derive(Clone)]
pub struct FusedAdamW {
    fallback: AdamW,
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
}

impl FusedAdamW {
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32, weight_decay: f32) -> Self {
        let fallback = AdamWConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .with_weight_decay(weight_decay)
            .build();
        Self { fallback, beta_1, beta_2, epsilon, weight_decay }
    }

    /// The optimiser for a module `M` trained on backend `B`.
    pub fn init<B: AutodiffBackend, M: burn::module::AutodiffModule<B>>(self) -> OptimizerAdaptor<Self, M, B> {
        OptimizerAdaptor::from(self)
    }
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let time = state.as_ref().map_or(0, |s| s.momentum.time) + 1;
        let step = AdamWStep {
            lr: lr as f32,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            // As Burn: decay = 1 − lr·wd computed in f64, then applied in the tensor's precision.
            decay: (1.0 - lr * self.weight_decay as f64) as f32,
            bias_correction_1: 1.0 - self.beta_1.powi(time as i32),
            bias_correction_2: 1.0 - self.beta_2.powi(time as i32),
            first: state.is_none(),
        };
        let moments = state.map(|s| (s.momentum.moment_1, s.momentum.moment_2));
        match dft_kernels::adamw_step(tensor, grad, moments, step) {
            Ok((param, moment_1, moment_2)) => {
                let momentum = AdaptiveMomentumState { time, moment_1, moment_2, max_moment_2: None };
                (param, Some(AdamWState { momentum }))
            }
            Err((tensor, grad, moments)) => {
                let state = moments.map(|(moment_1, moment_2)| AdamWState {
                    momentum: AdaptiveMomentumState { time: time - 1, moment_1, moment_2, max_moment_2: None },
                });
                self.fallback.step(lr, tensor, grad, state)
            }
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device<B>) -> Self::State<D> {
        <AdamW as SimpleOptimizer<B>>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::TensorData;

    type B = Flex;

    fn data(n: usize, seed: u32) -> Tensor<B, 2> {
        let v: Vec<f32> =
            (0..n).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0).collect();
        Tensor::from_data(TensorData::new(v, [n / 50, 50]), &Default::default())
    }

    #[test]
    fn fused_adamw_matches_burns_adamw_over_several_steps() {
        assert!(dft_kernels::fast_path::<B>(), "the test must exercise the fused kernel");
        for wd in [0.0f32, 0.1] {
            let ours = FusedAdamW::new(0.9, 0.95, 1e-8, wd);
            let burn =
                AdamWConfig::new().with_beta_1(0.9).with_beta_2(0.95).with_epsilon(1e-8).with_weight_decay(wd).build();
            let (mut p0, mut p1) = (data(5000, 1), data(5000, 1));
            let (mut s0, mut s1) = (None, None);
            for step in 0..4u32 {
                let g = data(5000, 7 + step) * 0.3;
                let lr = 1e-2 * (step + 1) as f64;
                (p0, s0) = SimpleOptimizer::<B>::step(&burn, lr, p0, g.clone(), s0);
                (p1, s1) = ours.step(lr, p1, g, s1);
            }
            let (a, b) = (p0.into_data().to_vec::<f32>().unwrap(), p1.into_data().to_vec::<f32>().unwrap());
            let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-6, "wd {wd}: params differ by {worst}");
            let (m0, m1) = (s0.unwrap().momentum, s1.unwrap().momentum);
            assert_eq!(m0.time, m1.time);
            let diff = (m0.moment_2 - m1.moment_2).abs().max().into_scalar();
            assert!(diff < 1e-7, "second moments differ by {diff}");
        }
    }

    #[test]
    fn falls_back_to_burns_adamw_off_flex() {
        // Autodiff<Flex> is not the plain backend an optimiser runs on: the fallback path must give
        // the same result as Burn's AdamW.
        type A = Autodiff<Flex>;
        let ours = FusedAdamW::new(0.9, 0.999, 1e-8, 0.01);
        let burn = AdamWConfig::new().with_weight_decay(0.01).with_epsilon(1e-8).build();
        let p = Tensor::<A, 1>::from_floats([0.5, -1.0, 2.0], &Default::default());
        let g = Tensor::<A, 1>::from_floats([0.1, 0.2, -0.3], &Default::default());
        let (a, sa) = SimpleOptimizer::<A>::step(&burn, 0.1, p.clone(), g.clone(), None);
        let (b, sb) = ours.step(0.1, p, g.clone(), None);
        assert_eq!(a.clone().into_data().to_vec::<f32>().unwrap(), b.clone().into_data().to_vec::<f32>().unwrap());
        let (a, _) = SimpleOptimizer::<A>::step(&burn, 0.1, a, g.clone(), sa);
        let (b, _) = ours.step(0.1, b, g, sb);
        assert_eq!(a.into_data().to_vec::<f32>().unwrap(), b.into_data().to_vec::<f32>().unwrap());
    }
}
