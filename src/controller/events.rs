//! Events: one for every change made in the licensing service, a Warning for every refusal and
//! every new Blocked reason.

use crate::api::API_VERSION;
use crate::planner::{ObjectRef, Op};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};

pub fn reference(r: &ObjectRef, uid: Option<&String>) -> ObjectReference {
    ObjectReference {
        api_version: Some(API_VERSION.into()),
        kind: Some(r.kind.as_str().to_string()),
        namespace: Some(r.namespace.clone()),
        name: Some(r.name.clone()),
        uid: uid.cloned(),
        ..Default::default()
    }
}

pub fn changed(op: &Op) -> Event {
    Event {
        type_: EventType::Normal,
        reason: changed_reason(op).into(),
        note: Some(truncate(&crate::wording::describe(op))),
        action: "Reconcile".into(),
        secondary: None,
    }
}

pub fn warning(reason: &str, message: &str) -> Event {
    Event {
        type_: EventType::Warning,
        reason: reason.to_string(),
        note: Some(truncate(message)),
        action: "Reconcile".into(),
        secondary: None,
    }
}

pub async fn publish(recorder: &Recorder, event: &Event, reference: &ObjectReference) {
    if let Err(e) = recorder.publish(event, reference).await {
        let error = super::apihealth::describe(&e);
        // An outage is told once elsewhere; a namespace going away takes its Events along.
        if super::apihealth::unreachable(&e) || super::apihealth::expected_race(&e) {
            tracing::debug!(%error, "cannot record an event");
        } else {
            tracing::warn!(%error, "cannot record an event");
        }
    }
}

/// The reason of the Event recorded for a change made in the licensing service.
fn changed_reason(op: &Op) -> &'static str {
    match op {
        Op::Buy { .. } => "Purchased",
        Op::ConvertTrial { .. } => "TrialConverted",
        Op::SetSeats { .. } => "SeatsChanged",
        Op::SetRecurringBilling { .. } => "RecurringBillingChanged",
        Op::Cancel { .. } => "Canceled",
        Op::BuyAddOn { .. } => "AddOnPurchased",
        Op::SetAddOnQuantity { .. } => "AddOnQuantityChanged",
        Op::AssignLicenses { .. } => "LicensesChanged",
        Op::AssignGroupLicences { .. } => "GroupLicensesChanged",
    }
}

/// Event notes are limited in size.
fn truncate(s: &str) -> String {
    if s.len() <= 1000 {
        return s.to_string();
    }
    let mut end = 1000;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
