//! Embeds the repository's `queries/*.sql` in the crate (see `catalog::embedded`), so that an
//! installed `iamtrail` (`cargo install --path steps/iamtrail`) has its queries wherever it runs.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let dir = manifest.join("../../queries");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the query directory {}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.extension().and_then(|e| e.to_str()) == Some("sql"))
        .collect();
    files.sort();
    let mut out =
        String::from("/// `(file name, text)` of every `queries/*.sql`, sorted by name.\n");
    out.push_str("pub const EMBEDDED_QUERIES: &[(&str, &str)] = &[\n");
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8 file name");
        let absolute = path.canonicalize().expect("an existing query file");
        writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            absolute.display().to_string()
        )
        .expect("writing to a String");
    }
    out.push_str("];\n");
    let target = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"))
        .join("embedded_queries.rs");
    std::fs::write(&target, out).expect("writing the embedded query list");
}
