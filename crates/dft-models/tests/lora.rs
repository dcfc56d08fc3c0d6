//! LoRA against Hugging Face PEFT (tools/oracle/lora_fixtures.py): for a tiny Llama (untied head) and a
//! tiny Gemma-2 (tied head, GQA, softcaps, sliding window), with PEFT's adapters loaded into dft-rs:
//! logits, the loss, the gradients of every `A`, `B` and module to save, merged logits; and what dft-rs
//! saves is PEFT's adapter, tensor for tensor, with the config keys PEFT reads.
mod common;
use burn::module::Param;
use burn::tensor::{Int, Tensor, TensorData};
use common::*;
use dft_models::lora::{peft_prefix, LoraSpec, LoraTarget, SavedModule};
use dft_models::{load_pretrained, CausalLm, SafetensorsCheckpoint, TensorSource};
use std::path::PathBuf;

const CASES: [(&str, &str); 4] = [
    ("llama-all", "tiny-llama"),
    ("llama-qv-head", "tiny-llama"),
    ("gemma2-all", "tiny-gemma2"),
    ("gemma2-mlp-rslora", "tiny-gemma2"),
];

fn case_dir(case: &str) -> PathBuf {
    fixture("lora").join(case)
}

fn base<Bk: burn::tensor::backend::Backend>(name: &str) -> CausalLm<Bk> {
    load_pretrained::<Bk>(&fixture(name), &Default::default()).unwrap().model
}

fn ids_tensor<Bk: burn::tensor::backend::Backend>(r: &Ref) -> Tensor<Bk, 2, Int> {
    Tensor::from_data(TensorData::new(r.ids(), r.shape.clone()), &Default::default())
}

/// Mean next-token cross-entropy over every position, as the fixture computes it.
fn next_token_loss<Bk: burn::tensor::backend::Backend>(logits: Tensor<Bk, 3>, ids: &Ref) -> Tensor<Bk, 1> {
    let [b, t, v] = logits.dims();
    let z = logits.slice([0..b, 0..t - 1, 0..v]).reshape([b * (t - 1), v]);
    let ids = ids.ids();
    let targets: Vec<i64> = (0..b).flat_map(|r| (1..t).map(move |c| (r, c))).map(|(r, c)| ids[r * t + c]).collect();
    let targets = Tensor::<Bk, 2, Int>::from_data(TensorData::new(targets, [b * (t - 1), 1]), &Default::default());
    burn::tensor::activation::log_softmax(z, 1).gather(1, targets).mean().neg()
}

fn rel_diff(a: &[f32], b: &[f64]) -> f64 {
    let scale = b.iter().map(|x| x.abs()).fold(0.0, f64::max).max(1e-6);
    max_abs_diff(a, b, |_| true) / scale
}

fn transpose(v: Vec<f32>, rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; v.len()];
    for i in 0..rows {
        for j in 0..cols {
            out[j * rows + i] = v[i * cols + j];
        }
    }
    out
}

#[test]
fn peft_adapters_give_peft_logits_loss_and_gradients() {
    for (case, base_name) in CASES {
        let refs = read_refs(&case_dir(case).join("reference.safetensors"));
        let model = base::<AB>(base_name).load_adapter(&case_dir(case).join("adapter")).unwrap();
        let spec = model.lora.clone().unwrap();
        let (trainable, total) = model.parameter_counts();
        assert!(trainable < total, "{case}: the base must be frozen ({trainable} of {total} trainable)");

        let logits = model.forward(ids_tensor(&refs["input_ids"]), None);
        let d = max_abs_diff(&to_vec(logits.clone().inner()), &refs["logits"].data, |_| true);
        assert!(d <= 1e-4, "{case}: logits differ from PEFT's by {d:e}");
        let loss = next_token_loss(logits, &refs["input_ids"]);
        let l = loss.clone().into_scalar() as f64;
        assert!((l - refs["loss"].data[0]).abs() <= 1e-5, "{case}: loss {l} vs PEFT {}", refs["loss"].data[0]);

        let grads = loss.backward();
        // Frozen base weights take no gradient.
        assert!(model.layers[0].self_attn.q_proj.weight.grad(&grads).is_none(), "{case}: base weight got a gradient");
        assert!(model.norm.weight.grad(&grads).is_none(), "{case}: final norm got a gradient");
        let mut checked = 0;
        for layer in 0..model.num_layers() {
            for target in &spec.targets {
                let blk = &model.layers[layer];
                let proj = match target {
                    LoraTarget::Q => &blk.self_attn.q_proj,
                    LoraTarget::K => &blk.self_attn.k_proj,
                    LoraTarget::V => &blk.self_attn.v_proj,
                    LoraTarget::O => &blk.self_attn.o_proj,
                    LoraTarget::Gate => &blk.mlp.gate_proj,
                    LoraTarget::Up => &blk.mlp.up_proj,
                    LoraTarget::Down => &blk.mlp.down_proj,
                };
                let ad = proj.lora.as_ref().unwrap();
                for (name, p) in [("lora_A", &ad.a), ("lora_B", &ad.b)] {
                    let key = format!("grad.{}.{name}.weight", peft_prefix(layer, *target));
                    let [r, c] = p.dims();
                    let g = transpose(to_vec(p.grad(&grads).expect("adapter gradient")), r, c);
                    let e = rel_diff(&g, &refs[&key].data);
                    assert!(e <= 1e-4, "{case}: {key} differs from PEFT's by {e:e} (relative to its max)");
                    checked += 1;
                }
            }
        }
        for m in &spec.modules_to_save {
            let key = format!("grad.{}", m.peft_tensor());
            let g = match m {
                SavedModule::LmHead => {
                    let p = model.lm_head.as_ref().unwrap();
                    let [r, c] = p.dims();
                    transpose(to_vec(p.grad(&grads).unwrap()), r, c)
                }
                SavedModule::EmbedTokens => to_vec(model.embed_tokens.grad(&grads).unwrap()),
            };
            let e = rel_diff(&g, &refs[&key].data);
            assert!(e <= 1e-4, "{case}: {key} differs from PEFT's by {e:e}");
            checked += 1;
        }
        let expected = refs.keys().filter(|k| k.starts_with("grad.")).count();
        assert_eq!(checked, expected, "{case}: every PEFT gradient is compared");
    }
}

#[test]
fn merged_model_equals_peft_merge_and_the_unmerged_forward() {
    for (case, base_name) in CASES {
        let refs = read_refs(&case_dir(case).join("reference.safetensors"));
        let model = base::<B>(base_name).load_adapter(&case_dir(case).join("adapter")).unwrap();
        let unmerged = to_vec(model.forward(ids_tensor(&refs["input_ids"]), None));
        let merged = model.merge_lora();
        assert!(merged.lora.is_none() && merged.layers.iter().all(|l| l.self_attn.q_proj.lora.is_none()));
        let logits = to_vec(merged.forward(ids_tensor(&refs["input_ids"]), None));
        let d = max_abs_diff(&logits, &refs["merged_logits"].data, |_| true);
        assert!(d <= 1e-4, "{case}: merged logits differ from PEFT's merge_and_unload by {d:e}");
        let u: Vec<f64> = unmerged.iter().map(|&x| x as f64).collect();
        let d = max_abs_diff(&logits, &u, |_| true);
        assert!(d <= 1e-5, "{case}: merged vs unmerged forward differ by {d:e}");
        // The merged model saves as a plain HF checkpoint that loads back with the same logits.
        let dir = dft_test_support::scratch::ScratchDir::new(format!("dft-lora-merged-{case}-{}", std::process::id()));
        merged.save_pretrained(&dir, None).unwrap();
        let back = load_pretrained::<B>(&dir, &Default::default()).unwrap().model;
        let again = to_vec(back.forward(ids_tensor(&refs["input_ids"]), None));
        assert_eq!(again, logits, "{case}: merged checkpoint reload changed the logits");
    }
}

#[test]
fn saved_adapter_is_pefts_adapter_tensor_for_tensor() {
    for (case, base_name) in CASES {
        let peft_dir = case_dir(case).join("adapter");
        let model = base::<B>(base_name).load_adapter(&peft_dir).unwrap();
        let out = dft_test_support::scratch::ScratchDir::new(format!("dft-lora-save-{case}-{}", std::process::id()));
        model.save_adapter(&out, base_name).unwrap();
        let ours = SafetensorsCheckpoint::open(&out.join("adapter_model.safetensors")).unwrap();
        let theirs = SafetensorsCheckpoint::open(&peft_dir.join("adapter_model.safetensors")).unwrap();
        let (mut a, mut b) = (ours.names(), theirs.names());
        a.sort();
        b.sort();
        assert_eq!(a, b, "{case}: tensor names differ from PEFT's");
        for n in &a {
            let (x, y) = (ours.load(n).unwrap(), theirs.load(n).unwrap());
            assert_eq!(x.shape, y.shape, "{case}: {n} shape");
            assert_eq!(x.data, y.data, "{case}: {n} values");
        }
        // The config keys PEFT reads, with PEFT's values.
        let read =
            |p: PathBuf| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
        let (ours, theirs) = (read(out.join("adapter_config.json")), read(peft_dir.join("adapter_config.json")));
        for key in
            ["peft_type", "task_type", "r", "use_rslora", "bias", "fan_in_fan_out", "use_dora", "modules_to_save"]
        {
            assert_eq!(ours[key], theirs[key], "{case}: adapter_config.json `{key}`");
        }
        assert_eq!(ours["lora_alpha"].as_f64(), theirs["lora_alpha"].as_f64(), "{case}: lora_alpha");
        let set = |v: &serde_json::Value| {
            let mut s: Vec<String> = v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
            s.sort();
            s
        };
        assert_eq!(set(&ours["target_modules"]), set(&theirs["target_modules"]), "{case}: target_modules");
        // And it loads back into dft-rs with the same tensors.
        let again = base::<B>(base_name).load_adapter(&out).unwrap();
        assert_eq!(again.adapter_tensors().unwrap(), model.adapter_tensors().unwrap());
        std::fs::remove_dir_all(&out).ok();
    }
}

#[test]
fn peft_loads_a_dft_rs_adapter_with_dft_rs_logits() {
    // `DFT_WRITE_LORA_FIXTURE=1 cargo test --release -p dft-models --test lora -- peft_loads` writes the
    // adapter dft-rs saves (fixture lora/dftrs-llama) and our logits; then
    // `tools/oracle/lora_fixtures.py check-adapter` loads that adapter with PeftModel.from_pretrained onto
    // tiny-llama and records the largest logits difference in peft_check.json.
    let dir = case_dir("dftrs-llama");
    let model = dftrs_adapter_model::<B>();
    let ids = read_refs(&case_dir("llama-all").join("reference.safetensors"))["input_ids"].clone();
    if std::env::var_os("DFT_WRITE_LORA_FIXTURE").is_some() {
        model.save_adapter(&dir.join("adapter"), "tiny-llama").unwrap();
        let logits = model.forward(ids_tensor(&ids), None);
        let mut t = std::collections::BTreeMap::new();
        t.insert("logits".to_string(), dft_models::HostTensor::new(logits.dims().to_vec(), to_vec(logits)));
        dft_models::safetensors_io::write_safetensors(&dir.join("logits.safetensors"), &t).unwrap();
        let i64s: Vec<u8> = ids.ids().iter().flat_map(|x| x.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::I64, ids.shape.clone(), &i64s).unwrap();
        std::fs::write(dir.join("input_ids.safetensors"), safetensors::serialize([("input_ids", view)], None).unwrap())
            .unwrap();
        return;
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("peft_check.json")).unwrap()).unwrap();
    let d = report["max_abs_logits_diff"].as_f64().unwrap();
    assert!(d <= 1e-4, "PEFT's logits with our adapter differ from ours by {d:e}");
    // The committed adapter is what dft-rs writes today, and our logits are the ones PEFT compared against
    // — up to f32 rounding: the products run on either GEMM (`DFT_GEMM`: the `gemm` crate gives the
    // committed logits bit for bit, the own AVX2 GEMM sums in another order: 1.8e-6 apart).
    let logits = to_vec(model.forward(ids_tensor(&ids), None));
    let committed = read_refs(&dir.join("logits.safetensors"));
    let diff = max_abs_diff(&logits, &committed["logits"].data, |_| true);
    assert!(diff <= 1e-5, "our logits differ from the committed ones (that PEFT matched) by {diff:e}");
    let adapter = SafetensorsCheckpoint::open(&dir.join("adapter/adapter_model.safetensors")).unwrap();
    for (name, t) in model.adapter_tensors().unwrap() {
        assert_eq!(adapter.load(&name).unwrap(), t, "{name} differs from the committed dft-rs adapter");
    }
}

/// The adapter behind the `dftrs-llama` fixture: PEFT-initialised LoRA (rank 4, alpha 8, q/v/down,
/// lm_head saved) from dft-rs's own init, with B set to a deterministic pattern so the update is non-zero.
fn dftrs_adapter_model<Bk: burn::tensor::backend::Backend>() -> CausalLm<Bk> {
    let spec = LoraSpec {
        rank: 4,
        alpha: 8.0,
        targets: vec![LoraTarget::Q, LoraTarget::V, LoraTarget::Down],
        modules_to_save: vec![SavedModule::LmHead],
        ..Default::default()
    };
    let mut model = base::<Bk>("tiny-llama").with_lora(&spec, 3).unwrap();
    for blk in model.layers.iter_mut() {
        for proj in [&mut blk.self_attn.q_proj, &mut blk.self_attn.v_proj, &mut blk.mlp.down_proj] {
            let ad = proj.lora.as_mut().unwrap();
            let [r, o] = ad.b.dims();
            let v: Vec<f32> = (0..r * o).map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 0.3).collect();
            ad.b = Param::from_tensor(Tensor::from_data(TensorData::new(v, [r, o]), &Default::default()));
        }
    }
    let head = model.lm_head.take().unwrap();
    model.lm_head = Some(Param::from_tensor(head.val() * 1.1));
    model
}

/// LoRA dropout draws from the calling thread's stream (`seed_dropout`): the same seed gives the same
/// adapter output even while another thread reseeds and draws from Burn's process-wide RNG (which the
/// masks came from before, so two trainings in one process interleaved their masks); a different seed
/// changes it, and without gradient tracking there is no dropout at all.
#[test]
fn lora_dropout_follows_the_threads_seed_not_the_backends_rng() {
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use dft_losses::Precision;
    use dft_models::lora::{seed_dropout, LoraAdapter};
    type Ad = Autodiff<Flex>;
    let dev = Default::default();
    let (n, d, r, o) = (64, 48, 4, 32);
    let init = |len: usize, k: usize| -> Vec<f32> { (0..len).map(|i| ((i * k % 97) as f32 - 48.0) / 97.0).collect() };
    let adapter = |dropout: f64| LoraAdapter::<Ad> {
        a: Param::from_tensor(Tensor::from_data(TensorData::new(init(d * r, 7), [d, r]), &dev)),
        b: Param::from_tensor(Tensor::from_data(TensorData::new(init(r * o, 13), [r, o]), &dev)),
        scaling: 2.0,
        dropout,
    };
    let x = || Tensor::<Ad, 2>::from_data(TensorData::new(init(n * d, 5), [n, d]), &dev).require_grad();
    let out = |ad: &LoraAdapter<Ad>, seed: u64| -> Vec<f32> {
        let _g = seed_dropout(seed);
        ad.delta(x(), Precision::F32).into_data().to_vec().unwrap()
    };
    let drop = adapter(0.3);
    let reference = out(&drop, 42);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        // What a second training (or any user code) does with the backend's RNG meanwhile.
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                <Flex as burn::tensor::backend::Backend>::seed(&Default::default(), 1);
                let _ = Tensor::<Flex, 2>::random([256, 256], burn::tensor::Distribution::Default, &Default::default());
            }
        });
        for _ in 0..20 {
            assert_eq!(out(&drop, 42), reference, "the mask changed with another thread's use of the RNG");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert_ne!(out(&drop, 43), reference, "the seed does not reach the mask");
    let plain = out(&adapter(0.0), 42);
    assert_ne!(plain, reference, "dropout 0.3 had no effect");
    // Without gradient tracking (inference) the adapter applies no dropout.
    let inner: Vec<f32> = drop.valid().delta(x().inner(), Precision::F32).into_data().to_vec().unwrap();
    let close = inner.iter().zip(&plain).all(|(a, b)| (a - b).abs() <= 1e-5 * b.abs().max(1.0));
    assert!(close, "dropout acted without gradient tracking");
}
