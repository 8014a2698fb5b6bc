//! One node on real ZeroMQ sockets, driven from the test: panics, garbage frames, control.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jinad::runtime::document::Document;
use jinad::runtime::executor::Executor;
use jinad::runtime::message::{ControlRequest, DataRequest};
use jinad::runtime::node::{self, Node, Role};
use jinad::runtime::sockets::{self, Target};
use serde_json::{Map, Value};

/// Panics on `/boom`, fails on `/fail`, tags every other request; records `close()`.
struct Moody {
    closed: Arc<AtomicBool>,
}

impl Executor for Moody {
    fn handle(&mut self, endpoint: &str, docs: &mut Vec<Document>, _: &Map<String, Value>) -> Result<(), String> {
        match endpoint {
            "/boom" => panic!("kaboom"),
            "/fail" => Err("no luck".into()),
            _ => {
                docs.iter_mut().for_each(|d| {
                    d.tags.insert("seen".into(), true.into());
                });
                Ok(())
            }
        }
    }

    fn close(&mut self) -> Result<(), String> {
        self.closed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

struct Harness {
    to_node: Target,
    from_node: zmq::Socket,
    ctrl: String,
    closed: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

fn start() -> Harness {
    let (from_node, sink) = sockets::bind(zmq::PULL, "tcp://127.0.0.1:0").unwrap();
    from_node.set_rcvtimeo(5000).unwrap();
    let bound = node::bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0").unwrap();
    let (input, ctrl) = (bound.in_addr.clone(), bound.ctrl_addr.clone());
    let closed = Arc::new(AtomicBool::new(false));
    let role = Role::Pea {
        executor: Box::new(Moody { closed: closed.clone() }),
        pod: "moody".into(),
        outputs: vec![Target::connect("sink", &sink).unwrap()],
    };
    let thread = Node::new("moody", role, bound).spawn().unwrap();
    Harness { to_node: Target::connect("moody", &input).unwrap(), from_node, ctrl, closed, thread }
}

impl Harness {
    fn call(&self, endpoint: &str) -> DataRequest {
        let req = DataRequest {
            request_id: format!("r{endpoint}"),
            endpoint: endpoint.into(),
            docs: vec![Document { id: "d".into(), ..Default::default() }],
            ..Default::default()
        };
        self.to_node.send(&req.to_frame().unwrap()).unwrap();
        DataRequest::from_frame(&self.from_node.recv_bytes(0).expect("an answer")).unwrap()
    }
}

#[test]
fn a_panicking_executor_becomes_an_error_and_the_pea_lives_on() {
    let h = start();
    let answer = h.call("/boom");
    let error = answer.error.expect("an error");
    assert_eq!((error.pea.as_str(), error.code.as_str()), ("moody", "executor_panic"));
    assert!(error.message.contains("kaboom"), "{}", error.message);

    let answer = h.call("/fail");
    assert_eq!(answer.error.map(|e| e.code), Some("executor_error".to_string()));

    // Garbage is dropped; the next good request is served.
    h.to_node.send(b"not a jinad frame").unwrap();
    let answer = h.call("/index");
    assert!(answer.error.is_none());
    assert_eq!(answer.docs[0].tags["seen"], true);
    assert_eq!(answer.routes, ["moody"]);

    let status = sockets::control(&h.ctrl, ControlRequest::Status, Duration::from_secs(2)).unwrap();
    assert!(status.ready);
    assert_eq!((status.role.as_str(), status.processed), ("pea", 3), "three good frames");

    assert!(!h.closed.load(Ordering::SeqCst));
    let reply = sockets::control(&h.ctrl, ControlRequest::Terminate, Duration::from_secs(2)).unwrap();
    assert!(reply.message.is_empty());
    assert!(h.closed.load(Ordering::SeqCst), "close() ran before the reply");
    h.thread.join().unwrap();
}
