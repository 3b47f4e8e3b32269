//! Object keys: the template rendered per event (the chunk's partition
//! key: the template is the output's `Partitioner`), then `${chunk_id}` and
//! `${uuid}` filled per chunk.

use fuwa_render::Template;
use sha2::{Digest, Sha256};

/// The object key for a chunk. It depends only on the chunk (its partition
/// key and id), so a retry, or a replay after a crash, writes the same key
/// and overwrites instead of duplicating.
pub fn object_key(rendered: &str, chunk_id: &str) -> String {
    Template::finish(rendered, chunk_id, &uuid_for(chunk_id))
}

/// `${uuid}`: a UUID (version 8, RFC 9562 "custom") derived from the chunk
/// id by SHA-256: unique per chunk like a random UUID, but stable across
/// retries.
pub fn uuid_for(chunk_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"fuwa-s3-object:");
    h.update(chunk_id.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuwa_api::{EventTime, Partitioner};
    use rmpv::Value;

    fn rec(v: Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &v).unwrap();
        out
    }

    fn tpl(src: &str) -> Template {
        let tz = fuwa_render::parse_timezone("Asia/Tokyo").unwrap();
        Template::parse(src, tz, "web-1").unwrap()
    }

    #[test]
    fn renders_the_hive_layout_in_the_agent_time_zone() {
        let t = tpl(
            "content_type=${tag}/year=%Y/month=%m/day=%d/hour=%H/${hostname}-${chunk_id}.json.gz",
        );
        assert!(Partitioner::uses_time(&t) && !Partitioner::uses_record(&t));
        // 2023-11-14T22:13:20Z is 2023-11-15 07:13 in Tokyo
        let k = t.key(
            "action_logs",
            EventTime::new(1_700_000_000, 0),
            &rec(Value::Map(vec![])),
        );
        assert_eq!(
            k,
            "content_type=action_logs/year=2023/month=11/day=15/hour=07/web-1-${chunk_id}.json.gz"
        );
        assert_eq!(
            object_key(&k, "0123abcd"),
            "content_type=action_logs/year=2023/month=11/day=15/hour=07/web-1-0123abcd.json.gz"
        );
        // an hour later in event time: another partition
        let k2 = t.key(
            "action_logs",
            EventTime::new(1_700_003_600, 0),
            &rec(Value::Map(vec![])),
        );
        assert!(k2.contains("hour=08/"), "{k2}");
    }

    #[test]
    fn tag_parts_and_record_fields_are_sanitised() {
        let t = tpl("${tag[0]}/${tag[1]}/ct=${record.ct}/${record.missing}/${uuid}");
        assert!(Partitioner::uses_record(&t));
        let r = rec(Value::Map(vec![(
            Value::from("ct"),
            Value::from("../a b/c"),
        )]));
        let k = t.key("app.web", EventTime::new(0, 0), &r);
        assert_eq!(k, "app/web/ct=.._a_b_c/unknown/${uuid}");
        let t = tpl("x/${record.ct}/${chunk_id}");
        let r = rec(Value::Map(vec![(Value::from("ct"), Value::from(".."))]));
        assert_eq!(t.key("a", EventTime::new(0, 0), &r), "x/_/${chunk_id}");
    }

    #[test]
    fn uuid_is_stable_per_chunk_and_unique_across_chunks() {
        let a = uuid_for("chunk-a");
        assert_eq!(a, uuid_for("chunk-a"));
        assert_ne!(a, uuid_for("chunk-b"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8", "version 8: {a}");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "variant: {a}");
        assert_eq!(object_key("p/${uuid}.gz", "chunk-a"), format!("p/{a}.gz"));
    }
}
