//! A real `redis-server` for the cluster tests, on its own port, killed when dropped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::WAIT;

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` on its own port, killed when dropped.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    /// On a free port; with `dir`, persisted there (every write fsynced before it is answered).
    pub fn start(dir: Option<&Path>) -> Redis {
        Redis::start_on(free_port(), dir)
    }

    pub fn start_on(port: u16, dir: Option<&Path>) -> Redis {
        Redis::start_with(port, dir, &[])
    }

    /// With more `redis-server` arguments.
    pub fn start_with(port: u16, dir: Option<&Path>, extra: &[&str]) -> Redis {
        let mut cmd = Command::new("redis-server");
        cmd.args(extra);
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ]);
        match dir {
            Some(dir) => cmd.args(["--dir", dir.to_str().unwrap()]).args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ]),
            // A replica's full sync writes an RDB file even so: into the temp dir, not the
            // test's working directory (the repository).
            None => cmd
                .args(["--dir", std::env::temp_dir().to_str().unwrap()])
                .args(["--appendonly", "no"]),
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (the Debian package redis-server; scripts/test installs it)");
        let redis = Redis { child, port };
        let deadline = Instant::now() + WAIT;
        while !redis.pong() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    pub fn pong(&self) -> bool {
        let Ok(mut socket) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = socket.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = [0u8; 7];
        socket.write_all(b"PING\r\n").is_ok()
            && socket.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends `signal` (`-STOP`, `-CONT`) to the server.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill {signal} {pid}");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
pub mod cluster;
