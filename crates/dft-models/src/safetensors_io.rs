//! HF safetensors checkpoints: one `model.safetensors` or shards listed in `model.safetensors.index.json`.
//! Reading is memory-mapped and lazy (one tensor at a time, converted to f32); writing is atomic.

use crate::error::{ModelError, Result};
use crate::tensor_source::{HostTensor, TensorSource};
use memmap2::Mmap;
use safetensors::tensor::{Dtype, SafeTensors, TensorInfo};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

struct Shard {
    path: PathBuf,
    mmap: Mmap,
    data_start: usize,
    tensors: BTreeMap<String, TensorInfo>,
}

/// A checkpoint directory's safetensors weights.
pub struct SafetensorsCheckpoint {
    shards: Vec<Shard>,
    /// tensor name -> shard index
    index: BTreeMap<String, usize>,
    origin: PathBuf,
}

fn open_shard(path: &Path) -> Result<Shard> {
    let file = File::open(path).map_err(|source| ModelError::Io { path: path.into(), source })?;
    // SAFETY: the file is opened read-only; we never hand out references that outlive the map.
    let mmap = unsafe { Mmap::map(&file) }.map_err(|source| ModelError::Io { path: path.into(), source })?;
    let bad = |msg: String| ModelError::Safetensors { path: path.into(), msg };
    let (header_len, meta) = SafeTensors::read_metadata(&mmap)
        .map_err(|e| bad(format!("{e} (file of {} bytes: truncated or corrupt?)", mmap.len())))?;
    let data_start = 8 + header_len;
    let data_len = mmap.len().saturating_sub(data_start);
    let mut tensors = BTreeMap::new();
    for (name, info) in meta.tensors() {
        let (a, b) = info.data_offsets;
        if a > b || b > data_len {
            return Err(bad(format!(
                "tensor `{name}`: data [{a}, {b}) lies outside the file's {data_len} data bytes (truncated?)"
            )));
        }
        let want = info.shape.iter().product::<usize>() * info.dtype.bitsize() / 8;
        if b - a != want {
            return Err(bad(format!(
                "tensor `{name}`: {} bytes for shape {:?} of {:?}",
                b - a,
                info.shape,
                info.dtype
            )));
        }
        tensors.insert(name, info.clone());
    }
    Ok(Shard { path: path.into(), mmap, data_start, tensors })
}

impl SafetensorsCheckpoint {
    /// Open `dir/model.safetensors`, or the shards named by `dir/model.safetensors.index.json`,
    /// or a single `.safetensors` file given directly.
    pub fn open(path: &Path) -> Result<Self> {
        let mut shards = Vec::new();
        if path.is_file() {
            shards.push(open_shard(path)?);
        } else {
            let index_path = path.join("model.safetensors.index.json");
            let single = path.join("model.safetensors");
            if index_path.is_file() {
                let text = std::fs::read_to_string(&index_path)
                    .map_err(|source| ModelError::Io { path: index_path.clone(), source })?;
                let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| ModelError::Safetensors {
                    path: index_path.clone(),
                    msg: format!("invalid JSON: {e}"),
                })?;
                let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| ModelError::Safetensors {
                    path: index_path.clone(),
                    msg: "missing object `weight_map`".into(),
                })?;
                let mut files: Vec<String> = map.values().filter_map(|f| f.as_str().map(String::from)).collect();
                files.sort();
                files.dedup();
                for f in files {
                    shards.push(open_shard(&path.join(f))?);
                }
            } else if single.is_file() {
                shards.push(open_shard(&single)?);
            } else {
                return Err(ModelError::Io {
                    path: single,
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no model.safetensors or model.safetensors.index.json",
                    ),
                });
            }
        }
        let mut index = BTreeMap::new();
        for (i, s) in shards.iter().enumerate() {
            for name in s.tensors.keys() {
                index.insert(name.clone(), i);
            }
        }
        Ok(Self { shards, index, origin: path.into() })
    }
}

fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::F64 => bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        _ => return None,
    })
}

impl TensorSource for SafetensorsCheckpoint {
    fn names(&self) -> Vec<String> {
        self.index.keys().cloned().collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.index.get(name).map(|&i| self.shards[i].tensors[name].shape.clone())
    }

    fn load(&self, name: &str) -> Result<HostTensor> {
        let &i = self
            .index
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor { path: self.origin.clone(), tensor: name.into() })?;
        let shard = &self.shards[i];
        let info = &shard.tensors[name];
        let (a, b) = info.data_offsets;
        let bytes = &shard.mmap[shard.data_start + a..shard.data_start + b];
        let data = to_f32(info.dtype, bytes).ok_or_else(|| ModelError::UnsupportedDtype {
            path: shard.path.clone(),
            tensor: name.into(),
            dtype: format!("{:?}", info.dtype),
        })?;
        Ok(HostTensor::new(info.shape.clone(), data))
    }

    fn origin(&self) -> PathBuf {
        self.origin.clone()
    }
}

/// Write f32 tensors to `path` as safetensors, atomically (temp file + rename).
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, HostTensor>) -> Result<()> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, t)| {
            let bytes: &[u8] = bytemuck_f32(&t.data);
            let view = safetensors::tensor::TensorView::new(Dtype::F32, t.shape.clone(), bytes)
                .map_err(|e| ModelError::Safetensors { path: path.into(), msg: format!("tensor `{name}`: {e}") })?;
            Ok((name.clone(), view))
        })
        .collect::<Result<_>>()?;
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let bytes = safetensors::tensor::serialize(views, Some(meta))
        .map_err(|e| ModelError::Safetensors { path: path.into(), msg: format!("{e}") })?;
    atomic_write(path, &bytes)
}

fn bytemuck_f32(data: &[f32]) -> &[u8] {
    #[cfg(not(target_endian = "little"))]
    compile_error!("safetensors writing assumes a little-endian host");
    // SAFETY: f32 has no padding and any byte pattern is a valid u8; little-endian hosts only
    // (safetensors is little-endian), checked at compile time just above.
    unsafe { std::slice::from_raw_parts(data.as_ptr() as *const u8, std::mem::size_of_val(data)) }
}

/// Write `bytes` to `path` via a temp file in the same directory and a rename, so a crash never
/// leaves a half-written file under the final name.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let io = |source| ModelError::Io { path: path.into(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp =
        dir.join(format!(".{}.tmp{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("out"), std::process::id()));
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    written.map_err(|source| {
        // Never leave the half-written temporary behind (a full disk stays full otherwise).
        std::fs::remove_file(&tmp).ok();
        ModelError::Write { path: path.into(), source }
    })
}
