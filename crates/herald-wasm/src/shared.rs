//! `SharedTabs`: the rules of a connection shared by the tabs of an app
//! (herald-core's `Lease`, `Hub`, `SharedPresence`, `Held` and `Unacked`)
//! for the package's `shared.js`, which only carries messages between tabs
//! (`BroadcastChannel`), holds the Web Lock, runs the timers and calls the
//! holder's `HeraldClient`.

use std::time::Duration;

use herald_core::{
    Heard, Held, Hub, Instant, Joined, Lease, PresenceChange, PresenceMember, SessionSubscription, SharedPresence,
    Term, Unacked, protocol::Topic,
};
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
    /// The holder's presence of each topic, metadata as the tabs gave it.
    presence: SharedPresence<JsValue>,
    held: Held,
    /// This tab's publishes, each `{args, resolve, reject}` as `shared.js` made it.
    unacked: Unacked<JsValue>,
}

/// A term as it travels between tabs: `[number, holder]`.
fn term(term: Term) -> Array {
    Array::of2(&JsValue::from(term.number as f64), &JsValue::from(term.holder))
}

/// A term as it came from another tab; `None` for anything else (`null`:
/// the tab knew of no holder).
fn read_term(value: &JsValue) -> Option<Term> {
    let number = options::field(value, "0")?.as_f64()? as u64;
    let holder = options::field(value, "1")?.as_f64()? as u32;
    Some(Term { number, holder })
}

fn tabs(tabs: impl IntoIterator<Item = u32>) -> Array {
    tabs.into_iter().map(JsValue::from).collect()
}

fn position(at: Option<&herald_core::protocol::Position>) -> JsValue {
    at.map_or(JsValue::NULL, js::position)
}

fn topics(topics: &[Topic]) -> Array {
    topics.iter().map(|topic| JsValue::from_str(topic.as_str())).collect()
}

/// The options of the session's subscription: `{presence, since?, meta?}`.
fn subscription(how: SessionSubscription<JsValue>, from: JsValue) -> JsValue {
    let options = Fields::new().set("presence", how.presence);
    let options = if from.is_null() { options } else { options.set("since", from) };
    match how.meta {
        Some(meta) => options.set("meta", meta),
        None => options,
    }
    .done()
}

/// `message[name]`: members, each with its metadata in `message.meta`, if any.
fn members(message: &JsValue, name: &str) -> Vec<PresenceMember<JsValue>> {
    let Some(users) = options::field(message, name) else { return Vec::new() };
    let meta = options::field(message, "meta").unwrap_or_default();
    let mut members = Vec::new();
    for user in Array::from(&users).iter() {
        if let Some(user) = user.as_string() {
            let has = options::field(&meta, &user);
            members.push((user, has));
        }
    }
    members
}

/// `{type: 'presence', topic, members, meta}`, as the session says it.
fn listed(topic: &Topic, members: &[PresenceMember<JsValue>]) -> JsValue {
    let (users, mut meta) = (Array::new(), Fields::new());
    for (user, has) in members {
        users.push(&JsValue::from_str(user));
        if let Some(value) = has {
            meta = meta.set(user, value.clone());
        }
    }
    Fields::new()
        .set("type", "presence")
        .set("topic", topic.as_str())
        .set("members", users)
        .set("meta", meta.done())
        .done()
}

#[wasm_bindgen]
impl SharedTabs {
    /// The share of tab `tab`, whose holder's lease lapses after `lease_ms`.
    #[wasm_bindgen(constructor)]
    pub fn new(tab: u32, lease_ms: u32) -> Self {
        let lease = Lease::new(tab, Duration::from_millis(lease_ms.into()), Instant::now());
        Self {
            lease,
            hub: None,
            presence: SharedPresence::default(),
            held: Held::default(),
            unacked: Unacked::default(),
        }
    }

    /// This tab got the lock: returns its term. One that takes over from
    /// another holder gathers what the tabs want until `start()`, so that
    /// each topic recovers from the earliest tab; the first holder has
    /// nothing to recover and subscribes at once.
    pub fn take(&mut self) -> Array {
        self.hub = Some(if self.lease.term().is_some() { Hub::gathering() } else { Hub::default() });
        self.presence = SharedPresence::default();
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
    pub fn heard(&mut self, term: &JsValue) -> String {
        let Some(term) = read_term(term) else { return "stale".to_owned() };
        match self.lease.heard(Instant::now(), term) {
            Heard::Current => "current",
            Heard::Stale => "stale",
            Heard::NewHolder { stepped_down } => {
                if stepped_down {
                    self.hub = None;
                    self.presence = SharedPresence::default();
                }
                if stepped_down { "stepped_down" } else { "new" }
            }
            _ => "stale",
        }
        .to_owned()
    }

    /// Whether a tab's request under `term` (`[number, holder]`, or null) is
    /// for this tab as the holder; one sent to an older holder is dropped.
    pub fn addressed(&self, term: &JsValue) -> bool {
        self.lease.addressed(read_term(term))
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
    /// null), with `presence` and its metadata `meta` (or `undefined`).
    /// Returns `{kind: 'subscribe', options}` (subscribe the session with
    /// these options), `{kind: 'waiting'}`, `{kind: 'live', position,
    /// resync, presence}` (tell the tab now; `presence`: the members as last
    /// listed, a message for a tab that asked for them) or
    /// `{kind: 'unconfirmed'}`; with `setMeta: true` (set `meta` on the
    /// session) or `upgrade`, the options to subscribe the session again
    /// with, which adds presence.
    pub fn want(
        &mut self,
        tab: u32,
        topic: &str,
        since: JsValue,
        presence: bool,
        meta: JsValue,
    ) -> Result<JsValue, JsValue> {
        let topic = Topic::new(topic).map_err(|e| js::error(&e.to_string()))?;
        let wrapped = Fields::new().set("since", since).done();
        let since = options::position(&wrapped, "since").map_err(|()| js::error("since must be {epoch, seq}"))?;
        let change = if presence { self.presence.want(&topic, (!meta.is_undefined()).then_some(meta)) } else { None };
        let hub = self.hub.get_or_insert_with(Hub::default);
        let joined = match hub.want(tab, topic.clone(), since) {
            Joined::Subscribe { from } => match self.presence.subscribe(&topic) {
                Some(how) => {
                    Fields::new().set("kind", "subscribe").set("options", subscription(how, position(from.as_ref())))
                }
                None => Fields::new().set("kind", "waiting"),
            },
            Joined::Live { position: at, resync } => {
                let joined =
                    Fields::new().set("kind", "live").set("position", position(at.as_ref())).set("resync", resync);
                match self.presence.members(topic.as_str()).filter(|_| presence) {
                    Some(members) => joined.set("presence", listed(&topic, members)),
                    None => joined,
                }
            }
            Joined::Unconfirmed => Fields::new().set("kind", "unconfirmed"),
            _ => Fields::new().set("kind", "waiting"),
        };
        Ok(match change {
            Some(PresenceChange::SetMeta(_)) => joined.set("setMeta", true),
            Some(PresenceChange::Subscribe(meta)) => {
                joined.set("upgrade", subscription(SessionSubscription { presence: true, meta }, JsValue::NULL))
            }
            _ => joined,
        }
        .done())
    }

    /// A tab set its presence metadata of `topic`: the session's from now
    /// on. True: set it on the session now (its subscription has presence).
    #[wasm_bindgen(js_name = setMeta)]
    pub fn set_meta(&mut self, topic: &str, meta: JsValue) -> bool {
        Topic::new(topic).is_ok_and(|topic| self.presence.set_meta(&topic, meta))
    }

    /// The new holder gathered what the tabs want: `[[topic, options], ...]`
    /// to subscribe the session to, each from the earliest position its
    /// tabs hold.
    pub fn start(&mut self) -> Array {
        let Some(hub) = &mut self.hub else { return Array::new() };
        let subscribe = Array::new();
        for (topic, from) in hub.start() {
            if let Some(how) = self.presence.subscribe(&topic) {
                let options = subscription(how, position(from.as_ref()));
                subscribe.push(&Array::of2(&JsValue::from_str(topic.as_str()), &options));
            }
        }
        subscribe
    }

    /// Tab `tab` (this one, or another while this one holds the connection)
    /// left `topic`; true when no tab wants it: unsubscribe the session.
    pub fn leave(&mut self, tab: u32, topic: &str) -> bool {
        if self.lease.me() == tab {
            self.held.forget(topic);
        }
        let unwanted = self.hub.as_mut().is_some_and(|hub| hub.leave(tab, topic));
        if unwanted {
            self.presence.forget(topic);
        }
        unwanted
    }

    /// The tabs alive now (holding their lifetime locks): the topics of
    /// those seen before and gone now (crashed) to unsubscribe the session from.
    pub fn alive(&mut self, tabs: &[u32]) -> Array {
        let Some(hub) = &mut self.hub else { return Array::new() };
        let unwanted = hub.alive(tabs);
        self.forget(&unwanted)
    }

    /// Tab `tab` is gone: the topics to unsubscribe the session from.
    #[wasm_bindgen(js_name = dropTab)]
    pub fn drop_tab(&mut self, tab: u32) -> Array {
        let Some(hub) = &mut self.hub else { return Array::new() };
        let unwanted = hub.drop_tab(tab);
        self.forget(&unwanted)
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
            Some("refused") => {
                self.presence.forget(topic);
                (hub.on_refused(topic), Vec::new())
            }
            Some("presence") => {
                self.presence.on_presence(topic, members(message, "members"));
                (hub.on_other(topic, false), Vec::new())
            }
            Some("presence_diff") => {
                let left: Vec<String> = members(message, "left").into_iter().map(|(user, _)| user).collect();
                self.presence.on_diff(topic, members(message, "joined"), &left);
                (hub.on_other(topic, false), Vec::new())
            }
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

    /// This tab asks for a publish, `request` (`{args, resolve, reject}`):
    /// its id, if it is to be sent now to the holder; otherwise it goes to
    /// the next holder this tab hears of, by `resend()`.
    pub fn publish(&mut self, request: JsValue) -> Option<u32> {
        self.unacked.add(request, self.lease.term())
    }

    /// A new holder (or this tab took over): `[[id, request], ...]`, this
    /// tab's publishes it is to be sent, those not answered yet.
    pub fn resend(&mut self) -> Array {
        let Some(term) = self.lease.term() else { return Array::new() };
        let send = self.unacked.resend(term);
        send.into_iter().map(|(id, request)| JsValue::from(Array::of2(&JsValue::from(id), request))).collect()
    }

    /// The holder answered this tab's publish `id`: its request, or
    /// `undefined` if it was answered already.
    pub fn answered(&mut self, id: u32) -> JsValue {
        self.unacked.answered(id).unwrap_or_default()
    }
}

impl SharedTabs {
    /// The session no longer subscribes to `topics`: their presence goes too.
    fn forget(&mut self, unwanted: &[Topic]) -> Array {
        for topic in unwanted {
            self.presence.forget(topic.as_str());
        }
        topics(unwanted)
    }
}

fn seq(message: &JsValue) -> Option<u64> {
    options::field(message, "seq").and_then(|seq| seq.as_f64()).map(|seq| seq as u64)
}
