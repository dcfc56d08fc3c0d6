//! Shared helpers for the model tests: the test backend, fixture paths and reading reference tensors.
#![allow(dead_code)]
use burn::tensor::Tensor;
use std::path::PathBuf;

pub type B = burn::backend::Flex;
pub type AB = burn::backend::Autodiff<B>;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use dft_test_support::models::{gemma3_gguf, smollm2_gguf};
#[allow(unused_imports)]
pub use dft_test_support::refs::{max_abs_diff, read_refs, Ref};

pub fn to_vec<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}
