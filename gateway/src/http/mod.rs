//! The transports: each handler reads the shared [`AppState`](crate::state::AppState) and none
//! calls another. `router` says which URL goes where.

pub mod auth_events;
pub mod exports;
pub mod graphiql;
pub mod graphql;
pub mod ops;
pub mod web;
pub mod ws;
