//! A real headless Chromium for tests, driven over WebDriver (`chromedriver` on a port of its
//! own, with fantoccini): pages are tested in the browser people use, not in a DOM imitation.
//!
//! Needs Debian's `chromium` and `chromium-driver`, which `scripts/test` installs; without them a
//! test fails with what to install (it never skips).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROME_ARGS: [&str; 5] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=390,844",
];
/// `chromedriver` on a port it picked, in a process group of its own with the browsers it starts:
/// dropping it (also when the test panics) kills the group and removes the browser's profile.
pub struct ChromeDriver {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl ChromeDriver {
    pub async fn start() -> Self {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).is_file(),
                "{bin} not found: this test drives a real headless Chromium; run scripts/test, which installs \
                 Debian's chromium and chromium-driver (or: sudo apt-get install -y chromium chromium-driver)"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("chromedriver.log");
        let mut child = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}; run scripts/test"));
        // With --port=0 it picks a free port and says which on stdout, which is then drained.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut seen = String::new();
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                seen.push_str(&line);
                if let Some(port) = line
                    .split("started successfully on port ")
                    .nth(1)
                    .and_then(|rest| rest.trim().trim_end_matches('.').parse::<u16>().ok())
                {
                    let _ = tx.send(Ok(port));
                    let _ = std::io::copy(&mut lines, &mut std::io::sink());
                    return;
                }
                line.clear();
            }
            let _ = tx.send(Err(seen));
        });
        let mut driver = Self {
            child,
            url: String::new(),
            dir,
        };
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(Ok(port))) => driver.url = format!("http://127.0.0.1:{port}"),
            other => panic!(
                "chromedriver did not start ({other:?}); exit: {:?}; log:\n{}",
                driver.child.try_wait(),
                driver.log()
            ),
        }
        driver
    }

    /// A session of headless Chromium, phone-sized (390x844).
    pub async fn session(&self) -> Client {
        self.session_sized(390, 844).await
    }

    /// A session of headless Chromium with a screen of `width` x `height` CSS pixels.
    pub async fn session_sized(&self, width: u32, height: u32) -> Client {
        let profile = self.dir.path().join("profile");
        let mut args: Vec<String> = CHROME_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--window-size={width},{height}"));
        args.push(format!("--user-data-dir={}", profile.display()));
        // A window is never narrower than 500 px (also headless), so the phone's screen is
        // emulated too: viewport and screenshots are `width` x `height`.
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": args,
                "mobileEmulation": { "deviceMetrics": { "width": width, "height": height, "pixelRatio": 1 } },
            },
        });
        let Value::Object(caps) = caps else { unreachable!() };
        match ClientBuilder::native().capabilities(caps).connect(&self.url).await {
            Ok(c) => c,
            Err(e) => panic!("no browser session: {e}; chromedriver log:\n{}", self.log()),
        }
    }

    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("chromedriver.log")) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid (process_group(0)); the browser is in it too. A
        // closed session has ended the browser already; after a panic it gets a moment to exit.
        let group = format!("-{}", self.child.id());
        let signal = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(2);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        signal("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `script` until `done` holds for what it returns, up to `timeout`; returns that value.
pub async fn wait_js(c: &Client, what: &str, timeout: Duration, script: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = c.execute(script, vec![]).await.unwrap();
        if done(&v) {
            return v;
        }
        if Instant::now() > deadline {
            panic!("{what}: not within {timeout:?}; last seen: {v}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where tests keep what they leave for people to look at: `target/test-artifacts`.
pub fn artifact_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => workspace.join(t), // an absolute path replaces the base
        None => workspace.join("target"),
    };
    target.join("test-artifacts")
}

/// Saves what the browser shows as `target/test-artifacts/<name>.png`, checks it is a PNG, and
/// returns its path and its width and height in pixels.
pub async fn screenshot(c: &Client, name: &str) -> (PathBuf, u32, u32) {
    let dir = artifact_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.canonicalize().unwrap().join(format!("{name}.png"));
    std::fs::write(&png, c.screenshot().await.unwrap()).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.len() > 1000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR",
        "{} is not a PNG ({} bytes)",
        png.display(),
        bytes.len()
    );
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    eprintln!(
        "screenshot: {} ({width}x{height}, {} bytes)",
        png.display(),
        bytes.len()
    );
    (png, width, height)
}
