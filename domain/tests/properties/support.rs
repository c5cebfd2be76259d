//! Running a command as the write side does, and the checks every
//! aggregate shares.

use std::fmt::Debug;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// `handle` awaits nothing but its sink's lock, which nobody else holds:
/// it is ready at its first poll, so no runtime is needed.
fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the aggregate waited for something"),
    }
}

/// A stream as the store keeps it: its events, and the aggregate decided on.
pub struct Stream<A: Aggregate> {
    pub live: A,
    pub events: Vec<A::Event>,
}

impl<A> Stream<A>
where
    A: Aggregate<Services = ()> + Clone + PartialEq + Debug + Serialize + DeserializeOwned,
    A::Event: PartialEq + Debug,
{
    pub fn new() -> Self {
        Self { live: A::default(), events: Vec::new() }
    }

    /// Handles `command` on a copy, as the write side does, and checks what
    /// holds for every command on every aggregate: a refusal emits nothing
    /// and leaves the state as it was; otherwise the copy is the state the
    /// events lead to, and the state rebuilt from all events so far, and its
    /// snapshot read back, equal it. Returns the new events, or the refusal.
    pub fn handle(&mut self, command: A::Command) -> Result<Vec<A::Event>, A::Error> {
        let mut decided = self.live.clone();
        let sink = EventSink::default();
        let result = ready(decided.handle(command, &(), &sink));
        let emitted = ready(sink.collect());
        if let Err(error) = result {
            assert!(emitted.is_empty(), "refused with {error:?} yet emitted {emitted:?}");
            assert_eq!(decided, self.live, "refused with {error:?} yet changed the state");
            return Err(error);
        }
        self.events.extend(emitted.iter().cloned());
        let mut rebuilt = A::default();
        for event in self.events.iter().cloned() {
            rebuilt.apply(event);
        }
        assert_eq!(rebuilt, decided, "state rebuilt from {:?}", self.events);
        let snapshot: A = serde_json::from_value(serde_json::to_value(&decided).expect("a snapshot encodes"))
            .expect("a snapshot decodes");
        assert_eq!(snapshot, decided, "snapshot read back");
        self.live = decided;
        Ok(emitted)
    }
}

/// Cases per property: enough to reach the rarer paths, few enough that
/// the whole binary runs in about a second.
pub const CASES: u32 = 256;
