//! Two cores on a virtual clock (quinn-proto's `Pair`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::Core;

/// How many turns in a row a core may ask to be woken at or before the time it was just woken
/// at, with nothing moving, before the pair calls it spinning.
const SPIN_LIMIT: usize = 1000;

/// Two cores, `a` and `b`, and what travels between them.
pub struct Pair<A: Core, B: Core> {
    /// One core.
    pub a: A,
    /// The other.
    pub b: B,
    /// The virtual clock.
    pub now: Instant,
    /// How long a transmit takes to arrive.
    pub latency: Duration,
    /// What `a` and `b` reported, in order.
    pub events_a: Vec<A::Event>,
    /// See `events_a`.
    pub events_b: Vec<B::Event>,
    to_b: VecDeque<(Instant, A::Transmit)>,
    to_a: VecDeque<(Instant, B::Transmit)>,
}

impl<A: Core, B: Core> Pair<A, B> {
    /// A pair starting at `now`, each transmit arriving `latency` after it is sent.
    pub fn new(a: A, b: B, now: Instant, latency: Duration) -> Self {
        Pair {
            a,
            b,
            now,
            latency,
            events_a: Vec::new(),
            events_b: Vec::new(),
            to_b: VecDeque::new(),
            to_a: VecDeque::new(),
        }
    }

    /// Runs both cores until `until`: every timer fires at its time, every transmit reaches
    /// the other core `latency` later through `deliver_to_b` or `deliver_to_a`, events are
    /// collected. Panics if a core spins (asks again and again to be woken now while nothing
    /// happens).
    pub fn run_until(
        &mut self,
        until: Instant,
        mut deliver_to_b: impl FnMut(&mut B, Instant, A::Transmit),
        mut deliver_to_a: impl FnMut(&mut A, Instant, B::Transmit),
    ) {
        let mut idle_turns = 0;
        loop {
            let moved = self.drain();
            let next = [
                self.a.poll_timeout(),
                self.b.poll_timeout(),
                self.to_b.front().map(|(at, _)| *at),
                self.to_a.front().map(|(at, _)| *at),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|next| *next <= until) else {
                self.now = self.now.max(until);
                return;
            };
            if next <= self.now && !moved {
                idle_turns += 1;
                assert!(
                    idle_turns < SPIN_LIMIT,
                    "a core spins: it asks to be woken at {next:?}, not after {:?}, and does nothing",
                    self.now
                );
            } else {
                idle_turns = 0;
            }
            self.now = self.now.max(next);
            while let Some((at, _)) = self.to_b.front()
                && *at <= self.now
            {
                if let Some((_, transmit)) = self.to_b.pop_front() {
                    deliver_to_b(&mut self.b, self.now, transmit);
                }
            }
            while let Some((at, _)) = self.to_a.front()
                && *at <= self.now
            {
                if let Some((_, transmit)) = self.to_a.pop_front() {
                    deliver_to_a(&mut self.a, self.now, transmit);
                }
            }
            self.a.handle_timeout(self.now);
            self.b.handle_timeout(self.now);
        }
    }

    /// Takes what both cores have to send and say now; whether there was anything.
    fn drain(&mut self) -> bool {
        let mut moved = false;
        let arrives = self.now + self.latency;
        while let Some(transmit) = self.a.poll_transmit(self.now) {
            self.to_b.push_back((arrives, transmit));
            moved = true;
        }
        while let Some(transmit) = self.b.poll_transmit(self.now) {
            self.to_a.push_back((arrives, transmit));
            moved = true;
        }
        while let Some(event) = self.a.poll_event() {
            self.events_a.push(event);
            moved = true;
        }
        while let Some(event) = self.b.poll_event() {
            self.events_b.push(event);
            moved = true;
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asks to be woken at a fixed time and never moves on from it: a spinning core.
    struct Stuck(Instant);

    impl Core for Stuck {
        type Transmit = ();
        type Event = ();
        fn handle_timeout(&mut self, _now: Instant) {}
        fn poll_transmit(&mut self, _now: Instant) -> Option<()> {
            None
        }
        fn poll_event(&mut self) -> Option<()> {
            None
        }
        fn poll_timeout(&self) -> Option<Instant> {
            Some(self.0)
        }
    }

    #[test]
    #[should_panic(expected = "a core spins")]
    fn a_core_that_spins_is_caught() {
        let now = Instant::now();
        let mut pair = Pair::new(
            Stuck(now),
            Stuck(now + Duration::from_secs(9)),
            now,
            Duration::ZERO,
        );
        pair.run_until(now + Duration::from_secs(1), |_, _, ()| {}, |_, _, ()| {});
    }

    #[test]
    fn idle_cores_let_the_clock_run_to_the_end() {
        let now = Instant::now();
        let later = now + Duration::from_secs(3600);
        let mut pair = Pair::new(Stuck(later), Stuck(later), now, Duration::ZERO);
        pair.run_until(now + Duration::from_secs(60), |_, _, ()| {}, |_, _, ()| {});
        assert_eq!(pair.now, now + Duration::from_secs(60));
    }
}
