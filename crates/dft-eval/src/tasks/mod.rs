//! The benchmark registry and loaders. [`load_task`] takes a data directory laid out like
//! `shared/data/eval` (one folder per benchmark), a task name and a language, finds the file
//! (full release name first, then the `.sample` slice) and returns its items.
//!
//! | task | files looked for, in order (`{l}` = language) | items |
//! |---|---|---|
//! | xquad | `xquad/xquad.{l}.json`, `xquad/xquad.{l}.sample.json` | generative |
//! | mlqa | `mlqa/test-context-{l}-question-{l}.json`, `mlqa/dev-context-…json`, `mlqa/dev-context-….sample.json` | generative |
//! | mkqa | `mkqa/mkqa-{m}.jsonl`, `mkqa/mkqa-{m}.sample.jsonl` (`{m}`: zh → zh_cn), `mkqa/mkqa.jsonl` (all languages) | generative |
//! | truthfulqa | en: `truthfulqa/en/data/v0/mc_task.json`, `truthfulqa/en/mc_task.json`; else `truthfulqa/m_truthfulqa/{l}_validation[.sample].json` | MC1 |
//! | xnli | `xnli/dev-{l}.tsv`, `xnli/dev-{l}.sample.tsv` | acc |
//! | xcopa | `xcopa/test.{l}.jsonl`, `xcopa/val.{l}.jsonl` (no ar) | acc |
//! | xstorycloze | `xstorycloze/spring2016.val.{l}.tsv.split_20_80_{eval,train}.tsv` (no vi) | acc |
//! | mmlu | en: `mmlu/en/{test,val,dev}/` (all `*_{split}.csv`); else `mmlu/m_mmlu/{l}_{test,val,dev}.json` | acc |
//! | flores (not in `all`) | `flores200/{eng_Latn,F}.devtest[.sample]` (`F`: zho_Hans, vie_Latn, arb_Arab; no en) | chrF++ / BLEU, en→X and X→en |
//!
//! The splits follow lm-eval (test where it evaluates on test, validation otherwise); the
//! returned [`LoadedTask::files`] says which file was used.
pub mod flores;
pub mod io;
pub mod mkqa;
pub mod mmlu;
pub mod squad;
pub mod truthfulqa;
pub mod xcopa;
pub mod xnli;
pub mod xstorycloze;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{EvalError, Result};
use crate::items::TaskItems;
use crate::lang::Lang;
use crate::metrics::qa::QaNormalization;

/// A benchmark of the paper.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Task {
    Xquad,
    Mlqa,
    Mkqa,
    TruthfulQa,
    Xnli,
    Xcopa,
    XStoryCloze,
    Mmlu,
    /// FLORES-200 translation en↔X (not one of the paper's Tables 1–2 benchmarks).
    Flores,
}

/// How a task is scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskMetric {
    /// Accuracy of the argmax log-likelihood choice (also reports acc_norm).
    Acc,
    /// TruthfulQA MC1: accuracy with exactly one true choice.
    Mc1,
    /// Token F1 (and exact match) with the given normalisation, ×100.
    F1(QaNormalization),
    /// Corpus chrF++ (headline) and BLEU of greedy translations, per direction.
    ChrfBleu,
}

impl Task {
    /// The eight benchmarks of the paper's Tables 1–2 (`--tasks all`).
    pub const ALL: [Task; 8] =
        [Task::Xquad, Task::Mlqa, Task::Mkqa, Task::TruthfulQa, Task::Xnli, Task::Xcopa, Task::XStoryCloze, Task::Mmlu];
    /// Tasks that exist besides [`Task::ALL`] and must be named explicitly.
    pub const EXTRA: [Task; 1] = [Task::Flores];

    /// Every registered task: [`Task::ALL`] then [`Task::EXTRA`].
    pub fn registered() -> impl Iterator<Item = Task> {
        Task::ALL.into_iter().chain(Task::EXTRA)
    }

    /// Registry name: `xquad`, `mlqa`, `mkqa`, `truthfulqa`, `xnli`, `xcopa`, `xstorycloze`, `mmlu`.
    pub fn name(self) -> &'static str {
        match self {
            Task::Xquad => "xquad",
            Task::Mlqa => "mlqa",
            Task::Mkqa => "mkqa",
            Task::TruthfulQa => "truthfulqa",
            Task::Xnli => "xnli",
            Task::Xcopa => "xcopa",
            Task::XStoryCloze => "xstorycloze",
            Task::Mmlu => "mmlu",
            Task::Flores => "flores",
        }
    }

    /// Looks a task up by registry name (case-insensitive).
    pub fn from_name(name: &str) -> Result<Task> {
        let lower = name.to_ascii_lowercase();
        let lower = if lower == "flores200" || lower == "flores-200" { "flores".to_string() } else { lower };
        Task::registered().find(|t| t.name() == lower).ok_or_else(|| EvalError::UnknownTask {
            name: name.to_string(),
            known: Task::registered().map(Task::name).collect::<Vec<_>>().join(", "),
        })
    }

    /// The languages this task exists in (among en, zh, vi, ar).
    pub fn languages(self) -> &'static [Lang] {
        match self {
            Task::Xcopa => &[Lang::En, Lang::Zh, Lang::Vi],
            Task::XStoryCloze => &[Lang::En, Lang::Zh, Lang::Ar],
            Task::Flores => &[Lang::Zh, Lang::Vi, Lang::Ar],
            _ => &Lang::ALL,
        }
    }

    /// Whether the task is answered by generation (else multiple choice).
    pub fn is_generative(self) -> bool {
        matches!(self, Task::Xquad | Task::Mlqa | Task::Mkqa | Task::Flores)
    }

    /// The metric of this task in `lang` (QA normalisation per official script). XQuAD in Chinese
    /// (written without spaces) uses MLQA's normalisation, which splits Chinese into characters: the
    /// SQuAD v1.1 whitespace F1 is close to exact match there; it is reported beside it
    /// ([`Task::whitespace_f1`]).
    pub fn metric(self, lang: Lang) -> TaskMetric {
        match self {
            Task::Xquad if lang == Lang::Zh => TaskMetric::F1(QaNormalization::Mlqa(lang)),
            Task::Xquad => TaskMetric::F1(QaNormalization::Squad),
            Task::Mlqa => TaskMetric::F1(QaNormalization::Mlqa(lang)),
            Task::Mkqa => TaskMetric::F1(QaNormalization::Mkqa(lang)),
            Task::TruthfulQa => TaskMetric::Mc1,
            Task::Flores => TaskMetric::ChrfBleu,
            _ => TaskMetric::Acc,
        }
    }

    /// The second QA F1 reported for `lang` (SQuAD v1.1 whitespace F1 for XQuAD zh), if any.
    pub fn whitespace_f1(self, lang: Lang) -> Option<QaNormalization> {
        (self == Task::Xquad && lang == Lang::Zh).then_some(QaNormalization::Squad)
    }

    fn check_lang(self, lang: Lang) -> Result<()> {
        crate::prompts::require_lang(self.name(), lang, self.languages())
    }
}

impl FromStr for Task {
    type Err = EvalError;
    fn from_str(s: &str) -> Result<Self> {
        Task::from_name(s)
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The items of one task and language, with the files they came from.
#[derive(Clone, Debug)]
pub struct LoadedTask {
    pub task: Task,
    pub lang: Lang,
    pub files: Vec<PathBuf>,
    pub items: TaskItems,
}

/// Candidate paths (relative to the data directory) for `task` in `lang`, most preferred first.
/// MMLU English candidates are directories.
pub fn candidate_paths(task: Task, lang: Lang) -> Vec<PathBuf> {
    let l = lang.code();
    let v: Vec<String> = match task {
        Task::Xquad => vec![format!("xquad/xquad.{l}.json"), format!("xquad/xquad.{l}.sample.json")],
        Task::Mlqa => vec![
            format!("mlqa/test-context-{l}-question-{l}.json"),
            format!("mlqa/dev-context-{l}-question-{l}.json"),
            format!("mlqa/dev-context-{l}-question-{l}.sample.json"),
        ],
        Task::Mkqa => {
            let m = lang.mkqa_code();
            vec![format!("mkqa/mkqa-{m}.jsonl"), format!("mkqa/mkqa-{m}.sample.jsonl"), "mkqa/mkqa.jsonl".into()]
        }
        Task::TruthfulQa if lang == Lang::En => {
            vec!["truthfulqa/en/data/v0/mc_task.json".into(), "truthfulqa/en/mc_task.json".into()]
        }
        Task::TruthfulQa => vec![
            format!("truthfulqa/m_truthfulqa/{l}_validation.json"),
            format!("truthfulqa/m_truthfulqa/{l}_validation.sample.json"),
        ],
        Task::Xnli => vec![format!("xnli/dev-{l}.tsv"), format!("xnli/dev-{l}.sample.tsv")],
        Task::Xcopa => vec![format!("xcopa/test.{l}.jsonl"), format!("xcopa/val.{l}.jsonl")],
        Task::XStoryCloze => vec![
            format!("xstorycloze/spring2016.val.{l}.tsv.split_20_80_eval.tsv"),
            format!("xstorycloze/spring2016.val.{l}.tsv.split_20_80_train.tsv"),
        ],
        Task::Mmlu if lang == Lang::En => vec!["mmlu/en/test".into(), "mmlu/en/val".into(), "mmlu/en/dev".into()],
        Task::Mmlu => vec![
            format!("mmlu/m_mmlu/{l}_test.json"),
            format!("mmlu/m_mmlu/{l}_val.json"),
            format!("mmlu/m_mmlu/{l}_dev.json"),
        ],
        Task::Flores => return flores::candidate_paths(lang),
    };
    v.into_iter().map(PathBuf::from).collect()
}

/// Finds the data of `task` in `lang` under `data_dir`: the first existing candidate. For English
/// MMLU the result is the list of subject CSVs of the first split directory that has any.
pub fn find_task_files(data_dir: &Path, task: Task, lang: Lang) -> Result<Vec<PathBuf>> {
    task.check_lang(lang)?;
    if task == Task::Flores {
        let (en, tgt) = flores::find_flores_files(data_dir, lang)?;
        return Ok(vec![en, tgt]);
    }
    let candidates = candidate_paths(task, lang);
    for rel in &candidates {
        let p = data_dir.join(rel);
        if task == Task::Mmlu && lang == Lang::En {
            if p.is_dir() {
                let split = rel.file_name().and_then(|s| s.to_str()).unwrap_or_default();
                let files = mmlu::mmlu_csv_files(&p, split)?;
                if !files.is_empty() {
                    return Ok(files);
                }
            }
        } else if p.is_file() {
            return Ok(vec![p]);
        }
    }
    Err(EvalError::MissingFile {
        task: task.name().into(),
        lang: lang.code().into(),
        dir: data_dir.to_path_buf(),
        tried: candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
    })
}

/// Loads `task` in `lang` from `data_dir` (see the module table for the file names). FLORES gets
/// the default [`flores::FloresOptions`] (1-shot, both directions); see [`flores::load_flores`].
pub fn load(data_dir: &Path, task: Task, lang: Lang) -> Result<LoadedTask> {
    if task == Task::Flores {
        task.check_lang(lang)?;
        return flores::load_flores(data_dir, lang, &flores::FloresOptions::default());
    }
    let files = find_task_files(data_dir, task, lang)?;
    let first = &files[0];
    let items = match task {
        Task::Xquad | Task::Mlqa => TaskItems::Generative(squad::load_squad(first)?),
        Task::Mkqa if first.file_name().is_some_and(|n| n == "mkqa.jsonl") => {
            TaskItems::Generative(mkqa::load_mkqa_all_languages(first, lang)?)
        }
        Task::Mkqa => TaskItems::Generative(mkqa::load_mkqa_jsonl(first)?),
        Task::TruthfulQa if lang == Lang::En => TaskItems::MultipleChoice(truthfulqa::load_mc_task(first)?),
        Task::TruthfulQa => TaskItems::MultipleChoice(truthfulqa::load_okapi_truthfulqa(first)?),
        Task::Xnli => TaskItems::MultipleChoice(xnli::load_xnli(first, lang)?),
        Task::Xcopa => TaskItems::MultipleChoice(xcopa::load_xcopa(first, lang)?),
        Task::XStoryCloze => TaskItems::MultipleChoice(xstorycloze::load_xstorycloze(first)?),
        Task::Mmlu if lang == Lang::En => {
            let mut items = Vec::new();
            for f in &files {
                items.extend(mmlu::load_mmlu_csv(f)?);
            }
            TaskItems::MultipleChoice(items)
        }
        Task::Mmlu => TaskItems::MultipleChoice(mmlu::load_okapi_mmlu(first)?),
        Task::Flores => unreachable!("handled above"),
    };
    Ok(LoadedTask { task, lang, files, items })
}

/// [`load`] with the task and language given by name (`"xnli"`, `"zh"`).
pub fn load_task(data_dir: &Path, task: &str, lang: &str) -> Result<LoadedTask> {
    load(data_dir, Task::from_name(task)?, Lang::from_code(lang)?)
}
