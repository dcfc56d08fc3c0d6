//! dft-eval
