//! dft-data
