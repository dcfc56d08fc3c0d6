//! Load a checkpoint (HF directory or .gguf) and save it as an HF directory with dft-models' writer.
//! Used by tools/oracle/model_fixtures.py to check that transformers loads what we save.
//! Usage: cargo run --release -p dft-models --example resave -- IN OUT
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: resave IN OUT");
        std::process::exit(2);
    }
    let device = Default::default();
    let pre = dft_models::load_pretrained::<burn::backend::Flex>(std::path::Path::new(&args[1]), &device)
        .unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(1)
        });
    pre.model.save_pretrained(std::path::Path::new(&args[2]), pre.tokenizer.as_ref()).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    println!("saved {}", args[2]);
}
