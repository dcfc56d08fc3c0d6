//! Process-wide allocator settings for training on CPU.
//!
//! A training step allocates and frees gigabytes of short-lived tensors (activations, gradients, the
//! optimizer's temporaries). With glibc's defaults every allocation above the dynamic mmap threshold
//! (at most 32 MiB) is a fresh `mmap`, and freed heap tops are trimmed back to the kernel, so the next
//! step faults the same memory in again page by page, and the kernel zeroes each page. On SmolLM2-135M
//! (batch 4×216, `cargo bench --bench step`) that is ≈555,000 page faults per step and 15–35% of the
//! CPU samples in the kernel zeroing pages (`perf record`); with the settings below ≈9,000 (see
//! docs/PERFORMANCE.md). PyTorch keeps freed CPU memory in its own allocator for the same reason.
//!
//! The cost: memory freed after the peak stays with the process until it exits, and the peak RSS
//! grows somewhat (the quickstart: 3.11 → 3.85 GB, for 38% less wall time). Set `DFT_MALLOC_DEFAULT=1`
//! to keep glibc's defaults.

/// Keep freed memory in the process instead of returning it to the kernel after every step (glibc:
/// no `mmap` for large blocks, heap trimmed only above 2 GiB free). Call once, early in `main`, before
/// the first large allocation. A no-op on targets without glibc, or when `DFT_MALLOC_DEFAULT` is set
/// (and not `0`). Returns whether the setting applied.
pub fn retain_freed_memory() -> bool {
    if std::env::var_os("DFT_MALLOC_DEFAULT").is_some_and(|v| v != "0") {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters (glibc takes the arena lock, so it is
        // thread-safe); both parameters accept these values.
        unsafe { libc::mallopt(libc::M_MMAP_MAX, 0) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn large_blocks_are_reused_after_the_setting() {
        // Only the effect that matters is checked: after the call, large allocations still work and
        // their memory is writable and readable (the allocator falls back to the heap, not mmap).
        let applied = super::retain_freed_memory();
        if cfg!(all(target_os = "linux", target_env = "gnu")) && std::env::var_os("DFT_MALLOC_DEFAULT").is_none() {
            assert!(applied, "mallopt refused the settings");
        }
        for round in 0..3u8 {
            let mut v = vec![round; 64 << 20];
            v[(64 << 20) - 1] = round.wrapping_add(1);
            assert_eq!(v[0], round);
            assert_eq!(v[(64 << 20) - 1], round.wrapping_add(1));
        }
    }
}
