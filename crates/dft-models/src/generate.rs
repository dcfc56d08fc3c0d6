//! Text generation with the KV cache: greedy and sampling (temperature, top-k, top-p), one sequence.

use crate::error::{ModelError, Result};
use crate::loading::SplitMix;
use crate::model::{CausalLm, KvCache};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

/// How the next token is picked.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampling {
    Greedy,
    /// Softmax sampling with temperature, optional top-k and nucleus (top-p) filtering, seeded.
    Sample {
        temperature: f32,
        top_k: Option<usize>,
        top_p: Option<f32>,
        seed: u64,
    },
}

#[derive(Debug, Clone)]
pub struct GenerateConfig {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// Generation stops after emitting any of these (the stop token is included in the output).
    pub stop_tokens: Vec<u32>,
}

fn ids_tensor<B: Backend>(ids: &[u32], device: &B::Device) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(ids.iter().map(|&x| x as i64).collect::<Vec<_>>(), [1, ids.len()]), device)
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |a, (i, &x)| if x > a.1 { (i, x) } else { a }).0
}

fn sample(logits: &[f32], temperature: f32, top_k: Option<usize>, top_p: Option<f32>, rng: &mut SplitMix) -> usize {
    if temperature <= 0.0 {
        return argmax(logits);
    }
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_unstable_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if let Some(k) = top_k {
        idx.truncate(k.max(1));
    }
    let m = logits[idx[0]] / temperature;
    let mut probs: Vec<f64> = idx.iter().map(|&i| ((logits[i] / temperature - m) as f64).exp()).collect();
    let z: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= z);
    if let Some(p) = top_p {
        let mut acc = 0.0;
        let mut keep = probs.len();
        for (n, q) in probs.iter().enumerate() {
            acc += q;
            if acc >= p as f64 {
                keep = n + 1;
                break;
            }
        }
        probs.truncate(keep);
        let z: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|q| *q /= z);
    }
    let mut u = rng.uniform();
    for (n, q) in probs.iter().enumerate() {
        u -= q;
        if u <= 0.0 {
            return idx[n];
        }
    }
    idx[probs.len() - 1]
}

impl Sampling {
    /// Temperature finite and >= 0, top-p in (0, 1], top-k >= 1.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::InvalidArgument(m));
        if let Sampling::Sample { temperature, top_k, top_p, .. } = self {
            if !(temperature.is_finite() && *temperature >= 0.0) {
                return bad(format!("temperature must be a finite number >= 0 (0 = greedy), got {temperature}"));
            }
            if let Some(p) = top_p {
                if !(*p > 0.0 && *p <= 1.0) {
                    return bad(format!("top-p must be in (0, 1], got {p}"));
                }
            }
            if *top_k == Some(0) {
                return bad("top-k must be >= 1".into());
            }
        }
        Ok(())
    }
}

/// Check a generation request against the model: a non-empty prompt, known token ids, and prompt plus
/// new tokens within the context length (`max_position_embeddings`).
pub fn check_request(context: usize, vocab: usize, prompt: &[u32], max_new_tokens: usize) -> Result<()> {
    let bad = |m: String| Err(ModelError::InvalidArgument(m));
    if prompt.is_empty() {
        return bad("the prompt is empty (it must have at least one token)".into());
    }
    if let Some(&t) = prompt.iter().find(|&&t| t as usize >= vocab) {
        return bad(format!("prompt token id {t} is outside the vocabulary ({vocab} tokens)"));
    }
    if prompt.len() > context {
        return bad(format!(
            "the prompt has {} tokens, more than the model's context of {context} tokens; shorten it",
            prompt.len()
        ));
    }
    if max_new_tokens > context - prompt.len() {
        return bad(format!(
            "max new tokens {max_new_tokens} does not fit: the model's context is {context} tokens and the prompt takes {}, so at most {} can be generated",
            prompt.len(),
            context - prompt.len()
        ));
    }
    Ok(())
}

/// Generate up to `cfg.max_new_tokens` tokens after `prompt`; returns only the new tokens. The request
/// is checked first ([`check_request`], [`Sampling::validate`]).
pub fn generate<B: Backend>(model: &CausalLm<B>, prompt: &[u32], cfg: &GenerateConfig) -> Result<Vec<u32>> {
    check_request(model.config.max_position_embeddings, model.config.vocab_size, prompt, cfg.max_new_tokens)?;
    cfg.sampling.validate()?;
    let device = model.device();
    let mut cache = KvCache::new(model.num_layers());
    let v = model.config.vocab_size;
    let mut rng = match cfg.sampling {
        Sampling::Sample { seed, .. } => SplitMix(seed),
        Sampling::Greedy => SplitMix(0),
    };
    let mut out = Vec::with_capacity(cfg.max_new_tokens);
    let mut next_input = prompt.to_vec();
    for _ in 0..cfg.max_new_tokens {
        let logits = model.forward_cached(ids_tensor::<B>(&next_input, &device), &mut cache);
        let t = next_input.len();
        let last: Vec<f32> =
            logits.slice([0..1, t - 1..t, 0..v]).into_data().convert::<f32>().to_vec::<f32>().expect("f32");
        let tok = match &cfg.sampling {
            Sampling::Greedy => argmax(&last),
            Sampling::Sample { temperature, top_k, top_p, .. } => sample(&last, *temperature, *top_k, *top_p, &mut rng),
        } as u32;
        out.push(tok);
        if cfg.stop_tokens.contains(&tok) {
            break;
        }
        next_input = vec![tok];
    }
    Ok(out)
}

/// Greedy decoding with the KV cache (convenience for [`generate`]).
pub fn greedy<B: Backend>(
    model: &CausalLm<B>,
    prompt: &[u32],
    max_new_tokens: usize,
    stop_tokens: &[u32],
) -> Result<Vec<u32>> {
    generate(
        model,
        prompt,
        &GenerateConfig { max_new_tokens, sampling: Sampling::Greedy, stop_tokens: stop_tokens.to_vec() },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_seeded_and_filters() {
        let logits = vec![0.1f32, 2.0, 1.9, -3.0, 0.5];
        let draw = |seed| {
            let mut rng = SplitMix(seed);
            (0..50).map(|_| sample(&logits, 1.0, None, None, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7), "same seed, same draws");
        assert_ne!(draw(7), draw(8));
        let mut rng = SplitMix(1);
        // top-k 1 and tiny top-p are greedy; temperature 0 is greedy.
        assert!((0..20).all(|_| sample(&logits, 1.0, Some(1), None, &mut rng) == 1));
        assert!((0..20).all(|_| sample(&logits, 1.0, None, Some(0.01), &mut rng) == 1));
        assert_eq!(sample(&logits, 0.0, None, None, &mut rng), 1);
        // top-k 2 never leaves the two best.
        assert!((0..200).all(|_| matches!(sample(&logits, 5.0, Some(2), None, &mut rng), 1 | 2)));
    }
}
