//! The endpoints and who may call them. One table: the router, the role check, the audit action
//! names and API.md all follow it.
//!
//! | endpoint                      | roles      | audit action      |
//! |-------------------------------|------------|-------------------|
//! | GET  /v1/status               | admin, soc | status.read       |
//! | GET  /v1/counters             | admin, soc | counters.read     |
//! | GET  /v1/history              | admin, soc | history.read      |
//! | GET  /v1/audit                | admin, soc | audit.read        |
//! | GET  /v1/history/export       | admin      | history.export    |
//! | POST /v1/policy/validate      | admin      | policy.validate   |
//! | POST /v1/policy/apply         | admin      | policy.apply      |
//! | POST /v1/policy/confirm       | admin      | policy.confirm    |
//! | POST /v1/policy/rollback      | admin      | policy.rollback   |
use hyper::Method;

use crate::identity::Role;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Status,
    Counters,
    History,
    Audit,
    Export,
    Validate,
    Apply,
    Confirm,
    Rollback,
}

const ROUTES: [(Route, &str, Method); 9] = [
    (Route::Status, "/v1/status", Method::GET),
    (Route::Counters, "/v1/counters", Method::GET),
    (Route::History, "/v1/history", Method::GET),
    (Route::Audit, "/v1/audit", Method::GET),
    (Route::Export, "/v1/history/export", Method::GET),
    (Route::Validate, "/v1/policy/validate", Method::POST),
    (Route::Apply, "/v1/policy/apply", Method::POST),
    (Route::Confirm, "/v1/policy/confirm", Method::POST),
    (Route::Rollback, "/v1/policy/rollback", Method::POST),
];

/// A request for no endpoint.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no endpoint {path}")]
    NotFound { path: String },
    #[error("{path} takes {allowed}, not {method}")]
    Method {
        path: String,
        method: String,
        allowed: &'static str,
    },
}

impl RouteError {
    pub fn status(&self) -> u16 {
        match self {
            RouteError::NotFound { .. } => 404,
            RouteError::Method { .. } => 405,
        }
    }
}

impl Route {
    pub fn parse(method: &Method, path: &str) -> Result<Route, RouteError> {
        let Some((route, _, expected)) = ROUTES.iter().find(|(_, p, _)| *p == path) else {
            return Err(RouteError::NotFound {
                path: path.to_owned(),
            });
        };
        if method != expected {
            return Err(RouteError::Method {
                path: path.to_owned(),
                method: method.to_string(),
                allowed: expected.as_str(),
            });
        }
        Ok(*route)
    }

    pub fn path(self) -> &'static str {
        ROUTES
            .iter()
            .find(|(r, _, _)| *r == self)
            .map_or("", |(_, p, _)| p)
    }

    /// The audit log's name for the action.
    pub fn action(self) -> &'static str {
        match self {
            Route::Status => "status.read",
            Route::Counters => "counters.read",
            Route::History => "history.read",
            Route::Audit => "audit.read",
            Route::Export => "history.export",
            Route::Validate => "policy.validate",
            Route::Apply => "policy.apply",
            Route::Confirm => "policy.confirm",
            Route::Rollback => "policy.rollback",
        }
    }

    /// The admin may do everything; the SOC only reads what it monitors (status, counters,
    /// history, audit) — no policy in or out, no backup export.
    pub fn allowed(self, role: Role) -> bool {
        match role {
            Role::Admin => true,
            Role::Soc => matches!(
                self,
                Route::Status | Route::Counters | Route::History | Route::Audit
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soc_reads_and_admin_writes() {
        for (route, path, method) in &ROUTES {
            assert_eq!(Route::parse(method, path), Ok(*route));
            assert_eq!(route.path(), *path);
            assert!(route.allowed(Role::Admin));
            assert_eq!(
                route.allowed(Role::Soc),
                *method == Method::GET && *route != Route::Export
            );
        }
        assert_eq!(
            Route::parse(&Method::GET, "/v1/policy/apply").map_err(|e| e.to_string()),
            Err("/v1/policy/apply takes POST, not GET".to_owned())
        );
        assert!(matches!(
            Route::parse(&Method::GET, "/v1/status/"),
            Err(RouteError::NotFound { .. })
        ));
    }
}
