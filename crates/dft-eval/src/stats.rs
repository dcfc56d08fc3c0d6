//! Uncertainty of benchmark scores: standard errors and (paired) bootstrap confidence intervals.
//!
//! - [`mean_stderr`]: lm-evaluation-harness's `mean_stderr` — the sample standard deviation
//!   (`ddof = 1`) over `sqrt(n)`. For 0/1 accuracies this is the binomial standard error
//!   `sqrt(p (1 - p) / (n - 1))`, the `acc_stderr` lm-eval reports.
//! - [`bootstrap_stderr`]: the standard deviation (`ddof = 1`) of a statistic over bootstrap
//!   resamples of the items (for F1 / chrF++-style scores whose sampling distribution is not binomial).
//! - [`paired_bootstrap`]: the difference of two systems scored on the *same* items, `mean(a) - mean(b)`,
//!   with a percentile confidence interval from resampling item indices jointly (one resample draws
//!   the same items for both systems), its bootstrap standard error and a two-sided p-value.
//!   [`paired_bootstrap_multi`] does the same for the average over several tasks (each task resampled
//!   independently in every replicate; the statistic is the mean of the per-task differences).
//!
//! Resamples come from [`SplitMix64`] with Lemire's multiply-shift (`(x * n) >> 64`) for indices, so a
//! seed fixes every interval; `tools/oracle/stats_fixtures.py` replays the same index stream in NumPy
//! and checks the statistics (numpy.percentile, numpy.std, scipy.stats.sem / scipy.stats.bootstrap).
use serde::{Deserialize, Serialize};

use crate::tsne::SplitMix64;

/// Default number of bootstrap resamples.
pub const DEFAULT_RESAMPLES: usize = 2000;

/// lm-eval's `sample_stddev(arr) / sqrt(len(arr))`; `NaN` for fewer than two values.
pub fn mean_stderr(xs: &[f64]) -> f64 {
    let n = xs.len();
    if n < 2 {
        return f64::NAN;
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
    (var / n as f64).sqrt()
}

/// Sample standard deviation (`ddof = 1`); `NaN` for fewer than two values.
pub fn sample_sd(xs: &[f64]) -> f64 {
    mean_stderr(xs) * (xs.len() as f64).sqrt()
}

/// Mean of `xs` (`NaN` when empty).
pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// The next index in `0..n` (Lemire's multiply-shift on a SplitMix64 draw).
pub fn draw_index(rng: &mut SplitMix64, n: usize) -> usize {
    ((rng.next_u64() as u128 * n as u128) >> 64) as usize
}

/// NumPy's default (`linear`) percentile of `sorted` (ascending) at `q` in [0, 100].
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let h = (n - 1) as f64 * q / 100.0;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Standard deviation (`ddof = 1`) of `mean(resample)` over `resamples` bootstrap resamples of `xs`.
pub fn bootstrap_stderr(xs: &[f64], resamples: usize, seed: u64) -> f64 {
    let n = xs.len();
    if n == 0 || resamples < 2 {
        return f64::NAN;
    }
    let mut rng = SplitMix64::new(seed);
    let stats: Vec<f64> =
        (0..resamples).map(|_| (0..n).map(|_| xs[draw_index(&mut rng, n)]).sum::<f64>() / n as f64).collect();
    sample_sd(&stats)
}

/// A paired difference `mean(a) - mean(b)` with its bootstrap distribution summarised.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairedDiff {
    /// `mean(a) - mean(b)` on the full item set.
    pub diff: f64,
    /// 2.5th percentile of the bootstrap differences (`level` = 95).
    pub ci_low: f64,
    /// 97.5th percentile.
    pub ci_high: f64,
    /// Standard deviation (`ddof = 1`) of the bootstrap differences.
    pub stderr: f64,
    /// Two-sided bootstrap p-value: `2 * min(P*(d <= 0), P*(d >= 0))`, capped at 1.
    pub p_value: f64,
    /// Confidence level in percent.
    pub level: f64,
    pub resamples: usize,
    /// Items (per task, summed over tasks).
    pub n: usize,
}

impl PairedDiff {
    /// Whether the confidence interval excludes 0.
    pub fn significant(&self) -> bool {
        self.ci_low > 0.0 || self.ci_high < 0.0
    }
}

/// Checks that `a` and `b` pair up; returns the item count.
fn paired_len(a: &[f64], b: &[f64]) -> Option<usize> {
    (a.len() == b.len() && !a.is_empty()).then_some(a.len())
}

/// Paired bootstrap of `mean(a) - mean(b)` over items scored by both systems (`a[i]`, `b[i]` are the
/// same item). `None` when the lengths differ or there are no items.
pub fn paired_bootstrap(a: &[f64], b: &[f64], resamples: usize, level: f64, seed: u64) -> Option<PairedDiff> {
    paired_bootstrap_multi(&[(a, b)], resamples, level, seed)
}

/// Paired bootstrap of the average over tasks of `mean(a_t) - mean(b_t)`: every replicate resamples
/// each task's items independently (tasks in the given order, items from one stream).
pub fn paired_bootstrap_multi(
    tasks: &[(&[f64], &[f64])],
    resamples: usize,
    level: f64,
    seed: u64,
) -> Option<PairedDiff> {
    if tasks.is_empty() || resamples < 2 {
        return None;
    }
    let diffs: Vec<Vec<f64>> = tasks
        .iter()
        .map(|(a, b)| paired_len(a, b).map(|_| a.iter().zip(b.iter()).map(|(x, y)| x - y).collect()))
        .collect::<Option<_>>()?;
    let k = diffs.len() as f64;
    let diff = diffs.iter().map(|d| mean(d)).sum::<f64>() / k;
    let mut rng = SplitMix64::new(seed);
    let mut stats: Vec<f64> = (0..resamples)
        .map(|_| {
            diffs
                .iter()
                .map(|d| {
                    let n = d.len();
                    (0..n).map(|_| d[draw_index(&mut rng, n)]).sum::<f64>() / n as f64
                })
                .sum::<f64>()
                / k
        })
        .collect();
    let stderr = sample_sd(&stats);
    let le = stats.iter().filter(|&&s| s <= 0.0).count() as f64 / resamples as f64;
    let ge = stats.iter().filter(|&&s| s >= 0.0).count() as f64 / resamples as f64;
    stats.sort_by(f64::total_cmp);
    let tail = (100.0 - level) / 2.0;
    Some(PairedDiff {
        diff,
        ci_low: percentile_sorted(&stats, tail),
        ci_high: percentile_sorted(&stats, 100.0 - tail),
        stderr,
        p_value: (2.0 * le.min(ge)).min(1.0),
        level,
        resamples,
        n: diffs.iter().map(Vec::len).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_stderr_is_lm_evals() {
        // 3 of 4 right: p = 0.75, sqrt(p(1-p)/(n-1)) = sqrt(0.1875/3) = 0.25
        assert!((mean_stderr(&[1.0, 1.0, 0.0, 1.0]) - 0.25).abs() < 1e-15);
        assert!(mean_stderr(&[1.0]).is_nan());
    }

    #[test]
    fn better_on_every_item_is_significant_and_identical_is_not() {
        let b: Vec<f64> = (0..50).map(|i| (i % 2) as f64).collect();
        let a: Vec<f64> = b.iter().map(|x| x + 0.1).collect();
        let d = paired_bootstrap(&a, &b, 500, 95.0, 1).unwrap();
        assert!(d.significant() && d.ci_low > 0.0 && (d.diff - 0.1).abs() < 1e-12, "{d:?}");
        let same = paired_bootstrap(&b, &b, 500, 95.0, 1).unwrap();
        assert!(!same.significant() && same.diff == 0.0 && same.p_value == 1.0, "{same:?}");
        assert!(paired_bootstrap(&a, &b[1..], 500, 95.0, 1).is_none());
    }
}
