//! The operator's subcommands, run as the real binary.

use std::process::Command;

use crate::helpers::TestDatabase;

fn gateway(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied())
        .output()
        .expect("run the gateway");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

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
    migrations_apply_once(TestDatabase::sqlite().await).await;
}

#[tokio::test]
async fn postgres_migrate_applies_each_migration_once() {
    if let Some(database) = TestDatabase::postgres().await {
        migrations_apply_once(database).await;
    }
}
