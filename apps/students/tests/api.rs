//! The students API contract, on SQLite and PostgreSQL, driven through the router (no socket).
//! Every write must leave exactly one event in the outbox; a failed write must leave none.

#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use kafkube_outbox::Notifier;
use kafkube_store::Db;
use kafkube_students::api::{AppState, router};
use kafkube_testkit::{Backend, TestDb, backend_tests};
use serde_json::{Value, json};
use tower::ServiceExt;

struct Api {
    db: Db,
    _test_db: TestDb,
}

impl Api {
    async fn new(backend: Backend) -> Self {
        let t = TestDb::new(backend).await;
        for m in kafkube_students::main_migrations() {
            t.db.migrate(&m).await.unwrap();
        }
        Self {
            db: t.db.clone(),
            _test_db: t,
        }
    }

    async fn call(&self, method: Method, uri: &str, body: Option<&str>) -> (StatusCode, Value) {
        let (status, _, bytes) = self.raw(method, uri, body).await;
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, v)
    }

    /// The status, headers and body bytes of a call.
    async fn raw(&self, method: Method, uri: &str, body: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let app = router(AppState {
            db: self.db.clone(),
            topic: "mahasiswa_events".into(),
            relay: Notifier::default(),
        });
        let mut req = Request::builder().method(method).uri(uri);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let res = app
            .oneshot(
                req.body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
                    .unwrap(),
            )
            .await
            .unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        (status, headers, bytes.to_vec())
    }

    async fn post(&self, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, "/api/mahasiswa", Some(&body.to_string())).await
    }

    async fn outbox(&self) -> i64 {
        kafkube_outbox::pending(&self.db).await.unwrap()
    }
}

async fn create_returns_the_stored_row(backend: Backend) {
    let api = Api::new(backend).await;
    let (status, row) = api
        .post(json!({"nim": "2201", "nama": "Ani", "jurusan": "Informatika"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for key in ["id", "nim", "nama", "jurusan", "created_at", "updated_at"] {
        assert!(row.get(key).is_some(), "missing {key} in {row}");
    }
    assert_eq!((row["nim"].as_str(), row["nama"].as_str()), (Some("2201"), Some("Ani")));
    assert_eq!(api.outbox().await, 1);

    let (status, got) = api
        .call(Method::GET, &format!("/api/mahasiswa/{}", row["id"]), None)
        .await;
    assert_eq!((status, got), (StatusCode::OK, row));
}

async fn bad_input_is_400_and_publishes_nothing(backend: Backend) {
    let api = Api::new(backend).await;
    for (body, needle) in [
        (json!({"nama": "Ani"}), "nim"),
        (json!({"nim": "1"}), "nama"),
        (json!({"nim": "", "nama": "Ani"}), "nim"),
        (json!({"nim": 1.5, "nama": "Ani"}), "nim"),
        (json!({"nim": true, "nama": "Ani"}), "nim"),
        (json!({"nim": "1", "nama": 5}), "nama"),
        (json!(["not", "an", "object"]), "invalid"),
        // Text PostgreSQL cannot store: the same 400 on every backend.
        (
            json!({"nim": "1", "nama": "A\u{0}ni"}),
            "`nama` must not contain the NUL character",
        ),
        (
            json!({"nim": "1\u{0}", "nama": "Ani"}),
            "`nim` must not contain the NUL character",
        ),
        (
            json!({"nim": "1", "nama": "Ani", "jurusan": "\u{0}"}),
            "`jurusan` must not contain the NUL",
        ),
    ] {
        let (status, err) = api.post(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(err["error"].as_str().unwrap().contains(needle), "{body} → {err}");
    }
    let (status, err) = api.call(Method::POST, "/api/mahasiswa", Some("{\"nim\": ")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["error"].as_str().unwrap().starts_with("invalid JSON"), "{err}");
    // A field given twice is refused, not last-wins (the rule of every app).
    let twice = r#"{"nim": "1", "nama": "Ani", "nim": "2"}"#;
    let (status, err) = api.call(Method::POST, "/api/mahasiswa", Some(twice)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err["error"].as_str().unwrap().contains("duplicate field `nim`"),
        "{err}"
    );
    let (status, err) = api.call(Method::GET, "/api/mahasiswa/1%00", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(api.outbox().await, 0);
}

async fn duplicate_nim_is_409_and_its_transaction_publishes_nothing(backend: Backend) {
    let api = Api::new(backend).await;
    assert_eq!(api.post(json!({"nim": "7", "nama": "A"})).await.0, StatusCode::CREATED);
    let (status, err) = api.post(json!({"nim": "7", "nama": "B"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(err["error"].as_str().unwrap().contains('7'));
    // Only the first student's event: the failed insert rolled its outbox row back too.
    assert_eq!(api.outbox().await, 1);
    // Renaming another student onto a taken nim is a conflict as well.
    let (_, other) = api.post(json!({"nim": "8", "nama": "C"})).await;
    let (status, _) = api
        .call(
            Method::PUT,
            &format!("/api/mahasiswa/{}", other["id"]),
            Some(r#"{"nim": "7"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(api.outbox().await, 2);
}

async fn list_is_newest_first_and_paginated(backend: Backend) {
    let api = Api::new(backend).await;
    for i in 0..5 {
        api.post(json!({"nim": format!("n{i}"), "nama": format!("S{i}")})).await;
    }
    let (status, headers, body) = api.raw(Method::GET, "/api/mahasiswa?limit=2", None).await;
    assert_eq!(status, StatusCode::OK);
    let page1: Value = serde_json::from_slice(&body).unwrap();
    let nims = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["nim"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    // A plain array, as seed 000 answers; the page is described in the headers.
    assert_eq!(nims(&page1), ["n4", "n3"]);
    assert_eq!(headers["x-total-count"], "5");
    assert_eq!(
        headers["link"],
        "</api/mahasiswa?page=1&limit=2>; rel=\"first\", </api/mahasiswa?page=2&limit=2>; rel=\"next\", \
         </api/mahasiswa?page=3&limit=2>; rel=\"last\""
    );
    let (_, headers, body) = api.raw(Method::GET, "/api/mahasiswa?limit=2&page=3", None).await;
    assert_eq!(nims(&serde_json::from_slice(&body).unwrap()), ["n0"]);
    assert_eq!(
        headers["link"],
        "</api/mahasiswa?page=1&limit=2>; rel=\"first\", </api/mahasiswa?page=2&limit=2>; rel=\"prev\", \
         </api/mahasiswa?page=3&limit=2>; rel=\"last\""
    );
    let (_, all) = api.call(Method::GET, "/api/mahasiswa", None).await;
    assert_eq!(nims(&all), ["n4", "n3", "n2", "n1", "n0"]);
    // A page far past the last is empty; one whose offset would overflow is refused (it was a 500).
    let (status, far) = api
        .call(Method::GET, "/api/mahasiswa?page=1000000000&limit=100", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(far, json!([]));
    for bad in [
        "?limit=0",
        "?limit=1000",
        "?page=0",
        "?page=x",
        "?page=946500985073880064",
    ] {
        let (status, err) = api.call(Method::GET, &format!("/api/mahasiswa{bad}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(err["error"].is_string());
    }
}

async fn update_and_delete_by_id(backend: Backend) {
    let api = Api::new(backend).await;
    let (_, row) = api.post(json!({"nim": "1", "nama": "Ani", "jurusan": "TI"})).await;
    let uri = format!("/api/mahasiswa/{}", row["id"]);

    let (status, updated) = api.call(Method::PUT, &uri, Some(r#"{"jurusan": "SI"}"#)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (updated["jurusan"].as_str(), updated["nama"].as_str()),
        (Some("SI"), Some("Ani"))
    );
    assert_eq!(updated["created_at"], row["created_at"]);
    assert_ne!(updated["updated_at"], row["updated_at"]);

    assert_eq!(api.call(Method::PUT, &uri, Some("{}")).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(api.call(Method::DELETE, &uri, None).await.0, StatusCode::OK);
    assert_eq!(api.call(Method::GET, &uri, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(api.call(Method::DELETE, &uri, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        api.call(Method::PUT, &uri, Some(r#"{"nama": "X"}"#)).await.0,
        StatusCode::NOT_FOUND
    );
    // created, updated, deleted: three events; the failed calls none.
    assert_eq!(api.outbox().await, 3);

    let (status, err) = api.call(Method::GET, "/api/mahasiswa/abc", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["error"].as_str().unwrap().contains("path"));
}

/// Seed 000's clients and probes, unchanged: `GET /` answers 200 with its greeting, a numeric
/// `nim` is stored as its digits, and fields Kafkube does not keep are ignored.
async fn the_seeds_clients_work_unchanged(backend: Backend) {
    let api = Api::new(backend).await;
    let (status, _, body) = api.raw(Method::GET, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(String::from_utf8(body).unwrap(), kafkube_students::api::GREETING);
    let (status, row) = api
        .post(json!({"nim": 2201001, "nama": "Ani", "jurusan": "TI", "kelas": "A", "hobi": ["x"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{row}");
    assert_eq!(row["nim"], "2201001");
    assert!(row.get("kelas").is_none());
    assert_eq!(
        api.post(json!({"nim": 2201001, "nama": "Bo"})).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(api.outbox().await, 1);
}

backend_tests!(
    the_seeds_clients_work_unchanged,
    create_returns_the_stored_row,
    bad_input_is_400_and_publishes_nothing,
    duplicate_nim_is_409_and_its_transaction_publishes_nothing,
    list_is_newest_first_and_paginated,
    update_and_delete_by_id,
);
