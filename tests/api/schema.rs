//! The contract: `schema.graphql` is what the code serves, and the documentation's examples are
//! valid against it.

use std::process::{Command, Stdio};

use crate::helpers::js_dir;

/// The committed contract is what the code serves: regenerate it with
/// `cargo run -p gateway -- schema > schema.graphql`.
#[test]
fn committed_schema_matches_the_code() {
    let committed = include_str!("../../schema.graphql");
    let generated = gateway::api::export_sdl();
    assert!(
        committed == generated,
        "schema.graphql is stale: run `cargo run -p gateway -- schema > schema.graphql`"
    );
}

/// Every GraphQL example in `docs/` and the README validates against `schema.graphql`
/// (graphql-js), so a schema change that breaks one fails here.
#[test]
fn the_documented_examples_are_valid_against_the_schema() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new("node")
        .arg(js_dir().join("docs.mjs"))
        .arg(root.join("schema.graphql"))
        .arg(root.join("docs/api.md"))
        .stderr(Stdio::inherit())
        .output()
        .expect("node is installed");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}");
}

/// Every GraphQL document the web app sends (`gateway/web/graphql/`) validates against
/// `schema.graphql`, and is named as its file, so a schema change that breaks the app fails
/// here.
#[test]
fn the_web_apps_documents_are_valid_against_the_schema() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut documents: Vec<_> = std::fs::read_dir(root.join("gateway/web/graphql"))
        .expect("the app's documents")
        .map(|entry| entry.expect("an entry").path())
        .collect();
    documents.sort();
    assert!(documents.len() >= 10, "{documents:?}");
    let output = Command::new("node")
        .arg(js_dir().join("docs.mjs"))
        .arg(root.join("schema.graphql"))
        .args(&documents)
        .stderr(Stdio::inherit())
        .output()
        .expect("node is installed");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}");
    assert!(
        printed.contains(&format!("\"blocks\":{}", documents.len())),
        "{printed}"
    );
}

/// The repository documents itself: no README, doc, source or script of ours points at a path
/// above it, which a user who cloned it would not have.
#[test]
fn nothing_refers_to_a_path_outside_the_repository() {
    // The team's design folder beside the checkout, spelt so that this line does not match.
    const OUTSIDE: &str = concat!("..", "/shared");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut pending = vec![root.clone()];
    let mut read = 0;
    let mut offending = Vec::new();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("a folder of the repository") {
            let path = entry.expect("an entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if path.is_dir() {
                if !matches!(name, "target" | "node_modules" | ".git") {
                    pending.push(path);
                }
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            read += 1;
            for (n, line) in text.lines().enumerate() {
                if line.contains(OUTSIDE) {
                    offending.push(format!("{}:{}: {line}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(
        read > 100,
        "read only {read} files: is this the repository?"
    );
    assert!(offending.is_empty(), "{}", offending.join("\n"));
}
