//! From a Flow (or one pod) to containers: every pea, head and tail, and a Flow's gateway, is a
//! container of the workspace image on the workspace network, named `<row id>-<n>` and reached by
//! that name. Inside, every node listens on the same fixed ports (each container has its own
//! network namespace); only what the host must reach is published.

use crate::ids::ObjectId;
use crate::runtime::flow::FlowSpec;

/// A node's data input (PULL) inside its container.
pub const DATA_PORT: u16 = 5555;
/// A node's control socket (REP).
pub const CTRL_PORT: u16 = 5556;
/// Where the gateway collects answers.
pub const RETURNS_PORT: u16 = 5557;
/// The gateway's HTTP port.
pub const HTTP_PORT: u16 = 8080;
/// The first port a pod binds an output on (`out: {NAME: bind}`), one per output.
pub const BOUND_OUT_PORT: u16 = 5560;
/// Outputs one pod may have.
pub const MAX_OUTPUTS: usize = 32;

/// One container to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The pea (`idx/shard-0`), head, tail or `gateway` it runs.
    pub pea: String,
    pub name: String,
    /// Arguments of the `jinad` executable.
    pub args: Vec<String>,
    /// Container ports published on the host.
    pub publish: Vec<u16>,
    /// Outputs this node binds (`out: {NAME: bind}`): name and container port.
    pub bound_outputs: Vec<(String, u16)>,
}

fn addr(container: &str, port: u16) -> String {
    format!("tcp://{container}:{port}")
}

pub fn container_name(id: &ObjectId, n: usize) -> String {
    format!("{id}-{n}")
}

/// How one pod's arguments reach its peas: from the Flow YAML (`--from-flow`) or given directly.
pub enum PodSource<'a> {
    Flow { yaml: &'a str },
    Args(&'a [String]),
}

/// The nodes of one pod, with the containers they run in. `outputs`: where the pod sends
/// results, `(name, address)`. `publish`: ports of every node to publish (a REST pod publishes
/// its control ports, and its entry's data port).
struct PodNodes {
    entry: String,
    containers: Vec<Planned>,
}

#[allow(clippy::too_many_arguments)]
fn plan_pod(
    id: &ObjectId,
    next: &mut usize,
    pod: &str,
    peas: &[(usize, usize, String)],
    source: &PodSource,
    outputs: &[(String, String)],
    publish_ctrl: bool,
) -> PodNodes {
    let mut take = || {
        let name = container_name(id, *next);
        *next += 1;
        name
    };
    let base = |pea: &str, container: &str| -> Vec<String> {
        let mut args = vec!["pea".to_string()];
        match source {
            PodSource::Flow { yaml } => args.extend(["--from-flow".into(), yaml.to_string()]),
            PodSource::Args(given) => args.extend(given.iter().cloned()),
        }
        args.extend(
            [
                "--pod", pod, "--name", pea, "--host", "0.0.0.0", "--port-in", &DATA_PORT.to_string(), "--port-ctrl",
                &CTRL_PORT.to_string(), "--advertise", container,
            ]
            .map(String::from),
        );
        args
    };
    // Connected outputs go to their address; a bound one (`bind`) gets its own published port.
    let outs = |args: &mut Vec<String>, publish: &mut Vec<u16>, outputs: &[(String, String)]| -> Vec<(String, u16)> {
        let mut bound = Vec::new();
        for (name, address) in outputs {
            if address == super::BIND {
                let port = BOUND_OUT_PORT + bound.len() as u16;
                args.extend(["--out-bind".to_string(), format!("{name}=tcp://0.0.0.0:{port}")]);
                publish.push(port);
                bound.push((name.clone(), port));
            } else {
                args.extend(["--out".to_string(), format!("{name}={address}")]);
            }
        }
        bound
    };
    let ctrl = if publish_ctrl { vec![CTRL_PORT] } else { vec![] };
    let entry_publish = if publish_ctrl { vec![DATA_PORT, CTRL_PORT] } else { vec![] };
    if peas.len() == 1 {
        let container = take();
        // A lone pea may be one pea of a pod spread over hosts: it runs under its own name.
        let mut args = base(&peas[0].2, &container);
        let mut publish = entry_publish;
        let bound_outputs = outs(&mut args, &mut publish, outputs);
        return PodNodes {
            entry: container.clone(),
            containers: vec![Planned { pea: peas[0].2.clone(), name: container, args, publish, bound_outputs }],
        };
    }
    let head = take();
    let pea_containers: Vec<String> = peas.iter().map(|_| take()).collect();
    let tail = take();
    let tail_name = format!("{pod}/tail");
    let mut containers = Vec::new();
    let mut head_args = base(&format!("{pod}/head"), &head);
    head_args.extend(["--role".into(), "head".into(), "--tail".into(), format!("{tail_name}={}", addr(&tail, DATA_PORT))]);
    for ((shard, _, pea), container) in peas.iter().zip(&pea_containers) {
        head_args.extend(["--shard-out".into(), format!("{shard}={pea}={}", addr(container, DATA_PORT))]);
    }
    containers.push(Planned { pea: format!("{pod}/head"), name: head.clone(), args: head_args, publish: entry_publish, bound_outputs: vec![] });
    for ((shard, replica, pea), container) in peas.iter().zip(&pea_containers) {
        let mut args = base(pea, container);
        args.extend(["--shard-id".into(), shard.to_string(), "--replica-id".into(), replica.to_string()]);
        let mut publish = ctrl.clone();
        outs(&mut args, &mut publish, &[(tail_name.clone(), addr(&tail, DATA_PORT))]);
        containers.push(Planned { pea: pea.clone(), name: container.clone(), args, publish, bound_outputs: vec![] });
    }
    let mut tail_args = base(&tail_name, &tail);
    tail_args.extend(["--role".into(), "tail".into()]);
    let mut publish = ctrl;
    let bound_outputs = outs(&mut tail_args, &mut publish, outputs);
    containers.push(Planned { pea: tail_name, name: tail, args: tail_args, publish, bound_outputs });
    PodNodes { entry: head, containers }
}

/// The containers of a Flow: the gateway first (container 0, its HTTP port published), then the
/// pods' nodes. `yaml` is the Flow YAML's path inside the containers.
pub fn flow(id: &ObjectId, spec: &FlowSpec, yaml: &str) -> Vec<Planned> {
    let gateway = container_name(id, 0);
    let mut next = 1;
    // Entry containers are needed before the pods that send to them: plan in reverse DAG order.
    let mut planned: Vec<Option<PodNodes>> = spec.pods.iter().map(|_| None).collect();
    for &i in spec.order.iter().rev() {
        let outputs: Vec<(String, String)> = match spec.consumers(i) {
            consumers if consumers.is_empty() => vec![("gateway".to_string(), addr(&gateway, RETURNS_PORT))],
            consumers => consumers
                .iter()
                .filter_map(|&j| planned[j].as_ref().map(|p| (spec.pods[j].name.clone(), addr(&p.entry, DATA_PORT))))
                .collect(),
        };
        let pod = &spec.pods[i];
        planned[i] = Some(plan_pod(id, &mut next, &pod.name, &pod.pea_names(), &PodSource::Flow { yaml }, &outputs, false));
    }
    let pods: Vec<PodNodes> = planned.into_iter().flatten().collect();
    let mut args: Vec<String> = [
        "gateway", "--host", "0.0.0.0", "--port", &HTTP_PORT.to_string(), "--returns", &format!("tcp://0.0.0.0:{RETURNS_PORT}"),
        "--advertise", &gateway, "--leaves", &spec.leaves().len().to_string(), "--timeout-ms", &spec.timeout.as_millis().to_string(),
    ]
    .map(String::from)
    .to_vec();
    for i in spec.entries() {
        args.extend(["--entry".into(), format!("{}={}", spec.pods[i].name, addr(&pods[i].entry, DATA_PORT))]);
    }
    for node in pods.iter().flat_map(|p| &p.containers) {
        args.extend(["--pea".into(), format!("{}={}", node.pea, addr(&node.name, CTRL_PORT))]);
    }
    let mut containers = vec![Planned { pea: "gateway".into(), name: gateway, args, publish: vec![HTTP_PORT], bound_outputs: vec![] }];
    containers.extend(pods.into_iter().flat_map(|p| p.containers));
    containers
}

/// The containers of one pod started on its own (`POST /pods`, `/peas`): its arguments as given
/// (`--uses`, `--with`, …), results to `outputs`, the entry's data port and every control port
/// published.
pub fn pod(id: &ObjectId, name: &str, peas: &[(usize, usize, String)], args: &[String], outputs: &[(String, String)]) -> Vec<Planned> {
    let mut next = 0;
    plan_pod(id, &mut next, name, peas, &PodSource::Args(args), outputs, true).containers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Kind;

    #[test]
    fn a_sharded_pod_gets_head_peas_and_tail_wired_by_name() {
        let spec = FlowSpec::parse(
            "jtype: Flow\nexecutors:\n  - name: enc\n    uses: HashEncoder\n  - name: idx\n    uses: VectorIndexer\n    shards: 2\n",
            std::path::Path::new("/w"),
        )
        .unwrap();
        let id = ObjectId::mint(Kind::Flow);
        let plan = flow(&id, &spec, "/workspace/flow.yml");
        let peas: Vec<&str> = plan.iter().map(|p| p.pea.as_str()).collect();
        assert_eq!(peas, ["gateway", "enc", "idx/head", "idx/shard-0", "idx/shard-1", "idx/tail"]);
        let names: std::collections::HashSet<&str> = plan.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names.len(), plan.len(), "unique container names");
        let joined = |p: &Planned| p.args.join(" ");
        let by = |pea: &str| plan.iter().find(|p| p.pea == pea).unwrap();
        assert!(joined(by("enc")).contains(&format!("--out idx=tcp://{}:5555", by("idx/head").name)));
        assert!(joined(by("idx/tail")).contains(&format!("--out gateway=tcp://{}:5557", by("gateway").name)));
        assert!(joined(by("idx/head")).contains(&format!("--shard-out 1=idx/shard-1=tcp://{}:5555", by("idx/shard-1").name)));
        assert!(joined(by("gateway")).contains(&format!("--entry enc=tcp://{}:5555", by("enc").name)));
        assert_eq!(plan.iter().filter(|p| !p.publish.is_empty()).count(), 1, "only the gateway is published");
    }

    #[test]
    fn a_pod_binds_the_outputs_it_is_asked_to_and_publishes_them() {
        let id = ObjectId::mint(Kind::Pod);
        let peas = crate::runtime::pod::pea_names("p", 1, 1);
        let outputs = [("gateway".to_string(), "bind".to_string()), ("next".to_string(), "tcp://x:1".to_string())];
        let plan = pod(&id, "p", &peas, &["--uses".into(), "Passthrough".into()], &outputs);
        assert_eq!(plan.len(), 1);
        let args = plan[0].args.join(" ");
        assert!(args.contains("--out-bind gateway=tcp://0.0.0.0:5560") && args.contains("--out next=tcp://x:1"), "{args}");
        assert_eq!(plan[0].publish, vec![DATA_PORT, CTRL_PORT, BOUND_OUT_PORT]);
        assert_eq!(plan[0].bound_outputs, vec![("gateway".to_string(), BOUND_OUT_PORT)]);
        // A replicated pod binds on its tail, which is what sends results on.
        let peas = crate::runtime::pod::pea_names("p", 1, 2);
        let plan = pod(&id, "p", &peas, &[], &outputs[..1]);
        let tail = plan.iter().find(|p| p.pea == "p/tail").unwrap();
        assert_eq!(tail.bound_outputs, vec![("gateway".to_string(), BOUND_OUT_PORT)]);
        assert!(plan.iter().filter(|p| p.pea != "p/tail").all(|p| p.bound_outputs.is_empty()));
    }
}
