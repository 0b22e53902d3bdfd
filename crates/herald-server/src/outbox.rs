//! A connection's outbound queue: the frames the hub queued for it and it has
//! not written yet.
//!
//! The hub fills thousands of these per event, so pushing is the fan-out's
//! inner loop: one uncontended lock in the connection's own allocation and a
//! wake only when the connection was waiting for work. (A tokio `mpsc` per
//! connection spent a third of the server's CPU at 10,000 subscribers in its
//! semaphore and block list, mostly on cache misses.) The connection takes
//! everything queued at once, so a connection that fell behind catches up in
//! one write.

use std::{
    collections::VecDeque,
    future::poll_fn,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Poll, Waker},
    time::Instant,
};

use prometheus_client::metrics::histogram::Histogram;

use crate::hub::Frame;

/// A frame waiting for its connection to write it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Queued {
    pub(crate) frame: Frame,
    /// Set on the events whose fan-out is timed: the timer fires when the
    /// last queued copy is dropped, after its connection wrote it.
    timer: Option<Arc<FanoutTimer>>,
}

impl Queued {
    pub(crate) fn new(frame: Frame, timer: Option<&Arc<FanoutTimer>>) -> Self {
        Self { frame, timer: timer.cloned() }
    }

    /// Takes the fan-out timer, to drop it when the frame has been written.
    pub(crate) fn take_timer(&mut self) -> Option<Arc<FanoutTimer>> {
        self.timer.take()
    }
}

/// Observes, when dropped, how long since the event was received: dropped
/// with the last copy queued to a subscriber, once that copy was written.
#[derive(Debug)]
pub(crate) struct FanoutTimer {
    start: Instant,
    histogram: Histogram,
}

impl FanoutTimer {
    pub(crate) fn start(histogram: &Histogram) -> Arc<Self> {
        Arc::new(Self { start: Instant::now(), histogram: histogram.clone() })
    }
}

impl Drop for FanoutTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

impl PartialEq for FanoutTimer {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

/// The queue is at its bound: the consumer fell behind.
#[derive(Debug)]
pub(crate) struct Full;

#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Queued>,
    /// The connection's task, while it waits for frames.
    waker: Option<Waker>,
}

impl Outbox {
    /// An empty queue holding at most `capacity` frames.
    pub(crate) fn new(capacity: usize) -> Self {
        Self { state: Mutex::default(), capacity: capacity.max(1) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, so the queue stays consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Frames queued now.
    pub(crate) fn len(&self) -> usize {
        self.lock().frames.len()
    }

    /// The most frames it holds.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Queues `frame` without waiting.
    pub(crate) fn push(&self, frame: &Frame, timer: Option<&Arc<FanoutTimer>>) -> Result<(), Full> {
        let waker = {
            let mut state = self.lock();
            if state.frames.len() >= self.capacity {
                return Err(Full);
            }
            state.frames.push_back(Queued::new(frame.clone(), timer));
            state.waker.take()
        };
        // Woken outside the lock, so the connection never finds it held.
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Waits until frames are queued, then moves all of them into `batch`
    /// (which must be empty; its allocation is handed back to the queue).
    /// Cancel-safe: frames stay queued until a call returns them.
    pub(crate) async fn take_all(&self, batch: &mut VecDeque<Queued>) {
        debug_assert!(batch.is_empty(), "the previous batch was written");
        poll_fn(|cx| {
            let mut state = self.lock();
            if state.frames.is_empty() {
                match &mut state.waker {
                    Some(waker) => waker.clone_from(cx.waker()),
                    None => state.waker = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            std::mem::swap(&mut state.frames, batch);
            Poll::Ready(())
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::VecDeque,
        future::Future,
        sync::Arc,
        task::{Context, Poll, Wake},
    };

    use super::Outbox;
    use super::Queued;
    use crate::hub::Frame;

    struct Count(std::sync::atomic::AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn frames_come_out_in_order_up_to_the_bound_and_only_a_waiting_consumer_is_woken() {
        let outbox = Outbox::new(2);
        let wakes = Arc::new(Count(0.into()));
        let waker = wakes.clone().into();
        let mut cx = Context::from_waker(&waker);
        let mut batch = VecDeque::new();
        {
            let mut take = Box::pin(outbox.take_all(&mut batch));
            assert!(take.as_mut().poll(&mut cx).is_pending(), "nothing queued yet");
            outbox.push(&Frame::from("a"), None).unwrap();
            outbox.push(&Frame::from("b"), None).unwrap();
            assert!(outbox.push(&Frame::from("c"), None).is_err(), "the bound holds");
            assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 1, "one wake for two frames");
            assert_eq!(take.as_mut().poll(&mut cx), Poll::Ready(()));
        }
        assert_eq!(batch, [Queued::new("a".into(), None), Queued::new("b".into(), None)]);
        batch.clear();
        outbox.push(&Frame::from("d"), None).unwrap();
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 1, "nobody was waiting");
        assert_eq!(Box::pin(outbox.take_all(&mut batch)).as_mut().poll(&mut cx), Poll::Ready(()));
        assert_eq!(batch, [Queued::new("d".into(), None)]);
    }
}
