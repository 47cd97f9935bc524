//! The aTES gateway: GraphQL over the task and accounting domains.
//!
//! Modules from the top down; each imports only modules below it:
//!
//! | module | what |
//! | --- | --- |
//! | `startup` | connect, migrate, start the workers, wire the state ([`App`]) |
//! | `serve` | the connections: time limits on headers and bodies, connections per address |
//! | `router` | the route table and its layers |
//! | `http` | the transports: GraphQL over HTTP and WebSocket, auth events, ops, GraphiQL |
//! | `state` | what the transports share |
//! | `api` | the GraphQL schema over the domains |
//! | `session` | who is asking: the bearer token, verified, and the popug replica |
//! | `workers` | background loops: accounting, the subscription feed, NATS, day close, delivery |
//! | `auth_events`, `auth` | Popug Data Updated, however it arrives; tokens |
//! | `rate_limit`, `media`, `persisted`, `metrics`, `refusal`, `config` | the pieces below them all |
//! | `body` | the request body: its deadline, and why a read failed |
//! | `nesting` | how deep a text nests, measured before anything parses it |
//!
//! The test in `layers.rs` holds the code to this order.

pub mod api;
pub mod auth;
pub mod auth_events;
mod body;
pub mod config;
mod http;
mod media;
pub mod metrics;
pub mod nesting;
mod persisted;
mod rate_limit;
pub mod refusal;
mod router;
pub mod serve;
pub mod session;
mod startup;
mod state;
pub mod workers;

#[cfg(test)]
mod layers;

pub use config::Config;
pub use serve::{ConnectionLimits, serve};
pub use startup::{App, authenticator, calendar, connect};
