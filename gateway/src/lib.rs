//! The aTES gateway: GraphQL over the task and accounting domains.

pub mod accounting;
pub mod api;
pub mod app;
pub mod auth;
pub mod auth_events;
pub mod config;
pub mod feed;
mod graphiql;
pub mod http;
pub mod metrics;
pub mod nats;
pub mod payday;
mod ws;

pub use app::App;
pub use config::Config;
