//! jinad's integration tests: one binary, one module per area.

mod common;

mod api;
mod bench;
mod contract;
mod docker_flows;
mod docker_workspaces;
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
mod uploads;
