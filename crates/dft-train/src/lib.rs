//! dft-train
