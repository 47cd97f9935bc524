//! Bearer tokens from the company's auth service.
//!
//! The algorithm is fixed by configuration (HS256 with a shared secret, or RS256 with the auth
//! service's public key) and never taken from the token; `exp` and `sub` are required, `iss` and
//! `aud` are checked when configured.

use std::path::Path;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use task_domain::{PopugClaims, PopugId, Role};

use crate::config::Config;

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 10;
const MAX_SUB_CHARS: usize = 128;
const MAX_NAME_CHARS: usize = 200;

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
    pub aud: Option<String>,
}

impl Claims {
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
            name: name.chars().take(MAX_NAME_CHARS).collect(),
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

pub struct Authenticator {
    decoding: DecodingKey,
    validation: Validation,
    /// Present with a shared secret only: what `gateway token` signs with.
    encoding: Option<EncodingKey>,
}

impl Authenticator {
    pub fn hs256(secret: &[u8], config: &Config) -> Self {
        Self {
            decoding: DecodingKey::from_secret(secret),
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
            decoding: DecodingKey::from_rsa_pem(&pem)
                .context("ATES_JWT_PUBLIC_KEY is not an RSA public key in PEM")?,
            validation: validation(Algorithm::RS256, config),
            encoding: None,
        })
    }

    pub fn verify(&self, token: &str) -> Result<Claims, InvalidToken> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| InvalidToken(e.to_string()))?;
        let claims = data.claims;
        let sub_ok = !claims.sub.trim().is_empty() && claims.sub.chars().count() <= MAX_SUB_CHARS;
        if !sub_ok {
            return Err(InvalidToken("sub is empty or too long".into()));
        }
        Ok(claims)
    }

    /// Signs claims with the shared secret; `None` when tokens are verified with a public key.
    pub fn sign(&self, claims: &Claims) -> Option<anyhow::Result<String>> {
        let key = self.encoding.as_ref()?;
        Some(jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, key).map_err(Into::into))
    }
}

fn validation(algorithm: Algorithm, config: &Config) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_nbf = true;
    // A configured issuer or audience must be present, not merely right when present.
    let mut required = vec!["exp", "sub"];
    if let Some(issuer) = &config.jwt_issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    match &config.jwt_audience {
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
    if let Some(secret) = &config.jwt_secret {
        return Ok((secret.as_bytes().to_vec(), false));
    }
    config.ensure_data_dir()?;
    let path = config.data_dir.join("dev-jwt-secret");
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
