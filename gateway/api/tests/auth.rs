//! Who gets in: mutual TLS against the admin CA, roles from the certificate, every refusal audited.
#![allow(clippy::unwrap_used)] // reason: tests
mod common;

use common::{Gateway, Options, policy};
use gateway_api::{ApplyOptions, ClientError, RollbackTarget};

/// A client refused at the TLS layer: no HTTP status, and nothing reached the backend.
fn assert_tls_refused(r: Result<impl std::fmt::Debug, ClientError>) {
    match r {
        Err(ClientError::Handshake { .. } | ClientError::Http { .. }) => {}
        other => panic!("expected a refused TLS connection, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_certificate_is_refused_at_the_handshake() {
    let gw = Gateway::start(Options::default()).await;
    assert_tls_refused(gw.client_without_certificate().status().await);
    assert_tls_refused(
        gw.client_without_certificate()
            .apply(&policy("p", ""), &ApplyOptions::default())
            .await,
    );
    assert!(gw.probe.calls().is_empty(), "{:?}", gw.probe.calls());
    let lines = gw
        .wait_for_audit("two refused handshakes", |l| {
            l.iter().filter(|l| l["action"] == "tls.handshake").count() == 2
        })
        .await;
    for l in lines.iter().filter(|l| l["action"] == "tls.handshake") {
        assert_eq!(l["result"], "denied");
        assert!(l.get("who").is_none(), "{l}");
        assert!(l["from"].as_str().unwrap().starts_with("127.0.0.1:"), "{l}");
        assert!(
            l["message"]
                .as_str()
                .unwrap()
                .contains("peer sent no certificates"),
            "{l}"
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused() {
    let gw = Gateway::start(Options::default()).await;
    let foreign = gw.client(&gw.pki.foreign_admin);
    assert_tls_refused(foreign.status().await);
    assert_tls_refused(
        foreign
            .apply(&policy("p", ""), &ApplyOptions::default())
            .await,
    );
    assert!(gw.probe.calls().is_empty());
    let lines = gw
        .wait_for_audit("refused handshakes", |l| {
            l.iter().filter(|l| l["action"] == "tls.handshake").count() == 2
        })
        .await;
    let refused = lines
        .iter()
        .find(|l| l["action"] == "tls.handshake")
        .unwrap();
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("UnknownIssuer"),
        "{refused}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_is_refused() {
    let gw = Gateway::start(Options::default()).await;
    assert_tls_refused(gw.client(&gw.pki.expired_admin).status().await);
    let lines = gw
        .wait_for_audit("a refused handshake", |l| {
            l.iter().any(|l| l["action"] == "tls.handshake")
        })
        .await;
    let refused = lines
        .iter()
        .find(|l| l["action"] == "tls.handshake")
        .unwrap();
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("certificate expired"),
        "{refused}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_refuses_a_server_it_does_not_trust() {
    let gw = Gateway::start(Options::default()).await;
    // The admin's client trusting the wrong CA for the box.
    let client = gateway_api::ApiClient::new(
        &gw.addr.to_string(),
        "localhost",
        &gw.pki.foreign_ca,
        &gw.pki.admin,
    )
    .unwrap();
    match client.status().await {
        Err(ClientError::Handshake { source, .. }) => {
            assert!(source.to_string().contains("UnknownIssuer"), "{source}")
        }
        other => panic!("expected the server certificate to be refused, got {other:?}"),
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soc_reads_but_every_write_is_forbidden() {
    let gw = Gateway::start(Options::default()).await;
    let admin = gw.client(&gw.pki.admin);
    admin
        .apply(&policy("v2", ""), &ApplyOptions::default())
        .await
        .unwrap();
    let soc = gw.client(&gw.pki.soc);

    let status = soc.status().await.unwrap();
    assert_eq!(status.current.unwrap().generation, 2);
    assert_eq!(soc.history().await.unwrap().entries.len(), 2);
    assert_eq!(soc.counters().await.unwrap()["counters"][0]["packets"], 42);
    assert!(!soc.audit(10).await.unwrap().is_empty());

    let calls_before = gw.probe.calls();
    let forbidden = |r: Result<(), ClientError>, what: &str| match r {
        Err(ClientError::Api {
            status: 403,
            kind,
            message,
        }) => {
            assert_eq!(kind, "forbidden");
            assert!(
                message.contains("needs the admin role"),
                "{what}: {message}"
            );
        }
        Ok(()) => panic!("{what}: the soc role was allowed"),
        Err(e) => panic!("{what}: expected 403, got {e}"),
    };
    forbidden(
        soc.apply(&policy("soc-push", ""), &ApplyOptions::default())
            .await
            .map(|_| ()),
        "apply",
    );
    forbidden(
        soc.validate(&policy("soc-push", "")).await.map(|_| ()),
        "validate",
    );
    forbidden(soc.confirm(None).await.map(|_| ()), "confirm");
    forbidden(
        soc.rollback(&RollbackTarget::Generation(1), None)
            .await
            .map(|_| ()),
        "rollback",
    );
    forbidden(soc.export(&mut Vec::new()).await.map(|_| ()), "export");
    assert_eq!(
        gw.probe.calls(),
        calls_before,
        "a refused write reached the backend"
    );
    assert_eq!(
        gw.client(&gw.pki.admin)
            .history()
            .await
            .unwrap()
            .entries
            .len(),
        2
    );

    let denied: Vec<_> = gw
        .audit()
        .into_iter()
        .filter(|l| l["result"] == "denied")
        .collect();
    let actions: Vec<&str> = denied
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "policy.apply",
            "policy.validate",
            "policy.confirm",
            "policy.rollback",
            "history.export"
        ]
    );
    for l in &denied {
        assert_eq!(l["who"]["cn"], "soc-analyst");
        assert_eq!(l["who"]["role"], "soc");
        assert_eq!(l["status"], 403);
        assert!(l["who"]["serial"].as_str().unwrap().contains(':'), "{l}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_without_a_role_reads_nothing() {
    let gw = Gateway::start(Options::default()).await;
    let client = gw.client(&gw.pki.no_role);
    match client.status().await {
        Err(ClientError::Api {
            status: 403,
            message,
            ..
        }) => {
            assert!(message.contains("carries no role"), "{message}");
            assert!(message.contains("CN=carol"), "{message}");
        }
        other => panic!("expected 403, got {other:?}"),
    }
    let line = gw.audit_of("status.read").pop().unwrap();
    assert_eq!(line["result"], "denied");
    assert_eq!(line["who"]["cn"], "carol");
    assert!(line["who"].get("role").is_none(), "{line}");
    gw.stop().await;
}
