//! API Gateway's stage throttle, as the local API applies it: a token bucket that refills at
//! `ApiThrottleRate` tokens a second up to `ApiThrottleBurst`; a request that finds it empty
//! is answered 429 before the webhook runs.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::emulator::EmulatorError;
use super::resources::Template;

/// A token bucket, full when made.
#[derive(Debug)]
pub struct TokenBucket {
    /// Tokens added per second.
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// The stage throttle of `template.yaml`'s parameter defaults, with time running
    /// `speedup` times as fast (the storm simulation compresses NXCLOUD's minutes).
    pub fn from_template(template: &Template, speedup: f64) -> Result<Self, EmulatorError> {
        let rate = template.parameter_default("ApiThrottleRate")?;
        let burst = template.parameter_default("ApiThrottleBurst")?;
        Ok(Self::new(rate * speedup, burst))
    }

    /// Takes a token if there is one.
    pub fn try_take(&self) -> bool {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock().expect("not poisoned");
        let (tokens, last) = &mut *state;
        let elapsed = now.saturating_duration_since(*last);
        *tokens = (*tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Requests per second it passes in the long run.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// How long a drained bucket takes to refill a token.
    pub fn refill(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let bucket = TokenBucket::new(10.0, 3.0);
        let start = Instant::now();
        let passed = (0..10).filter(|_| bucket.try_take_at(start)).count();
        assert_eq!(passed, 3, "the burst");
        assert!(!bucket.try_take_at(start + Duration::from_millis(50)));
        assert!(bucket.try_take_at(start + Duration::from_millis(110)));
        // A second later the bucket is full again, never fuller.
        let later = start + Duration::from_secs(5);
        assert_eq!((0..10).filter(|_| bucket.try_take_at(later)).count(), 3);
    }

    #[test]
    fn the_templates_defaults() {
        let bucket = TokenBucket::from_template(&Template::repo().unwrap(), 1.0).unwrap();
        assert_eq!(bucket.rate(), 50.0);
        assert_eq!(bucket.burst, 100.0);
    }
}
