//! Time as ACE reads it: Unix time read once, then advanced by `tokio::time`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::UnixTime;

/// Maps `tokio::time` to Unix time: the only way ACE's IO reads the time.
///
/// The Unix time at start comes from outside (a binary reads the OS clock once, a simulation
/// derives it from its seed); after that, time advances with `tokio::time::Instant`, which a
/// simulation controls.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    unix_millis_at_start: u64,
    start: tokio::time::Instant,
}

impl Clock {
    /// A clock that reads `unix_millis_at_start` now.
    pub fn new(unix_millis_at_start: u64) -> Self {
        Clock {
            unix_millis_at_start,
            start: tokio::time::Instant::now(),
        }
    }

    /// A clock that reads the operating system's time now: for binaries, once at start.
    pub fn from_system_time() -> Self {
        let unix_millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Clock::new(unix_millis)
    }

    /// Milliseconds since the Unix epoch, now.
    pub fn unix_millis(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.unix_millis_at_start.saturating_add(elapsed)
    }
}

/// The clock as rustls reads the time, to check certificates' validity.
#[derive(Debug)]
pub(crate) struct ClockTime(pub(crate) Clock);

impl rustls::time_provider::TimeProvider for ClockTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(Duration::from_millis(
            self.0.unix_millis(),
        )))
    }
}

/// The time provider for rustls configurations (servers too) built on `clock`.
pub fn time_provider(clock: Clock) -> std::sync::Arc<dyn rustls::time_provider::TimeProvider> {
    std::sync::Arc::new(ClockTime(clock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_clock_advances_with_tokio_time_only() {
        let clock = Clock::new(1_000);
        assert_eq!(clock.unix_millis(), 1_000);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(clock.unix_millis(), 1_250);
    }
}
