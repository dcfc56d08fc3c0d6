//! Optional filters on a [`ParallelCorpus`]: minimum translation score, de-duplication and a
//! character-length cap. Each removed example is counted under its reason (filters remove data by
//! design, so they count in both strictness modes; they never error). Token-length limits are
//! applied at tokenization, see [`crate::tokenize::Overlong`].

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::{DataReport, SkipReason};
use crate::example::{ParallelCorpus, ParallelExample};

/// What makes two examples duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DedupKey {
    /// No de-duplication.
    #[default]
    Off,
    /// All six texts equal.
    Example,
    /// Same target-language query (instruction and input).
    TargetQuery,
    /// Same English query (instruction and input).
    EnglishQuery,
}

/// Filters, applied in field order; the first occurrence of a duplicate is kept.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    /// Keep examples whose score is at least this; examples without a score are removed
    /// (`score_missing`) when this is set.
    pub min_score: Option<u8>,
    pub dedup: DedupKey,
    /// Remove examples where any of the six texts (instruction + input counted together) has more
    /// than this many characters.
    pub max_chars: Option<usize>,
}

impl FilterConfig {
    /// Apply the filters in place; returns this stage's report (also added to `corpus.report`).
    pub fn apply(&self, corpus: &mut ParallelCorpus) -> DataReport {
        let mut report = DataReport { seen: corpus.examples.len(), ..Default::default() };
        let mut seen_keys: HashSet<String> = HashSet::new();
        let examples = std::mem::take(&mut corpus.examples);
        for example in examples {
            match self.reject(&example, &mut seen_keys) {
                None => corpus.examples.push(example),
                Some((reason, why)) => {
                    report.skip(reason, || format!("{}: id `{}`: {why}", example.origin, example.id))
                }
            }
        }
        report.kept = corpus.examples.len();
        corpus.report.then(&report);
        report
    }

    fn reject(&self, example: &ParallelExample, seen: &mut HashSet<String>) -> Option<(SkipReason, String)> {
        if let Some(min) = self.min_score {
            match example.score {
                None => return Some((SkipReason::ScoreMissing, "no score".into())),
                Some(s) if s < min => return Some((SkipReason::ScoreBelowMin, format!("score {s} < {min}"))),
                Some(_) => {}
            }
        }
        if let Some(max) = self.max_chars {
            let lengths = [
                example.x_en.instruction.chars().count() + example.x_en.input.chars().count(),
                example.y_en.chars().count(),
                example.x_tgt.instruction.chars().count() + example.x_tgt.input.chars().count(),
                example.y_tgt.chars().count(),
            ];
            let longest = lengths.into_iter().max().unwrap_or(0);
            if longest > max {
                return Some((SkipReason::TooManyChars, format!("{longest} characters > {max}")));
            }
        }
        // Texts are joined with U+001F (unit separator), which instruction data does not contain.
        let key = match self.dedup {
            DedupKey::Off => None,
            DedupKey::Example => Some(
                [
                    &example.x_en.instruction,
                    &example.x_en.input,
                    &example.y_en,
                    &example.x_tgt.instruction,
                    &example.x_tgt.input,
                    &example.y_tgt,
                ]
                .map(|s| s.as_str())
                .join("\u{1f}"),
            ),
            DedupKey::TargetQuery => Some(format!("{}\u{1f}{}", example.x_tgt.instruction, example.x_tgt.input)),
            DedupKey::EnglishQuery => Some(format!("{}\u{1f}{}", example.x_en.instruction, example.x_en.input)),
        };
        if let Some(key) = key {
            if !seen.insert(key) {
                return Some((SkipReason::Duplicate, format!("duplicate ({:?})", self.dedup)));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::error::RecordLocation;
    use crate::example::Query;

    fn example(id: &str, tgt: &str, score: Option<u8>) -> ParallelExample {
        ParallelExample {
            id: id.into(),
            x_en: Query { instruction: format!("en {tgt}"), input: String::new() },
            y_en: "out".into(),
            x_tgt: Query { instruction: tgt.into(), input: String::new() },
            y_tgt: "出".into(),
            score,
            origin: RecordLocation { path: Arc::from(Path::new("mem")), line: 1, record: 0 },
        }
    }

    #[test]
    fn each_filter_counts_what_it_removes() {
        let mut corpus = ParallelCorpus {
            target_lang: "zh".into(),
            examples: vec![
                example("0", "a", Some(5)),
                example("1", "a", Some(5)),
                example("2", "b", Some(3)),
                example("3", "c", None),
                example("4", &"长".repeat(50), Some(5)),
            ],
            report: DataReport { seen: 5, kept: 5, ..Default::default() },
        };
        let filters = FilterConfig { min_score: Some(4), dedup: DedupKey::TargetQuery, max_chars: Some(20) };
        let report = filters.apply(&mut corpus);
        assert_eq!(corpus.examples.len(), 1);
        assert_eq!(report.count(SkipReason::Duplicate), 1);
        assert_eq!(report.count(SkipReason::ScoreBelowMin), 1);
        assert_eq!(report.count(SkipReason::ScoreMissing), 1);
        assert_eq!(report.count(SkipReason::TooManyChars), 1);
        assert_eq!(corpus.report.kept, 1);
        assert_eq!(corpus.report.total_skipped(), 4);
        assert_eq!(
            report.to_string(),
            "seen 5, kept 1, skipped 4 (score_below_min 1, score_missing 1, duplicate 1, too_many_chars 1)"
        );
    }
}
