use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn namespaces_can_be_created_listed_shown_and_deleted() {
    let app = spawn_app().await;
    let list = app.api("GET", "/namespaces", None).await;
    assert_eq!(list.status, 200);
    assert_eq!(
        list.body["items"][0]["name"], "_global",
        "the global namespace always exists"
    );

    let r = app
        .api(
            "POST",
            "/namespaces",
            Some(json!({"name": "acme", "description": "Acme Corp"})),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["name"], "acme");
    assert_eq!(r.body["description"], "Acme Corp");
    assert_eq!(r.body["webhook_count"], 0);

    let dup = app
        .api("POST", "/namespaces", Some(json!({"name": "acme"})))
        .await;
    assert_eq!(dup.status, 409);
    assert_eq!(dup.body["error"]["code"], "conflict");

    let bad = app
        .api("POST", "/namespaces", Some(json!({"name": "Acme Corp"})))
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.body["error"]["field"], "name");

    let missing = app.api("POST", "/namespaces", Some(json!({}))).await;
    assert_eq!(missing.status, 422);
    assert_eq!(missing.body["error"]["field"], "name");

    assert_eq!(app.api("GET", "/namespaces/acme", None).await.status, 200);
    assert_eq!(app.api("GET", "/namespaces/nope", None).await.status, 404);
    assert_eq!(
        app.api("GET", "/namespaces/NOT..valid", None).await.status,
        404
    );

    let global = app.api("DELETE", "/namespaces/_global", None).await;
    assert_eq!(global.status, 409);
    assert_eq!(
        app.api("DELETE", "/namespaces/acme", None).await.status,
        204
    );
    assert_eq!(app.api("GET", "/namespaces/acme", None).await.status, 404);
    assert_eq!(
        app.api("DELETE", "/namespaces/acme", None).await.status,
        404
    );
}

#[tokio::test]
async fn the_api_needs_a_valid_token_and_lists_only_what_the_caller_may_see() {
    let app = spawn_app().await;
    let none = app.call("GET", "/api/v1/namespaces", None, None).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.headers["www-authenticate"], "Bearer");
    let bogus = app
        .call("GET", "/api/v1/namespaces", None, Some("hrld_nope"))
        .await;
    assert_eq!(bogus.status, 401);

    let hash = herald::auth::hash_password("password1").unwrap();
    let user = app
        .store
        .create_user("bob", &hash, None, false)
        .await
        .unwrap();
    let token = herald::auth::new_api_token();
    app.store
        .create_token(user.id, "", &herald::auth::token_hash(&token))
        .await
        .unwrap();
    let r = app
        .call("GET", "/api/v1/namespaces", None, Some(&token))
        .await;
    assert_eq!(r.status, 200);
    let names: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bob"], "a user sees only their personal namespace");
    let events = app.call("GET", "/api/v1/events", None, Some(&token)).await;
    assert_eq!(events.status, 403);
    assert_eq!(events.body["error"]["code"], "forbidden");
}

#[tokio::test]
async fn bodies_that_are_not_json_get_clear_errors() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/api/v1/namespaces"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = app
        .client
        .post(app.url("/api/v1/namespaces"))
        .bearer_auth(&app.token)
        .header("content-type", "text/plain")
        .body("name=acme")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    let unknown = app
        .api(
            "POST",
            "/namespaces",
            Some(json!({"name": "a", "colour": "red"})),
        )
        .await;
    assert_eq!(unknown.status, 422);
    assert!(unknown.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("colour"));
    let route = app.api("GET", "/nothing-here", None).await;
    assert_eq!(route.status, 404);
    assert_eq!(route.body["error"]["code"], "not_found");
}

#[tokio::test]
async fn healthz_answers() {
    let app = spawn_app().await;
    let r = app.call("GET", "/healthz", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ok");
}
