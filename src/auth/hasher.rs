//! Running password hashes on blocking threads, a bounded number at a time.
//!
//! Argon2id costs ~19 MiB and a core for a moment per hash, on purpose. Without a bound,
//! a hundred parallel logins cost 1.8 GB. Callers wait briefly for a place; when none
//! frees up they are told the daemon is busy rather than queued without end.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// How long a hash may wait for a place before the request is refused.
const WAIT: Duration = Duration::from_secs(5);

/// No place to hash right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks are running; retry in a second")]
pub struct HasherBusy;

/// The shared hashing pool. Cheap to clone.
#[derive(Clone)]
pub struct Hasher {
    places: Arc<Semaphore>,
}

impl Hasher {
    /// A pool running at most `concurrency` hashes at once.
    pub fn new(concurrency: usize) -> Hasher {
        Hasher {
            places: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Runs `work` (a hash or a verification) on a blocking thread once a place is free.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HasherBusy> {
        let place = tokio::time::timeout(WAIT, self.places.clone().acquire_owned())
            .await
            .map_err(|_| HasherBusy)?
            .map_err(|_| HasherBusy)?;
        tokio::task::spawn_blocking(move || {
            let _place = place;
            work()
        })
        .await
        .map_err(|_| HasherBusy)
    }
}
