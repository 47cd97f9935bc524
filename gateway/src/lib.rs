//! The aTES gateway: GraphQL over the task and accounting domains.

pub mod accounting;
pub mod api;
pub mod app;
pub mod auth;
pub mod calendar;
pub mod config;

pub use app::App;
pub use config::Config;
