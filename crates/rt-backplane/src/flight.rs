//! Single flight: identical reads on one node share one Redis command.
//!
//! A reconnect storm sends thousands of clients back with the same cursor at once; each would
//! otherwise cost a script run (and the half dozen commands inside it). Callers with the same
//! key share one flight, but only a flight that has not been sent yet: a flight already in
//! the air may have been answered from a Redis state older than the caller's watch, and a
//! reader must see everything stored before it asked. So, per key, at most one flight is in
//! the air and one is queued behind it; every caller arriving meanwhile joins the queued one.
//!
//! The queued flight is sent once the one in the air has landed and, at the earliest, a
//! gathering time after that one was sent. A storm's clients do not all arrive in the same
//! millisecond: thousands of new connections come in over most of a second, and a read lands
//! in a millisecond or two, so sending the queued flight as soon as the one ahead lands shares
//! each flight among a handful of callers only (measured: 417 script calls for 3,000 clients).
//! With a gathering time, a key costs at most one flight per gathering time however many
//! callers come. A caller only ever waits for it behind a flight of the same key in the air: a
//! lone read, or one after the previous has landed, leaves at once. Waiting only makes a
//! queued flight later, so it still postdates every caller it carries.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// A flight's answer, once it landed.
type Flight<V> = watch::Receiver<Option<V>>;

/// The flights of one key.
struct Slot<V> {
    in_air: Option<Flight<V>>,
    /// When the flight in the air was sent.
    sent: Instant,
    queued: Option<Flight<V>>,
}

/// What a caller does: lead a flight (if queued, behind the one in the air and not before the
/// time given), or follow the queued one.
enum Turn<V> {
    Lead(watch::Sender<Option<V>>, Option<(Flight<V>, Instant)>),
    Follow(Flight<V>),
}

/// Concurrent identical calls, coalesced per key (see the module docs).
pub(crate) struct Flights<V> {
    slots: Arc<Mutex<HashMap<String, Slot<V>>>>,
    /// The least time between two flights of one key when the second was queued.
    gather: Duration,
}

impl<V: Clone + Send + Sync + 'static> Flights<V> {
    /// Flights of one key leave at least `gather` apart while callers queue behind them (see
    /// the module docs).
    pub(crate) fn new(gather: Duration) -> Self {
        Flights {
            slots: Arc::new(Mutex::new(HashMap::new())),
            gather,
        }
    }

    /// The result of `call` for `key`: a flight of its own, or the queued one of an identical
    /// call. `call` is run by whichever caller leads the flight.
    pub(crate) async fn run<F, Fut>(&self, key: String, call: F) -> V
    where
        F: Fn() -> Fut,
        Fut: Future<Output = V>,
    {
        loop {
            let (tx, ahead) = match self.turn(&key) {
                Turn::Lead(tx, ahead) => (tx, ahead),
                Turn::Follow(mut queued) => match queued.wait_for(Option::is_some).await {
                    Ok(v) => return v.clone().expect("waited for Some"),
                    // Its leader went away (its caller was dropped): try again.
                    Err(_) => continue,
                },
            };
            let _leading = Leading {
                slots: self.slots.clone(),
                key: &key,
                flight: tx.subscribe(),
            };
            if let Some((mut ahead, not_before)) = ahead {
                // Landed or abandoned: either way this one may go, once callers have had
                // their time to gather.
                let _ = ahead.wait_for(Option::is_some).await;
                tokio::time::sleep_until(not_before).await;
                let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(slot) = slots.get_mut(&key) {
                    slot.queued = None;
                    slot.in_air = Some(tx.subscribe());
                    slot.sent = Instant::now();
                }
            }
            let v = call().await;
            tx.send_replace(Some(v.clone()));
            return v;
        }
    }

    /// Whether a caller of `key` leads a flight (sent now, or queued) or follows the queued
    /// one.
    fn turn(&self, key: &str) -> Turn<V> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots.entry(key.to_owned()).or_insert(Slot {
            in_air: None,
            sent: Instant::now(),
            queued: None,
        });
        if let Some(queued) = &slot.queued {
            return Turn::Follow(queued.clone());
        }
        let (tx, rx) = watch::channel(None);
        match slot.in_air.clone() {
            Some(ahead) => {
                slot.queued = Some(rx);
                Turn::Lead(tx, Some((ahead, slot.sent + self.gather)))
            }
            None => {
                slot.in_air = Some(rx);
                slot.sent = Instant::now();
                Turn::Lead(tx, None)
            }
        }
    }
}

/// Takes a flight out of its slot when its leader is done (or dropped).
struct Leading<'a, V> {
    slots: Arc<Mutex<HashMap<String, Slot<V>>>>,
    key: &'a str,
    flight: Flight<V>,
}

impl<V> Drop for Leading<'_, V> {
    fn drop(&mut self) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let Some(slot) = slots.get_mut(self.key) else {
            return;
        };
        for place in [&mut slot.in_air, &mut slot.queued] {
            if place.as_ref().is_some_and(|f| f.same_channel(&self.flight)) {
                *place = None;
            }
        }
        if slot.in_air.is_none() && slot.queued.is_none() {
            slots.remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn callers_during_a_flight_share_the_next_one() {
        let flights = Arc::new(Flights::<usize>::new(Duration::ZERO));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = vec![];
        for _ in 0..100 {
            let (flights, calls) = (flights.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                flights
                    .run("k".into(), || async {
                        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        n
                    })
                    .await
            }));
        }
        let mut answers = vec![];
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        // The first flight, then one queued flight for everyone who came while it flew.
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(answers.iter().filter(|&&n| n == 1).count(), 1);
        assert!(flights.slots.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_flight_already_in_the_air_is_not_joined() {
        let flights = Arc::new(Flights::<usize>::new(Duration::ZERO));
        let calls = Arc::new(AtomicUsize::new(0));
        let first = {
            let (flights, calls) = (flights.clone(), calls.clone());
            tokio::spawn(async move {
                flights
                    .run("k".into(), || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        1
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let second = flights
            .run("k".into(), || async {
                calls.fetch_add(1, Ordering::SeqCst);
                2
            })
            .await;
        assert_eq!((first.await.unwrap(), second), (1, 2));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_dropped_leader_does_not_strand_its_followers() {
        let flights = Arc::new(Flights::<usize>::new(Duration::ZERO));
        // In the air, and never landing until aborted.
        let stuck = {
            let flights = flights.clone();
            tokio::spawn(
                async move { flights.run("k".into(), std::future::pending::<usize>).await },
            )
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Queued behind it: the leader of the next flight, then a follower.
        let leader = {
            let flights = flights.clone();
            tokio::spawn(async move { flights.run("k".into(), || async { 7 }).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let follower = {
            let flights = flights.clone();
            tokio::spawn(async move { flights.run("k".into(), || async { 8 }).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        leader.abort();
        stuck.abort();
        let got = tokio::time::timeout(Duration::from_secs(2), follower)
            .await
            .expect("the follower was stranded")
            .unwrap();
        assert_eq!(got, 8);
        assert!(flights.slots.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn callers_arriving_over_time_share_one_flight_per_gathering_time() {
        let flights = Arc::new(Flights::<usize>::new(Duration::from_millis(100)));
        let calls = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut tasks = vec![];
        // One caller every 2 ms for 400 ms; each flight takes 5 ms.
        for i in 0..200u32 {
            tokio::time::sleep_until(start + Duration::from_millis(2) * i).await;
            let (flights, calls) = (flights.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                flights
                    .run("k".into(), || async {
                        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        n
                    })
                    .await
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // A flight at 0 ms, then one every 100 ms (without gathering: one every 5 ms, 80).
        let n = calls.load(Ordering::SeqCst);
        assert!((4..=6).contains(&n), "{n} flights");
        assert!(flights.slots.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_with_none_in_the_air_does_not_wait_to_gather() {
        let flights = Flights::<usize>::new(Duration::from_secs(60));
        let start = Instant::now();
        // Alone, then after the first landed: both leave at once.
        assert_eq!(flights.run("k".into(), || async { 1 }).await, 1);
        let second = flights.run("k".into(), || async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            2
        });
        assert_eq!(second.await, 2);
        assert_eq!(start.elapsed(), Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_flight_leaves_a_gathering_time_after_the_one_ahead() {
        let flights = Arc::new(Flights::<Duration>::new(Duration::from_millis(100)));
        let start = Instant::now();
        // Each flight answers when it was sent.
        let first = {
            let flights = flights.clone();
            tokio::spawn(async move {
                let call = || async {
                    let sent = start.elapsed();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    sent
                };
                flights.run("k".into(), call).await
            })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        // Queued at 1 ms behind a flight that lands at 5 ms.
        let second = flights.run("k".into(), || async { start.elapsed() }).await;
        assert_eq!(first.await.unwrap(), Duration::ZERO);
        assert_eq!(second, Duration::from_millis(100));
    }

    #[tokio::test]
    async fn keys_fly_apart() {
        let flights = Flights::<String>::new(Duration::ZERO);
        let (a, b) = tokio::join!(
            flights.run("a".into(), || async { "a".to_string() }),
            flights.run("b".into(), || async { "b".to_string() })
        );
        assert_eq!((a.as_str(), b.as_str()), ("a", "b"));
    }
}
