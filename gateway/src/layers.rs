//! The gateway's modules stand in layers (see the crate's documentation): a module may import
//! only modules below its own, and no transport in `http` imports another. This test reads
//! every source file and holds each `crate::…` path to that rule, so an import circle cannot
//! come back unnoticed.

use std::path::{Path, PathBuf};

/// Top to bottom. Modules on one line stand side by side and may not import each other.
const LAYERS: &[&[&str]] = &[
    &["startup"],
    &["serve"],
    &["router"],
    &["http"],
    &["state"],
    &["api"],
    &["session"],
    &["workers"],
    &["auth_events"],
    &["auth"],
    &[
        "rate_limit",
        "media",
        "persisted",
        "metrics",
        "refusal",
        "config",
    ],
    &["body", "nesting"],
];

/// Modules of `http` that are not transports, which the transports may import.
const SHARED: &[&str] = &["answer", "keyed"];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("the source folder reads") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The names that follow `prefix` in `text`: `crate::api::Loaders` gives `api`.
fn paths_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.match_indices(prefix)
        .map(|(at, _)| {
            let rest = &text[at + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|name| !name.is_empty())
        .collect()
}

#[test]
fn every_import_points_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut broken = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let mut parts = relative.iter().map(|p| p.to_str().expect("UTF-8 paths"));
        let first = parts.next().expect("a file name");
        let module = first.strip_suffix(".rs").unwrap_or(first);
        let Some(own) = layer(module) else {
            continue; // lib.rs, main.rs, layers.rs: the crate's roots
        };
        let text = std::fs::read_to_string(&file).expect("a source file reads");
        for target in paths_after(&text, "crate::") {
            if target == module {
                continue;
            }
            match layer(target) {
                Some(theirs) if theirs > own => {}
                _ => broken.push(format!("{}: crate::{target}", relative.display())),
            }
        }
        if module == "http" {
            // A transport imports none of its siblings (`super::…`) nor itself through the crate.
            // A transport's own parts (`http/graphql/request.rs`) and its tests may use it
            // through `super::`.
            let transport = relative.iter().count() == 2;
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            // `answer` and `keyed` are not transports: what both GraphQL transports share.
            for target in paths_after(code, "super::")
                .into_iter()
                .filter(|_| transport)
                .filter(|target| !SHARED.iter().any(|shared| target.starts_with(shared)))
            {
                broken.push(format!("{}: super::{target}", relative.display()));
            }
            if text.contains("crate::http") {
                broken.push(format!("{}: crate::http", relative.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports that do not point down the layers:\n{}",
        broken.join("\n")
    );
}

#[test]
fn every_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs reads");
    for line in lib.lines() {
        let declared = line
            .trim()
            .trim_start_matches("pub ")
            .strip_prefix("mod ")
            .and_then(|rest| rest.strip_suffix(';'));
        if let Some(module) = declared
            && module != "layers"
        {
            assert!(layer(module).is_some(), "{module} is in no layer");
        }
    }
}
