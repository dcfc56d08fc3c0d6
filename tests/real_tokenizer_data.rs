//! The tokenizer dft-models builds from the SmolLM2 GGUF and the `tokenizer.json` transformers writes for
//! the same file (dft-data's fixture) tokenize the bundled training data identically, so the data
//! pipeline's oracle fixtures hold for the tokenizer the trainer really uses.
use dft_data::{read_paired_json, tokenize_corpus, SequenceKinds, SpecialTokens, Strictness, TokenizeConfig};
use std::path::PathBuf;

#[test]
fn gguf_tokenizer_equals_transformers_tokenizer_on_bundled_data() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let Some(gguf) = dft_test_support::models::smollm2_gguf() else { return };
    let ours = dft_models::gguf::GgufFile::open(&gguf).unwrap().tokenizer().unwrap();
    let hf =
        tokenizers::Tokenizer::from_file(root.join("crates/dft-data/tests/fixtures/smollm2-tokenizer.json")).unwrap();
    let mut corpus = read_paired_json(&[root.join("data/alpaca_en_zh/train.json")], "zh", Strictness::Strict).unwrap();
    corpus.examples.truncate(300);
    let special = SpecialTokens { bos: None, eos: 2, pad: 2 };
    let cfg = TokenizeConfig {
        kinds: SequenceKinds { tft: true, lc: true, et: true, sft: true, en_prompt: true, tgt_prompt: true },
        ..Default::default()
    };
    let a = tokenize_corpus(&corpus, &ours, special, &cfg, Strictness::Lenient).unwrap();
    let b = tokenize_corpus(&corpus, &hf, special, &cfg, Strictness::Lenient).unwrap();
    assert_eq!(a.examples.len(), b.examples.len());
    for (x, y) in a.examples.iter().zip(&b.examples) {
        assert_eq!(x.tgt_prompt, y.tgt_prompt, "{}", x.id);
        assert_eq!(
            (&x.tft, &x.lc, &x.et, &x.sft, &x.en_prompt),
            (&y.tft, &y.lc, &y.et, &y.sft, &y.en_prompt),
            "{}",
            x.id
        );
        assert_eq!((&x.tgt_query, &x.en_query), (&y.tgt_query, &y.en_query), "{}", x.id);
    }
}
