//! Shared helpers for the model tests: the test backend, fixture paths and reading reference tensors.
#![allow(dead_code)]
use burn::tensor::{Int, Tensor, TensorData};
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::PathBuf;

pub type B = burn::backend::Flex;
pub type AB = burn::backend::Autodiff<B>;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A reference tensor: shape and values as f64 (f32 and i64 tensors).
#[derive(Debug, Clone)]
pub struct Ref {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Ref {
    pub fn ids(&self) -> Vec<i64> {
        self.data.iter().map(|&x| x as i64).collect()
    }
    pub fn int_tensor(&self, device: &burn::backend::flex::FlexDevice) -> Tensor<B, 2, Int> {
        let ids = self.ids();
        let shape = if self.shape.len() == 1 { vec![1, self.shape[0]] } else { self.shape.clone() };
        Tensor::from_data(TensorData::new(ids, shape), device)
    }
}

pub fn read_refs(path: &std::path::Path) -> HashMap<String, Ref> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            let data: Vec<f64> = match v.dtype() {
                Dtype::F32 => {
                    v.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect()
                }
                Dtype::I64 => {
                    v.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect()
                }
                other => panic!("unsupported dtype {other:?}"),
            };
            (name, Ref { shape: v.shape().to_vec(), data })
        })
        .collect()
}

pub fn to_vec<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// Max |a - b| over the positions where `valid(index)` holds.
pub fn max_abs_diff(a: &[f32], b: &[f64], valid: impl Fn(usize) -> bool) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).enumerate().filter(|(i, _)| valid(*i)).map(|(_, (x, y))| (*x as f64 - y).abs()).fold(0.0, f64::max)
}

/// See `dft_models::embedded::smollm2_gguf_for_tests`.
pub fn smollm2_gguf() -> Option<PathBuf> {
    dft_models::embedded::smollm2_gguf_for_tests()
}

/// See `dft_models::embedded::gemma3_gguf_for_tests`.
pub fn gemma3_gguf() -> Option<PathBuf> {
    dft_models::embedded::gemma3_gguf_for_tests()
}
