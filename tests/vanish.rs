//! A client that vanishes without FIN or RST (its packets simply stop) loses its stream soon,
//! not after the kernel's 15-minute retransmission schedule.
//!
//! The test runs itself again inside a network namespace of its own, so that dropping the
//! client's packets (iptables on that namespace's loopback) touches nothing else on the machine.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncWriteExt;

const INSIDE: &str = "SSEHUB_TEST_INSIDE_NETNS";

#[test]
fn a_client_that_vanishes_without_fin_loses_its_slot_soon() {
    if std::env::var_os(INSIDE).is_some() {
        return tokio::runtime::Runtime::new().unwrap().block_on(inside());
    }
    run_in_network_namespace(
        "ssehub-vanish",
        "a_client_that_vanishes_without_fin_loses_its_slot_soon",
        INSIDE,
    );
}

async fn inside() {
    let hub = HubProcess::start(&["--heartbeat", "1"]);
    let mut normal = hub.subscribe("?topic=v").await.opened().await;
    // Two clients vanish: one whose stream is its connection's first request, and one whose
    // stream came after another request on the connection (what browsers do).
    let mut gone = Vec::new();
    for reused in [false, true] {
        let mut client = tokio::net::TcpStream::connect(&hub.addr).await.unwrap();
        if reused {
            plain_request_first(&mut client, "/healthz").await;
        }
        client
            .write_all(b"GET /events?topic=v HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        read_head(&mut client).await;
        gone.push(client);
    }
    assert_eq!(hub.wait_metric("ssehub_clients", |n| n == 3).await, 3);
    // From now on nothing from those clients arrives: no ACK, no FIN, no RST.
    for client in &gone {
        let port = client.local_addr().unwrap().port().to_string();
        let out = Command::new("iptables")
            .args([
                "-A", "INPUT", "-i", "lo", "-p", "tcp", "--sport", &port, "-j", "DROP",
            ])
            .output()
            .expect("iptables");
        assert!(
            out.status.success(),
            "iptables: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let start = Instant::now();
    // Heartbeats every second go unacknowledged; 2 s later the kernel gives up on them.
    let left = hub.wait_metric("ssehub_clients", |n| n == 1).await;
    let took = start.elapsed();
    assert_eq!(
        left, 1,
        "a vanished client still holds its slot after {took:?}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // The client that is still there is still served.
    hub.publish_ok("?topic=v", "still here").await;
    assert_eq!(normal.next_event().await.data, "still here");
    drop(gone);
}
