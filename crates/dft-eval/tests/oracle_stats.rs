//! The statistics of `dft_eval::stats` against NumPy / SciPy (tools/oracle/stats_fixtures.py): the
//! standard error of a mean is scipy.stats.sem; on the same resample indices (the fixture replays
//! stats.rs's SplitMix64 stream) the bootstrap standard error, percentile interval and p-value equal
//! NumPy's numpy.std / numpy.percentile; and the paired interval agrees with scipy.stats.bootstrap
//! (its own generator, 20,000 resamples) within Monte-Carlo error.
mod common;

use common::fixture;
use dft_eval::stats::{bootstrap_stderr, mean_stderr, paired_bootstrap, paired_bootstrap_multi, PairedDiff};
use serde_json::Value;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "{what}: {got} vs numpy {want}");
}

fn check(d: &PairedDiff, want: &Value, what: &str) {
    close(d.diff, want["diff"].as_f64().unwrap(), &format!("{what} diff"));
    close(d.ci_low, want["ci_low"].as_f64().unwrap(), &format!("{what} ci_low"));
    close(d.ci_high, want["ci_high"].as_f64().unwrap(), &format!("{what} ci_high"));
    close(d.stderr, want["stderr"].as_f64().unwrap(), &format!("{what} stderr"));
    close(d.p_value, want["p_value"].as_f64().unwrap(), &format!("{what} p"));
}

#[test]
fn stderr_and_bootstrap_match_numpy_and_scipy() {
    let fx = fixture("stats.json");
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for (i, c) in cases.iter().enumerate() {
        let (a, b) = (floats(&c["a"]), floats(&c["b"]));
        let seed = c["seed"].as_u64().unwrap();
        let resamples = c["resamples"].as_u64().unwrap() as usize;
        close(mean_stderr(&a), c["sem_a"].as_f64().unwrap(), &format!("case {i} sem"));
        close(
            bootstrap_stderr(&a, resamples, seed),
            c["bootstrap_stderr_a"].as_f64().unwrap(),
            &format!("case {i} boot se"),
        );
        check(&paired_bootstrap(&a, &b, resamples, 95.0, seed).unwrap(), &c["paired_95"], &format!("case {i} 95%"));
        check(&paired_bootstrap(&a, &b, resamples, 90.0, seed).unwrap(), &c["paired_90"], &format!("case {i} 90%"));
        let sp = &c["scipy_bootstrap"];
        let big = paired_bootstrap(&a, &b, sp["resamples"].as_u64().unwrap() as usize, 95.0, seed).unwrap();
        let tol = sp["tolerance"].as_f64().unwrap();
        for (got, key) in [(big.ci_low, "ci_low"), (big.ci_high, "ci_high"), (big.stderr, "stderr")] {
            let want = sp[key].as_f64().unwrap();
            assert!((got - want).abs() <= tol, "case {i} {key}: {got} vs scipy.stats.bootstrap {want} (±{tol})");
        }
    }
    let m = &fx["multi"];
    let tasks: Vec<(Vec<f64>, Vec<f64>)> = cases[..3].iter().map(|c| (floats(&c["a"]), floats(&c["b"]))).collect();
    let refs: Vec<(&[f64], &[f64])> = tasks.iter().map(|(a, b)| (a.as_slice(), b.as_slice())).collect();
    let d = paired_bootstrap_multi(&refs, m["resamples"].as_u64().unwrap() as usize, 95.0, m["seed"].as_u64().unwrap())
        .unwrap();
    check(&d, &m["result"], "multi-task average");
}
