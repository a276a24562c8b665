//! Dead-letter redrive tasks (`StartMessageMoveTask`): a background task that moves a dead-letter
//! queue's messages back to where they came from, in small durable steps at a bounded rate, and
//! can be cancelled between steps.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use parking_lot::Mutex;

use crate::engine::{now_ms, Queues};
use crate::requests::MoveTaskInfo;

/// Steps per second.
const STEPS_PER_SECOND: u32 = 10;
/// Messages per step when no rate is given (SQS picks a "system optimized" rate).
const UNLIMITED_STEP: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Running,
    Completed,
    Cancelling,
    Cancelled,
    Failed,
}

/// One move task.
#[derive(Debug)]
pub struct MoveTask {
    /// Opaque handle for `CancelMessageMoveTask`.
    pub handle: String,
    /// The dead-letter queue's ARN.
    pub source_arn: String,
    destination_arn: Option<String>,
    rate: Option<u32>,
    to_move: u64,
    moved: AtomicU64,
    /// Start (ms).
    pub started_ms: u64,
    cancel: AtomicBool,
    status: Mutex<(Status, Option<String>)>,
}

impl MoveTask {
    /// A new running task.
    pub fn new(
        source_arn: String,
        destination_arn: Option<String>,
        rate: Option<u32>,
        to_move: u64,
    ) -> MoveTask {
        let nonce: u64 = rand::random();
        let handle = URL_SAFE_NO_PAD.encode(format!("{nonce:016x}:{source_arn}"));
        MoveTask {
            handle,
            source_arn,
            destination_arn,
            rate,
            to_move,
            moved: AtomicU64::new(0),
            started_ms: now_ms(),
            cancel: AtomicBool::new(false),
            status: Mutex::new((Status::Running, None)),
        }
    }

    /// Still running (or being cancelled).
    pub fn is_running(&self) -> bool {
        matches!(self.status.lock().0, Status::Running | Status::Cancelling)
    }

    /// Asks the task to stop after its current step.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Release);
        let mut s = self.status.lock();
        if s.0 == Status::Running {
            s.0 = Status::Cancelling;
        }
    }

    /// Messages moved so far.
    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    /// What `ListMessageMoveTasks` shows.
    pub fn info(&self) -> MoveTaskInfo {
        let (status, reason) = self.status.lock().clone();
        MoveTaskInfo {
            handle: (status == Status::Running).then(|| self.handle.clone()),
            status: match status {
                Status::Running => "RUNNING",
                Status::Completed => "COMPLETED",
                Status::Cancelling => "CANCELLING",
                Status::Cancelled => "CANCELLED",
                Status::Failed => "FAILED",
            },
            source_arn: self.source_arn.clone(),
            destination_arn: self.destination_arn.clone(),
            max_per_second: self.rate,
            moved: self.moved(),
            to_move: self.to_move,
            failure_reason: reason,
            started_ms: self.started_ms,
        }
    }

    fn finish(&self, status: Status, reason: Option<String>) {
        *self.status.lock() = (status, reason);
    }

    /// Runs until done, cancelled or failed.
    pub async fn run(task: Arc<MoveTask>, engine: Weak<Queues>) {
        let step = task
            .rate
            .map_or(UNLIMITED_STEP, |r| (r / STEPS_PER_SECOND).max(1) as usize);
        let pause = match task.rate {
            Some(r) if r < STEPS_PER_SECOND => Duration::from_millis(1000 / u64::from(r)),
            _ => Duration::from_millis(1000 / u64::from(STEPS_PER_SECOND)),
        };
        loop {
            if task.cancel.load(Ordering::Acquire) {
                task.finish(Status::Cancelled, None);
                return;
            }
            let Some(queues) = engine.upgrade() else {
                return;
            };
            let Some(source) = queues.name_from_arn(&task.source_arn) else {
                task.finish(
                    Status::Failed,
                    Some("AWS.SimpleQueueService.NonExistentQueue".into()),
                );
                return;
            };
            let remaining = task.to_move.saturating_sub(task.moved()) as usize;
            if remaining == 0 {
                task.finish(Status::Completed, None);
                return;
            }
            let result = queues
                .redrive_some(
                    &source,
                    task.destination_arn.as_deref(),
                    step.min(remaining),
                )
                .await;
            drop(queues);
            match result {
                Ok((n, empty)) => {
                    task.moved.fetch_add(n, Ordering::Relaxed);
                    if empty {
                        task.finish(Status::Completed, None);
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(source = %task.source_arn, error = %e, "message move task failed");
                    task.finish(Status::Failed, Some(e.code().to_string()));
                    return;
                }
            }
            tokio::time::sleep(pause).await;
        }
    }
}
