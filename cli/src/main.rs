//! The `sluice` command.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use sluice_broker::config::BrokerConfig;
use sluice_broker::server::Server;
use sluice_cli::tools;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: a Kafka-compatible log broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker. With no arguments: a single node on localhost:9092, data in ./data.
    Broker(BrokerArgs),
    /// Create, list, describe, alter and delete topics.
    #[command(subcommand)]
    Topic(tools::topic::TopicCommand),
    /// Send stdin (or a file) to a topic, one record per line.
    Produce(tools::produce::ProduceArgs),
    /// Print a topic's records, one value per line by default.
    Consume(tools::consume::ConsumeArgs),
    /// List, describe (with lag), reset the offsets of, and delete consumer groups.
    #[command(subcommand)]
    Group(tools::group::GroupCommand),
    /// Add, list and remove ACLs (kafka-acls.sh).
    #[command(subcommand)]
    Acl(tools::acl::AclCommand),
    /// Describe the cluster.
    #[command(subcommand)]
    Cluster(tools::cluster::ClusterCommand),
    /// Load-test a Kafka-compatible broker: throughput and latency percentiles.
    #[command(subcommand)]
    Bench(tools::bench::BenchCommand),
    /// Print a shell completion script, e.g. `sluice completions bash > /etc/bash_completion.d/sluice`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
struct BrokerArgs {
    /// Configuration file: Java properties (server.properties) or TOML (*.toml), Kafka key names.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listener to bind, e.g. PLAINTEXT://0.0.0.0:9092 (`listeners`).
    #[arg(long, value_name = "PLAINTEXT://HOST:PORT")]
    listeners: Option<String>,
    /// Address given to clients (`advertised.listeners`).
    #[arg(long, value_name = "PLAINTEXT://HOST:PORT")]
    advertised_listeners: Option<String>,
    /// Data directories, comma-separated (`log.dirs`).
    #[arg(long, value_name = "DIR[,DIR]")]
    log_dirs: Option<String>,
    /// This node's id (`node.id`).
    #[arg(long)]
    node_id: Option<i32>,
    /// Any other setting, as kafka-server-start.sh accepts: --override num.partitions=3
    #[arg(long = "override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

fn load(args: BrokerArgs) -> anyhow::Result<BrokerConfig> {
    let mut c = BrokerConfig::default();
    if let Some(f) = &args.config {
        c.apply_file(f)?;
    }
    c.apply_env(std::env::vars())?;
    let flags = [
        ("listeners", args.listeners),
        ("advertised.listeners", args.advertised_listeners),
        ("log.dirs", args.log_dirs),
        ("node.id", args.node_id.map(|n| n.to_string())),
    ];
    for (k, v) in flags {
        if let Some(v) = v {
            c.set(k, &v)?;
        }
    }
    for o in &args.overrides {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--override expects KEY=VALUE, got {o:?}"))?;
        c.set(k.trim(), v.trim())?;
    }
    c.validate()?;
    Ok(c)
}

async fn run_broker(args: BrokerArgs) -> anyhow::Result<()> {
    let config = load(args)?;
    let metrics_addr = config.metrics_listener;
    let server = Server::bind(config).await?;
    let addr = server.local_addr()?;
    // Tests and scripts read this line to learn the bound port.
    println!("sluice listening on {addr}");
    // One line per listener, for tests and scripts that use a secured one.
    for (name, addr) in server.listener_addrs()? {
        println!("sluice listener {name} on {addr}");
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    if let (Some(addr), Some(handle)) = (metrics_addr, sluice_broker::observability::install()) {
        let stop = rx.clone();
        tokio::spawn(async move {
            if let Err(e) = sluice_broker::observability::serve(addr, handle, stop).await {
                tracing::error!(%addr, error = %e, "metrics endpoint failed");
            }
        });
    }
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        // Fails only if the server already stopped, which is what was asked.
        let _ = tx.send(true);
    });
    server.run(rx).await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the broker");
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %e, "cannot listen for Ctrl-C either; stop the broker with SIGKILL");
                std::future::pending::<()>().await;
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    use std::io::IsTerminal;

    let cli = Cli::parse();
    // The broker logs its life at info; a tool's stderr is for the user, so only warnings.
    let default_level = if matches!(cli.command, Command::Broker(_)) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", explain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes in one sentence, leaving out causes the message already quotes.
fn explain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Broker(args) => rt.block_on(run_broker(args)),
        Command::Topic(c) => rt.block_on(tools::topic::run(c)),
        Command::Produce(a) => rt.block_on(tools::produce::run(a)),
        Command::Consume(a) => rt.block_on(tools::consume::run(a)),
        Command::Group(c) => rt.block_on(tools::group::run(c)),
        Command::Cluster(c) => rt.block_on(tools::cluster::run(c)),
        Command::Acl(c) => rt.block_on(tools::acl::run(c)),
        Command::Bench(c) => rt.block_on(tools::bench::run(c)),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "sluice", &mut std::io::stdout());
            Ok(())
        }
    }
}
