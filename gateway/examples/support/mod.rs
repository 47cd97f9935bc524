//! What the gateway's benchmarks share: a fresh database on the backend the command line names
//! (`postgres://…/postgres` as the first argument: a new database on that server; none: a
//! SQLite file in a temporary folder), removed again when the run ends.

use std::future::Future;
use std::path::PathBuf;

/// Runs `bench(backend, url, data_dir)` on a fresh database, then drops it (PostgreSQL).
pub async fn on_fresh_database<F, Fut>(bench: F) -> anyhow::Result<()>
where
    F: FnOnce(&'static str, String, PathBuf) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let dir = tempfile::tempdir()?;
    let admin_url = std::env::args().nth(1);
    let name = format!("ates_bench_{}", uuid::Uuid::new_v4().simple());
    let (backend, url) = match &admin_url {
        Some(admin_url) => (
            "postgres",
            ates_db::create_database(admin_url, &name).await?,
        ),
        None => (
            "sqlite",
            format!("sqlite://{}", dir.path().join("bench.db").display()),
        ),
    };
    let result = bench(backend, url, dir.path().to_path_buf()).await;
    if let Some(admin_url) = &admin_url {
        ates_db::drop_database(admin_url, &name).await?;
    }
    result
}
