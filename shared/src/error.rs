//! The library's error type: what a caller of the queue can match on.

use crate::protocol::{ExceptionInfo, ProtocolError};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The configuration (usually `REDIS_URL`) is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Redis refused, dropped or timed out a command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// No connection could be had from the pool.
    #[error("redis pool: {0}")]
    Pool(String),
    /// A document in Redis could not be understood.
    #[error("protocol: {0}")]
    Protocol(#[from] ProtocolError),
    /// Waiting for a result gave up.
    #[error("no result for task {task_id} within {waited:?}")]
    Timeout {
        task_id: String,
        waited: std::time::Duration,
    },
    /// The task ended in FAILURE or REVOKED.
    #[error("task {task_id} failed: {exception}")]
    TaskFailed {
        task_id: String,
        exception: Box<ExceptionInfo>,
    },
    /// The component is shutting down.
    #[error("shut down")]
    Shutdown,
    /// A publish reached the master, but `WAIT` saw fewer replicas acknowledge it than asked
    /// (`REDIS_WAIT_REPLICAS`) within its timeout: the message is queued and may run, but a
    /// failover now could lose it.
    #[error("the message is on the Redis master but only {got} of {wanted} replicas acknowledged it in time")]
    NotReplicated { wanted: usize, got: usize },
}

impl From<deadpool_redis::PoolError> for QueueError {
    fn from(e: deadpool_redis::PoolError) -> Self {
        match e {
            deadpool_redis::PoolError::Backend(e) => QueueError::Redis(e),
            other => QueueError::Pool(other.to_string()),
        }
    }
}

impl QueueError {
    /// Whether the error says the connection is gone (so it should be replaced).
    pub fn is_connection_error(&self) -> bool {
        match self {
            QueueError::Redis(e) => is_connection_error(e),
            QueueError::Pool(_) => true,
            _ => false,
        }
    }

    /// Whether the server refused the command because it is not (or no longer) a master that
    /// can take writes: `READONLY` from a replica (a demoted master), `MASTERDOWN` from a
    /// replica that lost its master. Behind Sentinel the master is then looked up again.
    pub fn is_not_master(&self) -> bool {
        let QueueError::Redis(e) = self else {
            return false;
        };
        // A script's or a pipeline's refusal comes as the failures of its commands.
        e.clone().into_server_errors().is_some_and(|errors| {
            errors
                .iter()
                .any(|(_, err)| matches!(err.code(), "READONLY" | "MASTERDOWN"))
        })
    }

    /// Whether Redis may have run the command but its answer never came back.
    pub fn is_timeout(&self) -> bool {
        matches!(self, QueueError::Redis(e) if e.is_timeout())
    }

    /// Whether Redis refused the command because it is full (`maxmemory` reached under the
    /// `noeviction` policy): a refusal before anything was written, so a send that failed so
    /// did not queue anything, unlike one that timed out.
    pub fn is_out_of_memory(&self) -> bool {
        let QueueError::Redis(e) = self else {
            return false;
        };
        // A pipeline's (or script's) refusal comes as the failures of its commands.
        e.clone()
            .into_server_errors()
            .is_some_and(|errors| errors.iter().any(|(_, err)| err.code() == "OOM"))
    }
}

pub(crate) fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;
