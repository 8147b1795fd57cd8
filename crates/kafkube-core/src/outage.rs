//! An outage of something a service depends on (Kafka, a database), said to the user as a
//! person would say it rather than once per retry: when it starts, with its cause; again when the
//! cause changes, and every 30 seconds while it lasts; and when it ends.
//!
//! Clients retry every few hundred milliseconds; logging each failure buries the one line that
//! matters under hundreds of copies of it.

use std::time::{Duration, Instant};

/// How often a lasting outage is recalled.
pub const REMIND_EVERY: Duration = Duration::from_secs(30);

/// The state of one dependency's outage. `const`-constructible, for a process-wide `static`.
#[derive(Debug)]
pub struct Outage {
    /// What the service does meanwhile, said with the first notice ("retrying").
    meanwhile: &'static str,
    down: Option<Down>,
}

#[derive(Debug)]
struct Down {
    since: Instant,
    said_at: Instant,
    cause: String,
}

/// What [`Outage::failed`] decided to say, if anything.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice {
    /// The outage began.
    Began,
    /// The outage goes on, with another cause or for [`REMIND_EVERY`] since it was last said.
    Lasts(Duration),
}

impl Outage {
    /// `meanwhile`: what the service does while it lasts, e.g. `"retrying"`.
    pub const fn new(meanwhile: &'static str) -> Self {
        Self { meanwhile, down: None }
    }

    pub fn is_down(&self) -> bool {
        self.down.is_some()
    }

    /// A failure to reach `what` (e.g. `Kafka at 127.0.0.1:9092`) because of `cause`: logged at
    /// WARN when it begins an outage, has another cause than the one last said, or the outage was
    /// last said [`REMIND_EVERY`] ago. Returns what was said.
    pub fn failed(&mut self, what: &str, cause: &str) -> Option<Notice> {
        let now = Instant::now();
        let notice = match &mut self.down {
            None => {
                self.down = Some(Down {
                    since: now,
                    said_at: now,
                    cause: cause.to_owned(),
                });
                Notice::Began
            }
            Some(down) => {
                if down.cause == cause && now.duration_since(down.said_at) < REMIND_EVERY {
                    return None;
                }
                down.said_at = now;
                cause.clone_into(&mut down.cause);
                Notice::Lasts(now.duration_since(down.since))
            }
        };
        match notice {
            Notice::Began => tracing::warn!("cannot reach {what}: {cause}; {}", self.meanwhile),
            Notice::Lasts(since) => tracing::warn!("still cannot reach {what} (for {since:.0?}): {cause}"),
        }
        Some(notice)
    }

    /// `what` answers again: logged at INFO when it ends an outage. Returns how long it lasted.
    pub fn recovered(&mut self, what: &str) -> Option<Duration> {
        let lasted = self.down.take()?.since.elapsed();
        tracing::info!("{what} is reachable again (after {lasted:.0?})");
        Some(lasted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn said_when_it_begins_when_its_cause_changes_and_when_it_ends() {
        let mut o = Outage::new("retrying");
        assert!(!o.is_down());
        assert_eq!(o.recovered("x"), None, "nothing to end");
        assert_eq!(o.failed("x", "Connection refused"), Some(Notice::Began));
        assert!(o.is_down());
        for _ in 0..100 {
            assert_eq!(o.failed("x", "Connection refused"), None, "not said per retry");
        }
        assert!(matches!(o.failed("x", "no route to host"), Some(Notice::Lasts(_))));
        assert_eq!(o.failed("x", "no route to host"), None);
        assert!(o.recovered("x").is_some());
        assert!(!o.is_down());
        assert_eq!(o.failed("x", "no route to host"), Some(Notice::Began), "a new outage");
    }

    #[test]
    fn a_lasting_outage_is_recalled_every_thirty_seconds() {
        let mut o = Outage::new("retrying");
        o.failed("x", "refused");
        let down = o.down.as_mut().unwrap();
        down.said_at -= REMIND_EVERY;
        down.since -= REMIND_EVERY;
        assert!(matches!(o.failed("x", "refused"), Some(Notice::Lasts(d)) if d >= REMIND_EVERY));
        assert_eq!(o.failed("x", "refused"), None);
    }
}
