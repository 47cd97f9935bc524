//! The operator's subcommands, run as the real binary.

use crate::helpers::{TestDatabase, run_gateway as gateway};

#[test]
fn config_prints_the_effective_settings_without_secrets() {
    let (ok, text) = gateway(
        &["--timezone", "Europe/Berlin", "config"],
        &[
            ("ATES_JWT_SECRET", "the-shared-secret"),
            (
                "DATABASE_URL",
                "postgres://ates:hunter2@db.internal:5432/ates",
            ),
        ],
    );
    assert!(ok, "{text}");
    assert!(text.contains("timezone = \"Europe/Berlin\""), "{text}");
    assert!(text.contains("jwt_secret = \"<redacted>\""), "{text}");
    assert!(
        text.contains("postgres://ates:<redacted>@db.internal:5432/ates"),
        "{text}"
    );
    assert!(
        !text.contains("the-shared-secret") && !text.contains("hunter2"),
        "{text}"
    );
}

/// The example in `deploy/` is a configuration the gateway takes as it stands.
#[test]
fn the_example_configuration_is_accepted() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/ates.example.toml");
    let (ok, text) = gateway(&["--config", example, "config"], &[]);
    assert!(ok, "{text}");
    for setting in [
        "payment_url = \"https://payments.internal/payouts\"",
        "smtp_tls = \"starttls\"",
        "tls_ca_file = \"/etc/ates/company-ca.pem\"",
    ] {
        assert!(text.contains(setting), "{setting} in {text}");
    }
}

#[test]
fn a_config_file_is_overridden_by_variables_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ates.toml");
    std::fs::write(
        &file,
        "timezone = \"Europe/Berlin\"\nmax_query_depth = 9\nallow_batch = true\n\
         listen = \"127.0.0.1:9000\"\njwt_secret = \"from-the-file\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let (ok, text) = gateway(
        &["--config", file, "--max-query-depth", "12", "config"],
        &[("ATES_LISTEN", "127.0.0.1:9100")],
    );
    assert!(ok, "{text}");
    for line in [
        "timezone = \"Europe/Berlin\"",
        "allow_batch = \"true\"",
        // A variable wins over the file, a flag over both.
        "listen = \"127.0.0.1:9100\"",
        "max_query_depth = \"12\"",
        "jwt_secret = \"<redacted>\"",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    assert!(!text.contains("from-the-file"));

    // What `gateway config` prints is itself a valid file.
    let printed = dir.path().join("printed.toml");
    let (_, effective) = gateway(&["--config", file, "config"], &[]);
    std::fs::write(
        &printed,
        effective.replace("jwt_secret = \"<redacted>\"\n", ""),
    )
    .unwrap();
    let (ok, again) = gateway(&["config"], &[("ATES_CONFIG", printed.to_str().unwrap())]);
    assert!(ok, "{again}");
    let without_secret = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| !line.starts_with("jwt_secret"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(without_secret(&again), without_secret(&effective));
}

#[test]
fn a_wrong_setting_stops_the_start_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("max_query_depth = \"deep\"\n", "`max_query_depth`"),
        ("listen = \"nowhere\"\n", "`listen`"),
        ("colour = \"blue\"\n", "`colour`: no such setting"),
        ("jwt_secret = \"<redacted>\"\n", "`jwt_secret`"),
        ("timezone = [1, 2]\n", "`timezone`"),
        ("not toml at all", "not valid TOML"),
    ];
    for (contents, named) in cases {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, contents).unwrap();
        let (ok, text) = gateway(&["--config", file.to_str().unwrap(), "config"], &[]);
        assert!(!ok, "{contents} was accepted: {text}");
        assert!(text.contains(named), "{contents}: {text}");
    }
    let (ok, text) = gateway(&["config"], &[("ATES_MAX_QUERY_DEPTH", "deep")]);
    assert!(!ok);
    assert!(text.contains("--max-query-depth"), "{text}");
}

async fn migrations_apply_once(database: TestDatabase) {
    for _ in 0..2 {
        let (ok, text) = gateway(&["migrate"], &[("DATABASE_URL", &database.url)]);
        assert!(ok, "{text}");
    }
    let db = ates_db::Db::connect(&database.url, 1).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let backend = if database.url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    let files = std::fs::read_dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../migrations")
            .join(backend),
    )
    .unwrap()
    .count();
    assert_eq!(applied as usize, files, "each migration once");
}

#[tokio::test]
async fn sqlite_migrate_applies_each_migration_once() {
    migrations_apply_once(TestDatabase::sqlite()).await;
}

#[tokio::test]
async fn postgres_migrate_applies_each_migration_once() {
    if let Some(database) = TestDatabase::postgres().await {
        migrations_apply_once(database).await;
    }
}
