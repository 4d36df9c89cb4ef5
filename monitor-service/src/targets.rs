//! What the monitor watches: a named service reached through a queue and a health task. Each
//! target gets its own ping loop and its own state, so adding a service is one more entry in
//! `TARGETS`, not new code.

use serde::Serialize;

/// A watched service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The name used in logs (`InventarioService no disponible`) and in the API.
    pub name: String,
    /// The queue its workers consume.
    pub queue: String,
    /// The health task it answers (no arguments).
    pub task: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("target {0:?}: expected name:queue:task, or name:queue")]
    Shape(String),
    #[error("target name {0:?} appears twice")]
    Duplicate(String),
}

pub const DEFAULT_NAME: &str = "InventarioService";
pub const DEFAULT_TASK: &str = "obtener_estado";

impl Target {
    /// InventarioService on `queue`, answering `obtener_estado`.
    pub fn default_for(queue: &str) -> Self {
        Target {
            name: DEFAULT_NAME.into(),
            queue: queue.into(),
            task: DEFAULT_TASK.into(),
        }
    }

    /// `name:queue:task` (`task` may be left out: obtener_estado).
    pub fn parse(spec: &str) -> Result<Self, TargetError> {
        let parts: Vec<&str> = spec.trim().split(':').map(str::trim).collect();
        let (name, queue, task) = match parts.as_slice() {
            [name, queue] => (*name, *queue, DEFAULT_TASK),
            [name, queue, task] => (*name, *queue, *task),
            _ => return Err(TargetError::Shape(spec.into())),
        };
        if name.is_empty() || queue.is_empty() || task.is_empty() {
            return Err(TargetError::Shape(spec.into()));
        }
        Ok(Target {
            name: name.into(),
            queue: queue.into(),
            task: task.into(),
        })
    }

    /// A comma-separated list; names must be unique (they key the state and the metrics).
    pub fn parse_list(list: &str) -> Result<Vec<Self>, TargetError> {
        let mut targets: Vec<Target> = Vec::new();
        for spec in list.split(',').filter(|s| !s.trim().is_empty()) {
            let target = Target::parse(spec)?;
            if targets.iter().any(|t| t.name == target.name) {
                return Err(TargetError::Duplicate(target.name));
            }
            targets.push(target);
        }
        if targets.is_empty() {
            return Err(TargetError::Shape(list.into()));
        }
        Ok(targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert_eq!(
            Target::parse("Pagos:pagos:salud").unwrap(),
            Target {
                name: "Pagos".into(),
                queue: "pagos".into(),
                task: "salud".into()
            }
        );
        assert_eq!(Target::parse("X:q").unwrap().task, DEFAULT_TASK);
        assert!(matches!(Target::parse("solo"), Err(TargetError::Shape(_))));
        assert!(matches!(Target::parse("a::t"), Err(TargetError::Shape(_))));
        assert_eq!(
            Target::parse_list("A:q,A:r"),
            Err(TargetError::Duplicate("A".into()))
        );
        assert_eq!(Target::parse_list(" A:q , B:r:t ").unwrap().len(), 2);
    }
}
