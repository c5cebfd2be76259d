//! Bounds the memory of long answers. A ticket's whole history of
//! thousands of entries is read, copied into the request's loader, turned
//! into GraphQL values and then JSON, and all of it is held until the
//! response is written; sixteen clients reading an 8,300-entry history at
//! once took the process past 200 MiB. So a history too long to come with
//! its ticket's row is read only once a budget shared by all requests
//! admits its length, and the request gives that back when its response has
//! been written.
//!
//! A request waits for the budget only while it holds none of it: one that
//! already holds some takes more only if it is free at once and otherwise
//! goes on without, so no request ever waits on itself.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// History entries the server answers at once, across all requests: two
/// 8,000-entry histories, one a core.
pub const BUDGET: u32 = 20_000;

/// The shared budget; one per server.
#[derive(Debug, Clone)]
pub struct Budget(Arc<Semaphore>);

impl Default for Budget {
    fn default() -> Self {
        Self(Arc::new(Semaphore::new(BUDGET as usize)))
    }
}

/// What one request holds of the budget; given back when the last clone
/// is dropped (the HTTP handler keeps one until the response is written).
#[derive(Debug, Default)]
pub struct Held(Mutex<Vec<OwnedSemaphorePermit>>);

impl Budget {
    /// Takes `entries` (at most the whole budget) for the request that
    /// holds `held`, waiting if it holds nothing yet.
    pub async fn admit(&self, held: &Held, entries: usize) {
        let wanted = u32::try_from(entries).unwrap_or(BUDGET).min(BUDGET);
        let holding = held.0.lock().is_ok_and(|permits| !permits.is_empty());
        let permit = if holding {
            self.0.clone().try_acquire_many_owned(wanted).ok()
        } else {
            // The semaphore is never closed, so this cannot fail.
            self.0.clone().acquire_many_owned(wanted).await.ok()
        };
        if let (Some(permit), Ok(mut permits)) = (permit, held.0.lock()) {
            permits.push(permit);
        }
    }

    /// Entries free now.
    pub fn available(&self) -> usize {
        self.0.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const LONG: usize = 15_000;
    const FULL: usize = BUDGET as usize;

    #[tokio::test]
    async fn long_answers_wait_for_each_other_until_written() {
        let budget = Budget::default();
        let first = Held::default();
        budget.admit(&first, LONG).await;
        assert_eq!(budget.available(), FULL - LONG);

        let second = Held::default();
        {
            let waiting = budget.admit(&second, LONG);
            tokio::pin!(waiting);
            let early = tokio::time::timeout(Duration::from_millis(50), &mut waiting).await;
            assert!(early.is_err(), "over budget: waits");
            drop(first);
            tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("admitted once the first is written");
        }
        assert_eq!(budget.available(), FULL - LONG);
        drop(second);
        assert_eq!(budget.available(), FULL);
    }

    #[tokio::test]
    async fn a_request_never_waits_on_itself() {
        let budget = Budget::default();
        let held = Held::default();
        budget.admit(&held, LONG).await;
        // More than is left: taken only if free, so it goes on without.
        tokio::time::timeout(Duration::from_secs(5), budget.admit(&held, LONG)).await.expect("no self-wait");
        budget.admit(&held, 1_000).await;
        assert_eq!(budget.available(), FULL - LONG - 1_000);
        drop(held);
        // Longer than the whole budget: takes all of it, alone.
        let huge = Held::default();
        budget.admit(&huge, 100_000).await;
        assert_eq!(budget.available(), 0);
    }
}
