//! `jinad bench`: the workloads of DESIGN.md §4 against real `jinad flow` processes, measured from
//! outside over HTTP/1.1 keep-alive connections, printed as one table beside Jina 3.33.1's figures.
//! It measures; it asserts nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use super::roles::TransportArg;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Seconds each throughput measurement runs.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Concurrent keep-alive connections for throughput.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Sequential requests for the latency figures.
    #[arg(long, default_value_t = 5000)]
    pub latency_requests: usize,
    /// Transport between the peas of each flow.
    #[arg(long, value_enum, default_value = "inproc")]
    pub transport: TransportArg,
    /// Where the flow YAMLs and workspaces go (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

const CHAIN1: &str = "jtype: Flow\nexecutors:\n  - name: p0\n";
const CHAIN3: &str = "jtype: Flow\nexecutors:\n  - name: p0\n  - name: p1\n  - name: p2\n";
const PYTHON: &str = "jtype: Flow\nexecutors:\n  - name: py\n    uses: Echo\n    py_modules: [echo.py]\n";
const ECHO_PY: &str = "from jina import Executor, requests\n\nclass Echo(Executor):\n    @requests\n    def echo(self, docs, **kwargs):\n        pass\n";
const REP_SHARD: &str = "jtype: Flow\nexecutors:\n  - name: rep\n    replicas: 2\n  - name: shard\n    shards: 2\n";

struct FlowProcess {
    child: Child,
    addr: String,
    cold_start: Duration,
}

impl FlowProcess {
    fn start(dir: &std::path::Path, name: &str, yaml: &str, transport: TransportArg) -> Result<Self, String> {
        let file = dir.join(format!("{name}.yml"));
        std::fs::write(&file, yaml).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let transport = match transport {
            TransportArg::Tcp => "tcp",
            TransportArg::Inproc => "inproc",
        };
        let started = Instant::now();
        let mut child = Command::new(exe)
            .args(["flow", "--port", "0", "--transport", transport])
            .arg(&file)
            .env("JINAD_LOG", "warn,rocket=off,_=off")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start jinad flow: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
        let cold_start = started.elapsed();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .ok_or_else(|| format!("jinad flow did not get ready: {line:?}"))?;
        let addr = url.trim_start_matches("http://").to_string();
        Ok(FlowProcess { child, addr, cold_start })
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
    }

    fn stop(mut self) {
        // SIGINT, like Ctrl-C: the flow stops its gateway and pods cleanly.
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        super::child::wait_or_kill(&mut self.child, Duration::from_secs(10));
    }
}

/// A minimal HTTP/1.1 keep-alive client: one connection, one request at a time.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    request: Vec<u8>,
}

impl Client {
    fn connect(addr: &str, path: &str, body: &str) -> Result<Self, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body.as_bytes());
        Ok(Client { reader: BufReader::with_capacity(1 << 16, stream), writer, request })
    }

    /// Sends the request once; returns the response body length.
    fn call(&mut self) -> Result<usize, String> {
        self.writer.write_all(&self.request).map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.reader.read_line(&mut line).map_err(|e| e.to_string())?;
        if !line.starts_with("HTTP/1.1 200") {
            return Err(format!("answer: {}", line.trim()));
        }
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line).map_err(|e| e.to_string())?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().map_err(|_| "bad content-length".to_string())?;
                }
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).map_err(|e| e.to_string())?;
        Ok(length)
    }
}

fn body(docs: usize, endpoint: &str) -> String {
    let text = "x".repeat(100);
    let data: Vec<String> = (0..docs).map(|_| format!("{{\"text\":\"{text}\"}}")).collect();
    format!("{{\"endpoint\":\"{endpoint}\",\"data\":[{}]}}", data.join(","))
}

/// Docs per second with `connections` clients for `seconds`.
fn throughput(addr: &str, docs: usize, connections: usize, seconds: f64) -> Result<f64, String> {
    let body = body(docs, "/index");
    // Warm up every connection before the clock starts.
    let mut clients = Vec::new();
    for _ in 0..connections {
        let mut c = Client::connect(addr, "/post", &body)?;
        c.call()?;
        clients.push(c);
    }
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let (done, stop) = (done.clone(), stop.clone());
            std::thread::spawn(move || -> Result<(), String> {
                while !stop.load(Ordering::Relaxed) {
                    c.call()?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().map_err(|_| "a client thread panicked".to_string())??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(done.load(Ordering::Relaxed) as f64 * docs as f64 / elapsed)
}

/// p50 and p99 in milliseconds of `n` sequential one-document requests on one connection.
fn latency(addr: &str, endpoint: &str, n: usize) -> Result<(f64, f64), String> {
    let n = n.max(1);
    let mut c = Client::connect(addr, "/post", &body(1, endpoint))?;
    for _ in 0..100.min(n) {
        c.call()?;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.call()?;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Ok((at(0.50), at(0.99)))
}

fn fmt_rate(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

pub fn run(args: BenchArgs) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut rows: Vec<[String; 4]> = Vec::new();
    let sizes = [100usize, 10, 1];

    let one = FlowProcess::start(&dir, "one", CHAIN1, args.transport)?;
    let mut one_rates = Vec::new();
    for &s in &sizes {
        one_rates.push(fmt_rate(throughput(&one.addr, s, args.connections, args.seconds)?));
    }
    one.stop();

    let chain = FlowProcess::start(&dir, "chain3", CHAIN3, args.transport)?;
    let cold = chain.cold_start;
    let mut chain_rates = Vec::new();
    for &s in &sizes {
        chain_rates.push(fmt_rate(throughput(&chain.addr, s, args.connections, args.seconds)?));
    }
    let (p50, p99) = latency(&chain.addr, "/index", args.latency_requests)?;
    let rss = chain.peak_rss_kib();
    chain.stop();

    let rs = FlowProcess::start(&dir, "rep_shard", REP_SHARD, args.transport)?;
    let (rs_p50, rs_p99) = latency(&rs.addr, "/search", args.latency_requests)?;
    rs.stop();

    std::fs::write(dir.join("echo.py"), ECHO_PY).map_err(|e| e.to_string())?;
    let py = FlowProcess::start(&dir, "python", PYTHON, args.transport)?;
    let py_100 = throughput(&py.addr, 100, args.connections, args.seconds)?;
    let py_1 = throughput(&py.addr, 1, args.connections, args.seconds)?;
    let (py_p50, _) = latency(&py.addr, "/index", args.latency_requests)?;
    py.stop();

    rows.push([
        "3-executor chain, docs/s at request size 100 / 10 / 1".into(),
        "4,191 / 2,062 / 256".into(),
        "≥ 200,000 / 50,000 / 10,000".into(),
        chain_rates.join(" / "),
    ]);
    rows.push([
        "1 executor, docs/s at 100 / 10 / 1".into(),
        "7,988 / 5,027 / 610".into(),
        "≥ 300,000 / 80,000 / 15,000".into(),
        one_rates.join(" / "),
    ]);
    rows.push([
        "latency p50 / p99, 1 doc, persistent connection, 3-chain".into(),
        "7.65 / 15.0 ms".into(),
        "≤ 0.3 / 1 ms".into(),
        format!("{p50:.3} / {p99:.3} ms"),
    ]);
    rows.push([
        "chain with replicas=2 then shards=2, p50 (p99), /search".into(),
        "10.3 ms".into(),
        "≤ 0.5 ms".into(),
        format!("{rs_p50:.3} ms ({rs_p99:.3} ms)"),
    ]);
    rows.push([
        "cold start `flow FLOW.yml` → ready, 3-chain".into(),
        "1.60 s".into(),
        "≤ 0.1 s".into(),
        format!("{:.3} s", cold.as_secs_f64()),
    ]);
    rows.push([
        "peak RSS of the whole 3-chain flow".into(),
        "545 MiB".into(),
        "≤ 40 MiB".into(),
        rss.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
    ]);

    rows.push([
        "1 Python executor (bridge), docs/s at 100 / 1; p50".into(),
        "—".into(),
        "—".into(),
        format!("{} / {}; {py_p50:.3} ms", fmt_rate(py_100), fmt_rate(py_1)),
    ]);

    println!(
        "jinad bench: transport {:?}, {} connections × {} s per throughput figure, {} sequential requests per latency figure",
        args.transport, args.connections, args.seconds, args.latency_requests
    );
    println!();
    println!("| workload | Jina 3.33.1 | goal | jinad |");
    println!("|---|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} | {} |", r[0], r[1], r[2], r[3]);
    }
    Ok(())
}
