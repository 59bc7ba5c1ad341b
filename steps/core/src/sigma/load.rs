//! Reading and validating Sigma rule files.
//!
//! A file holds exactly one rule. It is checked first as YAML ([`super::checks`]: its kind,
//! `id`, `logsource`, condition, modifiers and field names), then parsed and compiled by the
//! engine; any problem rejects the file with a [`RejectReason`]. Every file is checked, and the
//! load fails with all the rejections together, so one deploy shows every bad file. The rules
//! and the messages are listed in docs/sigma.md.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rsigma_parser::parse_sigma_yaml;

use super::{attack_techniques, checks, severity_for_level, SigmaRule, SigmaRules};

/// Longest engine message kept in a [`RejectReason`] (the condition parser can repeat itself).
const MAX_MESSAGE_CHARS: usize = 400;

/// Why a rule file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("cannot read the file: {0}")]
    Unreadable(String),
    #[error("not valid YAML: {0}")]
    Yaml(String),
    #[error("the file is empty; it must hold one Sigma rule")]
    Empty,
    #[error("the file holds {0} YAML documents; put each rule in its own file")]
    SeveralDocuments(usize),
    #[error("not a Sigma rule: {0}")]
    NotARule(String),
    #[error("correlation rules are not supported: rules are evaluated one event at a time")]
    Correlation,
    #[error(
        "Sigma filter documents are not supported: write the exclusion into the rule's condition"
    )]
    Filter,
    #[error("rule collections (action: {0}) are not supported: put each rule in its own file")]
    Collection(String),
    #[error("the rule has no id")]
    MissingId,
    #[error(
        "id {0:?} is not usable: it must be 1 to 100 printable ASCII characters without spaces"
    )]
    InvalidId(String),
    #[error("id {id} is also the id of {first_file}")]
    DuplicateId { id: String, first_file: String },
    #[error("status unsupported: the rule's authors mark it as not usable as written")]
    StatusUnsupported,
    #[error("logsource must be product: aws, service: cloudtrail (found {0})")]
    Logsource(String),
    #[error("the rule has no detection")]
    MissingDetection,
    #[error("the detection has no condition")]
    MissingCondition,
    #[error(
        "aggregation conditions are not supported (condition {0:?}): rules are evaluated one \
         event at a time"
    )]
    Aggregation(String),
    #[error("timeframe is not supported: rules are evaluated one event at a time")]
    Timeframe,
    #[error("field {field:?}: unknown modifier {modifier:?}")]
    UnknownModifier { field: String, modifier: String },
    #[error("field {field:?}: modifier {modifier:?} is not supported: {why}")]
    UnsupportedModifier {
        field: String,
        modifier: String,
        why: &'static str,
    },
    #[error(
        "field {0:?} is not in the events iamtrail keeps, so the rule could never see it \
         (docs/sigma.md lists the fields)"
    )]
    UnavailableField(String),
    #[error("the Sigma engine rejects the rule: {0}")]
    Engine(String),
}

/// One rejected rule file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct SigmaLoadError {
    pub file: String,
    pub reason: RejectReason,
}

/// Every rejection of one load, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigmaLoadErrors {
    pub errors: Vec<SigmaLoadError>,
}

impl SigmaLoadErrors {
    /// The rejected files, each once, in order.
    pub fn files(&self) -> Vec<&str> {
        let mut files: Vec<&str> = self.errors.iter().map(|e| e.file.as_str()).collect();
        files.dedup();
        files
    }
}

impl fmt::Display for SigmaLoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = self.files().len();
        write!(
            f,
            "{files} Sigma rule file{} rejected:",
            if files == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SigmaLoadErrors {}

impl SigmaRules {
    /// Loads every `*.yml` and `*.yaml` file under `dir`, recursively, in path order. Hidden
    /// files and directories (`.git`, ...) are skipped; symbolic links to directories are not
    /// followed. Files are named relative to `dir` in rules and errors.
    pub fn load_dir(dir: &Path) -> Result<SigmaRules, SigmaLoadErrors> {
        let unreadable = |path: &Path, e: std::io::Error| SigmaLoadErrors {
            errors: vec![SigmaLoadError {
                file: path.display().to_string(),
                reason: RejectReason::Unreadable(e.to_string()),
            }],
        };
        let paths = rule_files(dir).map_err(|(path, e)| unreadable(&path, e))?;
        let mut texts = Vec::with_capacity(paths.len());
        let mut errors = Vec::new();
        for path in paths {
            let name = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .display()
                .to_string();
            match std::fs::read_to_string(&path) {
                Ok(text) => texts.push((name, text)),
                Err(e) => errors.push(SigmaLoadError {
                    file: name,
                    reason: RejectReason::Unreadable(e.to_string()),
                }),
            }
        }
        match (SigmaRules::from_texts(&texts), errors.is_empty()) {
            (Ok(rules), true) => Ok(rules),
            (Ok(_), false) => Err(SigmaLoadErrors { errors }),
            (Err(mut more), _) => {
                errors.append(&mut more.errors);
                errors.sort_by(|a, b| a.file.cmp(&b.file));
                Err(SigmaLoadErrors { errors })
            }
        }
    }

    /// Loads rules from `(file name, YAML text)` pairs, e.g. objects read from S3, in the
    /// given order. The names appear in rules and errors as given.
    pub fn from_texts(files: &[(String, String)]) -> Result<SigmaRules, SigmaLoadErrors> {
        let mut rules: Vec<SigmaRule> = Vec::with_capacity(files.len());
        let mut errors = Vec::new();
        let mut ids: HashMap<String, String> = HashMap::new();
        for (file, text) in files {
            let (id, loaded) = load_rule(file, text);
            let mut reasons = loaded.as_ref().err().cloned().unwrap_or_default();
            // Ids are compared across rejected files too, so that one load shows every clash.
            if let Some(id) = id {
                match ids.get(&id) {
                    Some(first_file) => reasons.push(RejectReason::DuplicateId {
                        id,
                        first_file: first_file.clone(),
                    }),
                    None => {
                        ids.insert(id, file.clone());
                    }
                }
            }
            match loaded {
                Ok(rule) if reasons.is_empty() => rules.push(rule),
                _ => errors.extend(reasons.into_iter().map(|reason| SigmaLoadError {
                    file: file.clone(),
                    reason,
                })),
            }
        }
        if errors.is_empty() {
            Ok(SigmaRules { rules })
        } else {
            Err(SigmaLoadErrors { errors })
        }
    }
}

/// The rule files under `dir`, sorted; on failure, the directory that could not be read.
fn rule_files(dir: &Path) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| (d.clone(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| (d.clone(), e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if name.starts_with('.') {
                continue;
            }
            if is_dir {
                pending.push(path);
            } else if (name.ends_with(".yml") || name.ends_with(".yaml")) && path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// One file's rule, or every reason it was rejected; and its `id`, when it has one, even if
/// it was rejected.
fn load_rule(file: &str, text: &str) -> (Option<String>, Result<SigmaRule, Vec<RejectReason>>) {
    match checks::single_document(text) {
        Err(reason) => (None, Err(vec![reason])),
        Ok(document) => (checks::rule_id(&document), compile(file, text, &document)),
    }
}

/// The rule of a file whose single YAML document is `document`.
fn compile(
    file: &str,
    text: &str,
    document: &yaml_serde::Value,
) -> Result<SigmaRule, Vec<RejectReason>> {
    let problems = checks::check_rule(document);
    if !problems.is_empty() {
        return Err(problems);
    }
    let collection = parse_sigma_yaml(text).map_err(|e| vec![engine(e)])?;
    if !collection.errors.is_empty() {
        return Err(collection.errors.iter().map(engine).collect());
    }
    let [rule] = collection.rules.as_slice() else {
        return Err(vec![RejectReason::NotARule(format!(
            "the engine read {} rules from it",
            collection.rules.len()
        ))]);
    };
    let compiled = rsigma_eval::compile_rule(rule).map_err(|e| vec![engine(e)])?;
    let level = rule.level.map(|l| l.as_str().to_string());
    Ok(SigmaRule {
        // check_rule made sure of the id.
        id: rule.id.clone().unwrap_or_default(),
        title: rule.title.clone(),
        severity: severity_for_level(level.as_deref()),
        level,
        description: rule.description.clone(),
        file: file.to_string(),
        attack: attack_techniques(&rule.tags),
        tags: rule.tags.clone(),
        falsepositives: rule.falsepositives.clone(),
        compiled,
    })
}

/// An engine message as a reason, cut to [`MAX_MESSAGE_CHARS`].
fn engine(message: impl ToString) -> RejectReason {
    let message = message.to_string();
    let mut cut: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    if cut.len() < message.len() {
        cut.push('…');
    }
    RejectReason::Engine(cut)
}
