//! XNLI: headerless TSV `premise \t hypothesis \t label` (no quoting). Each row becomes an item with
//! an empty context and lm-eval's three full-sentence choices in the row's language.
use std::path::Path;

use crate::error::{EvalError, Result};
use crate::items::MultipleChoiceItem;
use crate::lang::Lang;
use crate::prompts::{xnli_choices, xnli_gold};
use crate::tasks::io::for_each_line;

/// Loads an XNLI TSV file of language `lang`. Blank lines are skipped; a first line whose label
/// column reads `label` / `gold_label` is taken as a header and skipped.
pub fn load_xnli(path: &Path, lang: Lang) -> Result<Vec<MultipleChoiceItem>> {
    let mut items = Vec::new();
    for_each_line(path, |line_no, line| {
        if line.trim().is_empty() {
            return Ok(());
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() != 3 {
            return Err(EvalError::malformed(
                path,
                line_no,
                format!("expected 3 tab-separated columns (premise, hypothesis, label), found {}", cols.len()),
            ));
        }
        if line_no == 1 && matches!(cols[2].trim(), "label" | "gold_label") {
            return Ok(());
        }
        let gold = xnli_gold(cols[2]).map_err(|m| EvalError::malformed(path, line_no, m))?;
        let id = format!("xnli-{lang}/{}", items.len());
        items.push(MultipleChoiceItem {
            id,
            context: String::new(),
            choices: xnli_choices(lang, cols[0], cols[1]),
            gold,
        });
        Ok(())
    })?;
    Ok(items)
}
