//! The DFT objective on our models against PyTorch autograd on transformers' models
//! (tools/oracle/loss_fixtures.py): every loss component, the total, and the gradients of selected
//! parameters, on 4 real en–zh examples; gradients that must be zero are exactly zero.
use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::tensor::Tensor;
use dft_losses::{dft_loss, dft_loss_eval, dft_loss_naive, AuxLoss, DftBatch, ObjectiveConfig, Pooling, Sequences};
use dft_models::{load_pretrained, CausalLm};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;

type AB = Autodiff<Flex>;
const TOL: f64 = 1e-4;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/objective")
}

use dft_test_support::step::seqs_from_json as sequences;

/// The four-example oracle batch of sequences.json, every kind present.
fn oracle_batch(seqs: &Value) -> DftBatch {
    DftBatch {
        main: sequences(&seqs["tft"]),
        lc: Some(sequences(&seqs["lc"])),
        et: Some(sequences(&seqs["et"])),
        en_prompt: Some(sequences(&seqs["en_prompt"])),
    }
}

fn aux(s: &str) -> AuxLoss {
    match s {
        "off" => AuxLoss::Off,
        "logits" => AuxLoss::Logits,
        "feature" => AuxLoss::Feature,
        other => panic!("{other}"),
    }
}

fn read_grads(path: &std::path::Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                (
                    v.shape().to_vec(),
                    v.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
                ),
            )
        })
        .collect()
}

/// Our gradient of an HF-named parameter, in HF layout; `None` if it got no gradient.
fn our_grad(
    model: &CausalLm<AB>,
    grads: &<AB as burn::tensor::backend::AutodiffBackend>::Gradients,
    name: &str,
) -> Option<Vec<f32>> {
    let get2 = |t: Tensor<AB, 2>, transpose: bool| {
        t.grad(grads).map(|g| {
            let g = if transpose { g.transpose() } else { g };
            g.into_data().to_vec::<f32>().unwrap()
        })
    };
    let layer = |i: usize| &model.layers[i];
    match name {
        "model.embed_tokens.weight" => get2(model.embed_tokens.val(), false),
        "model.layers.0.self_attn.q_proj.weight" => get2(layer(0).self_attn.q_proj.weight.val(), true),
        "model.layers.1.mlp.down_proj.weight" => get2(layer(1).mlp.down_proj.weight.val(), true),
        "model.layers.3.self_attn.o_proj.weight" => get2(layer(3).self_attn.o_proj.weight.val(), true),
        "model.layers.3.mlp.up_proj.weight" => get2(layer(3).mlp.up_proj.weight.val(), true),
        "model.norm.weight" => model.norm.weight.val().grad(grads).map(|g| g.into_data().to_vec::<f32>().unwrap()),
        "lm_head.weight" => get2(model.lm_head.as_ref().unwrap().val(), true),
        other => panic!("unknown parameter {other}"),
    }
}

#[test]
fn objective_matches_pytorch_autograd() {
    for model_name in ["llama", "gemma2"] {
        let device = Default::default();
        let model = load_pretrained::<AB>(&dir().join(model_name), &device).unwrap().model;
        let ref_grads = read_grads(&dir().join(model_name).join("grads.safetensors"));
        for (case, cfg, batch, want) in cases(model_name) {
            let case = case.as_str();
            let out = dft_loss(&model, &batch, &cfg, &device).unwrap();
            let got = &out.components;
            let close = |a: f64, b: &Value, what: &str| {
                let b = b.as_f64().unwrap();
                assert!((a - b).abs() <= TOL, "{model_name}/{case}: {what} = {a}, PyTorch {b}");
            };
            close(got.main, &want["main"], "main");
            close(got.total, &want["total"], "total");
            assert_eq!(got.main_tokens as u64, want["main_tokens"].as_u64().unwrap());
            for (name, ours, tokens) in [("lc", got.lc, got.lc_tokens), ("et", got.et, got.et_tokens)] {
                match (ours, want[name].as_f64()) {
                    (Some(a), Some(_)) => close(a, &want[name], name),
                    (None, None) => {}
                    other => panic!("{model_name}/{case}: {name} presence differs: {other:?}"),
                }
                assert_eq!(
                    tokens as u64,
                    want[format!("{name}_tokens")].as_u64().unwrap(),
                    "{model_name}/{case}: {name} tokens"
                );
            }
            // The loss value is the same through the naive and the eval paths.
            let naive = dft_loss_naive(&model, &batch, &cfg, &device).unwrap().components;
            let eval = dft_loss_eval(&model.valid(), &batch, &cfg, &device).unwrap().components;
            assert!((naive.total - got.total).abs() <= 1e-5 * got.total.abs().max(1.0));
            // Recomputing the shared prompt in each LC/ET pass gives the same values.
            let unshared = dft_loss(&model, &batch, &ObjectiveConfig { share_prefix: false, ..cfg.clone() }, &device)
                .unwrap()
                .components;
            assert!(
                (unshared.total - got.total).abs() <= 1e-5 * got.total.abs().max(1.0),
                "{model_name}/{case}: shared prefix changes the loss"
            );
            assert_eq!((unshared.lc_tokens, unshared.et_tokens), (got.lc_tokens, got.et_tokens));
            assert!((eval.total - got.total).abs() <= 1e-5 * got.total.abs().max(1.0));

            let grads = out.loss.backward();
            for (key, (_, want)) in ref_grads.iter().filter(|(k, _)| k.starts_with(&format!("{case}/"))) {
                let param = key.split_once('/').unwrap().1;
                let must_be_zero = want.iter().all(|&x| x == 0.0);
                match our_grad(&model, &grads, param) {
                    None => assert!(must_be_zero, "{model_name}/{case}: {param} got no gradient, PyTorch has one"),
                    Some(g) => {
                        if must_be_zero {
                            assert!(
                                g.iter().all(|&x| x == 0.0),
                                "{model_name}/{case}: {param} must get exactly zero gradient"
                            );
                        }
                        let scale = want.iter().fold(1f32, |m, x| m.max(x.abs())) as f64;
                        let d = g.iter().zip(want).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max);
                        assert!(
                            d <= TOL * scale,
                            "{model_name}/{case}: grad of {param} differs by {d:e} (scale {scale})"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn bad_objective_inputs_are_typed_errors() {
    use dft_losses::LossError;
    let seqs: Value = serde_json::from_str(&std::fs::read_to_string(dir().join("sequences.json")).unwrap()).unwrap();
    let device = Default::default();
    let model = load_pretrained::<AB>(&dir().join("llama"), &device).unwrap().model;
    let batch = oracle_batch(&seqs);
    let run = |cfg: ObjectiveConfig, batch: &DftBatch| dft_loss(&model, batch, &cfg, &device).map(|_| ()).unwrap_err();
    let e = run(ObjectiveConfig { et: AuxLoss::Logits, et_layer: 0, ..Default::default() }, &batch);
    assert!(matches!(e, LossError::LayerOutOfRange { layer: 0, .. }), "{e}");
    let e = run(ObjectiveConfig { lc: AuxLoss::Feature, lc_layer: 5, ..Default::default() }, &batch);
    assert!(matches!(e, LossError::LayerOutOfRange { layer: 5, num_layers: 4, .. }), "{e}");
    let e = run(ObjectiveConfig { lc: AuxLoss::Logits, alpha: -0.5, ..Default::default() }, &batch);
    assert!(matches!(e, LossError::BadWeight { name: "alpha", .. }), "{e}");
    let mut b2 = batch.clone();
    b2.main.labels.pop();
    let e = run(ObjectiveConfig::default(), &b2);
    assert!(matches!(e, LossError::BadBatch { .. }) && e.to_string().contains("label/sequence shape mismatch"), "{e}");
    let mut b3 = batch.clone();
    b3.main.query_spans[2] = vec![];
    let e = run(ObjectiveConfig { et: AuxLoss::Feature, et_layer: 2, ..Default::default() }, &b3);
    assert!(matches!(e, LossError::EmptyPoolSpan { row: 2, .. }), "{e}");
    let b4 = DftBatch { et: None, ..batch.clone() };
    let e = run(ObjectiveConfig { et: AuxLoss::Logits, et_layer: 2, ..Default::default() }, &b4);
    assert!(matches!(e, LossError::MissingSequences(_)), "{e}");
    // No labelled tokens at all: loss 0 with count 0, never NaN.
    let mut b5 = batch.clone();
    b5.main.labels.iter_mut().for_each(|l| *l = -100);
    let out = dft_loss(&model, &b5, &ObjectiveConfig::default(), &device).unwrap();
    assert_eq!((out.components.main, out.components.main_tokens), (0.0, 0));
    assert!(!out.components.total.is_nan());
}

/// Every case of the fixture as (name, objective config, batch, PyTorch's f32 components).
fn cases(model_name: &str) -> Vec<(String, ObjectiveConfig, DftBatch, Value)> {
    let seqs: Value = serde_json::from_str(&std::fs::read_to_string(dir().join("sequences.json")).unwrap()).unwrap();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join(model_name).join("expected.json")).unwrap()).unwrap();
    let mut out = Vec::new();
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
        let mut main = sequences(&seqs[c["main"].as_str().unwrap()]);
        if !c["main_labelled"].as_bool().unwrap() {
            main.labels.iter_mut().for_each(|l| *l = -100);
        }
        let batch = DftBatch {
            main,
            lc: Some(sequences(&seqs["lc"])),
            et: Some(sequences(&seqs["et"])),
            en_prompt: Some(sequences(&seqs["en_prompt"])),
        };
        out.push((case.clone(), cfg, batch, exp["components"].clone()));
    }
    out
}

/// bf16-mixed (`train.precision = "bf16-mixed"`): every loss component within 1e-2 of f32 PyTorch and of
/// PyTorch under `torch.autocast(bfloat16)` on the same batch, relative to max(|value|, 1). (PyTorch's
/// autocast computes the feature losses' cosine in bf16, whose resolution near 1 is 2⁻⁷ ≈ 0.008, so
/// small feature components are compared on that absolute scale; dft-rs keeps them f32.) The gradients
/// of the selected parameters stay within 5e-2 of the f32 gradients (relative to their largest entry).
#[test]
fn bf16_mixed_objective_tracks_f32_and_pytorch_autocast() {
    use dft_models::Precision;
    let device = Default::default();
    for model_name in ["llama", "gemma2"] {
        let f32_model = load_pretrained::<AB>(&dir().join(model_name), &device).unwrap().model;
        let model = f32_model.clone().with_precision(Precision::Bf16Mixed);
        let autocast: Value = serde_json::from_str(
            &std::fs::read_to_string(dir().join(model_name).join("expected_bf16_autocast.json")).unwrap(),
        )
        .unwrap();
        let mut worst: f64 = 0.0;
        for (case, cfg, batch, want) in cases(model_name) {
            let out = dft_loss(&model, &batch, &cfg, &device).unwrap();
            let got = &out.components;
            for (what, ours) in [("main", Some(got.main)), ("lc", got.lc), ("et", got.et), ("total", Some(got.total))] {
                let Some(a) = ours else { continue };
                for (oracle, w) in [("f32 PyTorch", &want), ("PyTorch autocast(bf16)", &autocast[&case]["components"])]
                {
                    let b = w[what].as_f64().unwrap();
                    let e = (a - b).abs() / b.abs().max(1.0);
                    worst = worst.max(e);
                    assert!(e <= 1e-2, "{model_name}/{case}: bf16-mixed {what} = {a}, {oracle} {b} (rel {e:e})");
                }
            }
            // The products really ran in bf16: the value differs from the f32 path.
            let exact = dft_loss(&f32_model, &batch, &cfg, &device).unwrap().components.total;
            if got.total != 0.0 {
                assert_ne!(got.total, exact, "{model_name}/{case}: bf16-mixed gave the f32 value bit for bit");
            }
            let grads = out.loss.backward();
            let f32_grads = dft_loss(&f32_model, &batch, &cfg, &device).unwrap().loss.backward();
            for (name, p32, p16) in [
                (
                    "q_proj",
                    f32_model.layers[0].self_attn.q_proj.weight.val(),
                    model.layers[0].self_attn.q_proj.weight.val(),
                ),
                ("embed", f32_model.embed_tokens.val(), model.embed_tokens.val()),
            ] {
                let (Some(g32), Some(g16)) = (p32.grad(&f32_grads), p16.grad(&grads)) else { continue };
                let g32 = g32.into_data().to_vec::<f32>().unwrap();
                let g16 = g16.into_data().to_vec::<f32>().unwrap();
                assert!(g16.iter().all(|x| x.is_finite()), "{model_name}/{case}: non-finite bf16 gradient of {name}");
                let scale = g32.iter().fold(1e-12f32, |m, x| m.max(x.abs()));
                let d = g32.iter().zip(&g16).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max) / scale;
                assert!(d <= 5e-2, "{model_name}/{case}: bf16-mixed gradient of {name} off by {d:e} of its scale");
            }
        }
        eprintln!("{model_name}: worst relative difference of a bf16-mixed loss component: {worst:.2e}");
    }
}

/// LoRA under the DFT objective, every case: the base gets no gradient, the adapters do; sharing the
/// prompt across the LC/ET passes changes nothing; the loss equals the merged model's; and bf16-mixed
/// works with adapters too. (The adapter gradients themselves are checked against PEFT in
/// crates/dft-models/tests/lora.rs, the objective against PyTorch above.)
#[test]
fn lora_runs_every_dft_case_and_equals_the_merged_model() {
    use burn::module::Param;
    use dft_models::{LoraSpec, Precision};
    let device = Default::default();
    for model_name in ["llama", "gemma2"] {
        let base = load_pretrained::<AB>(&dir().join(model_name), &device).unwrap().model;
        let mut model = base.with_lora(&LoraSpec { rank: 4, alpha: 8.0, ..Default::default() }, 1).unwrap();
        // Non-zero B so that the adapters change the outputs.
        for blk in model.layers.iter_mut() {
            for p in
                [&mut blk.self_attn.q_proj, &mut blk.self_attn.v_proj, &mut blk.mlp.down_proj, &mut blk.mlp.gate_proj]
            {
                let ad = p.lora.as_mut().unwrap();
                let b = Tensor::<AB, 2>::random(ad.b.dims(), burn::tensor::Distribution::Normal(0.0, 0.05), &device);
                ad.b = Param::from_tensor(b);
            }
        }
        let merged = model.valid().merge_lora();
        for (case, cfg, batch, _) in cases(model_name) {
            let out = dft_loss(&model, &batch, &cfg, &device).unwrap();
            let m = dft_loss_eval(&merged, &batch, &cfg, &device).unwrap().components;
            let tol = 1e-5 * out.components.total.abs().max(1.0);
            assert!((m.total - out.components.total).abs() <= tol, "{model_name}/{case}: LoRA vs merged");
            let unshared = dft_loss(&model, &batch, &ObjectiveConfig { share_prefix: false, ..cfg.clone() }, &device)
                .unwrap()
                .components;
            assert!((unshared.total - out.components.total).abs() <= tol, "{model_name}/{case}: shared prefix");
            let grads = out.loss.backward();
            assert!(model.layers[1].mlp.down_proj.weight.grad(&grads).is_none(), "{model_name}/{case}: base grad");
            assert!(model.embed_tokens.grad(&grads).is_none(), "{model_name}/{case}: embeddings grad");
            if out.components.total > 0.0 {
                let ad = model.layers[0].self_attn.q_proj.lora.as_ref().unwrap();
                let g = ad.a.grad(&grads).expect("adapter A gradient").abs().sum().into_scalar();
                assert!(g > 0.0, "{model_name}/{case}: adapter A got a zero gradient");
            }
            let bf16_model = model.clone().with_precision(Precision::Bf16Mixed);
            // ... and with the frozen base stored in bf16 (what `dft train` does for LoRA + bf16-mixed).
            let bf16_base = bf16_model.clone().with_frozen_base_dtype(burn::tensor::FloatDType::BF16);
            assert_eq!(bf16_base.layers[0].mlp.up_proj.weight.val().dtype(), burn::tensor::DType::BF16);
            for (what, m) in [("bf16-mixed", &bf16_model), ("bf16-mixed, bf16 base", &bf16_base)] {
                let bf16 = dft_loss(m, &batch, &cfg, &device).unwrap();
                let e = (bf16.components.total - out.components.total).abs() / out.components.total.abs().max(1.0);
                assert!(e <= 1e-2, "{model_name}/{case}: LoRA {what} off by {e:e}");
                let g = bf16.loss.backward();
                if out.components.total > 0.0 {
                    let ad = m.layers[0].self_attn.q_proj.lora.as_ref().unwrap();
                    assert!(ad.a.grad(&g).is_some(), "{model_name}/{case}: {what}: no adapter gradient");
                }
            }
        }
    }
}

/// The same batch padded 40 columns wider (as another pipeline padding to a fixed length would): the
/// objective trims the padding no loss reads (issue 21), and every loss component and gradient equals
/// the unpadded batch's — for TFT, DFT-logits and DFT-feature.
#[test]
fn padding_no_loss_reads_changes_nothing() {
    let seqs: Value = serde_json::from_str(&std::fs::read_to_string(dir().join("sequences.json")).unwrap()).unwrap();
    let device = Default::default();
    let model = load_pretrained::<AB>(&dir().join("llama"), &device).unwrap().model;
    let batch = oracle_batch(&seqs);
    let pad = |s: &Sequences| {
        let w = s.seq_len + 40;
        let mut p = Sequences { seq_len: w, ..s.clone() };
        p.input_ids =
            s.input_ids.chunks(s.seq_len).flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0, 40))).collect();
        p.labels =
            s.labels.chunks(s.seq_len).flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(-100, 40))).collect();
        p
    };
    let padded = DftBatch {
        main: pad(&batch.main),
        lc: batch.lc.as_ref().map(pad),
        et: batch.et.as_ref().map(pad),
        en_prompt: batch.en_prompt.as_ref().map(pad),
    };
    assert!(matches!(padded.trim_padding(), std::borrow::Cow::Owned(_)));
    assert_eq!(padded.trim_padding().as_ref(), &batch, "trimming restores the batch");
    for (name, cfg) in [
        ("tft", ObjectiveConfig::default()),
        (
            "dft-logits",
            ObjectiveConfig {
                lc: AuxLoss::Logits,
                et: AuxLoss::Logits,
                lc_layer: 1,
                et_layer: 2,
                ..Default::default()
            },
        ),
        (
            "dft-feature",
            ObjectiveConfig {
                lc: AuxLoss::Feature,
                et: AuxLoss::Feature,
                lc_layer: 1,
                et_layer: 2,
                ..Default::default()
            },
        ),
    ] {
        let a = dft_loss(&model, &batch, &cfg, &device).unwrap();
        let b = dft_loss(&model, &padded, &cfg, &device).unwrap();
        assert_eq!(a.components, b.components, "{name}: loss components");
        let (ga, gb) = (a.loss.backward(), b.loss.backward());
        let w = |g: &<AB as burn::tensor::backend::AutodiffBackend>::Gradients| {
            model.layers[0].mlp.down_proj.weight.grad(g).unwrap().into_data()
        };
        assert_eq!(w(&ga), w(&gb), "{name}: gradient of a weight");
    }
}
