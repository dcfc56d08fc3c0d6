//! dft-layers-select
