//! Typed errors of the objective: bad layer indices, inconsistent batches, bad weights.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LossError {
    #[error("{which} layer {layer} is out of range: layers are numbered 1..={num_layers} (block k = output of decoder block k)")]
    LayerOutOfRange { which: &'static str, layer: usize, num_layers: usize },
    #[error("{what}: {msg}")]
    BadBatch { what: &'static str, msg: String },
    #[error("weight `{name}` must be finite and >= 0, got {value}")]
    BadWeight { name: &'static str, value: f64 },
    #[error("row {row} of {what}: the pooling span is empty (no query-content tokens)")]
    EmptyPoolSpan { what: &'static str, row: usize },
    #[error("{0} is required by this configuration but the batch does not have it")]
    MissingSequences(&'static str),
}

pub type Result<T> = std::result::Result<T, LossError>;
