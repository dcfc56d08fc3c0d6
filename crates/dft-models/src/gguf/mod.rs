//! GGUF import: llama.cpp's single-file model format.
//!
//! * [`GgufFile`] memory-maps and parses a GGUF v2/v3 (little-endian) file: header, metadata
//!   (all value types, nested arrays), tensor infos, alignment and data offset. Everything is
//!   bounds-checked; a truncated or corrupt file gives a [`GgufError`] naming the file (and the
//!   tensor or key), never a panic or a huge allocation.
//! * [`quant`] dequantises ggml tensor types to f32 (F32/F16/BF16, Q4_0..Q8_0, Q2_K..Q8_K).
//! * [`GgufModel`] (in `hf.rs`) is the Hugging Face view of a `llama` / `gemma2` / `gemma3` GGUF: a
//!   [`TensorSource`](crate::TensorSource) with HF tensor names and layout, and a
//!   [`ModelConfig`](crate::ModelConfig) from the metadata.
//! * [`GgufFile::tokenizer`] (in `tokenizer.rs`) rebuilds the tokenizer from the metadata the way
//!   transformers does when it loads a GGUF, so token ids match transformers'.
//!
//! GGUF lists tensor dimensions fastest-moving first (`ne0, ne1, ...`); the row-major (HF/PyTorch)
//! shape is the reverse. [`TensorInfo::shape`] returns the row-major shape.
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

mod hf;
pub mod hf_vocab;
pub mod quant;
mod tokenizer;
pub mod writer;

pub use hf::{gguf_to_hf_name, load_gguf, GgufModel};
pub use quant::{GgmlType, QuantError};
pub use tokenizer::TokenizerKind;
pub use writer::{export_gguf, export_gguf_with_tokenizer, GgufExportType, GgufTokenizerSource, GgufWriter};

use crate::tensor_source::HostTensor;

/// Everything that can go wrong reading a GGUF file. Every variant names the file; tensor- and
/// key-level variants also name the tensor or metadata key.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a GGUF file (starts with {found}, expected \"GGUF\")")]
    BadMagic { path: PathBuf, found: String },
    #[error("{path}: unsupported GGUF version {version} (supported: 2, 3{hint})")]
    UnsupportedVersion { path: PathBuf, version: u32, hint: &'static str },
    #[error("{path}: truncated file: {what} at byte {offset} needs {needed} bytes, the file has {file_len}")]
    Truncated { path: PathBuf, what: String, offset: u64, needed: u64, file_len: u64 },
    #[error("{path}: corrupt GGUF: {msg}")]
    Corrupt { path: PathBuf, msg: String },
    #[error("{path}: tensor `{tensor}` has unknown ggml type id {type_id}")]
    UnknownTensorType { path: PathBuf, tensor: String, type_id: u32 },
    #[error("{path}: tensor `{tensor}` has ggml type {ty}, which cannot be dequantised (supported: F32, F16, BF16, F64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K)")]
    UnsupportedTensorType { path: PathBuf, tensor: String, ty: GgmlType },
    #[error("{path}: tensor `{tensor}`: data [{start}, {end}) lies past the end of the file ({file_len} bytes); the file is truncated or corrupt")]
    TensorOutOfBounds { path: PathBuf, tensor: String, start: u64, end: u64, file_len: u64 },
    #[error("{path}: tensor `{tensor}`: {msg}")]
    BadTensor { path: PathBuf, tensor: String, msg: String },
    #[error("{path}: tensor `{tensor}` is missing")]
    MissingTensor { path: PathBuf, tensor: String },
    #[error("{path}: metadata key `{key}` is missing")]
    MissingKey { path: PathBuf, key: String },
    #[error("{path}: metadata key `{key}` is {found}, expected {expected}")]
    WrongType { path: PathBuf, key: String, expected: &'static str, found: String },
    #[error("{path}: metadata key `{key}`: {msg}")]
    BadValue { path: PathBuf, key: String, msg: String },
    #[error("{path}: unsupported architecture `{arch}` (supported: llama, gemma2, gemma3)")]
    UnknownArchitecture { path: PathBuf, arch: String },
    #[error("{path}: {msg}")]
    Unsupported { path: PathBuf, msg: String },
    #[error("{path}: tokenizer: {msg}")]
    Tokenizer { path: PathBuf, msg: String },
}

/// GGUF metadata value type ids (`gguf_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl MetaType {
    fn from_id(id: u32) -> Option<Self> {
        use MetaType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Smallest encoding of one value of this type, in bytes (strings: the length prefix; arrays: type + count).
    fn min_size(self) -> u64 {
        use MetaType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }

    /// GGUF-spec name of the type, e.g. `"u32"`.
    pub fn name(self) -> &'static str {
        use MetaType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(MetaArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A metadata array: homogeneous, possibly of arrays.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    Array(Vec<MetaArray>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl MetaArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        use MetaArray::*;
        match self {
            U8(v) => v.len(),
            I8(v) => v.len(),
            U16(v) => v.len(),
            I16(v) => v.len(),
            U32(v) => v.len(),
            I32(v) => v.len(),
            F32(v) => v.len(),
            Bool(v) => v.len(),
            String(v) => v.len(),
            Array(v) => v.len(),
            U64(v) => v.len(),
            I64(v) => v.len(),
            F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element type.
    pub fn elem_type(&self) -> MetaType {
        use MetaArray as A;
        match self {
            A::U8(_) => MetaType::U8,
            A::I8(_) => MetaType::I8,
            A::U16(_) => MetaType::U16,
            A::I16(_) => MetaType::I16,
            A::U32(_) => MetaType::U32,
            A::I32(_) => MetaType::I32,
            A::F32(_) => MetaType::F32,
            A::Bool(_) => MetaType::Bool,
            A::String(_) => MetaType::String,
            A::Array(_) => MetaType::Array,
            A::U64(_) => MetaType::U64,
            A::I64(_) => MetaType::I64,
            A::F64(_) => MetaType::F64,
        }
    }

    /// Integer elements as i64 (any integer element type that fits), `None` otherwise.
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        use MetaArray::*;
        Some(match self {
            U8(v) => v.iter().map(|&x| x as i64).collect(),
            I8(v) => v.iter().map(|&x| x as i64).collect(),
            U16(v) => v.iter().map(|&x| x as i64).collect(),
            I16(v) => v.iter().map(|&x| x as i64).collect(),
            U32(v) => v.iter().map(|&x| x as i64).collect(),
            I32(v) => v.iter().map(|&x| x as i64).collect(),
            U64(v) => v.iter().map(|&x| i64::try_from(x).ok()).collect::<Option<Vec<_>>>()?,
            I64(v) => v.clone(),
            _ => return None,
        })
    }
}

impl MetaValue {
    /// The value's type.
    pub fn meta_type(&self) -> MetaType {
        use MetaValue as V;
        match self {
            V::U8(_) => MetaType::U8,
            V::I8(_) => MetaType::I8,
            V::U16(_) => MetaType::U16,
            V::I16(_) => MetaType::I16,
            V::U32(_) => MetaType::U32,
            V::I32(_) => MetaType::I32,
            V::F32(_) => MetaType::F32,
            V::Bool(_) => MetaType::Bool,
            V::String(_) => MetaType::String,
            V::Array(_) => MetaType::Array,
            V::U64(_) => MetaType::U64,
            V::I64(_) => MetaType::I64,
            V::F64(_) => MetaType::F64,
        }
    }

    /// Any integer value as i128 (so every integer type fits), `None` for non-integers.
    pub fn as_integer(&self) -> Option<i128> {
        use MetaValue as V;
        Some(match *self {
            V::U8(x) => x as i128,
            V::I8(x) => x as i128,
            V::U16(x) => x as i128,
            V::I16(x) => x as i128,
            V::U32(x) => x as i128,
            V::I32(x) => x as i128,
            V::U64(x) => x as i128,
            V::I64(x) => x as i128,
            _ => return None,
        })
    }

    /// A float or integer value as f64, `None` otherwise.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(x) => Some(x as f64),
            MetaValue::F64(x) => Some(x),
            _ => self.as_integer().map(|x| x as f64),
        }
    }

    /// Short description for error messages, e.g. `a u32 (7)` or `an array of 3 string`.
    fn describe(&self) -> String {
        match self {
            MetaValue::String(s) => format!("a string ({:?})", truncate(s, 40)),
            MetaValue::Array(a) => format!("an array of {} {}", a.len(), a.elem_type().name()),
            MetaValue::Bool(b) => format!("a bool ({b})"),
            MetaValue::F32(x) => format!("an f32 ({x})"),
            MetaValue::F64(x) => format!("an f64 ({x})"),
            other => format!(
                "{} {} ({})",
                article(other.meta_type().name()),
                other.meta_type().name(),
                other.as_integer().unwrap_or(0)
            ),
        }
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

impl fmt::Display for MetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Where one tensor lives in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// GGUF tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions as GGUF stores them: fastest-moving first (`ne0, ne1, ...`).
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Number of values.
    pub n_elements: u64,
    /// Size of the data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Row-major shape (the reverse of [`dims`](Self::dims)), as HF / PyTorch write it.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// Bytes of the file: a memory map, or a buffer (for [`GgufFile::from_bytes`]).
enum Storage {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
    Empty,
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::Owned(v) => v,
            Storage::Empty => &[],
        }
    }
}

/// Largest `n_dims` a GGUF tensor may have (`GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;
/// Deepest nesting of metadata arrays accepted (real files nest at most once).
const MAX_ARRAY_DEPTH: usize = 8;
/// `general.alignment` when the file does not set it.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// A parsed, memory-mapped GGUF file. Tensor data stays in the map until a tensor is loaded.
pub struct GgufFile {
    path: PathBuf,
    storage: Storage,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, MetaValue)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Open and parse `path` (the file is memory-mapped; tensor data is read lazily).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io { path: path.clone(), source };
        let file = std::fs::File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let storage = if len == 0 {
            Storage::Empty
        } else {
            // SAFETY: the map is read-only; as with every mmap-based loader, the file must not be
            // truncated by another process while it is mapped.
            Storage::Mmap(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?)
        };
        Self::parse(path, storage)
    }

    /// Parse a GGUF image held in memory; `path` only labels error messages.
    pub fn from_bytes(path: impl AsRef<Path>, bytes: Vec<u8>) -> Result<Self, GgufError> {
        Self::parse(path.as_ref().to_path_buf(), Storage::Owned(bytes))
    }

    fn parse(path: PathBuf, storage: Storage) -> Result<Self, GgufError> {
        let header = Parser { data: storage.bytes(), pos: 0, path: &path }.parse_all()?;
        let index_of = |names: Vec<&str>| names.into_iter().enumerate().map(|(i, k)| (k.to_string(), i)).collect();
        let meta_index = index_of(header.metadata.iter().map(|(k, _)| k.as_str()).collect());
        let tensor_index = index_of(header.tensors.iter().map(|t| t.name.as_str()).collect());
        Ok(GgufFile {
            path,
            storage,
            version: header.version,
            alignment: header.alignment,
            data_offset: header.data_offset,
            metadata: header.metadata,
            meta_index,
            tensors: header.tensors,
            tensor_index,
        })
    }

    /// The file this was read from (used in every error message).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset of the tensor data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> &[(String, MetaValue)] {
        &self.metadata
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Info of the tensor named `name` (GGUF name), if present.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// `general.architecture`, e.g. `"llama"`.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")
    }

    /// The raw value under `key`.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn require(&self, key: &str) -> Result<&MetaValue, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey { path: self.path.clone(), key: key.into() })
    }

    fn wrong_type(&self, key: &str, expected: &'static str, found: &MetaValue) -> GgufError {
        GgufError::WrongType { path: self.path.clone(), key: key.into(), expected, found: found.describe() }
    }

    fn integer<T: TryFrom<i128>>(&self, key: &str, expected: &'static str) -> Result<T, GgufError> {
        let v = self.require(key)?;
        v.as_integer().and_then(|x| T::try_from(x).ok()).ok_or_else(|| self.wrong_type(key, expected, v))
    }

    /// An integer value that fits in u32 (any integer type is accepted).
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.integer(key, "an unsigned integer that fits in u32")
    }

    /// An integer value that fits in u64.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.integer(key, "an unsigned integer that fits in u64")
    }

    /// An integer value that fits in i64.
    pub fn get_i64(&self, key: &str) -> Result<i64, GgufError> {
        self.integer(key, "an integer that fits in i64")
    }

    /// An integer value as usize.
    pub fn get_usize(&self, key: &str) -> Result<usize, GgufError> {
        self.integer(key, "an unsigned integer")
    }

    /// An f32 value (an f64 is narrowed; an integer converted).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        self.get_f64(key).map(|x| x as f32)
    }

    /// A float value (f32 widened exactly) or an integer, as f64.
    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        let v = self.require(key)?;
        v.as_f64().ok_or_else(|| self.wrong_type(key, "a number", v))
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        match self.require(key)? {
            MetaValue::Bool(b) => Ok(*b),
            v => Err(self.wrong_type(key, "a bool", v)),
        }
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.require(key)? {
            MetaValue::String(s) => Ok(s),
            v => Err(self.wrong_type(key, "a string", v)),
        }
    }

    /// An array value of any element type.
    pub fn get_array(&self, key: &str) -> Result<&MetaArray, GgufError> {
        match self.require(key)? {
            MetaValue::Array(a) => Ok(a),
            v => Err(self.wrong_type(key, "an array", v)),
        }
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<&[String], GgufError> {
        match self.require(key)? {
            MetaValue::Array(MetaArray::String(v)) => Ok(v),
            v => Err(self.wrong_type(key, "an array of strings", v)),
        }
    }

    /// An array of f32.
    pub fn get_f32_array(&self, key: &str) -> Result<&[f32], GgufError> {
        match self.require(key)? {
            MetaValue::Array(MetaArray::F32(v)) => Ok(v),
            v => Err(self.wrong_type(key, "an array of f32", v)),
        }
    }

    /// An array of integers (any integer element type), as i64.
    pub fn get_int_array(&self, key: &str) -> Result<Vec<i64>, GgufError> {
        match self.require(key)? {
            MetaValue::Array(a) => {
                a.to_i64_vec().ok_or_else(|| self.wrong_type(key, "an array of integers", &MetaValue::Array(a.clone())))
            }
            v => Err(self.wrong_type(key, "an array of integers", v)),
        }
    }

    /// `Ok(None)` if `key` is absent, else the getter's result.
    pub fn opt<'a, T>(
        &'a self,
        key: &str,
        get: impl FnOnce(&'a Self, &str) -> Result<T, GgufError>,
    ) -> Result<Option<T>, GgufError> {
        if self.get(key).is_some() {
            get(self, key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The raw bytes of tensor `name` (GGUF name).
    pub fn tensor_data(&self, name: &str) -> Result<&[u8], GgufError> {
        let info = self.tensor_info(name).ok_or_else(|| self.missing(name))?;
        Ok(self.data_of(info))
    }

    fn data_of(&self, info: &TensorInfo) -> &[u8] {
        // bounds were checked when the file was parsed
        let start = (self.data_offset + info.offset) as usize;
        &self.storage.bytes()[start..start + info.n_bytes as usize]
    }

    fn missing(&self, name: &str) -> GgufError {
        GgufError::MissingTensor { path: self.path.clone(), tensor: name.into() }
    }

    /// Tensor `name` (GGUF name) dequantised to f32, in row-major shape [`TensorInfo::shape`].
    /// No renaming or un-permuting: see [`GgufModel`] for the HF view.
    pub fn tensor_f32(&self, name: &str) -> Result<HostTensor, GgufError> {
        let info = self.tensor_info(name).ok_or_else(|| self.missing(name))?;
        let data =
            quant::dequantize(info.ggml_type, self.data_of(info), info.n_elements as usize).map_err(|e| match e {
                QuantError::Unsupported(ty) => {
                    GgufError::UnsupportedTensorType { path: self.path.clone(), tensor: name.into(), ty }
                }
                other => GgufError::BadTensor { path: self.path.clone(), tensor: name.into(), msg: other.to_string() },
            })?;
        Ok(HostTensor::new(info.shape(), data))
    }

    /// Bytes of the whole file.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }
}

/// What the parser extracts before the tensor data.
struct Header {
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<TensorInfo>,
}

/// A bounds-checked little-endian cursor over the file.
struct Parser<'a> {
    data: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Parser<'a> {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }

    fn remaining(&self) -> u64 {
        (self.data.len() - self.pos) as u64
    }

    fn corrupt(&self, msg: String) -> GgufError {
        GgufError::Corrupt { path: self.path.into(), msg }
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                path: self.path.into(),
                what: what(),
                offset: self.pos as u64,
                needed: n,
                file_len: self.len(),
            });
        }
        let s = &self.data[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        Ok(self.take(N as u64, what)?.try_into().expect("take returns N bytes"))
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let n = self.u64(&|| format!("length of {}", what()))?;
        let at = self.pos;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| self.corrupt(format!("{} at byte {at} is not valid UTF-8 ({e})", what())))
    }

    /// Check that `count` items of at least `min_size` bytes each can fit in what is left: an
    /// impossible count is refused before anything is allocated for it.
    fn check_count(&self, count: u64, min_size: u64, what: &dyn Fn() -> String) -> Result<(), GgufError> {
        match count.checked_mul(min_size) {
            None => Err(self.corrupt(format!("{} is {count}, an impossible number of entries", what()))),
            Some(n) if n > self.remaining() => Err(GgufError::Truncated {
                path: self.path.into(),
                what: format!("{} ({count} entries of at least {min_size} bytes)", what()),
                offset: self.pos as u64,
                needed: n,
                file_len: self.len(),
            }),
            Some(_) => Ok(()),
        }
    }

    fn value(&mut self, ty: MetaType, key: &str, depth: usize) -> Result<MetaValue, GgufError> {
        let what = || format!("value of `{key}`");
        Ok(match ty {
            MetaType::U8 => MetaValue::U8(self.array::<1>(&what)?[0]),
            MetaType::I8 => MetaValue::I8(self.array::<1>(&what)?[0] as i8),
            MetaType::U16 => MetaValue::U16(u16::from_le_bytes(self.array(&what)?)),
            MetaType::I16 => MetaValue::I16(i16::from_le_bytes(self.array(&what)?)),
            MetaType::U32 => MetaValue::U32(u32::from_le_bytes(self.array(&what)?)),
            MetaType::I32 => MetaValue::I32(i32::from_le_bytes(self.array(&what)?)),
            MetaType::F32 => MetaValue::F32(f32::from_le_bytes(self.array(&what)?)),
            MetaType::U64 => MetaValue::U64(u64::from_le_bytes(self.array(&what)?)),
            MetaType::I64 => MetaValue::I64(i64::from_le_bytes(self.array(&what)?)),
            MetaType::F64 => MetaValue::F64(f64::from_le_bytes(self.array(&what)?)),
            MetaType::Bool => {
                let at = self.pos;
                match self.array::<1>(&what)?[0] {
                    0 => MetaValue::Bool(false),
                    1 => MetaValue::Bool(true),
                    b => {
                        return Err(self.corrupt(format!("value of `{key}` at byte {at}: bool byte is {b}, not 0 or 1")))
                    }
                }
            }
            MetaType::String => MetaValue::String(self.string(&what)?),
            MetaType::Array => MetaValue::Array(self.meta_array(key, depth)?),
        })
    }

    fn meta_type(&mut self, key: &str, what: &dyn Fn() -> String) -> Result<MetaType, GgufError> {
        let at = self.pos;
        let id = self.u32(what)?;
        MetaType::from_id(id).ok_or_else(|| {
            self.corrupt(format!("{} at byte {at}: unknown metadata value type {id} (key `{key}`)", what()))
        })
    }

    fn meta_array(&mut self, key: &str, depth: usize) -> Result<MetaArray, GgufError> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(self.corrupt(format!("value of `{key}`: arrays nested deeper than {MAX_ARRAY_DEPTH} levels")));
        }
        let elem = self.meta_type(key, &|| format!("array element type of `{key}`"))?;
        let count = self.u64(&|| format!("array length of `{key}`"))?;
        let what = || format!("array `{key}`");
        self.check_count(count, elem.min_size(), &what)?;
        let n = count as usize;
        macro_rules! fixed {
            ($variant:ident, $t:ty) => {{
                let bytes = self.take(count * std::mem::size_of::<$t>() as u64, &what)?;
                MetaArray::$variant(
                    bytes
                        .chunks_exact(std::mem::size_of::<$t>())
                        .map(|c| <$t>::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                )
            }};
        }
        Ok(match elem {
            MetaType::U8 => fixed!(U8, u8),
            MetaType::I8 => fixed!(I8, i8),
            MetaType::U16 => fixed!(U16, u16),
            MetaType::I16 => fixed!(I16, i16),
            MetaType::U32 => fixed!(U32, u32),
            MetaType::I32 => fixed!(I32, i32),
            MetaType::F32 => fixed!(F32, f32),
            MetaType::U64 => fixed!(U64, u64),
            MetaType::I64 => fixed!(I64, i64),
            MetaType::F64 => fixed!(F64, f64),
            MetaType::Bool => {
                let at = self.pos;
                let bytes = self.take(count, &what)?;
                if let Some(i) = bytes.iter().position(|&b| b > 1) {
                    return Err(self.corrupt(format!("array `{key}` at byte {}: bool byte is {}", at + i, bytes[i])));
                }
                MetaArray::Bool(bytes.iter().map(|&b| b == 1).collect())
            }
            MetaType::String => {
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    v.push(self.string(&|| format!("`{key}`[{i}]"))?);
                }
                MetaArray::String(v)
            }
            MetaType::Array => {
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    v.push(self.meta_array(&format!("{key}[{i}]"), depth + 1)?);
                }
                MetaArray::Array(v)
            }
        })
    }

    fn parse_all(mut self) -> Result<Header, GgufError> {
        let magic = self.take(4, &|| "magic".into())?;
        if magic != b"GGUF" {
            let found = magic.iter().map(|&b| std::ascii::escape_default(b).to_string()).collect::<String>();
            return Err(GgufError::BadMagic { path: self.path.into(), found: format!("\"{found}\"") });
        }
        let version = self.u32(&|| "version".into())?;
        if version != 2 && version != 3 {
            let hint = if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
                "; this looks like a big-endian file, only little-endian is supported"
            } else if version == 1 {
                "; v1 files predate 64-bit counts and are not supported"
            } else {
                ""
            };
            return Err(GgufError::UnsupportedVersion { path: self.path.into(), version, hint });
        }
        let n_tensors = self.u64(&|| "tensor count".into())?;
        let n_kv = self.u64(&|| "metadata count".into())?;
        // a key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes
        self.check_count(n_kv, 13, &|| "the metadata count".into())?;

        let mut metadata: Vec<(String, MetaValue)> = Vec::with_capacity(n_kv as usize);
        let mut seen = HashMap::with_capacity(n_kv as usize);
        for i in 0..n_kv {
            let key = self.string(&|| format!("metadata key #{i}"))?;
            let ty = self.meta_type(&key, &|| format!("type of metadata key #{i}"))?;
            let value = self.value(ty, &key, 0)?;
            if seen.insert(key.clone(), ()).is_some() {
                return Err(self.corrupt(format!("metadata key `{key}` appears twice")));
            }
            metadata.push((key, value));
        }

        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, v)) => match v.as_integer() {
                Some(a) if a > 0 && (a as u64).is_power_of_two() && a <= u32::MAX as i128 => a as u64,
                _ => {
                    return Err(GgufError::BadValue {
                        path: self.path.into(),
                        key: "general.alignment".into(),
                        msg: format!("must be a power of two, got {v}"),
                    })
                }
            },
        };

        // a tensor info takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes
        self.check_count(n_tensors, 24, &|| "the tensor count".into())?;
        let mut raw = Vec::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = self.string(&|| format!("name of tensor #{i}"))?;
            let tw = |what: &str| format!("{what} of tensor `{name}`");
            let n_dims = self.u32(&|| tw("dimension count"))?;
            if n_dims > MAX_DIMS {
                return Err(GgufError::BadTensor {
                    path: self.path.into(),
                    tensor: name,
                    msg: format!("{n_dims} dimensions (at most {MAX_DIMS} allowed)"),
                });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(self.u64(&|| tw("dimensions"))?);
            }
            let type_id = self.u32(&|| tw("type"))?;
            let offset = self.u64(&|| tw("data offset"))?;
            raw.push((name, dims, type_id, offset));
        }
        let info_end = self.pos as u64;
        let data_offset = info_end.div_ceil(alignment) * alignment;

        let bad =
            |tensor: &str, msg: String| GgufError::BadTensor { path: self.path.into(), tensor: tensor.into(), msg };
        let mut tensors: Vec<TensorInfo> = Vec::with_capacity(raw.len());
        let mut names = HashMap::with_capacity(raw.len());
        for (name, dims, type_id, offset) in raw {
            let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownTensorType {
                path: self.path.into(),
                tensor: name.clone(),
                type_id,
            })?;
            let n_elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or_else(|| bad(&name, format!("dimensions {dims:?} overflow")))?;
            if dims.first().is_some_and(|&ne0| ne0 % ggml_type.block_size() as u64 != 0) {
                return Err(bad(
                    &name,
                    format!(
                        "row length {} is not a multiple of the {} block size {}",
                        dims[0],
                        ggml_type.name(),
                        ggml_type.block_size()
                    ),
                ));
            }
            let n_bytes =
                ggml_type.bytes_for(n_elements).ok_or_else(|| bad(&name, format!("dimensions {dims:?} overflow")))?;
            if offset % alignment != 0 {
                return Err(bad(&name, format!("data offset {offset} is not a multiple of the alignment {alignment}")));
            }
            let start = data_offset.checked_add(offset);
            let end = start.and_then(|s| s.checked_add(n_bytes));
            match (start, end) {
                (Some(_), Some(end)) if end <= self.len() => {}
                _ => {
                    return Err(GgufError::TensorOutOfBounds {
                        path: self.path.into(),
                        tensor: name,
                        start: start.unwrap_or(u64::MAX),
                        end: end.unwrap_or(u64::MAX),
                        file_len: self.len(),
                    })
                }
            }
            if names.insert(name.clone(), ()).is_some() {
                return Err(bad(&name, "appears twice in the tensor table".into()));
            }
            tensors.push(TensorInfo { name, dims, ggml_type, offset, n_elements, n_bytes });
        }
        Ok(Header { version, alignment, data_offset, metadata, tensors })
    }
}

#[cfg(test)]
mod tests;
