//! A small W3C WebDriver client over reqwest, enough to drive Debian's Chromium through
//! chromedriver. (fantoccini would pull a second TLS stack, aws-lc, into the build.)

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    http: reqwest::Client,
    base: String,
    /// chromedriver's port and the session's path, to end the session on drop.
    port: u16,
    session_path: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

async fn send_json(mut req: reqwest::RequestBuilder, body: Option<Value>) -> Value {
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&b).unwrap());
    }
    let bytes = req.send().await.unwrap().bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium, or says why not and returns `None`
    /// (outside CI only: under CI=true a missing browser fails the test).
    pub async fn start() -> Option<Browser> {
        use crate::require::{program, require};
        let found = program("chromium")
            .or_else(|_| program("chromium-browser"))
            .and_then(|c| Ok((c, program("chromedriver")?)))
            .map_err(|e| format!("{e} (apt-get install chromium chromium-driver)"));
        let (chromium, chromedriver) = require("Chromium and chromedriver", found)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1280,1800".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let res = send_json(http.post(format!("{base}/session")), Some(caps)).await;
        let session = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {res}"))
            .to_string();
        Some(Browser {
            http,
            base: format!("{base}/session/{session}"),
            port,
            session_path: format!("/session/{session}"),
            driver,
            _profile: profile,
        })
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let res = send_json(
            self.http.request(method, format!("{}{path}", self.base)),
            body,
        )
        .await;
        if let Some(err) = res["value"].get("error") {
            panic!("webdriver {path}: {err}: {}", res["value"]["message"]);
        }
        res["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let found = self
            .cmd(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap().to_string())
            .collect()
    }

    pub async fn find(&self, css: &str) -> String {
        self.find_all(css)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element matches {css}"))
    }

    pub async fn exists(&self, css: &str) -> bool {
        !self.find_all(css).await.is_empty()
    }

    /// Clicks something that loads a new page (a form's button, a link) and waits for it.
    pub async fn click(&self, css: &str) {
        let old_page = self.find("html").await;
        let el = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let ready = self
                .cmd(
                    reqwest::Method::POST,
                    "/execute/sync",
                    Some(json!({"script": "return document.readyState", "args": []})),
                )
                .await;
            let page = self.find_all("html").await;
            if ready == "complete" && page.first().is_some_and(|p| *p != old_page) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "clicking {css} loaded no new page"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/clear"),
            Some(json!({})),
        )
        .await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn value(&self, css: &str) -> String {
        let el = self.find(css).await;
        self.cmd(
            reqwest::Method::GET,
            &format!("/element/{el}/property/value"),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    pub async fn text(&self, css: &str) -> String {
        let el = self.find(css).await;
        self.cmd(reqwest::Method::GET, &format!("/element/{el}/text"), None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn page_text(&self) -> String {
        self.text("body").await
    }

    pub async fn screenshot(&self, path: &std::path::Path) {
        let b64 = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

/// Whether `bytes` hold a whole HTTP response: its headers, and as much body as their
/// Content-Length says.
fn response_complete(bytes: &[u8]) -> bool {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    bytes.len() >= end + 4 + length
}

impl Drop for Browser {
    /// Ends the session first: chromedriver then quits Chromium, which killing chromedriver
    /// alone would leave running. Blocking, since drop cannot await.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n",
                self.session_path, self.port
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                // Until the whole answer is in (chromedriver answers once Chromium has quit),
                // not until the socket closes: chromedriver keeps it open, which cost every
                // browser test the 10 s read timeout.
                let mut answer = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut chunk) {
                    answer.extend_from_slice(&chunk[..n]);
                    if response_complete(&answer) {
                        break;
                    }
                }
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Sets the window's size (the layout viewport in headless Chromium).
    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.cmd(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub async fn execute(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// How wide the page is, and how wide the window shows it.
    pub async fn scroll_width(&self) -> (i64, i64) {
        let v = self
            .execute(
                "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]",
            )
            .await;
        (v[0].as_i64().unwrap_or(-1), v[1].as_i64().unwrap_or(-1))
    }

    /// Waits (without reloading: the page updates itself) until `css`'s text satisfies
    /// `check`, and returns it.
    pub async fn wait_for_text(
        &self,
        css: &str,
        what: &str,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        // Read in the page in one step: the element may be replaced between two commands.
        let script = format!(
            "const e = document.querySelector({}); return e ? e.textContent : null",
            Value::String(css.to_string())
        );
        loop {
            if let Some(text) = self.execute(&script).await.as_str() {
                if check(text) {
                    return text.to_string();
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} never showed in {css}: {}",
                self.page_text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// WebDriver's key codes for the keys the keyboard tests press.
pub mod keys {
    pub const TAB: &str = "\u{E004}";
    pub const ENTER: &str = "\u{E007}";
    pub const CONTROL: &str = "\u{E009}";
}

impl Browser {
    /// Runs `script` (a function body whose last argument is the callback) and returns what
    /// it passes to the callback.
    pub async fn execute_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// A Chrome DevTools Protocol command, through chromedriver's `goog/cdp/execute`.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({ "cmd": cmd, "params": params })),
        )
        .await
    }

    /// Makes pages see `prefers-color-scheme: dark` (or light), as a system setting would.
    pub async fn prefer_color_scheme(&self, scheme: &str) {
        self.emulate_media(scheme, false).await;
    }

    /// The system settings pages see: the colour scheme, and `forced-colors: active` (as
    /// Windows' contrast themes set it) or not. One call sets both: each replaces the last.
    pub async fn emulate_media(&self, scheme: &str, forced_colors: bool) {
        let forced = if forced_colors { "active" } else { "none" };
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({"features": [
                {"name": "prefers-color-scheme", "value": scheme},
                {"name": "forced-colors", "value": forced},
            ]}),
        )
        .await;
    }

    /// Presses and releases each key in turn (a string of characters and [`keys`] codes),
    /// as a person at the keyboard would: the page receives real key events.
    pub async fn press(&self, keys: &[&str]) {
        let mut actions = Vec::new();
        for k in keys {
            for c in k.chars() {
                actions.push(json!({"type": "keyDown", "value": c.to_string()}));
                actions.push(json!({"type": "keyUp", "value": c.to_string()}));
            }
        }
        self.cmd(
            reqwest::Method::POST,
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await;
    }

    /// Holds `modifier` while pressing `key` (Shift+Tab, Control+a).
    pub async fn chord(&self, modifier: &str, key: &str) {
        let actions = json!([
            {"type": "keyDown", "value": modifier},
            {"type": "keyDown", "value": key},
            {"type": "keyUp", "value": key},
            {"type": "keyUp", "value": modifier},
        ]);
        self.cmd(
            reqwest::Method::POST,
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await;
    }

    /// Whether the focused element matches `css`.
    pub async fn focused_is(&self, css: &str) -> bool {
        let script = format!(
            "const e = document.activeElement; return !!e && e.matches({})",
            Value::String(css.to_string())
        );
        self.execute(&script).await.as_bool().unwrap_or(false)
    }

    /// The focused element as a short description, for messages.
    pub async fn focused(&self) -> String {
        self.execute(
            "const e = document.activeElement; if (!e) return 'nothing'; \
             return e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + \
             (e.name ? '[name=' + e.name + ']' : '') + ' ' + (e.textContent || '').trim().slice(0, 60)",
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Presses Tab until the focused element matches `css` (at most `limit` times): it is
    /// reachable by keyboard, in the page's tab order.
    pub async fn tab_to(&self, css: &str, limit: usize) {
        for _ in 0..limit {
            if self.focused_is(css).await {
                return;
            }
            self.press(&[keys::TAB]).await;
        }
        assert!(
            self.focused_is(css).await,
            "{css} not reached with {limit} presses of Tab; focus is on {}",
            self.focused().await
        );
    }

    /// Presses `keys` and waits for the new page they load (Enter on a button or a link).
    pub async fn press_and_load(&self, keys: &[&str]) {
        let old_page = self.find("html").await;
        self.press(keys).await;
        self.wait_for_new_page(&old_page, "pressing keys").await;
    }

    async fn wait_for_new_page(&self, old_page: &str, what: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let ready = self.execute("return document.readyState").await;
            let page = self.find_all("html").await;
            if ready == "complete" && page.first().is_some_and(|p| p != old_page) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} loaded no new page"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Reloads the page, as the browser's reload button does.
    pub async fn refresh(&self) {
        let old_page = self.find("html").await;
        self.cmd(reqwest::Method::POST, "/refresh", Some(json!({})))
            .await;
        self.wait_for_new_page(&old_page, "reloading").await;
    }

    /// An element's accessible name, as the browser computes it for assistive technology.
    pub async fn computed_label(&self, element: &str) -> String {
        self.cmd(
            reqwest::Method::GET,
            &format!("/element/{element}/computedlabel"),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// The page's title.
    pub async fn title(&self) -> String {
        self.cmd(reqwest::Method::GET, "/title", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}
