//! Lens entropies on the tiny reference models of dft-models (Llama with GQA and tied embeddings, and
//! Gemma-2 with softcaps and a sliding window): batched, right-padded, chunked results equal a one-input-
//! at-a-time f64 reference, and block L equals the entropy of the model's own final logits.
use burn::tensor::{Int, Tensor, TensorData};
use dft_layers_select::{lens_entropies, lens_last_position_mass, LensOptions};
use dft_models::{load_pretrained, CausalLm};
use std::path::PathBuf;

type B = burn::backend::Flex;

fn tiny(name: &str) -> CausalLm<B> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dft-models/tests/fixtures").join(name);
    load_pretrained::<B>(&dir, &Default::default()).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).model
}

fn inputs(vocab: usize) -> Vec<Vec<u32>> {
    let mut x = 12345u64;
    [11usize, 5, 8, 1, 9]
        .iter()
        .map(|&n| {
            (0..n)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (3 + (x >> 33) % (vocab as u64 - 3)) as u32
                })
                .collect()
        })
        .collect()
}

/// −Σ p ln p per row of `[rows, v]` f32 logits, in f64.
fn host_entropy(z: &[f32], v: usize) -> Vec<f64> {
    z.chunks(v)
        .map(|r| {
            let m = r.iter().fold(f64::NEG_INFINITY, |a, &x| a.max(x as f64));
            let s: f64 = r.iter().map(|&x| (x as f64 - m).exp()).sum();
            r.iter().map(|&x| (x as f64 - m).exp() / s).filter(|&p| p > 0.0).map(|p| -p * p.ln()).sum()
        })
        .collect()
}

fn ids_tensor(ids: &[u32]) -> Tensor<B, 2, Int> {
    let v: Vec<i64> = ids.iter().map(|&x| x as i64).collect();
    Tensor::from_data(TensorData::new(v, [1, ids.len()]), &Default::default())
}

fn to_vec<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

#[test]
fn batched_entropies_match_unbatched_reference_and_final_logits() {
    for name in ["tiny-gqa-llama", "tiny-llama", "tiny-gemma2"] {
        let model = tiny(name);
        let v = model.config.vocab_size;
        let xs = inputs(v);
        // Batches of 2 with padding, and chunks of 3 rows so chunk boundaries fall inside sequences.
        let opts = LensOptions { batch_size: 2, max_chunk_logits: 3 * v, pad_id: 0 };
        let got = lens_entropies(&model, &xs, &opts).unwrap();
        assert_eq!(got.num_points(), model.num_layers() + 1);
        assert_eq!(got.num_tokens(), xs.iter().map(Vec::len).sum::<usize>());
        let mut worst = 0f64;
        for (s, x) in xs.iter().enumerate() {
            let states = model.all_hidden_states(ids_tensor(x), None);
            for (k, h) in states.into_iter().enumerate() {
                let want = host_entropy(&to_vec(model.logit_lens(h, true)), v);
                for (p, (&g, w)) in got.input(k, s).iter().zip(&want).enumerate() {
                    let d = (g as f64 - w).abs();
                    worst = worst.max(d);
                    assert!(d < 1e-4, "{name}: input {s} block {k} position {p}: {g} vs {w}");
                }
            }
            // Block L is the model's own prediction: same entropy as softmax of forward() logits.
            let logits = host_entropy(&to_vec(model.forward(ids_tensor(x), None)), v);
            let top = got.input(model.num_layers(), s);
            for (p, (&g, w)) in top.iter().zip(&logits).enumerate() {
                assert!((g as f64 - w).abs() < 1e-4, "{name}: input {s} position {p}: block L {g} vs logits {w}");
            }
        }
        // Not degenerate: above block 0 the lens distributions are neither uniform nor one-hot.
        let curve = got.curve();
        let means = curve.means();
        assert!(means[1..].iter().all(|&m| m > 0.01 && m < (v as f64).ln() - 0.01), "{name}: {means:?}");
        assert_eq!(curve.layers[0].last.n, xs.len());
        eprintln!("{name}: max |batched − reference| = {worst:.2e}");
        // Order of the batches does not matter.
        let one = lens_entropies(&model, &xs, &LensOptions { batch_size: 1, ..opts }).unwrap();
        for k in 0..got.num_points() {
            for (a, b) in got.nats[k].iter().zip(&one.nats[k]) {
                assert!((a - b).abs() < 1e-4);
            }
        }
    }
}

#[test]
fn last_position_mass_is_a_probability() {
    let model = tiny("tiny-gqa-llama");
    let v = model.config.vocab_size as u32;
    let xs = inputs(v as usize);
    let all: Vec<u32> = (0..v).collect();
    let sets: Vec<Vec<Vec<u32>>> = xs.iter().map(|_| vec![all.clone(), vec![5, 6], vec![]]).collect();
    let mass =
        lens_last_position_mass(&model, &xs, &sets, &LensOptions { batch_size: 2, ..Default::default() }).unwrap();
    assert_eq!(mass.len(), model.num_layers() + 1);
    for (k, per_input) in mass.iter().enumerate() {
        for (s, m) in per_input.iter().enumerate() {
            assert!((m[0] - 1.0).abs() < 1e-4, "block {k} input {s}: total mass {}", m[0]);
            assert!(m[1] > 0.0 && m[1] < 1.0);
            assert_eq!(m[2], 0.0);
        }
    }
}

#[test]
fn empty_input_is_an_error() {
    let model = tiny("tiny-gqa-llama");
    let e = lens_entropies(&model, &[vec![5, 6], vec![]], &LensOptions::default()).unwrap_err();
    assert_eq!(e.to_string(), "input 1 (lens input) has no tokens");
}
