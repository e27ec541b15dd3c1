//! Tsunagu server library. `main.rs` is a thin shell around [`app::Application`], so
//! tests start the real server on port 0 exactly as the binary does.

pub mod api;
pub mod app;
pub mod audit;
pub mod backup;
pub mod blob;
pub mod bus;
pub mod clock;
pub mod config;
pub mod domain;
pub mod store;
pub mod telemetry;
pub mod webhooks;
