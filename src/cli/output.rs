//! What the command prints: kubectl-style tables, or a `List` in JSON or YAML.

use super::{Format, Shown};
use crate::api::Conditions;
use crate::executor::Report;
use crate::planner::{Desired, Kind, Op};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The targeted objects with the statuses they reached, in manifest order.
pub fn objects(
    desired: &Desired,
    manifests: &BTreeMap<(Kind, String, String), Value>,
    targets: &[(Kind, String, String)],
) -> Vec<Shown> {
    let statuses: BTreeMap<(Kind, String, String), Value> = crate::intents::statuses(desired)
        .into_iter()
        .map(|(kind, meta, status)| ((kind, meta.namespace.clone(), meta.name.clone()), status))
        .collect();
    targets
        .iter()
        .map(|key| {
            let mut object = manifests[key].clone();
            let status = statuses.get(key).cloned().unwrap_or(Value::Null);
            let conditions: Conditions = status
                .get("conditions")
                .cloned()
                .and_then(|c| serde_json::from_value(c).ok())
                .unwrap_or_default();
            object["status"] = status;
            Shown {
                key: key.clone(),
                object,
                conditions,
            }
        })
        .collect()
}

/// `plan` only: a resource whose planned change only the service can accept or refuse (R03 on
/// Partner Center) is not promised Ready: its Ready condition reads `Unknown`,
/// `DecidedByService`, with why.
pub fn mark_undecided(shown: &mut [Shown], report: &Report) {
    for e in report.executed.iter().filter(|e| e.refused.is_none()) {
        let Some(why) = &e.action.decided_by_service else {
            continue;
        };
        let key = (
            e.action.kind,
            e.action.namespace.clone(),
            e.action.name.clone(),
        );
        let Some(s) = shown.iter_mut().find(|s| s.key == key) else {
            continue;
        };
        let Some(mut ready) = s.conditions.get("Ready").cloned() else {
            continue;
        };
        if ready.status != "True" {
            continue;
        }
        ready.status = "Unknown".into();
        ready.reason = "DecidedByService".into();
        ready.message = why.clone();
        s.conditions.set(ready);
        s.object["status"]["conditions"] =
            serde_json::to_value(&s.conditions).expect("conditions serialize");
    }
}

pub fn render(
    format: Format,
    with_actions: bool,
    shown: &[Shown],
    report: &Report,
    deleted: &[(Kind, String, String)],
    deleting: bool,
) -> String {
    let actions: Vec<Value> = report
        .executed
        .iter()
        .map(|e| {
            let mut v = serde_json::to_value(&e.action).expect("actions serialize");
            if let Some(b) = &e.refused {
                v["refused"] = json!({"reason": b.reason.as_str(), "message": b.message});
            }
            v
        })
        .collect();
    let mut list = json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": shown.iter().map(|s| s.object.clone()).collect::<Vec<_>>(),
    });
    // `delete`: the resources whose deletion policy is carried out (gone, as from a cluster).
    if deleting {
        list["deleted"] = deleted
            .iter()
            .map(|(kind, namespace, name)| {
                json!({"kind": kind.as_str(), "namespace": namespace, "name": name})
            })
            .collect();
    }
    // What plan would do, or what apply and delete did.
    list["actions"] = Value::Array(actions);
    match format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&list).expect("json")),
        Format::Yaml => serde_saphyr::to_string(&list).expect("yaml"),
        Format::Table => table(with_actions, shown, report, deleted, deleting),
    }
}

/// The tables: what was done, one table per kind, then what blocks.
fn table(
    planning: bool,
    shown: &[Shown],
    report: &Report,
    deleted: &[(Kind, String, String)],
    deleting: bool,
) -> String {
    let waiting = shown.iter().filter(|s| !s.ready()).count();
    let mut out = actions_section(planning, report, waiting);
    for (kind, title) in [
        (Kind::Subscription, "Subscriptions"),
        (Kind::LicenseAssignment, "License assignments"),
        (Kind::AddOn, "Add-ons"),
    ] {
        let rows: Vec<&Shown> = shown.iter().filter(|s| s.key.0 == kind).collect();
        if !rows.is_empty() {
            out += &format!("{title}:\n");
            out += &kind_table(kind, &rows, deleted, deleting);
        }
    }
    let blocked = blocked_section(shown);
    if !blocked.is_empty() {
        out += &blocked;
        out.push('\n');
    }
    let gone: &[(Kind, String, String)] = if deleting { deleted } else { &[] };
    out += &verdict(planning, shown, report, gone);
    out
}

/// One line: how the resources stand and what the seat changes cost.
fn verdict(
    planning: bool,
    shown: &[Shown],
    report: &Report,
    gone: &[(Kind, String, String)],
) -> String {
    let here: Vec<&Shown> = shown.iter().filter(|s| !gone.contains(&s.key)).collect();
    let blocked_ones: Vec<&&Shown> = here
        .iter()
        .filter(|s| !s.ready() && s.conditions.is_true("Blocked"))
        .collect();
    let blocked = blocked_ones.len();
    // Why, by reason: a LicenseAssignment Blocked `InsufficientSeats` counts its users as
    // PENDING (they wait for seats a person must provide); the reason ties the two together.
    let mut reasons: Vec<String> = blocked_ones
        .iter()
        .filter_map(|s| s.conditions.get("Blocked").map(|c| c.reason.clone()))
        .collect();
    reasons.sort();
    reasons.dedup();
    let blocked_why = if reasons.is_empty() {
        String::new()
    } else {
        format!(" ({})", reasons.join(", "))
    };
    let ready = here.iter().filter(|s| s.ready()).count();
    let pending = here.len() - ready - blocked;
    let (mut now, mut monthly, mut unpriced) = (0.0, 0.0, 0);
    for e in report.executed.iter().filter(|e| e.refused.is_none()) {
        if let Op::SetSeats { cost, .. }
        | Op::SetAddOnQuantity { cost, .. }
        | Op::Buy { cost, .. }
        | Op::BuyAddOn { cost, .. } = &e.action.op
        {
            match (cost.charged_now, cost.monthly_change()) {
                (Some(n), Some(m)) => {
                    now += n;
                    monthly += m;
                }
                _ => unpriced += 1,
            }
        }
    }
    let deleted = match shown.len() - here.len() {
        0 => String::new(),
        n => format!("{n} deleted, "),
    };
    let mut line = format!(
        "{}: {deleted}{ready} Ready, {blocked} Blocked{blocked_why}, {pending} Pending of {}",
        if planning { "Plan" } else { "Result" },
        crate::domain::counted(shown.len(), "resource", "resources")
    );
    if now != 0.0 || monthly != 0.0 {
        use crate::domain::billing::money;
        let (now_word, now) = if now < 0.0 {
            ("credited", -now)
        } else {
            ("charged", now)
        };
        // The change in what is paid each month, never a total (the actions give those).
        let (more, monthly) = if monthly < 0.0 {
            ("less", -monthly)
        } else {
            ("more", monthly)
        };
        line += &format!(
            "; money: {} {now_word} now, {} a month {more}{}",
            money(now),
            money(monthly),
            if planning { " (if applied)" } else { "" }
        );
    }
    if unpriced > 0 {
        line += &format!(
            "; {} at a price not known here (the service decides)",
            crate::domain::counted(unpriced, "seat change", "seat changes")
        );
    }
    line + ".\n"
}

fn actions_section(planning: bool, report: &Report, waiting: usize) -> String {
    let mut out = String::new();
    let verb = if planning { "Would do" } else { "Done" };
    if report.executed.is_empty() {
        let _ = if waiting == 0 {
            writeln!(
                out,
                "{verb}: nothing; the licensing service already matches.\n"
            )
        } else {
            let waiting = crate::domain::counted(waiting, "resource waits", "resources wait");
            writeln!(
                out,
                "{verb}: nothing now; {waiting} for what is shown below.\n"
            )
        };
        return out;
    }
    let who = |e: &crate::executor::Executed| {
        format!("{} {}/{}", e.action.kind, e.action.namespace, e.action.name)
    };
    let (done, refused): (Vec<_>, Vec<_>) =
        report.executed.iter().partition(|e| e.refused.is_none());
    if !done.is_empty() {
        let _ = writeln!(out, "{verb}:");
    }
    for e in &done {
        let what = crate::wording::describe(&e.action.op);
        let _ = if planning && e.action.decided_by_service.is_some() {
            writeln!(
                out,
                "  {}: {what} (Partner Center decides on arrival: a credit check may hold it)",
                who(e)
            )
        } else {
            writeln!(out, "  {}: {what}", who(e))
        };
    }
    // What the service said no to was not done: it has its own heading.
    if !refused.is_empty() {
        if !done.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(out, "Refused by the licensing service:");
    }
    for e in &refused {
        if let Some(b) = &e.refused {
            let what = crate::wording::describe(&e.action.op);
            let _ = writeln!(out, "  {}: {what}: {} ({})", who(e), b.message, b.reason);
        }
    }
    out.push('\n');
    out
}

/// A kind's table columns, headers and JSONPaths: the CRD's printer columns, the very ones
/// `kubectl get` shows, without Age (a local run has no creation time).
fn columns(kind: Kind) -> Vec<(String, String)> {
    use kube::CustomResourceExt;
    let crd = crate::for_kind!(kind, K => K::crd());
    crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .filter(|c| c.type_ != "date")
        .map(|c| (c.name.to_uppercase(), c.json_path.clone()))
        .collect()
}

/// One cell: the value at a printer column's JSONPath (`.a.b`, or a list filtered as
/// `.a[?(@.type=="Ready")].b`), `-` when there is none. A Subscription that autoscales shows
/// the seats it aims for, not its floor.
fn cell(kind: Kind, header: &str, object: &Value, path: &str) -> String {
    let path = if kind == Kind::Subscription
        && header == "SEATS"
        && object.pointer("/status/autoscale").is_some()
    {
        ".status.seats.desired"
    } else {
        path
    };
    // Steps split at dots outside brackets (a filter holds `@.type`).
    let mut steps = vec![];
    let (mut depth, mut from) = (0, 0);
    let path = path.trim_start_matches('.');
    for (i, c) in path.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            '.' if depth == 0 => {
                steps.push(&path[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    steps.push(&path[from..]);
    let mut at = Some(object);
    for step in steps {
        let (name, filter) = match step.split_once("[?(@.") {
            Some((name, rest)) => (name, rest.strip_suffix(")]")),
            None => (step, None),
        };
        at = at.and_then(|v| v.get(name));
        if let Some((field, wanted)) = filter.and_then(|f| f.split_once("==")) {
            let wanted = wanted.trim_matches('"');
            at = at.and_then(Value::as_array).and_then(|items| {
                items
                    .iter()
                    .find(|i| i.get(field).and_then(Value::as_str) == Some(wanted))
            });
        }
    }
    match at {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

fn kind_table(
    kind: Kind,
    rows: &[&Shown],
    deleted: &[(Kind, String, String)],
    deleting: bool,
) -> String {
    let columns = columns(kind);
    let mut header = vec!["NAMESPACE".to_string(), "NAME".to_string()];
    header.extend(columns.iter().map(|(h, _)| h.clone()));
    let mut grid: Vec<Vec<String>> = vec![header.clone()];
    for r in rows {
        let mut row = vec![r.key.1.clone(), r.key.2.clone()];
        row.extend(
            columns
                .iter()
                .map(|(h, path)| cell(kind, h, &r.object, path)),
        );
        // Gone: its deletion policy is carried out; neither ready nor blocked any more.
        if deleting && deleted.contains(&r.key) {
            row[header.len() - 2] = "Deleted".into();
            row[header.len() - 1] = "-".into();
        }
        grid.push(row);
    }
    aligned(&grid)
}

/// Rows in columns, as kubectl prints them (the first row is the header), and a blank line.
pub fn aligned(grid: &[Vec<String>]) -> String {
    let columns = grid.first().map_or(0, |h| h.len());
    let widths: Vec<usize> = (0..columns)
        .map(|c| grid.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in grid {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("   ").trim_end());
    }
    out.push('\n');
    out
}

fn blocked_section(shown: &[Shown]) -> String {
    let problems: Vec<String> = shown
        .iter()
        .filter_map(|r| {
            let b = r.conditions.get("Blocked").filter(|c| c.status == "True")?;
            Some(format!(
                "  {} {}/{}: {}: {}",
                r.key.0, r.key.1, r.key.2, b.reason, b.message
            ))
        })
        .collect();
    if problems.is_empty() {
        return String::new();
    }
    format!("Blocked:\n{}\n", problems.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_show_the_columns_kubectl_get_shows() {
        let headers = |k| -> Vec<String> { columns(k).into_iter().map(|(h, _)| h).collect() };
        assert_eq!(
            headers(Kind::Subscription),
            [
                "PRODUCT",
                "SEATS",
                "PURCHASED",
                "ASSIGNED",
                "READY",
                "BLOCKED"
            ]
        );
        assert_eq!(
            headers(Kind::LicenseAssignment),
            [
                "USERS",
                "ASSIGNED",
                "PENDING",
                "USERS BLOCKED",
                "READY",
                "BLOCKED"
            ]
        );
        assert_eq!(
            headers(Kind::AddOn),
            ["PRODUCT", "TYPE", "QUANTITY", "READY", "BLOCKED"]
        );
    }

    #[test]
    fn a_cell_reads_its_printer_columns_path_and_the_autoscaled_target() {
        let object = json!({
            "spec": {"product": "SPE_E3", "seats": 10},
            "status": {
                "seats": {"purchased": 12, "desired": 14},
                "conditions": [
                    {"type": "Blocked", "status": "False"},
                    {"type": "Ready", "status": "True"},
                ],
            },
        });
        let ready = ".status.conditions[?(@.type==\"Ready\")].status";
        assert_eq!(cell(Kind::Subscription, "READY", &object, ready), "True");
        assert_eq!(
            cell(
                Kind::Subscription,
                "PURCHASED",
                &object,
                ".status.seats.purchased"
            ),
            "12"
        );
        assert_eq!(
            cell(
                Kind::Subscription,
                "BLOCKED",
                &object,
                ".status.blockedReason"
            ),
            "-"
        );
        assert_eq!(
            cell(Kind::Subscription, "SEATS", &object, ".spec.seats"),
            "10"
        );
        let mut autoscaled = object.clone();
        autoscaled["status"]["autoscale"] = json!({});
        assert_eq!(
            cell(Kind::Subscription, "SEATS", &autoscaled, ".spec.seats"),
            "14"
        );
    }
}
