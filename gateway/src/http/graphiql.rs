//! GraphiQL, served whole by the gateway: the page, our start-up script, and the browser
//! assets `build.rs` fetched from the npm registry. No URL in the page leaves the gateway.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

const PAGE: &str = include_str!("graphiql/index.html");
const START: &str = include_str!("graphiql/ates-graphiql.js");
const STYLE: &str = include_str!("graphiql/ates-graphiql.css");

/// The assets by the name they are served under, with their media type.
const ASSETS: [(&str, &str, &[u8]); 5] = [
    (
        "graphiql.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/graphiql/graphiql.min.js")),
    ),
    (
        "graphiql.min.css",
        "text/css; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/graphiql/graphiql.min.css")),
    ),
    (
        "react.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!(concat!(
            env!("OUT_DIR"),
            "/graphiql/react.production.min.js"
        )),
    ),
    (
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!(concat!(
            env!("OUT_DIR"),
            "/graphiql/react-dom.production.min.js"
        )),
    ),
    (
        "graphql-ws.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/graphiql/graphql-ws.min.js")),
    ),
];

/// The GraphiQL page, or a note saying this build has none.
pub fn page() -> Response {
    if cfg!(graphiql_missing) {
        return (
            StatusCode::OK,
            Html(
                "<!doctype html><title>aTES</title><p>This build of the gateway has no GraphiQL \
                 (its assets could not be fetched when it was built). The API is at POST /graphql.",
            ),
        )
            .into_response();
    }
    Html(PAGE).into_response()
}

/// `GET /graphiql/assets/{name}`.
pub async fn asset(Path(name): Path<String>) -> Response {
    let found = if name == "ates-graphiql.js" {
        Some(("text/javascript; charset=utf-8", START.as_bytes()))
    } else if name == "ates-graphiql.css" {
        Some(("text/css; charset=utf-8", STYLE.as_bytes()))
    } else {
        ASSETS
            .iter()
            .find(|(served, ..)| *served == name)
            .map(|(_, media, bytes)| (*media, *bytes))
    };
    match found {
        Some((media, bytes)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, media),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
