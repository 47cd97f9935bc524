//! Which media type a GraphQL response takes, from the request's `Accept` header, as the
//! GraphQL-over-HTTP specification says.

use axum::http::{HeaderMap, header};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";

/// The media type of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    GraphqlResponse,
    Json,
}

impl Media {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::GraphqlResponse => GRAPHQL_RESPONSE,
            Self::Json => JSON,
        }
    }
}

/// The response type the `Accept` header allows; `None` when it allows neither.
pub fn negotiate(headers: &HeaderMap) -> Option<Media> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        // The specification: no Accept header is taken as `application/json`.
        return Some(Media::Json);
    };
    let accept = accept.to_str().unwrap_or_default();
    let ranges: Vec<String> = accept
        .split(',')
        .filter(|range| {
            // `q=0` means "not this one".
            !range
                .split(';')
                .skip(1)
                .any(|param| matches!(param.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"))
        })
        .filter_map(|range| range.split(';').next())
        .map(|media| media.trim().to_ascii_lowercase())
        .collect();
    let has = |media: &str| ranges.iter().any(|r| r == media);
    if has("application/graphql-response+json") {
        Some(Media::GraphqlResponse)
    } else if has("application/json") || has("*/*") || has("application/*") {
        // A client that takes anything may predate the specification: it gets what such
        // clients expect.
        Some(Media::Json)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_str(value).expect("a header"),
        );
        headers
    }

    #[test]
    fn negotiation_follows_the_specification() {
        // "If the client does not supply an Accept header, the server SHOULD treat the request
        // as if it had Accept: application/json."
        assert_eq!(negotiate(&HeaderMap::new()), Some(Media::Json));
        assert_eq!(
            negotiate(&accept("application/graphql-response+json")),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(negotiate(&accept("application/json")), Some(Media::Json));
        // The server audit: "SHOULD accept */* and use application/json for the content-type".
        assert_eq!(negotiate(&accept("*/*")), Some(Media::Json));
        assert_eq!(
            negotiate(&accept("application/graphql-response+json, */*")),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(
            negotiate(&accept(
                "application/graphql-response+json;q=0, application/json"
            )),
            Some(Media::Json)
        );
        assert_eq!(negotiate(&accept("text/html")), None);
    }
}
