//! The root package as a library: what the `dft` binary, the examples and the benches share.
//!
//! * [`backend`]: the Burn backend chosen by cargo features (`flex` by default, `ndarray`, `cuda`),
//!   defined once.
#![forbid(unsafe_code)]

pub mod backend;
