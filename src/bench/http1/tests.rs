use super::*;

fn dechunk(input: &[u8], split: usize) -> (Vec<u8>, bool) {
    let mut body = Body::chunked();
    let mut out = Vec::new();
    for piece in input.chunks(split) {
        body.decode(piece, &mut |p| out.extend_from_slice(p))
            .unwrap();
    }
    (out, body.is_done())
}

#[test]
fn chunked_at_every_split() {
    let input =
        b"5\r\nhello\r\n0007;ext=1\r\n, world\r\nA\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n";
    for split in 1..input.len() {
        assert_eq!(
            dechunk(input, split),
            (b"hello, world0123456789".to_vec(), true),
            "split {split}"
        );
    }
    let mut body = Body::chunked();
    assert!(body.decode(b"zz\r\n", &mut |_| {}).is_err());
}

#[test]
fn a_body_ends_where_its_framing_says_and_the_rest_is_left() {
    // What follows a body on a kept connection (the next answer) must not be eaten by it.
    let cases: [(Body, &[u8]); 2] = [
        (
            Body::chunked(),
            b"2\r\nok\r\n0\r\nx-t: 1\r\n\r\nHTTP/1.1 200 OK\r\n",
        ),
        (Body::Sized(2), b"okHTTP/1.1 200 OK\r\n"),
    ];
    for (start, input) in cases {
        for split in 1..input.len() {
            let mut body = start.clone();
            let (mut payload, mut after) = (Vec::new(), Vec::new());
            for piece in input.chunks(split) {
                let used = body
                    .decode(piece, &mut |p| payload.extend_from_slice(p))
                    .unwrap();
                after.extend_from_slice(&piece[used..]);
            }
            assert!(body.is_done(), "split {split}");
            assert_eq!(payload, b"ok", "split {split}");
            assert_eq!(after, b"HTTP/1.1 200 OK\r\n", "split {split}");
        }
    }
}

/// Reads one request head from a test client, byte by byte.
async fn request_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8];
        if s.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test]
async fn whole_responses_on_a_kept_connection() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut targets = Vec::new();
        // A sized answer, written in pieces so the client reads it in several goes.
        targets.push(request_head(&mut s).await);
        for piece in [
            &b"HTTP/1.1 200 OK\r\ncontent-le"[..],
            b"ngth: 5\r\n\r\nhe",
            b"llo",
        ] {
            s.write_all(piece).await.unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // A chunked answer with a trailer, the next bytes right behind it in the same write.
        targets.push(request_head(&mut s).await);
        s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nt: 1\r\n\r\nNEXT")
            .await
            .unwrap();
        // A 204 without a length has no body; then HTTP/1.0 without keep-alive: not reusable.
        targets.push(request_head(&mut s).await);
        s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
        targets.push(request_head(&mut s).await);
        s.write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
        targets
    });
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let mut buf = Vec::new();
    let (head, reusable) = get(&mut s, &addr, "/a", &mut buf).await.unwrap();
    assert_eq!((head.status, reusable, buf.len()), (200, true, 0));
    let (head, reusable) = get(&mut s, &addr, "/b", &mut buf).await.unwrap();
    assert_eq!((head.status, reusable), (200, true));
    assert_eq!(buf, b"NEXT");
    buf.clear();
    let (head, reusable) = get(&mut s, &addr, "/c", &mut buf).await.unwrap();
    assert_eq!((head.status, reusable, buf.len()), (204, true, 0));
    let (head, reusable) = get(&mut s, &addr, "/d", &mut buf).await.unwrap();
    assert_eq!((head.status, head.version, reusable), (200, 0, false));
    let targets = server.await.unwrap();
    let lines: Vec<&str> = targets.iter().filter_map(|h| h.lines().next()).collect();
    assert_eq!(
        lines,
        [
            "GET /a HTTP/1.1",
            "GET /b HTTP/1.1",
            "GET /c HTTP/1.1",
            "GET /d HTTP/1.1"
        ]
    );
}

#[tokio::test]
async fn a_body_cut_short_is_an_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        request_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort")
            .await;
    });
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let err = get(&mut s, &addr, "/", &mut Vec::new()).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn media_types_and_connection_tokens() {
    let head = |version, headers: &[(&str, &str)]| Head {
        status: 200,
        version,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    };
    let h = head(1, &[("content-type", "Text/Plain; charset=utf-8")]);
    assert_eq!(h.media_type().as_deref(), Some("text/plain"));
    assert!(h.keeps_connection());
    assert!(!head(1, &[("connection", "Upgrade, close")]).keeps_connection());
    assert!(!head(0, &[]).keeps_connection());
    assert!(head(0, &[("connection", "Keep-Alive")]).keeps_connection());
    assert_eq!(head(1, &[]).media_type(), None);
}

#[test]
fn urls() {
    assert_eq!(Url::parse("http://h/x").unwrap().authority, "h:80");
    assert_eq!(Url::parse("http://h:1?a=b").unwrap().target, "/?a=b");
    assert!(Url::parse("https://h/").is_err());
}
