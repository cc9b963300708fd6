//! The hook calls' telemetry, recorded through the `metrics` facade into whatever recorder
//! the program installed (rt-server installs Prometheus's).

/// Histogram of hook call durations in seconds, by `hook`.
pub const DURATION: &str = "rt_proxy_duration_seconds";
/// Counter of hook answers, by `hook` and `result` (`allow`, `deny`, `error`).
pub const CALLS: &str = "rt_proxy_calls_total";
/// Counter of failed hook calls, by `hook` and `kind` ([`Error::kind`](crate::Error::kind)).
pub const ERRORS: &str = "rt_proxy_errors_total";

/// Describes the series to the installed recorder (their help text). Call it once after
/// installing the recorder.
pub fn describe() {
    metrics::describe_histogram!(
        DURATION,
        metrics::Unit::Seconds,
        "Backend hook call durations by hook (connect, subscribe, publish)"
    );
    metrics::describe_counter!(CALLS, "Backend hook answers by hook and result");
    metrics::describe_counter!(ERRORS, "Failed backend hook calls by hook and kind");
}
