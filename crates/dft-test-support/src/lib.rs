//! Dev-only helpers shared by the tests, benches and examples of dft-rs (`publish = false`): one copy of
//! the code they used to paste into each other.
//!
//! * [`models`]: where the real models are, and the rule every real-model test follows when one is absent;
//! * [`refs`]: the oracle fixture reader (reference tensors written by `tools/oracle/*.py` as safetensors)
//!   and tensor comparisons;
//! * [`rng`]: the seeded SplitMix64 generator tests and benches draw synthetic data from;
//! * [`scratch`]: [`scratch::ScratchDir`], a temporary directory removed when the test that made it passes
//!   and kept when it panics;
//! * [`sys`]: `/proc` readings (peak RSS, load average, CPU time, page faults) and `median`;
//! * [`step`]: one DFT optimiser step exactly as `dft train` runs it, the batch file format shared with the
//!   PyTorch reference, synthetic batches and the FLOP model (the step bench and `examples/gpu_check.rs`).

#![forbid(unsafe_code)]
pub mod models;
pub mod refs;
pub mod rng;
pub mod scratch;
pub mod step;
pub mod sys;
