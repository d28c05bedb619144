//! The [`Controller`] shared between the HTTPS server, the commit-confirm timer and the daemon's
//! local socket.
use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use crate::{
    audit::AuditLog,
    backend::Backend,
    controller::Controller,
    error::{OpError, chain},
};

/// A [`Controller`] shared between the HTTPS server, the commit-confirm timer and the daemon's
/// local socket. Calls run on blocking threads, one at a time.
pub struct SharedController<B> {
    inner: Arc<Inner<B>>,
}

struct Inner<B> {
    controller: Mutex<Controller<B>>,
    /// Wakes the commit-confirm timer after any call (the deadline may have changed).
    changed: tokio::sync::Notify,
    audit: Arc<AuditLog>,
}

impl<B> Clone for SharedController<B> {
    fn clone(&self) -> Self {
        SharedController {
            inner: self.inner.clone(),
        }
    }
}

impl<B> std::fmt::Debug for SharedController<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedController").finish_non_exhaustive()
    }
}

impl<B: Backend> SharedController<B> {
    pub fn new(controller: Controller<B>) -> SharedController<B> {
        let audit = controller.audit_log().clone();
        SharedController {
            inner: Arc::new(Inner {
                controller: Mutex::new(controller),
                changed: tokio::sync::Notify::new(),
                audit,
            }),
        }
    }

    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.inner.audit
    }

    /// Runs `f` with the controller on a blocking thread, then wakes the timer.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Controller<B>) -> T + Send + 'static,
    ) -> Result<T, OpError> {
        let r = self.peek(f).await;
        self.inner.changed.notify_one();
        r
    }

    /// From synchronous code outside the async runtime (never from inside a task: it blocks).
    pub fn call_blocking<T>(&self, f: impl FnOnce(&mut Controller<B>) -> T) -> T {
        let r = f(&mut self.lock());
        self.inner.changed.notify_one();
        r
    }

    async fn peek<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Controller<B>) -> T + Send + 'static,
    ) -> Result<T, OpError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = inner
                .controller
                .lock()
                // A panic mid-call leaves the on-disk state consistent (every step is persisted
                // atomically before the next); refusing every later call would lock the admins out.
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut c)
        })
        .await
        .map_err(OpError::Panicked)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Controller<B>> {
        self.inner
            .controller
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reverts unconfirmed applies when their deadline passes. Runs until dropped.
    pub async fn commit_confirm_timer(self) {
        loop {
            let deadline = match self.peek(|c| c.pending_deadline()).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %chain(&e), "commit-confirm timer");
                    None
                }
            };
            let Some(deadline) = deadline else {
                self.inner.changed.notified().await;
                continue;
            };
            let wait = deadline
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                () = tokio::time::sleep(wait) => {
                    if let Err(e) = self.peek(|c| c.expire_due(SystemTime::now())).await {
                        tracing::error!(error = %chain(&e), "commit-confirm revert");
                    }
                }
                () = self.inner.changed.notified() => {}
            }
        }
    }
}
