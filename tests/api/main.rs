//! End-to-end tests: each starts the real `wattline` binary on an ephemeral
//! port with its own data directory and speaks HTTP to it, as a client
//! would. No mocks.

#![allow(unreachable_pub)]

mod alert_peers;
mod alerts;
mod auth;
mod catalog;
mod cold_store;
mod crash;
mod dashboard;
mod energy;
mod fault_paths;
#[cfg(feature = "fleet")]
mod fleet;
mod grafana;
mod ingest;
mod jdbc;
mod limits;
mod meters;
mod mqtt;
mod operations;
mod pgwire;
mod process;
mod pydeps;
mod quality;
mod readback;
mod reports;
mod sql;
mod support;
mod tariffs;
mod tenant_wall;
mod webdriver;
