//! The `ixcp` daemon: `ixcp --config FILE`. Runs as root in the network
//! namespace of the interfaces it manages; stops on SIGINT or SIGTERM.

use std::process::ExitCode;

use ix_driver::ixcp::{Daemon, DaemonConfig, stop_on_signals};

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    let args: Vec<String> = std::env::args().collect();
    let [_, flag, path] = args.as_slice() else {
        eprintln!("usage: ixcp --config FILE");
        return ExitCode::from(2);
    };
    if flag != "--config" {
        eprintln!("usage: ixcp --config FILE");
        return ExitCode::from(2);
    }
    let config = match DaemonConfig::load(path.as_ref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("ixcp: {error}");
            return ExitCode::from(2);
        }
    };
    let result = stop_on_signals().and_then(|stop| Daemon::start(config).and_then(|mut daemon| daemon.serve(stop)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ixcp: {error}");
            ExitCode::FAILURE
        }
    }
}
