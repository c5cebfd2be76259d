//! A keyed rate limiter's state held in a fixed number of keys.
//!
//! governor's own keyed stores keep every key they are asked about, whole,
//! until a clean-up pass: a flood of sign-ins with distinct, long emails
//! grew the server's memory with every request. Here a key is a 64-bit
//! keyed hash of its text (SipHash with a per-process random key, so
//! nobody can aim two texts at one budget) and at most [`MAX_KEYS`] are
//! kept, the least recently used giving way first. Forgetting a key only
//! gives it a fresh budget, which takes far more distinct requests than
//! the per-address limit lets one client send.

use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use governor::clock::DefaultClock;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use lru::LruCache;

/// Keys each limiter holds at most (a few MiB at worst).
pub const MAX_KEYS: usize = 65_536;

/// governor's state per hashed key, bounded by an LRU.
#[derive(Debug)]
pub struct BoundedKeys {
    states: Mutex<LruCache<u64, Nanos>>,
}

impl BoundedKeys {
    fn with_capacity(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self { states: Mutex::new(LruCache::new(capacity)) }
    }

    fn states(&self) -> std::sync::MutexGuard<'_, LruCache<u64, Nanos>> {
        self.states.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl StateStore for BoundedKeys {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut states = self.states();
        let (outcome, state) = f(states.get(key).copied())?;
        states.put(*key, state);
        Ok(outcome)
    }
}

impl ShrinkableKeyedStateStore<u64> for BoundedKeys {
    fn retain_recent(&self, drop_below: Nanos) {
        let mut states = self.states();
        let stale: Vec<u64> = states.iter().filter(|(_, &at)| at < drop_below).map(|(&key, _)| key).collect();
        for key in stale {
            states.pop(&key);
        }
    }

    fn len(&self) -> usize {
        self.states().len()
    }

    fn is_empty(&self) -> bool {
        self.states().is_empty()
    }
}

/// A rate limiter per text key (an email, a client address) whose memory
/// is bounded by [`MAX_KEYS`] whatever the keys.
#[derive(Debug)]
pub struct KeyedLimiter {
    limiter: RateLimiter<u64, BoundedKeys, DefaultClock>,
    hasher: std::collections::hash_map::RandomState,
}

impl KeyedLimiter {
    pub fn new(quota: Quota) -> Self {
        Self::with_capacity(quota, MAX_KEYS)
    }

    fn with_capacity(quota: Quota, capacity: usize) -> Self {
        let limiter = RateLimiter::new(quota, BoundedKeys::with_capacity(capacity), DefaultClock::default());
        Self { limiter, hasher: std::collections::hash_map::RandomState::new() }
    }

    /// Spends one of `key`'s budget; `false` (and nothing spent) when it is empty.
    pub fn check(&self, key: &str) -> bool {
        self.limiter.check_key(&self.hasher.hash_one(key)).is_ok()
    }

    /// Forgets keys whose budget is full again.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
    }

    /// How many keys are held now.
    pub fn keys(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn per_minute(n: u32) -> Quota {
        Quota::per_minute(NonZeroU32::new(n).unwrap())
    }

    #[test]
    fn the_keys_held_stay_bounded() {
        let limiter = KeyedLimiter::with_capacity(per_minute(10), 1_000);
        for i in 0..5_000 {
            assert!(limiter.check(&format!("{}{i}@example.com", "x".repeat(200))));
        }
        assert_eq!(limiter.keys(), 1_000);
        assert!(KeyedLimiter::new(per_minute(10)).keys() == 0 && MAX_KEYS <= 65_536);
    }

    #[test]
    fn a_budget_is_per_key_and_refusals_spend_nothing() {
        let limiter = KeyedLimiter::new(per_minute(3));
        for _ in 0..3 {
            assert!(limiter.check("ada@example.com"));
        }
        assert!(!limiter.check("ada@example.com"));
        assert!(limiter.check("bob@example.com"));
        assert_eq!(limiter.keys(), 2);
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let limiter = KeyedLimiter::new(Quota::per_second(NonZeroU32::new(1000).unwrap()));
        assert!(limiter.check("ada@example.com"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        limiter.forget_idle();
        assert_eq!(limiter.keys(), 0);
    }
}
