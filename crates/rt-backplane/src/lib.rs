//! rt-backplane: the Redis backplane of rt, so that several rt nodes behind a load balancer
//! share one ordered, resumable stream per channel.
//!
//! [`RedisBackplane`] implements [`rt_core::Backplane`]. A client may publish on node B, be
//! subscribed on node A and reconnect to node C with its cursor: positions are assigned in
//! Redis (one Lua script per batch of publishes), history lives in Redis streams bounded by
//! count and age, and each node subscribes once per channel that has local subscribers, then
//! fans out locally. When Redis is unreachable, publishes fail fast with `503`, health reports
//! degraded, subscribers stay connected, and the node reconnects by itself and replays what
//! its subscribers missed; when Redis lost its data, a new epoch tells clients
//! `recovered: false` instead of leaving a silent gap.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use rt_backplane::{RedisBackplane, RedisConfig};
//! use rt_core::{Channel, Hub, HubConfig, NewEvent, Payload};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = RedisConfig::new("redis://127.0.0.1:6379")
//!     .prefix("my-app")
//!     .history(1000, Duration::from_secs(300));
//! let hub = Hub::new(Arc::new(RedisBackplane::connect(config).await?), HubConfig::default());
//! let ack = hub.publish(NewEvent::new(Channel::new("news")?, Payload::text("hi"))).await?;
//! println!("stored at offset {}", ack.event.offset());
//! # Ok(()) }
//! ```
//!
//! # Metrics
//!
//! Through the `metrics` facade, like rt-core, it records the history gauge
//! [`rt_core::telemetry::names::HISTORY_EVENTS`] without scanning Redis: the publish script
//! returns how many events the channel retains, history reads return the oldest retained
//! offset, and the gauge is the sum of the last counts this node saw for channels it used
//! within the history age.
//!
//! # Features
//!
//! | feature | what it adds |
//! |---------|--------------|
//! | `tls`   | `rediss://` and `rediss-cluster://` URLs: TLS with rustls, trusting the platform's roots or the CA given with [`RedisConfig::tls_ca`] |
//! | `clap`  | `RedisArgs`: `--redis-tls-ca` as a `clap` flag, as rt-server has it |
//!
//! Without features, URLs are `redis://[user:password@]host:port[/db]` and
//! `redis+unix:///path/to/socket`.
//!
//! # In Redis
//!
//! Every key starts with the configured prefix, so deployments can share a Redis:
//! `P:epoch`, and per epoch `P:E:heads` (latest offset of every channel, kept so offsets are
//! never reused), `P:E:s:CHANNEL` (history stream), `P:E:t:CHANNEL` (event times, for trimming
//! by age) and `P:E:i:...` (idempotency keys); live events travel on the pub/sub channel
//! `P:c:CHANNEL`, and signals between nodes ([`rt_core::Signal`]) on `P:signal`. History keys expire on their own once a channel is quiet for longer than the
//! history age. A single Redis (or a primary with replicas and persistence) is supported, and
//! so is Redis Cluster.
//!
//! Presence and the registry of active channels are keys per node that expire unless the
//! node's heartbeat refreshes them (`P:{nodes}`, `P:{n:NODE}:...`, `P:{CHANNEL}:p:...`; see
//! `presence.lua`), so a node that dies drops out within [`RedisConfig::presence_ttl`]. Each
//! key carries a hash tag and each script call touches one slot, so the same layout works on
//! one Redis and on Redis Cluster: a channel's presence lives in its channel's slot.
//!
//! # Redis Cluster
//!
//! With `redis-cluster://host:port[,host:port...][?replicas=N]`, every key of a channel
//! carries the hash tag `{CHANNEL}` (`P:{CHANNEL}:E:s:CHANNEL`, ...), so each channel lives in
//! one slot and one shard; the epoch is kept per slot (`P:{TAG}:epoch`), so a shard that lost
//! its data starts a new epoch for its channels only. Events travel by sharded pub/sub
//! (`SSUBSCRIBE`/`SPUBLISH` on `P:c:{CHANNEL}`, Redis 7 or later), so a publish touches only
//! its shard. An event is acknowledged and sent to subscribers only once `N` replicas
//! (default 1) hold it (`WAIT`), so what clients were told survives a failover; with fewer
//! replicas up, that shard's channels answer `503` and health is degraded, while the other
//! shards keep working. The `redis` crate's cluster client follows `MOVED`, `ASK` and
//! failovers. With the `tls` feature, `rediss-cluster://` reaches every node, the given ones
//! and the discovered ones, over TLS (`rediss://`), trusting [`RedisConfig::tls_ca`] if set;
//! a certificate it does not trust is an error at startup ([`Error::TlsRefused`]).

#[cfg(feature = "clap")]
mod args;
mod backplane;
mod cluster;
mod codec;
mod config;
mod error;
mod flight;
mod link;
mod presence;
mod retained;

#[cfg(feature = "clap")]
pub use args::RedisArgs;
pub use backplane::RedisBackplane;
pub use config::RedisConfig;
pub use error::Error;
