//! Critical-layer detection on a per-block entropy curve (METHOD.md §4).
//!
//! The paper (Figure 2a) sees the lens entropy of target-language inputs fall twice: a first drop that
//! ends Language Conversion (→ `i`, the block where it ends) and, after a plateau of English Thinking, a
//! second drop (→ `j`, the block where it starts). [`critical_layers`] finds them as follows, on the
//! curve from block `start` (default 1: tied-embedding models have near-zero lens entropy at block 0):
//!
//! 1. **Smooth** with a running median of `smooth_window` blocks (3; ends replicated). A median removes
//!    one-block spikes and alternating noise but keeps the position and height of a real step, so the
//!    answer is not shifted by the smoothing.
//! 2. **Flat?** If the smoothed curve's range is below `min_range` nats there is no drop.
//! 3. **Steep steps**: step `k−1 → k` is steep when it falls by at least `steep_rel × level`, where the
//!    level is the value before the step but never less than the curve's median (so the tail of a curve
//!    heading to zero does not make small steps look steep). An evenly falling line has no steep step.
//! 4. **Drops**: maximal runs of steep steps, merged when fewer than `min_spacing` non-steep steps separate
//!    them. A drop `a → b` is significant when it removes at least `min_rel_drop` of its starting value
//!    (`s[a] − s[b] ≥ min_rel_drop · s[a]`) and at least `min_range` nats.
//! 5. `i` = end of the first significant drop; `j` = start of the next one that starts at least
//!    `min_spacing` blocks after `i` and at most at block `L − end_margin` (a drop into the last blocks is
//!    the output layer sharpening its prediction, not the end of English Thinking).
//!
//! **Fallback** when there are fewer than two such drops: the paper's positions for LLaMA-2-7B (`i = 2`,
//! `j = 15` of 32 blocks) scaled to `L` blocks, keeping a single detected drop as `i` (when it ends in the
//! first half) or as `j`. The result says so in `reasons`; users override with explicit layers.
use serde::{Deserialize, Serialize};

use crate::error::{LayersError, Result};

/// Parameters of [`critical_layers`]; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetectOptions {
    /// First block considered (1 skips the embeddings).
    pub start: usize,
    /// Running-median width in blocks (1 = no smoothing).
    pub smooth_window: usize,
    /// A step is steep when it falls by at least this fraction of the level.
    pub steep_rel: f64,
    /// A drop must remove at least this fraction of its starting value.
    pub min_rel_drop: f64,
    /// Minimum number of blocks between the end of the first drop and the start of the second (`j − i`).
    pub min_spacing: usize,
    /// The second drop must start at block `L − end_margin` or earlier.
    pub end_margin: usize,
    /// Curves whose range is below this (nats) are flat; drops must be at least this large.
    pub min_range: f64,
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self {
            start: 1,
            smooth_window: 3,
            steep_rel: 0.10,
            min_rel_drop: 0.15,
            min_spacing: 2,
            end_margin: 2,
            min_range: 0.05,
        }
    }
}

/// One significant decrease of the entropy curve, from block `start` to block `end`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EntropyDrop {
    pub start: usize,
    pub end: usize,
    /// Decrease of the smoothed curve over the drop, nats.
    pub size: f64,
    /// `size` as a fraction of the smoothed value at `start`.
    pub rel: f64,
}

/// The selected critical layers, with the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriticalLayers {
    /// End of the first drop: the Language Conversion block (LC supervises `h_i`).
    pub i: usize,
    /// Start of the second drop: the English Thinking block (ET supervises `h_j`).
    pub j: usize,
    /// Both layers come from detected drops (false: fallback for at least one).
    pub detected: bool,
    /// Every significant drop found, in block order.
    pub drops: Vec<EntropyDrop>,
    /// The smoothed curve (same indexing as the input; blocks before `start` copied unchanged).
    pub smoothed: Vec<f64>,
    /// Human-readable account of the decision.
    pub reasons: Vec<String>,
    pub options: DetectOptions,
}

/// Running median of width `w` (rounded up to odd), ends replicated.
pub fn smooth(xs: &[f64], w: usize) -> Vec<f64> {
    let h = w.max(1) / 2;
    let n = xs.len() as isize;
    (0..n)
        .map(|k| {
            let mut win: Vec<f64> = (k - h as isize..=k + h as isize).map(|q| xs[q.clamp(0, n - 1) as usize]).collect();
            win.sort_by(f64::total_cmp);
            win[win.len() / 2]
        })
        .collect()
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The paper's LLaMA-2-7B choice (i = 2, j = 15 of 32 blocks) scaled to `layers` blocks.
pub fn paper_default_layers(layers: usize, start: usize) -> (usize, usize) {
    let scale = |x: f64| (x * layers as f64 / 32.0).round() as usize;
    let i = scale(2.0).max(start.max(1));
    let j = scale(15.0).max(i + 1).min(layers);
    (i, j)
}

/// Detect `(i, j)` on `curve[k]` = mean lens entropy at block `k` (`k = 0..=L`). See the module docs.
pub fn critical_layers(curve: &[f64], opts: &DetectOptions) -> Result<CriticalLayers> {
    let start = opts.start;
    let need = 4;
    if curve.len() < start + need {
        return Err(LayersError::CurveTooShort { len: curve.len(), need, start });
    }
    let layers = curve.len() - 1;
    let mut smoothed = curve.to_vec();
    let region = smooth(&curve[start..], opts.smooth_window);
    smoothed[start..].copy_from_slice(&region);
    let (lo, hi) = region.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    let range = hi - lo;
    let floor = median(&region);
    let mut reasons = vec![format!(
        "blocks {start}..={layers}, running median over {} blocks: range {range:.3} nats, median {floor:.3}; a step is \
         steep when it falls by >= {:.0}% of max(value, median); a drop must remove >= {:.0}% of its starting value",
        opts.smooth_window.max(1),
        opts.steep_rel * 100.0,
        opts.min_rel_drop * 100.0
    )];

    let mut drops = Vec::new();
    if range.is_finite() && range >= opts.min_range {
        let steep = |k: usize| smoothed[k - 1] - smoothed[k] >= opts.steep_rel * smoothed[k - 1].max(floor);
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for k in start + 1..=layers {
            if !steep(k) {
                continue;
            }
            match runs.last_mut() {
                Some((_, b)) if k - *b <= opts.min_spacing.max(1) => *b = k,
                _ => runs.push((k - 1, k)),
            }
        }
        for (a, b) in runs {
            let size = smoothed[a] - smoothed[b];
            let rel = size / smoothed[a];
            if rel >= opts.min_rel_drop && size >= opts.min_range {
                drops.push(EntropyDrop { start: a, end: b, size, rel });
            } else {
                reasons.push(format!(
                    "ignored a small decrease {a} -> {b} ({size:.3} nats, {:.0}% of its starting value)",
                    rel * 100.0
                ));
            }
        }
    } else {
        reasons.push(format!("the curve is flat (range {range:.3} < {:.3} nats): no drop", opts.min_range));
    }
    for (n, d) in drops.iter().enumerate() {
        reasons.push(format!(
            "drop {}: blocks {} -> {}, {:.3} -> {:.3} nats after smoothing (-{:.0}%)",
            n + 1,
            d.start,
            d.end,
            smoothed[d.start],
            smoothed[d.end],
            d.rel * 100.0
        ));
    }

    let (paper_i, paper_j) = paper_default_layers(layers, start);
    let last_j = layers.saturating_sub(opts.end_margin);
    let first = drops.first().copied();
    let second = first
        .and_then(|f| drops.iter().skip(1).find(|d| d.start >= f.end + opts.min_spacing && d.start <= last_j).copied());
    if first.is_some() {
        for d in drops.iter().skip(1).filter(|d| d.start > last_j) {
            reasons.push(format!(
                "drop {} -> {} starts in the last {} blocks (after {last_j}): the output layer sharpening, not a j \
                 candidate",
                d.start, d.end, opts.end_margin
            ));
        }
    }
    let (i, j, detected) = match (first, second) {
        (Some(f), Some(s)) => {
            reasons.push(format!("i = {} (end of the first drop), j = {} (start of the second drop)", f.end, s.start));
            (f.end, s.start, true)
        }
        (Some(d), None) if d.end <= layers / 2 => {
            let j = paper_j.max(d.end + opts.min_spacing).min(last_j.max(d.end + 1));
            reasons.push(format!(
                "one drop, ending in the first half: i = {} (its end); no second drop, so j = {j} (fallback: the \
                 paper's 15/32 of the depth)",
                d.end
            ));
            (d.end, j, false)
        }
        (Some(d), None) if d.start <= last_j => {
            let i = paper_i.min(d.start.saturating_sub(opts.min_spacing)).max(start.max(1));
            reasons.push(format!(
                "one drop, in the second half: j = {} (its start); no first drop, so i = {i} (fallback: the paper's \
                 2/32 of the depth)",
                d.start
            ));
            (i, d.start, false)
        }
        _ => {
            reasons.push(format!(
                "no two significant drops (flat, evenly falling or rising curve): fallback to the paper's LLaMA-2-7B \
                 choice (2 and 15 of 32 blocks) scaled to {layers} blocks: i = {paper_i}, j = {paper_j}; override \
                 with explicit layers"
            ));
            (paper_i, paper_j, false)
        }
    };
    Ok(CriticalLayers { i, j, detected, drops, smoothed, reasons, options: *opts })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plateaus joined by linear ramps: value `levels[n]` up to block `edges[n]`.
    fn piecewise(layers: usize, knots: &[(usize, f64)]) -> Vec<f64> {
        (0..=layers)
            .map(|k| {
                let pos = knots.iter().position(|&(b, _)| b >= k).unwrap_or(knots.len() - 1);
                if pos == 0 || knots[pos].0 == k {
                    return knots[pos].1;
                }
                let (b0, v0) = knots[pos - 1];
                let (b1, v1) = knots[pos];
                v0 + (v1 - v0) * (k - b0) as f64 / (b1 - b0) as f64
            })
            .collect()
    }

    #[test]
    fn finds_two_known_drops() {
        // 32 blocks: 0 at block 0 (tied embeddings), 10 nats on 1..=1, falls to 6 by block 3, plateau
        // with slight noise to block 15, falls to 1 by block 20, flat after.
        let mut c = piecewise(32, &[(0, 0.0), (1, 10.0), (3, 6.0), (15, 5.8), (20, 1.0), (32, 0.9)]);
        for (k, x) in c.iter_mut().enumerate().skip(4).take(10) {
            *x += if k % 2 == 0 { 0.05 } else { -0.05 };
        }
        let r = critical_layers(&c, &DetectOptions::default()).unwrap();
        assert_eq!((r.i, r.j), (3, 15), "{:#?}", r.reasons);
        assert!(r.detected);
        assert_eq!(r.drops.len(), 2, "{:?}", r.drops);
    }

    #[test]
    fn sharp_single_block_drops_are_not_shifted_by_smoothing() {
        let c = piecewise(24, &[(0, 0.1), (1, 9.0), (4, 9.0), (5, 5.0), (12, 4.8), (13, 1.0), (24, 0.8)]);
        let r = critical_layers(&c, &DetectOptions::default()).unwrap();
        assert_eq!((r.i, r.j), (5, 12), "{:#?}", r.reasons);
    }

    #[test]
    fn flat_curve_falls_back() {
        let c = vec![3.0; 33];
        let r = critical_layers(&c, &DetectOptions::default()).unwrap();
        assert!(!r.detected);
        assert!(r.drops.is_empty());
        assert_eq!((r.i, r.j), (2, 15));
        assert!(r.reasons.iter().any(|s| s.contains("flat")), "{:?}", r.reasons);
    }

    #[test]
    fn evenly_falling_curve_has_no_drop() {
        let c: Vec<f64> = (0..=30).map(|k| 10.0 - 0.3 * k as f64).collect();
        let r = critical_layers(&c, &DetectOptions::default()).unwrap();
        assert!(r.drops.is_empty(), "{:?}", r.drops);
        assert!(!r.detected);
        assert_eq!((r.i, r.j), paper_default_layers(30, 1));
        assert!(r.reasons.iter().any(|s| s.contains("fallback")));
    }

    #[test]
    fn rising_curve_has_no_drop() {
        let c: Vec<f64> = (0..=30).map(|k| (k as f64).sqrt()).collect();
        let r = critical_layers(&c, &DetectOptions::default()).unwrap();
        assert!(r.drops.is_empty() && !r.detected);
    }

    #[test]
    fn one_early_drop_keeps_i_and_falls_back_for_j() {
        let c = piecewise(32, &[(0, 0.0), (1, 10.0), (2, 10.0), (4, 5.0), (32, 4.6)]);
        let r = critical_layers(&c, &DetectOptions::default()).unwrap();
        assert_eq!(r.drops.len(), 1);
        assert_eq!((r.i, r.j), (4, 15), "{:#?}", r.reasons);
        assert!(!r.detected);
    }

    #[test]
    fn one_late_drop_keeps_j() {
        let c = piecewise(32, &[(0, 0.0), (1, 8.0), (20, 7.8), (23, 2.0), (32, 1.9)]);
        let r = critical_layers(&c, &DetectOptions::default()).unwrap();
        assert_eq!(r.drops.len(), 1, "{:?}", r.drops);
        assert_eq!((r.i, r.j), (2, 20), "{:#?}", r.reasons);
    }

    #[test]
    fn small_wiggles_are_ignored_and_block_zero_is_skipped() {
        // Near-zero entropy at block 0 (tied embeddings) must not count as a rise or a drop.
        let mut c = piecewise(30, &[(0, 0.01), (1, 10.0), (3, 6.0), (16, 5.9), (19, 2.0), (30, 2.0)]);
        c[9] += 0.2; // a bump smaller than the relative threshold
        let r = critical_layers(&c, &DetectOptions::default()).unwrap();
        assert_eq!((r.i, r.j), (3, 16), "{:#?}", r.reasons);
    }

    #[test]
    fn gently_decaying_curve_has_no_drop() {
        let c: Vec<f64> = (0..=32).map(|k| 10.0 * 0.97f64.powi(k)).collect();
        let r = critical_layers(&c, &DetectOptions::default()).unwrap();
        assert!(r.drops.is_empty(), "{:?}", r.drops);
    }

    #[test]
    fn noisy_plateau_between_drops() {
        // Deterministic pseudo-noise of ±4% on the plateau must not create extra drops.
        let mut c = piecewise(32, &[(0, 0.05), (1, 9.0), (2, 6.0), (17, 5.6), (21, 2.0), (32, 1.8)]);
        for (k, x) in c.iter_mut().enumerate().take(17).skip(3) {
            *x *= 1.0 + 0.04 * (((k * 7919) % 11) as f64 / 5.0 - 1.0);
        }
        let r = critical_layers(&c, &DetectOptions::default()).unwrap();
        assert_eq!((r.i, r.j), (2, 17), "{:#?}", r.reasons);
        assert_eq!(r.drops.len(), 2, "{:?}", r.drops);
    }

    #[test]
    fn smollm2_like_curve_one_drop_then_rise() {
        // Near zero at block 0, a drop at 1 -> 2, a slow decline, a rise to the last blocks and a final step
        // down into the logits: i is detected, j falls back, the final step is not taken for j.
        let c = vec![
            0.06, 1.65, 1.24, 1.30, 1.37, 1.28, 1.24, 1.17, 1.11, 1.11, 1.09, 1.03, 1.00, 1.00, 0.96, 1.05, 0.91, 0.98,
            0.95, 1.05, 1.15, 1.30, 1.22, 1.17, 1.42, 1.69, 1.92, 1.91, 2.93, 4.26, 2.65,
        ];
        let r = critical_layers(&c, &DetectOptions::default()).unwrap();
        assert_eq!(r.i, 2, "{:#?}", r.reasons);
        assert_eq!(r.j, 14, "{:#?}", r.reasons);
        assert!(!r.detected);
    }

    #[test]
    fn drop_into_the_last_blocks_is_not_j() {
        let c = piecewise(30, &[(0, 0.0), (1, 9.0), (3, 5.0), (29, 4.8), (30, 1.0)]);
        let r = critical_layers(&c, &DetectOptions::default()).unwrap();
        assert_eq!(r.drops.len(), 2, "{:?}", r.drops);
        assert_eq!((r.i, r.j), (3, 14), "{:#?}", r.reasons);
        assert!(r.reasons.iter().any(|s| s.contains("output layer")));
    }

    #[test]
    fn too_short_curve_is_an_error() {
        assert!(matches!(
            critical_layers(&[1.0, 2.0, 3.0], &DetectOptions::default()),
            Err(LayersError::CurveTooShort { .. })
        ));
    }
}
