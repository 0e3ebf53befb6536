//! `clear-proxy`: CLEAR in front of an OpenAI-compatible engine. See the crate README.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use clap::Parser;
use clear_proxy::{ConfigBuilder, Flags, Proxy};
use std::process::ExitCode;

fn main() -> ExitCode {
    let flags = Flags::parse();
    let config = match ConfigBuilder::from_flags(&flags).and_then(ConfigBuilder::build) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("clear-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_max_level(config.log_level())
        .with_target(false)
        .init();
    // An unreachable ledger stops the start like a bad setting: a replica started
    // while Redis is down holds no lease and would refuse every request while its
    // /healthz told the load balancer it was ready.
    let ledger = match config.ledger().map(|spec| spec.connect()).transpose() {
        Ok(ledger) => ledger,
        Err(e) => {
            eprintln!("clear-proxy: ledger: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(l) = &ledger {
        tracing::info!(
            namespace = l.namespace(),
            replica = l.replica_id(),
            "joined the fleet's ledger"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("clear-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), String> = runtime.block_on(async {
        let proxy = Proxy::with_ledger(config.clone(), ledger)?;
        let listener = tokio::net::TcpListener::bind(config.listen())
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen()))?;
        tracing::info!(listen = %config.listen(), window_s = config.window().as_secs_f64(), "clear-proxy ready");
        proxy
            .serve(listener, shutdown_signal())
            .await
            .map_err(|e| format!("server: {e}"))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clear-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C, or SIGTERM on Unix (what container runtimes send).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
