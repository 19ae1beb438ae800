//! The import's progress on stderr.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Progress on stderr: a bar redrawn in place on a terminal, a plain line
/// every ten seconds otherwise.
pub(super) struct Progress {
    total: u64,
    done: u64,
    started: Instant,
    last: Instant,
    terminal: bool,
    /// Reading stdin: no total, no ETA.
    unbounded: bool,
}

impl Progress {
    pub(super) fn new(total: u64, unbounded: bool) -> Progress {
        let now = Instant::now();
        Progress {
            total,
            done: 0,
            started: now,
            last: now,
            terminal: std::io::stderr().is_terminal(),
            unbounded,
        }
    }

    pub(super) fn update(&mut self, consumed: u64, readings: u64) {
        self.done += consumed;
        let every = if self.terminal {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(10)
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = readings as f64 / secs;
        let line = if self.unbounded || self.total == 0 {
            format!("{readings} readings, {rate:.0}/s")
        } else {
            let part = (self.done as f64 / self.total as f64).min(1.0);
            let eta = if part > 0.0 { secs / part - secs } else { 0.0 };
            let bar: String = (0..30)
                .map(|i| if (i as f64) < part * 30.0 { '#' } else { '.' })
                .collect();
            format!(
                "[{bar}] {:>3.0}% {readings} readings, {rate:.0}/s, ETA {}:{:02}",
                part * 100.0,
                eta as u64 / 60,
                eta as u64 % 60
            )
        };
        if self.terminal {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
    }

    pub(super) fn finish(&self, accepted: u64, rejected: u64) {
        if self.terminal {
            eprintln!();
        }
        let secs = self.started.elapsed().as_secs_f64();
        println!(
            "imported {accepted} readings in {secs:.1} s ({:.0}/s), {rejected} lines rejected",
            accepted as f64 / secs.max(1e-3)
        );
    }
}
