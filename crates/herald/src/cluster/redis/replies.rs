//! What Redis answers, read without panics: numbers, strings, hashes, stream
//! entries, consumer listings, in RESP2 or RESP3 shapes.

use redis::Value;

pub(super) fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

pub(super) fn saturate_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

pub(super) fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// HGETALL's answer (a flat RESP2 array or a RESP3 map) as pairs.
pub(super) fn pairs(v: Value) -> Vec<(String, String)> {
    let flat: Vec<Value> = match v {
        Value::Array(a) => a,
        Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => return Vec::new(),
    };
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        if let (Some(k), Some(v)) = (as_string(&k), as_string(&v)) {
            out.push((k, v));
        }
    }
    out
}

/// XINFO CONSUMERS' answer: (name, pending, idle ms) per consumer.
pub(super) fn consumer_list(v: Value) -> Vec<(String, u64, u64)> {
    let Value::Array(consumers) = v else {
        return Vec::new();
    };
    consumers
        .into_iter()
        .filter_map(|c| {
            let fields = match c {
                Value::Array(f) => f,
                Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
                _ => return None,
            };
            let (mut name, mut pending, mut idle) = (None, None, None);
            let mut it = fields.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                match as_string(&k).as_deref() {
                    Some("name") => name = as_string(&v),
                    Some("pending") => pending = as_u64(&v),
                    Some("idle") => idle = as_u64(&v),
                    _ => {}
                }
            }
            Some((name?, pending?, idle?))
        })
        .collect()
}

/// Per stream, its entries.
pub(super) type StreamEntries = Vec<(String, Vec<StreamEntry>)>;

/// XREADGROUP's answer: per stream, its entries (RESP2 arrays or a RESP3 map).
pub(super) fn stream_entries(v: Value) -> StreamEntries {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => {
                    let entries = kv.pop()?;
                    Some((kv.pop()?, entries))
                }
                _ => None,
            })
            .collect(),
        Value::Map(m) => m,
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter_map(|(name, entries)| Some((as_string(&name)?, entry_list(entries))))
        .collect()
}

/// A stream entry as read: its id, payload (field `p`) and, for queue entries, the
/// times consumers gave it back (field `r`, 0 when absent).
pub(super) struct StreamEntry {
    pub(super) id: String,
    pub(super) payload: Vec<u8>,
    pub(super) given_back: u32,
}

/// `[[id, [field, value, ...]], ...]` → entries with a payload; deleted entries
/// (nil) are skipped.
pub(super) fn entry_list(v: Value) -> Vec<StreamEntry> {
    let Value::Array(entries) = v else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|e| {
            let Value::Array(mut e) = e else { return None };
            if e.len() != 2 {
                return None;
            }
            let fields = e.pop()?;
            let id = as_string(&e.pop()?)?;
            let fields = match fields {
                Value::Array(f) => f,
                Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
                _ => return None,
            };
            let (mut payload, mut given_back) = (None, 0);
            let mut it = fields.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                match (as_string(&k).as_deref(), v) {
                    (Some("p"), Value::BulkString(p)) => payload = Some(p),
                    (Some("r"), v) => given_back = as_u64(&v).map_or(0, saturate_u32),
                    _ => {}
                }
            }
            Some(StreamEntry {
                id,
                payload: payload?,
                given_back,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_entries_carry_their_give_back_count() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry =
            |id: &str, fields: Vec<Value>| Value::Array(vec![bulk(id), Value::Array(fields)]);
        let read = entry_list(Value::Array(vec![
            entry("1-0", vec![bulk("p"), bulk("first")]),
            entry("2-0", vec![bulk("p"), bulk("again"), bulk("r"), bulk("3")]),
            entry("3-0", vec![bulk("r"), bulk("1")]),
            Value::Nil,
        ]));
        let got: Vec<(&str, &[u8], u32)> = read
            .iter()
            .map(|e| (e.id.as_str(), &e.payload[..], e.given_back))
            .collect();
        assert_eq!(
            got,
            [("1-0", &b"first"[..], 0), ("2-0", &b"again"[..], 3)],
            "an entry without a payload is skipped"
        );
    }
}
