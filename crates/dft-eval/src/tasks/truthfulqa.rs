//! TruthfulQA MC1, from the original `mc_task.json` (`[{question, mc1_targets: {choice: 0|1},
//! mc2_targets}]`, choices in file order) or from Okapi's m_TruthfulQA (`[{question,
//! mc1_targets_choices, mc1_targets_labels, …}]`). Context: lm-eval's QA primer +
//! `"\n\nQ: {question}\nA:"`; Okapi questions get Okapi's clean-up first. The gold choice is the one
//! labelled 1 (the first one in both releases, which is what lm-eval assumes).
use std::fmt;
use std::path::Path;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::error::{EvalError, Result};
use crate::items::MultipleChoiceItem;
use crate::prompts::{okapi_preprocess, truthfulqa_context};
use crate::tasks::io::read_json_array;

/// A JSON object read as its `(key, value)` pairs in file order.
struct OrderedLabels(Vec<(String, i64)>);

impl<'de> Deserialize<'de> for OrderedLabels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedLabels;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object mapping answer texts to 0/1 labels")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
                let mut pairs = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, i64>()? {
                    pairs.push((k, v));
                }
                Ok(OrderedLabels(pairs))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
struct McTaskRow {
    question: String,
    mc1_targets: OrderedLabels,
}

#[derive(Deserialize)]
struct OkapiRow {
    question: String,
    mc1_targets_choices: Vec<String>,
    mc1_targets_labels: Vec<i64>,
}

fn gold_of(labels: impl Iterator<Item = i64>) -> std::result::Result<usize, String> {
    let ones: Vec<usize> = labels.enumerate().filter(|(_, l)| *l == 1).map(|(i, _)| i).collect();
    match ones.as_slice() {
        [g] => Ok(*g),
        _ => Err(format!("MC1 needs exactly one choice labelled 1, found {}", ones.len())),
    }
}

fn item(
    path: &Path,
    line: usize,
    index: usize,
    context: String,
    choices: Vec<String>,
    gold: usize,
) -> Result<MultipleChoiceItem> {
    MultipleChoiceItem::new(format!("truthfulqa/{index}"), context, choices, gold)
        .map_err(|e| EvalError::malformed(path, line, e.to_string()))
}

/// Loads the original English `mc_task.json`.
pub fn load_mc_task(path: &Path) -> Result<Vec<MultipleChoiceItem>> {
    read_json_array::<McTaskRow>(path)?
        .into_iter()
        .enumerate()
        .map(|(i, (line, row))| {
            let gold =
                gold_of(row.mc1_targets.0.iter().map(|(_, l)| *l)).map_err(|m| EvalError::malformed(path, line, m))?;
            let choices = row.mc1_targets.0.into_iter().map(|(c, _)| c).collect();
            item(path, line, i, truthfulqa_context(&row.question), choices, gold)
        })
        .collect()
}

/// Loads an Okapi m_TruthfulQA file (`<lang>_validation.json`).
pub fn load_okapi_truthfulqa(path: &Path) -> Result<Vec<MultipleChoiceItem>> {
    read_json_array::<OkapiRow>(path)?
        .into_iter()
        .enumerate()
        .map(|(i, (line, row))| {
            if row.mc1_targets_choices.len() != row.mc1_targets_labels.len() {
                return Err(EvalError::ChoiceCount {
                    path: path.to_path_buf(),
                    line,
                    expected: row.mc1_targets_labels.len(),
                    found: row.mc1_targets_choices.len(),
                });
            }
            let gold = gold_of(row.mc1_targets_labels.into_iter()).map_err(|m| EvalError::malformed(path, line, m))?;
            item(path, line, i, truthfulqa_context(&okapi_preprocess(&row.question)), row.mc1_targets_choices, gold)
        })
        .collect()
}
