//! The usual deployment: the hub behind nginx on the same host, configured with the snippet the
//! project ships (`docs/nginx.conf`). Everything nginx forwards comes from loopback, and none of
//! it may publish without the token; streams must pass through event by event.
//!
//! Needs Debian's nginx (`scripts/test` installs `nginx-light`).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const SNIPPET: &str = include_str!("../docs/nginx.conf");

/// nginx in a directory of its own on a free port, proxying to the hub; stopped when dropped.
struct Nginx {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Nginx {
    fn start(hub_addr: &str) -> Nginx {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("ssehub-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        assert!(SNIPPET.contains("proxy_pass http://127.0.0.1:8080;"));
        let location = SNIPPET.replace("127.0.0.1:8080", hub_addr);
        let d = dir.display();
        let config = format!(
            "worker_processes 1;\nerror_log {d}/logs/error.log;\npid {d}/nginx.pid;\n{user}\
             events {{ worker_connections 256; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
             server {{\n  listen 127.0.0.1:{port};\n{location}\n }}\n}}\n",
            // As root, nginx's workers would drop to `nobody`, who cannot use this directory.
            user = if is_root() { "user root;\n" } else { "" },
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let child = Command::new(nginx_binary())
            .args(["-p", &d.to_string(), "-c", &conf.display().to_string()])
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nginx (Debian package nginx-light; scripts/test installs it)");
        let nginx = Nginx { child, dir, port };
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nginx did not listen: {}",
                std::fs::read_to_string(nginx.dir.join("logs/error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would leave them running).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nginx_binary() -> &'static str {
    if std::path::Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

async fn publish_through(nginx: &Nginx, auth: Option<&str>) -> (u16, String) {
    let mut request = client()
        .post(nginx.url("/publish?topic=p"))
        .body("through the proxy");
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_by_default_nobody_publishes_anonymously() {
    let hub = HubProcess::start(&[]);
    let nginx = Nginx::start(&hub.addr);
    let (status, reason) = publish_through(&nginx, None).await;
    assert_eq!(status, 401, "{reason}");
    assert_eq!(publish_through(&nginx, Some("Bearer guessed")).await.0, 401);
    assert_eq!(hub.metric("ssehub_published_total").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_streams_pass_event_by_event_and_tokens_publish() {
    let hub = HubProcess::start(&["--publish-token", "s3cret", "--heartbeat", "60"]);
    let nginx = Nginx::start(&hub.addr);
    let mut stream = EventStream::open(&nginx.url("/events?topic=p"), &[])
        .await
        .opened()
        .await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    // One small event at a time, each expected before the next is sent: a proxy buffer would
    // hold them (nginx's buffers are 4-8 KiB; these are a few bytes).
    for i in 0..5 {
        hub.publish_ok("?topic=p", &format!("event {i}")).await;
        let e = stream
            .try_next_event(Duration::from_secs(2))
            .await
            .unwrap_or_else(|stop| panic!("event {i} held back by the proxy: {stop:?}"));
        assert_eq!(e.data, format!("event {i}"));
    }
    // With the token, publishing through the proxy works.
    let (status, answer) = publish_through(&nginx, Some("Bearer s3cret")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(stream.next_event().await.data, "through the proxy");
}
