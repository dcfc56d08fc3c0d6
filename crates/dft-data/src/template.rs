//! Prompt templates: how a [`Query`] becomes the prompt text `P(x)`, and where the query content
//! (instruction, input) sits in that text, for pooling.
//!
//! - [`PromptTemplate::Alpaca`]: the stanford_alpaca prompts, exact text (METHOD.md §2); the English
//!   template text is used for queries of every language.
//! - [`PromptTemplate::ChatMl`]: `<|im_start|>user\n{query}<|im_end|>\n<|im_start|>assistant\n`, as
//!   the chat template of SmolLM2's GGUF renders one user turn, optionally after a system turn (the
//!   GGUF template inserts [`SMOLLM2_DEFAULT_SYSTEM`] when the conversation has none; use
//!   [`PromptTemplate::smollm2_chat`] for exactly that). The query is the instruction, plus
//!   `"\n\n"` and the input when there is one.
//!
//! The answer is the output text followed by EOS (added as a token id by the tokenizer step, not as
//! text). The language-conversion target (LC) is the English query: instruction, plus `"\n"` and
//! the input when there is one ([`lc_target_text`]).

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::example::Query;

/// stanford_alpaca `PROMPT_DICT["prompt_input"]`, before the input.
pub const ALPACA_WITH_INPUT_HEAD: &str = "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n";
/// stanford_alpaca `PROMPT_DICT["prompt_no_input"]`, before the instruction.
pub const ALPACA_NO_INPUT_HEAD: &str =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n";
/// Between instruction and input (with-input prompt).
pub const ALPACA_INPUT_HEADER: &str = "\n\n### Input:\n";
/// After the query, both prompts.
pub const ALPACA_RESPONSE_HEADER: &str = "\n\n### Response:";

/// The system prompt that SmolLM2-Instruct's chat template inserts when a conversation has none.
pub const SMOLLM2_DEFAULT_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// Which prompt format to render queries with (config: `template = { kind = "alpaca" }` or
/// `{ kind = "chat_ml", system = "..." }`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PromptTemplate {
    /// stanford_alpaca prompts (for base models; the paper's choice).
    #[default]
    Alpaca,
    /// ChatML user turn, then the assistant header (for instruct models such as SmolLM2-Instruct).
    ChatMl {
        /// A system turn before the user turn; `None` renders the user turn alone.
        #[serde(default)]
        system: Option<String>,
    },
    /// The model's own chat template (`data.template = "model"`), as the text it renders before and
    /// after a single user message with the generation prompt (`dft_models::ChatTemplate::split_user_turn`).
    /// The query is the instruction, plus `"\n\n"` and the input when there is one, as for ChatML.
    Chat { prefix: String, suffix: String },
}

/// A rendered prompt and the byte ranges of the query content in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPrompt {
    pub text: String,
    /// Bytes of the instruction in `text`.
    pub instruction: Range<usize>,
    /// Bytes of the input in `text`, when the query has one.
    pub input: Option<Range<usize>>,
}

impl PromptTemplate {
    /// ChatML exactly as SmolLM2-Instruct's chat template renders a single user message with
    /// `add_generation_prompt=True` (default system turn included).
    pub fn smollm2_chat() -> Self {
        PromptTemplate::ChatMl { system: Some(SMOLLM2_DEFAULT_SYSTEM.to_string()) }
    }

    /// Render `P(x)` for a query.
    pub fn render(&self, query: &Query) -> RenderedPrompt {
        let mut text = String::with_capacity(256 + query.instruction.len() + query.input.len());
        let (instruction, input);
        match self {
            PromptTemplate::Alpaca => {
                text.push_str(if query.has_input() { ALPACA_WITH_INPUT_HEAD } else { ALPACA_NO_INPUT_HEAD });
                instruction = push_range(&mut text, &query.instruction);
                input = query.has_input().then(|| {
                    text.push_str(ALPACA_INPUT_HEADER);
                    push_range(&mut text, &query.input)
                });
                text.push_str(ALPACA_RESPONSE_HEADER);
            }
            PromptTemplate::ChatMl { system } => {
                if let Some(system) = system {
                    text.push_str("<|im_start|>system\n");
                    text.push_str(system);
                    text.push_str("<|im_end|>\n");
                }
                text.push_str("<|im_start|>user\n");
                instruction = push_range(&mut text, &query.instruction);
                input = query.has_input().then(|| {
                    text.push_str("\n\n");
                    push_range(&mut text, &query.input)
                });
                text.push_str("<|im_end|>\n<|im_start|>assistant\n");
            }
            PromptTemplate::Chat { prefix, suffix } => {
                text.push_str(prefix);
                instruction = push_range(&mut text, &query.instruction);
                input = query.has_input().then(|| {
                    text.push_str("\n\n");
                    push_range(&mut text, &query.input)
                });
                text.push_str(suffix);
            }
        }
        RenderedPrompt { text, instruction, input }
    }
}

/// The LC supervision text `x_en`: the English instruction, plus `"\n"` and the input when present
/// (EOS is appended as a token by the tokenizer step).
pub fn lc_target_text(x_en: &Query) -> String {
    if x_en.has_input() {
        format!("{}\n{}", x_en.instruction, x_en.input)
    } else {
        x_en.instruction.clone()
    }
}

fn push_range(text: &mut String, piece: &str) -> Range<usize> {
    let start = text.len();
    text.push_str(piece);
    start..text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(instruction: &str, input: &str) -> Query {
        Query { instruction: instruction.into(), input: input.into() }
    }

    #[test]
    fn alpaca_prompts_are_stanford_text() {
        let with_input = PromptTemplate::Alpaca.render(&query("Translate.", "Hello"));
        assert_eq!(
            with_input.text,
            "Below is an instruction that describes a task, paired with an input that provides further context. \
             Write a response that appropriately completes the request.\n\n### Instruction:\nTranslate.\n\n\
             ### Input:\nHello\n\n### Response:"
        );
        assert_eq!(&with_input.text[with_input.instruction.clone()], "Translate.");
        assert_eq!(&with_input.text[with_input.input.clone().unwrap()], "Hello");

        let no_input = PromptTemplate::Alpaca.render(&query("给出三个建议。", ""));
        assert_eq!(
            no_input.text,
            "Below is an instruction that describes a task. Write a response that appropriately completes the \
             request.\n\n### Instruction:\n给出三个建议。\n\n### Response:"
        );
        assert_eq!(&no_input.text[no_input.instruction.clone()], "给出三个建议。");
        assert_eq!(no_input.input, None);
    }

    #[test]
    fn chat_ml_renders_one_user_turn() {
        let plain = PromptTemplate::ChatMl { system: None }.render(&query("Hi", "there"));
        assert_eq!(plain.text, "<|im_start|>user\nHi\n\nthere<|im_end|>\n<|im_start|>assistant\n");
        assert_eq!(&plain.text[plain.input.clone().unwrap()], "there");
        let smol = PromptTemplate::smollm2_chat().render(&query("Hi", ""));
        assert_eq!(
            smol.text,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn chat_wraps_the_query_between_prefix_and_suffix() {
        let t = PromptTemplate::Chat { prefix: "<u>".into(), suffix: "</u><a>".into() };
        let r = t.render(&query("Hi", "there"));
        assert_eq!(r.text, "<u>Hi\n\nthere</u><a>");
        assert_eq!(&r.text[r.instruction.clone()], "Hi");
        assert_eq!(&r.text[r.input.clone().unwrap()], "there");
    }

    #[test]
    fn lc_target_joins_input_with_newline() {
        assert_eq!(lc_target_text(&query("Sum.", "1 2")), "Sum.\n1 2");
        assert_eq!(lc_target_text(&query("Sum.", "")), "Sum.");
    }

    #[test]
    fn template_config_reads_from_json() {
        let t: PromptTemplate = serde_json::from_str(r#"{"kind":"chat_ml","system":"S"}"#).unwrap();
        assert_eq!(t, PromptTemplate::ChatMl { system: Some("S".into()) });
        let t: PromptTemplate = serde_json::from_str(r#"{"kind":"alpaca"}"#).unwrap();
        assert_eq!(t, PromptTemplate::Alpaca);
    }
}
