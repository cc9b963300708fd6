//! Single flight: identical reads on one node share one Redis command.
//!
//! A reconnect storm sends thousands of clients back with the same cursor at once; each would
//! otherwise cost a script run (and the half dozen commands inside it). Callers with the same
//! key share one flight, but only a flight that has not been sent yet: a flight already in
//! the air may have been answered from a Redis state older than the caller's watch, and a
//! reader must see everything stored before it asked. So, per key, at most one flight is in
//! the air and one is queued behind it; every caller arriving meanwhile joins the queued one,
//! which is sent as soon as the one in the air lands.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// The flights of one key.
struct Slot<V> {
    in_air: Option<watch::Receiver<Option<V>>>,
    queued: Option<watch::Receiver<Option<V>>>,
}

/// Concurrent identical calls, coalesced per key (see the module docs).
pub(crate) struct Flights<V> {
    slots: Arc<Mutex<HashMap<String, Slot<V>>>>,
}

impl<V: Clone + Send + Sync + 'static> Flights<V> {
    pub(crate) fn new() -> Self {
        Flights {
            slots: Arc::new(Mutex::new(HashMap::new())),
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
            let (lead, mut wait) = {
                let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                let slot = slots.entry(key.clone()).or_insert(Slot {
                    in_air: None,
                    queued: None,
                });
                match &slot.queued {
                    Some(queued) => (None, Some(queued.clone())),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        let ahead = slot.in_air.clone();
                        if ahead.is_some() {
                            slot.queued = Some(rx);
                        } else {
                            slot.in_air = Some(rx);
                        }
                        (Some(tx), ahead)
                    }
                }
            };
            let Some(tx) = lead else {
                match wait {
                    Some(mut rx) => match rx.wait_for(Option::is_some).await {
                        Ok(v) => return v.clone().expect("waited for Some"),
                        // Its leader went away (its caller was dropped): try again.
                        Err(_) => continue,
                    },
                    None => continue,
                }
            };
            let _leading = Leading {
                slots: self.slots.clone(),
                key: &key,
                flight: tx.subscribe(),
            };
            if let Some(ahead) = &mut wait {
                // Landed or abandoned: either way this one may go.
                let _ = ahead.wait_for(Option::is_some).await;
                let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(slot) = slots.get_mut(&key) {
                    slot.queued = None;
                    slot.in_air = Some(tx.subscribe());
                }
            }
            let v = call().await;
            tx.send_replace(Some(v.clone()));
            return v;
        }
    }
}

/// Takes a flight out of its slot when its leader is done (or dropped).
struct Leading<'a, V> {
    slots: Arc<Mutex<HashMap<String, Slot<V>>>>,
    key: &'a str,
    flight: watch::Receiver<Option<V>>,
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
        let flights = Arc::new(Flights::<usize>::new());
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
        let flights = Arc::new(Flights::<usize>::new());
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
        let flights = Arc::new(Flights::<usize>::new());
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

    #[tokio::test]
    async fn keys_fly_apart() {
        let flights = Flights::<String>::new();
        let (a, b) = tokio::join!(
            flights.run("a".into(), || async { "a".to_string() }),
            flights.run("b".into(), || async { "b".to_string() })
        );
        assert_eq!((a.as_str(), b.as_str()), ("a", "b"));
    }
}
