//! The authorisation matrix of the messaging API: every route and websocket event
//! against every kind of caller who must be refused, on SQLite and on PostgreSQL
//! (`TSUNAGU_TEST_POSTGRES_URL`).

mod matrix;
