//! MKQA in its two formats, both into generative items with the context-free
//! `"Question: …\n\nAnswer:"` prompt:
//! - per-language JSON Lines `{id, lang, question, answers: [str]}` (MIA 2022 shared task);
//! - the original all-languages `mkqa.jsonl` `{example_id, query, queries: {lang: str},
//!   answers: {lang: [{type, text, aliases, entity?}]}}`, where gold answers are each answer's
//!   `text` (`null` → `""`, MKQA's "no answer") plus its `aliases`, de-duplicated, as
//!   `mkqa_eval.py::read_annotations` does.
//!
//! An empty answer list is read as `[""]` (no answer), so every item can be scored.
use std::path::Path;

use serde::Deserialize;

use crate::error::{EvalError, Result};
use crate::items::GenerativeItem;
use crate::lang::Lang;
use crate::prompts::open_qa_prompt;
use crate::tasks::io::read_jsonl;

#[derive(Deserialize)]
struct MiaRow {
    id: String,
    question: String,
    answers: Vec<Option<String>>,
}

#[derive(Deserialize)]
struct MkqaRow {
    example_id: serde_json::Value,
    queries: serde_json::Map<String, serde_json::Value>,
    answers: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct MkqaAnswer {
    text: Option<String>,
    #[serde(default)]
    aliases: Option<Vec<String>>,
}

fn dedup(answers: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(answers.len());
    for a in answers {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

/// Loads a per-language MKQA JSON Lines file (`mkqa-<lang>.jsonl`).
pub fn load_mkqa_jsonl(path: &Path) -> Result<Vec<GenerativeItem>> {
    Ok(read_jsonl::<MiaRow>(path)?
        .into_iter()
        .map(|(_, row)| GenerativeItem {
            id: row.id,
            prompt: open_qa_prompt(&row.question),
            answers: dedup(row.answers.into_iter().map(Option::unwrap_or_default).collect()),
        })
        .collect())
}

/// Loads one language of the original all-languages `mkqa.jsonl`. Item ids are
/// `<example_id>_<mkqa lang code>`, as in the per-language files.
pub fn load_mkqa_all_languages(path: &Path, lang: Lang) -> Result<Vec<GenerativeItem>> {
    let code = lang.mkqa_code();
    let mut items = Vec::new();
    for (line, row) in read_jsonl::<MkqaRow>(path)? {
        let bad = |msg: String| EvalError::malformed(path, line, msg);
        let question =
            row.queries.get(code).and_then(|q| q.as_str()).ok_or_else(|| bad(format!("no `queries.{code}` string")))?;
        let answers_json = row.answers.get(code).ok_or_else(|| bad(format!("no `answers.{code}` list")))?;
        let answers: Vec<MkqaAnswer> =
            serde_json::from_value(answers_json.clone()).map_err(|e| bad(format!("`answers.{code}`: {e}")))?;
        let mut gold = Vec::new();
        for a in answers {
            gold.push(a.text.unwrap_or_default());
            gold.extend(a.aliases.unwrap_or_default());
        }
        let id = match &row.example_id {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        items.push(GenerativeItem {
            id: format!("{id}_{code}"),
            prompt: open_qa_prompt(question),
            answers: dedup(gold),
        });
    }
    Ok(items)
}
