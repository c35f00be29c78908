//! The `warren` binary: one executable, several roles (see `cli`).
//!
//! This crate is the only place that knows about processes: arguments,
//! environment, signals, exit codes and log output. Everything else is a
//! library call.
//!
//! Exit status: 0 success, 2 bad usage or configuration, 1 anything else.

mod admin_cmd;
mod api_client;
mod authd_cmd;
mod cli;
mod connect_cmd;
mod device_cmd;
mod door_cmd;
mod duration;
#[cfg(feature = "edge")]
mod edge_cmd;
mod egress;
mod log_writer;
mod login_cmd;
mod policy_cmd;
mod site_cmd;
mod ssh_cmd;
mod status_cmd;
#[cfg(feature = "edge")]
mod up_cmd;
mod user_cmd;

use clap::Parser;
use cli::{Cli, Command, EdgeCommand, LogFormat};
use std::process::ExitCode;

/// A failure with its exit status.
pub(crate) enum Failure {
    /// Bad usage or configuration: exit 2.
    Usage(String),
    /// Anything else: exit 1.
    Other(anyhow::Error),
    /// Exit with this status, saying nothing (a child's, passed on).
    Status(u8),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(message) => f.write_str(message),
            Failure::Other(e) => write!(f, "{e:#}"),
            Failure::Status(code) => write!(f, "exit status {code}"),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARREN_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,quinn=warn,quinn_proto=warn,rustls=warn")
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .init(),
        // Peer-controlled strings reach fields: one event stays one line.
        LogFormat::Text => builder
            .with_writer(log_writer::EscapingStderr { ansi })
            .init(),
    }
}

/// `warren edge` or `up` in a build for sites.
#[cfg(not(feature = "edge"))]
fn no_edge() -> Failure {
    Failure::Usage(
        "this warren is built for sites only (without the `edge` feature): \
         `warren edge` and `warren up` are not in it"
            .into(),
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // One crypto provider for the whole process (aws-lc-rs); see deny.toml.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warren: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Edge(args) => match args.command {
                Some(EdgeCommand::Status(s)) => status_cmd::run(s).await,
                #[cfg(feature = "edge")]
                None => edge_cmd::run(args).await,
                #[cfg(not(feature = "edge"))]
                None => Err(no_edge()),
            },
            Command::Site(args) => match args.command {
                Some(cmd) => admin_cmd::site(cmd).await,
                None => site_cmd::run(*args).await,
            },
            Command::Resource { command } => admin_cmd::resource(*command).await,
            Command::Status(s) => status_cmd::run(s).await,
            Command::Egress { command } => egress::run(*command).await,
            #[cfg(feature = "edge")]
            Command::Up(args) => up_cmd::run(args).await,
            #[cfg(not(feature = "edge"))]
            Command::Up(_) => Err(no_edge()),
            Command::Policy { command } => policy_cmd::run(command).await,
            Command::User { command } => user_cmd::run(command).await,
            Command::Device { command } => device_cmd::run(command).await,
            Command::Login(args) => login_cmd::run(args).await,
            Command::Connect(args) => connect_cmd::run(args).await,
            Command::Ssh(args) => ssh_cmd::run(args).await,
            Command::SignKey(args) => ssh_cmd::sign_key(args).await,
            Command::Scp(args) => ssh_cmd::scp(args).await,
            Command::AuthDaemon(args) => authd_cmd::run(args).await,
        }
    });
    // Do not wait for tasks still holding sockets: the work is done.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("warren: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Other(e)) => {
            eprintln!("warren: {e:#}");
            ExitCode::from(1)
        }
        Err(Failure::Status(code)) => ExitCode::from(code),
    }
}

/// Resolves on SIGTERM or SIGINT.
pub(crate) fn terminate_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Installed now, not when first polled: a SIGTERM that arrives while
    // the caller is still starting up is kept for it, not fatal.
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
