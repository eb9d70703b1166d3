//! Progress of a batch run on stderr: a live bar on a terminal, plain
//! periodic lines in CI logs (where a redrawn bar would be noise).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use exec::batch::Progress;

/// Bars appear only for runs lasting over a second.
const SHOW_AFTER: Duration = Duration::from_secs(1);
/// How often plain progress lines are written when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

pub struct ConsoleProgress {
    started: Instant,
    bar: Option<ProgressBar>,
    last_plain: Mutex<Instant>,
    quiet: bool,
    /// The run's name, when several runs report at once.
    label: Option<String>,
    /// Each line's result is printed as it finishes (`run create --stream`).
    stream: bool,
}

impl ConsoleProgress {
    pub fn new(total: usize, quiet: bool) -> ConsoleProgress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::hidden());
            bar.set_style(style("{bar:30} {pos}/{len} lines  {msg}  {per_sec}  eta {eta}"));
            bar
        });
        ConsoleProgress {
            started: Instant::now(),
            bar,
            last_plain: Mutex::new(Instant::now()),
            quiet,
            label: None,
            stream: false,
        }
    }

    /// `run create --stream`: no bar, each line's result as it finishes.
    pub fn streaming(total: usize) -> ConsoleProgress {
        ConsoleProgress { stream: true, ..ConsoleProgress::new(total, true) }
    }

    /// One of several runs going on at once (`check` runs flows
    /// concurrently): a labelled bar in `group`, or labelled plain lines.
    pub fn in_group(group: &MultiProgress, label: &str, total: usize) -> ConsoleProgress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = group.add(ProgressBar::new(total as u64));
            bar.set_style(style("{prefix:30} {bar:24} {pos}/{len} lines  {msg}"));
            bar.set_prefix(label.to_string());
            bar
        });
        ConsoleProgress {
            started: Instant::now(),
            bar,
            last_plain: Mutex::new(Instant::now()),
            quiet: false,
            label: Some(label.to_string()),
            stream: false,
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// One line's result as `run create --stream` prints it: its number, its
/// status and, when it failed, the error.
pub fn line_result_text(line: &exec::line::LineRun) -> String {
    let detail = line.error.as_ref().map_or_else(String::new, |e| format!(": {}", e.message));
    format!("line {}: {:?}{detail}", line.line_number, line.status)
}

impl Progress for ConsoleProgress {
    fn line_result(&self, line: &exec::line::LineRun) {
        if self.stream {
            // Through the guard: inside a CI host an error message (data,
            // node output) must not run logging commands.
            let mut err = crate::ci::guard::Guard::new(std::io::stderr());
            let _ = writeln!(err, "{}", line_result_text(line));
        }
    }

    fn line_done(&self, done: usize, failed: usize, total: usize) {
        if self.quiet {
            return;
        }
        let elapsed = self.started.elapsed();
        match &self.bar {
            Some(bar) => {
                if elapsed > SHOW_AFTER && bar.is_hidden() && self.label.is_none() {
                    bar.set_draw_target(ProgressDrawTarget::stderr());
                }
                bar.set_position(done as u64);
                bar.set_message(format!("{failed} failed"));
            }
            None => {
                let mut last = self.last_plain.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() >= PLAIN_EVERY && done < total {
                    *last = Instant::now();
                    let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
                    #[allow(clippy::print_stderr)] // plain progress for CI logs, not a result
                    {
                        let who = self.label.as_deref().map(|l| format!(" {l}")).unwrap_or_default();
                        eprintln!("progress{who}: {done}/{total} lines, {failed} failed, {rate:.1} lines/s");
                    }
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
