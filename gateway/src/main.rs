use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use gateway::auth::Claims;
use gateway::{App, Config, api, app, config};
use tracing_subscriber::EnvFilter;

/// aTES: the task tracker and accounting system of UberPopug Inc.
#[derive(Parser)]
#[command(version)]
struct Cli {
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::Schema => {
            print!("{}", api::export_sdl());
            Ok(())
        }
        Command::Migrate => {
            let config = cli.config;
            let db = app::connect(&config).await?;
            db.migrate().await?;
            println!(
                "migrations applied to {}",
                config::redact_url(&config.database_url())
            );
            Ok(())
        }
        Command::CloseDay { day } => close_day(cli.config, day).await,
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
            let (auth, _) = app::authenticator(&cli.config)?;
            let now = chrono::Utc::now().timestamp();
            let claims = Claims {
                sub: sub.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                exp: now + hours * 3600,
                iat: Some(now),
                name: Some(name),
                email,
                role: Some(role),
                iss: cli.config.jwt_issuer.clone(),
                aud: cli.config.jwt_audience.clone(),
            };
            let token = auth.sign(&claims).context(
                "tokens are verified with a public key here: the auth service issues them",
            )??;
            println!("{token}");
            Ok(())
        }
    }
}

async fn close_day(config: Config, day: Option<chrono::NaiveDate>) -> anyhow::Result<()> {
    let db = app::connect(&config).await?;
    db.migrate().await?;
    let payday =
        accounting_domain::Payday::new(db, app::calendar(&config)?).with_batch(config.close_batch);
    let last = match day {
        Some(day) => day,
        None => payday
            .today()
            .pred_opt()
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

async fn serve(config: Config) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    let app = App::build(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    if app.dev_secret {
        tracing::warn!(
            "NO ATES_JWT_SECRET CONFIGURED: tokens are checked against a development secret \
             generated in {}. Set ATES_JWT_SECRET to the auth service's secret in production.",
            config.data_dir.join("dev-jwt-secret").display()
        );
    }
    println!("aTES gateway on http://{addr}");
    println!("  GraphiQL:  http://{addr}/graphql");
    println!("  a token:   cargo run -p gateway -- token --role admin --name Alice");
    println!("  then send it as 'Authorization: Bearer <token>'");
    axum::serve(listener, app.router())
        .with_graceful_shutdown(shutdown_signal())
        .await?;
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
    // Give in-flight responses a moment; the full drain arrives with the operability issue.
    tokio::time::sleep(Duration::from_millis(10)).await;
}
