//! A progress bar on stderr for long `verify` and `uploads` runs, drawn only when stderr is a
//! terminal (so `--json` output and logs stay clean) and at most ten times a second.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sealcommit_engine::progress::Progress;

const WIDTH: usize = 30;
const EVERY: Duration = Duration::from_millis(100);

struct State {
    what: String,
    total: u64,
    done: u64,
    started: Instant,
    drawn: Option<Instant>,
}

pub struct Bar {
    state: Option<Mutex<State>>,
}

impl Bar {
    /// A bar on stderr if it is a terminal and `wanted`; otherwise one that draws nothing.
    pub fn stderr(wanted: bool) -> Self {
        let on = wanted && std::io::stderr().is_terminal();
        Bar {
            state: on.then(|| {
                Mutex::new(State {
                    what: String::new(),
                    total: 0,
                    done: 0,
                    started: Instant::now(),
                    drawn: None,
                })
            }),
        }
    }

    /// Removes the bar, leaving the line clean for what the command prints next.
    pub fn clear(&self) {
        if let Some(s) = &self.state {
            if let Ok(s) = s.lock() {
                if s.drawn.is_some() {
                    eprint!("\r\x1b[2K");
                    let _ = std::io::stderr().flush();
                }
            }
        }
    }
}

/// One line: `  1234/5000 objects verified [#######.......]  24%  812/s`.
fn line(s: &State) -> String {
    let frac = if s.total == 0 {
        1.0
    } else {
        s.done as f64 / s.total as f64
    };
    let filled = ((frac * WIDTH as f64) as usize).min(WIDTH);
    let secs = s.started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        s.done as f64 / secs
    } else {
        0.0
    };
    format!(
        "{}/{} {} [{}{}] {:3.0}%  {:.0}/s",
        s.done,
        s.total,
        s.what,
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
        frac * 100.0,
        rate
    )
}

fn draw(s: &mut State, force: bool) {
    let now = Instant::now();
    if !force && s.drawn.is_some_and(|t| now.duration_since(t) < EVERY) {
        return;
    }
    s.drawn = Some(now);
    eprint!("\r\x1b[2K{}", line(s));
    let _ = std::io::stderr().flush();
}

impl Progress for Bar {
    fn phase(&self, what: &str, total: u64) {
        if let Some(Ok(mut s)) = self.state.as_ref().map(Mutex::lock) {
            s.what = what.to_string();
            s.total = total;
            s.done = 0;
            s.started = Instant::now();
            draw(&mut s, true);
        }
    }

    fn advance(&self, n: u64) {
        if let Some(Ok(mut s)) = self.state.as_ref().map(Mutex::lock) {
            s.done += n;
            let last = s.done >= s.total;
            draw(&mut s, last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_count_share_and_unit() {
        let s = State {
            what: "objects verified".into(),
            total: 8,
            done: 2,
            started: Instant::now(),
            drawn: None,
        };
        let l = line(&s);
        assert!(l.starts_with("2/8 objects verified ["), "{l}");
        assert!(
            l.contains(&format!("{}{}]", "#".repeat(7), ".".repeat(23))),
            "{l}"
        );
        assert!(l.contains(" 25%"), "{l}");
    }
}
