//! Parser unit tests on GGUF images built in memory (a minimal writer lives here).
use super::*;

/// A minimal GGUF writer for tests.
#[derive(Default)]
struct Writer {
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
    alignment: usize,
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend((s.len() as u64).to_le_bytes());
    buf.extend(s.as_bytes());
}

impl Writer {
    fn new() -> Self {
        Writer { alignment: 32, ..Default::default() }
    }

    /// Raw key-value: type id + already-encoded value bytes.
    fn kv(&mut self, key: &str, ty: u32, value: &[u8]) -> &mut Self {
        put_str(&mut self.kv, key);
        self.kv.extend(ty.to_le_bytes());
        self.kv.extend(value);
        self.n_kv += 1;
        self
    }

    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.kv(key, 4, &v.to_le_bytes())
    }

    fn kv_str(&mut self, key: &str, v: &str) -> &mut Self {
        let mut b = Vec::new();
        put_str(&mut b, v);
        self.kv(key, 8, &b)
    }

    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, bytes: &[u8]) -> &mut Self {
        while !self.data.len().is_multiple_of(self.alignment) {
            self.data.push(0);
        }
        put_str(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(ty.to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        self.data.extend(bytes);
        self.n_tensors += 1;
        self
    }

    fn bytes_with_version(&self, version: u32) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(version.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(&self.kv);
        out.extend(&self.infos);
        while !out.len().is_multiple_of(self.alignment) {
            out.push(0);
        }
        out.extend(&self.data);
        out
    }

    fn bytes(&self) -> Vec<u8> {
        self.bytes_with_version(3)
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A small valid file: metadata of every type, an F32 and a Q8_0 tensor.
fn sample() -> Writer {
    let mut w = Writer::new();
    w.kv_str("general.architecture", "llama");
    w.kv("u8", 0, &[200]);
    w.kv("i8", 1, &[0xFB]);
    w.kv("u16", 2, &65000u16.to_le_bytes());
    w.kv("i16", 3, &(-3i16).to_le_bytes());
    w.kv_u32("u32", 7);
    w.kv("i32", 5, &(-7i32).to_le_bytes());
    w.kv("f32", 6, &0.5f32.to_le_bytes());
    w.kv("bool", 7, &[1]);
    w.kv("u64", 10, &(1u64 << 40).to_le_bytes());
    w.kv("i64", 11, &(-1i64).to_le_bytes());
    w.kv("f64", 12, &0.25f64.to_le_bytes());
    let mut arr = Vec::new();
    arr.extend(8u32.to_le_bytes());
    arr.extend(2u64.to_le_bytes());
    put_str(&mut arr, "ab");
    put_str(&mut arr, "");
    w.kv("strs", 9, &arr);
    // nested: array of 2 arrays of i32: [[1, 2], [3]]
    let mut nested = Vec::new();
    nested.extend(9u32.to_le_bytes());
    nested.extend(2u64.to_le_bytes());
    for inner in [&[1i32, 2][..], &[3]] {
        nested.extend(5u32.to_le_bytes());
        nested.extend((inner.len() as u64).to_le_bytes());
        for x in inner {
            nested.extend(x.to_le_bytes());
        }
    }
    w.kv("nested", 9, &nested);
    w.tensor("t.f32", &[3, 2], 0, &f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    let mut q8 = half::f16::from_f32(0.5).to_le_bytes().to_vec();
    q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
    w.tensor("t.q8", &[32], 8, &q8);
    w
}

fn parse(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
    GgufFile::from_bytes("mem.gguf", bytes)
}

#[test]
fn parses_all_value_types_and_tensors() {
    let f = parse(sample().bytes()).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.get("u8"), Some(&MetaValue::U8(200)));
    assert_eq!(f.get("i8"), Some(&MetaValue::I8(-5)));
    assert_eq!(f.get_u32("u16").unwrap(), 65000);
    assert_eq!(f.get_i64("i16").unwrap(), -3);
    assert_eq!(f.get_u32("u32").unwrap(), 7);
    assert_eq!(f.get_i64("i32").unwrap(), -7);
    assert_eq!(f.get_f32("f32").unwrap(), 0.5);
    assert!(f.get_bool("bool").unwrap());
    assert_eq!(f.get_u64("u64").unwrap(), 1 << 40);
    assert_eq!(f.get_i64("i64").unwrap(), -1);
    assert_eq!(f.get_f64("f64").unwrap(), 0.25);
    assert_eq!(f.get_str_array("strs").unwrap(), &["ab".to_string(), String::new()]);
    assert_eq!(
        f.get_array("nested").unwrap(),
        &MetaArray::Array(vec![MetaArray::I32(vec![1, 2]), MetaArray::I32(vec![3])])
    );
    assert_eq!(f.tensors().len(), 2);
    let t = f.tensor_f32("t.f32").unwrap();
    assert_eq!(t.shape, vec![2, 3]);
    assert_eq!(t.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let q = f.tensor_f32("t.q8").unwrap();
    assert_eq!(q.data, (0..32).map(|i| (i as f32 - 16.0) * 0.5).collect::<Vec<_>>());
    // v2 has the same little-endian layout
    assert_eq!(parse(sample().bytes_with_version(2)).unwrap().version(), 2);
}

#[test]
fn getter_errors_name_the_key() {
    let f = parse(sample().bytes()).unwrap();
    let e = f.get_u32("nope").unwrap_err();
    assert!(matches!(&e, GgufError::MissingKey { key, .. } if key == "nope"), "{e}");
    assert!(e.to_string().contains("mem.gguf") && e.to_string().contains("`nope`"));
    let e = f.get_u32("i32").unwrap_err();
    assert!(matches!(&e, GgufError::WrongType { key, .. } if key == "i32"), "{e}");
    let e = f.get_str("u32").unwrap_err();
    assert!(e.to_string().contains("`u32`") && e.to_string().contains("expected a string"), "{e}");
    assert!(matches!(f.get_u32("u64"), Err(GgufError::WrongType { .. })));
    assert_eq!(f.opt("nope", GgufFile::get_u32).unwrap(), None);
    assert!(f.opt("strs", GgufFile::get_u32).is_err());
    let e = f.tensor_f32("missing.weight").unwrap_err();
    assert!(matches!(&e, GgufError::MissingTensor { tensor, .. } if tensor == "missing.weight"));
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let full = sample().bytes();
    for n in 0..full.len() {
        let e = parse(full[..n].to_vec()).expect_err(&format!("prefix of {n} bytes parsed"));
        assert!(e.to_string().contains("mem.gguf"), "{e}");
        assert!(matches!(e, GgufError::Truncated { .. } | GgufError::TensorOutOfBounds { .. }), "prefix {n}: {e}");
    }
}

#[test]
fn byte_flips_never_panic() {
    let full = sample().bytes();
    for i in 0..full.len() {
        for v in [0x00, 0xFF, 0x7F, 0x09, full[i] ^ 0x01] {
            let mut b = full.clone();
            b[i] = v;
            if let Ok(f) = parse(b) {
                for t in f.tensors().to_vec() {
                    let _ = f.tensor_f32(&t.name);
                }
            }
        }
    }
}

#[test]
fn bad_magic_and_versions() {
    let mut b = sample().bytes();
    b[0..4].copy_from_slice(b"GGML");
    let e = parse(b).unwrap_err();
    assert!(matches!(e, GgufError::BadMagic { .. }), "{e}");
    assert!(e.to_string().contains("\"GGML\""), "{e}");
    let e = parse(sample().bytes_with_version(99)).unwrap_err();
    assert!(matches!(e, GgufError::UnsupportedVersion { version: 99, .. }), "{e}");
    let e = parse(sample().bytes_with_version(3u32.swap_bytes())).unwrap_err();
    assert!(e.to_string().contains("big-endian"), "{e}");
    assert!(matches!(parse(Vec::new()), Err(GgufError::Truncated { .. })));
}

#[test]
fn absurd_counts_are_rejected_without_allocating() {
    // metadata count
    let mut b = sample().bytes();
    b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(parse(b), Err(GgufError::Corrupt { .. })));
    // tensor count
    let mut b = sample().bytes();
    b[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(parse(b), Err(GgufError::Corrupt { .. })));
    // array length
    let mut w = Writer::new();
    let mut arr = 6u32.to_le_bytes().to_vec();
    arr.extend((1u64 << 62).to_le_bytes());
    w.kv("big", 9, &arr);
    let e = parse(w.bytes()).unwrap_err();
    assert!(matches!(e, GgufError::Corrupt { .. }) && e.to_string().contains("`big`"), "{e}");
    let mut w = Writer::new();
    let mut arr = 6u32.to_le_bytes().to_vec();
    arr.extend(1000u64.to_le_bytes());
    w.kv("long", 9, &arr);
    let e = parse(w.bytes()).unwrap_err();
    assert!(matches!(e, GgufError::Truncated { needed: 4000, .. }) && e.to_string().contains("`long`"), "{e}");
    // string length
    let mut w = Writer::new();
    w.kv("s", 8, &u64::MAX.to_le_bytes());
    let e = parse(w.bytes()).unwrap_err();
    assert!(matches!(e, GgufError::Truncated { .. }) && e.to_string().contains("`s`"), "{e}");
    // nesting depth
    let mut w = Writer::new();
    let mut deep = Vec::new();
    for _ in 0..100 {
        deep.extend(9u32.to_le_bytes());
        deep.extend(1u64.to_le_bytes());
    }
    deep.extend(4u32.to_le_bytes());
    deep.extend(0u64.to_le_bytes());
    w.kv("deep", 9, &deep);
    assert!(matches!(parse(w.bytes()), Err(GgufError::Corrupt { .. })));
}

#[test]
fn tensor_table_errors_name_the_tensor() {
    // unknown type id
    let mut w = Writer::new();
    w.tensor("blk.0.weird.weight", &[4], 99, &[0; 16]);
    let e = parse(w.bytes()).unwrap_err();
    assert!(
        matches!(&e, GgufError::UnknownTensorType { tensor, type_id: 99, .. } if tensor == "blk.0.weird.weight"),
        "{e}"
    );
    assert!(e.to_string().contains("blk.0.weird.weight") && e.to_string().contains("99"), "{e}");
    // known type without a dequantiser: parses, fails on load
    let mut w = Writer::new();
    w.tensor("iq", &[256], 16, &[0; 66]);
    let f = parse(w.bytes()).unwrap();
    let e = f.tensor_f32("iq").unwrap_err();
    assert!(matches!(e, GgufError::UnsupportedTensorType { ty: GgmlType::IQ2_XXS, .. }), "{e}");
    // too many dims
    let mut w = Writer::new();
    w.tensor("t5d", &[1, 1, 1, 1, 1], 0, &[0; 4]);
    assert!(matches!(parse(w.bytes()), Err(GgufError::BadTensor { tensor, .. }) if tensor == "t5d"));
    // row not a whole number of blocks
    let mut w = Writer::new();
    w.tensor("q", &[16], 8, &[0; 34]);
    assert!(matches!(parse(w.bytes()), Err(GgufError::BadTensor { tensor, .. }) if tensor == "q"));
    // data past the end
    let mut w = Writer::new();
    w.tensor("short", &[8], 0, &[0; 16]);
    let e = parse(w.bytes()).unwrap_err();
    assert!(matches!(&e, GgufError::TensorOutOfBounds { tensor, .. } if tensor == "short"), "{e}");
    // dimension overflow
    let mut w = Writer::new();
    w.tensor("huge", &[u64::MAX / 2, 4], 0, &[]);
    assert!(matches!(parse(w.bytes()), Err(GgufError::BadTensor { tensor, .. }) if tensor == "huge"));
    // misaligned offset
    let mut b = Writer::new();
    b.tensor("a", &[1], 0, &[0; 4]);
    let mut bytes = b.bytes();
    let off_pos = 24 + 8 + 1 + 4 + 8 + 4; // header, name, n_dims, dim, type
    bytes[off_pos..off_pos + 8].copy_from_slice(&4u64.to_le_bytes());
    bytes.extend([0; 64]);
    assert!(matches!(parse(bytes), Err(GgufError::BadTensor { tensor, .. }) if tensor == "a"));
}

#[test]
fn alignment_and_duplicates() {
    let mut w = Writer::new();
    w.alignment = 64;
    w.kv_u32("general.alignment", 64);
    w.tensor("a", &[1], 0, &f32_bytes(&[1.0]));
    w.tensor("b", &[1], 0, &f32_bytes(&[2.0]));
    let f = parse(w.bytes()).unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
    assert_eq!(f.tensor_f32("b").unwrap().data, vec![2.0]);

    let mut w = Writer::new();
    w.kv_u32("general.alignment", 48);
    assert!(matches!(parse(w.bytes()), Err(GgufError::BadValue { key, .. }) if key == "general.alignment"));

    let mut w = Writer::new();
    w.kv_u32("k", 1).kv_u32("k", 2);
    assert!(matches!(parse(w.bytes()), Err(GgufError::Corrupt { .. })));

    let mut w = Writer::new();
    w.tensor("a", &[1], 0, &[0; 4]).tensor("a", &[1], 0, &[0; 4]);
    assert!(matches!(parse(w.bytes()), Err(GgufError::BadTensor { .. })));
}

#[test]
fn invalid_utf8_and_bad_types() {
    let mut w = Writer::new();
    w.kv("s", 8, &[2, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFE]);
    let e = parse(w.bytes()).unwrap_err();
    assert!(matches!(e, GgufError::Corrupt { .. }) && e.to_string().contains("UTF-8"), "{e}");
    let mut w = Writer::new();
    w.kv("x", 13, &[0; 4]);
    assert!(matches!(parse(w.bytes()), Err(GgufError::Corrupt { .. })));
    let mut w = Writer::new();
    w.kv("b", 7, &[2]);
    assert!(matches!(parse(w.bytes()), Err(GgufError::Corrupt { .. })));
}

#[test]
fn a_declared_block_count_beyond_the_tensor_table_is_refused_before_allocating() {
    let mut w = Writer::new();
    w.kv_str("general.architecture", "llama");
    w.kv_u32("llama.block_count", 4_000_000_000);
    w.kv_u32("llama.embedding_length", 4);
    w.kv_u32("llama.feed_forward_length", 8);
    w.kv_u32("llama.attention.head_count", 2);
    w.tensor("blk.0.attn_norm.weight", &[4], 0, &f32_bytes(&[1.0; 4]));
    let Err(e) = crate::gguf::GgufModel::new(parse(w.bytes()).unwrap()) else { panic!("accepted") };
    let e = e.to_string();
    assert!(e.contains("llama.block_count") && e.contains("4000000000") && e.contains("has 1"), "{e}");
}
