//! The compute backend, chosen at build time by the root package's cargo features — the one place the
//! binary, the examples and the benches take it from (candle's `candle_examples::device()` pattern).
//!
//! | feature | [`Inner`] | [`InnerBf16`] |
//! |---|---|---|
//! | `cuda` | `Cuda` (f32) | `Cuda<bf16>` |
//! | `ndarray` (`openblas`) | `NdArray` | `NdArray` (runtime bf16 default dtype where supported) |
//! | none / `flex` (default) | `Flex` | `Flex` (bf16 as the device's default float type) |
//!
//! `cuda` wins over `ndarray`, which wins over the default.

#[cfg(feature = "cuda")]
pub type Inner = burn::backend::Cuda;
#[cfg(all(feature = "ndarray", not(feature = "cuda")))]
pub type Inner = burn::backend::NdArray;
#[cfg(not(any(feature = "cuda", feature = "ndarray")))]
pub type Inner = burn::backend::Flex;

/// The backend with bf16 weights and activations: a separate type on CUDA; on the CPU backends the same
/// type, with bf16 made the device's default float type at run time.
#[cfg(feature = "cuda")]
pub type InnerBf16 = burn::backend::Cuda<burn::tensor::bf16>;
#[cfg(not(feature = "cuda"))]
pub type InnerBf16 = Inner;

/// The training backend (autodiff over [`Inner`]).
pub type Train = burn::backend::Autodiff<Inner>;

/// [`Train`] with Burn's balanced gradient checkpointing (`train.gradient_checkpointing = true`:
/// memory-bound ops are recomputed in the backward pass).
pub type TrainCheckpointed =
    burn::backend::Autodiff<Inner, burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing>;

/// The backend's name as results record it: `cuda`, `ndarray-openblas`, `ndarray` or `flex`.
pub fn name() -> &'static str {
    if cfg!(feature = "cuda") {
        "cuda"
    } else if cfg!(feature = "openblas") {
        "ndarray-openblas"
    } else if cfg!(feature = "ndarray") {
        "ndarray"
    } else {
        "flex"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn name_follows_the_features() {
        let n = super::name();
        assert!(["cuda", "ndarray-openblas", "ndarray", "flex"].contains(&n));
        assert_eq!(n == "flex", !cfg!(any(feature = "cuda", feature = "ndarray")));
    }
}
