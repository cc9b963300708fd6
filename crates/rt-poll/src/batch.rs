//! One poll's answer: the events taken from a subscription, and how it is encoded.

use std::sync::Arc;

use bytes::Bytes;
use rt_core::{Changes, Channel, Cursor, Delivery, Event, Joined, Subscription};
use serde::Serialize;

use crate::session::{Disconnect, SessionId, Taken};

/// What one poll answers with.
#[derive(Debug)]
pub(crate) struct Batch {
    events: Vec<Arc<Event>>,
    /// Channels whose requested position could not be honoured (or lost continuity while the
    /// poll was held): the client must reload them.
    resynced: Vec<Channel>,
    /// Channels the application took out of the subscription while the poll was held.
    unsubscribed: Vec<Channel>,
    /// The application ended the subject's connections: whether to come back, and why.
    disconnect: Option<Disconnect>,
    /// The subscription ended; answer with what was taken.
    ended: bool,
    limit: usize,
    /// The poll's session, and the join/leave batches it gathered.
    session: Option<(SessionId, Taken)>,
}

impl Batch {
    /// An empty batch of at most `limit` events. `joined` carries the channels whose cursor
    /// could not be honoured: they are reported even when the batch stops before the queued
    /// resync notice, because the subscription's cursor has already moved them to the head.
    pub(crate) fn new(joined: Joined, limit: usize) -> Self {
        Batch {
            events: Vec::new(),
            resynced: joined.resynced,
            unsubscribed: Vec::new(),
            disconnect: None,
            ended: false,
            limit: limit.max(1),
            session: None,
        }
    }

    /// Answers with the poll's session id and the join/leave batches taken from it.
    pub(crate) fn set_session(&mut self, id: SessionId, taken: Taken) {
        self.session = Some((id, taken));
    }

    /// How many events the batch holds.
    pub(crate) fn events(&self) -> u64 {
        self.events.len() as u64
    }

    /// The channels the application took out of the subscription.
    pub(crate) fn unsubscribed(&self) -> &[Channel] {
        &self.unsubscribed
    }

    /// How the application ended the subject's connections, if it did.
    pub(crate) fn disconnect(&self) -> Option<&Disconnect> {
        self.disconnect.as_ref()
    }

    /// Whether there is something to answer with at once.
    pub(crate) fn is_ready(&self) -> bool {
        !self.events.is_empty()
            || !self.resynced.is_empty()
            || !self.unsubscribed.is_empty()
            || self.ended
    }

    /// Adds one delivery (`None`: the subscription ended).
    pub(crate) fn push(&mut self, delivery: Option<Delivery>) {
        match delivery {
            Some(Delivery::Event(event)) => self.events.push(event),
            Some(Delivery::Resync { channels }) => {
                for channel in channels {
                    if !self.resynced.contains(&channel) {
                        self.resynced.push(channel);
                    }
                }
            }
            Some(Delivery::Unsubscribed { channel }) => self.unsubscribed.push(channel),
            // A poll's join/leave events come from its session, which also hears them
            // between polls (see `session.rs`).
            Some(Delivery::Presence(_)) => {}
            Some(Delivery::Disconnected { reconnect, reason }) => {
                self.disconnect = Some(Disconnect { reconnect, reason });
                self.ended = true;
            }
            None => self.ended = true,
        }
    }

    /// Takes whatever `sub` has ready without waiting for a publish (history included), up to
    /// the limit. Nothing beyond the limit is taken from the subscription, so its cursor stays
    /// right after the last event returned and the rest is served by the next poll.
    pub(crate) async fn fill(&mut self, sub: &mut Subscription) {
        while !self.ended && self.events.len() < self.limit {
            match sub.next_ready().await {
                Some(delivery) => self.push(Some(delivery)),
                None => break,
            }
        }
    }

    /// `{"events":[...],"cursor":"...","recovered":bool,"resynced":[...]}`, with each event's
    /// shared, once-encoded JSON spliced in as is; `unsubscribed`, `disconnect`, `session`,
    /// `presence`, `presence_lost` and the connect hook's `data` when there are such.
    pub(crate) fn encode(&self, cursor: &Cursor, data: Option<&serde_json::Value>) -> Bytes {
        #[derive(Serialize)]
        struct Tail<'a> {
            cursor: String,
            recovered: bool,
            resynced: &'a [Channel],
            #[serde(skip_serializing_if = "<[Channel]>::is_empty")]
            unsubscribed: &'a [Channel],
            #[serde(skip_serializing_if = "Option::is_none")]
            disconnect: Option<&'a Disconnect>,
            #[serde(skip_serializing_if = "Option::is_none")]
            session: Option<String>,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            presence: Vec<&'a Changes>,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            presence_lost: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            data: Option<&'a serde_json::Value>,
        }
        let taken = self.session.as_ref().map(|(_, taken)| taken);
        let tail = serde_json::to_vec(&Tail {
            cursor: cursor.to_string(),
            recovered: self.resynced.is_empty(),
            resynced: &self.resynced,
            unsubscribed: &self.unsubscribed,
            disconnect: self.disconnect.as_ref(),
            session: self.session.as_ref().map(|(id, _)| id.to_string()),
            presence: taken.map_or_else(Vec::new, |t| t.batches.iter().map(|c| &**c).collect()),
            presence_lost: taken.is_some_and(|t| t.lost),
            data,
        })
        // Strings, booleans and join/leave batches (names and JSON values) always serialise.
        .unwrap_or_default();
        let events: Vec<Bytes> = self.events.iter().map(|e| e.json().clone()).collect();
        let size = events.iter().map(|e| e.len() + 1).sum::<usize>() + tail.len() + 16;
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(b"{\"events\":[");
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(event);
        }
        out.extend_from_slice(b"],");
        // The tail object without its opening brace continues this one.
        out.extend_from_slice(tail.get(1..).unwrap_or(b"}"));
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rt_core::{Epoch, EventName, Payload, Position};

    fn event(offset: u64) -> Arc<Event> {
        Arc::new(Event::new(
            Channel::new("c").unwrap(),
            Position {
                epoch: Epoch(0xab),
                offset,
            },
            EventName::message(),
            Payload::text("x\"y"),
            1,
        ))
    }

    #[test]
    fn encodes_valid_json_with_the_shared_event_objects() {
        let mut batch = Batch::new(Joined::default(), 10);
        assert!(!batch.is_ready());
        batch.push(Some(Delivery::Event(event(1))));
        batch.push(Some(Delivery::Event(event(2))));
        let mut cursor = Cursor::new(Epoch(0xab));
        cursor.set(Channel::new("c").unwrap(), 2);
        let v: serde_json::Value = serde_json::from_slice(&batch.encode(&cursor, None)).unwrap();
        assert_eq!(v["cursor"], "ab,c=2");
        assert_eq!(v["recovered"], true);
        assert_eq!(v["resynced"], serde_json::json!([]));
        let events = v["events"].as_array().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[1],
            serde_json::from_slice::<serde_json::Value>(event(2).json()).unwrap()
        );

        let joined = Joined {
            resynced: vec![Channel::new("c").unwrap()],
        };
        let mut batch = Batch::new(joined, 10);
        assert!(batch.is_ready());
        batch.push(Some(Delivery::Resync {
            channels: vec![Channel::new("c").unwrap(), Channel::new("d").unwrap()],
        }));
        let v: serde_json::Value = serde_json::from_slice(&batch.encode(&cursor, None)).unwrap();
        assert_eq!(v["events"], serde_json::json!([]));
        assert_eq!(v["recovered"], false);
        assert_eq!(v["resynced"], serde_json::json!(["c", "d"]));
        assert!(v.get("unsubscribed").is_none() && v.get("disconnect").is_none());
        assert!(v.get("data").is_none());

        // The connect hook's data, as it answered it.
        let data = serde_json::json!({"name": "Carol", "n": [1, 2]});
        let v: serde_json::Value =
            serde_json::from_slice(&batch.encode(&cursor, Some(&data))).unwrap();
        assert_eq!(v["data"], data);
    }

    #[test]
    fn the_session_and_its_join_leave_batches_are_fields_of_their_own() {
        let mut batch = Batch::new(Joined::default(), 10);
        let changes = Changes {
            channel: Channel::new("room").unwrap(),
            joins: vec![rt_core::Member::new(None)],
            leaves: vec![],
        };
        let id = SessionId::parse(&"ab".repeat(16)).unwrap();
        let taken = Taken {
            batches: vec![Arc::new(changes.clone())],
            lost: true,
        };
        batch.set_session(id, taken);
        let v: serde_json::Value =
            serde_json::from_slice(&batch.encode(&Cursor::new(Epoch(1)), None)).unwrap();
        assert_eq!(v["session"], "ab".repeat(16));
        assert_eq!(v["presence"], serde_json::json!([changes]));
        assert_eq!(v["presence_lost"], true);
        batch.set_session(id, Taken::default());
        let v: serde_json::Value =
            serde_json::from_slice(&batch.encode(&Cursor::new(Epoch(1)), None)).unwrap();
        assert!(
            v.get("presence").is_none() && v.get("presence_lost").is_none(),
            "{v}"
        );
    }

    #[test]
    fn signals_end_the_poll_and_are_reported() {
        let mut batch = Batch::new(Joined::default(), 10);
        batch.push(Some(Delivery::Unsubscribed {
            channel: Channel::new("c").unwrap(),
        }));
        assert!(batch.is_ready());
        batch.push(Some(Delivery::Disconnected {
            reconnect: false,
            reason: "banned".into(),
        }));
        let v: serde_json::Value =
            serde_json::from_slice(&batch.encode(&Cursor::new(Epoch(1)), None)).unwrap();
        assert_eq!(v["unsubscribed"], serde_json::json!(["c"]));
        assert_eq!(
            v["disconnect"],
            serde_json::json!({"reconnect": false, "reason": "banned"})
        );
    }
}
