//! A state change as the rest of the service sees it: the detector's [`Change`] with the name
//! of the target, the wall-clock time and the log line, ready for the history, the API, the
//! dashboard's feed and subscribers.
//!
//! It is a plain record, apart from the code that produces it ([`crate::monitor`]) and the
//! code that keeps it for the dashboard ([`crate::feed`]), so that both take it from here and
//! neither has to import the other: the monitor feeds the feed, and the feed knows nothing of
//! the monitor.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::detector::{Change, Estado};
use crate::ping::rfc3339;

/// A state change as published to the history, the API and subscribers.
#[derive(Debug, Clone, Serialize)]
pub struct StateChange {
    pub servicio: String,
    pub de: Estado,
    pub a: Estado,
    pub detectado_en_s: f64,
    pub tras_s: f64,
    pub motivo: String,
    #[serde(serialize_with = "rfc3339")]
    pub en: DateTime<Utc>,
    /// The log line, exactly as logged.
    pub linea: String,
}

impl StateChange {
    /// The record of `change` of the target `servicio`, published at `en`.
    pub fn new(servicio: &str, change: Change, en: DateTime<Utc>) -> Self {
        let linea = change_line(servicio, &change);
        StateChange {
            servicio: servicio.to_owned(),
            de: change.from,
            a: change.to,
            detectado_en_s: change.detected_in.as_secs_f64(),
            tras_s: change.after.as_secs_f64(),
            motivo: change.reason,
            en,
            linea,
        }
    }

    /// A change to a worse state is an alert; to a better one, a recovery.
    pub fn is_alert(&self) -> bool {
        self.a > self.de
    }
}

/// The log line of a change: `[ALERTA] InventarioService CAIDO (detectado en 0.812 s). ...`,
/// `[RECUPERADO] InventarioService OK tras 3.2 s en CAIDO (detectado en 0.004 s). ...`, or for
/// the first answer since the monitor started, `[INICIO] InventarioService responde: OK tras
/// 2.4 s en INICIANDO (detectado en 0.004 s)`: a start, which is neither an alert nor a recovery.
pub fn change_line(servicio: &str, change: &Change) -> String {
    let detected = change.detected_in.as_secs_f64();
    if change.is_alert() {
        format!(
            "[ALERTA] {servicio} {} (detectado en {detected:.3} s). {}",
            change.to, change.reason
        )
    } else if change.from == Estado::Iniciando {
        format!(
            "[INICIO] {servicio} responde: {} tras {:.1} s en {} (detectado en {detected:.3} s)",
            change.to,
            change.after.as_secs_f64(),
            change.from
        )
    } else {
        format!(
            "[RECUPERADO] {servicio} {} tras {:.1} s en {} (detectado en {detected:.3} s). {}",
            change.to,
            change.after.as_secs_f64(),
            change.from,
            change.reason
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn change_lines() {
        let caido = Change {
            from: Estado::Ok,
            to: Estado::Caido,
            detected_in: Duration::from_millis(812),
            after: Duration::from_secs(10),
            reason: "sin respuesta desde hace 0.750 s".into(),
        };
        assert_eq!(
            change_line("InventarioService", &caido),
            "[ALERTA] InventarioService CAIDO (detectado en 0.812 s). sin respuesta desde hace 0.750 s"
        );
        let back = Change {
            from: Estado::Caido,
            to: Estado::Ok,
            detected_in: Duration::from_millis(4),
            after: Duration::from_millis(3200),
            reason: "responde a tiempo".into(),
        };
        assert!(change_line("InventarioService", &back)
            .starts_with("[RECUPERADO] InventarioService OK tras 3.2 s en CAIDO"));
        let started = Change {
            from: Estado::Iniciando,
            ..back.clone()
        };
        assert_eq!(
            change_line("InventarioService", &started),
            "[INICIO] InventarioService responde: OK tras 3.2 s en INICIANDO (detectado en 0.004 s)"
        );
        let never = Change {
            from: Estado::Iniciando,
            ..caido
        };
        assert!(change_line("InventarioService", &never)
            .starts_with("[ALERTA] InventarioService CAIDO"));
    }
}
