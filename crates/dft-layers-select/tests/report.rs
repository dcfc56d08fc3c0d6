//! Report outputs without a model: JSON round trip, the Markdown table with the i / j marks, the SVG
//! plot, re-detection and user overrides.
use dft_layers_select::{
    critical_layers, CurveReport, DetectOptions, EntropyCurve, LayerEntropy, LayerReport, LayersError, MeanCi,
};
use std::path::Path;

fn curve(values: &[f64]) -> EntropyCurve {
    let stat = |m: f64| MeanCi { mean: m, ci95: 0.05, sd: 0.5, n: 400 };
    EntropyCurve {
        layers: values
            .iter()
            .enumerate()
            .map(|(k, &m)| LayerEntropy { layer: k, all: stat(m), last: stat(m * 0.8) })
            .collect(),
    }
}

fn report() -> LayerReport {
    let zh: Vec<f64> =
        (0..=12).map(|k| [0.05, 9.0, 6.0, 5.9, 5.9, 5.8, 5.8, 2.0, 1.5, 1.5, 1.4, 1.4, 1.4][k]).collect();
    let en: Vec<f64> = zh.iter().map(|x| x * 0.7).collect();
    let target = CurveReport::new("zh", Path::new("zh.txt"), 10, 400, &curve(&zh));
    LayerReport {
        model: "/models/tiny.gguf".into(),
        num_layers: 12,
        critical: critical_layers(&target.means(), &DetectOptions::default()).unwrap(),
        target,
        english: Some(CurveReport::new("en", Path::new("en.txt"), 10, 300, &curve(&en))),
        latent: None,
        command: "dft layers --data x".into(),
    }
}

#[test]
fn table_json_and_plot() {
    let r = report();
    assert_eq!((r.critical.i, r.critical.j), (2, 6), "{:#?}", r.critical.reasons);
    let t = r.table();
    assert_eq!(t.lines().count(), 2 + 13);
    assert!(t.lines().nth(4).unwrap().contains("**i**"), "{t}");
    assert!(t.lines().nth(8).unwrap().contains("**j**"), "{t}");
    assert!(t.contains("9.000 ± 0.050 | 12.984"), "{t}"); // bits = nats / ln 2
    assert!(r.summary().contains("i = 2, j = 6 (detected)"));

    let dir = dft_test_support::scratch::ScratchDir::new(format!("dft-layers-report-{}", std::process::id()));
    let json = dir.join("layers.json");
    r.write_json(&json).unwrap();
    let back = LayerReport::read_json(&json).unwrap();
    assert_eq!((back.critical.i, back.critical.j, back.command.as_str()), (2, 6, "dft layers --data x"));
    for (a, b) in back.target.layers.iter().zip(&r.target.layers) {
        assert!(
            (a.all_nats.mean - b.all_nats.mean).abs() < 1e-12 && (a.last_bits.ci95 - b.last_bits.ci95).abs() < 1e-12
        );
    }
    assert_eq!(back.english.unwrap().tokens, 300);
    let svg = dir.join("layers.svg");
    r.plot(&svg).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("i = 2") && text.contains("j = 6"));
    assert!(text.contains("zh (10 sentences, 400 tokens)") && text.contains("<polygon"));
}

#[test]
fn redetect_and_override() {
    let mut r = report();
    r.redetect(&DetectOptions::default(), Some((3, 9))).unwrap();
    assert_eq!((r.critical.i, r.critical.j), (3, 9));
    assert!(r.critical.reasons.last().unwrap().contains("overridden by the user"));
    let e = r.redetect(&DetectOptions::default(), Some((5, 13))).unwrap_err();
    assert!(matches!(e, LayersError::InvalidLayers { i: 5, j: 13, layers: 12 }), "{e}");
    assert!(LayerReport::read_json(Path::new("/nonexistent/layers.json"))
        .unwrap_err()
        .to_string()
        .contains("/nonexistent/layers.json"));
}
