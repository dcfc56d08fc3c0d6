// Links the system OpenBLAS (Debian libopenblas-dev) for cblas_sgemm.
fn main() {
    println!("cargo:rustc-link-lib=openblas");
}
