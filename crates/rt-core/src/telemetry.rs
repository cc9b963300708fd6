//! The metrics the hub records.
//!
//! rt records through the [`metrics`] facade, which has no exporter of its own: whoever runs
//! the process installs a recorder (rt-server serves Prometheus text at `/metrics`). Without a
//! recorder every call is a no-op costing an atomic load. The metric names are constants of
//! [`names`], so every crate records the same series and the docs list them in one place.

/// The names of every metric rt records.
pub mod names {
    /// Counter of publishes, labelled `result` = `stored`, `duplicate` or an error code.
    pub const PUBLISHES: &str = "rt_publishes_total";
    /// Histogram of how long the backplane took to store a publish, in seconds.
    pub const PUBLISH_SECONDS: &str = "rt_publish_duration_seconds";
    /// Counter of events handed to subscriptions (one per subscriber per event).
    pub const DELIVERIES: &str = "rt_deliveries_total";
    /// Gauge of open subscriptions.
    pub const SUBSCRIPTIONS: &str = "rt_subscriptions";
    /// Counter of lags: a subscription fell a whole live queue behind and caught up from
    /// history.
    pub const LAGGED: &str = "rt_lagged_total";
    /// Counter of resyncs: continuity lost on some channels (history exceeded or lost).
    pub const RESYNCS: &str = "rt_resyncs_total";
    /// Gauge of events retained in history: all of this process's with the memory backplane;
    /// with the Redis backplane, those of the channels this node published to or read from
    /// within the history age, as Redis last reported them.
    pub const HISTORY_EVENTS: &str = "rt_history_events";
}

/// Describes every metric of [`names`] to the installed recorder (for `# HELP` lines).
/// Call it once after installing a recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    use names::*;
    describe_counter!(
        PUBLISHES,
        "Publishes by result: stored, duplicate or an error code"
    );
    describe_histogram!(
        PUBLISH_SECONDS,
        Unit::Seconds,
        "Time the backplane took to store a publish"
    );
    describe_counter!(DELIVERIES, "Events handed to subscriptions");
    describe_gauge!(SUBSCRIPTIONS, "Open subscriptions");
    describe_counter!(
        LAGGED,
        "Times a subscription fell a whole live queue behind and caught up from history"
    );
    describe_counter!(
        RESYNCS,
        "Continuity losses reported to subscribers (history exceeded or lost)"
    );
    describe_gauge!(
        HISTORY_EVENTS,
        "Events retained in history (Redis: of the channels this node recently used)"
    );
}
