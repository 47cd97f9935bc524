//! Automatic persisted queries, in the protocol Apollo Client and urql speak: a client sends
//! `extensions.persistedQuery.sha256Hash` instead of the query's text, and the text with it
//! only when the gateway answers that it does not know the hash yet. Queries then travel as a
//! short `GET`, which caches in between can serve.
//!
//! The texts are kept in memory, least recently used first out, so a client cannot grow the
//! store without end; a replica that restarted or never saw a hash asks for the text again.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use sha2::{Digest as _, Sha256};

/// Why a persisted query cannot be served.
#[derive(Debug, PartialEq, Eq)]
pub enum Unpersisted {
    /// The hash is not known here: the client sends the text along, as the protocol has it.
    NotFound,
    /// Persisted queries are switched off (a store of no entries).
    NotSupported,
    /// The request is malformed, or its text is not what its hash says.
    Refused(String),
}

/// The texts of the queries clients have persisted, by their SHA-256.
pub struct PersistedQueries {
    texts: Option<Mutex<LruCache<[u8; 32], Arc<str>>>>,
    /// Longer texts are not kept (nor ones that nest too deep): the gateway refuses them anyway.
    max_query_bytes: usize,
}

impl PersistedQueries {
    /// A store of at most `capacity` texts; none at all for 0.
    pub fn new(capacity: usize, max_query_bytes: usize) -> Self {
        Self {
            texts: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
            max_query_bytes,
        }
    }

    /// The text a request stands for, from its `persistedQuery` extension (`version` and
    /// `sha256Hash`) and its `query`, if it sent one: a sent text is checked against the hash
    /// and kept.
    pub fn resolve(
        &self,
        extension: &serde_json::Value,
        query: Option<&str>,
    ) -> Result<Arc<str>, Unpersisted> {
        let Some(texts) = &self.texts else {
            return Err(Unpersisted::NotSupported);
        };
        if extension.get("version").and_then(serde_json::Value::as_u64) != Some(1) {
            return Err(Unpersisted::Refused(
                "persistedQuery.version must be 1".into(),
            ));
        }
        let hash = extension
            .get("sha256Hash")
            .and_then(serde_json::Value::as_str)
            .and_then(|hex| {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(hex, &mut hash).ok().map(|()| hash)
            })
            .ok_or_else(|| {
                Unpersisted::Refused("persistedQuery.sha256Hash must be 64 hex digits".into())
            })?;
        let mut texts = texts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match query {
            None => texts.get(&hash).cloned().ok_or(Unpersisted::NotFound),
            Some(text) => {
                if Sha256::digest(text.as_bytes())[..] != hash[..] {
                    return Err(Unpersisted::Refused(
                        "the query's SHA-256 is not persistedQuery.sha256Hash".into(),
                    ));
                }
                let text: Arc<str> = Arc::from(text);
                // Texts the gateway would refuse anyway are not kept.
                let kept = text.len() <= self.max_query_bytes
                    && crate::nesting::check(&*text, crate::nesting::MAX_NESTING).is_ok();
                if kept {
                    texts.put(hash, Arc::clone(&text));
                }
                Ok(text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn extension(text: &str) -> serde_json::Value {
        json!({ "version": 1, "sha256Hash": hex::encode(Sha256::digest(text.as_bytes())) })
    }

    #[test]
    fn a_text_is_kept_by_its_hash_and_the_oldest_goes_first() {
        let store = PersistedQueries::new(2, 1024);
        let (a, b, c) = ("{ me { id } }", "{ me { name } }", "{ me { role } }");
        assert_eq!(
            store.resolve(&extension(a), None),
            Err(Unpersisted::NotFound)
        );
        assert_eq!(&*store.resolve(&extension(a), Some(a)).unwrap(), a);
        assert_eq!(&*store.resolve(&extension(a), None).unwrap(), a);
        store.resolve(&extension(b), Some(b)).unwrap();
        store.resolve(&extension(c), Some(c)).unwrap();
        // `a` was used before `b`, so it went when `c` came: the store holds two.
        assert_eq!(
            store.resolve(&extension(a), None),
            Err(Unpersisted::NotFound)
        );
        assert_eq!(&*store.resolve(&extension(c), None).unwrap(), c);
    }

    #[test]
    fn a_text_that_is_not_its_hash_is_refused_and_not_kept() {
        let store = PersistedQueries::new(8, 1024);
        let lie = extension("{ me { id } }");
        assert!(matches!(
            store.resolve(&lie, Some("{ popugs { edges { cursor } } }")),
            Err(Unpersisted::Refused(_))
        ));
        assert_eq!(store.resolve(&lie, None), Err(Unpersisted::NotFound));
        assert!(matches!(
            store.resolve(&json!({ "version": 2, "sha256Hash": "00" }), None),
            Err(Unpersisted::Refused(_))
        ));
        let off = PersistedQueries::new(0, 1024);
        assert_eq!(off.resolve(&lie, None), Err(Unpersisted::NotSupported));
    }

    #[test]
    fn texts_over_the_query_limit_are_not_kept() {
        let store = PersistedQueries::new(8, 10);
        let long = "{ me { id name role } }";
        assert_eq!(&*store.resolve(&extension(long), Some(long)).unwrap(), long);
        assert_eq!(
            store.resolve(&extension(long), None),
            Err(Unpersisted::NotFound)
        );
    }
}
