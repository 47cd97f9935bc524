//! Popug Data Updated: the events the auth service sends us, parsed and checked against their
//! schemas before anything acts on them.
//!
//! A message is an envelope (`type`, `version`, `id`, `occurredAt`, `data`) described by
//! `schemas/auth-envelope.v1.json`; its `data` by `schemas/<type>.v<version>.json`.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use jsonschema::Validator;
use serde::Deserialize;
use serde_json::Value;

/// What happened to the popug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PopugChange {
    /// Created or updated: the popug as the auth service now has it.
    Upserted {
        name: String,
        email: Option<String>,
        /// The role string as sent; unknown roles are ordinary popugs.
        role: String,
    },
    Deleted,
}

/// A valid Popug Data Updated event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PopugDataUpdated {
    pub id: String,
    pub event_type: &'static str,
    pub version: i64,
    pub occurred_at: DateTime<Utc>,
    pub popug_id: String,
    pub change: PopugChange,
}

/// Why a message was refused; the text is meant for the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadEvent {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the envelope is invalid: {0}")]
    Envelope(String),
    #[error("unknown event type {0:?} (known: popug.created, popug.updated, popug.deleted)")]
    UnknownType(String),
    #[error("{event_type} version {version} is not supported (supported: 1)")]
    UnsupportedVersion { event_type: String, version: i64 },
    #[error("{event_type} v{version} data is invalid: {reason}")]
    InvalidData {
        event_type: String,
        version: i64,
        reason: String,
    },
}

struct Schemas {
    envelope: Validator,
    created: Validator,
    updated: Validator,
    deleted: Validator,
}

static SCHEMAS: LazyLock<Schemas> = LazyLock::new(|| {
    let compile = |text: &str| {
        let schema: Value = serde_json::from_str(text).expect("the repository's schemas are JSON");
        jsonschema::validator_for(&schema).expect("the repository's schemas are valid")
    };
    Schemas {
        envelope: compile(include_str!("../schemas/auth-envelope.v1.json")),
        created: compile(include_str!("../schemas/popug.created.v1.json")),
        updated: compile(include_str!("../schemas/popug.updated.v1.json")),
        deleted: compile(include_str!("../schemas/popug.deleted.v1.json")),
    }
});

/// The schema violations of `instance`, or `None`.
fn violations(validator: &Validator, instance: &Value) -> Option<String> {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .take(3)
        .map(|error| {
            let path = error.instance_path.to_string();
            if path.is_empty() {
                error.to_string()
            } else {
                format!("{path}: {error}")
            }
        })
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

/// Whether any string of `value`, or any key, holds U+0000.
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(fields) => fields
            .iter()
            .any(|(key, value)| key.contains('\0') || holds_nul(value)),
        _ => false,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    #[serde(rename = "type")]
    event_type: String,
    version: i64,
    id: String,
    occurred_at: String,
    data: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpsertData {
    popug_id: String,
    name: String,
    #[serde(default)]
    email: Option<String>,
    role: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeletedData {
    popug_id: String,
}

impl PopugDataUpdated {
    /// Parses and checks one message.
    pub fn parse(body: &[u8]) -> Result<Self, BadEvent> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| BadEvent::NotJson(e.to_string()))?;
        if holds_nul(&value) {
            // No store keeps it (PostgreSQL's text refuses it): a dead letter, not a retry.
            return Err(BadEvent::Envelope(
                "text may not contain the NUL character (U+0000)".into(),
            ));
        }
        if let Some(reason) = violations(&SCHEMAS.envelope, &value) {
            return Err(BadEvent::Envelope(reason));
        }
        let envelope: Envelope =
            serde_json::from_value(value).map_err(|e| BadEvent::Envelope(e.to_string()))?;
        let occurred_at = DateTime::parse_from_rfc3339(&envelope.occurred_at)
            .map_err(|e| BadEvent::Envelope(format!("occurredAt is not RFC 3339: {e}")))?
            .with_timezone(&Utc);
        let event_type: &'static str = match envelope.event_type.as_str() {
            "popug.created" => "popug.created",
            "popug.updated" => "popug.updated",
            "popug.deleted" => "popug.deleted",
            _ => return Err(BadEvent::UnknownType(envelope.event_type)),
        };
        if envelope.version != 1 {
            return Err(BadEvent::UnsupportedVersion {
                event_type: event_type.into(),
                version: envelope.version,
            });
        }
        let invalid = |reason: String| BadEvent::InvalidData {
            event_type: event_type.into(),
            version: envelope.version,
            reason,
        };
        let deleted = event_type == "popug.deleted";
        let validator = match event_type {
            "popug.created" => &SCHEMAS.created,
            "popug.updated" => &SCHEMAS.updated,
            _ => &SCHEMAS.deleted,
        };
        if let Some(reason) = violations(validator, &envelope.data) {
            return Err(invalid(reason));
        }
        let (popug_id, change) = if deleted {
            let data: DeletedData =
                serde_json::from_value(envelope.data).map_err(|e| invalid(e.to_string()))?;
            (data.popug_id, PopugChange::Deleted)
        } else {
            let data: UpsertData =
                serde_json::from_value(envelope.data).map_err(|e| invalid(e.to_string()))?;
            if data.name.trim().is_empty() {
                return Err(invalid("name is blank".into()));
            }
            let change = PopugChange::Upserted {
                name: data.name.trim().to_owned(),
                email: data.email.filter(|e| !e.trim().is_empty()),
                role: data.role,
            };
            (data.popug_id, change)
        };
        if popug_id.trim().is_empty() {
            return Err(invalid("popugId is blank".into()));
        }
        Ok(Self {
            id: envelope.id,
            event_type,
            version: envelope.version,
            occurred_at,
            popug_id,
            change,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<PopugDataUpdated, BadEvent> {
        PopugDataUpdated::parse(value.to_string().as_bytes())
    }

    fn event(event_type: &str, version: i64, data: Value) -> Value {
        json!({ "type": event_type, "version": version, "id": "e1",
                "occurredAt": "2026-11-26T10:00:00Z", "data": data })
    }

    #[test]
    fn valid_events_parse() {
        let created = parse(event(
            "popug.created",
            1,
            json!({ "popugId": "p1", "name": " Bob ", "email": "bob@x", "role": "manager" }),
        ))
        .unwrap();
        assert_eq!(created.popug_id, "p1");
        assert_eq!(
            created.change,
            PopugChange::Upserted {
                name: "Bob".into(),
                email: Some("bob@x".into()),
                role: "manager".into()
            }
        );
        let deleted = parse(event("popug.deleted", 1, json!({ "popugId": "p1" }))).unwrap();
        assert_eq!(deleted.change, PopugChange::Deleted);
        assert_eq!(
            deleted.occurred_at.to_rfc3339(),
            "2026-11-26T10:00:00+00:00"
        );
    }

    #[test]
    fn bad_events_are_refused_with_their_reason() {
        let upsert = json!({ "popugId": "p1", "name": "Bob", "role": "worker" });
        assert!(matches!(
            PopugDataUpdated::parse(b"{"),
            Err(BadEvent::NotJson(_))
        ));
        assert!(matches!(
            parse(event("popug.renamed", 1, upsert.clone())),
            Err(BadEvent::UnknownType(t)) if t == "popug.renamed"
        ));
        assert!(matches!(
            parse(event("popug.updated", 2, upsert.clone())),
            Err(BadEvent::UnsupportedVersion { version: 2, .. })
        ));
        let Err(BadEvent::InvalidData { reason, .. }) = parse(event(
            "popug.updated",
            1,
            json!({ "popugId": "p1", "name": "Bob" }),
        )) else {
            panic!("a missing role is invalid data")
        };
        assert!(reason.contains("role"), "{reason}");
        let mut no_id = event("popug.deleted", 1, json!({ "popugId": "p1" }));
        no_id.as_object_mut().unwrap().remove("id");
        assert!(matches!(parse(no_id), Err(BadEvent::Envelope(_))));
        let Err(BadEvent::InvalidData { reason, .. }) = parse(event(
            "popug.created",
            1,
            json!({ "popugId": "p1", "name": "   ", "role": "worker" }),
        )) else {
            panic!("a blank name is invalid data")
        };
        assert!(reason.contains("blank"), "{reason}");
        let mut bad_time = event("popug.deleted", 1, json!({ "popugId": "p1" }));
        bad_time["occurredAt"] = json!("yesterday");
        assert!(matches!(parse(bad_time), Err(BadEvent::Envelope(_))));
    }

    /// Damaged messages (bytes flipped, cut short, repeated) are refused or parsed, never a
    /// panic; whatever parses is a whole, valid event.
    #[test]
    fn damaged_messages_never_panic() {
        let valid = event(
            "popug.updated",
            1,
            json!({ "popugId": "p1", "name": "Bob", "email": "b@x", "role": "worker" }),
        )
        .to_string()
        .into_bytes();
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut bytes = valid.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % bytes.len();
                match next() % 4 {
                    0 => bytes[at] = next() as u8,
                    1 => bytes.truncate(at.max(1)),
                    2 => bytes.insert(at, b"{}[]\",:0e\\"[(next() % 9) as usize]),
                    _ => {
                        let copy = bytes[at..].to_vec();
                        bytes.extend_from_slice(&copy);
                    }
                }
            }
            if let Ok(parsed) = PopugDataUpdated::parse(&bytes) {
                assert_eq!(parsed.version, 1);
                assert!(!parsed.popug_id.trim().is_empty());
                assert!(!parsed.id.is_empty());
            }
        }
    }
}
