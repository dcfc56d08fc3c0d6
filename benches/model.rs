//! SmolLM2-135M on the CPU backend chosen by feature (`flex` default, `--features ndarray`):
//! GGUF load time, forward tokens/s at sequence 256, and one forward+backward of the TFT loss.
//! Prints a Markdown table and writes JSON to target/bench-results/model-<backend>.json.
//!
//! `cargo bench --bench model` / `cargo bench --bench model --no-default-features --features ndarray`
//! (needs the GGUF: scripts/fetch-smollm2.sh or DFT_SMOLLM2_GGUF).
use burn::tensor::{Int, Tensor, TensorData};
use dft_losses::{dft_loss, DftBatch, ObjectiveConfig, Sequences};
use dft_models::load_pretrained;
use std::time::Instant;

use dft_rs::backend::{name as backend_name, Inner, Train as AB};
use dft_test_support::sys::median;

fn main() {
    let path = std::env::var_os("DFT_SMOLLM2_GGUF").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(".cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    if !path.is_file() {
        eprintln!("model bench: {} missing (run scripts/fetch-smollm2.sh)", path.display());
        return;
    }
    let device = Default::default();
    let reps = 3;
    let mut load_s = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let m = load_pretrained::<Inner>(&path, &device).unwrap();
        drop(m);
        load_s.push(t.elapsed().as_secs_f64());
    }
    let model = load_pretrained::<Inner>(&path, &device).unwrap().model;
    let (b, t) = (1usize, 256usize);
    let ids: Vec<i64> = (0..b * t).map(|i| (100 + (i * 7919) % 40000) as i64).collect();
    let input: Tensor<Inner, 2, Int> = Tensor::from_data(TensorData::new(ids.clone(), [b, t]), &device);
    let _ = model.forward(input.clone(), None).into_data(); // warm-up
    let mut fwd_s = Vec::new();
    for _ in 0..reps {
        let t0 = Instant::now();
        let _ = model.forward(input.clone(), None).into_data();
        fwd_s.push(t0.elapsed().as_secs_f64());
    }
    // Forward + backward of the TFT loss: batch 4 × 128 tokens, answer = last 64 tokens.
    let amodel = load_pretrained::<AB>(&path, &device).unwrap().model;
    let (rows, seq) = (4usize, 128usize);
    let input_ids: Vec<u32> = (0..rows * seq).map(|i| (100 + (i * 104729) % 40000) as u32).collect();
    let labels: Vec<i64> =
        input_ids.iter().enumerate().map(|(i, &x)| if i % seq >= 64 { x as i64 } else { -100 }).collect();
    let main = Sequences {
        seq_len: seq,
        input_ids,
        labels,
        lengths: vec![seq; rows],
        prompt_lens: vec![64; rows],
        query_spans: vec![vec![10..50]; rows],
    };
    let batch = DftBatch { main, ..Default::default() };
    let mut fb_s = Vec::new();
    for i in 0..reps + 1 {
        let t0 = Instant::now();
        let out = dft_loss(&amodel, &batch, &ObjectiveConfig::default(), &device).unwrap();
        let _g = out.loss.backward();
        if i > 0 {
            fb_s.push(t0.elapsed().as_secs_f64());
        }
    }
    let (load, fwd, fb) = (median(load_s), median(fwd_s), median(fb_s));
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    println!("| backend | threads | GGUF load (s) | forward b1×256 (s) | forward tok/s | fwd+bwd TFT 4×128 (s) | fwd+bwd tok/s |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {threads} | {load:.3} | {fwd:.3} | {:.0} | {fb:.3} | {:.0} |",
        backend_name(),
        (b * t) as f64 / fwd,
        (rows * seq) as f64 / fb
    );
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-results");
    std::fs::create_dir_all(&dir).ok();
    let json = serde_json::json!({"backend": backend_name(), "threads": threads, "gguf_load_s": load, "forward_s": fwd,
        "forward_tokens_per_s": (b * t) as f64 / fwd, "fwd_bwd_s": fb, "fwd_bwd_tokens_per_s": (rows * seq) as f64 / fb});
    std::fs::write(dir.join(format!("model-{}.json", backend_name())), serde_json::to_string_pretty(&json).unwrap())
        .unwrap();
}
