//! Throwaway databases for tests, on either store: a SQLite file in a temporary folder, or a
//! fresh PostgreSQL database on the server `TEST_DATABASE_URL` names. Behind the `testing`
//! feature, for the crates' test suites only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{Backend, Clock, Db};

/// The variable naming the PostgreSQL server the tests may create databases on.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// An empty database of its own, and a folder beside it (for its clock file, or a gateway's
/// data). The folder goes when this is dropped; a PostgreSQL database goes with
/// [`Scratch::finish`], or else with the next CI run.
pub struct Scratch {
    pub url: String,
    pub backend: Backend,
    folder: tempfile::TempDir,
    /// The admin URL and the name of a PostgreSQL database made for this test.
    server: Option<(String, String)>,
}

impl Scratch {
    pub fn sqlite() -> Self {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let url = format!("sqlite://{}", folder.path().join("ates.db").display());
        Self {
            url,
            backend: Backend::Sqlite,
            folder,
            server: None,
        }
    }

    /// `None`, said aloud, when `TEST_DATABASE_URL` is not set: the PostgreSQL run is skipped.
    pub async fn postgres() -> Option<Self> {
        let Ok(admin) = std::env::var(TEST_DATABASE_URL) else {
            eprintln!("{TEST_DATABASE_URL} is not set: skipping the PostgreSQL run of this test");
            return None;
        };
        let name = format!("ates_test_{}", uuid::Uuid::new_v4().simple());
        let url = crate::create_database(&admin, &name)
            .await
            .expect("TEST_DATABASE_URL answers and may create databases");
        Some(Self {
            url,
            backend: Backend::Postgres,
            folder: tempfile::tempdir().expect("a temporary folder"),
            server: Some((admin, name)),
        })
    }

    /// Another empty database on the same store.
    pub async fn sibling(&self) -> Self {
        match self.backend {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => Self::postgres().await.expect("PostgreSQL is configured"),
        }
    }

    /// `sqlite` or `postgres`, for assertion messages.
    pub fn name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// The temporary folder that lives as long as this database.
    pub fn folder(&self) -> &Path {
        self.folder.path()
    }

    /// Sets the clock file of this database's users to `at` (RFC 3339); its path.
    pub fn set_clock(&self, at: &str) -> PathBuf {
        let path = self.folder().join("clock");
        std::fs::write(&path, at).expect("write the clock file");
        path
    }

    /// Connects and migrates.
    pub async fn connect(&self) -> Db {
        let db = Db::connect(&self.url, 8).await.expect("connect");
        db.migrate().await.expect("migrate");
        db
    }

    /// Connects and migrates, with business time read from the clock file, set to `now`.
    pub async fn connect_at(&self, now: &str) -> Db {
        let clock = self.set_clock(now);
        self.connect()
            .await
            .with_clock(Clock::File(Arc::new(clock)))
    }

    /// Drops a PostgreSQL database made for the test (SQLite's file goes with the folder).
    pub async fn finish(self) {
        if let Some((admin, name)) = &self.server {
            crate::drop_database(admin, name).await.expect("drop");
        }
    }
}
