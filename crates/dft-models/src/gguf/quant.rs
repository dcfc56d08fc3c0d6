//! ggml tensor types and their dequantisation to f32.
//!
//! A GGUF tensor is stored as a run of *blocks*: `block_size` values packed into `type_size` bytes
//! (for plain floats a block is one value). The block layouts below follow ggml's reference
//! `dequantize_row_*` functions (ggml-quants.c); arithmetic is done in f32 in the same order, so the
//! results are bitwise equal to ggml's and to gguf-py's `gguf.quants.dequantize`.
//!
//! Dequantisation runs in parallel (rayon) over chunks of blocks.
use half::{bf16, f16};
use rayon::prelude::*;

/// Values per super-block of the k-quants.
pub const QK_K: usize = 256;

/// A ggml tensor type, as stored in a GGUF tensor info (`ggml_type`). Names follow ggml.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
    NVFP4,
    Q1_0,
}

/// `(type, ggml id, values per block, bytes per block)`; sizes from ggml's `type_traits`.
const TABLE: &[(GgmlType, u32, usize, usize)] = &[
    (GgmlType::F32, 0, 1, 4),
    (GgmlType::F16, 1, 1, 2),
    (GgmlType::Q4_0, 2, 32, 2 + 16),
    (GgmlType::Q4_1, 3, 32, 2 + 2 + 16),
    (GgmlType::Q5_0, 6, 32, 2 + 4 + 16),
    (GgmlType::Q5_1, 7, 32, 2 + 2 + 4 + 16),
    (GgmlType::Q8_0, 8, 32, 2 + 32),
    (GgmlType::Q8_1, 9, 32, 4 + 4 + 32),
    (GgmlType::Q2_K, 10, QK_K, 2 + 2 + QK_K / 16 + QK_K / 4),
    (GgmlType::Q3_K, 11, QK_K, 2 + QK_K / 4 + QK_K / 8 + 12),
    (GgmlType::Q4_K, 12, QK_K, 2 + 2 + QK_K / 2 + 12),
    (GgmlType::Q5_K, 13, QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12),
    (GgmlType::Q6_K, 14, QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16),
    (GgmlType::Q8_K, 15, QK_K, 4 + QK_K + QK_K / 8),
    (GgmlType::IQ2_XXS, 16, QK_K, 2 + QK_K / 4),
    (GgmlType::IQ2_XS, 17, QK_K, 2 + QK_K / 4 + QK_K / 32),
    (GgmlType::IQ3_XXS, 18, QK_K, 2 + QK_K / 4 + QK_K / 8),
    (GgmlType::IQ1_S, 19, QK_K, 2 + QK_K / 8 + QK_K / 16),
    (GgmlType::IQ4_NL, 20, 32, 2 + 16),
    (GgmlType::IQ3_S, 21, QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4),
    (GgmlType::IQ2_S, 22, QK_K, 2 + QK_K / 4 + QK_K / 16),
    (GgmlType::IQ4_XS, 23, QK_K, 2 + 2 + QK_K / 2 + QK_K / 64),
    (GgmlType::I8, 24, 1, 1),
    (GgmlType::I16, 25, 1, 2),
    (GgmlType::I32, 26, 1, 4),
    (GgmlType::I64, 27, 1, 8),
    (GgmlType::F64, 28, 1, 8),
    (GgmlType::IQ1_M, 29, QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32),
    (GgmlType::BF16, 30, 1, 2),
    (GgmlType::TQ1_0, 34, QK_K, 2 + 4 * 13),
    (GgmlType::TQ2_0, 35, QK_K, 2 + 64),
    (GgmlType::MXFP4, 39, 32, 1 + 16),
    (GgmlType::NVFP4, 40, 64, 4 + 32),
    (GgmlType::Q1_0, 41, 128, 2 + 16),
];

/// The types [`dequantize`] handles.
pub const DEQUANTIZABLE: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::F64,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_K,
];

impl GgmlType {
    fn entry(self) -> &'static (GgmlType, u32, usize, usize) {
        TABLE.iter().find(|e| e.0 == self).expect("every GgmlType is in TABLE")
    }

    /// The type with ggml id `id`, `None` for an id this crate does not know.
    pub fn from_id(id: u32) -> Option<Self> {
        TABLE.iter().find(|e| e.1 == id).map(|e| e.0)
    }

    /// ggml's numeric id (`enum ggml_type`).
    pub fn id(self) -> u32 {
        self.entry().1
    }

    /// Values per block (1 for plain scalar types).
    pub fn block_size(self) -> usize {
        self.entry().2
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        self.entry().3
    }

    /// Whether [`dequantize`] supports this type.
    pub fn can_dequantize(self) -> bool {
        DEQUANTIZABLE.contains(&self)
    }

    /// Bytes taken by `n_values` values, `None` if `n_values` is not a whole number of blocks or overflows.
    pub fn bytes_for(self, n_values: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        if !n_values.is_multiple_of(bs) {
            return None;
        }
        (n_values / bs).checked_mul(self.type_size() as u64)
    }

    /// ggml's name for the type, e.g. `"Q4_K"`.
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
            IQ2_XXS => "IQ2_XXS",
            IQ2_XS => "IQ2_XS",
            IQ3_XXS => "IQ3_XXS",
            IQ1_S => "IQ1_S",
            IQ4_NL => "IQ4_NL",
            IQ3_S => "IQ3_S",
            IQ2_S => "IQ2_S",
            IQ4_XS => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            IQ1_M => "IQ1_M",
            BF16 => "BF16",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            MXFP4 => "MXFP4",
            NVFP4 => "NVFP4",
            Q1_0 => "Q1_0",
        }
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (ggml type {})", self.name(), self.id())
    }
}

/// Why [`dequantize`] refused; the caller adds the file and tensor name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    #[error("no dequantiser for ggml type {0}")]
    Unsupported(GgmlType),
    #[error("{ty}: {n_values} values need {want} bytes, got {got}")]
    SizeMismatch { ty: GgmlType, n_values: usize, want: usize, got: usize },
}

/// Blocks per parallel task: large enough to amortise scheduling, small enough to balance.
const CHUNK_VALUES: usize = 16 * 1024;

/// Dequantise `data` (whole blocks of type `ty`) into `out`; `out.len()` is the number of values.
pub fn dequantize_into(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    if !ty.can_dequantize() {
        return Err(QuantError::Unsupported(ty));
    }
    let (bs, ts) = (ty.block_size(), ty.type_size());
    let want = if out.len().is_multiple_of(bs) { out.len() / bs * ts } else { usize::MAX };
    if want != data.len() {
        return Err(QuantError::SizeMismatch { ty, n_values: out.len(), want, got: data.len() });
    }
    let blocks_per_chunk = (CHUNK_VALUES / bs).max(1);
    out.par_chunks_mut(blocks_per_chunk * bs)
        .zip(data.par_chunks(blocks_per_chunk * ts))
        .for_each(|(o, d)| dequantize_blocks(ty, d, o));
    Ok(())
}

/// Dequantise `n_values` values of type `ty` from `data` into a new vector.
pub fn dequantize(ty: GgmlType, data: &[u8], n_values: usize) -> Result<Vec<f32>, QuantError> {
    let mut out = vec![0f32; n_values];
    dequantize_into(ty, data, &mut out)?;
    Ok(out)
}

/// Sequential dequantisation of whole blocks; `data` and `out` hold the same number of blocks.
fn dequantize_blocks(ty: GgmlType, data: &[u8], out: &mut [f32]) {
    let (bs, ts) = (ty.block_size(), ty.type_size());
    let blocks = out.chunks_exact_mut(bs).zip(data.chunks_exact(ts));
    match ty {
        GgmlType::F32 => blocks.for_each(|(o, b)| o[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        GgmlType::F16 => blocks.for_each(|(o, b)| o[0] = f16::from_le_bytes([b[0], b[1]]).to_f32()),
        GgmlType::BF16 => blocks.for_each(|(o, b)| o[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        GgmlType::F64 => blocks.for_each(|(o, b)| o[0] = f64::from_le_bytes(b.try_into().unwrap()) as f32),
        GgmlType::Q4_0 => blocks.for_each(|(o, b)| q4_0(b, o)),
        GgmlType::Q4_1 => blocks.for_each(|(o, b)| q4_1(b, o)),
        GgmlType::Q5_0 => blocks.for_each(|(o, b)| q5_0(b, o)),
        GgmlType::Q5_1 => blocks.for_each(|(o, b)| q5_1(b, o)),
        GgmlType::Q8_0 => blocks.for_each(|(o, b)| q8_0(b, o)),
        GgmlType::Q2_K => blocks.for_each(|(o, b)| q2_k(b, o)),
        GgmlType::Q3_K => blocks.for_each(|(o, b)| q3_k(b, o)),
        GgmlType::Q4_K => blocks.for_each(|(o, b)| q4_k(b, o)),
        GgmlType::Q5_K => blocks.for_each(|(o, b)| q5_k(b, o)),
        GgmlType::Q6_K => blocks.for_each(|(o, b)| q6_k(b, o)),
        GgmlType::Q8_K => blocks.for_each(|(o, b)| q8_k(b, o)),
        other => unreachable!("{other} is not in DEQUANTIZABLE"),
    }
}

#[inline]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Q4_0: `d: f16, qs[16]`; value j (< 16) is the low nibble of qs[j], value j + 16 the high nibble; `(q - 8) * d`.
fn q4_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        o[j] = ((qs[j] & 0x0F) as i32 - 8) as f32 * d;
        o[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
    }
}

/// Q4_1: `d: f16, m: f16, qs[16]`; nibbles as in Q4_0; `q * d + m`.
fn q4_1(b: &[u8], o: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qs = &b[4..20];
    for j in 0..16 {
        o[j] = (qs[j] & 0x0F) as f32 * d + m;
        o[j + 16] = (qs[j] >> 4) as f32 * d + m;
    }
}

/// Fifth bits of Q5_0 / Q5_1: bit j of the little-endian u32 `qh` belongs to value j.
#[inline]
fn q5_high(qh: u32, j: usize) -> u8 {
    (((qh >> j) & 1) as u8) << 4
}

/// Q5_0: `d: f16, qh: u32, qs[16]`; 5-bit q = nibble | high bit << 4; `(q - 16) * d`.
fn q5_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let lo = (qs[j] & 0x0F) | q5_high(qh, j);
        let hi = (qs[j] >> 4) | q5_high(qh, j + 16);
        o[j] = (lo as i32 - 16) as f32 * d;
        o[j + 16] = (hi as i32 - 16) as f32 * d;
    }
}

/// Q5_1: `d: f16, m: f16, qh: u32, qs[16]`; `q * d + m`.
fn q5_1(b: &[u8], o: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let lo = (qs[j] & 0x0F) | q5_high(qh, j);
        let hi = (qs[j] >> 4) | q5_high(qh, j + 16);
        o[j] = lo as f32 * d + m;
        o[j + 16] = hi as f32 * d + m;
    }
}

/// Q8_0: `d: f16, qs[32]: i8`; `q * d`.
fn q8_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..32 {
        o[j] = (b[2 + j] as i8) as f32 * d;
    }
}

/// Q2_K: `scales[16], qs[64], d: f16, dmin: f16`. Each scale byte: low nibble scales, high nibble
/// mins of one 16-value group; 2-bit q; `d * sc * q - dmin * m`.
fn q2_k(b: &[u8], o: &mut [f32]) {
    let scales = &b[0..16];
    let qs = &b[16..80];
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    // value index = half * 128 + shift * 32 + l, with qs byte half * 32 + l and bits at 2 * shift.
    for half in 0..2 {
        for shift in 0..4 {
            for l in 0..32 {
                let idx = half * 128 + shift * 32 + l;
                let sc = scales[idx / 16];
                let dl = d * (sc & 0x0F) as f32;
                let ml = dmin * (sc >> 4) as f32;
                let q = (qs[half * 32 + l] >> (2 * shift)) & 3;
                o[idx] = dl * q as f32 - ml;
            }
        }
    }
}

/// Q3_K: `hmask[32], qs[64], scales[12], d: f16`. 6-bit signed scales (`- 32`) per 16 values;
/// q = 2 low bits from qs, minus 4 when the hmask bit is *clear*; `d * sc * q`.
fn q3_k(b: &[u8], o: &mut [f32]) {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let sc = &b[96..108];
    let d = f16_at(b, 108);
    let mut scales = [0f32; 16];
    for (i, s) in scales.iter_mut().enumerate() {
        let low = (sc[i % 8] >> (4 * (i / 8))) & 0x0F;
        let high = (sc[8 + i % 4] >> (2 * (i / 4))) & 0x03;
        *s = (((low | (high << 4)) as i8) - 32) as f32;
    }
    // value index = half * 128 + shift * 32 + l; qs byte half * 32 + l (bits 2 * shift);
    // hmask byte l, bit half * 4 + shift.
    for half in 0..2 {
        for shift in 0..4 {
            for l in 0..32 {
                let idx = half * 128 + shift * 32 + l;
                let low = ((qs[half * 32 + l] >> (2 * shift)) & 3) as i8;
                let h = (hmask[l] >> (half * 4 + shift)) & 1;
                let q = low - if h == 0 { 4 } else { 0 };
                o[idx] = d * scales[idx / 16] * q as f32;
            }
        }
    }
}

/// The 8 (scale, min) pairs of a Q4_K / Q5_K super-block, 6 bits each, packed into 12 bytes.
#[inline]
fn k_scale_min(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 0x3F, s[j + 4] & 0x3F)
    } else {
        ((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// Q4_K: `d: f16, dmin: f16, scales[12], qs[128]`; 8 groups of 32 values; group 2p uses the low
/// nibbles of qs[32p..32p+32], group 2p+1 the high nibbles; `d * sc * q - dmin * m`.
fn q4_k(b: &[u8], o: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..144];
    for g in 0..8 {
        let (sc, m) = k_scale_min(scales, g);
        let (dl, ml) = (d * sc as f32, dmin * m as f32);
        let bytes = &qs[(g / 2) * 32..(g / 2) * 32 + 32];
        let shift = 4 * (g % 2);
        for l in 0..32 {
            o[g * 32 + l] = dl * ((bytes[l] >> shift) & 0x0F) as f32 - ml;
        }
    }
}

/// Q5_K: `d: f16, dmin: f16, scales[12], qh[32], qs[128]`; as Q4_K plus a fifth bit: bit g of qh[l]
/// for value l of group g.
fn q5_k(b: &[u8], o: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for g in 0..8 {
        let (sc, m) = k_scale_min(scales, g);
        let (dl, ml) = (d * sc as f32, dmin * m as f32);
        let bytes = &qs[(g / 2) * 32..(g / 2) * 32 + 32];
        let shift = 4 * (g % 2);
        for l in 0..32 {
            let q = ((bytes[l] >> shift) & 0x0F) | (((qh[l] >> g) & 1) << 4);
            o[g * 32 + l] = dl * q as f32 - ml;
        }
    }
}

/// Q6_K: `ql[128], qh[64], scales[16]: i8, d: f16`. Value e = half * 128 + r: low 4 bits from
/// ql[half * 64 + r % 64] (high nibble when r >= 64), 2 high bits from qh[half * 32 + r % 32] at bit
/// 2 * (r / 32); q - 32; `d * scale[e / 16] * q`.
fn q6_k(b: &[u8], o: &mut [f32]) {
    let ql = &b[0..128];
    let qh = &b[128..192];
    let scales = &b[192..208];
    let d = f16_at(b, 208);
    for half in 0..2 {
        for r in 0..128 {
            let e = half * 128 + r;
            let low = (ql[half * 64 + r % 64] >> (4 * (r / 64))) & 0x0F;
            let high = (qh[half * 32 + r % 32] >> (2 * (r / 32))) & 0x03;
            let q = ((low | (high << 4)) as i8 - 32) as f32;
            o[e] = d * (scales[e / 16] as i8) as f32 * q;
        }
    }
}

/// Q8_K: `d: f32, qs[256]: i8, bsums[16]: i16` (bsums unused); `d * q`.
fn q8_k(b: &[u8], o: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for j in 0..QK_K {
        o[j] = d * (b[4 + j] as i8) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for &(ty, id, bs, ts) in TABLE {
            assert_eq!(GgmlType::from_id(id), Some(ty));
            assert_eq!((ty.block_size(), ty.type_size()), (bs, ts));
        }
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!(GgmlType::from_id(1000), None);
        assert_eq!(GgmlType::Q6_K.type_size(), 210);
        assert_eq!(GgmlType::Q4_K.type_size(), 144);
        assert_eq!(GgmlType::Q8_K.type_size(), 292);
    }

    #[test]
    fn q4_0_by_hand() {
        // d = 0.5, q nibbles: low = j % 16, high = 15 - j % 16
        let mut b = vec![0u8; 18];
        b[0..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        for j in 0..16 {
            b[2 + j] = (j as u8) | ((15 - j as u8) << 4);
        }
        let v = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
        for j in 0..16 {
            assert_eq!(v[j], (j as f32 - 8.0) * 0.5);
            assert_eq!(v[j + 16], (7.0 - j as f32) * 0.5);
        }
    }

    #[test]
    fn q8_0_by_hand() {
        let mut b = vec![0u8; 34];
        b[0..2].copy_from_slice(&f16::from_f32(2.0).to_le_bytes());
        for j in 0..32 {
            b[2 + j] = (j as i8 - 16) as u8;
        }
        let v = dequantize(GgmlType::Q8_0, &b, 32).unwrap();
        assert_eq!(v, (0..32).map(|j| (j as f32 - 16.0) * 2.0).collect::<Vec<_>>());
    }

    #[test]
    fn size_and_type_errors() {
        assert!(matches!(dequantize(GgmlType::Q4_0, &[0u8; 17], 32), Err(QuantError::SizeMismatch { .. })));
        assert!(matches!(dequantize(GgmlType::Q4_0, &[0u8; 18], 31), Err(QuantError::SizeMismatch { .. })));
        assert_eq!(dequantize(GgmlType::IQ2_XXS, &[0u8; 66], 256), Err(QuantError::Unsupported(GgmlType::IQ2_XXS)));
    }

    #[test]
    fn parallel_equals_sequential() {
        // enough blocks for several chunks
        let n_blocks = 3 * CHUNK_VALUES / 32 + 5;
        let mut data = vec![0u8; n_blocks * 20];
        let mut s = 0x1234_5678u32;
        for (i, x) in data.iter_mut().enumerate() {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *x = if i % 20 == 1 || i % 20 == 3 { 0x30 } else { (s >> 24) as u8 };
        }
        let par = dequantize(GgmlType::Q4_1, &data, n_blocks * 32).unwrap();
        let mut seq = vec![0f32; n_blocks * 32];
        dequantize_blocks(GgmlType::Q4_1, &data, &mut seq);
        assert_eq!(par, seq);
    }
}
