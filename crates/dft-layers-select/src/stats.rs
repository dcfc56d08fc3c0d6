//! Mean and 95% confidence interval of a sample (Student t, accumulated in f64).
use serde::{Deserialize, Serialize};

/// Mean of a sample with the half-width of its two-sided 95% confidence interval,
/// `t_{0.975, n−1} · sd / √n` (sd with Bessel's correction). `ci95` is 0 when `n < 2` (undefined).
///
/// Note: when the sample is the tokens of a few sentences, tokens of one sentence are correlated, so
/// the interval is narrower than a sentence-level bootstrap would give; it still tells how many tokens
/// back the mean and whether two curves are separated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanCi {
    pub mean: f64,
    pub ci95: f64,
    pub sd: f64,
    pub n: usize,
}

impl MeanCi {
    /// Statistics of `xs` (NaN mean for an empty sample).
    pub fn of(xs: impl IntoIterator<Item = f64>) -> Self {
        let (mut n, mut sum, mut sum2) = (0usize, 0.0f64, 0.0f64);
        let xs: Vec<f64> = xs.into_iter().collect();
        for &x in &xs {
            n += 1;
            sum += x;
        }
        if n == 0 {
            return Self { mean: f64::NAN, ci95: 0.0, sd: 0.0, n };
        }
        let mean = sum / n as f64;
        for &x in &xs {
            sum2 += (x - mean) * (x - mean);
        }
        if n < 2 {
            return Self { mean, ci95: 0.0, sd: 0.0, n };
        }
        let sd = (sum2 / (n - 1) as f64).sqrt();
        Self { mean, ci95: t975(n - 1) * sd / (n as f64).sqrt(), sd, n }
    }

    pub fn lo(&self) -> f64 {
        self.mean - self.ci95
    }

    pub fn hi(&self) -> f64 {
        self.mean + self.ci95
    }

    /// The same statistics in another unit (e.g. nats → bits: `scaled(1 / ln 2)`).
    pub fn scaled(&self, f: f64) -> Self {
        Self { mean: self.mean * f, ci95: self.ci95 * f, sd: self.sd * f, n: self.n }
    }
}

/// 0.975 quantile of Student's t with `df` degrees of freedom: exact table for df ≤ 4, then the
/// Cornish–Fisher expansion around the normal quantile (error < 1e-3 for df ≥ 5).
pub fn t975(df: usize) -> f64 {
    const SMALL: [f64; 4] = [12.706_204_736, 4.302_652_730, 3.182_446_305, 2.776_445_105];
    if df == 0 {
        return f64::INFINITY;
    }
    if df <= SMALL.len() {
        return SMALL[df - 1];
    }
    let z = 1.959_963_984_540_054_f64;
    let v = df as f64;
    let (z3, z5, z7, z9) = (z.powi(3), z.powi(5), z.powi(7), z.powi(9));
    z + (z3 + z) / (4.0 * v)
        + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * v.powi(2))
        + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * v.powi(3))
        + (79.0 * z9 + 776.0 * z7 + 1482.0 * z5 - 1920.0 * z3 - 945.0 * z) / (92160.0 * v.powi(4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_tables() {
        // scipy.stats.t.ppf(0.975, df)
        for (df, want) in [(1, 12.7062), (4, 2.7764), (5, 2.5706), (10, 2.2281), (30, 2.0423), (99, 1.9842)] {
            assert!((t975(df) - want).abs() < 1e-3, "df {df}: {} vs {want}", t975(df));
        }
        assert!((t975(100_000) - 1.95996).abs() < 1e-4);
    }

    #[test]
    fn mean_and_interval() {
        let s = MeanCi::of([1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.n, 4);
        assert!((s.mean - 2.5).abs() < 1e-12);
        let sd = (5.0f64 / 3.0).sqrt();
        assert!((s.sd - sd).abs() < 1e-12);
        assert!((s.ci95 - 3.182_446_305 * sd / 2.0).abs() < 1e-9);
        assert_eq!(MeanCi::of([7.0]).ci95, 0.0);
        assert!(MeanCi::of(std::iter::empty()).mean.is_nan());
        let b = s.scaled(2.0);
        assert!((b.hi() - 2.0 * s.hi()).abs() < 1e-12);
    }
}
