//! `iamtrail query list` needs no checkout: the queries are built into the binary, so it works
//! from any directory (as after `cargo install --path steps/iamtrail`).

use std::path::Path;
use std::process::Command;

#[test]
fn query_list_works_outside_the_repository() {
    let repo_queries = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../queries");
    let expected: Vec<String> = std::fs::read_dir(&repo_queries)
        .expect("the repository's queries/")
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "sql").then(|| path.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    assert!(expected.len() >= 10, "queries/ has {expected:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_iamtrail"))
        .args(["query", "list"])
        .current_dir("/")
        .env("NO_COLOR", "1")
        .output()
        .expect("run iamtrail");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "iamtrail query list failed from /: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in &expected {
        assert!(
            stdout.contains(name.as_str()),
            "{name} missing from:\n{stdout}"
        );
    }
    assert!(
        stdout.contains(&format!("{} queries.", expected.len())),
        "{stdout}"
    );
}
