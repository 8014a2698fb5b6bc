//! jinad's integration tests: one binary, one module per area.

mod common;

mod api;
mod docker_workspaces;
mod openapi;
mod restart;
mod store;
mod uploads;
