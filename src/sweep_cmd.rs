//! `dft sweep` — the layer sweep of the paper's Figure 3: short DFT runs with the ET (or LC) loss at
//! several blocks, and a TFT baseline, compared by held-out loss and optionally by benchmark scores.
//!
//! ```text
//! dft sweep --config configs/quickstart.toml --every 5 --steps 40 --out runs/sweep
//! dft sweep --config run.toml --aux lc --layers 1,2,3,4 --eval-tasks xcopa,xnli --data-dir ../shared/data/eval --eval-limit 100
//! ```
//!
//! Writes `sweep.json`, `sweep.md`, `sweep.svg` under `--out` (rewritten after each run) and one run
//! directory per layer; `--resume` continues a sweep that was stopped.
use std::collections::BTreeMap;
use std::path::PathBuf;

use dft_eval::{EvalOptions, Scorer};
use dft_models::load_pretrained;
use dft_train::{run_sweep, SweepAux, SweepSpec, TrainConfig, TrainError, TrainHooks};

use crate::eval_cmd::{load_tasks, parse_langs, parse_tasks};
use crate::{Inner, Train};

#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    /// The base run config (TOML); every run of the sweep is this config with one layer changed.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Config overrides applied to every run (`--set key=value`).
    #[arg(long = "set")]
    set: Vec<String>,
    /// Which loss moves across blocks.
    #[arg(long, value_enum, default_value = "et")]
    aux: AuxArg,
    /// Blocks to try, e.g. 5,10,15,20.
    #[arg(long, value_delimiter = ',', conflicts_with = "every")]
    layers: Vec<usize>,
    /// Every N-th block (N, 2N, … ≤ L), as in the paper (5, 10, …, 30).
    #[arg(long)]
    every: Option<usize>,
    /// Optimiser steps per run [default: the config's train.max_steps].
    #[arg(long, default_value_t = 0)]
    steps: usize,
    /// Skip the TFT baseline run.
    #[arg(long)]
    no_baseline: bool,
    /// Keep the other deep-supervision loss as configured (default: the swept loss alone).
    #[arg(long)]
    keep_other: bool,
    /// Keep each run's exported HF checkpoint (`final/`).
    #[arg(long)]
    keep_models: bool,
    /// Output directory.
    #[arg(long, default_value = "runs/sweep")]
    out: PathBuf,
    /// Continue a stopped sweep: finished runs are read back, an interrupted one resumes.
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Start over when --out holds an earlier sweep (it is moved to <out>.old-<time>).
    #[arg(long)]
    overwrite: bool,
    /// Benchmarks scored after each run (dft eval task names, e.g. xcopa,xnli).
    #[arg(long, value_delimiter = ',')]
    eval_tasks: Vec<String>,
    /// Benchmark folder for --eval-tasks (laid out like shared/data/eval; or DFT_EVAL_DATA).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Items per benchmark.
    #[arg(long)]
    eval_limit: Option<usize>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum AuxArg {
    Et,
    Lc,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepCmdError {
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Eval(#[from] dft_eval::EvalError),
    #[error("give --layers K,K,… or --every N")]
    NoLayers,
    #[error("--every must be at least 1")]
    ZeroEvery,
    #[error("--eval-tasks needs a benchmark folder: pass --data-dir DIR or set DFT_EVAL_DATA")]
    NoDataDir,
}

pub fn run(args: SweepArgs) -> Result<(), SweepCmdError> {
    let base = TrainConfig::load(args.config.as_deref(), &args.set)?;
    crate::init_threads(base.train.threads);
    // One sweep per directory at a time, and never over an earlier one unless asked.
    use dft_train::run_dir::{prepare_dir, sweep_contents, StartMode};
    let mode = match (args.resume, args.overwrite) {
        (true, _) => StartMode::Resume,
        (false, true) => StartMode::Overwrite,
        (false, false) => StartMode::Fresh,
    };
    let _lock = prepare_dir(&args.out, mode, "dft sweep", sweep_contents)?;
    let layers = match (args.every, args.layers.is_empty()) {
        (Some(0), _) => return Err(SweepCmdError::ZeroEvery),
        (Some(n), _) => {
            let path = dft_train::resolve_model_path(&base.model.path)?;
            let depth = dft_models::peek_config(&path).map_err(TrainError::from)?.num_hidden_layers;
            (1..=depth / n).map(|k| k * n).collect()
        }
        (None, false) => args.layers.clone(),
        (None, true) => return Err(SweepCmdError::NoLayers),
    };
    // Benchmarks are loaded (and checked) before any training.
    let tasks = if args.eval_tasks.is_empty() {
        Vec::new()
    } else {
        let data_dir = args
            .data_dir
            .clone()
            .or_else(|| std::env::var_os("DFT_EVAL_DATA").map(PathBuf::from))
            .ok_or(SweepCmdError::NoDataDir)?;
        let (tasks, all) = parse_tasks(&args.eval_tasks)?;
        let langs = parse_langs(std::slice::from_ref(&base.data.lang))?;
        load_tasks(&data_dir, &tasks, &langs, all, &Default::default())?
    };
    let spec = SweepSpec {
        aux: match args.aux {
            AuxArg::Et => SweepAux::Et,
            AuxArg::Lc => SweepAux::Lc,
        },
        layers,
        steps: args.steps,
        baseline: !args.no_baseline,
        keep_other: args.keep_other,
        keep_models: args.keep_models,
        out_dir: args.out.clone(),
        resume: args.resume,
    };
    let hooks = TrainHooks { progress: !args.quiet, ..Default::default() };
    crate::install_sigint(&hooks);
    let device = Default::default();
    let opts = EvalOptions { limit: args.eval_limit, ..Default::default() };
    let score = |label: &str, summary: &dft_train::TrainSummary| -> dft_train::Result<BTreeMap<String, f64>> {
        let mut out = BTreeMap::new();
        if tasks.is_empty() {
            return Ok(out);
        }
        let pre = load_pretrained::<Inner>(&summary.export_dir, &device)?;
        let tok = pre.tokenizer.as_ref().expect("exported checkpoints carry their tokenizer");
        let scorer = Scorer::new(&pre.model, tok).map_err(eval_err)?;
        for task in &tasks {
            let r = scorer.evaluate(task, &opts, &mut |_| {}).map_err(eval_err)?;
            eprintln!("  {label}: {} {} {} = {:.1} (n={})", r.task, r.lang, r.metric, r.score, r.n);
            out.insert(format!("{} {}", r.task, r.metric), r.score);
        }
        Ok(out)
    };
    let report = match run_sweep::<Train>(&base, &spec, &device, &hooks, score) {
        Err(TrainError::Interrupted { step, path }) => {
            eprintln!("stopped at step {step} (checkpoint {}); continue with --resume", path.display());
            std::process::exit(130)
        }
        r => r?,
    };
    println!("{}", report.table());
    if let Some(b) = report.best() {
        println!("lowest held-out loss: {} (block {})", b.label, b.layer.unwrap_or(0));
    }
    println!("wrote {}/sweep.{{json,md,svg}}", args.out.display());
    Ok(())
}

fn eval_err(e: dft_eval::EvalError) -> TrainError {
    TrainError::Config { key: "--eval-tasks".into(), msg: e.to_string() }
}
