//! Bearer tokens from the company's auth service.
//!
//! The algorithm is fixed by configuration (HS256 with a shared secret, or RS256 with the auth
//! service's public key or its JWKS) and never taken from the token; `exp` and `sub` are
//! required, `iss` and `aud` are checked when configured.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use task_domain::{PopugClaims, PopugId, Role};

use crate::config::Config;

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 10;
/// How far ahead of our clock a token's `iat` may be: the auth service's clock may run ahead of
/// ours by this much, and no more (a token "issued" years ahead would outrank every later
/// change of its popug).
const FUTURE_IAT_SECONDS: i64 = 60;
/// The bounds of the auth service's own events (`events/schemas/popug.*.json`).
const MAX_SUB_CHARS: usize = 128;
const MAX_NAME_CHARS: usize = 200;
const MAX_EMAIL_CHARS: usize = 320;
const MAX_ROLE_CHARS: usize = 64;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
}

/// `aud`: one audience, or several (RFC 7519 allows both).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Claims {
    /// The popug's claims are as long as the auth service's own events allow, and hold no
    /// NUL (which no store keeps).
    fn check_lengths(&self) -> Result<(), InvalidToken> {
        let bounded = [
            ("sub", Some(&self.sub), MAX_SUB_CHARS),
            ("name", self.name.as_ref(), MAX_NAME_CHARS),
            ("email", self.email.as_ref(), MAX_EMAIL_CHARS),
            ("role", self.role.as_ref(), MAX_ROLE_CHARS),
        ];
        for (claim, value, max) in bounded {
            let Some(value) = value else { continue };
            if value.chars().count() > max {
                return Err(InvalidToken(format!(
                    "{claim} is longer than {max} characters"
                )));
            }
            if value.contains('\0') {
                return Err(InvalidToken(format!("{claim} holds a NUL character")));
            }
        }
        Ok(())
    }

    /// What the claims say about the popug. A token without `iat` can create a popug but never
    /// refresh one: nothing says it is newer than what the replica holds.
    pub fn popug(&self) -> PopugClaims {
        let name = self
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.sub);
        PopugClaims {
            id: PopugId(self.sub.clone()),
            name: name.to_owned(),
            email: self.email.clone().filter(|e| !e.trim().is_empty()),
            role: Role::from_claim(self.role.as_deref().unwrap_or("worker")),
            issued_at: self
                .iat
                .and_then(|iat| DateTime::from_timestamp(iat, 0))
                .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        }
    }
}

/// Why a token was refused. Clients only ever see "invalid token"; this is for the logs.
#[derive(Debug, thiserror::Error)]
#[error("invalid token: {0}")]
pub struct InvalidToken(String);

/// Where verification keys come from.
enum Keys {
    Fixed(Arc<DecodingKey>),
    Jwks(Arc<Jwks>),
}

pub struct Authenticator {
    keys: Keys,
    validation: Validation,
    /// Present with a shared secret only: what `gateway token` signs with.
    encoding: Option<EncodingKey>,
}

impl Authenticator {
    pub fn hs256(secret: &[u8], config: &Config) -> Self {
        Self {
            keys: Keys::Fixed(Arc::new(DecodingKey::from_secret(secret))),
            validation: validation(Algorithm::HS256, config),
            encoding: Some(EncodingKey::from_secret(secret)),
        }
    }

    pub fn rs256(public_key_pem: &Path, config: &Config) -> anyhow::Result<Self> {
        let pem = std::fs::read(public_key_pem).with_context(|| {
            format!(
                "cannot read ATES_JWT_PUBLIC_KEY {}",
                public_key_pem.display()
            )
        })?;
        Ok(Self {
            keys: Keys::Fixed(Arc::new(
                DecodingKey::from_rsa_pem(&pem)
                    .context("ATES_JWT_PUBLIC_KEY is not an RSA public key in PEM")?,
            )),
            validation: validation(Algorithm::RS256, config),
            encoding: None,
        })
    }

    /// RS256 with the keys of the auth service's JWKS, chosen by `kid`.
    pub fn jwks(jwks: Jwks, config: &Config) -> Self {
        Self {
            keys: Keys::Jwks(Arc::new(jwks)),
            validation: validation(Algorithm::RS256, config),
            encoding: None,
        }
    }

    /// The JWKS, when keys come from one.
    pub fn key_set(&self) -> Option<&Arc<Jwks>> {
        match &self.keys {
            Keys::Jwks(jwks) => Some(jwks),
            Keys::Fixed(_) => None,
        }
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, InvalidToken> {
        let key = match &self.keys {
            Keys::Fixed(key) => Arc::clone(key),
            Keys::Jwks(jwks) => jwks.key_for(token).await?,
        };
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            .map_err(|e| InvalidToken(e.to_string()))?;
        let claims = data.claims;
        let sub_ok = !claims.sub.trim().is_empty() && claims.sub.chars().count() <= MAX_SUB_CHARS;
        if !sub_ok {
            return Err(InvalidToken("sub is empty or too long".into()));
        }
        let now = Utc::now().timestamp();
        if claims
            .iat
            .is_some_and(|iat| iat > now.saturating_add(FUTURE_IAT_SECONDS))
        {
            return Err(InvalidToken("iat is in the future".into()));
        }
        claims.check_lengths()?;
        Ok(claims)
    }

    /// Signs claims with the shared secret; `None` when tokens are verified with a public key.
    pub fn sign(&self, claims: &Claims) -> Option<anyhow::Result<String>> {
        let key = self.encoding.as_ref()?;
        Some(jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, key).map_err(Into::into))
    }
}

/// Longest `kid` looked up; anything longer is refused without a fetch.
const MAX_KID_CHARS: usize = 256;

/// How long a token with a `kid` we do not hold waits for the fetch it set off. A provider that
/// hangs costs such a request this much, and no other request anything.
const UNKNOWN_KID_WAIT: Duration = Duration::from_secs(1);

/// The auth service's JSON Web Key Set, cached.
///
/// A request never waits on the auth service for a key the cache holds: [`Jwks::keep_fresh`]
/// fetches the set again in the background every `max_age` (and every `min_refresh` while
/// fetches fail). A `kid` not in the cache sets off a fetch, but at most one per `min_refresh`
/// whatever the number of tokens asking (a flood of made-up `kid`s costs one fetch per
/// interval), and its request waits [`UNKNOWN_KID_WAIT`] at most. A fetched set replaces the
/// cache whole, so a key the auth service removed stops working; a failed fetch keeps the keys
/// already held.
pub struct Jwks {
    url: String,
    client: reqwest::Client,
    min_refresh: Duration,
    max_age: Duration,
    cache: RwLock<KeyCache>,
    /// When the last fetch started; held across a fetch so askers queue behind it.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Option<Instant>,
}

impl Jwks {
    pub fn new(url: String, min_refresh: Duration, max_age: Duration) -> Self {
        Self {
            url,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("a client with a timeout builds"),
            min_refresh,
            max_age,
            cache: RwLock::default(),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    /// The cached key of `kid`.
    fn cached(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        let cache = self.cache.read().expect("the key cache is never poisoned");
        cache.keys.get(kid).cloned()
    }

    /// How long until the set should be fetched again: `max_age` after the last good fetch of
    /// a set that holds keys, and `min_refresh` (at least a second) while there is none.
    fn next_fetch_in(&self) -> Duration {
        let cache = self.cache.read().expect("the key cache is never poisoned");
        match cache.fetched_at {
            Some(at) if !cache.keys.is_empty() => self.max_age.saturating_sub(at.elapsed()),
            _ => self.min_refresh.max(Duration::from_secs(1)),
        }
    }

    /// Fetches the set again whenever [`Jwks::next_fetch_in`] says, for as long as the set is
    /// in use (it ends when the last [`Authenticator`] holding it is dropped).
    pub async fn keep_fresh(jwks: Weak<Jwks>) {
        loop {
            let Some(wait) = jwks.upgrade().map(|set| set.next_fetch_in()) else {
                return;
            };
            tokio::time::sleep(wait.max(Duration::from_millis(100))).await;
            let Some(set) = jwks.upgrade() else { return };
            set.refresh().await;
        }
    }

    async fn key_for(self: &Arc<Self>, token: &str) -> Result<Arc<DecodingKey>, InvalidToken> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| InvalidToken(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(InvalidToken(format!("algorithm {:?}", header.alg)));
        }
        let kid = header
            .kid
            .filter(|kid| kid.chars().count() <= MAX_KID_CHARS)
            .ok_or_else(|| InvalidToken("no usable kid".into()))?;
        if let Some(key) = self.cached(&kid) {
            return Ok(key);
        }
        // A fetch of its own task, so that a provider that hangs holds it up and not us.
        let set = Arc::clone(self);
        let fetch = tokio::spawn(async move { set.refresh().await });
        let _ = tokio::time::timeout(UNKNOWN_KID_WAIT, fetch).await;
        self.cached(&kid)
            .ok_or_else(|| InvalidToken(format!("kid {kid:?} is not in the JWKS")))
    }

    /// Fetches the set unless a fetch started less than `min_refresh` ago: whether it was
    /// fetched, or `None` when it was too soon. A failed fetch keeps the keys already held.
    pub async fn refresh(&self) -> Option<bool> {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return None;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "JWKS fetched");
                *self.cache.write().expect("the key cache is never poisoned") = KeyCache {
                    keys,
                    fetched_at: Some(Instant::now()),
                };
                Some(true)
            }
            Err(error) => {
                tracing::warn!(url = %self.url, error = %format!("{error:#}"), "JWKS fetch failed");
                Some(false)
            }
        }
    }

    /// The RSA keys of the set that have a `kid`; others are skipped.
    async fn fetch(&self) -> anyhow::Result<HashMap<String, Arc<DecodingKey>>> {
        let set: JwkSet = self
            .client
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let rsa = matches!(jwk.algorithm, AlgorithmParameters::RSA(_));
            let alg_ok = jwk
                .common
                .key_algorithm
                .is_none_or(|alg| alg == KeyAlgorithm::RS256);
            let (Some(kid), true, true) = (&jwk.common.key_id, rsa, alg_ok) else {
                continue;
            };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid.clone(), Arc::new(key));
                }
                Err(error) => tracing::warn!(%kid, %error, "JWKS key skipped"),
            }
        }
        Ok(keys)
    }
}

fn validation(algorithm: Algorithm, config: &Config) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_nbf = true;
    // A configured issuer or audience must be present, not merely right when present.
    let mut required = vec!["exp", "sub"];
    if let Some(issuer) = &config.auth.jwt_issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    match &config.auth.jwt_audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// The HS256 secret: configured, or a development secret kept in the data folder.
pub fn load_or_create_dev_secret(config: &Config) -> anyhow::Result<(Vec<u8>, bool)> {
    if let Some(secret) = &config.auth.jwt_secret {
        return Ok((secret.as_bytes().to_vec(), false));
    }
    config.ensure_data_dir()?;
    let path = config.server.data_dir.join("dev-jwt-secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if !existing.is_empty() {
            return Ok((existing.as_bytes().to_vec(), true));
        }
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    write_private(&path, secret.as_bytes())
        .with_context(|| format!("cannot write the development secret {}", path.display()))?;
    Ok((secret.into_bytes(), true))
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents)
}
