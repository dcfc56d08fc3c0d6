//! A complete Hugging Face export: the files transformers' `save_pretrained` writes for a model and
//! its fast tokenizer, so `AutoModelForCausalLM` / `AutoTokenizer` load the directory as they load a
//! Hub checkpoint:
//!
//! * `config.json` (with `torch_dtype` / `dtype` of the weights),
//! * `model.safetensors` (f32 or bf16, HF names and layout, `{"format": "pt"}` metadata), or shards
//!   `model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json` when the weights exceed the
//!   shard size (huggingface_hub's greedy split: a new shard when the next tensor would overflow),
//! * `generation_config.json` (bos / eos / pad ids),
//! * `tokenizer.json`, `tokenizer_config.json` (special tokens, add_bos/eos, chat template, model max
//!   length) and `special_tokens_map.json`, when a tokenizer is given.
//!
//! The directory is replaced as a whole: everything is written into a sibling `.<name>.partial-<pid>`
//! directory first and swapped in only when complete, so an interrupted export never leaves a mix of old
//! and new files. An existing directory is only replaced if it holds nothing but files an export writes.

use crate::error::{ModelError, Result};
use crate::model::CausalLm;
use crate::safetensors_io::atomic_write;
use crate::tensor_source::HostTensor;
use crate::tokenizer_meta::TokenizerMeta;
use burn::tensor::backend::Backend;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Weight dtype of an HF export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportDtype {
    #[default]
    F32,
    Bf16,
}

impl ExportDtype {
    /// transformers' name (`torch_dtype` in config.json).
    pub fn torch_name(self) -> &'static str {
        match self {
            ExportDtype::F32 => "float32",
            ExportDtype::Bf16 => "bfloat16",
        }
    }
    fn bytes_per_elem(self) -> usize {
        match self {
            ExportDtype::F32 => 4,
            ExportDtype::Bf16 => 2,
        }
    }
}

impl std::str::FromStr for ExportDtype {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "fp32" => Ok(ExportDtype::F32),
            "bf16" | "bfloat16" => Ok(ExportDtype::Bf16),
            other => Err(format!("unknown dtype `{other}` (expected f32 or bf16)")),
        }
    }
}

/// Options of [`CausalLm::export_hf`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfExportOptions {
    pub dtype: ExportDtype,
    /// Largest shard in bytes (transformers' `max_shard_size`, default 5 GB).
    pub max_shard_bytes: u64,
}

impl Default for HfExportOptions {
    fn default() -> Self {
        Self { dtype: ExportDtype::F32, max_shard_bytes: 5_000_000_000 }
    }
}

/// Parse a size as transformers' `max_shard_size` does: `5GB` (10^9), `500MB`, `2GiB` (2^30),
/// `100KB`, or a plain number of bytes.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("`{s}` is not a size (e.g. 5GB, 500MB, 2GiB)"))?;
    let mult: f64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KIB" => 1024.0,
        "MIB" => 1024f64.powi(2),
        "GIB" => 1024f64.powi(3),
        "TIB" => 1024f64.powi(4),
        u => return Err(format!("`{s}`: unknown unit `{u}` (B, KB, MB, GB, KiB, MiB, GiB)")),
    };
    let bytes = (n * mult).round();
    if bytes.is_nan() || bytes < 1.0 {
        return Err(format!("`{s}`: the shard size must be at least one byte"));
    }
    Ok(bytes as u64)
}

/// Files (and prefixes) an HF export consists of; a directory holding anything else is not replaced.
fn is_export_file(name: &str) -> bool {
    matches!(
        name,
        "config.json"
            | "generation_config.json"
            | "model.safetensors"
            | "model.safetensors.index.json"
            | "tokenizer.json"
            | "tokenizer_config.json"
            | "special_tokens_map.json"
            | "chat_template.jinja"
    ) || (name.starts_with("model-") && name.ends_with(".safetensors"))
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io { path: path.into(), source }
}

fn encode(t: &HostTensor, dtype: ExportDtype) -> Vec<u8> {
    match dtype {
        ExportDtype::F32 => t.data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ExportDtype::Bf16 => t.data.iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect(),
    }
}

/// Write `tensors` (in this order) as one safetensors file.
fn write_shard(path: &Path, tensors: &[(&String, &HostTensor)], dtype: ExportDtype) -> Result<()> {
    let st_dtype = match dtype {
        ExportDtype::F32 => Dtype::F32,
        ExportDtype::Bf16 => Dtype::BF16,
    };
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, t)| encode(t, dtype)).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, t), b)| {
            TensorView::new(st_dtype, t.shape.clone(), b)
                .map(|v| (name.to_string(), v))
                .map_err(|e| ModelError::Safetensors { path: path.into(), msg: format!("tensor `{name}`: {e}") })
        })
        .collect::<Result<Vec<_>>>()?;
    let meta: std::collections::HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let data = safetensors::serialize(views, Some(meta))
        .map_err(|e| ModelError::Safetensors { path: path.into(), msg: e.to_string() })?;
    atomic_write(path, &data)
}

/// Greedy split into shards of at most `max` bytes (a tensor larger than `max` gets its own shard).
fn shard_plan(sizes: &[u64], max: u64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut acc) = (0, 0u64);
    for (i, &s) in sizes.iter().enumerate() {
        if i > start && acc + s > max {
            out.push(start..i);
            start = i;
            acc = 0;
        }
        acc += s;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// Write the complete export of `tensors` + `config` into `dir` (not yet swapped in).
fn write_all(
    dir: &Path,
    config: serde_json::Value,
    tensors: &BTreeMap<String, HostTensor>,
    tokenizer: Option<&tokenizers::Tokenizer>,
    meta: Option<&TokenizerMeta>,
    opts: &HfExportOptions,
) -> Result<()> {
    let json = |v: &serde_json::Value| serde_json::to_string_pretty(v).expect("json") + "\n";
    atomic_write(&dir.join("config.json"), json(&config).as_bytes())?;
    let mut gen = serde_json::Map::new();
    for k in ["bos_token_id", "eos_token_id", "pad_token_id"] {
        if let Some(v) = config.get(k).filter(|v| !v.is_null()) {
            gen.insert(k.into(), v.clone());
        }
    }
    gen.insert("_from_model_config".into(), true.into());
    atomic_write(&dir.join("generation_config.json"), json(&serde_json::Value::Object(gen)).as_bytes())?;

    let items: Vec<(&String, &HostTensor)> = tensors.iter().collect();
    let bpe = opts.dtype.bytes_per_elem() as u64;
    let sizes: Vec<u64> = items.iter().map(|(_, t)| t.data.len() as u64 * bpe).collect();
    let plan = shard_plan(&sizes, opts.max_shard_bytes);
    if plan.len() <= 1 {
        write_shard(&dir.join("model.safetensors"), &items, opts.dtype)?;
    } else {
        let n = plan.len();
        let mut weight_map = serde_json::Map::new();
        for (i, r) in plan.iter().enumerate() {
            let file = format!("model-{:05}-of-{:05}.safetensors", i + 1, n);
            write_shard(&dir.join(&file), &items[r.clone()], opts.dtype)?;
            for (name, _) in &items[r.clone()] {
                weight_map.insert(name.to_string(), file.clone().into());
            }
        }
        let index = serde_json::json!({
            "metadata": {"total_size": sizes.iter().sum::<u64>()},
            "weight_map": weight_map,
        });
        atomic_write(&dir.join("model.safetensors.index.json"), json(&index).as_bytes())?;
    }

    if let Some(tok) = tokenizer {
        let path = dir.join("tokenizer.json");
        let text = tok.to_string(true).map_err(|e| ModelError::Tokenizer { path: path.clone(), msg: e.to_string() })?;
        atomic_write(&path, text.as_bytes())?;
        let meta = meta.cloned().unwrap_or_default();
        atomic_write(&dir.join("tokenizer_config.json"), json(&meta.tokenizer_config_json()).as_bytes())?;
        atomic_write(&dir.join("special_tokens_map.json"), json(&meta.special_tokens_map_json()).as_bytes())?;
    }
    Ok(())
}

/// Replace `dir` by the export written by `fill` (see the module docs).
pub(crate) fn replace_dir(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            return Err(ModelError::InvalidArgument(format!("{}: exists and is not a directory", dir.display())));
        }
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if !is_export_file(&name) {
                return Err(ModelError::InvalidArgument(format!(
                    "{}: the directory holds `{name}`, which an export does not write; refusing to replace it \
                     (choose an empty or new directory)",
                    dir.display()
                )));
            }
        }
    }
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "export".into());
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    let partial = parent.join(format!(".{name}.partial-{}", std::process::id()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io_err(&partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(io_err(&partial))?;
    if let Err(e) = fill(&partial) {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    let old: Option<PathBuf> = if dir.exists() {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(dir, &old).map_err(io_err(dir))?;
        Some(old)
    } else {
        None
    };
    if let Err(source) = std::fs::rename(&partial, dir) {
        if let Some(old) = &old {
            let _ = std::fs::rename(old, dir);
        }
        return Err(ModelError::Io { path: dir.into(), source });
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
    }
    Ok(())
}

impl<B: Backend> CausalLm<B> {
    /// Write a complete HF checkpoint directory (see the module docs). `meta` supplies the tokenizer's
    /// special tokens and chat template (e.g. [`TokenizerMeta::from_model_path`] of the base model).
    pub fn export_hf(
        &self,
        dir: &Path,
        tokenizer: Option<&tokenizers::Tokenizer>,
        meta: Option<&TokenizerMeta>,
        opts: &HfExportOptions,
    ) -> Result<()> {
        if opts.max_shard_bytes == 0 {
            return Err(ModelError::InvalidArgument("the shard size must be at least one byte".into()));
        }
        let mut config = self.config.to_hf_json();
        let m = config.as_object_mut().expect("object");
        m.insert("torch_dtype".into(), opts.dtype.torch_name().into());
        m.insert("dtype".into(), opts.dtype.torch_name().into());
        let tensors = self.to_hf_tensors();
        replace_dir(dir, |tmp| write_all(tmp, config, &tensors, tokenizer, meta, opts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_transformers() {
        assert_eq!(parse_size("5GB").unwrap(), 5_000_000_000);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("1.5KB").unwrap(), 1500);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn shards_split_greedily() {
        assert_eq!(shard_plan(&[3, 3, 3], 10), vec![0..3]);
        assert_eq!(shard_plan(&[6, 6, 2, 20, 1], 8), vec![0..1, 1..3, 3..4, 4..5]);
        assert_eq!(shard_plan(&[], 8), Vec::<std::ops::Range<usize>>::new());
    }
}
