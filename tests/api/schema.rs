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
