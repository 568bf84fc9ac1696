//! A browser without a browser, for the console's Rust tests: it keeps the
//! session cookie, reads the CSRF token off the pages and sends forms the
//! way a browser does (the sign-in form loaded before it is posted; no
//! redirect followed, so each answer is seen).

use super::*;

pub struct Console {
    pub base: String,
    pub http: reqwest::Client,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
    /// The sign-in form's cookie.
    login_cookie: Option<String>,
}

/// An answer: status, `Location`, `Set-Cookie`, body.
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookie: Option<String>,
    pub body: String,
}

impl Console {
    pub fn new(base: &str) -> Console {
        Console {
            base: base.to_string(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookie: None,
            csrf: None,
            login_cookie: None,
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let mut jar = vec![];
        if let Some(c) = &self.cookie {
            jar.push(format!("fm_session={c}"));
        }
        if let Some(c) = &self.login_cookie {
            jar.push(format!("fm_login={c}"));
        }
        let req = if jar.is_empty() {
            req
        } else {
            req.header("cookie", jar.join("; "))
        };
        let resp = req.send().await.expect("request");
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let location = header("location");
        let cookies: Vec<String> = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        let set_cookie = cookies
            .iter()
            .find(|c| c.starts_with("fm_session="))
            .cloned();
        let status = resp.status();
        for c in &cookies {
            let Some((name, rest)) = c.split_once('=') else {
                continue;
            };
            let v = rest.split(';').next().unwrap_or_default();
            let v = (!v.is_empty()).then(|| v.to_string());
            match name {
                "fm_session" => self.cookie = v,
                "fm_login" => self.login_cookie = v,
                _ => {}
            }
        }
        let body = resp.text().await.expect("body");
        if let Some(t) = csrf_in(&body) {
            self.csrf = Some(t);
        }
        Page {
            status,
            location,
            set_cookie,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    /// Posts a form with this session's CSRF token; the sign-in form is
    /// loaded first, for its own token.
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let mut f: Vec<(String, String)> = form
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if path == "/console/login" {
            let page = self.get("/console/login").await;
            let token = field_in(&page.body, "login_csrf").expect("the sign-in form's token");
            f.push(("login_csrf".into(), token));
        } else if let Some(t) = &self.csrf {
            f.push(("csrf".into(), t.clone()));
        }
        self.post_raw(path, &f).await
    }

    /// Posts a form exactly as given.
    pub async fn post_raw(&mut self, path: &str, form: &[(String, String)]) -> Page {
        let body = serde_urlencoded::to_string(form).expect("form");
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(req).await
    }

    /// Signs in; the sign-in's answer. Reads a page after it, so the CSRF
    /// token is known.
    pub async fn login(&mut self, name: &str, password: &str) -> Page {
        let p = self
            .post("/console/login", &[("name", name), ("password", password)])
            .await;
        if p.status == StatusCode::SEE_OTHER {
            let to = p.location.clone().unwrap_or_else(|| "/console/".into());
            self.get(&to).await;
        }
        p
    }
}

impl Console {
    /// Changes the signed-in user's password; the answer.
    pub async fn change_password(&mut self, current: &str, new: &str) -> Page {
        self.post(
            "/console/account/password",
            &[("current", current), ("password", new), ("confirm", new)],
        )
        .await
    }
}

/// The CSRF token a page's forms carry.
pub fn csrf_in(body: &str) -> Option<String> {
    field_in(body, "csrf")
}

/// The value of the first hidden field `name` of a page.
pub fn field_in(body: &str, name: &str) -> Option<String> {
    let mark = format!("name=\"{name}\" value=\"");
    let at = body.find(&mark)? + mark.len();
    let rest = &body[at..];
    Some(rest[..rest.find('"')?].to_string())
}
