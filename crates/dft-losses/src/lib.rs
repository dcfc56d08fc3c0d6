//! dft-losses
