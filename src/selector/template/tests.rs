//! Matching each operator, malformed templates, the bounds, and expansions of random values.

use super::*;
use crate::selector::Template;
use proptest::prelude::*;

fn t(text: &str) -> Template {
    Template::new(text).unwrap()
}

/// Asserts which topics `template` matches and which it does not.
fn check(template: &str, yes: &[&str], no: &[&str]) {
    let tpl = t(template);
    for topic in yes {
        assert!(
            tpl.matches(&Topic::new(topic).unwrap()),
            "{template} should match {topic} ({})",
            tpl.pattern()
        );
    }
    for topic in no {
        assert!(
            !tpl.matches(&Topic::new(topic).unwrap()),
            "{template} should not match {topic} ({})",
            tpl.pattern()
        );
    }
}

#[test]
fn simple_is_one_or_more_unreserved_or_encoded() {
    check(
        "/books/{id}",
        &["/books/1", "/books/a-b.c_d~", "/books/a%20b", "/books/1,2"],
        &[
            "/books/",
            "/books/1/x",
            "/books/a b",
            "/books/%zz",
            "/books/a?b",
            "/books/é",
        ],
    );
}

#[test]
fn plus_and_hash_allow_reserved() {
    check(
        "/files/{+path}",
        &["/files/a/b/c", "/files/a?b=c&d", "/files/%2F"],
        &["/files/", "/files/a b"],
    );
    check(
        "/doc{#frag}",
        &["/doc", "/doc#", "/doc#sec/1", "/doc#a,b"],
        &["/doc#a b", "/docx"],
    );
}

#[test]
fn dot_and_slash() {
    check(
        "/file{.ext}",
        &["/file", "/file.json", "/file.tar.gz"],
        &["/file.a/b", "/filex"],
    );
    check("/api{/seg}", &["/api", "/api/x", "/api/"], &["/api/x/y"]);
    check(
        "/api{/seg*}",
        &["/api", "/api/x", "/api/x/y/z"],
        &["/api/x?y"],
    );
    check("/api{/a,b}", &["/api/x", "/api/x/y"], &["/api/x/y/z"]);
}

#[test]
fn named_operators() {
    check(
        "/m{;x,y}",
        &["/m", "/m;x", "/m;x=1", "/m;x=1;y=2", "/m;y=2"],
        &["/m;z=1", "/m;y=2;x=1", "/m;x="],
    );
    check(
        "/s{?q,page}",
        &[
            "/s",
            "/s?q=a",
            "/s?q=a&page=2",
            "/s?page=2",
            "/s?q=",
            "/s?q=a,b",
        ],
        &["/s?q", "/s?other=1", "/s?page=2&q=a"],
    );
    check(
        "/s?fixed=1{&x}",
        &["/s?fixed=1", "/s?fixed=1&x=2"],
        &["/s?fixed=1&y=2", "/sXfixed=1"],
    );
}

#[test]
fn explode() {
    check(
        "/e{?list*}",
        &["/e", "/e?a=1&b=2", "/e?list=x&list=y", "/e?k="],
        &["/e?a", "/e?=1"],
    );
    check("/m{;list*}", &["/m;a=1;b", "/m;a"], &["/m;=1"]);
    check(
        "/x/{var*}",
        &["/x/a,b,c", "/x/k=v,k2=v2"],
        &["/x/a/b", "/x/"],
    );
    check("/x/{+var*}", &["/x/a/b,c"], &[]);
}

#[test]
fn prefix_counts_characters() {
    check(
        "/p/{id:3}",
        &["/p/a", "/p/abc", "/p/%20ab"],
        &["/p/abcd", "/p/"],
    );
    check("/s{?q:2}", &["/s?q=", "/s?q=ab"], &["/s?q=abc"]);
}

#[test]
fn several_variables() {
    check("/{x,y}", &["/a", "/a,b"], &["/"]);
    check("/{x}-{y}", &["/a-b", "/a-b-c"], &["/a-", "/ab"]);
    check("/{+x,y}", &["/a/b,c/d"], &[]);
}

#[test]
fn literals_are_literal() {
    check("/a.b/{id}", &["/a.b/1"], &["/aXb/1"]);
    check(
        "/q?x=(1)+[y]|z^$*/{id}",
        &["/q?x=(1)+[y]|z^$*/7"],
        &["/qx=(1)+[y]|z^$*/7", "/q?x=1+[y]|z^$*/7"],
    );
    check("/x+y/{id}", &["/x+y/1"], &["/xxy/1", "/xy/1"]);
    check("/café/{id}", &["/café/1"], &["/cafe/1"]);
}

#[test]
fn full_uris() {
    check(
        "https://example.com/books/{id}",
        &["https://example.com/books/1"],
        &[
            "https://example.com/books/1/reviews",
            "https://example.com/authors/1",
            "http://example.com/books/1",
            "https://exampleXcom/books/1",
        ],
    );
    check(
        "https://example.com/users/{id}/{?page}",
        &[
            "https://example.com/users/1/",
            "https://example.com/users/1/?page=2",
        ],
        &[
            "https://example.com/users/1/x",
            "https://example.com/users//?page=2",
        ],
    );
}

#[test]
fn malformed_templates_say_why() {
    let cases = [
        ("/a/{id", "unclosed '{'"),
        ("/a/}{id}", "'}' outside an expression"),
        ("/a/{}", "empty expression in '{}'"),
        ("/a/{=x}", "reserved operator '=' in '{=x}'"),
        ("{!x}", "reserved operator '!' in '{!x}'"),
        ("{|x}", "reserved operator '|' in '{|x}'"),
        ("/a/{x,}", "empty variable name in '{x,}'"),
        ("/a/{?}", "empty variable name in '{?}'"),
        ("/a/{a-b}", "bad variable name 'a-b' in '{a-b}'"),
        ("/a/{.a.}", "bad variable name 'a.' in '{.a.}'"),
        ("/a/{a%2}", "bad variable name 'a%2' in '{a%2}'"),
        ("{x:0}", "bad prefix ':0' (1 to 9999) in '{x:0}'"),
        (
            "{x:10000}",
            "bad prefix ':10000' (1 to 9999) in '{x:10000}'",
        ),
        ("{x:}", "bad prefix ':' (1 to 9999) in '{x:}'"),
        ("{x:+3}", "bad prefix ':+3' (1 to 9999) in '{x:+3}'"),
        ("{x*:3}", "bad variable name 'x*' in '{x*:3}'"),
        ("{a{b}}", "'{' inside '{a{b}'"),
    ];
    for (text, why) in cases {
        match Template::new(text) {
            Err(SelectorError::Template(shown, reason)) => {
                assert_eq!((shown.as_str(), reason.as_str()), (text, why));
            }
            other => panic!("{text}: {:?}", other.map(|t| t.pattern().to_owned())),
        }
    }
    let long = format!("/{{id}}{}", "x".repeat(MAX_TOPIC_LEN));
    let err = Template::new(&long).unwrap_err().to_string();
    assert!(err.ends_with("...\": longer than 1024 bytes"), "{err}");
    assert!(Template::new("{a.b,%41_1:9999,c*}").is_ok());
}

#[test]
fn huge_automata_are_refused_and_long_prefixes_are_unbounded() {
    let err = Template::new(&"{a:255}".repeat(3)).unwrap_err().to_string();
    assert!(
        err.ends_with("too complex (compiles past 131072 bytes)"),
        "{err}"
    );
    let long = format!("/p/{}", "x".repeat(250));
    check("/p/{id:9999}", &[&long], &["/p/"]);
    check("/p/{id:255}", &[&long], &[]);
    // Many variables nest deeply, past the regex parser's default limit.
    let many = format!("/m{{?{}}}", vec!["a"; 60].join(","));
    check(&many, &["/m", "/m?a=1&a=2"], &["/m?b=1"]);
}

#[test]
fn identical_templates_share_one_compiled() {
    let (a, b) = (t("/shared/{id}"), t("/shared/{id}"));
    assert!(Arc::ptr_eq(&a.compiled, &b.compiled));
    assert!(!Arc::ptr_eq(&a.compiled, &t("/other/{id}").compiled));
}

#[test]
fn answers_stay_bounded_and_right() {
    let tpl = t("/bounded/{id}");
    for i in 0..3 * MAX_CACHED_TOPICS {
        let yes = Topic::new(&format!("/bounded/{i}")).unwrap();
        let no = Topic::new(&format!("/bounded/{i}/x")).unwrap();
        assert!(tpl.matches(&yes) && tpl.matches(&yes));
        assert!(!tpl.matches(&no) && !tpl.matches(&no));
        assert!(tpl.compiled.cached() <= MAX_CACHED_TOPICS);
    }
    assert!(tpl.compiled.cached() > 0);
}

#[test]
fn threads_share_one_template_and_its_answers() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let tpl = t("/threads/{id}");
    send_sync(&tpl);
    std::thread::scope(|s| {
        for n in 0..4 {
            let tpl = t("/threads/{id}");
            s.spawn(move || {
                for i in 0..MAX_CACHED_TOPICS {
                    let yes = Topic::new(&format!("/threads/{}", i % (n + 500))).unwrap();
                    let no = Topic::new(&format!("/threads/{i}/{n}")).unwrap();
                    assert!(tpl.matches(&yes) && !tpl.matches(&no));
                }
            });
        }
    });
    assert!(tpl.compiled.cached() <= MAX_CACHED_TOPICS);
}

#[test]
fn the_table_forgets_unused_templates_and_live_ones_keep_working() {
    let table = Interner::new(4);
    for i in 0..20 {
        table.get(&format!("/t{i}/{{id}}")).unwrap();
        assert!(table.lock().len() <= 4);
    }
    let live: Vec<_> = (0..4)
        .map(|i| table.get(&format!("/live{i}/{{id}}")).unwrap())
        .collect();
    // Full of live ones: a new template is refused, naming the bound; a live one is shared.
    assert_eq!(
        table.get("/late/{id}").err(),
        Some(SelectorError::TooManyTemplates(4))
    );
    assert!(!table.lock().contains_key("/late/{id}"));
    let again = table.get("/live0/{id}").unwrap();
    assert!(Arc::ptr_eq(&again, &live[0]));
    drop(live);
    table.get("/after/{id}").unwrap(); // The live ones were dropped: room again.
    assert!(table.lock().contains_key("/after/{id}"));
    assert!(again.matches(&Topic::new("/live0/1").unwrap())); // Held, though evicted.
}

/// RFC 6570 encoding: keep `allowed` bytes, pct-encode the rest of the UTF-8.
fn encode(value: &str, reserved: bool) -> String {
    let keep = |b: u8| {
        b.is_ascii_alphanumeric()
            || b"-._~".contains(&b)
            || (reserved && b":/?#[]@!$&'()*+,;=".contains(&b))
    };
    value
        .bytes()
        .map(|b| {
            if keep(b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn part() -> impl Strategy<Value = (String, bool, String)> {
    // (literal before, reserved operator, raw value)
    ("[a-z0-9/._:?=&#+()-]{0,6}", any::<bool>(), "\\PC{1,4}")
}

proptest! {
    #[test]
    fn expansions_always_match(parts in prop::collection::vec(part(), 1..5), tail in "[a-z/.]{0,4}") {
        let (mut template, mut topic) = (String::new(), String::new());
        for (i, (lit, reserved, value)) in parts.iter().enumerate() {
            template.push_str(&format!("{lit}{{{}v{i}}}", if *reserved { "+" } else { "" }));
            topic.push_str(&format!("{lit}{}", encode(value, *reserved)));
        }
        template.push_str(&tail);
        topic.push_str(&tail);
        prop_assume!(template.len() <= MAX_TOPIC_LEN && topic.len() <= MAX_TOPIC_LEN);
        let tpl = Template::new(&template).unwrap();
        prop_assert!(tpl.matches(&Topic::new(&topic).unwrap()), "{} !~ {}", topic, tpl.pattern());
    }

    #[test]
    fn simple_never_spans_a_slash(a in "[a-z]{1,5}", b in "[a-z]{1,5}") {
        let topic = Topic::new(&format!("/x/{a}/{b}")).unwrap();
        let (simple, plus) = (t("/x/{v}"), t("/x/{+v}"));
        prop_assert!(!simple.matches(&topic));
        prop_assert!(plus.matches(&topic));
    }
}
