//! lm-evaluation-harness style output of one evaluated model, so that tooling written for lm-eval
//! reads dft's results: `results.json` with
//! `results{"<task>_<lang>": {"acc,none", "acc_stderr,none", "acc_norm,none", …}}`, `configs`,
//! `versions`, `n-shot`, `higher_is_better`, `n-samples` and the run's `config`, and per task
//! `samples_<task>_<lang>.jsonl` (one line per item: doc id, item id, prompt, arguments, every
//! choice's log-likelihood, prediction, gold and the item's metrics).
//!
//! Scales follow lm-eval: accuracies are fractions in [0, 1] (`acc_stderr` is lm-eval's
//! `mean_stderr`, the binomial `sqrt(p (1 - p) / (n - 1))`); QA F1 / exact match are percentages as in
//! lm-eval's SQuAD tasks, with a bootstrap standard error over items ([`crate::stats`]). FLORES
//! directions are reported as `flores_<src>-<tgt>` with `chrf++`, `chrf` and `bleu` (no standard error).
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::error::Result;
use crate::items::TaskItems;
use crate::report::{write_atomic, EvalRun, TaskOutcome, TaskResult};
use crate::stats::{bootstrap_stderr, mean_stderr, DEFAULT_RESAMPLES};
use crate::tasks::LoadedTask;

/// Seed of the bootstrap standard errors of F1 scores (fixed: the same items give the same error).
pub const STDERR_SEED: u64 = 0x5eed;

/// `xnli_zh`, lm-eval's task naming.
pub fn task_key(r: &TaskResult) -> String {
    format!("{}_{}", r.task, r.lang.code())
}

/// The split an item file belongs to, from its name (`dev`, `test`, `validation`, `train`; `(sample)`
/// for the shipped `.sample` slices) — reported next to every score.
pub fn split_of(files: &[PathBuf]) -> String {
    let Some(f) = files.first() else { return "unknown".into() };
    let part = |p: Option<&std::ffi::OsStr>| p.map(|s| s.to_string_lossy().to_lowercase()).unwrap_or_default();
    let file = part(f.file_name());
    // The file name and its folder only (MMLU's `en/dev/…csv`): never the user's own directory names.
    let name = format!("{}/{file}", part(f.parent().and_then(|p| p.file_name())));
    let split = if name.contains("devtest") {
        "devtest"
    } else if name.contains("_eval.tsv") || name.contains("test") {
        "test"
    } else if name.contains("_train.tsv") {
        // XStoryCloze's 20/80 split of the validation stories: lm-eval scores the `eval` part; the
        // shipped slice is the `train` part.
        "train (20/80 split; lm-eval scores eval)"
    } else if name.contains("dev") {
        "dev"
    } else if name.contains("val") || file.starts_with("xquad.") {
        // XQuAD ships one split, its validation set (as the HF dataset names it).
        "validation"
    } else {
        "unknown"
    };
    if file.contains(".sample") {
        format!("{split} (sample)")
    } else {
        split.to_string()
    }
}

/// Per-item values of the headline score, in the score's scale (percent): 0/100 for multiple choice,
/// F1 × 100 for QA; `None` for translation (a corpus-level score).
pub fn item_scores(r: &TaskResult) -> Option<Vec<f64>> {
    match &r.outcome {
        TaskOutcome::MultipleChoice { result, .. } => {
            Some(result.per_item.iter().map(|p| if p.pred == p.gold { 100.0 } else { 0.0 }).collect())
        }
        TaskOutcome::Generative { result, .. } => Some(result.per_item.iter().map(|s| 100.0 * s.f1).collect()),
        TaskOutcome::Translation { .. } => None,
    }
}

/// Standard error of the headline score in percent: binomial for accuracy, bootstrap over items
/// for F1; `None` for translation.
pub fn score_stderr(r: &TaskResult) -> Option<f64> {
    let xs = item_scores(r)?;
    Some(match &r.outcome {
        TaskOutcome::MultipleChoice { .. } => mean_stderr(&xs),
        _ => bootstrap_stderr(&xs, DEFAULT_RESAMPLES, STDERR_SEED),
    })
}

fn f(x: f64) -> Value {
    // NaN (a standard error of one item) is not JSON; lm-eval writes "N/A" there.
    if x.is_finite() {
        json!(x)
    } else {
        json!("N/A")
    }
}

/// The `results` entries of one task result (several for FLORES, one per direction).
fn result_entries(r: &TaskResult) -> Vec<(String, Map<String, Value>)> {
    let mut m = Map::new();
    let key = task_key(r);
    m.insert("alias".into(), json!(key));
    match &r.outcome {
        TaskOutcome::MultipleChoice { result, .. } => {
            let frac = |p: &dyn Fn(&crate::metrics::McPrediction) -> usize| -> Vec<f64> {
                result.per_item.iter().map(|x| if p(x) == x.gold { 1.0 } else { 0.0 }).collect()
            };
            let acc = frac(&|x| x.pred);
            let norm = frac(&|x| x.pred_norm);
            let metric = if r.metric == "mc1" { "mc1" } else { "acc" };
            m.insert(format!("{metric},none"), f(crate::stats::mean(&acc)));
            m.insert(format!("{metric}_stderr,none"), f(mean_stderr(&acc)));
            if metric == "acc" {
                m.insert("acc_norm,none".into(), f(crate::stats::mean(&norm)));
                m.insert("acc_norm_stderr,none".into(), f(mean_stderr(&norm)));
            }
        }
        TaskOutcome::Generative { result, .. } => {
            let f1: Vec<f64> = result.per_item.iter().map(|s| 100.0 * s.f1).collect();
            let em: Vec<f64> = result.per_item.iter().map(|s| 100.0 * s.exact_match).collect();
            m.insert("f1,none".into(), f(result.f1));
            m.insert("f1_stderr,none".into(), f(bootstrap_stderr(&f1, DEFAULT_RESAMPLES, STDERR_SEED)));
            m.insert("exact_match,none".into(), f(result.exact_match));
            m.insert("exact_match_stderr,none".into(), f(bootstrap_stderr(&em, DEFAULT_RESAMPLES, STDERR_SEED)));
            if let Some(ws) = result.f1_whitespace {
                m.insert("f1_whitespace,none".into(), f(ws));
            }
        }
        TaskOutcome::Translation { directions, .. } => {
            return directions
                .iter()
                .map(|d| {
                    let key = format!("{}_{}-{}", r.task, d.src.code(), d.tgt.code());
                    let mut m = Map::new();
                    m.insert("alias".into(), json!(key));
                    m.insert("chrf++,none".into(), f(d.chrf_pp));
                    m.insert("chrf,none".into(), f(d.chrf));
                    m.insert("bleu,none".into(), f(d.bleu));
                    (key, m)
                })
                .collect();
        }
    }
    vec![(key, m)]
}

/// lm-eval's `results.json` object for one run (one model).
pub fn results_json(run: &EvalRun) -> Value {
    let (mut results, mut configs, mut versions, mut nshot, mut hib, mut nsamples) =
        (Map::new(), Map::new(), Map::new(), Map::new(), Map::new(), Map::new());
    for r in &run.results {
        let split = split_of(&r.files);
        let shots = match &r.outcome {
            TaskOutcome::Translation { directions, .. } => directions.first().map_or(0, |d| d.shots),
            _ => 0,
        };
        for (key, entry) in result_entries(r) {
            let metrics: Vec<String> = entry
                .keys()
                .filter(|k| k.ends_with(",none") && !k.contains("_stderr"))
                .map(|k| k.trim_end_matches(",none").to_string())
                .collect();
            configs.insert(
                key.clone(),
                json!({
                    "task": key,
                    "dataset_path": r.files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                    "test_split": split,
                    "num_fewshot": shots,
                    "output_type": match &r.outcome {
                        TaskOutcome::MultipleChoice { .. } => "multiple_choice",
                        _ => "generate_until",
                    },
                    "metric_list": metrics.iter().map(|m| json!({"metric": m, "higher_is_better": true})).collect::<Vec<_>>(),
                }),
            );
            versions.insert(key.clone(), json!(1.0));
            nshot.insert(key.clone(), json!(shots));
            hib.insert(key.clone(), Value::Object(metrics.iter().map(|m| (m.clone(), json!(true))).collect()));
            nsamples.insert(key.clone(), json!({"original": r.n, "effective": r.n}));
            results.insert(key, Value::Object(entry));
        }
    }
    json!({
        "results": results,
        "configs": configs,
        "versions": versions,
        "n-shot": nshot,
        "higher_is_better": hib,
        "n-samples": nsamples,
        "config": {
            "model": "dft-rs",
            "model_args": run.model,
            "method": run.method,
            "batch_size": run.options.batch_size,
            "limit": run.options.limit,
            "max_new_tokens": run.options.max_new_tokens,
            "bootstrap_iters": DEFAULT_RESAMPLES,
        },
        "dft_rs_version": env!("CARGO_PKG_VERSION"),
    })
}

/// One `samples_<task>_<lang>.jsonl` line per scored item (`None` for items not in `task`).
pub fn samples_jsonl(r: &TaskResult, task: &LoadedTask) -> String {
    let mut out = String::new();
    let mut push = |v: Value| {
        out.push_str(&v.to_string());
        out.push('\n');
    };
    match (&r.outcome, &task.items) {
        (TaskOutcome::MultipleChoice { result, logliks }, TaskItems::MultipleChoice(items)) => {
            for (i, ((item, p), ll)) in items.iter().zip(&result.per_item).zip(logliks).enumerate() {
                push(json!({
                    "doc_id": i,
                    "id": item.id,
                    "prompt": item.context,
                    "arguments": item.choices.iter().map(|c| [item.context.as_str(), c.as_str()]).collect::<Vec<_>>(),
                    "resps": ll.iter().map(|l| vec![json!([l.logprob, l.is_greedy])]).collect::<Vec<_>>(),
                    "filtered_resps": ll.iter().map(|l| json!([l.logprob, l.is_greedy])).collect::<Vec<_>>(),
                    "filter": "none",
                    "target": p.gold,
                    "gold": p.gold,
                    "prediction": p.pred,
                    "prediction_norm": p.pred_norm,
                    "acc": if p.pred == p.gold { 1.0 } else { 0.0 },
                    "acc_norm": if p.pred_norm == p.gold { 1.0 } else { 0.0 },
                }));
            }
        }
        (TaskOutcome::Generative { result, generations }, TaskItems::Generative(items)) => {
            for (i, ((item, s), g)) in items.iter().zip(&result.per_item).zip(generations).enumerate() {
                push(json!({
                    "doc_id": i,
                    "id": item.id,
                    "prompt": item.prompt,
                    "arguments": [[item.prompt.as_str(), {"until": ["\n"]}]],
                    "resps": [[g.text]],
                    "filtered_resps": [g.text],
                    "filter": "none",
                    "target": item.answers,
                    "gold": item.answers,
                    "prediction": g.text,
                    "f1": 100.0 * s.f1,
                    "exact_match": 100.0 * s.exact_match,
                }));
            }
        }
        (TaskOutcome::Translation { generations, .. }, TaskItems::Translation(items)) => {
            for (i, (item, g)) in items.iter().zip(generations).enumerate() {
                push(json!({
                    "doc_id": i,
                    "id": item.id,
                    "direction": format!("{}-{}", item.src.code(), item.tgt.code()),
                    "prompt": item.prompt,
                    "resps": [[g.text]],
                    "filtered_resps": [g.text],
                    "filter": "none",
                    "target": item.reference,
                    "gold": item.reference,
                    "prediction": g.text,
                }));
            }
        }
        _ => {}
    }
    out
}

/// Writes `dir/results.json` and `dir/samples_<task>_<lang>.jsonl` for `run` (atomically, each file
/// through a temporary and a rename). `tasks` are the loaded tasks the results came from (for the
/// prompts); results without a matching loaded task get no samples file.
pub fn write_lm_eval(dir: &Path, run: &EvalRun, tasks: &[LoadedTask]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| crate::EvalError::io(dir, e))?;
    let text = serde_json::to_string_pretty(&results_json(run)).expect("JSON values serialise");
    write_atomic(&dir.join("results.json"), (text + "\n").as_bytes())?;
    for r in &run.results {
        if let Some(t) = tasks.iter().find(|t| t.task.name() == r.task && t.lang == r.lang) {
            write_atomic(&dir.join(format!("samples_{}.jsonl", task_key(r))), samples_jsonl(r, t).as_bytes())?;
        }
    }
    Ok(())
}

/// A folder name for a method label (`DFT (chat)` → `DFT_chat_`).
pub fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names_come_from_the_file_not_the_folder_it_lives_in() {
        let s = |p: &str| split_of(&[PathBuf::from(p)]);
        assert_eq!(s("/tmp/my-test-dir/xnli/dev-zh.sample.tsv"), "dev (sample)");
        assert_eq!(s("/data/xcopa/val.zh.jsonl"), "validation");
        assert_eq!(s("/d/mmlu/en/test/abstract_algebra_test.csv"), "test");
        assert_eq!(s("/d/mmlu/m_mmlu/zh_val.json"), "validation");
        assert_eq!(s("/d/xquad/xquad.zh.json"), "validation");
        assert_eq!(s("/d/xquad/xquad.zh.sample.json"), "validation (sample)");
        assert_eq!(s("/d/flores200/zho_Hans.devtest.sample"), "devtest (sample)");
        assert_eq!(
            s("/d/xstorycloze/spring2016.val.zh.tsv.split_20_80_train.tsv"),
            "train (20/80 split; lm-eval scores eval)"
        );
    }
}
