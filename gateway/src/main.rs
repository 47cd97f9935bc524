//! The `gateway` command: serve (the default), and the operator's subcommands.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use gateway::auth::Claims;
use gateway::config::LogFormat;
use gateway::{App, Config, api, config};
use tracing_subscriber::EnvFilter;

/// glibc's allocator took a fifth of the gateway's CPU under load (arenas contended by the
/// runtime's threads, `malloc_consolidate`); mimalloc keeps per-thread heaps.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// aTES: the task tracker and accounting system of UberPopug Inc.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// A TOML file of settings, keyed as `gateway config` prints them; `ATES_*` variables and
    /// flags override it.
    #[arg(
        long = "config",
        env = "ATES_CONFIG",
        value_name = "FILE",
        global = true
    )]
    config_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the GraphQL API (the default).
    Serve,
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Apply the database migrations and exit. Replicas starting at once migrate once: the
    /// others wait for the lock.
    Migrate,
    /// Print the effective configuration, secrets redacted.
    Config,
    /// Make Payment: close every business day that has ended and is still open (or those up to
    /// `--day`), oldest first, and exit. Payment requests and mail are queued for the running
    /// gateways to deliver. Safe beside running gateways: they wait for the same lock.
    CloseDay {
        /// Last day to close, YYYY-MM-DD; yesterday when omitted.
        #[arg(long)]
        day: Option<chrono::NaiveDate>,
    },
    /// Check every invariant of the ledger on the live database and print each with its
    /// figures; exit 1 when one is broken, so that cron can run it.
    Verify {
        /// Seconds an event may wait for the ledger before the wait counts as a breach.
        #[arg(long, default_value_t = 300)]
        max_backlog_secs: u64,
    },
    /// Write a consistent copy of the SQLite database to FILE, owner-only, while gateways run
    /// (never copy `ates.db` itself: recent commits sit in `ates.db-wal`). Restore by putting
    /// the copy in place of `ates.db` while no gateway runs, then run `verify`. On PostgreSQL,
    /// use pg_dump.
    Backup {
        /// The new file; it must not exist.
        file: std::path::PathBuf,
    },
    /// Print a token signed with the configured secret, for trying the API.
    Token {
        /// admin, manager, accountant, or any other string for an ordinary popug.
        #[arg(long, default_value = "worker")]
        role: String,
        #[arg(long)]
        name: String,
        /// The popug's id; a new UUID when omitted.
        #[arg(long)]
        sub: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// Lifetime of the token.
        #[arg(long, default_value_t = 24)]
        hours: i64,
    },
}

/// The command line, with the settings of a `--config` file (or `ATES_CONFIG`) as defaults:
/// flags win over variables, variables over the file, the file over built-in defaults.
fn parse_cli() -> anyhow::Result<Cli> {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let file =
        config_file_argument(&args).or_else(|| std::env::var_os("ATES_CONFIG").map(Into::into));
    let mut command = Cli::command();
    if let Some(file) = file {
        for (key, value) in config::read_file(std::path::Path::new(&file))? {
            // Defaults are `'static` to clap; the file is read once per process.
            let value: &'static str = Box::leak(value.into_boxed_str());
            command = command.mut_arg(key, |arg| arg.default_value(value));
        }
    }
    Ok(Cli::from_arg_matches(&command.get_matches_from(args))?)
}

/// The value of `--config FILE` or `--config=FILE`, read before the full parse.
fn config_file_argument(args: &[std::ffi::OsString]) -> Option<std::path::PathBuf> {
    let mut args = args.iter().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg.to_str()?;
        if arg == "--config" {
            return args.next().map(Into::into);
        }
        if let Some(file) = arg.strip_prefix("--config=") {
            return Some(file.into());
        }
    }
    None
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = parse_cli()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::Schema => {
            print!("{}", api::export_sdl());
            Ok(())
        }
        Command::Migrate => {
            let config = cli.config;
            let db = gateway::connect(&config).await?;
            db.migrate().await?;
            println!(
                "migrations applied to {}",
                config::redact_url(&config.database_url())
            );
            Ok(())
        }
        Command::CloseDay { day } => close_day(cli.config, day).await,
        Command::Verify { max_backlog_secs } => verify(cli.config, max_backlog_secs).await,
        Command::Backup { file } => {
            let db = gateway::connect(&cli.config).await?;
            db.backup_to(&file).await?;
            println!("backed up to {}", file.display());
            Ok(())
        }
        Command::Config => {
            print!("{}", cli.config.describe());
            Ok(())
        }
        Command::Token {
            role,
            name,
            sub,
            email,
            hours,
        } => {
            let sub = sub.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let token = mint(&cli.config, &sub, role, name, email, hours)?;
            println!("{token}");
            Ok(())
        }
    }
}

/// A token for popug `sub`, signed with the configured secret, valid for `hours`.
fn mint(
    config: &Config,
    sub: &str,
    role: String,
    name: String,
    email: Option<String>,
    hours: i64,
) -> anyhow::Result<String> {
    let (auth, _) = gateway::authenticator(config)?;
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: sub.to_owned(),
        exp: now + hours * 3600,
        iat: Some(now),
        name: Some(name),
        email,
        role: Some(role),
        iss: config.auth.jwt_issuer.clone(),
        aud: config
            .auth
            .jwt_audience
            .clone()
            .map(gateway::auth::Audience::One),
    };
    auth.sign(&claims)
        .context("tokens are verified with a public key here: the auth service issues them")?
}

async fn verify(config: Config, max_backlog_secs: u64) -> anyhow::Result<()> {
    let db = gateway::connect(&config).await?;
    db.migrate().await?;
    let started = std::time::Instant::now();
    let report =
        accounting_domain::check_ledger(&db, std::time::Duration::from_secs(max_backlog_secs))
            .await
            .context("the check could not run")?;
    for check in &report.checks {
        let verdict = if check.violations == 0 {
            "ok    "
        } else {
            "BROKEN"
        };
        println!("{verdict} {}: {}", check.name, check.figure);
    }
    let broken = report.violations();
    println!(
        "{} in {:.2} s",
        if broken == 0 {
            "the ledger holds".to_owned()
        } else {
            format!("{broken} violations")
        },
        started.elapsed().as_secs_f64()
    );
    if broken > 0 {
        std::process::exit(1);
    }
    Ok(())
}

async fn close_day(config: Config, day: Option<chrono::NaiveDate>) -> anyhow::Result<()> {
    let db = gateway::connect(&config).await?;
    db.migrate().await?;
    let payday = accounting_domain::Payday::new(db, gateway::calendar(&config)?)
        .with_batch(config.payday.close_batch);
    let last = match day {
        Some(day) => day,
        None => payday
            .last_ended_day()
            .context("there is no day before today")?,
    };
    let closes = payday
        .close_through(last)
        .await
        .map_err(|error| match error {
            accounting_domain::AccountingError::DayNotOver(_) => anyhow::anyhow!("{error}"),
            other => anyhow::Error::new(other).context("closing failed"),
        })?;
    if closes.is_empty() {
        println!("nothing to close: every day up to {last} is closed");
    }
    for close in closes {
        println!(
            "closed {}: {} payouts, {} paid, {} popugs below zero",
            close.day, close.payout_count, close.paid_total, close.negative_count
        );
    }
    Ok(())
}

/// Logs to stderr: readable lines, or one JSON object per line.
fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    init_logs(config.server.log_format);
    let app = App::build(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    if app.dev_secret {
        tracing::warn!(
            "NO ATES_JWT_SECRET CONFIGURED: tokens are checked against a development secret \
             generated in {}. Set ATES_JWT_SECRET to the auth service's secret in production.",
            config.server.data_dir.join("dev-jwt-secret").display()
        );
    }
    println!("aTES gateway on http://{addr}");
    println!("  the web app: http://{addr}/");
    println!("  GraphiQL:    http://{addr}/graphql");
    if app.dev_secret {
        // With the development secret, anyone at this machine may sign in: two ready links,
        // for the same two popugs at every start, valid for a working day.
        for (sub, role, name) in [
            ("dev-admin", "admin", "Alice"),
            ("dev-worker", "worker", "Bob"),
        ] {
            let token = mint(&config, sub, role.into(), name.into(), None, 12)?;
            println!("  sign in as {name} ({role}): http://{addr}/#token={token}");
        }
    } else {
        println!("  sign in with a token from the auth service");
    }
    // SIGTERM: /readyz turns 503 and sockets are told to go away; after the delay no new
    // connection is taken, and requests in flight have the grace period to finish.
    let (stopping, stopped) = tokio::sync::oneshot::channel();
    let delay = Duration::from_millis(config.server.shutdown_delay_ms);
    let router = app.router();
    let server = gateway::serve(listener, router, app.connections, async move {
        shutdown_signal().await;
        tracing::info!(
            ?delay,
            "stopping: /readyz answers 503, WebSockets are closed"
        );
        app.begin_shutdown();
        tokio::time::sleep(delay).await;
        tracing::info!("no longer accepting connections; draining requests in flight");
        let _ = stopping.send(());
    });
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    tokio::select! {
        () = server => {}
        () = async {
            match stopped.await {
                Ok(()) => tokio::time::sleep(grace).await,
                Err(_) => std::future::pending().await,
            }
        } => tracing::warn!(?grace, "the grace period ended with requests still in flight"),
    }
    // Background work (accounting, day close, delivery, relay) commits each step in one
    // transaction: whatever is cut here rolls back and is picked up at the next start.
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler succeeds at start-up");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
