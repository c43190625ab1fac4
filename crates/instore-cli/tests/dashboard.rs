//! The dashboard in a real browser (issue 6): `instore serve --demo` on a fresh default SQLite
//! store, driven through headless Chromium by ChromeDriver (Debian's `chromium` and
//! `chromium-driver`; `bash .ci/test` installs them when missing). The test filters suspended
//! instances, resumes one with the row's button and the confirmation dialog, sees its status
//! change on its detail page, and saves screenshots in the target directory.
//!
//! The WebDriver protocol is spoken directly (a handful of JSON calls over loopback HTTP), so
//! the test needs no driver crate with a TLS stack.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};

/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

#[test]
fn an_operator_filters_suspended_instances_and_resumes_one() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(dir.path());
    let driver = Driver::start();
    let browser = driver.session();

    browser.goto(&server.url);
    browser.wait_for(
        "#instance-rows tr[data-instance-id]",
        Duration::from_secs(60),
    );

    // The demo suspends instances within seconds (faults, reviews); filter them. The list
    // re-renders as it refreshes, so an element found a moment ago may be stale: look again.
    let deadline = Instant::now() + Duration::from_secs(90);
    let id = loop {
        assert!(
            Instant::now() < deadline,
            "no suspended instance with a Resume button appeared in 90 s"
        );
        browser.click(&browser.find("#filter-status option[value=Suspended]"));
        browser.click(&browser.find("#apply-filters"));
        std::thread::sleep(Duration::from_millis(700));
        let statuses: Vec<Option<String>> = browser
            .find_all("#instance-rows tr[data-instance-id]")
            .iter()
            .map(|row| browser.attribute(row, "data-status"))
            .collect();
        assert!(
            statuses.iter().flatten().all(|s| s == "Suspended"),
            "the filter shows only suspended instances: {statuses:?}"
        );
        let Some(button) = browser
            .find_all("#instance-rows button[data-action=resume]")
            .into_iter()
            .next()
        else {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        };
        let Some(id) = browser.attribute(&button, "data-instance-id") else {
            continue;
        };
        browser.screenshot(&artifact("dashboard-suspended.png"));
        if browser.try_click(&button).is_ok() {
            break id;
        }
    };

    let yes = browser.wait_for("#confirm-yes", Duration::from_secs(10));
    browser.click(&yes);

    // The resumed instance leaves Suspended: Running again (its host picks it up), or even
    // Completed if its workflow finished in the meantime.
    browser.goto(&format!("{}instances/{id}", server.url));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let cell = browser.wait_for("#detail-status", Duration::from_secs(10));
        let status = browser.text(&cell).unwrap_or_default();
        if status == "Running" || status == "Completed" {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "instance {id} still shows status {status:?} 60 s after Resume"
        );
        std::thread::sleep(Duration::from_millis(500));
        browser.refresh();
    };
    let blocked = browser
        .text(&browser.find("#detail-blocked-on"))
        .unwrap_or_default();
    assert!(
        !blocked.starts_with("suspended"),
        "the detail no longer says the instance is suspended ({status}): {blocked:?}"
    );
    browser.screenshot(&artifact("dashboard-resumed.png"));
}

/// Where screenshots go: `target/tmp` of the workspace (kept after the run).
fn artifact(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    eprintln!("screenshot: {}", path.display());
    path
}

/// A free loopback port (the listener is closed before the port is used).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `instore serve --demo` in `dir`, until dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_instore"))
            .args(["serve", "--demo", "--listen", "127.0.0.1:0"])
            .current_dir(dir)
            .env_remove("INSTORE_URL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("instore serve --demo starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("instore serve prints its URL");
        let url = line.trim().to_owned();
        assert!(
            url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
            "serve's first line is its URL: {line:?}"
        );
        Server { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A ChromeDriver process on a free port, until dropped.
struct Driver {
    child: Child,
    base: String,
}

impl Driver {
    fn start() -> Driver {
        let program =
            std::env::var("INSTORE_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
        let port = free_port();
        let child = Command::new(&program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {program} ({e}): install Debian's chromium and chromium-driver \
                     (bash .ci/test does), or point INSTORE_CHROMEDRIVER at a chromedriver"
                )
            });
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = ureq::get(&format!("{}/status", driver.base))
                .call()
                .ok()
                .and_then(|r| r.into_json::<Json>().ok())
                .is_some_and(|s| s["value"]["ready"] == true);
            if ready {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A headless Chromium session.
    fn session(&self) -> Session {
        let browser =
            std::env::var("INSTORE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000"],
            },
        }}});
        let answer = post(&format!("{}/session", self.base), &capabilities);
        let id = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_owned();
        Session {
            base: format!("{}/session/{id}", self.base),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `POST url body`, answering the `value` of the WebDriver answer; panics with the driver's
/// message on an error.
fn post(url: &str, body: &Json) -> Json {
    try_post(url, body).unwrap_or_else(|e| panic!("{e}"))
}

/// `POST url body`: the `value` of the WebDriver answer, or the driver's message.
fn try_post(url: &str, body: &Json) -> Result<Json, String> {
    answer(url, ureq::post(url).send_json(body))
}

/// The `value` of a WebDriver answer, or the driver's message (e.g. a stale element).
fn answer(url: &str, result: Result<ureq::Response, ureq::Error>) -> Result<Json, String> {
    match result {
        Ok(answer) => answer
            .into_json::<Json>()
            .map(|json| json["value"].clone())
            .map_err(|e| format!("webdriver {url}: {e}")),
        Err(ureq::Error::Status(code, answer)) => {
            let text = answer.into_string().unwrap_or_default();
            Err(format!("webdriver {url} answered {code}: {text}"))
        }
        Err(e) => Err(format!("webdriver {url}: {e}")),
    }
}

/// One browser session (closed when dropped).
struct Session {
    base: String,
}

impl Session {
    fn goto(&self, url: &str) {
        post(&format!("{}/url", self.base), &json!({ "url": url }));
    }

    fn refresh(&self) {
        post(&format!("{}/refresh", self.base), &json!({}));
    }

    /// Elements matching the CSS selector (perhaps none).
    fn find_all(&self, css: &str) -> Vec<String> {
        let found = post(
            &format!("{}/elements", self.base),
            &json!({ "using": "css selector", "value": css }),
        );
        found
            .as_array()
            .map(|all| {
                all.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching the CSS selector; panics if there is none.
    fn find(&self, css: &str) -> String {
        self.find_all(css)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element matches {css}"))
    }

    /// The first element matching `css` once it is displayed.
    fn wait_for(&self, css: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(element) = self.find_all(css).into_iter().next() {
                let shown = self
                    .get(&format!("element/{element}/displayed"))
                    .is_ok_and(|d| d == true);
                if shown {
                    return element;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{css} did not appear in {within:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn click(&self, element: &str) {
        self.try_click(element).unwrap_or_else(|e| panic!("{e}"));
    }

    fn try_click(&self, element: &str) -> Result<(), String> {
        try_post(
            &format!("{}/element/{element}/click", self.base),
            &json!({}),
        )
        .map(|_| ())
    }

    fn get(&self, path: &str) -> Result<Json, String> {
        let url = format!("{}/{path}", self.base);
        answer(&url, ureq::get(&url).call())
    }

    /// The element's text; `None` if it went stale.
    fn text(&self, element: &str) -> Option<String> {
        let text = self.get(&format!("element/{element}/text")).ok()?;
        text.as_str().map(str::to_owned)
    }

    /// The element's attribute; `None` if it has none or went stale.
    fn attribute(&self, element: &str, name: &str) -> Option<String> {
        let value = self
            .get(&format!("element/{element}/attribute/{name}"))
            .ok()?;
        value.as_str().map(str::to_owned)
    }

    fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let png = self.get("screenshot").unwrap_or_else(|e| panic!("{e}"));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a base64 screenshot"))
            .expect("valid base64");
        assert!(bytes.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        std::fs::write(path, bytes).expect("the screenshot is saved");
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = ureq::delete(&self.base).call();
    }
}
