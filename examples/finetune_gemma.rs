//! DFT fine-tuning of a Gemma-2 checkpoint on Chinese with the bundled en–zh data.
//!
//! ```text
//! cargo run --release --example finetune_gemma -- /path/to/gemma-2-2b      # an HF checkpoint directory
//! cargo run --release --example finetune_gemma                             # a tiny random Gemma-2
//! cargo run --release --features cuda --example finetune_gemma -- PATH     # on the GPU
//! ```
//! Extra arguments after the path are config overrides (`train.max_steps=100`, `method.et=feature`, …).
//! With no path it builds a tiny random Gemma-2 (all Gemma-2 features: softcaps, sliding window,
//! (1+w) norms, GeGLU, tied head) with SmolLM2's tokenizer so the example always runs.

use dft_models::{Activation, Arch, CausalLm, LayerType, ModelConfig};
use dft_train::{train, TrainConfig, TrainHooks};
use std::path::PathBuf;

#[cfg(feature = "cuda")]
type Inner = burn::backend::Cuda;
#[cfg(all(feature = "ndarray", not(feature = "cuda")))]
type Inner = burn::backend::NdArray;
#[cfg(not(any(feature = "cuda", feature = "ndarray")))]
type Inner = burn::backend::Flex;

fn tiny_gemma2(dir: &std::path::Path) -> PathBuf {
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

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let tiny = args.first().is_none_or(|a| a.contains('='));
    let out = PathBuf::from("runs/finetune_gemma");
    let model_path = if tiny { tiny_gemma2(&std::env::temp_dir()) } else { PathBuf::from(args.remove(0)) };
    let header = dft_models::peek_config(&model_path).unwrap_or_else(|e| panic!("{e}"));
    let l = header.num_hidden_layers;
    // Gemma-2-2B has 26 blocks; the paper's choice for LLaMA-2 (2 and 15 of 32) scaled to the depth.
    let (i, j) = if tiny { (1, 2) } else { ((2 * l).div_ceil(32).max(1), (15 * l / 32).max(2)) };
    let mut overrides = vec![
        format!("model.path={:?}", model_path.display().to_string()),
        format!("train.out_dir={:?}", out.display().to_string()),
        "method.name=\"dft\"".into(),
        "method.lc=\"logits\"".into(),
        "method.et=\"logits\"".into(),
        format!("method.lc_layer={i}"),
        format!("method.et_layer={j}"),
        format!("train.max_steps={}", if tiny { 10 } else { 100 }),
        "train.batch_size=2".into(),
        format!("train.lr={}", if tiny { 1e-3 } else { 2e-5 }),
        "data.max_len=256".into(),
        "data.eval_limit=16".into(),
    ];
    overrides.extend(args);
    let cfg = TrainConfig::load(None, &overrides).unwrap_or_else(|e| panic!("{e}"));
    println!("DFT on {} ({} blocks, LC at {i}, ET at {j}) → {}", model_path.display(), l, out.display());
    let hooks = TrainHooks { progress: true, ..Default::default() };
    let s = train::<burn::backend::Autodiff<Inner>>(&cfg, false, &Default::default(), &hooks)
        .unwrap_or_else(|e| panic!("{e}"));
    let ppl = |x: Option<f64>| x.map(|v| format!("{:.2}", v.exp())).unwrap_or_else(|| "n/a".into());
    println!(
        "steps {} in {:.1}s; held-out perplexity {} → {}",
        s.steps,
        s.wall_s,
        ppl(s.eval_loss_before),
        ppl(s.eval_loss_after)
    );
    println!("loss curve {}; exported checkpoint {}", s.plot.display(), s.export_dir.display());
}
