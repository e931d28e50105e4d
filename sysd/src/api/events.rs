//! `GET /events`: what happened, as newline-delimited JSON, from `since`
//! (out of the last events kept) until `until`, or for as long as the
//! client listens; filtered by `type`, `event`, `container`, `image`,
//! `label` and `volume` as Docker filters them.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bollard_stubs::models::{
    EventActor, EventMessage, EventMessageScopeEnum, EventMessageTypeEnum,
};
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use super::attach::time_bound;
use super::containers::Filters;
use super::{streams, ApiResult, Query};
use crate::engine::{Engine, Event};

fn nanos(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// An event as the clients read it: the model's fields and, for a
/// container, the legacy `status`, `id` and `from` older clients use.
pub fn message(e: &Event) -> Value {
    let typ = match e.typ {
        "container" => EventMessageTypeEnum::CONTAINER,
        "image" => EventMessageTypeEnum::IMAGE,
        "volume" => EventMessageTypeEnum::VOLUME,
        "network" => EventMessageTypeEnum::NETWORK,
        _ => EventMessageTypeEnum::DAEMON,
    };
    let m = EventMessage {
        typ: Some(typ),
        action: Some(e.action.clone()),
        actor: Some(EventActor {
            id: Some(e.id.clone()),
            attributes: Some(e.attributes.clone().into_iter().collect()),
        }),
        scope: Some(EventMessageScopeEnum::LOCAL),
        time: Some(e.time_nano / 1_000_000_000),
        time_nano: Some(e.time_nano),
    };
    let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
    if e.typ == "container" {
        v["status"] = Value::String(e.action.clone());
        v["id"] = Value::String(e.id.clone());
        if let Some(image) = e.attributes.get("image") {
            v["from"] = Value::String(image.clone());
        }
    }
    v
}

fn wanted(f: &Filters, e: &Event) -> bool {
    let attr = |k: &str| e.attributes.get(k).map(String::as_str).unwrap_or("");
    f.matches("type", |t| t == e.typ)
        // `exec_start: sh` is the event `exec_start`.
        && f.matches("event", |a| e.action.split(':').next() == Some(a))
        && f.matches("container", |c| {
            e.typ == "container" && (e.id.starts_with(c) || attr("name") == c)
        })
        && f.matches("image", |i| attr("image") == i || (e.typ == "image" && e.id == i))
        && f.matches("volume", |v| e.typ == "volume" && e.id == v)
        && f.matches("label", |l| match l.split_once('=') {
            Some((k, v)) => e.attributes.get(k).is_some_and(|x| x == v),
            None => e.attributes.contains_key(l),
        })
}

pub fn events(engine: &Arc<Engine>, q: &Query) -> ApiResult {
    let filters = Filters::parse(
        q.get("filters").map(String::as_str),
        &["type", "event", "container", "image", "label", "volume"],
    )?;
    let since = time_bound(q, "since")?.map(nanos);
    let until = time_bound(q, "until")?;
    let (past, mut live) = engine.events().subscribe(since);
    Ok(streams::later(
        "application/json",
        move |mut tx| async move {
            let line = |e: &Event| {
                let mut b = serde_json::to_vec(&message(e)).unwrap_or_default();
                b.push(b'\n');
                Bytes::from(b)
            };
            let until_nanos = until.map(nanos);
            for e in past.iter().filter(|e| wanted(&filters, e)) {
                if until_nanos.is_some_and(|u| e.time_nano > u) {
                    return;
                }
                if tx.send_data(line(e)).await.is_err() {
                    return;
                }
            }
            loop {
                let left = match until {
                    Some(u) => match u.duration_since(SystemTime::now()) {
                        Ok(d) => d,
                        Err(_) => return,
                    },
                    None => Duration::from_secs(3600 * 24 * 365),
                };
                let e = match tokio::time::timeout(left, live.recv()).await {
                    Err(_) => return,
                    Ok(Ok(e)) => e,
                    Ok(Err(RecvError::Lagged(_))) => continue,
                    Ok(Err(RecvError::Closed)) => return,
                };
                if wanted(&filters, &e) && tx.send_data(line(&e)).await.is_err() {
                    return;
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ev(typ: &'static str, action: &str, id: &str, name: &str) -> Event {
        Event {
            typ,
            action: action.into(),
            id: id.into(),
            attributes: BTreeMap::from([
                ("name".to_owned(), name.to_owned()),
                ("image".to_owned(), "busybox".to_owned()),
            ]),
            time_nano: 1_700_000_000_123_456_789,
        }
    }

    #[test]
    fn messages_carry_the_model_and_the_legacy_fields() {
        let v = message(&ev("container", "start", "abc", "web"));
        assert_eq!(v["Type"], "container");
        assert_eq!(v["Action"], "start");
        assert_eq!(v["Actor"]["ID"], "abc");
        assert_eq!(v["Actor"]["Attributes"]["name"], "web");
        assert_eq!(v["time"], 1_700_000_000);
        assert_eq!(v["timeNano"], 1_700_000_000_123_456_789i64);
        assert_eq!(
            (v["status"].as_str(), v["from"].as_str()),
            (Some("start"), Some("busybox"))
        );
    }

    #[test]
    fn filters_as_docker_reads_them() {
        let f = |text: &str| {
            Filters::parse(
                Some(text),
                &["type", "event", "container", "image", "label", "volume"],
            )
            .unwrap()
        };
        let start = ev("container", "start", "abc123", "web");
        let exec = ev("container", "exec_start: sh -c x", "abc123", "web");
        assert!(wanted(&f(r#"{"event":{"start":true}}"#), &start));
        assert!(!wanted(&f(r#"{"event":["die"]}"#), &start));
        assert!(wanted(&f(r#"{"event":["exec_start"]}"#), &exec));
        assert!(wanted(&f(r#"{"container":["web"]}"#), &start));
        assert!(wanted(&f(r#"{"container":["abc"]}"#), &start));
        assert!(!wanted(&f(r#"{"container":["db"]}"#), &start));
        assert!(wanted(
            &f(r#"{"type":["container"],"image":["busybox"]}"#),
            &start
        ));
        assert!(!wanted(&f(r#"{"type":["image"]}"#), &start));
    }
}
