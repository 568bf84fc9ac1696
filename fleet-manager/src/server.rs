//! Wiring: open the store, build the application and the engine, serve.

use crate::app::{App, AppConfig};
use crate::config::Config;
use crate::crypto::SecretBox;
use crate::error::{Error, Result};
use crate::ops::Engine;
use crate::store::Store;

/// Opens the store named by the configuration (creating the data directory
/// and applying migrations) and builds the application on it.
pub async fn open_app(cfg: &Config) -> Result<App> {
    open_app_with(cfg, vec![]).await
}

/// As [`open_app`], with extra sagas registered in the engine (tests).
pub async fn open_app_with(cfg: &Config, extra_sagas: Vec<crate::ops::sagas::Saga>) -> Result<App> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
        Error::invalid(format!(
            "can't create data directory {}: {e}",
            cfg.data_dir.display()
        ))
    })?;
    let store = Store::open(&cfg.database_url).await?;
    let secrets = SecretBox::load(cfg.secrets_key.as_deref(), &cfg.data_dir)?;
    let engine = Engine::new(store.clone(), cfg.engine.clone(), extra_sagas);
    let app = App::new(
        store,
        secrets,
        engine,
        AppConfig {
            network_defaults: cfg.network_defaults.clone(),
            future_wait: cfg.future_wait,
        },
    );
    app.bootstrap().await?;
    Ok(app)
}

/// A running server, for `serve` and for tests.
#[derive(Debug)]
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub app: App,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops taking requests and work, and waits for both to drain.
    pub async fn stop(self) {
        self.app.engine.shutdown();
        let _ = self.shutdown.send(());
        let _ = self.task.await;
        for w in self.workers {
            let _ = w.await;
        }
    }
}

/// Starts the HTTP server and the operation workers on an application.
pub async fn start(app: App, listen: std::net::SocketAddr, body_limit: usize) -> Result<Running> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::invalid(format!("can't listen on {listen}: {e}")))?;
    let addr = listener.local_addr().map_err(Error::internal)?;
    let workers = app.engine.start();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let router = crate::api::router(app.clone(), body_limit);
    let task = tokio::spawn(crate::api::serve(listener, router, async move {
        let _ = rx.await;
    }));
    Ok(Running {
        addr,
        app,
        shutdown: tx,
        task,
        workers,
    })
}
