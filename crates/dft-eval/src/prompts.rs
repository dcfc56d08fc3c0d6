//! Prompt (context) and choice construction per task, following lm-evaluation-harness 0.4.x
//! (`lm_eval/tasks/{xnli,xcopa,xstorycloze,truthfulqa,okapi,mmlu,mlqa,xquad}`) and METHOD.md §6.
//! Every function here is pure string building; the loaders in [`crate::tasks`] call them.
use crate::error::{EvalError, Result};
use crate::lang::Lang;
use crate::text::py_strip;

/// lm-eval's XNLI words for one language: choices are
/// `premise + ", " + right + "? " + {yes|also|no} + ", " + hypothesis`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XnliWords {
    pub right: &'static str,
    /// Entailment (label 0).
    pub yes: &'static str,
    /// Neutral (label 1).
    pub also: &'static str,
    /// Contradiction (label 2).
    pub no: &'static str,
}

/// The words of lm-eval's `xnli_{en,zh,vi,ar}.yaml` (`doc_to_choice`).
pub fn xnli_words(lang: Lang) -> XnliWords {
    match lang {
        Lang::En => XnliWords { right: "right", yes: "Yes", also: "Also", no: "No" },
        Lang::Zh => XnliWords { right: "正确", yes: "是的", also: "所以", no: "不是的" },
        Lang::Vi => XnliWords { right: "đúng", yes: "Vâng", also: "Vì vậy", no: "Không" },
        Lang::Ar => XnliWords { right: "صحيح", yes: "نعم", also: "لذا", no: "رقم" },
    }
}

/// XNLI's three full-sentence choices (entailment, neutral, contradiction); the context is empty.
pub fn xnli_choices(lang: Lang, premise: &str, hypothesis: &str) -> Vec<String> {
    let w = xnli_words(lang);
    [w.yes, w.also, w.no].iter().map(|word| format!("{premise}, {}? {word}, {hypothesis}", w.right)).collect()
}

/// XCOPA's connector for `question` = `cause` / `effect` (lm-eval `xcopa/utils.py`; English as in
/// lm-eval's COPA). XCOPA has no Arabic.
pub fn xcopa_connector(lang: Lang, question: &str) -> Option<&'static str> {
    let (cause, effect) = match lang {
        Lang::En => ("because", "therefore"),
        Lang::Zh => ("因为", "所以"),
        Lang::Vi => ("bởi vì", "vì vậy"),
        Lang::Ar => return None,
    };
    match question {
        "cause" => Some(cause),
        "effect" => Some(effect),
        _ => None,
    }
}

/// XCOPA context: `premise.strip()[:-1] + " " + connector` (drops the final period).
pub fn xcopa_context(premise: &str, connector: &str) -> String {
    let p = py_strip(premise);
    let mut chars = p.chars();
    chars.next_back();
    format!("{} {connector}", chars.as_str())
}

/// XCOPA choice: the first character lower-cased (`choice[0].lower() + choice[1:]`).
pub fn xcopa_choice(choice: &str) -> String {
    let mut chars = choice.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// XStoryCloze context: the four story sentences joined by single spaces.
pub fn xstorycloze_context(sentences: &[&str; 4]) -> String {
    sentences.join(" ")
}

/// lm-eval's 6-pair TruthfulQA QA primer (identical in `truthfulqa_mc1.yaml` and Okapi's
/// `truthfulqa_multilingual/utils.py`, English in every language).
pub const TRUTHFULQA_QA_PRIMER: &str = "Q: What is human life expectancy in the United States?\n\
A: Human life expectancy in the United States is 78 years.\n\n\
Q: Who was president of the United States in 1955?\n\
A: Dwight D. Eisenhower was president of the United States in 1955.\n\n\
Q: Which party did he belong to?\n\
A: He belonged to the Republican Party.\n\n\
Q: What is the square root of banana?\n\
A: I have no comment.\n\n\
Q: How does a telescope work?\n\
A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n\
Q: Where were the 1992 Olympics held?\n\
A: The 1992 Olympics were held in Barcelona, Spain.";

/// TruthfulQA MC context: `primer + "\n\nQ: " + question + "\nA:"`.
pub fn truthfulqa_context(question: &str) -> String {
    format!("{TRUTHFULQA_QA_PRIMER}\n\nQ: {question}\nA:")
}

/// Okapi's question clean-up (`truthfulqa_multilingual/utils.py::preprocess`): strip, `" [title]"`
/// → `". "`, drop `[...]` spans, then halve double spaces once.
pub fn okapi_preprocess(text: &str) -> String {
    static BRACKETS: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = BRACKETS.get_or_init(|| regex::Regex::new(r"\[.*?\]").expect("valid regex"));
    let t = py_strip(text).replace(" [title]", ". ");
    re.replace_all(&t, "").replace("  ", " ")
}

/// MMLU choices (scored as `" A"` … `" D"`).
pub const MMLU_CHOICES: [&str; 4] = ["A", "B", "C", "D"];

/// MMLU context: `"{question.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"` (lm-eval's
/// `mmlu/default` and Okapi `m_mmlu` templates, zero-shot, without the subject description line).
pub fn mmlu_context(question: &str, options: &[&str; 4]) -> String {
    let q = py_strip(question);
    format!("{q}\nA. {}\nB. {}\nC. {}\nD. {}\nAnswer:", options[0], options[1], options[2], options[3])
}

/// MMLU gold index of an answer letter `A`..`D` (surrounding whitespace ignored).
pub fn mmlu_gold(answer: &str) -> Result<usize, String> {
    match answer.trim() {
        "A" => Ok(0),
        "B" => Ok(1),
        "C" => Ok(2),
        "D" => Ok(3),
        other => Err(format!("answer must be one of A, B, C, D, found `{other}`")),
    }
}

/// Extractive QA prompt (XQuAD, MLQA): `"Context: {c}\n\nQuestion: {q}\n\nAnswer:"`.
pub fn qa_prompt(context: &str, question: &str) -> String {
    format!("Context: {context}\n\nQuestion: {question}\n\nAnswer:")
}

/// Open QA prompt without context (MKQA): `"Question: {q}\n\nAnswer:"`.
pub fn open_qa_prompt(question: &str) -> String {
    format!("Question: {question}\n\nAnswer:")
}

/// Translation prompt (FLORES-200), `k` shots in the same direction, then the sentence:
///
/// ```text
/// English: {shot source}
/// Chinese: {shot target}
///
/// English: {source}
/// Chinese:
/// ```
///
/// Language names in English ([`Lang::english_name`]); the model continues after `"Chinese:"` and
/// generation stops at the first newline. Sentences are used verbatim (FLORES lines have no
/// newlines).
pub fn translation_prompt(src: Lang, tgt: Lang, shots: &[(&str, &str)], source: &str) -> String {
    let (s, t) = (src.english_name(), tgt.english_name());
    let mut out = String::new();
    for (a, b) in shots {
        out.push_str(&format!("{s}: {a}\n{t}: {b}\n\n"));
    }
    out.push_str(&format!("{s}: {source}\n{t}:"));
    out
}

/// XNLI gold index of a label word (`entailment` 0, `neutral` 1, `contradiction`/`contradictory` 2).
pub fn xnli_gold(label: &str) -> Result<usize, String> {
    match label.trim() {
        "entailment" => Ok(0),
        "neutral" => Ok(1),
        "contradiction" | "contradictory" => Ok(2),
        other => Err(format!("label must be entailment, neutral or contradiction, found `{other}`")),
    }
}

/// Checks that `lang` is one of `available` for `task`.
pub(crate) fn require_lang(task: &str, lang: Lang, available: &[Lang]) -> Result<()> {
    if available.contains(&lang) {
        Ok(())
    } else {
        Err(EvalError::UnsupportedLanguage {
            task: task.to_string(),
            lang: lang.code().to_string(),
            available: available.iter().map(|l| l.code()).collect::<Vec<_>>().join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xnli_matches_lm_eval_yaml() {
        assert_eq!(xnli_choices(Lang::Zh, "P", "H"), ["P, 正确? 是的, H", "P, 正确? 所以, H", "P, 正确? 不是的, H"]);
        assert_eq!(xnli_choices(Lang::En, "P", "H")[1], "P, right? Also, H");
    }

    #[test]
    fn xcopa_context_and_choice() {
        let c = xcopa_connector(Lang::Vi, "cause").unwrap();
        assert_eq!(xcopa_context(" Người đàn ông bật vòi nước. ", c), "Người đàn ông bật vòi nước bởi vì");
        assert_eq!(xcopa_choice("Nhà vệ sinh đầy nước."), "nhà vệ sinh đầy nước.");
        assert_eq!(xcopa_choice("İx"), "i\u{307}x");
        assert!(xcopa_connector(Lang::Ar, "cause").is_none());
    }

    #[test]
    fn okapi_preprocess_matches_python() {
        assert_eq!(okapi_preprocess("  a [title] b [x]  c   d "), "a. b  c  d");
    }

    #[test]
    fn translation_template() {
        assert_eq!(translation_prompt(Lang::En, Lang::Zh, &[], "Hi."), "English: Hi.\nChinese:");
        assert_eq!(
            translation_prompt(Lang::Vi, Lang::En, &[("Xin chào.", "Hello.")], "Cảm ơn."),
            "Vietnamese: Xin chào.\nEnglish: Hello.\n\nVietnamese: Cảm ơn.\nEnglish:"
        );
    }

    #[test]
    fn mmlu_template() {
        assert_eq!(mmlu_context(" Q? ", &["1", "2", "3", "4"]), "Q?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:");
    }
}
