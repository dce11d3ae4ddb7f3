//! Engine events as progress bars: one bar per file (bytes, speed, ETA), on stderr, only when
//! stderr is a terminal and the output is not `--json`.

use std::collections::HashMap;
use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;
use valet_engine::Event;

/// The bars of one command.
#[derive(Clone)]
pub struct Bars {
    multi: MultiProgress,
    visible: bool,
}

impl Bars {
    /// Bars drawn on stderr, unless `json` or stderr is not a terminal.
    pub fn new(json: bool) -> Self {
        let visible = !json && std::io::stderr().is_terminal();
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            visible,
        }
    }

    /// Prints a line to stdout without tearing the bars.
    pub fn println(&self, line: &str) {
        if self.visible {
            self.multi.suspend(|| println!("{line}"));
        } else {
            println!("{line}");
        }
    }

    /// Draws events until the engine drops its sender.
    pub async fn follow(self, mut events: UnboundedReceiver<Event>) {
        let mut bars: HashMap<i64, ProgressBar> = HashMap::new();
        let style = ProgressStyle::with_template(
            "{msg:24!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        while let Some(event) = events.recv().await {
            if let Event::PartSizeChanged { path, reason, .. } = &event {
                // Always said (on stderr, so `--json` output stays one object a line): memory
                // in use and what a lost connection re-sends follow the part size.
                let line = format!("valet: {}: {reason}", path.display());
                self.multi.suspend(|| eprintln!("{line}"));
            }
            if !self.visible {
                continue;
            }
            match event {
                Event::Started {
                    upload,
                    path,
                    size,
                    already_stored,
                    ..
                } => {
                    let bar = self
                        .multi
                        .add(ProgressBar::new(size).with_style(style.clone()));
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    bar.set_message(name);
                    bar.set_position(already_stored);
                    bars.insert(upload, bar);
                }
                Event::PartSent { upload, bytes, .. } => {
                    if let Some(bar) = bars.get(&upload) {
                        bar.inc(bytes);
                    }
                }
                Event::PartRetry { upload, resent, .. } => {
                    if let Some(bar) = bars.get(&upload) {
                        bar.set_position(bar.position().saturating_sub(resent));
                    }
                }
                Event::Verifying { upload } => {
                    if let Some(bar) = bars.get(&upload) {
                        bar.set_message("verifying…");
                    }
                }
                Event::Verified { upload, .. } | Event::Failed { upload, .. } => {
                    if let Some(bar) = bars.remove(&upload) {
                        bar.finish_and_clear();
                    }
                }
                _ => {}
            }
        }
        for bar in bars.into_values() {
            bar.finish_and_clear();
        }
    }
}
