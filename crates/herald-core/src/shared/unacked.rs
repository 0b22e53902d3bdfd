//! A tab's publishes that wait for the holder's answer.

use super::Term;

/// The publishes a tab asked the holder for and has no answer to yet
/// (`T` is the request as the driver keeps it). Each is sent once per term:
/// a new holder gets those its predecessor did not answer, with the same
/// publish id, so that one the old holder did send becomes an acked
/// duplicate on the server rather than a second event.
///
/// ```
/// use herald_core::{Term, Unacked};
///
/// let mut unacked = Unacked::default();
/// let first = Term { number: 1, holder: 3 };
/// let id = unacked.add("publish a", Some(first)).expect("a holder is known: send it now");
/// // The holder went before it answered: the next one gets the publish again.
/// let second = Term { number: 2, holder: 4 };
/// assert_eq!(unacked.resend(second), [(id, &"publish a")]);
/// assert_eq!(unacked.resend(second), [], "once per term");
/// assert_eq!(unacked.answered(id), Some("publish a"));
/// assert_eq!(unacked.answered(id), None, "a second answer finds nothing");
/// ```
#[derive(Debug)]
pub struct Unacked<T> {
    last_id: u32,
    waiting: Vec<Waiting<T>>,
}

#[derive(Debug)]
struct Waiting<T> {
    id: u32,
    /// The term it was last sent under.
    sent: Option<Term>,
    request: T,
}

impl<T> Default for Unacked<T> {
    fn default() -> Self {
        Self { last_id: 0, waiting: Vec::new() }
    }
}

impl<T> Unacked<T> {
    /// The tab asks for a publish. Returns its id (unique in this tab) when
    /// it is to be sent now, to the holder of `term`; with no holder known
    /// yet, it waits for [`resend`](Self::resend).
    pub fn add(&mut self, request: T, term: Option<Term>) -> Option<u32> {
        self.last_id += 1;
        self.waiting.push(Waiting { id: self.last_id, sent: term, request });
        term.map(|_| self.last_id)
    }

    /// The holder of `term` is new to this tab (or this tab took over): the
    /// publishes not sent under it yet, to send now.
    pub fn resend(&mut self, term: Term) -> Vec<(u32, &T)> {
        let mut send = Vec::new();
        for waiting in &mut self.waiting {
            if waiting.sent != Some(term) {
                waiting.sent = Some(term);
                send.push((waiting.id, &waiting.request));
            }
        }
        send
    }

    /// The answer to publish `id` came: its request, if it still waited (a
    /// holder that thawed may answer one a newer holder answered already).
    pub fn answered(&mut self, id: u32) -> Option<T> {
        let at = self.waiting.iter().position(|waiting| waiting.id == id)?;
        Some(self.waiting.remove(at).request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Term = Term { number: 1, holder: 1 };
    const SECOND: Term = Term { number: 2, holder: 2 };

    #[test]
    fn a_publish_made_before_any_holder_is_known_is_sent_to_the_first() {
        let mut unacked = Unacked::default();
        assert_eq!(unacked.add('a', None), None);
        assert_eq!(unacked.add('b', None), None);
        assert_eq!(unacked.resend(FIRST), [(1, &'a'), (2, &'b')]);
        assert_eq!(unacked.add('c', Some(FIRST)), Some(3), "sent at once, and not again to the same holder");
        assert_eq!(unacked.resend(FIRST), []);
    }

    #[test]
    fn each_new_holder_gets_every_publish_no_holder_answered_in_the_order_asked() {
        let mut unacked = Unacked::default();
        let a = unacked.add('a', Some(FIRST)).unwrap();
        let b = unacked.add('b', Some(FIRST)).unwrap();
        let c = unacked.add('c', Some(FIRST)).unwrap();
        assert_eq!(unacked.answered(b), Some('b'));
        assert_eq!(unacked.resend(SECOND), [(a, &'a'), (c, &'c')]);
        assert_eq!(unacked.answered(c), Some('c'));
        // The thawed first holder answers `c` too: nothing waits for it any more.
        assert_eq!(unacked.answered(c), None);
        assert_eq!(unacked.resend(Term { number: 3, holder: 1 }), [(a, &'a')]);
    }

    #[test]
    fn ids_are_not_reused_after_an_answer() {
        let mut unacked = Unacked::default();
        let a = unacked.add('a', Some(FIRST)).unwrap();
        unacked.answered(a);
        assert_ne!(unacked.add('b', Some(FIRST)), Some(a), "a late answer to `a` must not settle `b`");
    }
}
