//! One optimisation step's loss forward + backward (no optimizer update) on a SmolLM2-135M-sized model
//! with random weights: TFT alone vs DFT with logits losses (LC at block 2, ET at block 15; with the
//! default shared prompt prefix, and without it) vs DFT with feature losses (same layers). Batch 4,
//! prompts ~60 tokens, answers ~60, x_en ~20.
//!
//! `RAYON_NUM_THREADS=2 cargo bench --bench objective [-- --steps N]`: one warm-up step per objective,
//! then N (default 3) timed steps, interleaved TFT / DFT-logits / DFT-logits without prefix sharing /
//! DFT-feature so that drifting load on the machine hits all of them alike; prints s/step (median) and
//! DFT/TFT, writes `target/bench-results/objective.json`.

mod common;

use burn::backend::{Autodiff, Flex};
use burn::tensor::ElementConversion;
use dft_losses::{dft_loss, AuxLoss, DftBatch, ObjectiveConfig, Sequences, IGNORE_INDEX};
use dft_models::{CausalLm, ModelConfig};
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

#[global_allocator]
static ALLOC: common::CountingAlloc = common::CountingAlloc;

type AB = Autodiff<Flex>;

/// HuggingFaceTB/SmolLM2-135M `config.json` (the fields the decoder reads).
const SMOLLM2_135M: &str = r#"{
  "model_type": "llama", "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
  "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
  "rope_theta": 100000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": true, "hidden_act": "silu",
  "max_position_embeddings": 8192, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2
}"#;

const BATCH: usize = 4;
const LC_LAYER: usize = 2;
const ET_LAYER: usize = 15;

use dft_test_support::rng::SplitMix;
use dft_test_support::sys::median;

/// Right-padded rows `prompt ⊕ continuation`, labels on the continuation only. `query[r]` is the query
/// content span of row r's prompt.
fn sequences(prompts: &[Vec<u32>], conts: &[Vec<u32>], query: &[std::ops::Range<usize>]) -> Sequences {
    let seq_len = prompts.iter().zip(conts).map(|(p, c)| p.len() + c.len()).max().unwrap();
    let mut s = Sequences { seq_len, ..Default::default() };
    for ((p, c), q) in prompts.iter().zip(conts).zip(query) {
        let len = p.len() + c.len();
        s.input_ids.extend(p.iter().chain(c).copied().chain(std::iter::repeat_n(2, seq_len - len)));
        s.labels.extend(
            std::iter::repeat_n(IGNORE_INDEX, p.len())
                .chain(c.iter().map(|&t| t as i64))
                .chain(std::iter::repeat_n(IGNORE_INDEX, seq_len - len)),
        );
        s.lengths.push(len);
        s.prompt_lens.push(p.len());
        s.query_spans.push(vec![q.clone()]);
    }
    s
}

/// Prompts P(x) = 12 template tokens + query content + 8 template tokens; `content` tokens of query.
fn prompt(rng: &mut SplitMix, content: usize, vocab: usize) -> (Vec<u32>, std::ops::Range<usize>) {
    let ids = rng.ids(12 + content + 8, vocab);
    (ids, 12..12 + content)
}

fn batch(vocab: usize, seed: u64) -> DftBatch {
    let mut rng = SplitMix(seed);
    let (mut p_tgt, mut q_tgt, mut y_tgt, mut x_en, mut y_en, mut p_en, mut q_en) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..BATCH {
        // Target-language prompt ~60 tokens (query content ~40), answer ~60.
        let content = rng.around(40, 8);
        let (p, q) = prompt(&mut rng, content, vocab);
        p_tgt.push(p);
        q_tgt.push(q);
        let answer = rng.around(60, 15);
        y_tgt.push(rng.ids(answer, vocab));
        // English instruction x_en ~20 tokens (+ EOS), English answer ~60, English prompt P(x_en) ~55.
        let en = rng.around(20, 4);
        x_en.push(rng.ids(en + 1, vocab));
        let answer_en = rng.around(60, 15);
        y_en.push(rng.ids(answer_en, vocab));
        let content_en = en + rng.around(15, 5);
        let (p, q) = prompt(&mut rng, content_en, vocab);
        p_en.push(p);
        q_en.push(q);
    }
    let no_cont = vec![Vec::new(); BATCH];
    DftBatch {
        main: sequences(&p_tgt, &y_tgt, &q_tgt),
        lc: Some(sequences(&p_tgt, &x_en, &q_tgt)),
        et: Some(sequences(&p_tgt, &y_en, &q_tgt)),
        en_prompt: Some(sequences(&p_en, &no_cont, &q_en)),
    }
}

fn padded_tokens(s: &Sequences) -> usize {
    s.rows() * s.seq_len
}

/// Padded tokens after the prompt (what a shared-prefix LC/ET pass runs).
fn padded_suffix(s: &Sequences) -> usize {
    s.rows() * (0..s.rows()).map(|r| s.lengths[r] - s.prompt_lens[r]).max().unwrap_or(0)
}

struct Step {
    fwd_s: f64,
    bwd_s: f64,
    peak_bytes: usize,
    loss: f64,
}

fn step(model: &CausalLm<AB>, batch: &DftBatch, cfg: &ObjectiveConfig) -> Step {
    let device = Default::default();
    common::reset_peak();
    let base = common::current();
    let t0 = Instant::now();
    let out = dft_loss(model, batch, cfg, &device).expect("objective");
    let fwd_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let grads = out.loss.backward();
    let bwd_s = t1.elapsed().as_secs_f64();
    black_box(&grads);
    drop(grads);
    let peak_bytes = common::peak() - base;
    Step { fwd_s, bwd_s, peak_bytes, loss: out.loss.into_scalar().elem::<f64>() }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let steps: usize = args
        .iter()
        .position(|a| a == "--steps")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let t_start = Instant::now();
    let device = Default::default();
    let config = ModelConfig::from_hf_json_str(SMOLLM2_135M, Path::new("<SmolLM2-135M>")).expect("config");
    let layers = config.num_hidden_layers;
    let vocab = config.vocab_size;
    let model = CausalLm::<AB>::random(config, 42, &device).expect("random model");
    let batch = batch(vocab, 2024);
    let objectives: Vec<(&str, ObjectiveConfig)> = vec![
        ("TFT", ObjectiveConfig::default()),
        (
            "DFT-logits",
            ObjectiveConfig {
                lc: AuxLoss::Logits,
                et: AuxLoss::Logits,
                lc_layer: LC_LAYER,
                et_layer: ET_LAYER,
                ..Default::default()
            },
        ),
        (
            "DFT-logits, prefix not shared",
            ObjectiveConfig {
                lc: AuxLoss::Logits,
                et: AuxLoss::Logits,
                lc_layer: LC_LAYER,
                et_layer: ET_LAYER,
                share_prefix: false,
                ..Default::default()
            },
        ),
        (
            "DFT-feature",
            ObjectiveConfig {
                lc: AuxLoss::Feature,
                et: AuxLoss::Feature,
                lc_layer: LC_LAYER,
                et_layer: ET_LAYER,
                ..Default::default()
            },
        ),
    ];
    let (m, lc, et, en) =
        (&batch.main, batch.lc.as_ref().unwrap(), batch.et.as_ref().unwrap(), batch.en_prompt.as_ref().unwrap());
    // Work model in padded token × block units (attention and the CE heads aside).
    let main_work = padded_tokens(m) * layers;
    let logits_work = main_work + padded_suffix(lc) * LC_LAYER + padded_suffix(et) * ET_LAYER;
    let unshared_work = main_work + padded_tokens(lc) * LC_LAYER + padded_tokens(et) * ET_LAYER;
    let feature_work = main_work + padded_tokens(en) * layers;
    let works = [main_work, logits_work, unshared_work, feature_work];
    println!(
        "SmolLM2-135M config, random weights; batch {BATCH}: main {}×{} ({} labelled), LC {}×{} ({} labelled), \
         ET {}×{} ({} labelled), P(x_en) {}×{}",
        m.rows(),
        m.seq_len,
        m.labelled_positions().1.len(),
        lc.rows(),
        lc.seq_len,
        lc.labelled_positions().1.len(),
        et.rows(),
        et.seq_len,
        et.labelled_positions().1.len(),
        en.rows(),
        en.seq_len
    );
    println!("machine: {}", common::machine());
    println!(
        "token×block work relative to TFT: DFT-logits {:.2} (prefix not shared {:.2}), DFT-feature {:.2}",
        logits_work as f64 / main_work as f64,
        unshared_work as f64 / main_work as f64,
        feature_work as f64 / main_work as f64
    );

    // Warm-up, then interleaved timed steps.
    let mut results: Vec<Vec<Step>> = objectives.iter().map(|_| Vec::new()).collect();
    for (name, cfg) in &objectives {
        let s = step(&model, &batch, cfg);
        println!("warm-up {name}: {:.2} s (loss {:.4})", s.fwd_s + s.bwd_s, s.loss);
    }
    for k in 0..steps {
        for (i, (name, cfg)) in objectives.iter().enumerate() {
            let s = step(&model, &batch, cfg);
            println!(
                "step {k} {name}: fwd {:.2} s, bwd {:.2} s, peak {:.0} MiB",
                s.fwd_s,
                s.bwd_s,
                s.peak_bytes as f64 / common::MIB
            );
            results[i].push(s);
        }
    }

    let tft = median(results[0].iter().map(|s| s.fwd_s + s.bwd_s).collect());
    let mut md = String::from(
        "| objective | s/step (median) | fwd s | bwd s | min–max s | peak MiB | ratio to TFT | token×block work ratio |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut rows = Vec::new();
    for (i, (name, cfg)) in objectives.iter().enumerate() {
        let r = &results[i];
        let tot: Vec<f64> = r.iter().map(|s| s.fwd_s + s.bwd_s).collect();
        let med = median(tot.clone());
        let fwd = median(r.iter().map(|s| s.fwd_s).collect());
        let bwd = median(r.iter().map(|s| s.bwd_s).collect());
        let (lo, hi) = tot.iter().fold((f64::INFINITY, 0f64), |(lo, hi), &t| (lo.min(t), hi.max(t)));
        let peak = r.iter().map(|s| s.peak_bytes).max().unwrap_or(0);
        let work = works[i] as f64 / main_work as f64;
        md += &format!(
            "| {name} | {med:.2} | {fwd:.2} | {bwd:.2} | {lo:.2}–{hi:.2} | {:.0} | {:.2} | {work:.2} |\n",
            peak as f64 / common::MIB,
            med / tft
        );
        rows.push(serde_json::json!({
            "objective": name, "lc": format!("{:?}", cfg.lc), "et": format!("{:?}", cfg.et),
            "lc_layer": cfg.lc_layer, "et_layer": cfg.et_layer, "share_prefix": cfg.share_prefix,
            "s_per_step_median": med, "fwd_s_median": fwd, "bwd_s_median": bwd,
            "steps_s": tot, "peak_bytes": peak, "ratio_to_tft": med / tft, "work_ratio": work,
            "loss": r.last().map(|s| s.loss),
        }));
    }
    println!("\n{md}");
    let total = t_start.elapsed().as_secs_f64();
    println!("(total {total:.0} s)");
    let json = serde_json::json!({
        "bench": "objective",
        "what": "loss forward + backward of one step (no optimizer), SmolLM2-135M config, random weights, f32, Flex",
        "batch": BATCH, "lc_layer": LC_LAYER, "et_layer": ET_LAYER, "timed_steps": steps,
        "shapes": {
            "main": [m.rows(), m.seq_len], "lc": [lc.rows(), lc.seq_len], "et": [et.rows(), et.seq_len],
            "en_prompt": [en.rows(), en.seq_len],
            "labelled": {
                "main": m.labelled_positions().1.len(),
                "lc": lc.labelled_positions().1.len(),
                "et": et.labelled_positions().1.len(),
            },
        },
        "machine": common::machine(),
        "total_s": total,
        "results": rows,
        "markdown": md,
    });
    let path = common::results_dir().join("objective.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).expect("write results");
    println!("wrote {}", path.display());
}
