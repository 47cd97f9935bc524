//! The popugs' web app at `/`, served whole by the gateway: plain ES modules, their styles and
//! their GraphQL documents from `gateway/web/`, and the `graphql-ws` client and uPlot (the
//! charts) that `build.rs` fetched from the npm registry. No URL in the app leaves the gateway.
//!
//! Every asset is served under `/app/{digest}/`, where the digest is taken over all of them:
//! browsers keep them for a year, and a gateway with other assets serves them under another
//! path. The page itself is never kept, so it always names the assets of the gateway that
//! serves it.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use sha2::{Digest as _, Sha256};

/// One file of the app: its path under the digest, and its bytes.
struct Asset {
    path: &'static str,
    bytes: &'static [u8],
}

macro_rules! web {
    ($($path:literal),* $(,)?) => {
        [$(Asset { path: $path, bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $path)) }),*]
    };
}

/// Every file of `gateway/web/` but the page (a test checks that none is left out).
const APP: [Asset; 26] = web![
    "app.js",
    "app.css",
    "api.js",
    "dom.js",
    "session.js",
    "words.js",
    "pages/board.js",
    "pages/dashboard.js",
    "pages/signin.js",
    "pages/tracker.js",
    "graphql/AuditLog.graphql",
    "graphql/Board.graphql",
    "graphql/CloseDay.graphql",
    "graphql/CompanyPayouts.graphql",
    "graphql/CompleteTask.graphql",
    "graphql/CreateTask.graphql",
    "graphql/Days.graphql",
    "graphql/Me.graphql",
    "graphql/Money.graphql",
    "graphql/MyAssignments.graphql",
    "graphql/Popugs.graphql",
    "graphql/RetryPayout.graphql",
    "graphql/ShuffleTasks.graphql",
    "graphql/Today.graphql",
    "graphql/TopTasks.graphql",
    "graphql/Tracker.graphql",
];

/// What `build.rs` fetched from npm: the graphql-ws client (GraphiQL's too), and uPlot.
const VENDORED: [Asset; 3] = [
    Asset {
        path: "graphql-ws.min.js",
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/graphiql/graphql-ws.min.js")),
    },
    Asset {
        path: "uPlot.iife.min.js",
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/graphiql/uPlot.iife.min.js")),
    },
    Asset {
        path: "uPlot.min.css",
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/graphiql/uPlot.min.css")),
    },
];

const PAGE: &str = include_str!("../../web/index.html");

fn assets() -> impl Iterator<Item = &'static Asset> {
    APP.iter().chain(VENDORED.iter())
}

/// The digest of every asset, their paths and their bytes.
static DIGEST: LazyLock<String> = LazyLock::new(|| {
    let mut hasher = Sha256::new();
    for asset in assets() {
        hasher.update(asset.path.as_bytes());
        hasher.update([0]);
        hasher.update((asset.bytes.len() as u64).to_le_bytes());
        hasher.update(asset.bytes);
    }
    hex::encode(&hasher.finalize()[..8])
});

static PAGE_WITH_ASSETS: LazyLock<String> =
    LazyLock::new(|| PAGE.replace("%ASSETS%", &format!("/app/{}", *DIGEST)));

/// `GET /`: the app's page.
pub async fn page() -> Response {
    if cfg!(graphiql_missing) {
        return (
            StatusCode::OK,
            [(header::CACHE_CONTROL, "no-cache")],
            Html(
                "<!doctype html><html lang=\"en\"><title>aTES</title><p>This build of the gateway \
                 has no web app: its browser assets could not be fetched when it was built. The \
                 API is at POST /graphql.</p></html>",
            ),
        )
            .into_response();
    }
    (
        [(header::CACHE_CONTROL, "no-cache")],
        Html(PAGE_WITH_ASSETS.as_str()),
    )
        .into_response()
}

/// `GET /app/{digest}/{*path}`: an asset of this gateway's app, kept by browsers for good.
pub async fn asset(Path((digest, path)): Path<(String, String)>) -> Response {
    let found = assets().find(|asset| asset.path == path);
    match found {
        Some(asset) if digest == *DIGEST => (
            [
                (header::CONTENT_TYPE, media_type(asset.path)),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            asset.bytes,
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn media_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, extension)| extension) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("graphql") => "application/graphql; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file added to `gateway/web/` and not to [`APP`] would be a 404 in the browser.
    #[test]
    fn every_file_of_the_app_is_served() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut pending = vec![root.clone()];
        let mut files = Vec::new();
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(dir).expect("the app's folder") {
                let path = entry.expect("an entry").path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    let relative = path.strip_prefix(&root).expect("under the root");
                    files.push(relative.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        files.retain(|file| file != "index.html");
        files.sort();
        let mut served: Vec<String> = APP.iter().map(|a| a.path.to_owned()).collect();
        served.sort();
        assert_eq!(files, served);
    }

    #[test]
    fn the_page_names_its_assets_by_their_digest() {
        assert_eq!(DIGEST.len(), 16);
        assert!(!PAGE_WITH_ASSETS.contains("%ASSETS%"));
        assert!(PAGE_WITH_ASSETS.contains(&format!("/app/{}/app.js", *DIGEST)));
    }
}
