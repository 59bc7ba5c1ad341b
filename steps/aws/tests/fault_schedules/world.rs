//! A generated world: a seeded random stream of real CloudTrail records (rewritten from the
//! bundled dataset) with bursts, shared timestamps and late deliveries, and what the tracker
//! must end up with.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use chrono::{DateTime, Duration, DurationRound, Utc};
use iamtrail_aws::ports::LookupEvent;
use iamtrail_core::outbox::is_alertable;
use iamtrail_core::record::{format_time, read_log_dir, CloudTrailRecord};
use iamtrail_core::rules::evaluate;
use iamtrail_core::{normalize, Settings};
use serde_json::Value;

/// SplitMix64: small, seedable, good enough to drive schedules.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The dataset's records, grouped by the source they belong to, and those that raise alerts.
pub struct Templates {
    pub by_source: BTreeMap<&'static str, Vec<Value>>,
    pub alerting: BTreeMap<&'static str, Vec<Value>>,
}

impl Templates {
    pub fn load() -> Templates {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../datasets/invictus-aws-2023/CloudTrail");
        let mut by_source: BTreeMap<&'static str, Vec<Value>> = BTreeMap::new();
        let mut alerting: BTreeMap<&'static str, Vec<Value>> = BTreeMap::new();
        for (_, log) in read_log_dir(&dir).expect("the bundled dataset") {
            for r in log.records {
                let source = match r.event_source.as_str() {
                    "iam.amazonaws.com" => "iam.amazonaws.com",
                    "sts.amazonaws.com" => "sts.amazonaws.com",
                    "signin.amazonaws.com" => "signin.amazonaws.com",
                    _ => continue,
                };
                let alerts = !evaluate(&normalize(&r, Default::default())).is_empty();
                if alerts {
                    alerting.entry(source).or_default().push(r.raw.clone());
                }
                by_source.entry(source).or_default().push(r.raw);
            }
        }
        Templates {
            by_source,
            alerting,
        }
    }
}

/// One generated event: the record, where LookupEvents serves it, and from when.
#[derive(Debug, Clone)]
pub struct Generated {
    pub region: String,
    pub event: LookupEvent,
    /// When CloudTrail makes it visible to LookupEvents (after `event_time`).
    pub visible_at: DateTime<Utc>,
}

/// The events of a world and the outcome they call for.
pub struct World {
    pub events: Vec<Generated>,
    /// Event ids that must be in the table (tracked, not filtered).
    pub expected_ids: BTreeSet<String>,
    /// (event id, rule id) pairs that must be delivered.
    pub expected_alerts: BTreeSet<(String, String)>,
    /// Events delivered beyond the overlap.
    pub late_beyond_overlap: usize,
}

fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::seconds(1)).unwrap_or(t)
}

/// Generates `count` events between `start` and `end` in `regions`: IAM in the first region,
/// STS and sign-in anywhere; bursts of 50-150 events in one or two seconds; a share delivered
/// late (within the overlap, or beyond it).
pub fn generate(
    rng: &mut Rng,
    templates: &Templates,
    regions: &[String],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    count: usize,
    settings: &Settings,
) -> World {
    let span = (end - start).num_seconds().max(1) as u64;
    let mut events = Vec::with_capacity(count);
    let mut late_beyond_overlap = 0;
    while events.len() < count {
        let burst = if rng.chance(0.08) {
            50 + rng.below(100) as usize
        } else {
            1 + rng.below(3) as usize
        };
        let base = whole_second(start + Duration::seconds(rng.below(span) as i64));
        let source = *rng.pick(&[
            "iam.amazonaws.com",
            "sts.amazonaws.com",
            "signin.amazonaws.com",
        ]);
        let region = if source == "iam.amazonaws.com" {
            regions[0].clone()
        } else {
            rng.pick(regions).clone()
        };
        for i in 0..burst.min(count - events.len()) {
            // Bursts share one or two seconds: more than 50 events in a second.
            let time = base + Duration::seconds((i % 2) as i64 * (burst > 50) as i64);
            // One event in ten is one the rules alert on (they are rare in the dataset).
            let template = match templates.alerting.get(source) {
                Some(alerting) if rng.chance(0.1) => rng.pick(alerting).clone(),
                _ => rng.pick(&templates.by_source[source]).clone(),
            };
            let id = format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                rng.next_u64() as u32,
                rng.below(1 << 16),
                rng.below(1 << 12),
                rng.below(1 << 12),
                rng.next_u64() >> 16
            );
            let mut raw = template;
            raw["eventID"] = Value::String(id.clone());
            raw["eventTime"] = Value::String(format_time(time));
            raw["awsRegion"] = Value::String(region.clone());
            let text = raw.to_string();
            let record = CloudTrailRecord::from_value(raw).expect("a rewritten dataset record");
            let delay = if rng.chance(0.05) {
                late_beyond_overlap += 1;
                settings.overlap + Duration::minutes(10 + rng.below(120) as i64)
            } else if rng.chance(0.2) {
                Duration::minutes(
                    1 + rng.below(settings.overlap.num_minutes().max(1) as u64) as i64,
                )
            } else {
                Duration::seconds(30 + rng.below(240) as i64)
            };
            events.push(Generated {
                region: region.clone(),
                event: LookupEvent {
                    event_id: Some(id),
                    event_name: Some(record.event_name.clone()),
                    event_source: Some(record.event_source.clone()),
                    event_time: Some(time),
                    username: None,
                    cloudtrail_event: Some(text),
                },
                visible_at: time + delay,
            });
        }
    }
    let mut expected_ids = BTreeSet::new();
    let mut expected_alerts = BTreeSet::new();
    let now = Utc::now();
    for g in &events {
        let record =
            CloudTrailRecord::from_lookup_event_json(g.event.cloudtrail_event.as_deref().unwrap())
                .unwrap();
        if settings.filter.classify(&record).is_some() {
            continue;
        }
        let item = normalize(&record, settings.normalize);
        if is_alertable(record.event_time, now) {
            for m in evaluate(&item) {
                expected_alerts.insert((item.event_id.clone(), m.rule_id.to_string()));
            }
        }
        expected_ids.insert(item.event_id);
    }
    World {
        events,
        expected_ids,
        expected_alerts,
        late_beyond_overlap,
    }
}
