//! jinad's integration tests: one binary, one module per area.

mod common;

mod api;
mod bench;
mod build_cache;
mod cli;
mod contract;
mod docker_flows;
mod docker_workspaces;
mod events;
mod export;
mod metrics;
mod flows;
mod nodes;
mod openapi;
mod python;
mod races;
mod remote;
mod restart;
mod roles;
mod scale;
mod store;
mod tls;
mod uploads;
