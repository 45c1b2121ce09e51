//! TaskObject validation against the known schema versions, and schema-version mismatch
//! detection (the runbook's *Validation Errors* branch).
//!
//! Validators are compiled once per [`SchemaSet`]; remote `$ref`s are never fetched (the
//! `jsonschema` crate is built without its HTTP resolver). Formats (`date-time`, `uri`) are
//! checked.
//!
//! ```
//! use flowfail_core::schema::SchemaSet;
//! let schemas = SchemaSet::builtin();
//! let task = serde_json::json!({
//!     "schema_version": "2.0.0", "task_id": "t-1", "flow_type": "refactor",
//!     "created_at": "2025-11-13T09:00:00Z",
//!     "inputs": {"repo_url": "https://example.com/r.git", "instructions": "x"}
//! });
//! let report = schemas.validate(&task);
//! assert!(!report.valid);
//! assert_eq!(report.errors[0].pointer, "/flow_type");
//! ```

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// The TaskObject v1 schema shipped with flowfail.
pub const TASK_OBJECT_V1: &str = include_str!("../schemas/task_object.v1.schema.json");
/// The TaskObject v2 schema shipped with flowfail.
pub const TASK_OBJECT_V2: &str = include_str!("../schemas/task_object.v2.schema.json");

/// At most this many errors are reported per TaskObject.
pub const MAX_ERRORS: usize = 20;

/// One validation error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SchemaError {
    /// JSON pointer to the offending value in the TaskObject (`""` for the root).
    pub pointer: String,
    /// What is wrong.
    pub message: String,
}

/// The result of validating one TaskObject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SchemaReport {
    /// Whether it is valid against the schema of its declared version.
    pub valid: bool,
    /// The `schema_version` it declares, if any.
    pub declared_version: Option<String>,
    /// The schema version it was validated against.
    pub checked_against: Option<String>,
    /// Known versions it is valid against. When it is valid against the version it was checked
    /// against, that is the only one listed: the others are not checked (nothing needs
    /// explaining), which keeps validating a valid object to one pass of one validator.
    pub valid_against: Vec<String>,
    /// Errors against `checked_against` (at most [`MAX_ERRORS`]).
    pub errors: Vec<SchemaError>,
    /// A schema-version mismatch, explained.
    pub version_mismatch: Option<String>,
}

struct Compiled {
    /// Major version, e.g. `"2"`.
    major: String,
    validator: jsonschema::Validator,
}

/// Compiled TaskObject validators, one per known major version.
pub struct SchemaSet {
    versions: Vec<Compiled>,
}

impl std::fmt::Debug for SchemaSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaSet")
            .field(
                "versions",
                &self.versions.iter().map(|c| &c.major).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SchemaSet {
    /// The schemas shipped with flowfail (v1 and v2).
    pub fn builtin() -> Self {
        let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Bool(true));
        Self::new([("1", parse(TASK_OBJECT_V1)), ("2", parse(TASK_OBJECT_V2))]).unwrap_or_else(
            |_| SchemaSet {
                versions: Vec::new(),
            },
        )
    }

    /// Compiles schemas given as (major version, schema) pairs.
    pub fn new<I, S>(schemas: I) -> Result<Self>
    where
        I: IntoIterator<Item = (S, Value)>,
        S: Into<String>,
    {
        let mut versions = Vec::new();
        for (major, schema) in schemas {
            let major = major.into();
            let major = major
                .split('.')
                .next()
                .unwrap_or_default()
                .trim_start_matches('v')
                .to_owned();
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)
                .map_err(|e| {
                    Error::invalid_input(format!("invalid TaskObject schema v{major}: {e}"))
                })?;
            versions.push(Compiled { major, validator });
        }
        versions.sort_by_key(|c| (c.major.parse::<u64>().unwrap_or(u64::MAX), c.major.clone()));
        Ok(SchemaSet { versions })
    }

    /// The known major versions, oldest first.
    pub fn versions(&self) -> Vec<&str> {
        self.versions.iter().map(|c| c.major.as_str()).collect()
    }

    /// Whether a TaskObject is valid against the schema of its declared version (the newest
    /// when it declares none): the verdict of [`validate`](Self::validate) without the report —
    /// one validator pass and no allocation (for a string `schema_version`). For admission
    /// checks on the hot path; call `validate` when the answer is no and a person needs to know
    /// why.
    ///
    /// ```
    /// use flowfail_core::schema::SchemaSet;
    /// let schemas = SchemaSet::builtin();
    /// let task = serde_json::json!({
    ///     "schema_version": "2.0.0", "task_id": "t-1", "flow_type": "impl",
    ///     "created_at": "2025-11-13T09:00:00Z",
    ///     "inputs": {"repo_url": "https://example.com/r.git", "instructions": "x"}
    /// });
    /// assert!(schemas.is_valid(&task));
    /// assert_eq!(schemas.is_valid(&task), schemas.validate(&task).valid);
    /// ```
    pub fn is_valid(&self, object: &Value) -> bool {
        let target = match object.get("schema_version") {
            Some(Value::String(d)) => self.target_for(Some(major_of(d))),
            Some(other) => self.target_for(Some(major_of(&other.to_string()))),
            None => self.target_for(None),
        };
        target.is_some_and(|c| c.validator.is_valid(object))
    }

    /// The schema an object declaring this major version is checked against.
    fn target_for(&self, declared_major: Option<&str>) -> Option<&Compiled> {
        declared_major
            .and_then(|m| self.versions.iter().find(|c| c.major == m))
            .or_else(|| self.versions.last())
    }

    /// Validates a TaskObject against the schema of its declared version (the newest when it
    /// declares none) and checks the others to explain a version mismatch.
    pub fn validate(&self, object: &Value) -> SchemaReport {
        let declared = object.get("schema_version").map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let declared_major = declared.as_deref().map(major_of);
        let target = self.target_for(declared_major);
        // The target is checked once; its errors are collected only when it is not valid.
        let target_valid = target.map(|c| c.validator.is_valid(object));
        let valid_against: Vec<String> = match target {
            Some(t) if target_valid == Some(true) => vec![t.major.clone()],
            _ => self
                .versions
                .iter()
                .filter(|c| c.validator.is_valid(object))
                .map(|c| c.major.clone())
                .collect(),
        };
        let errors: Vec<SchemaError> = match target {
            Some(c) if target_valid == Some(false) => c
                .validator
                .iter_errors(object)
                .take(MAX_ERRORS)
                .map(|e| SchemaError {
                    pointer: e.instance_path().as_str().to_owned(),
                    message: truncate(&e.to_string(), 300),
                })
                .collect(),
            _ => Vec::new(),
        };
        let newest = self.versions.last().map(|c| c.major.as_str());
        let known = |m: &str| self.versions.iter().any(|c| c.major == m);
        // Which other version's shape the object has, ignoring its declared version.
        let shaped_as = |skip: &str| -> Vec<String> {
            self.versions
                .iter()
                .filter(|c| c.major != skip)
                .filter(|c| {
                    let mut o = object.clone();
                    if let Some(m) = o.as_object_mut() {
                        m.insert(
                            "schema_version".into(),
                            Value::String(format!("{}.0.0", c.major)),
                        );
                    }
                    c.validator.is_valid(&o)
                })
                .map(|c| c.major.clone())
                .collect()
        };
        let version_mismatch = match (declared_major, &declared) {
            (None, _) => Some("TaskObject declares no schema_version".to_owned()),
            (Some(m), Some(d)) if !known(m) => {
                let newer = matches!((m.parse::<u64>(), newest.map(str::parse::<u64>)), (Ok(a), Some(Ok(b))) if a > b);
                Some(if newer {
                    format!(
                        "schema_version {d} is newer than the newest known schema (v{}): update flowfail's schemas or roll back the producer",
                        newest.unwrap_or("?")
                    )
                } else {
                    format!("schema_version {d} is not a known schema version")
                })
            }
            (Some(m), Some(d)) if !errors.is_empty() => {
                let shapes = shaped_as(m);
                if shapes.is_empty() {
                    None
                } else {
                    Some(format!(
                        "declares schema_version {d} but has the shape of v{}: producer and schema disagree",
                        shapes.join(", v")
                    ))
                }
            }
            (Some(m), Some(d)) if newest.is_some_and(|n| n != m) => Some(format!(
                "declares schema_version {d}, but the current schema is v{}",
                newest.unwrap_or("?")
            )),
            _ => None,
        };
        SchemaReport {
            valid: target_valid == Some(true),
            declared_version: declared,
            checked_against: target.map(|c| c.major.clone()),
            valid_against,
            errors,
            version_mismatch,
        }
    }
}

/// `"v2.1.0"` → `"2"`.
fn major_of(version: &str) -> &str {
    version
        .trim_start_matches('v')
        .split('.')
        .next()
        .unwrap_or_default()
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v2() -> Value {
        json!({
            "schema_version": "2.1.0", "task_id": "t-1", "flow_type": "docs",
            "created_at": "2025-11-13T09:00:00Z",
            "inputs": {"repo_url": "https://example.com/r.git", "instructions": "write docs"}
        })
    }

    #[test]
    fn is_valid_agrees_with_validate() {
        let set = SchemaSet::builtin();
        let mut cases = vec![v2(), json!({}), json!([]), json!("x"), json!(null)];
        for version in [
            json!("1.4.0"),
            json!("v2.0.0"),
            json!(2),
            json!(3.1),
            json!("9.0.0"),
        ] {
            let mut o = v2();
            o["schema_version"] = version;
            cases.push(o);
        }
        let mut no_version = v2();
        no_version.as_object_mut().unwrap().remove("schema_version");
        cases.push(no_version);
        let mut bad = v2();
        bad["flow_type"] = json!("refactor");
        cases.push(bad);
        for c in &cases {
            assert_eq!(set.is_valid(c), set.validate(c).valid, "{c}");
        }
        assert!(set.is_valid(&v2()));
    }

    #[test]
    fn valid_v2_is_valid() {
        let r = SchemaSet::builtin().validate(&v2());
        assert!(r.valid, "{r:?}");
        assert_eq!(r.version_mismatch, None);
        assert_eq!(r.valid_against, vec!["2"]);
    }

    #[test]
    fn errors_carry_pointers() {
        let mut t = v2();
        t["inputs"]["repo_url"] = json!("not a uri");
        t["priority"] = json!(7);
        let r = SchemaSet::builtin().validate(&t);
        assert!(!r.valid);
        let ptrs: Vec<&str> = r.errors.iter().map(|e| e.pointer.as_str()).collect();
        assert!(ptrs.contains(&"/priority"), "{ptrs:?}");
        assert!(ptrs.contains(&"/inputs/repo_url"), "{ptrs:?}");
    }

    #[test]
    fn version_mismatch_is_explained() {
        // A v1 object that claims to be v2.
        let t = json!({"schema_version": "2.0.0", "task_id": "t-1", "flow_type": "plan",
                       "inputs": {"repo": "r", "instructions": "x"}});
        let r = SchemaSet::builtin().validate(&t);
        assert!(!r.valid);
        assert!(
            r.errors
                .iter()
                .any(|e| e.pointer.is_empty() || e.pointer == "/inputs")
        );
        let t1 = json!({"schema_version": "1.4.0", "task_id": "t-1", "flow_type": "plan",
                        "inputs": {"repo": "r", "instructions": "x"}});
        assert!(SchemaSet::builtin().validate(&t1).valid);
        let mut t3 = v2();
        t3["schema_version"] = json!("3.0.0");
        let r = SchemaSet::builtin().validate(&t3);
        assert!(r.version_mismatch.unwrap().contains("newer"));
    }
}
