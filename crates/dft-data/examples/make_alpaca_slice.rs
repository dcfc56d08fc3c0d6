//! Makes the bundled slice `data/alpaca_en_zh/{train,heldout}.json` from the alpaca_en_zh release.
//!
//! Rule (deterministic): read the 52,002 records of `alpaca_chinese_part_{0..52}.json` in numeric
//! part order with the lenient reader (records with a missing or empty instruction/output in either
//! language are dropped by it); keep those with `metadata.score == 5`; the first 2,000 in source
//! order are `train.json`, the next 200 `heldout.json`. Records are copied verbatim (same JSON
//! format and layout as the source); `source_indices.json` lists each record's position in the
//! 52,002-record concatenation.
//!
//! ```text
//! cargo run --release -p dft-data --example make_alpaca_slice -- [SOURCE_DIR] [OUT_DIR]
//! ```
//! Defaults: `$DFT_SHARED_DATA/train/alpaca_en_zh/data_v3` (`DFT_SHARED_DATA` defaults to
//! `../shared/data` from the workspace root) and `data/alpaca_en_zh` in the workspace.

use std::path::PathBuf;

use dft_data::{alpaca_en_zh_part_files, read_alpaca_en_zh_dir, Strictness};
use serde_json::value::RawValue;

const TRAIN: usize = 2_000;
const HELDOUT: usize = 200;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shared =
        std::env::var_os("DFT_SHARED_DATA").map(PathBuf::from).unwrap_or_else(|| workspace.join("../shared/data"));
    let mut args = std::env::args_os().skip(1);
    let source = args.next().map(PathBuf::from).unwrap_or_else(|| shared.join("train/alpaca_en_zh/data_v3"));
    let out = args.next().map(PathBuf::from).unwrap_or_else(|| workspace.join("data/alpaca_en_zh"));

    let corpus = read_alpaca_en_zh_dir(&source, Strictness::Lenient)?;
    eprintln!("read {}: {}", source.display(), corpus.report);
    // Ids are source positions (the release has no id field).
    let selected: Vec<usize> = corpus
        .examples
        .iter()
        .filter(|e| e.score == Some(5))
        .take(TRAIN + HELDOUT)
        .map(|e| e.id.parse().unwrap())
        .collect();
    assert_eq!(selected.len(), TRAIN + HELDOUT, "not enough score-5 records");

    // The verbatim text of every record, in source order.
    let mut texts = Vec::new();
    for path in alpaca_en_zh_part_files(&source)? {
        let text = std::fs::read_to_string(&path)?;
        let records: Vec<Box<RawValue>> = serde_json::from_str(&text)?;
        texts.extend(records.into_iter().map(|r| r.get().to_string()));
    }
    std::fs::create_dir_all(&out)?;
    let write = |name: &str, indices: &[usize]| -> std::io::Result<()> {
        let body: Vec<String> = indices.iter().map(|&i| format!("    {}", texts[i])).collect();
        std::fs::write(out.join(name), format!("[\n{}\n]\n", body.join(",\n")))
    };
    let (train, heldout) = selected.split_at(TRAIN);
    write("train.json", train)?;
    write("heldout.json", heldout)?;
    let indices = serde_json::json!({ "train": train, "heldout": heldout });
    std::fs::write(out.join("source_indices.json"), format!("{indices}\n"))?;
    eprintln!(
        "wrote {} train (source {}..={}) and {} heldout (source {}..={}) to {}",
        train.len(),
        train[0],
        train[TRAIN - 1],
        heldout.len(),
        heldout[0],
        heldout[HELDOUT - 1],
        out.display()
    );
    Ok(())
}
