//! What the log says about the Kubernetes API server: one WARN when it cannot be reached, one
//! INFO when it is back, and the failures in between at debug (an outage is not a storm of one
//! error per request per object). Expected races (the object or its namespace going away, a
//! write that lost to a newer one) are debug, never WARN. Every kube error is told in one plain
//! line: kube's own text of an API error ends with a Rust debug dump of the whole Status.

use kube::runtime::watcher;
use std::sync::atomic::{AtomicBool, Ordering};

/// A kube error in one plain line: `403 Forbidden: <message>` for an API answer, the root
/// cause for a connection failure.
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => status_line(s.code, &s.reason, &s.message),
        _ if unreachable(e) => format!("the API server cannot be reached: {}", root_cause(e)),
        other => other.to_string(),
    }
}

fn status_line(code: u16, reason: &str, message: &str) -> String {
    match (code, reason.is_empty()) {
        (0, _) => message.to_string(),
        (_, true) => format!("{code}: {message}"),
        (_, false) => format!("{code} {reason}: {message}"),
    }
}

/// The innermost error's text ("Connection refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// No answer at all: the connection failed, broke, or timed out.
pub fn unreachable(e: &kube::Error) -> bool {
    match e {
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        // Answered by a proxy or an API server that is starting or stopping.
        kube::Error::Api(s) => s.code == 503 || s.code == 502,
        _ => false,
    }
}

/// Harmless and expected: the object (or its namespace) is gone or going, or a newer write
/// won (the next reconcile reads it).
pub fn expected_race(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            s.code == 404
                || s.code == 409
                || s.code == 410
                || (s.code == 403 && s.message.contains("being terminated"))
        }
        _ => false,
    }
}

/// Whether the API server answered last time, shared by everything that calls it.
#[derive(Debug, Default)]
pub struct ApiHealth {
    down: AtomicBool,
}

impl ApiHealth {
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// `what` (e.g. "writing status") failed with `e`: logged as the policy above says.
    pub fn failed(&self, what: &str, e: &kube::Error) {
        let error = describe(e);
        if unreachable(e) {
            if !self.down.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    %error,
                    "the Kubernetes API server cannot be reached ({what}): work waits and is retried; a line will say when it is back"
                );
            } else {
                tracing::debug!(%error, "{what}");
            }
        } else if expected_race(e) || self.is_down() {
            tracing::debug!(%error, "{what}");
        } else {
            tracing::warn!(%error, "{what}");
        }
    }

    /// A watch failed: the same policy, through the kube error behind it.
    pub fn watch_failed(&self, what: &str, e: &watcher::Error) {
        match e {
            watcher::Error::InitialListFailed(k)
            | watcher::Error::WatchStartFailed(k)
            | watcher::Error::WatchFailed(k) => self.failed(what, k),
            // 410 Gone after compaction: the watcher lists again by itself.
            watcher::Error::WatchError(s) if s.code == 410 => {
                tracing::debug!(error = %status_line(s.code, &s.reason, &s.message), "{what}")
            }
            watcher::Error::WatchError(s) => {
                tracing::warn!(error = %status_line(s.code, &s.reason, &s.message), "{what}")
            }
            other => tracing::warn!(error = %other, "{what}"),
        }
    }

    /// The API server answered: if it had not, one line says it is back.
    pub fn reached(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("the Kubernetes API server is reachable again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            reason: reason.into(),
            message: message.into(),
            ..Default::default()
        }))
    }

    #[test]
    fn kube_errors_read_as_one_plain_line_without_debug_structures() {
        let e = api(403, "Forbidden", "secrets is forbidden");
        assert_eq!(describe(&e), "403 Forbidden: secrets is forbidden");
        assert!(!describe(&e).contains("Status {"));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = kube::Error::Service(Box::new(io));
        assert_eq!(
            describe(&e),
            "the API server cannot be reached: connection refused"
        );
    }

    #[test]
    fn a_terminating_namespace_or_a_gone_object_is_an_expected_race() {
        let terminating = api(
            403,
            "Forbidden",
            "unable to create new content in namespace team-a because it is being terminated",
        );
        assert!(expected_race(&terminating));
        assert!(expected_race(&api(404, "NotFound", "not found")));
        assert!(expected_race(&api(
            409,
            "Conflict",
            "the object has been modified"
        )));
        assert!(!expected_race(&api(
            403,
            "Forbidden",
            "secrets is forbidden"
        )));
    }

    #[test]
    fn an_outage_is_down_once_and_back_once() {
        let h = ApiHealth::default();
        let refused = || {
            kube::Error::Service(Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            )))
        };
        assert!(!h.is_down());
        h.failed("writing status", &refused());
        assert!(h.is_down());
        h.failed("writing status", &refused());
        assert!(h.is_down());
        h.reached();
        assert!(!h.is_down());
    }
}
