//! One run: a server, its subscribers and publishers, phases at given publish rates.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::fleet::{self, Shared, Transport, MAX_PHASES};
use crate::hist::Percentiles;
use crate::marker::{now_us, Marker};
use crate::proc::Usage;
use crate::publisher::Publisher;
use crate::servers::{Programs, Server, Target};

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Spec {
    pub(crate) scenario: &'static str,
    pub(crate) target: Target,
    pub(crate) transport: String,
    #[serde(skip)]
    pub(crate) kind: Transport,
    pub(crate) subscribers: usize,
    pub(crate) channels: usize,
    pub(crate) publishers: usize,
    /// Publishes per second, all channels together, one phase each.
    pub(crate) rates: Vec<f64>,
    pub(crate) phase_secs: f64,
    pub(crate) payload_bytes: usize,
    /// Connection counts at which server memory is read (idle scenario).
    pub(crate) checkpoints: Vec<usize>,
    /// How long connections are held idle before the delivery check.
    pub(crate) hold_secs: f64,
    /// rt-server's backplane, in the backplane scenario (elsewhere: memory, its default).
    pub(crate) backplane: Option<&'static str>,
    /// Arguments added to the server's command line.
    #[serde(skip)]
    pub(crate) server_args: Vec<String>,
    /// Other processes whose CPU each phase reports (the backplane's Redis servers).
    pub(crate) watched: Vec<Watched>,
}

/// A process outside the run whose CPU time is read before and after each phase.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Watched {
    /// What reports call it: `redis-server :7001 master`.
    pub(crate) name: String,
    pub(crate) pid: u32,
}

/// CPU seconds a [`Watched`] process used during one phase.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ProcessCpu {
    pub(crate) name: String,
    pub(crate) cpu_s: f64,
}

impl Spec {
    /// The server as reports name it: the target, and its backplane when one was chosen.
    pub(crate) fn server(&self) -> String {
        match self.backplane {
            Some(b) => format!("{} ({b})", self.target.name()),
            None => self.target.name().into(),
        }
    }
}

/// Measurements of one phase.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Phase {
    pub(crate) rate_target: f64,
    pub(crate) rate_achieved: f64,
    pub(crate) published: u64,
    pub(crate) expected_deliveries: u64,
    pub(crate) delivered: u64,
    pub(crate) delivered_per_s: f64,
    /// Publishes acknowledged to the publisher (rt only; 0 for the others).
    pub(crate) acked: u64,
    /// Acknowledgements per second, from the phase start to the last acknowledgement.
    pub(crate) acked_per_s: f64,
    pub(crate) latency: Percentiles,
    pub(crate) server_cpu_s: f64,
    /// Server CPU seconds per wall second over the phase (1.0 = one core busy).
    pub(crate) server_cpu_cores: f64,
    /// CPU seconds of each watched process over the phase (same span as `server_cpu_s`).
    pub(crate) processes: Vec<ProcessCpu>,
    /// The generator's own CPU seconds per wall second (to see when it is the limit).
    pub(crate) generator_cpu_cores: f64,
    pub(crate) publish_errors: u64,
}

/// Server memory (Pss, summed over its processes) with `connections` open.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct MemPoint {
    pub(crate) connections: usize,
    pub(crate) pss_kib: u64,
}

/// Everything measured in one run.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Report {
    #[serde(flatten)]
    pub(crate) spec: Spec,
    pub(crate) connected: usize,
    pub(crate) connect_secs: f64,
    pub(crate) phases: Vec<Phase>,
    pub(crate) memory: Vec<MemPoint>,
    /// (Pss with all connections − Pss before any) / connections, bytes.
    pub(crate) bytes_per_connection: Option<f64>,
    pub(crate) errors: u64,
    pub(crate) first_errors: Vec<String>,
    /// Messages a subscriber never received (gaps and the tail after a disconnect).
    pub(crate) lost: u64,
    /// Messages received twice or out of order.
    pub(crate) duplicates_or_reordered: u64,
    /// Subscribers whose connection ended before the run did (closed by the server).
    pub(crate) closed_early: usize,
    pub(crate) server_start: Usage,
    pub(crate) server_end: Usage,
}

/// One publisher and the channels it owns (per-channel order needs a single publisher).
struct Worker {
    publisher: Publisher,
    channels: Vec<(usize, String)>,
    seq: Vec<u64>,
}

impl Worker {
    async fn warm(&mut self, size: usize) -> Result<(), String> {
        for (_, name) in &self.channels {
            let m = Marker {
                phase: 0,
                seq: 0,
                time_us: 0,
            };
            self.publisher.publish(name, m, size).await?;
        }
        Ok(())
    }

    /// Publishes round-robin over its channels at `rate` for `secs`; returns the count, the
    /// number of failed publishes and the first failure.
    async fn phase(
        &mut self,
        phase: u32,
        rate: f64,
        secs: f64,
        size: usize,
    ) -> (u64, u64, Option<String>) {
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let end = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
        let (mut count, mut errors, mut first) = (0u64, 0u64, None);
        let mut next = 0;
        loop {
            let tick = ticker.tick().await;
            if tick >= end {
                break;
            }
            let i = next % self.channels.len();
            next += 1;
            let m = Marker {
                phase,
                seq: self.seq[i] + 1,
                time_us: 0,
            };
            match self.publisher.publish(&self.channels[i].1, m, size).await {
                Ok(()) => {
                    self.seq[i] += 1;
                    count += 1;
                }
                Err(e) => {
                    errors += 1;
                    first.get_or_insert(e);
                    if errors > 100 {
                        break;
                    }
                }
            }
        }
        (count, errors, first)
    }
}

/// Runs `spec` against a freshly started server.
pub(crate) async fn run(
    spec: Spec,
    programs: &Programs,
    server_cpus: Option<&str>,
) -> Result<Report, String> {
    let server = Server::start(spec.target, programs, server_cpus, &spec.server_args).await?;
    let result = measure(&spec, &server).await;
    server.stop().await;
    result
}

/// Waits until no delivery arrived for `quiet` (at most `max`).
async fn settle(shared: &Shared, quiet: Duration, max: Duration) {
    let deadline = Instant::now() + max;
    let (mut last, mut still) = (u64::MAX, Instant::now());
    while Instant::now() < deadline && still.elapsed() < quiet {
        let seen = shared.seen.load(Ordering::Relaxed);
        if seen != last {
            (last, still) = (seen, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn measure(spec: &Spec, server: &Server) -> Result<Report, String> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server_start = server.usage();
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Shared::new(spec.channels, stop_rx);

    let started = Instant::now();
    let mut memory = vec![MemPoint {
        connections: 0,
        pss_kib: server_start.pss_kib,
    }];
    let mut steps = spec.checkpoints.clone();
    steps.retain(|&c| c < spec.subscribers);
    steps.push(spec.subscribers);
    let mut spawned = 0;
    for step in steps {
        fleet::spawn(
            spec.target,
            spec.kind,
            server.addr,
            step - spawned,
            spawned,
            spec.channels,
            &shared,
        )
        .await;
        spawned = step;
        if !spec.checkpoints.is_empty() {
            // Let the server finish the handshakes' allocations before reading RSS.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            memory.push(MemPoint {
                connections: shared.connected.load(Ordering::Relaxed),
                pss_kib: server.usage().pss_kib,
            });
        }
    }
    let connect_secs = started.elapsed().as_secs_f64()
        - if spec.checkpoints.is_empty() {
            0.0
        } else {
            1.5 * memory.len().saturating_sub(1) as f64
        };
    let connected = shared.connected.load(Ordering::Relaxed);
    if spec.hold_secs > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(spec.hold_secs)).await;
    }

    let mut workers = vec![];
    for k in 0..spec.publishers.max(1) {
        let channels: Vec<(usize, String)> = (0..spec.channels)
            .filter(|c| c % spec.publishers.max(1) == k)
            .map(|c| (c, format!("c{c}")))
            .collect();
        if channels.is_empty() {
            continue;
        }
        let publisher = Publisher::connect(spec.target, server.addr, &channels[0].1).await?;
        let seq = vec![0; channels.len()];
        workers.push(Worker {
            publisher,
            channels,
            seq,
        });
    }

    // Warm-up: publish phase-0 markers until every connected subscriber has seen one, so
    // that measured phases start with every subscription in place.
    let (mut ready, mut progress) = (0, Instant::now());
    loop {
        let now_ready = shared.ready.load(Ordering::Relaxed);
        if now_ready >= shared.connected.load(Ordering::Relaxed) {
            break;
        }
        if now_ready != ready {
            (ready, progress) = (now_ready, Instant::now());
        } else if progress.elapsed() > Duration::from_secs(5) {
            shared.error(format!(
                "warm-up: only {now_ready} of {connected} subscribers received anything"
            ));
            break;
        }
        for w in &mut workers {
            if let Err(e) = w.warm(spec.payload_bytes).await {
                shared.error(format!("warm-up publish: {e}"));
            }
        }
        // Let this round arrive before the next, so that a slow server is not buried
        // under warm-up publishes.
        settle(&shared, Duration::from_millis(300), Duration::from_secs(5)).await;
    }
    settle(&shared, Duration::from_millis(300), Duration::from_secs(30)).await;

    let subs_per_channel: Vec<u64> = (0..spec.channels)
        .map(|c| {
            (0..spec.subscribers)
                .filter(|i| i % spec.channels == c)
                .count() as u64
        })
        .collect();
    let mut phases = vec![];
    for (idx, &rate) in spec.rates.iter().enumerate().take(MAX_PHASES - 1) {
        let phase = idx as u32 + 1;
        // The acknowledgements of earlier publishes are not this phase's.
        for w in &mut workers {
            if let Err(e) = w.publisher.settle_acks(Duration::from_secs(2)).await {
                shared.error(e);
            }
        }
        let acked_before: u64 = workers.iter().map(|w| w.publisher.acked).sum();
        let cpu = |w: &Watched| crate::proc::usage(w.pid).cpu_s;
        let watched_before: Vec<f64> = spec.watched.iter().map(cpu).collect();
        let before = server.usage();
        let gen_before = crate::proc::usage_alone(std::process::id());
        let t0 = now_us();
        let wall = Instant::now();
        let per_worker = rate / workers.len().max(1) as f64;
        let seq_before: Vec<Vec<u64>> = workers.iter().map(|w| w.seq.clone()).collect();
        let results = futures_util::future::join_all(
            workers
                .iter_mut()
                .map(|w| w.phase(phase, per_worker, spec.phase_secs, spec.payload_bytes)),
        )
        .await;
        let publish_secs = wall.elapsed().as_secs_f64();
        let published: u64 = results.iter().map(|r| r.0).sum();
        let publish_errors: u64 = results.iter().map(|r| r.1).sum();
        for e in results.iter().filter_map(|r| r.2.as_ref()) {
            shared.error(format!("publisher, phase {phase}: {e}"));
        }
        let mut expected = 0;
        for (w, before) in workers.iter().zip(&seq_before) {
            for (k, (c, _)) in w.channels.iter().enumerate() {
                expected += (w.seq[k] - before[k]) * subs_per_channel[*c];
            }
        }
        // Drain: until everything expected arrived, or nothing arrived for 2 s.
        let slot = phase as usize;
        let (mut last, mut still) = (0, Instant::now());
        let drain_deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = shared.delivered[slot].load(Ordering::Relaxed);
            if got >= expected
                || still.elapsed() > Duration::from_secs(2)
                || Instant::now() > drain_deadline
            {
                break;
            }
            if got != last {
                (last, still) = (got, Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for w in &mut workers {
            if let Err(e) = w.publisher.settle_acks(Duration::from_secs(2)).await {
                shared.error(e);
            }
        }
        let acked = workers.iter().map(|w| w.publisher.acked).sum::<u64>() - acked_before;
        let last_ack_us = workers
            .iter()
            .map(|w| w.publisher.last_ack_us)
            .max()
            .unwrap_or(0);
        let after = server.usage();
        let processes = spec
            .watched
            .iter()
            .zip(&watched_before)
            .map(|(w, before)| ProcessCpu {
                name: w.name.clone(),
                cpu_s: cpu(w) - before,
            })
            .collect();
        let gen_after = crate::proc::usage_alone(std::process::id());
        let delivered = shared.delivered[slot].load(Ordering::Relaxed);
        let last_us = shared.last_recv_us[slot].load(Ordering::Relaxed);
        let span = (last_us.saturating_sub(t0) as f64 / 1e6).max(publish_secs.min(1e-3));
        let phase_wall = wall.elapsed().as_secs_f64();
        phases.push(Phase {
            rate_target: rate,
            rate_achieved: published as f64 / publish_secs,
            published,
            expected_deliveries: expected,
            delivered,
            delivered_per_s: if delivered == 0 {
                0.0
            } else {
                delivered as f64 / span
            },
            acked,
            acked_per_s: if acked == 0 {
                0.0
            } else {
                let span = last_ack_us.saturating_sub(t0) as f64 / 1e6;
                acked as f64 / span.max(1e-3)
            },
            latency: Percentiles::default(),
            server_cpu_s: after.cpu_s - before.cpu_s,
            server_cpu_cores: (after.cpu_s - before.cpu_s) / phase_wall,
            processes,
            generator_cpu_cores: (gen_after.cpu_s - gen_before.cpu_s) / phase_wall,
            publish_errors,
        });
    }

    for w in &workers {
        for (k, (c, _)) in w.channels.iter().enumerate() {
            shared.published[*c].store(w.seq[k], Ordering::Relaxed);
        }
    }
    let server_end = server.usage();
    let _ = stop_tx.send(true);
    let finish_deadline = Instant::now() + Duration::from_secs(20);
    while shared.finished.load(Ordering::Relaxed) < spec.subscribers
        && Instant::now() < finish_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closed_early = shared.count_early_losses();
    for (idx, p) in phases.iter_mut().enumerate() {
        p.latency = shared.hist(idx + 1).percentiles();
    }
    let bytes_per_connection = (!spec.checkpoints.is_empty() && connected > 0).then(|| {
        let full = memory.last().map(|m| m.pss_kib).unwrap_or(0);
        (full as f64 - server_start.pss_kib as f64) * 1024.0 / connected as f64
    });
    Ok(Report {
        spec: spec.clone(),
        connected,
        connect_secs,
        phases,
        memory,
        bytes_per_connection,
        errors: shared.errors.load(Ordering::Relaxed),
        first_errors: shared.first_errors(),
        lost: shared.missing.load(Ordering::Relaxed),
        duplicates_or_reordered: shared.out_of_order.load(Ordering::Relaxed),
        closed_early,
        server_start,
        server_end,
    })
}
