//! A progress bar on stderr (`indicatif`) for long `verify` and `uploads` runs, drawn only when
//! stderr is a terminal (so `--json` output, pipes and logs stay clean): one line, redrawn in
//! place, the first and the last state of every phase always shown, cleared before the command
//! prints its result.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sealcommit_engine::progress::Progress;

/// `  1234/5000 objects verified [#######.......]  24%  812/s`
const TEMPLATE: &str = "{pos}/{len} {msg} [{bar:30}] {percent:>3}%  {rate}";

pub struct Bar {
    /// `None`: nothing is drawn. The bar itself is made at the first phase.
    on: Option<Mutex<Option<ProgressBar>>>,
}

impl Bar {
    /// A bar on stderr if it is a terminal and `wanted`; otherwise one that draws nothing.
    pub fn stderr(wanted: bool) -> Self {
        let on = wanted && std::io::stderr().is_terminal();
        Bar {
            on: on.then(|| Mutex::new(None)),
        }
    }

    /// Removes the bar, leaving the line clean for what the command prints next.
    pub fn clear(&self) {
        if let Some(Ok(bar)) = self.on.as_ref().map(Mutex::lock) {
            if let Some(b) = bar.as_ref() {
                b.finish_and_clear();
            }
        }
    }
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template(TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("#.")
        .with_key(
            "rate",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", s.per_sec());
            },
        )
}

impl Progress for Bar {
    fn phase(&self, what: &str, total: u64) {
        let Some(Ok(mut bar)) = self.on.as_ref().map(Mutex::lock) else {
            return;
        };
        let b = bar.get_or_insert_with(|| {
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                .with_style(style())
        });
        b.set_message(what.to_string());
        b.set_length(total);
        b.reset();
        b.force_draw();
    }

    fn advance(&self, n: u64) {
        let Some(Ok(bar)) = self.on.as_ref().map(Mutex::lock) else {
            return;
        };
        if let Some(b) = bar.as_ref() {
            b.inc(n);
            if b.length().is_some_and(|len| b.position() >= len) {
                b.force_draw();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line a bar at `pos` of `len` draws, rendered in memory.
    fn rendered(pos: u64, len: u64) -> String {
        let target = indicatif::InMemoryTerm::new(2, 100);
        let b = ProgressBar::with_draw_target(
            Some(len),
            ProgressDrawTarget::term_like(Box::new(target.clone())),
        )
        .with_style(style())
        .with_message("objects verified");
        b.set_position(pos);
        b.force_draw();
        target.contents()
    }

    #[test]
    fn the_line_shows_count_share_and_unit() {
        let l = rendered(2, 8);
        assert!(l.starts_with("2/8 objects verified ["), "{l}");
        assert!(
            l.contains(&format!("{}{}]", "#".repeat(7), ".".repeat(23))),
            "{l}"
        );
        assert!(l.contains(" 25%"), "{l}");
        let l = rendered(8, 8);
        assert!(
            l.starts_with("8/8 objects verified [") && l.contains("100%"),
            "{l}"
        );
    }

    #[test]
    fn no_terminal_no_bar() {
        // Under `cargo test` stderr is captured or piped, never the bar's business: a bar that
        // is off takes every call and draws nothing.
        let b = Bar { on: None };
        b.phase("objects verified", 3);
        b.advance(3);
        b.clear();
    }
}
