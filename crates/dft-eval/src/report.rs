//! Results of an evaluation run and the paper-style table.
//!
//! A [`TaskResult`] is one task in one language: the headline score (acc, MC1 or F1, ×100), the
//! per-item details and throughput counters. An [`EvalReport`] collects runs of several methods
//! (`results.json`); [`EvalReport::markdown`] renders them like the paper's Tables 1–2: one table
//! per language, a row per method, a column per benchmark and their average; FLORES translation
//! results get their own table per language (chrF++ and BLEU per direction), outside the average.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::items::TaskItems;
use crate::lang::Lang;
use crate::metrics::{F1Result, MCResult, TranslationScore};
use crate::scoring::{EvalOptions, Generation, Loglik, Throughput};
use crate::tasks::{LoadedTask, Task, TaskMetric};

/// The per-item details of a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskOutcome {
    /// acc / acc_norm / MC1 with the log-likelihood of every choice.
    MultipleChoice { result: MCResult, logliks: Vec<Vec<Loglik>> },
    /// F1 / EM with the generated answers.
    Generative { result: F1Result, generations: Vec<Generation> },
    /// chrF++ / BLEU per direction with the generated translations (in item order).
    Translation { directions: Vec<TranslationScore>, generations: Vec<Generation> },
}

/// One task in one language.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// Registry name (`xnli`).
    pub task: String,
    pub lang: Lang,
    /// `acc`, `mc1`, `f1` or `chrf++`.
    pub metric: String,
    /// The paper's number for this cell: acc, MC1 or F1, in percent (translation: chrF++ of the
    /// first direction, en→X when it was run; every direction is in `outcome`).
    pub score: f64,
    /// Items scored.
    pub n: usize,
    /// Data files the items came from.
    pub files: Vec<PathBuf>,
    /// Item ids, in the order of the per-item details.
    pub ids: Vec<String>,
    pub throughput: Throughput,
    pub outcome: TaskOutcome,
}

impl TaskResult {
    /// Assembles the result of `task` (its first `outcome`-many items) scored with `metric`.
    pub fn new(task: &LoadedTask, metric: TaskMetric, outcome: TaskOutcome, throughput: Throughput) -> Self {
        let (metric_name, score, n) = match (&outcome, metric) {
            (TaskOutcome::MultipleChoice { result, .. }, TaskMetric::Mc1) => ("mc1", result.mc1(), result.n),
            (TaskOutcome::MultipleChoice { result, .. }, _) => ("acc", result.acc, result.n),
            (TaskOutcome::Generative { result, .. }, _) => ("f1", result.f1, result.n),
            (TaskOutcome::Translation { directions, generations }, _) => {
                ("chrf++", directions.first().map_or(0.0, |d| d.chrf_pp), generations.len())
            }
        };
        let ids = match &task.items {
            TaskItems::MultipleChoice(v) => v.iter().take(n).map(|i| i.id.clone()).collect(),
            TaskItems::Generative(v) => v.iter().take(n).map(|i| i.id.clone()).collect(),
            TaskItems::Translation(v) => v.iter().take(n).map(|i| i.id.clone()).collect(),
        };
        TaskResult {
            task: task.task.name().to_string(),
            lang: task.lang,
            metric: metric_name.to_string(),
            score,
            n,
            files: task.files.clone(),
            ids,
            throughput,
            outcome,
        }
    }
}

/// One `dft eval` invocation: a model (under a method name) on some tasks and languages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRun {
    /// Row label in the table (`base`, `TFT`, `DFT`, …).
    pub method: String,
    /// The model path as given.
    pub model: String,
    pub options: EvalOptions,
    pub results: Vec<TaskResult>,
}

/// All runs in an output folder (`results.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub runs: Vec<EvalRun>,
    /// Results replaced by a later run of the same method, model, task, language and limit (oldest
    /// first), kept so a re-run never destroys an earlier score.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<EvalRun>,
}

/// Write `bytes` to `path` through `.<name>.tmp<pid>` and a rename (the temporary is removed on failure).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let r = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path));
    r.map_err(|e| {
        std::fs::remove_file(&tmp).ok();
        EvalError::io(path, e)
    })
}

/// The benchmark's name as the paper writes it.
pub fn display_name(task: Task) -> &'static str {
    match task {
        Task::Xquad => "XQuAD",
        Task::Mlqa => "MLQA",
        Task::Mkqa => "MKQA",
        Task::TruthfulQa => "TruthfulQA",
        Task::Xnli => "XNLI",
        Task::Xcopa => "XCOPA",
        Task::XStoryCloze => "XStoryCloze",
        Task::Mmlu => "MMLU",
        Task::Flores => "FLORES-200",
    }
}

impl EvalReport {
    /// Reads `path` (a `results.json` written by [`EvalReport::save`]); a missing file is an
    /// empty report.
    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Ok(EvalReport::default());
        }
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| EvalError::Results {
            path: path.to_path_buf(),
            message: format!("not a dft eval results file: {e} (move it away or pick another --out)"),
        })
    }

    /// Writes the report as pretty JSON (via a temporary file and a rename: an interrupted write
    /// never leaves a half-written results.json).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| EvalError::Results { path: path.to_path_buf(), message: e.to_string() })?;
        write_atomic(path, (text + "\n").as_bytes())
    }

    /// Adds `run`. Results of the same method, model, task, language and limit from earlier runs are
    /// replaced, and moved to [`EvalReport::history`]; others stay (the table shows the latest run of
    /// a method per task and language). Tasks without items never get here (an error in scoring).
    pub fn merge(&mut self, run: EvalRun) {
        for old in self.runs.iter_mut().filter(|r| r.method == run.method && r.model == run.model) {
            if old.options.limit != run.options.limit {
                continue;
            }
            let (replaced, kept): (Vec<TaskResult>, Vec<TaskResult>) = std::mem::take(&mut old.results)
                .into_iter()
                .partition(|o| run.results.iter().any(|n| n.task == o.task && n.lang == o.lang));
            old.results = kept;
            if !replaced.is_empty() {
                self.history.push(EvalRun { results: replaced, ..old.clone() });
            }
        }
        self.runs.retain(|r| !r.results.is_empty());
        self.runs.push(run);
    }

    /// The score of `method` on `task` in `lang`, with its item count (latest run wins).
    pub fn cell(&self, method: &str, task: Task, lang: Lang) -> Option<(f64, usize)> {
        self.result(method, task, lang).map(|t| (t.score, t.n))
    }

    /// The latest result of `method` on `task` in `lang`.
    pub fn result(&self, method: &str, task: Task, lang: Lang) -> Option<&TaskResult> {
        self.runs
            .iter()
            .rev()
            .filter(|r| r.method == method)
            .flat_map(|r| r.results.iter())
            .find(|t| t.task == task.name() && t.lang == lang)
    }

    /// Translation directions of `method` in `lang` (FLORES), if it was run.
    pub fn translation(&self, method: &str, lang: Lang) -> Option<&[TranslationScore]> {
        match &self.result(method, Task::Flores, lang)?.outcome {
            TaskOutcome::Translation { directions, .. } => Some(directions),
            _ => None,
        }
    }

    /// The FLORES table of `lang`: a row per method, chrF++ and BLEU per direction; empty when no
    /// method has translation results in `lang`.
    pub fn translation_markdown(&self, lang: Lang, methods: &[&str]) -> String {
        let mut dirs: Vec<(Lang, Lang)> = Vec::new();
        let mut notes: Vec<String> = Vec::new();
        for m in methods {
            for d in self.translation(m, lang).unwrap_or_default() {
                if !dirs.contains(&(d.src, d.tgt)) {
                    dirs.push((d.src, d.tgt));
                    notes.push(format!(
                        "{} n={} ({}-shot, BLEU tokenizer {})",
                        d.direction(),
                        d.n,
                        d.shots,
                        match d.bleu_tokenizer {
                            crate::metrics::BleuTokenizer::Zh => "zh",
                            crate::metrics::BleuTokenizer::Tok13a => "13a",
                            crate::metrics::BleuTokenizer::None => "none",
                        }
                    ));
                }
            }
        }
        if dirs.is_empty() {
            return String::new();
        }
        dirs.sort_by_key(|&(src, _)| src != Lang::En);
        let mut out = format!("#### {lang}: translation (FLORES-200 devtest, greedy)\n\n| Method |");
        for (s, t) in &dirs {
            out.push_str(&format!(" {s}→{t} chrF++ | {s}→{t} BLEU |"));
        }
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(2 * dirs.len()));
        out.push('\n');
        for m in methods {
            let Some(scores) = self.translation(m, lang) else { continue };
            out.push_str(&format!("| {m} |"));
            for &(s, t) in &dirs {
                match scores.iter().find(|d| (d.src, d.tgt) == (s, t)) {
                    Some(d) => out.push_str(&format!(" {:.1} | {:.1} |", d.chrf_pp, d.bleu)),
                    None => out.push_str(" – | – |"),
                }
            }
            out.push('\n');
        }
        out.push_str(&format!("\nSentences: {}.\n\n", notes.join(", ")));
        out
    }

    /// Paper-style Markdown: per language a table of methods × benchmarks (scores ×100, `–` where
    /// not run) with the average of the cells present, then the item counts.
    pub fn markdown(&self) -> String {
        let mut methods: Vec<&str> = Vec::new();
        for r in &self.runs {
            if !methods.contains(&r.method.as_str()) {
                methods.push(&r.method);
            }
        }
        let mut langs: Vec<Lang> = self.runs.iter().flat_map(|r| r.results.iter().map(|t| t.lang)).collect();
        langs.sort();
        langs.dedup();
        let mut out = String::new();
        for lang in langs {
            let tasks: Vec<Task> =
                Task::ALL.into_iter().filter(|&t| methods.iter().any(|m| self.cell(m, t, lang).is_some())).collect();
            if tasks.is_empty() {
                out.push_str(&format!("### {lang}\n\n"));
                out.push_str(&self.translation_markdown(lang, &methods));
                continue;
            }
            out.push_str(&format!("### {lang}\n\n| Method |"));
            for t in &tasks {
                out.push_str(&format!(" {} |", display_name(*t)));
            }
            // XQuAD zh: the whitespace F1 as a second column, outside the average.
            let ws = |m: &str| match self.result(m, Task::Xquad, lang).map(|r| &r.outcome) {
                Some(TaskOutcome::Generative { result, .. }) => result.f1_whitespace,
                _ => None,
            };
            let ws_col = methods.iter().any(|m| ws(m).is_some());
            out.push_str(" Avg |");
            if ws_col {
                out.push_str(" XQuAD whitespace F1 |");
            }
            out.push_str("\n|---|");
            out.push_str(&"---:|".repeat(tasks.len() + 1 + ws_col as usize));
            out.push('\n');
            for m in &methods {
                out.push_str(&format!("| {m} |"));
                let mut sum = 0.0;
                let mut k = 0;
                for &t in &tasks {
                    match self.cell(m, t, lang) {
                        Some((s, _)) => {
                            out.push_str(&format!(" {s:.1} |"));
                            sum += s;
                            k += 1;
                        }
                        None => out.push_str(" – |"),
                    }
                }
                let avg = if k == 0 { "–".to_string() } else { format!("{:.1}", sum / k as f64) };
                out.push_str(&format!(" {avg} |"));
                if ws_col {
                    out.push_str(&ws(m).map_or(" – |".to_string(), |v| format!(" {v:.1} |")));
                }
                out.push('\n');
            }
            let counts: Vec<String> = tasks
                .iter()
                .filter_map(|&t| {
                    let ns: Vec<usize> = methods.iter().filter_map(|m| self.cell(m, t, lang).map(|c| c.1)).collect();
                    let metric = self.metric_of(t, lang)?;
                    let split = self.split_of(t, lang).unwrap_or_default();
                    ns.first().map(|n| format!("{} {metric} n={n} ({split})", display_name(t)))
                })
                .collect();
            out.push_str(&format!("\nItems: {}.\n\n", counts.join(", ")));
            out.push_str(&self.translation_markdown(lang, &methods));
        }
        out
    }

    /// The split the items of `task` in `lang` came from (file name based, see [`crate::lm_eval::split_of`]).
    pub fn split_of(&self, task: Task, lang: Lang) -> Option<String> {
        self.runs
            .iter()
            .flat_map(|r| r.results.iter())
            .find(|t| t.task == task.name() && t.lang == lang)
            .map(|t| crate::lm_eval::split_of(&t.files))
    }

    fn metric_of(&self, task: Task, lang: Lang) -> Option<String> {
        self.runs.iter().flat_map(|r| r.results.iter()).find(|t| t.task == task.name() && t.lang == lang).map(|t| {
            if matches!(&t.outcome, TaskOutcome::Generative { result, .. } if result.f1_whitespace.is_some()) {
                "F1 (MLQA-style, Chinese per character; whitespace F1 in the last column)".to_string()
            } else if t.metric == "f1" {
                "F1".to_string()
            } else {
                t.metric.clone()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::QaScore;

    fn result(task: Task, lang: Lang, score: f64) -> TaskResult {
        let outcome = TaskOutcome::Generative {
            result: F1Result {
                f1: score,
                exact_match: 0.0,
                n: 2,
                per_item: vec![QaScore { f1: 0.0, exact_match: 0.0 }],
                f1_whitespace: None,
            },
            generations: vec![],
        };
        TaskResult {
            task: task.name().into(),
            lang,
            metric: "f1".into(),
            score,
            n: 2,
            files: vec![],
            ids: vec![],
            throughput: Throughput::default(),
            outcome,
        }
    }

    fn run(method: &str, results: Vec<TaskResult>) -> EvalRun {
        EvalRun { method: method.into(), model: "m".into(), options: EvalOptions::default(), results }
    }

    #[test]
    fn translation_gets_its_own_table() {
        use crate::items::TranslationItem;
        use crate::metrics::translation::score_translation;
        let item = |src: Lang, tgt: Lang, r: &str| TranslationItem {
            id: format!("{src}-{tgt}"),
            src,
            tgt,
            source: String::new(),
            reference: r.into(),
            prompt: String::new(),
            shots: 1,
        };
        let items = vec![item(Lang::En, Lang::Zh, "我们今天去北京看长城。"), item(Lang::Zh, Lang::En, "Hello.")];
        let directions = score_translation(&items, &["我们今天去北京看长城。", "Hi."]).unwrap();
        let tr = TaskResult {
            task: "flores".into(),
            lang: Lang::Zh,
            metric: "chrf++".into(),
            score: directions[0].chrf_pp,
            n: 2,
            files: vec![],
            ids: vec![],
            throughput: Throughput::default(),
            outcome: TaskOutcome::Translation { directions, generations: vec![] },
        };
        let mut rep = EvalReport::default();
        rep.merge(run("base", vec![tr.clone()]));
        let md = rep.markdown();
        assert!(md.contains("| Method | en→zh chrF++ | en→zh BLEU | zh→en chrF++ | zh→en BLEU |"), "{md}");
        assert!(md.contains("| base | 100.0 | 100.0 |"), "{md}");
        assert!(md.contains("en→zh n=1 (1-shot, BLEU tokenizer zh), zh→en n=1 (1-shot, BLEU tokenizer 13a)"), "{md}");
        // Next to the paper's benchmarks, outside their average.
        rep.merge(run("base", vec![result(Task::Xquad, Lang::Zh, 10.0)]));
        let md = rep.markdown();
        assert!(md.contains("| base | 10.0 | 10.0 |") && md.contains("en→zh chrF++"), "{md}");
        let back: EvalReport = serde_json::from_str(&serde_json::to_string(&rep).unwrap()).unwrap();
        assert_eq!(back, rep);
    }

    #[test]
    fn merge_keeps_other_limits_and_moves_replaced_results_to_history() {
        let with_limit = |limit, score| EvalRun {
            options: EvalOptions { limit, ..Default::default() },
            ..run("base", vec![result(Task::Xquad, Lang::Zh, score)])
        };
        let mut rep = EvalReport::default();
        rep.merge(with_limit(Some(10), 1.0));
        rep.merge(with_limit(Some(50), 2.0));
        assert_eq!(rep.runs.len(), 2, "another limit is another result");
        assert!(rep.history.is_empty());
        rep.merge(with_limit(Some(10), 3.0));
        assert_eq!(rep.runs.len(), 2);
        assert_eq!(rep.history.len(), 1);
        assert_eq!(rep.history[0].results[0].score, 1.0);
        assert_eq!(rep.cell("base", Task::Xquad, Lang::Zh), Some((3.0, 2)), "the table shows the latest run");
        let back: EvalReport = serde_json::from_str(&serde_json::to_string(&rep).unwrap()).unwrap();
        assert_eq!(back, rep);
        // Reports written before `history` existed still load.
        let old: EvalReport = serde_json::from_str(r#"{"runs": []}"#).unwrap();
        assert!(old.history.is_empty());
    }

    #[test]
    fn xquad_zh_gets_the_whitespace_f1_as_a_second_column() {
        assert_eq!(Task::Xquad.metric(Lang::Zh), TaskMetric::F1(crate::QaNormalization::Mlqa(Lang::Zh)));
        assert_eq!(Task::Xquad.metric(Lang::En), TaskMetric::F1(crate::QaNormalization::Squad));
        let mut r = result(Task::Xquad, Lang::Zh, 40.0);
        if let TaskOutcome::Generative { result, .. } = &mut r.outcome {
            result.f1_whitespace = Some(12.5);
        }
        let mut rep = EvalReport::default();
        rep.merge(run("base", vec![r, result(Task::Mkqa, Lang::Zh, 20.0)]));
        let md = rep.markdown();
        assert!(md.contains("| Method | XQuAD | MKQA | Avg | XQuAD whitespace F1 |"), "{md}");
        assert!(md.contains("| base | 40.0 | 20.0 | 30.0 | 12.5 |"), "{md}");
        assert!(md.contains("XQuAD F1 (MLQA-style, Chinese per character"), "{md}");
    }

    #[test]
    fn table_has_a_row_per_method_and_merge_replaces_cells() {
        let mut rep = EvalReport::default();
        rep.merge(run("base", vec![result(Task::Xquad, Lang::Zh, 10.0), result(Task::Mkqa, Lang::Zh, 20.0)]));
        rep.merge(run("dft", vec![result(Task::Xquad, Lang::Zh, 30.0)]));
        rep.merge(run("base", vec![result(Task::Xquad, Lang::Zh, 12.0)]));
        let md = rep.markdown();
        assert!(md.contains("| Method | XQuAD | MKQA | Avg |"), "{md}");
        assert!(md.contains("| base | 12.0 | 20.0 | 16.0 |"), "{md}");
        assert!(md.contains("| dft | 30.0 | – | 30.0 |"), "{md}");
        assert_eq!(rep.cell("base", Task::Xquad, Lang::Zh), Some((12.0, 2)));
        let back: EvalReport = serde_json::from_str(&serde_json::to_string(&rep).unwrap()).unwrap();
        assert_eq!(back, rep);
    }
}
