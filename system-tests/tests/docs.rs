//! The documentation's tables that copy the code, kept equal to it.
//!
//! - `docs/REDIS_KEYS.md`'s table of Redis keys is rendered from `shared::keys::CATALOGUE`.
//! - `docs/CONFIGURATION.md`'s table of settings is rendered from each program's `--help`
//!   (clap prints every flag with its `[env: ...]` and `[default: ...]`), so the programs
//!   themselves are the source: a setting added to a `Config` and not to the table fails here.
//!
//! Each table sits between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`. A test
//! renders it and compares; with `UPDATE_DOCS=1` in the environment it writes the rendering
//! into the file instead (and passes), so after changing the code:
//! `UPDATE_DOCS=1 cargo test -p system-tests --test docs`, then review and commit the diff.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use shared::keys;
use testkit::workspace_binary;

/// The programs whose settings `docs/CONFIGURATION.md` lists, in the table's order.
const PROGRAMS: &[&str] = &[
    "inventario-service",
    "inventario-worker",
    "monitor-service",
    "demo-worker",
    "availability-check",
];

/// What updating takes, for the failure messages.
const HOW_TO_UPDATE: &str = "UPDATE_DOCS=1 cargo test -p system-tests --test docs";

// ---------------------------------------------------------------------------------------------
// The tests

#[test]
fn redis_keys_table_is_the_key_catalogue() {
    check_section("docs/REDIS_KEYS.md", "keys", &render_keys());
}

#[test]
fn configuration_table_is_the_programs_help() {
    check_section("docs/CONFIGURATION.md", "config", &render_config());
}

/// A key function or constant added to `keys.rs` must have its key in the catalogue (and so in
/// `docs/REDIS_KEYS.md`). The names below are every public item of `keys.rs`, each with the keys
/// it gives for sample arguments; an item this test does not know fails it.
#[test]
fn every_key_the_code_names_is_in_the_catalogue() {
    let samples: Vec<(&str, Vec<String>)> = vec![
        ("PRIORITY_SEP", vec![]),
        ("PRIORITY_STEPS", vec![]),
        (
            "RESULT_KEY_PREFIX",
            vec![format!("{}1f0c", keys::RESULT_KEY_PREFIX)],
        ),
        ("UNACKED", vec![keys::UNACKED.into()]),
        ("UNACKED_INDEX", vec![keys::UNACKED_INDEX.into()]),
        ("UNACKED_MUTEX", vec![keys::UNACKED_MUTEX.into()]),
        ("CONSUMERS", vec![keys::CONSUMERS.into()]),
        ("MONITOR_HISTORY", vec![keys::MONITOR_HISTORY.into()]),
        ("QUARANTINE", vec![keys::QUARANTINE.into()]),
        ("QUARANTINE_DROPPED", vec![keys::QUARANTINE_DROPPED.into()]),
        ("CATALOGUE", vec![]),
        (
            "queue_list",
            (0..=9).map(|p| keys::queue_list("inventario", p)).collect(),
        ),
        ("queue_lists", keys::queue_lists("pagos")),
        ("queue_of_list", vec![]),
        ("binding", vec![keys::binding("inventario").0]),
        ("result_key", vec![keys::result_key("1f0c")]),
        (
            "event_channel",
            [
                "worker.online",
                "worker.heartbeat",
                "worker.offline",
                "task.multi",
            ]
            .iter()
            .map(|k| keys::event_channel(0, k))
            .collect(),
        ),
        ("worker_events_pattern", vec![]),
        ("inflight", vec![keys::inflight("inventario@host-1")]),
        ("group_key", vec![keys::group_key("1f0c")]),
        ("chord_keys", keys::chord_keys("1f0c").to_vec()),
        ("PARKED", vec![keys::PARKED.into()]),
        ("REVOKED", vec![keys::REVOKED.into()]),
        ("PIDBOX_EXCHANGE", vec![]),
        ("PIDBOX_BINDING", vec![keys::PIDBOX_BINDING.into()]),
        ("REPLY_EXCHANGE", vec![]),
        ("REPLY_BINDING", vec![keys::REPLY_BINDING.into()]),
        ("pidbox_channel", vec![keys::pidbox_channel(0)]),
        ("pidbox_member", vec![]),
        (
            "reply_queue",
            vec![keys::reply_queue("933b5df2-1fd8-3a96-afab-56b1b69df38d").0],
        ),
    ];

    let source = read(&repository().join("shared/src/keys.rs"));
    let known: BTreeSet<&str> = samples.iter().map(|(name, _)| *name).collect();
    let items = public_items(&source);
    let unknown: Vec<&String> = items
        .iter()
        .filter(|i| !known.contains(i.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "shared/src/keys.rs has public items this test does not know: {unknown:?}. Add each \
         key they name to keys::CATALOGUE (then {HOW_TO_UPDATE}) and a sample to \
         every_key_the_code_names_is_in_the_catalogue"
    );

    for (name, keys) in &samples {
        for key in keys {
            let shown = as_redis_shows(key);
            assert!(
                keys::CATALOGUE.iter().any(|k| matches(k.pattern, &shown)),
                "keys::{name} gives `{shown}`, which no pattern of keys::CATALOGUE matches: \
                 add it to the catalogue, then {HOW_TO_UPDATE}"
            );
        }
    }
    let patterns: BTreeSet<&str> = keys::CATALOGUE.iter().map(|k| k.pattern).collect();
    assert_eq!(
        patterns.len(),
        keys::CATALOGUE.len(),
        "a pattern is listed twice"
    );
}

/// The parser below reads clap's layouts; this pins it on both (help on the flag's line, and
/// help on the lines under it), so a table that came out empty cannot pass as up to date.
#[test]
fn help_parser_reads_both_of_claps_layouts() {
    let help = "\
Usage: x [OPTIONS]

Options:
      --redis-url <REDIS_URL>
          Redis URL: redis://[user:password@]host:port/db [env: REDIS_URL] [default: redis://127.0.0.1:6379/0]
      --hostname <HOSTNAME>
          Node name
          (default: <prefix>@<host>) [env: WORKER_HOSTNAME=worker-7]
  -c, --clients <CLIENTS>        Concurrent clients [env: CHECK_CLIENTS=] [default: 100]
      --track-started <TRACK_STARTED>
          true or false [env: TRACK_STARTED=] [possible values: true, false]
  -h, --help                     Print help
";
    let options = parse_help(help);
    assert_eq!(
        options,
        vec![
            Setting {
                variable: Some("REDIS_URL".into()),
                flags: vec!["--redis-url".into()],
                default: Some("redis://127.0.0.1:6379/0".into()),
                meaning: "Redis URL: redis://[user:password@]host:port/db".into(),
            },
            Setting {
                variable: Some("WORKER_HOSTNAME".into()),
                flags: vec!["--hostname".into()],
                default: None,
                meaning: "Node name (default: <prefix>@<host>)".into(),
            },
            Setting {
                variable: Some("CHECK_CLIENTS".into()),
                flags: vec!["-c".into(), "--clients".into()],
                default: Some("100".into()),
                meaning: "Concurrent clients".into(),
            },
            Setting {
                variable: Some("TRACK_STARTED".into()),
                flags: vec!["--track-started".into()],
                default: None,
                meaning: "true or false".into(),
            },
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// The key table

fn render_keys() -> String {
    let mut out = String::from(
        "<!-- Generated from shared::keys::CATALOGUE by system-tests/tests/docs.rs: edit the \
         catalogue, then run UPDATE_DOCS=1 cargo test -p system-tests --test docs -->\n\n\
         | key | type | holds |\n| --- | --- | --- |\n",
    );
    for k in keys::CATALOGUE {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            k.pattern.replace('|', "\\|"),
            cell(k.kind),
            cell(k.holds)
        ));
    }
    out
}

/// A key as Redis Insight and `redis-cli` show it: control bytes as `\xNN`.
fn as_redis_shows(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_control() {
                format!("\\x{:02x}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Whether `key` fits `pattern`, each `<placeholder>` standing for one or more characters.
fn matches(pattern: &str, key: &str) -> bool {
    match pattern.find('<') {
        None => pattern == key,
        Some(start) => {
            let Some(len) = pattern[start..].find('>') else {
                return pattern == key;
            };
            let (prefix, rest) = (&pattern[..start], &pattern[start + len + 1..]);
            let Some(key_rest) = key.strip_prefix(prefix) else {
                return false;
            };
            // The placeholder takes at least one character; try every length.
            key_rest
                .char_indices()
                .skip(1)
                .map(|(i, _)| i)
                .chain([key_rest.len()])
                .any(|i| !key_rest.is_empty() && matches(rest, &key_rest[i..]))
        }
    }
}

/// The names of `pub const`, `pub fn` and `pub struct` items at the top level of a file.
fn public_items(source: &str) -> Vec<String> {
    source
        .lines()
        .filter_map(|line| {
            let rest = ["pub const ", "pub fn ", "pub static "]
                .iter()
                .find_map(|p| line.strip_prefix(p))?;
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            Some(name)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The configuration table

/// One option of a program's `--help`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Setting {
    variable: Option<String>,
    flags: Vec<String>,
    default: Option<String>,
    meaning: String,
}

fn render_config() -> String {
    // Rows are (setting, programs); a setting that several programs share word for word is one
    // row. Rows of one variable stay together, in the order the variable first appears.
    let mut rows: Vec<(Setting, Vec<&str>)> = Vec::new();
    for program in PROGRAMS {
        let settings = parse_help(&help_of(program));
        assert!(
            settings.iter().any(|s| s.variable.is_some()),
            "{program} --help lists no environment variable: has its layout changed?"
        );
        for setting in settings {
            match rows.iter_mut().find(|(s, _)| *s == setting) {
                Some((_, programs)) => programs.push(program),
                None => rows.push((setting, vec![program])),
            }
        }
    }
    // Variables in the order they first appear, those more programs read first (the Redis
    // connection before one program's thresholds).
    let mut order: Vec<(Option<String>, BTreeSet<&str>)> = Vec::new();
    for (s, programs) in &rows {
        match order.iter_mut().find(|(v, _)| *v == s.variable) {
            Some((_, all)) => all.extend(programs.iter().copied()),
            None => order.push((s.variable.clone(), programs.iter().copied().collect())),
        }
    }
    order.sort_by_key(|(_, programs)| std::cmp::Reverse(programs.len()));

    let mut out = String::from(
        "<!-- Generated from each program's --help by system-tests/tests/docs.rs: edit the \
         program's clap Config, then run UPDATE_DOCS=1 cargo test -p system-tests --test docs -->\n\n\
         | variable | flag | default | programs | meaning |\n| --- | --- | --- | --- | --- |\n",
    );
    for (variable, _) in &order {
        for (s, programs) in rows.iter().filter(|(s, _)| &s.variable == variable) {
            let flags: Vec<String> = s.flags.iter().map(|f| format!("`{f}`")).collect();
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                s.variable
                    .as_ref()
                    .map_or("(flag only)".into(), |v| format!("`{v}`")),
                flags.join(", "),
                s.default
                    .as_ref()
                    .map_or("(none)".into(), |d| format!("`{}`", d.replace('|', "\\|"))),
                programs.join(", "),
                cell(&s.meaning),
            ));
        }
    }
    out
}

/// `program --help`, with an empty environment: clap prints a variable's current value beside
/// its name, and the table must not depend on the shell that runs the test.
fn help_of(program: &str) -> String {
    let out = Command::new(workspace_binary(program))
        .arg("--help")
        .env_clear()
        .output()
        .unwrap_or_else(|e| panic!("running {program} --help: {e}"));
    assert!(out.status.success(), "{program} --help failed: {out:?}");
    let help = String::from_utf8(out.stdout).expect("--help is UTF-8");
    let parsed = parse_help(&help);
    assert_eq!(
        help.matches("[env: ").count(),
        parsed.iter().filter(|s| s.variable.is_some()).count(),
        "{program} --help names variables the parser missed:\n{help}"
    );
    help
}

/// The options of clap's help text, without `--help` and `--version`. clap prints an option's
/// help on its line after two or more spaces when it fits, else on the following lines, indented
/// more; the help ends with `[env: NAME=value]`, `[default: ...]` and `[possible values: ...]`.
fn parse_help(help: &str) -> Vec<Setting> {
    let mut entries: Vec<(String, String)> = Vec::new(); // (flag part, help text)
    let mut in_options = false;
    for line in help.lines() {
        if line.ends_with(':') && !line.starts_with(' ') {
            in_options = line == "Options:";
            continue;
        }
        if !in_options || line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if indent <= 6 && text.starts_with('-') {
            let (head, rest) = match text.find("  ") {
                Some(i) => (&text[..i], text[i..].trim()),
                None => (text, ""),
            };
            entries.push((head.to_owned(), rest.to_owned()));
        } else if let Some((_, h)) = entries.last_mut() {
            if !h.is_empty() {
                h.push(' ');
            }
            h.push_str(text);
        }
    }

    entries
        .into_iter()
        .filter_map(|(head, text)| {
            let flags: Vec<String> = head
                .split(", ")
                .map(|f| f.split(' ').next().unwrap_or(f).to_owned())
                .collect();
            if flags.iter().any(|f| f == "--help" || f == "--version") {
                return None;
            }
            let (meaning, brackets) = split_brackets(&text);
            let mut setting = Setting {
                variable: None,
                flags,
                default: None,
                meaning,
            };
            for (key, value) in brackets {
                match key.as_str() {
                    "env" => {
                        let name = value.split('=').next().unwrap_or(&value);
                        setting.variable = Some(name.to_owned());
                    }
                    "default" => setting.default = Some(value),
                    _ => {}
                }
            }
            Some(setting)
        })
        .collect()
}

/// Splits clap's trailing `[key: value]` groups off a help text.
fn split_brackets(text: &str) -> (String, Vec<(String, String)>) {
    let mut text = text.trim_end().to_owned();
    let mut groups = Vec::new();
    loop {
        if !text.ends_with(']') {
            break;
        }
        let found = ["[env: ", "[default: ", "[possible values: ", "[aliases: "]
            .iter()
            .filter_map(|m| text.rfind(m).map(|i| (i, *m)))
            .max_by_key(|(i, _)| *i);
        let Some((start, marker)) = found else { break };
        let value = text[start + marker.len()..text.len() - 1].to_owned();
        groups.push((marker[1..marker.len() - 2].to_owned(), value));
        text.truncate(start);
        text = text.trim_end().to_owned();
    }
    groups.reverse();
    (text, groups)
}

// ---------------------------------------------------------------------------------------------
// Generated sections

/// One writer at a time: tests run in parallel threads and may update the same file.
static FILES: Mutex<()> = Mutex::new(());

fn check_section(file: &str, name: &str, rendered: &str) {
    let _guard = FILES.lock().unwrap_or_else(|p| p.into_inner());
    let path = repository().join(file);
    let text = read(&path);
    let start = format!("<!-- generated:{name} -->\n");
    let end = format!("<!-- /generated:{name} -->");
    let (Some(s), Some(e)) = (text.find(&start), text.find(&end)) else {
        panic!("{file} has no `{start}` ... `{end}` section")
    };
    assert!(s < e, "{file}: `{end}` comes before `{start}`");
    let current = &text[s + start.len()..e];
    if current == rendered {
        return;
    }
    if std::env::var("UPDATE_DOCS").is_ok_and(|v| !v.is_empty() && v != "0") {
        let updated = format!("{}{rendered}{}", &text[..s + start.len()], &text[e..]);
        std::fs::write(&path, updated).unwrap_or_else(|e| panic!("writing {file}: {e}"));
        eprintln!("{file}: section `{name}` rewritten from the code");
        return;
    }
    panic!(
        "{file}'s generated:{name} section differs from what the code says.\n\
         Update it with: {HOW_TO_UPDATE}\n\
         (then review and commit the diff). Differences, - in {file}, + from the code:\n{}",
        line_diff(current, rendered)
    );
}

/// The lines only one side has, in order: enough to see what changed in a table.
fn line_diff(old: &str, new: &str) -> String {
    let old_lines: BTreeSet<&str> = old.lines().collect();
    let new_lines: BTreeSet<&str> = new.lines().collect();
    let mut out = String::new();
    for l in old.lines().filter(|l| !new_lines.contains(l)) {
        out.push_str(&format!("- {l}\n"));
    }
    for l in new.lines().filter(|l| !old_lines.contains(l)) {
        out.push_str(&format!("+ {l}\n"));
    }
    if out.is_empty() {
        out.push_str("(the same lines in another order, or whitespace)\n");
    }
    out
}

/// A table cell: `|` escaped everywhere (GitHub splits cells before it reads code spans) and
/// `<` escaped outside code spans, so `<host name>` is shown rather than taken for HTML.
fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for c in text.chars() {
        match c {
            '`' => {
                in_code = !in_code;
                out.push(c);
            }
            '|' => out.push_str("\\|"),
            '<' if !in_code => out.push_str("\\<"),
            _ => out.push(c),
        }
    }
    out
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("system-tests lives in the repository's root")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
