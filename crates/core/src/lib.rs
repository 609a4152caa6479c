#![doc = include_str!("../README.md")]

mod pair;
mod timers;

use std::time::Instant;

pub use pair::Pair;
pub use timers::TimerQueue;

/// What every core offers its driver (see the crate documentation).
pub trait Core {
    /// What the core wants sent.
    type Transmit;
    /// What the core wants its shell or application to know or do.
    type Event;

    /// Fires every timer due by `now`, whatever else is going on.
    fn handle_timeout(&mut self, now: Instant);

    /// The next thing to send at `now`, if any.
    fn poll_transmit(&mut self, now: Instant) -> Option<Self::Transmit>;

    /// The next event, if any.
    fn poll_event(&mut self) -> Option<Self::Event>;

    /// When the core next has something to do on its own: its earliest deadline, whatever
    /// kind. A deadline at or before the `now` of the last `handle_timeout` must not be
    /// reported again once that call has run (that is a driver spinning).
    fn poll_timeout(&self) -> Option<Instant>;
}
