//! Binding, accepting connections and shutting down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use rt_core::{Backplane, ChannelPattern, Hub, HubConfig, MemoryBackplane, Retention};
use rt_http::{ConnectionLimits, Listener};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::error::Error;
use crate::router::App;

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    app: Arc<App>,
    config: Config,
    limits: ConnectionLimits,
    tls: Option<rt_http::Tls>,
}

/// The channel the demo page uses, open to anonymous clients while the demo is served.
const DEMO_CHANNEL: &str = "demo";

/// The backplane every part of the server shares.
pub(crate) type SharedBackplane = Arc<dyn Backplane>;

/// The backplane `--backplane` names. An unreachable Redis or NATS does not stop the server:
/// it starts degraded (publishes answer 503) and keeps reconnecting.
async fn backplane(config: &Config) -> Result<SharedBackplane, Error> {
    let url = config.backplane.as_str();
    #[cfg(not(all(feature = "redis", feature = "nats")))]
    let without = |feature: &str| {
        format!("--backplane: this rt-server was built without the `{feature}` feature; rebuild with --features {feature}")
    };
    let scheme = url.split_once("://").map_or(url, |(scheme, _)| scheme);
    let backplane: SharedBackplane = match scheme {
        "memory" => {
            let retention = Retention {
                max_len: config.history_size,
                max_age: config.history_age,
            };
            let memory = MemoryBackplane::new(retention);
            Arc::new(memory.with_idempotency_window(config.idempotency_window))
        }
        #[cfg(feature = "redis")]
        "redis" | "rediss" | "redis-cluster" | "rediss-cluster" => crate::transport::redis(config).await?,
        #[cfg(feature = "nats")]
        "nats" | "tls" => crate::transport::nats(config).await?,
        #[cfg(not(feature = "redis"))]
        "redis" | "rediss" | "redis-cluster" | "rediss-cluster" => return Err(Error::Config(without("redis"))),
        #[cfg(not(feature = "nats"))]
        "nats" | "tls" => return Err(Error::Config(without("nats"))),
        _ => {
            return Err(Error::Config(format!(
                "--backplane: {url:?} is neither `memory` nor a redis://, rediss://, redis-cluster://, rediss-cluster://, nats:// or tls:// URL"
            )))
        }
    };
    if let rt_core::Health::Degraded(reason) = backplane.health() {
        tracing::warn!(%reason, "starting without the backplane; publishes answer 503 until it is reachable");
    }
    Ok(backplane)
}

impl Server {
    /// Sets up the backplane and hub and binds the listen address.
    pub async fn bind(config: Config) -> Result<Self, Error> {
        if config.body_read_timeout.is_zero() {
            return Err(Error::Config(
                "--body-read-timeout must be more than 0s".into(),
            ));
        }
        if config.max_channels == 0 || config.queue_capacity == 0 || config.max_payload == 0 {
            return Err(Error::Config(
                "--max-channels, --queue-capacity and --max-payload must be at least 1".into(),
            ));
        }
        if config.metrics {
            // Installed before anything records, so that no early count is lost.
            crate::metrics::recorder();
        }
        let tls = config.tls.tls()?;
        // Without token options, anonymous clients may also publish on the demo page's channel.
        let demo = config.demo.then(|| ChannelPattern::new(DEMO_CHANNEL));
        let demo = demo
            .transpose()
            .map_err(|e| Error::Config(format!("demo: {e}")))?;
        let edge = config.auth.edge(demo.as_slice());
        let edge = edge.map_err(|e| Error::Config(e.to_string()))?;
        let edge = config.proxy.hooks(edge);
        let edge = edge.map_err(|e| Error::Config(format!("--proxy-*: {e}")))?;
        let limits = config.limits.limits();
        let limits = limits.map_err(|e| Error::Config(e.to_string()))?;
        let hub = HubConfig {
            queue_capacity: config.queue_capacity,
            max_channels: config.max_channels,
            max_payload: config.max_payload,
            ..HubConfig::default()
        };
        let hub = Hub::new(backplane(&config).await?, hub);
        if !config.presence.is_empty() {
            let enabled = hub.enable_presence(config.presence.iter().cloned());
            enabled.map_err(|e| Error::Config(format!("--presence: {e}")))?;
        }
        // A queue long enough for thousands of clients connecting at once (rt_http::bind).
        let listener = rt_http::bind(config.listen).map_err(|source| Error::Bind {
            addr: config.listen.to_string(),
            source,
        })?;
        Ok(Server {
            listener,
            app: Arc::new(App::new(hub, &config, edge)),
            config,
            limits,
            tls,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        // A bound TcpListener always has a local address.
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// The hub, to publish or subscribe in-process.
    pub fn hub(&self) -> &Hub {
        &self.app.hub
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully: stops accepting, tells
    /// every transport to end its connections, and waits up to the configured deadline.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let Server {
            listener,
            app,
            config,
            limits,
            tls,
        } = self;
        let addr = listener.local_addr().unwrap_or(config.listen);
        tracing::info!(%addr, "rt-server listening");
        let handler = app.clone();
        let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let app = handler.clone();
            async move { app.handle(req).await }
        });
        let (picker, answerer) = (app.clone(), app.clone());
        let mut listener = Listener::new(listener, limits);
        if let Some(tls) = tls {
            listener = listener.tls(tls);
        }
        let graceful = listener
            // SSE over HTTP/1.1 without hyper's per-connection buffers (rt_http::LeanHttp1).
            .lean(
                move |head| picker.lean(head),
                move |req| {
                    let app = answerer.clone();
                    async move { app.handle_lean(req).await }
                },
            )
            .serve(service, shutdown)
            .await;
        tracing::info!("shutting down");
        app.hub.begin_shutdown();
        // hyper stops tracking a connection once it is upgraded, so also wait for the
        // transports' own connections to end: a WebSocket is open until its 1001 close
        // handshake is done, and exiting earlier would reset it instead. In-process
        // subscriptions of an embedding program are not waited for.
        let drained = async {
            graceful.shutdown().await;
            while app.observer.open() > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        };
        if tokio::time::timeout(config.shutdown_deadline, drained)
            .await
            .is_err()
        {
            tracing::warn!(deadline = ?config.shutdown_deadline, "connections still open at the shutdown deadline");
        }
        Ok(())
    }
}
