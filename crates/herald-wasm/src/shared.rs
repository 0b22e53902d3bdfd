//! `SharedTabs`: the rules of a connection shared by the tabs of an app
//! (herald-core's `Lease`, `Hub` and `Held`) for the package's `shared.js`,
//! which only carries messages between tabs (`BroadcastChannel`), holds the
//! Web Lock and runs the timers.

use std::time::Duration;

use herald_core::{Heard, Held, Hub, Instant, Joined, Lease, Term, protocol::Topic};
use js_sys::Array;
use wasm_bindgen::prelude::*;

use crate::{
    js::{self, Fields},
    options,
};

/// One tab's share of the connection: whether it holds it, and, while it
/// does, the table of what every tab subscribed.
#[wasm_bindgen]
#[derive(Debug)]
pub struct SharedTabs {
    lease: Lease,
    /// The holder's table; `None` while following.
    hub: Option<Hub>,
    held: Held,
}

/// A term as it travels between tabs: `[number, holder]`.
fn term(term: Term) -> Array {
    Array::of2(&JsValue::from(term.number as f64), &JsValue::from(term.holder))
}

fn tabs(tabs: impl IntoIterator<Item = u32>) -> Array {
    tabs.into_iter().map(JsValue::from).collect()
}

fn position(at: Option<&herald_core::protocol::Position>) -> JsValue {
    at.map_or(JsValue::NULL, js::position)
}

#[wasm_bindgen]
impl SharedTabs {
    /// The share of tab `tab`, whose holder's lease lapses after `lease_ms`.
    #[wasm_bindgen(constructor)]
    pub fn new(tab: u32, lease_ms: u32) -> Self {
        let lease = Lease::new(tab, Duration::from_millis(lease_ms.into()), Instant::now());
        Self { lease, hub: None, held: Held::default() }
    }

    /// This tab got the lock: returns its term. One that takes over from
    /// another holder gathers what the tabs want until `start()`, so that
    /// each topic recovers from the earliest tab; the first holder has
    /// nothing to recover and subscribes at once.
    pub fn take(&mut self) -> Array {
        self.hub = Some(if self.lease.term().is_some() { Hub::gathering() } else { Hub::default() });
        term(self.lease.take(Instant::now()))
    }

    /// The holder renews its lease (and says so to the others); returns in
    /// how many milliseconds to renew it next.
    pub fn renew(&mut self) -> f64 {
        self.lease.renew(Instant::now());
        self.lease.renew_every().as_millis() as f64
    }

    /// This tab holds the connection by a lease it did not renew in time (it
    /// was frozen): it must step down before it acts on anything.
    pub fn expired(&self) -> bool {
        self.lease.expired(Instant::now())
    }

    /// A holder's message came under `term` (`[number, holder]`): `'current'`,
    /// `'new'` (a new holder), `'stepped_down'` (a new holder, and this tab
    /// was the holder: close the socket) or `'stale'` (ignore the message).
    pub fn heard(&mut self, term: &Array) -> String {
        let number = term.get(0).as_f64().unwrap_or_default() as u64;
        let holder = term.get(1).as_f64().unwrap_or_default() as u32;
        let heard = self.lease.heard(Instant::now(), Term { number, holder });
        match heard {
            Heard::Current => "current",
            Heard::Stale => "stale",
            Heard::NewHolder { stepped_down } => {
                if stepped_down {
                    self.hub = None;
                }
                if stepped_down { "stepped_down" } else { "new" }
            }
            _ => "stale",
        }
        .to_owned()
    }

    /// In how many milliseconds the holder's lease lapses if it says nothing
    /// more; 0: it lapsed, this tab may take the lock from it (`steal`).
    /// `undefined` while this tab holds the lease.
    #[wasm_bindgen(js_name = lapseInMs)]
    pub fn lapse_in_ms(&self) -> Option<f64> {
        let at = self.lease.poll_timeout()?;
        Some(at.saturating_duration_since(Instant::now()).as_millis() as f64)
    }

    /// Tab `tab` wants `topic`, holding it up to `since` (`{epoch, seq}` or
    /// null). Returns `{kind: 'subscribe', from}` (subscribe the session),
    /// `{kind: 'waiting'}`, `{kind: 'live', position, resync}` (tell the tab
    /// now) or `{kind: 'unconfirmed'}`.
    pub fn want(&mut self, tab: u32, topic: &str, since: JsValue) -> Result<JsValue, JsValue> {
        let topic = Topic::new(topic).map_err(|e| js::error(&e.to_string()))?;
        let wrapped = Fields::new().set("since", since).done();
        let since = options::position(&wrapped, "since").map_err(|()| js::error("since must be {epoch, seq}"))?;
        let hub = self.hub.get_or_insert_with(Hub::default);
        Ok(match hub.want(tab, topic, since) {
            Joined::Subscribe { from } => Fields::new().set("kind", "subscribe").set("from", position(from.as_ref())),
            Joined::Live { position: at, resync } => {
                Fields::new().set("kind", "live").set("position", position(at.as_ref())).set("resync", resync)
            }
            Joined::Unconfirmed => Fields::new().set("kind", "unconfirmed"),
            _ => Fields::new().set("kind", "waiting"),
        }
        .done())
    }

    /// The new holder gathered what the tabs want: `[[topic, from], ...]` to
    /// subscribe the session to.
    pub fn start(&mut self) -> Array {
        let Some(hub) = &mut self.hub else { return Array::new() };
        hub.start()
            .into_iter()
            .map(|(topic, from)| {
                JsValue::from(Array::of2(&JsValue::from_str(topic.as_str()), &position(from.as_ref())))
            })
            .collect()
    }

    /// Tab `tab` (this one, or another while this one holds the connection)
    /// left `topic`; true when no tab wants it: unsubscribe the session.
    pub fn leave(&mut self, tab: u32, topic: &str) -> bool {
        if self.lease.me() == tab {
            self.held.forget(topic);
        }
        self.hub.as_mut().is_some_and(|hub| hub.leave(tab, topic))
    }

    /// The tabs alive now (holding their lifetime locks): the topics of
    /// those seen before and gone now (crashed) to unsubscribe the session from.
    pub fn alive(&mut self, tabs: &[u32]) -> Array {
        let Some(hub) = &mut self.hub else { return Array::new() };
        hub.alive(tabs).iter().map(|topic| JsValue::from_str(topic.as_str())).collect()
    }

    /// Tab `tab` is gone: the topics to unsubscribe the session from.
    #[wasm_bindgen(js_name = dropTab)]
    pub fn drop_tab(&mut self, tab: u32) -> Array {
        let Some(hub) = &mut self.hub else { return Array::new() };
        hub.drop_tab(tab).iter().map(|topic| JsValue::from_str(topic.as_str())).collect()
    }

    /// What the session said to the subscription `topic` (a message as
    /// `subscribe`'s callback gets it): `{tabs, behind}`, the tabs to give it
    /// to, and those of them that missed events and resync first.
    pub fn route(&mut self, topic: &str, message: &JsValue) -> JsValue {
        let Some(hub) = &mut self.hub else { return Fields::new().set("tabs", Array::new()).done() };
        let kind = options::field(message, "type").and_then(|kind| kind.as_string());
        let (to, behind): (Vec<u32>, Vec<u32>) = match kind.as_deref() {
            None => (hub.on_event(topic, seq(message)), Vec::new()),
            Some("live") => {
                let at = options::position(message, "position").unwrap_or_default();
                let told = hub.on_live(topic, at);
                (told.iter().map(|(tab, _)| *tab).collect(), told.iter().filter(|(_, r)| *r).map(|(t, _)| *t).collect())
            }
            Some("unconfirmed") => (hub.on_unconfirmed(topic), Vec::new()),
            Some("refused") => (hub.on_refused(topic), Vec::new()),
            Some(kind) => (hub.on_other(topic, kind == "resync"), Vec::new()),
        };
        Fields::new().set("tabs", tabs(to)).set("behind", tabs(behind)).done()
    }

    /// This tab's subscription `topic` got `message`: keeps where the tab is,
    /// for the next holder to recover from.
    pub fn held(&mut self, topic: &str, message: &JsValue) {
        match options::field(message, "type").and_then(|kind| kind.as_string()).as_deref() {
            None => self.held.on_event(topic, seq(message)),
            Some("live") => self.held.on_live(topic, options::position(message, "position").unwrap_or_default()),
            Some("resync" | "refused") => self.held.forget(topic),
            _ => {}
        }
    }

    /// Where this tab is in `topic`: `{epoch, seq}` or null.
    pub fn since(&self, topic: &str) -> JsValue {
        position(self.held.since(topic).as_ref())
    }
}

fn seq(message: &JsValue) -> Option<u64> {
    options::field(message, "seq").and_then(|seq| seq.as_f64()).map(|seq| seq as u64)
}
