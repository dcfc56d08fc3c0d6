//! Where weights come from. A [`TensorSource`] hands out tensors by their **Hugging Face name and
//! layout** (e.g. `model.layers.0.self_attn.q_proj.weight`, shape `[out, in]`), already converted to f32.
//! Safetensors checkpoints and GGUF files both implement it, so the model builder has one path.

/// A host tensor in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }
}

pub trait TensorSource {
    /// All tensor names this source holds (HF names).
    fn names(&self) -> Vec<String>;
    /// Shape of a tensor without loading it, `None` if absent.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// Load one tensor as f32, HF layout.
    fn load(&self, name: &str) -> crate::Result<HostTensor>;
    /// File name to use in error messages.
    fn origin(&self) -> std::path::PathBuf;
}
