//! The two item shapes every task is turned into, and what a scoring engine does with them.
//!
//! - [`MultipleChoiceItem`]: the engine computes, for each choice `i`, the summed token
//!   log-likelihood of [`MultipleChoiceItem::continuation`]`(i)` (= `" " + choice`) given `context`,
//!   then hands the per-choice values to [`crate::score_multiple_choice`].
//!   As in lm-evaluation-harness: when `context` is empty (XNLI) the continuation is scored after
//!   the BOS token alone; trailing whitespace of a non-empty context is moved to the front of the
//!   continuation before tokenising (lm-eval's `_encode_pair`).
//! - [`GenerativeItem`]: the engine generates greedily after `prompt`, cuts the text at
//!   [`GENERATION_STOP`] (see [`cut_at_stop`]) and hands the strings to [`crate::score_generative`].
//! - [`TranslationItem`]: the same greedy generation until newline; the stripped text is the
//!   hypothesis, scored per direction with corpus chrF++ and BLEU
//!   ([`crate::metrics::translation::score_translation`]).
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::lang::Lang;

/// What lm-eval puts between the context and each choice (`target_delimiter`).
pub const TARGET_DELIMITER: &str = " ";

/// Generation stops at the first newline (lm-eval `until: ["\n"]`).
pub const GENERATION_STOP: &str = "\n";

/// A multiple-choice question, scored by log-likelihood of each choice after the context.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultipleChoiceItem {
    /// Stable id within the task (dataset id, or `<file stem>/<row>` when the dataset has none).
    pub id: String,
    /// The text before the choice; may be empty (XNLI puts everything in the choices).
    pub context: String,
    /// Choice texts without the leading delimiter (lm-eval's `doc_to_choice`); acc_norm divides by
    /// their length in characters.
    pub choices: Vec<String>,
    /// Index of the correct choice.
    pub gold: usize,
}

impl MultipleChoiceItem {
    /// Builds an item, checking that there are at least two choices and `gold` indexes one.
    pub fn new(id: impl Into<String>, context: impl Into<String>, choices: Vec<String>, gold: usize) -> Result<Self> {
        let item = MultipleChoiceItem { id: id.into(), context: context.into(), choices, gold };
        item.validate()?;
        Ok(item)
    }

    /// Checks the invariants of [`MultipleChoiceItem::new`].
    pub fn validate(&self) -> Result<()> {
        if self.choices.len() < 2 {
            return Err(EvalError::InvalidItem {
                id: self.id.clone(),
                message: format!("needs at least 2 choices, has {}", self.choices.len()),
            });
        }
        if self.gold >= self.choices.len() {
            return Err(EvalError::InvalidItem {
                id: self.id.clone(),
                message: format!("gold index {} out of range for {} choices", self.gold, self.choices.len()),
            });
        }
        Ok(())
    }

    /// The string whose log-likelihood is scored for choice `i`: `" " + choices[i]`.
    pub fn continuation(&self, i: usize) -> String {
        format!("{TARGET_DELIMITER}{}", self.choices[i])
    }

    /// All `(context, continuation)` requests of this item, in choice order.
    pub fn requests(&self) -> impl Iterator<Item = (&str, String)> + '_ {
        (0..self.choices.len()).map(move |i| (self.context.as_str(), self.continuation(i)))
    }
}

/// A question answered by free generation and scored by F1 / exact match against gold answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerativeItem {
    pub id: String,
    /// The full prompt, e.g. `"Context: {c}\n\nQuestion: {q}\n\nAnswer:"`.
    pub prompt: String,
    /// Gold answers; the score is the maximum over them. `""` stands for "no answer" (MKQA).
    pub answers: Vec<String>,
}

/// A sentence to translate (FLORES-200), scored with corpus chrF++ / BLEU against `reference`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TranslationItem {
    /// `flores-{src}-{tgt}/{line}` (0-based line of the devtest file).
    pub id: String,
    pub src: Lang,
    pub tgt: Lang,
    /// The source sentence.
    pub source: String,
    /// The reference translation.
    pub reference: String,
    /// The full prompt ([`crate::prompts::translation_prompt`]), few-shot examples included.
    pub prompt: String,
    /// Number of few-shot examples in `prompt`.
    pub shots: usize,
}

/// The items of one task in one language.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TaskItems {
    MultipleChoice(Vec<MultipleChoiceItem>),
    Generative(Vec<GenerativeItem>),
    Translation(Vec<TranslationItem>),
}

impl TaskItems {
    pub fn len(&self) -> usize {
        match self {
            TaskItems::MultipleChoice(v) => v.len(),
            TaskItems::Generative(v) => v.len(),
            TaskItems::Translation(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The multiple-choice items, or `None` for a generative task.
    pub fn as_multiple_choice(&self) -> Option<&[MultipleChoiceItem]> {
        match self {
            TaskItems::MultipleChoice(v) => Some(v),
            _ => None,
        }
    }

    /// The generative items, or `None` for a multiple-choice task.
    pub fn as_generative(&self) -> Option<&[GenerativeItem]> {
        match self {
            TaskItems::Generative(v) => Some(v),
            _ => None,
        }
    }

    /// The translation items, or `None` for other tasks.
    pub fn as_translation(&self) -> Option<&[TranslationItem]> {
        match self {
            TaskItems::Translation(v) => Some(v),
            _ => None,
        }
    }
}

/// The generated text up to (not including) the first [`GENERATION_STOP`].
pub fn cut_at_stop(generated: &str) -> &str {
    generated.split(GENERATION_STOP).next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_has_leading_space_and_validation_catches_bad_gold() {
        let item = MultipleChoiceItem::new("q", "Answer:", vec!["A".into(), "B".into()], 1).unwrap();
        assert_eq!(item.continuation(0), " A");
        assert_eq!(item.requests().map(|(_, c)| c).collect::<Vec<_>>(), [" A", " B"]);
        assert!(MultipleChoiceItem::new("q", "", vec!["A".into(), "B".into()], 2).is_err());
        assert!(MultipleChoiceItem::new("q", "", vec!["A".into()], 0).is_err());
        assert_eq!(cut_at_stop(" Paris\nQuestion: x"), " Paris");
    }
}
