//! Turning `(context, continuation)` strings into token ids exactly as lm-evaluation-harness 0.4.x
//! does for a decoder-only model (`TemplateLM.loglikelihood` and `_encode_pair`):
//!
//! - non-empty context: trailing whitespace of the context is moved to the front of the
//!   continuation; then `whole = encode(context + continuation)`, `ctx = encode(context)` and the
//!   continuation tokens are `whole[len(ctx):]`. The model input is `ctx ++ cont` — the context as
//!   tokenised alone, so every choice of an item shares the same context tokens even where BPE would
//!   merge across the boundary;
//! - empty context (XNLI): the context is the prefix token (BOS, else EOS) and the continuation is
//!   `encode(continuation)` without special tokens; when the continuation itself starts with the
//!   prefix token, that token becomes the context.
//!
//! `encode` adds the tokenizer's special tokens as `tokenizer(text)` does by default (no BOS for
//! SmolLM2's GGUF tokenizer, BOS for Llama-2).
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::error::{EvalError, Result};
use crate::text::py_rstrip;

/// One log-likelihood request in token ids: score `continuation` after `context`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EncodedRequest {
    /// Never empty (the prefix token stands in for an empty context).
    pub context: Vec<u32>,
    /// Never empty.
    pub continuation: Vec<u32>,
}

impl EncodedRequest {
    /// Tokens a model without context sharing would run for this request (`len(ctx + cont) - 1`).
    pub fn input_len(&self) -> usize {
        self.context.len() + self.continuation.len() - 1
    }
}

/// `tokenizer.encode(text)`, with or without the tokenizer's special tokens (BOS/EOS template).
pub fn encode(tokenizer: &Tokenizer, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
    let enc = tokenizer
        .encode(text, add_special_tokens)
        .map_err(|e| EvalError::Tokenizer { message: format!("cannot encode {:?}: {e}", snippet(text)) })?;
    Ok(enc.get_ids().to_vec())
}

/// The first 60 characters of `text`, for error messages.
pub(crate) fn snippet(text: &str) -> String {
    let mut s: String = text.chars().take(60).collect();
    if text.chars().count() > 60 {
        s.push('…');
    }
    s
}

/// lm-eval's tokenisation of one request (see the module doc). `id` names the item in errors;
/// `prefix_token` is lm-eval's `prefix_token_id` (BOS, else EOS).
pub fn encode_request(
    tokenizer: &Tokenizer,
    prefix_token: u32,
    id: &str,
    context: &str,
    continuation: &str,
) -> Result<EncodedRequest> {
    encode_request_with(tokenizer, prefix_token, id, context, continuation, true)
}

/// [`encode_request`], encoding a non-empty context with or without the tokenizer's special tokens
/// (without for a chat-template-rendered context, which carries them as text).
pub fn encode_request_with(
    tokenizer: &Tokenizer,
    prefix_token: u32,
    id: &str,
    context: &str,
    continuation: &str,
    add_special_tokens: bool,
) -> Result<EncodedRequest> {
    let empty = || EvalError::EmptyContinuation { id: id.to_string(), continuation: continuation.to_string() };
    if context.is_empty() {
        let cont = encode(tokenizer, continuation, false)?;
        let (ctx, cont) = match cont.split_first() {
            None => return Err(empty()),
            Some((&first, rest)) if first == prefix_token => (vec![first], rest.to_vec()),
            Some(_) => (vec![prefix_token], cont),
        };
        if cont.is_empty() {
            return Err(empty());
        }
        return Ok(EncodedRequest { context: ctx, continuation: cont });
    }
    let kept = py_rstrip(context);
    let moved = &context[kept.len()..];
    let continuation = format!("{moved}{continuation}");
    let whole = encode(tokenizer, &format!("{kept}{continuation}"), add_special_tokens)?;
    let ctx = encode(tokenizer, kept, add_special_tokens)?;
    if ctx.is_empty() {
        return Err(EvalError::EmptyPrompt { id: id.to_string() });
    }
    let cont = whole.get(ctx.len()..).unwrap_or_default().to_vec();
    if cont.is_empty() {
        return Err(empty());
    }
    Ok(EncodedRequest { context: ctx, continuation: cont })
}

/// lm-eval's left truncation to the model's window: keep the last `max_len + 1` tokens of
/// `ctx ++ cont` (the last one is never an input). Fails when the continuation alone does not fit.
pub fn truncate_to_window(req: EncodedRequest, id: &str, max_len: usize) -> Result<EncodedRequest> {
    let total = req.context.len() + req.continuation.len();
    if total <= max_len + 1 {
        return Ok(req);
    }
    if req.continuation.len() > max_len {
        return Err(EvalError::TooLong { id: id.to_string(), tokens: req.continuation.len(), max: max_len });
    }
    let drop = total - (max_len + 1);
    Ok(EncodedRequest { context: req.context[drop..].to_vec(), continuation: req.continuation })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokenizers::models::bpe::{Vocab, BPE};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;

    /// A byte-level BPE: one token per byte, plus the merges `Ġ` + `b` → `Ġb` and `a` + `Ġ` (never
    /// applied, the pre-tokenizer splits before spaces) — enough to see the boundary handling.
    pub(crate) fn byte_tokenizer() -> Tokenizer {
        let mut chars: Vec<char> = ByteLevel::alphabet().into_iter().collect();
        chars.sort_unstable();
        let mut vocab: Vocab = chars.iter().enumerate().map(|(i, c)| (c.to_string(), i as u32)).collect();
        vocab.insert("Ġb".into(), vocab.len() as u32);
        let merges = vec![("Ġ".to_string(), "b".to_string())];
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().unwrap();
        let mut tok = Tokenizer::new(bpe);
        tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        tok.with_decoder(Some(ByteLevel::default()));
        tok
    }

    #[test]
    fn trailing_space_moves_to_the_continuation() {
        let tok = byte_tokenizer();
        let id = |s: &str| encode(&tok, s, false).unwrap();
        // "a " + "b": the space joins "b" as the merged token "Ġb".
        let r = encode_request(&tok, 0, "x", "a ", "b").unwrap();
        assert_eq!(r.context, id("a"));
        assert_eq!(r.continuation, id(" b"));
        assert_eq!(r.continuation.len(), 1);
        // Without trailing space the continuation is the tail of the whole encoding.
        let r = encode_request(&tok, 0, "x", "a", " b").unwrap();
        assert_eq!((r.context, r.continuation), (id("a"), id(" b")));
    }

    #[test]
    fn empty_context_uses_the_prefix_token() {
        let tok = byte_tokenizer();
        let r = encode_request(&tok, 999, "x", "", " b").unwrap();
        assert_eq!(r.context, vec![999]);
        assert_eq!(r.continuation, encode(&tok, " b", false).unwrap());
        let first = encode(&tok, "q", false).unwrap()[0];
        let r = encode_request(&tok, first, "x", "", "qz").unwrap();
        assert_eq!((r.context.len(), r.continuation.len()), (1, 1));
    }

    #[test]
    fn empty_continuation_and_context_are_errors() {
        let tok = byte_tokenizer();
        assert!(matches!(encode_request(&tok, 0, "x", "abc", ""), Err(EvalError::EmptyContinuation { .. })));
        assert!(matches!(encode_request(&tok, 0, "x", "", ""), Err(EvalError::EmptyContinuation { .. })));
        assert!(matches!(encode_request(&tok, 0, "x", "   ", "b"), Err(EvalError::EmptyPrompt { .. })));
    }

    #[test]
    fn window_truncation_drops_context_from_the_left() {
        let r = EncodedRequest { context: vec![1, 2, 3, 4], continuation: vec![5, 6] };
        let t = truncate_to_window(r.clone(), "x", 4).unwrap();
        assert_eq!(t.context, vec![2, 3, 4]);
        assert_eq!(truncate_to_window(r.clone(), "x", 8).unwrap(), r);
        assert!(matches!(truncate_to_window(r, "x", 1), Err(EvalError::TooLong { .. })));
    }
}
