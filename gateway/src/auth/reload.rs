//! Keeps the key set fresh: reads the key files again on SIGHUP and every
//! `auth.keys_reload_secs`, so that an identity provider's new key (or a
//! rotation's) is accepted, and a removed one refused, without a restart.

use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::{KeyError, Reloaded, Verifier};

/// What asked for a reload; a timed one that changed nothing logs at
/// debug, so the log is not an info line every five minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Hangup,
    Timer,
}

/// Listens for SIGHUP, from now on: SIGHUP no longer ends the process (its
/// default), for as long as the process lives. `None`, after an error
/// line, if it cannot be listened for.
pub fn hangups() -> Option<Signal> {
    match signal(SignalKind::hangup()) {
        Ok(hangups) => Some(hangups),
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; keys reload only on the timer");
            None
        }
    }
}

/// Reloads `verifier`'s keys on each of `hangups` and every `period` (when
/// set and some key comes from a file) until `shutdown`. Each reload logs
/// one line: info with the key ids, or a warning naming the file and the
/// error (the previous keys stay in use).
pub async fn keep_fresh(
    verifier: Verifier,
    mut hangups: Option<Signal>,
    period: Option<Duration>,
    shutdown: CancellationToken,
) {
    let mut timer = period.filter(|_| verifier.has_key_files()).map(|period| {
        let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    });
    loop {
        let trigger = tokio::select! {
            () = shutdown.cancelled() => return,
            received = hangup(&mut hangups) => {
                if received.is_none() {
                    hangups = None;
                    continue;
                }
                Trigger::Hangup
            }
            _ = tick(&mut timer) => Trigger::Timer,
        };
        let reloading = verifier.clone();
        match tokio::task::spawn_blocking(move || reloading.reload()).await {
            Ok(outcome) => log(trigger, &outcome),
            Err(e) => tracing::warn!(error = %e, "reloading the verification keys failed"),
        }
    }
}

async fn hangup(hangups: &mut Option<Signal>) -> Option<()> {
    match hangups {
        Some(hangups) => hangups.recv().await,
        None => std::future::pending().await,
    }
}

async fn tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// One line per reload.
fn log(trigger: Trigger, outcome: &Result<Reloaded, KeyError>) {
    match outcome {
        Ok(reloaded) if reloaded.changed || trigger == Trigger::Hangup => tracing::info!(
            kids = ?reloaded.kids,
            skipped = ?reloaded.skipped,
            changed = reloaded.changed,
            ?trigger,
            "verification keys reloaded"
        ),
        Ok(reloaded) => tracing::debug!(
            kids = ?reloaded.kids,
            "verification keys reloaded, unchanged"
        ),
        Err(e) => tracing::warn!(
            setting = e.setting(),
            file = %e.file().map(|f| f.display().to_string()).unwrap_or_default(),
            error = %e,
            "verification keys not reloaded; the previous ones stay in use"
        ),
    }
}
