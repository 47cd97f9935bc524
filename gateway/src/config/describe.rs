//! `gateway config`: the effective settings as a TOML file, secrets redacted.

use serde::Serializer;
use serde_json::Value;

use super::{Config, Standalone};

impl Config {
    /// The effective settings, one `key = "value"` line each under the headings of `--help`,
    /// with secrets and URL passwords redacted. An unset setting says what its absence means.
    pub fn describe(&self) -> String {
        use clap::CommandFactory as _;
        let Ok(Value::Object(mut values)) = serde_json::to_value(self) else {
            unreachable!("the settings serialize to an object");
        };
        // Two settings are shown as they take effect rather than as they were given.
        values.insert(
            "database_url".into(),
            redact_url(&self.database_url()).into(),
        );
        values.insert("introspection".into(), self.introspection_enabled().into());
        let mut text = String::new();
        let mut section = None;
        for arg in Standalone::command().get_arguments() {
            let key = arg.get_id().as_str();
            let Some(value) = values.get(key) else {
                continue;
            };
            if arg.get_help_heading() != section {
                section = arg.get_help_heading();
                let gap = if text.is_empty() { "" } else { "\n" };
                text += &format!("{gap}# {}\n", section.unwrap_or("Settings"));
            }
            let value = match value {
                Value::Null => unset(key).to_owned(),
                Value::Array(items) if items.is_empty() => unset(key).to_owned(),
                // A list, as its variable takes it.
                Value::Array(items) => items
                    .iter()
                    .map(|item| {
                        item.as_str()
                            .map_or_else(|| item.to_string(), str::to_owned)
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            text += &format!("{key} = {value:?}\n");
        }
        text
    }
}

/// What an unset setting means, as `gateway config` prints it. A file that holds such a value
/// reads as the setting left unset.
fn unset(key: &str) -> &'static str {
    match key {
        "jwt_secret" => "<unset: a development secret>",
        "auth_events_secret" => "<unset: only service tokens may post auth events>",
        "nats_url" => "<unset: no broker>",
        "payment_url" => "<unset: payouts are settled by the ledger>",
        "smtp" => "<unset: mail is kept in the mailbox>",
        "tls_ca_file" => "<unset: the system's roots only>",
        "clock_file" => "<unset: the system clock>",
        "cors_origins" => "<unset: no other origin>",
        "metrics_token" => "<unset: /metrics is not served>",
        _ => "<unset>",
    }
}

/// Serializes a secret as `<redacted>`, or as nothing when unset.
pub(super) fn secret<S: Serializer>(value: &Option<String>, out: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => out.serialize_str("<redacted>"),
        None => out.serialize_none(),
    }
}

/// Serializes a URL without its password.
pub(super) fn url<S: Serializer>(value: &Option<String>, out: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(url) => out.serialize_str(&redact_url(url)),
        None => out.serialize_none(),
    }
}

/// A URL without its password.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:<redacted>@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every setting is printed, and nothing but the settings: a field added to a section
    /// without a flag, or a flag whose id differs from its field, fails here.
    #[test]
    fn describe_prints_each_setting_once() {
        use clap::CommandFactory as _;
        let config = Config::defaults().unwrap();
        let Value::Object(values) = serde_json::to_value(&config).unwrap() else {
            panic!("not an object");
        };
        let mut serialized: Vec<&str> = values.keys().map(String::as_str).collect();
        let command = Standalone::command();
        let mut flags: Vec<&str> = command
            .get_arguments()
            .map(|arg| arg.get_id().as_str())
            .collect();
        serialized.sort_unstable();
        flags.sort_unstable();
        assert_eq!(serialized, flags);
        let described = config.describe();
        let settings = described
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'));
        assert_eq!(settings.count(), flags.len(), "{described}");
    }

    #[test]
    fn secrets_and_passwords_are_redacted() {
        let mut config = Config::defaults().unwrap();
        config.auth.jwt_secret = Some("hunter2".into());
        config.broker.nats_url = Some("nats://relay:s3cret@broker:4222".into());
        let described = config.describe();
        assert!(!described.contains("hunter2"), "{described}");
        assert!(!described.contains("s3cret"), "{described}");
        assert!(
            described.contains("jwt_secret = \"<redacted>\""),
            "{described}"
        );
        assert!(
            described.contains("nats_url = \"nats://relay:<redacted>@broker:4222\""),
            "{described}"
        );
    }
}
