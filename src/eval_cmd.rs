//! `dft eval` — zero-shot scores of a model on the paper's benchmarks (METHOD.md §6).
//!
//! ```text
//! dft eval --model smollm2 --tasks xquad,xnli --lang zh --data-dir ../shared/data/eval --limit 50
//! dft eval --model smollm2 --tasks flores --lang zh --data-dir ../shared/data/eval --limit 50
//! ```
//!
//! `flores` (FLORES-200 translation, not part of `all`) translates en→X and X→en greedily with a
//! 1-shot prompt (`--mt-shots`, `--mt-directions`, `--mt-max-new-tokens`) and reports corpus chrF++
//! and BLEU per direction in its own table.
//!
//! Every task and language is loaded (and checked) before the model, then scored with
//! [`dft_eval::Scorer`]; `--out DIR` gets `results.json` (all runs in that folder, per-item details
//! included) and `results.md`, the paper-style table of methods × benchmarks per language. Running
//! again with another `--method-name` (e.g. a fine-tuned checkpoint) adds a row; results are merged
//! per method, model, task, language and `--limit`, and a replaced result is kept under `history` in
//! results.json. A task with no items (`--limit 0`, an empty file) is an error, never a 0.0 score; one
//! `dft eval` at a time may write an `--out` folder (a lock file, docs/RELIABILITY.md).
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::Backend;
use dft_eval::{
    EvalError, EvalOptions, EvalReport, EvalRun, FloresOptions, Lang, LoadedTask, MtDirections, Scorer, Task,
    TaskOutcome,
};
use dft_models::load_pretrained;
use dft_train::resolve_model_path;

/// Arguments of `dft eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// HF checkpoint directory, .gguf file, `smollm2` (the embedded default) or `gemma3` (fetched on first use).
    #[arg(long, default_value = "smollm2")]
    pub model: String,
    /// A LoRA adapter directory (PEFT format, from `dft train` with [lora] or from PEFT) applied on top
    /// of --model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Comma-separated tasks: xquad, mlqa, mkqa, truthfulqa, xnli, xcopa, xstorycloze, mmlu, or `all`
    /// (those eight); `flores` (FLORES-200 translation en↔X, languages zh, vi, ar) must be named.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    pub tasks: Vec<String>,
    /// Comma-separated languages: en, zh, vi, ar.
    #[arg(long, value_delimiter = ',', default_value = "zh")]
    pub lang: Vec<String>,
    /// Benchmark folder laid out like shared/data/eval (default: $DFT_EVAL_DATA).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Score only the first N items of each task (FLORES: the first N sentences of each direction).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Continuation rows per forward pass (multiple choice).
    #[arg(long, default_value_t = dft_eval::scoring::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// Generation budget per QA answer (greedy, stops at the first newline).
    #[arg(long, default_value_t = dft_eval::scoring::DEFAULT_MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// FLORES: generation budget per translated sentence (greedy, stops at the first newline).
    #[arg(long, default_value_t = dft_eval::scoring::DEFAULT_MT_MAX_NEW_TOKENS)]
    pub mt_max_new_tokens: usize,
    /// FLORES: few-shot examples per prompt (from the dev split if present, else the last lines of
    /// devtest, which are then not translated).
    #[arg(long, default_value_t = dft_eval::tasks::flores::DEFAULT_SHOTS)]
    pub mt_shots: usize,
    /// FLORES: `both` (en→X and X→en, reported separately), `en-x` or `x-en`.
    #[arg(long, default_value = "both")]
    pub mt_directions: MtDirections,
    /// Output folder for results.json and results.md (merged with earlier runs there).
    #[arg(long, default_value = "runs/eval")]
    pub out: PathBuf,
    /// Row label in the table (default: `base` for smollm2, else the model's file or folder name; `(chat)`
    /// appended with --apply-chat-template).
    #[arg(long)]
    pub method_name: Option<String>,
    /// Render every prompt as a user turn of the model's own chat template (GGUF
    /// `tokenizer.chat_template` or tokenizer_config.json), as lm-eval's --apply_chat_template; off by
    /// default, as in lm-eval.
    #[arg(long)]
    pub apply_chat_template: bool,
    /// English MMLU prompt: `lm-eval` (lm-eval's default, the task description "The following are
    /// multiple choice questions (with answers) about {subject}." before each question) or `bare`
    /// (question and options only, dft eval's prompt before 0.2). Okapi m_MMLU has no description.
    #[arg(long, value_enum, default_value = "lm-eval")]
    pub mmlu_prompt: MmluPrompt,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Score only the i-th of n contiguous slices of each task's items (after --limit), e.g. 2/4, and
    /// write `shard-i-of-n.json` to --out instead of results.json; combine the shards with --merge.
    #[arg(long, conflicts_with = "merge")]
    pub shard: Option<dft_eval::Shard>,
    /// Combine the shard files of a `--shard i/n` evaluation (files, or folders holding one) into
    /// --out's results.json and results.md, as one unsharded run writes them (needs --data-dir to
    /// reload the items; nothing is run).
    #[arg(long, num_args = 1..)]
    pub merge: Vec<PathBuf>,
}

/// Which English MMLU prompt to use.
#[derive(clap::ValueEnum, serde::Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MmluPrompt {
    #[default]
    LmEval,
    Bare,
}

/// Applies `prompt` to the loaded English MMLU tasks (the loaders produce the bare prompt).
pub fn apply_mmlu_prompt(tasks: &mut [LoadedTask], prompt: MmluPrompt) {
    if prompt == MmluPrompt::Bare {
        return;
    }
    for t in tasks.iter_mut().filter(|t| t.task == Task::Mmlu && t.lang == Lang::En) {
        if let dft_eval::TaskItems::MultipleChoice(items) = &mut t.items {
            dft_eval::tasks::mmlu::add_lm_eval_descriptions(items);
        }
    }
}

/// What can go wrong in `dft eval`.
#[derive(Debug, thiserror::Error)]
pub enum EvalCmdError {
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Model(#[from] dft_models::ModelError),
    #[error(transparent)]
    Train(#[from] dft_train::TrainError),
    #[error("no benchmark folder: pass --data-dir DIR (laid out like shared/data/eval) or set DFT_EVAL_DATA")]
    NoDataDir,
    #[error("--data-dir {0}: not a directory")]
    DataDirMissing(PathBuf),
    #[error("{0}: the checkpoint has no tokenizer (tokenizer.json); dft eval needs one")]
    NoTokenizer(PathBuf),
    #[error("--batch-size must be at least 1")]
    ZeroBatch,
    #[error("--limit 0 scores nothing (a score over zero items would read as 0.0); give at least 1 or leave it out")]
    ZeroLimit,
    #[error("{flag} {value} does not fit the model's context of {context} tokens (the prompt needs room too); use less than {context}")]
    TooManyNewTokens { flag: &'static str, value: usize, context: usize },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The tasks named by `--tasks` (`all` expands to the eight benchmarks), without duplicates.
pub fn parse_tasks(names: &[String]) -> Result<(Vec<Task>, bool), EvalError> {
    let mut out = Vec::new();
    let mut all = false;
    for name in names.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let tasks = if name.eq_ignore_ascii_case("all") {
            all = true;
            Task::ALL.to_vec()
        } else {
            vec![Task::from_name(name)?]
        };
        for t in tasks {
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    if out.is_empty() {
        return Err(EvalError::UnknownTask {
            name: String::new(),
            known: Task::registered().map(Task::name).collect::<Vec<_>>().join(", "),
        });
    }
    Ok((out, all))
}

/// The languages named by `--lang`, without duplicates.
pub fn parse_langs(codes: &[String]) -> Result<Vec<Lang>, EvalError> {
    let mut out = Vec::new();
    for code in codes.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let l = Lang::from_code(code)?;
        if !out.contains(&l) {
            out.push(l);
        }
    }
    if out.is_empty() {
        return Err(EvalError::UnknownLanguage { code: String::new() });
    }
    Ok(out)
}

/// Loads every requested task × language. With `--tasks all`, combinations that do not exist
/// (XCOPA in Arabic, XStoryCloze in Vietnamese) and tasks without a data file for the language are
/// skipped with a note; named explicitly they are an error. FLORES is built with `flores`.
pub fn load_tasks(
    data_dir: &Path,
    tasks: &[Task],
    langs: &[Lang],
    all: bool,
    flores: &FloresOptions,
) -> Result<Vec<LoadedTask>, EvalError> {
    let mut out = Vec::new();
    for &lang in langs {
        for &task in tasks {
            if all && !task.languages().contains(&lang) {
                eprintln!("note: {task} has no {lang} data; skipped");
                continue;
            }
            if task == Task::Flores {
                if lang == Lang::En {
                    return Err(EvalError::UnsupportedLanguage {
                        task: task.name().into(),
                        lang: lang.code().into(),
                        available: "zh, vi, ar (each is translated to and from English)".into(),
                    });
                }
                out.push(dft_eval::tasks::flores::load_flores(data_dir, lang, flores)?);
            } else {
                match dft_eval::load(data_dir, task, lang) {
                    Ok(t) => out.push(t),
                    // With `all`, a task without a data file for the language is skipped like a
                    // combination that does not exist (named explicitly, it is an error).
                    Err(e @ EvalError::MissingFile { .. }) if all => eprintln!("note: {task} {lang}: skipped ({e})"),
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(out)
}

fn default_method_name(model: &str) -> String {
    if model == "smollm2" {
        return "base".into();
    }
    let p = Path::new(model.trim_end_matches('/'));
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| model.to_string())
}

/// `runs/x/adapter` → `x`, `my-adapter` → `my-adapter`.
fn adapter_method_name(dir: &Path) -> String {
    let name = |p: &Path| p.file_name().map(|s| s.to_string_lossy().into_owned());
    match name(dir) {
        Some(n) if n == "adapter" => dir.parent().and_then(name).unwrap_or(n),
        Some(n) => n,
        None => dir.display().to_string(),
    }
}

pub(crate) fn progress_bar(len: usize, msg: String, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>16} {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}]")
            .expect("template"),
    );
    bar.set_message(msg);
    bar
}

/// Runs `dft eval` on backend `B`.
pub fn run<B: Backend>(args: &EvalArgs) -> Result<(), EvalCmdError> {
    if args.batch_size == 0 {
        return Err(EvalCmdError::ZeroBatch);
    }
    if args.limit == Some(0) {
        return Err(EvalCmdError::ZeroLimit);
    }
    let (tasks, all) = parse_tasks(&args.tasks)?;
    let langs = parse_langs(&args.lang)?;
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| std::env::var_os("DFT_EVAL_DATA").map(PathBuf::from))
        .ok_or(EvalCmdError::NoDataDir)?;
    if !data_dir.is_dir() {
        return Err(EvalCmdError::DataDirMissing(data_dir));
    }
    let flores = FloresOptions { shots: args.mt_shots, directions: args.mt_directions };
    if !args.merge.is_empty() {
        let shards = args.merge.iter().map(|p| dft_eval::ShardRun::load(p)).collect::<Result<Vec<_>, _>>()?;
        let _lock = dft_train::run_dir::RunLock::acquire(&args.out, "dft eval")?;
        let mut reloaded: Vec<LoadedTask> = Vec::new();
        let run = dft_eval::merge_shards(shards, &mut |name, lang, flores| {
            let task = Task::from_name(name)?;
            let mut t = load_tasks(&data_dir, &[task], &[lang], false, flores)?;
            apply_mmlu_prompt(&mut t, args.mmlu_prompt);
            reloaded.push(t[0].clone());
            Ok(t.remove(0))
        })?;
        return write_report(&args.out, run, &reloaded);
    }
    let mut loaded = load_tasks(&data_dir, &tasks, &langs, all, &flores)?;
    apply_mmlu_prompt(&mut loaded, args.mmlu_prompt);
    // One `dft eval` per output folder at a time (results.json is read, merged and rewritten).
    let _lock = dft_train::run_dir::RunLock::acquire(&args.out, "dft eval")?;

    let path = resolve_model_path(&args.model)?;
    eprintln!("model: {}", path.display());
    let device = B::Device::default();
    let mut pre = load_pretrained::<B>(&path, &device)?;
    if let Some(dir) = &args.adapter {
        // PEFT adapter on top of --model, merged (same outputs, plain-model speed).
        pre.model = pre.model.load_adapter(dir)?.merge_lora();
    }
    let tokenizer = pre.tokenizer.ok_or_else(|| EvalCmdError::NoTokenizer(path.clone()))?;
    let context = pre.model.config.max_position_embeddings;
    for (flag, value) in [("--max-new-tokens", args.max_new_tokens), ("--mt-max-new-tokens", args.mt_max_new_tokens)] {
        if value >= context {
            return Err(EvalCmdError::TooManyNewTokens { flag, value, context });
        }
    }
    let chat = if args.apply_chat_template { Some(pre.meta.chat_template()?) } else { None };
    let mut scorer = Scorer::new(&pre.model, &tokenizer)?;
    if let Some(t) = &chat {
        scorer = scorer.with_chat_template(t);
    }
    let opts = EvalOptions {
        limit: args.limit,
        batch_size: args.batch_size,
        max_new_tokens: args.max_new_tokens,
        mt_max_new_tokens: args.mt_max_new_tokens,
    };

    let started = Instant::now();
    let mut results = Vec::with_capacity(loaded.len());
    for task in &loaded {
        // A shard scores its slice of the limited items (no further limit).
        let (task, task_opts) = match args.shard {
            Some(shard) => (shard.items(task, opts.limit)?, EvalOptions { limit: None, ..opts }),
            None => (task.clone(), opts),
        };
        let bar = progress_bar(
            Scorer::<B>::progress_len(&task, task_opts.limit),
            format!("{} {}", task.task, task.lang),
            args.quiet,
        );
        let r = scorer.evaluate(&task, &task_opts, &mut |k| bar.inc(k as u64));
        bar.finish_and_clear();
        let r = r?;
        let t = &r.throughput;
        let speed = if task.task.is_generative() {
            format!("{:.0} tok/s decoding, {} tokens generated", t.decode_tokens_per_s(), t.scored_tokens)
        } else {
            format!("{:.0} model tok/s, {} continuation tokens", t.model_tokens_per_s(), t.scored_tokens)
        };
        let speed = format!("{speed}, {:.1} GFLOP/s", t.gflops_per_s(pre.model.matmul_params()));
        if let TaskOutcome::Translation { directions, .. } = &r.outcome {
            for d in directions {
                println!(
                    "{:>12} {}  {}: chrF++ = {:5.1}  BLEU = {:5.1}  chrF = {:5.1}  (n={}, {}-shot, {} hit the {}-token budget)",
                    r.task,
                    r.lang,
                    d.direction(),
                    d.chrf_pp,
                    d.bleu,
                    d.chrf,
                    d.n,
                    d.shots,
                    d.truncated,
                    opts.mt_max_new_tokens
                );
            }
            println!("{:>12} {}  ({:.1}s, {speed})", r.task, r.lang, t.seconds);
        } else {
            println!(
                "{:>12} {}  {} = {:5.1}  (n={}, {:.1}s, {speed})",
                r.task, r.lang, r.metric, r.score, r.n, t.seconds
            );
        }
        results.push(r);
    }
    eprintln!("scored {} task(s) in {:.1}s", results.len(), started.elapsed().as_secs_f64());

    let chat = if args.apply_chat_template { " (chat)" } else { "" };
    let (method, model) = match &args.adapter {
        // The adapter is part of the model's identity: `base+adapter` in results.json, and the run's name.
        Some(a) => (
            args.method_name.clone().unwrap_or_else(|| adapter_method_name(a) + chat),
            format!("{}+{}", args.model, a.display()),
        ),
        // runs with and without the chat template are different rows
        None => {
            (args.method_name.clone().unwrap_or_else(|| default_method_name(&args.model) + chat), args.model.clone())
        }
    };
    let run = EvalRun { method, model, options: opts, results };
    if let Some(shard) = args.shard {
        std::fs::create_dir_all(&args.out).map_err(|e| EvalCmdError::Io { path: args.out.clone(), source: e })?;
        let path = dft_eval::ShardRun { shard, flores, run }.save(&args.out)?;
        println!("shard {shard}: {} (combine the shards with dft eval --merge)", path.display());
        return Ok(());
    }
    write_report(&args.out, run, &loaded)
}

/// Adds `run` to `out`'s results.json (kept runs merged, see [`EvalReport::merge`]) and rewrites
/// results.md; writes the lm-evaluation-harness layout beside it (`<out>/<method>/results.json` +
/// `samples_<task>_<lang>.jsonl`); prints the table.
fn write_report(out: &Path, run: EvalRun, loaded: &[LoadedTask]) -> Result<(), EvalCmdError> {
    std::fs::create_dir_all(out).map_err(|e| EvalCmdError::Io { path: out.to_path_buf(), source: e })?;
    let lm_dir = out.join(dft_eval::lm_eval::sanitize(&run.method));
    dft_eval::lm_eval::write_lm_eval(&lm_dir, &run, loaded)?;
    let json = out.join("results.json");
    let mut report = EvalReport::load(&json)?;
    report.merge(run);
    report.save(&json)?;
    let table = report.markdown();
    let md = out.join("results.md");
    dft_eval::report::write_atomic(&md, format!("# dft eval\n\n{table}").as_bytes())?;
    println!(
        "\n{table}results: {} and {}; lm-eval style: {}/results.json",
        json.display(),
        md.display(),
        lm_dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn bad_task_and_language_names_are_errors() {
        assert!(matches!(parse_tasks(&s(&["xnli", "squad"])), Err(EvalError::UnknownTask { .. })));
        assert!(matches!(parse_langs(&s(&["zh", "fr"])), Err(EvalError::UnknownLanguage { .. })));
        let (t, all) = parse_tasks(&s(&["XNLI", "xnli", "mmlu"])).unwrap();
        assert_eq!((t, all), (vec![Task::Xnli, Task::Mmlu], false));
        assert_eq!(parse_tasks(&s(&["all"])).unwrap().0.len(), 8);
        assert_eq!(
            parse_tasks(&s(&["flores", "all"])).unwrap().0,
            [Task::Flores].into_iter().chain(Task::ALL).collect::<Vec<_>>()
        );
        assert_eq!(default_method_name("runs/dft/export/"), "export");
        assert_eq!(default_method_name("smollm2"), "base");
    }

    #[test]
    fn missing_file_and_unsupported_language() {
        let dir = dft_test_support::scratch::ScratchDir::new(format!("dft-eval-cmd-{}", std::process::id()));
        let fl = FloresOptions::default();
        let e = load_tasks(&dir, &[Task::Xnli], &[Lang::Zh], false, &fl).unwrap_err();
        assert!(e.to_string().contains("xnli/dev-zh.tsv"), "{e}");
        let e = load_tasks(&dir, &[Task::Xcopa], &[Lang::Ar], false, &fl).unwrap_err();
        assert!(matches!(e, EvalError::UnsupportedLanguage { .. }), "{e}");
        // With `all`, XCOPA-ar is skipped instead (and nothing else was asked for).
        assert!(load_tasks(&dir, &[Task::Xcopa], &[Lang::Ar], true, &fl).unwrap().is_empty());
        let e = load_tasks(&dir, &[Task::Flores], &[Lang::En], false, &fl).unwrap_err();
        assert!(matches!(e, EvalError::UnsupportedLanguage { .. }), "{e}");
        let e = load_tasks(&dir, &[Task::Flores], &[Lang::Zh], false, &fl).unwrap_err();
        assert!(e.to_string().contains("flores200/eng_Latn.devtest"), "{e}");
    }
}
