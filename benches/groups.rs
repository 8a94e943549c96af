//! Reading a tenant with groups, measured: the Microsoft backend's `snapshot` (subscribedSkus,
//! subscriptions, every user with its licence states, every group with its licences, each
//! group's members) against the emulator over loopback, in-process.
//!
//! The tenant: `n` users (1k/10k/100k) in `n / 100` groups of 100 members each (1,000 groups at
//! 100k), every user in one group and every tenth user in a second ("all-staff"-like overlap
//! with the next group); one group in ten holds Microsoft 365 E3 (Entra ID P1 included), so a
//! tenth of the users inherit it. Graph's identity read budget for a tenant of more than 500
//! users is 8,000 resource units per 10 s per app ("Identity and access service limits"):
//! GET users costs 2, GET groups/{id}/members 3, one less with `$select`; the emulator adds up
//! what each read costs.
//!
//! Figures: `group_read_ms`, the snapshot's wall time; `group_read_requests`, the HTTP requests
//! it took (tokens included); `group_read_units`, the resource units they cost;
//! `group_read_budget_ms`, the least time the budget allows for those units (units / 8,000 ×
//! 10 s: 0 while they fit in one window); `group_read_groups`, `group_read_members`, what the
//! snapshot holds.

mod common;

use common::{figure, sizes};
use seatkeeper::backend::Backend;
use seatkeeper::backend::embedded::{Embedded, TenantFile};
use seatkeeper::backend::microsoft::credential::Credential;
use seatkeeper::backend::microsoft::{Config, Endpoints, Microsoft};
use seatkeeper::clock::FixedClock;
use seatkeeper::emulator::{Emulator, Faults, Options as EmulatorOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ORG: &str = "contoso.com";
/// Graph's identity read budget per app and tenant (over 500 users): units per 10 s.
const READ_BUDGET: f64 = 8_000.0;

fn tenant(n: usize) -> TenantFile {
    let mut y = format!("organizations:\n- domain: {ORG}\n  paymentMethodOnFile: true\n  users:\n");
    for i in 0..n {
        y += &format!("  - {{upn: u{i}@{ORG}, usageLocation: NL}}\n");
    }
    y += &format!(
        "  subscriptions:\n  - {{id: sub-e3, product: SPE_E3, seats: {}}}\n  groups:\n",
        n / 5
    );
    let groups = n / 100;
    for g in 0..groups {
        let mut members: Vec<String> = (g * 100..(g + 1) * 100)
            .map(|i| format!("u{i}@{ORG}"))
            .collect();
        // Every tenth user of the next group is a member here too.
        let next = (g + 1) % groups;
        members.extend(
            (next * 100..(next + 1) * 100)
                .step_by(10)
                .map(|i| format!("u{i}@{ORG}")),
        );
        let licences = if g % 10 == 0 {
            ", licenses: [{product: SPE_E3}]"
        } else {
            ""
        };
        y += &format!(
            "  - {{name: team-{g:04}, members: [{}]{licences}}}\n",
            members.join(", ")
        );
    }
    TenantFile::parse(&y, "bench-tenant.yaml").unwrap()
}

async fn run_size(size: &str, n: usize) {
    let clock = Arc::new(FixedClock::new("2026-11-21T09:00:00Z".parse().unwrap()));
    let emulator = Arc::new(Emulator::new(
        Embedded::new(tenant(n), None, clock.clone()),
        EmulatorOptions {
            client_id: Some("app".into()),
            client_secret: Some("s3cret".into()),
            token_lifetime: 3600,
            faults: Faults::default(),
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let root = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let served = emulator.clone();
    let server = tokio::spawn(async move {
        seatkeeper::emulator::serve(listener, served, rx)
            .await
            .unwrap()
    });
    let backend = Microsoft::new(Config {
        organization: ORG.into(),
        tenant_id: ORG.into(),
        endpoints: Endpoints::at(&root),
        client_id: "app".into(),
        credential: Credential::Secret("s3cret".into()),
        partner_center_customer: None,
        timeout: Duration::from_secs(60),
        write_budget: None,
        app_budget: None,
        partner_pause: None,
    })
    .unwrap();
    let started = Instant::now();
    let snapshot = backend.snapshot(ORG).await.unwrap();
    let wall = started.elapsed();
    let org = snapshot.organization.unwrap();
    let members: usize = org.groups.iter().map(|g| g.members.len()).sum();
    let inherited = org
        .users
        .iter()
        .filter(|u| u.licenses.iter().any(|l| l.by_group))
        .count();
    assert_eq!(org.groups.len(), n / 100, "every group read");
    assert_eq!(
        inherited,
        n / 10 + n / 100,
        "a tenth inherit E3, with the overlap"
    );
    let (requests, _, _, _) = emulator.fault_counts();
    let units = emulator.read_units();
    figure(
        size,
        "group_read_ms",
        format!("{:.0}", wall.as_secs_f64() * 1000.0),
        "ms",
    );
    figure(size, "group_read_requests", requests, "requests");
    figure(size, "group_read_units", units, "units");
    figure(
        size,
        "group_read_budget_ms",
        format!("{:.0}", ((units as f64 / READ_BUDGET).floor() * 10_000.0)),
        "ms",
    );
    figure(size, "group_read_groups", org.groups.len(), "groups");
    figure(size, "group_read_members", members, "members");
    let _ = stop.send(true);
    let _ = server.await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for (size, users) in sizes("10k,100k") {
        rt.block_on(run_size(&size, users));
    }
}
