//! The public REST API: authentication, validation, conflicts, bad input,
//! secrets at rest, and the OpenAPI contract. Each test runs on its own
//! fresh database (SQLite, or PostgreSQL with FM_TEST_BACKEND=postgres).

mod common;

use common::TestApp;
use reqwest::{Method, StatusCode};
use sea_orm::EntityTrait;
use serde_json::{Value, json};

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, error_type: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["errorType"], error_type, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

// ------------------------------------------------------------ authentication

#[tokio::test]
async fn requests_without_a_key_get_401_json() {
    let t = TestApp::new().await;
    let r = t
        .api
        .http
        .get(t.api.url("/tenants/main/instances"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("www-authenticate").is_some());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errorType"], "Unauthorized");
    t.stop().await;
}

#[tokio::test]
async fn a_wrong_secret_or_unknown_key_gets_401() {
    let t = TestApp::new().await;
    for (id, secret) in [
        (t.api.key.0.as_str(), "wrong"),
        ("key-unknown", t.api.key.1.as_str()),
        ("../x", "y"),
    ] {
        let r = t
            .api
            .http
            .get(t.api.url("/tenants/main/images"))
            .basic_auth(id, Some(secret))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{id}");
    }
    let r = t
        .api
        .http
        .get(t.api.url("/tenants/main/images"))
        .header("authorization", "Basic !!!")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    t.stop().await;
}

#[tokio::test]
async fn every_documented_endpoint_is_routed_and_requires_a_key() {
    let t = TestApp::new().await;
    let doc: Value = serde_json::from_str(&fleet_manager::api::openapi::document()).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{tenantId}", "main")
            .replace("{accountId}", "ca-x")
            .replace("{networkId}", "vn-x")
            .replace("{templateId}", "ist-x")
            .replace("{instanceId}", "inst-x")
            .replace("{jobId}", "op-x")
            .replace("{snapshotId}", "snap-x");
        for method in item.as_object().unwrap().keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = t
                .api
                .http
                .request(m.clone(), t.api.url(&concrete))
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
            // With a key, the documented route exists (whatever the ids).
            let (s, b) = t.api.call(m, &concrete, Some(json!({}))).await;
            assert_ne!(
                b["message"], "no such path in the API",
                "{method} {path} is documented but not routed"
            );
            assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} endpoints documented");
    // Not even unknown paths or the API description leak without a key.
    for p in ["/nope", "/openapi.json"] {
        let r = t.api.http.get(t.api.url(p)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{p}");
    }
    t.stop().await;
}

#[tokio::test]
async fn api_key_secrets_are_stored_hashed() {
    let t = TestApp::new().await;
    let keys = t.app.api_key_list().await.unwrap();
    assert_eq!(keys.len(), 1);
    let rows = fleet_manager::store::identity::api_key_list(t.app.store.conn())
        .await
        .unwrap();
    assert!(!rows[0].secret_hash.contains(&t.api.key.1));
    assert_eq!(rows[0].secret_hash.len(), 64);
    t.stop().await;
}

// ------------------------------------------------------------ OpenAPI

#[tokio::test]
async fn served_openapi_document_matches_the_checked_in_copy() {
    let t = TestApp::new().await;
    let (s, served) = t.api.get("/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    if std::env::var("UPDATE_OPENAPI").is_ok() {
        std::fs::write(&path, fleet_manager::api::openapi::document()).unwrap();
    }
    let checked_in: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        served, checked_in,
        "fleet-manager/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test -p fleet-manager --test api served_openapi`"
    );
    t.stop().await;
}

/// True when `schema` says nothing of its fields: a bare `object` (or no
/// type at all) without properties, additionalProperties, a `$ref` or a
/// composition; arrays are judged by their items.
fn is_untyped(schema: &Value) -> bool {
    if schema.get("$ref").is_some() {
        return false;
    }
    if ["allOf", "oneOf", "anyOf"]
        .iter()
        .any(|k| schema.get(*k).is_some())
    {
        return false;
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if types.contains(&"array") {
        return schema.get("items").is_none_or(is_untyped);
    }
    if types.is_empty() || types.contains(&"object") {
        return schema
            .get("properties")
            .is_none_or(|p| p.as_object().is_none_or(|p| p.is_empty()))
            && schema
                .get("additionalProperties")
                .is_none_or(|a| a == &json!(true));
    }
    false
}

#[tokio::test]
async fn every_documented_response_has_a_typed_schema() {
    let t = TestApp::new().await;
    let (s, doc) = t.api.get("/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    let mut untyped = Vec::new();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (code, resp) in op["responses"].as_object().unwrap() {
                for (media, content) in resp["content"].as_object().into_iter().flatten() {
                    checked += 1;
                    if content.get("schema").is_none_or(is_untyped) {
                        untyped.push(format!(
                            "{method} {path} {code} {media}: {}",
                            content["schema"]
                        ));
                    }
                }
            }
        }
    }
    assert!(checked >= 100, "only {checked} responses documented");
    assert!(
        untyped.is_empty(),
        "responses without a typed schema:\n{}",
        untyped.join("\n")
    );
    // The check itself: a bare object, an array of them, an empty schema.
    for bad in [
        json!({"type": "object"}),
        json!({"type": "array", "items": {"type": "object"}}),
        json!({}),
    ] {
        assert!(is_untyped(&bad), "{bad}");
    }
    t.stop().await;
}

// ------------------------------------------------------------ bootstrap

#[tokio::test]
async fn tenant_main_and_two_images_exist_after_the_first_start() {
    let t = TestApp::new().await;
    let (s, images) = t.api.get("/tenants/main/images").await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&str> = images
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert!(ids.len() >= 2, "{ids:?}");
    assert!(
        ids.iter()
            .all(|i| i.starts_with("dss-") && i.ends_with("-default"))
    );
    let (s, tags) = t.api.get("/tenants/main/cloud-tags").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(tags["msg"], "{}");
    t.stop().await;
}

#[tokio::test]
async fn an_unknown_tenant_is_404() {
    let t = TestApp::new().await;
    for p in [
        "/tenants/acme/instances",
        "/tenants/acme/instances/inst-x",
        "/tenants/acme/cloud-tags",
    ] {
        let (s, b) = t.api.get(p).await;
        assert_error(s, &b, StatusCode::NOT_FOUND, "NotFound");
        assert!(b["message"].as_str().unwrap().contains("tenant"), "{b}");
    }
    t.stop().await;
}

// ------------------------------------------------------------ bad input

#[tokio::test]
async fn malformed_json_wrong_types_unknown_enums_and_missing_fields_are_400() {
    let t = TestApp::new().await;
    let tpl = t.api.create_template().await;
    let net = t.api.create_network().await;
    let base = json!({"label": "n", "instanceSettingsTemplateId": tpl, "virtualNetworkId": net, "imageId": "dss-14.2.0-default"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let cases = [
        (with("dataVolumeSizeGB", json!("big")), "dataVolumeSizeGB"),
        (with("dataVolumeSizeGB", json!(-5)), "dataVolumeSizeGB"),
        (with("dssNodeType", json!("spaceship")), "dssNodeType"),
        (with("cloudTags", json!(["a"])), "cloudTags"),
        (with("label", json!("")), "label"),
        (with("imageId", json!("dss-0.0.1-default")), "imageId"),
        (
            with("instanceSettingsTemplateId", json!("ist-missing")),
            "instanceSettingsTemplateId",
        ),
        (
            with("virtualNetworkId", json!("../../etc")),
            "virtual network",
        ),
        (json!({"label": "n"}), "instanceSettingsTemplateId"),
        (json!([1, 2]), "invalid"),
    ];
    for (body, needle) in cases {
        let (s, b) = t.api.post("/tenants/main/instances", body.clone()).await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, "InvalidInput");
        assert!(
            b["message"].as_str().unwrap().contains(needle),
            "{body} -> {b}"
        );
    }
    let r = t
        .api
        .http
        .post(t.api.url("/tenants/main/instances"))
        .basic_auth(&t.api.key.0, Some(&t.api.key.1))
        .body("{\"label\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let b: Value = r.json().await.unwrap();
    assert!(
        b["message"].as_str().unwrap().contains("malformed JSON"),
        "{b}"
    );
    // Nothing was half-written.
    let (_, list) = t.api.get("/tenants/main/instances").await;
    assert_eq!(list, json!([]));
    t.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_413_and_non_json_bodies_are_415() {
    let t = TestApp::new().await;
    let big = json!({"label": "x".repeat(2 << 20)});
    let (s, b) = t
        .api
        .post("/tenants/main/instance-settings-templates", big)
        .await;
    assert_error(s, &b, StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge");
    let r = t
        .api
        .http
        .post(t.api.url("/tenants/main/instance-settings-templates"))
        .basic_auth(&t.api.key.0, Some(&t.api.key.1))
        .header("content-type", "text/plain")
        .body("{\"label\": \"t\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["errorType"], "UnsupportedMediaType");
    let (_, list) = t.api.get("/tenants/main/instance-settings-templates").await;
    assert_eq!(list, json!([]));
    t.stop().await;
}

#[tokio::test]
async fn ids_with_path_characters_are_400_and_unknown_ids_are_404() {
    let t = TestApp::new().await;
    for p in [
        "/tenants/main/instances/..%2F..%2Fetc",
        "/tenants/main/instances/a%00b",
        "/tenants/main/futures/a%2Fb",
        "/tenants/main/cloud-accounts/%2E%2E%2Fx",
    ] {
        let (s, b) = t.api.get(p).await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, "InvalidInput");
    }
    // A segment that isn't UTF-8 is refused by the path extractor, which
    // names the parameter.
    for (p, name) in [
        ("/tenants/main/instances/inst-x/snapshots/%FF", "snapshotId"),
        ("/tenants/main/instances/%FF/backups/bk-x", "instanceId"),
        ("/tenants/%FF/futures/op-x", "tenantId"),
    ] {
        let (s, b) = t.api.get(p).await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, "InvalidInput");
        let m = b["message"].as_str().unwrap();
        assert!(
            m.starts_with("invalid path: ") && m.contains(name),
            "{p}: {b}"
        );
    }
    for p in [
        "/tenants/main/instances/inst-nope",
        "/tenants/main/virtual-networks/vn-nope",
        "/tenants/main/instance-settings-templates/ist-nope",
        "/tenants/main/cloud-accounts/ca-nope",
        "/tenants/main/futures/op-nope",
    ] {
        let (s, b) = t.api.get(p).await;
        assert_error(s, &b, StatusCode::NOT_FOUND, "NotFound");
    }
    let (s, b) = t.api.get("/tenants/main/nothing-here").await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "NotFound");
    let (s, b) = t
        .api
        .call(Method::PATCH, "/tenants/main/instances", None)
        .await;
    assert_error(s, &b, StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed");
    t.stop().await;
}

#[tokio::test]
async fn setup_actions_are_validated_per_type() {
    let t = TestApp::new().await;
    let bad = [
        json!({"type": "ADD_AUTHORIZED_KEY", "params": {"sshKey": "not a key"}}),
        json!({"type": "RUN_ANSIBLE_TASKS", "params": {"stage": "later", "ansibleTasks": "- x"}}),
        json!({"type": "INSTALL_JDBC_DRIVER", "params": {"url": "gopher://x", "dbType": "mysql"}}),
        json!({"type": "ADD_ENV_VARIABLES", "params": {"variables": [{"key": "A B", "value": "x"}]}}),
        json!({"type": "NOT_A_TYPE"}),
    ];
    for a in bad {
        let (s, b) = t
            .api
            .post(
                "/tenants/main/instance-settings-templates",
                json!({"label": "t", "setupActions": [a]}),
            )
            .await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, "InvalidInput");
        assert!(
            b["message"].as_str().unwrap().contains("setupActions"),
            "{b}"
        );
    }
    let good = json!({"label": "t", "setupActions": [
        {"type": "ADD_AUTHORIZED_KEY", "params": {"sshKey": "ssh-ed25519 AAAAC3Nza me@host"}},
        {"type": "ADD_ENV_VARIABLES", "params": {"variables": [{"key": "JAVA_OPTS", "value": "-Xmx2g"}]}},
        {"type": "SETUP_K8S_AND_SPARK", "params": {}, "enabled": false}
    ]});
    let (s, b) = t
        .api
        .post("/tenants/main/instance-settings-templates", good)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["setupActions"][2]["enabled"], false);
    t.stop().await;
}

// ------------------------------------------------------------ paging

/// GET `path`: the status, the JSON body and the `Next-Page-Token` header.
async fn get_page(t: &TestApp, path: &str) -> (StatusCode, Value, Option<String>) {
    let r = t
        .api
        .http
        .get(t.api.url(path))
        .basic_auth(&t.api.key.0, Some(&t.api.key.1))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let next = r
        .headers()
        .get("next-page-token")
        .map(|v| v.to_str().unwrap().to_string());
    (status, r.json().await.unwrap(), next)
}

/// Follows `Next-Page-Token` from `first` (a path with `limit`) to the last
/// page; returns the ids in the order read and the length of each page.
async fn read_all_pages(t: &TestApp, first: &str, id_field: &str) -> (Vec<String>, Vec<usize>) {
    let (mut ids, mut sizes) = (vec![], vec![]);
    let mut path = first.to_string();
    loop {
        let (s, body, next) = get_page(t, &path).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let items = body.as_array().expect("a page is a JSON array");
        sizes.push(items.len());
        ids.extend(
            items
                .iter()
                .map(|i| i[id_field].as_str().unwrap().to_string()),
        );
        match next {
            Some(token) => path = format!("{first}&pageToken={token}"),
            None => return (ids, sizes),
        }
        assert!(sizes.len() < 50, "paging does not end");
    }
}

fn ids_of(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| i[field].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn lists_answer_everything_without_paging_parameters_and_page_with_them() {
    let t = TestApp::new().await;
    let tpl = t.api.create_template().await;
    let net = t.api.create_network().await;
    for _ in 0..4 {
        t.api.create_template().await;
        t.api.create_network().await;
        t.api.create_instance(&tpl, &net).await;
        let (s, a) = t
            .api
            .post("/tenants/main/cloud-accounts", json!({"label": "a"}))
            .await;
        assert_eq!(s, StatusCode::OK, "{a}");
    }
    for list in [
        "instance-settings-templates",
        "virtual-networks",
        "instances",
        "cloud-accounts",
        "images",
    ] {
        // Without paging parameters: the whole array, no token, as the
        // public client reads it.
        let (s, all, next) = get_page(&t, &format!("/tenants/main/{list}")).await;
        assert_eq!(s, StatusCode::OK, "{all}");
        assert_eq!(next, None, "{list}");
        let want = ids_of(&all, "id");
        assert!(want.len() >= 2, "{list}: {all}");
        // Pages of two, in the same order, each item once.
        let (ids, sizes) = read_all_pages(&t, &format!("/tenants/main/{list}?limit=2"), "id").await;
        assert_eq!(ids, want, "{list}");
        assert!(sizes.iter().all(|n| *n <= 2), "{list}: {sizes:?}");
        assert_eq!(sizes.len(), want.len().div_ceil(2), "{list}: {sizes:?}");
        // A page as long as the list has no next page.
        let (_, page, next) =
            get_page(&t, &format!("/tenants/main/{list}?limit={}", want.len())).await;
        assert_eq!(ids_of(&page, "id"), want, "{list}");
        assert_eq!(next, None, "{list}");
    }
    // Instances page as their stored documents, whole.
    let (_, all, _) = get_page(&t, "/tenants/main/instances").await;
    let (_, first, _) = get_page(&t, "/tenants/main/instances?limit=1").await;
    assert_eq!(first[0], all[0]);
    t.stop().await;
}

#[tokio::test]
async fn a_page_token_keeps_its_place_when_items_come_and_go() {
    let t = TestApp::new().await;
    let mut made = vec![];
    for _ in 0..5 {
        made.push(t.api.create_template().await);
    }
    let (_, all, _) = get_page(&t, "/tenants/main/instance-settings-templates").await;
    let order = ids_of(&all, "id");
    let (_, page1, next) = get_page(&t, "/tenants/main/instance-settings-templates?limit=2").await;
    assert_eq!(ids_of(&page1, "id"), order[..2]);
    let token = next.expect("a next page");
    // An item of the first page is deleted, a new one is made: the next
    // page still starts right after the first page's last item.
    let (_, f) = t
        .api
        .delete(&format!(
            "/tenants/main/instance-settings-templates/{}",
            order[0]
        ))
        .await;
    t.api.wait_future(f["jobId"].as_str().unwrap()).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let newest = t.api.create_template().await;
    let (s, page2, _) = get_page(
        &t,
        &format!("/tenants/main/instance-settings-templates?limit=2&pageToken={token}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{page2}");
    assert_eq!(ids_of(&page2, "id"), order[2..4]);
    // Without `limit`, a token goes on with pages of 100.
    let (_, rest, next) = get_page(
        &t,
        &format!("/tenants/main/instance-settings-templates?pageToken={token}"),
    )
    .await;
    assert_eq!(ids_of(&rest, "id"), [&order[2..], &[newest][..]].concat());
    assert_eq!(next, None);
    t.stop().await;
}

#[tokio::test]
async fn futures_page_newest_first() {
    let t = TestApp::new().await;
    let mut jobs = vec![];
    for _ in 0..5 {
        let tpl = t.api.create_template().await;
        let (_, f) = t
            .api
            .delete(&format!("/tenants/main/instance-settings-templates/{tpl}"))
            .await;
        let job = f["jobId"].as_str().unwrap().to_string();
        t.api.wait_future(&job).await;
        jobs.push(job);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    jobs.reverse();
    let (_, recent, _) = get_page(&t, "/tenants/main/futures").await;
    assert_eq!(ids_of(&recent, "jobId"), jobs);
    let (ids, sizes) = read_all_pages(&t, "/tenants/main/futures?limit=2", "jobId").await;
    assert_eq!(ids, jobs);
    assert_eq!(sizes, [2, 2, 1]);
    t.stop().await;
}

#[tokio::test]
async fn bad_paging_parameters_are_precise_400s() {
    let t = TestApp::new().await;
    for (path, names) in [
        ("/tenants/main/instances?limit=0", "limit"),
        ("/tenants/main/instances?limit=1001", "1000"),
        ("/tenants/main/cloud-accounts?limit=-1", "limit"),
        ("/tenants/main/virtual-networks?limit=many", "limit"),
        ("/tenants/main/images?pageToken=garbage", "pageToken"),
        (
            "/tenants/main/instance-settings-templates?pageToken=12.a%2Fb",
            "pageToken",
        ),
        ("/tenants/main/futures?limit=501", "500"),
        ("/tenants/main/futures?pageToken=.x", "pageToken"),
        ("/tenants/main/instances/inst-x/snapshots?limit=0", "limit"),
        (
            "/tenants/main/instances/inst-x/backups?pageToken=x",
            "pageToken",
        ),
    ] {
        let (s, body, _) = get_page(&t, path).await;
        assert_error(s, &body, StatusCode::BAD_REQUEST, "InvalidInput");
        assert!(
            body["message"].as_str().unwrap().contains(names),
            "{path}: {body}"
        );
    }
    t.stop().await;
}

// ------------------------------------------------------------ conflicts

#[tokio::test]
async fn objects_in_use_cannot_be_deleted_until_their_users_are_gone() {
    let t = TestApp::new().await;
    let (s, acc) = t
        .api
        .post("/tenants/main/cloud-accounts", json!({"label": "a"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{acc}");
    let acc = acc["id"].as_str().unwrap().to_string();
    let (s, net) = t
        .api
        .post(
            "/tenants/main/virtual-networks?useDefaultValues=true",
            json!({"label": "n", "accountId": acc}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{net}");
    let net = net["id"].as_str().unwrap().to_string();
    let tpl = t.api.create_template().await;
    let inst = t.api.create_instance(&tpl, &net).await;
    let inst = inst["id"].as_str().unwrap().to_string();

    let (_, a) = t
        .api
        .get(&format!("/tenants/main/cloud-accounts/{acc}"))
        .await;
    assert_eq!(a["nbNetworks"], 1);
    for p in [
        format!("/tenants/main/cloud-accounts/{acc}"),
        format!("/tenants/main/virtual-networks/{net}"),
        format!("/tenants/main/instance-settings-templates/{tpl}"),
    ] {
        let (s, b) = t.api.delete(&p).await;
        assert_error(s, &b, StatusCode::CONFLICT, "Conflict");
        assert!(b["message"].as_str().unwrap().contains("used by"), "{b}");
    }

    let (s, f) = t
        .api
        .get(&format!("/tenants/main/instances/{inst}/actions/delete"))
        .await;
    assert_eq!(s, StatusCode::OK, "{f}");
    let f = t.api.wait_future(f["jobId"].as_str().unwrap()).await;
    assert_eq!(f["state"], "done", "{f}");
    for p in [
        format!("/tenants/main/instance-settings-templates/{tpl}"),
        format!("/tenants/main/virtual-networks/{net}"),
        format!("/tenants/main/cloud-accounts/{acc}"),
    ] {
        let (s, f) = t.api.delete(&p).await;
        assert_eq!(s, StatusCode::OK, "{f}");
        let f = t.api.wait_future(f["jobId"].as_str().unwrap()).await;
        assert_eq!(f["state"], "done", "{f}");
        assert_eq!(f["hasResult"], true);
        let (s, _) = t.api.get(&p).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{p}");
    }
    t.stop().await;
}

#[tokio::test]
async fn a_network_keeps_its_vpc_and_an_instance_its_network() {
    let t = TestApp::new().await;
    let net = t.api.create_network().await;
    let (_, mut n) = t
        .api
        .get(&format!("/tenants/main/virtual-networks/{net}"))
        .await;
    n["awsVpcId"] = json!("vpc-2");
    let (s, b) = t
        .api
        .put(&format!("/tenants/main/virtual-networks/{net}"), n)
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "InvalidInput");
    assert!(b["message"].as_str().unwrap().contains("awsVpcId"));

    let tpl = t.api.create_template().await;
    let other = t.api.create_network().await;
    let mut i = t.api.create_instance(&tpl, &net).await;
    let id = i["id"].as_str().unwrap().to_string();
    i["virtualNetworkId"] = json!(other);
    let (s, b) = t.api.put(&format!("/tenants/main/instances/{id}"), i).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "InvalidInput");
    t.stop().await;
}

// ------------------------------------------------------------ updates and secrets

#[tokio::test]
async fn instance_put_replaces_the_settings_and_keeps_identity() {
    let t = TestApp::new().await;
    let tpl = t.api.create_template().await;
    let net = t.api.create_network().await;
    let mut i = t.api.create_instance(&tpl, &net).await;
    let id = i["id"].as_str().unwrap().to_string();
    let created = i["createdAt"].clone();
    i["label"] = json!("renamed");
    i["enableAutomatedSnapshot"] = json!(true);
    i["automatedSnapshotPeriod"] = json!(24);
    i["automatedSnapshotRetention"] = json!(7);
    i["cloudTags"] = json!({"team": "data"});
    i["createdAt"] = json!(1);
    let (s, b) = t.api.put(&format!("/tenants/main/instances/{id}"), i).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, got) = t.api.get(&format!("/tenants/main/instances/{id}")).await;
    assert_eq!(got["label"], "renamed");
    assert_eq!(got["automatedSnapshotRetention"], 7);
    assert_eq!(got["cloudTags"]["team"], "data");
    assert_eq!(got["createdAt"], created);
    // A body naming another instance is refused.
    let mut other = got.clone();
    other["id"] = json!("inst-other");
    let (s, b) = t
        .api
        .put(&format!("/tenants/main/instances/{id}"), other)
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "InvalidInput");
    t.stop().await;
}

#[tokio::test]
async fn cloud_secrets_are_encrypted_at_rest_never_returned_and_kept_on_put() {
    let t = TestApp::new().await;
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let (s, a) = t
        .api
        .post(
            "/tenants/main/cloud-accounts",
            json!({"label": "k", "awsAuthenticationMode": "KEYPAIR", "awsAccessKeyId": "AKIAIOSFODNN7EXAMPLE", "awsSecretAccessKey": secret}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert!(!a.to_string().contains(secret));
    assert_eq!(a["hasAwsSecretAccessKey"], true);
    let id = a["id"].as_str().unwrap().to_string();
    let row = fleet_manager::store::resources::account_get(t.app.store.conn(), "main", &id)
        .await
        .unwrap()
        .unwrap();
    assert!(!row.doc.contains(secret) && !row.secret.as_deref().unwrap().contains(secret));

    // The client sends back what it read: the stored secret stays.
    let (_, mut got) = t
        .api
        .get(&format!("/tenants/main/cloud-accounts/{id}"))
        .await;
    got["label"] = json!("renamed");
    let (s, b) = t
        .api
        .put(&format!("/tenants/main/cloud-accounts/{id}"), got)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["hasAwsSecretAccessKey"], true);
    let row2 = fleet_manager::store::resources::account_get(t.app.store.conn(), "main", &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.secret, row2.secret);

    // KEYPAIR without any secret is refused, and nothing changes.
    let (s, b) = t
        .api
        .post(
            "/tenants/main/cloud-accounts",
            json!({"label": "k2", "awsAuthenticationMode": "KEYPAIR", "awsAccessKeyId": "AKIAIOSFODNN7EXAMPLE"}),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "InvalidInput");
    let (_, list) = t.api.get("/tenants/main/cloud-accounts").await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Tenant credentials behave the same way.
    let (s, c) = t
        .api
        .put(
            "/tenants/main/cloud-credentials",
            json!({"awsAuthenticationMode": "KEYPAIR", "awsAccessKeyId": "AKIAIOSFODNN7EXAMPLE", "awsSecretAccessKey": secret}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let (_, c) = t.api.get("/tenants/main/cloud-credentials").await;
    assert!(!c.to_string().contains(secret));
    assert_eq!(c["hasAwsSecretAccessKey"], true);
    let tenant = fleet_manager::store::resources::tenant_get(t.app.store.conn(), "main")
        .await
        .unwrap()
        .unwrap();
    assert!(!tenant.cloud_credentials.contains(secret));
    t.stop().await;
}

#[tokio::test]
async fn cloud_tags_round_trip_and_reserved_keys_are_refused() {
    let t = TestApp::new().await;
    let (s, _) = t
        .api
        .put(
            "/tenants/main/cloud-tags",
            json!({"team": "data", "cost-center": "42"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, env) = t.api.get("/tenants/main/cloud-tags").await;
    let tags: Value = serde_json::from_str(env["msg"].as_str().unwrap()).unwrap();
    assert_eq!(tags, json!({"team": "data", "cost-center": "42"}));
    let (s, b) = t
        .api
        .put("/tenants/main/cloud-tags", json!({"aws:name": "x"}))
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "InvalidInput");
    let (s, b) = t.api.put("/tenants/main/cloud-tags", json!({"n": 1})).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "InvalidInput");
    let (_, env) = t.api.get("/tenants/main/cloud-tags").await;
    assert_eq!(
        serde_json::from_str::<Value>(env["msg"].as_str().unwrap()).unwrap(),
        tags
    );
    t.stop().await;
}

#[tokio::test]
async fn use_default_values_puts_a_network_in_fms_own_vpc() {
    let t = TestApp::new().await;
    let (s, n) = t
        .api
        .post(
            "/tenants/main/virtual-networks?useDefaultValues=True",
            json!({"label": "d"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{n}");
    assert_eq!(n["awsVpcId"], "vpc-local");
    assert_eq!(n["awsSubnetId"], "subnet-local");
    let (s, b) = t
        .api
        .post("/tenants/main/virtual-networks", json!({"label": "d"}))
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "InvalidInput");
    let (s, b) = t
        .api
        .post(
            "/tenants/main/virtual-networks?useDefaultValues=perhaps",
            json!({"label": "d"}),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "InvalidInput");
    t.stop().await;
}

#[tokio::test]
async fn setup_action_secrets_are_sealed_masked_and_kept_when_sent_back_masked() {
    let t = TestApp::new().await;
    let action = json!({"type": "INSTALL_JDBC_DRIVER", "params": {
        "url": "https://repo.example/driver.jar", "dbType": "mysql",
        "username": "me", "password": "s3cret-jdbc", "headers": {"Authorization": "Bearer tok-123"}}});
    let (s, tpl) = t
        .api
        .post(
            "/tenants/main/instance-settings-templates",
            json!({"label": "t", "setupActions": [action]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{tpl}");
    let text = tpl.to_string();
    assert!(
        !text.contains("s3cret-jdbc") && !text.contains("tok-123"),
        "{text}"
    );
    assert_eq!(tpl["setupActions"][0]["params"]["password"], "********");
    let id = tpl["id"].as_str().unwrap().to_string();
    let row = fleet_manager::store::resources::template_get(t.app.store.conn(), "main", &id)
        .await
        .unwrap()
        .unwrap();
    assert!(!row.doc.contains("s3cret-jdbc") && !row.doc.contains("tok-123"));

    // The client sends back what it read: the masked secret stays as it was.
    let (_, mut got) = t
        .api
        .get(&format!("/tenants/main/instance-settings-templates/{id}"))
        .await;
    got["label"] = json!("renamed");
    let (s, b) = t
        .api
        .put(
            &format!("/tenants/main/instance-settings-templates/{id}"),
            got.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let row2 = fleet_manager::store::resources::template_get(t.app.store.conn(), "main", &id)
        .await
        .unwrap()
        .unwrap();
    let doc: Value = serde_json::from_str(&row2.doc).unwrap();
    let sealed = doc["setupActions"][0]["params"]["password"]
        .as_str()
        .unwrap();
    let key = std::fs::read_to_string(t.db.dir.path().join("secrets.key")).unwrap();
    let sb = fleet_manager::crypto::SecretBox::load(Some(&key), t.db.dir.path()).unwrap();
    let at = fleet_manager::crypto::Place::template_param(&id, "password");
    let opened = sb
        .open(&at, sealed.strip_prefix("fm-sealed:").unwrap())
        .unwrap();
    assert_eq!(opened, "\"s3cret-jdbc\"");

    // A mask that no longer matches its action (moved behind another) is refused.
    let mut moved = got.clone();
    let first = moved["setupActions"][0].clone();
    moved["setupActions"] = json!([{"type": "SETUP_K8S_AND_SPARK", "params": {}}, first]);
    let (s, b) = t
        .api
        .put(
            &format!("/tenants/main/instance-settings-templates/{id}"),
            moved,
        )
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, "Conflict");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("give the value again"),
        "{b}"
    );
    t.stop().await;
}

#[tokio::test]
async fn backup_requests_are_checked_before_anything_starts() {
    let t = TestApp::new().await;
    let api = &t.api;
    let (tpl, net) = (api.create_template().await, api.create_network().await);
    let id = api.create_instance(&tpl, &net).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let base = format!("/tenants/main/instances/{id}/backups");

    let (s, b) = api.get("/tenants/main/instances/inst-nope/backups").await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "NotFound");
    let (s, b) = api.get(&base).await;
    assert_eq!((s, b), (StatusCode::OK, json!([])));
    let (s, b) = api.post(&base, json!(null)).await;
    assert_error(s, &b, StatusCode::CONFLICT, "Conflict");
    assert!(
        b["message"].as_str().unwrap().contains("not provisioned"),
        "{b}"
    );
    let (s, b) = api.get(&format!("{base}/bk-nope")).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "NotFound");
    let (s, b) = api.get(&format!("{base}/..%2Fx")).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "InvalidInput");
    for (body, needle) in [
        (json!({"label": ""}), "label"),
        (json!({"labl": "x"}), "unknown field"),
        (json!([1]), "JSON object"),
    ] {
        let (s, b) = api.post(&format!("{base}/bk-nope/clone"), body).await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, "InvalidInput");
        assert!(b["message"].as_str().unwrap().contains(needle), "{b}");
    }
    let (s, b) = api
        .post(&format!("{base}/bk-nope/clone"), json!({"label": "c"}))
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "NotFound");
    for action in ["restore", "verify"] {
        let (s, b) = api
            .post(&format!("{base}/bk-nope/{action}"), json!(null))
            .await;
        assert_error(s, &b, StatusCode::NOT_FOUND, "NotFound");
    }

    // The policy is validated with the instance, field by field.
    let (_, mut doc) = api.get(&format!("/tenants/main/instances/{id}")).await;
    assert_eq!(doc["backupPolicy"]["encrypt"], true, "{doc}");
    doc["backupPolicy"]["exclusions"] = json!(["../../etc"]);
    let (s, b) = api
        .put(&format!("/tenants/main/instances/{id}"), doc.clone())
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "InvalidInput");
    assert!(b["message"].as_str().unwrap().contains("exclusions"), "{b}");
    doc["backupPolicy"] = json!({"enabled": true, "periodHours": 0});
    let (s, b) = api.put(&format!("/tenants/main/instances/{id}"), doc).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "InvalidInput");
    assert!(
        b["message"].as_str().unwrap().contains("periodHours"),
        "{b}"
    );
    let ops = fleet_manager::store::entities::operation::Entity::find()
        .all(t.app.store.conn())
        .await
        .unwrap();
    assert!(ops.is_empty(), "nothing was started: {ops:?}");
    t.stop().await;
}

#[tokio::test]
async fn without_a_backup_location_backups_are_refused_with_a_clear_message() {
    let t = TestApp::with(|cfg| cfg.backups = None, vec![]).await;
    let (tpl, net) = (t.api.create_template().await, t.api.create_network().await);
    let id = t.api.create_instance(&tpl, &net).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, b) = t
        .api
        .post(
            &format!("/tenants/main/instances/{id}/backups"),
            json!(null),
        )
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, "Conflict");
    assert!(
        b["message"].as_str().unwrap().contains("FM_BACKUP_URL"),
        "{b}"
    );
    t.stop().await;
}
