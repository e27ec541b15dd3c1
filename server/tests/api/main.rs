//! Integration tests: one binary, the real server on a random port, on SQLite and on
//! PostgreSQL (`TSUNAGU_TEST_POSTGRES_URL`).

mod helpers;

mod admin;
mod auth;
mod http;
mod lifecycle;
mod operator;
mod schema;
mod tls;
mod tokens;
mod ws;
mod wsclient;
