//! XStoryCloze: TSV with header `InputStoryid, InputSentence1..4, RandomFifthSentenceQuiz1,
//! RandomFifthSentenceQuiz2, AnswerRightEnding` (no quoting). Context: the four sentences joined by
//! spaces; choices: the two endings; gold: `AnswerRightEnding - 1`.
use std::path::Path;

use crate::error::{EvalError, Result};
use crate::items::MultipleChoiceItem;
use crate::prompts::xstorycloze_context;
use crate::tasks::io::for_each_line;

const COLUMNS: [&str; 8] = [
    "InputStoryid",
    "InputSentence1",
    "InputSentence2",
    "InputSentence3",
    "InputSentence4",
    "RandomFifthSentenceQuiz1",
    "RandomFifthSentenceQuiz2",
    "AnswerRightEnding",
];

/// Loads an XStoryCloze TSV file (any language; the columns are located by header name).
pub fn load_xstorycloze(path: &Path) -> Result<Vec<MultipleChoiceItem>> {
    let mut index: Option<[usize; 8]> = None;
    let mut n_cols = 0;
    let mut items = Vec::new();
    for_each_line(path, |line_no, line| {
        if line.trim().is_empty() {
            return Ok(());
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let Some(ix) = index else {
            let mut ix = [0; 8];
            for (k, name) in COLUMNS.iter().enumerate() {
                ix[k] =
                    cols.iter().position(|c| c.trim().trim_start_matches('\u{feff}') == *name).ok_or_else(|| {
                        EvalError::malformed(
                            path,
                            line_no,
                            format!("header has no `{name}` column (expected {})", COLUMNS.join(", ")),
                        )
                    })?;
            }
            index = Some(ix);
            n_cols = cols.len();
            return Ok(());
        };
        if cols.len() != n_cols {
            return Err(EvalError::malformed(
                path,
                line_no,
                format!("expected {n_cols} tab-separated columns as in the header, found {}", cols.len()),
            ));
        }
        let gold = match cols[ix[7]].trim() {
            "1" => 0,
            "2" => 1,
            other => {
                return Err(EvalError::malformed(
                    path,
                    line_no,
                    format!("AnswerRightEnding must be 1 or 2, found `{other}`"),
                ))
            }
        };
        items.push(MultipleChoiceItem {
            id: cols[ix[0]].to_string(),
            context: xstorycloze_context(&[cols[ix[1]], cols[ix[2]], cols[ix[3]], cols[ix[4]]]),
            choices: vec![cols[ix[5]].to_string(), cols[ix[6]].to_string()],
            gold,
        });
        Ok(())
    })?;
    if index.is_none() {
        return Err(EvalError::malformed(path, 1, "empty file: no header"));
    }
    Ok(items)
}
