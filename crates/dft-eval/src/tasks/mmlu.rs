//! MMLU: English headerless CSVs `question,A,B,C,D,answer` (RFC 4180 quoting, one file per subject
//! `<subject>_<split>.csv`) and Okapi m_MMLU JSON (`[{instruction, option_a..option_d, answer,
//! id}]`). Context `"{question}\nA. …\nB. …\nC. …\nD. …\nAnswer:"`, choices `A`..`D` (scored as
//! `" A"`..`" D"`).
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{EvalError, Result};
use crate::items::MultipleChoiceItem;
use crate::prompts::{mmlu_context, mmlu_gold, MMLU_CHOICES};
use crate::tasks::io::{open, read_json_array};

fn item(id: String, question: &str, options: &[&str; 4], gold: usize) -> MultipleChoiceItem {
    MultipleChoiceItem {
        id,
        context: mmlu_context(question, options),
        choices: MMLU_CHOICES.iter().map(|c| c.to_string()).collect(),
        gold,
    }
}

/// Loads one English MMLU CSV. Ids are `<file stem>/<row index>`.
pub fn load_mmlu_csv(path: &Path) -> Result<Vec<MultipleChoiceItem>> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("mmlu").to_string();
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(open(path)?);
    let mut items = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let more = reader.read_record(&mut record).map_err(|e| {
            let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
            EvalError::malformed(path, line, e.to_string())
        })?;
        if !more {
            break;
        }
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        if record.len() != 6 {
            return Err(EvalError::ChoiceCount {
                path: path.to_path_buf(),
                line,
                expected: 4,
                found: record.len().saturating_sub(2),
            });
        }
        let gold = mmlu_gold(&record[5]).map_err(|m| EvalError::malformed(path, line, m))?;
        let options = [&record[1], &record[2], &record[3], &record[4]];
        items.push(item(format!("{stem}/{}", items.len()), &record[0], &options, gold));
    }
    Ok(items)
}

/// The `<subject>_<split>.csv` files of a directory, sorted by name.
pub fn mmlu_csv_files(dir: &Path, split: &str) -> Result<Vec<PathBuf>> {
    let suffix = format!("_{split}.csv");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| EvalError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(&suffix)))
        .collect();
    files.sort();
    Ok(files)
}

/// Loads all subjects of one split directory (`mmlu/en/<split>/*_<split>.csv`), subjects in name order.
pub fn load_mmlu_csv_dir(dir: &Path, split: &str) -> Result<Vec<MultipleChoiceItem>> {
    let mut items = Vec::new();
    for f in mmlu_csv_files(dir, split)? {
        items.extend(load_mmlu_csv(&f)?);
    }
    Ok(items)
}

#[derive(Deserialize)]
struct OkapiRow {
    instruction: String,
    option_a: Option<String>,
    option_b: Option<String>,
    option_c: Option<String>,
    option_d: Option<String>,
    answer: String,
    id: Option<String>,
}

/// Loads an Okapi m_MMLU JSON file (`<lang>_<split>.json`).
pub fn load_okapi_mmlu(path: &Path) -> Result<Vec<MultipleChoiceItem>> {
    read_json_array::<OkapiRow>(path)?
        .into_iter()
        .enumerate()
        .map(|(i, (line, row))| {
            let opts = [&row.option_a, &row.option_b, &row.option_c, &row.option_d];
            let found = opts.iter().filter(|o| o.is_some()).count();
            if found != 4 {
                return Err(EvalError::ChoiceCount { path: path.to_path_buf(), line, expected: 4, found });
            }
            let options = opts.map(|o| o.as_deref().unwrap_or_default());
            let gold = mmlu_gold(&row.answer).map_err(|m| EvalError::malformed(path, line, m))?;
            Ok(item(row.id.unwrap_or_else(|| format!("m_mmlu/{i}")), &row.instruction, &options, gold))
        })
        .collect()
}

/// lm-eval's `mmlu/default` task description of `subject` (`abstract_algebra` → "… about abstract
/// algebra.\n\n"), which lm-eval puts before every zero-shot English MMLU prompt. Okapi m_MMLU has none.
pub fn lm_eval_description(subject: &str) -> String {
    format!("The following are multiple choice questions (with answers) about {}.\n\n", subject.replace('_', " "))
}

/// The subject of an English MMLU item id (`abstract_algebra_dev/3` → `abstract_algebra`).
pub fn subject_of(id: &str) -> Option<&str> {
    let stem = id.rsplit_once('/')?.0;
    let (subject, split) = stem.rsplit_once('_')?;
    ["dev", "val", "test"].contains(&split).then_some(subject)
}

/// Puts lm-eval's task description before the context of every English MMLU item (ids from
/// [`load_mmlu_csv`]); items whose id names no subject are left alone. Returns how many changed.
pub fn add_lm_eval_descriptions(items: &mut [MultipleChoiceItem]) -> usize {
    let mut n = 0;
    for it in items.iter_mut() {
        if let Some(subject) = subject_of(&it.id) {
            it.context = lm_eval_description(subject) + &it.context;
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_is_lm_evals() {
        // lm_eval 0.4.13 tasks/mmlu/default/mmlu_abstract_algebra.yaml, `description`.
        assert_eq!(
            lm_eval_description("abstract_algebra"),
            "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        );
        assert_eq!(subject_of("high_school_us_history_test/12"), Some("high_school_us_history"));
        assert_eq!(subject_of("zh/dev/3"), None);
        let mut items = vec![item("college_physics_dev/0".into(), "Q?", &["1", "2", "3", "4"], 0)];
        assert_eq!(add_lm_eval_descriptions(&mut items), 1);
        assert_eq!(
            items[0].context,
            "The following are multiple choice questions (with answers) about college physics.\n\nQ?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"
        );
    }
}
