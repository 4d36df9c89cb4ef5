//! Fault injection for availability experiments: make `obtener_estado` fail with a given
//! probability, or answer late, so the monitor's detection can be measured against a known
//! truth (a failure rate of 0.1 is a "90 % available" service); and make stock movements slow,
//! so that an outage (Redis full, Redis gone) can be made to fall while a worker holds
//! movements it has not applied yet. Off by default.

use std::time::Duration;

/// The faults this worker injects into `obtener_estado`.
#[derive(Debug, Clone, Copy, Default, PartialEq, clap::Args)]
pub struct Faults {
    /// Probability, 0.0 to 1.0, that obtener_estado answers with a failure.
    #[arg(long = "fault-failure-rate", env = "FAULT_FAILURE_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub failure_rate: f64,
    /// Milliseconds obtener_estado waits before it answers.
    #[arg(long = "fault-delay-ms", env = "FAULT_DELAY_MS", default_value_t = 0)]
    pub delay_ms: u64,
    /// Milliseconds aplicar_movimiento waits before it applies a movement (a slow database).
    #[arg(
        long = "fault-movement-delay-ms",
        env = "FAULT_MOVEMENT_DELAY_MS",
        default_value_t = 0
    )]
    pub movement_delay_ms: u64,
}

impl Faults {
    /// No faults: the production setting.
    pub fn none() -> Self {
        Faults::default()
    }

    pub fn is_active(&self) -> bool {
        self.failure_rate > 0.0 || self.delay_ms > 0 || self.movement_delay_ms > 0
    }

    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }

    pub fn movement_delay(&self) -> Duration {
        Duration::from_millis(self.movement_delay_ms)
    }

    /// Draws whether this call fails. `random()` is in [0, 1), so 0.0 never fails and 1.0
    /// always does.
    pub fn should_fail(&self) -> bool {
        self.failure_rate > 0.0 && rand::random::<f64>() < self.failure_rate
    }
}

/// Accepts a probability in [0, 1] and refuses anything else at start-up, with the reason.
fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} no es un número"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{rate} no es una probabilidad entre 0.0 y 1.0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_must_be_a_probability() {
        assert_eq!(parse_rate("0.1"), Ok(0.1));
        assert_eq!(parse_rate("1"), Ok(1.0));
        assert!(parse_rate("1.5").is_err());
        assert!(parse_rate("-0.1").is_err());
        assert!(parse_rate("NaN").is_err());
        assert!(parse_rate("mucho").is_err());
    }

    #[test]
    fn extremes_are_certain() {
        let always = Faults {
            failure_rate: 1.0,
            ..Faults::none()
        };
        let never = Faults::none();
        assert!((0..1000).all(|_| always.should_fail()));
        assert!((0..1000).all(|_| !never.should_fail()));
    }
}
