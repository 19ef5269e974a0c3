use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn webhooks_have_portus_defaults_and_validate_their_fields() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "ci", "url": "example.org"})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let w = r.body;
    assert_eq!(
        w["url"], "http://example.org/",
        "a bare host becomes an http URL"
    );
    assert_eq!(w["request_method"], "GET");
    assert_eq!(w["content_type"], "application/json");
    assert_eq!(w["enabled"], false);
    assert_eq!(w["has_password"], false);
    assert_eq!(w["namespace"], "acme");
    assert_eq!(w["headers"], json!({}));

    for (body, field) in [
        (json!({"name": "x", "url": "ftp://example.org"}), "url"),
        (json!({"name": "x", "url": "http://"}), "url"),
        (json!({"name": "x"}), "url"),
        (json!({"url": "http://example.org"}), "name"),
        (
            json!({"name": "x", "url": "example.org", "request_method": "PUT"}),
            "request_method",
        ),
        (
            json!({"name": "x", "url": "example.org", "content_type": "text/xml"}),
            "content_type",
        ),
        (
            json!({"name": "x", "url": "example.org", "headers": {"Bad Name": "v"}}),
            "headers",
        ),
        (
            json!({"name": "x", "url": "example.org", "headers": {"X-A": "line\nbreak"}}),
            "headers",
        ),
        (
            json!({"name": "x", "url": "example.org", "headers": {"Content-Length": "1"}}),
            "headers",
        ),
        (
            json!({"name": "x", "url": "example.org", "headers": {"X-A": "1", "x-a": "2"}}),
            "headers",
        ),
        (
            json!({"name": "x", "url": "example.org", "enabled": true}),
            "enabled",
        ),
        (
            json!({"name": "x", "url": "example.org", "request_method": 5}),
            "request_method",
        ),
    ] {
        let r = app
            .api("POST", "/namespaces/acme/webhooks", Some(body.clone()))
            .await;
        assert_eq!(r.status, 422, "{body}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{body}");
        assert!(!r.body["error"]["message"].as_str().unwrap().is_empty());
    }

    let dup = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "ci", "url": "example.org"})),
        )
        .await;
    assert_eq!(dup.status, 409);
    let nowhere = app
        .api(
            "POST",
            "/namespaces/nope/webhooks",
            Some(json!({"name": "ci", "url": "example.org"})),
        )
        .await;
    assert_eq!(nowhere.status, 404);
}

#[tokio::test]
async fn passwords_are_write_only_and_patch_changes_only_what_it_names() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({
                "name": "deploy", "url": "https://ci.example.org/hook", "request_method": "post",
                "content_type": "application/x-www-form-urlencoded", "username": "bot",
                "password": "hunter2-hunter2", "headers": {"X-Token": "abc"}
            })),
        )
        .await;
    assert_eq!(r.status, 201);
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(r.body["has_password"], true);
    assert!(r.body.get("password").is_none());
    assert!(!r.body.to_string().contains("hunter2"));
    assert_eq!(r.body["request_method"], "POST");
    assert_eq!(r.body["headers"], json!({"X-Token": "abc"}));

    let path = format!("/namespaces/acme/webhooks/{id}");
    let p = app
        .api(
            "PATCH",
            &path,
            Some(json!({"enabled": true, "url": "ci2.example.org"})),
        )
        .await;
    assert_eq!(p.status, 200);
    assert_eq!(p.body["enabled"], true);
    assert_eq!(p.body["url"], "http://ci2.example.org/");
    assert_eq!(p.body["name"], "deploy", "unnamed fields stay");
    assert_eq!(p.body["username"], "bot");
    assert_eq!(p.body["has_password"], true);

    let p = app
        .api(
            "PATCH",
            &path,
            Some(json!({"password": null, "username": null})),
        )
        .await;
    assert_eq!(p.body["has_password"], false);
    assert_eq!(p.body["username"], json!(null));
    let bad = app
        .api("PATCH", &path, Some(json!({"url": "gopher://x"})))
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.body["error"]["field"], "url");
    assert_eq!(
        app.api("GET", &path, None).await.body["url"],
        "http://ci2.example.org/",
        "a refused PATCH changes nothing"
    );

    let list = app.api("GET", "/namespaces/acme/webhooks", None).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.api("GET", "/namespaces/acme/webhooks/999", None)
            .await
            .status,
        404
    );
    assert_eq!(
        app.api("GET", "/namespaces/acme/webhooks/abc", None)
            .await
            .status,
        404
    );
    assert_eq!(
        app.api("GET", &format!("/namespaces/_global/webhooks/{id}"), None)
            .await
            .status,
        404,
        "ids are scoped to their namespace"
    );

    assert_eq!(app.api("DELETE", &path, None).await.status, 204);
    assert_eq!(app.api("GET", &path, None).await.status, 404);
}

#[tokio::test]
async fn headers_are_set_and_deleted_one_by_one() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "h", "url": "example.org"})),
        )
        .await;
    let base = format!("/namespaces/acme/webhooks/{}", r.body["id"]);
    let put = app
        .api(
            "PUT",
            &format!("{base}/headers/X-Deploy-Key"),
            Some(json!({"value": "k1"})),
        )
        .await;
    assert_eq!(put.status, 201);
    assert_eq!(put.body, json!({"name": "X-Deploy-Key", "value": "k1"}));
    let again = app
        .api(
            "PUT",
            &format!("{base}/headers/x-deploy-key"),
            Some(json!({"value": "k2"})),
        )
        .await;
    assert_eq!(
        again.status, 200,
        "names are case-insensitive: this replaces"
    );
    let w = app.api("GET", &base, None).await.body;
    assert_eq!(w["headers"], json!({"x-deploy-key": "k2"}));

    let bad = app
        .api(
            "PUT",
            &format!("{base}/headers/X-Bad"),
            Some(json!({"value": "a\u{7}b"})),
        )
        .await;
    assert_eq!(bad.status, 422);
    let reserved = app
        .api(
            "PUT",
            &format!("{base}/headers/Host"),
            Some(json!({"value": "x"})),
        )
        .await;
    assert_eq!(reserved.status, 422);

    assert_eq!(
        app.api("DELETE", &format!("{base}/headers/X-DEPLOY-KEY"), None)
            .await
            .status,
        204
    );
    assert_eq!(
        app.api("DELETE", &format!("{base}/headers/X-Deploy-Key"), None)
            .await
            .status,
        404
    );
    assert_eq!(app.api("GET", &base, None).await.body["headers"], json!({}));
}

#[tokio::test]
async fn secrets_are_not_stored_in_plain_text() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "s", "url": "example.org", "username": "user-in-clear-42", "password": "pw-needle-4711", "headers": {"X-Key": "hdr-needle-0815"}})),
        )
        .await;
    assert_eq!(r.status, 201);
    let (what, stored) = stored_bytes(&app).await;
    // The username is not a secret: finding it shows the search sees the webhook's row.
    assert!(
        contains(&stored, b"user-in-clear-42"),
        "the search of {what} ({} bytes) does not see the webhook",
        stored.len()
    );
    for needle in ["pw-needle-4711", "hdr-needle-0815"] {
        let hex: String = needle.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(
            !contains(&stored, needle.as_bytes()) && !contains(&stored, hex.as_bytes()),
            "{needle} is stored in plain text in {what}"
        );
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Everything the app's database holds, and what that was: on SQLite every file of the
/// database (main file and write-ahead log), on PostgreSQL every row of every table as text
/// (binary columns as hex).
async fn stored_bytes(app: &TestApp) -> (String, Vec<u8>) {
    let mut stored = Vec::new();
    let Some(db) = &app.db else {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(app.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("herald.db") {
                stored.extend(std::fs::read(&path).unwrap());
                files.push(name);
            }
        }
        assert!(files.contains(&"herald.db".to_string()), "{files:?}");
        return (files.join(", "), stored);
    };
    let mut conn = db.connect().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(tables.iter().any(|t| t == "webhooks"), "{tables:?}");
    let mut rows = 0;
    for table in &tables {
        let texts: Vec<String> =
            sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM \"{table}\" t"))
                .fetch_all(&mut conn)
                .await
                .unwrap();
        rows += texts.len();
        for text in texts {
            stored.extend(text.into_bytes());
        }
    }
    assert!(rows > 0, "no rows in {tables:?}");
    (format!("{rows} rows of {} tables", tables.len()), stored)
}

/// `n` distinct custom headers.
fn custom_headers(n: usize) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> =
        (0..n).map(|i| (format!("X-H{i}"), json!("v"))).collect();
    serde_json::Value::Object(map)
}

/// One custom header.
fn header(name: &str, value: &str) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert(name.to_string(), json!(value));
    serde_json::Value::Object(map)
}

async fn put_header(app: &TestApp, base: &str, name: &str, value: &str) -> Resp {
    app.api(
        "PUT",
        &format!("{base}/headers/{name}"),
        Some(json!({ "value": value })),
    )
    .await
}

fn assert_refused(r: &Resp, expect: &str) {
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["error"]["field"], "headers", "{:?}", r.body);
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains(expect), "{message}");
    assert!(message.len() < 500, "the message does not echo a huge name");
}

#[tokio::test]
async fn custom_headers_are_limited_in_number_and_size_on_create_and_patch() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let create = |headers: serde_json::Value| {
        app.api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "h", "url": "example.org", "headers": headers})),
        )
    };
    assert_refused(
        &create(custom_headers(51)).await,
        "at most 50 custom headers",
    );
    assert_refused(
        &create(custom_headers(1000)).await,
        "at most 50 custom headers",
    );
    let long_name = format!("X-{}", "n".repeat(255));
    assert_refused(&create(header(&long_name, "v")).await, "at most 256 bytes");
    assert_refused(
        &create(header("X-Big", &"v".repeat(8193))).await,
        "8192 bytes",
    );
    assert_refused(
        &create(header(&"X-Huge-Name".repeat(1000), "v")).await,
        "at most 256 bytes",
    );
    // At the limits, everything is taken.
    let mut at_limits = custom_headers(49);
    at_limits[format!("X-{}", "n".repeat(254))] = json!("v".repeat(8192));
    let r = create(at_limits).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["headers"].as_object().unwrap().len(), 50);

    let hook = format!("/namespaces/acme/webhooks/{}", r.body["id"]);
    let patch =
        |headers: serde_json::Value| app.api("PATCH", &hook, Some(json!({ "headers": headers })));
    assert_refused(
        &patch(custom_headers(51)).await,
        "at most 50 custom headers",
    );
    assert_refused(&patch(header(&long_name, "v")).await, "at most 256 bytes");
    assert_refused(
        &patch(header("X-Big", &"v".repeat(8193))).await,
        "8192 bytes",
    );
    let r = patch(custom_headers(50)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["headers"],
        custom_headers(50),
        "headers replaces all"
    );
}

#[tokio::test]
async fn the_51st_header_cannot_be_put() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "h", "url": "example.org", "headers": custom_headers(50)})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let base = format!("/namespaces/acme/webhooks/{}", r.body["id"]);
    assert_refused(
        &put_header(&app, &base, "X-New", "v").await,
        "at most 50 custom headers",
    );
    // Replacing one of the fifty is not adding one.
    assert_eq!(put_header(&app, &base, "x-h7", "w").await.status, 200);
    assert_refused(
        &put_header(&app, &base, "X-H8", &"v".repeat(8193)).await,
        "8192 bytes",
    );
    assert_refused(
        &put_header(&app, &base, &format!("X-{}", "n".repeat(255)), "v").await,
        "at most 256 bytes",
    );
    let headers = app.api("GET", &base, None).await.body["headers"].clone();
    assert_eq!(headers.as_object().unwrap().len(), 50);
    assert_eq!(headers["x-h7"], "w");

    let gone = app
        .api("DELETE", &format!("{base}/headers/X-H0"), None)
        .await;
    assert_eq!(gone.status, 204);
    assert_eq!(put_header(&app, &base, "X-New", "v").await.status, 201);
    assert_refused(
        &put_header(&app, &base, "X-Newer", "v").await,
        "at most 50 custom headers",
    );
}

#[tokio::test]
async fn every_problem_of_a_webhook_is_reported_at_once() {
    let app = spawn_app().await;
    app.create_namespace("acme").await;
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "", "url": "ftp://example.org", "request_method": "PUT", "enabled": true})),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let error = &r.body["error"];
    let problems = error["problems"].as_array().expect("problems is a list");
    let fields: Vec<&str> = problems
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["enabled", "name", "url", "request_method"],
        "{error}"
    );
    assert!(problems
        .iter()
        .all(|p| !p["message"].as_str().unwrap().is_empty()));
    // The first problem stays where clients read it before `problems` existed.
    assert_eq!(error["code"], "invalid");
    assert_eq!(error["field"], problems[0]["field"]);
    assert_eq!(error["message"], problems[0]["message"]);

    // A patch reports all of its problems too.
    let id = app
        .enabled_webhook("acme", json!({"name": "ok", "url": "example.org"}))
        .await;
    let r = app
        .api(
            "PATCH",
            &format!("/namespaces/acme/webhooks/{id}"),
            Some(json!({"url": "ftp://example.org", "content_type": "text/nope"})),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let fields: Vec<&str> = r.body["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["url", "content_type"], "{:?}", r.body);

    // One problem is a list of one; other errors have no list.
    let r = app
        .api(
            "POST",
            "/namespaces/acme/webhooks",
            Some(json!({"name": "x", "url": "ftp://example.org"})),
        )
        .await;
    assert_eq!(
        r.body["error"]["problems"],
        json!([{"field": "url", "message": r.body["error"]["message"]}])
    );
    let missing = app.api("GET", "/namespaces/nope/webhooks", None).await;
    assert_eq!(missing.status, 404);
    assert!(missing.body["error"].get("problems").is_none());

    let doc = app.call("GET", "/api/v1/openapi.json", None, None).await;
    let detail = &doc.body["components"]["schemas"]["ErrorDetail"]["properties"];
    assert!(detail["problems"].is_object(), "{detail}");
    assert!(
        doc.body["components"]["schemas"]["Problem"].is_object(),
        "the problem schema is in the document"
    );
}
