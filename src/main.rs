use clap::Parser;
use jinad::config::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    if cli.command.logs() {
        init_tracing();
    }
    match cli.command {
        Command::Openapi { gateway: false } => println!("{}", jinad::api::openapi::json()),
        Command::Openapi { gateway: true } => println!("{}", jinad::runtime::gateway::http::openapi_json()),
        Command::Flow(args) => role(jinad::runtime::roles::flow(args)),
        Command::Pod(args) => role(jinad::runtime::roles::pod(args)),
        Command::Pea(args) => role(jinad::runtime::roles::pea(args)),
        Command::Gateway(args) => role(jinad::runtime::roles::gateway(args)),
        Command::Bench(args) => role(jinad::runtime::bench::run(args)),
        Command::Export(command) => role(jinad::export::command::run(command)),
        Command::Push(args) => role(jinad::export::command::push(args)),
        Command::Workspaces(args) => role(jinad::client::commands::workspaces(args)),
        Command::Flows(args) => role(jinad::client::commands::flows(args)),
        Command::Pods(args) => role(jinad::client::commands::deployments("pods", args)),
        Command::Peas(args) => role(jinad::client::commands::deployments("peas", args)),
        Command::Events(args) => role(jinad::client::commands::events(args)),
        Command::Status(args) => role(jinad::client::commands::status(args)),
        Command::Gc(args) => role(jinad::client::commands::gc(args)),
        Command::Probe(args) => std::process::exit(jinad::runtime::probe::probe(args)),
        Command::Serve(config) => {
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => exit(&format!("cannot start the async runtime: {e}")),
            };
            if let Err(e) = runtime.block_on(jinad::serve::serve(config)) {
                exit(&e);
            }
        }
    }
}

fn role(outcome: Result<(), String>) {
    if let Err(e) = outcome {
        exit(&e);
    }
}

fn init_tracing() {
    let filter = match tracing_subscriber::EnvFilter::try_from_env("JINAD_LOG") {
        // Below info, these dump whole requests, the `Authorization` header (the API token)
        // included: never, whatever JINAD_LOG asks for.
        Ok(mut filter) => {
            for cap in ["rocket::server=info", "hyper=info", "hyper_util=info", "reqwest=info", "h2=info"] {
                if let Ok(directive) = cap.parse() {
                    filter = filter.add_directive(directive);
                }
            }
            filter
        }
        Err(_) => tracing_subscriber::EnvFilter::new("info,rocket=error,_=error"),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}

fn exit(message: &str) -> ! {
    eprintln!("jinad: {message}");
    std::process::exit(1)
}
