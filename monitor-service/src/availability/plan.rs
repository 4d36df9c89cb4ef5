//! How a run sends its requests. Two ways, because they answer different questions:
//!
//! - Closed loop ([`Plan::Rounds`], [`Plan::ClosedFor`]): a number of clients, each sending
//!   its next request when the previous one has been answered. It measures what those clients
//!   live through, but a slow answer also slows the sending, so a stall shows up as fewer
//!   requests rather than as many slow ones.
//! - Open loop ([`Plan::Open`]): requests are due at a fixed rate whatever the answers take,
//!   as users arrive. This is what a load generator must do to avoid coordinated omission,
//!   and what a run that spans a worker kill needs: every second of the outage gets its share
//!   of requests. Request `i` is due `i / rate` seconds after the start.

use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plan {
    /// `clients` clients, each sending `requests` requests one after another.
    Rounds { clients: usize, requests: usize },
    /// `clients` clients, each sending one request after another until `duration` has passed.
    ClosedFor { clients: usize, duration: Duration },
    /// `rate` requests per second on a fixed schedule, for `duration`.
    Open { rate: f64, duration: Duration },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("--rate debe ser un número de solicitudes por segundo mayor que 0 (se dio {0})")]
    Rate(f64),
    #[error("--duration debe ser mayor que 0")]
    Duration,
}

impl Plan {
    /// An open-loop plan, checked: a positive rate and a positive duration. The first request
    /// is due at once, so every such plan sends one at least.
    pub fn open(rate: f64, duration: Duration) -> Result<Plan, PlanError> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(PlanError::Rate(rate));
        }
        if duration.is_zero() {
            return Err(PlanError::Duration);
        }
        Ok(Plan::Open { rate, duration })
    }

    pub fn closed_for(clients: usize, duration: Duration) -> Result<Plan, PlanError> {
        if duration.is_zero() {
            return Err(PlanError::Duration);
        }
        Ok(Plan::ClosedFor { clients, duration })
    }

    /// How many requests the run sends, when that is known before it starts.
    pub fn total(&self) -> Option<usize> {
        match *self {
            Plan::Rounds { clients, requests } => Some(clients * requests),
            Plan::ClosedFor { .. } => None,
            // The requests due strictly before the end. The small epsilon keeps a product such
            // as 0.7 × 10 = 7.000000000000001 or 6.999999999999999 at 7.
            Plan::Open { rate, duration } => {
                let due = rate * duration.as_secs_f64();
                Some((due - 1e-9).ceil().max(1.0) as usize)
            }
        }
    }

    /// How long the run is meant to last, when it has a set length.
    pub fn duration(&self) -> Option<Duration> {
        match *self {
            Plan::Rounds { .. } => None,
            Plan::ClosedFor { duration, .. } | Plan::Open { duration, .. } => Some(duration),
        }
    }

    /// When request `i` of an open-loop run is due, from the start; zero for the closed loops,
    /// which send when they can.
    pub fn due(&self, i: usize) -> Duration {
        match *self {
            Plan::Open { rate, .. } => Duration::from_secs_f64(i as f64 / rate),
            _ => Duration::ZERO,
        }
    }
}

/// The plan as the summary's first line shows it, after the URL.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let human = |d: Duration| humantime::format_duration(d).to_string();
        match *self {
            Plan::Rounds { clients, requests } => {
                write!(f, "{clients} clientes x {requests} solicitudes")
            }
            Plan::ClosedFor { clients, duration } => {
                write!(f, "{clients} clientes durante {}", human(duration))
            }
            Plan::Open { rate, duration } => {
                write!(f, "{rate} solicitudes/s durante {}", human(duration))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn an_open_plan_is_due_at_a_fixed_rate() {
        let plan = Plan::open(50.0, secs(2)).unwrap();
        assert_eq!(plan.total(), Some(100));
        assert_eq!(plan.due(0), Duration::ZERO);
        assert_eq!(plan.due(1), Duration::from_millis(20));
        assert_eq!(plan.due(99), Duration::from_millis(1980));
        assert_eq!(plan.to_string(), "50 solicitudes/s durante 2s");
    }

    #[test]
    fn totals_are_the_requests_due_before_the_end() {
        assert_eq!(Plan::open(0.7, secs(10)).unwrap().total(), Some(7));
        assert_eq!(Plan::open(0.3, secs(10)).unwrap().total(), Some(3));
        assert_eq!(Plan::open(2.5, secs(3)).unwrap().total(), Some(8));
        assert_eq!(
            Plan::open(1.0, Duration::from_millis(1500))
                .unwrap()
                .total(),
            Some(2)
        );
        let rounds = Plan::Rounds {
            clients: 10,
            requests: 20,
        };
        assert_eq!(rounds.total(), Some(200));
        assert_eq!(rounds.to_string(), "10 clientes x 20 solicitudes");
        let closed = Plan::closed_for(3, secs(60)).unwrap();
        assert_eq!(closed.total(), None);
        assert_eq!(closed.duration(), Some(secs(60)));
        assert_eq!(closed.to_string(), "3 clientes durante 1m");
    }

    #[test]
    fn impossible_plans_are_refused() {
        assert_eq!(Plan::open(0.0, secs(1)), Err(PlanError::Rate(0.0)));
        assert!(matches!(
            Plan::open(f64::NAN, secs(1)),
            Err(PlanError::Rate(_))
        ));
        assert_eq!(Plan::open(-1.0, secs(1)), Err(PlanError::Rate(-1.0)));
        assert_eq!(Plan::open(5.0, Duration::ZERO), Err(PlanError::Duration));
        assert_eq!(
            Plan::closed_for(5, Duration::ZERO),
            Err(PlanError::Duration)
        );
        let short = Plan::open(0.5, Duration::from_millis(1)).unwrap();
        assert_eq!(short.total(), Some(1));
    }
}
