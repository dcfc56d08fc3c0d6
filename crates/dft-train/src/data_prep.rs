//! From the config's data section and the model's tokenizer to tokenized corpora, and from dft-data's
//! batches to the objective's batches.

use crate::config::{DataFormat, DataSection, Method, MethodSection, TemplateChoice};
use crate::error::Result;
use dft_data::{
    read_alpaca_en_zh_dir, read_paired_json, read_paired_jsonl, FilterConfig, ParallelCorpus, PromptTemplate,
    SequenceKind, SequenceKinds, SpecialTokens, Strictness, TokenBatch, TokenizeConfig, TokenizedCorpus,
};
use dft_losses::{AuxLoss, DftBatch as LossBatch, Sequences};
use dft_models::{ModelConfig, TokenizerMeta};
use std::path::Path;

/// The sequence kinds a method needs.
pub fn kinds_for(method: &MethodSection) -> SequenceKinds {
    let none = SequenceKinds { tft: false, lc: false, et: false, sft: false, en_prompt: false, tgt_prompt: false };
    match method.name {
        Method::Sft => SequenceKinds { sft: true, ..none },
        Method::Tft => SequenceKinds { tft: true, ..none },
        Method::Dft => SequenceKinds {
            tft: true,
            lc: method.lc == AuxLoss::Logits,
            et: method.et == AuxLoss::Logits,
            en_prompt: method.lc == AuxLoss::Feature || method.et == AuxLoss::Feature,
            ..none
        },
    }
}

/// BOS/EOS/PAD for the data pipeline, from the model config and what the tokenizer does.
pub fn special_tokens(config: &ModelConfig, tokenizer: &tokenizers::Tokenizer) -> SpecialTokens {
    let adds_bos = match (config.bos_token_id, tokenizer.encode("a", true)) {
        (Some(bos), Ok(enc)) => enc.get_ids().first() == Some(&bos),
        _ => false,
    };
    let eos = config.eos_token_ids.first().copied().unwrap_or(0);
    SpecialTokens {
        bos: if adds_bos { config.bos_token_id } else { None },
        eos,
        pad: config.pad_token_id.unwrap_or(eos),
    }
}

pub fn read_corpus(path: &Path, data: &DataSection) -> Result<ParallelCorpus> {
    let strictness = if data.strict { Strictness::Strict } else { Strictness::Lenient };
    let mut corpus = match data.format {
        DataFormat::PairedJson if path.is_dir() => read_alpaca_en_zh_dir(path, strictness)?,
        DataFormat::PairedJson => read_paired_json(&[path], &data.lang, strictness)?,
        DataFormat::PairedJsonl => read_paired_jsonl(path, &data.lang, strictness)?,
    };
    FilterConfig { min_score: data.min_score, ..Default::default() }.apply(&mut corpus);
    Ok(corpus)
}

/// The prompt template `data.template` names; `model` renders the model's own chat template (`meta`),
/// without its leading BOS text when the data pipeline adds BOS as a token itself.
pub fn prompt_template(data: &DataSection, meta: &TokenizerMeta, special: SpecialTokens) -> Result<PromptTemplate> {
    Ok(match data.template {
        TemplateChoice::Alpaca => PromptTemplate::Alpaca,
        TemplateChoice::Chatml => PromptTemplate::ChatMl { system: None },
        TemplateChoice::Model => {
            let template = meta.chat_template()?;
            let (mut prefix, suffix) = template.split_user_turn(None, "Hello")?;
            if let (Some(_), Some(bos)) = (special.bos, &meta.bos_token) {
                if let Some(rest) = prefix.strip_prefix(bos.as_str()) {
                    prefix = rest.to_string();
                }
            }
            PromptTemplate::Chat { prefix, suffix }
        }
    })
}

/// [`tokenize_with`] without the model's tokenizer metadata (`data.template = "model"` is then an
/// error: there is no chat template to render).
pub fn tokenize(
    corpus: &ParallelCorpus,
    data: &DataSection,
    kinds: SequenceKinds,
    tokenizer: &tokenizers::Tokenizer,
    special: SpecialTokens,
    limit: usize,
) -> Result<TokenizedCorpus> {
    tokenize_with(corpus, data, kinds, tokenizer, special, limit, &TokenizerMeta::default())
}

/// Tokenize a corpus with the template `data.template` names; `meta` supplies the model's chat template.
pub fn tokenize_with(
    corpus: &ParallelCorpus,
    data: &DataSection,
    kinds: SequenceKinds,
    tokenizer: &tokenizers::Tokenizer,
    special: SpecialTokens,
    limit: usize,
    meta: &TokenizerMeta,
) -> Result<TokenizedCorpus> {
    let strictness = if data.strict { Strictness::Strict } else { Strictness::Lenient };
    let template = prompt_template(data, meta, special)?;
    let cfg = TokenizeConfig { template, max_len: data.max_len, kinds, ..Default::default() };
    let mut tokenized = dft_data::tokenize_corpus(corpus, tokenizer, special, &cfg, strictness)?;
    if limit > 0 && tokenized.examples.len() > limit {
        tokenized.examples.truncate(limit);
    }
    Ok(tokenized)
}

fn sequences(tb: &TokenBatch, spans: Vec<Vec<std::ops::Range<usize>>>) -> Sequences {
    Sequences {
        seq_len: tb.seq_len,
        input_ids: tb.input_ids.clone(),
        labels: tb.labels.clone(),
        lengths: tb.lengths.clone(),
        prompt_lens: tb.prompt_lens.clone(),
        query_spans: spans,
    }
}

/// dft-data's batch → the objective's batch (`main` = SFT rows for `sft`, TFT rows otherwise).
pub fn to_loss_batch(b: &dft_data::DftBatch, method: Method) -> LossBatch {
    let seq = |kind: SequenceKind| b.get(kind).map(|tb| sequences(tb, b.query_ranges(kind)));
    let main = if method == Method::Sft { seq(SequenceKind::Sft) } else { seq(SequenceKind::Tft) };
    LossBatch {
        main: main.expect("the batcher was asked for the main kind"),
        lc: seq(SequenceKind::Lc),
        et: seq(SequenceKind::Et),
        en_prompt: seq(SequenceKind::EnPrompt),
    }
}

/// Real (non-padding) tokens and padding fraction over all kinds of a batch.
pub fn token_counts(b: &dft_data::DftBatch) -> (usize, f64) {
    let (mut real, mut total) = (0usize, 0usize);
    for kind in SequenceKind::ALL {
        if let Some(tb) = b.get(kind) {
            real += tb.real_tokens();
            total += tb.batch_size * tb.seq_len;
        }
    }
    (real, if total == 0 { 0.0 } else { 1.0 - real as f64 / total as f64 })
}

/// Print what reading, filtering and tokenizing `path` kept and skipped — the counts, then the first
/// few skipped records with file:line and reason — and how many sequences were cut to
/// `data.max_len`; write every skipped record to `out_dir/skipped.txt` (one per line). When nothing is
/// left, the error names the file, the format it was read as and the reasons.
pub fn report_data(
    path: &Path,
    data: &DataSection,
    corpus: &ParallelCorpus,
    tokenized: &TokenizedCorpus,
    out_dir: &Path,
) -> Result<()> {
    use crate::error::TrainError;
    let (read, tok) = (&corpus.report, &tokenized.report);
    eprintln!("data: {read} | {tok}");
    let skipped: Vec<&String> = read.all.iter().chain(&tok.all).collect();
    let list = out_dir.join("skipped.txt");
    if !skipped.is_empty() {
        for s in read.samples.iter().chain(&tok.samples).take(5) {
            eprintln!("  skipped: {s}");
        }
        let text: String = skipped.iter().map(|s| format!("{s}\n")).collect();
        std::fs::write(&list, text).map_err(|e| TrainError::Io { path: list.clone(), source: e })?;
        eprintln!("  all {} skipped records: {}", skipped.len(), list.display());
    }
    let cut: Vec<String> = tokenized
        .stats
        .kinds
        .iter()
        .filter(|(_, s)| s.truncated > 0)
        .map(|(k, s)| format!("{k} {} of {}", s.truncated, s.sequences))
        .collect();
    if !cut.is_empty() {
        eprintln!(
            "data: sequences cut to data.max_len = {} tokens (their answers truncated): {}",
            data.max_len,
            cut.join(", ")
        );
    }
    if tokenized.examples.is_empty() {
        let format = match data.format {
            DataFormat::PairedJson => "paired_json (a JSON array of records)",
            DataFormat::PairedJsonl => "paired_jsonl (one JSON record per line)",
        };
        let mut reasons: Vec<String> =
            read.skipped.iter().chain(&tok.skipped).map(|(r, n)| format!("{r} {n}")).collect();
        if reasons.is_empty() {
            reasons.push("the file has no records".into());
        }
        let mut msg = format!(
            "no training examples left from {} read as data.format = {format}: skipped {}",
            path.display(),
            reasons.join(", ")
        );
        if let Some(first) = read.samples.first().or(tok.samples.first()) {
            msg += &format!("; first: {first}");
        }
        let head = std::fs::read(path).ok().and_then(|b| b.iter().copied().find(|c| !c.is_ascii_whitespace()));
        match (data.format, head) {
            (DataFormat::PairedJsonl, Some(b'[')) => {
                msg += "; the file starts with `[`: it looks like a JSON array, set data.format = \"paired_json\""
            }
            (DataFormat::PairedJson, Some(b'{')) => {
                msg += "; the file starts with `{`: it looks like JSON lines, set data.format = \"paired_jsonl\""
            }
            _ => {}
        }
        if !skipped.is_empty() {
            msg += &format!(" (every skipped record: {})", list.display());
        }
        return Err(TrainError::Config { key: "data.train".into(), msg });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dft_data::Query;
    use dft_models::ChatMessage;

    fn meta(model: &str) -> TokenizerMeta {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../dft-models/tests/fixtures/chat/{model}.json"));
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let s = |k: &str| v["special_tokens"][k].as_str().map(String::from);
        TokenizerMeta {
            bos_token: s("bos_token"),
            eos_token: s("eos_token"),
            chat_template: v["template"].as_str().map(String::from),
            ..Default::default()
        }
    }

    /// `data.template = "model"` renders a query exactly as the model's template renders one user turn
    /// (transformers' apply_chat_template output is the oracle of the template itself, tests/chat_template.rs
    /// in dft-models), minus the template's BOS text when the pipeline adds BOS as a token.
    #[test]
    fn model_template_is_the_chat_template_around_the_query() {
        let data = DataSection { template: TemplateChoice::Model, ..Default::default() };
        let q = Query { instruction: "用一句话介绍北京。".into(), input: "简短".into() };
        for (model, bos) in [("smollm2", None), ("gemma3", Some(2)), ("gemma3", None)] {
            let m = meta(model);
            let special = SpecialTokens { bos, eos: 1, pad: 0 };
            let t = prompt_template(&data, &m, special).unwrap();
            let r = t.render(&q);
            let want =
                m.chat_template().unwrap().render(&[ChatMessage::user("用一句话介绍北京。\n\n简短")], true).unwrap();
            let want = match (bos, &m.bos_token) {
                (Some(_), Some(b)) => want.strip_prefix(b.as_str()).unwrap().to_string(),
                _ => want,
            };
            assert_eq!(r.text, want, "{model} bos={bos:?}");
            assert_eq!(&r.text[r.instruction.clone()], "用一句话介绍北京。");
            assert_eq!(&r.text[r.input.clone().unwrap()], "简短");
        }
        let e =
            prompt_template(&data, &TokenizerMeta::default(), SpecialTokens { bos: None, eos: 1, pad: 0 }).unwrap_err();
        assert!(e.to_string().contains("no chat template"), "{e}");
    }
}
