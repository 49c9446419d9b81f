//! Bounded patience at start-up, when PostgreSQL or RabbitMQ may still be
//! starting.

use std::future::Future;
use std::time::Duration;

/// Pause between attempts.
const PAUSE: Duration = Duration::from_millis(500);

/// Runs `attempt` until it succeeds, every 500 ms for up to `patience`,
/// logging each failure with `what`.
pub async fn retry<T, E, F, Fut>(what: &str, patience: Duration, mut attempt: F) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "{what} failed; retrying");
                tokio::time::sleep(PAUSE).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_its_patience_and_not_before() {
        let mut tries = 0;
        let out: Result<(), String> = retry("x", Duration::from_secs(2), || {
            tries += 1;
            async { Err("down".to_string()) }
        })
        .await;
        assert_eq!(out, Err("down".into()));
        // At 0, 0.5, 1.0, 1.5 and 2.0 s.
        assert_eq!(tries, 5);
        let mut tries = 0;
        let ok: Result<u8, String> = retry("x", Duration::from_secs(10), || {
            tries += 1;
            let n = tries;
            async move {
                if n < 3 {
                    Err("down".to_string())
                } else {
                    Ok(7)
                }
            }
        })
        .await;
        assert_eq!((ok, tries), (Ok(7), 3));
    }
}
