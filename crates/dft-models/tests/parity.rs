//! Our decoders against Hugging Face transformers (eager attention, f32) on tiny random models (Llama,
//! GQA-Llama, Gemma-2, Gemma-3):
//! every block's hidden state and the logits, right-padded batches, truncated forwards, KV-cache
//! generation and the save → load round trip. Fixtures: tools/oracle/model_fixtures.py.
mod common;
use burn::tensor::{Int, Tensor, TensorData};
use common::*;
use dft_models::{load_pretrained, CausalLm, ForwardSpec, KvCache};

const TOL: f64 = 1e-4;
const MODELS: [&str; 4] = ["tiny-llama", "tiny-gqa-llama", "tiny-gemma2", "tiny-gemma3"];

fn lengths(refs: &std::collections::HashMap<String, Ref>) -> Vec<usize> {
    let m = &refs["attention_mask"];
    let (b, t) = (m.shape[0], m.shape[1]);
    (0..b).map(|r| (0..t).filter(|&c| m.data[r * t + c] > 0.5).count()).collect()
}

fn load(name: &str) -> CausalLm<B> {
    load_pretrained::<B>(&fixture(name), &Default::default()).unwrap_or_else(|e| panic!("{name}: {e}")).model
}

/// `name`'s fixture model with row packing and fused attention set as given.
fn load_variant(name: &str, packing: bool, fused: bool) -> CausalLm<AB> {
    load_pretrained::<AB>(&fixture(name), &Default::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .model
        .with_row_packing(packing)
        .with_fused_attention(fused)
}

/// Blocks `1..=upto` over the fixture's padded prompts with their keys/values captured, then `suffix`
/// (`[3, s]` ids, `suffix_lens` real per row) continuing each row's first `prefix_lens` tokens: `h_upto` of
/// the suffix positions.
#[allow(clippy::too_many_arguments)]
fn capture_then_suffix<Bk: burn::tensor::backend::Backend>(
    model: &CausalLm<Bk>,
    refs: &std::collections::HashMap<String, Ref>,
    lens: &[usize],
    prefix_lens: &[usize],
    suffix: &[i64],
    suffix_lens: &[usize],
    s: usize,
    upto: usize,
) -> Tensor<Bk, 3> {
    let device = model.device();
    let (_, cache) = model.forward_hidden_capture(
        refs["input_ids"].int_tensor(&device),
        Some(lens),
        &ForwardSpec { upto: Some(upto), keep: vec![] },
        upto,
    );
    let suffix_t: Tensor<Bk, 2, Int> = Tensor::from_data(TensorData::new(suffix.to_vec(), [3, s]), &device);
    model.forward_suffix(&cache, prefix_lens, suffix_t, suffix_lens, upto)
}

#[test]
fn hidden_states_and_logits_match_transformers() {
    let device = Default::default();
    for name in MODELS {
        let model = load(name);
        let refs = read_refs(&fixture(name).join("reference.safetensors"));
        let lens = lengths(&refs);
        let ids = refs["input_ids"].int_tensor(&device);
        let [b, t] = ids.dims();
        let lens_ref = &lens;
        let valid = |h: usize| {
            move |i: usize| {
                let row = i / (t * h);
                (i / h) % t < lens_ref[row]
            }
        };
        let states = model.all_hidden_states(ids.clone(), Some(&lens));
        assert_eq!(states.len(), model.num_layers() + 1);
        for (k, h) in states.into_iter().enumerate() {
            let r = &refs[&format!("hidden.{k}")];
            let hd = r.shape[2];
            let d = max_abs_diff(&to_vec(h), &r.data, valid(hd));
            assert!(d <= TOL, "{name}: hidden state of block {k} differs by {d:e}");
        }
        let logits = model.forward(ids, Some(&lens));
        let r = &refs["logits"];
        let d = max_abs_diff(&to_vec(logits), &r.data, valid(r.shape[2]));
        assert!(d <= TOL, "{name}: logits differ by {d:e}");
        assert_eq!(b, lens.len());
    }
}

#[test]
fn padded_rows_equal_unpadded_runs() {
    let device = Default::default();
    for name in MODELS {
        let model = load(name);
        let refs = read_refs(&fixture(name).join("reference.safetensors"));
        let lens = lengths(&refs);
        let ids = refs["input_ids"].ids();
        let t = refs["input_ids"].shape[1];
        let batched = to_vec(model.forward(refs["input_ids"].int_tensor(&device), Some(&lens)));
        let v = model.config.vocab_size;
        for (row, &n) in lens.iter().enumerate() {
            let one: Tensor<B, 2, Int> =
                Tensor::from_data(TensorData::new(ids[row * t..row * t + n].to_vec(), [1, n]), &device);
            let single = to_vec(model.forward(one, None));
            let d = single.iter().enumerate().map(|(i, x)| (x - batched[row * t * v + i]).abs()).fold(0f32, f32::max);
            assert!(d <= 1e-5, "{name}: row {row} padded vs unpadded differs by {d:e}");
        }
    }
}

/// Row packing (position-wise work on the real positions only) and the fused attention change no value
/// at a real position and no gradient: the same objective — hidden states kept at blocks 0, 1 and L (real
/// positions only, through fixed random read-outs) plus the logits' log-sum-exp at the real positions —
/// on the fixture batches (27% padding) with each on and off (against both off: the tensor composition),
/// `Autodiff<Flex>`, every parameter's gradient compared.
/// Every float parameter's gradient in `grads`, in visiting order (empty where it has none).
fn parameter_grads(
    model: &CausalLm<AB>,
    grads: &<AB as burn::tensor::backend::AutodiffBackend>::Gradients,
) -> Vec<Vec<f32>> {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::tensor::backend::AutodiffBackend;
    struct Grads<'a> {
        grads: &'a <AB as AutodiffBackend>::Gradients,
        out: Vec<Vec<f32>>,
    }
    impl ModuleVisitor<AB> for Grads<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
            let g = param.val().grad(self.grads).map(|g| g.into_data().to_vec::<f32>().unwrap());
            self.out.push(g.unwrap_or_default());
        }
    }
    let mut visit = Grads { grads, out: Vec::new() };
    model.visit(&mut visit);
    visit.out
}

/// Every parameter's gradient of `got` equals `want`'s within 1e-5 of the largest entry (and at least 1e-5).
fn assert_same_grads(got: &[Vec<f32>], want: &[Vec<f32>], what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, (p, q)) in got.iter().zip(want).enumerate() {
        assert_eq!(p.len(), q.len(), "{what}: parameter {i} has a gradient in one run only");
        let scale = q.iter().fold(1f32, |m, x| m.max(x.abs()));
        let d = p.iter().zip(q).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(d <= 1e-5 * scale, "{what}: gradient of parameter {i} differs by {d:e} (scale {scale})");
    }
}

#[test]
fn row_packing_and_fused_attention_change_no_value_or_gradient() {
    let device = Default::default();
    for name in MODELS {
        let refs = read_refs(&fixture(name).join("reference.safetensors"));
        let lens = lengths(&refs);
        let ids = refs["input_ids"].ids();
        let [b, t] = [refs["input_ids"].shape[0], refs["input_ids"].shape[1]];
        let run = |packing: bool, fused: bool| {
            let model = load_variant(name, packing, fused);
            assert_eq!(model.packs_rows(b, t, Some(&lens)), packing, "{name}: packing on = {packing}");
            let l = model.num_layers();
            let input: Tensor<AB, 2, Int> = Tensor::from_data(TensorData::new(ids.clone(), [b, t]), &device);
            let out = model.forward_hidden(input, Some(&lens), &ForwardSpec { upto: None, keep: vec![1, 0, l] });
            // 1 at real positions, 0 at padding: no loss reads padding.
            let real: Vec<f32> = (0..b * t).map(|i| if i % t < lens[i / t] { 1.0 } else { 0.0 }).collect();
            let real = Tensor::<AB, 3>::from_data(TensorData::new(real, [b, t, 1]), &device);
            let mut loss = Tensor::<AB, 1>::zeros([1], &device);
            let mut values = Vec::new();
            for (k, h) in out.kept.iter().chain([(l, out.last.clone())].iter()) {
                let hd = h.dims()[2];
                let w: Vec<f32> = (0..hd).map(|i| ((i * 37 + k * 11) % 23) as f32 / 23.0 - 0.5).collect();
                let w = Tensor::<AB, 3>::from_data(TensorData::new(w, [1, 1, hd]), &device);
                loss = loss + (h.clone() * w * real.clone()).sum();
                values.push(h.clone().inner().into_data().to_vec::<f32>().unwrap());
            }
            let logits = model.logit_lens(out.last, false);
            let lse = (logits.clone() - logits.clone().detach().max_dim(2)).exp().sum_dim(2).log();
            loss = loss + (lse * real).sum();
            let grads = loss.backward();
            (values, parameter_grads(&model, &grads))
        };
        let (plain, plain_grads) = run(false, false);
        for (packing, fused) in [(true, false), (false, true), (true, true)] {
            let what = format!("{name} (packing {packing}, fused attention {fused})");
            let (packed, packed_grads) = run(packing, fused);
            for (k, (p, q)) in packed.iter().zip(&plain).enumerate() {
                let hd = p.len() / (b * t);
                let d = (0..p.len())
                    .filter(|i| (i / hd) % t < lens[i / (hd * t)])
                    .map(|i| (p[i] - q[i]).abs())
                    .fold(0f32, f32::max);
                assert!(d <= 1e-5, "{what}: state {k} differs by {d:e} at a real position");
            }
            assert_same_grads(&packed_grads, &plain_grads, &what);
        }
        assert!(plain_grads.iter().filter(|g| !g.is_empty()).count() > 5, "{name}: too few gradients");
    }
}

#[test]
fn truncated_forward_equals_block_k_of_full_forward() {
    let device = Default::default();
    for name in MODELS {
        let model = load(name);
        let refs = read_refs(&fixture(name).join("reference.safetensors"));
        let lens = lengths(&refs);
        let ids = refs["input_ids"].int_tensor(&device);
        let full = model.all_hidden_states(ids.clone(), Some(&lens));
        for (k, hk_full) in full.iter().enumerate() {
            let hk = to_vec(model.truncated_forward(ids.clone(), Some(&lens), k));
            assert_eq!(hk, to_vec(hk_full.clone()), "{name}: truncated forward to block {k}");
        }
        // Keeping several blocks from one pass returns the same tensors.
        let spec = ForwardSpec { upto: Some(2), keep: vec![2, 0, 1] };
        let out = model.forward_hidden(ids, Some(&lens), &spec);
        let order: Vec<usize> = out.kept.iter().map(|(k, _)| *k).collect();
        assert_eq!(order, vec![2, 0, 1]);
        assert_eq!(to_vec(out.get(1).unwrap().clone()), to_vec(full[1].clone()));
    }
}

#[test]
fn kv_cache_greedy_equals_transformers_generate_and_full_recompute() {
    let device = Default::default();
    for name in MODELS {
        let model = load(name);
        let refs = read_refs(&fixture(name).join("reference.safetensors"));
        let prompt: Vec<u32> = refs["gen.prompt"].ids().iter().map(|&x| x as u32).collect();
        let want: Vec<u32> = refs["gen.greedy"].ids().iter().map(|&x| x as u32).collect();
        let n_new = want.len() - prompt.len();
        // KV cache path.
        let cached = dft_models::generate::greedy(&model, &prompt, n_new, &[]).unwrap();
        assert_eq!(cached, want[prompt.len()..], "{name}: KV-cache greedy differs from transformers");
        // Full recomputation at every step.
        let mut seq = prompt.clone();
        for _ in 0..n_new {
            let ids: Tensor<B, 2, Int> = Tensor::from_data(
                TensorData::new(seq.iter().map(|&x| x as i64).collect::<Vec<_>>(), [1, seq.len()]),
                &device,
            );
            let logits = to_vec(model.forward(ids, None));
            let v = model.config.vocab_size;
            let last = &logits[(seq.len() - 1) * v..];
            let next = last.iter().enumerate().fold((0, f32::MIN), |a, (i, &x)| if x > a.1 { (i, x) } else { a }).0;
            seq.push(next as u32);
        }
        assert_eq!(seq, want, "{name}: full-recompute greedy differs");
        // Cache logits equal full-forward logits position by position.
        let mut cache = KvCache::new(model.num_layers());
        let p: Tensor<B, 2, Int> = Tensor::from_data(
            TensorData::new(want[..4].iter().map(|&x| x as i64).collect::<Vec<_>>(), [1, 4]),
            &device,
        );
        let _ = model.forward_cached(p, &mut cache);
        let step: Tensor<B, 2, Int> =
            Tensor::from_data(TensorData::new(vec![want[4] as i64, want[5] as i64], [1, 2]), &device);
        let inc = to_vec(model.forward_cached(step, &mut cache));
        let all: Tensor<B, 2, Int> = Tensor::from_data(
            TensorData::new(want[..6].iter().map(|&x| x as i64).collect::<Vec<_>>(), [1, 6]),
            &device,
        );
        let full = to_vec(model.forward(all, None));
        let v = model.config.vocab_size;
        let d = inc.iter().zip(&full[4 * v..]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(d <= 1e-5, "{name}: cached logits differ by {d:e}");
        // A preallocated cache: the steps write into the reserved room (its capacity does not change),
        // one token at a time, and give the same logits.
        let mut cache = KvCache::new(model.num_layers());
        let p: Tensor<B, 2, Int> = Tensor::from_data(
            TensorData::new(want[..4].iter().map(|&x| x as i64).collect::<Vec<_>>(), [1, 4]),
            &device,
        );
        let _ = model.forward_cached(p, &mut cache);
        assert_eq!(cache.capacity(), 4);
        cache.reserve(2);
        assert_eq!((cache.len, cache.capacity()), (4, 6), "{name}: reserve(2) after 4 positions");
        let mut reserved = Vec::new();
        for &tok in &want[4..6] {
            let step: Tensor<B, 2, Int> = Tensor::from_data(TensorData::new(vec![tok as i64], [1, 1]), &device);
            reserved.extend(to_vec(model.forward_cached(step, &mut cache)));
            assert_eq!(cache.capacity(), 6, "{name}: a step within the reserved room grew the cache");
        }
        assert_eq!(cache.len, 6);
        let d = reserved.iter().zip(&full[4 * v..]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(d <= 1e-5, "{name}: logits with a reserved cache differ by {d:e}");
        // Past the reserved room the cache grows again.
        let step: Tensor<B, 2, Int> = Tensor::from_data(TensorData::new(vec![want[6] as i64], [1, 1]), &device);
        let _ = model.forward_cached(step, &mut cache);
        assert_eq!((cache.len, cache.capacity()), (7, 7));
    }
}

#[test]
fn sharded_checkpoint_loads_identically() {
    let a = load("tiny-llama").to_hf_tensors();
    let b = load("tiny-llama-sharded").to_hf_tensors();
    assert_eq!(a, b);
}

#[test]
fn save_load_round_trip_is_exact() {
    let dir = dft_test_support::scratch::ScratchDir::new(format!("dft-models-roundtrip-{}", std::process::id()));
    for name in MODELS {
        let model = load(name);
        let out = dir.join(name);
        model.save_pretrained(&out, None).unwrap();
        let again = load_pretrained::<B>(&out, &Default::default()).unwrap().model;
        assert_eq!(model.config, again.config, "{name}: config round trip");
        assert_eq!(model.to_hf_tensors(), again.to_hf_tensors(), "{name}: weights round trip");
    }
}

#[test]
fn random_models_build_for_each_architecture() {
    let device = Default::default();
    for name in MODELS {
        let cfg = load(name).config.clone();
        let m = CausalLm::<B>::random(cfg.clone(), 7, &device).unwrap();
        let ids: Tensor<B, 2, Int> = Tensor::from_data(TensorData::new(vec![3i64, 4, 5], [1, 3]), &device);
        let logits = to_vec(m.forward(ids, None));
        assert_eq!(logits.len(), 3 * cfg.vocab_size);
        assert!(logits.iter().all(|x| x.is_finite()));
    }
}

#[test]
fn suffix_forward_over_a_shared_prefix_equals_the_full_forward() {
    let device = Default::default();
    for name in MODELS {
        let model = load(name);
        let refs = read_refs(&fixture(name).join("reference.safetensors"));
        let lens = lengths(&refs);
        let ids = refs["input_ids"].ids();
        let t = refs["input_ids"].shape[1];
        let prefix_lens = [5usize, 3, 4];
        let suffix_lens = [4usize, 6, 2];
        let s = 6;
        let suffix: Vec<i64> = (0..3 * s).map(|i| (7 + (i * 13) % 80) as i64).collect();
        for upto in [1, model.num_layers()] {
            let h = to_vec(capture_then_suffix(&model, &refs, &lens, &prefix_lens, &suffix, &suffix_lens, s, upto));
            let hd = model.config.hidden_size;
            for r in 0..3 {
                let mut seq: Vec<i64> = ids[r * t..r * t + prefix_lens[r]].to_vec();
                seq.extend_from_slice(&suffix[r * s..r * s + suffix_lens[r]]);
                let n = seq.len();
                let one: Tensor<B, 2, Int> = Tensor::from_data(TensorData::new(seq, [1, n]), &device);
                let full = to_vec(model.truncated_forward(one, None, upto));
                for q in 0..suffix_lens[r] {
                    let a = &h[(r * s + q) * hd..(r * s + q + 1) * hd];
                    let b = &full[(prefix_lens[r] + q) * hd..(prefix_lens[r] + q + 1) * hd];
                    let d = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                    assert!(d <= 1e-5, "{name}: row {r} suffix position {q} (block {upto}) differs by {d:e}");
                }
            }
        }
    }
}

/// The suffix passes of DFT-logits continue the main pass's keys with gradients flowing into both:
/// with the fused attention over the cache (ragged prompts, packed suffix rows, Gemma's windows and
/// softcaps) every suffix state and every parameter's gradient equals the composition's.
#[test]
fn suffix_pass_gradients_are_the_same_with_fused_attention() {
    let device = Default::default();
    let (prefix_lens, suffix_lens, s) = ([5usize, 3, 4], [4usize, 6, 1], 6);
    let suffix: Vec<i64> = (0..3 * s).map(|i| (7 + (i * 13) % 80) as i64).collect();
    for name in MODELS {
        let refs = read_refs(&fixture(name).join("reference.safetensors"));
        let lens = lengths(&refs);
        let run = |packing: bool, fused: bool| {
            let model = load_variant(name, packing, fused);
            let upto = model.num_layers();
            let h = capture_then_suffix(&model, &refs, &lens, &prefix_lens, &suffix, &suffix_lens, s, upto);
            let hd = h.dims()[2];
            let real: Vec<f32> = (0..3 * s).map(|i| if i % s < suffix_lens[i / s] { 1.0 } else { 0.0 }).collect();
            let real = Tensor::<AB, 3>::from_data(TensorData::new(real, [3, s, 1]), &device);
            let w: Vec<f32> = (0..hd).map(|i| ((i * 37) % 23) as f32 / 23.0 - 0.5).collect();
            let w = Tensor::<AB, 3>::from_data(TensorData::new(w, [1, 1, hd]), &device);
            let logits = model.logit_lens(h.clone(), false);
            let lse = (logits.clone() - logits.detach().max_dim(2)).exp().sum_dim(2).log();
            let loss = (h.clone() * w * real.clone()).sum() + (lse * real).sum();
            let grads = loss.backward();
            (h.inner().into_data().to_vec::<f32>().unwrap(), parameter_grads(&model, &grads), hd)
        };
        let (plain, plain_grads, hd) = run(false, false);
        for (packing, fused) in [(false, true), (true, true)] {
            let what = format!("{name} (packing {packing}, fused attention {fused})");
            let (h, grads, _) = run(packing, fused);
            for (r, &len) in suffix_lens.iter().enumerate() {
                for q in 0..len {
                    let at = (r * s + q) * hd;
                    let d = (at..at + hd).map(|i| (h[i] - plain[i]).abs()).fold(0f32, f32::max);
                    assert!(d <= 1e-5, "{what}: row {r} suffix position {q} differs by {d:e}");
                }
            }
            assert_same_grads(&grads, &plain_grads, &what);
        }
        assert!(plain_grads.iter().filter(|g| !g.is_empty()).count() > 5, "{name}: too few gradients");
    }
}

/// Batched generation (right-padded prompts of different lengths in one batch, per-row positions and
/// masks, Gemma's 4-token sliding window, rows dropping out at a stop token or the budget) gives every
/// prompt the tokens it gets alone, greedy and seeded sampling alike; the fixture prompt inside a batch
/// still decodes to transformers' `generate` ids.
#[test]
fn batched_generation_equals_one_prompt_at_a_time() {
    use dft_models::generate::{generate, generate_batch, GenerateConfig, Sampling};
    for name in MODELS {
        let model = load(name);
        let refs = read_refs(&fixture(name).join("reference.safetensors"));
        let prompt: Vec<u32> = refs["gen.prompt"].ids().iter().map(|&x| x as u32).collect();
        let want: Vec<u32> = refs["gen.greedy"].ids().iter().map(|&x| x as u32).collect();
        let synth = |n: usize, k: u32| (0..n as u32).map(|i| (i * 7 + k) % 96).collect::<Vec<u32>>();
        let prompts = vec![prompt.clone(), synth(10, 3), synth(9, 5), synth(8, 11), synth(10, 1), synth(3, 2), vec![5]];
        let n_new = want.len() - prompt.len();
        let plain = GenerateConfig { max_new_tokens: n_new, sampling: Sampling::Greedy, stop_tokens: vec![] };
        let mut seen = 0;
        let got = generate_batch(&model, &prompts, &plain, 16, &mut |k| seen += k).unwrap();
        assert_eq!(seen, prompts.len());
        assert_eq!(got[0].ids, want[prompt.len()..], "{name}: the fixture prompt in a batch vs transformers");
        let sampled = Sampling::Sample { temperature: 0.8, top_k: Some(20), top_p: Some(0.9), seed: 3 };
        for sampling in [Sampling::Greedy, sampled] {
            // Token 7 stops some rows early, the budget the others.
            let cfg = GenerateConfig { max_new_tokens: 12, sampling, stop_tokens: vec![7, 40] };
            let alone: Vec<Vec<u32>> = prompts.iter().map(|p| generate(&model, p, &cfg).unwrap()).collect();
            assert!(alone.iter().all(|ids| !ids.is_empty() && ids.len() <= 12));
            for batch in [2, 16] {
                let many = generate_batch(&model, &prompts, &cfg, batch, &mut |_| {}).unwrap();
                let many: Vec<Vec<u32>> = many.into_iter().map(|g| g.ids).collect();
                assert_eq!(many, alone, "{name}: batch {batch}, {:?}", cfg.sampling);
            }
        }
        // Requests are checked before any work: one bad prompt fails the call.
        let bad = vec![prompt.clone(), vec![]];
        assert!(generate_batch(&model, &bad, &plain, 16, &mut |_| {}).is_err());
    }
}
