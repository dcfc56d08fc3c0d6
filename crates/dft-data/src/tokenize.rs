//! Tokenization of parallel examples into every sequence the DFT objective can ask for.
//!
//! For one example (METHOD.md §3), with `P(x)` the rendered prompt and `⊕` concatenation:
//!
//! | kind | sequence | prefix (labels -100) | supervised part |
//! |---|---|---|---|
//! | [`SequenceKind::Tft`] | `P(x_tgt) ⊕ y_tgt` | `P(x_tgt)` | `y_tgt` + EOS |
//! | [`SequenceKind::Lc`]  | `P(x_tgt) ⊕ x_en`  | `P(x_tgt)` | English instruction (+ `"\n"` + input) + EOS |
//! | [`SequenceKind::Et`]  | `P(x_tgt) ⊕ y_en`  | `P(x_tgt)` | `y_en` + EOS |
//! | [`SequenceKind::Sft`] | `P(x_en) ⊕ y_en`   | `P(x_en)`  | `y_en` + EOS |
//! | [`SequenceKind::EnPrompt`]  | `P(x_en)`  | all | none |
//! | [`SequenceKind::TgtPrompt`] | `P(x_tgt)` | all | none |
//!
//! Prompt ids are `[BOS] + encode(P(x))` (BOS only when the caller passes one: Llama-2 and Gemma
//! add it, SmolLM2 does not); they are an exact prefix of every sequence built from that prompt, so
//! the TFT pass serves the hidden states of `P(x_tgt)` to the feature losses.
//!
//! ## Answer tokenization and stanford_alpaca
//! stanford_alpaca tokenizes `prompt + output + eos_text` as one string and masks the first
//! `len(tokenize(prompt))` tokens. [`AnswerJoin::Joint`] does the same, then checks that the prompt
//! ids are a prefix of the joint ids; where they are not (the tokenizer merged the last prompt
//! character with the first answer character), it falls back to `prompt ids ⊕ encode(answer)` and
//! counts the fallback per kind ([`KindStats::joint_fallbacks`]), so the prefix property always
//! holds. With SmolLM2's byte-level BPE the Alpaca prompt ends in `:`, which splits cleanly from
//! letters, digits, CJK and whitespace but merges with a leading punctuation run (`- `, `"`, `//`,
//! `(`, `{`): 781 TFT, 1,392 ET and 1,392 SFT answers of the 51,939 tokenizable alpaca_en_zh
//! examples (3,565 of their 207,756 TFT/LC/ET/SFT sequences, 1.7%; LC targets never). There stanford_alpaca would supervise from
//! the second token of the merged run; we keep the prompt intact and supervise the whole answer.
//! [`AnswerJoin::Separate`] encodes prompt and answer separately; for byte-level BPE it gives
//! exactly `Joint`'s ids (see [`AnswerJoin::separate_is_exact`]; verified on all 51,939 examples)
//! at about half the cost, so [`AnswerJoin::Auto`] (default) uses it there and `Joint` elsewhere
//! (SentencePiece tokenizers such as Llama-2's would add a `▁` to a separately encoded answer).
//!
//! ## Truncation (METHOD.md §2)
//! A sequence longer than `max_len` loses the end of its supervised part (EOS included), never the
//! prompt. An example whose prompt (`P(x_tgt)` or `P(x_en)`, whichever is needed) leaves no room for
//! one supervised token (`prompt_len >= max_len`) is skipped and counted (`prompt_too_long`), or an
//! error in strict mode. [`Overlong::Skip`] instead skips examples with any sequence over `max_len`.
//!
//! ## Query spans
//! For pooling, [`QuerySpans`] gives the token positions (in the prompt ids, BOS counted) of the
//! instruction and of the input: every token whose byte offsets overlap the text of that field. A
//! token that straddles template and content (e.g. trailing spaces merged with the template's
//! newline) counts as content.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::error::{handle, DataError, DataReport, RecordLocation, Strictness};
use crate::example::{ParallelCorpus, ParallelExample};
use crate::template::{lc_target_text, PromptTemplate, RenderedPrompt};

/// Label of a position that takes no loss (prompt and padding), the HF/PyTorch convention.
pub const IGNORE_INDEX: i64 = -100;

/// The special token ids the caller's tokenizer config prescribes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokens {
    /// Prepended to every prompt when `Some` (Llama-2 / Gemma: yes; SmolLM2: no).
    pub bos: Option<u32>,
    /// Appended to every supervised part.
    pub eos: u32,
    /// Fills right padding (its label is always [`IGNORE_INDEX`] and its mask 0).
    pub pad: u32,
}

impl SpecialTokens {
    /// Look the ids up by token text, e.g. SmolLM2: `(None, "<|im_end|>", None)`; `pad` defaults to
    /// EOS.
    pub fn from_names(
        tokenizer: &Tokenizer,
        bos: Option<&str>,
        eos: &str,
        pad: Option<&str>,
    ) -> Result<Self, DataError> {
        let id = |name: &str| {
            tokenizer
                .token_to_id(name)
                .ok_or_else(|| DataError::Config(format!("token `{name}` is not in the tokenizer's vocabulary")))
        };
        let eos_id = id(eos)?;
        Ok(SpecialTokens {
            bos: bos.map(id).transpose()?,
            eos: eos_id,
            pad: pad.map(id).transpose()?.unwrap_or(eos_id),
        })
    }
}

/// One of the sequences built from an example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SequenceKind {
    Tft,
    Lc,
    Et,
    Sft,
    EnPrompt,
    TgtPrompt,
}

impl SequenceKind {
    pub const ALL: [SequenceKind; 6] = [
        SequenceKind::Tft,
        SequenceKind::Lc,
        SequenceKind::Et,
        SequenceKind::Sft,
        SequenceKind::EnPrompt,
        SequenceKind::TgtPrompt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SequenceKind::Tft => "tft",
            SequenceKind::Lc => "lc",
            SequenceKind::Et => "et",
            SequenceKind::Sft => "sft",
            SequenceKind::EnPrompt => "en_prompt",
            SequenceKind::TgtPrompt => "tgt_prompt",
        }
    }

    /// Whether the sequence has a supervised part (the prompt-only kinds have none).
    pub fn is_supervised(self) -> bool {
        !matches!(self, SequenceKind::EnPrompt | SequenceKind::TgtPrompt)
    }

    /// Whether the sequence starts with `P(x_tgt)` (else `P(x_en)`).
    pub fn uses_target_prompt(self) -> bool {
        matches!(self, SequenceKind::Tft | SequenceKind::Lc | SequenceKind::Et | SequenceKind::TgtPrompt)
    }
}

impl fmt::Display for SequenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which sequences to build (the objective asks only for what its losses need).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SequenceKinds {
    pub tft: bool,
    pub lc: bool,
    pub et: bool,
    pub sft: bool,
    pub en_prompt: bool,
    pub tgt_prompt: bool,
}

impl Default for SequenceKinds {
    /// Everything DFT can use: TFT, LC, ET and the English prompt (for the feature losses).
    fn default() -> Self {
        SequenceKinds { tft: true, lc: true, et: true, sft: false, en_prompt: true, tgt_prompt: false }
    }
}

impl SequenceKinds {
    pub fn none() -> Self {
        SequenceKinds { tft: false, lc: false, et: false, sft: false, en_prompt: false, tgt_prompt: false }
    }

    pub fn all() -> Self {
        SequenceKinds { tft: true, lc: true, et: true, sft: true, en_prompt: true, tgt_prompt: true }
    }

    /// Only the English SFT baseline.
    pub fn sft_only() -> Self {
        SequenceKinds { sft: true, ..Self::none() }
    }

    pub fn contains(&self, kind: SequenceKind) -> bool {
        match kind {
            SequenceKind::Tft => self.tft,
            SequenceKind::Lc => self.lc,
            SequenceKind::Et => self.et,
            SequenceKind::Sft => self.sft,
            SequenceKind::EnPrompt => self.en_prompt,
            SequenceKind::TgtPrompt => self.tgt_prompt,
        }
    }

    pub fn with(mut self, kind: SequenceKind) -> Self {
        match kind {
            SequenceKind::Tft => self.tft = true,
            SequenceKind::Lc => self.lc = true,
            SequenceKind::Et => self.et = true,
            SequenceKind::Sft => self.sft = true,
            SequenceKind::EnPrompt => self.en_prompt = true,
            SequenceKind::TgtPrompt => self.tgt_prompt = true,
        }
        self
    }

    pub fn iter(&self) -> impl Iterator<Item = SequenceKind> + '_ {
        SequenceKind::ALL.into_iter().filter(|k| self.contains(*k))
    }

    fn needs_target_prompt(&self) -> bool {
        self.tft || self.lc || self.et || self.tgt_prompt
    }

    fn needs_english_prompt(&self) -> bool {
        self.sft || self.en_prompt
    }
}

/// How the supervised part is tokenized after its prompt (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerJoin {
    /// `Separate` where it gives exactly `Joint`'s ids ([`AnswerJoin::separate_is_exact`]: byte-level
    /// BPE such as SmolLM2's), `Joint` otherwise.
    #[default]
    Auto,
    /// stanford_alpaca: encode prompt and answer as one string; fall back to `Separate` (counted)
    /// where the prompt ids are not a prefix of the result.
    Joint,
    /// Encode prompt and answer separately and concatenate.
    Separate,
}

impl AnswerJoin {
    /// `Auto` resolved for a tokenizer (`Joint` and `Separate` stay as they are).
    pub fn resolve(self, tokenizer: &Tokenizer) -> AnswerJoin {
        match self {
            AnswerJoin::Auto if Self::separate_is_exact(tokenizer) => AnswerJoin::Separate,
            AnswerJoin::Auto => AnswerJoin::Joint,
            other => other,
        }
    }

    /// Whether separate encoding yields the joint encoding's ids (after its fallback) for every
    /// text: BPE without dropout, no normalizer, and a pre-tokenizer made of byte-level splitting
    /// without an added prefix space (and digit splitting). Then a word's BPE never crosses a
    /// pre-token boundary; where a pre-token straddles the prompt/answer boundary and BPE keeps the
    /// prompt's tokens, the answer's tokens are the BPE of its part alone (merges never split, so
    /// no merge crossed the boundary), and where it does not, `Joint` falls back to `Separate`.
    /// Checked on all 51,939 tokenizable alpaca_en_zh examples with SmolLM2 (bench `throughput`).
    pub fn separate_is_exact(tokenizer: &Tokenizer) -> bool {
        use tokenizers::models::ModelWrapper;
        use tokenizers::pre_tokenizers::PreTokenizerWrapper;
        fn byte_level(p: &PreTokenizerWrapper) -> bool {
            match p {
                PreTokenizerWrapper::ByteLevel(b) => !b.add_prefix_space,
                PreTokenizerWrapper::Digits(_) => true,
                PreTokenizerWrapper::Sequence(seq) => {
                    let parts: &[PreTokenizerWrapper] = seq.as_ref();
                    parts.iter().all(byte_level) && parts.iter().any(|p| matches!(p, PreTokenizerWrapper::ByteLevel(_)))
                }
                _ => false,
            }
        }
        tokenizer.get_normalizer().is_none()
            && matches!(tokenizer.get_model(), ModelWrapper::BPE(bpe) if bpe.dropout.is_none())
            && tokenizer.get_pre_tokenizer().is_some_and(byte_level)
    }
}

/// What to do with a sequence longer than `max_len` whose prompt fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlong {
    /// Cut the end of the supervised part (METHOD.md §2).
    #[default]
    Truncate,
    /// Skip the example (counted as `sequence_too_long`; an error in strict mode).
    Skip,
}

/// Tokenization settings (the special token ids come separately, from the tokenizer's config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizeConfig {
    pub template: PromptTemplate,
    /// Longest sequence in tokens, BOS and EOS included (512 as in the paper).
    pub max_len: usize,
    pub kinds: SequenceKinds,
    pub answer_join: AnswerJoin,
    pub overlong: Overlong,
}

impl Default for TokenizeConfig {
    fn default() -> Self {
        TokenizeConfig {
            template: PromptTemplate::Alpaca,
            max_len: 512,
            kinds: SequenceKinds::default(),
            answer_join: AnswerJoin::Auto,
            overlong: Overlong::Truncate,
        }
    }
}

/// Token positions of the query content inside a prompt's ids (BOS counted), for pooling.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QuerySpans {
    pub instruction: Range<usize>,
    /// Present when the query has an input.
    pub input: Option<Range<usize>>,
}

impl QuerySpans {
    /// The content positions in increasing order (instruction, then input; never repeated).
    pub fn positions(&self) -> Vec<usize> {
        let mut positions: Vec<usize> = self.instruction.clone().collect();
        if let Some(input) = &self.input {
            positions.extend(input.clone().filter(|p| *p >= self.instruction.end));
        }
        positions
    }

    /// The spans as a list: the instruction's, then the input's when present (the shape
    /// `dft_losses::Sequences::query_spans` takes per row).
    pub fn ranges(&self) -> Vec<Range<usize>> {
        std::iter::once(self.instruction.clone()).chain(self.input.clone()).collect()
    }

    /// How many content tokens there are (what mean pooling divides by).
    pub fn count(&self) -> usize {
        self.positions().len()
    }
}

/// The token ids of one example: the two prompts, and the supervised part of each requested kind.
/// A prompt or answer that was not requested is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedExample {
    pub id: String,
    pub origin: RecordLocation,
    /// `[BOS] + P(x_tgt)`: the prefix of TFT, LC and ET.
    pub tgt_prompt: Vec<u32>,
    /// `[BOS] + P(x_en)`: the prefix of SFT and the English-prompt sequence.
    pub en_prompt: Vec<u32>,
    pub tgt_query: QuerySpans,
    pub en_query: QuerySpans,
    /// Supervised parts (answer ids + EOS, cut when truncated).
    pub tft: Vec<u32>,
    pub lc: Vec<u32>,
    pub et: Vec<u32>,
    pub sft: Vec<u32>,
}

impl TokenizedExample {
    /// `(prefix, supervised part)` of a kind; the full sequence is their concatenation.
    pub fn sequence(&self, kind: SequenceKind) -> (&[u32], &[u32]) {
        match kind {
            SequenceKind::Tft => (&self.tgt_prompt, &self.tft),
            SequenceKind::Lc => (&self.tgt_prompt, &self.lc),
            SequenceKind::Et => (&self.tgt_prompt, &self.et),
            SequenceKind::Sft => (&self.en_prompt, &self.sft),
            SequenceKind::EnPrompt => (&self.en_prompt, &[]),
            SequenceKind::TgtPrompt => (&self.tgt_prompt, &[]),
        }
    }

    /// The full token ids of a kind.
    pub fn ids(&self, kind: SequenceKind) -> Vec<u32> {
        let (prefix, answer) = self.sequence(kind);
        [prefix, answer].concat()
    }

    /// Length of a kind's sequence.
    pub fn len(&self, kind: SequenceKind) -> usize {
        let (prefix, answer) = self.sequence(kind);
        prefix.len() + answer.len()
    }

    /// The longest of the given kinds (the length-grouping key).
    pub fn max_len(&self, kinds: &SequenceKinds) -> usize {
        kinds.iter().map(|k| self.len(k)).max().unwrap_or(0)
    }
}

/// Counts for one sequence kind over a corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindStats {
    pub sequences: usize,
    /// Tokens over all sequences (prefix included).
    pub tokens: usize,
    /// Supervised tokens (those with a label).
    pub supervised_tokens: usize,
    /// Sequences whose supervised part was cut at `max_len`.
    pub truncated: usize,
    /// Sequences where [`AnswerJoin::Joint`] fell back to separate encoding.
    pub joint_fallbacks: usize,
    pub longest: usize,
}

impl KindStats {
    fn add(&mut self, other: &KindStats) {
        self.sequences += other.sequences;
        self.tokens += other.tokens;
        self.supervised_tokens += other.supervised_tokens;
        self.truncated += other.truncated;
        self.joint_fallbacks += other.joint_fallbacks;
        self.longest = self.longest.max(other.longest);
    }
}

/// Per-kind counts; `Display` prints one line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizeStats {
    pub kinds: BTreeMap<SequenceKind, KindStats>,
}

impl fmt::Display for TokenizeStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .kinds
            .iter()
            .map(|(k, s)| {
                format!(
                    "{k}: {} seqs, mean {:.1} tok, max {}, truncated {}, joint fallbacks {}",
                    s.sequences,
                    s.tokens as f64 / s.sequences.max(1) as f64,
                    s.longest,
                    s.truncated,
                    s.joint_fallbacks
                )
            })
            .collect();
        f.write_str(&parts.join("; "))
    }
}

/// A tokenized corpus, ready for [`crate::batch::Batcher`].
#[derive(Debug, Clone)]
pub struct TokenizedCorpus {
    pub target_lang: String,
    pub special: SpecialTokens,
    pub config: TokenizeConfig,
    /// `config.answer_join` resolved for the tokenizer (`Joint` or `Separate`).
    pub answer_join: AnswerJoin,
    pub examples: Vec<TokenizedExample>,
    /// This stage: examples seen, kept, skipped per reason.
    pub report: DataReport,
    pub stats: TokenizeStats,
}

/// Tokenize every example of a corpus, in parallel (rayon), keeping the corpus order. In strict
/// mode the first problem in corpus order is returned.
pub fn tokenize_corpus(
    corpus: &ParallelCorpus,
    tokenizer: &Tokenizer,
    special: SpecialTokens,
    config: &TokenizeConfig,
    strictness: Strictness,
) -> Result<TokenizedCorpus, DataError> {
    if config.max_len < 2 {
        return Err(DataError::Config(format!("max_len {} is too small", config.max_len)));
    }
    if config.kinds == SequenceKinds::none() {
        return Err(DataError::Config("no sequence kind requested".into()));
    }
    let results: Vec<Result<(TokenizedExample, TokenizeStats), DataError>> =
        corpus.examples.par_iter().map(|example| tokenize_example(example, tokenizer, special, config)).collect();
    let mut report = DataReport { seen: corpus.examples.len(), ..Default::default() };
    let mut stats = TokenizeStats::default();
    let mut examples = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok((example, example_stats)) => {
                for (kind, s) in &example_stats.kinds {
                    stats.kinds.entry(*kind).or_default().add(s);
                }
                examples.push(example);
            }
            Err(e) => handle(strictness, &mut report, e)?,
        }
    }
    report.kept = examples.len();
    Ok(TokenizedCorpus {
        target_lang: corpus.target_lang.clone(),
        special,
        config: config.clone(),
        answer_join: config.answer_join.resolve(tokenizer),
        examples,
        report,
        stats,
    })
}

/// Tokenize one example: the requested prompts and supervised parts, with per-kind counts.
pub fn tokenize_example(
    example: &ParallelExample,
    tokenizer: &Tokenizer,
    special: SpecialTokens,
    config: &TokenizeConfig,
) -> Result<(TokenizedExample, TokenizeStats), DataError> {
    let answer_join = config.answer_join.resolve(tokenizer);
    let encoder = Encoder { tokenizer, special, config, answer_join, location: &example.origin };
    let kinds = config.kinds;
    let mut out = TokenizedExample {
        id: example.id.clone(),
        origin: example.origin.clone(),
        tgt_prompt: Vec::new(),
        en_prompt: Vec::new(),
        tgt_query: QuerySpans::default(),
        en_query: QuerySpans::default(),
        tft: Vec::new(),
        lc: Vec::new(),
        et: Vec::new(),
        sft: Vec::new(),
    };
    let mut tgt_rendered = None;
    let mut en_rendered = None;
    if kinds.needs_target_prompt() {
        let rendered = config.template.render(&example.x_tgt);
        (out.tgt_prompt, out.tgt_query) = encoder.prompt(&rendered, "P(x_tgt)")?;
        tgt_rendered = Some(rendered);
    }
    if kinds.needs_english_prompt() {
        let rendered = config.template.render(&example.x_en);
        (out.en_prompt, out.en_query) = encoder.prompt(&rendered, "P(x_en)")?;
        en_rendered = Some(rendered);
    }
    let mut stats = TokenizeStats::default();
    for kind in kinds.iter() {
        let mut kind_stats = KindStats { sequences: 1, ..Default::default() };
        let answer = match kind {
            SequenceKind::Tft | SequenceKind::Lc | SequenceKind::Et => {
                let rendered = tgt_rendered.as_ref().expect("target prompt rendered");
                let text = match kind {
                    SequenceKind::Tft => example.y_tgt.clone(),
                    SequenceKind::Lc => lc_target_text(&example.x_en),
                    _ => example.y_en.clone(),
                };
                Some(encoder.answer(rendered, &out.tgt_prompt, &text, kind, &mut kind_stats)?)
            }
            SequenceKind::Sft => {
                let rendered = en_rendered.as_ref().expect("English prompt rendered");
                Some(encoder.answer(rendered, &out.en_prompt, &example.y_en, kind, &mut kind_stats)?)
            }
            SequenceKind::EnPrompt | SequenceKind::TgtPrompt => None,
        };
        match kind {
            SequenceKind::Tft => out.tft = answer.expect("supervised"),
            SequenceKind::Lc => out.lc = answer.expect("supervised"),
            SequenceKind::Et => out.et = answer.expect("supervised"),
            SequenceKind::Sft => out.sft = answer.expect("supervised"),
            SequenceKind::EnPrompt | SequenceKind::TgtPrompt => {}
        }
        let (prefix, supervised) = out.sequence(kind);
        kind_stats.tokens = prefix.len() + supervised.len();
        kind_stats.supervised_tokens = supervised.len();
        kind_stats.longest = kind_stats.tokens;
        stats.kinds.insert(kind, kind_stats);
    }
    Ok((out, stats))
}

/// The per-example encoding steps, with what errors need to name the record.
struct Encoder<'a> {
    tokenizer: &'a Tokenizer,
    special: SpecialTokens,
    config: &'a TokenizeConfig,
    /// Resolved (never `Auto`).
    answer_join: AnswerJoin,
    location: &'a RecordLocation,
}

impl Encoder<'_> {
    fn tokenizer_error(&self, e: tokenizers::Error) -> DataError {
        DataError::Tokenizer { location: self.location.clone(), message: e.to_string() }
    }

    /// `[BOS] + encode(prompt)` and the query spans; the prompt must leave room for one supervised
    /// token.
    fn prompt(&self, rendered: &RenderedPrompt, which: &'static str) -> Result<(Vec<u32>, QuerySpans), DataError> {
        let encoding = self.tokenizer.encode(rendered.text.as_str(), false).map_err(|e| self.tokenizer_error(e))?;
        let shift = usize::from(self.special.bos.is_some());
        let mut ids = Vec::with_capacity(encoding.len() + shift);
        ids.extend(self.special.bos);
        ids.extend_from_slice(encoding.get_ids());
        if ids.len() >= self.config.max_len {
            return Err(DataError::PromptTooLong {
                location: self.location.clone(),
                which,
                prompt_len: ids.len(),
                max_len: self.config.max_len,
            });
        }
        let offsets = encoding.get_offsets();
        let spans = QuerySpans {
            instruction: token_span(offsets, &rendered.instruction, shift),
            input: rendered.input.as_ref().map(|bytes| token_span(offsets, bytes, shift)),
        };
        Ok((ids, spans))
    }

    /// The supervised part after `prompt_ids`: answer ids + EOS, joined per [`AnswerJoin`] and cut
    /// at `max_len` per [`Overlong`].
    fn answer(
        &self,
        rendered: &RenderedPrompt,
        prompt_ids: &[u32],
        answer_text: &str,
        kind: SequenceKind,
        stats: &mut KindStats,
    ) -> Result<Vec<u32>, DataError> {
        let prompt_body = &prompt_ids[usize::from(self.special.bos.is_some())..];
        let mut answer = None;
        if self.answer_join == AnswerJoin::Joint {
            let joint_text = format!("{}{answer_text}", rendered.text);
            let joint = self.tokenizer.encode_fast(joint_text.as_str(), false).map_err(|e| self.tokenizer_error(e))?;
            let joint = joint.get_ids();
            if joint.starts_with(prompt_body) {
                answer = Some(joint[prompt_body.len()..].to_vec());
            } else {
                stats.joint_fallbacks += 1;
            }
        }
        let mut answer = match answer {
            Some(a) => a,
            None => {
                let encoding = self.tokenizer.encode_fast(answer_text, false).map_err(|e| self.tokenizer_error(e))?;
                encoding.get_ids().to_vec()
            }
        };
        answer.push(self.special.eos);
        let room = self.config.max_len - prompt_ids.len();
        if answer.len() > room {
            if self.config.overlong == Overlong::Skip {
                return Err(DataError::SequenceTooLong {
                    location: self.location.clone(),
                    which: kind.name(),
                    len: prompt_ids.len() + answer.len(),
                    max_len: self.config.max_len,
                });
            }
            answer.truncate(room);
            stats.truncated += 1;
        }
        Ok(answer)
    }
}

/// Token positions (shifted by `shift`) of the tokens whose byte offsets overlap `bytes`.
fn token_span(offsets: &[(usize, usize)], bytes: &Range<usize>, shift: usize) -> Range<usize> {
    let mut first = None;
    let mut end = 0;
    for (i, &(start, stop)) in offsets.iter().enumerate() {
        if start < bytes.end && stop > bytes.start {
            first.get_or_insert(i);
            end = i + 1;
        }
    }
    match first {
        Some(first) => first + shift..end + shift,
        None => shift..shift,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_span_takes_overlapping_tokens() {
        let offsets = [(0, 3), (3, 5), (5, 6), (6, 9), (9, 10)];
        assert_eq!(token_span(&offsets, &(5..9), 0), 2..4);
        assert_eq!(token_span(&offsets, &(4..6), 1), 2..4);
        assert_eq!(token_span(&offsets, &(20..30), 0), 0..0);
    }

    #[test]
    fn query_positions_do_not_repeat_a_shared_token() {
        let spans = QuerySpans { instruction: 3..6, input: Some(5..8) };
        assert_eq!(spans.positions(), vec![3, 4, 5, 6, 7]);
        assert_eq!(spans.count(), 5);
    }

    #[test]
    fn kinds_read_from_json_with_defaults() {
        let kinds: SequenceKinds = serde_json::from_str(r#"{"sft": true, "lc": false}"#).unwrap();
        assert!(kinds.tft && kinds.sft && !kinds.lc && kinds.et && kinds.en_prompt);
        assert_eq!(
            kinds.iter().collect::<Vec<_>>(),
            vec![SequenceKind::Tft, SequenceKind::Et, SequenceKind::Sft, SequenceKind::EnPrompt]
        );
    }
}
