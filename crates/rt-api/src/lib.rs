//! rt-api: the server API, what an application backend does over HTTP with an API key.
//!
//! | route | what |
//! | --- | --- |
//! | `POST /api/publish` | one event to one channel; the answer is its position |
//! | `POST /api/broadcast` | one event to many channels, each at its own position; the answer lists the positions or each channel's error |
//! | `GET /api/history?channel=..&since=..&limit=..` | a channel's retained events after an offset (or `earliest`), with its head and epoch |
//! | `POST /api/disconnect` | end every connection of a subject (the token's `sub`) on every node, saying whether it may reconnect |
//! | `POST /api/unsubscribe` | take a channel out of every subscription of a subject, on every node |
//! | `GET /api/presence?channel=..&cursor=..&limit=..` | a page of a channel's members (one per connection, on every node) and its counts |
//! | `GET /api/presence-stats?channel=..` | a channel's counts of connections and distinct subjects, without listing them |
//! | `GET /api/channels?pattern=..&cursor=..&limit=..` | a page of the channels with subscribers on any node, with their counts |
//!
//! [`Api`] is a `tower_service::Service` over any request body, like rt's transports: mount
//! it on `/api/*` in axum or serve it with hyper. Every route needs the [`ApiKey`] of its
//! [`Config`] (`X-Api-Key` or `Authorization: Bearer`); the default config has none and refuses
//! everything. Requests from browser pages are held to the config's [`Origins`] like any
//! route. [`ClientPresence`] serves `GET /presence` to clients instead, with their own token
//! and its `presence` grant. docs/protocol.md describes the requests and answers, docs/openapi.yaml specifies
//! them.
//!
//! | module | what |
//! | --- | --- |
//! | `config` | [`Config`]: key, origins, observer, body timeout, limits |
//! | `endpoint` | [`Api`]: routing, the key and origin checks, publish |
//! | `broadcast` | `POST /api/broadcast` |
//! | `history` | `GET /api/history` |
//! | `control` | `POST /api/disconnect`, `POST /api/unsubscribe` |
//! | `presence` | `GET /api/presence`, `/api/presence-stats`, `/api/channels` |

mod broadcast;
mod config;
mod control;
mod endpoint;
mod history;
mod presence;

pub use config::Config;
pub use endpoint::Api;
pub use presence::ClientPresence;
pub use rt_http::{ApiKey, Origins};
