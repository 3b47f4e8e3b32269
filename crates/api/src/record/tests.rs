//! Unit tests of the path helpers and of [`Record`] in both of its forms.

use super::*;

#[test]
fn dot_paths() {
    let mut r = Value::Map(vec![(
        Value::from("a"),
        Value::Map(vec![(Value::from("b"), Value::from(1))]),
    )]);
    assert_eq!(get(&r, &path("a.b")), Some(&Value::from(1)));
    assert_eq!(get(&r, &path("a.c")), None);
    set(&mut r, &path("a.c.d"), Value::from("x"));
    assert_eq!(get_str(&r, &path("a.c.d")), Some("x"));
    set(&mut r, &path("a.b"), Value::from(2));
    assert_eq!(get(&r, &path("a.b")), Some(&Value::from(2)));
    // a scalar in the way becomes a map
    set(&mut r, &path("a.b.z"), Value::from(true));
    assert_eq!(get(&r, &path("a.b.z")), Some(&Value::from(true)));
    assert_eq!(
        remove(&mut r, &path("a.c")),
        Some(Value::Map(vec![(Value::from("d"), Value::from("x"))]))
    );
    assert_eq!(get(&r, &path("a.c")), None);
    assert_eq!(remove(&mut r, &path("nope.x")), None);
}

fn both(v: &Value) -> [Record; 2] {
    let mut b = Vec::new();
    encode(&mut b, v);
    [Record::from_slice(&b), Record::from_value(v.clone())]
}

#[test]
fn bytes_and_tree_answer_alike() {
    let v = Value::Map(vec![
        (Value::from("s"), Value::from("text")),
        (Value::from("b"), Value::Binary(b"bin".to_vec())),
        (Value::from("n"), Value::from(3)),
    ]);
    for mut r in both(&v) {
        assert_eq!(r.text(&path("s")), Some(Text::Str(b"text")));
        assert_eq!(r.text(&path("b")), Some(Text::Bin(b"bin")));
        assert_eq!(r.text(&path("n")), None);
        assert!(r.has(&path("n")) && !r.has(&path("x")));
        assert_eq!(r.get(&path("n")), Some(Value::from(3)));
        r.set(&path("x.y"), Value::from(true));
        r.set_str(&path("s"), "new");
        r.set_encoded(&path("e"), &[0xc0]);
        assert_eq!(r.remove(&path("b")), Some(Value::Binary(b"bin".to_vec())));
        assert!(r.is_map());
        let out = r.into_value().unwrap();
        assert_eq!(
            out,
            Value::Map(vec![
                (Value::from("s"), Value::from("new")),
                (Value::from("n"), Value::from(3)),
                (
                    Value::from("x"),
                    Value::Map(vec![(Value::from("y"), Value::from(true))])
                ),
                (Value::from("e"), Value::Nil),
            ])
        );
    }
}

#[test]
fn replace_text_converts_where_the_text_lies() {
    let v = Value::Map(vec![
        (Value::from("a"), Value::from("12")),
        (
            Value::from("x"),
            Value::Map(vec![(Value::from("y"), Value::Binary(b"yes".to_vec()))]),
        ),
        (Value::from("n"), Value::from(3)),
        (Value::from("z"), Value::from("last")),
    ]);
    for mut r in both(&v) {
        // top level: 12 as an integer, the fields after it still found
        let got = r.replace_text(&path("a"), |t, out| {
            assert_eq!(t, Text::Str(b"12"));
            crate::msgpack::write_uint(out, 12);
            "seen"
        });
        assert_eq!(got, Some("seen"));
        assert_eq!(r.text(&path("z")), Some(Text::Str(b"last")));
        // nested, and a bin
        r.replace_text(&path("x.y"), |t, out| {
            assert_eq!(t, Text::Bin(b"yes"));
            out.push(0xc3);
        });
        // nothing written: left as it was
        assert_eq!(r.replace_text(&path("z"), |_, _| 1), Some(1));
        // not text, or absent: f is not called
        assert_eq!(
            r.replace_text(&path("n"), |_, _| unreachable!()),
            None::<()>
        );
        assert_eq!(
            r.replace_text(&path("q"), |_, _| unreachable!()),
            None::<()>
        );
        r.set_str(&path("z"), "longer than before");
        assert_eq!(
            r.into_value().unwrap(),
            Value::Map(vec![
                (Value::from("a"), Value::from(12)),
                (
                    Value::from("x"),
                    Value::Map(vec![(Value::from("y"), Value::Boolean(true))])
                ),
                (Value::from("n"), Value::from(3)),
                (Value::from("z"), Value::from("longer than before")),
            ])
        );
    }
}

#[test]
fn tree_round_trips_through_bytes() {
    let v = Value::Map(vec![(Value::from("a"), Value::from(1))]);
    let mut r = Record::from_slice(&{
        let mut b = Vec::new();
        encode(&mut b, &v);
        b
    });
    if let Some(Value::Map(m)) = r.value_mut() {
        m.push((Value::from("b"), Value::from(2)));
    }
    assert!(r.is_tree());
    let b = r.bytes().to_vec();
    assert!(!r.is_tree());
    assert_eq!(decode(&b).unwrap().as_map().map(Vec::len), Some(2));
    r.set(&path("c"), Value::from(3));
    let mut out = Vec::new();
    r.write_to(&mut out);
    assert_eq!(decode(&out).unwrap().as_map().map(Vec::len), Some(3));
}
