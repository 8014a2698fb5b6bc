//! A [`Topology`] as Kubernetes manifests, built from the typed structs of `k8s-openapi`
//! ([`KUBERNETES_VERSION`]'s API), one object per file so `kubectl apply -f DIR` applies the
//! Namespace first.
//!
//! - a Namespace; a ConfigMap holding the Flow YAML, mounted over the image's copy (`subPath`), so
//!   the manifests carry the Flow they were made from;
//! - per service a Deployment (`replicas` from the pod) or, for a shard that keeps state, a
//!   StatefulSet with a PersistentVolumeClaim template mounted at the shard's data directory;
//! - per service a Service with a stable DNS name the peas connect to: a ClusterIP Service for a
//!   single node (its virtual IP survives the pod's restarts), a **headless** Service for a
//!   shard's replicas: its name resolves to every ready replica's pod address, and the head
//!   (`--resolve-all`) connects to each of them and spreads requests one by one. Through a
//!   ClusterIP, kube-proxy balances *connections*, and ZeroMQ keeps one connection open, so every
//!   request would go to the same replica;
//! - readiness and liveness probes: `jinad probe` on the control port (the gateway: its `/ready`
//!   route for readiness, its HTTP port for liveness); requests and limits per container.
//!
//! Deployments and StatefulSets always restart containers (`restartPolicy: Always` is the only one
//! they allow); `--restart never` / `max_retries` of a daemon flow do not apply here.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, ExecAction, Namespace, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe as KubeProbe, ResourceRequirements, Service as KubeService, ServicePort,
    ServiceSpec, TCPSocketAction, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use super::{ExportError, Probe, Service, Topology};

/// The Kubernetes API the manifests are written for (and validated against in the tests).
pub const KUBERNETES_VERSION: &str = "1.37.0";

/// Size of the claim of a stateful shard.
pub const SHARD_STORAGE: &str = "1Gi";

/// Where the ConfigMap's Flow is mounted in every container: over the image's copy of the YAML.
const FLOW_VOLUME: &str = "flow";
const DATA_VOLUME: &str = "data";
/// The ConfigMap's key for the Flow (a key must be `[-._a-zA-Z0-9]+`, a file name need not be).
const FLOW_KEY: &str = "flow.yml";

/// One manifest: its file name in the directory and its YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub file: String,
    pub yaml: String,
}

fn labels(t: &Topology, s: &Service) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), s.name.clone()),
        ("app.kubernetes.io/part-of".to_string(), flow_label(t)),
        ("app.kubernetes.io/managed-by".to_string(), "jinad".to_string()),
        ("jinad.role".to_string(), s.role.to_string()),
    ]);
    if let Some(pod) = &s.pod {
        l.insert("jinad.pod".to_string(), super::dns_label(pod));
    }
    l
}

/// The Flow's name in labels: its file name without the extension, as a DNS label.
fn flow_label(t: &Topology) -> String {
    let stem = t.yaml_name.rsplit('/').next().unwrap_or(&t.yaml_name);
    let stem = stem.split('.').next().unwrap_or(stem);
    let label = super::dns_label(stem);
    if super::valid_label(&label) {
        label
    } else {
        "flow".to_string()
    }
}

fn selector(s: &Service) -> BTreeMap<String, String> {
    BTreeMap::from([("app.kubernetes.io/name".to_string(), s.name.clone())])
}

fn meta(name: &str, namespace: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta { name: Some(name.to_string()), namespace: Some(namespace.to_string()), labels: Some(labels), ..Default::default() }
}

fn exec_probe(probe: &Probe, period: i32, failures: i32) -> KubeProbe {
    KubeProbe {
        exec: Some(ExecAction { command: Some(probe.command()) }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

fn resources(t: &Topology) -> ResourceRequirements {
    let limits = t.options.limits;
    let mut limit = BTreeMap::new();
    if let Some(cpus) = limits.cpus {
        limit.insert("cpu".to_string(), Quantity(format!("{}m", (cpus * 1000.0).round().max(1.0) as u64)));
    }
    if let Some(memory) = limits.memory {
        limit.insert("memory".to_string(), Quantity(memory.to_string()));
    }
    // Small requests (a pea idles at a few MiB), never above the limits.
    let cpu_request = limits.cpus.map(|c| ((c * 1000.0).round() as u64).clamp(1, 50)).unwrap_or(50);
    let mem_request = limits.memory.map(|m| m.min(32 * 1024 * 1024)).unwrap_or(32 * 1024 * 1024);
    let request = BTreeMap::from([
        ("cpu".to_string(), Quantity(format!("{cpu_request}m"))),
        ("memory".to_string(), Quantity(mem_request.to_string())),
    ]);
    ResourceRequirements { limits: (!limit.is_empty()).then_some(limit), requests: Some(request), ..Default::default() }
}

fn container(t: &Topology, s: &Service) -> Container {
    let (readiness, liveness) = match &s.probe {
        Probe::Http { port, .. } => (
            exec_probe(&s.probe, 2, 3),
            // The gateway lives while its HTTP port answers; `/ready` also needs every pea.
            KubeProbe { tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(i32::from(*port)), host: None }), period_seconds: Some(10), failure_threshold: Some(3), ..Default::default() },
        ),
        Probe::Control(_) => (exec_probe(&s.probe, 2, 3), exec_probe(&s.probe, 10, 6)),
    };
    let mut mounts = vec![VolumeMount { name: FLOW_VOLUME.into(), mount_path: t.options.flow_path.clone(), sub_path: Some(FLOW_KEY.into()), read_only: Some(true), ..Default::default() }];
    if let Some(dir) = &s.state_dir {
        mounts.push(VolumeMount { name: DATA_VOLUME.into(), mount_path: dir.clone(), ..Default::default() });
    }
    // Kubernetes expands `$(VAR)` in arguments and environment values and reads `$$` as `$`:
    // every `$` written `$$` stays itself.
    let literal = |s: &str| s.replace('$', "$$");
    let env: Vec<EnvVar> = t.options.env.iter().map(|(k, v)| EnvVar { name: k.clone(), value: Some(literal(v)), ..Default::default() }).collect();
    Container {
        name: "jinad".into(),
        image: Some(t.options.image.clone()),
        // The image's entrypoint is `jinad`: these are its arguments.
        args: Some(s.args.iter().map(|a| literal(a)).collect()),
        env: (!env.is_empty()).then_some(env),
        ports: Some(s.ports.iter().map(|(name, port)| ContainerPort { name: Some((*name).into()), container_port: i32::from(*port), protocol: Some("TCP".into()), ..Default::default() }).collect()),
        readiness_probe: Some(readiness),
        liveness_probe: Some(liveness),
        resources: Some(resources(t)),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

fn pod_template(t: &Topology, s: &Service) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(labels(t, s)), ..Default::default() }),
        spec: Some(PodSpec {
            containers: vec![container(t, s)],
            // Executors persist on SIGTERM (a VectorIndexer writes its snapshot).
            termination_grace_period_seconds: Some(15),
            volumes: Some(vec![Volume {
                name: FLOW_VOLUME.into(),
                config_map: Some(ConfigMapVolumeSource { name: config_map_name(t), ..Default::default() }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn config_map_name(t: &Topology) -> String {
    format!("jinad-{}", flow_label(t))
}

fn service_object(t: &Topology, s: &Service, namespace: &str) -> KubeService {
    KubeService {
        metadata: meta(&s.name, namespace, labels(t, s)),
        spec: Some(ServiceSpec {
            // Replicas: the name resolves to every ready replica (see the module's comment).
            cluster_ip: s.replicated.then(|| "None".to_string()),
            // The leaves connect back to the gateway (its returns port) before it can be ready.
            publish_not_ready_addresses: s.is_gateway().then_some(true),
            selector: Some(selector(s)),
            ports: Some(
                s.ports
                    .iter()
                    .map(|(name, port)| ServicePort {
                        name: Some((*name).into()),
                        port: i32::from(*port),
                        target_port: Some(IntOrString::Int(i32::from(*port))),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn workload(t: &Topology, s: &Service, namespace: &str) -> Result<(String, String), ExportError> {
    let replicas = i32::try_from(s.replicas).map_err(|_| ExportError(format!("{}: too many replicas", s.name)))?;
    let label_selector = LabelSelector { match_labels: Some(selector(s)), ..Default::default() };
    if s.state_dir.is_some() {
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta { name: Some(DATA_VOLUME.into()), ..Default::default() },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements { requests: Some(BTreeMap::from([("storage".into(), Quantity(SHARD_STORAGE.into()))])), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let set = StatefulSet {
            metadata: meta(&s.name, namespace, labels(t, s)),
            spec: StatefulSetSpec {
                replicas: Some(replicas),
                service_name: Some(s.name.clone()),
                selector: label_selector,
                template: pod_template(t, s),
                volume_claim_templates: Some(vec![claim]),
                ..Default::default()
            },
            ..Default::default()
        };
        Ok(("statefulset".into(), to_yaml(&set)?))
    } else {
        let deployment = Deployment {
            metadata: meta(&s.name, namespace, labels(t, s)),
            spec: DeploymentSpec { replicas: Some(replicas), selector: label_selector, template: pod_template(t, s), ..Default::default() },
            ..Default::default()
        };
        Ok(("deployment".into(), to_yaml(&deployment)?))
    }
}

fn to_yaml<T: Serialize>(object: &T) -> Result<String, ExportError> {
    super::yaml::to_string(object)
}

/// Checks a namespace name (a DNS label).
pub fn check_namespace(namespace: &str) -> Result<(), ExportError> {
    if super::valid_label(namespace) {
        Ok(())
    } else {
        Err(ExportError(format!("namespace `{namespace}`: lowercase letters, digits and `-`, starting with a letter, at most 63 characters")))
    }
}

/// The manifests of `t` in `namespace`, in the order `kubectl apply -f DIR` takes them.
pub fn render(t: &Topology, namespace: &str) -> Result<Vec<Manifest>, ExportError> {
    check_namespace(namespace)?;
    let header = format!(
        "# jinad Flow `{}` for Kubernetes {KUBERNETES_VERSION} (`kubectl apply -f DIR`); generated by `jinad export kubernetes`.\n",
        super::comment_safe(&t.yaml_name)
    );
    let mut out = Vec::new();
    let ns = Namespace { metadata: ObjectMeta { name: Some(namespace.into()), labels: Some(BTreeMap::from([("app.kubernetes.io/managed-by".to_string(), "jinad".to_string())])), ..Default::default() }, ..Default::default() };
    out.push(Manifest { file: "00-namespace.yaml".into(), yaml: to_yaml(&ns)? });
    let config = ConfigMap {
        metadata: meta(&config_map_name(t), namespace, BTreeMap::from([("app.kubernetes.io/part-of".to_string(), flow_label(t))])),
        data: Some(BTreeMap::from([(FLOW_KEY.to_string(), t.yaml.clone())])),
        ..Default::default()
    };
    out.push(Manifest { file: "01-configmap-flow.yaml".into(), yaml: to_yaml(&config)? });
    for (n, s) in t.services.iter().enumerate() {
        out.push(Manifest { file: format!("{:02}-service-{}.yaml", 10 + n, s.name), yaml: to_yaml(&service_object(t, s, namespace))? });
        let (kind, yaml) = workload(t, s, namespace)?;
        out.push(Manifest { file: format!("{:02}-{kind}-{}.yaml", 10 + n, s.name), yaml });
    }
    for m in &mut out {
        m.yaml = format!("{header}{}", m.yaml);
    }
    Ok(out)
}

/// The manifests as a tar.gz (what `GET /flows/{id}/export?format=kubernetes` returns), under
/// `DIR/` named `dir`.
pub fn tar_gz(manifests: &[Manifest], dir: &str) -> Result<Vec<u8>, ExportError> {
    let io = |e: std::io::Error| ExportError(format!("cannot pack the manifests: {e}"));
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for m in manifests {
        let mut header = tar::Header::new_gnu();
        header.set_size(m.yaml.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, format!("{dir}/{}", m.file), m.yaml.as_bytes()).map_err(io)?;
    }
    tar.into_inner().map_err(io)?.finish().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{options, FLOW};
    use super::*;
    use serde_json::Value;

    fn docs(t: &Topology) -> Vec<Value> {
        render(t, "search").unwrap().iter().map(|m| yaml_serde::from_str(&m.yaml).unwrap()).collect()
    }

    #[test]
    fn every_address_is_a_service_and_every_service_selects_a_workload() {
        let t = Topology::of(FLOW, "flow.yml", options()).unwrap();
        let docs = docs(&t);
        let of_kind = |k: &str| docs.iter().filter(|d| d["kind"] == k).collect::<Vec<_>>();
        let services = of_kind("Service");
        let workloads: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Deployment" || d["kind"] == "StatefulSet").collect();
        assert_eq!(services.len(), 9);
        assert_eq!(of_kind("StatefulSet").len(), 2, "one per VectorIndexer shard");
        // Every address a node connects to (`tcp://NAME:PORT` in its arguments) is a Service with that port.
        for w in &workloads {
            let args = w["spec"]["template"]["spec"]["containers"][0]["args"].as_array().unwrap();
            for arg in args.iter().filter_map(Value::as_str) {
                let Some(rest) = arg.split_once("tcp://").map(|(_, r)| r) else { continue };
                let (host, port) = rest.rsplit_once(':').unwrap();
                if host == "0.0.0.0" {
                    continue;
                }
                let port: i64 = port.parse().unwrap();
                let service = services.iter().find(|s| s["metadata"]["name"] == host).unwrap_or_else(|| panic!("{arg}: no Service {host}"));
                assert!(service["spec"]["ports"].as_array().unwrap().iter().any(|p| p["port"] == port), "{arg}");
            }
        }
        // Every Service selects exactly one workload's pods.
        for s in &services {
            let sel = s["spec"]["selector"].as_object().unwrap();
            let matching: Vec<_> = workloads
                .iter()
                .filter(|w| sel.iter().all(|(k, v)| w["spec"]["template"]["metadata"]["labels"][k] == *v))
                .collect();
            assert_eq!(matching.len(), 1, "{}", s["metadata"]["name"]);
        }
        let mid = services.iter().find(|s| s["metadata"]["name"] == "mid-peas").unwrap();
        assert_eq!(mid["spec"]["clusterIP"], "None", "replicas sit behind a headless Service");
        let set = of_kind("StatefulSet")[0];
        assert_eq!(set["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], "1Gi");
        assert!(docs.iter().all(|d| d["kind"] == "Namespace" || d["metadata"]["namespace"] == "search"));
    }

    #[test]
    fn limits_become_requests_and_limits_and_the_archive_holds_every_file() {
        let mut o = options();
        o.env.insert("TOKEN".into(), "a$(id)b".into());
        o.limits.cpus = Some(0.5);
        o.limits.memory = Some(256 * 1024 * 1024);
        let t = Topology::of(FLOW, "flow.yml", o).unwrap();
        let docs = docs(&t);
        let gateway = docs.iter().find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "gateway").unwrap();
        let res = &gateway["spec"]["template"]["spec"]["containers"][0]["resources"];
        assert_eq!(res["limits"]["cpu"], "500m");
        assert_eq!(res["limits"]["memory"], "268435456");
        assert_eq!(res["requests"]["cpu"], "50m");
        // Kubernetes would expand `$(id)`: written `$$(id)`.
        assert_eq!(gateway["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"], "a$$(id)b");
        let mut o = options();
        o.env.insert("T".into(), "$$(A) $x".into());
        let t2 = Topology::of(FLOW, "flow.yml", o).unwrap();
        let docs2 = super::tests::docs(&t2);
        let gateway2 = docs2.iter().find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "gateway").unwrap();
        assert_eq!(gateway2["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"], "$$$$(A) $$x");
        let manifests = render(&t, "search").unwrap();
        let bytes = tar_gz(&manifests, "flow").unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let names: Vec<String> = archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names.len(), manifests.len());
        assert_eq!(names[0], "flow/00-namespace.yaml");
        assert!(render(&t, "Bad_NS").is_err());
    }
}
