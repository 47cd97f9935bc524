//! The transports: each handler reads the shared [`AppState`](crate::state::AppState) and none
//! calls another. `router` says which URL goes where. What GraphQL over HTTP and over WebSocket
//! share, running one operation to its answer and the idempotency keys of mutations, is in
//! `answer` and `keyed`.

mod answer;
mod keyed;

pub mod auth_events;
pub mod exports;
pub mod graphiql;
pub mod graphql;
pub mod ops;
pub mod web;
pub mod ws;
