//! Build script: the web UI is compiled by Vite into `assets/dist` and embedded into the
//! binary. A Rust build without it stops here and says which command builds it.

fn main() {
    let index = std::path::Path::new("assets/dist/index.html");
    println!("cargo:rerun-if-changed=assets/dist");
    if !index.exists() {
        panic!(
            "\n\nThe web UI is not built (assets/dist/index.html is missing).\n\
             Build it with:  npm --prefix assets ci && npm --prefix assets run build\n\
             (scripts/run and scripts/test do this for you.)\n\n"
        );
    }
}
