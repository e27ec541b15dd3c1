//! The HTTP API as a client sees it: accounts and administration, sign-in and tokens,
//! the websocket, TLS, the operator's commands and the schemas of both databases.

mod admin;
mod admin_groups;
mod auth;
mod directory;
mod http;
mod lifecycle;
mod operator;
mod schema;
mod tls;
mod tokens;
mod ws;
