//! XCOPA (and English COPA in the same JSONL format): `{premise, choice1, choice2, question:
//! cause|effect, label, idx}`. Context `premise[:-1] + " " + connector`, choices with the first
//! character lower-cased (lm-eval `xcopa/utils.py`).
use std::path::Path;

use serde::Deserialize;

use crate::error::{EvalError, Result};
use crate::items::MultipleChoiceItem;
use crate::lang::Lang;
use crate::prompts::{xcopa_choice, xcopa_connector, xcopa_context};
use crate::tasks::io::read_jsonl;

#[derive(Deserialize)]
struct Row {
    premise: String,
    choice1: String,
    choice2: String,
    question: String,
    label: i64,
    idx: Option<serde_json::Value>,
}

/// Loads an XCOPA JSONL file of language `lang` (en, zh or vi).
pub fn load_xcopa(path: &Path, lang: Lang) -> Result<Vec<MultipleChoiceItem>> {
    crate::prompts::require_lang("xcopa", lang, &[Lang::En, Lang::Zh, Lang::Vi])?;
    read_jsonl::<Row>(path)?
        .into_iter()
        .enumerate()
        .map(|(i, (line, row))| {
            let connector = xcopa_connector(lang, &row.question).ok_or_else(|| {
                EvalError::malformed(
                    path,
                    line,
                    format!("question must be `cause` or `effect`, found `{}`", row.question),
                )
            })?;
            if !(0..=1).contains(&row.label) {
                return Err(EvalError::malformed(path, line, format!("label must be 0 or 1, found {}", row.label)));
            }
            let id = match row.idx {
                Some(serde_json::Value::Number(n)) => format!("xcopa-{lang}/{n}"),
                _ => format!("xcopa-{lang}/{i}"),
            };
            Ok(MultipleChoiceItem {
                id,
                context: xcopa_context(&row.premise, connector),
                choices: vec![xcopa_choice(&row.choice1), xcopa_choice(&row.choice2)],
                gold: row.label as usize,
            })
        })
        .collect()
}
