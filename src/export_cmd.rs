//! `dft export` — a training checkpoint (or any model dft-rs loads) as a Hugging Face directory or a
//! GGUF file.
//!
//! ```text
//! dft export --checkpoint runs/zh/checkpoint-000120 --out exported/ [--dtype f32|bf16] [--shard-size 5GB]
//! dft export --checkpoint runs/zh --gguf model.gguf --type f32|f16|q8_0
//! dft export --checkpoint model.gguf --out hf/              # convert a model
//! ```
//!
//! `--checkpoint` is a `checkpoint-NNNNNN` directory written by `dft train` (its `trainer_state.json`
//! names the base model, whose architecture, tokenizer and chat template are used; the weights come from
//! `model.mpk`), a run directory (its newest checkpoint), or a model path (HF directory or `.gguf`).
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::Backend;
use dft_models::export::parse_size;
use dft_models::gguf::{export_gguf_with_tokenizer, GgufExportType, GgufFile, GgufTokenizerSource};
use dft_models::{load_pretrained, ExportDtype, HfExportOptions, Pretrained};
use dft_train::checkpoint::{list_checkpoints, read_state, LORA_FILE, MODEL_FILE, STATE_FILE};
use dft_train::resolve_model_path;

/// Arguments of `dft export`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// A `checkpoint-NNNNNN` directory, a run directory (its newest checkpoint), or a model (HF directory
    /// or .gguf file).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Write a Hugging Face directory here (config, safetensors, tokenizer files, generation config).
    #[arg(long, required_unless_present = "gguf")]
    pub out: Option<PathBuf>,
    /// HF export: weight dtype, f32 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: ExportDtype,
    /// HF export: largest safetensors shard (e.g. 5GB, 500MB, 2GiB); larger models are sharded with
    /// model.safetensors.index.json.
    #[arg(long, default_value = "5GB", value_parser = parse_size)]
    pub shard_size: u64,
    /// Write a GGUF file (llama.cpp / ollama) here.
    #[arg(long)]
    pub gguf: Option<PathBuf>,
    /// GGUF tensor type: f32, f16 or q8_0 (norms and other 1-D tensors stay f32).
    #[arg(long = "type", default_value = "f16")]
    pub gguf_type: GgufExportType,
    /// Use this Jinja file as the chat template (replacing the base model's).
    #[arg(long)]
    pub chat_template: Option<PathBuf>,
    /// A LoRA adapter directory (PEFT format) to apply on top of --checkpoint.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// LoRA (a LoRA run's checkpoint, or --adapter): fold the adapters into the weights and write a plain
    /// model. Without it, `--out` gets the adapter in PEFT's format (adapter_config.json +
    /// adapter_model.safetensors). GGUF exports are always merged.
    #[arg(long)]
    pub merge: bool,
}

/// What can go wrong in `dft export`.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Model(#[from] dft_models::ModelError),
    #[error(transparent)]
    Train(#[from] dft_train::TrainError),
    #[error("{path}: cannot load the checkpoint weights: {msg}")]
    Record { path: PathBuf, msg: String },
    #[error("{0}")]
    Usage(String),
}

/// The model to export: base model (architecture, tokenizer, chat template) and the path of the base
/// model file, with the checkpoint's weights loaded when `--checkpoint` is a training checkpoint.
pub struct Loaded<B: Backend> {
    pub pre: Pretrained<B>,
    pub base_path: PathBuf,
    pub name: String,
}

fn checkpoint_dir(path: &Path) -> Option<PathBuf> {
    if path.join(STATE_FILE).is_file() {
        return Some(path.to_path_buf());
    }
    list_checkpoints(path).last().map(|(_, p)| p.clone())
}

/// Load what `--checkpoint` names (see the module docs).
pub fn load<B: Backend>(checkpoint: &Path, device: &B::Device) -> Result<Loaded<B>, ExportError> {
    if !checkpoint.exists() {
        return Err(ExportError::Usage(format!("{}: no such file or directory", checkpoint.display())));
    }
    let name =
        |p: &Path| p.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "dft-rs model".into());
    let Some(ckpt) = checkpoint_dir(checkpoint).filter(|_| !checkpoint.join("config.json").is_file()) else {
        if checkpoint.is_dir() && !checkpoint.join("config.json").is_file() {
            return Err(ExportError::Usage(format!(
                "{}: neither a checkpoint (trainer_state.json), a run directory with checkpoint-* folders, \
                 nor an HF model directory (config.json)",
                checkpoint.display()
            )));
        }
        let pre = load_pretrained::<B>(checkpoint, device)?;
        return Ok(Loaded { pre, base_path: checkpoint.to_path_buf(), name: name(checkpoint) });
    };
    let state = read_state(&ckpt)?;
    let base = resolve_model_path(&state.config.model.path)?;
    if !base.exists() {
        return Err(ExportError::Usage(format!(
            "{}: the base model `{}` (model.path in trainer_state.json) does not exist here; run from the \
             directory training ran in",
            ckpt.display(),
            base.display()
        )));
    }
    eprintln!("checkpoint {} (step {}), base model {}", ckpt.display(), state.step, base.display());
    let mut pre = load_pretrained::<B>(&base, device)?;
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    if let Some(spec) = &state.config.lora {
        // A LoRA run's checkpoint holds only the trainable parts.
        let lora_file = ckpt.join(LORA_FILE);
        let model = pre.model.with_lora(spec, 0)?;
        let parts = model
            .lora_parts()
            .expect("LoRA model")
            .load_file(lora_file.clone(), &recorder, device)
            .map_err(|e| ExportError::Record { path: lora_file.with_extension("mpk"), msg: e.to_string() })?;
        pre.model = model.with_lora_parts(parts)?;
    } else {
        let model_file = ckpt.join(MODEL_FILE);
        pre.model = pre
            .model
            .load_file(model_file.clone(), &recorder, device)
            .map_err(|e| ExportError::Record { path: model_file.with_extension("mpk"), msg: e.to_string() })?;
    }
    let run = ckpt.parent().map(name).unwrap_or_default();
    Ok(Loaded { pre, base_path: base, name: format!("{run}-{}", name(&ckpt)) })
}

pub fn run<B: Backend>(args: &ExportArgs) -> Result<(), ExportError> {
    let device = B::Device::default();
    let mut loaded = load::<B>(&args.checkpoint, &device)?;
    if let Some(p) = &args.chat_template {
        let text =
            std::fs::read_to_string(p).map_err(|source| dft_models::ModelError::Io { path: p.clone(), source })?;
        // compile it now, so a broken template is reported before anything is written
        dft_models::ChatTemplate::new(text.clone(), loaded.pre.meta.special_strings(), p)?;
        loaded.pre.meta.chat_template = Some(text);
    }
    if let Some(dir) = &args.adapter {
        loaded.pre.model = loaded.pre.model.load_adapter(dir)?;
    }
    if args.merge && loaded.pre.model.lora.is_none() {
        return Err(ExportError::Usage(
            "--merge: there is no LoRA adapter to merge (give --adapter DIR or a LoRA run's checkpoint)".into(),
        ));
    }
    if loaded.pre.model.lora.is_some() && !args.merge {
        if let Some(out) = &args.out {
            let base = loaded.base_path.display().to_string();
            loaded.pre.model.save_adapter(out, &base)?;
            eprintln!("wrote {} (LoRA adapter, PEFT format; --merge writes the merged model instead)", out.display());
        }
    }
    let has_adapter = loaded.pre.model.lora.is_some();
    if has_adapter && (args.merge || args.gguf.is_some()) {
        loaded.pre.model = loaded.pre.model.merge_lora();
    }
    let pre = &loaded.pre;
    if let Some(out) = args.out.as_ref().filter(|_| !has_adapter || args.merge) {
        let opts = HfExportOptions { dtype: args.dtype, max_shard_bytes: args.shard_size };
        pre.model.export_hf(out, pre.tokenizer.as_ref(), Some(&pre.meta), &opts)?;
        eprintln!("wrote {} ({}, HF format)", out.display(), args.dtype.torch_name());
    }
    if let Some(out) = &args.gguf {
        let base_gguf = if loaded.base_path.extension().is_some_and(|e| e == "gguf") {
            Some(GgufFile::open(&loaded.base_path).map_err(dft_models::ModelError::from)?)
        } else {
            None
        };
        let source = match &base_gguf {
            Some(f) => GgufTokenizerSource::Gguf(f),
            None => GgufTokenizerSource::HfDir(&loaded.base_path),
        };
        export_gguf_with_tokenizer(&pre.model, out, args.gguf_type, source, Some(&pre.meta), &loaded.name)?;
        eprintln!("wrote {} ({:?})", out.display(), args.gguf_type);
    }
    Ok(())
}
