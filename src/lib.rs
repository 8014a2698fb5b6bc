//! jinad: a daemon that keeps workspaces (and later flows, pods and peas) as rows in SQLite and
//! drives a real Docker engine to build and run them. See ARCHITECTURE.md for the map.

pub mod api;
pub mod build_cache;
pub mod build_log;
pub mod client;
pub mod config;
pub mod daemon;
pub mod daemon_id;
pub mod deployment;
pub mod docker;
pub mod error;
pub mod export;
pub mod http_methods;
pub mod ids;
pub mod json_numbers;
pub mod metrics;
pub mod network_pool;
pub mod reconcile;
pub mod row_locks;
pub mod runtime;
pub mod serve;
pub mod state;
pub mod store;
pub mod tls;
pub mod worker;
pub mod workspace;
