use super::*;

#[test]
fn durations_read_like_prose() {
    assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
    assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
    for bad in ["", "0", "1w", "m", "-5s", "1.5h"] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
    let cli = load(["ssehub", "serve", "--history-age", "2h"]).unwrap();
    let Command::Serve(s) = cli.command else {
        unreachable!()
    };
    assert_eq!(s.hub_config().history_age, Some(Duration::from_secs(7200)));
    let e = load(["ssehub", "serve", "--history-age", "soon"]).unwrap_err();
    assert!(e.to_string().contains("--history-age"), "{e}");
}

fn serve(args: &[&str]) -> ServeArgs {
    let mut all = vec!["ssehub", "serve"];
    all.extend_from_slice(args);
    match load(all).unwrap().command {
        Command::Serve(s) => s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn defaults_match_the_contract() {
    let s = serve(&[]);
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    let hub = s.hub_config();
    assert_eq!(
        (hub.max_clients, hub.history, hub.retry_ms),
        (10_000, 10_000, 3000)
    );
    assert_eq!(hub.heartbeat, Some(Duration::from_secs(15)));
    assert_eq!(hub.max_topics_per_event, 64);
    let raised = serve(&["--max-topics-per-event", "100"]).hub_config();
    assert_eq!(raised.max_topics_per_event, 100);
    assert!(load(["ssehub", "serve", "--max-topics-per-event", "0"]).is_err());
    let http = s.http_config().unwrap();
    assert_eq!(http.max_body, 1 << 20);
    // Safe behind a proxy: no anonymous publishing on --listen.
    assert!(!http.publish_open && http.publish_token.is_none());
    assert_eq!(
        s.publish_listen,
        PublishListen(Some("127.0.0.1:8081".parse().unwrap()))
    );
    assert_eq!(hub.history_bytes, 268_435_456);
    assert_eq!(
        serve(&["--history-bytes", "1000"])
            .hub_config()
            .history_bytes,
        1000
    );
    assert!(load(["ssehub", "serve", "--history-bytes", "0"]).is_err());
}

#[test]
fn file_values_lose_to_flags() {
    let dir = std::env::temp_dir().join(format!("ssehub-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.toml");
    std::fs::write(
        &file,
        "max-clients = 7\nhistory = 9\nwhen_full = \"retry\"\nstdin = true\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let s = serve(&["--config", f, "--history", "11"]);
    assert_eq!(
        (s.max_clients, s.history, s.when_full.as_str(), s.stdin),
        (7, 11, "retry", true)
    );
    std::fs::write(&file, "max-clientz = 7\n").unwrap();
    let err = load(["ssehub", "serve", "--config", f])
        .unwrap_err()
        .to_string();
    assert!(err.contains("max-clientz"), "{err}");
    std::fs::write(&file, "max-clients = 0\n").unwrap();
    assert!(load(["ssehub", "serve", "--config", f]).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_publish_listener_stays_on_loopback() {
    assert_eq!(
        serve(&["--publish-listen", "off"]).publish_listen,
        PublishListen(None)
    );
    assert_eq!(
        serve(&["--publish-listen", "[::1]:9"]).publish_listen,
        PublishListen(Some("[::1]:9".parse().unwrap()))
    );
    for bad in ["0.0.0.0:8081", "192.168.1.5:8081", "localhost", ""] {
        let e = load(["ssehub", "serve", "--publish-listen", bad])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--publish-listen"), "{bad}: {e}");
    }
}
