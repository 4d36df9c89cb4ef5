//! Celery's remote control messages (kombu's "pidbox"), both ways: the request a client
//! broadcasts (`celery inspect ping`, `app.control.revoke(id)`) and the reply a worker sends
//! back. A request travels in kombu's envelope on the fanout channel `/<db>.celery.pidbox`;
//! its body says which command (`method`), with what `arguments`, for whom (`destination`, or
//! a `pattern` and `matcher`), and, when the client waits for answers, where to send them
//! (`reply_to`) under which `ticket`. A reply is `{hostname: answer}`, LPUSHed onto the
//! client's reply list with the ticket in its headers. The shapes are those of the captures in
//! `tests/fixtures/celery-5.5-redis-control.txt`.

use serde_json::{json, Map, Value};

use super::envelope::Envelope;
use super::error::kind;
use super::error::ProtocolError;
use super::python_json::to_python_json;
use crate::keys;

/// A decoded control request.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlRequest {
    pub method: String,
    pub arguments: Map<String, Value>,
    /// Only these workers act on it (node names); `None`: every worker.
    pub destination: Option<Vec<String>>,
    /// With `matcher` (`glob`, `pcre`): the workers whose node name matches act on it.
    pub pattern: Option<String>,
    pub matcher: Option<String>,
    /// Where to reply; `None` for a command sent without waiting for answers.
    pub reply_to: Option<ReplyTo>,
    pub ticket: Option<String>,
    /// The sender's Lamport clock (header `clock`), 0 when absent.
    pub clock: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    pub exchange: String,
    pub routing_key: String,
}

impl ControlRequest {
    /// Decodes a request as PUBLISHed on the pidbox channel. Everything a worker relies on is
    /// checked here, so a malformed request is refused with the reason, never half-read.
    pub fn decode(raw: &[u8]) -> Result<Self, ProtocolError> {
        let envelope = Envelope::parse(raw)?;
        let clock = envelope
            .headers
            .get("clock")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let Value::Object(body) = envelope.payload()? else {
            return Err(ProtocolError::Body("the body is not an object".into()));
        };
        let text = |name: &'static str| -> Result<Option<String>, ProtocolError> {
            match body.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(wrong(name, "a string", other)),
            }
        };
        let method = text("method")?
            .filter(|m| !m.is_empty())
            .ok_or(ProtocolError::Missing("method"))?;
        let arguments = match body.get("arguments") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(a)) => a.clone(),
            Some(other) => return Err(wrong("arguments", "an object", other)),
        };
        let destination = match body.get("destination") {
            None | Some(Value::Null) => None,
            Some(Value::Array(names)) => Some(
                names
                    .iter()
                    .map(|n| match n {
                        Value::String(s) => Ok(s.clone()),
                        other => Err(wrong("destination", "a list of names", other)),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(other) => return Err(wrong("destination", "a list", other)),
        };
        let reply_to = match body.get("reply_to") {
            None | Some(Value::Null) => None,
            Some(Value::Object(r)) => {
                let field = |name: &'static str| match r.get(name) {
                    Some(Value::String(s)) => Ok(s.clone()),
                    Some(other) => {
                        Err(wrong("reply_to", "exchange and routing_key strings", other))
                    }
                    None => Err(ProtocolError::Missing("reply_to.routing_key")),
                };
                Some(ReplyTo {
                    exchange: field("exchange")?,
                    routing_key: field("routing_key")?,
                })
            }
            Some(other) => return Err(wrong("reply_to", "an object", other)),
        };
        Ok(ControlRequest {
            method,
            arguments,
            destination,
            pattern: text("pattern")?,
            matcher: text("matcher")?,
            reply_to,
            ticket: text("ticket")?,
            clock,
        })
    }

    /// Whether the worker `hostname` acts on it (kombu's `Node.handle_message`): named in
    /// `destination`, or matching `pattern`, or everyone when neither is given. Of the
    /// matchers only `glob` is known here; a `pcre` pattern matches nobody.
    pub fn is_for(&self, hostname: &str) -> bool {
        match (&self.destination, &self.pattern, &self.matcher) {
            (Some(names), _, _) if !names.is_empty() => names.iter().any(|n| n == hostname),
            (_, Some(pattern), Some(matcher)) => matcher == "glob" && glob(pattern, hostname),
            _ => true,
        }
    }

    /// The body a client sends (what [`ControlRequest::decode`] reads). As kombu writes it,
    /// `ticket` and `reply_to` are left out when no reply is wanted.
    pub fn to_body(&self) -> Value {
        let mut body = json!({
            "method": self.method,
            "arguments": self.arguments,
            "destination": self.destination,
            "pattern": self.pattern,
            "matcher": self.matcher,
        });
        if let (Some(ticket), Some(to)) = (&self.ticket, &self.reply_to) {
            body["ticket"] = json!(ticket);
            body["reply_to"] = json!({"exchange": to.exchange, "routing_key": to.routing_key});
        }
        body
    }

    /// The envelope a client PUBLISHes (as kombu's `Mailbox._broadcast` writes it), expiring
    /// `timeout` seconds from now.
    pub fn to_envelope(&self, clock: u64, timeout: f64) -> Envelope {
        let mut headers = Map::new();
        headers.insert("clock".into(), json!(clock));
        let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
        headers.insert("expires".into(), json!(now + timeout));
        Envelope::new(
            &to_python_json(&self.to_body()),
            headers,
            properties(2, keys::PIDBOX_EXCHANGE, ""),
        )
    }
}

/// A worker's reply envelope: `{hostname: answer}` with the request's ticket.
pub fn reply_envelope(
    hostname: &str,
    answer: &Value,
    ticket: Option<&str>,
    reply_to: &ReplyTo,
    clock: u64,
) -> Envelope {
    let mut body = Map::new();
    body.insert(hostname.to_owned(), answer.clone());
    let mut headers = Map::new();
    headers.insert("ticket".into(), json!(ticket));
    headers.insert("clock".into(), json!(clock));
    Envelope::new(
        &to_python_json(&Value::Object(body)),
        headers,
        properties(1, &reply_to.exchange, &reply_to.routing_key),
    )
}

fn properties(delivery_mode: u8, exchange: &str, routing_key: &str) -> Map<String, Value> {
    let mut p = Map::new();
    p.insert("delivery_mode".into(), json!(delivery_mode));
    p.insert(
        "delivery_info".into(),
        json!({"exchange": exchange, "routing_key": routing_key}),
    );
    p.insert("priority".into(), json!(0));
    p.insert("body_encoding".into(), json!("base64"));
    p.insert(
        "delivery_tag".into(),
        json!(uuid::Uuid::new_v4().to_string()),
    );
    p
}

fn wrong(field: &'static str, expected: &str, found: &Value) -> ProtocolError {
    ProtocolError::WrongType {
        field,
        detail: format!("expected {expected}, found {}", kind(found)),
    }
}

/// Python's `fnmatch` on node names: `*` any run, `?` one character, the rest literal.
fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Classic two-pointer match with one backtrack point for the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/celery-5.5-control-replies.json");

    fn request(name: &str) -> Value {
        let all: Value = serde_json::from_str(FIXTURE).unwrap();
        all["requests"][name].clone()
    }

    fn envelope_of(body: &Value) -> Vec<u8> {
        Envelope::new(
            &body.to_string(),
            Map::new(),
            properties(2, "celery.pidbox", ""),
        )
        .to_json()
        .into_bytes()
    }

    #[test]
    fn reads_the_requests_celery_sends() {
        let ping = ControlRequest::decode(&envelope_of(&request("inspect.ping"))).unwrap();
        assert_eq!(ping.method, "ping");
        assert!(ping.arguments.is_empty());
        assert!(ping.reply_to.is_some() && ping.ticket.is_some());
        assert!(ping.is_for("anyone@host"));
        assert_eq!(ping.to_body(), request("inspect.ping"));

        let revoke = ControlRequest::decode(&envelope_of(&request("control.revoke"))).unwrap();
        assert_eq!(revoke.method, "revoke");
        assert!(revoke.arguments["task_id"].is_string());

        let no_reply =
            ControlRequest::decode(&envelope_of(&request("control.revoke.no_reply"))).unwrap();
        assert_eq!((no_reply.reply_to, no_reply.ticket), (None, None));

        let aimed =
            ControlRequest::decode(&envelope_of(&request("inspect.ping.destination_other")))
                .unwrap();
        assert!(!aimed.is_for("py@capture"));
        assert!(aimed.is_for("nobody@x"));
    }

    #[test]
    fn refuses_malformed_requests_with_a_reason() {
        for body in [
            json!([1, 2]),
            json!({"arguments": {}}),
            json!({"method": ""}),
            json!({"method": 7}),
            json!({"method": "ping", "arguments": [1]}),
            json!({"method": "ping", "destination": "w@h"}),
            json!({"method": "ping", "destination": [1]}),
            json!({"method": "ping", "reply_to": "q"}),
            json!({"method": "ping", "reply_to": {"exchange": "x"}}),
            json!({"method": "ping", "ticket": {}}),
        ] {
            assert!(
                ControlRequest::decode(&envelope_of(&body)).is_err(),
                "{body}"
            );
        }
        assert!(ControlRequest::decode(b"not json").is_err());
    }

    #[test]
    fn patterns_match_as_fnmatch_does() {
        for (pattern, name, hit) in [
            ("w*", "worker@a", true),
            ("*@a", "worker@a", true),
            ("w?rker@a", "worker@a", true),
            ("*@b", "worker@a", false),
            ("worker@a", "worker@a", true),
            ("*", "", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
        ] {
            assert_eq!(glob(pattern, name), hit, "{pattern} {name}");
        }
        let by_pattern = |matcher: &str| ControlRequest {
            method: "ping".into(),
            arguments: Map::new(),
            destination: None,
            pattern: Some("inv*".into()),
            matcher: Some(matcher.into()),
            reply_to: None,
            ticket: None,
            clock: 0,
        };
        assert!(by_pattern("glob").is_for("inventario@h"));
        assert!(!by_pattern("glob").is_for("other@h"));
        assert!(!by_pattern("pcre").is_for("inventario@h"));
    }

    #[test]
    fn a_reply_is_hostname_to_answer_with_the_ticket() {
        let to = ReplyTo {
            exchange: keys::REPLY_EXCHANGE.into(),
            routing_key: "oid".into(),
        };
        let env = reply_envelope("w@h", &json!({"ok": "pong"}), Some("t1"), &to, 5);
        let parsed = Envelope::parse(env.to_json().as_bytes()).unwrap();
        assert_eq!(parsed.payload().unwrap(), json!({"w@h": {"ok": "pong"}}));
        assert_eq!(parsed.headers["ticket"], "t1");
        assert_eq!(parsed.headers["clock"], 5);
        assert_eq!(
            parsed.properties["delivery_info"],
            json!({"exchange": "reply.celery.pidbox", "routing_key": "oid"})
        );
    }
}
