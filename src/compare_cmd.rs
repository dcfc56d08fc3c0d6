//! `dft compare` — the paper's comparison (Tables 1–3) in one command: several arms (SFT, TFT,
//! DFT-logits, DFT-feature, ablations) trained on the same data, budget and seeds, each final model
//! evaluated on exactly the same items, and a report with standard errors and paired bootstrap
//! differences to the baseline arm ([`dft_eval::compare`]).
//!
//! ```text
//! dft compare --plan configs/compare-smollm2-zh.toml --out runs/compare
//! dft compare --plan configs/compare-smollm2-zh.toml --out runs/compare --resume
//! ```
//!
//! The plan (TOML; example: configs/compare-smollm2-zh.toml): a base `dft train` config plus `set`
//! overrides shared by every arm, `seeds`, the `baseline` arm, `[eval]` (tasks, languages, data folder,
//! limit, bootstrap) and one `[[arm]]` per method with its own `set` overrides. Layout under `--out`:
//! `plan.toml` (a copy; a resumed compare refuses another plan), `runs/<arm>-s<seed>/` (an ordinary
//! training run; `eval/<task>_<lang>.json` per evaluated task; `eval/heldout.json`, the held-out TFT
//! loss; `eval/lm-eval/` lm-eval style results) and `report.{json,md,svg}`. Every step is resumable: a finished evaluation file is read back, a finished
//! training (`summary.json`) is not repeated, an interrupted one continues from its newest checkpoint.
use std::path::{Path, PathBuf};
use std::time::Instant;

use dft_eval::compare::{ArmRuns, CompareReport, SeedRun, StatsOptions};
use dft_eval::{EvalOptions, LoadedTask, Scorer, TaskResult};
use dft_models::load_pretrained;
use dft_train::checkpoint::list_checkpoints;
use dft_train::{train, TrainConfig, TrainError, TrainHooks, TrainSummary};
use serde::Deserialize;

use crate::eval_cmd::{load_tasks, parse_langs, parse_tasks};
use crate::{Inner, Train};

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// The comparison plan (TOML): base config, arms, seeds, evaluation.
    #[arg(long)]
    plan: PathBuf,
    /// Output directory.
    #[arg(long, default_value = "runs/compare")]
    out: PathBuf,
    /// Continue a stopped compare: finished trainings and evaluations are read back, an interrupted
    /// training resumes from its newest checkpoint.
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Start over when --out holds an earlier compare (it is moved to <out>.old-<time>).
    #[arg(long)]
    overwrite: bool,
    /// Benchmark folder (overrides the plan's eval.data_dir; else $DFT_EVAL_DATA).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// No progress bars (the per-stage lines with the ETA are still printed).
    #[arg(long)]
    quiet: bool,
    /// Check the plan (every arm's config, the benchmarks' data) and list the runs, then stop.
    #[arg(long)]
    check: bool,
}

/// The plan file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Title of the report.
    #[serde(default)]
    pub title: Option<String>,
    /// The base `dft train` config (relative to the current directory, like every path in it).
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// Overrides for every arm (`key=value`, as `dft train --set`).
    #[serde(default)]
    pub set: Vec<String>,
    /// Training seeds; every arm is trained once per seed (default: the config's train.seed).
    #[serde(default)]
    pub seeds: Vec<u64>,
    /// The arm every other is compared to.
    #[serde(default = "default_baseline")]
    pub baseline: String,
    /// Keep each run's exported `final/` model after it has been evaluated.
    #[serde(default)]
    pub keep_models: bool,
    pub eval: EvalPlan,
    #[serde(rename = "arm")]
    pub arms: Vec<ArmPlan>,
}

fn default_baseline() -> String {
    "tft".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalPlan {
    /// dft eval task names (`all` = the eight benchmarks; tasks without data for a language are
    /// skipped and listed in the report).
    pub tasks: Vec<String>,
    /// Languages (default: the config's data.lang).
    #[serde(default)]
    pub langs: Vec<String>,
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Items per task (default: all).
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Bootstrap resamples for the intervals and F1 standard errors.
    #[serde(default = "default_resamples")]
    pub resamples: usize,
    /// Confidence level in percent.
    #[serde(default = "default_level")]
    pub level: f64,
    #[serde(default)]
    pub bootstrap_seed: u64,
    /// English MMLU prompt: `lm-eval` (default, with lm-eval's task description) or `bare`.
    #[serde(default)]
    pub mmlu_prompt: crate::eval_cmd::MmluPrompt,
}

fn default_resamples() -> usize {
    dft_eval::stats::DEFAULT_RESAMPLES
}
fn default_level() -> f64 {
    95.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmPlan {
    /// Row label and run directory name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Overrides on top of the plan's, e.g. `method.name=tft`, `method.et=off`, `method.alpha=0.5`.
    #[serde(default)]
    pub set: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Eval(#[from] dft_eval::EvalError),
    #[error(transparent)]
    Model(#[from] dft_models::ModelError),
    #[error("{path}: {msg}")]
    Plan { path: PathBuf, msg: String },
    #[error("no benchmark folder: set eval.data_dir in the plan, pass --data-dir DIR or set DFT_EVAL_DATA")]
    NoDataDir,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CompareError + '_ {
    move |source| CompareError::Io { path: path.to_path_buf(), source }
}

impl Plan {
    pub fn load(path: &Path) -> Result<(Self, String), CompareError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let plan: Plan =
            toml::from_str(&text).map_err(|e| CompareError::Plan { path: path.into(), msg: e.to_string() })?;
        let bad = |msg: String| CompareError::Plan { path: path.into(), msg };
        if plan.arms.is_empty() {
            return Err(bad("no [[arm]]: name at least the baseline and one other arm".into()));
        }
        for (i, a) in plan.arms.iter().enumerate() {
            if a.name.is_empty() || !a.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                return Err(bad(format!("arm {}: name `{}` must be letters, digits, `-`, `_` or `.`", i + 1, a.name)));
            }
            if plan.arms[..i].iter().any(|b| b.name == a.name) {
                return Err(bad(format!("arm `{}` is named twice", a.name)));
            }
        }
        if !plan.arms.iter().any(|a| a.name == plan.baseline) {
            return Err(bad(format!("baseline = \"{}\" is not one of the arms", plan.baseline)));
        }
        if plan.eval.resamples < 100 {
            return Err(bad(format!(
                "eval.resamples = {}: use at least 100 (2000 is the default)",
                plan.eval.resamples
            )));
        }
        if !(50.0..100.0).contains(&plan.eval.level) {
            return Err(bad(format!("eval.level = {}: a confidence level in percent, e.g. 95", plan.eval.level)));
        }
        if plan.eval.limit == Some(0) {
            return Err(bad("eval.limit = 0 scores nothing; leave it out for every item".into()));
        }
        Ok((plan, text))
    }

    /// The config of `arm` with `seed`, training into `dir`.
    pub fn arm_config(&self, arm: &ArmPlan, seed: Option<u64>, dir: &Path) -> Result<TrainConfig, TrainError> {
        let mut set = self.set.clone();
        set.extend(arm.set.iter().cloned());
        if let Some(s) = seed {
            set.push(format!("train.seed={s}"));
        }
        set.push(format!("train.out_dir={:?}", dir.display().to_string()));
        TrainConfig::load(self.config.as_deref(), &set)
    }
}

fn compare_contents(dir: &Path) -> Vec<String> {
    ["plan.toml", "report.json", "report.md", "runs"]
        .into_iter()
        .filter(|f| dir.join(f).exists())
        .map(String::from)
        .collect()
}

/// Seconds spent per run, kept beside the report (not part of it: they differ between runs).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Timing {
    train_s: f64,
    eval_s: f64,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, CompareError> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map(Some).map_err(|e| CompareError::Plan {
        path: path.into(),
        msg: format!("unreadable ({e}); delete it to redo that step"),
    })
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), CompareError> {
    let text = serde_json::to_string_pretty(value).expect("serialisable");
    dft_eval::report::write_atomic(path, (text + "\n").as_bytes())?;
    Ok(())
}

pub fn run(args: CompareArgs) -> Result<(), CompareError> {
    let (plan, plan_text) = Plan::load(&args.plan)?;
    let seeds: Vec<Option<u64>> =
        if plan.seeds.is_empty() { vec![None] } else { plan.seeds.iter().map(|&s| Some(s)).collect() };
    // Every arm's config is checked (key names, ranges) before anything runs.
    let runs_dir = args.out.join("runs");
    let mut jobs = Vec::new();
    for arm in &plan.arms {
        for &seed in &seeds {
            let probe = plan.arm_config(arm, seed, Path::new("."))?;
            let seed = seed.unwrap_or(probe.train.seed);
            let dir = runs_dir.join(format!("{}-s{seed}", arm.name));
            let cfg = plan.arm_config(arm, Some(seed), &dir)?;
            cfg.check_ranges()?;
            jobs.push((arm.name.clone(), seed, dir, cfg));
        }
    }
    let base = &jobs[0].3;
    crate::init_threads(base.train.threads);
    // Benchmarks are loaded (and checked) before any training; missing combinations are skipped
    // consistently and listed.
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| plan.eval.data_dir.clone())
        .or_else(|| std::env::var_os("DFT_EVAL_DATA").map(PathBuf::from))
        .ok_or(CompareError::NoDataDir)?;
    let (tasks, _) = parse_tasks(&plan.eval.tasks)?;
    let langs = if plan.eval.langs.is_empty() { vec![base.data.lang.clone()] } else { plan.eval.langs.clone() };
    let langs = parse_langs(&langs)?;
    let mut skipped = Vec::new();
    let mut loaded: Vec<LoadedTask> = Vec::new();
    for &lang in &langs {
        for &task in &tasks {
            match load_tasks(&data_dir, &[task], &[lang], false, &Default::default()) {
                Ok(mut t) => loaded.append(&mut t),
                Err(
                    e @ (dft_eval::EvalError::UnsupportedLanguage { .. } | dft_eval::EvalError::MissingFile { .. }),
                ) => {
                    eprintln!("note: {task} {lang}: skipped ({e})");
                    skipped.push(format!("{task}_{lang}: {e}"));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    crate::eval_cmd::apply_mmlu_prompt(&mut loaded, plan.eval.mmlu_prompt);
    if loaded.is_empty() {
        return Err(CompareError::Plan {
            path: args.plan.clone(),
            msg: "no task has data for the plan's languages".into(),
        });
    }

    if args.check {
        for (arm, seed, dir, cfg) in &jobs {
            println!(
                "{arm} seed {seed}: {} {} steps{} → {}",
                format!("{:?}", cfg.method.name).to_lowercase(),
                cfg.train.max_steps,
                if cfg.train.max_steps == 0 { format!(" (0 = {} epochs)", cfg.train.epochs) } else { String::new() },
                dir.display()
            );
        }
        for t in &loaded {
            println!("eval {} {}: {} items ({})", t.task, t.lang, t.items.len(), dft_eval::lm_eval::split_of(&t.files));
        }
        for s in &skipped {
            println!("skipped {s}");
        }
        println!("plan {} is ready to run", args.plan.display());
        return Ok(());
    }
    use dft_train::run_dir::{prepare_dir, StartMode};
    let mode = match (args.resume, args.overwrite) {
        (true, _) => StartMode::Resume,
        (false, true) => StartMode::Overwrite,
        (false, false) => StartMode::Fresh,
    };
    let _lock = prepare_dir(&args.out, mode, "dft compare", compare_contents)?;
    let saved_plan = args.out.join("plan.toml");
    if args.resume && saved_plan.exists() {
        let old = std::fs::read_to_string(&saved_plan).map_err(io(&saved_plan))?;
        if old != plan_text {
            return Err(CompareError::Plan {
                path: args.plan.clone(),
                msg: format!(
                    "differs from the plan this compare was started with ({}): a resumed compare must use the same plan \
                     (or start over with --overwrite)",
                    saved_plan.display()
                ),
            });
        }
    }
    std::fs::create_dir_all(&runs_dir).map_err(io(&runs_dir))?;
    dft_eval::report::write_atomic(&saved_plan, plan_text.as_bytes())?;

    let hooks = TrainHooks { progress: !args.quiet, ..Default::default() };
    crate::install_sigint(&hooks);
    let device = Default::default();
    let opts = EvalOptions {
        limit: plan.eval.limit,
        batch_size: plan.eval.batch_size.unwrap_or(dft_eval::scoring::DEFAULT_BATCH_SIZE),
        ..Default::default()
    };
    let eval_pause = std::env::var("DFT_FAULT_COMPARE_EVAL_PAUSE_MS").ok().and_then(|s| s.parse::<u64>().ok());

    // Progress: optimiser steps and evaluation requests left, each at the rate measured in this
    // process (until one is measured, the ETA is not shown).
    let items: usize = loaded.iter().map(|t| Scorer::<Inner>::progress_len(t, opts.limit)).sum();
    let mut pace = Pace {
        steps_left: jobs.iter().map(|j| j.3.train.max_steps).sum(),
        items_left: items * jobs.len(),
        ..Default::default()
    };
    let started = Instant::now();
    let mut arm_runs: Vec<ArmRuns> = Vec::new();
    let mut timings: Vec<(String, u64, Timing)> = Vec::new();
    let n_jobs = jobs.len();
    for (k, (arm, seed, dir, cfg)) in jobs.iter().enumerate() {
        let eval_dir = dir.join("eval");
        let timing_path = dir.join("compare-timing.json");
        let mut timing: Timing = read_json(&timing_path)?.unwrap_or_default();
        let tag = format!("compare {}/{n_jobs} {arm} seed {seed}", k + 1);
        let result_path = |t: &LoadedTask| eval_dir.join(format!("{}_{}.json", t.task.name(), t.lang.code()));
        let heldout_path = eval_dir.join("heldout.json");
        let all_scored = loaded.iter().all(|t| result_path(t).exists()) && heldout_path.exists();
        let summary_path = dir.join("summary.json");
        let mut summary: Option<TrainSummary> = read_json(&summary_path)?;
        if summary.is_none() {
            let resume = !list_checkpoints(dir).is_empty();
            if !resume && dir.exists() {
                // Started but no checkpoint yet: nothing to keep.
                std::fs::remove_dir_all(dir).map_err(io(dir))?;
            }
            eprintln!(
                "{tag}: training {} steps{} → {}{}",
                cfg.train.max_steps,
                if resume { " (resuming from the newest checkpoint)" } else { "" },
                dir.display(),
                pace.eta()
            );
            let t0 = Instant::now();
            let s = match train::<Train>(cfg, resume, &device, &hooks) {
                Err(TrainError::Interrupted { step, path }) => {
                    eprintln!("stopped at step {step} (checkpoint {}); continue with --resume", path.display());
                    std::process::exit(130)
                }
                r => r?,
            };
            timing.train_s += t0.elapsed().as_secs_f64();
            write_json(&timing_path, &timing)?;
            pace.train(cfg.train.max_steps, t0.elapsed().as_secs_f64());
            summary = Some(s);
        } else {
            eprintln!("{tag}: trained earlier, read back");
        }
        let summary = summary.expect("trained or read back");
        pace.steps_left = pace.steps_left.saturating_sub(cfg.train.max_steps);

        let mut results: Vec<TaskResult> = Vec::new();
        let heldout: HeldOut;
        if all_scored {
            eprintln!("{tag}: evaluated earlier, read back");
            for t in &loaded {
                results.push(read_json(&result_path(t))?.expect("checked above"));
            }
            heldout = read_json(&heldout_path)?.expect("checked above");
            pace.items_left = pace.items_left.saturating_sub(items);
        } else {
            if !summary.export_dir.is_dir() {
                return Err(CompareError::Plan {
                    path: summary.export_dir.clone(),
                    msg: "the trained model to evaluate is missing (removed by hand?); delete this run's directory to retrain it"
                        .into(),
                });
            }
            std::fs::create_dir_all(&eval_dir).map_err(io(&eval_dir))?;
            let pre = load_pretrained::<Inner>(&summary.export_dir, &device)?;
            let tok = pre.tokenizer.as_ref().ok_or_else(|| CompareError::Plan {
                path: summary.export_dir.clone(),
                msg: "the exported model has no tokenizer.json".into(),
            })?;
            let scorer = Scorer::new(&pre.model, tok)?;
            for t in &loaded {
                let path = result_path(t);
                let n = Scorer::<Inner>::progress_len(t, opts.limit);
                if let Some(r) = read_json::<TaskResult>(&path)? {
                    results.push(r);
                    pace.items_left = pace.items_left.saturating_sub(n);
                    continue;
                }
                eprintln!("{tag}: {} {} ({n} requests){}", t.task, t.lang, pace.eta());
                let bar = crate::eval_cmd::progress_bar(n, format!("{} {}", t.task, t.lang), args.quiet);
                let t0 = Instant::now();
                let r = scorer.evaluate(t, &opts, &mut |k| bar.inc(k as u64));
                bar.finish_and_clear();
                let r = r?;
                eprintln!("{tag}: {} {} {} = {:.1} (n={})", r.task, r.lang, r.metric, r.score, r.n);
                write_json(&path, &r)?;
                timing.eval_s += t0.elapsed().as_secs_f64();
                write_json(&timing_path, &timing)?;
                pace.eval(n, t0.elapsed().as_secs_f64());
                results.push(r);
                if let Some(ms) = eval_pause {
                    // Fault injection (tests): a window to be killed in between two evaluations.
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                }
            }
            heldout = match read_json(&heldout_path)? {
                Some(h) => h,
                None => {
                    let t0 = Instant::now();
                    let h = heldout_loss(cfg, &pre, tok)?;
                    if let Some(l) = h.loss {
                        eprintln!(
                            "{tag}: held-out TFT loss {l:.4} (perplexity {:.2}, {} examples)",
                            l.exp(),
                            h.examples
                        );
                    }
                    write_json(&heldout_path, &h)?;
                    timing.eval_s += t0.elapsed().as_secs_f64();
                    write_json(&timing_path, &timing)?;
                    h
                }
            };
            let run = dft_eval::EvalRun {
                method: arm.clone(),
                model: summary.export_dir.display().to_string(),
                options: opts,
                results: results.clone(),
            };
            dft_eval::lm_eval::write_lm_eval(&eval_dir.join("lm-eval"), &run, &loaded)?;
        }
        // Evaluated: the training checkpoints (and, unless kept, the model) are no longer needed.
        for (_, ck) in list_checkpoints(dir) {
            std::fs::remove_dir_all(&ck).map_err(io(&ck))?;
        }
        if !plan.keep_models && summary.export_dir.is_dir() {
            std::fs::remove_dir_all(&summary.export_dir).map_err(io(&summary.export_dir))?;
        }
        let seed_run = SeedRun { seed: *seed, eval_loss: heldout.loss, results };
        match arm_runs.iter_mut().find(|a| &a.name == arm) {
            Some(a) => a.runs.push(seed_run),
            None => arm_runs.push(ArmRuns { name: arm.clone(), runs: vec![seed_run] }),
        }
        timings.push((arm.clone(), *seed, timing));
    }

    let mut notes = vec![
        format!("Plan: {} (base config {}).", args.plan.display(), base_config_name(&plan)),
        format!(
            "Model {}; training data {} (lang {}), {} optimiser steps × batch {} × accumulation {}, seeds {:?}.",
            base.model.path,
            base.data.train.display(),
            base.data.lang,
            base.train.max_steps,
            base.train.batch_size,
            base.train.grad_accum,
            jobs.iter().filter(|j| j.0 == jobs[0].0).map(|j| j.1).collect::<Vec<_>>()
        ),
        format!(
            "Held-out perplexity: every arm's final model (SFT's included) scored with the TFT loss — target-language \
             response given target-language prompt — on {} ({} examples), exp(mean token NLL).",
            base.data.eval.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "–".into()),
            base.data.eval_limit
        ),
        format!(
            "Benchmarks: zero-shot, lm-eval prompts (English MMLU: {:?}), data folder {}.",
            plan.eval.mmlu_prompt,
            data_dir.display()
        ),
    ];
    for s in &skipped {
        notes.push(format!("Skipped (no data for the language): {s}."));
    }
    let stats = StatsOptions { resamples: plan.eval.resamples, level: plan.eval.level, seed: plan.eval.bootstrap_seed };
    let title = plan.title.clone().unwrap_or_else(|| format!("dft compare — {}", args.plan.display()));
    let report = CompareReport::build(title, &arm_runs, &plan.baseline, stats, notes)?;
    let mut wall =
        String::from("## Wall time\n\n| Arm | seed | training (s) | evaluation (s) |\n|---|---:|---:|---:|\n");
    for (arm, seed, t) in &timings {
        wall += &format!("| {arm} | {seed} | {:.0} | {:.0} |\n", t.train_s, t.eval_s);
    }
    wall += "\nSeconds spent in this compare's processes (a resumed step counts only the time after resuming).\n";
    report.write(&args.out, &wall)?;
    let timing_json: Vec<serde_json::Value> = timings
        .iter()
        .map(|(a, s, t)| serde_json::json!({"arm": a, "seed": s, "train_s": t.train_s, "eval_s": t.eval_s}))
        .collect();
    write_json(&args.out.join("timing.json"), &timing_json)?;
    println!("{}", report.markdown());
    println!(
        "wrote {}/report.{{json,md,svg}} in {:.1} min",
        args.out.display(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// The held-out measurement of one run (`eval/heldout.json`): the same for every arm, whatever it
/// trained on.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct HeldOut {
    /// `data.eval` (`null`: the config names none, no perplexity is reported).
    file: Option<PathBuf>,
    /// Pairs scored (`data.eval_limit` or fewer).
    examples: usize,
    /// Token-weighted mean cross-entropy of the target-language response given the target-language prompt.
    loss: Option<f64>,
}

/// Score `pre` (a run's exported model) with the TFT loss on the run's held-out pairs.
fn heldout_loss(
    cfg: &dft_train::TrainConfig,
    pre: &dft_models::Pretrained<Inner>,
    tok: &tokenizers::Tokenizer,
) -> Result<HeldOut, CompareError> {
    let special = dft_train::data_prep::special_tokens(&pre.model.config, tok);
    let corpus = dft_train::heldout_corpus(cfg, dft_train::Method::Tft, special, tok, &pre.meta)?;
    let Some(corpus) = corpus else {
        return Ok(HeldOut { file: None, examples: 0, loss: None });
    };
    let loss = dft_train::eval_loss(&pre.model, &corpus, cfg.train.batch_size, dft_train::Method::Tft)?;
    Ok(HeldOut { file: cfg.data.eval.clone(), examples: corpus.examples.len(), loss })
}

/// Work left and the rates measured in this process, for the ETA.
#[derive(Default)]
struct Pace {
    steps_left: usize,
    items_left: usize,
    step_s: Option<f64>,
    item_s: Option<f64>,
}

impl Pace {
    fn train(&mut self, steps: usize, seconds: f64) {
        if steps > 0 {
            self.step_s = Some(seconds / steps as f64);
        }
    }

    fn eval(&mut self, items: usize, seconds: f64) {
        self.items_left = self.items_left.saturating_sub(items);
        if items > 0 {
            self.item_s = Some(seconds / items as f64);
        }
    }

    /// `, N steps + M requests left, ETA x min` once both rates are known (a rate not yet measured
    /// in this process leaves the ETA out rather than guess it).
    fn eta(&self) -> String {
        let left = format!(", {} steps + {} eval requests left", self.steps_left, self.items_left);
        let steps = if self.steps_left == 0 { Some(0.0) } else { self.step_s.map(|s| s * self.steps_left as f64) };
        let items = if self.items_left == 0 { Some(0.0) } else { self.item_s.map(|s| s * self.items_left as f64) };
        match (steps, items) {
            (Some(a), Some(b)) => format!("{left}, ETA {:.0} min", (a + b) / 60.0),
            _ => left,
        }
    }
}

fn base_config_name(plan: &Plan) -> String {
    plan.config.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "built-in defaults".into())
}
