//! The lease an attempt holds on its job while it executes: a session-level
//! PostgreSQL advisory lock on the job, taken by the claim and held by the
//! same connection that runs the handler's transaction.
//!
//! Because the lock and the work share one database session, an attempt
//! that lost its lease lost its session, and with it its open transaction:
//! it can never commit an outcome or a handler effect. A second delivery of
//! a job whose lease is held (a broker redelivery after a lost connection,
//! an ack that failed, a consumer timeout) finds the lock taken and runs
//! nothing. When the holder's process dies, PostgreSQL ends its session and
//! frees the lock at once, so the next delivery runs the job again.
//!
//! Advisory locks live in the whole database, beside the application's own.
//! Sluice uses the two-key form with its own first key, [`LEASE_CLASS`], so
//! it can only meet an application lock taken with the same key pair.

use deadpool_postgres::Object;
use tokio_postgres::types::Type;
use uuid::Uuid;

/// The first key of every lease: "SLJB" in ASCII.
pub const LEASE_CLASS: i32 = 0x534C_4A42;

/// The second key of `job_id`'s lease: its 128 bits folded into 32. Two
/// jobs in flight at once that share a key only wait for each other (the
/// later one is deferred), so a collision delays and never breaks.
pub fn lease_key(job_id: Uuid) -> i32 {
    let bits = job_id.as_u128();
    let folded =
        (bits as u32) ^ ((bits >> 32) as u32) ^ ((bits >> 64) as u32) ^ ((bits >> 96) as u32);
    folded as i32
}

/// A pooled connection that may hold `job_id`'s lease. Release it with
/// [`Leased::release`]; if it is dropped while it may still hold the lease
/// (a panic, a cancelled future, an error before the lease was settled),
/// the connection is closed instead of going back to the pool, and
/// PostgreSQL frees the lock when the session ends.
pub struct Leased {
    client: Option<Object>,
    job_id: Uuid,
    held: bool,
}

impl Leased {
    /// Wraps `client`, about to claim `job_id`. Until [`Leased::not_held`]
    /// or a release, the lease counts as possibly held.
    pub fn new(client: Object, job_id: Uuid) -> Self {
        Self {
            client: Some(client),
            job_id,
            held: true,
        }
    }

    /// The claim did not take the lease (another attempt holds it, or the
    /// job had nothing left to run): releasing needs no round trip.
    pub fn not_held(&mut self) {
        self.held = false;
    }

    /// Gives the lease up and returns the connection to the pool. If the
    /// unlock fails the connection is closed, which frees the lock too.
    pub async fn release(mut self) {
        if !self.held {
            return;
        }
        let Some(client) = self.client.as_ref() else {
            return;
        };
        let unlocked = client
            .query_typed_one(
                "SELECT pg_advisory_unlock($1, $2)",
                &[
                    (&LEASE_CLASS, Type::INT4),
                    (&lease_key(self.job_id), Type::INT4),
                ],
            )
            .await
            .map(|row| row.get::<_, bool>(0));
        match unlocked {
            Ok(true) => self.held = false,
            Ok(false) => {
                // Not held by this session after all; nothing to free.
                tracing::warn!(job_id = %self.job_id, "released a lease this connection did not hold");
                self.held = false;
            }
            Err(e) => {
                tracing::warn!(job_id = %self.job_id, error = %e,
                    "could not release a job's lease; closing its connection instead");
            }
        }
    }
}

impl std::ops::Deref for Leased {
    type Target = Object;
    fn deref(&self) -> &Object {
        // Present until drop: only `drop` takes it.
        self.client
            .as_ref()
            .expect("a leased connection is present until dropped")
    }
}

impl std::ops::DerefMut for Leased {
    fn deref_mut(&mut self) -> &mut Object {
        self.client
            .as_mut()
            .expect("a leased connection is present until dropped")
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && self.held
        {
            // Out of the pool and closed: the session ends and its lock with it.
            drop(Object::take(client));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bit_of_the_id_reaches_the_key() {
        let base = Uuid::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        for bit in 0..128 {
            let flipped = Uuid::from_u128(base.as_u128() ^ (1u128 << bit));
            assert_ne!(lease_key(base), lease_key(flipped), "bit {bit}");
        }
    }
}
