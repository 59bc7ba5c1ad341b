//! A small, deterministic mutation engine for `tests/fuzz_records.rs` (docs/testing.md,
//! "Fuzzing the record parser and normaliser").
//!
//! Every case is a pure function of `(seed, case index)`: [`Rng::for_case`] derives the case's
//! generator from both, so one failing case replays alone, and the cases can be spread over
//! threads without changing what any case is. Seeds are real records (and whole delivery
//! files) of the bundled invictus-aws-2023 dataset; each case applies 1–3 [`Mutation`]s.

use chrono::{DateTime, Utc};
use iamtrail_core::record::parse_time;
use serde_json::{json, Map, Value};

/// splitmix64: tiny, fast, and good enough to drive mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// The generator of case `case` of the run seeded with `seed`.
    pub fn for_case(seed: u64, case: u64) -> Rng {
        Rng(mix(seed ^ 0x6A09_E667_F3BC_C909) ^ mix(case.wrapping_add(0x9E37_79B9_7F4A_7C15)))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One kind of damage done to a record (or a delivery file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mutation {
    /// Cut the JSON text at a random byte.
    Truncate,
    /// A value replaced by one of another JSON type (`userIdentity` as a string, `eventTime`
    /// as a number, `requestParameters` as an array, ...).
    WrongType,
    /// A string value of 100 KB–1 MB.
    HugeString,
    /// Arrays/objects nested 200–5000 deep (sometimes 30–120, which parses) in
    /// `requestParameters` or another value, sometimes unbalanced.
    DeepNesting,
    /// Invalid JSON escapes and lone surrogates (`\x`, `\u12`, `\ud800`, ...) inside a string.
    BadEscape,
    /// Raw invalid UTF-8 bytes (lossy-converted for LookupEvents, raw for files).
    InvalidUtf8,
    /// A key written twice (`eventID`, `eventTime`, `userIdentity`, ...).
    DuplicateKey,
    /// `eventID`, `eventTime`, `eventName` or `eventSource` removed.
    RemoveRequired,
    /// `eventID`, `eventTime`, `eventName` or `eventSource` empty or blank.
    EmptyRequired,
    /// `eventTime` in a bizarre format or out of range (offsets across year 0/9999, leap
    /// seconds, month 13, epoch numbers, ...).
    BizarreTime,
    /// Random structural bytes inserted, replaced, deleted or repeated.
    ByteHavoc,
    /// The record is not an object (an array, a string, a number, `null`).
    NotAnObject,
}

impl Mutation {
    /// Every mutation, with its relative weight.
    pub const WEIGHTED: [(Mutation, usize); 12] = [
        (Mutation::Truncate, 12),
        (Mutation::WrongType, 16),
        (Mutation::HugeString, 1),
        (Mutation::DeepNesting, 6),
        (Mutation::BadEscape, 8),
        (Mutation::InvalidUtf8, 8),
        (Mutation::DuplicateKey, 8),
        (Mutation::RemoveRequired, 8),
        (Mutation::EmptyRequired, 8),
        (Mutation::BizarreTime, 12),
        (Mutation::ByteHavoc, 8),
        (Mutation::NotAnObject, 2),
    ];

    fn choose(rng: &mut Rng) -> Mutation {
        let total: usize = Self::WEIGHTED.iter().map(|(_, w)| w).sum();
        let mut n = rng.below(total);
        for (m, w) in Self::WEIGHTED {
            if n < w {
                return m;
            }
            n -= w;
        }
        unreachable!()
    }

    /// Whether the mutation works on the JSON value (before serialisation) or on the text.
    fn on_value(self) -> bool {
        matches!(
            self,
            Mutation::WrongType
                | Mutation::HugeString
                | Mutation::DeepNesting
                | Mutation::RemoveRequired
                | Mutation::EmptyRequired
                | Mutation::BizarreTime
                | Mutation::NotAnObject
        )
    }
}

/// Placeholder a deep-nesting mutation puts in the value; replaced in the text, so that no
/// deep `Value` is ever built (or dropped) by the harness itself.
const DEEP_MARKER: &str = "\u{1}FUZZ-DEEP\u{1}";

const REQUIRED: [&str; 4] = ["eventID", "eventTime", "eventName", "eventSource"];

/// Paths a mutation likes to aim at (the rest of the time it picks any value of the record).
const INTERESTING: &[&[&str]] = &[
    &["eventID"],
    &["eventTime"],
    &["eventName"],
    &["eventSource"],
    &["eventType"],
    &["awsRegion"],
    &["sourceIPAddress"],
    &["userAgent"],
    &["errorCode"],
    &["errorMessage"],
    &["readOnly"],
    &["recipientAccountId"],
    &["requestParameters"],
    &["responseElements"],
    &["additionalEventData"],
    &["additionalEventData", "MFAUsed"],
    &["requestParameters", "roleArn"],
    &["userIdentity"],
    &["userIdentity", "type"],
    &["userIdentity", "arn"],
    &["userIdentity", "userName"],
    &["userIdentity", "principalId"],
    &["userIdentity", "accountId"],
    &["userIdentity", "accessKeyId"],
    &["userIdentity", "invokedBy"],
    &["userIdentity", "sessionContext"],
    &["userIdentity", "sessionContext", "sessionIssuer"],
    &["userIdentity", "sessionContext", "sessionIssuer", "arn"],
    &[
        "userIdentity",
        "sessionContext",
        "sessionIssuer",
        "userName",
    ],
    &["userIdentity", "sessionContext", "attributes"],
    &[
        "userIdentity",
        "sessionContext",
        "attributes",
        "mfaAuthenticated",
    ],
];

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Every path in `v` (not the root), depth-first, at most `limit` of them.
fn all_paths(v: &Value, prefix: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>, limit: usize) {
    let children: Vec<(Seg, &Value)> = match v {
        Value::Object(m) => m.iter().map(|(k, v)| (Seg::Key(k.clone()), v)).collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (Seg::Index(i), v))
            .collect(),
        _ => return,
    };
    for (seg, child) in children {
        if out.len() >= limit {
            return;
        }
        prefix.push(seg);
        out.push(prefix.clone());
        all_paths(child, prefix, out, limit);
        prefix.pop();
    }
}

/// A path to mutate: an interesting one half the time, else any existing value.
fn pick_path(rng: &mut Rng, record: &Value) -> Vec<Seg> {
    if rng.percent(50) {
        return rng
            .pick(INTERESTING)
            .iter()
            .map(|k| Seg::Key(k.to_string()))
            .collect();
    }
    let mut paths = Vec::new();
    all_paths(record, &mut Vec::new(), &mut paths, 400);
    if paths.is_empty() {
        return vec![Seg::Key("eventID".into())];
    }
    rng.pick(&paths).clone()
}

/// Sets the value at `path`, creating (or replacing by) objects on the way.
fn set_path(root: &mut Value, path: &[Seg], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        *root = value;
        return;
    };
    let mut cur = root;
    for seg in parents {
        cur = match seg {
            Seg::Index(i) if cur.as_array().is_some_and(|a| *i < a.len()) => &mut cur[*i],
            Seg::Index(_) => return,
            Seg::Key(k) => {
                if !cur.is_object() {
                    *cur = Value::Object(Map::new());
                }
                cur.as_object_mut()
                    .expect("an object")
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()))
            }
        };
    }
    match last {
        Seg::Index(i) => {
            if let Some(slot) = cur.as_array_mut().and_then(|a| a.get_mut(*i)) {
                *slot = value;
            }
        }
        Seg::Key(k) => {
            if !cur.is_object() {
                *cur = Value::Object(Map::new());
            }
            cur.as_object_mut()
                .expect("an object")
                .insert(k.clone(), value);
        }
    }
}

fn get_path<'a>(root: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(root, |cur, seg| match seg {
        Seg::Key(k) => cur.get(k),
        Seg::Index(i) => cur.get(*i),
    })
}

fn kind(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// A value of a random JSON type other than `not_like`'s.
fn wrong_value(rng: &mut Rng, not_like: Option<&Value>) -> Value {
    loop {
        let v = match rng.below(6) {
            0 => Value::Null,
            1 => Value::Bool(rng.percent(50)),
            2 => rng
                .pick(&[
                    json!(0),
                    json!(-1),
                    json!(1.5),
                    json!(1e308),
                    json!(-0.0),
                    json!(i64::MIN),
                    json!(u64::MAX),
                    json!(1_705_329_052),
                    json!(1.705_329_052e12),
                ])
                .clone(),
            3 => rng
                .pick(&[
                    json!(""),
                    json!("x"),
                    json!("true"),
                    json!("123"),
                    json!("Root"),
                    json!("arn:aws:iam::111122223333:role/aws-service-role/x/AWSServiceRoleForX"),
                    json!("é😀\u{0}"),
                ])
                .clone(),
            4 => rng
                .pick(&[
                    json!([]),
                    json!([1, "a", null]),
                    json!(["arn:aws:iam::1:role/Admin"]),
                    json!([[{}]]),
                ])
                .clone(),
            _ => rng
                .pick(&[
                    json!({}),
                    json!({"a": 1}),
                    json!({"type": "Root", "arn": "arn:aws:iam::1:root"}),
                    json!({"roleArn": ["not", "a", "string"]}),
                ])
                .clone(),
        };
        if not_like.is_none_or(|old| kind(old) != kind(&v)) {
            return v;
        }
    }
}

/// A string of 100 KB to 1 MB (UTF-8 bytes; log-uniform, so the small end, just over the
/// 400 KB item limit or not, is as well covered as the large), of one repeated unit.
pub fn huge_string(rng: &mut Rng) -> String {
    let unit_interval = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let len = (100.0 * 1024.0 * 10.24f64.powf(unit_interval)) as usize;
    let unit = *rng.pick(&["x", "é", "€", "😀", "\"", "\\", "\u{1}", "a/b:", "\u{fffd}"]);
    unit.repeat(len.div_ceil(unit.len()))
}

/// `eventTime` values no producer should write.
fn bizarre_time(rng: &mut Rng) -> Value {
    const FIXED: &[&str] = &[
        "2024-13-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2023-02-29T12:00:00Z",
        "2024-01-15T25:00:00Z",
        "2024-01-15T24:00:00Z",
        "2024-01-15T14:60:00Z",
        "2024-01-15T23:59:60Z",
        "2016-12-31T23:59:60Z",
        "0000-01-01T00:00:00Z",
        "0000-01-01T00:30:00+01:00",
        "0000-01-01T00:00:00+23:59",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:30:00-01:00",
        "9999-12-31T23:59:59-23:59",
        "1970-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "2024-01-15T14:30:52.123456789123Z",
        "2024-01-15T14:30:52.Z",
        "2024-01-15 14:30:52Z",
        "2024-01-15t14:30:52z",
        "2024-01-15T14:30:52",
        "2024-01-15",
        "14:30:52",
        "1705329052",
        "+275760-09-13T00:00:00Z",
        "-000001-01-01T00:00:00Z",
        "2024-01-15T14:30:52+99:99",
        "2024-01-15T14:30:52+24:00",
        "2024-01-15T14:30:52-23:59",
        "Mon, 15 Jan 2024 14:30:52 GMT",
        "2024-W03-1T14:30:52Z",
        "２０２４-01-15T14:30:52Z",
        "2024-01-15T14:30:52Z\u{0}",
        " 2024-01-15T14:30:52Z ",
        "",
    ];
    match rng.below(10) {
        0..=5 => json!(rng.pick(FIXED)),
        6..=7 => {
            // Digits in every field, some out of range.
            let offset = match rng.below(3) {
                0 => "Z".to_string(),
                _ => format!(
                    "{}{:02}:{:02}",
                    if rng.percent(50) { '+' } else { '-' },
                    rng.below(30),
                    rng.below(70)
                ),
            };
            json!(format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{offset}",
                rng.below(10_000),
                rng.below(20),
                rng.below(40),
                rng.below(30),
                rng.below(70),
                rng.below(70)
            ))
        }
        _ => wrong_value(rng, Some(&json!(""))),
    }
}

/// Nested arrays/objects, `depth` deep, as JSON text; sometimes unbalanced.
fn deep_text(rng: &mut Rng) -> String {
    let depth = if rng.percent(20) {
        rng.range(30, 120)
    } else {
        rng.range(200, 5000)
    };
    let style = rng.below(3);
    let mut open = String::new();
    let mut close = String::new();
    for i in 0..depth {
        let array = match style {
            0 => true,
            1 => false,
            _ => i % 2 == 0,
        };
        if array {
            open.push('[');
            close.push(']');
        } else {
            open.push_str("{\"a\":");
            close.push('}');
        }
    }
    if rng.percent(15) {
        close.pop();
    }
    format!("{open}\"leaf\"{close}")
}

fn apply_value(rng: &mut Rng, m: Mutation, record: &mut Value) {
    match m {
        Mutation::WrongType => {
            let path = pick_path(rng, record);
            let new = wrong_value(rng, get_path(record, &path));
            set_path(record, &path, new);
        }
        Mutation::HugeString => {
            let path = pick_path(rng, record);
            let s = huge_string(rng);
            set_path(record, &path, Value::String(s));
        }
        Mutation::DeepNesting => {
            let path = if rng.percent(70) {
                vec![Seg::Key("requestParameters".into())]
            } else {
                pick_path(rng, record)
            };
            set_path(record, &path, Value::String(DEEP_MARKER.into()));
        }
        Mutation::RemoveRequired => {
            if let Some(m) = record.as_object_mut() {
                m.remove(*rng.pick(&REQUIRED));
            }
        }
        Mutation::EmptyRequired => {
            let key = *rng.pick(&REQUIRED);
            let blank = *rng.pick(&["", " ", "\t\n", "\u{3000}"]);
            set_path(record, &[Seg::Key(key.into())], json!(blank));
        }
        Mutation::BizarreTime => {
            let t = bizarre_time(rng);
            set_path(record, &[Seg::Key("eventTime".into())], t);
        }
        Mutation::NotAnObject => {
            let old = record.take();
            *record = match rng.below(4) {
                0 => json!([old]),
                1 => json!("a record"),
                2 => json!(42),
                _ => Value::Null,
            };
        }
        _ => unreachable!("{m:?} works on the text"),
    }
}

/// Byte offsets just inside string values (after `":"`), where a bad escape is most harmful.
fn string_value_starts(text: &[u8]) -> Vec<usize> {
    text.windows(3)
        .enumerate()
        .filter(|(_, w)| w == b"\":\"")
        .map(|(i, _)| i + 3)
        .collect()
}

fn apply_text(rng: &mut Rng, m: Mutation, text: &mut Vec<u8>) {
    match m {
        Mutation::Truncate => {
            let at = rng.below(text.len() + 1);
            text.truncate(at);
        }
        Mutation::BadEscape => {
            const ESCAPES: &[&str] = &[
                "\\x",
                "\\u12",
                "\\u12\"",
                "\\ud800",
                "\\udc00",
                "\\ud800\\u0041",
                "\\uD83D",
                "\\ud83d\\ude00",
                "\\u0000",
                "\\",
                "\\U0041",
                "\\'",
                "\\uZZZZ",
            ];
            let starts = string_value_starts(text);
            let at = if !starts.is_empty() && rng.percent(70) {
                *rng.pick(&starts)
            } else {
                rng.below(text.len() + 1)
            };
            let esc = rng.pick(ESCAPES).as_bytes().to_vec();
            text.splice(at..at, esc);
        }
        Mutation::InvalidUtf8 => {
            const BAD: &[&[u8]] = &[
                &[0x80],
                &[0xBF],
                &[0xC0, 0xAF],
                &[0xC1],
                &[0xF5],
                &[0xFF, 0xFE],
                &[0xED, 0xA0, 0x80],
                &[0xF0, 0x9F],
                &[0xE2, 0x82],
                &[0xEF, 0xBB, 0xBF],
            ];
            for _ in 0..rng.range(1, 4) {
                let starts = string_value_starts(text);
                let at = if !starts.is_empty() && rng.percent(60) {
                    *rng.pick(&starts)
                } else {
                    rng.below(text.len() + 1)
                };
                let bytes = rng.pick(BAD).to_vec();
                text.splice(at..at, bytes);
            }
        }
        Mutation::DuplicateKey => {
            let key = *rng.pick(&[
                "eventID",
                "eventTime",
                "eventName",
                "eventSource",
                "userIdentity",
                "requestParameters",
                "awsRegion",
            ]);
            let value = match rng.below(4) {
                0 => json!("dup-0000-1111"),
                1 => json!(""),
                2 => bizarre_time(rng),
                _ => wrong_value(rng, None),
            };
            let pair = format!("\"{key}\":{value}");
            if rng.percent(50) {
                if let Some(at) = text.iter().position(|b| *b == b'{') {
                    text.splice(at + 1..at + 1, format!("{pair},").into_bytes());
                }
            } else if let Some(at) = text.iter().rposition(|b| *b == b'}') {
                text.splice(at..at, format!(",{pair}").into_bytes());
            }
        }
        Mutation::ByteHavoc => {
            const BYTES: &[u8] = b"{}[]\",:\\0-eE.tfn \n";
            for _ in 0..rng.range(1, 8) {
                if text.is_empty() {
                    text.push(*rng.pick(BYTES));
                    continue;
                }
                let at = rng.below(text.len());
                match rng.below(4) {
                    0 => text[at] = *rng.pick(BYTES),
                    1 => text.insert(at, *rng.pick(BYTES)),
                    2 => {
                        let end = (at + rng.range(1, 16)).min(text.len());
                        text.drain(at..end);
                    }
                    _ => {
                        let end = (at + rng.range(1, 32)).min(text.len());
                        let chunk = text[at..end].to_vec();
                        text.splice(at..at, chunk);
                    }
                }
            }
        }
        _ => unreachable!("{m:?} works on the value"),
    }
}

fn choose_mutations(rng: &mut Rng) -> Vec<Mutation> {
    (0..rng.range(1, 3))
        .map(|_| Mutation::choose(rng))
        .collect()
}

/// Serialises `value` and applies the text mutations in order; deep-nesting markers are
/// replaced by nested text first.
fn render(rng: &mut Rng, value: &Value, mutations: &[Mutation]) -> Vec<u8> {
    let mut text = serde_json::to_string(value).expect("a Value serialises");
    let marker = serde_json::to_string(DEEP_MARKER).expect("a string serialises");
    while let Some(at) = text.find(&marker) {
        let deep = deep_text(rng);
        text.replace_range(at..at + marker.len(), &deep);
    }
    let mut bytes = text.into_bytes();
    for m in mutations.iter().filter(|m| !m.on_value()) {
        apply_text(rng, *m, &mut bytes);
    }
    bytes
}

/// Mutates one record: value mutations on `record`, then serialisation and text mutations.
pub fn mutate_record(rng: &mut Rng, mut record: Value, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations.iter().filter(|m| m.on_value()) {
        apply_value(rng, *m, &mut record);
    }
    render(rng, &record, mutations)
}

/// The summary fields of one LookupEvents result, owned.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub event_id: Option<String>,
    pub event_name: Option<String>,
    pub event_source: Option<String>,
    pub event_time: Option<DateTime<Utc>>,
    pub username: Option<String>,
    pub cloudtrail_event: Option<String>,
}

/// A summary string: mostly the real value, sometimes missing, blank, odd or over-long.
fn summary_text(rng: &mut Rng, real: Option<&str>) -> Option<String> {
    match rng.below(100) {
        0..=74 => real.map(String::from),
        75..=82 => None,
        83..=87 => Some(String::new()),
        88..=90 => Some(" \t".into()),
        91..=93 => Some(format!(
            "{:016x}-{:08x}",
            rng.next_u64(),
            rng.next_u64() as u32
        )),
        94..=96 => Some("k".repeat(rng.range(1000, 4096))),
        _ => Some("é😀\u{0}\u{fffd}".into()),
    }
}

fn summary_time(rng: &mut Rng, real: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match rng.below(100) {
        0..=74 => real,
        75..=82 => None,
        _ => {
            let secs: i64 = match rng.below(7) {
                0 => -62_167_219_201, // -0001-12-31T23:59:59Z
                1 => -62_167_219_200, // 0000-01-01T00:00:00Z
                2 => 253_402_300_799, // 9999-12-31T23:59:59Z
                3 => 253_402_300_800, // 10000-01-01T00:00:00Z
                4 => 0,
                5 => -(rng.below(1 << 40) as i64) * 100,
                _ => rng.below(1 << 40) as i64 * 100,
            };
            DateTime::from_timestamp(secs, 0)
        }
    }
}

/// A mutated LookupEvents result made from one real record.
pub fn lookup_case(rng: &mut Rng, seed: &Value, mutations: &[Mutation]) -> Summary {
    let text = mutate_record(rng, seed.clone(), mutations);
    let field = |k: &str| seed.get(k).and_then(Value::as_str);
    let real_user = seed
        .get("userIdentity")
        .and_then(|u| u.get("userName"))
        .and_then(Value::as_str);
    Summary {
        event_id: summary_text(rng, field("eventID")),
        event_name: summary_text(rng, field("eventName")),
        event_source: summary_text(rng, field("eventSource")),
        event_time: summary_time(rng, field("eventTime").and_then(parse_time)),
        username: summary_text(rng, real_user),
        // The API hands over a String: invalid UTF-8 arrives lossy-converted.
        cloudtrail_event: (!rng.percent(3)).then(|| String::from_utf8_lossy(&text).into_owned()),
    }
}

/// A mutated delivery file: a real file damaged as text, or a small file built from mutated
/// records, sometimes with a broken envelope; gzip-compressed (sometimes corruptly) or not.
pub fn file_case(
    rng: &mut Rng,
    files: &[Vec<u8>],
    records: &[Value],
    mutations: &[Mutation],
) -> Vec<u8> {
    let mut bytes = if rng.percent(30) {
        let mut bytes = rng.pick(files).clone();
        for m in mutations {
            if m.on_value() {
                // A value mutation of a whole file: damage as text instead.
                apply_text(rng, Mutation::ByteHavoc, &mut bytes);
            } else {
                apply_text(rng, *m, &mut bytes);
            }
        }
        bytes
    } else {
        let mut list = Vec::new();
        for _ in 0..rng.below(7) {
            let mut r = rng.pick(records).clone();
            if rng.percent(60) {
                for m in choose_mutations(rng).into_iter().filter(|m| m.on_value()) {
                    apply_value(rng, m, &mut r);
                }
            }
            list.push(r);
        }
        let doc = match rng.below(20) {
            0 => json!({"Records": {"0": list}}),
            1 => json!({"records": list}),
            2 => json!(list),
            3 => json!({"Records": null}),
            4 => json!({"Records": list, "Records2": [1]}),
            _ => json!({ "Records": list }),
        };
        let mut bytes = render(rng, &doc, mutations);
        if rng.percent(3) {
            bytes.splice(0..0, [0xEF, 0xBB, 0xBF]); // a byte-order mark
        }
        bytes
    };
    if rng.percent(30) {
        bytes = gzip(&bytes);
        match rng.below(10) {
            0 => {
                let at = rng.below(bytes.len() + 1);
                bytes.truncate(at);
            }
            1 => {
                let at = rng.range(2, bytes.len() - 1);
                bytes[at] ^= 1 << rng.below(8);
            }
            2 => {
                let again = bytes.clone();
                bytes.extend(again); // two members: MultiGzDecoder reads both
            }
            _ => {}
        }
    }
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("in-memory write");
    gz.finish().expect("in-memory gzip")
}

/// The mutations of one case.
pub fn case_mutations(rng: &mut Rng) -> Vec<Mutation> {
    choose_mutations(rng)
}
