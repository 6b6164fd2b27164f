//! Progress on stderr for long commands: drawn when stderr is a terminal, or on
//! request (`--progress`), where a non-terminal gets plain lines at most twice a
//! second. Otherwise nothing is written, so piped and tested output stays clean.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

static FORCED: AtomicBool = AtomicBool::new(false);

/// Show progress even when stderr is not a terminal (`--progress`).
pub(crate) fn force(on: bool) {
    FORCED.store(on, Ordering::Relaxed);
}

/// Where bars draw: the terminal, plain lines when forced, or nowhere.
fn target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else if FORCED.load(Ordering::Relaxed) {
        ProgressDrawTarget::term_like_with_hz(Box::new(Lines), 2)
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A bar over `len` units of work (`unit`: "rows", "runs", ...).
pub(crate) fn bar(len: u64, what: &str, unit: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(&format!(
        "{{msg}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} (eta {{eta}})"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    let pb = ProgressBar::with_draw_target(Some(len), target())
        .with_style(style)
        .with_message(what.to_string());
    pb.tick();
    pb
}

/// End `pb`: on a terminal the bar is cleared; as plain lines (`--progress` on a
/// non-terminal) the final count is always written, however fast the work was.
pub(crate) fn done(pb: &ProgressBar) {
    if !std::io::stderr().is_terminal() && FORCED.load(Ordering::Relaxed) {
        pb.finish();
    } else {
        pb.finish_and_clear();
    }
}

/// A spinner for work of unknown length.
pub(crate) fn spinner(what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, target())
        .with_style(ProgressStyle::default_spinner())
        .with_message(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// Plain lines on stderr for logs that are not a terminal: each redraw is a line.
#[derive(Debug)]
struct Lines;

impl TermLike for Lines {
    fn width(&self) -> u16 {
        100
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        if s.trim().is_empty() {
            return Ok(());
        }
        writeln!(std::io::stderr().lock(), "{s}")
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.write_line(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
