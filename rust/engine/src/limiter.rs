//! How many requests of one kind (the job commit's Completes, a rollback's aborts) are in flight:
//! an AIMD-style limit that finds the store's rate instead of assuming one.
//!
//! [`Limiter`] is pure logic, fed the time of each completion (since the phase began) and whether
//! the store throttled anything meanwhile; [`run`] drives requests with it. The level starts at
//! [`START`] (or the cap, if lower) and moves in *windows*: a window ends when as many requests
//! have completed as the level allows in flight (one round trip's worth).
//!
//! * **Grow while the rate grows.** At the end of a window its rate (completions per second) is
//!   compared with the best rate of the windows before: the first window always grows (there is
//!   nothing to compare with), any later one only when it beat the best by [`GAIN`]. Growth
//!   doubles the level until the first window that did not gain or the first throttle, then adds
//!   a quarter of it per window. A window that gained too little holds the level.
//! * **Halve on throttling.** A throttled answer (503 SlowDown, 429) halves the level at once
//!   and forgets the best rate: the store's capacity has changed.
//! * **Judge a level by its own requests.** After a change, the requests that were in flight
//!   (sent at the old level) complete before the next window starts; their throttling causes
//!   no second cut, and their answers, which come early, do not inflate the window's rate.
//! * **Never above the cap, never below 1.** A fixed limiter (adaptive off) stays at its cap.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};

/// The level an adaptive limiter starts at (the fixed parallelism of earlier versions).
pub const START: usize = 16;

/// How much a window's rate must beat the best before it to grow the level: 10 %.
pub const GAIN: f64 = 0.10;

/// The in-flight limit of one phase of requests.
#[derive(Debug, Clone)]
pub struct Limiter {
    level: usize,
    cap: usize,
    adaptive: bool,
    /// Doubling until the first window that did not gain or the first throttle.
    doubling: bool,
    /// The best rate (completions per second) of a finished window since the last cut.
    best: Option<f64>,
    window_start: Duration,
    window_done: usize,
    /// Completions still to come of requests sent before the level last changed: they say
    /// nothing about the level now (neither their rate nor their throttling).
    settling: usize,
    peak: usize,
    cuts: usize,
}

impl Limiter {
    /// Starts at [`START`] (at most `cap`) and adapts between 1 and `cap`; with `adaptive`
    /// false, stays at `cap`.
    pub fn new(cap: usize, adaptive: bool) -> Limiter {
        let cap = cap.max(1);
        let level = if adaptive { START.min(cap) } else { cap };
        Limiter {
            level,
            cap,
            adaptive,
            doubling: true,
            best: None,
            window_start: Duration::ZERO,
            window_done: 0,
            settling: 0,
            peak: level,
            cuts: 0,
        }
    }

    /// Requests allowed in flight now.
    pub fn level(&self) -> usize {
        self.level
    }

    /// The highest level so far.
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// How many times the level was halved (at 1 a throttle changes nothing and is not counted).
    pub fn cuts(&self) -> usize {
        self.cuts
    }

    /// A request completed at `at` (time since the phase began); `throttled` says whether the
    /// store throttled any attempt since the last completion (its retries got through);
    /// `in_flight` is how many other requests are still in flight.
    pub fn completed(&mut self, at: Duration, throttled: bool, in_flight: usize) {
        if !self.adaptive {
            return;
        }
        if self.settling > 0 {
            self.settling -= 1;
            if self.settling == 0 {
                self.new_window(at);
            }
            return;
        }
        if throttled {
            self.cut(at, in_flight);
            return;
        }
        self.window_done += 1;
        if self.window_done < self.level {
            return;
        }
        // The window is over.
        let elapsed = at.saturating_sub(self.window_start).as_secs_f64();
        let rate = self.window_done as f64 / elapsed.max(1e-6);
        let gained = self.best.is_none_or(|best| rate >= best * (1.0 + GAIN));
        self.best = Some(self.best.map_or(rate, |b| b.max(rate)));
        if !gained {
            self.doubling = false;
            self.new_window(at);
            return;
        }
        let before = self.level;
        let next = if self.doubling {
            before * 2
        } else {
            before + (before / 4).max(1)
        };
        self.level = next.min(self.cap);
        self.peak = self.peak.max(self.level);
        if self.level == before {
            self.new_window(at);
        } else {
            self.settle(at, in_flight);
        }
    }

    fn cut(&mut self, at: Duration, in_flight: usize) {
        if self.level > 1 {
            self.level /= 2;
            self.cuts += 1;
        }
        self.doubling = false;
        self.best = None;
        self.settle(at, in_flight);
    }

    /// The level changed: the next window starts once the `in_flight` requests sent before
    /// have completed.
    fn settle(&mut self, at: Duration, in_flight: usize) {
        self.settling = in_flight;
        self.new_window(at);
    }

    fn new_window(&mut self, at: Duration) {
        self.window_start = at;
        self.window_done = 0;
    }
}

/// Runs `start(item)` for every item, as many in flight as `limiter` allows, and returns the
/// results in completion order; the first error stops it (requests still in flight are
/// dropped, as `buffer_unordered` drops them). `throttled` is a running count of throttled
/// attempts, read after each completion: when it has grown, the limiter hears of it.
pub async fn run<I, F, Fut, T, E>(
    limiter: &mut Limiter,
    items: I,
    throttled: impl Fn() -> u64,
    mut start: F,
) -> Result<Vec<T>, E>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let t0 = Instant::now();
    let mut seen = throttled();
    let mut items = items.into_iter();
    let mut running = FuturesUnordered::new();
    // Sized once when the items say how many there are: no doubling of a large result.
    let mut out = Vec::with_capacity(items.size_hint().0);
    loop {
        while running.len() < limiter.level() {
            match items.next() {
                Some(item) => running.push(start(item)),
                None => break,
            }
        }
        match running.next().await {
            None => return Ok(out),
            Some(result) => {
                out.push(result?);
                let now = throttled();
                limiter.completed(t0.elapsed(), now > seen, running.len());
                seen = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds one window of `n` completions spread evenly over `took`, starting at `*t`, with
    /// nothing else in flight.
    fn window(l: &mut Limiter, t: &mut Duration, n: usize, took: Duration) {
        for i in 1..=n {
            l.completed(*t + took * i as u32 / n as u32, false, 0);
        }
        *t += took;
    }

    #[test]
    fn it_starts_modestly_and_never_above_the_cap() {
        assert_eq!(Limiter::new(128, true).level(), 16);
        assert_eq!(Limiter::new(4, true).level(), 4);
        assert_eq!(Limiter::new(0, true).level(), 1);
        assert_eq!(Limiter::new(64, false).level(), 64);
    }

    #[test]
    fn it_doubles_while_the_rate_grows_then_holds_at_the_plateau() {
        let mut l = Limiter::new(128, true);
        let mut t = Duration::ZERO;
        // A store answering every request in 100 ms: the rate grows with the level.
        window(&mut l, &mut t, 16, ms(100)); // 160/s, nothing to compare with: grow
        assert_eq!(l.level(), 32);
        window(&mut l, &mut t, 32, ms(100)); // 320/s
        assert_eq!(l.level(), 64);
        // From here the store is saturated at 400/s: 64 take 160 ms.
        window(&mut l, &mut t, 64, ms(160)); // 400/s, +25 %: grow
        assert_eq!(l.level(), 128);
        window(&mut l, &mut t, 128, ms(320)); // 400/s, no gain: hold
        assert_eq!(l.level(), 128);
        window(&mut l, &mut t, 128, ms(320));
        assert_eq!((l.level(), l.peak(), l.cuts()), (128, 128, 0));
    }

    #[test]
    fn a_window_that_gains_less_than_ten_percent_holds_and_ends_the_doubling() {
        let mut l = Limiter::new(1024, true);
        let mut t = Duration::ZERO;
        window(&mut l, &mut t, 16, ms(100)); // 160/s → 32
        window(&mut l, &mut t, 32, ms(190)); // 168/s: +5 %, hold
        assert_eq!(l.level(), 32);
        window(&mut l, &mut t, 32, ms(100)); // 320/s: grow, but by a quarter now
        assert_eq!(l.level(), 40);
        window(&mut l, &mut t, 40, ms(100)); // 400/s → 50
        assert_eq!(l.level(), 50);
    }

    #[test]
    fn the_answers_of_requests_sent_before_a_change_do_not_count_for_the_new_level() {
        let mut l = Limiter::new(128, true);
        // 16 answers in 100 ms (160/s); at the last, 15 sent since are in flight.
        for i in 1..=16u64 {
            l.completed(ms(100 * i / 16), false, if i == 16 { 15 } else { 16 });
        }
        assert_eq!(l.level(), 32);
        // Those 15 answer within 15 ms: counted, they would make 32 in 115 ms look like 278/s.
        for i in 1..=15 {
            l.completed(ms(100 + i), false, 31);
        }
        // 32 answers of requests sent at 32, in 200 ms: 160/s, no gain: hold.
        for i in 1..=32u64 {
            l.completed(ms(115 + 200 * i / 32), false, 31);
        }
        assert_eq!(l.level(), 32);
    }

    #[test]
    fn a_throttle_halves_and_requests_sent_before_it_cut_no_further() {
        let mut l = Limiter::new(128, true);
        let mut t = Duration::ZERO;
        window(&mut l, &mut t, 16, ms(100));
        window(&mut l, &mut t, 32, ms(100));
        assert_eq!(l.level(), 64);
        // The store throttles from now on: the first throttled answer halves the level; the 63
        // requests in flight then were sent at 64 and their throttled answers change nothing.
        l.completed(t, true, 63);
        assert_eq!((l.level(), l.cuts()), (32, 1));
        for i in 0..63 {
            l.completed(t + ms(1 + i), true, 62 - i as usize);
        }
        assert_eq!((l.level(), l.cuts()), (32, 1));
        // The first throttled answer of a request sent at 32 halves it again.
        l.completed(t + ms(70), true, 31);
        assert_eq!((l.level(), l.cuts()), (16, 2));
        // The storm ends. Once the 31 are answered, a window at 16: the best was forgotten, so
        // it grows, by a quarter (no more doubling after a cut).
        for i in 0..31 {
            l.completed(t + ms(71 + i), false, 30 - i as usize);
        }
        t += ms(102);
        window(&mut l, &mut t, 16, ms(100));
        assert_eq!((l.level(), l.peak()), (20, 64));
    }

    #[test]
    fn a_storm_brings_the_level_down_to_one_and_no_further() {
        let mut l = Limiter::new(32, true);
        // One request at a time: each throttled answer came to a request sent after the cut.
        for i in 0..200 {
            l.completed(ms(i), true, 0);
        }
        // 16 → 8 → 4 → 2 → 1.
        assert_eq!((l.level(), l.cuts()), (1, 4));
    }

    #[test]
    fn a_fixed_limiter_stays_at_its_cap() {
        let mut l = Limiter::new(16, false);
        for i in 0..100 {
            l.completed(ms(i), i % 3 == 0, 15);
        }
        assert_eq!((l.level(), l.peak(), l.cuts()), (16, 16, 0));
    }

    #[test]
    fn run_keeps_at_most_the_level_in_flight_and_stops_at_the_first_error() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let in_flight = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let mut l = Limiter::new(4, false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let out: Result<Vec<u32>, String> = rt.block_on(run(
            &mut l,
            0..20u32,
            || 0,
            |i| {
                let (in_flight, most) = (&in_flight, &most);
                async move {
                    let n = in_flight.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(n, SeqCst);
                    tokio::time::sleep(ms(2)).await;
                    in_flight.fetch_sub(1, SeqCst);
                    Ok(i)
                }
            },
        ));
        let mut out = out.unwrap();
        out.sort();
        assert_eq!(out, (0..20).collect::<Vec<_>>());
        assert_eq!(most.load(SeqCst), 4);
        let err: Result<Vec<u32>, String> = rt.block_on(run(
            &mut l,
            0..20u32,
            || 0,
            |i| async move {
                if i == 5 {
                    Err(format!("request {i} failed"))
                } else {
                    Ok(i)
                }
            },
        ));
        assert_eq!(err.unwrap_err(), "request 5 failed");
    }
}
