//! Independent runs on every core: each run is seeded by its own configuration, so the
//! results are the same, in the same order, whatever the number of threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// The threads [`map`] uses by default: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `f` applied to every item on `threads` threads (at least one), the outputs in the items'
/// order; `done` is called on the calling thread with each index as its run finishes.
pub fn map<I, O, F>(items: &[I], threads: usize, f: F, done: &mut dyn FnMut(usize)) -> Vec<O>
where
    I: Sync,
    O: Send,
    F: Fn(&I) -> O + Sync,
{
    let threads = threads.clamp(1, items.len().max(1));
    let next = AtomicUsize::new(0);
    let (sender, receiver) = mpsc::channel::<(usize, O)>();
    let mut outputs: Vec<Option<O>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let sender = sender.clone();
            let (next, f) = (&next, &f);
            scope.spawn(move || {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else {
                        break;
                    };
                    if sender.send((index, f(item))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        for (index, output) in receiver {
            outputs[index] = Some(output);
            done(index);
        }
    });
    // every index below the length was taken by exactly one thread, which sent its output
    // before the channel closed (a thread that panicked has re-raised its panic by now)
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_in_order_whatever_the_threads() {
        let items: Vec<u64> = (0..50).collect();
        let slow_square = |x: &u64| {
            // uneven work, so that runs finish out of order
            std::thread::sleep(std::time::Duration::from_micros((50 - x) * 20));
            x * x
        };
        let want: Vec<u64> = items.iter().map(|x| x * x).collect();
        for threads in [0, 1, 2, 7, 100] {
            let mut finished = Vec::new();
            let got = map(&items, threads, slow_square, &mut |i| finished.push(i));
            assert_eq!(got, want, "{threads} threads");
            finished.sort_unstable();
            assert_eq!(finished, (0..50).collect::<Vec<usize>>());
        }
        assert!(map(&[] as &[u64], 4, slow_square, &mut |_| {}).is_empty());
    }
}
