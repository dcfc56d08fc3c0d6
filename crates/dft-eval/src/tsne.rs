//! Exact t-SNE (van der Maaten & Hinton 2008) for a few hundred points, written out so that it is
//! deterministic and dependency-free:
//!
//! 1. squared Euclidean distances between the inputs;
//! 2. per point a Gaussian whose precision β_i is found by binary search so that the conditional
//!    distribution P(j|i) has the requested perplexity (entropy `ln(perplexity)` within 1e-5 nats);
//! 3. symmetric joint P = (P(j|i) + P(i|j)) / 2N, floored at 1e-12;
//! 4. 2-D points from a seeded N(0, (10⁻⁴)²) start (sklearn's `init="random"`), Student-t (one degree of freedom) similarities Q,
//!    gradient `4 Σ_j (p_ij − q_ij)(y_i − y_j) / (1 + |y_i − y_j|²)`, descent with early
//!    exaggeration (×12 for the first 250 iterations), momentum 0.5 then 0.8, per-coordinate gains
//!    (+0.2 / ×0.8, floor 0.01) and the learning rate `max(N / exaggeration / 4, 50)` (sklearn's
//!    `learning_rate="auto"`); the points are re-centred after each step.
//!
//! Everything is f64 and sequential, so a seed gives bit-identical output. Cost is O(N²) per
//! iteration: 400 points × 1000 iterations take about a second.
use serde::{Deserialize, Serialize};

/// t-SNE settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TsneOptions {
    /// Effective number of neighbours; clamped to `(N − 1) / 3` for small inputs.
    pub perplexity: f64,
    pub iterations: usize,
    pub early_exaggeration: f64,
    /// Iterations with exaggerated P and momentum 0.5.
    pub exaggeration_iterations: usize,
    /// `None`: sklearn's "auto", `max(N / early_exaggeration / 4, 50)`.
    pub learning_rate: Option<f64>,
    pub seed: u64,
}

impl Default for TsneOptions {
    fn default() -> Self {
        TsneOptions {
            perplexity: 30.0,
            iterations: 1000,
            early_exaggeration: 12.0,
            exaggeration_iterations: 250,
            learning_rate: None,
            seed: 0,
        }
    }
}

/// A 2-D embedding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TsneResult {
    /// One `[x, y]` per input point, in input order.
    pub points: Vec<[f64; 2]>,
    /// KL(P ‖ Q) at the end (without exaggeration).
    pub kl: f64,
    /// The perplexity used (after clamping).
    pub perplexity: f64,
}

/// SplitMix64: a small, well-mixed, seedable generator (fixed here so results never depend on a
/// crate version).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Squared Euclidean distances, `[n * n]`.
pub fn squared_distances(x: &[Vec<f64>]) -> Vec<f64> {
    let n = x.len();
    let mut d = vec![0.0; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let s: f64 = x[i].iter().zip(&x[j]).map(|(a, b)| (a - b) * (a - b)).sum();
            d[i * n + j] = s;
            d[j * n + i] = s;
        }
    }
    d
}

/// Row `i` of the conditional P(j|i) for precision `beta`, and its entropy (nats).
fn conditional_row(d: &[f64], i: usize, beta: f64, row: &mut [f64]) -> f64 {
    let n = row.len();
    // Shift by the smallest distance for stability (cancels in the normalisation).
    let dmin = (0..n).filter(|&j| j != i).map(|j| d[j]).fold(f64::INFINITY, f64::min);
    let mut sum = 0.0;
    for j in 0..n {
        row[j] = if j == i { 0.0 } else { (-(d[j] - dmin) * beta).exp() };
        sum += row[j];
    }
    let mut h = 0.0;
    for (j, r) in row.iter_mut().enumerate() {
        if j != i {
            *r /= sum;
            if *r > 0.0 {
                h -= *r * r.ln();
            }
        }
    }
    h
}

/// Conditional probabilities P(j|i) (`[n * n]`, rows sum to 1) with perplexity `perplexity`, by
/// binary search on each row's precision; returns them with the entropy reached per row.
pub fn conditional_probabilities(d: &[f64], n: usize, perplexity: f64) -> (Vec<f64>, Vec<f64>) {
    let target = perplexity.ln();
    let mut p = vec![0.0; n * n];
    let mut entropies = vec![0.0; n];
    for i in 0..n {
        let drow = &d[i * n..(i + 1) * n];
        let (mut beta, mut lo, mut hi) = (1.0, 0.0, f64::INFINITY);
        // Scale the starting precision to the distances (β·median(d) ≈ 1).
        let mut sorted: Vec<f64> = (0..n).filter(|&j| j != i).map(|j| drow[j]).collect();
        sorted.sort_by(f64::total_cmp);
        if let Some(&m) = sorted.get(sorted.len() / 2) {
            if m > 0.0 {
                beta = 1.0 / m;
            }
        }
        let row = &mut p[i * n..(i + 1) * n];
        let mut h = conditional_row(drow, i, beta, row);
        for _ in 0..200 {
            let diff = h - target;
            if diff.abs() < 1e-5 {
                break;
            }
            if diff > 0.0 {
                // Entropy too high: sharpen.
                lo = beta;
                beta = if hi.is_finite() { (beta + hi) / 2.0 } else { beta * 2.0 };
            } else {
                hi = beta;
                beta = (beta + lo) / 2.0;
            }
            h = conditional_row(drow, i, beta, row);
        }
        entropies[i] = h;
    }
    (p, entropies)
}

/// Embeds `x` (N points of equal dimension) in 2-D. `N < 4` gives the points on a line (t-SNE needs
/// neighbours); non-finite inputs are an error.
pub fn tsne(x: &[Vec<f64>], opts: &TsneOptions) -> Result<TsneResult, String> {
    let n = x.len();
    if let Some(bad) = x.iter().position(|v| v.len() != x[0].len() || v.iter().any(|a| !a.is_finite())) {
        return Err(format!("t-SNE input point {bad} has a different dimension or a non-finite value"));
    }
    if n < 4 {
        return Ok(TsneResult { points: (0..n).map(|i| [i as f64, 0.0]).collect(), kl: 0.0, perplexity: 0.0 });
    }
    let perplexity = opts.perplexity.min((n - 1) as f64 / 3.0).max(1.0);
    let d = squared_distances(x);
    let (cond, _) = conditional_probabilities(&d, n, perplexity);
    let mut p = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            if i != j {
                p[i * n + j] = ((cond[i * n + j] + cond[j * n + i]) / (2.0 * n as f64)).max(1e-12);
            }
        }
    }
    let lr = opts.learning_rate.unwrap_or_else(|| (n as f64 / opts.early_exaggeration / 4.0).max(50.0));
    let mut rng = SplitMix64::new(opts.seed);
    let mut y: Vec<[f64; 2]> = (0..n).map(|_| [1e-4 * rng.normal(), 1e-4 * rng.normal()]).collect();
    let mut update = vec![[0.0f64; 2]; n];
    let mut gains = vec![[1.0f64; 2]; n];
    let mut num = vec![0.0; n * n];
    let mut grad = vec![[0.0f64; 2]; n];
    for it in 0..opts.iterations {
        let (exag, momentum) =
            if it < opts.exaggeration_iterations { (opts.early_exaggeration, 0.5) } else { (1.0, 0.8) };
        // Student-t kernel and its sum.
        let mut zsum = 0.0;
        for i in 0..n {
            for j in i + 1..n {
                let (dx, dy) = (y[i][0] - y[j][0], y[i][1] - y[j][1]);
                let q = 1.0 / (1.0 + dx * dx + dy * dy);
                num[i * n + j] = q;
                num[j * n + i] = q;
                zsum += 2.0 * q;
            }
        }
        for i in 0..n {
            let mut g = [0.0, 0.0];
            for j in 0..n {
                if i == j {
                    continue;
                }
                let w = num[i * n + j];
                let m = (exag * p[i * n + j] - w / zsum) * w;
                g[0] += m * (y[i][0] - y[j][0]);
                g[1] += m * (y[i][1] - y[j][1]);
            }
            grad[i] = [4.0 * g[0], 4.0 * g[1]];
        }
        for i in 0..n {
            for c in 0..2 {
                // sklearn `_gradient_descent`: grow the gain where the step changes direction.
                let flipped = update[i][c] * grad[i][c] < 0.0;
                gains[i][c] = if flipped { gains[i][c] + 0.2 } else { (gains[i][c] * 0.8).max(0.01) };
                update[i][c] = momentum * update[i][c] - lr * gains[i][c] * grad[i][c];
                y[i][c] += update[i][c];
            }
        }
        let (mx, my) = (y.iter().map(|v| v[0]).sum::<f64>() / n as f64, y.iter().map(|v| v[1]).sum::<f64>() / n as f64);
        for v in &mut y {
            v[0] -= mx;
            v[1] -= my;
        }
    }
    let kl = kl_divergence(&p, &y);
    if y.iter().any(|v| !v[0].is_finite() || !v[1].is_finite()) || !kl.is_finite() {
        return Err("t-SNE diverged (non-finite coordinates); try a smaller learning rate".into());
    }
    Ok(TsneResult { points: y, kl, perplexity })
}

/// KL(P ‖ Q) of joint `p` (`[n * n]`) and the Student-t similarities of `y`.
pub fn kl_divergence(p: &[f64], y: &[[f64; 2]]) -> f64 {
    let n = y.len();
    let mut q = vec![0.0; n * n];
    let mut zsum = 0.0;
    for i in 0..n {
        for j in 0..n {
            if i != j {
                let (dx, dy) = (y[i][0] - y[j][0], y[i][1] - y[j][1]);
                q[i * n + j] = 1.0 / (1.0 + dx * dx + dy * dy);
                zsum += q[i * n + j];
            }
        }
    }
    let mut kl = 0.0;
    for i in 0..n {
        for j in 0..n {
            if i != j && p[i * n + j] > 0.0 {
                kl += p[i * n + j] * (p[i * n + j] / (q[i * n + j] / zsum).max(1e-300)).ln();
            }
        }
    }
    kl
}

/// Fraction of each point's `k` nearest neighbours (Euclidean, itself excluded) that share its
/// label, averaged over points: 1 = labels perfectly separated, ≈ the label frequency = mixed.
pub fn knn_purity<L: PartialEq>(points: &[Vec<f64>], labels: &[L], k: usize) -> f64 {
    let n = points.len();
    if n < 2 || k == 0 {
        return f64::NAN;
    }
    let d = squared_distances(points);
    let k = k.min(n - 1);
    let mut total = 0.0;
    for i in 0..n {
        let mut idx: Vec<usize> = (0..n).filter(|&j| j != i).collect();
        idx.sort_by(|&a, &b| d[i * n + a].total_cmp(&d[i * n + b]).then(a.cmp(&b)));
        total += idx[..k].iter().filter(|&&j| labels[j] == labels[i]).count() as f64 / k as f64;
    }
    total / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `c` Gaussian clusters of `m` points in `dim` dimensions, centres 10 apart, unit noise.
    fn clusters(c: usize, m: usize, dim: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<usize>) {
        let mut rng = SplitMix64::new(seed);
        let centres: Vec<Vec<f64>> = (0..c).map(|_| (0..dim).map(|_| 10.0 * rng.normal()).collect()).collect();
        let mut x = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..m {
            for (k, ctr) in centres.iter().enumerate() {
                x.push(ctr.iter().map(|v| v + rng.normal()).collect());
                labels.push(k);
            }
        }
        (x, labels)
    }

    #[test]
    fn perplexity_is_calibrated() {
        let (x, _) = clusters(3, 20, 8, 1);
        let d = squared_distances(&x);
        let (p, h) = conditional_probabilities(&d, x.len(), 10.0);
        for i in 0..x.len() {
            assert!((h[i] - 10f64.ln()).abs() < 1e-4, "row {i}: entropy {}", h[i]);
            let s: f64 = p[i * x.len()..(i + 1) * x.len()].iter().sum();
            assert!((s - 1.0).abs() < 1e-9);
        }
    }

    #[test]
    fn separated_clusters_stay_separated_and_seed_is_deterministic() {
        let (x, labels) = clusters(4, 30, 20, 7);
        let in_space = knn_purity(&x, &labels, 5);
        assert!(in_space > 0.99, "input purity {in_space}");
        let opts = TsneOptions { perplexity: 15.0, iterations: 500, seed: 3, ..Default::default() };
        let a = tsne(&x, &opts).unwrap();
        let b = tsne(&x, &opts).unwrap();
        assert_eq!(a, b, "same seed, same bits");
        assert!(a.points.iter().all(|p| p[0].is_finite() && p[1].is_finite()) && a.kl.is_finite());
        let y: Vec<Vec<f64>> = a.points.iter().map(|p| p.to_vec()).collect();
        let purity = knn_purity(&y, &labels, 5);
        assert!(purity > 0.98, "2-D kNN purity {purity}");
        // Clusters are far apart relative to their size: every point is closer to its own centroid.
        let centroid = |k: usize| {
            let pts: Vec<&[f64; 2]> = a.points.iter().zip(&labels).filter(|(_, &l)| l == k).map(|(p, _)| p).collect();
            [
                pts.iter().map(|p| p[0]).sum::<f64>() / pts.len() as f64,
                pts.iter().map(|p| p[1]).sum::<f64>() / pts.len() as f64,
            ]
        };
        let cs: Vec<[f64; 2]> = (0..4).map(centroid).collect();
        for (p, &l) in a.points.iter().zip(&labels) {
            let dist = |c: &[f64; 2]| (p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2);
            let nearest = (0..4).min_by(|&i, &j| dist(&cs[i]).total_cmp(&dist(&cs[j]))).unwrap();
            assert_eq!(nearest, l);
        }
        let c = tsne(&x, &TsneOptions { seed: 4, ..opts }).unwrap();
        assert_ne!(a.points, c.points, "another seed, another start");
        // Random labels are mixed.
        let shuffled: Vec<usize> = (0..labels.len()).map(|i| (i * 7 + i / 3) % 4).collect();
        assert!(knn_purity(&y, &shuffled, 5) < 0.6);
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(tsne(&[vec![1.0], vec![2.0]], &TsneOptions::default()).unwrap().points.len(), 2);
        assert!(tsne(&[vec![1.0], vec![f64::NAN], vec![0.0], vec![3.0]], &TsneOptions::default()).is_err());
        // Duplicated points (zero distances) must not produce NaN.
        let x = vec![vec![0.0, 0.0]; 10];
        let r = tsne(&x, &TsneOptions { iterations: 50, ..Default::default() }).unwrap();
        assert!(r.points.iter().all(|p| p[0].is_finite()) && r.kl.is_finite());
    }
}
