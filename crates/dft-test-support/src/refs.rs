//! Reference tensors written by the oracle scripts (`tools/oracle/*.py`, safetensors of f32 / i64), and
//! the comparisons the parity checks make.
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

/// A reference tensor: shape and values as f64 (f32 and i64 tensors).
#[derive(Debug, Clone)]
pub struct Ref {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Ref {
    /// The values as token ids.
    pub fn ids(&self) -> Vec<i64> {
        self.data.iter().map(|&x| x as i64).collect()
    }

    /// The ids as a `[batch, seq]` tensor (a 1-D reference becomes one row).
    pub fn int_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2, Int> {
        let shape = if self.shape.len() == 1 { vec![1, self.shape[0]] } else { self.shape.clone() };
        Tensor::from_data(TensorData::new(self.ids(), shape), device)
    }
}

/// Every tensor of a safetensors fixture, by name. Panics naming the file when it cannot be read (a
/// fixture is part of the test).
pub fn read_refs(path: &Path) -> HashMap<String, Ref> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            let data: Vec<f64> = match v.dtype() {
                Dtype::F32 => {
                    v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect()
                }
                Dtype::I64 => v
                    .data()
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64)
                    .collect(),
                other => panic!("{}: tensor {name}: unsupported dtype {other:?}", path.display()),
            };
            (name, Ref { shape: v.shape().to_vec(), data })
        })
        .collect()
}

/// A float tensor's values as f32 (any backend, any float dtype).
pub fn to_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().expect("f32 data")
}

/// Max |a − b| over the positions where `valid(index)` holds.
pub fn max_abs_diff(a: &[f32], b: &[f64], valid: impl Fn(usize) -> bool) -> f64 {
    diffs(a, b, valid).0
}

/// (max |a − b|, ‖a − b‖₂ / ‖b‖₂) over the positions where `valid(index)` holds.
pub fn diffs(a: &[f32], b: &[f64], valid: impl Fn(usize) -> bool) -> (f64, f64) {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let (mut max, mut num, mut den) = (0f64, 0f64, 0f64);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if valid(i) {
            let d = *x as f64 - y;
            max = max.max(d.abs());
            num += d * d;
            den += y * y;
        }
    }
    (max, (num / den.max(1e-30)).sqrt())
}
