//! Where a step's time goes inside the kernels: wall time and work of the matrix products and of the
//! fused attention, counted only while switched on ([`set_enabled`]) — for profiling benches such as
//! `cargo bench --bench step -- --kernel-stats`. Off (the default), each kernel call pays one relaxed
//! atomic load.
//!
//! Times are the wall time of each call, summed over calls (calls run one at a time in a training step:
//! a product or an attention uses the whole thread pool itself).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Counters of one kind of kernel call.
struct Counter {
    nanos: AtomicU64,
    flops: AtomicU64,
    calls: AtomicU64,
}

impl Counter {
    const fn new() -> Self {
        Self { nanos: AtomicU64::new(0), flops: AtomicU64::new(0), calls: AtomicU64::new(0) }
    }

    fn take(&self) -> Totals {
        Totals {
            seconds: self.nanos.swap(0, Ordering::Relaxed) as f64 * 1e-9,
            flops: self.flops.swap(0, Ordering::Relaxed) as f64,
            calls: self.calls.swap(0, Ordering::Relaxed),
        }
    }
}

static PRODUCTS_F32: Counter = Counter::new();
static PRODUCTS_BF16: Counter = Counter::new();
static ATTENTION: Counter = Counter::new();

/// What a counter gathered since the last [`take`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    /// Wall time of the calls, summed.
    pub seconds: f64,
    /// Floating-point operations (a multiply-add counts two); 0 where not counted (attention).
    pub flops: f64,
    pub calls: u64,
}

impl Totals {
    /// GFLOP/s over the calls' wall time (NaN without calls).
    pub fn gflops(&self) -> f64 {
        self.flops * 1e-9 / self.seconds
    }
}

/// The counters since the last [`take`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KernelStats {
    /// Matrix products through [`crate::matmul`] in f32 (an own GEMM tile or the `gemm` crate: [`crate::gemm_kernel`]).
    pub products_f32: Totals,
    /// Matrix products on AMX tiles ([`crate::matmul_bf16`] and the bf16-mixed path).
    pub products_bf16: Totals,
    /// Fused attention ([`crate::causal_attention`]), forward and backward (its own products included).
    pub attention: Totals,
}

/// Switches counting on or off (process-wide).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether counting is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The counters gathered since the last call, which resets them.
pub fn take() -> KernelStats {
    KernelStats { products_f32: PRODUCTS_F32.take(), products_bf16: PRODUCTS_BF16.take(), attention: ATTENTION.take() }
}

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    ProductsF32,
    ProductsBf16,
    Attention,
}

/// Adds its wall time (and `flops`) to a counter when dropped; inert when counting is off.
pub(crate) struct Timer(Option<(Instant, Kind, u64)>);

impl Timer {
    pub(crate) fn start(kind: Kind, flops: u64) -> Self {
        Self(enabled().then(|| (Instant::now(), kind, flops)))
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // Only calls that began and ended while counting was on.
        if let Some((t, kind, flops)) = self.0.filter(|_| enabled()) {
            let c = match kind {
                Kind::ProductsF32 => &PRODUCTS_F32,
                Kind::ProductsBf16 => &PRODUCTS_BF16,
                Kind::Attention => &ATTENTION,
            };
            c.nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
            c.flops.fetch_add(flops, Ordering::Relaxed);
            c.calls.fetch_add(1, Ordering::Relaxed);
        }
    }
}
