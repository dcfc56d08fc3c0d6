//! `dft layers` — per-block logit-lens entropy of a model on target-language text and its English
//! counterpart, the latent-English probe and the critical layers (i, j) it suggests (METHOD.md §4).
//!
//! Writes `layers.json`, `layers.md` (table + the detector's reasons) and `layers.svg` (entropy per
//! block, target vs English) under `--out`, and prints the table. `--from-json` re-detects and re-renders
//! a saved report without running the model.
use std::path::PathBuf;
use std::time::Instant;

use dft_layers_select::{
    analyze, builtin_word_pairs, load_parallel, read_word_pairs, AnalysisOptions, DetectOptions, LayerReport,
    LayersError, LensOptions,
};
use dft_models::load_pretrained;

use crate::Inner;

#[derive(clap::Args, Debug)]
pub struct LayersArgs {
    /// HF checkpoint directory, .gguf file, `smollm2` or `gemma3` (fetched on first use).
    #[arg(long, default_value = "smollm2")]
    model: String,
    /// A directory of line-aligned files (FLORES: `zho_Hans.devtest`, `eng_Latn.devtest`, …) or the files
    /// themselves: TARGET [ENGLISH]. (`--data` is accepted as an alias.)
    #[arg(long = "data-dir", alias = "data", num_args = 1..=2, required_unless_present = "from_json")]
    data: Vec<PathBuf>,
    /// Re-run only the detection and the outputs on a saved `layers.json` (no model run), e.g. with
    /// other detector settings or --i/--j.
    #[arg(long, conflicts_with = "data")]
    from_json: Option<PathBuf>,
    /// Target language (`zh`, `vi`, `ar`, … or a FLORES code).
    #[arg(long, default_value = "zh")]
    lang: String,
    /// Use the first N sentences.
    #[arg(long)]
    limit: Option<usize>,
    /// Output directory.
    #[arg(long, default_value = "runs/layers")]
    out: PathBuf,
    /// Sentences per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Word pairs (`target<TAB>english` per line) for the latent-English probe [default: bundled list for
    /// zh, vi, ar].
    #[arg(long)]
    pairs: Option<PathBuf>,
    /// Skip the latent-English probe.
    #[arg(long)]
    no_latent: bool,
    /// Override the detected Language Conversion block i (with --j).
    #[arg(long, requires = "j")]
    i: Option<usize>,
    /// Override the detected English Thinking block j (with --i).
    #[arg(long, requires = "i")]
    j: Option<usize>,
    /// Detector: first block considered (1 skips the embeddings).
    #[arg(long, default_value_t = DetectOptions::default().start)]
    start: usize,
    /// Detector: running-median width in blocks.
    #[arg(long, default_value_t = DetectOptions::default().smooth_window)]
    smooth: usize,
    /// Detector: a step is steep when it falls by this fraction of the level.
    #[arg(long, default_value_t = DetectOptions::default().steep_rel)]
    steep_rel: f64,
    /// Detector: a drop must remove this fraction of its starting value.
    #[arg(long, default_value_t = DetectOptions::default().min_rel_drop)]
    min_rel_drop: f64,
    /// Detector: minimum j − i.
    #[arg(long, default_value_t = DetectOptions::default().min_spacing)]
    min_spacing: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum LayersCmdError {
    #[error(transparent)]
    Layers(#[from] LayersError),
    #[error(transparent)]
    Model(#[from] dft_models::ModelError),
    #[error(transparent)]
    Train(#[from] dft_train::TrainError),
    #[error("{0}: the checkpoint has no tokenizer (tokenizer.json)")]
    NoTokenizer(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn detect_options(args: &LayersArgs) -> DetectOptions {
    DetectOptions {
        start: args.start,
        smooth_window: args.smooth,
        steep_rel: args.steep_rel,
        min_rel_drop: args.min_rel_drop,
        min_spacing: args.min_spacing,
        ..Default::default()
    }
}

pub fn run(args: LayersArgs) -> Result<(), LayersCmdError> {
    let started = Instant::now();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let report = match &args.from_json {
        Some(json) => {
            let mut report = LayerReport::read_json(json)?;
            report.redetect(&detect_options(&args), args.i.zip(args.j))?;
            report
        }
        None => compute(&args, &command, started)?,
    };
    std::fs::create_dir_all(&args.out).map_err(|e| LayersCmdError::Io { path: args.out.clone(), source: e })?;
    let (json, md, svg) = (args.out.join("layers.json"), args.out.join("layers.md"), args.out.join("layers.svg"));
    report.write_json(&json)?;
    report.plot(&svg)?;
    let table = report.table();
    let summary = report.summary();
    let doc = format!("```\n{}\n```\n\n{table}\n```\n{summary}```\n", report.command);
    std::fs::write(&md, doc).map_err(|e| LayersCmdError::Io { path: md.clone(), source: e })?;
    println!("{table}\n{summary}");
    println!(
        "wrote {}, {}, {} in {:.0}s",
        json.display(),
        md.display(),
        svg.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Load the model and the text, and run the analysis.
fn compute(args: &LayersArgs, command: &str, started: Instant) -> Result<LayerReport, LayersCmdError> {
    let path = dft_train::resolve_model_path(&args.model)?;
    let text = load_parallel(&args.data, &args.lang, args.limit)?;
    let device = Default::default();
    let pre = load_pretrained::<Inner>(&path, &device)?;
    let tok = pre.tokenizer.ok_or_else(|| LayersCmdError::NoTokenizer(path.clone()))?;
    let latent_pairs = match (&args.pairs, args.no_latent) {
        (_, true) => None,
        (Some(p), false) => Some(read_word_pairs(p)?),
        (None, false) => builtin_word_pairs(&args.lang),
    };
    let opts = AnalysisOptions {
        lens: LensOptions { batch_size: args.batch_size.max(1), ..Default::default() },
        detect: detect_options(args),
        latent_pairs,
        shots: 0,
        override_layers: args.i.zip(args.j),
    };
    eprintln!(
        "model {} ({} blocks); {} {} sentences from {}",
        path.display(),
        pre.model.num_layers(),
        text.target.len(),
        args.lang,
        text.target_path.display()
    );
    Ok(analyze(
        &pre.model,
        &tok,
        &text,
        &args.lang,
        &path.display().to_string(),
        command,
        &opts,
        |stage, done, total| eprintln!("  {stage}: {done}/{total} ({:.0}s)", started.elapsed().as_secs_f64()),
    )?)
}
