//! GPU checks of issue 8, generic over the backend (CUDA with `--features cuda`, else the CPU backend):
//!
//! ```text
//! cargo run --release --features cuda --example gpu_check -- parity --dtype f32    # or bf16
//! cargo run --release --features cuda --example gpu_check -- step --model gemma2-2b --batch 4 --seq 512
//! cargo run --release --features cuda --example gpu_check -- step --model smollm2 --batch 16 --dtype bf16
//! ```
//! `scripts/gpu-check.sh` runs all of them. The same binary runs on the CPU (`cargo run --release
//! --example gpu_check -- parity --dtype bf16` uses Flex with bf16 as its default float type), which is
//! how the tolerances below were calibrated.
//!
//! `parity`: the committed fixtures of the model and objective tests, on this backend —
//! - `crates/dft-models/tests/fixtures/tiny-{llama,gqa-llama,gemma2}`: every block's hidden state and the
//!   logits against transformers (eager, f32) on right-padded batches (what `tests/parity.rs` checks);
//! - `tests/fixtures/objective/{llama,gemma2}`: every loss component of every case of the DFT objective and
//!   the gradients of three parameters against PyTorch autograd (what `tests/objective_oracle.rs` checks).
//!
//! Tolerances: f32 — max |Δ| ≤ 1e-4 on hidden states and logits, |Δ| ≤ 1e-4·max(1, |ref|) on losses,
//! relative L2 ≤ 1e-4 on gradients (the CPU tests' bounds). bf16 (weights and activations in bf16, 8-bit
//! mantissa, unit roundoff 2^-9 ≈ 2e-3) — relative L2 ≤ 3e-2 per hidden state / logits tensor,
//! |Δ| ≤ 3e-2·max(1, |ref|) on losses, relative L2 ≤ 1e-1 on gradients. Exits non-zero on any failure.
//!
//! `step`: one DFT optimiser step (objective + backward + clipping + AdamW, as `dft train`) on a synthetic
//! batch (random ids, TFT rows ≈ `--seq` tokens: prompt ≈ seq/4 + answer; LC, ET and English-prompt rows as
//! in real data) with SmolLM2-135M (real weights if the GGUF is present, else random) or Gemma-2-2B
//! (real config, random weights generated on the device). Warm-up steps then the median of `--steps`;
//! prints s/step, real TFT tokens/s, the FLOP estimate (see `dft_step_flops`) and MFU against the peak
//! of an H100/H200 SXM (dense: bf16 989.4 TFLOP/s, TF32 494.7, FP32 66.9 — the H200 has the H100's
//! compute), and one `RESULT {json}` line.

use dft_test_support::step as dft_step;

use burn::module::Module;
use burn::optim::AdamWConfig;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use dft_losses::{dft_loss, AuxLoss, DftBatch, ObjectiveConfig, Pooling};
use dft_models::{load_pretrained, CausalLm, ModelConfig};
use dft_step::{LossPath, Method};
use dft_test_support::refs::{diffs, read_refs, to_f32};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

use dft_rs::backend::{name as backend_name, Inner, InnerBf16};

/// Peak dense throughput of an H100 SXM (and H200, same compute), FLOP/s.
const PEAK_BF16: f64 = 989.4e12;
const PEAK_TF32: f64 = 494.7e12;
const PEAK_FP32: f64 = 66.9e12;

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|s| s.parse().ok())
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Precision {
    F32,
    Bf16,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cmd = args.get(1).map(String::as_str).unwrap_or("");
    let precision = match arg::<String>(&args, "--dtype").as_deref() {
        None | Some("f32") => Precision::F32,
        Some("bf16") => Precision::Bf16,
        Some(other) => fail(format!("--dtype f32|bf16, not {other}")),
    };
    let ok = match (cmd, precision) {
        ("parity", Precision::F32) => parity::<Inner>(precision),
        ("parity", Precision::Bf16) => {
            bf16_default::<InnerBf16>();
            parity::<InnerBf16>(precision)
        }
        ("step", Precision::F32) => step::<burn::backend::Autodiff<Inner>>(&args, precision),
        ("step", Precision::Bf16) => {
            bf16_default::<InnerBf16>();
            step::<burn::backend::Autodiff<InnerBf16>>(&args, precision)
        }
        _ => fail("usage: gpu_check parity [--dtype f32|bf16] | step [--model smollm2|gemma2-2b] [--batch N] [--seq T] [--steps K] [--warmup W] [--method dft-logits|tft|dft-feature] [--dtype f32|bf16]"),
    };
    if !ok {
        eprintln!("gpu_check {cmd}: FAILED");
        std::process::exit(1);
    }
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("gpu_check: {msg}");
    std::process::exit(2)
}

/// Make bf16 the default float type of the device before any tensor exists (on `Cuda<bf16>` it already is;
/// on Flex this is what turns the CPU run into a bf16 run).
fn bf16_default<B: Backend>() {
    use burn::tensor::{DType, Element, FloatDType};
    let device: B::Device = Default::default();
    let int = <B::IntElem as Element>::dtype();
    if let Err(e) = burn::tensor::set_default_dtypes::<B>(&device, DType::BF16, int) {
        if burn::tensor::get_device_settings::<B>(&device).float_dtype != FloatDType::BF16 {
            fail(format!("cannot make bf16 the default float type: {e}"));
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Parity.

fn parity<B: Backend>(precision: Precision) -> bool {
    let device: B::Device = Default::default();
    let (f32_tol, bf16_rel) = (1e-4, 3e-2);
    let within = |max: f64, rel: f64| match precision {
        Precision::F32 => max <= f32_tol,
        Precision::Bf16 => rel <= bf16_rel,
    };
    let mut ok = true;
    let mut worst = (0f64, 0f64);
    println!("== model parity on {} ({precision:?}) ==", backend_name());
    for name in ["tiny-llama", "tiny-gqa-llama", "tiny-gemma2"] {
        let dir = root().join("crates/dft-models/tests/fixtures").join(name);
        let model = load_pretrained::<B>(&dir, &device).unwrap_or_else(|e| fail(format!("{name}: {e}"))).model;
        let refs = read_refs(&dir.join("reference.safetensors"));
        let m = &refs["attention_mask"];
        let (b, t) = (m.shape[0], m.shape[1]);
        let lens: Vec<usize> = (0..b).map(|r| (0..t).filter(|&c| m.data[r * t + c] > 0.5).count()).collect();
        let ids: Vec<i64> = refs["input_ids"].data.iter().map(|&x| x as i64).collect();
        let ids: Tensor<B, 2, Int> = Tensor::from_data(TensorData::new(ids, [b, t]), &device);
        let valid = |h: usize| {
            let lens = lens.clone();
            move |i: usize| (i / h) % t < lens[i / (t * h)]
        };
        let states = model.all_hidden_states(ids.clone(), Some(&lens));
        let mut line = format!("{name}:");
        for (k, h) in states.into_iter().enumerate() {
            let r = &refs[&format!("hidden.{k}")];
            let (max, rel) = diffs(&to_f32(h), &r.data, valid(r.shape[2]));
            worst = (worst.0.max(max), worst.1.max(rel));
            if !within(max, rel) {
                ok = false;
                println!("  FAIL {name}: hidden state of block {k}: max |Δ| {max:.3e}, rel L2 {rel:.3e}");
            }
            if k == 0 || k + 1 == refs.keys().filter(|n| n.starts_with("hidden.")).count() {
                line += &format!(" h{k} {max:.1e}/{rel:.1e}");
            }
        }
        let r = &refs["logits"];
        let (max, rel) = diffs(&to_f32(model.forward(ids, Some(&lens))), &r.data, valid(r.shape[2]));
        worst = (worst.0.max(max), worst.1.max(rel));
        if !within(max, rel) {
            ok = false;
            println!("  FAIL {name}: logits: max |Δ| {max:.3e}, rel L2 {rel:.3e}");
        }
        println!("{line} logits {max:.1e}/{rel:.1e} (max |Δ| / rel L2)");
    }
    println!(
        "model parity: worst max |Δ| {:.3e}, worst rel L2 {:.3e} (bound: {})",
        worst.0,
        worst.1,
        if precision == Precision::F32 { "max |Δ| ≤ 1e-4" } else { "rel L2 ≤ 3e-2" }
    );
    let obj = objective_parity::<burn::backend::Autodiff<B>>(precision);
    let passed = ok && obj;
    println!(
        "RESULT {}",
        json!({"check": "parity", "backend": backend_name(), "dtype": format!("{precision:?}"), "model_ok": ok,
               "objective_ok": obj, "worst_max_abs": worst.0, "worst_rel_l2": worst.1, "passed": passed})
    );
    passed
}

fn aux(s: &str) -> AuxLoss {
    match s {
        "off" => AuxLoss::Off,
        "logits" => AuxLoss::Logits,
        "feature" => AuxLoss::Feature,
        other => panic!("{other}"),
    }
}

/// Gradient of an HF-named parameter in HF layout.
fn grad_of<B: AutodiffBackend>(model: &CausalLm<B>, grads: &B::Gradients, name: &str) -> Option<Vec<f32>> {
    let get2 = |t: Tensor<B, 2>, transpose: bool| {
        t.grad(grads).map(|g| to_f32::<B::InnerBackend, 2>(if transpose { g.transpose() } else { g }))
    };
    match name {
        "model.embed_tokens.weight" => get2(model.embed_tokens.val(), false),
        "model.layers.0.self_attn.q_proj.weight" => get2(model.layers[0].self_attn.q_proj.weight.val(), true),
        "model.layers.1.mlp.down_proj.weight" => get2(model.layers[1].mlp.down_proj.weight.val(), true),
        other => panic!("{other}"),
    }
}

fn objective_parity<B: AutodiffBackend>(precision: Precision) -> bool {
    let device: B::Device = Default::default();
    let dir = root().join("tests/fixtures/objective");
    let seqs: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("sequences.json")).unwrap()).unwrap();
    let (loss_tol, grad_tol) = match precision {
        Precision::F32 => (1e-4, 1e-4),
        Precision::Bf16 => (3e-2, 1e-1),
    };
    let mut ok = true;
    let (mut worst_loss, mut worst_grad) = (0f64, 0f64);
    println!("== objective parity ({precision:?}) ==");
    for model_name in ["llama", "gemma2"] {
        let model = load_pretrained::<B>(&dir.join(model_name), &device).unwrap().model;
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(model_name).join("expected.json")).unwrap())
                .unwrap();
        let grads_ref = read_refs(&dir.join(model_name).join("grads.safetensors"));
        for (case, exp) in expected.as_object().unwrap() {
            let c = &exp["config"];
            let cfg = ObjectiveConfig {
                lc: aux(c["lc"].as_str().unwrap()),
                et: aux(c["et"].as_str().unwrap()),
                lc_layer: c["lc_layer"].as_u64().unwrap() as usize,
                et_layer: c["et_layer"].as_u64().unwrap() as usize,
                alpha: c["alpha"].as_f64().unwrap(),
                beta: c["beta"].as_f64().unwrap(),
                pooling: serde_json::from_value::<Pooling>(c["pooling"].clone()).unwrap(),
                english_stop_grad: c["english_stop_grad"].as_bool().unwrap(),
                ..Default::default()
            };
            let mut main = dft_step::seqs_from_json(&seqs[c["main"].as_str().unwrap()]);
            if !c["main_labelled"].as_bool().unwrap() {
                main.labels.iter_mut().for_each(|l| *l = -100);
            }
            let batch = DftBatch {
                main,
                lc: Some(dft_step::seqs_from_json(&seqs["lc"])),
                et: Some(dft_step::seqs_from_json(&seqs["et"])),
                en_prompt: Some(dft_step::seqs_from_json(&seqs["en_prompt"])),
            };
            let out = dft_loss(&model, &batch, &cfg, &device).unwrap_or_else(|e| fail(format!("{case}: {e}")));
            let e = &exp["components"];
            let comps = &out.components;
            for (k, ours) in
                [("main", Some(comps.main)), ("lc", comps.lc), ("et", comps.et), ("total", Some(comps.total))]
            {
                let want = e[k].as_f64();
                match (ours, want) {
                    (Some(o), Some(w)) => {
                        let d = (o - w).abs() / w.abs().max(1.0);
                        worst_loss = worst_loss.max(d);
                        if d > loss_tol {
                            ok = false;
                            println!("  FAIL {model_name}/{case} {k}: {o} vs {w}");
                        }
                    }
                    (None, None) => {}
                    _ => {
                        ok = false;
                        println!("  FAIL {model_name}/{case} {k}: {ours:?} vs {want:?}");
                    }
                }
            }
            let grads = out.loss.backward();
            for p in [
                "model.embed_tokens.weight",
                "model.layers.0.self_attn.q_proj.weight",
                "model.layers.1.mlp.down_proj.weight",
            ] {
                let Some(r) = grads_ref.get(&format!("{case}/{p}")) else { continue };
                let norm: f64 = r.data.iter().map(|x| x * x).sum::<f64>().sqrt();
                match grad_of(&model, &grads, p) {
                    Some(g) if norm > 0.0 => {
                        let (_, rel) = diffs(&g, &r.data, |_| true);
                        worst_grad = worst_grad.max(rel);
                        if rel > grad_tol {
                            ok = false;
                            println!("  FAIL {model_name}/{case} ∂L/∂{p}: rel L2 {rel:.3e}");
                        }
                    }
                    Some(g) => {
                        if g.iter().any(|&x| x != 0.0) {
                            ok = false;
                            println!("  FAIL {model_name}/{case} ∂L/∂{p} must be zero");
                        }
                    }
                    None if norm == 0.0 => {}
                    None => {
                        ok = false;
                        println!("  FAIL {model_name}/{case} ∂L/∂{p}: no gradient");
                    }
                }
            }
        }
    }
    println!(
        "objective parity: worst loss |Δ|/max(1,|ref|) {worst_loss:.3e} (bound {loss_tol:e}), worst gradient rel L2 {worst_grad:.3e} (bound {grad_tol:e}){}",
        if ok { "" } else { " — FAILED" }
    );
    ok
}

// ---------------------------------------------------------------------------------------------------
// Step timing.

fn step<B: AutodiffBackend>(args: &[String], precision: Precision) -> bool {
    let device: B::Device = Default::default();
    let which = arg::<String>(args, "--model").unwrap_or_else(|| "smollm2".into());
    let rows: usize = arg(args, "--batch").unwrap_or(8);
    let seq: usize = arg(args, "--seq").unwrap_or(512);
    let steps: usize = arg(args, "--steps").unwrap_or(5);
    let warmup: usize = arg(args, "--warmup").unwrap_or(2);
    let method = Method::parse(&arg::<String>(args, "--method").unwrap_or_else(|| "dft-logits".into()))
        .unwrap_or_else(|| fail("--method tft|dft-logits|dft-feature"));
    let t = Instant::now();
    let (model, weights): (CausalLm<B>, &str) = match which.as_str() {
        "smollm2" => {
            let gguf = dft_models::embedded::smollm2_gguf_path();
            if gguf.is_file() {
                (load_pretrained::<B>(&gguf, &device).unwrap().model, "GGUF")
            } else {
                let cfg = ModelConfig::from_hf_json_str(dft_step::SMOLLM2_135M, Path::new("<SmolLM2-135M>")).unwrap();
                (dft_step::random_on_device::<B>(cfg, &device), "random")
            }
        }
        "gemma2-2b" => {
            let cfg = ModelConfig::from_hf_json_str(dft_step::GEMMA2_2B, Path::new("<gemma-2-2b>")).unwrap();
            (dft_step::random_on_device::<B>(cfg, &device), "random")
        }
        "llama2-7b" => {
            let cfg = ModelConfig::from_hf_json_file(&root().join("configs/models/llama-2-7b.json")).unwrap();
            (dft_step::random_on_device::<B>(cfg, &device), "random")
        }
        other => fail(format!("--model smollm2|gemma2-2b|llama2-7b, not {other}")),
    };
    // `--mixed`: train.precision = "bf16-mixed" (f32 weights, bf16 products); `--lora R`: LoRA adapters
    // (alpha 2R) on every projection, base frozen — stored in bf16 with --mixed, as `dft train` does.
    let mixed = args.iter().any(|a| a == "--mixed");
    let lora: Option<usize> = arg(args, "--lora");
    let mut model = model;
    if mixed {
        model = model.with_precision(dft_models::Precision::Bf16Mixed);
    }
    if let Some(r) = lora {
        let spec = dft_models::LoraSpec { rank: r, alpha: 2.0 * r as f64, ..Default::default() };
        model = model.with_lora(&spec, 0).unwrap_or_else(|e| fail(e));
        if mixed {
            model = model.with_frozen_base_dtype(burn::tensor::FloatDType::BF16);
        }
    }
    let model = model;
    B::sync(&device).expect("sync");
    let load_s = t.elapsed().as_secs_f64();
    let config = model.config.clone();
    let l = config.num_hidden_layers;
    // LC / ET at the paper's LLaMA-2 blocks (2 and 15 of 32) scaled to the depth: SmolLM2 (30) → 2, 15
    // (METHOD.md §8); Gemma-2-2B (26) → 2, 12 (as examples/finetune_gemma.rs).
    let (i, j) = if which == "smollm2" || which == "llama2-7b" {
        (2, 15)
    } else {
        ((2 * l).div_ceil(32).max(1), (15 * l / 32).max(2))
    };
    let w = if method == Method::DftFeature { 1.0 } else { 0.1 };
    let cfg = method.objective(i, j, w, w);
    let pad = config.pad_token_id.unwrap_or(0);
    let batch = method.select(&dft_step::synthetic_batch(rows, seq, config.vocab_size, pad, 7));
    let params = model.num_params();
    let (trainable, _) = model.parameter_counts();
    eprintln!("  {which}: {params} parameters, {trainable} trainable{}", if mixed { ", bf16-mixed" } else { "" });
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init::<B, CausalLm<B>>();
    let mut model = model;
    let mut times = Vec::new();
    let mut last = None;
    for s in 0..warmup + steps {
        let (m, rep) = dft_step::optimiser_step(model, &mut optim, &batch, &cfg, LossPath::Default, 1e-5, 1.0, &device);
        model = m;
        eprintln!(
            "  {which} {} step {s}{}: {:.3} s (loss {:.3}, bwd {:.3}, optim {:.3}) | loss {:.4}",
            method.name(),
            if s < warmup { " (warm-up)" } else { "" },
            rep.total_s(),
            rep.loss_s,
            rep.backward_s,
            rep.optim_s,
            rep.components.total
        );
        if s >= warmup {
            times.push(rep.total_s());
        }
        last = Some(rep);
    }
    let med = dft_step::median(times.clone());
    let (flops, parts) = dft_step::dft_step_flops(&config, &batch, &cfg);
    let main_real = dft_step::real_tokens(&batch.main);
    let tok_s = main_real as f64 / med;
    let achieved = flops / med;
    let (peak, peak_name) = match precision {
        _ if mixed => (PEAK_BF16, "bf16 dense 989.4 TFLOP/s"),
        Precision::Bf16 => (PEAK_BF16, "bf16 dense 989.4 TFLOP/s"),
        Precision::F32 => (PEAK_TF32, "TF32 dense 494.7 TFLOP/s"),
    };
    // The classic 6·N·D estimate (N = all parameters minus the embedding lookup, D = TFT tokens), for
    // comparison with the detailed count.
    let n_nonembed = params - config.vocab_size * config.hidden_size * usize::from(!config.tie_word_embeddings);
    let classic = 6.0 * n_nonembed as f64 * main_real as f64;
    let finite = last.as_ref().is_some_and(|r| r.components.total.is_finite());
    println!(
        "{which} ({weights} weights, {params} params, {} blocks), {} {precision:?}, batch {}: TFT {}×{} ({} real tokens), LC/ET at {i}/{j}",
        l,
        method.name(),
        rows,
        batch.main.rows(),
        batch.main.seq_len,
        main_real
    );
    println!(
        "  {med:.3} s/step (median of {steps}; min {:.3}) | {tok_s:.0} TFT tokens/s | load {load_s:.1} s",
        times.iter().copied().fold(f64::INFINITY, f64::min)
    );
    println!(
        "  FLOPs/step {:.3e} (detailed: 6·P_block per token-block + 12·heads·head_dim·ctx attention + head; 6·N·D = {:.3e})",
        flops, classic
    );
    println!(
        "  achieved {:.1} TFLOP/s | MFU {:.1}% of {peak_name}{}",
        achieved / 1e12,
        100.0 * achieved / peak,
        if precision == Precision::F32 {
            format!(" ({:.1}% of FP32 non-tensor-core 66.9 TFLOP/s)", 100.0 * achieved / PEAK_FP32)
        } else {
            String::new()
        }
    );
    println!(
        "RESULT {}",
        json!({"check": "step", "backend": backend_name(), "model": which, "bf16_mixed": mixed, "lora_rank": lora,
               "trainable_params": model.parameter_counts().0, "weights": weights, "params": params,
               "method": method.name(), "dtype": format!("{precision:?}"), "batch": rows, "seq": seq,
               "shapes": dft_step::shapes(&batch), "lc_layer": i, "et_layer": j, "s_per_step": med, "steps_s": times,
               "tft_tokens_per_s": tok_s, "flops_per_step": flops, "flops_parts": parts, "six_n_d": classic,
               "achieved_tflops": achieved / 1e12, "mfu": achieved / peak, "peak": peak_name,
               "peaks_assumed": {"bf16": PEAK_BF16, "tf32": PEAK_TF32, "fp32": PEAK_FP32, "card": "H100 SXM / H200"},
               "final_loss_finite": finite})
    );
    finite
}
