//! The engine as the management API sees it ([`gateway_api::Backend`]).
//!
//! The engine is shared between the server loop (tick, drop events, SIGHUP, shutdown) and the
//! API's controller, which calls it from blocking threads one call at a time. It lives in an
//! `Option` so shutdown can take it out for its final flush; a call after that is refused.
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use gateway_api::{Applied, Backend, BackendError, InForce, Validation};

use crate::{
    control::{ErrorKind, Response},
    engine::{ApplyError, Engine},
};

/// The engine, shared by the server loop and the API.
pub type SharedEngine = Arc<Mutex<Option<Engine>>>;

pub fn share(engine: Engine) -> SharedEngine {
    Arc::new(Mutex::new(Some(engine)))
}

/// Locks the engine. A panic in an earlier call leaves the data path as the kernel has it; refusing
/// every later call would stop enforcement updates, so the lock is taken anyway.
pub fn lock(engine: &SharedEngine) -> MutexGuard<'_, Option<Engine>> {
    engine
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("gatewayd is shutting down")]
    ShuttingDown,
    #[error("{message}")]
    Report { message: String },
    #[error("could not encode the engine's report")]
    Encode(#[source] serde_json::Error),
}

/// [`Backend`] over the shared engine.
#[derive(Clone)]
pub struct EngineBackend {
    engine: SharedEngine,
}

impl EngineBackend {
    pub fn new(engine: SharedEngine) -> EngineBackend {
        EngineBackend { engine }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Engine) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        match lock(&self.engine).as_mut() {
            Some(e) => f(e),
            None => Err(BackendError::Failed(Box::new(EngineError::ShuttingDown))),
        }
    }

    /// The files `policy` names (feeds), relative to its directory: what a bundle of it carries.
    pub fn named_files(&self, policy: &Path) -> Result<Vec<PathBuf>, BackendError> {
        self.with(|e| {
            let dry = e
                .dry_run(policy)
                .map_err(|err| BackendError::Refused(Box::new(err)))?;
            Ok(dry.files)
        })
    }
}

/// A status or stats answer as JSON; an error answer as the backend error it stands for.
fn report(response: Response) -> Result<serde_json::Value, BackendError> {
    match response {
        Response::Error(e) => {
            let err = Box::new(EngineError::Report { message: e.message });
            Err(match e.kind {
                ErrorKind::Internal => BackendError::Failed(err),
                ErrorKind::Policy | ErrorKind::Request => BackendError::Refused(err),
            })
        }
        Response::Status(s) => to_json(&s),
        Response::Stats(s) => to_json(&s),
        Response::Applied(a) => to_json(&a),
        Response::Learnt(l) => to_json(&l),
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<serde_json::Value, BackendError> {
    serde_json::to_value(value).map_err(|e| BackendError::Failed(Box::new(EngineError::Encode(e))))
}

impl Backend for EngineBackend {
    fn validate(&self, policy: &Path) -> Result<Validation, BackendError> {
        self.with(|e| {
            let dry = e
                .dry_run(policy)
                .map_err(|err| BackendError::Refused(Box::new(err)))?;
            Ok(Validation {
                image_hash: dry.image_hash.clone(),
                entries: dry.entries as u64,
                diff: dry.diff.clone(),
                warnings: dry.warnings.clone(),
                details: to_json(&dry)?,
            })
        })
    }

    fn apply(&mut self, policy: &Path) -> Result<Applied, BackendError> {
        self.with(|e| match e.apply_policy(policy, "api") {
            Ok(r) => Ok(Applied {
                image_hash: r.image_hash.clone(),
                generation: r.generation,
                unchanged: r.unchanged,
                diff: r.diff.clone(),
                warnings: r.warnings.clone(),
                details: to_json(&r)?,
            }),
            Err(err @ (ApplyError::Policy(_) | ApplyError::NotAbsolute { .. })) => {
                Err(BackendError::Refused(Box::new(err)))
            }
            Err(
                err
                @ (ApplyError::Dataplane(_) | ApplyError::Nft { .. } | ApplyError::Split { .. }),
            ) => Err(BackendError::Failed(Box::new(err))),
        })
    }

    fn in_force(&self) -> Result<Option<InForce>, BackendError> {
        self.with(|e| {
            let (policy, files) = e.policy_in_force();
            Ok(Some(InForce { policy, files }))
        })
    }

    fn status(&self) -> Result<serde_json::Value, BackendError> {
        self.with(|e| report(e.status_report()))
    }

    fn counters(&self) -> Result<serde_json::Value, BackendError> {
        self.with(|e| report(e.stats_report()))
    }
}

#[cfg(test)]
mod tests {
    /// The API's controller moves the backend between blocking threads.
    #[test]
    fn engine_backend_is_send() {
        fn send<T: Send + 'static>() {}
        send::<super::EngineBackend>();
    }
}
