//! Exponential backoff with full jitter.
//!
//! Used wherever Kafkube waits for something outside itself to come back (a broker, a database):
//! the wait grows so an outage is not hammered, and the jitter keeps replicas from retrying in step.

use std::time::Duration;

/// A retry schedule: `initial`, doubling up to `max`, each wait drawn uniformly from
/// `[delay/2, delay]`.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    attempts: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            current: initial,
            attempts: 0,
        }
    }

    /// The schedule for infrastructure outages: 100 ms doubling up to 10 s.
    pub fn outage() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(10))
    }

    /// The next wait; advances the schedule.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current;
        self.current = (self.current * 2).min(self.max);
        self.attempts = self.attempts.saturating_add(1);
        let half = delay / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// How many delays have been handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Back to the first delay, after a success.
    pub fn reset(&mut self) {
        self.current = self.initial;
        self.attempts = 0;
    }

    /// Sleeps for the next delay, or returns early (false) when `shutdown` trips.
    pub async fn wait(&mut self, shutdown: &crate::Shutdown) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = shutdown.cancelled() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let waits: Vec<_> = (0..5).map(|_| b.next_delay()).collect();
        assert!(waits[0] >= Duration::from_millis(50) && waits[0] <= Duration::from_millis(100));
        assert!(waits[1] >= Duration::from_millis(100) && waits[1] <= Duration::from_millis(200));
        for w in &waits[2..] {
            assert!(*w >= Duration::from_millis(200) && *w <= Duration::from_millis(400));
        }
        assert_eq!(b.attempts(), 5);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
