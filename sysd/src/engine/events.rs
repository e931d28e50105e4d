//! The engine's events (`docker events`): what happened to containers,
//! images and volumes, kept in a ring of the last ones for `--since` and
//! broadcast to followers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

use tokio::sync::broadcast;

use super::Engine;

/// How many past events `--since` can reach back to.
const KEPT: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `container`, `image`, `volume`.
    pub typ: &'static str,
    /// `create`, `start`, `die`, `destroy`, `load`, ...
    pub action: String,
    pub id: String,
    pub attributes: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    pub time_nano: i64,
}

pub struct Events {
    ring: Mutex<VecDeque<Event>>,
    live: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            ring: Mutex::new(VecDeque::with_capacity(KEPT)),
            live: broadcast::channel(256).0,
        }
    }
}

impl Events {
    pub fn emit(
        &self,
        typ: &'static str,
        action: &str,
        id: &str,
        attributes: BTreeMap<String, String>,
    ) {
        let time_nano = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let e = Event {
            typ,
            action: action.to_owned(),
            id: id.to_owned(),
            attributes,
            time_nano,
        };
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == KEPT {
            ring.pop_front();
        }
        ring.push_back(e.clone());
        // Under the ring's lock: a subscriber that read the ring sees
        // every later event on its receiver, none twice.
        let _ = self.live.send(e);
    }

    /// The kept events at or after `since` (nanoseconds), and a receiver
    /// for the ones to come.
    pub fn subscribe(&self, since: Option<i64>) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let past = match since {
            Some(t) => ring.iter().filter(|e| e.time_nano >= t).cloned().collect(),
            None => Vec::new(),
        };
        (past, self.live.subscribe())
    }
}

impl Engine {
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// A container event, with the attributes Docker gives them: its
    /// name, image and labels, and `extra` (an exit code, a signal).
    pub(super) fn container_event(&self, id: &str, action: &str, extra: &[(&str, String)]) {
        let attributes = {
            let inner = self.lock();
            let Some(c) = inner.containers.get(id) else {
                return;
            };
            let mut a: BTreeMap<String, String> = c.record.api.labels.clone();
            a.insert("name".into(), c.record.name.clone());
            a.insert("image".into(), c.record.image.clone());
            a
        };
        self.container_event_with(id, action, attributes, extra);
    }

    pub(super) fn container_event_with(
        &self,
        id: &str,
        action: &str,
        mut attributes: BTreeMap<String, String>,
        extra: &[(&str, String)],
    ) {
        for (k, v) in extra {
            attributes.insert((*k).to_owned(), v.clone());
        }
        self.events.emit("container", action, id, attributes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reaches_back_and_followers_get_what_comes() {
        let ev = Events::default();
        ev.emit("container", "create", "a", BTreeMap::new());
        let t = ev.ring.lock().unwrap()[0].time_nano;
        let (past, mut rx) = ev.subscribe(Some(t));
        assert_eq!(past.len(), 1);
        let (none, _) = ev.subscribe(None);
        assert!(none.is_empty());
        ev.emit("container", "start", "a", BTreeMap::new());
        assert_eq!(rx.try_recv().unwrap().action, "start");
        for i in 0..KEPT + 5 {
            ev.emit("image", "load", &i.to_string(), BTreeMap::new());
        }
        assert_eq!(ev.ring.lock().unwrap().len(), KEPT);
    }
}
