//! `dft align` — representation alignment of English and a target language (the paper's Figure 4):
//! per-block cosine of mean-pooled hidden states of parallel FLORES-200 sentences (matched pairs vs
//! mismatched pairs, mean ± 95% CI), and t-SNE pictures of both languages at chosen blocks.
//!
//! ```text
//! dft align --model smollm2 --data-dir ../shared/data/eval --lang zh --limit 200 --out runs/align
//! ```
//!
//! Writes `align.json` (every number, the 2-D points included), `align.md` (the table), `cosine.svg`
//! and `tsne-layer{k}.svg` under `--out`, and prints the table. `--from-json` redraws the pictures
//! and the table from a saved `align.json` without running the model.
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::Backend;
use dft_eval::align::{analyze, AlignOptions, AlignReport};
use dft_eval::plot::{plot_cosines, plot_tsne};
use dft_eval::tasks::flores::load_parallel;
use dft_eval::{EvalError, Lang, TsneOptions};
use dft_models::load_pretrained;
use dft_train::resolve_model_path;

/// Arguments of `dft align`.
#[derive(clap::Args, Debug, Clone)]
pub struct AlignArgs {
    /// HF checkpoint directory, .gguf file, `smollm2` (the embedded default) or `gemma3` (fetched on first use).
    #[arg(long, default_value = "smollm2")]
    pub model: String,
    /// Folder with FLORES-200 files: the eval data folder (with `flores200/`) or the FLORES folder
    /// itself (`eng_Latn.devtest[.sample]`, `zho_Hans.devtest[.sample]`, …) [default: $DFT_EVAL_DATA].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Target language: zh, vi or ar.
    #[arg(long, default_value = "zh")]
    pub lang: String,
    /// Use the first N sentence pairs.
    #[arg(long, default_value_t = 200)]
    pub limit: usize,
    /// Sentences per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Comma-separated blocks to draw with t-SNE [default: the middle block L/2 and the last, L].
    #[arg(long, value_delimiter = ',')]
    pub tsne_layers: Vec<usize>,
    /// t-SNE perplexity (clamped to (N − 1)/3 for few points).
    #[arg(long, default_value_t = 30.0)]
    pub perplexity: f64,
    /// t-SNE iterations (the first 250 with early exaggeration).
    #[arg(long, default_value_t = 1000)]
    pub iterations: usize,
    /// t-SNE seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Do not join matched pairs with a line in the t-SNE pictures.
    #[arg(long)]
    pub no_pair_lines: bool,
    /// Redraw the table and pictures from a saved align.json (no model run).
    #[arg(long)]
    pub from_json: Option<PathBuf>,
    /// Output folder.
    #[arg(long, default_value = "runs/align")]
    pub out: PathBuf,
}

/// What can go wrong in `dft align`.
#[derive(Debug, thiserror::Error)]
pub enum AlignCmdError {
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Model(#[from] dft_models::ModelError),
    #[error(transparent)]
    Train(#[from] dft_train::TrainError),
    #[error("no FLORES folder: pass --data-dir DIR or set DFT_EVAL_DATA")]
    NoDataDir,
    #[error("{0}: the checkpoint has no tokenizer (tokenizer.json); dft align needs one")]
    NoTokenizer(PathBuf),
    #[error("--lang en: alignment compares English with another language (zh, vi or ar)")]
    English,
    #[error("--{0} must be at least {1}")]
    TooSmall(&'static str, usize),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The t-SNE settings of the arguments.
pub fn tsne_options(args: &AlignArgs) -> TsneOptions {
    TsneOptions { perplexity: args.perplexity, iterations: args.iterations, seed: args.seed, ..Default::default() }
}

fn check(args: &AlignArgs) -> Result<Lang, AlignCmdError> {
    let lang = Lang::from_code(&args.lang)?;
    if lang == Lang::En {
        return Err(AlignCmdError::English);
    }
    if args.limit < 2 {
        return Err(AlignCmdError::TooSmall("limit", 2));
    }
    if args.batch_size == 0 {
        return Err(AlignCmdError::TooSmall("batch-size", 1));
    }
    Ok(lang)
}

/// Runs `dft align` on backend `B`.
pub fn run<B: Backend>(args: &AlignArgs) -> Result<(), AlignCmdError> {
    let started = Instant::now();
    let report = match &args.from_json {
        Some(json) => AlignReport::load(json)?,
        None => compute::<B>(args)?,
    };
    write_outputs(&report, &args.out, !args.no_pair_lines)?;
    eprintln!("done in {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn compute<B: Backend>(args: &AlignArgs) -> Result<AlignReport, AlignCmdError> {
    let lang = check(args)?;
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| std::env::var_os("DFT_EVAL_DATA").map(PathBuf::from))
        .ok_or(AlignCmdError::NoDataDir)?;
    let mut pairs = load_parallel(&data_dir, lang)?;
    pairs.lines.truncate(args.limit);
    pairs.english.truncate(args.limit);
    pairs.target.truncate(args.limit);
    let path = resolve_model_path(&args.model)?;
    let device = B::Device::default();
    let pre = load_pretrained::<B>(&path, &device)?;
    let tok = pre.tokenizer.ok_or_else(|| AlignCmdError::NoTokenizer(path.clone()))?;
    eprintln!(
        "model {} ({} blocks); {} en–{lang} pairs from {}",
        path.display(),
        pre.model.num_layers(),
        pairs.english.len(),
        pairs.target_file.display()
    );
    let opts = AlignOptions {
        batch_size: args.batch_size,
        tsne_layers: args.tsne_layers.clone(),
        tsne: tsne_options(args),
        ..Default::default()
    };
    let t0 = Instant::now();
    let mut last_print = 0;
    let mut report =
        analyze(&pre.model, &tok, &pairs, lang, &path.display().to_string(), &opts, &mut |done, total| {
            if done * 10 / total > last_print || done == total {
                last_print = done * 10 / total;
                eprintln!("  forward: {done}/{total} sentences ({:.0}s)", t0.elapsed().as_secs_f64());
            }
        })?;
    report.command = std::env::args().collect::<Vec<_>>().join(" ");
    Ok(report)
}

/// `align.json`, `align.md`, `cosine.svg`, `tsne-layer{k}.svg`; prints the table.
pub fn write_outputs(report: &AlignReport, out: &Path, pair_lines: bool) -> Result<(), AlignCmdError> {
    std::fs::create_dir_all(out).map_err(|e| AlignCmdError::Io { path: out.to_path_buf(), source: e })?;
    let json = out.join("align.json");
    report.save(&json)?;
    let cos = out.join("cosine.svg");
    plot_cosines(report, &cos)?;
    let mut pictures = vec![cos.display().to_string()];
    for t in &report.tsne {
        let p = out.join(format!("tsne-layer{}.svg", t.layer));
        plot_tsne(report, t, &p, pair_lines)?;
        pictures.push(p.display().to_string());
    }
    let table = report.markdown();
    let md = out.join("align.md");
    let doc = format!(
        "# dft align\n\n```\n{}\n```\n\nModel: {}; files: {}; forward {:.0}s, t-SNE {:.0}s.\n\n{table}",
        report.command,
        report.model,
        report.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "),
        report.seconds_forward,
        report.seconds_tsne
    );
    std::fs::write(&md, doc).map_err(|e| AlignCmdError::Io { path: md.clone(), source: e })?;
    println!("{table}\nwrote {}, {}, {}", json.display(), md.display(), pictures.join(", "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: AlignArgs,
    }

    #[test]
    fn arguments_and_checks() {
        let cli = Cli::parse_from(["dft", "--lang", "vi", "--tsne-layers", "5,30", "--limit", "50", "--seed", "7"]);
        assert_eq!(cli.args.tsne_layers, [5, 30]);
        assert_eq!(check(&cli.args).unwrap(), Lang::Vi);
        assert_eq!(tsne_options(&cli.args).seed, 7);
        let cli = Cli::parse_from(["dft", "--lang", "en"]);
        assert!(matches!(check(&cli.args), Err(AlignCmdError::English)));
        let cli = Cli::parse_from(["dft", "--limit", "1"]);
        assert!(matches!(check(&cli.args), Err(AlignCmdError::TooSmall("limit", 2))));
        let cli = Cli::parse_from(["dft", "--lang", "fr"]);
        assert!(matches!(check(&cli.args), Err(AlignCmdError::Eval(EvalError::UnknownLanguage { .. }))));
    }

    #[test]
    fn missing_flores_files_are_named() {
        let dir = dft_test_support::scratch::ScratchDir::new(format!("dft-align-cmd-{}", std::process::id()));
        let args = Cli::parse_from(["dft", "--data-dir", dir.to_str().unwrap()]).args;
        let e = compute::<crate::Inner>(&args).unwrap_err().to_string();
        assert!(e.contains("eng_Latn.devtest"), "{e}");
    }
}
