//! Benchmark of the console's heaviest pages with a large fleet: the
//! dashboard, the first and a deep page of the instance list, and one
//! instance's live panel, on SQLite and on PostgreSQL; and the weight of a
//! page with everything it loads (htmx, CSS, script).
//!
//! Run with `cargo bench -p fleet-manager --bench console`. The fleet is
//! `FM_BENCH_INSTANCES` instances (default 10000), half of them running
//! with a heartbeat, a tenth of those with a data disk past 80 %.
//! PostgreSQL is taken from `FM_TEST_PG_URL` and skipped when unreachable.

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use fleet_manager::model::instance::Instance;
use fleet_manager::model::user::Role;
use fleet_manager::server;
use fleet_manager::store::entities::instance_runtime::Column as Rt;
use fleet_manager::store::lifecycle as lq;
use std::time::{Duration, Instant};
use support::{ms, percentile};

mod support;

const PASSWORD: &str = "bench-password-long-enough";
const ROUNDS: usize = 300;

struct Figures {
    backend: &'static str,
    pages: Vec<(&'static str, Duration, Duration, usize)>,
    weight: usize,
}

async fn seed(app: &fleet_manager::app::App, n: usize) -> Vec<String> {
    let (tpl, net) = support::template_and_network(app).await;
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let inst: Instance = serde_json::from_value(serde_json::json!({
            "label": format!("node-{i}"), "instanceSettingsTemplateId": tpl,
            "virtualNetworkId": net, "imageId": "dss-14.2.0-default",
        }))
        .expect("instance");
        let doc = app.instance_create("main", inst).await.expect("create");
        let v: serde_json::Value = serde_json::from_str(&doc).expect("doc");
        let id = v["id"].as_str().expect("id").to_string();
        if i % 2 == 0 {
            let db = app.store.conn();
            lq::runtime_ensure(db, "main", &id).await.expect("runtime");
            let used: u64 = if i % 20 == 0 { 90 } else { 30 };
            let beat = serde_json::json!({
                "nodeVersion": "14.2.0", "dataDiskUsedBytes": used << 30,
                "dataDiskTotalBytes": 100u64 << 30, "osDiskUsedBytes": 5u64 << 30,
                "osDiskTotalBytes": 20u64 << 30, "memoryUsedBytes": 8u64 << 30,
                "memoryTotalBytes": 32u64 << 30, "cpuLoad": 0.5,
            });
            lq::runtime_set(
                db,
                &id,
                vec![
                    (Rt::State, "running".into()),
                    (Rt::NodeState, "running".into()),
                    (Rt::NodeVersion, "14.2.0".into()),
                    (
                        Rt::PublicUrl,
                        format!("http://10.0.{}.{}:10000", i / 250, i % 250).into(),
                    ),
                    (Rt::LastHeartbeatAt, fleet_manager::model::now_ms().into()),
                    (Rt::Heartbeat, beat.to_string().into()),
                ],
            )
            .await
            .expect("runtime state");
        }
        ids.push(id);
    }
    ids
}

async fn run(backend: &'static str, url: String, dir: std::path::PathBuf, n: usize) -> Figures {
    let (cfg, app) = support::open_app(url, dir).await;
    app.user_create("bench", Role::Viewer, Some(PASSWORD.into()))
        .await
        .expect("user");
    let ids = seed(&app, n).await;
    let running = server::start(app, &cfg).await.expect("start");
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    // Sign in as a browser does: the form (its token and cookie), then the post.
    let form = http
        .get(format!("{base}/console/login"))
        .send()
        .await
        .expect("sign-in form");
    let form_cookie = form.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("cookie")
        .to_string();
    let html = form.text().await.expect("form");
    let token = html
        .split("name=\"login_csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the form's token")
        .to_string();
    let login = http
        .post(format!("{base}/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", form_cookie)
        .body(format!("name=bench&password={PASSWORD}&login_csrf={token}"))
        .send()
        .await
        .expect("login");
    let cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("fm_session="))
        .expect("a session cookie")
        .split(';')
        .next()
        .expect("cookie")
        .to_string();
    let get = |path: String| {
        let req = http.get(format!("{base}{path}")).header("cookie", &cookie);
        async move {
            let t = Instant::now();
            let r = req.send().await.expect("send");
            assert!(r.status().is_success(), "{path}: {}", r.status());
            let body = r.bytes().await.expect("body");
            (t.elapsed(), body)
        }
    };
    // A deep page: the token of the page after the middle of the list.
    let mut deep = String::from("/console/instances");
    for _ in 0..(n / 50 / 2) {
        let (_, body) = get(deep.clone()).await;
        let html = String::from_utf8_lossy(&body);
        match html
            .split("href=\"/console/instances?pageToken=")
            .nth(1)
            .and_then(|r| r.split('"').next())
        {
            Some(t) => deep = format!("/console/instances?pageToken={t}"),
            None => break,
        }
    }
    let mid = &ids[ids.len() / 2 / 2 * 2];
    let mut pages = Vec::new();
    for (name, path) in [
        ("dashboard", "/console/".to_string()),
        ("instances, first page", "/console/instances".to_string()),
        ("instances, middle page", deep.clone()),
        (
            "instances, running ones",
            "/console/instances?state=running".to_string(),
        ),
        (
            "instance live panel",
            format!("/console/instances/{mid}/live"),
        ),
    ] {
        for _ in 0..20 {
            get(path.clone()).await;
        }
        let mut times = Vec::with_capacity(ROUNDS);
        let mut size = 0;
        for _ in 0..ROUNDS {
            let (d, body) = get(path.clone()).await;
            times.push(d);
            size = body.len();
        }
        times.sort();
        pages.push((
            name,
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            size,
        ));
    }
    // The weight of the instance list with what it loads.
    let (_, html) = get("/console/instances".into()).await;
    let text = String::from_utf8_lossy(&html).to_string();
    let mut weight = html.len();
    for part in text.split("/console/static/").skip(1) {
        let file = part.split('"').next().expect("a file");
        weight += get(format!("/console/static/{file}")).await.1.len();
    }
    running.stop().await;
    Figures {
        backend,
        pages,
        weight,
    }
}

#[tokio::main]
async fn main() {
    let n = support::fleet_size();
    let rows = support::on_both_backends(|backend, url, dir| run(backend, url, dir, n)).await;
    println!(
        "\n{n} instances (half running with heartbeats); {ROUNDS} GETs per page, one client, keep-alive, signed in\n"
    );
    println!("| backend | page | p50 | p99 | HTML size |");
    println!("|---|---|---|---|---|");
    for f in &rows {
        for (name, p50, p99, size) in &f.pages {
            println!(
                "| {} | {name} | {} | {} | {:.1} KB |",
                f.backend,
                ms(*p50),
                ms(*p99),
                *size as f64 / 1e3
            );
        }
    }
    for f in &rows {
        println!(
            "\n{}: the instance list with htmx, CSS and script weighs {:.1} KB before compression",
            f.backend,
            f.weight as f64 / 1e3
        );
    }
}
