//! `[schemas]`: FlowEngine's own TaskObject schemas (the runbook validates against
//! `planning/30_design/schemas/task_object.schema.json` in FlowEngine's repository), by major
//! version, from files or a directory of them. They are compiled when the config is checked
//! (`check-config`, and before `run` starts), and replace the built-in schema of the same
//! version; the others stay.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use flowfail_core::schema::{SchemaSet, TASK_OBJECT_V1, TASK_OBJECT_V2};
use flowfail_core::{Error, Result};

/// The largest schema file read.
const MAX_SCHEMA_BYTES: u64 = 1 << 20;

/// `[schemas]` in `flowfail.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SchemasConfig {
    /// Schema files by major version (`"3" = "schemas/task_object.v3.schema.json"`).
    #[serde(default)]
    pub files: BTreeMap<String, PathBuf>,
    /// A directory of schema files named with their version (`task_object.v3.schema.json`:
    /// `v3`); files of `files` win over it for the same version.
    pub dir: Option<PathBuf>,
}

/// Where each known major version comes from: `built in` or the file.
pub type SchemaSources = BTreeMap<String, String>;

impl SchemasConfig {
    /// Compiles the built-in schemas with the configured ones over them. An error names the
    /// file and what is wrong (unreadable, too large, not JSON, not a schema, no version).
    pub fn load(&self) -> Result<(SchemaSet, SchemaSources)> {
        let builtin = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
        let mut schemas: BTreeMap<String, (serde_json::Value, String)> = BTreeMap::new();
        for (v, text) in [("1", TASK_OBJECT_V1), ("2", TASK_OBJECT_V2)] {
            if let Some(s) = builtin(text) {
                schemas.insert(v.to_owned(), (s, "built in".to_owned()));
            }
        }
        if let Some(dir) = &self.dir {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| invalid(format!("schemas.dir {}: {e}", dir.display())))?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            for p in files {
                let version = version_in_name(&p).ok_or_else(|| {
                    invalid(format!(
                        "schemas.dir: {} has no version in its name (task_object.v3.schema.json)",
                        p.display()
                    ))
                })?;
                schemas.insert(version, (read(&p)?, p.display().to_string()));
            }
        }
        for (v, p) in &self.files {
            let major = v.trim_start_matches('v').split('.').next().unwrap_or("");
            if major.is_empty() || !major.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(format!(
                    "schemas.files: {v:?} is not a version (\"3\", \"v3\")"
                )));
            }
            schemas.insert(major.to_owned(), (read(p)?, p.display().to_string()));
        }
        let sources: SchemaSources = schemas
            .iter()
            .map(|(v, (_, from))| (v.clone(), from.clone()))
            .collect();
        // Each compiled alone first, so an error names its file.
        for (v, (schema, from)) in &schemas {
            SchemaSet::new([(v.clone(), schema.clone())])
                .map_err(|e| invalid(format!("schema {from}: {}", e.message())))?;
        }
        let set = SchemaSet::new(schemas.into_iter().map(|(v, (s, _))| (v, s)))
            .map_err(|e| invalid(format!("schemas: {}", e.message())))?;
        Ok((set, sources))
    }
}

/// The major version in a schema file's name: `task_object.v3.schema.json` → `3`.
fn version_in_name(p: &Path) -> Option<String> {
    let name = p.file_name()?.to_str()?;
    name.split(['.', '_', '-'])
        .filter_map(|part| part.strip_prefix('v'))
        .find(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
}

fn read(p: &Path) -> Result<serde_json::Value> {
    use std::io::Read;
    let err = |e: std::io::Error| invalid(format!("schema {}: {e}", p.display()));
    let f = std::fs::File::open(p).map_err(err)?;
    if !f.metadata().map_err(err)?.is_file() {
        return Err(invalid(format!(
            "schema {}: not a regular file",
            p.display()
        )));
    }
    // Read at most one byte past the limit, whatever the file says its size is.
    let mut text = String::new();
    f.take(MAX_SCHEMA_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(err)?;
    if text.len() as u64 > MAX_SCHEMA_BYTES {
        return Err(invalid(format!(
            "schema {}: over the {MAX_SCHEMA_BYTES}-byte limit",
            p.display()
        )));
    }
    serde_json::from_str(&text)
        .map_err(|e| invalid(format!("schema {}: not JSON: {e}", p.display())))
}

fn invalid(m: String) -> Error {
    Error::invalid_input(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("flowfail-schemas-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A v3 schema from a directory joins the built-in v1 and v2; a TaskObject declaring 3.x
    /// is checked against it.
    #[test]
    fn a_directory_adds_its_versions_over_the_built_in_ones() {
        let d = dir("dir");
        let mut v3: serde_json::Value = serde_json::from_str(TASK_OBJECT_V2).unwrap();
        v3["properties"]["priority"] = serde_json::json!({"type": "integer"});
        v3["required"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!("priority"));
        if let Some(sv) = v3["properties"].get_mut("schema_version") {
            *sv = serde_json::json!({"type": "string", "pattern": "^3\\."});
        }
        std::fs::write(d.join("task_object.v3.schema.json"), v3.to_string()).unwrap();
        let cfg = SchemasConfig {
            files: BTreeMap::new(),
            dir: Some(d.clone()),
        };
        let (set, sources) = cfg.load().unwrap();
        assert_eq!(set.versions(), ["1", "2", "3"]);
        assert_eq!(sources["1"], "built in");
        assert!(sources["3"].ends_with("task_object.v3.schema.json"));
        let task = serde_json::json!({
            "schema_version": "3.0.0", "task_id": "t-1", "flow_type": "impl",
            "created_at": "2025-11-13T09:00:00Z",
            "inputs": {"repo_url": "https://example.com/r.git", "instructions": "x"}
        });
        let r = set.validate(&task);
        assert_eq!(r.checked_against.as_deref(), Some("3"));
        assert!(!r.valid, "priority is required in v3");
        assert!(
            r.errors.iter().any(|e| e.message.contains("priority")),
            "{r:?}"
        );
    }

    /// What is wrong with a schema file is said with its path: not JSON, not a schema, no
    /// version in its name, a version that is not one.
    #[test]
    fn a_bad_schema_file_is_refused_by_name() {
        let d = dir("bad");
        let p = d.join("task_object.v4.schema.json");
        std::fs::write(&p, "{ not json").unwrap();
        let cfg = SchemasConfig {
            files: BTreeMap::new(),
            dir: Some(d.clone()),
        };
        let e = cfg.load().unwrap_err().to_string();
        assert!(
            e.contains("task_object.v4.schema.json") && e.contains("not JSON"),
            "{e}"
        );
        std::fs::write(&p, r#"{"type": 12}"#).unwrap();
        let e = cfg.load().unwrap_err().to_string();
        assert!(e.contains("v4"), "{e}");
        std::fs::remove_file(&p).unwrap();
        std::fs::write(d.join("task_object.schema.json"), "{}").unwrap();
        let e = cfg.load().unwrap_err().to_string();
        assert!(e.contains("no version in its name"), "{e}");
        let files = SchemasConfig {
            files: [("latest".to_owned(), d.join("x.json"))].into(),
            dir: None,
        };
        let e = files.load().unwrap_err().to_string();
        assert!(e.contains("\"latest\" is not a version"), "{e}");
    }

    #[test]
    fn the_version_comes_from_the_file_name() {
        for (name, v) in [
            ("task_object.v3.schema.json", Some("3")),
            ("task-object-v12.json", Some("12")),
            ("v2.json", Some("2")),
            ("task_object.schema.json", None),
            ("vendor.json", None),
        ] {
            assert_eq!(version_in_name(Path::new(name)).as_deref(), v, "{name}");
        }
    }
}
