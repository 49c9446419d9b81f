//! `sluice-jobs dead`: list, show, replay and purge dead-lettered jobs.
//!
//! The dead-letter queue holds jobs that used up their attempts (with their
//! attempt count and last error), jobs the broker gave up on (delivery
//! limit), and messages that did not decode (poison). Messages are read
//! with `basic.get` and only acknowledged when replayed or purged; anything
//! else goes back to the queue when the command ends.

use std::time::Duration;

use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use sluice_broker::{self as amqp, ATTEMPTS_HEADER, Durability, LAST_ERROR_HEADER, Topology};
use sluice_store::jobs as lifecycle;

use crate::config::Config;
use sluice_proto::OwnedJobEnvelope;
use uuid::Uuid;

/// What to do with the dead-letter queue.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DeadCommand {
    /// One line per dead-lettered message.
    List,
    /// Everything about one dead-lettered job (args included).
    Show {
        /// The job to show.
        job_id: Uuid,
    },
    /// Run a job again: its record is reset to `queued` and it goes back on
    /// the jobs queue (its user gets new events).
    Replay {
        /// The job to replay.
        job_id: Option<Uuid>,
        /// Replay every dead-lettered job.
        #[arg(long)]
        all: bool,
    },
    /// Drop dead-lettered messages for good.
    Purge {
        /// The job whose message to purge.
        job_id: Option<Uuid>,
        /// Purge everything, poison messages included.
        #[arg(long)]
        all: bool,
    },
}

/// One message of the dead-letter queue, decoded as far as it goes.
struct Dead {
    message: BasicGetMessage,
    job: Option<OwnedJobEnvelope>,
}

impl Dead {
    fn reason(&self) -> String {
        let props = &self.message.delivery.properties;
        if amqp::header_int(props, ATTEMPTS_HEADER).is_some() {
            "exhausted".into()
        } else {
            amqp::header_str(props, "x-first-death-reason").unwrap_or_else(|| "unknown".into())
        }
    }

    fn line(&self) -> String {
        let props = &self.message.delivery.properties;
        let attempts = amqp::header_int(props, ATTEMPTS_HEADER)
            .map_or_else(|| "-".to_owned(), |a| a.to_string());
        let last_error = amqp::header_str(props, LAST_ERROR_HEADER).unwrap_or_else(|| "-".into());
        match &self.job {
            Some(job) => format!(
                "{}\t{}\t{}\treason={}\tattempts={}\tlast_error={}",
                job.job_id,
                job.user,
                job.kind.as_str(),
                self.reason(),
                attempts,
                last_error
            ),
            None => format!(
                "(undecodable, {} bytes)\t-\t-\treason={}",
                self.message.delivery.data.len(),
                self.reason()
            ),
        }
    }

    fn matches(&self, job_id: Option<Uuid>, all: bool) -> bool {
        all || (job_id.is_some() && self.job.as_ref().map(|j| j.job_id) == job_id)
    }
}

/// Runs one `dead` command and prints what it did.
pub async fn run(config: &Config, command: DeadCommand) -> anyhow::Result<()> {
    let topology = Topology::new(&config.amqp.prefix);
    let conn = sluice_process::retry("connecting to the broker", Duration::from_secs(10), || {
        amqp::connect(&config.amqp, "sluice-jobs-dead")
    })
    .await?;
    let channel = conn.create_channel().await?;
    topology.declare_jobs(&channel).await?;
    let mut dead = Vec::new();
    while let Some(message) = channel
        .basic_get(
            topology.dead_queue.as_str().into(),
            BasicGetOptions { no_ack: false },
        )
        .await?
    {
        let job = OwnedJobEnvelope::decode(&message.delivery.data).ok();
        dead.push(Dead { message, job });
    }
    match command {
        DeadCommand::List => {
            println!("{} dead-lettered message(s)", dead.len());
            for d in &dead {
                println!("{}", d.line());
            }
        }
        DeadCommand::Show { job_id } => {
            let found = dead.iter().find(|d| d.matches(Some(job_id), false));
            let Some(d) = found else {
                anyhow::bail!("job {job_id} is not in the dead-letter queue");
            };
            println!("{}", d.line());
            println!("{}", String::from_utf8_lossy(&d.message.delivery.data));
        }
        DeadCommand::Replay { job_id, all } => {
            anyhow::ensure!(job_id.is_some() || all, "name a job id or pass --all");
            let pool = sluice_store::pool(&config.database)?;
            let client = pool.get().await?;
            let publish = amqp::confirm_channel(&conn).await?;
            let mut replayed = 0;
            for d in dead.iter().filter(|d| d.matches(job_id, all)) {
                let Some(job) = &d.job else {
                    println!("skipped: {}", d.line());
                    continue;
                };
                // A failed job is reset; one that never got a record (or
                // ended otherwise) is left as it is and simply re-run.
                let reset = lifecycle::reset_for_replay(&**client, job.job_id).await?;
                amqp::publish_confirmed(
                    &publish,
                    "",
                    &topology.jobs_queue,
                    &d.message.delivery.data,
                    Durability::Persistent,
                    Duration::from_secs(10),
                )
                .await?;
                d.message.delivery.ack(BasicAckOptions::default()).await?;
                replayed += 1;
                println!(
                    "replayed{}: {}",
                    if reset { " (record reset)" } else { "" },
                    job.job_id
                );
            }
            println!("{replayed} job(s) replayed");
        }
        DeadCommand::Purge { job_id, all } => {
            anyhow::ensure!(job_id.is_some() || all, "name a job id or pass --all");
            let mut purged = 0;
            for d in dead.iter().filter(|d| d.matches(job_id, all)) {
                d.message.delivery.ack(BasicAckOptions::default()).await?;
                purged += 1;
            }
            println!("{purged} message(s) purged");
        }
    }
    // Unacknowledged messages go back to the queue with the channel.
    let _ = channel.close(200, "done".into()).await;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}
