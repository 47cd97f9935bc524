//! Black-box tests of the running gateway: each starts the real server on 127.0.0.1:0 against a
//! fresh, migrated database and talks HTTP to it. Every test runs on a SQLite file, and on
//! PostgreSQL when `TEST_DATABASE_URL` names a server (each test gets its own database there).

mod helpers;
mod http;
mod ws;

mod model;

mod accounting;
mod auth;
mod auth_events;
mod authorization;
mod backup;
mod bounds;
mod cli;
mod concurrency;
mod crash;
mod dead_letters;
mod doors;
mod exports;
mod fuzz;
mod graphiql;
mod history;
mod idempotency;
mod jwks;
mod limits;
mod lists;
mod nats;
mod nodes;
mod operating;
mod origins;
mod pace;
mod payday;
mod popugs;
mod production;
mod schema;
mod subscriptions;
mod tasks;
mod verify;
mod web;
mod wire;
