//! GGUF export: a [`CausalLm`] as a llama.cpp / ollama model file (GGUF v3).
//!
//! * [`GgufWriter`] writes any metadata and tensors (F32, F16, Q8_0): header, key/values, tensor infos,
//!   then the data, every tensor aligned to `general.alignment` (32), streamed to a temporary file that is
//!   renamed into place when complete.
//! * [`export_gguf`] lays a model out as llama.cpp's `convert_hf_to_gguf.py` does for `llama`, `gemma2`
//!   and `gemma3`: its tensor names (`blk.N.attn_q.weight`, ...), the rows of `attn_q` / `attn_k`
//!   permuted per head for llama (interleaved RoPE pairs), Gemma RMSNorm weights stored as `w + 1`,
//!   1-D tensors in F32 and matrices in the requested type (Q8_0 falls back to F16 for rows not a
//!   multiple of 32), `general.file_type`, the `{arch}.*` hyper-parameters and the tokenizer
//!   (`tokenizer.ggml.*` copied from the base model's GGUF, or converted from the base HF directory's
//!   `tokenizer.model` / `tokenizer.json` by [`super::hf_vocab`]; the chat template from the checkpoint).
//!   Q8_0 quantises as gguf-py's `quants.Q8_0` (scale `max|x| / 127` stored as f16, values
//!   `round(x / scale)` half away from zero).
//!
//! Every export is read back before it is renamed into place: the configuration our importer derives
//! from the file must equal the model's, so a hyper-parameter GGUF cannot express (e.g. a non-standard
//! `query_pre_attn_scalar`) is an error instead of a silently different model.

use super::{GgmlType, GgufError, GgufFile, GgufModel, MetaArray, MetaValue};
use crate::config::{Arch, ModelConfig};
use crate::error::{ModelError, Result};
use crate::model::CausalLm;
use crate::tensor_source::HostTensor;
use crate::tokenizer_meta::TokenizerMeta;
use burn::tensor::backend::Backend;
use std::io::Write;
use std::path::Path;

/// Alignment of tensor data (GGUF's default, `general.alignment` is not written).
pub const ALIGNMENT: u64 = 32;

/// Tensor type of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufExportType {
    F32,
    F16,
    Q8_0,
}

impl GgufExportType {
    /// llama.cpp's `general.file_type` (`LLAMA_FTYPE_ALL_F32` = 0, `MOSTLY_F16` = 1, `MOSTLY_Q8_0` = 7).
    pub fn file_type(self) -> u32 {
        match self {
            GgufExportType::F32 => 0,
            GgufExportType::F16 => 1,
            GgufExportType::Q8_0 => 7,
        }
    }
}

impl std::str::FromStr for GgufExportType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(GgufExportType::F32),
            "f16" => Ok(GgufExportType::F16),
            "q8_0" => Ok(GgufExportType::Q8_0),
            other => Err(format!("unknown GGUF type `{other}` (expected f32, f16 or q8_0)")),
        }
    }
}

/// One tensor to write: GGUF name, row-major shape, f32 values, target type.
pub struct PendingTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    pub ty: GgmlType,
}

/// A GGUF file being assembled.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<PendingTensor>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn array_type_id(a: &MetaArray) -> u32 {
    match a {
        MetaArray::U8(_) => 0,
        MetaArray::I8(_) => 1,
        MetaArray::U16(_) => 2,
        MetaArray::I16(_) => 3,
        MetaArray::U32(_) => 4,
        MetaArray::I32(_) => 5,
        MetaArray::F32(_) => 6,
        MetaArray::Bool(_) => 7,
        MetaArray::String(_) => 8,
        MetaArray::Array(_) => 9,
        MetaArray::U64(_) => 10,
        MetaArray::I64(_) => 11,
        MetaArray::F64(_) => 12,
    }
}

fn value_type_id(v: &MetaValue) -> u32 {
    match v {
        MetaValue::U8(_) => 0,
        MetaValue::I8(_) => 1,
        MetaValue::U16(_) => 2,
        MetaValue::I16(_) => 3,
        MetaValue::U32(_) => 4,
        MetaValue::I32(_) => 5,
        MetaValue::F32(_) => 6,
        MetaValue::Bool(_) => 7,
        MetaValue::String(_) => 8,
        MetaValue::Array(_) => 9,
        MetaValue::U64(_) => 10,
        MetaValue::I64(_) => 11,
        MetaValue::F64(_) => 12,
    }
}

fn put_array(out: &mut Vec<u8>, a: &MetaArray) {
    out.extend(array_type_id(a).to_le_bytes());
    out.extend((a.len() as u64).to_le_bytes());
    match a {
        MetaArray::U8(v) => out.extend(v),
        MetaArray::I8(v) => out.extend(v.iter().map(|x| *x as u8)),
        MetaArray::U16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        MetaArray::I16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        MetaArray::U32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        MetaArray::I32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        MetaArray::F32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        MetaArray::Bool(v) => out.extend(v.iter().map(|x| u8::from(*x))),
        MetaArray::String(v) => v.iter().for_each(|s| put_str(out, s)),
        MetaArray::Array(v) => v.iter().for_each(|x| put_array(out, x)),
        MetaArray::U64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        MetaArray::I64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        MetaArray::F64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
    }
}

fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.push(*x as u8),
        MetaValue::U16(x) => out.extend(x.to_le_bytes()),
        MetaValue::I16(x) => out.extend(x.to_le_bytes()),
        MetaValue::U32(x) => out.extend(x.to_le_bytes()),
        MetaValue::I32(x) => out.extend(x.to_le_bytes()),
        MetaValue::F32(x) => out.extend(x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(u8::from(*x)),
        MetaValue::String(s) => put_str(out, s),
        MetaValue::Array(a) => put_array(out, a),
        MetaValue::U64(x) => out.extend(x.to_le_bytes()),
        MetaValue::I64(x) => out.extend(x.to_le_bytes()),
        MetaValue::F64(x) => out.extend(x.to_le_bytes()),
    }
}

/// Q8_0 blocks of 32 values as gguf-py's `quants.Q8_0.quantize_blocks`.
pub fn quantize_q8_0(data: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 32 * 34);
    for block in data.chunks(32) {
        let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend(half::f16::from_f32(d).to_le_bytes());
        out.extend(block.iter().map(|x| (x * id).round() as i8 as u8));
    }
    out
}

fn encode_tensor(t: &PendingTensor) -> Vec<u8> {
    match t.ty {
        GgmlType::F32 => t.data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        GgmlType::F16 => t.data.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect(),
        GgmlType::Q8_0 => quantize_q8_0(&t.data),
        other => unreachable!("writer accepts F32, F16, Q8_0, got {other:?}"),
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) a metadata key.
    pub fn set(&mut self, key: &str, value: MetaValue) {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
    }

    /// Add a tensor (F32, F16 or Q8_0; Q8_0 needs rows that are a multiple of 32).
    pub fn add_tensor(&mut self, t: PendingTensor) -> Result<()> {
        let bad = |msg: String| ModelError::InvalidArgument(format!("GGUF tensor `{}`: {msg}", t.name));
        if !matches!(t.ty, GgmlType::F32 | GgmlType::F16 | GgmlType::Q8_0) {
            return Err(bad(format!("cannot write type {:?}", t.ty)));
        }
        if t.shape.iter().product::<usize>() != t.data.len() {
            return Err(bad(format!("{} values for shape {:?}", t.data.len(), t.shape)));
        }
        if t.ty == GgmlType::Q8_0 && t.shape.last().is_none_or(|n| n % 32 != 0) {
            return Err(bad(format!("Q8_0 needs rows that are a multiple of 32, shape {:?}", t.shape)));
        }
        self.tensors.push(t);
        Ok(())
    }

    /// Write the file atomically (temporary file, then rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        let io = |source| ModelError::Io { path: path.into(), source };
        let mut head = Vec::new();
        head.extend(b"GGUF");
        head.extend(3u32.to_le_bytes());
        head.extend((self.tensors.len() as u64).to_le_bytes());
        head.extend((self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut head, k);
            head.extend(value_type_id(v).to_le_bytes());
            put_value(&mut head, v);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut head, &t.name);
            head.extend((t.shape.len() as u32).to_le_bytes());
            for d in t.shape.iter().rev() {
                head.extend((*d as u64).to_le_bytes());
            }
            head.extend(t.ty.id().to_le_bytes());
            head.extend(offset.to_le_bytes());
            let n = t.ty.bytes_for(t.data.len() as u64).expect("checked in add_tensor");
            offset += n.div_ceil(ALIGNMENT) * ALIGNMENT;
        }
        head.resize((head.len() as u64).div_ceil(ALIGNMENT) as usize * ALIGNMENT as usize, 0);

        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "out.gguf".into());
        let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
        let result = (|| -> std::io::Result<()> {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            f.write_all(&head)?;
            for t in &self.tensors {
                let bytes = encode_tensor(t);
                f.write_all(&bytes)?;
                let pad = (bytes.len() as u64).div_ceil(ALIGNMENT) * ALIGNMENT - bytes.len() as u64;
                f.write_all(&vec![0u8; pad as usize])?;
            }
            f.into_inner().map_err(|e| e.into_error())?.sync_all()
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// GGUF name of HF tensor `hf` (inverse of [`super::gguf_to_hf_name`]).
pub fn hf_to_gguf_name(arch: Arch, hf: &str) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (part, suffix) = rest.rsplit_once('.')?;
    let gemma = matches!(arch, Arch::Gemma2 | Arch::Gemma3);
    let g = match part {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" if gemma => "post_attention_norm",
        "post_attention_layernorm" => "ffn_norm",
        "pre_feedforward_layernorm" if gemma => "ffn_norm",
        "post_feedforward_layernorm" if gemma => "post_ffw_norm",
        "self_attn.q_norm" if arch == Arch::Gemma3 => "attn_q_norm",
        "self_attn.k_norm" if arch == Arch::Gemma3 => "attn_k_norm",
        _ => return None,
    };
    Some(format!("blk.{layer}.{g}.{suffix}"))
}

/// llama.cpp's `permute`: HF row `h*2d + s*d + i` becomes GGUF row `h*2d + 2i + s`.
fn permute_rows(data: &[f32], rows: usize, n_head: usize) -> Vec<f32> {
    let cols = data.len() / rows.max(1);
    let d = rows / n_head / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for s in 0..2 {
            for i in 0..d {
                let src = h * 2 * d + s * d + i;
                let dst = h * 2 * d + 2 * i + s;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

fn arch_name(arch: Arch) -> &'static str {
    match arch {
        Arch::Llama => "llama",
        Arch::Gemma2 => "gemma2",
        Arch::Gemma3 => "gemma3",
    }
}

/// The `{arch}.*` and `general.*` metadata of a model.
fn model_metadata(w: &mut GgufWriter, cfg: &ModelConfig, name: &str, ty: GgufExportType) {
    let a = arch_name(cfg.arch);
    let k = |s: &str| format!("{a}.{s}");
    let u32v = |v: usize| MetaValue::U32(v as u32);
    w.set("general.architecture", MetaValue::String(a.into()));
    w.set("general.type", MetaValue::String("model".into()));
    w.set("general.name", MetaValue::String(name.into()));
    w.set("general.file_type", MetaValue::U32(ty.file_type()));
    if ty == GgufExportType::Q8_0 {
        w.set("general.quantization_version", MetaValue::U32(2));
    }
    w.set(&k("context_length"), u32v(cfg.max_position_embeddings));
    w.set(&k("embedding_length"), u32v(cfg.hidden_size));
    w.set(&k("block_count"), u32v(cfg.num_hidden_layers));
    w.set(&k("feed_forward_length"), u32v(cfg.intermediate_size));
    w.set(&k("attention.head_count"), u32v(cfg.num_attention_heads));
    w.set(&k("attention.head_count_kv"), u32v(cfg.num_key_value_heads));
    w.set(&k("attention.layer_norm_rms_epsilon"), MetaValue::F32(cfg.rms_norm_eps as f32));
    w.set(&k("rope.freq_base"), MetaValue::F32(cfg.rope_theta as f32));
    w.set(&k("attention.key_length"), u32v(cfg.head_dim));
    w.set(&k("attention.value_length"), u32v(cfg.head_dim));
    match cfg.arch {
        Arch::Llama => {
            w.set(&k("vocab_size"), u32v(cfg.vocab_size));
            w.set(&k("rope.dimension_count"), u32v(cfg.head_dim));
        }
        Arch::Gemma2 => {
            if let Some(v) = cfg.attn_logit_softcapping {
                w.set(&k("attn_logit_softcapping"), MetaValue::F32(v as f32));
            }
            if let Some(v) = cfg.final_logit_softcapping {
                w.set(&k("final_logit_softcapping"), MetaValue::F32(v as f32));
            }
            if let Some(v) = cfg.sliding_window {
                w.set(&k("attention.sliding_window"), u32v(v));
            }
        }
        Arch::Gemma3 => {
            if let Some(v) = cfg.sliding_window {
                w.set(&k("attention.sliding_window"), u32v(v));
            }
        }
    }
}

/// Where an exported GGUF's tokenizer comes from.
#[derive(Debug, Clone, Copy)]
pub enum GgufTokenizerSource<'a> {
    /// The base model's GGUF: its `tokenizer.*` keys are copied.
    Gguf(&'a GgufFile),
    /// The base model's Hugging Face directory: `tokenizer.model` / `tokenizer.json` converted as
    /// llama.cpp's converter does ([`super::hf_vocab`]).
    HfDir(&'a Path),
    /// No tokenizer (llama.cpp cannot run such a file; for tests and weight-only exchange).
    None,
}

/// Tokenizer metadata: the source's `tokenizer.*` keys and the chat template of `meta` (if any).
fn tokenizer_metadata(
    w: &mut GgufWriter,
    source: GgufTokenizerSource<'_>,
    meta: Option<&TokenizerMeta>,
    vocab_size: usize,
) -> Result<()> {
    match source {
        GgufTokenizerSource::Gguf(f) => {
            for (k, v) in f.metadata() {
                if k.starts_with("tokenizer.") {
                    w.set(k, v.clone());
                }
            }
        }
        GgufTokenizerSource::HfDir(dir) => {
            let kv = super::hf_vocab::hf_tokenizer_metadata(dir, vocab_size)?.ok_or_else(|| {
                ModelError::InvalidArgument(format!(
                    "{} has neither tokenizer.model nor tokenizer.json, so a GGUF of it would have no tokenizer",
                    dir.display()
                ))
            })?;
            for (k, v) in kv {
                w.set(&k, v);
            }
        }
        GgufTokenizerSource::None => {}
    }
    if let Some(t) = meta.and_then(|m| m.chat_template.as_ref()) {
        w.set("tokenizer.chat_template", MetaValue::String(t.clone()));
    }
    Ok(())
}

/// Export `model` as GGUF (see the module docs). `base` is the GGUF the model was loaded or trained
/// from: its tokenizer is copied (without one the file has no tokenizer, which llama.cpp needs).
pub fn export_gguf<B: Backend>(
    model: &CausalLm<B>,
    path: &Path,
    ty: GgufExportType,
    base: Option<&GgufFile>,
    meta: Option<&TokenizerMeta>,
    name: &str,
) -> Result<()> {
    let source = base.map_or(GgufTokenizerSource::None, GgufTokenizerSource::Gguf);
    export_gguf_with_tokenizer(model, path, ty, source, meta, name)
}

/// [`export_gguf`] with the tokenizer taken from `source` (a base GGUF or an HF directory).
pub fn export_gguf_with_tokenizer<B: Backend>(
    model: &CausalLm<B>,
    path: &Path,
    ty: GgufExportType,
    source: GgufTokenizerSource<'_>,
    meta: Option<&TokenizerMeta>,
    name: &str,
) -> Result<()> {
    let cfg = &model.config;
    let mut w = GgufWriter::new();
    model_metadata(&mut w, cfg, name, ty);
    tokenizer_metadata(&mut w, source, meta, cfg.vocab_size)?;
    let gemma = cfg.arch.is_gemma();
    // llama.cpp's tensor order: embeddings, blocks, output norm, output.
    let mut hf: Vec<(String, HostTensor)> = model.to_hf_tensors().into_iter().collect();
    let rank = |n: &str| match n {
        "model.embed_tokens.weight" => (0, 0),
        "model.norm.weight" => (2, 0),
        "lm_head.weight" => (3, 0),
        _ => (1, n.split('.').nth(2).and_then(|l| l.parse::<usize>().ok()).unwrap_or(0)),
    };
    hf.sort_by(|(a, _), (b, _)| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    for (hf_name, t) in hf {
        let name = hf_to_gguf_name(cfg.arch, &hf_name)
            .ok_or_else(|| ModelError::InvalidArgument(format!("no GGUF name for tensor `{hf_name}`")))?;
        let mut data = t.data;
        if cfg.arch == Arch::Llama && name.contains(".attn_q.") {
            data = permute_rows(&data, t.shape[0], cfg.num_attention_heads);
        } else if cfg.arch == Arch::Llama && name.contains(".attn_k.") {
            data = permute_rows(&data, t.shape[0], cfg.num_key_value_heads);
        }
        if gemma && name.contains("norm.weight") {
            data.iter_mut().for_each(|x| *x += 1.0);
        }
        let matrix = t.shape.len() >= 2 && !name.ends_with("_norm.weight");
        let gty = match ty {
            _ if !matrix => GgmlType::F32,
            GgufExportType::F32 => GgmlType::F32,
            GgufExportType::F16 => GgmlType::F16,
            GgufExportType::Q8_0 if t.shape.last().is_some_and(|n| n % 32 == 0) => GgmlType::Q8_0,
            GgufExportType::Q8_0 => GgmlType::F16,
        };
        w.add_tensor(PendingTensor { name, shape: t.shape, data, ty: gty })?;
    }
    // Write next to the target, check, then move into place.
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "out.gguf".into());
    let staged = dir.join(format!(".{file}.staged{}.gguf", std::process::id()));
    w.write(&staged)?;
    let check = (|| -> Result<()> {
        let back = GgufModel::open(&staged)?;
        let mut got = back.config().clone();
        got.bos_token_id = cfg.bos_token_id;
        got.eos_token_ids = cfg.eos_token_ids.clone();
        got.pad_token_id = cfg.pad_token_id;
        // GGUF stores these as f32
        if got.rms_norm_eps as f32 == cfg.rms_norm_eps as f32 {
            got.rms_norm_eps = cfg.rms_norm_eps;
        }
        if got.rope_theta as f32 == cfg.rope_theta as f32 {
            got.rope_theta = cfg.rope_theta;
        }
        if &got != cfg {
            let (a, b) = (got.to_hf_json(), cfg.to_hf_json());
            let diff: Vec<String> = b
                .as_object()
                .expect("object")
                .iter()
                .filter(|(k, v)| a.get(k.as_str()) != Some(v))
                .map(|(k, v)| {
                    format!("{k} = {v} (GGUF gives {})", a.get(k.as_str()).unwrap_or(&serde_json::Value::Null))
                })
                .collect();
            return Err(ModelError::Gguf(GgufError::Unsupported {
                path: path.into(),
                msg: format!(
                    "a {} GGUF cannot express this model's configuration: {}",
                    arch_name(cfg.arch),
                    diff.join(", ")
                ),
            }));
        }
        Ok(())
    })();
    if let Err(e) = check {
        let _ = std::fs::remove_file(&staged);
        return Err(e);
    }
    std::fs::rename(&staged, path).map_err(|source| ModelError::Io { path: path.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_inverts_the_importers_unpermute() {
        let (rows, cols, heads) = (8, 3, 2);
        let data: Vec<f32> = (0..rows * cols).map(|x| x as f32).collect();
        let p = permute_rows(&data, rows, heads);
        assert_ne!(p, data);
        assert_eq!(super::super::hf::unpermute_rows_for_tests(&p, rows, heads), data);
    }

    #[test]
    fn names_round_trip() {
        for arch in [Arch::Llama, Arch::Gemma2, Arch::Gemma3] {
            for hf in [
                "model.embed_tokens.weight",
                "model.layers.3.self_attn.q_proj.weight",
                "model.layers.0.mlp.down_proj.weight",
                "model.layers.1.post_attention_layernorm.weight",
                "model.norm.weight",
            ] {
                let g = hf_to_gguf_name(arch, hf).unwrap();
                assert_eq!(super::super::gguf_to_hf_name(arch, &g).as_deref(), Some(hf), "{arch:?} {hf}");
            }
        }
        assert_eq!(
            hf_to_gguf_name(Arch::Gemma3, "model.layers.2.self_attn.k_norm.weight").unwrap(),
            "blk.2.attn_k_norm.weight"
        );
        assert_eq!(
            hf_to_gguf_name(Arch::Gemma2, "model.layers.2.pre_feedforward_layernorm.weight").unwrap(),
            "blk.2.ffn_norm.weight"
        );
    }

    #[test]
    fn q8_0_blocks() {
        let data: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) / 8.0).collect();
        let q = quantize_q8_0(&data);
        assert_eq!(q.len(), 34);
        let d = half::f16::from_le_bytes([q[0], q[1]]).to_f32();
        assert!((d - 2.0 / 127.0).abs() < 1e-5);
        assert_eq!(q[2] as i8, -127);
        let back = super::super::quant::dequantize(GgmlType::Q8_0, &q, 32).unwrap();
        for (a, b) in back.iter().zip(&data) {
            assert!((a - b).abs() <= d / 2.0 + 1e-6);
        }
    }
}
