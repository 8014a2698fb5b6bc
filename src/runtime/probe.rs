//! `jinad probe`: one readiness check of a node's control port or a gateway's HTTP route, for
//! healthchecks and probes of exported containers.

use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::message::ControlRequest;
use super::sockets;

#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// `tcp://HOST:PORT`: a node's control port, ready when it answers `status` ready;
    /// `http://HOST:PORT/PATH`: ready on a 2xx answer.
    pub target: String,
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// `http://…`: any HTTP answer will do (the server is alive), not only a 2xx.
    #[arg(long)]
    pub alive: bool,
}

/// `jinad probe`: prints what the target answered; the exit code is 0 when it is ready, 1 when it
/// answered not ready or not at all, 2 for a bad target.
pub fn probe(args: ProbeArgs) -> i32 {
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    if args.target.starts_with("tcp://") {
        return match sockets::control(&args.target, ControlRequest::Status, timeout) {
            Ok(reply) => {
                println!("{}", json!({"name": reply.name, "role": reply.role, "ready": reply.ready, "processed": reply.processed}));
                i32::from(!reply.ready)
            }
            Err(e) => {
                eprintln!("jinad probe: {e}");
                1
            }
        };
    }
    if !args.target.starts_with("http://") {
        eprintln!("jinad probe: `{}`: expected tcp://HOST:PORT or http://HOST:PORT/PATH", args.target);
        return 2;
    }
    let answer = reqwest::blocking::Client::builder().timeout(timeout).build().and_then(|c| c.get(&args.target).send());
    match answer {
        Ok(response) => {
            let ok = response.status().is_success() || args.alive;
            println!("{} {}", response.status().as_u16(), response.text().unwrap_or_default().trim());
            i32::from(!ok)
        }
        Err(e) => {
            eprintln!("jinad probe: {e}");
            1
        }
    }
}

