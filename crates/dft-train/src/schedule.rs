//! Learning-rate schedule: linear warm-up then cosine decay to 0 (HF `get_cosine_schedule_with_warmup`).

/// Learning rate at optimiser step `step` (0-based) of `total` steps with `warmup` warm-up steps.
pub fn cosine_with_warmup(base_lr: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return base_lr * step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    base_lr * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

/// Warm-up steps for a ratio, rounded up as HF's `get_warmup_steps` does.
pub fn warmup_steps(ratio: f64, total: usize) -> usize {
    (ratio * total as f64).ceil() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hf_shape() {
        assert_eq!(cosine_with_warmup(1.0, 0, 10, 100), 0.0);
        assert!((cosine_with_warmup(1.0, 5, 10, 100) - 0.5).abs() < 1e-12);
        assert!((cosine_with_warmup(1.0, 10, 10, 100) - 1.0).abs() < 1e-12);
        assert!((cosine_with_warmup(1.0, 55, 10, 100) - 0.5).abs() < 1e-12);
        assert!(cosine_with_warmup(1.0, 100, 10, 100).abs() < 1e-12);
        assert_eq!(warmup_steps(0.03, 100), 3);
        assert_eq!(warmup_steps(0.03, 10), 1);
    }
}
