//! SplitMix64 (Steele, Lea & Flood 2014): the seeded generator tests and benches draw synthetic data from,
//! fixed here so that fixtures never depend on a crate version.

/// SplitMix64 state; the same seed always gives the same stream.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
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

    /// Uniform in `mean - spread ..= mean + spread`.
    pub fn around(&mut self, mean: usize, spread: usize) -> usize {
        mean - spread + (self.next_u64() % (2 * spread as u64 + 1)) as usize
    }

    /// `n` token ids in `3..vocab` (0..3 are left to special tokens).
    pub fn ids(&mut self, n: usize, vocab: usize) -> Vec<u32> {
        (0..n).map(|_| 3 + (self.next_u64() % (vocab as u64 - 3)) as u32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published SplitMix64 test vector (seed 1234567, as in Vigna's reference `splitmix64.c`).
    #[test]
    fn matches_the_reference_stream() {
        let mut r = SplitMix(1234567);
        let want = [6457827717110365317u64, 3203168211198807973, 9817491932198370423, 4593380528125082431];
        for w in want {
            assert_eq!(r.next_u64(), w);
        }
        let u = SplitMix(7).uniform();
        assert!(u > 0.0 && u < 1.0);
    }
}
